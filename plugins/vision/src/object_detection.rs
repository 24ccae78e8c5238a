//! `object-detection`, as transformers' ObjectDetectionPipeline computes it:
//! decode, convert to RGB, the checkpoint's image processor (DETR's resize
//! to 800 on the short side), the detector, `post_process_object_detection`
//! at the request's threshold (0.5 by default) with the boxes scaled to the
//! image as sent and truncated to integers. Each image runs alone, as
//! pipeline() runs it: on the CPU, DETR's 800-pixel images are no faster
//! in batches (8 images in batches of 4 took 1.7x as long as one by one),
//! only one image's activations are held at a time, and whether a request
//! is still wanted is asked before each image.

use inferd_models::auto::ObjectDetector;
use inferd_models::vision::image::{decode_rgb, stack};
use inferd_sdk::proto::api::{BoundingBox, DetectObjectsRequest, DetectObjectsResponse, DetectedObject, Detections};
use inferd_sdk::{Error, Limit};

use crate::batch::check_pixels;

/// pipeline()'s threshold.
const DEFAULT_THRESHOLD: f32 = 0.5;

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
    requests
        .iter()
        .enumerate()
        .map(|(r, request)| detect_request(model, pixel_limit, request, &mut || wanted(r)))
        .collect()
}

fn detect_request(
    model: &ObjectDetector,
    pixel_limit: &Limit,
    request: &DetectObjectsRequest,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<DetectObjectsResponse, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument("`inputs` is empty: send at least one image"));
    }
    let threshold = threshold(request)?;
    check_pixels(&request.inputs, pixel_limit)?;
    let mut results = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        if !wanted() {
            return Err(Error::stopped());
        }
        let at = |e: Error| Error::new(e.code, format!("inputs[{i}]: {}", e.message));
        let image = decode_rgb(&input.data).map_err(|e| Error::invalid_argument(format!("inputs[{i}]: {e}")))?;
        let pixels = model.processor.process(&image).map_err(|e| at(Error::from(e)))?;
        let out = model.forward(&stack(&[&pixels], model.device), None);
        let (width, height) = (image.width as u32, image.height as u32);
        let objects = model
            .post_process(&out, threshold, width, height)
            .into_iter()
            .map(|found| DetectedObject {
                score: found.score,
                label: model
                    .labels
                    .get(found.label)
                    .cloned()
                    .unwrap_or_else(|| format!("LABEL_{}", found.label)),
                // Tensor.int(): truncated toward zero.
                r#box: Some(BoundingBox {
                    xmin: found.corners[0] as i32,
                    ymin: found.corners[1] as i32,
                    xmax: found.corners[2] as i32,
                    ymax: found.corners[3] as i32,
                }),
            })
            .collect();
        results.push(Detections { objects });
    }
    Ok(DetectObjectsResponse { results })
}
