//! What the audit trail costs per statement, split where the threads split:
//! - `session`: a session's side of one pgbench `-S` statement in `batch` mode, exactly
//!   the calls the relay makes (its `decided` record, the kept RowDescription and
//!   DataRow, CommandComplete, ReadyForQuery and so its `completed` record), both
//!   records encoded into the shared queue. The writer thread runs meanwhile, taking the
//!   queue every 10 ms and writing to a store in the temp dir, as in production.
//! - `seal`: the writer's per-record step: framing and the SHA-256 chain for the
//!   `whole` record such a statement becomes, straight into the write buffer.
//!
//! pgbench on this 2-core VM moves by ±10% between runs; these move by a few percent,
//! so they are where a per-statement saving of a fraction of a µs shows.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use pgmoat::audit::event::SessionStart;
use pgmoat::audit::record::{seal_into, ZERO_HASH};
use pgmoat::audit::{Audit, StatementFacts, Ticket};
use pgmoat::config::{AuditConfig, AuditDurability};
use pgmoat::metrics::Metrics;

// The allocator pgmoat runs with: allocation is a good part of this path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn bench_session(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("pgmoat-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = AuditConfig::new(&dir);
    config.durability = AuditDurability::Batch;
    let (audit, mut session) = rt.block_on(async {
        let audit = Audit::open(&config, Arc::new(Metrics::default())).expect("store");
        let start = SessionStart {
            user: "bench".into(),
            groups: vec!["bench".into()],
            target: "bench".into(),
            client: "127.0.0.1:5000".into(),
            tls: false,
            application_name: Some("pgbench".into()),
            protocol: None,
        };
        let session = audit
            .start_session(start)
            .await
            .expect("start")
            .expect("on");
        (audit, session)
    });
    let query = msg(
        b'Q',
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 460309;\0",
    );
    let row_description = msg(
        b'T',
        b"\x00\x01abalance\x00\x00\x00\x40\x01\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00",
    );
    let data_row = msg(b'D', b"\x00\x01\x00\x00\x00\x01\x30");
    let complete = msg(b'C', b"SELECT 1\0");
    c.bench_function("audit/session: one pgbench statement, batch", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let recorded = session
                        .decided(black_box(&query), None, StatementFacts::unjudged())
                        .await;
                    recorded.result.expect("decided");
                    let n = recorded.statement;
                    // The ticket the session core's queue carries for the Query, handed
                    // back finished at its ReadyForQuery.
                    let ticket = Ticket::query(n, false);
                    session.record_result_message(&row_description, Some(&ticket));
                    session.record_result_message(&data_row, Some(&ticket));
                    session.server_message(&complete, Some(&ticket));
                    session.completed(ticket).await.expect("completed");
                }
                t0.elapsed()
            })
        })
    });
    rt.block_on(audit.shutdown());
    drop(audit);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_seal(c: &mut Criterion) {
    let body = r#"{"type":"statement","phase":"whole","statement":545,"protocol":"simple","sql":"SELECT abalance FROM pgbench_accounts WHERE aid = 460309;","kinds":[],"tables":[],"action":"allow","rules":[],"masked_columns":[],"duration_ms":0.649,"rows":1,"command":"SELECT 1","columns":["abalance"],"recorded_rows":[["0"]]}"#;
    let ts = "2026-12-01T18:16:21.435162Z";
    c.bench_function("audit/seal: one whole record", |b| {
        let mut seq = 0u64;
        let mut out = Vec::with_capacity(1 << 20);
        b.iter(|| {
            seq += 1;
            // The writer seals straight into the bytes it writes, cleared per write.
            if out.len() > (1 << 20) - 1024 {
                out.clear();
            }
            black_box(seal_into(
                &mut out,
                seq,
                ts,
                Some("91275e972754e7ba"),
                black_box(body.as_bytes()),
                ZERO_HASH,
                None,
            ))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bench_session, bench_seal
}
criterion_main!(benches);
