//! Model queues and instance workers. Each loaded model has one bounded queue
//! shared by its instances; each instance is a dedicated thread that loads
//! the model, then takes the requests waiting in the queue (up to
//! `max_batch_size` at a time), runs them as one batch and answers each.
//! Nothing here knows about gRPC.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use inferd_sdk::proto::{task_response, Batch, LoadRequest, LoadedModel, TaskRequest};
use inferd_sdk::Error;
use tokio::sync::{mpsc, oneshot};

use crate::error::DaemonError;
use crate::plugins::Plugin;

/// The answer to one request.
pub type Reply = Result<task_response::Body, Error>;

struct Job {
    request: TaskRequest,
    reply: oneshot::Sender<Reply>,
    /// Partial responses, for streaming requests.
    partial: Option<mpsc::UnboundedSender<task_response::Body>>,
}

impl Job {
    /// The client is still waiting for this job.
    fn wanted(&self) -> bool {
        !self.reply.is_closed() && !self.partial.as_ref().is_some_and(|p| p.is_closed())
    }
}

enum Message {
    Job(Job),
    Stop,
}

#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    pub queue_size: usize,
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for others to join it.
    pub max_queue_delay: std::time::Duration,
    /// LibTorch threads per operation on the instance's thread.
    pub intra_op_threads: Option<usize>,
}

/// The queue and workers of one model.
pub struct ModelQueue {
    name: String,
    sender: Sender<Message>,
    workers: Vec<JoinHandle<()>>,
    pub devices: Vec<String>,
    pub loaded: LoadedModel,
    pub options: QueueOptions,
}

impl ModelQueue {
    /// Starts one worker per device in `devices` and waits until every one
    /// has loaded the model. Blocking: call it off the async runtime.
    pub fn start(
        plugin: Arc<Plugin>,
        request: LoadRequest,
        devices: Vec<String>,
        options: QueueOptions,
    ) -> Result<Self, Error> {
        let (sender, receiver) = bounded::<Message>(options.queue_size.max(1));
        let mut workers = Vec::new();
        let mut ready = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let plugin = plugin.clone();
            let receiver = receiver.clone();
            let request = LoadRequest {
                device: device.clone(),
                ..request.clone()
            };
            let options = QueueOptions {
                max_batch_size: options.max_batch_size.max(1),
                ..options
            };
            let thread_name = format!("{}#{i}", request.model_name);
            let handle = std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || worker(plugin, request, receiver, ready_tx, options))
                .map_err(|e| Error::internal(format!("cannot start a worker thread: {e}")))?;
            workers.push(handle);
            ready.push(ready_rx);
        }
        let mut loaded = LoadedModel::default();
        let mut failure = None;
        for rx in ready {
            match rx.recv() {
                Ok(Ok(l)) => {
                    loaded.memory_bytes += l.memory_bytes;
                    loaded.labels = l.labels;
                }
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(Error::internal("a worker thread died while loading")),
            }
        }
        let queue = ModelQueue {
            name: request.model_name.clone(),
            sender,
            workers,
            devices,
            loaded,
            options,
        };
        match failure {
            Some(e) => {
                queue.stop();
                Err(e)
            }
            None => Ok(queue),
        }
    }

    /// Queues a request; fails at once when the queue is full. With
    /// `partial`, the request streams: partial responses go there as they
    /// are produced.
    pub fn submit(
        &self,
        mut request: TaskRequest,
        partial: Option<mpsc::UnboundedSender<task_response::Body>>,
    ) -> Result<oneshot::Receiver<Reply>, DaemonError> {
        let (reply, rx) = oneshot::channel();
        request.stream = partial.is_some();
        match self.sender.try_send(Message::Job(Job {
            request,
            reply,
            partial,
        })) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(DaemonError::ResourceExhausted(format!(
                "model {} has {} requests waiting, its queue is full; retry later",
                self.name, self.options.queue_size
            ))),
            Err(TrySendError::Disconnected(_)) => Err(DaemonError::Unavailable(format!(
                "model {} is shutting down",
                self.name
            ))),
        }
    }

    /// Lets the workers finish what is queued, then stops them and frees
    /// their instances. Blocking.
    pub fn stop(self) {
        for _ in &self.workers {
            // A worker that already exited (failed load) does not need one.
            let _ = self.sender.send(Message::Stop);
        }
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

fn worker(
    plugin: Arc<Plugin>,
    request: LoadRequest,
    receiver: Receiver<Message>,
    ready: std::sync::mpsc::Sender<Result<LoadedModel, Error>>,
    options: QueueOptions,
) {
    let model = request.model_name.clone();
    let device = request.device.clone();
    if let Some(threads) = options.intra_op_threads {
        // OpenMP's thread count is per calling thread: set it on this one.
        crate::devices::set_intra_op_threads(threads);
    }
    let started = std::time::Instant::now();
    let mut instance = match plugin.load(&request) {
        Ok((instance, loaded)) => {
            tracing::info!(%model, %device, elapsed_ms = started.elapsed().as_millis() as u64, "instance loaded");
            let _ = ready.send(Ok(loaded));
            instance
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut stopping = false;
    while !stopping {
        let first = match receiver.recv() {
            Ok(Message::Job(job)) => job,
            Ok(Message::Stop) | Err(_) => break,
        };
        // Gather more requests: those already waiting, and those arriving
        // within `max_queue_delay` of the first.
        let mut jobs = vec![first];
        let deadline = std::time::Instant::now() + options.max_queue_delay;
        while jobs.len() < options.max_batch_size {
            let next = match deadline.checked_duration_since(std::time::Instant::now()) {
                Some(wait) if !wait.is_zero() => receiver.recv_timeout(wait).ok(),
                _ => receiver.try_recv().ok(),
            };
            match next {
                Some(Message::Job(job)) => jobs.push(job),
                Some(Message::Stop) => {
                    stopping = true;
                    break;
                }
                None => break,
            }
        }
        // Requests whose client has gone away are not run.
        jobs.retain(Job::wanted);
        if jobs.is_empty() {
            continue;
        }
        let span = tracing::debug_span!("batch", %model, %device, size = jobs.len());
        let _enter = span.enter();
        let mut requests = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut partials = Vec::with_capacity(jobs.len());
        for job in jobs {
            requests.push(job.request);
            replies.push(job.reply);
            partials.push(job.partial);
        }
        let batch = Batch { requests };
        let started = std::time::Instant::now();
        let mut emit = |index: usize, chunk: Option<inferd_sdk::proto::TaskResponse>| -> bool {
            let Some(reply) = replies.get(index) else {
                return false;
            };
            match (chunk.and_then(|c| c.body), partials.get(index).and_then(Option::as_ref)) {
                (Some(body), Some(partial)) => partial.send(body).is_ok() && !reply.is_closed(),
                (_, Some(partial)) => !partial.is_closed() && !reply.is_closed(),
                (_, None) => !reply.is_closed(),
            }
        };
        let outcome = plugin.run(&mut instance, &batch, &mut emit);
        match outcome {
            Ok(responses) => {
                for (reply, response) in replies.into_iter().zip(responses) {
                    let answer = match response.body {
                        Some(task_response::Body::Error(e)) => Err(e.into()),
                        Some(body) => Ok(body),
                        None => Err(Error::internal("plugin returned an empty response")),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::warn!(%model, "batch failed: {e}");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "batch done");
    }
    plugin.unload(instance);
    tracing::info!(%model, %device, "instance unloaded");
}
