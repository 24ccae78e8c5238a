//! Helpers every text task shares: input checks, batched forward passes and
//! the float maths pipeline() does in numpy.

use inferd_models::auto::TextModel;
use inferd_models::text::tokenizer::EncodedBatch;
use inferd_models::text::tokenizer::Encoding;
use inferd_sdk::Error;
use tch::{Device, Kind, Tensor};

/// Inputs per forward pass; larger batches are split to bound memory.
pub const MAX_FORWARD_BATCH: usize = 64;

/// Fails when there are no inputs or one of them is blank.
pub fn check_texts<'a>(texts: impl IntoIterator<Item = &'a str>, what: &str) -> Result<(), Error> {
    let mut count = 0;
    for (i, text) in texts.into_iter().enumerate() {
        if text.trim().is_empty() {
            return Err(Error::invalid_argument(format!("inputs[{i}]{what} is empty")));
        }
        count += 1;
    }
    if count == 0 {
        return Err(Error::invalid_argument("`inputs` is empty: send at least one input"));
    }
    Ok(())
}

/// A model error about input `i` of a request, as the request's answer
/// ("inputs[2]: the input is 600 tokens long, ...").
pub fn input_error(i: usize, e: impl Into<Error>) -> Error {
    let e = e.into();
    Error::new(e.code, format!("inputs[{i}]: {}", e.message))
}

/// Runs the model over encodings in chunks; returns the output of each
/// encoding as a CPU f32 tensor (its padded length kept), in order.
pub fn forward_encodings(model: &TextModel, encodings: &[Encoding]) -> Result<Vec<Tensor>, Error> {
    let mut outputs = Vec::with_capacity(encodings.len());
    for chunk in encodings.chunks(MAX_FORWARD_BATCH) {
        let batch: EncodedBatch = model.tokenizer.pad(chunk, model.device);
        let out = model.forward(&batch).to_kind(Kind::Float).to_device(Device::Cpu);
        for i in 0..out.size()[0] {
            outputs.push(out.get(i));
        }
    }
    Ok(outputs)
}

/// A CPU f32 tensor's values.
pub fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).expect("f32 tensor")
}

pub use inferd_models::core::math::{argmax, softmax};

/// Answers each request on its own; `one` gets the request and a check of
/// whether that request is still wanted (`wanted(i)` for request `i`).
pub fn each_wanted<R, O>(
    requests: &[R],
    wanted: &mut dyn FnMut(usize) -> bool,
    mut one: impl FnMut(&R, &mut dyn FnMut() -> bool) -> Result<O, Error>,
) -> Vec<Result<O, Error>> {
    requests
        .iter()
        .enumerate()
        .map(|(i, r)| one(r, &mut || wanted(i)))
        .collect()
}

/// The characters `start..end` of `text` (offsets count characters, as
/// Python's do).
pub fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end.saturating_sub(start)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_argmax_behave_like_numpy() {
        let s = softmax(&[1.0, 3.0, 3.0]);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&s), 1);
        assert_eq!(char_slice("Zoë is here", 0, 3), "Zoë");
        assert!(check_texts(["a", " "], "").unwrap_err().message.contains("inputs[1]"));
        assert!(check_texts(Vec::<&str>::new(), "").is_err());
    }
}
