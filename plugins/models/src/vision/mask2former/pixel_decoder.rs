//! Mask2Former's pixel decoder: the three coarsest backbone maps projected
//! to one width, refined together by multi-scale deformable attention
//! (each token samples a few learned points around itself on every level,
//! bilinearly, and mixes them with learned weights), then an FPN step per
//! finer map down to the common stride, whose output, projected, is the
//! mask features the queries' masks are read from.
//!
//! Reproduces `Mask2FormerPixelDecoder` of transformers'
//! `modeling_mask2former.py` (its PyTorch path of deformable attention,
//! `grid_sample` per level), with its weight names.

use tch::{nn::Path, Kind, Tensor};

use crate::core::layers::{Conv2d, ConvSpec, GroupNorm, LayerNorm, Linear, Variables};
use crate::vision::detr::sine_position_embedding;

/// The levels the deformable encoder works on, and the points each token
/// samples per level and head (fixed in transformers).
pub const LEVELS: usize = 3;
const POINTS: i64 = 4;
/// The pixel decoder's group norms split their channels in this many groups.
pub const GROUPS: i64 = 32;
/// nn.LayerNorm's default epsilon, which the encoder's norms keep.
const LAYER_NORM_EPS: f64 = 1e-5;

/// Multi-scale deformable self-attention over the flattened levels.
struct DeformableAttention {
    sampling_offsets: Linear,
    attention_weights: Linear,
    value_proj: Linear,
    output_proj: Linear,
    heads: i64,
}

impl DeformableAttention {
    /// `x` [B, S, C] the levels' tokens, `pos` their position embeddings,
    /// `reference` [S, 2] each token's (x, y) centre in [0, 1], `shapes`
    /// each level's (h, w).
    fn forward(&self, x: &Tensor, pos: &Tensor, reference: &Tensor, shapes: &[(i64, i64)]) -> Tensor {
        let (b, s, c) = x.size3().expect("tokens");
        let (heads, d) = (self.heads, c / self.heads);
        let levels = shapes.len() as i64;
        let query = x + pos;
        let value = self.value_proj.forward(x).view([b, s, heads, d]);
        let offsets = self
            .sampling_offsets
            .forward(&query)
            .view([b, s, heads, levels, POINTS, 2]);
        let weights = self
            .attention_weights
            .forward(&query)
            .view([b, s, heads, levels * POINTS])
            .softmax(-1, Kind::Float)
            .to_kind(x.kind());
        // Offsets are in pixels of their level: divided by (w, h).
        let normalizer: Vec<i64> = shapes.iter().flat_map(|&(h, w)| [w, h]).collect();
        let normalizer = Tensor::from_slice(&normalizer)
            .to_device(x.device())
            .view([1, 1, 1, levels, 1, 2]);
        let locations = reference.view([1, s, 1, 1, 1, 2]) + offsets / normalizer;
        let grids = locations * 2.0 - 1.0;
        let mut sampled = Vec::with_capacity(shapes.len());
        let mut start = 0;
        for (l, &(h, w)) in shapes.iter().enumerate() {
            let level = value
                .narrow(1, start, h * w)
                .flatten(2, 3)
                .transpose(1, 2)
                .reshape([b * heads, d, h, w]);
            start += h * w;
            let grid = grids.select(3, l as i64).transpose(1, 2).flatten(0, 1);
            // Bilinear, zeros outside, align_corners=False: [B * heads, d, S, points].
            sampled.push(level.grid_sampler(&grid, 0, 0, false));
        }
        let weights = weights.transpose(1, 2).reshape([b * heads, 1, s, levels * POINTS]);
        let out = (Tensor::stack(&sampled, -2).flatten(-2, -1) * weights)
            .sum_dim_intlist(-1, false, None)
            .view([b, heads * d, s])
            .transpose(1, 2);
        self.output_proj.forward(&out)
    }
}

/// A post-norm encoder layer: deformable attention, then a ReLU FFN.
struct EncoderLayer {
    attention: DeformableAttention,
    attention_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    final_norm: LayerNorm,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor, pos: &Tensor, reference: &Tensor, shapes: &[(i64, i64)]) -> Tensor {
        let x = self
            .attention_norm
            .forward(&(x + self.attention.forward(x, pos, reference, shapes)));
        let y = self.fc2.forward(&self.fc1.forward(&x).relu());
        self.final_norm.forward(&(x + y))
    }
}

/// A convolution then a group norm (`nn.Sequential(Conv2d, GroupNorm)`).
struct ConvNorm {
    conv: Conv2d,
    norm: GroupNorm,
}

impl ConvNorm {
    fn new(p: &Path, input: i64, output: i64, spec: ConvSpec) -> Self {
        ConvNorm {
            conv: Conv2d::new(p / 0, input, output, spec),
            norm: GroupNorm::new(p / 1, GROUPS, output),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.norm.forward(&self.conv.forward(x))
    }
}

/// The pixel decoder's sizes.
pub struct PixelDecoderShape<'a> {
    /// The backbone maps' widths, finest first.
    pub channels: &'a [i64],
    pub feature_size: i64,
    pub mask_feature_size: i64,
    pub heads: i64,
    pub encoder_layers: i64,
    pub encoder_ffn: i64,
    /// The FPN steps below the deformable levels.
    pub fpn_levels: usize,
}

/// What the transformer decoder reads: the deformable levels (coarsest
/// first) and the mask features at the common stride.
pub struct PixelDecoderOutput {
    pub multi_scale: Vec<Tensor>,
    pub mask_features: Tensor,
}

pub struct PixelDecoder {
    input_projections: Vec<ConvNorm>,
    level_embed: Tensor,
    layers: Vec<EncoderLayer>,
    /// (lateral, output) convolutions, coarsest first.
    fpn: Vec<(ConvNorm, ConvNorm)>,
    mask_projection: Conv2d,
    feature_size: i64,
}

impl PixelDecoder {
    /// The decoder under `p` (`model/pixel_level_module/decoder`).
    pub fn new(p: &Path, s: &PixelDecoderShape) -> Self {
        let fs = s.feature_size;
        let coarsest: Vec<i64> = s.channels.iter().rev().take(LEVELS).copied().collect();
        let input_projections = coarsest
            .iter()
            .enumerate()
            .map(|(l, &c)| ConvNorm::new(&(p / "input_projections" / l as i64), c, fs, ConvSpec::new(1)))
            .collect();
        let layers = (0..s.encoder_layers)
            .map(|i| {
                let l = p / "encoder" / "layers" / i;
                let a = &l / "self_attn";
                let levels = LEVELS as i64;
                EncoderLayer {
                    attention: DeformableAttention {
                        sampling_offsets: Linear::new(&a / "sampling_offsets", fs, s.heads * levels * POINTS * 2),
                        attention_weights: Linear::new(&a / "attention_weights", fs, s.heads * levels * POINTS),
                        value_proj: Linear::new(&a / "value_proj", fs, fs),
                        output_proj: Linear::new(&a / "output_proj", fs, fs),
                        heads: s.heads,
                    },
                    attention_norm: LayerNorm::new(&l / "self_attn_layer_norm", fs, LAYER_NORM_EPS),
                    fc1: Linear::new(&l / "fc1", fs, s.encoder_ffn),
                    fc2: Linear::new(&l / "fc2", s.encoder_ffn, fs),
                    final_norm: LayerNorm::new(&l / "final_layer_norm", fs, LAYER_NORM_EPS),
                }
            })
            .collect();
        let mut fpn: Vec<(ConvNorm, ConvNorm)> = s.channels[..s.fpn_levels]
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let n = i + 1;
                (
                    ConvNorm::new(&(p / format!("adapter_{n}")), c, fs, ConvSpec::new(1).no_bias()),
                    ConvNorm::new(&(p / format!("layer_{n}")), fs, fs, ConvSpec::same(3).no_bias()),
                )
            })
            .collect();
        fpn.reverse();
        PixelDecoder {
            input_projections,
            level_embed: p.zeros_var("level_embed", &[LEVELS as i64, fs]),
            layers,
            fpn,
            mask_projection: Conv2d::new(p / "mask_projection", fs, s.mask_feature_size, ConvSpec::new(1)),
            feature_size: fs,
        }
    }

    /// `features`: the backbone's maps, finest first.
    pub fn forward(&self, features: &[Tensor]) -> PixelDecoderOutput {
        let fs = self.feature_size;
        let mut tokens = Vec::with_capacity(LEVELS);
        let mut positions = Vec::with_capacity(LEVELS);
        let mut references = Vec::with_capacity(LEVELS);
        let mut shapes = Vec::with_capacity(LEVELS);
        for (l, (x, projection)) in features.iter().rev().zip(&self.input_projections).enumerate() {
            let (b, _, h, w) = x.size4().expect("a feature map");
            let device = x.device();
            tokens.push(projection.forward(x).flatten(2, -1).transpose(1, 2));
            let valid = Tensor::ones([b, h, w], (Kind::Float, device));
            let pos = sine_position_embedding(&valid, fs / 2).to_kind(x.kind());
            positions.push(pos.flatten(2, -1).transpose(1, 2) + self.level_embed.get(l as i64).view([1, 1, fs]));
            // Each token's centre, (x + 0.5) / w and (y + 0.5) / h.
            let centre = |n: i64| (Tensor::arange(n, (Kind::Float, device)) + 0.5) / n as f64;
            let ys = centre(h).view([h, 1]).expand([h, w], false);
            let xs = centre(w).view([1, w]).expand([h, w], false);
            references.push(Tensor::stack(&[xs, ys], -1).view([h * w, 2]));
            shapes.push((h, w));
        }
        let mut x = Tensor::cat(&tokens, 1);
        let pos = Tensor::cat(&positions, 1);
        let reference = Tensor::cat(&references, 0).to_kind(x.kind());
        for layer in &self.layers {
            x = layer.forward(&x, &pos, &reference, &shapes);
        }
        let (b, _, _) = x.size3().expect("tokens");
        let mut outputs: Vec<Tensor> = Vec::with_capacity(LEVELS + self.fpn.len());
        let mut start = 0;
        for &(h, w) in &shapes {
            outputs.push(x.narrow(1, start, h * w).transpose(1, 2).reshape([b, fs, h, w]));
            start += h * w;
        }
        // The finer maps, coarsest first: lateral plus the coarser output
        // resized (bilinear), then the output convolution.
        let finer = &features[..self.fpn.len()];
        for (feature, (lateral, output)) in finer.iter().rev().zip(&self.fpn) {
            let current = lateral.forward(feature);
            let (_, _, h, w) = current.size4().expect("a feature map");
            let coarser = outputs
                .last()
                .expect("the deformable levels")
                .upsample_bilinear2d([h, w], false, None, None);
            outputs.push(output.forward(&(current + coarser)).relu());
        }
        let mask_features = self.mask_projection.forward(outputs.last().expect("a map"));
        outputs.truncate(LEVELS);
        PixelDecoderOutput {
            multi_scale: outputs,
            mask_features,
        }
    }
}
