//! Reading a rule file so that one run reports every mistake in it (SPEC §1): unknown
//! keys at any level, values of the wrong type, then (in the compiler) unknown kinds,
//! bad globs, duplicate ids and bad regexes. serde stops at its first error, so the
//! file is read into a generic tree first, every item is checked on its own, and the
//! items that are well-formed go on to be compiled.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::raw::RawFile;

const FILE_KEYS: &[&str] = &["default", "rules", "masks", "detect"];
const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "message",
    "when",
    "unless",
    "action",
    "approvers",
];
const MASK_KEYS: &[&str] = &[
    "id",
    "columns",
    "json",
    "targets",
    "method",
    "keep_last",
    "hash_key_env",
    "when",
    "unless",
];
const DETECT_KEYS: &[&str] = &[
    "id",
    "kind",
    "method",
    "keep_last",
    "pattern",
    "hash_key_env",
    "unless",
];
const COND_KEYS: &[&str] = &[
    "statement",
    "where",
    "writes",
    "tables",
    "tables_written",
    "columns",
    "functions",
    "settings",
    "copy",
    "targets",
    "users",
    "groups",
    "ssh_commands",
    "ssh_shell",
    "ssh_subsystems",
    "http_methods",
    "http_paths",
];

/// A rule file's items that are well-formed; every problem found goes into `errors` as
/// `name:line: rule "id": what is wrong`. None when the text is not YAML at all.
///
/// A file that reads as it is (the usual case) is taken from serde directly, so a valid
/// file means exactly what it always did; only a file with a mistake is read again
/// item by item to find the rest of its mistakes.
pub fn read(name: &str, text: &str, errors: &mut Vec<String>) -> Option<RawFile> {
    let typed = match serde_saphyr::from_str::<RawFile>(text) {
        Ok(raw) => return Some(raw),
        Err(e) => format!(
            "{name}:{}",
            crate::config::one_line_yaml_error(&e.to_string())
        ),
    };
    let Ok(tree) = serde_saphyr::from_str::<Value>(text) else {
        errors.push(typed);
        return None;
    };
    let before = errors.len();
    let r = Reader { name, text, errors };
    let raw = r.file(tree);
    if errors.len() == before {
        // Something the item-by-item reading does not see: serde's own word on it.
        errors.push(typed);
    }
    raw
}

/// Keys whose values are strings or lists of strings. In the untyped tree YAML's plain
/// `y`, `no` or `12` arrive as booleans and numbers; serde reads them as strings when
/// it knows the type, so here they are turned back into text.
const TEXT_KEYS: &[&str] = &[
    "id",
    "description",
    "message",
    "action",
    "approvers",
    "columns",
    "json",
    "method",
    "kind",
    "pattern",
    "hash_key_env",
];

fn as_text(v: &mut Value) {
    match v {
        Value::Bool(b) => *v = Value::String(b.to_string()),
        Value::Number(n) => *v = Value::String(n.to_string()),
        Value::Array(items) => items.iter_mut().for_each(as_text),
        _ => {}
    }
}

fn texts(m: &mut Map<String, Value>) {
    for (k, v) in m.iter_mut() {
        // Every condition key but `writes` and `ssh_shell` (booleans) holds strings too.
        if TEXT_KEYS.contains(&k.as_str())
            || (COND_KEYS.contains(&k.as_str()) && k != "writes" && k != "ssh_shell")
        {
            as_text(v);
        }
    }
}

struct Reader<'a> {
    name: &'a str,
    text: &'a str,
    errors: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn file(mut self, tree: Value) -> Option<RawFile> {
        let mut top = match tree {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => {
                self.push(
                    1,
                    None,
                    "a rule file is a mapping of default, rules, masks and detect",
                );
                return None;
            }
        };
        self.unknown_keys(&mut top, FILE_KEYS, 1, None, "");
        let default = match top.remove("default") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                let line = self.line_after(1, "default");
                self.push(
                    line,
                    None,
                    &format!("default must be allow or block, not {other}"),
                );
                None
            }
        };
        Some(RawFile {
            default,
            rules: self.section(&mut top, "rules", RULE_KEYS),
            masks: self.section(&mut top, "masks", MASK_KEYS),
            detect: self.section(&mut top, "detect", DETECT_KEYS),
        })
    }

    /// The well-formed items of one list (`rules`, `masks`, `detect`).
    fn section<T: DeserializeOwned>(
        &mut self,
        top: &mut Map<String, Value>,
        key: &str,
        keys: &[&str],
    ) -> Vec<T> {
        let section_line = self.line_after(1, key);
        let items = match top.remove(key) {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.push(section_line, None, &format!("{key} must be a list"));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let Value::Object(mut item) = item else {
                self.push(section_line, None, &format!("{key}[{i}] must be a mapping"));
                continue;
            };
            texts(&mut item);
            for cond in ["when", "unless"] {
                if let Some(Value::Object(c)) = item.get_mut(cond) {
                    texts(c);
                }
            }
            let id = match item.get("id") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            let line = id.as_deref().map_or(section_line, |id| self.line_of_id(id));
            self.unknown_keys(&mut item, keys, line, id.as_deref(), "");
            for cond in ["when", "unless"] {
                if let Some(Value::Object(c)) = item.get_mut(cond) {
                    let mut c = std::mem::take(c);
                    self.unknown_keys(&mut c, COND_KEYS, line, id.as_deref(), &format!("{cond}."));
                    item.insert(cond.to_owned(), Value::Object(c));
                }
            }
            match serde_json::from_value::<T>(Value::Object(item)) {
                // Compiled even without its unknown keys, for the mistakes the compiler
                // finds (the file is refused whatever they are).
                Ok(v) => out.push(v),
                Err(e) => {
                    let what = match &id {
                        Some(_) => e.to_string(),
                        None => format!("{key}[{i}]: {e}"),
                    };
                    self.push(line, id.as_deref(), &what)
                }
            }
        }
        out
    }

    /// Reports and removes keys not in `allowed`.
    fn unknown_keys(
        &mut self,
        m: &mut Map<String, Value>,
        allowed: &[&str],
        from: usize,
        id: Option<&str>,
        prefix: &str,
    ) {
        let unknown: Vec<String> = m
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in &unknown {
            m.remove(k);
            let line = self.line_after(from, k);
            self.push(
                line,
                id,
                &format!(
                    "unknown key \"{prefix}{k}\" (expected one of: {})",
                    allowed.join(", ")
                ),
            );
        }
    }

    fn push(&mut self, line: usize, id: Option<&str>, msg: &str) {
        self.errors.push(match id {
            Some(id) => format!("{}:{line}: rule \"{id}\": {msg}", self.name),
            None => format!("{}:{line}: {msg}", self.name),
        });
    }

    /// The first line at or after `from` that starts with `key:` (a list item's `- `
    /// aside); `from` itself when none does (flow style, say).
    fn line_after(&self, from: usize, key: &str) -> usize {
        let want = format!("{key}:");
        self.text
            .lines()
            .enumerate()
            .skip(from.saturating_sub(1))
            .find(|(_, l)| {
                // `key:` starting the line (after a list item's `- `), or inside flow
                // style (`{ a: 1, key: 2 }`).
                [want.clone(), format!("\"{key}\":")].iter().any(|w| {
                    l.match_indices(w.as_str()).any(|(i, _)| {
                        l[..i]
                            .chars()
                            .next_back()
                            .is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-' | '\t'))
                    })
                })
            })
            .map_or(from, |(i, _)| i + 1)
    }

    fn line_of_id(&self, id: &str) -> usize {
        super::line_of_id(self.text, id)
    }
}

// The key lists above must name exactly the raw structs' fields: a key they accept but
// the list lacks would be refused, one the list has but they lack would slip through.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::raw::{RawDetect, RawMask, RawRule};

    fn full(keys: &[&str]) -> Value {
        let mut m = Map::new();
        for k in keys {
            let v = match *k {
                "id" | "action" | "method" | "kind" | "description" | "message" | "pattern"
                | "hash_key_env" => Value::String("x".into()),
                "keep_last" => Value::from(4),
                "writes" | "ssh_shell" => Value::Bool(true),
                "when" | "unless" => full(COND_KEYS),
                "columns" | "approvers" | "json" => Value::Array(vec![Value::String("x".into())]),
                _ => Value::String("x".into()),
            };
            m.insert((*k).to_owned(), v);
        }
        Value::Object(m)
    }

    #[test]
    fn key_lists_match_the_raw_structs() {
        serde_json::from_value::<RawRule>(full(RULE_KEYS)).unwrap();
        serde_json::from_value::<RawMask>(full(MASK_KEYS)).unwrap();
        serde_json::from_value::<RawDetect>(full(DETECT_KEYS)).unwrap();
        for (keys, name) in [
            (RULE_KEYS, "rule"),
            (MASK_KEYS, "mask"),
            (DETECT_KEYS, "detect"),
        ] {
            let mut v = full(keys);
            v.as_object_mut().unwrap().insert("zzz".into(), Value::Null);
            let e = match name {
                "rule" => serde_json::from_value::<RawRule>(v).map(|_| ()),
                "mask" => serde_json::from_value::<RawMask>(v).map(|_| ()),
                _ => serde_json::from_value::<RawDetect>(v).map(|_| ()),
            };
            assert!(e.is_err(), "{name} structs deny unknown fields");
        }
    }

    #[test]
    fn every_mistake_is_reported_in_one_run() {
        let text = "\
rules:
  - id: a
    whn: { statement: drop }
    action: block
  - id: b
    when: { statment: delete, tables: [x] }
    action: block
  - id: c
    when: { statement: frobnicate }
    action: block
  - id: c
    action: block
  - id: d
    when: { tables: \"[\" }
    action: block
  - id: e
    action: 7
  - id: f
    action: nonsense
detect:
  - id: g
    kind: regex
    pattern: \"(\"
    method: redact
";
        let errs =
            crate::policy::RuleSet::from_sources(&[("r.yaml".into(), text.into())]).unwrap_err();
        let joined = errs.join("\n");
        for want in [
            "r.yaml:3: rule \"a\": unknown key \"whn\"",
            "r.yaml:6: rule \"b\": unknown key \"when.statment\"",
            "rule \"c\": unknown statement kind",
            "rule \"c\": duplicate rule id",
            "rule \"d\":",
            "rule \"e\":",
            "rule \"f\":",
            "rule \"g\":",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
        assert!(errs.iter().all(|e| !e.contains('\n')), "{joined}");
    }
}
