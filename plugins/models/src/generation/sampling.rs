//! Choosing the next token of each row: greedily (the first of the largest
//! scores, torch.argmax's choice) or by sampling from the warped scores
//! with a seedable RNG of the row's own, so that a seed gives the same
//! samples whatever other sequences share the batch. The scores stay on
//! the model's device; each row's uniform draw goes there.

use tch::{Device, Kind, Tensor};

use crate::core::device::upload;
use crate::generation::processors::{process, warp, Row};
use crate::generation::settings::GenerationParams;

/// A small, seedable RNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed from the clock, for requests that give none.
    pub fn random_seed() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws one token per row of `scores` [rows, vocab] (float32, on any
/// device) from softmax(row), with `uniforms[r]` (in [0, 1), from the row's
/// own RNG): the first possible token whose cumulative probability passes
/// it, or the last possible token when rounding leaves the sum short (a
/// GPU's parallel sums need not even grow monotonically: only tokens of
/// nonzero probability are taken). The tokens [rows] stay on the scores'
/// device.
pub fn sample(scores: &Tensor, uniforms: &[f32]) -> Tensor {
    let vocab = scores.size()[1];
    let probs = scores.softmax(-1, Kind::Float);
    let possible = probs.gt(0.0);
    let cumulative = probs.cumsum(-1, Kind::Float);
    let u = upload(&Tensor::from_slice(uniforms), scores.device()).view([-1, 1]);
    let hits = cumulative.gt_tensor(&u).logical_and(&possible);
    let first = hits.to_kind(Kind::Int64).argmax(-1, false);
    let last_possible = (vocab - 1) - possible.flip([-1]).to_kind(Kind::Int64).argmax(-1, false);
    first.where_self(&hits.any_dim(-1, false), &last_possible)
}

/// One row to choose a token for: its history, its settings and its RNG.
pub struct Choice<'a> {
    pub row: Row<'a>,
    pub params: &'a GenerationParams,
    pub rng: &'a mut Rng,
}

/// The next token of each row of `scores` [rows, vocab] (float32, on the
/// model's device; processed in place when contiguous), row `r`
/// being `choices[r]`: its processors, then the greedy choice (the first
/// of the largest scores, torch.argmax's), or its warpers and a draw. The
/// scores stay on their device; only the tokens come back.
pub fn choose(scores: &Tensor, choices: &mut [Choice]) -> Vec<i64> {
    let scores = scores.contiguous();
    let rows: Vec<(Row, &GenerationParams)> = choices.iter().map(|c| (c.row, c.params)).collect();
    process(&scores, &rows);
    let greedy = scores.argmax(-1, false);
    let tokens = if choices.iter().any(|c| c.params.do_sample) {
        let mut uniforms = Vec::with_capacity(choices.len());
        let mut sampling = Vec::with_capacity(choices.len());
        for (r, choice) in choices.iter_mut().enumerate() {
            if choice.params.do_sample {
                warp(&scores.narrow(0, r as i64, 1), choice.params);
                uniforms.push(choice.rng.uniform() as f32);
            } else {
                uniforms.push(0.0);
            }
            sampling.push(choice.params.do_sample);
        }
        let sampling = upload(&Tensor::from_slice(&sampling), scores.device());
        sample(&scores, &uniforms).where_self(&sampling, &greedy)
    } else {
        greedy
    };
    Vec::<i64>::try_from(tokens.to_device(Device::Cpu)).expect("int64 tokens")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let draws = 20_000;
        let scores = Tensor::from_slice(&[0.0f32, (3.0f32).ln()])
            .view([1, 2])
            .repeat([draws, 1]);
        let mut rng = Rng::new(7);
        let uniforms: Vec<f32> = (0..draws).map(|_| rng.uniform() as f32).collect();
        let tokens = Vec::<i64>::try_from(sample(&scores, &uniforms)).unwrap();
        let freq = tokens.iter().filter(|&&t| t == 1).count() as f64 / draws as f64;
        assert!((freq - 0.75).abs() < 0.015, "frequency {freq}");
        let mut again = Rng::new(7);
        let repeated: Vec<f32> = (0..draws).map(|_| again.uniform() as f32).collect();
        assert_eq!(repeated, uniforms, "a seed gives the same draws");
        // Tokens of no probability are never drawn, whatever the sums.
        let banned = Tensor::from_slice(&[0.0f32, f32::NEG_INFINITY, 0.0]).view([1, 3]);
        assert_eq!(Vec::<i64>::try_from(sample(&banned, &[0.5])).unwrap(), vec![2]);
        // A uniform past the rounded sum takes the last possible token.
        let scores = Tensor::from_slice(&[0.0f32, 0.0, f32::NEG_INFINITY]).view([1, 3]);
        assert_eq!(Vec::<i64>::try_from(sample(&scores, &[1.0])).unwrap(), vec![1]);
        assert_eq!(Vec::<i64>::try_from(sample(&scores, &[0.25])).unwrap(), vec![0]);
    }

    #[test]
    fn rows_choose_greedily_or_draw_with_their_own_seed() {
        let greedy = GenerationParams {
            max_new_tokens: 4,
            ..GenerationParams::default()
        };
        let sampled = GenerationParams {
            do_sample: true,
            top_k: 0,
            seed: 42,
            ..greedy.clone()
        };
        let run = |seed: u64| {
            let scores = Tensor::from_slice(&[0.0f32, 1.0, 0.5, 0.2, 0.1, 0.9]).view([2, 3]);
            let (mut a, mut b) = (Rng::new(seed), Rng::new(seed));
            let history = [7i64];
            let row = Row {
                sequence: &history,
                prompt_len: 1,
            };
            let mut choices = [
                Choice {
                    row,
                    params: &greedy,
                    rng: &mut a,
                },
                Choice {
                    row,
                    params: &sampled,
                    rng: &mut b,
                },
            ];
            let tokens = choose(&scores, &mut choices);
            // The greedy row drew nothing.
            (tokens, a.uniform(), b.uniform())
        };
        let (tokens, untouched, drawn) = run(42);
        assert_eq!(tokens[0], 1);
        assert_eq!(untouched, Rng::new(42).uniform());
        assert_ne!(drawn, Rng::new(42).uniform());
        assert_eq!(run(42).0, tokens, "a seed gives the same draw");
    }
}
