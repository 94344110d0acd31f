//! The queue of expected answers over byte scripts: client messages in (as the relay
//! feeds them: paced, each Query and Execute with its audit ticket numbered in order),
//! then server messages in; out, per server message, which statement it answers and
//! which requests it finished or skipped.

use super::{Asked, Expect, Expected, Outcome};
use crate::audit::Ticket;
use crate::protocol::frame::Direction;
use crate::session::core::pace::Pace;
use crate::session::core::script::{frames, msg};

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn q(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}
fn p() -> Vec<u8> {
    msg(b'P', b"\0SELECT 1\0\0\0")
}
fn b(portal: &str) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(b"\0\0\0\0\0\0\0");
    msg(b'B', &body)
}
fn e(portal: &str) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(0i32.to_be_bytes());
    msg(b'E', &body)
}
fn d_statement() -> Vec<u8> {
    msg(b'D', b"S\0")
}
fn s() -> Vec<u8> {
    msg(b'S', b"")
}
fn copy_data() -> Vec<u8> {
    msg(b'd', b"1\n")
}
fn copy_done() -> Vec<u8> {
    msg(b'c', b"")
}

// Server messages, by their tag alone (bodies do not matter to the queue).
fn srv(tag: u8) -> Vec<u8> {
    match tag {
        b'Z' => msg(b'Z', b"I"),
        b'C' => msg(b'C', b"SELECT 1\0"),
        b'E' => msg(b'E', b"SERROR\0C42601\0Mboom\0\0"),
        b'T' => msg(b'T', &[0, 0]),
        b'D' => msg(b'D', &[0, 0]),
        b'G' | b'H' => msg(tag, &[0, 0, 0]),
        _ => msg(tag, b""),
    }
}

/// The relay's bookkeeping for the queue, message by message.
#[derive(Default)]
struct Wire {
    expect: Expect,
    pace: Pace,
    sent: u64,
    seen: u64,
    /// pgmoat's own Syncs, whose ReadyForQuery the client never sees.
    swallow: Vec<u64>,
    statements: u64,
    /// What the client is shown of the server's messages (tags).
    shown: Vec<u8>,
}

impl Wire {
    fn followed() -> Wire {
        let mut w = Wire::default();
        w.expect.follow(0);
        w
    }

    /// Client messages; returns the tags sent upstream (pgmoat's own Syncs included).
    fn client(&mut self, script: &[Vec<u8>]) -> Vec<u8> {
        let bytes = script.concat();
        let mut upstream = Vec::new();
        for (tag, body) in frames(&bytes, Direction::Frontend) {
            if self.pace.client(tag).expect("accepted") {
                upstream.push(b'S');
                self.sent += 1;
                self.expect.sync();
                self.swallow.push(self.sent);
            }
            upstream.push(tag);
            match tag {
                b'Q' => {
                    self.sent += 1;
                    self.statements += 1;
                    let t = Ticket::query(self.statements, false);
                    self.expect
                        .push(Expected::new(Asked::Query).with_audit(Some(t)));
                }
                b'E' => {
                    self.statements += 1;
                    let t = Ticket::execute(Some((self.statements, false)), Some(&[]), false);
                    self.expect
                        .push(Expected::new(Asked::Execute).with_audit(Some(t)));
                }
                b'D' => self.expect.push(Expected::new(Asked::Describe)),
                b'B' if body.first() != Some(&0) => self.expect.push(Expected::new(Asked::Bind)),
                b'S' => {
                    self.sent += 1;
                    self.expect.sync();
                }
                _ => {}
            }
        }
        upstream
    }

    /// Server messages; per message, `tag@statement` (the Query or Execute it
    /// answers, `-` for none) and the requests it ended (`+n` finished, `~n` skipped).
    fn server(&mut self, script: &[Vec<u8>]) -> Vec<String> {
        let bytes = script.concat();
        let mut log = Vec::new();
        for (tag, _) in frames(&bytes, Direction::Backend) {
            if self
                .pace
                .server(tag, self.sent - self.seen)
                .expect("counted")
            {
                self.sent -= 1;
                self.expect.sync_ignored();
            }
            let answering = self
                .expect
                .statement()
                .and_then(|e| e.audit.as_ref())
                .map_or("-".to_string(), |t| t.statement().to_string());
            let mut line = format!("{}@{answering}", tag as char);
            self.expect.answer(tag);
            for (entry, outcome) in self.expect.take_answered() {
                let n = entry.audit.map_or(0, |t| t.statement());
                match outcome {
                    Outcome::Finished => line.push_str(&format!(" +{n}")),
                    Outcome::Skipped => line.push_str(&format!(" ~{n}")),
                }
            }
            if tag == b'Z' {
                self.seen += 1;
                if self.swallow.first() == Some(&self.seen) {
                    self.swallow.remove(0);
                    log.push(line);
                    continue;
                }
            }
            self.shown.push(tag);
            log.push(line);
        }
        log
    }
}

struct Case {
    what: &'static str,
    client: Vec<Vec<u8>>,
    /// Tags pgmoat sends upstream.
    upstream: &'static [u8],
    server: Vec<Vec<u8>>,
    log: &'static [&'static str],
    /// Tags the client is shown.
    shown: &'static [u8],
    /// Entries still unanswered at the end.
    left: usize,
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let mut w = Wire::followed();
        assert_eq!(w.client(&c.client), c.upstream, "{}: upstream", c.what);
        assert_eq!(w.server(&c.server), c.log, "{}: answers", c.what);
        assert_eq!(w.shown, c.shown, "{}: shown", c.what);
        assert_eq!(w.expect.len(), c.left, "{}: left", c.what);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    run(vec![
        Case {
            what: "two Queries pipelined, then a prepared cycle",
            client: vec![q("SELECT 1"), q("SELECT 2"), b(""), e(""), s()],
            upstream: b"QQBES",
            server: [
                b'T', b'D', b'C', b'Z', b'T', b'D', b'C', b'Z', b'2', b'D', b'C', b'Z',
            ]
            .map(srv)
            .to_vec(),
            log: &[
                "T@1", "D@1", "C@1", "Z@1 +1", "T@2", "D@2", "C@2", "Z@2 +2", "2@3", "D@3",
                "C@3 +3", "Z@-",
            ],
            shown: b"TDCZTDCZ2DCZ",
            left: 0,
        },
        Case {
            what: "a Query of two statements ends at its ReadyForQuery",
            client: vec![q("SELECT 1; SELECT 2")],
            upstream: b"Q",
            server: [b'T', b'D', b'C', b'T', b'D', b'C', b'Z'].map(srv).to_vec(),
            log: &["T@1", "D@1", "C@1", "T@1", "D@1", "C@1", "Z@1 +1"],
            shown: b"TDCTDCZ",
            left: 0,
        },
        Case {
            what: "a suspended portal's Execute ends at PortalSuspended",
            client: vec![b("c"), e("c"), e("c"), s()],
            upstream: b"BEES",
            server: [b'2', b'D', b's', b'D', b'C', b'Z'].map(srv).to_vec(),
            log: &["2@1", "D@1", "s@1 +1", "D@2", "C@2 +2", "Z@-"],
            shown: b"2DsDCZ",
            left: 0,
        },
        Case {
            what: "a Describe answered ahead of its Execute",
            client: vec![p(), b(""), d_statement(), e(""), s()],
            upstream: b"PBDES",
            server: [b'1', b'2', b't', b'T', b'D', b'C', b'Z'].map(srv).to_vec(),
            log: &["1@1", "2@1", "t@1", "T@1", "D@1", "C@1 +1", "Z@-"],
            shown: b"12tTDCZ",
            left: 0,
        },
    ]);
}

#[test]
fn an_error_ends_its_batch_and_no_other() {
    run(vec![
        Case {
            what: "the first Execute fails: the second is skipped",
            client: vec![b(""), e(""), b(""), e(""), s(), b(""), e(""), s()],
            upstream: b"BEBESBES",
            server: [b'2', b'E', b'Z', b'2', b'C', b'Z'].map(srv).to_vec(),
            log: &["2@1", "E@1 +1 ~2", "Z@-", "2@3", "C@3 +3", "Z@-"],
            shown: b"2EZ2CZ",
            left: 0,
        },
        Case {
            what: "a Parse fails: the Execute behind it in the batch gets the error",
            client: vec![p(), b(""), e(""), s()],
            upstream: b"PBES",
            server: [b'E', b'Z'].map(srv).to_vec(),
            log: &["E@1 +1", "Z@-"],
            shown: b"EZ",
            left: 0,
        },
        Case {
            what: "an error in one cycle leaves the next cycle's Execute alone",
            client: vec![p(), s(), b(""), e(""), s()],
            upstream: b"PSBES",
            server: [b'E', b'Z', b'2', b'C', b'Z'].map(srv).to_vec(),
            log: &["E@-", "Z@-", "2@1", "C@1 +1", "Z@-"],
            shown: b"EZ2CZ",
            left: 0,
        },
        Case {
            what:
                "an error inside a Query is that statement's; the Query ends at its ReadyForQuery",
            client: vec![q("SELECT 1; SELECT x"), q("SELECT 3")],
            upstream: b"QQ",
            server: [b'C', b'E', b'Z', b'C', b'Z'].map(srv).to_vec(),
            log: &["C@1", "E@1", "Z@1 +1", "C@2", "Z@2 +2"],
            shown: b"CEZCZ",
            left: 0,
        },
        Case {
            // A CancelRequest reaches the server apart; what comes back is the running
            // statement's error (57014), matched like any other.
            what: "a cancelled Execute ends with its error",
            client: vec![b(""), e(""), s(), q("SELECT 2")],
            upstream: b"BESQ",
            server: [b'2', b'D', b'E', b'Z', b'C', b'Z'].map(srv).to_vec(),
            log: &["2@1", "D@1", "E@1 +1", "Z@-", "C@2", "Z@2 +2"],
            shown: b"2DEZCZ",
            left: 0,
        },
        Case {
            what: "an unsynced batch before a Query gets pgmoat's Sync, its answer swallowed",
            client: vec![p(), b(""), e(""), q("SAVEPOINT a")],
            upstream: b"PBESQ",
            server: [b'1', b'2', b'C', b'Z', b'C', b'Z'].map(srv).to_vec(),
            log: &["1@1", "2@1", "C@1 +1", "Z@-", "C@2", "Z@2 +2"],
            shown: b"12CCZ",
            left: 0,
        },
    ]);
}

#[test]
fn copy_in_both_directions_keeps_the_answers_matched() {
    // COPY FROM STDIN as libpq sends it: the Sync behind the Execute is ignored in
    // copy mode; the one after CopyDone is answered.
    let mut w = Wire::followed();
    assert_eq!(w.client(&[p(), b(""), e(""), s()]), b"PBES");
    assert_eq!(
        w.server(&[srv(b'1'), srv(b'2'), srv(b'G')]),
        ["1@1", "2@1", "G@1"]
    );
    assert_eq!(w.client(&[copy_data(), copy_done(), s()]), b"dcS");
    assert_eq!(w.server(&[srv(b'C'), srv(b'Z')]), ["C@1 +1", "Z@-"]);
    assert!(w.expect.is_empty(), "nothing left unanswered");
    // Then a plain Query is matched to itself, not to a stale Sync.
    w.client(&[q("SELECT 1")]);
    assert_eq!(w.server(&[srv(b'C'), srv(b'Z')]), ["C@2", "Z@2 +2"]);

    // COPY TO STDOUT through a Query: the data is the Query's.
    let mut w = Wire::followed();
    w.client(&[q("COPY t TO STDOUT")]);
    let out = [b'H', b'd', b'd', b'c', b'C', b'Z'].map(srv);
    assert_eq!(
        w.server(&out),
        ["H@1", "d@1", "d@1", "c@1", "C@1", "Z@1 +1"]
    );
    // COPY FROM STDIN through a Query: its ReadyForQuery comes after the data.
    let mut w = Wire::followed();
    w.client(&[q("COPY t FROM STDIN")]);
    assert_eq!(w.server(&[srv(b'G')]), ["G@1"]);
    w.client(&[copy_data(), copy_done()]);
    assert_eq!(w.server(&[srv(b'C'), srv(b'Z')]), ["C@1", "Z@1 +1"]);
}

#[test]
fn followed_mid_session_the_cycles_already_asked_answer_no_entry() {
    let mut w = Wire::default();
    // Nothing follows yet: nothing is queued, nothing answered.
    w.client(&[q("SELECT 1"), b(""), e(""), s()]);
    assert!(w.expect.is_empty());
    // Masking starts now: the two cycles still due are placeholders.
    w.expect.follow(w.sent - w.seen);
    w.client(&[q("SELECT 2")]);
    let log = w.server(&[b'C', b'Z', b'2', b'C', b'Z', b'C', b'Z'].map(srv));
    assert_eq!(
        log,
        ["C@-", "Z@-", "2@-", "C@-", "Z@-", "C@3", "Z@3 +3"],
        "earlier answers are not taken for the new Query's"
    );
    assert!(w.expect.is_empty());
}

#[test]
fn a_session_nobody_follows_queues_nothing() {
    let mut w = Wire::default();
    w.client(&[q("SELECT 1"), b(""), e(""), s()]);
    assert!(!w.expect.followed());
    assert_eq!(w.server(&[b'C', b'Z'].map(srv)), ["C@-", "Z@-"]);
    assert!(w.expect.is_empty());
}
