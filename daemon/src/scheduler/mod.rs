//! Model queues and instance workers. Each loaded model has one bounded queue
//! shared by its instances; each instance is a dedicated thread that loads
//! the model, then takes batches from the queue and answers each request.
//!
//! A batch starts with the oldest waiting request, which waits up to
//! `max_queue_delay` (counted from its arrival) for others to join. When more
//! requests wait than fit, the batch takes those closest in size to the
//! oldest one, so that padding stays small; the oldest always goes first, so
//! nothing starves. Requests whose deadline has passed are answered
//! DEADLINE_EXCEEDED without running, and a request whose caller goes away
//! (its [`Ticket`] is dropped) leaves the queue at once. How a worker runs a
//! batch, and what it does when a batch fails as a whole, is in `worker`.
//! Nothing here knows about gRPC.

mod worker;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inferd_sdk::proto::{task_response, LoadRequest, LoadedModel, TaskRequest};
use inferd_sdk::Error;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::error::DaemonError;
use crate::metrics::ModelMetrics;
use crate::plugins::Plugin;
use crate::queue_options::QueueOptions;

/// The answer to one request.
pub type Reply = Result<task_response::Body, DaemonError>;

/// Partial responses of a streaming request.
pub type Partial = mpsc::UnboundedSender<task_response::Body>;

struct Job {
    id: u64,
    request: TaskRequest,
    /// Encoded size of the request: the length used to group batches.
    size: usize,
    arrived: Instant,
    /// When a batch took it in (its wait in the queue ends), told to the
    /// ticket.
    started: Arc<OnceLock<Instant>>,
    caller: Caller,
}

impl Job {
    /// Marks the job as taken into a batch at `now`.
    fn start(&self, now: Instant) {
        let _ = self.started.set(now);
    }
}

/// Whoever waits for a job's answer, and its partial responses.
struct Caller {
    reply: oneshot::Sender<Reply>,
    partial: Option<Partial>,
    deadline: Option<Instant>,
    /// Partial responses have gone to it already.
    streamed: bool,
}

impl Caller {
    /// The caller is still waiting.
    fn wanted(&self) -> bool {
        !self.reply.is_closed() && !self.partial.as_ref().is_some_and(|p| p.is_closed())
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }
}

#[derive(Default)]
struct Waiting {
    jobs: VecDeque<Job>,
    stopping: bool,
    next_id: u64,
}

/// What the handlers and the workers of one model share.
struct Shared {
    name: String,
    options: QueueOptions,
    waiting: Mutex<Waiting>,
    /// Signalled when a job arrives or the queue stops.
    changed: Condvar,
    metrics: Arc<ModelMetrics>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().expect("model queue lock")
    }

    /// Takes the next batch; None once the queue is stopping and empty, or
    /// once it has been empty for `idle` where that is given.
    fn next_batch(&self, idle: Option<Duration>) -> Option<Vec<Job>> {
        let idle_until = idle.map(|idle| Instant::now() + idle);
        let mut waiting = self.lock();
        loop {
            self.drop_stale(&mut waiting);
            let Some(first) = waiting.jobs.front() else {
                if waiting.stopping {
                    return None;
                }
                waiting = match idle_until {
                    None => self.changed.wait(waiting).expect("model queue lock"),
                    Some(until) => {
                        let now = Instant::now();
                        if now >= until {
                            return None;
                        }
                        self.changed
                            .wait_timeout(waiting, until - now)
                            .expect("model queue lock")
                            .0
                    }
                };
                continue;
            };
            // Wait for others to join, unless the batch is full already; a
            // request with a deadline waits at most half its time for that.
            let join_by = waiting
                .jobs
                .iter()
                .filter_map(|j| {
                    j.caller
                        .deadline
                        .map(|d| j.arrived + d.saturating_duration_since(j.arrived) / 2)
                })
                .fold(first.arrived + self.options.max_queue_delay, Instant::min);
            let now = Instant::now();
            if waiting.jobs.len() < self.options.max_batch_size && !waiting.stopping && now < join_by {
                waiting = self
                    .changed
                    .wait_timeout(waiting, join_by - now)
                    .expect("model queue lock")
                    .0;
                // Look again: jobs may have arrived, left or expired.
                continue;
            }
            let sizes: Vec<usize> = waiting.jobs.iter().map(|j| j.size).collect();
            let mut chosen = pick_batch(&sizes, self.options.max_batch_size);
            // Remove from the back so that the indices stay valid.
            chosen.sort_unstable_by(|a, b| b.cmp(a));
            let mut batch: Vec<Job> = chosen.into_iter().filter_map(|i| waiting.jobs.remove(i)).collect();
            batch.reverse();
            return Some(batch);
        }
    }

    /// Up to `max` waiting jobs, oldest first, for a running batch to take
    /// in (continuous batching); none without waiting.
    fn take_waiting(&self, max: usize) -> Vec<Job> {
        if !self.options.join {
            return vec![];
        }
        let mut waiting = self.lock();
        self.drop_stale(&mut waiting);
        let count = max.min(waiting.jobs.len());
        waiting.jobs.drain(..count).collect()
    }

    /// Answers expired jobs DEADLINE_EXCEEDED and forgets abandoned ones.
    fn drop_stale(&self, waiting: &mut Waiting) {
        let now = Instant::now();
        if !waiting.jobs.iter().any(|j| j.caller.expired(now) || !j.caller.wanted()) {
            return;
        }
        let mut kept = VecDeque::with_capacity(waiting.jobs.len());
        for job in waiting.jobs.drain(..) {
            if job.caller.expired(now) {
                let waited = now.duration_since(job.arrived);
                let _ = job.caller.reply.send(Err(DaemonError::DeadlineExceeded(format!(
                    "the deadline passed after {} ms in model {}'s queue; the request did not run",
                    waited.as_millis(),
                    self.name
                ))));
            } else if job.caller.wanted() {
                kept.push_back(job);
            }
        }
        waiting.jobs = kept;
    }

    /// Removes a job that is still waiting (its caller went away).
    fn withdraw(&self, id: u64) {
        let mut waiting = self.lock();
        if let Some(i) = waiting.jobs.iter().position(|j| j.id == id) {
            waiting.jobs.remove(i);
        }
    }
}

/// The indices of the jobs for the next batch, given the sizes of the
/// waiting jobs in arrival order: the oldest, then the ones closest to it in
/// size (ties go to the older), at most `max_batch_size` in all.
fn pick_batch(sizes: &[usize], max_batch_size: usize) -> Vec<usize> {
    let max = max_batch_size.max(1);
    if sizes.len() <= max {
        return (0..sizes.len()).collect();
    }
    let anchor = sizes[0];
    let mut others: Vec<usize> = (1..sizes.len()).collect();
    others.sort_by_key(|&i| (sizes[i].abs_diff(anchor), i));
    let mut chosen = vec![0];
    chosen.extend(others.into_iter().take(max - 1));
    chosen.sort_unstable();
    chosen
}

/// A queued request. The answer arrives on `reply`; dropping the ticket
/// before that takes the request out of the queue.
pub struct Ticket {
    id: u64,
    shared: Arc<Shared>,
    pub reply: oneshot::Receiver<Reply>,
    /// When a batch took the request in; unset while it waits.
    pub started: Arc<OnceLock<Instant>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.withdraw(self.id);
    }
}

/// The queue and workers of one model.
pub struct ModelQueue {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    pub loaded: LoadedModel,
    /// LibTorch's intra-op threads on the instances, as they report it.
    intra_op_threads: usize,
}

impl ModelQueue {
    /// Starts one worker per device in `devices` and waits until every one
    /// has loaded the model. Blocking: call it off the async runtime.
    pub fn start(
        plugin: Arc<Plugin>,
        request: LoadRequest,
        devices: Vec<String>,
        options: QueueOptions,
        metrics: Arc<ModelMetrics>,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            name: request.model_name.clone(),
            options: QueueOptions {
                max_batch_size: options.max_batch_size.max(1),
                queue_size: options.queue_size.max(1),
                ..options
            },
            waiting: Mutex::new(Waiting::default()),
            changed: Condvar::new(),
            metrics,
        });
        let mut workers = Vec::new();
        let mut ready = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let plugin = plugin.clone();
            let shared = shared.clone();
            let request = LoadRequest {
                device: device.clone(),
                ..request.clone()
            };
            let thread_name = format!("{}#{i}", request.model_name);
            let handle = std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || worker::run(plugin, request, shared, ready_tx))
                .map_err(|e| Error::internal(format!("cannot start a worker thread: {e}")))?;
            workers.push(handle);
            ready.push(ready_rx);
        }
        let mut loaded = LoadedModel::default();
        let mut intra_op_threads = 0;
        let mut failure = None;
        for rx in ready {
            match rx.recv() {
                Ok(Ok((l, threads))) => {
                    loaded.memory_bytes += l.memory_bytes;
                    loaded.labels = l.labels;
                    loaded.speakers = l.speakers;
                    loaded.limits = l.limits;
                    loaded.quantize = l.quantize;
                    loaded.dtype = l.dtype;
                    loaded.warm_up_seconds = loaded.warm_up_seconds.max(l.warm_up_seconds);
                    if !l.warm_up_refused.is_empty() {
                        loaded.warm_up_refused = l.warm_up_refused;
                    }
                    intra_op_threads = threads;
                }
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(Error::internal("a worker thread died while loading")),
            }
        }
        let queue = ModelQueue {
            shared,
            workers,
            loaded,
            intra_op_threads,
        };
        match failure {
            Some(e) => {
                queue.stop();
                Err(e)
            }
            None => Ok(queue),
        }
    }

    /// The options in effect, the thread count as the instances have it.
    pub fn options(&self) -> QueueOptions {
        QueueOptions {
            intra_op_threads: Some(self.intra_op_threads),
            ..self.shared.options
        }
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Queues a request; fails at once when the queue is full. With
    /// `partial`, the request streams: partial responses go there as they
    /// are produced. A request still queued at `deadline` never runs.
    pub fn submit(
        &self,
        mut request: TaskRequest,
        partial: Option<Partial>,
        deadline: Option<Instant>,
    ) -> Result<Ticket, DaemonError> {
        let (reply, rx) = oneshot::channel();
        request.stream = partial.is_some();
        let size = request.encoded_len();
        let mut waiting = self.shared.lock();
        if waiting.stopping {
            return Err(DaemonError::Unavailable(format!(
                "model {} is shutting down",
                self.shared.name
            )));
        }
        if waiting.jobs.len() >= self.shared.options.queue_size {
            return Err(DaemonError::Busy(format!(
                "model {} has {} requests waiting, its queue is full; retry later",
                self.shared.name, self.shared.options.queue_size
            )));
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(DaemonError::DeadlineExceeded(
                "the request's deadline passed before it could be queued".into(),
            ));
        }
        waiting.next_id += 1;
        let id = waiting.next_id;
        let started = Arc::new(OnceLock::new());
        waiting.jobs.push_back(Job {
            id,
            request,
            size,
            arrived: Instant::now(),
            started: started.clone(),
            caller: Caller {
                reply,
                partial,
                deadline,
                streamed: false,
            },
        });
        drop(waiting);
        // Every worker: one may be waiting for its batch to fill, another idle.
        self.shared.changed.notify_all();
        Ok(Ticket {
            id,
            shared: self.shared.clone(),
            reply: rx,
            started,
        })
    }

    /// Lets the workers finish what is queued, then stops them and frees
    /// their instances. Blocking.
    pub fn stop(self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pick_batch;

    #[test]
    fn batches_start_with_the_oldest_and_group_by_size() {
        // Everything fits: everything, in arrival order.
        assert_eq!(pick_batch(&[5, 100, 7], 4), vec![0, 1, 2]);
        // Too many: the oldest, then the closest sizes to it.
        assert_eq!(pick_batch(&[10, 500, 12, 9, 480, 11], 3), vec![0, 3, 5]);
        // A long oldest request takes the long ones with it.
        assert_eq!(pick_batch(&[500, 10, 480, 12, 490], 3), vec![0, 2, 4]);
        // Equal distances: the older wins.
        assert_eq!(pick_batch(&[10, 12, 8, 12], 2), vec![0, 1]);
        assert_eq!(pick_batch(&[10, 12], 0), vec![0]);
    }
}
