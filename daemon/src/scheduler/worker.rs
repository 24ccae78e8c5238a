//! Instance workers: the thread that owns one instance of a model loads it,
//! then runs the batches its queue hands it. While a batch runs, the plugin
//! may take in requests that arrived meanwhile (continuous batching: a
//! generation joins the running decode) and answers each request as soon
//! as it is done.
//!
//! A batch that fails as a whole (the plugin panicked, or reported an error
//! for the batch) would otherwise fail every request in it for the fault
//! of one. So when a batch of several requests fails, each request it had
//! not answered yet runs again alone, and gets its own answer: only the one
//! that causes the failure gets the error again. This
//! is done here, not in the SDK, so that it holds for every plugin, whatever
//! its language. Not run again: a streaming request whose client has already
//! received partial responses (it would see them twice; it gets the batch's
//! error), and a request whose client has gone or whose deadline has passed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;

use inferd_sdk::proto::{task_response, Batch, LoadRequest, LoadedModel, TaskRequest, TaskResponse};
use inferd_sdk::Error;

use super::{Caller, Job, Shared};
use crate::error::DaemonError;
use crate::metrics::ModelMetrics;
use crate::plugins::{BatchHost, ChildInstance, InstanceHandle, Plugin};
use crate::{heap, torch};

/// A batch this large (its requests' bytes) or this long may have needed
/// far more memory for a moment than the model holds (tokenizing a 15 MB
/// text takes gigabytes); once it is done, freed memory goes back to the
/// system, so that the daemon's size returns to where it was.
const LARGE_BATCH_BYTES: usize = 1 << 20;
const LONG_BATCH: Duration = Duration::from_secs(1);

/// One run of a batch: every request answered through the host, or an
/// error for the whole batch.
type Outcome = Result<(), DaemonError>;

/// The instance a worker runs batches on: in this process, or in a child
/// process of its own (`isolation = "process"`).
enum Instance {
    InProcess(InstanceHandle),
    Child(Box<ChildInstance>),
}

impl Instance {
    fn load(plugin: &Plugin, request: &LoadRequest, shared: &Shared) -> Result<(Instance, LoadedModel), Error> {
        if !shared.options.isolated {
            return plugin
                .load(request)
                .map(|(handle, loaded)| (Instance::InProcess(handle), loaded));
        }
        let metrics = shared.metrics.clone();
        let on_restart = Box::new(move || {
            metrics.restarts.fetch_add(1, Ordering::Relaxed);
        });
        ChildInstance::load(plugin, request.clone(), shared.options.intra_op_threads, on_restart)
            .map(|(child, loaded)| (Instance::Child(Box::new(child)), loaded))
    }

    fn run(&mut self, plugin: &Plugin, batch: &Batch, host: &mut dyn BatchHost) -> Outcome {
        match self {
            Instance::InProcess(handle) => plugin.run(handle, batch, host).map_err(DaemonError::from),
            Instance::Child(child) => child.run(batch, host),
        }
    }

    fn unload(self, plugin: &Plugin) {
        match self {
            Instance::InProcess(handle) => plugin.unload(handle),
            Instance::Child(child) => child.unload(),
        }
    }
}

/// How long an in-process CPU instance may sit idle before the thread that
/// ran its work ends (see [`run`]).
const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// The worker thread of one instance, until its queue stops.
///
/// OpenMP gives every thread that starts parallel work a pool of its own,
/// kept for the thread's life, and libgomp stops spin-waiting between
/// parallel regions once its pools hold more threads than there are cores.
/// A worker that ran LibTorch itself would keep its pool for good, and two
/// loaded models, even one of them idle, would slow each other (single-
/// stream GPT-2 by a third beside an idle DistilBERT on 2 cores). So an
/// in-process CPU instance is loaded, and serves each busy spell, on a
/// compute thread of its own that ends once the queue has been empty for
/// [`IDLE_RELEASE`]; the worker itself only waits. Idle models then hold
/// no OpenMP threads, and loading more models costs memory, not speed.
pub(super) fn run(
    plugin: Arc<Plugin>,
    request: LoadRequest,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<Result<(LoadedModel, usize), Error>>,
) {
    let model = request.model_name.clone();
    let device = request.device.clone();
    // A count of its own, set on each compute thread: otherwise a new
    // thread would take whatever count another model set last.
    let threads = shared
        .options
        .intra_op_threads
        .unwrap_or_else(torch::default_intra_op_threads);
    let spells = !shared.options.isolated && device == "cpu";
    let started = Instant::now();
    let loading = || {
        let loaded = Instance::load(&plugin, &request, &shared);
        loaded.map(|(instance, loaded)| (instance, loaded, torch::intra_op_threads()))
    };
    let loaded = if spells {
        on_compute_thread(threads, loading)
    } else {
        torch::set_intra_op_threads(threads);
        loading()
    };
    let mut instance = match loaded {
        Ok((instance, loaded, threads)) => {
            tracing::info!(%model, %device, elapsed_ms = started.elapsed().as_millis() as u64, "instance loaded");
            let _ = ready.send(Ok((loaded, threads)));
            instance
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let idle = spells.then_some(IDLE_RELEASE);
    while let Some(jobs) = shared.next_batch(None) {
        let spell = || {
            let mut jobs = jobs;
            loop {
                run_batch(jobs, &model, &device, &shared, &plugin, &mut instance);
                match shared.next_batch(idle) {
                    Some(next) => jobs = next,
                    None => break,
                }
            }
        };
        if spells {
            on_compute_thread(threads, spell);
        } else {
            spell();
        }
    }
    instance.unload(&plugin);
    tracing::info!(%model, %device, "instance unloaded");
}

/// Runs `work` on a new thread, named after this one, with `threads`
/// intra-op threads, and returns its result once that thread has ended
/// (and with it, its OpenMP pool). Where no thread can be started, `work`
/// runs here.
fn on_compute_thread<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    let name = format!("{}+", std::thread::current().name().unwrap_or("worker"));
    let slot = Mutex::new(Some(work));
    let take = || slot.lock().expect("compute work").take();
    let spawned = std::thread::scope(|scope| {
        let handle = std::thread::Builder::new().name(name).spawn_scoped(scope, || {
            torch::set_intra_op_threads(threads);
            take().map(|work| work())
        });
        match handle {
            Ok(handle) => Some(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
            Err(e) => {
                tracing::warn!("cannot start a compute thread ({e}); running on the worker's");
                None
            }
        }
    });
    match spawned.flatten() {
        Some(result) => result,
        None => {
            torch::set_intra_op_threads(threads);
            take().expect("work not run by the failed thread")()
        }
    }
}

/// Runs one batch the queue handed out, answering its requests, and lets
/// go of the memory a large one needed.
fn run_batch(jobs: Vec<Job>, model: &str, device: &str, shared: &Shared, plugin: &Plugin, instance: &mut Instance) {
    let span = tracing::debug_span!("batch", %model, %device, size = jobs.len());
    let _enter = span.enter();
    let started = Instant::now();
    for job in &jobs {
        job.start(started);
        shared.metrics.queue_seconds.observe_duration(started - job.arrived);
    }
    let bytes: usize = jobs.iter().map(|job| job.request.encoded_len()).sum();
    let running = heap::Running::start();
    let more = |max: usize| {
        let jobs = shared.take_waiting(max);
        shared
            .metrics
            .joined_requests
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        for job in &jobs {
            job.start(now);
            shared.metrics.queue_seconds.observe_duration(now - job.arrived);
        }
        jobs
    };
    serve(jobs, model, &shared.metrics, &more, &mut |batch, host| {
        instance.run(plugin, batch, host)
    });
    drop(running);
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "batch done");
    if bytes >= LARGE_BATCH_BYTES || started.elapsed() >= LONG_BATCH {
        heap::release_free_memory_soon();
    }
}

/// A running batch as the plugin sees the daemon: its requests (those it
/// started with and those it took in since) and their callers, each
/// answered as soon as the plugin finishes it.
struct Running<'a> {
    requests: Vec<TaskRequest>,
    callers: Vec<Option<Caller>>,
    /// Jobs that arrived meanwhile, up to a count (nothing for a batch run
    /// again alone).
    more: &'a dyn Fn(usize) -> Vec<Job>,
}

impl Running<'_> {
    /// The requests not answered yet, with their callers.
    fn unfinished(self) -> Vec<(TaskRequest, Caller)> {
        self.requests
            .into_iter()
            .zip(self.callers)
            .filter_map(|(request, caller)| caller.map(|c| (request, c)))
            .collect()
    }
}

impl BatchHost for Running<'_> {
    fn emit(&mut self, index: usize, chunk: Option<TaskResponse>) -> bool {
        self.callers
            .get_mut(index)
            .and_then(Option::as_mut)
            .is_some_and(|caller| caller.emit(chunk))
    }

    fn take(&mut self, max: usize) -> Vec<TaskRequest> {
        let jobs = (self.more)(max);
        let mut taken = Vec::with_capacity(jobs.len());
        for job in jobs {
            taken.push(job.request.clone());
            self.requests.push(job.request);
            self.callers.push(Some(job.caller));
        }
        taken
    }

    fn finish(&mut self, index: usize, response: TaskResponse) {
        if let Some(caller) = self.callers.get_mut(index).and_then(Option::take) {
            caller.answer(response);
            // Kept only to run it again should the batch fail: an answered
            // request's body (audio, images) goes now, not when a long
            // joined run ends.
            self.requests[index] = TaskRequest::default();
        }
    }
}

/// Nothing more to take.
fn nothing(_: usize) -> Vec<Job> {
    vec![]
}

/// Runs `jobs` as one batch with `run` (the plugin's, on this worker's
/// instance), which may take in the jobs `more` gives while it runs; each
/// request is answered when the plugin finishes it. When a run fails as a
/// whole, the requests it had not finished run again one at a time if
/// there were several (see the module's doc).
fn serve<R>(jobs: Vec<Job>, model: &str, metrics: &ModelMetrics, more: &dyn Fn(usize) -> Vec<Job>, run: &mut R)
where
    R: FnMut(&Batch, &mut dyn BatchHost) -> Outcome,
{
    let (requests, callers): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.request, Some(j.caller))).unzip();
    let batch = Batch {
        requests: requests.clone(),
    };
    let mut running = Running {
        requests,
        callers,
        more,
    };
    let outcome = run_once(&batch, &mut running, metrics, run);
    let given = running.requests.len();
    let unfinished = running.unfinished();
    let error = match outcome {
        Ok(()) => {
            for (_, caller) in unfinished {
                caller.fail(DaemonError::Internal("the plugin did not answer the request".into()));
            }
            return;
        }
        Err(e) => e,
    };
    if given == 1 {
        tracing::warn!(%model, "request failed: {error}");
        unfinished
            .into_iter()
            .for_each(|(_, caller)| caller.fail(error.clone()));
        return;
    }
    tracing::warn!(
        %model,
        size = given,
        unfinished = unfinished.len(),
        "batch failed as a whole ({error}); running its unanswered requests again one at a time"
    );
    metrics.failed_batches.fetch_add(1, Ordering::Relaxed);
    for (index, (request, caller)) in unfinished.into_iter().enumerate() {
        if caller.streamed {
            tracing::info!(%model, index, "not run again: its client has partial responses already");
            caller.fail(error.clone());
        } else if !caller.wanted() {
            tracing::debug!(%model, index, "not run again: its client has gone");
        } else if caller.expired(Instant::now()) {
            caller.fail(DaemonError::DeadlineExceeded(format!(
                "the deadline passed while model {model} retried a failed batch; the request was not run again"
            )));
        } else {
            let alone = Batch {
                requests: vec![request.clone()],
            };
            let mut single = Running {
                requests: vec![request],
                callers: vec![Some(caller)],
                more: &nothing,
            };
            let outcome = run_once(&alone, &mut single, metrics, run);
            for (_, caller) in single.unfinished() {
                match &outcome {
                    Ok(()) => caller.fail(DaemonError::Internal("the plugin did not answer the request".into())),
                    Err(e) => {
                        tracing::warn!(%model, index, "failed again when run alone: {e}");
                        caller.fail(e.clone());
                    }
                }
            }
            if outcome.is_ok() {
                tracing::debug!(%model, index, "answered when run alone");
            }
        }
    }
}

/// One run of `batch`, with its metrics.
fn run_once<R>(batch: &Batch, running: &mut Running, metrics: &ModelMetrics, run: &mut R) -> Outcome
where
    R: FnMut(&Batch, &mut dyn BatchHost) -> Outcome,
{
    metrics.batch_size.observe(batch.requests.len() as f64);
    let started = Instant::now();
    let outcome = run(batch, running);
    metrics.inference_seconds.observe_duration(started.elapsed());
    outcome
}

impl Caller {
    /// Passes on a partial response (`None` only asks); false once the
    /// caller has gone or its deadline has passed (its handler answers
    /// DEADLINE_EXCEEDED then, whatever the plugin does), so that a plugin
    /// asking between pieces of long work stops there.
    fn emit(&mut self, chunk: Option<TaskResponse>) -> bool {
        if self.expired(Instant::now()) {
            return false;
        }
        match (chunk.and_then(|c| c.body), &self.partial) {
            (Some(body), Some(partial)) => {
                self.streamed = true;
                partial.send(body).is_ok() && !self.reply.is_closed()
            }
            _ => self.wanted(),
        }
    }

    fn answer(self, response: TaskResponse) {
        // Past its deadline the handler answers DEADLINE_EXCEEDED; so does
        // this, so that work the plugin stopped there (see `emit`) never
        // reaches the client as an answer.
        if self.expired(Instant::now()) {
            return self.fail(DaemonError::DeadlineExceeded(
                "the deadline passed while the request ran".into(),
            ));
        }
        let answer = match response.body {
            Some(task_response::Body::Error(e)) => Err(Error::from(e).into()),
            Some(body) => Ok(body),
            None => Err(DaemonError::Internal("plugin returned an empty response".into())),
        };
        let _ = self.reply.send(answer);
    }

    fn fail(self, error: DaemonError) {
        let _ = self.reply.send(Err(error));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use inferd_sdk::proto::api::{GenerateStreamResponse, RunInput, RunRequest, RunResponse, RunResult};
    use inferd_sdk::proto::{task_request, TaskRequest};
    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::metrics::Metrics;
    use crate::scheduler::{Partial, Reply};

    /// A job for `text`, its reply and (when streaming) its partial responses.
    fn job(
        text: &str,
        stream: bool,
        deadline: Option<Instant>,
    ) -> (
        Job,
        oneshot::Receiver<Reply>,
        Option<mpsc::UnboundedReceiver<task_response::Body>>,
    ) {
        let (reply, rx) = oneshot::channel();
        let (partial, partial_rx): (Option<Partial>, _) = if stream {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let request = TaskRequest {
            body: Some(task_request::Body::Run(RunRequest {
                inputs: vec![RunInput {
                    text: text.into(),
                    data: vec![],
                }],
                ..Default::default()
            })),
            stream,
        };
        let job = Job {
            id: 0,
            request,
            size: text.len(),
            arrived: Instant::now(),
            started: Default::default(),
            caller: Caller {
                reply,
                partial,
                deadline,
                streamed: false,
            },
        };
        (job, rx, partial_rx)
    }

    fn text(request: &TaskRequest) -> &str {
        match &request.body {
            Some(task_request::Body::Run(r)) => &r.inputs[0].text,
            _ => unreachable!(),
        }
    }

    fn echo(text: &str) -> TaskResponse {
        TaskResponse {
            body: Some(task_response::Body::Run(RunResponse {
                results: vec![RunResult {
                    output: None,
                    data: text.as_bytes().to_vec(),
                }],
            })),
        }
    }

    /// A stand-in plugin: fails any batch holding a "bad" request as a whole,
    /// after sending a partial response to each streaming request in it;
    /// echoes otherwise. Records the texts of every batch it runs.
    fn plugin(runs: &mut Vec<Vec<String>>) -> impl FnMut(&Batch, &mut dyn BatchHost) -> Outcome + '_ {
        move |batch, host| {
            let texts: Vec<String> = batch.requests.iter().map(|r| text(r).to_string()).collect();
            runs.push(texts.clone());
            if texts.iter().any(|t| t == "bad") {
                for (i, request) in batch.requests.iter().enumerate() {
                    if request.stream {
                        let chunk = task_response::Body::GenerateChunk(GenerateStreamResponse::default());
                        host.emit(i, Some(TaskResponse { body: Some(chunk) }));
                    }
                }
                return Err(Error::internal("plugin panicked in run: bad request").into());
            }
            answer_all(batch, host);
            Ok(())
        }
    }

    /// Echoes every request of `batch`.
    fn answer_all(batch: &Batch, host: &mut dyn BatchHost) {
        for (i, request) in batch.requests.iter().enumerate() {
            host.finish(i, echo(text(request)));
        }
    }

    fn echoed(reply: Reply) -> String {
        match reply {
            Ok(task_response::Body::Run(r)) => String::from_utf8(r.results[0].data.clone()).unwrap(),
            other => panic!("not an echo: {other:?}"),
        }
    }

    fn internal(reply: Reply) -> String {
        match reply {
            Err(DaemonError::Internal(m)) => m,
            other => panic!("not INTERNAL: {other:?}"),
        }
    }

    #[test]
    fn a_failing_request_batched_with_good_ones_fails_alone() {
        let metrics = Metrics::default().model("m");
        let (a, mut a_rx, _) = job("a", false, None);
        let (bad, mut bad_rx, _) = job("bad", false, None);
        let (b, mut b_rx, _) = job("b", false, None);
        let mut runs = vec![];
        serve(vec![a, bad, b], "m", &metrics, &nothing, &mut plugin(&mut runs));
        assert_eq!(echoed(a_rx.try_recv().unwrap()), "a");
        assert!(internal(bad_rx.try_recv().unwrap()).contains("bad request"));
        assert_eq!(echoed(b_rx.try_recv().unwrap()), "b");
        assert_eq!(runs, [vec!["a", "bad", "b"], vec!["a"], vec!["bad"], vec!["b"]]);
        assert_eq!(metrics.failed_batches.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_batch_that_succeeds_or_holds_one_request_runs_once() {
        let metrics = Metrics::default().model("m");
        let (a, mut a_rx, _) = job("a", false, None);
        let (b, mut b_rx, _) = job("b", false, None);
        let mut runs = vec![];
        serve(vec![a, b], "m", &metrics, &nothing, &mut plugin(&mut runs));
        assert_eq!(
            (echoed(a_rx.try_recv().unwrap()), echoed(b_rx.try_recv().unwrap())),
            ("a".into(), "b".into())
        );
        let (bad, mut bad_rx, _) = job("bad", false, None);
        serve(vec![bad], "m", &metrics, &nothing, &mut plugin(&mut runs));
        internal(bad_rx.try_recv().unwrap());
        assert_eq!(runs, [vec!["a", "b"], vec!["bad"]]);
        assert_eq!(metrics.failed_batches.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_streaming_request_that_has_partial_responses_is_not_run_again() {
        let metrics = Metrics::default().model("m");
        let (streamed, mut streamed_rx, partials) = job("s", true, None);
        let (bad, mut bad_rx, _) = job("bad", false, None);
        let (quiet, mut quiet_rx, _) = job("q", false, None);
        let mut partials = partials.unwrap();
        let mut runs = vec![];
        serve(
            vec![streamed, bad, quiet],
            "m",
            &metrics,
            &nothing,
            &mut plugin(&mut runs),
        );
        // Its client saw one partial response, then the batch's error.
        assert!(partials.try_recv().is_ok());
        assert!(partials.try_recv().is_err(), "a partial response sent twice");
        assert!(internal(streamed_rx.try_recv().unwrap()).contains("bad request"));
        internal(bad_rx.try_recv().unwrap());
        assert_eq!(echoed(quiet_rx.try_recv().unwrap()), "q");
        assert_eq!(runs, [vec!["s", "bad", "q"], vec!["bad"], vec!["q"]]);
    }

    #[test]
    fn a_running_request_past_its_deadline_is_no_longer_wanted_and_answers_deadline_exceeded() {
        let metrics = Metrics::default().model("m");
        let soon = Instant::now() + Duration::from_millis(20);
        let (late, mut late_rx, _) = job("late", false, Some(soon));
        let (open, mut open_rx, _) = job("open", false, None);
        let mut asked = vec![];
        serve(vec![late, open], "m", &metrics, &nothing, &mut |batch, host| {
            asked.push((host.emit(0, None), host.emit(1, None)));
            std::thread::sleep(Duration::from_millis(30));
            asked.push((host.emit(0, None), host.emit(1, None)));
            answer_all(batch, host);
            Ok(())
        });
        assert_eq!(asked, [(true, true), (false, true)]);
        assert!(matches!(late_rx.try_recv(), Ok(Err(DaemonError::DeadlineExceeded(_)))));
        assert_eq!(echoed(open_rx.try_recv().unwrap()), "open");
    }

    #[test]
    fn requests_whose_client_left_or_whose_deadline_passed_are_not_run_again() {
        let metrics = Metrics::default().model("m");
        let (gone, gone_rx, _) = job("gone", false, None);
        drop(gone_rx);
        // The deadline passes while the batch runs.
        let soon = Instant::now() + Duration::from_millis(20);
        let (late, mut late_rx, _) = job("late", false, Some(soon));
        let (bad, _bad_rx, _) = job("bad", false, None);
        let (good, mut good_rx, _) = job("good", false, None);
        let mut runs = vec![];
        let mut slow = plugin(&mut runs);
        serve(
            vec![gone, late, bad, good],
            "m",
            &metrics,
            &nothing,
            &mut |batch, host| {
                std::thread::sleep(Duration::from_millis(30));
                slow(batch, host)
            },
        );
        drop(slow);
        assert!(matches!(late_rx.try_recv(), Ok(Err(DaemonError::DeadlineExceeded(_)))));
        assert_eq!(echoed(good_rx.try_recv().unwrap()), "good");
        assert_eq!(runs, [vec!["gone", "late", "bad", "good"], vec!["bad"], vec!["good"]]);
    }

    #[test]
    fn a_running_batch_takes_in_waiting_requests_and_answers_each_when_done() {
        let metrics = Metrics::default().model("m");
        let (first, mut first_rx, _) = job("first", false, None);
        let (second, mut second_rx, _) = job("second", false, None);
        let (third, mut third_rx, _) = job("third", false, None);
        let waiting = std::sync::Mutex::new(vec![second, third]);
        let more = |max: usize| {
            let mut waiting = waiting.lock().unwrap();
            let n = max.min(waiting.len());
            waiting.drain(..n).collect()
        };
        let mut seen = vec![];
        serve(vec![first], "m", &metrics, &more, &mut |batch, host| {
            // The late arrivals join; the first finishes before they do.
            let taken = host.take(8);
            seen.push(taken.iter().map(|r| text(r).to_string()).collect::<Vec<_>>());
            host.finish(0, echo(text(&batch.requests[0])));
            for (k, request) in taken.iter().enumerate().rev() {
                host.finish(1 + k, echo(text(request)));
            }
            Ok(())
        });
        assert_eq!(seen, [vec!["second", "third"]]);
        assert_eq!(echoed(first_rx.try_recv().unwrap()), "first");
        assert_eq!(echoed(second_rx.try_recv().unwrap()), "second");
        assert_eq!(echoed(third_rx.try_recv().unwrap()), "third");
    }

    #[test]
    fn requests_taken_in_and_left_unanswered_by_a_failed_run_run_again_alone() {
        let metrics = Metrics::default().model("m");
        let (first, mut first_rx, _) = job("first", false, None);
        let (late, mut late_rx, _) = job("late", false, None);
        let waiting = std::sync::Mutex::new(vec![late]);
        let more = |max: usize| {
            let mut waiting = waiting.lock().unwrap();
            let n = max.min(waiting.len());
            waiting.drain(..n).collect()
        };
        let mut runs = 0;
        serve(vec![first], "m", &metrics, &more, &mut |batch, host| {
            runs += 1;
            if runs == 1 {
                host.take(1);
                host.finish(0, echo(text(&batch.requests[0])));
                return Err(Error::internal("plugin panicked in run").into());
            }
            answer_all(batch, host);
            Ok(())
        });
        assert_eq!(runs, 2, "only the unanswered request ran again");
        assert_eq!(echoed(first_rx.try_recv().unwrap()), "first");
        assert_eq!(echoed(late_rx.try_recv().unwrap()), "late");
    }
}
