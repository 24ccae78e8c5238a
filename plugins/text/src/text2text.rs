//! `summarization` and `translation`, as transformers' SummarizationPipeline
//! and TranslationPipeline run them: the task's prefix
//! (task_specific_params), the tokenizer (inputs longer than a model's
//! position table truncated, as with `truncation=True`; T5 inputs are not),
//! generate with the settings resolved as the pipeline resolves them, and
//! the output decoded without special tokens. The inputs of every request in
//! a batch are decoded together (padded, as pipeline() pads with a
//! batch_size), each with its own request's settings.
//!
//! Continuous batching: requests that arrive while a decode runs join it
//! at the next step (their inputs encoded on arrival), while the running
//! hypotheses and their tokens stay under the model's `max_batch_sequences`
//! and `max_batch_tokens`, and each request is answered as soon as its
//! last input is done.

use std::cell::RefCell;
use std::sync::Arc;

use inferd_models::auto::Seq2SeqModel;
use inferd_models::generation::search::Found;
use inferd_models::generation::seq2seq::{generate_joined, Arrival};
use inferd_models::generation::{resolve_text2text, EarlyStoppingValue, GenerationParams, GenerationSettings};
use inferd_sdk::dispatch::{ApiRequest, ApiResponse, Incoming, Joiner};
use inferd_sdk::proto::api::{
    Summaries, SummarizeRequest, SummarizeResponse, Summary, TranslateRequest, TranslateResponse, Translation,
    Translations,
};
use inferd_sdk::Error;

use crate::common::{check_texts, input_error};
use crate::limits::Limits;

/// The generation settings a request asks for; SummarizeRequest and
/// TranslateRequest name these fields alike.
macro_rules! asked_settings {
    ($request:expr) => {{
        let r = $request;
        let size = |n: Option<u32>| n.map(|n| n as usize);
        GenerationSettings {
            max_length: size(r.max_length),
            max_new_tokens: size(r.max_new_tokens),
            min_length: size(r.min_length),
            num_beams: size(r.num_beams),
            num_return_sequences: size(r.num_return_sequences),
            length_penalty: r.length_penalty.map(f64::from),
            early_stopping: (!r.early_stopping.is_empty()).then(|| EarlyStoppingValue::Text(r.early_stopping.clone())),
            no_repeat_ngram_size: size(r.no_repeat_ngram_size),
            ..Default::default()
        }
    }};
}

/// A request ready to generate: its settings and each input's token ids.
pub struct Planned {
    params: Arc<GenerationParams>,
    inputs: Vec<Vec<i64>>,
}

/// Checks a request's inputs and settings and tokenizes its inputs with
/// the task's prefix, cut as its `truncation` asks.
fn plan(
    model: &Seq2SeqModel,
    task: &str,
    inputs: &[String],
    asked: &GenerationSettings,
    truncation: Option<bool>,
) -> Result<Planned, Error> {
    check_texts(inputs.iter().map(String::as_str), "")?;
    let (task_settings, prefix) = model.task(task)?;
    // The decoder cannot go past its positions: a request asking for more
    // is refused, whether or not its length takes effect (a max_length
    // gives way to the pipeline's max_new_tokens, as in transformers, for a
    // model without a max_length of its own, such as most translation
    // models); the model's own settings are cut short instead (where
    // pipeline() would fail once a generation got that long).
    let limit = model.max_output_length;
    if let Some(max_length) = asked.max_length.filter(|&n| n > limit) {
        return Err(Error::invalid_argument(format!(
            "max_length {max_length} is over this model's limit of {limit} (its decoder positions, counting the \
             start token)"
        )));
    }
    if let Some(max_new_tokens) = asked.max_new_tokens.filter(|&n| n >= limit) {
        return Err(Error::invalid_argument(format!(
            "max_new_tokens {max_new_tokens} is over this model's limit of {} new tokens (its decoder positions, \
             less the start token)",
            limit - 1
        )));
    }
    let mut params = resolve_text2text(&model.settings.file, task_settings.as_ref(), asked)?;
    if params.max_new_tokens + 1 > limit {
        params.max_new_tokens = limit - 1;
        params.min_length = params.min_length.min(limit);
    }
    let inputs = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let ids = model
                .tokenizer
                .encode(&format!("{prefix}{text}"), truncation)
                .map_err(|e| input_error(i, e))?;
            if ids.is_empty() {
                return Err(Error::invalid_argument(format!("inputs[{i}] has no tokens")));
            }
            if ids.len() > model.max_input_tokens {
                return Err(Error::invalid_argument(format!(
                    "inputs[{i}] is {} tokens long; this model takes at most {} (INFERD_MAX_INPUT_TOKENS): \
                     split the text",
                    ids.len(),
                    model.max_input_tokens
                )));
            }
            Ok(ids)
        })
        .collect::<Result<_, Error>>()?;
    Ok(Planned {
        params: Arc::new(params),
        inputs,
    })
}

/// How one of the two tasks reads its requests and forms its answers.
pub struct Text2Text<R, O> {
    /// The request's inputs and settings, checked and tokenized.
    pub plan: fn(&Seq2SeqModel, &R) -> Result<Planned, Error>,
    /// The response: each input's texts, best first.
    pub answer: fn(Vec<Vec<String>>) -> O,
}

pub const SUMMARIZATION: Text2Text<SummarizeRequest, SummarizeResponse> = Text2Text {
    plan: |model, request| {
        plan(
            model,
            "summarization",
            &request.inputs,
            &asked_settings!(request),
            request.truncation,
        )
    },
    answer: |texts| SummarizeResponse {
        results: texts
            .into_iter()
            .map(|texts| Summaries {
                summaries: texts.into_iter().map(|summary_text| Summary { summary_text }).collect(),
            })
            .collect(),
    },
};

pub const TRANSLATION: Text2Text<TranslateRequest, TranslateResponse> = Text2Text {
    plan: |model, request| {
        let task = translation_task(model, &request.src_lang, &request.tgt_lang)?;
        plan(
            model,
            &task,
            &request.inputs,
            &asked_settings!(request),
            request.truncation,
        )
    },
    answer: |texts| TranslateResponse {
        results: texts
            .into_iter()
            .map(|texts| Translations {
                translations: texts
                    .into_iter()
                    .map(|translation_text| Translation { translation_text })
                    .collect(),
            })
            .collect(),
    },
};

/// A request being answered: each input's texts once it is decoded.
struct Answering {
    texts: Vec<Option<Vec<String>>>,
    remaining: usize,
}

/// One input decoding: its request, its place there, and the tokens it
/// holds (source + beams x (max_new_tokens + 1)).
struct Owner {
    request: usize,
    input: usize,
    tokens: u64,
}

/// The requests of a running decode, as the decode loop's callbacks see them.
struct Decode<'m, 'j, 'h, 'a, R, O> {
    model: &'m Seq2SeqModel,
    task: &'m Text2Text<R, O>,
    limits: Limits,
    joiner: &'j mut Joiner<'h, 'a, R, O>,
    requests: Vec<Answering>,
    /// By arrival number.
    owners: Vec<Owner>,
    running_tokens: u64,
}

impl<R: ApiRequest, O: ApiResponse> Decode<'_, '_, '_, '_, R, O> {
    /// The inputs of requests that arrived meanwhile, taken one request at
    /// a time while the hypotheses decoding or waiting (`rows`) and their
    /// tokens are under `max_batch_sequences` and `max_batch_tokens`.
    fn arrivals(&mut self, rows: usize) -> Vec<Arrival> {
        let mut arrivals: Vec<Arrival> = Vec::new();
        loop {
            let added: usize = arrivals.iter().map(|a| a.params.num_beams.max(1)).sum();
            let limits = &self.limits;
            let Some(incoming) = self.joiner.take_within(
                rows + added,
                self.running_tokens,
                &limits.batch_sequences,
                &limits.batch_tokens,
            ) else {
                return arrivals;
            };
            arrivals.extend(self.admit(vec![incoming]));
        }
    }

    /// Plans `incoming` (the next requests in order) and returns their
    /// inputs for the decode; refused requests are answered at once.
    fn admit(&mut self, incoming: Vec<Incoming<R>>) -> Vec<Arrival> {
        let mut arrivals = Vec::new();
        for Incoming { request, .. } in incoming {
            let r = self.requests.len();
            let planned = self
                .limits
                .inputs
                .check(request.inputs() as u64, "inputs")
                .and_then(|()| (self.task.plan)(self.model, &request));
            let count = planned.as_ref().map_or(0, |p| p.inputs.len());
            self.requests.push(Answering {
                texts: vec![None; count],
                remaining: count,
            });
            match planned {
                Ok(planned) if count == 0 => {
                    let _ = planned;
                    self.joiner.finish(r, Ok((self.task.answer)(vec![])));
                }
                Ok(planned) => {
                    let beams = planned.params.num_beams.max(1);
                    for (input, input_ids) in planned.inputs.into_iter().enumerate() {
                        let tokens = (input_ids.len() + beams * (planned.params.max_new_tokens + 1)) as u64;
                        self.running_tokens += tokens;
                        self.owners.push(Owner {
                            request: r,
                            input,
                            tokens,
                        });
                        arrivals.push(Arrival::tokens(input_ids, Arc::clone(&planned.params)));
                    }
                }
                Err(e) => self.joiner.finish(r, Err(e)),
            }
        }
        arrivals
    }

    /// Whether input `i`'s client still waits.
    fn wanted(&mut self, i: usize) -> bool {
        let r = self.owners[i].request;
        self.joiner.wanted(r)
    }

    /// Input `i` is decoded: its request is answered once all its inputs are.
    fn on_finish(&mut self, i: usize, found: Vec<Found>) {
        let Owner { request, input, tokens } = self.owners[i];
        self.running_tokens -= tokens;
        let texts: Result<Vec<String>, Error> = found
            .iter()
            .map(|(sequence, _)| Ok(self.model.tokenizer.decode(sequence)?))
            .collect();
        match texts {
            Ok(texts) => {
                let answering = &mut self.requests[request];
                answering.texts[input] = Some(texts);
                answering.remaining -= 1;
                if answering.remaining == 0 {
                    let texts = std::mem::take(&mut answering.texts).into_iter().flatten().collect();
                    self.joiner.finish(request, Ok((self.task.answer)(texts)));
                }
            }
            // The host answers a request once: its other inputs' ends are
            // dropped.
            Err(e) => self.joiner.finish(request, Err(e)),
        }
    }
}

/// Summarizes or translates a batch of requests and those that join it
/// while it runs: their inputs decoded together (continuous batching), each
/// request answered as soon as its inputs are done.
pub fn generate<R: ApiRequest, O: ApiResponse>(
    model: &Seq2SeqModel,
    limits: &Limits,
    task: &Text2Text<R, O>,
    requests: Vec<Incoming<R>>,
    joiner: &mut Joiner<R, O>,
) {
    // The batch starts within the budgets; the rest of it joins as room
    // frees, before later arrivals.
    joiner.hold(requests);
    let decode = RefCell::new(Decode {
        model,
        task,
        limits: *limits,
        joiner,
        requests: vec![],
        owners: vec![],
        running_tokens: 0,
    });
    generate_joined(
        model.net.as_ref(),
        limits.batch_sequences.max as usize,
        None,
        &mut |rows| decode.borrow_mut().arrivals(rows),
        &mut |i| decode.borrow_mut().wanted(i),
        &mut |i, found| decode.borrow_mut().on_finish(i, found),
    );
}

/// The `task_specific_params` key of a translation: `translation_{src}_to_{tgt}`
/// when the languages are given (the model must know it), else the model's
/// first translation task in key order, as pipeline("translation") takes it,
/// or plain `translation` for models translating one direction.
fn translation_task(model: &Seq2SeqModel, src: &str, tgt: &str) -> Result<String, Error> {
    let mut known: Vec<&String> = model
        .settings
        .task_specific
        .keys()
        .filter(|k| k.starts_with("translation_"))
        .collect();
    known.sort();
    let directions = || {
        known
            .iter()
            .map(|k| k.trim_start_matches("translation_").replace("_to_", "→"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (src.trim(), tgt.trim()) {
        ("", "") => Ok(known
            .first()
            .map_or_else(|| "translation".to_string(), |k| k.to_string())),
        ("", _) | (_, "") => Err(Error::invalid_argument(
            "give both src_lang and tgt_lang (e.g. \"en\" and \"fr\"), or neither",
        )),
        (src, tgt) => {
            let key = format!("translation_{src}_to_{tgt}");
            if known.iter().any(|k| **k == key) {
                Ok(key)
            } else if known.is_empty() {
                match &model.direction {
                    Some((from, to)) if from == src && to == tgt => Ok("translation".to_string()),
                    Some((from, to)) => Err(Error::invalid_argument(format!(
                        "this model translates {from}→{to} only, not {src}→{tgt}"
                    ))),
                    None => Err(Error::invalid_argument(format!(
                        "this model translates in one direction, which it does not name; leave src_lang and \
                         tgt_lang empty (asked {src}→{tgt})"
                    ))),
                }
            } else {
                Err(Error::invalid_argument(format!(
                    "this model cannot translate {src}→{tgt}; it translates {}",
                    directions()
                )))
            }
        }
    }
}
