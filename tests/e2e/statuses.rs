//! The same condition gets the same gRPC status wherever it is met: at
//! LoadModel and at an inference RPC, in model management and in inference,
//! found by the daemon or by a plugin.

use inferd_proto::v1::{
    ClassifyRequest, EmbedRequest, GetModelRequest, LoadModelRequest, RunInput, RunRequest, TextInput,
    UnloadModelRequest,
};
use inferd_tests::{fixture_model, Daemon};
use tonic::Code;

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(
        status.message().contains(needle),
        "{what}: the message {:?} should mention {needle:?}",
        status.message()
    );
}

fn run(task: &str, model: &str) -> RunRequest {
    RunRequest {
        task: task.into(),
        model: model.into(),
        inputs: vec![RunInput {
            text: "x".into(),
            data: vec![],
        }],
        ..Default::default()
    }
}

fn classify(model: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: model.into(),
        inputs: vec![TextInput {
            text: "x".into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_task_no_plugin_serves_is_unimplemented_at_load_and_at_inference() {
    let daemon = Daemon::start(&[]).await;
    let load = LoadModelRequest {
        name: "speech".into(),
        task: "image-to-text".into(),
        source: fixture_model("bert-cls"),
        ..Default::default()
    };
    assert_status(
        daemon.models().await.load_model(load).await,
        Code::Unimplemented,
        "image-to-text",
        "LoadModel",
    );
    assert_status(
        daemon.inference().await.run(run("image-to-text", "")).await,
        Code::Unimplemented,
        "image-to-text",
        "Run",
    );
}

#[tokio::test]
async fn an_unknown_model_is_not_found_in_inference_and_in_model_management() {
    let daemon = Daemon::start(&[]).await;
    let mut inference = daemon.inference().await;
    let mut models = daemon.models().await;
    assert_status(
        inference.classify(classify("nope")).await,
        Code::NotFound,
        "nope",
        "Classify",
    );
    assert_status(inference.run(run("", "nope")).await, Code::NotFound, "nope", "Run");
    assert_status(
        models.get_model(GetModelRequest { name: "nope".into() }).await,
        Code::NotFound,
        "nope",
        "GetModel",
    );
    assert_status(
        models.unload_model(UnloadModelRequest { name: "nope".into() }).await,
        Code::NotFound,
        "nope",
        "UnloadModel",
    );
}

#[tokio::test]
async fn a_model_asked_for_another_task_is_failed_precondition_from_the_daemon_and_from_the_plugin() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut inference = daemon.inference().await;
    // The daemon finds it: the RPC's task is not the model's.
    let embed = EmbedRequest {
        model: "bert".into(),
        inputs: vec!["x".into()],
        ..Default::default()
    };
    assert_status(
        inference.embed(embed).await,
        Code::FailedPrecondition,
        "text-classification",
        "Embed on a classifier",
    );
    assert_status(
        inference.run(run("word-count", "bert")).await,
        Code::FailedPrecondition,
        "text-classification",
        "Run for another task",
    );
    // The plugin finds it: Run names no task, so the request reaches it.
    assert_status(
        inference.run(run("", "bert")).await,
        Code::FailedPrecondition,
        "Classify",
        "Run on a classifier",
    );
}
