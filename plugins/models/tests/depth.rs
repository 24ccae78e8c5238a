//! GLPN and DPT against transformers on the random fixture models
//! (tests/fixtures/depth_fixtures.py): the image processors' pixel values
//! (GLPN's sides rounded down to 32, DPT's legacy 384 config and its
//! aspect-keeping multiples of 32; shapes exact, values within 2e-2), the
//! models' predicted_depth within 1e-4 (relative where over 1) on the
//! recorded pixel values, one image and a batch, and the pipeline's
//! post-processing: the bicubic resize to the image and the 8-bit picture,
//! equal to pipeline()'s but where a value sits on a rounding boundary.

mod common;

use inferd_models::auto::load_depth_estimator;
use inferd_models::core::precision::Precision;
use inferd_models::vision::depth::resize_depth;
use inferd_models::vision::image::decode_rgb;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use common::{fixtures, named_f32 as file, reference, shape, worst};

fn references() -> Value {
    reference("depth.json")
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).reshape([-1])).unwrap()
}

#[test]
fn image_processors_give_transformers_pixel_values() {
    let refs = references();
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let model = case["model"].as_str().unwrap();
        let estimator =
            load_depth_estimator(&fixtures().join("models").join(model), Device::Cpu, Precision::Float32).unwrap();
        let image = decode_rgb(&std::fs::read(fixtures().join(case["image"].as_str().unwrap())).unwrap()).unwrap();
        let pixels = estimator.processor.process(&image).unwrap();
        let want = &case["pixel_values"];
        assert_eq!(
            vec![1, 3, pixels.height as i64, pixels.width as i64],
            shape(&want["shape"]),
            "{model} {}",
            case["image"]
        );
        let off = worst(&pixels.values, &file(want));
        assert!(off <= 2e-2, "{model} {}: pixel values off by {off}", case["image"]);
        compared += 1;
    }
    // Images transformers processes but its DPT cannot run (non-square
    // grids), and images too small for GLPN's multiples of 32.
    for error in refs["errors"].as_array().unwrap() {
        let model = error["model"].as_str().unwrap();
        let estimator =
            load_depth_estimator(&fixtures().join("models").join(model), Device::Cpu, Precision::Float32).unwrap();
        let image = decode_rgb(&std::fs::read(fixtures().join(error["image"].as_str().unwrap())).unwrap()).unwrap();
        let processed = estimator.processor.process(&image);
        let want = &error["preprocess"];
        match want.get("pixel_values_shape") {
            Some(want_shape) => {
                let pixels = processed.unwrap();
                assert_eq!(
                    vec![1, 3, pixels.height as i64, pixels.width as i64],
                    shape(want_shape),
                    "{model} {}",
                    error["image"]
                );
                let sum: f64 = pixels.values.iter().map(|&v| v as f64).sum();
                let want_sum = want["pixel_values_sum"].as_f64().unwrap();
                assert!(
                    (sum - want_sum).abs() < 1.0,
                    "{model} {}: sum {sum} vs {want_sum}",
                    error["image"]
                );
            }
            None => {
                let refused = processed.unwrap_err().to_string();
                assert!(refused.contains("multiples of 32"), "{refused}");
            }
        }
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} images compared");
}

#[test]
fn glpn_and_dpt_depth_equals_transformers_on_the_same_pixel_values() {
    let refs = references();
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let model = case["model"].as_str().unwrap();
        let estimator =
            load_depth_estimator(&fixtures().join("models").join(model), Device::Cpu, Precision::Float32).unwrap();
        let pixels =
            Tensor::from_slice(&file(&case["pixel_values"])).view(shape(&case["pixel_values"]["shape"]).as_slice());
        let depth = estimator.forward(&pixels);
        assert_eq!(depth.size(), shape(&case["raw"]["shape"]), "{model} {}", case["image"]);
        let off = worst(&values(&depth), &file(&case["raw"]));
        assert!(off <= 1e-4, "{model} {}: predicted_depth off by {off}", case["image"]);
        compared += 1;
    }
    assert!(compared >= 12, "only {compared} cases");
}

#[test]
fn a_batch_of_two_images_gives_each_ones_depth() {
    let refs = references();
    let batch = &refs["batch"];
    let model = batch["model"].as_str().unwrap();
    let estimator =
        load_depth_estimator(&fixtures().join("models").join(model), Device::Cpu, Precision::Float32).unwrap();
    let cases: Vec<&Value> = batch["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            refs["cases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["model"] == batch["model"] && c["image"] == *image)
                .expect("a one-image case of each batched image")
        })
        .collect();
    let pixels: Vec<Tensor> = cases
        .iter()
        .map(|c| Tensor::from_slice(&file(&c["pixel_values"])).view(shape(&c["pixel_values"]["shape"]).as_slice()))
        .collect();
    let depth = estimator.forward(&Tensor::cat(&pixels, 0));
    for (i, case) in cases.iter().enumerate() {
        let off = worst(&values(&depth.get(i as i64)), &file(&case["raw"]));
        assert!(off <= 1e-4, "{}: batched predicted_depth off by {off}", case["image"]);
    }
}

/// Reads an 8-bit grey PNG's levels.
fn grey_levels(path: &str) -> Vec<u8> {
    image::open(fixtures().join(path)).unwrap().to_luma8().into_raw()
}

#[test]
fn post_processing_resizes_and_draws_as_the_pipeline_does() {
    let refs = references();
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let name = format!("{} {}", case["model"], case["image"]);
        let raw_shape = shape(&case["raw"]["shape"]);
        let raw = Tensor::from_slice(&file(&case["raw"])).view([raw_shape[1], raw_shape[2]]);
        let size = shape(&case["image_size"]);
        let map = resize_depth(&raw, size[1] as usize, size[0] as usize);
        let want = file(&case["predicted_depth"]);
        let off = worst(&map.values, &want);
        assert!(off <= 1e-5, "{name}: predicted_depth off by {off}");
        // From pipeline()'s own values the picture is pipeline()'s.
        let from_reference = inferd_models::vision::depth::DepthMap {
            values: want,
            ..map.clone()
        };
        let picture = grey_levels(case["depth"]["file"].as_str().unwrap());
        assert_eq!(
            from_reference.levels8(),
            picture,
            "{name}: levels of pipeline()'s values"
        );
        // From ours, it differs by at most one level, on few pixels.
        let ours = map.levels8();
        let differing = ours.iter().zip(&picture).filter(|(a, b)| a != b).count();
        assert!(ours.iter().zip(&picture).all(|(a, b)| a.abs_diff(*b) <= 1), "{name}");
        assert!(differing * 1000 <= ours.len(), "{name}: {differing} pixels differ");
        compared += 1;
    }
    assert!(compared >= 12);
}
