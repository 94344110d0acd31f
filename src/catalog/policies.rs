//! Row-level security policies (review s36 F9): a policy's USING expression runs on
//! every read of its table, and USING and WITH CHECK on writes, calling whatever
//! functions it names and reading whatever its sub-queries read. A policy made
//! behind pgmoat's back (a DBA's, on the server) is code like a trigger: its facts
//! are folded into every statement that reads or writes its table (through views
//! too), and masks trace it in the table's scope.
//!
//! Kept simple and conservative: which roles a policy names, which command it is
//! for, and whether RLS applies to the target's role at all (an owner without FORCE,
//! BYPASSRLS, a superuser) are not read. Every policy of a table with row level
//! security enabled counts for every read (its USING) and write (USING and WITH
//! CHECK) of the table. A table with RLS disabled runs none of its policies until
//! it is enabled: they are dormant, and an ALTER TABLE of the table (which may
//! enable them) is judged as installing them, as CREATE POLICY is.

use std::collections::{BTreeMap, HashMap};

use crate::classify::{classify_now, merge, Facts, Kind};

/// Code a table's policies run, as SQL over the table (`SELECT (e1), (e2) FROM
/// s.t`, for masks to trace in the table's scope: the columns the expressions name
/// are the table's) and as that SQL's facts (for rules), the table itself read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyCode {
    /// None: a policy could not be read (its table was locked and the previous load
    /// did not know it) or parsed. The facts are then unanalysable: never ignored.
    pub sql: Option<String>,
    pub facts: Facts,
}

/// A table's row-level security policies: what a read runs (their USING
/// expressions) and what a write runs (USING and WITH CHECK). None: no policy has
/// such an expression (a FOR INSERT policy has no USING).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    pub read: Option<PolicyCode>,
    pub write: Option<PolicyCode>,
}

/// One table's rows of `POLICIES`, gathered.
#[derive(Default)]
struct Gathered {
    quoted: String,
    locked: bool,
    enabled: bool,
    using: Vec<String>,
    check: Vec<String>,
}

/// The policies of the tables with RLS enabled, and the dormant ones (what writing
/// the table would run) of tables with it disabled.
pub(super) type Loaded = (HashMap<String, Policies>, HashMap<String, PolicyCode>);

/// The policies of every table the rows name (see `queries::POLICIES`). A locked
/// table keeps what `previous` knew of it; one it did not know gets unreadable code.
/// Parses each expression here, once per load: call off the async workers.
pub(super) fn from_rows(rows: Vec<Vec<Option<String>>>, previous: &Loaded) -> Loaded {
    let mut tables: BTreeMap<String, Gathered> = BTreeMap::new();
    for r in rows {
        let [Some(table), Some(quoted), Some(locked), Some(enabled), using, check] = r.as_slice()
        else {
            continue;
        };
        let g = tables.entry(table.clone()).or_default();
        g.quoted = quoted.clone();
        g.locked |= locked == "t";
        g.enabled |= enabled == "t";
        g.using.extend(using.clone());
        g.check.extend(check.clone());
    }
    let (mut out, mut dormant) = (HashMap::new(), HashMap::new());
    for (table, g) in tables {
        let both: Vec<String> = g.using.iter().chain(&g.check).cloned().collect();
        if !g.enabled {
            let code = match g.locked.then(|| previous.1.get(&table)) {
                Some(Some(kept)) => Some(kept.clone()),
                Some(None) => Some(unreadable(&table)),
                None => code(&table, &g.quoted, &both),
            };
            if let Some(c) = code {
                dormant.insert(table, c);
            }
            continue;
        }
        if g.locked {
            let kept = previous.0.get(&table).cloned().unwrap_or_else(|| Policies {
                read: Some(unreadable(&table)),
                write: Some(unreadable(&table)),
            });
            out.insert(table, kept);
            continue;
        }
        let policies = Policies {
            read: code(&table, &g.quoted, &g.using),
            write: code(&table, &g.quoted, &both),
        };
        out.insert(table, policies);
    }
    (out, dormant)
}

/// The code of these expressions over `quoted` (None when there are none).
fn code(table: &str, quoted: &str, exprs: &[String]) -> Option<PolicyCode> {
    if exprs.is_empty() {
        return None;
    }
    let list: Vec<String> = exprs.iter().map(|e| format!("({e})")).collect();
    let sql = format!("SELECT {} FROM {quoted}", list.join(", "));
    let Some(mut facts) = facts_of(&sql) else {
        return Some(unreadable(table));
    };
    // The SELECT around the expressions is not something the statement does.
    facts.kinds.remove(&Kind::Select);
    Some(PolicyCode {
        sql: Some(sql),
        facts,
    })
}

fn facts_of(sql: &str) -> Option<Facts> {
    let classified = classify_now(sql).ok()?;
    let mut merged = Facts::default();
    for f in classified.statements {
        merge(&mut merged, f);
    }
    Some(merged)
}

fn unreadable(table: &str) -> PolicyCode {
    PolicyCode {
        sql: None,
        facts: Facts {
            unanalysable: Some(format!(
                "a read or write of {table} (its row-level security policies could not be read)"
            )),
            ..Facts::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        table: &str,
        locked: bool,
        using: Option<&str>,
        check: Option<&str>,
    ) -> Vec<Option<String>> {
        vec![
            Some(table.into()),
            Some(format!("\"{}\"", table.replace('.', "\".\""))),
            Some(if locked { "t" } else { "f" }.into()),
            Some("t".into()),
            using.map(Into::into),
            check.map(Into::into),
        ]
    }

    fn load(rows: Vec<Vec<Option<String>>>) -> HashMap<String, Policies> {
        from_rows(rows, &Loaded::default()).0
    }

    #[test]
    fn reads_fold_using_and_writes_both() {
        let p = load(vec![
            row("public.t", false, Some("f(a)"), None),
            row("public.t", false, None, Some("g(b) > 0")),
        ]);
        let t = &p["public.t"];
        let read = t.read.as_ref().unwrap();
        assert_eq!(
            read.sql.as_deref(),
            Some("SELECT (f(a)) FROM \"public\".\"t\"")
        );
        assert!(read.facts.functions.contains("f") && !read.facts.functions.contains("g"));
        assert!(read.facts.tables_read.contains("public.t"));
        assert!(!read.facts.kinds.contains(&Kind::Select));
        let write = t.write.as_ref().unwrap();
        assert!(write.facts.functions.contains("f") && write.facts.functions.contains("g"));
    }

    #[test]
    fn insert_only_policies_run_nothing_on_reads() {
        let p = load(vec![row("public.t", false, None, Some("f()"))]);
        assert!(p["public.t"].read.is_none());
        assert!(p["public.t"].write.is_some());
    }

    #[test]
    fn unparseable_or_unknown_locked_policies_fail_closed() {
        let p = load(vec![
            row("public.t", false, Some("f(a"), None),
            row("public.u", true, None, None),
        ]);
        for t in ["public.t", "public.u"] {
            let read = p[t].read.as_ref().unwrap();
            assert!(
                read.sql.is_none() && read.facts.unanalysable.is_some(),
                "{t}"
            );
        }
        // A locked table keeps what the previous load knew.
        let before = from_rows(
            vec![row("public.u", false, Some("f()"), None)],
            &Loaded::default(),
        );
        let p = from_rows(vec![row("public.u", true, None, None)], &before).0;
        assert_eq!(p["public.u"], before.0["public.u"]);
    }

    #[test]
    fn policies_of_tables_without_rls_are_dormant() {
        let mut r = row("public.t", false, Some("f()"), Some("g()"));
        r[3] = Some("f".into());
        let (on, dormant) = from_rows(vec![r], &Loaded::default());
        assert!(on.is_empty());
        let code = &dormant["public.t"];
        assert!(code.facts.functions.contains("f") && code.facts.functions.contains("g"));
    }
}
