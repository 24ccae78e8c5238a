//! `object-detection`, as transformers' ObjectDetectionPipeline computes it:
//! decode, convert to RGB, the checkpoint's image processor (DETR's resize
//! to 800 on the short side), the detector, `post_process_object_detection`
//! at the request's threshold (0.5 by default) with the boxes scaled to the
//! image as sent and truncated to integers. Each image is detected alone,
//! as pipeline() does; images of one processed size share forward passes,
//! which changes nothing as none is padded.

use std::collections::{BTreeMap, HashMap};

use inferd_models::auto::ObjectDetector;
use inferd_models::vision::detr::post_process;
use inferd_models::vision::image::{decode_rgb, stack, Pixels};
use inferd_sdk::proto::api::{BoundingBox, DetectObjectsRequest, DetectObjectsResponse, DetectedObject, Detections};
use inferd_sdk::{Error, Limit};

use crate::image_classification::check_pixels;

/// pipeline()'s threshold.
const DEFAULT_THRESHOLD: f32 = 0.5;
/// Images per forward pass: DETR's are about 800 x 1066.
const MAX_FORWARD_BATCH: usize = 4;

/// One decoded image waiting for its forward pass: request, image, its
/// size as sent (width, height), pixels.
struct Pending {
    request: usize,
    image: usize,
    size: (u32, u32),
    pixels: Pixels,
}

/// The request's threshold, checked.
fn threshold(request: &DetectObjectsRequest) -> Result<f32, Error> {
    match request.threshold {
        None => Ok(DEFAULT_THRESHOLD),
        Some(t) if (0.0..=1.0).contains(&t) => Ok(t),
        Some(t) => Err(Error::invalid_argument(format!(
            "threshold {t}: send a score between 0 and 1 (pipeline()'s default is 0.5)"
        ))),
    }
}

/// Detects the objects in the images of every request; one answer each.
/// `wanted(r)` says whether request `r` is still wanted.
pub fn detect(
    model: &ObjectDetector,
    pixel_limit: &Limit,
    requests: &[DetectObjectsRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<DetectObjectsResponse, Error>> {
    let mut pending = Vec::new();
    let checked: Vec<Result<f32, Error>> = requests
        .iter()
        .enumerate()
        .map(|(r, request)| {
            if request.inputs.is_empty() {
                return Err(Error::invalid_argument("`inputs` is empty: send at least one image"));
            }
            let threshold = threshold(request)?;
            check_pixels(&request.inputs, pixel_limit)?;
            let mut mine = Vec::with_capacity(request.inputs.len());
            for (i, input) in request.inputs.iter().enumerate() {
                if !wanted(r) {
                    return Err(Error::stopped());
                }
                let image =
                    decode_rgb(&input.data).map_err(|e| Error::invalid_argument(format!("inputs[{i}]: {e}")))?;
                let pixels = model.processor.process(&image).map_err(|e| {
                    let e = Error::from(e);
                    Error::new(e.code, format!("inputs[{i}]: {}", e.message))
                })?;
                mine.push(Pending {
                    request: r,
                    image: i,
                    size: (image.width as u32, image.height as u32),
                    pixels,
                });
            }
            pending.extend(mine);
            Ok(threshold)
        })
        .collect();
    let mut found = forward(model, pending, &checked);
    requests
        .iter()
        .zip(checked)
        .enumerate()
        .map(|(r, (request, threshold))| {
            threshold?;
            let results = (0..request.inputs.len())
                .map(|i| found.remove(&(r, i)).expect("every image ran"))
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(DetectObjectsResponse { results })
        })
        .collect()
}

/// Runs the images, those of one processed size together, and keeps each
/// one's detections above its request's threshold.
fn forward(
    model: &ObjectDetector,
    pending: Vec<Pending>,
    thresholds: &[Result<f32, Error>],
) -> HashMap<(usize, usize), Result<Detections, Error>> {
    let mut by_size: BTreeMap<(usize, usize), Vec<Pending>> = BTreeMap::new();
    for image in pending {
        by_size
            .entry((image.pixels.height, image.pixels.width))
            .or_default()
            .push(image);
    }
    let mut found = HashMap::new();
    for group in by_size.values() {
        for chunk in group.chunks(MAX_FORWARD_BATCH) {
            let pixels: Vec<&Pixels> = chunk.iter().map(|p| &p.pixels).collect();
            let out = model.forward(&stack(&pixels, model.device), None);
            for (k, image) in chunk.iter().enumerate() {
                let threshold = *thresholds[image.request].as_ref().expect("checked");
                let k = k as i64;
                let (width, height) = image.size;
                let objects = post_process(&out.logits.get(k), &out.boxes.get(k), threshold, width, height)
                    .into_iter()
                    .map(|(score, label, [xmin, ymin, xmax, ymax])| DetectedObject {
                        score,
                        label: model
                            .labels
                            .get(label)
                            .cloned()
                            .unwrap_or_else(|| format!("LABEL_{label}")),
                        // Tensor.int(): truncated toward zero.
                        r#box: Some(BoundingBox {
                            xmin: xmin as i32,
                            ymin: ymin as i32,
                            xmax: xmax as i32,
                            ymax: ymax as i32,
                        }),
                    })
                    .collect();
                found.insert((image.request, image.image), Ok(Detections { objects }));
            }
        }
    }
    found
}
