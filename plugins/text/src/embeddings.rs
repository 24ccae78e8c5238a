//! `feature-extraction`: per-token hidden states like
//! pipeline("feature-extraction"), and a pooled sentence embedding as
//! sentence-transformers computes it, configured by the checkpoint's
//! `1_Pooling/config.json`, `modules.json` (Normalize) and
//! `sentence_bert_config.json` (max_seq_length) when present. The size
//! of the answer is bounded (`INFERD_MAX_EMBEDDING_BYTES`), and texts run
//! one forward chunk at a time, asking between chunks whether the request
//! is still wanted.

use std::path::Path;

use inferd_models::auto::TextModel;
use inferd_models::core::config::{is_present, read_model_file, CONFIG_LIMIT};
use inferd_sdk::proto::api::{EmbedRequest, EmbedResponse, Embedding, Vector};
use inferd_sdk::Error;
use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::common::{check_texts, each_wanted, forward_encodings, input_error, values, MAX_FORWARD_BATCH};
use crate::limits::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
    None,
}

impl Pooling {
    fn parse(name: &str) -> Result<Option<Self>, Error> {
        Ok(Some(match name.to_ascii_lowercase().as_str() {
            "" => return Ok(None),
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "max" => Pooling::Max,
            "none" => Pooling::None,
            other => {
                return Err(Error::invalid_argument(format!(
                    "pooling `{other}` is not one of mean, cls, max, none"
                )))
            }
        }))
    }
}

/// The sentence-transformers settings of a checkpoint.
#[derive(Debug, Clone)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
}

/// An optional sentence-transformers file: `None` when absent or not valid
/// JSON (a warning); an error when it is there but not a regular file under
/// the config size limit (a symlink to /dev/zero, a FIFO), which fails the
/// load rather than silently changing the pooling.
fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, Error> {
    if !is_present(path) {
        return Ok(None);
    }
    let bytes = read_model_file(path, CONFIG_LIMIT)?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unreadable sentence-transformers file: {e}");
            Ok(None)
        }
    }
}

impl SentenceConfig {
    /// Reads the files if present; defaults: mean pooling, no normalisation.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let pooling = read::<PoolingFile>(&dir.join("1_Pooling/config.json"))?
            .map(|p| {
                if p.pooling_mode_cls_token {
                    Pooling::Cls
                } else if p.pooling_mode_max_tokens && !p.pooling_mode_mean_tokens {
                    Pooling::Max
                } else {
                    Pooling::Mean
                }
            })
            .unwrap_or(Pooling::Mean);
        let normalize = read::<Vec<Module>>(&dir.join("modules.json"))?
            .is_some_and(|modules| modules.iter().any(|m| m.kind.ends_with("Normalize")));
        let max_seq_length =
            read::<SentenceBertFile>(&dir.join("sentence_bert_config.json"))?.and_then(|s| s.max_seq_length);
        Ok(SentenceConfig {
            pooling,
            normalize,
            max_seq_length,
        })
    }
}

pub fn embed(
    model: &mut TextModel,
    sentence: &SentenceConfig,
    limits: &Limits,
    requests: &[EmbedRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<EmbedResponse, Error>> {
    each_wanted(requests, wanted, |r, w| embed_one(model, sentence, limits, r, w))
}

fn embed_one(
    model: &mut TextModel,
    sentence: &SentenceConfig,
    limits: &Limits,
    request: &EmbedRequest,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<EmbedResponse, Error> {
    check_texts(request.inputs.iter().map(String::as_str), "")?;
    let pooling = Pooling::parse(&request.pooling)?.unwrap_or(sentence.pooling);
    let normalize = request.normalize.unwrap_or(sentence.normalize);
    let truncation = sentence
        .max_seq_length
        .map(|max_length| inferd_models::text::tokenizer::TruncationParams {
            max_length: max_length.min(model.tokenizer.max_length()),
            ..Default::default()
        });
    let mut encodings = Vec::with_capacity(request.inputs.len());
    for (i, text) in request.inputs.iter().enumerate() {
        let encoding = if request.truncation == Some(false) {
            model.tokenizer.encode_truncating(text, None, Some(false))
        } else {
            model.tokenizer.encode_with(text, None, truncation.clone())
        };
        let mut encoding = encoding.map_err(|e| input_error(i, e))?;
        // Only the first window of a text longer than the model's is used.
        encoding.get_overflowing_mut().clear();
        encodings.push(encoding);
    }
    let lengths: Vec<usize> = encodings.iter().map(|e| e.len()).collect();
    let per_token = request.return_token_embeddings || pooling == Pooling::None;
    // Vectors in the answer, each as wide as the model's hidden states.
    let vectors =
        if per_token { lengths.iter().sum() } else { 0 } + if pooling == Pooling::None { 0 } else { lengths.len() };
    let mut results = Vec::with_capacity(encodings.len());
    for (c, chunk) in encodings.chunks(MAX_FORWARD_BATCH).enumerate() {
        if !wanted() {
            return Err(Error::stopped());
        }
        let hidden = forward_encodings(model, chunk)?;
        if c == 0 {
            // The width is known from the first chunk's output: the rest
            // does not run when the answer would be too large.
            let width = hidden.first().map_or(0, |h| *h.size().last().unwrap_or(&0)) as u64;
            limits.embedding_bytes.check(
                vectors as u64 * width * 4,
                "the answer's size in bytes (vectors x hidden size x 4)",
            )?;
        }
        let lengths = &lengths[c * MAX_FORWARD_BATCH..];
        results.extend(hidden.iter().zip(lengths).map(|(h, &len)| {
            let tokens = h.narrow(0, 0, len as i64);
            let pooled = match pooling {
                Pooling::None => None,
                Pooling::Cls => Some(tokens.get(0)),
                Pooling::Mean => Some(tokens.mean_dim(0, false, Kind::Float)),
                Pooling::Max => Some(tokens.amax(0, false)),
            };
            let pooled = pooled.map(|p| if normalize { l2_normalise(&p) } else { p });
            let token_embeddings = if per_token {
                (0..len as i64)
                    .map(|t| Vector {
                        values: values(&tokens.get(t)),
                    })
                    .collect()
            } else {
                vec![]
            };
            Embedding {
                embedding: pooled.as_ref().map(values).unwrap_or_default(),
                token_embeddings,
            }
        }));
    }
    Ok(EmbedResponse { results })
}

/// x / max(||x||, 1e-12), like torch.nn.functional.normalize.
fn l2_normalise(x: &Tensor) -> Tensor {
    let norm = x.norm().clamp_min(1e-12);
    x / norm
}
