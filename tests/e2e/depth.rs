//! Depth estimation (GLPN, DPT) against pipeline("depth-estimation") on the
//! fixture images (tests/fixtures/depth_fixtures.py): predicted_depth at
//! each image's size within 1e-4 (relative where over 1), the 8-bit
//! picture equal to pipeline()'s but for values on a rounding boundary (at
//! most one level, on at most 0.1% of the pixels), one image per request
//! and several together; bad requests refused clearly; `inferctl depth`.

use inferd_proto::v1::{
    ClassifyImageRequest, DepthMap, EstimateDepthRequest, ImageInput, LoadModelRequest, ModelOptions,
};
use inferd_tests::{fixture_model, fixtures_dir, reference, Daemon};
use serde_json::Value;
use tonic::Code;

use crate::hostile_configs::edited_file_copy;
use crate::vision::{bmp, image, png_header};

fn read_f32(file: &str) -> Vec<f32> {
    std::fs::read(fixtures_dir().join(file))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn grey8(png: &[u8]) -> image::GrayImage {
    image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .unwrap()
        .into_luma8()
}

fn estimate(model: &str, images: &[&str]) -> EstimateDepthRequest {
    EstimateDepthRequest {
        model: model.into(),
        inputs: images.iter().map(|name| ImageInput { data: image(name) }).collect(),
        png16: false,
    }
}

/// How far `got` is from a recorded case, and how many picture pixels
/// differ (each by one level at most).
fn compare(got: &DepthMap, case: &Value, what: &str) -> usize {
    let size = case["image_size"].as_array().unwrap();
    assert_eq!(
        (got.height as u64, got.width as u64),
        (size[0].as_u64().unwrap(), size[1].as_u64().unwrap()),
        "{what}: size"
    );
    let want = read_f32(case["predicted_depth"]["file"].as_str().unwrap());
    assert_eq!(got.predicted_depth.len(), want.len(), "{what}");
    let worst = got
        .predicted_depth
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{what}: predicted_depth off by {worst}");
    let ours = grey8(&got.depth);
    let theirs = image::open(fixtures_dir().join(case["depth"]["file"].as_str().unwrap()))
        .unwrap()
        .into_luma8();
    assert_eq!(ours.dimensions(), theirs.dimensions(), "{what}: picture size");
    let (ours, theirs) = (ours.into_raw(), theirs.into_raw());
    assert!(
        ours.iter().zip(&theirs).all(|(a, b)| a.abs_diff(*b) <= 1),
        "{what}: a level off by more than one"
    );
    let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    assert!(differing * 1000 <= ours.len(), "{what}: {differing} pixels differ");
    differing
}

/// Every recorded case through EstimateDepth, one image per request; then
/// each model's images in one request (DPT's run as one batch) and the
/// 16-bit picture beside the 8-bit one.
#[tokio::test]
async fn depth_estimation_matches_pipeline() {
    let refs: Value = reference("depth.json");
    let cases = refs["cases"].as_array().unwrap();
    let daemon = Daemon::start(&[]).await;
    for model in ["glpn-random", "dpt-random", "dpt-random-aspect"] {
        daemon.load(model, "depth-estimation", &fixture_model(model)).await;
    }
    let mut client = daemon.inference().await;
    let name = |case: &Value| {
        case["image"]
            .as_str()
            .unwrap()
            .trim_start_matches("images/")
            .to_string()
    };
    let (mut compared, mut differing) = (0, 0);
    for case in cases {
        let model = case["model"].as_str().unwrap();
        let what = format!("{model} on {}", name(case));
        let response = client
            .estimate_depth(estimate(model, &[&name(case)]))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_inner();
        assert_eq!(response.results.len(), 1);
        assert!(response.results[0].depth16.is_empty(), "no 16-bit picture unasked");
        differing += compare(&response.results[0], case, &what);
        compared += 1;
    }
    assert!(compared >= 13, "only {compared} cases");
    eprintln!("{compared} cases; {differing} picture pixels one level off in all");
    for model in ["glpn-random", "dpt-random"] {
        let mine: Vec<&Value> = cases.iter().filter(|c| c["model"] == model).collect();
        let names: Vec<String> = mine.iter().map(|c| name(c)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut request = estimate(model, &names);
        request.png16 = true;
        let response = client.estimate_depth(request).await.unwrap().into_inner();
        assert_eq!(response.results.len(), mine.len());
        for (got, case) in response.results.iter().zip(&mine) {
            let what = format!("{model} on {} among {}", name(case), names.len());
            compare(got, case, &what);
            let deep = image::load_from_memory_with_format(&got.depth16, image::ImageFormat::Png)
                .unwrap()
                .into_luma16();
            assert_eq!(deep.dimensions(), (got.width, got.height), "{what}: 16-bit size");
            let grey = grey8(&got.depth).into_raw();
            let deep = deep.into_raw();
            assert!(deep.contains(&65535) && deep.contains(&0), "{what}: the full range");
            // The same picture, finer: 16-bit levels / 257 round to the 8-bit
            // ones (or the next, where those were truncated).
            assert!(
                deep.iter()
                    .zip(&grey)
                    .all(|(&d, &g)| (d as f64 / 257.0 - g as f64).abs() <= 1.0),
                "{what}: 16-bit picture"
            );
        }
    }
}

/// DPT models that keep the aspect ratio give non-square patch grids,
/// which transformers' own DPT cannot run (it reshapes the tokens to a
/// square: recorded as errors); inferd runs them, and the map has the
/// image's size.
#[tokio::test]
async fn dpt_runs_grids_of_any_shape() {
    let refs: Value = reference("depth.json");
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("aspect", "depth-estimation", &fixture_model("dpt-random-aspect"))
        .await;
    let mut client = daemon.inference().await;
    let failed: Vec<&Value> = refs["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["model"] == "dpt-random-aspect")
        .collect();
    assert!(failed.len() >= 5, "transformers' failures are recorded");
    for error in failed {
        let file = error["image"].as_str().unwrap().trim_start_matches("images/");
        let response = client
            .estimate_depth(estimate("aspect", &[file]))
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .into_inner();
        let map = &response.results[0];
        // The image's size as loaded (EXIF-rotated), from the square model's case.
        let size = refs["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["model"] == "dpt-random" && c["image"] == error["image"])
            .expect("a case of the image")["image_size"]
            .clone();
        assert_eq!(
            (map.height as u64, map.width as u64),
            (size[0].as_u64().unwrap(), size[1].as_u64().unwrap()),
            "{file}"
        );
        assert_eq!(map.predicted_depth.len(), (map.width * map.height) as usize);
        assert!(map.predicted_depth.iter().all(|v| v.is_finite()), "{file}");
        let levels = grey8(&map.depth).into_raw();
        assert!(
            levels.contains(&0) && levels.contains(&255),
            "{file}: the picture spans the range"
        );
    }
}

/// EstimateDepth refuses what it cannot serve with the right status and
/// keeps serving.
#[tokio::test]
async fn depth_refuses_bad_requests_clearly() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("glpn", "depth-estimation", &fixture_model("glpn-random"))
        .await;
    daemon
        .load("vit", "image-classification", &fixture_model("vit-cls"))
        .await;
    let mut client = daemon.inference().await;
    let photo = image("photo_q90.jpg");
    let with = |model: &str, data: Vec<Vec<u8>>| EstimateDepthRequest {
        model: model.into(),
        inputs: data.into_iter().map(|data| ImageInput { data }).collect(),
        png16: false,
    };
    let cases: Vec<(&str, EstimateDepthRequest, Code, &str)> = vec![
        (
            "not an image",
            with("glpn", vec![b"certainly not an image".to_vec()]),
            Code::InvalidArgument,
            "not an image",
        ),
        (
            "an empty file",
            with("glpn", vec![vec![]]),
            Code::InvalidArgument,
            "empty",
        ),
        (
            "a truncated file",
            with("glpn", vec![photo[..photo.len() / 2].to_vec()]),
            Code::InvalidArgument,
            "decode",
        ),
        (
            "a huge header",
            with("glpn", vec![png_header(100_000, 100_000)]),
            Code::InvalidArgument,
            "pixels",
        ),
        (
            "an image smaller than GLPN's 32-pixel multiples",
            with("glpn", vec![photo.clone(), image("tiny_3x5.png")]),
            Code::InvalidArgument,
            "inputs[1]: the image is 3x5",
        ),
        (
            "no inputs",
            with("glpn", vec![]),
            Code::InvalidArgument,
            "`inputs` is empty",
        ),
        (
            "depth asked of a classifier",
            with("vit", vec![photo.clone()]),
            Code::FailedPrecondition,
            "serves task image-classification",
        ),
    ];
    for (what, request, code, says) in cases {
        let status = client.estimate_depth(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(says),
            "{what}: {:?} should say {says:?}",
            status.message()
        );
    }
    let classify_depth = ClassifyImageRequest {
        model: "glpn".into(),
        inputs: vec![ImageInput { data: photo.clone() }],
        ..Default::default()
    };
    let status = client.classify_image(classify_depth).await.expect_err("wrong task");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("serves task depth-estimation"), "{status:?}");
    // A 32x32 image is the smallest GLPN takes; then a photo.
    let small = client
        .estimate_depth(with("glpn", vec![bmp(32, 32, [90, 140, 200])]))
        .await
        .expect("a 32x32 image")
        .into_inner();
    assert_eq!((small.results[0].width, small.results[0].height), (32, 32));
    client
        .estimate_depth(with("glpn", vec![photo]))
        .await
        .expect("a photo after bad requests");
}

/// `inferctl depth`: the range printed (--json), pipeline()'s picture with
/// --out, a coloured one with --colormap, 16 bits with --png16, the values
/// as .npy with --npy.
#[tokio::test]
async fn inferctl_writes_depth_pictures_and_values() {
    let refs: Value = reference("depth.json");
    let case = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "glpn-random" && c["image"] == "images/coffee.png")
        .expect("the coffee case")
        .clone();
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("glpn", "depth-estimation", &fixture_model("glpn-random"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let photo = fixtures_dir().join("images/coffee.png");
    let photo = photo.to_str().unwrap();
    let printed = daemon.inferctl(&[
        "--json",
        "depth",
        photo,
        "--model",
        "glpn",
        "--out",
        &at("grey.png"),
        "--npy",
        &at("depth.npy"),
    ]);
    let printed: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        (printed[0]["width"].as_u64(), printed[0]["height"].as_u64()),
        (Some(600), Some(400))
    );
    let (min, max) = (printed[0]["min"].as_f64().unwrap(), printed[0]["max"].as_f64().unwrap());
    let want = &case["predicted_depth"];
    assert!((min - want["min"].as_f64().unwrap()).abs() < 1e-3, "{printed}");
    assert!((max - want["max"].as_f64().unwrap()).abs() < 1e-2, "{printed}");
    let grey = image::open(at("grey.png")).unwrap();
    assert_eq!(grey.color(), image::ColorType::L8);
    assert_eq!((grey.width(), grey.height()), (600, 400));
    // The .npy: NumPy's header, then the float32 values of the map.
    let npy = std::fs::read(at("depth.npy")).unwrap();
    assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = std::str::from_utf8(&npy[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'shape': (400, 600)") && header.contains("'<f4'"),
        "{header}"
    );
    assert_eq!((10 + header_len) % 64, 0, "aligned as NumPy writes it");
    let values = &npy[10 + header_len..];
    assert_eq!(values.len(), 400 * 600 * 4);
    let first = f32::from_le_bytes(values[..4].try_into().unwrap());
    assert!((first - read_f32(want["file"].as_str().unwrap())[0]).abs() < 1e-3);
    daemon.inferctl(&[
        "depth",
        photo,
        "--model",
        "glpn",
        "--out",
        &at("magma.png"),
        "--colormap",
    ]);
    let coloured = image::open(at("magma.png")).unwrap();
    assert_eq!(coloured.color(), image::ColorType::Rgb8);
    assert_eq!((coloured.width(), coloured.height()), (600, 400));
    daemon.inferctl(&["depth", photo, "--model", "glpn", "--out", &at("deep.png"), "--png16"]);
    assert_eq!(image::open(at("deep.png")).unwrap().color(), image::ColorType::L16);
}

/// Processor configs that load but give sizes the network cannot take,
/// and images over the processed-pixel limit, are refused per request
/// (not a failed batch): GLPN's sides must be multiples of 32, DPT's at
/// least a patch.
#[tokio::test]
async fn sizes_the_network_cannot_take_are_refused_per_request() {
    let daemon = Daemon::start(&[]).await;
    let glpn8 = edited_file_copy("glpn-random", "preprocessor_config.json", "size_divisor", 8.into());
    daemon
        .load("glpn8", "depth-estimation", glpn8.path().to_str().unwrap())
        .await;
    let unresized = edited_file_copy("dpt-random", "preprocessor_config.json", "do_resize", false.into());
    daemon
        .load("dpt-unresized", "depth-estimation", unresized.path().to_str().unwrap())
        .await;
    let limited = LoadModelRequest {
        name: "glpn-small".into(),
        task: "depth-estimation".into(),
        source: fixture_model("glpn-random"),
        options: Some(ModelOptions {
            limits: [("max_depth_pixels".to_string(), 10_000)].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    daemon.models().await.load_model(limited).await.unwrap();
    let mut client = daemon.inference().await;
    let cases = [
        ("glpn8", "rgba_80x72.png", Code::InvalidArgument, "multiples of 32"),
        (
            "dpt-unresized",
            "tiny_5x3.png",
            Code::InvalidArgument,
            "smaller than this DPT model's 16x16 patches",
        ),
        ("glpn-small", "coffee.png", Code::ResourceExhausted, "max_depth_pixels"),
    ];
    for (model, file, code, says) in cases {
        let status = client.estimate_depth(estimate(model, &[file])).await.expect_err(model);
        assert_eq!(status.code(), code, "{model}: {status:?}");
        assert!(status.message().contains(says), "{model}: {:?}", status.message());
    }
    // Sizes they can take are answered: 64x64 for GLPN at divisor 8, an
    // unresized 80x72 image for DPT, 96x64 under 10,000 pixels.
    for (model, data) in [
        ("glpn8", bmp(64, 64, [10, 200, 90])),
        ("dpt-unresized", image("rgba_80x72.png")),
        ("glpn-small", bmp(96, 64, [10, 200, 90])),
    ] {
        let request = EstimateDepthRequest {
            model: model.into(),
            inputs: vec![ImageInput { data }],
            png16: false,
        };
        client
            .estimate_depth(request)
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
    }
}
