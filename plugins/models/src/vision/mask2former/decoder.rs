//! Mask2Former's transformer decoder: learned queries that, layer by
//! layer, attend to one level of the pixel decoder's maps (coarsest first,
//! round-robin) through masked attention (each query sees only where its
//! mask predicted so far is at least one half), then to each other, then
//! through an FFN. After the initial queries and after every layer, the
//! shared layer norm and the mask predictor (an MLP whose output is
//! dotted with the mask features) give the masks, and the next layer's
//! attention mask.
//!
//! Reproduces `Mask2FormerTransformerModule` and
//! `Mask2FormerMaskedAttentionDecoder` of transformers'
//! `modeling_mask2former.py`, with their weight names.

use tch::{nn::Path, Kind, Tensor};

use crate::core::layers::{Activation, Embedding, LayerNorm, Linear, Variables};
use crate::vision::detr::{sine_position_embedding, DetrAttention};
use crate::vision::mask2former::pixel_decoder::{PixelDecoderOutput, LEVELS};

/// nn.LayerNorm's default epsilon, which the decoder's norms keep.
const LAYER_NORM_EPS: f64 = 1e-5;
/// The mask predictor's MLP layers.
const MLP_LAYERS: i64 = 3;

/// `nn.MultiheadAttention` (its packed input projection) with an attention
/// mask: the masked cross-attention.
struct MultiheadAttention {
    in_weight: Tensor,
    in_bias: Tensor,
    out: Linear,
    heads: i64,
}

impl MultiheadAttention {
    fn new(p: Path, dim: i64, heads: i64) -> Self {
        MultiheadAttention {
            in_weight: p.zeros_var("in_proj_weight", &[3 * dim, dim]),
            in_bias: p.zeros_var("in_proj_bias", &[3 * dim]),
            out: Linear::new(&p / "out_proj", dim, dim),
            heads,
        }
    }

    /// `query` [B, Q, C]; `key`, `value` [B, S, C]; `allowed` [B, heads,
    /// Q, S], true where a query may attend.
    fn forward(&self, query: &Tensor, key: &Tensor, value: &Tensor, allowed: &Tensor) -> Tensor {
        let dim = self.in_bias.size()[0] / 3;
        let project = |x: &Tensor, part: i64| {
            let y = x.linear(
                &self.in_weight.narrow(0, part * dim, dim),
                Some(&self.in_bias.narrow(0, part * dim, dim)),
            );
            let (b, n, _) = y.size3().expect("tokens");
            y.view([b, n, self.heads, dim / self.heads]).transpose(1, 2)
        };
        let (q, k, v) = (project(query, 0), project(key, 1), project(value, 2));
        let out = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(allowed), 0.0, false, None, false);
        let (b, _, n, _) = out.size4().expect("heads");
        self.out.forward(&out.transpose(1, 2).reshape([b, n, dim]))
    }
}

/// A decoder layer: masked cross-attention, self-attention and the FFN,
/// post-norm (or pre-norm with `pre_norm`).
struct DecoderLayer {
    cross_attn: MultiheadAttention,
    cross_norm: LayerNorm,
    self_attn: DetrAttention,
    self_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_norm: LayerNorm,
    act: Activation,
    pre_norm: bool,
}

/// One level of the pixel decoder as the layers read it: its tokens
/// (projected, plus the level's embedding) and position embeddings.
struct Memory {
    tokens: Tensor,
    pos: Tensor,
}

impl DecoderLayer {
    fn forward(&self, x: &Tensor, query_pos: &Tensor, memory: &Memory, allowed: &Tensor) -> Tensor {
        let ffn = |x: &Tensor| self.fc2.forward(&self.act.forward(&self.fc1.forward(x)));
        if self.pre_norm {
            let h = self.cross_norm.forward(x);
            let x = x + self.cross_attn.forward(
                &(&h + query_pos),
                &(&memory.tokens + &memory.pos),
                &memory.tokens,
                allowed,
            );
            let h = self.self_norm.forward(&x);
            let x = &x + self.self_attn.forward(&h, query_pos, &h, query_pos, None);
            return &x + ffn(&self.final_norm.forward(&x));
        }
        let attended = self.cross_attn.forward(
            &(x + query_pos),
            &(&memory.tokens + &memory.pos),
            &memory.tokens,
            allowed,
        );
        let x = self.cross_norm.forward(&(x + attended));
        let x = self
            .self_norm
            .forward(&(&x + self.self_attn.forward(&x, query_pos, &x, query_pos, None)));
        self.final_norm.forward(&(&x + ffn(&x)))
    }
}

/// The decoder's sizes.
pub struct DecoderShape {
    pub hidden: i64,
    pub mask_feature_size: i64,
    pub heads: i64,
    pub queries: i64,
    /// The layers after the initial prediction (`decoder_layers - 1`).
    pub layers: i64,
    pub ffn: i64,
    pub act: Activation,
    pub pre_norm: bool,
}

/// The decoder's last output: its normed queries [B, Q, C] and masks [B,
/// Q, h, w] at the mask features' size.
pub struct DecoderOutput {
    pub queries: Tensor,
    pub masks: Tensor,
}

pub struct TransformerDecoder {
    queries: Embedding,
    query_pos: Embedding,
    level_embed: Embedding,
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
    mask_mlp: Vec<Linear>,
    hidden: i64,
    heads: i64,
}

impl TransformerDecoder {
    /// The decoder under `p` (`model/transformer_module`).
    pub fn new(p: &Path, s: &DecoderShape) -> Self {
        let d = p / "decoder";
        let c = s.hidden;
        let layers = (0..s.layers)
            .map(|i| {
                let l = &d / "layers" / i;
                DecoderLayer {
                    cross_attn: MultiheadAttention::new(&l / "cross_attn", c, s.heads),
                    cross_norm: LayerNorm::new(&l / "cross_attn_layer_norm", c, LAYER_NORM_EPS),
                    self_attn: DetrAttention::new(&l / "self_attn", c, s.heads),
                    self_norm: LayerNorm::new(&l / "self_attn_layer_norm", c, LAYER_NORM_EPS),
                    fc1: Linear::new(&l / "fc1", c, s.ffn),
                    fc2: Linear::new(&l / "fc2", s.ffn, c),
                    final_norm: LayerNorm::new(&l / "final_layer_norm", c, LAYER_NORM_EPS),
                    act: s.act,
                    pre_norm: s.pre_norm,
                }
            })
            .collect();
        let mlp = &d / "mask_predictor" / "mask_embedder";
        let mask_mlp = (0..MLP_LAYERS)
            .map(|i| {
                let out = if i == MLP_LAYERS - 1 { s.mask_feature_size } else { c };
                Linear::new(&mlp / i / 0, c, out)
            })
            .collect();
        TransformerDecoder {
            queries: Embedding::new(p / "queries_features", s.queries, c),
            query_pos: Embedding::new(p / "queries_embedder", s.queries, c),
            level_embed: Embedding::new(p / "level_embed", LEVELS as i64, c),
            layers,
            norm: LayerNorm::new(&d / "layernorm", c, LAYER_NORM_EPS),
            mask_mlp,
            hidden: c,
            heads: s.heads,
        }
    }

    /// The masks [B, Q, h, w] of the normed queries `normed` [B, Q, C], and
    /// where each query may attend on a level of `size` [B, heads, Q,
    /// size.0 * size.1]: where its mask, resized (bilinear), is at least one
    /// half; a query whose mask is empty there attends everywhere.
    fn predict_masks(&self, normed: &Tensor, mask_features: &Tensor, size: (i64, i64)) -> (Tensor, Tensor) {
        let mut embedded = normed.shallow_clone();
        for (i, layer) in self.mask_mlp.iter().enumerate() {
            embedded = layer.forward(&embedded);
            if i + 1 < self.mask_mlp.len() {
                embedded = embedded.relu();
            }
        }
        let masks = Tensor::einsum("bqc,bchw->bqhw", &[&embedded, mask_features], None::<i64>);
        let (b, q, _, _) = masks.size4().expect("masks");
        let resized = masks.upsample_bilinear2d([size.0, size.1], false, None, None);
        let allowed = resized.sigmoid().ge(0.5).view([b, 1, q, size.0 * size.1]);
        let none = allowed.any_dim(-1, true).logical_not();
        let allowed = allowed
            .logical_or(&none)
            .expand([b, self.heads, q, size.0 * size.1], false);
        (masks, allowed)
    }

    pub fn forward(&self, pixels: &PixelDecoderOutput) -> DecoderOutput {
        let c = self.hidden;
        let mut memories = Vec::with_capacity(LEVELS);
        let mut sizes = Vec::with_capacity(LEVELS);
        for (l, level) in pixels.multi_scale.iter().enumerate() {
            let (b, _, h, w) = level.size4().expect("a feature map");
            let valid = Tensor::ones([b, h, w], (Kind::Float, level.device()));
            let pos = sine_position_embedding(&valid, c / 2).to_kind(level.kind());
            let embed = self.level_embed.weight().get(l as i64).view([1, 1, c]);
            memories.push(Memory {
                tokens: level.flatten(2, -1).transpose(1, 2) + embed,
                pos: pos.flatten(2, -1).transpose(1, 2),
            });
            sizes.push((h, w));
        }
        let b = pixels.mask_features.size()[0];
        let expand = |e: &Embedding| e.weight().unsqueeze(0).expand([b, -1, -1], false);
        let query_pos = expand(&self.query_pos);
        let mut x = expand(&self.queries);
        let mut normed = self.norm.forward(&x);
        let (mut masks, mut allowed) = self.predict_masks(&normed, &pixels.mask_features, sizes[0]);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &query_pos, &memories[i % LEVELS], &allowed);
            normed = self.norm.forward(&x);
            (masks, allowed) = self.predict_masks(&normed, &pixels.mask_features, sizes[(i + 1) % LEVELS]);
        }
        DecoderOutput { queries: normed, masks }
    }
}
