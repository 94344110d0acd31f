//! Masking, differentially: the same statement directly and through pgmoat. Masked
//! columns differ for every non-NULL value, no secret appears anywhere in the response
//! in any form (plain, without separators, reversed, base64, md5), other columns are
//! identical, and statements that would launder masked values are refused.
//! THREATS.md classes E (result masking) and F (wire protocol).

use std::collections::HashMap;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::common::pg::TestPg;
use crate::harness::*;

pub const DBA: &str = "dba-1";
pub const DBA_PW: &str = "dba-secret-1";

pub struct Fixture {
    pub pg: &'static TestPg,
    pub gw: TestGateway,
    /// The table (unique per test), a view over it and a SQL function reading it.
    pub t: String,
    /// Every form of every secret value that must never come back.
    pub secrets: Vec<String>,
    pub direct: Client,
    _rules: TempDir,
}

pub fn mask_rules(t: &str, extra: &str) -> String {
    format!(
        "masks:
  - id: pii
    columns: [{t}.ssn, \"*.card_number\"]
    method: partial
    keep_last: 4
    unless: {{ groups: [dba] }}
  - id: contact
    columns: [{t}.email]
    method: email
    unless: {{ groups: [dba] }}
  - id: pay
    columns: [{t}.salary]
    method: redact
    unless: {{ groups: [dba] }}
{extra}"
    )
}

/// A table with fake PII, created directly (behind the gateway's back, before its
/// first catalog load), and a gateway whose rules mask it for everyone but `dba`.
pub async fn fixture(extra_rules: &str) -> Fixture {
    fixture_with(extra_rules, "").await
}

/// [`fixture`] with more top-level config (e.g. an audit store).
pub async fn fixture_with(extra_rules: &str, extra_yaml: &str) -> Fixture {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let t = unique("people");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text, ssn text, email text,
                card_number varchar(25), salary int, note text);
             INSERT INTO {t} VALUES
               (1, 'Ada', '123-45-6789', 'ada.lovelace@example.com', '4111 1111 1111 1111', 91000, 'first'),
               (2, 'Bob', '987-65-4321', 'bob.builder@example.org', '5500 0000 0000 0004', 52000, NULL),
               (3, 'Cy', '555-12-3456', 'cy.young@example.net', NULL, NULL, 'third');
             CREATE VIEW {t}_v AS SELECT id, ssn AS tax_id, name FROM {t};
             CREATE FUNCTION {t}_ssn(i int) RETURNS text LANGUAGE sql AS
               'SELECT ssn FROM {t} WHERE id = i';
             ANALYZE {t};"
        ))
        .await
        .unwrap();
    let mut secrets = Vec::new();
    for row in direct
        .query(
            &format!(
                "SELECT v, md5(v), encode(v::bytea, 'base64'), reverse(v), translate(v, '- ', ''),
                        reverse(translate(v, '- ', '')), upper(v), split_part(v, '@', 1)
                 FROM (SELECT ssn FROM {t} UNION ALL SELECT email FROM {t}
                       UNION ALL SELECT card_number FROM {t} WHERE card_number IS NOT NULL) s(v)"
            ),
            &[],
        )
        .await
        .unwrap()
    {
        for i in 0..8 {
            let v: String = row.get(i);
            secrets.push(v.to_lowercase());
        }
    }
    let rules = TempDir::new("pgmoat-mask-rules");
    std::fs::write(rules.path().join("masks.yaml"), mask_rules(&t, extra_rules)).unwrap();
    let yaml = config_yaml(
        pg,
        &format!("rules: {}\n{extra_yaml}", rules.path().display()),
    )
    .replace(
        "      groups: [agents]\n",
        &format!("      groups: [agents]\n    - name: {DBA}\n      password_env: DBA_PW\n      groups: [dba]\n"),
    );
    let mut env = test_env();
    env.insert("DBA_PW".into(), DBA_PW.into());
    let gw = start_yaml(&yaml, env).await;
    Fixture {
        pg,
        gw,
        t,
        secrets,
        direct,
        _rules: rules,
    }
}

pub type Rows = Vec<Vec<Option<String>>>;

pub async fn rows(c: &Client, sql: &str) -> Result<Rows, tokio_postgres::Error> {
    let mut out = Vec::new();
    for m in c.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(r) = m {
            out.push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect());
        }
    }
    Ok(out)
}

impl Fixture {
    pub async fn agent(&self) -> Client {
        self.gw.connect().await
    }

    pub async fn dba(&self) -> Client {
        self.gw.connect_as(DBA, DBA_PW, "demo").await.unwrap()
    }

    /// The statement with `{t}` filled in.
    pub fn sql(&self, s: &str) -> String {
        s.replace("{t}", &self.t)
    }

    /// Panics naming the secret if any form of one appears in `text`.
    pub fn assert_clean(&self, what: &str, text: &str) {
        let lower = text.to_lowercase();
        for s in &self.secrets {
            assert!(
                !lower.contains(s.as_str()),
                "{what}: a secret ({s}) came back in {text}"
            );
        }
    }

    pub fn assert_rows_clean(&self, what: &str, rows: &Rows) {
        for r in rows {
            for v in r.iter().flatten() {
                self.assert_clean(what, v);
            }
        }
    }

    /// Run as the agent: refused with 42501 by a mask, and no secret in the error.
    pub async fn blocked_by_mask(&self, c: &Client, sql: &str) {
        let sql = self.sql(sql);
        let e = c.simple_query(&sql).await.expect_err(&sql);
        assert_eq!(code(&e), "42501", "{sql}: {e}");
        let msg = e.as_db_error().unwrap().message().to_owned();
        assert!(
            msg.starts_with("pgmoat: blocked by mask \""),
            "{sql}: {msg}"
        );
        self.assert_clean(&sql, &format!("{e:?}"));
    }

    /// Run as the agent: no secret in the result, and as many rows and columns as the
    /// same statement returns directly (which must run there too).
    pub async fn check(&self, c: &Client, sql: &str) -> Rows {
        let got = self.agent_rows(c, sql).await;
        let sql = self.sql(sql);
        let want = rows(&self.direct, &sql)
            .await
            .unwrap_or_else(|e| panic!("{sql} directly: {e:?}"));
        assert_eq!(got.len(), want.len(), "{sql}: row count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len(), "{sql}: column count");
        }
        got
    }

    /// [`Fixture::check`] for a statement that only runs in the agent's own session
    /// (its prepared statements, its temporary functions): `n` rows.
    pub async fn check_in_session(&self, c: &Client, sql: &str, n: usize) -> Rows {
        let got = self.agent_rows(c, sql).await;
        assert_eq!(got.len(), n, "{}: row count", self.sql(sql));
        got
    }

    /// Run as the agent: must succeed, with no secret in the error if it does not nor
    /// in the rows.
    async fn agent_rows(&self, c: &Client, sql: &str) -> Rows {
        let sql = self.sql(sql);
        let got = match rows(c, &sql).await {
            Ok(r) => r,
            Err(e) => {
                let text = format!("{e:?}");
                self.assert_clean(&sql, &text);
                panic!("{sql}: {e}");
            }
        };
        self.assert_rows_clean(&sql, &got);
        got
    }
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_else(|| format!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_aliased_and_star_references_are_masked() {
    let f = fixture("").await;
    let c = f.agent().await;
    let got = f
        .check(
            &c,
            "SELECT id, ssn, email, card_number, salary FROM {t} ORDER BY id",
        )
        .await;
    assert_eq!(
        got[0],
        vec![
            Some("1".into()),
            Some("***-**-6789".into()),
            Some("a***@example.com".into()),
            Some("**** **** **** 1111".into()),
            None
        ]
    );
    assert_eq!(got[2][3], None, "NULL stays NULL");
    for sql in [
        "SELECT ssn AS name FROM {t}",
        "SELECT * FROM {t}",
        "SELECT p.* FROM {t} p",
        "TABLE {t}",
        "SELECT name, ssn FROM {t} p WHERE p.id > 0",
        "SELECT x FROM (SELECT ssn AS x FROM {t}) s",
        "SELECT \"SSN\" FROM (SELECT ssn AS \"SSN\" FROM {t}) s",
        "SELECT ssn::text, ssn::varchar FROM {t}",
    ] {
        f.check(&c, sql).await;
    }
    // Unrelated columns are untouched (no over-masking).
    let sql = f.sql("SELECT id, name, note FROM {t} ORDER BY id");
    assert_eq!(
        rows(&c, &sql).await.unwrap(),
        rows(&f.direct, &sql).await.unwrap()
    );
    let star = rows(&c, &f.sql("SELECT * FROM {t} ORDER BY id"))
        .await
        .unwrap();
    let direct = rows(&f.direct, &f.sql("SELECT * FROM {t} ORDER BY id"))
        .await
        .unwrap();
    for (s, d) in star.iter().zip(&direct) {
        for i in [0, 1, 6] {
            assert_eq!(s[i], d[i], "column {i} is not masked");
        }
        for i in [2, 3] {
            assert_ne!(s[i], d[i], "column {i} is masked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_rows_json_and_aggregates_are_masked() {
    let f = fixture("").await;
    let c = f.agent().await;
    for sql in [
        "SELECT p FROM {t} p",
        "SELECT (p).ssn FROM {t} p",
        "SELECT row_to_json(p) FROM {t} p",
        "SELECT to_jsonb(p) FROM {t} p",
        "SELECT json_agg(p) FROM {t} p",
        "SELECT jsonb_build_object('s', ssn) FROM {t}",
        "SELECT array_agg(ssn) FROM {t}",
        "SELECT string_agg(ssn, ',') FROM {t}",
        "SELECT p, g FROM {t} p, generate_series(1, 2) g",
    ] {
        f.check(&c, sql).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expressions_over_masked_columns_are_masked() {
    let f = fixture("").await;
    let c = f.agent().await;
    for sql in [
        "SELECT ssn || '' FROM {t}",
        "SELECT upper(ssn), lower(email) FROM {t}",
        "SELECT reverse(ssn) FROM {t}",
        "SELECT translate(ssn, '-', '') FROM {t}",
        "SELECT encode(ssn::bytea, 'base64') FROM {t}",
        "SELECT md5(ssn) FROM {t}",
        "SELECT substr(ssn, 1, 3) || substr(ssn, 5, 2) || substr(ssn, 8) FROM {t}",
        "SELECT ssn::char(5) FROM {t}",
        "SELECT CASE WHEN id > 0 THEN ssn END FROM {t}",
        "SELECT coalesce(card_number, 'none') FROM {t}",
    ] {
        let got = f.check(&c, sql).await;
        // A value computed from a masked column is redacted whole, never partly kept.
        for r in &got {
            if let Some(v) = &r[0] {
                assert!(v == "****" || sql.contains("lower"), "{sql}: {v}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_operations_subqueries_ctes_and_lateral_are_masked() {
    let f = fixture("").await;
    let c = f.agent().await;
    for sql in [
        "SELECT name FROM {t} UNION ALL SELECT ssn FROM {t}",
        "SELECT note FROM {t} UNION SELECT email FROM {t}",
        "SELECT ssn FROM {t} INTERSECT SELECT ssn FROM {t}",
        "SELECT ssn FROM {t} EXCEPT SELECT name FROM {t}",
        "SELECT (SELECT ssn FROM {t} x WHERE x.id = y.id) FROM {t} y",
        "SELECT id, (SELECT max(ssn) FROM {t}) FROM {t}",
        "WITH c AS (SELECT ssn AS a FROM {t}) SELECT a FROM c",
        "WITH c(z) AS (SELECT ssn FROM {t}) SELECT * FROM c",
        "WITH RECURSIVE r(v, n) AS (SELECT ssn, 1 FROM {t} UNION ALL SELECT v, n + 1 FROM r WHERE n < 2) SELECT v FROM r",
        "SELECT s FROM (SELECT ssn FROM {t}) d(s)",
        "SELECT v.x FROM {t}, LATERAL (VALUES (ssn)) v(x)",
        "SELECT * FROM {t} a JOIN {t} b USING (id)",
        "SELECT * FROM (VALUES (1)) v(i), LATERAL (SELECT ssn FROM {t} WHERE id = v.i) l",
    ] {
        f.check(&c, sql).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_returning_functions_views_and_function_bodies_are_masked() {
    let f = fixture("").await;
    let c = f.agent().await;
    for sql in [
        "SELECT jsonb_each_text(to_jsonb(p)) FROM {t} p",
        "SELECT * FROM {t} p, jsonb_each_text(to_jsonb(p))",
        "SELECT unnest(ARRAY[ssn, email]) FROM {t}",
        "SELECT jsonb_array_elements_text(jsonb_build_array(ssn)) FROM {t}",
        "SELECT * FROM unnest((SELECT array_agg(ssn) FROM {t}))",
        "SELECT * FROM {t}_v",
        "SELECT tax_id FROM {t}_v",
        "SELECT v FROM {t}_v v",
        "SELECT {t}_ssn(1)",
        "SELECT * FROM {t}_ssn(2)",
    ] {
        f.check(&c, sql).await;
    }
    // The view's unmasked columns are untouched.
    let sql = f.sql("SELECT id, name FROM {t}_v ORDER BY id");
    assert_eq!(
        rows(&c, &sql).await.unwrap(),
        rows(&f.direct, &sql).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_prepared_cursors_temp_views_and_returning() {
    let f = fixture("").await;
    let c = f.agent().await;
    c.batch_execute(&f.sql("PREPARE p1 AS SELECT ssn FROM {t}"))
        .await
        .unwrap();
    f.check_in_session(&c, "EXECUTE p1", 3).await;
    c.batch_execute(&f.sql("BEGIN; DECLARE cur CURSOR FOR SELECT email, ssn FROM {t}"))
        .await
        .unwrap();
    let got = rows(&c, "FETCH ALL FROM cur").await.unwrap();
    f.assert_rows_clean("FETCH", &got);
    assert_eq!(got.len(), 3);
    c.batch_execute("COMMIT").await.unwrap();
    c.batch_execute(&f.sql("CREATE TEMP VIEW tv AS SELECT ssn AS z, name FROM {t}"))
        .await
        .unwrap();
    let got = rows(&c, "SELECT z, name FROM tv ORDER BY name")
        .await
        .unwrap();
    f.assert_rows_clean("temp view", &got);
    assert_eq!(got[0][1].as_deref(), Some("Ada"), "unmasked column intact");
    let got = rows(
        &c,
        &f.sql("UPDATE {t} SET note = note WHERE id = 1 RETURNING ssn, name"),
    )
    .await
    .unwrap();
    f.assert_rows_clean("RETURNING", &got);
    assert_eq!(got[0][1].as_deref(), Some("Ada"));
    let got = rows(
        &c,
        &f.sql("WITH d AS (UPDATE {t} SET note = note WHERE id = 2 RETURNING *) SELECT * FROM d"),
    )
    .await
    .unwrap();
    f.assert_rows_clean("CTE RETURNING", &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn laundering_masked_values_is_refused() {
    let f = fixture("").await;
    let c = f.agent().await;
    for sql in [
        "CREATE TABLE {t}_copy AS SELECT ssn FROM {t}",
        "SELECT ssn INTO {t}_copy2 FROM {t}",
        "CREATE MATERIALIZED VIEW {t}_mv AS SELECT ssn FROM {t}",
        "INSERT INTO {t} (id, note) SELECT id + 100, ssn FROM {t}",
        "UPDATE {t} SET note = ssn WHERE id = 1",
        "UPDATE {t} SET note = (SELECT ssn FROM {t} WHERE id = 2) WHERE id = 1",
        "COPY {t} TO STDOUT",
        "COPY (SELECT ssn FROM {t}) TO STDOUT",
        "COPY {t} (ssn) TO '/tmp/pgmoat-laundered'",
        "PREPARE p2 AS INSERT INTO {t} (id, note) SELECT id + 200, email FROM {t}",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
    // Nothing was copied: the notes are what they were.
    let notes = rows(
        &f.direct,
        &f.sql("SELECT count(*) FROM {t} WHERE note LIKE '%-%'"),
    )
    .await
    .unwrap();
    assert_eq!(notes[0][0].as_deref(), Some("0"));
    // Copying unmasked columns is fine; so is COPY of them.
    c.batch_execute(&f.sql("CREATE TABLE {t}_names AS SELECT id, name FROM {t}"))
        .await
        .unwrap();
    let out = c
        .copy_out(
            f.sql("COPY (SELECT id, name FROM {t} ORDER BY id) TO STDOUT")
                .as_str(),
        )
        .await
        .unwrap();
    futures_util::pin_mut!(out);
    let first = futures_util::StreamExt::next(&mut out)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"1\tAda\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_error_messages_do_not_leak() {
    let f = fixture("").await;
    let c = f.agent().await;
    let got = f
        .check(
            &c,
            "SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE tablename = '{t}'",
        )
        .await;
    assert!(!got.is_empty(), "statistics exist");
    for (sql, sqlstate) in [
        ("SELECT ssn::int FROM {t}", "22P02"),
        ("SELECT email::int FROM {t} WHERE id = 2", "22P02"),
        ("SELECT 1 FROM {t} WHERE ssn::date IS NULL", "22008"),
        // A masked value copied into an unmasked column: refused by pgmoat.
        (
            "INSERT INTO {t} (id, name) SELECT 1, ssn FROM {t} WHERE id = 1",
            "42501",
        ),
    ] {
        let sql = f.sql(sql);
        let e = c.simple_query(&sql).await.expect_err(&sql);
        assert_eq!(code(&e), sqlstate, "{sql}: {e}");
        let db = e.as_db_error().unwrap();
        // pgmoat's refusal, or the server's error with its text withheld (issue 18).
        assert!(
            db.message().starts_with("pgmoat: blocked") == (sqlstate == "42501"),
            "{sql}: {}",
            db.message()
        );
        let all = format!(
            "{} {:?} {:?} {:?}",
            db.message(),
            db.detail(),
            db.hint(),
            db.where_()
        );
        f.assert_clean(&sql, &all);
    }
    // SQL held in a string is refused (unanalysable), and a table created behind the
    // gateway's back is masked until the catalog is read again, never leaked.
    for (sql, sqlstate) in [
        (
            "SELECT query_to_xml('SELECT ssn FROM {t}', true, false, '')",
            "42501",
        ),
        // Not there yet: the server's own error.
        ("SELECT * FROM {t}_later", "42P01"),
    ] {
        let sql = f.sql(sql);
        let e = rows(&c, &sql).await.expect_err(&sql);
        assert_eq!(code(&e), sqlstate, "{sql}: {e}");
        f.assert_clean(&sql, &format!("{e:?}"));
    }
    f.direct
        .batch_execute(&f.sql("CREATE TABLE {t}_later AS SELECT card_number FROM {t}"))
        .await
        .unwrap();
    let later = rows(&c, &f.sql("SELECT * FROM {t}_later")).await.unwrap();
    f.assert_rows_clean("a table the catalog has not seen", &later);
    assert_eq!(
        later.len(),
        3,
        "masked by the *.card_number glob once the catalog is read again"
    );
    // A notice raised with a masked value is withheld.
    c.batch_execute(&f.sql(
        "CREATE FUNCTION {t}_tell() RETURNS int LANGUAGE plpgsql AS $$
         DECLARE s text; BEGIN SELECT ssn INTO s FROM {t} WHERE id = 1; RAISE NOTICE 'ssn is %', s; RETURN 1; END $$",
    ))
    .await
    .unwrap();
    let (client, mut conn) =
        tokio_postgres::connect(&f.gw.url(AGENT, AGENT_PW, "demo"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                let _ = tx.send(format!("{} {:?}", n.message(), n.detail()));
            }
        }
    });
    client
        .simple_query(&f.sql("SELECT {t}_tell()"))
        .await
        .unwrap();
    let notice = notices.recv().await.expect("a notice");
    f.assert_clean("RAISE NOTICE", &notice);
    client
        .simple_query(&f.sql(
            "DO $$ BEGIN RAISE NOTICE 'got %', (SELECT string_agg(ssn, ',') FROM {t}); END $$",
        ))
        .await
        .unwrap();
    let notice = notices.recv().await.expect("a notice from DO");
    f.assert_clean("DO ... RAISE NOTICE", &notice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_binary_and_pipelining_are_masked() {
    let f = fixture("").await;
    let c = f.agent().await;
    // tokio-postgres asks for binary results.
    let stmt = c
        .prepare(&f.sql("SELECT id, ssn, salary, name FROM {t} WHERE id = $1"))
        .await
        .unwrap();
    for id in [1i32, 2, 1] {
        let row = c.query_one(&stmt, &[&id]).await.unwrap();
        let ssn: String = row.get(1);
        let salary: Option<i32> = row.get(2);
        f.assert_clean("binary", &ssn);
        assert!(ssn.starts_with("***-**-"), "{ssn}");
        assert_eq!(salary, None, "an int column masked in binary becomes NULL");
        let name: String = row.get(3);
        assert!(!name.is_empty());
    }
    // Pipelined: several Parse/Bind/Execute before one Sync.
    let q1 = f.sql("SELECT email FROM {t} WHERE id = 1");
    let q2 = f.sql("SELECT name FROM {t} WHERE id = 1");
    let q3 = f.sql("SELECT card_number FROM {t} WHERE id = 2");
    let (a, b, d) = futures_util::join!(c.query(&q1, &[]), c.query(&q2, &[]), c.query(&q3, &[]));
    let email: String = a.unwrap()[0].get(0);
    assert_eq!(email, "a***@example.com");
    let name: String = b.unwrap()[0].get(0);
    assert_eq!(
        name, "Ada",
        "the unmasked statement between masked ones is intact"
    );
    let card: String = d.unwrap()[0].get(0);
    assert_eq!(card, "**** **** **** 0004");
    // A statement that fails mid-pipeline does not confuse what follows.
    let bad = c.query("SELECT 1/0", &[]);
    let good = c.query(q1.as_str(), &[]);
    let (bad, good) = futures_util::join!(bad, good);
    assert_eq!(code(&bad.unwrap_err()), "22012");
    let v: String = good.expect("the statement after the failed one runs")[0].get(0);
    assert_eq!(v, "a***@example.com", "after error");
    let again: String = c.query_one(q1.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(again, "a***@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_groups_see_real_values_and_psql_sees_masks() {
    let f = fixture("").await;
    let dba = f.dba().await;
    let sql = f.sql("SELECT * FROM {t} ORDER BY id");
    assert_eq!(
        rows(&dba, &sql).await.unwrap(),
        rows(&f.direct, &sql).await.unwrap(),
        "dba is exempt: byte-for-byte the direct result"
    );
    let conn = format!(
        "host=127.0.0.1 port={} user={AGENT} dbname=demo",
        f.gw.addr.port()
    );
    let out = f.pg.psql_c(&conn, Some(AGENT_PW), &sql);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.assert_clean("psql", &text);
    assert!(text.contains("***-**-6789"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detectors_catch_secrets_in_free_text_and_errors() {
    let f = fixture(
        "detect:
  - id: cards
    kind: credit_card
    method: partial
    keep_last: 4
  - id: ssns
    kind: us_ssn
    method: redact
  - id: emails
    kind: email
    method: email
    unless: { groups: [dba] }
",
    )
    .await;
    let c = f.agent().await;
    let got = rows(
        &c,
        "SELECT 'call me: 4111-1111-1111-1111 or 123-45-6789', 'write to ada.lovelace@example.com', 42",
    )
    .await
    .unwrap();
    assert_eq!(
        got[0][0].as_deref(),
        Some("call me: ****-****-****-1111 or ****")
    );
    assert_eq!(got[0][1].as_deref(), Some("write to a***@example.com"));
    assert_eq!(got[0][2].as_deref(), Some("42"));
    // The value echoed by an error is scanned too.
    let e = c
        .simple_query("SELECT '123-45-6789'::int")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22P02", "{e}");
    f.assert_clean("error", e.as_db_error().unwrap().message());
    // Detectors follow `unless` too: dba is exempt from the email one only.
    let dba = f.dba().await;
    let got = rows(&dba, "SELECT 'ada.lovelace@example.com', '123-45-6789'")
        .await
        .unwrap();
    assert_eq!(got[0][0].as_deref(), Some("ada.lovelace@example.com"));
    assert_eq!(got[0][1].as_deref(), Some("****"));
    // COPY TO STDOUT text is scanned.
    let mut copy_out = Vec::new();
    {
        use futures_util::StreamExt;
        let s = c
            .copy_out("COPY (SELECT 'x 4111111111111111 y') TO STDOUT")
            .await
            .unwrap();
        futures_util::pin_mut!(s);
        while let Some(chunk) = s.next().await {
            copy_out.extend_from_slice(&chunk.unwrap());
        }
    }
    assert_eq!(String::from_utf8_lossy(&copy_out), "x ************1111 y\n");
}

/// Rows stay byte-identical when nothing is masked, through a session that masks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_results_are_identical() {
    let f = fixture("").await;
    let c = f.agent().await;
    let mut seen = HashMap::new();
    for sql in [
        "SELECT id, name, note FROM {t} ORDER BY id",
        "SELECT count(*), max(id) FROM {t}",
        "SELECT generate_series(1, 1000) AS n, 'x' || generate_series(1, 1000) AS s",
        "SELECT relname FROM pg_class WHERE relname = '{t}'",
    ] {
        let sql = f.sql(sql);
        let got = rows(&c, &sql).await.unwrap();
        assert_eq!(got, rows(&f.direct, &sql).await.unwrap(), "{sql}");
        seen.insert(sql, got.len());
    }
    assert_eq!(seen.len(), 4);
}

/// A PREPARE, Parse or DECLARE the server refused or skipped leaves the old statement
/// under its name, so its masks stay: the name only changes hands when the server says
/// so (CommandComplete, ParseComplete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_server_kept_keeps_its_masks() {
    let f = fixture("").await;
    let c = f.agent().await;
    // SQL level: the second PREPARE fails (the name is taken).
    c.batch_execute(&f.sql("PREPARE p2 AS SELECT ssn || '' FROM {t}"))
        .await
        .unwrap();
    let e = c
        .batch_execute(&f.sql("PREPARE p2 AS SELECT name FROM {t}"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P05");
    f.check_in_session(&c, "EXECUTE p2", 3).await;
    // Defined and used in one message still masks.
    f.check_in_session(&c, "PREPARE p3 AS SELECT ssn || '' FROM {t}; EXECUTE p3", 3)
        .await;
    // Cursors: the second DECLARE fails, FETCH reads the first.
    c.batch_execute(&f.sql("BEGIN; DECLARE k CURSOR FOR SELECT ssn || '' FROM {t}"))
        .await
        .unwrap();
    let e = c
        .batch_execute(&f.sql("DECLARE k CURSOR FOR SELECT name FROM {t}"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P03");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute(&f.sql("BEGIN; DECLARE k CURSOR FOR SELECT ssn || '' FROM {t}"))
        .await
        .unwrap();
    // In one message: the DECLARE fails, so the FETCH never runs; nothing leaks.
    let e = c
        .batch_execute(&f.sql("DECLARE k CURSOR FOR SELECT name FROM {t}; FETCH ALL FROM k"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P03", "{e}");
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute(&f.sql("BEGIN; DECLARE k2 CURSOR FOR SELECT ssn || '' FROM {t}"))
        .await
        .unwrap();
    let e = c
        .batch_execute(&f.sql("SAVEPOINT a; DECLARE k2 CURSOR FOR SELECT name FROM {t}"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P03");
    c.batch_execute("ROLLBACK TO a").await.unwrap();
    let got = rows(&c, "FETCH ALL FROM k2").await.unwrap();
    assert_eq!(got.len(), 3);
    f.assert_rows_clean("cursor kept by the server", &got);
    c.batch_execute("ROLLBACK").await.unwrap();

    // Protocol level.
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let (parse, run) = (parse_msg, bind_execute_sync);
    let sync = message(b'S', b"");
    let derived = f.sql("SELECT ssn || '' FROM {t}");
    // A named statement: the second Parse is refused.
    let mut m = parse("s1", &derived);
    m.extend(&sync);
    m.extend(parse("s1", &f.sql("SELECT name FROM {t}")));
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    let r = raw.until_ready().await;
    assert_eq!(r[0].field(b'C'), "42P05", "{r:?}");
    raw.send(&run("s1")).await;
    let r = raw.until_ready().await;
    let got = data_rows(&r);
    assert_eq!(got.len(), 3, "{r:?}");
    for row in &got {
        f.assert_clean("named statement kept by the server", row);
    }
    // The unnamed statement: a Parse skipped after an error leaves the old one.
    let mut m = parse("", &derived);
    m.extend(&sync);
    m.extend(parse("bad", "SELECT * FROM no_such_table_here"));
    m.extend(parse("", &f.sql("SELECT name FROM {t}")));
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "EZ", "{r:?}");
    raw.send(&run("")).await;
    let r = raw.until_ready().await;
    let got = data_rows(&r);
    assert_eq!(got.len(), 3, "{r:?}");
    for row in &got {
        f.assert_clean("unnamed statement kept by the server", row);
    }
    // And a Parse the server takes does change what the name is.
    let mut m = parse("", "SELECT 'plain'::text");
    m.extend(run(""));
    raw.send(&m).await;
    let r = raw.until_ready().await;
    assert!(data_rows(&r)[0].contains("plain"), "{r:?}");
}

/// THREATS E, session state: SQL-level PREPARE/DEALLOCATE/DECLARE and protocol
/// Parse/Bind/Close name statements and portals in one namespace on the server; a name
/// redefined on one level is redefined for the other. (Each of the four cases below
/// returned the real values before the masker followed that.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_protocol_statements_share_one_namespace() {
    let f = fixture("").await;
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let sync = message(b'S', b"");
    // Every row back, and none of them with a secret.
    let three_clean = |what: &str, r: &[Msg]| {
        let got = data_rows(r);
        assert_eq!(got.len(), 3, "{what}: {r:?}");
        for row in &got {
            f.assert_clean(what, row);
        }
    };
    let clean = f.sql("SELECT name || '' FROM {t} ORDER BY id");
    let derived = f.sql("SELECT ssn || '' FROM {t} ORDER BY id");
    for (drop, name) in [
        ("DEALLOCATE s9", "s9"),
        ("DEALLOCATE ALL", "s10"),
        ("DISCARD ALL", "s11"),
    ] {
        // A clean statement by Parse, dropped and redefined in SQL over masked data.
        let mut m = parse_msg(name, &clean);
        m.extend(&sync);
        raw.send(&m).await;
        assert_eq!(tags(&raw.until_ready().await), "1Z");
        raw.query_ok(drop).await;
        raw.query_ok(&format!("PREPARE {name} AS {derived}")).await;
        raw.send(&bind_execute_sync(name)).await;
        let r = raw.until_ready().await;
        three_clean(&format!("{name} redefined after {drop}"), &r);
    }
    // And the other way: SQL EXECUTE of a name a Parse redefined.
    raw.query_ok(&format!("PREPARE s12 AS {clean}")).await;
    let mut m = message(b'C', b"Ss12\0");
    m.extend(parse_msg("s12", &derived));
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "31Z");
    three_clean("s12 redefined by Parse", &raw.query("EXECUTE s12").await);
    // Portals and cursors share theirs too.
    let bind = |portal: &str, stmt: &str| {
        let mut b = format!("{portal}\0{stmt}\0").into_bytes();
        b.extend([0, 0, 0, 0, 0, 0]);
        message(b'B', &b)
    };
    raw.query_ok("BEGIN").await;
    let mut m = parse_msg("c1", &clean);
    m.extend(bind("k9", "c1"));
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "12Z");
    raw.query_ok(&format!("CLOSE k9; DECLARE k9 CURSOR FOR {derived}"))
        .await;
    let mut m = message(b'E', b"k9\0\0\0\0\0");
    m.extend(&sync);
    raw.send(&m).await;
    three_clean("portal k9 redefined by DECLARE", &raw.until_ready().await);
    raw.query_ok(&format!("DECLARE k10 CURSOR FOR {clean}"))
        .await;
    let mut m = message(b'C', b"Pk10\0");
    m.extend(parse_msg("c2", &derived));
    m.extend(bind("k10", "c2"));
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "312Z");
    three_clean(
        "cursor k10 redefined by Bind",
        &raw.query("FETCH ALL FROM k10").await,
    );
    raw.query_ok("COMMIT").await;
}

/// Values carried out of a result where masking never looks: a notification's payload,
/// a setting read back later. Found in review; each statement below leaked before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_cannot_leave_through_notifications_or_settings() {
    let f = fixture("").await;
    let c = f.agent().await;
    for sql in [
        "SELECT pg_notify('leak', email || ' ' || ssn) FROM {t} WHERE id = 1",
        "SELECT set_config('application_name', ssn, false) FROM {t} WHERE id = 1",
        "SELECT set_config('my.v', string_agg(email || reverse(ssn), ','), false) FROM {t}",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
    // Nothing was set.
    let got = rows(&c, "SELECT current_setting('my.v', true)")
        .await
        .unwrap();
    assert_eq!(got[0][0], None);
    // Clean values pass.
    rows(
        &c,
        "SELECT set_config('my.v', 'plain', false), pg_notify('ok', 'hi')",
    )
    .await
    .unwrap();
    let got = rows(&c, "SELECT current_setting('my.v')").await.unwrap();
    assert_eq!(got[0][0].as_deref(), Some("plain"));
}

const SSN_DETECTOR: &str = "detect:
  - id: ssns
    kind: us_ssn
    method: redact
";

/// The detectors see notification payloads and reported settings, as they see rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detectors_scan_notifications_and_reported_settings() {
    let f = fixture(SSN_DETECTOR).await;
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    raw.query_ok("LISTEN pgmoat_c").await;
    let got = raw.query_ok("NOTIFY pgmoat_c, 'call 123-45-6789'").await;
    let note = got
        .iter()
        .find(|m| m.tag == b'A')
        .expect("the notification");
    let text = String::from_utf8_lossy(&note.body);
    assert!(text.contains("pgmoat_c"), "{text}");
    assert!(!text.contains("123-45-6789"), "payload scanned: {text}");
    let got = raw.query_ok("SET application_name = 'x 987-65-4321'").await;
    let set = got.iter().find(|m| m.tag == b'S').expect("ParameterStatus");
    let text = String::from_utf8_lossy(&set.body);
    assert!(text.starts_with("application_name\0"), "{text}");
    assert!(!text.contains("987-65-4321"), "setting scanned: {text}");
}

/// What a function, an operator, a cast or an aggregate returns is traced through the
/// functions behind it, and a function pgmoat cannot see into is masked whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_followed_through_functions_operators_casts_and_aggregates() {
    let f = fixture("").await;
    let c = f.agent().await;
    c.batch_execute(&f.sql(
        "CREATE FUNCTION {t}_inner() RETURNS text LANGUAGE sql AS
           'SELECT email FROM {t} WHERE id = 1';
         CREATE FUNCTION {t}_outer() RETURNS text LANGUAGE sql AS 'SELECT {t}_inner()';
         CREATE FUNCTION {t}_opf(int) RETURNS text LANGUAGE sql AS
           'SELECT ssn FROM {t} WHERE id = $1';
         CREATE OPERATOR ### (RIGHTARG = int, FUNCTION = {t}_opf);
         CREATE FUNCTION {t}_sf(text, int) RETURNS text LANGUAGE sql AS
           'SELECT coalesce($1, '''') || (SELECT ssn FROM {t} WHERE id = $2)';
         CREATE AGGREGATE {t}_agg(int) (SFUNC = {t}_sf, STYPE = text);
         CREATE TYPE {t}_tok AS (i int);
         CREATE FUNCTION {t}_tok_text({t}_tok) RETURNS text LANGUAGE sql AS
           'SELECT email FROM {t} WHERE id = ($1).i';
         CREATE CAST ({t}_tok AS text) WITH FUNCTION {t}_tok_text({t}_tok);",
    ))
    .await
    .unwrap();
    // Made behind the gateway's back, after its catalog was read: unknown to it.
    f.direct
        .batch_execute(&f.sql(
            "CREATE FUNCTION {t}_direct() RETURNS text LANGUAGE sql AS
               'SELECT ssn FROM {t} WHERE id = 2'",
        ))
        .await
        .unwrap();
    for sql in [
        "SELECT {t}_outer()",
        "SELECT demo.public.{t}_inner()",
        "SELECT ### 1",
        "SELECT {t}_agg(id) FROM {t}",
        "SELECT ROW(1)::{t}_tok::text",
        "SELECT {t}_direct()",
        "SELECT u.row_to_json FROM (SELECT id, email FROM {t}) u",
        "SELECT w.f FROM (SELECT 1) x, LATERAL (SELECT {t}_outer() AS f) w",
    ] {
        let got = f.check(&c, sql).await;
        assert!(!got.is_empty(), "{sql}");
    }
    // A temporary function is never in the catalog pgmoat reads.
    c.batch_execute(&f.sql(
        "CREATE FUNCTION pg_temp.{t}_tmp() RETURNS text LANGUAGE sql AS
           'SELECT email FROM {t} WHERE id = 3'",
    ))
    .await
    .unwrap();
    f.check_in_session(&c, "SELECT pg_temp.{t}_tmp()", 1).await;
    // Built-ins and system columns stay clean: no over-masking of ordinary calls.
    let sql = f.sql("SELECT upper(name), length(name), p.xmin, p.ctid FROM {t} p WHERE id = 1");
    let got = rows(&c, &sql).await.unwrap();
    assert_eq!(got, rows(&f.direct, &sql).await.unwrap());
    assert_eq!(got[0][0].as_deref(), Some("ADA"));
}

/// Changing a masked table's definition could copy its values out of reach of the
/// mask (a generated column, a rule, a rename): refused. Its errors are scrubbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_of_masked_tables_cannot_be_changed_to_copy_values() {
    let f = fixture("").await;
    let c = f.agent().await;
    c.batch_execute(&f.sql("CREATE TABLE {t}_sink (v text)"))
        .await
        .unwrap();
    for sql in [
        "ALTER TABLE {t} ADD COLUMN e2 text GENERATED ALWAYS AS (reverse(email)) STORED",
        "ALTER TABLE {t} RENAME COLUMN email TO contact",
        "ALTER TABLE {t} RENAME TO {t}_renamed",
        "CREATE RULE {t}_r AS ON UPDATE TO {t} DO ALSO INSERT INTO {t}_sink VALUES (NEW.email)",
        "CREATE RULE {t}_r2 AS ON INSERT TO {t}_sink DO ALSO INSERT INTO {t}_sink SELECT ssn FROM {t}",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
    let got = rows(&f.direct, &f.sql("SELECT count(*) FROM {t}_sink"))
        .await
        .unwrap();
    assert_eq!(got[0][0].as_deref(), Some("0"));
    // A write that fails quotes the row it would have made: scrubbed.
    c.batch_execute(&f.sql("ALTER TABLE {t}_sink ADD COLUMN n int"))
        .await
        .unwrap();
    f.direct
        .batch_execute(&f.sql("ALTER TABLE {t} ALTER COLUMN name SET NOT NULL"))
        .await
        .unwrap();
    let sql = f.sql("UPDATE {t} SET name = NULL WHERE id = 1");
    let e = c.simple_query(&sql).await.expect_err(&sql);
    assert_eq!(code(&e), "23502", "{e}");
    f.assert_clean("not-null error", &format!("{e:?}"));
}

/// Binary values of non-text types (arrays, json) carry text as it is: the detectors
/// scan them, and a hit withholds the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detectors_scan_binary_values_of_any_type() {
    let f = fixture(SSN_DETECTOR).await;
    let c = f.agent().await;
    // tokio-postgres asks for binary results.
    let row = c
        .query_one(
            "SELECT ARRAY['x 123-45-6789'], convert_to('123-45-6789', 'UTF8'), ARRAY['plain']",
            &[],
        )
        .await
        .unwrap();
    let a: Option<Vec<String>> = row.get(0);
    let b: Option<Vec<u8>> = row.get(1);
    let plain: Option<Vec<String>> = row.get(2);
    assert_eq!(a, None, "an array holding an SSN is withheld");
    assert_eq!(b, None, "a bytea holding an SSN is withheld");
    assert_eq!(plain, Some(vec!["plain".to_string()]));
}

/// A function can close a cursor and open another of the same name: pgmoat forgets
/// what it knew of cursor names when code it does not follow runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_name_reused_by_a_function_is_masked() {
    let f = fixture("").await;
    let c = f.agent().await;
    c.batch_execute(&f.sql(
        "CREATE FUNCTION {t}_open(n text) RETURNS refcursor LANGUAGE plpgsql AS $$
         DECLARE c refcursor := n;
         BEGIN OPEN c FOR SELECT reverse(email) FROM {t}; RETURN c; END $$",
    ))
    .await
    .unwrap();
    for steps in [
        [
            "DECLARE kk CURSOR FOR SELECT name FROM {t}",
            "CLOSE kk",
            "SELECT {t}_open('kk')",
        ],
        [
            "DECLARE kk CURSOR FOR SELECT name FROM {t}",
            "SELECT 1",
            "CLOSE kk; SELECT {t}_open('kk')",
        ],
    ] {
        c.batch_execute("BEGIN").await.unwrap();
        for s in steps {
            c.batch_execute(&f.sql(s)).await.unwrap();
        }
        let got = rows(&c, "FETCH ALL FROM kk").await.unwrap();
        assert_eq!(got.len(), 3);
        f.assert_rows_clean("FETCH after reuse", &got);
        c.batch_execute("COMMIT").await.unwrap();
    }
    // A cursor nobody reopened keeps its (clean) columns.
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute(&f.sql("DECLARE kk CURSOR FOR SELECT name FROM {t} ORDER BY id"))
        .await
        .unwrap();
    let got = rows(&c, "FETCH 1 FROM kk").await.unwrap();
    assert_eq!(got[0][0].as_deref(), Some("Ada"));
    c.batch_execute("COMMIT").await.unwrap();
}
