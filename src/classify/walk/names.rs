//! Names a statement reaches without writing them as identifiers: a function named
//! as a string in a DDL option (`FUNCTION = 'pg_read_file'`), a schema renamed as a
//! whole (`ALTER SCHEMA hr RENAME TO x`, every relation in it changes name), and
//! the source a foreign table's options name (`OPTIONS (program 'id')`,
//! `OPTIONS (schema_name 'public', table_name 'secret')`).

use super::{def_elems, i, list_items, name_list, node, s, Map, NodeKind, Value, Walker};
use crate::classify::facts::CopyEnd;

/// Option names whose value is a function the object will call: CREATE OPERATOR /
/// AGGREGATE / TYPE (DefineStmt), ALTER OPERATOR, CREATE TYPE ... AS RANGE, ALTER
/// TYPE, CREATE TEXT SEARCH PARSER / TEMPLATE.
const FUNCTION_OPTIONS: &[&str] = &[
    "function",
    "procedure",
    "sfunc",
    // CREATE AGGREGATE's old spelling, still accepted (review s35-fixes X7).
    "sfunc1",
    "finalfunc",
    "combinefunc",
    "serialfunc",
    "deserialfunc",
    "msfunc",
    "minvfunc",
    "mfinalfunc",
    "restrict",
    "join",
    "input",
    "output",
    "receive",
    "send",
    "analyze",
    "subscript",
    "typmod_in",
    "typmod_out",
    "subtype_diff",
    "canonical",
    "start",
    "gettoken",
    "end",
    "lextypes",
    "headline",
    "init",
    "lexize",
];

/// Statements whose options may name functions (see [`FUNCTION_OPTIONS`]).
pub(super) fn names_functions(parent: NodeKind) -> bool {
    matches!(
        parent,
        NodeKind::DefineStmt
            | NodeKind::AlterOperatorStmt
            | NodeKind::CreateRangeStmt
            | NodeKind::AlterTypeStmt
    )
}

/// Statements that make or change an object running functions named in its
/// options or parts (see `Facts::defines_code`).
pub(super) fn defines_code(ty: NodeKind) -> bool {
    names_functions(ty)
        || matches!(
            ty,
            NodeKind::CreateCastStmt
                | NodeKind::CreateTransformStmt
                | NodeKind::CreateConversionStmt
                | NodeKind::CreateOpClassStmt
                | NodeKind::AlterOpFamilyStmt
        )
}

impl Walker<'_> {
    /// A function-valued option: `FUNCTION = f`, `= schema.f`, `= "f"` or `= 'f'`.
    pub(super) fn function_option(&mut self, body: &Map) {
        let def = s(body, "defname").to_ascii_lowercase();
        if !FUNCTION_OPTIONS.contains(&def.as_str()) {
            return;
        }
        let Some(arg) = body.get("arg") else { return };
        let name = match node(arg) {
            Some((NodeKind::TypeName, tn)) => name_list(tn.get("names")),
            // Postgres takes a string as one name, exactly as written: it does not
            // split it on dots (`'pg_catalog.f'` is a function of that whole name).
            Some((NodeKind::String, st)) => {
                // A fact from a literal: not for the same shape with another string.
                self.literal_sensitive = true;
                vec![s(st, "sval").to_owned()]
            }
            _ => name_list(list_items(arg)),
        };
        // An aggregate whose state function is set_config sets the setting its state
        // names (`initcond = 'standard_conforming_strings'`): a set_config of a name
        // known only when it runs (review s37 V1).
        if name
            .last()
            .is_some_and(|f| f.eq_ignore_ascii_case("set_config"))
        {
            super::settings::computed_setting(&mut self.facts);
        }
        self.add_function(&name);
    }

    /// `ALTER SCHEMA s RENAME TO t`: every relation of `s` changes its name, so a
    /// rule or mask written as `s.table` would no longer name it. Recorded as the
    /// relation `s.*` written, which every pattern of schema `s` (and every pattern
    /// without a schema, conservatively) matches.
    pub(super) fn schema_rename(&mut self, body: &Map) {
        use pg_query::protobuf::ObjectType as O;
        if i(body, "rename_type") != O::ObjectSchema as i64 {
            return;
        }
        let schema = s(body, "subname");
        if !schema.is_empty() {
            self.facts.tables_written.insert(format!("{schema}.*"));
        }
    }

    /// A foreign-data option that reads the server's files or runs a program
    /// (file_fdw's `filename` and `program`): what `COPY ... FROM` those would be.
    pub(super) fn fdw_file_option(&mut self, body: &Map) {
        use pg_query::protobuf::DefElemAction as D;
        if i(body, "defaction") == D::DefelemDrop as i64 {
            return;
        }
        match s(body, "defname").to_ascii_lowercase().as_str() {
            "program" => {
                self.facts.copy.insert(CopyEnd::Program);
            }
            "filename" => {
                self.facts.copy.insert(CopyEnd::File);
            }
            _ => {}
        }
    }

    /// A foreign table's options that name the relation it reads (postgres_fdw's
    /// `schema_name` and `table_name`): that relation is reached through it, under
    /// another name no rule or mask of its own names. Recorded as written (a link
    /// to it is made), so `tables:` and `tables_written:` rules match it; a part
    /// left out is any (`*`), as what the server fills in cannot be told here.
    pub(super) fn fdw_source(&mut self, options: Option<&Value>) {
        let mut schema = None;
        let mut table = None;
        for (name, d) in def_elems(options) {
            let value = match d.get("arg").and_then(node) {
                Some((NodeKind::String, st)) => s(st, "sval").to_owned(),
                _ => "*".to_owned(),
            };
            match name.to_ascii_lowercase().as_str() {
                "schema_name" => schema = Some(value),
                "table_name" => table = Some(value),
                _ => {}
            }
        }
        if schema.is_none() && table.is_none() {
            return;
        }
        self.literal_sensitive = true; // the names are string literals
        let schema = schema.unwrap_or_else(|| "*".into());
        let table = table.unwrap_or_else(|| "*".into());
        self.facts
            .tables_written
            .insert(format!("{schema}.{table}"));
    }

    /// A foreign table's columns read the columns of the relation its options name
    /// (review s35-fixes X11): `x text OPTIONS (column_name 'ssn')` over
    /// `table_name 'people'` reads `people.ssn` as `fp.x`. Recorded as that column
    /// (a column without `column_name` reads the one of its own name), the table
    /// any (`*`) when no option names it.
    pub(super) fn fdw_columns(&mut self, stmt: &Map) {
        let table = fdw_table(stmt.get("options"));
        let Some(base) = stmt.get("base_stmt").and_then(Value::as_object) else {
            return;
        };
        let mut columns = Vec::new();
        let mut renamed = false;
        for elt in base
            .get("table_elts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some((NodeKind::ColumnDef, c)) = node(elt) else {
                continue;
            };
            let remote = column_name_option(c.get("fdwoptions"));
            renamed |= remote.is_some();
            columns.push(remote.unwrap_or_else(|| s(c, "colname").to_owned()));
        }
        // Without options naming a relation or a column, the server reads the
        // foreign table's own name and columns: nothing is reached under another.
        if table.is_none() && !renamed {
            return;
        }
        self.literal_sensitive = true; // the names are string literals
                                       // Columns inherited (`() INHERITS (shape)`, `PARTITION OF parent`) are not
                                       // listed: with a remote table named, all of its columns may be read (review
                                       // s36 Y5).
        let inherits = base
            .get("inh_relations")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
            || base.get("partbound").is_some_and(|p| !p.is_null());
        if inherits {
            if let Some(t) = &table {
                self.facts.columns.insert(format!("{t}.*"));
            }
        }
        let table = table.unwrap_or_else(|| "*".into());
        for c in columns {
            self.facts.columns.insert(format!("{table}.{c}"));
        }
    }

    /// `ALTER FOREIGN TABLE fp OPTIONS (SET table_name 'people')`: every column of
    /// the relation may be read now (and its name is written, see
    /// [`Walker::fdw_source`]); `ALTER COLUMN x OPTIONS (SET column_name 'ssn')`
    /// reads that column of any table.
    pub(super) fn fdw_altered(&mut self, cmd: &Map) {
        use pg_query::protobuf::AlterTableType as A;
        let sub = i(cmd, "subtype");
        let options = cmd.get("def").and_then(list_items);
        if sub == A::AtGenericOptions as i64 {
            self.fdw_source(options);
            if let Some(t) = fdw_table(options) {
                self.literal_sensitive = true;
                self.facts.columns.insert(format!("{t}.*"));
            }
        } else if sub == A::AtAlterColumnGenericOptions as i64 {
            if let Some(c) = column_name_option(options) {
                self.literal_sensitive = true;
                self.facts.columns.insert(format!("*.{c}"));
            }
        }
    }

    /// `IMPORT FOREIGN SCHEMA remote ...`: foreign tables over every relation of
    /// the remote schema (see [`Walker::fdw_source`]).
    pub(super) fn fdw_import(&mut self, body: &Map) {
        let remote = s(body, "remote_schema");
        let remote = if remote.is_empty() { "*" } else { remote };
        self.facts.tables_written.insert(format!("{remote}.*"));
    }
}

/// The string value of an option (`table_name 'people'`) unless it is dropped;
/// `*` for a value that is not a string.
fn option_value(options: Option<&Value>, option: &str) -> Option<String> {
    use pg_query::protobuf::DefElemAction as D;
    def_elems(options)
        .filter(|(name, d)| {
            name.eq_ignore_ascii_case(option) && i(d, "defaction") != D::DefelemDrop as i64
        })
        .map(|(_, d)| match d.get("arg").and_then(node) {
            Some((NodeKind::String, st)) => s(st, "sval").to_owned(),
            _ => "*".to_owned(),
        })
        .last()
}

/// The relation a foreign table's options name (`table_name`).
fn fdw_table(options: Option<&Value>) -> Option<String> {
    option_value(options, "table_name")
}

/// The remote column a foreign table's column reads (`column_name`).
fn column_name_option(options: Option<&Value>) -> Option<String> {
    option_value(options, "column_name")
}

impl Walker<'_> {
    /// `ALTER TABLE people RENAME COLUMN ssn TO x`: the column is named (a `columns:`
    /// rule on `people.ssn` would not match `people.x` afterwards).
    pub(super) fn column_rename(&mut self, body: &Map) {
        use pg_query::protobuf::ObjectType as O;
        if i(body, "rename_type") != O::ObjectColumn as i64 {
            return;
        }
        let table = body
            .get("relation")
            .and_then(Value::as_object)
            .map(|r| s(r, "relname"))
            .unwrap_or_default();
        let column = s(body, "subname");
        if !table.is_empty() && !column.is_empty() {
            self.raw_columns
                .push(vec![table.to_owned(), column.to_owned()]);
        }
    }

    /// `ALTER TABLE people ALTER COLUMN ssn ...`, `DROP COLUMN ssn`: the sub-commands'
    /// columns are named.
    pub(super) fn altered_columns(&mut self, body: &Map) {
        let table = body
            .get("relation")
            .and_then(Value::as_object)
            .map(|r| s(r, "relname").to_owned())
            .unwrap_or_default();
        if table.is_empty() {
            return;
        }
        for cmd in body
            .get("cmds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some((NodeKind::AlterTableCmd, c)) = node(cmd) {
                let column = s(c, "name");
                if !column.is_empty() {
                    self.raw_columns
                        .push(vec![table.clone(), column.to_owned()]);
                }
            }
        }
    }

    /// The relation a one-part column reference names as a whole row: an alias or a
    /// relation's own name.
    pub(super) fn whole_row(&self, r: &str) -> Option<String> {
        if let Some((_, table)) = self.aliases.iter().find(|(a, _)| a == r) {
            return Some(table.clone());
        }
        self.relations
            .iter()
            .find(|(_, n, _)| n == r)
            .map(|(_, n, _)| n.clone())
    }
}
