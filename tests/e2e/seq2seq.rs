//! Summarization and translation through the daemon against transformers'
//! pipeline("summarization") and pipeline("translation_xx_to_yy"), recorded
//! by tests/fixtures/seq2seq_fixtures.py
//! on small random models: a BART with distilbart-cnn-12-6's generation
//! settings, a T5 with t5-small's task prefixes and a T5 v1.1 (gated GELU,
//! separate output layer): greedy and beam search, length limits, n-gram
//! blocking, length penalty, early stopping true/false/"never", several
//! summaries per input.

use inferd_proto::v1::{
    ClassifyRequest, Summaries, SummarizeRequest, SummarizeResponse, TextInput, TranslateRequest, TranslateResponse,
    Translations,
};
use inferd_tests::{fixture_model, metric, Daemon};
use tonic::Code;

pub(crate) fn cases(model: &str, task: &str) -> Vec<serde_json::Value> {
    let refs: serde_json::Value = inferd_tests::reference("seq2seq.json");
    refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == model && c["task"].as_str().unwrap().starts_with(task))
        .cloned()
        .collect()
}

/// The texts pipeline() gave, per input.
pub(crate) fn outputs(case: &serde_json::Value) -> Vec<Vec<String>> {
    case["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o.as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// The summaries of each input.
pub(crate) fn summary_texts(response: SummarizeResponse) -> Vec<Vec<String>> {
    let texts = |r: Summaries| r.summaries.into_iter().map(|s| s.summary_text).collect();
    response.results.into_iter().map(texts).collect()
}

/// The translations of each input.
pub(crate) fn translation_texts(response: TranslateResponse) -> Vec<Vec<String>> {
    let texts = |r: Translations| r.translations.into_iter().map(|t| t.translation_text).collect();
    response.results.into_iter().map(texts).collect()
}

pub(crate) fn request(case: &serde_json::Value) -> SummarizeRequest {
    let kwargs = &case["pipeline_kwargs"];
    let inputs = match &case["inputs"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        other => panic!("inputs {other}"),
    };
    let uint = |key: &str| kwargs[key].as_u64().map(|n| n as u32);
    SummarizeRequest {
        truncation: None,
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

/// A translation case's request.
pub(crate) fn translate_request(case: &serde_json::Value) -> TranslateRequest {
    // "translation_en_to_fr" -> en, fr; plain "translation": the model's own.
    let task = case["task"].as_str().unwrap();
    let (src, tgt) = match task.strip_prefix("translation_").and_then(|t| t.split_once("_to_")) {
        Some((src, tgt)) => (src.to_string(), tgt.to_string()),
        None => (String::new(), String::new()),
    };
    let s = request(case);
    TranslateRequest {
        truncation: None,
        model: s.model,
        inputs: s.inputs,
        src_lang: src,
        tgt_lang: tgt,
        min_length: s.min_length,
        max_length: s.max_length,
        max_new_tokens: s.max_new_tokens,
        num_beams: s.num_beams,
        length_penalty: s.length_penalty,
        early_stopping: s.early_stopping,
        no_repeat_ngram_size: s.no_repeat_ngram_size,
        num_return_sequences: s.num_return_sequences,
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
    for case in models.iter().flat_map(|m| cases(m, "summarization")) {
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
        assert_eq!(summary_texts(response), outputs(&case), "{name}");
        compared += 1;
    }
    eprintln!("{compared} cases equal to pipeline()");
    assert!(compared >= 20, "only {compared} cases");
}

/// Requests that arrive together are decoded together, each with its own
/// settings (greedy and beam search, lengths, penalties, several inputs),
/// and each gets the answer pipeline() gives it alone; a bad request among
/// them fails alone.
#[tokio::test]
async fn concurrent_requests_are_decoded_together() {
    let daemon = Daemon::start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-batch-size",
        "32",
        "--max-queue-delay-ms",
        "500",
    ])
    .await;
    daemon
        .load("bart-sum", "summarization", &fixture_model("bart-sum"))
        .await;
    let client = daemon.inference().await;
    let cases: Vec<_> = cases("bart-sum", "summarization")
        .into_iter()
        .filter(|c| c.get("pipeline_error").is_none())
        .collect();
    let mut answers = Vec::new();
    for case in &cases {
        let (mut client, request, name) = (client.clone(), request(case), case["case"].to_string());
        answers.push(tokio::spawn(async move {
            let response = client.summarize(request).await;
            (name, response)
        }));
    }
    let mut bad_client = client.clone();
    let bad = tokio::spawn(async move {
        bad_client
            .summarize(SummarizeRequest {
                model: "bart-sum".into(),
                inputs: vec!["The council approved three new bridges.".into()],
                min_length: Some(30),
                max_length: Some(10),
                ..Default::default()
            })
            .await
    });
    for (case, answer) in cases.iter().zip(answers) {
        let (name, response) = answer.await.unwrap();
        let response = response.unwrap_or_else(|e| panic!("{name}: {e}")).into_inner();
        assert_eq!(summary_texts(response), outputs(case), "{name}");
    }
    let status = bad.await.unwrap().expect_err("min_length > max_length");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let text = daemon.metrics();
    let requests = (cases.len() + 1) as f64;
    assert_eq!(metric(&text, "inferd_batch_size_sum{model=\"bart-sum\"}"), requests);
    let batches = metric(&text, "inferd_batch_size_count{model=\"bart-sum\"}");
    assert!(
        batches <= 3.0,
        "{batches} batches for {requests} requests: not decoded together"
    );
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
            "num_beams 65",
            SummarizeRequest {
                num_beams: Some(65),
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
        (
            "max_length over the model's 128 positions",
            SummarizeRequest {
                max_length: Some(500),
                ..base()
            },
        ),
        (
            "max_new_tokens over the model's 128 positions",
            SummarizeRequest {
                max_new_tokens: Some(200),
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

#[tokio::test]
async fn translations_equal_the_pipeline() {
    let daemon = Daemon::start(&[]).await;
    let models = ["t5-small-ish", "marian-fr-en"];
    for model in models {
        daemon.load(model, "translation", &fixture_model(model)).await;
    }
    let mut client = daemon.inference().await;
    let mut compared = 0;
    for case in models.iter().flat_map(|m| cases(m, "translation")) {
        let name = case["case"].as_str().unwrap();
        if case.get("pipeline_error").is_some() {
            continue;
        }
        let response = client
            .translate(translate_request(&case))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_inner();
        assert_eq!(translation_texts(response), outputs(&case), "{name}");
        compared += 1;
    }
    eprintln!("{compared} cases equal to pipeline()");
    assert!(compared >= 14, "only {compared} cases");

    // The same T5 with only spiece.model (no tokenizer.json): the tokenizer
    // is converted at load time and gives the same translations.
    let spm_only = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_model("t5-small-ish")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "tokenizer.json" {
            std::fs::copy(&path, spm_only.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    daemon
        .load("t5-spm", "translation", spm_only.path().to_str().unwrap())
        .await;
    let case = cases("t5-small-ish", "translation_en_to_fr").remove(0);
    let s = request(&case);
    let response = client
        .translate(TranslateRequest {
            model: "t5-spm".into(),
            inputs: s.inputs,
            src_lang: "en".into(),
            tgt_lang: "fr".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(translation_texts(response), outputs(&case), "T5 from spiece.model");

    // Marian's own direction may be named.
    let case = cases("marian-fr-en", "translation").remove(0);
    let s = request(&case);
    let response = client
        .translate(TranslateRequest {
            model: "marian-fr-en".into(),
            inputs: s.inputs,
            src_lang: "fr".into(),
            tgt_lang: "en".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.results[0].translations[0].translation_text,
        outputs(&case)[0][0]
    );

    // Languages the model cannot do, or half a pair.
    for (model, src, tgt) in [
        ("t5-small-ish", "en", "ja"),
        ("t5-small-ish", "fr", "en"),
        ("t5-small-ish", "en", ""),
        ("marian-fr-en", "en", "fr"),
    ] {
        let status = client
            .translate(TranslateRequest {
                model: model.into(),
                inputs: vec!["Hello".into()],
                src_lang: src.into(),
                tgt_lang: tgt.into(),
                ..Default::default()
            })
            .await
            .expect_err("unknown direction");
        assert_eq!(status.code(), Code::InvalidArgument, "{model} {src}->{tgt}: {status:?}");
    }
}

/// `inferctl summarize` (a file or the text itself) and `inferctl translate
/// --from --to` print pipeline()'s texts.
#[tokio::test]
async fn inferctl_summarizes_and_translates() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("bart-sum", "summarization", &fixture_model("bart-sum"))
        .await;
    daemon
        .load("marian", "translation", &fixture_model("marian-fr-en"))
        .await;
    let case = |name: &str| {
        let refs: serde_json::Value = inferd_tests::reference("seq2seq.json");
        let found = refs["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["case"] == name)
            .cloned();
        found.unwrap_or_else(|| panic!("no case {name}"))
    };
    let inferctl = |args: &[&str]| daemon.inferctl(args);

    // `--json` prints pipeline()'s records: a list of summaries per input.
    let summaries_of = |printed: &str| -> Vec<Vec<String>> {
        let records: Vec<Vec<serde_json::Value>> = serde_json::from_str(printed).unwrap();
        let texts = |r: &Vec<serde_json::Value>| {
            r.iter()
                .map(|s| s["summary_text"].as_str().unwrap().to_string())
                .collect()
        };
        records.iter().map(texts).collect()
    };

    // An article in a file, greedy.
    let greedy = case("bart-sum__summarization__greedy");
    let article = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(article.path(), greedy["inputs"].as_str().unwrap()).unwrap();
    let path = article.path().to_str().unwrap();
    let printed = inferctl(&["--json", "summarize", path, "--num-beams", "1", "--model", "bart-sum"]);
    let texts = summaries_of(&printed);
    assert_eq!(texts, outputs(&greedy));

    // The text itself, the model's own settings, plain output.
    let default = case("bart-sum__summarization__default");
    let printed = inferctl(&["summarize", default["inputs"].as_str().unwrap(), "--model", "bart-sum"]);
    assert_eq!(printed.trim_end(), outputs(&default)[0][0].trim());

    // Several summaries of one input, best first.
    let two = case("bart-sum__summarization__num_return_sequences_2");
    let printed = inferctl(&[
        "--json",
        "summarize",
        two["inputs"].as_str().unwrap(),
        "--num-return-sequences",
        "2",
        "--model",
        "bart-sum",
    ]);
    let texts = summaries_of(&printed);
    assert_eq!(texts, outputs(&two));

    // Greedy translation.
    let greedy = case("marian-fr-en__translation__greedy");
    let printed = inferctl(&[
        "translate",
        greedy["inputs"].as_str().unwrap(),
        "--num-beams",
        "1",
        "--model",
        "marian",
    ]);
    assert_eq!(printed.trim_end(), outputs(&greedy)[0][0].trim());

    // Marian's own direction, named.
    let french = case("marian-fr-en__translation__default");
    let text = french["inputs"].as_str().unwrap();
    let printed = inferctl(&[
        "--json",
        "translate",
        text,
        "--from",
        "fr",
        "--to",
        "en",
        "--model",
        "marian",
    ]);
    let records: Vec<Vec<serde_json::Value>> = serde_json::from_str(&printed).unwrap();
    assert_eq!(records[0][0]["translation_text"], outputs(&french)[0][0]);
    // A direction it does not translate is refused.
    let out = std::process::Command::new(inferd_tests::release_dir().join("inferctl"))
        .args([
            "--addr",
            &daemon.url(),
            "translate",
            text,
            "--from",
            "en",
            "--to",
            "fr",
            "--model",
            "marian",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fr→en"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// T5 has no position table to bound its inputs: inputs longer than
/// INFERD_MAX_INPUT_TOKENS (default 4096) are refused, not encoded.
#[tokio::test]
async fn over_long_t5_inputs_are_refused() {
    let daemon = Daemon::start(&[]).await;
    daemon.load("t5", "summarization", &fixture_model("t5-small-ish")).await;
    let mut client = daemon.inference().await;
    let short = "The city council approved a plan to build three new bridges.".to_string();
    let long = "The council approved a plan on Tuesday. ".repeat(1000);
    let status = client
        .summarize(SummarizeRequest {
            model: "t5".into(),
            inputs: vec![short.clone(), long],
            ..Default::default()
        })
        .await
        .expect_err("over 4096 tokens");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("inputs[1]") && status.message().contains("at most 4096"),
        "{}",
        status.message()
    );
    let summary = client
        .summarize(SummarizeRequest {
            model: "t5".into(),
            inputs: vec![short.clone()],
            ..Default::default()
        })
        .await
        .expect("a short input after the refusal");
    assert_eq!(summary.into_inner().results.len(), 1);

    // A lower limit for the daemon.
    let daemon = Daemon::start_with_env(&[], &[("INFERD_MAX_INPUT_TOKENS", "8")]).await;
    daemon.load("t5", "translation", &fixture_model("t5-small-ish")).await;
    let mut client = daemon.inference().await;
    let status = client
        .translate(TranslateRequest {
            model: "t5".into(),
            inputs: vec![short],
            src_lang: "en".into(),
            tgt_lang: "fr".into(),
            ..Default::default()
        })
        .await
        .expect_err("over 8 tokens");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("at most 8"), "{}", status.message());
}
