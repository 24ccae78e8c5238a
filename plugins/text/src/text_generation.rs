//! `text-generation`, as pipeline("text-generation") does it: settings from
//! the request over the model's generation_config.json over the pipeline's
//! defaults, every prompt of every request of a batch decoded together
//! (inferd_models::generation::causal), `generated_text` formed like pipeline()'s
//! postprocess, and tokens streamed to clients that asked for them. A
//! request's sequences and tokens are bounded (`INFERD_MAX_SEQUENCES`,
//! `INFERD_MAX_GENERATION_TOKENS`) before anything is decoded.
//!
//! Continuous batching: requests that arrive while a decode runs join it
//! at the next step, while the running sequences and their tokens stay
//! under the model's `max_batch_sequences` and `max_batch_tokens`, and each
//! request is answered as soon as its last sequence ends.

use std::cell::RefCell;

use inferd_models::auto::CausalModel;
use inferd_models::generation::causal::{self, Control, FinishReason, Generated};
use inferd_models::generation::sampling::Rng;
use inferd_models::generation::{resolve_text_generation, GenerationParams, GenerationSettings, ModelSettings};
use inferd_models::text::tokenizer::TextTokenizer;
use inferd_sdk::dispatch::{Incoming, Joiner};
use inferd_sdk::proto::api::{
    GenerateRequest, GenerateResponse, GenerateResult, GenerateStreamResponse, GeneratedSequence,
};
use inferd_sdk::Error;

use crate::limits::Limits;

/// The settings of one request, resolved.
struct Settings {
    params: GenerationParams,
    return_full_text: bool,
    stop: Vec<String>,
}

/// What planning a prompt reads of the model.
struct Planner<'m> {
    tokenizer: &'m mut TextTokenizer,
    settings: &'m ModelSettings,
    eos_token_id: i64,
    /// The context window.
    window: usize,
}

/// The request's settings over the model's files and the pipeline's
/// defaults (generation::resolve_text_generation); `prompt_len` resolves
/// `max_length` into new tokens.
fn settings(planner: &Planner, request: &GenerateRequest, prompt_len: usize) -> Result<Settings, Error> {
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
        planner.settings,
        &asked,
        prompt_len,
        planner.window,
        planner.eos_token_id,
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
    /// Its prompt (of the request's) and copy.
    prompt_index: usize,
    copy: usize,
    prompt: Vec<u32>,
    generated: Vec<u32>,
    /// Characters of text already streamed.
    streamed_chars: usize,
    /// Prompt + max_new_tokens, up to the window: what it holds in the cache.
    tokens: u64,
}

/// A validated request.
struct Planned {
    settings: Settings,
    prompt: Vec<u32>,
    prompt_text: String,
    stream: bool,
}

fn plan(planner: &mut Planner, request: &GenerateRequest, text: &str, stream: bool) -> Result<Planned, Error> {
    if text.is_empty() {
        return Err(Error::invalid_argument(
            "the prompt is empty: give some text to continue",
        ));
    }
    let prompt = planner.tokenizer.encode_untruncated(text)?;
    if prompt.is_empty() {
        return Err(Error::invalid_argument("the prompt has no tokens"));
    }
    let window = planner.window;
    if prompt.len() >= window {
        return Err(Error::invalid_argument(format!(
            "the prompt is {} tokens long; the model's context window is {window} tokens including the generated ones",
            prompt.len()
        )));
    }
    let settings = settings(planner, request, prompt.len())?;
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

/// One request: its prompts, planned, and the sequences each has finished
/// (None: still going).
struct Generation {
    plans: Vec<Planned>,
    done: Vec<Vec<Option<GeneratedSequence>>>,
    remaining: usize,
}

/// The requests of a running decode and their sequences, as the decode
/// loop's callbacks see them.
struct Decode<'m, 'j, 'h, 'a> {
    planner: Planner<'m>,
    joiner: &'j mut Joiner<'h, 'a, GenerateRequest, GenerateResponse>,
    limits: Limits,
    generations: Vec<Generation>,
    slots: Vec<Slot>,
    /// Tokens the running sequences hold (see `Slot::tokens`).
    running_tokens: u64,
}

impl Decode<'_, '_, '_, '_> {
    /// The sequences of requests that arrived meanwhile, taken one request
    /// at a time while the running sequences and their tokens are under the
    /// budgets `max_batch_sequences` and `max_batch_tokens`.
    fn arrivals(&mut self, running: usize) -> Vec<causal::Request> {
        let mut sequences = Vec::new();
        loop {
            let limits = &self.limits;
            let Some(incoming) = self.joiner.take_within(
                running + sequences.len(),
                self.running_tokens,
                &limits.batch_sequences,
                &limits.batch_tokens,
            ) else {
                return sequences;
            };
            sequences.extend(self.admit(vec![incoming]));
        }
    }

    /// Plans `incoming` (the next requests in order) and returns their
    /// sequences for the decode; refused requests are answered at once.
    fn admit(&mut self, incoming: Vec<Incoming<GenerateRequest>>) -> Vec<causal::Request> {
        let mut sequences = Vec::new();
        for Incoming { request, stream } in incoming {
            let r = self.generations.len();
            match self.plan_request(&request, stream) {
                Ok(plans) => {
                    let window = self.planner.window;
                    // Its prompts are padded to the longest of them, as
                    // transformers pads a batch of them.
                    let width = plans.iter().map(|p| p.prompt.len()).max().unwrap_or(0);
                    let mut count = 0;
                    for (p, planned) in plans.iter().enumerate() {
                        for copy in 0..planned.settings.params.num_return_sequences {
                            let mut params = planned.settings.params.clone();
                            params.seed = params.seed.wrapping_add(copy as u64);
                            let tokens = (planned.prompt.len() + params.max_new_tokens).min(window) as u64;
                            sequences.push(causal::Request {
                                prompt: planned.prompt.iter().map(|&t| t as i64).collect(),
                                params,
                                width,
                            });
                            self.slots.push(Slot {
                                request: r,
                                prompt_index: p,
                                copy,
                                prompt: planned.prompt.clone(),
                                generated: vec![],
                                streamed_chars: 0,
                                tokens,
                            });
                            self.running_tokens += tokens;
                            count += 1;
                        }
                    }
                    let done = plans
                        .iter()
                        .map(|p| vec![None; p.settings.params.num_return_sequences])
                        .collect();
                    self.generations.push(Generation {
                        plans,
                        done,
                        remaining: count,
                    });
                }
                Err(e) => {
                    self.generations.push(Generation {
                        plans: vec![],
                        done: vec![],
                        remaining: 0,
                    });
                    self.joiner.finish(r, Err(e));
                }
            }
        }
        sequences
    }

    /// A request's prompts, each planned alone, within its budgets.
    fn plan_request(&mut self, request: &GenerateRequest, stream: bool) -> Result<Vec<Planned>, Error> {
        if request.inputs.is_empty() {
            return Err(Error::invalid_argument("`inputs` is empty: send at least one prompt"));
        }
        // The sequences are known before the prompts are tokenized.
        let asked = request.inputs.len() as u64 * u64::from(request.num_return_sequences.unwrap_or(1));
        self.limits.sequences.check(asked, SEQUENCES_ASKED)?;
        let planned = request
            .inputs
            .iter()
            .map(|text| plan(&mut self.planner, request, text, stream))
            .collect::<Result<Vec<Planned>, Error>>()?;
        check_budget(&self.limits, &planned, self.planner.window)?;
        Ok(planned)
    }

    /// Streams or checks sequence `i`'s new token; whether it goes on.
    fn on_token(&mut self, i: usize, token: i64) -> Control {
        let slot = &mut self.slots[i];
        slot.generated.push(token as u32);
        let planned = &self.generations[slot.request].plans[slot.prompt_index];
        // Decoding is only needed to stream text or to look for stop sequences.
        let needs_text = planned.stream || !planned.settings.stop.is_empty();
        let text = if needs_text {
            self.planner
                .tokenizer
                .decode_with(&slot.generated, true, false)
                .unwrap_or_default()
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
            self.joiner.send(
                slot.request,
                GenerateStreamResponse {
                    token_ids: vec![token],
                    text: delta,
                    ..Default::default()
                },
            )
        } else {
            self.joiner.wanted(slot.request)
        };
        if !wanted {
            Control::Stop(FinishReason::Cancelled)
        } else if stopped {
            Control::Stop(FinishReason::StopSequence)
        } else {
            Control::Continue
        }
    }

    /// Sequence `i` has ended: its request is answered once all of its
    /// sequences have.
    fn on_finish(&mut self, i: usize, out: Generated) {
        let slot = &self.slots[i];
        self.running_tokens -= slot.tokens;
        let (r, p, k) = (slot.request, slot.prompt_index, slot.copy);
        let generation = &mut self.generations[r];
        let planned = &generation.plans[p];
        match finish_text(self.planner.tokenizer, planned, &slot.prompt, &out.tokens) {
            Ok(text) => {
                generation.done[p][k] = Some(GeneratedSequence {
                    generated_text: text,
                    finish_reason: out.finish.as_str().into(),
                    prompt_tokens: slot.prompt.len() as u32,
                    generated_tokens: out.tokens.len() as u32,
                    token_ids: out.tokens.clone(),
                });
                generation.remaining -= 1;
                if generation.remaining == 0 {
                    let results = std::mem::take(&mut generation.done)
                        .into_iter()
                        .map(|sequences| GenerateResult {
                            sequences: sequences.into_iter().flatten().collect(),
                        })
                        .collect();
                    self.joiner.finish(r, Ok(GenerateResponse { results }));
                }
            }
            // The host answers a request once: its other sequences' ends
            // are dropped.
            Err(e) => self.joiner.finish(r, Err(e)),
        }
    }
}

/// Generates for a batch of requests and those that join it while it
/// runs, streaming the tokens of those that asked for it; each request is
/// answered as soon as its sequences have ended.
pub fn generate(
    model: &mut CausalModel,
    limits: &Limits,
    requests: Vec<Incoming<GenerateRequest>>,
    joiner: &mut Joiner<GenerateRequest, GenerateResponse>,
) {
    let CausalModel {
        model: net,
        tokenizer,
        settings,
        eos_token_id,
        ..
    } = model;
    let net = net.as_ref();
    let pad = tokenizer.pad_id();
    // The batch starts within the budgets; the rest of it joins as room
    // frees, before later arrivals.
    joiner.hold(requests);
    let decode = RefCell::new(Decode {
        planner: Planner {
            tokenizer,
            settings,
            eos_token_id: *eos_token_id,
            window: net.max_positions(),
        },
        joiner,
        limits: *limits,
        generations: vec![],
        slots: vec![],
        running_tokens: 0,
    });
    causal::generate_joined(
        net,
        pad,
        &mut |running| decode.borrow_mut().arrivals(running),
        &mut |i, token| decode.borrow_mut().on_token(i, token),
        &mut |i, out| decode.borrow_mut().on_finish(i, out),
    );
}

/// pipeline()'s postprocess: decode prompt + continuation (special tokens
/// skipped, spaces cleaned up), drop as many characters as the decoded
/// prompt has, and put the original prompt in front when asked.
fn finish_text(
    tokenizer: &TextTokenizer,
    planned: &Planned,
    prompt: &[u32],
    generated: &[i64],
) -> Result<String, Error> {
    let mut all: Vec<u32> = prompt.to_vec();
    all.extend(generated.iter().map(|&t| t as u32));
    let text = tokenizer.decode_with(&all, true, true)?;
    let prompt_chars = tokenizer.decode_with(prompt, true, true)?.chars().count();
    let new_text: String = text.chars().skip(prompt_chars).collect();
    Ok(if planned.settings.return_full_text {
        format!("{}{new_text}", planned.prompt_text)
    } else {
        new_text
    })
}
