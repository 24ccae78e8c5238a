//! The inferd plugin for text tasks. Each task has its own module with the
//! pipeline() logic; the models come from `inferd-models`.

pub mod classification;

use inferd_models::auto::{
    load_sequence_classifier, SequenceClassifier, SEQUENCE_CLASSIFICATION_ARCHITECTURES,
};
use inferd_models::device::parse_device;
use inferd_sdk::proto::{
    task_request, task_response, LoadedModel, Manifest, TaskRequest, TaskSpec,
};
use inferd_sdk::{export_plugin, Error, LoadContext, Task};

/// One loaded model, serving one task.
pub enum TextTask {
    Classification(SequenceClassifier),
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Task for TextTask {
    fn manifest() -> Manifest {
        Manifest {
            name: "text".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Text tasks on BERT-family models (LibTorch)".into(),
            tasks: vec![TaskSpec {
                name: "text-classification".into(),
                aliases: strings(&["sentiment-analysis"]),
                default_model: "distilbert/distilbert-base-uncased-finetuned-sst-2-english".into(),
                architectures: strings(SEQUENCE_CLASSIFICATION_ARCHITECTURES),
                needs_model: true,
                description: "Classify a text or a text pair (Inference/Classify)".into(),
            }],
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        let device = parse_device(&ctx.device)?;
        let dir = ctx.model_dir.as_deref().ok_or_else(|| {
            Error::invalid_argument(format!("task {} needs a model source", ctx.task))
        })?;
        match ctx.task.as_str() {
            "text-classification" => Ok(TextTask::Classification(load_sequence_classifier(
                dir, device,
            )?)),
            other => Err(Error::unimplemented(format!(
                "the text plugin has no task {other}"
            ))),
        }
    }

    fn describe(&self) -> LoadedModel {
        match self {
            TextTask::Classification(m) => LoadedModel {
                memory_bytes: m.memory_bytes,
                labels: m.labels.clone(),
            },
        }
    }

    fn run(&mut self, batch: Vec<TaskRequest>) -> Vec<Result<task_response::Body, Error>> {
        match self {
            TextTask::Classification(model) => {
                // Requests of another kind fail alone; the rest share forward passes.
                let mut slots: Vec<Option<Result<task_response::Body, Error>>> = Vec::new();
                let mut classify = Vec::new();
                for request in batch {
                    match request.body {
                        Some(task_request::Body::Classify(r)) => {
                            classify.push(r);
                            slots.push(None);
                        }
                        _ => slots.push(Some(Err(Error::failed_precondition(
                            "this model serves text-classification; call Inference/Classify",
                        )))),
                    }
                }
                let mut answers = classification::classify(model, &classify).into_iter();
                slots
                    .into_iter()
                    .map(|slot| {
                        slot.unwrap_or_else(|| {
                            answers
                                .next()
                                .expect("one answer per classify request")
                                .map(task_response::Body::Classify)
                        })
                    })
                    .collect()
            }
        }
    }
}

export_plugin!(TextTask);
