pub mod certs;
pub mod pg;
