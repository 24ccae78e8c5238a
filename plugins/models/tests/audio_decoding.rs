//! Audio decoding against the speech-recognition references: for every
//! w2v2-base `__plain` case of references/asr.json (do_normalize=False, so
//! its recorded input_values are the float32 mono samples the pipeline saw),
//! `decode` (+ `resample` to 16 kHz) gives those samples: bit-exact for WAV
//! and FLAC, within f32 rounding for the scipy-resampled 22.05 kHz file, and
//! within a measured tolerance for MP3 / Ogg Vorbis, whose references come
//! from `lame --decode` / `oggdec` rather than symphonia. Files the pipeline
//! took leniently or failed on (truncated, empty) and other bad input are
//! refused with InvalidInput; run with --nocapture to read the messages.

use std::path::Path;

use inferd_models::audio::decode::{decode, Audio};
use inferd_models::audio::resample::resample;
use inferd_models::ModelError;

mod common;
use common::{fixtures, read_f32};

const RATE: u32 = 16000;
const MAX_SECONDS: f64 = 600.0;

/// Largest sample difference accepted for the lossy formats, against the
/// 16-bit PCM that lame / oggdec wrote (1 LSB = 1/32768 = 3.05e-5). Measured
/// with symphonia 0.5.5: Ogg Vorbis max 1.53e-5 (0.50 LSB: oggdec's rounding
/// to int16 and nothing else), MP3 max 3.50e-5 (1.15 LSB: the rounding plus
/// mpglib's and symphonia's float synthesis differing slightly), mean 7e-6
/// for both, same length. Two LSB leaves room for float differences in
/// another build while a real decoding error (a shift of even one sample, a
/// wrong gain, missing gapless trimming) is far above it: the speech's
/// sample-to-sample steps are ~100 LSB.
const LOSSY_TOLERANCE: f32 = 2.0 / 32768.0;

fn decode_at_16k(path: &Path) -> inferd_models::Result<Audio> {
    let audio = decode(&std::fs::read(path).unwrap(), MAX_SECONDS)?;
    Ok(if audio.sample_rate == RATE {
        audio
    } else {
        Audio {
            samples: resample(&audio.samples, audio.sample_rate, RATE),
            sample_rate: RATE,
        }
    })
}

fn refusal(result: inferd_models::Result<Audio>) -> String {
    match result {
        Err(ModelError::InvalidInput(message)) => message,
        Err(other) => panic!("expected InvalidInput, got {other}"),
        Ok(audio) => panic!("expected a refusal, got {} samples", audio.samples.len()),
    }
}

#[test]
fn decoded_samples_match_the_pipeline_inputs() {
    let root = fixtures();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/asr.json")).unwrap()).unwrap();
    let cases: Vec<&serde_json::Value> = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == "w2v2-base" && c["case"].as_str().unwrap().ends_with("__plain"))
        .collect();
    let mut compared = 0;
    let mut failures = Vec::new();
    for case in cases {
        let input = case["input"].as_str().unwrap();
        let result = decode_at_16k(&root.join(input));
        if case.get("pipeline_error").is_some() || case.get("header_frames").is_some() {
            // Empty / truncated: the pipeline failed or read leniently; decode refuses.
            eprintln!("{input}: refused: {}", refusal(result));
            continue;
        }
        let want = read_f32(&root.join("references").join(case["input_values"].as_str().unwrap()));
        let got = result.unwrap_or_else(|e| panic!("{input}: {e}")).samples;
        let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let mean_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / want.len() as f64;
        let (tolerance, kind) = if case.get("decoded_reference").is_some() {
            (LOSSY_TOLERANCE, "lossy")
        } else if case.get("resampled_with").is_some() {
            (1e-6, "resampled")
        } else {
            (0.0, "bit-exact")
        };
        eprintln!(
            "{input}: {} samples (reference {}), max abs difference {max_diff:e}, mean {mean_diff:.2e} ({kind}, tolerance {tolerance:e})",
            got.len(),
            want.len()
        );
        if got.len() != want.len() {
            failures.push(format!(
                "{input}: {} samples, the reference has {}",
                got.len(),
                want.len()
            ));
        } else if max_diff > tolerance {
            failures.push(format!("{input}: max abs difference {max_diff:e} > {tolerance:e}"));
        }
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} cases compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_audio_is_refused_with_a_reason() {
    let root = fixtures();
    let audio = |name: &str| std::fs::read(root.join("audio").join(name)).unwrap();
    let checks: [(&str, Vec<u8>, f64, &str); 7] = [
        (
            "a PNG image",
            std::fs::read(root.join("images/camera.png")).unwrap(),
            600.0,
            "PNG image",
        ),
        (
            "text",
            b"The quick brown fox jumps over the lazy dog.".to_vec(),
            600.0,
            "look like text",
        ),
        ("truncated WAV", audio("speech_16k_truncated.wav"), 600.0, "truncated"),
        (
            "WAV with no samples",
            audio("speech_empty.wav"),
            600.0,
            "no audio samples",
        ),
        ("2.9 s WAV, 1 s limit", audio("speech_16k.wav"), 1.0, "2.909 s long"),
        (
            "60 s WAV, 30 s limit",
            audio("speech_long_60s.wav"),
            30.0,
            "60.000 s long",
        ),
        ("empty bytes", Vec::new(), 600.0, "empty"),
    ];
    for (what, bytes, max_seconds, expected) in checks {
        let message = refusal(decode(&bytes, max_seconds));
        eprintln!("{what}: {message}");
        assert!(
            message.contains(expected),
            "{what}: {message:?} does not say {expected:?}"
        );
    }
    // The container's declared length is checked before decoding.
    for name in ["speech_16k.mp3", "speech_16k.ogg", "speech_16k.flac"] {
        let message = refusal(decode(&audio(name), 1.0));
        eprintln!("{name}, 1 s limit: {message}");
        assert!(
            message.contains("2.909 s long") && message.contains("limit of 1 s"),
            "{message}"
        );
    }
    // Cut in half: the MP3's LAME tag and the FLAC's STREAMINFO declare the length, an Ogg's last page
    // ends the stream.
    for name in ["speech_16k.mp3", "speech_16k.ogg", "speech_16k.flac"] {
        let bytes = audio(name);
        let message = refusal(decode(&bytes[..bytes.len() / 2], 600.0));
        eprintln!("{name}, first half: {message}");
        assert!(message.contains("truncated"), "{message}");
    }
}

#[test]
fn decoding_stops_at_the_limit_when_the_length_is_not_declared() {
    // The MP3 without its first frame (288 bytes), the Xing "Info" + LAME tag: symphonia only estimates
    // its length from the bitrate, so decoding goes on until the limit is passed and the length is then
    // counted from the packets left (83 frames of 576 samples, no gapless trimming without the tag).
    let bytes = std::fs::read(fixtures().join("audio/speech_16k.mp3")).unwrap();
    let untagged = &bytes[288..];
    assert_eq!(decode(untagged, 600.0).unwrap().samples.len(), 83 * 576);
    let message = refusal(decode(untagged, 1.0));
    eprintln!("MP3 without LAME tag, 1 s limit: {message}");
    assert!(message.contains("2.988 s long (47808 samples"), "{message}");
}

#[test]
fn resampling_60_s_of_22050_hz_is_fast() {
    let samples: Vec<f32> = (0..22050 * 60).map(|i| ((i as f32) * 0.01).sin() * 0.5).collect();
    let start = std::time::Instant::now();
    let out = resample(&samples, 22050, RATE);
    let elapsed = start.elapsed();
    eprintln!("resampled 60 s from 22050 to 16000 Hz in {elapsed:?}");
    assert_eq!(out.len(), RATE as usize * 60);
    assert!(elapsed.as_secs_f64() < 1.0, "{elapsed:?}");
}
