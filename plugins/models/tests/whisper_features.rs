//! WhisperFeatureExtractor against transformers: for every recorded signal
//! (speech, a tone, silence, 35 s cut to 30 s; 80 and 128 mel bins), the
//! log-mel features from the recorded preprocessor_config.json are within
//! 1e-4 of transformers'.

use std::time::Instant;

use inferd_models::audio::decode::decode;
use inferd_models::audio::whisper_features::WhisperFeatureExtractor;

mod common;
use common::{fixtures, read_f32};

#[test]
fn input_features_match_transformers_within_1e_4() {
    let root = fixtures();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/whisper_features.json")).unwrap()).unwrap();
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let extractor =
            WhisperFeatureExtractor::from_dir(&root.join(case["feature_extractor"].as_str().unwrap())).unwrap();
        let samples = input_samples(&root, &case["input"]);
        assert_eq!(
            samples.len() as u64,
            case["input_samples"].as_u64().unwrap(),
            "{name}: input samples"
        );

        let start = Instant::now();
        let got = extractor.input_features(&samples);
        let elapsed = start.elapsed();

        let want = read_f32(&root.join("references").join(case["features"].as_str().unwrap()));
        let cfg = &extractor.config;
        assert_eq!(
            [cfg.feature_size, cfg.nb_max_frames()],
            [
                case["shape"][0].as_u64().unwrap() as usize,
                case["shape"][1].as_u64().unwrap() as usize
            ],
            "{name}: shape"
        );
        assert_eq!(got.len(), want.len(), "{name}: number of features");
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!(
            "{name}: {} samples, max abs difference {diff:e}, computed in {:.1} ms",
            samples.len(),
            elapsed.as_secs_f64() * 1e3
        );
        assert!(diff < 1e-4, "{name}: features differ by {diff}");
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} cases compared");
}

/// The samples a case's `input` describes: a fixture audio file decoded as
/// the speech pipeline decodes it (its first `first_samples` if given), a
/// float32 file, or zeros.
fn input_samples(root: &std::path::Path, input: &serde_json::Value) -> Vec<f32> {
    if let Some(file) = input["file"].as_str() {
        let audio = decode(&std::fs::read(root.join(file)).unwrap(), 3600.0).unwrap();
        assert_eq!(audio.sample_rate, 16_000, "{file}");
        let keep = input["first_samples"]
            .as_u64()
            .map_or(audio.samples.len(), |n| n as usize);
        audio.samples[..keep].to_vec()
    } else if let Some(file) = input["samples"].as_str() {
        read_f32(&root.join("references").join(file))
    } else {
        vec![0.0; input["zeros"].as_u64().unwrap() as usize]
    }
}
