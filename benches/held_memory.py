"""held_memory.py - drive N statements held for approval at once (see held_memory.sh).

Opens N sessions through pgmoat, samples pgmoat's RSS idle and with N idle sessions,
then has every session send an UPDATE an `approve` rule holds, waits until the admin
API lists N pending requests, samples RSS and pgmoat's CPU over a quiet interval,
denies them all through the API and checks every session got 42501.
"""

import asyncio
import json
import os
import sys
import time
import urllib.request

import psycopg

N = int(os.environ.get("HELD", "1000"))
PID = int(os.environ["MOAT_PID"])
DSN = os.environ["DSN"]
ADMIN = os.environ["ADMIN"]
TOKEN = os.environ["ADMIN_TOKEN"]
QUIET = float(os.environ.get("QUIET", "10"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks():
    with open(f"/proc/{PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def api(method, path, body=None):
    req = urllib.request.Request(
        ADMIN + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


async def held(conn, i, results):
    try:
        async with conn.cursor() as cur:
            await cur.execute("UPDATE orders SET status = 'x' WHERE id = %s", (i + 1,))
        results.append("ran")
    except psycopg.Error as e:
        results.append(e.sqlstate or "error")


async def main():
    base = rss_kib()
    conns = []
    for i in range(N):
        conns.append(await psycopg.AsyncConnection.connect(DSN, autocommit=True))
    await asyncio.sleep(1)
    idle = rss_kib()
    results = []
    tasks = [asyncio.create_task(held(c, i, results)) for i, c in enumerate(conns)]
    deadline = time.time() + 120
    pending = []
    while time.time() < deadline:
        pending = api("GET", "/api/v1/approvals")
        if len(pending) >= N:
            break
        await asyncio.sleep(0.2)
    if len(pending) < N:
        sys.exit(f"only {len(pending)} of {N} requests became pending")
    await asyncio.sleep(1)
    held_rss = rss_kib()
    t0 = cpu_ticks()
    await asyncio.sleep(QUIET)
    quiet_ticks = cpu_ticks() - t0
    for r in pending:
        api("POST", f"/api/v1/approvals/{r['id']}/deny", {"by": "alice", "reason": "bench"})
    await asyncio.gather(*tasks)
    for c in conns:
        await c.close()
    denied = results.count("42501")
    mib = lambda kib: kib / 1024
    print(f"held statements:            {N} (denied with 42501 afterwards: {denied})")
    print(f"pgmoat RSS, no sessions:    {mib(base):7.1f} MiB")
    print(f"pgmoat RSS, {N} idle:       {mib(idle):7.1f} MiB  (+{mib(idle - base):.1f} MiB, {(idle - base) / N:.1f} KiB/session)")
    print(f"pgmoat RSS, {N} held:       {mib(held_rss):7.1f} MiB  (+{mib(held_rss - idle):.1f} MiB over idle sessions, "
          f"{(held_rss - idle) / N:.1f} KiB/held statement; +{mib(held_rss - base):.1f} MiB over no sessions)")
    print(f"pgmoat CPU while {N} wait {QUIET:.0f} s: {quiet_ticks / CLK_TCK * 1000:.0f} ms")
    if denied != N:
        sys.exit(f"{N - denied} sessions did not get 42501: {set(results)}")


asyncio.run(main())
