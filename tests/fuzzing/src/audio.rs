//! `audio`: what Transcribe does to the bytes of an audio file before the
//! model: decoding (WAV, FLAC, MP3, Ogg Vorbis) with a length limit, mixed
//! down to mono, then resampling to the model's rate. Decoded audio has
//! samples, an accepted rate, and no more samples than the limit allows;
//! resampled audio has the length scipy's resample_poly gives.

use inferd_models::audio::decode::{decode, SAMPLE_RATES};
use inferd_models::audio::resample::resample;
use inferd_models::ModelError;

/// The longest audio decoded, in seconds (the plugin's default is an hour).
const MAX_SECONDS: f64 = 4.0;

/// The rate Wav2Vec2 models take.
const MODEL_RATE: u32 = 16_000;

/// Resampling is checked for rates whose reduced ratio to the model's
/// (44.1 kHz is 441/160) has terms up to this: the filter grows with them,
/// and an odd rate near 384 kHz takes a second to design (bounded by
/// SAMPLE_RATES, and slow for a fuzzer rather than for a request).
const MAX_RATIO_TERM: usize = 1_000;

pub fn audio(data: &[u8]) {
    let audio = match decode(data, MAX_SECONDS) {
        Ok(audio) => audio,
        Err(e) => return assert!(matches!(e, ModelError::InvalidInput(_)), "{e}"),
    };
    let rate = audio.sample_rate;
    assert!(SAMPLE_RATES.contains(&rate), "decoded at {rate} Hz");
    assert!(!audio.samples.is_empty(), "decoded without samples");
    assert!(
        audio.samples.len() as f64 <= MAX_SECONDS * rate as f64,
        "{} samples at {rate} Hz passed the {MAX_SECONDS} s limit",
        audio.samples.len()
    );
    let common = gcd(rate, MODEL_RATE) as usize;
    let (up, down) = (MODEL_RATE as usize / common, rate as usize / common);
    if up.max(down) > MAX_RATIO_TERM {
        return;
    }
    let resampled = resample(&audio.samples, rate, MODEL_RATE);
    assert_eq!(
        resampled.len(),
        (audio.samples.len() * up).div_ceil(down),
        "{rate} Hz to {MODEL_RATE} Hz"
    );
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
