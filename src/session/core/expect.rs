//! Which request each server answer belongs to: the core's one queue of expected
//! answers.
//!
//! The server answers requests strictly in the order they were sent, so a queue of
//! what was asked (a Query, an Execute, a Describe, a named portal's Bind, a Sync)
//! tells whose RowDescription, DataRow, CommandComplete or ErrorResponse arrives now.
//! Each entry carries what its consumers need of it: the audit trail's ticket (which
//! `decided` record it runs, its result formats) and masking's (the origins of a
//! Query's statements, the portal an Execute reads). The consumers read the entry the
//! server answers now ([`Expect::front`], [`Expect::statement`]) and are handed the
//! entries the server finished or skipped ([`Expect::take_answered`]); none of them
//! keeps a queue or counts answers of its own.
//!
//! The matching rules, in one place ([`Expect::answer`]):
//! - RowDescription and NoData answer a Describe at the front; otherwise a
//!   RowDescription heads the rows of the front Query or Execute.
//! - BindComplete answers a named portal's Bind at the front.
//! - CommandComplete and EmptyQueryResponse end one statement of the front Query (a
//!   Query may hold several; it ends at its ReadyForQuery) or the front Execute;
//!   PortalSuspended ends the front Execute.
//! - ErrorResponse inside a Query is that statement's; in the extended protocol it ends
//!   the batch: the server skips everything up to the Sync, so the first Execute up to
//!   there finishes with the error and the rest are skipped.
//! - ReadyForQuery ends the cycle: everything up to its Sync or Query leaves.
//!
//! The queue is followed only while some consumer reads it (an audit trail, or
//! masking once a statement was judged under masks): a session with neither pays
//! nothing for it.

use std::collections::VecDeque;

use super::slots::{MaskPortal, MaskStatement, Shared};
use crate::audit::Ticket;
use crate::classify::lineage::Named;
use crate::mask::wire::Origin;

/// The kind of request an entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Query,
    Execute,
    Describe,
    /// A Bind of a named portal (only masking needs to know when it exists).
    Bind,
    Sync,
}

/// Masking's part of an entry.
#[derive(Debug)]
pub enum MaskTicket {
    Query {
        /// Where each statement's outputs come from.
        origins: Vec<Origin>,
        /// What each statement names (PREPARE, DECLARE), taken at its completion.
        defines: Vec<Option<(Named, Origin)>>,
    },
    /// A Bind of a named portal: at its BindComplete, a SQL `FETCH name` reads it.
    Bind(String, Shared<MaskPortal>),
    DescribeStatement(Shared<MaskStatement>),
    DescribePortal(Shared<MaskPortal>),
    Execute(Shared<MaskPortal>),
}

/// One request the server has still to answer.
#[derive(Debug)]
pub struct Expected {
    pub asked: Asked,
    /// Statements of a Query the server has completed so far: the index of the one it
    /// answers now.
    pub done: usize,
    pub audit: Option<Ticket>,
    pub mask: Option<MaskTicket>,
}

impl Expected {
    pub fn new(asked: Asked) -> Expected {
        Expected {
            asked,
            done: 0,
            audit: None,
            mask: None,
        }
    }

    pub fn with_audit(mut self, ticket: Option<Ticket>) -> Expected {
        self.audit = ticket;
        self
    }

    pub fn with_mask(mut self, ticket: Option<MaskTicket>) -> Expected {
        self.mask = ticket;
        self
    }

    /// A Query or Execute: it runs a statement, and ends with a completion or error.
    fn runs(&self) -> bool {
        matches!(self.asked, Asked::Query | Asked::Execute)
    }

    fn ends_cycle(&self) -> bool {
        matches!(self.asked, Asked::Query | Asked::Sync)
    }
}

/// How an entry left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered it (its completion, error, or the end of its Query).
    Finished,
    /// The server skipped it after an earlier error in its batch: it did not run.
    Skipped,
}

/// Answers followed past this many entries would mean a client pipelining without
/// reading; made mid-session, the queue starts with at most this many cycles.
const MAX_PENDING_CYCLES: u64 = 4096;

#[derive(Default)]
pub struct Expect {
    followed: bool,
    queue: VecDeque<Expected>,
    /// Entries the last server message ended, in order, for the consumers to take.
    answered: Vec<(Expected, Outcome)>,
}

impl Expect {
    /// Whether entries are being followed (some consumer reads them).
    pub fn followed(&self) -> bool {
        self.followed
    }

    /// Start following; `outstanding` cycles sent before are still to be answered
    /// (their answers belong to no entry a consumer filled).
    pub fn follow(&mut self, outstanding: u64) {
        if self.followed {
            return;
        }
        self.followed = true;
        for _ in 0..outstanding.min(MAX_PENDING_CYCLES) {
            self.queue.push_back(Expected::new(Asked::Sync));
        }
    }

    /// A request went upstream (ignored while nothing follows the queue).
    pub fn push(&mut self, e: Expected) {
        if self.followed {
            self.queue.push_back(e);
        }
    }

    /// A Sync went upstream (the client's or pgmoat's own).
    pub fn sync(&mut self) {
        self.push(Expected::new(Asked::Sync));
    }

    /// The server ignored the last Sync (it came behind a COPY FROM STDIN's Execute).
    pub fn sync_ignored(&mut self) {
        if let Some(i) = self.queue.iter().rposition(|e| e.asked == Asked::Sync) {
            self.queue.remove(i);
        }
    }

    /// The request the server answers now.
    pub fn front(&self) -> Option<&Expected> {
        self.queue.front()
    }

    pub fn front_mut(&mut self) -> Option<&mut Expected> {
        self.queue.front_mut()
    }

    /// The Query or Execute whose statement the server answers now: the front Query,
    /// or the first Execute before the cycle's end (a Describe or Bind answered ahead
    /// of it belongs to its statement). None between statements.
    pub fn statement(&self) -> Option<&Expected> {
        for e in &self.queue {
            if e.runs() {
                return Some(e);
            }
            if e.asked == Asked::Sync {
                return None;
            }
        }
        None
    }

    /// A server message with `tag`, after its consumers read the entry it answers:
    /// the entries it ends leave the queue for [`Expect::take_answered`]. True when
    /// one of them carries an audit ticket (the trail has a record to write).
    pub fn answer(&mut self, tag: u8) -> bool {
        if !self.followed {
            return false;
        }
        let front = self.queue.front().map(|e| e.asked);
        match (tag, front) {
            (b'T' | b'n', Some(Asked::Describe)) | (b'2', Some(Asked::Bind)) => {
                self.finish_front(Outcome::Finished)
            }
            (b'C' | b'I', Some(Asked::Query)) => {
                if let Some(e) = self.queue.front_mut() {
                    e.done += 1;
                }
            }
            (b'C' | b'I' | b's', Some(Asked::Execute)) => self.finish_front(Outcome::Finished),
            (b'E', Some(Asked::Query)) | (b'E', None) => {}
            (b'E', Some(_)) => {
                // The server discards everything up to Sync: the first statement up to
                // there gets the error, the rest never run.
                let mut errored = false;
                while self.queue.front().is_some_and(|e| !e.ends_cycle()) {
                    let outcome = match self.queue.front() {
                        Some(e) if e.runs() && !errored => {
                            errored = true;
                            Outcome::Finished
                        }
                        _ => Outcome::Skipped,
                    };
                    self.finish_front(outcome);
                }
            }
            (b'Z', _) => {
                while let Some(e) = self.queue.front() {
                    let last = e.ends_cycle();
                    let outcome = if e.asked == Asked::Execute {
                        Outcome::Skipped
                    } else {
                        Outcome::Finished
                    };
                    self.finish_front(outcome);
                    if last {
                        break;
                    }
                }
            }
            _ => {}
        }
        self.answered.iter().any(|(e, _)| e.audit.is_some())
    }

    fn finish_front(&mut self, outcome: Outcome) {
        if let Some(e) = self.queue.pop_front() {
            if e.audit.is_some() {
                self.answered.push((e, outcome));
            }
        }
    }

    /// The entries the last messages ended that carry an audit ticket, in order.
    pub fn take_answered(&mut self) -> std::vec::Drain<'_, (Expected, Outcome)> {
        self.answered.drain(..)
    }

    /// Entries still unanswered.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
