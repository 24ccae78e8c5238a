//! `summarization` and `translation`, as transformers' SummarizationPipeline
//! and TranslationPipeline run them: the task's prefix
//! (task_specific_params), the tokenizer (inputs longer than a model's
//! position table truncated, as with `truncation=True`; T5 inputs are not),
//! generate with the settings resolved as the pipeline resolves them, and
//! the output decoded without special tokens. The inputs of every request in
//! a batch are decoded together (padded, as pipeline() pads with a
//! batch_size), each with its own request's settings.

use inferd_models::auto::Seq2SeqModel;
use inferd_models::generation::seq2seq::{generate, Source};
use inferd_models::generation::{resolve_text2text, EarlyStoppingValue, GenerationParams, GenerationSettings};
use inferd_sdk::proto::api::{
    Summaries, SummarizeRequest, SummarizeResponse, Summary, TranslateRequest, TranslateResponse, Translation,
    Translations,
};
use inferd_sdk::Error;

use crate::common::check_texts;

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
struct Planned {
    params: GenerationParams,
    inputs: Vec<Vec<i64>>,
}

/// Checks a request's inputs and settings and tokenizes its inputs with
/// the task's prefix.
fn plan(model: &Seq2SeqModel, task: &str, inputs: &[String], asked: &GenerationSettings) -> Result<Planned, Error> {
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
            let ids = model.tokenizer.encode(&format!("{prefix}{text}"))?;
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
    Ok(Planned { params, inputs })
}

/// Generates for the inputs of every planned request together; per
/// request, the output texts of each input, best first. `keep_going(r)`
/// asks whether request `r` is still wanted.
fn generate_planned(
    model: &Seq2SeqModel,
    plans: &[Result<Planned, Error>],
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<Vec<Vec<String>>, Error>> {
    let mut sources = Vec::new();
    let mut owners = Vec::new();
    for (r, plan) in plans.iter().enumerate() {
        let Ok(plan) = plan else { continue };
        for input_ids in &plan.inputs {
            sources.push(Source::tokens(input_ids, &plan.params));
            owners.push(r);
        }
    }
    let mut generated = generate(model.net.as_ref(), &sources, &mut |i| keep_going(owners[i])).into_iter();
    plans
        .iter()
        .map(|plan| {
            let plan = plan.as_ref().map_err(Clone::clone)?;
            // Take every input's sequences, even after a decoding
            // failure, so that the next request gets its own.
            let texts: Vec<Result<Vec<String>, Error>> = plan
                .inputs
                .iter()
                .map(|_| {
                    let sequences = generated.next().expect("sequences for every input");
                    sequences.iter().map(|s| Ok(model.tokenizer.decode(s)?)).collect()
                })
                .collect();
            texts.into_iter().collect()
        })
        .collect()
}

/// Summarizes every request of a batch, their inputs decoded together.
pub fn summarize(
    model: &Seq2SeqModel,
    requests: &[SummarizeRequest],
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<SummarizeResponse, Error>> {
    let plans: Vec<_> = requests
        .iter()
        .map(|request| plan(model, "summarization", &request.inputs, &asked_settings!(request)))
        .collect();
    generate_planned(model, &plans, keep_going)
        .into_iter()
        .map(|texts| {
            Ok(SummarizeResponse {
                results: texts?
                    .into_iter()
                    .map(|texts| Summaries {
                        summaries: texts.into_iter().map(|summary_text| Summary { summary_text }).collect(),
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Translates every request of a batch, their inputs decoded together.
pub fn translate(
    model: &Seq2SeqModel,
    requests: &[TranslateRequest],
    keep_going: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<TranslateResponse, Error>> {
    let plans: Vec<_> = requests
        .iter()
        .map(|request| {
            let task = translation_task(model, &request.src_lang, &request.tgt_lang)?;
            plan(model, &task, &request.inputs, &asked_settings!(request))
        })
        .collect();
    generate_planned(model, &plans, keep_going)
        .into_iter()
        .map(|texts| {
            Ok(TranslateResponse {
                results: texts?
                    .into_iter()
                    .map(|texts| Translations {
                        translations: texts
                            .into_iter()
                            .map(|translation_text| Translation { translation_text })
                            .collect(),
                    })
                    .collect(),
            })
        })
        .collect()
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
