//! Options that several commands take, defined once and flattened into each.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `--model`: the loaded model to ask.
#[derive(clap::Args)]
pub struct ModelArg {
    #[arg(long)]
    model: Option<String>,
}

impl ModelArg {
    /// The model's name; empty asks the task's default model.
    pub fn name(self) -> String {
        self.model.unwrap_or_default()
    }
}

/// pipeline()'s `truncation`, for the tasks that have it.
#[derive(clap::Args, Clone, Copy)]
pub struct TruncationArg {
    /// true: cut an input longer than the tokenizer's model_max_length
    /// there; false: keep it whole (refused when longer than the model's
    /// positions). Default: cut (T5 summaries and translations: keep whole).
    #[arg(long, value_name = "true|false")]
    pub truncation: Option<bool>,
}

/// Files to send whole, one input each (images, audio).
#[derive(clap::Args)]
pub struct InputFiles {
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

impl InputFiles {
    /// Each file's contents, in order; an unreadable file is an error naming it.
    pub fn read(&self) -> Result<Vec<Vec<u8>>> {
        self.paths
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("read {}", p.display())))
            .collect()
    }

    /// The paths as given, to head each file's answer.
    pub fn names(&self) -> Vec<String> {
        self.paths.iter().map(|p| p.display().to_string()).collect()
    }
}

/// `out.png` as `out-2.png`.
pub fn numbered(path: &Path, n: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}
