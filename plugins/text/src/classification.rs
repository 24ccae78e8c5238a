//! `text-classification` (alias `sentiment-analysis`), as transformers'
//! `TextClassificationPipeline` computes it: truncated encoding, logits,
//! `function_to_apply` (default from the model config), labels sorted by score.

use inferd_models::auto::TextModel;
use inferd_models::core::scores::{top_labels, ScoreFunction};
use inferd_sdk::proto::api::{Classification, ClassifyRequest, ClassifyResponse};
use inferd_sdk::values::label_scores;
use inferd_sdk::Error;

use crate::common::{forward_encodings, input_error, values, MAX_FORWARD_BATCH};

/// A validated request, ready to run.
struct Plan<'a> {
    texts: Vec<Text<'a>>,
    function: ScoreFunction,
    top_k: usize,
}

/// An input: its text, its pair, and how to cut it (`truncation`).
type Text<'a> = (&'a str, Option<&'a str>, Option<bool>);

fn plan<'a>(request: &'a ClassifyRequest, model: &mut TextModel) -> Result<Plan<'a>, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument(
            "`inputs` is empty: send at least one text to classify",
        ));
    }
    let mut texts = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        if input.text.trim().is_empty() {
            return Err(Error::invalid_argument(format!("inputs[{i}].text is empty")));
        }
        if input.text_pair.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(Error::invalid_argument(format!(
                "inputs[{i}].text_pair is empty (leave it unset for a single text)"
            )));
        }
        if request.truncation == Some(false) {
            // Refused now if too long for the model whole, rather than
            // failing the batch it would share.
            model
                .tokenizer
                .encode_truncating(&input.text, input.text_pair.as_deref(), Some(false))
                .map_err(|e| input_error(i, e))?;
        }
        texts.push((input.text.as_str(), input.text_pair.as_deref(), request.truncation));
    }
    let num_labels = model.labels.len();
    let function = ScoreFunction::parse(&request.function_to_apply)?
        .unwrap_or_else(|| ScoreFunction::default_for(model.config.problem_type.as_deref(), num_labels));
    let top_k = match request.top_k {
        None => 1,
        Some(0) => num_labels,
        Some(k) => (k as usize).min(num_labels),
    };
    Ok(Plan { texts, function, top_k })
}

/// Classifies the inputs of several requests in shared forward passes;
/// between passes, stops once none of the requests is still wanted
/// (`wanted(i)` for request `i`).
pub fn classify(
    model: &mut TextModel,
    requests: &[ClassifyRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<ClassifyResponse, Error>> {
    let plans: Vec<Result<Plan, Error>> = requests.iter().map(|r| plan(r, model)).collect();
    let all_texts: Vec<Text> = plans
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .flat_map(|p| p.texts.iter().copied())
        .collect();
    let planned: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].is_ok()).collect();
    let logits = match forward(model, &all_texts, &mut || planned.iter().any(|&i| wanted(i))) {
        Ok(logits) => logits,
        Err(e) => return requests.iter().map(|_| Err(e.clone())).collect(),
    };
    let mut rows = logits.into_iter();
    plans
        .into_iter()
        .map(|plan| {
            let plan = plan?;
            let results = plan
                .texts
                .iter()
                .map(|_| {
                    let row = rows.next().expect("one logits row per input");
                    Classification {
                        labels: label_scores(top_labels(&model.labels, &plan.function.apply(&row), plan.top_k)),
                    }
                })
                .collect();
            Ok(ClassifyResponse { results })
        })
        .collect()
}

/// Logits rows, one per text, through batched forward passes, each text
/// tokenized just before its pass; `keep_going` is asked before each.
fn forward(
    model: &mut TextModel,
    texts: &[Text],
    keep_going: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<f32>>, Error> {
    let mut rows = Vec::with_capacity(texts.len());
    for piece in texts.chunks(MAX_FORWARD_BATCH) {
        if !keep_going() {
            return Err(Error::stopped());
        }
        let encodings = piece
            .iter()
            .map(|(text, pair, truncation)| model.tokenizer.encode_truncating(text, *pair, *truncation))
            .collect::<Result<Vec<_>, _>>()?;
        rows.extend(forward_encodings(model, &encodings)?.iter().map(values));
    }
    Ok(rows)
}
