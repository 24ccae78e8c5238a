//! `text-classification` (alias `sentiment-analysis`), as transformers'
//! `TextClassificationPipeline` computes it: truncated encoding, logits,
//! `function_to_apply` (default from the model config), labels sorted by score.

use inferd_models::auto::TextModel;
use inferd_sdk::proto::api::{Classification, ClassifyRequest, ClassifyResponse, LabelScore};
use inferd_sdk::Error;
use tch::{Device, Kind};

use crate::common::MAX_FORWARD_BATCH;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFunction {
    Softmax,
    Sigmoid,
    None,
}

impl ScoreFunction {
    pub fn parse(name: &str) -> Result<Option<Self>, Error> {
        match name.to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "softmax" => Ok(Some(ScoreFunction::Softmax)),
            "sigmoid" => Ok(Some(ScoreFunction::Sigmoid)),
            "none" => Ok(Some(ScoreFunction::None)),
            other => Err(Error::invalid_argument(format!(
                "function_to_apply `{other}` is not one of softmax, sigmoid, none"
            ))),
        }
    }

    /// pipeline()'s default: from problem_type, else from the label count.
    pub fn default_for(problem_type: Option<&str>, num_labels: usize) -> Self {
        match problem_type {
            Some("regression") => ScoreFunction::None,
            Some("multi_label_classification") => ScoreFunction::Sigmoid,
            _ if num_labels == 1 => ScoreFunction::Sigmoid,
            Some("single_label_classification") => ScoreFunction::Softmax,
            _ if num_labels > 1 => ScoreFunction::Softmax,
            _ => ScoreFunction::None,
        }
    }

    /// Scores from logits, in f32 as pipeline()'s numpy code computes them.
    pub fn apply(self, logits: &[f32]) -> Vec<f32> {
        match self {
            ScoreFunction::None => logits.to_vec(),
            ScoreFunction::Sigmoid => logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
            ScoreFunction::Softmax => crate::common::softmax(logits),
        }
    }
}

/// A validated request, ready to run.
struct Plan<'a> {
    texts: Vec<(&'a str, Option<&'a str>)>,
    function: ScoreFunction,
    top_k: usize,
}

fn plan<'a>(request: &'a ClassifyRequest, model: &TextModel) -> Result<Plan<'a>, Error> {
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
        texts.push((input.text.as_str(), input.text_pair.as_deref()));
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

/// Classifies the inputs of several requests in shared forward passes.
pub fn classify(model: &TextModel, requests: &[ClassifyRequest]) -> Vec<Result<ClassifyResponse, Error>> {
    let plans: Vec<Result<Plan, Error>> = requests.iter().map(|r| plan(r, model)).collect();
    let all_texts: Vec<(&str, Option<&str>)> = plans
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .flat_map(|p| p.texts.iter().copied())
        .collect();
    let logits = match forward(model, &all_texts) {
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
                        labels: top_labels(&model.labels, &plan.function.apply(&row), plan.top_k),
                    }
                })
                .collect();
            Ok(ClassifyResponse { results })
        })
        .collect()
}

fn forward(model: &TextModel, texts: &[(&str, Option<&str>)]) -> Result<Vec<Vec<f32>>, Error> {
    let mut rows = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(MAX_FORWARD_BATCH) {
        let batch = model.tokenizer.encode_batch(chunk, model.device)?;
        let logits = model.forward(&batch).to_kind(Kind::Float).to_device(Device::Cpu);
        let (n, labels) = logits.size2().map_err(|e| Error::internal(e.to_string()))?;
        let flat = Vec::<f32>::try_from(logits.flatten(0, -1)).map_err(|e| Error::internal(e.to_string()))?;
        for i in 0..n as usize {
            rows.push(flat[i * labels as usize..(i + 1) * labels as usize].to_vec());
        }
    }
    Ok(rows)
}

/// The `top_k` best labels, highest score first; ties keep label order
/// (Python's stable sort, as pipeline() uses).
fn top_labels(labels: &[String], scores: &[f32], top_k: usize) -> Vec<LabelScore> {
    let mut pairs: Vec<LabelScore> = labels
        .iter()
        .zip(scores)
        .map(|(label, &score)| LabelScore {
            label: label.clone(),
            score,
        })
        .collect();
    pairs.sort_by(|a, b| b.score.total_cmp(&a.score));
    pairs.truncate(top_k);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_function_follows_pipeline_rules() {
        use ScoreFunction as F;
        assert_eq!(F::default_for(None, 2), F::Softmax);
        assert_eq!(F::default_for(None, 1), F::Sigmoid);
        assert_eq!(F::default_for(Some("multi_label_classification"), 4), F::Sigmoid);
        assert_eq!(F::default_for(Some("regression"), 1), F::None);
        assert_eq!(F::default_for(Some("single_label_classification"), 3), F::Softmax);
    }

    #[test]
    fn softmax_sums_to_one_and_sigmoid_is_elementwise() {
        let s = ScoreFunction::Softmax.apply(&[1.0, 2.0, 3.0]);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[2] > s[1] && s[1] > s[0]);
        let g = ScoreFunction::Sigmoid.apply(&[0.0]);
        assert!((g[0] - 0.5).abs() < 1e-7);
        assert!(ScoreFunction::parse("logits").is_err());
    }

    #[test]
    fn top_labels_sorts_stably_and_truncates() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let top = top_labels(&labels, &[0.2, 0.5, 0.2], 3);
        let names: Vec<&str> = top.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(top_labels(&labels, &[0.2, 0.5, 0.3], 1)[0].label, "b");
    }
}
