//! `text-generation`, as pipeline("text-generation") does it: settings from
//! the request over the model's generation_config.json over the pipeline's
//! defaults, every prompt of every request of a batch decoded together
//! (inferd_models::generation), `generated_text` formed like pipeline()'s
//! postprocess, and tokens streamed to clients that asked for them.

use inferd_models::auto::CausalModel;
use inferd_models::generation::{self, Control, FinishReason, GenerationConfigFile, GenerationParams};
use inferd_sdk::proto::api::{
    GenerateRequest, GenerateResponse, GenerateResult, GenerateStreamResponse, GeneratedSequence,
};
use inferd_sdk::proto::task_response::Body;
use inferd_sdk::Error;

/// pipeline("text-generation")'s own defaults (its `_default_generation_config`).
const PIPELINE_MAX_NEW_TOKENS: usize = 256;
const PIPELINE_TEMPERATURE: f32 = 0.7;
/// GenerationConfig's defaults.
const DEFAULT_TOP_K: usize = 50;
const DEFAULT_MAX_LENGTH: usize = 20;

/// The settings of one request, resolved.
struct Settings {
    params: GenerationParams,
    num_return_sequences: usize,
    return_full_text: bool,
    stop: Vec<String>,
}

/// Request over model files over pipeline defaults; `prompt_len` resolves
/// `max_length` into new tokens.
fn settings(model: &CausalModel, request: &GenerateRequest, prompt_len: usize) -> Result<Settings, Error> {
    let file = |get: fn(&GenerationConfigFile) -> Option<f32>| from_files(model, get);
    let count = |asked: Option<u32>, get: fn(&GenerationConfigFile) -> Option<usize>| {
        asked.map(|n| n as usize).or_else(|| from_files(model, get))
    };
    let do_sample = request
        .do_sample
        .or_else(|| from_files(model, |c| c.do_sample))
        .unwrap_or(true);
    let temperature = request
        .temperature
        .or_else(|| file(|c| c.temperature))
        .unwrap_or(PIPELINE_TEMPERATURE);
    let top_p = request.top_p.or_else(|| file(|c| c.top_p)).unwrap_or(1.0);
    let repetition_penalty = request
        .repetition_penalty
        .or_else(|| file(|c| c.repetition_penalty))
        .unwrap_or(1.0);
    let top_k = count(request.top_k, |c| c.top_k).unwrap_or(DEFAULT_TOP_K);
    let no_repeat_ngram_size = count(request.no_repeat_ngram_size, |c| c.no_repeat_ngram_size).unwrap_or(0);
    let min_new_tokens = count(request.min_new_tokens, |c| c.min_new_tokens).unwrap_or(0);
    // The pipeline's 256 new tokens, unless the model sets max_new_tokens,
    // or sets a max_length other than the global default of 20.
    let file_max_new = count(None, |c| c.max_new_tokens);
    let file_max_length = count(None, |c| c.max_length).filter(|&m| m != DEFAULT_MAX_LENGTH);
    let max_new_tokens = match (
        request.max_new_tokens,
        request.max_length,
        file_max_new,
        file_max_length,
    ) {
        (Some(n), _, _, _) => n as usize,
        (None, Some(total), _, _) => (total as usize).saturating_sub(prompt_len),
        (None, None, Some(n), _) => n,
        (None, None, None, Some(total)) => total.saturating_sub(prompt_len),
        (None, None, None, None) => PIPELINE_MAX_NEW_TOKENS,
    };
    let eos_token_ids = from_files(model, |c| c.eos_token_id.as_ref().map(|e| e.to_vec()))
        .unwrap_or_else(|| vec![model.model.config.eos_token_id]);
    let num_return_sequences = request.num_return_sequences.unwrap_or(1) as usize;

    // A request may not ask for more than the context window; defaults are
    // cut short by the window instead (finish reason "length").
    let cap = model.model.config.n_positions as usize;
    if let Some(asked) = request
        .max_new_tokens
        .map(|n| n as usize)
        .or(request.max_length.map(|n| n as usize))
    {
        if asked == 0 {
            return Err(Error::invalid_argument("max_new_tokens must be at least 1"));
        }
        if asked > cap {
            return Err(Error::invalid_argument(format!(
                "max_new_tokens {asked} is over the cap of {cap} (the model's context window)"
            )));
        }
    }
    let max_new_tokens = max_new_tokens.max(1);
    if do_sample && temperature <= 0.0 {
        return Err(Error::invalid_argument(
            "temperature must be > 0 when sampling (use do_sample=false for greedy)",
        ));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Error::invalid_argument(format!("top_p must be in (0, 1], got {top_p}")));
    }
    if repetition_penalty <= 0.0 {
        return Err(Error::invalid_argument("repetition_penalty must be > 0"));
    }
    if num_return_sequences == 0 {
        return Err(Error::invalid_argument("num_return_sequences must be at least 1"));
    }
    if num_return_sequences > 1 && !do_sample {
        return Err(Error::invalid_argument(
            "greedy decoding gives one sequence per prompt: set do_sample=true for num_return_sequences > 1",
        ));
    }
    if request.stop.iter().any(String::is_empty) {
        return Err(Error::invalid_argument("`stop` sequences must not be empty"));
    }
    Ok(Settings {
        params: GenerationParams {
            max_new_tokens,
            min_new_tokens,
            do_sample,
            temperature: if do_sample { temperature } else { 1.0 },
            top_k: if do_sample { top_k } else { 0 },
            top_p: if do_sample { top_p } else { 1.0 },
            repetition_penalty,
            no_repeat_ngram_size,
            eos_token_ids,
            seed: request.seed.unwrap_or_else(random_seed),
        },
        num_return_sequences,
        return_full_text: request.return_full_text.unwrap_or(true),
        stop: request.stop.clone(),
    })
}

/// A value the model's files set: task_specific_params over generation_config.json.
fn from_files<T>(model: &CausalModel, get: impl Fn(&GenerationConfigFile) -> Option<T>) -> Option<T> {
    get(&model.task_params).or_else(|| get(&model.generation))
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
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
    let window = model.model.config.n_positions as usize;
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

/// Generates for a batch of requests; `emit(i, chunk)` streams request `i`.
pub fn generate(
    model: &mut CausalModel,
    requests: Vec<(GenerateRequest, bool)>,
    emit: &mut dyn FnMut(usize, Option<Body>) -> bool,
) -> Vec<Result<GenerateResponse, Error>> {
    // Each request may hold several prompts; each prompt is planned alone.
    let mut plans: Vec<Vec<Result<Planned, Error>>> = Vec::with_capacity(requests.len());
    for (request, stream) in &requests {
        if request.inputs.is_empty() {
            plans.push(vec![Err(Error::invalid_argument(
                "`inputs` is empty: send at least one prompt",
            ))]);
            continue;
        }
        let per_prompt = request
            .inputs
            .iter()
            .map(|text| plan(model, request, text, *stream))
            .collect();
        plans.push(per_prompt);
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
            for k in 0..planned.settings.num_return_sequences {
                let mut params = planned.settings.params.clone();
                params.seed = params.seed.wrapping_add(k as u64);
                inputs.push(generation::Request {
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
    let generated = generation::generate(&model.model, inputs, pad, |i, token| {
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
            emit(
                slot.request,
                Some(Body::GenerateChunk(GenerateStreamResponse {
                    token_ids: vec![token],
                    text: delta,
                    ..Default::default()
                })),
            )
        } else {
            emit(slot.request, None)
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
