//! GPT-2 (Radford et al.): a pre-norm decoder-only transformer with learned
//! positions, `Conv1D` projections (weights stored [in, out]) and an LM head
//! tied to the token embedding. Weight names follow transformers'
//! `modeling_gpt2.py`; checkpoints with or without the `transformer.` prefix
//! load.

use serde::Deserialize;
use tch::{nn::Path, Tensor};

use crate::core::checks::{ConfigCheck, MAX_TABLE, MAX_WIDTH};
use crate::core::config::read_json;
use crate::core::decoding::{CausalLm, CausalNet};
use crate::core::int8::Int8Slot;
use crate::core::layers::{
    attention, causal_bias, merge_heads, split_heads, Activation, Embedding, KvCache, LayerNorm, Variables,
};
use crate::core::onednn::OnednnWeight;
use crate::core::split_linear::{self, Layout};
use crate::core::weights::WeightShapes;

fn default_vocab_size() -> i64 {
    50257
}
fn default_positions() -> i64 {
    1024
}
fn default_embd() -> i64 {
    768
}
fn default_layers() -> i64 {
    12
}
fn default_heads() -> i64 {
    12
}
fn default_eps() -> f64 {
    1e-5
}
fn gelu_new() -> Activation {
    Activation::GeluTanh
}
fn yes() -> bool {
    true
}
fn default_eos() -> i64 {
    50256
}

/// `GPT2Config`, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "default_positions")]
    pub n_positions: i64,
    #[serde(default = "default_embd")]
    pub n_embd: i64,
    #[serde(default = "default_layers")]
    pub n_layer: i64,
    #[serde(default = "default_heads")]
    pub n_head: i64,
    #[serde(default)]
    pub n_inner: Option<i64>,
    #[serde(default = "gelu_new")]
    pub activation_function: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default = "default_eos")]
    pub bos_token_id: i64,
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
}

impl Config {
    /// Every size within its bound and equal to the checkpoint's
    /// (`core::checks`), before anything is built from them.
    pub fn validate(&self, file: &std::path::Path, shapes: &WeightShapes) -> crate::Result<()> {
        let c = ConfigCheck::new(file, shapes);
        c.matches("vocab_size", self.vocab_size, MAX_TABLE, "wte.weight", 0)?;
        c.matches("n_embd", self.n_embd, MAX_WIDTH, "wte.weight", 1)?;
        c.matches("n_positions", self.n_positions, MAX_TABLE, "wpe.weight", 0)?;
        c.layers("n_layer", self.n_layer, "h")?;
        c.divides("n_head", self.n_head, "n_embd", self.n_embd)?;
        if let Some(inner) = self.n_inner {
            // Conv1D weights are [in, out].
            c.matches("n_inner", inner, MAX_WIDTH, "h.0.mlp.c_fc.weight", 1)?;
        }
        // Left padding uses EOS when the model names no pad token.
        c.token("eos_token_id", self.eos_token_id, self.vocab_size)?;
        Ok(())
    }
}

/// `Conv1D`: y = x W + b with W stored [in, out] (in int8 when the model
/// is built quantized).
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
    int8: Int8Slot,
    onednn: OnednnWeight,
}

impl Conv1D {
    fn new(p: Path, in_dim: i64, out_dim: i64) -> Self {
        let weight = p.zeros_var("weight", &[in_dim, out_dim]);
        let bias = p.zeros_var("bias", &[out_dim]);
        Conv1D {
            int8: Int8Slot::claim(&weight, Some(&bias), true),
            onednn: OnednnWeight::decoding(&weight, Layout::InOut),
            weight,
            bias,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        if let Some(packed) = self.int8.packed() {
            return packed.forward(x);
        }
        if let Some(y) = self.onednn.linear(x, &self.weight, Some(&self.bias)) {
            return y;
        }
        // addmm on the flattened rows, as transformers' Conv1D does.
        split_linear::linear(x, &self.weight, Some(&self.bias), Layout::InOut)
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    attn_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
    heads: i64,
    act: Activation,
    /// Extra attention scale (1 / (layer + 1)) some checkpoints ask for.
    extra_scale: f64,
    unscaled: bool,
}

impl Block {
    fn new(p: Path, cfg: &Config, index: i64) -> Self {
        let d = cfg.n_embd;
        let inner = cfg.n_inner.unwrap_or(4 * d);
        Block {
            ln_1: LayerNorm::new(&p / "ln_1", d, cfg.layer_norm_epsilon),
            c_attn: Conv1D::new(&p / "attn" / "c_attn", d, 3 * d),
            attn_proj: Conv1D::new(&p / "attn" / "c_proj", d, d),
            ln_2: LayerNorm::new(&p / "ln_2", d, cfg.layer_norm_epsilon),
            c_fc: Conv1D::new(&p / "mlp" / "c_fc", d, inner),
            mlp_proj: Conv1D::new(&p / "mlp" / "c_proj", inner, d),
            heads: cfg.n_head,
            act: cfg.activation_function,
            extra_scale: if cfg.scale_attn_by_inverse_layer_idx {
                1.0 / (index + 1) as f64
            } else {
                1.0
            },
            unscaled: !cfg.scale_attn_weights,
        }
    }

    fn forward(&self, x: &Tensor, bias: &Tensor, cache: &mut KvCache) -> Tensor {
        let qkv = self.c_attn.forward(&self.ln_1.forward(x)).chunk(3, -1);
        let mut q = split_heads(&qkv[0], self.heads);
        let (k, v) = cache.append(split_heads(&qkv[1], self.heads), split_heads(&qkv[2], self.heads));
        // `attention` divides by sqrt(head_dim); undo or add scales as configured.
        let head_dim = (*q.size().last().expect("head dim") as f64).sqrt();
        let factor = self.extra_scale * if self.unscaled { head_dim } else { 1.0 };
        if factor != 1.0 {
            q *= factor;
        }
        let context = merge_heads(&attention(&q, &k, &v, Some(bias)));
        let x = x + self.attn_proj.forward(&context);
        let h = self
            .mlp_proj
            .forward(&self.act.forward(&self.c_fc.forward(&self.ln_2.forward(&x))));
        x + h
    }
}

/// `GPT2LMHeadModel`.
pub struct Gpt2LmHeadModel {
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    pub config: Config,
}

impl Gpt2LmHeadModel {
    pub fn new(p: Path, cfg: &Config) -> Self {
        let t = &p / "transformer";
        Gpt2LmHeadModel {
            wte: Embedding::new(&t / "wte", cfg.vocab_size, cfg.n_embd),
            wpe: Embedding::new(&t / "wpe", cfg.n_positions, cfg.n_embd),
            blocks: (0..cfg.n_layer).map(|i| Block::new(&t / "h" / i, cfg, i)).collect(),
            ln_f: LayerNorm::new(&t / "ln_f", cfg.n_embd, cfg.layer_norm_epsilon),
            config: cfg.clone(),
        }
    }
}

impl CausalLm for Gpt2LmHeadModel {
    /// An empty cache, one entry per layer.
    fn new_cache(&self) -> Vec<KvCache> {
        (0..self.blocks.len()).map(|_| KvCache::default()).collect()
    }

    fn forward_last(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut [KvCache],
    ) -> Tensor {
        let _guard = tch::no_grad_guard();
        let new = input_ids.size()[1];
        let bias = causal_bias(attention_mask, new);
        let mut x = self.wte.forward(input_ids) + self.wpe.forward(position_ids);
        for (block, layer_cache) in self.blocks.iter().zip(cache.iter_mut()) {
            x = block.forward(&x, &bias, layer_cache);
        }
        let last = self.ln_f.forward(&x.select(1, new - 1));
        split_linear::linear(&last, self.wte.weight(), None, Layout::OutIn)
    }

    fn max_positions(&self) -> usize {
        self.config.n_positions as usize
    }

    fn device(&self) -> tch::Device {
        self.wte.weight().device()
    }
}

/// `GPT2LMHeadModel`, for text generation.
pub fn build(root: Path, config_file: &std::path::Path, shapes: &WeightShapes) -> crate::Result<CausalNet> {
    let cfg: Config = read_json(config_file)?;
    cfg.validate(config_file, shapes)?;
    Ok(CausalNet {
        eos_token_id: cfg.eos_token_id,
        net: Box::new(Gpt2LmHeadModel::new(root, &cfg)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::weights::WeightShapes;
    use std::path::Path;

    #[test]
    fn gpt2_sizes_are_checked_against_wte_wpe_and_the_blocks() {
        let shapes = WeightShapes::from_shapes([
            ("transformer.wte.weight", vec![50, 8]),
            ("transformer.wpe.weight", vec![32, 8]),
            ("transformer.h.0.mlp.c_fc.weight", vec![8, 32]),
        ]);
        let config = |edit: serde_json::Value| -> Config {
            crate::core::checks::edited(
                serde_json::json!({
                    "vocab_size": 50, "n_embd": 8, "n_positions": 32, "n_layer": 1, "n_head": 2, "eos_token_id": 49
                }),
                edit,
            )
        };
        let file = Path::new("config.json");
        config(serde_json::json!({})).validate(file, &shapes).unwrap();
        config(serde_json::json!({"n_inner": 32}))
            .validate(file, &shapes)
            .unwrap();
        let refused = |edit| config(edit).validate(file, &shapes).unwrap_err().to_string();
        assert!(refused(serde_json::json!({"n_layer": 100_000})).contains("n_layer = 100000"));
        assert!(refused(serde_json::json!({"n_layer": 2})).contains("has 1 layers (h.0 .. 0)"));
        assert!(refused(serde_json::json!({"n_head": 0})).contains("n_head = 0"));
        assert!(refused(serde_json::json!({"n_positions": 1 << 30})).contains("n_positions"));
        assert!(refused(serde_json::json!({"n_inner": 64})).contains("n_inner = 64"));
        assert!(refused(serde_json::json!({"eos_token_id": 50})).contains("eos_token_id = 50"));
    }
}
