//! `fsync` mode's flushes in flight, with `audit.parallel_flushes` above 1: the journal's
//! fdatasyncs run off the writer thread, up to that many at once, so a group of records
//! that arrives while a flush is running starts its own flush at once instead of waiting
//! for that one to end.
//!
//! Why: with one flush at a time a record waits on average for half a flush (the one in
//! progress) and then a whole one (its own): 1.5 flushes. With flushes overlapping it
//! waits for about one. That pays only on a device that completes flushes side by side
//! sooner than one after another (NVMe); a disk that runs them in turn (the usual VM
//! disk) makes each take longer, and every flush then costs two thread hand-offs the
//! writer's own flush does not, so the default is 1.
//!
//! The kernel makes this safe: an `fdatasync` that returns covers every write that
//! finished before it was called, so flush `k` coming back makes every group written
//! before it was started durable, whatever the order the flushes end in.
//!
//! What stays strict: a group's waiters are answered only once a flush covering it is
//! back (its records are then on disk in the journal), and its records go into the
//! segment in order right after; a failed flush fails the group and everything after
//! it, a failed append everything after it (the writer stops accepting: fail closed).
//!
//! Each flush slot has a handle of its own on the journal, opened separately (not a
//! `dup`): Linux reports a writeback error once per open file description, so two
//! flushes sharing one could see one the error and the other success for the same
//! lost page (Linux 4.13 or later reports it to every description).

use std::collections::VecDeque;
use std::fs::File;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::queue::{Ack, FlushAck};
use super::record::Head;

/// The most flushes that may run at once (`audit.parallel_flushes`' limit).
pub const MAX_IN_FLIGHT: usize = 4;

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
    /// The chain's head after the group: what is durable once it is answered.
    pub head: Head,
}

/// What a flush came back with: the newest group it covers, and how it went.
pub struct Done {
    pub covers: u64,
    pub result: std::io::Result<Duration>,
    /// The slot's journal handle, back for the next flush (None: lost with a task that
    /// died; the slot is gone and the result is an error).
    handle: Option<File>,
}

/// Reports a flush's end even when its task dies before it could (so that a slot is
/// never counted as running for ever and `drain` ends).
struct Report {
    covers: u64,
    tx: mpsc::UnboundedSender<Done>,
    done: Option<(std::io::Result<Duration>, File)>,
}

impl Report {
    /// The flush ended: report it (on drop).
    fn finish(mut self, result: std::io::Result<Duration>, handle: File) {
        self.done = Some((result, handle));
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        let (result, handle) = match self.done.take() {
            Some((r, f)) => (r, Some(f)),
            None => (Err(std::io::Error::other("the flush did not finish")), None),
        };
        let _ = self.tx.send(Done {
            covers: self.covers,
            result,
            handle,
        });
    }
}

/// The groups waiting for their flush, and the flushes running.
pub struct InFlight {
    /// Journal handles of the free slots.
    free: Vec<File>,
    jobs: VecDeque<Job>,
    next_id: u64,
    /// The newest group a started flush covers (0: none yet).
    started_upto: u64,
    running: usize,
    done_tx: mpsc::UnboundedSender<Done>,
    pub done_rx: mpsc::UnboundedReceiver<Done>,
}

impl InFlight {
    /// `handles`: one journal handle per slot, each opened on its own.
    pub fn new(handles: Vec<File>) -> InFlight {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        InFlight {
            free: handles,
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
        head: Head,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs.push_back(Job {
            id,
            acks,
            flushes,
            unsegmented_end,
            lines_end,
            head,
        });
        self.start_if_due();
    }

    /// Start a flush if some group is not covered by a running one and a slot is free.
    pub fn start_if_due(&mut self) {
        let Some(newest) = self.jobs.back().map(|j| j.id) else {
            return;
        };
        if newest <= self.started_upto {
            return;
        }
        // A slot per handle: none free, all are running.
        let Some(file) = self.free.pop() else {
            return;
        };
        self.started_upto = newest;
        self.running += 1;
        let report = Report {
            covers: newest,
            tx: self.done_tx.clone(),
            done: None,
        };
        tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            let result = file.sync_data().map(|()| t0.elapsed());
            report.finish(result, file);
        });
    }

    /// A flush ended: the groups it covers, oldest first (those an earlier-ending
    /// flush covered are gone already).
    pub fn finished(&mut self, done: &mut Done) -> Vec<Job> {
        self.running = self.running.saturating_sub(1);
        self.free.extend(done.handle.take());
        let covers = done.covers;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> Head {
        Head {
            seq,
            hash: format!("h{seq}"),
        }
    }

    #[tokio::test]
    async fn groups_are_answered_in_order_by_whichever_flush_covers_them() {
        let dir = std::env::temp_dir().join(format!("pgmoat-flushes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap()
        };
        let mut f = InFlight::new(vec![open()]);
        // One slot: the first group's flush starts, the second waits for the slot.
        f.push(Vec::new(), Vec::new(), 10, 1, head(1));
        f.push(Vec::new(), Vec::new(), 25, 2, head(2));
        assert_eq!(f.running(), 1);
        let mut done = f.done_rx.recv().await.unwrap();
        assert_eq!(done.covers, 1);
        assert!(done.result.is_ok());
        let first = f.finished(&mut done);
        assert_eq!(first.iter().map(|j| j.id).collect::<Vec<_>>(), [1]);
        // The slot is back: the waiting group gets its flush.
        f.start_if_due();
        let mut done = f.done_rx.recv().await.unwrap();
        assert_eq!(done.covers, 2);
        let second = f.finished(&mut done);
        assert_eq!(second[0].head.seq, 2);
        assert!(f.is_idle());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_flush_that_never_ran_still_reports_and_fails() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        drop(Report {
            covers: 7,
            tx,
            done: None,
        });
        let done = rx.try_recv().expect("reported on drop");
        assert_eq!(done.covers, 7);
        assert!(done.result.is_err());
        assert!(done.handle.is_none());
    }
}
