//! The Whisper network against transformers' `WhisperForConditionalGeneration`
//! on the random fixture model: the encoder states of two log-mel inputs,
//! and the decoder's logits when a prefix is fed one token per step through
//! `Seq2SeqLm::step` and the shared `DecoderState`, are within 1e-4.

mod common;

use inferd_models::audio::whisper::build;
use inferd_models::core::decoding::{DecoderState, Seq2SeqLm};
use inferd_models::core::weights::Checkpoint;
use tch::{nn::VarStore, Device, Tensor};

use common::{fixtures, read_f32};

const TOLERANCE: f64 = 1e-4;

/// The reference tensor `name` of the index, with its shape.
fn reference(index: &serde_json::Value, name: &str) -> Tensor {
    let entry = &index["files"][name];
    let shape: Vec<i64> = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect();
    let values = read_f32(&fixtures().join("references").join(entry["file"].as_str().unwrap()));
    Tensor::from_slice(&values).view(shape.as_slice())
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn encoder_states_and_stepwise_logits_match_transformers_within_1e_4() {
    let _guard = tch::no_grad_guard();
    let root = fixtures();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/whisper_model.json")).unwrap()).unwrap();
    let dir = root.join("models").join(index["model"].as_str().unwrap());
    let checkpoint = Checkpoint::open(&dir).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let model = build(vs.root(), &dir.join("config.json"), checkpoint.shapes()).unwrap();
    checkpoint.load_into(&mut vs).unwrap();

    let features = reference(&index, "features");
    let memory = model.encode(&features, None);
    let encoder_diff = max_abs_difference(&memory, &reference(&index, "encoder"));
    println!("encoder states: max abs difference {encoder_diff:.3e}");
    assert!(encoder_diff < TOLERANCE, "encoder states differ by {encoder_diff}");

    let want = reference(&index, "logits");
    let items = features.size()[0];
    let prefix: Vec<i64> = index["prefix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(prefix[0], model.decoder_start_token_id());
    let mut state = DecoderState::new(memory, None, 1, model.decoder_layers());
    for (step, &token) in prefix.iter().enumerate() {
        let tokens = vec![token; items as usize];
        let logits = model.step(&tokens, &mut state);
        let diff = max_abs_difference(&logits, &want.select(1, step as i64));
        println!("step {step}: logits max abs difference {diff:.3e}");
        assert!(diff < TOLERANCE, "step {step}: logits differ by {diff}");
    }
}
