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

/// Hash masks whose key is not in the environment were compiled to `redact`: say so
/// once per load, where the rules come into force.
fn warn_unset_hash_keys(set: &RuleSet) {
    for var in set.hash_key_vars() {
        if super::hash_key_unset(var) {
            tracing::warn!("hash key variable {var} is not set: its masks redact instead");
        }
    }
}

impl RulesHandle {
    /// Load the rules at `path` (none: everything allowed).
    pub fn load(path: Option<&Path>) -> Result<Arc<RulesHandle>, Vec<String>> {
        let set = match path {
            Some(p) => RuleSet::load(p)?,
            None => RuleSet::allow_all(),
        };
        warn_unset_hash_keys(&set);
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
        // A folder caught empty (files being replaced, or removed by mistake) would
        // reload as "no rules, default allow": fail closed and keep the old ones.
        let loaded = RuleSet::load(path).and_then(|set| {
            if set.files.is_empty() {
                Err(vec![format!(
                    "{}: no rule files (*.yaml) found; a reload never drops every rule",
                    path.display()
                )])
            } else {
                Ok(set)
            }
        });
        match loaded {
            Ok(set) => {
                warn_unset_hash_keys(&set);
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

    /// Whether any rule file's mtime or size differs from the last load's.
    fn changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        *self.signature.read().unwrap_or_else(|p| p.into_inner()) != signature(path)
    }

    /// Reload if any rule file changed since the last load.
    pub fn reload_if_changed(&self) -> Reload {
        if !self.changed() {
            return Reload::Unchanged;
        }
        self.reload()
    }

    /// Watch the files until the returned task is dropped: inotify (through `notify`)
    /// reloads within moments of a change, and a poll every `every` (a stat per file)
    /// catches what file events miss (NFS, some container mounts) or a watcher that
    /// could not be set up. Both only reload when a file's mtime or size changed.
    /// `on_change` hears of every reload applied or refused (the audit trail).
    pub fn watch(
        self: &Arc<Self>,
        every: Duration,
        on_change: impl Fn(Reload) + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.path.clone()?;
        let me = Arc::clone(self);
        Some(tokio::spawn(async move {
            let (tx, mut events) = tokio::sync::mpsc::channel::<()>(1);
            // Kept alive by this task; dropping it stops the events.
            let _watcher = file_events(&path, tx);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        // The poll may catch a file mid-write too: if anything changed,
                        // let it settle like an event before looking.
                        let me2 = Arc::clone(&me);
                        let changed = tokio::task::spawn_blocking(move || me2.changed())
                            .await
                            .unwrap_or(false);
                        if !changed {
                            // Nothing to reload: no second look at the files.
                            continue;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Some(()) = events.recv() => {
                        // An editor's save is several events (write, rename, chmod):
                        // let them settle, then look once.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        while events.try_recv().is_ok() {}
                    }
                }
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

/// A file watcher that pokes `tx` on any change in the rules' folder (the folder of a
/// single rule file: editors and ConfigMaps replace files by renaming). None, with a
/// warning, when the platform cannot watch: then the poll alone reloads.
fn file_events(
    path: &Path,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if e.is_ok() {
            // Full means a look is already due.
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| {
        w.watch(&dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); rules reload by polling and on SIGHUP",
                dir.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder holding `rules.yaml` with one rule, loaded: (folder, file, handle).
    fn one_rule(name: &str) -> (PathBuf, PathBuf, Arc<RulesHandle>) {
        let dir = std::env::temp_dir().join(format!("pgmoat-{name}-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.yaml");
        std::fs::write(
            &file,
            "rules:\n  - id: no-drop\n    when: { statement: [drop] }\n    action: block\n",
        )
        .unwrap();
        let rules = RulesHandle::load(Some(&dir)).unwrap();
        (dir, file, rules)
    }

    #[test]
    fn a_folder_found_empty_keeps_the_old_rules() {
        let (dir, file, rules) = one_rule("empty");
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(rules.reload(), Reload::Refused(_)));
        assert_eq!(rules.current().rules.len(), 1, "old rules in force");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(rules.reload(), Reload::Refused(_)));
        assert_eq!(rules.current().rules.len(), 1);
    }

    /// Issue 19: a detector that does not compile refuses the whole reload (it used to
    /// be dropped where masks were built, leaving its values unmasked).
    #[test]
    fn a_bad_method_or_detector_keeps_the_old_rules() {
        let (dir, file, rules) = one_rule("badmask");
        for bad in [
            "masks:\n  - id: m\n    columns: [t.c]\n    method: scramble\n",
            "detect:\n  - id: d\n    kind: regex\n    pattern: \"(\"\n    method: redact\n",
            "detect:\n  - id: d\n    kind: passport\n    method: redact\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            match rules.reload() {
                Reload::Refused(e) => assert!(e[0].contains("rule \"")),
                other => panic!("{bad}: must not load: {other:?}"),
            }
            let now = rules.current();
            assert_eq!(now.rules.len(), 1, "old rules in force");
            assert!(now.masks.is_empty() && now.detectors.is_empty());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_caught_empty_keeps_the_old_rules() {
        let (dir, file, rules) = one_rule("trunc");
        // An editor saving in place: truncated first, written after.
        std::fs::write(&file, "  \n").unwrap();
        match rules.reload() {
            Reload::Refused(e) => assert!(e[0].contains("the rule file is empty"), "{e:?}"),
            other => panic!("an empty file must not load: {other:?}"),
        }
        assert_eq!(rules.current().rules.len(), 1, "old rules in force");
        std::fs::write(&file, "rules: []\n").unwrap();
        assert_eq!(rules.reload(), Reload::Applied { rules: 0 });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_saved_file_reloads_without_waiting_for_the_poll() {
        let dir = std::env::temp_dir().join(format!("pgmoat-watch-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules.yaml");
        std::fs::write(&file, "rules: []\n").unwrap();
        let rules = RulesHandle::load(Some(&dir)).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // A poll once an hour: only a file event can explain a reload.
        let task = rules
            .watch(Duration::from_secs(3600), move |r| {
                let _ = tx.send(r);
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Replaced by rename, as editors and ConfigMaps do.
        let tmp = dir.join(".rules.yaml.tmp");
        std::fs::write(
            &tmp,
            "rules:\n  - id: no-drop\n    when: { statement: [drop] }\n    action: block\n",
        )
        .unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("reloaded on the file event")
            .unwrap();
        assert_eq!(r, Reload::Applied { rules: 1 });
        assert_eq!(rules.current().rules.len(), 1);
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
