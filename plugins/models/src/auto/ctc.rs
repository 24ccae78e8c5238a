//! Loading a CTC speech-recognition model (Wav2Vec2ForCTC) with its
//! feature extractor and vocabulary.

use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::audio::ctc::CtcVocab;
use crate::audio::decode::SAMPLE_RATES;
use crate::audio::features::FeatureExtractorConfig;
use crate::audio::wav2vec2::{Config, Wav2Vec2ForCtc};
use crate::core::config::{config_path, read_json};
use crate::core::weights::{var_store_bytes, Checkpoint};
use crate::{ModelError, Result};

/// A loaded speech-recognition model.
pub struct CtcModel {
    net: Wav2Vec2ForCtc,
    _vs: VarStore,
    pub config: Config,
    pub features: FeatureExtractorConfig,
    pub vocab: CtcVocab,
    pub device: Device,
    pub memory_bytes: u64,
}

impl CtcModel {
    /// Logits [frames, vocab] (f32, CPU) of one signal's input_values.
    pub fn logits(&self, input_values: &[f32]) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let x = Tensor::from_slice(input_values).to_device(self.device).unsqueeze(0);
        Ok(self
            .net
            .forward(&x)
            .squeeze_dim(0)
            .to_kind(Kind::Float)
            .to_device(Device::Cpu))
    }
}

/// config.json, preprocessor_config.json and the vocabulary of `dir`.
fn read_configs(dir: &Path) -> Result<(Config, FeatureExtractorConfig, CtcVocab)> {
    let config: Config = read_json(&config_path(dir)?)?;
    if config.conv_dim.len() != config.conv_kernel.len() || config.conv_dim.len() != config.conv_stride.len() {
        return Err(ModelError::bad_file(
            dir.join("config.json"),
            "conv_dim, conv_kernel and conv_stride differ in length",
        ));
    }
    let features_path = dir.join("preprocessor_config.json");
    let features: FeatureExtractorConfig = if features_path.is_file() {
        read_json(&features_path)?
    } else {
        serde_json::from_str("{}").expect("defaults")
    };
    if !SAMPLE_RATES.contains(&features.sampling_rate) {
        return Err(ModelError::bad_file(
            features_path,
            format!("sampling_rate {} is not a usable audio rate", features.sampling_rate),
        ));
    }
    Ok((config, features, CtcVocab::from_dir(dir)?))
}

/// Loads the Wav2Vec2ForCTC checkpoint in `dir` on `device`.
pub fn load_ctc_model(dir: &Path, device: Device) -> Result<CtcModel> {
    let config_file = config_path(dir)?;
    let architecture = crate::core::config::CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    crate::auto::find(&architecture, "automatic-speech-recognition", "for speech recognition")?;
    let (config, features, vocab) = read_configs(dir)?;
    let mut vs = VarStore::new(device);
    let net = Wav2Vec2ForCtc::new(vs.root(), &config);
    Checkpoint::open(dir)?.load_into(&mut vs)?;
    Ok(CtcModel {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        config,
        features,
        vocab,
        device,
    })
}
