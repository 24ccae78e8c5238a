//! `load = "lazy"` models: registered at start-up without loading, loaded
//! by their first request (which waits for it, once however many come at
//! once), and evicted least recently used first when the memory budget
//! needs room for another load; eagerly loaded models are never evicted.
//! The metrics count lazy loads and evictions.

use std::time::Duration;

use inferd_proto::v1::{ClassifyRequest, GetModelRequest, ModelState, TextInput, UnloadModelRequest};
use inferd_tests::{fixture_model, metric, Daemon};
use tonic::Code;

/// A daemon started from a config file of `models` tables (TOML), with a
/// memory budget and metrics. bert-cls's weights are 184 KiB: one copy
/// fits in 300 KiB, two do not.
async fn daemon_with(models: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inferd.toml");
    std::fs::write(&config, format!("memory_budget = \"300KiB\"\n{models}")).unwrap();
    let daemon = Daemon::start(&["--config", config.to_str().unwrap(), "--metrics-listen", "127.0.0.1:0"]).await;
    (daemon, dir)
}

fn model_table(name: &str, load: &str) -> String {
    format!(
        "[[models]]\nname = \"{name}\"\ntask = \"text-classification\"\nsource = \"{}\"\nload = \"{load}\"\n",
        fixture_model("bert-cls")
    )
}

fn classify(model: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: model.into(),
        inputs: vec![TextInput {
            text: "a lazy model answers its first request".into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

async fn state(daemon: &Daemon, name: &str) -> (ModelState, u64, String) {
    let info = daemon
        .models()
        .await
        .get_model(GetModelRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner();
    (info.state(), info.memory_bytes, info.error)
}

fn counter(daemon: &Daemon, series: &str, model: &str) -> f64 {
    metric(&daemon.metrics(), &format!("{series}{{model=\"{model}\"}}"))
}

#[tokio::test]
async fn a_lazy_model_loads_on_its_first_request_and_the_least_recently_used_makes_room_for_another() {
    let (daemon, _config) = daemon_with(&(model_table("a", "lazy") + &model_table("b", "lazy"))).await;
    // Serving, yet nothing loaded: both idle, holding no memory; the first
    // configured is the task's default all the same.
    for name in ["a", "b"] {
        assert_eq!(state(&daemon, name).await, (ModelState::Idle, 0, String::new()));
    }
    assert_eq!(metric(&daemon.metrics(), "inferd_memory_reserved_bytes"), 0.0);
    let listed = daemon.inferctl(&["models", "list"]);
    assert!(
        listed.lines().any(|l| l.starts_with("a*") && l.contains("idle")),
        "{listed}"
    );

    let mut inference = daemon.inference().await;
    // Through the task's default: `a` loads, and answers.
    let default_request = ClassifyRequest {
        model: String::new(),
        ..classify("")
    };
    let first = inference.classify(default_request).await.unwrap().into_inner();
    assert!(!first.results[0].labels.is_empty(), "{first:?}");
    assert_eq!(state(&daemon, "a").await.0, ModelState::Ready);
    assert_eq!(counter(&daemon, "inferd_model_lazy_loads_total", "a"), 1.0);

    // `b` needs a's room: a (least recently used, and idle) is evicted.
    let from_b = inference.classify(classify("b")).await.unwrap().into_inner();
    assert_eq!(from_b.results, first.results, "same weights, same answer");
    assert_eq!(state(&daemon, "a").await, (ModelState::Idle, 0, String::new()));
    assert_eq!(state(&daemon, "b").await.0, ModelState::Ready);
    assert_eq!(counter(&daemon, "inferd_model_evictions_total", "a"), 1.0);

    // And back: b goes, a is loaded again and answers as before.
    let again = inference.classify(classify("a")).await.unwrap().into_inner();
    assert_eq!(again.results, first.results);
    assert_eq!(state(&daemon, "b").await.0, ModelState::Idle);
    assert_eq!(counter(&daemon, "inferd_model_lazy_loads_total", "a"), 2.0);
    assert_eq!(counter(&daemon, "inferd_model_lazy_loads_total", "b"), 1.0);
    assert_eq!(counter(&daemon, "inferd_model_evictions_total", "b"), 1.0);
    let held = state(&daemon, "a").await.1;
    assert_eq!(metric(&daemon.metrics(), "inferd_memory_reserved_bytes"), held as f64);
    let log = daemon.log();
    assert!(
        log.contains("evicting the least recently used lazy model to make room for b"),
        "{log}"
    );
}

#[tokio::test]
async fn requests_that_arrive_together_for_an_idle_model_load_it_once_and_all_get_answers() {
    let (daemon, _config) = daemon_with(&model_table("a", "lazy")).await;
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut inference = daemon.inference().await;
        calls.push(tokio::spawn(async move { inference.classify(classify("a")).await }));
    }
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap().expect("answered once loaded").into_inner());
    }
    // The same answer each time: the same labels, and scores equal to the
    // last bits (requests that ran in batches of other sizes take other
    // BLAS kernels: MKL's differ by batch size on AVX2 processors).
    for answer in &answers[1..] {
        let (got, want) = (&answer.results[0].labels, &answers[0].results[0].labels);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.label, w.label, "{answers:?}");
            assert!((g.score - w.score).abs() < 1e-5, "{answers:?}");
        }
    }
    assert_eq!(counter(&daemon, "inferd_model_lazy_loads_total", "a"), 1.0);
}

#[tokio::test]
async fn an_eager_model_is_never_evicted_and_a_lazy_one_that_cannot_fit_is_refused_until_there_is_room() {
    let (daemon, _config) = daemon_with(&(model_table("eager", "eager") + &model_table("lazy", "lazy"))).await;
    assert_eq!(state(&daemon, "eager").await.0, ModelState::Ready);
    let mut inference = daemon.inference().await;
    for _ in 0..2 {
        // Each request tries again, and gets the load's refusal.
        let refused = inference.classify(classify("lazy")).await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("memory budget") && refused.message().contains("held by eager"),
            "{}",
            refused.message()
        );
    }
    let (lazy_state, _, error) = state(&daemon, "lazy").await;
    assert_eq!(lazy_state, ModelState::Failed);
    assert!(error.contains("memory budget"), "{error}");
    assert_eq!(state(&daemon, "eager").await.0, ModelState::Ready);
    assert_eq!(counter(&daemon, "inferd_model_evictions_total", "eager"), 0.0);

    daemon
        .models()
        .await
        .unload_model(UnloadModelRequest { name: "eager".into() })
        .await
        .unwrap();
    inference.classify(classify("lazy")).await.expect("room now");
    assert_eq!(state(&daemon, "lazy").await.0, ModelState::Ready);
}

#[tokio::test]
async fn a_request_whose_deadline_passes_while_its_lazy_model_loads_is_answered_deadline_exceeded() {
    // The test plugin's `warm-up-slow` model takes 300 ms to warm up.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inferd.toml");
    std::fs::write(
        &config,
        "[[models]]\nname = \"warm-up-slow\"\ntask = \"panic\"\nload = \"lazy\"\n",
    )
    .unwrap();
    let plugins = inferd_tests::test_plugin_dir();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--plugin-dir",
        plugins.to_str().unwrap(),
    ])
    .await;
    let mut inference = daemon.inference().await;
    let mut hurried = tonic::Request::new(inferd_tests::panic_request("warm-up-slow", "fine"));
    hurried.set_timeout(Duration::from_millis(100));
    let late = inference.run(hurried).await.unwrap_err();
    // tonic's own deadline handling may answer first (CANCELLED "Timeout
    // expired"), at the same moment as the daemon's.
    let client_timeout = late.code() == Code::Cancelled && late.message() == "Timeout expired";
    assert!(late.code() == Code::DeadlineExceeded || client_timeout, "{late:?}");
    if !client_timeout {
        assert!(late.message().contains("was loading for it"), "{}", late.message());
    }
    // The load went on: the next request is served.
    inference
        .run(inferd_tests::panic_request("warm-up-slow", "fine"))
        .await
        .expect("served once loaded");
}
