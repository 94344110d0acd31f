//! Tests for `config`: the raw form's errors and the validated defaults.

use std::time::Duration;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "PW" => Some("pw".into()),
        "A" | "C" | "AUDIT_WEBHOOK_URL" => Some("https://hooks.example.com/x".into()),
        "B" => Some("signing-secret".into()),
        "TOK" => Some("a-bearer-secret-of-some-length".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, "pgmoat.yaml", Path::new("/etc/pgmoat"), &env)
}

const MINIMAL: &str =
    "targets:\n  demo:\n    host: 127.0.0.1\n    user: app\n    password_env: PW\n";

#[test]
fn minimal_config_gets_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:6432");
    let t = &c.targets["demo"];
    assert_eq!((t.port, t.database.as_str()), (5432, "demo"));
    assert_eq!(t.tls, UpstreamTlsMode::Prefer);
    assert_eq!(t.password.as_ref().unwrap().expose(), "pw");
}

#[test]
fn full_spec_example_is_accepted() {
    let text = r#"
listen: 127.0.0.1:6432
tls: { cert: certs/server.crt, key: certs/server.key, require: true }
admin: { listen: 127.0.0.1:9187, token_env: PW }
targets:
  demo: { host: 127.0.0.1, port: 5432, database: demo, user: app_rw, password_env: PW, tls: disable }
identities:
  users:
    - { name: agent-1, password_env: PW, groups: [agents] }
  oidc:
    issuer: https://idp.example.com
    audience: pgmoat
    jwks_file: optional/offline/jwks.json
    username_claim: email
    groups_claim: groups
rules: rules/
approvals:
  timeout: 5m
  slack: { webhook_url_env: A, signing_secret_env: B, approvers: { U012ABC: alice } }
  webhook_url_env: C
audit:
  dir: audit/
  durability: fsync
  record_rows: 100
  sinks:
    - stdout
    - webhook: { url_env: AUDIT_WEBHOOK_URL }
    - syslog: { address: udp://127.0.0.1:514 }
"#;
    let c = load(text).unwrap();
    assert_eq!(
        c.tls.as_ref().unwrap().cert,
        Path::new("/etc/pgmoat/certs/server.crt")
    );
    assert_eq!(c.rules.as_deref(), Some(Path::new("/etc/pgmoat/rules/")));
    assert_eq!(c.admin.unwrap().token.unwrap().expose(), "pw");
    assert_eq!(c.audit.unwrap().sinks.len(), 3);
    let a = c.approvals.unwrap();
    assert_eq!(a.timeout, Duration::from_secs(300));
    let slack = a.slack.unwrap();
    assert_eq!(slack.signing_secret.expose(), "signing-secret");
    assert_eq!(slack.webhook.expose(), "https://hooks.example.com/x");
    assert_eq!(slack.approvers["U012ABC"], "alice");
    assert_eq!(a.webhook.unwrap().expose(), "https://hooks.example.com/x");
}

#[test]
fn unknown_keys_name_line_and_column() {
    let err = load("listen: 127.0.0.1:6432\nlisten_port: 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("pgmoat.yaml:2:"), "{err}");
    assert!(err.contains("listen_port"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn bad_values_are_located() {
    let err = load(&format!("{MINIMAL}    tls: sometimes\n"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("pgmoat.yaml:6:"), "{err}");
    let err = load(&format!("listen: nowhere\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("pgmoat.yaml:1:"), "{err}");
    let err = load(&format!(
        "{MINIMAL}limits: {{ shutdown_grace: 5 parsecs }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown unit") || err.contains("unit"),
        "{err}"
    );
}

#[test]
fn missing_secret_is_named_not_shown() {
    let err = load("targets:\n  d: { host: h, user: u, password_env: NOPE }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("NOPE is not set"), "{err}");
}

#[test]
fn verify_full_needs_a_ca() {
    let err = load("targets:\n  d: { host: h, user: u, tls: verify-full }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("verify-full needs"), "{err}");
}

#[test]
fn users_need_exactly_one_credential() {
    let err = load(&format!(
        "{MINIMAL}identities:\n  users:\n    - {{ name: a }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("exactly one"), "{err}");
    let dup = format!(
        "{MINIMAL}identities:\n  users:\n    - {{ name: a, password_env: PW }}\n    - {{ name: a, password_env: PW }}\n"
    );
    assert!(load(&dup).unwrap_err().to_string().contains("duplicate"));
}

#[test]
fn bearer_secrets_come_from_token_env() {
    let c = load(&format!(
        "{MINIMAL}identities:\n  users:\n    - {{ name: a, password_env: PW, token_env: TOK }}\n    - {{ name: b, token_env: TOK2 }}\n"
    ));
    let err = c.unwrap_err().to_string();
    assert!(err.contains("identities.users[1].token_env"), "{err}");
    let c = load(&format!(
        "{MINIMAL}identities:\n  users:\n    - {{ name: a, password_env: PW, token_env: TOK }}\n    - {{ name: b, token_env: TOK }}\n"
    ))
    .unwrap();
    let users = &c.users;
    assert_eq!(
        users[0].token.as_ref().unwrap().expose(),
        "a-bearer-secret-of-some-length"
    );
    assert!(users[0].verifier.is_some());
    // Only a token: no password opens the wire.
    assert!(users[1].verifier.is_none());
    let short = load(&format!(
        "{MINIMAL}identities:\n  users:\n    - {{ name: a, token_env: PW }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(short.contains("at least 16 characters"), "{short}");
}

#[test]
fn the_consoles_database_name_is_no_target() {
    let err = load(&MINIMAL.replace("demo:", "pgmoat:"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("reserved for the SQL admin console"), "{err}");
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("m").is_err());
    assert_eq!(parse_duration("87600h"), Ok(MAX_DURATION));
    for bad in [
        "87601h",
        "5000000000000000h",
        "18446744073709551615ms",
        "99999999999999999999s",
        "-1s",
        "1.5s",
        "1d",
    ] {
        let e = parse_duration(bad).unwrap_err();
        assert!(!e.contains('\n') && e.contains(bad), "{bad}: {e}");
    }
}

#[test]
fn sizes_and_counts_are_range_checked() {
    for (extra, field) in [
        ("workers: 100000\n", "workers"),
        (
            "limits:\n  max_message_bytes: 18446744073709551615\n",
            "max_message_bytes",
        ),
        ("limits:\n  max_statement_bytes: 0\n", "max_statement_bytes"),
        ("limits:\n  connect_timeout: 0s\n", "connect_timeout"),
        ("limits:\n  catalog_refresh: 10ms\n", "catalog_refresh"),
        ("limits:\n  shutdown_grace: 9999999999999h\n", "too long"),
        (
            "audit:\n  dir: a\n  record_rows: 4000000000\n",
            "record_rows",
        ),
        (
            "audit:\n  dir: a\n  segment_bytes: 18446744073709551615\n",
            "segment_bytes",
        ),
    ] {
        let e = load(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
        assert!(e.contains(field) && !e.contains('\n'), "{extra}: {e}");
    }
}

#[test]
fn identity_keys_are_validated() {
    let oidc = |more: &str| {
        load(&format!(
            "{MINIMAL}identities:\n  oidc:\n    issuer: {more}\n    audience: pgmoat\n"
        ))
    };
    let c = oidc("https://idp.example.com").unwrap();
    assert!(c.inactive_sections().is_empty(), "oidc is enforced now");
    let o = c.oidc.unwrap();
    assert_eq!(
        (o.username_claim.as_str(), o.groups_claim.as_str()),
        ("sub", "groups")
    );
    assert_eq!(o.leeway, Duration::from_secs(30));
    assert!(!o.session_may_outlive_token);
    assert!(
        oidc("http://127.0.0.1:8080").is_ok(),
        "loopback http is fine"
    );
    let err = oidc("http://idp.example.com").unwrap_err().to_string();
    assert!(err.contains("must be an https:// URL"), "{err}");
    let err = load(&format!(
        "{MINIMAL}identities:\n  oidc: {{ issuer: https://i, audience: a, leeway: 10m }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("leeway: at most 5m"), "{err}");
    // Certificates need a client CA; require_client_cert too.
    let err = load(&format!(
        "{MINIMAL}identities:\n  certificates: [{{ name: svc }}]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs `tls.client_ca:`"), "{err}");
    let err = load(&format!(
        "{MINIMAL}tls: {{ cert: c, key: k, require_client_cert: true }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs `client_ca:`"), "{err}");
    let c = load(&format!(
        "{MINIMAL}tls: {{ cert: c, key: k, client_ca: ca.pem }}\nidentities:\n  certificates: [{{ name: svc, groups: [g] }}]\n"
    ))
    .unwrap();
    assert_eq!(
        c.tls.as_ref().unwrap().client_ca.as_deref(),
        Some(Path::new("/etc/pgmoat/ca.pem"))
    );
}

#[test]
fn roles_keep_the_files_order() {
    let c = load(&format!(
        "{MINIMAL}    roles: {{ zeta: r_z, alpha: r_a }}\n"
    ))
    .unwrap();
    let t = &c.targets["demo"];
    assert_eq!(t.roles[0], ("zeta".to_string(), "r_z".to_string()));
    let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(t.role_for(&groups(&["alpha", "zeta"])), Some("r_z"));
    assert_eq!(t.role_for(&groups(&["alpha"])), Some("r_a"));
    assert_eq!(t.role_for(&groups(&["other"])), None);
    let err = load(&format!("{MINIMAL}    roles: {{ a: x, a: y }}\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate"), "{err}");
}

#[test]
fn secrets_do_not_print() {
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
}

#[test]
fn audit_keys_are_checked() {
    let with = |extra: &str| load(&format!("{MINIMAL}audit:\n  dir: a\n{extra}"));
    let c = with("  segment_bytes: 8192\n  segment_age: 1h\n  hmac_key_env: PW\n").unwrap();
    let a = c.audit.unwrap();
    assert_eq!(a.segment_bytes, 8192);
    assert_eq!(a.hmac_key.unwrap().expose(), "pw");
    let err = with("  hmac_key_env: NOPE\n").unwrap_err().to_string();
    assert!(
        err.contains("audit.hmac_key_env") && err.contains("NOPE"),
        "{err}"
    );
    let err = with("  sinks:\n    - syslog: { address: 127.0.0.1:514 }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("udp://host:port"), "{err}");
    assert!(with("  segment_bytes: 10\n").is_err());
    assert!(with("  durability: sometimes\n").is_err());
    assert_eq!(with("").unwrap().audit.unwrap().parallel_flushes, 1);
    let c = with("  parallel_flushes: 3\n").unwrap();
    assert_eq!(c.audit.unwrap().parallel_flushes, 3);
    for bad in ["0", "5"] {
        let err = with(&format!("  parallel_flushes: {bad}\n")).unwrap_err();
        assert!(err.to_string().contains("parallel_flushes"), "{err}");
    }
    let err = with("  parallel_flushes: -1\n").unwrap_err().to_string();
    assert!(err.contains("pgmoat.yaml:8:"), "{err}");
}

/// Issue 19: the approvals timeout's default used to be applied where the gateway
/// started; now every default comes from `defaults`, applied in `validate`.
#[test]
fn left_out_keys_get_the_defaults_in_one_place() {
    let c = load(&format!("{MINIMAL}approvals: {{}}\n")).unwrap();
    let a = c.approvals.unwrap();
    assert_eq!(a.timeout, defaults::APPROVAL_TIMEOUT);
    assert!(a.slack.is_none() && a.webhook.is_none());
    assert_eq!(c.listen, defaults::LISTEN);
    assert_eq!(c.workers, defaults::workers());
    assert_eq!(c.limits.max_connections, Limits::default().max_connections);
    let t = &c.targets["demo"];
    assert_eq!(
        (t.port, t.tls),
        (defaults::TARGET_PORT, defaults::UPSTREAM_TLS)
    );
    let c = load(&format!(
        "{MINIMAL}approvals: {{ timeout: 30s, webhook_url_env: NOT_SET }}\n"
    ));
    let e = c.unwrap_err().to_string();
    assert!(
        e.contains("approvals.webhook_url_env: environment variable NOT_SET is not set"),
        "{e}"
    );
}

const TENANTS: &str = r#"
tenants:
  acme:
    targets: { demo: { host: 127.0.0.1, user: app, password_env: PW } }
    identities: { users: [ { name: acme-agent, password_env: PW, groups: [agents] } ] }
    rules: rules/acme/
    audit: { dir: audit/acme }
    admin_token_env: PW
    limits: { max_connections: 5, max_held: 2 }
  globex:
    targets: { demo: { host: 127.0.0.2, user: app, password_env: PW } }
    identities: { users: [ { name: globex-agent, password_env: PW } ] }
    audit: { dir: audit/globex }
"#;

#[test]
fn tenants_hold_their_own_scope() {
    let c = load(TENANTS).unwrap();
    assert!(c.targets.is_empty() && c.users.is_empty() && c.rules.is_none());
    let names: Vec<&str> = c.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["acme", "globex"]);
    let acme = &c.tenants[0];
    assert_eq!(acme.targets["demo"].host, "127.0.0.1");
    assert_eq!(
        acme.rules.as_deref(),
        Some(Path::new("/etc/pgmoat/rules/acme/"))
    );
    assert_eq!(
        acme.audit.as_ref().unwrap().dir,
        Path::new("/etc/pgmoat/audit/acme")
    );
    assert_eq!(acme.admin_token.as_ref().unwrap().expose(), "pw");
    assert_eq!(
        acme.limits,
        TenantLimits {
            max_connections: Some(5),
            max_held: Some(2)
        }
    );
    assert_eq!(
        c.tenants[1].targets["demo"].host, "127.0.0.2",
        "target names are per tenant"
    );
    assert_eq!(c.tenants[1].limits, TenantLimits::default());
    assert!(
        c.warnings().is_empty(),
        "different servers: {:?}",
        c.warnings()
    );
    // The same server, database and user for two tenants: the server cannot keep
    // their sessions apart, which `check` and `serve` say.
    let shared = load(&TENANTS.replace("127.0.0.2", "127.0.0.1")).unwrap();
    let w = shared.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("\"acme\" and \"globex\"") && w[0].contains("own login"),
        "{w:?}"
    );
    let apart = load(&TENANTS.replace("127.0.0.2", "127.0.0.1").replace(
        "host: 127.0.0.1, user: app, password_env: PW } }\n    identities: { users: [ { name: globex",
        "host: 127.0.0.1, user: app2, password_env: PW } }\n    identities: { users: [ { name: globex",
    ))
    .unwrap();
    assert!(apart.warnings().is_empty(), "{:?}", apart.warnings());
}

#[test]
fn tenants_are_kept_apart_by_validation() {
    let bad = |text: &str, needle: &str| {
        let e = load(text).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    };
    // The top level holds no scope of its own beside tenants.
    bad(
        &format!("{MINIMAL}{TENANTS}"),
        "targets: with `tenants:`, `targets:` belongs inside each tenant",
    );
    bad(
        &format!("rules: rules/\n{TENANTS}"),
        "`rules:` belongs inside each tenant",
    );
    bad(
        &format!("identities: {{ users: [ {{ name: x, password_env: PW }} ] }}\n{TENANTS}"),
        "`identities:` belongs inside each tenant",
    );
    bad(
        &format!("audit: {{ dir: audit }}\n{TENANTS}"),
        "`audit:` belongs inside each tenant",
    );
    // An identity belongs to one tenant.
    bad(
        &TENANTS.replace("name: globex-agent", "name: acme-agent"),
        "tenants.globex.identities: identity \"acme-agent\" is also declared by tenant \"acme\"",
    );
    // Each tenant its own chain.
    bad(
        &TENANTS.replace("dir: audit/globex", "dir: audit/acme"),
        "tenants.globex.audit.dir",
    );
    // Errors inside a tenant name the tenant.
    bad(
        &TENANTS.replace(
            "host: 127.0.0.2, user: app, password_env: PW",
            "host: 127.0.0.2, user: app, password_env: NOPE",
        ),
        "tenants.globex.targets.demo",
    );
    bad(
        &TENANTS.replace("max_held: 2", "max_held: 0"),
        "tenants.acme.limits.max_held: must be at least 1",
    );
    bad(
        &TENANTS.replace("  globex:", "  Globex:"),
        "tenant name \"Globex\"",
    );
    bad("tenants: {}\n", "declare at least one tenant");
    bad(
        &TENANTS.replace(
            "    targets: { demo: { host: 127.0.0.2, user: app, password_env: PW } }\n",
            "",
        ),
        "tenants.globex.targets: at least one target is required",
    );
    bad(
        &TENANTS.replace("admin_token_env: PW", "admin_token_env: NOPE"),
        "tenants.acme.admin_token_env",
    );
}

#[test]
fn cluster_names_its_node_and_state_database() {
    let with = |extra: &str| load(&format!("{MINIMAL}cluster:\n{extra}"));
    let c = with("  node: gw-1\n  state_url_env: PW\n").unwrap();
    let cl = c.cluster.unwrap();
    assert_eq!(cl.node, "gw-1");
    assert_eq!(cl.state_url.expose(), "pw");
    assert_eq!(
        (cl.heartbeat, cl.lapse),
        (Duration::from_secs(1), Duration::from_secs(5))
    );
    let bad = |extra: &str, needle: &str| {
        let e = with(extra).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    };
    bad(
        "  state_url_env: PW\n",
        "exactly one of `node:` or `node_env:`",
    );
    bad(
        "  node: a\n  node_env: PW\n  state_url_env: PW\n",
        "exactly one of",
    );
    bad(
        "  node: gw-1\n  state_url_env: NOPE\n",
        "cluster.state_url_env: environment variable NOPE is not set",
    );
    bad(
        "  node_env: NOPE\n  state_url_env: PW\n",
        "cluster.node_env: environment variable NOPE is not set",
    );
    bad("  node: \"gw 1\"\n  state_url_env: PW\n", "cluster.node");
    bad(
        "  node: gw-1\n  state_url_env: PW\n  heartbeat: 2s\n  lapse: 3s\n",
        "cluster.lapse: must be at least twice the heartbeat",
    );
    bad(
        "  node: gw-1\n  state_url_env: PW\n  nodes: 3\n",
        "unknown field",
    );
    // The node name from the environment: one file for every replica.
    assert_eq!(
        with("  node_env: PW\n  state_url_env: PW\n")
            .unwrap()
            .cluster
            .unwrap()
            .node,
        "pw"
    );
}

#[test]
fn http_max_connections_defaults_and_is_checked() {
    let http = "http:\n  targets:\n    api: { url: 'http://127.0.0.1:9000' }\n";
    let c = load(&format!("{MINIMAL}{http}")).unwrap();
    assert_eq!(
        c.http.unwrap().max_connections,
        http_gateway::DEFAULT_MAX_CONNECTIONS
    );
    let set = http.replace("http:\n", "http:\n  max_connections: 2\n");
    let c = load(&format!("{MINIMAL}{set}")).unwrap();
    assert_eq!(c.http.unwrap().max_connections, 2);
    let zero = http.replace("http:\n", "http:\n  max_connections: 0\n");
    let e = load(&format!("{MINIMAL}{zero}")).unwrap_err().to_string();
    assert!(e.contains("http.max_connections"), "{e}");
}
