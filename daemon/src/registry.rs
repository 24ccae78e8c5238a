//! The model registry: which models exist, their state, which one serves a
//! task by default, and loading/unloading them. Requests find their model
//! here and are handed to its queue.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use inferd_proto::v1::{InstanceInfo, ModelInfo, ModelOptions, ModelState};
use inferd_sdk::proto::{LoadRequest, TaskRequest};

use crate::budget::{format_bytes, weight_bytes, MemoryBudget};
use crate::devices::DevicePool;
use crate::error::{DaemonError, Result};
use crate::metrics::{Metrics, ModelGauges, ModelMetrics, Scraped};
use crate::plugins::{Plugin, PluginSet};
use crate::queue_options::{Isolation, QueueOptions, QueueOverrides};
use crate::scheduler::{ModelQueue, Partial, Ticket};
use crate::sources::{Caller, Sources};

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadSpec {
    pub name: String,
    pub task: String,
    pub source: String,
    pub revision: Option<String>,
    pub devices: Vec<String>,
    pub instances: u32,
    pub make_default: bool,
    pub options: QueueOverrides,
    /// Work budgets for this model, by name (the plugin knows them).
    pub limits: BTreeMap<String, u64>,
    /// Text to speech: the vocoder's source (hub id or local directory);
    /// None for the task's default.
    pub vocoder: Option<String>,
    /// "dynamic-int8" to run the model's linear layers in int8 (the
    /// plugin refuses what it cannot do).
    pub quantize: Option<String>,
    /// Whose load it is (a client's sources are held to the load policy).
    pub caller: Caller,
}

enum State {
    Loading,
    Ready(ModelQueue),
    Failed(String),
    /// Taken out of the registry; a request that found the model just
    /// before is answered as if it had come just after.
    Unloaded,
}

pub struct Model {
    pub name: String,
    pub task: String,
    pub source: String,
    path: Mutex<String>,
    architecture: Mutex<String>,
    /// The vocoder's source, for models that have one.
    vocoder: Mutex<Option<String>>,
    /// Seconds from the start of the load to ready.
    load_seconds: Mutex<f64>,
    plugin: String,
    state: RwLock<State>,
    pub metrics: Arc<ModelMetrics>,
}

impl Model {
    fn info(&self, is_default: bool) -> ModelInfo {
        let state = self.state.read().expect("model state lock");
        let mut info = ModelInfo {
            name: self.name.clone(),
            task: self.task.clone(),
            source: self.source.clone(),
            path: self.path.lock().expect("lock").clone(),
            architecture: self.architecture.lock().expect("lock").clone(),
            plugin: self.plugin.clone(),
            is_default,
            ..Default::default()
        };
        match &*state {
            State::Loading => info.state = ModelState::Loading as i32,
            State::Failed(e) => {
                info.state = ModelState::Failed as i32;
                info.error = e.clone();
            }
            State::Unloaded => {
                info.state = ModelState::Failed as i32;
                info.error = "unloaded".into();
            }
            State::Ready(queue) => {
                info.state = ModelState::Ready as i32;
                info.instances = queue
                    .devices
                    .iter()
                    .map(|d| InstanceInfo { device: d.clone() })
                    .collect();
                info.memory_bytes = queue.loaded.memory_bytes;
                info.labels = queue.loaded.labels.clone();
                info.speakers = queue.loaded.speakers.clone();
                info.load_seconds = *self.load_seconds.lock().expect("lock");
                info.warm_up_seconds = queue.loaded.warm_up_seconds;
                let options = queue.options();
                info.options = Some(ModelOptions {
                    max_batch_size: Some(options.max_batch_size as u32),
                    max_queue_delay_ms: Some(options.max_queue_delay.as_millis() as u32),
                    queue_size: Some(options.queue_size as u32),
                    intra_op_threads: options.intra_op_threads.map(|n| n as u32),
                    limits: queue.loaded.limits.clone(),
                    vocoder: self.vocoder.lock().expect("lock").clone(),
                    isolation: Some(
                        if options.isolated {
                            Isolation::Process
                        } else {
                            Isolation::InProcess
                        }
                        .name()
                        .into(),
                    ),
                    quantize: Some(match queue.loaded.quantize.as_str() {
                        "" => "none".into(),
                        q => q.into(),
                    }),
                });
                info.queue_depth = queue.depth() as u32;
            }
        }
        info
    }

    /// Queues a request for this model; `partial` receives the partial
    /// responses of a streaming request. A request still queued at
    /// `deadline` never runs.
    pub fn submit(
        &self,
        request: TaskRequest,
        partial: Option<Partial>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Ticket> {
        match &*self.state.read().expect("model state lock") {
            State::Ready(queue) => queue.submit(request, partial, deadline),
            State::Loading => Err(DaemonError::still_loading(&self.name, "retry in a moment")),
            State::Failed(e) => Err(DaemonError::FailedPrecondition(format!(
                "model {} failed to load: {e}",
                self.name
            ))),
            State::Unloaded => Err(DaemonError::model_unloaded(&self.name)),
        }
    }
}

#[derive(Default)]
struct Inner {
    models: BTreeMap<String, Arc<Model>>,
    /// Task -> name of its default model.
    defaults: BTreeMap<String, String>,
}

impl Inner {
    /// The model named `name`; NOT_FOUND, listing the loaded ones, if none.
    fn find(&self, name: &str) -> Result<&Arc<Model>> {
        self.models.get(name).ok_or_else(|| {
            let loaded: Vec<&str> = self.models.keys().map(String::as_str).collect();
            DaemonError::model_not_loaded(name, &loaded)
        })
    }
}

pub struct Registry {
    inner: RwLock<Inner>,
    pub plugins: PluginSet,
    devices: DevicePool,
    sources: Sources,
    options: QueueOptions,
    pub metrics: Metrics,
    pub budget: MemoryBudget,
}

impl Registry {
    pub fn new(
        plugins: PluginSet,
        devices: DevicePool,
        sources: Sources,
        options: QueueOptions,
        budget: MemoryBudget,
    ) -> Self {
        Registry {
            inner: RwLock::new(Inner::default()),
            plugins,
            devices,
            sources,
            options,
            metrics: Metrics::default(),
            budget,
        }
    }

    /// The canonical name of `task`; UNIMPLEMENTED when no plugin serves it
    /// (for loading and for inference alike).
    pub fn canonical_task(&self, task: &str) -> Result<&str> {
        self.plugins
            .canonical_task(task)
            .ok_or_else(|| DaemonError::no_plugin_for(task, &self.plugins.task_names()))
    }

    /// The model a request for `task` should go to: `model` if named (it
    /// must serve `task`), else the task's default.
    pub fn model_for(&self, task: &str, model: &str) -> Result<Arc<Model>> {
        let canonical = self.canonical_task(task)?;
        let inner = self.inner.read().expect("registry lock");
        if model.is_empty() {
            let name = inner.defaults.get(canonical).ok_or_else(|| {
                let hint = self
                    .plugins
                    .task(canonical)
                    .map(|(_, spec)| spec.default_model.clone())
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(" (pipeline()'s default is {m})"))
                    .unwrap_or_default();
                DaemonError::FailedPrecondition(format!(
                    "no model is loaded for task {canonical}; load one with Models/LoadModel{hint} or name one in `model`"
                ))
            })?;
            return Ok(inner.models[name].clone());
        }
        let found = inner.find(model)?;
        if found.task != canonical {
            return Err(DaemonError::wrong_task(model, &found.task, canonical));
        }
        Ok(found.clone())
    }

    /// A model by name, whatever its task.
    pub fn model(&self, name: &str) -> Result<Arc<Model>> {
        let inner = self.inner.read().expect("registry lock");
        inner.find(name).cloned()
    }

    pub fn info(&self, name: &str) -> Result<ModelInfo> {
        let inner = self.inner.read().expect("registry lock");
        let model = inner.find(name)?;
        Ok(model.info(inner.defaults.get(&model.task) == Some(&model.name)))
    }

    pub fn list(&self) -> Vec<ModelInfo> {
        let inner = self.inner.read().expect("registry lock");
        inner
            .models
            .values()
            .map(|m| m.info(inner.defaults.get(&m.task) == Some(&m.name)))
            .collect()
    }

    /// Loads a model; blocking (source download, weights): call it from a
    /// blocking context. Returns once every instance is ready.
    pub fn load(&self, spec: LoadSpec) -> Result<ModelInfo> {
        let task = self.canonical_task(&spec.task)?.to_string();
        let (plugin, task_spec) = self
            .plugins
            .task(&task)
            .map(|(p, s)| (p.clone(), s.clone()))
            .expect("canonical task");
        let name = if spec.name.is_empty() {
            spec.source.clone()
        } else {
            spec.name.clone()
        };
        if name.is_empty() {
            return Err(DaemonError::InvalidArgument(
                "give the model a `name` or a `source`".into(),
            ));
        }
        check_name(&name, spec.name.is_empty())?;
        if spec.instances > MAX_INSTANCES {
            return Err(DaemonError::InvalidArgument(format!(
                "instances must be at most {MAX_INSTANCES} per model (asked for {}); each instance is a worker \
                 thread holding its own copy of the model",
                spec.instances
            )));
        }
        if task_spec.needs_model && spec.source.is_empty() {
            return Err(DaemonError::InvalidArgument(format!(
                "task {task} needs a model: give `source` (a hub id or a local directory)"
            )));
        }
        let model = Arc::new(Model {
            name: name.clone(),
            task: task.clone(),
            source: spec.source.clone(),
            path: Mutex::new(String::new()),
            architecture: Mutex::new(String::new()),
            vocoder: Mutex::new(None),
            load_seconds: Mutex::new(0.0),
            plugin: plugin.manifest.name.clone(),
            state: RwLock::new(State::Loading),
            metrics: self.metrics.model(&name),
        });
        {
            let mut inner = self.inner.write().expect("registry lock");
            if inner.models.contains_key(&name) {
                return Err(DaemonError::AlreadyExists(format!(
                    "a model named `{name}` is already loaded; unload it first or choose another name"
                )));
            }
            inner.models.insert(name.clone(), model.clone());
        }
        tracing::info!(model = %name, %task, source = %spec.source, "loading model");
        let started = std::time::Instant::now();
        match self.start(&model, &spec, &plugin, &task_spec) {
            Ok(queue) => {
                *model.load_seconds.lock().expect("lock") = started.elapsed().as_secs_f64();
                if !queue.loaded.warm_up_refused.is_empty() {
                    tracing::warn!(
                        model = %name, %task,
                        "the warm-up request was refused ({}); the model is ready, but its first request may be slower",
                        queue.loaded.warm_up_refused
                    );
                }
                *model.state.write().expect("lock") = State::Ready(queue);
                let mut inner = self.inner.write().expect("registry lock");
                if spec.make_default || !inner.defaults.contains_key(&task) {
                    inner.defaults.insert(task.clone(), name.clone());
                }
                drop(inner);
                let info = self.info(&name)?;
                tracing::info!(
                    model = %name, %task, memory_mb = info.memory_bytes / (1 << 20),
                    load_s = format!("{:.2}", info.load_seconds), warm_up_s = format!("{:.3}", info.warm_up_seconds),
                    "model ready"
                );
                Ok(info)
            }
            Err(e) => {
                tracing::error!(model = %name, %task, "model failed to load: {e}");
                // Not kept: the error is LoadModel's answer, and the name is
                // free to load again. A request that found the model while it
                // loaded is told it failed.
                *model.state.write().expect("lock") = State::Failed(e.to_string());
                let mut inner = self.inner.write().expect("registry lock");
                if inner.models.get(&name).is_some_and(|m| Arc::ptr_eq(m, &model)) {
                    inner.models.remove(&name);
                    self.metrics.forget_unused(&name);
                }
                Err(e)
            }
        }
    }

    fn start(
        &self,
        model: &Model,
        spec: &LoadSpec,
        plugin: &Arc<Plugin>,
        task_spec: &inferd_sdk::proto::TaskSpec,
    ) -> Result<ModelQueue> {
        let mut request = LoadRequest {
            task: model.task.clone(),
            model_name: model.name.clone(),
            limits: spec.limits.clone(),
            quantize: spec.quantize.clone().unwrap_or_default(),
            ..Default::default()
        };
        if !spec.source.is_empty() {
            let dir = self
                .sources
                .resolve(&spec.source, spec.revision.as_deref(), spec.caller)?;
            let architecture = read_architecture(&dir)?;
            if !task_spec.architectures.is_empty() && !task_spec.architectures.contains(&architecture) {
                return Err(DaemonError::unsupported_architecture(
                    &spec.source,
                    &architecture,
                    &model.task,
                    &task_spec.architectures,
                ));
            }
            *model.path.lock().expect("lock") = dir.display().to_string();
            *model.architecture.lock().expect("lock") = architecture.clone();
            request.model_dir = dir.display().to_string();
            request.architecture = architecture;
        }
        let vocoder = spec
            .vocoder
            .clone()
            .or_else(|| (!task_spec.default_vocoder.is_empty()).then(|| task_spec.default_vocoder.clone()));
        if let Some(vocoder) = vocoder {
            let dir = self.sources.resolve(&vocoder, None, spec.caller).map_err(|e| {
                e.map_message(|m| {
                    format!(
                        "the vocoder {vocoder}: {m} (name another in options.vocoder: a hub id or a local directory)"
                    )
                })
            })?;
            request.vocoder_dir = dir.display().to_string();
            *model.vocoder.lock().expect("lock") = Some(vocoder);
        }
        self.reserve_memory(&model.name, &request, spec)?;
        let devices = self
            .devices
            .place(&spec.devices, spec.instances.max(1) as usize)
            .inspect_err(|_| {
                self.budget.release(&model.name);
            })?;
        let cpu_instances = devices.iter().filter(|d| *d == "cpu").count();
        let options = self.options.with(&spec.options, cpu_instances);
        match ModelQueue::start(plugin.clone(), request, devices.clone(), options, model.metrics.clone()) {
            Ok(queue) => {
                self.budget.settle(&model.name, queue.loaded.memory_bytes);
                Ok(queue)
            }
            Err(e) => {
                self.devices.release(&devices);
                self.budget.release(&model.name);
                Err(DaemonError::from(e))
            }
        }
    }

    /// Reserves a load's estimated memory in the budget: its weight files
    /// (and its vocoder's), once per instance, a quarter more with int8
    /// (the int8 weights are held beside the float ones).
    fn reserve_memory(&self, name: &str, request: &LoadRequest, spec: &LoadSpec) -> Result<()> {
        let files = weight_bytes(Path::new(&request.model_dir)) + weight_bytes(Path::new(&request.vocoder_dir));
        let instances = u64::from(spec.instances.max(1));
        let mut estimate = files * instances;
        if request.quantize == "dynamic-int8" {
            estimate += estimate / 4;
        }
        let how = format!(
            "{} of weight files x {instances} instance{}",
            format_bytes(files),
            if instances == 1 { "" } else { "s" }
        );
        self.budget.reserve(name, estimate, &how)
    }

    /// Whether a source can be obtained (cached, downloadable or local) for
    /// the operator's start-up loads.
    pub fn check_source(&self, source: &str, revision: Option<&str>) -> Result<()> {
        self.sources.resolve(source, revision, Caller::Operator).map(|_| ())
    }

    /// Removes a model, lets its queued requests finish, and frees its
    /// instances. Blocking.
    pub fn unload(&self, name: &str) -> Result<()> {
        let model = {
            let mut inner = self.inner.write().expect("registry lock");
            let model = inner.find(name)?.clone();
            if matches!(*model.state.read().expect("lock"), State::Loading) {
                return Err(DaemonError::still_loading(name, "unload it once it is ready"));
            }
            inner.models.remove(name);
            if inner.defaults.get(&model.task).map(String::as_str) == Some(name) {
                inner.defaults.remove(&model.task);
                // Another ready model of the same task becomes the default.
                let successor = inner
                    .models
                    .values()
                    .find(|m| m.task == model.task && matches!(*m.state.read().expect("lock"), State::Ready(_)))
                    .map(|m| m.name.clone());
                if let Some(successor) = successor {
                    inner.defaults.insert(model.task.clone(), successor);
                }
            }
            model
        };
        let state = std::mem::replace(&mut *model.state.write().expect("lock"), State::Unloaded);
        if let State::Ready(queue) = state {
            let devices = queue.devices.clone();
            queue.stop();
            self.devices.release(&devices);
            self.budget.release(name);
        }
        crate::heap::release_free_memory();
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Stops every model (for shutdown). Blocking.
    pub fn unload_all(&self) {
        let names: Vec<String> = self
            .inner
            .read()
            .expect("registry lock")
            .models
            .keys()
            .cloned()
            .collect();
        for name in names {
            if let Err(e) = self.unload(&name) {
                tracing::debug!(model = %name, "not unloaded at shutdown: {e}");
            }
        }
    }
}

/// What the metrics page reads about the loaded models.
impl Scraped for Registry {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn memory(&self) -> (u64, u64) {
        self.budget.usage()
    }

    fn gauges(&self) -> Vec<ModelGauges> {
        let inner = self.inner.read().expect("registry lock");
        inner
            .models
            .values()
            .map(|m| match &*m.state.read().expect("model state lock") {
                State::Ready(queue) => ModelGauges {
                    name: m.name.clone(),
                    ready: true,
                    memory_bytes: queue.loaded.memory_bytes,
                    queue_depth: queue.depth(),
                    instances: queue.devices.len(),
                },
                State::Loading | State::Failed(_) | State::Unloaded => ModelGauges {
                    name: m.name.clone(),
                    ready: false,
                    memory_bytes: 0,
                    queue_depth: 0,
                    instances: 0,
                },
            })
            .collect()
    }
}

/// The most instances one model may have (`LoadModel.instances`, a
/// configured model's `instances`).
pub const MAX_INSTANCES: u32 = 64;

/// The longest model name, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// A model's name is used in requests, in metric labels and in URLs
/// (inferctl, dashboards): ASCII letters and digits, `-`, `_`, `.` and `/`
/// (a hub id or a directory is a model's name when it is given none), at
/// most 256 characters. `from_source`: the name is the source's, so the
/// refusal suggests naming the model.
fn check_name(name: &str, from_source: bool) -> Result<()> {
    let hint = if from_source { "; give the model a `name`" } else { "" };
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(DaemonError::InvalidArgument(format!(
            "the model name is {chars} characters long; at most {MAX_NAME_CHARS} are allowed{hint}"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(DaemonError::InvalidArgument(format!(
            "the model name `{}` has the character {bad:?}; names may hold ASCII letters and digits, `-`, `_`, `.` \
             and `/`{hint}",
            name.escape_default()
        )));
    }
    Ok(())
}

/// config.json's first `architectures` entry. The file is read as the
/// plugins read it (`inferd_sdk::files`): only a regular file (symlinks
/// followed) under the config size limit, so that a FIFO or a symlink to
/// /dev/zero is refused here instead of blocking or filling the daemon.
fn read_architecture(dir: &std::path::Path) -> Result<String> {
    use inferd_sdk::files::{read_model_file, FileRefusal, CONFIG_LIMIT};
    let path = dir.join("config.json");
    let bytes = read_model_file(&path, CONFIG_LIMIT).map_err(|refusal| match refusal {
        FileRefusal::Missing => DaemonError::FailedPrecondition(format!(
            "{} has no config.json: a model directory needs config.json, weights and tokenizer files",
            dir.display()
        )),
        other => DaemonError::FailedPrecondition(format!("{} {other}", path.display())),
    })?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| DaemonError::FailedPrecondition(format!("{} is not valid JSON: {e}", path.display())))?;
    json.get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            DaemonError::FailedPrecondition(format!(
                "{} has no `architectures` entry naming the model class",
                path.display()
            ))
        })
}
