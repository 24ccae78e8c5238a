//! SegFormer against transformers on the random fixture models
//! (tests/fixtures/segmentation_fixtures.py): SegformerImageProcessor's
//! pixel values (its own config and a legacy one with a one-number size;
//! shapes exact, values within 2e-2), the class logits within 1e-4
//! (relative where over 1) on the recorded pixel values, and
//! `post_process_semantic_segmentation` with pipeline()'s segments: the
//! same classes, masks equal but for pixels whose two best logits nearly
//! tie.

mod common;

use inferd_models::auto::load_image_segmenter;
use inferd_models::core::precision::Precision;
use inferd_models::vision::image::decode_rgb;
use inferd_models::vision::segmenter::{semantic_map, SegmenterOutput};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use common::{fixtures, named_f32 as file, reference, shape, worst};

fn references() -> Value {
    reference("segmentation.json")
}

#[test]
fn segformer_pixel_values_and_logits_equal_transformers() {
    let refs = references();
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let model = case["model"].as_str().unwrap();
        let what = format!("{model} {}", case["image"]);
        let segmenter =
            load_image_segmenter(&fixtures().join("models").join(model), Device::Cpu, Precision::Float32).unwrap();
        let image = decode_rgb(&std::fs::read(fixtures().join(case["image"].as_str().unwrap())).unwrap()).unwrap();
        let pixels = segmenter.processor.process(&image).unwrap();
        let want_shape = shape(&case["pixel_values"]["shape"]);
        assert_eq!(
            vec![1, 3, pixels.height as i64, pixels.width as i64],
            want_shape,
            "{what}"
        );
        let off = worst(&pixels.values, &file(&case["pixel_values"]));
        assert!(off <= 2e-2, "{what}: pixel values off by {off}");
        let input = Tensor::from_slice(&file(&case["pixel_values"])).view(want_shape.as_slice());
        let SegmenterOutput::Semantic(logits) = segmenter.forward(&input) else {
            panic!("{what}: SegFormer gives per-pixel logits");
        };
        assert_eq!(logits.size(), shape(&case["logits"]["shape"]), "{what}");
        let got = Vec::<f32>::try_from(logits.to_kind(Kind::Float).reshape([-1])).unwrap();
        let off = worst(&got, &file(&case["logits"]));
        assert!(off <= 1e-4, "{what}: logits off by {off}");
        compared += 1;
    }
    assert!(compared >= 14, "only {compared} cases");
}

#[test]
fn semantic_post_processing_gives_the_pipelines_segments() {
    let refs = references();
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let what = format!("{} {}", case["model"], case["image"]);
        let logits_shape = shape(&case["logits"]["shape"]);
        let logits = Tensor::from_slice(&file(&case["logits"])).view(&logits_shape[1..]);
        let size = shape(&case["image_size"]);
        let map = semantic_map(&logits, size[1] as usize, size[0] as usize);
        let segments = case["segments"].as_array().unwrap();
        let want_classes: Vec<u32> = segments
            .iter()
            .map(|s| s["label_id"].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(map.classes(), want_classes, "{what}");
        let near_ties = case["near_ties"]["count"].as_u64().unwrap() as usize;
        let mut differing = 0;
        for segment in segments {
            let mask = image::open(fixtures().join(segment["mask"].as_str().unwrap()))
                .unwrap()
                .into_luma8()
                .into_raw();
            let ours = map.mask(segment["label_id"].as_u64().unwrap() as u32);
            differing += ours.iter().zip(&mask).filter(|(a, b)| a != b).count();
        }
        // A pixel given the other of two nearly tied classes differs in
        // both masks.
        assert!(
            differing <= 2 * near_ties,
            "{what}: {differing} mask pixels differ, {near_ties} near ties"
        );
        compared += 1;
    }
    assert!(compared >= 14);
}
