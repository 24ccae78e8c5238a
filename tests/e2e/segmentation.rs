//! Image segmentation against pipeline("image-segmentation") on the fixture
//! images: SegFormer's semantic segments
//! (tests/fixtures/segmentation_fixtures.py), Mask2Former's and panoptic
//! DETR's panoptic, instance and semantic ones
//! (tests/fixtures/{mask2former,detr_panoptic}_fixtures.py).
//! The same segments in the same order, scores within 1e-4 (absent for
//! semantic), masks equal but for pixels the recording counts as near ties;
//! several images per request and the label map; bad requests refused
//! clearly; `inferctl segment`.

use inferd_proto::v1::{
    ClassifyImageRequest, ImageInput, LoadModelRequest, ModelOptions, SegmentImageRequest, Segmentation,
};
use inferd_tests::{fixture_model, fixtures_dir, reference, score_tolerance, Daemon};
use serde_json::Value;
use tonic::Code;

use crate::vision::image;

fn grey(png: &[u8]) -> Vec<u8> {
    image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .unwrap()
        .into_luma8()
        .into_raw()
}

fn segment(model: &str, files: &[&str]) -> SegmentImageRequest {
    SegmentImageRequest {
        model: model.into(),
        inputs: files.iter().map(|f| ImageInput { data: image(f) }).collect(),
        ..Default::default()
    }
}

fn file_name(case: &Value) -> String {
    case["image"]
        .as_str()
        .unwrap()
        .trim_start_matches("images/")
        .to_string()
}

/// The pixels a case's recording counts as near ties: two classes' logits
/// (SegFormer), or two queries' weighted probabilities, a probability and
/// the mask threshold, a mask logit and 0 (Mask2Former).
fn near_ties(case: &Value) -> usize {
    let ties = &case["near_ties"];
    let count = ties["count"].as_u64().unwrap_or_else(|| {
        ["argmax", "mask_threshold", "zero_logit"]
            .iter()
            .filter_map(|k| ties[k]["count"].as_u64())
            .sum()
    });
    count as usize
}

/// `got` has the case's segments; masks differ on at most twice its near
/// ties (a pixel given the other segment differs in both masks).
fn compare(got: &Segmentation, case: &Value, what: &str) {
    let want = case["segments"].as_array().unwrap();
    let labels: Vec<&str> = got.segments.iter().map(|s| s.label.as_str()).collect();
    let want_labels: Vec<&str> = want.iter().map(|s| s["label"].as_str().unwrap()).collect();
    assert_eq!(labels, want_labels, "{what}: labels");
    let mut differing = 0;
    for (g, w) in got.segments.iter().zip(want) {
        match (g.score, w["score"].as_f64()) {
            (None, None) => {}
            (Some(got), Some(want)) => assert!(
                (f64::from(got) - want).abs() <= score_tolerance(1e-4),
                "{what}: score {got} vs {want}"
            ),
            other => panic!("{what}: scores {other:?}"),
        }
        let theirs = std::fs::read(fixtures_dir().join(w["mask"].as_str().unwrap())).unwrap();
        let (ours, theirs) = (grey(&g.mask), grey(&theirs));
        assert_eq!(ours.len(), theirs.len(), "{what}: mask size");
        differing += ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    }
    let near_ties = near_ties(case);
    assert!(
        differing <= 2 * near_ties,
        "{what}: {differing} mask pixels differ, {near_ties} near ties"
    );
}

#[tokio::test]
async fn semantic_segmentation_matches_pipeline() {
    let refs: Value = reference("segmentation.json");
    let cases = refs["cases"].as_array().unwrap();
    let daemon = Daemon::start(&[]).await;
    for model in ["segformer-random", "segformer-random-legacy"] {
        daemon.load(model, "image-segmentation", &fixture_model(model)).await;
    }
    let mut client = daemon.inference().await;
    for case in cases {
        let model = case["model"].as_str().unwrap();
        let what = format!("{model} on {} {}", file_name(case), case["params"]);
        let mut request = segment(model, &[&file_name(case)]);
        request.subtask = case["params"]["subtask"].as_str().unwrap_or_default().into();
        let response = client
            .segment_image(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_inner();
        assert!(response.results[0].label_map.is_empty(), "no label map unasked");
        compare(&response.results[0], case, &what);
    }
    assert!(cases.len() >= 15);
    // All of a model's images in one request (one batch of 512x512
    // images), with their label maps: each mask is its label's pixels.
    let mine: Vec<&Value> = cases
        .iter()
        .filter(|c| c["model"] == "segformer-random" && c["params"] == serde_json::json!({}))
        .collect();
    let names: Vec<String> = mine.iter().map(|c| file_name(c)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut request = segment("segformer-random", &names);
    request.return_label_map = true;
    let response = client.segment_image(request).await.unwrap().into_inner();
    assert_eq!(response.results.len(), mine.len());
    let ids = &refs["id2label"];
    for (got, case) in response.results.iter().zip(&mine) {
        compare(got, case, &format!("{} among {}", file_name(case), names.len()));
        let map = grey(&got.label_map);
        for segment in &got.segments {
            let id = ids
                .as_object()
                .unwrap()
                .iter()
                .find(|(_, label)| label.as_str() == Some(segment.label.as_str()))
                .map(|(id, _)| id.parse::<u8>().unwrap())
                .unwrap();
            let from_map: Vec<u8> = map.iter().map(|&l| if l == id { 255 } else { 0 }).collect();
            assert_eq!(
                from_map,
                grey(&segment.mask),
                "{}: the label map's {}",
                file_name(case),
                segment.label
            );
        }
    }
}

/// The request a recorded case makes.
fn case_request(case: &Value) -> SegmentImageRequest {
    let params = &case["params"];
    let mut request = segment(case["model"].as_str().unwrap(), &[&file_name(case)]);
    request.subtask = params["subtask"].as_str().unwrap_or_default().into();
    request.threshold = params["threshold"].as_f64().map(|v| v as f32);
    request.mask_threshold = params["mask_threshold"].as_f64().map(|v| v as f32);
    request.overlap_mask_area_threshold = params["overlap_mask_area_threshold"].as_f64().map(|v| v as f32);
    if let Some(ids) = params["label_ids_to_fuse"].as_array() {
        request.label_ids_to_fuse = ids.iter().map(|i| i.as_u64().unwrap() as u32).collect();
    }
    request
}

#[tokio::test]
async fn universal_segmentation_matches_pipeline() {
    let daemon = Daemon::start(&[]).await;
    let mut client = daemon.inference().await;
    // Mask2Former (Swin), and panoptic DETR in both backbone layouts.
    for (file, models) in [
        ("mask2former.json", ["mask2former-random", "mask2former-random-small"]),
        (
            "detr_panoptic.json",
            ["detr-panoptic-random", "detr-panoptic-random-timm"],
        ),
    ] {
        for model in models {
            daemon.load(model, "image-segmentation", &fixture_model(model)).await;
        }
        let refs: Value = reference(file);
        let cases = refs["cases"].as_array().unwrap();
        let mut subtasks = std::collections::BTreeSet::new();
        for case in cases {
            let what = format!("{} on {} {}", case["model"], file_name(case), case["params"]);
            let response = client
                .segment_image(case_request(case))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .into_inner();
            compare(&response.results[0], case, &what);
            subtasks.insert(case["subtask_resolved"].as_str().unwrap().to_string());
        }
        assert_eq!(subtasks.len(), 3, "{file}: {subtasks:?}");
        assert!(cases.len() >= 100, "{file}");
    }
    let refs: Value = reference("mask2former.json");
    let cases = refs["cases"].as_array().unwrap();
    // Every image of a model in one panoptic request, with the label maps:
    // each segment's mask is where the map holds its id.
    let mine: Vec<&Value> = cases
        .iter()
        .filter(|c| c["model"] == "mask2former-random" && c["case"] == "default")
        .collect();
    let names: Vec<String> = mine.iter().map(|c| file_name(c)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut request = segment("mask2former-random", &names);
    request.return_label_map = true;
    let response = client.segment_image(request).await.unwrap().into_inner();
    assert_eq!(response.results.len(), mine.len());
    for (got, case) in response.results.iter().zip(&mine) {
        let what = format!("{} among {}", file_name(case), names.len());
        compare(got, case, &what);
        let map = grey(&got.label_map);
        for segment in &got.segments {
            assert!(segment.id >= 1, "{what}: ids count from 1");
            let from_map: Vec<u8> = map
                .iter()
                .map(|&l| if u32::from(l) == segment.id { 255 } else { 0 })
                .collect();
            assert_eq!(from_map, grey(&segment.mask), "{what}: segment {}", segment.id);
        }
    }
}

#[tokio::test]
async fn segmentation_refuses_bad_requests_clearly() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("seg", "image-segmentation", &fixture_model("segformer-random"))
        .await;
    daemon
        .load("vit", "image-classification", &fixture_model("vit-cls"))
        .await;
    daemon
        .load("m2f", "image-segmentation", &fixture_model("mask2former-random-small"))
        .await;
    let mut client = daemon.inference().await;
    let photo = "photo_q90.jpg";
    let with = |edit: &dyn Fn(&mut SegmentImageRequest)| {
        let mut request = segment("seg", &[photo]);
        edit(&mut request);
        request
    };
    let universal = |edit: &dyn Fn(&mut SegmentImageRequest)| {
        let mut request = segment("m2f", &[photo]);
        edit(&mut request);
        request
    };
    let cases: Vec<(&str, SegmentImageRequest, Code, &str)> = vec![
        (
            "instance of a semantic model",
            with(&|r| r.subtask = "instance".into()),
            Code::InvalidArgument,
            "this model does semantic (send",
        ),
        (
            "panoptic of a semantic model",
            with(&|r| r.subtask = "panoptic".into()),
            Code::InvalidArgument,
            "this model does semantic (send",
        ),
        (
            "an unknown subtask",
            with(&|r| r.subtask = "everything".into()),
            Code::InvalidArgument,
            "send \"semantic\", \"instance\" or \"panoptic\"",
        ),
        (
            "labels to fuse for semantic segmentation",
            with(&|r| r.label_ids_to_fuse = vec![1]),
            Code::InvalidArgument,
            "label_ids_to_fuse applies to panoptic segmentation, not semantic",
        ),
        (
            "labels to fuse for instance segmentation",
            universal(&|r| {
                r.subtask = "instance".into();
                r.label_ids_to_fuse = vec![1];
            }),
            Code::InvalidArgument,
            "label_ids_to_fuse applies to panoptic segmentation, not instance",
        ),
        (
            "a label to fuse the model does not have",
            universal(&|r| r.label_ids_to_fuse = vec![3, 70]),
            Code::InvalidArgument,
            "70 is not a label of this model (it has 70: 0 to 69)",
        ),
        (
            "a NaN threshold",
            universal(&|r| r.threshold = Some(f32::NAN)),
            Code::InvalidArgument,
            "threshold NaN: send a value between 0 and 1",
        ),
        (
            "an unknown subtask of a universal model",
            universal(&|r| r.subtask = "depth".into()),
            Code::InvalidArgument,
            "or none for the model's own (\"panoptic\")",
        ),
        (
            "a threshold over 1",
            with(&|r| r.threshold = Some(1.5)),
            Code::InvalidArgument,
            "threshold 1.5",
        ),
        (
            "a negative mask threshold",
            with(&|r| r.mask_threshold = Some(-0.5)),
            Code::InvalidArgument,
            "mask_threshold -0.5",
        ),
        (
            "not an image",
            with(&|r| r.inputs[0].data = b"certainly not an image".to_vec()),
            Code::InvalidArgument,
            "not an image",
        ),
        (
            "no inputs",
            with(&|r| r.inputs.clear()),
            Code::InvalidArgument,
            "`inputs` is empty",
        ),
        (
            "segmentation asked of a classifier",
            with(&|r| r.model = "vit".into()),
            Code::FailedPrecondition,
            "serves task image-classification",
        ),
    ];
    for (what, request, code, says) in cases {
        let status = client.segment_image(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(says),
            "{what}: {:?} should say {says:?}",
            status.message()
        );
    }
    let classify = ClassifyImageRequest {
        model: "seg".into(),
        inputs: vec![ImageInput { data: image(photo) }],
        ..Default::default()
    };
    let status = client.classify_image(classify).await.expect_err("wrong task");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("serves task image-segmentation"),
        "{status:?}"
    );
    // A processed-pixel budget under SegFormer's 512x512 refuses every image.
    let limited = LoadModelRequest {
        name: "seg-small".into(),
        task: "image-segmentation".into(),
        source: fixture_model("segformer-random"),
        options: Some(ModelOptions {
            limits: [("max_segmentation_pixels".to_string(), 10_000)].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    daemon.models().await.load_model(limited).await.unwrap();
    let status = client
        .segment_image(segment("seg-small", &[photo]))
        .await
        .expect_err("over the budget");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_segmentation_pixels"), "{status:?}");
    // A 3x5 image is resized to 512x512 and answered, as pipeline() does.
    let tiny = client
        .segment_image(segment("seg", &["tiny_3x5.png"]))
        .await
        .expect("a 3x5 image")
        .into_inner();
    assert_eq!(grey(&tiny.results[0].segments[0].mask).len(), 15);
}

/// `inferctl segment`: the segments (--json), an overlay of the image's
/// size and each mask as a file.
#[tokio::test]
async fn inferctl_segments_and_draws_an_overlay() {
    let refs: Value = reference("segmentation.json");
    let case = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "segformer-random" && c["image"] == "images/coffee.png")
        .expect("the coffee case")
        .clone();
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("seg", "image-segmentation", &fixture_model("segformer-random"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("overlay.png");
    let masks = dir.path().join("masks");
    let photo = fixtures_dir().join("images/coffee.png");
    let printed = daemon.inferctl(&[
        "--json",
        "segment",
        photo.to_str().unwrap(),
        "--model",
        "seg",
        "--overlay",
        overlay.to_str().unwrap(),
        "--masks",
        masks.to_str().unwrap(),
    ]);
    let printed: Value = serde_json::from_str(&printed).unwrap();
    let segments = printed[0].as_array().unwrap();
    let want = case["segments"].as_array().unwrap();
    assert_eq!(segments.len(), want.len(), "{printed}");
    for (got, want) in segments.iter().zip(want) {
        assert_eq!(got["label"], want["label"]);
        assert!(got["score"].is_null());
        let (got, want) = (got["pixels"].as_i64().unwrap(), want["pixels"].as_i64().unwrap());
        assert!(
            (got - want).abs() <= 2 * case["near_ties"]["count"].as_i64().unwrap(),
            "{got} vs {want}"
        );
    }
    let drawn = image::open(&overlay).unwrap();
    assert_eq!((drawn.width(), drawn.height()), (600, 400), "the image's own size");
    assert_eq!(std::fs::read_dir(&masks).unwrap().count(), want.len());

    // Mask2Former's instance segments, scored, with its thresholds.
    let refs: Value = reference("mask2former.json");
    let case = refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["model"] == "mask2former-random" && c["image"] == "images/coffee.png" && c["case"] == "instance.thr05"
        })
        .expect("the coffee instance case")
        .clone();
    daemon
        .load("m2f", "image-segmentation", &fixture_model("mask2former-random"))
        .await;
    let universal = dir.path().join("instances.png");
    let printed = daemon.inferctl(&[
        "--json",
        "segment",
        photo.to_str().unwrap(),
        "--model",
        "m2f",
        "--subtask",
        "instance",
        "--threshold",
        "0.5",
        "--overlay",
        universal.to_str().unwrap(),
    ]);
    let printed: Value = serde_json::from_str(&printed).unwrap();
    let segments = printed[0].as_array().unwrap();
    let want = case["segments"].as_array().unwrap();
    assert_eq!(segments.len(), want.len(), "{printed}");
    for (got, want) in segments.iter().zip(want) {
        assert_eq!(got["label"], want["label"]);
        let (got, want) = (got["score"].as_f64().unwrap(), want["score"].as_f64().unwrap());
        assert!((got - want).abs() <= 1e-4, "{got} vs {want}");
    }
    assert!(image::open(&universal).is_ok(), "an overlay");
}
