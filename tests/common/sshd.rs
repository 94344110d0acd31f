//! A real OpenSSH server for the SSH door's tests: Debian's `sshd` with its own config,
//! host key and authorized key, on a random loopback port, shared by every test of a
//! test binary (started on first use, stopped by PDEATHSIG when the process exits, as
//! the shared Postgres is).
//!
//! It logs in one unprivileged user (created when missing; the tests run as root) with
//! the key pgmoat holds for the target. Its log (`-e`, LogLevel VERBOSE) shows every
//! command it ran, so a test can tell that a refused command never reached it.
#![allow(dead_code)]

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The upstream login user.
pub const USER: &str = "pgmoat-ssh";

pub struct TestSshd {
    pub port: u16,
    pub dir: PathBuf,
    /// The user's home folder on the upstream.
    pub home: PathBuf,
    /// The private key pgmoat holds for the target.
    pub deploy_key: PathBuf,
    /// A known_hosts file listing this server's host key.
    pub known_hosts: PathBuf,
    /// A known_hosts file listing another key for the same host and port.
    pub wrong_known_hosts: PathBuf,
    pub log: PathBuf,
    child: Mutex<Child>,
}

pub fn shared() -> &'static TestSshd {
    static SHARED: OnceLock<TestSshd> = OnceLock::new();
    SHARED.get_or_init(TestSshd::start)
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh ed25519 key pair at `path` (and `path.pub`); the public line.
pub fn keygen(path: &Path) -> String {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "pgmoat-test", "-f"])
        .arg(path));
    std::fs::read_to_string(format!("{}.pub", path.display()))
        .expect("public key")
        .trim()
        .to_string()
}

fn ensure_user() -> PathBuf {
    let exists = Command::new("id")
        .arg("-u")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]));
    }
    // useradd leaves the password locked ("!"), and sshd (without PAM) then refuses
    // every login; "*" means no password works, but the account is open to keys.
    run(Command::new("usermod").args(["-p", "*", USER]));
    let home = PathBuf::from(format!("/home/{USER}"));
    std::fs::create_dir_all(&home).expect("home folder");
    run(Command::new("chown").arg(format!("{USER}:")).arg(&home));
    home
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestSshd {
    fn start() -> TestSshd {
        let sshd = pgmoat::setup::ensure_sshd().unwrap_or_else(|e| panic!("{e}"));
        let home = ensure_user();
        let dir = std::env::temp_dir().join(format!(
            "pgmoat-sshd-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("sshd folder");
        // sshd reads the authorized keys as the user: the folder must be open to it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host_pub = keygen(&dir.join("host_ed25519"));
        let other_pub = keygen(&dir.join("other_host_ed25519"));
        let deploy_pub = keygen(&dir.join("deploy_ed25519"));
        let authorized = dir.join("authorized_keys");
        std::fs::write(&authorized, format!("{deploy_pub}\n")).unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Privilege separation wants its empty folder.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = dir.join("sshd.log");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_ed25519\n\
                     PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
                     PubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                     PermitRootLogin no\nAllowUsers {USER}\nLogLevel VERBOSE\n\
                     AllowTcpForwarding yes\nX11Forwarding no\nMaxSessions 50\nMaxStartups 50\n\
                     Subsystem sftp internal-sftp\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            let logfile = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(&sshd);
            cmd.args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logfile);
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: between fork and exec only async-signal-safe calls: prctl and
            // getppid, and an io::Error built from an errno (no allocation).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGTERM as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
            let mut child = super::pg::spawn_managed(cmd).expect("start sshd");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Server listening")
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    up = true;
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                let known_hosts = dir.join("known_hosts");
                std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n")).unwrap();
                let wrong_known_hosts = dir.join("wrong_known_hosts");
                std::fs::write(
                    &wrong_known_hosts,
                    format!("[127.0.0.1]:{port} {other_pub}\n"),
                )
                .unwrap();
                return TestSshd {
                    port,
                    home,
                    deploy_key: dir.join("deploy_ed25519"),
                    known_hosts,
                    wrong_known_hosts,
                    log,
                    dir,
                    child: Mutex::new(child),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_err = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd did not start:\n{last_err}");
    }

    /// sshd's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
