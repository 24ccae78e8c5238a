//! `question-answering`, as transformers' QuestionAnsweringPipeline computes
//! it with a fast tokenizer: the context split into overlapping windows
//! (`max_seq_len`, `doc_stride`), start/end probabilities per window over
//! the context tokens, the best spans no longer than `max_answer_len`,
//! snapped to words, merged across windows by their text. A request's
//! windows are counted before any runs (`INFERD_MAX_QA_WINDOWS`), and they
//! run one forward chunk at a time, asking between chunks whether the
//! request is still wanted.

use inferd_models::auto::TextModel;
use inferd_models::text::tokenizer::{Encoding, TruncationDirection, TruncationParams, TruncationStrategy};
use inferd_sdk::proto::api::{Answer, AnswerQuestionRequest, AnswerQuestionResponse, AnswerResult, QuestionInput};
use inferd_sdk::Error;

use crate::common::{char_slice, each_wanted, forward_encodings, input_error, softmax, values, MAX_FORWARD_BATCH};
use crate::limits::Limits;

const DEFAULT_MAX_ANSWER_LEN: u32 = 15;
/// Logit given to tokens that cannot be part of an answer.
const MASKED_LOGIT: f32 = -10000.0;

struct Params {
    top_k: usize,
    doc_stride: usize,
    max_answer_len: usize,
    max_seq_len: usize,
    handle_impossible: bool,
    align_to_words: bool,
}

fn params(model: &TextModel, request: &AnswerQuestionRequest) -> Result<Params, Error> {
    let top_k = request.top_k.unwrap_or(1) as usize;
    if top_k == 0 {
        return Err(Error::invalid_argument("top_k must be at least 1"));
    }
    let max_seq_len = request
        .max_seq_len
        .map(|n| n as usize)
        .unwrap_or_else(|| model.tokenizer.max_length().min(384));
    let doc_stride = request
        .doc_stride
        .map(|n| n as usize)
        .unwrap_or((max_seq_len / 2).min(128));
    if doc_stride > max_seq_len {
        return Err(Error::invalid_argument(format!(
            "doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})"
        )));
    }
    let max_answer_len = request.max_answer_len.unwrap_or(DEFAULT_MAX_ANSWER_LEN) as usize;
    if max_answer_len == 0 {
        return Err(Error::invalid_argument("max_answer_len must be at least 1"));
    }
    Ok(Params {
        top_k,
        doc_stride,
        max_answer_len,
        max_seq_len,
        handle_impossible: request.handle_impossible_answer,
        align_to_words: request.align_to_words.unwrap_or(true),
    })
}

pub fn answer(
    model: &mut TextModel,
    limits: &Limits,
    requests: &[AnswerQuestionRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<AnswerQuestionResponse, Error>> {
    each_wanted(requests, wanted, |r, w| answer_one(model, limits, r, w))
}

fn answer_one(
    model: &mut TextModel,
    limits: &Limits,
    request: &AnswerQuestionRequest,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<AnswerQuestionResponse, Error> {
    if request.inputs.is_empty() {
        return Err(Error::invalid_argument(
            "`inputs` is empty: send at least one question and context",
        ));
    }
    for (i, input) in request.inputs.iter().enumerate() {
        if input.question.trim().is_empty() {
            return Err(Error::invalid_argument(format!("inputs[{i}].question is empty")));
        }
        if input.context.trim().is_empty() {
            return Err(Error::invalid_argument(format!("inputs[{i}].context is empty")));
        }
    }
    let params = params(model, request)?;
    let at_input = |i: usize| move |e: Error| input_error(i, e);
    // The windows are the request's cost: all are counted before any runs.
    let mut windows_of = Vec::with_capacity(request.inputs.len());
    let mut count = 0;
    for (i, input) in request.inputs.iter().enumerate() {
        check_windows(model, input, &params).map_err(at_input(i))?;
        let spans = windows(model, input, &params).map_err(at_input(i))?;
        count += spans.len() as u64;
        limits.qa_windows.check(
            count,
            &format!("the number of context windows (max_seq_len tokens, doc_stride apart) up to inputs[{i}]"),
        )?;
        windows_of.push(spans);
    }
    let mut results = Vec::with_capacity(request.inputs.len());
    for (i, (input, spans)) in request.inputs.iter().zip(&windows_of).enumerate() {
        let answers = answer_input(model, input, spans, &params, wanted).map_err(at_input(i))?;
        results.push(AnswerResult { answers });
    }
    Ok(AnswerQuestionResponse { results })
}

/// Checks that `input` can be cut into windows as `params` ask, before the
/// tokenizer is asked to. transformers fails in these cases too, later: in
/// the tokenizer (an error, or the Rust tokenizer's `stride < max_len`
/// assertion, a panic), or in the model, when a window is longer than its
/// position table; and a `max_seq_len` shorter than the special tokens
/// would wrap around in the tokenizer and turn truncation off.
fn check_windows(model: &mut TextModel, input: &QuestionInput, params: &Params) -> Result<(), Error> {
    let tokenizer = &mut model.tokenizer;
    let specials = tokenizer.encode("", Some(""))?.len();
    // Counted untruncated: a single text's special tokens taken off.
    let single = tokenizer.encode_untruncated("")?.len();
    let question = tokenizer.encode_untruncated(&input.question)?.len() - single;
    let context = tokenizer.encode_untruncated(&input.context)?.len() - single;
    let whole = specials + question + context;
    let longest = tokenizer.max_length();
    if whole.min(params.max_seq_len) > longest {
        return Err(Error::invalid_argument(format!(
            "max_seq_len {} is more than this model's {longest} tokens, and the question and context ({whole} \
             tokens) need more than {longest}: give a max_seq_len of at most {longest}",
            params.max_seq_len
        )));
    }
    if whole <= params.max_seq_len {
        // One window: nothing is cut.
        return Ok(());
    }
    let room = params.max_seq_len.saturating_sub(specials + question);
    if room == 0 {
        return Err(Error::invalid_argument(format!(
            "max_seq_len {} leaves no room for the context: the question is {question} tokens and the model adds \
             {specials} special tokens",
            params.max_seq_len
        )));
    }
    if params.doc_stride >= room {
        return Err(Error::invalid_argument(format!(
            "doc_stride ({}) must be less than the {room} context tokens a window holds (max_seq_len {} less the \
             question's {question} tokens and {specials} special tokens)",
            params.doc_stride, params.max_seq_len
        )));
    }
    Ok(())
}

/// The question first, the context second, truncated (only the context) into
/// overlapping windows: the first window and its overflow.
fn windows(model: &mut TextModel, input: &QuestionInput, params: &Params) -> Result<Vec<Encoding>, Error> {
    let truncation = TruncationParams {
        max_length: params.max_seq_len,
        strategy: TruncationStrategy::OnlySecond,
        stride: params.doc_stride,
        direction: TruncationDirection::Right,
    };
    let mut first = model
        .tokenizer
        .encode_with(&input.question, Some(&input.context), Some(truncation))
        .map_err(|e| {
            Error::invalid_argument(format!(
                "cannot fit the question and context into max_seq_len {}: {e}",
                params.max_seq_len
            ))
        })?;
    let overflow = std::mem::take(first.get_overflowing_mut());
    let mut all = vec![first];
    all.extend(overflow);
    Ok(all)
}

fn answer_input(
    model: &mut TextModel,
    input: &QuestionInput,
    spans: &[Encoding],
    params: &Params,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<Vec<Answer>, Error> {
    let mut logits = Vec::with_capacity(spans.len());
    for chunk in spans.chunks(MAX_FORWARD_BATCH) {
        if !wanted() {
            return Err(Error::stopped());
        }
        logits.extend(forward_encodings(model, chunk)?);
    }
    let cls = model.tokenizer.cls_id();
    let context: &str = &input.context;
    let mut answers: Vec<Answer> = Vec::new();
    let mut min_null_score = 1_000_000f32;
    let candidates_wanted = if params.align_to_words {
        params.top_k * 2 + 10
    } else {
        params.top_k
    };
    for (span, logits) in spans.iter().zip(logits) {
        let len = span.len();
        let flat = values(&logits);
        // Only context tokens (and [CLS], for "no answer") may be picked.
        let sequence_ids = span.get_sequence_ids();
        let desired: Vec<bool> = (0..len)
            .map(|t| sequence_ids[t] == Some(1) || (cls.is_some() && span.get_ids()[t] == cls.unwrap()))
            .collect();
        let masked = |column: usize| -> Vec<f32> {
            (0..len)
                .map(|t| if desired[t] { flat[t * 2 + column] } else { MASKED_LOGIT })
                .collect()
        };
        let mut start = softmax(&masked(0));
        let mut end = softmax(&masked(1));
        if params.handle_impossible {
            min_null_score = min_null_score.min(start[0] * end[0]);
        }
        start[0] = 0.0;
        end[0] = 0.0;
        for (s, e, score) in best_spans(&start, &end, candidates_wanted, params.max_answer_len, &desired) {
            let (start_char, end_char) = char_span(span, s, e, params.align_to_words);
            let text = char_slice(context, start_char, end_char);
            match answers
                .iter_mut()
                .find(|a| a.answer.to_lowercase() == text.to_lowercase())
            {
                Some(existing) => existing.score += score,
                None => answers.push(Answer {
                    score,
                    start: start_char as u32,
                    end: end_char as u32,
                    answer: text,
                }),
            }
        }
    }
    if params.handle_impossible {
        answers.push(Answer {
            score: min_null_score,
            start: 0,
            end: 0,
            answer: String::new(),
        });
    }
    // Stable, like Python's sorted(..., reverse=True).
    answers.sort_by(|a, b| b.score.total_cmp(&a.score));
    answers.truncate(params.top_k);
    Ok(answers)
}

/// The `top` best (start, end) pairs by start[s] * end[e], with s <= e and
/// e - s < max_answer_len, keeping only pairs whose ends are both desired.
fn best_spans(
    start: &[f32],
    end: &[f32],
    top: usize,
    max_answer_len: usize,
    desired: &[bool],
) -> Vec<(usize, usize, f32)> {
    let n = start.len();
    let mut candidates: Vec<(usize, usize, f32)> = Vec::new();
    for (s, p_start) in start.iter().enumerate() {
        for (e, p_end) in end.iter().enumerate().skip(s).take(max_answer_len) {
            candidates.push((s, e, p_start * p_end));
        }
    }
    // pipeline() ranks every cell of the n x n matrix, zeros included; the
    // zero cells outside the band can only matter when fewer than `top`
    // spans exist, and are then filtered by `desired` anyway.
    candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0 * n + a.1).cmp(&(b.0 * n + b.1))));
    candidates.truncate(top);
    candidates.retain(|(s, e, _)| desired[*s] && desired[*e]);
    candidates
}

/// Character offsets of tokens s..=e in the context, snapped to whole words
/// when asked (falling back to token offsets when a token has no word).
fn char_span(span: &Encoding, s: usize, e: usize, align_to_words: bool) -> (usize, usize) {
    if align_to_words {
        let word_chars = |t: usize| -> Option<(usize, usize)> {
            let (_, word) = span.token_to_word(t)?;
            span.word_to_chars(word, 1)
        };
        if let (Some((start, _)), Some((_, end))) = (word_chars(s), word_chars(e)) {
            return (start, end);
        }
    }
    (span.get_offsets()[s].0, span.get_offsets()[e].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_respect_order_length_and_the_mask() {
        let start = [0.0, 0.6, 0.3, 0.1];
        let end = [0.0, 0.1, 0.7, 0.2];
        let desired = [true, true, true, true];
        let best = best_spans(&start, &end, 1, 15, &desired);
        assert_eq!((best[0].0, best[0].1), (1, 2));
        // A maximum length of 1 token allows only s == e.
        let best = best_spans(&start, &end, 1, 1, &desired);
        assert_eq!((best[0].0, best[0].1), (2, 2));
        let best = best_spans(&start, &end, 3, 15, &[true, false, true, true]);
        assert!(best.iter().all(|(s, e, _)| *s != 1 && *e != 1));
    }
}
