//! `automatic-speech-recognition` on Whisper, as transformers'
//! AutomaticSpeechRecognitionPipeline runs it: decode, mix down to mono,
//! resample to 16 kHz, log-mel features (30 s, padded; longer audio whole,
//! decoded window after window, or with chunk_length_s in overlapping
//! chunks, each decoded alone and stitched by `_decode_asr`), Whisper's
//! `generate` with the request's
//! language, task and settings, and the tokens turned into text, segments
//! and language as the tokenizer's `_decode_asr` does. The inputs of every
//! request in a batch are decoded together.

use inferd_models::audio::decode::decode;
use inferd_models::audio::resample::resample;
use inferd_models::audio::whisper_generate::{
    plan, transcribe, Audio, Listener, Plan, Transcript, WhisperOptions, TIME_PRECISION,
};
use inferd_models::audio::whisper_text::{
    decode_asr, language_name, AsrOptions, AsrOutput, ChunkTokens, ReturnTimestamps as Timestamps, Stride,
    WhisperSpecialTokens,
};
use inferd_models::auto::WhisperModel;
use inferd_models::generation::GenerationSettings;
use inferd_models::ModelError;
use inferd_sdk::dispatch::Incoming;
use inferd_sdk::proto::api::{
    TranscribeRequest, TranscribeResponse, TranscribeStreamResponse, Transcription, TranscriptionChunk,
};
use inferd_sdk::{Emitter, Error};
use tch::Tensor;

use crate::speech_recognition::Chunking;

/// One request, checked: its plan, what it wants back, and each input's
/// windows: the whole audio, or with chunk_length_s its chunks.
struct Planned {
    plan: Plan,
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
fn prepare(model: &WhisperModel, request: &TranscribeRequest, max_seconds: f64) -> Result<Planned, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument(
            "`inputs` is empty: send at least one audio file",
        ));
    }
    let (mut options, timestamps) = options(request)?;
    let rate = model.features.config.sampling_rate;
    let window = model.features.config.n_samples();
    let mut samples = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        let audio = decode(&input.data, max_seconds).map_err(|e| match e {
            ModelError::InvalidInput(message) => Error::invalid_argument(format!("inputs[{i}]: {message}")),
            other => Error::from(other),
        })?;
        samples.push(resample(&audio.samples, audio.sample_rate, rate));
    }
    // pipeline()'s chunks (Whisper aligns them to samples), each decoded
    // as 30 s of audio; without chunking, audio over 30 s is decoded
    // window after window, which needs the timestamp tokens (generate turns
    // them on itself).
    let chunking = Chunking::from_request(request, 1, rate)?;
    let long = chunking.is_none() && samples.iter().any(|s| s.len() > window);
    if long {
        if model.generation.no_timestamps_token_id.is_none() {
            return Err(Error::invalid_argument(
                "audio over 30 s needs a model with timestamp tokens, which this one lacks: set chunk_length_s \
                 (e.g. 30)",
            ));
        }
        options.timestamps = true;
    }
    let plan = plan(
        &model.generation,
        &options,
        model.net.config.max_target_positions as usize,
    )?;
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
        plan,
        timestamps,
        return_language: request.return_language,
        inputs,
    })
}

/// Hears of the decoding: whether each window's request is still wanted,
/// and each decoded window, whose segments go to a streaming request.
struct Progress<'a, 'e> {
    model: &'a WhisperModel,
    emitter: &'a mut Emitter<'e>,
    /// Each window's request.
    owners: &'a [usize],
    /// Each window's request streams it (one input, not chunked), and wants
    /// its language.
    streamed: &'a [Option<bool>],
}

impl Listener for Progress<'_, '_> {
    fn keep_going(&mut self, i: usize) -> bool {
        self.emitter.wanted(self.owners[i])
    }

    fn decoded(&mut self, i: usize, transcript: &Transcript, new: usize) {
        let Some(return_language) = self.streamed[i] else {
            return;
        };
        let language = transcript
            .language
            .filter(|_| return_language)
            .and_then(|id| language_of(self.model, id))
            .unwrap_or_default();
        let segments: Vec<TranscriptionChunk> = transcript.segments[new..]
            .iter()
            .map(|segment| TranscriptionChunk {
                text: segment_text(self.model, &segment.tokens),
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
        self.emitter.send(self.owners[i], message);
    }
}

/// Transcribes the requests' inputs together; one result per request.
/// A streaming request hears of each segment as its window is decoded.
pub fn transcribe_all(
    model: &WhisperModel,
    requests: Vec<Incoming<TranscribeRequest>>,
    max_seconds: f64,
    emitter: &mut Emitter,
) -> Vec<Result<TranscribeResponse, Error>> {
    let planned: Vec<Result<Planned, Error>> = requests
        .iter()
        .map(|r| prepare(model, &r.request, max_seconds))
        .collect();
    let mut audio = Vec::new();
    let mut owners = Vec::new();
    let mut streamed = Vec::new();
    for (r, p) in planned.iter().enumerate() {
        let Ok(p) = p else { continue };
        let whole = p.inputs.iter().all(|windows| windows.len() == 1);
        for window in p.inputs.iter().flatten() {
            audio.push(Audio {
                features: &window.features,
                plan: &p.plan,
                num_frames: window.num_frames,
            });
            owners.push(r);
            streamed.push((requests[r].stream && whole).then_some(p.return_language));
        }
    }
    let mut progress = Progress {
        model,
        emitter,
        owners: &owners,
        streamed: &streamed,
    };
    let mut transcripts = transcribe(&model.net, &model.generation, &audio, &mut progress).into_iter();
    let special = special_tokens(model);
    let decode = |ids: &[i64]| text_of(model, ids);
    planned
        .into_iter()
        .map(|p| {
            let p = p?;
            let options = AsrOptions {
                return_timestamps: p.timestamps,
                return_language: p.return_language,
                time_precision: TIME_PRECISION,
            };
            let results = p
                .inputs
                .iter()
                .map(|windows| {
                    let outputs: Vec<ChunkTokens> = windows
                        .iter()
                        .map(|w| {
                            let transcript = transcripts.next().expect("a transcript per window");
                            ChunkTokens {
                                tokens: transcript.tokens(),
                                stride: w.stride,
                                token_timestamps: p
                                    .plan
                                    .words
                                    .then(|| transcript.token_times().iter().map(|&t| f64::from(t)).collect()),
                            }
                        })
                        .collect();
                    let asr = decode_asr(&decode, &special, &outputs, &options)?;
                    Ok(transcription(asr, &options))
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(TranscribeResponse { results })
        })
        .collect()
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
