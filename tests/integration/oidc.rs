//! OIDC bearer tokens as the Postgres password: tokens minted here with fresh RSA and EC
//! keys, checked against a JWKS file or keys discovered from a local IdP; groups
//! reaching the rules; tokens lapsing mid-session; per-group upstream roles.

use std::time::Duration;

use serde_json::json;

use crate::common::jwt::{self, claims, TestIdpServer, TestKey, AUDIENCE};
use crate::common::pg::TestPg;
use crate::harness::*;

const ISSUER: &str = "https://idp.pgmoat.test";

/// The rules every OIDC gateway here runs with: one group is kept from `version()`.
const RULES: &str = "rules:
  - id: interns-no-version
    description: Interns may not ask for the server version.
    when: { groups: [interns], functions: [version] }
    action: block
";

pub struct Idp {
    pub rsa: TestKey,
    pub ec: TestKey,
    pub dir: TempDir,
}

impl Idp {
    pub fn new() -> Idp {
        let (rsa, ec) = (TestKey::rsa("rsa-1"), TestKey::ec("ec-1"));
        let dir = TempDir::new("pgmoat-oidc");
        std::fs::write(dir.path().join("jwks.json"), jwt::jwks(&[&rsa, &ec])).unwrap();
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        Idp { rsa, ec, dir }
    }

    /// `identities.oidc` (continuing the harness's `identities:`) plus `more` top-level keys.
    pub fn yaml(&self, issuer: &str, jwks_file: bool, oidc_more: &str, more: &str) -> String {
        let jwks = if jwks_file {
            format!(
                "    jwks_file: {}\n",
                self.dir.path().join("jwks.json").display()
            )
        } else {
            String::new()
        };
        format!(
            "  oidc:\n    issuer: {issuer}\n    audience: {AUDIENCE}\n{jwks}    username_claim: email\n    groups_claim: groups\n{oidc_more}rules: {}\n{more}",
            self.dir.path().join("rules.yaml").display()
        )
    }
}

pub async fn gateway(idp: &Idp, oidc_more: &str, more: &str) -> (&'static TestPg, TestGateway) {
    start_with(&idp.yaml(ISSUER, true, oidc_more, more)).await
}

pub async fn connect_token(
    gw: &TestGateway,
    user: &str,
    token: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(gw.addr.port())
        .user(user)
        .password(token)
        .dbname("demo")
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn one_text(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query_one(sql, &[]).await.unwrap().get::<_, String>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ec_tokens_log_in_and_their_groups_reach_the_rules() {
    let idp = Idp::new();
    let (_pg, gw) = gateway(&idp, "", "").await;
    let ann = "ann@example.com";
    let token = idp.rsa.sign(&claims(ISSUER, ann, &["analysts"], 300));
    let c = connect_token(&gw, ann, &token).await.unwrap();
    assert_eq!(one_text(&c, "SELECT current_user::text").await, APP_ROLE);
    assert!(one_text(&c, "SELECT version()")
        .await
        .starts_with("PostgreSQL"));
    let app = one_text(&c, "SELECT current_setting('application_name')").await;
    assert!(app.starts_with(&format!("[pgmoat:{ann}]")), "{app}");

    // An intern (EC key, groups as a plain string) is kept from version() by the rule.
    let bob = "bob@example.com";
    let mut cl = claims(ISSUER, bob, &[], 300);
    cl["groups"] = json!("interns");
    let c = connect_token(&gw, bob, &idp.ec.sign(&cl)).await.unwrap();
    let e = c.simple_query("SELECT version()").await.unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message()
            .starts_with("pgmoat: blocked by rule \"interns-no-version\""),
        "{}",
        db.message()
    );
    // The session stays usable.
    assert_eq!(one_text(&c, "SELECT 'still here'").await, "still here");

    // Local users still log in by SCRAM next to token users.
    let c = gw.connect().await;
    assert_eq!(one_text(&c, "SELECT current_user::text").await, APP_ROLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_the_same_generic_28p01() {
    let idp = Idp::new();
    let (_pg, gw) = gateway(&idp, "", "limits: { auth_failures: 1000 }\n").await;
    let user = "ann@example.com";
    let good = claims(ISSUER, user, &["analysts"], 300);
    let patched = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        idp.rsa.sign(&c)
    };
    let signed = idp.rsa.sign(&good);
    let body = signed.split('.').nth(1).unwrap().to_owned();
    let sig = signed.split('.').nth(2).unwrap().to_owned();
    let unknown_kid = TestKey::ec("not-published").sign(&good);
    let cases: Vec<(&str, String)> = vec![
        ("expired", patched("exp", json!(jwt::now() - 600))),
        ("nbf in the future", patched("nbf", json!(jwt::now() + 600))),
        (
            "wrong issuer",
            patched("iss", json!("https://evil.example")),
        ),
        ("wrong audience", patched("aud", json!("someone-else"))),
        (
            "user is not the claim",
            patched("email", json!("eve@example.com")),
        ),
        ("unknown kid", unknown_kid),
        (
            "alg none",
            format!(
                "{}.{body}.",
                jwt::b64(&json!({"alg": "none", "kid": "rsa-1"}))
            ),
        ),
        (
            "HS256 keyed with the public key",
            jsonwebtoken::encode(
                &jsonwebtoken::Header {
                    kid: Some("rsa-1".into()),
                    ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
                },
                &good,
                &jsonwebtoken::EncodingKey::from_secret(idp.rsa.jwk.to_string().as_bytes()),
            )
            .unwrap(),
        ),
        (
            "RS256 header naming the EC key",
            jwt::with_header(&signed, &json!({"alg": "RS256", "kid": "ec-1"})),
        ),
        (
            "tampered claims",
            format!(
                "{}.{}.{sig}",
                signed.split('.').next().unwrap(),
                jwt::b64(&claims(ISSUER, user, &["dba"], 300))
            ),
        ),
        ("not a JWT", "hunter2".into()),
    ];
    for (name, token) in &cases {
        let e = connect_token(&gw, user, token).await.unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{name}: {e:?}"));
        assert_eq!(db.code().code(), "28P01", "{name}");
        assert_eq!(
            db.message(),
            format!("password authentication failed for user \"{user}\""),
            "{name}: the client is not told which part was wrong"
        );
        assert!(db.detail().is_none() && db.hint().is_none(), "{name}");
    }
    assert!(
        gw.metrics
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= cases.len() as u64
    );
    // The good token still works afterwards.
    connect_token(&gw, user, &signed).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_keys_are_cached_and_refetched_for_an_unknown_kid() {
    let idp = Idp::new();
    let server = TestIdpServer::start(jwt::jwks(&[&idp.rsa])).await;
    let iss = server.issuer.clone();
    let (_pg, gw) = start_with(&idp.yaml(&iss, false, "", "")).await;
    let ann = "ann@example.com";
    let t = idp.rsa.sign(&claims(&iss, ann, &["analysts"], 300));
    connect_token(&gw, ann, &t).await.unwrap();
    connect_token(&gw, ann, &t).await.unwrap();
    assert_eq!(server.fetches(), 1, "keys are cached between logins");

    // The IdP rotates in the EC key: a token naming it makes pgmoat fetch again.
    server.set_jwks(jwt::jwks(&[&idp.rsa, &idp.ec]));
    let t2 = idp.ec.sign(&claims(&iss, ann, &["analysts"], 300));
    connect_token(&gw, ann, &t2).await.unwrap();
    assert_eq!(server.fetches(), 2);

    // Unknown kids do not make pgmoat hammer the IdP: at most one fetch per 30 s.
    let stranger = TestKey::ec("stranger");
    for _ in 0..3 {
        let t = stranger.sign(&claims(&iss, ann, &[], 300));
        let e = connect_token(&gw, ann, &t).await.unwrap_err();
        assert_eq!(sqlstate(&e), "28P01");
    }
    assert_eq!(server.fetches(), 2, "rate-limited refetch");
}

/// The first value by the simple protocol. (`one_text` prepares a statement, which
/// tokio-postgres closes when it is dropped, without waiting for the answer: a FATAL
/// that comes before that answer is taken for it, and the next call sees only a
/// closed connection.)
async fn simple_text(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c.simple_query(sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_next_statement_once_its_token_expires() {
    let idp = Idp::new();
    let (_pg, gw) = gateway(&idp, "    leeway: 0s\n", "").await;
    let ann = "ann@example.com";
    // Valid for 300 s; the gateway's clock is moved on instead of waiting for them.
    let t = idp.ec.sign(&claims(ISSUER, ann, &["analysts"], 300));
    let c = connect_token(&gw, ann, &t).await.unwrap();
    assert_eq!(simple_text(&c, "SELECT 'fresh'").await, "fresh");
    // A second session prepares a statement while the token is good.
    let c2 = connect_token(&gw, ann, &t).await.unwrap();
    let prepared = c2.prepare("SELECT 'prepared'::text").await.unwrap();
    // Shortly before exp the session goes on ...
    gw.clock.advance(Duration::from_secs(290));
    assert_eq!(simple_text(&c, "SELECT 'nearly'").await, "nearly");
    // ... and once it has passed, its next statement ends it.
    gw.clock.advance(Duration::from_secs(11));
    let e = c.simple_query("SELECT 'stale'").await.unwrap_err();
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("a FATAL from pgmoat: {e:?}"));
    assert_eq!(db.code().code(), "28000");
    assert_eq!(db.severity(), "FATAL");
    assert!(
        db.message()
            .starts_with("pgmoat: the session's token expired at "),
        "{}",
        db.message()
    );
    // Executing what was prepared before (Bind/Execute, no Parse) ends the same way.
    let e = c2.query(&prepared, &[]).await.unwrap_err();
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("a FATAL from pgmoat: {e:?}"));
    assert_eq!((db.code().code(), db.severity()), ("28000", "FATAL"));
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(e.is_closed(), "the session is over: {e:?}");
    // A token already expired at login is refused outright.
    let e = connect_token(&gw, ann, &t).await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");

    // With session_may_outlive_token the session carries on.
    let (_pg, gw) = gateway(
        &idp,
        "    leeway: 0s\n    session_may_outlive_token: true\n",
        "",
    )
    .await;
    let t = idp.ec.sign(&claims(ISSUER, ann, &["analysts"], 300));
    let c = connect_token(&gw, ann, &t).await.unwrap();
    gw.clock.advance(Duration::from_secs(301));
    assert_eq!(one_text(&c, "SELECT 'outlived'").await, "outlived");
    // (New logins with it are still refused.)
    let e = connect_token(&gw, ann, &t).await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_from_one_address_are_refused_quickly() {
    let idp = Idp::new();
    let (_pg, gw) = gateway(
        &idp,
        "",
        "limits: { auth_failures: 3, auth_failure_window: 1m }\n",
    )
    .await;
    for _ in 0..3 {
        let e = gw.connect_as(AGENT, "wrong", "demo").await.unwrap_err();
        assert_eq!(sqlstate(&e), "28P01");
    }
    // Now even the right password is not looked at until the window passes.
    let e = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28000");
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("too many failed authentication attempts"),
        "{e:?}"
    );
    // A signed token cannot be guessed (review M6): a wrong one from the locked-out
    // address is refused as rate-limited, but the right one still logs in, so one
    // client guessing passwords behind a shared address does not lock out the token
    // users behind it. (A success forgets the address's failures, as always.)
    let ann = "ann@example.com";
    let forged = idp
        .rsa
        .sign(&claims("https://elsewhere.test", ann, &[], 300));
    let e = connect_token(&gw, ann, &forged).await.unwrap_err();
    assert_eq!(sqlstate(&e), "28000", "{e:?}");
    let token = idp.rsa.sign(&claims(ISSUER, ann, &["analysts"], 300));
    let c = connect_token(&gw, ann, &token).await.unwrap();
    assert_eq!(one_text(&c, "SELECT 'in'").await, "in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_role_is_set_upstream_and_cannot_be_changed() {
    let idp = Idp::new();
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    pg.admin_client()
        .await
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE readonly_role NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT readonly_role TO app_rw",
        )
        .await
        .unwrap();
    let yaml = config_yaml(pg, &idp.yaml(ISSUER, true, "", "")).replace(
        "    tls: disable\n",
        "    tls: disable\n    roles: { interns: nobody_role, analysts: readonly_role }\n",
    );
    let gw = start_yaml(&yaml, test_env()).await;
    let ann = "ann@example.com";
    let t = idp
        .rsa
        .sign(&claims(ISSUER, ann, &["staff", "analysts"], 300));
    let c = connect_token(&gw, ann, &t).await.unwrap();
    assert_eq!(
        one_text(&c, "SELECT current_user::text").await,
        "readonly_role"
    );
    for sql in [
        "SET ROLE app_rw",
        "RESET ROLE",
        "SET ROLE NONE",
        "SELECT set_config('role', 'app_rw', false)",
        "SET SESSION AUTHORIZATION DEFAULT",
        "DISCARD ALL",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42501", "{sql}");
        assert!(
            db.message().contains("may not change role"),
            "{sql}: {}",
            db.message()
        );
    }
    assert_eq!(
        one_text(&c, "SELECT current_user::text").await,
        "readonly_role"
    );
    // Other groups keep pgmoat's own login role; local users too.
    let t = idp
        .rsa
        .sign(&claims(ISSUER, "cy@example.com", &["staff"], 300));
    let c = connect_token(&gw, "cy@example.com", &t).await.unwrap();
    assert_eq!(one_text(&c, "SELECT current_user::text").await, APP_ROLE);
    // A role the login cannot take: the session is refused with a clear line.
    let t = idp
        .rsa
        .sign(&claims(ISSUER, "dee@example.com", &["interns"], 300));
    let e = connect_token(&gw, "dee@example.com", &t).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("could not switch to role \"nobody_role\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sends_a_token_over_tls() {
    use crate::common::certs::{write_files, TestCa};
    let idp = Idp::new();
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let files = write_files(idp.dir.path(), &ca, "server", &cert, &key);
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n  require: true\n",
        files.cert.display(),
        files.key.display()
    );
    let (pg, gw) = gateway(&idp, "", &tls).await;
    let ann = "ann@example.com";
    let token = idp.rsa.sign(&claims(ISSUER, ann, &["analysts"], 300));
    let conn = format!(
        "host=localhost port={} user={ann} dbname=demo sslmode=verify-full sslrootcert={}",
        gw.addr.port(),
        files.ca.display()
    );
    let out = pg.psql_c(&conn, Some(&token), "SELECT 'token over tls'");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "token over tls\n");
}
