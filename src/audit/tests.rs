//! Store tests: chain, rotation, HMAC, tamper detection, torn-tail repair, group
//! commit, and refusal when the disk will not take a record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::event::{Decided, Event, Statement};
use super::verify::{verify, Bad};
use super::{Audit, Head};
use crate::config::{AuditConfig, AuditDurability};
use crate::metrics::Metrics;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("pgmoat-audit-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path) -> AuditConfig {
    AuditConfig::new(dir)
}

fn stmt(n: u64) -> Event {
    Event::Statement(Statement::Decided(Decided {
        statement: n,
        protocol: "simple".into(),
        sql: format!("SELECT {n}"),
        kinds: vec!["select".into()],
        action: "allow".into(),
        ..Default::default()
    }))
}

async fn write(cfg: &AuditConfig, n: u64) -> Head {
    let audit = Audit::open(cfg, Arc::new(Metrics::default())).unwrap();
    let session: Arc<str> = Arc::from("s1");
    for i in 1..=n {
        audit.append(Some(&session), stmt(i)).await.unwrap();
    }
    let head = audit.flush().await.unwrap().unwrap();
    drop(audit);
    head
}

/// All lines of all segments once they hold at least `n`: an answered record is on
/// disk in the journal and reaches the segment moments later.
fn lines_when(dir: &Path, n: usize) -> Vec<(PathBuf, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let all = lines(dir);
        if all.len() >= n || std::time::Instant::now() > deadline {
            return all;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// All lines of all segments, in order.
fn lines(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for (_, p) in super::segment::list(dir).unwrap() {
        for l in std::fs::read_to_string(&p).unwrap().lines() {
            out.push((p.clone(), l.to_string()));
        }
    }
    out
}

/// Rewrite the store as one segment holding `lines`.
fn rewrite(dir: &Path, lines: &[String]) {
    for (_, p) in super::segment::list(dir).unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join(super::segment::segment_name(1)), text).unwrap();
}

fn bad_seq(dir: &Path, head: Option<&Head>) -> u64 {
    match verify(dir, None, head).unwrap() {
        Ok(r) => panic!("verified although damaged: {r:?}"),
        Err(Bad { seq, .. }) => seq,
    }
}

#[tokio::test]
async fn records_chain_and_verify() {
    let d = Dir::new("chain");
    let head = write(&config(&d.0), 5).await;
    assert_eq!(head.seq, 5);
    let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
    assert_eq!((r.records, r.segments), (5, 1));
    assert_eq!(r.head, Some(head));
    let all = lines(&d.0);
    assert!(all[0]
        .1
        .contains(r#""prev":"0000000000000000000000000000000000000000000000000000000000000000""#));
    assert!(all[1].1.starts_with(r#"{"seq":2,"ts":""#));
    assert!(all[1]
        .1
        .contains(r#""session":"s1","type":"statement","phase":"decided","statement":2"#));
    // Reopening continues the chain.
    let head = write(&config(&d.0), 2).await;
    assert_eq!(head.seq, 7);
    assert!(verify(&d.0, None, Some(&head)).unwrap().is_ok());
}

#[tokio::test]
async fn segments_rotate_by_size_and_chain_across() {
    let d = Dir::new("rotate");
    let mut cfg = config(&d.0);
    cfg.segment_bytes = 1; // every batch opens a new segment
    let head = write(&cfg, 4).await;
    let segs = super::segment::list(&d.0).unwrap();
    assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
    assert_eq!((r.records, r.segments), (4, 4));
    // Removing a middle segment is caught where the gap starts.
    std::fs::remove_file(&segs[2].1).unwrap();
    assert_eq!(bad_seq(&d.0, None), 3);
}

#[tokio::test]
async fn hmac_keyed_chain() {
    let d = Dir::new("hmac");
    let mut cfg = config(&d.0);
    cfg.hmac_key = Some(crate::config::Secret::new("k3y"));
    write(&cfg, 3).await;
    assert!(verify(&d.0, Some(b"k3y"), None).unwrap().is_ok());
    assert_eq!(
        verify(&d.0, Some(b"other"), None).unwrap().unwrap_err().seq,
        1
    );
    assert_eq!(bad_seq(&d.0, None), 1);
    // A forger who rewrites a record and recomputes plain SHA-256 hashes still fails.
    let mut all: Vec<String> = lines(&d.0).into_iter().map(|l| l.1).collect();
    all[1] = all[1].replace("SELECT 2", "SELECT 9");
    rewrite(&d.0, &all);
    assert_eq!(
        verify(&d.0, Some(b"k3y"), None).unwrap().unwrap_err().seq,
        2
    );
}

#[tokio::test]
async fn every_kind_of_tampering_is_caught() {
    let d = Dir::new("tamper");
    let head = write(&config(&d.0), 6).await;
    let orig: Vec<String> = lines(&d.0).into_iter().map(|l| l.1).collect();

    // One byte edited.
    let mut v = orig.clone();
    v[2] = v[2].replacen("SELECT 3", "SELECT 4", 1);
    rewrite(&d.0, &v);
    assert_eq!(bad_seq(&d.0, None), 3);

    // A line deleted.
    let mut v = orig.clone();
    v.remove(3);
    rewrite(&d.0, &v);
    assert_eq!(bad_seq(&d.0, None), 4);

    // A line inserted (a copy of another).
    let mut v = orig.clone();
    v.insert(2, orig[0].clone());
    rewrite(&d.0, &v);
    assert_eq!(bad_seq(&d.0, None), 3);

    // Two lines swapped.
    let mut v = orig.clone();
    v.swap(1, 2);
    rewrite(&d.0, &v);
    assert_eq!(bad_seq(&d.0, None), 2);

    // The tail cut off: the chain itself is fine, the exported head is not there.
    rewrite(&d.0, &orig[..4]);
    assert!(verify(&d.0, None, None).unwrap().is_ok());
    assert_eq!(bad_seq(&d.0, Some(&head)), 5);

    // Cut and re-extended with a forged tail: the head's hash differs.
    rewrite(&d.0, &orig);
    let forged = Head {
        seq: head.seq,
        hash: "ab".repeat(32),
    };
    assert_eq!(bad_seq(&d.0, Some(&forged)), 6);
    assert!(verify(&d.0, None, Some(&head)).unwrap().is_ok());
}

#[tokio::test]
async fn torn_tail_is_cut_and_the_repair_recorded() {
    let d = Dir::new("torn");
    write(&config(&d.0), 3).await;
    let seg = super::segment::list(&d.0).unwrap().pop().unwrap().1;
    let before = std::fs::metadata(&seg).unwrap().len();
    // A crash mid-write: half a record, no newline.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    let torn = br#"{"seq":4,"ts":"2026-12-01T00:00:00.0Z","ses"#;
    std::io::Write::write_all(&mut f, torn).unwrap();
    drop(f);
    assert!(verify(&d.0, None, None).unwrap().is_err());
    let head = write(&config(&d.0), 1).await;
    assert_eq!(head.seq, 5, "3 records, the repair, then the new one");
    let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
    assert_eq!(r.repairs, [4]);
    let all = lines(&d.0);
    assert!(all[3].1.contains(r#""type":"repair""#), "{}", all[3].1);
    assert!(all[3].1.contains(&format!(r#""offset":{before}"#)));
    assert!(
        all[3].1.contains(&format!(r#""bytes_cut":{}"#, torn.len())),
        "{}",
        all[3].1
    );
    assert!(all[4].1.contains("SELECT 1"));

    // A complete final line with a bad hash (garbage written by a dying disk) too.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"\0\0\0\0\n").unwrap();
    drop(f);
    let head = write(&config(&d.0), 0).await;
    assert!(verify(&d.0, None, Some(&head)).unwrap().is_ok());
}

#[tokio::test]
async fn damage_before_the_tail_refuses_to_open() {
    let d = Dir::new("damaged");
    write(&config(&d.0), 4).await;
    let mut v: Vec<String> = lines(&d.0).into_iter().map(|l| l.1).collect();
    v[1] = v[1].replace("SELECT 2", "SELECT 7");
    rewrite(&d.0, &v);
    let e = Audit::open(&config(&d.0), Arc::new(Metrics::default()))
        .err()
        .expect("a damaged store must not be appended to")
        .to_string();
    assert!(e.contains("damaged at seq 2"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_covers_concurrent_appends_with_few_fsyncs() {
    let d = Dir::new("group");
    let audit = Audit::open(&config(&d.0), Arc::new(Metrics::default())).unwrap();
    let before = audit.fsyncs();
    let n = 400u64;
    let futs = (1..=n).map(|i| {
        let a = audit.clone();
        async move {
            let s: Arc<str> = Arc::from(format!("s{i}"));
            a.append(Some(&s), stmt(i)).await
        }
    });
    for r in futures_util::future::join_all(futs).await {
        r.unwrap();
    }
    let fsyncs = audit.fsyncs() - before;
    eprintln!("group commit: {n} appends, {fsyncs} fsyncs");
    // Every append resolved only after an fsync covering it, and one fsync covered many.
    assert!(
        fsyncs >= 1 && fsyncs <= n / 10,
        "{fsyncs} fsyncs for {n} records"
    );
    // The segment follows the journal's flush by moments: a flush request is answered
    // only once the segment holds what it covers.
    audit.flush().await.unwrap();
    assert_eq!(verify(&d.0, None, None).unwrap().unwrap().records, n);
}

/// With flushes one at a time (the default) or overlapping: an answered record reaches
/// the segment right after (a tailer sees it), the chain holds across rotations, and
/// nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_records_reach_the_segment_in_order() {
    for parallel in [1, 3] {
        answered_records_reach_the_segment(parallel).await;
    }
}

async fn answered_records_reach_the_segment(parallel_flushes: usize) {
    let d = Dir::new("overlap");
    let mut cfg = config(&d.0);
    cfg.segment_bytes = 4096;
    cfg.parallel_flushes = parallel_flushes;
    let audit = Audit::open(&cfg, Arc::new(Metrics::default())).unwrap();
    let dir = d.0.clone();
    let tasks = (0..16u64).map(|t| {
        let a = audit.clone();
        let dir = dir.clone();
        tokio::spawn(async move {
            let s: Arc<str> = Arc::from(format!("s{t}"));
            for i in 0..60u64 {
                let n = t * 1000 + i;
                a.append(Some(&s), stmt(n)).await.unwrap();
                if i % 20 == 0 {
                    // Answered: durable in the journal, and in a segment, whole, as
                    // soon as the writer has appended it.
                    let want = format!("\"sql\":\"SELECT {n}\"");
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                    while !lines(&dir).iter().any(|(_, l)| l.contains(&want)) {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "record {n} answered but never in the segment"
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    }
                }
            }
        })
    });
    for t in futures_util::future::join_all(tasks).await {
        t.unwrap();
    }
    let all = lines_when(&d.0, 16 * 60);
    assert_eq!(all.len(), 16 * 60, "every answered record once");
    assert!(super::segment::list(&d.0).unwrap().len() > 2, "rotated");
    drop(audit);
    assert_eq!(verify(&d.0, None, None).unwrap().unwrap().records, 16 * 60);
}

#[tokio::test]
async fn batch_mode_resolves_on_enqueue_and_flushes_soon() {
    let d = Dir::new("batch");
    let mut cfg = config(&d.0);
    cfg.durability = AuditDurability::Batch;
    let audit = Audit::open(&cfg, Arc::new(Metrics::default())).unwrap();
    for i in 1..=50 {
        audit.append(None, stmt(i)).await.unwrap();
    }
    // Nobody asks for a flush: the interval writes them (within moments; a loaded CI
    // machine once needed more than 200 ms, so the wait is generous).
    let mut records = 0;
    for _ in 0..250 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Read while the writer may be mid-write: only the last look must be whole.
        records = verify(&d.0, None, None)
            .ok()
            .and_then(|r| r.ok())
            .map(|r| r.records)
            .unwrap_or(0);
        // The interval's fdatasync follows its write: wait for both.
        if records == 50 && audit.fsyncs() >= 1 {
            break;
        }
    }
    assert_eq!(records, 50);
    assert_eq!(verify(&d.0, None, None).unwrap().unwrap().records, 50);
    assert!(audit.fsyncs() >= 1 && audit.fsyncs() < 50);
}

#[tokio::test]
async fn a_record_the_disk_refuses_is_an_error() {
    let d = Dir::new("full");
    let mut cfg = config(&d.0);
    cfg.segment_bytes = 1;
    let metrics = Arc::new(Metrics::default());
    let audit = Audit::open(&cfg, Arc::clone(&metrics)).unwrap();
    audit.append(None, stmt(1)).await.unwrap();
    // The next record opens segment 2, which is the full device: not a file that
    // could ever be read back, so the store refuses to write there.
    std::os::unix::fs::symlink("/dev/full", d.0.join(super::segment::segment_name(2))).unwrap();
    let e = audit.append(None, stmt(2)).await.unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    assert!(audit.append(None, stmt(3)).await.is_err());
    assert!(
        metrics
            .audit_write_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

/// Sets a file's immutable flag with `chattr` (e2fsprogs, in every Debian; root, and
/// ext4, xfs, btrfs or tmpfs): writes through a handle opened before then fail with
/// EPERM. The flag is cleared when the guard drops, however the test ends, so that
/// its folder can be removed.
fn make_immutable(path: &Path) -> Immutable {
    let out = std::process::Command::new("chattr")
        .arg("+i")
        .arg(path)
        .output()
        .expect("chattr (e2fsprogs) runs");
    assert!(
        out.status.success(),
        "the test needs root and a file system with chattr +i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Immutable(path.to_owned())
}

struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A record whose flush came back is on disk in the journal, so its statement goes on
/// even if appending it to the segment then fails; nothing after it is accepted, and
/// the next start completes the segment from the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_fails_after_the_flush_keeps_the_record_and_stops_the_store() {
    for parallel in [1, 3] {
        let d = Dir::new("afterflush");
        let mut cfg = config(&d.0);
        cfg.parallel_flushes = parallel;
        let audit = Audit::open(&cfg, Arc::new(Metrics::default())).unwrap();
        audit.append(None, stmt(1)).await.unwrap();
        let seg = lines_when(&d.0, 1)[0].0.clone();
        let immutable = make_immutable(&seg);
        let answered = audit.append(None, stmt(2)).await;
        let after = audit.append(None, stmt(3)).await;
        drop(immutable);
        answered.expect("durable in the journal: answered");
        let e = after.expect_err("the segment is behind: nothing more is accepted");
        assert!(e.to_string().contains("append to the segment"), "{e}");
        assert_eq!(
            lines(&d.0).len(),
            1,
            "the append failed ({parallel}): {:?}",
            lines(&d.0)
        );
        audit.shutdown().await;
        drop(audit);
        let head = write(&cfg, 0).await;
        let sql: Vec<String> = lines(&d.0)
            .iter()
            .map(|(_, l)| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v["sql"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(sql, ["SELECT 1", "SELECT 2"], "parallel_flushes {parallel}");
        let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
        assert_eq!(r.records, 2);
    }
}

#[tokio::test]
async fn preallocated_zeros_after_a_crash_are_padding_not_damage() {
    let d = Dir::new("padding");
    write(&config(&d.0), 3).await;
    let seg = super::segment::list(&d.0).unwrap().pop().unwrap().1;
    // What a SIGKILL leaves: records, then the zeros written ahead of them.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 5000]).unwrap();
    drop(f);
    assert_eq!(verify(&d.0, None, None).unwrap().unwrap().records, 3);
    let head = write(&config(&d.0), 2).await;
    let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
    assert_eq!((r.records, r.repairs.len()), (5, 0), "no repair needed");
    // A torn record written into the zeros is cut, and only its own bytes counted.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":6,\"ts\"").unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 3000]).unwrap();
    drop(f);
    let head = write(&config(&d.0), 0).await;
    let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
    assert_eq!(r.repairs, [6]);
    let repair = lines(&d.0).pop().unwrap().1;
    assert!(repair.contains(r#""bytes_cut":13"#), "{repair}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_sink_gets_the_records_and_the_head() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let seen2 = Arc::clone(&seen);
    // A minimal HTTP/1.1 server: requests one after another on each connection
    // (the client keeps connections alive), any header case.
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                return;
            };
            let seen2 = Arc::clone(&seen2);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let body = loop {
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                            let len: usize = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length").then(|| v.trim())
                                })
                                .unwrap()
                                .parse()
                                .unwrap();
                            if rest.len() >= len {
                                assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
                                let consumed = head.len() + 4 + len;
                                buf.drain(..consumed);
                                break rest[..len].to_owned();
                            }
                        }
                        let n = c.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    let batch: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
                    seen2.lock().unwrap().extend(batch);
                    let _ = c
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    let d = Dir::new("webhook");
    let mut cfg = config(&d.0);
    cfg.sinks = vec![crate::config::AuditSink::Webhook {
        url: crate::config::Secret::new(url),
    }];
    let metrics = Arc::new(Metrics::default());
    let audit = Audit::open(&cfg, Arc::clone(&metrics)).unwrap();
    for i in 1..=3 {
        audit.append(None, stmt(i)).await.unwrap();
    }
    let head = audit.flush().await.unwrap().unwrap();
    let t0 = std::time::Instant::now();
    while !seen.lock().unwrap().iter().any(|v| v["type"] == "head") {
        assert!(t0.elapsed().as_secs() < 10, "no head arrived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let got = seen.lock().unwrap().clone();
    let seqs: Vec<u64> = got
        .iter()
        .filter(|v| v["type"] == "statement")
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let h = got.iter().find(|v| v["type"] == "head").unwrap();
    assert_eq!(h["seq"], head.seq);
    assert_eq!(h["hash"], head.hash.as_str());
    audit.shutdown().await;
    assert_eq!(
        metrics
            .audit_sink_lag
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// The live segment holds nothing but whole records in `fsync` mode: no zeros ahead,
/// its size is its records (a tailer sees it grow).
#[tokio::test]
async fn fsync_mode_segments_are_json_lines_only() {
    let d = Dir::new("jsonl");
    let cfg = config(&d.0);
    assert_eq!(cfg.durability, AuditDurability::Fsync);
    let audit = Audit::open(&cfg, Arc::new(Metrics::default())).unwrap();
    let seg = super::segment::list(&d.0).unwrap();
    let mut sizes = Vec::new();
    for i in 1..=5 {
        audit.append(None, stmt(i)).await.unwrap();
        lines_when(&d.0, i as usize);
        let (_, p) = super::segment::list(&d.0).unwrap().pop().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // Acknowledged means on disk (the journal), then in the segment: whole lines,
        // no NUL.
        assert!(!bytes.contains(&0), "no padding in the live segment");
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count() as u64, i);
        sizes.push(bytes.len());
    }
    assert!(
        seg.len() <= 1 && sizes.windows(2).all(|w| w[0] < w[1]),
        "{sizes:?}"
    );
    assert!(
        super::journal::path(&d.0).exists(),
        "the journal takes the zeros"
    );
    drop(audit);
    assert_eq!(verify(&d.0, None, None).unwrap().unwrap().records, 5);
}

/// A crash between the journal's flush and the segment's write: the records are
/// acknowledged, so the next start puts them into the segment, once each.
#[tokio::test]
async fn records_durable_in_the_journal_are_replayed_into_the_segment() {
    let d = Dir::new("replay");
    let cfg = config(&d.0);
    write(&cfg, 6).await;
    let all = lines(&d.0);
    assert_eq!(all.len(), 6);
    // Each record written so far is in the journal too (it has not wrapped). Cut the
    // segment back to 3 records, as if the last appends had never happened.
    let seg = &all[0].0;
    let keep: String = all[..3].iter().map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(seg, keep).unwrap();
    let head = write(&cfg, 2).await;
    let after = lines(&d.0);
    let seqs: Vec<u64> = after
        .iter()
        .map(|(_, l)| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>(), "replayed once, in order");
    assert_eq!(after[..6], all[..], "the very same records");
    let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
    assert_eq!((r.records, r.repairs.len()), (8, 0));
    // A journal record that does not follow the store's last one is not replayed
    // into it: the store refuses to open rather than bury it.
    let journal = super::journal::path(&d.0);
    let mut j = std::fs::read(&journal).unwrap();
    let seg_bytes = std::fs::read(seg).unwrap();
    let cut = seg_bytes.len() - after[7].1.len() - 1;
    std::fs::write(seg, &seg_bytes[..cut]).unwrap();
    // Tamper with the journal's copy of record 8: its prev no longer links.
    let text = String::from_utf8_lossy(&j).into_owned();
    let line8 = &after[7].1;
    let at = text
        .find(line8.as_str())
        .expect("record 8 is in the journal");
    let prev_at = at + line8.find("\"prev\":\"").unwrap() + 8;
    j[prev_at] = if j[prev_at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&journal, &j).unwrap();
    match Audit::open(&cfg, Arc::new(Metrics::default())) {
        Ok(_) => {
            // A tampered line fails its own hash: it is where the journal ends, so
            // record 8 is simply gone from the tail (verify against the head says so).
            assert!(verify(&d.0, None, Some(&head)).unwrap().is_err());
        }
        Err(e) => assert!(e.to_string().contains("journal"), "{e}"),
    }
}

/// `batch` mode has no journal: one left by an earlier `fsync` run is replayed, then
/// removed.
#[tokio::test]
async fn batch_mode_replays_and_removes_the_journal() {
    let d = Dir::new("batchjournal");
    write(&config(&d.0), 4).await;
    let seg = lines(&d.0)[0].0.clone();
    let all = lines(&d.0);
    let keep: String = all[..2].iter().map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&seg, keep).unwrap();
    let mut cfg = config(&d.0);
    cfg.durability = AuditDurability::Batch;
    write(&cfg, 1).await;
    assert!(!super::journal::path(&d.0).exists());
    assert_eq!(verify(&d.0, None, None).unwrap().unwrap().records, 5);
}

/// A SIGKILL in the middle of the segment's append leaves half a line: it is completed
/// from the journal, never cut, so a tailer that read half of it reads the rest.
#[tokio::test]
async fn a_torn_append_is_completed_from_the_journal() {
    let d = Dir::new("torn-journal");
    let cfg = config(&d.0);
    write(&cfg, 4).await;
    let all = lines(&d.0);
    let seg = all[0].0.clone();
    let full = std::fs::read(&seg).unwrap();
    // Records 1-2 whole, half of record 3, nothing of 4.
    let two: usize = all[..2].iter().map(|(_, l)| l.len() + 1).sum();
    let torn_at = two + all[2].1.len() / 2;
    std::fs::write(&seg, &full[..torn_at]).unwrap();
    let head = write(&cfg, 1).await;
    let after = std::fs::read(&seg).unwrap();
    assert_eq!(
        &after[..full.len()],
        &full[..],
        "grown, never cut: the same bytes"
    );
    let r = verify(&d.0, None, Some(&head)).unwrap().unwrap();
    assert_eq!((r.records, r.repairs.len()), (5, 0), "completed, no repair");
}
