//! Wav2Vec2ForCTC (transformers' modeling_wav2vec2.py), both layouts: the
//! base one (a group norm on the first convolution only, post-layer-norm
//! transformer) and the "stable layer norm" one of the large checkpoints
//! (a layer norm on every convolution, pre-layer-norm transformer with a
//! final norm). The positional convolution is weight-normed; its `weight_g`
//! and `weight_v` load from either the legacy names or PyTorch's
//! `parametrizations.weight.original0/1`.
//!
//! Also what turns audio into text around the model: the feature
//! extractor's normalisation and the CTC tokenizer's greedy decoding with
//! character offsets (Wav2Vec2CTCTokenizer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::config::read_json;
use crate::error::{ModelError, Result};
use crate::layers::{attention, merge_heads, Activation, FusedLinear, LayerNorm, Linear};
use crate::weights::{var_store_bytes, Checkpoint};

pub const ARCHITECTURES: &[&str] = &["Wav2Vec2ForCTC"];

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub conv_dim: Vec<i64>,
    pub conv_kernel: Vec<i64>,
    pub conv_stride: Vec<i64>,
    #[serde(default)]
    pub conv_bias: bool,
    #[serde(default = "group")]
    pub feat_extract_norm: String,
    #[serde(default)]
    pub do_stable_layer_norm: bool,
    pub hidden_size: i64,
    pub num_hidden_layers: usize,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    #[serde(default = "gelu")]
    pub hidden_act: Activation,
    #[serde(default = "gelu")]
    pub feat_extract_activation: Activation,
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    pub num_conv_pos_embeddings: i64,
    pub num_conv_pos_embedding_groups: i64,
    pub vocab_size: i64,
}

fn group() -> String {
    "group".into()
}

fn gelu() -> Activation {
    Activation::Gelu
}

fn layer_norm_eps() -> f64 {
    1e-5
}

impl Config {
    /// Input samples per output frame (the product of the strides).
    pub fn inputs_to_logits_ratio(&self) -> i64 {
        self.conv_stride.iter().product()
    }

    /// Output frames for `samples` input samples.
    pub fn frames(&self, samples: i64) -> i64 {
        self.conv_kernel
            .iter()
            .zip(&self.conv_stride)
            .fold(samples, |n, (k, s)| if n < *k { 0 } else { (n - k) / s + 1 })
    }

    /// The fewest samples that give one frame.
    pub fn min_samples(&self) -> i64 {
        self.conv_kernel
            .iter()
            .zip(&self.conv_stride)
            .rev()
            .fold(1, |n, (k, s)| (n - 1) * s + k)
    }
}

/// nn.LayerNorm and nn.GroupNorm's eps.
const TORCH_NORM_EPS: f64 = 1e-5;

enum ConvNorm {
    None,
    /// GroupNorm with one group per channel (statistics over time).
    Group {
        weight: Tensor,
        bias: Tensor,
        channels: i64,
    },
    /// LayerNorm over channels, at every time step.
    Layer(LayerNorm),
}

struct ConvLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    norm: ConvNorm,
    act: Activation,
}

impl ConvLayer {
    fn new(p: tch::nn::Path, cfg: &Config, i: usize) -> Self {
        let in_dim = if i == 0 { 1 } else { cfg.conv_dim[i - 1] };
        let out = cfg.conv_dim[i];
        let conv = &p / "conv";
        let norm_path = &p / "layer_norm";
        let norm = match (cfg.feat_extract_norm.as_str(), i) {
            ("layer", _) => ConvNorm::Layer(LayerNorm::new(norm_path, out, TORCH_NORM_EPS)),
            (_, 0) => ConvNorm::Group {
                weight: norm_path.zeros_no_train("weight", &[out]),
                bias: norm_path.zeros_no_train("bias", &[out]),
                channels: out,
            },
            _ => ConvNorm::None,
        };
        ConvLayer {
            weight: conv.zeros_no_train("weight", &[out, in_dim, cfg.conv_kernel[i]]),
            bias: cfg.conv_bias.then(|| conv.zeros_no_train("bias", &[out])),
            stride: cfg.conv_stride[i],
            norm,
            act: cfg.feat_extract_activation,
        }
    }

    /// [batch, channels, time] -> [batch, channels, time']
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x.conv1d(&self.weight, self.bias.as_ref(), [self.stride], [0], [1], 1);
        let x = match &self.norm {
            ConvNorm::None => x,
            ConvNorm::Group { weight, bias, channels } => {
                x.group_norm(*channels, Some(weight), Some(bias), TORCH_NORM_EPS, false)
            }
            ConvNorm::Layer(norm) => norm.forward(&x.transpose(-2, -1)).transpose(-2, -1),
        };
        self.act.forward(&x)
    }
}

/// The weight-normed grouped convolution that adds relative positions.
struct PositionalConv {
    weight_g: Tensor,
    weight_v: Tensor,
    bias: Tensor,
    kernel: i64,
    groups: i64,
    act: Activation,
}

impl PositionalConv {
    fn new(p: tch::nn::Path, cfg: &Config) -> Self {
        let conv = &p / "conv";
        let (h, k, g) = (
            cfg.hidden_size,
            cfg.num_conv_pos_embeddings,
            cfg.num_conv_pos_embedding_groups,
        );
        PositionalConv {
            weight_g: conv.zeros_no_train("weight_g", &[1, 1, k]),
            weight_v: conv.zeros_no_train("weight_v", &[h, h / g, k]),
            bias: conv.zeros_no_train("bias", &[h]),
            kernel: k,
            groups: g,
            act: cfg.feat_extract_activation,
        }
    }

    /// [batch, time, hidden] -> the same shape.
    fn forward(&self, x: &Tensor) -> Tensor {
        // weight_norm(dim=2): w = g * v / ||v||, the norm over all but dim 2.
        let norm = self
            .weight_v
            .square()
            .sum_dim_intlist([0i64, 1].as_slice(), true, Kind::Float)
            .sqrt();
        let weight = &self.weight_v * (&self.weight_g / norm);
        let y = x
            .transpose(1, 2)
            .conv1d(&weight, Some(&self.bias), [1], [self.kernel / 2], [1], self.groups);
        // An even kernel gives one frame too many: drop the last.
        let frames = y.size()[2] - if self.kernel % 2 == 0 { 1 } else { 0 };
        self.act.forward(&y.narrow(2, 0, frames)).transpose(1, 2)
    }
}

struct EncoderLayer {
    qkv: FusedLinear,
    out: Linear,
    layer_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    final_layer_norm: LayerNorm,
    heads: i64,
    act: Activation,
    pre_norm: bool,
}

impl EncoderLayer {
    fn new(p: tch::nn::Path, cfg: &Config) -> Self {
        let a = &p / "attention";
        let ff = &p / "feed_forward";
        let h = cfg.hidden_size;
        EncoderLayer {
            qkv: FusedLinear::new(&[&a / "q_proj", &a / "k_proj", &a / "v_proj"], h, h),
            out: Linear::new(&a / "out_proj", h, h),
            layer_norm: LayerNorm::new(&p / "layer_norm", h, cfg.layer_norm_eps),
            intermediate: Linear::new(&ff / "intermediate_dense", h, cfg.intermediate_size),
            output: Linear::new(&ff / "output_dense", cfg.intermediate_size, h),
            final_layer_norm: LayerNorm::new(&p / "final_layer_norm", h, cfg.layer_norm_eps),
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            pre_norm: cfg.do_stable_layer_norm,
        }
    }

    fn attend(&self, x: &Tensor) -> Tensor {
        let (q, k, v, _) = self.qkv.attention_inputs(x, self.heads, false);
        self.out.forward(&merge_heads(&attention(&q, &k, &v, None)))
    }

    fn feed_forward(&self, x: &Tensor) -> Tensor {
        self.output.forward(&self.act.forward(&self.intermediate.forward(x)))
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        if self.pre_norm {
            let x = x + self.attend(&self.layer_norm.forward(x));
            &x + self.feed_forward(&self.final_layer_norm.forward(&x))
        } else {
            let x = self.layer_norm.forward(&(x + self.attend(x)));
            self.final_layer_norm.forward(&(&x + self.feed_forward(&x)))
        }
    }
}

/// `Wav2Vec2ForCTC`: raw samples in, CTC logits out.
pub struct Wav2Vec2ForCtc {
    conv_layers: Vec<ConvLayer>,
    projection_norm: LayerNorm,
    projection: Linear,
    positional: PositionalConv,
    encoder_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    lm_head: Linear,
    stable: bool,
}

impl Wav2Vec2ForCtc {
    pub fn new(p: tch::nn::Path, cfg: &Config) -> Self {
        let w = &p / "wav2vec2";
        let fe = &w / "feature_extractor" / "conv_layers";
        let fp = &w / "feature_projection";
        let enc = &w / "encoder";
        let last_conv = *cfg.conv_dim.last().expect("conv layers");
        Wav2Vec2ForCtc {
            conv_layers: (0..cfg.conv_dim.len())
                .map(|i| ConvLayer::new(&fe / i, cfg, i))
                .collect(),
            projection_norm: LayerNorm::new(&fp / "layer_norm", last_conv, cfg.layer_norm_eps),
            projection: Linear::new(&fp / "projection", last_conv, cfg.hidden_size),
            positional: PositionalConv::new(&enc / "pos_conv_embed", cfg),
            encoder_norm: LayerNorm::new(&enc / "layer_norm", cfg.hidden_size, cfg.layer_norm_eps),
            layers: (0..cfg.num_hidden_layers)
                .map(|i| EncoderLayer::new(&enc / "layers" / i, cfg))
                .collect(),
            lm_head: Linear::new(&p / "lm_head", cfg.hidden_size, cfg.vocab_size),
            stable: cfg.do_stable_layer_norm,
        }
    }

    /// input_values [batch, samples] -> logits [batch, frames, vocab].
    pub fn forward(&self, input_values: &Tensor) -> Tensor {
        let mut x = input_values.unsqueeze(1);
        for conv in &self.conv_layers {
            x = conv.forward(&x);
        }
        let x = self
            .projection
            .forward(&self.projection_norm.forward(&x.transpose(1, 2)));
        let mut x = &x + self.positional.forward(&x);
        if !self.stable {
            x = self.encoder_norm.forward(&x);
        }
        for layer in &self.layers {
            x = layer.forward(&x);
        }
        if self.stable {
            x = self.encoder_norm.forward(&x);
        }
        self.lm_head.forward(&x)
    }
}

/// preprocessor_config.json (Wav2Vec2FeatureExtractor).
#[derive(Debug, Clone, Deserialize)]
pub struct FeatureExtractorConfig {
    #[serde(default = "sixteen_k")]
    pub sampling_rate: u32,
    #[serde(default = "yes")]
    pub do_normalize: bool,
}

fn sixteen_k() -> u32 {
    16_000
}

fn yes() -> bool {
    true
}

impl FeatureExtractorConfig {
    /// input_values for one mono signal at `sampling_rate`: the samples, or
    /// with `do_normalize` (x - mean) / sqrt(var + 1e-7), the population
    /// variance, as the feature extractor computes it.
    pub fn input_values(&self, samples: &[f32]) -> Vec<f32> {
        if !self.do_normalize || samples.is_empty() {
            return samples.to_vec();
        }
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = samples.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // numpy works in float32 here: the statistics are rounded to it.
        let (mean, std) = (mean as f32, ((var as f32) + 1e-7).sqrt());
        samples.iter().map(|&x| (x - mean) / std).collect()
    }
}

/// The CTC vocabulary and decoding rules of Wav2Vec2CTCTokenizer.
#[derive(Debug, Clone)]
pub struct CtcVocab {
    tokens: Vec<String>,
    pad: Option<usize>,
    word_delimiter: Option<usize>,
    unk: String,
    lower_case: bool,
    clean_up: bool,
}

/// One character (or word) of a transcription and its frames
/// `start..end` (end exclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Deserialize)]
struct TokenizerConfig {
    #[serde(default = "pad")]
    pad_token: String,
    #[serde(default = "unk")]
    unk_token: String,
    #[serde(default = "delimiter")]
    word_delimiter_token: String,
    #[serde(default)]
    do_lower_case: bool,
    #[serde(default)]
    clean_up_tokenization_spaces: bool,
}

fn pad() -> String {
    "<pad>".into()
}

fn unk() -> String {
    "<unk>".into()
}

fn delimiter() -> String {
    "|".into()
}

/// A special token's content, whether written as a string or as an
/// AddedToken object.
fn token_content(value: &serde_json::Value) -> Option<String> {
    value
        .as_str()
        .map(str::to_string)
        .or_else(|| value.get("content").and_then(|c| c.as_str()).map(str::to_string))
}

impl CtcVocab {
    /// vocab.json and tokenizer_config.json of `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let vocab_path = dir.join("vocab.json");
        if !vocab_path.is_file() {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "vocab.json".into(),
                expected: "the CTC vocabulary of a Wav2Vec2 checkpoint".into(),
            });
        }
        let vocab: HashMap<String, usize> = read_json(&vocab_path)?;
        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfig = if config_path.is_file() {
            let raw: serde_json::Value = read_json(&config_path)?;
            let mut fields = serde_json::Map::new();
            for key in ["pad_token", "unk_token", "word_delimiter_token"] {
                if let Some(v) = raw.get(key).and_then(token_content) {
                    fields.insert(key.into(), v.into());
                }
            }
            for key in ["do_lower_case", "clean_up_tokenization_spaces"] {
                if let Some(v) = raw.get(key).filter(|v| v.is_boolean()) {
                    fields.insert(key.into(), v.clone());
                }
            }
            serde_json::from_value(serde_json::Value::Object(fields))
                .map_err(|e| ModelError::bad_file(&config_path, e))?
        } else {
            serde_json::from_str("{}").expect("defaults")
        };
        Self::new(vocab, &config, &vocab_path)
    }

    fn new(vocab: HashMap<String, usize>, config: &TokenizerConfig, path: &PathBuf) -> Result<Self> {
        let size = vocab.values().max().map_or(0, |m| m + 1);
        let mut tokens = vec![String::new(); size];
        for (token, id) in &vocab {
            tokens[*id] = token.clone();
        }
        if tokens.is_empty() {
            return Err(ModelError::bad_file(path, "the vocabulary is empty"));
        }
        Ok(CtcVocab {
            pad: vocab.get(&config.pad_token).copied(),
            word_delimiter: vocab.get(&config.word_delimiter_token).copied(),
            unk: config.unk_token.clone(),
            lower_case: config.do_lower_case,
            clean_up: config.clean_up_tokenization_spaces,
            tokens,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Greedy CTC decoding of per-frame token ids, as the tokenizer's
    /// `decode(ids, output_char_offsets=True)` without skipping special
    /// tokens: runs of the same id merge, blanks (the pad token) go, the
    /// word delimiter becomes a space. Returns the text (stripped) and the
    /// characters with their frames (not stripped: spaces included).
    pub fn decode(&self, ids: &[i64]) -> (String, Vec<Piece>) {
        // Runs are grouped by token string, as the tokenizer groups them
        // (ids the vocabulary lacks all read as the unknown token).
        let tokens: Vec<&str> = ids
            .iter()
            .map(|&id| {
                usize::try_from(id)
                    .ok()
                    .and_then(|i| self.tokens.get(i))
                    .filter(|t| !t.is_empty())
                    .map_or(self.unk.as_str(), String::as_str)
            })
            .collect();
        let pad = self.pad.map(|i| self.tokens[i].as_str());
        let delimiter = self.word_delimiter.map(|i| self.tokens[i].as_str());
        let mut chars = Vec::new();
        let mut start = 0;
        while start < tokens.len() {
            let token = tokens[start];
            let end = start + tokens[start..].iter().take_while(|&&t| t == token).count();
            if Some(token) != pad {
                let text = if Some(token) == delimiter { " " } else { token };
                chars.push(Piece {
                    text: text.to_string(),
                    start,
                    end,
                });
            }
            start = end;
        }
        let joined: String = chars.iter().map(|c| c.text.as_str()).collect();
        let mut text = joined.trim().to_string();
        if self.lower_case {
            text = text.to_lowercase();
        }
        if self.clean_up {
            text = clean_up_tokenization(&text);
        }
        (text, chars)
    }
}

/// transformers' `clean_up_tokenization`: no space before punctuation and
/// English contractions.
fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
}

/// Words from characters, as the tokenizer's `_get_word_offsets`: runs of
/// non-space characters, each from its first character's start to its last
/// one's end.
pub fn words(chars: &[Piece]) -> Vec<Piece> {
    let mut words: Vec<Piece> = Vec::new();
    let mut current: Option<Piece> = None;
    for c in chars {
        if c.text == " " {
            words.extend(current.take());
        } else if let Some(word) = &mut current {
            word.text.push_str(&c.text);
            word.end = c.end;
        } else {
            current = Some(c.clone());
        }
    }
    words.extend(current);
    words
}

/// A loaded speech-recognition model.
pub struct CtcModel {
    net: Wav2Vec2ForCtc,
    _vs: VarStore,
    pub config: Config,
    pub features: FeatureExtractorConfig,
    pub vocab: CtcVocab,
    pub device: Device,
    pub memory_bytes: u64,
}

impl CtcModel {
    /// Logits [frames, vocab] (f32, CPU) of one signal's input_values.
    pub fn logits(&self, input_values: &[f32]) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let x = Tensor::from_slice(input_values).to_device(self.device).unsqueeze(0);
        Ok(self
            .net
            .forward(&x)
            .squeeze_dim(0)
            .to_kind(Kind::Float)
            .to_device(Device::Cpu))
    }
}

/// config.json, preprocessor_config.json and the vocabulary of `dir`.
fn read_configs(dir: &Path) -> Result<(Config, FeatureExtractorConfig, CtcVocab)> {
    let config: Config = read_json(&crate::config::config_path(dir)?)?;
    if config.conv_dim.len() != config.conv_kernel.len() || config.conv_dim.len() != config.conv_stride.len() {
        return Err(ModelError::bad_file(
            dir.join("config.json"),
            "conv_dim, conv_kernel and conv_stride differ in length",
        ));
    }
    let features_path = dir.join("preprocessor_config.json");
    let features: FeatureExtractorConfig = if features_path.is_file() {
        read_json(&features_path)?
    } else {
        serde_json::from_str("{}").expect("defaults")
    };
    if !crate::audio::SAMPLE_RATES.contains(&features.sampling_rate) {
        return Err(ModelError::bad_file(
            features_path,
            format!("sampling_rate {} is not a usable audio rate", features.sampling_rate),
        ));
    }
    Ok((config, features, CtcVocab::from_dir(dir)?))
}

/// Loads the Wav2Vec2ForCTC checkpoint in `dir` on `device`.
pub fn load_ctc_model(dir: &Path, device: Device) -> Result<CtcModel> {
    let (config, features, vocab) = read_configs(dir)?;
    let mut vs = VarStore::new(device);
    let net = Wav2Vec2ForCtc::new(vs.root(), &config);
    Checkpoint::open(dir)?.load_into(&mut vs)?;
    Ok(CtcModel {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        config,
        features,
        vocab,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> CtcVocab {
        let tokens = ["<pad>", "<s>", "</s>", "<unk>", "|", "A", "B", "C"];
        let vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i)).collect();
        let config: TokenizerConfig = serde_json::from_str("{}").unwrap();
        CtcVocab::new(vocab, &config, &PathBuf::from("vocab.json")).unwrap()
    }

    #[test]
    fn ctc_decoding_merges_runs_drops_blanks_and_keeps_special_tokens() {
        let v = vocab();
        // A A _ A | | B _ _ C <s> | (pad = 0, | = 4)
        let (text, chars) = v.decode(&[4, 5, 5, 0, 5, 4, 4, 6, 0, 0, 7, 1, 4]);
        assert_eq!(text, "AA BC<s>");
        let pieces: Vec<(&str, usize, usize)> = chars.iter().map(|c| (c.text.as_str(), c.start, c.end)).collect();
        assert_eq!(
            pieces,
            vec![
                (" ", 0, 1),
                ("A", 1, 3),
                ("A", 4, 5),
                (" ", 5, 7),
                ("B", 7, 8),
                ("C", 10, 11),
                ("<s>", 11, 12),
                (" ", 12, 13)
            ]
        );
        let words = words(&chars);
        let w: Vec<(&str, usize, usize)> = words.iter().map(|c| (c.text.as_str(), c.start, c.end)).collect();
        assert_eq!(w, vec![("AA", 1, 5), ("BC<s>", 7, 12)]);
        assert_eq!(v.decode(&[0, 0]).0, "");
        assert_eq!(v.decode(&[99]).0, "<unk>");
    }

    #[test]
    fn frame_counts_follow_the_convolutions() {
        let cfg: Config = serde_json::from_value(serde_json::json!({
            "conv_dim": [8, 8, 8, 8, 8, 8, 8], "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
            "conv_stride": [5, 2, 2, 2, 2, 2, 2], "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 8, "num_conv_pos_embeddings": 4,
            "num_conv_pos_embedding_groups": 2, "vocab_size": 4
        }))
        .unwrap();
        assert_eq!(cfg.inputs_to_logits_ratio(), 320);
        assert_eq!(cfg.frames(160_000), 499);
        assert_eq!(cfg.min_samples(), 400);
        assert_eq!(cfg.frames(399), 0);
        assert_eq!(cfg.frames(400), 1);
    }
}
