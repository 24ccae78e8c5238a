//! The vision and speech families in float16 and bfloat16 on the CPU
//! (LoadModel's options.dtype): each fixture model loads in the dtype
//! (its weights take half the bytes), computes in it, and gives back its
//! outputs in float32, as far from the float32 model's as transformers'
//! own 16-bit model strays from its float32 one on the same input
//! (references/half_precision.json, tests/fixtures/half_precision_fixtures.py):
//! at most twice that, plus a floor of a few units of the dtype's rounding.
//! Each deviation is relative to the float32 output's largest magnitude.

mod common;

use inferd_models::audio::speecht5::generate::SpeechSettings;
use inferd_models::auto::{
    load_ctc_model, load_depth_estimator, load_image_classifier, load_image_segmenter, load_object_detector,
    load_text_to_speech, load_whisper,
};
use inferd_models::core::precision::Precision;
use inferd_models::core::random::TorchGenerator;
use inferd_models::vision::image::{decode_rgb, stack, ImageProcessor};
use inferd_models::vision::segmenter::SegmenterOutput;
use tch::{Device, Kind, Tensor};

use common::{fixtures, reference};

const HALVES: [Precision; 2] = [Precision::Float16, Precision::BFloat16];

fn values(t: &Tensor) -> Vec<f32> {
    assert_eq!(t.kind(), Kind::Float, "outputs come back in float32");
    Vec::<f32>::try_from(t.reshape([-1])).unwrap()
}

/// The largest difference between `got` and `want`, relative to the
/// largest magnitude in `want`.
fn relative(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max) / scale
}

/// Output `i`'s bound for `name` in `precision`: twice transformers' own
/// deviation, plus 4 units of the dtype's rounding (2^-11 for float16,
/// 2^-8 for bfloat16).
fn bound(name: &str, precision: Precision, i: usize) -> f32 {
    let refs = reference("half_precision.json");
    let theirs = refs["cases"][name][precision.name()][i]
        .as_f64()
        .unwrap_or_else(|| panic!("no reference for {name} {precision:?} output {i}")) as f32;
    let unit = match precision {
        Precision::Float16 => 2f32.powi(-11),
        _ => 2f32.powi(-8),
    };
    2.0 * theirs + 4.0 * unit
}

fn model(name: &str) -> std::path::PathBuf {
    fixtures().join("models").join(name)
}

/// A photo as `processor` makes it, on the CPU.
fn photo(processor: &ImageProcessor) -> Tensor {
    let image = decode_rgb(&std::fs::read(fixtures().join("images/chelsea.png")).unwrap()).unwrap();
    stack(&[&processor.process(&image).unwrap()], Device::Cpu)
}

/// Runs `run` (the outputs of `name` loaded in a precision, and its
/// memory bytes) for float32 and each 16-bit dtype and checks each output
/// against float32's.
fn compare(name: &str, run: impl Fn(Precision) -> (Vec<Vec<f32>>, u64)) {
    let _guard = tch::no_grad_guard();
    let (want, float_bytes) = run(Precision::Float32);
    for precision in HALVES {
        let (got, bytes) = run(precision);
        assert!(
            bytes * 2 <= float_bytes + 1024,
            "{name} {precision:?}: {bytes} bytes against {float_bytes} in float32"
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let off = relative(g, w);
            let limit = bound(name, precision, i);
            eprintln!("{name} {precision:?} output {i}: {off:.2e} (bound {limit:.2e})");
            assert!(
                off <= limit,
                "{name} {precision:?} output {i}: off by {off} (bound {limit})"
            );
            // Computed in 16 bits, not quietly in float32.
            assert!(off > 0.0, "{name} {precision:?} output {i}: equal to float32's");
        }
    }
}

#[test]
fn image_classifiers_compute_in_16_bits_close_to_float32() {
    for name in ["vit-cls", "convnext-cls", "resnet-cls"] {
        compare(name, |precision| {
            let m = load_image_classifier(&model(name), Device::Cpu, precision).unwrap();
            (vec![values(&m.forward(&photo(&m.processor)))], m.memory_bytes)
        });
    }
}

#[test]
fn detectors_compute_in_16_bits_close_to_float32() {
    for name in ["detr-random", "detr-random-timm"] {
        compare(name, |precision| {
            let m = load_object_detector(&model(name), Device::Cpu, precision).unwrap();
            let out = m.forward(&photo(&m.processor), None);
            (vec![values(&out.logits), values(&out.boxes)], m.memory_bytes)
        });
    }
}

#[test]
fn depth_estimators_compute_in_16_bits_close_to_float32() {
    for name in ["glpn-random", "dpt-random"] {
        compare(name, |precision| {
            let m = load_depth_estimator(&model(name), Device::Cpu, precision).unwrap();
            (vec![values(&m.forward(&photo(&m.processor)))], m.memory_bytes)
        });
    }
}

#[test]
fn segmenters_compute_in_16_bits_close_to_float32() {
    for name in ["segformer-random", "mask2former-random", "detr-panoptic-random"] {
        compare(name, |precision| {
            let m = load_image_segmenter(&model(name), Device::Cpu, precision).unwrap();
            let outputs = match m.forward(&photo(&m.processor)) {
                SegmenterOutput::Semantic(logits) => vec![values(&logits)],
                SegmenterOutput::Queries { classes, masks, .. } => vec![values(&classes), values(&masks)],
            };
            (outputs, m.memory_bytes)
        });
    }
}

/// One second of a tone and its octave, as a speech model's input (the
/// fixture script's).
fn tone() -> Vec<f32> {
    (0..16000)
        .map(|i| {
            let t = i as f32 / 16000.0;
            0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin() + 0.2 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
        })
        .collect()
}

#[test]
fn speech_models_compute_in_16_bits_close_to_float32() {
    compare("w2v2-base", |precision| {
        let m = load_ctc_model(&model("w2v2-base"), Device::Cpu, precision).unwrap();
        (vec![values(&m.logits(&tone()).unwrap())], m.memory_bytes)
    });
    compare("whisper-tiny.en", |precision| {
        let m = load_whisper(&model("whisper-tiny.en"), Device::Cpu, precision).unwrap();
        let mels = m.net.config.num_mel_bins;
        let features = Tensor::from_slice(&m.features.input_features(&tone())).view([1, mels, -1]);
        let states = m.net.encode_features(&features);
        (vec![values(&states.to_kind(Kind::Float))], m.memory_bytes)
    });
}

#[test]
fn text_to_speech_computes_in_16_bits_close_to_float32() {
    compare("speecht5-nostop", |precision| {
        let m = load_text_to_speech(
            &model("speecht5-nostop"),
            &model("hifigan-random"),
            Device::Cpu,
            precision,
        )
        .unwrap();
        let ids = m.tokenizer.encode("Hello there.", false).unwrap();
        let speaker = m.speakers["alice"].clone();
        let rng = TorchGenerator::manual_seed(3);
        let spoken = m
            .speak(&[ids], &[speaker], SpeechSettings::default(), rng, &mut || false)
            .unwrap();
        let waves = m.vocode(&[&spoken[0].spectrogram]);
        (vec![values(&spoken[0].spectrogram), waves[0].clone()], m.memory_bytes)
    });
}
