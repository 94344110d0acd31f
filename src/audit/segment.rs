//! Segment files on disk: naming, streaming line reads, and crash recovery of the tail.
//!
//! A store is a folder of `audit-<first seq, 20 digits>.jsonl` files; the names sort
//! in seq order and the chain runs on across them. Only the newest segment is ever
//! appended to; older ones were fsynced before the next one was opened.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::StoreError;
use super::record::{check_line, Checked, JournalLine, ZERO_HASH};

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";
/// A line longer than this is not one of ours (statements are capped far below it);
/// reading stops rather than buffering without end.
pub const MAX_LINE: usize = 256 << 20;

pub fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:020}{SUFFIX}")
}

/// The segments in `dir`, oldest first, with the seq each one starts at.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
        else {
            continue;
        };
        if let Ok(seq) = num.parse::<u64>() {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one segment line by line with bounded memory.
///
/// In `fsync` mode the newest segment is preallocated with zeros ahead of the records
/// (overwriting allocated blocks makes each fdatasync several times cheaper than
/// appending, which must also journal the new size), so a run of NUL bytes where a
/// line would start is the end of the data. Records never contain NUL: JSON escapes
/// it. (`batch` mode appends without zeros; a segment may have either tail.)
pub struct Lines {
    reader: BufReader<File>,
    pub path: PathBuf,
    /// Byte offset of the next line.
    pub offset: u64,
    /// Where the zero padding starts, once reached.
    pub padding_at: Option<u64>,
}

/// One line as read: its bytes without the newline, and whether it had one.
pub struct Line {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub complete: bool,
}

impl Lines {
    pub fn open(path: &Path) -> Result<Lines, StoreError> {
        let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
        Ok(Lines {
            reader: BufReader::with_capacity(256 << 10, f),
            path: path.to_path_buf(),
            offset: 0,
            padding_at: None,
        })
    }

    pub fn next_line(&mut self) -> Result<Option<Line>, StoreError> {
        if self.padding_at.is_some() {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| StoreError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let offset = self.offset;
        self.offset += n as u64;
        let complete = bytes.last() == Some(&b'\n');
        if !complete {
            // A torn write into the preallocated zeros: the record part, then padding.
            let data = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if data < bytes.len() {
                bytes.truncate(data);
                self.padding_at = Some(offset + data as u64);
                if data == 0 {
                    return Ok(None);
                }
            }
        }
        if complete {
            bytes.pop();
        } else if bytes.len() > MAX_LINE {
            return Err(StoreError::Invalid(format!(
                "{}: a line at byte {offset} is longer than {MAX_LINE} bytes",
                self.path.display()
            )));
        }
        Ok(Some(Line {
            offset,
            bytes,
            complete,
        }))
    }
}

/// Where appending resumes after [`recover`].
#[derive(Debug, Clone)]
pub struct Tail {
    /// The segment to append to and its valid length; None for an empty store.
    pub segment: Option<(u64, PathBuf, u64)>,
    pub next_seq: u64,
    /// SHA-256 of the last line (the next `prev`), and that record's `hash`.
    pub prev: String,
    pub head_hash: String,
    pub repair: Option<Repair>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub segment: String,
    pub offset: u64,
    pub bytes_cut: u64,
    pub reason: String,
}

/// The last valid record of a segment, and where the valid part ends.
struct Scan {
    last: Option<Checked>,
    valid_len: u64,
    /// Where the data ends (the zero padding starts, or the file ends).
    data_end: u64,
    /// First bad line: offset and why.
    bad: Option<(u64, String)>,
    /// The bad line is the last one and has no newline: a write the crash tore.
    torn: bool,
}

/// Read a segment, checking each line and the chain inside it. Past the first bad
/// line, any line that checks out means the damage is not a torn tail.
fn scan(path: &Path, first_seq: u64, key: Option<&[u8]>, dir: &Path) -> Result<Scan, StoreError> {
    let mut lines = Lines::open(path)?;
    let mut last: Option<Checked> = None;
    let mut bad: Option<(u64, String)> = None;
    let mut valid_len = 0;
    let mut torn = false;
    while let Some(line) = lines.next_line()? {
        if bad.is_some() {
            if line.complete && check_line(&line.bytes, key).is_ok() {
                let expected = last.as_ref().map(|c| c.seq + 1).unwrap_or(first_seq);
                return Err(StoreError::Damaged {
                    dir: dir.display().to_string(),
                    seq: expected,
                    reason: format!(
                        "{} has a bad record at byte {} followed by good ones",
                        path.display(),
                        bad.map(|b| b.0).unwrap_or(0)
                    ),
                });
            }
            continue;
        }
        let problem = if !line.complete {
            Some("the final line has no newline (torn write)".to_string())
        } else {
            match check_line(&line.bytes, key) {
                Err(e) => Some(e),
                Ok(c) => {
                    let expected = last.as_ref().map(|l| l.seq + 1).unwrap_or(first_seq);
                    let linked = last.as_ref().map(|l| l.digest == c.prev).unwrap_or(true);
                    if c.seq != expected || !linked {
                        Some(format!("expected seq {expected} linked to the line before"))
                    } else {
                        valid_len = lines.offset;
                        last = Some(c);
                        None
                    }
                }
            }
        };
        if let Some(p) = problem {
            torn = !line.complete;
            bad = Some((line.offset, p));
        }
    }
    let data_end = lines.padding_at.unwrap_or(lines.offset);
    Ok(Scan {
        last,
        valid_len,
        data_end,
        bad,
        torn,
    })
}

/// Open-time check of the newest segments: find where the chain ends, and cut off a
/// torn tail (a partly written batch that was never acknowledged). Damage anywhere
/// else refuses to open: appending to a broken chain would bury the evidence.
///
/// A torn final line that is the start of the journal's next record (`fsync` mode: the
/// segment only gets what the journal already holds) is completed from it instead:
/// the segment keeps growing, and a tailer that read half the line reads the rest.
pub fn recover(
    dir: &Path,
    key: Option<&[u8]>,
    journal: &[JournalLine],
) -> Result<Tail, StoreError> {
    let segments = list(dir)?;
    let mut repair: Option<Repair> = None;
    let mut append_to: Option<(u64, PathBuf, u64)> = None;
    for (first_seq, path) in segments.iter().rev() {
        let mut s = scan(path, *first_seq, key, dir)?;
        if s.torn && repair.is_none() {
            complete_from_journal(path, *first_seq, &mut s, journal)?;
        }
        if let Some((offset, reason)) = &s.bad {
            if repair.is_some() {
                // Only the newest non-empty segment can hold a torn write.
                return Err(StoreError::Damaged {
                    dir: dir.display().to_string(),
                    seq: s.last.as_ref().map(|c| c.seq + 1).unwrap_or(*first_seq),
                    reason: format!("{}: {reason}", path.display()),
                });
            }
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| StoreError::io(path, e))?;
            f.set_len(s.valid_len)
                .map_err(|e| StoreError::io(path, e))?;
            f.sync_all().map_err(|e| StoreError::io(path, e))?;
            let cut = s.data_end.saturating_sub(s.valid_len);
            tracing::warn!(segment = %path.display(), offset, cut, "audit store: cut a torn final record: {reason}");
            repair = Some(Repair {
                segment: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                offset: *offset,
                bytes_cut: cut,
                reason: reason.clone(),
            });
        }
        if append_to.is_none() {
            append_to = Some((*first_seq, path.clone(), s.valid_len));
        }
        if let Some(last) = s.last {
            if let Some((first, p, _)) = &append_to {
                if *first != last.seq + 1 && p != path {
                    return Err(StoreError::Damaged {
                        dir: dir.display().to_string(),
                        seq: last.seq + 1,
                        reason: format!("{} is empty and named for another seq", p.display()),
                    });
                }
            }
            return Ok(Tail {
                segment: append_to,
                next_seq: last.seq + 1,
                prev: last.digest,
                head_hash: last.hash,
                repair,
            });
        }
        // An empty (or wholly torn) segment: the chain ends in the one before.
    }
    let segment = append_to.filter(|(first, _, _)| *first == 1);
    if segment.is_none() && !segments.is_empty() {
        return Err(StoreError::Damaged {
            dir: dir.display().to_string(),
            seq: 1,
            reason:
                "no segment holds a valid record, but the first segment does not start at seq 1"
                    .into(),
        });
    }
    Ok(Tail {
        segment,
        next_seq: 1,
        prev: ZERO_HASH.into(),
        head_hash: ZERO_HASH.into(),
        repair,
    })
}

/// Completes a torn final line of `path` from the journal's copy of that record, when
/// the torn bytes are the start of it and it follows the segment's last record.
fn complete_from_journal(
    path: &Path,
    first_seq: u64,
    s: &mut Scan,
    journal: &[JournalLine],
) -> Result<(), StoreError> {
    let Some((offset, _)) = s.bad else {
        return Ok(());
    };
    let expected = s.last.as_ref().map(|c| c.seq + 1).unwrap_or(first_seq);
    let Some(whole) = journal.iter().find(|l| {
        l.checked.seq == expected && s.last.as_ref().is_none_or(|c| c.digest == l.checked.prev)
    }) else {
        return Ok(());
    };
    // Only the torn bytes are read (the segment may be large).
    let torn_len = s.data_end.saturating_sub(offset) as usize;
    if torn_len > whole.bytes.len() {
        return Ok(());
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    let mut torn = vec![0u8; torn_len];
    f.read_exact_at(&mut torn, offset)
        .map_err(|e| StoreError::io(path, e))?;
    if !whole.bytes.starts_with(&torn) {
        return Ok(());
    }
    let mut rest = whole.bytes[torn_len..].to_vec();
    rest.push(b'\n');
    f.set_len(s.data_end)
        .and_then(|()| f.write_all_at(&rest, s.data_end))
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io(path, e))?;
    tracing::warn!(segment = %path.display(), seq = expected, "audit store: completed a torn final record from the journal");
    s.valid_len = s.data_end + rest.len() as u64;
    s.data_end = s.valid_len;
    s.last = Some(whole.checked.clone());
    s.bad = None;
    s.torn = false;
    Ok(())
}
