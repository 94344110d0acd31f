//! The session's memo of its judgments (src/session/judge_memo.rs): a statement sent
//! again on the same connection is judged again whenever anything its judgment read
//! has changed: the rules, the catalog, the search_path, or a single byte of its text.
//! Each test sends the same text several times first, so the memo holds it.

use tokio_postgres::SimpleQueryMessage;

use crate::harness::*;

fn rules_dir(text: &str) -> TempDir {
    let dir = TempDir::new("pgmoat-memo");
    std::fs::write(dir.path().join("rules.yaml"), text).unwrap();
    dir
}

/// The text values of the first column named `col` in a simple query's rows.
fn column(msgs: &[SimpleQueryMessage], col: &str) -> Vec<Option<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(col).map(str::to_owned)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_reload_judges_a_repeated_statement_again() {
    let t = unique("memo_reload");
    let dir = rules_dir("rules: []\n");
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    let c = gw.connect().await;
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1)"
    ))
    .await
    .unwrap();
    let sql = format!("SELECT id FROM {t}");
    for _ in 0..3 {
        let rows = c.simple_query(&sql).await.unwrap();
        assert_eq!(column(&rows, "id"), [Some("1".to_string())]);
    }
    std::fs::write(
        dir.path().join("rules.yaml"),
        format!("rules:\n  - id: no-{t}\n    when: {{ tables: [{t}] }}\n    action: block\n"),
    )
    .unwrap();
    let (c, sql) = (&c, &sql);
    wait_for(
        "the new rules to block the repeated statement",
        WAIT_LIMIT,
        || async move {
            match c.simple_query(sql).await {
                Ok(_) => Err("still allowed".to_string()),
                Err(e) => {
                    assert_eq!(sqlstate(&e), "42501", "{e}");
                    Ok(())
                }
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_search_path_judges_a_repeated_statement_again() {
    let dir =
        rules_dir("rules:\n  - id: hr-only\n    when: { tables: [\"hr.*\"] }\n    action: block\n");
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    let c = gw.connect().await;
    for _ in 0..3 {
        // public.salaries does not exist: the server answers.
        let e = c.simple_query("SELECT * FROM salaries").await.unwrap_err();
        assert_eq!(sqlstate(&e), "42P01");
    }
    c.simple_query("SET search_path = hr, public")
        .await
        .unwrap();
    let e = c.simple_query("SELECT * FROM salaries").await.unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "42501",
        "after SET search_path it could be hr.salaries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_that_changes_the_catalog_judges_a_repeated_statement_again() {
    let t = unique("memo_ddl");
    let dir = rules_dir(
        "masks:\n  - id: pii\n    columns: [\"*.card_number\"]\n    method: partial\n    keep_last: 4\n",
    );
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    let c = gw.connect().await;
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id int, note text); INSERT INTO {t} VALUES (1, 'abcdefgh')"
    ))
    .await
    .unwrap();
    let sql = format!("SELECT * FROM {t}");
    for _ in 0..3 {
        let rows = c.simple_query(&sql).await.unwrap();
        assert_eq!(column(&rows, "note"), [Some("abcdefgh".to_string())]);
    }
    // Through the gateway, so it knows its catalog is stale.
    c.simple_query(&format!(
        "ALTER TABLE {t} RENAME COLUMN note TO card_number"
    ))
    .await
    .unwrap();
    let rows = c.simple_query(&sql).await.unwrap();
    assert_eq!(column(&rows, "card_number"), [Some("****efgh".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_differing_in_one_byte_is_judged_on_its_own() {
    let baseline = include_str!("../../rules/baseline.yaml");
    let dir = rules_dir(baseline);
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    let c = gw.connect().await;
    let t = unique("memo_byte");
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id int); INSERT INTO {t} VALUES (1)"
    ))
    .await
    .unwrap();
    // Same shape, other literals: `2 = 1` deletes nothing; `1 = 1` is a tautology.
    for _ in 0..3 {
        c.simple_query(&format!("DELETE FROM {t} WHERE 2 = 1"))
            .await
            .unwrap();
    }
    let e = c
        .simple_query(&format!("DELETE FROM {t} WHERE 1 = 1"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    // And the exact repeat of an allowed text stays allowed, the refused one refused.
    c.simple_query(&format!("DELETE FROM {t} WHERE 2 = 1"))
        .await
        .unwrap();
    let e = c
        .simple_query(&format!("DELETE FROM {t} WHERE 1 = 1"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    let rows = c
        .simple_query(&format!("SELECT id FROM {t}"))
        .await
        .unwrap();
    assert_eq!(column(&rows, "id"), [Some("1".to_string())]);
}
