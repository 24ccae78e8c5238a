//! Plugins: the example plugin through Run, ListPlugins, a plugin built for
//! another ABI version refused, a panicking plugin failing only its request.

use inferd_proto::prost_types::value::Kind;
use inferd_proto::v1::{ListPluginsRequest, RunInput, RunRequest};
use inferd_tests::{test_plugin_dir, Daemon};
use tonic::Code;

fn run(task: &str, texts: &[&str]) -> RunRequest {
    RunRequest {
        task: task.into(),
        inputs: texts
            .iter()
            .map(|t| RunInput {
                text: t.to_string(),
                data: vec![],
            })
            .collect(),
        ..Default::default()
    }
}

fn number(output: &inferd_proto::prost_types::Struct, field: &str) -> f64 {
    match output.fields[field].kind {
        Some(Kind::NumberValue(n)) => n,
        ref other => panic!("{field}: {other:?}"),
    }
}

#[tokio::test]
async fn example_plugin_answers_through_run() {
    let daemon = Daemon::start(&[]).await;
    let response = daemon
        .inference()
        .await
        .run(run("word-count", &["the cat and the hat", "one\ntwo"]))
        .await
        .expect("word-count")
        .into_inner();
    let first = response.results[0].output.as_ref().unwrap();
    assert_eq!(number(first, "words"), 5.0);
    let second = response.results[1].output.as_ref().unwrap();
    assert_eq!(number(second, "lines"), 2.0);

    let plugins = daemon
        .models()
        .await
        .list_plugins(ListPluginsRequest {})
        .await
        .unwrap()
        .into_inner()
        .plugins;
    let names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"example") && names.contains(&"text"), "{names:?}");
    let text = plugins.iter().find(|p| p.name == "text").unwrap();
    let classification = text.tasks.iter().find(|t| t.name == "text-classification").unwrap();
    assert_eq!(classification.aliases, vec!["sentiment-analysis"]);
    assert!(classification
        .architectures
        .iter()
        .any(|a| a == "DistilBertForSequenceClassification"));
}

fn test_plugins_arg() -> String {
    let dir = test_plugin_dir();
    assert!(
        dir.join("libinferd_testplugin_panicky.so").is_file(),
        "test plugins are missing in {}: scripts/test.sh builds them",
        dir.display()
    );
    dir.display().to_string()
}

#[tokio::test]
async fn wrong_abi_is_refused_and_a_panic_fails_only_its_request() {
    let dir = test_plugins_arg();
    let daemon = Daemon::start(&["--plugin-dir", &dir]).await;
    let log = daemon.log();
    assert!(
        log.contains("refusing plugin") && log.contains("built for plugin ABI version 1, this inferd speaks version 2"),
        "no refusal line for the ABI-mismatch plugin in:\n{log}"
    );
    let mut client = daemon.inference().await;
    let status = client
        .run(run("panic", &["panic"]))
        .await
        .expect_err("the plugin panics");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("asked to panic"), "{status:?}");
    // The same instance keeps serving, and so do the other plugins.
    let echo = client
        .run(run("panic", &["hello"]))
        .await
        .expect("after a panic")
        .into_inner();
    assert!(echo.results[0].output.as_ref().unwrap().fields.contains_key("echo"));
    client
        .run(run("word-count", &["still here"]))
        .await
        .expect("other plugins serve");
}

#[tokio::test]
async fn writable_plugin_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        test_plugin_dir().join("libinferd_testplugin_panicky.so"),
        dir.join("libinferd_testplugin_panicky.so"),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let daemon = Daemon::start(&["--plugin-dir", dir.to_str().unwrap()]).await;
    assert!(daemon.log().contains("refusing plugin directory"), "{}", daemon.log());
    let status = daemon
        .inference()
        .await
        .run(run("panic", &["x"]))
        .await
        .expect_err("not loaded");
    assert_eq!(status.code(), Code::Unimplemented);
}
