//! The inferd plugin for image tasks. Images arrive as encoded files; the
//! models and the image processing come from `inferd-models`.

pub mod image_classification;

use inferd_models::auto::{architectures_for, load_image_classifier, ImageClassifier};
use inferd_models::core::device::parse_device;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{LoadedModel, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::{dispatch, export_plugin, Emitter, Error, Limit, LoadContext, Task};

/// One loaded model, serving one task.
pub struct VisionTask {
    model: ImageClassifier,
    /// Pixels per request (`max_request_pixels`, set at load).
    pixel_limit: Limit,
}

impl Task for VisionTask {
    fn manifest() -> Manifest {
        Manifest {
            name: "vision".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Image tasks on ViT and ConvNeXT models (LibTorch)".into(),
            tasks: vec![TaskSpec {
                name: "image-classification".into(),
                aliases: vec![],
                default_model: "google/vit-base-patch16-224".into(),
                architectures: architectures_for("image-classification"),
                needs_model: true,
                description: "Classify images (Inference/ClassifyImage)".into(),
            }],
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        if ctx.task != "image-classification" {
            return Err(Error::unimplemented(format!(
                "the vision plugin has no task {}",
                ctx.task
            )));
        }
        let device = parse_device(&ctx.device)?;
        let dir = ctx
            .model_dir
            .as_deref()
            .ok_or_else(|| Error::invalid_argument("image-classification needs a model source"))?;
        Ok(VisionTask {
            pixel_limit: image_classification::REQUEST_PIXELS.for_model(ctx)?,
            model: load_image_classifier(dir, device)?,
        })
    }

    fn describe(&self) -> LoadedModel {
        LoadedModel {
            memory_bytes: self.model.memory_bytes,
            labels: self.model.labels.clone(),
            limits: Limit::report(&[self.pixel_limit]),
        }
    }

    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        dispatch::together("image-classification", batch, emitter, |requests, wanted| {
            image_classification::classify(&self.model, &self.pixel_limit, requests, wanted)
        })
    }
}

export_plugin!(VisionTask);
