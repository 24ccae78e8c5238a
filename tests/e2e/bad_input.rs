//! Bad input gets the right gRPC status and a message naming the problem,
//! and the daemon keeps serving afterwards.

use inferd_proto::v1::{ClassifyRequest, LoadModelRequest, RunInput, RunRequest, TextInput};
use inferd_tests::{fixture_model, Daemon};
use tonic::Code;

fn text(t: &str) -> TextInput {
    TextInput {
        text: t.into(),
        text_pair: None,
    }
}

fn classify(model: &str, inputs: Vec<TextInput>) -> ClassifyRequest {
    ClassifyRequest {
        model: model.into(),
        inputs,
        ..Default::default()
    }
}

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "status: {status:?}");
    assert!(
        status.message().contains(needle),
        "message {:?} should mention {needle:?}",
        status.message()
    );
}

async fn still_serves(daemon: &Daemon) {
    let r = daemon
        .inference()
        .await
        .classify(classify("bert", vec![text("still here")]))
        .await;
    assert!(r.is_ok(), "daemon stopped serving: {r:?}\n{}", daemon.log());
}

#[tokio::test]
async fn bad_classify_requests_are_invalid_arguments() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut client = daemon.inference().await;

    assert_status(
        client.classify(classify("bert", vec![])).await,
        Code::InvalidArgument,
        "`inputs` is empty",
    );
    assert_status(
        client.classify(classify("bert", vec![text("fine"), text("  ")])).await,
        Code::InvalidArgument,
        "inputs[1].text is empty",
    );
    let mut bad_pair = text("fine");
    bad_pair.text_pair = Some(String::new());
    assert_status(
        client.classify(classify("bert", vec![bad_pair])).await,
        Code::InvalidArgument,
        "text_pair",
    );
    let mut bad_function = classify("bert", vec![text("fine")]);
    bad_function.function_to_apply = "logits".into();
    assert_status(
        client.classify(bad_function).await,
        Code::InvalidArgument,
        "function_to_apply",
    );
    still_serves(&daemon).await;

    // Far longer than the model's 64 positions: truncated, never a crash.
    let long = "word ".repeat(5000);
    let r = client
        .classify(classify("bert", vec![text(&long)]))
        .await
        .expect("long text is truncated");
    assert_eq!(r.into_inner().results.len(), 1);

    assert_status(
        client.classify(classify("nope", vec![text("x")])).await,
        Code::NotFound,
        "nope",
    );
    // The wrong task for a model.
    assert_status(
        client.classify(classify("word-count", vec![text("x")])).await,
        Code::FailedPrecondition,
        "word-count",
    );
    let run_on_classifier = RunRequest {
        model: "bert".into(),
        inputs: vec![RunInput {
            text: "x".into(),
            data: vec![],
        }],
        ..Default::default()
    };
    assert_status(
        client.run(run_on_classifier).await,
        Code::FailedPrecondition,
        "Classify",
    );
    // A task no plugin serves.
    let unknown_task = RunRequest {
        task: "image-to-text".into(),
        inputs: vec![RunInput {
            text: "x".into(),
            data: vec![],
        }],
        ..Default::default()
    };
    assert_status(client.run(unknown_task).await, Code::Unimplemented, "image-to-text");
    still_serves(&daemon).await;
}

#[tokio::test]
async fn oversized_requests_are_resource_exhausted() {
    let daemon = Daemon::start(&["--max-request-bytes", "65536"]).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut client = daemon.inference().await;
    let huge = "a".repeat(200_000);
    assert_status(
        client.classify(classify("bert", vec![text(&huge)])).await,
        Code::ResourceExhausted,
        "65536 bytes",
    );
    still_serves(&daemon).await;
}

#[tokio::test]
async fn bad_model_sources_are_refused_with_the_reason() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut models = daemon.models().await;
    let load = |name: &str, task: &str, source: &str| LoadModelRequest {
        name: name.into(),
        task: task.into(),
        source: source.into(),
        ..Default::default()
    };
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();

    assert_status(
        models
            .load_model(load(
                "m1",
                "text-classification",
                &root.join("absent").display().to_string(),
            ))
            .await,
        Code::NotFound,
        "does not exist",
    );

    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_status(
        models
            .load_model(load("m2", "text-classification", &empty.display().to_string()))
            .await,
        Code::FailedPrecondition,
        "config.json",
    );

    // config.json but no weights.
    let no_weights = root.join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    let fixture = std::path::PathBuf::from(fixture_model("bert-cls"));
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(f), no_weights.join(f)).unwrap();
    }
    assert_status(
        models
            .load_model(load("m3", "text-classification", &no_weights.display().to_string()))
            .await,
        Code::FailedPrecondition,
        "model.safetensors",
    );

    // An architecture no plugin supports for the task.
    let other_arch = root.join("other-arch");
    std::fs::create_dir(&other_arch).unwrap();
    std::fs::write(
        other_arch.join("config.json"),
        r#"{"architectures": ["GPTNeoXForCausalLM"]}"#,
    )
    .unwrap();
    assert_status(
        models
            .load_model(load("m4", "text-classification", &other_arch.display().to_string()))
            .await,
        Code::FailedPrecondition,
        "GPTNeoXForCausalLM",
    );

    // A task no plugin serves.
    assert_status(
        models
            .load_model(load("m5", "image-to-text", &fixture.display().to_string()))
            .await,
        Code::Unimplemented,
        "image-to-text",
    );

    // A hub id that is not cached, offline: fails at once, naming the model.
    let started = std::time::Instant::now();
    assert_status(
        models
            .load_model(load("m6", "text-classification", "someone/not-cached"))
            .await,
        Code::NotFound,
        "someone/not-cached",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // The same name twice.
    assert_status(
        models
            .load_model(load("bert", "text-classification", &fixture.display().to_string()))
            .await,
        Code::AlreadyExists,
        "bert",
    );
    still_serves(&daemon).await;
}

#[tokio::test]
async fn bad_text_task_requests_are_refused_clearly() {
    use inferd_proto::v1::{
        AnswerQuestionRequest, ClassifyTokensRequest, EmbedRequest, FillMaskRequest, QuestionInput,
        ZeroShotClassifyRequest,
    };
    let daemon = Daemon::start(&[]).await;
    daemon.load("mlm", "fill-mask", &fixture_model("bert-mlm")).await;
    daemon
        .load("nli", "zero-shot-classification", &fixture_model("bert-nli"))
        .await;
    daemon.load("qa", "question-answering", &fixture_model("bert-qa")).await;
    daemon.load("ner", "ner", &fixture_model("bert-ner")).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut client = daemon.inference().await;

    let fill = |text: &str| FillMaskRequest {
        model: "mlm".into(),
        inputs: vec![text.into()],
        ..Default::default()
    };
    assert_status(
        client.fill_mask(fill("no mask here")).await,
        Code::InvalidArgument,
        "[MASK]",
    );
    let mut zero_top = fill("a [MASK] b");
    zero_top.top_k = Some(0);
    assert_status(client.fill_mask(zero_top).await, Code::InvalidArgument, "top_k");

    let zero_shot = |labels: &[&str], template: &str| ZeroShotClassifyRequest {
        model: "nli".into(),
        inputs: vec!["the match ended in a draw".into()],
        candidate_labels: labels.iter().map(|s| s.to_string()).collect(),
        hypothesis_template: template.into(),
        multi_label: false,
    };
    assert_status(
        client.zero_shot_classify(zero_shot(&[], "")).await,
        Code::InvalidArgument,
        "candidate_labels",
    );
    assert_status(
        client
            .zero_shot_classify(zero_shot(&["sports"], "no placeholder"))
            .await,
        Code::InvalidArgument,
        "{}",
    );

    let qa = |question: &str, context: &str| AnswerQuestionRequest {
        model: "qa".into(),
        inputs: vec![QuestionInput {
            question: question.into(),
            context: context.into(),
        }],
        ..Default::default()
    };
    assert_status(
        client.answer_question(qa("", "Paris is in France.")).await,
        Code::InvalidArgument,
        "question",
    );
    assert_status(
        client.answer_question(qa("Where?", " ")).await,
        Code::InvalidArgument,
        "context",
    );

    let ner = ClassifyTokensRequest {
        model: "ner".into(),
        inputs: vec![String::new()],
        ..Default::default()
    };
    assert_status(client.classify_tokens(ner).await, Code::InvalidArgument, "empty");
    let bad_strategy = ClassifyTokensRequest {
        model: "ner".into(),
        inputs: vec!["Paris".into()],
        aggregation_strategy: "longest".into(),
        ..Default::default()
    };
    assert_status(
        client.classify_tokens(bad_strategy).await,
        Code::InvalidArgument,
        "aggregation_strategy",
    );

    // An RPC on a model of another task.
    let embed_on_classifier = EmbedRequest {
        model: "bert".into(),
        inputs: vec!["x".into()],
        ..Default::default()
    };
    assert_status(
        client.embed(embed_on_classifier).await,
        Code::FailedPrecondition,
        "text-classification",
    );
    let fill_on_ner = FillMaskRequest {
        model: "ner".into(),
        inputs: vec!["a [MASK]".into()],
        ..Default::default()
    };
    assert_status(
        client.fill_mask(fill_on_ner).await,
        Code::FailedPrecondition,
        "token-classification",
    );
    // A model whose architecture has no head for the task.
    let status = daemon
        .models()
        .await
        .load_model(LoadModelRequest {
            name: "cls-as-qa".into(),
            task: "question-answering".into(),
            source: fixture_model("bert-cls"),
            ..Default::default()
        })
        .await;
    assert_status(status, Code::FailedPrecondition, "BertForSequenceClassification");
    still_serves(&daemon).await;
}
