//! Vision tasks: classify-image, detect, segment, depth.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use inferd_proto::v1::{
    ClassifyImageRequest, DepthMap, DetectObjectsRequest, EstimateDepthRequest, ImageInput, SegmentImageRequest,
};

use crate::connect::{status, Inference};
use crate::draw::colormap::Colormap;
use crate::options::{numbered, InputFiles, ModelArg};
use crate::output::Output;

/// Image classification of image files.
#[derive(clap::Args)]
pub struct ClassifyImage {
    #[command(flatten)]
    files: InputFiles,
    /// Labels per image (default 5; 0 = all).
    #[arg(long)]
    top_k: Option<u32>,
    #[arg(long = "function")]
    function_to_apply: Option<String>,
    #[command(flatten)]
    model: ModelArg,
}

impl ClassifyImage {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let inputs = self.files.read()?.into_iter().map(|data| ImageInput { data }).collect();
        let request = ClassifyImageRequest {
            model: self.model.name(),
            inputs,
            top_k: self.top_k,
            function_to_apply: self.function_to_apply.unwrap_or_default(),
        };
        let response = client.classify_image(request).await.map_err(status)?.into_inner();
        out.classifications(&self.files.names(), &response.results)
    }
}

/// Object detection in image files: each object's score, label and box
/// (pixels: xmin ymin xmax ymax).
#[derive(clap::Args)]
pub struct Detect {
    #[command(flatten)]
    files: InputFiles,
    /// Keep objects scoring above this (default 0.5).
    #[arg(long)]
    threshold: Option<f32>,
    /// Also write the image with the boxes and labels drawn on it, as a PNG
    /// (one image: this file; several: FILE with each image's number added).
    #[arg(long, value_name = "FILE")]
    draw: Option<std::path::PathBuf>,
    #[command(flatten)]
    model: ModelArg,
}

impl Detect {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let images = self.files.read()?;
        let inputs = images.iter().map(|data| ImageInput { data: data.clone() }).collect();
        let request = DetectObjectsRequest {
            model: self.model.name(),
            inputs,
            threshold: self.threshold,
        };
        let response = client.detect_objects(request).await.map_err(status)?.into_inner();
        out.detections(&self.files.names(), &response.results)?;
        if let Some(path) = &self.draw {
            for (i, (image, result)) in images.iter().zip(&response.results).enumerate() {
                let target = if images.len() == 1 {
                    path.clone()
                } else {
                    numbered(path, i + 1)
                };
                crate::draw::detections(image, &result.objects, &target)?;
                eprintln!("drew {} objects on {}", result.objects.len(), target.display());
            }
        }
        Ok(())
    }
}

/// Image segmentation of image files: each segment's label (and score for
/// instance and panoptic segmentation) and its size in pixels; with
/// --overlay the image with each segment tinted and labelled, with --masks
/// each segment's mask as a PNG.
#[derive(clap::Args)]
pub struct Segment {
    #[command(flatten)]
    files: InputFiles,
    /// "semantic", "instance" or "panoptic" (default: the model's own).
    #[arg(long)]
    subtask: Option<String>,
    /// Keep instance and panoptic segments scoring above this (default 0.9).
    #[arg(long)]
    threshold: Option<f32>,
    /// The probability above which a pixel is in a query's mask (default 0.5).
    #[arg(long)]
    mask_threshold: Option<f32>,
    /// Panoptic: drop a segment keeping less than this share of its mask
    /// (default 0.5).
    #[arg(long)]
    overlap_mask_area_threshold: Option<f32>,
    /// Panoptic: label ids whose segments are fused into one per label
    /// (comma-separated, e.g. 3,4 for two "stuff" labels).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    fuse: Vec<u32>,
    /// Write the image with its segments tinted and labelled as a PNG (one
    /// image: this file; several: FILE with each image's number added).
    #[arg(long, value_name = "FILE")]
    overlay: Option<PathBuf>,
    /// Write each segment's mask into this directory, as
    /// IMAGE-NUMBER-LABEL.png (255 on the segment).
    #[arg(long, value_name = "DIR")]
    masks: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArg,
}

impl Segment {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let images = self.files.read()?;
        let request = SegmentImageRequest {
            model: self.model.name(),
            inputs: images.iter().map(|data| ImageInput { data: data.clone() }).collect(),
            subtask: self.subtask.unwrap_or_default(),
            threshold: self.threshold,
            mask_threshold: self.mask_threshold,
            overlap_mask_area_threshold: self.overlap_mask_area_threshold,
            label_ids_to_fuse: self.fuse,
            ..Default::default()
        };
        let response = client.segment_image(request).await.map_err(status)?.into_inner();
        out.segmentations(&self.files.names(), &response.results)?;
        let count = images.len();
        for (i, (image, result)) in images.iter().zip(&response.results).enumerate() {
            if let Some(path) = &self.overlay {
                let target = if count == 1 {
                    path.clone()
                } else {
                    numbered(path, i + 1)
                };
                crate::draw::segments(image, &result.segments, &target)?;
                eprintln!("drew {} segments on {}", result.segments.len(), target.display());
            }
            if let Some(dir) = &self.masks {
                std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
                for (k, segment) in result.segments.iter().enumerate() {
                    let name: String = segment
                        .label
                        .chars()
                        .map(|c| if c.is_alphanumeric() { c } else { '_' })
                        .collect();
                    let path = dir.join(format!("{}-{}-{name}.png", i + 1, k + 1));
                    std::fs::write(&path, &segment.mask).with_context(|| format!("write {}", path.display()))?;
                }
                eprintln!("wrote {} masks into {}", result.segments.len(), dir.display());
            }
        }
        Ok(())
    }
}

/// Depth estimation of image files: each image's depth map (pipeline()'s
/// `predicted_depth`, at the image's size), its range printed, written as
/// a picture with --out and as numbers with --npy.
#[derive(clap::Args)]
pub struct Depth {
    #[command(flatten)]
    files: InputFiles,
    /// Write the depth picture as a PNG: pipeline()'s 8-bit grey `depth`,
    /// coloured with --colormap, 16-bit with --png16 (one image: this
    /// file; several: FILE with each image's number added).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Colour the picture of --out (bare --colormap: magma).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "magma", requires = "out")]
    colormap: Option<Colormap>,
    /// Write --out as a 16-bit greyscale PNG (65,536 levels instead of 256).
    #[arg(long, conflicts_with = "colormap", requires = "out")]
    png16: bool,
    /// Write predicted_depth as a NumPy .npy file (float32, [height, width]),
    /// numbered like --out.
    #[arg(long, value_name = "FILE")]
    npy: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArg,
}

impl Depth {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let inputs = self.files.read()?.into_iter().map(|data| ImageInput { data }).collect();
        let request = EstimateDepthRequest {
            model: self.model.name(),
            inputs,
            png16: self.png16,
        };
        let response = client.estimate_depth(request).await.map_err(status)?.into_inner();
        out.depth_maps(&self.files.names(), &response.results)?;
        let count = response.results.len();
        let target = |path: &Path, i: usize| {
            if count == 1 {
                path.to_path_buf()
            } else {
                numbered(path, i + 1)
            }
        };
        for (i, map) in response.results.iter().enumerate() {
            if let Some(path) = &self.out {
                let path = target(path, i);
                match self.colormap {
                    Some(colormap) => crate::draw::depth(&map.depth, colormap, &path)?,
                    None => {
                        let png = if self.png16 { &map.depth16 } else { &map.depth };
                        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
                    }
                }
                eprintln!(
                    "wrote the depth picture of {} to {}",
                    self.files.names()[i],
                    path.display()
                );
            }
            if let Some(path) = &self.npy {
                let path = target(path, i);
                write_npy(&path, map)?;
                eprintln!(
                    "wrote predicted_depth of {} to {}",
                    self.files.names()[i],
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// predicted_depth as a version 1.0 .npy file: the magic, a header dict
/// padded with spaces to a multiple of 64 bytes, then the float32 values.
fn write_npy(path: &Path, map: &DepthMap) -> Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        map.height, map.width
    );
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(map.predicted_depth.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}
