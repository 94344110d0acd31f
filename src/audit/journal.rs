//! The `fsync` mode's journal: a preallocated file beside the segments that makes each
//! statement's record durable cheaply, while the segments stay plain JSON lines.
//!
//! Why: an `fdatasync` of a file that grows must also commit the new size to the file
//! system's journal, which on the disks measured costs several times a flush of blocks
//! already allocated. Writing over zeros written ahead avoids that, but zeros in the live
//! segment are not JSON lines: a log shipper tailing it reads NUL bytes and, since the
//! size no longer grows, misses later records (SPEC §6: the live segment is JSON lines at
//! every moment). So the zeros live here instead.
//!
//! How: records are sealed, written over the journal's zeros and fdatasynced there (one
//! flush per group commit, as before); only then are the same bytes appended to the
//! segment (page cache only: a tailer sees a record once it is durable, and never one a
//! crash could take back). The segment is fsynced when it rotates, when the journal
//! wraps and at a clean stop. After a crash the journal holds every record that was
//! acknowledged: [`replay`] appends to the segment those it lacks, so none is lost and
//! none appears twice. A segment write the crash tore is completed from the journal
//! rather than cut off ([`super::segment::recover`]): the segment only ever grows, so a
//! tailer that read half a line reads the rest of it.
//!
//! The journal is reused from its start once everything in it is in a synced segment;
//! what the previous round left behind further on is told apart by the chain (its
//! sequence numbers are lower, or a torn line breaks off), so it is never replayed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::StoreError;
use super::record::{check_line, JournalLine};
use super::segment::{segment_name, Lines, Tail};

/// The journal's name in the store folder (not an `audit-*.jsonl` segment name, so
/// `verify`, `sessions` and `replay` never read it).
pub const NAME: &str = "audit.journal";

/// Past this many bytes the journal starts over (after the segment is synced).
pub const WRAP_BYTES: u64 = 32 << 20;

/// Zeros written ahead of the records at a time.
pub const PREALLOC: u64 = 1 << 20;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

/// The journal's records, in order, up to where this round's writes end (a torn or
/// otherwise unreadable line). Empty when there is no journal.
pub fn load(dir: &Path, key: Option<&[u8]>) -> Result<Vec<JournalLine>, StoreError> {
    let journal = path(dir);
    if !journal.exists() {
        return Ok(Vec::new());
    }
    let mut lines = Lines::open(&journal)?;
    let mut out = Vec::new();
    while let Some(line) = lines.next_line()? {
        if !line.complete {
            break; // torn: never acknowledged
        }
        let Ok(checked) = check_line(&line.bytes, key) else {
            break;
        };
        out.push(JournalLine {
            checked,
            bytes: line.bytes,
        });
    }
    Ok(out)
}

/// The journal's record that follows `seq` in this round, if it holds one.
pub fn next_after(lines: &[JournalLine], seq: Option<u64>) -> Option<&JournalLine> {
    match seq {
        Some(seq) => lines.iter().find(|l| l.checked.seq == seq + 1),
        None => lines.first(),
    }
}

/// Append to the store's newest segment the journal's records that it lacks (those a
/// crash caught between the journal's flush and the segment's write), then sync the
/// segment. Returns how many records were replayed.
pub fn replay(dir: &Path, tail: &mut Tail, lines: &[JournalLine]) -> Result<u64, StoreError> {
    let mut missing: Vec<u8> = Vec::new();
    let mut replayed = 0u64;
    let (mut next_seq, mut prev, mut head) =
        (tail.next_seq, tail.prev.clone(), tail.head_hash.clone());
    for l in lines {
        let c = &l.checked;
        if c.seq < next_seq {
            if replayed > 0 {
                break; // the previous round's leftovers
            }
            continue; // already in the segments
        }
        if c.seq != next_seq {
            // After the segment's end with a gap: a leftover of an older round (this
            // round's first record is always the segment's next one).
            break;
        }
        if c.prev != prev {
            return Err(StoreError::Damaged {
                dir: dir.display().to_string(),
                seq: c.seq,
                reason: format!(
                    "{} holds record {} that does not follow the store's last record",
                    path(dir).display(),
                    c.seq
                ),
            });
        }
        missing.extend_from_slice(&l.bytes);
        missing.push(b'\n');
        next_seq = c.seq + 1;
        prev = c.digest.clone();
        head = c.hash.clone();
        replayed += 1;
    }
    if replayed == 0 {
        if !lines.is_empty() {
            // The segment has every record the journal holds, perhaps only in the page
            // cache (a kill -9 after the appends): the journal starts over next, so the
            // segment must be durable first.
            if let Some((_, seg_path, _)) = &tail.segment {
                File::open(seg_path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| StoreError::io(seg_path, e))?;
            }
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io(dir, e))?;
        }
        return Ok(0);
    }
    let (first, seg_path, len) = match tail.segment.take() {
        Some(s) => s,
        None => (tail.next_seq, dir.join(segment_name(tail.next_seq)), 0),
    };
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&seg_path)
        .map_err(|e| StoreError::io(&seg_path, e))?;
    // Whatever lies past the valid part (old zero padding) goes first.
    f.set_len(len).map_err(|e| StoreError::io(&seg_path, e))?;
    f.write_all_at(&missing, len)
        .and_then(|()| f.flush())
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io(&seg_path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))?;
    tracing::warn!(
        replayed,
        segment = %seg_path.display(),
        "audit store: records that were durable in the journal were added to the segment"
    );
    tail.segment = Some((first, seg_path, len + missing.len() as u64));
    tail.next_seq = next_seq;
    tail.prev = prev;
    tail.head_hash = head;
    Ok(replayed)
}

/// The open journal of a running writer.
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    pub len: u64,
    /// How far zeros have been written.
    prealloc_end: u64,
}

impl Journal {
    /// Opens (or creates) the journal; it starts over from its beginning, since
    /// [`replay`] has put everything in it into the segments.
    pub fn open(dir: &Path) -> std::io::Result<Journal> {
        let p = path(dir);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)?;
        let size = file.metadata()?.len();
        File::open(dir)?.sync_all()?;
        Ok(Journal {
            file,
            path: p,
            len: 0,
            prealloc_end: size,
        })
    }

    /// Writes `bytes` after the journal's records, over zeros written ahead.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let end = self.len + bytes.len() as u64;
        if end > self.prealloc_end {
            let zeros = vec![0u8; (end + PREALLOC - self.prealloc_end) as usize];
            self.file.write_all_at(&zeros, self.prealloc_end)?;
            self.prealloc_end = end + PREALLOC;
        }
        self.file.write_all_at(bytes, self.len)?;
        self.len = end;
        Ok(())
    }

    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Another handle on the journal, opened on its own (its own open file
    /// description, so it hears of a writeback error itself), for flushes run off the
    /// writer thread.
    pub fn flush_handle(&self) -> std::io::Result<File> {
        OpenOptions::new().write(true).open(&self.path)
    }

    /// Starts over from the beginning: everything in it is in a synced segment.
    pub fn restart(&mut self) {
        self.len = 0;
    }
}
