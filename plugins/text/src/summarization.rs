//! `summarization`, as transformers' SummarizationPipeline runs it: the
//! task's prefix (task_specific_params), the tokenizer (inputs longer than
//! the model's maximum truncated, as with `truncation=True`), generate with
//! the settings resolved as the pipeline resolves them, and the output
//! decoded without special tokens. Each input is generated on its own, as
//! pipeline() does with its default batch size of 1.

use inferd_models::seq2seq::{generate, resolve, EarlyStoppingValue, Seq2SeqModel, Seq2SeqSettings};
use inferd_sdk::proto::api::{Summaries, SummarizeRequest, SummarizeResponse, Summary};
use inferd_sdk::Error;

use crate::common::check_texts;

pub fn summarize(
    model: &Seq2SeqModel,
    request: &SummarizeRequest,
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<SummarizeResponse, Error> {
    check_texts(request.inputs.iter().map(String::as_str), "inputs")?;
    let (task, prefix) = model.task("summarization").map_err(Error::failed_precondition)?;
    let asked = Seq2SeqSettings {
        max_length: request.max_length.map(|n| n as usize),
        max_new_tokens: request.max_new_tokens.map(|n| n as usize),
        min_length: request.min_length.map(|n| n as usize),
        num_beams: request.num_beams.map(|n| n as usize),
        num_return_sequences: request.num_return_sequences.map(|n| n as usize),
        length_penalty: request.length_penalty.map(f64::from),
        early_stopping: (!request.early_stopping.is_empty())
            .then(|| EarlyStoppingValue::Text(request.early_stopping.clone())),
        no_repeat_ngram_size: request.no_repeat_ngram_size.map(|n| n as usize),
        ..Default::default()
    };
    let params = resolve(&model.settings, task.as_ref(), &asked).map_err(Error::invalid_argument)?;
    let mut results = Vec::with_capacity(request.inputs.len());
    for text in &request.inputs {
        let encoding = model.tokenizer.encode(&format!("{prefix}{text}"), None)?;
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| id as i64).collect();
        let sequences = generate(model.net.as_ref(), &ids, &params, keep_going);
        let summaries = sequences
            .iter()
            .map(|s| {
                let ids: Vec<u32> = s.iter().map(|&id| id as u32).collect();
                Ok(Summary {
                    summary_text: model.tokenizer.decode_with(&ids, true, false)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        results.push(Summaries { summaries });
    }
    Ok(SummarizeResponse { results })
}
