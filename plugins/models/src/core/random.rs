//! PyTorch's CPU random stream, for models whose inference draws random
//! numbers (SpeechT5's always-on prenet dropout): `torch.manual_seed(s)`
//! followed by `torch.bernoulli(t, p)` gives the same draws here, without
//! touching LibTorch's process-wide generator, so concurrent requests each
//! keep their own stream.
//!
//! LibTorch's CPU generator is a 32-bit Mersenne Twister (MT19937) seeded
//! with the low 32 bits of the seed (`at::mt19937`'s `init_with_uint32`).
//! Its Bernoulli kernel on CPU (`bernoulli_(double p)`, the serial default
//! kernel) fills a tensor in row-major order and draws, per element, a
//! 53-bit uniform double from two 32-bit outputs, the first one the high
//! word: `u = (((r1 << 32) | r2) & (2^53 - 1)) * 2^-53`, giving 1 when
//! `u < p`.

/// The state size of MT19937, in 32-bit words.
const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// `torch.Generator` on CPU: an MT19937 stream.
#[derive(Clone)]
pub struct TorchGenerator {
    state: Box<[u32; N]>,
    next: usize,
}

impl TorchGenerator {
    /// The stream after `torch.manual_seed(seed)`.
    pub fn manual_seed(seed: u64) -> Self {
        let mut state = Box::new([0u32; N]);
        state[0] = seed as u32;
        for j in 1..N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        TorchGenerator { state, next: N }
    }

    fn twist(&mut self) {
        let s = &mut self.state;
        for i in 0..N {
            let y = (s[i] & UPPER_MASK) | (s[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            s[i] = s[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    /// The next 32-bit output (`generator->random()`).
    pub fn next_u32(&mut self) -> u32 {
        if self.next >= N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// The next uniform double in [0, 1) as `at::uniform_real_distribution<double>`
    /// draws it (53 bits of `random64()`).
    fn next_unit(&mut self) -> f64 {
        let high = u64::from(self.next_u32());
        let low = u64::from(self.next_u32());
        let bits = ((high << 32) | low) & ((1u64 << 53) - 1);
        bits as f64 * (1.0f64 / (1u64 << 53) as f64)
    }

    /// One Bernoulli(p) draw: true with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_unit() < p
    }

    /// Skips `count` Bernoulli draws (the elements of a tensor whose values
    /// are never used).
    pub fn skip_bernoulli(&mut self, count: usize) {
        let mut words = 2 * count;
        while words > 0 {
            if self.next >= N {
                self.twist();
            }
            let take = words.min(N - self.next);
            self.next += take;
            words -= take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_outputs() {
        // The C++ standard's check: the 10000th output of std::mt19937 seeded
        // with 5489 is 4123659995.
        let mut g = TorchGenerator::manual_seed(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = g.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn skipping_equals_drawing() {
        let mut a = TorchGenerator::manual_seed(7);
        let mut b = a.clone();
        for _ in 0..1000 {
            a.bernoulli(0.5);
        }
        b.skip_bernoulli(1000);
        assert_eq!(a.next_u32(), b.next_u32());
    }

    #[test]
    fn seeds_keep_their_low_32_bits() {
        let mut a = TorchGenerator::manual_seed(42);
        let mut b = TorchGenerator::manual_seed((1 << 40) + 42);
        assert_eq!(a.next_u32(), b.next_u32());
    }
}
