//! Rule files: raw YAML -> compiled [`RuleSet`] -> [`RuleSet::decide`] -> [`Decision`].
//!
//! `when` holds conditions that must all be true; a list inside a condition matches if
//! any item does; `unless` exempts. Over the statements of a message the strictest
//! action wins (block > approve > allow); a statement no rule matched gets `default`.

pub mod glob;
mod http;
mod loose;
mod masks;
mod raw;
pub mod reload;
pub mod ssh;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use glob::Glob;
pub use http::{normalize_path, HttpFacts, NormalPath, PathError, PathGlob};
pub use masks::{hash_key_unset, DetectRule, MaskRule, DEFAULT_KEEP_LAST};
use raw::{OneOrMany, RawCond};

use crate::classify::{CopyEnd, Facts, Kind};

/// What happens to a statement. Ordered by strictness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Approve,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Approve => "approve",
            Action::Block => "block",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "allow" => Some(Action::Allow),
            "approve" => Some(Action::Approve),
            "block" => Some(Action::Block),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhereCond {
    Missing,
    Tautology,
}

#[derive(Debug, Clone, Default)]
struct Cond {
    statement: Option<Vec<Kind>>,
    where_: Option<Vec<WhereCond>>,
    writes: Option<bool>,
    tables: Option<Vec<Glob>>,
    tables_written: Option<Vec<Glob>>,
    columns: Option<Vec<Glob>>,
    functions: Option<Vec<Glob>>,
    settings: Option<Vec<Glob>>,
    copy: Option<Vec<CopyEnd>>,
    targets: Option<Vec<Glob>>,
    users: Option<Vec<Glob>>,
    groups: Option<Vec<Glob>>,
    /// SSH conditions (see [`ssh`]): never true for a SQL statement.
    ssh: ssh::SshCond,
    http_methods: Option<Vec<String>>,
    http_paths: Option<Vec<PathGlob>>,
}

/// Who asks, and where to.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub target: &'a str,
    /// The session changed search_path: unqualified tables could be in any schema.
    pub search_path_changed: bool,
}

fn any_glob<'a>(globs: &[Glob], mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| globs.iter().any(|g| g.matches(n)))
}

/// Table names as the rules should see them: with search_path changed, a table the
/// SQL left unqualified matches every schema a pattern could mean.
fn table_names<'a>(
    f: &'a Facts,
    names: &'a std::collections::BTreeSet<String>,
    who: &Subject<'_>,
) -> Vec<String> {
    names
        .iter()
        .map(|n| match n.strip_prefix("public.") {
            Some(bare) if who.search_path_changed && f.unqualified_tables.contains(bare) => {
                format!("*.{bare}")
            }
            _ => n.clone(),
        })
        .collect()
}

impl Cond {
    fn matches(&self, f: &Facts, who: &Subject<'_>) -> bool {
        // An SSH or HTTP condition is never about SQL (see `ssh`, `http`).
        if self.ssh.is_set() || self.has_http_conditions() {
            return false;
        }
        if let Some(kinds) = &self.statement {
            if !kinds.iter().any(|k| f.kinds.contains(k)) {
                return false;
            }
        }
        if let Some(w) = &self.where_ {
            let hit = w.iter().any(|c| match c {
                WhereCond::Missing => f.where_.missing,
                WhereCond::Tautology => f.where_.tautology,
            });
            if !hit {
                return false;
            }
        }
        if let Some(writes) = self.writes {
            if f.writes() != writes {
                return false;
            }
        }
        if let Some(g) = &self.tables {
            let mut names = table_names(f, &f.tables_read, who);
            names.extend(table_names(f, &f.tables_written, who));
            if !any_glob(g, names.iter()) {
                return false;
            }
        }
        if let Some(g) = &self.tables_written {
            if !any_glob(g, table_names(f, &f.tables_written, who).iter()) {
                return false;
            }
        }
        if let Some(g) = &self.columns {
            if !any_glob(g, f.columns.iter()) {
                return false;
            }
        }
        if let Some(g) = &self.functions {
            if !any_glob(g, f.functions.iter()) {
                return false;
            }
        }
        if let Some(g) = &self.settings {
            // A setting's name is whole: `debug_*` is not `app.debug_mode`.
            if !f
                .settings
                .iter()
                .any(|n| g.iter().any(|g| g.matches_whole(n)))
            {
                return false;
            }
        }
        if let Some(c) = &self.copy {
            if !c.iter().any(|e| f.copy.contains(e)) {
                return false;
            }
        }
        self.matches_who(who)
    }

    /// The conditions about who asks and where to, the same at every front door.
    fn matches_who(&self, who: &Subject<'_>) -> bool {
        if let Some(g) = &self.targets {
            if !g.iter().any(|g| g.matches(who.target)) {
                return false;
            }
        }
        if let Some(g) = &self.users {
            if !g.iter().any(|g| g.matches(who.user)) {
                return false;
            }
        }
        if let Some(g) = &self.groups {
            if !any_glob(g, who.groups.iter()) {
                return false;
            }
        }
        true
    }

    /// Conditions only about who and where, for masks.
    fn matches_subject(&self, who: &Subject<'_>) -> bool {
        self.matches(&Facts::default(), who)
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub action: Action,
    pub approvers: Vec<String>,
    /// Where the rule is written, `file:line` (its `id:` line), for `SHOW RULES` and
    /// the console's rules page.
    pub source: String,
    when: Cond,
    unless: Option<Cond>,
}

/// The strictest of the matched rules; among equals, the first in file order.
fn strictest<'r>(matched: &[&'r Rule]) -> Option<&'r Rule> {
    matched.iter().fold(None::<&Rule>, |best, r| match best {
        Some(b) if b.action >= r.action => Some(b),
        _ => Some(*r),
    })
}

/// A compiled, validated set of rule files.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub default: Action,
    pub rules: Vec<Rule>,
    pub masks: Vec<MaskRule>,
    pub detectors: Vec<DetectRule>,
    pub files: Vec<PathBuf>,
}

/// The outcome for a whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Ids of every rule that matched any statement.
    pub rules: Vec<String>,
    /// The rule behind the action (`default` when none matched), and its description.
    pub deciding_rule: String,
    pub description: String,
    /// Index of the statement that decided it.
    pub statement: Option<usize>,
}

impl RuleSet {
    /// No rules: everything allowed (unparseable SQL is still refused by the caller).
    pub fn allow_all() -> RuleSet {
        RuleSet {
            default: Action::Allow,
            rules: Vec::new(),
            masks: Vec::new(),
            detectors: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The strictest rule with a `settings` condition that matches a setting `name`
    /// asked for at connection start (rules that only name who or where are about
    /// statements): its id when it blocks or would hold.
    pub fn refuses_startup_setting(&self, name: &str, who: &Subject<'_>) -> Option<String> {
        let mut f = Facts::default();
        f.settings.insert(name.to_owned());
        self.rules
            .iter()
            .filter(|r| r.when.settings.is_some() && r.action != Action::Allow)
            .find(|r| {
                r.when.matches(&f, who) && !r.unless.as_ref().is_some_and(|u| u.matches(&f, who))
            })
            .map(|r| r.id.clone())
    }

    /// Whether a rule that refuses or holds has a `functions:` condition: a
    /// function the catalog cannot show yet could then dodge it.
    pub fn names_functions(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.action != Action::Allow && r.when.functions.is_some())
    }

    /// What a request no rule matched gets: the file's `default`, and when that
    /// blocks, why (`what`: "statement", "request").
    fn by_default(&self, what: &str) -> (Action, String, String) {
        let description = if self.default == Action::Block {
            format!("no rule allows this {what}")
        } else {
            String::new()
        };
        (self.default, "default".to_string(), description)
    }

    pub fn decide(&self, statements: &[Facts], who: &Subject<'_>) -> Decision {
        let mut best = Decision {
            action: Action::Allow,
            rules: Vec::new(),
            deciding_rule: "default".into(),
            description: String::new(),
            statement: None,
        };
        let mut first = true;
        for (i, f) in statements.iter().enumerate() {
            let matched: Vec<&Rule> = self
                .rules
                .iter()
                .filter(|r| {
                    r.when.matches(f, who) && !r.unless.as_ref().is_some_and(|u| u.matches(f, who))
                })
                .collect();
            for r in &matched {
                if !best.rules.contains(&r.id) {
                    best.rules.push(r.id.clone());
                }
            }
            let strictest = strictest(&matched);
            let (action, rule, description) = if let Some(why) = &f.unanalysable {
                // Refused unless a rule explicitly allows it (and none blocks it).
                match strictest {
                    Some(r) if r.action == Action::Allow => {
                        (Action::Allow, r.id.clone(), r.description.clone())
                    }
                    Some(r) => (r.action, r.id.clone(), r.description.clone()),
                    None => (
                        Action::Block,
                        "unanalysable".to_string(),
                        format!("pgmoat cannot judge {why} statically; a rule must allow it"),
                    ),
                }
            } else {
                match strictest {
                    Some(r) => (r.action, r.id.clone(), r.description.clone()),
                    None => self.by_default("statement"),
                }
            };
            if first || action > best.action {
                best.action = action;
                best.deciding_rule = rule;
                best.description = description;
                best.statement = Some(i);
                first = false;
            }
        }
        best
    }

    /// Mask rules that apply to this subject.
    pub fn masks_for(&self, who: &Subject<'_>) -> Vec<&MaskRule> {
        self.masks
            .iter()
            .filter(|m| {
                m.when.as_ref().is_none_or(|c| c.matches_subject(who))
                    && !m.unless.as_ref().is_some_and(|c| c.matches_subject(who))
            })
            .collect()
    }

    /// Detectors that apply to this subject.
    pub fn detectors_for(&self, who: &Subject<'_>) -> Vec<&DetectRule> {
        self.detectors
            .iter()
            .filter(|d| !d.unless.as_ref().is_some_and(|c| c.matches_subject(who)))
            .collect()
    }

    /// The environment variables `hash` masks and detectors read their keys from.
    pub fn hash_key_vars(&self) -> Vec<&str> {
        let mut vars: Vec<&str> = self
            .masks
            .iter()
            .filter_map(|m| m.hash_key_env.as_deref())
            .chain(
                self.detectors
                    .iter()
                    .filter_map(|d| d.hash_key_env.as_deref()),
            )
            .collect();
        vars.sort_unstable();
        vars.dedup();
        vars
    }

    /// Load a file, or every `*.yaml`/`*.yml` file in a directory (sorted by name).
    pub fn load(path: &Path) -> Result<RuleSet, Vec<String>> {
        let files = rule_files(path).map_err(|e| vec![e])?;
        let mut sources = Vec::new();
        for f in &files {
            match std::fs::read_to_string(f) {
                Ok(text) => sources.push((f.display().to_string(), text)),
                Err(e) => return Err(vec![format!("{}: {e}", f.display())]),
            }
        }
        let mut set = RuleSet::from_sources(&sources)?;
        set.files = files;
        Ok(set)
    }

    /// Compile rule documents given as (name, text). Every error is reported, each as
    /// `name:line: rule "id": what is wrong`.
    pub fn from_sources(sources: &[(String, String)]) -> Result<RuleSet, Vec<String>> {
        let mut errors = Vec::new();
        let mut default: Option<(Action, String)> = None;
        let mut rules = Vec::new();
        let mut masks = Vec::new();
        let mut detectors = Vec::new();
        let mut ids = HashSet::new();
        for (name, text) in sources {
            let first_error = errors.len();
            Self::compile_source(
                name,
                text,
                &mut errors,
                &mut default,
                &mut ids,
                (&mut rules, &mut masks, &mut detectors),
            );
            // A file's errors in line order, so a DBA fixes it top to bottom.
            errors[first_error..].sort_by_key(|e| error_line(e));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RuleSet {
            default: default.map(|(a, _)| a).unwrap_or(Action::Allow),
            rules,
            masks,
            detectors,
            files: Vec::new(),
        })
    }

    fn compile_source(
        name: &String,
        text: &str,
        errors: &mut Vec<String>,
        default: &mut Option<(Action, String)>,
        ids: &mut HashSet<String>,
        (rules, masks, detectors): (&mut Vec<Rule>, &mut Vec<MaskRule>, &mut Vec<DetectRule>),
    ) {
        {
            if text.trim().is_empty() {
                // Most likely a file caught between its truncation and its new content
                // (an editor saving in place): loading it would drop its rules.
                errors.push(format!(
                    "{name}: the rule file is empty; write `rules: []` for a file with no rules"
                ));
                return;
            }
            let Some(raw) = loose::read(name, text, errors) else {
                return;
            };
            let mut c = Compiler { name, text, errors };
            if let Some(d) = &raw.default {
                match Action::parse(d).filter(|a| *a != Action::Approve) {
                    Some(a) => {
                        if let Some((_, other)) = default.as_ref() {
                            c.err_at(
                                c.line_of("default:"),
                                None,
                                &format!("default is already set in {other}"),
                            );
                        } else {
                            *default = Some((a, name.clone()));
                        }
                    }
                    None => c.err_at(
                        c.line_of("default:"),
                        None,
                        &format!("default must be allow or block, not {d:?}"),
                    ),
                }
            }
            // Ids are unique across rules, masks and detectors of every file.
            let mut fresh = |c: &mut Compiler<'_>, id: &str| {
                let new = ids.insert(id.to_owned());
                if !new {
                    c.err(id, "duplicate rule id");
                }
                new
            };
            for r in raw.rules {
                if fresh(&mut c, &r.id) {
                    rules.extend(c.rule(r));
                }
            }
            for m in raw.masks {
                if fresh(&mut c, &m.id) {
                    masks.extend(c.mask(m));
                }
            }
            for d in raw.detect {
                if detectors.len() >= masks::MAX_DETECTORS {
                    c.err(
                        &d.id,
                        &format!("too many detectors (at most {})", masks::MAX_DETECTORS),
                    );
                    break;
                }
                if fresh(&mut c, &d.id) {
                    detectors.extend(c.detect(d));
                }
            }
        }
    }
}

/// The rule files a path names.
pub fn rule_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The line number of a `name:line: ...` error (0 when it has none).
fn error_line(e: &str) -> usize {
    e.split(':')
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// The line an id is declared on (`id: x`) in a rule file's text, for error messages.
fn line_of_id(text: &str, id: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim().trim_start_matches("- ").trim();
            l.strip_prefix("id:")
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == id)
                .unwrap_or(false)
        })
        .map(|i| i + 1)
        .unwrap_or(1)
}

struct Compiler<'a> {
    name: &'a str,
    text: &'a str,
    errors: &'a mut Vec<String>,
}

impl Compiler<'_> {
    /// The line an id is declared on (`id: x`), for error messages.
    fn line_of_id(&self, id: &str) -> usize {
        line_of_id(self.text, id)
    }

    fn line_of(&self, prefix: &str) -> usize {
        self.text
            .lines()
            .position(|l| l.trim_start().starts_with(prefix))
            .map(|i| i + 1)
            .unwrap_or(1)
    }

    fn err_at(&mut self, line: usize, id: Option<&str>, msg: &str) {
        match id {
            Some(id) => self
                .errors
                .push(format!("{}:{line}: rule \"{id}\": {msg}", self.name)),
            None => self.errors.push(format!("{}:{line}: {msg}", self.name)),
        }
    }

    fn err(&mut self, id: &str, msg: &str) {
        let line = self.line_of_id(id);
        self.err_at(line, Some(id), msg);
    }

    fn globs(&mut self, id: &str, what: &str, v: &Option<OneOrMany<String>>) -> Option<Vec<Glob>> {
        self.patterns(id, what, v, Glob::new)
    }

    /// A condition's list of patterns, each compiled by `new`; a bad one is an error
    /// naming the rule and the key (every kind of glob: tables, commands, paths).
    fn patterns<G, E: std::fmt::Display>(
        &mut self,
        id: &str,
        what: &str,
        v: &Option<OneOrMany<String>>,
        new: impl Fn(&str) -> Result<G, E>,
    ) -> Option<Vec<G>> {
        let v = v.as_ref()?;
        let mut out = Vec::new();
        for p in v.to_vec() {
            match new(&p) {
                Ok(g) => out.push(g),
                Err(e) => self.err(id, &format!("{what}: {e}")),
            }
        }
        Some(out)
    }

    fn cond(&mut self, id: &str, c: &RawCond) -> Cond {
        let statement = c.statement.as_ref().map(|v| {
            v.to_vec()
                .iter()
                .filter_map(|k| {
                    let kind = Kind::parse(k);
                    if kind.is_none() {
                        self.err(id, &format!("unknown statement kind {k:?}"));
                    }
                    kind
                })
                .collect()
        });
        let where_ = c.where_.as_ref().map(|v| {
            v.to_vec()
                .iter()
                .filter_map(|w| match w.as_str() {
                    "missing" => Some(WhereCond::Missing),
                    "tautology" => Some(WhereCond::Tautology),
                    other => {
                        self.err(
                            id,
                            &format!("where must be missing or tautology, not {other:?}"),
                        );
                        None
                    }
                })
                .collect()
        });
        let copy = c.copy.as_ref().map(|v| {
            v.to_vec()
                .iter()
                .filter_map(|w| match w.as_str() {
                    "program" => Some(CopyEnd::Program),
                    "file" => Some(CopyEnd::File),
                    "stdio" => Some(CopyEnd::Stdio),
                    other => {
                        self.err(
                            id,
                            &format!("copy must be program, file or stdio, not {other:?}"),
                        );
                        None
                    }
                })
                .collect()
        });
        Cond {
            statement,
            where_,
            writes: c.writes,
            tables: self.globs(id, "tables", &c.tables),
            tables_written: self.globs(id, "tables_written", &c.tables_written),
            columns: self.globs(id, "columns", &c.columns),
            functions: self.globs(id, "functions", &c.functions),
            settings: self.globs(id, "settings", &c.settings),
            copy,
            targets: self.globs(id, "targets", &c.targets),
            users: self.globs(id, "users", &c.users),
            groups: self.globs(id, "groups", &c.groups),
            ssh: self.ssh_cond(id, c),
            http_methods: self.http_methods(id, &c.http_methods),
            http_paths: self.http_paths(id, &c.http_paths),
        }
    }

    fn rule(&mut self, r: raw::RawRule) -> Option<Rule> {
        if r.id.trim().is_empty() {
            self.err_at(1, None, "a rule needs an id");
            return None;
        }
        let Some(action) = Action::parse(&r.action) else {
            self.err(
                &r.id,
                &format!("action must be allow, block or approve, not {:?}", r.action),
            );
            // The conditions' own mistakes too, in the same run.
            self.cond(&r.id, &r.when);
            if let Some(u) = &r.unless {
                self.cond(&r.id, u);
            }
            return None;
        };
        if action == Action::Approve && r.approvers.as_ref().is_none_or(|a| a.is_empty()) {
            self.err(
                &r.id,
                "action approve needs approvers (groups whose members may approve)",
            );
        }
        if action != Action::Approve && r.approvers.is_some() {
            self.err(&r.id, "approvers only apply to action approve");
        }
        let when = self.cond(&r.id, &r.when);
        let unless = r.unless.as_ref().map(|u| self.cond(&r.id, u));
        let source = format!("{}:{}", self.name, self.line_of_id(&r.id));
        Some(Rule {
            source,
            description: r.message.or(r.description).unwrap_or_default(),
            action,
            approvers: r.approvers.unwrap_or_default(),
            when,
            unless,
            id: r.id,
        })
    }
}

#[cfg(test)]
mod tests;
