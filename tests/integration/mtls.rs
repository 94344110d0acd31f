//! Client certificates: with `tls.client_ca`, a verified certificate whose subject CN
//! is listed under `identities.certificates` logs that name in with no password, and
//! its groups reach the rules. psql presents the certificates (sslcert/sslkey).

use std::process::{Command, Output};

use crate::common::certs::{write_file, write_files, TestCa};
use crate::common::pg::{self, TestPg};
use crate::harness::*;

struct Setup {
    pg: &'static TestPg,
    gw: TestGateway,
    dir: TempDir,
    ca_file: std::path::PathBuf,
}

async fn setup(require_client_cert: bool) -> (Setup, TestCa) {
    let pg = pg::shared();
    prepare(pg).await;
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let dir = TempDir::new("pgmoat-mtls");
    let files = write_files(dir.path(), &ca, "server", &cert, &key);
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: reporting-no-version\n    when: { groups: [reporting], functions: [version] }\n    action: block\n",
    )
    .unwrap();
    let extra = format!(
        "  certificates:\n    - {{ name: svc-reporting, groups: [reporting] }}\ntls:\n  cert: {}\n  key: {}\n  client_ca: {}\n  require_client_cert: {require_client_cert}\nrules: {}\n",
        files.cert.display(),
        files.key.display(),
        files.ca.display(),
        rules.display(),
    );
    let gw = start_yaml(&config_yaml(pg, &extra), test_env()).await;
    (
        Setup {
            pg,
            gw,
            ca_file: files.ca.clone(),
            dir,
        },
        ca,
    )
}

impl Setup {
    /// Files for a client certificate with this CN, signed by `ca`.
    fn client(&self, ca: &TestCa, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = ca.client_cert(cn);
        let c = self.dir.path().join(format!("{cn}.crt"));
        let k = self.dir.path().join(format!("{cn}.key"));
        write_file(&c, &cert, 0o644);
        write_file(&k, &key, 0o600);
        (c, k)
    }

    fn psql(
        &self,
        user: &str,
        cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
        sql: &str,
    ) -> Output {
        let mut conn = format!(
            "host=localhost port={} user={user} dbname=demo sslmode=verify-full sslrootcert={}",
            self.gw.addr.port(),
            self.ca_file.display()
        );
        if let Some((c, k)) = cert {
            conn.push_str(&format!(" sslcert={} sslkey={}", c.display(), k.display()));
        }
        Command::new(self.pg.psql())
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/nonexistent")
            .arg(conn)
            .args(["-X", "-w", "-A", "-t", "-v", "VERBOSITY=verbose", "-c", sql])
            .output()
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_certificate_logs_in_without_a_password_and_brings_its_groups() {
    let (s, ca) = setup(false).await;
    let svc = s.client(&ca, "svc-reporting");
    let out = s.psql(
        "svc-reporting",
        Some(&svc),
        "SELECT 'by certificate', current_user",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "by certificate|app_rw\n");
    // Its group reaches the rules.
    let out = s.psql("svc-reporting", Some(&svc), "SELECT version()");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("ERROR:  42501: pgmoat: blocked by rule \"reporting-no-version\""),
        "{}",
        text(&out.stderr)
    );
    // The certificate speaks only for its own name: as another user, the password
    // exchange follows (and psql -w has none to give).
    let out = s.psql(AGENT, Some(&svc), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("password"),
        "{}",
        text(&out.stderr)
    );
    // No certificate: the password exchange, as before.
    let out = s.psql("svc-reporting", None, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no password supplied"),
        "{}",
        text(&out.stderr)
    );
    // A verified certificate whose CN is not listed proves nothing by itself.
    let stranger = s.client(&ca, "svc-unlisted");
    let out = s.psql("svc-unlisted", Some(&stranger), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("password"),
        "{}",
        text(&out.stderr)
    );
    // A certificate from another CA fails the handshake.
    let other = TestCa::with_name("someone else's CA");
    let forged = s.client(&other, "svc-reporting");
    let out = s.psql("svc-reporting", Some(&forged), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("SSL error: tlsv1 alert unknown ca"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_client_cert_refuses_clients_without_one() {
    let (s, ca) = setup(true).await;
    let svc = s.client(&ca, "svc-reporting");
    let out = s.psql("svc-reporting", Some(&svc), "SELECT 1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Password users need a certificate too now.
    let out = Command::new(s.pg.psql())
        .env("PGPASSWORD", AGENT_PW)
        .arg(format!(
            "host=localhost port={} user={AGENT} dbname=demo sslmode=verify-full sslrootcert={}",
            s.gw.addr.port(),
            s.ca_file.display()
        ))
        .args(["-X", "-w", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("certificate required"),
        "{}",
        text(&out.stderr)
    );
}
