//! TLS towards clients (rustls, answered to SSLRequest) and towards targets.

use crate::common::certs::{write_files, TestCa};
use crate::common::pg::{self, PgOptions, TestPg};
use crate::harness::*;

fn tls_dir() -> TempDir {
    TempDir::new("pgmoat-tls")
}

fn psql(pg: &TestPg, conn: &str, password: &str, sql: &str) -> std::process::Output {
    pg.psql_c(conn, Some(password), sql)
}

async fn tls_gateway(require: bool) -> (&'static TestPg, TestGateway, std::path::PathBuf, TempDir) {
    let pg = pg::shared();
    prepare(pg).await;
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let dir = tls_dir();
    let files = write_files(dir.path(), &ca, "server", &cert, &key);
    let extra = format!(
        "tls:\n  cert: {}\n  key: {}\n  require: {require}\n",
        files.cert.display(),
        files.key.display()
    );
    let gw = start_yaml(&config_yaml(pg, &extra), test_env()).await;
    (pg, gw, files.ca, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_negotiate_tls_with_sslmode_require_and_verify_full() {
    let (pg, gw, ca, _dir) = tls_gateway(false).await;
    let port = gw.addr.port();
    let out = psql(
        pg,
        &format!("host=127.0.0.1 port={port} user={AGENT} dbname=demo sslmode=require"),
        AGENT_PW,
        "SELECT 'over tls'",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls\n");
    let out = psql(
        pg,
        &format!(
            "host=localhost port={port} user={AGENT} dbname=demo sslmode=verify-full sslrootcert={}",
            ca.display()
        ),
        AGENT_PW,
        "SELECT 1",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without require, plain connections still work.
    let c = gw.connect().await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_plain_clients() {
    let (pg, gw, _ca, _dir) = tls_gateway(true).await;
    let out = psql(
        pg,
        &format!(
            "host=127.0.0.1 port={} user={AGENT} dbname=demo sslmode=disable",
            gw.addr.port()
        ),
        AGENT_PW,
        "SELECT 1",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires TLS"), "{err}");
    let e = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28000");
}

/// A server of its own with ssl=on, and a role that may only log in over TLS.
async fn ssl_server() -> TestPg {
    let pg = tokio::task::spawn_blocking(|| {
        TestPg::start(PgOptions {
            ssl: true,
            ..Default::default()
        })
    })
    .await
    .unwrap();
    pg.create_role_with_method("u_tlsonly", "tls-pw-1", "scram")
        .await;
    pg
}

fn upstream_yaml(pg: &TestPg, tls: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
targets:
  demo:
    host: localhost
    port: {}
    database: postgres
    user: u_tlsonly
    password_env: APP_PW
{tls}
identities:
  users:
    - name: {AGENT}
      password_env: AGENT_PW
",
        pg.port
    )
}

fn tls_env() -> std::collections::HashMap<String, String> {
    let mut env = test_env();
    env.insert("APP_PW".into(), "tls-pw-1".into());
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_modes() {
    let pg = ssl_server().await;
    let ca = pg.ca_pem_path.clone().expect("ssl server has a CA");
    for tls in [
        "    tls: require".to_string(),
        "    tls: prefer".to_string(),
        format!("    tls: verify-full\n    ca: {}", ca.display()),
    ] {
        let gw = start_yaml(&upstream_yaml(&pg, &tls), tls_env()).await;
        let c = gw.connect().await;
        let row = c
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert!(
            row.get::<_, bool>(0),
            "{tls}: server side says the connection is TLS"
        );
        gw.shutdown().await;
    }
    // disable: the server's hostnossl reject line refuses pgmoat, and the client hears so.
    let gw = start_yaml(&upstream_yaml(&pg, "    tls: disable"), tls_env()).await;
    let e = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "08006", "{e:?}");
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "pgmoat: could not authenticate to target \"demo\""
    );
    gw.shutdown().await;
    // verify-full against the wrong CA fails closed.
    let other = TestCa::new();
    let dir = tls_dir();
    let wrong = dir.path().join("wrong-ca.crt");
    std::fs::write(&wrong, &other.cert_pem).unwrap();
    let gw = start_yaml(
        &upstream_yaml(
            &pg,
            &format!("    tls: verify-full\n    ca: {}", wrong.display()),
        ),
        tls_env(),
    )
    .await;
    let e = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "08006", "{e:?}");
}
