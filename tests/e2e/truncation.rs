//! `truncation` as pipeline() takes it, on models whose tokenizer's
//! model_max_length is below their position table (references from
//! tests/fixtures/truncation_fixtures.py): true cuts at model_max_length as
//! pipeline(truncation=True) does; false keeps the input whole, as
//! pipeline() does by default, and refuses one longer than the position
//! table (where pipeline() fails); absent cuts, except T5's inputs, which
//! stay whole as pipeline() leaves them.

use inferd_proto::v1::{ClassifyRequest, SummarizeRequest, TextInput, TranslateRequest};
use inferd_tests::{assert_close, fixture_model, reference, Daemon};
use serde_json::Value;
use tonic::Code;

/// What the daemon answered for a case, as pipeline() prints it: labels
/// and scores, or the generated text.
async fn answer(daemon: &Daemon, case: &Value, truncation: Option<bool>) -> Result<Value, tonic::Status> {
    let model = case["model"].as_str().unwrap().to_string();
    let text = case["text"].as_str().unwrap().to_string();
    let mut client = daemon.inference().await;
    match case["task"].as_str().unwrap() {
        "text-classification" => {
            let response = client
                .classify(ClassifyRequest {
                    model,
                    inputs: vec![TextInput { text, text_pair: None }],
                    top_k: Some(0),
                    truncation,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let labels = &response.results[0].labels;
            Ok(labels
                .iter()
                .map(|l| serde_json::json!({"label": l.label, "score": l.score}))
                .collect())
        }
        "summarization" => {
            let response = client
                .summarize(SummarizeRequest {
                    model,
                    inputs: vec![text],
                    max_new_tokens: Some(6),
                    min_length: Some(0),
                    truncation,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(serde_json::json!([{"summary_text": response.results[0].summaries[0].summary_text}]))
        }
        "translation" => {
            let response = client
                .translate(TranslateRequest {
                    model,
                    inputs: vec![text],
                    max_new_tokens: Some(6),
                    min_length: Some(0),
                    truncation,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(serde_json::json!([{"translation_text": response.results[0].translations[0].translation_text}]))
        }
        other => panic!("unknown task {other}"),
    }
}

fn assert_same(got: &Value, want: &Value, what: &str) {
    let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        match w.get("score") {
            Some(score) => {
                assert_eq!(g["label"], w["label"], "{what}");
                assert_close(g["score"].as_f64().unwrap() as f32, score.as_f64().unwrap(), what);
            }
            None => assert_eq!(g, w, "{what}"),
        }
    }
}

#[tokio::test]
async fn truncation_cuts_at_model_max_length_keeps_inputs_whole_when_false_and_matches_pipeline() {
    let refs: Value = reference("truncation.json");
    let cases = refs["cases"].as_array().unwrap();
    let daemon = Daemon::start(&[]).await;
    let mut loaded = Vec::new();
    for case in cases {
        let (model, task) = (case["model"].as_str().unwrap(), case["task"].as_str().unwrap());
        if !loaded.contains(&model) {
            daemon.load(model, task, &fixture_model(model)).await;
            loaded.push(model);
        }
    }
    let mut refused = 0;
    for case in cases {
        let model = case["model"].as_str().unwrap();
        let what = format!("{model}, {} tokens", case["tokens"]);
        let cut = answer(&daemon, case, Some(true)).await.expect("truncation=true");
        assert_same(&cut, &case["truncated"], &format!("{what}, truncation=true"));
        let default = answer(&daemon, case, None).await.expect("truncation absent");
        if model == "t5-short" {
            // T5 has no position table: left whole by default, as pipeline() does.
            assert_same(&default, &case["whole"], &format!("{what}, default"));
        } else {
            assert_same(&default, &case["truncated"], &format!("{what}, default"));
        }
        match (answer(&daemon, case, Some(false)).await, case.get("whole")) {
            (Ok(whole), Some(want)) => assert_same(&whole, want, &format!("{what}, truncation=false")),
            (Err(status), None) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
                let positions = case["positions"].as_u64().unwrap();
                assert!(
                    status
                        .message()
                        .contains(&format!("more than this model's {positions} positions"))
                        && status.message().contains("truncation=true"),
                    "{what}: {}",
                    status.message()
                );
                refused += 1;
            }
            (got, want) => panic!("{what}, truncation=false: {got:?}, pipeline(): {want:?}"),
        }
    }
    assert_eq!(
        refused, 3,
        "the encoder's, BART's and Marian's inputs longer than their positions"
    );
}
