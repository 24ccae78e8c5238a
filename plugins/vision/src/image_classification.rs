//! `image-classification`, as transformers' ImageClassificationPipeline
//! computes it: decode, convert to RGB, the checkpoint's image processor,
//! logits, `function_to_apply`, the top 5 labels by default. The images of
//! every request in a batch are classified together (`batch`): those of
//! one processed size share forward passes.

use inferd_models::auto::ImageClassifier;
use inferd_models::core::scores::{top_labels, ScoreFunction};
use inferd_sdk::proto::api::{Classification, ClassifyImageRequest, ClassifyImageResponse, ImageInput};
use inferd_sdk::values::label_scores;
use inferd_sdk::{Error, Limit};

use crate::batch::{run_images, ImageModel, MAX_FORWARD_BATCH};

const DEFAULT_TOP_K: usize = 5;

/// Classifies the images of every request together; one answer each.
/// `wanted(r)` says whether request `r` is still wanted.
pub fn classify(
    model: &ImageClassifier,
    pixel_limit: &Limit,
    requests: &[ClassifyImageRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<ClassifyImageResponse, Error>> {
    // A request with an unknown function_to_apply is refused before its
    // images are decoded and run.
    let functions: Vec<Result<Option<ScoreFunction>, Error>> = requests
        .iter()
        .map(|r| ScoreFunction::parse(&r.function_to_apply).map_err(Error::from))
        .collect();
    let inputs: Vec<&[ImageInput]> = requests
        .iter()
        .zip(&functions)
        .map(|(r, function)| match function {
            Ok(_) => r.inputs.as_slice(),
            Err(_) => &[],
        })
        .collect();
    let forward = |pixels: &tch::Tensor| model.forward(pixels);
    let images = ImageModel {
        processor: &model.processor,
        accepts: &|_| Ok(()),
        device: model.device,
        forward: &forward,
        max_batch: MAX_FORWARD_BATCH,
        finish: &|_, row, _, _| Vec::<f32>::try_from(row).map_err(|e| Error::internal(e.to_string())),
    };
    let outputs = run_images(&images, pixel_limit, &inputs, wanted);
    requests
        .iter()
        .zip(outputs)
        .zip(functions)
        .map(|((request, outputs), function)| {
            let num_labels = model.labels.len();
            let function = function?
                .unwrap_or_else(|| ScoreFunction::default_for_images(model.config.problem_type.as_deref(), num_labels));
            let outputs = outputs?;
            let top_k = match request.top_k {
                None => DEFAULT_TOP_K.min(num_labels),
                Some(0) => num_labels,
                Some(k) => (k as usize).min(num_labels),
            };
            let results = outputs
                .into_iter()
                .map(|row| Classification {
                    labels: label_scores(top_labels(&model.labels, &function.apply(&row), top_k)),
                })
                .collect();
            Ok(ClassifyImageResponse { results })
        })
        .collect()
}
