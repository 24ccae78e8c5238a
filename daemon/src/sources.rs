//! Model sources: a local directory in Hugging Face layout, or a hub id
//! resolved into the standard Hugging Face cache (the one Python uses, so
//! models it downloaded are reused). Offline, only the cache is consulted and
//! a missing model fails at once with what to do about it.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::{Cache, Repo, RepoType};

use crate::access::LoadPolicy;
use crate::error::{DaemonError, Result};
use crate::hub::Hub;

/// How long to wait for the hub before treating it as unreachable.
const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Sources {
    offline: bool,
    cache: Cache,
    /// The hub probe's answer, asked once.
    reachable: std::sync::OnceLock<bool>,
    /// What a client's LoadModel may name.
    policy: LoadPolicy,
    /// Downloads (HF_ENDPOINT, token, proxies, CA bundles).
    hub: Hub,
}

/// Who asks for a source: the operator (start-up models) may name any; a
/// client (LoadModel) is held to the [`LoadPolicy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Caller {
    Operator,
    #[default]
    Client,
}

impl Sources {
    pub fn new(offline: bool, policy: LoadPolicy) -> anyhow::Result<Self> {
        let cache = match std::env::var_os("HF_HUB_CACHE") {
            Some(dir) => Cache::new(PathBuf::from(dir)),
            None => Cache::from_env(),
        };
        Ok(Sources {
            offline,
            cache,
            reachable: std::sync::OnceLock::new(),
            policy,
            hub: Hub::from_env()?,
        })
    }

    /// Where downloads come from (HF_ENDPOINT).
    pub fn endpoint(&self) -> &str {
        self.hub.endpoint()
    }

    pub fn cache_dir(&self) -> &Path {
        self.cache.path()
    }

    /// True when `source` names a local path rather than a hub id.
    pub fn is_local(source: &str) -> bool {
        source.starts_with('/')
            || source.starts_with("./")
            || source.starts_with("../")
            || source.starts_with('~')
            || Path::new(source).is_dir()
            || source.split('/').count() > 2
    }

    /// A local directory holding the model's files.
    pub fn resolve(&self, source: &str, revision: Option<&str>, caller: Caller) -> Result<PathBuf> {
        if source.is_empty() {
            return Err(DaemonError::InvalidArgument(
                "`source` is empty: give a hub id or a local model directory".into(),
            ));
        }
        if Self::is_local(source) {
            // A client's path is loaded as judged: resolved once, here.
            let judged = match caller {
                Caller::Client => self.policy.check_local(source)?,
                Caller::Operator => None,
            };
            let path = judged.unwrap_or_else(|| PathBuf::from(source));
            return if path.is_dir() {
                Ok(path)
            } else {
                Err(DaemonError::NotFound(format!(
                    "model directory {source} does not exist"
                )))
            };
        }
        let revision = revision.unwrap_or("main");
        check_hub_names(source, revision)?;
        let repo = Repo::with_revision(source.to_string(), RepoType::Model, revision.to_string());
        if let Some(config) = self.cache.repo(repo.clone()).get("config.json") {
            let dir = config.parent().expect("a file has a parent").to_path_buf();
            // A ref file names the snapshot: it must stay inside the cache.
            let inside = match (dir.canonicalize(), self.cache.path().canonicalize()) {
                (Ok(dir), Ok(cache)) => dir.starts_with(cache),
                _ => false,
            };
            if !inside {
                return Err(DaemonError::FailedPrecondition(format!(
                    "the Hugging Face cache's entry for {source} (revision {revision}) points outside the cache at {}",
                    self.cache.path().display()
                )));
            }
            tracing::info!(model = source, "using the Hugging Face cache: {}", dir.display());
            return Ok(dir);
        }
        if caller == Caller::Client && !self.policy.client_downloads {
            return Err(DaemonError::PermissionDenied(format!(
                "model {source} (revision {revision}) is not in the Hugging Face cache, and this daemon does not \
                 download models for clients (--no-client-downloads): ask its operator to add it"
            )));
        }
        let why_not = if self.offline {
            Some("offline mode is on (HF_HUB_OFFLINE=1 or --offline)".to_string())
        } else if !*self.reachable.get_or_init(hub_reachable) {
            Some(format!("the hub ({}) cannot be reached", self.hub.endpoint()))
        } else {
            None
        };
        if let Some(why_not) = why_not {
            return Err(DaemonError::NotFound(format!(
                "model {source} (revision {revision}) is not in the Hugging Face cache at {} and {why_not}. \
                 Download it where the hub is reachable (`huggingface-cli download {source}`, or load it once \
                 with transformers) and copy the cache, or pass a local model directory as the source",
                self.cache.path().display()
            )));
        }
        let dir = self
            .hub
            .download(self.cache.path(), source, revision, files_to_download)?;
        if !dir.join("config.json").is_file() {
            return Err(DaemonError::FailedPrecondition(format!(
                "hub repository {source} has no config.json"
            )));
        }
        Ok(dir)
    }
}

/// The files of a hub repository inferd needs: configs, tokenizer and
/// processor files, and one format of weights (safetensors when present).
fn files_to_download(files: &[String]) -> Vec<String> {
    let has_safetensors = files.iter().any(|f| f.ends_with(".safetensors") && !f.contains('/'));
    files
        .iter()
        .filter(|f| {
            let top_level = !f.contains('/');
            let pooling = f.starts_with("1_Pooling/") || f.starts_with("2_Normalize/");
            let metadata = f.ends_with(".json") || f.ends_with(".txt") || f.ends_with(".model") || f.ends_with(".spm");
            let weights = if has_safetensors {
                f.ends_with(".safetensors")
            } else {
                f.starts_with("pytorch_model") && f.ends_with(".bin")
            };
            (top_level && (metadata || weights)) || (pooling && f.ends_with(".json"))
        })
        .cloned()
        .collect()
}

/// INVALID_ARGUMENT unless `id` reads as a hub id (`name` or `org/name`)
/// and `revision` as a branch, tag or commit: names of letters, digits,
/// `.`, `_` and `-` (a revision may have `/`), never `..`. Both become
/// paths in the cache.
fn check_hub_names(id: &str, revision: &str) -> Result<()> {
    let name_ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !id.split('/').all(name_ok) || id.split('/').count() > 2 {
        return Err(DaemonError::InvalidArgument(format!(
            "{id:?} is neither a local directory nor a hub id (ORG/NAME of letters, digits, '.', '_', '-')"
        )));
    }
    if revision.len() > 256 || !revision.split('/').all(name_ok) {
        return Err(DaemonError::InvalidArgument(format!(
            "revision {revision:?} is not a branch, tag or commit name (letters, digits, '.', '_', '-' and '/')"
        )));
    }
    Ok(())
}

/// A quick TCP probe of the hub, bounded in time (DNS included). Behind a
/// proxy the hub may not be reachable directly: the download says then.
fn hub_reachable() -> bool {
    if crate::hub::proxy_from_env().is_some() {
        return true;
    }
    let endpoint = crate::hub::endpoint();
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let port = if endpoint.starts_with("http://") { 80 } else { 443 };
    let target = if host.contains(':') {
        host
    } else {
        format!("{host}:{port}")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ok = target
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, HUB_PROBE_TIMEOUT).is_ok());
        let _ = tx.send(ok);
    });
    rx.recv_timeout(HUB_PROBE_TIMEOUT * 2).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_safetensors_over_bin_and_skips_other_formats() {
        let files: Vec<String> = [
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "tf_model.h5",
            "onnx/model.onnx",
            "tokenizer.json",
            "vocab.txt",
            "1_Pooling/config.json",
            "README.md",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let wanted = files_to_download(&files);
        assert_eq!(
            wanted,
            vec![
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "vocab.txt",
                "1_Pooling/config.json"
            ]
        );
        let bin_only: Vec<String> = ["config.json", "pytorch_model.bin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(files_to_download(&bin_only), bin_only);
    }

    #[test]
    fn offline_and_uncached_fails_fast_naming_the_model() {
        let cache = tempfile::tempdir().unwrap();
        let sources = Sources {
            offline: true,
            cache: Cache::new(cache.path().to_path_buf()),
            reachable: std::sync::OnceLock::new(),
            policy: LoadPolicy::default(),
            hub: Hub::from_env().unwrap(),
        };
        let started = std::time::Instant::now();
        let err = sources
            .resolve("someone/some-model", None, Caller::Operator)
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.contains("someone/some-model") && err.contains("offline"), "{err}");
        let err = sources.resolve("/no/such/dir", None, Caller::Client).unwrap_err();
        assert!(matches!(err, DaemonError::NotFound(_)));
    }

    #[test]
    fn hub_ids_and_revisions_are_names_not_paths() {
        for (id, revision) in [("org/name", "main"), ("gpt2", "v1.0"), ("a-b/c_d.e", "refs/pr/1")] {
            assert!(check_hub_names(id, revision).is_ok(), "{id} {revision}");
        }
        for (id, revision) in [
            ("org/name", "/etc"),
            ("org/name", "../../x"),
            ("org/name", "a//b"),
            ("org/..", "main"),
            ("org/na me", "main"),
            ("org/name", ""),
        ] {
            assert!(
                matches!(check_hub_names(id, revision), Err(DaemonError::InvalidArgument(_))),
                "{id} {revision}"
            );
        }
    }

    #[test]
    fn clients_are_held_to_the_policy_and_the_operator_is_not() {
        let cache = tempfile::tempdir().unwrap();
        let allowed = tempfile::tempdir().unwrap();
        let sources = Sources {
            offline: false,
            cache: Cache::new(cache.path().to_path_buf()),
            reachable: std::sync::OnceLock::new(),
            policy: LoadPolicy::new(&[allowed.path().to_path_buf()], false).unwrap(),
            hub: Hub::from_env().unwrap(),
        };
        let denied = |r: Result<PathBuf>| matches!(r, Err(DaemonError::PermissionDenied(_)));
        assert!(denied(sources.resolve("/tmp", None, Caller::Client)));
        assert!(denied(sources.resolve("someone/some-model", None, Caller::Client)));
        assert_eq!(
            sources
                .resolve(&allowed.path().display().to_string(), None, Caller::Client)
                .unwrap(),
            allowed.path()
        );
        assert_eq!(
            sources.resolve("/tmp", None, Caller::Operator).unwrap(),
            Path::new("/tmp")
        );
    }
}
