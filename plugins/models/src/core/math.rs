//! Small numerical helpers on score rows, written once: pipeline()'s numpy
//! softmax, torch.argmax's choice on ties, and the top-k indices that
//! torch.topk gives.

/// numpy's softmax as pipeline() writes it: exp(x - max) / sum, in f32.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The first index of the largest value (torch.argmax's and numpy's choice
/// on ties); 0 for an empty row.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// The indices of the `k` largest values, largest first (ties: lower index).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < order.len() {
        order.select_nth_unstable_by(k, cmp);
        order.truncate(k);
    }
    order.sort_by(cmp);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_argmax_takes_the_first_of_ties() {
        let s = softmax(&[1.0, 3.0, 3.0]);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(s[1], s[2]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn top_k_orders_by_value_then_index() {
        assert_eq!(top_k(&[0.5, 2.0, 2.0, -1.0, 3.0], 3), vec![4, 1, 2]);
        assert_eq!(top_k(&[1.0, 1.0], 5), vec![0, 1]);
    }
}
