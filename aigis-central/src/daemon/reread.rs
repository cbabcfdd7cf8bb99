//! SIGHUP, and `aigis reload` without a name: the central config is read
//! again and the difference applied, like `supervisorctl update`. New
//! plugins start, removed ones stop, changed ones (another source or
//! section) restart, and untouched ones keep running. Of the `[aigis]`
//! settings, `may_reload` takes effect at once and `user`/`users` at each
//! plugin's next start; the others at the next start of `aigis`.

use super::Daemon;
use config::PluginEntry;
use std::sync::Arc;
use tokio::signal::unix::Signal;

impl Daemon {
    /// Reads the config again on every SIGHUP, until shutdown.
    pub(super) async fn reread_on_sighup(self: Arc<Self>, mut hup: Signal) {
        while hup.recv().await.is_some() {
            tracing::info!(
                "SIGHUP received: reading {} again",
                self.config_path.display()
            );
            match self.reread().await {
                Ok(done) => tracing::info!("{done}"),
                Err(e) => tracing::error!("{e}; nothing changed"),
            }
        }
    }

    /// Reads the config again and applies the difference; says what changed.
    pub(super) async fn reread(self: &Arc<Self>) -> Result<String, String> {
        let config = config::load_central(&self.config_path).map_err(|e| e.to_string())?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        match self.settings.write() {
            Ok(mut s) => *s = config.aigis.clone(),
            Err(p) => *p.into_inner() = config.aigis.clone(),
        }
        let old = self.entries();
        let new = config.plugins;
        let find = |list: &[PluginEntry], name: &str| list.iter().find(|e| e.name == name).cloned();
        let removed: Vec<PluginEntry> = old
            .iter()
            .filter(|e| find(&new, &e.name).is_none())
            .cloned()
            .collect();
        let changed: Vec<PluginEntry> = new
            .iter()
            .filter(|e| {
                find(&old, &e.name).is_some_and(|o| o.source != e.source || o.section != e.section)
            })
            .cloned()
            .collect();
        let added: Vec<PluginEntry> = new
            .iter()
            .filter(|e| find(&old, &e.name).is_none())
            .cloned()
            .collect();
        let mut busy = Vec::new();
        let mut claims = Vec::new();
        let old_source = |name: &str| find(&old, name).map(|o| o.source);
        for entry in removed.iter().chain(&changed) {
            match self.claim(&entry.name) {
                Some(claim) => {
                    self.stop_plugin(&entry.name).await;
                    claims.push(claim);
                }
                None => busy.push(entry.name.clone()),
            }
        }
        for entry in removed.iter().filter(|r| !busy.contains(&r.name)) {
            super::lock(&self.placed).remove(&entry.name);
        }
        for entry in changed.iter().filter(|c| !busy.contains(&c.name)) {
            let was = find(&old, &entry.name).map(|o| o.source);
            self.set_old_copy_aside(entry, was).await;
        }
        match self.entries.write() {
            Ok(mut e) => *e = new.clone(),
            Err(p) => *p.into_inner() = new.clone(),
        }
        self.registry.sync(&new);
        for entry in &new {
            let is_new = added.iter().any(|a| a.name == entry.name);
            let was_changed = changed.iter().any(|c| c.name == entry.name);
            if !is_new && !was_changed {
                continue;
            }
            if is_new {
                match self.claim(&entry.name) {
                    Some(claim) => claims.push(claim),
                    None => {
                        busy.push(entry.name.clone());
                        continue;
                    }
                }
            }
            if busy.contains(&entry.name) {
                continue;
            }
            self.load(entry).await;
        }
        drop(claims);
        // A plugin whose load (or other operation) is under way gets the
        // change once it is done: never started and then forgotten.
        for name in &busy {
            let gone = removed.iter().any(|r| &r.name == name);
            let (daemon, name, was) = (self.clone(), name.clone(), old_source(name));
            self.tasks.spawn_cancellable(async move {
                daemon.apply_when_free(&name, gone, was).await;
            });
        }
        let unchanged = new.len() - added.len() - changed.len();
        let mut done = format!(
            "config read again: {} added, {} removed, {} changed, {unchanged} unchanged",
            added.len(),
            removed.len(),
            changed.len()
        );
        if !busy.is_empty() {
            done.push_str(&format!(
                "; applied once the operation under way ends: {}",
                busy.join(", ")
            ));
        }
        Ok(done)
    }

    /// A removed or changed plugin that was busy (loading, say): waits for
    /// its operation to end, then stops it (`gone`) or loads it from its
    /// new entry.
    async fn apply_when_free(
        self: &Arc<Self>,
        name: &str,
        gone: bool,
        was: Option<config::Source>,
    ) {
        let claim = loop {
            if let Some(claim) = self.claim(name) {
                break claim;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        self.stop_plugin(name).await;
        if gone {
            super::lock(&self.placed).remove(name);
            self.log
                .info(name, "removed from the config: stopped once its load ended")
                .await;
        } else if let Some(entry) = self.entry(name) {
            self.set_old_copy_aside(&entry, was).await;
            self.load(&entry).await;
        }
        drop(claim);
    }

    /// A plugin with a new source must not run its old copy (a local
    /// source is never copied over): the old copy is kept aside.
    async fn set_old_copy_aside(&self, entry: &PluginEntry, was: Option<config::Source>) {
        if was.is_none_or(|w| w == entry.source) {
            return;
        }
        let copy = self.home.ext().join(&entry.name);
        let aside = self.home.ext().join(format!("{}.old", entry.name));
        let _ = std::fs::remove_dir_all(&aside);
        if !copy.exists() {
            return;
        }
        match std::fs::rename(&copy, &aside) {
            Ok(()) => {
                let said = format!("new source; the old copy is kept as {}", aside.display());
                self.log.info(&entry.name, said).await
            }
            Err(e) => {
                let said = format!("new source, but the old copy could not be moved aside: {e}");
                self.log.warn(&entry.name, said).await
            }
        }
    }
}
