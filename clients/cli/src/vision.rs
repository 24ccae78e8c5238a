//! Vision tasks: classify-image, detect.

use anyhow::Result;
use inferd_proto::v1::{ClassifyImageRequest, DetectObjectsRequest, ImageInput};

use crate::connect::{status, Inference};
use crate::options::{InputFiles, ModelArg};
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

/// `out.png` as `out-2.png`.
fn numbered(path: &std::path::Path, n: usize) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}
