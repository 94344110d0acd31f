//! The writer's side of `fsync` mode's overlapping flushes ([`super::super::flushes`]):
//! queueing a written group, and what happens when a flush comes back.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::{io_err, Writer};
use crate::audit::error::AuditError;
use crate::audit::flushes::{Done, Job};
use crate::audit::journal;
use crate::audit::queue::{Ack, FlushAck};
use crate::audit::record::Head;

impl Writer {
    /// A take was written to the journal (`result`): queue its waiters for a flush that
    /// covers it, or answer them now when the write failed or nobody needs a flush.
    pub(super) fn queue_for_flush(
        &mut self,
        result: Result<(), AuditError>,
        acks: Vec<Ack>,
        flushes: Vec<(bool, FlushAck)>,
        sync: bool,
    ) {
        if let Err(e) = result {
            for a in acks {
                let _ = a.send(Err(e.clone()));
            }
            for (_, f) in flushes {
                let _ = f.send(Err(e.clone()));
            }
            return;
        }
        // Nothing new written and nothing waiting to be flushed: a flush request is
        // answered by the groups before it, or at once when there are none.
        let Some(idle) = self.in_flight.as_ref().map(|f| f.is_idle()) else {
            return;
        };
        if !self.dirty && idle {
            for (export, f) in flushes {
                if export {
                    self.export_head();
                }
                let _ = f.send(Ok(self.head()));
            }
            return;
        }
        // A tick with nothing new written queues nothing (no useless fdatasync); a
        // flush request does, to be answered after the groups before it.
        if sync && (self.unqueued || !flushes.is_empty()) {
            self.queue_group(acks, flushes);
        }
    }

    /// Queue everything written so far as a group waiting for its flush.
    fn queue_group(&mut self, acks: Vec<Ack>, flushes: Vec<(bool, FlushAck)>) {
        let head = self.head();
        let (end, lines) = (self.unsegmented.len(), self.pending_lines.len());
        if let Some(in_flight) = self.in_flight.as_mut() {
            in_flight.push(acks, flushes, end, lines, head);
            self.unqueued = false;
        }
    }

    /// What is durable and in the segment: the head to export.
    pub(super) fn durable_head(&self) -> Head {
        let settled = !self.dirty && self.in_flight.as_ref().is_none_or(|f| f.is_idle());
        if settled {
            self.head()
        } else {
            self.durable.clone()
        }
    }

    /// Flush everything written, wait for every flush, and start the journal over if
    /// it is due (before a rotation, at the journal's size, at a stop).
    pub(super) async fn settle_all(&mut self) {
        if self.unqueued && self.failed.is_none() {
            self.queue_group(Vec::new(), Vec::new());
        }
        self.drain().await;
        self.wrap_if_due();
    }

    /// A flush came back: the groups it covers are durable, their statements' waiters
    /// are answered, and their records go into the segment, in order (then the flush
    /// requests among them are answered). A failed flush fails them and all that
    /// follow; a failed append fails what follows (the records answered are durable in
    /// the journal: the next start completes the segment from them).
    pub(super) fn flushed(&mut self, mut done: Done) {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return;
        };
        let mut jobs = in_flight.finished(&mut done);
        let result = match done.result {
            Ok(took) => {
                self.metrics
                    .audit_fsync_micros
                    .fetch_add(took.as_micros() as u64, Relaxed);
                self.state.fsyncs.fetch_add(1, Relaxed);
                self.metrics.audit_fsyncs.fetch_add(1, Relaxed);
                if let Some(last) = jobs.last() {
                    self.durable = last.head.clone();
                }
                for job in &mut jobs {
                    for a in job.acks.drain(..) {
                        let _ = a.send(Ok(()));
                    }
                }
                match jobs.last() {
                    Some(last) => self.append_flushed(last.unsegmented_end, last.lines_end),
                    None => Ok(()),
                }
            }
            Err(e) => Err(io_err(&self.opts, "fdatasync", &e)),
        };
        match result {
            Ok(()) => {
                self.answer(jobs, &Ok(()));
                if let Some(f) = self.in_flight.as_mut() {
                    f.start_if_due();
                }
                let idle = self.in_flight.as_ref().is_some_and(|f| f.is_idle());
                if idle && self.unsegmented.is_empty() {
                    // (Also after a flush that found its groups answered by a later one.)
                    self.dirty = false;
                }
                if idle && self.close_sinks_later {
                    self.close_sinks_later = false;
                    self.sinks.clear();
                }
                self.wrap_if_due();
            }
            Err(e) => {
                // After a failed flush the kernel may have dropped the pages, and an
                // append that failed leaves the segment behind the journal: what is on
                // disk is unknown, so nothing more is accepted (fail closed).
                self.failure(&e, true);
                self.answer(jobs, &Err(e.clone()));
                let rest = self.in_flight.as_mut().map(|f| f.take_all());
                self.answer(rest.unwrap_or_default(), &Err(e));
                self.pending_lines.clear();
            }
        }
    }

    fn answer(&mut self, jobs: Vec<Job>, result: &Result<(), AuditError>) {
        for job in jobs {
            for a in job.acks {
                let _ = a.send(result.clone());
            }
            for (export, f) in job.flushes {
                if export && result.is_ok() {
                    self.export_head();
                }
                let _ = f.send(result.clone().map(|()| job.head.clone()));
            }
        }
    }

    /// Append the first `end` not-yet-segmented bytes (flushed now) to the segment and
    /// send their `lines` sealed lines to the sinks.
    fn append_flushed(&mut self, end: usize, lines: usize) -> Result<(), AuditError> {
        let end = end.min(self.unsegmented.len());
        self.append_unsegmented(end)?;
        let lines = lines.min(self.pending_lines.len());
        let shipped: Vec<Arc<str>> = self.pending_lines.drain(..lines).collect();
        if let Some(f) = self.in_flight.as_mut() {
            for job in f.jobs_mut() {
                job.unsegmented_end -= end;
                job.lines_end -= lines;
            }
        }
        for line in shipped {
            for s in &self.sinks {
                s.offer(Arc::clone(&line), &self.metrics);
            }
        }
        Ok(())
    }

    /// The journal past its size starts over once everything in it is in the segment
    /// and the segment is synced (only with no flush running).
    fn wrap_if_due(&mut self) {
        if !self.journal_wrap_due()
            || self.dirty
            || !self.unsegmented.is_empty()
            || !self.in_flight.as_ref().is_some_and(|f| f.is_idle())
        {
            return;
        }
        if let Err(e) = self.restart_journal() {
            self.failure(&e, true);
        }
    }

    /// The journal has passed the size at which it starts over.
    pub(super) fn journal_wrap_due(&self) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| j.len >= journal::WRAP_BYTES)
    }

    /// Wait for every running flush to come back and answer what it covers.
    pub(super) async fn drain(&mut self) {
        loop {
            let Some(f) = self.in_flight.as_mut() else {
                return;
            };
            if f.running() == 0 {
                // Groups not covered by any flush (none should be: a slot frees with
                // each answer) get one now.
                f.start_if_due();
                if f.running() == 0 {
                    return;
                }
            }
            match f.done_rx.recv().await {
                Some(done) => self.flushed(done),
                None => return,
            }
        }
    }
}
