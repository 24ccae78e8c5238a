//! Audio tasks: transcribe.

use anyhow::Result;
use inferd_proto::v1::{AudioInput, TranscribeRequest};

use crate::connect::{status, Inference};
use crate::options::{InputFiles, ModelArg};
use crate::output::Output;

/// Speech recognition of audio files (WAV, FLAC, MP3, OGG/Vorbis).
#[derive(clap::Args)]
pub struct Transcribe {
    #[command(flatten)]
    files: InputFiles,
    /// Also print the words (or characters) with their times.
    #[arg(long, value_parser = ["char", "word"])]
    timestamps: Option<String>,
    /// Transcribe in chunks of this many seconds (for long audio).
    #[arg(long)]
    chunk_length_s: Option<f64>,
    /// Overlap of the chunks: one value, or LEFT,RIGHT (default chunk/6).
    #[arg(long, value_delimiter = ',')]
    stride_length_s: Vec<f64>,
    #[command(flatten)]
    model: ModelArg,
}

impl Transcribe {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let inputs = self.files.read()?.into_iter().map(|data| AudioInput { data }).collect();
        let request = TranscribeRequest {
            model: self.model.name(),
            inputs,
            return_timestamps: self.timestamps.unwrap_or_default(),
            chunk_length_s: self.chunk_length_s,
            stride_length_s: self.stride_length_s,
        };
        let response = client.transcribe(request).await.map_err(status)?.into_inner();
        out.transcriptions(&self.files.names(), &response.results)
    }
}
