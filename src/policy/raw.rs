//! The rule files as written (serde form). Nothing outside `policy` sees these.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![x.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub default: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub masks: Vec<RawMask>,
    #[serde(default)]
    pub detect: Vec<RawDetect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: String,
    pub description: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub when: RawCond,
    pub unless: Option<RawCond>,
    pub action: String,
    pub approvers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCond {
    pub statement: Option<OneOrMany<String>>,
    #[serde(rename = "where")]
    pub where_: Option<OneOrMany<String>>,
    pub writes: Option<bool>,
    pub tables: Option<OneOrMany<String>>,
    pub tables_written: Option<OneOrMany<String>>,
    pub columns: Option<OneOrMany<String>>,
    pub functions: Option<OneOrMany<String>>,
    pub settings: Option<OneOrMany<String>>,
    pub copy: Option<OneOrMany<String>>,
    pub targets: Option<OneOrMany<String>>,
    pub users: Option<OneOrMany<String>>,
    pub groups: Option<OneOrMany<String>>,
    pub ssh_commands: Option<OneOrMany<String>>,
    pub ssh_shell: Option<bool>,
    pub ssh_subsystems: Option<OneOrMany<String>>,
    pub http_methods: Option<OneOrMany<String>>,
    pub http_paths: Option<OneOrMany<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMask {
    pub id: String,
    #[serde(default)]
    pub columns: Vec<String>,
    /// JSONPath (RFC 9535) expressions for HTTP gateway responses.
    #[serde(default)]
    pub json: Vec<String>,
    /// Shorthand for `when: { targets: [...] }`.
    pub targets: Option<OneOrMany<String>>,
    #[serde(deserialize_with = "method_name")]
    pub method: String,
    pub keep_last: Option<u32>,
    pub hash_key_env: Option<String>,
    pub when: Option<RawCond>,
    pub unless: Option<RawCond>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    pub id: String,
    pub kind: String,
    #[serde(deserialize_with = "method_name")]
    pub method: String,
    pub keep_last: Option<u32>,
    pub pattern: Option<String>,
    pub hash_key_env: Option<String>,
    pub unless: Option<RawCond>,
}

/// `method: null` is YAML's null: read it as the method named "null".
fn method_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(|| "null".to_owned()))
}
