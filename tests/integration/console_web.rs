//! The web console at `/ui/` (SPEC 12): over plain HTTP (sign-in, cookies, CSRF,
//! escaping, the requester-cannot-approve check) and driven in headless Chromium
//! through WebDriver (`tests/python/console_browser.py`, Selenium): a held psql
//! statement appears without a reload, is approved with a reason and psql completes;
//! another is denied; a CSRF-less POST is refused; a session is terminated; a replay
//! shows masked values and no raw ones. Screenshots land in
//! `target/console-screenshots/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::pg::TestPg;
use crate::harness::*;

const APPROVER: &str = "alice";
/// Raw values of the masked column: never shown by the console, only their last four.
const RAW_SSNS: [&str; 2] = ["512-63-7041", "604-18-2297"];

struct Fx {
    pg: &'static TestPg,
    gw: TestGateway,
    table: String,
    rules: TempDir,
    store: TempDir,
}

async fn fixture() -> Fx {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let table = unique("console_web");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, note text, ssn text);
             INSERT INTO {table} VALUES (1, 'open', '{}'), (2, 'open', '{}')",
            RAW_SSNS[0], RAW_SSNS[1]
        ))
        .await
        .unwrap();
    let rules = TempDir::new("pgmoat-console-web-rules");
    std::fs::write(
        rules.path().join("rules.yaml"),
        format!(
            "rules:
  - id: agent-writes-need-approval
    description: Agents' writes wait for a DBA.
    when: {{ groups: [agents], tables_written: [{table}] }}
    action: approve
    approvers: [dba]
  - id: no-drop
    description: Nobody drops tables.
    when: {{ statement: [drop] }}
    action: block
masks:
  - id: ssn
    columns: [{table}.ssn]
    method: partial
    keep_last: 4
"
        ),
    )
    .unwrap();
    let store = TempDir::new("pgmoat-console-web-audit");
    let yaml = config_yaml(
        pg,
        &format!(
            "rules: {}
audit:
  dir: {}
  durability: fsync
approvals:
  timeout: 2m
",
            rules.path().display(),
            store.path().display()
        ),
    )
    .replace(
        "      groups: [agents]\n",
        &format!(
            "      groups: [agents]\n    - {{ name: {APPROVER}, password_env: AGENT_PW, groups: [dba] }}\n"
        ),
    );
    let gw = start_yaml(&yaml, test_env()).await;
    Fx {
        pg,
        gw,
        table,
        rules,
        store,
    }
}

/// A browser-less client of the console: no redirects followed, cookies by hand.
struct Browserless {
    base: String,
    http: reqwest::Client,
    cookie: String,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Browserless {
    fn new(admin: SocketAddr) -> Browserless {
        Browserless {
            base: format!("http://{admin}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: String::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let req = if self.cookie.is_empty() {
            req
        } else {
            req.header("cookie", &self.cookie)
        };
        let r = req.send().await.expect("console request");
        Reply {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)).form(form))
            .await
    }

    /// Sign in with the admin token as `name`: the sign-in cookie's attributes are
    /// checked on the way. Returns the CSRF token the pages carry.
    async fn sign_in(&mut self, name: &str) -> String {
        let form = self.get("/ui/signin").await;
        assert_eq!(form.status, 200);
        let pre = set_cookie(&form, "pgmoat_console_pre").expect("pre-sign-in cookie");
        let token = hidden_csrf(&form.body);
        assert_eq!(
            pre.split(';').next().unwrap(),
            format!("pgmoat_console_pre={token}")
        );
        self.cookie = format!("pgmoat_console_pre={token}");
        // Without the form's token, or with another, the sign-in is refused.
        let forged = self
            .post("/ui/signin", &[("token", "admin-token"), ("name", name)])
            .await;
        assert_eq!(forged.status, 403, "{}", forged.body);
        let wrong = self
            .post(
                "/ui/signin",
                &[("csrf", &token), ("token", "nope"), ("name", name)],
            )
            .await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.body.contains("Wrong admin token."), "{}", wrong.body);
        let ok = self
            .post(
                "/ui/signin",
                &[("csrf", &token), ("token", "admin-token"), ("name", name)],
            )
            .await;
        assert_eq!(ok.status, 303, "{}", ok.body);
        assert_eq!(ok.headers["location"], "/ui/approvals");
        let session = set_cookie(&ok, "pgmoat_console=").expect("sign-in cookie");
        let (pair, attributes) = session.split_once(';').unwrap();
        assert_eq!(attributes, " HttpOnly; SameSite=Strict; Path=/ui");
        assert_eq!(
            pair.len(),
            "pgmoat_console=".len() + 64,
            "256-bit id: {pair}"
        );
        self.cookie = pair.to_owned();
        let page = self.get("/ui/approvals").await;
        assert_eq!(page.status, 200);
        hidden_csrf(&page.body)
    }
}

fn set_cookie(r: &Reply, prefix: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(prefix))
        .map(str::to_owned)
}

fn hidden_csrf(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {html}"));
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The pending request ids (`ap-...`) in a rows fragment, in order.
fn request_ids(html: &str) -> Vec<String> {
    html.split(r#"data-id=""#)
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_signs_in_escapes_and_refuses_posts_without_csrf() {
    let fx = fixture().await;
    let mut alice = Browserless::new(fx.gw.admin.unwrap());
    // Signed out: pages send the browser to the sign-in form.
    let r = alice.get("/ui/approvals").await;
    assert_eq!(
        (r.status, &r.headers["location"]),
        (303, &"/ui/signin".parse().unwrap())
    );
    let csrf = alice.sign_in(APPROVER).await;

    // A statement with markup in it, held: listed escaped, never as markup.
    let c = fx.gw.connect().await;
    let sql = format!(
        "UPDATE {} SET note = '<script>alert(1)</script>' WHERE id = 1",
        fx.table
    );
    let held = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
    let rows = wait_for("the held update in the console", WAIT_LIMIT, || async {
        let r = alice.get("/ui/approvals/rows").await;
        if r.body.contains("data-id=") {
            Ok(r.body)
        } else {
            Err(r.body)
        }
    })
    .await;
    assert!(
        rows.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{rows}"
    );
    assert!(!rows.contains("<script>"), "{rows}");
    let id = request_ids(&rows).remove(0);
    let decide = format!("/ui/approvals/{id}/approve");

    // POSTs without the CSRF token, with another one, or without the sign-in: 403,
    // and nothing is decided.
    let none = alice.post(&decide, &[("reason", "looks fine")]).await;
    assert_eq!(none.status, 403, "{}", none.body);
    let wrong = "0".repeat(64);
    let other = alice
        .post(&decide, &[("csrf", &wrong), ("reason", "looks fine")])
        .await;
    assert_eq!(other.status, 403);
    let anonymous = Browserless::new(fx.gw.admin.unwrap());
    let r = anonymous
        .post(&decide, &[("csrf", &csrf), ("reason", "looks fine")])
        .await;
    assert_eq!(r.status, 403);
    let r = alice.post("/ui/signout", &[]).await;
    assert_eq!(r.status, 403, "signing out is a change too");
    assert!(!held.is_finished(), "nothing was decided");
    assert_eq!(
        request_ids(&alice.get("/ui/approvals/rows").await.body),
        vec![id.clone()]
    );

    // The requester cannot approve its own statement, signed in or not.
    let mut agent = Browserless::new(fx.gw.admin.unwrap());
    let agent_csrf = agent.sign_in(AGENT).await;
    let r = agent.post(&decide, &[("csrf", &agent_csrf)]).await;
    assert_eq!(r.status, 303);
    let back = agent
        .get(r.headers["location"].to_str().unwrap())
        .await
        .body;
    assert!(
        back.contains("agent-1 requested this statement and cannot approve it"),
        "{back}"
    );
    assert!(!held.is_finished());

    // With it, alice's approval (and its reason) goes through.
    let r = alice
        .post(&decide, &[("csrf", &csrf), ("reason", "fixing a typo")])
        .await;
    assert_eq!(r.status, 303);
    let back = alice
        .get(r.headers["location"].to_str().unwrap())
        .await
        .body;
    assert!(
        back.contains(&format!("Approved {id} (agent-1 on demo).")),
        "{back}"
    );
    tokio::time::timeout(WAIT_LIMIT, held)
        .await
        .expect("the approved statement completes")
        .unwrap()
        .expect("it ran");
    let audit = audit_text(&fx.store);
    assert!(
        audit.contains(r#""by":"alice""#) && audit.contains(r#""reason":"fixing a typo""#),
        "{audit}"
    );

    // SHOW RULES' file:line is on the rules page too.
    let rules = alice.get("/ui/rules").await.body;
    let file = fx.rules.path().join("rules.yaml");
    assert!(rules.contains(&format!("{}:2", file.display())), "{rules}");
    assert!(rules.contains(&format!("{}:7", file.display())), "{rules}");

    // Signed out: the cookie names nothing any more.
    let r = alice.post("/ui/signout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(alice.get("/ui/approvals").await.status, 303);
}

fn audit_text(store: &TempDir) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(store.path()).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

/// One chromedriver for every browser test of this binary, stopped by the kernel when
/// the test process ends (PDEATHSIG, as the shared Postgres is).
fn chromedriver() -> &'static str {
    static DRIVER: OnceLock<(Child, String)> = OnceLock::new();
    &DRIVER
        .get_or_init(|| {
            pgmoat::setup::ensure_chromium().unwrap_or_else(|e| panic!("{e}"));
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let mut cmd = Command::new("chromedriver");
            cmd.arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: between fork and exec only async-signal-safe calls (prctl,
            // getppid) and an io::Error from an errno.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || {
                    if libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGTERM as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
            let child = crate::common::pg::spawn_managed(cmd).expect("start chromedriver");
            let url = format!("http://127.0.0.1:{port}");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "chromedriver did not listen"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            (child, url)
        })
        .1
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_approves_denies_terminates_and_replays_masked() {
    let fx = fixture().await;
    let driver = chromedriver().to_owned();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/console_browser.py");
    let rules_file = fx.rules.path().join("rules.yaml");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("WEBDRIVER_URL", driver)
        .env("CONSOLE_URL", format!("http://{}", fx.gw.admin.unwrap()))
        .env("ADMIN_TOKEN", "admin-token")
        .env("APPROVER", APPROVER)
        .env("PSQL", fx.pg.psql())
        .env(
            "AGENT_DSN",
            format!(
                "host=127.0.0.1 port={} user={AGENT} dbname=demo sslmode=disable",
                fx.gw.addr.port()
            ),
        )
        .env("PGPASSWORD", AGENT_PW)
        .env("TABLE", &fx.table)
        .env("RAW_VALUES", RAW_SSNS.join(","))
        .env("RULES_FILE", &rules_file)
        .env("SCREENSHOTS", screenshots())
        .output()
        .await
        .expect("run the browser script");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser run failed:\n{log}");
    // What the browser did is in the audit trail: the approval with its reason, the
    // denial with its own.
    let audit = audit_text(&fx.store);
    for needle in [
        r#""reason":"checked by the on-call DBA""#,
        r#""reason":"not during the freeze""#,
    ] {
        assert!(audit.contains(needle), "{needle} not in the audit:\n{log}");
    }
    for raw in RAW_SSNS {
        assert!(!audit.contains(raw), "raw {raw} recorded");
    }
    for page in ["approvals", "sessions", "audit", "replay", "rules"] {
        let png = screenshots().join(format!("{page}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "no screenshot {}",
            png.display()
        );
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_see_and_decide_only_their_tenant_in_the_console() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let table = unique("console_tenants");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, note text); INSERT INTO {table} VALUES (1, 'x'), (2, 'y')"
        ))
        .await
        .unwrap();
    let dirs: Vec<TempDir> = ["acme-rules", "acme-audit", "globex-rules", "globex-audit"]
        .iter()
        .map(|n| TempDir::new(&format!("pgmoat-console-{n}")))
        .collect();
    for rules in [&dirs[0], &dirs[2]] {
        std::fs::write(
            rules.path().join("rules.yaml"),
            format!("rules:\n  - id: updates-need-approval\n    when: {{ tables_written: [{table}] }}\n    action: approve\n    approvers: [dba]\n"),
        )
        .unwrap();
    }
    let tenant = |name: &str, rules: &TempDir, audit: &TempDir| {
        format!(
            "  {name}:
    targets:
      demo: {{ host: 127.0.0.1, port: {port}, database: demo, user: {APP_ROLE}, password_env: APP_PW, tls: disable }}
    identities:
      users:
        - {{ name: {name}-agent, password_env: AGENT_PW, groups: [agents] }}
        - {{ name: {name}-dba, password_env: AGENT_PW, groups: [dba] }}
    rules: {}
    approvals: {{ timeout: 2m }}
    audit: {{ dir: {}, durability: batch }}
    admin_token_env: {up}_TOKEN
",
            rules.path().display(),
            audit.path().display(),
            port = pg.port,
            up = name.to_uppercase(),
        )
    };
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token_env: ADMIN_TOKEN\ntenants:\n{}{}",
        tenant("acme", &dirs[0], &dirs[1]),
        tenant("globex", &dirs[2], &dirs[3])
    );
    let mut env = test_env();
    env.insert("ACME_TOKEN".into(), "acme-token".into());
    env.insert("GLOBEX_TOKEN".into(), "globex-token".into());
    let gw = start_yaml(&yaml, env).await;
    let mut held = Vec::new();
    for (who, id) in [("acme-agent", 1), ("globex-agent", 2)] {
        let c = connect_url(&gw.url(who, AGENT_PW, "demo")).await.unwrap();
        let sql = format!("UPDATE {table} SET note = '{who}' WHERE id = {id}");
        held.push(tokio::spawn(async move {
            c.simple_query(&sql).await.map(|_| ())
        }));
    }
    // The global token sees both; each tenant's token only its own.
    let mut global = Browserless::new(gw.admin.unwrap());
    global.sign_in("ops").await;
    let both = wait_for("both held updates", WAIT_LIMIT, || async {
        let rows = global.get("/ui/approvals/rows").await.body;
        if request_ids(&rows).len() == 2 {
            Ok(rows)
        } else {
            Err(rows)
        }
    })
    .await;
    assert!(
        both.contains("acme-agent") && both.contains("globex-agent"),
        "{both}"
    );
    let mut acme = Browserless::new(gw.admin.unwrap());
    acme.cookie.clear();
    let csrf = {
        // Signed in with acme's token (the sign-in helper uses the global one).
        let form = acme.get("/ui/signin").await;
        let pre = hidden_csrf(&form.body);
        acme.cookie = format!("pgmoat_console_pre={pre}");
        let r = acme
            .post(
                "/ui/signin",
                &[
                    ("csrf", &pre),
                    ("token", "acme-token"),
                    ("name", "acme-dba"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let c = set_cookie(&r, "pgmoat_console=").unwrap();
        acme.cookie = c.split(';').next().unwrap().to_owned();
        hidden_csrf(&acme.get("/ui/approvals").await.body)
    };
    let rows = acme.get("/ui/approvals/rows").await.body;
    assert!(
        rows.contains("acme-agent") && !rows.contains("globex-agent"),
        "{rows}"
    );
    let sessions = acme.get("/ui/sessions").await.body;
    assert!(
        sessions.contains("acme-agent") && !sessions.contains("globex-agent"),
        "{sessions}"
    );
    // Globex's request does not exist for acme's token.
    let globex_id = request_ids(&both)
        .into_iter()
        .find(|id| !rows.contains(id.as_str()))
        .unwrap();
    let r = acme
        .post(
            &format!("/ui/approvals/{globex_id}/approve"),
            &[("csrf", &csrf)],
        )
        .await;
    let back = acme.get(r.headers["location"].to_str().unwrap()).await.body;
    assert!(
        back.contains(&format!("no pending request {globex_id}")),
        "{back}"
    );
    assert!(!held[1].is_finished());
    // Acme's own: approved by acme's dba.
    let acme_id = request_ids(&rows).remove(0);
    let r = acme
        .post(
            &format!("/ui/approvals/{acme_id}/approve"),
            &[("csrf", &csrf)],
        )
        .await;
    let back = acme.get(r.headers["location"].to_str().unwrap()).await.body;
    assert!(back.contains(&format!("Approved {acme_id}")), "{back}");
    tokio::time::timeout(WAIT_LIMIT, held.remove(0))
        .await
        .expect("acme's update completes")
        .unwrap()
        .unwrap();
    // The audit page reads acme's store only, and says so for a name of another.
    let audit = wait_for("acme's sessions in its store", WAIT_LIMIT, || async {
        let body = acme.get("/ui/audit").await.body;
        if body.contains("acme-agent") {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert!(!audit.contains("globex-agent"), "{audit}");
    let other = acme.get("/ui/audit?tenant=globex").await.body;
    assert!(other.contains("No audit store"), "{other}");
}
