//! Whisper's `generate` against transformers' on the random fixture models
//! (tests/fixtures/whisper_pipeline_fixtures.py): for every recorded
//! pipeline() case on whole audio (not chunked), the
//! features of each file are within 1e-4 of the pipeline's, and the token
//! ids `transcribe` gives (all the case's files decoded together) are
//! exactly the ones `generate` returned: prompts, language detection,
//! suppressed tokens, timestamp rules, greedy and beam search, and the
//! long-form windows; with word timestamps, each token's time too. Inputs
//! that join a running transcription (continuous batching) get the
//! transcripts they get alone.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use inferd_models::audio::decode::decode;
use inferd_models::audio::resample::resample;
use inferd_models::audio::whisper_generate::{plan, transcribe, transcribe_joined, Audio, AudioInput, WhisperOptions};
use inferd_models::auto::{load_whisper, WhisperModel};
use inferd_models::core::precision::Precision;
use serde_json::Value;
use tch::{Device, Tensor};

use common::fixtures;

/// What a case's pipeline kwargs ask of Whisper.
fn options(kwargs: &Value) -> WhisperOptions {
    let generate = &kwargs["generate_kwargs"];
    let mut options = WhisperOptions {
        language: generate["language"].as_str().map(String::from),
        task: generate["task"].as_str().map(String::from),
        timestamps: kwargs["return_timestamps"] == Value::Bool(true),
        words: kwargs["return_timestamps"] == "word",
        ..Default::default()
    };
    options.settings.num_beams = generate["num_beams"].as_u64().map(|n| n as usize);
    options.settings.max_new_tokens = generate["max_new_tokens"].as_u64().map(|n| n as usize);
    options
}

/// The log-mel features of a fixture audio file, as the pipeline makes them.
/// The daemon refuses a truncated WAV file; the pipeline was given the
/// samples it holds, the first 20000 of speech_16k.wav.
/// With the number of frames holding audio (the pipeline's `num_frames`).
fn features(model: &WhisperModel, file: &str) -> (Tensor, i64) {
    let truncated = file == "speech_16k_truncated.wav";
    let read = if truncated { "speech_16k.wav" } else { file };
    let bytes = std::fs::read(fixtures().join("audio").join(read)).unwrap();
    let mut audio = decode(&bytes, 3600.0).unwrap();
    if truncated {
        audio.samples.truncate(20_000);
    }
    let rate = model.features.config.sampling_rate;
    let samples = resample(&audio.samples, audio.sample_rate, rate);
    let values = model.features.long_input_features(&samples);
    let mels = model.features.config.feature_size as i64;
    let frames = values.len() as i64 / mels;
    let num_frames = (samples.len() / model.features.config.hop_length) as i64;
    (Tensor::from_slice(&values).view([mels, frames]), num_frames)
}

/// A reference sequence without the padding after it (EOS, as
/// `_pad_to_max_length` pads).
fn unpadded(sequence: &Value, pad: i64) -> Vec<i64> {
    let mut ids: Vec<i64> = sequence
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    while ids.last() == Some(&pad) {
        ids.pop();
    }
    ids
}

#[test]
fn token_ids_equal_whisper_generate() {
    let refs: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("references/whisper_pipeline.json")).unwrap())
            .unwrap();
    let mut models: HashMap<String, WhisperModel> = HashMap::new();
    let mut compared = 0;
    let mut timed = 0;
    let mut failures = Vec::new();
    for case in refs["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let kwargs = &case["kwargs"];
        if case.get("error").is_some() || kwargs.get("chunk_length_s").is_some() {
            continue;
        }
        let name = case["model"].as_str().unwrap();
        let model = models.entry(name.to_string()).or_insert_with(|| {
            load_whisper(&fixtures().join("models").join(name), Device::Cpu, Precision::Float32).unwrap()
        });
        let files: Vec<&str> = case["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let calls = case["generate_calls"].as_array().unwrap();
        let (features, num_frames): (Vec<Tensor>, Vec<i64>) = files.iter().map(|f| features(model, f)).unzip();
        // The features the pipeline gave generate (its first values).
        for (b, head) in calls[0]["input_features_head"].as_array().unwrap().iter().enumerate() {
            let want: Vec<f64> = head.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let got = Vec::<f64>::try_from(features[b].get(0).narrow(0, 0, want.len() as i64)).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-4,
                    "{id}: features of {} differ: {got:?} vs {want:?}",
                    files[b]
                );
            }
        }
        let mut options = options(kwargs);
        // Over 30 s, generate turns timestamps on itself.
        if features.iter().any(|f| f.size()[1] > 3000) {
            options.timestamps = true;
        }
        let plan = plan(
            &model.generation,
            &options,
            model.net.config.max_target_positions as usize,
        )
        .unwrap();
        let audio: Vec<Audio> = features
            .iter()
            .zip(&num_frames)
            .map(|(f, &num_frames)| Audio {
                features: f,
                plan: &plan,
                num_frames,
            })
            .collect();
        let transcripts = transcribe(&model.net, &model.generation, &audio, &mut |_: usize| true);
        let pad = model.generation.settings.pad_token_id.unwrap();
        let want: Vec<Vec<i64>> = calls[0]["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| unpadded(s, pad))
            .collect();
        for (b, transcript) in transcripts.iter().enumerate() {
            let got = transcript.tokens();
            if got != want[b] {
                let agree = got.iter().zip(&want[b]).take_while(|(g, w)| g == w).count();
                failures.push(format!(
                    "{id} [{}]: tokens differ from position {agree}: got {:?}, want {:?}",
                    files[b],
                    &got[agree.saturating_sub(2)..(agree + 6).min(got.len())],
                    &want[b][agree.saturating_sub(2)..(agree + 6).min(want[b].len())]
                ));
            }
            if let Some(times) = calls[0].get("token_timestamps") {
                // Word timestamps: each token's time, within f32 rounding,
                // in the first window (where the audio is). Later windows
                // of these random models look past the audio, at padding
                // whose encoder states are all alike: the alignment
                // heads' attention there is flat, its standardisation
                // over the tokens divides by a deviation near 0, and the
                // time warping's path follows float noise. (The real
                // model's words are compared exactly in the e2e tests.)
                // generate's token_timestamps are each window's own; the
                // segments' are moved to the window's place in the audio.
                let want: Vec<f64> = times[b]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_f64().unwrap())
                    .collect();
                let first: Vec<f32> = transcript
                    .segments
                    .iter()
                    .filter(|s| s.offset == 0.0)
                    .flat_map(|s| s.token_times.iter().copied())
                    .collect();
                assert!(first.len() > 10, "{id}: {} tokens in the first window", first.len());
                if let Some(at) = first.iter().zip(&want).position(|(g, w)| (*g as f64 - w).abs() > 1e-4) {
                    failures.push(format!(
                        "{id} [{}]: token {at} of the first window is at {} s, generate says {} s",
                        files[b], first[at], want[at]
                    ));
                }
                timed += 1;
            }
            compared += 1;
        }
    }
    println!("{timed} with word timestamps");
    assert!(
        failures.is_empty(),
        "{} of {compared}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{compared} transcripts equal to generate's token ids");
    assert!(compared >= 40, "only {compared} transcripts compared");
}

#[test]
fn inputs_joining_a_running_transcription_get_what_they_get_alone() {
    let refs: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("references/whisper_pipeline.json")).unwrap())
            .unwrap();
    let mut models: HashMap<String, WhisperModel> = HashMap::new();
    // Every case's files, with its plan, per model: other prompts, beams,
    // word timestamps and long audio side by side.
    let mut inputs: HashMap<String, Vec<AudioInput>> = HashMap::new();
    for case in refs["cases"].as_array().unwrap() {
        let kwargs = &case["kwargs"];
        if case.get("error").is_some() || kwargs.get("chunk_length_s").is_some() {
            continue;
        }
        let name = case["model"].as_str().unwrap();
        let model = models.entry(name.to_string()).or_insert_with(|| {
            load_whisper(&fixtures().join("models").join(name), Device::Cpu, Precision::Float32).unwrap()
        });
        let files: Vec<(Tensor, i64)> = case["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| features(model, f.as_str().unwrap()))
            .collect();
        let mut options = options(kwargs);
        if files.iter().any(|(f, _)| f.size()[1] > 3000) {
            options.timestamps = true;
        }
        let plan = Arc::new(
            plan(
                &model.generation,
                &options,
                model.net.config.max_target_positions as usize,
            )
            .unwrap(),
        );
        for (features, num_frames) in files {
            inputs.entry(name.to_string()).or_default().push(AudioInput {
                features,
                plan: Arc::clone(&plan),
                num_frames,
            });
        }
    }
    let mut compared = 0;
    for (name, inputs) in &inputs {
        let model = &models[name];
        let alone: Vec<_> = inputs
            .iter()
            .map(|a| {
                let audio = Audio {
                    features: &a.features,
                    plan: &a.plan,
                    num_frames: a.num_frames,
                };
                transcribe(&model.net, &model.generation, &[audio], &mut |_: usize| true).remove(0)
            })
            .collect();
        // One input arrives every third step.
        let mut step = 0;
        let mut got = vec![None; inputs.len()];
        transcribe_joined(
            &model.net,
            &model.generation,
            64,
            &mut |_| {
                step += 1;
                let k = (step - 1) / 3;
                if (step - 1) % 3 == 0 && k < inputs.len() {
                    let a = &inputs[k];
                    vec![AudioInput {
                        features: a.features.shallow_clone(),
                        plan: Arc::clone(&a.plan),
                        num_frames: a.num_frames,
                    }]
                } else {
                    vec![]
                }
            },
            &mut |_: usize| true,
            &mut |i, transcript| got[i] = Some(transcript),
        );
        assert!(step > 3 * inputs.len(), "{name}: every input arrived while others ran");
        for (k, (got, want)) in got.iter().zip(&alone).enumerate() {
            assert_eq!(got.as_ref(), Some(want), "{name}: input {k}");
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} inputs");
}
