//! `image-classification`, as transformers' ImageClassificationPipeline
//! computes it: decode, convert to RGB, the checkpoint's image processor,
//! logits, `function_to_apply`, the top 5 labels by default. The images of
//! every request in a batch are classified together: those of one
//! processed size share forward passes. A request's pixels are counted from
//! the images' headers before any is decoded (`INFERD_MAX_REQUEST_PIXELS`),
//! and whether it is still wanted is asked before each of its images.

use std::collections::{BTreeMap, HashMap};

use inferd_models::auto::ImageClassifier;
use inferd_models::core::scores::{top_labels, ScoreFunction};
use inferd_models::vision::image::{decode_rgb, dimensions, stack, Pixels};
use inferd_sdk::proto::api::{Classification, ClassifyImageRequest, ClassifyImageResponse, ImageInput};
use inferd_sdk::values::label_scores;
use inferd_sdk::{Error, Limit};
use tch::{Device, Kind, Tensor};

const DEFAULT_TOP_K: usize = 5;
/// Images per forward pass.
const MAX_FORWARD_BATCH: usize = 16;
/// Processed pixel values (f32) held before the forward passes run: with
/// `do_resize` off an image keeps its full size, so a batch of large ones
/// runs in several rounds rather than all being held at once.
const MAX_HELD_VALUES: usize = 32 << 20;

/// Decoded pixels per request, summed over its images: 2^28, three images
/// at the single-image limit (89 Mpx) or some twenty 12-megapixel photos.
/// Images are decoded one at a time, so this bounds a request's decoding
/// work (seconds per hundred megapixels), not what is held at once.
pub const REQUEST_PIXELS: Limit = Limit::new("INFERD_MAX_REQUEST_PIXELS", 1 << 28);

/// One image waiting for its forward pass: request, image, pixels.
type Pending = (usize, usize, Pixels);

/// Refuses a request whose images hold more pixels in all than `limit`,
/// reading only their headers.
pub(crate) fn check_pixels(inputs: &[ImageInput], limit: &Limit) -> Result<(), Error> {
    let mut pixels = 0u64;
    for (i, input) in inputs.iter().enumerate() {
        let (width, height) =
            dimensions(&input.data).map_err(|e| Error::invalid_argument(format!("inputs[{i}]: {e}")))?;
        pixels += u64::from(width) * u64::from(height);
    }
    limit.check(pixels, "the pixels of the request's images (width x height, summed)")
}

/// Classifies the images of every request together; one answer each.
/// `wanted(r)` says whether request `r` is still wanted.
pub fn classify(
    model: &ImageClassifier,
    pixel_limit: &Limit,
    requests: &[ClassifyImageRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<ClassifyImageResponse, Error>> {
    let mut logits: HashMap<(usize, usize), Result<Vec<f32>, Error>> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut held = 0;
    let mut processed_all: Vec<Result<(), Error>> = Vec::with_capacity(requests.len());
    for (r, request) in requests.iter().enumerate() {
        // Each image is decoded and processed on its own, so that only its
        // processed form is kept.
        let processed = check_pixels(&request.inputs, pixel_limit).and_then(|()| {
            request
                .inputs
                .iter()
                .enumerate()
                .try_for_each(|(i, input)| -> Result<(), Error> {
                    if !wanted(r) {
                        return Err(Error::stopped());
                    }
                    let image =
                        decode_rgb(&input.data).map_err(|e| Error::invalid_argument(format!("inputs[{i}]: {e}")))?;
                    let pixels = model.processor.process(&image)?;
                    held += pixels.values.len();
                    pending.push((r, i, pixels));
                    if held > MAX_HELD_VALUES {
                        forward_pending(model, &mut pending, &mut logits);
                        held = 0;
                    }
                    Ok(())
                })
        });
        if processed.is_err() {
            pending.retain(|p| p.0 != r);
        }
        processed_all.push(processed);
    }
    forward_pending(model, &mut pending, &mut logits);
    requests
        .iter()
        .zip(processed_all)
        .enumerate()
        .map(|(r, (request, processed))| {
            if request.inputs.is_empty() {
                return Err(Error::invalid_argument("`inputs` is empty: send at least one image"));
            }
            processed?;
            let num_labels = model.labels.len();
            let function = ScoreFunction::parse(&request.function_to_apply)?
                .unwrap_or_else(|| ScoreFunction::default_for_images(model.config.problem_type.as_deref(), num_labels));
            let top_k = match request.top_k {
                None => DEFAULT_TOP_K.min(num_labels),
                Some(0) => num_labels,
                Some(k) => (k as usize).min(num_labels),
            };
            let results = (0..request.inputs.len())
                .map(|i| {
                    let row = logits.remove(&(r, i)).expect("every image ran")?;
                    Ok(Classification {
                        labels: label_scores(top_labels(&model.labels, &function.apply(&row), top_k)),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(ClassifyImageResponse { results })
        })
        .collect()
}

/// Runs the pending images, those of one processed size together, and
/// keeps each one's logits.
fn forward_pending(
    model: &ImageClassifier,
    pending: &mut Vec<Pending>,
    logits: &mut HashMap<(usize, usize), Result<Vec<f32>, Error>>,
) {
    let mut by_size: BTreeMap<(usize, usize), Vec<Pending>> = BTreeMap::new();
    for image in pending.drain(..) {
        by_size.entry((image.2.height, image.2.width)).or_default().push(image);
    }
    for group in by_size.values() {
        for chunk in group.chunks(MAX_FORWARD_BATCH) {
            let pixels: Vec<&Pixels> = chunk.iter().map(|p| &p.2).collect();
            let rows: Tensor = model
                .forward(&stack(&pixels, model.device))
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            for (k, (r, i, _)) in chunk.iter().enumerate() {
                let row = Vec::<f32>::try_from(rows.get(k as i64)).map_err(|e| Error::internal(e.to_string()));
                logits.insert((*r, *i), row);
            }
        }
    }
}
