//! inferd: a local inference daemon. It loads task plugins, loads models on
//! CPU or CUDA devices, and serves Hugging Face pipeline() tasks over gRPC.

mod access;
mod budget;
mod config;
mod devices;
mod error;
mod heap;
mod hub;
mod kserve_rest;
mod metrics;
mod openai;
mod plugins;
mod queue_options;
mod readiness;
mod registry;
mod scheduler;
mod server;
mod sources;
mod tls;
mod torch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

use crate::access::LoadPolicy;
use crate::config::{Args, Config, LoadWhen, ModelConfig};
use crate::devices::DevicePool;
use crate::plugins::PluginSet;
use crate::readiness::Readiness;
use crate::registry::{LoadSpec, Registry};
use crate::sources::{Caller, Sources};

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(plugins::child::CHILD_ARG) {
        return plugins::child::child_main(&raw[2..]);
    }
    heap::tune_allocator();
    let mut args = Args::parse();
    let address_file = args.address_file.take();
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("inferd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    tracing::info!(
        "inferd {} starting with configuration:\n{}",
        env!("CARGO_PKG_VERSION"),
        config.to_toml()
    );
    if let Some(threads) = config.intra_op_threads {
        torch::set_intra_op_threads(threads);
    }
    // Read now, before any model sets a count of its own.
    torch::default_intra_op_threads();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config, address_file));
    // Requests abandoned at the exit timeout may still hold blocking threads.
    runtime.shutdown_background();
    match result {
        Ok(()) => {
            tracing::info!("inferd stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, address_file: Option<PathBuf>) -> anyhow::Result<()> {
    let listening = server::bind(config.listen).await?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let files = tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.tls_client_ca.clone(),
            };
            let tls = tls::Reloadable::new(files)?;
            #[cfg(unix)]
            tls.reload_on_sighup()?;
            tracing::info!(
                client_certificates = if config.tls_client_ca.is_some() {
                    "required"
                } else {
                    "not asked for"
                },
                "TLS on (certificate and key read again on SIGHUP)"
            );
            Some(tls)
        }
        _ => None,
    };
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let http_listener = match config.http_listen {
        Some(addr) => Some(openai::bind(addr).await?),
        None => None,
    };

    let mut plugin_dirs = Vec::new();
    if config.default_plugin_dir {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
        {
            plugin_dirs.push(dir);
        }
    }
    plugin_dirs.extend(config.plugin_dirs.iter().cloned());
    let plugins = tokio::task::spawn_blocking(move || PluginSet::discover(&plugin_dirs)).await?;
    if plugins.plugins().is_empty() {
        tracing::warn!("no plugins loaded: no task can be served (use --plugin-dir)");
    }
    let devices = DevicePool::discover(&config.device)?;
    tracing::info!(devices = %devices.names().join(", "), "device pool");
    let policy = LoadPolicy::new(&config.allow_model_dirs, config.client_downloads)?;
    if !config.allow_model_dirs.is_empty() || !config.client_downloads {
        tracing::info!(dirs = ?config.allow_model_dirs, client_downloads = config.client_downloads, "LoadModel sources restricted");
    }
    let sources = Sources::new(config.offline, policy)?;
    let set = |key: &Option<access::Secret>| if key.is_some() { "required" } else { "not set" };
    tracing::info!(
        api_key = set(&config.keys.api),
        admin_key = set(&config.keys.admin),
        "keys (health, reflection and metrics are open)"
    );
    tracing::info!(cache = %sources.cache_dir().display(), endpoint = sources.endpoint(), offline = config.offline, "model sources");
    let budget = budget::MemoryBudget::new(config.memory_budget()?);
    let registry =
        Arc::new(Registry::new(plugins, devices, sources, config.queue_options(), budget).with_dtype(&config.dtype));

    // The metrics endpoint outlives the gRPC server, to show the drain.
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, "metrics at {scheme}://{addr}/metrics");
        tokio::spawn(metrics::serve(
            listener,
            registry.clone(),
            config.max_in_flight,
            tls.clone(),
            async {
                let _ = metrics_stopped.await;
            },
        ));
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new();
    let services = server::Services::new(registry.clone(), readiness.clone(), config.max_in_flight);
    // The HTTP API closes with the gRPC listener, and waits for its own
    // requests in flight.
    let (http_close, http_closed) = tokio::sync::watch::channel(false);
    let mut http_served = None;
    if let Some(listener) = http_listener {
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, "OpenAI-compatible HTTP API at {scheme}://{addr}/v1");
        let api = Arc::new(openai::Api {
            inference: services.inference.clone(),
            kserve: services.kserve.clone(),
            registry: registry.clone(),
            readiness: readiness.clone(),
            keys: config.keys.clone(),
            max_request_bytes: config.max_request_bytes,
            body_timeout: std::time::Duration::from_secs(config.http_body_timeout_seconds),
            max_in_flight: config.max_in_flight,
        });
        let mut closed = http_closed.clone();
        http_served = Some(tokio::spawn(openai::serve(
            listener,
            openai::router(api),
            tls.clone(),
            async move {
                let _ = closed.wait_for(|closed| *closed).await;
            },
        )));
    }
    Readiness::publish_first(&health_reporter).await;
    tokio::spawn(readiness.clone().publish(registry.clone(), health_reporter));
    tokio::spawn(load_startup_models(
        registry.clone(),
        config.models.clone(),
        config.parallel_loads(),
        readiness.clone(),
    ));

    tracing::info!(addr = %listening.addr, "inferd listening on {}", listening.addr);
    if let Some(path) = address_file {
        std::fs::write(&path, listening.addr.to_string())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    let serving = server::serve(
        listening,
        &services,
        health_service,
        server::Guards {
            max_request_bytes: config.max_request_bytes,
            keys: config.keys.clone(),
            tls,
        },
        async {
            let _ = closed.await;
            let _ = http_close.send(true);
        },
    );
    let serving = async {
        serving.await?;
        if let Some(http) = http_served {
            http.await?;
        }
        Ok(())
    };
    let deadline = stop_when_told(serving, close, &readiness, &config).await?;
    tracing::info!("in-flight requests are done; unloading models");
    // Within what is left of the exit timeout: a batch whose client is gone
    // may still be running.
    let unloading = tokio::task::spawn_blocking(move || registry.unload_all());
    match tokio::time::timeout_at(deadline.into(), unloading).await {
        Ok(unloaded) => unloaded?,
        Err(_) => anyhow::bail!(
            "models were still working {} s after the listener closed (--exit-timeout-seconds): exiting without \
             them",
            config.exit_timeout_seconds
        ),
    }
    let _ = metrics_stop.send(());
    Ok(())
}

/// Serves until the first SIGTERM (or Ctrl-C), then stops in three steps:
/// readiness turns NOT_SERVING while requests are still served for
/// `drain_seconds`; the listener closes; the requests in flight get
/// `exit_timeout_seconds` to finish (the models' unloading after them
/// too: the deadline returned). A second signal skips what is left of the
/// drain; one while the requests finish exits without them.
async fn stop_when_told(
    serving: impl std::future::Future<Output = anyhow::Result<()>>,
    close: tokio::sync::oneshot::Sender<()>,
    readiness: &Readiness,
    config: &Config,
) -> anyhow::Result<std::time::Instant> {
    tokio::pin!(serving);
    let exit_timeout = Duration::from_secs(config.exit_timeout_seconds);
    tokio::select! {
        result = &mut serving => return result.map(|()| std::time::Instant::now() + exit_timeout),
        signal = shutdown_signal() => tracing::info!("{signal}: shutting down"),
    }
    readiness.drain();
    if config.drain_seconds > 0 {
        tracing::info!(
            "draining: readiness is NOT_SERVING; requests are still served for {} s (--drain-seconds; signal again to \
             stop now)",
            config.drain_seconds
        );
        tokio::select! {
            result = &mut serving => return result.map(|()| std::time::Instant::now() + exit_timeout),
            () = tokio::time::sleep(Duration::from_secs(config.drain_seconds)) => {}
            signal = shutdown_signal() => tracing::info!("{signal} again: the drain is cut short"),
        }
    }
    tracing::info!(
        "no longer accepting requests; waiting for those in flight (at most {} s, --exit-timeout-seconds)",
        config.exit_timeout_seconds
    );
    let _ = close.send(());
    readiness.close();
    let deadline = std::time::Instant::now() + exit_timeout;
    tokio::select! {
        result = &mut serving => result.map(|()| deadline),
        () = tokio::time::sleep_until(deadline.into()) => Err(anyhow::anyhow!(
            "requests were still in flight {} s after the listener closed (--exit-timeout-seconds): exiting without \
             them",
            config.exit_timeout_seconds
        )),
        signal = shutdown_signal() => Err(anyhow::anyhow!("{signal} again: exiting without the requests in flight")),
    }
}

/// Loads the model-less plugin tasks and the configured models, then
/// reports the daemon healthy.
async fn load_startup_models(
    registry: Arc<Registry>,
    models: Vec<ModelConfig>,
    parallel_loads: usize,
    readiness: Arc<Readiness>,
) {
    let modelless: Vec<String> = registry
        .plugins
        .tasks()
        .filter(|(_, spec)| !spec.needs_model)
        .map(|(_, spec)| spec.name.clone())
        .collect();
    for task in modelless {
        let spec = LoadSpec {
            name: task.clone(),
            task,
            instances: 1,
            caller: Caller::Operator,
            ..Default::default()
        };
        let r = registry.clone();
        let _ = tokio::task::spawn_blocking(move || r.load(spec)).await;
    }
    // Several at once (each load mostly reads files and waits on LibTorch's
    // own threads), the first configured model of each task made its
    // default whichever finishes first, as when they loaded one by one.
    let mut models = models;
    let mut tasks_with_default: Vec<String> = models
        .iter()
        .filter(|m| m.default)
        .map(|m| canonical(&registry, &m.task))
        .collect();
    for model in &mut models {
        let task = canonical(&registry, &model.task);
        if !tasks_with_default.contains(&task) {
            model.default = true;
            tasks_with_default.push(task);
        }
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel_loads.max(1)));
    let mut loads = tokio::task::JoinSet::new();
    for model in models {
        let r = registry.clone();
        let slot = slots.clone().acquire_owned().await.expect("semaphore open");
        loads.spawn_blocking(move || {
            load_configured(&r, model);
            drop(slot);
        });
    }
    while loads.join_next().await.is_some() {}
    readiness.started();
    tracing::info!("start-up models loaded and warmed up; ready");
}

/// A task's canonical name (an alias resolved), or the name as given when
/// no plugin serves it (its load then fails saying so).
fn canonical(registry: &Registry, task: &str) -> String {
    registry.canonical_task(task).unwrap_or(task).to_string()
}

/// Loads a configured model, falling back to `fallback_source` when the
/// primary source cannot be obtained, and says which one it used.
fn load_configured(registry: &Registry, model: ModelConfig) {
    let mut source = model.source.clone();
    let mut vocoder = model.vocoder.clone();
    if let Some(fallback) = &model.fallback_source {
        // The vocoder must be at hand too, when the model names one.
        let available = registry
            .check_source(&model.source, model.revision.as_deref())
            .and_then(|()| vocoder.as_ref().map_or(Ok(()), |v| registry.check_source(v, None)));
        match available {
            Ok(()) => {
                tracing::info!(task = %model.task, "using {} for {}", model.source, model.task)
            }
            Err(e) => {
                tracing::warn!(task = %model.task, "{} is not available ({e}); using the local fixture model {fallback} instead", model.source);
                source = fallback.clone();
                vocoder = model.fallback_vocoder.clone().or(vocoder);
            }
        }
    }
    let options = model.queue_overrides();
    let spec = LoadSpec {
        // Named after the configured source even when the fallback is used,
        // so that clients address it the same way either way.
        name: if model.name.is_empty() {
            model.source.clone()
        } else {
            model.name.clone()
        },
        task: model.task,
        source,
        revision: model.revision,
        devices: model.devices,
        instances: model.instances,
        make_default: model.default,
        options,
        limits: model.limits,
        vocoder,
        quantize: model.quantize,
        dtype: model.dtype,
        caller: Caller::Operator,
        also_tasks: model.also_tasks,
        lazy: model.load == LoadWhen::Lazy,
    };
    // Failures are logged by the registry and shown by GetModel.
    let _ = registry.load(spec);
}

/// Waits for SIGTERM or Ctrl-C and names it.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => "interrupted",
        _ = terminate => "SIGTERM",
    }
}
