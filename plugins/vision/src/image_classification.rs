//! `image-classification`, as transformers' ImageClassificationPipeline
//! computes it: decode, convert to RGB, the checkpoint's image processor,
//! logits, `function_to_apply`, the top 5 labels by default. The images of
//! every request in a batch are classified together: those of one
//! processed size share forward passes.

use std::collections::BTreeMap;

use inferd_models::auto::ImageClassifier;
use inferd_models::core::scores::{top_labels, ScoreFunction};
use inferd_models::vision::image::{decode_rgb, stack, Pixels};
use inferd_sdk::dispatch::Incoming;
use inferd_sdk::proto::api::{Classification, ClassifyImageRequest, ClassifyImageResponse};
use inferd_sdk::values::label_scores;
use inferd_sdk::Error;
use tch::{Device, Kind, Tensor};

const DEFAULT_TOP_K: usize = 5;
/// Images per forward pass.
const MAX_FORWARD_BATCH: usize = 16;

/// A request ready to run: its settings and its processed images.
struct Planned {
    function: ScoreFunction,
    top_k: usize,
    images: Vec<Pixels>,
}

fn plan(model: &ImageClassifier, request: &ClassifyImageRequest) -> Result<Planned, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument("`inputs` is empty: send at least one image"));
    }
    let num_labels = model.labels.len();
    let function = ScoreFunction::parse(&request.function_to_apply)?
        .unwrap_or_else(|| ScoreFunction::default_for_images(model.config.problem_type.as_deref(), num_labels));
    let top_k = match request.top_k {
        None => DEFAULT_TOP_K.min(num_labels),
        Some(0) => num_labels,
        Some(k) => (k as usize).min(num_labels),
    };
    // Each image is decoded and processed on its own, so that only its
    // small processed form is kept.
    let images = request
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let image = decode_rgb(&input.data).map_err(|e| Error::invalid_argument(format!("inputs[{i}]: {e}")))?;
            Ok(model.processor.process(&image)?)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Planned {
        function,
        top_k,
        images,
    })
}

/// Classifies the images of every request together.
pub fn classify(
    model: &ImageClassifier,
    requests: &[Incoming<ClassifyImageRequest>],
) -> Vec<Result<ClassifyImageResponse, Error>> {
    let plans: Vec<Result<Planned, Error>> = requests.iter().map(|r| plan(model, &r.request)).collect();
    // Every image of every valid request, grouped by processed size.
    let mut by_size: BTreeMap<(usize, usize), Vec<(usize, usize)>> = BTreeMap::new();
    for (r, planned) in plans.iter().enumerate() {
        for (i, image) in planned.iter().flat_map(|p| p.images.iter().enumerate()) {
            by_size.entry((image.height, image.width)).or_default().push((r, i));
        }
    }
    let mut logits: BTreeMap<(usize, usize), Result<Vec<f32>, Error>> = BTreeMap::new();
    for members in by_size.values() {
        for chunk in members.chunks(MAX_FORWARD_BATCH) {
            let pixels: Vec<&Pixels> = chunk
                .iter()
                .map(|&(r, i)| &plans[r].as_ref().expect("valid").images[i])
                .collect();
            let rows: Tensor = model
                .forward(&stack(&pixels, model.device))
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            for (k, &member) in chunk.iter().enumerate() {
                let row = Vec::<f32>::try_from(rows.get(k as i64)).map_err(|e| Error::internal(e.to_string()));
                logits.insert(member, row);
            }
        }
    }
    plans
        .into_iter()
        .enumerate()
        .map(|(r, planned)| {
            let planned = planned?;
            let results = (0..planned.images.len())
                .map(|i| {
                    let row = logits.remove(&(r, i)).expect("every image ran")?;
                    Ok(Classification {
                        labels: label_scores(top_labels(&model.labels, &planned.function.apply(&row), planned.top_k)),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(ClassifyImageResponse { results })
        })
        .collect()
}
