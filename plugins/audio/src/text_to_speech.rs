//! `text-to-speech` (alias `text-to-audio`) on SpeechT5, as transformers'
//! TextToAudioPipeline runs it: SpeechT5Tokenizer (numbers spelt out with
//! `normalize`), `generate` with the speaker's x-vector, the vocoder, and
//! the waveform at the vocoder's sampling rate, here as a WAV file.
//!
//! The texts of one request are generated together, as transformers
//! batches them. Requests without a seed and with the same settings are
//! generated together too (their random dropout masks shared, which is
//! what one seeded batch does); a request with a seed runs on its own, so
//! that it sounds exactly like `torch.manual_seed(seed)` before pipeline().

use inferd_models::audio::speecht5::generate::SpeechSettings;
use inferd_models::audio::wav::{encode_wav, WavFormat};
use inferd_models::auto::TextToSpeechModel;
use inferd_models::core::random::TorchGenerator;
use inferd_models::generation::sampling::Rng;
use inferd_sdk::proto::api::{Speech, SynthesizeRequest, SynthesizeResponse};
use inferd_sdk::{Error, Limit};

/// Texts per request.
pub const TEXTS: Limit = Limit::new("INFERD_MAX_SPEECH_TEXTS", 64);

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

/// Answers every request of a batch; `wanted(i)` is false once request
/// `i`'s client no longer waits.
pub fn synthesize_all(
    model: &TextToSpeechModel,
    requests: &[SynthesizeRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<SynthesizeResponse, Error>> {
    let mut answers: Vec<Option<Result<SynthesizeResponse, Error>>> = requests.iter().map(|_| None).collect();
    let mut prepared = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        match prepare(model, request) {
            Ok(p) => prepared.push((i, p)),
            Err(e) => answers[i] = Some(Err(e)),
        }
    }
    // Groups generated together: each seeded request alone, unseeded ones
    // by their settings.
    let mut groups: Vec<Vec<(usize, Prepared)>> = Vec::new();
    for (i, p) in prepared {
        let joins = groups.iter_mut().find(|g| {
            let first = &g[0].1;
            p.seed.is_none() && first.seed.is_none() && first.settings == p.settings
        });
        match joins {
            Some(group) => group.push((i, p)),
            None => groups.push(vec![(i, p)]),
        }
    }
    for group in groups {
        let seed = group[0].1.seed.unwrap_or_else(Rng::random_seed);
        let ids: Vec<Vec<i64>> = group.iter().flat_map(|(_, p)| p.ids.iter().cloned()).collect();
        let speakers: Vec<Vec<f32>> = group.iter().flat_map(|(_, p)| p.speakers.iter().cloned()).collect();
        let mut rng = TorchGenerator::manual_seed(seed);
        let members: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
        let spoken = model.speak(&ids, &speakers, group[0].1.settings, &mut rng, &mut || {
            !members.iter().any(|&i| wanted(i))
        });
        let Some(spoken) = spoken else {
            for &i in &members {
                answers[i] = Some(Err(Error::stopped()));
            }
            continue;
        };
        let rate = model.vocoder.sampling_rate() as u32;
        let mels = model.net.config.num_mel_bins as u32;
        let mut spoken = spoken.into_iter();
        for (i, p) in group {
            // Each request's texts are vocoded together, as generate()
            // vocodes its batch, and apart from other requests'.
            let speech: Vec<_> = spoken.by_ref().take(p.ids.len()).collect();
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
            answers[i] = Some(Ok(SynthesizeResponse { results }));
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Error::internal("a request was left unanswered"))))
        .collect()
}
