//! transformers' WhisperFeatureExtractor: the log-mel spectrogram that
//! Whisper's encoder reads, from preprocessor_config.json.
//!
//! With torch installed, `WhisperFeatureExtractor.__call__` takes
//! `_torch_extract_fbank_features`: the signal padded or cut to
//! `chunk_length` seconds, `torch.stft` (centred, reflect padding, periodic
//! Hann window), the power spectrum through Slaney mel filters, log10 of it
//! floored at 1e-10, then clamped to 8 below its maximum and mapped by
//! (x + 4) / 4; the last STFT frame is dropped. Torch does this in f32; we
//! do it in f64 (the mel filters rounded to f32, as torch receives them),
//! which lands within about 3e-5 of it on speech, after the scaling.

use std::f64::consts::PI;
use std::ops::{Add, Mul, Sub};
use std::path::Path;

use serde::Deserialize;

use crate::core::config::{is_present, read_json};
use crate::{ModelError, Result};

/// preprocessor_config.json (WhisperFeatureExtractor), with its defaults.
/// `n_samples` and `nb_max_frames`, which the file also holds, are derived
/// from the fields here, as transformers' `__init__` does. `dither` is not
/// read: transformers' default 0 adds no noise, and noise is not a feature
/// to reproduce.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WhisperFeatureConfig {
    /// Mel bins: 80, or 128 from large-v3 on.
    pub feature_size: usize,
    pub sampling_rate: u32,
    pub hop_length: usize,
    /// Seconds of audio in one input.
    pub chunk_length: usize,
    pub n_fft: usize,
    pub padding_value: f32,
}

impl Default for WhisperFeatureConfig {
    fn default() -> Self {
        WhisperFeatureConfig {
            feature_size: 80,
            sampling_rate: 16_000,
            hop_length: 160,
            chunk_length: 30,
            n_fft: 400,
            padding_value: 0.0,
        }
    }
}

impl WhisperFeatureConfig {
    /// preprocessor_config.json of `dir`: without it the mel size is
    /// unknown (80 or 128), so its absence is an error.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        if !is_present(&path) {
            return Err(ModelError::MissingFile {
                dir: dir.to_path_buf(),
                what: "preprocessor_config.json".into(),
                expected: "the WhisperFeatureExtractor configuration saved with the model".into(),
            });
        }
        let config: Self = read_json(&path)?;
        config.check().map_err(|message| ModelError::bad_file(&path, message))?;
        Ok(config)
    }

    /// Samples in one input: `chunk_length` seconds.
    pub fn n_samples(&self) -> usize {
        self.chunk_length * self.sampling_rate as usize
    }

    /// Feature frames in one input.
    pub fn nb_max_frames(&self) -> usize {
        self.n_samples() / self.hop_length
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.feature_size == 0 || self.hop_length == 0 || self.sampling_rate == 0 {
            return Err("feature_size, hop_length and sampling_rate must be positive".into());
        }
        // The real FFT below packs the frame into a complex one of half the
        // size; every Whisper checkpoint has n_fft 400.
        if self.n_fft < 2 || !self.n_fft.is_multiple_of(2) {
            return Err(format!("n_fft {} is not an even number of samples", self.n_fft));
        }
        // torch.stft's reflect padding needs more samples than it pads with.
        if self.n_samples() <= self.n_fft / 2 {
            return Err(format!(
                "chunk_length {} s at {} Hz is shorter than half of n_fft {}",
                self.chunk_length, self.sampling_rate, self.n_fft
            ));
        }
        Ok(())
    }
}

/// The feature extractor: its configuration, with the window, the FFT and
/// the mel filters computed once.
#[derive(Debug, Clone)]
pub struct WhisperFeatureExtractor {
    pub config: WhisperFeatureConfig,
    /// torch.hann_window(n_fft), periodic: 0.5 - 0.5 cos(2 pi k / n_fft).
    window: Vec<f64>,
    fft: RealFft,
    mel_filters: Vec<MelFilter>,
}

impl WhisperFeatureExtractor {
    /// # Panics
    /// If `config` is one that [`WhisperFeatureConfig::from_dir`] refuses.
    pub fn new(config: WhisperFeatureConfig) -> Self {
        if let Err(message) = config.check() {
            panic!("WhisperFeatureConfig: {message}");
        }
        let n_fft = config.n_fft;
        let window = (0..n_fft)
            .map(|k| 0.5 - 0.5 * (2.0 * PI * k as f64 / n_fft as f64).cos())
            .collect();
        let mel_filters = mel_filter_bank(n_fft / 2 + 1, config.feature_size, config.sampling_rate);
        WhisperFeatureExtractor {
            window,
            fft: RealFft::new(n_fft),
            mel_filters,
            config,
        }
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        WhisperFeatureConfig::from_dir(dir).map(Self::new)
    }

    /// input_features for one mono signal at `sampling_rate`:
    /// [feature_size, nb_max_frames] row-major. As the extractor does with
    /// its default padding="max_length" and truncation=True, the signal is
    /// first cut to its first `n_samples` (30 s) or padded after its end
    /// with `padding_value` up to them; what lies past 30 s is dropped
    /// here, splitting longer audio into chunks is the caller's business.
    pub fn input_features(&self, samples: &[f32]) -> Vec<f32> {
        let cfg = &self.config;
        let n_samples = cfg.n_samples();
        let mut signal = samples[..samples.len().min(n_samples)].to_vec();
        signal.resize(n_samples, cfg.padding_value);
        self.log_mel(&signal)
    }

    /// input_features for one signal longer than 30 s, whole, as the
    /// pipeline asks for them for long-form decoding (padding="longest",
    /// truncation=False): [feature_size, samples / hop_length] row-major,
    /// the clamp at the maximum less 8 taken over all of it.
    pub fn long_input_features(&self, samples: &[f32]) -> Vec<f32> {
        if samples.len() <= self.config.n_samples() {
            return self.input_features(samples);
        }
        self.log_mel(samples)
    }

    /// The log-mel spectrogram of `signal`: one frame per hop (torch.stft's
    /// last frame dropped), log10, clamped at the maximum less 8, (x+4)/4.
    fn log_mel(&self, signal: &[f32]) -> Vec<f32> {
        let cfg = &self.config;
        let (frames, hop) = (signal.len() / cfg.hop_length, cfg.hop_length);
        let padded = reflect_pad(signal, cfg.n_fft / 2);

        let mut log_mel = vec![0f64; self.mel_filters.len() * frames];
        let mut frame = vec![0f64; cfg.n_fft];
        let mut power = vec![0f64; cfg.n_fft / 2 + 1];
        // torch.stft gives frames + 1 frames; the extractor drops the last
        // before taking the maximum.
        for t in 0..frames {
            let start = t * hop;
            for ((f, &x), &w) in frame
                .iter_mut()
                .zip(&padded[start..start + cfg.n_fft])
                .zip(&self.window)
            {
                *f = x as f64 * w;
            }
            self.fft.power_spectrum(&frame, &mut power);
            for (m, filter) in self.mel_filters.iter().enumerate() {
                log_mel[m * frames + t] = filter.apply(&power).max(1e-10).log10();
            }
        }
        let max = log_mel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        log_mel
            .iter()
            .map(|&v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }
}

/// `signal` with `pad` samples mirrored at each end, not repeating the end
/// sample (numpy's and torch's "reflect"). Needs `pad < signal.len()`.
fn reflect_pad(signal: &[f32], pad: usize) -> Vec<f32> {
    let n = signal.len();
    let head = signal[1..=pad].iter().rev();
    let tail = signal[n - 1 - pad..n - 1].iter().rev();
    head.chain(signal).chain(tail).copied().collect()
}

/// One mel filter: its non-zero weights, from FFT bin `first_bin` on.
#[derive(Debug, Clone)]
struct MelFilter {
    first_bin: usize,
    weights: Vec<f32>,
}

impl MelFilter {
    fn apply(&self, power: &[f64]) -> f64 {
        let bins = &power[self.first_bin..self.first_bin + self.weights.len()];
        self.weights.iter().zip(bins).map(|(&w, &p)| w as f64 * p).sum()
    }
}

/// transformers' `mel_filter_bank(n_freqs, n_mels, min_frequency=0.0,
/// max_frequency=8000.0, sampling_rate, norm="slaney", mel_scale="slaney")`,
/// as WhisperFeatureExtractor builds it (8 kHz whatever the rate): f64
/// maths in numpy's order, weights rounded to f32 as torch receives them.
fn mel_filter_bank(n_freqs: usize, n_mels: usize, sampling_rate: u32) -> Vec<MelFilter> {
    let mel_max = hertz_to_mel(8000.0);
    let filter_freqs: Vec<f64> = linspace(0.0, mel_max, n_mels + 2)
        .into_iter()
        .map(mel_to_hertz)
        .collect();
    // np.linspace(0, sampling_rate // 2, n_freqs): Python's integer division.
    let fft_freqs = linspace(0.0, (sampling_rate / 2) as f64, n_freqs);
    (0..n_mels)
        .map(|j| {
            let (low, centre, high) = (filter_freqs[j], filter_freqs[j + 1], filter_freqs[j + 2]);
            // Slaney's area normalisation: about constant energy per channel.
            let enorm = 2.0 / (high - low);
            let weights: Vec<f32> = fft_freqs
                .iter()
                .map(|&f| {
                    let down = -(low - f) / (centre - low);
                    let up = (high - f) / (high - centre);
                    (down.min(up).max(0.0) * enorm) as f32
                })
                .collect();
            let first_bin = weights.iter().position(|&w| w != 0.0).unwrap_or(0);
            let end = weights
                .iter()
                .rposition(|&w| w != 0.0)
                .map_or(first_bin, |last| last + 1);
            MelFilter {
                first_bin,
                weights: weights[first_bin..end].to_vec(),
            }
        })
        .collect()
}

/// np.linspace(start, stop, num): start + i * step, the last exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    values[num - 1] = stop;
    values
}

// The Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
const MIN_LOG_HERTZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = 15.0;

fn hertz_to_mel(freq: f64) -> f64 {
    if freq >= MIN_LOG_HERTZ {
        MIN_LOG_MEL + (freq / MIN_LOG_HERTZ).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * freq / 200.0
    }
}

fn mel_to_hertz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HERTZ * ((6.4f64.ln() / 27.0) * (mel - MIN_LOG_MEL)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    /// exp(-2 pi i k / n), an FFT twiddle factor.
    fn twiddle(k: usize, n: usize) -> Self {
        let angle = -2.0 * PI * k as f64 / n as f64;
        Complex {
            re: angle.cos(),
            im: angle.sin(),
        }
    }

    fn conj(self) -> Self {
        Complex {
            re: self.re,
            im: -self.im,
        }
    }

    fn scale(self, s: f64) -> Self {
        Complex {
            re: self.re * s,
            im: self.im * s,
        }
    }

    fn norm_sqr(self) -> f64 {
        self.re * self.re + self.im * self.im
    }
}

impl Add for Complex {
    type Output = Complex;
    fn add(self, o: Complex) -> Complex {
        Complex {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
}

impl Sub for Complex {
    type Output = Complex;
    fn sub(self, o: Complex) -> Complex {
        Complex {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
}

impl Mul for Complex {
    type Output = Complex;
    fn mul(self, o: Complex) -> Complex {
        Complex {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
}

/// The DFT of a real frame of even length n through a complex FFT of n / 2:
/// the even samples as real parts, the odd ones as imaginary parts, the two
/// half-size spectra separated by symmetry and combined with one twiddle.
#[derive(Debug, Clone)]
struct RealFft {
    half: Fft,
    /// exp(-2 pi i k / n) for k in 0..=n/2.
    twiddles: Vec<Complex>,
}

impl RealFft {
    fn new(n: usize) -> Self {
        RealFft {
            half: Fft::new(n / 2),
            twiddles: (0..=n / 2).map(|k| Complex::twiddle(k, n)).collect(),
        }
    }

    /// |X[k]|^2 for k in 0..=n/2 into `power`.
    fn power_spectrum(&self, frame: &[f64], power: &mut [f64]) {
        let m = frame.len() / 2;
        let packed: Vec<Complex> = frame.chunks_exact(2).map(|p| Complex { re: p[0], im: p[1] }).collect();
        let mut z = vec![Complex::default(); m];
        self.half.transform(&packed, &mut z);
        for (k, (p, &w)) in power.iter_mut().zip(&self.twiddles).enumerate() {
            let (zk, zc) = (z[k % m], z[(m - k) % m].conj());
            let even = (zk + zc).scale(0.5);
            // (zk - zc) / 2i
            let d = zk - zc;
            let odd = Complex {
                re: d.im * 0.5,
                im: -d.re * 0.5,
            };
            *p = (even + w * odd).norm_sqr();
        }
    }
}

/// A complex FFT of any length: mixed-radix Cooley-Tukey, decimation in
/// time, recursive as KISS FFT is. Each stage splits the length by a radix
/// (4, 2, 3, 5, then any other factor), so 200 is 4 * 2 * 5 * 5.
#[derive(Debug, Clone)]
struct Fft {
    /// (radix p, length m of each sub-transform) per stage, outermost first.
    stages: Vec<(usize, usize)>,
    /// exp(-2 pi i k / n) for k in 0..n.
    twiddles: Vec<Complex>,
}

impl Fft {
    fn new(n: usize) -> Self {
        let mut stages = Vec::new();
        let mut m = n;
        while m > 1 {
            let p = [4, 2, 3, 5]
                .into_iter()
                .find(|&p| m.is_multiple_of(p))
                .unwrap_or_else(|| (7..=m).step_by(2).find(|&p| m.is_multiple_of(p)).unwrap_or(m));
            m /= p;
            stages.push((p, m));
        }
        Fft {
            stages,
            twiddles: (0..n).map(|k| Complex::twiddle(k, n)).collect(),
        }
    }

    fn transform(&self, input: &[Complex], output: &mut [Complex]) {
        if self.stages.is_empty() {
            output.copy_from_slice(input);
            return;
        }
        let max_radix = self.stages.iter().map(|&(p, _)| p).max().unwrap_or(1);
        self.stage(0, input, 1, output, &mut vec![Complex::default(); max_radix]);
    }

    /// The transform of input[0], input[stride], input[2 stride], ... into
    /// `out`: the p sub-transforms of every p-th of those samples side by
    /// side, then combined.
    fn stage(&self, s: usize, input: &[Complex], stride: usize, out: &mut [Complex], scratch: &mut [Complex]) {
        let (p, m) = self.stages[s];
        if m == 1 {
            for (q, o) in out[..p].iter_mut().enumerate() {
                *o = input[q * stride];
            }
        } else {
            for (q, sub) in out.chunks_exact_mut(m).take(p).enumerate() {
                self.stage(s + 1, &input[q * stride..], stride * p, sub, scratch);
            }
        }
        self.butterflies(out, stride, p, m, scratch);
    }

    /// out[u + q1 m] = sum over q of W^(stride q (u + q1 m)) sub_q[u], with
    /// sub_q[u] = out[u + q m] before the step and W = exp(-2 pi i / n).
    fn butterflies(&self, out: &mut [Complex], stride: usize, p: usize, m: usize, scratch: &mut [Complex]) {
        let n = self.twiddles.len();
        if p == 2 {
            for u in 0..m {
                let t = out[u + m] * self.twiddles[stride * u];
                (out[u], out[u + m]) = (out[u] + t, out[u] - t);
            }
            return;
        }
        for u in 0..m {
            for (q, x) in scratch[..p].iter_mut().enumerate() {
                *x = out[u + q * m];
            }
            for q1 in 0..p {
                let k = u + q1 * m;
                // stride * k < n, so one subtraction keeps the index in range.
                let (mut index, mut sum) = (0, scratch[0]);
                for &x in &scratch[1..p] {
                    index += stride * k;
                    if index >= n {
                        index -= n;
                    }
                    sum = sum + x * self.twiddles[index];
                }
                out[k] = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dft(x: &[Complex]) -> Vec<Complex> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter().enumerate().fold(Complex::default(), |acc, (j, &v)| {
                    acc + v * Complex::twiddle(j * k % n, n)
                })
            })
            .collect()
    }

    fn signal(n: usize) -> Vec<Complex> {
        (0..n)
            .map(|j| Complex {
                re: (j as f64 * 0.37).sin() + 0.1 * j as f64,
                im: (j as f64 * 1.3).cos(),
            })
            .collect()
    }

    #[test]
    fn the_fft_equals_the_direct_dft_for_mixed_radix_lengths() {
        for n in [1, 2, 3, 4, 5, 8, 12, 30, 49, 77, 200, 400] {
            let x = signal(n);
            let mut got = vec![Complex::default(); n];
            Fft::new(n).transform(&x, &mut got);
            for (k, (a, b)) in got.iter().zip(naive_dft(&x)).enumerate() {
                assert!(
                    (*a - b).norm_sqr().sqrt() < 1e-9 * n as f64,
                    "n {n}, bin {k}: {a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn the_real_fft_power_equals_the_direct_dft_power() {
        for n in [2, 10, 400] {
            let frame: Vec<f64> = signal(n).iter().map(|c| c.re).collect();
            let direct = naive_dft(&frame.iter().map(|&re| Complex { re, im: 0.0 }).collect::<Vec<_>>());
            let mut power = vec![0.0; n / 2 + 1];
            RealFft::new(n).power_spectrum(&frame, &mut power);
            for (k, p) in power.iter().enumerate() {
                let want = direct[k].norm_sqr();
                assert!(
                    (p - want).abs() <= 1e-9 * want.max(1.0),
                    "n {n}, bin {k}: {p} vs {want}"
                );
            }
        }
    }

    #[test]
    fn slaney_mel_scale_round_trips_on_both_sides_of_1_khz() {
        for hz in [0.0, 440.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hertz(hertz_to_mel(hz)) - hz).abs() < 1e-9, "{hz} Hz");
        }
        assert_eq!(hertz_to_mel(1000.0), 15.0);
    }

    #[test]
    fn reflect_padding_mirrors_without_repeating_the_end_samples() {
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0, 4.0], 2),
            [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
    }

    #[test]
    fn silence_is_the_log_floor_everywhere() {
        let extractor = WhisperFeatureExtractor::new(WhisperFeatureConfig {
            chunk_length: 1,
            ..Default::default()
        });
        let features = extractor.input_features(&[0.0; 1000]);
        assert_eq!(features.len(), 80 * 100);
        // log10(1e-10) = -10, (-10 + 4) / 4
        assert!(features.iter().all(|&v| v == -1.5));
    }

    #[test]
    fn samples_past_the_chunk_are_dropped() {
        let extractor = WhisperFeatureExtractor::new(WhisperFeatureConfig {
            chunk_length: 1,
            ..Default::default()
        });
        let long: Vec<f32> = (0..24_000).map(|i| (i as f32 * 0.05).sin()).collect();
        assert_eq!(
            extractor.input_features(&long),
            extractor.input_features(&long[..16_000])
        );
        assert_ne!(
            extractor.input_features(&long),
            extractor.input_features(&long[..15_000])
        );
    }

    #[test]
    fn configurations_that_cannot_be_computed_are_refused() {
        let odd = WhisperFeatureConfig {
            n_fft: 401,
            ..Default::default()
        };
        assert!(odd.check().unwrap_err().contains("n_fft 401"));
        let short = WhisperFeatureConfig {
            chunk_length: 0,
            ..Default::default()
        };
        assert!(short.check().is_err());
        assert!(WhisperFeatureConfig::default().check().is_ok());
    }
}
