//! Turning classification logits into pipeline()'s scores: the
//! `function_to_apply` rules and the sorted top-k labels, shared by the text
//! and image classification tasks.

use crate::core::math::softmax;
use crate::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFunction {
    Softmax,
    Sigmoid,
    None,
}

impl ScoreFunction {
    pub fn parse(name: &str) -> Result<Option<Self>> {
        match name.to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "softmax" => Ok(Some(ScoreFunction::Softmax)),
            "sigmoid" => Ok(Some(ScoreFunction::Sigmoid)),
            "none" => Ok(Some(ScoreFunction::None)),
            other => Err(ModelError::InvalidInput(format!(
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

    /// image-classification's default: text-classification's, except that
    /// `problem_type` "regression" gets no special case.
    pub fn default_for_images(problem_type: Option<&str>, num_labels: usize) -> Self {
        let problem_type = problem_type.filter(|p| *p != "regression");
        Self::default_for(problem_type, num_labels)
    }

    /// Scores from logits, in f32 as pipeline()'s numpy code computes them.
    pub fn apply(self, logits: &[f32]) -> Vec<f32> {
        match self {
            ScoreFunction::None => logits.to_vec(),
            ScoreFunction::Sigmoid => logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
            ScoreFunction::Softmax => softmax(logits),
        }
    }
}

/// The `top_k` best labels, highest score first; ties keep label order
/// (Python's stable sort, as pipeline() uses).
pub fn top_labels(labels: &[String], scores: &[f32], top_k: usize) -> Vec<(String, f32)> {
    let mut pairs: Vec<(String, f32)> = labels.iter().cloned().zip(scores.iter().copied()).collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
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
        assert_eq!(F::default_for_images(Some("regression"), 1), F::Sigmoid);
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
        let names: Vec<&str> = top.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(top_labels(&labels, &[0.2, 0.5, 0.3], 1)[0].0, "b");
    }
}
