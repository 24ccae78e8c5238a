//! Checking a config.json's sizes before a model is built from them: each
//! size positive and within a bound, divisible where the model splits it,
//! and equal to the size the checkpoint's own tensors have (read from the
//! safetensors headers, [`WeightShapes`]). A model built from a checked
//! config allocates no more than its checkpoint holds, so a hostile
//! config.json is refused (FAILED_PRECONDITION, naming the field) instead of
//! collecting a billion layers or allocating terabytes.

use std::path::Path;

use crate::core::weights::WeightShapes;
use crate::{ModelError, Result};

/// The most layers (or blocks, or stages' blocks) a list may have: the
/// largest released models have about 100.
pub const MAX_LAYERS: i64 = 1024;
/// The widest hidden, feed-forward or projection size: T5-11B's d_ff is
/// 65,536; four times that leaves room.
pub const MAX_WIDTH: i64 = 1 << 18;
/// The largest vocabulary or position table (the largest vocabularies are
/// about 256k).
pub const MAX_TABLE: i64 = 1 << 20;
/// The most labels a classifier head may have (ImageNet-21k has 21,843).
pub const MAX_LABELS: i64 = 1 << 17;
/// The largest convolution kernel, stride, patch or image side.
pub const MAX_SPATIAL: i64 = 1 << 14;
/// The most entries a per-stage or per-convolution list may have.
pub const MAX_STAGES: usize = 64;

/// The checks of one config.json against one checkpoint; each refusal is a
/// `BadFile` of the config naming the field and what the weights say.
pub struct ConfigCheck<'a> {
    file: &'a Path,
    shapes: &'a WeightShapes,
}

impl<'a> ConfigCheck<'a> {
    pub fn new(file: &'a Path, shapes: &'a WeightShapes) -> Self {
        ConfigCheck { file, shapes }
    }

    fn refuse(&self, message: String) -> ModelError {
        ModelError::bad_file(self.file, message)
    }

    /// `field` is between 1 and `max`.
    pub fn size(&self, field: &str, value: i64, max: i64) -> Result<()> {
        if value < 1 || value > max {
            return Err(self.refuse(format!("{field} = {value}, but it must be between 1 and {max}")));
        }
        Ok(())
    }

    /// `field` is between 0 and `max` (an id, or an optional size).
    pub fn at_most(&self, field: &str, value: i64, max: i64) -> Result<()> {
        if value < 0 || value > max {
            return Err(self.refuse(format!("{field} = {value}, but it must be between 0 and {max}")));
        }
        Ok(())
    }

    /// `field` is at least `min` (named `min_field`), as an image holds a patch.
    pub fn at_least(&self, field: &str, value: i64, min_field: &str, min: i64) -> Result<()> {
        if value < min {
            return Err(self.refuse(format!(
                "{field} = {value}, but it must be at least {min_field} = {min}"
            )));
        }
        Ok(())
    }

    /// `field` divides `of` (named `of_field`), as heads divide a width.
    pub fn divides(&self, field: &str, value: i64, of_field: &str, of: i64) -> Result<()> {
        if value < 1 || of % value != 0 {
            return Err(self.refuse(format!("{field} = {value}, but it must divide {of_field} = {of}")));
        }
        Ok(())
    }

    /// A layer count: between 1 and MAX_LAYERS, and no more than the
    /// checkpoint's layer list at `prefix` has (fewer is what transformers
    /// loads too, leaving the rest unused).
    pub fn layers(&self, field: &str, value: i64, prefix: &str) -> Result<()> {
        self.size(field, value, MAX_LAYERS)?;
        let indices = self.shapes.layer_indices(prefix);
        if value as usize > indices.len() {
            let have = match (indices.first(), indices.last()) {
                (Some(first), Some(last)) => format!("{} layers ({prefix}.{first} .. {last})", indices.len()),
                _ => format!("no {prefix}.N layers"),
            };
            return Err(self.refuse(format!("{field} = {value}, but the checkpoint has {have}")));
        }
        Ok(())
    }

    /// `field` is between 1 and `max` and equals dimension `axis` of the
    /// checkpoint's tensor `tensor` (a name suffix); a tensor the
    /// checkpoint lacks is a missing weight.
    pub fn matches(&self, field: &str, value: i64, max: i64, tensor: &str, axis: usize) -> Result<()> {
        self.size(field, value, max)?;
        self.anchor(field, value, value, "", tensor, axis)
    }

    /// Dimension `axis` of the checkpoint's tensor `tensor` is `expected`,
    /// a size derived from `field` (`how` says how, for the message).
    pub fn anchor(&self, field: &str, value: i64, expected: i64, how: &str, tensor: &str, axis: usize) -> Result<()> {
        let Some((name, shape)) = self.shapes.find(tensor) else {
            return Err(ModelError::MissingWeight {
                name: tensor.to_string(),
                files: self.shapes.files().to_string(),
            });
        };
        if shape.get(axis) != Some(&expected) {
            return Err(self.refuse(format!(
                "{field} = {value}, but the checkpoint's {name} has shape {shape:?}{how}"
            )));
        }
        Ok(())
    }

    /// `field` is `expected` (`why` says why, for the message).
    pub fn exactly(&self, field: &str, value: i64, expected: i64, why: &str) -> Result<()> {
        if value != expected {
            return Err(self.refuse(format!("{field} = {value}, but it must be {expected} ({why})")));
        }
        Ok(())
    }

    /// A Python index into `len` items (`what`): -len to len - 1.
    pub fn index(&self, field: &str, value: i64, len: i64, what: &str) -> Result<()> {
        if !(-len..len).contains(&value) {
            return Err(self.refuse(format!(
                "{field} = {value}, but {what} has {len} (-{len} to {})",
                len - 1
            )));
        }
        Ok(())
    }

    /// A token id the model embeds: between 0 and `vocab_size` - 1.
    pub fn token(&self, field: &str, id: i64, vocab_size: i64) -> Result<()> {
        if id < 0 || id >= vocab_size {
            return Err(self.refuse(format!("{field} = {id}, but the vocabulary has {vocab_size} tokens")));
        }
        Ok(())
    }

    /// Like [`ConfigCheck::matches`], for the first of `tensors` the
    /// checkpoint has (a weight saved under one of several names).
    pub fn matches_any(&self, field: &str, value: i64, max: i64, tensors: &[&str], axis: usize) -> Result<()> {
        let tensor = tensors
            .iter()
            .find(|t| self.shapes.find(t).is_some())
            .unwrap_or(&tensors[0]);
        self.matches(field, value, max, tensor, axis)
    }

    /// A list the model builds one piece per entry of: 1 to MAX_STAGES long.
    pub fn list(&self, field: &str, len: usize) -> Result<()> {
        if len == 0 || len > MAX_STAGES {
            return Err(self.refuse(format!(
                "{field} has {len} entries, but it must have between 1 and {MAX_STAGES}"
            )));
        }
        Ok(())
    }

    /// Lists the model zips together have equal lengths.
    pub fn same_length(&self, fields: &[(&str, usize)]) -> Result<()> {
        if fields.iter().any(|(_, len)| *len != fields[0].1) {
            let lengths: Vec<String> = fields.iter().map(|(f, len)| format!("{f} has {len}")).collect();
            return Err(self.refuse(format!("{} entries, but they must have as many", lengths.join(", "))));
        }
        Ok(())
    }
}

/// A config for validation tests: `base` with the fields of `edit` set.
#[cfg(test)]
pub(crate) fn edited<T: serde::de::DeserializeOwned>(mut base: serde_json::Value, edit: serde_json::Value) -> T {
    let edit = edit.as_object().expect("an object of fields").clone();
    base.as_object_mut().expect("an object of fields").extend(edit);
    serde_json::from_value(base).expect("a valid config")
}

/// The number of labels a classifier head is built with (from id2label).
pub fn check_labels(file: &Path, labels: usize) -> Result<()> {
    if labels == 0 || labels as i64 > MAX_LABELS {
        return Err(ModelError::bad_file(
            file,
            format!("id2label has {labels} labels, but a classifier must have between 1 and {MAX_LABELS}"),
        ));
    }
    Ok(())
}

/// Runs a model's construction, turning a LibTorch failure (an allocation
/// that fails despite the checks: the device is out of memory) into an
/// error instead of a panic that would unwind through the plugin.
pub fn build_fallibly<T>(build: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)) {
        Ok(result) => result,
        Err(panic) => {
            let message =
                inferd_sdk::panic_text(panic.as_ref()).unwrap_or_else(|| "the model could not be built".into());
            Err(ModelError::Torch(tch::TchError::Torch(message)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> WeightShapes {
        WeightShapes::from_shapes([
            ("distilbert.embeddings.word_embeddings.weight", vec![100, 16]),
            ("distilbert.transformer.layer.0.ffn.lin1.weight", vec![32, 16]),
            ("distilbert.transformer.layer.1.ffn.lin1.weight", vec![32, 16]),
        ])
    }

    #[test]
    fn a_layer_count_past_the_checkpoints_is_refused_naming_the_field_and_the_layers() {
        let shapes = shapes();
        let check = ConfigCheck::new(Path::new("config.json"), &shapes);
        check.layers("n_layers", 2, "transformer.layer").unwrap();
        check.layers("n_layers", 1, "transformer.layer").unwrap();
        let err = check
            .layers("n_layers", 3, "transformer.layer")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("n_layers = 3, but the checkpoint has 2 layers (transformer.layer.0 .. 1)"),
            "{err}"
        );
        let err = check
            .layers("n_layers", 1_000_000_000, "transformer.layer")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("n_layers = 1000000000") && err.contains("between 1 and 1024"),
            "{err}"
        );
        assert!(check.layers("n_layers", 0, "transformer.layer").is_err());
    }

    #[test]
    fn a_size_is_checked_against_the_anchor_tensors_shape() {
        let shapes = shapes();
        let check = ConfigCheck::new(Path::new("config.json"), &shapes);
        check
            .matches("dim", 16, MAX_WIDTH, "embeddings.word_embeddings.weight", 1)
            .unwrap();
        let err = check
            .matches("dim", 32, MAX_WIDTH, "embeddings.word_embeddings.weight", 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "dim = 32, but the checkpoint's distilbert.embeddings.word_embeddings.weight has shape [100, 16]"
            ),
            "{err}"
        );
        let missing = check
            .matches("dim", 16, MAX_WIDTH, "embeddings.nothing.weight", 1)
            .unwrap_err();
        assert!(matches!(missing, ModelError::MissingWeight { .. }), "{missing}");
    }

    #[test]
    fn divisibility_and_list_lengths_are_checked() {
        let shapes = shapes();
        let check = ConfigCheck::new(Path::new("config.json"), &shapes);
        check.divides("n_heads", 4, "dim", 16).unwrap();
        assert!(check
            .divides("n_heads", 0, "dim", 16)
            .unwrap_err()
            .to_string()
            .contains("n_heads = 0"));
        assert!(check.divides("n_heads", 5, "dim", 16).is_err());
        check.same_length(&[("conv_dim", 2), ("conv_stride", 2)]).unwrap();
        let err = check
            .same_length(&[("conv_dim", 2), ("conv_stride", 3)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("conv_stride has 3"), "{err}");
        assert!(check.list("depths", 0).is_err());
    }

    #[test]
    fn a_panic_while_building_becomes_an_error() {
        let err = build_fallibly::<()>(|| panic!("out of memory")).unwrap_err();
        assert!(err.to_string().contains("out of memory"), "{err}");
        assert_eq!(build_fallibly(|| Ok(3)).unwrap(), 3);
    }
}
