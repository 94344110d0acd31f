//! Reading the catalog: one connection runs the queries of `queries.rs`, and their
//! rows become a [`Catalog`] (bodies and expressions classified into facts, a locked
//! relation keeping what the previous load knew). Separate from the `Catalog` type and
//! its lookups, which the hot path uses, and from the cache deciding when to load.

use std::sync::Arc;
use std::time::Duration;

use super::not_null;
use super::queries::{
    AGGREGATES, BEGIN_SNAPSHOT, CASTS, CATALOG_SETTINGS, DOMAINS, DOMAIN_BASES, DOMAIN_OIDS,
    END_SNAPSHOT, EVENT_TRIGGERS, FUNCTIONS, INHERITS, LOCKED, NATIVE, OPERATORS, POLICIES,
    RELATIONS, RULES, SCHEMAS, SEARCH_PATH, TEXT_TYPES, TRIGGERS, WRITES,
};
use super::{lower, Catalog, RelInfo};
use crate::classify::{classify_now, merge, Facts, Kind};
use crate::config::Target;
use crate::session::error::SessionError;
use crate::session::upstream;

/// How often a load that ran into a lock is tried before the caller is told.
const LOAD_TRIES: u32 = 3;

/// The facts of catalog text; None when there is none to read (a locked table's
/// defaults) or it does not parse.
fn facts_of(sql: &str) -> Option<Facts> {
    if sql.trim().is_empty() {
        return None;
    }
    let mut merged = Facts::default();
    for f in classify_now(sql).ok()?.statements {
        merge(&mut merged, f);
    }
    Some(merged)
}

/// Classify catalog text on a thread with a large stack (bodies can nest deeply).
fn classify_bodies(items: Vec<(String, String)>) -> Vec<(String, Option<Facts>)> {
    std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            items
                .into_iter()
                .map(|(k, sql)| {
                    let mut facts = facts_of(&sql);
                    // The CREATE FUNCTION around a body is not something a call does;
                    // what the body itself creates is (a call is then followed like
                    // DDL: the catalog is read again after it).
                    if let Some(f) = facts.as_mut().filter(|_| k.starts_with("f:")) {
                        if !crate::classify::bodies_create(&sql) {
                            f.kinds.remove(&Kind::Create);
                        }
                    }
                    (k, facts)
                })
                .collect()
        })
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or_default()
}

fn relations_of(rows: Vec<Vec<Option<String>>>) -> Vec<RelInfo> {
    let mut out: Vec<RelInfo> = Vec::new();
    for r in rows {
        let [Some(oid), Some(schema), Some(name), Some(kind), Some(attnum), Some(att), Some(ty), def, locked] =
            r.as_slice()
        else {
            continue;
        };
        let (Ok(oid), Ok(attnum), Ok(ty)) = (oid.parse(), attnum.parse(), ty.parse()) else {
            continue;
        };
        if out.last().is_none_or(|l| l.oid != oid) {
            out.push(RelInfo {
                oid,
                schema: schema.clone(),
                name: name.clone(),
                kind: kind.bytes().next().unwrap_or(b'r'),
                columns: Vec::new(),
                view_definition: None,
                definition_unread: locked.as_deref() == Some("t"),
                being_changed: false,
            });
        }
        if let Some(l) = out.last_mut() {
            l.columns.push((attnum, att.clone(), ty));
            if def.is_some() {
                l.view_definition = def.clone();
            }
        }
    }
    out
}

/// Reads the catalog, trying again when a read ran into a lock taken after the
/// [`LOCKED`] check (a migration starting at that very moment) or a relation dropped
/// while it was read.
pub(super) async fn load(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    previous: Option<&Catalog>,
) -> Result<Catalog, String> {
    let mut tries = 0;
    loop {
        tries += 1;
        match load_once(target, tls, timeout, previous).await {
            // 55P03: a lock; XX000: a relation dropped while being read (a session's
            // temporary view at its end: "could not open relation with OID").
            Err(SessionError::Upstream { code, .. })
                if matches!(code.as_str(), "55P03" | "XX000") && tries < LOAD_TRIES =>
            {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(tries))).await;
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

async fn load_once(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    previous: Option<&Catalog>,
) -> Result<Catalog, SessionError> {
    let stream = upstream::connect(target, tls, timeout).await?;
    let params = [("application_name".to_string(), "pgmoat catalog".to_string())];
    let ready = upstream::start(stream, target, &params).await?;
    let (mut stream, mut buf) = (ready.stream, ready.leftover);
    upstream::simple_query(&mut stream, &mut buf, CATALOG_SETTINGS).await?;
    // One snapshot for every read (review s36 F10); an error ends the connection,
    // and with it the transaction.
    upstream::simple_query(&mut stream, &mut buf, BEGIN_SNAPSHOT).await?;
    let path_row = upstream::simple_query(&mut stream, &mut buf, SEARCH_PATH).await?;
    let schemas = upstream::simple_query(&mut stream, &mut buf, SCHEMAS).await?;
    let mut results = Vec::with_capacity(17);
    for sql in [
        OPERATORS,
        CASTS,
        DOMAINS,
        FUNCTIONS,
        RELATIONS,
        TEXT_TYPES,
        AGGREGATES,
        NATIVE,
        DOMAIN_BASES,
        WRITES,
        TRIGGERS,
        EVENT_TRIGGERS,
        not_null::NOT_NULL,
        INHERITS,
        DOMAIN_OIDS,
        RULES,
        POLICIES,
    ] {
        let sql = sql.replace("LOCKED_RELATIONS", LOCKED);
        results.push(upstream::simple_query(&mut stream, &mut buf, &sql).await?);
    }
    upstream::simple_query(&mut stream, &mut buf, END_SNAPSHOT).await?;
    let mut results = results.into_iter();
    let (ops, casts, domains, funcs) = (
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
    );
    let (rels, text_types) = (
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
    );
    let (aggregates, native, domain_bases, writes, triggers, events) = (
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
    );
    let not_null = not_null::NotNull::from_rows(results.next().unwrap_or_default());
    let (inherits, domain_oids, rules, policy_rows) = (
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
    );
    let _ = upstream::terminate(&mut stream).await;
    let mut relations = relations_of(rels);
    // A locked view keeps the definition the previous load read.
    for rel in relations.iter_mut().filter(|r| r.definition_unread) {
        let before = previous.and_then(|p| p.relations.iter().find(|o| o.oid == rel.oid));
        if let Some(def) = before.and_then(|o| o.view_definition.clone()) {
            rel.view_definition = Some(def);
            rel.definition_unread = false;
            rel.being_changed = true;
        }
    }
    // No answer (never expected) reads as a path pgmoat cannot vouch for.
    let default_path = match path_row.first().map(Vec::as_slice) {
        Some([Some(setting), Some(login)]) => super::path::DefaultPath::new(
            setting,
            login,
            schemas
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .collect(),
            previous.and_then(|p| p.default_path.as_ref()),
        ),
        _ => super::path::DefaultPath::unread(),
    };
    let before = previous
        .map(|p| (p.policies.clone(), p.dormant.clone()))
        .unwrap_or_default();
    let (policies, dormant) =
        tokio::task::spawn_blocking(move || super::policies::from_rows(policy_rows, &before))
            .await
            .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?;
    let mut cat = Catalog {
        default_path: Some(default_path),
        policies,
        dormant,
        relations,
        text_types: text_types
            .into_iter()
            .filter_map(|r| r.first().cloned().flatten()?.parse().ok())
            .collect(),
        not_null,
        ..Catalog::default()
    };
    for r in ops {
        if let [Some(op), Some(schema), Some(func)] = r.as_slice() {
            cat.operators
                .entry(op.clone())
                .or_default()
                .push(func.clone());
            cat.operators
                .entry(format!("{schema}.{op}"))
                .or_default()
                .push(func.clone());
        }
    }
    for r in casts {
        if let [Some(ty), Some(func)] = r.as_slice() {
            cat.casts.entry(lower(ty)).or_default().push(func.clone());
        }
    }
    for r in domain_bases {
        if let [Some(ty), Some(base)] = r.as_slice() {
            cat.domain_bases.insert(lower(ty), lower(base));
        }
    }
    let mut texts = Vec::new();
    for rel in &cat.relations {
        if let Some(def) = &rel.view_definition {
            texts.push((
                format!("v:{}.{}", rel.schema, rel.name),
                def.trim_end().trim_end_matches(';').to_owned(),
            ));
        }
    }
    let mut kept = std::collections::HashSet::new();
    for (i, r) in writes.iter().enumerate() {
        match r.as_slice() {
            [Some(table), Some(sql)] => texts.push((format!("w:{i}:{table}"), sql.clone())),
            // Locked by a transaction: not read now. What the previous load knew of the
            // table stands; a table it did not know gets an empty text, which does not
            // classify, so writing it becomes unanalysable below.
            [Some(table), None] => match previous.filter(|p| p.knows_relation(table)) {
                Some(p) => {
                    if kept.insert(table.clone()) {
                        if let Some(f) = p.writes.get(table.as_str()) {
                            cat.writes.insert(table.clone(), f.clone());
                        }
                    }
                }
                None => texts.push((format!("w:{i}:{table}"), String::new())),
            },
            _ => {}
        }
    }
    for (i, r) in triggers.iter().enumerate() {
        if let [Some(table), sql] = r.as_slice() {
            // NULL SQL (a WHEN condition not read) gets an empty text: unanalysable.
            texts.push((format!("g:{i}:{table}"), sql.clone().unwrap_or_default()));
        }
    }
    for (i, r) in rules.iter().enumerate() {
        if let [Some(table), sql] = r.as_slice() {
            // NULL (a locked table) gets an empty text: unanalysable.
            texts.push((format!("r:{i}:{table}"), sql.clone().unwrap_or_default()));
        }
    }
    for (i, r) in events.iter().enumerate() {
        if let [Some(sql)] = r.as_slice() {
            texts.push((format!("e:{i}"), sql.clone()));
        }
    }
    for rel in cat.relations.iter().filter(|r| r.definition_unread) {
        cat.views.insert(
            format!("{}.{}", rel.schema, rel.name),
            Facts {
                unanalysable: Some(format!(
                    "a read of view {}.{} (it is being changed: its definition could not be read)",
                    rel.schema, rel.name
                )),
                ..Facts::default()
            },
        );
    }
    for r in domains {
        if let [Some(ty), Some(def)] = r.as_slice() {
            // `CHECK (...) NOT VALID` still runs on new values and on VALIDATE.
            let expr = def.strip_prefix("CHECK ").unwrap_or(def);
            let expr = expr.strip_suffix(" NOT VALID").unwrap_or(expr);
            texts.push((format!("d:{}", lower(ty)), format!("SELECT {expr}")));
        }
    }
    let mut opaque = Vec::new();
    for r in funcs {
        match r.as_slice() {
            [Some(schema), Some(name), Some(_), Some(def), _] => {
                texts.push((
                    format!("f:{}", lower(&format!("{schema}.{name}"))),
                    def.clone(),
                ));
            }
            // `LANGUAGE internal AS 'pg_read_file_all'`: another name for a built-in.
            [Some(schema), Some(name), Some(_), None, Some(builtins)] => {
                let mut facts = Facts::default();
                for b in builtins.split(',') {
                    facts.functions.insert(format!("pg_catalog.{b}"));
                }
                // An alias of set_config takes the setting's name as data: a
                // set_config of a computed name (review s37-vfix U5).
                if builtins.split(',').any(|b| b == "set_config") {
                    crate::classify::computed_setting(&mut facts);
                }
                cat.add_function(&format!("{schema}.{name}"), facts);
            }
            [Some(schema), Some(name), Some(lang), None, None]
                if !matches!(lang.as_str(), "c" | "internal") =>
            {
                opaque.push((
                    lower(&format!("{schema}.{name}")),
                    lower(name),
                    lang.clone(),
                ));
            }
            _ => {}
        }
    }
    // Views' NOT NULL columns, from their tables'.
    let views: Vec<(String, String, String)> = cat
        .relations
        .iter()
        .filter(|r| r.kind == b'v')
        .filter_map(|r| Some((r.schema.clone(), r.name.clone(), r.view_definition.clone()?)))
        .collect();
    let tables = std::mem::take(&mut cat.not_null);
    cat.not_null = tokio::task::spawn_blocking(move || tables.with_views(views))
        .await
        .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?;
    for (key, facts) in tokio::task::spawn_blocking(move || classify_bodies(texts))
        .await
        .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?
    {
        if key.starts_with("e:") {
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some("DDL (an event trigger could not be read)".into()),
                ..Facts::default()
            });
            facts.kinds.retain(|k| *k != Kind::Select);
            match &mut cat.event_triggers {
                Some(all) => merge(all, facts),
                None => cat.event_triggers = Some(facts),
            }
            continue;
        }
        if let Some(fired) = key.strip_prefix("g:") {
            let table = fired.split_once(':').map_or(fired, |(_, t)| t);
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some(format!(
                    "a write to {table} (a trigger's condition could not be read)"
                )),
                ..Facts::default()
            });
            facts.kinds.retain(|k| *k != Kind::Select);
            match cat.triggers.get_mut(table) {
                Some(all) => merge(all, facts),
                None => {
                    cat.triggers.insert(table.to_owned(), facts);
                }
            }
            continue;
        }
        if let Some(fired) = key.strip_prefix("r:") {
            let table = fired.split_once(':').map_or(fired, |(_, t)| t);
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some(format!("a write to {table} (a rule could not be read)")),
                ..Facts::default()
            });
            // What its actions do when a write fires it, not a CREATE RULE; NEW and
            // OLD are rows of its table.
            facts
                .kinds
                .retain(|k| !matches!(k, Kind::Select | Kind::Create));
            facts.tables_read.insert(table.to_owned());
            match cat.rules.get_mut(table) {
                Some(all) => merge(all, facts),
                None => {
                    cat.rules.insert(table.to_owned(), facts);
                }
            }
            continue;
        }
        if let Some(write) = key.strip_prefix("w:") {
            // `w:<row>:<table>`: a table has several rows, each merged in. One pgmoat
            // cannot read makes writing the table something it cannot judge.
            let table = write.split_once(':').map_or(write, |(_, t)| t);
            if kept.contains(table) {
                continue; // the previous load's facts stand for all of it
            }
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some(format!(
                    "a write to {table} (its defaults or checks could not be read)"
                )),
                ..Facts::default()
            });
            // The SELECT around an expression is not something the write does.
            facts.kinds.retain(|k| *k != Kind::Select);
            match cat.writes.get_mut(table) {
                Some(all) => merge(all, facts),
                None => {
                    cat.writes.insert(table.to_owned(), facts);
                }
            }
            continue;
        }
        if let Some(domain) = key.strip_prefix("d:") {
            // A domain has a row per constraint: all of them run. One pgmoat cannot
            // read makes a cast to the domain something it cannot judge.
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some(format!("a check of domain {domain} (not read)")),
                ..Facts::default()
            });
            facts.kinds.retain(|k| *k != Kind::Select);
            match cat.domains.get_mut(domain) {
                Some(all) => merge(all, facts),
                None => {
                    cat.domains.insert(domain.to_owned(), facts);
                }
            }
            continue;
        }
        let Some(facts) = facts else { continue };
        if let Some(view) = key.strip_prefix("v:") {
            cat.views.insert(view.to_owned(), facts);
        } else if let Some(func) = key.strip_prefix("f:") {
            cat.add_function(func, facts);
        }
    }
    for (qualified, bare, lang) in opaque {
        let facts = Facts {
            unanalysable: Some(format!("a call of a function in language {lang}")),
            ..Facts::default()
        };
        cat.functions.insert(qualified, facts.clone());
        cat.functions.entry(bare).or_insert(facts);
    }
    for r in aggregates {
        if let [Some(schema), Some(name), Some(trans), last, sets] = r.as_slice() {
            let mut facts = Facts::default();
            facts.functions.insert(trans.clone());
            if let Some(f) = last {
                facts.functions.insert(f.clone());
            }
            // set_config as a support function (its internal name, whatever the SQL
            // name): the setting's name is the state, known only when it runs
            // (review s37 V1), so a call is a set_config of a computed name.
            if sets.as_deref() != Some("f") {
                crate::classify::computed_setting(&mut facts);
            }
            cat.add_function(&format!("{schema}.{name}"), facts);
        }
    }
    for r in native {
        if let [Some(schema), Some(name), built_in] = r.as_slice() {
            cat.native.insert(lower(&format!("{schema}.{name}")));
            cat.native.insert(lower(name));
            if built_in.as_deref() == Some("t") {
                cat.built_in.insert(lower(&format!("{schema}.{name}")));
                cat.built_in.insert(lower(name));
            }
        }
    }
    for r in inherits {
        if let [Some(parent), Some(child)] = r.as_slice() {
            if let (Ok(p), Ok(c)) = (parent.parse(), child.parse()) {
                cat.parents.entry(c).or_default().push(p);
                cat.children.entry(p).or_default().push(c);
            }
        }
    }
    for r in domain_oids {
        if let [Some(name), Some(oid)] = r.as_slice() {
            if let Ok(oid) = oid.parse() {
                cat.domain_oids.entry(lower(name)).or_default().push(oid);
            }
        }
    }
    Ok(cat)
}
