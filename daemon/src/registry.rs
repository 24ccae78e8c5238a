//! The model registry: which models exist, their state, which one serves a
//! task by default, and loading/unloading them. Requests find their model
//! here and are handed to its queue.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use inferd_proto::v1::{InstanceInfo, ModelInfo, ModelOptions, ModelState};
use inferd_sdk::proto::{LoadRequest, LoadedModel, TaskRequest, TaskSpec};

use crate::budget::{format_bytes, weight_bytes, InstanceEstimate, MemoryBudget};
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
    /// What the model computes in ("auto", "float32", "float16",
    /// "bfloat16"); None for the daemon's --dtype.
    pub dtype: Option<String>,
    /// Whose load it is (a client's sources are held to the load policy).
    pub caller: Caller,
    /// Further tasks the model serves from the same weights (T5 for
    /// summarization and translation, an NLI model for zero-shot and
    /// text-classification): an instance per task, one copy of the weights
    /// where the plugin shares them (the built-in text plugin does).
    pub also_tasks: Vec<String>,
    /// `load = "lazy"`: registered now, loaded by its first request, and
    /// evicted (least recently used first) when the memory budget needs
    /// room for another load.
    pub lazy: bool,
}

enum State {
    /// A lazy model not loaded now.
    Idle,
    Loading,
    Ready(Served),
    Failed(String),
    /// Taken out of the registry; a request that found the model just
    /// before is answered as if it had come just after.
    Unloaded,
}

/// A ready model: one queue per task it serves, its own task's first.
struct Served {
    queues: Vec<(String, ModelQueue)>,
    /// The first queue's, with the memory of all of them.
    loaded: LoadedModel,
    devices: Vec<String>,
}

impl Served {
    fn new(queues: Vec<(String, ModelQueue)>, devices: Vec<String>) -> Served {
        let mut loaded = queues[0].1.loaded.clone();
        loaded.memory_bytes = queues.iter().map(|(_, q)| q.loaded.memory_bytes).sum();
        Served {
            queues,
            loaded,
            devices,
        }
    }

    fn options(&self) -> QueueOptions {
        self.queues[0].1.options()
    }

    /// Requests waiting, for all its tasks.
    fn depth(&self) -> usize {
        self.queues.iter().map(|(_, q)| q.depth()).sum()
    }

    /// Queues a request of `task` (a canonical name) on that task's queue.
    fn submit(
        &self,
        task: &str,
        request: TaskRequest,
        partial: Option<Partial>,
        deadline: Option<Instant>,
    ) -> Result<Ticket> {
        match self.queues.iter().find(|(t, _)| t == task) {
            Some((_, queue)) => queue.submit(request, partial, deadline),
            None => Err(DaemonError::Internal(format!("no queue for task {task}"))),
        }
    }

    /// Lets every queue finish what it holds, then frees the instances.
    fn stop(self) {
        for (_, queue) in self.queues {
            queue.stop();
        }
    }
}

pub struct Model {
    pub name: String,
    pub task: String,
    /// Other tasks it serves with the same weights.
    pub also_tasks: Vec<String>,
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
    /// What to load, for a lazy model (loaded on its first request).
    lazy: Option<LoadSpec>,
    /// Why its last load on demand failed (a lazy model), with the status
    /// the requests that waited for it get.
    lazy_error: Mutex<Option<DaemonError>>,
    /// Signalled when a lazy model's state changes.
    changed: tokio::sync::Notify,
    /// When a request last came for it (evictions go least recent first).
    last_used: Mutex<Instant>,
}

impl Model {
    /// Whether it serves `task` (a canonical name).
    pub fn serves(&self, task: &str) -> bool {
        self.task == task || self.also_tasks.iter().any(|t| t == task)
    }

    /// Its config.json's architecture (empty until its first load).
    pub fn architecture(&self) -> String {
        self.architecture.lock().expect("lock").clone()
    }

    /// Whether a request for it is served now: it is loaded, or it is lazy
    /// and its request loads it.
    pub fn can_serve(&self) -> bool {
        match &*self.state.read().expect("model state lock") {
            State::Ready(_) => true,
            State::Unloaded => false,
            State::Idle | State::Loading | State::Failed(_) => self.lazy.is_some(),
        }
    }

    /// Its task, then the others it serves.
    fn tasks(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.task).chain(&self.also_tasks)
    }

    fn info(&self, is_default: bool) -> ModelInfo {
        let state = self.state.read().expect("model state lock");
        let mut info = ModelInfo {
            name: self.name.clone(),
            task: self.task.clone(),
            also_tasks: self.also_tasks.clone(),
            source: self.source.clone(),
            path: self.path.lock().expect("lock").clone(),
            architecture: self.architecture.lock().expect("lock").clone(),
            plugin: self.plugin.clone(),
            is_default,
            ..Default::default()
        };
        match &*state {
            State::Idle => info.state = ModelState::Idle as i32,
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
                    dtype: Some(match queue.loaded.dtype.as_str() {
                        "" => "float32".into(),
                        d => d.into(),
                    }),
                });
                info.queue_depth = queue.depth() as u32;
            }
        }
        info
    }

    /// Queues a request of `task` (canonical) for this model; `partial`
    /// receives the partial responses of a streaming request. A request
    /// still queued at `deadline` never runs.
    pub fn submit(
        &self,
        task: &str,
        request: TaskRequest,
        partial: Option<Partial>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Ticket> {
        match &*self.state.read().expect("model state lock") {
            State::Ready(served) => served.submit(task, request, partial, deadline),
            State::Loading | State::Idle => Err(DaemonError::still_loading(&self.name, "retry in a moment")),
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
    /// Held while a load makes room in the budget and reserves its share.
    admission: Mutex<()>,
    /// Marked changed whenever a model comes, goes, or becomes ready or
    /// not (see [`Registry::readiness`]).
    changes: tokio::sync::watch::Sender<()>,
    /// The dtype of loads that name none (--dtype).
    default_dtype: String,
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
            admission: Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(()),
            default_dtype: String::new(),
        }
    }

    /// Loads that name no dtype ask for `dtype` (--dtype; "auto" lets each
    /// plugin choose).
    pub fn with_dtype(mut self, dtype: &str) -> Self {
        self.default_dtype = dtype.to_string();
        self
    }

    /// Changes of [`Registry::readiness`] mark this receiver changed.
    pub fn watch_readiness(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// Each model's name and whether requests for it are served now: it is
    /// loaded, or it is lazy (its next request loads it).
    pub fn readiness(&self) -> Vec<(String, bool)> {
        let inner = self.inner.read().expect("registry lock");
        inner.models.values().map(|m| (m.name.clone(), m.can_serve())).collect()
    }

    fn readiness_changed(&self) {
        self.changes.send_replace(());
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
        if !found.serves(canonical) {
            let serves: Vec<&str> = found.tasks().map(String::as_str).collect();
            return Err(DaemonError::wrong_task(model, &serves.join(" and "), canonical));
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
    /// blocking context. Returns once every instance is ready. A lazy spec
    /// is only registered (see [`Registry::register_lazy`]).
    pub fn load(&self, spec: LoadSpec) -> Result<ModelInfo> {
        if spec.lazy {
            return self.register_lazy(spec);
        }
        let model = self.register(&spec, State::Loading)?;
        let (name, task) = (model.name.clone(), model.task.clone());
        tracing::info!(model = %name, %task, source = %spec.source, "loading model");
        match self.bring_up(&model, &spec) {
            Ok(()) => {
                self.make_default(&model, spec.make_default);
                self.info(&name)
            }
            Err(e) => {
                // Not kept: the error is LoadModel's answer, and the name is
                // free to load again. A request that found the model while it
                // loaded is told it failed.
                let mut inner = self.inner.write().expect("registry lock");
                if inner.models.get(&name).is_some_and(|m| Arc::ptr_eq(m, &model)) {
                    inner.models.remove(&name);
                    self.metrics.forget_unused(&name);
                }
                drop(inner);
                self.readiness_changed();
                Err(e)
            }
        }
    }

    /// Registers a `load = "lazy"` model without loading it: its first
    /// request loads it (and waits for it). It may become its task's
    /// default as a loaded model does.
    pub fn register_lazy(&self, spec: LoadSpec) -> Result<ModelInfo> {
        let model = self.register(&spec, State::Idle)?;
        self.make_default(&model, spec.make_default);
        tracing::info!(model = %model.name, task = %model.task, source = %spec.source, "registered; loads on its first request (load = \"lazy\")");
        self.info(&model.name)
    }

    /// Makes `model` the default of each task it serves that has none, and
    /// of its own task anyway if `always`.
    fn make_default(&self, model: &Model, always: bool) {
        let mut inner = self.inner.write().expect("registry lock");
        for task in model.tasks() {
            if (always && task == &model.task) || !inner.defaults.contains_key(task) {
                inner.defaults.insert(task.clone(), model.name.clone());
            }
        }
    }

    /// Checks a load's spec and enters its model in the registry in
    /// `state`; ALREADY_EXISTS if the name is taken.
    fn register(&self, spec: &LoadSpec, state: State) -> Result<Arc<Model>> {
        let task = self.canonical_task(&spec.task)?.to_string();
        let (plugin, task_spec) = self.plugins.task(&task).expect("canonical task");
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
        let mut also_tasks: Vec<String> = Vec::new();
        for other in &spec.also_tasks {
            let other = self.canonical_task(other)?.to_string();
            let needs_model = self.plugins.task(&other).is_some_and(|(_, s)| s.needs_model);
            if !needs_model || !task_spec.needs_model {
                return Err(DaemonError::InvalidArgument(format!(
                    "also_tasks: {other} and {task} cannot share a model: only tasks that load model files can"
                )));
            }
            if other != task && !also_tasks.contains(&other) {
                also_tasks.push(other);
            }
        }
        let model = Arc::new(Model {
            name: name.clone(),
            task: task.clone(),
            also_tasks,
            source: spec.source.clone(),
            path: Mutex::new(String::new()),
            architecture: Mutex::new(String::new()),
            vocoder: Mutex::new(None),
            load_seconds: Mutex::new(0.0),
            plugin: plugin.manifest.name.clone(),
            state: RwLock::new(state),
            metrics: self.metrics.model(&name),
            lazy: spec.lazy.then(|| spec.clone()),
            lazy_error: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
            last_used: Mutex::new(Instant::now()),
        });
        let mut inner = self.inner.write().expect("registry lock");
        if inner.models.contains_key(&name) {
            return Err(DaemonError::AlreadyExists(format!(
                "a model named `{name}` is already loaded; unload it first or choose another name"
            )));
        }
        inner.models.insert(name, model.clone());
        drop(inner);
        self.readiness_changed();
        Ok(model)
    }

    /// Loads a registered model's instances and makes it ready, or marks
    /// it failed; logs either way.
    fn bring_up(&self, model: &Model, spec: &LoadSpec) -> Result<()> {
        let (name, task) = (&model.name, &model.task);
        let started = Instant::now();
        match self.start(model, spec) {
            Ok(queue) => {
                *model.load_seconds.lock().expect("lock") = started.elapsed().as_secs_f64();
                if !queue.loaded.warm_up_refused.is_empty() {
                    tracing::warn!(
                        model = %name, %task,
                        "the warm-up request was refused ({}); the model is ready, but its first request may be slower",
                        queue.loaded.warm_up_refused
                    );
                }
                let (memory, warm_up) = (queue.loaded.memory_bytes, queue.loaded.warm_up_seconds);
                *model.state.write().expect("lock") = State::Ready(queue);
                self.readiness_changed();
                tracing::info!(
                    model = %name, %task, memory_mb = memory / (1 << 20),
                    load_s = format!("{:.2}", started.elapsed().as_secs_f64()), warm_up_s = format!("{warm_up:.3}"),
                    "model ready"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(model = %name, %task, "model failed to load: {e}");
                *model.state.write().expect("lock") = State::Failed(e.to_string());
                Err(e)
            }
        }
    }

    /// Queues a request on `model`. A lazy model that is not loaded is
    /// loaded first, and the request waits for it (until its deadline); a
    /// failed load on demand is the error of the requests that waited for
    /// it, and the next request tries again.
    pub async fn submit(
        self: &Arc<Self>,
        model: &Arc<Model>,
        task: &str,
        request: TaskRequest,
        partial: Option<Partial>,
        deadline: Option<Instant>,
    ) -> Result<Ticket> {
        *model.last_used.lock().expect("lock") = Instant::now();
        if model.lazy.is_none() {
            return model.submit(task, request, partial, deadline);
        }
        self.when_loaded(model, deadline, |served| {
            served.submit(task, request, partial, deadline)
        })
        .await
    }

    /// Waits until a lazy model is loaded, loading it if it is idle, as its
    /// first request would: for callers that need what only a loaded model
    /// knows (its architecture, its speakers) before building a request. A
    /// model loaded at start-up returns at once, loaded or not (its
    /// requests are refused with UNAVAILABLE while it loads).
    pub async fn loaded(self: &Arc<Self>, model: &Arc<Model>) -> Result<()> {
        // Used now: the load this waits for is not evicted first.
        *model.last_used.lock().expect("lock") = Instant::now();
        if model.lazy.is_none() {
            return Ok(());
        }
        self.when_loaded(model, None, |_| Ok(())).await
    }

    /// `then` on the served queues of a lazy model once it is loaded
    /// (while its state says so), loading it if it is idle or its last load
    /// failed; the load's error if the load this waited for failed.
    async fn when_loaded<T>(
        self: &Arc<Self>,
        model: &Arc<Model>,
        deadline: Option<Instant>,
        then: impl FnOnce(&Served) -> Result<T>,
    ) -> Result<T> {
        let mut waited = false;
        let mut then = Some(then);
        loop {
            let changed = model.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = model.state.read().expect("model state lock");
                match &*state {
                    State::Ready(served) => return then.take().expect("called once")(served),
                    State::Unloaded => return Err(DaemonError::model_unloaded(&model.name)),
                    State::Failed(e) if waited => {
                        let error = model.lazy_error.lock().expect("lock").clone();
                        return Err(error.unwrap_or_else(|| DaemonError::FailedPrecondition(e.clone())));
                    }
                    State::Loading => {}
                    State::Idle | State::Failed(_) => {
                        drop(state);
                        self.load_on_demand(model);
                    }
                }
            }
            waited = true;
            match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), changed).await.map_err(|_| {
                    DaemonError::DeadlineExceeded(format!(
                        "the deadline passed while model {} was loading for it (load = \"lazy\": its first request \
                         loads it)",
                        model.name
                    ))
                })?,
                None => changed.await,
            }
        }
    }

    /// Starts loading a lazy model that is idle (or whose last load
    /// failed), unless another request has started it already.
    fn load_on_demand(self: &Arc<Self>, model: &Arc<Model>) {
        {
            let mut state = model.state.write().expect("model state lock");
            if !matches!(*state, State::Idle | State::Failed(_)) {
                return;
            }
            *state = State::Loading;
        }
        let registry = self.clone();
        let model = model.clone();
        tokio::task::spawn_blocking(move || {
            let loading = std::panic::AssertUnwindSafe(|| registry.load_lazy(&model));
            if std::panic::catch_unwind(loading).is_err() {
                let error = DaemonError::Internal(format!("loading model {} panicked", model.name));
                *model.lazy_error.lock().expect("lock") = Some(error.clone());
                *model.state.write().expect("lock") = State::Failed(error.to_string());
                model.changed.notify_waiters();
            }
        });
    }

    /// Loads a lazy model for its first request (on a blocking thread), and
    /// wakes the requests waiting for it.
    fn load_lazy(&self, model: &Arc<Model>) {
        let spec = model.lazy.clone().expect("a lazy model");
        tracing::info!(model = %model.name, task = %model.task, source = %spec.source, "loading model for its first request (load = \"lazy\")");
        match self.bring_up(model, &spec) {
            Ok(()) => {
                model.metrics.lazy_loads.fetch_add(1, Ordering::Relaxed);
                *model.lazy_error.lock().expect("lock") = None;
            }
            Err(e) => *model.lazy_error.lock().expect("lock") = Some(e),
        }
        model.changed.notify_waiters();
    }

    /// Unloads lazy models, least recently used first, until `bytes` fit in
    /// the memory budget beside what is held, or no lazy model is loaded
    /// but `for_model`. Models loaded eagerly are never evicted.
    /// Nothing is evicted when even all of them would not make room.
    /// Models with nothing queued go first.
    fn make_room(&self, for_model: &str, bytes: u64) {
        let Some(free) = self.budget.free() else { return };
        if free >= bytes {
            return;
        }
        let mut victims: Vec<(bool, Instant, u64, Arc<Model>)> = {
            let inner = self.inner.read().expect("registry lock");
            inner
                .models
                .values()
                .filter(|m| m.lazy.is_some() && m.name != for_model)
                .filter_map(|m| match &*m.state.read().expect("lock") {
                    State::Ready(served) => Some((
                        served.depth() > 0,
                        *m.last_used.lock().expect("lock"),
                        served.loaded.memory_bytes,
                        m.clone(),
                    )),
                    _ => None,
                })
                .collect()
        };
        if free + victims.iter().map(|v| v.2).sum::<u64>() < bytes {
            return;
        }
        victims.sort_by_key(|v| (v.0, v.1));
        for (_, _, _, victim) in victims {
            if self.budget.free().is_some_and(|free| free >= bytes) {
                return;
            }
            self.evict(&victim, for_model);
        }
    }

    /// Unloads a lazy model to make room for `for_model`; it goes back to
    /// idle, and its next request loads it again. Requests already queued
    /// on it are served first; those that come meanwhile wait for the
    /// reload.
    fn evict(&self, model: &Model, for_model: &str) {
        let state = {
            let mut state = model.state.write().expect("model state lock");
            if !matches!(*state, State::Ready(_)) {
                return;
            }
            std::mem::replace(&mut *state, State::Loading)
        };
        tracing::info!(model = %model.name, "evicting the least recently used lazy model to make room for {for_model}");
        if let State::Ready(served) = state {
            self.shut_down(&model.name, served);
        }
        *model.state.write().expect("model state lock") = State::Idle;
        model.metrics.evictions.fetch_add(1, Ordering::Relaxed);
        model.changed.notify_waiters();
    }

    /// Starts a queue (and its instances) for each task the model serves;
    /// blocking.
    fn start(&self, model: &Model, spec: &LoadSpec) -> Result<Served> {
        // Each task's plugin (the tasks were checked at registration).
        let plugins: Vec<(&String, &Arc<Plugin>, &TaskSpec)> = model
            .tasks()
            .map(|task| {
                let (plugin, task_spec) = self.plugins.task(task).expect("checked at registration");
                (task, plugin, task_spec)
            })
            .collect();
        let task_spec = plugins[0].2;
        let mut request = LoadRequest {
            task: model.task.clone(),
            model_name: model.name.clone(),
            limits: spec.limits.clone(),
            quantize: spec.quantize.clone().unwrap_or_default(),
            dtype: inferd_sdk::dtype_name(spec.dtype.as_deref().unwrap_or(&self.default_dtype))
                .map_err(|e| DaemonError::InvalidArgument(format!("options.{}", e.message)))?
                .to_string(),
            dtype_is_default: spec.dtype.is_none(),
            ..Default::default()
        };
        if !spec.source.is_empty() {
            let dir = self
                .sources
                .resolve(&spec.source, spec.revision.as_deref(), spec.caller)?;
            let architecture = read_architecture(&dir)?;
            for (task, _, task_spec) in &plugins {
                let architectures = &task_spec.architectures;
                if !architectures.is_empty() && !architectures.contains(&architecture) {
                    return Err(DaemonError::unsupported_architecture(
                        &spec.source,
                        &architecture,
                        task,
                        architectures,
                    ));
                }
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
        // The weight files, weighed once for the budget and the devices.
        let weights = weight_bytes(Path::new(&request.model_dir));
        let vocoder = weight_bytes(Path::new(&request.vocoder_dir));
        self.reserve_memory(&model.name, weights + vocoder, &request, spec)?;
        let devices = self
            .devices
            .place(&spec.devices, spec.instances.max(1) as usize)
            .inspect_err(|_| {
                self.budget.release(&model.name);
            })?;
        let cpu_instances = devices.iter().filter(|d| *d == "cpu").count();
        let options = self.options.with(&spec.options, cpu_instances);
        // What each instance will hold on its device, set aside there until
        // the instances have loaded (and the device counts it as used).
        // The daemon's --dtype is a preference that a model may not take:
        // counted as auto (float32), the widest it may run in.
        let estimate = InstanceEstimate::of(
            Path::new(&request.model_dir),
            weights,
            if request.dtype_is_default { "" } else { &request.dtype },
            options.max_batch_size,
        );
        let _room = self
            .devices
            .reserve(
                &devices,
                estimate.total().saturating_add(vocoder),
                &model.name,
                &estimate.describe(options.max_batch_size),
            )
            .inspect_err(|_| {
                self.devices.release(&devices);
                self.budget.release(&model.name);
            })?;
        // One task after the other, so that each instance after the first
        // finds the weights the first loaded (and shares them).
        let mut queues = Vec::new();
        for (task, plugin, _) in plugins {
            let request = LoadRequest {
                task: task.clone(),
                ..request.clone()
            };
            match ModelQueue::start(plugin.clone(), request, devices.clone(), options, model.metrics.clone()) {
                Ok(queue) => queues.push((task.clone(), queue)),
                Err(e) => {
                    queues
                        .into_iter()
                        .for_each(|(_, queue): (String, ModelQueue)| queue.stop());
                    self.devices.release(&devices);
                    self.budget.release(&model.name);
                    return Err(DaemonError::from(e));
                }
            }
        }
        let served = Served::new(queues, devices);
        self.budget.settle(&model.name, served.loaded.memory_bytes);
        Ok(served)
    }

    /// Reserves a load's estimated memory in the budget: its weight files
    /// and its vocoder's (`files` bytes), once per instance, a quarter more
    /// with int8 (the int8 weights are held beside the float ones).
    fn reserve_memory(&self, name: &str, files: u64, request: &LoadRequest, spec: &LoadSpec) -> Result<()> {
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
        // One load at a time makes room and reserves it, so that two loads
        // do not evict for each other, nor take each other's room.
        let _admission = self.admission.lock().expect("admission lock");
        self.make_room(name, estimate);
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
        let (model, state) = {
            let mut inner = self.inner.write().expect("registry lock");
            let model = inner.find(name)?.clone();
            // Checked and replaced under one lock: a lazy load or an
            // eviction cannot start in between.
            let state = {
                let mut state = model.state.write().expect("lock");
                if matches!(*state, State::Loading) {
                    return Err(DaemonError::still_loading(name, "unload it once it is ready"));
                }
                std::mem::replace(&mut *state, State::Unloaded)
            };
            inner.models.remove(name);
            for task in model.tasks() {
                if inner.defaults.get(task).map(String::as_str) != Some(name) {
                    continue;
                }
                inner.defaults.remove(task);
                // Another ready model of the same task becomes the default.
                let successor = inner
                    .models
                    .values()
                    .find(|m| m.serves(task) && matches!(*m.state.read().expect("lock"), State::Ready(_) | State::Idle))
                    .map(|m| m.name.clone());
                if let Some(successor) = successor {
                    inner.defaults.insert(task.clone(), successor);
                }
            }
            (model, state)
        };
        model.changed.notify_waiters();
        self.readiness_changed();
        if let State::Ready(served) = state {
            self.shut_down(name, served);
        } else {
            crate::heap::release_free_memory();
        }
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Lets a ready model's queues finish what they hold, frees its
    /// instances, their devices and its share of the budget, and gives the
    /// freed memory back to the system. Blocking.
    fn shut_down(&self, name: &str, served: Served) {
        let devices = served.devices.clone();
        served.stop();
        self.devices.release(&devices);
        self.budget.release(name);
        crate::heap::release_free_memory();
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
                State::Idle | State::Loading | State::Failed(_) | State::Unloaded => ModelGauges {
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
