//! Image classification (ViT, ConvNeXT) against pipeline("image-classification")
//! on the fixture images; bad images refused clearly.

use inferd_proto::v1::{ClassifyImageRequest, ClassifyRequest, ImageInput, TextInput};
use inferd_tests::{assert_close_with, fixture_model, fixtures_dir, reference, Daemon};
use serde_json::Value;
use tonic::Code;

fn image(name: &str) -> Vec<u8> {
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
fn png_header(width: u32, height: u32) -> Vec<u8> {
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
