//! The core over byte scripts: client and server messages in, as the relay feeds them
//! (framed, read through the typed views, counted by cycle), and what each consumer
//! then reads from the one name table out.

use std::sync::Arc;

use super::names::{Names, MAX_NAMES};
use super::pace::Pace;
use super::script::{frames, msg};
use super::slots::StatementSlot;
use crate::protocol::frame::Direction;
use crate::protocol::frontend::{Bind, Close, Describe, Execute, Parse};
use crate::session::held;
use crate::session::verdict::Hold;

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Parse: a statement whose SQL starts with `DELETE` needs approval in these scripts.
fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend((types.len() as i16).to_be_bytes());
    for t in types {
        b.extend(t.to_be_bytes());
    }
    msg(b'P', &b)
}

/// Bind with binary int4 parameters and result formats.
fn bind(portal: &str, statement: &str, params: &[i32], formats: &[i16]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, statement);
    b.extend(1i16.to_be_bytes());
    b.extend(1i16.to_be_bytes());
    b.extend((params.len() as i16).to_be_bytes());
    for p in params {
        b.extend(4i32.to_be_bytes());
        b.extend(p.to_be_bytes());
    }
    b.extend((formats.len() as i16).to_be_bytes());
    for f in formats {
        b.extend(f.to_be_bytes());
    }
    msg(b'B', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend(0i32.to_be_bytes());
    msg(b'E', &b)
}

fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    msg(b'C', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    msg(b'D', &b)
}

fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    msg(b'Q', &b)
}

fn parse_complete() -> Vec<u8> {
    msg(b'1', &[])
}
fn bind_complete() -> Vec<u8> {
    msg(b'2', &[])
}
fn close_complete() -> Vec<u8> {
    msg(b'3', &[])
}
fn error() -> Vec<u8> {
    msg(b'E', b"SERROR\0C42P05\0Mtaken\0\0")
}
fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}
fn parameter_description(types: &[u32]) -> Vec<u8> {
    let mut b = (types.len() as i16).to_be_bytes().to_vec();
    for t in types {
        b.extend(t.to_be_bytes());
    }
    msg(b't', &b)
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
        exact: false,
    }
}

/// What an Execute found: the audit statement its portal runs, and the parameters
/// an approver would be shown (None: not held).
#[derive(Debug, PartialEq)]
struct Ran {
    statement: u64,
    held: Option<Vec<String>>,
}

/// The relay's bookkeeping, message by message, over the core.
#[derive(Default)]
struct Wire {
    names: Names,
    pace: Pace,
    sent: u64,
    seen: u64,
    decided: u64,
    ran: Vec<Ran>,
    refused_binds: usize,
}

impl Wire {
    fn client(&mut self, script: &[Vec<u8>]) {
        let bytes = script.concat();
        for (tag, body) in frames(&bytes, Direction::Frontend) {
            self.pace.client(tag).expect("accepted");
            let cycle = self.sent + 1;
            match tag {
                b'P' => {
                    let p = Parse::parse(body).expect("parse");
                    self.decided += 1;
                    let at = self.names.parse_sent(cycle);
                    let hold = p
                        .sql
                        .starts_with(b"DELETE")
                        .then(|| Arc::new(hold(&String::from_utf8_lossy(p.sql))))
                        .filter(|_| held::may_hold_statement(&self.names, p.name));
                    let slot = StatementSlot::new(
                        Some((self.decided, false)),
                        held::parse_types(body),
                        None,
                    );
                    self.names.on_parse(p.name, slot, hold, cycle, at);
                }
                b'B' => {
                    let b = Bind::parse(body).expect("bind");
                    let h = held::portal_for_bind(&self.names, body, &b, cycle, |_| None);
                    let may = h.is_none() || held::may_hold_portal(&self.names, b.portal);
                    let audit = self.names.statement(b.statement).and_then(|s| s.audit);
                    let slot = self.names.rebind(b.portal);
                    slot.audit = audit;
                    slot.formats.extend(b.result_formats.iter());
                    match h {
                        Some(h) if may => self.names.hold_portal(b.portal, h),
                        Some(_) => self.refused_binds += 1,
                        None => {}
                    }
                }
                b'D' if self.names.holds_active() => {
                    self.names
                        .on_describe(&Describe::parse(body).expect("describe"), cycle);
                }
                b'E' => {
                    let portal = Execute::parse(body).expect("execute").portal;
                    let statement = self
                        .names
                        .portal(portal)
                        .and_then(|p| p.audit)
                        .map_or(0, |a| a.0);
                    let held = held::on_execute(&self.names, portal).map(|e| e.params);
                    self.ran.push(Ran { statement, held });
                }
                b'C' => {
                    let at = self.names.close_sent(cycle);
                    self.names
                        .on_close(&Close::parse(body).expect("close"), cycle, at);
                }
                b'S' | b'Q' => self.sent += 1,
                _ => {}
            }
        }
    }

    fn server(&mut self, script: &[Vec<u8>]) {
        let bytes = script.concat();
        for (tag, body) in frames(&bytes, Direction::Backend) {
            let outstanding = self.sent - self.seen;
            if self.pace.server(tag, outstanding).expect("counted") {
                self.sent -= 1;
            }
            let cycle = self.seen + 1;
            match tag {
                b'1' => {
                    self.names.parse_complete(cycle);
                }
                b'3' => self.names.close_complete(cycle),
                b't' if self.names.holds_active() => {
                    self.names.on_parameter_description(body, cycle)
                }
                b'Z' => {
                    self.seen += 1;
                    self.names.on_ready(self.seen, body[0]);
                }
                _ => {}
            }
        }
    }

    fn held(&self, name: &str) -> bool {
        self.names
            .statement(name.as_bytes())
            .is_some_and(|s| s.hold().is_some())
    }

    fn audit(&self, name: &str) -> Option<u64> {
        self.names
            .statement(name.as_bytes())
            .and_then(|s| s.audit)
            .map(|a| a.0)
    }

    /// Bind and Execute portal "" of `statement` in a cycle of its own.
    fn run(&mut self, statement: &str) -> Ran {
        self.client(&[bind("", statement, &[7], &[]), execute(""), sync()]);
        self.server(&[bind_complete(), ready(b'I')]);
        self.ran.pop().expect("an Execute")
    }
}

fn held_run(statement: u64, params: &[&str]) -> Ran {
    Ran {
        statement,
        held: Some(params.iter().map(|p| p.to_string()).collect()),
    }
}

fn plain_run(statement: u64) -> Ran {
    Ran {
        statement,
        held: None,
    }
}

/// One script: client bytes, then server bytes, then what the names mean.
struct Case {
    what: &'static str,
    client: Vec<Vec<u8>>,
    server: Vec<Vec<u8>>,
    /// (name, held, audit statement)
    then: Vec<(&'static str, bool, Option<u64>)>,
}

#[test]
fn names_change_hands_only_when_the_server_says_so() {
    let cases = vec![
        Case {
            what: "a held Parse the server takes",
            client: vec![parse("s1", "DELETE FROM t WHERE id = $1", &[23]), sync()],
            server: vec![parse_complete(), ready(b'I')],
            then: vec![("s1", true, Some(1))],
        },
        Case {
            what: "a Parse the server refuses (name taken) is undone at its ReadyForQuery",
            client: vec![
                parse("s1", "DELETE FROM t", &[]),
                sync(),
                parse("s1", "SELECT 1", &[]),
                sync(),
            ],
            server: vec![parse_complete(), ready(b'I'), error(), ready(b'I')],
            then: vec![("s1", true, Some(1))],
        },
        Case {
            what: "pipelined: an error skips the rest of the batch, whose Parses are undone",
            client: vec![
                parse("a", "SELECT 1", &[]),
                parse("b", "DELETE FROM t", &[]),
                parse("c", "SELECT 3", &[]),
                sync(),
            ],
            server: vec![parse_complete(), error(), ready(b'I')],
            then: vec![
                ("a", false, Some(1)),
                ("b", false, None),
                ("c", false, None),
            ],
        },
        Case {
            what: "the unnamed statement is replaced at once, within its cycle",
            client: vec![
                parse("", "DELETE FROM t", &[]),
                sync(),
                parse("", "SELECT 1", &[]),
                sync(),
            ],
            server: vec![parse_complete(), ready(b'I'), parse_complete(), ready(b'I')],
            then: vec![("", false, Some(2))],
        },
        Case {
            what: "a Close frees a name only once confirmed",
            client: vec![
                parse("s1", "DELETE FROM t", &[]),
                parse("s2", "SELECT 1", &[]),
                sync(),
                close(b'S', "s2"),
                close(b'S', "s1"),
                sync(),
            ],
            // The first Close is answered, the second skipped by an error.
            server: vec![
                parse_complete(),
                parse_complete(),
                ready(b'I'),
                close_complete(),
                error(),
                ready(b'I'),
            ],
            then: vec![("s1", true, Some(1)), ("s2", false, None)],
        },
    ];
    for case in cases {
        let mut w = Wire::default();
        w.client(&case.client);
        w.server(&case.server);
        for (name, held, audit) in case.then {
            assert_eq!(w.held(name), held, "{}: {name:?} held", case.what);
            assert_eq!(w.audit(name), audit, "{}: {name:?} audit", case.what);
        }
    }
}

#[test]
fn a_portal_keeps_what_it_was_bound_to() {
    let mut w = Wire::default();
    w.client(&[
        parse("s1", "DELETE FROM t WHERE id = $1", &[23]),
        bind("p", "s1", &[7], &[1]),
        msg(b'H', &[]),
    ]);
    w.server(&[parse_complete(), bind_complete()]);
    // Holds and audit on the same portal: one slot carries both.
    let p = w.names.portal(b"p").expect("bound");
    assert_eq!(p.audit, Some((1, false)));
    assert_eq!(p.formats, vec![1]);
    assert!(p.hold().is_some());
    // The name is closed and parsed anew: the portal still runs the held statement.
    w.client(&[
        close(b'S', "s1"),
        parse("s1", "SELECT 1", &[]),
        execute("p"),
    ]);
    w.server(&[close_complete(), parse_complete()]);
    assert_eq!(w.ran.pop(), Some(held_run(1, &["$1 = 7"])));
    assert!(!w.held("s1"));
    w.client(&[sync()]);
    // Inside a transaction the portal lives on; idle, it is gone.
    w.server(&[ready(b'T')]);
    assert!(w.names.portal(b"p").is_some_and(|p| p.hold().is_some()));
    w.client(&[sync()]);
    w.server(&[ready(b'I')]);
    assert!(w.names.portal(b"p").is_some_and(|p| p.hold().is_none()));
    assert!(!w.names.holds_active());
}

#[test]
fn parameter_types_follow_their_describes() {
    let mut w = Wire::default();
    w.client(&[
        parse("s1", "DELETE FROM t WHERE id = $1", &[]),
        describe(b'S', "other"),
        describe(b'S', "s1"),
        sync(),
    ]);
    w.server(&[
        parse_complete(),
        parameter_description(&[25]),
        parameter_description(&[23]),
        ready(b'I'),
    ]);
    assert_eq!(w.run("s1"), held_run(1, &["$1 = 7"]));
    // Without types a binary value is shown as bytes, never as a wrong number.
    let mut w = Wire::default();
    w.client(&[parse("s1", "DELETE FROM t WHERE id = $1", &[]), sync()]);
    w.server(&[parse_complete(), ready(b'I')]);
    assert_eq!(
        w.run("s1"),
        held_run(1, &["$1 = '\\x00000007' (binary, type 0)"])
    );
}

#[test]
fn sql_prepare_and_protocol_parse_share_one_namespace() {
    let mut w = Wire::default();
    // `PREPARE q AS ...` recorded as statement 1: a Bind of q runs it.
    w.client(&[query("PREPARE q AS SELECT 1")]);
    w.decided += 1;
    w.names.statement_entry(b"q").audit = Some((1, false));
    w.server(&[msg(b'C', b"PREPARE\0"), ready(b'I')]);
    assert_eq!(w.run("q"), plain_run(1));
    // A Parse of the same name the server refuses (taken): q still runs statement 1.
    w.client(&[parse("q", "DELETE FROM t", &[]), sync()]);
    w.server(&[error(), ready(b'I')]);
    assert_eq!(w.run("q"), plain_run(1));
    assert!(!w.held("q"));
    // Once the name is free (a DEALLOCATE, not shown) a Parse of it is taken: held.
    w.client(&[parse("q", "DELETE FROM t", &[]), sync()]);
    w.server(&[parse_complete(), ready(b'I')]);
    assert_eq!(
        w.run("q"),
        held_run(3, &["$1 = '\\x00000007' (binary, type 0)"])
    );
}

#[test]
fn copy_in_after_a_synced_execute_keeps_the_cycles_matched() {
    // libpq: P B E S, the server ignores that Sync in copy mode; the cycle that
    // follows must still be matched to its own Parse.
    let mut w = Wire::default();
    w.client(&[
        parse("", "COPY t FROM STDIN", &[]),
        bind("", "", &[], &[]),
        execute(""),
        sync(),
    ]);
    w.server(&[parse_complete(), bind_complete(), msg(b'G', &[0, 0, 0])]);
    w.client(&[msg(b'd', b"1\n"), msg(b'c', &[]), sync()]);
    w.server(&[msg(b'C', b"COPY 1\0"), ready(b'I')]);
    assert_eq!((w.sent, w.seen), (1, 1));
    w.client(&[parse("s", "DELETE FROM t", &[]), sync()]);
    w.server(&[parse_complete(), ready(b'I')]);
    assert!(w.held("s"));
    assert_eq!(w.audit("s"), Some(2));
}

#[test]
fn held_names_are_bounded_and_never_dropped() {
    let mut w = Wire::default();
    let mut script = Vec::new();
    for i in 0..held::MAX_HELD + 1 {
        script.push(parse(&format!("h{i}"), "DELETE FROM t", &[]));
    }
    script.push(sync());
    w.client(&script);
    w.server(&[
        vec![parse_complete(); held::MAX_HELD + 1].concat(),
        ready(b'I'),
    ]);
    assert_eq!(w.names.held_statements(), held::MAX_HELD);
    // The one past the limit was not held (the relay refuses it).
    assert!(!w.held(&format!("h{}", held::MAX_HELD)));
    // Thousands of other names: the table is bounded, the held ones stay.
    for chunk in 0..(MAX_NAMES / 1000 + 1) {
        let mut script = Vec::new();
        for i in 0..1000 {
            script.push(parse(&format!("n{chunk}_{i}"), "SELECT 1", &[]));
        }
        script.push(sync());
        w.client(&script);
        w.server(&[vec![parse_complete(); 1000].concat(), ready(b'I')]);
    }
    assert!((0..held::MAX_HELD).all(|i| w.held(&format!("h{i}"))));
    assert_eq!(w.names.held_statements(), held::MAX_HELD);
    // Portals bound to held statements are bounded too.
    let mut script = Vec::new();
    for i in 0..held::MAX_HELD + 1 {
        script.push(bind(&format!("p{i}"), "h0", &[1], &[]));
    }
    w.client(&script);
    assert_eq!(w.names.held_portals(), held::MAX_HELD);
    assert_eq!(w.refused_binds, 1);
}

/// A mask field for a statement slot: clean, so a change to unknown shows.
fn clean_mask() -> super::slots::Shared<super::slots::MaskStatement> {
    Arc::new(std::sync::Mutex::new(super::slots::MaskStatement::default()))
}

#[test]
fn a_parse_the_server_refuses_gives_the_name_back_with_its_mask_and_hold() {
    let mut names = Names::default();
    let old = clean_mask();
    let at = names.parse_sent(1);
    names.on_parse(
        b"s",
        StatementSlot::new(Some((1, false)), vec![23], Some(Arc::clone(&old))),
        Some(Arc::new(hold("DELETE FROM t"))),
        1,
        at,
    );
    assert_eq!(names.parse_complete(1), Some(b"s".to_vec()), "taken");
    names.on_ready(1, b'I');
    // Parsed again with another mask and no hold: in force for the rest of its cycle...
    let new = clean_mask();
    let at = names.parse_sent(2);
    names.on_parse(
        b"s",
        StatementSlot::new(Some((2, false)), vec![], Some(Arc::clone(&new))),
        None,
        2,
        at,
    );
    let now = names.statement(b"s").expect("slot");
    assert!(now.hold().is_none() && now.audit == Some((2, false)));
    assert!(Arc::ptr_eq(now.mask.as_ref().expect("mask"), &new));
    // ...but the server refused it (ErrorResponse, ReadyForQuery): every field comes back.
    names.on_ready(2, b'I');
    let back = names.statement(b"s").expect("slot");
    assert!(back.hold().is_some(), "still held");
    assert_eq!(
        (back.audit, back.types.clone()),
        (Some((1, false)), vec![23])
    );
    assert!(Arc::ptr_eq(back.mask.as_ref().expect("mask"), &old));
    assert_eq!(names.held_statements(), 1);
}

#[test]
fn past_the_unanswered_parses_it_can_follow_the_core_fails_closed() {
    let mut names = Names::default();
    let at = names.parse_sent(1);
    names.on_parse(
        b"h",
        StatementSlot::default(),
        Some(Arc::new(hold("DELETE FROM t"))),
        1,
        at,
    );
    names.parse_complete(1);
    names.on_ready(1, b'I');
    // Thousands of Parses in one cycle, none answered yet.
    for i in 0..4096 {
        let at = names.parse_sent(2);
        names.on_parse(
            format!("n{i}").as_bytes(),
            StatementSlot::default(),
            None,
            2,
            at,
        );
    }
    // One more, of the held name, without a hold: its answer cannot be followed, so the
    // name stays held and what it returns is masked whole.
    let mask = clean_mask();
    let at = names.parse_sent(2);
    names.on_parse(
        b"h",
        StatementSlot::new(None, vec![], Some(Arc::clone(&mask))),
        None,
        2,
        at,
    );
    assert!(names.statement(b"h").is_some_and(|s| s.hold().is_some()));
    assert!(super::slots::lock(&mask).origin.withholds(), "masked whole");
    assert_eq!(names.held_statements(), 1);
}
