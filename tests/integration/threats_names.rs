//! Issue 18, THREATS.md class H, differentially: names the server derives (column
//! names of expressions, alias lists, joins' merged columns, TABLESAMPLE, three-part
//! names, relations a message or session makes that shadow others, search_path),
//! temporary tables filled by code pgmoat does not follow, and what a message makes
//! that is provably clean (not over-masked). Each case runs directly and through
//! pgmoat for an identity with masks and one without, in fresh sessions, after the
//! same setup messages: the last result must be the server's except for the masked
//! columns, and no secret may appear in any row of any result.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::*;
use crate::masking::{fixture, Fixture, Rows};

#[derive(Clone, Copy, Debug)]
enum Want {
    /// Exactly the server's rows, for both identities.
    Same,
    /// For the identity with masks these columns (0-based) differ wherever the
    /// server's value is not NULL; every other column is the server's.
    Masked(&'static [usize]),
    /// [`Masked`], or refused (42501) for both identities: code pgmoat cannot read.
    Guarded(&'static [usize]),
}
use Want::*;

/// One case: messages sent first in the same session (each one message), then the
/// message whose last result is compared.
struct Case {
    setup: &'static [&'static str],
    sql: &'static str,
    want: Want,
}

const fn q(sql: &'static str, want: Want) -> Case {
    Case {
        setup: &[],
        sql,
        want,
    }
}

const fn s(setup: &'static [&'static str], sql: &'static str, want: Want) -> Case {
    Case { setup, sql, want }
}

/// Every result of a message (rows per statement that returned any).
async fn results(c: &Client, sql: &str) -> Result<Vec<Rows>, tokio_postgres::Error> {
    let mut out = Vec::new();
    let mut cur: Rows = Vec::new();
    for m in c.simple_query(sql).await? {
        match m {
            SimpleQueryMessage::Row(r) => {
                cur.push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            SimpleQueryMessage::CommandComplete(_) if !cur.is_empty() => {
                out.push(std::mem::take(&mut cur))
            }
            _ => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Runs the setup and the case in one session; every result's rows are checked for
/// secrets, the last one is returned.
async fn session_rows(f: &Fixture, c: &Client, case: &Case, masked: bool) -> Result<Rows, String> {
    for m in case.setup {
        let m = f.sql(m);
        if let Err(e) = c.batch_execute(&m).await {
            return Err(format!("setup {m}: {e:?}"));
        }
    }
    let sql = f.sql(case.sql);
    match results(c, &sql).await {
        Ok(all) => {
            if masked {
                for v in all.iter().flatten().flatten().flatten() {
                    leak(f, &sql, v)?;
                }
            }
            Ok(all.into_iter().last().unwrap_or_default())
        }
        Err(e) => {
            let text = format!("{e:?}");
            if masked {
                leak(f, &sql, &text)?;
            }
            Err(format!("{sql}: {text}"))
        }
    }
}

/// Any form of a secret in what the client received (see `Fixture::assert_clean`).
fn leak(f: &Fixture, sql: &str, text: &str) -> Result<(), String> {
    let lower = text.to_lowercase();
    match f.secrets.iter().find(|s| lower.contains(s.as_str())) {
        Some(s) => Err(format!("LEAK {sql}: a secret ({s}) came back in {text}")),
        None => Ok(()),
    }
}

/// Every case, with a line per failure (so one run shows all that fail); panics at
/// the end when any did.
async fn differential(f: &Fixture, cases: &[Case]) {
    let mut failed = Vec::new();
    for case in cases {
        let sql = f.sql(case.sql);
        // The identity with masks goes first: the others' temporary objects, listed
        // by the catalog pgmoat reads, would make names uncertain and mask its rows.
        let agent = f.agent().await;
        let masked = session_rows(f, &agent, case, true).await;
        let direct = f.pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
        let server = match session_rows(f, &direct, case, false).await {
            Ok(r) => r,
            Err(e) => panic!("the case does not run directly: {e}"),
        };
        assert!(!server.is_empty(), "{sql}: the case returns rows");
        let refused = |e: &str| matches!(case.want, Guarded(_)) && e.contains("E42501");
        let dba = f.dba().await;
        match session_rows(f, &dba, case, false).await {
            Ok(r) if r == server => {}
            Ok(r) => failed.push(format!("{sql}: without masks: {r:?} != {server:?}")),
            Err(e) if refused(&e) => {}
            Err(e) => failed.push(format!("without masks: {e}")),
        }
        let masked = match masked {
            Ok(r) => r,
            Err(e) if refused(&e) && !e.starts_with("LEAK") => continue,
            Err(e) => {
                failed.push(format!("with masks: {e}"));
                continue;
            }
        };
        if let Some(why) = compare(&masked, &server, case.want) {
            failed.push(format!("{sql}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn compare(got: &Rows, server: &Rows, want: Want) -> Option<String> {
    if got.len() != server.len() {
        return Some(format!("row count {} != {}", got.len(), server.len()));
    }
    let cols: &[usize] = match want {
        Same => &[],
        Masked(c) | Guarded(c) => c,
    };
    for (g, s) in got.iter().zip(server) {
        if g.len() != s.len() {
            return Some(format!("column count {} != {}", g.len(), s.len()));
        }
        for (i, (a, b)) in g.iter().zip(s).enumerate() {
            if cols.contains(&i) {
                if b.is_some() && a == b {
                    return Some(format!("column {i} not masked: {g:?}"));
                }
            } else if a != b {
                return Some(format!("column {i} over-masked: {g:?} (server {s:?})"));
            }
        }
    }
    None
}

/// The fixture, plus a clean table `{t}_c` and a schema `{t}_s` holding a view named
/// like a system one, made before the gateway first reads the catalog.
async fn names_fixture() -> Fixture {
    let f = fixture("").await;
    f.direct
        .batch_execute(&f.sql(
            "CREATE TABLE {t}_c (id int, note text);
             INSERT INTO {t}_c VALUES (1, 'one'), (2, 'two');
             CREATE SCHEMA {t}_s;
             CREATE VIEW {t}_s.pg_stats AS SELECT ssn AS attname FROM {t};",
        ))
        .await
        .unwrap();
    f
}

/// Postgres's names for expression columns (FigureColname), read by an outer query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_column_names_follow_the_server() {
    let f = names_fixture().await;
    differential(
        &f,
        &[
            q("SELECT upper(coalesce) FROM (SELECT coalesce(ssn, 'x') FROM {t}) s ORDER BY 1", Masked(&[0])),
            q(
                "SELECT coalesce || '!' FROM (SELECT coalesce(ssn, 'x'), name AS \"?column?\" FROM {t}) s ORDER BY 1",
                Masked(&[0]),
            ),
            q("SELECT lower(\"case\") FROM (SELECT CASE WHEN id > 0 THEN ssn END FROM {t}) s ORDER BY 1", Masked(&[0])),
            q(
                "SELECT upper(ssn) FROM (SELECT CASE WHEN id < 0 THEN 'none' ELSE ssn END FROM {t}) s ORDER BY 1",
                Masked(&[0]),
            ),
            q("SELECT greatest || '' FROM (SELECT greatest(ssn, '0') FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT least || '' FROM (SELECT least(email, 'zzz') FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT nullif || '' FROM (SELECT nullif(ssn, '') FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT \"varchar\" || '' FROM (SELECT (ssn || '')::varchar FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper(text) FROM (SELECT (ssn || '')::text FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper(ssn) FROM (SELECT ssn::varchar(20) FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper(ssn) FROM (SELECT ssn COLLATE \"C\" FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT int4 + 0 FROM (SELECT (salary + 1)::int4 FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT numeric + 0 FROM (SELECT (salary * 1)::numeric FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT \"row\"::text FROM (SELECT ROW(id, ssn) FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT \"array\"::text FROM (SELECT ARRAY[ssn, name] FROM {t}) s ORDER BY 1", Masked(&[0])),
            q(
                "SELECT \"array\"::text FROM (SELECT ARRAY(SELECT ssn FROM {t} i WHERE i.id = o.id) FROM {t} o) s ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(ssn) FROM (SELECT (SELECT ssn FROM {t} i WHERE i.id = o.id) FROM {t} o) s ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(x) FROM (SELECT (SELECT ssn AS x FROM {t} i WHERE i.id = o.id) FROM {t} o) s ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(ssn) FROM (SELECT (SELECT * FROM (SELECT ssn FROM {t} i WHERE i.id = o.id) x) FROM {t} o) s ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(ssn) FROM (SELECT (SELECT ssn FROM {t} i WHERE i.id = o.id UNION ALL SELECT 'x' WHERE false) FROM {t} o) s ORDER BY 1",
                Masked(&[0]),
            ),
            q("SELECT upper(ssn) FROM (SELECT (p).ssn FROM {t} p) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper(\"array\") FROM (SELECT (ARRAY[ssn])[1] FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT xmlelement::text FROM (SELECT xmlelement(name a, ssn) FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("WITH c AS (SELECT coalesce(ssn, '') FROM {t}) SELECT upper(coalesce) FROM c ORDER BY 1", Masked(&[0])),
            q("SELECT upper(coalesce), id FROM (SELECT coalesce(ssn, ''), id FROM {t}) s ORDER BY 2", Masked(&[0])),
            q("SELECT upper(s::text) FROM (SELECT coalesce(ssn, '') FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper((s).coalesce) FROM (SELECT coalesce(ssn, '') FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper((x).ssn) FROM (SELECT p AS x FROM {t} p) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper(p::text) FROM {t} p ORDER BY 1", Masked(&[0])),
            q("SELECT upper(concat_ws(',', p.*)) FROM {t} p ORDER BY 1", Masked(&[0])),
            q(
                "SELECT upper(row_to_json(s.*)::text) FROM (SELECT coalesce(ssn, '') FROM {t}) s ORDER BY 1",
                Masked(&[0]),
            ),
            q("SELECT upper((s).a) FROM (SELECT name AS a, ssn AS b FROM {t}) s ORDER BY 1", Same),
            q("SELECT upper((s).b) FROM (SELECT name AS a, ssn AS b FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT (p).ssn || '', (p).name FROM {t} p ORDER BY 2", Masked(&[0])),
            q("SELECT upper(s.\"?column?\") FROM (SELECT ssn || '' FROM {t}) s ORDER BY 1", Masked(&[0])),
            q("SELECT upper(U&\"\\0073sn\") FROM {t} ORDER BY 1", Masked(&[0])),
            q(
                "WITH d AS (UPDATE {t} SET note = note WHERE id = 1 RETURNING coalesce(ssn, ''))
                 SELECT upper(coalesce) FROM d",
                Masked(&[0]),
            ),
            q(
                "SELECT (SELECT upper(coalesce) FROM (SELECT 1 AS a) i) FROM (SELECT coalesce(ssn, '') FROM {t}) o ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(name), upper(u) FROM {t} t JOIN LATERAL unnest(ARRAY[ssn]) u ON true ORDER BY 1",
                Masked(&[1]),
            ),
            // A relation whose columns pgmoat does not know does not hide outer ones.
            q("SELECT (SELECT upper(ssn) FROM generate_series(1, 1) g) FROM {t} ORDER BY 1", Masked(&[0])),
            q(
                "SELECT (SELECT upper(ssn) FROM pg_class WHERE relname = 'pg_class') FROM {t} ORDER BY 1",
                Masked(&[0]),
            ),
            q("SELECT upper(x) FROM demo.public.{t}_ssn(1) x", Masked(&[0])),
            q("SELECT demo.public.{t}_ssn(2) || ''", Masked(&[0])),
            q(
                "INSERT INTO {t} (id, note) VALUES (1, 'first') ON CONFLICT (id)
                 DO UPDATE SET note = EXCLUDED.note RETURNING id, note",
                Same,
            ),
            // Benign: the derived name reaches a clean column.
            q("SELECT coalesce || '' FROM (SELECT coalesce(name, 'x') FROM {t}) s ORDER BY 1", Same),
            q("SELECT upper(x) FROM (SELECT ssn AS \"X\", name AS x FROM {t}) s ORDER BY 1", Same),
            q("SELECT \"exists\" FROM (SELECT EXISTS (SELECT 1 FROM {t} WHERE ssn LIKE '1%')) s", Same),
            q("SELECT upper(name) AS n FROM {t} ORDER BY n", Same),
            q("SELECT upper(\"case\") FROM (SELECT CASE WHEN id > 1 THEN name END FROM {t}) s ORDER BY 1", Same),
        ],
    )
    .await;
}

/// Alias lists, joins' merged columns, TABLESAMPLE, qualified and quoted names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_aliases_and_qualified_names_follow_the_server() {
    let f = names_fixture().await;
    differential(
        &f,
        &[
            q("SELECT upper(z) FROM ({t} a JOIN {t} b USING (id)) AS j(k, x, z) ORDER BY 1", Masked(&[0])),
            q(
                "SELECT upper(n) FROM ((SELECT id, ssn FROM {t}) a JOIN (SELECT id, name FROM {t}) b USING (id)) AS j(k, n) ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(name) FROM ((SELECT id, ssn FROM {t}) a JOIN (SELECT id, name FROM {t}) b USING (id)) AS j(k, n) ORDER BY 1",
                Same,
            ),
            q(
                "SELECT upper(ssn) FROM (SELECT id, name AS ssn FROM {t}) a RIGHT JOIN (SELECT id, ssn FROM {t}) b USING (ssn) ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(ssn) FROM (SELECT name AS ssn FROM {t}) a FULL JOIN (SELECT ssn FROM {t}) b USING (ssn) ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(ssn) FROM (SELECT id, name AS ssn FROM {t}) a NATURAL RIGHT JOIN (SELECT id, ssn FROM {t}) b ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(x.ssn) FROM (SELECT name AS ssn FROM {t}) a RIGHT JOIN (SELECT ssn FROM {t}) b USING (ssn) AS x ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT * FROM (SELECT id, name FROM {t}) a JOIN (SELECT id, ssn FROM {t}) b USING (id) ORDER BY 1",
                Masked(&[2]),
            ),
            q(
                "SELECT j.*, upper(j.ssn) FROM ((SELECT id, name FROM {t}) a NATURAL JOIN (SELECT id, ssn FROM {t}) b) j ORDER BY 1",
                Masked(&[2, 3]),
            ),
            q(
                "SELECT upper(j.name), j.id FROM ({t} a CROSS JOIN (SELECT 1 AS one) o) j ORDER BY 2",
                Same,
            ),
            q("SELECT upper(email) FROM (SELECT name, email FROM {t}) s(x) ORDER BY 1", Masked(&[0])),
            q("SELECT upper(name) FROM {t} AS p(id, x, name) ORDER BY 1", Masked(&[0])),
            q("SELECT upper(x) FROM {t} AS p(id, x) ORDER BY 1", Same),
            q(
                "SELECT upper(v) FROM {t}, XMLTABLE('/a' PASSING xmlelement(name a, ssn) COLUMNS v text PATH '.') ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(ssn) FROM jsonb_populate_recordset(null::{t}, (SELECT jsonb_agg(p) FROM {t} p)) ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(unnest) FROM unnest(ARRAY['a', 'b', 'c'], ARRAY(SELECT ssn FROM {t} ORDER BY id)) AS f(a) ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT upper(b) FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY(SELECT ssn FROM {t} ORDER BY id))) AS f(a, b) ORDER BY 1",
                Masked(&[0]),
            ),
            q("SELECT upper(ssn) FROM {t} TABLESAMPLE SYSTEM (100) ORDER BY 1", Masked(&[0])),
            q("SELECT upper(s.email) FROM {t} s TABLESAMPLE BERNOULLI (100) REPEATABLE (7) ORDER BY 1", Masked(&[0])),
            q("SELECT upper(name) FROM {t} TABLESAMPLE SYSTEM (100) ORDER BY 1", Same),
            q("SELECT upper(ssn) FROM demo.public.{t} ORDER BY 1", Masked(&[0])),
            q("SELECT upper(public.{t}.ssn) FROM public.{t} ORDER BY 1", Masked(&[0])),
            q("SELECT upper(demo.public.{t}.ssn) FROM demo.public.{t} ORDER BY 1", Masked(&[0])),
            q("SELECT upper(demo.public.{t}.name) FROM demo.public.{t} ORDER BY 1", Same),
            q("SELECT upper(ssn) FROM ONLY {t} ORDER BY 1", Masked(&[0])),
            q("SELECT upper(ssn) FROM {t}* ORDER BY 1", Masked(&[0])),
            q("SELECT upper(\"ssn\") FROM \"{t}\" ORDER BY 1", Masked(&[0])),
            q("SELECT upper(\"SSN\") FROM (SELECT ssn AS \"SSN\" FROM {t}) s ORDER BY 1", Masked(&[0])),
        ],
    )
    .await;
}

/// Relations a message or session makes that shadow others (system ones included:
/// pg_temp comes before pg_catalog), and search_path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_made_earlier_resolve_as_the_server_does() {
    let f = names_fixture().await;
    differential(
        &f,
        &[
            // Benign: the catalog's own, and the clean table itself (first: other
            // sessions' temporary {t}_c, listed by the catalog until they end, would
            // make the name uncertain).
            q("SELECT upper(note) FROM {t}_c ORDER BY 1", Same),
            // No `::text`: another test's user cast to text makes every cast to text
            // uncertain (masked) while it exists in the shared database.
            q("SELECT upper(relname) FROM pg_class WHERE relname = '{t}_c'", Same),
            q("SELECT c FROM {t}_c c ORDER BY id", Same),
            // A user function whose body makes nothing leaves names as they were.
            q("SELECT {t}_ssn(1) IS NOT NULL; SELECT upper(note) FROM {t}_c ORDER BY 1", Same),
            q("SELECT p FROM {t} p ORDER BY id", Masked(&[0])),
            q(
                "CREATE TEMP VIEW pg_available_extensions AS SELECT ssn AS name FROM {t};
                 SELECT upper(name) FROM pg_available_extensions ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "CREATE TEMP VIEW {t}_c AS SELECT id, ssn AS note FROM {t};
                 SELECT upper(note) FROM {t}_c ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SET search_path = pg_temp, public;
                 CREATE TEMP VIEW {t}_c AS SELECT id, ssn AS note FROM {t};
                 SELECT upper(note) FROM {t}_c ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "CREATE TEMP VIEW pg_stats AS SELECT ssn AS attname FROM {t};
                 SELECT upper(attname) FROM pg_stats ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "CREATE TEMP VIEW {t}_x AS SELECT id, ssn AS note FROM {t}; ALTER VIEW {t}_x RENAME TO {t}_c;
                 SELECT upper(note) FROM {t}_c ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "DO $$BEGIN CREATE TEMP VIEW {t}_c AS SELECT id, ssn AS note FROM {t}; END$$;
                 SELECT upper(note) FROM {t}_c ORDER BY 1",
                Guarded(&[0]),
            ),
            s(
                &["CREATE TEMP VIEW pg_available_extensions AS SELECT ssn AS name FROM {t}"],
                "SELECT upper(name) FROM pg_available_extensions ORDER BY 1",
                Masked(&[0]),
            ),
            s(
                &["CREATE TEMP VIEW {t}_c AS SELECT id, ssn AS note FROM {t}"],
                "SELECT upper(note) FROM {t}_c ORDER BY 1",
                Masked(&[0]),
            ),
            s(
                &["CREATE TEMP VIEW pg_stats AS SELECT ssn AS attname FROM {t}"],
                "SELECT upper(attname) FROM pg_stats ORDER BY 1",
                Masked(&[0]),
            ),
            s(
                &["SET search_path = {t}_s, pg_catalog"],
                "SELECT upper(attname) FROM pg_stats ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SET search_path = {t}_s, pg_catalog; SELECT upper(attname) FROM pg_stats ORDER BY 1",
                Masked(&[0]),
            ),
            // pg_temp last: the table the message made is not the one read.
            q(
                "SET search_path = public, pg_temp; CREATE TEMP TABLE {t} (ssn text);
                 INSERT INTO pg_temp.{t} VALUES ('x'); SELECT upper(ssn) FROM {t} ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "SELECT set_config('search_path', 'public, pg_temp', false); CREATE TEMP TABLE {t} (ssn text);
                 INSERT INTO pg_temp.{t} VALUES ('x'); SELECT upper(ssn) FROM {t} ORDER BY 1",
                Masked(&[0]),
            ),
            q(
                "CREATE TEMP VIEW {t}_c AS SELECT id, name AS note FROM {t}; SELECT note, upper(note) FROM {t}_c ORDER BY 1",
                Same,
            ),
        ],
    )
    .await;
}

/// Temporary tables filled inside DO blocks and functions (class 5, in part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_tables_filled_by_code_stay_masked() {
    let f = names_fixture().await;
    differential(
        &f,
        &[
            q(
                "CREATE TEMP TABLE l1 (a text); DO $$BEGIN INSERT INTO l1 SELECT ssn FROM {t}; END$$;
                 SELECT upper(a) FROM l1 ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "DO $$BEGIN CREATE TEMP TABLE l2 AS SELECT ssn AS a FROM {t}; END$$;
                 SELECT upper(a) FROM l2 ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "DO $$BEGIN CREATE TEMP TABLE l2b AS SELECT ssn AS a FROM {t}; END$$;
                 SELECT * FROM l2b ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "CREATE FUNCTION pg_temp.l4() RETURNS int LANGUAGE plpgsql AS
                   $$BEGIN CREATE TEMP TABLE l4 AS SELECT ssn AS a FROM {t}; RETURN 1; END$$;
                 SELECT pg_temp.l4(); SELECT upper(a) FROM l4 ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "CREATE FUNCTION pg_temp.l5() RETURNS int LANGUAGE sql AS
                   $$CREATE TEMP TABLE l5 AS SELECT ssn AS a FROM {t}; SELECT 1$$;
                 SELECT pg_temp.l5(); SELECT upper(a) FROM l5 ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "CREATE TEMP TABLE l7 (a text);
                 CREATE FUNCTION pg_temp.l7f() RETURNS int LANGUAGE sql AS 'INSERT INTO l7 SELECT ssn FROM {t}; SELECT 1';
                 SELECT pg_temp.l7f(); SELECT upper(a) FROM l7 ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "CREATE TEMP TABLE l9 (a text);
                 CREATE FUNCTION pg_temp.l9f() RETURNS int LANGUAGE plpgsql AS
                   $$BEGIN INSERT INTO l9 SELECT email FROM {t}; RETURN 1; END$$;
                 SELECT pg_temp.l9f(); SELECT upper(a) FROM l9 ORDER BY 1",
                Guarded(&[0]),
            ),
            q(
                "CREATE TEMP TABLE l10 (a text); CREATE TEMP TABLE l10s (x int);
                 CREATE FUNCTION pg_temp.l10f() RETURNS trigger LANGUAGE plpgsql AS
                   $$BEGIN INSERT INTO l10 SELECT ssn FROM {t}; RETURN NEW; END$$;
                 CREATE TRIGGER l10t AFTER INSERT ON l10s FOR EACH ROW EXECUTE FUNCTION pg_temp.l10f();
                 INSERT INTO l10s VALUES (1); SELECT upper(a) FROM l10 ORDER BY 1",
                Guarded(&[0]),
            ),
            s(
                &[
                    "CREATE TEMP TABLE l8 (a text)",
                    "DO $$BEGIN INSERT INTO l8 SELECT email FROM {t}; END$$",
                ],
                "SELECT upper(a) FROM l8 ORDER BY 1",
                Guarded(&[0]),
            ),
            s(
                &[
                    "CREATE FUNCTION pg_temp.l12() RETURNS int LANGUAGE sql AS
                       $$CREATE TEMP TABLE l12 AS SELECT email AS a FROM {t}; SELECT 1$$",
                    "SELECT pg_temp.l12()",
                ],
                "SELECT upper(a) FROM l12 ORDER BY 1",
                Guarded(&[0]),
            ),
            s(
                &[
                    "CREATE TEMP TABLE l14 (a text)",
                    "CREATE FUNCTION pg_temp.l14f() RETURNS int LANGUAGE sql AS
                       'INSERT INTO l14 SELECT ssn FROM {t}; SELECT 1'",
                ],
                "SELECT pg_temp.l14f(); SELECT upper(a) FROM l14 ORDER BY 1",
                Guarded(&[0]),
            ),
            s(
                &["CREATE FUNCTION pg_temp.l13() RETURNS int LANGUAGE plpgsql AS
                     $$BEGIN INSERT INTO l13 SELECT ssn FROM {t}; RETURN 1; END$$"],
                "CREATE TEMP TABLE l13 (a text); SELECT pg_temp.l13(); SELECT upper(a) FROM l13 ORDER BY 1",
                Guarded(&[0]),
            ),
            s(
                &["DO $$BEGIN CREATE TEMP TABLE l11 AS SELECT ssn AS a FROM {t}; END$$"],
                "SELECT a || '' FROM l11 ORDER BY 1",
                Guarded(&[0]),
            ),
        ],
    )
    .await;
}

/// What a message makes and pgmoat can prove clean reads back as the server has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_message_makes_clean_is_not_over_masked() {
    let f = names_fixture().await;
    differential(
        &f,
        &[
            q(
                "CREATE TEMP TABLE o1 (a int, b text); INSERT INTO o1 VALUES (1, 'x');
                 SELECT a + 1, upper(b), o1 FROM o1",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o2 (a int, b text); INSERT INTO o2 SELECT id, name FROM {t};
                 SELECT o2.*, p.name FROM o2 JOIN {t} p ON p.id = o2.a ORDER BY 1",
                Same,
            ),
            q("CREATE TEMP TABLE o4 (a int); INSERT INTO o4 VALUES (1), (2); TABLE o4", Same),
            q("CREATE TEMP TABLE o5 (a int); INSERT INTO o5 VALUES (1) RETURNING a, a * 2", Same),
            q(
                "CREATE TEMP TABLE o6 (a int CHECK (a > 0), b int GENERATED ALWAYS AS (a * 2) STORED);
                 INSERT INTO o6 (a) VALUES (3); SELECT a, b FROM o6",
                Same,
            ),
            q(
                "CREATE FUNCTION pg_temp.o7(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1';
                 SELECT pg_temp.o7(41)",
                Same,
            ),
            q(
                "CREATE FUNCTION pg_temp.o8() RETURNS int LANGUAGE sql IMMUTABLE RETURN 42; SELECT pg_temp.o8()",
                Same,
            ),
            q(
                "CREATE FUNCTION pg_temp.o9() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 42; END;
                 SELECT pg_temp.o9()",
                Same,
            ),
            q(
                "CREATE FUNCTION pg_temp.o10() RETURNS TABLE (a int, b text) LANGUAGE sql AS $$SELECT 1, 'x'$$;
                 SELECT * FROM pg_temp.o10()",
                Same,
            ),
            q(
                "CREATE FUNCTION pg_temp.o21(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a * b';
                 SELECT pg_temp.o21(6, 7), pg_temp.o21(2, 3) AS x",
                Same,
            ),
            q(
                "CREATE FUNCTION pg_temp.o22(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';
                 SELECT pg_temp.o22(1)",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o14 (a int, b text); INSERT INTO o14 VALUES (1, 'x'), (2, 'y');
                 SELECT b FROM o14 ORDER BY a",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o15 (a int); INSERT INTO o15 VALUES (1), (1), (2);
                 SELECT a, count(*) FROM o15 GROUP BY a HAVING a > 0 ORDER BY a",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o16 (a int); INSERT INTO o16 VALUES (1);
                 WITH w AS (SELECT a FROM o16) SELECT a * 10 FROM w",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o18 (id serial PRIMARY KEY, b text NOT NULL DEFAULT 'z');
                 INSERT INTO o18 DEFAULT VALUES; SELECT id, b FROM o18",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o19 (a int); INSERT INTO o19 VALUES (1); UPDATE o19 SET a = a + 1 RETURNING a",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o20 (a text); INSERT INTO o20 VALUES ('x');
                 SELECT upper(a) FROM o20 t2 ORDER BY a",
                Same,
            ),
            q(
                "CREATE TEMP VIEW o23 AS SELECT id, name FROM {t}; SELECT name, upper(name) FROM o23 ORDER BY 1",
                Same,
            ),
            q(
                "CREATE TEMP VIEW o24 AS SELECT id, ssn, name FROM {t}; SELECT id, ssn, name FROM o24 ORDER BY 1",
                Masked(&[1]),
            ),
            q(
                "CREATE TEMP TABLE o30 AS SELECT id, name FROM {t};
                 SELECT id, upper(name), name, o30 FROM o30 ORDER BY 1",
                Same,
            ),
            q(
                "SELECT id, name AS n INTO TEMP o31 FROM {t}; SELECT * FROM o31 ORDER BY 1",
                Same,
            ),
            q(
                "CREATE TEMP TABLE o32 (k, v) AS SELECT id, coalesce(name, '') FROM {t};
                 SELECT k, upper(v) FROM o32 ORDER BY 1",
                Same,
            ),
            q(
                "CREATE INDEX ON {t}_c (id); SELECT upper(note) FROM {t}_c ORDER BY 1",
                Same,
            ),
            // A migration changing one table twice in a message is not refused.
            q(
                "ALTER TABLE {t}_c ADD COLUMN z int; ALTER TABLE {t}_c DROP COLUMN z;
                 SELECT count(*) FROM {t}_c",
                Same,
            ),
            q(
                "CREATE FUNCTION pg_temp.o33() RETURNS text LANGUAGE sql AS 'SELECT name FROM {t} WHERE id = 1';
                 SELECT pg_temp.o33(), upper(pg_temp.o33())",
                Same,
            ),
            s(
                &["CREATE FUNCTION pg_temp.o34() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 34; END$$"],
                "SELECT pg_temp.o34()",
                Same,
            ),
            s(
                &["CREATE FUNCTION pg_temp.o11() RETURNS int LANGUAGE sql AS 'SELECT 7'"],
                "SELECT pg_temp.o11()",
                Same,
            ),
        ],
    )
    .await;
}

/// A read pipelined behind DDL of the same session (two Query messages sent back to
/// back, as psycopg's pipeline mode does): pgmoat judges the read before the server
/// has run the DDL, so its catalog cannot show the temporary view that now shadows a
/// clean table. A review found the read returned the SSNs, and that the catalog
/// reloaded at that moment stayed for the rest of the session. The read is refused;
/// once the DDL is answered the catalog is read again and the same read is masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_pipelined_behind_ddl_is_not_judged_on_the_old_catalog() {
    let f = fixture("").await;
    let t = &f.t;
    let shadow = format!("{t}_tt");
    f.direct
        .batch_execute(&format!(
            "CREATE TABLE {shadow} (x text); INSERT INTO {shadow} VALUES ('plain')"
        ))
        .await
        .unwrap();
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    // The clean table is read once (the catalog knows it; a plain judgment is kept).
    let before = data_rows(
        &raw.query_ok(&format!("SELECT upper(x) FROM {shadow}"))
            .await,
    );
    assert!(
        before.len() == 1 && before[0].ends_with("PLAIN"),
        "{before:?}"
    );
    let read = format!("SELECT upper(x) FROM {shadow}");
    let mut both = message(
        b'Q',
        format!("CREATE TEMP VIEW {shadow} AS SELECT ssn AS x FROM {t}\0").as_bytes(),
    );
    both.extend(message(b'Q', format!("{read}\0").as_bytes()));
    raw.send(&both).await;
    let ddl = raw.until_ready().await;
    assert_eq!(tags(&ddl), "CZ", "the view is made");
    let pipelined = raw.until_ready().await;
    let err = pipelined
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("the pipelined read answered {:?}", data_rows(&pipelined)));
    assert_eq!(err.field(b'C'), "55000", "{}", err.field(b'M'));
    // Sent after the answer: the view's rows, masked.
    let after = data_rows(&raw.query_ok(&read).await);
    assert_eq!(after.len(), 3, "{after:?}");
    for row in &after {
        f.assert_clean(&read, row);
    }
}

/// DDL inside a transaction block is not visible to pgmoat's own catalog connection
/// until the transaction ends: a read that could see what it changed waits for the
/// COMMIT (a review read the SSNs through a temporary view shadowing a clean table,
/// without pipelining), and after the COMMIT the catalog is read again. Reads of
/// anything else, and DDL making new names, go on as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_in_a_transaction_is_followed_to_its_end() {
    let f = fixture("").await;
    let t = &f.t;
    let shadow = format!("{t}_tx");
    f.direct
        .batch_execute(&format!(
            "CREATE TABLE {shadow} (x text); INSERT INTO {shadow} VALUES ('plain')"
        ))
        .await
        .unwrap();
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let read = format!("SELECT upper(x) FROM {shadow}");
    raw.query_ok(&read).await;
    raw.query_ok("BEGIN").await;
    raw.query_ok(&format!(
        "CREATE TEMP VIEW {shadow} AS SELECT ssn AS x FROM {t}"
    ))
    .await;
    // A new name, and a table the DDL did not touch: as usual.
    raw.query_ok(&format!("CREATE TEMP TABLE {t}_new (a int)"))
        .await;
    raw.query_ok(&format!("SELECT name FROM {t} ORDER BY id"))
        .await;
    let msgs = raw.query(&read).await;
    let err = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("inside the transaction: {:?}", data_rows(&msgs)));
    assert_eq!(err.field(b'C'), "55000", "{}", err.field(b'M'));
    raw.query("ROLLBACK").await;
    raw.query_ok("BEGIN").await;
    raw.query_ok(&format!(
        "CREATE TEMP VIEW {shadow} AS SELECT ssn AS x FROM {t}"
    ))
    .await;
    raw.query_ok("COMMIT").await;
    let after = data_rows(&raw.query_ok(&read).await);
    assert_eq!(after.len(), 3, "{after:?}");
    for row in &after {
        f.assert_clean(&read, row);
    }
}

/// A function whose body names a relation without a schema reads, when it runs, the
/// caller's temporary relation of that name if there is one (pg_temp comes first): a
/// temporary view over masked data shadowing the clean table the body meant is masked
/// through the function too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_body_reads_the_callers_temporary_relations() {
    let f = fixture("").await;
    let t = &f.t;
    f.direct
        .batch_execute(&format!(
            "CREATE TABLE {t}_clean (x text); INSERT INTO {t}_clean VALUES ('plain');
             CREATE FUNCTION {t}_rd() RETURNS SETOF text LANGUAGE sql AS 'SELECT x FROM {t}_clean'"
        ))
        .await
        .unwrap();
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let call = format!("SELECT {t}_rd()");
    let before = data_rows(&raw.query_ok(&call).await);
    assert!(
        before.len() == 1 && before[0].ends_with("plain"),
        "{before:?}"
    );
    raw.query_ok(&format!(
        "CREATE TEMP VIEW {t}_clean AS SELECT ssn AS x FROM {t}"
    ))
    .await;
    let msgs = raw.query(&call).await;
    for row in data_rows(&msgs) {
        f.assert_clean(&call, &row);
    }
}
