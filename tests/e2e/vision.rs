//! Image classification (ViT, ConvNeXT) against pipeline("image-classification")
//! on the fixture images; bad images refused clearly.

use inferd_proto::v1::{ClassifyImageRequest, ClassifyRequest, DetectObjectsRequest, ImageInput, TextInput};
use inferd_tests::{assert_close_with, fixture_model, fixtures_dir, reference, Daemon};
use serde_json::Value;
use tonic::Code;

pub(crate) fn image(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join("images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn image_classification_matches_pipeline() {
    let refs: Value = reference("image_classification.json");
    let cases = refs["cases"].as_array().unwrap();
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("vit-cls", "image-classification", &fixture_model("vit-cls"))
        .await;
    daemon
        .load("convnext-cls", "image-classification", &fixture_model("convnext-cls"))
        .await;
    let mut client = daemon.inference().await;
    let mut compared = 0;
    for (n, case) in cases.iter().enumerate() {
        if case.get("quirk").is_some() {
            // transformers took a 3-pixel-high image for channels-first.
            continue;
        }
        compared += 1;
        let p = &case["params"];
        let request = ClassifyImageRequest {
            model: case["model"].as_str().unwrap().into(),
            inputs: vec![ImageInput {
                data: image(case["image"].as_str().unwrap()),
            }],
            top_k: p.get("top_k").and_then(Value::as_u64).map(|k| k as u32),
            function_to_apply: p
                .get("function_to_apply")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
        };
        let what = format!("case {n} ({} on {})", case["model"], case["image"]);
        let response = client
            .classify_image(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_inner();
        let got = &response.results[0].labels;
        let want = case["expected"].as_array().unwrap();
        let got_labels: Vec<&str> = got.iter().map(|l| l.label.as_str()).collect();
        let want_labels: Vec<&str> = want.iter().map(|l| l["label"].as_str().unwrap()).collect();
        assert_eq!(got_labels, want_labels, "{what}: labels");
        let tolerance = 1e-3;
        for (g, w) in got.iter().zip(want) {
            assert_close_with(g.score, w["score"].as_f64().unwrap(), tolerance, &what);
        }
    }
    assert!(compared >= 50, "only {compared} cases compared");
    // Images PIL converts on the way to RGB are among them.
    for name in [
        "cmyk_40x30.jpg",
        "cmyk_40x30.tif",
        "float32_36x28.tif",
        "int32_36x28.tif",
    ] {
        assert!(cases.iter().any(|c| c["image"] == name), "no case for {name}");
    }
}

/// A PNG whose header claims `width` x `height` (no image data).
pub(crate) fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, body) in [
        (&b"IHDR"[..], &ihdr[4..]),
        (&b"IDAT"[..], &[][..]),
        (&b"IEND"[..], &[][..]),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend(body);
        png.extend((body.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

#[tokio::test]
async fn bad_images_are_refused_clearly() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("vit", "image-classification", &fixture_model("vit-cls"))
        .await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut client = daemon.inference().await;
    let classify = |data: Vec<u8>| ClassifyImageRequest {
        model: "vit".into(),
        inputs: vec![ImageInput { data }],
        ..Default::default()
    };
    let expect = |result: Result<tonic::Response<inferd_proto::v1::ClassifyImageResponse>, tonic::Status>,
                  needle: &str| {
        let status = result.expect_err("should fail");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(needle),
            "{:?} should mention {needle:?}",
            status.message()
        );
    };
    expect(
        client
            .classify_image(classify(b"certainly not an image".to_vec()))
            .await,
        "not an image",
    );
    expect(client.classify_image(classify(vec![])).await, "empty");
    // An unknown function_to_apply is refused before any image is decoded.
    expect(
        client
            .classify_image(ClassifyImageRequest {
                function_to_apply: "bogus".into(),
                ..classify(b"certainly not an image".to_vec())
            })
            .await,
        "function_to_apply `bogus`",
    );
    let jpeg = std::fs::read_dir(fixtures_dir().join("images"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "jpg" || e == "jpeg"))
        .expect("a JPEG fixture");
    let whole = std::fs::read(&jpeg).unwrap();
    expect(
        client.classify_image(classify(whole[..whole.len() / 2].to_vec())).await,
        "decode",
    );
    expect(
        client.classify_image(classify(png_header(100_000, 100_000))).await,
        "pixels",
    );
    expect(client.classify_image(classify(png_header(0, 0))).await, "image");
    let none = ClassifyImageRequest {
        model: "vit".into(),
        ..Default::default()
    };
    expect(client.classify_image(none).await, "inputs");
    // An image RPC on a text model, and a text RPC on an image model.
    let on_text = ClassifyImageRequest {
        model: "bert".into(),
        inputs: vec![ImageInput { data: whole.clone() }],
        ..Default::default()
    };
    let status = client.classify_image(on_text).await.expect_err("wrong task");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let text_on_image = ClassifyRequest {
        model: "vit".into(),
        inputs: vec![TextInput {
            text: "hello".into(),
            text_pair: None,
        }],
        ..Default::default()
    };
    let status = client.classify(text_on_image).await.expect_err("wrong task");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // Still serving.
    client
        .classify_image(classify(whole))
        .await
        .expect("a good image after bad ones");
}

/// An image 3 pixels high, which transformers takes for channels-first
/// (infer_channel_dimension_format) and so processes as another picture;
/// the daemon reads it as the image it is.
const THREE_HIGH: &str = "images/tiny_5x3.png";

/// A case's image files: one path, or a list.
fn case_images(input: &Value) -> Vec<String> {
    match input {
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap().to_string()).collect(),
        one => vec![one.as_str().unwrap().to_string()],
    }
}

/// Object detection on DETR (transformers' ResNet backbone, timm's, and
/// timm's dilated DC5) against pipeline("object-detection"): the same
/// objects in the same order, labels and boxes equal, scores within 1e-4,
/// at thresholds 0.5, 0.9 and 0, one image and several per request.
#[tokio::test]
async fn object_detection_matches_pipeline() {
    let refs: Value = reference("detr.json");
    let daemon = Daemon::start(&[]).await;
    for model in ["detr-random", "detr-random-timm", "detr-random-dc5"] {
        daemon.load(model, "object-detection", &fixture_model(model)).await;
    }
    let mut client = daemon.inference().await;
    let (mut compared, mut near_whole) = (0, 0);
    for (n, case) in refs["cases"].as_array().unwrap().iter().enumerate() {
        // pipeline() with batch_size > 1 fails on images of different
        // sizes (recorded as an error); the daemon answers each image.
        let Some(expected) = case.get("expected") else {
            continue;
        };
        let files = case_images(&case["input"]);
        if files.iter().any(|f| f == THREE_HIGH) {
            continue;
        }
        let request = DetectObjectsRequest {
            model: case["model"].as_str().unwrap().into(),
            inputs: files
                .iter()
                .map(|f| ImageInput {
                    data: std::fs::read(fixtures_dir().join(f)).unwrap(),
                })
                .collect(),
            threshold: case["params"]["threshold"].as_f64().map(|t| t as f32),
        };
        let what = format!("case {n} ({} on {files:?}, {})", case["model"], case["params"]);
        let response = client
            .detect_objects(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_inner();
        let expected: Vec<&Value> = match &case["input"] {
            Value::Array(_) => expected.as_array().unwrap().iter().collect(),
            _ => vec![expected],
        };
        assert_eq!(response.results.len(), expected.len(), "{what}");
        // The boxes before truncation: one within float noise of a whole
        // pixel (0.01 px, ~2e-5 of a 512 px side: what thread counts and
        // CPUs move it by) may truncate to its neighbour.
        let floats: Vec<Value> = match (&case["input"], &case["boxes_float"]) {
            (Value::Array(_), Value::Array(per_image)) => per_image.clone(),
            (_, one) => vec![one.clone()],
        };
        for ((got, want), floats) in response.results.iter().zip(expected).zip(floats) {
            let want = want.as_array().unwrap();
            let labels = |objects: Vec<String>| objects.join(", ");
            assert_eq!(
                labels(got.objects.iter().map(|o| o.label.clone()).collect()),
                labels(want.iter().map(|o| o["label"].as_str().unwrap().to_string()).collect()),
                "{what}: labels"
            );
            for (k, (g, w)) in got.objects.iter().zip(want).enumerate() {
                let b = g.r#box.unwrap();
                let wb = &w["box"];
                let corners = [b.xmin, b.ymin, b.xmax, b.ymax];
                let want_corners = ["xmin", "ymin", "xmax", "ymax"].map(|k| wb[k].as_i64().unwrap() as i32);
                for c in 0..4 {
                    if corners[c] == want_corners[c] {
                        continue;
                    }
                    let float = floats[k][c].as_f64().unwrap();
                    let on_edge = (float - float.round()).abs() < 1e-2 && (corners[c] - want_corners[c]).abs() == 1;
                    assert!(
                        on_edge,
                        "{what}: box of {} is {corners:?}, pipeline() gave {want_corners:?} ({float} before truncation)",
                        g.label
                    );
                    near_whole += 1;
                }
                assert_close_with(g.score, w["score"].as_f64().unwrap(), 1e-4, &what);
            }
            compared += 1;
        }
    }
    eprintln!("{compared} detections equal to pipeline(); {near_whole} box corners a pixel off at a whole pixel");
    assert!(compared >= 75, "only {compared} detections compared");
}

/// ResNet image classification (transformers' layout, microsoft/resnet-50's
/// older preprocessor_config.json) against pipeline("image-classification").
#[tokio::test]
async fn resnet_classification_matches_pipeline() {
    let refs: Value = reference("resnet_classification.json");
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("resnet", "image-classification", &fixture_model("resnet-cls"))
        .await;
    let mut client = daemon.inference().await;
    let cases = refs["cases"].as_array().unwrap();
    for (n, case) in cases.iter().enumerate() {
        let file = case["input"].as_str().unwrap();
        if file == THREE_HIGH {
            continue;
        }
        let path = fixtures_dir().join(file);
        let p = &case["params"];
        let request = ClassifyImageRequest {
            model: "resnet".into(),
            inputs: vec![ImageInput {
                data: std::fs::read(&path).unwrap(),
            }],
            top_k: p.get("top_k").and_then(Value::as_u64).map(|k| k as u32),
            ..Default::default()
        };
        let what = format!("case {n} ({file})");
        let response = client
            .classify_image(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_inner();
        let got = &response.results[0].labels;
        let want = case["expected"].as_array().unwrap();
        let got_labels: Vec<&str> = got.iter().map(|l| l.label.as_str()).collect();
        let want_labels: Vec<&str> = want.iter().map(|l| l["label"].as_str().unwrap()).collect();
        assert_eq!(got_labels, want_labels, "{what}: labels");
        for (g, w) in got.iter().zip(want) {
            assert_close_with(g.score, w["score"].as_f64().unwrap(), 1e-4, &what);
        }
    }
    assert!(cases.len() >= 8, "only {} cases", cases.len());
}

/// A 24-bit BMP of one colour.
pub(crate) fn bmp(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let row = (width * 3).div_ceil(4) * 4;
    let size = 54 + row * height;
    let mut out = b"BM".to_vec();
    for v in [size, 0, 54, 40] {
        out.extend(v.to_le_bytes());
    }
    out.extend(width.to_le_bytes());
    out.extend(height.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(24u16.to_le_bytes());
    for v in [0u32, row * height, 2835, 2835, 0, 0] {
        out.extend(v.to_le_bytes());
    }
    for _ in 0..height {
        let mut line: Vec<u8> = (0..width).flat_map(|_| [rgb[2], rgb[1], rgb[0]]).collect();
        line.resize(row as usize, 0);
        out.extend(line);
    }
    out
}

/// DetectObjects refuses what it cannot serve with the right status and
/// keeps serving; a 1x1 image is an image (resized to 800x800) and is
/// answered.
#[tokio::test]
async fn detection_refuses_bad_requests_clearly() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("detr", "object-detection", &fixture_model("detr-random"))
        .await;
    daemon
        .load("vit", "image-classification", &fixture_model("vit-cls"))
        .await;
    let mut client = daemon.inference().await;
    let photo = image("astronaut.png");
    let detect = |data: Vec<u8>, threshold: Option<f32>| DetectObjectsRequest {
        model: "detr".into(),
        inputs: vec![ImageInput { data }],
        threshold,
    };
    let truncated = photo[..photo.len() / 2].to_vec();
    let cases: Vec<(&str, DetectObjectsRequest, Code, &str)> = vec![
        (
            "not an image",
            detect(b"certainly not an image".to_vec(), None),
            Code::InvalidArgument,
            "not an image",
        ),
        ("an empty file", detect(vec![], None), Code::InvalidArgument, "empty"),
        (
            "a truncated file",
            detect(truncated, None),
            Code::InvalidArgument,
            "decode",
        ),
        (
            "a huge header",
            detect(png_header(100_000, 100_000), None),
            Code::InvalidArgument,
            "pixels",
        ),
        (
            "a threshold over 1",
            detect(photo.clone(), Some(1.5)),
            Code::InvalidArgument,
            "between 0 and 1",
        ),
        (
            "a negative threshold",
            detect(photo.clone(), Some(-0.1)),
            Code::InvalidArgument,
            "between 0 and 1",
        ),
        (
            "a NaN threshold",
            detect(photo.clone(), Some(f32::NAN)),
            Code::InvalidArgument,
            "between 0 and 1",
        ),
        (
            "no inputs",
            DetectObjectsRequest {
                model: "detr".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "`inputs` is empty",
        ),
        (
            "detection asked of a classifier",
            DetectObjectsRequest {
                model: "vit".into(),
                inputs: vec![ImageInput { data: photo.clone() }],
                threshold: None,
            },
            Code::FailedPrecondition,
            "serves task image-classification",
        ),
    ];
    for (what, request, code, says) in cases {
        let status = client.detect_objects(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(says),
            "{what}: {:?} should say {says:?}",
            status.message()
        );
    }
    let classify_detector = ClassifyImageRequest {
        model: "detr".into(),
        inputs: vec![ImageInput { data: photo.clone() }],
        ..Default::default()
    };
    let status = client.classify_image(classify_detector).await.expect_err("wrong task");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("serves task object-detection"), "{status:?}");
    // A 1x1 image, then a photo: answered, boxes within a pixel's reach.
    let one = client
        .detect_objects(detect(bmp(1, 1, [200, 30, 30]), Some(0.0)))
        .await
        .expect("a 1x1 image")
        .into_inner();
    assert_eq!(one.results[0].objects.len(), 12, "every query at threshold 0");
    client
        .detect_objects(detect(photo, None))
        .await
        .expect("a photo after bad requests");
}

/// `inferctl detect`: pipeline()'s records with --json, and with --draw a
/// PNG of the image's size with the boxes on it.
#[tokio::test]
async fn inferctl_detects_and_draws() {
    let refs: Value = reference("detr.json");
    let case = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["model"] == "detr-random" && c["input"] == "images/astronaut.png" && c["params"]["threshold"] == 0.5
        })
        .expect("the astronaut case")
        .clone();
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("detr", "object-detection", &fixture_model("detr-random"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let drawn = dir.path().join("drawn.png");
    let photo = fixtures_dir().join("images/astronaut.png");
    let printed = daemon.inferctl(&[
        "--json",
        "detect",
        photo.to_str().unwrap(),
        "--model",
        "detr",
        "--threshold",
        "0.5",
        "--draw",
        drawn.to_str().unwrap(),
    ]);
    let printed: Value = serde_json::from_str(&printed).unwrap();
    let objects = printed[0].as_array().unwrap();
    let expected = case["expected"].as_array().unwrap();
    assert_eq!(objects.len(), expected.len(), "{printed}");
    for (got, want) in objects.iter().zip(expected) {
        assert_eq!(got["label"], want["label"]);
        assert_eq!(got["box"], want["box"]);
    }
    let png = std::fs::read(&drawn).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((size(16), size(20)), (512, 512), "the image's own size");
}
