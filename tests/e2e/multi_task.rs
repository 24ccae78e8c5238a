//! One model, several tasks (`also_tasks`): a T5 loaded once for
//! summarization and translation answers both as pipeline() does, holding
//! one copy of its weights; an encoder serves classification and
//! feature-extraction; the model is each task's default; tasks that cannot
//! share a model are refused.

use inferd_proto::v1::{
    ClassifyRequest, EmbedRequest, LoadModelRequest, SummarizeRequest, TextInput, UnloadModelRequest,
};
use inferd_tests::{fixture_model, Daemon};
use tonic::Code;

use crate::seq2seq::{cases, outputs, request, summary_texts, translate_request, translation_texts};

fn load(name: &str, task: &str, fixture: &str, also: &[&str]) -> LoadModelRequest {
    LoadModelRequest {
        name: name.into(),
        task: task.into(),
        source: fixture_model(fixture),
        also_tasks: also.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_t5_loaded_once_summarizes_and_translates_as_the_pipeline_does_with_one_copy_of_its_weights() {
    let daemon = Daemon::start(&[]).await;
    let mut models = daemon.models().await;
    // Alone, for one task: what one copy takes.
    let single = models
        .load_model(load("single", "summarization", "t5-small-ish", &[]))
        .await
        .unwrap()
        .into_inner();
    models
        .unload_model(UnloadModelRequest { name: "single".into() })
        .await
        .unwrap();

    let both = models
        .load_model(load("t5-small-ish", "summarization", "t5-small-ish", &["translation"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(both.also_tasks, ["translation"]);
    assert!(
        both.memory_bytes >= single.memory_bytes && both.memory_bytes < single.memory_bytes * 11 / 10,
        "two tasks hold {} bytes, one task alone {}",
        both.memory_bytes,
        single.memory_bytes
    );

    let mut client = daemon.inference().await;
    let mut compared = 0;
    for case in cases("t5-small-ish", "summarization") {
        if case.get("pipeline_error").is_some() {
            continue;
        }
        let response = client.summarize(request(&case)).await.unwrap().into_inner();
        assert_eq!(summary_texts(response), outputs(&case), "{}", case["case"]);
        compared += 1;
    }
    for case in cases("t5-small-ish", "translation") {
        if case.get("pipeline_error").is_some() {
            continue;
        }
        let response = client.translate(translate_request(&case)).await.unwrap().into_inner();
        assert_eq!(translation_texts(response), outputs(&case), "{}", case["case"]);
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} cases");

    // The default of both tasks: a request naming no model finds it.
    let unnamed = SummarizeRequest {
        model: String::new(),
        inputs: vec!["The tower is 324 metres tall.".into()],
        ..Default::default()
    };
    client.summarize(unnamed).await.expect("the summarization default");
    let listed = daemon.inferctl(&["models", "list"]);
    assert!(listed.contains("also serves: translation"), "{listed}");
}

#[tokio::test]
async fn an_encoder_serves_classification_and_feature_extraction_and_other_tasks_are_still_refused() {
    let daemon = Daemon::start(&[]).await;
    let mut models = daemon.models().await;
    let both = models
        .load_model(load("bert", "text-classification", "bert-cls", &["feature-extraction"]))
        .await
        .unwrap()
        .into_inner();
    // The same files loaded as another model hold a copy of their own (so
    // that unloading either frees what the budget says it held).
    let again = models
        .load_model(load("bert-embed", "feature-extraction", "bert-cls", &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(
        again.memory_bytes > 0 && again.memory_bytes <= both.memory_bytes,
        "{again:?} vs {both:?}"
    );

    let mut client = daemon.inference().await;
    let input = TextInput {
        text: "one model, two tasks".into(),
        text_pair: None,
    };
    let classified = client
        .classify(ClassifyRequest {
            model: "bert".into(),
            inputs: vec![input.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!classified.results[0].labels.is_empty());
    let embed = |model: &str| EmbedRequest {
        model: model.into(),
        inputs: vec![input.text.clone()],
        ..Default::default()
    };
    let from_both = client.embed(embed("bert")).await.unwrap().into_inner();
    let from_one = client.embed(embed("bert-embed")).await.unwrap().into_inner();
    // What the checkpoint gives loaded alone, one model per task, in a
    // daemon of its own.
    let alone = Daemon::start(&[]).await;
    alone
        .load("embed", "feature-extraction", &fixture_model("bert-cls"))
        .await;
    alone
        .load("classify", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut reference = alone.inference().await;
    let expected = reference.embed(embed("embed")).await.unwrap().into_inner();
    assert_eq!(
        from_both, expected,
        "the second task's instance computes with the loaded weights"
    );
    assert_eq!(from_one, expected, "so does a second model from the same files");
    let expected_labels = reference
        .classify(ClassifyRequest {
            model: "classify".into(),
            inputs: vec![input.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(classified, expected_labels);

    // A task it was not loaded for is still the wrong task.
    let wrong = client
        .summarize(SummarizeRequest {
            model: "bert".into(),
            inputs: vec!["x".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition, "{wrong:?}");
    assert!(
        wrong
            .message()
            .contains("serves task text-classification and feature-extraction, not summarization"),
        "{}",
        wrong.message()
    );
}

#[tokio::test]
async fn tasks_that_cannot_share_a_model_are_refused_and_leave_nothing_behind() {
    let dir = inferd_tests::test_plugin_dir();
    let daemon = Daemon::start(&["--plugin-dir", dir.to_str().unwrap()]).await;
    let mut models = daemon.models().await;
    let cases: [(&[&str], Code, &str); 3] = [
        (&["no-such-task"], Code::Unimplemented, "no-such-task"),
        // A task that loads no model files.
        (&["panic"], Code::InvalidArgument, "cannot share a model"),
        // A checkpoint the other task has no architecture for.
        (&["summarization"], Code::FailedPrecondition, "summarization"),
    ];
    for (also, code, says) in cases {
        let refused = models
            .load_model(load("bert", "text-classification", "bert-cls", also))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{also:?}: {refused:?}");
        assert!(refused.message().contains(says), "{also:?}: {}", refused.message());
    }
    models
        .load_model(load("bert", "text-classification", "bert-cls", &[]))
        .await
        .expect("the name is free");
}
