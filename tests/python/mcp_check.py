"""Drive pgmoat's MCP endpoint with the official MCP Python SDK (`pip install mcp`).

Called by tests/integration/mcp.rs with the gateway's addresses, tokens and table
names in the environment. Each check asserts on what an agent sees; the Rust side
then checks what only the database and the audit store can show.
Prints "ok" at the end; any failed assertion exits non-zero with its message.
"""

import asyncio
import json
import os
import threading
import time

import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

URL = os.environ["MCP_URL"]
TOKEN = os.environ["MCP_TOKEN"]
OIDC_TOKEN = os.environ["MCP_OIDC_TOKEN"]
OIDC_EXPIRED = os.environ["MCP_OIDC_EXPIRED"]
ADMIN = os.environ["ADMIN_URL"]
ADMIN_TOKEN = os.environ["ADMIN_TOKEN"]
PEOPLE = os.environ["PEOPLE"]
ORDERS = os.environ["ORDERS"]
MARK_BLOCKED = os.environ["MARK_BLOCKED"]
MARK_FIRST = os.environ["MARK_FIRST"]
MARK_RETRY = os.environ["MARK_RETRY"]
MARK_AGAIN = os.environ["MARK_AGAIN"]

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


def raw_post(token):
    headers = {"Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(URL, json=INIT, headers=headers, timeout=10)


def check_refused_tokens():
    for label, token in [
        ("no token", None),
        ("bad token", "not-a-real-token"),
        ("expired OIDC token", OIDC_EXPIRED),
    ]:
        r = raw_post(token)
        assert r.status_code == 401, f"{label}: {r.status_code} {r.text}"
        challenge = r.headers.get("www-authenticate", "")
        assert challenge.startswith("Bearer"), f"{label}: {challenge!r}"


def admin(method, path, body=None):
    r = httpx2.request(
        method,
        ADMIN + path,
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def decide(approval, verb, reason="ok"):
    admin("POST", f"/api/v1/approvals/{approval}/{verb}", {"by": "alice", "reason": reason})


def structured(result):
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def error_text(result):
    assert result.is_error, f"expected an error result, got {result.content}"
    return result.content[0].text


async def session(token, body):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        async with streamable_http_client(URL, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as s:
                await s.initialize()
                return await body(s)


async def call(s, name, **args):
    return await s.call_tool(name, args)


async def agent(s):
    tools = sorted(t.name for t in (await s.list_tools()).tools)
    assert tools == ["describe_table", "explain", "list_tables", "list_targets", "query"], tools
    query_tool = [t for t in (await s.list_tools()).tools if t.name == "query"][0]
    assert "never spliced" in query_tool.description, query_tool.description

    targets = structured(await call(s, "list_targets"))["targets"]
    assert [t["name"] for t in targets] == ["demo"], targets

    tables = structured(await call(s, "list_tables", target="demo", schema="public"))["tables"]
    assert PEOPLE in [t["name"] for t in tables], tables

    described = structured(await call(s, "describe_table", target="demo", table=PEOPLE))
    by_name = {c["name"]: c for c in described["columns"]}
    assert by_name["ssn"]["masked"] is True, described
    assert by_name["name"]["masked"] is False, described
    assert by_name["id"]["type"] == "integer", described

    # A masked column comes back masked; params are bound, values are typed.
    got = structured(
        await call(s, "query", target="demo", sql=f"SELECT id, name, ssn, score FROM {PEOPLE} WHERE id = $1", params=[1])
    )
    assert got["row_count"] == 1 and got["truncated"] is False, got
    assert got["rows"][0][0] == 1 and got["rows"][0][1] == "Ann", got
    assert got["rows"][0][2] != "123-45-6789" and got["rows"][0][2].endswith("6789"), got
    assert got["rows"][0][3] == "12.50", got
    assert [c["name"] for c in got["columns"]] == ["id", "name", "ssn", "score"], got
    assert any(c.endswith(f"{PEOPLE}.ssn") for c in got["masked_columns"]), got
    # A parameter is a value, never SQL.
    got = structured(
        await call(s, "query", target="demo", sql=f"SELECT count(*) FROM {PEOPLE} WHERE name = $1", params=["x' OR '1'='1"])
    )
    assert got["rows"] == [[0]], got

    # max_rows cuts and says so.
    got = structured(await call(s, "query", target="demo", sql="SELECT g FROM generate_series(1, 10) g", max_rows=3))
    assert got["rows"] == [[1], [2], [3]] and got["truncated"] is True, got

    # Blocked: an error result naming the rule, with the facts; never sent (the Rust side reads the server log).
    text = error_text(
        await call(s, "query", target="demo", sql=f"SELECT pg_read_file('/etc/passwd') AS {MARK_BLOCKED}")
    )
    assert text.startswith('pgmoat: blocked by rule "no-file-reads"'), text
    assert "pg_read_file" in text, text

    # explain: the decision, plus the plan only when allowed.
    ex = structured(await call(s, "explain", target="demo", sql=f"SELECT pg_read_file('/x') AS {MARK_BLOCKED}"))
    assert ex["action"] == "block" and ex["rules"] == ["no-file-reads"] and "plan" not in ex, ex
    ex = structured(await call(s, "explain", target="demo", sql=f"SELECT * FROM {PEOPLE}"))
    assert ex["action"] == "allow" and ex["plan"][0]["Plan"]["Node Type"] == "Seq Scan", ex
    ex = structured(await call(s, "explain", target="demo", sql=f"UPDATE {ORDERS} SET status = 'x' WHERE id = 1"))
    assert ex["action"] == "approve" and "plan" not in ex, ex

    # Held: answered at once with the request id.
    first = f"/* {MARK_FIRST} */ UPDATE {ORDERS} SET status = 'shipped' WHERE id = 1"
    held = structured(await call(s, "query", target="demo", sql=first))
    assert held["status"] == "pending_approval" and held["approval"].startswith("ap-"), held
    assert held["rule"] == "agent-writes-need-approval", held
    listed = admin("GET", "/api/v1/approvals")
    assert [p["id"] for p in listed] == [held["approval"]], listed
    # The approvers see which front door asked.
    assert listed[0]["front_door"] == "mcp", listed
    # Asking again before a decision does not page the approvers again.
    again = structured(await call(s, "query", target="demo", sql=first))
    assert again["approval"] == held["approval"], again
    assert len(admin("GET", "/api/v1/approvals")) == 1

    decide(held["approval"], "approve")
    # A reformatted retry (case, whitespace, comments) is the same call: it runs once.
    retry = f"update   {ORDERS.upper()}\n set STATUS='shipped' where ID = 1 -- {MARK_RETRY}"
    ran = structured(await call(s, "query", target="demo", sql=retry))
    assert ran.get("row_count") == 1, ran
    # ...and a second retry asks again.
    second = structured(await call(s, "query", target="demo", sql=f"/* {MARK_AGAIN} */ " + first))
    assert second["status"] == "pending_approval" and second["approval"] != held["approval"], second
    # A denied request's retry gets the denial.
    decide(second["approval"], "deny", "not today")
    denied = error_text(await call(s, "query", target="demo", sql=f"/* {MARK_AGAIN} */ " + first))
    assert "denied by alice: not today" in denied, denied

    # Parameters are part of the call: other values are another request.
    sql = f"UPDATE {ORDERS} SET status = $1 WHERE id = $2"
    p = structured(await call(s, "query", target="demo", sql=sql, params=["packed", 2]))
    assert p["status"] == "pending_approval", p
    decide(p["approval"], "approve")
    other = structured(await call(s, "query", target="demo", sql=sql, params=["packed", 3]))
    assert other["status"] == "pending_approval" and other["approval"] != p["approval"], other
    decide(other["approval"], "deny")
    ran = structured(await call(s, "query", target="demo", sql=sql, params=["packed", 2]))
    assert ran["row_count"] == 1, ran

    # wait: the call itself waits for the approver, then runs.
    def approve_when_listed():
        for _ in range(200):
            listed = admin("GET", "/api/v1/approvals")
            if listed:
                decide(listed[0]["id"], "approve")
                return
            time.sleep(0.05)

    t = threading.Thread(target=approve_when_listed)
    t.start()
    ran = structured(
        await call(s, "query", target="demo", sql=f"UPDATE {ORDERS} SET status = 'waited' WHERE id = 4", wait="20s")
    )
    t.join()
    assert ran.get("row_count") == 1, ran

    # The MCP session keeps its database session across calls.
    pid = structured(await call(s, "query", target="demo", sql="SELECT pg_backend_pid()"))["rows"]
    again = structured(await call(s, "query", target="demo", sql="SELECT pg_backend_pid()"))["rows"]
    assert pid == again, (pid, again)


def check_session_belongs_to_its_owner():
    # A session id is not a credential: another identity's token cannot use it.
    r = raw_post(TOKEN)
    assert r.status_code == 200, r.text
    sid = r.headers["mcp-session-id"]
    headers = {
        "Accept": "application/json, text/event-stream",
        "Mcp-Session-Id": sid,
        "MCP-Protocol-Version": "2025-06-18",
    }

    def post(token, body):
        h = dict(headers, Authorization=f"Bearer {token}")
        return httpx2.post(URL, json=body, headers=h, timeout=10)

    post(TOKEN, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    call_body = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "query", "arguments": {"target": "demo", "sql": "SELECT 1"}},
    }
    mine = post(TOKEN, call_body)
    assert '\\"rows\\":[[1]]' in mine.text or '"rows":[[1]]' in mine.text, mine.text
    theirs = post(OIDC_TOKEN, dict(call_body, id=3))
    # Another identity's token naming this session gets what an unknown session gets.
    assert theirs.status_code == 404, (theirs.status_code, theirs.text)
    assert theirs.text == "Not Found: Session not found", theirs.text


async def oidc_agent(s):
    got = structured(await call(s, "query", target="demo", sql="SELECT 7 AS seven"))
    assert got["rows"] == [[7]], got
    # Protocol errors are JSON-RPC errors: an unknown tool, a bad argument.
    for name, args, says in [
        ("no_such_tool", {}, "not found"),
        ("query", {"target": "demo", "sql": "SELECT 1", "wait": "soon"}, "wait"),
    ]:
        try:
            await s.call_tool(name, args)
        except MCPError as e:
            assert e.code < 0 and says in str(e), (name, e.code, e)
        else:
            raise AssertionError(f"{name}: no JSON-RPC error")


async def isolated(s):
    # Each MCP session has its own database session, kept across its calls.
    first = structured(await call(s, "query", target="demo", sql="SELECT pg_backend_pid()"))["rows"][0][0]
    await asyncio.sleep(0.2)
    second = structured(await call(s, "query", target="demo", sql="SELECT pg_backend_pid()"))["rows"][0][0]
    assert first == second, (first, second)
    return first


async def main():
    check_refused_tokens()
    check_session_belongs_to_its_owner()
    await session(TOKEN, agent)
    await session(OIDC_TOKEN, oidc_agent)
    pids = await asyncio.gather(*[session(TOKEN, isolated) for _ in range(4)])
    assert len(set(pids)) == 4, pids
    print("ok")


asyncio.run(main())
