//! `fill-mask`, as transformers' FillMaskPipeline computes it: softmax over
//! the vocabulary at each mask token (restricted to `targets` when given),
//! the top k, and each candidate's token string and completed sequence.
//! A request's candidates (masks x top_k) are counted before anything runs;
//! its texts run one forward chunk at a time, asking between chunks whether
//! the request is still wanted.

use inferd_models::auto::TextModel;
use inferd_sdk::proto::api::{FillMaskCandidate, FillMaskRequest, FillMaskResponse, FillMaskResult, MaskPredictions};
use inferd_sdk::Error;
use tch::{Kind, Tensor};

use crate::common::{check_texts, each_wanted, input_error, MAX_FORWARD_BATCH};
use crate::limits::Limits;

const DEFAULT_TOP_K: u32 = 5;

/// Vocabulary ids of `targets` as pipeline() finds them: the token itself,
/// else the first token of its encoding (unknown words are skipped).
fn target_ids(model: &TextModel, targets: &[String]) -> Result<Vec<i64>, Error> {
    let mut ids = Vec::new();
    for target in targets {
        let id = match model.tokenizer.token_id(target) {
            Some(id) => Some(id),
            None => {
                let first = model.tokenizer.ids_without_special_tokens(target)?.first().copied();
                if let Some(id) = first {
                    tracing::debug!(target, token = %model.tokenizer.id_to_token(id), "target is not a vocabulary token; using its first token");
                }
                first
            }
        };
        if let Some(id) = id {
            ids.push(id as i64);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(Error::invalid_argument(
            "none of the `targets` can be found in the model's vocabulary",
        ));
    }
    Ok(ids)
}

pub fn fill_mask(
    model: &mut TextModel,
    limits: &Limits,
    requests: &[FillMaskRequest],
    wanted: &mut dyn FnMut(usize) -> bool,
) -> Vec<Result<FillMaskResponse, Error>> {
    each_wanted(requests, wanted, |r, w| fill_one(model, limits, r, w))
}

fn fill_one(
    model: &mut TextModel,
    limits: &Limits,
    request: &FillMaskRequest,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<FillMaskResponse, Error> {
    check_texts(request.inputs.iter().map(String::as_str), "")?;
    let (mask_token, mask_id) = model
        .tokenizer
        .mask_token()
        .map(|(t, id)| (t.to_string(), id))
        .ok_or_else(|| Error::failed_precondition("this model's tokenizer has no mask token"))?;
    let top_k = request.top_k.unwrap_or(DEFAULT_TOP_K);
    if top_k == 0 {
        return Err(Error::invalid_argument("top_k must be at least 1"));
    }
    let targets = if request.targets.is_empty() {
        None
    } else {
        Some(target_ids(model, &request.targets)?)
    };
    let mut encodings = Vec::new();
    for (i, text) in request.inputs.iter().enumerate() {
        let mut encoding = model
            .tokenizer
            .encode_truncating(text, None, request.truncation)
            .map_err(|e| input_error(i, e))?;
        // Only the first window of a text longer than the model's is used.
        encoding.get_overflowing_mut().clear();
        if !encoding.get_ids().contains(&mask_id) {
            return Err(Error::invalid_argument(format!(
                "inputs[{i}] has no mask token: put {mask_token} where the word to predict goes"
            )));
        }
        encodings.push(encoding);
    }
    let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
    // Each mask gets top_k candidates, or as many as there are tokens to
    // choose from (the vocabulary, or the targets).
    let choices = match &targets {
        Some(t) => t.len(),
        None => model.tokenizer.vocab_size(),
    };
    let masks: usize = ids.iter().map(|t| t.iter().filter(|&&id| id == mask_id).count()).sum();
    limits.fill_mask_candidates.check(
        masks as u64 * u64::from(top_k).min(choices as u64),
        "the candidates asked for (masks x top_k)",
    )?;
    let mut chunks = Vec::new();
    for chunk in encodings.chunks(MAX_FORWARD_BATCH) {
        if !wanted() {
            return Err(Error::stopped());
        }
        let batch = model.tokenizer.pad(chunk, model.device);
        chunks.push(
            model
                .masked_lm_logits(&batch, mask_id as i64)?
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu),
        );
    }
    let logits = Tensor::cat(&chunks, 0);
    let mut next_mask = 0i64;
    let pad = model.tokenizer.pad_id() as u32;
    let mut results = Vec::with_capacity(ids.len());
    for input_ids in &ids {
        if !wanted() {
            return Err(Error::stopped());
        }
        let positions: Vec<usize> = (0..input_ids.len()).filter(|&i| input_ids[i] == mask_id).collect();
        let single_mask = positions.len() == 1;
        let mut masks = Vec::with_capacity(positions.len());
        for &position in &positions {
            // Softmax and top-k in torch, exactly as the pipeline does them.
            let mut probs = logits.get(next_mask).softmax(-1, Kind::Float);
            next_mask += 1;
            if let Some(targets) = &targets {
                probs = probs.index_select(0, &Tensor::from_slice(targets));
            }
            let k = (top_k as i64).min(probs.size()[0]);
            let (scores, indices) = probs.topk(k, -1, true, true);
            let scores = Vec::<f32>::try_from(scores).map_err(|e| Error::internal(e.to_string()))?;
            let indices = Vec::<i64>::try_from(indices).map_err(|e| Error::internal(e.to_string()))?;
            let mut candidates = Vec::with_capacity(scores.len());
            for (score, index) in scores.into_iter().zip(indices) {
                let token = match &targets {
                    Some(t) => t[index as usize],
                    None => index,
                } as u32;
                let mut filled = input_ids.clone();
                filled[position] = token;
                filled.retain(|&id| id != pad);
                candidates.push(FillMaskCandidate {
                    score,
                    token: token as i64,
                    token_str: model.tokenizer.decode(&[token], false)?,
                    // pipeline() keeps special tokens (the other masks) when
                    // the text has several masks.
                    sequence: model.tokenizer.decode(&filled, single_mask)?,
                });
            }
            masks.push(MaskPredictions { candidates });
        }
        results.push(FillMaskResult { masks });
    }
    Ok(FillMaskResponse { results })
}
