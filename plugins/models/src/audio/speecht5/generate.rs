//! SpeechT5's `generate_speech`: the spectrogram grown `reduction_factor`
//! frames per step until each text's stop probabilities sum to the
//! threshold, as transformers' `_generate_speech` does it.
//!
//! transformers reruns the prenet over the whole output so far on every
//! step and draws a fresh dropout mask for every position; only the newest
//! position reaches the decoder (the others are cached). Here the prenet
//! runs on the newest frame alone, and the random stream skips the draws
//! of the other positions, so that a seeded call draws exactly the mask
//! rows transformers uses.

use tch::{Kind, Tensor};

use super::{select_cache_rows, SpeechT5ForTextToSpeech};
use crate::core::layers::padding_bias;
use crate::core::random::TorchGenerator;

/// `generate_speech`'s settings, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechSettings {
    /// A text stops once its stop probabilities sum to at least this.
    pub threshold: f64,
    /// Steps are at least `int(tokens * minlenratio / reduction_factor)`
    /// and at most `int(tokens * maxlenratio / reduction_factor)`, tokens
    /// counted with padding.
    pub minlenratio: f64,
    pub maxlenratio: f64,
}

impl Default for SpeechSettings {
    fn default() -> Self {
        SpeechSettings {
            threshold: 0.5,
            minlenratio: 0.0,
            maxlenratio: 20.0,
        }
    }
}

/// One text's spectrogram.
#[derive(Debug)]
pub struct Speech {
    /// [frames, num_mel_bins], after the postnet.
    pub spectrogram: Tensor,
    /// The decoding steps it took (frames / reduction_factor).
    pub steps: i64,
}

/// The spectrograms of the texts `ids` [B, T] (right-padded; `mask` 1 on
/// tokens) spoken by `speakers` [B, speaker_embedding_dim], drawing the
/// prenet's dropout masks from `rng` (one mask per step shared by every
/// text, as transformers batches). Generation stops by the settings, or at
/// the model's `max_speech_positions` steps, where transformers fails.
/// `cancelled` is asked after every step; when it says so, generation
/// stops and gives None.
pub fn generate_speech(
    model: &SpeechT5ForTextToSpeech,
    ids: &Tensor,
    mask: &Tensor,
    speakers: &Tensor,
    settings: SpeechSettings,
    rng: &mut TorchGenerator,
    cancelled: &mut dyn FnMut() -> bool,
) -> Option<Vec<Speech>> {
    let _guard = tch::no_grad_guard();
    let cfg = &model.config;
    let (rows, tokens) = ids.size2().expect("2-d token ids");
    let r = cfg.reduction_factor;
    let units = cfg.speech_decoder_prenet_units as usize;
    let dropout = cfg.speech_decoder_prenet_dropout;
    let prenet_layers = cfg.speech_decoder_prenet_layers;
    let device = ids.device();
    // int() of a float, as Python truncates.
    let maxlen = (tokens as f64 * settings.maxlenratio / r as f64) as i64;
    let minlen = (tokens as f64 * settings.minlenratio / r as f64) as i64;
    let cap = cfg.max_speech_positions;

    let mut memory = model.encode(ids, mask);
    let mut padding = padding_bias(mask, memory.kind());
    let mut speakers = model.normalise_speakers(speakers);
    let mut frame = Tensor::zeros([rows, 1, cfg.num_mel_bins], (memory.kind(), device));
    let mut cache = model.new_cache();
    // The rows still decoding (indices into the batch), and every row's
    // frames per step.
    let mut active: Vec<usize> = (0..rows as usize).collect();
    let mut frames: Vec<Vec<Tensor>> = (0..rows).map(|_| Vec::new()).collect();
    let mut done: Vec<Option<Speech>> = (0..rows).map(|_| None).collect();
    let mut draws = vec![0f32; units];
    for step in 1.. {
        let position = step - 1;
        let keep: Vec<Tensor> = (0..prenet_layers)
            .map(|_| {
                // transformers draws a [step, units] mask; its last row is
                // this position's.
                rng.skip_bernoulli(position as usize * units);
                for d in draws.iter_mut() {
                    *d = if rng.bernoulli(dropout) { 1.0 } else { 0.0 };
                }
                Tensor::from_slice(&draws).to_device(device).to_kind(memory.kind())
            })
            .collect();
        let (new, stop) = model.step(&frame, position, &keep, &speakers, &memory, &padding, &mut cache);
        for (i, &row) in active.iter().enumerate() {
            frames[row].push(new.get(i as i64));
        }
        frame = new.narrow(1, r - 1, 1);
        if cancelled() {
            return None;
        }
        let forced = step >= cap;
        if !forced && step < minlen {
            continue;
        }
        let meets: Vec<bool> = if !forced && step < maxlen {
            let sums = Vec::<f32>::try_from(stop.sum_dim_intlist(-1, false, Kind::Float).to_device(tch::Device::Cpu))
                .expect("float stop probabilities");
            sums.iter().map(|&s| f64::from(s) >= settings.threshold).collect()
        } else {
            vec![true; active.len()]
        };
        if !meets.iter().any(|&m| m) {
            continue;
        }
        let mut kept = Vec::new();
        for (i, (&row, &meet)) in active.iter().zip(&meets).enumerate() {
            if meet {
                let spectrogram = Tensor::cat(&frames[row], 0);
                let spectrogram = model.refine(&spectrogram.unsqueeze(0)).squeeze_dim(0);
                done[row] = Some(Speech {
                    spectrogram,
                    steps: step,
                });
                frames[row].clear();
            } else {
                kept.push((i as i64, row));
            }
        }
        if kept.is_empty() {
            break;
        }
        let index = Tensor::from_slice(&kept.iter().map(|(i, _)| *i).collect::<Vec<_>>()).to_device(device);
        select_cache_rows(&mut cache, &index);
        memory = memory.index_select(0, &index);
        padding = padding.index_select(0, &index);
        speakers = speakers.index_select(0, &index);
        frame = frame.index_select(0, &index);
        active = kept.into_iter().map(|(_, row)| row).collect();
    }
    Some(done.into_iter().map(|s| s.expect("every row finished")).collect())
}

/// The number of decoding steps `tokens` input tokens may take at most.
pub fn max_steps(model: &SpeechT5ForTextToSpeech, tokens: i64, settings: SpeechSettings) -> i64 {
    let r = model.config.reduction_factor as f64;
    let maxlen = (tokens as f64 * settings.maxlenratio / r) as i64;
    let minlen = (tokens as f64 * settings.minlenratio / r) as i64;
    maxlen.max(minlen).clamp(1, model.config.max_speech_positions)
}
