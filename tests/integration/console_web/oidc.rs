//! The console's OIDC sign-in against a fake IdP: authorization code with PKCE,
//! state bound to the browser, nonce, admin.groups, and approvals by the ID token's
//! groups.

use super::*;

/// What the fake IdP issues next and what it was asked.
#[derive(Default)]
struct IdpState {
    /// code -> (PKCE challenge, nonce, redirect_uri) from the authorization request.
    codes: std::collections::HashMap<String, (String, String, String)>,
    /// Who the next sign-in is: (email, groups).
    user: (String, Vec<String>),
    /// Put another nonce in the ID token (a replayed or injected token).
    wrong_nonce: bool,
}

/// A fake IdP for the authorization code flow, on the keys and claims of the tree's
/// OIDC tests (`common::jwt`): discovery, JWKS, an authorization endpoint that
/// consents at once (redirecting back with a code), and a token endpoint that checks
/// the PKCE verifier against the challenge and answers with a signed ID token.
struct CodeIdp {
    issuer: String,
    state: std::sync::Arc<std::sync::Mutex<IdpState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CodeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const CLIENT_ID: &str = "pgmoat-console";

impl CodeIdp {
    async fn start() -> CodeIdp {
        use axum::extract::Query;
        use axum::routing::{get, post};
        use base64::Engine;
        use serde_json::json;
        use sha2::Digest;
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let key = Arc::new(crate::common::jwt::TestKey::ec("console-key"));
        let jwks = crate::common::jwt::jwks(&[&key]);
        let state = Arc::new(Mutex::new(IdpState::default()));
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/keys"),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
        });
        let (s1, s2, iss) = (Arc::clone(&state), Arc::clone(&state), issuer.clone());
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
                "/authorize",
                get(move |Query(q): Query<HashMap<String, String>>| {
                    let s = Arc::clone(&s1);
                    async move {
                        assert_eq!(q["response_type"], "code");
                        assert_eq!(q["client_id"], CLIENT_ID);
                        assert_eq!(q["code_challenge_method"], "S256");
                        let code = format!("code-{}", rand::random::<u64>());
                        s.lock().unwrap().codes.insert(
                            code.clone(),
                            (
                                q["code_challenge"].clone(),
                                q["nonce"].clone(),
                                q["redirect_uri"].clone(),
                            ),
                        );
                        axum::response::Redirect::to(&format!(
                            "{}?code={code}&state={}",
                            q["redirect_uri"], q["state"]
                        ))
                    }
                }),
            )
            .route(
                "/token",
                post(move |axum::Form(f): axum::Form<HashMap<String, String>>| {
                    let (s, key, iss) = (Arc::clone(&s2), Arc::clone(&key), iss.clone());
                    async move {
                        let mut st = s.lock().unwrap();
                        let bad = |e: &str| {
                            (
                                axum::http::StatusCode::BAD_REQUEST,
                                axum::Json(json!({ "error": e })),
                            )
                        };
                        let Some((challenge, nonce, redirect)) = st.codes.remove(&f["code"]) else {
                            return bad("invalid_grant");
                        };
                        let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(sha2::Sha256::digest(verifier.as_bytes()));
                        if computed != challenge || f["redirect_uri"] != redirect {
                            return bad("invalid_grant");
                        }
                        let groups: Vec<&str> = st.user.1.iter().map(String::as_str).collect();
                        let mut c = crate::common::jwt::claims(&iss, &st.user.0, &groups, 300);
                        c["aud"] = json!(CLIENT_ID);
                        c["nonce"] = json!(if st.wrong_nonce { "other" } else { &nonce });
                        (
                            axum::http::StatusCode::OK,
                            axum::Json(json!({
                                "access_token": "opaque", "token_type": "Bearer",
                                "id_token": key.sign(&c), "expires_in": 300,
                            })),
                        )
                    }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CodeIdp {
            issuer,
            state,
            task,
        }
    }

    fn next_user(&self, email: &str, groups: &[&str], wrong_nonce: bool) {
        let mut s = self.state.lock().unwrap();
        s.user = (email.into(), groups.iter().map(|g| g.to_string()).collect());
        s.wrong_nonce = wrong_nonce;
    }
}

/// Start an OIDC sign-in and follow it to the callback: the callback's reply, with
/// the state cookie the start set (or `state_cookie` instead, when given).
async fn oidc_round(b: &Browserless, state_cookie: Option<&str>) -> (Reply, String) {
    let start = b.get("/ui/oidc/start").await;
    assert_eq!(start.status, 303, "{}", start.body);
    let bound = set_cookie(&start, "pgmoat_console_oidc=").expect("state cookie");
    assert!(
        bound.contains("HttpOnly; SameSite=Lax; Path=/ui/callback"),
        "{bound}"
    );
    let bound = bound.split(';').next().unwrap().to_owned();
    let location = start.headers["location"].to_str().unwrap().to_owned();
    let at_idp = b.http.get(&location).send().await.unwrap();
    assert_eq!(at_idp.status().as_u16(), 303);
    let back = at_idp.headers()["location"].to_str().unwrap().to_owned();
    let path = back.split_once("/ui/callback").map(|(_, q)| q).unwrap();
    let callback = format!("/ui/callback{path}");
    let cookie = state_cookie.map(str::to_owned).unwrap_or(bound);
    let r = b
        .send(
            b.http
                .get(format!("{}{callback}", b.base))
                .header("cookie", cookie),
        )
        .await;
    (r, callback)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_oidc_sign_in_with_pkce_state_and_nonce_and_token_groups() {
    let idp = CodeIdp::start().await;
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let table = unique("console_oidc");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, note text); INSERT INTO {table} VALUES (1, 'x')"
        ))
        .await
        .unwrap();
    let rules = TempDir::new("pgmoat-console-oidc-rules");
    std::fs::write(
        rules.path().join("rules.yaml"),
        format!(
            "rules:\n  - id: writes-need-approval\n    when: {{ tables_written: [{table}] }}\n    action: approve\n    approvers: [dba]\n"
        ),
    )
    .unwrap();
    let yaml = config_yaml(
        pg,
        &format!(
            "  oidc:\n    issuer: {}\n    audience: {CLIENT_ID}\n    username_claim: email\nrules: {}\napprovals:\n  timeout: 2m\n",
            idp.issuer,
            rules.path().display()
        ),
    )
    .replace("  token_env: ADMIN_TOKEN\n", "  token_env: ADMIN_TOKEN\n  groups: [dba]\n");
    let gw = start_yaml(&yaml, test_env()).await;
    let b = Browserless::new(gw.admin.unwrap());
    let signin = b.get("/ui/signin").await.body;
    assert!(
        signin.contains(r#"href="/ui/oidc/start?tenant=""#),
        "{signin}"
    );

    // Outside admin.groups: refused, no sign-in cookie.
    idp.next_user("mallory@example.com", &["dev"], false);
    let (r, _) = oidc_round(&b, None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("not a member of admin.groups"),
        "{}",
        r.body
    );
    assert!(set_cookie(&r, "pgmoat_console=").is_none());

    // A nonce that is not this sign-in's: refused.
    idp.next_user("ann@example.com", &["dba"], true);
    let (r, _) = oidc_round(&b, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("nonce"), "{}", r.body);

    // A state this browser did not start: refused before any code is exchanged.
    idp.next_user("ann@example.com", &["dba"], false);
    let (r, _) = oidc_round(&b, Some("pgmoat_console_oidc=forged")).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // The real thing: signed in as the ID token's user, with its groups.
    let (r, callback) = oidc_round(&b, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let session = set_cookie(&r, "pgmoat_console=").expect("sign-in cookie");
    assert!(
        session.ends_with("; HttpOnly; SameSite=Strict; Path=/ui"),
        "{session}"
    );
    // The same callback again: its state is spent.
    let again = b.get(&callback).await;
    assert_eq!(again.status, 403);

    let mut ann = Browserless::new(gw.admin.unwrap());
    ann.cookie = session.split(';').next().unwrap().to_owned();
    let page = ann.get("/ui/approvals").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("ann@example.com <small>(OIDC)</small>"),
        "{}",
        page.body
    );
    let csrf = hidden_csrf(&page.body);

    // ann is no configured user: only the ID token's groups make her an approver.
    let c = gw.connect().await;
    let sql = format!("UPDATE {table} SET note = 'oidc' WHERE id = 1");
    let held = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
    let rows = wait_for("the held update", WAIT_LIMIT, || async {
        let r = ann.get("/ui/approvals/rows").await;
        if r.body.contains("data-id=") {
            Ok(r.body)
        } else {
            Err(r.body)
        }
    })
    .await;
    let id = request_ids(&rows).remove(0);
    let r = ann
        .post(
            &format!("/ui/approvals/{id}/approve"),
            &[("csrf", &csrf), ("reason", "via OIDC")],
        )
        .await;
    assert_eq!(r.status, 303);
    let back = ann.get(r.headers["location"].to_str().unwrap()).await.body;
    assert!(back.contains(&format!("Approved {id}")), "{back}");
    tokio::time::timeout(WAIT_LIMIT, held)
        .await
        .expect("approved statement completes")
        .unwrap()
        .expect("it ran");
}

/// `redirect_uri` of an OIDC start's redirect to the IdP.
fn redirect_param(start: &Reply) -> String {
    let location = start.headers["location"].to_str().unwrap();
    reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("a redirect_uri")
}

async fn start_with_host(b: &Browserless, host: &str) -> Reply {
    b.send(
        b.http
            .get(format!("{}/ui/oidc/start", b.base))
            .header("host", host),
    )
    .await
}

/// A forged `Host` cannot steer the authorization code to another origin: without
/// `admin.public_url` only the listener's own address starts an OIDC sign-in; with
/// it, the redirect URI is always built from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_oidc_redirect_uri_never_comes_from_a_forged_host() {
    let idp = CodeIdp::start().await;
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let oidc = format!(
        "  oidc:\n    issuer: {}\n    audience: {CLIENT_ID}\n    username_claim: email\n",
        idp.issuer
    );

    let gw = start_yaml(&config_yaml(pg, &oidc), test_env()).await;
    let admin = gw.admin.unwrap();
    let b = Browserless::new(admin);
    for forged in ["evil.example", &format!("evil.example:{}", admin.port())] {
        let r = start_with_host(&b, forged).await;
        assert_eq!(r.status, 400, "{forged}: {}", r.body);
        assert!(r.headers.get("location").is_none());
        assert!(r.body.contains("admin.public_url"), "{}", r.body);
        assert!(set_cookie(&r, "pgmoat_console_oidc=").is_none());
    }
    let r = start_with_host(&b, &admin.to_string()).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(redirect_param(&r), format!("http://{admin}/ui/callback"));
    let r = start_with_host(&b, &format!("localhost:{}", admin.port())).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        redirect_param(&r),
        format!("http://localhost:{}/ui/callback", admin.port())
    );
    drop(gw);

    let yaml = config_yaml(pg, &oidc).replace(
        "  token_env: ADMIN_TOKEN\n",
        "  token_env: ADMIN_TOKEN\n  public_url: https://console.example.com/\n",
    );
    let gw = start_yaml(&yaml, test_env()).await;
    let b = Browserless::new(gw.admin.unwrap());
    let r = start_with_host(&b, "evil.example").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        redirect_param(&r),
        "https://console.example.com/ui/callback"
    );
    // Browsers reach it over HTTPS: its cookies are never sent over plain HTTP
    // (console review M1).
    let state = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("pgmoat_console_oidc="))
        .expect("the OIDC state cookie");
    assert!(state.contains("; Secure"), "{state}");
    let form = b.get("/ui/signin").await;
    let pre = set_cookie(&form, "pgmoat_console_pre").expect("pre-sign-in cookie");
    assert!(pre.contains("; Secure"), "{pre}");
}
