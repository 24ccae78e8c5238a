//! Test-only plugin: the task `panic` panics when an input's text is "panic"
//! and echoes the text otherwise, so tests can check that a panic fails only
//! its own request and that the plugin keeps serving afterwards. Two texts
//! imitate LibTorch's failures, whose messages carry a C++ backtrace:
//! "torch-panic" panics as tch's non-`f_` calls do (the error Debug-formatted
//! into the panic message: one physical line of kilobytes, frames after `\n`
//! escapes), and "torch-error" answers its request with INTERNAL and the
//! error's Display (frames on lines of their own), as a plugin passing on a
//! `tch::TchError` does. And two end the process as C++ code can:
//! "segfault" raises SIGSEGV and "abort" aborts (process isolation's tests).
//! "sleep-N" takes N milliseconds (shutdown's tests).
//!
//! Its warm-up request depends on the name it is loaded under: a name
//! starting "warm-up-" warms up with the rest of the name as input
//! ("warm-up-panic", "warm-up-torch-error", "warm-up-refuse" refused
//! with INVALID_ARGUMENT, "warm-up-slow" taking 300 ms, "warm-up-sleep-N"
//! N ms); any other name
//! warms up with "hello".

use inferd_sdk::proto::api::{RunRequest, RunResponse, RunResult};
use inferd_sdk::proto::{task_request, task_response, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::values::{object, string};
use inferd_sdk::{dispatch, export_plugin, Emitter, Error, LoadContext, Task};

pub struct Panicky {
    warm_up_input: String,
}

impl Task for Panicky {
    fn manifest() -> Manifest {
        Manifest {
            name: "panicky".into(),
            version: "0.0.0".into(),
            description: "test plugin that panics on demand".into(),
            tasks: vec![TaskSpec {
                name: "panic".into(),
                needs_model: false,
                ..Default::default()
            }],
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        Ok(Panicky {
            warm_up_input: ctx.model_name.strip_prefix("warm-up-").unwrap_or("hello").to_string(),
        })
    }

    fn warm_up_request(&self, _task: &str) -> Option<TaskRequest> {
        Some(TaskRequest {
            body: Some(task_request::Body::Run(RunRequest {
                inputs: vec![inferd_sdk::proto::api::RunInput {
                    text: self.warm_up_input.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            stream: false,
        })
    }

    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<task_response::Body, Error>> {
        dispatch::each("panic", batch, emitter, |run: &RunRequest| {
            let mut results = vec![];
            for input in &run.inputs {
                match input.text.as_str() {
                    "panic" => panic!("asked to panic"),
                    // SAFETY: ending this process by a signal is what is asked
                    // (the default action: Rust's own handler would return).
                    "segfault" => unsafe {
                        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                        libc::raise(libc::SIGSEGV);
                    },
                    "abort" => std::process::abort(),
                    "refuse" => return Err(Error::invalid_argument("refused on demand")),
                    "slow" => std::thread::sleep(std::time::Duration::from_millis(300)),
                    text if text.starts_with("sleep-") => {
                        let ms = text["sleep-".len()..]
                            .parse()
                            .map_err(|_| Error::invalid_argument("sleep-N: N is milliseconds"))?;
                        std::thread::sleep(std::time::Duration::from_millis(ms));
                    }
                    "torch-panic" => panic!(
                        "called `Result::unwrap()` on an `Err` value: Torch({:?})",
                        torch_error_text()
                    ),
                    "torch-error" => {
                        return Err(Error::internal(format!("Internal torch error: {}", torch_error_text())))
                    }
                    _ => {}
                }
                results.push(RunResult {
                    output: Some(object([("echo", string(input.text.clone()))])),
                    data: vec![],
                });
            }
            Ok(RunResponse { results })
        })
    }
}

/// A LibTorch error's text: the message, where it was raised, then the C++
/// frames with their addresses.
fn torch_error_text() -> String {
    let frames: String = (0..48)
        .map(|i| {
            format!(
                "\nframe #{i}: at::native::index_select_out_cpu_(at::Tensor const&, long, at::Tensor const&, at::Tensor&) \
                 + 0x{:x} (0x7f3c2a1b{:04x} in /usr/lib/libtorch_cpu.so)",
                0x96 + 16 * i,
                0x4e86 + 32 * i
            )
        })
        .collect();
    format!(
        "index out of range in self\nException raised from operator() at \
         /pytorch/aten/src/ATen/native/TensorAdvancedIndexing.cpp:1193 (most recent call first):{frames}"
    )
}

export_plugin!(Panicky);
