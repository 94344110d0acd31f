//! What earlier statements of one message made that pgmoat can prove clean (temporary
//! tables and SQL functions), for the statements after them: see [`Locals`].

use crate::classify::tree::Value;

/// What earlier statements of the same message made that is provably clean: pgmoat
/// saw every way data got into it. Temporary tables created with built-in column types
/// and defaults, checks and generated columns that run no user code (rows then only
/// come from INSERT, UPDATE and MERGE, whose values the laundering checks judged), and
/// SQL functions whose bodies read nothing masked. Anything pgmoat does not follow
/// (user code, DO, CALL, writes to other tables, which may fire triggers; DDL; the end
/// of a transaction or a savepoint's rollback; a search_path change) forgets it all.
/// Only trusted when the session has not changed search_path (pg_temp comes first).
#[derive(Debug, Default)]
pub(super) struct Locals {
    pub(super) trust: bool,
    /// Temporary tables by name, with their columns.
    pub(super) tables: std::collections::HashMap<String, Vec<String>>,
    /// Functions by name as written (lowercase): whether provably clean. A function
    /// that is not stays so for the message (it may have replaced a known one).
    pub(super) functions: std::collections::HashMap<String, bool>,
    /// Provably clean `pg_temp.f()` functions with no parameters that the message
    /// created (not replaced): a call `pg_temp.f()` can only be that one, whatever
    /// other sessions' temporary functions of that name the catalog lists.
    pub(super) nullary: std::collections::HashSet<String>,
    /// Relations earlier statements made, replaced, renamed or changed (bare names),
    /// trusted or not: the catalog pgmoat read does not describe them, and a temporary
    /// one shadows a table of the same name, even a system one (pg_temp comes first).
    pub(super) made: std::collections::HashSet<String>,
    /// Temporary views by name: their query and column aliases, traced when read.
    pub(super) views: std::collections::HashMap<String, (Value, Vec<String>)>,
    /// Code pgmoat does not follow ran (DO, CALL, a user function): it may have made
    /// relations of any name.
    pub(super) code_ran: bool,
}

impl Locals {
    pub(super) fn any_clean(&self) -> bool {
        !self.tables.is_empty() || !self.views.is_empty() || self.functions.values().any(|c| *c)
    }

    pub(super) fn forget(&mut self) {
        self.tables.clear();
        self.nullary.clear();
        self.views.clear();
        self.functions.retain(|_, clean| !*clean);
    }

    /// A function's entry: Some(clean) when the message made one of this name.
    pub(super) fn function(&self, name: &str) -> Option<bool> {
        let name = name.to_ascii_lowercase();
        let bare = name.rsplit('.').next().unwrap_or(&name);
        // A function of the same bare name the message made unclean could be the one
        // called (an overload, another schema): not clean.
        let dirty = self
            .functions
            .iter()
            .any(|(k, clean)| !clean && k.rsplit('.').next() == Some(bare));
        if dirty {
            return Some(false);
        }
        self.functions.get(&name).copied()
    }
}
