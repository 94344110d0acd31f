//! What one statement or portal name carries: one slot per name, one field per
//! consumer (the audit trail, holds, masking). A consumer reads and fills only its own
//! field; the slot's life (created by Parse or Bind, replaced, undone, closed) is the
//! core's alone ([`super::names::Names`]).

use std::sync::{Arc, Mutex};

use crate::mask::wire::{Field, Origin};
use crate::protocol::formats::ResultFormats;
use crate::session::verdict::Hold;

/// Masking state shared with the expectations that name it: a pipeline may rebind
/// the unnamed portal before the server has answered for the previous binding.
pub type Shared<T> = Arc<Mutex<T>>;

/// Lock a shared masking entry; a poisoned lock still holds valid data.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What masking knows of a statement: where its outputs come from, and its columns
/// once a Describe told them.
#[derive(Debug, Clone, Default)]
pub struct MaskStatement {
    pub origin: Origin,
    pub fields: Option<Arc<[Field]>>,
}

/// What masking knows of a portal: its statement's origin and columns, and the
/// result formats its Bind asked for.
#[derive(Debug, Clone, Default)]
pub struct MaskPortal {
    pub origin: Origin,
    pub formats: ResultFormats,
    pub fields: Option<Arc<[Field]>>,
}

/// The audit trail's view of a name: the statement number whose `decided` record
/// runs under it, and whether that statement was refused (its results are the
/// stand-in's).
pub type AuditEntry = (u64, bool);

/// One prepared statement (protocol Parse or SQL PREPARE; one namespace in the server).
#[derive(Default)]
pub struct StatementSlot {
    /// Which definition of the name this is: a name can be parsed again.
    pub generation: u64,
    pub audit: Option<AuditEntry>,
    /// Set when the statement needs approval to run (asked at its Execute). Only
    /// [`super::names::Names`] writes it: it counts the held names.
    pub(super) hold: Option<Arc<Hold>>,
    /// Parameter type OIDs: from the Parse, then from a ParameterDescription.
    pub types: Vec<u32>,
    pub mask: Option<Shared<MaskStatement>>,
    /// What its DDL changes: each Bind of it is followed to its answer.
    pub ddl: Option<Arc<crate::session::ddl::Made>>,
    /// What it was judged under: checked at each Bind and SQL EXECUTE of it (see
    /// `session::stale`).
    pub judged: Option<crate::session::stale::Judgment>,
    /// Its parameters that name a setting set_config changes, each with whether the
    /// Parse left its type to the server or declared it text or varchar: checked at
    /// each Bind (`Facts::setting_params`).
    pub setting_params: Vec<(u16, bool)>,
    /// The names its SQL `EXECUTE` runs (a Parse of `EXECUTE s1(...)`): checked at
    /// each Bind, since `s1` may be parsed after it.
    pub executes: Vec<String>,
}

/// A portal bound to a held statement. It keeps its own hold: the server's portal runs
/// the statement it was bound to, even after that name is closed or parsed anew.
pub struct HeldPortal {
    pub hold: Arc<Hold>,
    pub statement: Vec<u8>,
    pub generation: u64,
    /// The statement's types when it was bound (used if the name was parsed again).
    pub types: Vec<u32>,
    /// The whole Bind body: the parameters the approver is shown.
    pub bind: Vec<u8>,
    /// The ReadyForQuery that ends the cycle it was bound in: once a later one
    /// reports no transaction, the portal is gone.
    pub cycle: u64,
}

/// One portal (protocol Bind or SQL DECLARE; one namespace in the server).
#[derive(Default)]
pub struct PortalSlot {
    pub audit: Option<AuditEntry>,
    /// Result formats of the Bind, for the audit trail's kept rows (`[1]`, all
    /// binary, when the Bind was not seen whole: kept rows are then hex, never misread).
    pub formats: Vec<i16>,
    /// Only [`super::names::Names`] writes it: it counts the held portals.
    pub(super) hold: Option<HeldPortal>,
    pub mask: Option<Shared<MaskPortal>>,
}

impl StatementSlot {
    /// A new definition's slot; its hold (if any) is given to
    /// [`super::names::Names::on_parse`], which counts it.
    pub fn new(
        audit: Option<AuditEntry>,
        types: Vec<u32>,
        mask: Option<Shared<MaskStatement>>,
    ) -> StatementSlot {
        StatementSlot {
            generation: 0,
            audit,
            hold: None,
            types,
            mask,
            ddl: None,
            judged: None,
            setting_params: Vec::new(),
            executes: Vec::new(),
        }
    }

    pub fn hold(&self) -> Option<&Arc<Hold>> {
        self.hold.as_ref()
    }
}

impl PortalSlot {
    pub fn hold(&self) -> Option<&HeldPortal> {
        self.hold.as_ref()
    }
}
