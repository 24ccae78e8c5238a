//! What pipeline("image-segmentation") does with a query-based model's
//! output (Mask2Former, panoptic DETR): the image processor's
//! `post_process_{semantic,instance,panoptic}_segmentation` (Mask2Former's
//! starting from the mask logits resized to 384 x 384), and the pipeline's
//! segments (`{score, label, mask}`, a mask being where the segment map
//! equals the segment's id).
//!
//! Comparisons follow Python's: a tensor against a threshold compares in
//! f32 (the threshold rounded to f32), a Python float (`.item()`) against
//! one in f64; thresholds come as the decimal the client sent, so 0.9 is
//! 0.9 and not f32's 0.8999999762.

use std::collections::{HashMap, HashSet};

use tch::{Kind, Tensor};

use crate::vision::segmenter::{id_png, maps_at_once, semantic_map, LabelMap, QueryStyle, RunningArgmax};

/// One image's query outputs: class logits [Q, labels + 1] and mask logits
/// [Q, h, w] (Mask2Former's 384 x 384), on the CPU (topk's order of
/// equal-ranked results, which Mask2Former's instance segmentation keeps,
/// is the CPU kernel's).
pub struct QueryMasks {
    pub classes: Tensor,
    pub masks: Tensor,
}

impl QueryMasks {
    /// One image's row of [`crate::vision::segmenter::SegmenterOutput::packed`]:
    /// [Q, 2 + labels + 1 + h * w].
    pub fn from_packed(row: &Tensor, labels: i64) -> QueryMasks {
        let row = row.to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let queries = row.size()[0];
        let (h, w) = (row.double_value(&[0, 0]) as i64, row.double_value(&[0, 1]) as i64);
        QueryMasks {
            classes: row.narrow(1, 2, labels + 1),
            masks: row.narrow(1, 3 + labels, h * w).reshape([queries, h, w]),
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
        id_png(self.width, self.height, &self.ids)
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

/// `post_process_semantic_segmentation`: each query's class
/// probabilities (no object dropped) weighting its mask's, summed per
/// label at 384 x 384, then resized to the image and the best label taken.
pub fn semantic(q: &QueryMasks, width: usize, height: usize) -> LabelMap {
    let _guard = tch::no_grad_guard();
    let classes = q.classes.softmax(-1, Kind::Float).narrow(1, 0, q.labels());
    let probs = q.masks.sigmoid();
    let per_label = Tensor::einsum(
        "bqc,bqhw->bchw",
        &[classes.unsqueeze(0), probs.unsqueeze(0)],
        None::<i64>,
    );
    semantic_map(&per_label.get(0), width, height)
}

/// `post_process_instance_segmentation` as `style`'s processor does it:
/// Mask2Former's ([`best_pairs`]), or DETR's, panoptic's segments
/// unfused.
pub fn instance(q: &QueryMasks, width: usize, height: usize, t: &Thresholds, style: QueryStyle) -> Segments {
    match style {
        QueryStyle::Mask2Former => best_pairs(q, width, height, t.threshold),
        QueryStyle::Detr => panoptic(q, width, height, t, &[]),
    }
}

/// Mask2Former's `post_process_instance_segmentation`: the `Q` best (query, label)
/// pairs by class probability, in topk's unsorted order; each one's mask
/// where its logit is positive, scored by its class probability times its
/// mask's mean probability there; resized to the image (nearest), and kept
/// when not empty and scoring at least `threshold`. Later segments
/// overwrite earlier ones where they overlap. Ids count from 1
/// (transformers': from 0, -1 for none).
///
/// Nearest resizing takes each of the image's pixels from one pixel of the
/// mask, so the segments are laid out at the mask's size and the image's
/// pixels read from there: one pass over the image, whatever the number of
/// segments.
fn best_pairs(q: &QueryMasks, width: usize, height: usize, threshold: f64) -> Segments {
    let _guard = tch::no_grad_guard();
    let (queries, _) = q.classes.size2().expect("[queries, labels + 1] logits");
    let (_, mh, mw) = q.masks.size3().expect("[queries, h, w] masks");
    let labels = q.labels();
    let scores = q.classes.softmax(-1, Kind::Float).narrow(1, 0, labels);
    let (top_scores, top) = scores.flatten(0, -1).topk(queries, 0, true, false);
    let label_of = top.remainder(labels);
    let query_of = top.divide_scalar_mode(labels, "floor");
    let logits = q.masks.index_select(0, &query_of);
    let positive = logits.gt(0.0);
    let binary = positive.to_kind(Kind::Float);
    let area = binary.flatten(1, -1).sum_dim_intlist(1, false, Kind::Float);
    let mask_scores = (logits.sigmoid().flatten(1, -1) * binary.flatten(1, -1)).sum_dim_intlist(1, false, Kind::Float)
        / (area + 1e-6);
    let pred_scores = Vec::<f32>::try_from(top_scores * mask_scores).expect("f32 scores");
    let label_of = Vec::<i64>::try_from(label_of).expect("i64 labels");
    let inside = Vec::<bool>::try_from(positive.flatten(0, -1)).expect("boolean masks");
    // The mask row and column each image row and column is read from, by
    // LibTorch's own nearest resizing of their indices.
    let source = |out: usize, side: i64| -> Vec<usize> {
        let index = Tensor::arange(side, (Kind::Float, tch::Device::Cpu)).view([1, 1, side, 1]);
        let picked = index.upsample_nearest2d([out as i64, 1], None, None).flatten(0, -1);
        Vec::<f32>::try_from(picked)
            .expect("f32 indices")
            .into_iter()
            .map(|i| i as usize)
            .collect()
    };
    let (rows, cols) = (source(height, mh), source(width, mw));
    let used = |picked: &[usize], side: i64| {
        let mut used = vec![false; side as usize];
        picked.iter().for_each(|&i| used[i] = true);
        (0..side as usize).filter(|&i| used[i]).collect::<Vec<usize>>()
    };
    let (used_rows, used_cols) = (used(&rows, mh), used(&cols, mw));
    let side = (mh * mw) as usize;
    let mut laid_out = vec![0u32; side];
    let mut segments = Vec::new();
    for (j, &score) in pred_scores.iter().enumerate() {
        let mask = &inside[j * side..(j + 1) * side];
        let seen = used_rows
            .iter()
            .any(|&r| used_cols.iter().any(|&c| mask[r * mw as usize + c]));
        if (score as f64) < threshold || !seen {
            continue;
        }
        let id = segments.len() as u32 + 1;
        for (at, _) in mask.iter().enumerate().filter(|(_, &b)| b) {
            laid_out[at] = id;
        }
        segments.push(SegmentInfo {
            id,
            label: label_of[j] as u32,
            score: round6(score),
        });
    }
    let ids = rows
        .iter()
        .flat_map(|&r| cols.iter().map(move |&c| (r, c)))
        .map(|(r, c)| laid_out[r * mw as usize + c])
        .collect();
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
    let fuse: HashSet<u32> = fuse.iter().copied().collect();
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
    let mut best_query = RunningArgmax::default();
    let chunk = maps_at_once(pixels);
    for (c, queries) in kept.chunks(chunk).enumerate() {
        let index = Tensor::from_slice(queries);
        let weights: Vec<f32> = queries.iter().map(|&k| best[k as usize]).collect();
        let mut probs = q
            .masks
            .index_select(0, &index)
            .sigmoid()
            .unsqueeze(0)
            .upsample_bilinear2d([height as i64, width as i64], false, None, None)
            .squeeze_dim(0);
        let _ = probs.g_mul_(&Tensor::from_slice(&weights).view([-1, 1, 1]));
        let counts = probs
            .ge(t.mask_threshold)
            .sum_dim_intlist([1, 2].as_slice(), false, Kind::Int64);
        reaching.extend(Vec::<i64>::try_from(counts).expect("i64 counts"));
        best_query.add(&probs, (c * chunk) as i64);
    }
    let winner = best_query.finish();
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
    use crate::vision::segmenter::QUERY_MASK_SIDE;

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
        let t = Thresholds {
            threshold: 0.5,
            mask_threshold: 0.5,
            overlap_mask_area_threshold: 0.8,
        };
        let seg = instance(&q, 3, 3, &t, QueryStyle::Mask2Former);
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
