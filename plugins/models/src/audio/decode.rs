//! Audio in: decoding WAV (PCM 8/16/24/32-bit, IEEE float), FLAC, MP3 and
//! Ogg Vorbis with symphonia, mixed down to mono as transformers' speech
//! recognition pipeline does it (float32 mean of the channels). Resampling
//! to a model's rate is in `resample.rs`.
//!
//! Decoding refuses what a model should not be run on: bytes that are not
//! audio, truncated files, files without samples and audio longer than the
//! caller's limit (found without decoding the whole file).

use std::io::{Cursor, ErrorKind};

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{CodecParameters, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::Sample;

use crate::{ModelError, Result};

/// Mono samples in [-1, 1] and their rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Sample rates accepted (the resampler's filter grows with the rates'
/// ratio: an absurd rate in a header must not cost gigabytes).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// The rate up to which `max_seconds` is taken as given: above it, the
/// limit counts samples at this rate (at 384 kHz a file holds an eighth of
/// the seconds), so that no rate makes the decoded samples larger than
/// `max_seconds` of 48 kHz audio.
pub const FULL_LENGTH_RATE: u32 = 48_000;

/// Decodes WAV (PCM 16/24/32-bit, IEEE float), FLAC, MP3 or OGG/Vorbis bytes and mixes channels down to
/// mono (float32 mean of the channels). Refuses, with ModelError::InvalidInput and a message a person can
/// act on: bytes that are not audio in one of these formats; a truncated file (fewer frames than the
/// container declares); audio with no samples; audio longer than `max_seconds`, or above 48 kHz more
/// samples than `max_seconds` at 48 kHz (decoding stops as soon as the limit is passed).
///
/// Integer PCM becomes `sample / 2^(bits - 1)` in float32, as numpy's `astype(float32) / 2**(bits-1)`
/// does; MP3 encoder delay and padding (LAME / Info tag) and Vorbis' end trimming are honoured, so the
/// length is the one `lame --decode` / `oggdec` give.
pub fn decode(bytes: &[u8], max_seconds: f64) -> Result<Audio> {
    if bytes.is_empty() {
        return Err(invalid(
            "the audio is empty (0 bytes); send the contents of an audio file".into(),
        ));
    }
    let Some(container) = Container::sniff(bytes) else {
        return Err(invalid(not_audio_message(bytes)));
    };
    let name = container.name();
    // Symphonia panics on some headers it does not check (a WAV's sample
    // rate of 0 divides by zero in its time base): the rate is checked here
    // first, and any other panic is taken as a header it could not read.
    if let Some(rate) = wav_sample_rate(bytes) {
        check_sample_rate(name, rate)?;
    }
    std::panic::catch_unwind(|| read(bytes, container, max_seconds)).unwrap_or_else(|payload| {
        let what = inferd_sdk::panic_text(payload.as_ref()).unwrap_or_default();
        let what = what.lines().next().unwrap_or_default();
        Err(invalid(format!(
            "cannot read the {name} file: its headers are inconsistent ({what}); send a file that other tools play"
        )))
    })
}

/// Decodes bytes of a sniffed `container` (see [`decode`]).
fn read(bytes: &[u8], container: Container, max_seconds: f64) -> Result<Audio> {
    let name = container.name();
    let mut owned = bytes.to_vec();
    if container == Container::Wav {
        fill_in_streamed_wav_sizes(&mut owned);
    }
    let source = MediaSourceStream::new(Box::new(Cursor::new(owned)), Default::default());
    // Gapless: trim the MP3 encoder delay / padding and the Vorbis end padding.
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), source, &format_options, &MetadataOptions::default())
        .map_err(|e| invalid(format!("cannot read the {name} file: {e}")))?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| invalid(format!("the {name} file has no audio track")))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let sample_rate = params
        .sample_rate
        .filter(|&rate| rate > 0)
        .ok_or_else(|| invalid(format!("the {name} file does not give a sample rate")))?;
    check_sample_rate(name, sample_rate)?;
    let limit_frames = max_seconds * sample_rate.min(FULL_LENGTH_RATE) as f64;
    let declared = declared_frames(container, &params);
    if let Some(frames) = declared.filter(|&frames| frames as f64 > limit_frames) {
        return Err(too_long(frames, sample_rate, max_seconds));
    }

    // FLAC carries an MD5 of the samples: `verify` checks it in finalize().
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions { verify: true })
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => invalid(format!(
                "the {name} file's audio codec is not supported; send PCM or IEEE float WAV, FLAC, MP3 or Ogg \
                 Vorbis"
            )),
            e => invalid(format!("cannot decode the {name} file: {e}")),
        })?;
    let at_seconds = |frames: usize| frames as f64 / sample_rate as f64;
    let capacity = declared.unwrap_or(0).min(limit_frames.max(0.0) as u64 + 1) as usize;
    let mut samples = Vec::with_capacity(capacity);
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            // The readers report the end of the data as an unexpected end of file.
            Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => {
                return Err(invalid(format!(
                    "the {name} file holds several chained streams; send a single stream"
                )))
            }
            Err(e) => {
                return Err(invalid(format!(
                    "the {name} file is corrupt at {:.3} s: {e}",
                    at_seconds(samples.len())
                )))
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(|e| {
            invalid(format!(
                "the {name} file is corrupt at {:.3} s: {e}",
                at_seconds(samples.len())
            ))
        })?;
        if decoded.spec().rate != sample_rate {
            return Err(invalid(format!(
                "the sample rate of the {name} file changes from {sample_rate} Hz to {} Hz at {:.3} s; send audio \
                 with a single sample rate",
                decoded.spec().rate,
                at_seconds(samples.len())
            )));
        }
        mix_down(decoded, &mut samples);
        if samples.len() as f64 > limit_frames {
            let frames = samples.len() as u64 + frames_left(reader.as_mut(), track_id);
            return Err(too_long(frames, sample_rate, max_seconds));
        }
    }
    if let Some(frames) = declared.filter(|&frames| (samples.len() as u64) < frames) {
        return Err(invalid(format!(
            "the {name} file is truncated: it declares {frames} samples ({:.3} s at {sample_rate} Hz) but its data \
             ends after {} samples ({:.3} s); send the complete file",
            frames as f64 / sample_rate as f64,
            samples.len(),
            at_seconds(samples.len())
        )));
    }
    // An Ogg file declares no length up front (symphonia takes the last page's), but its last page ends the
    // stream.
    if container == Container::Ogg && !ogg_streams_end(bytes) {
        return Err(invalid(format!(
            "the Ogg file is truncated: its data stops before the end of the stream (after {:.3} s); send the \
             complete file",
            at_seconds(samples.len())
        )));
    }
    if decoder.finalize().verify_ok == Some(false) {
        return Err(invalid(format!(
            "the {name} file is corrupt: its decoded samples do not match the checksum it carries"
        )));
    }
    if samples.is_empty() {
        return Err(invalid(format!(
            "the {name} file holds no audio samples (it is 0 s long); send a recording with sound in it"
        )));
    }
    Ok(Audio { samples, sample_rate })
}

/// Refuses a sample rate outside [`SAMPLE_RATES`].
fn check_sample_rate(name: &str, rate: u32) -> Result<()> {
    if SAMPLE_RATES.contains(&rate) {
        return Ok(());
    }
    Err(invalid(format!(
        "the {name} file says its sample rate is {rate} Hz; rates from {} to {} Hz are accepted",
        SAMPLE_RATES.start(),
        SAMPLE_RATES.end()
    )))
}

/// The sample rate in a WAV's `fmt ` chunk, if it has one.
fn wav_sample_rate(bytes: &[u8]) -> Option<u32> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    if !(bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE")) {
        return None;
    }
    let mut pos = 12usize;
    while pos.checked_add(8)? <= bytes.len() {
        let size = u32_at(pos + 4)? as usize;
        if &bytes[pos..pos + 4] == b"fmt " {
            // After the format tag and the channel count.
            return u32_at(pos + 12);
        }
        pos = pos.checked_add(8 + size + (size & 1))?;
    }
    None
}

fn invalid(message: String) -> ModelError {
    ModelError::InvalidInput(message)
}

fn too_long(frames: u64, sample_rate: u32, max_seconds: f64) -> ModelError {
    let limit = match sample_rate > FULL_LENGTH_RATE {
        false => format!("the limit of {max_seconds} s"),
        true => format!(
            "the limit of {max_seconds} s at {FULL_LENGTH_RATE} Hz ({:.3} s at {sample_rate} Hz)",
            max_seconds * FULL_LENGTH_RATE as f64 / sample_rate as f64
        ),
    };
    invalid(format!(
        "the audio is {:.3} s long ({frames} samples at {sample_rate} Hz), more than {limit}; send a shorter clip \
         or split it",
        frames as f64 / sample_rate as f64
    ))
}

/// The containers `decode` accepts, told apart by how the bytes begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Wav,
    Flac,
    Mp3,
    Ogg,
}

impl Container {
    fn name(self) -> &'static str {
        match self {
            Container::Wav => "WAV",
            Container::Flac => "FLAC",
            Container::Mp3 => "MP3",
            Container::Ogg => "Ogg",
        }
    }

    /// Checked here rather than left to symphonia's probe, which searches the
    /// whole input for a two-byte MPEG sync word and so takes almost any
    /// binary data for MP3.
    fn sniff(bytes: &[u8]) -> Option<Container> {
        if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
            Some(Container::Wav)
        } else if bytes.starts_with(b"fLaC") {
            Some(Container::Flac)
        } else if bytes.starts_with(b"OggS") {
            Some(Container::Ogg)
        } else if is_mpeg_audio_frame(bytes) {
            Some(Container::Mp3)
        } else if after_id3v2(bytes).is_some() {
            // ID3v2 tags (at most a few), possibly followed by zero padding,
            // before the MP3 (or FLAC) data. A loop, not recursion: a stream
            // of empty tags must not exhaust the stack.
            let mut rest = bytes;
            for _ in 0..4 {
                let Some(after) = after_id3v2(rest) else {
                    break;
                };
                let start = after.iter().position(|&b| b != 0).unwrap_or(after.len());
                rest = &after[start..];
            }
            if rest.starts_with(b"fLaC") {
                Some(Container::Flac)
            } else if is_mpeg_audio_frame(rest) {
                Some(Container::Mp3)
            } else {
                None
            }
        } else {
            None
        }
    }
}

/// An MPEG audio frame header: 11 sync bits, a valid version and layer.
fn is_mpeg_audio_frame(bytes: &[u8]) -> bool {
    match bytes {
        [0xff, b1, ..] => b1 & 0xe0 == 0xe0 && (b1 >> 3) & 0x3 != 0x1 && (b1 >> 1) & 0x3 != 0,
        _ => false,
    }
}

/// What follows an ID3v2 tag at the start of `bytes`, if there is one.
fn after_id3v2(bytes: &[u8]) -> Option<&[u8]> {
    if !bytes.starts_with(b"ID3") || bytes.len() < 10 {
        return None;
    }
    // The size is "synchsafe": 4 bytes of 7 bits; a footer (flag 0x10) adds 10 bytes.
    let size = bytes[6..10]
        .iter()
        .fold(0usize, |size, &b| (size << 7) | (b & 0x7f) as usize);
    let footer = if bytes[5] & 0x10 != 0 { 10 } else { 0 };
    bytes.get(10 + size + footer..)
}

/// Names what the bytes seem to be, so that the caller knows what they sent.
fn not_audio_message(bytes: &[u8]) -> String {
    let kind = if bytes.starts_with(b"\x89PNG") {
        Some("a PNG image")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("a JPEG image")
    } else if bytes.starts_with(b"GIF8") {
        Some("a GIF image")
    } else if bytes.starts_with(b"%PDF") {
        Some("a PDF document")
    } else if bytes.starts_with(b"RIFF") {
        Some("a RIFF file that is not WAVE (e.g. AVI or WebP)")
    } else if bytes.starts_with(b"RF64") {
        Some("an RF64 (64-bit WAV) file, which is not supported")
    } else if bytes.starts_with(b"FORM") {
        Some("an AIFF file, which is not supported")
    } else if bytes.get(4..8) == Some(b"ftyp") {
        Some("an MP4 / M4A file, which is not supported")
    } else if bytes.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        Some("a Matroska / WebM file, which is not supported")
    } else if matches!(bytes, [0xff, b1, ..] if b1 & 0xf6 == 0xf0) {
        Some("raw AAC (ADTS), which is not supported")
    } else if std::str::from_utf8(&bytes[..bytes.len().min(512)])
        .is_ok_and(|text| text.chars().all(|c| !c.is_control() || c.is_whitespace()))
    {
        Some("text")
    } else {
        None
    };
    let what = match kind {
        Some(kind) => format!("they look like {kind}"),
        None => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("they begin with the bytes {}", head.join(" "))
        }
    };
    format!(
        "the bytes are not audio in a supported format (WAV, FLAC, MP3 or Ogg Vorbis): {what}; send or convert to \
         one of these formats"
    )
}

/// A WAV written to a pipe (ffmpeg `-f wav -`) has 0xFFFFFFFF as its RIFF and
/// data sizes. Symphonia reads such a file only in whole packets and would
/// drop its last partial packet; the real sizes, set here, let it read all of
/// it, and let a smaller declared size mean truncation everywhere else.
fn fill_in_streamed_wav_sizes(bytes: &mut [u8]) {
    let u32_at = |bytes: &[u8], at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let size = u32_at(bytes, pos + 4);
        if &bytes[pos..pos + 4] == b"data" {
            let (Ok(data_len), Ok(riff_len)) = (u32::try_from(bytes.len() - pos - 8), u32::try_from(bytes.len() - 8))
            else {
                return;
            };
            if size == u32::MAX && data_len < u32::MAX {
                bytes[pos + 4..pos + 8].copy_from_slice(&data_len.to_le_bytes());
                if u32_at(bytes, 4) == u32::MAX {
                    bytes[4..8].copy_from_slice(&riff_len.to_le_bytes());
                }
            }
            return;
        }
        pos += 8 + size as usize + (size & 1) as usize;
    }
}

/// The number of frames the container declares, where that number is exact:
/// an MP3 without a LAME tag only has an estimate from its bitrate.
fn declared_frames(container: Container, params: &CodecParameters) -> Option<u64> {
    match container {
        Container::Mp3 if params.delay.is_none() => None,
        _ => params.n_frames,
    }
}

/// Whether every logical stream of an Ogg file that begins also ends (its
/// last page has the end-of-stream flag) and the last page is whole. Data
/// that is not Ogg pages, which symphonia skips, stops the walk: the streams
/// are then taken to end.
fn ogg_streams_end(bytes: &[u8]) -> bool {
    const BEGINS: u8 = 0x02;
    const ENDS: u8 = 0x04;
    let mut open = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + 27) else {
            return false;
        };
        if &header[..4] != b"OggS" {
            return true;
        }
        let (flags, serial) = (header[5], &header[14..18]);
        let Some(segments) = bytes.get(pos + 27..pos + 27 + header[26] as usize) else {
            return false;
        };
        pos += 27 + segments.len() + segments.iter().map(|&len| len as usize).sum::<usize>();
        if pos > bytes.len() {
            return false;
        }
        if flags & BEGINS != 0 {
            open.push(serial);
        }
        if flags & ENDS != 0 {
            open.retain(|&s| s != serial);
        }
    }
    open.is_empty()
}

/// The frames in the packets left, counted without decoding them.
fn frames_left(reader: &mut dyn FormatReader, track_id: u32) -> u64 {
    let mut frames = 0;
    while let Ok(packet) = reader.next_packet() {
        if packet.track_id() == track_id {
            frames += packet.dur;
        }
    }
    frames
}

fn mix_down(decoded: AudioBufferRef<'_>, out: &mut Vec<f32>) {
    match decoded {
        AudioBufferRef::U8(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::U16(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::U24(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::U32(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::S8(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::S16(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::S24(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::S32(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::F32(buffer) => push_channel_mean(&buffer, out),
        AudioBufferRef::F64(buffer) => push_channel_mean(&buffer, out),
    }
}

/// Symphonia's sample conversions are numpy's (`i16 as f32 / 32768`, ...);
/// the mean is numpy's `mean(axis=0)` on float32: a running float32 sum
/// from the first channel, divided by the channel count.
fn push_channel_mean<S: Sample + IntoSample<f32>>(buffer: &AudioBuffer<S>, out: &mut Vec<f32>) {
    let planes = buffer.planes();
    match planes.planes() {
        [] => {}
        [mono] => out.extend(mono.iter().map(|&s| -> f32 { s.into_sample() })),
        [first, rest @ ..] => {
            let count = (rest.len() + 1) as f32;
            out.extend((0..buffer.frames()).map(|i| {
                let first: f32 = first[i].into_sample();
                rest.iter()
                    .fold(first, |sum, plane| sum + IntoSample::<f32>::into_sample(plane[i]))
                    / count
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCM16 WAV with the given header sizes (None: the real ones).
    fn wav(channels: u16, frames: &[i16], sizes: Option<u32>) -> Vec<u8> {
        let data: Vec<u8> = frames.iter().flat_map(|s| s.to_le_bytes()).collect();
        let block = channels * 2;
        let mut out = b"RIFF".to_vec();
        out.extend(sizes.unwrap_or(36 + data.len() as u32).to_le_bytes());
        out.extend(b"WAVEfmt ");
        out.extend(16u32.to_le_bytes());
        out.extend(1u16.to_le_bytes());
        out.extend(channels.to_le_bytes());
        out.extend(16000u32.to_le_bytes());
        out.extend((16000 * block as u32).to_le_bytes());
        out.extend(block.to_le_bytes());
        out.extend(16u16.to_le_bytes());
        out.extend(b"data");
        out.extend(sizes.unwrap_or(data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn channels_are_averaged_in_float32() {
        let frames = [100i16, -200, 301, -32768, 32767, 7];
        let audio = decode(&wav(3, &frames, None), 10.0).unwrap();
        assert_eq!(audio.sample_rate, 16000);
        let mean = |f: &[i16]| (f[0] as f32 / 32768.0 + f[1] as f32 / 32768.0 + f[2] as f32 / 32768.0) / 3.0;
        assert_eq!(audio.samples, vec![mean(&frames[..3]), mean(&frames[3..])]);
    }

    #[test]
    fn a_wav_streamed_with_unknown_sizes_is_read_to_its_end() {
        // 3000 frames: more than one of symphonia's packets, and not a whole number of them.
        let frames: Vec<i16> = (0..3000).map(|i| (i * 7 % 2000) as i16 - 1000).collect();
        let audio = decode(&wav(1, &frames, Some(u32::MAX)), 10.0).unwrap();
        assert_eq!(audio.samples.len(), 3000);
        assert_eq!(audio.samples[2999], frames[2999] as f32 / 32768.0);
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let message = |bytes: &[u8], max_seconds: f64| match decode(bytes, max_seconds) {
            Err(ModelError::InvalidInput(message)) => message,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        assert!(message(b"", 10.0).contains("empty"));
        assert!(message(b"hello, this is not audio", 10.0).contains("look like text"));
        assert!(message(&[0, 1, 2, 0xff, 0xfb, 0x90, 0, 0, 0, 0], 10.0).contains("begin with the bytes 00 01 02"));
        let frames = vec![1000i16; 16000 * 3];
        let long = message(&wav(1, &frames, None), 1.0);
        assert!(long.contains("3.000 s long") && long.contains("limit of 1 s"), "{long}");
        let streamed = message(&wav(1, &frames, Some(u32::MAX)), 1.0);
        assert!(streamed.contains("3.000 s long"), "{streamed}");
        // Above 48 kHz the limit counts samples at 48 kHz: 3 s at 96 kHz
        // is over a limit of 2 s, 1 s is within it.
        let at_96k = |frames: &[i16]| {
            let mut bytes = wav(1, frames, None);
            bytes[24..28].copy_from_slice(&96_000u32.to_le_bytes());
            bytes[28..32].copy_from_slice(&192_000u32.to_le_bytes());
            bytes
        };
        let fast = message(&at_96k(&vec![1000i16; 96_000 * 3]), 2.0);
        assert!(
            fast.contains("3.000 s long") && fast.contains("limit of 2 s at 48000 Hz (1.000 s at 96000 Hz)"),
            "{fast}"
        );
        let second = decode(&at_96k(&vec![1000i16; 96_000]), 2.0).unwrap();
        assert_eq!((second.samples.len(), second.sample_rate), (96_000, 96_000));
        assert!(message(&wav(1, &[], None), 10.0).contains("no audio samples"));
        let mut truncated = wav(1, &frames, None);
        truncated.truncate(44 + 2 * 20000 + 1);
        assert!(message(&truncated, 10.0).contains("truncated"));
    }

    #[test]
    fn hostile_headers_are_refused_cheaply() {
        // A prime sample rate near u32::MAX would need a resampling filter of
        // hundreds of gigabytes.
        let mut absurd = wav(1, &[1, 2, 3], None);
        absurd[24..28].copy_from_slice(&4_294_967_291u32.to_le_bytes());
        match decode(&absurd, 10.0) {
            Err(ModelError::InvalidInput(m)) => assert!(m.contains("sample rate"), "{m}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        // A sample rate of 0 (symphonia would divide by it).
        let mut zero = wav(1, &[1, 2, 3], None);
        zero[24..28].copy_from_slice(&0u32.to_le_bytes());
        match decode(&zero, 10.0) {
            Err(ModelError::InvalidInput(m)) => assert!(m.contains("sample rate is 0 Hz"), "{m}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        // Zero channels, a zero block size, zero bits per sample.
        for (at, bytes) in [(22, &[0u8, 0][..]), (32, &[0, 0]), (34, &[0, 0])] {
            let mut odd = wav(1, &[1, 2, 3], None);
            odd[at..at + 2].copy_from_slice(bytes);
            assert!(
                matches!(decode(&odd, 10.0), Err(ModelError::InvalidInput(_))),
                "header byte {at} zeroed"
            );
        }
        // Thousands of empty ID3 tags in a row: no recursion, no crash.
        let tags = b"ID3\x04\0\0\0\0\0\0".repeat(100_000);
        assert!(matches!(decode(&tags, 10.0), Err(ModelError::InvalidInput(_))));
    }
}
