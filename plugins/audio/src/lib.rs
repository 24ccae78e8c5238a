//! The inferd plugin for audio tasks. Audio arrives as encoded files; the
//! decoding, the resampling and the models come from `inferd-models`.

pub mod speech_recognition;

use inferd_models::auto::{architectures_for, load_ctc_model, CtcModel};
use inferd_models::core::device::parse_device;
use inferd_sdk::proto::task_response::Body as Response;
use inferd_sdk::proto::{LoadedModel, Manifest, TaskRequest, TaskSpec};
use inferd_sdk::{dispatch, export_plugin, Emitter, Error, LoadContext, Task};

/// Longest audio accepted, in seconds, unless INFERD_MAX_AUDIO_SECONDS says
/// otherwise.
const DEFAULT_MAX_AUDIO_SECONDS: f64 = 3600.0;

/// One loaded model, serving one task.
pub struct AudioTask {
    model: CtcModel,
    max_seconds: f64,
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
        let max_seconds = inferd_sdk::env_limit("INFERD_MAX_AUDIO_SECONDS", DEFAULT_MAX_AUDIO_SECONDS)?;
        Ok(AudioTask {
            model: load_ctc_model(dir, device)?,
            max_seconds,
        })
    }

    fn describe(&self) -> LoadedModel {
        LoadedModel {
            memory_bytes: self.model.memory_bytes,
            labels: vec![],
        }
    }

    /// Each audio file (or chunk) runs as its own forward pass, as
    /// pipeline() does: padding would change the group-normed base models'
    /// output.
    fn run(&mut self, batch: Vec<TaskRequest>, emitter: &mut Emitter) -> Vec<Result<Response, Error>> {
        dispatch::each("automatic-speech-recognition", batch, emitter, |request| {
            speech_recognition::transcribe(&self.model, request, self.max_seconds)
        })
    }
}

export_plugin!(AudioTask);
