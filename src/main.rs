//! The `pgmoat` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use pgmoat::{Config, Gateway};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "pgmoat", version, about = "A Postgres wire-protocol firewall")]
struct Cli {
    /// Log format on stderr (default: human on a terminal, else JSON).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGINT or SIGTERM.
    Serve {
        #[arg(short, long, default_value = "pgmoat.yaml")]
        config: PathBuf,
        /// Tokio worker threads (overrides `workers` in the config).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Start a throwaway Postgres with demo data and the gateway in front of it.
    Quickstart {
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Port of the admin API.
        #[arg(long, default_value_t = 9187)]
        admin_port: u16,
    },
    /// Validate a config file and/or rule files without starting anything.
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// A rule file or a directory of them.
        rules: Option<PathBuf>,
    },
    /// Show what the gateway would do with some SQL for an identity.
    Explain {
        #[arg(short, long, conflicts_with = "rules")]
        config: Option<PathBuf>,
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, default_value = "explain")]
        user: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long, default_value = "")]
        target: String,
        #[arg(long)]
        json: bool,
        /// Judge an SSH exec command line (for `--target`, an ssh target) instead of SQL.
        #[arg(long)]
        ssh: bool,
        /// Read the SQL from this file instead.
        #[arg(long, conflicts_with = "sql")]
        file: Option<PathBuf>,
        /// The SQL (`-` reads it from stdin). Taken as it is even when it starts with a
        /// comment (`-- why`), so put options before it.
        #[arg(allow_hyphen_values = true, required_unless_present_any = ["file", "http"])]
        sql: Option<String>,
        /// Explain an HTTP gateway request instead: "METHOD /target/path" (or
        /// "METHOD /path" with --target).
        #[arg(long, conflicts_with_all = ["sql", "file"])]
        http: Option<String>,
    },
    /// Sign in at the identity provider (OAuth device flow) and print a libpq
    /// connection string, or write a .pgpass line, with the token as the password.
    Login {
        /// The OIDC issuer URL (the gateway's identities.oidc.issuer).
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        client_id: String,
        /// Scopes to ask for (repeatable); default "openid email profile".
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Write the token to this .pgpass file (mode 0600) instead of printing it.
        #[arg(long)]
        pgpass: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 6432)]
        port: u16,
        #[arg(long, default_value = "demo")]
        dbname: String,
        /// The Postgres user name; default: the token's --username-claim.
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "email")]
        username_claim: String,
        /// Use the access token even when an id_token is returned.
        #[arg(long)]
        access_token: bool,
    },
    /// List, approve or deny statements held for approval in a running gateway.
    Approvals {
        /// The gateway's admin API.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9187")]
        admin: String,
        #[command(subcommand)]
        action: ApprovalsAction,
    },
    /// Verify, list and replay an audit store.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Look at the replicas sharing a state database (`cluster:`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Nodes (heartbeats, sessions), their audit heads and pending approvals.
    Status {
        /// The state database (a libpq URL or key=value string).
        #[arg(long, env = "PGMOAT_STATE_URL", hide_env_values = true)]
        state_url: String,
    },
}

#[derive(Subcommand)]
enum ApprovalsAction {
    /// Pending requests.
    List,
    /// Let a held statement run.
    Approve {
        id: String,
        /// Who approves (an identity in the rule's approvers groups); default $USER.
        #[arg(long, env = "PGMOAT_APPROVER")]
        by: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        /// Also let the same statement shape run without asking for this long (e.g. 30m).
        #[arg(long = "for")]
        grant_for: Option<String>,
    },
    /// Refuse a held statement (the client gets 42501 with the reason).
    Deny {
        id: String,
        #[arg(long, env = "PGMOAT_APPROVER")]
        by: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: exit 0 intact, 1 with the first bad record's seq.
    Verify {
        dir: PathBuf,
        /// A head exported to a sink (`SEQ:HASH`): also catches a cut-off tail.
        #[arg(long)]
        head: Option<String>,
        /// Environment variable holding the store's HMAC key (`audit.hmac_key_env`).
        #[arg(long)]
        hmac_key_env: Option<String>,
        /// The cluster's state database: check the store against the head the node
        /// recorded there (catches a truncated or deleted store). Needs --node.
        #[arg(long, requires = "node")]
        state_url: Option<String>,
        /// The node (`cluster.node`) whose store DIR is.
        #[arg(long, requires = "state_url")]
        node: Option<String>,
        /// With `tenants:`, the tenant whose store DIR is.
        #[arg(long, requires = "state_url", default_value = "")]
        tenant: String,
    },
    /// List recorded sessions.
    Sessions {
        dir: PathBuf,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Sessions active at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Sessions started at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
    /// Print a session as a transcript.
    Replay { dir: PathBuf, session: String },
}

fn init_logging(format: Option<LogFormat>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Human) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("pgmoat: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Serve { config, workers } => {
            let mut config = Config::load(&config).map_err(|e| e.to_string())?;
            if let Some(w) = workers {
                config.workers = w.max(1);
            }
            let rt =
                runtime(config.workers).map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(async {
                let gateway = Gateway::bind(config).await.map_err(|e| e.to_string())?;
                gateway.run(stop_signal()).await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Quickstart { port, admin_port } => {
            let rt = runtime(1).map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(pgmoat::quickstart::run(port, admin_port, stop_signal()))
                .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, rules } => check(config, rules),
        Command::Login {
            issuer,
            client_id,
            scopes,
            pgpass,
            host,
            port,
            dbname,
            user,
            username_claim,
            access_token,
        } => {
            let req = pgmoat::login::LoginRequest {
                issuer,
                client_id,
                scopes,
                use_access_token: access_token,
                username_claim,
                host,
                port,
                dbname,
                user,
                pgpass,
            };
            let rt = runtime(1).map_err(|e| format!("cannot start the runtime: {e}"))?;
            let login = rt
                .block_on(pgmoat::login::device_flow(
                    &req,
                    pgmoat::login::Pacing::default(),
                    &mut std::io::stderr(),
                ))
                .map_err(|e| format!("login failed: {e}"))?;
            if let Some(p) = &req.pgpass {
                eprintln!(
                    "Signed in as {}; token written to {}",
                    login.user,
                    p.display()
                );
            } else {
                eprintln!("Signed in as {}", login.user);
            }
            println!("{}", login.conninfo);
            Ok(ExitCode::SUCCESS)
        }
        Command::Approvals { admin, action } => {
            use pgmoat::approval::cli::{run, Call};
            let token = std::env::var("PGMOAT_ADMIN_TOKEN")
                .map_err(|_| "set PGMOAT_ADMIN_TOKEN to the gateway's admin token".to_string())?;
            let by = |b: Option<String>| {
                b.or_else(|| std::env::var("USER").ok())
                    .ok_or_else(|| "say who decides with --by".to_string())
            };
            let call = match action {
                ApprovalsAction::List => Call::List,
                ApprovalsAction::Approve {
                    id,
                    by: b,
                    reason,
                    grant_for,
                } => Call::Decide {
                    id,
                    approve: true,
                    by: by(b)?,
                    reason,
                    grant_for,
                },
                ApprovalsAction::Deny { id, by: b, reason } => Call::Decide {
                    id,
                    approve: false,
                    by: by(b)?,
                    reason,
                    grant_for: None,
                },
            };
            let rt = runtime(1).map_err(|e| format!("cannot start the runtime: {e}"))?;
            let text = rt.block_on(run(&admin, &token, call))?;
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit(command),
        Command::Cluster {
            command: ClusterCommand::Status { state_url },
        } => {
            let rt = runtime(1).map_err(|e| format!("cannot start the runtime: {e}"))?;
            let text = rt.block_on(async {
                let db = pgmoat::cluster::Shared::new(
                    "pgmoat-cli",
                    &state_url,
                    pgmoat::cluster::Timing::default(),
                )
                .map_err(|e| e.to_string())?;
                pgmoat::cluster::status::report(&db)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            config,
            rules,
            user,
            mut groups,
            target,
            json,
            ssh,
            file,
            sql,
            http,
        } => {
            let sql = match &http {
                Some(_) => String::new(),
                None => explain_input(file.as_deref(), sql)?,
            };
            let mut rules_path = rules;
            if let Some(c) = &config {
                let (cfg, _) = Config::check(c).map_err(|e| e.to_string())?;
                let tenants = cfg.tenant_configs();
                // The user's tenant (by name); without one, the only tenant.
                let tenant = tenants
                    .iter()
                    .find(|t| {
                        t.users.iter().any(|u| u.name == user)
                            || t.certificates.iter().any(|c| c.name == user)
                    })
                    .or_else(|| (tenants.len() == 1).then(|| &tenants[0]))
                    .ok_or_else(|| {
                        format!("with tenants, --user must name a user of one of them ({user:?} is nobody's)")
                    })?;
                rules_path = tenant.rules.clone();
                if groups.is_empty() {
                    if let Some(u) = tenant.users.iter().find(|u| u.name == user) {
                        groups = u.groups.clone();
                    } else if let Some(c) = tenant.certificates.iter().find(|c| c.name == user) {
                        groups = c.groups.clone();
                    }
                }
            }
            let set = match &rules_path {
                Some(p) => pgmoat::policy::RuleSet::load(p).map_err(|e| e.join("\n"))?,
                None => pgmoat::policy::RuleSet::allow_all(),
            };
            let who = pgmoat::policy::Subject {
                user: &user,
                groups: &groups,
                target: &target,
                search_path_changed: false,
            };
            if ssh {
                let report = pgmoat::ssh::explain::explain(&set, &sql, &who);
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&report).map_err(|e| e.to_string())?
                    );
                } else {
                    print!("{}", report.render());
                }
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(request) = &http {
                let r =
                    pgmoat::gateway::explain::explain_http(&set, request, &user, &groups, &target)?;
                if json {
                    println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
                } else {
                    print!("{}", r.render());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let report = pgmoat::explain::explain(&set, &sql, &who);
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", report.render());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The SQL `pgmoat explain` was given: from `--file`, stdin (`-`) or the argument.
fn explain_input(file: Option<&std::path::Path>, sql: Option<String>) -> Result<String, String> {
    match (file, sql.as_deref()) {
        (Some(f), _) => {
            std::fs::read_to_string(f).map_err(|e| format!("reading {}: {e}", f.display()))
        }
        (None, Some("-")) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| format!("reading stdin: {e}"))?;
            Ok(text)
        }
        (None, Some(_)) => Ok(sql.unwrap_or_default()),
        (None, None) => Err("explain needs SQL: an argument, - for stdin, or --file".into()),
    }
}

/// `pgmoat check`: every error on its own line, exit 1 if there is any.
fn check(config: Option<PathBuf>, rules: Option<PathBuf>) -> Result<ExitCode, String> {
    if config.is_none() && rules.is_none() {
        return Err("check needs -c pgmoat.yaml and/or a rules path".into());
    }
    let mut failed = false;
    // Each tenant's rules (one unnamed tenant without `tenants:`), or the path given.
    let mut rules_paths: Vec<(String, PathBuf)> =
        rules.map(|r| (String::new(), r)).into_iter().collect();
    let given = !rules_paths.is_empty();
    if let Some(path) = &config {
        match Config::check(path) {
            Ok((c, missing)) => {
                for t in c.tenant_configs() {
                    let who = if t.name.is_empty() {
                        String::new()
                    } else {
                        format!(" tenant {}:", t.name)
                    };
                    println!(
                        "{}:{who} ok ({} target{}, {} user{})",
                        path.display(),
                        t.targets.len(),
                        if t.targets.len() == 1 { "" } else { "s" },
                        t.users.len(),
                        if t.users.len() == 1 { "" } else { "s" }
                    );
                    if let Some(a) = &t.audit {
                        let mode = format!("{:?}", a.durability).to_lowercase();
                        println!("audit:{who} store {} ({mode} durability)", a.dir.display());
                    }
                    if let (false, Some(r)) = (given, &t.rules) {
                        rules_paths.push((t.name.clone(), r.clone()));
                    }
                }
                for var in missing {
                    println!("note: environment variable {var} is not set here; `pgmoat serve` will need it");
                }
                for section in c.inactive_sections() {
                    println!("note: `{section}` is checked but not enforced by this build yet");
                }
                for w in c.warnings() {
                    println!("warning: {w}");
                }
            }
            Err(e) => {
                println!("{e}");
                failed = true;
            }
        }
    }
    for (tenant, path) in &rules_paths {
        let who = if tenant.is_empty() {
            String::new()
        } else {
            format!(" (tenant {tenant})")
        };
        match pgmoat::policy::RuleSet::load(path) {
            Ok(set) => {
                println!(
                    "{}{who}: ok ({} rule{}, {} mask{}, default {})",
                    path.display(),
                    set.rules.len(),
                    if set.rules.len() == 1 { "" } else { "s" },
                    set.masks.len(),
                    if set.masks.len() == 1 { "" } else { "s" },
                    set.default.as_str()
                );
                // Not an error: `serve` may have the key. Without it, hash redacts.
                for var in set.hash_key_vars() {
                    if pgmoat::policy::hash_key_unset(var) {
                        println!("note: environment variable {var} is not set here; hash masks redact without it");
                    }
                }
            }
            Err(errors) => {
                for e in errors {
                    println!("{e}");
                }
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `pgmoat audit ...`: read-only, streaming over the store.
fn audit(command: AuditCommand) -> Result<ExitCode, String> {
    use pgmoat::audit::{replay, time, verify};
    match command {
        AuditCommand::Verify {
            dir,
            head,
            hmac_key_env,
            state_url,
            node,
            tenant,
        } => {
            let mut head = head.as_deref().map(verify::parse_head).transpose()?;
            if let (Some(url), Some(node)) = (&state_url, &node) {
                let Some(recorded) = recorded_head(url, node, &tenant)? else {
                    let of = if tenant.is_empty() {
                        String::new()
                    } else {
                        format!(" (tenant {tenant:?})")
                    };
                    return Err(format!(
                        "the state database has no audit head for node {node:?}{of}"
                    ));
                };
                let recorded = verify::parse_head(&recorded)?;
                if !dir.is_dir() {
                    println!(
                        "{}: missing, but node {node} recorded its head at seq {} in the state database: the store was deleted",
                        dir.display(),
                        recorded.seq
                    );
                    return Ok(ExitCode::from(1));
                }
                if head.as_ref().is_none_or(|h| h.seq < recorded.seq) {
                    head = Some(recorded);
                }
            }
            let key = match &hmac_key_env {
                Some(var) => Some(
                    std::env::var(var)
                        .ok()
                        .filter(|k| !k.is_empty())
                        .ok_or_else(|| format!("environment variable {var} is not set"))?,
                ),
                None => None,
            };
            let key = key.as_ref().map(|k| k.as_bytes());
            match verify::verify(&dir, key, head.as_ref()).map_err(|e| e.to_string())? {
                Ok(r) => {
                    let head = r.head.map(|h| format!(", head {h}")).unwrap_or_default();
                    let repairs = if r.repairs.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; torn tails repaired at seq {}",
                            r.repairs
                                .iter()
                                .map(u64::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    println!(
                        "{}: intact: {} record{} in {} segment{}{head}{repairs}",
                        dir.display(),
                        r.records,
                        if r.records == 1 { "" } else { "s" },
                        r.segments,
                        if r.segments == 1 { "" } else { "s" },
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(bad) => {
                    println!(
                        "{}: first bad record: seq {} ({}): {}",
                        dir.display(),
                        bad.seq,
                        bad.segment,
                        bad.reason
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Sessions {
            dir,
            user,
            target,
            since,
            until,
        } => {
            let filter = replay::Filter {
                user,
                target,
                since: since
                    .as_deref()
                    .map(time::parse_rfc3339)
                    .transpose()
                    .map_err(|e| format!("--since: {e}"))?,
                until: until
                    .as_deref()
                    .map(time::parse_rfc3339)
                    .transpose()
                    .map_err(|e| format!("--until: {e}"))?,
            };
            let list = replay::sessions(&dir, &filter).map_err(|e| e.to_string())?;
            print!("{}", replay::render_sessions(&list));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Replay { dir, session } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let found = replay::replay(&dir, &session, &mut out).map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
            if found {
                Ok(ExitCode::SUCCESS)
            } else {
                Err(format!("no session {session:?} in {}", dir.display()))
            }
        }
    }
}

/// The audit head `node` recorded in the cluster's state database.
fn recorded_head(url: &str, node: &str, tenant: &str) -> Result<Option<String>, String> {
    let rt = runtime(1).map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async {
        let db =
            pgmoat::cluster::Shared::new("pgmoat-cli", url, pgmoat::cluster::Timing::default())
                .map_err(|e| e.to_string())?;
        let heads = db.audit_heads().await.map_err(|e| e.to_string())?;
        Ok(heads
            .into_iter()
            .find(|h| h.node == node && h.tenant == tenant)
            .map(|h| format!("{}:{}", h.seq, h.hash)))
    })
}
