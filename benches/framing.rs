//! Framing costs on the hot path: scanning headers in place over a read buffer, the way
//! the relay does, and composing the few messages pgmoat writes itself.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use pgmoat::protocol::backend::{self, ErrorFields, Severity};
use pgmoat::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};
use pgmoat::protocol::startup;

/// A typical select-only result: RowDescription, `rows` DataRows, CommandComplete, ReadyForQuery.
fn result_set(rows: usize) -> BytesMut {
    let mut b = BytesMut::new();
    let mut msg = |tag: u8, body: &[u8]| {
        b.put_u8(tag);
        b.put_i32(body.len() as i32 + 4);
        b.put_slice(body);
    };
    msg(b'T', b"\x00\x01abalance\x00\x00\x00\x40\x01\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00");
    for _ in 0..rows {
        msg(b'D', b"\x00\x01\x00\x00\x00\x04-123");
    }
    msg(b'C', b"SELECT 1\0");
    msg(b'Z', b"I");
    b
}

/// Walk every header in `buf` as the relay's scan does; returns the message count.
fn scan(buf: &[u8], direction: Direction) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while let Ok(Some(h)) = frame::check(&buf[pos..], direction, LARGE_MESSAGE_LIMIT) {
        if buf.len() - pos < h.total {
            break;
        }
        pos += h.total;
        n += 1;
    }
    n
}

fn bench_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan");
    for rows in [1usize, 100, 10_000] {
        let buf = result_set(rows);
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(format!("backend_{rows}_rows"), |b| {
            b.iter(|| scan(black_box(&buf), Direction::Backend))
        });
    }
    // A pgbench -M prepared transaction from the client: Bind, Execute, Sync.
    let mut q = BytesMut::new();
    q.put_slice(b"B\x00\x00\x00\x1a\x00P0_1\x00\x00\x00\x00\x01\x00\x00\x00\x0412345\x00\x00");
    q.put_slice(b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00");
    q.put_slice(b"S\x00\x00\x00\x04");
    g.throughput(Throughput::Elements(1));
    g.bench_function("frontend_bind_execute_sync", |b| {
        b.iter(|| scan(black_box(&q), Direction::Frontend))
    });
    g.finish();
}

fn bench_compose(c: &mut Criterion) {
    let mut out = BytesMut::with_capacity(1024);
    c.bench_function("compose_error_and_ready", |b| {
        b.iter(|| {
            out.clear();
            backend::error_response(
                &mut out,
                &ErrorFields::new(
                    Severity::Error,
                    "42501",
                    black_box("pgmoat: blocked by rule \"no-drop\": no"),
                )
                .detail("kinds: drop"),
            );
            backend::ready_for_query(&mut out, b'I');
            out.len()
        })
    });
    let mut pkt = Vec::new();
    let body = b"\x00\x03\x00\x00user\0agent-1\0database\0demo\0application_name\0psql\0client_encoding\0UTF8\0\0";
    pkt.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    pkt.extend_from_slice(body);
    c.bench_function("parse_startup_message", |b| {
        b.iter(|| startup::parse(black_box(&pkt)).is_ok())
    });
}

criterion_group!(benches, bench_scan, bench_compose);
criterion_main!(benches);
