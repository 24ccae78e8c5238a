//! Loading a vocoder (SpeechT5's HiFi-GAN) on its own: a spectrogram to
//! a waveform, for text-to-speech models to name.

use std::path::Path;

use tch::{nn::VarStore, Device, Kind, Tensor};

use crate::audio::hifigan::{self, HifiGan};
use crate::auto::vision::build_loaded;
use crate::core::config::{config_path, CommonConfig};
use crate::core::precision::Precision;
use crate::core::weights::var_store_bytes;
use crate::{ModelError, Result};

/// The vocoder architectures inferd loads.
const VOCODERS: &[&str] = &["SpeechT5HifiGan"];

/// A loaded vocoder.
pub struct Vocoder {
    net: HifiGan,
    _vs: VarStore,
    pub device: Device,
    /// What it computes in; its waveforms come back in float32.
    pub precision: Precision,
    pub memory_bytes: u64,
}

impl Vocoder {
    /// The waveforms [B, samples] of log-mel spectrograms [B, frames, mels].
    pub fn forward(&self, spectrogram: &Tensor) -> Tensor {
        self.net
            .forward(&spectrogram.to_kind(self.precision.kind()))
            .to_kind(Kind::Float)
    }

    /// The mel bins of the spectrograms it reads.
    pub fn mel_bins(&self) -> i64 {
        self.net.mel_bins()
    }

    /// The waveform's samples per second.
    pub fn sampling_rate(&self) -> i64 {
        self.net.sampling_rate
    }
}

/// Loads the vocoder in `dir` on `device` in `precision`.
pub fn load_vocoder(dir: &Path, device: Device, precision: Precision) -> Result<Vocoder> {
    let config_file = config_path(dir)?;
    let architecture = CommonConfig::from_dir(dir)?.architecture(&config_file)?;
    if !VOCODERS.contains(&architecture.as_str()) {
        return Err(ModelError::Unsupported(format!(
            "architecture {architecture} as a vocoder (supported: {})",
            VOCODERS.join(", ")
        )));
    }
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| {
        hifigan::build(root, &config_file, shapes)
    })?;
    Ok(Vocoder {
        net,
        memory_bytes: var_store_bytes(&vs),
        _vs: vs,
        device,
        precision,
    })
}
