//! Images in: decoding (PNG, JPEG, WebP, GIF first frame, BMP, TIFF) with a
//! pixel limit, conversion to RGB as PIL's `convert("RGB")` does it (CMYK
//! and wide grey TIFFs included), and the
//! preprocessing of transformers' (slow, PIL-based) image processors:
//! resize with PIL's resampling filters on 8-bit images, center crop,
//! rescale and normalise, driven by preprocessor_config.json.

use std::path::Path;

use serde::Deserialize;
use tch::{Device, Tensor};

use crate::core::checks::MAX_SPATIAL;
use crate::core::config::{is_present, read_json, CommonConfig};
use crate::{ModelError, Result};

/// Largest image accepted, in pixels (PIL's decompression-bomb limit is
/// about 89 million; larger images are refused before decoding).
pub const MAX_PIXELS: u64 = 89_478_485;

/// What a decoder may allocate beyond the decoded image itself (palettes,
/// colour profiles, metadata).
const DECODER_TABLES: u64 = 16 << 20;

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// An image's width and height, read from its header without decoding it
/// (what decoding it would cost is known first). Errors name the problem,
/// as [`decode_rgb`]'s do.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    header(bytes).map(|(_, width, height)| (width, height))
}

/// The format and size of an image, checked against the pixel limit.
fn header(bytes: &[u8]) -> Result<(image::ImageFormat, u32, u32)> {
    use image::ImageReader;
    if bytes.is_empty() {
        return Err(ModelError::InvalidInput("the image is empty (0 bytes)".into()));
    }
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ModelError::InvalidInput(format!("cannot read the image: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(ModelError::InvalidInput(
            "the bytes are not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF)".into(),
        ));
    };
    let header_error =
        |e: &dyn std::fmt::Display| ModelError::InvalidInput(format!("cannot read the {format:?} header: {e}"));
    let (width, height) = if format == image::ImageFormat::Tiff {
        // The image crate refuses the wide grey TIFFs read below; the
        // tiff crate reads every header.
        tiff_decoder(bytes)
            .and_then(|mut d| d.dimensions())
            .map_err(|e| header_error(&e))?
    } else {
        ImageReader::with_format(std::io::Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(|e| header_error(&e))?
    };
    if width == 0 || height == 0 {
        return Err(ModelError::InvalidInput(format!(
            "the image is {width}x{height}: it has no pixels"
        )));
    }
    if width as u64 * height as u64 > MAX_PIXELS {
        return Err(ModelError::InvalidInput(format!(
            "the image is {width}x{height}, more than the limit of {MAX_PIXELS} pixels"
        )));
    }
    Ok((format, width, height))
}

/// Decodes encoded image bytes into RGB. Errors name the problem.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    use image::ImageReader;
    let (format, width, height) = header(bytes)?;
    if format == image::ImageFormat::Jpeg {
        return decode_jpeg(bytes);
    }
    if format == image::ImageFormat::Tiff {
        if let Some(image) = decode_tiff_as_pil(bytes)? {
            return Ok(image);
        }
    }
    let decode_error =
        |e: image::ImageError| ModelError::InvalidInput(format!("cannot decode the {format:?} image: {e}"));
    let mut reader = ImageReader::with_format(std::io::Cursor::new(bytes), format);
    // The decoder may hold the image the header declares, at its widest
    // (16 bytes a pixel, float RGBA), and its tables: a GIF frame far
    // larger than the screen its header declares is refused, not allocated.
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(u64::from(width) * u64::from(height) * 16 + DECODER_TABLES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    // transformers' load_image applies the EXIF orientation (exif_transpose).
    let orientation =
        image::ImageDecoder::orientation(&mut decoder).unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = image::DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    decoded.apply_orientation(orientation);
    Ok(to_rgb(decoded))
}

/// JPEG through mozjpeg (libjpeg-turbo's decoder: the same integer IDCT
/// and fancy upsampling as the libjpeg-turbo PIL uses, so the pixels match).
/// Four-component (CMYK or YCCK) JPEGs are read as CMYK and converted as
/// PIL does. libjpeg reports errors by unwinding, which is caught here.
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    use image::metadata::Orientation;
    // libjpeg only warns about a file that ends early (and fills the rest
    // with grey); PIL refuses it as truncated, and so do we.
    // (Only after the scan starts: an EXIF thumbnail has its own end marker.)
    let scan_start = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap_or(0);
    if !bytes[scan_start..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(ModelError::InvalidInput(
            "cannot decode the JPEG image: it is truncated (no end-of-image marker)".into(),
        ));
    }
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<u8>)> {
        let decompress = mozjpeg::Decompress::new_mem(bytes)?;
        let cmyk = decompress.components().len() == 4;
        let mut started = if cmyk {
            decompress.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?
        } else {
            decompress.rgb()?
        };
        let (width, height) = (started.width(), started.height());
        let data = started.read_scanlines::<u8>()?;
        started.finish()?;
        // PIL reads every CMYK JPEG as Adobe's inverted CMYK ("CMYK;I").
        Ok((width, height, if cmyk { cmyk_to_rgb(&data, true) } else { data }))
    });
    let (width, height, data) = match decoded {
        Ok(Ok(image)) => image,
        Ok(Err(e)) => return Err(ModelError::InvalidInput(format!("cannot decode the JPEG image: {e}"))),
        Err(panic) => {
            let reason = inferd_sdk::panic_text(panic.as_ref()).unwrap_or_else(|| "corrupt data".into());
            return Err(ModelError::InvalidInput(format!(
                "cannot decode the JPEG image: {reason}"
            )));
        }
    };
    if data.len() != width * height * 3 {
        return Err(ModelError::InvalidInput(
            "cannot decode the JPEG image: its pixel data is incomplete".into(),
        ));
    }
    let mut image = image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(width as u32, height as u32, data).expect("size checked"),
    );
    if let Some(orientation) = jpeg_exif(bytes).and_then(Orientation::from_exif_chunk) {
        image.apply_orientation(orientation);
    }
    Ok(to_rgb(image))
}

/// PIL's `convert("RGB")` of CMYK: each channel is
/// (255 - K) - C * (255 - K) / 255 in PIL's rounded integer arithmetic;
/// `inverted` samples (Adobe's convention) are flipped first. A trailing
/// partial pixel is dropped (the callers' size checks refuse it).
fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    cmyk.chunks_exact(4)
        .flat_map(|pixel| {
            let [c, m, y, k] = [0, 1, 2, 3].map(|i| if inverted { 255 - pixel[i] } else { pixel[i] } as u32);
            let nk = 255 - k;
            [c, m, y].map(|v| (nk - muldiv255(v, nk)) as u8)
        })
        .collect()
}

/// A TIFF decoder over the bytes, its buffer limit sized for the largest
/// accepted image of 4-byte samples.
fn tiff_decoder(bytes: &[u8]) -> tiff::TiffResult<tiff::decoder::Decoder<std::io::Cursor<&[u8]>>> {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = MAX_PIXELS as usize * 4;
    Ok(tiff::decoder::Decoder::new(std::io::Cursor::new(bytes))?.with_limits(limits))
}

/// TIFFs the image crate refuses or converts otherwise than PIL: grey with
/// signed 16-bit, 32-bit integer or 32-bit float samples, which PIL opens
/// as mode "I" or "F" and converts to RGB through "L" (integers clipped to
/// 0..=255, floats clipped and truncated), and 8-bit CMYK. `None` for any
/// other TIFF.
fn decode_tiff_as_pil(bytes: &[u8]) -> Result<Option<RgbImage>> {
    use tiff::decoder::DecodingResult as D;
    use tiff::tags::{SampleFormat, Tag};
    let error = |e: tiff::TiffError| ModelError::InvalidInput(format!("cannot decode the Tiff image: {e}"));
    let mut decoder = tiff_decoder(bytes).map_err(error)?;
    let sample_format = decoder
        .find_tag_unsigned::<u16>(Tag::SampleFormat)
        .map_err(error)?
        .map_or(SampleFormat::Uint, SampleFormat::from_u16_exhaustive);
    let colour = decoder.colortype().map_err(error)?;
    let cmyk = colour == tiff::ColorType::CMYK(8);
    let wide_grey = match colour {
        tiff::ColorType::Gray(16) => sample_format == SampleFormat::Int,
        tiff::ColorType::Gray(32) => true,
        _ => false,
    };
    if !cmyk && !wide_grey {
        return Ok(None);
    }
    let (width, height) = decoder.dimensions().map_err(error)?;
    let orientation = decoder.find_tag_unsigned::<u8>(Tag::Orientation).ok().flatten();
    let incomplete = || ModelError::InvalidInput("cannot decode the Tiff image: its pixel data is incomplete".into());
    let pixels = width as usize * height as usize;
    let clip = |v: i64| v.clamp(0, 255) as u8;
    let mut image = if cmyk {
        let D::U8(samples) = decoder.read_image().map_err(error)? else {
            return Err(incomplete());
        };
        let rgb = cmyk_to_rgb(&samples, false);
        if rgb.len() != pixels * 3 {
            return Err(incomplete());
        }
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(width, height, rgb).expect("size checked"))
    } else {
        let grey: Vec<u8> = match decoder.read_image().map_err(error)? {
            D::I16(v) => v.into_iter().map(|v| clip(v.into())).collect(),
            D::I32(v) => v.into_iter().map(|v| clip(v.into())).collect(),
            // PIL reads unsigned 32-bit samples as signed ("I;32N").
            D::U32(v) => v.into_iter().map(|v| clip((v as i32).into())).collect(),
            // `as` saturates and truncates towards zero (NaN gives 0), as PIL's
            // float-to-byte conversion does.
            D::F32(v) => v.into_iter().map(|v| v as u8).collect(),
            _ => {
                return Err(ModelError::InvalidInput(format!(
                    "cannot decode the Tiff image: unsupported {sample_format:?} grey samples"
                )))
            }
        };
        if grey.len() != pixels {
            return Err(incomplete());
        }
        image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(width, height, grey).expect("size checked"))
    };
    if let Some(orientation) = orientation.and_then(image::metadata::Orientation::from_exif) {
        image.apply_orientation(orientation);
    }
    Ok(Some(to_rgb(image)))
}

/// The EXIF payload (after "Exif\0\0") of a JPEG's APP1 segment.
fn jpeg_exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut i = 2;
    while i + 4 <= bytes.len() && bytes[i] == 0xFF {
        let marker = bytes[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        let segment = bytes.get(i + 4..i + 2 + len)?;
        if marker == 0xE1 && segment.starts_with(b"Exif\0\0") {
            return Some(&segment[6..]);
        }
        i += 2 + len;
    }
    None
}

/// PIL's `convert("RGB")`: alpha is dropped (not composited), grey is
/// replicated, palettes were expanded by the decoder. 16-bit colour keeps
/// the high byte of each sample (PIL reads it so); 16-bit grey is clipped
/// to 255, as PIL's "I" to "RGB" conversion does.
fn to_rgb(image: image::DynamicImage) -> RgbImage {
    use image::DynamicImage as D;
    let (width, height) = (image.width() as usize, image.height() as usize);
    let data = match &image {
        D::ImageLuma16(_) | D::ImageLumaA16(_) => image
            .to_luma16()
            .into_raw()
            .into_iter()
            .flat_map(|v| [v.min(255) as u8; 3])
            .collect(),
        D::ImageRgb16(_) | D::ImageRgba16(_) => image
            .to_rgb16()
            .into_raw()
            .into_iter()
            .map(|v| (v >> 8) as u8)
            .collect(),
        _ => image.into_rgb8().into_raw(),
    };
    RgbImage { width, height, data }
}

/// PIL's resampling filters, as Resample.c defines them, and NEAREST,
/// which PIL resizes with by picking pixels (an affine transform).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
}

impl Filter {
    /// PIL's numeric codes (transformers' `resample` in preprocessor_config.json).
    pub fn from_pil_code(code: u32) -> Result<Self> {
        Ok(match code {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            other => return Err(ModelError::Unsupported(format!("PIL resample filter {other}"))),
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest => unreachable!("NEAREST picks pixels: it has no filter"),
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Nearest => unreachable!("NEAREST picks pixels: it has no filter"),
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                let sinc = |x: f64| {
                    if x == 0.0 {
                        1.0
                    } else {
                        let px = std::f64::consts::PI * x;
                        px.sin() / px
                    }
                };
                if x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point precision of PIL's 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output index: the first input index and the fixed-point weights,
/// as PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` compute them.
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    if filter == Filter::Nearest {
        return nearest_picks(in_size, out_size, scale);
    }
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64).min(in_size as i64) as usize).saturating_sub(xmin);
            let mut weights: Vec<f64> = (0..xmax)
                .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            let fixed = weights
                .iter()
                .map(|&w| {
                    let v = w * (1u32 << PRECISION_BITS) as f64;
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// NEAREST as PIL resizes with it (Geometry.c's ImagingScaleAffine): output
/// `i` is input `floor(scale / 2 + i * scale)`, the position summed step by
/// step in f64 as PIL sums it (so the 8th row of 4 grown to 10 is row 2:
/// 0.2 + 7 * 0.4 adds up to just under 3), as a single full weight.
fn nearest_picks(in_size: usize, out_size: usize, scale: f64) -> Vec<(usize, Vec<i32>)> {
    let mut position = scale * 0.5;
    (0..out_size)
        .map(|_| {
            let picked = (position as usize).min(in_size - 1);
            position += scale;
            (picked, vec![1 << PRECISION_BITS])
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `Image.resize((width, height), filter)` on an RGB image: two
/// separable passes, each rounded to 8 bits. Pillow (13) runs the vertical
/// pass first when it shrinks the height by more than twice what the
/// horizontal pass shrinks the width.
pub fn resize(image: &RgbImage, width: usize, height: usize, filter: Filter) -> RgbImage {
    let dh = image.height as i64 - height as i64;
    let dw = image.width as i64 - width as i64;
    let horizontal_first = !(dh > 0 && dh > 2 * dw);
    if horizontal_first {
        resize_vertical(&resize_horizontal(image, width, filter), height, filter)
    } else {
        resize_horizontal(&resize_vertical(image, height, filter), width, filter)
    }
}

fn resize_horizontal(image: &RgbImage, width: usize, filter: Filter) -> RgbImage {
    if width == image.width {
        return image.clone();
    }
    let coeffs = coefficients(image.width, width, filter);
    let mut out = vec![0u8; width * image.height * 3];
    for y in 0..image.height {
        let row = &image.data[y * image.width * 3..(y + 1) * image.width * 3];
        for (x, (xmin, weights)) in coeffs.iter().enumerate() {
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (k, w) in weights.iter().enumerate() {
                    acc += row[(xmin + k) * 3 + c] as i64 * *w as i64;
                }
                out[(y * width + x) * 3 + c] = clip8(acc);
            }
        }
    }
    RgbImage {
        width,
        height: image.height,
        data: out,
    }
}

fn resize_vertical(image: &RgbImage, height: usize, filter: Filter) -> RgbImage {
    if height == image.height {
        return image.clone();
    }
    let coeffs = coefficients(image.height, height, filter);
    let w3 = image.width * 3;
    let mut out = vec![0u8; w3 * height];
    for (y, (ymin, weights)) in coeffs.iter().enumerate() {
        for i in 0..w3 {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (k, w) in weights.iter().enumerate() {
                acc += image.data[(ymin + k) * w3 + i] as i64 * *w as i64;
            }
            out[y * w3 + i] = clip8(acc);
        }
    }
    RgbImage {
        width: image.width,
        height,
        data: out,
    }
}

/// transformers' `center_crop`: offsets rounded down; an image smaller than
/// the crop is padded with zeros around it.
pub fn center_crop(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let top = (image.height as i64 - height as i64) / 2;
    let left = (image.width as i64 - width as i64) / 2;
    let mut out = vec![0u8; width * height * 3];
    for y in 0..height as i64 {
        let sy = y + top;
        if sy < 0 || sy >= image.height as i64 {
            continue;
        }
        for x in 0..width as i64 {
            let sx = x + left;
            if sx < 0 || sx >= image.width as i64 {
                continue;
            }
            let src = (sy as usize * image.width + sx as usize) * 3;
            let dst = (y as usize * width + x as usize) * 3;
            out[dst..dst + 3].copy_from_slice(&image.data[src..src + 3]);
        }
    }
    RgbImage {
        width,
        height,
        data: out,
    }
}

/// `size` in preprocessor_config.json.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct SizeSpec {
    pub height: Option<usize>,
    pub width: Option<usize>,
    pub shortest_edge: Option<usize>,
    pub longest_edge: Option<usize>,
}

/// `size` as saved: a dict, or (older configs) one number, which each
/// processor reads its own way (`get_size_dict`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Side(usize),
    Spec(SizeSpec),
}

/// The preprocessor_config.json fields of ViT-, ConvNeXT- and DETR-style
/// processors.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageProcessorConfig {
    #[serde(default)]
    pub image_processor_type: Option<String>,
    /// What older configs name instead ("DetrFeatureExtractor").
    #[serde(default)]
    pub feature_extractor_type: Option<String>,
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default)]
    pub size: Option<SizeValue>,
    /// DETR's older configs: the longest edge beside a one-number `size`.
    #[serde(default)]
    pub max_size: Option<usize>,
    #[serde(default)]
    pub resample: Option<u32>,
    #[serde(default)]
    pub crop_pct: Option<f64>,
    /// GLPN: sides rounded down to multiples of this; DPT: what `do_pad`
    /// pads to.
    #[serde(default)]
    pub size_divisor: Option<usize>,
    /// DPT: scale both sides alike, by the factor nearer 1.
    #[serde(default)]
    pub keep_aspect_ratio: bool,
    /// DPT: sides rounded to multiples of this.
    #[serde(default)]
    pub ensure_multiple_of: Option<usize>,
    #[serde(default)]
    pub do_pad: Option<bool>,
    /// Mask2Former: pad every image to this size (not supported).
    #[serde(default)]
    pub pad_size: Option<serde_json::Value>,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    #[serde(default)]
    pub image_mean: Option<Vec<f64>>,
    #[serde(default)]
    pub image_std: Option<Vec<f64>>,
}

fn yes() -> bool {
    true
}

fn default_rescale() -> f64 {
    1.0 / 255.0
}

const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// An image processor: what transformers' ViTImageProcessor or
/// ConvNextImageProcessor does to one RGB image.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    config: ImageProcessorConfig,
    kind: ProcessorKind,
    filter: Filter,
    mean: [f64; 3],
    std: [f64; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcessorKind {
    /// Resize to (height, width).
    Vit,
    /// SegformerImageProcessor: ViT's, 512 x 512 and ImageNet's
    /// statistics unless configured.
    Segformer,
    /// Shortest edge with crop_pct, then center crop.
    ConvNext,
    /// DetrImageProcessor: the shortest edge to `shortest_edge` unless the
    /// longest would pass `longest_edge`, keeping the aspect ratio.
    Detr,
    /// GLPNImageProcessor: each side rounded down to a multiple of
    /// `size_divisor` (32); rescaled, never normalised.
    Glpn,
    /// DPTImageProcessor: to (height, width), or as near as the aspect
    /// ratio allows with `keep_aspect_ratio`, each side rounded to a
    /// multiple of `ensure_multiple_of`; centre-padded to multiples of
    /// `size_divisor` with `do_pad`.
    Dpt,
    /// Mask2FormerImageProcessor: the shortest edge to `shortest_edge`
    /// unless the longest would pass `longest_edge` (or to height x width),
    /// then each side rounded up to a multiple of `size_divisor` (32).
    Mask2Former,
}

impl ImageProcessor {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        if !is_present(&path) {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "preprocessor_config.json".into(),
                expected: "the image processor configuration saved with the model".into(),
            });
        }
        let config: ImageProcessorConfig = read_json(&path)?;
        // An older config's "...FeatureExtractor" is loaded as the
        // "...ImageProcessor" of the same name; a config naming neither gets
        // the model type's, as AutoImageProcessor picks it.
        let kind_name = config
            .image_processor_type
            .clone()
            .or_else(|| {
                config
                    .feature_extractor_type
                    .as_ref()
                    .map(|t| t.replace("FeatureExtractor", "ImageProcessor"))
            })
            .unwrap_or_else(|| model_type_processor(dir).to_string());
        let (kind, default_filter, default_mean, default_std) = if kind_name.starts_with("ConvNext") {
            // ConvNextImageProcessor's own defaults (its saved configs say
            // bicubic and ImageNet's statistics).
            (ProcessorKind::ConvNext, 2, [0.5; 3], [0.5; 3])
        } else if kind_name.starts_with("Detr") {
            (ProcessorKind::Detr, 2, IMAGENET_MEAN, IMAGENET_STD)
        } else if kind_name.starts_with("GLPN") {
            (ProcessorKind::Glpn, 2, [0.0; 3], [1.0; 3])
        } else if kind_name.starts_with("DPT") {
            (ProcessorKind::Dpt, 3, [0.5; 3], [0.5; 3])
        } else if kind_name.starts_with("Mask2Former") {
            (ProcessorKind::Mask2Former, 2, IMAGENET_MEAN, IMAGENET_STD)
        } else if kind_name.starts_with("Segformer") {
            (ProcessorKind::Segformer, 2, IMAGENET_MEAN, IMAGENET_STD)
        } else if kind_name.starts_with("ViT") || kind_name.is_empty() {
            (ProcessorKind::Vit, 2, [0.5; 3], [0.5; 3])
        } else {
            return Err(ModelError::Unsupported(format!(
                "image processor {kind_name} (supported: ViTImageProcessor, ConvNextImageProcessor, \
                 DetrImageProcessor, GLPNImageProcessor, DPTImageProcessor, SegformerImageProcessor, \
                 Mask2FormerImageProcessor)"
            )));
        };
        let triple = |v: &Option<Vec<f64>>, default: [f64; 3]| -> Result<[f64; 3]> {
            match v {
                None => Ok(default),
                Some(v) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
                Some(v) => Err(ModelError::bad_file(
                    &path,
                    format!("expected 3 channel values, got {}", v.len()),
                )),
            }
        };
        let processor = ImageProcessor {
            filter: Filter::from_pil_code(config.resample.unwrap_or(default_filter))?,
            mean: triple(&config.image_mean, default_mean)?,
            std: triple(&config.image_std, default_std)?,
            kind,
            config,
        };
        processor.check_sizes(&path)?;
        Ok(processor)
    }

    /// Every size the config gives is a side an image may have (1 to
    /// MAX_SPATIAL pixels), crop_pct a fraction, and DETR's `size` one it
    /// reads: a crafted config cannot ask for a terapixel resize.
    fn check_sizes(&self, path: &Path) -> Result<()> {
        let size = self.size();
        let sides = [
            ("size.height", size.height),
            ("size.width", size.width),
            ("size.shortest_edge", size.shortest_edge),
            ("size.longest_edge", size.longest_edge),
            ("max_size", self.config.max_size),
            // Mask2Former reads 0 as no rounding.
            (
                "size_divisor",
                self.config
                    .size_divisor
                    .filter(|&d| !(d == 0 && self.kind == ProcessorKind::Mask2Former)),
            ),
            ("ensure_multiple_of", self.config.ensure_multiple_of),
        ];
        for (field, side) in sides {
            if let Some(side) = side.filter(|&s| s == 0 || s > MAX_SPATIAL as usize) {
                return Err(ModelError::bad_file(
                    path,
                    format!("{field} = {side}, but it must be between 1 and {MAX_SPATIAL}"),
                ));
            }
        }
        if let Some(crop_pct) = self.config.crop_pct.filter(|c| !(*c > 0.0 && *c <= 1.0)) {
            return Err(ModelError::bad_file(
                path,
                format!("crop_pct = {crop_pct}, but it must be above 0 and at most 1"),
            ));
        }
        let square = size.height.is_some() && size.width.is_some();
        let edges = size.shortest_edge.is_some() && size.longest_edge.is_some();
        let squares = [ProcessorKind::Dpt, ProcessorKind::Segformer];
        if squares.contains(&self.kind) && self.config.size.is_some() && !square {
            return Err(ModelError::bad_file(
                path,
                "this image processor's size needs height and width",
            ));
        }
        let edge_sized = [ProcessorKind::Detr, ProcessorKind::Mask2Former];
        if edge_sized.contains(&self.kind) && self.config.size.is_some() && !square && !edges {
            return Err(ModelError::bad_file(
                path,
                "this image processor's size needs shortest_edge and longest_edge, or height and width",
            ));
        }
        if self.kind == ProcessorKind::Mask2Former && self.config.pad_size.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(ModelError::Unsupported(format!(
                "{}: pad_size (padding every image to one size before the model) is not supported",
                path.display()
            )));
        }
        if self.kind == ProcessorKind::Mask2Former && !square {
            let (short, long) = (size.shortest_edge.unwrap_or(800), size.longest_edge.unwrap_or(1333));
            if long <= short {
                return Err(ModelError::bad_file(
                    path,
                    format!("size.longest_edge = {long} must be greater than size.shortest_edge = {short}"),
                ));
            }
        }
        Ok(())
    }

    /// `size` as a dict, as `get_size_dict` makes it of a single number:
    /// a square for ViT, the shortest edge for ConvNeXT, the shortest edge
    /// with `max_size` (or 1333) the longest for DETR.
    fn size(&self) -> SizeSpec {
        match &self.config.size {
            None => SizeSpec::default(),
            Some(SizeValue::Spec(spec)) => spec.clone(),
            Some(SizeValue::Side(n)) => match self.kind {
                ProcessorKind::Vit | ProcessorKind::Segformer | ProcessorKind::Dpt | ProcessorKind::Glpn => SizeSpec {
                    height: Some(*n),
                    width: Some(*n),
                    ..Default::default()
                },
                ProcessorKind::ConvNext => SizeSpec {
                    shortest_edge: Some(*n),
                    ..Default::default()
                },
                ProcessorKind::Detr | ProcessorKind::Mask2Former => SizeSpec {
                    shortest_edge: Some(*n),
                    longest_edge: Some(self.config.max_size.unwrap_or(1333)),
                    ..Default::default()
                },
            },
        }
    }

    /// The 8-bit image after resizing and cropping.
    pub fn resize_and_crop(&self, image: &RgbImage) -> Result<RgbImage> {
        if !self.config.do_resize {
            return Ok(image.clone());
        }
        let size = self.size();
        match self.kind {
            ProcessorKind::Vit | ProcessorKind::Segformer => {
                let side = if self.kind == ProcessorKind::Vit { 224 } else { 512 };
                let (h, w) = (size.height.unwrap_or(side), size.width.unwrap_or(side));
                if over_limit(h, w) {
                    return Err(ModelError::InvalidInput(format!(
                        "this model resizes images to {w}x{h}, more than the limit of {MAX_PIXELS} pixels"
                    )));
                }
                Ok(resize(image, w, h, self.filter))
            }
            ProcessorKind::ConvNext => {
                let shortest = size.shortest_edge.unwrap_or(384);
                if shortest < 384 {
                    let crop_pct = self.config.crop_pct.unwrap_or(224.0 / 256.0);
                    let resize_short = (shortest as f64 / crop_pct) as usize;
                    let (h, w) = shortest_edge_size(image.height, image.width, resize_short);
                    // The long side grows with the short one: a 1-pixel-high
                    // strip would become gigabytes before the crop.
                    if over_limit(h, w) {
                        return Err(ModelError::InvalidInput(format!(
                            "the image is {}x{}: with its shorter side resized to {resize_short} it would be {w}x{h}, \
                             more than the limit of {MAX_PIXELS} pixels; send a less elongated image",
                            image.width, image.height
                        )));
                    }
                    let resized = resize(image, w, h, self.filter);
                    Ok(center_crop(&resized, shortest, shortest))
                } else {
                    Ok(resize(image, shortest, shortest, self.filter))
                }
            }
            ProcessorKind::Detr => {
                let (h, w) = match (size.height, size.width) {
                    (Some(h), Some(w)) => (h, w),
                    _ => detr_size(
                        image.height,
                        image.width,
                        size.shortest_edge.unwrap_or(800),
                        size.longest_edge.or(Some(1333)),
                    ),
                };
                if h == 0 || w == 0 {
                    return Err(ModelError::InvalidInput(format!(
                        "the image is {}x{}: resized for this model it would be {w}x{h}; send a less elongated image",
                        image.width, image.height
                    )));
                }
                if over_limit(h, w) {
                    return Err(ModelError::InvalidInput(format!(
                        "the image is {}x{}: resized for this model it would be {w}x{h}, more than the limit of \
                         {MAX_PIXELS} pixels",
                        image.width, image.height
                    )));
                }
                Ok(resize(image, w, h, self.filter))
            }
            ProcessorKind::Glpn => {
                let divisor = self.config.size_divisor.unwrap_or(32);
                let (h, w) = (image.height / divisor * divisor, image.width / divisor * divisor);
                if h == 0 || w == 0 {
                    return Err(ModelError::InvalidInput(format!(
                        "the image is {}x{}: this model rounds its sides down to multiples of {divisor} pixels, so \
                         each side needs at least {divisor}",
                        image.width, image.height
                    )));
                }
                Ok(resize(image, w, h, self.filter))
            }
            ProcessorKind::Mask2Former => {
                let (h, w) = match (size.height, size.width) {
                    (Some(h), Some(w)) => (h, w),
                    _ => shortest_edge_within(
                        image.height,
                        image.width,
                        size.shortest_edge.unwrap_or(800),
                        size.longest_edge.unwrap_or(1333),
                    ),
                };
                let divisor = self.config.size_divisor.unwrap_or(32).max(1);
                let (h, w) = (h.div_ceil(divisor) * divisor, w.div_ceil(divisor) * divisor);
                if h == 0 || w == 0 || over_limit(h, w) {
                    return Err(ModelError::InvalidInput(format!(
                        "the image is {}x{}: resized for this model it would be {w}x{h}; send a less elongated image",
                        image.width, image.height
                    )));
                }
                Ok(resize(image, w, h, self.filter))
            }
            ProcessorKind::Dpt => {
                let (h, w) = dpt_size(
                    image.height,
                    image.width,
                    size.height.unwrap_or(384),
                    size.width.unwrap_or(384),
                    self.config.keep_aspect_ratio,
                    self.config.ensure_multiple_of.unwrap_or(1),
                );
                if h == 0 || w == 0 || over_limit(h, w) {
                    return Err(ModelError::InvalidInput(format!(
                        "the image is {}x{}: resized for this model it would be {w}x{h}; send a less elongated image",
                        image.width, image.height
                    )));
                }
                Ok(resize(image, w, h, self.filter))
            }
        }
    }

    /// pixel_values [3, H, W] as f32: resized, rescaled, normalised.
    pub fn pixel_values(&self, image: &RgbImage) -> Result<Vec<f32>> {
        Ok(self.rescale_and_normalise(&self.resize_and_crop(image)?))
    }

    /// The float planes [3, H, W] of an already resized image.
    fn rescale_and_normalise(&self, img: &RgbImage) -> Vec<f32> {
        let plane = img.width * img.height;
        let mut out = vec![0f32; 3 * plane];
        // As transformers computes it: rescale in f64 then stored as f32,
        // normalise in f32 (a subtraction, then a division).
        let scale = if self.config.do_rescale {
            self.config.rescale_factor
        } else {
            1.0
        };
        let mean = self.mean.map(|m| m as f32);
        let std = self.std.map(|s| s as f32);
        for p in 0..plane {
            for c in 0..3 {
                let mut v = (img.data[p * 3 + c] as f64 * scale) as f32;
                if self.normalises() {
                    v = (v - mean[c]) / std[c];
                }
                out[c * plane + p] = v;
            }
        }
        out
    }

    /// Whether `do_normalize` applies: GLPNImageProcessor never normalises.
    fn normalises(&self) -> bool {
        self.config.do_normalize && self.kind != ProcessorKind::Glpn
    }

    /// One image's pixel_values with their size, for batching images of one
    /// processed size together ([`stack`]).
    pub fn process(&self, image: &RgbImage) -> Result<Pixels> {
        let img = self.resize_and_crop(image)?;
        if self.kind == ProcessorKind::Glpn && !self.config.do_resize {
            let divisor = self.config.size_divisor.unwrap_or(32);
            if img.height % divisor != 0 || img.width % divisor != 0 {
                return Err(ModelError::InvalidInput(format!(
                    "the image is {}x{}: this model does not resize, and needs sides that are multiples of {divisor}",
                    img.width, img.height
                )));
            }
        }
        let pixels = Pixels {
            height: img.height,
            width: img.width,
            values: self.rescale_and_normalise(&img),
        };
        match self.config.size_divisor {
            Some(divisor) if self.kind == ProcessorKind::Dpt && self.config.do_pad == Some(true) => {
                let side = |s: usize| s.div_ceil(divisor) * divisor;
                let (h, w) = (side(pixels.height), side(pixels.width));
                if over_limit(h, w) {
                    return Err(ModelError::InvalidInput(format!(
                        "the image is {}x{}: padded for this model it would be {w}x{h}, more than the limit of \
                         {MAX_PIXELS} pixels",
                        image.width, image.height
                    )));
                }
                Ok(pixels.centre_padded(divisor))
            }
            _ => Ok(pixels),
        }
    }
}

/// An 8-bit greyscale PNG of `levels` (`width` x `height`, row-major).
pub fn encode_grey_png(width: usize, height: usize, levels: &[u8]) -> Vec<u8> {
    encode_png(width, height, levels, image::ExtendedColorType::L8)
}

/// A 16-bit greyscale PNG of `levels` (`width` x `height`, row-major).
pub fn encode_grey16_png(width: usize, height: usize, levels: &[u16]) -> Vec<u8> {
    // PNG stores 16-bit samples big-endian; the encoder takes native order.
    let bytes: Vec<u8> = levels.iter().flat_map(|v| v.to_ne_bytes()).collect();
    encode_png(width, height, &bytes, image::ExtendedColorType::L16)
}

/// A PNG of `data`, which holds `width` x `height` samples of `color`.
///
/// # Panics
/// If it does not (writing to memory cannot otherwise fail).
fn encode_png(width: usize, height: usize, data: &[u8], color: image::ExtendedColorType) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, width as u32, height as u32, color)
        .expect("a buffer of the picture's size");
    out
}

/// One processed image: pixel_values [3, height, width].
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

impl Pixels {
    /// Zero-padded around to the next multiples of `divisor` each way, the
    /// odd pixel after (DPTImageProcessor's `pad_image`).
    fn centre_padded(self, divisor: usize) -> Pixels {
        let pad = |side: usize| {
            let total = side.div_ceil(divisor) * divisor - side;
            (total / 2, total)
        };
        let ((top, rows), (left, cols)) = (pad(self.height), pad(self.width));
        if rows == 0 && cols == 0 {
            return self;
        }
        let (height, width) = (self.height + rows, self.width + cols);
        let mut values = vec![0f32; 3 * height * width];
        for c in 0..3 {
            for y in 0..self.height {
                let from = (c * self.height + y) * self.width;
                let to = (c * height + y + top) * width + left;
                values[to..to + self.width].copy_from_slice(&self.values[from..from + self.width]);
            }
        }
        Pixels { height, width, values }
    }
}

/// A batch tensor [n, 3, H, W] on `device` of images of one processed size.
///
/// # Panics
/// If the images differ in size.
pub fn stack(images: &[&Pixels], device: Device) -> Tensor {
    let (height, width) = images.first().map_or((0, 0), |p| (p.height, p.width));
    assert!(
        images.iter().all(|p| (p.height, p.width) == (height, width)),
        "images of one size"
    );
    let data: Vec<f32> = images.iter().flat_map(|p| p.values.iter().copied()).collect();
    let host = Tensor::from_slice(&data).view([images.len() as i64, 3, height as i64, width as i64]);
    crate::core::device::upload(&host, device)
}

/// transformers' `get_resize_output_image_size(size=s, default_to_square=False)`:
/// the short side becomes `s`, the long side `int(s * long / short)`.
fn shortest_edge_size(height: usize, width: usize, short: usize) -> (usize, usize) {
    if height <= width {
        (short, (short as f64 * width as f64 / height as f64) as usize)
    } else {
        ((short as f64 * height as f64 / width as f64) as usize, short)
    }
}

/// transformers' `get_resize_output_image_size(size=short, max_size=long,
/// default_to_square=False)`: (height, width) with the shorter side
/// `short` and the longer `int(short * long / short side)`, unless that
/// passes `long`, when the longer becomes `long` and the shorter
/// `int(long * short / longer)`.
fn shortest_edge_within(height: usize, width: usize, short: usize, long: usize) -> (usize, usize) {
    let (short_side, long_side) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let (mut new_short, mut new_long) = (short, (short as f64 * long_side as f64 / short_side as f64) as usize);
    if new_long > long {
        new_short = (long as f64 * new_short as f64 / new_long as f64) as usize;
        new_long = long;
    }
    if width <= height {
        (new_long, new_short)
    } else {
        (new_short, new_long)
    }
}

/// The image processor transformers maps the model's type to (config.json's
/// `model_type`); empty when it names none of ours.
fn model_type_processor(dir: &Path) -> &'static str {
    let model_type = CommonConfig::from_dir(dir).map(|c| c.model_type).unwrap_or_default();
    match model_type.as_str() {
        "vit" => "ViTImageProcessor",
        "convnext" | "resnet" => "ConvNextImageProcessor",
        "detr" => "DetrImageProcessor",
        "glpn" => "GLPNImageProcessor",
        "segformer" => "SegformerImageProcessor",
        "dpt" => "DPTImageProcessor",
        "mask2former" => "Mask2FormerImageProcessor",
        _ => "",
    }
}

/// Whether an h x w image would hold more than MAX_PIXELS (or more than
/// a u64 counts).
fn over_limit(h: usize, w: usize) -> bool {
    (h as u64)
        .checked_mul(w as u64)
        .is_none_or(|pixels| pixels > MAX_PIXELS)
}

/// DPTImageProcessor's `get_resize_output_image_size`: (height, width)
/// scaled to `out_height` x `out_width` (with `keep_aspect_ratio`, both by
/// the factor nearer 1), each rounded to a multiple of `multiple` as
/// `constrain_to_multiple_of` does (Python's round, half to even).
fn dpt_size(
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
    keep_aspect_ratio: bool,
    multiple: usize,
) -> (usize, usize) {
    let mut scale_height = out_height as f64 / height as f64;
    let mut scale_width = out_width as f64 / width as f64;
    if keep_aspect_ratio {
        if (1.0 - scale_width).abs() < (1.0 - scale_height).abs() {
            scale_height = scale_width;
        } else {
            scale_width = scale_height;
        }
    }
    let constrain = |v: f64| ((v / multiple as f64).round_ties_even() * multiple as f64) as usize;
    (
        constrain(scale_height * height as f64),
        constrain(scale_width * width as f64),
    )
}

/// DetrImageProcessor's `get_size_with_aspect_ratio`: (height, width) with
/// the shorter side `size`, unless the longer would then pass `max_size`,
/// when the longer becomes about `max_size` instead; Python's rounding
/// (half to even) and truncations kept.
fn detr_size(height: usize, width: usize, size: usize, max_size: Option<usize>) -> (usize, usize) {
    let mut size = size;
    let mut raw_size = None;
    if let Some(max_size) = max_size {
        let min_original = height.min(width) as f64;
        let max_original = height.max(width) as f64;
        if max_original / min_original * size as f64 > max_size as f64 {
            let raw = max_size as f64 * min_original / max_original;
            size = raw.round_ties_even() as usize;
            raw_size = Some(raw);
        }
    }
    let along = |other: usize, side: usize| match raw_size {
        Some(raw) => (raw * other as f64 / side as f64) as usize,
        None => (size as f64 * other as f64 / side as f64) as usize,
    };
    if (height <= width && height == size) || (width <= height && width == size) {
        (height, width)
    } else if width < height {
        (along(height, width), size)
    } else {
        (size, along(width, height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpt_sizes_follow_get_resize_output_image_size() {
        // Squashed to the configured size whatever the aspect.
        assert_eq!(dpt_size(480, 640, 384, 384, false, 1), (384, 384));
        // Keeping the aspect ratio: the scale nearer 1 (640 -> 384 is 0.6,
        // 480 -> 384 is 0.8) for both sides, rounded to multiples of 32.
        assert_eq!(dpt_size(480, 640, 384, 384, true, 32), (384, 512));
        assert_eq!(dpt_size(400, 600, 384, 384, true, 32), (384, 576));
        // Python's round: 2.5 multiples of 32 (80 px) round to 2 (64 px).
        assert_eq!(dpt_size(384, 80, 384, 384, true, 32), (384, 64));
        // Too small to reach one multiple: 0, which the processor refuses.
        assert_eq!(dpt_size(384, 10, 384, 384, true, 32).1, 0);
    }

    #[test]
    fn dpt_padding_centres_the_image_in_multiples_of_the_divisor() {
        let pixels = Pixels {
            height: 1,
            width: 3,
            values: vec![1.0; 9],
        };
        let padded = pixels.centre_padded(4);
        assert_eq!((padded.height, padded.width), (4, 4));
        // Rows: 3 of padding, 1 before and 2 after; columns: 1, after.
        let plane = &padded.values[..16];
        assert_eq!(plane[4..8], [1.0, 1.0, 1.0, 0.0]);
        assert_eq!(plane.iter().sum::<f32>(), 3.0);
    }

    #[test]
    fn detr_sizes_follow_get_size_with_aspect_ratio() {
        // 640x480: 800 on the short side, 1066 on the long one.
        assert_eq!(detr_size(480, 640, 800, Some(1333)), (800, 1066));
        // Very wide: the long side capped near 1333 (raw size 333.25).
        assert_eq!(detr_size(100, 400, 800, Some(1333)), (333, 1333));
        // Already the size: unchanged.
        assert_eq!(detr_size(800, 900, 800, Some(1333)), (800, 900));
        // Tall.
        assert_eq!(detr_size(640, 480, 800, Some(1333)), (1066, 800));
        // Half-way rounds to even: 2 * 1333 / 4 = 666.5 -> 666.
        assert_eq!(detr_size(2, 4, 800, Some(1333)), (666, 1333));
    }

    #[test]
    fn resizing_to_the_same_size_is_identity_and_uniform_stays_uniform() {
        let image = RgbImage {
            width: 4,
            height: 3,
            data: (0..36).map(|v| v as u8 * 7).collect(),
        };
        assert_eq!(resize(&image, 4, 3, Filter::Bicubic), image);
        let flat = RgbImage {
            width: 10,
            height: 7,
            data: vec![200; 210],
        };
        for filter in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
            let out = resize(&flat, 3, 5, filter);
            assert!(out.data.iter().all(|&v| v == 200), "{filter:?}");
        }
    }

    #[test]
    fn nearest_picks_the_pixels_pil_picks() {
        // One grey level per row (and per column): what each output holds
        // names the input it was picked from. PIL 13's NEAREST picks rows
        // 0 0 1 1 1 2 2 2 3 3 growing 4 rows to 10, columns 2 and 6
        // shrinking 9 to 2.
        let image = RgbImage {
            width: 9,
            height: 4,
            data: (0..36u8).flat_map(|p| [p / 9 * 10, p % 9 * 10, 0]).collect(),
        };
        let rows = resize(&image, 9, 10, Filter::Nearest);
        let picked: Vec<u8> = (0..10).map(|y| rows.data[y * 27] / 10).collect();
        assert_eq!(picked, [0, 0, 1, 1, 1, 2, 2, 2, 3, 3]);
        let columns = resize(&image, 2, 4, Filter::Nearest);
        assert_eq!([columns.data[1] / 10, columns.data[4] / 10], [2, 6]);
    }

    #[test]
    fn center_crop_takes_the_middle() {
        let image = RgbImage {
            width: 4,
            height: 4,
            data: (0..48).map(|v| v as u8).collect(),
        };
        let out = center_crop(&image, 2, 2);
        // Rows 1-2, columns 1-2.
        assert_eq!(&out.data[0..3], &image.data[(4 + 1) * 3..(4 + 1) * 3 + 3]);
        assert_eq!(shortest_edge_size(61, 97, 73), (73, 116));
    }

    #[test]
    fn a_config_naming_no_processor_gets_the_model_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("preprocessor_config.json"),
            r#"{"size": 800, "max_size": 1333}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "detr"}"#).unwrap();
        let processor = ImageProcessor::from_dir(dir.path()).unwrap();
        assert_eq!(processor.kind, ProcessorKind::Detr);
        let image = RgbImage {
            width: 64,
            height: 48,
            data: vec![7; 64 * 48 * 3],
        };
        let resized = processor.resize_and_crop(&image).unwrap();
        assert_eq!((resized.width, resized.height), (1066, 800));
        // Sizes no image could take are refused at load.
        std::fs::write(dir.path().join("preprocessor_config.json"), r#"{"size": 0}"#).unwrap();
        let refused = ImageProcessor::from_dir(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("size.shortest_edge = 0"), "{refused}");
    }

    #[test]
    fn a_strip_that_resizing_would_grow_past_the_pixel_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("preprocessor_config.json"),
            r#"{"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}}"#,
        )
        .unwrap();
        let processor = ImageProcessor::from_dir(dir.path()).unwrap();
        // 256 x 102,400,000 pixels once its height is resized to 224 / 0.875.
        let strip = RgbImage {
            width: 400_000,
            height: 1,
            data: vec![90; 1_200_000],
        };
        let refused = processor.process(&strip).unwrap_err().to_string();
        assert!(
            refused.contains("400000x1") && refused.contains("less elongated"),
            "{refused}"
        );
        let photo = RgbImage {
            width: 40,
            height: 30,
            data: vec![90; 3600],
        };
        assert_eq!(processor.process(&photo).unwrap().width, 224);
    }

    #[test]
    fn a_gif_frame_larger_than_its_screen_is_refused_without_allocating_it() {
        let mut gif = b"GIF89a".to_vec();
        gif.extend([4, 0, 4, 0, 0, 0, 0]); // a 4x4 screen, no global palette
        gif.push(0x2c); // an image at (0, 0), 60000x60000, a 2-colour palette
        gif.extend([0, 0, 0, 0, 0x60, 0xea, 0x60, 0xea, 0x80, 0, 0, 0, 255, 255, 255]);
        gif.extend([2, 2, 0x44, 0x01, 0, 0x3b]); // one pixel of LZW data, the trailer
        assert_eq!(dimensions(&gif).unwrap(), (4, 4));
        let refused = decode_rgb(&gif).unwrap_err().to_string();
        assert!(refused.contains("Memory limit exceeded"), "{refused}");
    }

    #[test]
    fn bad_bytes_are_refused_with_a_reason() {
        assert!(decode_rgb(b"").unwrap_err().to_string().contains("empty"));
        assert!(decode_rgb(b"hello, not an image")
            .unwrap_err()
            .to_string()
            .contains("not an image"));
    }
}
