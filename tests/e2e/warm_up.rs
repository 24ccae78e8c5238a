//! Warm-up: a model is ready (LoadModel answers, GetModel says READY) only
//! after one request of its task has run through each instance; ModelInfo
//! shows the load and warm-up times. A warm-up the model refuses is logged
//! and the model still loads; one that fails inside the model fails the
//! load.

use inferd_proto::v1::{GetModelRequest, LoadModelRequest, ModelOptions};
use inferd_tests::{fixture_model, test_plugin_dir, Daemon};
use tonic::Code;

/// One fixture model of each built-in task: (task, fixture).
const TASK_FIXTURES: &[(&str, &str)] = &[
    ("text-classification", "bert-cls"),
    ("zero-shot-classification", "bart-mnli"),
    ("token-classification", "bert-ner"),
    ("question-answering", "bert-qa"),
    ("feature-extraction", "bert-base"),
    ("fill-mask", "bert-mlm"),
    ("fill-mask", "roberta-mlm"),
    ("text-generation", "gpt2-gen"),
    ("summarization", "bart-sum"),
    ("translation", "marian-fr-en"),
    ("image-classification", "vit-cls"),
    ("object-detection", "detr-random"),
    ("depth-estimation", "glpn-random"),
    ("image-segmentation", "segformer-random"),
    ("automatic-speech-recognition", "w2v2-base"),
    ("automatic-speech-recognition", "whisper-random-en"),
    ("text-to-speech", "speecht5-random"),
];

#[tokio::test]
async fn every_built_in_task_warms_its_model_up_before_it_is_ready() {
    let daemon = Daemon::start(&[]).await;
    let mut models = daemon.models().await;
    for (task, fixture) in TASK_FIXTURES {
        let request = LoadModelRequest {
            name: (*fixture).into(),
            task: (*task).into(),
            source: fixture_model(fixture),
            options: (*task == "text-to-speech").then(|| ModelOptions {
                vocoder: Some(fixture_model("hifigan-random")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = models
            .load_model(request)
            .await
            .unwrap_or_else(|e| panic!("{fixture}: {e}\n{}", daemon.log()))
            .into_inner();
        assert!(
            info.warm_up_seconds > 0.0,
            "{fixture} ({task}) was not warmed up: {info:?}"
        );
        assert!(info.load_seconds >= info.warm_up_seconds, "{fixture}: {info:?}");
        let got = models
            .get_model(GetModelRequest {
                name: (*fixture).into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.warm_up_seconds, info.warm_up_seconds);
    }
    // Each task's request fitted its model: none was refused.
    let log = daemon.log();
    assert!(!log.contains("warm-up request was refused"), "{log}");
}

/// A model-less task of the test plugin, loaded under `name`.
fn panicky(name: &str) -> LoadModelRequest {
    LoadModelRequest {
        name: name.into(),
        task: "panic".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn load_answers_after_the_warm_up_and_a_warm_up_failure_fails_the_load() {
    let dir = test_plugin_dir();
    let daemon = Daemon::start(&["--plugin-dir", dir.to_str().unwrap()]).await;
    let mut models = daemon.models().await;

    // The warm-up takes 300 ms: LoadModel answers after it.
    let slow = models.load_model(panicky("warm-up-slow")).await.unwrap().into_inner();
    assert!(slow.warm_up_seconds >= 0.3, "{slow:?}");
    assert!(slow.load_seconds >= slow.warm_up_seconds, "{slow:?}");

    // Refused: logged, and the model serves.
    let refused = models.load_model(panicky("warm-up-refuse")).await.unwrap().into_inner();
    assert_eq!(refused.state, inferd_proto::v1::ModelState::Ready as i32);
    assert!(daemon.log().contains("refused on demand"), "{}", daemon.log());

    // Failed inside the model (INTERNAL, a panic): the load fails saying so,
    // and nothing is left behind.
    for (name, says) in [
        ("warm-up-torch-error", "failed its warm-up request"),
        ("warm-up-panic", "asked to panic"),
    ] {
        let status = models.load_model(panicky(name)).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{name}: {status:?}");
        assert!(status.message().contains(says), "{name}: {}", status.message());
        let listed = models
            .list_models(inferd_proto::v1::ListModelsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(listed.models.iter().all(|m| m.name != name));
    }
}
