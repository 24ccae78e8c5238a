//! `image`: what ClassifyImage does to the bytes of an image before the
//! model: the header read for its size, decoding to RGB, and the image
//! processors' resizing, cropping and normalising. A decoded image is as
//! large as its header said (turned by its EXIF orientation), resizing and
//! cropping give the size asked, resizing to the same size changes
//! nothing and a single colour stays that colour (within the precision of
//! PIL's arithmetic), and each processor gives pixel values of its
//! configured size, all finite, or refuses the image as the client's error
//! (one too elongated to resize).

use std::cell::RefCell;

use inferd_models::vision::image::{center_crop, decode_rgb, dimensions, resize, Filter, ImageProcessor, RgbImage};
use inferd_models::ModelError;

/// Images are decoded up to this many pixels (the product's limit is 89
/// million; decoding scales with the pixels, the checks do not).
const MAX_DECODED_PIXELS: u64 = 1 << 20;

/// Sides asked of `resize` and `center_crop`: 1 to this.
const MAX_ASKED_SIDE: usize = 48;

/// preprocessor_config.json of a ViT and a ConvNeXT processor (shortest
/// edge under 384: resize by crop_pct, then center crop), at small sizes.
const PROCESSORS: &[(&str, usize, usize)] = &[
    (
        r#"{"image_processor_type": "ViTImageProcessor", "size": {"height": 16, "width": 24}, "resample": 2}"#,
        16,
        24,
    ),
    (
        r#"{"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 32}, "crop_pct": 0.875}"#,
        32,
        32,
    ),
];

thread_local! {
    static LOADED: RefCell<Vec<(ImageProcessor, usize, usize)>> = RefCell::new(load_processors());
}

fn load_processors() -> Vec<(ImageProcessor, usize, usize)> {
    PROCESSORS
        .iter()
        .map(|(config, height, width)| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            std::fs::write(dir.path().join("preprocessor_config.json"), config).expect("the config is written");
            let processor = ImageProcessor::from_dir(dir.path()).expect("the processor loads");
            (processor, *height, *width)
        })
        .collect()
}

pub fn image(data: &[u8]) {
    let (width, height) = match dimensions(data) {
        Ok(size) => size,
        Err(e) => {
            assert!(matches!(e, ModelError::InvalidInput(_)), "{e}");
            return assert!(decode_rgb(data).is_err(), "decoded an image without a readable header");
        }
    };
    if u64::from(width) * u64::from(height) > MAX_DECODED_PIXELS {
        return;
    }
    let image = match decode_rgb(data) {
        Ok(image) => image,
        Err(e) => return assert!(matches!(e, ModelError::InvalidInput(_)), "{e}"),
    };
    let (width, height) = (width as usize, height as usize);
    let size = (image.width, image.height);
    assert!(
        size == (width, height) || size == (height, width),
        "the header says {width}x{height}, decoding gave {}x{}",
        image.width,
        image.height
    );
    assert_eq!(image.data.len(), image.width * image.height * 3);

    // The sizes and filter asked are read from the input's last bytes.
    let byte = |back: usize| data[data.len().saturating_sub(back)] as usize;
    let (asked_width, asked_height) = (1 + byte(1) % MAX_ASKED_SIDE, 1 + byte(2) % MAX_ASKED_SIDE);
    let filter = [Filter::Nearest, Filter::Bilinear, Filter::Bicubic, Filter::Lanczos][byte(3) % 4];
    resizes(&image, asked_width, asked_height, filter);
    crops(&image, asked_height, asked_width);
    LOADED.with(|processors| {
        for (processor, height, width) in processors.borrow().iter() {
            let pixels = match processor.process(&image) {
                Ok(pixels) => pixels,
                Err(e) => {
                    assert!(matches!(e, ModelError::InvalidInput(_)), "{e}");
                    continue;
                }
            };
            assert_eq!((pixels.height, pixels.width), (*height, *width));
            assert_eq!(pixels.values.len(), 3 * height * width);
            assert!(
                pixels.values.iter().all(|v| v.is_finite()),
                "pixel values that are not finite"
            );
        }
    });
}

fn resizes(image: &RgbImage, width: usize, height: usize, filter: Filter) {
    assert_eq!(
        resize(image, image.width, image.height, filter),
        *image,
        "resized to its own size"
    );
    let resized = resize(image, width, height, filter);
    assert_eq!((resized.width, resized.height), (width, height));
    assert_eq!(resized.data.len(), width * height * 3);
    // PIL's 22-bit fixed-point weights sum to one within their rounding,
    // which thousands of taps (a 600000-pixel row resized to a few) add up
    // past half a level, in PIL as here: a single colour is only checked
    // where each pass shrinks by at most 256 times.
    let moderate = image.width <= 256 * width && image.height <= 256 * height;
    let first = &image.data[..3];
    if moderate && image.data.chunks(3).all(|pixel| pixel == first) {
        assert!(
            resized.data.chunks(3).all(|pixel| pixel == first),
            "a single colour {first:?} changed when resized with {filter:?}"
        );
    }
}

/// A crop inside the image starts at the offsets rounded down.
fn crops(image: &RgbImage, width: usize, height: usize) {
    let cropped = center_crop(image, width, height);
    assert_eq!((cropped.width, cropped.height), (width, height));
    assert_eq!(cropped.data.len(), width * height * 3);
    if width <= image.width && height <= image.height {
        let (top, left) = ((image.height - height) / 2, (image.width - width) / 2);
        let at = (top * image.width + left) * 3;
        assert_eq!(cropped.data[..3], image.data[at..at + 3]);
    }
}
