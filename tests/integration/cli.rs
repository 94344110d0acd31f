//! The command line as a DBA uses it: `pgmoat explain` takes any SQL (from the
//! argument, stdin or a file), `pgmoat check` reports every mistake in one run, and
//! out-of-range durations and sizes are one-line errors.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::TempDir;

const PGMOAT: &str = env!("CARGO_BIN_EXE_pgmoat");
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/baseline.yaml");

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(PGMOAT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pgmoat");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_takes_sql_that_starts_with_a_comment_from_anywhere() {
    let sql = "-- why: clean up\nDROP TABLE t";
    let (code, out, err) = run(&["explain", "--rules", RULES, sql], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("action: block"), "{out}");
    assert!(out.contains("kinds: drop"), "{out}");
    // From stdin.
    let (code, out, err) = run(&["explain", "--rules", RULES, "--json", "-"], Some(sql));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["action"], "block");
    assert_eq!(v["statements"][0]["kinds"][0], "drop");
    // From a file; options after the SQL's place are still options.
    let dir = TempDir::new("pgmoat-cli");
    let file = dir.path().join("q.sql");
    std::fs::write(&file, "/* a note */ DELETE FROM users").unwrap();
    let (code, out, err) = run(
        &[
            "explain",
            "--rules",
            RULES,
            "--file",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("where: missing"), "{out}");
    // No SQL at all: a usage error, not a panic.
    let (code, _, err) = run(&["explain", "--rules", RULES], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn check_reports_every_mistake_in_one_run() {
    let dir = TempDir::new("pgmoat-cli-check");
    let file = dir.path().join("rules.yaml");
    std::fs::write(
        &file,
        "rules:
  - id: one
    whn: { statement: drop }
    action: block
  - id: two
    when: { statment: delete, tables: [\"a[\"] }
    action: blok
  - id: one
    action: block
detect:
  - id: three
    kind: regex
    pattern: \"(\"
    method: redact
",
    )
    .unwrap();
    let (code, out, err) = run(&["check", file.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    let name = file.to_str().unwrap();
    for want in [
        format!("{name}:3: rule \"one\": unknown key \"whn\""),
        format!("{name}:6: rule \"two\": unknown key \"when.statment\""),
        "rule \"two\": action must be".to_string(),
        "rule \"two\": tables: bad pattern".to_string(),
        "rule \"one\": duplicate rule id".to_string(),
        "rule \"three\": bad regex".to_string(),
    ] {
        assert!(all.contains(&want), "missing {want:?} in:\n{all}");
    }
}

/// A mask or detector the policy cannot compile is an error `check` names, never a
/// silent default (issue 19: an unknown method used to become `redact` in `mask`, and
/// an unknown kind or bad regex dropped the detector).
#[test]
fn check_refuses_unknown_mask_methods_and_bad_detectors() {
    let dir = TempDir::new("pgmoat-cli-masks");
    let file = dir.path().join("masks.yaml");
    std::fs::write(
        &file,
        "masks:
  - id: ssn
    columns: [users.ssn]
    method: scramble
detect:
  - id: cards
    kind: credit_cards
    method: redact
  - id: badre
    kind: regex
    pattern: \"[a-\"
    method: redact
",
    )
    .unwrap();
    let (code, out, err) = run(&["check", file.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    let name = file.to_str().unwrap();
    for want in [
        format!("{name}:2: rule \"ssn\": unknown mask method \"scramble\""),
        format!("{name}:6: rule \"cards\": unknown detector kind \"credit_cards\""),
        format!("{name}:9: rule \"badre\": bad regex:"),
    ] {
        assert!(all.contains(&want), "missing {want:?} in:\n{all}");
    }
    assert_eq!(all.trim().lines().count(), 3, "one line each: {all}");
    // A hash key `check` cannot see is a note, not an error (`serve` may have it).
    std::fs::write(
        &file,
        "masks:\n  - id: h\n    columns: [t.c]\n    method: hash\n    hash_key_env: PGMOAT_TEST_UNSET_KEY\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("note: environment variable PGMOAT_TEST_UNSET_KEY is not set here"),
        "{out}{err}"
    );
}

#[test]
fn out_of_range_durations_and_sizes_are_one_line_errors() {
    let dir = TempDir::new("pgmoat-cli-ranges");
    for (extra, what) in [
        ("limits:\n  shutdown_grace: 5000000000000000h\n", "too long"),
        (
            "limits:\n  max_message_bytes: 99999999999999\n",
            "max_message_bytes",
        ),
        ("workers: 4000000\n", "workers"),
    ] {
        let cfg = dir.path().join("pgmoat.yaml");
        std::fs::write(
            &cfg,
            format!(
                "targets:\n  demo:\n    host: 127.0.0.1\n    user: app\n    password_env: HOME\n{extra}"
            ),
        )
        .unwrap();
        let (code, out, err) = run(&["check", "-c", cfg.to_str().unwrap()], None);
        assert_eq!(code, 1, "{extra}: {out}{err}");
        let all = format!("{out}{err}");
        assert!(all.contains(what), "{extra}: {all}");
        assert!(!all.contains("panicked"), "{all}");
        assert_eq!(all.trim().lines().count(), 1, "one line: {all}");
    }
}
