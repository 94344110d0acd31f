//! `pgmoat login`: the device flow against a local fake authorization server, ending
//! with stock psql logging in through the gateway with the token it wrote.

use std::collections::VecDeque;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::jwt::{claims, TestKey};
use crate::harness::*;
use pgmoat::login::{device_flow, LoginError, LoginRequest, Pacing};

const CLIENT_ID: &str = "pgmoat-cli";
const USER_CODE: &str = "WDJB-MJHT";

/// A fake IdP: discovery, JWKS, device authorization, and a token endpoint that
/// answers from a script (error codes, or "ok" for a signed id_token).
struct FakeIdp {
    issuer: String,
    script: Arc<Mutex<VecDeque<&'static str>>>,
    polls: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeIdp {
    async fn start(interval: u64, script: &[&'static str]) -> FakeIdp {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let key = Arc::new(TestKey::ec("login-key"));
        let jwks = crate::common::jwt::jwks(&[&key]);
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let polls = Arc::new(Mutex::new(Vec::new()));
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/keys"),
            "device_authorization_endpoint": format!("{issuer}/device"),
            "token_endpoint": format!("{issuer}/token"),
        });
        let iss = issuer.clone();
        let (s, p) = (Arc::clone(&script), Arc::clone(&polls));
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route(
                "/keys",
                get(move || {
                    let j = jwks.clone();
                    async move { ([("content-type", "application/json")], j) }
                }),
            )
            .route(
                "/device",
                post(move |body: String| {
                    let iss = iss.clone();
                    async move {
                        assert!(body.contains(&format!("client_id={CLIENT_ID}")), "{body}");
                        axum::Json(json!({
                            "device_code": "dev-123", "user_code": USER_CODE,
                            "verification_uri": format!("{iss}/activate"),
                            "expires_in": 60, "interval": interval,
                        }))
                    }
                }),
            )
            .route(
                "/token",
                post({
                    let issuer = issuer.clone();
                    move |body: String| {
                        let (s, p, key, issuer) = (
                            Arc::clone(&s),
                            Arc::clone(&p),
                            Arc::clone(&key),
                            issuer.clone(),
                        );
                        async move {
                            p.lock().unwrap().push(body);
                            let step = s.lock().unwrap().pop_front().unwrap_or("ok");
                            if step == "ok" {
                                let mut c = claims(&issuer, "ann@example.com", &["analysts"], 300);
                                c["aud"] = json!(CLIENT_ID);
                                let body: Value = json!({
                                    "access_token": "opaque-access-token",
                                    "id_token": key.sign(&c),
                                    "token_type": "Bearer", "expires_in": 300,
                                });
                                (axum::http::StatusCode::OK, axum::Json(body))
                            } else {
                                (
                                    axum::http::StatusCode::BAD_REQUEST,
                                    axum::Json(json!({ "error": step })),
                                )
                            }
                        }
                    }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeIdp {
            issuer,
            script,
            polls,
            task,
        }
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn request(issuer: &str, port: u16, pgpass: Option<std::path::PathBuf>) -> LoginRequest {
    LoginRequest {
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        scopes: vec!["openid".into(), "email".into()],
        use_access_token: false,
        username_claim: "email".into(),
        host: "127.0.0.1".into(),
        port,
        dbname: "demo".into(),
        user: None,
        pgpass,
    }
}

const FAST: Pacing = Pacing {
    min_interval: Duration::ZERO,
    slow_down_step: Duration::from_millis(20),
};

/// A gateway that trusts the fake IdP (keys discovered from it, audience = client id).
async fn gateway_for(idp: &FakeIdp) -> TestGateway {
    let extra = format!(
        "  oidc:\n    issuer: {}\n    audience: {CLIENT_ID}\n    username_claim: email\n",
        idp.issuer
    );
    start_with(&extra).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_writes_a_pgpass_that_psql_logs_in_with() {
    let idp = FakeIdp::start(
        0,
        &[
            "authorization_pending",
            "slow_down",
            "authorization_pending",
        ],
    )
    .await;
    let gw = gateway_for(&idp).await;
    let dir = TempDir::new("pgmoat-login");
    let pgpass = dir.path().join("pgpass");
    let mut told = Vec::new();
    let login = device_flow(
        &request(&idp.issuer, gw.addr.port(), Some(pgpass.clone())),
        FAST,
        &mut told,
    )
    .await
    .unwrap();
    let told = String::from_utf8(told).unwrap();
    assert!(
        told.contains(&format!("{}/activate", idp.issuer)) && told.contains(USER_CODE),
        "{told}"
    );
    assert_eq!(login.user, "ann@example.com");
    assert!(
        idp.script.lock().unwrap().is_empty(),
        "polled through the script"
    );
    let polls = idp.polls.lock().unwrap().clone();
    assert_eq!(polls.len(), 4);
    assert!(polls[0].contains("device_code=dev-123"));
    assert!(polls[0].contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"));
    // The pgpass line: mode 0600, the id_token (a JWT), and not printed.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let line = std::fs::read_to_string(&pgpass).unwrap();
    assert!(
        line.starts_with(&format!(
            "127.0.0.1:{}:demo:ann@example.com:ey",
            gw.addr.port()
        )),
        "{line}"
    );
    assert!(!login.conninfo.contains(&login.token));
    // Stock psql with that connection string and no password of its own.
    let pg = crate::common::pg::shared();
    let out = pg.psql_c(&login.conninfo, None, "SELECT current_user");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app_rw\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_expired_codes_end_with_a_clear_error() {
    let idp = FakeIdp::start(0, &["authorization_pending", "access_denied"]).await;
    let e = device_flow(&request(&idp.issuer, 1, None), FAST, &mut Vec::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, LoginError::Denied), "{e}");
    let idp = FakeIdp::start(0, &["expired_token"]).await;
    let e = device_flow(&request(&idp.issuer, 1, None), FAST, &mut Vec::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, LoginError::Expired), "{e}");
    assert!(e.to_string().contains("run `pgmoat login` again"));
    let idp = FakeIdp::start(0, &["invalid_client"]).await;
    let e = device_flow(&request(&idp.issuer, 1, None), FAST, &mut Vec::new())
        .await
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "the identity provider: invalid_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_command_prints_a_connection_string() {
    let idp = FakeIdp::start(1, &[]).await;
    let issuer = idp.issuer.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pgmoat"))
            .args([
                "login",
                "--issuer",
                &issuer,
                "--client-id",
                CLIENT_ID,
                "--port",
                "6543",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(USER_CODE), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "host=127.0.0.1 port=6543 dbname=demo user=ann@example.com sslmode=prefer password=ey"
        ),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
}
