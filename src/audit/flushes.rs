//! `fsync` mode's flushes in flight: the journal's fdatasyncs run off the writer thread,
//! up to [`MAX_IN_FLIGHT`] at once, so a group of records that arrives while a flush is
//! running starts its own flush at once instead of waiting for that one to end.
//!
//! Why: with one flush at a time a record waits on average for half a flush (the one in
//! progress) and then a whole one (its own): 1.5 flushes. With flushes overlapping it
//! waits for about one. The kernel makes this safe: an `fdatasync` that returns covers
//! every write that finished before it was called, so flush `k` coming back makes every
//! group written before it was started durable, whatever the order the flushes end in.
//!
//! What stays strict: a group's waiters are answered only once a flush covering it is
//! back and its records are appended to the segment, in order; a failed flush or append
//! fails the group and everything after it (the writer stops accepting: fail closed).

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::queue::{Ack, FlushAck};

/// Flushes running at once. More gains nothing on two cores and costs a syscall each.
pub const MAX_IN_FLIGHT: usize = 3;

/// A group of records written to the journal and waiting for a flush that covers it.
pub struct Job {
    /// The group's number; a flush is named by the newest group written before it.
    pub id: u64,
    pub acks: Vec<Ack>,
    pub flushes: Vec<(bool, FlushAck)>,
    /// Where the group's records end in the writer's not-yet-segmented bytes.
    pub unsegmented_end: usize,
    /// Where the group's lines end in the writer's lines for the sinks.
    pub lines_end: usize,
}

/// What a flush came back with: the newest group it covers, and how it went.
pub struct Done {
    pub covers: u64,
    pub result: std::io::Result<Duration>,
}

/// The groups waiting for their flush, and the flushes running.
pub struct InFlight {
    journal: Arc<File>,
    jobs: VecDeque<Job>,
    next_id: u64,
    /// The newest group a started flush covers (0: none yet).
    started_upto: u64,
    running: usize,
    done_tx: mpsc::UnboundedSender<Done>,
    pub done_rx: mpsc::UnboundedReceiver<Done>,
}

impl InFlight {
    pub fn new(journal: Arc<File>) -> InFlight {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        InFlight {
            journal,
            jobs: VecDeque::new(),
            next_id: 1,
            started_upto: 0,
            running: 0,
            done_tx,
            done_rx,
        }
    }

    /// Nothing written and unanswered, no flush running.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty() && self.running == 0
    }

    /// Queue a group that was just written to the journal, and start a flush for it if
    /// a slot is free (else the next flush to end starts one covering it).
    pub fn push(
        &mut self,
        acks: Vec<Ack>,
        flushes: Vec<(bool, FlushAck)>,
        unsegmented_end: usize,
        lines_end: usize,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs.push_back(Job {
            id,
            acks,
            flushes,
            unsegmented_end,
            lines_end,
        });
        self.start_if_due();
    }

    /// Start a flush if some group is not covered by a running one and a slot is free.
    pub fn start_if_due(&mut self) {
        let Some(newest) = self.jobs.back().map(|j| j.id) else {
            return;
        };
        if newest <= self.started_upto || self.running >= MAX_IN_FLIGHT {
            return;
        }
        self.started_upto = newest;
        self.running += 1;
        let file = Arc::clone(&self.journal);
        let tx = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            let result = file.sync_data().map(|()| t0.elapsed());
            let _ = tx.send(Done {
                covers: newest,
                result,
            });
        });
    }

    /// A flush ended: the groups it covers, oldest first (those an earlier-ending
    /// flush covered are gone already).
    pub fn finished(&mut self, covers: u64) -> Vec<Job> {
        self.running = self.running.saturating_sub(1);
        let mut out = Vec::new();
        while self.jobs.front().is_some_and(|j| j.id <= covers) {
            out.extend(self.jobs.pop_front());
        }
        out
    }

    /// Every group still waiting (a flush failed: they all fail with it).
    pub fn take_all(&mut self) -> Vec<Job> {
        self.jobs.drain(..).collect()
    }

    /// The groups still waiting, to shift their offsets after an append.
    pub fn jobs_mut(&mut self) -> impl Iterator<Item = &mut Job> {
        self.jobs.iter_mut()
    }

    /// Flushes running (their answers are still to come).
    pub fn running(&self) -> usize {
        self.running
    }
}
