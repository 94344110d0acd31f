//! The two records every statement writes, encoded by hand: the same bytes serde_json
//! writes for them (the tests hold every field to it), without its per-field
//! machinery. Keys are constants here, strings are escaped in runs, and numbers use
//! the same formatters serde_json uses (itoa, zmij), so a `decided` or `completed`
//! record costs a few copies. Every other event is rare and goes through serde.
//! (Should serde_json ever change how it writes a value, the tests say so; the store
//! stays valid either way, since hashes cover the bytes as written and replay decodes
//! both.)

use serde_json::Value;

use super::event::{Completed, Decided, Event, Statement};

/// Append `event` as serde_json would encode it.
pub(crate) fn encode(event: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match event {
        Event::Statement(Statement::Decided(d)) => {
            decided(d, out);
            Ok(())
        }
        Event::Statement(Statement::Completed(c)) => completed(c, out),
        Event::HttpRequest(r) => {
            http_request(r, out);
            Ok(())
        }
        other => serde_json::to_writer(out, other),
    }
}

fn decided(d: &Decided, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"statement","phase":"decided","statement":"#);
    uint(d.statement, out);
    out.extend_from_slice(br#","protocol":"#);
    string(&d.protocol, out);
    out.extend_from_slice(br#","sql":"#);
    string(&d.sql, out);
    out.extend_from_slice(br#","kinds":"#);
    strings(&d.kinds, out);
    out.extend_from_slice(br#","tables":"#);
    strings(&d.tables, out);
    out.extend_from_slice(br#","action":"#);
    string(&d.action, out);
    out.extend_from_slice(br#","rules":"#);
    strings(&d.rules, out);
    out.extend_from_slice(br#","masked_columns":"#);
    strings(&d.masked_columns, out);
    out.push(b'}');
}

fn completed(c: &Completed, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(br#"{"type":"statement","phase":"completed","statement":"#);
    uint(c.statement, out);
    out.extend_from_slice(br#","duration_ms":"#);
    float(c.duration_ms, out);
    if let Some(rows) = c.rows {
        out.extend_from_slice(br#","rows":"#);
        uint(rows, out);
    }
    if let Some(command) = &c.command {
        out.extend_from_slice(br#","command":"#);
        string(command, out);
    }
    if let Some(e) = &c.error {
        out.extend_from_slice(br#","error":{"code":"#);
        string(&e.code, out);
        out.extend_from_slice(br#","message":"#);
        string(&e.message, out);
        out.push(b'}');
    }
    if !c.columns.is_empty() {
        out.extend_from_slice(br#","columns":"#);
        strings(&c.columns, out);
    }
    if !c.recorded_rows.is_empty() {
        out.extend_from_slice(br#","recorded_rows":["#);
        for (i, row) in c.recorded_rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                match v {
                    Value::Null => out.extend_from_slice(b"null"),
                    Value::String(s) => string(s, out),
                    // Kept rows hold only NULLs and text; anything else is serde's.
                    other => serde_json::to_writer(&mut *out, other)?,
                }
            }
            out.push(b']');
        }
        out.push(b']');
    }
    if c.rows_truncated {
        out.extend_from_slice(br#","rows_truncated":true"#);
    }
    out.push(b'}');
    Ok(())
}

/// The HTTP gateway's record: two per request (`decided`, then the outcome), on the
/// request's own task.
fn http_request(r: &crate::audit::http_request::HttpRequest, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"http_request","user":"#);
    string(&r.user, out);
    out.extend_from_slice(br#","groups":"#);
    strings(&r.groups, out);
    out.extend_from_slice(br#","target":"#);
    string(&r.target, out);
    out.extend_from_slice(br#","client":"#);
    string(&r.client, out);
    out.extend_from_slice(br#","method":"#);
    string(&r.method, out);
    out.extend_from_slice(br#","path":"#);
    string(&r.path, out);
    if let Some(q) = &r.query {
        out.extend_from_slice(br#","query":"#);
        string(q, out);
    }
    if let Some(p) = &r.phase {
        out.extend_from_slice(br#","phase":"#);
        string(p, out);
    }
    out.extend_from_slice(br#","status":"#);
    uint(u64::from(r.status), out);
    out.extend_from_slice(br#","bytes_in":"#);
    uint(r.bytes_in, out);
    out.extend_from_slice(br#","bytes_out":"#);
    uint(r.bytes_out, out);
    out.extend_from_slice(br#","duration_ms":"#);
    float(r.duration_ms, out);
    out.extend_from_slice(br#","action":"#);
    string(&r.action, out);
    out.extend_from_slice(br#","rule":"#);
    string(&r.rule, out);
    if let Some(a) = &r.approval {
        out.extend_from_slice(br#","approval":"#);
        string(a, out);
    }
    if !r.masked_fields.is_empty() {
        out.extend_from_slice(br#","masked_fields":"#);
        strings(&r.masked_fields, out);
    }
    if let Some(e) = &r.error {
        out.extend_from_slice(br#","error":"#);
        string(e, out);
    }
    out.push(b'}');
}

fn uint(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// serde_json writes non-finite floats as `null`, finite ones with zmij.
fn float(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn strings(list: &[String], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(s, out);
    }
    out.push(b']');
}

/// What a byte becomes inside a JSON string, as serde_json writes it: 0 for itself,
/// a letter for a two-character escape, `u` for `\u00XX`. Only `"`, `\` and the
/// control characters are escaped (everything else, DEL and non-ASCII included, is
/// written as is).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

fn string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let e = ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if e == b'u' {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::StatementError;

    fn serde(event: &Event) -> String {
        serde_json::to_string(event).unwrap()
    }

    fn ours(event: &Event) -> String {
        let mut out = Vec::new();
        encode(event, &mut out).unwrap();
        String::from_utf8(out).expect("UTF-8")
    }

    /// Strings that exercise every escape: each control character, quotes,
    /// backslashes, DEL, multi-byte characters, runs at the start and the end.
    fn texts() -> Vec<String> {
        let mut all: Vec<String> = (0u8..0x20).map(|b| format!("a{}b", b as char)).collect();
        all.extend(
            [
                "",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 460309;",
                "\"",
                "\\",
                "\"quoted\" \\ back\\slash\"",
                "tab\there\nnewline\r\n",
                "\u{7f}del",
                "caf\u{e9} \u{1F600} \u{2028}\u{2029} \u{feff}",
                "\u{0}\u{1f}",
                "}{][,:",
            ]
            .map(String::from),
        );
        // And random mixes of all of those.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "\0\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \"\\/'}{az09\u{7f}\u{80}\u{e9}\u{2028}\u{fffd}\u{1F600}"
            .chars()
            .collect();
        for _ in 0..2000 {
            let len = rng.gen_range(0..24);
            all.push(
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect(),
            );
        }
        all
    }

    #[test]
    fn http_requests_encode_as_serde_does() {
        use crate::audit::http_request::HttpRequest;
        let texts = texts();
        for (i, t) in texts.iter().enumerate().step_by(7) {
            let some = |on: bool| on.then(|| t.clone());
            let r = HttpRequest {
                user: t.as_str().into(),
                groups: vec![t.clone(), "ops".into()][..i % 3].into(),
                target: t.as_str().into(),
                client: "127.0.0.1:5555".into(),
                method: "GET".into(),
                path: t.clone(),
                query: some(i % 2 == 0).map(Into::into),
                phase: some(i % 3 == 0).map(Into::into),
                status: (i % 600) as u16,
                bytes_in: i as u64 * 977,
                bytes_out: u64::MAX - i as u64,
                duration_ms: [0.0, 0.1234, 1e21, f64::NAN, 12.5][i % 5],
                action: "allow".into(),
                rule: t.as_str().into(),
                approval: some(i % 4 == 0),
                masked_fields: vec![t.clone(); i % 2],
                error: some(i % 5 == 0),
            };
            let e = Event::HttpRequest(r);
            assert_eq!(ours(&e), serde(&e), "{t:?}");
        }
    }

    #[test]
    fn decided_records_match_serde() {
        for (i, t) in texts().into_iter().enumerate() {
            let d = Decided {
                statement: [0, 1, u64::MAX, 12345][i % 4],
                protocol: if i % 2 == 0 { "simple" } else { "extended" }.into(),
                sql: t.clone(),
                kinds: (0..i % 3).map(|k| format!("{t}{k}")).collect(),
                tables: vec![t.clone(), "public.t".into()],
                action: ["allow", "block", "approve"][i % 3].into(),
                rules: if i % 2 == 0 { vec![] } else { vec![t.clone()] },
                masked_columns: vec![t],
            };
            let e = Event::Statement(Statement::Decided(d));
            assert_eq!(ours(&e), serde(&e));
        }
    }

    #[test]
    fn completed_records_match_serde() {
        let floats = [
            0.0,
            -0.0,
            0.649,
            3.0,
            1e-7,
            123456789.125,
            1e21,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
        ];
        for (i, t) in texts().into_iter().enumerate() {
            let c = Completed {
                statement: i as u64 * 977,
                duration_ms: floats[i % floats.len()],
                rows: (i % 3 != 0).then_some(i as u64),
                command: (i % 2 == 0).then(|| t.clone()),
                error: (i % 4 == 1).then(|| StatementError {
                    code: "42501".into(),
                    message: t.clone(),
                }),
                columns: (0..i % 3).map(|k| format!("c{k}{t}")).collect(),
                recorded_rows: (0..i % 4)
                    .map(|r| {
                        vec![
                            Value::Null,
                            Value::String(t.clone()),
                            Value::from(r as u64),
                            Value::from(vec![Value::Bool(true)]),
                        ]
                    })
                    .collect(),
                rows_truncated: i % 5 == 0,
            };
            let e = Event::Statement(Statement::Completed(c));
            assert_eq!(ours(&e), serde(&e));
        }
    }

    #[test]
    fn other_events_are_serdes() {
        let e = Event::SessionEnd {
            statements: 3,
            end: "client closed".into(),
        };
        assert_eq!(ours(&e), serde(&e));
    }
}
