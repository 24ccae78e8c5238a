//! The inferd plugin for audio tasks: speech recognition (audio arrives as
//! encoded files) and text to speech (sound leaves as WAV files). The
//! decoding, the resampling and the models come from `inferd-models`.

pub mod speech_recognition;
pub mod text_to_speech;
pub mod whisper;

use inferd_models::auto::{
    architectures_for, is_whisper, load_ctc_model, load_text_to_speech, load_whisper, precision_for, CtcModel,
    TextToSpeechModel, WhisperModel,
};
use inferd_models::core::device::parse_device;
use inferd_models::core::precision::Precision;
use inferd_sdk::proto::task_request::Body;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{LoadedModel, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::{dispatch, export_plugin, warm_up, Emitter, Error, Host, Limit, LoadContext, Task};

/// Longest audio accepted per input, in seconds.
pub const AUDIO_SECONDS: Limit = Limit::new("INFERD_MAX_AUDIO_SECONDS", 3600);
/// Audio one speech recognition request decodes, in seconds summed over
/// its files (each Whisper chunk counted as the 30 s window it is decoded
/// as): five times the per-file limit, room for an hour in 10 s chunks
/// (540 windows, 16,200 s) or two hours in pipeline()'s 30 s ones (360
/// windows, 10,800 s).
pub const REQUEST_AUDIO_SECONDS: Limit = Limit::new("INFERD_MAX_REQUEST_AUDIO_SECONDS", 18_000);
/// Whisper and SpeechT5: hypotheses (or texts) decoding together on one
/// instance; requests join a running decode while fewer decode.
pub const BATCH_SEQUENCES: Limit = Limit::new("INFERD_MAX_BATCH_SEQUENCES", 64);
/// Whisper and SpeechT5: what the sequences decoding together hold (see
/// each task's count); requests join a running decode while less is held.
pub const BATCH_TOKENS: Limit = Limit::new("INFERD_MAX_BATCH_TOKENS", 65_536);

/// A loaded model: speech recognition on CTC (Wav2Vec2) or Whisper, or
/// text to speech.
enum AudioModel {
    Ctc(CtcModel, speech_recognition::Seconds),
    Whisper(Box<WhisperModel>, whisper::Limits),
    TextToSpeech(Box<TextToSpeechModel>, text_to_speech::Limits),
}

/// One loaded model, serving one task.
pub struct AudioTask {
    model: AudioModel,
    /// The task's work budgets: seconds of audio per input (speech
    /// recognition), or texts per request and the batch budgets (text to
    /// speech).
    limits: Vec<Limit>,
    /// What the model computes in.
    precision: Precision,
}

impl Task for AudioTask {
    fn manifest() -> Manifest {
        Manifest {
            name: "audio".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Speech recognition (Wav2Vec2 CTC, Whisper) and text to speech (SpeechT5) on LibTorch".into(),
            tasks: vec![
                TaskSpec {
                    name: "automatic-speech-recognition".into(),
                    aliases: vec!["asr".into()],
                    default_model: "facebook/wav2vec2-base-960h".into(),
                    architectures: architectures_for("automatic-speech-recognition"),
                    needs_model: true,
                    description: "Transcribe speech (Inference/Transcribe)".into(),
                    ..Default::default()
                },
                TaskSpec {
                    name: "text-to-speech".into(),
                    aliases: vec!["text-to-audio".into()],
                    default_model: "microsoft/speecht5_tts".into(),
                    default_vocoder: "microsoft/speecht5_hifigan".into(),
                    architectures: architectures_for("text-to-speech"),
                    needs_model: true,
                    description: "Speak text, as a WAV file (Inference/Synthesize)".into(),
                },
            ],
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        let device = parse_device(&ctx.device)?;
        let precision = precision_for(ctx, device)?;
        let dir = ctx
            .model_dir
            .as_deref()
            .ok_or_else(|| Error::invalid_argument(format!("{} needs a model source", ctx.task)))?;
        match ctx.task.as_str() {
            "automatic-speech-recognition" => {
                let seconds = speech_recognition::Seconds {
                    file: AUDIO_SECONDS.for_model(ctx)?,
                    request: REQUEST_AUDIO_SECONDS.for_model(ctx)?,
                };
                if !is_whisper(dir)? {
                    return Ok(AudioTask {
                        model: AudioModel::Ctc(load_ctc_model(dir, device, precision)?, seconds),
                        limits: vec![seconds.file, seconds.request],
                        precision,
                    });
                }
                let limits = whisper::Limits {
                    seconds,
                    batch_sequences: BATCH_SEQUENCES.for_model(ctx)?,
                    batch_tokens: BATCH_TOKENS.for_model(ctx)?,
                };
                Ok(AudioTask {
                    model: AudioModel::Whisper(Box::new(load_whisper(dir, device, precision)?), limits),
                    limits: vec![
                        limits.seconds.file,
                        limits.seconds.request,
                        limits.batch_sequences,
                        limits.batch_tokens,
                    ],
                    precision,
                })
            }
            "text-to-speech" => {
                let vocoder = ctx.vocoder_dir.as_deref().ok_or_else(|| {
                    Error::invalid_argument("text-to-speech needs a vocoder: name one in options.vocoder")
                })?;
                let limits = text_to_speech::Limits {
                    texts: text_to_speech::TEXTS.for_model(ctx)?,
                    batch_texts: BATCH_SEQUENCES.for_model(ctx)?,
                    batch_tokens: BATCH_TOKENS.for_model(ctx)?,
                };
                Ok(AudioTask {
                    model: AudioModel::TextToSpeech(
                        Box::new(load_text_to_speech(dir, vocoder, device, precision)?),
                        limits,
                    ),
                    limits: vec![limits.texts, limits.batch_texts, limits.batch_tokens],
                    precision,
                })
            }
            other => Err(Error::unimplemented(format!("the audio plugin has no task {other}"))),
        }
    }

    /// Text to speech warms up with a voice: the model's first speaker, or
    /// a flat x-vector of its size. Whisper stops after two tokens: a model
    /// that does not recognise silence would otherwise decode up to its
    /// 448 (19 s for a random whisper-base on 2 cores).
    fn warm_up_request(&self, task: &str) -> Option<TaskRequest> {
        let mut request = warm_up::request(task)?;
        match (&self.model, request.body.as_mut()) {
            (AudioModel::TextToSpeech(m, _), Some(Body::Synthesize(synthesize))) => match m.speakers.keys().next() {
                Some(speaker) => synthesize.speaker = speaker.clone(),
                None => synthesize.speaker_embeddings = vec![0.05; m.net.config.speaker_embedding_dim as usize],
            },
            (AudioModel::Whisper(..), Some(Body::Transcribe(transcribe))) => transcribe.max_new_tokens = Some(2),
            _ => {}
        }
        Some(request)
    }

    fn describe(&self) -> LoadedModel {
        LoadedModel {
            memory_bytes: match &self.model {
                AudioModel::Ctc(m, _) => m.memory_bytes,
                AudioModel::Whisper(m, _) => m.memory_bytes,
                AudioModel::TextToSpeech(m, _) => m.memory_bytes,
            },
            labels: vec![],
            limits: Limit::report(&self.limits),
            speakers: match &self.model {
                AudioModel::TextToSpeech(m, _) => m.speakers.keys().cloned().collect(),
                _ => vec![],
            },
            dtype: self.precision.name().into(),
            ..Default::default()
        }
    }

    /// On a CTC model, each audio file (or chunk) runs as its own forward
    /// pass, as pipeline() does: padding would change the group-normed base
    /// models' output. Whisper's inputs (30 s windows, never padded) are
    /// decoded together, as are texts to speak.
    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        if !matches!(self.model, AudioModel::Ctc(..)) {
            // The batch alone, nothing joining (outside the daemon).
            let given = batch.len();
            let ((), answers) = emitter.as_host(given, |host| self.run_joined(batch, host));
            return answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err(Error::internal("a request was left unanswered"))))
                .collect();
        }
        let AudioModel::Ctc(model, seconds) = &self.model else {
            unreachable!("Whisper and text to speech run joined")
        };
        dispatch::each("automatic-speech-recognition", batch, emitter, |request| {
            speech_recognition::transcribe(model, request, seconds)
        })
    }

    /// Whisper and text to speech take in requests that arrive while they
    /// decode.
    fn run_joined(&mut self, batch: Vec<TaskRequest>, host: &mut Host) {
        match &self.model {
            AudioModel::Whisper(model, limits) => {
                dispatch::joined("automatic-speech-recognition", batch, host, |requests, joiner| {
                    whisper::transcribe(model, limits, requests, joiner)
                })
            }
            AudioModel::TextToSpeech(model, limits) => {
                dispatch::joined("text-to-speech", batch, host, |requests, joiner| {
                    text_to_speech::synthesize(model, limits, requests, joiner)
                })
            }
            AudioModel::Ctc(..) => {
                let answers = self.run(batch, &mut host.emitter());
                for (i, answer) in answers.into_iter().enumerate() {
                    host.finish(i, answer);
                }
            }
        }
    }
}

export_plugin!(AudioTask);
