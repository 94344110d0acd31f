//! Where each output column's values come from (for masking).
//!
//! RowDescription names the source column of plain references; everything else
//! (expressions, whole-row references, aggregates, set operations, functions in FROM,
//! RETURNING) is traced here on the parse tree, scope by scope: CTEs, derived tables
//! with renamed columns, joins, LATERAL, sub-selects. Each output column gets a
//! [`Taint`]: clean, straight from a masked column, computed from one, or unknown.
//! When the analysis cannot tell, the taint is unknown and the caller masks.
//!
//! What a relation's columns are, and which are masked, comes from the caller through
//! [`Relations`] (the target's catalog and the identity's masks). This file is the
//! entry: the statements of a message in order. The types lineage speaks in are in
//! `lineage_model.rs`; the analyzer and its statement-level tracing in
//! `lineage_analyzer.rs`. Names resolve as the server resolves them: output column
//! names in `lineage_names.rs`, scopes, joins and column references in
//! `lineage_scope.rs`, what earlier statements of the message made (or may have made)
//! in `lineage_locals.rs` (the record) and `lineage_remember.rs` (keeping it). FROM
//! items are traced in `lineage_from.rs`, expressions and target lists in
//! `lineage_expr.rs`, writes (DML and COPY) in `lineage_dml.rs`, code a write or DDL
//! installs in `lineage_install.rs`. Only this file declares the others; none of them
//! imports it, and they import each other one way.

use super::error::ClassifyError;

#[path = "lineage_analyzer.rs"]
mod analyzer;
#[path = "lineage_dml.rs"]
mod lineage_dml;
#[path = "lineage_expr.rs"]
mod lineage_expr;
#[path = "lineage_from.rs"]
mod lineage_from;
#[path = "lineage_install.rs"]
mod lineage_install;
#[path = "lineage_names.rs"]
mod lineage_names;
#[path = "lineage_scope.rs"]
mod lineage_scope;
#[path = "lineage_locals.rs"]
mod locals;
#[path = "lineage_model.rs"]
mod model;
#[path = "lineage_remember.rs"]
mod remember;

use analyzer::trace;
pub(crate) use lineage_expr::SINK_FUNCTIONS;
use locals::Locals;
pub use model::{Lineage, Named, Relation, Relations, Runs, Taint};
use remember::remember;

/// Trace every statement in `sql`. May run libpg_query (the parse is shared with
/// classification, see `parse.rs`): call it on a parse thread.
pub fn analyze(sql: &str, rels: &dyn Relations) -> Result<Vec<Lineage>, ClassifyError> {
    analyze_in(sql, rels, false)
}

/// [`analyze`], trusting what earlier statements of the message made provably clean
/// (see [`Locals`]) when `trust_local`: the session's search_path is the default.
pub fn analyze_in(
    sql: &str,
    rels: &dyn Relations,
    trust_local: bool,
) -> Result<Vec<Lineage>, ClassifyError> {
    // The tree the rules' facts came from, when they were just classified.
    let parsed = super::parse::parse(sql)?;
    let mut out = Vec::with_capacity(parsed.statements.len());
    let mut locals = Locals {
        trust: trust_local,
        ..Locals::default()
    };
    for tree in parsed.trees() {
        let mut t = trace(tree, rels, &locals);
        if t.runs && locals.any_clean() {
            // Code pgmoat does not follow runs in it: it may fill the message's
            // tables before they are read, even within the statement.
            locals.forget();
            t = trace(tree, rels, &locals);
        }
        if t.runs {
            locals.forget();
        }
        locals.code_ran |= t.makes_relations;
        if t.changes_path {
            // pg_temp may no longer come first: what the message makes is not
            // necessarily what its later statements name.
            locals.forget();
            locals.trust = false;
        }
        let l = t.lineage;
        remember(tree, rels, &mut locals);
        out.push(l);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "lineage_tests.rs"]
mod tests;
