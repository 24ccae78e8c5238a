//! `image-classification`, as transformers' ImageClassificationPipeline
//! computes it: decode, convert to RGB, the checkpoint's image processor,
//! logits, `function_to_apply`, the top 5 labels by default.

use inferd_models::auto::ImageClassifier;
use inferd_models::image::decode_rgb;
use inferd_models::scores::{top_labels, ScoreFunction};
use inferd_sdk::proto::api::{Classification, ClassifyImageRequest, ClassifyImageResponse};
use inferd_sdk::Error;
use tch::{Device, Kind, Tensor};

const DEFAULT_TOP_K: usize = 5;
/// Images per forward pass.
const MAX_FORWARD_BATCH: usize = 16;

pub fn classify(model: &ImageClassifier, request: &ClassifyImageRequest) -> Result<ClassifyImageResponse, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument("`inputs` is empty: send at least one image"));
    }
    let images = request
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| decode_rgb(&input.data).map_err(|e| Error::invalid_argument(format!("inputs[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let num_labels = model.labels.len();
    let function = ScoreFunction::parse(&request.function_to_apply)?
        .unwrap_or_else(|| ScoreFunction::default_for_images(model.config.problem_type.as_deref(), num_labels));
    let top_k = match request.top_k {
        None => DEFAULT_TOP_K.min(num_labels),
        Some(0) => num_labels,
        Some(k) => (k as usize).min(num_labels),
    };
    let mut results = Vec::with_capacity(images.len());
    for chunk in images.chunks(MAX_FORWARD_BATCH) {
        let pixels = model.processor.batch(chunk, model.device)?;
        let logits: Tensor = model.forward(&pixels).to_kind(Kind::Float).to_device(Device::Cpu);
        for i in 0..chunk.len() as i64 {
            let row = Vec::<f32>::try_from(logits.get(i)).map_err(|e| Error::internal(e.to_string()))?;
            results.push(Classification {
                labels: top_labels(&model.labels, &function.apply(&row), top_k),
            });
        }
    }
    Ok(ClassifyImageResponse { results })
}
