//! The `extern "C"` functions behind [`crate::export_plugin!`]: they decode
//! the payloads, call the plugin's [`Task`], catch panics and encode results.
//! Plugin authors do not call these directly.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use prost::Message;

use crate::abi::{ByteSlice, EmitFn, HostCalls, OwnedBytes};
use crate::proto::{
    load_result, task_response, Batch, BatchResult, LoadRequest, LoadResult, TaskRequest, TaskResponse,
};
use crate::{Emitter, Error, Host, LoadContext, Task};

fn encode<M: Message>(message: &M) -> OwnedBytes {
    OwnedBytes::from_vec(message.encode_to_vec())
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    crate::panic_text(payload.as_ref()).unwrap_or_else(|| "unknown panic payload".to_string())
}

fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    Error::failure(format!("plugin panicked in {what}: {}", panic_message(payload)))
}

pub unsafe extern "C" fn manifest<T: Task>() -> OwnedBytes {
    let manifest = catch_unwind(T::manifest).unwrap_or_default();
    encode(&manifest)
}

/// INVALID_ARGUMENT when a load asked for a quantization the instance does
/// not report running with (a task that ignores the option).
fn check_quantize(ctx: &LoadContext, loaded: &crate::proto::LoadedModel) -> Result<(), Error> {
    let asked = ctx.quantize.as_str();
    if matches!(asked, "" | "none") || loaded.quantize == asked {
        return Ok(());
    }
    Err(Error::invalid_argument(format!(
        "quantize = {asked:?} is not available for the {} task (its plugin runs models as loaded); leave \
         quantize out for this model",
        ctx.task
    )))
}

/// INVALID_ARGUMENT when a load asked for a dtype the instance does not
/// report running in ("" reports float32: a task that ignores the option).
/// The daemon's default is a preference, not asked for.
fn check_dtype(ctx: &LoadContext, loaded: &crate::proto::LoadedModel) -> Result<(), Error> {
    let asked = crate::dtype_name(&ctx.dtype)?;
    let running = if loaded.dtype.is_empty() {
        "float32"
    } else {
        loaded.dtype.as_str()
    };
    if asked.is_empty() || asked == running || ctx.dtype_is_default {
        return Ok(());
    }
    let model = if ctx.architecture.is_empty() {
        String::new()
    } else {
        format!(" with {}", ctx.architecture)
    };
    Err(Error::invalid_argument(format!(
        "dtype = {asked:?} is not available for the {} task{model} (it runs in {running}); leave dtype out or ask for \
         {running}",
        ctx.task
    )))
}

/// Runs the task's warm-up request through a new instance: its seconds,
/// and why it was refused if it was. An INTERNAL error fails the load.
fn warm_up<T: Task>(task: &mut T, name: &str) -> Result<(f64, String), Error> {
    let Some(request) = task.warm_up_request(name) else {
        return Ok((0.0, String::new()));
    };
    let started = std::time::Instant::now();
    let mut answers = Emitter::detached(|emitter| task.run(vec![request], emitter));
    let seconds = started.elapsed().as_secs_f64();
    match answers.pop() {
        Some(Ok(_)) => Ok((seconds, String::new())),
        Some(Err(e)) if e.code == crate::Code::Internal => Err(Error::internal(format!(
            "the model failed its warm-up request: {}",
            e.message
        ))),
        Some(Err(e)) => Ok((seconds, e.to_string())),
        None => Err(Error::internal("the warm-up request got no answer")),
    }
}

pub unsafe extern "C" fn load<T: Task>(request: ByteSlice, instance: *mut *mut c_void) -> OwnedBytes {
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<_, Error> {
        let request = LoadRequest::decode(request.as_slice())
            .map_err(|e| Error::invalid_argument(format!("undecodable LoadRequest: {e}")))?;
        let ctx = LoadContext {
            model_dir: (!request.model_dir.is_empty()).then(|| PathBuf::from(&request.model_dir)),
            vocoder_dir: (!request.vocoder_dir.is_empty()).then(|| PathBuf::from(&request.vocoder_dir)),
            task: request.task,
            model_name: request.model_name,
            device: request.device,
            architecture: request.architecture,
            limits: request.limits,
            quantize: request.quantize,
            dtype: request.dtype,
            dtype_is_default: request.dtype_is_default,
        };
        let mut task = T::load(&ctx)?;
        let (seconds, refused) = warm_up(&mut task, &ctx.task)?;
        let mut loaded = task.describe();
        loaded.warm_up_seconds = seconds;
        loaded.warm_up_refused = refused;
        crate::limit::check_names(&ctx.limits, &loaded.limits)?;
        check_quantize(&ctx, &loaded)?;
        check_dtype(&ctx, &loaded)?;
        Ok((Box::new(task), loaded))
    }))
    .unwrap_or_else(|payload| Err(panicked("load", payload)));
    let result = match outcome {
        Ok((task, loaded)) => {
            *instance = Box::into_raw(task) as *mut c_void;
            load_result::Result::Ok(loaded)
        }
        Err(error) => load_result::Result::Error(error.into()),
    };
    encode(&LoadResult { result: Some(result) })
}

pub unsafe extern "C" fn run<T: Task>(instance: *mut c_void, batch: ByteSlice) -> OwnedBytes {
    let task = &mut *(instance as *mut T);
    run_batch(batch, |requests| {
        Emitter::detached(|emitter| task.run(requests, emitter))
    })
}

pub unsafe extern "C" fn run_stream<T: Task>(
    instance: *mut c_void,
    batch: ByteSlice,
    emit: EmitFn,
    emit_ctx: *mut c_void,
) -> OwnedBytes {
    let task = &mut *(instance as *mut T);
    let mut sink = |index: usize, chunk: Option<task_response::Body>| -> bool {
        let bytes = chunk
            .map(|body| TaskResponse { body: Some(body) }.encode_to_vec())
            .unwrap_or_default();
        // SAFETY: the daemon keeps `emit_ctx` alive for the whole call.
        unsafe { emit(emit_ctx, index, ByteSlice::new(&bytes)) }
    };
    run_batch(batch, |requests| task.run(requests, &mut Emitter::new(&mut sink)))
}

pub unsafe extern "C" fn run_joined<T: Task>(
    instance: *mut c_void,
    batch: ByteSlice,
    host: *const HostCalls,
    host_ctx: *mut c_void,
) -> OwnedBytes {
    let task = &mut *(instance as *mut T);
    // SAFETY: the daemon keeps `host` and `host_ctx` alive for the whole call.
    let calls = unsafe { &*host };
    let mut sink = |index: usize, chunk: Option<task_response::Body>| -> bool {
        let bytes = chunk
            .map(|body| TaskResponse { body: Some(body) }.encode_to_vec())
            .unwrap_or_default();
        unsafe { (calls.emit)(host_ctx, index, ByteSlice::new(&bytes)) }
    };
    let mut take = |max: usize| -> Vec<TaskRequest> {
        // The bytes are the daemon's, valid until the next call.
        let bytes = unsafe { (calls.take)(host_ctx, max).as_slice() };
        let taken = Batch::decode(bytes).map(|b| b.requests).unwrap_or_default();
        // A marked request panics the run it joins, as one in the batch does.
        crate::fault::panic_if_marked(&taken);
        taken
    };
    let mut finish = |index: usize, answer: Result<task_response::Body, Error>| {
        let bytes = into_response(answer).encode_to_vec();
        unsafe { (calls.finish)(host_ctx, index, ByteSlice::new(&bytes)) }
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<usize>, Error> {
        let batch =
            Batch::decode(batch.as_slice()).map_err(|e| Error::invalid_argument(format!("undecodable Batch: {e}")))?;
        crate::fault::panic_if_marked(&batch.requests);
        let mut host = Host::new(&mut sink, &mut take, &mut finish, batch.requests.len());
        task.run_joined(batch.requests, &mut host);
        Ok(host.unfinished())
    }))
    .unwrap_or_else(|payload| Err(panicked("run", payload)));
    let error = match outcome {
        Ok(unfinished) => {
            for index in unfinished {
                finish(
                    index,
                    Err(Error::internal(format!("the plugin did not answer request {index}"))),
                );
            }
            None
        }
        Err(error) => Some(error.into()),
    };
    encode(&BatchResult {
        responses: vec![],
        error,
    })
}

/// Decodes a batch, runs it, checks there is one answer per request, and
/// encodes the result; a panic fails the whole batch with INTERNAL.
unsafe fn run_batch(
    batch: ByteSlice,
    run: impl FnOnce(Vec<TaskRequest>) -> Vec<Result<task_response::Body, Error>>,
) -> OwnedBytes {
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<TaskResponse>, Error> {
        let batch =
            Batch::decode(batch.as_slice()).map_err(|e| Error::invalid_argument(format!("undecodable Batch: {e}")))?;
        crate::fault::panic_if_marked(&batch.requests);
        let n = batch.requests.len();
        let responses = run(batch.requests);
        if responses.len() != n {
            return Err(Error::internal(format!(
                "plugin returned {} responses for {n} requests",
                responses.len()
            )));
        }
        Ok(responses.into_iter().map(into_response).collect())
    }))
    .unwrap_or_else(|payload| Err(panicked("run", payload)));
    let result = match outcome {
        Ok(responses) => BatchResult { responses, error: None },
        Err(error) => BatchResult {
            responses: vec![],
            error: Some(error.into()),
        },
    };
    encode(&result)
}

pub unsafe extern "C" fn unload<T: Task>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    let task = Box::from_raw(instance as *mut T);
    // A panic in a destructor must not unwind into the daemon.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(task)));
}

pub unsafe extern "C" fn free(bytes: OwnedBytes) {
    if !bytes.ptr.is_null() {
        drop(bytes.into_vec());
    }
}

fn into_response(result: Result<task_response::Body, Error>) -> TaskResponse {
    let body = match result {
        Ok(body) => body,
        Err(error) => task_response::Body::Error(error.into()),
    };
    TaskResponse { body: Some(body) }
}
