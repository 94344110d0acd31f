//! The session's masking state: which statement each result belongs to, and the plan
//! for the rows streaming back now.
//!
//! Server responses come in the order of the client's messages, so a queue of what is
//! expected (a simple Query's statements, a Describe, an Execute, a Sync) tells whose
//! RowDescription or DataRow arrives. Extended-protocol statements and portals, and
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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use super::core::names::Names;
use super::core::slots::{lock, MaskPortal as Portal, MaskStatement as Statement, Shared};
use crate::classify::lineage::{Lineage, Named};
use crate::mask::rewrite::{self, ResultPlan, Scratch};
use crate::mask::wire::{self, Origin};
use crate::mask::Masking;
use crate::protocol::backend_view::column_count;
use crate::protocol::frontend::{Describe, Target};

#[derive(Debug)]
enum Expect {
    Query {
        origins: Vec<Origin>,
        /// What each statement names (PREPARE, DECLARE), taken at its completion.
        defines: Vec<Option<(Named, Origin)>>,
        idx: usize,
    },
    /// A Bind of a named portal: at its BindComplete, a SQL `FETCH name` reads it.
    Bind(String, Shared<Portal>),
    DescribeStatement(Shared<Statement>),
    DescribePortal(Shared<Portal>),
    Execute(Shared<Portal>),
    Sync,
}

/// Masking's part of the session: what SQL names mean (PREPARE, DECLARE), which
/// result the server answers now, and that result's plan. Protocol statement and
/// portal names live in the session core's table ([`Names`]), one mask field per slot.
pub struct Masker {
    pub engine: Arc<Masking>,
    named: HashMap<Named, Origin>,
    expect: VecDeque<Expect>,
    current: Option<ResultPlan>,
    scratch: Scratch,
    /// Values masked so far (for the metrics).
    pub masked_values: u64,
    /// A statement of the transaction under way withholds its errors: so do the
    /// rest of it (deferred checks and triggers report later, at COMMIT or SET
    /// CONSTRAINTS, under a statement that reads nothing).
    txn_withholds: bool,
}

/// What to do with a server message.
pub enum Action {
    Forward,
    /// The replacement was appended to the output buffer.
    Replaced,
}

fn origin_of(l: &Lineage, named: &HashMap<Named, Origin>) -> Origin {
    if let Some(n) = &l.uses {
        let o = named.get(n).cloned().unwrap_or_else(Origin::unknown);
        return with_arguments(o, l);
    }
    Origin {
        outputs: l.outputs.clone(),
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
        for x in outputs.iter_mut() {
            *x = x.join(t);
        }
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
            named: HashMap::new(),
            expect: VecDeque::new(),
            current: None,
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
        let mut here: HashMap<Named, Origin> = HashMap::new();
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

    /// A Query was forwarded (or its stand-in, with `lineage` None and one statement).
    /// `writes`: see [`writes_masked`].
    pub fn on_query(
        &mut self,
        names: &mut Names,
        lineage: Option<&[Lineage]>,
        statements: usize,
        writes: u64,
    ) {
        self.forget_cursors(names, lineage);
        let (origins, defines) = self.origins(lineage, statements, writes);
        self.expect.push_back(Expect::Query {
            origins,
            defines,
            idx: 0,
        });
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

    /// Made mid-session: `n` cycles sent before it are still to be answered, each
    /// with its ReadyForQuery.
    pub fn cycles_pending(&mut self, n: u64) {
        for _ in 0..n.min(4096) {
            self.expect.push_back(Expect::Sync);
        }
    }

    /// The server's BindComplete: a named portal now exists, and SQL `FETCH`/`MOVE`
    /// of its name read it.
    pub fn on_bind_complete(&mut self) {
        if let Some(Expect::Bind(name, p)) = self.expect.front() {
            let origin = lock(p).origin.clone();
            self.named.insert(Named::Cursor(name.clone()), origin);
            self.expect.pop_front();
        }
    }

    /// The server ignored the last Sync (it came behind a COPY FROM STDIN's Execute).
    pub fn sync_ignored(&mut self) {
        if let Some(i) = self.expect.iter().rposition(|e| matches!(e, Expect::Sync)) {
            self.expect.remove(i);
        }
    }

    /// A Bind of `portal` to `statement` goes upstream: the mask field of the
    /// portal's new slot.
    pub fn for_bind(
        &mut self,
        names: &Names,
        portal: &[u8],
        statement: &[u8],
        formats: Vec<i16>,
    ) -> Shared<Portal> {
        let s = match names.statement(statement).and_then(|s| s.mask.as_ref()) {
            Some(s) => lock(s).clone(),
            None => Statement {
                origin: Origin::unknown(),
                fields: None,
            },
        };
        // A `FETCH` of this name reads the new portal once the server has bound it
        // (a Bind the server refuses leaves the old one).
        if !self.named.is_empty() {
            self.named
                .remove(&Named::Cursor(String::from_utf8_lossy(portal).into_owned()));
        }
        let p = Arc::new(Mutex::new(Portal {
            origin: s.origin,
            formats,
            fields: s.fields,
        }));
        if !portal.is_empty() {
            self.expect.push_back(Expect::Bind(
                String::from_utf8_lossy(portal).into_owned(),
                Arc::clone(&p),
            ));
        }
        p
    }

    /// A whole Describe went upstream.
    pub fn on_describe(&mut self, names: &mut Names, body: &[u8]) {
        // One expectation per Describe, readable or not: the server answers a
        // malformed one with an error, which ends the batch.
        let e = match Describe::parse(body) {
            Ok(Describe {
                target: Target::Statement,
                name,
            }) => Expect::DescribeStatement(statement(names, name)),
            Ok(Describe { name, .. }) => Expect::DescribePortal(portal(names, name)),
            Err(_) => Expect::DescribePortal(portal(names, b"")),
        };
        self.expect.push_back(e);
    }

    /// An Execute of `portal_name` went upstream.
    pub fn on_execute(&mut self, names: &mut Names, portal_name: &[u8]) {
        let p = portal(names, portal_name);
        self.expect.push_back(Expect::Execute(p));
    }

    /// A Sync went upstream (the client's or pgmoat's own).
    pub fn on_sync(&mut self) {
        self.expect.push_back(Expect::Sync);
    }

    /// Whether the statement the server answers for now withholds its errors (no
    /// copy of its origin: this runs at every completion).
    fn front_withholds(&self) -> bool {
        match self.expect.front() {
            Some(Expect::Query { origins, idx, .. }) => {
                origins.get(*idx).is_none_or(Origin::withholds)
            }
            Some(Expect::Execute(p) | Expect::DescribePortal(p) | Expect::Bind(_, p)) => {
                lock(p).origin.withholds()
            }
            // A Parse's error arrives before its Describe's answer.
            Some(Expect::DescribeStatement(s)) => lock(s).origin.withholds(),
            Some(Expect::Sync) | None => false,
        }
    }

    fn front_origin(&self) -> Origin {
        match self.expect.front() {
            Some(Expect::Query { origins, idx, .. }) => {
                origins.get(*idx).cloned().unwrap_or_else(Origin::unknown)
            }
            Some(Expect::Execute(p)) => lock(p).origin.clone(),
            Some(Expect::Sync) | None => Origin::clean(),
            Some(_) => Origin::unknown(),
        }
    }

    /// A whole server message, before it is forwarded.
    /// A rule that cannot miss: the statement reads masked data anywhere (or pgmoat
    /// cannot tell), writes a relation with masked columns, or an earlier one in this
    /// transaction did (a deferred constraint or trigger reports at COMMIT): an error's
    /// or notice's text is withheld whatever it says.
    fn statement_withholds(&self) -> bool {
        self.txn_withholds
            || self.front_withholds()
            || self
                .current
                .as_ref()
                .is_some_and(|p| p.masked_columns() > 0)
    }

    /// What the client is shown of an ErrorResponse or NoticeResponse the server sends
    /// now (None: as sent). The audit trail records this, never more than the client
    /// saw (console review H1: a cast error quotes the masked value it failed on).
    pub fn shown_error(&self, msg: &[u8]) -> Option<BytesMut> {
        // Raised in code pgmoat does not follow (a trigger on a clean table can read
        // masked data): withheld too, whatever the statement reads.
        let withhold = self.statement_withholds() || wire::raised_in_code(msg);
        wire::scrub_message(msg, withhold, self.engine.detectors.as_deref())
    }

    pub fn on_server(&mut self, names: &mut Names, msg: &[u8], out: &mut BytesMut) -> Action {
        let body = &msg[5..];
        match msg[0] {
            b'T' => {
                let fields = wire::row_description(body);
                match self.expect.front() {
                    Some(Expect::DescribeStatement(s)) => {
                        lock(s).fields = fields;
                        self.expect.pop_front();
                    }
                    Some(Expect::DescribePortal(p)) => {
                        lock(p).fields = fields;
                        self.expect.pop_front();
                    }
                    _ => {
                        let origin = self.front_origin();
                        self.current = Some(match fields {
                            Some(f) => wire::plan(&self.engine, &f, &origin, None),
                            None => wire::blind_plan(0),
                        });
                    }
                }
                Action::Forward
            }
            b'n' => {
                if matches!(
                    self.expect.front(),
                    Some(Expect::DescribeStatement(_) | Expect::DescribePortal(_))
                ) {
                    self.expect.pop_front();
                }
                Action::Forward
            }
            b'D' => self.data_row(msg, out),
            b'C' | b'I' => {
                self.current = None;
                if !self.txn_withholds && self.front_withholds() {
                    self.txn_withholds = true;
                }
                match self.expect.front_mut() {
                    Some(Expect::Query { defines, idx, .. }) => {
                        // The statement succeeded: what it defines now exists.
                        if let Some(Some((name, origin))) = defines.get_mut(*idx).map(Option::take)
                        {
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
                        *idx += 1;
                    }
                    Some(Expect::Execute(_)) => {
                        self.expect.pop_front();
                    }
                    _ => {}
                }
                Action::Forward
            }
            b's' => {
                self.current = None;
                if !self.txn_withholds && self.front_withholds() {
                    self.txn_withholds = true;
                }
                if matches!(self.expect.front(), Some(Expect::Execute(_))) {
                    self.expect.pop_front();
                }
                Action::Forward
            }
            b'E' | b'N' => {
                if self.statement_withholds() {
                    self.txn_withholds = true;
                }
                let scrubbed = self.shown_error(msg);
                if msg[0] == b'E' {
                    self.current = None;
                    // The extended protocol skips to Sync after an error.
                    if !matches!(self.expect.front(), Some(Expect::Query { .. })) {
                        while self
                            .expect
                            .front()
                            .is_some_and(|e| !matches!(e, Expect::Sync | Expect::Query { .. }))
                        {
                            self.expect.pop_front();
                        }
                    }
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
                while let Some(e) = self.expect.pop_front() {
                    if matches!(e, Expect::Sync | Expect::Query { .. }) {
                        break;
                    }
                }
                Action::Forward
            }
            b'd' => self.copy_data(msg, out),
            // A notification's payload and a reported setting carry any text a
            // statement put there (the lineage refuses masked values in them; the
            // detectors are the backstop, as for error text).
            b'A' => scrubbed(wire::scrub_strings(msg, 4, &self.engine), out),
            b'S' => scrubbed(wire::scrub_strings(msg, 0, &self.engine), out),
            _ => Action::Forward,
        }
    }

    fn data_row(&mut self, msg: &[u8], out: &mut BytesMut) -> Action {
        if self.current.is_none() {
            // Rows of an Execute: the plan comes from its portal.
            let plan = match self.expect.front() {
                Some(Expect::Execute(p)) => {
                    let portal = lock(p).clone();
                    match &portal.fields {
                        Some(f) => {
                            wire::plan(&self.engine, f, &portal.origin, Some(&portal.formats))
                        }
                        None if portal.origin.touched.is_clean()
                            && self.engine.detectors.is_none() =>
                        {
                            ResultPlan::default()
                        }
                        None => blind(msg),
                    }
                }
                _ => blind(msg),
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

fn scrubbed(replacement: Option<BytesMut>, out: &mut BytesMut) -> Action {
    match replacement {
        Some(r) => {
            out.extend_from_slice(&r);
            Action::Replaced
        }
        None => Action::Forward,
    }
}
