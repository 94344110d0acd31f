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
    /// Validate a config file without starting anything.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
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
        Command::Check { config } => match Config::check(&config) {
            Ok((c, missing)) => {
                println!(
                    "{}: ok ({} target{}, {} user{})",
                    config.display(),
                    c.targets.len(),
                    if c.targets.len() == 1 { "" } else { "s" },
                    c.users.len(),
                    if c.users.len() == 1 { "" } else { "s" }
                );
                for var in missing {
                    println!("note: environment variable {var} is not set here; `pgmoat serve` will need it");
                }
                for section in c.inactive_sections() {
                    println!("note: `{section}` is checked but not enforced by this build yet");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("{e}");
                Ok(ExitCode::from(1))
            }
        },
    }
}
