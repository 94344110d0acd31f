//! SSH logins with an OIDC token as the password: the session lasts as long as the
//! token, as a Postgres session does (SPEC sections 5 and 8).

use std::sync::Arc;
use std::time::Duration;

use crate::common::jwt::{self, claims, TestKey, AUDIENCE};
use crate::harness::{wait_for, TempDir};
use crate::ssh::{exec_on, AnyHost};
use crate::ssh_env::start_with;

const ISSUER: &str = "https://idp.pgmoat.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_session_ends_when_its_token_expires() {
    let key = TestKey::rsa("rsa-1");
    let idp = TempDir::new("pgmoat-ssh-idp");
    let jwks = idp.path().join("jwks.json");
    std::fs::write(&jwks, jwt::jwks(&[&key])).unwrap();
    let oidc = format!(
        "  oidc:\n    issuer: {ISSUER}\n    audience: {AUDIENCE}\n    jwks_file: {}\n    username_claim: email\n    groups_claim: groups\n",
        jwks.display()
    );
    let (gw, clock) = start_with("rules: []\n", &oidc).await;
    let user = "dana@example.com";
    let token = key.sign(&claims(ISSUER, user, &["ops"], 300));

    let config = Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, gw.ssh, AnyHost)
        .await
        .expect("connect");
    let auth = handle
        .authenticate_password(format!("{user}+web-1"), token)
        .await
        .expect("auth exchange");
    assert!(auth.success(), "a valid token logs in");
    let (out, _, status) = exec_on(&handle, "echo by-token").await;
    assert_eq!((out.as_str(), status), ("by-token\n", Some(0)));
    assert_eq!(gw.records_of("ssh_session_start")[0]["auth"], "token");

    // A long command is running when the token lapses (5 min + the 30 s leeway).
    let mut long = handle.channel_open_session().await.expect("channel");
    long.exec(true, "sleep 120").await.expect("exec");
    clock.advance(Duration::from_secs(331));
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = long.wait().await {
            if matches!(msg, russh::ChannelMsg::Close) {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the running channel ends with the token");
    wait_for("the connection closed", Duration::from_secs(30), || async {
        if handle.is_closed() {
            Ok(())
        } else {
            Err("still open".to_string())
        }
    })
    .await;
    let ends = wait_for("ssh_session_end", Duration::from_secs(30), || async {
        let ends = gw.records_of("ssh_session_end");
        ends.into_iter()
            .next()
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    let end = ends["end"].as_str().unwrap_or_default();
    assert!(
        end.starts_with("the session's token expired at "),
        "{ends:?}"
    );
    gw.shutdown().await;
}
