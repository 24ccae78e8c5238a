//! The inferd plugin for image tasks. Images arrive as encoded files; the
//! models and the image processing come from `inferd-models`.

mod batch;
pub mod depth_estimation;
pub mod image_classification;
pub mod image_segmentation;
pub mod object_detection;

use inferd_models::auto::{
    architectures_for, load_depth_estimator, load_image_classifier, load_image_segmenter, load_object_detector,
    precision_for, DepthEstimator, ImageClassifier, ImageSegmenter, ObjectDetector,
};
use inferd_models::core::device::parse_device;
use inferd_models::core::precision::Precision;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{LoadedModel, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::{dispatch, export_plugin, Emitter, Error, Limit, LoadContext, Task};

/// A loaded model of one of the plugin's tasks.
enum VisionModel {
    Classifier(Box<ImageClassifier>),
    Detector(Box<ObjectDetector>),
    Depth {
        model: Box<DepthEstimator>,
        /// Pixels of one processed image (`max_depth_pixels`).
        processed_limit: Limit,
    },
    Segmenter {
        model: Box<ImageSegmenter>,
        /// Pixels of one processed image (`max_segmentation_pixels`).
        processed_limit: Limit,
    },
}

/// One loaded model, serving one task.
pub struct VisionTask {
    model: VisionModel,
    /// Pixels per request (`max_request_pixels`, set at load).
    pixel_limit: Limit,
    /// What the model computes in.
    precision: Precision,
}

impl Task for VisionTask {
    fn manifest() -> Manifest {
        Manifest {
            name: "vision".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Image tasks on ViT, ConvNeXT, ResNet, DETR, GLPN, DPT, SegFormer and Mask2Former models (LibTorch)"
                    .into(),
            tasks: vec![
                TaskSpec {
                    name: "image-classification".into(),
                    aliases: vec![],
                    default_model: "google/vit-base-patch16-224".into(),
                    architectures: architectures_for("image-classification"),
                    needs_model: true,
                    description: "Classify images (Inference/ClassifyImage)".into(),
                    ..Default::default()
                },
                TaskSpec {
                    name: "object-detection".into(),
                    aliases: vec![],
                    default_model: "facebook/detr-resnet-50".into(),
                    architectures: architectures_for("object-detection"),
                    needs_model: true,
                    description: "Find objects in images, with boxes (Inference/DetectObjects)".into(),
                    ..Default::default()
                },
                TaskSpec {
                    name: "depth-estimation".into(),
                    aliases: vec![],
                    default_model: "Intel/dpt-large".into(),
                    architectures: architectures_for("depth-estimation"),
                    needs_model: true,
                    description: "Estimate each pixel's depth, as numbers and a picture (Inference/EstimateDepth)"
                        .into(),
                    ..Default::default()
                },
                TaskSpec {
                    name: "image-segmentation".into(),
                    aliases: vec![],
                    default_model: "facebook/detr-resnet-50-panoptic".into(),
                    architectures: architectures_for("image-segmentation"),
                    needs_model: true,
                    description: "Segment images: each segment's label and mask (Inference/SegmentImage)".into(),
                    ..Default::default()
                },
            ],
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        let device = parse_device(&ctx.device)?;
        let precision = precision_for(ctx, device)?;
        let dir = || {
            ctx.model_dir
                .as_deref()
                .ok_or_else(|| Error::invalid_argument(format!("{} needs a model source", ctx.task)))
        };
        let model = match ctx.task.as_str() {
            "image-classification" => {
                VisionModel::Classifier(Box::new(load_image_classifier(dir()?, device, precision)?))
            }
            "object-detection" => VisionModel::Detector(Box::new(load_object_detector(dir()?, device, precision)?)),
            "depth-estimation" => VisionModel::Depth {
                model: Box::new(load_depth_estimator(dir()?, device, precision)?),
                processed_limit: depth_estimation::PROCESSED_PIXELS.for_model(ctx)?,
            },
            "image-segmentation" => VisionModel::Segmenter {
                model: Box::new(load_image_segmenter(dir()?, device, precision)?),
                processed_limit: image_segmentation::PROCESSED_PIXELS.for_model(ctx)?,
            },
            other => return Err(Error::unimplemented(format!("the vision plugin has no task {other}"))),
        };
        Ok(VisionTask {
            pixel_limit: batch::REQUEST_PIXELS.for_model(ctx)?,
            model,
            precision,
        })
    }

    fn describe(&self) -> LoadedModel {
        let mut limits = vec![self.pixel_limit];
        let (memory_bytes, labels) = match &self.model {
            VisionModel::Classifier(m) => (m.memory_bytes, m.labels.clone()),
            VisionModel::Detector(m) => (m.memory_bytes, m.labels.clone()),
            VisionModel::Segmenter { model, processed_limit } => {
                limits.push(*processed_limit);
                (model.memory_bytes, model.labels.clone())
            }
            VisionModel::Depth { model, processed_limit } => {
                limits.push(*processed_limit);
                (model.memory_bytes, Vec::new())
            }
        };
        LoadedModel {
            memory_bytes,
            labels,
            limits: Limit::report(&limits),
            dtype: self.precision.name().into(),
            ..Default::default()
        }
    }

    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        match &self.model {
            VisionModel::Classifier(model) => {
                dispatch::together("image-classification", batch, emitter, |requests, wanted| {
                    image_classification::classify(model, &self.pixel_limit, requests, wanted)
                })
            }
            VisionModel::Detector(model) => {
                dispatch::together("object-detection", batch, emitter, |requests, wanted| {
                    object_detection::detect(model, &self.pixel_limit, requests, wanted)
                })
            }
            VisionModel::Segmenter { model, processed_limit } => {
                dispatch::together("image-segmentation", batch, emitter, |requests, wanted| {
                    image_segmentation::segment(model, &self.pixel_limit, processed_limit, requests, wanted)
                })
            }
            VisionModel::Depth { model, processed_limit } => {
                dispatch::together("depth-estimation", batch, emitter, |requests, wanted| {
                    depth_estimation::estimate(model, &self.pixel_limit, processed_limit, requests, wanted)
                })
            }
        }
    }
}

export_plugin!(VisionTask);
