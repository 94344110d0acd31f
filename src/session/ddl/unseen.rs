//! Review s35-fixes X7, defence in depth for rules: DDL that makes an aggregate,
//! an operator, a type or a cast names the functions it will run in its options,
//! and a spelling pgmoat does not read as a function (an old option name, say)
//! would let a `functions:` rule miss it. A later message sees it through the
//! catalog (an aggregate or operator is mapped to the functions it runs); until
//! the catalog can show it (the rest of the message, and of the transaction), a
//! statement that runs a function, operator or cast is refused, when some rule
//! that refuses or holds names functions. Such DDL is rare for agents: refusing
//! what follows it until the transaction ends is the fail-closed side. (A `CREATE
//! FUNCTION`'s body is judged where it is made: calling it at once is not refused.)

use crate::classify::{Facts, Kind};
use crate::policy::RuleSet;
use crate::protocol::sqlstate;
use crate::session::core::slots::lock;
use crate::session::verdict::{OwnCause, Refusal};

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

/// Whether it runs a function, an operator or a cast: any of them could be the new
/// object (a new aggregate may overload a built-in's name, a new operator a
/// built-in symbol, and the catalog cannot tell them apart yet).
fn runs_any(f: &Facts) -> bool {
    !f.functions.is_empty() || !f.operators.is_empty() || !f.type_casts.is_empty()
}

impl crate::session::judge::Judge {
    /// The refusal for a statement that runs a function, operator or cast after DDL
    /// of this message or of this session's unfinished transaction that makes an
    /// object running named functions (see the module), when the rules name
    /// functions.
    pub(in crate::session) fn unseen_code(
        &self,
        statements: &[Facts],
        rules: &RuleSet,
    ) -> Option<Refusal> {
        if !rules.names_functions() {
            return None;
        }
        let mut defined = lock(&self.ddl_running).as_ref().is_some_and(|m| m.defines);
        for f in statements {
            if defined && runs_code(f) && runs_any(f) {
                return Some(Refusal::own(
                    OwnCause::Catalog,
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "pgmoat: this statement runs a function, operator or cast after DDL \
                     earlier in this message or transaction made an aggregate, operator, \
                     type or cast, and pgmoat cannot see yet which functions that runs \
                     (rules name functions); send it after that DDL's transaction ends",
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
    fn what_runs_code_after_defining_ddl() {
        assert!(!runs_any(&facts("SELECT 1 FROM t")));
        assert!(runs_any(&facts("SELECT 1 WHERE 1 = 1")));
        assert!(runs_any(&facts("SELECT max(x) FROM t")));
        assert!(runs_any(&facts("SELECT x::text FROM t")));
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
