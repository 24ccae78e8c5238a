//! `depth-estimation`, as transformers' DepthEstimationPipeline computes
//! it: decode, convert to RGB, the checkpoint's image processor (GLPN's
//! sides rounded down to multiples of 32, DPT's 384 x 384), the model,
//! `post_process_depth_estimation` (the map resized to the image as sent,
//! bicubic) and the `depth` picture (the map over its range as 8-bit grey,
//! truncated), here a PNG; with `png16` a 16-bit PNG beside it. The images
//! of a scheduler batch of one processed size share forward passes
//! (`batch`).

use inferd_models::auto::DepthEstimator;
use inferd_models::vision::depth::resize_depth;
use inferd_models::vision::image::Pixels;
use inferd_sdk::proto::api::{DepthMap, EstimateDepthRequest, EstimateDepthResponse, ImageInput};
use inferd_sdk::{Error, Limit};

use crate::batch::{run_images, within_processed, ImageModel, MAX_FORWARD_BATCH};

/// Pixels of one image as the model takes it: GLPN runs at the image's own
/// size (rounded down to multiples of 32) and holds about 1 KB of
/// activations a pixel, so 2^23 (a 4K frame, 3840x2160) is some 8 GB.
pub const PROCESSED_PIXELS: Limit = Limit::new("INFERD_MAX_DEPTH_PIXELS", 1 << 23);

/// Estimates the depth of the images of every request together; one answer
/// each. `wanted(r)` says whether request `r` is still wanted.
pub fn estimate(
    model: &DepthEstimator,
    pixel_limit: &Limit,
    processed_limit: &Limit,
    requests: &[EstimateDepthRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<EstimateDepthResponse, Error>> {
    let inputs: Vec<&[ImageInput]> = requests.iter().map(|r| r.inputs.as_slice()).collect();
    let forward = |pixels: &tch::Tensor| model.forward(pixels);
    let accepts = |pixels: &Pixels| {
        within_processed(processed_limit, pixels)?;
        Ok(model.check_input(pixels.height, pixels.width)?)
    };
    let finish = |_, row: tch::Tensor, width, height| Ok(resize_depth(&row, width, height));
    let images = ImageModel {
        processor: &model.processor,
        accepts: &accepts,
        device: model.device,
        forward: &forward,
        max_batch: MAX_FORWARD_BATCH,
        finish: &finish,
    };
    let outputs = run_images(&images, pixel_limit, &inputs, wanted);
    requests
        .iter()
        .zip(outputs)
        .map(|(request, outputs)| {
            let results = outputs?
                .into_iter()
                .map(|map| DepthMap {
                    width: map.width as u32,
                    height: map.height as u32,
                    depth: map.png8(),
                    depth16: if request.png16 { map.png16() } else { Vec::new() },
                    predicted_depth: map.values,
                })
                .collect();
            Ok(EstimateDepthResponse { results })
        })
        .collect()
}
