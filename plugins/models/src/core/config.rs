//! Reading config.json and the parts of it that every architecture shares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use inferd_sdk::files::{is_present, CONFIG_LIMIT, TOKENIZER_LIMIT, WEIGHT_INDEX_LIMIT};

use crate::{ModelError, Result};

/// Reads a whole model file, at most `limit` bytes (one of the `*_LIMIT`s):
/// every read of a model directory's files goes through here, so that a
/// symlink to /dev/zero, a FIFO or a huge file is refused, naming the file,
/// before it is opened or grown into memory (`inferd_sdk::files`).
pub fn read_model_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    inferd_sdk::files::read_model_file(path, limit).map_err(|reason| ModelError::unreadable(path, reason))
}

/// Checks that a file that is opened elsewhere (memory-mapped weights)
/// resolves to a regular file, without a size limit.
pub fn check_regular_file(path: &Path) -> Result<()> {
    inferd_sdk::files::check_regular_file(path)
        .map(drop)
        .map_err(|reason| ModelError::unreadable(path, reason))
}

/// Reads and deserialises a small JSON file (config.json and the other
/// `*config.json` files: [`CONFIG_LIMIT`]), naming the file in errors.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    read_json_within(path, CONFIG_LIMIT)
}

/// Reads and deserialises a JSON file of at most `limit` bytes.
pub fn read_json_within<T: DeserializeOwned>(path: &Path, limit: u64) -> Result<T> {
    let bytes = read_model_file(path, limit)?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::bad_file(path, name_the_field::<T>(&bytes, e)))
}

/// serde's message for a field of the wrong type says only where in the
/// file it is ("invalid type: floating point `1e9`, expected i64 at line
/// 7"); for a JSON object the field is named, as the one whose absence
/// clears the error. Otherwise serde's message as it is.
fn name_the_field<T: DeserializeOwned>(bytes: &[u8], error: serde_json::Error) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(bytes) else {
        return error.to_string();
    };
    let Err(in_value) = T::deserialize(&serde_json::Value::Object(fields.clone())) else {
        return error.to_string();
    };
    let in_value = in_value.to_string();
    let culprit = fields.keys().find(|key| {
        let mut without = fields.clone();
        without.remove(key.as_str());
        match T::deserialize(&serde_json::Value::Object(without)) {
            Ok(_) => true,
            Err(e) => e.to_string() != in_value && !e.to_string().contains("missing field"),
        }
    });
    match culprit {
        Some(field) => format!("{field}: {in_value}"),
        None => error.to_string(),
    }
}

/// The path of `config.json` in a model directory, or a helpful error.
pub fn config_path(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("config.json");
    if is_present(&path) {
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
    use std::os::unix::fs::symlink;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Reads `path` through `read_model_file` on a thread and returns the
    /// refusal's message, failing (rather than hanging) if the read takes
    /// more than two seconds or succeeds.
    fn refusal(path: &Path, limit: u64) -> String {
        let (tx, rx) = mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read_model_file(&owned, limit).map(|b| b.len()));
        });
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Ok(len)) => panic!("{} was read ({len} bytes)", path.display()),
            Ok(Err(e)) => {
                assert!(matches!(e, ModelError::UnreadableFile { .. }), "{e}");
                let message = e.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert_eq!(inferd_sdk::Error::from(e).code, inferd_sdk::Code::FailedPrecondition);
                message
            }
            Err(_) => panic!("reading {} did not finish within 2 s", path.display()),
        }
    }

    #[test]
    fn a_symlink_to_dev_zero_is_refused_as_a_character_device() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        symlink("/dev/zero", &path).unwrap();
        let message = refusal(&path, CONFIG_LIMIT);
        assert!(message.contains("character device"), "{message}");
        assert!(message.contains("/dev/zero"), "{message}");
        let err = read_json::<CommonConfig>(&path).unwrap_err();
        assert!(matches!(err, ModelError::UnreadableFile { .. }), "{err}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        let message = refusal(&path, CONFIG_LIMIT);
        assert!(message.contains("FIFO"), "{message}");
        assert!(
            is_present(&path),
            "a FIFO is present, so it is refused rather than passed over"
        );
        assert!(config_path(dir.path()).is_ok());
    }

    #[test]
    fn a_directory_named_config_json_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::create_dir(&path).unwrap();
        let message = refusal(&path, CONFIG_LIMIT);
        assert!(message.contains("a directory"), "{message}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_its_size_and_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        std::fs::write(&path, vec![b' '; 1025]).unwrap();
        let message = refusal(&path, 1024);
        assert!(message.contains("1025 bytes"), "{message}");
        assert!(message.contains("1024-byte"), "{message}");
        // At the limit exactly it is read.
        std::fs::write(&path, vec![b' '; 1024]).unwrap();
        assert_eq!(read_model_file(&path, 1024).unwrap().len(), 1024);
    }

    #[test]
    fn a_symlink_to_nothing_is_refused_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        symlink(dir.path().join("gone"), &path).unwrap();
        let message = refusal(&path, CONFIG_LIMIT);
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn a_chain_of_symlinks_to_a_regular_file_is_read() {
        // The Hugging Face cache: snapshots/<rev>/config.json -> ../../blobs/<hash>.
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, br#"{"architectures": ["BertModel"]}"#).unwrap();
        symlink(&blob, dir.path().join("link1")).unwrap();
        symlink("link1", dir.path().join("config.json")).unwrap();
        let config = CommonConfig::from_dir(dir.path()).unwrap();
        assert_eq!(config.architectures, vec!["BertModel"]);
        assert!(check_regular_file(&dir.path().join("config.json")).is_ok());
    }

    #[test]
    fn labels_follow_numeric_index_order() {
        let c: CommonConfig =
            serde_json::from_str(r#"{"id2label": {"10": "k", "2": "c", "0": "a", "1": "b"}}"#).unwrap();
        assert_eq!(c.labels(0), vec!["a", "b", "c", "k"]);
        let empty = CommonConfig::default();
        assert_eq!(empty.labels(2), vec!["LABEL_0", "LABEL_1"]);
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Sizes {
            #[serde(default)]
            dim: i64,
            #[serde(default)]
            n_layers: i64,
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"dim": 8, "n_layers": 1e9, "other": "x"}"#).unwrap();
        let err = read_json::<Sizes>(&file).unwrap_err().to_string();
        assert!(err.contains("n_layers: invalid type: floating point"), "{err}");
        std::fs::write(&file, r#"{"dim": 8, "n_layers": 6}"#).unwrap();
        assert_eq!(read_json::<Sizes>(&file).unwrap().n_layers, 6);
    }
}
