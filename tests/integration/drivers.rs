//! Drivers other than tokio-postgres: psycopg 3 (libpq underneath) from Python.

use std::process::Command;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_works_through_the_gateway() {
    let (_pg, gw) = start().await;
    let dsn = format!(
        "host=127.0.0.1 port={} user={AGENT} password={AGENT_PW} dbname=demo",
        gw.addr.port()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/psycopg_check.py");
    let out = tokio::task::spawn_blocking(move || {
        // Installed from PyPI when missing, so `cargo test` needs no set-up step.
        pgmoat::setup::ensure_python_module("psycopg", "psycopg[binary]>=3.1")
            .unwrap_or_else(|e| panic!("{e}"));
        Command::new("python3")
            .arg(script)
            .env("PGMOAT_DSN", dsn)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "psycopg check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
