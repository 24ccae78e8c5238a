//! The Swin Transformer (Liu et al.) as Mask2Former's backbone: a patch
//! embedding (a strided convolution and a layer norm), then stages of
//! window attention. Each block attends within ws x ws windows, adding a
//! learned bias per relative position; every second block shifts the
//! windows by ws / 2 (a cyclic roll, with a mask keeping the wrapped-around
//! regions apart). A stage's map is padded to whole windows, and between
//! stages patch merging halves each side (2x2 neighbours concatenated,
//! normed, projected to twice the width). Each stage's output, before the
//! merging, is layer-normed into a feature map [B, C_i, H / 4 .. H / 32, ..].
//!
//! Reproduces transformers' `SwinBackbone` (`modeling_swin.py`) as
//! `load_backbone` builds it for Mask2Former, with its weight names
//! (`embeddings.patch_embeddings.projection`,
//! `encoder.layers.0.blocks.1.attention.self.relative_position_bias_table`,
//! `encoder.layers.0.downsample.reduction`, `hidden_states_norms.stage1`).
//! As there, a backbone always partitions into windows (`always_partition`):
//! a map smaller than a window is padded up to one, and shifted blocks stay
//! shifted.

use serde::Deserialize;
use tch::{nn::Path, Device, Kind, Tensor};

use crate::core::checks::{ConfigCheck, MAX_SPATIAL, MAX_WIDTH};
use crate::core::layers::{Activation, Conv2d, ConvSpec, LayerNorm, Linear, Variables};
use crate::core::weights::WeightShapes;
use crate::{ModelError, Result};

/// The norms transformers builds with nn.LayerNorm's default (the patch
/// embedding's, patch merging's, and the feature maps'); the blocks' use
/// the config's `layer_norm_eps`.
const DEFAULT_EPS: f64 = 1e-5;

/// What the attention mask puts between tokens of different regions of a
/// shifted window (transformers' -100, not -inf).
const OTHER_REGION: f64 = -100.0;

/// The widest window: a window of ws^2 tokens has ws^4 token pairs (Swin's
/// checkpoints use 7 and 12).
const MAX_WINDOW: i64 = 32;

/// `SwinConfig`, with transformers' defaults (Swin-T).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SwinConfig {
    pub model_type: String,
    pub patch_size: i64,
    pub num_channels: i64,
    pub embed_dim: i64,
    pub depths: Vec<i64>,
    pub num_heads: Vec<i64>,
    pub window_size: i64,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
    pub hidden_act: Activation,
    pub use_absolute_embeddings: bool,
    pub layer_norm_eps: f64,
    pub out_features: Option<Vec<String>>,
    pub out_indices: Option<Vec<i64>>,
}

impl Default for SwinConfig {
    fn default() -> Self {
        SwinConfig {
            model_type: "swin".into(),
            patch_size: 4,
            num_channels: 3,
            embed_dim: 96,
            depths: vec![2, 2, 6, 2],
            num_heads: vec![3, 6, 12, 24],
            window_size: 7,
            mlp_ratio: 4.0,
            qkv_bias: true,
            hidden_act: Activation::Gelu,
            use_absolute_embeddings: false,
            layer_norm_eps: 1e-5,
            out_features: None,
            out_indices: None,
        }
    }
}

impl SwinConfig {
    /// The width of stage `i`: the embedding's, doubled at every merging.
    pub fn width(&self, i: usize) -> i64 {
        self.embed_dim << i
    }

    /// The widths of the feature maps the backbone gives, finest first.
    pub fn channels(&self) -> Vec<i64> {
        (0..self.depths.len()).map(|i| self.width(i)).collect()
    }

    fn mlp_width(&self, i: usize) -> i64 {
        (self.mlp_ratio * self.width(i) as f64) as i64
    }

    /// Every size within bounds and equal to the checkpoint's, whose
    /// backbone tensors are named `{prefix}.…`; the backbone gives every
    /// stage's map, as Mask2Former's checkpoints configure it.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes, prefix: &str) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        if self.model_type != "swin" {
            return Err(ModelError::Unsupported(format!(
                "a {:?} backbone (supported: swin)",
                self.model_type
            )));
        }
        if self.use_absolute_embeddings {
            return Err(ModelError::Unsupported(
                "a Swin backbone with use_absolute_embeddings".into(),
            ));
        }
        c.list("depths", self.depths.len())?;
        c.same_length(&[("depths", self.depths.len()), ("num_heads", self.num_heads.len())])?;
        // transformers' default is the last stage alone; Mask2Former's
        // checkpoints name every one.
        let stages: Vec<String> = (1..=self.depths.len()).map(|i| format!("stage{i}")).collect();
        let indices: Vec<i64> = (1..=self.depths.len() as i64).collect();
        let every = match (&self.out_features, &self.out_indices) {
            (Some(features), _) => *features == stages,
            (None, Some(out)) => *out == indices,
            (None, None) => false,
        };
        if !every {
            return Err(ModelError::Unsupported(format!(
                "a Swin backbone with out_features {:?} / out_indices {:?} (supported: every stage, {stages:?})",
                self.out_features, self.out_indices
            )));
        }
        let at = |name: &str| format!("{prefix}.{name}");
        let projection = at("embeddings.patch_embeddings.projection.weight");
        c.exactly("num_channels", self.num_channels, 3, "images are RGB")?;
        c.matches("num_channels", self.num_channels, MAX_SPATIAL, &projection, 1)?;
        c.matches("patch_size", self.patch_size, MAX_SPATIAL, &projection, 2)?;
        c.matches("embed_dim", self.embed_dim, MAX_WIDTH, &projection, 0)?;
        c.size("window_size", self.window_size, MAX_WINDOW)?;
        let last = self.depths.len() - 1;
        if self.width(last) > MAX_WIDTH || (self.width(last) >> last) != self.embed_dim {
            return Err(ModelError::bad_file(
                file,
                format!("embed_dim = {}, too wide to double {last} times", self.embed_dim),
            ));
        }
        for i in 0..self.depths.len() {
            let field = |name: &str| format!("{name}[{i}]");
            let stage = format!("encoder.layers.{i}");
            c.layers(&field("depths"), self.depths[i], &at(&format!("{stage}.blocks")))?;
            c.divides(
                &field("num_heads"),
                self.num_heads[i],
                "the stage's width",
                self.width(i),
            )?;
            let block = at(&format!("{stage}.blocks.0"));
            let table = (2 * self.window_size - 1).pow(2);
            let bias = format!("{block}.attention.self.relative_position_bias_table");
            c.anchor("window_size", self.window_size, table, " ((2 ws - 1)^2 rows)", &bias, 0)?;
            c.anchor(&field("num_heads"), self.num_heads[i], self.num_heads[i], "", &bias, 1)?;
            c.anchor(
                "embed_dim",
                self.embed_dim,
                self.width(i),
                "",
                &format!("{block}.attention.self.query.weight"),
                0,
            )?;
            let inner = self.mlp_width(i);
            c.matches(
                "mlp_ratio x the stage's width",
                inner,
                MAX_WIDTH,
                &format!("{block}.intermediate.dense.weight"),
                0,
            )?;
            if self.qkv_bias && shapes.find(&format!("{block}.attention.self.query.bias")).is_none() {
                return Err(ModelError::MissingWeight {
                    name: format!("{block}.attention.self.query.bias"),
                    files: shapes.files().to_string(),
                });
            }
            if i < last {
                let reduction = at(&format!("{stage}.downsample.reduction.weight"));
                c.anchor(
                    "embed_dim",
                    self.embed_dim,
                    4 * self.width(i),
                    " (4x the stage's width in)",
                    &reduction,
                    1,
                )?;
            }
        }
        Ok(())
    }
}

/// Window attention with its relative position bias.
struct WindowAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    /// [(2 ws - 1)^2, heads]
    bias_table: Tensor,
    /// Each token pair's row of the table, [ws^2 * ws^2].
    bias_index: Tensor,
    heads: i64,
    window: i64,
}

impl WindowAttention {
    /// `bias_index`: [`relative_position_index`] of `window`.
    fn new(p: Path, dim: i64, heads: i64, window: i64, qkv_bias: bool, bias_index: &Tensor) -> Self {
        let s = &p / "self";
        let linear = |name: &str| {
            if qkv_bias {
                Linear::new(&s / name, dim, dim)
            } else {
                Linear::no_bias(&s / name, dim, dim)
            }
        };
        WindowAttention {
            query: linear("query"),
            key: linear("key"),
            value: linear("value"),
            output: Linear::new(&p / "output" / "dense", dim, dim),
            bias_table: s.zeros_var("relative_position_bias_table", &[(2 * window - 1).pow(2), heads]),
            bias_index: bias_index.shallow_clone(),
            heads,
            window,
        }
    }

    /// The bias [heads, N, N] between the N = ws^2 tokens of a window.
    fn position_bias(&self) -> Tensor {
        let n = self.window * self.window;
        self.bias_table
            .index_select(0, &self.bias_index)
            .view([n, n, self.heads])
            .permute([2, 0, 1])
    }

    /// `windows` [B * nW, N, C]; `mask` [nW, N, N] for shifted windows.
    fn forward(&self, windows: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let (rows, n, c) = windows.size3().expect("windows of tokens");
        let heads = |t: Tensor| t.view([rows, n, self.heads, c / self.heads]).transpose(1, 2);
        let q = heads(self.query.forward(windows));
        let k = heads(self.key.forward(windows));
        let v = heads(self.value.forward(windows));
        let bias = self.position_bias().to_kind(q.kind());
        let out = match mask {
            None => Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&bias.unsqueeze(0)), 0.0, false, None, false),
            Some(mask) => {
                // The windows of one image in a row share the mask: heads of
                // all of them form one batch row, the mask's window dim beside.
                let windows_per_image = mask.size()[0];
                let images = rows / windows_per_image;
                let shape = [images, windows_per_image * self.heads, n, c / self.heads];
                let bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).reshape([1, windows_per_image * self.heads, n, n]);
                Tensor::scaled_dot_product_attention(
                    &q.reshape(shape),
                    &k.reshape(shape),
                    &v.reshape(shape),
                    Some(&bias),
                    0.0,
                    false,
                    None,
                    false,
                )
                .reshape([rows, self.heads, n, c / self.heads])
            }
        };
        self.output.forward(&out.transpose(1, 2).reshape([rows, n, c]))
    }
}

/// For each pair of the ws^2 tokens of a window (row-major), the row of
/// the bias table holding their relative position: (dy + ws - 1) * (2 ws - 1)
/// + (dx + ws - 1).
fn relative_position_index(window: i64, device: Device) -> Tensor {
    let n = window * window;
    let mut index = Vec::with_capacity((n * n) as usize);
    for i in 0..n {
        for j in 0..n {
            let dy = i / window - j / window + window - 1;
            let dx = i % window - j % window + window - 1;
            index.push(dy * (2 * window - 1) + dx);
        }
    }
    Tensor::from_slice(&index).to_device(device)
}

/// The attention mask of shifted windows over a `height` x `width` map
/// (padded to whole windows), [nW, N, N]: 0 between tokens of one region of
/// the rolled map, -100 between regions that the roll brought together.
/// Built where the model runs.
fn shifted_window_mask(height: i64, width: i64, window: i64, shift: i64, device: Device) -> Tensor {
    // Each row's and column's region: before the last window, in it up to
    // the shift, or past that.
    let region = |side: i64| {
        let at = Tensor::arange(side, (Kind::Int64, device));
        at.ge(side - window).to_kind(Kind::Int64) + at.ge(side - shift).to_kind(Kind::Int64)
    };
    let ids = (region(height).view([height, 1]) * 3 + region(width).view([1, width])).view([1, height, width, 1]);
    let ids = partition(&ids, window).squeeze_dim(-1);
    let n = window * window;
    let differ = ids.reshape([-1, n, 1]).ne_tensor(&ids.reshape([-1, 1, n]));
    differ.to_kind(Kind::Float) * OTHER_REGION
}

/// [B, H, W, C] (H, W multiples of ws) to windows [B * nW, ws * ws, C].
fn partition(x: &Tensor, window: i64) -> Tensor {
    let (b, h, w, c) = x.size4().expect("a map");
    x.view([b, h / window, window, w / window, window, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([-1, window * window, c])
}

/// Windows [B * nW, ws * ws, C] back to [B, H, W, C].
fn unpartition(windows: &Tensor, window: i64, h: i64, w: i64) -> Tensor {
    let c = windows.size()[2];
    windows
        .view([-1, h / window, w / window, window, window, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([-1, h, w, c])
}

/// A Swin block: (shifted) window attention and the MLP, each pre-normed
/// with a residual.
struct Block {
    norm_before: LayerNorm,
    attention: WindowAttention,
    norm_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
    act: Activation,
    shift: i64,
}

impl Block {
    /// `x` [B, h * w, C], the tokens of an h x w map; `mask` the shifted
    /// windows' mask of the padded map when this block shifts.
    fn forward(&self, x: &Tensor, h: i64, w: i64, mask: Option<&Tensor>) -> Tensor {
        let window = self.attention.window;
        let (b, _, c) = x.size3().expect("tokens");
        let map = self.norm_before.forward(x).view([b, h, w, c]);
        let (hp, wp) = (padded(h, window), padded(w, window));
        let map = if (hp, wp) == (h, w) {
            map
        } else {
            map.constant_pad_nd([0, 0, 0, wp - w, 0, hp - h])
        };
        let shifted = if self.shift > 0 {
            map.roll([-self.shift, -self.shift], [1, 2])
        } else {
            map
        };
        let attended = self.attention.forward(&partition(&shifted, window), mask);
        let mut map = unpartition(&attended, window, hp, wp);
        if self.shift > 0 {
            map = map.roll([self.shift, self.shift], [1, 2]);
        }
        if (hp, wp) != (h, w) {
            map = map.narrow(1, 0, h).narrow(2, 0, w);
        }
        let x = x + map.reshape([b, h * w, c]);
        let inner = self
            .act
            .forward(&self.intermediate.forward(&self.norm_after.forward(&x)));
        &x + self.output.forward(&inner)
    }
}

/// `side` padded up to whole windows.
fn padded(side: i64, window: i64) -> i64 {
    (side + window - 1) / window * window
}

/// Patch merging: each 2x2 neighbourhood (the map zero-padded to even
/// sides) concatenated as (0,0), (1,0), (0,1), (1,1), normed and projected.
struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
}

impl PatchMerging {
    fn forward(&self, x: &Tensor, h: i64, w: i64) -> Tensor {
        let (b, _, c) = x.size3().expect("tokens");
        let mut map = x.view([b, h, w, c]);
        if h % 2 == 1 || w % 2 == 1 {
            map = map.constant_pad_nd([0, 0, 0, w % 2, 0, h % 2]);
        }
        let pick = |dy: i64, dx: i64| map.slice(1, dy, None, 2).slice(2, dx, None, 2);
        let merged = Tensor::cat(&[pick(0, 0), pick(1, 0), pick(0, 1), pick(1, 1)], -1);
        let (_, h2, w2, c4) = merged.size4().expect("a merged map");
        self.reduction
            .forward(&self.norm.forward(&merged.reshape([b, h2 * w2, c4])))
    }
}

struct Stage {
    blocks: Vec<Block>,
    downsample: Option<PatchMerging>,
    norm: LayerNorm,
}

/// `SwinBackbone` with every stage out.
pub struct SwinBackbone {
    projection: Conv2d,
    embed_norm: LayerNorm,
    stages: Vec<Stage>,
    patch: i64,
    window: i64,
}

impl SwinBackbone {
    /// The backbone under `p` (Mask2Former's `model/pixel_level_module/encoder`).
    pub fn new(p: &Path, cfg: &SwinConfig) -> Self {
        let embeddings = p / "embeddings";
        let patch = cfg.patch_size;
        let last = cfg.depths.len() - 1;
        let bias_index = relative_position_index(cfg.window_size, p.device());
        let stages = (0..cfg.depths.len())
            .map(|i| {
                let dim = cfg.width(i);
                let layer = p / "encoder" / "layers" / i as i64;
                let blocks = (0..cfg.depths[i])
                    .map(|j| {
                        let b = &layer / "blocks" / j;
                        Block {
                            norm_before: LayerNorm::new(&b / "layernorm_before", dim, cfg.layer_norm_eps),
                            attention: WindowAttention::new(
                                &b / "attention",
                                dim,
                                cfg.num_heads[i],
                                cfg.window_size,
                                cfg.qkv_bias,
                                &bias_index,
                            ),
                            norm_after: LayerNorm::new(&b / "layernorm_after", dim, cfg.layer_norm_eps),
                            intermediate: Linear::new(&b / "intermediate" / "dense", dim, cfg.mlp_width(i)),
                            output: Linear::new(&b / "output" / "dense", cfg.mlp_width(i), dim),
                            act: cfg.hidden_act,
                            shift: if j % 2 == 1 { cfg.window_size / 2 } else { 0 },
                        }
                    })
                    .collect();
                let merge = &layer / "downsample";
                Stage {
                    blocks,
                    downsample: (i < last).then(|| PatchMerging {
                        norm: LayerNorm::new(&merge / "norm", 4 * dim, DEFAULT_EPS),
                        reduction: Linear::no_bias(&merge / "reduction", 4 * dim, 2 * dim),
                    }),
                    norm: LayerNorm::new(p / "hidden_states_norms" / format!("stage{}", i + 1), dim, DEFAULT_EPS),
                }
            })
            .collect();
        SwinBackbone {
            projection: Conv2d::new(
                &embeddings / "patch_embeddings" / "projection",
                cfg.num_channels,
                cfg.embed_dim,
                ConvSpec::new(patch).stride(patch),
            ),
            embed_norm: LayerNorm::new(&embeddings / "norm", cfg.embed_dim, DEFAULT_EPS),
            stages,
            patch,
            window: cfg.window_size,
        }
    }

    /// Each stage's feature map [B, C_i, H_i, W_i] for pixel_values
    /// [B, 3, H, W] (zero-padded to whole patches), finest first.
    pub fn forward(&self, pixel_values: &Tensor) -> Vec<Tensor> {
        let (_, _, height, width) = pixel_values.size4().expect("pixel_values [B, 3, H, W]");
        let (hp, wp) = (padded(height, self.patch), padded(width, self.patch));
        let pixels = if (hp, wp) == (height, width) {
            pixel_values.shallow_clone()
        } else {
            pixel_values.constant_pad_nd([0, wp - width, 0, hp - height])
        };
        let map = self.projection.forward(&pixels);
        let (b, _, mut h, mut w) = map.size4().expect("a feature map");
        let mut x = self.embed_norm.forward(&map.flatten(2, -1).transpose(1, 2));
        let mut features = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let shift = self.window / 2;
            let mask = (shift > 0 && stage.blocks.len() > 1).then(|| {
                let (hp, wp) = (padded(h, self.window), padded(w, self.window));
                shifted_window_mask(hp, wp, self.window, shift, x.device()).to_kind(x.kind())
            });
            for block in &stage.blocks {
                let mask = if block.shift > 0 { mask.as_ref() } else { None };
                x = block.forward(&x, h, w, mask);
            }
            features.push(
                stage
                    .norm
                    .forward(&x)
                    .view([b, h, w, -1])
                    .permute([0, 3, 1, 2])
                    .contiguous(),
            );
            if let Some(merge) = &stage.downsample {
                x = merge.forward(&x, h, w);
                (h, w) = ((h + 1) / 2, (w + 1) / 2);
            }
        }
        features
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_positions_index_the_table_as_transformers_does() {
        // ws 2: tokens (0,0) (0,1) (1,0) (1,1); the table has 3 x 3 rows.
        let index = Vec::<i64>::try_from(relative_position_index(2, Device::Cpu)).unwrap();
        assert_eq!(index[..4], [4, 3, 1, 0]);
        assert_eq!(index[12..], [8, 7, 5, 4]);
    }

    #[test]
    fn shifted_windows_keep_rolled_regions_apart() {
        // A 4x4 map, ws 2, shift 1: the first window lies in one region;
        // the last holds four (its pixels came from the four corners).
        let mask = shifted_window_mask(4, 4, 2, 1, Device::Cpu);
        assert_eq!(mask.size(), [4, 4, 4]);
        assert_eq!(mask.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0);
        let last = Vec::<f32>::try_from(mask.get(3).flatten(0, -1)).unwrap();
        let zeros = last.iter().filter(|&&v| v == 0.0).count();
        assert_eq!(zeros, 4, "only each token with itself: {last:?}");
    }

    #[test]
    fn windows_partition_and_come_back() {
        let x = Tensor::arange(2 * 4 * 6 * 3, (Kind::Float, Device::Cpu)).view([2, 4, 6, 3]);
        let windows = partition(&x, 2);
        assert_eq!(windows.size(), [12, 4, 3]);
        // The second window of the first image starts at column 2.
        assert_eq!(windows.double_value(&[1, 0, 0]), x.double_value(&[0, 0, 2, 0]));
        assert!(unpartition(&windows, 2, 4, 6).equal(&x));
    }
}
