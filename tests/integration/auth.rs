//! Who gets in, with which settings, and how pgmoat logs in upstream.

use std::process::Command;

use crate::common::pg;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_get_28p01() {
    let (_pg, gw) = start().await;
    let e = gw.connect_as(AGENT, "wrong", "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("password authentication failed for user \"agent-1\""));
    let e = gw.connect_as("nobody-here", "x", "demo").await.unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "28P01",
        "unknown users look exactly like wrong passwords"
    );
    // The held database password is not a client password.
    let e = gw.connect_as(APP_ROLE, APP_PW, "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    assert!(
        gw.metrics
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_target_gets_3d000_naming_it() {
    let (_pg, gw) = start().await;
    let e = gw
        .connect_as(AGENT, AGENT_PW, "nosuchdb")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "3D000");
    assert!(e.as_db_error().unwrap().message().contains("\"nosuchdb\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_startup_settings_are_refused() {
    let (_pg, gw) = start().await;
    for options in [
        "-c role=postgres",
        "-c search_path=public -c session_authorization=postgres",
        "--standard-conforming-strings=off",
        "-c log_statement=none",
        "-d 5",
    ] {
        let url = format!("{} options='{options}'", gw.url(AGENT, AGENT_PW, "demo"));
        let e = connect_url(&url).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{options}: {e:?}");
    }
    for (name, value) in [
        ("role", "postgres"),
        ("replication", "database"),
        ("client_encoding", "SJIS"),
    ] {
        let params = [("user", AGENT), ("database", "demo"), (name, value)];
        let err = Raw::login_with(gw.addr, &params, AGENT_PW)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}={value} was let through"));
        assert_eq!(err.field(b'C'), "42501", "{name}={value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_startup_settings_pass_through() {
    let (_pg, gw) = start().await;
    let url = format!(
        "{} options='-c search_path=pg_catalog,public --statement-timeout=4321' application_name=myagent",
        gw.url(AGENT, AGENT_PW, "demo")
    );
    let c = connect_url(&url).await.unwrap();
    let row = c
        .query_one("SELECT current_setting('search_path'), current_setting('statement_timeout'), current_setting('application_name')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pg_catalog,public");
    assert_eq!(row.get::<_, String>(1), "4321ms");
    assert_eq!(row.get::<_, String>(2), "[pgmoat:agent-1] myagent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_off_standard_conforming_strings_ends_the_session() {
    let (_pg, gw) = start().await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut out = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("SET standard_conforming_strings = off", &mut out)
        .unwrap();
    raw.send(&out).await;
    let mut fatal = None;
    while let Some(m) = raw.read().await {
        if m.tag == b'E' {
            fatal = Some(m);
        }
    }
    let fatal = fatal.expect("a FATAL before the close");
    assert_eq!(fatal.field(b'S'), "FATAL");
    assert_eq!(fatal.field(b'C'), "42501");
    assert!(fatal.field(b'M').contains("standard_conforming_strings"));
    // Setting it on (a no-op) is fine.
    let c = gw.connect().await;
    c.batch_execute("SET standard_conforming_strings = on")
        .await
        .unwrap();
    c.batch_execute("SET client_encoding = 'LATIN1'")
        .await
        .unwrap();
}

async fn gateway_for(role: &str, password: &str, method: &str) -> TestGateway {
    let pg = pg::shared();
    prepare(pg).await;
    pg.create_role_with_method(role, password, method).await;
    let yaml = config_yaml(pg, "").replace(&format!("user: {APP_ROLE}"), &format!("user: {role}"));
    let mut env = test_env();
    env.insert("APP_PW".into(), password.into());
    start_yaml(&yaml.replace("database: demo", "database: postgres"), env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_md5_cleartext_and_trust() {
    for (role, method) in [
        ("u_md5", "md5"),
        ("u_clear", "password"),
        ("u_trust", "trust"),
    ] {
        let gw = gateway_for(role, "upstream-pw-1", method).await;
        let c = gw.connect().await;
        let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), role, "via {method}");
        gw.shutdown().await;
    }
    // Wrong held password: a clear error that names the target, not the role or secret.
    let pg = pg::shared();
    pg.create_role_with_method("u_md5", "upstream-pw-1", "md5")
        .await;
    let mut env = test_env();
    env.insert("APP_PW".into(), "not-the-password".into());
    let yaml = config_yaml(pg, "")
        .replace(&format!("user: {APP_ROLE}"), "user: u_md5")
        .replace("database: demo", "database: postgres");
    let gw = start_yaml(&yaml, env).await;
    let e = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "08006", "{e:?}");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(
        msg.contains("could not authenticate to target \"demo\""),
        "{msg}"
    );
    assert!(
        !msg.contains("u_md5") && !msg.contains("not-the-password"),
        "{msg}"
    );
}

fn psql(
    pg: &crate::common::pg::TestPg,
    gw: &TestGateway,
    password: &str,
    args: &[&str],
) -> std::process::Output {
    Command::new(pg.psql())
        .env("PGPASSWORD", password)
        .arg(format!(
            "host=127.0.0.1 port={} user={AGENT} dbname=demo",
            gw.addr.port()
        ))
        .arg("-X")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_works_through_the_gateway() {
    let (pg, gw) = start().await;
    let out = psql(
        pg,
        &gw,
        AGENT_PW,
        &[
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SELECT 40 + 2",
            "-c",
            "SELECT current_user",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\napp_rw\n");
    // psql's \copy drives COPY through the gateway too.
    let out = psql(
        pg,
        &gw,
        AGENT_PW,
        &[
            "-A",
            "-t",
            "-c",
            "\\copy (SELECT g FROM generate_series(1,3) g) to stdout",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n3\n");
    // Wrong password via psql: the one-line error a user expects.
    let out = psql(pg, &gw, "nope", &["-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));
}
