//! What pipeline("image-segmentation") does with a query-based model's
//! output (Mask2Former): the image processor's
//! `post_process_{semantic,instance,panoptic}_segmentation`, each starting
//! from the mask logits resized to 384 x 384, and the pipeline's segments
//! (`{score, label, mask}`, a mask being where the segment map equals the
//! segment's id).
//!
//! Comparisons follow Python's: a tensor against a threshold compares in
//! f32 (the threshold rounded to f32), a Python float (`.item()`) against
//! one in f64; thresholds come as the decimal the client sent, so 0.9 is
//! 0.9 and not f32's 0.8999999762.

use std::collections::HashMap;

use tch::{Kind, Tensor};

use crate::vision::image::{encode_grey16_png, encode_grey_png};
use crate::vision::segmenter::{semantic_map, LabelMap, QUERY_MASK_SIDE};

/// Queries resized to the image at once by the panoptic post-processing
/// (held as maps of the image's size, whatever the number of queries).
const QUERIES_AT_ONCE: usize = 16;

/// One image's query outputs: class logits [Q, labels + 1] and mask logits
/// [Q, 384, 384], on the CPU (topk's order of equal-ranked results, which
/// instance segmentation keeps, is the CPU kernel's).
pub struct QueryMasks {
    pub classes: Tensor,
    pub masks: Tensor,
}

impl QueryMasks {
    /// One image's row of [`crate::vision::segmenter::SegmenterOutput::packed`]:
    /// [Q, labels + 1 + 384 * 384].
    pub fn from_packed(row: &Tensor, labels: i64) -> QueryMasks {
        let side = QUERY_MASK_SIDE;
        let row = row.to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let queries = row.size()[0];
        QueryMasks {
            classes: row.narrow(1, 0, labels + 1),
            masks: row.narrow(1, labels + 1, side * side).reshape([queries, side, side]),
        }
    }

    /// The labels, not counting "no object".
    fn labels(&self) -> i64 {
        self.classes.size()[1] - 1
    }
}

/// One segment of an instance or panoptic segmentation.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// Its value in the segment map (from 1; fused segments share one).
    pub id: u32,
    pub label: u32,
    /// The score rounded to 6 decimals, as transformers reports it.
    pub score: f64,
}

/// An instance or panoptic segmentation of one image: its segments in
/// pipeline()'s order and the segment map (each pixel's segment id, 0 where
/// none, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Segments {
    pub width: usize,
    pub height: usize,
    pub ids: Vec<u32>,
    pub segments: Vec<SegmentInfo>,
}

impl Segments {
    /// pipeline()'s mask of a segment: 255 where the map holds its id.
    pub fn mask(&self, id: u32) -> Vec<u8> {
        self.ids.iter().map(|&i| if i == id { 255 } else { 0 }).collect()
    }

    /// The segment map as a greyscale PNG: 8-bit when the ids fit.
    pub fn png(&self) -> Vec<u8> {
        if self.ids.iter().all(|&i| i <= u8::MAX as u32) {
            let levels: Vec<u8> = self.ids.iter().map(|&i| i as u8).collect();
            encode_grey_png(self.width, self.height, &levels)
        } else {
            let levels: Vec<u16> = self.ids.iter().map(|&i| i.min(u16::MAX as u32) as u16).collect();
            encode_grey16_png(self.width, self.height, &levels)
        }
    }
}

/// The thresholds of instance and panoptic segmentation, as the decimals
/// sent (pipeline()'s defaults: 0.9, 0.5, 0.5).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub threshold: f64,
    pub mask_threshold: f64,
    pub overlap_mask_area_threshold: f64,
}

/// The decimal an f32 was written as (its shortest round-trip form):
/// 0.9f32 gives 0.9, which Python compares with.
pub fn decimal(value: f32) -> f64 {
    value.to_string().parse().expect("a float's own digits")
}

/// Python's `round(score, 6)` of an f32 score.
fn round6(score: f32) -> f64 {
    let scaled = score as f64 * 1e6;
    scaled.round_ties_even() / 1e6
}

/// The mask logits' probabilities, as `post_process_*` compute them.
fn probabilities(masks: &Tensor) -> Tensor {
    masks.sigmoid()
}

/// `post_process_semantic_segmentation`: each query's class
/// probabilities (no object dropped) weighting its mask's, summed per
/// label at 384 x 384, then resized to the image and the best label taken.
pub fn semantic(q: &QueryMasks, width: usize, height: usize) -> LabelMap {
    let _guard = tch::no_grad_guard();
    let classes = q.classes.softmax(-1, Kind::Float).narrow(1, 0, q.labels());
    let probs = probabilities(&q.masks);
    let per_label = Tensor::einsum(
        "bqc,bqhw->bchw",
        &[classes.unsqueeze(0), probs.unsqueeze(0)],
        None::<i64>,
    );
    semantic_map(&per_label.get(0), width, height)
}

/// `post_process_instance_segmentation`: the `Q` best (query, label)
/// pairs by class probability, in topk's unsorted order; each one's mask
/// where its logit is positive, scored by its class probability times its
/// mask's mean probability there; resized to the image (nearest), and kept
/// when not empty and scoring at least `threshold`. Later segments
/// overwrite earlier ones where they overlap. Ids count from 1
/// (transformers': from 0, -1 for none).
pub fn instance(q: &QueryMasks, width: usize, height: usize, threshold: f64) -> Segments {
    let _guard = tch::no_grad_guard();
    let (queries, _) = q.classes.size2().expect("[queries, labels + 1] logits");
    let labels = q.labels();
    let scores = q.classes.softmax(-1, Kind::Float).narrow(1, 0, labels);
    let (top_scores, top) = scores.flatten(0, -1).topk(queries, 0, true, false);
    let label_of = top.remainder(labels);
    let query_of = top.divide_scalar_mode(labels, "floor");
    let logits = q.masks.index_select(0, &query_of);
    let binary = logits.gt(0.0).to_kind(Kind::Float);
    let area = binary.flatten(1, -1).sum_dim_intlist(1, false, Kind::Float);
    let mask_scores = (logits.sigmoid().flatten(1, -1) * binary.flatten(1, -1)).sum_dim_intlist(1, false, Kind::Float)
        / (area + 1e-6);
    let pred_scores = Vec::<f32>::try_from(top_scores * mask_scores).expect("f32 scores");
    let label_of = Vec::<i64>::try_from(label_of).expect("i64 labels");
    let mut ids = vec![0u32; width * height];
    let mut segments = Vec::new();
    for (j, &score) in pred_scores.iter().enumerate() {
        if (score as f64) < threshold {
            continue;
        }
        let resized = binary
            .get(j as i64)
            .view([1, 1, QUERY_MASK_SIDE, QUERY_MASK_SIDE])
            .upsample_nearest2d([height as i64, width as i64], None, None)
            .gt(0.5)
            .flatten(0, -1);
        let inside = Vec::<bool>::try_from(resized).expect("a boolean mask");
        if !inside.iter().any(|&b| b) {
            continue;
        }
        let id = segments.len() as u32 + 1;
        for (pixel, _) in inside.iter().enumerate().filter(|(_, &b)| b) {
            ids[pixel] = id;
        }
        segments.push(SegmentInfo {
            id,
            label: label_of[j] as u32,
            score: round6(score),
        });
    }
    Segments {
        width,
        height,
        ids,
        segments,
    }
}

/// `post_process_panoptic_segmentation`: the queries whose best class is a
/// label scoring above `threshold`; their mask probabilities resized to
/// the image (bilinear), weighted by their scores, and each pixel given to
/// the best (the first of equals); a query becomes a segment when it wins
/// pixels and they are more than `overlap_mask_area_threshold` of the
/// pixels where its weighted probability reaches `mask_threshold`. Labels
/// in `fuse` share one segment id (and, as transformers counts, the next
/// new segment's id follows the shared one). Ids count from 1.
pub fn panoptic(q: &QueryMasks, width: usize, height: usize, t: &Thresholds, fuse: &[u32]) -> Segments {
    let _guard = tch::no_grad_guard();
    let labels = q.labels();
    let (best, label) = q.classes.softmax(-1, Kind::Float).max_dim(-1, false);
    let keep = label.ne(labels).logical_and(&best.gt(t.threshold));
    let kept = Vec::<i64>::try_from(keep.nonzero().flatten(0, -1)).expect("i64 indices");
    let best = Vec::<f32>::try_from(best).expect("f32 scores");
    let label = Vec::<i64>::try_from(label).expect("i64 labels");
    let pixels = width * height;
    if kept.is_empty() {
        return Segments {
            width,
            height,
            ids: vec![0; pixels],
            segments: Vec::new(),
        };
    }
    // Each kept query's weighted probabilities, a chunk at a time: the
    // pixels where they reach mask_threshold, and the running best query.
    let mut reaching = Vec::with_capacity(kept.len());
    let mut winner: Option<(Tensor, Tensor)> = None;
    for (c, chunk) in kept.chunks(QUERIES_AT_ONCE).enumerate() {
        let index = Tensor::from_slice(chunk);
        let weights: Vec<f32> = chunk.iter().map(|&k| best[k as usize]).collect();
        let probs = probabilities(&q.masks.index_select(0, &index))
            .unsqueeze(0)
            .upsample_bilinear2d([height as i64, width as i64], false, None, None)
            .squeeze_dim(0)
            * Tensor::from_slice(&weights).view([-1, 1, 1]);
        let counts = probs
            .ge(t.mask_threshold)
            .sum_dim_intlist([1, 2].as_slice(), false, Kind::Int64);
        reaching.extend(Vec::<i64>::try_from(counts).expect("i64 counts"));
        let (value, at) = probs.max_dim(0, false);
        let at = at + (c * QUERIES_AT_ONCE) as i64;
        winner = Some(match winner {
            Some((best_value, best_at)) => {
                let better = value.gt_tensor(&best_value);
                (value.where_self(&better, &best_value), at.where_self(&better, &best_at))
            }
            None => (value, at),
        });
    }
    let (_, winner) = winner.expect("a kept query");
    let winner = Vec::<i64>::try_from(winner.flatten(0, -1)).expect("i64 indices");
    let mut won = vec![0i64; kept.len()];
    for &k in &winner {
        won[k as usize] += 1;
    }
    let mut id_of = vec![0u32; kept.len()];
    let mut segments = Vec::new();
    let mut fused: HashMap<u32, u32> = HashMap::new();
    let mut current = 0u32;
    for (k, &query) in kept.iter().enumerate() {
        let class = label[query as usize] as u32;
        let exists = won[k] > 0
            && reaching[k] > 0
            && ((won[k] as f32 / reaching[k] as f32) as f64) > t.overlap_mask_area_threshold;
        if !exists {
            continue;
        }
        current = match fused.get(&class) {
            Some(&id) => id,
            None => current + 1,
        };
        id_of[k] = current;
        segments.push(SegmentInfo {
            id: current,
            label: class,
            score: round6(best[query as usize]),
        });
        if fuse.contains(&class) {
            fused.insert(class, current);
        }
    }
    Segments {
        width,
        height,
        ids: winner.iter().map(|&k| id_of[k as usize]).collect(),
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two labels; query masks at 384 x 384 from `masks` (one value per
    /// query, the whole mask).
    fn queries(classes: &[[f32; 3]], masks: &[f32]) -> QueryMasks {
        let n = classes.len() as i64;
        let flat: Vec<f32> = classes.iter().flatten().copied().collect();
        let side = QUERY_MASK_SIDE;
        QueryMasks {
            classes: Tensor::from_slice(&flat).view([n, 3]),
            masks: Tensor::from_slice(masks)
                .view([n, 1, 1])
                .expand([n, side, side], false)
                .contiguous(),
        }
    }

    #[test]
    fn decimals_are_what_was_written() {
        assert_eq!(decimal(0.9), 0.9);
        assert_eq!(decimal(0.5), 0.5);
        assert_eq!(round6(0.123_456_78), 0.123457);
    }

    #[test]
    fn panoptic_keeps_confident_queries_and_fuses_the_asked_labels() {
        // Query 0: label 0, confident, mask everywhere; query 1: label 1,
        // confident, a stronger mask; query 2: no object.
        let q = queries(&[[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]], &[2.0, 3.0, 5.0]);
        let t = Thresholds {
            threshold: 0.9,
            mask_threshold: 0.5,
            overlap_mask_area_threshold: 0.5,
        };
        let seg = panoptic(&q, 4, 2, &t, &[]);
        // Query 1 wins every pixel; query 0 wins none and is dropped.
        assert_eq!(seg.segments.len(), 1);
        assert_eq!(seg.segments[0].label, 1);
        assert!(seg.ids.iter().all(|&i| i == 1));
        assert_eq!(seg.mask(1), vec![255; 8]);
        // Nothing confident: no segments, an empty map.
        let none = panoptic(
            &q,
            4,
            2,
            &Thresholds {
                threshold: 0.99999,
                ..t
            },
            &[],
        );
        assert!(none.segments.is_empty() && none.ids.iter().all(|&i| i == 0));
    }

    #[test]
    fn instance_segments_are_scored_by_class_and_mask() {
        // One query sure of label 0 with a positive mask; the other's mask
        // is negative everywhere (empty, never a segment).
        let q = queries(&[[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]], &[3.0, -3.0]);
        let seg = instance(&q, 3, 3, 0.5);
        assert_eq!(seg.segments.len(), 1);
        let s = &seg.segments[0];
        assert_eq!((s.id, s.label), (1, 0));
        // Class probability e^9 / (e^9 + 2) times sigmoid(3).
        let expected = 9f64.exp() / (9f64.exp() + 2.0) / (1.0 + (-3f64).exp());
        assert!((s.score - expected).abs() < 1e-5, "{} vs {expected}", s.score);
        assert!(seg.ids.iter().all(|&i| i == 1));
    }

    #[test]
    fn semantic_weights_masks_by_class() {
        let q = queries(&[[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]], &[-1.0, 1.0]);
        assert!(semantic(&q, 2, 2).labels.iter().all(|&l| l == 1));
    }
}
