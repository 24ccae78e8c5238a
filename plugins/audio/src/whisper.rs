//! `automatic-speech-recognition` on Whisper, as transformers'
//! AutomaticSpeechRecognitionPipeline runs it: decode, mix down to mono,
//! resample to 16 kHz, log-mel features (30 s, padded; longer audio whole,
//! decoded window after window, or with chunk_length_s in overlapping
//! chunks, each decoded alone and stitched by `_decode_asr`), Whisper's
//! `generate` with the request's
//! language, task and settings, and the tokens turned into text, segments
//! and language as the tokenizer's `_decode_asr` does. The inputs of every
//! request in a batch are decoded together, and those of requests that
//! arrive meanwhile join the running decode at its next step (continuous
//! batching), within the model's `max_batch_sequences` and
//! `max_batch_tokens`.

use std::cell::RefCell;
use std::sync::Arc;

use inferd_models::audio::resample::resample;
use inferd_models::audio::whisper_generate::{
    plan, transcribe_joined, AudioInput, Listener, Plan, Transcript, WhisperOptions, TIME_PRECISION,
};
use inferd_models::audio::whisper_text::{
    decode_asr, language_name, AsrOptions, AsrOutput, ChunkTokens, ReturnTimestamps as Timestamps, Stride,
    WhisperSpecialTokens,
};
use inferd_models::auto::WhisperModel;
use inferd_models::generation::GenerationSettings;
use inferd_sdk::dispatch::{Incoming, Joiner};
use inferd_sdk::proto::api::{
    TranscribeRequest, TranscribeResponse, TranscribeStreamResponse, Transcription, TranscriptionChunk,
};
use inferd_sdk::{Error, Limit};
use tch::Tensor;

use crate::speech_recognition::{Chunking, Seconds};

/// One request, checked: what it wants back, and each input's plan and
/// windows: the whole audio, or with chunk_length_s its chunks.
struct Planned {
    /// Each input's: with timestamp tokens where the audio is decoded
    /// window after window, as requested otherwise.
    plans: Vec<Arc<Plan>>,
    timestamps: Timestamps,
    return_language: bool,
    inputs: Vec<Vec<Window>>,
}

/// Features to decode, and with chunking the chunk's share of the audio
/// (its length and strides, in seconds).
struct Window {
    features: Tensor,
    stride: Option<Stride>,
    /// Feature frames holding audio (word timestamps' alignment).
    num_frames: i64,
}

/// What a request asks of Whisper, checked.
fn options(request: &TranscribeRequest) -> Result<(WhisperOptions, Timestamps), Error> {
    let timestamps = match request.return_timestamps.as_str() {
        "" | "false" => Timestamps::Off,
        "true" | "segment" => Timestamps::Segments,
        "word" => Timestamps::Words,
        "char" => {
            return Err(Error::invalid_argument(
                "Whisper cannot return \"char\" timestamps: ask for \"true\" (segments)",
            ))
        }
        other => {
            return Err(Error::invalid_argument(format!(
                "return_timestamps `{other}`: Whisper gives \"true\" (segment) timestamps"
            )))
        }
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok((
        WhisperOptions {
            language: nonempty(&request.language),
            task: nonempty(&request.task),
            timestamps: timestamps != Timestamps::Off,
            words: timestamps == Timestamps::Words,
            settings: GenerationSettings {
                num_beams: request.num_beams.map(|n| n as usize),
                max_new_tokens: request.max_new_tokens.map(|n| n as usize),
                ..Default::default()
            },
            temperature: request.temperature,
            seed: request.seed.unwrap_or(0),
        },
        timestamps,
    ))
}

/// Checks a request and computes its inputs' features.
fn prepare(model: &WhisperModel, request: &TranscribeRequest, seconds: &Seconds) -> Result<Planned, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument(
            "`inputs` is empty: send at least one audio file",
        ));
    }
    let (options, timestamps) = options(request)?;
    let rate = model.features.config.sampling_rate;
    let window = model.features.config.n_samples();
    let mut samples = Vec::with_capacity(request.inputs.len());
    let mut total = 0.0;
    for (i, input) in request.inputs.iter().enumerate() {
        let audio = seconds.decode(i, &input.data, &mut total)?;
        samples.push(resample(&audio.samples, audio.sample_rate, rate));
    }
    // pipeline()'s chunks (Whisper aligns them to samples), each decoded
    // as 30 s of audio; without chunking, audio over 30 s is decoded
    // window after window, which needs the timestamp tokens (generate turns
    // them on itself). pipeline() runs each file of a list alone: a short
    // file beside a long one keeps the requested mode.
    let chunking = Chunking::from_request(request, 1, rate)?;
    if let Some(chunking) = &chunking {
        // Each chunk is decoded as a whole window: short chunks multiply
        // the work.
        let chunks: usize = samples.iter().map(|s| chunking.pieces(s.len()).len()).sum();
        let window_seconds = window as f64 / rate as f64;
        seconds.request.check(
            (chunks as f64 * window_seconds).ceil() as u64,
            &format!(
                "the audio this request decodes ({chunks} chunks of chunk_length_s {} s, each decoded as a \
                 {window_seconds} s window, in seconds)",
                request.chunk_length_s.unwrap_or_default()
            ),
        )?;
    }
    let windowed = |s: &[f32]| chunking.is_none() && s.len() > window;
    let plan_with = |timestamps: bool| {
        let mut options = options.clone();
        options.timestamps |= timestamps;
        plan(
            &model.generation,
            &options,
            model.net.config.max_target_positions as usize,
        )
        .map(Arc::new)
    };
    let requested = plan_with(false)?;
    let long = match samples.iter().any(|s| windowed(s)) {
        false => None,
        true if model.generation.no_timestamps_token_id.is_none() => {
            return Err(Error::invalid_argument(
                "audio over 30 s needs a model with timestamp tokens, which this one lacks: set chunk_length_s \
                 (e.g. 30)",
            ))
        }
        true => Some(plan_with(true)?),
    };
    let plans = samples
        .iter()
        .map(|s| match (&long, windowed(s)) {
            (Some(long), true) => Arc::clone(long),
            _ => Arc::clone(&requested),
        })
        .collect();
    let mels = model.features.config.feature_size as i64;
    let features = |samples: &[f32], long: bool| {
        let values = if long {
            model.features.long_input_features(samples)
        } else {
            model.features.input_features(samples)
        };
        let frames = values.len() as i64 / mels;
        Tensor::from_slice(&values).view([mels, frames])
    };
    let seconds = |n: usize| n as f64 / rate as f64;
    // The pipeline's num_frames (samples over hop length) for short audio;
    // for chunks and long audio, generate counts the attention mask's
    // frames (rounded up).
    let hop = model.features.config.hop_length;
    let inputs = samples
        .iter()
        .map(|s| match &chunking {
            None => vec![Window {
                features: features(s, true),
                stride: None,
                num_frames: if s.len() > window {
                    s.len().div_ceil(hop)
                } else {
                    s.len() / hop
                } as i64,
            }],
            Some(chunking) => chunking
                .pieces(s.len())
                .into_iter()
                .map(|piece| Window {
                    features: features(&s[piece.start..piece.start + piece.len], false),
                    num_frames: piece.len.div_ceil(hop) as i64,
                    stride: Some(Stride {
                        chunk_len: seconds(piece.len),
                        left: seconds(piece.left),
                        right: seconds(piece.right),
                    }),
                })
                .collect(),
        })
        .collect();
    Ok(Planned {
        plans,
        timestamps,
        return_language: request.return_language,
        inputs,
    })
}

/// The budgets of a Whisper model: seconds of audio per input, and what
/// decodes together.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub seconds: Seconds,
    pub batch_sequences: Limit,
    pub batch_tokens: Limit,
}

/// A request being transcribed: its plan, whether it streams (one input,
/// not chunked), and each input's windows' transcripts once done.
struct Answering {
    planned: Planned,
    streams: bool,
    transcripts: Vec<Vec<Option<Transcript>>>,
    remaining: usize,
    /// What its inputs hold of the batch budget.
    tokens: u64,
}

/// One transcription: its request, input and window (chunk).
#[derive(Clone, Copy)]
struct Owner {
    request: usize,
    input: usize,
    chunk: usize,
}

/// The requests of a running transcription, as its callbacks see them.
struct Decode<'m, 'j, 'h, 'a> {
    model: &'m WhisperModel,
    limits: Limits,
    joiner: &'j mut Joiner<'h, 'a, TranscribeRequest, TranscribeResponse>,
    requests: Vec<Option<Answering>>,
    /// By transcription number.
    owners: Vec<Owner>,
    running_tokens: u64,
}

impl Decode<'_, '_, '_, '_> {
    /// The inputs of requests that arrived meanwhile, taken one request at
    /// a time while the hypotheses decoding or waiting (`rows`) and what
    /// they hold are under `max_batch_sequences` and `max_batch_tokens`.
    fn arrivals(&mut self, rows: usize) -> Vec<AudioInput> {
        let mut inputs: Vec<AudioInput> = Vec::new();
        loop {
            let added: usize = inputs.iter().map(|a| a.plan.params.num_beams.max(1)).sum();
            let limits = &self.limits;
            let Some(incoming) = self.joiner.take_within(
                rows + added,
                self.running_tokens,
                &limits.batch_sequences,
                &limits.batch_tokens,
            ) else {
                return inputs;
            };
            inputs.extend(self.admit(vec![incoming]));
        }
    }

    /// Prepares `incoming` (the next requests in order) and gives their
    /// inputs' windows to transcribe; refused requests are answered at once.
    fn admit(&mut self, incoming: Vec<Incoming<TranscribeRequest>>) -> Vec<AudioInput> {
        let mut inputs = Vec::new();
        for Incoming { request, stream } in incoming {
            let r = self.requests.len();
            let planned = match prepare(self.model, &request, &self.limits.seconds) {
                Ok(p) => p,
                Err(e) => {
                    self.requests.push(None);
                    self.joiner.finish(r, Err(e));
                    continue;
                }
            };
            let mut tokens = 0;
            for (k, (windows, plan)) in planned.inputs.iter().zip(&planned.plans).enumerate() {
                let beams = plan.params.num_beams.max(1);
                let per_window = (self.model.net.config.max_source_positions as usize
                    + beams * (plan.params.max_new_tokens + 4)) as u64;
                for (c, window) in windows.iter().enumerate() {
                    self.owners.push(Owner {
                        request: r,
                        input: k,
                        chunk: c,
                    });
                    inputs.push(AudioInput {
                        features: window.features.shallow_clone(),
                        plan: Arc::clone(plan),
                        num_frames: window.num_frames,
                    });
                    tokens += per_window;
                }
            }
            self.running_tokens += tokens;
            let whole = planned.inputs.iter().all(|windows| windows.len() == 1);
            let remaining = planned.inputs.iter().map(Vec::len).sum();
            self.requests.push(Some(Answering {
                streams: stream && whole,
                transcripts: planned.inputs.iter().map(|w| vec![None; w.len()]).collect(),
                remaining,
                tokens,
                planned,
            }));
            if remaining == 0 {
                self.answer(r);
            }
        }
        inputs
    }

    /// Transcription `i` is done: its request is answered once all of its
    /// inputs' windows are.
    fn done(&mut self, i: usize, transcript: Transcript) {
        let Owner { request, input, chunk } = self.owners[i];
        let Some(answering) = self.requests[request].as_mut() else {
            return;
        };
        answering.transcripts[input][chunk] = Some(transcript);
        answering.remaining -= 1;
        if answering.remaining == 0 {
            self.answer(request);
        }
    }

    /// Answers request `r` from its transcripts, as `_decode_asr` joins them.
    fn answer(&mut self, r: usize) {
        let Some(answering) = self.requests[r].take() else {
            return;
        };
        self.running_tokens -= answering.tokens;
        let model = self.model;
        let p = &answering.planned;
        let options = AsrOptions {
            return_timestamps: p.timestamps,
            return_language: p.return_language,
            time_precision: TIME_PRECISION,
        };
        let special = special_tokens(model);
        let decode = |ids: &[i64]| text_of(model, ids);
        let results = p
            .inputs
            .iter()
            .zip(&p.plans)
            .zip(answering.transcripts)
            .map(|((windows, plan), transcripts)| {
                let outputs: Vec<ChunkTokens> = windows
                    .iter()
                    .zip(transcripts)
                    .map(|(w, transcript)| {
                        let transcript = transcript.unwrap_or_default();
                        ChunkTokens {
                            tokens: transcript.tokens(),
                            stride: w.stride,
                            token_timestamps: plan
                                .words
                                .then(|| transcript.token_times().iter().map(|&t| f64::from(t)).collect()),
                        }
                    })
                    .collect();
                let asr = decode_asr(&decode, &special, &outputs, &options)?;
                Ok(transcription(asr, &options))
            })
            .collect::<Result<Vec<_>, Error>>()
            .map(|results| TranscribeResponse { results });
        self.joiner.finish(r, results);
    }
}

/// Hears of the decoding for a [`Decode`]: whether each transcription's
/// request is still wanted, and each decoded window, whose segments go to a
/// streaming request.
struct Progress<'d, 'm, 'j, 'h, 'a>(&'d RefCell<Decode<'m, 'j, 'h, 'a>>);

impl Listener for Progress<'_, '_, '_, '_, '_> {
    fn keep_going(&mut self, i: usize) -> bool {
        let mut decode = self.0.borrow_mut();
        let r = decode.owners[i].request;
        decode.joiner.wanted(r)
    }

    fn decoded(&mut self, i: usize, transcript: &Transcript, new: usize) {
        let mut decode = self.0.borrow_mut();
        let r = decode.owners[i].request;
        let Some(answering) = decode.requests[r].as_ref().filter(|a| a.streams) else {
            return;
        };
        let model = decode.model;
        let language = transcript
            .language
            .filter(|_| answering.planned.return_language)
            .and_then(|id| language_of(model, id))
            .unwrap_or_default();
        let segments: Vec<TranscriptionChunk> = transcript.segments[new..]
            .iter()
            .map(|segment| TranscriptionChunk {
                text: segment_text(model, &segment.tokens),
                timestamp: vec![segment.start, segment.end],
                language: language.clone(),
            })
            .collect();
        let text = segments.iter().map(|s| s.text.as_str()).collect();
        let message = TranscribeStreamResponse {
            segments,
            text,
            ..Default::default()
        };
        decode.joiner.send(r, message);
    }
}

/// Transcribes a batch of requests and those that join it while it runs
/// (continuous batching): every input's windows decoded together, a
/// streaming request hearing of each segment as its window is decoded,
/// each request answered as soon as its inputs are transcribed.
pub fn transcribe(
    model: &WhisperModel,
    limits: &Limits,
    requests: Vec<Incoming<TranscribeRequest>>,
    joiner: &mut Joiner<TranscribeRequest, TranscribeResponse>,
) {
    // The batch starts within the budgets; the rest of it joins as room
    // frees, before later arrivals.
    joiner.hold(requests);
    let decode = RefCell::new(Decode {
        model,
        limits: *limits,
        joiner,
        requests: vec![],
        owners: vec![],
        running_tokens: 0,
    });
    transcribe_joined(
        &model.net,
        &model.generation,
        limits.batch_sequences.max as usize,
        &mut |rows| decode.borrow_mut().arrivals(rows),
        &mut Progress(&decode),
        &mut |i, transcript| decode.borrow_mut().done(i, transcript),
    );
}

/// A segment's text: its tokens but the timestamps and special tokens.
fn segment_text(model: &WhisperModel, tokens: &[i64]) -> String {
    let timestamp_begin = model.generation.no_timestamps_token_id.map_or(i64::MAX, |n| n + 1);
    let ids: Vec<u32> = tokens
        .iter()
        .filter(|&&t| t < timestamp_begin)
        .map(|&t| t as u32)
        .collect();
    model.tokenizer.decode(&ids, true).unwrap_or_default()
}

/// A language token's English name ("<|fr|>": "french").
fn language_of(model: &WhisperModel, token: i64) -> Option<String> {
    let text = model.tokenizer.decode(&[token as u32], false).ok()?;
    let code = text.strip_prefix("<|")?.strip_suffix("|>")?;
    language_name(code).map(str::to_string)
}

/// The ids `_decode_asr` needs, from the tokenizer and generation config.
fn special_tokens(model: &WhisperModel) -> WhisperSpecialTokens {
    let g = &model.generation;
    let id = |token: &str| model.tokenizer.token_id(token).map(i64::from);
    let eos = g.eos_token_id().unwrap_or(model.net.config.eos_token_id);
    WhisperSpecialTokens {
        timestamp_begin: g.no_timestamps_token_id.map_or(i64::MAX, |n| n + 1),
        eos_token_id: id("<|endoftext|>").unwrap_or(eos),
        prompt_token_id: id("<|startofprev|>").unwrap_or(-1),
        decoder_start_token_id: g
            .decoder_start_token_id
            .unwrap_or(model.net.config.decoder_start_token_id),
        all_special_ids: model.tokenizer.special_ids().into_iter().map(i64::from).collect(),
        language: None,
    }
}

/// `tokenizer.decode(ids)` as `_decode_asr` calls it: special tokens kept,
/// the tokenizer's clean-up of spaces, timestamp strings removed.
fn text_of(model: &WhisperModel, ids: &[i64]) -> String {
    let ids: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
    let text = model.tokenizer.decode(&ids, false).unwrap_or_default();
    remove_timestamps(&text)
}

/// The text without `<|1.00|>`-like timestamp strings.
fn remove_timestamps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("<|") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find("|>") {
            Some(end) if is_time(&after[..end]) => rest = &after[end + 2..],
            _ => {
                out.push_str("<|");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// "12.34": digits, a dot, digits.
fn is_time(s: &str) -> bool {
    let Some((whole, fraction)) = s.split_once('.') else {
        return false;
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction)
}

/// The response's form of `_decode_asr`'s output: the pipeline shows times
/// only with timestamps, the language only with return_language.
fn transcription(output: AsrOutput, options: &AsrOptions) -> Transcription {
    let timestamps = options.return_timestamps != Timestamps::Off;
    Transcription {
        text: output.text,
        chunks: output
            .chunks
            .unwrap_or_default()
            .into_iter()
            .map(|c| TranscriptionChunk {
                text: c.text,
                // pipeline()'s (start, None) and (None, None) leave the
                // missing times out.
                timestamp: match c.timestamp {
                    (Some(start), end) if timestamps => std::iter::once(start).chain(end).collect(),
                    _ => vec![],
                },
                language: c.language.filter(|_| options.return_language).unwrap_or_default(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_strings_are_removed_and_the_rest_kept() {
        assert_eq!(remove_timestamps("<|0.00|> Hello<|1.20|>"), " Hello");
        assert_eq!(
            remove_timestamps("a <|en|> b <|x.1|> <|3.|>"),
            "a <|en|> b <|x.1|> <|3.|>"
        );
        assert_eq!(remove_timestamps("<|"), "<|");
    }
}
