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
//!
//! Requests join a running decode between steps and leave it as soon as
//! they are done (continuous batching): each keeps its own positions,
//! settings and random stream.

use tch::{Kind, Tensor};

use super::SpeechT5ForTextToSpeech;
use crate::core::decoding::DecoderState;
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
    /// [frames, num_mel_bins], after the postnet, in float32.
    pub spectrogram: Tensor,
    /// The decoding steps it took (frames / reduction_factor).
    pub steps: i64,
}

/// One request's texts, spoken together as transformers batches them.
pub struct SpeechRequest {
    /// Token ids [B, T], right-padded; `mask` [B, T] is 1 on tokens.
    pub ids: Tensor,
    pub mask: Tensor,
    /// Speaker x-vectors [B, speaker_embedding_dim].
    pub speakers: Tensor,
    pub settings: SpeechSettings,
    /// Where the prenet's dropout masks come from: one per step, shared by
    /// the request's texts.
    pub rng: TorchGenerator,
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
    request: SpeechRequest,
    cancelled: &mut dyn FnMut() -> bool,
) -> Option<Vec<Speech>> {
    let mut first = Some(request);
    let mut spoken = None;
    generate_speech_joined(
        model,
        &mut |_| first.take().into_iter().collect(),
        &mut |_| !cancelled(),
        &mut |_, speech| spoken = speech,
    );
    spoken
}

/// The decode of requests that join and leave between steps (continuous
/// batching). Before each step `arrivals(rows)` gives the requests that
/// join now (`rows`: the texts decoding); they are numbered in arrival
/// order from 0, encoded, take their first step on their own, and join the
/// running texts (their self-attention history padded on the left, their
/// encoder states on the right, both masked). Each request keeps its own
/// positions, settings and random stream, so it gets the spectrograms it
/// gets alone. `keep_going(i)` is asked after each of request `i`'s steps;
/// false ends it with None. `on_finish(i, speech)` is called as soon as
/// its last text is done. Returns when nothing runs and nothing arrives.
pub fn generate_speech_joined(
    model: &SpeechT5ForTextToSpeech,
    arrivals: &mut dyn FnMut(usize) -> Vec<SpeechRequest>,
    keep_going: &mut dyn FnMut(usize) -> bool,
    on_finish: &mut dyn FnMut(usize, Option<Vec<Speech>>),
) {
    let _guard = tch::no_grad_guard();
    let mut requests: Vec<Spoken> = Vec::new();
    let mut running: Option<Decoding> = None;
    loop {
        let rows = running.as_ref().map_or(0, |d| d.rows.len());
        let arrived = arrivals(rows);
        let any_arrived = !arrived.is_empty();
        for request in arrived {
            let i = requests.len();
            let (fresh, spoken) = Decoding::start(model, i, request);
            requests.push(spoken);
            let mut fresh = Some(fresh);
            if !step(model, &mut fresh, &mut requests, keep_going, on_finish) {
                continue;
            }
            running = match (running, fresh) {
                (Some(r), Some(f)) => Some(r.merge(f)),
                (r, f) => r.or(f),
            };
        }
        if running.is_none() {
            // Arrivals that all ended in their first step: others may wait
            // their turn (the rest of a held batch), so ask again.
            if any_arrived {
                continue;
            }
            return;
        }
        step(model, &mut running, &mut requests, keep_going, on_finish);
    }
}

/// A request being spoken: its stream of dropout masks, its bounds, the
/// steps it has taken, and its texts' frames and spectrograms.
struct Spoken {
    rng: TorchGenerator,
    settings: SpeechSettings,
    /// Steps at least (before which no text stops) and at most.
    minlen: i64,
    maxlen: i64,
    steps: i64,
    /// Each text's frames so far, per step [r, mels].
    frames: Vec<Vec<Tensor>>,
    done: Vec<Option<Speech>>,
    remaining: usize,
}

/// The texts decoding together and their tensors: (request, text) of each
/// row, the decoder's state, the speakers [rows, 1, E] and the newest
/// frames [rows, 1, mels].
struct Decoding {
    rows: Vec<(usize, usize)>,
    state: DecoderState,
    speakers: Tensor,
    frame: Tensor,
}

impl Decoding {
    /// Encodes request `i`'s texts.
    fn start(model: &SpeechT5ForTextToSpeech, i: usize, request: SpeechRequest) -> (Decoding, Spoken) {
        let cfg = &model.config;
        let (rows, tokens) = request.ids.size2().expect("2-d token ids");
        let r = cfg.reduction_factor as f64;
        let memory = model.encode(&request.ids, &request.mask);
        let padding = padding_bias(&request.mask, memory.kind());
        let frame = Tensor::zeros([rows, 1, cfg.num_mel_bins], (memory.kind(), memory.device()));
        let spoken = Spoken {
            rng: request.rng,
            settings: request.settings,
            // int() of a float, as Python truncates; tokens with padding.
            minlen: (tokens as f64 * request.settings.minlenratio / r) as i64,
            maxlen: (tokens as f64 * request.settings.maxlenratio / r) as i64,
            steps: 0,
            frames: (0..rows).map(|_| Vec::new()).collect(),
            done: (0..rows).map(|_| None).collect(),
            remaining: rows as usize,
        };
        let decoding = Decoding {
            rows: (0..rows as usize).map(|t| (i, t)).collect(),
            state: model.new_state(memory, Some(padding)),
            speakers: model.normalise_speakers(&request.speakers),
            frame,
        };
        (decoding, spoken)
    }

    /// These rows and `other`'s, both past their first step.
    fn merge(mut self, other: Decoding) -> Decoding {
        self.state = self.state.merge(other.state);
        self.rows.extend(other.rows);
        self.speakers = Tensor::cat(&[self.speakers, other.speakers], 0);
        self.frame = Tensor::cat(&[self.frame, other.frame], 0);
        self
    }

    /// Keeps the rows at `slots` (in order).
    fn keep(&mut self, slots: &[i64]) {
        let index = Tensor::from_slice(slots).to_device(self.frame.device());
        self.state.select(slots, slots);
        self.speakers = self.speakers.index_select(0, &index);
        self.frame = self.frame.index_select(0, &index);
        self.rows = slots.iter().map(|&k| self.rows[k as usize]).collect();
    }
}

/// One step of every row of `decoding`; requests no longer wanted, and
/// texts done, leave (their requests answered once all their texts are).
/// False, and `decoding` None, when no row is left.
fn step(
    model: &SpeechT5ForTextToSpeech,
    decoding: &mut Option<Decoding>,
    requests: &mut [Spoken],
    keep_going: &mut dyn FnMut(usize) -> bool,
    on_finish: &mut dyn FnMut(usize, Option<Vec<Speech>>),
) -> bool {
    let Some(d) = decoding.as_mut() else {
        return false;
    };
    let cfg = &model.config;
    let r = cfg.reduction_factor;
    let units = cfg.speech_decoder_prenet_units as usize;
    let device = d.frame.device();
    // The requests in this decoding, in row order.
    let mut members: Vec<usize> = d.rows.iter().map(|&(i, _)| i).collect();
    members.dedup();
    // Each request's masks for its position: transformers draws a [step,
    // units] mask per layer; its last row is this position's.
    let mut masks: Vec<Vec<f32>> = vec![Vec::new(); members.len()];
    for (k, &i) in members.iter().enumerate() {
        let spoken = &mut requests[i];
        for _ in 0..cfg.speech_decoder_prenet_layers {
            spoken.rng.skip_bernoulli(spoken.steps as usize * units);
            masks[k].extend(
                (0..units).map(|_| f32::from(u8::from(spoken.rng.bernoulli(cfg.speech_decoder_prenet_dropout)))),
            );
        }
    }
    let keep: Vec<Tensor> = (0..cfg.speech_decoder_prenet_layers as usize)
        .map(|layer| {
            let values: Vec<f32> = d
                .rows
                .iter()
                .flat_map(|&(i, _)| {
                    let k = members.iter().position(|&m| m == i).expect("a member");
                    masks[k][layer * units..(layer + 1) * units].iter().copied()
                })
                .collect();
            Tensor::from_slice(&values)
                .view([d.rows.len() as i64, 1, units as i64])
                .to_device(device)
                .to_kind(d.frame.kind())
        })
        .collect();
    let (new, stop) = model.step(&d.frame, &keep, &d.speakers, &mut d.state);
    for (k, &(i, t)) in d.rows.iter().enumerate() {
        requests[i].frames[t].push(new.get(k as i64));
    }
    d.frame = new.narrow(1, r - 1, 1);
    let mut wanted = Vec::with_capacity(members.len());
    for &i in &members {
        requests[i].steps += 1;
        let going = keep_going(i);
        if !going {
            on_finish(i, None);
        }
        wanted.push(going);
    }
    // Which rows may stop now, and whether the stop probabilities decide.
    let cap = cfg.max_speech_positions;
    let mut sums: Option<Vec<f32>> = None;
    let mut kept = Vec::with_capacity(d.rows.len());
    for (k, &(i, t)) in d.rows.iter().enumerate() {
        if !wanted[members.iter().position(|&m| m == i).expect("a member")] {
            continue;
        }
        let spoken = &mut requests[i];
        let forced = spoken.steps >= cap;
        let meets = if !forced && spoken.steps < spoken.minlen {
            false
        } else if forced || spoken.steps >= spoken.maxlen {
            true
        } else {
            let sums = sums.get_or_insert_with(|| {
                Vec::<f32>::try_from(stop.sum_dim_intlist(-1, false, Kind::Float).to_device(tch::Device::Cpu))
                    .expect("float stop probabilities")
            });
            f64::from(sums[k]) >= spoken.settings.threshold
        };
        if !meets {
            kept.push(k as i64);
            continue;
        }
        let spectrogram = Tensor::cat(&std::mem::take(&mut spoken.frames[t]), 0);
        spoken.done[t] = Some(Speech {
            spectrogram: model
                .refine(&spectrogram.unsqueeze(0))
                .squeeze_dim(0)
                .to_kind(Kind::Float),
            steps: spoken.steps,
        });
        spoken.remaining -= 1;
        if spoken.remaining == 0 {
            let done = std::mem::take(&mut spoken.done);
            on_finish(i, Some(done.into_iter().map(|s| s.expect("every text done")).collect()));
        }
    }
    if kept.is_empty() {
        *decoding = None;
        return false;
    }
    if kept.len() < d.rows.len() {
        d.keep(&kept);
    }
    true
}

/// The number of decoding steps `tokens` input tokens may take at most.
pub fn max_steps(model: &SpeechT5ForTextToSpeech, tokens: i64, settings: SpeechSettings) -> i64 {
    let r = model.config.reduction_factor as f64;
    let maxlen = (tokens as f64 * settings.maxlenratio / r) as i64;
    let minlen = (tokens as f64 * settings.minlenratio / r) as i64;
    maxlen.max(minlen).clamp(1, model.config.max_speech_positions)
}
