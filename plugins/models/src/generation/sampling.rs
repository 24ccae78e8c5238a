//! Choosing the next token of a row: greedily (the first of the largest
//! scores, torch.argmax's choice) or by sampling from the warped scores
//! with a seedable RNG of the row's own, so that a seed gives the same
//! samples whatever other sequences share the batch.

use crate::core::math::{argmax, softmax};
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

/// Draws from softmax(scores).
pub fn sample(scores: &[f32], rng: &mut Rng) -> usize {
    let probs = softmax(scores);
    let u = rng.uniform() as f32;
    let mut cumulative = 0.0f32;
    let mut last_possible = 0;
    for (i, p) in probs.iter().enumerate() {
        if *p > 0.0 {
            last_possible = i;
            cumulative += p;
            if u < cumulative {
                return i;
            }
        }
    }
    last_possible
}

/// The next token of a row from its raw logits: processors, then the
/// greedy choice, or the warpers and a draw.
pub fn choose(scores: &mut [f32], row: Row, params: &GenerationParams, rng: &mut Rng) -> i64 {
    process(scores, row, params);
    if params.do_sample {
        warp(scores, params);
        sample(scores, rng) as i64
    } else {
        argmax(scores) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let scores = vec![0.0f32, (3.0f32).ln()];
        let mut rng = Rng::new(7);
        let draws = 20_000;
        let ones = (0..draws).filter(|_| sample(&scores, &mut rng) == 1).count();
        let freq = ones as f64 / draws as f64;
        assert!((freq - 0.75).abs() < 0.015, "frequency {freq}");
        let a: Vec<usize> = {
            let mut r = Rng::new(42);
            (0..20).map(|_| sample(&scores, &mut r)).collect()
        };
        let b: Vec<usize> = {
            let mut r = Rng::new(42);
            (0..20).map(|_| sample(&scores, &mut r)).collect()
        };
        assert_eq!(a, b);
    }
}
