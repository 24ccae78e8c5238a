//! Who may do what. Keys: with an API key set, inference and reading the
//! model list take `authorization: Bearer <key>`; with an admin key set,
//! LoadModel and UnloadModel take that one (which also serves for the rest).
//! Health and reflection stay open, as does the metrics listener. And which
//! sources a client's LoadModel may name: local directories inside the
//! allowed ones, hub ids only when clients may download. Start-up models
//! (the operator's) are not restricted.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::error::DaemonError;

/// A key, kept out of logs and `Debug` output.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Secret {
    /// A key as given (surrounding white space dropped, as a key file's
    /// final newline); `what` names it in errors.
    pub fn new(key: &str, what: &str) -> anyhow::Result<Self> {
        let key = key.trim();
        if key.is_empty() {
            anyhow::bail!("the {what} is empty");
        }
        // It travels in an HTTP/2 header: printable ASCII, no spaces.
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            anyhow::bail!("the {what} must be printable ASCII without spaces");
        }
        Ok(Secret(key.as_bytes().to_vec()))
    }

    /// The key from a flag (or its environment variable) or else a file.
    pub fn load(value: Option<&str>, file: Option<&Path>, what: &str) -> anyhow::Result<Option<Self>> {
        if let Some(value) = value {
            return Secret::new(value, what).map(Some);
        }
        let Some(file) = file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", file.display()))?;
        Secret::new(&text, &format!("{what} in {}", file.display())).map(Some)
    }

    /// Whether `presented` is this key, in time that depends only on the
    /// lengths.
    fn matches(&self, presented: &[u8]) -> bool {
        if presented.len() != self.0.len() {
            return false;
        }
        let difference = self.0.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// The keys a daemon asks for; none set: everything is open.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub api: Option<Secret>,
    pub admin: Option<Secret>,
}

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Health and reflection: nothing.
    Open,
    /// Inference and reading the model list: the API key.
    Use,
    /// Loading and unloading models: the admin key.
    Manage,
}

/// The right the gRPC method at `path` (`/package.Service/Method`) needs.
pub fn right_for(path: &str) -> Right {
    const KSERVE_PROBES: [&str; 3] = [
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
        "/inference.GRPCInferenceService/ModelReady",
    ];
    if path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.") || KSERVE_PROBES.contains(&path) {
        Right::Open
    } else if matches!(
        path,
        "/inferd.v1.Models/LoadModel"
            | "/inferd.v1.Models/UnloadModel"
            | "/inference.GRPCInferenceService/RepositoryModelLoad"
            | "/inference.GRPCInferenceService/RepositoryModelUnload"
    ) {
        Right::Manage
    } else {
        Right::Use
    }
}

impl Keys {
    /// Whether a request with this `authorization` header value may do what
    /// `right` covers: UNAUTHENTICATED without a valid key, PERMISSION_DENIED
    /// with the API key where the admin key is needed. Messages never
    /// repeat the key.
    pub fn check(&self, right: Right, authorization: Option<&[u8]>) -> Result<(), DaemonError> {
        let needed = match right {
            Right::Open => return Ok(()),
            // Without an admin key, the API key manages too.
            Right::Manage if self.admin.is_some() => "admin",
            _ if self.api.is_some() => "API",
            _ => return Ok(()),
        };
        let Some(header) = authorization else {
            return Err(DaemonError::Unauthenticated(format!(
                "this daemon needs an {needed} key: send the metadata `authorization: Bearer <key>` \
                 (inferctl --api-key, or INFERD_API_KEY)"
            )));
        };
        let key = bearer(header).ok_or_else(|| {
            DaemonError::Unauthenticated("the authorization metadata must read `Bearer <key>`".into())
        })?;
        let is = |secret: &Option<Secret>| secret.as_ref().is_some_and(|s| s.matches(key));
        let (admin, api) = (is(&self.admin), is(&self.api));
        match (needed, admin, api) {
            (_, true, _) | ("API", _, true) => Ok(()),
            ("admin", false, true) => Err(DaemonError::PermissionDenied(
                "loading and unloading models takes the admin key; this is the API key".into(),
            )),
            _ => Err(DaemonError::Unauthenticated(
                "the key sent is not valid for this daemon".into(),
            )),
        }
    }
}

/// The key of an `authorization: Bearer <key>` value (the scheme in any case).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, key) = header.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !key.is_empty()).then_some(key)
}

/// Which sources a client's LoadModel may name.
#[derive(Clone, Debug)]
pub struct LoadPolicy {
    /// Canonical directories local sources must be inside; empty: any.
    allowed_dirs: Vec<PathBuf>,
    /// Whether a client's hub id may be downloaded (else: the cache only).
    pub client_downloads: bool,
}

impl Default for LoadPolicy {
    fn default() -> Self {
        LoadPolicy {
            allowed_dirs: vec![],
            client_downloads: true,
        }
    }
}

impl LoadPolicy {
    /// The policy for these directories (each must exist).
    pub fn new(allowed_dirs: &[PathBuf], client_downloads: bool) -> anyhow::Result<Self> {
        let allowed_dirs = allowed_dirs
            .iter()
            .map(|dir| {
                let canonical = dir
                    .canonicalize()
                    .map_err(|e| anyhow::anyhow!("--allow-model-dir {}: {e}", dir.display()))?;
                anyhow::ensure!(
                    canonical.is_dir(),
                    "--allow-model-dir {}: not a directory",
                    dir.display()
                );
                Ok(canonical)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(LoadPolicy {
            allowed_dirs,
            client_downloads,
        })
    }

    /// PERMISSION_DENIED unless the local `source` is inside an allowed
    /// directory once `..` and symbolic links are resolved (a path that
    /// does not exist yet is judged by its nearest existing parent). The
    /// path as judged, to load that and nothing else; None when any is.
    pub fn check_local(&self, source: &str) -> Result<Option<PathBuf>, DaemonError> {
        if self.allowed_dirs.is_empty() {
            return Ok(None);
        }
        let judged = resolved(Path::new(source));
        if let Some(path) = judged.filter(|path| self.allowed_dirs.iter().any(|dir| path.starts_with(dir))) {
            return Ok(Some(path));
        }
        let allowed: Vec<String> = self.allowed_dirs.iter().map(|d| d.display().to_string()).collect();
        Err(DaemonError::PermissionDenied(format!(
            "{source} is outside the directories this daemon loads client models from ({}; \
             --allow-model-dir)",
            allowed.join(", ")
        )))
    }
}

/// `path` with `..` and symbolic links resolved: its canonical form, or that
/// of its nearest existing parent plus the names after it (None when a `..`
/// follows a directory that does not exist).
fn resolved(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut canonical) = existing.canonicalize() {
            canonical.extend(rest.iter().rev());
            return Some(canonical);
        }
        match existing.components().next_back()? {
            Component::Normal(name) => rest.push(name.to_os_string()),
            _ => return None,
        }
        existing.pop();
        if existing.as_os_str().is_empty() {
            existing = PathBuf::from(".");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(api: Option<&str>, admin: Option<&str>) -> Keys {
        Keys {
            api: api.map(|k| Secret::new(k, "key").unwrap()),
            admin: admin.map(|k| Secret::new(k, "key").unwrap()),
        }
    }

    fn code<T>(result: Result<T, DaemonError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(DaemonError::Unauthenticated(_)) => "unauthenticated",
            Err(DaemonError::PermissionDenied(_)) => "denied",
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn methods_need_their_rights() {
        assert_eq!(right_for("/grpc.health.v1.Health/Check"), Right::Open);
        assert_eq!(
            right_for("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Right::Open
        );
        assert_eq!(right_for("/inferd.v1.Inference/Classify"), Right::Use);
        assert_eq!(right_for("/inferd.v1.Models/ListModels"), Right::Use);
        assert_eq!(right_for("/inferd.v1.Models/LoadModel"), Right::Manage);
        assert_eq!(right_for("/inferd.v1.Models/UnloadModel"), Right::Manage);
        assert_eq!(right_for("/something.Else/Method"), Right::Use);
        let kserve = |method: &str| right_for(&format!("/inference.GRPCInferenceService/{method}"));
        for probe in ["ServerLive", "ServerReady", "ModelReady"] {
            assert_eq!(kserve(probe), Right::Open, "{probe}");
        }
        for used in ["ServerMetadata", "ModelMetadata", "ModelInfer"] {
            assert_eq!(kserve(used), Right::Use, "{used}");
        }
        assert_eq!(kserve("RepositoryModelLoad"), Right::Manage);
        assert_eq!(kserve("RepositoryModelUnload"), Right::Manage);
    }

    #[test]
    fn keys_grant_what_they_should() {
        let both = keys(Some("use-key"), Some("admin-key"));
        let h = |s: &'static str| Some(s.as_bytes());
        assert_eq!(code(both.check(Right::Use, h("Bearer use-key"))), "ok");
        assert_eq!(code(both.check(Right::Use, h("bearer admin-key"))), "ok");
        assert_eq!(code(both.check(Right::Use, None)), "unauthenticated");
        assert_eq!(code(both.check(Right::Use, h("Bearer wrong"))), "unauthenticated");
        assert_eq!(code(both.check(Right::Use, h("use-key"))), "unauthenticated");
        assert_eq!(code(both.check(Right::Use, h("Bearer "))), "unauthenticated");
        assert_eq!(code(both.check(Right::Manage, h("Bearer admin-key"))), "ok");
        assert_eq!(code(both.check(Right::Manage, h("Bearer use-key"))), "denied");
        assert_eq!(code(both.check(Right::Manage, None)), "unauthenticated");
        assert_eq!(code(both.check(Right::Open, None)), "ok");
        // The API key alone guards everything; the admin key alone, management.
        let api = keys(Some("use-key"), None);
        assert_eq!(code(api.check(Right::Manage, h("Bearer use-key"))), "ok");
        assert_eq!(code(api.check(Right::Manage, None)), "unauthenticated");
        let admin = keys(None, Some("admin-key"));
        assert_eq!(code(admin.check(Right::Use, None)), "ok");
        assert_eq!(code(admin.check(Right::Manage, h("Bearer nope"))), "unauthenticated");
        assert_eq!(code(Keys::default().check(Right::Manage, None)), "ok");
    }

    #[test]
    fn errors_and_debug_never_show_a_key() {
        let both = keys(Some("use-key-123"), Some("admin-key-456"));
        for header in ["Bearer use-key-123", "Bearer nope", "Bearer admin-key-45"] {
            if let Err(e) = both.check(Right::Manage, Some(header.as_bytes())) {
                assert!(!e.to_string().contains("key-"), "{e}");
            }
        }
        assert_eq!(
            format!("{both:?}"),
            "Keys { api: Some(<hidden>), admin: Some(<hidden>) }"
        );
        assert!(Secret::new(" \n", "API key").is_err());
        assert!(Secret::new("has space", "API key").is_err());
        assert!(Secret::new("ok-key\n", "API key").unwrap().matches(b"ok-key"));
    }

    #[test]
    fn local_sources_stay_inside_the_allowed_directories() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().canonicalize().unwrap();
        let allowed = root.join("models");
        std::fs::create_dir_all(allowed.join("bert")).unwrap();
        std::fs::create_dir_all(root.join("secret")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("secret"), allowed.join("link")).unwrap();
        let policy = LoadPolicy::new(std::slice::from_ref(&allowed), true).unwrap();
        let check = |p: PathBuf| code(policy.check_local(&p.display().to_string()));
        assert_eq!(check(allowed.join("bert")), "ok");
        assert_eq!(check(allowed.join("not-yet")), "ok");
        assert_eq!(check(root.join("secret")), "denied");
        assert_eq!(check(allowed.join("../secret")), "denied");
        assert_eq!(check(allowed.join("bert/../../secret")), "denied");
        assert_eq!(check(allowed.join("missing/../../secret")), "denied");
        assert_eq!(check(PathBuf::from("/etc")), "denied");
        #[cfg(unix)]
        assert_eq!(check(allowed.join("link")), "denied");
        assert!(LoadPolicy::new(&[root.join("nowhere")], true).is_err());
        assert_eq!(code(LoadPolicy::default().check_local("/etc")), "ok");
        let bert = allowed.join("bert/../bert").display().to_string();
        assert_eq!(policy.check_local(&bert).unwrap(), Some(allowed.join("bert")));
    }
}
