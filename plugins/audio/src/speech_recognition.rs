//! `automatic-speech-recognition` for CTC models, as transformers'
//! AutomaticSpeechRecognitionPipeline computes it: decode and mix down to
//! mono, resample to the feature extractor's rate, normalise, logits,
//! greedy CTC decoding; long audio in overlapping chunks whose strides are
//! cut off before the frames are joined; character or word timestamps.

use inferd_models::audio::ctc::{words, Piece};
use inferd_models::audio::decode::{decode, Audio};
use inferd_models::audio::resample::resample;
use inferd_models::auto::CtcModel;
use inferd_models::ModelError;
use inferd_sdk::proto::api::{TranscribeRequest, TranscribeResponse, Transcription, TranscriptionChunk};
use inferd_sdk::{Error, Limit};

/// Longest audio run through the model in one pass: the feature encoder's
/// activations grow with the length (about 100 MB per 10 s for the base
/// model), so longer audio must be chunked.
const MAX_UNCHUNKED_SECONDS: f64 = 60.0;
/// Chunks may overlap, but each must move on by at least this share of its
/// length, so that a request cannot ask for thousands of passes per second
/// of audio.
const MIN_STEP_FRACTION: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Timestamps {
    None,
    Char,
    Word,
}

/// The bounds on a speech recognition request's audio: seconds per file,
/// and seconds decoded per request.
#[derive(Debug, Clone, Copy)]
pub struct Seconds {
    pub file: Limit,
    pub request: Limit,
}

impl Seconds {
    /// `inputs[i]` decoded, refused past the per-file limit, its seconds
    /// added to `total` (the request's files decoded so far): refused with
    /// RESOURCE_EXHAUSTED once they hold more than a request may, before
    /// the next file is decoded.
    pub fn decode(&self, i: usize, data: &[u8], total: &mut f64) -> Result<Audio, Error> {
        let audio = decode(data, self.file.max as f64).map_err(|e| match e {
            ModelError::InvalidInput(message) => Error::invalid_argument(format!("inputs[{i}]: {message}")),
            other => Error::from(other),
        })?;
        *total += audio.samples.len() as f64 / audio.sample_rate as f64;
        self.request.check(
            total.ceil() as u64,
            "the audio of this request (seconds, summed over its files)",
        )?;
        Ok(audio)
    }
}

pub fn transcribe(
    model: &CtcModel,
    request: &TranscribeRequest,
    seconds: &Seconds,
) -> Result<TranscribeResponse, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument(
            "`inputs` is empty: send at least one audio file",
        ));
    }
    let whisper_options = [
        ("language", !request.language.is_empty()),
        ("task", !request.task.is_empty()),
        ("return_language", request.return_language),
        ("num_beams", request.num_beams.is_some()),
        ("temperature", request.temperature.is_some()),
        ("max_new_tokens", request.max_new_tokens.is_some()),
        ("seed", request.seed.is_some()),
    ];
    let sent: Vec<&str> = whisper_options
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    if !sent.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{} {} Whisper's; this model is a CTC (Wav2Vec2) model, which transcribes greedily in its one \
             language: leave {} out",
            sent.join(", "),
            if sent.len() == 1 { "is" } else { "are" },
            if sent.len() == 1 { "it" } else { "them" }
        )));
    }
    let timestamps = match request.return_timestamps.as_str() {
        "" => Timestamps::None,
        "char" => Timestamps::Char,
        "word" => Timestamps::Word,
        other => {
            return Err(Error::invalid_argument(format!(
                "return_timestamps `{other}`: CTC models give \"char\" or \"word\" timestamps"
            )))
        }
    };
    let rate = model.features.sampling_rate;
    let chunking = Chunking::from_request(request, model.net.inputs_to_logits_ratio(), rate)?;
    let mut results = Vec::with_capacity(request.inputs.len());
    let mut total = 0.0;
    for (i, input) in request.inputs.iter().enumerate() {
        let audio = seconds.decode(i, &input.data, &mut total)?;
        let samples = resample(&audio.samples, audio.sample_rate, rate);
        let min = model.net.min_samples() as usize;
        if samples.len() < min {
            return Err(Error::invalid_argument(format!(
                "inputs[{i}]: the audio is {:.1} ms long; the model needs at least {:.1} ms",
                samples.len() as f64 * 1e3 / rate as f64,
                min as f64 * 1e3 / rate as f64
            )));
        }
        let ids = match &chunking {
            Some(c) => c.frame_ids(model, &samples)?,
            None if samples.len() as f64 > MAX_UNCHUNKED_SECONDS * rate as f64 => {
                return Err(Error::invalid_argument(format!(
                    "inputs[{i}]: the audio is {:.1} s long; at most {MAX_UNCHUNKED_SECONDS} s is transcribed in one \
                     pass: set chunk_length_s (e.g. 30) for longer audio",
                    samples.len() as f64 / rate as f64
                )))
            }
            None => frame_ids(model, &samples)?,
        };
        let (text, chars) = model.vocab.decode(&ids);
        let pieces = match timestamps {
            Timestamps::None => vec![],
            Timestamps::Char => chars,
            Timestamps::Word => words(&chars),
        };
        let seconds_per_frame = |frame: usize| (frame as i64 * model.net.inputs_to_logits_ratio()) as f64 / rate as f64;
        results.push(Transcription {
            text,
            chunks: pieces
                .into_iter()
                .map(|Piece { text, start, end }| TranscriptionChunk {
                    text,
                    timestamp: vec![seconds_per_frame(start), seconds_per_frame(end)],
                    language: String::new(),
                })
                .collect(),
        });
    }
    Ok(TranscribeResponse { results })
}

/// The most likely token of every frame of one signal.
fn frame_ids(model: &CtcModel, samples: &[f32]) -> Result<Vec<i64>, Error> {
    let logits = model.logits(&model.features.input_values(samples))?;
    Vec::<i64>::try_from(logits.argmax(-1, false)).map_err(|e| Error::internal(e.to_string()))
}

/// Python's round(): halves to even.
fn round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// pipeline()'s chunking, in samples, aligned to whole frames (Whisper's
/// "frames" are samples: its config has no inputs_to_logits_ratio).
#[derive(Debug, PartialEq)]
pub(crate) struct Chunking {
    chunk: usize,
    left: usize,
    right: usize,
    /// Samples per frame.
    ratio: i64,
}

impl Chunking {
    pub(crate) fn from_request(request: &TranscribeRequest, ratio: i64, rate: u32) -> Result<Option<Self>, Error> {
        let chunk_s = request.chunk_length_s.unwrap_or(0.0);
        if !(0.0..=MAX_UNCHUNKED_SECONDS).contains(&chunk_s) {
            return Err(Error::invalid_argument(format!(
                "chunk_length_s {chunk_s}: expected seconds from 0 to {MAX_UNCHUNKED_SECONDS}"
            )));
        }
        if chunk_s == 0.0 {
            if !request.stride_length_s.is_empty() {
                return Err(Error::invalid_argument("stride_length_s needs chunk_length_s"));
            }
            return Ok(None);
        }
        let (left_s, right_s) = match request.stride_length_s.as_slice() {
            [] => (chunk_s / 6.0, chunk_s / 6.0),
            [both] => (*both, *both),
            [left, right] => (*left, *right),
            more => {
                return Err(Error::invalid_argument(format!(
                    "stride_length_s has {} values; give one (both sides) or two (left, right)",
                    more.len()
                )))
            }
        };
        if !(left_s.is_finite() && right_s.is_finite() && left_s >= 0.0 && right_s >= 0.0) || left_s + right_s > chunk_s
        {
            return Err(Error::invalid_argument(format!(
                "stride_length_s: expected seconds >= 0, less than chunk_length_s ({chunk_s} s) together"
            )));
        }
        let align = |seconds: f64| (round(seconds * rate as f64 / ratio as f64) * ratio).max(0) as usize;
        let (chunk, left, right) = (align(chunk_s), align(left_s), align(right_s));
        if chunk <= left + right {
            return Err(Error::invalid_argument(format!(
                "chunk_length_s ({chunk_s} s) must be longer than the two strides together ({left_s} + {right_s} s)"
            )));
        }
        if ((chunk - left - right) as f64) < chunk as f64 * MIN_STEP_FRACTION {
            return Err(Error::invalid_argument(format!(
                "the strides ({left_s} + {right_s} s) leave chunks of {chunk_s} s moving on by less than a tenth \
                 of their length; use shorter strides"
            )));
        }
        Ok(Some(Chunking {
            chunk,
            left,
            right,
            ratio,
        }))
    }

    /// The frames of every chunk, less their strides, joined.
    fn frame_ids(&self, model: &CtcModel, samples: &[f32]) -> Result<Vec<i64>, Error> {
        let mut ids = Vec::new();
        for piece in self.pieces(samples.len()) {
            let chunk = &samples[piece.start..piece.start + piece.len];
            if chunk.len() < model.net.min_samples() as usize {
                // Too short to give a frame (only a tail can be).
                continue;
            }
            let frames = frame_ids(model, chunk)?;
            let (keep_from, keep_to) = piece.kept_frames(self.ratio);
            let from = keep_from.min(frames.len());
            let to = keep_to.clamp(from, frames.len());
            ids.extend_from_slice(&frames[from..to]);
        }
        Ok(ids)
    }

    /// The chunks of `n` samples, as pipeline()'s chunk_iter cuts them.
    pub(crate) fn pieces(&self, n: usize) -> Vec<ChunkPiece> {
        let step = self.chunk - self.left - self.right;
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < n {
            let end = start + self.chunk;
            let len = end.min(n) - start;
            let left = if start == 0 { 0 } else { self.left };
            let last = end >= n;
            let right = if last { 0 } else { self.right };
            if len > left {
                pieces.push(ChunkPiece {
                    start,
                    len,
                    left,
                    right,
                });
            }
            if last {
                break;
            }
            start += step;
        }
        pieces
    }
}

#[derive(Debug, PartialEq)]
pub(crate) struct ChunkPiece {
    pub(crate) start: usize,
    pub(crate) len: usize,
    /// Samples of overlap to drop on each side.
    pub(crate) left: usize,
    pub(crate) right: usize,
}

impl ChunkPiece {
    /// The frames to keep, `from..to`, as pipeline()'s rescale_stride works
    /// them out: from a frame count rounded from the samples (which may be
    /// one more than the model gives), not the real one.
    fn kept_frames(&self, ratio: i64) -> (usize, usize) {
        let n = self.len as f64;
        let token_n = round(n * (1.0 / ratio as f64));
        let left = round(self.left as f64 / n * token_n as f64);
        let right = round(self.right as f64 / n * token_n as f64);
        (left.max(0) as usize, (token_n - right).max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(chunk: f64, stride: &[f64]) -> TranscribeRequest {
        TranscribeRequest {
            chunk_length_s: Some(chunk),
            stride_length_s: stride.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn chunks_align_to_frames_and_round_like_python() {
        // 8 s, default stride 8/6 s: 21333.3 samples -> 66.67 frames -> 67 x 320.
        let c = Chunking::from_request(&request(8.0, &[]), 320, 16_000)
            .unwrap()
            .unwrap();
        assert_eq!((c.chunk, c.left, c.right), (128_000, 21_440, 21_440));
        let c = Chunking::from_request(&request(8.0, &[]), 160, 16_000)
            .unwrap()
            .unwrap();
        assert_eq!((c.chunk, c.left, c.right), (128_000, 21_280, 21_280));
        let c = Chunking::from_request(&request(10.0, &[4.0, 2.0]), 320, 16_000)
            .unwrap()
            .unwrap();
        assert_eq!((c.chunk, c.left, c.right), (160_000, 64_000, 32_000));
        assert!(Chunking::from_request(&request(2.0, &[1.0]), 320, 16_000).is_err());
        assert!(Chunking::from_request(&request(2.0, &[1.0, 1.0, 1.0]), 320, 16_000).is_err());
        assert_eq!(Chunking::from_request(&request(0.0, &[]), 320, 16_000).unwrap(), None);
        // Overlaps that barely move on, and absurd lengths.
        assert!(Chunking::from_request(&request(10.0, &[4.99]), 320, 16_000).is_err());
        assert!(Chunking::from_request(&request(1e300, &[]), 320, 16_000).is_err());
        assert_eq!(round(2.5), 2);
        assert_eq!(round(3.5), 4);
    }

    #[test]
    fn pieces_follow_chunk_iter() {
        let c = Chunking {
            chunk: 160_000,
            left: 64_000,
            right: 32_000,
            ratio: 320,
        };
        let pieces = c.pieces(960_000);
        // Step 64000: starts 0, 64000, ..., the last reaching the end.
        assert_eq!(
            pieces[0],
            ChunkPiece {
                start: 0,
                len: 160_000,
                left: 0,
                right: 32_000
            }
        );
        assert_eq!(
            pieces[1],
            ChunkPiece {
                start: 64_000,
                len: 160_000,
                left: 64_000,
                right: 32_000
            }
        );
        let last = pieces.last().unwrap();
        assert_eq!(last.start + last.len, 960_000);
        assert_eq!(last.right, 0);
        // 160000 samples: 500 frames by the rounded count (the model gives 499).
        assert_eq!(pieces[0].kept_frames(320), (0, 400));
        assert_eq!(pieces[1].kept_frames(320), (200, 400));
    }
}
