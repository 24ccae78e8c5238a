//! `image-segmentation`, as transformers' ImageSegmentationPipeline
//! computes it for semantic models: decode, convert to RGB, the
//! checkpoint's image processor (SegFormer's 512 x 512), the class logits,
//! `post_process_semantic_segmentation` (resized to the image as sent,
//! bilinear, then each pixel's best class), and one segment per class
//! present, in class order, with score None and a 0/255 mask (here a PNG).
//! The images of a scheduler batch of one processed size share forward
//! passes (`batch`).

use inferd_models::auto::ImageSegmenter;
use inferd_models::vision::image::{encode_grey_png, Pixels};
use inferd_models::vision::segmenter::semantic_map;
use inferd_sdk::proto::api::{ImageInput, Segment, SegmentImageRequest, SegmentImageResponse, Segmentation};
use inferd_sdk::{Error, Limit};

use crate::batch::{run_images, within_processed, ImageModel};

/// Pixels of one image as the model takes it: SegFormer runs at the
/// processed size (512 x 512 unless configured), and resizing its logits
/// to the image holds one chunk of classes at the image's size.
pub const PROCESSED_PIXELS: Limit = Limit::new("INFERD_MAX_SEGMENTATION_PIXELS", 1 << 23);

/// The subtasks pipeline() knows.
const SUBTASKS: [&str; 3] = ["semantic", "instance", "panoptic"];

/// The request's parameters, checked: a subtask the model does, and
/// thresholds between 0 and 1.
fn check(request: &SegmentImageRequest) -> Result<(), Error> {
    match request.subtask.as_str() {
        "" | "semantic" => {}
        other if SUBTASKS.contains(&other) => {
            return Err(Error::invalid_argument(format!(
                "subtask {other:?}: this model does semantic segmentation only (send \"semantic\" or none)"
            )))
        }
        other => {
            return Err(Error::invalid_argument(format!(
                "subtask {other:?}: send \"semantic\", \"instance\" or \"panoptic\", or none for the model's own"
            )))
        }
    }
    let thresholds = [
        ("threshold", request.threshold),
        ("mask_threshold", request.mask_threshold),
        ("overlap_mask_area_threshold", request.overlap_mask_area_threshold),
    ];
    for (name, value) in thresholds {
        if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::invalid_argument(format!(
                "{name} {v}: send a value between 0 and 1"
            )));
        }
    }
    Ok(())
}

/// Segments the images of every request together; one answer each.
/// `wanted(r)` says whether request `r` is still wanted.
pub fn segment(
    model: &ImageSegmenter,
    pixel_limit: &Limit,
    processed_limit: &Limit,
    requests: &[SegmentImageRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<SegmentImageResponse, Error>> {
    let checked: Vec<Result<(), Error>> = requests.iter().map(check).collect();
    // Requests refused on their parameters send no images to the model.
    let inputs: Vec<&[ImageInput]> = requests
        .iter()
        .zip(&checked)
        .map(|(r, ok)| if ok.is_ok() { r.inputs.as_slice() } else { &[] })
        .collect();
    let forward = |pixels: &tch::Tensor| model.semantic_logits(pixels);
    let accepts = |pixels: &Pixels| {
        within_processed(processed_limit, pixels)?;
        Ok(model.check_input(pixels.height, pixels.width)?)
    };
    let finish = |logits: tch::Tensor, width, height| Ok(semantic_map(&logits, width, height));
    let images = ImageModel {
        processor: &model.processor,
        accepts: &accepts,
        device: model.device,
        forward: &forward,
        finish: &finish,
    };
    let outputs = run_images(&images, pixel_limit, &inputs, wanted);
    requests
        .iter()
        .zip(checked.into_iter().zip(outputs))
        .map(|(request, (checked, outputs))| {
            checked?;
            let results = outputs?
                .into_iter()
                .map(|map| {
                    let segments = map
                        .classes()
                        .into_iter()
                        .map(|class| Segment {
                            score: None,
                            label: model
                                .labels
                                .get(class as usize)
                                .cloned()
                                .unwrap_or_else(|| format!("LABEL_{class}")),
                            mask: encode_grey_png(map.width, map.height, &map.mask(class)),
                        })
                        .collect();
                    Segmentation {
                        segments,
                        label_map: if request.return_label_map {
                            map.png()
                        } else {
                            Vec::new()
                        },
                    }
                })
                .collect();
            Ok(SegmentImageResponse { results })
        })
        .collect()
}
