//! The masker's reuse of result plans (issue 19: a prepared statement's executions
//! share one plan): a result whose RowDescription, Bind formats or engine differ from
//! the last one's gets its own plan, so reuse never masks by another result's shape.

use std::sync::Arc;

use bytes::BytesMut;

use super::{Action, Masker};
use crate::catalog::Catalog;
use crate::mask::Masking;
use crate::policy::{RuleSet, Subject};
use crate::protocol::formats::ResultFormats;
use crate::session::core::expect::{Asked, Expected};
use crate::session::core::names::Names;
use crate::session::core::script::msg;

/// A detector only: what happens to a hit depends on the column's type (a text value
/// is rewritten, any other goes NULL), so a plan of the wrong shape shows in the bytes.
fn engine(kind: &str) -> Arc<Masking> {
    let rules = RuleSet::from_sources(&[(
        "r.yaml".into(),
        format!("detect:\n  - id: d\n    kind: {kind}\n    method: redact\n"),
    )])
    .expect("compiles");
    let groups = vec!["agents".to_string()];
    let who = Subject {
        user: "a",
        groups: &groups,
        target: "t",
        search_path_changed: false,
    };
    Arc::new(Masking::build(&rules, &who, Arc::new(Catalog::default())).expect("detectors apply"))
}

/// A RowDescription of one column of type `type_oid`, text format.
fn description(type_oid: u32) -> Vec<u8> {
    let mut b = 1u16.to_be_bytes().to_vec();
    b.extend_from_slice(b"c\0");
    b.extend_from_slice(&0u32.to_be_bytes()); // table
    b.extend_from_slice(&0i16.to_be_bytes()); // attnum
    b.extend_from_slice(&type_oid.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'T', &b)
}

fn row(value: &[u8]) -> Vec<u8> {
    let mut b = 1u16.to_be_bytes().to_vec();
    b.extend_from_slice(&(value.len() as i32).to_be_bytes());
    b.extend_from_slice(value);
    msg(b'D', &b)
}

/// One prepared cycle (`B D E S`, answered `2 T D C Z`) through the masker: what the
/// client gets for the row.
fn cycle(m: &mut Masker, names: &mut Names, type_oid: u32, formats: &[i16]) -> Vec<u8> {
    let (portal, _) = m.for_bind(names, b"", b"s", ResultFormats::from_slice(formats));
    names.rebind(b"").mask = Some(portal);
    let mut describe = Expected::new(Asked::Describe).with_mask(Some(m.on_describe(names, b"P\0")));
    let mut execute = Expected::new(Asked::Execute).with_mask(Some(m.on_execute(names, b"")));
    let mut out = BytesMut::new();
    m.on_server(names, Some(&mut describe), &description(type_oid), &mut out);
    let r = row(b"123-45-6789");
    let shown = match m.on_server(names, Some(&mut execute), &r, &mut out) {
        Action::Forward => r,
        Action::Replaced => out.to_vec(),
    };
    let mut none = BytesMut::new();
    m.on_server(
        names,
        Some(&mut execute),
        &msg(b'C', b"SELECT 1\0"),
        &mut none,
    );
    m.on_server(names, None, &msg(b'Z', b"I"), &mut none);
    shown
}

#[test]
fn a_plan_is_reused_only_for_the_same_result_shape() {
    let mut m = Masker::new(engine("us_ssn"));
    let mut names = Names::default();
    // Statement "s" reads nothing masked (no lineage: clean): only the detector acts.
    let s = m.for_parse(&mut names, b"s", None, 0);
    names.statement_entry(b"s").mask = Some(s);
    let text = row(b"****");
    let null = msg(b'D', &[0, 1, 0xff, 0xff, 0xff, 0xff]);
    // text (25), twice: the second takes the first's plan, and masks the same.
    assert_eq!(cycle(&mut m, &mut names, 25, &[]), text);
    assert_eq!(cycle(&mut m, &mut names, 25, &[]), text);
    // The statement now describes an integer column: a plan of its own (the hit
    // cannot be rewritten inside a non-text value, so it goes).
    assert_eq!(cycle(&mut m, &mut names, 20, &[]), null);
    assert_eq!(cycle(&mut m, &mut names, 25, &[]), text);
    assert_eq!(cycle(&mut m, &mut names, 25, &[1]), text);
    // A new engine (rules or catalog reloaded), same columns: planned again under it
    // (its detector looks for e-mail addresses only: the value goes as it is).
    m.engine = engine("email");
    assert_eq!(cycle(&mut m, &mut names, 25, &[1]), row(b"123-45-6789"));
    assert_eq!(cycle(&mut m, &mut names, 20, &[]), row(b"123-45-6789"));
}
