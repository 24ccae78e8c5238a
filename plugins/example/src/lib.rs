//! An example inferd plugin: the task `word-count`, which needs no model.
//!
//! It is the template for writing your own plugin (see the README): implement
//! [`Task`], describe the task in `manifest`, hand each batch to a typed
//! handler (`dispatch::each` or `dispatch::typed`), and export it with
//! [`export_plugin!`]. Call it through `Inference/Run`:
//!
//! ```text
//! grpcurl -plaintext -d '{"task":"word-count","inputs":[{"text":"to be or not to be"}],
//!   "parameters":{"top":2}}' 127.0.0.1:50051 inferd.v1.Inference/Run
//! ```

use std::collections::HashMap;

use inferd_sdk::proto::api::{RunRequest, RunResponse, RunResult};
use inferd_sdk::proto::{task_response, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::values::{list, number, object, object_value, string, Params};
use inferd_sdk::{dispatch, export_plugin, Emitter, Error, LoadContext, Task};

pub struct WordCount;

impl Task for WordCount {
    fn manifest() -> Manifest {
        Manifest {
            name: "example".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Example plugin: counts words, without any model".into(),
            tasks: vec![TaskSpec {
                name: "word-count".into(),
                description: "Counts words, characters and lines; lists the most common words. \
                              Parameters: top (default 3), lowercase (default true)."
                    .into(),
                needs_model: false,
                ..Default::default()
            }],
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        match ctx.task.as_str() {
            "word-count" => Ok(WordCount),
            other => Err(Error::unimplemented(format!("example plugin has no task {other}"))),
        }
    }

    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<task_response::Body, Error>> {
        dispatch::each("word-count", batch, emitter, count_words)
    }
}

fn count_words(request: &RunRequest) -> Result<RunResponse, Error> {
    let params = Params::new(request.parameters.as_ref());
    params.only(&["top", "lowercase"])?;
    let top = params.uint("top", 3)? as usize;
    let lowercase = params.boolean("lowercase", true)?;

    let results = request
        .inputs
        .iter()
        .map(|input| {
            let text = &input.text;
            let words: Vec<String> = text
                .split(|c: char| !c.is_alphanumeric() && c != '\'')
                .filter(|w| !w.is_empty())
                .map(|w| if lowercase { w.to_lowercase() } else { w.to_string() })
                .collect();
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for w in &words {
                *counts.entry(w).or_default() += 1;
            }
            let mut common: Vec<(&str, usize)> = counts.into_iter().collect();
            // Most frequent first; ties alphabetically, so answers are stable.
            common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            common.truncate(top);
            let output =
                object([
                    ("words", number(words.len() as f64)),
                    ("characters", number(text.chars().count() as f64)),
                    ("lines", number(text.lines().count() as f64)),
                    (
                        "most_common",
                        list(common.into_iter().map(|(word, count)| {
                            object_value([("word", string(word)), ("count", number(count as f64))])
                        })),
                    ),
                ]);
            RunResult {
                output: Some(output),
                data: vec![],
            }
        })
        .collect();
    Ok(RunResponse { results })
}

export_plugin!(WordCount);

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_sdk::proto::api::RunInput;
    use inferd_sdk::proto::prost_types::value::Kind;

    fn field<'a>(r: &'a RunResult, name: &str) -> &'a Kind {
        r.output.as_ref().unwrap().fields[name].kind.as_ref().unwrap()
    }

    #[test]
    fn counts_words_and_ranks_the_most_common() {
        let request = RunRequest {
            inputs: vec![RunInput {
                text: "To be, or not to be:\nthat is the question.".into(),
                data: vec![],
            }],
            parameters: Some(object([("top", number(2.0))])),
            ..Default::default()
        };
        let response = count_words(&request).unwrap();
        let r = &response.results[0];
        assert_eq!(field(r, "words"), &Kind::NumberValue(10.0));
        assert_eq!(field(r, "lines"), &Kind::NumberValue(2.0));
        let Kind::ListValue(common) = field(r, "most_common") else {
            panic!()
        };
        assert_eq!(common.values.len(), 2);
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let request = RunRequest {
            parameters: Some(object([("topp", number(2.0))])),
            ..Default::default()
        };
        assert_eq!(
            count_words(&request).unwrap_err().code,
            inferd_sdk::Code::InvalidArgument
        );
    }
}
