//! The NOT NULL columns of user tables, for WHEREs that are tautologies only given the
//! schema (`DELETE FROM t WHERE id IS NOT NULL` on a primary key): the classifier
//! records the columns such a WHERE needs to be NOT NULL, the catalog says whether
//! they are. A simple view's column is NOT NULL when the table column it is, is.

use std::collections::{HashMap, HashSet};

use crate::classify::{view_columns, Facts, IfNotNull, ViewColumn};

/// One row per NOT NULL column of a user table (primary keys included). Plain
/// catalog reads: no function that takes a lock on the table.
pub(super) const NOT_NULL: &str = "SELECT n.nspname, c.relname, a.attname \
     FROM pg_catalog.pg_attribute a \
     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE a.attnotnull AND a.attnum > 0 AND NOT a.attisdropped \
     AND c.relkind IN ('r', 'p', 'f') AND c.oid >= 16384 \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'";

/// NOT NULL columns by table.
#[derive(Debug, Default)]
pub(super) struct NotNull {
    /// Table name -> (schema, its NOT NULL columns), one entry per schema.
    tables: HashMap<String, Vec<(String, HashSet<String>)>>,
}

impl NotNull {
    pub(super) fn from_rows(rows: Vec<Vec<Option<String>>>) -> NotNull {
        let mut out = NotNull::default();
        for r in rows {
            if let [Some(schema), Some(table), Some(column)] = r.as_slice() {
                out.insert(schema, table, column);
            }
        }
        out
    }

    /// The same with the NOT NULL columns of simple views (`SELECT id, code FROM t`):
    /// those that are a NOT NULL column of their table, through views over views a
    /// few levels deep. `views`: (schema, name, definition).
    pub(super) fn with_views(mut self, views: Vec<(String, String, String)>) -> NotNull {
        if views.is_empty() {
            return self;
        }
        // Parsing runs on a thread with a large stack, as the catalog's other texts do.
        let parsed: Vec<(String, String, Vec<ViewColumn>)> = std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || {
                views
                    .into_iter()
                    .map(|(schema, name, def)| (schema, name, view_columns(&def)))
                    .collect()
            })
            .ok()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        for _ in 0..4 {
            let mut added = false;
            for (schema, name, cols) in &parsed {
                for (view_col, base_schema, base, base_col) in cols {
                    if self.column_not_null(base_schema, base, base_col)
                        && !self.column_not_null(schema, name, view_col)
                    {
                        self.insert(schema, name, view_col);
                        added = true;
                    }
                }
            }
            if !added {
                break;
            }
        }
        self
    }

    fn insert(&mut self, schema: &str, table: &str, column: &str) {
        let schemas = self.tables.entry(table.to_owned()).or_default();
        match schemas.iter_mut().find(|(s, _)| s == schema) {
            Some((_, cols)) => {
                cols.insert(column.to_owned());
            }
            None => schemas.push((schema.to_owned(), HashSet::from([column.to_owned()]))),
        }
    }

    /// Whether a column is NOT NULL (a schema left empty: in any schema).
    fn column_not_null(&self, schema: &str, table: &str, column: &str) -> bool {
        self.tables.get(table).is_some_and(|schemas| {
            schemas
                .iter()
                .any(|(s, cols)| (schema.is_empty() || s == schema) && cols.contains(column))
        })
    }

    /// Whether the columns are NOT NULL in the table. A name the SQL left unqualified
    /// could be the table of that name in any schema on the search path: any of them
    /// with the columns NOT NULL makes it so (failing closed: the write is unbounded).
    fn holds(&self, c: &IfNotNull) -> bool {
        let Some(schemas) = self.tables.get(&c.table) else {
            return false;
        };
        schemas.iter().any(|(schema, cols)| {
            (c.schema.is_empty() || *schema == c.schema)
                && c.columns.iter().all(|col| cols.contains(col))
        })
    }

    /// Whether a WHERE of the statement the classifier could not call always true is
    /// so given this schema (checked without allocating: most statements have none).
    pub(super) fn makes_tautology(&self, f: &Facts) -> bool {
        !f.where_.tautology && f.where_.if_not_null.iter().any(|c| self.holds(c))
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
    fn not_null_columns_decide() {
        let row = |s: &str, t: &str, c: &str| vec![Some(s.into()), Some(t.into()), Some(c.into())];
        let nn = NotNull::from_rows(vec![
            row("public", "t", "id"),
            row("public", "t", "code"),
            row("other", "u", "id"),
        ]);
        for (sql, tautology) in [
            ("DELETE FROM t WHERE id IS NOT NULL", true),
            (
                "DELETE FROM public.t WHERE code IS NOT NULL AND id IS NOT NULL",
                true,
            ),
            ("DELETE FROM other.t WHERE id IS NOT NULL", false),
            ("DELETE FROM t WHERE name IS NOT NULL", false),
            (
                "DELETE FROM t WHERE EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id)",
                true,
            ),
            // Unqualified: the table of that name in any schema.
            ("DELETE FROM u WHERE id IS NOT NULL", true),
            ("DELETE FROM public.u WHERE id IS NOT NULL", false),
            ("DELETE FROM v WHERE id IS NOT NULL", false),
            ("DELETE FROM t WHERE id = 1", false),
        ] {
            assert_eq!(nn.makes_tautology(&facts(sql)), tautology, "{sql}");
        }
        let nn = nn.with_views(vec![
            (
                "public".into(),
                "v".into(),
                "SELECT t.id AS k, t.name FROM t".into(),
            ),
            (
                "public".into(),
                "vv".into(),
                "SELECT v.k FROM v WHERE v.k > 1".into(),
            ),
        ]);
        for (sql, tautology) in [
            ("DELETE FROM v WHERE k IS NOT NULL", true),
            ("DELETE FROM v WHERE name IS NOT NULL", false),
            ("UPDATE vv SET k = 1 WHERE k IS NOT NULL", true),
        ] {
            assert_eq!(nn.makes_tautology(&facts(sql)), tautology, "{sql}");
        }
    }
}
