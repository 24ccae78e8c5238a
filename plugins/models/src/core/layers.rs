//! Building blocks shared by the architectures: linear, layer norm and
//! embedding layers whose weights are named as in PyTorch (`weight`, `bias`),
//! activations by their transformers names, and multi-head attention maths.
//!
//! Variables are created as zeros without gradients; the checkpoint loader
//! fills them (see `weights.rs`).

use serde::Deserialize;
use tch::{nn::Path, Kind, Tensor};

use crate::core::int8::Int8Slot;
use crate::core::onednn::OnednnWeight;
use crate::core::split_linear::{self, Layout};
use crate::core::winograd::WinogradFilters;

/// Creating a model's variables in its var store's dtype (tch's
/// `zeros_no_train` makes float32 ones whatever the store's kind), so that
/// a model built for float16 or bfloat16 holds its weights in that type
/// from the start and the checkpoint loads straight into it.
pub trait Variables {
    /// A variable of zeros, without gradients, in the store's dtype.
    fn zeros_var(&self, name: &str, dims: &[i64]) -> Tensor;
    /// A variable of ones, without gradients, in the store's dtype.
    fn ones_var(&self, name: &str, dims: &[i64]) -> Tensor;
    /// A 2-d convolution's weight [out, in, kh, kw] of zeros, held in
    /// channels-last memory on the CPU (see `channels_last`): the
    /// checkpoint's values load into it keeping that layout.
    fn conv_weight_var(&self, name: &str, dims: &[i64]) -> Tensor;
}

impl Variables for Path<'_> {
    fn zeros_var(&self, name: &str, dims: &[i64]) -> Tensor {
        self.add(name, Tensor::zeros(dims, (self.kind(), self.device())), false)
    }

    fn ones_var(&self, name: &str, dims: &[i64]) -> Tensor {
        self.add(name, Tensor::ones(dims, (self.kind(), self.device())), false)
    }

    fn conv_weight_var(&self, name: &str, dims: &[i64]) -> Tensor {
        let zeros = Tensor::zeros(dims, (self.kind(), self.device()));
        self.add(name, channels_last(&zeros), false)
    }
}

extern "C" {
    fn inferd_channels_last(tensor: *const std::ffi::c_void) -> *mut std::ffi::c_void;
}

/// `x` [N, C, H, W] held in channels-last memory (NHWC strides, the same
/// shape and values) on the CPU; other tensors as they are. A network whose
/// convolution weights and input are channels-last convolves without
/// oneDNN reordering them on every call (a ResNet-50 DETR: 1.3x faster on
/// 2 cores); its sums run in another order (DETR's logits move by up to
/// 1.4e-4 on the random fixtures, see `resnet::Memory`); every layer after a
/// convolution keeps the layout.
pub fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 || x.device() != tch::Device::Cpu {
        return x.shallow_clone();
    }
    // SAFETY: a live tensor for the call; a non-null result is a new
    // at::Tensor that tch takes over.
    let raw = unsafe { inferd_channels_last(x.as_ptr().cast()) };
    if raw.is_null() {
        return x.shallow_clone();
    }
    // SAFETY: see above.
    unsafe { Tensor::from_ptr(raw.cast()) }
}

/// `torch.nn.Linear`: y = x Wᵀ + b, W of shape [out, in]; in int8 when
/// the model is built quantized (see `int8.rs`).
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    int8: Int8Slot,
    onednn: OnednnWeight,
}

impl Linear {
    pub fn new(p: Path, in_dim: i64, out_dim: i64) -> Self {
        let weight = p.zeros_var("weight", &[out_dim, in_dim]);
        let bias = p.zeros_var("bias", &[out_dim]);
        Linear {
            int8: Int8Slot::claim(&weight, Some(&bias), false),
            onednn: OnednnWeight::owning(&weight, Layout::OutIn, vec![]),
            weight,
            bias: Some(bias),
        }
    }

    pub fn no_bias(p: Path, in_dim: i64, out_dim: i64) -> Self {
        let weight = p.zeros_var("weight", &[out_dim, in_dim]);
        Linear {
            int8: Int8Slot::claim(&weight, None, false),
            onednn: OnednnWeight::owning(&weight, Layout::OutIn, vec![]),
            weight,
            bias: None,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self.int8.packed() {
            Some(packed) => packed.forward(x),
            None => self
                .onednn
                .linear(x, &self.weight, self.bias.as_ref())
                .unwrap_or_else(|| split_linear::linear(x, &self.weight, self.bias.as_ref(), Layout::OutIn)),
        }
    }
}

/// A decoder's vocabulary logits from the token embeddings' weight
/// [vocab, d] (transformers ties the two): `hidden` [rows, d] times it
/// transposed, [rows, vocab], through oneDNN where it can (its own
/// reordered copy of the weight; the embeddings keep theirs).
#[derive(Debug)]
pub struct TiedHead(OnednnWeight);

impl TiedHead {
    /// The head over `weight`, the embeddings' [vocab, d].
    pub fn new(weight: &Tensor) -> Self {
        TiedHead(OnednnWeight::beside(weight, Layout::OutIn))
    }

    /// The bytes of the head's own copy of `weight` (none where it reads
    /// the embeddings' through LibTorch).
    pub fn copy_bytes(&self, weight: &Tensor) -> u64 {
        match self.0.reorders() {
            true => (weight.numel() * weight.kind().elt_size_in_bytes()) as u64,
            false => 0,
        }
    }

    /// `hidden` times the embeddings' `weight` transposed.
    pub fn logits(&self, hidden: &Tensor, weight: &Tensor) -> Tensor {
        self.0
            .linear(hidden, weight, None)
            .unwrap_or_else(|| split_linear::linear(hidden, weight, None, Layout::OutIn))
    }
}

/// Linear layers of the same shape that read the same input (attention's
/// query, key and value), stored as one [parts * out, in] weight so that they
/// run as one matrix product. Each part's checkpoint tensors load into views
/// of the shared weight and bias, under the part's own names.
#[derive(Debug)]
pub struct FusedLinear {
    weight: Tensor,
    bias: Tensor,
    out_dim: i64,
    int8: Int8Slot,
    onednn: OnednnWeight,
}

impl FusedLinear {
    pub fn new(parts: &[Path], in_dim: i64, out_dim: i64) -> Self {
        let first = parts.first().expect("at least one part");
        let options = (first.kind(), first.device());
        let n = parts.len() as i64;
        let weight = Tensor::zeros([n * out_dim, in_dim], options);
        let bias = Tensor::zeros([n * out_dim], options);
        let mut views = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let rows = i as i64 * out_dim;
            views.push(p.add("weight", weight.narrow(0, rows, out_dim), false));
            let _ = p.add("bias", bias.narrow(0, rows, out_dim), false);
        }
        FusedLinear {
            int8: Int8Slot::claim(&weight, Some(&bias), false),
            onednn: OnednnWeight::owning(&weight, Layout::OutIn, views),
            weight,
            bias,
            out_dim,
        }
    }

    /// The query, key and value heads [batch, heads, seq, head_dim] of an
    /// attention whose three projections these are, and the residual (`x`):
    /// for every position, or with `first_only` the query and residual of
    /// position 0 alone (the keys and values still cover every position).
    pub fn attention_inputs(&self, x: &Tensor, heads: i64, first_only: bool) -> (Tensor, Tensor, Tensor, Tensor) {
        let (mut parts, residual) = if first_only {
            let first = x.narrow(1, 0, 1);
            let mut parts = self.forward_parts(&first, 0, 1);
            parts.extend(self.forward_parts(x, 1, 2));
            (parts, first)
        } else {
            (self.forward_parts(x, 0, 3), x.shallow_clone())
        };
        let v = split_heads(&parts.pop().expect("value"), heads);
        let k = split_heads(&parts.pop().expect("key"), heads);
        let q = split_heads(&parts.pop().expect("query"), heads);
        (q, k, v, residual)
    }

    /// Parts `first..first + count` of the output, each [.., out].
    pub fn forward_parts(&self, x: &Tensor, first: i64, count: i64) -> Vec<Tensor> {
        let (start, len) = (first * self.out_dim, count * self.out_dim);
        if let Some(packed) = self.int8.packed() {
            // One packed product for all parts: the unused ones cost less
            // than quantizing the input once per part.
            return packed.forward(x).narrow(-1, start, len).split(self.out_dim, -1);
        }
        // oneDNN computes every part (the weight is reordered whole).
        if let Some(y) = self.onednn.linear(x, &self.weight, Some(&self.bias)) {
            return y.narrow(-1, start, len).split(self.out_dim, -1);
        }
        split_linear::linear(
            x,
            &self.weight.narrow(0, start, len),
            Some(&self.bias.narrow(0, start, len)),
            Layout::OutIn,
        )
        .split(self.out_dim, -1)
    }
}

/// `torch.nn.LayerNorm` over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    size: i64,
}

impl LayerNorm {
    pub fn new(p: Path, size: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.zeros_var("weight", &[size]),
            bias: p.zeros_var("bias", &[size]),
            eps,
            size,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.size], Some(&self.weight), Some(&self.bias), self.eps, false)
    }
}

/// `torch.nn.GroupNorm` (eps 1e-5) over [N, C, ...]: weight and bias [C].
#[derive(Debug)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
}

impl GroupNorm {
    pub fn new(p: Path, groups: i64, channels: i64) -> Self {
        GroupNorm {
            weight: p.zeros_var("weight", &[channels]),
            bias: p.zeros_var("bias", &[channels]),
            groups,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), 1e-5, false)
    }
}

/// nn.BatchNorm2d's default epsilon.
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// How batch norm is computed from its running statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// nn.BatchNorm2d in eval mode.
    Eval,
    /// DETR's frozen batch norm: x * (w / sqrt(var + eps)) + (b - mean * that),
    /// in that order.
    Frozen,
}

/// Batch norm over the channels of [N, C, H, W] with running statistics
/// (`weight`, `bias`, `running_mean`, `running_var`).
#[derive(Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    kind: NormKind,
}

impl BatchNorm {
    pub fn new(p: Path, channels: i64, kind: NormKind) -> Self {
        BatchNorm {
            weight: p.zeros_var("weight", &[channels]),
            bias: p.zeros_var("bias", &[channels]),
            running_mean: p.zeros_var("running_mean", &[channels]),
            running_var: p.zeros_var("running_var", &[channels]),
            kind,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self.kind {
            NormKind::Eval => x.batch_norm(
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                false,
                0.1,
                BATCH_NORM_EPS,
                true,
            ),
            NormKind::Frozen => {
                let shape = [1, -1, 1, 1];
                let scale = self.weight.view(shape) * (self.running_var.view(shape) + BATCH_NORM_EPS).rsqrt();
                let bias = self.bias.view(shape) - self.running_mean.view(shape) * &scale;
                x * scale + bias
            }
        }
    }
}

/// The shape of a square 2-d convolution beyond its channels: kernel,
/// stride, padding, groups, whether it has a bias, and how its weight is
/// laid out. `ConvSpec::new(k)` is PyTorch's default (stride 1, no
/// padding, one group, a bias, channels first).
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub groups: i64,
    pub bias: bool,
    /// The weight stored channels-last ([out, k, k, in] in memory): oneDNN
    /// then runs the convolution channels-last, up to twice as fast on the
    /// CPU for the wide dense-prediction convolutions (DPT's head, GLPN's
    /// decoder), without reordering the weight at every call.
    pub channels_last: bool,
    /// Winograd's F(4x4, 3x3) asked for (see `ConvSpec::winograd`).
    pub winograd: bool,
}

impl ConvSpec {
    pub fn new(kernel: i64) -> Self {
        ConvSpec {
            kernel,
            stride: 1,
            padding: 0,
            groups: 1,
            bias: true,
            channels_last: false,
            winograd: false,
        }
    }

    /// A kernel that keeps the size (stride 1, padding kernel / 2).
    pub fn same(kernel: i64) -> Self {
        ConvSpec::new(kernel).padding(kernel / 2)
    }

    pub fn stride(self, stride: i64) -> Self {
        ConvSpec { stride, ..self }
    }

    pub fn padding(self, padding: i64) -> Self {
        ConvSpec { padding, ..self }
    }

    pub fn groups(self, groups: i64) -> Self {
        ConvSpec { groups, ..self }
    }

    pub fn no_bias(self) -> Self {
        ConvSpec { bias: false, ..self }
    }

    pub fn channels_last(self) -> Self {
        ConvSpec {
            channels_last: true,
            ..self
        }
    }

    /// Winograd's F(4x4, 3x3) where it applies (see `uses_winograd`; float32
    /// on the CPU, `core::winograd`): a quarter of the multiplications, for
    /// wide feature maps; a direct convolution otherwise.
    pub fn winograd(self) -> Self {
        ConvSpec { winograd: true, ..self }
    }

    /// Whether Winograd's F(4x4, 3x3) was asked for and applies: a 3x3
    /// kernel, stride 1, padding 1, one group.
    pub fn uses_winograd(&self) -> bool {
        self.winograd && self.kernel == 3 && self.stride == 1 && self.padding == 1 && self.groups == 1
    }
}

/// `torch.nn.Conv2d`: weight [out, in / groups, k, k], bias [out].
#[derive(Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    spec: ConvSpec,
    winograd: WinogradFilters,
}

impl Conv2d {
    pub fn new(p: Path, input: i64, output: i64, spec: ConvSpec) -> Self {
        let (k, per_group) = (spec.kernel, input / spec.groups);
        let weight = if spec.channels_last {
            // The checkpoint is copied into this layout at load.
            let stored = Tensor::zeros([output, k, k, per_group], (p.kind(), p.device()));
            p.add("weight", stored.permute([0, 3, 1, 2]), false)
        } else {
            p.zeros_var("weight", &[output, per_group, k, k])
        };
        Conv2d {
            weight,
            bias: spec.bias.then(|| p.zeros_var("bias", &[output])),
            spec,
            winograd: WinogradFilters::default(),
        }
    }

    /// Makes what the convolution computes with beyond its weight (a
    /// Winograd convolution's filters, where they apply) now rather than at
    /// its first product; its bytes.
    pub fn prepare(&self) -> u64 {
        match self.spec.uses_winograd() {
            true => self.winograd.prepare(&self.weight),
            false => 0,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.spec.uses_winograd() {
            if let Some(y) = self.winograd.conv3x3(x, &self.weight, self.bias.as_ref()) {
                return y;
            }
        }
        x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            [self.spec.stride; 2],
            [self.spec.padding; 2],
            [1; 2],
            self.spec.groups,
        )
    }
}

/// `torch.nn.ConvTranspose2d` with kernel = stride (each input pixel becomes
/// a stride x stride block) and a bias: weight [in, out, k, k].
#[derive(Debug)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
}

impl ConvTranspose2d {
    pub fn new(p: Path, input: i64, output: i64, stride: i64) -> Self {
        ConvTranspose2d {
            weight: p.zeros_var("weight", &[input, output, stride, stride]),
            bias: p.zeros_var("bias", &[output]),
            stride,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_transpose2d(
            &self.weight,
            Some(&self.bias),
            [self.stride; 2],
            [0; 2],
            [0; 2],
            1,
            [1; 2],
        )
    }
}

/// Twice the size of a feature map [N, C, H, W], bilinear
/// (`interpolate(scale_factor=2, mode="bilinear", align_corners=..)`).
pub fn upsample2(x: &Tensor, align_corners: bool) -> Tensor {
    let (_, _, h, w) = x.size4().expect("a feature map");
    x.upsample_bilinear2d([2 * h, 2 * w], align_corners, None, None)
}

/// `torch.nn.Embedding`.
#[derive(Debug)]
pub struct Embedding {
    weight: Tensor,
}

impl Embedding {
    pub fn new(p: Path, count: i64, dim: i64) -> Self {
        Embedding {
            weight: p.zeros_var("weight", &[count, dim]),
        }
    }

    pub fn forward(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.weight, ids, -1, false, false)
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// Activation functions under the names transformers' `ACT2FN` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Activation {
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast", rename = "gelu_new")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    #[serde(alias = "swish", rename = "silu")]
    Silu,
    #[serde(rename = "tanh")]
    Tanh,
    #[serde(rename = "quick_gelu")]
    QuickGelu,
}

impl Activation {
    pub fn forward(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => x.gelu("none"),
            Activation::GeluTanh => x.gelu("tanh"),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
            Activation::Tanh => x.tanh(),
            Activation::QuickGelu => x * (x * 1.702).sigmoid(),
        }
    }
}

/// A transformer's feed-forward block: fc1, the activation, fc2.
#[derive(Debug)]
pub struct FeedForward {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl FeedForward {
    /// `fc1` and `fc2` under `p`.
    pub fn new(p: &Path, dim: i64, ffn_dim: i64, act: Activation) -> Self {
        FeedForward {
            fc1: Linear::new(p / "fc1", dim, ffn_dim),
            fc2: Linear::new(p / "fc2", ffn_dim, dim),
            act,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.act.forward(&self.fc1.forward(x)))
    }
}

/// [batch, seq, heads*head_dim] -> [batch, heads, seq, head_dim]
pub fn split_heads(x: &Tensor, heads: i64) -> Tensor {
    let (b, s, d) = x.size3().expect("3-d activations");
    x.view([b, s, heads, d / heads]).transpose(1, 2)
}

/// The encoder's keys and values as a decoder keeps them for every step
/// (`split_heads` of each), each laid out [batch, heads, seq, head_dim] in
/// memory. Left as views of [batch, seq, heads*head_dim], every step's
/// attention reads each head in pieces of head_dim values a whole row
/// apart: eight whisper-base windows' cross-attention took 22 ms a step
/// against 12 ms in order (and 3 ms against 1.1 for one).
pub fn kept_in_order((k, v): (Tensor, Tensor)) -> (Tensor, Tensor) {
    (k.contiguous(), v.contiguous())
}

/// [batch, heads, seq, head_dim] -> [batch, seq, heads*head_dim]
pub fn merge_heads(x: &Tensor) -> Tensor {
    let (b, h, s, d) = x.size4().expect("4-d activations");
    x.transpose(1, 2).contiguous().view([b, s, h * d])
}

/// An additive attention bias from a padding mask: [batch, seq] with 1 for
/// tokens to attend to becomes [batch, 1, 1, seq] with 0 there and the dtype's
/// minimum elsewhere, as transformers builds it.
pub fn padding_bias(attention_mask: &Tensor, kind: Kind) -> Tensor {
    let (b, s) = attention_mask.size2().expect("2-d attention mask");
    let keep = attention_mask.to_kind(kind).view([b, 1, 1, s]);
    (keep.ones_like() - keep) * masked_value(kind)
}

/// The additive bias of a hidden position in `kind`: its lowest value.
pub fn masked_value(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// The additive attention bias of a causal decoder step: `new` queries (the
/// last `new` of the [batch, total] `attention_mask`) may see every earlier
/// or same position that is not padding. [batch, 1, new, total], 0 where
/// allowed and f32::MIN elsewhere.
pub fn causal_bias(attention_mask: &Tensor, new: i64) -> Tensor {
    let total = attention_mask.size()[1];
    let device = attention_mask.device();
    let query_pos = Tensor::arange_start(total - new, total, (Kind::Int64, device)).view([new, 1]);
    let key_pos = Tensor::arange(total, (Kind::Int64, device)).view([1, total]);
    let causal = key_pos.le_tensor(&query_pos).view([1, 1, new, total]);
    let padding = attention_mask.ne(0).view([-1, 1, 1, total]);
    causal.logical_and(&padding).logical_not().to_kind(Kind::Float) * f32::MIN as f64
}

/// softmax(q kᵀ / sqrt(d) + bias) v for [batch, heads, seq, head_dim] inputs,
/// with LibTorch's fused kernel (transformers' "sdpa" attention): strided
/// inputs are read in place and the scores are never materialised whole.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let bias = bias_in(bias, q.kind());
    Tensor::scaled_dot_product_attention(q, k, v, bias.as_ref(), 0.0, false, None, false)
}

/// An additive attention bias in `kind` (the queries' dtype): the masks are
/// built in float32, whose lowest value is -inf in float16; positions at or
/// below `kind`'s lowest value get that value, as transformers' masks do.
pub fn bias_in(bias: Option<&Tensor>, kind: Kind) -> Option<Tensor> {
    bias.map(|b| {
        if b.kind() == kind {
            b.shallow_clone()
        } else {
            b.clamp_min(masked_value(kind)).to_kind(kind)
        }
    })
}

/// Cross-attention of every hypothesis to the encoder states of its own
/// input: queries `q` [rows, heads, 1, head_dim], where rows are `rows /
/// items` consecutive hypotheses (beams) per input, and keys and values
/// [items, heads, source, head_dim] with an optional padding bias [items, 1,
/// 1, source]. The beams of one input attend as that input's query
/// positions, so keys and values are never copied per beam. `scale`: None
/// for 1/sqrt(head_dim). Returns [rows, 1, heads * head_dim].
pub fn cross_attention(q: &Tensor, k: &Tensor, v: &Tensor, padding: Option<&Tensor>, scale: Option<f64>) -> Tensor {
    let (rows, heads, _, head_dim) = q.size4().expect("4-d queries");
    let items = k.size()[0];
    let q = q.reshape([items, rows / items, heads, head_dim]).transpose(1, 2);
    let padding = bias_in(padding, q.kind());
    let out = if q.device() == tch::Device::Cpu && q.kind() == Kind::Float {
        // A step's few queries per input: two batched products read the
        // keys and values once each, faster than the fused kernel's blocks
        // (float32 only: in 16 bits the fused kernel keeps the scores in
        // float32).
        let scale = scale.unwrap_or(1.0 / (head_dim as f64).sqrt());
        let scores = q.matmul(&k.transpose(-1, -2)) * scale;
        let scores = match &padding {
            Some(p) => scores + p,
            None => scores,
        };
        scores.softmax(-1, q.kind()).matmul(v)
    } else {
        Tensor::scaled_dot_product_attention(&q, k, v, padding.as_ref(), 0.0, false, scale, false)
    };
    out.transpose(1, 2).contiguous().view([rows, 1, heads * head_dim])
}

/// Keys and values of one attention layer for the tokens seen so far,
/// [batch, heads, seq, head_dim], so each decoding step only computes the
/// new token's.
#[derive(Debug, Default)]
pub struct KvCache {
    kv: Option<(Tensor, Tensor)>,
}

impl KvCache {
    /// Appends this step's keys and values; returns all of them.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2)),
            None => (k, v),
        };
        self.kv = Some((k.shallow_clone(), v.shallow_clone()));
        (k, v)
    }

    /// Appends `other`'s rows after these (`rows`: how many each side holds;
    /// a side with no keys yet holds rows before their first step), the keys
    /// and values of each side padded on the left with zeros to `length`
    /// positions (the padding is masked out: continuous batching joins
    /// histories of other lengths).
    pub fn merge_rows(&mut self, other: KvCache, rows: [usize; 2], length: i64) {
        let pad = |t: Tensor| {
            let short = length - t.size()[2];
            if short > 0 {
                t.constant_pad_nd([0, 0, short, 0])
            } else {
                t
            }
        };
        let (mine, theirs) = (self.kv.take(), other.kv);
        let Some(like) = mine.as_ref().or(theirs.as_ref()).map(|(k, _)| k.shallow_clone()) else {
            return;
        };
        // Rows with no history yet: all padding.
        let zeros = |n: usize| {
            let size = like.size();
            Tensor::zeros([n as i64, size[1], 0, size[3]], (like.kind(), like.device()))
        };
        let [(k, v), (ok, ov)] =
            [(mine, rows[0]), (theirs, rows[1])].map(|(kv, n)| kv.unwrap_or_else(|| (zeros(n), zeros(n))));
        self.kv = Some((Tensor::cat(&[pad(k), pad(ok)], 0), Tensor::cat(&[pad(v), pad(ov)], 0)));
    }

    /// Drops the first `count` positions (padding no row attends to).
    pub fn drop_first(&mut self, count: i64) {
        if let Some((k, v)) = self.kv.take() {
            let length = k.size()[2];
            let count = count.min(length);
            self.kv = Some((k.narrow(2, count, length - count), v.narrow(2, count, length - count)));
        }
    }

    /// The rows held (0 when empty).
    pub fn rows(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.size()[0] as usize)
    }

    /// Keeps the batch rows in `rows` (in that order): drops finished
    /// sequences, or reorders beams.
    pub fn select_rows(&mut self, rows: &Tensor) {
        if let Some((k, v)) = self.kv.take() {
            self.kv = Some((k.index_select(0, rows), v.index_select(0, rows)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Channels-last tensors keep their shape and values with NHWC strides;
    /// a convolution weight variable is one, and a checkpoint's values copied
    /// in keep that layout; a convolution over them equals the NCHW one
    /// within rounding.
    #[test]
    fn channels_last_weights_load_and_convolve_as_nchw_ones() {
        let _guard = tch::no_grad_guard();
        let x = Tensor::randn([2, 3, 5, 7], (Kind::Float, Device::Cpu));
        let nhwc = channels_last(&x);
        assert_eq!(nhwc.size(), x.size());
        assert_eq!(nhwc.stride(), vec![105, 1, 21, 3]);
        assert!(nhwc.equal(&x));
        assert_eq!(
            channels_last(&x.view([6, 35])).stride(),
            vec![35, 1],
            "only 4-d tensors change"
        );

        let vs = tch::nn::VarStore::new(Device::Cpu);
        let weight = vs.root().conv_weight_var("weight", &[4, 3, 3, 3]);
        assert_eq!(weight.stride(), vec![27, 1, 9, 3]);
        let loaded = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        vs.variables()["weight"].shallow_clone().copy_(&loaded);
        assert_eq!(weight.stride(), vec![27, 1, 9, 3], "loading keeps the layout");
        assert!(weight.equal(&loaded));
        let want = x.conv2d(&loaded, None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1);
        let got = nhwc.conv2d(&weight, None::<&Tensor>, [1, 1], [1, 1], [1, 1], 1);
        assert!(got.allclose(&want, 1e-5, 1e-5, false));
    }

    #[test]
    fn activations_parse_from_transformers_names() {
        let a: Activation = serde_json::from_str("\"gelu_pytorch_tanh\"").unwrap();
        assert_eq!(a, Activation::GeluTanh);
        let a: Activation = serde_json::from_str("\"swish\"").unwrap();
        assert_eq!(a, Activation::Silu);
    }

    #[test]
    fn beams_attend_to_their_own_input() {
        let opts = (Kind::Float, Device::Cpu);
        // 2 inputs, 3 beams each, 2 heads; the second input is padded.
        let q = Tensor::randn([6, 2, 1, 4], opts);
        let k = Tensor::randn([2, 2, 5, 4], opts);
        let v = Tensor::randn([2, 2, 5, 4], opts);
        let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 0, 0]).view([2, 5]);
        let bias = padding_bias(&mask, Kind::Float);
        let out = cross_attention(&q, &k, &v, Some(&bias), None);
        assert_eq!(out.size(), [6, 1, 8]);
        for row in 0..6 {
            let item = row / 3;
            let keys = if item == 0 { 5 } else { 3 };
            let one = attention(
                &q.narrow(0, row, 1),
                &k.narrow(0, item, 1).narrow(2, 0, keys),
                &v.narrow(0, item, 1).narrow(2, 0, keys),
                None,
            );
            assert!(
                out.narrow(0, row, 1).allclose(&merge_heads(&one), 1e-5, 1e-6, false),
                "row {row}"
            );
        }
    }

    #[test]
    fn masked_keys_get_no_attention() {
        let q = Tensor::randn([1, 1, 3, 4], (Kind::Float, Device::Cpu));
        let v = Tensor::randn([1, 1, 3, 4], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[1i64, 1, 0]).view([1, 3]);
        let bias = padding_bias(&mask, Kind::Float);
        let out = attention(&q, &q, &v, Some(&bias));
        // Same result as attending over the first two keys only.
        let short = attention(&q, &q.narrow(2, 0, 2), &v.narrow(2, 0, 2), None);
        assert!(out.allclose(&short, 1e-5, 1e-6, false));
    }
}
