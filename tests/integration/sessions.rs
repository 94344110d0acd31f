//! `GET /api/v1/sessions` and `POST /api/v1/sessions/{id}/terminate`: live sessions
//! with what they run, and an operator ending one as `pg_terminate_backend` would.

use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "admin-token";

async fn sessions(gw: &TestGateway) -> (u16, Vec<Value>) {
    let (code, body) = http(
        gw.admin.unwrap(),
        &format!(
            "GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        ),
    )
    .await;
    let list = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    (code, list)
}

#[tokio::test]
async fn live_sessions_are_listed_and_can_be_terminated() {
    let store = TempDir::new("sessions-audit");
    let (_pg, gw) = start_with(&format!(
        "audit:\n  dir: {}\n  durability: batch\n",
        store.path().display()
    ))
    .await;
    let admin = gw.admin.unwrap();

    // Without the token: nothing.
    let (code, _) = http_get(admin, "/api/v1/sessions").await;
    assert_eq!(code, 401);

    let idle = gw.connect().await;
    idle.simple_query("SELECT 1").await.unwrap();
    let busy = gw.connect().await;
    let running = tokio::spawn(async move { busy.simple_query("SELECT pg_sleep(60)").await });

    let list = wait_for(
        "the busy session's statement in the list",
        WAIT_LIMIT,
        || async {
            let (code, list) = sessions(&gw).await;
            if code != 200 {
                return Err(format!("status {code}"));
            }
            match list
                .iter()
                .find(|s| s["running"].as_str() == Some("SELECT pg_sleep(60)"))
            {
                Some(_) => Ok(list),
                None => Err(format!("{list:?}")),
            }
        },
    )
    .await;
    assert_eq!(list.len(), 2, "{list:?}");
    for s in &list {
        assert_eq!(s["identity"], AGENT);
        assert_eq!(s["target"], "demo");
        assert_eq!(s["protocol"], "postgres");
        assert!(s["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(s["started_at"].as_str().unwrap().ends_with('Z'));
    }
    let quiet = list.iter().find(|s| s["running"] != "SELECT pg_sleep(60)");
    assert_eq!(quiet.unwrap()["statements"], 1, "{list:?}");
    let busy_id = list
        .iter()
        .find(|s| s["running"] == "SELECT pg_sleep(60)")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Unknown ids and a missing token change nothing.
    let (code, _) = http_post(
        admin,
        "/api/v1/sessions/s-999999/terminate",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(code, 404);
    let path = format!("/api/v1/sessions/{busy_id}/terminate");
    let (code, _) = http_post(admin, &path, None, "").await;
    assert_eq!(code, 401);

    let (code, body) = http_post(admin, &path, Some(TOKEN), "").await;
    assert_eq!(code, 200, "{body}");
    let err = tokio::time::timeout(WAIT_LIMIT, running)
        .await
        .expect("the terminated statement ends at once")
        .unwrap()
        .expect_err("a terminated session's statement fails");
    assert_eq!(sqlstate(&err), "57P01", "{err}");

    // The other session is untouched; the ended one is gone from the list.
    idle.simple_query("SELECT 2").await.unwrap();
    gw.wait_sessions(1).await;
    let (_, list) = sessions(&gw).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_ne!(list[0]["id"], busy_id.as_str());
    drop(idle);
    gw.wait_idle().await;
    wait_until("session_end of the terminated session", WAIT_LIMIT, || {
        let dir = store.path().to_path_buf();
        async move {
            std::fs::read_dir(&dir).unwrap().any(|e| {
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap_or_default()
                    .contains("terminated by an operator")
            })
        }
    })
    .await;
}
