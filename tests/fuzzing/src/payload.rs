//! `payload`: the plugin ABI's payloads. Bytes that decode as a `Batch`
//! (or a `TaskRequest`, `TaskResponse`, `BatchResult`) encode to bytes that
//! decode to the same message; and any bytes handed to a plugin as a batch
//! (the example plugin, through `run` and `run_stream`) get a `BatchResult`:
//! undecodable ones an INVALID_ARGUMENT for the whole batch, others one
//! answer per request, each the request's response or a client error,
//! never INTERNAL.

use std::cell::RefCell;

use inferd_plugin_example::WordCount;
use inferd_sdk::proto::{task_request, task_response, Batch, BatchResult, TaskRequest, TaskResponse};
use inferd_sdk::Code;
use prost::Message;

use crate::plugin::{self, Instance};

thread_local! {
    static WORD_COUNT: RefCell<Instance> = RefCell::new(
        Instance::load(plugin::table::<WordCount>(), "word-count", None).expect("word-count loads")
    );
}

pub fn payload(data: &[u8]) {
    round_trips::<Batch>(data);
    round_trips::<TaskRequest>(data);
    round_trips::<TaskResponse>(data);
    round_trips::<BatchResult>(data);
    WORD_COUNT.with(|instance| {
        let mut instance = instance.borrow_mut();
        let result = instance.run(data, None);
        let Ok(batch) = Batch::decode(data) else {
            assert!(result.responses.is_empty(), "answers to an undecodable batch");
            let error = inferd_sdk::Error::from(result.error.expect("an undecodable batch is refused"));
            assert_eq!(error.code, Code::InvalidArgument, "{error}");
            return;
        };
        check_answers(&batch, &result);
        // Streaming changes nothing for a task that does not stream.
        let mut chunks = Vec::new();
        let streamed = instance.run(data, Some(&mut chunks));
        assert!(chunks.is_empty(), "word-count streamed {chunks:?}");
        assert_eq!(
            streamed.encode_to_vec(),
            result.encode_to_vec(),
            "run and run_stream disagree"
        );
    });
}

/// Decoding the message's own encoding gives it back: compared as bytes,
/// so that a NaN score equals itself.
fn round_trips<M: Message + Default>(data: &[u8]) {
    let Ok(message) = M::decode(data) else {
        return;
    };
    let encoded = message.encode_to_vec();
    let again = M::decode(encoded.as_slice()).expect("an encoded message decodes");
    assert_eq!(
        again.encode_to_vec(),
        encoded,
        "a message changed through encode and decode"
    );
}

/// One answer per request: a RunResponse with a result per input for a
/// Run request, the wrong-RPC error (FAILED_PRECONDITION) for another RPC,
/// INVALID_ARGUMENT for bad parameters.
fn check_answers(batch: &Batch, result: &BatchResult) {
    assert!(result.error.is_none(), "the batch failed: {:?}", result.error);
    assert_eq!(result.responses.len(), batch.requests.len(), "one answer per request");
    for (request, response) in batch.requests.iter().zip(&result.responses) {
        match (&request.body, &response.body) {
            (Some(task_request::Body::Run(run)), Some(task_response::Body::Run(answer))) => {
                assert_eq!(answer.results.len(), run.inputs.len(), "one result per input");
            }
            (Some(task_request::Body::Run(_)), Some(task_response::Body::Error(error))) => {
                assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
            }
            (_, Some(task_response::Body::Error(error))) => {
                assert_eq!(error.code, Code::FailedPrecondition as i32, "{error:?}");
            }
            (request, answer) => panic!("{request:?} was answered {answer:?}"),
        }
    }
}
