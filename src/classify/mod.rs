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
mod tests;

use std::sync::{mpsc, Arc, Mutex};

pub use error::ClassifyError;
pub use facts::{merge, CopyEnd, Facts, IfNotNull, Kind, WhereFacts};
pub use statements::bodies_create;
pub use tautology_views::{view_columns, ViewColumn};
pub use tree_key::tree_key;

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

/// A key that is the same for statements differing only in literal values: the
/// scanner's tokens (the server's own lexer, so quoting and comments are read exactly
/// as the server reads them), literals replaced by a placeholder, comments dropped.
pub fn shape_key(sql: &str) -> Option<String> {
    // The key uses these two bytes as markers; a text holding them gets no shape.
    if sql.bytes().any(|c| c <= 1) {
        return None;
    }
    // The one string literal that changes what other tokens mean: `U&"!0073ecret"
    // UESCAPE '!'` is the table `secret`, with `'#'` another name. Such texts are
    // cached by their exact text only.
    if has_uescape(sql.as_bytes()) {
        return None;
    }
    fast_shape_key(sql).or_else(|| scanned_shape_key(sql))
}

/// Whether `UESCAPE` (any case) is in the text, wherever (a comment or a literal
/// holding it only costs the shape cache).
fn has_uescape(b: &[u8]) -> bool {
    memchr::memchr2_iter(b'u', b'U', b).any(|i| {
        b.get(i..i + 7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"uescape"))
    })
}

/// The common case without a libpg_query call: plain statements with no comments,
/// dollar quotes, parameters or letter-prefixed strings (`E'..'`, `B'..'`; a `U&'..'`
/// string is folded like any other, its value being a literal's): digit
/// runs and standard single-quoted strings are folded, everything else is kept as
/// written. Anything it is not sure of returns None and the server's own scanner
/// decides instead. (Sessions cannot turn standard_conforming_strings off, so a
/// backslash in a plain string is just a character.)
fn fast_shape_key(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut key = String::with_capacity(sql.len() + 2);
    key.push_str("F\u{0}");
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut i = 0;
    let mut start = 0; // start of the verbatim run not yet copied
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && ident(b[i - 1]);
        match c {
            b'$' => return None,
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'"' => {
                // Quoted identifier: verbatim to its closing quote ("" escapes one).
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            b'\'' => {
                if prev_ident {
                    return None; // E'..', U&'..', B'..', X'..', N'..'
                }
                let lit_start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                key.push_str(sql.get(start..lit_start)?);
                key.push('\u{1}');
                start = i;
            }
            b'0'..=b'9' if !prev_ident => {
                let lit_start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                key.push_str(sql.get(start..lit_start)?);
                // Not a string's marker: a number is a typed value (`7::t` runs a
                // CREATE CAST function, `'7'::t` does not), so the two never share.
                key.push('\u{0}');
                start = i;
            }
            _ => i += 1,
        }
    }
    key.push_str(sql.get(start..)?);
    Some(key)
}

fn scanned_shape_key(sql: &str) -> Option<String> {
    use pg_query::protobuf::Token;
    let scanned = pg_query::scan(sql).ok()?;
    let mut key = String::with_capacity(sql.len() + 8);
    key.push_str("S\u{0}");
    for t in &scanned.tokens {
        let tok = t.token;
        if tok == Token::SqlComment as i32 || tok == Token::CComment as i32 {
            continue;
        }
        // Each kind of literal its own marker: a string, a number and a bit string
        // are different values to the walker (a number's cast runs a CREATE CAST
        // function, a string literal's does not).
        let marker = [
            (Token::Sconst, "\u{1}S"),
            (Token::Usconst, "\u{1}S"),
            (Token::Iconst, "\u{1}N"),
            (Token::Fconst, "\u{1}N"),
            (Token::Bconst, "\u{1}B"),
            (Token::Xconst, "\u{1}X"),
        ]
        .iter()
        .find(|(l, _)| *l as i32 == tok)
        .map(|(_, m)| *m);
        if let Some(m) = marker {
            key.push_str(m);
        } else {
            let (a, b) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
            key.push_str(sql.get(a..b)?);
        }
        key.push('\u{0}');
    }
    Some(key)
}

type Cache = crate::cache::Bounded<Box<str>, Arc<Classified>>;

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
        let key = (sql.len() <= SHAPE_MAX).then(|| shape_key(sql)).flatten();
        let hit = key.as_deref().and_then(|k| self.shapes.get(k));
        (hit, key)
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
