//! The one writer: a dedicated thread that owns the newest segment.
//!
//! Sessions queue encoded records in the shared buffer of [`super::queue`]; the writer
//! takes all of it at once. `fsync` mode is group commit: each take is written with
//! one `write` and covered by one `fdatasync`, and only then is every waiting record
//! answered, whichever sessions they came from. While that fdatasync runs, new records
//! queue up and the next take covers them all, so the cost per record falls as load
//! rises. `batch` mode answers on enqueue and writes + fdatasyncs every
//! `flush_interval`, joining a statement's two records into one when they meet in one
//! take ([`plan`]). The thread is not a tokio worker: an fsync that takes 50 ms must
//! not stall sessions that share its worker.
//!
//! In `fsync` mode records are made durable in the [`super::journal`]; once a flush is
//! back the statements waiting on it go on and its records are appended to the
//! segment, so the segment holds nothing but whole, durable records.
//! With `audit.parallel_flushes` above 1 the flushes run off this thread and overlap
//! ([`super::flushes`]): a group that arrives during a flush starts its own instead of
//! waiting for that one to end.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::AuditError;
use super::event::Event;
use super::flushes::InFlight;
use super::journal::{self, Journal};
use super::plan::{plan, Body};
use super::queue::{Queue, Shared};
use super::record::{hex_str, seal_into, Head};
use super::segment::{segment_name, Tail};
use super::sink::SinkHandle;
use super::time::{format_micros, now_micros};
use crate::config::AuditDurability;
use crate::metrics::Metrics;

mod overlap;

/// Buffer capacity kept between takes (more is given back).
const KEEP_BYTES: usize = 8 << 20;

/// Shared between the writer and the handles.
#[derive(Default)]
pub(crate) struct State {
    /// Batch mode: a write failed and is being retried; appends are refused meanwhile.
    pub failing: AtomicBool,
    /// fdatasyncs done (tests count them).
    pub fsyncs: AtomicU64,
}

pub(crate) struct Options {
    pub dir: PathBuf,
    pub durability: AuditDurability,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    pub flush_interval: Duration,
    pub head_interval: Duration,
    /// `fsync` mode: flushes that may run at once; 1 keeps them on the writer thread.
    pub parallel_flushes: usize,
    pub key: Option<Vec<u8>>,
}

pub(crate) struct Writer {
    opts: Options,
    state: Arc<State>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    file: Option<File>,
    /// Where the segment's records end.
    seg_len: u64,
    /// `fsync` mode: where records are made durable before they go into the segment.
    journal: Option<Journal>,
    /// `fsync` mode: records written to the journal but not yet flushed there, so not
    /// yet in the segment.
    unsegmented: Vec<u8>,
    /// `fsync` mode: the groups written and waiting for their flush, and the flushes
    /// running (set up on the writer thread's runtime by [`Self::run`]).
    in_flight: Option<InFlight>,
    /// `fsync` mode: the head of what is flushed and in the segment: what flush requests
    /// are answered with and what is exported (never a head a crash could take back).
    durable: Head,
    /// `fsync` mode: records written to the journal since the last group was queued.
    unqueued: bool,
    /// `fsync` mode: the sinks close once the flushes running now are back (their
    /// records still go out).
    close_sinks_later: bool,
    seg_opened: Instant,
    next_seq: u64,
    prev: String,
    head_hash: String,
    /// Formatted but not yet written (batch mode, or a batch-mode write being retried).
    pending: Vec<u8>,
    pending_lines: Vec<Arc<str>>,
    /// Written but not yet fsynced.
    dirty: bool,
    /// A failed fsync: nothing more is accepted.
    failed: Option<String>,
    sinks: Vec<SinkHandle>,
    last_head: Instant,
    /// The buffers a take swaps in; kept between takes so that no take allocates.
    spare: Queue,
    /// Joined `whole` records of the current take.
    scratch: Vec<u8>,
}

/// Removes the queue's last reader: when the writer ends, for whatever reason,
/// sessions stop queueing and whoever waits hears `Closed`.
struct Gone(Arc<Shared>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.writer_gone();
    }
}

fn io_err(opts: &Options, what: &str, e: &std::io::Error) -> AuditError {
    AuditError::Io {
        dir: opts.dir.display().to_string(),
        message: format!("{what}: {e}"),
    }
}

impl Writer {
    pub fn new(
        opts: Options,
        tail: Tail,
        state: Arc<State>,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        sinks: Vec<SinkHandle>,
    ) -> Result<Writer, std::io::Error> {
        let (file, seg_len) = match &tail.segment {
            Some((_, path, len)) => {
                let f = OpenOptions::new().read(true).write(true).open(path)?;
                // Zeros an older pgmoat wrote ahead of the records: not JSON lines.
                if f.metadata()?.len() > *len {
                    f.set_len(*len)?;
                    f.sync_all()?;
                }
                (Some(f), *len)
            }
            None => (None, 0),
        };
        let journal = match opts.durability {
            AuditDurability::Fsync => Some(Journal::open(&opts.dir)?),
            AuditDurability::Batch => {
                // Replayed at open; batch mode has no use for it.
                match std::fs::remove_file(journal::path(&opts.dir)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                None
            }
        };
        Ok(Writer {
            opts,
            state,
            shared,
            metrics,
            file,
            seg_len,
            journal,
            unsegmented: Vec::new(),
            in_flight: None,
            durable: Head {
                seq: 0,
                hash: String::new(),
            },
            unqueued: false,
            close_sinks_later: false,
            seg_opened: Instant::now(),
            next_seq: tail.next_seq,
            prev: tail.prev,
            head_hash: tail.head_hash,
            pending: Vec::new(),
            pending_lines: Vec::new(),
            dirty: false,
            failed: None,
            sinks,
            last_head: Instant::now(),
            spare: Queue::default(),
            scratch: Vec::new(),
        })
    }

    pub fn head(&self) -> Head {
        Head {
            seq: self.next_seq - 1,
            hash: self.head_hash.clone(),
        }
    }

    /// Write a record now, synchronously (the repair record at open).
    pub fn write_now(&mut self, session: Option<&str>, event: Event) -> Result<(), AuditError> {
        let body = serde_json::to_string(&event).map_err(|e| AuditError::Io {
            dir: self.opts.dir.display().to_string(),
            message: format!("cannot encode a record: {e}"),
        })?;
        let r = self
            .commit(&[(session, body.as_bytes())], true)
            .and_then(|()| self.settle_flushed());
        self.send_to_sinks();
        r
    }

    /// Run until every handle is gone. Called on the writer thread's own runtime.
    pub async fn run(mut self) {
        let _gone = Gone(Arc::clone(&self.shared));
        let batch_mode = self.opts.durability == AuditDurability::Batch;
        let slots = self
            .opts
            .parallel_flushes
            .min(super::flushes::MAX_IN_FLIGHT);
        if let (Some(j), true) = (&self.journal, slots > 1) {
            let handles: std::io::Result<Vec<File>> =
                (0..slots).map(|_| j.flush_handle()).collect();
            match handles {
                Ok(h) => self.in_flight = Some(InFlight::new(h)),
                // Without handles of their own the flushes stay on this thread, one at
                // a time.
                Err(e) => tracing::warn!("audit store: flushes will not overlap: {e}"),
            }
        }
        self.durable = self.head();
        let mut next_tick = Instant::now() + self.opts.flush_interval;
        loop {
            // Batch mode syncs on its interval; fsync mode whenever somebody waits, and
            // on the interval for records nobody waited for.
            let mut tick = false;
            let next_head = self.last_head + self.opts.head_interval;
            if batch_mode {
                // Woken by the interval, not per record: a session's enqueue costs no
                // thread wake-up at all (flushes, a full queue and closing do wake it).
                tokio::select! {
                    _ = tokio::time::sleep_until(next_tick.into()) => {}
                    _ = self.shared.wake.notified() => {}
                }
                if Instant::now() >= next_tick {
                    tick = true;
                    next_tick = Instant::now() + self.opts.flush_interval;
                }
            } else {
                // Woken by the records somebody waits for (each starts the next group
                // commit); the others (completions, session ends) ride along with the
                // next such record, or the interval picks them up: one fewer wake-up
                // and journal write per statement.
                let done = async {
                    match self.in_flight.as_mut() {
                        Some(f) => f.done_rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    Some(done) = done => {
                        self.flushed(done);
                        continue;
                    }
                    _ = tokio::time::sleep_until(next_head.into()) => {}
                    _ = tokio::time::sleep_until(next_tick.into()) => {}
                }
                if Instant::now() >= next_tick {
                    tick = true;
                    next_tick = Instant::now() + self.opts.flush_interval;
                }
                // Rotating the segment or starting the journal over needs every
                // flush back first.
                if self.rotation_due() || self.journal_wrap_due() {
                    self.settle_all().await;
                }
            }
            let closed = self.shared.take(&mut self.spare);
            self.handle(tick);
            if self.last_head.elapsed() >= self.opts.head_interval {
                self.export_head();
            }
            if closed {
                break;
            }
        }
        self.settle_all().await;
        let _ = self.commit(&[], true).and_then(|()| self.settle_flushed());
        self.send_to_sinks();
        self.export_head();
        // A clean stop leaves the segment synced (the journal is then not needed).
        if self.failed.is_none() {
            if let Some(f) = &self.file {
                if f.sync_all().is_err() {
                    tracing::warn!("audit store: could not sync the segment at stop");
                }
            }
        }
    }

    /// Write what the last take brought (in `self.spare`), answer its waiters.
    fn handle(&mut self, tick: bool) {
        let mut q = std::mem::take(&mut self.spare);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let acks: Vec<_> = q.items.iter_mut().filter_map(|i| i.ack.take()).collect();
        let flushes = std::mem::take(&mut q.flushes);
        let planned = plan(
            &q,
            self.opts.durability == AuditDurability::Batch,
            &mut scratch,
        );
        let records: Vec<(Option<&str>, &[u8])> = planned
            .iter()
            .map(|p| {
                let item = &q.items[p.item];
                let body = match &p.body {
                    Body::Queued(r) => &q.bytes[r.clone()],
                    Body::Joined(r) => &scratch[r.clone()],
                };
                (q.session(item), body)
            })
            .collect();
        // In fsync mode only a record somebody waits on needs an fdatasync now; the
        // others (completions, session ends) are written and ride along with the next
        // one, or the interval tick. Syncing them at once would put a useless fsync in
        // front of every waiting statement.
        let sync = tick || !flushes.is_empty() || !acks.is_empty();
        let idle = records.is_empty() && self.pending.is_empty() && !self.dirty;
        if self.in_flight.is_some() {
            // Written now; answered when a flush covering it is back ([`Self::flushed`]).
            let wrote = !records.is_empty();
            let result = if idle && flushes.is_empty() {
                Ok(())
            } else {
                self.commit(&records, false)
            };
            drop(records);
            self.unqueued |= wrote && result.is_ok();
            self.queue_for_flush(result, acks, flushes, sync);
            self.recycle(q, scratch);
            return;
        }
        let result = if idle && flushes.is_empty() {
            Ok(())
        } else {
            self.commit(&records, sync)
        };
        drop(records);
        // Flushed records are on disk in the journal (fsync mode): their statements may
        // go on before the records are appended to the segment, which a tailer reads.
        for a in acks {
            let _ = a.send(result.clone());
        }
        let result = result.and_then(|()| self.settle_flushed());
        self.send_to_sinks();
        // A flush request is answered once the segment has what it covers (callers
        // read the segment next).
        for (export, ack) in flushes {
            if export {
                self.export_head();
            }
            let _ = ack.send(result.clone().map(|_| self.head()));
        }
        self.recycle(q, scratch);
    }

    /// Hand the take's buffers back for the next take.
    fn recycle(&mut self, mut q: Queue, mut scratch: Vec<u8>) {
        if q.close_sinks {
            if self.in_flight.as_ref().is_some_and(|f| !f.is_idle()) {
                self.close_sinks_later = true;
            } else {
                self.sinks.clear();
            }
        }
        q.clear();
        // Both buffers pass through here in turn: one burst of huge records (kept rows
        // of wide values) must not keep its memory for good.
        q.bytes.shrink_to(KEEP_BYTES);
        scratch.shrink_to(KEEP_BYTES);
        self.spare = q;
        self.scratch = scratch;
    }

    /// Seal `records` (session, encoded event) after whatever is pending, write, and
    /// fdatasync if `sync`.
    fn commit(&mut self, records: &[(Option<&str>, &[u8])], sync: bool) -> Result<(), AuditError> {
        if let Some(m) = &self.failed {
            return Err(AuditError::Failed {
                dir: self.opts.dir.display().to_string(),
                message: m.clone(),
            });
        }
        let batch_mode = self.opts.durability == AuditDurability::Batch;
        if self.pending.is_empty() && !records.is_empty() {
            if let Err(e) = self.rotate_if_due() {
                self.failure(&e, false);
                return Err(e);
            }
        }
        let saved = (self.next_seq, self.prev.clone(), self.head_hash.clone());
        let pending_before = self.pending.len();
        let lines_before = self.pending_lines.len();
        let want_lines = !self.sinks.is_empty();
        // Records sealed together are written together: one timestamp for them all.
        let ts = format_micros(now_micros());
        for (session, body) in records {
            let start = self.pending.len();
            let (hash, digest) = seal_into(
                &mut self.pending,
                self.next_seq,
                &ts,
                *session,
                body,
                &self.prev,
                self.opts.key.as_deref(),
            );
            self.prev.clear();
            self.prev.push_str(hex_str(&digest));
            self.head_hash.clear();
            self.head_hash.push_str(hex_str(&hash));
            self.next_seq += 1;
            if want_lines {
                // Sealed from UTF-8 pieces only.
                let line = std::str::from_utf8(&self.pending[start..]).unwrap_or_default();
                self.pending_lines.push(Arc::from(line));
            }
            self.pending.push(b'\n');
        }
        self.metrics
            .audit_records
            .fetch_add(records.len() as u64, Relaxed);
        if !self.pending.is_empty() {
            let written = if self.journal.is_some() {
                self.write_journal()
            } else {
                self.write_segment()
            };
            if let Err(e) = written {
                return Err(self.undo(e, saved, pending_before, lines_before, batch_mode));
            }
        }
        if sync && self.dirty {
            let t0 = Instant::now();
            let synced = match (&self.journal, &self.file) {
                (Some(j), _) => j.sync(),
                (None, Some(f)) => f.sync_data(),
                (None, None) => Ok(()),
            };
            self.metrics
                .audit_fsync_micros
                .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
            if let Err(e) = synced {
                // After a failed fsync the kernel may have dropped the pages: what
                // is on disk is unknown, so stop accepting (fail closed).
                let e = io_err(&self.opts, "fdatasync", &e);
                self.failure(&e, true);
                self.pending_lines.truncate(lines_before);
                return Err(e);
            }
            self.state.fsyncs.fetch_add(1, Relaxed);
            self.metrics.audit_fsyncs.fetch_add(1, Relaxed);
            self.dirty = false;
        }
        self.state.failing.store(false, Relaxed);
        Ok(())
    }

    /// `batch` mode: append what is pending to the segment.
    fn write_segment(&mut self) -> Result<(), AuditError> {
        let Some(file) = self.file.as_mut() else {
            return Err(io_err(
                &self.opts,
                "write",
                &std::io::Error::other("no segment open"),
            ));
        };
        if let Err(e) = file.write_all_at(&self.pending, self.seg_len) {
            let e = io_err(&self.opts, "write", &e);
            // Cut a partial write back off, so the file ends on a whole record.
            if file.set_len(self.seg_len).is_err() {
                self.failed = Some(format!("{e}; and the partial write could not be cut off"));
            }
            return Err(e);
        }
        self.seg_len += self.pending.len() as u64;
        self.pending.clear();
        self.dirty = true;
        Ok(())
    }

    /// `fsync` mode: write what is pending into the journal; it goes into the segment
    /// once the journal is flushed ([`Self::settle`]).
    fn write_journal(&mut self) -> Result<(), AuditError> {
        let Some(j) = self.journal.as_mut() else {
            return Err(io_err(
                &self.opts,
                "write",
                &std::io::Error::other("no journal open"),
            ));
        };
        // A partial write is left where it is: it is past the journal's records, the
        // next write covers it, and replay stops at a line that does not check.
        j.write(&self.pending)
            .map_err(|e| io_err(&self.opts, "write the journal", &e))?;
        self.unsegmented.extend_from_slice(&self.pending);
        self.pending.clear();
        self.dirty = true;
        Ok(())
    }

    /// `fsync` mode, after a commit that flushed the journal: what it flushed goes into
    /// the segment. A failed append stops the writer accepting (the records are durable
    /// in the journal: the next start completes the segment from them).
    fn settle_flushed(&mut self) -> Result<(), AuditError> {
        if self.journal.is_none() || self.dirty {
            return Ok(());
        }
        self.settle().inspect_err(|e| self.failure(e, true))
    }

    /// `fsync` mode, after the journal's flush: the flushed records go into the segment,
    /// and a journal past its size starts over once the segment is synced.
    fn settle(&mut self) -> Result<(), AuditError> {
        if self.unsegmented.is_empty() {
            return Ok(());
        }
        self.append_unsegmented(self.unsegmented.len())?;
        if self.journal_wrap_due() {
            self.restart_journal()?;
        }
        Ok(())
    }

    /// `fsync` mode: append the first `end` not-yet-segmented bytes (flushed in the
    /// journal) to the segment.
    fn append_unsegmented(&mut self, end: usize) -> Result<(), AuditError> {
        let Some(file) = self.file.as_mut() else {
            return Err(io_err(
                &self.opts,
                "write",
                &std::io::Error::other("no segment open"),
            ));
        };
        let end = end.min(self.unsegmented.len());
        if let Err(e) = file.write_all_at(&self.unsegmented[..end], self.seg_len) {
            // The records are durable in the journal; the next start completes the
            // segment from them. Until then nothing more is accepted (fail closed). A
            // part written stays: the segment only ever grows, so a tailer that read
            // half a line reads the rest of it then.
            return Err(io_err(&self.opts, "append to the segment", &e));
        }
        self.seg_len += end as u64;
        self.unsegmented.drain(..end);
        if self.unsegmented.is_empty() {
            self.unsegmented.shrink_to(KEEP_BYTES);
        }
        Ok(())
    }

    /// `fsync` mode: everything in the journal is in the segment; sync the segment and
    /// start the journal over.
    fn restart_journal(&mut self) -> Result<(), AuditError> {
        if let Some(f) = &self.file {
            f.sync_data()
                .map_err(|e| io_err(&self.opts, "fdatasync the segment", &e))?;
        }
        if let Some(j) = self.journal.as_mut() {
            j.restart();
        }
        Ok(())
    }

    /// A write failed: in fsync mode the batch is given up (its waiters get the error);
    /// in batch mode it stays pending and is retried at the next interval.
    fn undo(
        &mut self,
        e: AuditError,
        saved: (u64, String, String),
        pending_before: usize,
        lines_before: usize,
        batch_mode: bool,
    ) -> AuditError {
        if !batch_mode {
            (self.next_seq, self.prev, self.head_hash) = saved;
            self.pending.truncate(pending_before);
            self.pending_lines.truncate(lines_before);
        }
        self.failure(&e, false);
        e
    }

    fn failure(&mut self, e: &AuditError, sticky: bool) {
        if sticky {
            self.failed = Some(e.to_string());
        }
        self.state.failing.store(true, Relaxed);
        self.metrics.audit_write_failures.fetch_add(1, Relaxed);
        tracing::error!("audit record not written: {e}; statements are refused until it is");
    }

    /// The segment is full or old enough to be closed (or none is open yet).
    fn rotation_due(&self) -> bool {
        match &self.file {
            None => true,
            Some(_) => {
                self.seg_len >= self.opts.segment_bytes
                    || (self.seg_len > 0 && self.seg_opened.elapsed() >= self.opts.segment_age)
            }
        }
    }

    fn rotate_if_due(&mut self) -> Result<(), AuditError> {
        // With flushes running, the rotation waits for them ([`Self::run`] drains them
        // before its next take).
        let flushing = self.in_flight.as_ref().is_some_and(|f| !f.is_idle());
        if !self.rotation_due() || (flushing && self.file.is_some()) {
            return Ok(());
        }
        if self.file.is_some() {
            // The old segment is final: it gets every record written so far and is
            // made durable (then the journal's content is all in synced segments).
            // A failed fsync here is final too: a retry would succeed with the pages
            // lost, and the journal would then start over them.
            let sticky = |w: &mut Writer, e: AuditError| {
                w.failed = Some(e.to_string());
                e
            };
            if self.dirty {
                if let Some(j) = &self.journal {
                    if let Err(e) = j.sync() {
                        let e = io_err(&self.opts, "fdatasync the journal", &e);
                        return Err(sticky(self, e));
                    }
                    self.dirty = false;
                }
            }
            if let Err(e) = self.settle() {
                return Err(sticky(self, e));
            }
            if let Some(f) = &self.file {
                if let Err(e) = f.sync_all() {
                    let e = io_err(&self.opts, "fsync before rotating", &e);
                    return Err(sticky(self, e));
                }
            }
            self.dirty = false;
        }
        let path = self.opts.dir.join(segment_name(self.next_seq));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&self.opts, &format!("create {}", path.display()), &e))?;
        // The new name must survive a crash too.
        File::open(&self.opts.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&self.opts, "fsync the store folder", &e))?;
        let meta = file
            .metadata()
            .map_err(|e| io_err(&self.opts, "stat", &e))?;
        // A device or pipe in a segment's place would take (or swallow) records that
        // `audit verify` and the next start could never read back.
        if !meta.is_file() {
            let e = std::io::Error::other("not a regular file");
            return Err(io_err(&self.opts, &format!("open {}", path.display()), &e));
        }
        let len = meta.len();
        self.file = Some(file);
        self.seg_len = len;
        if let Some(j) = self.journal.as_mut() {
            j.restart();
        }
        self.seg_opened = Instant::now();
        Ok(())
    }

    fn send_to_sinks(&mut self) {
        if self.pending_lines.is_empty() {
            return;
        }
        // Only what is on disk goes out (and in fsync mode, only what is fsynced).
        if !self.pending.is_empty()
            || (self.opts.durability == AuditDurability::Fsync && self.dirty)
        {
            return;
        }
        for line in self.pending_lines.drain(..) {
            for s in &self.sinks {
                s.offer(Arc::clone(&line), &self.metrics);
            }
        }
    }

    fn export_head(&mut self) {
        self.last_head = Instant::now();
        if self.sinks.is_empty() {
            return;
        }
        let head = self.durable_head();
        let line: Arc<str> = Arc::from(format!(
            "{{\"type\":\"head\",\"ts\":\"{}\",\"seq\":{},\"hash\":\"{}\"}}",
            format_micros(now_micros()),
            head.seq,
            head.hash
        ));
        for s in &self.sinks {
            s.offer(Arc::clone(&line), &self.metrics);
        }
    }
}
