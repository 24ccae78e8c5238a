//! DETR (Carion et al.): a ResNet's last feature map, projected to
//! `d_model` and flattened, goes through a post-norm transformer encoder
//! with sine position embeddings added to its queries and keys; a fixed set
//! of learned object queries goes through the decoder, attending to each
//! other and to the encoder's output; each query's class (the last one
//! "no object") and box (centre, width, height, relative to the image) come
//! from two heads. Reproduces transformers' `DetrForObjectDetection`
//! (`modeling_detr.py`) with its weight names, the backbone in either
//! layout (`vision::backbones::resnet`) with frozen batch norm; and
//! (`vision::detector` post-processes its outputs).

pub mod segmentation;

use serde::Deserialize;
use tch::{nn::Path, Kind, Tensor};

use crate::core::checks::{ConfigCheck, MAX_LABELS, MAX_LAYERS, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::NormKind;
use crate::core::layers::{
    attention, merge_heads, padding_bias, split_heads, Activation, Embedding, FeedForward, LayerNorm, Linear, Variables,
};
use crate::core::weights::WeightShapes;
use crate::vision::backbones::resnet::{timm_shape, Layout, Memory, ResNet, ResNetConfig, ResNetShape};
use crate::vision::detector::{DetectorNet, QueryOutputs};
use crate::{ModelError, Result};

/// nn.LayerNorm's default epsilon, which DETR keeps.
const LAYER_NORM_EPS: f64 = 1e-5;
/// The sine position embedding's temperature and scale (2 pi), and the
/// epsilon of its normalisation.
const TEMPERATURE: f64 = 10000.0;
const SINE_SCALE: f64 = 2.0 * std::f64::consts::PI;
const SINE_EPS: f64 = 1e-6;
/// The box head's layers.
const BOX_LAYERS: i64 = 3;

fn yes() -> bool {
    true
}
fn default_backbone() -> Option<String> {
    Some("resnet50".into())
}
fn default_channels() -> i64 {
    3
}
fn default_queries() -> i64 {
    100
}
fn default_d_model() -> i64 {
    256
}
fn default_layers() -> i64 {
    6
}
fn default_ffn() -> i64 {
    2048
}
fn default_heads() -> i64 {
    8
}
fn relu() -> Activation {
    Activation::Relu
}
fn sine() -> String {
    "sine".into()
}

/// The keys of `backbone_kwargs` DETR reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BackboneKwargs {
    #[serde(default)]
    pub out_indices: Option<Vec<i64>>,
    #[serde(default)]
    pub output_stride: Option<i64>,
    /// timm's ResNet arguments: blocks per stage and the stages' widths
    /// (planes), instead of the named model's.
    #[serde(default)]
    pub layers: Option<Vec<i64>>,
    #[serde(default)]
    pub channels: Option<Vec<i64>>,
    #[serde(default)]
    pub in_chans: Option<i64>,
}

/// `DetrConfig`, with transformers' defaults (those of detr-resnet-50).
#[derive(Debug, Clone, Deserialize)]
pub struct DetrConfig {
    #[serde(default = "yes")]
    pub use_timm_backbone: bool,
    /// timm's model name; null in configs with transformers' backbone.
    #[serde(default = "default_backbone")]
    pub backbone: Option<String>,
    #[serde(default)]
    pub backbone_config: Option<serde_json::Value>,
    #[serde(default)]
    pub backbone_kwargs: Option<BackboneKwargs>,
    #[serde(default = "default_channels")]
    pub num_channels: i64,
    #[serde(default = "default_queries")]
    pub num_queries: i64,
    #[serde(default = "default_d_model")]
    pub d_model: i64,
    #[serde(default = "default_layers")]
    pub encoder_layers: i64,
    #[serde(default = "default_layers")]
    pub decoder_layers: i64,
    #[serde(default = "default_ffn")]
    pub encoder_ffn_dim: i64,
    #[serde(default = "default_ffn")]
    pub decoder_ffn_dim: i64,
    #[serde(default = "default_heads")]
    pub encoder_attention_heads: i64,
    #[serde(default = "default_heads")]
    pub decoder_attention_heads: i64,
    #[serde(default = "relu")]
    pub activation_function: Activation,
    #[serde(default = "sine")]
    pub position_embedding_type: String,
    /// May be null (transformers' backbone ignores it).
    #[serde(default)]
    pub dilation: Option<bool>,
    /// Training's auxiliary decoding losses; transformers then also
    /// normalises each decoder layer's output before the next layer.
    #[serde(default)]
    pub auxiliary_loss: bool,
}

/// The backbone a config asks for: its network, and the feature map DETR
/// reads (the last of the backbone's outputs) as the stages run for it.
pub(crate) struct BackboneChoice {
    pub shape: ResNetShape,
    layout: Layout,
    act: Activation,
    pub stages: usize,
    /// Whether the backbone outputs every stage's map (what panoptic DETR's
    /// mask head reads).
    pub every_stage_out: bool,
}

const BACKBONE: &str = "model.backbone.conv_encoder.model";

impl DetrConfig {
    /// The backbone, from timm's name or transformers' ResNetConfig.
    fn backbone_choice(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<BackboneChoice> {
        if self.use_timm_backbone {
            let kwargs = self.backbone_kwargs.clone().unwrap_or_default();
            // transformers asks timm for output stride 16 when `dilation`
            // is set, unless the kwargs name one; timm's default is 32.
            let default_stride = if self.dilation == Some(true) { 16 } else { 32 };
            let stride = kwargs.output_stride.unwrap_or(default_stride);
            if stride != 16 && stride != 32 {
                return Err(ModelError::Unsupported(format!(
                    "backbone_kwargs.output_stride {stride} (supported: 16, 32)"
                )));
            }
            // timm returns the features in module order and builds the
            // stages up to the last one asked for.
            let last = kwargs
                .out_indices
                .as_deref()
                .and_then(|i| i.iter().max().copied())
                .unwrap_or(4);
            if !(1..=4).contains(&last) {
                return Err(ModelError::bad_file(
                    file,
                    format!("backbone_kwargs.out_indices goes up to {last}: expected 1 to 4"),
                ));
            }
            let name = self.backbone.as_deref().unwrap_or("resnet50");
            let mut shape = timm_shape(
                file,
                name,
                kwargs.in_chans.unwrap_or(self.num_channels),
                stride == 16,
                kwargs.layers.as_deref(),
                kwargs.channels.as_deref(),
            )?;
            shape.stages.truncate(last as usize);
            validate_timm(file, shapes, &shape)?;
            let every_stage_out = kwargs.out_indices.as_deref().is_none_or(|i| i == [1, 2, 3, 4]);
            return Ok(BackboneChoice {
                shape,
                layout: Layout::Timm,
                act: Activation::Relu,
                stages: last as usize,
                every_stage_out,
            });
        }
        let Some(value) = &self.backbone_config else {
            return Err(ModelError::bad_file(
                file,
                "use_timm_backbone is false but there is no backbone_config",
            ));
        };
        let model_type = value.get("model_type").and_then(|t| t.as_str()).unwrap_or("resnet");
        if model_type != "resnet" {
            return Err(ModelError::Unsupported(format!(
                "DETR with a {model_type} backbone (supported: resnet, or timm's resnets)"
            )));
        }
        let resnet: ResNetConfig = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::bad_file(file, format!("backbone_config: {e}")))?;
        resnet.validate(file, shapes, BACKBONE)?;
        // The last of out_features ("stage4") or out_indices names the map.
        let stages = resnet.hidden_sizes.len();
        let last = value
            .get("out_features")
            .and_then(|f| f.as_array())
            .and_then(|f| f.last())
            .and_then(|f| f.as_str())
            .and_then(|f| f.strip_prefix("stage"))
            .and_then(|i| i.parse::<usize>().ok())
            .or_else(|| {
                value
                    .get("out_indices")
                    .and_then(|i| i.as_array())
                    .and_then(|i| i.last())
                    .and_then(|i| i.as_u64())
                    .map(|i| i as usize)
            })
            .unwrap_or(stages);
        if last == 0 || last > stages {
            return Err(ModelError::bad_file(
                file,
                format!("backbone_config's last output is stage {last}, but the ResNet has {stages} stages"),
            ));
        }
        let named = |key: &str| value.get(key).and_then(|v| v.as_array()).cloned();
        let every: Vec<String> = (1..=stages).map(|i| format!("stage{i}")).collect();
        let every_stage_out = named("out_features")
            .map(|f| {
                f.iter()
                    .map(|v| v.as_str().unwrap_or_default())
                    .eq(every.iter().map(String::as_str))
            })
            .or_else(|| named("out_indices").map(|i| i.iter().map(|v| v.as_u64()).eq((1..=stages as u64).map(Some))))
            .unwrap_or(false);
        Ok(BackboneChoice {
            shape: resnet.shape(),
            layout: Layout::Transformers,
            act: resnet.hidden_act,
            stages: last,
            every_stage_out,
        })
    }

    fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        if self.position_embedding_type != "sine" {
            return Err(ModelError::Unsupported(format!(
                "DETR with `{}` position embeddings (supported: sine)",
                self.position_embedding_type
            )));
        }
        c.matches("d_model", self.d_model, MAX_WIDTH, "model.input_projection.weight", 0)?;
        c.matches(
            "num_queries",
            self.num_queries,
            MAX_TABLE,
            "model.query_position_embeddings.weight",
            0,
        )?;
        c.divides("the sine embeddings' halves", 2, "d_model", self.d_model)?;
        for (part, layers, heads, ffn) in [
            (
                "encoder",
                self.encoder_layers,
                self.encoder_attention_heads,
                self.encoder_ffn_dim,
            ),
            (
                "decoder",
                self.decoder_layers,
                self.decoder_attention_heads,
                self.decoder_ffn_dim,
            ),
        ] {
            c.layers(&format!("{part}_layers"), layers, &format!("model.{part}.layers"))?;
            c.size(&format!("{part}_attention_heads"), heads, self.d_model)?;
            c.divides(&format!("{part}_attention_heads"), heads, "d_model", self.d_model)?;
            c.matches(
                &format!("{part}_ffn_dim"),
                ffn,
                MAX_WIDTH,
                &format!("model.{part}.layers.0.fc1.weight"),
                0,
            )?;
        }
        c.size(
            "encoder_layers + decoder_layers",
            self.encoder_layers + self.decoder_layers,
            MAX_LAYERS,
        )?;
        Ok(())
    }
}

/// A timm backbone's shape against the checkpoint: the stem, and each
/// stage's blocks and width.
fn validate_timm(file: &std::path::Path, shapes: &WeightShapes, shape: &ResNetShape) -> Result<()> {
    let c = ConfigCheck::new(file, shapes);
    c.anchor(
        "the timm backbone's stem",
        shape.stem_channels,
        shape.stem_channels,
        "",
        &format!("{BACKBONE}.conv1.weight"),
        0,
    )?;
    c.anchor(
        "num_channels",
        shape.num_channels,
        shape.num_channels,
        "",
        &format!("{BACKBONE}.conv1.weight"),
        1,
    )?;
    let last_conv = if shape.bottleneck { "conv3" } else { "conv2" };
    for (i, stage) in shape.stages.iter().enumerate() {
        let layer = format!("{BACKBONE}.layer{}", i + 1);
        c.layers(&format!("backbone_kwargs.layers[{i}]"), stage.depth, &layer)?;
        c.anchor(
            &format!("stage {} width", i + 1),
            stage.channels,
            stage.channels,
            "",
            &format!("{layer}.0.{last_conv}.weight"),
            0,
        )?;
    }
    Ok(())
}

/// DETR's multi-head attention: the position embeddings are added to the
/// queries' and keys' inputs, never to the values' (Mask2Former's
/// self-attention is the same).
pub(crate) struct DetrAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: i64,
}

impl DetrAttention {
    pub(crate) fn new(p: Path, dim: i64, heads: i64) -> Self {
        DetrAttention {
            q: Linear::new(&p / "q_proj", dim, dim),
            k: Linear::new(&p / "k_proj", dim, dim),
            v: Linear::new(&p / "v_proj", dim, dim),
            out: Linear::new(&p / "out_proj", dim, dim),
            heads,
        }
    }

    /// Queries from `x` (+ `x_pos`), keys from `memory` (+ `memory_pos`),
    /// values from `memory`; `bias` [batch, 1, 1, keys] masks padding.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        x_pos: &Tensor,
        memory: &Tensor,
        memory_pos: &Tensor,
        bias: Option<&Tensor>,
    ) -> Tensor {
        let q = split_heads(&self.q.forward(&(x + x_pos)), self.heads);
        let k = split_heads(&self.k.forward(&(memory + memory_pos)), self.heads);
        let v = split_heads(&self.v.forward(memory), self.heads);
        self.out.forward(&merge_heads(&attention(&q, &k, &v, bias)))
    }
}

/// `DetrEncoderLayer`: post-norm self-attention, then post-norm FFN.
struct EncoderLayer {
    attn: DetrAttention,
    attn_norm: LayerNorm,
    ffn: FeedForward,
    final_norm: LayerNorm,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor, pos: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let x = self.attn_norm.forward(&(x + self.attn.forward(x, pos, x, pos, bias)));
        self.final_norm.forward(&(&x + self.ffn.forward(&x)))
    }
}

/// `DetrDecoderLayer`: post-norm self-attention of the queries, post-norm
/// cross-attention to the encoder's output, post-norm FFN.
struct DecoderLayer {
    self_attn: DetrAttention,
    self_norm: LayerNorm,
    cross_attn: DetrAttention,
    cross_norm: LayerNorm,
    ffn: FeedForward,
    final_norm: LayerNorm,
}

impl DecoderLayer {
    fn forward(&self, x: &Tensor, query_pos: &Tensor, memory: &Tensor, pos: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let x = self
            .self_norm
            .forward(&(x + self.self_attn.forward(x, query_pos, x, query_pos, None)));
        let x = self
            .cross_norm
            .forward(&(&x + self.cross_attn.forward(&x, query_pos, memory, pos, bias)));
        self.final_norm.forward(&(&x + self.ffn.forward(&x)))
    }
}

/// `DetrForObjectDetection`.
pub struct DetrForObjectDetection {
    backbone: ResNet,
    backbone_stages: usize,
    input_projection: (Tensor, Tensor),
    query_position_embeddings: Embedding,
    encoder: Vec<EncoderLayer>,
    decoder: Vec<DecoderLayer>,
    decoder_norm: LayerNorm,
    classifier: Linear,
    box_head: Vec<Linear>,
    d_model: i64,
    auxiliary_loss: bool,
}

impl DetrForObjectDetection {
    pub(crate) fn new(p: Path, cfg: &DetrConfig, backbone: BackboneChoice, num_labels: i64, memory: Memory) -> Self {
        let m = &p / "model";
        let body = ResNet::new(
            &(&m / "backbone" / "conv_encoder" / "model"),
            &backbone.shape,
            backbone.layout,
            NormKind::Frozen,
            backbone.act,
            memory,
        );
        let channels = backbone.shape.stages[backbone.stages - 1].channels;
        let proj = &m / "input_projection";
        let d = cfg.d_model;
        let attn_layer = |p: &Path, heads| DetrAttention::new(p / "self_attn", d, heads);
        let norm = |p: &Path, name: &str| LayerNorm::new(p / name, d, LAYER_NORM_EPS);
        let encoder = (0..cfg.encoder_layers)
            .map(|i| {
                let l = &m / "encoder" / "layers" / i;
                EncoderLayer {
                    attn: attn_layer(&l, cfg.encoder_attention_heads),
                    attn_norm: norm(&l, "self_attn_layer_norm"),
                    ffn: FeedForward::new(&l, d, cfg.encoder_ffn_dim, cfg.activation_function),
                    final_norm: norm(&l, "final_layer_norm"),
                }
            })
            .collect();
        let decoder = (0..cfg.decoder_layers)
            .map(|i| {
                let l = &m / "decoder" / "layers" / i;
                DecoderLayer {
                    self_attn: attn_layer(&l, cfg.decoder_attention_heads),
                    self_norm: norm(&l, "self_attn_layer_norm"),
                    cross_attn: DetrAttention::new(&l / "encoder_attn", d, cfg.decoder_attention_heads),
                    cross_norm: norm(&l, "encoder_attn_layer_norm"),
                    ffn: FeedForward::new(&l, d, cfg.decoder_ffn_dim, cfg.activation_function),
                    final_norm: norm(&l, "final_layer_norm"),
                }
            })
            .collect();
        DetrForObjectDetection {
            backbone: body,
            backbone_stages: backbone.stages,
            input_projection: (
                proj.zeros_var("weight", &[d, channels, 1, 1]),
                proj.zeros_var("bias", &[d]),
            ),
            query_position_embeddings: Embedding::new(&m / "query_position_embeddings", cfg.num_queries, d),
            encoder,
            decoder,
            decoder_norm: LayerNorm::new(&m / "decoder" / "layernorm", d, LAYER_NORM_EPS),
            classifier: Linear::new(&p / "class_labels_classifier", d, num_labels + 1),
            box_head: (0..BOX_LAYERS)
                .map(|i| {
                    let out = if i == BOX_LAYERS - 1 { 4 } else { d };
                    Linear::new(&p / "bbox_predictor" / "layers" / i, d, out)
                })
                .collect(),
            d_model: d,
            auxiliary_loss: cfg.auxiliary_loss,
        }
    }

    /// Class logits and boxes for pixel_values [N, 3, H, W] and their
    /// pixel_mask [N, H, W] (1 on the image, 0 on padding; None: no padding).
    pub fn forward(&self, pixel_values: &Tensor, pixel_mask: Option<&Tensor>) -> QueryOutputs {
        let run = self.run(pixel_values, pixel_mask, false);
        QueryOutputs {
            logits: run.logits,
            boxes: run.boxes,
        }
    }

    /// The whole forward pass, keeping what the panoptic mask head reads
    /// (every backbone stage's map with `every_stage`, else the last).
    pub(crate) fn run(&self, pixel_values: &Tensor, pixel_mask: Option<&Tensor>, every_stage: bool) -> DetrRun {
        let _guard = tch::no_grad_guard();
        let (n, _, h, w) = pixel_values.size4().expect("[N, 3, H, W] pixel values");
        let device = pixel_values.device();
        let pixel_mask = match pixel_mask {
            Some(mask) => mask.to_kind(Kind::Float),
            None => Tensor::ones([n, h, w], (Kind::Float, device)),
        };
        let stages = self
            .backbone
            .forward_stages(pixel_values, self.backbone_stages, every_stage);
        let features = stages.last().expect("a feature map");
        let (fh, fw) = (features.size()[2], features.size()[3]);
        // The mask at the feature map's size (nearest), then as booleans.
        let mask = pixel_mask
            .unsqueeze(0)
            .upsample_nearest2d([fh, fw], None, None)
            .squeeze_dim(0)
            .gt(0.5);
        // Computed in float32, used in the model's dtype (as transformers
        // casts it to the feature map's).
        let pos = sine_position_embedding(&mask, self.d_model / 2).to_kind(features.kind());
        let (weight, bias) = &self.input_projection;
        let projected = features.conv2d(weight, Some(bias), [1, 1], [0, 0], [1, 1], 1);
        // [N, d, h, w] -> [N, h*w, d]
        let x = projected.flatten(2, -1).permute([0, 2, 1]);
        let pos = pos.flatten(2, -1).permute([0, 2, 1]);
        let flat_mask = mask.flatten(1, -1);
        let bias = padding_bias(&flat_mask, x.kind());
        let mut memory = x;
        for layer in &self.encoder {
            memory = layer.forward(&memory, &pos, Some(&bias));
        }
        let query_pos = self
            .query_position_embeddings
            .weight()
            .unsqueeze(0)
            .expand([n, -1, -1], false);
        let mut queries = query_pos.zeros_like();
        for layer in &self.decoder {
            queries = layer.forward(&queries, &query_pos, &memory, &pos, Some(&bias));
            if self.auxiliary_loss {
                queries = self.decoder_norm.forward(&queries);
            }
        }
        let queries = self.decoder_norm.forward(&queries);
        let logits = self.classifier.forward(&queries);
        let mut boxes = queries.shallow_clone();
        let last = self.box_head.len() - 1;
        for (i, layer) in self.box_head.iter().enumerate() {
            boxes = layer.forward(&boxes);
            if i < last {
                boxes = boxes.relu();
            }
        }
        DetrRun {
            stages,
            projected,
            mask,
            memory,
            queries,
            logits,
            boxes: boxes.sigmoid(),
        }
    }
}

/// One forward pass of DETR, with what the panoptic head reads.
pub(crate) struct DetrRun {
    /// The backbone's maps read (every stage's, or the last), finest first.
    pub stages: Vec<Tensor>,
    /// The last map projected to `d_model` [N, d, h, w].
    pub projected: Tensor,
    /// Where that map is image, not padding [N, h, w].
    pub mask: Tensor,
    /// The encoder's output [N, h * w, d].
    pub memory: Tensor,
    /// The decoder's normed output [N, Q, d].
    pub queries: Tensor,
    pub logits: Tensor,
    pub boxes: Tensor,
}

/// `DetrSinePositionEmbedding` (normalised): for each position of the
/// feature map, its cumulative row and column counts over the mask, scaled
/// to [0, 2 pi], through `dim` sines and cosines each (interleaved),
/// y's then x's. [N, 2 dim, h, w] for a boolean mask [N, h, w].
pub(crate) fn sine_position_embedding(mask: &Tensor, dim: i64) -> Tensor {
    let mask = mask.to_kind(Kind::Float);
    let y = mask.cumsum(1, Kind::Float);
    let x = mask.cumsum(2, Kind::Float);
    let y = &y / (y.narrow(1, y.size()[1] - 1, 1) + SINE_EPS) * SINE_SCALE;
    let x = &x / (x.narrow(2, x.size()[2] - 1, 1) + SINE_EPS) * SINE_SCALE;
    let steps = Tensor::arange(dim, (Kind::Int64, mask.device())).to_kind(Kind::Float);
    let exponent = steps.floor_divide_scalar(2) * 2.0 / dim as f64;
    let dim_t = Tensor::from(TEMPERATURE)
        .to_kind(Kind::Float)
        .to_device(mask.device())
        .pow(&exponent);
    let embed = |v: &Tensor| {
        let v = v.unsqueeze(-1) / &dim_t;
        let sin = v.slice(3, 0, dim, 2).sin();
        let cos = v.slice(3, 1, dim, 2).cos();
        Tensor::stack(&[sin, cos], 4).flatten(3, -1)
    };
    Tensor::cat(&[embed(&y), embed(&x)], 3).permute([0, 3, 1, 2])
}

impl DetectorNet for DetrForObjectDetection {
    fn forward(&self, pixel_values: &Tensor, pixel_mask: Option<&Tensor>) -> QueryOutputs {
        DetrForObjectDetection::forward(self, pixel_values, pixel_mask)
    }
}

impl DetrConfig {
    /// The config checked against the checkpoint (with `num_labels`
    /// labels), and the backbone it asks for.
    pub(crate) fn checked_backbone(
        &self,
        config_file: &std::path::Path,
        shapes: &WeightShapes,
        num_labels: i64,
    ) -> Result<BackboneChoice> {
        self.validate(config_file, shapes)?;
        let c = ConfigCheck::new(config_file, shapes);
        c.size("num_labels", num_labels, MAX_LABELS)?;
        c.anchor(
            "num_labels",
            num_labels,
            num_labels + 1,
            " (num_labels + 1 classes, the last \"no object\")",
            "class_labels_classifier.weight",
            0,
        )?;
        self.backbone_choice(config_file, shapes)
    }
}

/// Builds `DetrForObjectDetection` from its config.json (checked against the
/// checkpoint's shapes) with `num_labels` labels.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> Result<Box<dyn DetectorNet>> {
    let cfg: DetrConfig = read_json(config_file)?;
    let backbone = cfg.checked_backbone(config_file, shapes, num_labels)?;
    Ok(Box::new(DetrForObjectDetection::new(
        root,
        &cfg,
        backbone,
        num_labels,
        Memory::ChannelsLast,
    )))
}
