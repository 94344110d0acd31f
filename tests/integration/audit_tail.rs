//! A log shipper tailing the audit store (SPEC §6): the live segment is JSON lines at
//! every moment, so a tailer started before the first statement sees every record
//! once, in order, and nothing else, while pgmoat runs, across segment rotations,
//! and across a SIGKILL and restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::audit::{cli, records, serve, serve_config, sigterm, wait_listening};
use crate::harness::*;

/// What `tail -F` over the store's segments sees: each segment read to its end before
/// the next one (by name) is opened, bytes as they appear.
struct Tailer {
    dir: PathBuf,
    current: Option<(PathBuf, u64)>,
    partial: Vec<u8>,
    lines: Vec<String>,
}

impl Tailer {
    fn new(dir: &Path) -> Tailer {
        Tailer {
            dir: dir.to_path_buf(),
            current: None,
            partial: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("audit-") && n.ends_with(".jsonl")
        });
        v.sort();
        v
    }

    /// Read what is new; panics on anything a shipper could not parse.
    fn poll(&mut self) {
        loop {
            let segs = self.segments();
            let Some((path, offset)) = self
                .current
                .clone()
                .or_else(|| segs.first().map(|p| (p.clone(), 0)))
            else {
                return;
            };
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                bytes.len() as u64 >= offset,
                "{} shrank under the tailer ({} < {offset})",
                path.display(),
                bytes.len()
            );
            let new = &bytes[offset as usize..];
            assert!(!new.contains(&0), "NUL bytes in {}", path.display());
            self.partial.extend_from_slice(new);
            while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=i).collect();
                let text = String::from_utf8(line[..i].to_vec()).expect("UTF-8");
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {text}"));
                self.lines.push(text);
            }
            self.current = Some((path.clone(), bytes.len() as u64));
            // Move on only once the next segment exists and this one ends on a line.
            match segs.iter().find(|p| **p > path) {
                Some(next) if self.partial.is_empty() => {
                    // Whatever was appended between the read above and now.
                    let again = std::fs::read(&path).unwrap_or_default();
                    if again.len() as u64 > bytes.len() as u64 {
                        continue;
                    }
                    self.current = Some((next.clone(), 0));
                }
                _ => return,
            }
        }
    }
}

async fn load(port: u16, tag: &str, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    let url = format!(
        "host=127.0.0.1 port={port} user={AGENT} password={AGENT_PW} dbname=demo sslmode=disable"
    );
    let mut workers = Vec::new();
    for w in 0..4 {
        let (url, acked, stop, tag) = (url.clone(), acked.clone(), stop.clone(), tag.to_owned());
        workers.push(tokio::spawn(async move {
            let Ok(c) = connect_url(&url).await else {
                return;
            };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let marker = format!("{tag}-{w}-{i}");
                if c.simple_query(&format!("SELECT '{marker}'")).await.is_err() {
                    return;
                }
                acked.lock().unwrap().push(marker);
                i += 1;
            }
        }));
    }
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tailer_sees_every_record_once_in_order_across_a_crash() {
    let store = TempDir::new("pgmoat-audit-tail");
    // Small segments: the tailer follows several rotations.
    let (port, cfg) = serve_config(store.path(), "  segment_bytes: 65536\n").await;

    let tailer = Arc::new(Mutex::new(Tailer::new(store.path())));
    let tailing = Arc::new(AtomicBool::new(true));
    let follow = {
        let (tailer, tailing) = (tailer.clone(), tailing.clone());
        std::thread::spawn(move || {
            while tailing.load(Ordering::Relaxed) {
                tailer.lock().unwrap().poll();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut child = serve(&cfg);
    wait_listening(port).await;
    // Run until enough is acknowledged to span segments, then SIGKILL mid-load.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(port, "before", acked.clone(), stop.clone()));
    while acked.lock().unwrap().len() < 400 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    let _ = running.await;

    // Restart, more statements, a clean stop.
    let mut child = serve(&cfg);
    wait_listening(port).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(port, "after", acked.clone(), stop.clone()));
    let target = acked.lock().unwrap().len() + 200;
    while acked.lock().unwrap().len() < target {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = running.await;
    sigterm(child.id());
    let _ = child.wait();
    tailing.store(false, Ordering::Relaxed);
    follow.join().expect("the tailer never saw a bad byte");
    let mut t = tailer.lock().unwrap();
    t.poll();
    assert!(t.partial.is_empty(), "the store ends on a whole line");

    // Exactly the store's records, each once, in order.
    let seqs: Vec<u64> = t
        .lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let stored = records(store.path());
    assert_eq!(
        stored.len(),
        t.lines.len(),
        "the tailer saw the whole store"
    );
    assert!(t.segments().len() > 2, "rotated: {:?}", t.segments());
    let (code, out, err) = cli(&["audit", "verify", store.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // Nothing acknowledged is missing from what the tailer saw.
    let seen: std::collections::HashSet<String> = t
        .lines
        .iter()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["sql"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let missing: Vec<_> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|m| !seen.contains(&format!("SELECT '{m}'")))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never tailed: {missing:?}"
    );
}
