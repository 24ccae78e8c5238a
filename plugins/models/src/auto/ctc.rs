//! Loading a CTC speech-recognition model (Wav2Vec2ForCTC) with its
//! feature extractor and vocabulary.

use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::audio::ctc::{CtcNet, CtcVocab};
use crate::audio::decode::SAMPLE_RATES;
use crate::audio::features::FeatureExtractorConfig;
use crate::auto::vision::build_loaded;
use crate::auto::Build;
use crate::core::config::{config_path, is_present, read_json, CommonConfig};
use crate::core::device::upload;
use crate::core::precision::Precision;
use crate::core::weights::var_store_bytes;
use crate::{ModelError, Result};

/// A loaded speech-recognition model.
pub struct CtcModel {
    pub net: Box<dyn CtcNet>,
    _vs: VarStore,
    pub features: FeatureExtractorConfig,
    pub vocab: CtcVocab,
    pub device: Device,
    /// What it computes in; its logits come back in float32.
    pub precision: Precision,
    pub memory_bytes: u64,
}

impl CtcModel {
    /// Logits [frames, vocab] (f32, CPU) of one signal's input_values.
    pub fn logits(&self, input_values: &[f32]) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let x = upload(&Tensor::from_slice(input_values), self.device)
            .to_kind(self.precision.kind())
            .unsqueeze(0);
        Ok(self
            .net
            .forward(&x)
            .squeeze_dim(0)
            .to_kind(Kind::Float)
            .to_device(Device::Cpu))
    }
}

/// preprocessor_config.json of `dir` (the defaults without one).
fn read_features(dir: &Path) -> Result<FeatureExtractorConfig> {
    let features_path = dir.join("preprocessor_config.json");
    let features: FeatureExtractorConfig = if is_present(&features_path) {
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
    Ok(features)
}

/// Loads the CTC checkpoint (Wav2Vec2ForCTC) in `dir` on `device` in
/// `precision`.
pub fn load_ctc_model(dir: &Path, device: Device, precision: Precision) -> Result<CtcModel> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    let Build::Ctc(build) =
        crate::auto::find(&architecture, "automatic-speech-recognition", "for speech recognition")?.build
    else {
        return Err(ModelError::Unsupported(format!("{architecture} is not a CTC model")));
    };
    let features = read_features(dir)?;
    let vocab = CtcVocab::from_dir(dir)?;
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| build(root, &config_file, shapes))?;
    Ok(CtcModel {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        features,
        vocab,
        device,
        precision,
    })
}
