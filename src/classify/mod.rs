//! SQL -> per-statement [`Facts`], on libpg_query's parse tree. The only module that
//! touches `pg_query`.
//!
//! Parses run on a few dedicated threads with large stacks: the tree of a long
//! `OR`/`IN` chain is deep, and walking it on a 2 MiB tokio stack would overflow (which
//! aborts the process). Results are cached by the exact statement text, so a repeated
//! statement never reaches libpg_query again.

mod error;
mod facts;
pub mod lineage;
pub mod node;
pub mod node_kind;
mod parse;
mod plpgsql;
mod plpgsql_cursors;
mod shape;
mod statements;
mod tautology;
mod tautology_fold;
mod tautology_schema;
mod tautology_views;
pub mod tree;
mod tree_key;
mod walk;

#[cfg(test)]
mod code_tests;
#[cfg(test)]
mod shape_tests;
#[cfg(test)]
mod tests;

use std::sync::{mpsc, Arc, Mutex};

pub use error::ClassifyError;
pub use facts::{merge, CopyEnd, Facts, IfNotNull, Kind, WhereFacts};
pub use shape::{shape_key, shape_key_into};
pub use statements::bodies_create;
pub use tautology_views::{view_columns, ViewColumn};
pub use tree_key::tree_key;
pub use walk::{computed_setting, rereads_sql_setting};

/// Whether a built-in function (its bare name, lower case) runs SQL held in a string
/// or reads a relation, schema or cursor named by a value: what it reads is not a
/// relation the rules or masks can see.
pub fn runs_sql_in_string(bare: &str) -> bool {
    walk::strings::runs_sql_in_string(bare)
}

/// Parse threads' stack: enough for libpg_query's own depth limit.
const PARSE_STACK: usize = 16 << 20;
const CACHE_MAX: usize = 20_000;

/// A classified message: one [`Facts`] per statement, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    pub statements: Vec<Facts>,
    /// Some fact depends on a literal's value, so the result is only reusable for this
    /// exact text, not for the same statement shape with other literals.
    pub literal_sensitive: bool,
}

/// Classify SQL on the current thread. Callers on async runtimes use [`Classifier`],
/// which runs this on a thread with a large stack.
pub fn classify_now(sql: &str) -> Result<Classified, ClassifyError> {
    let parsed = parse::parse_with(sql, pg_query::ParserOptions::DEFAULT)?;
    classified(&parsed, sql)
}

/// [`classify_now`] for the classifier's misses: the parse is kept (see `parse.rs`)
/// for the lineage that may follow. Others (catalog reads, `pgmoat explain`) do not
/// keep theirs: they would push statements' trees out.
fn classify_kept(sql: &str) -> Result<Classified, ClassifyError> {
    let parsed = parse::parse(sql)?;
    classified(&parsed, sql)
}

fn classified(parsed: &parse::Parsed, sql: &str) -> Result<Classified, ClassifyError> {
    let mut sensitive = false;
    let statements = statements::statements(parsed, sql, 0, &mut sensitive)?;
    Ok(Classified {
        statements,
        literal_sensitive: sensitive,
    })
}

/// Work for a parse thread (anything that runs libpg_query or walks its deep trees).
type Job = Box<dyn FnOnce() + Send>;

/// Statements up to this size get a literal-insensitive cache key (scanning is cheap,
/// but not free, and runs on the session's own thread).
const SHAPE_MAX: usize = 64 << 10;

type Cache = crate::cache::Bounded<Box<str>, Arc<Classified>>;

thread_local! {
    /// [`Classifier::lookup`]'s shape key, reused (at most `SHAPE_MAX` and a bit).
    static SHAPE_BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The shared classifier: caches plus parse threads.
pub struct Classifier {
    /// By exact text: results whose facts depend on literal values.
    cache: Cache,
    /// By [`shape_key`]: results that hold for any literals.
    shapes: Cache,
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
                    let Ok(job) = job else { return };
                    job();
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a parse thread: {e}");
            }
        }
        Arc::new(Classifier {
            cache: Cache::new(CACHE_MAX),
            shapes: Cache::new(CACHE_MAX),
            jobs: Mutex::new(tx),
            max_bytes,
        })
    }

    /// Run `f` on a parse thread (large stack) and wait for its result.
    pub async fn on_parse_thread<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ClassifyError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| ClassifyError::Unavailable)?;
        }
        rx.await.map_err(|_| ClassifyError::Unavailable)
    }

    /// The cached result for this text, by exact text or by shape; never parses.
    pub fn cached(&self, sql: &str) -> Option<Arc<Classified>> {
        self.lookup(sql).0
    }

    /// A cache hit, or the shape key to store the result under.
    fn lookup(&self, sql: &str) -> (Option<Arc<Classified>>, Option<String>) {
        let exact = self.cache.get(sql);
        if exact.is_some() {
            return (exact, None);
        }
        if sql.len() > SHAPE_MAX {
            return (None, None);
        }
        // The key is built in the thread's own buffer: a hit (the common case for a
        // text never seen, as each `aid` of `pgbench -S`) then allocates nothing.
        SHAPE_BUF.with_borrow_mut(|key| {
            if !shape_key_into(sql, key) {
                return (None, None);
            }
            match self.shapes.get(key.as_str()) {
                Some(hit) => (Some(hit), None),
                None => (None, Some(key.clone())),
            }
        })
    }

    /// Classify, from a cache when this text, or this statement with other literals
    /// (for results that hold for any literals), was seen before.
    pub async fn classify(&self, sql: &str) -> Result<Arc<Classified>, ClassifyError> {
        if sql.len() > self.max_bytes {
            return Err(ClassifyError::TooLarge(sql.len(), self.max_bytes));
        }
        let (hit, key) = self.lookup(sql);
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let owned = sql.to_owned();
        let result = self
            .on_parse_thread(move || classify_kept(&owned).map(Arc::new))
            .await?;
        if let Ok(c) = &result {
            let (map, k): (&Cache, Box<str>) = match key {
                Some(k) if !c.literal_sensitive => (&self.shapes, k.into()),
                _ => (&self.cache, sql.into()),
            };
            map.insert(k, Arc::clone(c));
        }
        result
    }
}
