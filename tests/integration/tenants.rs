//! Two tenants on the same two nodes of a cluster (SPEC sections 10 and 11), holds
//! made on one node and decided through the other's API: each reaches only its own
//! targets,
//! is judged by its own rules, holds in its own approvals, writes its own audit store
//! and is seen only through its own admin token; a broken rule file, a connection
//! flood, a held-statement flood and a failed-login flood in one tenant leave the
//! other working. Every isolation attempt fails with the same error as for something
//! that does not exist.

use serde_json::Value;
use std::collections::HashMap;

use crate::harness::*;

const GLOBAL: &str = "global-token";
const ACME: &str = "acme-token";
const GLOBEX: &str = "globex-token";

struct Fx {
    gw: TestGateway,
    /// A second node of the same cluster (its own audit stores), sharing approvals
    /// and login failures through the state database.
    gw2: TestGateway,
    _node2_audit: (TempDir, TempDir),
    _globex_rules: TempDir,
    acme_rules: TempDir,
    acme_audit: TempDir,
    globex_audit: TempDir,
    table: String,
}

async fn fixture() -> Fx {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    pg.create_database("tenant_globex").await;
    let admin = pg.admin_client().await;
    admin
        .batch_execute("GRANT ALL ON DATABASE tenant_globex TO app_rw")
        .await
        .unwrap();
    let table = unique("tenant_t");
    for db in ["demo", "tenant_globex"] {
        let c = pg.connect(APP_ROLE, APP_PW, db).await.unwrap();
        c.batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v text);
             INSERT INTO {table} SELECT i, 'v' || i FROM generate_series(1, 20) i"
        ))
        .await
        .unwrap();
    }
    let acme_rules = TempDir::new("pgmoat-tenant-acme-rules");
    std::fs::write(
        acme_rules.path().join("rules.yaml"),
        format!(
            "rules:
  - id: acme-no-delete
    when: {{ statement: delete }}
    action: block
  - id: acme-updates-need-approval
    when: {{ tables_written: [{table}], statement: update }}
    action: approve
    approvers: [dba]
"
        ),
    )
    .unwrap();
    let globex_rules = TempDir::new("pgmoat-tenant-globex-rules");
    std::fs::write(
        globex_rules.path().join("rules.yaml"),
        format!(
            "rules:
  - id: globex-updates-need-approval
    when: {{ tables_written: [{table}], statement: update }}
    action: approve
    approvers: [dba]
"
        ),
    )
    .unwrap();
    let acme_audit = TempDir::new("pgmoat-tenant-acme-audit");
    let globex_audit = TempDir::new("pgmoat-tenant-globex-audit");
    let node2_audit = (
        TempDir::new("pgmoat-tenant-acme-audit2"),
        TempDir::new("pgmoat-tenant-globex-audit2"),
    );
    pg.create_database("pgmoat_state_tenants").await;
    pg.connect(&pg.superuser, &pg.password, "pgmoat_state_tenants")
        .await
        .unwrap()
        .batch_execute("DROP SCHEMA IF EXISTS pgmoat CASCADE")
        .await
        .unwrap();
    let state_url = pg.conn_str(&pg.superuser, &pg.password, "pgmoat_state_tenants");
    let yaml = format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token_env: GLOBAL_TOKEN
limits:
  auth_failures: 3
  auth_failure_window: 60s
cluster:
  node: NODE
  state_url_env: STATE_URL
  heartbeat: 200ms
  lapse: 1s
tenants:
  acme:
    targets:
      demo: {{ host: 127.0.0.1, port: {port}, database: demo, user: {APP_ROLE}, password_env: APP_PW, tls: disable }}
      acme-only: {{ host: 127.0.0.1, port: {port}, database: demo, user: {APP_ROLE}, password_env: APP_PW, tls: disable }}
    identities:
      users:
        - {{ name: acme-agent, password_env: AGENT_PW, groups: [agents] }}
        - {{ name: acme-dba, password_env: AGENT_PW, groups: [dba] }}
    rules: {acme_rules}
    approvals: {{ timeout: 60s }}
    audit: {{ dir: {acme_audit}, durability: batch }}
    admin_token_env: ACME_TOKEN
    limits: {{ max_connections: 3, max_held: 1 }}
  globex:
    targets:
      demo: {{ host: 127.0.0.1, port: {port}, database: tenant_globex, user: {APP_ROLE}, password_env: APP_PW, tls: disable }}
    identities:
      users:
        - {{ name: globex-agent, password_env: AGENT_PW, groups: [agents] }}
        - {{ name: globex-dba, password_env: AGENT_PW, groups: [dba] }}
    rules: {globex_rules}
    approvals: {{ timeout: 60s }}
    audit: {{ dir: {globex_audit}, durability: batch }}
    admin_token_env: GLOBEX_TOKEN
",
        port = pg.port,
        acme_rules = acme_rules.path().display(),
        acme_audit = acme_audit.path().display(),
        globex_audit = globex_audit.path().display(),
        globex_rules = globex_rules.path().display(),
    );
    let env: HashMap<String, String> = [
        ("APP_PW", APP_PW),
        ("AGENT_PW", AGENT_PW),
        ("GLOBAL_TOKEN", GLOBAL),
        ("ACME_TOKEN", ACME),
        ("GLOBEX_TOKEN", GLOBEX),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("STATE_URL".to_string(), state_url)])
    .collect();
    let gw = start_yaml(&yaml.replace("node: NODE", "node: t1"), env.clone()).await;
    let yaml2 = yaml
        .replace("node: NODE", "node: t2")
        .replace(
            &acme_audit.path().display().to_string(),
            &node2_audit.0.path().display().to_string(),
        )
        .replace(
            &globex_audit.path().display().to_string(),
            &node2_audit.1.path().display().to_string(),
        );
    let gw2 = start_yaml(&yaml2, env).await;
    Fx {
        gw,
        gw2,
        _node2_audit: node2_audit,
        _globex_rules: globex_rules,
        acme_rules,
        acme_audit,
        globex_audit,
        table,
    }
}

impl Fx {
    async fn login(
        &self,
        user: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect_url(&self.gw.url(user, AGENT_PW, db)).await
    }

    /// The admin API of the second node: everything below decides there what the
    /// first node holds.
    async fn api(&self, token: &str, method: &str, path: &str, body: &str) -> (u16, String) {
        http(
            self.gw2.admin.unwrap(),
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await
    }

    async fn pending(&self, token: &str) -> Vec<Value> {
        let (code, body) = self.api(token, "GET", "/api/v1/approvals", "").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// The server's message for an error (code and text), to compare "not yours" with
/// "does not exist".
fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let d = e.as_db_error().expect("a server error");
    (
        d.code().code().to_string(),
        d.message().replace("nosuch", "X").replace("acme-only", "X"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let f = fixture().await;
    let t = &f.table;

    // Each tenant's `demo` is its own database.
    let acme = f.login("acme-agent", "demo").await.unwrap();
    let globex = f.login("globex-agent", "demo").await.unwrap();
    for (c, db) in [(&acme, "demo"), (&globex, "tenant_globex")] {
        let got: String = c
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, db);
    }

    // Another tenant's target is a target that does not exist.
    let not_yours = f.login("globex-agent", "acme-only").await.unwrap_err();
    let nowhere = f.login("globex-agent", "nosuch").await.unwrap_err();
    assert_eq!(db_error(&not_yours), db_error(&nowhere));
    assert_eq!(db_error(&not_yours).0, "3D000");

    // Rules are per tenant.
    let e = acme
        .execute(&format!("DELETE FROM {t} WHERE id = 20"), &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("acme-no-delete"));
    assert_eq!(
        globex
            .execute(&format!("DELETE FROM {t} WHERE id = 20"), &[])
            .await
            .unwrap(),
        1,
        "acme's rules do not judge globex"
    );

    // Approvals: a tenant's token sees and decides its own requests only.
    let acme_hold = {
        let c = f.login("acme-agent", "demo").await.unwrap();
        let sql = format!("UPDATE {t} SET v = 'acme' WHERE id = 1");
        tokio::spawn(async move { c.execute(sql.as_str(), &[]).await })
    };
    let globex_hold = {
        let c = f.login("globex-agent", "demo").await.unwrap();
        let sql = format!("UPDATE {t} SET v = 'globex' WHERE id = 1");
        tokio::spawn(async move { c.execute(sql.as_str(), &[]).await })
    };
    wait_until("both holds listed", WAIT_LIMIT, || async {
        f.pending(GLOBAL).await.len() == 2
    })
    .await;
    let acme_list = f.pending(ACME).await;
    let globex_list = f.pending(GLOBEX).await;
    assert_eq!(acme_list.len(), 1);
    assert_eq!(globex_list.len(), 1);
    assert_eq!(acme_list[0]["identity"], "acme-agent");
    assert_eq!(globex_list[0]["identity"], "globex-agent");
    let globex_id = globex_list[0]["id"].as_str().unwrap().to_string();
    let acme_id = acme_list[0]["id"].as_str().unwrap().to_string();
    // acme's token on globex's request: exactly what a request nobody has gets.
    let approve = |by: &str| format!(r#"{{"by": "{by}"}}"#);
    let (code_theirs, body_theirs) = f
        .api(
            ACME,
            "POST",
            &format!("/api/v1/approvals/{globex_id}/approve"),
            &approve("acme-dba"),
        )
        .await;
    let (code_none, body_none) = f
        .api(
            ACME,
            "POST",
            "/api/v1/approvals/ap-nosuchthing/approve",
            &approve("acme-dba"),
        )
        .await;
    assert_eq!(code_theirs, 404);
    assert_eq!(code_theirs, code_none);
    assert_eq!(
        body_theirs.replace(&globex_id, "X"),
        body_none.replace("ap-nosuchthing", "X")
    );
    // A tenant's approvers decide only its own: globex's DBA cannot approve acme's,
    // even with the global token.
    let (code, body) = f
        .api(
            GLOBAL,
            "POST",
            &format!("/api/v1/approvals/{acme_id}/approve"),
            &approve("globex-dba"),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = f
        .api(
            GLOBEX,
            "POST",
            &format!("/api/v1/approvals/{globex_id}/approve"),
            &approve("globex-dba"),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(globex_hold.await.unwrap().unwrap(), 1);
    // max_held: 1 for acme: a second acme hold is refused at once; globex may hold.
    let c = f.login("acme-agent", "demo").await.unwrap();
    let e = c
        .execute(&format!("UPDATE {t} SET v = 'more' WHERE id = 2"), &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "53400", "{e:?}");
    drop(c);
    let (code, _) = f
        .api(
            ACME,
            "POST",
            &format!("/api/v1/approvals/{acme_id}/deny"),
            r#"{"by": "acme-dba"}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(sqlstate(&acme_hold.await.unwrap().unwrap_err()), "42501");

    // Explain through the API: another tenant's rules are a tenant that does not exist.
    let explain = |tenant: &str| format!(r#"{{"sql": "DELETE FROM x", "tenant": "{tenant}"}}"#);
    let (c1, b1) = f
        .api(GLOBEX, "POST", "/api/v1/explain", &explain("acme"))
        .await;
    let (c2, b2) = f
        .api(GLOBEX, "POST", "/api/v1/explain", &explain("nosuch"))
        .await;
    assert_eq!((c1, c2), (404, 404));
    assert_eq!(b1.replace("acme", "X"), b2.replace("nosuch", "X"));
    let (c, b) = f
        .api(GLOBAL, "POST", "/api/v1/explain", &explain("acme"))
        .await;
    assert_eq!(c, 200, "{b}");
    assert!(b.contains("acme-no-delete"), "{b}");

    // Each tenant's trail has its own sessions only.
    wait_until("both trails written", WAIT_LIMIT, || async {
        read_store(f.acme_audit.path()).contains("acme-no-delete")
            && read_store(f.globex_audit.path()).contains("globex-updates-need-approval")
    })
    .await;
    let acme_trail = read_store(f.acme_audit.path());
    let globex_trail = read_store(f.globex_audit.path());
    assert!(acme_trail.contains("acme-agent") && !acme_trail.contains("globex-agent"));
    assert!(globex_trail.contains("globex-agent") && !globex_trail.contains("acme-agent"));

    // A broken rule file in acme: refused (recorded in acme's trail only), acme keeps
    // its rules, globex is untouched.
    std::fs::write(f.acme_rules.path().join("rules.yaml"), "rules: [ {").unwrap();
    wait_until("acme's refused reload in its trail", WAIT_LIMIT, || async {
        read_store(f.acme_audit.path()).contains("rules_reloaded")
    })
    .await;
    assert!(!read_store(f.globex_audit.path()).contains("rules_reloaded"));
    let again = f.login("acme-agent", "demo").await.unwrap();
    assert_eq!(
        sqlstate(
            &again
                .execute(&format!("DELETE FROM {t} WHERE id = 19"), &[])
                .await
                .unwrap_err()
        ),
        "42501",
        "the old rules stay in force"
    );
    drop(again);
    drop(acme);
    drop(globex);
    f.gw.wait_sessions(0).await;

    // Floods stay in their tenant: acme's connection budget (3) and failed logins.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(f.login("acme-agent", "demo").await.unwrap());
    }
    let e = f.login("acme-agent", "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300");
    let g = f
        .login("globex-agent", "demo")
        .await
        .expect("globex unaffected");
    drop(g);
    drop(held);
    f.gw.wait_sessions(0).await;
    for _ in 0..3 {
        assert!(connect_url(&f.gw.url("acme-agent", "wrong", "demo"))
            .await
            .is_err());
    }
    let e = f.login("acme-agent", "demo").await.unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "28000",
        "acme's names are blocked for this address"
    );
    // ... on the other node too, once the failures are in the state database.
    wait_until("acme blocked on the second node", WAIT_LIMIT, || async {
        connect_url(&f.gw2.url("acme-agent", AGENT_PW, "demo"))
            .await
            .is_err_and(|e| sqlstate(&e) == "28000")
    })
    .await;
    f.login("globex-agent", "demo")
        .await
        .expect("globex's logins from the same address still work");
    connect_url(&f.gw2.url("globex-agent", AGENT_PW, "demo"))
        .await
        .expect("on either node");
}

/// Every line of every segment of a store.
fn read_store(dir: &std::path::Path) -> String {
    settle_audit(dir);
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            all.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    all
}
