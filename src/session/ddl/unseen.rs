//! Review s35-fixes X7, defence in depth for rules: DDL that makes an aggregate,
//! an operator, a type or a cast names the functions it will run in its options,
//! and a spelling pgmoat does not read as a function (an old option name, say)
//! would let a `functions:` rule miss it. (A `CREATE FUNCTION`'s body is judged
//! where it is made: calling it at once is not refused.) A later message sees it through the
//! catalog (an aggregate or operator is mapped to the functions it runs); until
//! the catalog can show it (the rest of the message, and of the transaction), a
//! statement that runs a function or operator the catalog does not know is
//! refused, when some rule that refuses or holds names functions.

use crate::catalog::Catalog;
use crate::classify::{Facts, Kind};
use crate::policy::RuleSet;
use crate::protocol::sqlstate;
use crate::session::core::slots::lock;
use crate::session::verdict::{OwnCause, Refusal};

/// Built-in operators' names: an operator of one of these names is taken for the
/// built-in (a user operator overloading one, made in the same transaction, is not
/// told apart: the catalog's operators are by name).
const BUILTIN_OPERATORS: &[&str] = &[
    "=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "^", "|/", "||/", "@", "&",
    "|", "#", "~", "<<", ">>", "||", "~~", "!~~", "~~*", "!~~*", "~*", "!~", "!~*", "@>", "<@",
    "&&", "@@", "@@@", "->", "->>", "#>", "#>>", "?", "?|", "?&", "@?", "#-", "<->", "<<=", ">>=",
    "-|-", "&<", "&>", "<<|", "|>>", "&<|", "|&>", "<^", ">^", "?#", "?-", "?-|", "?||", "@-@",
    "##", "~=", "^@", "!!",
];

/// Kinds that run the functions and operators they name (DDL that only refers to
/// one, `CREATE TRIGGER ... EXECUTE FUNCTION f()`, runs it later, when the catalog
/// shows it).
fn runs_code(f: &Facts) -> bool {
    f.kinds.iter().any(|k| {
        matches!(
            k,
            Kind::Select
                | Kind::Insert
                | Kind::Update
                | Kind::Delete
                | Kind::Merge
                | Kind::CopyTo
                | Kind::CopyFrom
                | Kind::Call
                | Kind::Do
        )
    })
}

/// A function that is neither built-in nor compiled nor a user function the catalog
/// has read, or an operator that is neither built-in nor the catalog's.
fn calls_unknown(f: &Facts, catalog: &Catalog) -> bool {
    f.functions
        .iter()
        .any(|g| !catalog.is_native_function(g) && catalog.function_facts(g).is_none())
        || f.operators.iter().any(|o| {
            let (schema, name) = o.rsplit_once('.').unwrap_or(("", o));
            catalog.operator_functions(o).is_empty()
                && !(BUILTIN_OPERATORS.contains(&name) && matches!(schema, "" | "pg_catalog"))
        })
}

impl crate::session::judge::Judge {
    /// The refusal for a statement after DDL of this message or of this session's
    /// unfinished transaction that makes an object running named functions that runs code the catalog does not know
    /// (see the module), when the rules name functions.
    pub(in crate::session) fn unseen_code(
        &self,
        statements: &[Facts],
        rules: &RuleSet,
        catalog: &Catalog,
    ) -> Option<Refusal> {
        if !rules.names_functions() {
            return None;
        }
        let mut defined = lock(&self.ddl_running).as_ref().is_some_and(|m| m.defines);
        for f in statements {
            if defined && runs_code(f) && calls_unknown(f, catalog) {
                return Some(Refusal::own(
                    OwnCause::Catalog,
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "pgmoat: this statement runs a function or operator that DDL earlier in \
                     this message or transaction may have made, and pgmoat cannot see yet \
                     which functions it runs (rules name functions); send it after that \
                     DDL's transaction ends",
                ));
            }
            defined |= f.defines_code;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify_now;

    fn facts(sql: &str) -> Facts {
        classify_now(sql).unwrap().statements.remove(0)
    }

    #[test]
    fn unknown_code_is_told_from_built_ins() {
        let catalog = Catalog::default();
        // An empty catalog knows no native function either: only operators here.
        assert!(!calls_unknown(
            &facts("SELECT 1 WHERE 1 = 1 AND 'a' || 'b' <> 'c'"),
            &catalog
        ));
        assert!(!calls_unknown(
            &facts("SELECT 1 OPERATOR(pg_catalog.+) 2"),
            &catalog
        ));
        assert!(calls_unknown(&facts("SELECT 1 ### 2"), &catalog));
        assert!(calls_unknown(&facts("SELECT 1 OPERATOR(s.+) 2"), &catalog));
        assert!(calls_unknown(&facts("SELECT myagg(x) FROM t"), &catalog));
        assert!(runs_code(&facts("INSERT INTO t VALUES (1)")));
        assert!(!runs_code(&facts(
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()"
        )));
        let define = facts("CREATE AGGREGATE a(int8) (SFUNC = f, STYPE = int8)");
        assert!(!runs_code(&define) && define.defines_code);
        assert!(
            facts("CREATE OPERATOR ### (FUNCTION = f, LEFTARG = int8, RIGHTARG = int8)")
                .defines_code
        );
        assert!(facts("CREATE CAST (text AS int8) WITH FUNCTION f(text)").defines_code);
        assert!(!facts("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'").defines_code);
    }
}
