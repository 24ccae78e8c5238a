//! What one request may ask of a text model: the work budgets each task
//! checks before it runs (issue 20's "a work budget per request"). The
//! defaults are meant to pass every ordinary request and refuse the ones
//! that would hold a worker for minutes or grow the daemon by gigabytes;
//! each is read at load from its `INFERD_MAX_*` variable (the README's
//! "Limits" table lists them all).

use inferd_sdk::{Error, Limit, LoadContext};

/// Every encoder task and summarization/translation: inputs (texts, or
/// question/context pairs) per request. Each is tokenized and run, and the
/// request's answers are held, before any is sent.
pub const INPUTS: Limit = Limit::new("INFERD_MAX_INPUTS", 1024);

/// Zero-shot: candidate labels per request. Each label is one NLI pass per
/// text; pipeline() users rarely send more than a few dozen.
pub const CANDIDATE_LABELS: Limit = Limit::new("INFERD_MAX_CANDIDATE_LABELS", 256);
/// Zero-shot: tokens of the (text, hypothesis) pairs, texts x labels x
/// (text + hypothesis tokens), counted before truncation, because
/// pipeline() tokenizes the whole text once per label. 2^20 is 2,048 pairs
/// that fill a 512-token window, or a 1 MB text against 4 labels.
pub const ZERO_SHOT_TOKENS: Limit = Limit::new("INFERD_MAX_ZERO_SHOT_TOKENS", 1 << 20);
/// Fill-mask: candidates per request, masks x top_k (top_k counted up to
/// the vocabulary or the targets, as the answer can hold no more). Each
/// candidate carries its completed text: 16,384 candidates of a 512-token
/// text are some 40 MB of answer.
pub const FILL_MASK_CANDIDATES: Limit = Limit::new("INFERD_MAX_FILL_MASK_CANDIDATES", 16_384);
/// Feature extraction: bytes of the answer's vectors (4 per value), 64 MiB,
/// the Python client's receive limit (gRPC's own default is 4 MiB): some
/// 40 texts of 512 token embeddings from a 768-wide model.
pub const EMBEDDING_BYTES: Limit = Limit::new("INFERD_MAX_EMBEDDING_BYTES", 64 << 20);
/// Question answering: windows per request, over all its inputs. At the
/// default max_seq_len 384 and doc_stride 128 a window moves on by about
/// 230 context tokens, so 512 windows cover some 120,000 tokens (a 500 KB
/// context), each one a forward pass.
pub const QA_WINDOWS: Limit = Limit::new("INFERD_MAX_QA_WINDOWS", 512);
/// Text generation: sequences per request, prompts x num_return_sequences.
/// Every sequence is a row of each decoding step (with its logits over the
/// vocabulary: 200 KB for GPT-2), and all rows of a batch step together.
pub const SEQUENCES: Limit = Limit::new("INFERD_MAX_SEQUENCES", 256);
/// Text generation: tokens per request, sequences x (prompt + max_new_tokens),
/// what the KV caches hold at the end: 16 full GPT-2 windows, 1.2 GB of
/// cache for GPT-2 small in f32.
pub const GENERATION_TOKENS: Limit = Limit::new("INFERD_MAX_GENERATION_TOKENS", 16_384);
/// Generation, summarization and translation: sequences (hypotheses, for
/// beam search) decoding together on one instance. Requests that arrive
/// while a decode runs join it at the next step (continuous batching)
/// while fewer than this many run.
pub const BATCH_SEQUENCES: Limit = Limit::new("INFERD_MAX_BATCH_SEQUENCES", 64);
/// Generation, summarization and translation: tokens the sequences
/// decoding together may hold in their caches, each counted as prompt +
/// max_new_tokens (up to the context window; for summarization and
/// translation, source + beams x (max_new_tokens + 1)); requests join a
/// running decode while fewer are held.
pub const BATCH_TOKENS: Limit = Limit::new("INFERD_MAX_BATCH_TOKENS", 65_536);

/// The budgets in effect for one loaded model.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub inputs: Limit,
    pub candidate_labels: Limit,
    pub zero_shot_tokens: Limit,
    pub fill_mask_candidates: Limit,
    pub embedding_bytes: Limit,
    pub qa_windows: Limit,
    pub sequences: Limit,
    pub generation_tokens: Limit,
    pub batch_sequences: Limit,
    pub batch_tokens: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            inputs: INPUTS,
            candidate_labels: CANDIDATE_LABELS,
            zero_shot_tokens: ZERO_SHOT_TOKENS,
            fill_mask_candidates: FILL_MASK_CANDIDATES,
            embedding_bytes: EMBEDDING_BYTES,
            qa_windows: QA_WINDOWS,
            sequences: SEQUENCES,
            generation_tokens: GENERATION_TOKENS,
            batch_sequences: BATCH_SEQUENCES,
            batch_tokens: BATCH_TOKENS,
        }
    }
}

impl Limits {
    /// The defaults, overridden by the environment and then by the
    /// model's own settings; a bad value fails the load, naming the limit.
    pub fn for_model(ctx: &LoadContext) -> Result<Self, Error> {
        let d = Limits::default();
        Ok(Limits {
            inputs: d.inputs.for_model(ctx)?,
            candidate_labels: d.candidate_labels.for_model(ctx)?,
            zero_shot_tokens: d.zero_shot_tokens.for_model(ctx)?,
            fill_mask_candidates: d.fill_mask_candidates.for_model(ctx)?,
            embedding_bytes: d.embedding_bytes.for_model(ctx)?,
            qa_windows: d.qa_windows.for_model(ctx)?,
            sequences: d.sequences.for_model(ctx)?,
            generation_tokens: d.generation_tokens.for_model(ctx)?,
            batch_sequences: d.batch_sequences.for_model(ctx)?,
            batch_tokens: d.batch_tokens.for_model(ctx)?,
        })
    }

    /// Those of `applicable` (by variable), with the values in effect.
    pub fn applying(&self, applicable: &[Limit]) -> Vec<Limit> {
        [
            self.inputs,
            self.candidate_labels,
            self.zero_shot_tokens,
            self.fill_mask_candidates,
            self.embedding_bytes,
            self.qa_windows,
            self.sequences,
            self.generation_tokens,
            self.batch_sequences,
            self.batch_tokens,
        ]
        .into_iter()
        .filter(|l| applicable.iter().any(|a| a.var == l.var))
        .collect()
    }
}
