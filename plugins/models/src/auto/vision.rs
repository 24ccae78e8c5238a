//! What the image loaders (classification, detection, depth,
//! segmentation) share: the checkpoint's config, its architecture's
//! registry entry for the task and its labels; then the network built
//! from the config, checked against the checkpoint, with its weights in
//! the dtype asked for (`build_loaded`, which the speech, text-to-speech
//! and vocoder loaders use too).

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Device;

use crate::auto::Build;
use crate::core::checks::{build_fallibly, check_labels};
use crate::core::config::{config_path, CommonConfig};
use crate::core::precision::Precision;
use crate::core::weights::{Checkpoint, WeightShapes};
use crate::{ModelError, Result};

/// A checkpoint opened for one task.
pub(crate) struct Opened {
    pub config_file: PathBuf,
    pub config: CommonConfig,
    pub architecture: String,
    /// How the registry builds it.
    pub build: Build,
    /// From id2label; checked when the task's head has one per label.
    pub labels: Vec<String>,
}

impl Opened {
    /// The error for a registry entry of the task that is not of `kind`.
    pub fn not_a(&self, kind: &str) -> ModelError {
        ModelError::Unsupported(format!("{} is not {kind}", self.architecture))
    }
}

/// Opens the checkpoint in `dir` for `task` (`what` names it for people);
/// with `labelled`, its id2label must give a head's worth of labels.
pub(crate) fn open(dir: &Path, task: &str, what: &str, labelled: bool) -> Result<Opened> {
    let config_file = config_path(dir)?;
    let config = CommonConfig::from_dir(dir)?;
    let architecture = config.architecture(&config_file)?;
    let build = crate::auto::find(&architecture, task, what)?.build;
    let labels = config.labels(2);
    if labelled {
        check_labels(&config_file, labels.len())?;
    }
    Ok(Opened {
        config_file,
        config,
        architecture,
        build,
        labels,
    })
}

/// The network `build` makes under a new VarStore on `device` in
/// `precision`, from the checkpoint's shapes, with the checkpoint's weights
/// loaded into it (converted to that dtype).
pub(crate) fn build_loaded<N>(
    dir: &Path,
    device: Device,
    precision: Precision,
    build: impl FnOnce(tch::nn::Path, &WeightShapes) -> Result<N>,
) -> Result<(N, VarStore)> {
    let checkpoint = Checkpoint::open(dir)?;
    let mut vs = VarStore::new(device);
    vs.set_kind(precision.kind());
    let net = build_fallibly(|| build(vs.root(), checkpoint.shapes()))?;
    checkpoint.load_into(&mut vs)?;
    Ok((net, vs))
}
