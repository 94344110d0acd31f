//! `pgmoat quickstart`: a throwaway Postgres with fake PII, and the gateway in front of
//! it, so a newcomer sees pgmoat work in one command. Ctrl-C removes everything.

use std::fmt::Write as _;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;
use thiserror::Error;
use tokio::process::{Child, Command};

use crate::config::Config;
use crate::net::Gateway;

#[derive(Debug, Error)]
pub enum QuickstartError {
    /// No server binaries, and they could not be installed here: says how.
    #[error("{0}")]
    NoPostgres(String),
    #[error("{0}")]
    Setup(String),
}

fn setup(msg: impl Into<String>) -> QuickstartError {
    QuickstartError::Setup(msg.into())
}

pub use crate::setup::find_postgres_bindir;

/// The unprivileged user to run Postgres as when we are root (Postgres refuses root).
fn unprivileged_user() -> Option<(u32, u32)> {
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    if me != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == wanted {
                if let (Ok(u), Ok(g)) = (f[2].parse(), f[3].parse()) {
                    return Some((u, g));
                }
            }
        }
    }
    None
}

fn random_secret(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// The MCP endpoint's port: 8808 (SPEC section 7's example) when free, else any.
fn mcp_port() -> Result<u16, QuickstartError> {
    match std::net::TcpListener::bind("127.0.0.1:8808") {
        Ok(_) => Ok(8808),
        Err(_) => free_port(),
    }
}

fn free_port() -> Result<u16, QuickstartError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| setup(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| setup(e.to_string()))?.port())
}

/// Everything the quickstart created; removed on drop, whatever happened.
struct Scratch {
    dir: PathBuf,
    bindir: PathBuf,
    user: Option<(u32, u32)>,
    postgres: Option<Child>,
}

impl Scratch {
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c.env("LC_ALL", "C").current_dir(&self.dir);
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.postgres.is_some() {
            // A fast shutdown, as the server's own user; then make sure.
            let mut stop = std::process::Command::new(self.bindir.join("pg_ctl"));
            stop.args(["stop", "-m", "fast", "-w", "-D"])
                .arg(self.data());
            if let Some((uid, gid)) = self.user {
                use std::os::unix::process::CommandExt;
                stop.uid(uid).gid(gid);
            }
            let _ = stop
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if let Some(mut child) = self.postgres.take() {
                let _ = child.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The demo data: made-up people. The SSNs use the 9xx area, never issued; the card
/// numbers are the well-known test numbers (Luhn-valid, never real).
fn demo_sql() -> String {
    let first = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Leslie",
    ];
    let last = [
        "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
        "Perlman", "Lamport",
    ];
    let cards = [
        "4111111111111111",
        "5555555555554444",
        "4012888888881881",
        "378282246310005",
        "6011111111111117",
    ];
    let mut sql = String::from(
        "CREATE TABLE users (
            id serial PRIMARY KEY,
            name text NOT NULL,
            email text NOT NULL,
            ssn text NOT NULL,
            card_number text,
            created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE orders (
            id serial PRIMARY KEY,
            user_id int NOT NULL REFERENCES users(id),
            amount numeric(10,2) NOT NULL,
            status text NOT NULL DEFAULT 'open',
            created_at timestamptz NOT NULL DEFAULT now());
         CREATE SCHEMA hr;
         CREATE TABLE hr.salaries (user_id int PRIMARY KEY REFERENCES users(id), salary numeric(10,2) NOT NULL);
         INSERT INTO users (name, email, ssn, card_number) VALUES ",
    );
    for i in 0..20 {
        let (f, l) = (first[i % 10], last[(i * 3 + 1) % 10]);
        let _ = write!(
            sql,
            "{}('{f} {l}', '{}.{}{}@example.com', '9{:02}-{:02}-{:04}', '{}')",
            if i == 0 { "" } else { ", " },
            f.to_lowercase(),
            l.to_lowercase(),
            i,
            (i * 7) % 100,
            (i * 13 + 11) % 100,
            (i * 389 + 1234) % 10000,
            cards[i % cards.len()]
        );
    }
    sql.push_str(
        ";
         INSERT INTO orders (user_id, amount, status)
            SELECT 1 + (g % 20), round((10 + (g * 37) % 490)::numeric, 2), (ARRAY['open','paid','shipped'])[1 + g % 3]
            FROM generate_series(1, 60) g;
         INSERT INTO hr.salaries SELECT id, 50000 + id * 1750 FROM users;",
    );
    sql
}

/// tokio-postgres says only "db error" in Display; the server's message is in the source.
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

async fn run_checked(mut cmd: Command, what: &str) -> Result<(), QuickstartError> {
    let out = cmd
        .output()
        .await
        .map_err(|e| setup(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(setup(format!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

async fn connect(
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Run the quickstart until `stop` resolves.
pub async fn run(
    port: u16,
    admin_port: u16,
    stop: impl Future<Output = ()>,
) -> Result<(), QuickstartError> {
    // Installed with apt-get when missing and run as root; otherwise the command to run.
    let bindir = tokio::task::spawn_blocking(crate::setup::ensure_postgres)
        .await
        .map_err(|e| setup(e.to_string()))?
        .map_err(QuickstartError::NoPostgres)?;
    let user = unprivileged_user();
    let dir = std::env::temp_dir().join(format!("pgmoat-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| setup(format!("{}: {e}", dir.display())))?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        bindir,
        user,
        postgres: None,
    };
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| setup(format!("chown {}: {e}", dir.display())))?;
    }

    let super_pw = random_secret(24);
    let app_pw = random_secret(24);
    let agent_pw = random_secret(12);
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, &super_pw).map_err(|e| setup(e.to_string()))?;
    if let Some((uid, gid)) = user {
        let _ = std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid));
    }

    eprintln!(
        "pgmoat quickstart: creating a throwaway Postgres in {} ...",
        dir.display()
    );
    let mut initdb = scratch.command("initdb");
    initdb
        .arg("-D")
        .arg(scratch.data())
        .args([
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()));
    run_checked(initdb, "initdb").await?;

    let pg_port = free_port()?;
    let log = std::fs::File::create(dir.join("postgres.log")).map_err(|e| setup(e.to_string()))?;
    let log2 = log.try_clone().map_err(|e| setup(e.to_string()))?;
    let mut postgres = scratch.command("postgres");
    postgres
        .arg("-D")
        .arg(scratch.data())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
        ])
        .arg(format!("port={pg_port}"))
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true);
    scratch.postgres = Some(
        postgres
            .spawn()
            .map_err(|e| setup(format!("starting postgres: {e}")))?,
    );

    let started = Instant::now();
    let admin = loop {
        match connect(pg_port, "postgres", &super_pw, "postgres").await {
            Ok(c) => break c,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => {
                return Err(setup(format!(
                    "Postgres did not start: {e}\n{}",
                    scratch.log_tail()
                )))
            }
        }
    };
    // Two messages: CREATE DATABASE cannot share a transaction with anything.
    for sql in [
        format!("CREATE ROLE app_rw LOGIN PASSWORD '{app_pw}'"),
        "CREATE DATABASE demo OWNER app_rw".into(),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .map_err(|e| setup(format!("creating the demo database: {}", pg_error(&e))))?;
    }
    let app = connect(pg_port, "app_rw", &app_pw, "demo")
        .await
        .map_err(|e| setup(format!("connecting as app_rw: {}", pg_error(&e))))?;
    app.batch_execute(&demo_sql())
        .await
        .map_err(|e| setup(format!("loading the demo schema: {}", pg_error(&e))))?;
    drop(app);
    drop(admin);

    // The shipped baseline rules, so the demo shows blocks.
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).map_err(|e| setup(e.to_string()))?;
    std::fs::write(
        rules_dir.join("baseline.yaml"),
        include_str!("../rules/baseline.yaml"),
    )
    .map_err(|e| setup(e.to_string()))?;
    std::fs::write(
        rules_dir.join("masks.yaml"),
        include_str!("../rules/masks.yaml"),
    )
    .map_err(|e| setup(e.to_string()))?;
    std::fs::write(
        rules_dir.join("approvals.yaml"),
        "# Agents' changes to orders wait for a DBA (pgmoat approvals approve ID --by alice).
rules:
  - id: agent-order-changes-need-approval
    description: A DBA approves agents' changes to orders.
    when: { groups: [agents], tables_written: [orders] }
    action: approve
    approvers: [dba]
",
    )
    .map_err(|e| setup(e.to_string()))?;
    let mcp_port = mcp_port()?;
    let yaml = format!(
        "listen: 127.0.0.1:{port}
rules: rules/
mcp:
  listen: 127.0.0.1:{mcp_port}
admin:
  listen: 127.0.0.1:{admin_port}
  token_env: PGMOAT_ADMIN_TOKEN
  groups: [dba]
targets:
  demo:
    host: 127.0.0.1
    port: {pg_port}
    database: demo
    user: app_rw
    password_env: DEMO_DB_PASSWORD
    tls: disable
identities:
  users:
    - name: agent-1
      password_env: AGENT1_PASSWORD
      token_env: AGENT1_TOKEN
      groups: [agents]
    - name: alice
      password_env: ALICE_PASSWORD
      groups: [dba]
approvals:
  timeout: 10m
"
    );
    let admin_token = random_secret(24);
    let alice_pw = random_secret(16);
    let agent_token = random_secret(32);
    let env = |name: &str| match name {
        "DEMO_DB_PASSWORD" => Some(app_pw.clone()),
        "AGENT1_PASSWORD" => Some(agent_pw.clone()),
        "AGENT1_TOKEN" => Some(agent_token.clone()),
        "ALICE_PASSWORD" => Some(alice_pw.clone()),
        "PGMOAT_ADMIN_TOKEN" => Some(admin_token.clone()),
        _ => None,
    };
    let config = Config::from_yaml(&yaml, "quickstart config", &dir, &env)
        .map_err(|e| setup(e.to_string()))?;
    let gateway = Gateway::bind(config).await.map_err(|e| {
        let e = e.to_string();
        if e.contains("in use") || e.contains("listen") {
            setup(format!(
                "{e}\n(is something else on port {port}? try `pgmoat quickstart --port 7432`)"
            ))
        } else {
            setup(e)
        }
    })?;

    let psql = format!(
        "PGPASSWORD={agent_pw} psql \"host=127.0.0.1 port={port} dbname=demo user=agent-1\""
    );
    println!(
        "
pgmoat is running in front of a throwaway Postgres with fake PII.

  gateway    127.0.0.1:{port}  (target \"demo\" -> Postgres on 127.0.0.1:{pg_port})
  admin API  http://127.0.0.1:{admin_port}/healthz  and  /metrics
  console    http://127.0.0.1:{admin_port}/ui/  (sign in with the admin token {admin_token}
             and the name you approve as, e.g. alice: approvals, sessions, audit replay, rules)

Connect as the demo agent. Its password is pgmoat's; the database password never leaves pgmoat:

  {psql}

Try:

  {psql} -c \"SELECT name, email, ssn, card_number FROM users LIMIT 3\"
      (masked by rules/masks.yaml: ***-**-6789, j***@example.com; try aliases, upper(ssn), row_to_json(u))
  {psql} -c \"DELETE FROM users\"
      (blocked by rule \"no-unbounded-writes\": the baseline rules in rules/baseline.yaml are loaded)
  {psql} -c \"DROP TABLE users\"
      (blocked by rule \"no-drop\"; see why with: pgmoat explain --rules rules/ \"DROP TABLE users\")
  {psql} -c \"SELECT current_user, application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()\"
      (the server sees its own role app_rw, and the identity agent-1 in application_name)
  {psql} -c \"SELECT status, count(*), sum(amount) FROM orders GROUP BY 1\"
  {psql} -c \"UPDATE orders SET status = 'shipped' WHERE id = 1\"
      (held for approval: psql waits and shows the request id; in another terminal:
         PGMOAT_ADMIN_TOKEN={admin_token} cargo run --release -- approvals --admin http://127.0.0.1:{admin_port} list
         PGMOAT_ADMIN_TOKEN={admin_token} cargo run --release -- approvals --admin http://127.0.0.1:{admin_port} approve ID --by alice
       and the UPDATE completes; `deny ID --by alice --reason ...` makes it fail with 42501)

Agents can use the MCP endpoint instead (same rules, masks, approvals and audit):

  URL    http://127.0.0.1:{mcp_port}/mcp
  token  {agent_token}   (send as Authorization: Bearer; the identity is agent-1)

  for example:  claude mcp add --transport http pgmoat http://127.0.0.1:{mcp_port}/mcp \\
                  --header \"Authorization: Bearer {agent_token}\"

The SQL admin console, for alice (group dba, in admin.groups), as PgBouncer's:

  PGPASSWORD={alice_pw} psql \"host=127.0.0.1 port={port} dbname=pgmoat user=alice\"
      SHOW APPROVALS;  APPROVE 'ap-...' REASON 'ok' FOR '30m';  DENY 'ap-...' REASON 'no';
      SHOW SESSIONS;  SHOW RULES;  SHOW STATS;  RELOAD;  EXPLAIN AS 'agent-1' 'DELETE FROM users';

Press Ctrl-C to stop; everything the quickstart created is removed.
"
    );
    gateway.run(stop).await;
    eprintln!(
        "pgmoat quickstart: stopping Postgres and removing {} ...",
        dir.display()
    );
    drop(scratch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_sql_has_twenty_people() {
        let sql = demo_sql();
        assert_eq!(sql.matches("@example.com").count(), 20);
        assert!(sql.contains("CREATE SCHEMA hr"));
    }
}
