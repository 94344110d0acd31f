//! The session core: the synchronous, I/O-free part of the Postgres front door that
//! every protocol fact flows through once.
//!
//! Module map:
//! - [`names`]: the one table of statement and portal names (one slot per name,
//!   unnamed included), followed as the server sees them: which Parse and Close each
//!   ParseComplete and CloseComplete answers, what an unanswered Parse undoes, which
//!   Describe each ParameterDescription answers, when held portals die.
//! - [`slots`]: what a slot carries, one field per consumer: the audit statement id
//!   (`audit`), the hold and parameter types (`hold`, `types`), the mask plan
//!   (`mask`), and the Bind's result formats.
//! - [`pace`]: how the server counts ReadyForQuerys (errors inside batches, COPY),
//!   so that every answer is matched to the cycle that asked it.
//! - [`Core`] (this file): the per-session state: cycles sent and answered, pace,
//!   pgmoat's own Syncs whose answers are swallowed, and the names.
//!
//! The consumers read and fill their own field and keep no name maps of their own:
//! `session::held` (holds and what an approver is shown), `session::masker` (which
//! result the server answers now, SQL-level PREPARE/DECLARE names, row plans),
//! `audit::track` (`decided`/`completed` records, told the statement id at each
//! Execute). The async loop (`session::relay`) reads the sockets, feeds the core and
//! the consumers, and performs the writes and the waits (judge, approval, audit).
//!
//! Adding a protocol fact: a new per-name fact is a field of [`slots::StatementSlot`]
//! or [`slots::PortalSlot`]; when it changes with the server's answers it changes in
//! [`names::Names`] (one place for Parse/Close/Describe matching); a new per-cycle
//! count goes in [`pace::Pace`]. Each consumer then reads it from the slot instead of
//! following the messages again.

use std::collections::VecDeque;

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
}

impl Core {
    /// Cycles asked and not yet answered.
    pub fn outstanding(&self) -> u64 {
        self.sent.saturating_sub(self.seen)
    }
}

#[cfg(test)]
mod tests;
