//! Hot reload: the current rule set behind a lock-free-for-readers handle. Sessions
//! take one snapshot per statement. A new file set that fails validation is refused
//! and logged; the old rules stay in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::{rule_files, RuleSet};

/// The live rules.
pub struct RulesHandle {
    current: RwLock<Arc<RuleSet>>,
    /// Reloads applied, and reloads refused because the new files did not validate.
    pub reloads: std::sync::atomic::AtomicU64,
    pub reload_failures: std::sync::atomic::AtomicU64,
    path: Option<PathBuf>,
    signature: RwLock<Vec<(PathBuf, SystemTime, u64)>>,
}

/// What a reload attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Applied { rules: usize },
    Refused(Vec<String>),
}

fn signature(path: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    let files = rule_files(path).unwrap_or_default();
    let mut sig: Vec<_> = files
        .into_iter()
        .filter_map(|f| {
            let m = std::fs::metadata(&f).ok()?;
            Some((f, m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect();
    sig.sort();
    sig
}

impl RulesHandle {
    /// Load the rules at `path` (none: everything allowed).
    pub fn load(path: Option<&Path>) -> Result<Arc<RulesHandle>, Vec<String>> {
        let set = match path {
            Some(p) => RuleSet::load(p)?,
            None => RuleSet::allow_all(),
        };
        Ok(Arc::new(RulesHandle {
            current: RwLock::new(Arc::new(set)),
            reloads: Default::default(),
            reload_failures: Default::default(),
            path: path.map(Path::to_path_buf),
            signature: RwLock::new(path.map(signature).unwrap_or_default()),
        }))
    }

    /// A handle with fixed rules (tests, `explain`).
    pub fn fixed(set: RuleSet) -> Arc<RulesHandle> {
        Arc::new(RulesHandle {
            current: RwLock::new(Arc::new(set)),
            reloads: Default::default(),
            reload_failures: Default::default(),
            path: None,
            signature: RwLock::new(Vec::new()),
        })
    }

    pub fn current(&self) -> Arc<RuleSet> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_configured(&self) -> bool {
        self.path.is_some()
    }

    /// Reload from disk now (SIGHUP), whether or not the files look changed.
    pub fn reload(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let sig = signature(path);
        match RuleSet::load(path) {
            Ok(set) => {
                let n = set.rules.len();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                *self.signature.write().unwrap_or_else(|p| p.into_inner()) = sig;
                tracing::info!(path = %path.display(), rules = n, "rules reloaded");
                self.reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Reload::Applied { rules: n }
            }
            Err(errors) => {
                // Remember the bad files so they are not re-reported every poll.
                *self.signature.write().unwrap_or_else(|p| p.into_inner()) = sig;
                self.reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for e in &errors {
                    tracing::error!("rules not reloaded, old rules stay in force: {e}");
                }
                Reload::Refused(errors)
            }
        }
    }

    /// Reload if any rule file changed since the last load.
    pub fn reload_if_changed(&self) -> Reload {
        let Some(path) = &self.path else {
            return Reload::Unchanged;
        };
        let sig = signature(path);
        if *self.signature.read().unwrap_or_else(|p| p.into_inner()) == sig {
            return Reload::Unchanged;
        }
        self.reload()
    }

    /// Watch the files (polling: works on every filesystem, costs a stat per file per
    /// interval) until the returned task is dropped.
    /// `on_change` hears of every reload applied or refused (the audit trail).
    pub fn watch(
        self: &Arc<Self>,
        every: Duration,
        on_change: impl Fn(Reload) + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.path.as_ref()?;
        let me = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let me2 = Arc::clone(&me);
                if let Ok(r) = tokio::task::spawn_blocking(move || me2.reload_if_changed()).await {
                    if r != Reload::Unchanged {
                        on_change(r);
                    }
                }
            }
        }))
    }
}
