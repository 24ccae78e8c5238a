//! `summarization` and `translation`, as transformers' SummarizationPipeline
//! and TranslationPipeline run them: the task's prefix
//! (task_specific_params), the tokenizer (inputs longer than a model's
//! position table truncated, as with `truncation=True`; T5 inputs are not),
//! generate with the settings resolved as the pipeline resolves them, and
//! the output decoded without special tokens. Each input is generated on its
//! own, as pipeline() does with its default batch size of 1.

use inferd_models::seq2seq::{generate, resolve, EarlyStoppingValue, Seq2SeqModel, Seq2SeqSettings};
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
        Seq2SeqSettings {
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

/// The output texts of each input, best first.
fn run(
    model: &Seq2SeqModel,
    task: &str,
    inputs: &[String],
    asked: &Seq2SeqSettings,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<String>>, Error> {
    check_texts(inputs.iter().map(String::as_str), "inputs")?;
    let (task_settings, prefix) = model.task(task).map_err(Error::failed_precondition)?;
    let params = resolve(&model.settings, task_settings.as_ref(), asked).map_err(Error::invalid_argument)?;
    inputs
        .iter()
        .map(|text| {
            let ids = model.tokenizer.encode(&format!("{prefix}{text}"))?;
            generate(model.net.as_ref(), &ids, &params, keep_going)
                .iter()
                .map(|s| Ok(model.tokenizer.decode(s)?))
                .collect()
        })
        .collect()
}

pub fn summarize(
    model: &Seq2SeqModel,
    request: &SummarizeRequest,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<SummarizeResponse, Error> {
    let asked = asked_settings!(request);
    let results = run(model, "summarization", &request.inputs, &asked, keep_going)?;
    Ok(SummarizeResponse {
        results: results
            .into_iter()
            .map(|texts| Summaries {
                summaries: texts.into_iter().map(|summary_text| Summary { summary_text }).collect(),
            })
            .collect(),
    })
}

pub fn translate(
    model: &Seq2SeqModel,
    request: &TranslateRequest,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<TranslateResponse, Error> {
    let task = translation_task(model, &request.src_lang, &request.tgt_lang)?;
    let asked = asked_settings!(request);
    let results = run(model, &task, &request.inputs, &asked, keep_going)?;
    Ok(TranslateResponse {
        results: results
            .into_iter()
            .map(|texts| Translations {
                translations: texts
                    .into_iter()
                    .map(|translation_text| Translation { translation_text })
                    .collect(),
            })
            .collect(),
    })
}

/// The `task_specific_params` key of a translation: `translation_{src}_to_{tgt}`
/// when the languages are given (the model must know it), else the model's
/// first translation task in key order, as pipeline("translation") takes it,
/// or plain `translation` for models translating one direction.
fn translation_task(model: &Seq2SeqModel, src: &str, tgt: &str) -> Result<String, Error> {
    let mut known: Vec<&String> = model
        .task_settings
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
