//! SQL -> per-statement [`Facts`], on libpg_query's parse tree. The only module that
//! touches `pg_query`.
//!
//! Parses run on a few dedicated threads with large stacks: the tree of a long
//! `OR`/`IN` chain is deep, and walking it on a 2 MiB tokio stack would overflow (which
//! aborts the process). Results are cached by the exact statement text, so a repeated
//! statement never reaches libpg_query again.

mod facts;
mod plpgsql;
mod tautology;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

use thiserror::Error;

pub use facts::{CopyEnd, Facts, Kind, WhereFacts};
use walk::{Body, Walker};

/// Statements nested in bodies (DO inside a function inside a DO...) deeper than this
/// are refused rather than followed.
const MAX_BODY_DEPTH: usize = 8;
/// Parse threads' stack: enough for libpg_query's own depth limit.
const PARSE_STACK: usize = 16 << 20;
const CACHE_MAX: usize = 20_000;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ClassifyError {
    #[error("cannot parse the statement: {0}")]
    Parse(String),
    #[error("the statement is too large to analyse ({0} bytes, at most {1})")]
    TooLarge(usize, usize),
    #[error("the classifier is not running")]
    Unavailable,
}

/// A classified message: one [`Facts`] per statement, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    pub statements: Vec<Facts>,
}

/// Classify SQL on the current thread. Callers on async runtimes use [`Classifier`],
/// which runs this on a thread with a large stack.
pub fn classify_now(sql: &str) -> Result<Classified, ClassifyError> {
    Ok(Classified {
        statements: parse_statements(sql, 0)?,
    })
}

fn parse_statements(sql: &str, depth: usize) -> Result<Vec<Facts>, ClassifyError> {
    parse_statements_with(sql, depth, pg_query::ParserOptions::DEFAULT)
}

fn parse_statements_with(
    sql: &str,
    depth: usize,
    options: pg_query::ParserOptions,
) -> Result<Vec<Facts>, ClassifyError> {
    let parsed = pg_query::parse(sql, options).map_err(|e| ClassifyError::Parse(e.to_string()))?;
    let mut out = Vec::with_capacity(parsed.protobuf.stmts.len());
    for raw in &parsed.protobuf.stmts {
        let text = statement_text(sql, raw.stmt_location, raw.stmt_len);
        let tree =
            serde_json::to_value(&raw.stmt).map_err(|e| ClassifyError::Parse(e.to_string()))?;
        let mut walker = Walker::new(text);
        walker.walk(&tree, "", "stmt");
        let (mut facts, bodies) = walker.finish();
        for body in bodies {
            if depth >= MAX_BODY_DEPTH {
                facts.unanalysable = Some("code nested too deeply to follow".into());
                break;
            }
            let inner = match body {
                Body::Sql(code) => parse_statements(&code, depth + 1),
                Body::Plpgsql(stmt) => plpgsql::facts(&stmt, depth + 1),
            };
            match inner {
                Ok(list) => {
                    for f in list {
                        merge(&mut facts, f);
                    }
                }
                Err(e) => {
                    facts.unanalysable = Some(format!("a body that cannot be parsed ({e})"));
                }
            }
        }
        out.push(facts);
    }
    Ok(out)
}

/// The text of one statement in a multi-statement string (locations are bytes).
fn statement_text(sql: &str, location: i32, len: i32) -> &str {
    let start = usize::try_from(location).unwrap_or(0).min(sql.len());
    let end = if len <= 0 {
        sql.len()
    } else {
        (start + len as usize).min(sql.len())
    };
    sql.get(start..end).unwrap_or(sql)
}

/// Fold the facts of code run by a statement into the statement's own.
pub(crate) fn merge(into: &mut Facts, from: Facts) {
    into.kinds
        .extend(from.kinds.into_iter().filter(|k| *k != Kind::Other));
    into.tables_read.extend(from.tables_read);
    into.tables_written.extend(from.tables_written);
    into.columns.extend(from.columns);
    into.functions.extend(from.functions);
    into.settings.extend(from.settings);
    into.copy.extend(from.copy);
    into.where_.missing |= from.where_.missing;
    into.where_.tautology |= from.where_.tautology;
    into.where_.applies |= from.where_.applies;
    if into.unanalysable.is_none() {
        into.unanalysable = from.unanalysable;
    }
}

type Job = (
    String,
    tokio::sync::oneshot::Sender<Result<Arc<Classified>, ClassifyError>>,
);

/// The shared classifier: cache plus parse threads.
pub struct Classifier {
    cache: Mutex<HashMap<Box<str>, Arc<Classified>>>,
    jobs: Mutex<mpsc::Sender<Job>>,
    max_bytes: usize,
}

impl Classifier {
    /// Start `threads` parse threads. `max_bytes` caps a statement's size: bigger ones
    /// are refused before parsing (a 10 MB `IN (...)` list can take a parser minutes).
    pub fn start(threads: usize, max_bytes: usize) -> Arc<Classifier> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("pgmoat-parse-{n}"))
                .stack_size(PARSE_STACK)
                .spawn(move || loop {
                    let job = {
                        let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                        guard.recv()
                    };
                    let Ok((sql, reply)) = job else { return };
                    let _ = reply.send(classify_now(&sql).map(Arc::new));
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a parse thread: {e}");
            }
        }
        Arc::new(Classifier {
            cache: Mutex::new(HashMap::new()),
            jobs: Mutex::new(tx),
            max_bytes,
        })
    }

    pub fn cached(&self, sql: &str) -> Option<Arc<Classified>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned()
    }

    /// Classify, from the cache when the exact text was seen before.
    pub async fn classify(&self, sql: &str) -> Result<Arc<Classified>, ClassifyError> {
        if sql.len() > self.max_bytes {
            return Err(ClassifyError::TooLarge(sql.len(), self.max_bytes));
        }
        if let Some(hit) = self.cached(sql) {
            return Ok(hit);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.send((sql.to_owned(), tx))
                .map_err(|_| ClassifyError::Unavailable)?;
        }
        let result = rx.await.map_err(|_| ClassifyError::Unavailable)?;
        if let Ok(c) = &result {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(sql.into(), Arc::clone(c));
        }
        result
    }
}
