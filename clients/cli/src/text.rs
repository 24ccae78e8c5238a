//! Text tasks answered by encoder models: classify, zero-shot, fill-mask,
//! ner, qa and embed.

use anyhow::{bail, Result};
use inferd_proto::v1::{
    AnswerQuestionRequest, ClassifyRequest, ClassifyTokensRequest, EmbedRequest, FillMaskRequest, QuestionInput,
    StringList, TextInput, ZeroShotClassifyRequest,
};

use crate::connect::{status, Inference};
use crate::options::{ModelArg, TruncationArg};
use crate::output::Output;

/// Text classification / sentiment analysis.
#[derive(clap::Args)]
// Only here does --model's help name the default; the other commands' help
// has never said it, and stays as it was.
#[command(mut_arg("model", |arg| arg.help("Model name (default: the task's default model)")))]
pub struct Classify {
    /// Texts to classify (each is one input).
    #[arg(required = true)]
    texts: Vec<String>,
    /// Second text of a pair; give one per text.
    #[arg(long)]
    pair: Vec<String>,
    /// Labels to return per text (0 = all; default 1).
    #[arg(long)]
    top_k: Option<u32>,
    /// softmax, sigmoid or none (default: as pipeline() picks).
    #[arg(long = "function")]
    function_to_apply: Option<String>,
    #[command(flatten)]
    truncation: TruncationArg,
    #[command(flatten)]
    model: ModelArg,
}

impl Classify {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let (texts, pair) = (&self.texts, &self.pair);
        if !pair.is_empty() && pair.len() != texts.len() {
            bail!("give one --pair per text ({} texts, {} pairs)", texts.len(), pair.len());
        }
        let inputs = texts
            .iter()
            .enumerate()
            .map(|(i, text)| TextInput {
                text: text.clone(),
                text_pair: pair.get(i).cloned(),
            })
            .collect();
        let request = ClassifyRequest {
            model: self.model.name(),
            inputs,
            top_k: self.top_k,
            function_to_apply: self.function_to_apply.unwrap_or_default(),
            truncation: self.truncation.truncation,
        };
        let response = client.classify(request).await.map_err(status)?.into_inner();
        out.classifications(&self.texts, &response.results)
    }
}

/// Zero-shot classification against candidate labels.
#[derive(clap::Args)]
pub struct ZeroShot {
    #[arg(required = true)]
    texts: Vec<String>,
    /// Candidate labels (repeat, or separate with commas).
    #[arg(long = "labels", required = true, value_delimiter = ',')]
    labels: Vec<String>,
    /// Hypothesis template with {} for the label.
    #[arg(long)]
    template: Option<String>,
    /// Score each label independently.
    #[arg(long)]
    multi_label: bool,
    #[command(flatten)]
    model: ModelArg,
}

impl ZeroShot {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = ZeroShotClassifyRequest {
            model: self.model.name(),
            inputs: self.texts,
            candidate_labels: self.labels,
            hypothesis_template: self.template.unwrap_or_default(),
            multi_label: self.multi_label,
        };
        let response = client.zero_shot_classify(request).await.map_err(status)?.into_inner();
        out.zero_shot(&response.results)
    }
}

/// Fill the mask token ([MASK], <mask>, ...) in texts.
#[derive(clap::Args)]
pub struct FillMask {
    #[arg(required = true)]
    texts: Vec<String>,
    #[arg(long)]
    top_k: Option<u32>,
    /// Only consider these words (repeatable).
    #[arg(long = "target")]
    targets: Vec<String>,
    #[command(flatten)]
    truncation: TruncationArg,
    #[command(flatten)]
    model: ModelArg,
}

impl FillMask {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = FillMaskRequest {
            model: self.model.name(),
            inputs: self.texts.clone(),
            top_k: self.top_k,
            targets: self.targets,
            truncation: self.truncation.truncation,
        };
        let response = client.fill_mask(request).await.map_err(status)?.into_inner();
        out.fill_mask(&self.texts, &response.results)
    }
}

/// Named entities (token classification).
#[derive(clap::Args)]
pub struct Ner {
    #[arg(required = true)]
    texts: Vec<String>,
    /// none, simple, first, average or max.
    #[arg(long, default_value = "none")]
    aggregation: String,
    /// Labels to leave out (default O); give --ignore-label "" to keep all.
    #[arg(long = "ignore-label")]
    ignore_labels: Option<Vec<String>>,
    #[command(flatten)]
    model: ModelArg,
}

impl Ner {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = ClassifyTokensRequest {
            model: self.model.name(),
            inputs: self.texts.clone(),
            aggregation_strategy: self.aggregation,
            ignore_labels: self.ignore_labels.map(|labels| StringList {
                values: labels.into_iter().filter(|l| !l.is_empty()).collect(),
            }),
        };
        let response = client.classify_tokens(request).await.map_err(status)?.into_inner();
        out.entities(&self.texts, &response.results)
    }
}

/// Extractive question answering.
#[derive(clap::Args)]
pub struct Qa {
    #[arg(long)]
    question: String,
    #[arg(long)]
    context: String,
    #[arg(long)]
    top_k: Option<u32>,
    #[arg(long)]
    handle_impossible_answer: bool,
    #[command(flatten)]
    model: ModelArg,
}

impl Qa {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = AnswerQuestionRequest {
            model: self.model.name(),
            inputs: vec![QuestionInput {
                question: self.question,
                context: self.context,
            }],
            top_k: self.top_k,
            handle_impossible_answer: self.handle_impossible_answer,
            ..Default::default()
        };
        let response = client.answer_question(request).await.map_err(status)?.into_inner();
        out.answers(&response.results[0].answers)
    }
}

/// Sentence embeddings (feature extraction).
#[derive(clap::Args)]
pub struct Embed {
    #[arg(required = true)]
    texts: Vec<String>,
    /// mean, cls, max or none (default: the checkpoint's pooling).
    #[arg(long)]
    pooling: Option<String>,
    /// L2-normalise (default: as the checkpoint says).
    #[arg(long)]
    normalize: Option<bool>,
    /// Also print every token's vector.
    #[arg(long)]
    tokens: bool,
    #[command(flatten)]
    truncation: TruncationArg,
    #[command(flatten)]
    model: ModelArg,
}

impl Embed {
    pub async fn run(self, mut client: Inference, out: &Output) -> Result<()> {
        let request = EmbedRequest {
            model: self.model.name(),
            inputs: self.texts.clone(),
            pooling: self.pooling.unwrap_or_default(),
            normalize: self.normalize,
            return_token_embeddings: self.tokens,
            truncation: self.truncation.truncation,
        };
        let response = client.embed(request).await.map_err(status)?.into_inner();
        out.embeddings(&self.texts, &response.results, self.tokens)
    }
}
