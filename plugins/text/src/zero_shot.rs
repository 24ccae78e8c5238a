//! `zero-shot-classification`, as transformers' ZeroShotClassificationPipeline
//! computes it: each (sequence, template with a label) pair through an NLI
//! model, then the entailment logits softmaxed over the labels, or, with
//! `multi_label` (or one label), entailment against contradiction per label.
//! The pairs run in chunks of one forward pass each, so that memory stays
//! bounded and a request no longer wanted stops after the chunk it is in.

use inferd_models::auto::TextModel;
use inferd_models::text::tokenizer::{TruncationDirection, TruncationParams, TruncationStrategy};
use inferd_sdk::proto::api::{ZeroShotClassifyRequest, ZeroShotClassifyResponse, ZeroShotResult};
use inferd_sdk::Error;

use crate::common::{check_texts, each_wanted, forward_encodings, softmax, values, MAX_FORWARD_BATCH};
use crate::limits::Limits;

pub const DEFAULT_TEMPLATE: &str = "This example is {}.";

/// The label index pipeline() treats as entailment: the first label whose
/// name starts with "entail"; else the last one (pipeline's -1).
fn entailment_index(labels: &[String]) -> usize {
    labels
        .iter()
        .position(|l| l.to_lowercase().starts_with("entail"))
        .unwrap_or(labels.len().saturating_sub(1))
}

#[derive(Debug)]
struct Plan<'a> {
    sequences: &'a [String],
    labels: Vec<String>,
    hypotheses: Vec<String>,
    multi_label: bool,
}

fn plan(request: &ZeroShotClassifyRequest) -> Result<Plan<'_>, Error> {
    check_texts(request.inputs.iter().map(String::as_str), "")?;
    let labels: Vec<String> = request.candidate_labels.iter().map(|l| l.trim().to_string()).collect();
    if labels.is_empty() || labels.iter().any(|l| l.is_empty()) {
        return Err(Error::invalid_argument(
            "`candidate_labels` must hold at least one non-empty label",
        ));
    }
    let template = if request.hypothesis_template.is_empty() {
        DEFAULT_TEMPLATE
    } else {
        request.hypothesis_template.as_str()
    };
    if template.matches("{}").count() != 1 {
        return Err(Error::invalid_argument(format!(
            "hypothesis_template {template:?} must contain {{}} exactly once, where the label goes"
        )));
    }
    let hypotheses = labels.iter().map(|l| template.replacen("{}", l, 1)).collect();
    Ok(Plan {
        sequences: &request.inputs,
        multi_label: request.multi_label || labels.len() == 1,
        labels,
        hypotheses,
    })
}

pub fn zero_shot(
    model: &mut TextModel,
    limits: &Limits,
    requests: &[ZeroShotClassifyRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<ZeroShotClassifyResponse, Error>> {
    each_wanted(requests, wanted, |r, w| classify_one(model, limits, r, w))
}

/// Refuses a request over the label or token budget, before any pair is
/// encoded. The tokens are counted as pipeline() spends them: each text is
/// tokenized whole once per label, before truncation.
fn check_budget(model: &mut TextModel, limits: &Limits, plan: &Plan) -> Result<(), Error> {
    let labels = plan.labels.len() as u64;
    limits
        .candidate_labels
        .check(labels, "the number of candidate_labels")?;
    let mut tokens = 0u64;
    for hypothesis in &plan.hypotheses {
        tokens += model.tokenizer.encode_untruncated(hypothesis)?.len() as u64 * plan.sequences.len() as u64;
    }
    for sequence in plan.sequences {
        tokens += model.tokenizer.encode_untruncated(sequence)?.len() as u64 * labels;
    }
    limits.zero_shot_tokens.check(
        tokens,
        "the tokens of the (text, hypothesis) pairs (texts x labels x (text + hypothesis tokens))",
    )
}

fn classify_one(
    model: &mut TextModel,
    limits: &Limits,
    request: &ZeroShotClassifyRequest,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<ZeroShotClassifyResponse, Error> {
    let plan = plan(request)?;
    check_budget(model, limits, &plan)?;
    // Only the sequence is truncated, so that the hypothesis stays whole.
    let truncation = TruncationParams {
        max_length: model.tokenizer.max_length(),
        strategy: TruncationStrategy::OnlyFirst,
        stride: 0,
        direction: TruncationDirection::Right,
    };
    let n = plan.labels.len();
    let pairs = plan.sequences.len() * n;
    // The logits of each (sequence, label) pair, sequence by sequence; the
    // chunks are those forward_encodings would make of all the pairs, so
    // the padding (and the scores) are the same.
    let mut logits: Vec<Vec<f32>> = Vec::with_capacity(pairs);
    let mut encodings = Vec::with_capacity(MAX_FORWARD_BATCH);
    for start in (0..pairs).step_by(MAX_FORWARD_BATCH) {
        if !wanted() {
            return Err(Error::stopped());
        }
        encodings.clear();
        for pair in start..(start + MAX_FORWARD_BATCH).min(pairs) {
            let (sequence, hypothesis) = (&plan.sequences[pair / n], &plan.hypotheses[pair % n]);
            let mut encoding = model
                .tokenizer
                .encode_with(sequence, Some(hypothesis), Some(truncation.clone()))?;
            // The windows past the first are never used.
            encoding.get_overflowing_mut().clear();
            encodings.push(encoding);
        }
        logits.extend(forward_encodings(model, &encodings)?.iter().map(values));
    }
    let entail = entailment_index(&model.labels);
    let contradiction = if entail == 0 { model.labels.len() - 1 } else { 0 };
    let results = plan
        .sequences
        .iter()
        .enumerate()
        .map(|(i, sequence)| {
            let rows = &logits[i * n..(i + 1) * n];
            let scores: Vec<f32> = if plan.multi_label {
                rows.iter()
                    .map(|r| softmax(&[r[contradiction], r[entail]])[1])
                    .collect()
            } else {
                softmax(&rows.iter().map(|r| r[entail]).collect::<Vec<_>>())
            };
            // Highest first; on ties the later label first, as pipeline's
            // reversed argsort orders them.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(b.cmp(&a)));
            ZeroShotResult {
                sequence: sequence.clone(),
                labels: order.iter().map(|&k| plan.labels[k].clone()).collect(),
                scores: order.iter().map(|&k| scores[k]).collect(),
            }
        })
        .collect();
    Ok(ZeroShotClassifyResponse { results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entailment_is_found_by_name_or_defaults_to_the_last_label() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(entailment_index(&names(&["contradiction", "neutral", "entailment"])), 2);
        assert_eq!(entailment_index(&names(&["ENTAILMENT", "NEUTRAL", "CONTRADICTION"])), 0);
        assert_eq!(entailment_index(&names(&["a", "b", "c"])), 2);
    }

    #[test]
    fn templates_must_have_one_placeholder_and_labels_must_exist() {
        let mut r = ZeroShotClassifyRequest {
            inputs: vec!["x".into()],
            candidate_labels: vec!["a".into()],
            hypothesis_template: "no placeholder".into(),
            ..Default::default()
        };
        assert!(plan(&r).unwrap_err().message.contains("hypothesis_template"));
        r.hypothesis_template = "It is {}.".into();
        assert_eq!(plan(&r).unwrap().hypotheses, vec!["It is a."]);
        r.candidate_labels.clear();
        assert!(plan(&r).unwrap_err().message.contains("candidate_labels"));
    }
}
