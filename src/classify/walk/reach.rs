//! Columns a statement reaches without naming them (review s35-fixes X6, X8, X11):
//! a relation renamed or moved to another schema (its columns are read afterwards
//! under another name), COPY of a whole relation or of a column list, a relation
//! attached as a partition or made a child of another (read through the parent's
//! name), and writes to the system catalogs, which can rename anything a rule names.

use super::{i, name_list, node, s, Map, NodeKind, Value, Walker};
use crate::classify::facts::Kind;

/// The name of a relation a message gives directly (`relation` RangeVar).
fn relation_name(body: &Map, field: &str) -> Option<String> {
    body.get(field)
        .and_then(Value::as_object)
        .map(|r| s(r, "relname").to_owned())
        .filter(|n| !n.is_empty())
}

/// Object types that are relations with columns.
fn has_columns(object_type: i64) -> bool {
    use pg_query::protobuf::ObjectType as O;
    [
        O::ObjectTable,
        O::ObjectView,
        O::ObjectMatview,
        O::ObjectForeignTable,
        // Postgres takes ALTER INDEX (and ALTER SEQUENCE) ... RENAME of any relation,
        // a table included (review s36 Y4).
        O::ObjectIndex,
        O::ObjectSequence,
    ]
    .iter()
    .any(|o| *o as i64 == object_type)
}

/// A relation of the system catalogs, written: `pg_catalog.x` or `pg_toast.x`, or a
/// bare `pg_x` in DML (pg_catalog is searched first, so a bare name is the
/// catalog's when it has one; a user table named `pg_...` is over-blocked, the
/// fail-closed side). `pg_settings` is a setting, judged as one.
pub(super) fn catalog_relation(schema: Option<&str>, name: &str, parent: NodeKind) -> bool {
    if name.eq_ignore_ascii_case("pg_settings") {
        return false;
    }
    match schema {
        Some(sch) => sch == "pg_catalog" || sch.starts_with("pg_toast"),
        None => {
            name.starts_with("pg_")
                && matches!(
                    parent,
                    NodeKind::InsertStmt
                        | NodeKind::UpdateStmt
                        | NodeKind::DeleteStmt
                        | NodeKind::MergeStmt
                        | NodeKind::CopyStmt
                )
        }
    }
}

impl Walker<'_> {
    /// Every column of `table` is reached (`table.*`, which every `columns:`
    /// pattern of that table matches).
    fn all_columns(&mut self, table: String) {
        self.raw_columns.push(vec![table, "*".into()]);
    }

    /// `ALTER TABLE people RENAME TO folks`: `people`'s columns are read as
    /// `folks.ssn` afterwards, which a rule on `people.ssn` does not name.
    pub(super) fn relation_rename(&mut self, body: &Map) {
        if has_columns(i(body, "rename_type")) {
            if let Some(t) = relation_name(body, "relation") {
                self.all_columns(t);
            }
        }
    }

    /// `ALTER TABLE people SET SCHEMA other`: as a rename (`other.people.ssn` is not
    /// matched by a rule on `public.people.ssn`).
    pub(super) fn relation_moved(&mut self, body: &Map) {
        if has_columns(i(body, "object_type")) {
            if let Some(t) = relation_name(body, "relation") {
                self.all_columns(t);
            }
        }
    }

    /// `COPY people TO STDOUT` reads every column, `COPY people (ssn) ...` the ones
    /// listed (and FROM writes them). `COPY (query) TO` is a query, walked as one.
    pub(super) fn copy_columns(&mut self, body: &Map) {
        let Some(table) = relation_name(body, "relation") else {
            return;
        };
        let listed = name_list(body.get("attlist"));
        if listed.is_empty() {
            self.all_columns(table);
        } else {
            for c in listed {
                self.raw_columns.push(vec![table.clone(), c]);
            }
        }
    }

    /// `ALTER TABLE parent ATTACH PARTITION people` (or DETACH): `people`'s rows are
    /// read as `parent`'s. `ALTER TABLE people INHERIT parent` (or NO INHERIT)
    /// likewise. The partition and the parent are written (they change), and every
    /// column of both is reached.
    pub(super) fn partitions(&mut self, body: &Map) {
        use pg_query::protobuf::AlterTableType as A;
        let table = relation_name(body, "relation");
        for cmd in body
            .get("cmds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some((NodeKind::AlterTableCmd, c)) = node(cmd) else {
                continue;
            };
            let sub = i(c, "subtype");
            let def = c.get("def").and_then(node);
            let other = if [
                A::AtAttachPartition,
                A::AtDetachPartition,
                A::AtDetachPartitionFinalize,
            ]
            .iter()
            .any(|a| *a as i64 == sub)
            {
                match def {
                    Some((NodeKind::PartitionCmd, p)) => relation_name(p, "name"),
                    _ => None,
                }
            } else if sub == A::AtAddInherit as i64 || sub == A::AtDropInherit as i64 {
                match def {
                    Some((NodeKind::RangeVar, r)) => Some(s(r, "relname").to_owned()),
                    _ => None,
                }
            } else {
                continue;
            };
            if let Some(t) = &table {
                self.all_columns(t.clone());
            }
            if let Some(o) = other.filter(|o| !o.is_empty()) {
                self.all_columns(o);
            }
        }
    }

    /// `CREATE VIEW v AS SELECT ... FROM pg_class`: a view over one relation is
    /// updatable, and `UPDATE v` writes the catalog (past the check above, which
    /// sees `v`). Making one counts as the catalog write itself.
    pub(super) fn view_over_catalog(&mut self, view: &Map) {
        let Some((NodeKind::SelectStmt, sel)) = view.get("query").and_then(node) else {
            return;
        };
        let from = sel.get("from_clause").and_then(Value::as_array);
        let Some([item]) = from.map(Vec::as_slice) else {
            return;
        };
        let Some((NodeKind::RangeVar, r)) = node(item) else {
            return;
        };
        let name = s(r, "relname");
        // Any bare `pg_` name: the catalogs' tables and its updatable system views
        // (`pg_stat_database_conflicts` writes pg_database, `pg_group` pg_authid;
        // review s36 Y6). A user relation named `pg_...` is over-blocked.
        let catalog = match s(r, "schemaname") {
            "" => name.starts_with("pg_"),
            "information_schema" => true,
            sch => catalog_relation(Some(sch), name, NodeKind::ViewStmt),
        };
        if catalog {
            self.catalog_write();
        }
    }

    /// `CREATE [OR REPLACE] RULE "_RETURN" AS ON SELECT TO t DO INSTEAD SELECT ...`
    /// turns a table into a view, or re-points a view, past what CREATE VIEW is
    /// checked for (a view over pg_class is updatable: a catalog write; review s36
    /// Y2). A legacy form nobody needs through a firewall: it counts as writing
    /// everything, so every rule matches it and masked identities are refused.
    pub(super) fn select_rule(&mut self, rule: &Map) {
        if i(rule, "event") == pg_query::protobuf::CmdType::CmdSelect as i64 {
            self.catalog_write();
        }
    }

    /// INSERT/UPDATE/DELETE/MERGE/COPY FROM on a system catalog: with a superuser
    /// upstream it renames relations, columns, schemas or functions (`UPDATE
    /// pg_class SET relname = ...`), so what any rule names may be reached under
    /// another name afterwards. It counts as an ALTER of every relation, column and
    /// function: every `tables:`, `columns:` and `functions:` pattern matches it,
    /// and it is refused for identities with masks (see `Masking::ddl_unmasks`).
    pub(super) fn catalog_write(&mut self) {
        self.facts.kinds.insert(Kind::Alter);
        self.facts.tables_written.insert("*.*".into());
        self.facts.columns.insert("*.*".into());
        self.facts.functions.insert("*".into());
    }
}

#[cfg(test)]
mod tests {
    use crate::classify::{classify_now, Facts, Kind};

    fn one(sql: &str) -> Facts {
        let mut c = classify_now(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(c.statements.len(), 1, "{sql}");
        c.statements.remove(0)
    }

    fn has_column(sql: &str, col: &str) -> bool {
        one(sql).columns.contains(col)
    }

    #[test]
    fn renames_copy_and_partitions_reach_every_column() {
        for (sql, col) in [
            ("ALTER TABLE people RENAME TO folks", "people.*"),
            ("ALTER VIEW hr.people RENAME TO folks", "people.*"),
            ("ALTER TABLE people SET SCHEMA other", "people.*"),
            ("COPY people TO STDOUT", "people.*"),
            ("COPY people (ssn) TO STDOUT", "people.ssn"),
            ("COPY people (id, ssn) FROM STDIN", "people.ssn"),
            ("ALTER TABLE pp ATTACH PARTITION people DEFAULT", "people.*"),
            ("ALTER TABLE pp DETACH PARTITION people", "people.*"),
            ("ALTER TABLE people INHERIT parent", "people.*"),
            ("ALTER TABLE child NO INHERIT people", "people.*"),
            (
                "CREATE FOREIGN TABLE fp (x text OPTIONS (column_name 'ssn')) SERVER s \
                 OPTIONS (table_name 'people')",
                "people.ssn",
            ),
            (
                "CREATE FOREIGN TABLE fp (ssn text) SERVER s OPTIONS (table_name 'people')",
                "people.ssn",
            ),
            (
                "CREATE FOREIGN TABLE fp (x text OPTIONS (column_name 'ssn')) SERVER s",
                "*.ssn",
            ),
            (
                "ALTER FOREIGN TABLE fp ALTER COLUMN x OPTIONS (SET column_name 'ssn')",
                "*.ssn",
            ),
            (
                "ALTER FOREIGN TABLE fp OPTIONS (ADD table_name 'people')",
                "people.*",
            ),
        ] {
            assert!(has_column(sql, col), "{sql}: {:?}", one(sql).columns);
        }
        // Not every column: a COPY of a query, a rename of a column of another table.
        assert!(!has_column(
            "COPY (SELECT name FROM people) TO STDOUT",
            "people.*"
        ));
        assert!(!has_column(
            "CREATE FOREIGN TABLE fp (name text) SERVER s OPTIONS (table_name 'people')",
            "people.ssn"
        ));
        // The partition and the parent are written.
        let f = one("ALTER TABLE pp ATTACH PARTITION people DEFAULT");
        assert!(f.tables_written.contains("public.people"), "{f:?}");
        let f = one("ALTER TABLE people INHERIT parent");
        assert!(f.tables_written.contains("public.parent"), "{f:?}");
    }

    #[test]
    fn catalog_writes_reach_everything() {
        for sql in [
            "UPDATE pg_catalog.pg_class SET relname = 'x' WHERE relname = 'secret'",
            "UPDATE pg_class SET relname = 'x' WHERE relname = 'secret'",
            "INSERT INTO pg_catalog.pg_description VALUES (0, 0, 0, 'x')",
            "DELETE FROM pg_toast.pg_toast_1 WHERE false",
            "COPY pg_catalog.pg_attribute FROM STDIN",
            "MERGE INTO pg_namespace n USING (SELECT 1) s ON false WHEN NOT MATCHED THEN DO NOTHING",
            "WITH x AS (UPDATE pg_proc SET proname = 'p' WHERE false RETURNING 1) SELECT * FROM x",
            "CREATE VIEW v AS SELECT oid, relname FROM pg_class",
            "CREATE OR REPLACE VIEW v AS SELECT * FROM pg_catalog.pg_attribute WHERE true",
            // Some system views are updatable (pg_stat_database_conflicts writes
            // pg_database): any `pg_` relation counts, pg_stat_activity over-blocked.
            "CREATE VIEW v AS SELECT datid, datname FROM pg_stat_database_conflicts",
            "CREATE VIEW v AS SELECT * FROM pg_stat_activity",
            "CREATE RULE \"_RETURN\" AS ON SELECT TO t DO INSTEAD SELECT oid, relname FROM pg_class",
        ] {
            let f = one(sql);
            assert!(f.kinds.contains(&Kind::Alter), "{sql}");
            assert!(f.tables_written.contains("*.*"), "{sql}");
            assert!(f.columns.contains("*.*"), "{sql}");
            assert!(f.functions.contains("*"), "{sql}");
        }
        for sql in [
            "UPDATE pg_settings SET setting = '1' WHERE name = 'work_mem'",
            "UPDATE pg_catalog.pg_settings SET setting = '1' WHERE name = 'work_mem'",
            "SELECT * FROM pg_class",
            "INSERT INTO t SELECT relname FROM pg_class",
            "INSERT INTO pg_temp.t VALUES (1)",
            "COPY pg_catalog.pg_class TO STDOUT",
            "CREATE VIEW v AS SELECT c.relname FROM pg_class c JOIN pg_namespace n ON true",
        ] {
            let f = one(sql);
            assert!(!f.tables_written.contains("*.*"), "{sql}: {f:?}");
        }
    }
}
