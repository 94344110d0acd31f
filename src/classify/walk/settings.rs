//! Settings a statement changes by routes other than SET: `set_config()` and `UPDATE
//! pg_settings`; and the settings that change how the server reads SQL text.

use std::collections::BTreeSet;

use super::{list_items, name_list, node, s, Map, NodeKind, Value, Walker};
use crate::classify::facts::Kind;
use crate::classify::node::const_string;

/// The first of `args` when it is a string literal, lowercased (`set_config('role',
/// ...)`, `SET x = 'off'`).
fn first_string_arg(body: &Map) -> Option<String> {
    let arg = body.get("args")?.as_array()?.first()?;
    match node(arg) {
        Some((NodeKind::AConst, c)) => const_string(c).map(str::to_ascii_lowercase),
        _ => None,
    }
}

/// What set_config's first argument (the setting's name) is.
enum NameArg {
    /// A string literal (possibly cast), lowercased.
    Literal(String),
    /// A parameter of the statement, `$n` (possibly cast).
    Param(u16),
    /// Anything else: known only when it runs.
    Computed,
}

fn name_arg(body: &Map) -> NameArg {
    let Some(arg) = body
        .get("args")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return NameArg::Computed;
    };
    if let Some(n) = string_literal(arg) {
        return NameArg::Literal(n);
    }
    // `$n`, or `$n::text` / `$n::varchar`: a cast to another type changes the value
    // the server passes on from what the Bind carries (`char(27)` cuts it, `regclass`
    // turns an OID into a name; review s37 V2), so it counts as computed.
    let mut v = arg;
    while let Some((NodeKind::TypeCast, c)) = node(v) {
        if !casts_to_plain_text(c) {
            return NameArg::Computed;
        }
        match c.get("arg") {
            Some(inner) => v = inner,
            None => return NameArg::Computed,
        }
    }
    match node(v) {
        Some((NodeKind::ParamRef, p)) => p
            .get("number")
            .and_then(Value::as_i64)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0)
            .map_or(NameArg::Computed, NameArg::Param),
        _ => NameArg::Computed,
    }
}

/// A cast to `text` or `varchar` without a length or array bounds: the value passes
/// through unchanged.
fn casts_to_plain_text(cast: &Map) -> bool {
    let Some(tn) = cast.get("type_name").and_then(Value::as_object) else {
        return false;
    };
    let names = name_list(tn.get("names"));
    let plain = |k: &str| {
        tn.get(k)
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    };
    matches!(
        names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["text"] | ["pg_catalog", "text"] | ["varchar"] | ["pg_catalog", "varchar"]
    ) && plain("typmods")
        && plain("array_bounds")
}

/// A set_config whose setting's name is computed (in the statement, or by an
/// aggregate's state): it could be standard_conforming_strings, and the server reports
/// that only at the next ReadyForQuery, after later statements of the same batch were
/// judged as pgmoat reads them and run as the server reads them (review s37 W2, V1).
/// Refused, as a role change and a change of any setting.
pub fn computed_setting(facts: &mut crate::classify::Facts) {
    facts.settings.insert("*".into());
    facts.kinds.insert(Kind::SetRole);
    if facts.rereads_sql.is_none() {
        facts.rereads_sql = Some(COMPUTED_NAME.into());
    }
}

/// Why a set_config whose setting's name is computed is refused.
const COMPUTED_NAME: &str = "set_config with a setting name computed in the statement \
     could change how the server reads the SQL after it (standard_conforming_strings, \
     client_encoding) before pgmoat can tell: name the setting with a literal or a \
     parameter";

/// Whether `name` (as a Bind parameter gave it) is a setting that changes how the
/// server reads SQL text. Setting names are matched without regard to case.
pub fn rereads_sql_setting(name: &str) -> bool {
    PARSER_SETTINGS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Settings that change how the server reads SQL text (string escapes, bytes).
const PARSER_SETTINGS: &[&str] = &[
    "standard_conforming_strings",
    "client_encoding",
    "backslash_quote",
];

/// The setting names a WHERE over pg_settings picks (None: it could pick any).
fn setting_names(w: &Value, quals: &[String]) -> Option<BTreeSet<String>> {
    use pg_query::protobuf::{AExprKind, BoolExprType};
    let (ty, body) = node(w)?;
    match ty {
        NodeKind::BoolExpr => {
            let op = body.get("boolop")?.as_i64()?;
            let args = body.get("args")?.as_array()?;
            if op == BoolExprType::AndExpr as i64 {
                // Every arm must hold: any arm that names settings bounds them all.
                args.iter().find_map(|a| setting_names(a, quals))
            } else if op == BoolExprType::OrExpr as i64 {
                let mut all = BTreeSet::new();
                for a in args {
                    all.extend(setting_names(a, quals)?);
                }
                Some(all)
            } else {
                None
            }
        }
        NodeKind::AExpr => {
            let kind = body.get("kind")?.as_i64()?;
            let op = name_list(body.get("name"));
            if op.last().map(String::as_str) != Some("=") {
                return None;
            }
            let (l, r) = (body.get("lexpr")?, body.get("rexpr")?);
            if kind == AExprKind::AexprOp as i64 {
                let lit = if is_name_column(l, quals) {
                    string_literal(r)?
                } else if is_name_column(r, quals) {
                    string_literal(l)?
                } else {
                    return None;
                };
                Some([lit].into())
            } else if kind == AExprKind::AexprIn as i64 && is_name_column(l, quals) {
                list_items(r)?
                    .as_array()?
                    .iter()
                    .map(string_literal)
                    .collect()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `name` or `<qual>.name`: pg_settings' name column.
fn is_name_column(v: &Value, quals: &[String]) -> bool {
    match node(v) {
        Some((NodeKind::ColumnRef, c)) => match name_list(c.get("fields")).as_slice() {
            [n] => n == "name",
            [q, n] => n == "name" && quals.contains(q),
            _ => false,
        },
        _ => false,
    }
}

/// A string literal (possibly cast), lowercased.
fn string_literal(v: &Value) -> Option<String> {
    match node(v)? {
        (NodeKind::AConst, c) => const_string(c).map(str::to_ascii_lowercase),
        // Only a cast that passes the text through: `'x '::bpchar` drops the blank,
        // `char(n)` cuts, so the server reads another name (review s37-vfix U1, U2).
        (NodeKind::TypeCast, c) if casts_to_plain_text(c) => string_literal(c.get("arg")?),
        _ => None,
    }
}

impl Walker<'_> {
    /// A setting changed by name (set_config, UPDATE pg_settings): role changes and
    /// the settings that change how SQL is read are marked as such.
    pub(super) fn named_setting(&mut self, n: String) {
        if n == "role" || n == "session_authorization" {
            self.facts.kinds.insert(Kind::SetRole);
        }
        if PARSER_SETTINGS.contains(&n.as_str()) {
            self.rereads(&n);
        }
        self.facts.settings.insert(n);
    }

    pub(super) fn setting_from_set_config(&mut self, body: &Map) {
        self.literal_sensitive = true;
        match name_arg(body) {
            NameArg::Literal(n) => self.named_setting(n),
            NameArg::Param(n) => {
                // PostgREST sends `set_config($1, $2, true)` with every request: the
                // rules decide on `*` and set_role, and each Bind's value of `$n` is
                // checked by the relay (`Facts::setting_params`).
                self.facts.settings.insert("*".into());
                self.facts.kinds.insert(Kind::SetRole);
                self.facts.setting_params.insert(n);
            }
            NameArg::Computed => computed_setting(&mut self.facts),
        }
    }

    /// `UPDATE pg_settings SET setting = ... WHERE name = 'x'` runs `set_config('x',
    /// ...)` for the rows its WHERE picks: the settings are those the WHERE names
    /// (`name = 'x'`, `name IN ('x', 'y')`, in an AND or every arm of an OR); any other
    /// WHERE could pick any setting, role and parser settings included.
    pub(super) fn pg_settings_update(&mut self, body: &Map) {
        let Some(rel) = body.get("relation").and_then(Value::as_object) else {
            return;
        };
        let name = s(rel, "relname");
        if !name.eq_ignore_ascii_case("pg_settings") {
            return;
        }
        let mut quals = vec![name.to_owned()];
        if let Some(a) = rel.get("alias").and_then(Value::as_object) {
            quals = vec![s(a, "aliasname").to_owned()];
        }
        self.literal_sensitive = true;
        let named = body
            .get("where_clause")
            .and_then(|w| setting_names(w, &quals));
        match named {
            Some(names) if !names.is_empty() => {
                for n in names {
                    self.named_setting(n);
                }
            }
            _ => {
                // A setting the rules cannot name statically.
                self.facts.settings.insert("*".into());
                self.facts.kinds.insert(Kind::SetRole);
                self.rereads("settings through pg_settings");
            }
        }
    }

    /// `SET standard_conforming_strings = off` and the like: from then on the server
    /// reads SQL text differently from the parser pgmoat judges with.
    pub(super) fn parser_setting(&mut self, name: &str, kind: i64, body: &Map) {
        if !PARSER_SETTINGS.contains(&name) {
            return;
        }
        // `= off` and `= 'off'` share a shape: the value decides.
        self.literal_sensitive = true;
        use pg_query::protobuf::VariableSetKind as K;
        if kind == K::VarSetDefault as i64 || kind == K::VarReset as i64 {
            return;
        }
        let value = first_string_arg(body).unwrap_or_default();
        let harmless = match name {
            "standard_conforming_strings" => matches!(value.as_str(), "on" | "true" | "1"),
            "client_encoding" => matches!(value.as_str(), "utf8" | "utf-8" | "unicode"),
            _ => false,
        };
        if !harmless {
            self.rereads(name);
        }
    }

    /// `ALTER SYSTEM SET search_path` (or `RESET ALL`) with `pg_reload_conf()` moves
    /// every session's bare names at once, before pgmoat's catalog reads the new path
    /// (review s37 V6): refused like a parser setting.
    pub(super) fn system_setting(&mut self, name: &str, kind: i64) {
        use pg_query::protobuf::VariableSetKind as K;
        if (name == "search_path" || kind == K::VarResetAll as i64)
            && self.facts.rereads_sql.is_none()
        {
            self.facts.rereads_sql = Some(
                "ALTER SYSTEM of search_path changes where every session's unqualified \
                 names resolve before pgmoat's catalog shows it"
                    .into(),
            );
        }
    }

    pub(super) fn rereads(&mut self, what: &str) {
        if self.facts.rereads_sql.is_none() {
            self.facts.rereads_sql = Some(format!(
                "changing {what} would make the server read SQL differently from pgmoat's parser"
            ));
        }
    }
}
