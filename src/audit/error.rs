//! Why an audit record could not be written or a store could not be read.

use thiserror::Error;

/// Writing side: what the session sees when a record is not durable. Cheap to clone,
/// because one failed write or fsync fails every record that was waiting on it.
#[derive(Debug, Clone, Error)]
pub enum AuditError {
    #[error("audit store {dir}: {message}")]
    Io { dir: String, message: String },
    /// An earlier fsync failed: what the kernel kept of the dirty pages is unknown, so
    /// nothing more is accepted until pgmoat restarts and re-checks the tail.
    #[error("audit store {dir} failed earlier ({message}); restart pgmoat to re-check it")]
    Failed { dir: String, message: String },
    #[error("the audit writer has stopped")]
    Closed,
}

/// Reading side: opening a store, or `pgmoat audit verify/sessions/replay`.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    /// The store is damaged somewhere other than a torn tail: refuse to append to it.
    #[error(
        "audit store {dir} is damaged at seq {seq}: {reason} (run `pgmoat audit verify {dir}`)"
    )]
    Damaged {
        dir: String,
        seq: u64,
        reason: String,
    },
}

impl StoreError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
