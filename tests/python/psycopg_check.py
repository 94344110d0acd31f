"""psycopg 3 through pgmoat: the libpq-based driver many Python agents use.

Run by tests/integration/drivers.rs with PGMOAT_DSN set; prints "ok" when every check
holds, otherwise fails with the first mismatch.
"""
import os
import sys

import psycopg
from psycopg import pq

dsn = os.environ["PGMOAT_DSN"]

with psycopg.connect(dsn, autocommit=True) as conn:
    # Server-side parameters (extended protocol) and type round trips.
    row = conn.execute("SELECT %s::int + 1, %s::text, %s::numeric * 2", (41, "café", "1.25")).fetchone()
    assert row == (42, "café", 2.5) or row[:2] == (42, "café"), row

    # Binary results.
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 5000) g ORDER BY g")
        rows = cur.fetchall()
        assert len(rows) == 5000 and rows[9][0] == 10, rows[:3]

    # Pipeline mode: many statements before one sync.
    with conn.pipeline():
        curs = [conn.execute("SELECT %s::int * 3", (i,)) for i in range(50)]
    assert [c.fetchone()[0] for c in curs] == [i * 3 for i in range(50)]

    # COPY in and out.
    conn.execute("CREATE TEMP TABLE py(id int, name text)")
    with conn.cursor().copy("COPY py FROM STDIN") as copy:
        for i in range(1000):
            copy.write_row((i, f"n{i}"))
    assert conn.execute("SELECT count(*), sum(id) FROM py").fetchone() == (1000, 499500)
    out = bytearray()
    with conn.cursor().copy("COPY (SELECT id FROM py ORDER BY id LIMIT 3) TO STDOUT") as copy:
        for chunk in copy:
            out += chunk
    assert bytes(out) == b"0\n1\n2\n", out

    # SQLSTATE passes through.
    try:
        conn.execute("SELECT 1/0")
        raise AssertionError("no error")
    except psycopg.errors.DivisionByZero as e:
        assert e.sqlstate == "22012"

with psycopg.connect(dsn) as conn:
    # Error inside a transaction: the driver sees the failed state, then recovers.
    try:
        conn.execute("SELECT * FROM no_such_table")
    except psycopg.errors.UndefinedTable:
        pass
    assert conn.info.transaction_status == pq.TransactionStatus.INERROR
    conn.rollback()
    assert conn.info.transaction_status == pq.TransactionStatus.IDLE

    # LISTEN/NOTIFY between two connections.
    conn.autocommit = True
    conn.execute("LISTEN py_channel")
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("NOTIFY py_channel, 'from psycopg'")
    got = next(conn.notifies(timeout=10))
    assert (got.channel, got.payload) == ("py_channel", "from psycopg"), got

print("ok")
sys.stdout.flush()
