//! DPT (Ranftl et al., "Vision Transformers for Dense Prediction") with a
//! plain ViT backbone (Intel/dpt-large): the ViT's tokens taken after four
//! of its layers, each reassembled into a feature map at its own scale
//! (the [CLS] token read out into every token, a 1x1 projection, then a
//! transposed or strided convolution), fused from the coarsest to the
//! finest by residual convolution units with 2x bilinear upsampling, and a
//! convolutional head giving relative inverse depth at the input's size.
//! Reproduces transformers' `DPTForDepthEstimation` (`modeling_dpt.py`,
//! `is_hybrid` false), with its weight names. The hybrid (BiT) and
//! Dinov2/BEiT-backbone variants are refused at load.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{
    upsample2, Activation, BatchNorm, Conv2d, ConvSpec, ConvTranspose2d, Linear, NormKind, Variables,
};
use crate::core::weights::WeightShapes;
use crate::vision::depth::DepthNet;
use crate::vision::vit;
use crate::{ModelError, Result};

/// `DPTConfig`, with transformers' defaults (the ViT fields as ViTConfig's,
/// but for a 384-pixel image).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub image_size: i64,
    pub patch_size: i64,
    pub num_channels: i64,
    pub qkv_bias: bool,
    pub is_hybrid: bool,
    pub backbone_config: Option<serde_json::Value>,
    pub backbone: Option<String>,
    pub backbone_out_indices: Vec<i64>,
    pub readout_type: String,
    pub reassemble_factors: Vec<f64>,
    pub neck_hidden_sizes: Vec<i64>,
    pub fusion_hidden_size: i64,
    pub head_in_index: i64,
    pub use_batch_norm_in_fusion_residual: bool,
    pub use_bias_in_fusion_residual: Option<bool>,
    pub add_projection: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            image_size: 384,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            is_hybrid: false,
            backbone_config: None,
            backbone: None,
            backbone_out_indices: vec![2, 5, 8, 11],
            readout_type: "project".into(),
            reassemble_factors: vec![4.0, 2.0, 1.0, 0.5],
            neck_hidden_sizes: vec![96, 192, 384, 768],
            fusion_hidden_size: 256,
            head_in_index: -1,
            use_batch_norm_in_fusion_residual: false,
            use_bias_in_fusion_residual: None,
            add_projection: false,
        }
    }
}

/// How the [CLS] token reaches the other tokens before they become a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readout {
    Ignore,
    Add,
    Project,
}

impl Config {
    /// The backbone's fields as a ViT config.
    fn vit(&self) -> vit::Config {
        vit::Config {
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            image_size: self.image_size,
            patch_size: self.patch_size,
            num_channels: self.num_channels,
            qkv_bias: self.qkv_bias,
        }
    }

    fn readout(&self, file: &std::path::Path) -> Result<Readout> {
        match self.readout_type.as_str() {
            "ignore" => Ok(Readout::Ignore),
            "add" => Ok(Readout::Add),
            "project" => Ok(Readout::Project),
            other => Err(ModelError::bad_file(
                file,
                format!("readout_type = {other:?}, but it must be \"ignore\", \"add\" or \"project\""),
            )),
        }
    }

    /// Whether the fusion units' convolutions have a bias.
    fn fusion_bias(&self) -> bool {
        self.use_bias_in_fusion_residual
            .unwrap_or(!self.use_batch_norm_in_fusion_residual)
    }

    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> Result<()> {
        if self.is_hybrid || self.backbone_config.is_some() || self.backbone.is_some() {
            return Err(ModelError::Unsupported(
                "DPT with a hybrid (BiT) or separate backbone (DINOv2, BEiT): inferd runs DPT on its own ViT, \
                 as Intel/dpt-large"
                    .into(),
            ));
        }
        self.vit().validate(file, shapes)?;
        self.readout(file)?;
        let c = ConfigCheck::new(file, shapes);
        c.exactly("num_channels", self.num_channels, 3, "images are RGB")?;
        let stages = self.neck_hidden_sizes.len();
        c.list("neck_hidden_sizes", stages)?;
        c.same_length(&[
            ("neck_hidden_sizes", stages),
            ("reassemble_factors", self.reassemble_factors.len()),
            ("backbone_out_indices", self.backbone_out_indices.len()),
        ])?;
        for (k, &index) in self.backbone_out_indices.iter().enumerate() {
            let after_previous = k == 0 || index > self.backbone_out_indices[k - 1];
            if !(0..self.num_hidden_layers).contains(&index) || !after_previous {
                return Err(ModelError::bad_file(
                    file,
                    format!(
                        "backbone_out_indices[{k}] = {index}, but they must be ascending layers of the backbone's 0 to {}",
                        self.num_hidden_layers - 1
                    ),
                ));
            }
        }
        for (k, &factor) in self.reassemble_factors.iter().enumerate() {
            let whole = (1.0..=64.0).contains(&factor) && factor.fract() == 0.0;
            let fraction = factor > 0.0 && factor < 1.0 && 1.0 / factor <= 64.0;
            if !whole && !fraction {
                return Err(ModelError::bad_file(
                    file,
                    format!(
                        "reassemble_factors[{k}] = {factor}, but it must be a whole number up to 64, 1, or a \
                         fraction down to 1/64"
                    ),
                ));
            }
        }
        // Each size is tied to a checkpoint tensor holding at least as many
        // values as what is built from it.
        for (k, (&size, &factor)) in self.neck_hidden_sizes.iter().zip(&self.reassemble_factors).enumerate() {
            let field = format!("neck_hidden_sizes[{k}]");
            let layer = format!("neck.reassemble_stage.layers.{k}");
            c.matches(&field, size, MAX_WIDTH, &format!("{layer}.projection.weight"), 0)?;
            if factor != 1.0 {
                let resize = format!("{layer}.resize.weight");
                c.anchor(&field, size, size, "", &resize, 1)?;
                let kernel = if factor > 1.0 { factor as i64 } else { 3 };
                c.anchor(&format!("reassemble_factors[{k}]"), kernel, kernel, "", &resize, 2)?;
            }
        }
        let f = self.fusion_hidden_size;
        c.matches("fusion_hidden_size", f, MAX_WIDTH, "neck.convs.0.weight", 0)?;
        c.anchor(
            "fusion_hidden_size",
            f,
            f,
            "",
            "neck.fusion_stage.layers.0.projection.weight",
            1,
        )?;
        c.index("head_in_index", self.head_in_index, stages as i64, "the neck's outputs")?;
        Ok(())
    }
}

/// The ViT backbone: patch embeddings with positions resized to the
/// image's grid, and its layers.
struct Backbone {
    cls_token: Tensor,
    position_embeddings: Tensor,
    patches: Conv2d,
    layers: Vec<vit::Layer>,
}

impl Backbone {
    fn new(p: &Path, cfg: &Config) -> Self {
        let emb = p / "embeddings";
        let h = cfg.hidden_size;
        let positions = (cfg.image_size / cfg.patch_size).pow(2) + 1;
        let vit = cfg.vit();
        Backbone {
            cls_token: emb.zeros_var("cls_token", &[1, 1, h]),
            position_embeddings: emb.zeros_var("position_embeddings", &[1, positions, h]),
            patches: Conv2d::new(
                &emb / "patch_embeddings" / "projection",
                cfg.num_channels,
                h,
                ConvSpec::new(cfg.patch_size).stride(cfg.patch_size),
            ),
            layers: (0..cfg.num_hidden_layers)
                .map(|i| vit::Layer::new(p / "encoder" / "layer" / i, &vit))
                .collect(),
        }
    }

    /// `_resize_pos_embed`: the learned grid of positions resized to
    /// `rows` x `cols` (bilinear, align_corners=False), [CLS]'s kept.
    fn positions(&self, rows: i64, cols: i64) -> Tensor {
        let (_, n, d) = self.position_embeddings.size3().expect("positions");
        let side = ((n - 1) as f64).sqrt() as i64;
        let grid = self
            .position_embeddings
            .narrow(1, 1, n - 1)
            .reshape([1, side, side, d])
            .permute([0, 3, 1, 2]);
        let grid = grid
            .upsample_bilinear2d([rows, cols], false, None, None)
            .permute([0, 2, 3, 1])
            .reshape([1, rows * cols, d]);
        Tensor::cat(&[self.position_embeddings.narrow(1, 0, 1), grid], 1)
    }

    /// The tokens [B, 1 + rows * cols, D] after each layer of `taken`, and
    /// the grid's rows and columns.
    fn forward(&self, pixel_values: &Tensor, taken: &[i64]) -> (Vec<Tensor>, i64, i64) {
        let map = self.patches.forward(pixel_values);
        let (b, _, rows, cols) = map.size4().expect("patches");
        let tokens = map.flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let mut x = Tensor::cat(&[cls, tokens], 1) + self.positions(rows, cols);
        let mut states = Vec::with_capacity(taken.len());
        let last = taken.iter().copied().max().unwrap_or(0);
        for (i, layer) in self.layers.iter().enumerate().take(last as usize + 1) {
            x = layer.forward(&x);
            if taken.contains(&(i as i64)) {
                states.push(x.shallow_clone());
            }
        }
        (states, rows, cols)
    }
}

/// How a reassembled map is brought to its stage's scale.
enum Resize {
    Up(ConvTranspose2d),
    Same,
    Down(Conv2d),
}

/// One reassemble stage: readout, tokens to a map, 1x1 projection, resize.
struct Reassemble {
    readout: Option<Linear>,
    projection: Conv2d,
    resize: Resize,
}

impl Reassemble {
    fn forward(&self, tokens: &Tensor, readout: Readout, act: Activation, rows: i64, cols: i64) -> Tensor {
        let (b, _, d) = tokens.size3().expect("tokens");
        let cls = tokens.select(1, 0);
        let rest = tokens.narrow(1, 1, rows * cols);
        let rest = match (readout, &self.readout) {
            (Readout::Project, Some(project)) => {
                let cls = cls.unsqueeze(1).expand_as(&rest);
                act.forward(&project.forward(&Tensor::cat(&[&rest, &cls], -1)))
            }
            (Readout::Add, _) => rest + cls.unsqueeze(1),
            _ => rest,
        };
        let map = rest.permute([0, 2, 1]).reshape([b, d, rows, cols]);
        let map = self.projection.forward(&map);
        match &self.resize {
            Resize::Up(conv) => conv.forward(&map),
            Resize::Same => map,
            Resize::Down(conv) => conv.forward(&map),
        }
    }
}

/// A pre-activation residual unit: ReLU, 3x3 convolution (and batch
/// norm), twice, plus the input.
struct ResidualUnit {
    conv1: Conv2d,
    norm1: Option<BatchNorm>,
    conv2: Conv2d,
    norm2: Option<BatchNorm>,
}

impl ResidualUnit {
    fn new(p: Path, cfg: &Config) -> Self {
        let f = cfg.fusion_hidden_size;
        let spec = if cfg.fusion_bias() {
            ConvSpec::same(3).channels_last().winograd()
        } else {
            ConvSpec::same(3).no_bias().channels_last().winograd()
        };
        let norm = |name: &str| {
            cfg.use_batch_norm_in_fusion_residual
                .then(|| BatchNorm::new(&p / name, f, NormKind::Eval))
        };
        ResidualUnit {
            conv1: Conv2d::new(&p / "convolution1", f, f, spec),
            norm1: norm("batch_norm1"),
            conv2: Conv2d::new(&p / "convolution2", f, f, spec),
            norm2: norm("batch_norm2"),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let norm = |n: &Option<BatchNorm>, y: Tensor| match n {
            Some(n) => n.forward(&y),
            None => y,
        };
        let y = norm(&self.norm1, self.conv1.forward(&x.relu()));
        let y = norm(&self.norm2, self.conv2.forward(&y.relu()));
        y + x
    }

    fn prepare(&self) -> u64 {
        self.conv1.prepare() + self.conv2.prepare()
    }
}

/// One fusion layer: the new (finer) feature through a residual unit is
/// added to the fused so far, then a residual unit, 2x upsampling and a
/// 1x1 projection.
struct FusionLayer {
    residual1: ResidualUnit,
    residual2: ResidualUnit,
    projection: Conv2d,
}

impl FusionLayer {
    fn forward(&self, fused: Option<&Tensor>, feature: &Tensor) -> Tensor {
        let x = match fused {
            None => feature.shallow_clone(),
            Some(fused) => {
                let (_, _, h, w) = fused.size4().expect("a feature map");
                let feature = if feature.size()[2..] == [h, w] {
                    feature.shallow_clone()
                } else {
                    feature.upsample_bilinear2d([h, w], false, None, None)
                };
                fused + self.residual1.forward(&feature)
            }
        };
        self.projection.forward(&upsample2(&self.residual2.forward(&x), true))
    }
}

/// `DPTForDepthEstimation`.
pub struct DptForDepthEstimation {
    backbone: Backbone,
    taken: Vec<i64>,
    readout: Readout,
    /// The readout projection's activation (the backbone's).
    act: Activation,
    patch_size: usize,
    reassemble: Vec<Reassemble>,
    convs: Vec<Conv2d>,
    fusion: Vec<FusionLayer>,
    head_in_index: i64,
    head_projection: Option<Conv2d>,
    head: [Conv2d; 3],
}

impl DptForDepthEstimation {
    pub fn new(p: Path, cfg: &Config, readout: Readout) -> Self {
        let d = cfg.hidden_size;
        let f = cfg.fusion_hidden_size;
        let stage = &p / "neck" / "reassemble_stage";
        let reassemble = cfg
            .neck_hidden_sizes
            .iter()
            .zip(&cfg.reassemble_factors)
            .enumerate()
            .map(|(k, (&n, &factor))| {
                let layer = &stage / "layers" / k as i64;
                let resize = if factor > 1.0 {
                    Resize::Up(ConvTranspose2d::new(&layer / "resize", n, n, factor as i64))
                } else if factor == 1.0 {
                    Resize::Same
                } else {
                    let stride = (1.0 / factor) as i64;
                    let spec = ConvSpec::same(3).stride(stride).channels_last();
                    Resize::Down(Conv2d::new(&layer / "resize", n, n, spec))
                };
                Reassemble {
                    readout: (readout == Readout::Project)
                        .then(|| Linear::new(&stage / "readout_projects" / k as i64 / 0, 2 * d, d)),
                    projection: Conv2d::new(&layer / "projection", d, n, ConvSpec::new(1).channels_last()),
                    resize,
                }
            })
            .collect();
        let neck = &p / "neck";
        let convs = cfg
            .neck_hidden_sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let spec = ConvSpec::same(3).no_bias().channels_last().winograd();
                Conv2d::new(&neck / "convs" / k as i64, n, f, spec)
            })
            .collect();
        let fusion = (0..cfg.neck_hidden_sizes.len() as i64)
            .map(|j| {
                let layer = &neck / "fusion_stage" / "layers" / j;
                FusionLayer {
                    residual1: ResidualUnit::new(&layer / "residual_layer1", cfg),
                    residual2: ResidualUnit::new(&layer / "residual_layer2", cfg),
                    projection: Conv2d::new(&layer / "projection", f, f, ConvSpec::new(1).channels_last()),
                }
            })
            .collect();
        let head = &p / "head";
        let heads = &head / "head";
        DptForDepthEstimation {
            backbone: Backbone::new(&(&p / "dpt"), cfg),
            taken: cfg.backbone_out_indices.clone(),
            readout,
            act: cfg.hidden_act,
            patch_size: cfg.patch_size as usize,
            reassemble,
            convs,
            fusion,
            head_in_index: cfg.head_in_index,
            head_projection: cfg
                .add_projection
                .then(|| Conv2d::new(&head / "projection", f, f, ConvSpec::same(3).channels_last().winograd())),
            head: [
                Conv2d::new(&heads / 0, f, f / 2, ConvSpec::same(3).channels_last().winograd()),
                Conv2d::new(&heads / 2, f / 2, 32, ConvSpec::same(3).channels_last().winograd()),
                Conv2d::new(&heads / 4, 32, 1, ConvSpec::new(1).channels_last()),
            ],
        }
    }

    /// predicted_depth [B, H', W'] for pixel_values [B, 3, H, W]: twice the
    /// finest reassembled map's size (H' = H for sides that are multiples
    /// of 32).
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let (states, rows, cols) = self.backbone.forward(pixel_values, &self.taken);
        let features: Vec<Tensor> = states
            .iter()
            .zip(self.reassemble.iter().zip(&self.convs))
            .map(|(state, (reassemble, conv))| {
                conv.forward(&reassemble.forward(state, self.readout, self.act, rows, cols))
            })
            .collect();
        let mut fused: Vec<Tensor> = Vec::with_capacity(features.len());
        for (feature, layer) in features.iter().rev().zip(&self.fusion) {
            let next = layer.forward(fused.last(), feature);
            fused.push(next);
        }
        let at = self.head_in_index.rem_euclid(fused.len() as i64) as usize;
        let mut x = fused.swap_remove(at);
        if let Some(projection) = &self.head_projection {
            x = projection.forward(&x).relu();
        }
        let x = upsample2(&self.head[0].forward(&x), true);
        let x = self.head[1].forward(&x).relu();
        self.head[2].forward(&x).relu().squeeze_dim(1)
    }
}

impl DepthNet for DptForDepthEstimation {
    fn forward(&self, pixel_values: &Tensor) -> Tensor {
        DptForDepthEstimation::forward(self, pixel_values)
    }

    fn prepare(&self) -> u64 {
        let convs = self.convs.iter().chain(&self.head_projection).chain(&self.head);
        // The first fusion layer has nothing fused before it: its first
        // residual unit never runs.
        let residuals = self.fusion.iter().enumerate().map(|(j, layer)| {
            let first = if j == 0 { 0 } else { layer.residual1.prepare() };
            first + layer.residual2.prepare()
        });
        convs.map(Conv2d::prepare).sum::<u64>() + residuals.sum::<u64>()
    }

    fn check_input(&self, height: usize, width: usize) -> Result<()> {
        if height < self.patch_size || width < self.patch_size {
            return Err(ModelError::InvalidInput(format!(
                "the image is {width}x{height} as processed, smaller than this DPT model's {0}x{0} patches",
                self.patch_size
            )));
        }
        Ok(())
    }
}

/// `DPTForDepthEstimation`, for depth estimation.
pub fn build(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> Result<Box<dyn DepthNet>> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    let readout = cfg.readout(config_file)?;
    Ok(Box::new(DptForDepthEstimation::new(root, &cfg, readout)))
}
