//! The session's masking state: which statement each result belongs to, and the plan
//! for the rows streaming back now.
//!
//! Which request the server answers now is the session core's to know (its queue of
//! expected answers, [`crate::session::core::expect`]): this file fills the mask
//! ticket each request carries there, and reads the ticket of the one answered now to
//! tell whose RowDescription or DataRow arrives. Extended-protocol statements and portals, and
//! SQL-level PREPAREd statements and cursors, keep their lineage by name, so EXECUTE,
//! FETCH and named statements reused across messages are masked like the query behind
//! them. When the tracking cannot tell, rows are masked whole.
//!
//! A name changes hands only when the server says so: a PREPARE or DECLARE counts at
//! its CommandComplete, a Parse at its ParseComplete. A PREPARE, DECLARE or Parse the
//! server refused (the name is taken) or skipped (after an error) leaves the old
//! statement in the server, and so its masks here.
//!
//! Errors and notices: when the statement being answered reads masked data (or
//! pgmoat cannot tell), writes a relation with masked columns, or the message was
//! raised inside code (a context field: functions, triggers), its text is withheld
//! (see [`wire::scrub_message`]); so is the rest of that transaction's, since
//! deferred checks report at COMMIT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use super::core::expect::{Expected, MaskTicket};
use super::core::names::Names;
use super::core::slots::{lock, MaskPortal as Portal, MaskStatement as Statement, Shared};
use crate::classify::lineage::{Lineage, Named};
use crate::mask::rewrite::{self, ResultPlan, Scratch};
use crate::mask::wire::{self, Field, Origin};
use crate::mask::Masking;
use crate::protocol::backend_view::column_count;
use crate::protocol::formats::ResultFormats;
use crate::protocol::frontend::{Describe, Target};

/// What SQL names (prepared statements, cursors) read, by name: randomly keyed like
/// std's hasher, cheaper than SipHash.
type NamedMap = HashMap<Named, Origin, foldhash::fast::RandomState>;

/// Masking's part of the session: what SQL names mean (PREPARE, DECLARE) and the
/// plan of the result streaming back now. Protocol statement and portal names live
/// in the session core's table ([`Names`]), one mask field per slot; which request
/// the server answers, in its queue of expected answers, one mask ticket per entry.
pub struct Masker {
    pub engine: Arc<Masking>,
    named: NamedMap,
    current: Option<Arc<ResultPlan>>,
    /// The last plan made, for the next result of the same shape (see
    /// [`Masker::plan_for`]).
    last_plan: Option<LastPlan>,
    /// The fields of the last RowDescription, shared by the next one that says the same.
    last_fields: Option<Arc<[Field]>>,
    scratch: Scratch,
    /// Values masked so far (for the metrics).
    pub masked_values: u64,
    /// A statement of the transaction under way withholds its errors: so do the
    /// rest of it (deferred checks and triggers report later, at COMMIT or SET
    /// CONSTRAINTS, under a statement that reads nothing).
    txn_withholds: bool,
}

/// A result plan and everything it was made of: planning is a pure function of these
/// (the engine's catalog and rules never change; a reload makes a new engine), so a
/// result with the same ones (a prepared statement's every execution) takes the same
/// plan instead of allocating and looking each column up again.
struct LastPlan {
    engine: Arc<Masking>,
    fields: Arc<[Field]>,
    origin: Origin,
    formats: Option<ResultFormats>,
    plan: Arc<ResultPlan>,
}

/// What to do with a server message.
pub enum Action {
    Forward,
    /// The replacement was appended to the output buffer.
    Replaced,
}

fn origin_of(l: &Lineage, named: &NamedMap) -> Origin {
    if let Some(n) = &l.uses {
        let o = named.get(n).cloned().unwrap_or_else(Origin::unknown);
        return with_arguments(o, l);
    }
    Origin {
        outputs: l.outputs.as_deref().map(Arc::from),
        touched: l.touched,
        withhold: false,
    }
}

/// `EXECUTE p(args)`: the arguments' masks reach every output (any of them may echo
/// an argument, `PREPARE p AS SELECT $1::text`), and its errors are withheld.
fn with_arguments(mut o: Origin, l: &Lineage) -> Origin {
    if l.touched.is_clean() {
        return o;
    }
    let t = l.touched.derive();
    if let Some(outputs) = &mut o.outputs {
        *outputs = outputs.iter().map(|x| x.join(t)).collect();
    }
    o.touched = o.touched.join(l.touched);
    o
}

/// Whether statement `i` of a message writes a relation with masked columns (see
/// [`crate::session::judge::Judged::writes_masked`]); past the 64th, any such write
/// counts for all.
pub fn writes_masked(bits: u64, i: usize) -> bool {
    if i >= 63 {
        bits >> 63 != 0
    } else {
        bits & (1 << i) != 0
    }
}

impl Masker {
    pub fn new(engine: Arc<Masking>) -> Masker {
        Masker {
            engine,
            named: NamedMap::default(),
            current: None,
            last_plan: None,
            last_fields: None,
            scratch: Scratch::default(),
            masked_values: 0,
            txn_withholds: false,
        }
    }

    /// Statement origins for a message's lineage (None: nothing masked is involved),
    /// and what its PREPAREs and DECLAREs would define. Later statements of the same
    /// message see those names already (they run only if the definition succeeded).
    #[allow(clippy::type_complexity)]
    fn origins(
        &self,
        lineage: Option<&[Lineage]>,
        n: usize,
        writes: u64,
    ) -> (Vec<Origin>, Vec<Option<(Named, Origin)>>) {
        let Some(list) = lineage else {
            return (vec![Origin::clean(); n.max(1)], Vec::new());
        };
        let mut out = Vec::with_capacity(list.len());
        let mut defines = Vec::with_capacity(list.len());
        let mut here = NamedMap::default();
        for (i, l) in list.iter().enumerate() {
            if l.forgets_cursors {
                here.retain(|k, _| !matches!(k, Named::Cursor(_)));
            }
            let mut o = match &l.uses {
                Some(n) if here.contains_key(n) => with_arguments(here[n].clone(), l),
                _ => origin_of(l, &self.named),
            };
            o.withhold |= writes_masked(writes, i);
            defines.push(l.defines.as_ref().map(|name| {
                here.insert(name.clone(), o.clone());
                (name.clone(), o.clone())
            }));
            out.push(o);
        }
        (out, defines)
    }

    /// Code pgmoat does not follow may close a cursor and open another of that name
    /// (a function's `OPEN name FOR ...`), or CLOSE ended one: what a FETCH of a name
    /// DECLARE made reads is no longer known, so it is masked whole. (Portals a Bind
    /// made are kept: a driver reads them in pieces across other statements.)
    fn forget_cursors(&mut self, names: &mut Names, lineage: Option<&[Lineage]>) {
        if lineage.is_some_and(|l| l.iter().any(|l| l.forgets_cursors)) {
            self.named.retain(|k, _| match k {
                Named::Cursor(n) => {
                    if let Some(p) = names.portal_mut(n.as_bytes()) {
                        p.mask = None;
                    }
                    false
                }
                Named::Prepared(_) => true,
            });
        }
    }

    /// A Query goes upstream (or its stand-in, with `lineage` None and one
    /// statement): the mask ticket of its entry. `writes`: see [`writes_masked`].
    pub fn on_query(
        &mut self,
        names: &mut Names,
        lineage: Option<&[Lineage]>,
        statements: usize,
        writes: u64,
    ) -> MaskTicket {
        self.forget_cursors(names, lineage);
        let (origins, defines) = self.origins(lineage, statements, writes);
        MaskTicket::Query { origins, defines }
    }

    /// A Parse of `name` goes upstream: the mask field of its new slot.
    pub fn for_parse(
        &mut self,
        names: &mut Names,
        name: &[u8],
        lineage: Option<&[Lineage]>,
        writes: u64,
    ) -> Shared<Statement> {
        self.forget_cursors(names, lineage);
        let (origins, _) = self.origins(lineage, 1, writes);
        // One namespace with SQL's: a later `EXECUTE name` may run this statement (or,
        // if the server refuses the Parse, the old one), so what SQL knew of the name
        // is forgotten: unknown, and masked whole.
        if !self.named.is_empty() {
            self.named
                .remove(&Named::Prepared(String::from_utf8_lossy(name).into_owned()));
        }
        Arc::new(Mutex::new(Statement {
            origin: origins.into_iter().next().unwrap_or_default(),
            fields: None,
        }))
    }

    /// The server took the Parse of `name` (still its current definition): a SQL
    /// `EXECUTE name` now runs this statement, and is masked by what it is (the
    /// unnamed statement has no SQL name).
    pub fn parse_taken(&mut self, names: &Names, name: &[u8]) {
        if name.is_empty() {
            return;
        }
        if let Some(m) = names.statement(name).and_then(|s| s.mask.as_ref()) {
            let origin = lock(m).origin.clone();
            self.named.insert(
                Named::Prepared(String::from_utf8_lossy(name).into_owned()),
                origin,
            );
        }
    }

    /// The server's BindComplete, answering `front`: a named portal now exists, and
    /// SQL `FETCH`/`MOVE` of its name read it.
    pub fn on_bind_complete(&mut self, front: Option<&Expected>) {
        if let Some(MaskTicket::Bind(name, p)) = front.and_then(|e| e.mask.as_ref()) {
            let origin = lock(p).origin.clone();
            self.named.insert(Named::Cursor(name.clone()), origin);
        }
    }

    /// A Bind of `portal` to `statement` goes upstream: the mask field of the
    /// portal's new slot, and for a named portal the ticket of its entry.
    pub fn for_bind(
        &mut self,
        names: &Names,
        portal: &[u8],
        statement: &[u8],
        formats: ResultFormats,
    ) -> (Shared<Portal>, Option<MaskTicket>) {
        let s = match names.statement(statement).and_then(|s| s.mask.as_ref()) {
            Some(s) => lock(s).clone(),
            None => Statement {
                origin: Origin::unknown(),
                fields: None,
            },
        };
        // A `FETCH` of this name reads the new portal once the server has bound it
        // (a Bind the server refuses leaves the old one). The unnamed portal is no
        // cursor's (a SQL name is never empty), so its Binds, the common case, skip
        // the look-up.
        if !portal.is_empty() && !self.named.is_empty() {
            self.named
                .remove(&Named::Cursor(String::from_utf8_lossy(portal).into_owned()));
        }
        let p = Arc::new(Mutex::new(Portal {
            origin: s.origin,
            formats,
            fields: s.fields,
        }));
        let ticket = (!portal.is_empty()).then(|| {
            MaskTicket::Bind(String::from_utf8_lossy(portal).into_owned(), Arc::clone(&p))
        });
        (p, ticket)
    }

    /// A whole Describe goes upstream: the ticket of its entry.
    pub fn on_describe(&mut self, names: &mut Names, body: &[u8]) -> MaskTicket {
        // One entry per Describe, readable or not: the server answers a malformed one
        // with an error, which ends the batch.
        match Describe::parse(body) {
            Ok(Describe {
                target: Target::Statement,
                name,
            }) => MaskTicket::DescribeStatement(statement(names, name)),
            Ok(Describe { name, .. }) => MaskTicket::DescribePortal(portal(names, name)),
            Err(_) => MaskTicket::DescribePortal(portal(names, b"")),
        }
    }

    /// An Execute of `portal_name` goes upstream: the ticket of its entry.
    pub fn on_execute(&mut self, names: &mut Names, portal_name: &[u8]) -> MaskTicket {
        MaskTicket::Execute(portal(names, portal_name))
    }

    /// Whether the statement the server answers for now (`front`) withholds its
    /// errors (no copy of its origin: this runs at every completion). An entry with
    /// no mask ticket was sent before anything was masked: clean.
    fn front_withholds(front: Option<&Expected>) -> bool {
        let Some(e) = front else { return false };
        match &e.mask {
            Some(MaskTicket::Query { origins, .. }) => {
                origins.get(e.done).is_none_or(Origin::withholds)
            }
            Some(
                MaskTicket::Execute(p) | MaskTicket::DescribePortal(p) | MaskTicket::Bind(_, p),
            ) => lock(p).origin.withholds(),
            // A Parse's error arrives before its Describe's answer.
            Some(MaskTicket::DescribeStatement(s)) => lock(s).origin.withholds(),
            None => false,
        }
    }

    fn front_origin(front: Option<&Expected>) -> Origin {
        let Some(e) = front else {
            return Origin::clean();
        };
        match &e.mask {
            Some(MaskTicket::Query { origins, .. }) => {
                origins.get(e.done).cloned().unwrap_or_else(Origin::unknown)
            }
            Some(MaskTicket::Execute(p)) => lock(p).origin.clone(),
            None => Origin::clean(),
            Some(_) => Origin::unknown(),
        }
    }

    /// A whole server message, before it is forwarded.
    /// A rule that cannot miss: the statement reads masked data anywhere (or pgmoat
    /// cannot tell), writes a relation with masked columns, or an earlier one in this
    /// transaction did (a deferred constraint or trigger reports at COMMIT): an error's
    /// or notice's text is withheld whatever it says.
    fn statement_withholds(&self, front: Option<&Expected>) -> bool {
        self.txn_withholds
            || Self::front_withholds(front)
            || self
                .current
                .as_ref()
                .is_some_and(|p| p.masked_columns() > 0)
    }

    /// What the client is shown of an ErrorResponse or NoticeResponse the server sends
    /// now (None: as sent). The audit trail records this, never more than the client
    /// saw (console review H1: a cast error quotes the masked value it failed on).
    pub fn shown_error(&self, msg: &[u8], front: Option<&Expected>) -> Option<BytesMut> {
        // Raised in code pgmoat does not follow (a trigger on a clean table can read
        // masked data): withheld too, whatever the statement reads.
        let withhold = self.statement_withholds(front) || wire::raised_in_code(msg);
        wire::scrub_message(msg, withhold, self.engine.detectors.as_deref())
    }

    /// A whole server message, answering `front` (the session core's entry for the
    /// request the server answers now; the core moves past it afterwards).
    pub fn on_server(
        &mut self,
        names: &mut Names,
        front: Option<&mut Expected>,
        msg: &[u8],
        out: &mut BytesMut,
    ) -> Action {
        let body = &msg[5..];
        match msg[0] {
            b'T' => {
                let fields = wire::row_description_like(body, self.last_fields.as_ref());
                if let Some(f) = &fields {
                    self.last_fields = Some(Arc::clone(f));
                }
                match front.as_ref().and_then(|e| e.mask.as_ref()) {
                    Some(MaskTicket::DescribeStatement(s)) => lock(s).fields = fields,
                    Some(MaskTicket::DescribePortal(p)) => lock(p).fields = fields,
                    _ => {
                        let origin = Self::front_origin(front.as_deref());
                        self.current = Some(match fields {
                            Some(f) => self.plan_for(&f, &origin, None),
                            None => Arc::new(wire::blind_plan(0)),
                        });
                    }
                }
                Action::Forward
            }
            b'D' => self.data_row(msg, front.as_deref(), out),
            b'C' | b'I' => {
                self.current = None;
                if !self.txn_withholds && Self::front_withholds(front.as_deref()) {
                    self.txn_withholds = true;
                }
                let Some(e) = front else {
                    return Action::Forward;
                };
                let done = e.done;
                if let Some(MaskTicket::Query { defines, .. }) = &mut e.mask {
                    // The statement succeeded: what it defines now exists.
                    if let Some(Some((name, origin))) = defines.get_mut(done).map(Option::take) {
                        // The server keeps SQL and protocol names in one namespace:
                        // a PREPARE also names what a Bind of that statement runs, a
                        // DECLARE what an Execute of that portal reads.
                        match &name {
                            Named::Prepared(n) => {
                                let s = Statement {
                                    origin: origin.clone(),
                                    fields: None,
                                };
                                names.statement_entry(n.as_bytes()).mask =
                                    Some(Arc::new(Mutex::new(s)));
                            }
                            Named::Cursor(n) => {
                                let p = Portal {
                                    origin: origin.clone(),
                                    ..Portal::default()
                                };
                                names.portal_entry(n.as_bytes()).mask =
                                    Some(Arc::new(Mutex::new(p)));
                            }
                        }
                        self.named.insert(name, origin);
                    }
                }
                Action::Forward
            }
            b's' => {
                self.current = None;
                if !self.txn_withholds && Self::front_withholds(front.as_deref()) {
                    self.txn_withholds = true;
                }
                Action::Forward
            }
            b'E' | b'N' => {
                if self.statement_withholds(front.as_deref()) {
                    self.txn_withholds = true;
                }
                let scrubbed = self.shown_error(msg, front.as_deref());
                if msg[0] == b'E' {
                    self.current = None;
                }
                match scrubbed {
                    Some(o) => {
                        out.extend_from_slice(&o);
                        Action::Replaced
                    }
                    None => Action::Forward,
                }
            }
            b'Z' => {
                self.current = None;
                // Outside a transaction block nothing deferred is left to report.
                if body.first() == Some(&b'I') {
                    self.txn_withholds = false;
                }
                Action::Forward
            }
            b'd' => self.copy_data(msg, out),
            // A notification's payload carries any text any session put there: a
            // DBA's trigger may `pg_notify` a masked column when the masked identity
            // itself updates the row, and no lineage reaches it (review s37 W3). With
            // column masks it is withheld whole; otherwise the detectors see it.
            b'A' if self.engine.has_column_masks() => scrubbed(redacted_payload(msg), out),
            // A reported setting carries any text a statement put there (the lineage
            // refuses masked values in it; the detectors are the backstop, as for
            // error text).
            b'A' => scrubbed(wire::scrub_strings(msg, 4, &self.engine), out),
            b'S' => scrubbed(wire::scrub_strings(msg, 0, &self.engine), out),
            _ => Action::Forward,
        }
    }

    fn data_row(&mut self, msg: &[u8], front: Option<&Expected>, out: &mut BytesMut) -> Action {
        if self.current.is_none() {
            // Rows of an Execute: the plan comes from its portal.
            let plan = match front.and_then(|e| e.mask.as_ref()) {
                Some(MaskTicket::Execute(p)) => {
                    // Planned under the lock: no copy of the portal per result.
                    let portal = lock(p);
                    match &portal.fields {
                        Some(f) => {
                            self.plan_for(f, &portal.origin, Some(portal.formats.as_slice()))
                        }
                        None if portal.origin.touched.is_clean()
                            && self.engine.detectors.is_none() =>
                        {
                            Arc::new(ResultPlan::default())
                        }
                        None => Arc::new(blind(msg)),
                    }
                }
                _ => Arc::new(blind(msg)),
            };
            self.current = Some(plan);
        }
        let Some(plan) = &self.current else {
            return Action::Forward;
        };
        if plan.is_empty() && plan.columns.len() == count_columns(msg) {
            return Action::Forward;
        }
        let mark = out.len();
        match rewrite::rewrite_data_row(msg, plan, &mut self.scratch, out) {
            Ok(o) => {
                self.masked_values += o.masked as u64;
                if o.rewritten {
                    Action::Replaced
                } else {
                    Action::Forward
                }
            }
            Err(_) => {
                // A row pgmoat cannot read is not passed on as it is.
                out.truncate(mark);
                let blind = wire::blind_plan(count_columns(msg));
                if rewrite::rewrite_data_row(msg, &blind, &mut self.scratch, out).is_err() {
                    out.truncate(mark);
                    // Not even the column count: an empty row stands in.
                    out.extend_from_slice(&[b'D', 0, 0, 0, 6, 0, 0]);
                }
                Action::Replaced
            }
        }
    }

    /// The plan for rows of `fields` from a statement of `origin`, with the Bind's
    /// result `formats` (None: the RowDescription's): the last one when it was made
    /// of the same (see [`LastPlan`]).
    fn plan_for(
        &mut self,
        fields: &Arc<[Field]>,
        origin: &Origin,
        formats: Option<&[i16]>,
    ) -> Arc<ResultPlan> {
        if let Some(l) = &self.last_plan {
            if Arc::ptr_eq(&l.engine, &self.engine)
                && l.fields == *fields
                && l.origin == *origin
                && l.formats.as_ref().map(ResultFormats::as_slice) == formats
            {
                return Arc::clone(&l.plan);
            }
        }
        let plan = Arc::new(wire::plan(&self.engine, fields, origin, formats));
        self.last_plan = Some(LastPlan {
            engine: Arc::clone(&self.engine),
            fields: Arc::clone(fields),
            origin: origin.clone(),
            formats: formats.map(ResultFormats::from_slice),
            plan: Arc::clone(&plan),
        });
        plan
    }

    /// COPY TO STDOUT data: masked columns never get here (such a COPY is refused),
    /// but detectors scan the text.
    fn copy_data(&mut self, msg: &[u8], out: &mut BytesMut) -> Action {
        let Some(d) = &self.engine.detectors else {
            return Action::Forward;
        };
        let mut value = Vec::new();
        if d.scan(&msg[5..], &mut value).is_none() {
            return Action::Forward;
        }
        self.masked_values += 1;
        out.extend_from_slice(b"d");
        out.extend_from_slice(&((value.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&value);
        Action::Replaced
    }
}

fn count_columns(msg: &[u8]) -> usize {
    column_count(msg.get(5..).unwrap_or_default())
}

/// Rows whose origin pgmoat lost track of: every value goes.
fn blind(msg: &[u8]) -> ResultPlan {
    wire::blind_plan(count_columns(msg))
}

/// The mask field of statement `name`, made unknown (masked whole) when masking
/// knows nothing of it. Looked up first: a hit (the common case) allocates no key.
fn statement(names: &mut Names, name: &[u8]) -> Shared<Statement> {
    if let Some(m) = names.statement(name).and_then(|s| s.mask.as_ref()) {
        return Arc::clone(m);
    }
    let m = Arc::new(Mutex::new(Statement {
        origin: Origin::unknown(),
        fields: None,
    }));
    names.statement_entry(name).mask = Some(Arc::clone(&m));
    m
}

/// The mask field of portal `name`, made unknown when masking knows nothing of it.
fn portal(names: &mut Names, name: &[u8]) -> Shared<Portal> {
    if let Some(m) = names.portal(name).and_then(|p| p.mask.as_ref()) {
        return Arc::clone(m);
    }
    let m = Arc::new(Mutex::new(Portal {
        origin: Origin::unknown(),
        ..Portal::default()
    }));
    names.portal_entry(name).mask = Some(Arc::clone(&m));
    m
}

/// A NotificationResponse (process id, channel, payload) with its payload replaced by
/// the redaction marker; None when it has none (nothing to withhold) or is malformed
/// (the client's driver reports that).
fn redacted_payload(msg: &[u8]) -> Option<BytesMut> {
    let body = msg.get(5..)?;
    let channel_end = 4 + body.get(4..)?.iter().position(|&b| b == 0)?;
    if body.get(channel_end + 1).is_none_or(|&b| b == 0) {
        return None;
    }
    let marker = crate::mask::method::REDACTED;
    let mut out = BytesMut::with_capacity(5 + channel_end + 2 + marker.len());
    out.extend_from_slice(&[b'A', 0, 0, 0, 0]);
    out.extend_from_slice(&body[..=channel_end]);
    out.extend_from_slice(marker);
    out.extend_from_slice(&[0]);
    let len = u32::try_from(out.len() - 1).ok()?;
    out[1..5].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

fn scrubbed(replacement: Option<BytesMut>, out: &mut BytesMut) -> Action {
    match replacement {
        Some(r) => {
            out.extend_from_slice(&r);
            Action::Replaced
        }
        None => Action::Forward,
    }
}

#[cfg(test)]
#[path = "masker_tests.rs"]
mod tests;
