//! Loading a decoder-only language model (GPT-2) for text generation, with
//! its tokenizer and generation settings.

use std::path::Path;

use tch::{nn::VarStore, Device};

use crate::auto::Build;
use crate::core::checks::build_fallibly;
use crate::core::config::{config_path, CommonConfig};
use crate::core::decoding::CausalLm;
use crate::core::int8::{build_quantized, Quantization};
use crate::core::precision::Precision;
use crate::core::weights::{Checkpoint, LoadedWeights};
use crate::generation::ModelSettings;
use crate::text::tokenizer::TextTokenizer;
use crate::{ModelError, Result};

/// A loaded decoder-only language model with its tokenizer and generation
/// defaults.
pub struct CausalModel {
    pub model: Box<dyn CausalLm + Send>,
    /// config.json's EOS token (when generation_config.json names none).
    pub eos_token_id: i64,
    _vs: VarStore,
    /// Its tensors, shared with other models loaded from the same files.
    _weights: LoadedWeights,
    pub tokenizer: TextTokenizer,
    /// generation_config.json and config.json's task_specific_params.
    pub settings: ModelSettings,
    pub architecture: String,
    pub memory_bytes: u64,
}

/// Loads a `*LMHeadModel` for text generation in `precision`, its linear
/// layers quantized as `quantization` asks (the LM head, tied to the
/// embeddings, stays float).
pub fn load_causal_lm(
    dir: &Path,
    device: Device,
    quantization: Quantization,
    precision: Precision,
) -> Result<CausalModel> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    let Build::Causal(build) = crate::auto::find(&architecture, "text-generation", "for text generation")?.build else {
        return Err(ModelError::Unsupported(format!(
            "{architecture} is not a decoder-only language model"
        )));
    };
    let mut vs = VarStore::new(device);
    vs.set_kind(precision.kind());
    quantization.check(device, vs.root().kind())?;
    let checkpoint = Checkpoint::open(dir)?;
    let (built, int8) = build_quantized(quantization, || {
        build_fallibly(|| build(vs.root(), &config_file, checkpoint.shapes()))
    });
    let built = built?;
    let weights = checkpoint.load_shared(&mut vs)?;
    let int8_bytes = int8.pack()?;
    let settings = ModelSettings::from_dir(dir, &config_file, false)?;
    let pad = settings.file.pad_token_id.unwrap_or(built.eos_token_id);
    let tokenizer = TextTokenizer::from_dir(dir, built.net.max_positions(), pad)?;
    Ok(CausalModel {
        model: built.net,
        eos_token_id: built.eos_token_id,
        memory_bytes: weights.bytes + int8_bytes,
        _vs: vs,
        _weights: weights,
        tokenizer,
        settings,
        architecture,
    })
}
