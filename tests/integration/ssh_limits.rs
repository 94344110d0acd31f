//! The SSH door's failed-login accounting (review L2): keys offered in vain are
//! audited but lock nobody out. (SSH sessions taking tenant seats: door_tenants.rs.)

use crate::ssh_env::{keys, ssh, start_with};

const AGENT: &str = "agent-1+web-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_offered_in_vain_are_audited_and_lock_nobody_out() {
    let limits = "limits:\n  auth_failures: 2\n";
    let (gw, _clock) = start_with("rules: []\n", limits).await;
    let k = keys();
    let both = ["-i".to_string(), k.agent.display().to_string()];
    let both: Vec<&str> = both.iter().map(String::as_str).collect();
    // The stranger's key is offered first, then the agent's own: more times than the
    // failures that lock an address out. Each login still succeeds.
    for i in 0..4 {
        let r = ssh(&gw, &k.stranger, AGENT, &both, Some("echo in"), None).await;
        assert_eq!(
            (r.status, r.out().as_str()),
            (0, "in\n"),
            "login {i}: {r:?}"
        );
    }
    // Each key offered in vain is in the trail all the same.
    let refused = gw
        .records_of("auth_failure")
        .into_iter()
        .filter(|f| {
            f["reason"]
                .as_str()
                .unwrap_or("")
                .contains("public key not accepted")
        })
        .count();
    assert!(refused >= 4, "{refused} auth_failure records");

    gw.shutdown().await;
}
