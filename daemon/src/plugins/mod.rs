//! The plugin host: finds plugin libraries, checks their ABI version, reads
//! their manifests, and wraps their C functions in safe calls. It knows
//! nothing of scheduling; the scheduler calls `load`/`run` on worker threads.

pub mod child;
mod library;

pub use child::ChildInstance;
pub use library::{BatchHost, InstanceHandle, Plugin};

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inferd_sdk::proto::TaskSpec;

/// The loaded plugins and the tasks they serve.
#[derive(Default)]
pub struct PluginSet {
    plugins: Vec<Arc<Plugin>>,
    /// Canonical task name -> (plugin, spec).
    tasks: BTreeMap<String, (Arc<Plugin>, TaskSpec)>,
    /// Alias -> canonical task name.
    aliases: BTreeMap<String, String>,
}

impl PluginSet {
    /// Loads every plugin found in `dirs`, in order. Problems with one file
    /// (unsafe permissions, wrong ABI, duplicate task) are logged and skip it.
    pub fn discover(dirs: &[PathBuf]) -> Self {
        let mut set = PluginSet::default();
        for dir in dirs {
            if let Err(reason) = check_permissions(dir) {
                tracing::error!(dir = %dir.display(), "refusing plugin directory: {reason}");
                continue;
            }
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "cannot read plugin directory: {e}");
                    continue;
                }
            };
            entries.sort();
            for path in entries {
                if path.extension().and_then(|e| e.to_str()) != Some(std::env::consts::DLL_EXTENSION) {
                    continue;
                }
                set.try_add(&path);
            }
        }
        set
    }

    fn try_add(&mut self, path: &Path) {
        if let Err(reason) = check_permissions(path) {
            tracing::error!(path = %path.display(), "refusing plugin: {reason}");
            return;
        }
        if self.plugins.iter().any(|p| p.path.file_name() == path.file_name()) {
            tracing::warn!(path = %path.display(), "skipping plugin: a library of the same name is already loaded");
            return;
        }
        let plugin = match Plugin::open(path) {
            Ok(Some(plugin)) => Arc::new(plugin),
            Ok(None) => {
                tracing::debug!(path = %path.display(), "not an inferd plugin (no entry symbol), skipped");
                return;
            }
            Err(reason) => {
                tracing::error!(path = %path.display(), "refusing plugin: {reason}");
                return;
            }
        };
        for spec in &plugin.manifest.tasks {
            if let Some((owner, _)) = self.tasks.get(&spec.name) {
                tracing::warn!(
                    task = %spec.name,
                    "plugin {} also serves task {}, already served by plugin {}; keeping the first",
                    plugin.manifest.name, spec.name, owner.manifest.name
                );
                continue;
            }
            self.tasks.insert(spec.name.clone(), (plugin.clone(), spec.clone()));
            for alias in &spec.aliases {
                self.aliases.insert(alias.clone(), spec.name.clone());
            }
        }
        let tasks: Vec<&str> = plugin.manifest.tasks.iter().map(|t| t.name.as_str()).collect();
        tracing::info!(
            plugin = %plugin.manifest.name,
            version = %plugin.manifest.version,
            path = %plugin.path.display(),
            "loaded plugin serving {}",
            tasks.join(", ")
        );
        self.plugins.push(plugin);
    }

    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// The canonical name of a task or alias, if some plugin serves it.
    pub fn canonical_task(&self, name: &str) -> Option<&str> {
        if let Some((k, _)) = self.tasks.get_key_value(name) {
            return Some(k.as_str());
        }
        self.aliases.get(name).map(|s| s.as_str())
    }

    pub fn task(&self, name: &str) -> Option<(&Arc<Plugin>, &TaskSpec)> {
        let canonical = self.canonical_task(name)?;
        self.tasks.get(canonical).map(|(p, s)| (p, s))
    }

    pub fn tasks(&self) -> impl Iterator<Item = (&Arc<Plugin>, &TaskSpec)> {
        self.tasks.values().map(|(p, s)| (p, s))
    }

    pub fn task_names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }
}

/// Refuses files and directories that users other than the owner can write:
/// loading a plugin runs its code inside the daemon.
fn check_permissions(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{e}"))?;
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by {} (mode {:o}); run `chmod go-w {}`",
            if mode & 0o002 != 0 { "everyone" } else { "its group" },
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_world_writable_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_permissions(&file).is_ok());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(check_permissions(&file).unwrap_err().contains("group"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
        assert!(check_permissions(&file).unwrap_err().contains("everyone"));
    }
}
