//! Loading a Whisper checkpoint (WhisperForConditionalGeneration) for
//! speech recognition, with its feature extractor, tokenizer and generation
//! config.

use std::path::Path;

use tch::nn::VarStore;
use tch::Device;

use crate::audio::whisper::WhisperForConditionalGeneration;
use crate::audio::whisper_features::WhisperFeatureExtractor;
use crate::audio::whisper_generate::WhisperGenerationConfig;
use crate::auto::vision::build_loaded;
use crate::auto::Build;
use crate::core::config::{config_path, is_present, read_json, CommonConfig};
use crate::core::precision::Precision;
use crate::core::weights::var_store_bytes;
use crate::text::tokenizer::TextTokenizer;
use crate::{ModelError, Result};

/// A loaded Whisper model.
pub struct WhisperModel {
    pub net: WhisperForConditionalGeneration,
    _vs: VarStore,
    pub features: WhisperFeatureExtractor,
    pub generation: WhisperGenerationConfig,
    pub tokenizer: TextTokenizer,
    pub device: Device,
    /// What it computes in; its logits are read in float32.
    pub precision: Precision,
    pub memory_bytes: u64,
}

/// Whether the checkpoint in `dir` is a Whisper one (its config.json's
/// architecture), so that the speech-recognition task loads it with
/// [`load_whisper`] rather than as a CTC model.
pub fn is_whisper(dir: &Path) -> Result<bool> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    Ok(matches!(
        crate::auto::find(&architecture, "automatic-speech-recognition", "for speech recognition")?.build,
        Build::Whisper(_)
    ))
}

/// Loads the Whisper checkpoint in `dir` on `device` in `precision`.
pub fn load_whisper(dir: &Path, device: Device, precision: Precision) -> Result<WhisperModel> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    let Build::Whisper(build) =
        crate::auto::find(&architecture, "automatic-speech-recognition", "for speech recognition")?.build
    else {
        return Err(ModelError::Unsupported(format!(
            "{architecture} is not a Whisper model"
        )));
    };
    let features = WhisperFeatureExtractor::from_dir(dir)?;
    // Without generation_config.json, transformers builds one from
    // config.json, which older checkpoints keep these keys in.
    let generation_file = dir.join("generation_config.json");
    let generation: WhisperGenerationConfig = if is_present(&generation_file) {
        read_json(&generation_file)?
    } else {
        read_json(&config_file)?
    };
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| build(root, &config_file, shapes))?;
    let pad = generation.settings.pad_token_id.unwrap_or(net.config.pad_token_id);
    let mut tokenizer = TextTokenizer::from_dir(dir, usize::MAX, pad)?;
    tokenizer.disable_truncation()?;
    let vocab = net.config.vocab_size;
    let in_vocab = |what: &str, id: Option<i64>| match id {
        Some(id) if !(0..vocab).contains(&id) => Err(ModelError::bad_file(
            &generation_file,
            format!("{what} {id} is outside the vocabulary of {vocab} tokens"),
        )),
        _ => Ok(()),
    };
    in_vocab("decoder_start_token_id", generation.decoder_start_token_id)?;
    in_vocab("no_timestamps_token_id", generation.no_timestamps_token_id)?;
    for id in generation.lang_to_id.iter().flat_map(|m| m.values()) {
        in_vocab("a lang_to_id token", Some(*id))?;
    }
    for id in generation.task_to_id.iter().flat_map(|m| m.values()) {
        in_vocab("a task_to_id token", Some(*id))?;
    }
    let (layers, heads) = (net.config.decoder_layers, net.config.decoder_attention_heads);
    for &(layer, head) in generation.alignment_heads.iter().flatten() {
        if layer as i64 >= layers || head as i64 >= heads {
            return Err(ModelError::bad_file(
                &generation_file,
                format!("alignment head [{layer}, {head}] is not one of the decoder's {layers} layers x {heads} heads"),
            ));
        }
    }
    let width = net.config.median_filter_width;
    if width <= 0 || width % 2 == 0 || width > 1001 {
        return Err(ModelError::bad_file(
            &config_file,
            format!("median_filter_width {width}: expected an odd width from 1 to 1001"),
        ));
    }
    Ok(WhisperModel {
        memory_bytes: var_store_bytes(&vs) + net.extra_bytes(),
        net,
        _vs: vs,
        features,
        generation,
        tokenizer,
        device,
        precision,
    })
}
