//! Throwaway X.509 material for integration tests.
//!
//! A [`TestCa`] is a fresh self-signed certificate authority made in memory
//! (ECDSA P-256, rcgen's default key type). It signs server certificates for
//! the test Postgres and for the proxy, and client certificates for mTLS
//! tests. Nothing here is meant to be secure; it is meant to be realistic
//! enough that libpq's `sslmode=verify-full` and rustls both accept it.
//!
//! rcgen 0.14 API notes (they changed in 0.14, so they are easy to get wrong):
//! `CertificateParams::new(sans)?` turns every SAN string that parses as an
//! IP address into an IP SAN and the rest into DNS SANs; `params.self_signed(&key)?`
//! makes the CA; `params.signed_by(&leaf_key, &issuer)?` signs a leaf, where
//! `issuer` is an `Issuer::new(ca_params, ca_key)`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that exists only for the lifetime of a test.
pub struct TestCa {
    /// The CA certificate, PEM encoded: what clients put in their trust store
    /// (libpq `sslrootcert=`, a rustls `RootCertStore`, ...).
    pub cert_pem: String,
    /// Everything rcgen needs to sign with this CA (its name, key-id method
    /// and key). Kept private: tests sign through the methods below.
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named "pgmoat test CA".
    pub fn new() -> TestCa {
        TestCa::with_name("pgmoat test CA")
    }

    /// A new CA with the given common name (handy when a test needs two CAs
    /// and wants the error messages to tell them apart).
    pub fn with_name(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|e| panic!("rcgen: CA params: {e}"));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // rcgen's default validity (1975 .. 4096) is fine: nothing outlives a test.
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("rcgen: CA key: {e}"));
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("rcgen: self-signing the CA: {e}"));
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate signed by this CA, returned as `(cert_pem, key_pem)`.
    ///
    /// `names` become the subject alternative names; entries that parse as
    /// IP addresses (e.g. "127.0.0.1") become IP SANs, which is what libpq
    /// (>= 14) and rustls check when the client connects by IP. The first
    /// name is also used as the subject CN, for tools that still look there.
    /// The key is PKCS#8 PEM ("BEGIN PRIVATE KEY"), which Postgres and
    /// rustls both load.
    pub fn server_cert(&self, names: &[&str]) -> (String, String) {
        self.leaf(
            names,
            names.first().copied().unwrap_or("localhost"),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate for mTLS tests, returned as `(cert_pem, key_pem)`.
    /// Postgres' `cert` auth (and `clientcert=verify-full`) matches the
    /// subject CN against the user name, so pass the role name here.
    pub fn client_cert(&self, common_name: &str) -> (String, String) {
        self.leaf(&[], common_name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// The CA's private key, PEM encoded (for tests that need to hand the CA
    /// itself to some other component).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    fn leaf(
        &self,
        names: &[&str],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)
            .unwrap_or_else(|e| panic!("rcgen: bad certificate names {names:?}: {e}"));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("rcgen: leaf key: {e}"));
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("rcgen: signing certificate for {common_name:?}: {e}"));
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// Where [`write_files`] put things.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// `<dir>/ca.crt`, mode 0644.
    pub ca: PathBuf,
    /// `<dir>/<stem>.crt`, mode 0644.
    pub cert: PathBuf,
    /// `<dir>/<stem>.key`, mode 0600 (Postgres refuses keys readable by others).
    pub key: PathBuf,
}

/// Writes `ca.crt`, `<stem>.crt` and `<stem>.key` into `dir` (which must
/// exist), e.g. `write_files(dir, &ca, "server", &cert_pem, &key_pem)`.
/// Existing files are replaced.
pub fn write_files(
    dir: &Path,
    ca: &TestCa,
    stem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> CertFiles {
    let files = CertFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    write_file(&files.ca, &ca.cert_pem, 0o644);
    write_file(&files.cert, cert_pem, 0o644);
    write_file(&files.key, key_pem, 0o600);
    files
}

/// Writes `contents` to `path` with `mode`. The file is removed first so the
/// mode applies even if it existed (`mode()` only affects newly created files).
pub fn write_file(path: &Path, contents: &str, mode: u32) {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(contents.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
