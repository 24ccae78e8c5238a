//! `image-segmentation`, as transformers' ImageSegmentationPipeline
//! computes it: decode, convert to RGB, the checkpoint's image processor,
//! the model, then the subtask's post-processing (`subtask` as asked, or
//! the first of panoptic, instance and semantic the model does): semantic
//! gives one segment per label present, in label order, with no score;
//! instance and panoptic give scored segments in the post-processing's
//! order. Each mask is 0/255 where the segment map holds the segment (here
//! a PNG). The images of a scheduler batch of one processed size share
//! forward passes (`batch`); each image's output is post-processed as its
//! request asks as soon as its pass ends.

use inferd_models::auto::ImageSegmenter;
use inferd_models::vision::image::encode_grey_png;
use inferd_models::vision::image::Pixels;
use inferd_models::vision::mask_queries::{decimal, instance, panoptic, semantic, QueryMasks, Segments, Thresholds};
use inferd_models::vision::segmenter::{semantic_map, LabelMap, Subtask};
use inferd_sdk::proto::api::{ImageInput, Segment, SegmentImageRequest, SegmentImageResponse, Segmentation};
use inferd_sdk::{Error, Limit};

use crate::batch::{run_images, within_processed, ImageModel, MAX_FORWARD_BATCH};

/// Pixels of one image as the model takes it: SegFormer runs at the
/// processed size (512 x 512 unless configured), Mask2Former at the
/// shortest edge's (384 or 800, up to 1333 long), and resizing the outputs
/// to the image holds a chunk of classes or queries at the image's size.
pub const PROCESSED_PIXELS: Limit = Limit::new("INFERD_MAX_SEGMENTATION_PIXELS", 1 << 23);

/// pipeline()'s thresholds when a request gives none.
const THRESHOLD: f64 = 0.9;
const MASK_THRESHOLD: f64 = 0.5;
const OVERLAP_MASK_AREA_THRESHOLD: f64 = 0.5;

/// A request's checked parameters.
struct Asked {
    subtask: Subtask,
    thresholds: Thresholds,
    fuse: Vec<u32>,
}

/// The request's parameters, checked: a subtask the model does, thresholds
/// between 0 and 1, labels to fuse that the model has (for panoptic).
fn check(request: &SegmentImageRequest, model: &ImageSegmenter) -> Result<Asked, Error> {
    let supported = model.subtasks();
    let names: Vec<&str> = supported.iter().map(|s| s.name()).collect();
    let subtask = match request.subtask.as_str() {
        "" => supported[0],
        name => match Subtask::parse(name) {
            Some(s) if supported.contains(&s) => s,
            Some(_) => {
                return Err(Error::invalid_argument(format!(
                    "subtask {name:?}: this model does {} (send one of them, or none for {:?})",
                    names.join(", "),
                    names[0]
                )))
            }
            None => {
                return Err(Error::invalid_argument(format!(
                    "subtask {name:?}: send \"semantic\", \"instance\" or \"panoptic\", or none for the model's own \
                     ({:?})",
                    names[0]
                )))
            }
        },
    };
    let value = |name: &str, v: Option<f32>, default: f64| match v {
        None => Ok(default),
        Some(v) if (0.0..=1.0).contains(&v) => Ok(decimal(v)),
        Some(v) => Err(Error::invalid_argument(format!(
            "{name} {v}: send a value between 0 and 1"
        ))),
    };
    let thresholds = Thresholds {
        threshold: value("threshold", request.threshold, THRESHOLD)?,
        mask_threshold: value("mask_threshold", request.mask_threshold, MASK_THRESHOLD)?,
        overlap_mask_area_threshold: value(
            "overlap_mask_area_threshold",
            request.overlap_mask_area_threshold,
            OVERLAP_MASK_AREA_THRESHOLD,
        )?,
    };
    if !request.label_ids_to_fuse.is_empty() && subtask != Subtask::Panoptic {
        return Err(Error::invalid_argument(format!(
            "label_ids_to_fuse applies to panoptic segmentation, not {}",
            subtask.name()
        )));
    }
    if let Some(&id) = request
        .label_ids_to_fuse
        .iter()
        .find(|&&id| id as usize >= model.labels.len())
    {
        return Err(Error::invalid_argument(format!(
            "label_ids_to_fuse: {id} is not a label of this model (it has {}: 0 to {})",
            model.labels.len(),
            model.labels.len() - 1
        )));
    }
    Ok(Asked {
        subtask,
        thresholds,
        fuse: request.label_ids_to_fuse.clone(),
    })
}

/// One image's segmentation, before its PNGs are made.
enum Segmented {
    Semantic(LabelMap),
    Scored(Segments),
}

/// Post-processes one image's row of the model's output as its request asks.
fn post_process(model: &ImageSegmenter, asked: &Asked, row: tch::Tensor, width: usize, height: usize) -> Segmented {
    let Some(style) = model.query_style() else {
        return Segmented::Semantic(semantic_map(&row, width, height));
    };
    let queries = QueryMasks::from_packed(&row, model.labels.len() as i64);
    let t = &asked.thresholds;
    match asked.subtask {
        Subtask::Semantic => Segmented::Semantic(semantic(&queries, width, height)),
        Subtask::Instance => Segmented::Scored(instance(&queries, width, height, t, style)),
        Subtask::Panoptic => Segmented::Scored(panoptic(&queries, width, height, t, &asked.fuse)),
    }
}

/// The model's name of a label id.
fn label_name(model: &ImageSegmenter, id: u32) -> String {
    model
        .labels
        .get(id as usize)
        .cloned()
        .unwrap_or_else(|| format!("LABEL_{id}"))
}

/// pipeline()'s segments of one image, with the label map when asked.
fn answer(model: &ImageSegmenter, segmented: Segmented, return_label_map: bool) -> Segmentation {
    match segmented {
        Segmented::Semantic(map) => Segmentation {
            segments: map
                .classes()
                .into_iter()
                .map(|class| Segment {
                    score: None,
                    label: label_name(model, class),
                    mask: encode_grey_png(map.width, map.height, &map.mask(class)),
                    id: class,
                })
                .collect(),
            label_map: if return_label_map { map.png() } else { Vec::new() },
        },
        Segmented::Scored(seg) => Segmentation {
            segments: seg
                .segments
                .iter()
                .map(|s| Segment {
                    score: Some(s.score as f32),
                    label: label_name(model, s.label),
                    mask: encode_grey_png(seg.width, seg.height, &seg.mask(s.id)),
                    id: s.id,
                })
                .collect(),
            label_map: if return_label_map { seg.png() } else { Vec::new() },
        },
    }
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
    let checked: Vec<Result<Asked, Error>> = requests.iter().map(|r| check(r, model)).collect();
    // Requests refused on their parameters send no images to the model.
    let inputs: Vec<&[ImageInput]> = requests
        .iter()
        .zip(&checked)
        .map(|(r, ok)| if ok.is_ok() { r.inputs.as_slice() } else { &[] })
        .collect();
    let forward = |pixels: &tch::Tensor| model.forward(pixels).packed();
    let accepts = |pixels: &Pixels| {
        within_processed(processed_limit, pixels)?;
        Ok(model.check_input(pixels.height, pixels.width)?)
    };
    let finish = |r: usize, row: tch::Tensor, width, height| {
        let asked = checked[r].as_ref().expect("only checked requests run");
        Ok(post_process(model, asked, row, width, height))
    };
    let images = ImageModel {
        processor: &model.processor,
        accepts: &accepts,
        device: model.device,
        forward: &forward,
        // Query models run an image at a time: on the CPU a batch of 4
        // cost Mask2Former 1.1 s an image against 0.9 s alone.
        max_batch: if model.query_style().is_some() {
            1
        } else {
            MAX_FORWARD_BATCH
        },
        finish: &finish,
    };
    let outputs = run_images(&images, pixel_limit, &inputs, wanted);
    requests
        .iter()
        .zip(checked.iter().zip(outputs))
        .map(|(request, (checked, outputs))| {
            if let Err(e) = checked {
                return Err(e.clone());
            }
            let results = outputs?
                .into_iter()
                .map(|segmented| answer(model, segmented, request.return_label_map))
                .collect();
            Ok(SegmentImageResponse { results })
        })
        .collect()
}
