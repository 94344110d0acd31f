//! Which records a take of the queue becomes: in order, with a statement's
//! `decided` and `completed` records joined into one `whole`, and an HTTP request's
//! outcome in its `decided` record's place, when they meet in one take in batch mode.

use std::collections::HashMap;
use std::ops::Range;

use super::queue::{splice_whole, Part, Queue};

/// Where a record's body is: in the take's buffer or in the writer's scratch.
#[derive(Clone)]
pub(super) enum Body {
    Queued(Range<usize>),
    Joined(Range<usize>),
}

/// One record to write: an item of the take, or a joined pair.
pub(super) struct Planned {
    pub(super) item: usize,
    pub(super) body: Body,
}

/// The records of a take in order. In batch mode a `decided` record whose `completed`
/// is in the same take, with no other record of that session between them, becomes
/// one `whole` record where the `decided` one stood (spliced into `scratch`), and an
/// HTTP request's outcome replaces its `decided` record the same way. In fsync mode
/// the two never meet: a statement runs (a request is forwarded) only after its
/// `decided` record is on disk.
pub(super) fn plan(q: &Queue, join: bool, scratch: &mut Vec<u8>) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::with_capacity(q.items.len());
    // Per session: the index in `out` of its latest record, if that is a `decided` one.
    // foldhash, not std's SipHash: the keys are session and request ids pgmoat makes,
    // not client text, and SipHash was 6-11% of the writer thread's samples (s37).
    let mut open: HashMap<&[u8], usize, foldhash::fast::RandomState> = HashMap::default();
    for (i, item) in q.items.iter().enumerate() {
        let session = item.session.clone().map(|r| &q.bytes[r]);
        let (Some(id), true) = (session, join) else {
            out.push(Planned {
                item: i,
                body: Body::Queued(item.body.clone()),
            });
            continue;
        };
        // An HTTP request's outcome says all its `decided` record says: when both
        // meet in one take, the outcome takes the decided record's place (one record
        // per request, as a statement's two become one `whole`).
        if item.part == Part::HttpOutcome {
            if let Some(at) = open.remove(id) {
                if q.items[out[at].item].part == Part::HttpDecided {
                    out[at] = Planned {
                        item: i,
                        body: Body::Queued(item.body.clone()),
                    };
                    continue;
                }
            }
        }
        if let Part::Completed(n) = item.part {
            if let Some(at) = open.remove(id) {
                let d = &q.items[out[at].item];
                let start = scratch.len();
                if d.part == Part::Decided(n)
                    && splice_whole(
                        &q.bytes[d.body.clone()],
                        &q.bytes[item.body.clone()],
                        scratch,
                    )
                    .is_some()
                {
                    out[at].body = Body::Joined(start..scratch.len());
                    continue;
                }
            }
        }
        if matches!(item.part, Part::Decided(_) | Part::HttpDecided) {
            open.insert(id, out.len());
        } else {
            open.remove(id);
        }
        out.push(Planned {
            item: i,
            body: Body::Queued(item.body.clone()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::event::{Approval, ApprovalState, Completed, Decided, Event, Statement};
    use crate::audit::queue::push_encoded;

    fn decided(n: u64) -> Event {
        Event::Statement(Statement::Decided(Decided {
            statement: n,
            sql: format!("SELECT {n}"),
            action: "allow".into(),
            ..Default::default()
        }))
    }

    fn completed(n: u64) -> Event {
        Event::Statement(Statement::Completed(Completed {
            statement: n,
            rows: Some(n),
            ..Default::default()
        }))
    }

    fn phase(e: &Event) -> String {
        match e {
            Event::Statement(Statement::Decided(d)) => format!("decided {}", d.statement),
            Event::Statement(Statement::Completed(c)) => format!("completed {}", c.statement),
            Event::Statement(Statement::Whole(w)) => {
                format!("whole {} {} {:?}", w.statement, w.sql, w.rows)
            }
            other => other.kind().to_string(),
        }
    }

    #[test]
    fn a_statement_decided_and_completed_in_one_batch_is_one_record() {
        let a: Option<Arc<str>> = Some(Arc::from("a"));
        let b: Option<Arc<str>> = Some(Arc::from("b"));
        let approval = Event::Approval(Approval {
            id: "x".into(),
            statement: 1,
            state: ApprovalState::Requested,
            by: None,
            reason: None,
            grant_until: None,
        });
        let records = vec![
            (a.clone(), decided(1)),
            (b.clone(), decided(1)),
            // Another session's records between are no obstacle; the session's own are.
            (b.clone(), approval),
            (a.clone(), completed(1)),
            (b.clone(), completed(1)),
            (a.clone(), decided(2)),
            // Only the statement's own completion joins it.
            (a.clone(), completed(7)),
            (a.clone(), completed(2)),
            (None, decided(3)),
            (None, completed(3)),
            // A later execution of a prepared statement stays a `completed` record.
            (b.clone(), completed(1)),
        ];
        let mut q = Queue::default();
        for (s, e) in &records {
            push_encoded(&mut q, s.as_deref(), e, None, "").unwrap();
        }
        let mut scratch = Vec::new();
        let planned = plan(&q, true, &mut scratch);
        let got: Vec<String> = planned
            .iter()
            .map(|p| {
                let body = match &p.body {
                    Body::Queued(r) => &q.bytes[r.clone()],
                    Body::Joined(r) => &scratch[r.clone()],
                };
                let e: Event = serde_json::from_slice(body).unwrap();
                let s = q.session(&q.items[p.item]);
                format!("{} {}", s.unwrap_or("-"), phase(&e))
            })
            .collect();
        // fsync mode: never joined.
        assert_eq!(plan(&q, false, &mut Vec::new()).len(), records.len());
        assert_eq!(
            got,
            [
                "a whole 1 SELECT 1 Some(1)",
                "b decided 1",
                "b approval",
                "b completed 1",
                "a decided 2",
                "a completed 7",
                "a completed 2",
                "- decided 3",
                "- completed 3",
                "b completed 1",
            ]
        );
    }

    #[test]
    fn an_http_requests_two_records_in_one_batch_are_its_outcome() {
        use crate::audit::http_request::HttpRequest;
        let req = |phase: Option<&'static str>, status: u16| {
            Event::HttpRequest(HttpRequest {
                method: "GET".into(),
                path: "/x".into(),
                phase: phase.map(Into::into),
                status,
                ..Default::default()
            })
        };
        let (r1, r2): (Option<Arc<str>>, Option<Arc<str>>) =
            (Some(Arc::from("h1")), Some(Arc::from("h2")));
        let records = vec![
            (r1.clone(), req(Some("decided"), 0)),
            (r2.clone(), req(Some("decided"), 0)),
            (r1.clone(), req(None, 200)),
        ];
        let mut q = Queue::default();
        for (s, e) in &records {
            push_encoded(&mut q, s.as_deref(), e, None, "").unwrap();
        }
        let got: Vec<String> = plan(&q, true, &mut Vec::new())
            .iter()
            .map(|p| {
                let Body::Queued(r) = &p.body else {
                    panic!("nothing to splice")
                };
                let Event::HttpRequest(e) = serde_json::from_slice(&q.bytes[r.clone()]).unwrap()
                else {
                    panic!("an http_request")
                };
                format!(
                    "{} {:?} {}",
                    q.session(&q.items[p.item]).unwrap(),
                    e.phase,
                    e.status
                )
            })
            .collect();
        // h1's outcome stands where its decided record stood; h2's outcome is in a
        // later take, so its decided record stays.
        assert_eq!(got, ["h1 None 200", "h2 Some(\"decided\") 0"]);
        assert_eq!(
            plan(&q, false, &mut Vec::new()).len(),
            3,
            "fsync: never joined"
        );
    }
}
