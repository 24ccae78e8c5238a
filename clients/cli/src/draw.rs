//! Pictures a person can open: `inferctl detect --draw` (the image with
//! each detected object's box and label drawn on it) and `inferctl depth
//! --colormap` (the depth picture in colour), written as PNGs.

pub mod colormap;
mod font;

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use image::{ImageDecoder, ImageReader, Rgb, RgbImage};
use inferd_proto::v1::DetectedObject;

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
/// the boxes' coordinates fit), draws the objects and writes a PNG to `out`.
pub fn detections(bytes: &[u8], objects: &[DetectedObject], out: &Path) -> Result<()> {
    let mut decoder = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()?
        .into_decoder()
        .context("decode the image to draw on")?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = image::DynamicImage::from_decoder(decoder).context("decode the image to draw on")?;
    decoded.apply_orientation(orientation);
    let mut canvas = decoded.into_rgb8();
    // Lines and letters grow with the image: 2 px and 1x at 640 px.
    let side = canvas.width().min(canvas.height());
    let thickness = (side / 320).max(2) as i64;
    let scale = (side / 500).max(1) as i64;
    for object in objects {
        let b = object.r#box.unwrap_or_default();
        let hash = object
            .label
            .bytes()
            .fold(0usize, |h, c| h.wrapping_mul(31).wrapping_add(c as usize));
        let colour = Rgb(PALETTE[hash % PALETTE.len()]);
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
