//! Whisper's text side of speech recognition, as transformers 4.57.6 writes
//! it in `tokenization_whisper.py` and `generation_whisper.py`:
//! - `_decode_asr`, with which the automatic-speech-recognition pipeline
//!   turns the tokens Whisper generated for each audio chunk into the text,
//!   its segments or words with their times, and the languages spoken;
//!   chunks cut with strides are stitched by `_find_longest_common_sequence`;
//! - words from tokens (`_combine_tokens_into_words`): split where the text
//!   decodes to whole characters for languages written without spaces, at
//!   spaces and punctuation otherwise, then punctuation merged into its
//!   neighbours (`_merge_punctuations`);
//! - the maths of word timestamps in `_extract_token_timestamps`: the
//!   cross-attention weights normalised and smoothed (`_median_filter`),
//!   aligned to the audio frames by dynamic time warping, and each token
//!   given the time of the frame where the path first reaches it;
//! - the language table (`LANGUAGES`, `TO_LANGUAGE_CODE`).
//!
//! Text decoding stays with the caller ([`WhisperDecode`]): this module
//! only needs the ids of the special tokens ([`WhisperSpecialTokens`]).

use std::collections::HashSet;

use tch::{Kind, Tensor};

use crate::{ModelError, Result};

/// transformers' `LANGUAGES`: Whisper's language codes and the names the
/// pipeline reports, in the tokenizer's order.
pub const LANGUAGES: [(&str, &str); 100] = [
    ("en", "english"),
    ("zh", "chinese"),
    ("de", "german"),
    ("es", "spanish"),
    ("ru", "russian"),
    ("ko", "korean"),
    ("fr", "french"),
    ("ja", "japanese"),
    ("pt", "portuguese"),
    ("tr", "turkish"),
    ("pl", "polish"),
    ("ca", "catalan"),
    ("nl", "dutch"),
    ("ar", "arabic"),
    ("sv", "swedish"),
    ("it", "italian"),
    ("id", "indonesian"),
    ("hi", "hindi"),
    ("fi", "finnish"),
    ("vi", "vietnamese"),
    ("he", "hebrew"),
    ("uk", "ukrainian"),
    ("el", "greek"),
    ("ms", "malay"),
    ("cs", "czech"),
    ("ro", "romanian"),
    ("da", "danish"),
    ("hu", "hungarian"),
    ("ta", "tamil"),
    ("no", "norwegian"),
    ("th", "thai"),
    ("ur", "urdu"),
    ("hr", "croatian"),
    ("bg", "bulgarian"),
    ("lt", "lithuanian"),
    ("la", "latin"),
    ("mi", "maori"),
    ("ml", "malayalam"),
    ("cy", "welsh"),
    ("sk", "slovak"),
    ("te", "telugu"),
    ("fa", "persian"),
    ("lv", "latvian"),
    ("bn", "bengali"),
    ("sr", "serbian"),
    ("az", "azerbaijani"),
    ("sl", "slovenian"),
    ("kn", "kannada"),
    ("et", "estonian"),
    ("mk", "macedonian"),
    ("br", "breton"),
    ("eu", "basque"),
    ("is", "icelandic"),
    ("hy", "armenian"),
    ("ne", "nepali"),
    ("mn", "mongolian"),
    ("bs", "bosnian"),
    ("kk", "kazakh"),
    ("sq", "albanian"),
    ("sw", "swahili"),
    ("gl", "galician"),
    ("mr", "marathi"),
    ("pa", "punjabi"),
    ("si", "sinhala"),
    ("km", "khmer"),
    ("sn", "shona"),
    ("yo", "yoruba"),
    ("so", "somali"),
    ("af", "afrikaans"),
    ("oc", "occitan"),
    ("ka", "georgian"),
    ("be", "belarusian"),
    ("tg", "tajik"),
    ("sd", "sindhi"),
    ("gu", "gujarati"),
    ("am", "amharic"),
    ("yi", "yiddish"),
    ("lo", "lao"),
    ("uz", "uzbek"),
    ("fo", "faroese"),
    ("ht", "haitian creole"),
    ("ps", "pashto"),
    ("tk", "turkmen"),
    ("nn", "nynorsk"),
    ("mt", "maltese"),
    ("sa", "sanskrit"),
    ("lb", "luxembourgish"),
    ("my", "myanmar"),
    ("bo", "tibetan"),
    ("tl", "tagalog"),
    ("mg", "malagasy"),
    ("as", "assamese"),
    ("tt", "tatar"),
    ("haw", "hawaiian"),
    ("ln", "lingala"),
    ("ha", "hausa"),
    ("ba", "bashkir"),
    ("jw", "javanese"),
    ("su", "sundanese"),
    ("yue", "cantonese"),
];

/// The names `TO_LANGUAGE_CODE` accepts beside those of [`LANGUAGES`].
const LANGUAGE_ALIASES: [(&str, &str); 12] = [
    ("burmese", "my"),
    ("valencian", "ca"),
    ("flemish", "nl"),
    ("haitian", "ht"),
    ("letzeburgesch", "lb"),
    ("pushto", "ps"),
    ("panjabi", "pa"),
    ("moldavian", "ro"),
    ("moldovan", "ro"),
    ("sinhalese", "si"),
    ("castilian", "es"),
    ("mandarin", "zh"),
];

/// Languages written without spaces between words, whose words
/// `_combine_tokens_into_words` cuts at character boundaries instead.
const UNSPACED_LANGUAGES: [&str; 6] = ["chinese", "japanese", "thai", "lao", "myanmar", "cantonese"];

/// `_combine_tokens_into_words`' default punctuation that joins the word
/// after it...
pub const PREPEND_PUNCTUATIONS: &str = "\"'“¡¿([{-";
/// ...and the word before it.
pub const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";

/// What `_split_tokens_on_spaces` counts as a punctuation word: Python's
/// `string.punctuation`, tested as a substring (so `""` and `"()"` count).
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// `_decode_asr`'s `segment_size`: the encoder frames of one 30 s window,
/// by which long-form timestamps that start again from zero are offset.
const SEGMENT_SIZE: f64 = 1500.0;

/// The seconds per step of the timestamp tokens and of the cross-attention
/// frames (30 s over 1500 encoder positions).
pub const TIME_PRECISION: f64 = 0.02;

/// The full name of a language code ("fr" → "french"), as `LANGUAGES.get`.
pub fn language_name(code: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

/// The code of a language given by name, alias or code ("french",
/// "castilian", "fr"), as generate's `_retrieve_init_tokens` looks it up:
/// first in `TO_LANGUAGE_CODE`'s keys, then among its values.
pub fn language_code(language: &str) -> Option<&'static str> {
    LANGUAGES
        .iter()
        .map(|(code, name)| (*name, *code))
        .chain(LANGUAGE_ALIASES)
        .find(|(name, _)| *name == language)
        .map(|(_, code)| code)
        .or_else(|| {
            LANGUAGES
                .iter()
                .find(|(code, _)| *code == language)
                .map(|(code, _)| *code)
        })
}

/// The tokenizer's text decoding as `_decode_asr` calls it:
/// `tokenizer.decode(ids)` with its defaults. Special tokens stay
/// (`[<|fr|>]` reads "<|fr|>"), the bytes of byte-level BPE tokens are
/// joined and read as UTF-8 with U+FFFD for what is not valid, tokenization
/// spaces are cleaned up when tokenizer_config.json asks for it, and
/// `<|1.00|>` timestamp strings are removed.
pub trait WhisperDecode {
    fn decode(&self, ids: &[i64]) -> String;
}

impl<F: Fn(&[i64]) -> String> WhisperDecode for F {
    fn decode(&self, ids: &[i64]) -> String {
        self(ids)
    }
}

/// The token ids `_decode_asr` consults, as the tokenizer gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct WhisperSpecialTokens {
    /// The id of `<|notimestamps|>` plus one: ids from here are timestamps.
    pub timestamp_begin: i64,
    /// `<|endoftext|>`: subwords from this id up are words of their own.
    pub eos_token_id: i64,
    /// `<|startofprev|>`: a sequence starting with it carries a prompt.
    pub prompt_token_id: i64,
    /// `<|startoftranscript|>`: where the transcript after a prompt starts.
    pub decoder_start_token_id: i64,
    /// `tokenizer.all_special_ids` (languages, tasks and the like).
    pub all_special_ids: HashSet<i64>,
    /// `tokenizer.language`, the words' language where no language token
    /// was seen (English when this is None too).
    pub language: Option<String>,
}

/// The pipeline's `return_timestamps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnTimestamps {
    /// None or False: text only.
    Off,
    /// True: the segments between timestamp tokens.
    Segments,
    /// "word": words, timed by the tokens' cross-attention alignment.
    Words,
}

impl ReturnTimestamps {
    fn any(self) -> bool {
        self != ReturnTimestamps::Off
    }
}

/// `_decode_asr`'s keyword arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AsrOptions {
    pub return_timestamps: ReturnTimestamps,
    pub return_language: bool,
    /// Seconds per timestamp token: the feature extractor's `chunk_length`
    /// over the model's `max_source_positions` (0.02 for Whisper).
    pub time_precision: f64,
}

/// An audio chunk's share of the audio: its length and the strides on each
/// side, which it shares with its neighbours, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stride {
    pub chunk_len: f64,
    pub left: f64,
    pub right: f64,
}

/// What the model produced for one audio chunk (one of `model_outputs`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChunkTokens {
    /// The generated sequence, prompt and special tokens included.
    pub tokens: Vec<i64>,
    /// Present when the audio was cut into chunks.
    pub stride: Option<Stride>,
    /// Seconds per token of `tokens` (before any prompt is stripped), as
    /// [`token_timestamps`] gives them (f32, widened as `tolist()` does);
    /// needed for word timestamps.
    pub token_timestamps: Option<Vec<f64>>,
}

/// A segment or a word of the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct AsrChunk {
    pub text: String,
    /// (start, end) in seconds. The end is None where Whisper ended without
    /// a closing timestamp, the start where it gave none (or when
    /// timestamps were not asked for: the pipeline then shows no times).
    pub timestamp: (Option<f64>, Option<f64>),
    /// The language's name ("english"), None where Whisper gave no language
    /// token. The pipeline shows it (null included) only with
    /// `return_language`.
    pub language: Option<String>,
}

/// `_decode_asr`'s result: the text, and the chunks when timestamps or the
/// language were asked for (segments, or words with "word").
#[derive(Debug, Clone, PartialEq)]
pub struct AsrOutput {
    pub text: String,
    pub chunks: Option<Vec<AsrChunk>>,
}

/// A token's (start, end) in seconds, for word timestamps.
pub type TokenSpan = (f64, f64);

/// transformers' `_decode_asr`: the pipeline's text, segments or words and
/// languages from the tokens of each audio chunk. Text tokens pile up until
/// a timestamp closes a segment; timestamps inside a chunk's strides wait
/// until the chunks on either side are stitched together; a language token
/// that changes the language closes the text so far when there are no
/// timestamps to close it.
pub fn decode_asr(
    decoder: &dyn WhisperDecode,
    special: &WhisperSpecialTokens,
    outputs: &[ChunkTokens],
    options: &AsrOptions,
) -> Result<AsrOutput> {
    let mut state = AsrState::new(decoder, special, options);
    for output in outputs {
        state.read_chunk(output)?;
    }
    state.finish()
}

/// A segment while it is being read (`_decode_asr`'s `chunk`).
#[derive(Debug, Default)]
struct Segment {
    language: Option<&'static str>,
    start: Option<f64>,
    end: Option<f64>,
    text: String,
    words: Vec<AsrChunk>,
}

impl Segment {
    fn new(language: Option<&'static str>) -> Self {
        Segment {
            language,
            ..Segment::default()
        }
    }
}

/// Where a chunk's strides lie in timestamp tokens: timestamps before
/// `first_timestamp` (in the left stride) do not open a segment when text
/// is waiting to be stitched, and from `last_timestamp` on (in the right
/// stride) they are skipped, each with the one after it.
struct StrideBounds {
    first_timestamp: f64,
    last_timestamp: Option<i64>,
}

/// Long-form generation concatenates windows whose timestamps start again
/// from zero; this follows the offset of the current window.
#[derive(Default)]
struct WindowClock {
    cur_max_timestamp: f64,
    prev_segments_len: f64,
    penultimate_timestamp: f64,
}

impl WindowClock {
    /// Reads the timestamp at `i` (`timestamp` seconds) and returns the
    /// seconds of the windows before it. A timestamp below the largest so
    /// far starts a new window: after a lone closing timestamp the previous
    /// window was a full one, after a pair it ended at its last segment.
    fn advance(&mut self, tokens: &[i64], i: usize, timestamp: f64, timestamp_begin: i64, precision: f64) -> f64 {
        if timestamp < self.cur_max_timestamp {
            let last_was_single_ending =
                i >= 2 && !(tokens[i - 1] >= timestamp_begin && tokens[i - 2] >= timestamp_begin);
            if last_was_single_ending {
                self.prev_segments_len += precision * SEGMENT_SIZE;
            } else {
                self.cur_max_timestamp = self.penultimate_timestamp;
                self.prev_segments_len += self.penultimate_timestamp;
            }
        }
        self.penultimate_timestamp = self.cur_max_timestamp;
        self.cur_max_timestamp = timestamp;
        self.prev_segments_len
    }
}

/// `_decode_asr`'s state machine, carried from one chunk to the next.
struct AsrState<'a> {
    decoder: &'a dyn WhisperDecode,
    special: &'a WhisperSpecialTokens,
    options: &'a AsrOptions,
    chunks: Vec<Segment>,
    chunk: Segment,
    last_language: Option<&'static str>,
    time_offset: f64,
    /// Text tokens of the chunks read since the last closed segment, to be
    /// stitched together, and their spans for word timestamps.
    previous_tokens: Vec<Vec<i64>>,
    previous_spans: Vec<Vec<TokenSpan>>,
    skip: bool,
}

impl<'a> AsrState<'a> {
    fn new(decoder: &'a dyn WhisperDecode, special: &'a WhisperSpecialTokens, options: &'a AsrOptions) -> Self {
        AsrState {
            decoder,
            special,
            options,
            chunks: Vec::new(),
            chunk: Segment::new(None),
            last_language: None,
            time_offset: 0.0,
            previous_tokens: Vec::new(),
            previous_spans: Vec::new(),
            skip: false,
        }
    }

    fn words(&self) -> bool {
        self.options.return_timestamps == ReturnTimestamps::Words
    }

    fn read_chunk(&mut self, output: &ChunkTokens) -> Result<()> {
        let special = self.special;
        let precision = self.options.time_precision;
        let tokens = strip_prompt(&output.tokens, special.prompt_token_id, special.decoder_start_token_id);
        let token_times = if self.words() {
            Some(output.token_timestamps.as_deref().ok_or_else(|| {
                ModelError::InvalidInput("word timestamps need the token timestamps of every chunk".into())
            })?)
        } else {
            None
        };
        let mut bounds = StrideBounds {
            first_timestamp: special.timestamp_begin as f64,
            last_timestamp: None,
        };
        if let Some(stride) = output.stride {
            self.time_offset -= stride.left;
            if stride.left != 0.0 {
                bounds.first_timestamp = stride.left / precision + special.timestamp_begin as f64;
            }
            if stride.right != 0.0 {
                let right_stride_start = stride.chunk_len - stride.right;
                bounds.last_timestamp =
                    right_stride_timestamp(tokens, special.timestamp_begin, precision, right_stride_start);
            }
        }
        let mut clock = WindowClock::default();
        let mut current_tokens = Vec::new();
        let mut current_spans = Vec::new();
        for (i, &token) in tokens.iter().enumerate() {
            if special.all_special_ids.contains(&token) {
                self.read_special(token, &mut current_tokens);
            } else if token >= special.timestamp_begin {
                let steps = (token - special.timestamp_begin) as f64;
                let prev_segments_len = clock.advance(tokens, i, steps * precision, special.timestamp_begin, precision);
                let time = py_round2(steps * precision + self.time_offset + prev_segments_len);
                self.read_timestamp(token, time, &bounds, &mut current_tokens, &mut current_spans)?;
            } else {
                current_tokens.push(token);
                if let Some(times) = token_times {
                    current_spans.push(token_span(times, i, self.time_offset)?);
                }
            }
        }
        if let Some(stride) = output.stride {
            self.time_offset += stride.chunk_len - stride.right;
        }
        if !current_tokens.is_empty() {
            self.previous_tokens.push(current_tokens);
            if self.words() {
                self.previous_spans.push(current_spans);
            }
        } else if self.previous_tokens.iter().all(Vec::is_empty) {
            // Nothing waits to be stitched: a segment opened in this chunk
            // is forgotten (its start timestamp with it).
            self.chunk = Segment::new(self.last_language);
            self.previous_tokens.clear();
            self.previous_spans.clear();
        }
        Ok(())
    }

    /// A language token sets the language of the segment; without
    /// timestamps, a change of language closes the text so far.
    fn read_special(&mut self, token: i64, current_tokens: &mut Vec<i64>) {
        let text = self.decoder.decode(&[token]);
        let Some(language) = language_name(py_slice(&text, 2, 2)) else {
            return;
        };
        let changed = self.last_language.is_some_and(|last| last != language);
        if changed && !self.options.return_timestamps.any() {
            self.previous_tokens.push(std::mem::take(current_tokens));
            let (resolved, _) = find_longest_common_sequence(&self.previous_tokens, None);
            self.chunk.text = self.decoder.decode(&resolved);
            self.chunks
                .push(std::mem::replace(&mut self.chunk, Segment::new(self.last_language)));
            self.previous_tokens.clear();
        }
        self.chunk.language = Some(language);
        self.last_language = Some(language);
    }

    fn read_timestamp(
        &mut self,
        token: i64,
        time: f64,
        bounds: &StrideBounds,
        current_tokens: &mut Vec<i64>,
        current_spans: &mut Vec<TokenSpan>,
    ) -> Result<()> {
        // `if last_timestamp and ...`: a token id of 0 counts as none.
        if bounds.last_timestamp.is_some_and(|last| last != 0 && token >= last) {
            self.skip = true;
        } else if self.skip || (!self.previous_tokens.is_empty() && (token as f64) < bounds.first_timestamp) {
            self.skip = false;
        } else if self.chunk.start.is_none() {
            self.chunk.start = Some(time);
        } else if self.chunk.start == Some(time) {
            // Whisper repeated the opening timestamp: it stays an opening.
        } else {
            self.chunk.end = Some(time);
            self.previous_tokens.push(std::mem::take(current_tokens));
            if self.words() {
                self.previous_spans.push(std::mem::take(current_spans));
            }
            self.close_segment()?;
            self.previous_tokens.clear();
            self.previous_spans.clear();
            current_spans.clear();
        }
        Ok(())
    }

    /// Stitches the waiting tokens, decodes them into the segment (and its
    /// words), keeps the segment and opens the next one.
    fn close_segment(&mut self) -> Result<()> {
        let (resolved, spans) = find_longest_common_sequence(&self.previous_tokens, Some(&self.previous_spans));
        self.chunk.text = self.decoder.decode(&resolved);
        if self.words() {
            self.chunk.words =
                collate_word_timestamps(self.decoder, self.special, &resolved, &spans, self.last_language)?;
        }
        let segment = std::mem::replace(&mut self.chunk, Segment::new(self.last_language));
        self.chunks.push(segment);
        Ok(())
    }

    fn finish(mut self) -> Result<AsrOutput> {
        if !self.previous_tokens.is_empty() {
            if self.options.return_timestamps.any() {
                tracing::warn!(
                    "Whisper did not predict an ending timestamp, which can happen if audio is cut off in the \
                     middle of a word"
                );
            }
            self.close_segment()?;
        }
        let text = self.chunks.iter().map(|c| c.text.as_str()).collect();
        let chunks = match self.options.return_timestamps {
            ReturnTimestamps::Words => Some(self.chunks.into_iter().flat_map(|c| c.words).collect()),
            ReturnTimestamps::Segments => Some(self.chunks.into_iter().map(segment_chunk).collect()),
            ReturnTimestamps::Off if self.options.return_language => {
                Some(self.chunks.into_iter().map(segment_chunk).collect())
            }
            ReturnTimestamps::Off => None,
        };
        Ok(AsrOutput { text, chunks })
    }
}

fn segment_chunk(segment: Segment) -> AsrChunk {
    AsrChunk {
        text: segment.text,
        timestamp: (segment.start, segment.end),
        language: segment.language.map(str::to_string),
    }
}

/// `_strip_prompt`: a sequence that opens with `<|startofprev|>` keeps only
/// what follows its prompt, from `<|startoftranscript|>` (nothing if absent).
fn strip_prompt(tokens: &[i64], prompt_token_id: i64, decoder_start_token_id: i64) -> &[i64] {
    if tokens.first() != Some(&prompt_token_id) {
        return tokens;
    }
    match tokens.iter().position(|&t| t == decoder_start_token_id) {
        Some(start) => &tokens[start..],
        None => &[],
    }
}

/// The timestamp token from which a chunk's timestamps are skipped as lying
/// in its right stride: scanning back from the end, the last timestamp
/// always counts, and each one before it until one starts before the
/// stride.
fn right_stride_timestamp(
    tokens: &[i64],
    timestamp_begin: i64,
    precision: f64,
    right_stride_start: f64,
) -> Option<i64> {
    let mut last = None;
    for &token in tokens.iter().rev().filter(|&&t| t >= timestamp_begin) {
        if last.is_some() && (token - timestamp_begin) as f64 * precision < right_stride_start {
            break;
        }
        last = Some(token);
    }
    last
}

/// A text token's span for word timestamps: from the previous token's time
/// (0 for the first) to its own, shifted by the chunk's offset. The times
/// are indexed by position in the sequence after the prompt was stripped,
/// though they were computed for the whole sequence, as transformers does.
fn token_span(times: &[f64], i: usize, time_offset: f64) -> Result<TokenSpan> {
    let time = |k: usize| {
        times.get(k).copied().ok_or_else(|| {
            ModelError::InvalidInput(format!("{} token timestamps for a longer token sequence", times.len()))
        })
    };
    let start = if i == 0 {
        0.0 + time_offset
    } else {
        time(i - 1)? + time_offset
    };
    Ok((py_round2(start), py_round2(time(i)? + time_offset)))
}

/// transformers' `_find_longest_common_sequence`: the sequences of
/// overlapping chunks stitched into one. Each next sequence is slid along
/// the text so far; the overlap with the best share of equal tokens (at
/// least two, longer overlaps winning ties by a 1e-4 per token bonus) is
/// cut in its middle, the left half taken from the left sequence and the
/// right half from the right one. With token spans (word timestamps), a
/// token counts as equal only if its span does not come after its
/// counterpart's (Python's tuple order), and the spans are cut alike.
pub fn find_longest_common_sequence(
    sequences: &[Vec<i64>],
    spans: Option<&[Vec<TokenSpan>]>,
) -> (Vec<i64>, Vec<TokenSpan>) {
    let Some((first, rest)) = sequences.split_first() else {
        return (Vec::new(), Vec::new());
    };
    // `if token_timestamp_sequences:`: an empty list is no spans at all.
    let spans = spans.filter(|s| !s.is_empty());
    let spans_of = |k: usize| spans.and_then(|s| s.get(k)).map_or(&[][..], Vec::as_slice);
    let mut left: &[i64] = first;
    let mut left_spans = spans_of(0);
    let mut total = Vec::new();
    let mut total_spans = Vec::new();
    for (k, right) in rest.iter().enumerate() {
        let right_spans = spans_of(k + 1);
        let span_pairs = spans.map(|_| (left_spans, right_spans));
        let (left_start, left_stop, right_start, right_stop) = best_overlap(left, right, span_pairs);
        let left_mid = (left_stop + left_start) / 2;
        let right_mid = (right_stop + right_start) / 2;
        total.extend_from_slice(&left[..left_mid]);
        left = &right[right_mid..];
        if spans.is_some() {
            total_spans.extend_from_slice(&left_spans[..left_mid.min(left_spans.len())]);
            left_spans = &right_spans[right_mid.min(right_spans.len())..];
        }
    }
    total.extend_from_slice(left);
    if spans.is_some() {
        total_spans.extend_from_slice(left_spans);
    }
    (total, total_spans)
}

/// The overlap (left_start, left_stop, right_start, right_stop) of `right`
/// slid over the end of `left` that matches best; none (the whole left, no
/// right) when no overlap has two matching tokens.
fn best_overlap(
    left: &[i64],
    right: &[i64],
    spans: Option<(&[TokenSpan], &[TokenSpan])>,
) -> (usize, usize, usize, usize) {
    let (left_len, right_len) = (left.len(), right.len());
    let mut best = 0.0;
    let mut best_indices = (left_len, left_len, 0, 0);
    for i in 1..left_len + right_len {
        let eps = i as f64 / 10000.0;
        let left_start = left_len.saturating_sub(i);
        let left_stop = left_len.min(left_len + right_len - i);
        let right_start = i.saturating_sub(left_len);
        let right_stop = right_len.min(i);
        let matches = (0..left_stop - left_start)
            .filter(|&k| {
                let (l, r) = (left_start + k, right_start + k);
                left[l] == right[r]
                    && spans.is_none_or(|(ls, rs)| match (ls.get(l), rs.get(r)) {
                        (Some(a), Some(b)) => span_le(*a, *b),
                        _ => false,
                    })
            })
            .count();
        let matching = matches as f64 / i as f64 + eps;
        if matches > 1 && matching > best {
            best = matching;
            best_indices = (left_start, left_stop, right_start, right_stop);
        }
    }
    best_indices
}

/// Python's `a <= b` on (start, end) tuples: the first differing element
/// decides.
fn span_le(a: TokenSpan, b: TokenSpan) -> bool {
    if a.0 != b.0 {
        a.0 <= b.0
    } else if a.1 != b.1 {
        a.1 <= b.1
    } else {
        true
    }
}

/// transformers' `_collate_word_timestamps`: the words of a segment's
/// tokens, each from its first token's start to its last token's end,
/// with the segment's language (shown only with `return_language`).
fn collate_word_timestamps(
    decoder: &dyn WhisperDecode,
    special: &WhisperSpecialTokens,
    tokens: &[i64],
    spans: &[TokenSpan],
    language: Option<&str>,
) -> Result<Vec<AsrChunk>> {
    let words = combine_tokens_into_words(decoder, special, tokens, language)?;
    let span_of = |k: usize| {
        spans
            .get(k)
            .copied()
            .ok_or_else(|| ModelError::InvalidInput(format!("{} token spans for {} tokens", spans.len(), tokens.len())))
    };
    // zip stops at the shorter list, as Python's does: the words and their
    // indices are emptied and filtered separately.
    words
        .words
        .into_iter()
        .zip(words.indices)
        .map(|(text, indices)| {
            let (first, last) = (indices[0], indices[indices.len() - 1]);
            Ok(AsrChunk {
                text,
                timestamp: (Some(span_of(first)?.0), Some(span_of(last)?.1)),
                language: language.map(str::to_string),
            })
        })
        .collect()
}

/// Words, with the tokens that make each and those tokens' positions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Words {
    pub words: Vec<String>,
    pub tokens: Vec<Vec<i64>>,
    pub indices: Vec<Vec<usize>>,
}

impl Words {
    fn push(&mut self, word: String, tokens: Vec<i64>, indices: Vec<usize>) {
        self.words.push(word);
        self.tokens.push(tokens);
        self.indices.push(indices);
    }
}

/// transformers' `_combine_tokens_into_words` with its default punctuation:
/// words cut at character boundaries for Chinese, Japanese, Thai, Lao,
/// Burmese and Cantonese, at spaces and punctuation otherwise; then opening
/// punctuation joins the next word and closing punctuation the previous
/// one. `language` is a full name; None falls back to the tokenizer's
/// language, then English.
pub fn combine_tokens_into_words(
    decoder: &dyn WhisperDecode,
    special: &WhisperSpecialTokens,
    tokens: &[i64],
    language: Option<&str>,
) -> Result<Words> {
    let language = language.or(special.language.as_deref()).unwrap_or("english");
    let mut words = if UNSPACED_LANGUAGES.contains(&language) {
        split_tokens_on_unicode(decoder, tokens)?
    } else {
        split_tokens_on_spaces(decoder, special, tokens)?
    };
    merge_punctuations(&mut words, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);
    Ok(words)
}

/// `_split_tokens_on_unicode`: tokens grouped until they decode to whole
/// characters, that is until their text has no U+FFFD, or only where the
/// text of all the tokens has one too. transformers decodes here with
/// `decode_with_timestamps=True`, which for tokens without timestamps (the
/// only ones `_decode_asr` hands over) is the plain decoding. Tokens left
/// over at the end are dropped, as there.
fn split_tokens_on_unicode(decoder: &dyn WhisperDecode, tokens: &[i64]) -> Result<Words> {
    const REPLACEMENT: char = '\u{FFFD}';
    let decoded_full: Vec<char> = decoder.decode(tokens).chars().collect();
    let mut words = Words::default();
    let mut current_tokens = Vec::new();
    let mut current_indices = Vec::new();
    let mut unicode_offset = 0;
    for (index, &token) in tokens.iter().enumerate() {
        current_tokens.push(token);
        current_indices.push(index);
        let decoded = decoder.decode(&current_tokens);
        let whole = match decoded.chars().position(|c| c == REPLACEMENT) {
            None => true,
            Some(at) => {
                let full = decoded_full.get(unicode_offset + at).ok_or_else(|| {
                    ModelError::InvalidInput(format!(
                        "the text of tokens {current_tokens:?} reaches past the text of the whole segment"
                    ))
                })?;
                *full == REPLACEMENT
            }
        };
        if whole {
            unicode_offset += decoded.chars().count();
            words.push(
                decoded,
                std::mem::take(&mut current_tokens),
                std::mem::take(&mut current_indices),
            );
        }
    }
    Ok(words)
}

/// `_split_tokens_on_spaces`: the character groups of
/// [`split_tokens_on_unicode`] joined into words; a group starts a new
/// word if it is a special token, starts with a space or is punctuation.
fn split_tokens_on_spaces(
    decoder: &dyn WhisperDecode,
    special: &WhisperSpecialTokens,
    tokens: &[i64],
) -> Result<Words> {
    let subwords = split_tokens_on_unicode(decoder, tokens)?;
    let mut words = Words::default();
    for ((subword, subword_tokens), subword_indices) in
        subwords.words.into_iter().zip(subwords.tokens).zip(subwords.indices)
    {
        let is_special = subword_tokens[0] >= special.eos_token_id;
        let with_space = subword.starts_with(' ');
        let punctuation = PUNCTUATION.contains(py_strip(&subword));
        let last = words.words.len().checked_sub(1);
        match last.filter(|_| !(is_special || with_space || punctuation)) {
            Some(n) => {
                words.words[n].push_str(&subword);
                words.tokens[n].extend(subword_tokens);
                words.indices[n].extend(subword_indices);
            }
            None => words.push(subword, subword_tokens, subword_indices),
        }
    }
    Ok(words)
}

/// `_merge_punctuations`: a word that starts with a space and is (once
/// stripped) a substring of `prepended` joins the word after it, scanning
/// from the end; then a word that is a substring of `appended` joins the
/// word before it unless that one ends with a space. Emptied words, token
/// lists and index lists are then dropped, each list on its own.
fn merge_punctuations(words: &mut Words, prepended: &str, appended: &str) {
    let n = words.words.len();
    if n >= 2 {
        let mut j = n - 1;
        for i in (0..n - 1).rev() {
            let word = &words.words[i];
            if word.starts_with(' ') && prepended.contains(py_strip(word)) {
                let word = std::mem::take(&mut words.words[i]);
                words.words[j].insert_str(0, &word);
                let tokens = std::mem::take(&mut words.tokens[i]);
                words.tokens[j].splice(0..0, tokens);
                let indices = std::mem::take(&mut words.indices[i]);
                words.indices[j].splice(0..0, indices);
            } else {
                j = i;
            }
        }
    }
    let mut i = 0;
    for j in 1..n {
        if !words.words[i].ends_with(' ') && appended.contains(words.words[j].as_str()) {
            let word = std::mem::take(&mut words.words[j]);
            words.words[i].push_str(&word);
            let tokens = std::mem::take(&mut words.tokens[j]);
            words.tokens[i].extend(tokens);
            let indices = std::mem::take(&mut words.indices[j]);
            words.indices[i].extend(indices);
        } else {
            i = j;
        }
    }
    words.words.retain(|w| !w.is_empty());
    words.tokens.retain(|t| !t.is_empty());
    words.indices.retain(|k| !k.is_empty());
}

/// Python's `round(x, 2)`: the two-decimal number nearest the float's exact
/// value (ties to even), read back as a float. Rust's `{:.2}` rounds the
/// exact value the same way.
fn py_round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// Python's `str.strip()`: Unicode whitespace, plus the four information
/// separators (U+001C..U+001F) that Python also counts as space.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Python's `s[start:-end]`, in characters.
fn py_slice(s: &str, start: usize, end: usize) -> &str {
    let count = s.chars().count();
    if count < start + end {
        return "";
    }
    let byte = |k: usize| s.char_indices().nth(k).map_or(s.len(), |(b, _)| b);
    &s[byte(start)..byte(count - end)]
}

/// transformers' `_median_filter`: each value replaced by the median of the
/// `filter_width` values around it along the last dimension, the edges
/// padded by reflection (`[a, b, c, ...]` reads `[c, b, a, b, c, ...]`). A
/// last dimension no longer than half the width is returned as it is. Run
/// with torch's own padding and sort, so the values are torch's.
pub fn median_filter(inputs: &Tensor, filter_width: i64) -> Result<Tensor> {
    if filter_width <= 0 || filter_width % 2 != 1 {
        return Err(ModelError::Unsupported(format!(
            "median_filter_width {filter_width}: Whisper's median filter needs an odd width"
        )));
    }
    let pad = filter_width / 2;
    let shape = inputs.size();
    let length = shape.last().copied().unwrap_or(0);
    if length <= pad {
        return Ok(inputs.shallow_clone());
    }
    // One row per vector along the last dimension: reflection_pad1d reads
    // a 2-d tensor as (channels, width).
    let rows = inputs.reshape([-1, length]).reflection_pad1d([pad, pad]);
    let (sorted, _) = rows.unfold(-1, filter_width, 1).sort(-1, false);
    Ok(sorted.select(-1, pad).reshape(shape))
}

/// The alignment matrix [tokens, frames] of `_extract_token_timestamps`
/// from the cross-attention weights [heads, tokens, frames] of the
/// alignment heads (the prompt's rows and the frames past the audio
/// already cut off): each head standardised over the tokens (population
/// deviation), median-filtered over the frames, then the heads averaged.
pub fn alignment_matrix(weights: &Tensor, median_filter_width: i64) -> Result<Tensor> {
    let std = weights.std_dim(-2, false, true);
    let mean = weights.mean_dim(-2, true, None::<Kind>);
    let normalized = (weights - mean) / std;
    Ok(median_filter(&normalized, median_filter_width)?.mean_dim(0, false, None::<Kind>))
}

/// transformers' `_dynamic_time_warping`: the cheapest monotonic path
/// through `matrix` (`rows` × `cols`, row-major), as the row (text) and
/// column (time) of each step from (0, 0) to the last cell. Steps go
/// diagonally, down a row or along a column; ties prefer a step along the
/// column, then down. The cumulative costs are kept in f32, as numpy's
/// float32 cost array keeps them.
pub fn dynamic_time_warping(matrix: &[f64], rows: usize, cols: usize) -> (Vec<i64>, Vec<i64>) {
    const DIAGONAL: u8 = 0;
    const DOWN: u8 = 1;
    const ALONG: u8 = 2;
    let width = cols + 1;
    let mut cost = vec![f32::INFINITY; (rows + 1) * width];
    let mut trace = vec![ALONG; (rows + 1) * width];
    cost[0] = 0.0;
    for j in 1..=cols {
        for i in 1..=rows {
            let c0 = cost[(i - 1) * width + j - 1];
            let c1 = cost[(i - 1) * width + j];
            let c2 = cost[i * width + j - 1];
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, DIAGONAL)
            } else if c1 < c0 && c1 < c2 {
                (c1, DOWN)
            } else {
                (c2, ALONG)
            };
            cost[i * width + j] = (matrix[(i - 1) * cols + j - 1] + f64::from(c)) as f32;
            trace[i * width + j] = t;
        }
    }
    // The first row can only have been reached along it, the first column
    // only down it.
    trace[..width].fill(ALONG);
    for i in 0..=rows {
        trace[i * width] = DOWN;
    }
    let (mut i, mut j) = (rows, cols);
    let mut text_indices = Vec::new();
    let mut time_indices = Vec::new();
    while i > 0 || j > 0 {
        text_indices.push(i as i64 - 1);
        time_indices.push(j as i64 - 1);
        match trace[i * width + j] {
            DIAGONAL => {
                i -= 1;
                j -= 1;
            }
            DOWN => i -= 1,
            _ => j -= 1,
        }
    }
    text_indices.reverse();
    time_indices.reverse();
    (text_indices, time_indices)
}

/// The token times of `_extract_token_timestamps` from the DTW path: each
/// text row is timed at the first column the path reaches it, in
/// `time_precision` steps. The `num_input_ids` prompt tokens come first at
/// 0, and the last generated token (which has no cross-attention) repeats
/// the time before it. The times are f32, as transformers stores them.
pub fn token_times_from_path(
    text_indices: &[i64],
    time_indices: &[i64],
    num_input_ids: usize,
    time_precision: f64,
) -> Vec<f32> {
    let jump_times: Vec<f64> = (0..text_indices.len())
        .filter(|&k| k == 0 || text_indices[k] != text_indices[k - 1])
        .map(|k| time_indices[k] as f64 * time_precision)
        .collect();
    let mut times = vec![0.0f32; num_input_ids];
    times.extend(jump_times.iter().map(|&t| t as f32));
    times.push(jump_times.last().map_or(0.0, |&t| t as f32));
    times
}

/// The times of a sequence's tokens, as `_extract_token_timestamps` gives
/// them, from its alignment matrix [generated tokens, frames] (see
/// [`alignment_matrix`]): dynamic time warping on the negated matrix, then
/// [`token_times_from_path`]. With no generated rows, every token is at 0.
pub fn token_timestamps(matrix: &Tensor, num_input_ids: usize, time_precision: f64) -> Result<Vec<f32>> {
    let (rows, cols) = matrix.size2()?;
    if rows == 0 {
        return Ok(vec![0.0; num_input_ids + 1]);
    }
    let negated = Vec::<f64>::try_from((-matrix).to_kind(Kind::Double).flatten(0, -1))?;
    let (text_indices, time_indices) = dynamic_time_warping(&negated, rows as usize, cols as usize);
    Ok(token_times_from_path(
        &text_indices,
        &time_indices,
        num_input_ids,
        time_precision,
    ))
}

#[cfg(test)]
mod tests {
    //! The expected values are transformers 4.57.6's own, printed from the
    //! repository's .venv: a `WhisperTokenizer` built from a vocab.json of
    //! the byte strings of `piece` (through `bytes_to_unicode`, ids 0..20,
    //! `<|endoftext|>` 20), empty merges and
    //! `clean_up_tokenization_spaces=False`, with `SPECIAL[1..]` added as
    //! additional special tokens (ids 21..31); then
    //! `_decode_asr(tokenizer, [{"tokens": np.array([ids]), "stride": ...,
    //! "token_timestamps": torch.tensor([times])}], return_timestamps=...,
    //! return_language=..., time_precision=0.02)`, `_combine_tokens_into_words`,
    //! `_find_longest_common_sequence`, and generation_whisper's
    //! `_median_filter`, `_dynamic_time_warping` and the lines of
    //! `_extract_token_timestamps` after them. Each test's comments name the
    //! case and what Python printed.
    use super::*;

    const EOS: i64 = 20;
    const SOT: i64 = 21;
    const EN: i64 = 22;
    const ZH: i64 = 23;
    const FR: i64 = 24;
    const TRANSCRIBE: i64 = 26;
    const PREV: i64 = 28;
    const NO_TIMESTAMPS: i64 = 30;
    const TIMESTAMP_BEGIN: i64 = 31;
    const SPECIAL: [&str; 11] = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|en|>",
        "<|zh|>",
        "<|fr|>",
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ];

    /// The bytes of the fake vocabulary's text tokens 0..20: 15 and 16
    /// split "你" (E4 BD | A0), 17 is "好".
    fn piece(id: i64) -> &'static [u8] {
        const PIECES: [&[u8]; 20] = [
            b" Hello",
            b",",
            b" world",
            b".",
            b" How",
            b" are",
            b" you",
            b"?",
            b" \"",
            b" go",
            b"od",
            b"!",
            b" (",
            b"ok",
            b")",
            b"\xe4\xbd",
            b"\xa0",
            "好".as_bytes(),
            b" it",
            b"'s",
        ];
        PIECES.get(id as usize).copied().unwrap_or(b"")
    }

    /// The slow tokenizer's `decode`: byte runs read as UTF-8 with
    /// replacement, special tokens as they are, unknown ids as "".
    fn decode(ids: &[i64]) -> String {
        let mut text = String::new();
        let mut bytes = Vec::new();
        for &id in ids {
            match SPECIAL.get((id - EOS) as usize).filter(|_| id >= EOS) {
                Some(token) => {
                    text.push_str(&String::from_utf8_lossy(&std::mem::take(&mut bytes)));
                    text.push_str(token);
                }
                None => bytes.extend_from_slice(piece(id)),
            }
        }
        text + &String::from_utf8_lossy(&bytes)
    }

    fn special() -> WhisperSpecialTokens {
        WhisperSpecialTokens {
            timestamp_begin: TIMESTAMP_BEGIN,
            eos_token_id: EOS,
            prompt_token_id: PREV,
            decoder_start_token_id: SOT,
            all_special_ids: (EOS..=NO_TIMESTAMPS).collect(),
            language: None,
        }
    }

    /// A token sequence written as Whisper's tokens read: special tokens
    /// by short name, timestamps as `<1.00>`, text tokens by id.
    fn seq(tokens: &str) -> Vec<i64> {
        let id = |token: &str| match token {
            "sot" => SOT,
            "en" => EN,
            "zh" => ZH,
            "fr" => FR,
            "tr" => TRANSCRIBE,
            "prev" => PREV,
            "nt" => NO_TIMESTAMPS,
            "eos" => EOS,
            _ => match token.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
                Some(seconds) => TIMESTAMP_BEGIN + (seconds.parse::<f64>().unwrap() / 0.02).round() as i64,
                None => token.parse().unwrap(),
            },
        };
        tokens.split_whitespace().map(id).collect()
    }

    fn chunk(tokens: Vec<i64>) -> ChunkTokens {
        ChunkTokens {
            tokens,
            ..ChunkTokens::default()
        }
    }

    fn strided(tokens: Vec<i64>, (chunk_len, left, right): (f64, f64, f64)) -> ChunkTokens {
        ChunkTokens {
            tokens,
            stride: Some(Stride { chunk_len, left, right }),
            token_timestamps: None,
        }
    }

    fn run(outputs: &[ChunkTokens], return_timestamps: ReturnTimestamps, return_language: bool) -> AsrOutput {
        let options = AsrOptions {
            return_timestamps,
            return_language,
            time_precision: 0.02,
        };
        decode_asr(&decode, &special(), outputs, &options).unwrap()
    }

    /// (text, start, end) of each chunk.
    fn spans(output: &AsrOutput) -> Vec<(String, Option<f64>, Option<f64>)> {
        let chunks = output.chunks.as_ref().expect("chunks");
        chunks
            .iter()
            .map(|c| (c.text.clone(), c.timestamp.0, c.timestamp.1))
            .collect()
    }

    fn seg(text: &str, start: f64, end: Option<f64>) -> (String, Option<f64>, Option<f64>) {
        (text.to_string(), Some(start), end)
    }

    fn languages(output: &AsrOutput) -> Vec<Option<String>> {
        output
            .chunks
            .as_ref()
            .expect("chunks")
            .iter()
            .map(|c| c.language.clone())
            .collect()
    }

    #[test]
    fn plain_text_skips_special_tokens_and_has_no_chunks() {
        // plain: ' Hello, world.' {}
        let out = run(&[chunk(seq("sot en tr nt 0 1 2 3 eos"))], ReturnTimestamps::Off, false);
        assert_eq!(out.text, " Hello, world.");
        assert_eq!(out.chunks, None);
    }

    #[test]
    fn return_language_gives_one_chunk_with_the_language_name() {
        // plain_lang: {'chunks': [{'language': 'english', 'text': ' Hello, world.'}]}
        let out = run(&[chunk(seq("sot en tr nt 0 1 2 3 eos"))], ReturnTimestamps::Off, true);
        assert_eq!(out.text, " Hello, world.");
        assert_eq!(spans(&out), vec![(" Hello, world.".to_string(), None, None)]);
        assert_eq!(languages(&out), vec![Some("english".to_string())]);
    }

    #[test]
    fn timestamp_pairs_close_and_open_segments() {
        // segments: [(0.0, 1.0) ' Hello, world.', (1.0, 2.4) ' How are you?'], both english
        let tokens = seq("sot en tr <0.00> 0 1 2 3 <1.00> <1.00> 4 5 6 7 <2.40> eos");
        let out = run(&[chunk(tokens)], ReturnTimestamps::Segments, true);
        assert_eq!(out.text, " Hello, world. How are you?");
        assert_eq!(
            spans(&out),
            vec![
                seg(" Hello, world.", 0.0, Some(1.0)),
                seg(" How are you?", 1.0, Some(2.4))
            ]
        );
        assert_eq!(languages(&out), vec![Some("english".to_string()); 2]);
    }

    #[test]
    fn a_segment_without_closing_timestamp_stays_open() {
        // open: ' Hello, How are you' [(0.0, 1.0) ' Hello,', (1.0, None) ' How are you']
        let tokens = seq("sot en tr <0.00> 0 1 <1.00> <1.00> 4 5 6 eos");
        let out = run(&[chunk(tokens)], ReturnTimestamps::Segments, false);
        assert_eq!(out.text, " Hello, How are you");
        assert_eq!(
            spans(&out),
            vec![seg(" Hello,", 0.0, Some(1.0)), seg(" How are you", 1.0, None)]
        );
    }

    #[test]
    fn a_repeated_opening_timestamp_does_not_close_the_segment() {
        // dup_end: [(0.5, 1.0) ' Hello']
        let tokens = seq("sot en tr <0.50> <0.50> 0 <1.00> eos");
        let out = run(&[chunk(tokens)], ReturnTimestamps::Segments, false);
        assert_eq!(spans(&out), vec![seg(" Hello", 0.5, Some(1.0))]);
    }

    #[test]
    fn a_prompt_before_the_transcript_is_stripped() {
        // prompt: ' How are you'
        let tokens = seq("prev 9 10 sot en tr nt 4 5 6 eos");
        assert_eq!(run(&[chunk(tokens)], ReturnTimestamps::Off, false).text, " How are you");
    }

    #[test]
    fn a_change_of_language_without_timestamps_starts_a_new_chunk() {
        // lang_change: [{'language': 'english', 'text': ' Hello, world'},
        //               {'language': 'french', 'text': ' How are'}]
        let outputs = [chunk(seq("sot en tr nt 0 1 2 eos")), chunk(seq("sot fr tr nt 4 5 eos"))];
        let out = run(&outputs, ReturnTimestamps::Off, true);
        assert_eq!(out.text, " Hello, world How are");
        assert_eq!(
            spans(&out),
            vec![
                (" Hello, world".to_string(), None, None),
                (" How are".to_string(), None, None)
            ]
        );
        assert_eq!(
            languages(&out),
            vec![Some("english".to_string()), Some("french".to_string())]
        );
        // lang_change_ts: with timestamps both chunks keep their own times
        // [(0.0, 1.0) ' Hello world' english, (0.0, 1.0) ' How are' french]
        let outputs = [
            chunk(seq("sot en tr <0.00> 0 2 <1.00> eos")),
            chunk(seq("sot fr tr <0.00> 4 5 <1.00> eos")),
        ];
        let out = run(&outputs, ReturnTimestamps::Segments, true);
        assert_eq!(
            spans(&out),
            vec![seg(" Hello world", 0.0, Some(1.0)), seg(" How are", 0.0, Some(1.0))]
        );
        assert_eq!(
            languages(&out),
            vec![Some("english".to_string()), Some("french".to_string())]
        );
    }

    #[test]
    fn strided_chunks_are_stitched_on_their_longest_common_sequence() {
        // strides: ' Hello, world. How are you?'
        let outputs = [
            strided(seq("sot en tr nt 0 1 2 3 4 5 eos"), (10.0, 0.0, 2.0)),
            strided(seq("sot en tr nt 3 4 5 6 7 eos"), (10.0, 2.0, 0.0)),
        ];
        assert_eq!(
            run(&outputs, ReturnTimestamps::Off, false).text,
            " Hello, world. How are you?"
        );
        // strides_three: ' Hello, world. How are are you?' (the second
        // overlap has a single common token, which is not enough)
        let outputs = [
            strided(seq("sot en tr nt 0 1 2 3 eos"), (10.0, 0.0, 2.0)),
            strided(seq("sot en tr nt 2 3 4 5 eos"), (10.0, 2.0, 2.0)),
            strided(seq("sot en tr nt 5 6 7 eos"), (6.0, 2.0, 0.0)),
        ];
        assert_eq!(
            run(&outputs, ReturnTimestamps::Off, false).text,
            " Hello, world. How are are you?"
        );
    }

    #[test]
    fn timestamps_in_the_strides_wait_for_the_next_chunk() {
        // strides_ts: [(0.0, 5.0) ' Hello, world.', (5.0, 10.0) ' How are you?']
        let outputs = [
            strided(
                seq("sot en tr <0.00> 0 1 2 3 <5.00> <5.00> 4 5 <9.00> <9.00> 6 <10.00> eos"),
                (10.0, 0.0, 2.0),
            ),
            strided(
                seq("sot en tr <0.00> 4 5 <1.00> <1.00> 6 7 <4.00> eos"),
                (8.0, 2.0, 0.0),
            ),
        ];
        let out = run(&outputs, ReturnTimestamps::Segments, false);
        assert_eq!(out.text, " Hello, world. How are you?");
        assert_eq!(
            spans(&out),
            vec![
                seg(" Hello, world.", 0.0, Some(5.0)),
                seg(" How are you?", 5.0, Some(10.0))
            ]
        );
    }

    #[test]
    fn long_form_timestamps_restarting_from_zero_are_offset_by_the_windows_before() {
        // longform: [(0.0, 20.0) ' Hello,', (20.0, 28.0) ' world.', (30.0, 33.0) ' How are']
        let tokens = seq("sot en tr <0.00> 0 1 <20.00> <20.00> 2 3 <28.00> <0.00> 4 5 <3.00> eos");
        let out = run(&[chunk(tokens)], ReturnTimestamps::Segments, false);
        assert_eq!(
            spans(&out),
            vec![
                seg(" Hello,", 0.0, Some(20.0)),
                seg(" world.", 20.0, Some(28.0)),
                seg(" How are", 30.0, Some(33.0))
            ]
        );
        // longform_single: a pair restarting at 2.0 counts the window before
        // as a full 30 s: [(0.0, 29.0) ' Hello,', (32.0, 33.0) ' How are']
        let tokens = seq("sot en tr <0.00> 0 1 <29.00> <2.00> 4 5 <3.00> eos");
        let out = run(&[chunk(tokens)], ReturnTimestamps::Segments, false);
        assert_eq!(
            spans(&out),
            vec![seg(" Hello,", 0.0, Some(29.0)), seg(" How are", 32.0, Some(33.0))]
        );
    }

    fn timed(tokens: Vec<i64>, times: &[f64]) -> ChunkTokens {
        ChunkTokens {
            tokens,
            stride: None,
            token_timestamps: Some(times.to_vec()),
        }
    }

    #[test]
    fn word_timestamps_join_subwords_and_punctuation() {
        // words: ' " good! (ok) Hello, world it's.' with
        // [(' " good!', 0.0, 0.72), (' (ok)', 0.72, 1.3), (' Hello,', 1.3, 1.62),
        //  (' world', 1.62, 2.0), (" it's.", 2.0, 2.62)], each 'english'
        let tokens = seq("sot en tr <0.00> 8 9 10 11 12 13 14 0 1 2 18 19 3 <3.00> eos");
        let times = [
            0.0, 0.0, 0.0, 0.0, 0.24, 0.48, 0.6, 0.72, 0.9, 1.1, 1.3, 1.6, 1.62, 2.0, 2.3, 2.5, 2.62, 2.9, 2.9,
        ];
        let out = run(&[timed(tokens, &times)], ReturnTimestamps::Words, true);
        assert_eq!(out.text, " \" good! (ok) Hello, world it's.");
        assert_eq!(
            spans(&out),
            vec![
                seg(" \" good!", 0.0, Some(0.72)),
                seg(" (ok)", 0.72, Some(1.3)),
                seg(" Hello,", 1.3, Some(1.62)),
                seg(" world", 1.62, Some(2.0)),
                seg(" it's.", 2.0, Some(2.62)),
            ]
        );
        assert_eq!(languages(&out), vec![Some("english".to_string()); 5]);
    }

    #[test]
    fn chinese_words_are_cut_at_whole_characters() {
        // words_zh: '你好.' [('你', 0.0, 0.4), ('好.', 0.4, 0.8)], each 'chinese'
        let tokens = seq("sot zh tr <0.00> 15 16 17 3 <1.00> eos");
        let times = [0.0, 0.0, 0.0, 0.0, 0.2, 0.4, 0.66, 0.8, 0.9, 0.9];
        let out = run(&[timed(tokens, &times)], ReturnTimestamps::Words, true);
        assert_eq!(out.text, "你好.");
        assert_eq!(spans(&out), vec![seg("你", 0.0, Some(0.4)), seg("好.", 0.4, Some(0.8))]);
        assert_eq!(languages(&out), vec![Some("chinese".to_string()); 2]);
    }

    #[test]
    fn words_of_an_open_segment_and_of_strided_chunks() {
        // words_open: [(' Hello,', 0.0, 0.5), (' world', 0.5, 0.9)]
        let tokens = seq("sot en tr <0.00> 0 1 2 eos");
        let out = run(
            &[timed(tokens, &[0.0, 0.0, 0.0, 0.0, 0.3, 0.5, 0.9, 0.9])],
            ReturnTimestamps::Words,
            false,
        );
        assert_eq!(
            spans(&out),
            vec![seg(" Hello,", 0.0, Some(0.5)), seg(" world", 0.5, Some(0.9))]
        );
        // words_strides: [(' Hello', 0, 1), (' world', 1, 3), (' How', 3, 7),
        //                 (' are', 7, 9), (' you', 9, 11)]
        let mut first = timed(
            seq("sot en tr nt 0 2 4 5 eos"),
            &[0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 7.0, 9.0, 9.5],
        );
        first.stride = Some(Stride {
            chunk_len: 10.0,
            left: 0.0,
            right: 2.0,
        });
        let mut second = timed(seq("sot en tr nt 4 5 6 eos"), &[0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 5.0, 5.5]);
        second.stride = Some(Stride {
            chunk_len: 6.0,
            left: 2.0,
            right: 0.0,
        });
        let out = run(&[first, second], ReturnTimestamps::Words, false);
        assert_eq!(out.text, " Hello world How are you");
        assert_eq!(
            spans(&out),
            vec![
                seg(" Hello", 0.0, Some(1.0)),
                seg(" world", 1.0, Some(3.0)),
                seg(" How", 3.0, Some(7.0)),
                seg(" are", 7.0, Some(9.0)),
                seg(" you", 9.0, Some(11.0)),
            ]
        );
    }

    #[test]
    fn word_timestamps_without_token_times_are_refused() {
        let options = AsrOptions {
            return_timestamps: ReturnTimestamps::Words,
            return_language: false,
            time_precision: 0.02,
        };
        let outputs = [chunk(seq("sot en tr <0.00> 0 eos"))];
        assert_eq!(seq("sot <0.02> 3"), vec![SOT, TIMESTAMP_BEGIN + 1, 3]);
        assert!(decode_asr(&decode, &special(), &outputs, &options).is_err());
    }

    #[test]
    fn words_merge_opening_and_closing_punctuation() {
        // combine_en: ([' (ok)', ' Hello', ' " good!', " it's."],
        //   [[12, 13, 14], [0], [8, 9, 10, 11], [18, 19, 3]],
        //   [[0, 1, 2], [3], [4, 5, 6, 7], [8, 9, 10]])
        let words =
            combine_tokens_into_words(&decode, &special(), &[12, 13, 14, 0, 8, 9, 10, 11, 18, 19, 3], None).unwrap();
        assert_eq!(words.words, vec![" (ok)", " Hello", " \" good!", " it's."]);
        assert_eq!(
            words.tokens,
            vec![vec![12, 13, 14], vec![0], vec![8, 9, 10, 11], vec![18, 19, 3]]
        );
        assert_eq!(
            words.indices,
            vec![vec![0, 1, 2], vec![3], vec![4, 5, 6, 7], vec![8, 9, 10]]
        );
        // combine_zh: (['你', '好.', '�'], [[15, 16], [17, 3], [15]], [[0, 1], [2, 3], [4]])
        let words = combine_tokens_into_words(&decode, &special(), &[15, 16, 17, 3, 15], Some("chinese")).unwrap();
        assert_eq!(words.words, vec!["你", "好.", "\u{FFFD}"]);
        assert_eq!(words.tokens, vec![vec![15, 16], vec![17, 3], vec![15]]);
        assert_eq!(words.indices, vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn longest_common_sequence_needs_two_matches_and_ordered_spans() {
        // lcs: [1, 2, 3, 4, 5, 6, 7, 8]
        let (tokens, _) =
            find_longest_common_sequence(&[vec![1, 2, 3, 4, 5], vec![3, 4, 5, 6], vec![5, 6, 7, 8]], None);
        assert_eq!(tokens, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        // lcs_nomatch: [1, 2, 3, 4, 5, 6]
        let (tokens, _) = find_longest_common_sequence(&[vec![1, 2, 3], vec![4, 5, 6]], None);
        assert_eq!(tokens, vec![1, 2, 3, 4, 5, 6]);
        // lcs_ts: the spans of 3 and 4 on the right start before those on
        // the left, so nothing matches:
        // ([1, 2, 3, 4, 3, 4, 5], [(0, 1), (1, 2), (2, 3), (3, 4), (1.5, 2.5), (3.5, 4.5), (4.5, 5)])
        let spans = [
            vec![(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0)],
            vec![(1.5, 2.5), (3.5, 4.5), (4.5, 5.0)],
        ];
        let (tokens, times) = find_longest_common_sequence(&[vec![1, 2, 3, 4], vec![3, 4, 5]], Some(&spans));
        assert_eq!(tokens, vec![1, 2, 3, 4, 3, 4, 5]);
        assert_eq!(
            times,
            vec![
                (0.0, 1.0),
                (1.0, 2.0),
                (2.0, 3.0),
                (3.0, 4.0),
                (1.5, 2.5),
                (3.5, 4.5),
                (4.5, 5.0)
            ]
        );
    }

    #[test]
    fn median_filter_reflects_the_edges() {
        let x = Tensor::from_slice(&[3.0f32, 1., 4., 1., 5., 9., 2.]).reshape([1, 1, 1, 7]);
        let values = |t: Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        // median3: [1.0, 3.0, 1.0, 4.0, 5.0, 5.0, 9.0]
        assert_eq!(values(median_filter(&x, 3).unwrap()), vec![1., 3., 1., 4., 5., 5., 9.]);
        // median5: [3.0, 1.0, 3.0, 4.0, 4.0, 5.0, 5.0]
        assert_eq!(values(median_filter(&x, 5).unwrap()), vec![3., 1., 3., 4., 4., 5., 5.]);
        // median7_short: too short to pad, returned as it is
        let short = Tensor::from_slice(&[2.0f32, 1., 3.]).reshape([1, 1, 1, 3]);
        assert_eq!(values(median_filter(&short, 7).unwrap()), vec![2., 1., 3.]);
        assert!(median_filter(&x, 4).is_err());
        assert_eq!(median_filter(&x, 3).unwrap().size(), vec![1, 1, 1, 7]);
    }

    #[test]
    fn dynamic_time_warping_follows_the_cheapest_path() {
        // dtw: [[0, 1, 2, 2], [0, 1, 2, 3]]
        let m = [1., 2., 3., 4., 2., 1., 2., 3., 3., 2., 1., 2.];
        assert_eq!(dynamic_time_warping(&m, 3, 4), (vec![0, 1, 2, 2], vec![0, 1, 2, 3]));
        // dtw2 on the negated attention: [0, 1, 1, 1, 1, 2, 2] [0, 0, 1, 2, 3, 3, 4]
        let attention = [
            0.9, 0.1, 0.0, 0.0, 0.0, 0.1, 0.2, 0.8, 0.7, 0.0, 0.0, 0.0, 0.1, 0.2, 0.9,
        ];
        let negated: Vec<f64> = attention.iter().map(|a: &f64| -a).collect();
        let (text, time) = dynamic_time_warping(&negated, 3, 5);
        assert_eq!(text, vec![0, 1, 1, 1, 1, 2, 2]);
        assert_eq!(time, vec![0, 0, 1, 2, 3, 3, 4]);
        // token_times with 3 prompt tokens:
        // [0.0, 0.0, 0.0, 0.0, 0.0, 0.05999999865889549, 0.05999999865889549]
        let expected = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.06f32, 0.06];
        assert_eq!(token_times_from_path(&text, &time, 3, TIME_PRECISION), expected);
        let matrix = Tensor::from_slice(&attention).reshape([3, 5]).to_kind(Kind::Float);
        assert_eq!(token_timestamps(&matrix, 3, TIME_PRECISION).unwrap(), expected);
        assert_eq!(
            token_timestamps(&matrix.narrow(0, 0, 0), 2, TIME_PRECISION).unwrap(),
            vec![0.0; 3]
        );
    }

    #[test]
    fn alignment_matrix_standardises_filters_and_averages_the_heads() {
        // Two heads, three tokens, five frames; Python standardised them
        // over the tokens (unbiased=False), ran _median_filter(x, 3) on
        // [1, 2, 3, 5] and averaged dim 1.
        let weights = Tensor::from_slice(&[
            0.7f32, 0.1, 0.1, 0.05, 0.05, 0.1, 0.5, 0.3, 0.1, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, //
            0.6, 0.2, 0.1, 0.1, 0.0, 0.2, 0.3, 0.4, 0.1, 0.0, 0.1, 0.0, 0.1, 0.3, 0.5,
        ])
        .reshape([2, 3, 5]);
        let matrix = alignment_matrix(&weights, 3).unwrap();
        assert_eq!(matrix.size(), vec![3, 5]);
        let expected = [
            -0.21992282569408417f64,
            -0.21992282569408417,
            -0.8164634704589844,
            -0.8164634704589844,
            -0.8164634704589844,
            1.2416292428970337,
            1.146894931793213,
            1.146894931793213,
            -0.585008442401886,
            -0.585008442401886,
            -1.0217065811157227,
            -0.8164635300636292,
            -0.3535533845424652,
            1.4014718532562256,
            1.4014718532562256,
        ];
        let got = Vec::<f32>::try_from(matrix.flatten(0, -1)).unwrap();
        for (g, e) in got.iter().zip(expected) {
            assert!((f64::from(*g) - e).abs() <= 1e-6, "{got:?}");
        }
        // DTW path [0, 1, 1, 1, 2, 2] / [0, 0, 1, 2, 3, 4]; with one prompt
        // token: [0.0, 0.0, 0.0, 0.05999999865889549, 0.05999999865889549]
        assert_eq!(
            token_timestamps(&matrix, 1, TIME_PRECISION).unwrap(),
            vec![0.0, 0.0, 0.0, 0.06, 0.06]
        );
    }

    #[test]
    fn languages_map_codes_to_names_and_names_aliases_and_codes_to_codes() {
        assert_eq!(language_name("yue"), Some("cantonese"));
        assert_eq!(language_name("english"), None);
        assert_eq!(language_code("haitian creole"), Some("ht"));
        assert_eq!(language_code("castilian"), Some("es"));
        assert_eq!(language_code("fr"), Some("fr"));
        assert_eq!(language_code("klingon"), None);
    }

    #[test]
    fn python_rounding_and_slicing_helpers() {
        // Python: round(0.125, 2) == 0.12, round(0.375, 2) == 0.38, round(2.675, 2) == 2.67
        assert_eq!(py_round2(0.125), 0.12);
        assert_eq!(py_round2(0.375), 0.38);
        assert_eq!(py_round2(2.675), 2.67);
        assert_eq!(py_slice("<|fr|>", 2, 2), "fr");
        assert_eq!(py_slice("abc", 2, 2), "");
        assert_eq!(py_strip("\u{1f} x\u{3000}"), "x");
    }
}
