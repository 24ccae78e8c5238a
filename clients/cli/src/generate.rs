//! Generation: `generate` continues prompts with a causal model; `summarize`
//! and `translate` run an encoder-decoder with the same settings.

use anyhow::{bail, Context, Result};
use inferd_proto::v1::{GenerateRequest, SummarizeRequest, TranslateRequest};

use crate::connect::{status, Inference};
use crate::options::{ModelArg, TruncationArg};
use crate::output::Output;

/// Text generation: continue prompts (greedy by default here; --sample to sample).
#[derive(clap::Args)]
pub struct Generate {
    /// The prompts to continue (each is its own request input).
    #[arg(required = true)]
    prompts: Vec<String>,
    /// New tokens to generate at most (default: the model's settings).
    #[arg(long)]
    max_new_tokens: Option<u32>,
    /// Total length, prompt included, when --max-new-tokens is not given.
    #[arg(long)]
    max_length: Option<u32>,
    /// New tokens to generate at least before an end-of-text token counts.
    #[arg(long)]
    min_new_tokens: Option<u32>,
    /// Sample instead of greedy decoding.
    #[arg(long)]
    sample: bool,
    /// Sampling temperature (with --sample); lower is more conservative.
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample among the k most likely tokens only (with --sample).
    #[arg(long)]
    top_k: Option<u32>,
    /// Sample among the most likely tokens whose probabilities add up to p
    /// (with --sample).
    #[arg(long)]
    top_p: Option<f32>,
    /// Penalty above 1 for tokens already in the text (CTRL's).
    #[arg(long)]
    repetition_penalty: Option<f32>,
    /// Never repeat an n-gram of this size.
    #[arg(long)]
    no_repeat_ngram_size: Option<u32>,
    /// Continuations per prompt (with --sample; one when decoding greedily).
    #[arg(long)]
    num_return_sequences: Option<u32>,
    /// Random seed for sampling, for results that repeat.
    #[arg(long)]
    seed: Option<u64>,
    /// Stop sequence (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Print tokens as they arrive (one prompt).
    #[arg(long)]
    stream: bool,
    #[command(flatten)]
    model: ModelArg,
}

impl Generate {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = GenerateRequest {
            model: self.model.name(),
            inputs: self.prompts,
            max_new_tokens: self.max_new_tokens,
            max_length: self.max_length,
            min_new_tokens: self.min_new_tokens,
            num_return_sequences: self.num_return_sequences,
            do_sample: Some(self.sample),
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            seed: self.seed,
            stop: self.stop,
            ..Default::default()
        };
        if self.stream {
            // The prompt first, as pipeline()'s generated_text starts with it.
            if let [prompt] = request.inputs.as_slice() {
                out.stream_prompt(prompt)?;
            }
            let mut messages = client.generate_stream(request).await.map_err(status)?.into_inner();
            while let Some(message) = messages.message().await.map_err(status)? {
                out.streamed(&message)?;
            }
            Ok(())
        } else {
            let response = client.generate(request).await.map_err(status)?.into_inner();
            out.generated(&response.results)
        }
    }
}

/// Generation settings of `summarize` and `translate`; each one absent
/// takes the model's own, as pipeline() resolves them.
#[derive(clap::Args)]
pub struct Seq2SeqSettings {
    /// Shortest output, in tokens (counting the decoder's start token).
    #[arg(long)]
    min_length: Option<u32>,
    /// Longest output, in tokens (counting the decoder's start token).
    #[arg(long)]
    max_length: Option<u32>,
    /// Instead of --max-length: at most this many new tokens.
    #[arg(long)]
    max_new_tokens: Option<u32>,
    /// Beams of the beam search (1: greedy).
    #[arg(long)]
    num_beams: Option<u32>,
    /// Exponent of the length in the beam score (above 1 favours longer outputs).
    #[arg(long)]
    length_penalty: Option<f32>,
    /// true, false or never.
    #[arg(long)]
    early_stopping: Option<String>,
    /// Never repeat an n-gram of this size.
    #[arg(long)]
    no_repeat_ngram_size: Option<u32>,
    /// Outputs per input, best first (at most --num-beams).
    #[arg(long)]
    num_return_sequences: Option<u32>,
    #[command(flatten)]
    truncation: TruncationArg,
}

/// A SummarizeRequest or TranslateRequest with the given fields and the
/// generation settings of a `Seq2SeqSettings` (both messages name them alike).
macro_rules! with_settings {
    ($message:ident { $($field:ident: $value:expr),* $(,)? }, $settings:expr) => {{
        let s: Seq2SeqSettings = $settings;
        $message {
            $($field: $value,)*
            min_length: s.min_length,
            max_length: s.max_length,
            max_new_tokens: s.max_new_tokens,
            num_beams: s.num_beams,
            length_penalty: s.length_penalty,
            early_stopping: s.early_stopping.unwrap_or_default(),
            no_repeat_ngram_size: s.no_repeat_ngram_size,
            num_return_sequences: s.num_return_sequences,
            truncation: s.truncation.truncation,
        }
    }};
}

/// Summarize texts (each argument is a file path or the text itself).
#[derive(clap::Args)]
pub struct Summarize {
    #[arg(required = true)]
    inputs: Vec<String>,
    #[command(flatten)]
    settings: Seq2SeqSettings,
    #[command(flatten)]
    model: ModelArg,
}

impl Summarize {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let texts = self
            .inputs
            .iter()
            .map(|i| text_or_file(i))
            .collect::<Result<Vec<_>>>()?;
        let request = with_settings!(
            SummarizeRequest {
                model: self.model.name(),
                inputs: texts,
            },
            self.settings
        );
        let response = client.summarize(request).await.map_err(status)?.into_inner();
        let texts = response
            .results
            .iter()
            .map(|r| r.summaries.iter().map(|s| s.summary_text.as_str()).collect())
            .collect();
        out.texts("summary_text", texts)
    }
}

/// An argument of `summarize`: the contents of the file it names, or the
/// text itself. One word that names no file is taken for a mistyped path
/// (nobody summarizes one word) and refused, rather than sent as the text.
fn text_or_file(arg: &str) -> Result<String> {
    let path = std::path::Path::new(arg);
    if path.is_file() {
        return std::fs::read_to_string(path).with_context(|| format!("read {arg}"));
    }
    if path.is_dir() {
        bail!("{arg} is a directory: give a text file, or the text itself in quotes");
    }
    if !arg.trim().contains(char::is_whitespace) {
        bail!("{arg}: no such file (to summarize a text, give the text itself in quotes, or a file that exists)");
    }
    Ok(arg.to_string())
}

/// Translate texts, e.g. `inferctl translate "How are you?" --from en --to fr`.
#[derive(clap::Args)]
pub struct Translate {
    #[arg(required = true)]
    texts: Vec<String>,
    /// Source language (e.g. en); with --to. Default: the model's.
    #[arg(long = "from")]
    src_lang: Option<String>,
    /// Target language (e.g. fr).
    #[arg(long = "to")]
    tgt_lang: Option<String>,
    #[command(flatten)]
    settings: Seq2SeqSettings,
    #[command(flatten)]
    model: ModelArg,
}

impl Translate {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = with_settings!(
            TranslateRequest {
                model: self.model.name(),
                inputs: self.texts,
                src_lang: self.src_lang.unwrap_or_default(),
                tgt_lang: self.tgt_lang.unwrap_or_default(),
            },
            self.settings
        );
        let response = client.translate(request).await.map_err(status)?.into_inner();
        let texts = response
            .results
            .iter()
            .map(|r| r.translations.iter().map(|t| t.translation_text.as_str()).collect())
            .collect();
        out.texts("translation_text", texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_reads_files_takes_texts_and_refuses_a_missing_path() {
        let dir = std::env::temp_dir().join(format!("inferctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("article.txt");
        std::fs::write(&file, "The council met today.").unwrap();
        assert_eq!(text_or_file(file.to_str().unwrap()).unwrap(), "The council met today.");
        assert_eq!(
            text_or_file("The council met today.").unwrap(),
            "The council met today."
        );
        let missing = text_or_file(dir.join("nope.txt").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no such file"), "{missing}");
        let directory = text_or_file(dir.to_str().unwrap()).unwrap_err().to_string();
        assert!(directory.contains("is a directory"), "{directory}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
