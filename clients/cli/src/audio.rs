//! Audio tasks: transcribe, say.

use std::path::PathBuf;

use anyhow::{Context, Result};
use inferd_proto::v1::{AudioInput, SynthesizeRequest, TranscribeRequest};

use crate::connect::{status, Inference};
use crate::options::{InputFiles, ModelArg};
use crate::output::Output;

/// Speech recognition of audio files (WAV, FLAC, MP3, OGG/Vorbis).
#[derive(clap::Args)]
pub struct Transcribe {
    #[command(flatten)]
    files: InputFiles,
    /// Also print the pieces with their times: "char" or "word" on CTC
    /// models (Wav2Vec2), "true" (segments) or "word" on Whisper.
    #[arg(long, value_parser = ["char", "word", "true"])]
    timestamps: Option<String>,
    /// Transcribe in chunks of this many seconds (for long audio).
    #[arg(long)]
    chunk_length_s: Option<f64>,
    /// Overlap of the chunks: one value, or LEFT,RIGHT (default chunk/6).
    #[arg(long, value_delimiter = ',')]
    stride_length_s: Vec<f64>,
    /// Whisper: the language spoken, a name or code ("french", "fr");
    /// default: detected (multilingual models) or English.
    #[arg(long)]
    language: Option<String>,
    /// Whisper: transcribe, or translate into English.
    #[arg(long, value_parser = ["transcribe", "translate"])]
    task: Option<String>,
    /// Whisper: also print the language of each file.
    #[arg(long)]
    return_language: bool,
    /// Whisper: beams of the search (default: the model's, else 5).
    #[arg(long)]
    num_beams: Option<u32>,
    /// Whisper: sample at this temperature instead of searching.
    #[arg(long)]
    temperature: Option<f32>,
    /// Whisper: the most new tokens per 30 s window.
    #[arg(long)]
    max_new_tokens: Option<u32>,
    /// Whisper, with --temperature: the sampling seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print each segment with its times as soon as it is decoded (one
    /// file; Whisper decodes long audio 30 s window after window).
    #[arg(long, conflicts_with = "chunk_length_s")]
    stream: bool,
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
            language: self.language.unwrap_or_default(),
            task: self.task.unwrap_or_default(),
            return_language: self.return_language,
            num_beams: self.num_beams,
            temperature: self.temperature,
            max_new_tokens: self.max_new_tokens,
            seed: self.seed,
        };
        if self.stream {
            if request.inputs.len() != 1 {
                anyhow::bail!("--stream transcribes one file (got {})", request.inputs.len());
            }
            let mut messages = client.transcribe_stream(request).await.map_err(status)?.into_inner();
            while let Some(message) = messages.message().await.map_err(status)? {
                out.transcribed_segments(&message)?;
            }
            return Ok(());
        }
        let response = client.transcribe(request).await.map_err(status)?.into_inner();
        out.transcriptions(&self.files.names(), &response.results)
    }
}

/// Speak text (text-to-speech, SpeechT5): writes a WAV file per text.
#[derive(clap::Args)]
pub struct Say {
    /// The text(s) to speak; several are generated together.
    #[arg(required = true)]
    texts: Vec<String>,
    /// Where to write the sound (a WAV file); with several texts, numbered
    /// out-1.wav, out-2.wav, ...
    #[arg(long, short)]
    out: PathBuf,
    /// A speaker shipped with the model (`inferctl models get NAME` lists
    /// them).
    #[arg(long, conflicts_with = "speaker_embeddings")]
    speaker: Option<String>,
    /// A file of the speaker's x-vector instead: little-endian float32
    /// values (e.g. numpy's `x.astype("<f4").tofile(...)`).
    #[arg(long, value_name = "FILE")]
    speaker_embeddings: Option<PathBuf>,
    /// Seed of the dropout SpeechT5 keeps on while speaking: the same seed
    /// gives the same sound (default: a random one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Write 32-bit float samples instead of 16-bit PCM.
    #[arg(long)]
    float32: bool,
    /// Spell numbers out first ("$5" is read "five dollars").
    #[arg(long)]
    normalize: bool,
    #[command(flatten)]
    model: ModelArg,
}

impl Say {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let speaker_embeddings = match &self.speaker_embeddings {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
                if bytes.len() % 4 != 0 {
                    anyhow::bail!("{}: not a whole number of float32 values", path.display());
                }
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            None => vec![],
        };
        let request = SynthesizeRequest {
            model: self.model.name(),
            inputs: self.texts.clone(),
            speaker: self.speaker.unwrap_or_default(),
            speaker_embeddings,
            seed: self.seed,
            audio_format: if self.float32 { "float32" } else { "pcm16" }.into(),
            normalize: self.normalize.then_some(true),
            ..Default::default()
        };
        let response = client.synthesize(request).await.map_err(status)?.into_inner();
        let count = response.results.len();
        let mut written = Vec::with_capacity(count);
        for (i, speech) in response.results.iter().enumerate() {
            let path = if count == 1 {
                self.out.clone()
            } else {
                crate::options::numbered(&self.out, i + 1)
            };
            std::fs::write(&path, &speech.audio).with_context(|| format!("write {}", path.display()))?;
            written.push(path);
        }
        out.speech(&self.texts, &response.results, &written)
    }
}
