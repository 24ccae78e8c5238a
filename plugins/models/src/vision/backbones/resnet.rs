//! ResNet (He et al.): a 7x7 stem and max pooling, then stages of residual
//! blocks (two 3x3 convolutions, or a 1x1-3x3-1x1 bottleneck), each
//! convolution followed by batch norm with its running statistics. Two
//! weight layouts hold the same network: transformers' own
//! (`modeling_resnet.py`: `embedder.embedder.convolution`,
//! `encoder.stages.0.layers.0.layer.1.normalization`) and timm's, which DETR
//! checkpoints with `use_timm_backbone` carry (`conv1`, `bn1`,
//! `layer1.0.conv2`, `layer1.0.downsample.0`). timm's last stage may be
//! dilated instead of strided (DETR's DC5 models).

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_LABELS, MAX_LAYERS, MAX_SPATIAL, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{channels_last, Activation, BatchNorm, Linear, NormKind, Variables};
use crate::core::weights::WeightShapes;
use crate::vision::classifier::ImageClassifierNet;
use crate::{ModelError, Result};

/// A bottleneck's inner width is its output's over this.
const BOTTLENECK_REDUCTION: i64 = 4;

/// A convolution without bias, then batch norm.
struct ConvNorm {
    weight: Tensor,
    stride: i64,
    dilation: i64,
    norm: BatchNorm,
}

/// One convolution's shape: channels in and out, kernel, stride, dilation.
#[derive(Debug, Clone, Copy)]
struct ConvShape {
    input: i64,
    output: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
}

impl ConvNorm {
    fn new(conv: Path, norm: Path, s: ConvShape, (kind, memory): (NormKind, Memory)) -> Self {
        let dims = [s.output, s.input, s.kernel, s.kernel];
        ConvNorm {
            weight: match memory {
                Memory::ChannelsLast => conv.conv_weight_var("weight", &dims),
                Memory::Contiguous => conv.zeros_var("weight", &dims),
            },
            stride: s.stride,
            dilation: s.dilation,
            norm: BatchNorm::new(norm, s.output, kind),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        // Both layouts pad odd kernels to keep the size (up to the stride).
        let padding = self.dilation * (self.weight.size()[2] - 1) / 2;
        let y = x.conv2d(
            &self.weight,
            None::<&Tensor>,
            [self.stride; 2],
            [padding; 2],
            [self.dilation; 2],
            1,
        );
        self.norm.forward(&y)
    }
}

/// A residual block: its convolutions (ReLU between them), the shortcut
/// (a strided 1x1 convolution where the shape changes), the sum, then the
/// activation.
struct Block {
    convs: Vec<ConvNorm>,
    shortcut: Option<ConvNorm>,
}

impl Block {
    fn forward(&self, x: &Tensor, act: Activation) -> Tensor {
        let mut h = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (k, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h);
            if k < last {
                h = h.relu();
            }
        }
        let residual = match &self.shortcut {
            Some(shortcut) => shortcut.forward(x),
            None => x.shallow_clone(),
        };
        act.forward(&(h + residual))
    }
}

/// One stage's shape: output channels, blocks, the first block's stride,
/// the dilation its first 3x3 convolution keeps from the stage before
/// (`first_dilation`), and the stage's own.
#[derive(Debug, Clone, Copy)]
pub struct StageShape {
    pub channels: i64,
    pub depth: i64,
    pub stride: i64,
    pub first_dilation: i64,
    pub dilation: i64,
}

/// A whole ResNet's shape, whatever the layout.
#[derive(Debug, Clone)]
pub struct ResNetShape {
    pub num_channels: i64,
    pub stem_channels: i64,
    pub bottleneck: bool,
    /// transformers' `downsample_in_bottleneck`: a bottleneck's stride in
    /// its first 1x1 convolution rather than its 3x3 one.
    pub stride_in_first: bool,
    pub stages: Vec<StageShape>,
}

/// The weight names of a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Transformers,
    Timm,
}

impl Layout {
    /// The stem's convolution and norm.
    fn stem<'a>(self, p: &Path<'a>) -> (Path<'a>, Path<'a>) {
        match self {
            Layout::Transformers => {
                let e = p / "embedder" / "embedder";
                (&e / "convolution", &e / "normalization")
            }
            Layout::Timm => (p / "conv1", p / "bn1"),
        }
    }

    /// Block `j` of stage `i`.
    fn block<'a>(self, p: &Path<'a>, i: usize, j: i64) -> Path<'a> {
        match self {
            Layout::Transformers => p / "encoder" / "stages" / i as i64 / "layers" / j,
            Layout::Timm => p / format!("layer{}", i + 1) / j,
        }
    }

    /// Convolution `k` of a block, and its norm.
    fn conv<'a>(self, block: &Path<'a>, k: usize) -> (Path<'a>, Path<'a>) {
        match self {
            Layout::Transformers => {
                let l = block / "layer" / k as i64;
                (&l / "convolution", &l / "normalization")
            }
            Layout::Timm => (block / format!("conv{}", k + 1), block / format!("bn{}", k + 1)),
        }
    }

    fn shortcut<'a>(self, block: &Path<'a>) -> (Path<'a>, Path<'a>) {
        match self {
            Layout::Transformers => (block / "shortcut" / "convolution", block / "shortcut" / "normalization"),
            Layout::Timm => (block / "downsample" / 0, block / "downsample" / 1),
        }
    }
}

/// How a ResNet holds its convolution weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// NCHW, as transformers does.
    Contiguous,
    /// NHWC strides on the CPU (`layers::channels_last`): about 1.3x faster
    /// there, its sums in another order (DETR's logits move by up to 1.4e-4
    /// on the random fixtures, 5e-6 before; the sharper panoptic fixtures'
    /// by 5e-4, so panoptic DETR stays contiguous).
    ChannelsLast,
}

/// A ResNet's convolutional body (no pooling or head).
pub struct ResNet {
    stem: ConvNorm,
    stages: Vec<Vec<Block>>,
    act: Activation,
    memory: Memory,
    /// Channels of the last stage's output.
    pub channels: i64,
}

impl ResNet {
    pub fn new(p: &Path, shape: &ResNetShape, layout: Layout, kind: NormKind, act: Activation, memory: Memory) -> Self {
        let (conv, norm) = layout.stem(p);
        let stem = ConvNorm::new(
            conv,
            norm,
            ConvShape {
                input: shape.num_channels,
                output: shape.stem_channels,
                kernel: 7,
                stride: 2,
                dilation: 1,
            },
            (kind, memory),
        );
        let mut input = shape.stem_channels;
        let mut stages = Vec::with_capacity(shape.stages.len());
        for (i, stage) in shape.stages.iter().enumerate() {
            let blocks = (0..stage.depth)
                .map(|j| {
                    let b = layout.block(p, i, j);
                    // timm's blocks: the first one's first 3x3 convolution
                    // keeps the previous stage's dilation.
                    let (stride, first_dilation) = if j == 0 {
                        (stage.stride, stage.first_dilation)
                    } else {
                        (1, stage.dilation)
                    };
                    let dilations = (first_dilation, stage.dilation);
                    let style = (kind, memory);
                    let block = Self::block(&b, layout, style, shape, input, stage.channels, stride, dilations);
                    input = stage.channels;
                    block
                })
                .collect();
            stages.push(blocks);
        }
        ResNet {
            stem,
            stages,
            act,
            memory,
            channels: input,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        b: &Path,
        layout: Layout,
        style: (NormKind, Memory),
        shape: &ResNetShape,
        input: i64,
        output: i64,
        stride: i64,
        (first_dilation, dilation): (i64, i64),
    ) -> Block {
        let conv = |k: usize, s: ConvShape| {
            let (c, n) = layout.conv(b, k);
            ConvNorm::new(c, n, s, style)
        };
        let shape_of = |input, output, kernel, stride, dilation| ConvShape {
            input,
            output,
            kernel,
            stride,
            dilation,
        };
        let convs = if shape.bottleneck {
            let inner = output / BOTTLENECK_REDUCTION;
            let (s1, s3) = if shape.stride_in_first {
                (stride, 1)
            } else {
                (1, stride)
            };
            vec![
                conv(0, shape_of(input, inner, 1, s1, 1)),
                conv(1, shape_of(inner, inner, 3, s3, first_dilation)),
                conv(2, shape_of(inner, output, 1, 1, 1)),
            ]
        } else {
            vec![
                conv(0, shape_of(input, output, 3, stride, first_dilation)),
                conv(1, shape_of(output, output, 3, 1, dilation)),
            ]
        };
        let shortcut = (input != output || stride != 1).then(|| {
            let (c, n) = layout.shortcut(b);
            ConvNorm::new(c, n, shape_of(input, output, 1, stride, 1), style)
        });
        Block { convs, shortcut }
    }

    /// The last stage's feature map [N, channels, H/32, W/32] (H/16 with a
    /// dilated last stage) for pixel_values [N, C, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        self.forward_through(pixel_values, self.stages.len())
    }

    /// The feature map after the first `stages` stages.
    pub fn forward_through(&self, pixel_values: &Tensor, stages: usize) -> Tensor {
        let mut maps = self.forward_stages(pixel_values, stages, false);
        maps.pop().expect("at least one stage")
    }

    /// The feature maps of the first `stages` stages, finest first; only
    /// the last unless `every`.
    pub fn forward_stages(&self, pixel_values: &Tensor, stages: usize, every: bool) -> Vec<Tensor> {
        // Channels-last from the stem on where the weights are held so.
        let input = match self.memory {
            Memory::ChannelsLast => channels_last(pixel_values),
            Memory::Contiguous => pixel_values.shallow_clone(),
        };
        let x = self.act.forward(&self.stem.forward(&input));
        let mut x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        let mut maps = Vec::new();
        for stage in &self.stages[..stages.min(self.stages.len())] {
            for block in stage {
                x = block.forward(&x, self.act);
            }
            if every {
                maps.push(x.shallow_clone());
            }
        }
        if !every {
            maps.push(x);
        }
        maps
    }
}

fn default_channels() -> i64 {
    3
}
fn default_embedding() -> i64 {
    64
}
fn default_sizes() -> Vec<i64> {
    vec![256, 512, 1024, 2048]
}
fn default_depths() -> Vec<i64> {
    vec![3, 4, 6, 3]
}
fn default_layer_type() -> String {
    "bottleneck".into()
}
fn relu() -> Activation {
    Activation::Relu
}

/// `ResNetConfig`, with transformers' defaults (those of resnet-50).
#[derive(Debug, Clone, Deserialize)]
pub struct ResNetConfig {
    #[serde(default = "default_channels")]
    pub num_channels: i64,
    #[serde(default = "default_embedding")]
    pub embedding_size: i64,
    #[serde(default = "default_sizes")]
    pub hidden_sizes: Vec<i64>,
    #[serde(default = "default_depths")]
    pub depths: Vec<i64>,
    #[serde(default = "default_layer_type")]
    pub layer_type: String,
    #[serde(default = "relu")]
    pub hidden_act: Activation,
    #[serde(default)]
    pub downsample_in_first_stage: bool,
    #[serde(default)]
    pub downsample_in_bottleneck: bool,
}

impl ResNetConfig {
    /// Every size within its bound and equal to the checkpoint's; `prefix`
    /// is where the network's weights sit (`resnet`, or DETR's backbone).
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes, prefix: &str) -> Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.list("hidden_sizes", self.hidden_sizes.len())?;
        c.same_length(&[("hidden_sizes", self.hidden_sizes.len()), ("depths", self.depths.len())])?;
        if !matches!(self.layer_type.as_str(), "bottleneck" | "basic") {
            return Err(ModelError::bad_file(
                file,
                format!("layer_type `{}`: expected \"bottleneck\" or \"basic\"", self.layer_type),
            ));
        }
        let stem = format!("{prefix}.embedder.embedder.convolution.weight");
        c.matches("embedding_size", self.embedding_size, MAX_WIDTH, &stem, 0)?;
        c.matches("num_channels", self.num_channels, MAX_SPATIAL, &stem, 1)?;
        c.layers(
            "hidden_sizes (stages)",
            self.hidden_sizes.len() as i64,
            &format!("{prefix}.encoder.stages"),
        )?;
        let last_conv = if self.layer_type == "bottleneck" { 2 } else { 1 };
        for (i, (&size, &depth)) in self.hidden_sizes.iter().zip(&self.depths).enumerate() {
            let stage = format!("{prefix}.encoder.stages.{i}.layers");
            c.layers(&format!("depths[{i}]"), depth, &stage)?;
            c.matches(
                &format!("hidden_sizes[{i}]"),
                size,
                MAX_WIDTH,
                &format!("{stage}.0.layer.{last_conv}.convolution.weight"),
                0,
            )?;
            if self.layer_type == "bottleneck" {
                c.divides(
                    "the bottleneck reduction",
                    BOTTLENECK_REDUCTION,
                    &format!("hidden_sizes[{i}]"),
                    size,
                )?;
            }
        }
        Ok(())
    }

    /// The network's shape: the first stage strided only with
    /// `downsample_in_first_stage`, the others by 2.
    pub fn shape(&self) -> ResNetShape {
        ResNetShape {
            num_channels: self.num_channels,
            stem_channels: self.embedding_size,
            bottleneck: self.layer_type == "bottleneck",
            stride_in_first: self.downsample_in_bottleneck,
            stages: self
                .hidden_sizes
                .iter()
                .zip(&self.depths)
                .enumerate()
                .map(|(i, (&channels, &depth))| StageShape {
                    channels,
                    depth,
                    stride: if i > 0 || self.downsample_in_first_stage { 2 } else { 1 },
                    first_dilation: 1,
                    dilation: 1,
                })
                .collect(),
        }
    }
}

/// timm's ResNets by name: their blocks per stage and whether they are
/// bottlenecks (timm's `resnet.py`); `layers` and `channels` (the stages'
/// planes) replace the name's, as timm's keyword arguments do. Sizes out of
/// bounds are refused as a fault of `file`.
pub fn timm_shape(
    file: &std::path::Path,
    name: &str,
    num_channels: i64,
    dilated: bool,
    layers: Option<&[i64]>,
    channels: Option<&[i64]>,
) -> Result<ResNetShape> {
    let (named, bottleneck): ([i64; 4], bool) = match name {
        "resnet18" => ([2, 2, 2, 2], false),
        "resnet34" => ([3, 4, 6, 3], false),
        "resnet50" => ([3, 4, 6, 3], true),
        "resnet101" => ([3, 4, 23, 3], true),
        "resnet152" => ([3, 8, 36, 3], true),
        other => {
            return Err(ModelError::Unsupported(format!(
                "timm backbone `{other}` (supported: resnet18, resnet34, resnet50, resnet101, resnet152)"
            )))
        }
    };
    let expansion = if bottleneck { BOTTLENECK_REDUCTION } else { 1 };
    let depths = layers.unwrap_or(&named);
    let planes = channels.unwrap_or(&[64, 128, 256, 512]);
    if depths.len() != 4 || planes.len() != 4 {
        return Err(ModelError::bad_file(
            file,
            format!(
                "backbone_kwargs gives {} stages' layers and {} stages' channels, but a timm ResNet has 4",
                depths.len(),
                planes.len()
            ),
        ));
    }
    if let Some(bad) = depths.iter().find(|&&v| !(1..=MAX_LAYERS).contains(&v)) {
        return Err(ModelError::bad_file(
            file,
            format!("backbone_kwargs.layers has {bad}, but each must be between 1 and {MAX_LAYERS}"),
        ));
    }
    if let Some(bad) = planes.iter().find(|&&v| !(1..=MAX_WIDTH).contains(&v)) {
        return Err(ModelError::bad_file(
            file,
            format!("backbone_kwargs.channels has {bad}, but each must be between 1 and {MAX_WIDTH}"),
        ));
    }
    let stages = depths
        .iter()
        .zip(planes)
        .enumerate()
        .map(|(i, (&depth, &planes))| {
            // timm's output_stride 16: the last stage keeps the size and
            // dilates its later 3x3 convolutions instead.
            let (stride, dilation) = match i {
                0 => (1, 1),
                3 if dilated => (1, 2),
                _ => (2, 1),
            };
            StageShape {
                channels: planes * expansion,
                depth,
                stride,
                first_dilation: 1,
                dilation,
            }
        })
        .collect();
    Ok(ResNetShape {
        num_channels,
        stem_channels: 64,
        bottleneck,
        stride_in_first: false,
        stages,
    })
}

/// `ResNetForImageClassification`: the body, global average pooling and a
/// linear classifier (`classifier.1`).
pub struct ResNetForImageClassification {
    body: ResNet,
    classifier: Linear,
}

impl ResNetForImageClassification {
    pub fn new(p: Path, cfg: &ResNetConfig, num_labels: i64) -> Self {
        let body = ResNet::new(
            &(&p / "resnet"),
            &cfg.shape(),
            Layout::Transformers,
            NormKind::Eval,
            cfg.hidden_act,
            Memory::ChannelsLast,
        );
        let classifier = Linear::new(&p / "classifier" / 1, body.channels, num_labels);
        ResNetForImageClassification { body, classifier }
    }
}

impl ImageClassifierNet for ResNetForImageClassification {
    fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let features = self.body.forward(pixel_values);
        let pooled = features.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        self.classifier.forward(&pooled)
    }
}

/// `ResNetForImageClassification`, for image classification.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> Result<Box<dyn ImageClassifierNet>> {
    let cfg: ResNetConfig = read_json(config_file)?;
    cfg.validate(config_file, shapes, "resnet")?;
    let c = ConfigCheck::new(config_file, shapes);
    c.size("num_labels", num_labels, MAX_LABELS)?;
    c.size("depths (sum)", cfg.depths.iter().sum(), MAX_LAYERS)?;
    Ok(Box::new(ResNetForImageClassification::new(root, &cfg, num_labels)))
}
