//! Running the images of a scheduler batch together: every request's
//! images decoded and processed one at a time (only the processed form is
//! kept), then those of one processed size stacked into shared forward
//! passes. A request's pixels are counted from the images' headers before
//! any is decoded (`INFERD_MAX_REQUEST_PIXELS`), and whether it is still
//! wanted is asked before each of its images.

use std::collections::{BTreeMap, HashMap};

use inferd_models::vision::image::{decode_rgb, dimensions, stack, ImageProcessor, Pixels};
use inferd_sdk::proto::api::ImageInput;
use inferd_sdk::{Error, Limit};
use tch::{Device, Kind, Tensor};

/// Images per forward pass, unless the model asks for fewer.
pub(crate) const MAX_FORWARD_BATCH: usize = 16;
/// Processed pixel values (f32) held before the forward passes run: with
/// `do_resize` off an image keeps its full size, so a batch of large ones
/// runs in several rounds rather than all being held at once.
const MAX_HELD_VALUES: usize = 32 << 20;

/// Decoded pixels per request, summed over its images: 2^28, three images
/// at the single-image limit (89 Mpx) or some twenty 12-megapixel photos.
/// Images are decoded one at a time, so this bounds a request's decoding
/// work (seconds per hundred megapixels), not what is held at once.
pub const REQUEST_PIXELS: Limit = Limit::new("INFERD_MAX_REQUEST_PIXELS", 1 << 28);

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

/// One image waiting for its forward pass.
struct Pending {
    request: usize,
    image: usize,
    pixels: Pixels,
    width: usize,
    height: usize,
}

/// Refuses an image whose processed size is over `limit` (the models that
/// run at the processed size: depth, segmentation).
pub(crate) fn within_processed(limit: &Limit, pixels: &Pixels) -> Result<(), Error> {
    limit.check(
        (pixels.width * pixels.height) as u64,
        "the image's pixels as this model processes it",
    )
}

/// The model's side of a batch: its processor, whether it can take an
/// image as processed (an error saying why not), its device and forward
/// pass, and what is kept of each image's row of the output (on the CPU,
/// f32) given its request's index and the image's width and height as
/// decoded: made as soon as its forward pass ends, so a batch holds no more
/// than its answers.
pub(crate) struct ImageModel<'a, T> {
    pub processor: &'a ImageProcessor,
    pub accepts: &'a dyn Fn(&Pixels) -> Result<(), Error>,
    pub device: Device,
    pub forward: &'a dyn Fn(&Tensor) -> Tensor,
    /// Images per forward pass (at most MAX_FORWARD_BATCH).
    pub max_batch: usize,
    pub finish: &'a dyn Fn(usize, Tensor, usize, usize) -> Result<T, Error>,
}

/// Runs the images of every request (`inputs[r]`); for each request its
/// images' outputs in order, or why it failed. `wanted(r)` says whether
/// request `r` is still wanted.
pub(crate) fn run_images<T>(
    model: &ImageModel<T>,
    pixel_limit: &Limit,
    inputs: &[&[ImageInput]],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<Vec<T>, Error>> {
    let mut outputs: HashMap<(usize, usize), Result<T, Error>> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut held = 0;
    let mut processed_all: Vec<Result<(), Error>> = Vec::with_capacity(inputs.len());
    for (r, images) in inputs.iter().enumerate() {
        let processed = if images.is_empty() {
            Err(Error::invalid_argument("`inputs` is empty: send at least one image"))
        } else {
            check_pixels(images, pixel_limit).and_then(|()| {
                images
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, input)| -> Result<(), Error> {
                        if !wanted(r) {
                            return Err(Error::stopped());
                        }
                        let image = decode_rgb(&input.data)
                            .map_err(|e| Error::invalid_argument(format!("inputs[{i}]: {e}")))?;
                        let at = |e: Error| Error::new(e.code, format!("inputs[{i}]: {}", e.message));
                        let pixels = model.processor.process(&image).map_err(|e| at(e.into()))?;
                        (model.accepts)(&pixels).map_err(at)?;
                        held += pixels.values.len();
                        pending.push(Pending {
                            request: r,
                            image: i,
                            pixels,
                            width: image.width,
                            height: image.height,
                        });
                        if held > MAX_HELD_VALUES {
                            forward_pending(model, &mut pending, &mut outputs);
                            held = 0;
                        }
                        Ok(())
                    })
            })
        };
        if processed.is_err() {
            pending.retain(|p| p.request != r);
        }
        processed_all.push(processed);
    }
    forward_pending(model, &mut pending, &mut outputs);
    processed_all
        .into_iter()
        .enumerate()
        .map(|(r, processed)| {
            processed?;
            (0..inputs[r].len())
                .map(|i| outputs.remove(&(r, i)).expect("every image ran"))
                .collect()
        })
        .collect()
}

/// Runs the pending images, those of one processed size together, and
/// keeps what `finish` makes of each one's output row.
fn forward_pending<T>(
    model: &ImageModel<T>,
    pending: &mut Vec<Pending>,
    outputs: &mut HashMap<(usize, usize), Result<T, Error>>,
) {
    let mut by_size: BTreeMap<(usize, usize), Vec<Pending>> = BTreeMap::new();
    for image in pending.drain(..) {
        by_size
            .entry((image.pixels.height, image.pixels.width))
            .or_default()
            .push(image);
    }
    for group in by_size.values() {
        for chunk in group.chunks(model.max_batch.clamp(1, MAX_FORWARD_BATCH)) {
            let pixels: Vec<&Pixels> = chunk.iter().map(|p| &p.pixels).collect();
            let rows: Tensor = (model.forward)(&stack(&pixels, model.device))
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            for (k, p) in chunk.iter().enumerate() {
                let output = (model.finish)(p.request, rows.get(k as i64), p.width, p.height);
                outputs.insert((p.request, p.image), output);
            }
        }
    }
}
