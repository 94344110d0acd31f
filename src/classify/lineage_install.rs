//! Code a statement installs to run on later writes: column defaults, generated
//! columns and checks (CREATE TABLE, ALTER TABLE, CREATE/ALTER DOMAIN) and trigger
//! functions (CREATE TRIGGER). A value such code reads ends up in the rows written, where
//! its mask no longer applies, so installing code that reads masked values launders
//! them. (Code installed behind pgmoat's back is caught when the table is written:
//! [`Relations::write_taint`].)

use super::analyzer::*;
use super::model::*;
use crate::classify::node::{name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

impl Analyzer<'_> {
    /// Launder what the code `ty` installs reads; `target` is the relation an ALTER
    /// TABLE changes, whose columns its expressions name.
    pub(super) fn installs(&mut self, ty: NodeKind, m: &Map, target: Option<Rel>) {
        let mut exprs = Vec::new();
        let own = match ty {
            NodeKind::CreateStmt => {
                for e in arr(m, "table_elts") {
                    collect_installed(e, &mut exprs);
                }
                let cols = arr(m, "table_elts")
                    .iter()
                    .filter_map(|e| match node(e) {
                        Some((NodeKind::ColumnDef, d)) => {
                            Some((str_field(d, "colname").to_owned(), Taint::CLEAN))
                        }
                        _ => None,
                    })
                    .collect();
                Some(Rel {
                    cols: Some(cols),
                    ..Rel::default()
                })
            }
            NodeKind::AlterTableStmt => {
                for c in arr(m, "cmds") {
                    let Some((NodeKind::AlterTableCmd, cmd)) = node(c) else {
                        continue;
                    };
                    if let Some(d) = cmd.get("def").filter(|d| !d.is_null()) {
                        match node(d) {
                            Some((NodeKind::ColumnDef | NodeKind::Constraint, _)) => {
                                collect_installed(d, &mut exprs)
                            }
                            // SET DEFAULT, SET EXPRESSION: the expression itself.
                            _ => exprs.push(d),
                        }
                    }
                }
                target
            }
            NodeKind::CreateDomainStmt | NodeKind::AlterDomainStmt => {
                for c in arr(m, "constraints") {
                    collect_installed(c, &mut exprs);
                }
                if let Some(d) = m.get("def").filter(|d| !d.is_null()) {
                    match node(d) {
                        Some((NodeKind::Constraint, _)) => collect_installed(d, &mut exprs),
                        _ => exprs.push(d),
                    }
                }
                // Checks name the value as VALUE.
                Some(Rel {
                    cols: Some(vec![("value".to_owned(), Taint::CLEAN)]),
                    ..Rel::default()
                })
            }
            NodeKind::CreateTrigStmt => {
                let name = name_list(m.get("funcname")).join(".");
                let t = self.rels.function(&name);
                self.launder(t, "a trigger whose function reads masked values");
                return;
            }
            _ => return,
        };
        let scope = Scope {
            rels: own.into_iter().collect(),
            ..Scope::default()
        };
        for e in exprs {
            let t = self.expr(e, &scope);
            self.launder(
                t,
                "a default, generated column or check that reads masked values",
            );
        }
    }
}

/// The expressions of the constraints (DEFAULT, GENERATED, CHECK) under `v`.
fn collect_installed<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(m) => {
            for (_, child) in m.iter() {
                if let Some(e) = child
                    .as_object()
                    .filter(|c| c.kind() == NodeKind::Constraint)
                    .and_then(|c| c.get("raw_expr"))
                    .filter(|e| !e.is_null())
                {
                    out.push(e);
                }
                collect_installed(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_installed(i, out)),
        _ => {}
    }
}
