//! The image path against transformers' image processors: for every fixture
//! image and model, pixel_values from `ImageProcessor` are within 2e-2 (max
//! absolute difference, after normalisation) of what ViTImageProcessor /
//! ConvNextImageProcessor produced, as recorded by make_fixtures.py. (They
//! are in fact bit-exact: same resampling, same libjpeg-turbo decoding.)

use inferd_models::vision::image::{decode_rgb, ImageProcessor};

mod common;
use common::fixtures;

#[test]
fn pixel_values_match_transformers_processors() {
    let root = fixtures();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/pixel_values.json")).unwrap()).unwrap();
    let cases = refs["cases"].as_array().unwrap();
    assert!(cases.len() >= 10, "too few cases");
    let mut worst = 0f32;
    let mut failures = Vec::new();
    for case in cases {
        let model = case["model"].as_str().unwrap();
        let name = case["image"].as_str().unwrap();
        let processor = ImageProcessor::from_dir(&root.join("models").join(model)).unwrap();
        let image = decode_rgb(&std::fs::read(root.join("images").join(name)).unwrap()).unwrap();
        if image.height == 1 || image.height == 3 {
            // transformers guesses the channel axis from the array shape and
            // takes an image 1 or 3 pixels high for channels-first: its
            // pixel_values are then not the image's. Nothing to compare.
            continue;
        }
        let got = processor.pixel_values(&image).unwrap();
        let bytes = std::fs::read(root.join("references").join(case["file"].as_str().unwrap())).unwrap();
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got.len(), shape.iter().product::<usize>(), "{model} {name}: size");
        assert_eq!(got.len(), want.len());
        let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        worst = worst.max(max_diff);
        if max_diff > 2e-2 {
            failures.push(format!("{model} on {name}: max abs difference {max_diff}"));
        }
    }
    eprintln!("worst max abs difference over {} cases: {worst}", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Images PIL converts on the way to RGB (CMYK JPEG and TIFF, 32-bit
/// float and integer grey TIFF) decode to exactly the bytes of
/// transformers' `load_image(path)`.
#[test]
fn converted_modes_decode_as_pil() {
    let root = fixtures();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("references/pixel_values.json")).unwrap()).unwrap();
    let mut compared = Vec::new();
    for info in refs["images"].as_array().unwrap() {
        let Some(rgb_file) = info["rgb"]["file"].as_str() else {
            continue;
        };
        let name = info["file"].as_str().unwrap();
        let image = decode_rgb(&std::fs::read(root.join("images").join(name)).unwrap())
            .unwrap_or_else(|e| panic!("{name} ({}): {e}", info["mode"]));
        let want = std::fs::read(root.join("references").join(rgb_file)).unwrap();
        assert_eq!(
            (image.width as u64, image.height as u64),
            (
                info["rgb"]["width"].as_u64().unwrap(),
                info["rgb"]["height"].as_u64().unwrap()
            ),
            "{name}: size"
        );
        let differing = image.data.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert!(
            image.data.len() == want.len() && differing == 0,
            "{name} ({}): {differing} of {} bytes differ from PIL's",
            info["mode"],
            want.len()
        );
        compared.push(name.to_string());
    }
    assert!(compared.len() >= 4, "only {compared:?} compared");
}
