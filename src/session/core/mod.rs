//! The session core: the synchronous, I/O-free part of the Postgres front door that
//! every protocol fact flows through once.
//!
//! Module map (which file owns what):
//! - [`names`]: the one table of statement and portal names (one slot per name,
//!   unnamed included), followed as the server sees them: which Parse and Close each
//!   ParseComplete and CloseComplete answers, what an unanswered Parse undoes, which
//!   Describe each ParameterDescription answers, when held portals die.
//! - [`slots`]: what a slot carries, one field per consumer: the audit statement id
//!   (`audit`), the hold and parameter types (`hold`, `types`), the mask plan
//!   (`mask`), and the Bind's result formats.
//! - [`expect`]: the one queue of expected answers: which request (Query, Execute,
//!   Describe, named Bind, Sync) each server reply answers, with each consumer's
//!   ticket for it (the audit trail's [`crate::audit::Ticket`], masking's
//!   [`expect::MaskTicket`]); the matching rules (errors inside batches, a Query's
//!   several statements, PortalSuspended, ReadyForQuery) are written there once.
//! - [`pace`]: how the server counts ReadyForQuerys (errors inside batches, COPY),
//!   so that every answer is matched to the cycle that asked it.
//! - [`Core`] (this file): the per-session state: cycles sent and answered, pace,
//!   pgmoat's own Syncs whose answers are swallowed, the names and the queue.
//!
//! The consumers keep no name maps, no queues of requests and no answer counts of
//! their own: `session::held` (holds and what an approver is shown) reads the slots;
//! `session::masker` fills the mask field of slots and the mask ticket of requests,
//! and reads the ticket of the request answered now (plus SQL-level PREPARE/DECLARE
//! names and row plans, which are masking's own); `audit::track` makes the ticket of
//! each Query and Execute, notes what the server says of the statement answered now,
//! and writes the `completed` record when the queue hands the ticket back finished.
//! The async loop (`session::relay`) reads the sockets, feeds the core and the
//! consumers, and performs the writes and the waits (judge, approval, audit). Which
//! reads need a wait is decided from this state: a read of whole Bind, Describe,
//! Execute, Sync and Close messages (and the server's answers to them) with no hold
//! active and nothing to splice in is handled by the relay's synchronous pass, the
//! consumers included (masking rewrites rows synchronously; the trail's `completed`
//! records are queued without waiting unless the audit queue is full), so only
//! judged statements (Query, Parse), holds and composed answers take the async path.
//!
//! Adding a protocol fact, in one place: a new per-name fact is a field of
//! [`slots::StatementSlot`] or [`slots::PortalSlot`]; when it changes with the
//! server's answers it changes in [`names::Names`] (Parse/Close/Describe matching); a
//! new per-request fact is a field of a ticket in [`expect::Expected`] and a new
//! matching rule a line of [`expect::Expect::answer`]; a new per-cycle count goes in
//! [`pace::Pace`]. Each consumer then reads it from the slot or the entry instead of
//! following the messages again.

use std::collections::VecDeque;

pub mod expect;
pub mod names;
pub mod pace;
pub mod slots;

/// The state the core keeps per session: the cycles counted both ways (every Query,
/// FunctionCall and Sync sent upstream ends with one ReadyForQuery, so counting those
/// sent and seen tells which cycle any server message answers), how the server paces
/// them, and the names.
#[derive(Default)]
pub struct Core {
    /// ReadyForQuery-producing messages sent upstream (cycle `sent` is the last one
    /// asked; a message sent now belongs to cycle `sent + 1`).
    pub sent: u64,
    /// ReadyForQuerys seen back (a server message now answers cycle `seen + 1`).
    pub seen: u64,
    /// How the server counts ReadyForQuerys, which the counts above must follow.
    pub(crate) pace: pace::Pace,
    /// ReadyForQuery numbers answering Syncs pgmoat sent itself (see
    /// [`pace::Pace::client`]): not the client's to see.
    pub swallow: VecDeque<u64>,
    pub names: names::Names,
    /// The requests the server has still to answer, in order, with what each
    /// consumer needs of them.
    pub expect: expect::Expect,
}

impl Core {
    /// Cycles asked and not yet answered.
    pub fn outstanding(&self) -> u64 {
        self.sent.saturating_sub(self.seen)
    }
}

#[cfg(test)]
pub(crate) mod script;
#[cfg(test)]
mod tests;
