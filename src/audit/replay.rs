//! `pgmoat audit sessions` and `pgmoat audit replay`: stream the store once, in order,
//! keeping only per-session summaries (sessions) or nothing at all (replay).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::Deserialize;

use super::error::StoreError;
use super::event::{Completed, Decided, Event, SessionStart, Statement, Whole};
use super::segment::{list, Lines};
use super::time::parse_rfc3339;

#[derive(Deserialize)]
struct Stored {
    seq: u64,
    ts: String,
    #[serde(default)]
    session: Option<String>,
    #[serde(flatten)]
    event: Event,
}

/// Every record of the store, in order, parsed. Lines that are not records of a type
/// this build knows are skipped (`verify` is what judges the store's integrity).
fn for_each(
    dir: &Path,
    mut f: impl FnMut(Stored) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::Invalid(format!(
            "{}: not a folder (an audit store is a folder of segment files)",
            dir.display()
        )));
    }
    for (_, path) in list(dir)? {
        let mut lines = Lines::open(&path)?;
        while let Some(line) = lines.next_line()? {
            if let Ok(r) = serde_json::from_slice::<Stored>(&line.bytes) {
                f(r)?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub user: Option<String>,
    pub target: Option<String>,
    /// Microseconds since the epoch: sessions active at or after / at or before.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub id: String,
    pub started: String,
    pub ended: Option<String>,
    pub start: SessionStart,
    pub statements: u64,
    pub blocked: u64,
    pub end: Option<String>,
    last_ts: String,
}

/// The sessions in the store that match `filter`, oldest first.
pub fn sessions(dir: &Path, filter: &Filter) -> Result<Vec<SessionSummary>, StoreError> {
    let mut all: BTreeMap<String, (u64, SessionSummary)> = BTreeMap::new();
    for_each(dir, |r| {
        let Some(id) = r.session else { return Ok(()) };
        // An SSH session is listed like any other.
        let event = match r.event {
            Event::SshSessionStart(s) => Event::SessionStart(super::ssh::as_session_start(s)),
            e => e,
        };
        match event {
            Event::SessionStart(start) => {
                all.insert(
                    id.clone(),
                    (
                        r.seq,
                        SessionSummary {
                            id,
                            started: r.ts.clone(),
                            ended: None,
                            start,
                            statements: 0,
                            blocked: 0,
                            end: None,
                            last_ts: r.ts,
                        },
                    ),
                );
            }
            ev => {
                if let Some((_, s)) = all.get_mut(&id) {
                    s.last_ts.clone_from(&r.ts);
                    match ev {
                        Event::Statement(Statement::Decided(Decided { action, .. }))
                        | Event::Statement(Statement::Whole(Whole { action, .. })) => {
                            s.statements += 1;
                            if action != "allow" {
                                s.blocked += 1;
                            }
                        }
                        Event::SessionEnd { end, .. }
                        | Event::SshSessionEnd(super::ssh::SshSessionEnd { end, .. }) => {
                            s.ended = Some(r.ts);
                            s.end = Some(end);
                        }
                        Event::SshChannel(c) if c.phase == "decided" => {
                            s.statements += 1;
                            if c.action != "allow" {
                                s.blocked += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    })?;
    let mut out: Vec<(u64, SessionSummary)> = all
        .into_values()
        .filter(|(_, s)| {
            let t0 = parse_rfc3339(&s.started).unwrap_or(i64::MIN);
            let t1 = parse_rfc3339(&s.last_ts).unwrap_or(i64::MAX);
            filter.user.as_ref().is_none_or(|u| *u == s.start.user)
                && filter.target.as_ref().is_none_or(|t| *t == s.start.target)
                && filter.since.is_none_or(|since| t1 >= since)
                && filter.until.is_none_or(|until| t0 <= until)
        })
        .collect();
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

pub fn render_sessions(list: &[SessionSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16}  {:<27}  {:<27}  {:<16}  {:<12}  {:<21}  {:>5}  {:>7}  END",
        "SESSION", "STARTED", "ENDED", "USER", "TARGET", "CLIENT", "STMTS", "BLOCKED"
    );
    for s in list {
        let _ = writeln!(
            out,
            "{:<16}  {:<27}  {:<27}  {:<16}  {:<12}  {:<21}  {:>5}  {:>7}  {}",
            s.id,
            s.started,
            s.ended.as_deref().unwrap_or("-"),
            s.start.user,
            s.start.target,
            s.start.client,
            s.statements,
            s.blocked,
            s.end.as_deref().unwrap_or("(open or crashed)")
        );
    }
    out
}

/// `10:37:30.123` from `2026-12-01T10:37:30.123456Z`.
fn clock(ts: &str) -> &str {
    ts.get(11..23).unwrap_or(ts)
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}\n"))
        .collect::<String>()
}

fn decided_lines(ts: &str, d: &Decided) -> String {
    let decision = match d.action.as_ref() {
        "allow" if d.rules.is_empty() => "allow".to_string(),
        "allow" => format!("allow (rules: {})", d.rules.join(", ")),
        other => format!(
            "{} by rule \"{}\"",
            if other == "block" { "BLOCKED" } else { "HELD" },
            d.rules.first().map(String::as_str).unwrap_or("?")
        ),
    };
    let mut out = format!(
        "[{}] #{} {} {}\n",
        clock(ts),
        d.statement,
        d.protocol,
        decision
    );
    if !d.kinds.is_empty() || !d.tables.is_empty() {
        let _ = writeln!(
            out,
            "    -- kinds: {}; tables: {}",
            if d.kinds.is_empty() {
                "-".into()
            } else {
                d.kinds.join(", ")
            },
            if d.tables.is_empty() {
                "-".into()
            } else {
                d.tables.join(", ")
            }
        );
    }
    if !d.masked_columns.is_empty() {
        let _ = writeln!(out, "    -- masked: {}", d.masked_columns.join(", "));
    }
    out.push_str(&indent(d.sql.trim_end(), "    "));
    out
}

fn completed_lines(ts: &str, c: &Completed) -> String {
    let mut out = format!("[{}] #{} => ", clock(ts), c.statement);
    match &c.error {
        Some(e) => {
            let _ = write!(out, "ERROR {}: {}", e.code, e.message);
        }
        None => out.push_str(c.command.as_deref().unwrap_or("done")),
    }
    if let Some(r) = c.rows {
        let _ = write!(out, ", {r} row{}", if r == 1 { "" } else { "s" });
    }
    let _ = writeln!(out, " in {:.3} ms", c.duration_ms);
    if !c.columns.is_empty() || !c.recorded_rows.is_empty() {
        let cell = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "NULL".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut widths: Vec<usize> = c.columns.iter().map(|n| n.chars().count()).collect();
        for row in &c.recorded_rows {
            for (i, v) in row.iter().enumerate() {
                let w = cell(v).chars().count();
                if i >= widths.len() {
                    widths.push(w);
                } else {
                    widths[i] = widths[i].max(w);
                }
            }
        }
        let fmt_row = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
                .collect();
            format!("      {}\n", padded.join(" | ").trim_end())
        };
        if !c.columns.is_empty() {
            out.push_str(&fmt_row(c.columns.clone()));
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "      {}", rule.join("-+-"));
        }
        for row in &c.recorded_rows {
            out.push_str(&fmt_row(row.iter().map(cell).collect()));
        }
        if c.rows_truncated {
            out.push_str("      (more rows were returned than recorded)\n");
        }
    }
    out
}

/// Print one session as a transcript. Returns false when the session is not in the store.
pub fn replay(dir: &Path, session: &str, out: &mut dyn Write) -> Result<bool, StoreError> {
    let mut found = false;
    let io = |e: std::io::Error| StoreError::Invalid(format!("cannot write the transcript: {e}"));
    for_each(dir, |r| {
        if r.session.as_deref() != Some(session) {
            return Ok(());
        }
        found = true;
        let text = match &r.event {
            Event::SessionStart(s) => format!(
                "-- session {session}: {} ({}) -> {} from {}, TLS {}, application_name {}\n-- started {}\n",
                s.user,
                if s.groups.is_empty() { "no groups".into() } else { s.groups.join(", ") },
                s.target,
                s.client,
                if s.tls { "yes" } else { "no" },
                s.application_name.as_deref().map(|a| format!("{a:?}")).unwrap_or_else(|| "-".into()),
                r.ts
            ),
            Event::Statement(Statement::Decided(d)) => decided_lines(&r.ts, d),
            Event::Statement(Statement::Completed(c)) => completed_lines(&r.ts, c),
            Event::Statement(Statement::Whole(w)) => {
                let (d, c) = w.clone().split();
                decided_lines(&r.ts, &d) + &completed_lines(&r.ts, &c)
            }
            Event::Approval(a) => format!(
                "[{}] #{} approval {}: {:?}{}{}{}\n",
                clock(&r.ts),
                a.statement,
                a.id,
                a.state,
                a.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default(),
                a.reason.as_deref().map(|b| format!(" ({b})")).unwrap_or_default(),
                a.grant_until
                    .as_deref()
                    .map(|u| format!(", granting the same statement until {u}"))
                    .unwrap_or_default()
            ),
            Event::HttpRequest(h) => super::http_request::replay_line(&r.ts, h),
            Event::SessionEnd { statements, end } => format!(
                "-- ended {}: {end}, {statements} statement{}\n",
                r.ts,
                if *statements == 1 { "" } else { "s" }
            ),
            other => super::ssh::replay_text(dir, &r.ts, session, other).unwrap_or_default(),
        };
        out.write_all(text.as_bytes()).map_err(io)
    })?;
    Ok(found)
}
