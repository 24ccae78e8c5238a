//! Loading a decoder-only language model (GPT-2) for text generation, with
//! its tokenizer and generation settings.

use std::path::Path;

use tch::{nn::VarStore, Device};

use crate::core::config::{config_path, read_json, CommonConfig};
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::generation::ModelSettings;
use crate::text::gpt2::{self, Gpt2LmHeadModel};
use crate::text::tokenizer::TextTokenizer;
use crate::Result;

/// A loaded decoder-only language model with its tokenizer and generation
/// defaults.
pub struct CausalModel {
    pub model: Gpt2LmHeadModel,
    _vs: VarStore,
    pub tokenizer: TextTokenizer,
    /// generation_config.json and config.json's task_specific_params.
    pub settings: ModelSettings,
    pub architecture: String,
    pub memory_bytes: u64,
}

/// Loads a `*LMHeadModel` for text generation.
pub fn load_causal_lm(dir: &Path, device: Device) -> Result<CausalModel> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    crate::auto::find(&architecture, "text-generation", "for text generation")?;
    let cfg: gpt2::Config = read_json(&config_file)?;
    let mut vs = VarStore::new(device);
    let model = Gpt2LmHeadModel::new(vs.root(), &cfg);
    Checkpoint::open(dir)?.load_into(&mut vs)?;
    let settings = ModelSettings::from_dir(dir, &config_file, false)?;
    let pad = settings.file.pad_token_id.unwrap_or(cfg.eos_token_id);
    let tokenizer = TextTokenizer::from_dir(dir, cfg.n_positions as usize, pad)?;
    Ok(CausalModel {
        model,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        tokenizer,
        settings,
        architecture,
    })
}
