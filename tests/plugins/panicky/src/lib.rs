//! Test-only plugin: the task `panic` panics when an input's text is "panic"
//! and echoes the text otherwise, so tests can check that a panic fails only
//! its own request and that the plugin keeps serving afterwards.

use inferd_sdk::proto::api::{RunRequest, RunResponse, RunResult};
use inferd_sdk::proto::{task_response, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::values::{object, string};
use inferd_sdk::{dispatch, export_plugin, Emitter, Error, LoadContext, Task};

pub struct Panicky;

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

    fn load(_ctx: &LoadContext) -> Result<Self, Error> {
        Ok(Panicky)
    }

    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<task_response::Body, Error>> {
        dispatch::each("panic", batch, emitter, |run: &RunRequest| {
            let mut results = vec![];
            for input in &run.inputs {
                if input.text == "panic" {
                    panic!("asked to panic");
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

export_plugin!(Panicky);
