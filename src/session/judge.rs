//! The rule engine's seat in the session: Query and Parse texts are classified and
//! decided here; a refusal becomes the ErrorResponse the client will see.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use std::collections::HashMap;

use super::core::slots::lock;
use super::judge_facts::{reads_large_objects, writes_large_object, writes_masked_relation};
use super::verdict::{Cause, Hold, OwnCause, Plan, Refusal, Verdict};
use crate::auth::Identity;
use crate::classify::{Classifier, ClassifyError};
use crate::mask::Masking;
use crate::policy::reload::RulesHandle;
use crate::policy::{Action, Subject};
use crate::protocol::sqlstate;

pub struct Judge {
    pub classifier: Arc<Classifier>,
    pub rules: Arc<RulesHandle>,
    pub identity: Identity,
    pub target: String,
    /// Set once the session changes search_path (at startup or by any statement the
    /// rules let through); from then on unqualified tables could be in any schema.
    pub search_path_changed: std::sync::atomic::AtomicBool,
    pub catalog: Arc<crate::catalog::CatalogCache>,
    /// The role pgmoat SET for the identity's group: no statement may change it.
    pub pinned_role: Option<String>,
    /// Compiled masks, shared by every session with the same masks on this target.
    pub masks: Arc<MaskCache>,
    /// Where `approve` rules hold statements; None refuses them.
    pub approvals: Option<Arc<crate::approval::Approvals>>,
    /// This session's masks, for the rules and catalog they were compiled from.
    pub masking: std::sync::Mutex<Option<MaskingFor>>,
    /// SQL-level prepared statements (by name) that an `approve` rule matched when
    /// they were PREPAREd: each EXECUTE of one asks, as each Execute of a held
    /// protocol-level statement does. Names stay for the session (DEALLOCATE is not
    /// followed: asking again is the safe side).
    pub prepared_holds: std::sync::Mutex<HashMap<String, Arc<PreparedHold>>>,
    /// Set once `prepared_holds` has a name.
    pub any_prepared_holds: std::sync::atomic::AtomicBool,
    /// The session is audited: only then are the record's facts (kinds, tables, rule
    /// ids) gathered for every statement; otherwise just the action.
    pub audited: bool,
    /// `pgmoat.approval_mode=return`: a hold answers at once, and the retry runs once
    /// approved ([`crate::approval::returned`]).
    pub approval_return: bool,
    /// The front door the session serves, shown with its approval requests.
    pub door: crate::approval::FrontDoor,
    /// This session's plain judgments, for statements it sends again.
    pub memo: std::sync::Mutex<super::judge_memo::Memo>,
    /// What the DDL of the message judged last changes (allowed or held); the relay
    /// takes it ([`Judge::took_ddl`]) to follow it when it goes to the server.
    pub judged_ddl: std::sync::Mutex<Option<super::ddl::Made>>,
    /// What this session's DDL sent and not yet visible to pgmoat's catalog changed
    /// (see [`super::ddl`]).
    pub ddl_running: std::sync::Mutex<Option<super::ddl::Made>>,
    /// The catalog the last message was judged over: a prepared statement keeps it
    /// (see `session::stale`).
    pub judged_under: std::sync::Mutex<Option<Arc<crate::catalog::Catalog>>>,
}

/// What an EXECUTE of a held SQL-level prepared statement asks.
pub struct PreparedHold {
    rule: String,
    approvers: Vec<String>,
    /// The PREPARE as it was sent.
    sql: String,
}

/// A compiled [`Masking`] (or none) and what it was compiled from.
pub struct MaskingFor {
    rules: Arc<crate::policy::RuleSet>,
    catalog: Arc<crate::catalog::Catalog>,
    masking: Option<Arc<Masking>>,
}

/// Compiled masks by target, rules, catalog and the identity's mask set, shared by
/// the sessions of every worker (a concurrent map: no lock across workers).
pub struct MaskCache {
    // The key's pointers stay valid: each entry holds its rules and catalog.
    entries: crate::cache::Bounded<String, MaskingForShared>,
}

impl Default for MaskCache {
    fn default() -> MaskCache {
        MaskCache {
            entries: crate::cache::Bounded::new(MASK_CACHE_MAX),
        }
    }
}

#[derive(Clone)]
struct MaskingForShared {
    _rules: Arc<crate::policy::RuleSet>,
    _catalog: Arc<crate::catalog::Catalog>,
    masking: Option<Arc<Masking>>,
}

const MASK_CACHE_MAX: usize = 256;

/// What the judge found: the verdict, and what the relay's other consumers need of
/// the message (masking engine, statement count, audit facts, EXECUTEd names).
pub struct Judged {
    pub verdict: Verdict,
    pub masking: Option<Arc<Masking>>,
    pub statements: usize,
    /// What the audit record of the message says.
    pub facts: crate::audit::StatementFacts,
    /// Names its SQL `EXECUTE`s run: Parse shares their namespace, so the relay asks
    /// whether one is a held protocol-level statement.
    pub executes: Vec<String>,
    /// Its parameters that name a setting set_config changes (`Facts::setting_params`):
    /// the relay checks their values at each Bind.
    pub setting_params: Vec<u16>,
}

impl Judged {
    /// Refused before anything about the message was known but its cause.
    pub fn refused(r: Refusal) -> Judged {
        let facts = crate::audit::StatementFacts {
            action: Action::Block,
            rules: vec![r.cause.as_str().to_owned()],
            ..Default::default()
        };
        Judged {
            verdict: Verdict::Refuse(r),
            masking: None,
            statements: 1,
            executes: Vec::new(),
            setting_params: Vec::new(),
            facts,
        }
    }

    /// Allowed, with nothing to mask (no rules, or none that mask for this session).
    pub fn allowed(masking: Option<Arc<Masking>>, statements: usize) -> Judged {
        Judged {
            verdict: Verdict::Allow(Plan::default()),
            masking,
            statements,
            executes: Vec::new(),
            setting_params: Vec::new(),
            facts: Default::default(),
        }
    }

    /// Attach the decision's facts; a refusal by a mask makes an allowed one a block.
    fn with_facts(mut self, mut facts: crate::audit::StatementFacts) -> Judged {
        if let Verdict::Refuse(r) = &self.verdict {
            if facts.action == Action::Allow {
                facts.action = Action::Block;
                facts.rules.insert(0, r.cause.as_str().to_owned());
            }
        }
        if facts.masked_columns.is_empty() {
            facts.masked_columns = std::mem::take(&mut self.facts.masked_columns);
        }
        self.facts = facts;
        self
    }
}

impl Judge {
    /// Decide on one message's SQL: None to let it run.
    pub async fn judge(&self, sql: &[u8]) -> Judged {
        self.judge_text(std::str::from_utf8(sql).ok()).await
    }

    /// [`Judge::judge`] of a text its caller already checked as UTF-8 (None: it is
    /// not valid UTF-8, and is refused).
    pub async fn judge_text(&self, sql: Option<&str>) -> Judged {
        *lock(&self.judged_ddl) = None;
        *lock(&self.judged_under) = None;
        let Some(sql) = sql else {
            return Judged::refused(Refusal::own(
                OwnCause::Unparseable,
                sqlstate::SYNTAX_ERROR,
                "pgmoat: the statement is not valid UTF-8",
            ));
        };
        let again = self.memo().classified_again(sql);
        let classified = match again {
            Some(c) => c,
            None => match self.classifier.classify(sql).await {
                Ok(c) => {
                    self.memo().classified(sql, &c);
                    c
                }
                Err(e) => {
                    let code = match e {
                        ClassifyError::TooLarge(..) => sqlstate::PROGRAM_LIMIT_EXCEEDED,
                        ClassifyError::Parse(_) => sqlstate::SYNTAX_ERROR,
                        ClassifyError::Unavailable => sqlstate::INTERNAL_ERROR,
                    };
                    return Judged::refused(Refusal::own(
                        OwnCause::Unparseable,
                        code,
                        format!("pgmoat: {e}"),
                    ));
                }
            },
        };
        // Fold in what the catalog knows (user operators, casts, domains, function bodies).
        let catalog = match self.catalog.get().await {
            Ok(c) => c,
            Err(e) => {
                return Judged::refused(Refusal::own(
                    OwnCause::Catalog,
                    sqlstate::INTERNAL_ERROR,
                    format!(
                        "pgmoat: cannot read target \"{}\"'s catalog to judge the statement: {e}",
                        self.target
                    ),
                ))
            }
        };
        *lock(&self.judged_under) = Some(Arc::clone(&catalog));
        let rules = self.rules.current();
        if let Some(r) = self.behind_ddl(&classified.statements, &rules, &catalog) {
            return Judged::refused(r);
        }
        let path_changed = self.path_changed(&catalog);
        let remembered = self.memo().get(&classified, &rules, &catalog, path_changed);
        if let Some(r) = remembered {
            // The one thing a plain judgment read of the text beyond its
            // classification: a DECLARE is traced for masking (see `masks_for`).
            if r.masking.is_none() || !contains_ignore_case(sql.as_bytes(), b"declare") {
                let mut judged = Judged::allowed(r.masking, r.statements);
                judged.facts = r.facts;
                return judged;
            }
        }
        let resolved: Option<Vec<crate::classify::Facts>> = {
            let r: Vec<Option<crate::classify::Facts>> = classified
                .statements
                .iter()
                .map(|f| catalog.resolve(f))
                .collect();
            r.iter().any(Option::is_some).then(|| {
                r.into_iter()
                    .zip(classified.statements.iter())
                    .map(|(r, f)| r.unwrap_or_else(|| f.clone()))
                    .collect()
            })
        };
        let statements = resolved.as_deref().unwrap_or(&classified.statements);
        // And with what the catalog folded in (a function's body reading a relation
        // the unseen DDL changed).
        if resolved.is_some() {
            if let Some(r) = self.behind_ddl(statements, &rules, &catalog) {
                return Judged::refused(r);
            }
        }
        if let Some(r) = super::guard::role_change_refusal(self.pinned_role.as_deref(), statements)
        {
            return Judged::refused(r);
        }
        // Whatever the rules say: a statement pipelined behind it would already be
        // judged on the wrong reading by the time the server reports the change.
        if let Some(why) = statements.iter().find_map(|f| f.rereads_sql.as_deref()) {
            return Judged::refused(Refusal::own(
                OwnCause::ParserSettings,
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("pgmoat: refused: {why}"),
            ));
        }
        // A message that changes search_path itself (`SET search_path = x; SELECT ...
        // FROM t`), or calls a function whose body runs on a path of its own (`SET
        // search_path = hideout` in CREATE FUNCTION, the usual SECURITY DEFINER
        // hardening): its bare names could be in any schema too.
        let sets_path = statements.iter().any(|f| {
            f.settings
                .iter()
                .any(|s| matches!(s.as_str(), "search_path" | "*" | "all"))
        });
        let decision = rules.decide(
            statements,
            &Subject {
                user: &self.identity.name,
                groups: &self.identity.groups,
                target: &self.target,
                search_path_changed: path_changed || sets_path,
            },
        );
        if decision.action != Action::Block {
            // After the rules (a rule that refuses names itself): code DDL made that
            // the catalog cannot show yet, when rules name functions (review X7).
            if let Some(r) = self.unseen_code(statements, &rules) {
                return Judged::refused(r);
            }
            if let Some(made) = super::ddl::Made::of(statements) {
                // It may define an operator, cast, domain or function: look again next
                // time, and once more when the server has run it (`ddl_answered`).
                self.catalog.ddl_judged();
                *lock(&self.judged_ddl) = Some(made);
            }
        }
        if decision.action == Action::Allow {
            use crate::classify::Kind;
            // A role change moves `$user` on the path (and DISCARD ALL resets it):
            // bare names could then be in another schema too.
            let changes_path = statements.iter().any(|f| {
                f.settings
                    .iter()
                    .any(|s| matches!(s.as_str(), "search_path" | "*" | "all"))
                    || f.kinds.contains(&Kind::SetRole)
                    || f.kinds.contains(&Kind::Discard)
            });
            if changes_path {
                self.search_path_changed.store(true, Relaxed);
            }
            if statements.iter().any(|f| {
                !f.settings.is_empty()
                    || f.kinds
                        .iter()
                        .any(|k| matches!(k, Kind::SetRole | Kind::Discard))
            }) {
                // Nothing kept reads the role or other settings today; forgetting is
                // the safe side should a judgment ever come to.
                self.memo().clear();
            }
        }
        let audit_facts = if self.audited {
            audit_facts(statements, &decision)
        } else {
            crate::audit::StatementFacts {
                action: decision.action,
                ..Default::default()
            }
        };
        // Only a refusal shows it: an allowed statement must not pay for the text.
        let detail = || {
            let (i, f) = decision
                .statement
                .and_then(|i| statements.get(i).map(|f| (i, f)))?;
            Some(if statements.len() > 1 {
                format!("statement {}: {}", i + 1, f.summary())
            } else {
                f.summary()
            })
        };
        let message = match decision.action {
            Action::Allow => {
                let mut judged = self
                    .masks_for(sql, statements, &rules, &catalog)
                    .await
                    .with_facts(audit_facts);
                judged.executes = statements
                    .iter()
                    .flat_map(|f| f.executes.iter().cloned())
                    .collect();
                judged.setting_params = statements
                    .iter()
                    .flat_map(|f| f.setting_params.iter().copied())
                    .collect();
                if !judged.verdict.is_refused() {
                    if let Some(hold) = self.execute_hold(sql, statements) {
                        judged.verdict.hold(hold);
                        judged.facts.action = Action::Approve;
                    }
                }
                let untraced = matches!(&judged.verdict,
                    Verdict::Allow(p) if p.lineage.is_none() && p.writes_masked == 0);
                if untraced
                    && judged.facts.masked_columns.is_empty()
                    && super::judge_memo::plain(statements)
                {
                    self.memo().keep(
                        &classified,
                        &rules,
                        &catalog,
                        path_changed,
                        judged.masking.clone(),
                        judged.statements,
                        &judged.facts,
                    );
                }
                return judged;
            }
            Action::Block if decision.description.is_empty() => {
                format!("pgmoat: blocked by rule \"{}\"", decision.deciding_rule)
            }
            Action::Block => format!(
                "pgmoat: blocked by rule \"{}\": {}",
                decision.deciding_rule, decision.description
            ),
            Action::Approve => {
                if let Some(a) = &self.approvals {
                    let mut judged = self
                        .masks_for(sql, statements, &rules, &catalog)
                        .await
                        .with_facts(audit_facts);
                    let approvers = rules
                        .rules
                        .iter()
                        .find(|r| r.id == decision.deciding_rule)
                        .map(|r| r.approvers.clone())
                        .unwrap_or_default();
                    // A PREPARE runs nothing: its EXECUTEs ask instead.
                    let prepares: Vec<&String> =
                        statements.iter().flat_map(|f| f.prepares.iter()).collect();
                    if !prepares.is_empty() && !judged.verdict.is_refused() {
                        let hold = Arc::new(PreparedHold {
                            rule: decision.deciding_rule.clone(),
                            approvers: approvers.clone(),
                            sql: sql.to_owned(),
                        });
                        let mut held = self
                            .prepared_holds
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        for name in &prepares {
                            held.insert((*name).clone(), Arc::clone(&hold));
                        }
                        self.any_prepared_holds.store(true, Relaxed);
                        if statements.iter().all(|f| !f.prepares.is_empty()) {
                            return judged;
                        }
                    }
                    // Grants are the relay's to check, where each run is recorded.
                    judged.verdict.hold(Hold {
                        approvals: Arc::clone(a),
                        rule: decision.deciding_rule.clone(),
                        approvers,
                        sql: sql.to_owned(),
                        exact: classified.literal_sensitive,
                    });
                    return judged;
                }
                // Without an `approvals:` section nobody could say yes: refuse.
                format!(
                    "pgmoat: blocked by rule \"{}\": it requires approval, and this gateway has no approvals configured",
                    decision.deciding_rule
                )
            }
        };
        let detail = detail();
        Judged::refused(
            Refusal::rule(
                decision.deciding_rule,
                sqlstate::INSUFFICIENT_PRIVILEGE,
                message,
            )
            .with_detail(detail),
        )
        .with_facts(audit_facts)
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, super::judge_memo::Memo> {
        lock(&self.memo)
    }

    /// Whether any SQL-level prepared statement of this session needs approval.
    pub fn has_prepared_holds(&self) -> bool {
        // Names are never removed, so the flag is exact; the relay asks per Bind and
        // Execute, where a lock would be paid by every prepared-protocol statement.
        self.any_prepared_holds.load(Relaxed)
    }

    /// The hold for a protocol Bind of `name` when that is a held SQL-level prepared
    /// statement: the server keeps PREPARE's names and Parse's in one namespace.
    pub fn bind_hold(&self, name: &[u8]) -> Option<Hold> {
        let name = std::str::from_utf8(name).ok()?;
        let prepared = self
            .prepared_holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()?;
        self.prepared_hold(&prepared, prepared.sql.clone())
    }

    /// What running a held SQL-level prepared statement asks, the approver seeing `sql`.
    fn prepared_hold(&self, prepared: &PreparedHold, sql: String) -> Option<Hold> {
        Some(Hold {
            approvals: Arc::clone(self.approvals.as_ref()?),
            rule: prepared.rule.clone(),
            approvers: prepared.approvers.clone(),
            sql,
            exact: false,
        })
    }

    /// The hold for a message that EXECUTEs a held SQL-level prepared statement.
    fn execute_hold(&self, sql: &str, statements: &[crate::classify::Facts]) -> Option<Hold> {
        self.approvals.as_ref()?;
        let prepared = {
            let held = self
                .prepared_holds
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if held.is_empty() {
                return None;
            }
            statements
                .iter()
                .flat_map(|f| f.executes.iter())
                .find_map(|name| held.get(name).cloned())?
        };
        self.prepared_hold(&prepared, format!("{sql}\n-- runs: {}", prepared.sql))
    }

    /// The session's masks for these rules and this catalog, compiled once per
    /// identity's mask set and shared.
    pub(super) fn masking(
        &self,
        rules: &Arc<crate::policy::RuleSet>,
        catalog: &Arc<crate::catalog::Catalog>,
    ) -> Option<Arc<Masking>> {
        let mut mine = self.masking.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = mine.as_ref() {
            if Arc::ptr_eq(&m.rules, rules) && Arc::ptr_eq(&m.catalog, catalog) {
                return m.masking.clone();
            }
        }
        let subject = self.subject();
        let ids: Vec<&str> = rules
            .masks_for(&subject)
            .iter()
            .map(|m| m.id.as_str())
            .chain(rules.detectors_for(&subject).iter().map(|d| d.id.as_str()))
            .collect();
        let masking = if ids.is_empty() {
            None
        } else {
            let key = format!(
                "{}|{:p}|{:p}|{}",
                self.target,
                Arc::as_ptr(rules),
                Arc::as_ptr(catalog),
                ids.join(",")
            );
            let shared = &self.masks.entries;
            if let Some(e) = shared.get(key.as_str()) {
                e.masking
            } else {
                // Two sessions may build the same at once: both results are equal.
                let built = Masking::build(rules, &subject, Arc::clone(catalog)).map(Arc::new);
                shared.insert(
                    key,
                    MaskingForShared {
                        _rules: Arc::clone(rules),
                        _catalog: Arc::clone(catalog),
                        masking: built.clone(),
                    },
                );
                built
            }
        };
        *mine = Some(MaskingFor {
            rules: Arc::clone(rules),
            catalog: Arc::clone(catalog),
            masking: masking.clone(),
        });
        masking
    }

    /// Whether unqualified table names could be in any schema: the session changed
    /// search_path, or the server's default path (for this session's role) could put
    /// them somewhere other than `public` (see `catalog::path`).
    pub(super) fn path_changed(&self, catalog: &crate::catalog::Catalog) -> bool {
        self.search_path_changed.load(Relaxed)
            || !catalog.unqualified_is_public(self.pinned_role.as_deref())
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            user: &self.identity.name,
            groups: &self.identity.groups,
            target: &self.target,
            search_path_changed: self.search_path_changed.load(Relaxed),
        }
    }

    /// For an allowed message: its lineage when masked values may be involved, and a
    /// refusal when it would move them somewhere unmasked.
    async fn masks_for(
        &self,
        sql: &str,
        statements: &[crate::classify::Facts],
        rules: &Arc<crate::policy::RuleSet>,
        catalog: &Arc<crate::catalog::Catalog>,
    ) -> Judged {
        let n = statements.len().max(1);
        let Some(m) = self.masking(rules, catalog) else {
            return Judged::allowed(None, n);
        };
        let path_changed = self.path_changed(catalog);
        let copies = m.detectors.is_some()
            && statements
                .iter()
                .any(|f| f.kinds.contains(&crate::classify::Kind::CopyTo));
        // A PREPARE or DECLARE is traced even over clean data: its name's later
        // EXECUTE or FETCH (or protocol Bind/Execute) is masked by what it defined,
        // not masked whole for want of it.
        let defines = || {
            statements.iter().any(|f| !f.prepares.is_empty())
                || contains_ignore_case(sql.as_bytes(), b"declare")
        };
        let need = copies
            || statements
                .iter()
                .any(|f| m.may_touch(f, path_changed) || reads_large_objects(f))
            || defines();
        if !need {
            return Judged::allowed(Some(m), n);
        }
        // What a message makes itself is what its later statements name only on the
        // default search_path (pg_temp first).
        let trust_local = !path_changed;
        let lineage = match m.lineage_cached(sql, trust_local) {
            Some(l) => l,
            None => {
                let (engine, text) = (Arc::clone(&m), sql.to_owned());
                match self
                    .classifier
                    .on_parse_thread(move || engine.lineage_now(&text, trust_local))
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        return Judged::refused(Refusal::own(
                            OwnCause::Lineage,
                            sqlstate::INTERNAL_ERROR,
                            format!("pgmoat: {e}"),
                        ))
                    }
                }
            }
        };
        if lineage.iter().any(|l| l.unknown_relation) {
            self.catalog.mark_stale_soon();
        }
        // Code the lineage does not follow (DO blocks, procedures, bodies pgmoat cannot
        // analyse) may read masked columns and RAISE them: its messages are scrubbed.
        let opaque: Vec<usize> = statements
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                (f.unanalysable.is_some()
                    || f.kinds.contains(&crate::classify::Kind::Do)
                    || f.kinds.contains(&crate::classify::Kind::Call))
                    && m.may_touch(f, path_changed)
                    || reads_large_objects(f)
            })
            .map(|(i, _)| i)
            .collect();
        let lineage = if opaque.is_empty() {
            lineage
        } else {
            let mut l = (*lineage).clone();
            for i in opaque {
                if let Some(x) = l.get_mut(i) {
                    x.touched = x.touched.join(crate::classify::lineage::Taint::UNKNOWN);
                    if statements.get(i).is_some_and(reads_large_objects) {
                        // The catalog's large-object pages hold whatever was written
                        // (masked values included, by anyone): no column of it is clean.
                        x.outputs = None;
                    }
                }
            }
            Arc::new(l)
        };
        let mut writes_masked = 0u64;
        for (i, f) in statements.iter().enumerate() {
            if writes_masked_relation(&m, f, path_changed) {
                writes_masked |= 1 << i.min(63);
            }
        }
        for (i, l) in lineage.iter().enumerate() {
            let lo_write = || {
                statements
                    .get(i)
                    .and_then(writes_large_object)
                    .filter(|_| !l.touched.is_clean())
            };
            let why = if let Some(w) = &l.launders {
                Some(format!(
                    "{w} would copy masked values where they are no longer masked"
                ))
            } else if l.copy_out.is_some() && !l.touched.is_clean() {
                Some("COPY ... TO STDOUT of masked columns (SELECT them instead: results are masked)".to_string())
            } else if l.copy_out == Some(true) && m.detectors.is_some() {
                Some("binary COPY cannot be scanned by the content detectors".to_string())
            } else {
                // Like INSERT ... SELECT into a table: the large object keeps the
                // value where no mask applies (lo_get would return it later).
                lo_write().map(|f| format!(
                    "{f}() in a statement that reads masked columns would copy masked values into a large object, where they are no longer masked"
                ))
            };
            if let Some(why) = why {
                let id = m.mask_id(l.touched);
                return Judged::refused(Refusal::new(
                    Cause::Rule(id.to_string()),
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    format!("pgmoat: blocked by mask \"{id}\": {why}"),
                ));
            }
        }
        // DDL that renames or moves what masks name, also in code the message runs.
        if let Some(id) = statements.iter().find_map(|f| m.ddl_unmasks(f)) {
            return Judged::refused(Refusal::new(
                Cause::Rule(id.to_string()),
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("pgmoat: blocked by mask \"{id}\": changing a table with masked columns or its schema (names, columns, rules, triggers), also inside a function or DO block, would take its values out of their mask"),
            ));
        }
        // A DO block or procedure is judged like a call of a function with its body.
        if let Some(id) = statements
            .iter()
            .find_map(|f| m.code_keeps(f, statements, path_changed))
        {
            return Judged::refused(Refusal::new(
                Cause::Rule(id.to_string()),
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("pgmoat: blocked by mask \"{id}\": a DO block or procedure that reads masked columns and keeps values (writes a table that may be permanent, notifies, changes a setting or a sequence) would copy them where they are no longer masked"),
            ));
        }
        let facts = crate::audit::StatementFacts {
            masked_columns: m.masked_names(statements),
            ..Default::default()
        };
        Judged {
            verdict: Verdict::Allow(Plan {
                lineage: Some(lineage),
                writes_masked,
            }),
            masking: Some(m),
            statements: n,
            executes: Vec::new(),
            setting_params: Vec::new(),
            facts,
        }
    }
}

/// Whether `needle` (lowercase) is in `hay` in any case. Run for every statement of a
/// masked session: a look at the first byte first skips most windows cheaply.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    // Only where the first byte is, in either case (a vector search), is a window read.
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lower, upper, hay).any(|i| {
        hay.get(i..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// The audit record's view of a decision: kinds and tables over all statements, and
/// the rule ids with the deciding one first.
fn audit_facts(
    statements: &[crate::classify::Facts],
    decision: &crate::policy::Decision,
) -> crate::audit::StatementFacts {
    let mut kinds = std::collections::BTreeSet::new();
    let mut tables = std::collections::BTreeSet::new();
    for f in statements {
        kinds.extend(f.kinds.iter().map(|k| k.as_str().to_owned()));
        tables.extend(f.tables_read.iter().cloned());
        tables.extend(f.tables_written.iter().cloned());
    }
    let mut rules = Vec::new();
    if decision.action != Action::Allow || decision.deciding_rule != "default" {
        rules.push(decision.deciding_rule.clone());
    }
    for r in &decision.rules {
        if !rules.contains(r) {
            rules.push(r.clone());
        }
    }
    crate::audit::StatementFacts {
        kinds: kinds.into_iter().collect(),
        tables: tables.into_iter().collect(),
        action: decision.action,
        rules,
        masked_columns: Vec::new(),
        prepares: statements
            .iter()
            .flat_map(|f| f.prepares.iter().cloned())
            .collect(),
    }
}
