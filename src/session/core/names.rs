//! The one table of statement and portal names, followed as the server sees them.
//!
//! A Parse takes effect at once for the rest of its cycle (if the server refuses or
//! skips it, it skips that cycle's Binds and Executes too) and is undone at the end
//! of the cycle unless its ParseComplete came back: a Parse the server refused (the
//! name is taken) or skipped (an error earlier in the pipeline) leaves the old
//! statement in the server, and so here. A Close of a statement forgets the name only
//! once its CloseComplete comes back; a Close of a portal forgets it at once (a portal
//! skipped by an error dies with its transaction anyway). Which answer belongs to which
//! request is counted by position within the cycle ([`crate::protocol::answers`]).
//!
//! Every consumer (the audit trail, holds, masking) reads the slot of a name here
//! instead of keeping its own map and its own list of unanswered Parses.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::slots::{lock, HeldPortal, PortalSlot, StatementSlot};
use crate::mask::wire::Origin;
use crate::protocol::answers::{Positions, Waiting};
use crate::protocol::backend_view::ParameterDescription;
use crate::protocol::frontend::{Close, Describe, Target};
use crate::session::verdict::Hold;

/// Names kept at most per kind: a client cycling through names must not grow the
/// table without end. Past it the names that hold nothing are dropped (their
/// consumers then know nothing of them: masked whole, audited as statement 0); held
/// ones are bounded apart ([`crate::session::held::MAX_HELD`]) and never dropped.
pub const MAX_NAMES: usize = 10_000;
/// Describes remembered at most (forgetting one only loses parameter types).
const MAX_DESCRIBES: usize = 4096;

/// A Parse not yet answered: the name, what it named before (put back if the server
/// does not take the Parse), and the new definition's generation.
struct Replaced {
    name: Vec<u8>,
    before: Option<StatementSlot>,
    generation: u64,
}

/// The tables' hasher: randomly keyed like std's, cheaper than SipHash on the short
/// names looked up several times per Bind and Execute (the portal's, its statement's).
type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
pub struct Names {
    statements: HashMap<Vec<u8>, StatementSlot, Hasher>,
    portals: HashMap<Vec<u8>, PortalSlot, Hasher>,
    generation: u64,
    parses: Positions,
    closes: Positions,
    parse_waits: Waiting<Replaced>,
    /// Closes of statements, which free them once answered: (name, newest generation).
    close_waits: Waiting<(Vec<u8>, u64)>,
    /// Describe-statement messages sent while holds are followed, with their cycle:
    /// each is answered by one ParameterDescription unless an error skipped it. The
    /// name is kept only when it is held (only held statements need their types).
    describes: VecDeque<(Option<Vec<u8>>, u64)>,
    held_statements: usize,
    held_portals: usize,
}

impl Names {
    pub fn statement(&self, name: &[u8]) -> Option<&StatementSlot> {
        self.statements.get(name)
    }

    pub fn statement_mut(&mut self, name: &[u8]) -> Option<&mut StatementSlot> {
        self.statements.get_mut(name)
    }

    /// Every statement slot (checking what prepared statements were judged under).
    pub fn statement_slots_mut(&mut self) -> impl Iterator<Item = &mut StatementSlot> {
        self.statements.values_mut()
    }

    /// The slot of `name`, made empty if there is none (a SQL PREPARE's name, or a
    /// name pgmoat never saw defined).
    pub fn statement_entry(&mut self, name: &[u8]) -> &mut StatementSlot {
        if !self.statements.contains_key(name) {
            self.generation += 1;
            let slot = StatementSlot {
                generation: self.generation,
                ..StatementSlot::default()
            };
            self.insert_statement(name.to_vec(), slot);
        }
        self.statements.get_mut(name).expect("inserted just above")
    }

    pub fn portal(&self, name: &[u8]) -> Option<&PortalSlot> {
        self.portals.get(name)
    }

    pub fn portal_mut(&mut self, name: &[u8]) -> Option<&mut PortalSlot> {
        self.portals.get_mut(name)
    }

    /// The slot of portal `name`, made empty if there is none.
    pub fn portal_entry(&mut self, name: &[u8]) -> &mut PortalSlot {
        if !self.portals.contains_key(name) {
            self.make_room_for_portal();
            self.portals.insert(name.to_vec(), PortalSlot::default());
        }
        self.portals.get_mut(name).expect("inserted just above")
    }

    /// Held statements and portals now in the session.
    pub fn held_statements(&self) -> usize {
        self.held_statements
    }

    pub fn held_portals(&self) -> usize {
        self.held_portals
    }

    /// Whether Bind/Describe/Close/Execute (and ParameterDescription) must be read
    /// for the holds.
    pub fn holds_active(&self) -> bool {
        self.held_statements > 0 || self.held_portals > 0 || !self.describes.is_empty()
    }

    /// A Parse goes upstream in `cycle`: its position among the cycle's Parses.
    pub fn parse_sent(&mut self, cycle: u64) -> u64 {
        self.parses.sent(cycle)
    }

    /// A Parse of `name` went upstream at (cycle, position): `slot` (with `hold` when
    /// it needs approval) is what the name means from now on, unless the server does
    /// not take it.
    pub fn on_parse(
        &mut self,
        name: &[u8],
        mut slot: StatementSlot,
        hold: Option<Arc<Hold>>,
        cycle: u64,
        at: u64,
    ) {
        self.generation += 1;
        let generation = self.generation;
        slot.generation = generation;
        slot.hold = hold;
        let before = self.insert_statement(name.to_vec(), slot);
        let waiting = Replaced {
            name: name.to_vec(),
            before,
            generation,
        };
        if let Err(lost) = self.parse_waits.try_wait(cycle, at, waiting) {
            // Its answer cannot be followed (thousands of Parses unanswered): fail
            // closed. A held name stays held, and what the name returns is masked whole.
            let Some(now) = self.statements.get_mut(name) else {
                return;
            };
            if now.hold.is_none() {
                if let Some(h) = lost.before.and_then(|b| b.hold) {
                    now.hold = Some(h);
                    self.held_statements += 1;
                }
            }
            if let Some(m) = &now.mask {
                lock(m).origin = Origin::unknown();
            }
        }
    }

    /// The server's ParseComplete, in `cycle`: the name the server took, if it still
    /// means that definition here.
    pub fn parse_complete(&mut self, cycle: u64) -> Option<Vec<u8>> {
        let at = self.parses.seen(cycle);
        let mut skipped = Vec::new();
        let taken = self.parse_waits.answered(cycle, at, &mut skipped);
        self.undo(skipped);
        let taken = taken?;
        let current = self.statements.get(&taken.name)?;
        (current.generation == taken.generation).then_some(taken.name)
    }

    /// Parses the server did not take: what their names meant comes back.
    fn undo(&mut self, skipped: Vec<Replaced>) {
        for r in skipped.into_iter().rev() {
            if self
                .statements
                .get(&r.name)
                .is_none_or(|s| s.generation != r.generation)
            {
                // Redefined since (or dropped past the limit): not this Parse's to undo.
                continue;
            }
            match r.before {
                Some(before) => {
                    self.insert_statement(r.name, before);
                }
                None => self.remove_statement(&r.name),
            }
        }
    }

    /// A Close goes upstream in `cycle`: its position among the cycle's Closes.
    pub fn close_sent(&mut self, cycle: u64) -> u64 {
        self.closes.sent(cycle)
    }

    /// A whole Close went upstream at (cycle, position).
    pub fn on_close(&mut self, close: &Close<'_>, cycle: u64, at: u64) {
        match close.target {
            Target::Statement if self.statements.contains_key(close.name) => {
                // Past the limit the name just stays (fail closed for a held one).
                let _ = self
                    .close_waits
                    .wait(cycle, at, (close.name.to_vec(), self.generation));
            }
            Target::Statement => {}
            Target::Portal => self.remove_portal(close.name),
        }
    }

    /// The server's CloseComplete, in `cycle`.
    pub fn close_complete(&mut self, cycle: u64) {
        let at = self.closes.seen(cycle);
        let mut skipped = Vec::new();
        if let Some((name, upto)) = self.close_waits.answered(cycle, at, &mut skipped) {
            // Gone from the server; unless it was defined again since.
            if self
                .statements
                .get(&name)
                .is_some_and(|s| s.generation <= upto)
            {
                self.remove_statement(&name);
            }
        }
    }

    /// A Describe went upstream in `cycle` while holds are followed: a statement's
    /// ParameterDescription is due.
    pub fn on_describe(&mut self, describe: &Describe<'_>, cycle: u64) {
        if describe.target != Target::Statement {
            return;
        }
        let held = self
            .statements
            .get(describe.name)
            .is_some_and(|s| s.hold.is_some())
            .then(|| describe.name.to_vec());
        if self.describes.len() >= MAX_DESCRIBES {
            self.describes.clear();
        }
        self.describes.push_back((held, cycle));
    }

    /// The server's ParameterDescription, in `cycle`.
    pub fn on_parameter_description(&mut self, body: &[u8], cycle: u64) {
        // Entries of earlier cycles were skipped by an error: their answers never came.
        while self.describes.front().is_some_and(|(_, c)| *c < cycle) {
            self.describes.pop_front();
        }
        if let Some((Some(name), _)) = self.describes.pop_front() {
            if let Some(s) = self.statements.get_mut(&name) {
                s.types = ParameterDescription::parse(body)
                    .map(|t| t.types.to_vec())
                    .unwrap_or_default();
            }
        }
    }

    /// ReadyForQuery number `seen` with transaction status `status`: the cycle's
    /// unanswered Parses were not taken, its Closes freed nothing, its Describes will
    /// not be answered, and outside a transaction the held portals bound up to it are
    /// gone (protocol portals never outlive one).
    pub fn on_ready(&mut self, seen: u64, status: u8) {
        if !self.holds_active() && self.parse_waits.is_empty() && self.close_waits.is_empty() {
            // Every session passes here at every ReadyForQuery.
            return;
        }
        while self.describes.front().is_some_and(|(_, c)| *c <= seen) {
            self.describes.pop_front();
        }
        if status == b'I' && self.held_portals > 0 {
            for p in self.portals.values_mut() {
                if p.hold.as_ref().is_some_and(|h| h.cycle <= seen) {
                    p.hold = None;
                    self.held_portals -= 1;
                }
            }
        }
        let mut skipped = Vec::new();
        self.parse_waits.cycle_ended(seen, &mut skipped);
        self.undo(skipped);
        self.close_waits.cycle_ended(seen, &mut Vec::new());
    }

    /// A Bind of portal `name` went upstream: its slot, emptied for the consumers to
    /// fill (rebinding a name, the unnamed portal every transaction, reuses the entry
    /// and allocates nothing).
    pub fn rebind(&mut self, name: &[u8]) -> &mut PortalSlot {
        if !self.portals.contains_key(name) {
            self.make_room_for_portal();
            self.portals.insert(name.to_vec(), PortalSlot::default());
        }
        let slot = self.portals.get_mut(name).expect("inserted just above");
        if slot.hold.take().is_some() {
            self.held_portals -= 1;
        }
        slot.audit = None;
        slot.formats.clear();
        slot.mask = None;
        slot
    }

    /// Portal `name` (bound just now) runs a held statement.
    pub fn hold_portal(&mut self, name: &[u8], held: HeldPortal) {
        let slot = self.portal_entry(name);
        if slot.hold.replace(held).is_none() {
            self.held_portals += 1;
        }
    }

    pub fn remove_portal(&mut self, name: &[u8]) {
        if let Some(p) = self.portals.remove(name) {
            if p.hold.is_some() {
                self.held_portals -= 1;
            }
        }
    }

    fn insert_statement(&mut self, name: Vec<u8>, slot: StatementSlot) -> Option<StatementSlot> {
        if self.statements.len() >= MAX_NAMES && !self.statements.contains_key(&name) {
            self.statements.retain(|_, s| s.hold.is_some());
        }
        if slot.hold.is_some() {
            self.held_statements += 1;
        }
        let before = self.statements.insert(name, slot);
        if before.as_ref().is_some_and(|b| b.hold.is_some()) {
            self.held_statements -= 1;
        }
        before
    }

    fn remove_statement(&mut self, name: &[u8]) {
        if let Some(s) = self.statements.remove(name) {
            if s.hold.is_some() {
                self.held_statements -= 1;
            }
        }
    }

    fn make_room_for_portal(&mut self) {
        if self.portals.len() >= MAX_NAMES {
            self.portals.retain(|_, p| p.hold.is_some());
        }
    }
}
