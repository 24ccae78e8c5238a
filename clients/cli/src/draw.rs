//! Pictures a person can open: `inferctl detect --draw` (the image with
//! each detected object's box and label drawn on it), `inferctl segment
//! --overlay` (each segment tinted in its colour and labelled) and
//! `inferctl depth --colormap` (the depth picture in colour), written as
//! PNGs.

pub mod colormap;
mod font;

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use image::{ImageDecoder, ImageReader, Rgb, RgbImage};
use inferd_proto::v1::{DetectedObject, Segment};

/// Box colours, one per label (by the label's bytes), bright on photos.
const PALETTE: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
];

/// Decodes `bytes` as the daemon does (EXIF orientation applied, so that
/// boxes and masks fit), as RGB.
fn decode_oriented(bytes: &[u8]) -> Result<RgbImage> {
    let mut decoder = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()?
        .into_decoder()
        .context("decode the image to draw on")?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = image::DynamicImage::from_decoder(decoder).context("decode the image to draw on")?;
    decoded.apply_orientation(orientation);
    Ok(decoded.into_rgb8())
}

/// A label's colour: the same label, the same colour, in every picture.
fn colour_of(label: &str) -> Rgb<u8> {
    let hash = label
        .bytes()
        .fold(0usize, |h, c| h.wrapping_mul(31).wrapping_add(c as usize));
    Rgb(PALETTE[hash % PALETTE.len()])
}

/// Draws the objects on the image and writes a PNG to `out`.
pub fn detections(bytes: &[u8], objects: &[DetectedObject], out: &Path) -> Result<()> {
    let mut canvas = decode_oriented(bytes)?;
    // Lines and letters grow with the image: 2 px and 1x at 640 px.
    let side = canvas.width().min(canvas.height());
    let thickness = (side / 320).max(2) as i64;
    let scale = (side / 500).max(1) as i64;
    for object in objects {
        let b = object.r#box.unwrap_or_default();
        let colour = colour_of(&object.label);
        let (x0, y0, x1, y1) = (b.xmin as i64, b.ymin as i64, b.xmax as i64, b.ymax as i64);
        for t in 0..thickness {
            rectangle(&mut canvas, (x0 + t, y0 + t, x1 - t, y1 - t), colour);
        }
        let text = format!("{} {:.2}", object.label, object.score);
        let height = font::HEIGHT as i64 * scale + 2;
        // Above the box, or inside it at the top of the image.
        let top = if y0 - height >= 0 { y0 - height } else { y0 };
        label(&mut canvas, &text, (x0, top), scale, colour);
    }
    canvas
        .save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("write {}", out.display()))
}

fn put(canvas: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < canvas.width() && (y as u32) < canvas.height() {
        canvas.put_pixel(x as u32, y as u32, colour);
    }
}

/// A one-pixel outline, clipped to the canvas (a box far outside it costs
/// no more than one along its edges).
fn rectangle(canvas: &mut RgbImage, (x0, y0, x1, y1): (i64, i64, i64, i64), colour: Rgb<u8>) {
    let (w, h) = (canvas.width() as i64, canvas.height() as i64);
    let (x0, x1) = (x0.clamp(-1, w), x1.clamp(-1, w));
    let (y0, y1) = (y0.clamp(-1, h), y1.clamp(-1, h));
    for x in x0..=x1 {
        put(canvas, x, y0, colour);
        put(canvas, x, y1, colour);
    }
    for y in y0..=y1 {
        put(canvas, x0, y, colour);
        put(canvas, x1, y, colour);
    }
}

/// White text on a filled band of `colour`, its top left at `at`.
fn label(canvas: &mut RgbImage, text: &str, at: (i64, i64), scale: i64, colour: Rgb<u8>) {
    let (w, h) = (font::WIDTH as i64 * scale, font::HEIGHT as i64 * scale);
    let width = (w * text.chars().count() as i64 + 2).min(canvas.width() as i64);
    for y in 0..h + 2 {
        for x in 0..width {
            put(canvas, at.0 + x, at.1 + y, colour);
        }
    }
    let white = Rgb([255, 255, 255]);
    for (k, c) in text.chars().enumerate() {
        for y in 0..h {
            for x in 0..w {
                if font::pixel(c, (x / scale) as usize, (y / scale) as usize) {
                    put(canvas, at.0 + 1 + k as i64 * w + x, at.1 + 1 + y, white);
                }
            }
        }
    }
}

/// Tints each segment's pixels half-way to its label's colour, writes its
/// label at the segment's centre, and writes a PNG to `out`.
pub fn segments(bytes: &[u8], segments: &[Segment], out: &Path) -> Result<()> {
    let mut canvas = decode_oriented(bytes)?;
    let scale = (canvas.width().min(canvas.height()) / 500).max(1) as i64;
    let mut labels = Vec::new();
    for segment in segments {
        let mask = image::load_from_memory_with_format(&segment.mask, image::ImageFormat::Png)
            .context("decode a segment's mask")?
            .into_luma8();
        anyhow::ensure!(
            mask.dimensions() == canvas.dimensions(),
            "a mask of {:?} for an image of {:?}",
            mask.dimensions(),
            canvas.dimensions()
        );
        let colour = colour_of(&segment.label);
        let (mut sum_x, mut sum_y, mut count) = (0u64, 0u64, 0u64);
        for (x, y, m) in mask.enumerate_pixels() {
            if m[0] > 127 {
                let pixel = canvas.get_pixel_mut(x, y);
                for c in 0..3 {
                    pixel[c] = ((pixel[c] as u16 + colour[c] as u16) / 2) as u8;
                }
                (sum_x, sum_y, count) = (sum_x + x as u64, sum_y + y as u64, count + 1);
            }
        }
        if let (Some(x), Some(y)) = (sum_x.checked_div(count), sum_y.checked_div(count)) {
            let text_width = (font::WIDTH as i64 * scale) * segment.label.chars().count() as i64;
            labels.push((
                segment.label.clone(),
                (x as i64 - text_width / 2).max(0),
                y as i64,
                colour,
            ));
        }
    }
    // Labels last, over every tint.
    for (text, x, y, colour) in labels {
        label(&mut canvas, &text, (x, y), scale, colour);
    }
    canvas
        .save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("write {}", out.display()))
}

/// The daemon's 8-bit depth picture (`png8`) coloured through `map`,
/// written as an RGB PNG to `out`.
pub fn depth(png8: &[u8], map: colormap::Colormap, out: &Path) -> Result<()> {
    let grey = image::load_from_memory_with_format(png8, image::ImageFormat::Png)
        .context("decode the daemon's depth picture")?
        .into_luma8();
    let table = map.table();
    let coloured = RgbImage::from_fn(grey.width(), grey.height(), |x, y| {
        Rgb(table[grey.get_pixel(x, y)[0] as usize])
    });
    coloured
        .save_with_format(out, image::ImageFormat::Png)
        .with_context(|| format!("write {}", out.display()))
}
