//! SpeechT5 text to speech against transformers
//! (tests/fixtures/speecht5_fixtures.py): PyTorch's CPU random stream
//! (`torch.manual_seed` then `torch.bernoulli`), SpeechT5Tokenizer with and
//! without number spelling, EnglishNumberNormalizer, and `generate` on a
//! small random SpeechT5ForTextToSpeech with a random HiFi-GAN: the same
//! stop steps, spectrograms and waveforms within 1e-4, for single texts,
//! batches, early and late stops, thresholds and length ratios.

mod common;

use std::path::PathBuf;

use inferd_models::audio::speecht5::generate::SpeechSettings;
use inferd_models::auto::load_text_to_speech;
use inferd_models::core::random::TorchGenerator;
use inferd_models::text::numbers::normalize_numbers;
use inferd_models::text::speecht5_tokenizer::SpeechT5Tokenizer;
use serde_json::Value;
use tch::Device;

use common::{fixtures, read_f32, reference, shape};

fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

fn ids(value: &Value) -> Vec<i64> {
    value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

#[test]
fn bernoulli_draws_equal_torch() {
    let refs: Value = reference("speecht5_rng.json");
    let mut draws = 0;
    for case in refs["cases"].as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap();
        let mut rng = TorchGenerator::manual_seed(seed);
        for draw in case["draws"].as_array().unwrap() {
            let p = draw["p"].as_f64().unwrap();
            let want: Vec<i64> = draw["values"].as_array().unwrap().iter().flat_map(ids).collect();
            let got: Vec<i64> = want.iter().map(|_| i64::from(rng.bernoulli(p))).collect();
            assert_eq!(got, want, "seed {seed}, draw {draws}");
            draws += 1;
        }
    }
    assert!(draws >= 20, "only {draws} draws");
}

#[test]
fn tokenizer_and_number_normalizer_equal_transformers() {
    let refs: Value = reference("speecht5_text.json");
    let tokenizer = SpeechT5Tokenizer::from_dir(&model_dir("speecht5-random")).unwrap();
    assert!(!tokenizer.normalize);
    let cases = refs["cases"].as_array().unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(text, false).unwrap(),
            ids(&case["input_ids"]),
            "{text:?}"
        );
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            ids(&case["input_ids_normalized"]),
            "{text:?} normalised"
        );
    }
    let numbers = refs["number_normalizer"].as_array().unwrap();
    for case in numbers {
        let input = case["input"].as_str().unwrap();
        match case.get("error") {
            Some(_) => assert!(normalize_numbers(input).is_err(), "{input:?} should be refused"),
            None => assert_eq!(
                normalize_numbers(input).unwrap(),
                case["output"].as_str().unwrap(),
                "{input:?}"
            ),
        }
    }
    assert!(cases.len() >= 30 && numbers.len() >= 60);
}

/// The largest difference between `got` and `want`.
fn off(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max)
}

#[test]
fn generated_speech_equals_transformers() {
    let refs: Value = reference("speecht5.json");
    let vocoder = fixtures().join(refs["vocoder"]["dir"].as_str().unwrap());
    let dir = fixtures().join("references");
    let mut models = std::collections::BTreeMap::new();
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let what = case["case"].as_str().unwrap();
        let name = case["model"].as_str().unwrap();
        let model = models
            .entry(name.to_string())
            .or_insert_with(|| load_text_to_speech(&model_dir(name), &vocoder, Device::Cpu).unwrap());
        // The ids without their padding (speak() pads them again).
        let texts: Vec<Vec<i64>> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["attention_mask"].as_array().unwrap())
            .map(|(t, m)| {
                ids(t)
                    .into_iter()
                    .zip(ids(m))
                    .filter(|(_, m)| *m == 1)
                    .map(|(t, _)| t)
                    .collect()
            })
            .collect();
        let normalize = case["normalize"].as_bool().unwrap();
        for (text, want) in case["texts"].as_array().unwrap().iter().zip(&texts) {
            let got = model.tokenizer.encode(text.as_str().unwrap(), normalize).unwrap();
            assert_eq!(&got, want, "{what}: tokens");
        }
        let rows: Vec<Vec<f32>> = case["speaker_embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect();
        if let Some(file) = case["speaker"].as_str() {
            let stem = file.split('.').next().unwrap();
            let shipped = &model.speakers[stem];
            assert!(off(shipped, &rows[0]) == 0.0, "{what}: speaker {stem}");
        }
        let speakers: Vec<Vec<f32>> = (0..texts.len()).map(|i| rows[i.min(rows.len() - 1)].clone()).collect();
        let settings = SpeechSettings {
            threshold: case["threshold"].as_f64().unwrap(),
            minlenratio: case["minlenratio"].as_f64().unwrap(),
            maxlenratio: case["maxlenratio"].as_f64().unwrap(),
        };
        let mut rng = TorchGenerator::manual_seed(case["seed"].as_u64().unwrap());
        let spoken = model
            .speak(&texts, &speakers, settings, &mut rng, &mut || false)
            .unwrap();
        let waves = model.vocode(&spoken.iter().map(|s| &s.spectrogram).collect::<Vec<_>>());

        let mels = model.net.config.num_mel_bins as usize;
        let spectrograms = read_f32(&dir.join(case["spectrogram"].as_str().unwrap()));
        let padded_frames = shape(&case["spectrogram_shape"])[1] as usize;
        let waveforms = read_f32(&dir.join(case["waveform"].as_str().unwrap()));
        let padded_samples = shape(&case["waveform_shape"])[1] as usize;
        for (i, speech) in spoken.iter().enumerate() {
            assert_eq!(
                speech.steps,
                case["stop_steps"][i].as_i64().unwrap(),
                "{what}: text {i} stop step"
            );
            let frames = case["spectrogram_lengths"][i].as_u64().unwrap() as usize;
            let got = Vec::<f32>::try_from(speech.spectrogram.flatten(0, -1)).unwrap();
            let start = i * padded_frames * mels;
            let want = &spectrograms[start..start + frames * mels];
            let d = off(&got, want);
            assert!(d <= 1e-4, "{what}: text {i} spectrogram off by {d}");
            let samples = case["waveform_lengths"][i].as_u64().unwrap() as usize;
            let start = i * padded_samples;
            let d = off(&waves[i], &waveforms[start..start + samples]);
            assert!(d <= 1e-4, "{what}: text {i} waveform off by {d}");
        }
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} cases");
}

#[test]
fn a_cancelled_generation_stops() {
    let vocoder = model_dir("hifigan-random");
    let model = load_text_to_speech(&model_dir("speecht5-nostop"), &vocoder, Device::Cpu).unwrap();
    let ids = model.tokenizer.encode("Hello there.", false).unwrap();
    let speaker = model.speakers["alice"].clone();
    let mut steps = 0;
    let mut rng = TorchGenerator::manual_seed(3);
    let spoken = model.speak(&[ids], &[speaker], SpeechSettings::default(), &mut rng, &mut || {
        steps += 1;
        steps == 4
    });
    assert!(spoken.is_none());
    assert_eq!(steps, 4);
}
