//! What classifying can fail with.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ClassifyError {
    #[error("cannot parse the statement: {0}")]
    Parse(String),
    #[error("the statement is too large to analyse ({0} bytes, at most {1})")]
    TooLarge(usize, usize),
    #[error("the classifier is not running")]
    Unavailable,
}
