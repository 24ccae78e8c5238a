//! `text-generation`, as pipeline("text-generation") does it: settings from
//! the request over the model's generation_config.json over the pipeline's
//! defaults, every prompt of every request of a batch decoded together
//! (inferd_models::generation::causal), `generated_text` formed like pipeline()'s
//! postprocess, and tokens streamed to clients that asked for them. A
//! request's sequences and tokens are bounded (`INFERD_MAX_SEQUENCES`,
//! `INFERD_MAX_GENERATION_TOKENS`) before anything is decoded.

use inferd_models::auto::CausalModel;
use inferd_models::generation::causal::{self, Control, FinishReason};
use inferd_models::generation::sampling::Rng;
use inferd_models::generation::{resolve_text_generation, GenerationParams, GenerationSettings};
use inferd_sdk::dispatch::Incoming;
use inferd_sdk::proto::api::{
    GenerateRequest, GenerateResponse, GenerateResult, GenerateStreamResponse, GeneratedSequence,
};
use inferd_sdk::{Emitter, Error};

use crate::limits::Limits;

/// The settings of one request, resolved.
struct Settings {
    params: GenerationParams,
    return_full_text: bool,
    stop: Vec<String>,
}

/// The request's settings over the model's files and the pipeline's
/// defaults (generation::resolve_text_generation); `prompt_len` resolves
/// `max_length` into new tokens.
fn settings(model: &CausalModel, request: &GenerateRequest, prompt_len: usize) -> Result<Settings, Error> {
    let count = |n: Option<u32>| n.map(|n| n as usize);
    let asked = GenerationSettings {
        max_length: count(request.max_length),
        max_new_tokens: count(request.max_new_tokens),
        min_new_tokens: count(request.min_new_tokens),
        do_sample: request.do_sample,
        temperature: request.temperature,
        top_k: count(request.top_k),
        top_p: request.top_p,
        repetition_penalty: request.repetition_penalty,
        no_repeat_ngram_size: count(request.no_repeat_ngram_size),
        num_return_sequences: count(request.num_return_sequences),
        ..Default::default()
    };
    let params = resolve_text_generation(
        &model.settings,
        &asked,
        prompt_len,
        model.model.max_positions(),
        model.eos_token_id,
        request.seed.unwrap_or_else(Rng::random_seed),
    )?;
    if request.stop.iter().any(String::is_empty) {
        return Err(Error::invalid_argument("`stop` sequences must not be empty"));
    }
    Ok(Settings {
        params,
        return_full_text: request.return_full_text.unwrap_or(true),
        stop: request.stop.clone(),
    })
}

/// One sequence being generated.
struct Slot {
    request: usize,
    prompt: Vec<u32>,
    generated: Vec<u32>,
    /// Characters of text already streamed.
    streamed_chars: usize,
}

/// A validated request.
struct Planned {
    settings: Settings,
    prompt: Vec<u32>,
    prompt_text: String,
    stream: bool,
}

fn plan(model: &mut CausalModel, request: &GenerateRequest, text: &str, stream: bool) -> Result<Planned, Error> {
    if text.is_empty() {
        return Err(Error::invalid_argument(
            "the prompt is empty: give some text to continue",
        ));
    }
    let prompt = model.tokenizer.encode_untruncated(text)?;
    if prompt.is_empty() {
        return Err(Error::invalid_argument("the prompt has no tokens"));
    }
    let window = model.model.max_positions();
    if prompt.len() >= window {
        return Err(Error::invalid_argument(format!(
            "the prompt is {} tokens long; the model's context window is {window} tokens including the generated ones",
            prompt.len()
        )));
    }
    let settings = settings(model, request, prompt.len())?;
    Ok(Planned {
        settings,
        prompt,
        prompt_text: text.to_string(),
        stream,
    })
}

const SEQUENCES_ASKED: &str = "the sequences asked for (prompts x num_return_sequences)";

/// Refuses a request whose sequences (prompts x num_return_sequences) or
/// tokens (each sequence's prompt and new tokens, as far as the context
/// window allows) are over the limits: the rows and KV caches decoding
/// would hold.
fn check_budget(limits: &Limits, planned: &[Planned], window: usize) -> Result<(), Error> {
    let mut sequences = 0u64;
    let mut tokens = 0u64;
    for p in planned {
        let copies = p.settings.params.num_return_sequences as u64;
        sequences += copies;
        tokens += copies * (p.prompt.len() + p.settings.params.max_new_tokens).min(window) as u64;
    }
    limits.sequences.check(sequences, SEQUENCES_ASKED)?;
    limits.generation_tokens.check(
        tokens,
        "the tokens asked for (sequences x (prompt + max_new_tokens), up to the context window)",
    )
}

/// Generates for a batch of requests, streaming the tokens of those that
/// asked for it through `emitter`.
pub fn generate(
    model: &mut CausalModel,
    limits: &Limits,
    requests: Vec<Incoming<GenerateRequest>>,
    emitter: &mut Emitter,
) -> Vec<Result<GenerateResponse, Error>> {
    // Each request may hold several prompts; each prompt is planned alone.
    let mut plans: Vec<Vec<Result<Planned, Error>>> = Vec::with_capacity(requests.len());
    let window = model.model.max_positions();
    for Incoming { request, stream } in &requests {
        if request.inputs.is_empty() {
            plans.push(vec![Err(Error::invalid_argument(
                "`inputs` is empty: send at least one prompt",
            ))]);
            continue;
        }
        // The sequences are known before the prompts are tokenized.
        let asked = request.inputs.len() as u64 * u64::from(request.num_return_sequences.unwrap_or(1));
        if let Err(e) = limits.sequences.check(asked, SEQUENCES_ASKED) {
            plans.push(vec![Err(e)]);
            continue;
        }
        let planned = request
            .inputs
            .iter()
            .map(|text| plan(model, request, text, *stream))
            .collect::<Result<Vec<Planned>, Error>>()
            .and_then(|p| check_budget(limits, &p, window).map(|()| p));
        plans.push(match planned {
            Ok(p) => p.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        });
    }
    // Flatten into sequences: request r, prompt p, copy k.
    let mut slots: Vec<Slot> = Vec::new();
    let mut owners: Vec<(usize, usize, usize)> = Vec::new();
    let mut inputs = Vec::new();
    for (r, per_prompt) in plans.iter().enumerate() {
        if per_prompt.iter().any(Result::is_err) {
            continue;
        }
        for (p, planned) in per_prompt.iter().enumerate() {
            let planned = planned.as_ref().expect("checked above");
            for k in 0..planned.settings.params.num_return_sequences {
                let mut params = planned.settings.params.clone();
                params.seed = params.seed.wrapping_add(k as u64);
                inputs.push(causal::Request {
                    prompt: planned.prompt.iter().map(|&t| t as i64).collect(),
                    params,
                });
                slots.push(Slot {
                    request: r,
                    prompt: planned.prompt.clone(),
                    generated: vec![],
                    streamed_chars: 0,
                });
                owners.push((r, p, k));
            }
        }
    }
    let pad = model.tokenizer.pad_id();
    let tokenizer = &model.tokenizer;
    let generated = causal::generate(model.model.as_ref(), inputs, pad, |i, token| {
        let slot = &mut slots[i];
        slot.generated.push(token as u32);
        let (r, p, _) = owners[i];
        let planned = plans[r][p].as_ref().expect("planned");
        // Decoding is only needed to stream text or to look for stop sequences.
        let needs_text = planned.stream || !planned.settings.stop.is_empty();
        let text = if needs_text {
            tokenizer.decode_with(&slot.generated, true, false).unwrap_or_default()
        } else {
            String::new()
        };
        let stopped = planned.settings.stop.iter().any(|s| text.contains(s.as_str()));
        let wanted = if planned.stream {
            // Hold text back while it ends in an incomplete character.
            let chars = text.chars().count();
            let delta = if text.ends_with('\u{FFFD}') || chars < slot.streamed_chars {
                String::new()
            } else {
                let d: String = text.chars().skip(slot.streamed_chars).collect();
                slot.streamed_chars = chars;
                d
            };
            emitter.send(
                slot.request,
                GenerateStreamResponse {
                    token_ids: vec![token],
                    text: delta,
                    ..Default::default()
                },
            )
        } else {
            emitter.wanted(slot.request)
        };
        if !wanted {
            Control::Stop(FinishReason::Cancelled)
        } else if stopped {
            Control::Stop(FinishReason::StopSequence)
        } else {
            Control::Continue
        }
    });
    // Assemble the answers.
    let mut results: Vec<Vec<Vec<GeneratedSequence>>> = plans
        .iter()
        .map(|per_prompt| per_prompt.iter().map(|_| vec![]).collect())
        .collect();
    for ((slot, out), &(r, p, _)) in slots.iter().zip(generated).zip(&owners) {
        let planned = plans[r][p].as_ref().expect("planned");
        let sequence = match finish_text(model, planned, &slot.prompt, &out.tokens) {
            Ok(text) => GeneratedSequence {
                generated_text: text,
                finish_reason: out.finish.as_str().into(),
                prompt_tokens: slot.prompt.len() as u32,
                generated_tokens: out.tokens.len() as u32,
                token_ids: out.tokens.clone(),
            },
            Err(e) => return requests.iter().map(|_| Err(e.clone())).collect(),
        };
        results[r][p].push(sequence);
    }
    plans
        .into_iter()
        .zip(results)
        .map(|(per_prompt, sequences)| {
            if let Some(Err(e)) = per_prompt.into_iter().find(Result::is_err) {
                return Err(e);
            }
            Ok(GenerateResponse {
                results: sequences
                    .into_iter()
                    .map(|sequences| GenerateResult { sequences })
                    .collect(),
            })
        })
        .collect()
}

/// pipeline()'s postprocess: decode prompt + continuation (special tokens
/// skipped, spaces cleaned up), drop as many characters as the decoded
/// prompt has, and put the original prompt in front when asked.
fn finish_text(model: &CausalModel, planned: &Planned, prompt: &[u32], generated: &[i64]) -> Result<String, Error> {
    let mut all: Vec<u32> = prompt.to_vec();
    all.extend(generated.iter().map(|&t| t as u32));
    let text = model.tokenizer.decode_with(&all, true, true)?;
    let prompt_chars = model.tokenizer.decode_with(prompt, true, true)?.chars().count();
    let new_text: String = text.chars().skip(prompt_chars).collect();
    Ok(if planned.settings.return_full_text {
        format!("{}{new_text}", planned.prompt_text)
    } else {
        new_text
    })
}
