//! A real, throwaway PostgreSQL server for integration tests.
//!
//! [`TestPg::start`] runs `initdb` into a fresh directory under /tmp, writes a
//! known `postgresql.conf`/`pg_hba.conf`, starts `postgres -D` as a child
//! process and waits until it accepts connections. [`shared`] gives every test
//! in one test binary the same server, started on first use.
//!
//! Things that are easy to get wrong, and how this file handles them:
//!
//! * **Root.** Postgres refuses to run as root, and CI runs as root. When the
//!   effective uid is 0, `initdb` and `postgres` run as the `postgres` user
//!   (or `nobody`), and every file they must own is chowned to it.
//! * **Leaked servers.** A `static` is never dropped, so the shared server
//!   cannot be stopped by `Drop`. Instead every server process is started with
//!   `PR_SET_PDEATHSIG = SIGINT` (fast shutdown) so the kernel stops it when
//!   we die, however we die (normal exit, panic, abort, SIGKILL). PDEATHSIG
//!   fires when the *thread* that forked the child exits, and the test harness
//!   runs each test on a short-lived thread, so all children are forked by one
//!   dedicated spawner thread that lives as long as the process.
//! * **Stale directories.** The shared server's directory cannot be removed at
//!   exit either, so each test binary, on its first start, removes
//!   `/tmp/pgmoat-test-<pid>-*` directories whose `<pid>` is no longer alive.
//! * **Port races.** The port is picked by binding port 0 and releasing it;
//!   another process can grab it in between, so a failed bind is retried with
//!   a new port. Readiness requires both the "ready to accept connections" log
//!   line *and* a TCP connect, so someone else listening on our port can't
//!   fool us.
//!
//! Set `PGMOAT_KEEP_TEST_DIRS=1` to keep the directories of stopped servers
//! (e.g. to read a log), and `PGMOAT_PG_BINDIR` to choose the Postgres binaries.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{chown, DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Once, OnceLock};
use std::time::{Duration, Instant};

use super::certs::{self, TestCa};

/// How long a server gets to become ready before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `Drop` waits for a fast shutdown before escalating.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The log line Postgres prints once it accepts connections. Children run
/// with `LC_ALL=C` and the cluster uses `--locale=C`, so it is in English.
const READY_LINE: &str = "database system is ready to accept connections";
/// Prefix of every test directory under /tmp: `pgmoat-test-<pid>-<counter>`.
const DIR_PREFIX: &str = "pgmoat-test-";
/// Advisory-lock keys that serialize the role/database helpers, which many
/// tests may call concurrently for the same names on the shared server.
const ROLE_LOCK_KEY: i64 = 0x7067_6d6f_6174_0001;
const DB_LOCK_KEY: i64 = 0x7067_6d6f_6174_0002;

/// Options for [`TestPg::start`].
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Serve TLS with a certificate for `localhost` and `127.0.0.1` signed by a
    /// fresh test CA (see [`TestPg::ca_pem_path`]); also adds the `u_tlsonly`
    /// pg_hba rules.
    pub ssl: bool,
    /// Extra `postgresql.conf` lines, appended last (so they win).
    pub extra_conf: Vec<String>,
}

/// A running Postgres server owned by the test process.
///
/// pg_hba.conf picks the authentication method **by role name**, all over
/// TCP from 127.0.0.1 (there is no Unix socket):
///
/// | role        | method                                                   |
/// |-------------|----------------------------------------------------------|
/// | `u_tlsonly` | scram-sha-256 over TLS, rejected without (ssl only)      |
/// | `u_trust`   | trust (any or no password)                               |
/// | `u_md5`     | md5                                                      |
/// | `u_clear`   | password (cleartext)                                     |
/// | anyone else | scram-sha-256 (including the superuser `postgres`)       |
///
/// Roles other than the superuser don't exist until created with
/// [`TestPg::create_role_with_method`].
pub struct TestPg {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Always "postgres".
    pub superuser: String,
    /// The superuser's (random) password.
    pub password: String,
    /// The test's own directory, `/tmp/pgmoat-test-<pid>-<n>`; removed on drop.
    pub dir: PathBuf,
    /// The cluster's data directory, `<dir>/data`.
    pub data_dir: PathBuf,
    /// The server log, `<dir>/postgres.log` (the postmaster's stdout+stderr).
    pub log_path: PathBuf,
    /// With `ssl: true`, `<dir>/ca.crt`: the CA that signed the server cert.
    pub ca_pem_path: Option<PathBuf>,
    /// With `ssl: true`, the same CA certificate as PEM text.
    pub ca_cert_pem: Option<String>,
    bindir: PathBuf,
    /// The postmaster; `None` until spawned (so `Drop` also cleans up after a
    /// start that failed half way).
    child: Option<Child>,
}

/// How a role's password is stored and which pg_hba line it is meant for;
/// see [`TestPg::create_role_with_method`]. Converts from the strings
/// "scram"/"scram-sha-256", "md5", "password"/"clear"/"cleartext" and "trust".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Scram,
    Md5,
    /// Cleartext `password` auth (the password is still stored as SCRAM,
    /// which Postgres verifies cleartext passwords against).
    Password,
    Trust,
}

impl From<&str> for AuthMethod {
    fn from(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "scram" | "scram-sha-256" => AuthMethod::Scram,
            "md5" => AuthMethod::Md5,
            "password" | "clear" | "cleartext" => AuthMethod::Password,
            "trust" => AuthMethod::Trust,
            other => {
                panic!("unknown auth method {other:?} (want scram, md5, password/clear or trust)")
            }
        }
    }
}

/// The server shared by all tests of this test binary: default options
/// (no TLS), started by whichever test asks first; concurrent callers wait
/// for it. It is never dropped; PDEATHSIG stops it when the process exits.
///
/// Tests share it, so they should use their own role/database/table names.
pub fn shared() -> &'static TestPg {
    static SHARED: OnceLock<TestPg> = OnceLock::new();
    SHARED.get_or_init(|| {
        TestPg::start(PgOptions {
            ssl: false,
            ..PgOptions::default()
        })
    })
}

impl TestPg {
    /// Creates, configures and starts a new cluster; panics with the reason
    /// (and the relevant output or log) if anything fails.
    pub fn start(opts: PgOptions) -> TestPg {
        remove_stale_dirs_once();
        let bindir = pg_bindir().to_path_buf();
        let owner = server_user();

        let dir = new_test_dir();
        let data_dir = dir.join("data");
        // From here on, a panic unwinds through TestPg::drop, which removes
        // `dir` and stops the postmaster if it was already spawned.
        let mut pg = TestPg {
            port: 0,
            superuser: "postgres".to_string(),
            password: random_hex(16),
            log_path: dir.join("postgres.log"),
            ca_pem_path: None,
            ca_cert_pem: None,
            dir,
            data_dir,
            bindir,
            child: None,
        };

        // initdb insists on an empty (or missing) directory it can own, with
        // mode 0700; <dir> itself stays root's but world-traversable.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&pg.data_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", pg.data_dir.display()));
        give_to_server_user(&pg.data_dir, owner);

        pg.initdb(owner);
        pg.write_config(&opts, owner);

        // A failed bind (someone took our port between picking and binding)
        // is retried with a new port; anything else is fatal.
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            pg.port = free_port();
            append_lines(
                &pg.data_dir.join("postgresql.conf"),
                &[format!("port = {}", pg.port)],
            );
            match pg.spawn_and_wait(owner) {
                Ok(()) => return pg,
                Err(StartError::PortTaken) if attempt < ATTEMPTS => {
                    eprintln!("pgmoat test pg: port {} was taken, retrying", pg.port);
                    if let Some(mut child) = pg.child.take() {
                        let _ = child.wait();
                    }
                }
                Err(e) => panic!(
                    "test postgres in {} failed to start: {}\n--- log tail ---\n{}",
                    pg.dir.display(),
                    e.describe(),
                    pg.log_tail(60)
                ),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Runs initdb with a random superuser password (passed via a file so it
    /// never appears in a process list).
    fn initdb(&self, owner: Option<Owner>) {
        let pwfile = self.dir.join("pwfile");
        certs::write_file(&pwfile, &format!("{}\n", self.password), 0o600);
        give_to_server_user(&pwfile, owner);

        let mut cmd = Command::new(self.bindir.join("initdb"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args([
                "--auth=scram-sha-256",
                "-U",
                &self.superuser,
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            // Skips initdb's fsync of every file; the server runs with fsync=off anyway.
            .arg("--no-sync")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        server_command(&mut cmd, &self.dir, owner);
        let out = spawn_managed(cmd)
            .and_then(|child| child.wait_with_output())
            .unwrap_or_else(|e| panic!("running {}/initdb: {e}", self.bindir.display()));
        let _ = fs::remove_file(&pwfile);
        if !out.status.success() {
            panic!(
                "initdb into {} failed ({}):\n{}\n{}",
                self.data_dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Appends our settings to postgresql.conf, replaces pg_hba.conf and,
    /// with TLS, writes the server certificate and key.
    fn write_config(&mut self, opts: &PgOptions, owner: Option<Owner>) {
        let mut conf: Vec<String> = [
            "listen_addresses = '127.0.0.1'",
            // No Unix socket: everything, psql included, goes over TCP.
            "unix_socket_directories = ''",
            "max_connections = 300",
            // Two-phase commit is part of what the catalog must follow.
            "max_prepared_transactions = 10",
            "fsync = off",
            "log_statement = 'all'",
            "log_connections = on",
            // Log to stderr, which we redirect to <dir>/postgres.log.
            "logging_collector = off",
        ]
        .map(String::from)
        .into();

        let mut hba = Vec::new();
        if opts.ssl {
            let ca = TestCa::new();
            let (cert_pem, key_pem) = ca.server_cert(&["localhost", "127.0.0.1"]);
            // Postgres requires the key to be owned by the server user with
            // mode 0600 (or owned by root with 0640); relative paths are
            // resolved against the data directory.
            for (name, pem, mode) in [
                ("server.crt", &cert_pem, 0o644),
                ("server.key", &key_pem, 0o600),
            ] {
                let path = self.data_dir.join(name);
                certs::write_file(&path, pem, mode);
                give_to_server_user(&path, owner);
            }
            let ca_path = self.dir.join("ca.crt");
            certs::write_file(&ca_path, &ca.cert_pem, 0o644);
            self.ca_pem_path = Some(ca_path);
            self.ca_cert_pem = Some(ca.cert_pem.clone());
            conf.extend(
                [
                    "ssl = on",
                    "ssl_cert_file = 'server.crt'",
                    "ssl_key_file = 'server.key'",
                ]
                .map(String::from),
            );
            // First match wins, so the TLS-only rules come first.
            hba.push("hostssl   all u_tlsonly 127.0.0.1/32 scram-sha-256");
            hba.push("hostnossl all u_tlsonly 127.0.0.1/32 reject");
        }
        hba.extend([
            "host all u_trust 127.0.0.1/32 trust",
            "host all u_md5   127.0.0.1/32 md5",
            "host all u_clear 127.0.0.1/32 password",
            "host all all     127.0.0.1/32 scram-sha-256",
        ]);
        conf.extend(opts.extra_conf.iter().cloned());

        append_lines(&self.data_dir.join("postgresql.conf"), &conf);
        // Replaced, not appended: initdb's defaults include local/::1 lines
        // we don't want to reason about. The file keeps its owner (truncate).
        let hba_path = self.data_dir.join("pg_hba.conf");
        let mut hba_text = String::from("# written by pgmoat tests/common/pg.rs\n");
        for line in hba {
            hba_text.push_str(line);
            hba_text.push('\n');
        }
        fs::write(&hba_path, hba_text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", hba_path.display()));
        give_to_server_user(&hba_path, owner);
    }

    /// Starts the postmaster and waits for it to be ready.
    fn spawn_and_wait(&mut self, owner: Option<Owner>) -> Result<(), StartError> {
        // Appending keeps earlier attempts' output; we only look at what this
        // attempt writes.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path.display()));
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("dup of log fd: {e}"));

        let mut cmd = Command::new(self.bindir.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        server_command(&mut cmd, &self.dir, owner);
        let child = spawn_managed(cmd)
            .unwrap_or_else(|e| panic!("spawning {}/postgres: {e}", self.bindir.display()));
        let child = self.child.insert(child);

        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = read_from(&self.log_path, log_start);
                return Err(
                    if log.contains("could not bind") || log.contains("Address already in use") {
                        StartError::PortTaken
                    } else {
                        StartError::Exited(status)
                    },
                );
            }
            // Check the log first so we usually make a single probe connection
            // (each one shows up in the log as "connection received").
            if read_from(&self.log_path, log_start).contains(READY_LINE)
                && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole server log so far.
    pub fn log_contents(&self) -> String {
        read_from(&self.log_path, 0)
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log_contents();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// A tokio-postgres/libpq connection string for this server, without TLS.
    pub fn conn_str(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={} sslmode=disable",
            self.port,
            conn_quote(user),
            conn_quote(password),
            conn_quote(db)
        )
    }

    /// Connects directly (no proxy, no TLS) and spawns the connection task on
    /// the current tokio runtime.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conn_str(user, password, db), tokio_postgres::NoTls)
                .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("pgmoat test pg: connection error: {e}");
            }
        });
        Ok(client)
    }

    /// A client connected as the superuser to database `postgres`.
    pub async fn admin_client(&self) -> tokio_postgres::Client {
        self.connect(&self.superuser, &self.password, "postgres")
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "admin connection to test postgres on port {}: {}",
                    self.port,
                    pg_err(&e)
                )
            })
    }

    /// Creates (or, if it exists, updates) login role `name` with `password`,
    /// and lets it connect to and create objects in `postgres`'s public schema.
    ///
    /// `method` only decides how the password is *stored*: `Md5` stores an
    /// MD5 hash (needed for real MD5 auth; with a SCRAM secret Postgres would
    /// silently upgrade `md5` to SCRAM), everything else stores SCRAM. Which
    /// method the server *asks for* is decided by pg_hba.conf, by role name
    /// (see [`TestPg`]): so use `u_md5` with `Md5`, `u_clear` with
    /// `Password`, `u_trust` with `Trust`, and other names with `Scram` (an
    /// MD5-stored password cannot pass SCRAM).
    ///
    /// Safe to call concurrently for the same name (serialized with an
    /// advisory lock); the last caller's password wins.
    pub async fn create_role_with_method(
        &self,
        name: &str,
        password: &str,
        method: impl Into<AuthMethod>,
    ) {
        let encryption = match method.into() {
            AuthMethod::Md5 => "md5",
            AuthMethod::Scram | AuthMethod::Password | AuthMethod::Trust => "scram-sha-256",
        };
        let mut client = self.admin_client().await;
        let ident = quote_ident(name);
        let tx = client
            .transaction()
            .await
            .unwrap_or_else(|e| panic!("creating role {name}: BEGIN: {}", pg_err(&e)));
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ROLE_LOCK_KEY])
            .await
            .unwrap_or_else(|e| panic!("creating role {name}: lock: {}", pg_err(&e)));
        let exists = tx
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .unwrap_or_else(|e| panic!("creating role {name}: lookup: {}", pg_err(&e)))
            .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        let sql = format!(
            "SET LOCAL password_encryption = '{encryption}';
             {verb} ROLE {ident} WITH LOGIN PASSWORD {pw};
             GRANT CONNECT ON DATABASE postgres TO {ident};
             GRANT USAGE, CREATE ON SCHEMA public TO {ident};",
            pw = quote_literal(password),
        );
        tx.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("creating role {name}: {}", pg_err(&e)));
        tx.commit()
            .await
            .unwrap_or_else(|e| panic!("creating role {name}: COMMIT: {}", pg_err(&e)));
    }

    /// Creates database `name` (owned by the superuser) unless it exists, and
    /// lets every role create objects in its `public` schema (the pre-15
    /// default). Safe to call concurrently for the same name.
    pub async fn create_database(&self, name: &str) {
        let client = self.admin_client().await;
        // CREATE DATABASE can't run inside a transaction, so use a session
        // lock; it is released when this client disconnects at the latest.
        client
            .execute("SELECT pg_advisory_lock($1)", &[&DB_LOCK_KEY])
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: lock: {}", pg_err(&e)));
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: lookup: {}", pg_err(&e)))
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
                .await
                .unwrap_or_else(|e| panic!("creating database {name}: {}", pg_err(&e)));
            // Postgres 15 no longer lets everyone create tables in `public`;
            // in a throwaway test database we want the old behaviour, so any
            // role (created before or after) can set up its own tables.
            let db = self
                .connect(&self.superuser, &self.password, name)
                .await
                .unwrap_or_else(|e| panic!("connecting to new database {name}: {}", pg_err(&e)));
            db.batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
                .await
                .unwrap_or_else(|e| panic!("opening schema public of {name}: {}", pg_err(&e)));
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&DB_LOCK_KEY])
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: unlock: {}", pg_err(&e)));
    }

    /// The directory holding this server's binaries.
    pub fn bindir(&self) -> PathBuf {
        self.bindir.clone()
    }

    /// The real psql next to the server (not Debian's /usr/bin wrapper).
    pub fn psql(&self) -> PathBuf {
        self.bindir.join("psql")
    }

    /// `psql -X -w -A -t -c sql` on `conn`, with `password` in PGPASSWORD (none: the
    /// environment holds no password, so only the connection string can supply one).
    pub fn psql_c(&self, conn: &str, password: Option<&str>, sql: &str) -> std::process::Output {
        let mut cmd = std::process::Command::new(self.psql());
        match password {
            Some(p) => cmd.env("PGPASSWORD", p),
            None => cmd.env_remove("PGPASSWORD"),
        };
        cmd.arg(conn)
            .args(["-X", "-w", "-A", "-t", "-c", sql])
            .output()
            .expect("run psql")
    }

    /// Stops the server (fast shutdown) and keeps its data: [`TestPg::restart`]
    /// starts it again on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Starts a server [`TestPg::stop`]ped before, on the same port and data.
    pub fn restart(&mut self) {
        if let Err(e) = self.spawn_and_wait(server_user()) {
            panic!(
                "restarting postgres: {}\n{}",
                e.describe(),
                self.log_tail(20)
            );
        }
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for TestPg {
    /// Stops the postmaster (fast shutdown, escalating to immediate shutdown
    /// and then SIGKILL) and removes the directory. Never runs for
    /// [`shared`]; PDEATHSIG and the stale-directory sweep cover that one.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        if std::env::var_os("PGMOAT_KEEP_TEST_DIRS").is_some_and(|v| v != "0") {
            eprintln!("pgmoat test pg: keeping {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

enum StartError {
    PortTaken,
    Exited(ExitStatus),
    Timeout,
}

impl StartError {
    fn describe(&self) -> String {
        match self {
            StartError::PortTaken => "could not bind a free port after several tries".into(),
            StartError::Exited(status) => format!("postgres exited early ({status})"),
            StartError::Timeout => format!("not ready after {READY_TIMEOUT:?}"),
        }
    }
}

/// The unprivileged account servers run as when we are root.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// `None` when we aren't root (then servers simply run as us), else the
/// `postgres` user from /etc/passwd, falling back to `nobody`.
fn server_user() -> Option<Owner> {
    static USER: OnceLock<Option<Owner>> = OnceLock::new();
    *USER.get_or_init(|| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let lookup = |name: &str| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                if fields.len() >= 4 && fields[0] == name {
                    Some(Owner {
                        uid: fields[2].parse().ok()?,
                        gid: fields[3].parse().ok()?,
                    })
                } else {
                    None
                }
            })
        };
        Some(
            lookup("postgres")
                .or_else(|| lookup("nobody"))
                .unwrap_or_else(|| {
                    panic!(
                        "running as root, but /etc/passwd has neither a postgres nor a nobody user"
                    )
                }),
        )
    })
}

fn give_to_server_user(path: &Path, owner: Option<Owner>) {
    if let Some(o) = owner {
        chown(path, Some(o.uid), Some(o.gid))
            .unwrap_or_else(|e| panic!("chown {} to {}:{}: {e}", path.display(), o.uid, o.gid));
    }
}

/// What every initdb/postgres command needs: the unprivileged user, a
/// predictable locale, a cwd that user can enter, and PDEATHSIG.
fn server_command(cmd: &mut Command, cwd: &Path, owner: Option<Owner>) {
    cmd.current_dir(cwd).env("LC_ALL", "C").env_remove("PGDATA");
    if let Some(o) = owner {
        // std drops supplementary groups too when switching away from root.
        cmd.uid(o.uid).gid(o.gid);
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe operations are allowed; it makes two raw syscalls
    // (prctl, getppid) and builds an io::Error from an errno, which doesn't
    // allocate. std runs pre_exec closures *after* setgid/setuid; that order
    // matters because changing credentials clears PDEATHSIG.
    unsafe {
        cmd.pre_exec(move || {
            // Stop (SIGINT = fast shutdown) when the spawner thread dies,
            // i.e. when the test process exits in any way.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGINT as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // If the test process died before prctl took effect we have
            // already been reparented and no signal will come: don't start.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the spawner thread, which never exits, so PDEATHSIG only
/// fires when the whole process goes away (not when the test's thread ends).
/// The returned `Child` can be waited on from any thread.
pub fn spawn_managed(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("pgmoat-test-pg-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop never ends...
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // ...but if it somehow did, exiting this thread would stop
                // every server, so stay.
                loop {
                    std::thread::park();
                }
            })
            .unwrap_or_else(|e| panic!("starting the postgres spawner thread: {e}"));
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("postgres spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("postgres spawner thread is gone"))?
}

/// SIGINT (fast shutdown), then SIGQUIT (immediate shutdown), then SIGKILL,
/// reaping the child in the end.
fn stop_child(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    for (signal, grace) in [
        (libc::SIGINT, STOP_TIMEOUT),
        (libc::SIGQUIT, Duration::from_secs(5)),
    ] {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions. `pid` is our own
        // child and not yet reaped (try_wait just said it is running), so the
        // pid can't have been reused by an unrelated process.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Finds the server binaries: `$PGMOAT_PG_BINDIR`, then `pg_config --bindir`,
/// then the newest /usr/lib/postgresql/*/bin, then `initdb` on PATH.
fn pg_bindir() -> &'static Path {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(|| {
        // $PGMOAT_PG_BINDIR, PATH, pg_config, /usr/lib/postgresql/*/bin; on a fresh
        // machine `cargo test` installs them itself (as root on Debian/Ubuntu), or says
        // the exact command to run.
        pgmoat::setup::ensure_postgres().unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A new, empty `/tmp/pgmoat-test-<pid>-<n>`, mode 0755 so the server user
/// can reach `data/` inside it.
fn new_test_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
    // Only possible if a dead process with our pid left it behind.
    let _ = fs::remove_dir_all(&dir);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&dir)
        .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    // Make the mode exact whatever the umask.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    dir
}

/// Once per process: removes test directories left by processes that are
/// gone (the shared server's is always left), stopping their postmaster
/// first in the unlikely case it survived.
fn remove_stale_dirs_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let me = std::process::id();
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
                continue;
            };
            let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
                continue;
            };
            if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let path = entry.path();
            stop_stale_postmaster(&path);
            let _ = fs::remove_dir_all(&path);
        }
    });
}

fn stop_stale_postmaster(dir: &Path) {
    let Ok(pidfile) = fs::read_to_string(dir.join("data/postmaster.pid")) else {
        return;
    };
    let Some(Ok(pid)) = pidfile
        .lines()
        .next()
        .map(|l| l.trim().parse::<libc::pid_t>())
    else {
        return;
    };
    // Only signal it if it really is a postgres serving this directory
    // (the pid may have been reused; a zombie has an empty cmdline).
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; we checked above that
    // the pid is a server of this directory.
    unsafe { libc::kill(pid, libc::SIGQUIT) };
    // It isn't our child, so just watch /proc until it is gone (or a zombie,
    // whose cmdline reads empty).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn append_lines(path: &Path, lines: &[String]) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut text = String::from("\n# added by pgmoat tests/common/pg.rs\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The file from byte `offset` on, lossily decoded; empty if unreadable.
fn read_from(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        use std::io::Seek;
        if f.seek(io::SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A port that was free a moment ago (the OS picks it; we let it go again).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("picking a free port: {e}"))
}

/// `2 * bytes` random hex digits from the kernel (no `rand` needed).
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .unwrap_or_else(|e| panic!("reading /dev/urandom: {e}"));
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Quotes a value for a libpq-style `key=value` connection string.
fn conn_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `"name"` with embedded quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings is on).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// tokio-postgres' Display for server errors is just "db error"; include the
/// server's message and SQLSTATE.
fn pg_err(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => format!("{e:?}"),
    }
}
