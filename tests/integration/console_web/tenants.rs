//! Tenant admin tokens in the console: each sees and decides only its own tenant.

use super::*;

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
