//! `text-to-speech` (alias `text-to-audio`) on SpeechT5, as transformers'
//! TextToAudioPipeline runs it: SpeechT5Tokenizer (numbers spelt out with
//! `normalize`), `generate` with the speaker's x-vector, the vocoder, and
//! the waveform at the vocoder's sampling rate, here as a WAV file.
//!
//! The texts of one request are generated together, as transformers
//! batches them, with the random stream of its own seed (drawn when the
//! request gives none, and returned), so that it sounds exactly like
//! `torch.manual_seed(seed)` before pipeline(). Requests decode side by
//! side, and those that arrive while others decode join them at the next
//! step (continuous batching), while the texts decoding and what they hold
//! stay under the model's `max_batch_sequences` and `max_batch_tokens`;
//! each request is vocoded and answered as soon as its texts are done.

use std::cell::RefCell;

use inferd_models::audio::speecht5::generate::{generate_speech_joined, max_steps, SpeechRequest, SpeechSettings};
use inferd_models::audio::wav::{encode_wav, WavFormat};
use inferd_models::auto::TextToSpeechModel;
use inferd_models::core::random::TorchGenerator;
use inferd_models::generation::sampling::Rng;
use inferd_sdk::dispatch::{Incoming, Joiner};
use inferd_sdk::proto::api::{Speech, SynthesizeRequest, SynthesizeResponse};
use inferd_sdk::{Error, Limit};

/// Texts per request.
pub const TEXTS: Limit = Limit::new("INFERD_MAX_SPEECH_TEXTS", 64);
/// The budgets of a text-to-speech model: texts per request, texts
/// decoding together, and what they hold, each text counted as its
/// request's padded tokens (the encoder states) plus its most decoding
/// steps (the self-attention history).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub texts: Limit,
    pub batch_texts: Limit,
    pub batch_tokens: Limit,
}

/// The largest length ratio accepted (generation stops at the model's
/// max_speech_positions steps anyway).
const MAX_RATIO: f32 = 1000.0;

/// One request, checked: its token ids and speakers per text, and how to
/// generate and write it.
struct Prepared {
    ids: Vec<Vec<i64>>,
    speakers: Vec<Vec<f32>>,
    settings: SpeechSettings,
    seed: Option<u64>,
    format: WavFormat,
    return_samples: bool,
    return_spectrogram: bool,
}

fn ratio(name: &str, value: Option<f32>, default: f64) -> Result<f64, Error> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (0.0..=MAX_RATIO).contains(&v) => Ok(f64::from(v)),
        Some(v) => Err(Error::invalid_argument(format!(
            "{name} must be between 0 and {MAX_RATIO} (got {v})"
        ))),
    }
}

/// The speaker x-vector of each of `texts` texts.
fn speakers(model: &TextToSpeechModel, request: &SynthesizeRequest, texts: usize) -> Result<Vec<Vec<f32>>, Error> {
    let dim = model.net.config.speaker_embedding_dim as usize;
    let known = || {
        if model.speakers.is_empty() {
            "this model ships none".to_string()
        } else {
            format!(
                "this model has {}",
                model.speakers.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    let embeddings = &request.speaker_embeddings;
    match (request.speaker.is_empty(), embeddings.is_empty()) {
        (false, false) => Err(Error::invalid_argument(
            "give either `speaker` or `speaker_embeddings`, not both",
        )),
        (true, true) => Err(Error::invalid_argument(format!(
            "SpeechT5 needs a voice: give `speaker_embeddings` ({dim} values, an x-vector such as those of the \
             Matthijs/cmu-arctic-xvectors dataset) or a `speaker` name ({})",
            known()
        ))),
        (false, true) => match model.speakers.get(&request.speaker) {
            Some(vector) => Ok(vec![vector.clone(); texts]),
            None => Err(Error::invalid_argument(format!(
                "unknown speaker `{}`: {}",
                request.speaker,
                known()
            ))),
        },
        (true, false) => {
            if let Some(i) = embeddings.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid_argument(format!(
                    "speaker_embeddings[{i}] is {}; every value must be a number",
                    embeddings[i]
                )));
            }
            if embeddings.len() == dim {
                Ok(vec![embeddings.clone(); texts])
            } else if embeddings.len() == dim * texts {
                Ok(embeddings.chunks(dim).map(<[f32]>::to_vec).collect())
            } else {
                Err(Error::invalid_argument(format!(
                    "speaker_embeddings has {} values; this model's x-vectors have {dim} (one for every text, or \
                     {dim} x {texts} for one per text)",
                    embeddings.len()
                )))
            }
        }
    }
}

fn prepare(model: &TextToSpeechModel, request: &SynthesizeRequest) -> Result<Prepared, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument(
            "inputs is empty: give at least one text to speak",
        ));
    }
    let max_tokens = model.net.config.max_text_positions as usize;
    let normalize = request.normalize.unwrap_or(model.tokenizer.normalize);
    let mut ids = Vec::with_capacity(request.inputs.len());
    for (i, text) in request.inputs.iter().enumerate() {
        if text.trim().is_empty() {
            return Err(Error::invalid_argument(format!(
                "input {i} is empty: give text to speak"
            )));
        }
        let tokens = model.tokenizer.encode(text, normalize)?;
        if tokens.len() > max_tokens {
            return Err(Error::invalid_argument(format!(
                "input {i} is {} tokens long (characters, with the end of text{}), but this model reads at \
                 most {max_tokens} (max_text_positions); split it into shorter texts",
                tokens.len(),
                if normalize { ", numbers spelt out" } else { "" }
            )));
        }
        ids.push(tokens);
    }
    let threshold = match request.threshold {
        None => 0.5,
        Some(t) if t.is_finite() && t >= 0.0 => f64::from(t),
        Some(t) => Err(Error::invalid_argument(format!(
            "threshold must be a number of at least 0 (got {t})"
        )))?,
    };
    let format = match request.audio_format.as_str() {
        "" | "pcm16" => WavFormat::Pcm16,
        "float32" => WavFormat::Float32,
        other => {
            return Err(Error::invalid_argument(format!(
                "audio_format `{other}`: use \"pcm16\" (16-bit PCM, the default) or \"float32\""
            )))
        }
    };
    Ok(Prepared {
        speakers: speakers(model, request, ids.len())?,
        ids,
        settings: SpeechSettings {
            threshold,
            minlenratio: ratio("minlenratio", request.minlenratio, 0.0)?,
            maxlenratio: ratio("maxlenratio", request.maxlenratio, 20.0)?,
        },
        seed: request.seed,
        format,
        return_samples: request.return_samples,
        return_spectrogram: request.return_spectrogram,
    })
}

/// A request being spoken: how to write it, its seed, and what it holds
/// of the batch budget.
struct Answering {
    prepared: Prepared,
    seed: u64,
    tokens: u64,
}

/// The requests of a running decode, as the decode loop's callbacks see them.
struct Decode<'m, 'j, 'h, 'a> {
    model: &'m TextToSpeechModel,
    limits: Limits,
    joiner: &'j mut Joiner<'h, 'a, SynthesizeRequest, SynthesizeResponse>,
    /// By arrival number: the request's index and its state.
    arrivals: Vec<(usize, Answering)>,
    requests: usize,
    running_texts: usize,
    running_tokens: u64,
}

impl Decode<'_, '_, '_, '_> {
    /// The requests that arrived meanwhile, taken one at a time while the
    /// texts decoding and what they hold are under `max_batch_sequences`
    /// and `max_batch_tokens`, prepared for the decode.
    fn arrivals(&mut self) -> Vec<SpeechRequest> {
        let mut started = Vec::new();
        loop {
            let limits = &self.limits;
            let Some(incoming) = self.joiner.take_within(
                self.running_texts,
                self.running_tokens,
                &limits.batch_texts,
                &limits.batch_tokens,
            ) else {
                return started;
            };
            started.extend(self.admit(vec![incoming]));
        }
    }

    /// Prepares `incoming` (the next requests in order) for the decode;
    /// refused requests are answered at once.
    fn admit(&mut self, incoming: Vec<Incoming<SynthesizeRequest>>) -> Vec<SpeechRequest> {
        let mut started = Vec::new();
        for Incoming { request, .. } in incoming {
            let r = self.requests;
            self.requests += 1;
            let prepared = self
                .limits
                .texts
                .check(request.inputs.len() as u64, "inputs")
                .and_then(|()| prepare(self.model, &request));
            let prepared = match prepared {
                Ok(p) => p,
                Err(e) => {
                    self.joiner.finish(r, Err(e));
                    continue;
                }
            };
            let seed = prepared.seed.unwrap_or_else(Rng::random_seed);
            let longest = prepared.ids.iter().map(Vec::len).max().unwrap_or(0) as i64;
            let steps = max_steps(&self.model.net, longest, prepared.settings);
            let tokens = prepared.ids.len() as u64 * (longest + steps) as u64;
            self.running_texts += prepared.ids.len();
            self.running_tokens += tokens;
            started.push(self.model.request(
                &prepared.ids,
                &prepared.speakers,
                prepared.settings,
                TorchGenerator::manual_seed(seed),
            ));
            self.arrivals.push((r, Answering { prepared, seed, tokens }));
        }
        started
    }

    /// Whether arrival `i`'s client still waits.
    fn wanted(&mut self, i: usize) -> bool {
        let r = self.arrivals[i].0;
        self.joiner.wanted(r)
    }

    /// Arrival `i` is spoken (None: stopped): vocoded and answered.
    fn on_finish(&mut self, i: usize, speech: Option<Vec<inferd_models::audio::speecht5::generate::Speech>>) {
        let (r, answering) = &self.arrivals[i];
        let r = *r;
        self.running_texts -= answering.prepared.ids.len();
        self.running_tokens -= answering.tokens;
        let Some(speech) = speech else {
            self.joiner.finish(r, Err(Error::stopped()));
            return;
        };
        let (p, seed) = (&answering.prepared, answering.seed);
        let model = self.model;
        let rate = model.vocoder.sampling_rate() as u32;
        let mels = model.net.config.num_mel_bins as u32;
        // Each request's texts are vocoded together, as generate() vocodes
        // its batch, and apart from other requests'.
        let waves = model.vocode(&speech.iter().map(|s| &s.spectrogram).collect::<Vec<_>>());
        let results = speech
            .into_iter()
            .zip(waves)
            .map(|(s, samples)| Speech {
                audio: encode_wav(&samples, rate, p.format),
                sampling_rate: rate,
                seed,
                spectrogram: if p.return_spectrogram {
                    Vec::<f32>::try_from(s.spectrogram.flatten(0, -1)).unwrap_or_default()
                } else {
                    vec![]
                },
                num_mel_bins: mels,
                duration_s: samples.len() as f32 / rate.max(1) as f32,
                samples: if p.return_samples { samples } else { vec![] },
            })
            .collect();
        self.joiner.finish(r, Ok(SynthesizeResponse { results }));
    }
}

/// Speaks a batch of requests and those that join it while it runs, each
/// answered as soon as its texts are spoken.
pub fn synthesize(
    model: &TextToSpeechModel,
    limits: &Limits,
    requests: Vec<Incoming<SynthesizeRequest>>,
    joiner: &mut Joiner<SynthesizeRequest, SynthesizeResponse>,
) {
    // The batch starts within the budgets; the rest of it joins as room
    // frees, before later arrivals.
    joiner.hold(requests);
    let decode = RefCell::new(Decode {
        model,
        limits: *limits,
        joiner,
        arrivals: vec![],
        requests: 0,
        running_texts: 0,
        running_tokens: 0,
    });
    generate_speech_joined(
        &model.net,
        &mut |_| decode.borrow_mut().arrivals(),
        &mut |i| decode.borrow_mut().wanted(i),
        &mut |i, speech| decode.borrow_mut().on_finish(i, speech),
    );
}
