//! `token-classification` (alias `ner`), as transformers'
//! TokenClassificationPipeline computes it: per-token softmax, the
//! pre-entities with their character offsets and sub-word flags, then the
//! aggregation strategy (none, simple, first, average, max) and grouping of
//! B-/I- tags into entity groups.

use inferd_models::auto::TextModel;
use inferd_sdk::proto::api::{ClassifyTokensRequest, ClassifyTokensResponse, TokenClassification, TokenEntity};
use inferd_sdk::Error;

use crate::common::{
    argmax, char_slice, check_texts, each_wanted, forward_encodings, softmax, values, MAX_FORWARD_BATCH,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    None,
    Simple,
    First,
    Average,
    Max,
}

impl Aggregation {
    pub fn parse(name: &str) -> Result<Self, Error> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "" | "none" => Aggregation::None,
            "simple" => Aggregation::Simple,
            "first" => Aggregation::First,
            "average" => Aggregation::Average,
            "max" => Aggregation::Max,
            other => {
                return Err(Error::invalid_argument(format!(
                    "aggregation_strategy `{other}` is not one of none, simple, first, average, max"
                )))
            }
        })
    }
}

/// A token before aggregation.
struct PreEntity {
    word: String,
    scores: Vec<f32>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// A token or word with its label (before grouping).
struct Tagged {
    entity: String,
    score: f32,
    index: Option<usize>,
    word: String,
    start: usize,
    end: usize,
}

/// Each request on its own; an input's forward pass runs only while its
/// request is still wanted.
pub fn classify_tokens(
    model: &mut TextModel,
    requests: &[ClassifyTokensRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<ClassifyTokensResponse, Error>> {
    each_wanted(requests, wanted, |r, wanted| classify_one(model, r, wanted))
}

fn classify_one(
    model: &mut TextModel,
    request: &ClassifyTokensRequest,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<ClassifyTokensResponse, Error> {
    check_texts(request.inputs.iter().map(String::as_str), "")?;
    let strategy = Aggregation::parse(&request.aggregation_strategy)?;
    let ignore: Vec<String> = match &request.ignore_labels {
        Some(list) => list.values.clone(),
        None => vec!["O".to_string()],
    };
    let mut encodings = Vec::with_capacity(request.inputs.len());
    let mut logits = Vec::with_capacity(request.inputs.len());
    for piece in request.inputs.chunks(MAX_FORWARD_BATCH) {
        if !wanted() {
            return Err(Error::stopped());
        }
        let start = encodings.len();
        for text in piece {
            encodings.push(model.tokenizer.encode_with(text, None, None)?);
        }
        logits.extend(forward_encodings(model, &encodings[start..])?);
    }
    let mut results = Vec::with_capacity(encodings.len());
    for ((text, encoding), logits) in request.inputs.iter().zip(&encodings).zip(logits) {
        let num_labels = model.labels.len();
        let flat = values(&logits);
        let pre = pre_entities(model, text, encoding, &flat, num_labels);
        let tagged = match strategy {
            Aggregation::None | Aggregation::Simple => pre
                .iter()
                .map(|p| {
                    let best = argmax(&p.scores);
                    Tagged {
                        entity: model.labels[best].clone(),
                        score: p.scores[best],
                        index: Some(p.index),
                        word: p.word.clone(),
                        start: p.start,
                        end: p.end,
                    }
                })
                .collect(),
            _ => aggregate_words(model, &pre, strategy)?,
        };
        let entities: Vec<TokenEntity> = if strategy == Aggregation::None {
            tagged
                .into_iter()
                .filter(|t| !ignore.contains(&t.entity))
                .map(|t| TokenEntity {
                    entity: t.entity,
                    score: t.score,
                    index: t.index.map(|i| i as u32),
                    word: t.word,
                    start: t.start as u32,
                    end: t.end as u32,
                    ..Default::default()
                })
                .collect()
        } else {
            group_entities(model, &tagged)?
                .into_iter()
                .filter(|g| !ignore.contains(&g.entity_group))
                .collect()
        };
        results.push(TokenClassification { entities });
    }
    Ok(ClassifyTokensResponse { results })
}

fn pre_entities(
    model: &TextModel,
    text: &str,
    encoding: &inferd_models::text::tokenizer::Encoding,
    logits: &[f32],
    num_labels: usize,
) -> Vec<PreEntity> {
    let prefix = model.tokenizer.continuing_subword_prefix();
    let chars: Vec<char> = text.chars().collect();
    let unk = model.tokenizer.unk_id();
    let mut out = Vec::new();
    for (idx, &id) in encoding.get_ids().iter().enumerate() {
        if encoding.get_special_tokens_mask()[idx] == 1 {
            continue;
        }
        let (start, end) = encoding.get_offsets()[idx];
        let word_ref = char_slice(text, start, end);
        let mut word = model.tokenizer.id_to_token(id);
        let mut is_subword = if prefix.is_some() {
            word.chars().count() != word_ref.chars().count()
        } else {
            // pipeline()'s fallback: a piece not preceded by a space.
            start > 0 && !chars[start - 1..(start + 1).min(chars.len())].contains(&' ')
        };
        if Some(id) == unk {
            word = word_ref;
            is_subword = false;
        }
        out.push(PreEntity {
            word,
            scores: softmax(&logits[idx * num_labels..(idx + 1) * num_labels]),
            start,
            end,
            index: idx,
            is_subword,
        });
    }
    out
}

/// Joins sub-words into words and labels each word by `strategy`.
fn aggregate_words(model: &TextModel, pre: &[PreEntity], strategy: Aggregation) -> Result<Vec<Tagged>, Error> {
    let mut words: Vec<Vec<&PreEntity>> = Vec::new();
    for p in pre {
        match words.last_mut() {
            Some(group) if p.is_subword => group.push(p),
            _ => words.push(vec![p]),
        }
    }
    words
        .into_iter()
        .map(|group| {
            let tokens: Vec<String> = group.iter().map(|p| p.word.clone()).collect();
            let word = model.tokenizer.tokens_to_string(&tokens)?;
            let (label, score) = match strategy {
                Aggregation::First => {
                    let best = argmax(&group[0].scores);
                    (best, group[0].scores[best])
                }
                Aggregation::Max => {
                    // The token whose best score is highest (the first on ties).
                    let mut top = group[0];
                    for p in &group[1..] {
                        if max_of(&p.scores) > max_of(&top.scores) {
                            top = p;
                        }
                    }
                    let best = argmax(&top.scores);
                    (best, top.scores[best])
                }
                _ => {
                    let n = group[0].scores.len();
                    let mean: Vec<f32> = (0..n)
                        .map(|k| group.iter().map(|p| p.scores[k]).sum::<f32>() / group.len() as f32)
                        .collect();
                    let best = argmax(&mean);
                    (best, mean[best])
                }
            };
            Ok(Tagged {
                entity: model.labels[label].clone(),
                score,
                index: None,
                word,
                start: group[0].start,
                end: group[group.len() - 1].end,
            })
        })
        .collect()
}

fn max_of(values: &[f32]) -> f32 {
    values.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// ("B", tag) / ("I", tag); a label without prefix counts as "I".
fn split_tag(label: &str) -> (&str, &str) {
    if let Some(tag) = label.strip_prefix("B-") {
        ("B", tag)
    } else if let Some(tag) = label.strip_prefix("I-") {
        ("I", tag)
    } else {
        ("I", label)
    }
}

/// Groups adjacent entities with the same tag (a B- starts a new group).
fn group_entities(model: &TextModel, tagged: &[Tagged]) -> Result<Vec<TokenEntity>, Error> {
    let mut groups: Vec<Vec<&Tagged>> = Vec::new();
    for t in tagged {
        let starts_new = match groups.last().and_then(|g| g.last()) {
            None => true,
            Some(last) => {
                let (bi, tag) = split_tag(&t.entity);
                let (_, last_tag) = split_tag(&last.entity);
                !(tag == last_tag && bi != "B")
            }
        };
        if starts_new {
            groups.push(vec![t]);
        } else {
            groups.last_mut().expect("a group").push(t);
        }
    }
    groups
        .into_iter()
        .map(|group| {
            let words: Vec<String> = group.iter().map(|t| t.word.clone()).collect();
            let label = &group[0].entity;
            Ok(TokenEntity {
                entity_group: label.split_once('-').map(|(_, rest)| rest).unwrap_or(label).to_string(),
                score: group.iter().map(|t| t.score).sum::<f32>() / group.len() as f32,
                word: model.tokenizer.tokens_to_string(&words)?,
                start: group[0].start as u32,
                end: group[group.len() - 1].end as u32,
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_like_pipeline() {
        assert_eq!(split_tag("B-PER"), ("B", "PER"));
        assert_eq!(split_tag("I-LOC"), ("I", "LOC"));
        assert_eq!(split_tag("O"), ("I", "O"));
        assert!(Aggregation::parse("longest").is_err());
        assert_eq!(Aggregation::parse("").unwrap(), Aggregation::None);
    }
}
