//! One parse per SQL text: libpg_query's tree of a text, shared by the classifier's
//! facts walk (on its cache misses) and lineage ([`super::lineage::analyze_in`]).
//!
//! Lineage used to parse every statement again for itself. The tree is kept here, by
//! the exact text, rather than in the classifier's entries: facts are also cached by
//! statement shape (the same statement with other literals), whose tree is another
//! text's, and lineage is asked for with the text alone (by `mask`, per identity). A
//! parse depends on the text alone, so one process-wide cache serves every classifier
//! and every identity alike.

use std::sync::{Arc, LazyLock};

use super::error::ClassifyError;
use super::tree::{self, Value};

/// How many texts keep their trees. A tree takes about 70 times its text's bytes
/// (measured: 3.5 KB for pgbench's 55-byte SELECT, 16 KB for a 200-byte join), so
/// with [`CACHED_TEXT_MAX`] this holds some 16 MB for typical statements and at most
/// about 70 MB. What matters most is the text just classified, whose lineage is asked
/// for next (on a first sight, or for an identity with other masks).
const CACHE_MAX: usize = 1024;
/// Longer texts are parsed again when lineage needs them: they are rarer, their
/// trees big.
const CACHED_TEXT_MAX: usize = 1 << 10;
/// Deeper trees are not kept: a cached tree may be dropped on any thread (whichever
/// lets go of it last), and dropping one recurses as deep as it goes, which only the
/// parse threads' stacks can take for deep ones. Real statements stay far below.
const CACHED_DEPTH_MAX: usize = 400;

/// One statement of a parsed text.
#[derive(Debug)]
pub struct Statement {
    pub tree: Value,
    /// Byte offset and length in the text (a length of 0: to the end).
    location: i32,
    len: i32,
}

impl Statement {
    /// Its own text within the text it was parsed from.
    pub fn text<'s>(&self, sql: &'s str) -> &'s str {
        let start = usize::try_from(self.location).unwrap_or(0).min(sql.len());
        let end = if self.len <= 0 {
            sql.len()
        } else {
            (start + self.len as usize).min(sql.len())
        };
        sql.get(start..end).unwrap_or(sql)
    }
}

/// A text's statements, in order.
#[derive(Debug)]
pub struct Parsed {
    pub statements: Vec<Statement>,
}

impl Parsed {
    pub fn trees(&self) -> impl Iterator<Item = &Value> {
        self.statements.iter().map(|s| &s.tree)
    }
}

static CACHE: LazyLock<crate::cache::Bounded<Box<str>, Arc<Parsed>>> =
    LazyLock::new(|| crate::cache::Bounded::new(CACHE_MAX));

/// The statements of `sql` (top-level grammar), parsed once and then from the cache.
/// Runs libpg_query on a miss, and walks deep trees: call it on a parse thread.
pub fn parse(sql: &str) -> Result<Arc<Parsed>, ClassifyError> {
    let cacheable = sql.len() <= CACHED_TEXT_MAX;
    if cacheable {
        if let Some(hit) = CACHE.get(sql) {
            return Ok(hit);
        }
    }
    let (parsed, depth) = parse_measured(sql, pg_query::ParserOptions::DEFAULT)?;
    let parsed = Arc::new(parsed);
    if cacheable && depth <= CACHED_DEPTH_MAX {
        CACHE.insert(sql.into(), Arc::clone(&parsed));
    }
    Ok(parsed)
}

/// Parse, not cached (other options, such as PL/pgSQL expressions; or texts whose
/// trees are not worth keeping).
pub fn parse_with(sql: &str, options: pg_query::ParserOptions) -> Result<Parsed, ClassifyError> {
    Ok(parse_measured(sql, options)?.0)
}

/// The statements and how deep the deepest tree goes.
fn parse_measured(
    sql: &str,
    options: pg_query::ParserOptions,
) -> Result<(Parsed, usize), ClassifyError> {
    let parsed = pg_query::parse(sql, options).map_err(|e| ClassifyError::Parse(e.to_string()))?;
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    let mut deepest = 0;
    for raw in &parsed.protobuf.stmts {
        let (tree, depth) =
            tree::to_tree_measured(&raw.stmt).map_err(|e| ClassifyError::Parse(e.to_string()))?;
        deepest = deepest.max(depth);
        statements.push(Statement {
            tree,
            location: raw.stmt_location,
            len: raw.stmt_len,
        });
    }
    Ok((Parsed { statements }, deepest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_parsed_once() {
        let sql = "SELECT a FROM parse_cache_probe WHERE b = 1; SELECT 2";
        let first = parse(sql).unwrap();
        let again = parse(sql).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let texts: Vec<&str> = first.statements.iter().map(|s| s.text(sql)).collect();
        assert_eq!(
            texts,
            ["SELECT a FROM parse_cache_probe WHERE b = 1", "SELECT 2"]
        );
    }

    #[test]
    fn the_classifiers_parse_is_kept_for_lineage_others_are_not() {
        let kept = "SELECT kept_for_lineage FROM parse_cache_probe";
        super::super::classify_kept(kept).unwrap();
        assert!(CACHE.get(kept).is_some());
        let fresh = "SELECT not_kept FROM parse_cache_probe";
        super::super::classify_now(fresh).unwrap();
        assert!(CACHE.get(fresh).is_none());
    }

    #[test]
    fn deep_trees_are_not_kept() {
        // Unary minus on a column: nested operator nodes (on a constant it is folded).
        // Building deep trees needs the parse threads' stack, as in production.
        let sql = format!("SELECT {}x FROM t", "- ".repeat(200));
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || {
                let first = parse(&sql).unwrap();
                let again = parse(&sql).unwrap();
                assert!(!Arc::ptr_eq(&first, &again));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
