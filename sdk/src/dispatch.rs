//! Typed dispatch: a task handles a batch of its own request type, and the
//! SDK does the rest. [`typed`] takes the requests of a batch that are of
//! the handler's type (the oneof matching), answers any other one with the
//! wrong-RPC error, calls the handler once with all of them (so that they
//! can share forward passes), and puts the answers back in the batch's
//! order. Partial responses and cancellation go through an [`Emitter`],
//! whose indices are the handler's own.

use inferd_proto::v1 as api;

use crate::proto::{task_request, task_response, TaskRequest};
use crate::{Error, Limit};

/// A request message of the public API: one arm of a batch's oneof.
pub trait ApiRequest: Sized {
    /// The RPC (or RPCs) that send it, named in the wrong-RPC error.
    const RPC: &'static str;
    /// The message, or None when the body is another arm.
    fn take(body: task_request::Body) -> Option<Self>;
    /// How many inputs (texts, images, audio files, ...) it carries.
    fn inputs(&self) -> usize;
}

/// A response message of the public API (or a partial one): one arm of a
/// response's oneof.
pub trait ApiResponse {
    fn into_body(self) -> task_response::Body;
}

macro_rules! api_messages {
    ($($request:ident => $arm:ident, $rpc:literal;)*) => {$(
        impl ApiRequest for api::$request {
            const RPC: &'static str = $rpc;
            fn take(body: task_request::Body) -> Option<Self> {
                match body {
                    task_request::Body::$arm(r) => Some(r),
                    _ => None,
                }
            }
            fn inputs(&self) -> usize {
                self.inputs.len()
            }
        }
    )*};
}

api_messages! {
    ClassifyRequest => Classify, "Inference/Classify";
    RunRequest => Run, "Inference/Run";
    ZeroShotClassifyRequest => ZeroShot, "Inference/ZeroShotClassify";
    FillMaskRequest => FillMask, "Inference/FillMask";
    ClassifyTokensRequest => ClassifyTokens, "Inference/ClassifyTokens";
    AnswerQuestionRequest => AnswerQuestion, "Inference/AnswerQuestion";
    EmbedRequest => Embed, "Inference/Embed";
    GenerateRequest => Generate, "Inference/Generate or Inference/GenerateStream";
    ClassifyImageRequest => ClassifyImage, "Inference/ClassifyImage";
    DetectObjectsRequest => DetectObjects, "Inference/DetectObjects";
    EstimateDepthRequest => EstimateDepth, "Inference/EstimateDepth";
    SegmentImageRequest => SegmentImage, "Inference/SegmentImage";
    TranscribeRequest => Transcribe, "Inference/Transcribe or Inference/TranscribeStream";
    SummarizeRequest => Summarize, "Inference/Summarize";
    TranslateRequest => Translate, "Inference/Translate";
    SynthesizeRequest => Synthesize, "Inference/Synthesize";
}

macro_rules! api_responses {
    ($($response:ident => $arm:ident;)*) => {$(
        impl ApiResponse for api::$response {
            fn into_body(self) -> task_response::Body {
                task_response::Body::$arm(self)
            }
        }
    )*};
}

api_responses! {
    ClassifyResponse => Classify;
    RunResponse => Run;
    ZeroShotClassifyResponse => ZeroShot;
    FillMaskResponse => FillMask;
    ClassifyTokensResponse => ClassifyTokens;
    AnswerQuestionResponse => AnswerQuestion;
    EmbedResponse => Embed;
    GenerateResponse => Generate;
    GenerateStreamResponse => GenerateChunk;
    ClassifyImageResponse => ClassifyImage;
    DetectObjectsResponse => DetectObjects;
    EstimateDepthResponse => EstimateDepth;
    SegmentImageResponse => SegmentImage;
    TranscribeResponse => Transcribe;
    TranscribeStreamResponse => TranscribeChunk;
    SummarizeResponse => Summarize;
    TranslateResponse => Translate;
    SynthesizeResponse => Synthesize;
}

/// One request of a batch, and whether its client wants partial responses.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming<R> {
    pub request: R,
    pub stream: bool,
}

/// The raw sink the glue hands a task: `(i, Some(chunk))` sends a partial
/// response of request `i`, `(i, None)` only asks; false when its client
/// has gone away.
pub(crate) type Sink<'a> = dyn FnMut(usize, Option<task_response::Body>) -> bool + 'a;

/// Sends partial responses of a batch's requests and tells whether their
/// clients still wait. Indices are those of the requests the holder was
/// given.
pub struct Emitter<'a> {
    sink: &'a mut Sink<'a>,
    /// The batch index of each of the holder's requests; None: the same.
    positions: Option<Vec<usize>>,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(sink: &'a mut Sink<'a>) -> Self {
        Emitter { sink, positions: None }
    }

    /// An emitter that sends nothing and whose clients always wait: for
    /// running a batch outside the daemon (tests, benchmarks).
    pub fn detached<R>(run: impl FnOnce(&mut Emitter) -> R) -> R {
        let mut sink = |_: usize, _: Option<task_response::Body>| true;
        run(&mut Emitter::new(&mut sink))
    }

    fn position(&self, i: usize) -> usize {
        self.positions.as_ref().map_or(i, |p| p[i])
    }

    /// Sends a partial response of request `i`; false once its client has
    /// gone away (stop working on it: its answer will be dropped).
    pub fn send(&mut self, i: usize, chunk: impl ApiResponse) -> bool {
        let at = self.position(i);
        (self.sink)(at, Some(chunk.into_body()))
    }

    /// Whether request `i`'s client still waits for it: false once it has
    /// gone or (in the daemon) its deadline has passed. Long work asks
    /// between its pieces and stops there.
    pub fn wanted(&mut self, i: usize) -> bool {
        let at = self.position(i);
        (self.sink)(at, None)
    }

    /// Runs `run` with a [`Host`] that sends partial responses through this
    /// emitter, offers no more requests and keeps the answers (None where
    /// a request was never finished): a task's `run` served by the code it
    /// has for joined batches.
    pub fn as_host<T>(
        &mut self,
        given: usize,
        run: impl FnOnce(&mut Host) -> T,
    ) -> (T, Vec<Option<Result<task_response::Body, Error>>>) {
        let mut sink = |i: usize, chunk: Option<task_response::Body>| {
            let at = self.position(i);
            (self.sink)(at, chunk)
        };
        let mut take = |_: usize| Vec::new();
        let mut answers: Vec<Option<Result<task_response::Body, Error>>> = (0..given).map(|_| None).collect();
        let mut finish = |i: usize, answer| {
            if let Some(slot) = answers.get_mut(i) {
                *slot = Some(answer);
            }
        };
        let value = run(&mut Host::new(&mut sink, &mut take, &mut finish, given));
        (value, answers)
    }

    /// The same sink for a subset of the requests: `positions[k]` is the
    /// index here of the subset's request `k`.
    fn narrow(&mut self, positions: Vec<usize>) -> Emitter<'_> {
        let positions = positions.into_iter().map(|k| self.position(k)).collect();
        Emitter {
            sink: &mut *self.sink,
            positions: Some(positions),
        }
    }
}

/// The daemon's side of a batch that may grow while it runs (continuous
/// batching, [`crate::Task::run_joined`]): partial responses and "still
/// wanted?" as an [`Emitter`], requests that arrived meanwhile
/// (`take`), and each request's final answer as soon as it is ready
/// (`finish`). Indices: the batch's requests are 0..n, taken ones n, n+1, ...
pub struct Host<'a> {
    sink: &'a mut Sink<'a>,
    take: &'a mut dyn FnMut(usize) -> Vec<TaskRequest>,
    finish: &'a mut dyn FnMut(usize, Result<task_response::Body, Error>),
    finished: Vec<bool>,
}

impl<'a> Host<'a> {
    pub(crate) fn new(
        sink: &'a mut Sink<'a>,
        take: &'a mut dyn FnMut(usize) -> Vec<TaskRequest>,
        finish: &'a mut dyn FnMut(usize, Result<task_response::Body, Error>),
        given: usize,
    ) -> Self {
        Host {
            sink,
            take,
            finish,
            finished: vec![false; given],
        }
    }

    /// Runs `run` with a host that offers `more` (all of it at the first
    /// `take`, then nothing) and keeps the answers: for running a batch
    /// outside the daemon (tests, benchmarks). Returns `run`'s value and
    /// each request's answer (None where it was never finished).
    pub fn detached<T>(
        given: usize,
        more: Vec<TaskRequest>,
        run: impl FnOnce(&mut Host) -> T,
    ) -> (T, Vec<Option<Result<task_response::Body, Error>>>) {
        let mut sink = |_: usize, _: Option<task_response::Body>| true;
        let mut more = Some(more);
        let mut take = |max: usize| {
            let mut waiting = more.take().unwrap_or_default();
            let rest = waiting.split_off(max.min(waiting.len()));
            more = Some(rest);
            waiting
        };
        let mut answers: Vec<Option<Result<task_response::Body, Error>>> = Vec::new();
        let mut finish = |i: usize, answer| {
            if answers.len() <= i {
                answers.resize_with(i + 1, || None);
            }
            answers[i] = Some(answer);
        };
        let value = run(&mut Host::new(&mut sink, &mut take, &mut finish, given));
        (value, answers)
    }

    /// Partial responses and "still wanted?", indexed like the requests.
    pub fn emitter(&mut self) -> Emitter<'_> {
        Emitter {
            sink: &mut *self.sink,
            positions: None,
        }
    }

    /// Up to `max` requests that arrived since the batch started, with
    /// their indices; none when none waits.
    pub fn take(&mut self, max: usize) -> Vec<(usize, TaskRequest)> {
        if max == 0 {
            return vec![];
        }
        let taken = (self.take)(max);
        let first = self.finished.len();
        self.finished.resize(first + taken.len(), false);
        taken.into_iter().enumerate().map(|(k, r)| (first + k, r)).collect()
    }

    /// Request `index`'s final answer, sent to its client now; a second
    /// answer (or one for an index never given) is ignored.
    pub fn finish(&mut self, index: usize, answer: Result<task_response::Body, Error>) {
        if let Some(done @ false) = self.finished.get_mut(index) {
            *done = true;
            (self.finish)(index, answer);
        }
    }

    /// The requests given so far that have no answer yet.
    pub fn unfinished(&self) -> Vec<usize> {
        (0..self.finished.len()).filter(|&i| !self.finished[i]).collect()
    }
}

/// A [`Host`] seen by a handler of one request type `R` answering `O`s
/// (see [`joined`]): requests of another RPC are answered with the
/// wrong-RPC error as they are taken, and indices are the handler's own.
pub struct Joiner<'h, 'a, R, O> {
    host: &'h mut Host<'a>,
    task: &'h str,
    /// The host's index of each of the handler's requests.
    positions: Vec<usize>,
    /// Requests given back by [`Joiner::hold`], taken again before any
    /// that arrived later.
    held: std::collections::VecDeque<Incoming<R>>,
    _types: std::marker::PhantomData<(R, O)>,
}

impl<R: ApiRequest, O: ApiResponse> Joiner<'_, '_, R, O> {
    /// Gives the batch's requests (all of them, in the order given) back,
    /// to be taken again by [`Joiner::take`] and [`Joiner::take_within`]
    /// before any that arrived later: a handler that starts its decode with
    /// `take_within` starts it within the model's budgets, however many
    /// requests the batch brought; the others wait their turn as arrivals
    /// do.
    pub fn hold(&mut self, batch: Vec<Incoming<R>>) {
        debug_assert!(self.held.is_empty(), "the batch is held once, before anything is taken");
        self.held.extend(batch);
    }

    /// Up to `max` requests that arrived meanwhile (those held first),
    /// numbered on from the handler's earlier ones.
    pub fn take(&mut self, max: usize) -> Vec<Incoming<R>> {
        let mut taken: Vec<Incoming<R>> = self.held.drain(..max.min(self.held.len())).collect();
        if taken.len() == max || !self.held.is_empty() {
            return taken;
        }
        let (arrived, positions, others) = sort_out::<R>(self.host.take(max - taken.len()));
        self.positions.extend(positions);
        for index in others {
            self.host.finish(index, Err(wrong_rpc::<R>(self.task)));
        }
        taken.extend(arrived);
        taken
    }

    /// The next request that arrived meanwhile, if a running decode holding
    /// `sequences` sequences and `tokens` tokens is under the model's
    /// budgets (`max_batch_sequences`, `max_batch_tokens`). One at a time,
    /// so that the caller counts what each holds before taking the next.
    pub fn take_within(
        &mut self,
        sequences: usize,
        tokens: u64,
        max_sequences: &Limit,
        max_tokens: &Limit,
    ) -> Option<Incoming<R>> {
        if sequences as u64 >= max_sequences.max || tokens >= max_tokens.max {
            return None;
        }
        self.take(1).pop()
    }

    /// Whether request `i`'s client still waits ([`Emitter::wanted`]).
    pub fn wanted(&mut self, i: usize) -> bool {
        let at = self.positions[i];
        (self.host.sink)(at, None)
    }

    /// Sends a partial response of request `i` ([`Emitter::send`]).
    pub fn send(&mut self, i: usize, chunk: impl ApiResponse) -> bool {
        let at = self.positions[i];
        (self.host.sink)(at, Some(chunk.into_body()))
    }

    /// Request `i`'s final answer, sent now.
    pub fn finish(&mut self, i: usize, answer: Result<O, Error>) {
        let at = self.positions[i];
        self.host.finish(at, answer.map(ApiResponse::into_body));
    }

    /// Partial responses and "still wanted?", in the handler's indices.
    pub fn emitter(&mut self) -> Emitter<'_> {
        Emitter {
            sink: &mut *self.host.sink,
            positions: Some(self.positions.clone()),
        }
    }

    /// How many requests the handler has been given.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// [`typed`] for a batch that may grow: the handler gets the batch's `R`s
/// and a [`Joiner`] to take more as they arrive and to finish each one
/// when it is done. Requests it leaves unfinished get an INTERNAL error.
pub fn joined<R: ApiRequest, O: ApiResponse>(
    task: &str,
    batch: Vec<TaskRequest>,
    host: &mut Host,
    handler: impl FnOnce(Vec<Incoming<R>>, &mut Joiner<R, O>),
) {
    let (accepted, positions, others) = sort_out::<R>(batch.into_iter().enumerate());
    for i in others {
        host.finish(i, Err(wrong_rpc::<R>(task)));
    }
    let mut joiner = Joiner {
        host,
        task,
        positions,
        held: Default::default(),
        _types: std::marker::PhantomData,
    };
    handler(accepted, &mut joiner);
    for i in 0..joiner.positions.len() {
        let at = joiner.positions[i];
        joiner.host.finish(
            at,
            Err(Error::internal(format!(
                "the {task} handler did not answer request {i}"
            ))),
        );
    }
}

/// The requests that are `R`s, with their indices, and the indices of
/// the others (requests of another RPC).
fn sort_out<R: ApiRequest>(
    requests: impl IntoIterator<Item = (usize, TaskRequest)>,
) -> (Vec<Incoming<R>>, Vec<usize>, Vec<usize>) {
    let (mut accepted, mut positions, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for (i, request) in requests {
        match request.body.and_then(R::take) {
            Some(r) => {
                accepted.push(Incoming {
                    request: r,
                    stream: request.stream,
                });
                positions.push(i);
            }
            None => others.push(i),
        }
    }
    (accepted, positions, others)
}

/// The error for a request of another RPC than the task's.
fn wrong_rpc<R: ApiRequest>(task: &str) -> Error {
    Error::failed_precondition(format!("this model serves {task}; call {}", R::RPC))
}

/// Runs the requests of `batch` that are `R`s through `handler` in one
/// call, with an emitter indexed like the requests it receives; any other
/// request is answered with the wrong-RPC error naming `task`. Returns one
/// result per request of the batch, in order. A handler must return one
/// result per request it was given.
pub fn typed<R: ApiRequest, O: ApiResponse>(
    task: &str,
    batch: Vec<TaskRequest>,
    emitter: &mut Emitter,
    handler: impl FnOnce(Vec<Incoming<R>>, &mut Emitter) -> Vec<Result<O, Error>>,
) -> Vec<Result<task_response::Body, Error>> {
    let mut slots: Vec<Option<Result<task_response::Body, Error>>> = (0..batch.len()).map(|_| None).collect();
    let (accepted, positions, others) = sort_out::<R>(batch.into_iter().enumerate());
    for i in others {
        slots[i] = Some(Err(wrong_rpc::<R>(task)));
    }
    let expected = accepted.len();
    let answers = if accepted.is_empty() {
        vec![]
    } else {
        handler(accepted, &mut emitter.narrow(positions))
    };
    if answers.len() != expected {
        let error = Error::internal(format!(
            "the {task} handler returned {} answers for {expected} requests",
            answers.len()
        ));
        return slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(error.clone())))
            .collect();
    }
    let mut answers = answers.into_iter();
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| answers.next().expect("counted above").map(ApiResponse::into_body)))
        .collect()
}

/// [`typed`] for handlers that take their requests together and do not
/// stream: the handler gets the requests and `wanted(i)`, false once
/// request `i`'s client has gone away or its deadline has passed.
pub fn together<R: ApiRequest, O: ApiResponse>(
    task: &str,
    batch: Vec<TaskRequest>,
    emitter: &mut Emitter,
    handler: impl FnOnce(&[R], &mut dyn FnMut(usize) -> bool) -> Vec<Result<O, Error>>,
) -> Vec<Result<task_response::Body, Error>> {
    typed(task, batch, emitter, |requests: Vec<Incoming<R>>, emitter| {
        let requests: Vec<R> = requests.into_iter().map(|r| r.request).collect();
        handler(&requests, &mut |i| emitter.wanted(i))
    })
}

/// [`together`], but a request with more inputs than `inputs` allows is
/// refused (RESOURCE_EXHAUSTED, naming the limit) before the handler runs;
/// the handler gets the others, indexed among themselves.
pub fn together_within<R: ApiRequest, O: ApiResponse>(
    task: &str,
    batch: Vec<TaskRequest>,
    emitter: &mut Emitter,
    inputs: &Limit,
    handler: impl FnOnce(&[R], &mut dyn FnMut(usize) -> bool) -> Vec<Result<O, Error>>,
) -> Vec<Result<task_response::Body, Error>> {
    typed(task, batch, emitter, |requests: Vec<Incoming<R>>, emitter| {
        let mut slots = Vec::with_capacity(requests.len());
        let (mut kept, mut positions) = (Vec::new(), Vec::new());
        for (i, incoming) in requests.into_iter().enumerate() {
            match inputs.check(incoming.request.inputs() as u64, "inputs") {
                Ok(()) => {
                    kept.push(incoming.request);
                    positions.push(i);
                    slots.push(None);
                }
                Err(refused) => slots.push(Some(Err(refused))),
            }
        }
        let mut answers = handler(&kept, &mut |k| emitter.wanted(positions[k])).into_iter();
        // A short answer list leaves the result short, which `typed` reports.
        slots
            .into_iter()
            .map_while(|slot| slot.or_else(|| answers.next()))
            .collect()
    })
}

/// [`typed`] for handlers that answer each request on its own.
pub fn each<R: ApiRequest, O: ApiResponse>(
    task: &str,
    batch: Vec<TaskRequest>,
    emitter: &mut Emitter,
    mut handler: impl FnMut(&R) -> Result<O, Error>,
) -> Vec<Result<task_response::Body, Error>> {
    typed(task, batch, emitter, |requests: Vec<Incoming<R>>, _| {
        requests.iter().map(|r| handler(&r.request)).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{ClassifyRequest, ClassifyResponse, RunRequest};

    fn request(body: task_request::Body, stream: bool) -> TaskRequest {
        TaskRequest {
            body: Some(body),
            stream,
        }
    }

    #[test]
    fn requests_of_the_task_are_handled_together_and_answers_keep_the_batch_order() {
        let batch = vec![
            request(task_request::Body::Classify(ClassifyRequest::default()), false),
            request(task_request::Body::Run(RunRequest::default()), false),
            request(
                task_request::Body::Classify(ClassifyRequest {
                    top_k: Some(3),
                    ..Default::default()
                }),
                true,
            ),
        ];
        let mut calls = 0;
        let answers = Emitter::detached(|emitter| {
            typed(
                "text-classification",
                batch,
                emitter,
                |requests: Vec<Incoming<ClassifyRequest>>, _| {
                    calls += 1;
                    assert_eq!(requests.len(), 2);
                    assert!(requests[1].stream && requests[1].request.top_k == Some(3));
                    requests.iter().map(|_| Ok(ClassifyResponse::default())).collect()
                },
            )
        });
        assert_eq!(calls, 1);
        assert!(matches!(answers[0], Ok(task_response::Body::Classify(_))));
        let wrong = answers[1].as_ref().unwrap_err();
        assert_eq!(wrong.code, crate::Code::FailedPrecondition);
        assert!(wrong.message.contains("Inference/Classify"), "{}", wrong.message);
        assert!(matches!(answers[2], Ok(task_response::Body::Classify(_))));
    }

    #[test]
    fn the_emitter_speaks_in_the_handlers_indices() {
        let batch = vec![
            request(task_request::Body::Run(RunRequest::default()), false),
            request(task_request::Body::Classify(ClassifyRequest::default()), true),
        ];
        let mut seen = Vec::new();
        let mut sink = |i: usize, chunk: Option<task_response::Body>| {
            seen.push((i, chunk.is_some()));
            i != 1
        };
        let mut emitter = Emitter::new(&mut sink);
        typed(
            "text-classification",
            batch,
            &mut emitter,
            |requests: Vec<Incoming<ClassifyRequest>>, e| {
                assert!(!e.wanted(0));
                assert!(!e.send(0, ClassifyResponse::default()));
                requests.iter().map(|_| Ok(ClassifyResponse::default())).collect()
            },
        );
        assert_eq!(seen, vec![(1, false), (1, true)]);
    }

    #[test]
    fn a_handler_that_loses_answers_fails_its_requests_not_the_others() {
        let batch = vec![
            request(task_request::Body::Classify(ClassifyRequest::default()), false),
            request(task_request::Body::Run(RunRequest::default()), false),
        ];
        let answers = Emitter::detached(|emitter| {
            typed(
                "text-classification",
                batch,
                emitter,
                |_: Vec<Incoming<ClassifyRequest>>, _| Vec::<Result<ClassifyResponse, Error>>::new(),
            )
        });
        assert_eq!(answers[0].as_ref().unwrap_err().code, crate::Code::Internal);
        assert_eq!(answers[1].as_ref().unwrap_err().code, crate::Code::FailedPrecondition);
    }

    /// A Classify request with `top_k`, which tells requests apart.
    fn classify(top_k: Option<u32>) -> TaskRequest {
        request(
            task_request::Body::Classify(ClassifyRequest {
                top_k,
                ..Default::default()
            }),
            false,
        )
    }

    #[test]
    fn a_joined_handler_takes_arrivals_and_every_request_ends_once() {
        let batch = vec![
            classify(Some(1)),
            request(task_request::Body::Run(RunRequest::default()), false),
        ];
        let arrivals = vec![
            classify(Some(2)),
            request(task_request::Body::Run(RunRequest::default()), false),
            classify(Some(3)),
        ];
        let ((), answers) = Host::detached(batch.len(), arrivals, |host| {
            joined(
                "text-classification",
                batch,
                host,
                |requests: Vec<Incoming<ClassifyRequest>>, joiner: &mut Joiner<ClassifyRequest, ClassifyResponse>| {
                    assert_eq!(requests.len(), 1);
                    let taken = joiner.take(8);
                    // Its own requests, numbered on; the Run was answered.
                    assert_eq!(
                        taken.iter().map(|r| r.request.top_k).collect::<Vec<_>>(),
                        [Some(2), Some(3)]
                    );
                    assert_eq!(joiner.len(), 3);
                    joiner.finish(2, Ok(ClassifyResponse::default()));
                    joiner.finish(2, Err(Error::internal("a second answer is ignored")));
                    joiner.finish(0, Ok(ClassifyResponse::default()));
                    // Request 1 is left unanswered.
                },
            )
        });
        assert_eq!(answers.len(), 5);
        assert!(matches!(answers[0], Some(Ok(task_response::Body::Classify(_)))));
        let wrong = |a: &Option<Result<task_response::Body, Error>>| {
            a.as_ref()
                .unwrap()
                .as_ref()
                .unwrap_err()
                .message
                .contains("call Inference/Classify")
        };
        assert!(wrong(&answers[1]) && wrong(&answers[3]));
        let unanswered = answers[2].as_ref().unwrap().as_ref().unwrap_err();
        assert!(
            unanswered.message.contains("did not answer request 1"),
            "{unanswered:?}"
        );
        assert!(matches!(answers[4], Some(Ok(task_response::Body::Classify(_)))));
    }

    #[test]
    fn a_held_batch_is_taken_within_the_budgets_before_later_arrivals() {
        let batch = vec![classify(Some(1)), classify(Some(2)), classify(Some(3))];
        let arrivals = vec![classify(Some(4))];
        let sequences = Limit::new("INFERD_TEST_SEQUENCES", 2);
        let tokens = Limit::new("INFERD_TEST_TOKENS", 100);
        let ((), answers) = Host::detached(batch.len(), arrivals, |host| {
            joined(
                "text-classification",
                batch,
                host,
                |requests: Vec<Incoming<ClassifyRequest>>, joiner: &mut Joiner<ClassifyRequest, ClassifyResponse>| {
                    joiner.hold(requests);
                    let top_k = |r: Option<Incoming<ClassifyRequest>>| r.map(|r| r.request.top_k.unwrap());
                    // One sequence each: two start, the third waits for room.
                    assert_eq!(top_k(joiner.take_within(0, 0, &sequences, &tokens)), Some(1));
                    assert_eq!(top_k(joiner.take_within(1, 0, &sequences, &tokens)), Some(2));
                    assert_eq!(top_k(joiner.take_within(2, 0, &sequences, &tokens)), None);
                    assert_eq!(top_k(joiner.take_within(0, 100, &sequences, &tokens)), None);
                    // Room again: the batch's third, then the later arrival.
                    assert_eq!(top_k(joiner.take_within(1, 0, &sequences, &tokens)), Some(3));
                    assert_eq!(top_k(joiner.take_within(1, 0, &sequences, &tokens)), Some(4));
                    assert_eq!(joiner.len(), 4);
                    for i in 0..4 {
                        joiner.finish(i, Ok(ClassifyResponse::default()));
                    }
                },
            )
        });
        assert_eq!(answers.len(), 4);
        assert!(answers
            .iter()
            .all(|a| matches!(a, Some(Ok(task_response::Body::Classify(_))))));
    }
}
