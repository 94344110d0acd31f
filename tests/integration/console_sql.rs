//! The SQL admin console (`psql -d pgmoat`, SPEC 12) driven with stock psql: every
//! command against a live gateway with a statement held for approval, and the 42501
//! (outside admin.groups) and 42601 (unknown command) refusals.

use std::process::Output;

use tokio_postgres::Client;

use crate::common::pg::TestPg;
use crate::harness::*;

const ADMIN: &str = "alice";
const OUTSIDER: &str = "bob";

struct Fx {
    pg: &'static TestPg,
    gw: TestGateway,
    table: String,
    rules: TempDir,
    _store: TempDir,
    _direct: Client,
}

async fn fixture() -> Fx {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let table = unique("console_orders");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, status text);
             INSERT INTO {table} SELECT i, 'open' FROM generate_series(1, 20) i"
        ))
        .await
        .unwrap();
    let rules = TempDir::new("pgmoat-console-rules");
    std::fs::write(
        rules.path().join("rules.yaml"),
        format!(
            "rules:
  - id: agent-writes-need-approval
    description: Agents' writes to orders wait for a DBA.
    when: {{ groups: [agents], tables_written: [{table}] }}
    action: approve
    approvers: [dba]
  - id: no-drop
    description: Nobody drops tables.
    when: {{ statement: [drop] }}
    action: block
"
        ),
    )
    .unwrap();
    let store = TempDir::new("pgmoat-console-audit");
    let yaml = config_yaml(
        pg,
        &format!(
            "rules: {}
audit:
  dir: {}
  durability: batch
approvals:
  timeout: 2m
",
            rules.path().display(),
            store.path().display()
        ),
    )
    .replace(
        "  token_env: ADMIN_TOKEN\n",
        "  token_env: ADMIN_TOKEN\n  groups: [dba]\n",
    )
    .replace(
        "      groups: [agents]\n",
        &format!("      groups: [agents]\n    - {{ name: {ADMIN}, password_env: AGENT_PW, groups: [dba] }}\n    - {{ name: {OUTSIDER}, password_env: AGENT_PW, groups: [dev] }}\n"),
    );
    let gw = start_yaml(&yaml, test_env()).await;
    Fx {
        pg,
        gw,
        table,
        rules,
        _store: store,
        _direct: direct,
    }
}

impl Fx {
    /// `psql -d pgmoat` as `user`, unaligned, tuples only, `|` between columns,
    /// SQLSTATEs in errors; each of `commands` as its own `-c`.
    async fn psql(&self, user: &str, commands: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(self.pg.psql());
        cmd.env("PGPASSWORD", AGENT_PW)
            .arg(format!(
                "host=127.0.0.1 port={} user={user} dbname=pgmoat sslmode=disable",
                self.gw.addr.port()
            ))
            .args(["-X", "-w", "-A", "-t", "-F", "|", "-v", "VERBOSITY=verbose"]);
        for c in commands {
            cmd.args(["-c", c]);
        }
        cmd.output().await.unwrap()
    }

    async fn ok(&self, commands: &[&str]) -> String {
        let out = self.psql(ADMIN, commands).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{commands:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// An agent session sends `sql` (a write to the table, marked by the literal
    /// `marker`) that waits for approval; once it shows in `SHOW APPROVALS`: the
    /// waiting call and the request's row.
    async fn hold(
        &self,
        sql: String,
        marker: &str,
    ) -> (
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
        Vec<String>,
    ) {
        let c = self.gw.connect().await;
        let mut held = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
        if let Ok(r) = tokio::time::timeout(std::time::Duration::from_millis(300), &mut held).await
        {
            panic!("the statement was not held: {r:?}");
        }
        let row = wait_for("the held update in SHOW APPROVALS", WAIT_LIMIT, || async {
            let out = self.ok(&["SHOW APPROVALS"]).await;
            out.lines()
                .find(|l| l.contains(&format!("'{marker}'")))
                .map(|l| l.split('|').map(str::to_owned).collect::<Vec<_>>())
                .ok_or(out)
        })
        .await;
        (held, row)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_every_console_command() {
    let fx = fixture().await;

    // SHOW RULES: the loaded rules and the default.
    let rules = fx.ok(&["SHOW RULES"]).await;
    assert!(
        rules.contains(
            "agent-writes-need-approval|approve|dba|Agents' writes to orders wait for a DBA."
        ),
        "{rules}"
    );
    assert!(
        rules.contains("no-drop|block||Nobody drops tables."),
        "{rules}"
    );
    assert!(rules.contains("default|allow|"), "{rules}");
    // Each rule's file:line, the line of its `id:`.
    let file = fx.rules.path().join("rules.yaml");
    assert!(
        rules.contains(&format!("Nobody drops tables.|{}:7", file.display())),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("wait for a DBA.|{}:2", file.display())),
        "{rules}"
    );

    // A held statement: listed with its door, identity, target, SQL and rule.
    let (held, row) = fx
        .hold(
            format!("UPDATE {} SET status = 'approved' WHERE id = 1", fx.table),
            "approved",
        )
        .await;
    assert!(row[0].starts_with("ap-"), "{row:?}");
    assert_eq!(&row[1..4], &["postgres", AGENT, "demo"], "{row:?}");
    assert!(
        row[4].starts_with(&format!("UPDATE {}", fx.table)),
        "{row:?}"
    );
    assert_eq!(
        &row[5..7],
        &["agent-writes-need-approval", "dba"],
        "{row:?}"
    );

    // SHOW SESSIONS: the agent's session with the statement it waits in, and the
    // console's own.
    let sessions = fx.ok(&["SHOW SESSIONS"]).await;
    let agent = sessions
        .lines()
        .find(|l| l.contains(&format!("|{AGENT}|demo|")))
        .unwrap_or_else(|| panic!("{sessions}"));
    assert!(
        agent.contains("|postgres|") && agent.contains(&format!("UPDATE {}", fx.table)),
        "{agent}"
    );
    assert!(
        sessions.contains(&format!("|{ADMIN}|pgmoat|")),
        "{sessions}"
    );

    // APPROVE with a reason and a grant: the tag, and the waiting statement completes.
    let approve = format!("APPROVE '{}' REASON 'ticket 42' FOR '5m'", row[0]);
    assert_eq!(fx.ok(&[&approve]).await.trim(), "APPROVE");
    held.await.unwrap().expect("the approved update runs");
    // Deciding it again: it is gone (42704), said in one line.
    let again = fx.psql(ADMIN, &[&approve]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("ERROR:  42704"),
        "{again:?}"
    );

    // DENY: the waiting statement fails, and nothing is pending any more. (Another
    // shape: the approval above granted its shape for 5 minutes.)
    let (held, row) = fx
        .hold(
            format!("DELETE FROM {} WHERE status = 'denied'", fx.table),
            "denied",
        )
        .await;
    let deny = format!("DENY '{}' REASON 'not during the freeze'", row[0]);
    assert_eq!(fx.ok(&[&deny]).await.trim(), "DENY");
    let e = held.await.unwrap().expect_err("a denied update fails");
    assert!(
        e.to_string().contains("not during the freeze") || sqlstate(&e) == "42501",
        "{e}"
    );
    assert_eq!(fx.ok(&["SHOW APPROVALS"]).await.trim(), "");

    // EXPLAIN, as the admin and as another identity.
    let drop = fx.ok(&["EXPLAIN 'DROP TABLE t'"]).await;
    assert!(drop.starts_with("block|no-drop|rule \"no-drop\""), "{drop}");
    let write = format!(
        "EXPLAIN AS '{AGENT}' 'UPDATE {} SET status = ''x'' WHERE id = 2'",
        fx.table
    );
    let explained = fx.ok(&[&write]).await;
    assert!(
        explained.starts_with("approve|agent-writes-need-approval|"),
        "{explained}"
    );
    assert!(
        explained.contains(&format!("|update||public.{}|", fx.table))
            || explained.contains(&format!("|public.{}|", fx.table)),
        "{explained}"
    );
    let nobody = fx.psql(ADMIN, &["EXPLAIN AS 'nobody' 'SELECT 1'"]).await;
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("ERROR:  42704"),
        "{nobody:?}"
    );

    // SHOW STATS: the metrics the API shows, plus live sessions.
    let stats = fx.ok(&["SHOW STATS"]).await;
    assert!(stats.contains("pgmoat_connections_total|"), "{stats}");
    assert!(stats.contains("sessions_live|"), "{stats}");

    // RELOAD: a new rule takes effect; a broken file is refused and the old rules stay.
    std::fs::write(
        fx.rules.path().join("more.yaml"),
        "rules:\n  - id: no-truncate\n    when: { statement: [truncate] }\n    action: block\n",
    )
    .unwrap();
    assert_eq!(fx.ok(&["RELOAD"]).await.trim(), "RELOAD");
    assert!(fx.ok(&["SHOW RULES"]).await.contains("no-truncate|block"));
    std::fs::write(
        fx.rules.path().join("broken.yaml"),
        "rules: [ {id: x, action: nope} ]\n",
    )
    .unwrap();
    let refused = fx.psql(ADMIN, &["RELOAD"]).await;
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("ERROR:  F0000") && err.contains("old rules stay in force"),
        "{err}"
    );
    assert!(fx.ok(&["SHOW RULES"]).await.contains("no-truncate|block"));

    // Several commands in one query string: each answered, in order.
    let both = fx.ok(&["SHOW RULES; SHOW SESSIONS"]).await;
    assert!(
        both.contains("no-drop|block") && both.contains("|pgmoat|"),
        "{both}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_outsiders_and_unknown_commands() {
    let fx = fixture().await;
    // Outside admin.groups: 42501 at connection, for psql and for a driver.
    let out = fx.psql(OUTSIDER, &["SHOW SESSIONS"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may not use the admin console"), "{err}");
    let e = fx
        .gw
        .connect_as(AGENT, AGENT_PW, "pgmoat")
        .await
        .expect_err("an agent is refused the console");
    assert_eq!(sqlstate(&e), "42501", "{e}");
    // A wrong password is still an authentication failure, not a console refusal.
    let e = fx
        .gw
        .connect_as(ADMIN, "wrong", "pgmoat")
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(sqlstate(&e), "28P01", "{e}");

    // Unknown commands (SQL included) get 42601 naming what the console knows; the
    // session stays usable.
    let out = fx.psql(ADMIN, &["SELECT 1", "SHOW POOLS"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR:  42601: unknown pgmoat console command \"SELECT\""),
        "{err}"
    );
    assert!(err.contains("SHOW SESSIONS, SHOW APPROVALS"), "{err}");
    assert!(err.contains("\"SHOW POOLS\""), "{err}");
    let c = fx.gw.connect_as(ADMIN, AGENT_PW, "pgmoat").await.unwrap();
    let e = c.simple_query("DENY 'ap-1'").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601", "{e}");
    let rows = c.simple_query("SHOW RULES").await.unwrap();
    assert!(rows.len() >= 3, "still usable after an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_use_the_console_through_the_extended_protocol() {
    let fx = fixture().await;
    let c = fx.gw.connect_as(ADMIN, AGENT_PW, "pgmoat").await.unwrap();
    // tokio-postgres prepares every query and asks for binary results: typed columns.
    let rules = c.query("SHOW RULES", &[]).await.unwrap();
    let ids: Vec<String> = rules.iter().map(|r| r.get::<_, String>("id")).collect();
    assert_eq!(ids, ["agent-writes-need-approval", "no-drop", "default"]);
    let sessions = c.query("SHOW SESSIONS", &[]).await.unwrap();
    let me = sessions
        .iter()
        .find(|r| r.get::<_, String>("identity") == ADMIN)
        .expect("the console's own session");
    assert_eq!(me.get::<_, String>("target"), "pgmoat");
    assert!(me.get::<_, i64>("statements") >= 1);
    let st = c.prepare("EXPLAIN 'DROP TABLE t'").await.unwrap();
    assert_eq!(st.columns()[0].name(), "action");
    let row = c.query_one(&st, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>("action"), "block");
    assert_eq!(row.get::<_, String>("rules"), "no-drop");
    // Errors keep their SQLSTATEs; the session goes on.
    let e = c
        .execute("APPROVE 'ap-nonexistent'", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e}");
    let e = c.prepare("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601", "{e}");
    let e = c.prepare("SHOW RULES; SHOW STATS").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601", "{e}");
    assert_eq!(c.execute("RELOAD", &[]).await.unwrap(), 0);
}
