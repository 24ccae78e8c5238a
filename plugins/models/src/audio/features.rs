//! Feature extractors: what turns mono samples at the model's rate into the
//! model's input. Wav2Vec2FeatureExtractor's normalisation.

use serde::Deserialize;

/// preprocessor_config.json (Wav2Vec2FeatureExtractor).
#[derive(Debug, Clone, Deserialize)]
pub struct FeatureExtractorConfig {
    #[serde(default = "sixteen_k")]
    pub sampling_rate: u32,
    #[serde(default = "yes")]
    pub do_normalize: bool,
}

fn sixteen_k() -> u32 {
    16_000
}

fn yes() -> bool {
    true
}

impl FeatureExtractorConfig {
    /// input_values for one mono signal at `sampling_rate`: the samples, or
    /// with `do_normalize` (x - mean) / sqrt(var + 1e-7), the population
    /// variance, as the feature extractor computes it.
    pub fn input_values(&self, samples: &[f32]) -> Vec<f32> {
        if !self.do_normalize || samples.is_empty() {
            return samples.to_vec();
        }
        let n = samples.len() as f64;
        let mean = samples.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = samples.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // numpy works in float32 here: the statistics are rounded to it.
        let (mean, std) = (mean as f32, ((var as f32) + 1e-7).sqrt());
        samples.iter().map(|&x| (x - mean) / std).collect()
    }
}
