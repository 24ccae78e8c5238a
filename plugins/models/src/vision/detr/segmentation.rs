//! Panoptic DETR: DETR with a mask head. Each decoded query attends to the
//! encoder's output as a 2-d map (per head, a softmax over the map's
//! pixels and heads together: `bbox_attention`); that attention, beside the
//! projected backbone map, goes through a small FPN of 3x3 convolutions
//! with group norms, adding the backbone's three finer stages (nearest
//! upsampling), down to a quarter of the input: one mask logit map per
//! query. Reproduces transformers' `DetrForSegmentation`
//! (`modeling_detr.py`) with its weight names (`detr.*`, `bbox_attention.*`,
//! `mask_head.*`); facebook/detr-resnet-50-panoptic.

use tch::{nn::Path, Kind, Tensor};

use crate::core::checks::{ConfigCheck, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::layers::{masked_value, Conv2d, ConvSpec, GroupNorm, Linear, Variables};
use crate::core::weights::WeightShapes;
use crate::vision::backbones::resnet::Memory;
use crate::vision::detr::{DetrConfig, DetrForObjectDetection};
use crate::vision::segmenter::{QueryStyle, SegmenterNet, SegmenterOutput};
use crate::{ModelError, Result};

/// The mask head's first group norm's groups; the others take at most as
/// many.
const GROUPS: i64 = 8;

/// `DetrMHAttentionMap`: each query's attention weights over the map's
/// pixels, per head, softmaxed over heads and pixels together.
struct AttentionMap {
    q_linear: Linear,
    k_weight: Tensor,
    k_bias: Tensor,
    heads: i64,
}

impl AttentionMap {
    /// `queries` [N, Q, d], `memory` [N, d, h, w]; [N, Q, heads, h, w].
    /// (Without padding no pixel is masked.)
    fn forward(&self, queries: &Tensor, memory: &Tensor, valid: &Tensor) -> Tensor {
        let (n, q, d) = queries.size3().expect("queries");
        let (_, _, h, w) = memory.size4().expect("a map");
        let head = d / self.heads;
        let queries = self.q_linear.forward(queries).view([n, q, self.heads, head]);
        let keys = memory
            .conv2d(
                &self.k_weight.view([d, d, 1, 1]),
                Some(&self.k_bias),
                [1, 1],
                [0, 0],
                [1, 1],
                1,
            )
            .view([n, self.heads, head, h, w]);
        let weights = Tensor::einsum(
            "bqnc,bnchw->bqnhw",
            &[queries * (head as f64).powf(-0.5), keys],
            None::<i64>,
        );
        let padding = valid.logical_not().view([n, 1, 1, h, w]);
        let weights = weights.masked_fill(&padding, masked_value(weights.kind()));
        weights
            .flatten(2, -1)
            .softmax(-1, Kind::Float)
            .to_kind(weights.kind())
            .view([n, q, self.heads, h, w])
    }
}

/// A 3x3 convolution, a group norm and ReLU.
struct ConvNormRelu {
    conv: Conv2d,
    norm: GroupNorm,
}

impl ConvNormRelu {
    fn new(p: &Path, n: usize, input: i64, output: i64) -> Self {
        ConvNormRelu {
            conv: Conv2d::new(p / format!("lay{n}"), input, output, ConvSpec::same(3)),
            norm: GroupNorm::new(p / format!("gn{n}"), GROUPS.min(output), output),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.norm.forward(&self.conv.forward(x)).relu()
    }
}

/// `DetrMaskHeadSmallConv`.
struct MaskHead {
    layers: Vec<ConvNormRelu>,
    adapters: Vec<Conv2d>,
    out: Conv2d,
}

/// `tensor` [N, ...] with each item repeated `times` in a row: [N * times, ...].
fn repeat_each(tensor: &Tensor, times: i64) -> Tensor {
    tensor.repeat_interleave_self_int(times, 0, None)
}

impl MaskHead {
    /// `x` the projected map [N, d, h, w], `attention` [N, Q, heads, h, w],
    /// `finer` the backbone's three finer maps, coarsest first. [N * Q, 1,
    /// H / 4, W / 4].
    fn forward(&self, x: &Tensor, attention: &Tensor, finer: &[&Tensor]) -> Tensor {
        let queries = attention.size()[1];
        let mut x = Tensor::cat(&[repeat_each(x, queries), attention.flatten(0, 1)], 1);
        x = self.layers[1].forward(&self.layers[0].forward(&x));
        for (k, (adapter, map)) in self.adapters.iter().zip(finer).enumerate() {
            let lateral = adapter.forward(map);
            let lateral = repeat_each(&lateral, x.size()[0] / lateral.size()[0]);
            let (_, _, h, w) = lateral.size4().expect("a map");
            x = lateral + x.upsample_nearest2d([h, w], None, None);
            x = self.layers[k + 2].forward(&x);
        }
        self.out.forward(&x)
    }
}

/// `DetrForSegmentation`.
pub struct DetrForSegmentation {
    detr: DetrForObjectDetection,
    attention: AttentionMap,
    mask_head: MaskHead,
}

impl DetrForSegmentation {
    /// Class logits [N, Q, labels + 1] and mask logits [N, Q, h, w] (a
    /// quarter of the input's size) for pixel_values [N, 3, H, W].
    pub fn forward(&self, pixel_values: &Tensor) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let run = self.detr.run(pixel_values, None, true);
        let (n, d, h, w) = run.projected.size4().expect("the projected map");
        let memory = run.memory.permute([0, 2, 1]).reshape([n, d, h, w]);
        let attention = self.attention.forward(&run.queries, &memory, &run.mask);
        let finer = [&run.stages[2], &run.stages[1], &run.stages[0]];
        let masks = self.mask_head.forward(&run.projected, &attention, &finer);
        let (_, _, mh, mw) = masks.size4().expect("masks");
        let queries = run.queries.size()[1];
        (run.logits, masks.view([n, queries, mh, mw]))
    }
}

impl SegmenterNet for DetrForSegmentation {
    fn forward(&self, pixel_values: &Tensor) -> SegmenterOutput {
        let (classes, masks) = DetrForSegmentation::forward(self, pixel_values);
        SegmenterOutput::Queries {
            classes,
            masks,
            style: QueryStyle::Detr,
        }
    }

    fn query_style(&self) -> Option<QueryStyle> {
        Some(QueryStyle::Detr)
    }
}

/// Builds `DetrForSegmentation` from its config.json (checked against the
/// checkpoint's shapes) with `num_labels` labels.
pub fn build(
    root: Path,
    config_file: &std::path::Path,
    shapes: &WeightShapes,
    num_labels: i64,
) -> Result<Box<dyn SegmenterNet>> {
    let cfg: DetrConfig = read_json(config_file)?;
    let backbone = cfg.checked_backbone(config_file, shapes, num_labels)?;
    // The mask head reads every stage's map: the backbone's four outputs.
    if backbone.stages != 4 || !backbone.every_stage_out {
        return Err(ModelError::Unsupported(
            "panoptic DETR whose backbone does not output all four ResNet stages (out_indices 1 to 4, or \
             out_features stage1 to stage4)"
                .into(),
        ));
    }
    let c = ConfigCheck::new(config_file, shapes);
    let d = cfg.d_model;
    let heads = cfg.encoder_attention_heads;
    let dim = d + heads;
    c.divides(
        "the mask head's 8 groups",
        GROUPS,
        "d_model + encoder_attention_heads",
        dim,
    )?;
    c.anchor(
        "d_model + encoder_attention_heads",
        dim,
        dim,
        "",
        "mask_head.lay1.weight",
        0,
    )?;
    let widths = [dim, d / 2, d / 4, d / 8, d / 16];
    for (n, &width) in widths.iter().enumerate().skip(1) {
        let field = format!("d_model / {}", 1 << n);
        c.size(&field, width, MAX_WIDTH)?;
        c.divides(
            &format!("the groups of mask_head.gn{}", n + 1),
            GROUPS.min(width),
            &field,
            width,
        )?;
    }
    let channels: Vec<i64> = backbone.shape.stages.iter().map(|s| s.channels).collect();
    let attention = &root / "bbox_attention";
    let mask = &root / "mask_head";
    let head = MaskHead {
        layers: (0..5)
            .map(|k| ConvNormRelu::new(&mask, k + 1, widths[k.max(1) - 1], widths[k]))
            .collect(),
        adapters: (0..3)
            .map(|k| {
                Conv2d::new(
                    &mask / format!("adapter{}", k + 1),
                    channels[2 - k],
                    widths[k + 1],
                    ConvSpec::new(1),
                )
            })
            .collect(),
        out: Conv2d::new(&mask / "out_lay", widths[4], 1, ConvSpec::same(3)),
    };
    let attention = AttentionMap {
        q_linear: Linear::new(&attention / "q_linear", d, d),
        k_weight: (&attention / "k_linear").zeros_var("weight", &[d, d]),
        k_bias: (&attention / "k_linear").zeros_var("bias", &[d]),
        heads,
    };
    Ok(Box::new(DetrForSegmentation {
        // Contiguous: its sharp random fixtures' logits move by 5e-4 in
        // channels-last memory (see resnet::Memory).
        detr: DetrForObjectDetection::new(&root / "detr", &cfg, backbone, num_labels, Memory::Contiguous),
        attention,
        mask_head: head,
    }))
}
