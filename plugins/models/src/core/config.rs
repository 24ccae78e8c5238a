//! Reading config.json and the parts of it that every architecture shares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{ModelError, Result};

/// Reads and deserialises a JSON file, naming the file in errors.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::bad_file(path, e))
}

/// The path of `config.json` in a model directory, or a helpful error.
pub fn config_path(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("config.json");
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            what: "config.json".into(),
            expected: "a Hugging Face model directory (config.json, weights, tokenizer files)".into(),
        })
    }
}

/// Fields of config.json that every architecture has.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct CommonConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub problem_type: Option<String>,
}

impl CommonConfig {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        read_json(&config_path(dir)?)
    }

    /// The architecture named in config.json (its first `architectures`
    /// entry); `config_file` is only for the error message.
    pub fn architecture(&self, config_file: &Path) -> Result<String> {
        self.architectures
            .first()
            .cloned()
            .ok_or_else(|| ModelError::bad_file(config_file, "no `architectures` entry names the model class"))
    }

    /// Label names in class-index order. Without `id2label`, transformers
    /// names `n` labels LABEL_0 .. LABEL_{n-1}.
    pub fn labels(&self, default_count: usize) -> Vec<String> {
        if self.id2label.is_empty() {
            return (0..default_count).map(|i| format!("LABEL_{i}")).collect();
        }
        let mut pairs: Vec<(usize, &String)> = self
            .id2label
            .iter()
            .map(|(k, v)| (k.parse::<usize>().unwrap_or(usize::MAX), v))
            .collect();
        pairs.sort_by_key(|(i, _)| *i);
        pairs.into_iter().map(|(_, v)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_numeric_index_order() {
        let c: CommonConfig =
            serde_json::from_str(r#"{"id2label": {"10": "k", "2": "c", "0": "a", "1": "b"}}"#).unwrap();
        assert_eq!(c.labels(0), vec!["a", "b", "c", "k"]);
        let empty = CommonConfig::default();
        assert_eq!(empty.labels(2), vec!["LABEL_0", "LABEL_1"]);
    }
}
