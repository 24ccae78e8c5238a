//! SpeechT5 (Ao et al.) for text to speech: characters through an
//! embedding with scaled sinusoidal positions and a post-norm transformer
//! encoder with a relative position bias; a log-mel spectrogram grown
//! frame by frame by a post-norm decoder whose input passes a prenet (two
//! ReLU layers with dropout that stays on at inference, then the speaker's
//! x-vector mixed in); `reduction_factor` frames and a stop probability
//! per step; a convolutional postnet refines the result. Reproduces
//! transformers' `SpeechT5ForTextToSpeech` (`modeling_speecht5.py`) with
//! its weight names; generation (`generate_speech`) is in [`generate`].

pub mod generate;

use serde::Deserialize;
use tch::{nn::Path, Kind, Tensor};

use crate::core::checks::{ConfigCheck, MAX_LAYERS, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::decoding::DecoderState;
use crate::core::layers::{
    kept_in_order, merge_heads, padding_bias, split_heads, Activation, BatchNorm, KvCache, LayerNorm, Linear, NormKind,
    Variables,
};
use crate::core::weights::WeightShapes;
use crate::{ModelError, Result};

/// The epsilon of `F.normalize`, which scales the speaker embeddings.
const NORMALIZE_EPS: f64 = 1e-12;

/// `SpeechT5Config`, the fields text to speech reads, with transformers'
/// defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SpeechT5Config {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub encoder_layers: i64,
    pub encoder_attention_heads: i64,
    pub encoder_ffn_dim: i64,
    pub decoder_layers: i64,
    pub decoder_attention_heads: i64,
    pub decoder_ffn_dim: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub num_mel_bins: i64,
    pub reduction_factor: i64,
    pub speech_decoder_prenet_layers: i64,
    pub speech_decoder_prenet_units: i64,
    pub speech_decoder_prenet_dropout: f64,
    pub speaker_embedding_dim: i64,
    pub speech_decoder_postnet_layers: i64,
    pub speech_decoder_postnet_units: i64,
    pub speech_decoder_postnet_kernel: i64,
    pub max_text_positions: i64,
    pub max_speech_positions: i64,
    pub encoder_max_relative_position: i64,
    pub pad_token_id: i64,
}

impl Default for SpeechT5Config {
    fn default() -> Self {
        SpeechT5Config {
            vocab_size: 81,
            hidden_size: 768,
            encoder_layers: 12,
            encoder_attention_heads: 12,
            encoder_ffn_dim: 3072,
            decoder_layers: 6,
            decoder_attention_heads: 12,
            decoder_ffn_dim: 3072,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            num_mel_bins: 80,
            reduction_factor: 2,
            speech_decoder_prenet_layers: 2,
            speech_decoder_prenet_units: 256,
            speech_decoder_prenet_dropout: 0.5,
            speaker_embedding_dim: 512,
            speech_decoder_postnet_layers: 5,
            speech_decoder_postnet_units: 256,
            speech_decoder_postnet_kernel: 5,
            max_text_positions: 450,
            max_speech_positions: 4000,
            encoder_max_relative_position: 160,
            pad_token_id: 1,
        }
    }
}

const ENCODER: &str = "speecht5.encoder";
const DECODER: &str = "speecht5.decoder";
const POSTNET: &str = "speech_decoder_postnet";

impl SpeechT5Config {
    /// Every size within its bound and equal to the checkpoint's.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        let embed = format!("{ENCODER}.prenet.embed_tokens.weight");
        c.matches("vocab_size", self.vocab_size, MAX_TABLE, &embed, 0)?;
        c.matches("hidden_size", self.hidden_size, MAX_WIDTH, &embed, 1)?;
        c.layers(
            "encoder_layers",
            self.encoder_layers,
            &format!("{ENCODER}.wrapped_encoder.layers"),
        )?;
        c.layers(
            "decoder_layers",
            self.decoder_layers,
            &format!("{DECODER}.wrapped_decoder.layers"),
        )?;
        c.divides(
            "encoder_attention_heads",
            self.encoder_attention_heads,
            "hidden_size",
            self.hidden_size,
        )?;
        c.divides(
            "decoder_attention_heads",
            self.decoder_attention_heads,
            "hidden_size",
            self.hidden_size,
        )?;
        c.matches(
            "encoder_ffn_dim",
            self.encoder_ffn_dim,
            MAX_WIDTH,
            &format!("{ENCODER}.wrapped_encoder.layers.0.feed_forward.intermediate_dense.weight"),
            0,
        )?;
        c.matches(
            "decoder_ffn_dim",
            self.decoder_ffn_dim,
            MAX_WIDTH,
            &format!("{DECODER}.wrapped_decoder.layers.0.feed_forward.intermediate_dense.weight"),
            0,
        )?;
        c.matches(
            "num_mel_bins",
            self.num_mel_bins,
            MAX_WIDTH,
            &format!("{DECODER}.prenet.layers.0.weight"),
            1,
        )?;
        c.layers(
            "speech_decoder_prenet_layers",
            self.speech_decoder_prenet_layers,
            &format!("{DECODER}.prenet.layers"),
        )?;
        c.matches(
            "speech_decoder_prenet_units",
            self.speech_decoder_prenet_units,
            MAX_WIDTH,
            &format!("{DECODER}.prenet.layers.0.weight"),
            0,
        )?;
        c.anchor(
            "speaker_embedding_dim",
            self.speaker_embedding_dim,
            self.speaker_embedding_dim + self.hidden_size,
            " (hidden_size + speaker_embedding_dim inputs)",
            &format!("{DECODER}.prenet.speaker_embeds_layer.weight"),
            1,
        )?;
        c.size("speaker_embedding_dim", self.speaker_embedding_dim, MAX_WIDTH)?;
        c.size("reduction_factor", self.reduction_factor, MAX_LAYERS)?;
        c.anchor(
            "reduction_factor",
            self.reduction_factor,
            self.reduction_factor * self.num_mel_bins,
            " (reduction_factor * num_mel_bins outputs)",
            &format!("{POSTNET}.feat_out.weight"),
            0,
        )?;
        c.anchor(
            "reduction_factor",
            self.reduction_factor,
            self.reduction_factor,
            "",
            &format!("{POSTNET}.prob_out.weight"),
            0,
        )?;
        c.layers(
            "speech_decoder_postnet_layers",
            self.speech_decoder_postnet_layers,
            &format!("{POSTNET}.layers"),
        )?;
        let first_conv = format!("{POSTNET}.layers.0.conv.weight");
        if self.speech_decoder_postnet_layers > 1 {
            c.matches(
                "speech_decoder_postnet_units",
                self.speech_decoder_postnet_units,
                MAX_WIDTH,
                &first_conv,
                0,
            )?;
        }
        c.matches(
            "speech_decoder_postnet_kernel",
            self.speech_decoder_postnet_kernel,
            MAX_LAYERS,
            &first_conv,
            2,
        )?;
        c.size("max_text_positions", self.max_text_positions, MAX_TABLE)?;
        c.size("max_speech_positions", self.max_speech_positions, MAX_TABLE)?;
        c.size(
            "encoder_max_relative_position",
            self.encoder_max_relative_position,
            MAX_TABLE,
        )?;
        c.anchor(
            "encoder_max_relative_position",
            self.encoder_max_relative_position,
            2 * self.encoder_max_relative_position,
            " (2 * encoder_max_relative_position rows)",
            &format!("{ENCODER}.wrapped_encoder.embed_positions.pe_k.weight"),
            0,
        )?;
        c.token("pad_token_id", self.pad_token_id, self.vocab_size)?;
        let dropout = self.speech_decoder_prenet_dropout;
        if !(0.0..1.0).contains(&dropout) {
            return Err(ModelError::bad_file(
                file,
                format!("speech_decoder_prenet_dropout = {dropout}, but it must be at least 0 and below 1"),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return Err(ModelError::bad_file(
                file,
                "layer_norm_eps must be a number of at least 0",
            ));
        }
        Ok(())
    }
}

/// `ScaledPositionalEncoding`'s table [max_len, dim] (sin on even
/// features, cos on odd ones), computed with the same float32 tensor
/// operations as transformers, so the values are the same; held in the
/// model's dtype, as transformers' buffer is.
fn sinusoids(p: &Path, max_len: i64, dim: i64) -> Tensor {
    let options = (Kind::Float, p.device());
    let position = Tensor::arange(max_len, options).unsqueeze(1);
    let div_term = (Tensor::arange_start_step(0, dim, 2, options) * -(10000f64.ln() / dim as f64)).exp();
    let angles = &position * &div_term;
    let table = Tensor::zeros([max_len, dim], options);
    table.slice(1, 0, dim, 2).copy_(&angles.sin());
    let mut odd = table.slice(1, 1, dim, 2);
    odd.copy_(&angles.cos().narrow(1, 0, odd.size()[1]));
    table.to_kind(p.kind())
}

/// `SpeechT5Attention`: queries scaled by head_dim^-0.5 after their bias,
/// with an optional relative position bias (the encoder's) computed from
/// the scaled queries.
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: i64,
    scale: f64,
}

impl Attention {
    fn new(p: Path, dim: i64, heads: i64) -> Self {
        Attention {
            q: Linear::new(&p / "q_proj", dim, dim),
            k: Linear::new(&p / "k_proj", dim, dim),
            v: Linear::new(&p / "v_proj", dim, dim),
            out: Linear::new(&p / "out_proj", dim, dim),
            heads,
            scale: ((dim / heads) as f64).powf(-0.5),
        }
    }

    fn scaled_queries(&self, x: &Tensor) -> Tensor {
        split_heads(&(self.q.forward(x) * self.scale), self.heads)
    }

    fn keys_values(&self, x: &Tensor) -> (Tensor, Tensor) {
        (
            split_heads(&self.k.forward(x), self.heads),
            split_heads(&self.v.forward(x), self.heads),
        )
    }

    /// softmax(q kᵀ + bias) v with already scaled queries, through the
    /// output projection.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let out = Tensor::scaled_dot_product_attention(q, k, v, bias, 0.0, false, Some(1.0), false);
        self.out.forward(&merge_heads(&out))
    }

    /// The encoder's self-attention: `relative` [T, T, head_dim] is the
    /// position bias table, `padding` the additive mask [B, 1, 1, T].
    fn encoder_forward(&self, x: &Tensor, relative: &Tensor, padding: &Tensor) -> Tensor {
        let q = self.scaled_queries(x);
        let (k, v) = self.keys_values(x);
        let (b, h, t, d) = q.size4().expect("4-d queries");
        // bias[b, h, i, j] = Σ_d q[b, h, i, d] · relative[i, j, d]
        let by_position = q.permute([2, 0, 1, 3]).reshape([t, b * h, d]);
        let bias = by_position
            .matmul(&relative.transpose(1, 2))
            .view([t, b, h, t])
            .permute([1, 2, 0, 3]);
        self.attend(&q, &k, &v, Some(&(bias + padding)))
    }
}

/// The feed-forward block under `feed_forward`.
struct FeedForward {
    intermediate: Linear,
    output: Linear,
    act: Activation,
}

impl FeedForward {
    fn new(p: Path, dim: i64, ffn_dim: i64, act: Activation) -> Self {
        FeedForward {
            intermediate: Linear::new(&p / "intermediate_dense", dim, ffn_dim),
            output: Linear::new(&p / "output_dense", ffn_dim, dim),
            act,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.output.forward(&self.act.forward(&self.intermediate.forward(x)))
    }
}

/// `SpeechT5EncoderLayer`: post-norm self-attention, then post-norm FFN.
struct EncoderLayer {
    attention: Attention,
    norm: LayerNorm,
    ffn: FeedForward,
    final_norm: LayerNorm,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor, relative: &Tensor, padding: &Tensor) -> Tensor {
        let x = self
            .norm
            .forward(&(x + self.attention.encoder_forward(x, relative, padding)));
        self.final_norm.forward(&(&x + self.ffn.forward(&x)))
    }
}

/// The text encoder: `SpeechT5TextEncoderPrenet` and `SpeechT5Encoder`.
struct TextEncoder {
    embed: Tensor,
    alpha: Tensor,
    positions: Tensor,
    norm: LayerNorm,
    /// `pe_k`: [2 * max_relative, head_dim].
    relative: Tensor,
    max_relative: i64,
    layers: Vec<EncoderLayer>,
}

impl TextEncoder {
    fn new(p: &Path, cfg: &SpeechT5Config) -> Self {
        let d = cfg.hidden_size;
        let prenet = p / "prenet";
        let wrapped = p / "wrapped_encoder";
        let head_dim = d / cfg.encoder_attention_heads;
        let layers = (0..cfg.encoder_layers)
            .map(|i| {
                let l = &wrapped / "layers" / i;
                EncoderLayer {
                    attention: Attention::new(&l / "attention", d, cfg.encoder_attention_heads),
                    norm: LayerNorm::new(&l / "layer_norm", d, cfg.layer_norm_eps),
                    ffn: FeedForward::new(&l / "feed_forward", d, cfg.encoder_ffn_dim, cfg.hidden_act),
                    final_norm: LayerNorm::new(&l / "final_layer_norm", d, cfg.layer_norm_eps),
                }
            })
            .collect();
        TextEncoder {
            embed: (&prenet / "embed_tokens").zeros_var("weight", &[cfg.vocab_size, d]),
            alpha: (&prenet / "encode_positions").ones_var("alpha", &[]),
            positions: sinusoids(&prenet, cfg.max_text_positions, d),
            norm: LayerNorm::new(&wrapped / "layer_norm", d, cfg.layer_norm_eps),
            relative: (&wrapped / "embed_positions" / "pe_k")
                .zeros_var("weight", &[2 * cfg.encoder_max_relative_position, head_dim]),
            max_relative: cfg.encoder_max_relative_position,
            layers,
        }
    }

    /// The encoder states [B, T, d] of `ids` [B, T] (`mask` 1 on tokens, 0
    /// on padding).
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        let t = ids.size()[1];
        let x = Tensor::embedding(&self.embed, ids, -1, false, false) + &self.alpha * self.positions.narrow(0, 0, t);
        let mut x = self.norm.forward(&x);
        let device = ids.device();
        let pos = Tensor::arange(t, (Kind::Int64, device));
        let offsets =
            (pos.unsqueeze(1) - pos.unsqueeze(0)).clamp(-self.max_relative, self.max_relative - 1) + self.max_relative;
        let relative = self.relative.index_select(0, &offsets.view([-1])).view([t, t, -1]);
        let padding = padding_bias(mask, x.kind());
        for layer in &self.layers {
            x = layer.forward(&x, &relative, &padding);
        }
        x
    }
}

/// `SpeechT5SpeechDecoderPrenet`, one position at a time.
struct DecoderPrenet {
    layers: Vec<Linear>,
    final_layer: Linear,
    alpha: Tensor,
    positions: Tensor,
    speaker: Linear,
    dropout: f64,
}

impl DecoderPrenet {
    fn new(p: &Path, cfg: &SpeechT5Config) -> Self {
        let units = cfg.speech_decoder_prenet_units;
        let d = cfg.hidden_size;
        DecoderPrenet {
            layers: (0..cfg.speech_decoder_prenet_layers)
                .map(|i| {
                    let input = if i == 0 { cfg.num_mel_bins } else { units };
                    Linear::new(p / "layers" / i, input, units)
                })
                .collect(),
            final_layer: Linear::new(p / "final_layer", units, d),
            alpha: (p / "encode_positions").ones_var("alpha", &[]),
            positions: sinusoids(p, cfg.max_speech_positions, d),
            speaker: Linear::new(p / "speaker_embeds_layer", d + cfg.speaker_embedding_dim, d),
            dropout: cfg.speech_decoder_prenet_dropout,
        }
    }

    /// The decoder input [B, 1, d] for the newest frame `frame` [B, 1,
    /// mels] of each row at its `positions` [B], with `keep[i]` [B, 1,
    /// units] (1 kept, 0 dropped) the dropout mask of layer i for this
    /// step, and `speakers` [B, 1, E] already normalised.
    fn forward(&self, frame: &Tensor, positions: &Tensor, keep: &[Tensor], speakers: &Tensor) -> Tensor {
        let mut x = frame.shallow_clone();
        for (layer, keep) in self.layers.iter().zip(keep) {
            let h = layer.forward(&x).relu();
            x = h.where_self(&keep.eq(1.0), &h.zeros_like()) / (1.0 - self.dropout);
        }
        let x = self.final_layer.forward(&x) + &self.alpha * self.positions.index_select(0, positions).unsqueeze(1);
        self.speaker
            .forward(&Tensor::cat(&[x, speakers.shallow_clone()], -1))
            .relu()
    }
}

/// `SpeechT5DecoderLayer`: post-norm self-attention, cross-attention, FFN.
struct DecoderLayer {
    self_attn: Attention,
    self_attn_norm: LayerNorm,
    cross_attn: Attention,
    cross_attn_norm: LayerNorm,
    ffn: FeedForward,
    final_norm: LayerNorm,
}

impl DecoderLayer {
    /// One step of every row; `bias` hides the left padding of rows that
    /// joined later, `padding` the encoder states' padding.
    fn step(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        memory: &Tensor,
        padding: Option<&Tensor>,
        own: &mut KvCache,
        cross: &mut Option<(Tensor, Tensor)>,
    ) -> Tensor {
        let q = self.self_attn.scaled_queries(x);
        let (k, v) = self.self_attn.keys_values(x);
        let (k, v) = own.append(k, v);
        let x = self
            .self_attn_norm
            .forward(&(x + self.self_attn.attend(&q, &k, &v, bias)));
        let q = self.cross_attn.scaled_queries(&x);
        let (k, v) = cross.get_or_insert_with(|| kept_in_order(self.cross_attn.keys_values(memory)));
        let x = self
            .cross_attn_norm
            .forward(&(&x + self.cross_attn.attend(&q, k, v, padding)));
        self.final_norm.forward(&(&x + self.ffn.forward(&x)))
    }
}

/// `SpeechT5SpeechDecoderPostnet`: the frames and stop logits of a decoder
/// state, and the convolutional refinement of a whole spectrogram.
struct Postnet {
    feat_out: Linear,
    prob_out: Linear,
    /// (convolution weight [out, in, k], batch norm).
    layers: Vec<(Tensor, BatchNorm)>,
    padding: i64,
}

impl Postnet {
    fn new(p: &Path, cfg: &SpeechT5Config) -> Self {
        let (mels, units, n) = (
            cfg.num_mel_bins,
            cfg.speech_decoder_postnet_units,
            cfg.speech_decoder_postnet_layers,
        );
        let kernel = cfg.speech_decoder_postnet_kernel;
        let layers = (0..n)
            .map(|i| {
                let l = p / "layers" / i;
                let input = if i == 0 { mels } else { units };
                let output = if i == n - 1 { mels } else { units };
                (
                    (&l / "conv").zeros_var("weight", &[output, input, kernel]),
                    BatchNorm::new(&l / "batch_norm", output, NormKind::Eval),
                )
            })
            .collect();
        Postnet {
            feat_out: Linear::new(p / "feat_out", cfg.hidden_size, mels * cfg.reduction_factor),
            prob_out: Linear::new(p / "prob_out", cfg.hidden_size, cfg.reduction_factor),
            layers,
            padding: (kernel - 1) / 2,
        }
    }

    /// `spectrogram` [B, frames, mels] plus its refinement.
    fn refine(&self, spectrogram: &Tensor) -> Tensor {
        let mut z = spectrogram.transpose(1, 2);
        let last = self.layers.len() - 1;
        for (i, (conv, norm)) in self.layers.iter().enumerate() {
            z = norm.forward(&z.conv1d(conv, None::<&Tensor>, [1], [self.padding], [1], 1));
            if i < last {
                z = z.tanh();
            }
        }
        spectrogram + z.transpose(1, 2)
    }
}

/// `SpeechT5ForTextToSpeech`.
pub struct SpeechT5ForTextToSpeech {
    encoder: TextEncoder,
    prenet: DecoderPrenet,
    layers: Vec<DecoderLayer>,
    postnet: Postnet,
    pub config: SpeechT5Config,
}

impl SpeechT5ForTextToSpeech {
    pub fn new(p: &Path, cfg: &SpeechT5Config) -> Self {
        let d = cfg.hidden_size;
        let wrapped = p / "speecht5" / "decoder" / "wrapped_decoder";
        let layers = (0..cfg.decoder_layers)
            .map(|i| {
                let l = &wrapped / "layers" / i;
                let heads = cfg.decoder_attention_heads;
                DecoderLayer {
                    self_attn: Attention::new(&l / "self_attn", d, heads),
                    self_attn_norm: LayerNorm::new(&l / "self_attn_layer_norm", d, cfg.layer_norm_eps),
                    cross_attn: Attention::new(&l / "encoder_attn", d, heads),
                    cross_attn_norm: LayerNorm::new(&l / "encoder_attn_layer_norm", d, cfg.layer_norm_eps),
                    ffn: FeedForward::new(&l / "feed_forward", d, cfg.decoder_ffn_dim, cfg.hidden_act),
                    final_norm: LayerNorm::new(&l / "final_layer_norm", d, cfg.layer_norm_eps),
                }
            })
            .collect();
        SpeechT5ForTextToSpeech {
            encoder: TextEncoder::new(&(p / "speecht5" / "encoder"), cfg),
            prenet: DecoderPrenet::new(&(p / "speecht5" / "decoder" / "prenet"), cfg),
            layers,
            postnet: Postnet::new(&(p / "speech_decoder_postnet"), cfg),
            config: cfg.clone(),
        }
    }

    /// The encoder states of `ids` [B, T] with `mask` [B, T].
    pub fn encode(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        self.encoder.forward(ids, mask)
    }

    /// `speakers` [B, E] scaled to unit length (`F.normalize`), as [B, 1, E]
    /// in the model's dtype.
    pub fn normalise_speakers(&self, speakers: &Tensor) -> Tensor {
        let norm = speakers.norm_scalaropt_dim(2, [1], true).clamp_min(NORMALIZE_EPS);
        (speakers / norm).unsqueeze(1).to_kind(self.prenet.alpha.kind())
    }

    /// The decoder's state for texts encoded as `memory` [B, T, d] with
    /// their `padding` bias [B, 1, 1, T] (None: no padding).
    pub fn new_state(&self, memory: Tensor, padding: Option<Tensor>) -> DecoderState {
        DecoderState::new(memory, padding, 1, self.layers.len())
    }

    /// One decoding step: from each row's newest frame [B, 1, mels] (at
    /// the position `state` gives), the next `reduction_factor` frames [B,
    /// r, mels] and the stop probabilities [B, r]; `keep` are the prenet's
    /// dropout masks (see `DecoderPrenet::forward`).
    pub fn step(
        &self,
        frame: &Tensor,
        keep: &[Tensor],
        speakers: &Tensor,
        state: &mut DecoderState,
    ) -> (Tensor, Tensor) {
        let step = state.begin_step();
        let mut x = self.prenet.forward(frame, &step.positions, keep, speakers);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.step(
                &x,
                step.bias.as_ref(),
                &state.memory,
                state.memory_padding.as_ref(),
                &mut state.self_attn[i],
                &mut state.cross_attn[i],
            );
        }
        let last = x.squeeze_dim(1);
        let rows = last.size()[0];
        let frames =
            self.postnet
                .feat_out
                .forward(&last)
                .view([rows, self.config.reduction_factor, self.config.num_mel_bins]);
        let stop = self.postnet.prob_out.forward(&last).sigmoid();
        (frames, stop)
    }

    /// The postnet's refinement of whole spectrograms [B, frames, mels].
    pub fn refine(&self, spectrogram: &Tensor) -> Tensor {
        self.postnet.refine(spectrogram)
    }
}

/// Builds `SpeechT5ForTextToSpeech` from its config.json, checked against
/// the checkpoint's shapes.
pub fn build(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> Result<SpeechT5ForTextToSpeech> {
    let cfg: SpeechT5Config = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(SpeechT5ForTextToSpeech::new(&root, &cfg))
}
