//! Masking on the synchronous pass (issue 19, step B2): in a session that masks and
//! keeps an audit trail (the agent configuration), prepared cycles whose statements
//! read nothing masked go through the relay's synchronous pass, so a masked
//! statement pipelined with them must still be masked, and the unmasked ones must
//! come back byte for byte as Postgres sent them.

use std::net::SocketAddr;

use crate::harness::*;
use crate::masking::fixture_with;

/// Prepare `m` (reads masked columns) and `u` (reads none) on `raw`, then run them
/// alternately, pipelined in one write: `B D E` for each with one Sync for a pair,
/// then each with its own Sync. Returns the messages of each cycle.
async fn alternate(raw: &mut Raw, masked_sql: &str, unmasked_sql: &str) -> Vec<Vec<Msg>> {
    let mut prep = parse_msg("m", masked_sql);
    prep.extend(parse_msg("u", unmasked_sql));
    prep.extend(message(b'S', b""));
    raw.send(&prep).await;
    let parsed = raw.until_ready().await;
    assert_eq!(tags(&parsed), "11Z", "{parsed:?}");
    let run = |stmt: &str| {
        let mut b = format!("\0{stmt}\0").into_bytes();
        b.extend([0, 0, 0, 0, 0, 0]);
        let mut m = message(b'B', &b);
        m.extend(message(b'D', b"P\0"));
        m.extend(message(b'E', b"\0\0\0\0\0"));
        m
    };
    let sync = message(b'S', b"");
    let mut script = Vec::new();
    let mut cycles = 0;
    for _ in 0..3 {
        // A pair under one Sync...
        script.extend(run("m"));
        script.extend(run("u"));
        script.extend(&sync);
        // ... and each alone.
        script.extend(run("u"));
        script.extend(&sync);
        script.extend(run("m"));
        script.extend(&sync);
        cycles += 3;
    }
    raw.send(&script).await;
    let mut out = Vec::new();
    for _ in 0..cycles {
        out.push(raw.until_ready().await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_alternating_masked_and_unmasked_prepared_statements_masks_only_the_masked() {
    let store = TempDir::new("pgmoat-masking-pass");
    let f = fixture_with(
        "",
        &format!(
            "audit:\n  dir: {}\n  durability: batch\n",
            store.path().display()
        ),
    )
    .await;
    let masked_sql = f.sql("SELECT id, ssn, email FROM {t} ORDER BY id");
    let unmasked_sql = f.sql("SELECT id, name, note FROM {t} ORDER BY id");
    let mut agent = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .expect("agent login");
    let through = alternate(&mut agent, &masked_sql, &unmasked_sql).await;
    let pg_addr: SocketAddr = format!("127.0.0.1:{}", f.pg.port).parse().unwrap();
    let mut direct = Raw::login(pg_addr, APP_ROLE, APP_PW, "demo")
        .await
        .expect("direct login");
    let want = alternate(&mut direct, &masked_sql, &unmasked_sql).await;
    assert_eq!(through.len(), want.len());
    let mut masked_cycles = 0;
    for (i, (got, want)) in through.iter().zip(&want).enumerate() {
        assert_eq!(tags(got), tags(want), "cycle {i}: the same messages");
        for (g, w) in got.iter().zip(want) {
            let text = String::from_utf8_lossy(&g.body);
            f.assert_clean(&format!("cycle {i}"), &text);
            if g.tag != b'D' {
                assert_eq!(g.body, w.body, "cycle {i}: '{}' as sent", g.tag as char);
            }
        }
        let rows = data_rows(got);
        // Cycle 0 of each three is the pair (masked, then unmasked), 1 the unmasked
        // alone, 2 the masked alone.
        let (masked_rows, clean_rows): (Vec<&Msg>, Vec<&Msg>) = match i % 3 {
            0 => {
                let d: Vec<&Msg> = got.iter().filter(|m| m.tag == b'D').collect();
                (d[..3].to_vec(), d[3..].to_vec())
            }
            1 => (Vec::new(), got.iter().filter(|m| m.tag == b'D').collect()),
            _ => (got.iter().filter(|m| m.tag == b'D').collect(), Vec::new()),
        };
        let want_rows: Vec<&Msg> = want.iter().filter(|m| m.tag == b'D').collect();
        let (want_masked, want_clean) = match i % 3 {
            0 => (want_rows[..3].to_vec(), want_rows[3..].to_vec()),
            1 => (Vec::new(), want_rows.clone()),
            _ => (want_rows.clone(), Vec::new()),
        };
        for (g, w) in clean_rows.iter().zip(&want_clean) {
            assert_eq!(g.body, w.body, "cycle {i}: an unmasked row is byte-exact");
        }
        assert_eq!(clean_rows.len(), want_clean.len(), "cycle {i}: {rows:?}");
        assert_eq!(masked_rows.len(), want_masked.len(), "cycle {i}: {rows:?}");
        for (g, w) in masked_rows.iter().zip(&want_masked) {
            assert_ne!(g.body, w.body, "cycle {i}: a masked row differs");
            masked_cycles += 1;
        }
        if !masked_rows.is_empty() {
            let text: String = masked_rows
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned())
                .collect();
            assert!(text.contains("***-**-6789"), "cycle {i}: {text}");
            assert!(text.contains("a***@example.com"), "cycle {i}: {text}");
        }
    }
    assert_eq!(masked_cycles, 6 * 3, "six masked executions of three rows");
    drop(agent);
    f.gw.wait_idle().await;
    // The trail: one completion per execution (twelve), kept rows as the client saw
    // them.
    let text = wait_for("the executions' completed records", WAIT_LIMIT, || async {
        let mut all = String::new();
        for e in std::fs::read_dir(store.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "jsonl") {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        if all.matches("\"rows\":3").count() >= 12 {
            Ok(all)
        } else {
            Err(all)
        }
    })
    .await;
    f.assert_clean("the audit trail", &text);
    assert!(text.contains("***-**-6789"), "{text}");
    assert!(text.contains("\"Ada\""), "{text}");
}
