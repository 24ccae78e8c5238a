//! Model sources: a local directory in Hugging Face layout, or a hub id
//! resolved into the standard Hugging Face cache (the one Python uses, so
//! models it downloaded are reused). Offline, only the cache is consulted and
//! a missing model fails at once with what to do about it.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::{api::sync::ApiBuilder, Cache, Repo, RepoType};

use crate::access::LoadPolicy;
use crate::error::{DaemonError, Result};

/// How long to wait for the hub before treating it as unreachable.
const HUB_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Sources {
    offline: bool,
    cache: Cache,
    /// The hub probe's answer, asked once.
    reachable: std::sync::OnceLock<bool>,
    /// What a client's LoadModel may name.
    policy: LoadPolicy,
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
    pub fn new(offline: bool, policy: LoadPolicy) -> Self {
        let cache = match std::env::var_os("HF_HUB_CACHE") {
            Some(dir) => Cache::new(PathBuf::from(dir)),
            None => Cache::from_env(),
        };
        Sources {
            offline,
            cache,
            reachable: std::sync::OnceLock::new(),
            policy,
        }
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
            if caller == Caller::Client {
                self.policy.check_local(source)?;
            }
            let path = PathBuf::from(source);
            return if path.is_dir() {
                Ok(path)
            } else {
                Err(DaemonError::NotFound(format!(
                    "model directory {source} does not exist"
                )))
            };
        }
        let revision = revision.unwrap_or("main");
        let repo = Repo::with_revision(source.to_string(), RepoType::Model, revision.to_string());
        if let Some(config) = self.cache.repo(repo.clone()).get("config.json") {
            tracing::info!(
                model = source,
                "using the Hugging Face cache: {}",
                config.parent().unwrap_or(Path::new("")).display()
            );
            return Ok(config.parent().expect("a file has a parent").to_path_buf());
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
            Some(format!("the hub ({}) cannot be reached", hub_endpoint()))
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
        self.download(source, repo)
    }

    fn download(&self, source: &str, repo: Repo) -> Result<PathBuf> {
        let unavailable =
            |e: hf_hub::api::sync::ApiError| DaemonError::NotFound(format!("cannot fetch {source} from the hub: {e}"));
        let api = ApiBuilder::from_cache(Cache::new(self.cache.path().clone()))
            .with_progress(false)
            .build()
            .map_err(unavailable)?;
        let api_repo = api.repo(repo);
        let info = api_repo.info().map_err(unavailable)?;
        let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let wanted = files_to_download(&files);
        tracing::info!(model = source, files = wanted.len(), "downloading from the hub");
        let mut dir = None;
        for file in wanted {
            let path = api_repo.get(&file).map_err(unavailable)?;
            if file == "config.json" {
                dir = path.parent().map(Path::to_path_buf);
            }
        }
        dir.ok_or_else(|| DaemonError::FailedPrecondition(format!("hub repository {source} has no config.json")))
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

fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string())
}

/// A quick TCP probe of the hub, bounded in time (DNS included).
fn hub_reachable() -> bool {
    let endpoint = hub_endpoint();
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
    fn clients_are_held_to_the_policy_and_the_operator_is_not() {
        let cache = tempfile::tempdir().unwrap();
        let allowed = tempfile::tempdir().unwrap();
        let sources = Sources {
            offline: false,
            cache: Cache::new(cache.path().to_path_buf()),
            reachable: std::sync::OnceLock::new(),
            policy: LoadPolicy::new(&[allowed.path().to_path_buf()], false).unwrap(),
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
