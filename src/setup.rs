//! What a newcomer's machine must have for the README's two commands
//! (`cargo run --release -- quickstart`, `cargo test`): Postgres server binaries, and
//! for the driver test psycopg. When they are missing, installed the way a Debian or
//! Ubuntu user would (apt-get, pip), as root; otherwise the exact command is printed and
//! nothing is changed.
//!
//! The build itself needs nothing past Rust and a C compiler: pg_query's bindings come
//! from `build-support/bindgen-pg_query`, not from libclang.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian/Ubuntu packages that bring the server binaries (`initdb`, `postgres`,
/// `pg_ctl`), `psql` and `pgbench`.
pub const POSTGRES_PACKAGES: &[&str] = &["postgresql", "postgresql-contrib"];

/// Where initdb, postgres and pg_ctl live: `$PGMOAT_PG_BINDIR`, `PATH`,
/// `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_postgres_bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| {
        ["initdb", "postgres", "pg_ctl"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(d) = std::env::var_os("PGMOAT_PG_BINDIR") {
        let d = PathBuf::from(d);
        return has_server(&d).then_some(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                // Links in PATH (/usr/local/bin/initdb -> .../15/bin/initdb): the
                // folder they point into also has psql and pgbench.
                let real = std::fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|d| has_server(d));
                return Some(real.unwrap_or(dir));
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn has_apt() -> bool {
    Path::new("/usr/bin/apt-get").is_file()
}

/// Runs `program args` quietly; when it fails, the reason with the tail of its output.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = text
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!(
        "`{program} {}` failed ({}):\n{}",
        args.join(" "),
        out.status,
        tail.join("\n")
    ))
}

/// The Postgres server binaries, installed with apt-get first when they are missing
/// and this is root on Debian/Ubuntu. Otherwise the error names the command to run.
pub fn ensure_postgres() -> Result<PathBuf, String> {
    if let Some(d) = find_postgres_bindir() {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("PGMOAT_PG_BINDIR") {
        return Err(format!(
            "PGMOAT_PG_BINDIR={} has no initdb, postgres and pg_ctl",
            Path::new(&d).display()
        ));
    }
    let line = format!("sudo apt-get install -y {}", POSTGRES_PACKAGES.join(" "));
    if !has_apt() {
        return Err(
            "no Postgres server binaries found (looked in $PGMOAT_PG_BINDIR, PATH, `pg_config \
             --bindir` and /usr/lib/postgresql/*/bin); install PostgreSQL (e.g. `brew install \
             postgresql` on macOS) or set PGMOAT_PG_BINDIR"
                .into(),
        );
    }
    if !is_root() {
        return Err(format!(
            "no Postgres server binaries found; install them with:\n    {line}"
        ));
    }
    eprintln!(
        "pgmoat: installing the Postgres server binaries: apt-get install {}",
        POSTGRES_PACKAGES.join(" ")
    );
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(POSTGRES_PACKAGES);
    run("apt-get", &args)?;
    find_postgres_bindir().ok_or_else(|| {
        format!(
            "apt-get installed {} but no server binaries were found",
            POSTGRES_PACKAGES.join(" ")
        )
    })
}

/// Whether `python3` can import `module`.
fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python module the tests drive pgmoat with (psycopg), installed from PyPI with pip
/// when missing (`--user` when not root). The error names the command to run.
pub fn ensure_python_module(module: &str, requirement: &str) -> Result<(), String> {
    if python_has(module) {
        return Ok(());
    }
    let has_pip = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_pip {
        let line = if is_root() {
            "apt-get install -y python3-pip"
        } else {
            "sudo apt-get install -y python3-pip"
        };
        if is_root() && has_apt() {
            eprintln!("pgmoat: installing pip: {line}");
            run("apt-get", &["update", "-qq"])?;
            run("apt-get", &["install", "-y", "-qq", "python3-pip"])?;
        } else {
            return Err(format!("python3 has no pip; install it with:\n    {line}"));
        }
    }
    eprintln!("pgmoat: installing {requirement} from PyPI for the driver tests");
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    if !is_root() {
        args.push("--user");
    }
    args.push(requirement);
    let first = run("python3", &args);
    if first.is_err() {
        // Debian's own python3 refuses system-wide installs (PEP 668).
        args.insert(3, "--break-system-packages");
        run("python3", &args)?;
    }
    if python_has(module) {
        Ok(())
    } else {
        Err(format!(
            "pip installed {requirement} but python3 cannot import {module}"
        ))
    }
}

/// The Debian/Ubuntu packages the SSH door's tests use: `sshd` (with its sftp server)
/// as the upstream, and the stock `ssh`, `scp`, `sftp` and `ssh-keygen` as clients.
pub const SSH_PACKAGES: &[&str] = &["openssh-server", "openssh-client"];

/// The OpenSSH server binary (and the clients beside it), installed with apt-get first
/// when missing and this is root on Debian/Ubuntu. Otherwise the error names the
/// command to run.
pub fn ensure_sshd() -> Result<PathBuf, String> {
    let sshd = PathBuf::from("/usr/sbin/sshd");
    let clients = || {
        ["ssh", "scp", "sftp", "ssh-keygen"].iter().all(|b| {
            Command::new(b)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
    };
    if sshd.is_file() && clients() {
        return Ok(sshd);
    }
    let line = format!("sudo apt-get install -y {}", SSH_PACKAGES.join(" "));
    if !has_apt() || !is_root() {
        return Err(format!(
            "the SSH tests need OpenSSH's sshd and clients; install them with:\n    {line}"
        ));
    }
    eprintln!(
        "pgmoat: installing OpenSSH for the SSH tests: apt-get install {}",
        SSH_PACKAGES.join(" ")
    );
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(SSH_PACKAGES);
    run("apt-get", &args)?;
    if sshd.is_file() && clients() {
        Ok(sshd)
    } else {
        Err(format!(
            "apt-get installed {} but sshd or the clients are still missing",
            SSH_PACKAGES.join(" ")
        ))
    }
}
/// A command-line tool the tests run (`curl` for the HTTP gateway's), installed with
/// apt-get from `package` when missing and this is root on Debian/Ubuntu; otherwise
/// the error names the command to run.
pub fn ensure_tool(program: &str, package: &str) -> Result<(), String> {
    let found = |p: &str| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if found(program) {
        return Ok(());
    }
    if !(is_root() && has_apt()) {
        return Err(format!(
            "{program} is not installed; install it with:\n    sudo apt-get install -y {package}"
        ));
    }
    eprintln!("pgmoat: installing {package} for the tests: apt-get install {package}");
    run("apt-get", &["update", "-qq"])?;
    run("apt-get", &["install", "-y", "-qq", package])?;
    if found(program) {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed {package} but {program} still does not run"
        ))
    }
}

/// Headless Chromium, its WebDriver (`chromedriver`) and Python's Selenium client, for
/// the web console's browser tests: Debian's `chromium` and `chromium-driver` with
/// apt-get, Selenium from PyPI, when missing and this is root; otherwise the error
/// names the commands to run.
pub fn ensure_chromium() -> Result<(), String> {
    ensure_tool("chromium", "chromium")?;
    ensure_tool("chromedriver", "chromium-driver")?;
    ensure_python_module("selenium", "selenium>=4.20")
}
