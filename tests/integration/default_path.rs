//! The server's default search_path is `"$user", public`: a schema named after the
//! role pgmoat logs in as comes before `public`, and a database default can put any
//! schema there. A table the SQL names without a schema is then judged as one that
//! could be in any schema, as after `SET search_path` (THREATS B and E: names).

use crate::harness::*;

/// A database of its own (its schemas and defaults would change every other test's
/// names), set up by the superuser, with a gateway whose target reads it.
async fn gateway_on(setup: &str, blocked: &str) -> (String, TestGateway, TempDir) {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let db = unique("dpath");
    pg.create_database(&db).await;
    let su = connect_url(&pg.conn_str(&pg.superuser, &pg.password, &db))
        .await
        .unwrap();
    su.batch_execute(&setup.replace("{db}", &db)).await.unwrap();
    let dir = TempDir::new("pgmoat-dpath-rules");
    std::fs::write(
        dir.path().join("rules.yaml"),
        format!(
            "rules:
  - id: no-secrets
    when: {{ tables: [{blocked}] }}
    action: block
masks:
  - id: pay
    columns: [{APP_ROLE}.salaries.salary]
    method: null
"
        ),
    )
    .unwrap();
    let yaml = config_yaml(pg, &format!("rules: {}\n", dir.path().display()))
        .replace("database: demo", &format!("database: {db}"));
    (db, start_yaml(&yaml, test_env()).await, dir)
}

/// The server's answer to `sql` for the target's own role, straight (the premise).
async fn direct(db: &str, sql: &str) -> Vec<String> {
    let pg = crate::common::pg::shared();
    let c = connect_url(&pg.conn_str(APP_ROLE, APP_PW, db))
        .await
        .unwrap();
    c.simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

async fn refused(c: &tokio_postgres::Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => format!("{sql}: ran"),
        Err(e) => sqlstate(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_named_after_the_login_role_is_judged_as_read() {
    let (db, gw, _dir) = gateway_on(
        &format!(
            "CREATE SCHEMA {APP_ROLE} AUTHORIZATION {APP_ROLE};
         CREATE TABLE {APP_ROLE}.secrets (body text);
         INSERT INTO {APP_ROLE}.secrets VALUES ('the secret');
         CREATE TABLE {APP_ROLE}.salaries (name text, salary int);
         INSERT INTO {APP_ROLE}.salaries VALUES ('ann', 100);
         GRANT ALL ON ALL TABLES IN SCHEMA {APP_ROLE} TO {APP_ROLE};
         CREATE TABLE public.notes (body text);
         INSERT INTO public.notes VALUES ('a note');
         GRANT ALL ON public.notes TO {APP_ROLE};"
        ),
        &format!("\"{APP_ROLE}.secrets\""),
    )
    .await;
    // The premise: the server reads the role's own schema for a bare name.
    assert_eq!(
        direct(&db, "SELECT body FROM secrets").await,
        ["the secret"]
    );
    let c = gw.connect().await;
    assert_eq!(
        refused(&c, &format!("SELECT body FROM {APP_ROLE}.secrets")).await,
        "42501"
    );
    assert_eq!(
        refused(&c, "SELECT body FROM secrets").await,
        "42501",
        "a bare name the server resolves to {APP_ROLE}.secrets"
    );
    // The mask follows it too, and a table that is only in public still answers.
    let rows = c
        .simple_query("SELECT name, salary FROM salaries")
        .await
        .unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((r.get(0), r.get(1))),
            _ => None,
        })
        .expect("a row");
    assert_eq!(row, (Some("ann"), None), "salary masked (null)");
    let rows = c.simple_query("SELECT body FROM notes").await.unwrap();
    assert!(rows.iter().any(|m| matches!(m,
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("a note"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_default_search_path_is_judged_as_read() {
    let (db, gw, _dir) = gateway_on(
        "CREATE SCHEMA hr;
         CREATE TABLE hr.payroll (iban text);
         INSERT INTO hr.payroll VALUES ('DE89');
         GRANT USAGE ON SCHEMA hr TO PUBLIC;
         GRANT SELECT ON hr.payroll TO PUBLIC;
         ALTER DATABASE \"{db}\" SET search_path = hr, public;",
        "\"hr.*\"",
    )
    .await;
    assert_eq!(direct(&db, "SELECT iban FROM payroll").await, ["DE89"]);
    let c = gw.connect().await;
    assert_eq!(
        refused(&c, "SELECT iban FROM payroll").await,
        "42501",
        "a bare name the server resolves to hr.payroll"
    );
}

/// The common layout (no schema named after the role, the default path) keeps
/// judging bare names as `public.name`: a rule on another schema does not fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_layout_keeps_bare_names_in_public() {
    let (_db, gw, _dir) = gateway_on(
        &format!(
            "CREATE SCHEMA hr;
         CREATE TABLE hr.notes (body text);
         CREATE TABLE public.notes (body text);
         INSERT INTO public.notes VALUES ('public note');
         GRANT ALL ON public.notes TO {APP_ROLE};"
        ),
        "\"hr.*\"",
    )
    .await;
    let c = gw.connect().await;
    let rows = c.simple_query("SELECT body FROM notes").await.unwrap();
    assert!(rows.iter().any(|m| matches!(m,
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("public note"))));
}

/// `SET ROLE` moves `$user`: after it a bare name could be in the new role's schema, so
/// it is judged as after `SET search_path` (any schema a pattern could mean).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_moves_the_user_schema() {
    let role = unique("dprole");
    let (db, gw, _dir) = gateway_on(
        &format!(
            "CREATE ROLE {role}; GRANT {role} TO {APP_ROLE};
         CREATE SCHEMA {role} AUTHORIZATION {role};
         CREATE TABLE {role}.payroll (iban text);
         INSERT INTO {role}.payroll VALUES ('DE89');
         ALTER TABLE {role}.payroll OWNER TO {role};"
        ),
        "\"dprole_*.*\"",
    )
    .await;
    assert_eq!(
        direct(&db, &format!("SET ROLE {role}; SELECT iban FROM payroll")).await,
        ["DE89"]
    );
    let c = gw.connect().await;
    c.simple_query(&format!("SET ROLE {role}")).await.unwrap();
    assert_eq!(
        refused(&c, "SELECT iban FROM payroll").await,
        "42501",
        "after SET ROLE the bare name is {role}.payroll"
    );
}

/// A name a message reads after its own `SET search_path`, or that a function's body
/// reads on the path the function sets (`SET search_path = ...` in CREATE FUNCTION,
/// the usual hardening of SECURITY DEFINER functions), could be in any schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_set_inside_the_message_or_a_function_counts() {
    let (_db, gw, _dir) = gateway_on(
        &format!(
            "CREATE SCHEMA hideout;
         CREATE TABLE hideout.secret3 (v text);
         INSERT INTO hideout.secret3 VALUES ('hidden');
         GRANT USAGE ON SCHEMA hideout TO {APP_ROLE};
         GRANT SELECT ON hideout.secret3 TO {APP_ROLE};
         CREATE FUNCTION public.fsec() RETURNS SETOF text LANGUAGE sql
           SET search_path = hideout AS 'SELECT v FROM secret3';
         GRANT EXECUTE ON FUNCTION public.fsec() TO {APP_ROLE};"
        ),
        "\"hideout.*\"",
    )
    .await;
    let c = gw.connect().await;
    assert_eq!(
        refused(&c, "SELECT hideout.secret3.v FROM hideout.secret3").await,
        "42501"
    );
    assert_eq!(refused(&c, "SELECT * FROM fsec()").await, "42501");
    assert_eq!(
        refused(&c, "SET search_path = hideout; SELECT v FROM secret3").await,
        "42501"
    );
}
