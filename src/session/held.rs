//! Extended-protocol statements that need approval, followed from Parse to Execute.
//!
//! A Parse that an `approve` rule matches is forwarded (parsing runs nothing), and the
//! statement is remembered here. Its Binds are kept per portal, and the Execute of such
//! a portal is what waits for the approver: by then the bound parameters are known and
//! shown. Parameter types come from the Parse, or from the server's
//! ParameterDescription when the client asked for one (drivers that send binary
//! parameters, like tokio-postgres, always do), so binary values read as numbers.
//!
//! Names are followed as the server sees them ([`crate::protocol::answers`]). A Parse takes
//! effect at once for the rest of its cycle (if the server refuses or skips it, it
//! skips that cycle's Binds and Executes too), and is undone at the end of the cycle
//! unless its ParseComplete came back: a Parse the server refused (the name is taken)
//! or skipped (an error earlier in the pipeline) leaves the held statement in the
//! server, and so here. A Close forgets a held name only once its CloseComplete comes
//! back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::verdict::Hold;
use crate::protocol::answers::Waiting;
use crate::protocol::backend_view::ParameterDescription;
use crate::protocol::frontend::{Bind, Close, Describe, Execute, Parse, Target};

/// Held statements, and portals bound to them, a session may have at once. Forgetting
/// one would let it run unasked, so past this the Parse or Bind is refused instead.
pub const MAX_HELD: usize = 64;
/// Describes remembered at most (forgetting one only loses parameter types).
const MAX_DESCRIBES: usize = 4096;
/// Characters of one parameter shown to the approver.
const SHOWN: usize = 200;

/// A statement (by name) that needs approval to run.
struct HeldStatement {
    hold: Arc<Hold>,
    /// Parameter type OIDs: from the Parse, then from ParameterDescription.
    types: Vec<u32>,
    /// Which Parse this is: a name can be parsed again.
    generation: u64,
}

/// A portal bound to a held statement. It keeps its own hold: the server's portal runs
/// the statement it was bound to, even after that name is closed or parsed anew.
struct HeldPortal {
    hold: Arc<Hold>,
    statement: Vec<u8>,
    generation: u64,
    /// The statement's types when it was bound (used if the name was parsed again).
    types: Vec<u32>,
    bind: Vec<u8>,
    /// The ReadyForQuery that ends the cycle it was bound in: once a later one
    /// reports no transaction, the portal is gone.
    cycle: u64,
}

/// What a held Execute asks: the hold, and the parameters as the approver sees them.
pub struct HeldExecute {
    pub hold: Arc<Hold>,
    pub params: Vec<String>,
    /// The whole parameters, for matching a return-mode retry ([`params_key`]).
    pub params_key: [u8; 32],
}

#[derive(Default)]
pub struct HeldStatements {
    statements: HashMap<Vec<u8>, HeldStatement>,
    portals: HashMap<Vec<u8>, HeldPortal>,
    parses: u64,
    /// Parses of held names (or holding ones) not yet answered: the name and what it
    /// held before, put back if the Parse goes unanswered.
    parse_waits: Waiting<(Vec<u8>, Option<HeldStatement>)>,
    /// Closes of held names, which free them once answered: (name, newest generation).
    close_waits: Waiting<(Vec<u8>, u64)>,
    /// Describe-statement messages sent, in order, with their cycle (ReadyForQuery
    /// number): each is answered by one ParameterDescription unless an error skipped it.
    describes: VecDeque<(Option<Vec<u8>>, u64)>,
}

impl HeldStatements {
    /// The hold of the held statement named `name`, if it is one.
    pub fn statement_hold(&self, name: &[u8]) -> Option<Arc<Hold>> {
        self.statements.get(name).map(|s| Arc::clone(&s.hold))
    }

    /// Whether Bind/Describe/Close/Execute (and ParameterDescription) need a look.
    pub fn active(&self) -> bool {
        !self.statements.is_empty() || !self.portals.is_empty() || !self.describes.is_empty()
    }

    /// A Parse goes upstream at (cycle, position) (a refused one too, as its
    /// stand-in): `hold` when it needs approval. False when it needs approval and the
    /// session has too many held already: then it must be refused, and this be called
    /// again for the stand-in, with None.
    pub fn on_parse(&mut self, body: &[u8], hold: Option<Hold>, cycle: u64, at: u64) -> bool {
        let Ok(name) = Parse::name(body) else {
            return true;
        };
        if hold.is_none() && !self.statements.contains_key(name) {
            return true;
        }
        let removed = match hold {
            Some(hold) => {
                if self.statements.len() >= MAX_HELD && !self.statements.contains_key(name) {
                    return false;
                }
                let types = Parse::parse(body)
                    .map(|p| p.param_types.to_vec())
                    .unwrap_or_default();
                self.parses += 1;
                let held = HeldStatement {
                    hold: Arc::new(hold),
                    types,
                    generation: self.parses,
                };
                let before = self.statements.insert(name.to_vec(), held);
                // Past the limit the new one just stays held (fail closed).
                let _ = self.parse_waits.wait(cycle, at, (name.to_vec(), before));
                return true;
            }
            None => self.statements.remove(name),
        };
        // Past the limit its answer cannot be followed: the held statement stays held
        // (fail closed).
        if let Err((name, Some(held))) =
            self.parse_waits
                .try_wait(cycle, at, (name.to_vec(), removed))
        {
            self.statements.insert(name, held);
        }
        true
    }

    /// The server's ParseComplete for the Parse at (cycle, position).
    pub fn on_parse_complete(&mut self, cycle: u64, at: u64) {
        let mut skipped = Vec::new();
        self.parse_waits.answered(cycle, at, &mut skipped);
        self.undo(skipped);
    }

    /// Parses the server did not take: what their names held comes back.
    fn undo(&mut self, skipped: Vec<(Vec<u8>, Option<HeldStatement>)>) {
        for (name, before) in skipped.into_iter().rev() {
            match before {
                Some(held) => {
                    self.statements.insert(name, held);
                }
                None => {
                    self.statements.remove(&name);
                }
            }
        }
    }

    /// The server's CloseComplete for the Close at (cycle, position).
    pub fn on_close_complete(&mut self, cycle: u64, at: u64) {
        let mut skipped = Vec::new();
        if let Some((name, upto)) = self.close_waits.answered(cycle, at, &mut skipped) {
            self.forget(&name, upto);
        }
    }

    /// A held name is gone from the server; unless it was held again since.
    fn forget(&mut self, name: &[u8], upto: u64) {
        if self
            .statements
            .get(name)
            .is_some_and(|s| s.generation <= upto)
        {
            self.statements.remove(name);
        }
    }

    /// A Bind goes upstream in cycle `cycle`. False when it binds a held statement and
    /// the session has too many such portals open: then it must be refused.
    /// `sql_hold`: the hold of a SQL-level prepared statement of that name, asked only
    /// when no held Parse has it (PREPARE and Parse share the server's namespace).
    pub fn on_bind(
        &mut self,
        body: &[u8],
        cycle: u64,
        sql_hold: impl FnOnce(&[u8]) -> Option<Hold>,
    ) -> bool {
        let Ok(names) = Bind::names(body) else {
            return true;
        };
        let (portal, stmt) = (names.portal, names.statement);
        let held = match self.statements.get(stmt) {
            Some(s) => Some((s.hold.clone(), s.generation, s.types.clone())),
            None => sql_hold(stmt).map(|h| (Arc::new(h), 0, Vec::new())),
        };
        if let Some((hold, generation, types)) = held {
            if self.portals.len() >= MAX_HELD && !self.portals.contains_key(portal) {
                return false;
            }
            self.portals.insert(
                portal.to_vec(),
                HeldPortal {
                    hold,
                    statement: stmt.to_vec(),
                    generation,
                    types,
                    bind: body.to_vec(),
                    cycle,
                },
            );
        } else {
            self.portals.remove(portal);
        }
        true
    }

    /// Describe: a statement's ParameterDescription is due in `cycle`.
    pub fn on_describe(&mut self, body: &[u8], cycle: u64) {
        if let Ok(Describe {
            target: Target::Statement,
            name,
        }) = Describe::parse(body)
        {
            let held = Some(name.to_vec()).filter(|n| self.statements.contains_key(n));
            if self.describes.len() >= MAX_DESCRIBES {
                self.describes.clear();
            }
            self.describes.push_back((held, cycle));
        }
    }

    /// A Close goes upstream at (cycle, position).
    pub fn on_close(&mut self, body: &[u8], cycle: u64, at: u64) {
        let Ok(Close { target, name }) = Close::parse(body) else {
            return;
        };
        match target {
            Target::Statement if self.statements.contains_key(name) => {
                self.close_waits
                    .wait(cycle, at, (name.to_vec(), self.parses));
            }
            // A portal skipped by an error dies with its transaction anyway.
            Target::Portal => {
                self.portals.remove(name);
            }
            Target::Statement => {}
        }
    }

    /// The server's ParameterDescription, in cycle `cycle`.
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

    /// ReadyForQuery number `seen` with transaction status `status`: Describes still
    /// queued for its cycle will not be answered, and outside a transaction the
    /// portals bound up to it are gone (protocol portals never outlive one).
    pub fn on_ready(&mut self, seen: u64, status: u8) {
        if !self.active() && self.parse_waits.is_empty() && self.close_waits.is_empty() {
            // Every session passes here at every ReadyForQuery.
            return;
        }
        while self.describes.front().is_some_and(|(_, c)| *c <= seen) {
            self.describes.pop_front();
        }
        if status == b'I' {
            self.portals.retain(|_, p| p.cycle > seen);
        }
        // Unanswered: skipped. Parses are undone; Closes never freed anything.
        let mut skipped = Vec::new();
        self.parse_waits.cycle_ended(seen, &mut skipped);
        self.undo(skipped);
        self.close_waits.cycle_ended(seen, &mut Vec::new());
    }

    /// An Execute: what to ask when its portal runs a held statement.
    pub fn on_execute(&self, body: &[u8]) -> Option<HeldExecute> {
        let portal = Execute::portal(body).ok()?;
        let p = self.portals.get(portal)?;
        // Types learnt after the Bind (a ParameterDescription) are the better ones.
        let types = match self.statements.get(&p.statement) {
            Some(s) if s.generation == p.generation => &s.types,
            _ => &p.types,
        };
        Some(HeldExecute {
            hold: p.hold.clone(),
            params: describe_params(&p.bind, types),
            params_key: params_key(&p.bind, types),
        })
    }
}

/// The parameters of a statement without any: what a simple query's key holds.
pub const NO_PARAMS: [u8; 32] = [0; 32];

/// A digest of a Bind's parameters, whole (what the approver is shown is cut): their
/// types, formats and bytes, not the portal's or statement's names, which a driver
/// picks anew on every connection. An unreadable Bind gets a digest of its bytes.
pub fn params_key(bind: &[u8], types: &[u32]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let Ok(b) = Bind::parse(bind) else {
        return Sha256::digest(bind).into();
    };
    if b.params.is_empty() {
        return NO_PARAMS;
    }
    let mut h = Sha256::new();
    for (i, v) in b.params.iter().enumerate() {
        h.update(types.get(i).copied().unwrap_or(0).to_be_bytes());
        h.update(b.param_format(i).to_be_bytes());
        match v {
            None => h.update((-1i64).to_be_bytes()),
            Some(v) => {
                h.update((v.len() as i64).to_be_bytes());
                h.update(v);
            }
        }
    }
    h.finalize().into()
}

/// A Bind body's parameters as `$1 = 'text'`, `$2 = 7`, `$3 = NULL`.
pub fn describe_params(bind: &[u8], types: &[u32]) -> Vec<String> {
    let bind = match Bind::parse(bind) {
        Ok(b) => b,
        // The server refuses such a Bind too; the approver sees why nothing is shown.
        Err(e) => return vec![format!("(parameters unreadable: {e})")],
    };
    bind.params
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let shown = match v {
                None => "NULL".to_owned(),
                Some(v) if bind.param_format(i) == 0 => quoted(&String::from_utf8_lossy(v)),
                Some(v) => binary_value(types.get(i).copied().unwrap_or(0), v),
            };
            format!("${} = {shown}", i + 1)
        })
        .collect()
}

/// A text value as an SQL literal, cut to [`SHOWN`] characters.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len().min(SHOWN) + 2);
    q.push('\'');
    for (n, c) in s.chars().enumerate() {
        if n == SHOWN {
            q.push_str(&format!("… ({} bytes)", s.len()));
            break;
        }
        if c == '\'' {
            q.push('\'');
        }
        q.push(c);
    }
    q.push('\'');
    q
}

/// A binary-format value, decoded for the common types and shown as hex otherwise.
fn binary_value(oid: u32, v: &[u8]) -> String {
    let be = |n: usize| -> Option<[u8; 8]> {
        (v.len() == n).then(|| {
            let mut a = [0u8; 8];
            a[8 - n..].copy_from_slice(v);
            a
        })
    };
    let decoded = match oid {
        16 => (v.len() == 1).then(|| if v[0] != 0 { "true" } else { "false" }.to_owned()),
        21 => be(2).map(|a| (u64::from_be_bytes(a) as u16 as i16).to_string()),
        23 | 26 => be(4).map(|a| {
            let x = u64::from_be_bytes(a) as u32;
            if oid == 23 {
                (x as i32).to_string()
            } else {
                x.to_string()
            }
        }),
        20 => be(8).map(|a| i64::from_be_bytes(a).to_string()),
        700 => be(4).map(|a| f32::from_bits(u64::from_be_bytes(a) as u32).to_string()),
        701 => be(8).map(|a| f64::from_bits(u64::from_be_bytes(a)).to_string()),
        // text, varchar, bpchar, name, json: their binary form is the text.
        25 | 1043 | 1042 | 19 | 114 => std::str::from_utf8(v).ok().map(quoted),
        2950 if v.len() == 16 => {
            let h = hex(v);
            Some(format!(
                "'{}-{}-{}-{}-{}'",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        _ => None,
    };
    decoded.unwrap_or_else(|| {
        let cut = &v[..v.len().min(SHOWN / 2)];
        let more = if cut.len() < v.len() {
            format!("… ({} bytes)", v.len())
        } else {
            String::new()
        };
        format!("'\\x{}{more}' (binary, type {oid})", hex(cut))
    })
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No SQL-level prepared statement holds anything in these tests.
    fn no_sql_hold(_: &[u8]) -> Option<Hold> {
        None
    }

    fn hold(sql: &str) -> Hold {
        Hold {
            approvals: crate::approval::Approvals::new(
                std::time::Duration::from_secs(1),
                Default::default(),
            ),
            rule: "r".into(),
            approvers: vec![],
            sql: sql.into(),
        }
    }

    fn bind(formats: &[i16], params: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = b"\0s1\0".to_vec();
        b.extend((formats.len() as i16).to_be_bytes());
        for f in formats {
            b.extend(f.to_be_bytes());
        }
        b.extend((params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                None => b.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend((v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b.extend(0i16.to_be_bytes());
        b
    }

    #[test]
    fn text_parameters_are_quoted_literals() {
        let b = bind(&[], &[Some(b"it's"), None, Some(b"7")]);
        assert_eq!(
            describe_params(&b, &[]),
            vec!["$1 = 'it''s'", "$2 = NULL", "$3 = '7'"]
        );
    }

    #[test]
    fn binary_parameters_decode_by_type() {
        let seven = 7i32.to_be_bytes();
        let big = (-5i64).to_be_bytes();
        let b = bind(&[1], &[Some(b"held"), Some(&seven), Some(&big), Some(&[1])]);
        assert_eq!(
            describe_params(&b, &[25, 23, 20, 16]),
            vec!["$1 = 'held'", "$2 = 7", "$3 = -5", "$4 = true"]
        );
        // Unknown type or wrong size: hex, never a wrong number.
        let b = bind(&[1], &[Some(&seven)]);
        assert_eq!(
            describe_params(&b, &[20]),
            vec!["$1 = '\\x00000007' (binary, type 20)"]
        );
    }

    #[test]
    fn long_and_cut_short_values_stay_bounded() {
        let long = vec![b'a'; 10_000];
        let b = bind(&[], &[Some(&long)]);
        let shown = describe_params(&b, &[]);
        assert!(shown[0].len() < 300, "{}", shown[0]);
        assert!(shown[0].contains("10000 bytes"));
        let mut b = bind(&[], &[Some(b"abc")]);
        b.truncate(b.len() - 3);
        assert_eq!(
            describe_params(&b, &[]),
            vec!["(parameters unreadable: Bind: message ends inside a field)"]
        );
    }

    #[test]
    fn parameter_descriptions_follow_their_describes() {
        let hold = || hold("UPDATE t SET a = $1");
        let mut h = HeldStatements::default();
        assert!(h.on_parse(b"s1\0UPDATE t SET a = $1\0\0\0", Some(hold()), 1, 0));
        h.on_describe(b"Sother\0", 1);
        h.on_describe(b"Ss1\0", 1);
        let mut t = 1i16.to_be_bytes().to_vec();
        t.extend(23u32.to_be_bytes());
        h.on_parameter_description(&[0, 1, 0, 0, 0, 25], 1); // answers "other"
        h.on_parameter_description(&t, 1);
        assert!(h.on_bind(&bind(&[1], &[Some(&7i32.to_be_bytes())]), 1, no_sql_hold));
        let e = h.on_execute(b"\0\0\0\0\0").expect("held");
        assert_eq!(e.params, vec!["$1 = 7"]);
        // The portal runs what it was bound to, whatever the name means now.
        h.on_close(b"Ss1\0", 2, 0);
        h.on_close_complete(2, 0);
        h.on_parse(b"s1\0SELECT 1\0\0\0", None, 2, 0);
        h.on_parse_complete(2, 0);
        assert!(h.on_execute(b"\0\0\0\0\0").is_some());
        // A new Bind of the portal to a statement that needs nothing clears it.
        h.on_bind(&bind(&[], &[]), 1, no_sql_hold);
        assert!(h.on_execute(b"\0\0\0\0\0").is_none());
    }

    #[test]
    fn held_names_are_bounded_and_portals_end_with_their_transaction() {
        let hold = || hold("UPDATE t SET a = 1");
        let mut h = HeldStatements::default();
        for i in 0..MAX_HELD {
            assert!(h.on_parse(
                format!("s{i}\0UPDATE t SET a = 1\0\0\0").as_bytes(),
                Some(hold()),
                1,
                i as u64
            ));
        }
        assert!(
            !h.on_parse(b"one_more\0UPDATE t SET a = 1\0\0\0", Some(hold()), 1, 64),
            "refused, never forgotten"
        );
        for i in 0..MAX_HELD {
            let mut b = format!("p{i}\0s{i}\0").into_bytes();
            b.extend([0, 0, 0, 0, 0, 0]);
            assert!(h.on_bind(&b, 3, no_sql_hold));
        }
        assert!(!h.on_bind(b"p_more\0s0\0\0\0\0\0\0\0", 3, no_sql_hold));
        assert!(h.on_execute(b"p0\0\0\0\0\0").is_some());
        // Bound in cycle 3: a ReadyForQuery of cycle 2 says nothing about it, one
        // inside a transaction neither; cycle 3 ending idle ends the portals.
        h.on_ready(2, b'I');
        h.on_ready(3, b'T');
        assert!(h.on_execute(b"p0\0\0\0\0\0").is_some());
        h.on_ready(3, b'I');
        assert!(h.on_execute(b"p0\0\0\0\0\0").is_none());
    }

    #[test]
    fn a_held_name_is_forgotten_only_when_the_server_confirms() {
        let hold = || hold("DELETE FROM t");
        let held = |h: &mut HeldStatements, cycle| {
            h.on_bind(b"\0s1\0\0\0\0\0\0\0", cycle, no_sql_hold);
            h.on_execute(b"\0\0\0\0\0").is_some()
        };
        let mut h = HeldStatements::default();
        h.on_parse(b"s1\0DELETE FROM t\0\0\0", Some(hold()), 1, 0);
        h.on_parse_complete(1, 0);
        // A Parse under the taken name fails: no ParseComplete, still held.
        h.on_parse(b"s1\0SELECT 1\0\0\0", None, 2, 0);
        h.on_ready(2, b'I');
        assert!(held(&mut h, 3));
        // A Close skipped by an earlier error in its cycle: still held.
        // (position 0: a Close of something else, answered; then an error)
        h.on_close(b"Ss1\0", 3, 1);
        h.on_close_complete(3, 0);
        h.on_ready(3, b'I');
        assert!(held(&mut h, 4));
        // Pipelined: closed (confirmed late) and held again meanwhile: still held.
        h.on_parse(b"x\0SELECT 1\0\0\0", None, 4, 0);
        h.on_close(b"Ss1\0", 4, 0);
        h.on_parse(b"s1\0DELETE FROM t\0\0\0", Some(hold()), 4, 1);
        h.on_parse_complete(4, 0);
        h.on_close_complete(4, 0);
        h.on_parse_complete(4, 1);
        assert!(held(&mut h, 4));
        // A confirmed Close: gone.
        h.on_close(b"Ss1\0", 5, 0);
        h.on_close_complete(5, 0);
        assert!(!held(&mut h, 5));
    }

    #[test]
    fn a_pipelined_parse_of_the_unnamed_statement_replaces_it_at_once() {
        let mut h = HeldStatements::default();
        h.on_parse(
            b"\0UPDATE t SET a = 1\0\0\0",
            Some(hold("UPDATE t SET a = 1")),
            1,
            0,
        );
        h.on_parse_complete(1, 0);
        h.on_ready(1, b'I');
        // Parse, Bind, Execute of a statement that needs nothing, in one cycle: the
        // Execute runs the new statement, so nothing is asked.
        h.on_parse(b"\0SELECT 1\0\0\0", None, 2, 0);
        h.on_bind(b"\0\0\0\0\0\0\0\0", 2, no_sql_hold);
        assert!(h.on_execute(b"\0\0\0\0\0").is_none());
        h.on_parse_complete(2, 0);
        h.on_ready(2, b'I');
        h.on_bind(b"\0\0\0\0\0\0\0\0", 3, no_sql_hold);
        assert!(h.on_execute(b"\0\0\0\0\0").is_none(), "taken by the server");
        // A held Parse the server skipped is undone: the name holds nothing again.
        h.on_parse(
            b"\0UPDATE t SET a = 2\0\0\0",
            Some(hold("UPDATE t SET a = 2")),
            3,
            0,
        );
        h.on_ready(3, b'E');
        h.on_bind(b"\0\0\0\0\0\0\0\0", 4, no_sql_hold);
        assert!(h.on_execute(b"\0\0\0\0\0").is_none());
    }
}
