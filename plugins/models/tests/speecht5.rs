//! SpeechT5 text to speech against transformers
//! (tests/fixtures/speecht5_fixtures.py): PyTorch's CPU random stream
//! (`torch.manual_seed` then `torch.bernoulli`), SpeechT5Tokenizer with and
//! without number spelling, EnglishNumberNormalizer, and `generate` on a
//! small random SpeechT5ForTextToSpeech with a random HiFi-GAN: the same
//! stop steps, spectrograms and waveforms within 1e-4, for single texts,
//! batches, early and late stops, thresholds and length ratios. Requests
//! that join a running decode (continuous batching) get what they get
//! alone, and leave it as soon as they are done or stopped.

mod common;

use std::path::PathBuf;

use inferd_models::audio::speecht5::generate::{generate_speech_joined, SpeechSettings};
use inferd_models::auto::load_text_to_speech;
use inferd_models::core::precision::Precision;
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
        let model = models.entry(name.to_string()).or_insert_with(|| {
            load_text_to_speech(&model_dir(name), &vocoder, Device::Cpu, Precision::Float32).unwrap()
        });
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
        let rng = TorchGenerator::manual_seed(case["seed"].as_u64().unwrap());
        let spoken = model.speak(&texts, &speakers, settings, rng, &mut || false).unwrap();
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
    let model = load_text_to_speech(&model_dir("speecht5-nostop"), &vocoder, Device::Cpu, Precision::Float32).unwrap();
    let ids = model.tokenizer.encode("Hello there.", false).unwrap();
    let speaker = model.speakers["alice"].clone();
    let mut steps = 0;
    let rng = TorchGenerator::manual_seed(3);
    let spoken = model.speak(&[ids], &[speaker], SpeechSettings::default(), rng, &mut || {
        steps += 1;
        steps == 4
    });
    assert!(spoken.is_none());
    assert_eq!(steps, 4);
}

#[test]
fn requests_joining_a_running_decode_speak_as_they_do_alone() {
    let vocoder = model_dir("hifigan-random");
    let model = load_text_to_speech(&model_dir("speecht5-random"), &vocoder, Device::Cpu, Precision::Float32).unwrap();
    let alice = model.speakers["alice"].clone();
    let encode = |text: &str| model.tokenizer.encode(text, false).unwrap();
    let late = SpeechSettings {
        threshold: 0.9,
        minlenratio: 1.0,
        maxlenratio: 3.0,
    };
    // (arrives at iteration, texts, settings, seed): one and two texts,
    // other settings and seeds, joining a decode that has moved on.
    let schedule: Vec<(usize, Vec<&str>, SpeechSettings, u64)> = vec![
        (
            0,
            vec!["The first request, a long sentence to keep the decode busy."],
            late,
            1,
        ),
        (0, vec!["Hi."], SpeechSettings::default(), 2),
        (
            2,
            vec!["Two texts", "in one request, padded to the longest."],
            SpeechSettings::default(),
            3,
        ),
        (5, vec!["A late one."], late, 4),
        (5, vec!["Stopped."], late, 5),
    ];
    let request = |k: usize| {
        let (_, texts, settings, seed) = &schedule[k];
        let ids: Vec<Vec<i64>> = texts.iter().map(|t| encode(t)).collect();
        let speakers = vec![alice.clone(); ids.len()];
        model.request(&ids, &speakers, *settings, TorchGenerator::manual_seed(*seed))
    };
    let mut iteration = 0;
    let mut rows = Vec::new();
    let mut spoken: Vec<Option<Option<Vec<_>>>> = (0..schedule.len()).map(|_| None).collect();
    let mut finished_at = vec![0; schedule.len()];
    let mut asked_stopped = 0;
    let at = std::cell::Cell::new(0);
    generate_speech_joined(
        &model.net,
        &mut |running| {
            rows.push(running);
            at.set(iteration);
            let arriving = (0..schedule.len())
                .filter(|&k| schedule[k].0 == iteration)
                .map(request)
                .collect();
            iteration += 1;
            arriving
        },
        &mut |k| {
            if k == 4 {
                asked_stopped += 1;
                return asked_stopped < 3;
            }
            true
        },
        &mut |k, speech| {
            assert!(spoken[k].is_none(), "request {k} finished twice");
            spoken[k] = Some(speech);
            finished_at[k] = at.get();
        },
    );
    for (k, got) in spoken.iter().enumerate() {
        let got = got.as_ref().unwrap_or_else(|| panic!("request {k} never finished"));
        if k == 4 {
            assert!(got.is_none(), "the stopped request gives nothing");
            continue;
        }
        let (_, texts, settings, seed) = &schedule[k];
        let ids: Vec<Vec<i64>> = texts.iter().map(|t| encode(t)).collect();
        let alone = model
            .speak(
                &ids,
                &vec![alice.clone(); ids.len()],
                *settings,
                TorchGenerator::manual_seed(*seed),
                &mut || false,
            )
            .unwrap();
        let got = got.as_ref().unwrap();
        assert_eq!(got.len(), alone.len());
        for (t, (g, a)) in got.iter().zip(&alone).enumerate() {
            assert_eq!(g.steps, a.steps, "request {k} text {t}: steps");
            let d = (&g.spectrogram - &a.spectrogram).abs().max().double_value(&[]);
            assert!(d <= 1e-4, "request {k} text {t}: spectrogram off by {d}");
        }
    }
    // The rows decoding before each iteration are the texts not done yet:
    // a text takes two steps in the iteration it arrives in (its first on
    // its own, then one with the others) and one in each after, and leaves
    // in the iteration of its last step.
    let mut last_step: Vec<Vec<usize>> = Vec::new();
    for (k, got) in spoken.iter().enumerate() {
        let arrived = schedule[k].0;
        last_step.push(match got.as_ref().unwrap() {
            Some(speech) => speech
                .iter()
                .map(|s| (arrived + s.steps as usize).saturating_sub(2))
                .collect(),
            None => vec![finished_at[k]],
        });
    }
    for (k, &r) in rows.iter().enumerate() {
        let want: usize = (0..schedule.len())
            .map(|i| {
                last_step[i]
                    .iter()
                    .filter(|&&end| schedule[i].0 < k && k <= end)
                    .count()
            })
            .sum();
        assert_eq!(r, want, "iteration {k}: rows {rows:?}, last steps {last_step:?}");
    }
    assert_eq!(finished_at[4], 6, "stopped after its second step");
}
