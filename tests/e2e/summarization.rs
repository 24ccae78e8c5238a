//! Summarization through the daemon against transformers'
//! pipeline("summarization"), recorded by tests/fixtures/seq2seq_fixtures.py
//! on small random models: a BART with distilbart-cnn-12-6's generation
//! settings, a T5 with t5-small's task prefixes and a T5 v1.1 (gated GELU,
//! separate output layer): greedy and beam search, length limits, n-gram
//! blocking, length penalty, early stopping true/false/"never", several
//! summaries per input.

use inferd_proto::v1::{ClassifyRequest, SummarizeRequest, TextInput};
use inferd_tests::{fixture_model, Daemon};
use tonic::Code;

fn cases(model: &str) -> Vec<serde_json::Value> {
    let refs: serde_json::Value = inferd_tests::reference("seq2seq.json");
    refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == model && c["task"] == "summarization")
        .cloned()
        .collect()
}

fn request(case: &serde_json::Value) -> SummarizeRequest {
    let kwargs = &case["pipeline_kwargs"];
    let inputs = match &case["inputs"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        other => panic!("inputs {other}"),
    };
    let uint = |key: &str| kwargs[key].as_u64().map(|n| n as u32);
    SummarizeRequest {
        model: case["model"].as_str().unwrap().into(),
        inputs,
        min_length: uint("min_length"),
        max_length: uint("max_length"),
        max_new_tokens: uint("max_new_tokens"),
        num_beams: uint("num_beams"),
        length_penalty: kwargs["length_penalty"].as_f64().map(|v| v as f32),
        early_stopping: match &kwargs["early_stopping"] {
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => String::new(),
        },
        no_repeat_ngram_size: uint("no_repeat_ngram_size"),
        num_return_sequences: uint("num_return_sequences"),
    }
}

#[tokio::test]
async fn summaries_equal_the_pipeline() {
    let daemon = Daemon::start(&[]).await;
    let models = ["bart-sum", "t5-small-ish", "t5-v1_1"];
    for model in models {
        daemon.load(model, "summarization", &fixture_model(model)).await;
    }
    let mut client = daemon.inference().await;
    let mut compared = 0;
    for case in models.iter().flat_map(|m| cases(m)) {
        let name = case["case"].as_str().unwrap();
        if case.get("pipeline_error").is_some() {
            // pipeline() without truncation=True fails on inputs longer than
            // the model's positions; inferd truncates them (the
            // `long_truncation` case checks that).
            continue;
        }
        let response = client
            .summarize(request(&case))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_inner();
        let want = case["outputs"].as_array().unwrap();
        assert_eq!(response.results.len(), want.len(), "{name}: results");
        for (got, want) in response.results.iter().zip(want) {
            let want: Vec<&str> = want.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            let got: Vec<&str> = got.summaries.iter().map(|s| s.summary_text.as_str()).collect();
            assert_eq!(got, want, "{name}");
        }
        compared += 1;
    }
    eprintln!("{compared} cases equal to pipeline()");
    assert!(compared >= 20, "only {compared} cases");
}

#[tokio::test]
async fn bad_summarization_requests_get_clear_errors() {
    let daemon = Daemon::start(&[]).await;
    daemon.load("bart", "summarization", &fixture_model("bart-sum")).await;
    let mut client = daemon.inference().await;
    let text = "The city council approved a plan to build three new bridges.".to_string();
    let base = || SummarizeRequest {
        model: "bart".into(),
        inputs: vec![text.clone()],
        ..Default::default()
    };
    let bad = [
        (
            "empty text",
            SummarizeRequest {
                inputs: vec![" ".into()],
                ..base()
            },
        ),
        (
            "no inputs",
            SummarizeRequest {
                inputs: vec![],
                ..base()
            },
        ),
        (
            "num_beams 0",
            SummarizeRequest {
                num_beams: Some(0),
                ..base()
            },
        ),
        (
            "min_length > max_length",
            SummarizeRequest {
                min_length: Some(30),
                max_length: Some(10),
                ..base()
            },
        ),
        (
            "more sequences than beams",
            SummarizeRequest {
                num_beams: Some(2),
                num_return_sequences: Some(3),
                ..base()
            },
        ),
        (
            "early_stopping",
            SummarizeRequest {
                early_stopping: "sometimes".into(),
                ..base()
            },
        ),
    ];
    for (what, request) in bad {
        let status = client.summarize(request).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    // Text for classification sent to the summarization model.
    let status = client
        .classify(ClassifyRequest {
            model: "bart".into(),
            inputs: vec![TextInput { text, text_pair: None }],
            ..Default::default()
        })
        .await
        .expect_err("wrong task");
    assert_eq!(status.code(), Code::FailedPrecondition);
}
