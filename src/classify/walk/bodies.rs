//! Code held as strings in a statement (DO blocks, function bodies): handed to the
//! caller to parse (see [`Body`]).

use super::{
    def_elems, list_items_of, name_list, node, s, string_arg, Body, Map, NodeKind, Value, Walker,
};
use crate::classify::plpgsql::{Code, Trigger};

impl Walker<'_> {
    /// A DO block: PL/pgSQL code is parsed by the caller, any other language cannot
    /// be judged.
    pub(super) fn do_body(&mut self, body: &Map) {
        let language = def_elems(body.get("args"))
            .find(|(name, _)| *name == "language")
            .and_then(|(_, d)| string_arg(d))
            .unwrap_or_else(|| "plpgsql".into());
        let source = def_elems(body.get("args"))
            .find(|(name, _)| *name == "as")
            .and_then(|(_, d)| match d.get("arg").and_then(node) {
                Some((NodeKind::String, st)) => Some(s(st, "sval").to_owned()),
                _ => None,
            });
        if language != "plpgsql" {
            self.facts.unanalysable = Some(format!("a DO block in language {language}"));
        } else if let Some(source) = source {
            // `DECLARE b bool := true; BEGIN DELETE FROM t WHERE b`: unbounded.
            if crate::classify::tautology_schema::plpgsql_unbounded(self.text) {
                self.facts.where_.applies = true;
                self.facts.where_.tautology = true;
            }
            self.bodies.push(Body::Plpgsql(Code {
                statement: self.text.to_owned(),
                source,
                trigger: Trigger::No,
            }));
        } else {
            self.facts.unanalysable = Some("a DO block without its code".into());
        }
    }

    /// A `CREATE FUNCTION` body: SQL and PL/pgSQL are parsed by the caller, other
    /// languages cannot be judged.
    pub(super) fn function_body(&mut self, body: &Map) {
        let mut language = String::from("sql");
        let mut code: Option<String> = None;
        for (name, d) in def_elems(body.get("options")) {
            match name {
                "language" => language = string_arg(d).unwrap_or(language),
                "as" => code = name_list(list_items_of(d.get("arg"))).into_iter().next(),
                _ => {}
            }
        }
        if body.get("sql_body").is_some_and(|v| !v.is_null()) {
            return; // BEGIN ATOMIC: already in the tree, walked like any other node.
        }
        match (language.as_str(), code) {
            ("sql", Some(c)) => {
                // `DELETE FROM t WHERE b`, b a parameter: unbounded for some callers.
                let params: Vec<String> = body
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| match node(p) {
                        Some((NodeKind::FunctionParameter, fp)) => Some(s(fp, "name").to_owned()),
                        _ => None,
                    })
                    .collect();
                if params.iter().any(|p| !p.is_empty())
                    && crate::classify::tautology_schema::body_unbounded(&c, &params)
                {
                    self.facts.where_.applies = true;
                    self.facts.where_.tautology = true;
                }
                self.bodies.push(Body::Sql(c))
            }
            ("plpgsql", Some(source)) => {
                // As libpg_query tells a trigger function: any part of the returned
                // type's name.
                let returns = body
                    .get("return_type")
                    .and_then(Value::as_object)
                    .map(|t| name_list(t.get("names")))
                    .unwrap_or_default();
                let trigger = if returns.iter().any(|n| n == "trigger") {
                    Trigger::Dml
                } else if returns.iter().any(|n| n == "event_trigger") {
                    Trigger::Event
                } else {
                    Trigger::No
                };
                // `WHERE b`, b a parameter or variable: unbounded for some values.
                if trigger == Trigger::No
                    && crate::classify::tautology_schema::plpgsql_unbounded(self.text)
                {
                    self.facts.where_.applies = true;
                    self.facts.where_.tautology = true;
                }
                self.bodies.push(Body::Plpgsql(Code {
                    statement: self.text.to_owned(),
                    source,
                    trigger,
                }));
            }
            (_, None) => {}
            (other, Some(_)) => {
                self.facts.unanalysable = Some(format!("function body in language {other}"));
            }
        }
    }
}
