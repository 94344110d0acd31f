//! The synchronous pass with masking and an audit trail on (issue 19, step B2): a
//! session that masks takes the pass for its prepared cycles, masks there exactly as
//! the scanner does, and leaves the same audit records.
//!
//! Each test drives two relays through the same script: one whose server bytes go
//! through `server_pass` (asserted taken), one whose go through the scanner
//! (`on_server_bytes`). The client must get the same bytes from both, and the
//! audit stores must hold the same statement records.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::tests::{pair, parts};
use super::{Pass, Relay};
use crate::audit::{Audit, SessionAudit};
use crate::catalog::Catalog;
use crate::config::{AuditConfig, AuditDurability};
use crate::mask::Masking;
use crate::metrics::Metrics;
use crate::policy::{RuleSet, Subject};
use crate::session::core::script::msg;
use crate::session::masker::Masker;

/// A detector only: no statement is traced to a masked column, so what masking does
/// here depends on each result's columns (a text column is scanned, an integer one is
/// not), which is exactly the "empty plan or not" the pass must get right.
const RULES: &str = "detect:
  - id: ssns
    kind: us_ssn
    method: redact
";
const SSN: &[u8] = b"123-45-6789";

fn engine() -> Arc<Masking> {
    let rules = RuleSet::from_sources(&[("r.yaml".into(), RULES.into())]).expect("compiles");
    let groups = vec!["agents".to_string()];
    let who = Subject {
        user: "a",
        groups: &groups,
        target: "t",
        search_path_changed: false,
    };
    Arc::new(Masking::build(&rules, &who, Arc::new(Catalog::default())).expect("detectors apply"))
}

struct Store(PathBuf);

impl Store {
    fn new(name: &str) -> Store {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("pgmoat-pass-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Store(p)
    }

    /// The statement records, without what differs run to run (times, chain).
    fn statements(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(&self.0)
            .expect("store")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for p in names {
            for line in std::fs::read_to_string(&p).expect("segment").lines() {
                let mut v: Value = serde_json::from_str(line).expect("a JSON record");
                if v["type"] != "statement" {
                    continue;
                }
                if let Some(o) = v.as_object_mut() {
                    for k in ["seq", "ts", "prev", "hash", "duration_ms"] {
                        o.remove(k);
                    }
                }
                out.push(v);
            }
        }
        out
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relay that masks (the detector above) and keeps an audit trail in batch mode,
/// as the agent configuration does; the test holds the client's and server's ends.
struct Masked {
    relay: Relay,
    client: TcpStream,
    server: TcpStream,
    audit: Audit,
    _shutdown: watch::Sender<bool>,
}

async fn masked(store: &Path) -> Masked {
    let (client, client_side) = pair().await;
    let (server, server_side) = pair().await;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let mut cfg = AuditConfig::new(store);
    cfg.durability = AuditDurability::Batch;
    // Nothing is written before the test's flush: which records batch mode joins
    // into one is then the same for both paths.
    cfg.flush_interval = Duration::from_secs(3600);
    let audit = Audit::open(&cfg, Arc::new(Metrics::default())).expect("audit store");
    let session = SessionAudit::new(audit.clone(), Arc::from("s1"));
    let mut relay = Relay::new(parts(client_side, server_side, shutdown, Some(session)));
    // As `track_masking` does when the first statement is judged under masks.
    relay.masker = Some(Masker::new(engine()));
    relay.hold_results = true;
    Masked {
        relay,
        client,
        server,
        audit,
        _shutdown: shutdown_tx,
    }
}

/// Read messages from `s` up to and including `readies` ReadyForQuerys.
async fn read_cycles(s: &mut TcpStream, readies: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut seen = 0;
    let mut pos = 0;
    while seen < readies {
        while got.len() >= pos + 5 {
            let len = u32::from_be_bytes([got[pos + 1], got[pos + 2], got[pos + 3], got[pos + 4]]);
            let end = pos + 1 + len as usize;
            if got.len() < end {
                break;
            }
            if got[pos] == b'Z' {
                seen += 1;
            }
            pos = end;
        }
        if seen >= readies {
            break;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut got))
        .await
        .expect("in time")
        .expect("read");
    got
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}

/// Bind statement `stmt` to the unnamed portal, Describe that portal, Execute it.
fn run(stmt: &str) -> Vec<u8> {
    let mut b = format!("\0{stmt}\0").into_bytes();
    b.extend([0, 0, 0, 0, 0, 0]);
    [msg(b'B', &b), msg(b'D', b"P\0"), msg(b'E', b"\0\0\0\0\0")].concat()
}

/// A RowDescription of one column of type `oid`.
fn row_description(name: &str, oid: u32) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend(name.as_bytes());
    b.push(0);
    b.extend(0u32.to_be_bytes()); // table
    b.extend(0u16.to_be_bytes()); // attnum
    b.extend(oid.to_be_bytes());
    b.extend((-1i16).to_be_bytes());
    b.extend((-1i32).to_be_bytes());
    b.extend(0u16.to_be_bytes()); // text
    msg(b'T', &b)
}

fn data_row(value: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 1];
    b.extend((value.len() as u32).to_be_bytes());
    b.extend(value);
    msg(b'D', &b)
}

fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', format!("{tag}\0").as_bytes())
}

/// The answers to `run("m")` (a text column holding an SSN: the detector masks it)
/// and `run("u")` (an integer column: nothing to mask, passed byte for byte).
fn masked_answer() -> Vec<u8> {
    [
        msg(b'2', b""),
        row_description("note", 25),
        data_row(SSN),
        complete("SELECT 1"),
    ]
    .concat()
}

fn unmasked_answer() -> Vec<u8> {
    [
        msg(b'2', b""),
        row_description("id", 23),
        data_row(b"42"),
        complete("SELECT 1"),
    ]
    .concat()
}

/// What the client gets for the script, the server's bytes taken by the pass
/// (`pass`) or by the scanner; and the audit records.
async fn session(pass: bool) -> (Vec<u8>, Vec<Value>) {
    let store = Store::new(if pass { "pass" } else { "scan" });
    let mut m = masked(&store.0).await;
    let ready = msg(b'Z', b"I");
    // Prepared once (Parse is judged: always the scanner's).
    let prepare = [
        parse("m", "SELECT note FROM t"),
        parse("u", "SELECT id FROM t"),
        msg(b'S', b""),
    ]
    .concat();
    m.relay.cbuf.extend_from_slice(&prepare);
    assert!(m.relay.on_client_bytes().await.expect("client").is_none());
    assert_eq!(read_exact(&mut m.server, prepare.len()).await, prepare);
    let parsed = [msg(b'1', b""), msg(b'1', b""), ready.clone()].concat();
    m.relay.ubuf.extend_from_slice(&parsed);
    assert!(m.relay.on_server_bytes().await.expect("server").is_none());
    assert_eq!(read_cycles(&mut m.client, 1).await, parsed);

    // Masked and unmasked statements pipelined in one read, twice over: one Sync for
    // the first pair, one each for the second.
    let script = [
        run("m"),
        run("u"),
        msg(b'S', b""),
        run("u"),
        msg(b'S', b""),
        run("m"),
        msg(b'S', b""),
    ]
    .concat();
    m.relay.cbuf.extend_from_slice(&script);
    assert!(
        matches!(m.relay.client_pass().expect("client pass"), Pass::Done),
        "a masking session's Bind/Describe/Execute/Sync take the synchronous pass"
    );
    assert_eq!(read_exact(&mut m.server, script.len()).await, script);
    let answers = [
        masked_answer(),
        unmasked_answer(),
        ready.clone(),
        unmasked_answer(),
        ready.clone(),
        masked_answer(),
        ready.clone(),
    ]
    .concat();
    m.relay.ubuf.extend_from_slice(&answers);
    if pass {
        assert!(
            matches!(m.relay.server_pass().expect("server pass"), Pass::Done),
            "the answers take the synchronous pass"
        );
    } else {
        assert!(m.relay.on_server_bytes().await.expect("server").is_none());
    }
    let got = read_cycles(&mut m.client, 3).await;
    drop(m.relay);
    m.audit.flush().await.expect("flush");
    (got, store.statements())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_masked_and_an_unmasked_statement_pipelined_take_the_pass_and_mask_as_the_scanner() {
    let (passed, pass_records) = session(true).await;
    let (scanned, scan_records) = session(false).await;
    assert_eq!(
        passed, scanned,
        "the client sees the same bytes from both paths"
    );
    assert!(
        !contains(&passed, SSN),
        "the masked statement's value is masked"
    );
    assert!(
        contains(&passed, &unmasked_answer()),
        "the unmasked statement's answer is byte-exact"
    );
    // Both masked cycles were rewritten, neither passed as sent.
    assert!(!contains(&passed, &data_row(SSN)));
    assert_eq!(
        pass_records, scan_records,
        "the same audit records from both paths"
    );
    // One `completed` record per Execute (statements 1 and 2 are the Parses), with
    // the kept rows as the client saw them.
    let completed: Vec<_> = pass_records
        .iter()
        .filter(|r| r["phase"] == "completed" || r["phase"] == "whole")
        .filter(|r| r["rows"] == 1)
        .collect();
    assert_eq!(completed.len(), 4, "{pass_records:?}");
    let text = serde_json::to_string(&pass_records).expect("json");
    assert!(!text.contains("123-45-6789"), "{text}");
    assert!(text.contains("\"42\""), "{text}");
}
