//! Instance workers: the thread that owns one instance of a model loads it,
//! then runs the batches its queue hands it and answers each request.
//!
//! A batch that fails as a whole (the plugin panicked, or reported an error
//! for the batch instead of one answer per request) would otherwise fail
//! every request in it for the fault of one. So when a batch of several
//! requests fails, each of its requests runs again alone, and gets its own
//! answer: only the one that causes the failure gets the error again. This
//! is done here, not in the SDK, so that it holds for every plugin, whatever
//! its language. Not run again: a streaming request whose client has already
//! received partial responses (it would see them twice; it gets the batch's
//! error), and a request whose client has gone or whose deadline has passed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;

use inferd_sdk::proto::{task_response, Batch, LoadRequest, LoadedModel, TaskResponse};
use inferd_sdk::Error;

use super::{Caller, Job, Shared};
use crate::error::DaemonError;
use crate::metrics::ModelMetrics;
use crate::plugins::Plugin;
use crate::{heap, torch};

/// A batch this large (its requests' bytes) or this long may have needed
/// far more memory for a moment than the model holds (tokenizing a 15 MB
/// text takes gigabytes); once it is done, freed memory goes back to the
/// system, so that the daemon's size returns to where it was.
const LARGE_BATCH_BYTES: usize = 1 << 20;
const LONG_BATCH: Duration = Duration::from_secs(1);

/// One run of a batch: a response per request, or an error for the whole batch.
type Outcome = Result<Vec<TaskResponse>, Error>;

/// The worker thread of one instance, until its queue stops.
pub(super) fn run(
    plugin: Arc<Plugin>,
    request: LoadRequest,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<Result<(LoadedModel, usize), Error>>,
) {
    let model = request.model_name.clone();
    let device = request.device.clone();
    if let Some(threads) = shared.options.intra_op_threads {
        // OpenMP's thread count is per calling thread: set it on this one.
        torch::set_intra_op_threads(threads);
    }
    let started = Instant::now();
    let mut instance = match plugin.load(&request) {
        Ok((instance, loaded)) => {
            tracing::info!(%model, %device, elapsed_ms = started.elapsed().as_millis() as u64, "instance loaded");
            let _ = ready.send(Ok((loaded, torch::intra_op_threads())));
            instance
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while let Some(jobs) = shared.next_batch() {
        let span = tracing::debug_span!("batch", %model, %device, size = jobs.len());
        let _enter = span.enter();
        let started = Instant::now();
        for job in &jobs {
            shared.metrics.queue_seconds.observe_duration(started - job.arrived);
        }
        let bytes: usize = jobs.iter().map(|job| job.request.encoded_len()).sum();
        let running = heap::Running::start();
        serve(jobs, &model, &shared.metrics, &mut |batch, emit| {
            plugin.run(&mut instance, batch, emit)
        });
        drop(running);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "batch done");
        if bytes >= LARGE_BATCH_BYTES || started.elapsed() >= LONG_BATCH {
            heap::release_free_memory_soon();
        }
    }
    plugin.unload(instance);
    tracing::info!(%model, %device, "instance unloaded");
}

/// Runs `jobs` as one batch with `run` (the plugin's, on this worker's
/// instance) and answers each job; when a batch of several fails as a
/// whole, runs its requests again one at a time (see the module's doc).
fn serve<R>(jobs: Vec<Job>, model: &str, metrics: &ModelMetrics, run: &mut R)
where
    R: FnMut(&Batch, &mut dyn FnMut(usize, Option<TaskResponse>) -> bool) -> Outcome,
{
    let (requests, mut callers): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.request, j.caller)).unzip();
    let batch = Batch { requests };
    let error = match run_once(&batch, &mut callers, metrics, run) {
        Ok(responses) => {
            for (caller, response) in callers.into_iter().zip(responses) {
                caller.answer(response);
            }
            return;
        }
        Err(e) => DaemonError::from(e),
    };
    if callers.len() == 1 {
        tracing::warn!(%model, "request failed: {error}");
        callers.into_iter().for_each(|caller| caller.fail(error.clone()));
        return;
    }
    tracing::warn!(
        %model,
        size = callers.len(),
        "batch failed as a whole ({error}); running its requests again one at a time"
    );
    metrics.failed_batches.fetch_add(1, Ordering::Relaxed);
    for (index, (request, caller)) in batch.requests.into_iter().zip(callers).enumerate() {
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
                requests: vec![request],
            };
            let mut caller = vec![caller];
            match run_once(&alone, &mut caller, metrics, run) {
                Ok(responses) => {
                    tracing::debug!(%model, index, "answered when run alone");
                    caller.into_iter().zip(responses).for_each(|(c, r)| c.answer(r));
                }
                Err(e) => {
                    tracing::warn!(%model, index, "failed again when run alone: {e}");
                    caller.into_iter().for_each(|c| c.fail(e.clone().into()));
                }
            }
        }
    }
}

/// One run of `batch`, with its metrics; `callers[i]` waits for request `i`.
fn run_once<R>(batch: &Batch, callers: &mut [Caller], metrics: &ModelMetrics, run: &mut R) -> Outcome
where
    R: FnMut(&Batch, &mut dyn FnMut(usize, Option<TaskResponse>) -> bool) -> Outcome,
{
    metrics.batch_size.observe(callers.len() as f64);
    let started = Instant::now();
    let outcome = run(batch, &mut |index, chunk| {
        callers.get_mut(index).is_some_and(|caller| caller.emit(chunk))
    });
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
    fn plugin(
        runs: &mut Vec<Vec<String>>,
    ) -> impl FnMut(&Batch, &mut dyn FnMut(usize, Option<TaskResponse>) -> bool) -> Outcome + '_ {
        move |batch, emit| {
            let texts: Vec<String> = batch.requests.iter().map(|r| text(r).to_string()).collect();
            runs.push(texts.clone());
            if texts.iter().any(|t| t == "bad") {
                for (i, request) in batch.requests.iter().enumerate() {
                    if request.stream {
                        let chunk = task_response::Body::GenerateChunk(GenerateStreamResponse::default());
                        emit(i, Some(TaskResponse { body: Some(chunk) }));
                    }
                }
                return Err(Error::internal("plugin panicked in run: bad request"));
            }
            Ok(texts.iter().map(|t| echo(t)).collect())
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
        serve(vec![a, bad, b], "m", &metrics, &mut plugin(&mut runs));
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
        serve(vec![a, b], "m", &metrics, &mut plugin(&mut runs));
        assert_eq!(
            (echoed(a_rx.try_recv().unwrap()), echoed(b_rx.try_recv().unwrap())),
            ("a".into(), "b".into())
        );
        let (bad, mut bad_rx, _) = job("bad", false, None);
        serve(vec![bad], "m", &metrics, &mut plugin(&mut runs));
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
        serve(vec![streamed, bad, quiet], "m", &metrics, &mut plugin(&mut runs));
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
        serve(vec![late, open], "m", &metrics, &mut |batch, emit| {
            asked.push((emit(0, None), emit(1, None)));
            std::thread::sleep(Duration::from_millis(30));
            asked.push((emit(0, None), emit(1, None)));
            Ok(batch.requests.iter().map(|r| echo(text(r))).collect())
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
        serve(vec![gone, late, bad, good], "m", &metrics, &mut |batch, emit| {
            std::thread::sleep(Duration::from_millis(30));
            slow(batch, emit)
        });
        drop(slow);
        assert!(matches!(late_rx.try_recv(), Ok(Err(DaemonError::DeadlineExceeded(_)))));
        assert_eq!(echoed(good_rx.try_recv().unwrap()), "good");
        assert_eq!(runs, [vec!["gone", "late", "bad", "good"], vec!["bad"], vec!["good"]]);
    }
}
