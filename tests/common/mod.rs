pub mod certs;
pub mod jwt;
pub mod pg;
pub mod sshd;
