//! Reading a model directory's files without trusting them: a model
//! directory may come from anyone (a hub repository, a shared disk), and a
//! `config.json` that is a symlink to /dev/zero or a FIFO must not grow the
//! process without bound or block a load forever. Every file is resolved
//! (symlinks followed, as the Hugging Face cache's links into `blobs/`
//! need), must be a regular file, and is read only up to a size limit.
//!
//! The daemon (reading config.json's architecture) and the models crate
//! (every JSON, tokenizer and weight file) both read through here.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;

/// The limit for small JSON files: config.json, generation_config.json,
/// preprocessor_config.json, tokenizer_config.json, special_tokens_map.json,
/// sentence-transformers' modules.json and 1_Pooling/config.json. The
/// largest real ones are configs with an ImageNet-22k `id2label` (about
/// 1-2 MB); 8 MiB leaves room and keeps parsing cheap.
pub const CONFIG_LIMIT: u64 = 8 * MIB;

/// The limit for a sharded checkpoint's `*.index.json`: one line per
/// tensor, under 10 MB for the largest published checkpoints (hundreds of
/// thousands of tensors in mixture-of-experts models).
pub const WEIGHT_INDEX_LIMIT: u64 = 32 * MIB;

/// The limit for tokenizer files: tokenizer.json, vocab.json, merges and
/// SentencePiece models. Large vocabularies' tokenizer.json run to 10-35 MB
/// (XLM-R's about 17 MB, Gemma 3's about 33 MB); SentencePiece models and
/// vocab.json files are smaller. 64 MiB holds all of them with room.
pub const TOKENIZER_LIMIT: u64 = 64 * MIB;

/// Why a model file was not read.
#[derive(Debug)]
pub enum FileRefusal {
    /// Nothing is at the path (or a symlink's target is missing).
    Missing,
    /// The path resolves to something other than a regular file.
    NotRegular {
        kind: &'static str,
        target: Option<PathBuf>,
    },
    /// The file is larger than the limit for its kind.
    TooLarge { size: u64, limit: u64 },
    /// Opening or reading failed.
    Io(std::io::Error),
}

impl fmt::Display for FileRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRefusal::Missing => write!(f, "does not exist (or is a symlink to nothing)"),
            FileRefusal::NotRegular { kind, target } => {
                write!(f, "is {kind}")?;
                if let Some(target) = target {
                    write!(f, " (the symlink resolves to {})", target.display())?;
                }
                write!(
                    f,
                    ", not a regular file; a model file must be a regular file (or a symlink to one)"
                )
            }
            FileRefusal::TooLarge { size, limit } => write!(
                f,
                "is {size} bytes, over the {limit}-byte ({} MiB) limit for this kind of model file",
                limit / MIB
            ),
            FileRefusal::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl std::error::Error for FileRefusal {}

/// Whether anything is at `path`, a broken symlink or a FIFO included: a
/// model directory's optional file is looked for with this, so that a file
/// that is there but unreadable is refused by [`read_model_file`] saying
/// why instead of being silently passed over.
pub fn is_present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Checks that `path` resolves (through any chain of symlinks) to a regular
/// file, without opening it (opening a FIFO blocks); its metadata.
pub fn check_regular_file(path: &Path) -> Result<Metadata, FileRefusal> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FileRefusal::Missing,
        _ => FileRefusal::Io(e),
    })?;
    if meta.is_file() {
        return Ok(meta);
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    Err(FileRefusal::NotRegular {
        kind: kind_of(&meta),
        target: if is_link {
            std::fs::canonicalize(path).ok()
        } else {
            None
        },
    })
}

/// Reads a whole model file of at most `limit` bytes: checked by
/// [`check_regular_file`] first, opened without blocking, checked again on
/// the open file (it may have been swapped since), and read to at most
/// `limit + 1` bytes (it may grow while being read).
pub fn read_model_file(path: &Path, limit: u64) -> Result<Vec<u8>, FileRefusal> {
    let meta = check_regular_file(path)?;
    if meta.len() > limit {
        return Err(FileRefusal::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let file = open_nonblocking(path).map_err(FileRefusal::Io)?;
    let meta = file.metadata().map_err(FileRefusal::Io)?;
    if !meta.is_file() {
        return Err(FileRefusal::NotRegular {
            kind: kind_of(&meta),
            target: std::fs::canonicalize(path).ok(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(FileRefusal::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileRefusal::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

fn kind_of(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "an unknown kind of file"
}
