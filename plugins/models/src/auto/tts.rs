//! Loading a text-to-speech model (SpeechT5ForTextToSpeech) with its
//! tokenizer, its vocoder and the speakers shipped beside it, and speaking:
//! texts to spectrograms to waveforms.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use crate::audio::speecht5::generate::{generate_speech, Speech, SpeechRequest, SpeechSettings};
use crate::audio::speecht5::SpeechT5ForTextToSpeech;
use crate::auto::vision::{build_loaded, open};
use crate::auto::{Build, Vocoder};
use crate::core::config::read_model_file;
use crate::core::precision::Precision;
use crate::core::random::TorchGenerator;
use crate::core::weights::var_store_bytes;
use crate::text::speecht5_tokenizer::SpeechT5Tokenizer;
use crate::{ModelError, Result};

/// The largest speaker file read (an x-vector is 2 KiB).
const SPEAKER_FILE_LIMIT: u64 = 1 << 20;

/// A loaded text-to-speech model.
pub struct TextToSpeechModel {
    pub net: SpeechT5ForTextToSpeech,
    _vs: tch::nn::VarStore,
    pub tokenizer: SpeechT5Tokenizer,
    /// Turns spectrograms into sound.
    pub vocoder: Vocoder,
    /// Named x-vectors from the model's `speakers/` folder.
    pub speakers: BTreeMap<String, Vec<f32>>,
    pub device: Device,
    pub memory_bytes: u64,
}

/// Loads the model in `dir` on `device`, with the vocoder in
/// `vocoder_dir`, both in `precision`.
pub fn load_text_to_speech(
    dir: &Path,
    vocoder_dir: &Path,
    device: Device,
    precision: Precision,
) -> Result<TextToSpeechModel> {
    let opened = open(dir, "text-to-speech", "for text to speech", false)?;
    let Build::TextToSpeech(build) = opened.build else {
        return Err(opened.not_a("a text-to-speech model"));
    };
    let config_file = opened.config_file;
    let (net, vs) = build_loaded(dir, device, precision, |root, shapes| build(root, &config_file, shapes))?;
    let tokenizer = SpeechT5Tokenizer::from_dir(dir)?;
    if tokenizer.vocab_size > net.config.vocab_size {
        return Err(ModelError::bad_file(
            &config_file,
            format!(
                "vocab_size = {}, but the tokenizer has {} tokens",
                net.config.vocab_size, tokenizer.vocab_size
            ),
        ));
    }
    let vocoder = crate::auto::load_vocoder(vocoder_dir, device, precision)?;
    if vocoder.mel_bins() != net.config.num_mel_bins {
        return Err(ModelError::Unsupported(format!(
            "the vocoder reads {} mel bins, the model makes {}",
            vocoder.mel_bins(),
            net.config.num_mel_bins
        )));
    }
    let speakers = read_speakers(&dir.join("speakers"), net.config.speaker_embedding_dim as usize)?;
    Ok(TextToSpeechModel {
        memory_bytes: var_store_bytes(&vs) + vocoder.memory_bytes,
        net,
        _vs: vs,
        tokenizer,
        vocoder,
        speakers,
        device,
    })
}

/// The x-vectors in `folder` (absent: none), by file stem: `.npy` files of
/// float32 or float64 (shape [dim] or [1, dim]) and `.safetensors` files
/// holding one such tensor.
pub fn read_speakers(folder: &Path, dim: usize) -> Result<BTreeMap<String, Vec<f32>>> {
    let mut speakers = BTreeMap::new();
    if !folder.is_dir() {
        return Ok(speakers);
    }
    let entries = std::fs::read_dir(folder).map_err(|e| ModelError::io(folder, e))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let (Some(stem), Some(extension)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let values = match extension {
            "npy" => npy_floats(&read_model_file(&path, SPEAKER_FILE_LIMIT)?),
            "safetensors" => safetensors_floats(&read_model_file(&path, SPEAKER_FILE_LIMIT)?),
            _ => continue,
        }
        .map_err(|e| ModelError::bad_file(&path, e))?;
        if values.len() != dim {
            return Err(ModelError::bad_file(
                &path,
                format!("{} values, but the model's speaker embeddings have {dim}", values.len()),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::bad_file(&path, "it holds values that are not numbers"));
        }
        speakers.insert(stem.to_string(), values);
    }
    Ok(speakers)
}

/// The values of a little-endian float32 or float64 `.npy` array in C
/// order, of at most two dimensions with one row.
fn npy_floats(bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!(".npy version {v} is not read")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("its .npy header is cut short")?;
    let data = &bytes[start + header_len..];
    if header.contains("'fortran_order': True") {
        return Err("a Fortran-order array; save it in C order".into());
    }
    let kind = if header.contains("'<f4'") {
        Dtype::F32
    } else if header.contains("'<f8'") {
        Dtype::F64
    } else {
        return Err(format!("its dtype is not little-endian float32 or float64 ({header})"));
    };
    floats(kind, data)
}

/// The values of the one tensor in a `.safetensors` file.
fn safetensors_floats(bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let tensors = file.tensors();
    let [(_, view)] = tensors.as_slice() else {
        return Err(format!("{} tensors; a speaker file holds one", tensors.len()));
    };
    if view.shape().iter().filter(|&&d| d != 1).count() > 1 {
        return Err(format!("a tensor of shape {:?}; expected one row", view.shape()));
    }
    floats(view.dtype(), view.data())
}

fn floats(kind: Dtype, data: &[u8]) -> std::result::Result<Vec<f32>, String> {
    match kind {
        Dtype::F32 if data.len().is_multiple_of(4) => Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        Dtype::F64 if data.len().is_multiple_of(8) => Ok(data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect()),
        Dtype::F32 | Dtype::F64 => Err("its data is not a whole number of values".into()),
        other => Err(format!("values of type {other:?}; expected float32 or float64")),
    }
}

impl TextToSpeechModel {
    /// The texts `ids` (one list per text, ending in `</s>`, at most
    /// `max_text_positions` long: the caller checks) spoken by `speakers`
    /// (one x-vector per text) as one request to the generation: the texts
    /// right-padded, as transformers' `generate` batches them, the dropout
    /// masks drawn from `rng` and shared.
    pub fn request(
        &self,
        ids: &[Vec<i64>],
        speakers: &[Vec<f32>],
        settings: SpeechSettings,
        rng: TorchGenerator,
    ) -> SpeechRequest {
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        let pad = self.tokenizer.pad_id();
        let mut flat = Vec::with_capacity(ids.len() * longest);
        let mut mask = Vec::with_capacity(ids.len() * longest);
        for text in ids {
            flat.extend(
                text.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, longest - text.len())),
            );
            mask.extend((0..longest).map(|i| i64::from(i < text.len())));
        }
        let rows = ids.len() as i64;
        let to_device = |t: Tensor| t.view([rows, -1]).to_device(self.device);
        SpeechRequest {
            ids: to_device(Tensor::from_slice(&flat)),
            mask: to_device(Tensor::from_slice(&mask)),
            speakers: to_device(Tensor::from_slice(&speakers.concat())),
            settings,
            rng,
        }
    }

    /// The spectrograms of one request's texts (see [`Self::request`]), as
    /// transformers' `generate` gives them. None when `cancelled` said so.
    pub fn speak(
        &self,
        ids: &[Vec<i64>],
        speakers: &[Vec<f32>],
        settings: SpeechSettings,
        rng: TorchGenerator,
        cancelled: &mut dyn FnMut() -> bool,
    ) -> Option<Vec<Speech>> {
        generate_speech(&self.net, self.request(ids, speakers, settings, rng), cancelled)
    }

    /// The waveforms of `spectrograms` [frames, mels] vocoded together, as
    /// generate() does for a batch: zero-padded to the longest, each cut to
    /// the vocoder's hop times its own frames. (The padding is not silence
    /// to the vocoder, so the end of a shorter one differs a little from
    /// its waveform alone, in transformers too.)
    pub fn vocode(&self, spectrograms: &[&Tensor]) -> Vec<Vec<f32>> {
        let _guard = tch::no_grad_guard();
        let frames: Vec<i64> = spectrograms.iter().map(|s| s.size()[0]).collect();
        let longest = frames.iter().copied().max().unwrap_or(0);
        let padded: Vec<Tensor> = spectrograms
            .iter()
            .map(|s| s.constant_pad_nd([0, 0, 0, longest - s.size()[0]]))
            .collect();
        let waves = self
            .vocoder
            .forward(&Tensor::stack(&padded, 0))
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        let hop = waves.size()[1] / longest.max(1);
        frames
            .iter()
            .enumerate()
            .map(|(i, &frames)| {
                let wave = waves.get(i as i64).narrow(0, 0, hop * frames).contiguous();
                Vec::<f32>::try_from(&wave).expect("float samples")
            })
            .collect()
    }
}
