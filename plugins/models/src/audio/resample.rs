//! Resampling exactly as `scipy.signal.resample_poly`, which is what the
//! speech references are made with: a polyphase Kaiser-windowed sinc filter
//! in f64.

/// `x` resampled from `from` Hz to `to` Hz exactly as scipy.signal.resample_poly(x.astype(float64), up, down)
/// with its default window ('kaiser', 5.0) does, where up/down = to/from reduced by their gcd; f64 arithmetic,
/// f32 out. Returns x unchanged when from == to.
///
/// # Panics
/// If a rate is 0.
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    assert!(from > 0 && to > 0, "cannot resample from {from} Hz to {to} Hz");
    let common = gcd(from, to);
    let (up, down) = ((to / common) as usize, (from / common) as usize);
    if up == down {
        return x.to_vec();
    }
    PolyphaseFilter::new(up, down).apply(x)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// resample_poly's filter, split into its `up` phases.
///
/// resample_poly zero-pads the filter in front so that, after upfirdn
/// (upsample by `up`, convolve, keep every `down`-th sample) and the removal
/// of its first samples, output `n` is the filter centred on upsampled
/// position `n * down`: y[n] = sum_i h[n * down + half_len - i * up] x[i]. Only
/// the taps with the index's residue modulo `up` meet non-zero samples.
struct PolyphaseFilter {
    up: usize,
    down: usize,
    half_len: usize,
    /// phases[r] = h[r], h[r + up], h[r + 2 up], ..., reversed, so that they
    /// line up with x in increasing order.
    phases: Vec<Vec<f64>>,
}

impl PolyphaseFilter {
    fn new(up: usize, down: usize) -> Self {
        let max_rate = up.max(down);
        let half_len = 10 * max_rate;
        let mut h = firwin_kaiser_lowpass(2 * half_len + 1, 1.0 / max_rate as f64, 5.0);
        for tap in &mut h {
            *tap *= up as f64;
        }
        let phases = (0..up)
            .map(|residue| h.iter().skip(residue).step_by(up).rev().copied().collect())
            .collect();
        PolyphaseFilter {
            up,
            down,
            half_len,
            phases,
        }
    }

    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let n_out = (x.len() * self.up).div_ceil(self.down);
        (0..n_out)
            .map(|n| {
                let position = n * self.down + self.half_len;
                let taps = &self.phases[position % self.up];
                // taps[j] multiplies x[first + j]; the last tap is h[residue], at x[position / up].
                let end = position / self.up + 1;
                let first = end as isize - taps.len() as isize;
                let lo = first.max(0) as usize;
                let hi = end.min(x.len());
                if lo >= hi {
                    return 0.0;
                }
                let taps = &taps[(lo as isize - first) as usize..(hi as isize - first) as usize];
                x[lo..hi].iter().zip(taps).map(|(a, b)| a * b).sum::<f64>() as f32
            })
            .collect()
    }
}

/// scipy.signal.firwin(numtaps, cutoff, window=('kaiser', beta)): a lowpass
/// windowed sinc (cutoff relative to Nyquist), scaled to a DC gain of 1.
fn firwin_kaiser_lowpass(numtaps: usize, cutoff: f64, beta: f64) -> Vec<f64> {
    let alpha = 0.5 * (numtaps - 1) as f64;
    let i0_beta = bessel_i0(beta);
    let mut h: Vec<f64> = (0..numtaps)
        .map(|i| {
            let m = i as f64 - alpha;
            let window = bessel_i0(beta * (1.0 - (m / alpha).powi(2)).sqrt()) / i0_beta;
            cutoff * sinc(cutoff * m) * window
        })
        .collect();
    let sum = numpy_sum(&h);
    for tap in &mut h {
        *tap /= sum;
    }
    h
}

/// numpy's pairwise summation (`np.sum` of a contiguous float64 array), so
/// that the filter's scale is rounded as scipy's is.
fn numpy_sum(x: &[f64]) -> f64 {
    if x.len() < 8 {
        x.iter().fold(-0.0, |sum, v| sum + v)
    } else if x.len() <= 128 {
        let mut r: [f64; 8] = x[..8].try_into().unwrap();
        let whole = x.len() - x.len() % 8;
        for block in x[8..whole].chunks_exact(8) {
            for (r, v) in r.iter_mut().zip(block) {
                *r += v;
            }
        }
        let sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        x[whole..].iter().fold(sum, |sum, v| sum + v)
    } else {
        let half = x.len() / 2;
        let half = half - half % 8;
        numpy_sum(&x[..half]) + numpy_sum(&x[half..])
    }
}

/// numpy's normalised sinc, sin(pi x) / (pi x).
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let y = std::f64::consts::PI * x;
    y.sin() / y
}

/// The modified Bessel function of the first kind, order 0, from its power
/// series sum_k ((x/2)^2)^k / (k!)^2 (quick to converge for the |x| <= 5 of
/// the Kaiser window here).
fn bessel_i0(x: f64) -> f64 {
    let quarter_x2 = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..1000 {
        term *= quarter_x2 / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inputs of the scipy cases: exact in float32, so numpy and Rust see the same numbers.
    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 + 11) % 23) as f32 / 16.0 - 0.75).collect()
    }

    #[test]
    fn resample_matches_scipy_resample_poly() {
        // scipy 1.17: resample_poly(ramp(n).astype(float64), up, down).astype(float32)
        #[rustfmt::skip]
        let cases: &[(usize, u32, u32, &[f32])] = &[
            (7, 22050, 16000, &[-0.25404432, -0.23378247, -0.02994227, 0.3611791, -0.2983251, -0.20177343]),
            (2, 22050, 16000, &[-0.19473979, -0.39900187]),
            (1, 8000, 16000, &[-0.06253234, -0.039587542]),
            (12, 8000, 16000, &[-0.06253234, -0.5325772, -0.6253234, -0.14217977, 0.25012937, 0.033084713,
                -0.3126617, -0.06312931, 0.56279105, 0.6696811, 8.091013e-18, -0.66424763, -0.56279105,
                0.04600103, 0.3126617, -0.0012534999, -0.25012937, 0.08794295, 0.6253234, 0.6335074, 0.06253234,
                -0.4619041, -0.50025874, -0.22113353]),
            (20, 48000, 16000, &[-0.19910434, 0.036725555, -0.05800199, 0.15607657, -0.15257952, -0.18930712,
                -0.11766861]),
            (30, 44100, 16000, &[-0.21867578, 0.031723578, -0.04069268, 0.08498708, 0.038161486, -0.30930352,
                -0.050758917, -0.18170545, -0.012611566, -0.09695506, 0.051757988]),
            (16, 16000, 22050, &[-0.06254219, -0.6556276, -0.19961333, 0.23882364, -0.27831239, 0.09742707,
                0.7281463, -0.13233614, -0.69926995, 0.0739801, 0.20147282, -0.25024983, 0.3246824, 0.69153017,
                -0.1553589, -0.5556617, 0.076774396, 0.40143296, -0.26284224, -0.8078157, -0.29383403, 0.19888254,
                0.012192054]),
        ];
        for &(n, from, to, want) in cases {
            let got = resample(&ramp(n), from, to);
            assert_eq!(got.len(), want.len(), "{n} samples {from} -> {to} Hz");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-7,
                    "{n} samples {from} -> {to} Hz, [{i}]: {g} != {w}"
                );
            }
        }
    }

    #[test]
    fn resampling_keeps_rate_and_length_rules() {
        let x = ramp(1000);
        assert_eq!(resample(&x, 16000, 16000), x);
        assert_eq!(resample(&x, 32000, 32000), x);
        // ceil(len * up / down)
        assert_eq!(resample(&x, 22050, 16000).len(), 726);
        assert_eq!(resample(&x, 44100, 16000).len(), 363);
        assert!(resample(&[], 22050, 16000).is_empty());
        // The filter has a DC gain of 1: a constant stays constant away from the edges.
        let constant = resample(&[0.5; 4000], 44100, 16000);
        assert!(constant[500..1000].iter().all(|v| (v - 0.5).abs() < 1e-4));
    }

    #[test]
    fn bessel_i0_and_filter_taps() {
        assert_eq!(bessel_i0(0.0), 1.0);
        assert!((bessel_i0(1.0) - 1.2660658777520082).abs() < 1e-15);
        assert!((bessel_i0(5.0) - 27.239871823604442).abs() < 1e-13);
        assert!((bessel_i0(2.5) - 3.289839144050123).abs() < 1e-15);
        // scipy.signal.firwin(numtaps, cutoff, window=('kaiser', 5.0))
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * b.abs().max(1e-3);
        let h = firwin_kaiser_lowpass(41, 0.5, 5.0);
        assert!((0..20).all(|i| h[i] == h[40 - i]));
        for (i, want) in [
            (1, -0.0010514587726751215),
            (17, -0.10093019739773386),
            (19, 0.31670034568030075),
        ] {
            assert!(close(h[i], want), "h[{i}] = {} != {want}", h[i]);
        }
        assert!(close(h[20], 0.5002587352980301) && h[0].abs() < 1e-17);
        let h = firwin_kaiser_lowpass(8821, 1.0 / 441.0, 5.0);
        for (i, want) in [
            (100, -2.3062338403891455e-06),
            (4409, 0.0022690851634198203),
            (4410, 0.0022691046162048095),
        ] {
            assert!(close(h[i], want), "h[{i}] = {} != {want}", h[i]);
        }
    }
}
