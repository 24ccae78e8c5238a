//! Classify against transformers' pipeline("text-classification") outputs
//! recorded by the fixture script: same labels in the same order, scores
//! within 1e-4.

use inferd_proto::v1::{ClassifyRequest, TextInput};
use inferd_tests::{assert_close, fixture_model, reference, Daemon};
use serde::Deserialize;

#[derive(Deserialize)]
struct References {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    model: String,
    inputs: Vec<Input>,
    params: Params,
    expected: Vec<Vec<Expected>>,
}

#[derive(Deserialize)]
struct Input {
    text: String,
    text_pair: Option<String>,
}

#[derive(Deserialize)]
struct Params {
    top_k: Option<u32>,
    function_to_apply: Option<String>,
}

#[derive(Deserialize)]
struct Expected {
    label: String,
    score: f64,
}

fn request(model: &str, case: &Case, inputs: Vec<TextInput>) -> ClassifyRequest {
    ClassifyRequest {
        truncation: None,
        model: model.to_string(),
        inputs,
        top_k: case.params.top_k,
        function_to_apply: case.params.function_to_apply.clone().unwrap_or_default(),
    }
}

#[tokio::test]
async fn classify_matches_pipeline_on_every_fixture_case() {
    // BERT and DistilBERT (and their problem types), then RoBERTa's own head.
    let mut references: References = reference("text_classification.json");
    let roberta: References = reference("text_classification_roberta.json");
    references.cases.extend(roberta.cases);
    let daemon = Daemon::start(&[]).await;
    let mut models: Vec<&str> = references.cases.iter().map(|c| c.model.as_str()).collect();
    models.dedup();
    for model in &models {
        daemon.load(model, "text-classification", &fixture_model(model)).await;
    }
    let mut client = daemon.inference().await;
    let mut checked = 0;
    for (n, case) in references.cases.iter().enumerate() {
        let inputs: Vec<TextInput> = case
            .inputs
            .iter()
            .map(|i| TextInput {
                text: i.text.clone(),
                text_pair: i.text_pair.clone(),
            })
            .collect();
        // The whole case in one request (a batch), as the daemon batches it.
        let response = client
            .classify(request(&case.model, case, inputs.clone()))
            .await
            .unwrap_or_else(|e| panic!("case {n} ({}): {e}", case.model))
            .into_inner();
        assert_eq!(
            response.results.len(),
            case.expected.len(),
            "case {n}: one result per input"
        );
        for (i, (result, expected)) in response.results.iter().zip(&case.expected).enumerate() {
            let got: Vec<&str> = result.labels.iter().map(|l| l.label.as_str()).collect();
            let want: Vec<&str> = expected.iter().map(|l| l.label.as_str()).collect();
            assert_eq!(got, want, "case {n} ({}) input {i}: labels", case.model);
            for (g, w) in result.labels.iter().zip(expected) {
                assert_close(
                    g.score,
                    w.score,
                    &format!("case {n} ({}) input {i} label {}", case.model, w.label),
                );
                checked += 1;
            }
        }
        // And the first input alone: batching must not change the answer.
        let single = client
            .classify(request(&case.model, case, inputs[..1].to_vec()))
            .await
            .expect("single input")
            .into_inner();
        for (g, w) in single.results[0].labels.iter().zip(&case.expected[0]) {
            assert_eq!(g.label, w.label, "case {n}: single-input label");
            assert_close(g.score, w.score, &format!("case {n} single input"));
        }
    }
    assert!(checked > 100, "only {checked} scores compared");
}

#[tokio::test]
async fn sentiment_analysis_alias_and_default_model() {
    let source = fixture_model("distilbert-cls");
    let flag = format!("sst:sentiment-analysis={source}");
    let daemon = Daemon::start(&["--model", &flag]).await;
    let info = daemon
        .models()
        .await
        .get_model(inferd_proto::v1::GetModelRequest { name: "sst".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.task, "text-classification");
    assert!(info.is_default);
    assert_eq!(info.labels, vec!["NEGATIVE", "POSITIVE"]);
    // No model named: the task's default answers.
    let response = daemon
        .inference()
        .await
        .classify(ClassifyRequest {
            inputs: vec![TextInput {
                text: "what a wonderful day".into(),
                text_pair: None,
            }],
            ..Default::default()
        })
        .await
        .expect("classify with the default model")
        .into_inner();
    assert_eq!(response.results[0].labels.len(), 1, "top_k absent returns one label");
}
