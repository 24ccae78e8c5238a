//! The daemon's configuration: command-line flags (with INFERD_* environment
//! fallbacks) over an optional TOML file, in one struct printed at start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::access::{Keys, Secret};
use crate::queue_options::{Isolation, QueueOptions, QueueOverrides};

/// Command-line flags. Every flag overrides the same key of the config file.
#[derive(Debug, Parser)]
#[command(
    name = "inferd",
    version,
    about = "inferd: a local inference daemon serving Hugging Face pipeline() tasks over gRPC",
    after_help = "Examples:\n  \
        inferd --listen 127.0.0.1:50051 --model text-classification=distilbert/distilbert-base-uncased-finetuned-sst-2-english\n  \
        inferd --config inferd.toml --plugin-dir ./my-plugins\n\n\
        Clients: grpcurl -plaintext 127.0.0.1:50051 list; inferctl --help"
)]
pub struct Args {
    /// TOML configuration file (keys as in the flags, plus [[models]] tables).
    #[arg(long, env = "INFERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on.
    #[arg(long, env = "INFERD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Extra directory to load plugins from (repeatable). The directory of the
    /// inferd executable is always searched first.
    #[arg(long = "plugin-dir", env = "INFERD_PLUGIN_DIRS", value_delimiter = ':')]
    pub plugin_dirs: Vec<PathBuf>,
    /// Do not search the directory of the inferd executable for plugins.
    #[arg(long)]
    pub no_default_plugin_dir: bool,
    /// Model to load at start-up, as TASK=SOURCE or NAME:TASK=SOURCE
    /// (SOURCE is a hub id or a local directory). Repeatable.
    #[arg(long = "model", value_name = "[NAME:]TASK=SOURCE")]
    pub models: Vec<String>,
    /// Never contact the Hugging Face hub (also set by HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "INFERD_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Seconds an HTTP API client may take to send a request's body, once
    /// its headers are in (default 60); a slower upload gets 408 and its
    /// connection is let go.
    #[arg(long, env = "INFERD_HTTP_BODY_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub http_body_timeout_seconds: Option<u64>,
    /// Default device for model instances: cpu, cuda or cuda:N (default: cpu).
    #[arg(long, env = "INFERD_DEVICE")]
    pub device: Option<String>,
    /// Default dtype of the models: auto (float32 on the CPU; float16 on
    /// CUDA for the architectures safe in it, float32 for the others),
    /// float32, float16 or bfloat16, taken by the models that run in 16
    /// bits by default (the others load in float32). A model's own `dtype`
    /// wins.
    #[arg(long, env = "INFERD_DTYPE")]
    pub dtype: Option<String>,
    /// Most requests a model instance runs together (default 16).
    #[arg(long, env = "INFERD_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,
    /// Milliseconds a request may wait in the queue for others to join its
    /// batch (default 2).
    #[arg(long, env = "INFERD_MAX_QUEUE_DELAY_MS")]
    pub max_queue_delay_ms: Option<u64>,
    /// Requests waiting per model before new ones are refused (default 256).
    #[arg(long, env = "INFERD_QUEUE_SIZE")]
    pub queue_size: Option<usize>,
    /// Requests served at once, over all models, before new ones are refused
    /// with RESOURCE_EXHAUSTED (default 1024).
    #[arg(long, env = "INFERD_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9090).
    #[arg(long, env = "INFERD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve an OpenAI-compatible HTTP API here (e.g. 127.0.0.1:8080):
    /// /v1/models, /v1/embeddings, /v1/completions, /v1/audio/transcriptions,
    /// /v1/audio/translations and /v1/audio/speech, plus /v2/health/live,
    /// /v2/health/ready and /metrics (default: off).
    #[arg(long, env = "INFERD_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Seconds to keep serving after SIGTERM with readiness already
    /// NOT_SERVING, so that balancers stop sending requests here before the
    /// listener closes (default 0; a second signal cuts it short).
    #[arg(long, env = "INFERD_DRAIN_SECONDS", value_name = "SECONDS")]
    pub drain_seconds: Option<u64>,
    /// Seconds the requests in flight may take to finish once the listener
    /// is closed; then the daemon exits without them, with status 1
    /// (default 30).
    #[arg(long, env = "INFERD_EXIT_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub exit_timeout_seconds: Option<u64>,
    /// Threads LibTorch may use for one operation (default: the cores,
    /// divided among a model's CPU instances).
    #[arg(long, env = "INFERD_INTRA_OP_THREADS")]
    pub intra_op_threads: Option<usize>,
    /// Bytes all models may hold together, e.g. 8GiB or 512MiB (default:
    /// no limit). A load that would not fit (estimated from its weight
    /// files, once per instance) is refused with RESOURCE_EXHAUSTED saying
    /// how much is free.
    #[arg(long, env = "INFERD_MEMORY_BUDGET", value_name = "SIZE")]
    pub memory_budget: Option<String>,
    /// Start-up models loaded at once (default: the cores, at most 4).
    #[arg(long, env = "INFERD_PARALLEL_LOADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel_loads: Option<u16>,
    /// Fix each batch when it starts: requests that arrive while a
    /// generation runs wait for it to end instead of joining it at its
    /// next step (continuous batching, the default).
    #[arg(long, env = "INFERD_STATIC_BATCHING")]
    pub static_batching: bool,
    /// Where model instances run: in-process (the default), or process (each
    /// in a child process, restarted when it dies; per model:
    /// LoadModel options.isolation, `isolation` in [[models]]).
    #[arg(long, env = "INFERD_ISOLATION", value_enum)]
    pub isolation: Option<Isolation>,
    /// Log filter, e.g. info or inferd=debug (RUST_LOG also works).
    #[arg(long, env = "INFERD_LOG")]
    pub log: Option<String>,
    /// Write the address actually bound (useful with port 0) to this file
    /// once the daemon is listening.
    #[arg(long, value_name = "PATH")]
    pub address_file: Option<PathBuf>,
    /// Key clients must send as `authorization: Bearer KEY` for inference
    /// and for listing models (health, reflection and metrics stay open).
    /// Prefer INFERD_API_KEY or --api-key-file: a flag shows in `ps`.
    #[arg(long, env = "INFERD_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// File holding the API key (a final newline is dropped).
    #[arg(long, env = "INFERD_API_KEY_FILE", value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// Key for LoadModel and UnloadModel (also good for everything else);
    /// unset: the API key manages models too.
    #[arg(long, env = "INFERD_ADMIN_KEY", hide_env_values = true, value_name = "KEY")]
    pub admin_key: Option<String>,
    /// File holding the admin key.
    #[arg(long, env = "INFERD_ADMIN_KEY_FILE", value_name = "PATH")]
    pub admin_key_file: Option<PathBuf>,
    /// Directory a client's LoadModel may load local models from
    /// (repeatable; after resolving `..` and symbolic links). Unset: any.
    /// Start-up models are not restricted.
    #[arg(
        long = "allow-model-dir",
        env = "INFERD_ALLOW_MODEL_DIRS",
        value_delimiter = ':',
        value_name = "DIR"
    )]
    pub allow_model_dirs: Vec<PathBuf>,
    /// A client's LoadModel of a hub id is served from the Hugging Face
    /// cache only, never downloaded (start-up models still download).
    #[arg(long, env = "INFERD_NO_CLIENT_DOWNLOADS")]
    pub no_client_downloads: bool,
    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first);
    /// needs --tls-key. Both are read again on SIGHUP.
    #[arg(long, env = "INFERD_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, env = "INFERD_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM) on the TLS
    /// listener.
    #[arg(long, env = "INFERD_TLS_CLIENT_CA", value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,
}

/// A model to load at start-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Name requests use; defaults to the source.
    #[serde(default)]
    pub name: String,
    pub task: String,
    /// Hub id or local directory (relative paths: relative to the config file).
    #[serde(default)]
    pub source: String,
    /// Used when `source` is a hub id that is neither cached nor downloadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_source: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default = "one")]
    pub instances: u32,
    /// Make it the default model of its task.
    #[serde(default)]
    pub default: bool,
    /// Batching and queueing for this model (default: the daemon's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_op_threads: Option<usize>,
    /// Work budgets for this model's requests, by name (README, Limits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, u64>,
    /// Text to speech: the vocoder's hub id or local directory (relative
    /// paths: relative to the config file); default: the task's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocoder: Option<String>,
    /// The vocoder used with `fallback_source` (the two must match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_vocoder: Option<String>,
    /// "process": each instance in a child process (default: the daemon's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// "dynamic-int8": the linear layers of a text model in int8 (CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<String>,
    /// What the model computes in: auto, float32, float16 or bfloat16
    /// (default: the daemon's --dtype).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// "lazy": loaded by its first request instead of at start-up, and
    /// evicted when idle (least recently used first) if the memory budget
    /// needs room for another load.
    #[serde(default, skip_serializing_if = "LoadWhen::is_eager")]
    pub load: LoadWhen,
    /// Further tasks served with the same weights (one copy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_tasks: Vec<String>,
}

/// When a configured model loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadWhen {
    /// At start-up; never evicted.
    #[default]
    Eager,
    /// On its first request; may be evicted under the memory budget.
    Lazy,
}

impl LoadWhen {
    fn is_eager(&self) -> bool {
        *self == LoadWhen::Eager
    }
}

impl ModelConfig {
    pub fn queue_overrides(&self) -> QueueOverrides {
        QueueOverrides {
            queue_size: self.queue_size,
            max_batch_size: self.max_batch_size,
            max_queue_delay_ms: self.max_queue_delay_ms,
            intra_op_threads: self.intra_op_threads,
            isolated: self.isolation.map(|i| i == Isolation::Process),
        }
    }
}

fn one() -> u32 {
    1
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub plugin_dirs: Vec<PathBuf>,
    pub default_plugin_dir: bool,
    pub offline: bool,
    pub max_request_bytes: usize,
    /// Seconds an HTTP API client may take to send a request's body.
    pub http_body_timeout_seconds: u64,
    pub device: String,
    /// The models' default dtype ("auto", "float32", ...).
    pub dtype: String,
    pub intra_op_threads: Option<usize>,
    /// Requests waiting per model before new ones are refused.
    pub queue_size: usize,
    /// Most requests a model instance runs in one batch.
    pub max_batch_size: usize,
    /// Milliseconds a request may wait in the queue for others to join its batch.
    pub max_queue_delay_ms: u64,
    /// Requests served at once over all models.
    pub max_in_flight: usize,
    /// Where to serve Prometheus metrics; none when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve the OpenAI-compatible HTTP API; none when unset.
    pub http_listen: Option<SocketAddr>,
    /// Seconds served after SIGTERM while readiness says NOT_SERVING.
    pub drain_seconds: u64,
    /// Seconds in-flight requests may take once the listener is closed.
    pub exit_timeout_seconds: u64,
    /// Batches fixed when they start (no continuous batching).
    pub static_batching: bool,
    /// Bytes all models may hold together ("8GiB"); none when unset.
    pub memory_budget: Option<String>,
    /// Start-up models loaded at once; unset: the cores, at most 4.
    pub parallel_loads: Option<u16>,
    /// Where model instances run unless a model says otherwise.
    pub isolation: Isolation,
    pub log: String,
    /// Files holding the API and admin keys (see the flags).
    pub api_key_file: Option<PathBuf>,
    pub admin_key_file: Option<PathBuf>,
    /// Directories a client's LoadModel may load from; empty: any.
    pub allow_model_dirs: Vec<PathBuf>,
    /// Whether a client's LoadModel may download from the hub.
    pub client_downloads: bool,
    /// TLS for the gRPC listener: certificate chain, key, and the CA of
    /// required client certificates.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub models: Vec<ModelConfig>,
    /// The keys themselves (from the flags, environment or key files),
    /// never printed.
    #[serde(skip)]
    pub keys: Keys,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            plugin_dirs: vec![],
            default_plugin_dir: true,
            offline: false,
            max_request_bytes: 16 * 1024 * 1024,
            http_body_timeout_seconds: 60,
            device: "cpu".into(),
            dtype: "auto".into(),
            intra_op_threads: None,
            queue_size: 256,
            max_batch_size: 16,
            max_queue_delay_ms: 2,
            max_in_flight: 1024,
            metrics_listen: None,
            http_listen: None,
            drain_seconds: 0,
            exit_timeout_seconds: 30,
            static_batching: false,
            memory_budget: None,
            parallel_loads: None,
            isolation: Isolation::InProcess,
            log: "info".into(),
            api_key_file: None,
            admin_key_file: None,
            allow_model_dirs: vec![],
            client_downloads: true,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            models: vec![],
            keys: Keys::default(),
        }
    }
}

impl Config {
    /// Flags over file over defaults.
    pub fn load(args: Args) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        config.plugin_dirs.extend(args.plugin_dirs);
        if args.no_default_plugin_dir {
            config.default_plugin_dir = false;
        }
        if args.offline || hub_offline_from_env() {
            config.offline = true;
        }
        if let Some(n) = args.max_request_bytes {
            config.max_request_bytes = n;
        }
        if let Some(n) = args.http_body_timeout_seconds {
            config.http_body_timeout_seconds = n;
        }
        if config.http_body_timeout_seconds == 0 {
            anyhow::bail!("--http-body-timeout-seconds must be above 0");
        }
        if let Some(d) = args.device {
            config.device = d;
        }
        if let Some(d) = args.dtype {
            config.dtype = d;
        }
        inferd_sdk::dtype_name(&config.dtype).map_err(|e| anyhow::anyhow!("--dtype: {}", e.message))?;
        if let Some(n) = args.max_batch_size {
            config.max_batch_size = n;
        }
        if let Some(n) = args.max_queue_delay_ms {
            config.max_queue_delay_ms = n;
        }
        if let Some(n) = args.queue_size {
            config.queue_size = n;
        }
        if let Some(n) = args.max_in_flight {
            config.max_in_flight = n;
        }
        if args.metrics_listen.is_some() {
            config.metrics_listen = args.metrics_listen;
        }
        if args.http_listen.is_some() {
            config.http_listen = args.http_listen;
        }
        if let Some(n) = args.drain_seconds {
            config.drain_seconds = n;
        }
        if let Some(n) = args.exit_timeout_seconds {
            config.exit_timeout_seconds = n;
        }
        if args.intra_op_threads.is_some() {
            config.intra_op_threads = args.intra_op_threads;
        }
        if args.static_batching {
            config.static_batching = true;
        }
        if args.memory_budget.is_some() {
            config.memory_budget = args.memory_budget;
        }
        if args.parallel_loads.is_some() {
            config.parallel_loads = args.parallel_loads;
        }
        if let Some(isolation) = args.isolation {
            config.isolation = isolation;
        }
        if let Some(log) = args.log {
            config.log = log;
        }
        for spec in &args.models {
            config.models.push(parse_model_flag(spec)?);
        }
        if args.api_key_file.is_some() {
            config.api_key_file = args.api_key_file;
        }
        if args.admin_key_file.is_some() {
            config.admin_key_file = args.admin_key_file;
        }
        config.allow_model_dirs.extend(args.allow_model_dirs);
        if args.no_client_downloads {
            config.client_downloads = false;
        }
        for (flag, value) in [
            (&mut config.tls_cert, args.tls_cert),
            (&mut config.tls_key, args.tls_key),
            (&mut config.tls_client_ca, args.tls_client_ca),
        ] {
            if value.is_some() {
                *flag = value;
            }
        }
        anyhow::ensure!(
            config.tls_cert.is_some() == config.tls_key.is_some(),
            "TLS needs both --tls-cert and --tls-key"
        );
        anyhow::ensure!(
            config.tls_client_ca.is_none() || config.tls_cert.is_some(),
            "--tls-client-ca needs TLS (--tls-cert and --tls-key)"
        );
        config.memory_budget()?;
        config.keys = Keys {
            api: Secret::load(args.api_key.as_deref(), config.api_key_file.as_deref(), "API key")?,
            admin: Secret::load(args.admin_key.as_deref(), config.admin_key_file.as_deref(), "admin key")?,
        };
        Ok(config)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        // A key written into the file would be quoted by the parser's error:
        // say what to do without repeating the line.
        if let Ok(table) = text.parse::<toml::Table>() {
            for key in ["api_key", "admin_key"] {
                if table.contains_key(key) {
                    anyhow::bail!(
                        "config file {}: keys do not go in the file: give {key}_file (a file holding the key) \
                         or INFERD_{} instead",
                        path.display(),
                        key.to_ascii_uppercase()
                    );
                }
            }
        }
        let mut config: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        // Relative paths in the file are relative to the file, not to the cwd.
        let base = path.parent().unwrap_or(Path::new("."));
        let files = [
            &mut config.api_key_file,
            &mut config.admin_key_file,
            &mut config.tls_cert,
            &mut config.tls_key,
            &mut config.tls_client_ca,
        ]
        .into_iter()
        .flatten();
        for dir in config
            .plugin_dirs
            .iter_mut()
            .chain(config.allow_model_dirs.iter_mut())
            .chain(files)
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        for model in &mut config.models {
            let sources = std::iter::once(&mut model.source)
                .chain(model.fallback_source.as_mut())
                .chain(model.vocoder.as_mut())
                .chain(model.fallback_vocoder.as_mut());
            for source in sources {
                if source.starts_with("./") || source.starts_with("../") {
                    *source = base.join(&*source).display().to_string();
                }
            }
        }
        Ok(config)
    }

    /// Start-up models loaded at once.
    pub fn parallel_loads(&self) -> usize {
        self.parallel_loads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4))
    }

    /// The memory budget in bytes, if one is set.
    pub fn memory_budget(&self) -> anyhow::Result<Option<u64>> {
        self.memory_budget
            .as_deref()
            .map(|text| crate::budget::parse_size(text).map_err(|e| anyhow::anyhow!("memory_budget: {e}")))
            .transpose()
    }

    /// The daemon's queue options, which each model may override.
    pub fn queue_options(&self) -> QueueOptions {
        QueueOptions {
            queue_size: self.queue_size,
            max_batch_size: self.max_batch_size,
            max_queue_delay: std::time::Duration::from_millis(self.max_queue_delay_ms),
            intra_op_threads: self.intra_op_threads,
            join: !self.static_batching,
            isolated: self.isolation == Isolation::Process,
        }
    }

    /// The configuration as TOML, for the start-up log.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("<unprintable: {e}>"))
    }
}

/// HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set to a true value.
pub fn hub_offline_from_env() -> bool {
    ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"].iter().any(|var| {
        std::env::var(var)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false)
    })
}

/// `[NAME:]TASK=SOURCE`
fn parse_model_flag(spec: &str) -> anyhow::Result<ModelConfig> {
    let (head, source) = spec
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--model {spec}: expected [NAME:]TASK=SOURCE"))?;
    let (name, task) = match head.split_once(':') {
        Some((name, task)) => (name.to_string(), task.to_string()),
        None => (String::new(), head.to_string()),
    };
    if task.is_empty() {
        anyhow::bail!("--model {spec}: the task is empty");
    }
    Ok(ModelConfig {
        name,
        task,
        source: source.to_string(),
        fallback_source: None,
        revision: None,
        devices: vec![],
        instances: 1,
        default: false,
        max_batch_size: None,
        max_queue_delay_ms: None,
        queue_size: None,
        intra_op_threads: None,
        limits: BTreeMap::new(),
        vocoder: None,
        fallback_vocoder: None,
        quantize: None,
        dtype: None,
        isolation: None,
        load: LoadWhen::Eager,
        also_tasks: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_flags_parse_with_and_without_a_name() {
        let m = parse_model_flag("text-classification=org/model").unwrap();
        assert_eq!(
            (m.name.as_str(), m.task.as_str(), m.source.as_str()),
            ("", "text-classification", "org/model")
        );
        let m = parse_model_flag("sst2:sentiment-analysis=/models/sst2").unwrap();
        assert_eq!((m.name.as_str(), m.task.as_str()), ("sst2", "sentiment-analysis"));
        assert!(parse_model_flag("no-equals").is_err());
    }

    #[test]
    fn file_paths_are_relative_to_the_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inferd.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\nplugin_dirs = [\"plugins\"]\n\
             [[models]]\ntask = \"text-classification\"\nsource = \"./m\"\nmax_batch_size = 8\nqueue_size = 32\n\
             limits = { max_inputs = 16 }\n",
        )
        .unwrap();
        let args = Args::parse_from([
            "inferd",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:7000",
        ]);
        let config = Config::load(args).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.plugin_dirs, vec![dir.path().join("plugins")]);
        assert_eq!(config.models[0].source, dir.path().join("./m").display().to_string());
        let overrides = config.models[0].queue_overrides();
        assert_eq!((overrides.max_batch_size, overrides.queue_size), (Some(8), Some(32)));
        assert_eq!(overrides.max_queue_delay_ms, None);
        assert_eq!(
            config.models[0].limits,
            BTreeMap::from([("max_inputs".to_string(), 16)])
        );
        assert!(!config.to_toml().is_empty());
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let args = Args::parse_from(["inferd", "--config", path.to_str().unwrap()]);
        let err = Config::load(args).unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn isolation_is_read_per_model_and_for_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iso.toml");
        std::fs::write(
            &path,
            "isolation = \"process\"\n[[models]]\ntask = \"text-classification\"\nsource = \"/m\"\n\
             isolation = \"in-process\"\n",
        )
        .unwrap();
        let config = Config::load(Args::parse_from(["inferd", "--config", path.to_str().unwrap()])).unwrap();
        assert!(config.queue_options().isolated);
        assert_eq!(config.models[0].queue_overrides().isolated, Some(false));
        let flag = Config::load(Args::parse_from(["inferd", "--isolation", "process"])).unwrap();
        assert_eq!(flag.isolation, Isolation::Process);
        std::fs::write(&path, "isolation = \"sandbox\"\n").unwrap();
        let err = Config::load(Args::parse_from(["inferd", "--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("sandbox"), "{err}");
        assert!(Args::try_parse_from(["inferd", "--isolation", "sandbox"]).is_err());
    }

    #[test]
    fn a_key_in_the_file_is_refused_without_being_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, "api_key = \"s3cret-value\"\n").unwrap();
        let err = Config::load(Args::parse_from(["inferd", "--config", path.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_key_file") && !err.contains("s3cret"), "{err}");
    }
}
