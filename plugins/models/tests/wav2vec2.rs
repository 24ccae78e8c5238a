//! Wav2Vec2ForCTC against transformers: for every recorded 16 kHz case of
//! both fixture layouts (base with legacy weight-norm names, stable layer
//! norm with parametrization names), the logits of the recorded
//! input_values are within 1e-4 of transformers', and the feature
//! extractor's normalisation of the raw samples matches its input_values.

use inferd_models::auto::load_ctc_model;
use inferd_models::core::precision::Precision;

mod common;
use common::{fixtures, read_f32};

#[test]
fn logits_and_input_values_match_transformers() {
    let root = fixtures();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/asr.json")).unwrap()).unwrap();
    let mut compared = 0;
    let mut worst = 0f32;
    for model_name in ["w2v2-base", "w2v2-large-lv"] {
        let model = load_ctc_model(
            &root.join("models").join(model_name),
            tch::Device::Cpu,
            Precision::Float32,
        )
        .unwrap();
        for case in refs["cases"].as_array().unwrap() {
            let name = case["case"].as_str().unwrap();
            if case["model"] != model_name || !name.ends_with("__plain") || case.get("input_values").is_none() {
                continue;
            }
            let input_values = read_f32(&root.join("references").join(case["input_values"].as_str().unwrap()));
            let want = read_f32(&root.join("references").join(case["logits"].as_str().unwrap()));
            let logits = model.logits(&input_values).unwrap();
            let shape: Vec<i64> = case["logits_shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(logits.size(), shape, "{name}: logits shape");
            assert_eq!(model.net.frames(input_values.len() as i64), shape[0], "{name}: frames");
            let got = Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap();
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            worst = worst.max(diff);
            assert!(diff < 1e-4, "{name}: logits differ by {diff}");
            compared += 1;
        }
    }
    eprintln!("{compared} cases; worst logit difference {worst:e}");
    assert!(compared >= 20, "only {compared} cases compared");
}

#[test]
fn normalisation_matches_the_feature_extractor() {
    let root = fixtures();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/asr.json")).unwrap()).unwrap();
    let large = load_ctc_model(&root.join("models/w2v2-large-lv"), tch::Device::Cpu, Precision::Float32).unwrap();
    assert!(large.features.do_normalize);
    let cases = refs["cases"].as_array().unwrap();
    let mut compared = 0;
    for case in cases
        .iter()
        .filter(|c| c["model"] == "w2v2-large-lv" && c.get("input_values").is_some())
    {
        // The same input through the un-normalising model gives the raw samples.
        let raw_case = case["case"].as_str().unwrap().replace("w2v2-large-lv", "w2v2-base");
        let Some(raw) = cases.iter().find(|c| c["case"] == raw_case.as_str()) else {
            continue;
        };
        let samples = read_f32(&root.join("references").join(raw["input_values"].as_str().unwrap()));
        let want = read_f32(&root.join("references").join(case["input_values"].as_str().unwrap()));
        let got = large.features.input_values(&samples);
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{}: input_values differ by {diff}", case["case"]);
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} cases compared");
}

/// From the file to the logits: decoding, mixing down, resampling and
/// normalisation together. Lossless files at 16 kHz, and the 22.05 kHz file
/// (resampled like scipy's resample_poly, which made the reference, to the
/// bit), give transformers' logits within 1e-4. MP3 and Vorbis decoders
/// differ from lame's and oggdec's by up to about 1 step of 16-bit audio;
/// the fixture script measured how far half a step of noise moves each
/// model's logits (`logits_sensitivity_1lsb`), and these random models
/// amplify their input a lot, so lossy files are held to 4 times that.
#[test]
fn logits_from_audio_files_match_transformers() {
    use inferd_models::audio::{decode::decode, resample::resample};
    let root = fixtures();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/asr.json")).unwrap()).unwrap();
    let mut compared = 0;
    for model_name in ["w2v2-base", "w2v2-large-lv"] {
        let model = load_ctc_model(
            &root.join("models").join(model_name),
            tch::Device::Cpu,
            Precision::Float32,
        )
        .unwrap();
        for case in refs["cases"].as_array().unwrap() {
            let name = case["case"].as_str().unwrap();
            if case["model"] != model_name || !name.ends_with("__plain") || case.get("logits").is_none() {
                continue;
            }
            let input = case["input"].as_str().unwrap();
            if input.contains("truncated") {
                continue;
            }
            let audio = decode(&std::fs::read(root.join(input)).unwrap(), 3600.0).unwrap();
            let samples = resample(&audio.samples, audio.sample_rate, model.features.sampling_rate);
            let logits = model.logits(&model.features.input_values(&samples)).unwrap();
            let got = Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap();
            let want = read_f32(&root.join("references").join(case["logits"].as_str().unwrap()));
            assert_eq!(got.len(), want.len(), "{name}: logits size");
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let lossy = input.ends_with(".mp3") || input.ends_with(".ogg");
            let tolerance = if lossy {
                4.0 * case["logits_sensitivity_1lsb"].as_f64().unwrap() as f32
            } else {
                1e-4
            };
            eprintln!("{name}: max logit difference {diff:e} (tolerance {tolerance:e})");
            assert!(
                diff < tolerance,
                "{name}: logits differ by {diff}, more than {tolerance}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 20, "only {compared} cases compared");
}
