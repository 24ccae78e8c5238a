//! Downloads from the Hugging Face hub, or the mirror `HF_ENDPOINT` names,
//! through one HTTP client, into the cache in huggingface_hub's layout
//! (`models--ORG--NAME/{blobs,snapshots,refs}`), so that Python and inferd
//! reuse each other's downloads.
//!
//! - Every request goes to `HF_ENDPOINT` (default https://huggingface.co),
//!   with `HF_TOKEN` (or the token file huggingface_hub writes) as a bearer
//!   token; 401 and 403 say what to do about them.
//! - TLS trusts the system's roots plus `SSL_CERT_FILE`,
//!   `REQUESTS_CA_BUNDLE` and `CURL_CA_BUNDLE` (a TLS-inspecting proxy's CA);
//!   `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` are used for hosts that
//!   `NO_PROXY` does not list.
//! - A revision (branch, tag or commit) is resolved to its commit by the
//!   hub's API; files are fetched by commit.
//! - A file is written to `blobs/ETAG.incomplete` and resumed from there
//!   (an HTTP range) when a download was cut off; large ones log their
//!   progress (bytes, rate, time left).
//! - Loads of one repository wait for each other, so each file is fetched
//!   once.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_rustls::rustls;

use crate::error::{DaemonError, Result};

/// Files at least this large log their progress.
const PROGRESS_BYTES: u64 = 16 << 20;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub struct Hub {
    endpoint: String,
    token: Option<String>,
    /// Follows redirects (file contents may live on a CDN).
    agent: ureq::Agent,
    /// Does not: a file's metadata is on the hub's own answer.
    head_agent: ureq::Agent,
    /// The same two through the proxy, for hosts NO_PROXY does not list.
    proxied: Option<(ureq::Agent, ureq::Agent)>,
    no_proxy: Vec<String>,
    /// One lock per repository being downloaded.
    repos: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// What the API says of a revision.
#[derive(serde::Deserialize)]
struct RevisionInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

impl Hub {
    /// The client the environment describes.
    pub fn from_env() -> anyhow::Result<Hub> {
        let tls = Arc::new(client_tls()?);
        let build = |proxy: Option<&ureq::Proxy>, redirects: u32| {
            let mut builder = ureq::AgentBuilder::new()
                .tls_config(tls.clone())
                .timeout_connect(Duration::from_secs(10))
                .timeout_read(Duration::from_secs(60))
                .redirects(redirects);
            if let Some(proxy) = proxy {
                builder = builder.proxy(proxy.clone());
            }
            builder.build()
        };
        let proxy = proxy_from_env()
            .map(|url| ureq::Proxy::new(&url).map_err(|e| anyhow::anyhow!("proxy {url}: {e}")))
            .transpose()?;
        let no_proxy = ["NO_PROXY", "no_proxy"]
            .iter()
            .find_map(|var| std::env::var(var).ok())
            .map(|list| {
                list.split(',')
                    .map(|h| h.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Hub {
            endpoint: endpoint(),
            token: token(),
            agent: build(None, 8),
            head_agent: build(None, 0),
            proxied: proxy.as_ref().map(|p| (build(Some(p), 8), build(Some(p), 0))),
            no_proxy,
            repos: Mutex::new(HashMap::new()),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The agents for `url`: through the proxy unless NO_PROXY lists its host.
    fn agents(&self, url: &str) -> (&ureq::Agent, &ureq::Agent) {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bypass = self
            .no_proxy
            .iter()
            .any(|h| h == "*" || host == *h || host.ends_with(&format!(".{h}")));
        match &self.proxied {
            Some((agent, head)) if !bypass => (agent, head),
            _ => (&self.agent, &self.head_agent),
        }
    }

    fn request(&self, agent: &ureq::Agent, method: &str, url: &str) -> ureq::Request {
        let request = agent
            .request(method, url)
            .set("User-Agent", concat!("inferd/", env!("CARGO_PKG_VERSION")));
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// Downloads the files `wanted` picks of `repo` at `revision` into the
    /// cache at `cache`; returns the snapshot directory.
    pub fn download(
        &self,
        cache: &Path,
        repo: &str,
        revision: &str,
        wanted: impl Fn(&[String]) -> Vec<String>,
    ) -> Result<PathBuf> {
        let lock = self
            .repos
            .lock()
            .expect("lock")
            .entry(repo.to_string())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().expect("lock");
        let url = format!("{}/api/models/{repo}/revision/{}", self.endpoint, encode(revision));
        let info: RevisionInfo = self
            .request(self.agents(&url).0, "GET", &url)
            .call()
            .map_err(|e| failure(e, repo, revision, None))?
            .into_json()
            .map_err(|e| DaemonError::Unavailable(format!("{url}: not the hub's answer: {e}")))?;
        let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
        let io = |what: &str, e: std::io::Error| {
            DaemonError::Internal(format!("{what} in the cache {}: {e}", repo_dir.display()))
        };
        if revision != info.sha {
            std::fs::create_dir_all(repo_dir.join("refs")).map_err(|e| io("cannot write refs", e))?;
            std::fs::write(repo_dir.join("refs").join(revision), &info.sha).map_err(|e| io("cannot write refs", e))?;
        }
        let snapshot = repo_dir.join("snapshots").join(&info.sha);
        let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let mut wanted = wanted(&files);
        // config.json last: the cache counts a snapshot with it as complete,
        // so a download cut off before the end is resumed, not taken as done.
        wanted.sort_by_key(|f| f == "config.json");
        tracing::info!(model = repo, revision, commit = %info.sha, files = wanted.len(), endpoint = %self.endpoint, "downloading from the hub");
        for file in &wanted {
            if file.split('/').any(|part| part == ".." || part.is_empty()) {
                return Err(DaemonError::FailedPrecondition(format!(
                    "hub repository {repo} lists a bad file name {file:?}"
                )));
            }
            let link = snapshot.join(file);
            if link.exists() {
                continue;
            }
            self.fetch(&repo_dir, repo, &info.sha, file, &link)?;
        }
        Ok(snapshot)
    }

    /// One file of a commit: its blob (downloaded or resumed unless the
    /// cache has it) and the snapshot's link to it.
    fn fetch(&self, repo_dir: &Path, repo: &str, commit: &str, file: &str, link: &Path) -> Result<()> {
        let url = format!(
            "{}/{repo}/resolve/{commit}/{}",
            self.endpoint,
            file.split('/').map(encode).collect::<Vec<_>>().join("/")
        );
        let (agent, head_agent) = self.agents(&url);
        let head = self
            .request(head_agent, "HEAD", &url)
            .call()
            .map_err(|e| failure(e, repo, commit, Some(file)))?;
        let header = |name: &str| head.header(name).map(str::to_string);
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\']))
            .ok_or_else(|| DaemonError::Unavailable(format!("{url}: no ETag in the hub's answer")))?;
        let size: Option<u64> = header("x-linked-size")
            .or_else(|| header("content-length"))
            .and_then(|s| s.parse().ok());
        let io = |what: &str, e: std::io::Error| DaemonError::Internal(format!("{what} {}: {e}", repo_dir.display()));
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| io("cannot write to the cache", e))?;
        let blob = blobs.join(&etag);
        if !blob.is_file() {
            let partial = blobs.join(format!("{etag}.incomplete"));
            let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
            let mut request = self.request(agent, "GET", &url);
            if have > 0 {
                request = request.set("Range", &format!("bytes={have}-"));
            }
            let response = request.call().map_err(|e| failure(e, repo, commit, Some(file)))?;
            let resumed = response.status() == 206;
            if have > 0 {
                tracing::info!(
                    model = repo,
                    file,
                    from = have,
                    resumed,
                    "resuming a download that was cut off"
                );
            }
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(resumed)
                .truncate(!resumed)
                .open(&partial)
                .map_err(|e| io("cannot write to the cache", e))?;
            let start = if resumed { have } else { 0 };
            copy_with_progress(&mut response.into_reader(), &mut out, start, size, repo, file).map_err(|e| {
                DaemonError::Unavailable(format!(
                    "downloading {file} of {repo} was cut off ({e}); loading it again resumes where it stopped"
                ))
            })?;
            let got = out.metadata().map_or(0, |m| m.len());
            if size.is_some_and(|s| s != got) {
                return Err(DaemonError::Unavailable(format!(
                    "downloading {file} of {repo} stopped at {got} of {} bytes; loading it again resumes where it stopped",
                    size.unwrap_or_default()
                )));
            }
            std::fs::rename(&partial, &blob).map_err(|e| io("cannot write to the cache", e))?;
        }
        // The snapshot's entry: a relative link to the blob, as Python makes.
        let parent = link.parent().expect("a file in a snapshot");
        std::fs::create_dir_all(parent).map_err(|e| io("cannot write to the cache", e))?;
        let depth = file.matches('/').count() + 2;
        let target = PathBuf::from("../".repeat(depth)).join("blobs").join(&etag);
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&target, link).map_err(|e| io("cannot link in the cache", e))?;
        Ok(())
    }
}

/// Copies the body, logging progress of large files every few seconds.
fn copy_with_progress(
    from: &mut impl Read,
    to: &mut impl Write,
    start: u64,
    size: Option<u64>,
    repo: &str,
    file: &str,
) -> std::io::Result<()> {
    let began = Instant::now();
    let mut last = began;
    let mut done = start;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            return to.flush();
        }
        to.write_all(&buffer[..n])?;
        done += n as u64;
        if size.is_some_and(|s| s >= PROGRESS_BYTES) && last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            let total = size.unwrap_or_default();
            let rate = (done - start) as f64 / began.elapsed().as_secs_f64().max(1e-3);
            let left = total.saturating_sub(done) as f64 / rate.max(1.0);
            tracing::info!(
                model = repo,
                file,
                "downloading: {:.1} of {:.1} MB, {:.1} MB/s, about {:.0} s left",
                done as f64 / 1e6,
                total as f64 / 1e6,
                rate / 1e6,
                left
            );
        }
    }
}

/// A failed request as the error the client sees, saying what to do.
fn failure(e: ureq::Error, repo: &str, revision: &str, file: Option<&str>) -> DaemonError {
    let what = match file {
        Some(file) => format!("{file} of model {repo}"),
        None => format!("model {repo} (revision {revision})"),
    };
    match e {
        ureq::Error::Status(401, _) => DaemonError::Unauthenticated(format!(
            "the hub refused {what} without a valid token: it is private, gated or does not exist. \
             Set HF_TOKEN (or run `huggingface-cli login`) with a token that can read it"
        )),
        ureq::Error::Status(403, _) => DaemonError::PermissionDenied(format!(
            "the hub refused {what} to this token: accept the model's conditions on its page, \
             or use a token with access to it"
        )),
        ureq::Error::Status(404, _) => {
            DaemonError::NotFound(format!("the hub has no {what}: check the id and the revision"))
        }
        ureq::Error::Status(code, _) => DaemonError::Unavailable(format!("the hub answered {code} for {what}")),
        ureq::Error::Transport(t) => DaemonError::Unavailable(format!("cannot reach the hub for {what}: {t}")),
    }
}

/// Percent-encodes a path segment (revisions may hold `/`).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The proxy the environment names (HTTPS_PROXY, then ALL_PROXY, then
/// HTTP_PROXY, each in either case), if any.
pub fn proxy_from_env() -> Option<String> {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .iter()
    .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

/// HF_ENDPOINT, without a trailing slash.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

/// HF_TOKEN, else the token file (HF_TOKEN_PATH, else HF_HOME's `token`).
fn token() -> Option<String> {
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Some(token.trim().to_string());
    }
    let path = std::env::var_os("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))?;
        Some(home.join("token"))
    })?;
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The system's roots plus the CA bundles the environment names.
fn client_tls() -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for var in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
        let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
            continue;
        };
        let path = Path::new(&path);
        let certs = crate::tls::pem_certificates(path).map_err(|e| anyhow::anyhow!("{var}: {e:#}"))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("{var}={}: {e}", path.display()))?;
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode("main"), "main");
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode("a b"), "a%20b");
    }
}
