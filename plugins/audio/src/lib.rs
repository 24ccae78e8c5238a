//! The inferd plugin for audio tasks. Audio arrives as encoded files; the
//! decoding, the resampling and the models come from `inferd-models`.

pub mod speech_recognition;
pub mod whisper;

use inferd_models::auto::{architectures_for, is_whisper, load_ctc_model, load_whisper, CtcModel, WhisperModel};
use inferd_models::core::device::parse_device;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{LoadedModel, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::{dispatch, export_plugin, Emitter, Error, Limit, LoadContext, Task};

/// Longest audio accepted per input, in seconds.
pub const AUDIO_SECONDS: Limit = Limit::new("INFERD_MAX_AUDIO_SECONDS", 3600);

/// A speech-recognition model: CTC (Wav2Vec2) or Whisper.
enum SpeechModel {
    Ctc(CtcModel),
    Whisper(Box<WhisperModel>),
}

/// One loaded model, serving one task.
pub struct AudioTask {
    model: SpeechModel,
    max_seconds: Limit,
}

impl Task for AudioTask {
    fn manifest() -> Manifest {
        Manifest {
            name: "audio".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Audio tasks on Wav2Vec2 CTC models (LibTorch)".into(),
            tasks: vec![TaskSpec {
                name: "automatic-speech-recognition".into(),
                aliases: vec!["asr".into()],
                default_model: "facebook/wav2vec2-base-960h".into(),
                architectures: architectures_for("automatic-speech-recognition"),
                needs_model: true,
                description: "Transcribe speech (Inference/Transcribe)".into(),
            }],
        }
    }

    fn load(ctx: &LoadContext) -> Result<Self, Error> {
        if ctx.task != "automatic-speech-recognition" {
            return Err(Error::unimplemented(format!(
                "the audio plugin has no task {}",
                ctx.task
            )));
        }
        let device = parse_device(&ctx.device)?;
        let dir = ctx
            .model_dir
            .as_deref()
            .ok_or_else(|| Error::invalid_argument("automatic-speech-recognition needs a model source"))?;
        let model = if is_whisper(dir)? {
            SpeechModel::Whisper(Box::new(load_whisper(dir, device)?))
        } else {
            SpeechModel::Ctc(load_ctc_model(dir, device)?)
        };
        Ok(AudioTask {
            max_seconds: AUDIO_SECONDS.for_model(ctx)?,
            model,
        })
    }

    fn describe(&self) -> LoadedModel {
        LoadedModel {
            memory_bytes: match &self.model {
                SpeechModel::Ctc(m) => m.memory_bytes,
                SpeechModel::Whisper(m) => m.memory_bytes,
            },
            labels: vec![],
            limits: Limit::report(&[self.max_seconds]),
        }
    }

    /// On a CTC model, each audio file (or chunk) runs as its own forward
    /// pass, as pipeline() does: padding would change the group-normed base
    /// models' output. Whisper's inputs (30 s windows, never padded) are
    /// decoded together.
    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        let max_seconds = self.max_seconds.max as f64;
        match &self.model {
            SpeechModel::Ctc(model) => dispatch::each("automatic-speech-recognition", batch, emitter, |request| {
                speech_recognition::transcribe(model, request, max_seconds)
            }),
            SpeechModel::Whisper(model) => {
                dispatch::typed("automatic-speech-recognition", batch, emitter, |requests, emitter| {
                    whisper::transcribe_all(model, requests, max_seconds, emitter)
                })
            }
        }
    }
}

export_plugin!(AudioTask);
