//! Vision tasks: classify-image.

use anyhow::Result;
use inferd_proto::v1::{ClassifyImageRequest, ImageInput};

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
