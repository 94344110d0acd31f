//! `pgmoat audit verify`: walk every segment in order, line by line, checking each
//! record's hash, its seq (gap-free from 1) and its `prev` link; optionally compare
//! against a head exported to a sink, which is what catches a cut-off tail.

use std::path::Path;

use super::error::StoreError;
use super::record::Head;
use super::record::{check_line, Chain};
use super::segment::{list, Lines};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub records: u64,
    pub segments: usize,
    pub head: Option<Head>,
    /// Seqs of `repair` records (torn tails cut at a restart).
    pub repairs: Vec<u64>,
}

/// The first record that does not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub seq: u64,
    pub segment: String,
    pub reason: String,
}

/// Parse `SEQ:HASH` as given to `--head`.
pub fn parse_head(s: &str) -> Result<Head, String> {
    let (seq, hash) = s
        .split_once(':')
        .ok_or_else(|| format!("--head {s:?}: expected SEQ:HASH"))?;
    let seq = seq
        .parse()
        .map_err(|_| format!("--head {s:?}: SEQ must be a number"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("--head {s:?}: HASH must be 64 hex digits"));
    }
    Ok(Head {
        seq,
        hash: hash.to_ascii_lowercase(),
    })
}

pub fn verify(
    dir: &Path,
    key: Option<&[u8]>,
    expect: Option<&Head>,
) -> Result<Result<Report, Bad>, StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::Invalid(format!(
            "{}: not a folder (an audit store is a folder of segment files)",
            dir.display()
        )));
    }
    let segments = list(dir)?;
    let mut chain = Chain::default();
    let mut head: Option<Head> = None;
    let mut repairs = Vec::new();
    for (first_seq, path) in &segments {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |seq: u64, reason: String| Bad {
            seq,
            segment: name.clone(),
            reason,
        };
        let mut lines = Lines::open(path)?;
        let mut first = true;
        while let Some(line) = lines.next_line()? {
            let seq = chain.next_seq;
            if first && *first_seq != seq {
                return Ok(Err(bad(
                    seq,
                    format!(
                        "segment is named for seq {first_seq} but follows seq {}",
                        seq - 1
                    ),
                )));
            }
            first = false;
            if !line.complete {
                return Ok(Err(bad(
                    seq,
                    "the final line is torn (no newline); `pgmoat serve` repairs it on start"
                        .into(),
                )));
            }
            let checked = match check_line(&line.bytes, key) {
                Ok(c) => c,
                Err(e) => return Ok(Err(bad(seq, e))),
            };
            if let Err(e) = chain.accept(&checked) {
                return Ok(Err(bad(seq, e)));
            }
            if let Some(h) = expect {
                if h.seq == checked.seq && h.hash != checked.hash {
                    return Ok(Err(bad(seq, "differs from the exported head".into())));
                }
            }
            if checked.kind == "ssh_channel" {
                if let Err(e) = super::ssh::check_recording(dir, &line.bytes) {
                    return Ok(Err(bad(seq, e)));
                }
            }
            if checked.kind == "repair" {
                repairs.push(checked.seq);
            }
            head = Some(Head {
                seq: checked.seq,
                hash: checked.hash,
            });
        }
    }
    let last = chain.next_seq - 1;
    if let Some(h) = expect {
        if h.seq > last {
            return Ok(Err(Bad {
                seq: last + 1,
                segment: segments
                    .last()
                    .and_then(|(_, p)| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                reason: format!(
                    "the store ends at seq {last} but the exported head is seq {}: records were cut off the end",
                    h.seq
                ),
            }));
        }
    }
    Ok(Ok(Report {
        records: last,
        segments: segments.len(),
        head,
        repairs,
    }))
}
