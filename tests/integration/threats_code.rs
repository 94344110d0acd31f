//! THREATS.md class H, issue 18 classes 2 and 3, differentially: the same code run
//! directly and through pgmoat (baseline rules plus masks).
//!
//! Class 2, code libpg_query's PL/pgSQL output leaves out: every place of a PL/pgSQL
//! body that holds SQL or an expression (declaration defaults of scalars, records and
//! row types, cursors and their arguments, OPEN FOR, FOR IN query, FOREACH, CASE,
//! RAISE USING, ASSERT, PERFORM, CALL arguments, WHILE, IF/ELSIF, EXIT WHEN,
//! assignments, exception handlers, nested labelled blocks, trigger functions; and
//! dynamic SQL: EXECUTE, OPEN FOR EXECUTE, FOR IN EXECUTE format()) hides each payload (a function that deletes every row, a
//! file read, a role change, a large-object import, backend termination, a masked
//! value raised in a notice). Each runs as a DO block, as a function the message
//! creates and calls, and as a function in the catalog. Blocked code never reaches the
//! server (its marker is absent from the server log, the victim's rows are intact,
//! the session's role and a bystander's backend are unchanged); masked values never
//! reach the client (rows and NoticeResponse alike); the same places with harmless
//! expressions give exactly the server's answer.
//!
//! Class 3, DDL that drops without DROP: every ALTER sub-command that drops something
//! is `drop`, so the baseline's no-drop rule refuses it and the object stays intact.

use std::net::SocketAddr;

use tokio_postgres::Client;

use crate::common::pg::TestPg;
use crate::harness::*;
use crate::masking::{fixture, Fixture, DBA, DBA_PW};

/// The baseline rules (rules/baseline.yaml), plus a rule for backend termination (the
/// baseline leaves it to the server's privileges).
fn rules() -> String {
    let baseline = include_str!("../../rules/baseline.yaml");
    let rules = baseline
        .split_once("\nrules:\n")
        .map(|(_, r)| r)
        .expect("the baseline has rules");
    format!(
        "rules:\n{rules}
  - id: no-backend-signals
    description: Other sessions are not the agent's to end.
    when: {{ functions: [pg_terminate_backend, pg_cancel_backend] }}
    action: block
"
    )
}

/// Where code hides in a PL/pgSQL body: `{E}` is an expression whose value is text.
const PLACES: &[(&str, &str)] = &[
    (
        "decl_var",
        "DECLARE v text := ({E})::text; BEGIN RAISE NOTICE '%', v; END",
    ),
    (
        "decl_var_default",
        "DECLARE v text DEFAULT ({E})::text; BEGIN RAISE NOTICE '%', v; END",
    ),
    (
        "decl_const",
        "DECLARE v CONSTANT text = ({E})::text; BEGIN RAISE NOTICE '%', v; END",
    ),
    (
        "decl_record",
        "DECLARE r record := row(({E})::text); BEGIN RAISE NOTICE '%', r; END",
    ),
    (
        "decl_rowtype",
        "DECLARE r {p}_pair := row(1, ({E})::text); BEGIN RAISE NOTICE '%', r.b; END",
    ),
    (
        "decl_cursor",
        "DECLARE c CURSOR FOR SELECT ({E})::text; v text;
         BEGIN OPEN c; FETCH c INTO v; CLOSE c; RAISE NOTICE '%', v; END",
    ),
    (
        "cursor_args",
        "DECLARE c CURSOR (a text) FOR SELECT a; v text;
         BEGIN OPEN c(({E})::text); FETCH c INTO v; CLOSE c; RAISE NOTICE '%', v; END",
    ),
    (
        "for_cursor_args",
        "DECLARE c CURSOR (a text) FOR SELECT a AS x;
         BEGIN FOR r IN c(({E})::text) LOOP RAISE NOTICE '%', r.x; END LOOP; END",
    ),
    (
        "open_for",
        "DECLARE c refcursor; v text;
         BEGIN OPEN c FOR SELECT ({E})::text; FETCH c INTO v; RAISE NOTICE '%', v; END",
    ),
    (
        "for_query",
        "DECLARE r record;
         BEGIN FOR r IN SELECT ({E})::text AS x LOOP RAISE NOTICE '%', r.x; END LOOP; END",
    ),
    (
        "foreach",
        "DECLARE x text;
         BEGIN FOREACH x IN ARRAY ARRAY[({E})::text] LOOP RAISE NOTICE '%', x; END LOOP; END",
    ),
    (
        "fori",
        "BEGIN FOR i IN 1..length(({E})::text) LOOP RAISE NOTICE '%', i; EXIT; END LOOP; END",
    ),
    (
        "case",
        "BEGIN CASE ({E})::text WHEN '-' THEN NULL; ELSE RAISE NOTICE 'else'; END CASE; END",
    ),
    (
        "raise_using",
        "BEGIN RAISE NOTICE 'note' USING DETAIL = ({E})::text; END",
    ),
    (
        "assert",
        "BEGIN ASSERT ({E})::text IS NOT NULL OR true; END",
    ),
    ("perform", "BEGIN PERFORM ({E})::text; END"),
    ("call", "BEGIN CALL {p}_noop(({E})::text); END"),
    (
        "exception",
        "BEGIN PERFORM 1 / 0;
         EXCEPTION WHEN division_by_zero THEN RAISE NOTICE '%', ({E})::text; END",
    ),
    (
        "while",
        "DECLARE n int := 0;
         BEGIN WHILE n < length(({E})::text) LOOP n := n + 1; EXIT; END LOOP; RAISE NOTICE '%', n; END",
    ),
    (
        "if_elsif",
        "BEGIN IF false THEN NULL; ELSIF ({E})::text IS NOT NULL THEN RAISE NOTICE 'if'; END IF; END",
    ),
    ("exit_when", "BEGIN LOOP EXIT WHEN ({E})::text IS NOT NULL OR true; END LOOP; END"),
    (
        "assign_getdiag",
        "DECLARE n int; v text; BEGIN v := ({E})::text; GET DIAGNOSTICS n = ROW_COUNT;
         RAISE NOTICE '% %', v, n; END",
    ),
    (
        "nested_label",
        "<<outer_blk>> DECLARE a int := 1;
         BEGIN <<inner_blk>> DECLARE v text := ({E})::text;
           BEGIN RAISE NOTICE '%', inner_blk.v; END inner_blk; END outer_blk",
    ),
];

/// Where code hides in a string run at run time: unanalysable, so refused (also with
/// harmless code: the trade-off of dynamic SQL).
const DYNAMIC_PLACES: &[(&str, &str)] = &[
    ("execute", "BEGIN EXECUTE $q$SELECT ({E})::text$q$; END"),
    (
        "open_for_execute",
        "DECLARE c refcursor; v text;
         BEGIN OPEN c FOR EXECUTE $q$SELECT ({E})::text$q$; FETCH c INTO v; RAISE NOTICE '%', v; END",
    ),
    (
        "for_execute",
        "DECLARE r record;
         BEGIN FOR r IN EXECUTE format($q$SELECT %s AS x$q$, $q$({E})::text$q$) LOOP
           RAISE NOTICE '%', r.x; END LOOP; END",
    ),
];

fn all_places() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    PLACES.iter().chain(DYNAMIC_PLACES)
}

/// Where a whole statement hides: `{S}`.
const STATEMENT_PLACES: &[(&str, &str)] = &[
    ("stmt", "BEGIN {S}; END"),
    (
        "stmt_in_handler",
        "BEGIN PERFORM 1 / 0; EXCEPTION WHEN division_by_zero THEN {S}; END",
    ),
    (
        "stmt_nested",
        "<<b>> DECLARE n int := 0; BEGIN IF n = 0 THEN {S}; END IF; END b",
    ),
];

/// What the code does, as statements: (name, statement).
fn statement_payloads(p: &str) -> Vec<(&'static str, String)> {
    vec![
        ("delete", format!("DELETE FROM {p}_victim")),
        ("set_role", format!("SET ROLE {p}_other")),
        (
            "read_file",
            "PERFORM pg_read_file('postgresql.conf')".into(),
        ),
        ("lo_import", "PERFORM lo_import('/etc/hostname')".into()),
    ]
}

/// What the code does: (name, expression).
fn payloads(p: &str, bystander: i32) -> Vec<(&'static str, String)> {
    vec![
        ("wipe", format!("{p}_wipe()")),
        ("read_file", "pg_read_file('postgresql.conf')".into()),
        (
            "set_role",
            format!("set_config('role', '{p}_other', false)"),
        ),
        ("lo_import", "lo_import('/etc/hostname')".into()),
        ("terminate", format!("pg_terminate_backend({bystander})")),
    ]
}

/// The masked value, raised: for the identity with masks.
fn secret_payload(p: &str) -> String {
    format!("(SELECT string_agg(ssn, ',') FROM {p}_ppl)")
}

fn fill(template: &str, p: &str, e: &str) -> String {
    template.replace("{E}", e).replace("{p}", p)
}

/// The objects the cases use, made directly before the gateway's first catalog load.
struct Setup {
    p: String,
    bystander: Client,
    bystander_pid: i32,
}

async fn setup(pg: &'static TestPg) -> Setup {
    prepare(pg).await;
    let p = unique("hc");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let bystander = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let bystander_pid: i32 = bystander
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let mut ddl = format!(
        "CREATE TABLE {p}_victim (id int PRIMARY KEY);
         INSERT INTO {p}_victim VALUES (1), (2), (3);
         CREATE TYPE {p}_pair AS (a int, b text);
         CREATE FUNCTION {p}_wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM {p}_victim; SELECT 1';
         CREATE PROCEDURE {p}_noop(a text) LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
         CREATE TABLE {p}_ppl (id int, ssn text);
         INSERT INTO {p}_ppl VALUES (1, '123-45-6789'), (2, '987-65-4321');
         CREATE TABLE {p}_tt (id int, updated_at timestamptz);
         CREATE TABLE {p}_tgood (id int, updated_at timestamptz);
         CREATE FUNCTION {p}_touch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.updated_at := now(); IF TG_OP = 'INSERT' THEN RETURN NEW; END IF; RETURN OLD; END $$;
         CREATE TRIGGER {p}_touch BEFORE INSERT OR UPDATE ON {p}_tgood
           FOR EACH ROW EXECUTE FUNCTION {p}_touch();"
    );
    // A catalog function per place and payload, and benign ones per place.
    for (pi, (_, place)) in all_places().enumerate() {
        for (ei, (_, e)) in payloads(&p, bystander_pid).iter().enumerate() {
            ddl.push_str(&catalog_function(
                &format!("{p}_c{pi}_{ei}"),
                &fill(place, &p, e),
            ));
        }
        let secret = fill(place, &p, &secret_payload(&p));
        ddl.push_str(&catalog_function(&format!("{p}_c{pi}_s"), &secret));
        let benign = fill(place, &p, "length('abc')");
        ddl.push_str(&catalog_function(&format!("{p}_b{pi}"), &benign));
    }
    for (si, (_, place)) in STATEMENT_PLACES.iter().enumerate() {
        for (ei, (_, st)) in statement_payloads(&p).iter().enumerate() {
            let body = place.replace("{S}", st);
            ddl.push_str(&catalog_function(&format!("{p}_st{si}_{ei}"), &body));
        }
    }
    // Trigger functions hiding each payload, on a table of their own.
    for (ei, (_, e)) in payloads(&p, bystander_pid).iter().enumerate() {
        ddl.push_str(&format!(
            "CREATE TABLE {p}_tt{ei} (id int);
             CREATE FUNCTION {p}_tg{ei}() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM ({e})::text; RETURN NEW; END $$;
             CREATE TRIGGER {p}_tg{ei} BEFORE INSERT ON {p}_tt{ei}
               FOR EACH ROW EXECUTE FUNCTION {p}_tg{ei}();"
        ));
    }
    direct.batch_execute(&ddl).await.unwrap();
    // A role the session could really change to: the payloads' role changes would
    // succeed on the server.
    pg.admin_client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {p}_other NOLOGIN; GRANT {p}_other TO {APP_ROLE}"
        ))
        .await
        .unwrap();
    Setup {
        p,
        bystander,
        bystander_pid,
    }
}

fn catalog_function(name: &str, body: &str) -> String {
    format!("CREATE FUNCTION {name}() RETURNS void LANGUAGE plpgsql AS $fn$ {body} $fn$;\n")
}

/// The extra masks: the setup's copy of the fixture's secrets is masked too.
fn masks_and_rules(p: &str) -> String {
    format!(
        "  - id: ppl
    columns: [{p}_ppl.ssn]
    method: partial
    keep_last: 4
    unless: {{ groups: [dba] }}
{}",
        rules()
    )
}

async fn raw_gateway(f: &Fixture, dba: bool) -> Raw {
    let (user, pw) = if dba {
        (DBA, DBA_PW)
    } else {
        (AGENT, AGENT_PW)
    };
    Raw::login(f.gw.addr, user, pw, "demo").await.unwrap()
}

async fn raw_direct(pg: &TestPg) -> Raw {
    let addr: SocketAddr = format!("127.0.0.1:{}", pg.port).parse().unwrap();
    Raw::login(addr, APP_ROLE, APP_PW, "demo").await.unwrap()
}

/// Every text the client got, for the secret scan: all message bodies.
fn all_text(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `body` run three ways, each refused and absent from the server log: as a DO block
/// (by the identity without masks: the agents' rule refuses DO), as a function the
/// message creates and then calls, and as the catalog function `catalog` made from it.
#[allow(clippy::too_many_arguments)]
async fn blocked_everywhere(
    f: &Fixture,
    s: &Setup,
    dba: &mut Raw,
    agent: &mut Raw,
    body: &str,
    catalog: &str,
    label: &str,
    failed: &mut Vec<String>,
) {
    let mark = unique(&format!("do_{label}"));
    let sql = format!("DO $do$ -- {mark}\n {body} $do$");
    assert_blocked(f, s, dba, &sql, &mark, failed).await;
    let mark = unique(&format!("fn_{label}"));
    let sql = format!(
        "CREATE FUNCTION pg_temp.{mark}() RETURNS void LANGUAGE plpgsql AS $fn$ -- {mark}\n {body} $fn$;
         SELECT pg_temp.{mark}()"
    );
    assert_blocked(f, s, agent, &sql, &mark, failed).await;
    let mark = unique(&format!("cat_{label}"));
    let sql = format!("SELECT {catalog}() /* {mark} */");
    assert_blocked(f, s, agent, &sql, &mark, failed).await;
}

/// Every case is reported at once: one run shows all that fail.
fn assert_none_failed(failed: &[String]) {
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// No masked value in any byte of `msgs`.
fn no_secret(f: &Fixture, msgs: &[Msg], label: &str, failed: &mut Vec<String>) {
    let text = all_text(msgs).to_lowercase();
    if f.secrets.iter().any(|x| text.contains(x.as_str())) {
        failed.push(format!("{label}: a masked value in {:?}", answer(msgs)));
    }
}

fn refusal(msgs: &[Msg]) -> Option<String> {
    msgs.iter()
        .find(|m| m.tag == b'E')
        .filter(|m| m.field(b'C') == "42501" && m.field(b'M').starts_with("pgmoat: blocked"))
        .map(|m| m.field(b'M'))
}

/// What a statement shows the client: notices, rows and errors (code and message).
fn answer(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m.tag {
            b'N' => Some(format!("N {}", m.field(b'M'))),
            b'D' => Some(format!("D {}", String::from_utf8_lossy(&m.body))),
            b'E' => Some(format!("E {} {}", m.field(b'C'), m.field(b'M'))),
            _ => None,
        })
        .collect()
}

/// Everything the server logged up to now is in the log (a fence statement run
/// directly after it is): then `marker` must not be in it.
async fn assert_never_ran(pg: &TestPg, marker: &str, what: &str) {
    let fence = unique("fence");
    let c = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    c.simple_query(&format!("SELECT '{fence}'")).await.unwrap();
    let log = wait_log_contains(pg, &fence).await;
    assert!(!log.contains(marker), "{what}: reached the server");
}

/// The victim's rows are intact (put back when not, so one failure does not hide
/// the next).
async fn check_intact(f: &Fixture, s: &Setup, what: &str, failed: &mut Vec<String>) {
    let n: i64 = f
        .direct
        .query_one(&format!("SELECT count(*) FROM {}_victim", s.p), &[])
        .await
        .unwrap()
        .get(0);
    if n != 3 {
        failed.push(format!("{what}: the victim's rows were deleted"));
        f.direct
            .batch_execute(&format!(
                "INSERT INTO {}_victim VALUES (1), (2), (3) ON CONFLICT DO NOTHING",
                s.p
            ))
            .await
            .unwrap();
    }
}

/// Run `sql` through pgmoat: it must be refused by a rule and never reach the server.
async fn assert_blocked(
    f: &Fixture,
    s: &Setup,
    raw: &mut Raw,
    sql: &str,
    marker: &str,
    failed: &mut Vec<String>,
) {
    let msgs = raw.query(sql).await;
    let role = raw.query("SELECT current_user").await;
    let role = data_rows(&role).join(",");
    if refusal(&msgs).is_none() {
        failed.push(format!("{marker}: not refused: {:?}", answer(&msgs)));
    } else {
        assert_never_ran(f.pg, marker, sql).await;
    }
    if !role.contains(APP_ROLE) {
        failed.push(format!("{marker}: the role changed: {role}"));
    }
    check_intact(f, s, marker, failed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_code_in_plpgsql_is_judged() {
    let pg = crate::common::pg::shared();
    let s = setup(pg).await;
    let p = s.p.clone();
    let f = fixture(&masks_and_rules(&p)).await;
    let mut failed = Vec::new();
    let payloads = payloads(&p, s.bystander_pid);
    let mut dba = raw_gateway(&f, true).await;
    let mut agent = raw_gateway(&f, false).await;
    for (pi, (place, template)) in all_places().enumerate() {
        for (ei, (what, e)) in payloads.iter().enumerate() {
            let body = fill(template, &p, e);
            let catalog = format!("{p}_c{pi}_{ei}");
            let label = format!("{place}_{what}");
            let (dba, agent) = (&mut dba, &mut agent);
            blocked_everywhere(&f, &s, dba, agent, &body, &catalog, &label, &mut failed).await;
        }
        // The masked value raised in a notice, by a catalog function: refused, or
        // nothing secret in any byte the client gets.
        let msgs = agent.query(&format!("SELECT {p}_c{pi}_s()")).await;
        no_secret(&f, &msgs, place, &mut failed);
        let sql = format!(
            "CREATE FUNCTION pg_temp.s_{pi}() RETURNS void LANGUAGE plpgsql AS $fn$ {} $fn$;
             SELECT pg_temp.s_{pi}()",
            fill(template, &p, &secret_payload(&p))
        );
        let msgs = agent.query(&sql).await;
        no_secret(
            &f,
            &msgs,
            &format!("{place} (session function)"),
            &mut failed,
        );
    }
    // Whole statements.
    for (si, (place, template)) in STATEMENT_PLACES.iter().enumerate() {
        for (ei, (what, st)) in statement_payloads(&p).iter().enumerate() {
            let body = template.replace("{S}", st);
            let catalog = format!("{p}_st{si}_{ei}");
            let label = format!("{place}_{what}");
            let (dba, agent) = (&mut dba, &mut agent);
            blocked_everywhere(&f, &s, dba, agent, &body, &catalog, &label, &mut failed).await;
        }
    }
    // Trigger functions: writing the table runs them.
    for (ei, (what, _)) in payloads.iter().enumerate() {
        let mark = unique(&format!("trigger_{what}"));
        let sql = format!("INSERT INTO {p}_tt{ei} VALUES (1) /* {mark} */");
        assert_blocked(&f, &s, &mut agent, &sql, &mark, &mut failed).await;
    }
    if s.bystander.simple_query("SELECT 1").await.is_err() {
        failed.push(format!("the bystander (pid {}) was ended", s.bystander_pid));
    }
    assert_none_failed(&failed);
}

/// The same places with harmless code: exactly the server's answer, for DO blocks,
/// session functions, catalog functions and triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_plpgsql_stays_usable() {
    let pg = crate::common::pg::shared();
    let s = setup(pg).await;
    let p = s.p.clone();
    let f = fixture(&masks_and_rules(&p)).await;
    let mut failed = Vec::new();
    let mut cases = Vec::new();
    let mut agent_cases = Vec::new();
    for (pi, (place, template)) in PLACES.iter().enumerate() {
        let body = fill(template, &p, "length('abc')");
        cases.push((true, format!("{place} DO"), format!("DO $do$ {body} $do$")));
        // The identity without masks: a PL/pgSQL function the message makes is not one
        // masking can trace (its results and notices are withheld from the other).
        cases.push((
            true,
            format!("{place} function"),
            format!(
                "CREATE FUNCTION pg_temp.ok_{pi}() RETURNS void LANGUAGE plpgsql AS $fn$ {body} $fn$;
                 SELECT pg_temp.ok_{pi}()"
            ),
        ));
        cases.push((
            true,
            format!("{place} catalog"),
            format!("SELECT {p}_b{pi}()"),
        ));
        agent_cases.push(format!("SELECT {p}_b{pi}()"));
    }
    let counter = format!(
        "DO $do$ DECLARE n int := (SELECT count(*) FROM {p}_victim);
           r {p}_victim := (SELECT v FROM {p}_victim v WHERE id = 2);
           q record := (SELECT v FROM {p}_victim v WHERE id = 3);
         BEGIN RAISE NOTICE 'n=% r=% q=%', n, r.id, q; END $do$"
    );
    cases.push((true, "counters in defaults".into(), counter));
    // The identity without masks: rows a session-made PL/pgSQL trigger wrote are not
    // ones masking can trace.
    cases.push((
        true,
        "a trigger the message makes".into(),
        "CREATE TEMP TABLE ok_t (id int, updated_at timestamptz);
         CREATE FUNCTION pg_temp.ok_touch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.updated_at := now(); IF TG_OP = 'INSERT' THEN RETURN NEW; END IF; RETURN OLD; END $$;
         CREATE TRIGGER ok_touch BEFORE INSERT ON ok_t FOR EACH ROW EXECUTE FUNCTION pg_temp.ok_touch();
         INSERT INTO ok_t (id) VALUES (1); SELECT id, updated_at IS NOT NULL FROM ok_t"
            .into(),
    ));
    cases.push((
        false,
        "a catalog trigger".into(),
        format!(
            "BEGIN; INSERT INTO {p}_tgood (id) VALUES (1);
             SELECT id, updated_at IS NOT NULL FROM {p}_tgood; ROLLBACK"
        ),
    ));
    for (dba, what, sql) in cases {
        let mut direct = raw_direct(pg).await;
        let want = answer(&direct.query(&sql).await);
        let mut through = raw_gateway(&f, dba).await;
        let got = answer(&through.query(&sql).await);
        if got != want {
            failed.push(format!("{what}: {got:?}, the server: {want:?}"));
        }
    }
    // The identity with masks may see a catalog function's results masked (a user
    // cast to text anywhere in the database makes every `::text` one masking cannot
    // trace), but is not refused.
    let mut agent = raw_gateway(&f, false).await;
    for sql in agent_cases {
        let msgs = agent.query(&sql).await;
        if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
            failed.push(format!("{sql} (with masks): {}", e.field(b'M')));
        }
    }
    assert_none_failed(&failed);
}

/// ALTER sub-commands that drop: refused by the baseline's no-drop rule, the object
/// intact on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_that_drops_is_drop() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let p = unique("hd");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE DOMAIN {p}_d AS int DEFAULT 1 NOT NULL CONSTRAINT {p}_pos CHECK (VALUE > 0);
             CREATE TYPE {p}_ty AS (a int, b text);
             CREATE TABLE {p}_t (id int GENERATED ALWAYS AS IDENTITY, a int NOT NULL DEFAULT 5,
               g int GENERATED ALWAYS AS (a * 2) STORED, CONSTRAINT {p}_ck CHECK (a > 0));
             CREATE VIEW {p}_v AS SELECT id, a FROM {p}_t;
             ALTER VIEW {p}_v ALTER COLUMN a SET DEFAULT 7;
             CREATE SEQUENCE {p}_s;
             CREATE TABLE {p}_parent (id int) PARTITION BY RANGE (id);
             CREATE TABLE {p}_part PARTITION OF {p}_parent FOR VALUES FROM (0) TO (10);
             CREATE TEXT SEARCH CONFIGURATION {p}_ts (COPY = simple);"
        ))
        .await
        .unwrap();
    let dir = TempDir::new("pgmoat-drop-rules");
    std::fs::write(dir.path().join("rules.yaml"), rules()).unwrap();
    let yaml = config_yaml(pg, &format!("rules: {}\n", dir.path().display()));
    let gw = start_yaml(&yaml, test_env()).await;
    let cases = [
        format!("ALTER DOMAIN {p}_d DROP CONSTRAINT {p}_pos"),
        format!("ALTER DOMAIN {p}_d DROP DEFAULT"),
        format!("ALTER DOMAIN {p}_d DROP NOT NULL"),
        format!("ALTER TYPE {p}_ty DROP ATTRIBUTE b"),
        format!("ALTER TABLE {p}_t ALTER COLUMN a DROP DEFAULT"),
        format!("ALTER TABLE {p}_t ALTER COLUMN a DROP NOT NULL"),
        format!("ALTER TABLE {p}_t ALTER COLUMN id DROP IDENTITY"),
        format!("ALTER TABLE {p}_t ALTER COLUMN g DROP EXPRESSION"),
        format!("ALTER TABLE {p}_t DROP CONSTRAINT {p}_ck"),
        format!("ALTER TABLE {p}_t DROP COLUMN a"),
        format!("ALTER VIEW {p}_v ALTER COLUMN a DROP DEFAULT"),
        format!("ALTER TABLE {p}_parent DETACH PARTITION {p}_part"),
        format!("ALTER TEXT SEARCH CONFIGURATION {p}_ts DROP MAPPING FOR word"),
    ];
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut failed = Vec::new();
    for sql in &cases {
        let mark = unique("drop");
        let marked = format!("{sql} /* {mark} */");
        let msgs = raw.query(&marked).await;
        if refusal(&msgs).is_none() {
            failed.push(format!("{sql}: not refused: {:?}", answer(&msgs)));
            continue;
        }
        assert_never_ran(pg, &mark, sql).await;
    }
    assert_none_failed(&failed);
    // The objects are as made.
    let row = direct
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM pg_constraint WHERE conname IN ('{p}_pos', '{p}_ck')),
                        (SELECT typdefault FROM pg_type WHERE typname = '{p}_d'),
                        (SELECT typnotnull FROM pg_type WHERE typname = '{p}_d'),
                        (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                          WHERE c.relname IN ('{p}_t', '{p}_ty') AND a.attnum > 0 AND NOT a.attisdropped),
                        (SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                          WHERE c.relname = '{p}_part')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2, "constraints");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("1"),
        "domain default"
    );
    assert!(row.get::<_, bool>(2), "domain NOT NULL");
    assert_eq!(row.get::<_, i64>(3), 5, "columns and attributes");
    assert_eq!(row.get::<_, i64>(4), 1, "the partition");
}

/// An event trigger a DBA planted runs on every DDL statement: DDL through pgmoat is
/// judged with what its function does (in a database of its own: an event trigger
/// fires for every session of its database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_triggers_are_judged_with_the_ddl_they_fire_on() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let db = unique("hcev");
    pg.create_database(&db).await;
    let su = connect_url(&pg.conn_str(&pg.superuser, &pg.password, &db))
        .await
        .unwrap();
    su.batch_execute(&format!(
        "CREATE TABLE public.victim (id int);
         INSERT INTO public.victim VALUES (1), (2), (3);
         GRANT ALL ON public.victim TO {APP_ROLE};
         CREATE FUNCTION public.wipe_on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN IF TG_TAG = 'DROP TABLE' THEN RETURN; END IF; DELETE FROM public.victim; END $$;
         CREATE EVENT TRIGGER wipe_on_ddl ON ddl_command_start EXECUTE FUNCTION public.wipe_on_ddl();"
    ))
    .await
    .unwrap();
    let dir = TempDir::new("pgmoat-event-rules");
    std::fs::write(dir.path().join("rules.yaml"), rules()).unwrap();
    let yaml = config_yaml(pg, &format!("rules: {}\n", dir.path().display()))
        .replace("database: demo", &format!("database: {db}"));
    let gw = start_yaml(&yaml, test_env()).await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut failed = Vec::new();
    for ddl in [
        "CREATE TABLE made_here (a int)",
        "COMMENT ON TABLE public.victim IS 'x'",
    ] {
        let mark = unique("ddl");
        let sql = format!("{ddl} /* {mark} */");
        let msgs = raw.query(&sql).await;
        if refusal(&msgs).is_none() {
            failed.push(format!("{ddl}: not refused: {:?}", answer(&msgs)));
        } else {
            assert_never_ran(pg, &mark, &sql).await;
        }
    }
    // Statements that are not DDL do not fire it.
    raw.query_ok("SELECT count(*) FROM public.victim").await;
    let n: i64 = su
        .query_one("SELECT count(*) FROM public.victim", &[])
        .await
        .unwrap()
        .get(0);
    su.batch_execute("DROP EVENT TRIGGER wipe_on_ddl")
        .await
        .unwrap();
    assert_none_failed(&failed);
    assert_eq!(n, 3, "the victim's rows");
}
