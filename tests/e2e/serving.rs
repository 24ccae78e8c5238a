//! The serving engine under load: many concurrent requests, small queues,
//! deadlines, cancellation, the in-flight limit, per-model options, the
//! metrics endpoint and shutdown under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::{
    ClassifyRequest, ClassifyResponse, GenerateRequest, GetModelRequest, LoadModelRequest, ModelOptions, RunInput,
    RunRequest, TextInput,
};
use inferd_tests::{fixture_model, metric, Daemon};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

fn classify(model: &str, text: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: model.into(),
        inputs: vec![TextInput {
            text: text.into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

/// Texts of different lengths, so that batches mix and group sizes.
fn texts() -> Vec<String> {
    (0..16)
        .map(|i| format!("request {i}: ") + &"a fairly ordinary sentence about the weather ".repeat(1 + i % 7))
        .collect()
}

fn assert_same(got: &ClassifyResponse, want: &ClassifyResponse, what: &str) {
    let (got, want) = (&got.results[0].labels, &want.results[0].labels);
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.label, w.label, "{what}");
        assert!((g.score - w.score).abs() < 1e-4, "{what}: {} vs {}", g.score, w.score);
    }
}

/// Sends `count` classification requests over `concurrency` tasks (sharing
/// a few connections) and checks every answer against `expected`. Returns
/// the status codes of the failures.
async fn load(
    daemon: &Daemon,
    model: &str,
    count: usize,
    concurrency: usize,
    expected: Arc<Vec<(String, ClassifyResponse)>>,
) -> Vec<Code> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(daemon.inference().await);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let mut client: InferenceClient<Channel> = clients[t % clients.len()].clone();
        let (next, expected, model) = (next.clone(), expected.clone(), model.to_string());
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return failures;
                }
                let (text, want) = &expected[i % expected.len()];
                match client.classify(classify(&model, text)).await {
                    Ok(r) => assert_same(&r.into_inner(), want, &format!("request {i}")),
                    Err(e) => failures.push(e.code()),
                }
            }
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        failures.extend(task.await.expect("load task"));
    }
    failures
}

/// Single-request answers, the reference for answers given under load.
async fn single_answers(daemon: &Daemon, model: &str) -> Arc<Vec<(String, ClassifyResponse)>> {
    let mut client = daemon.inference().await;
    let mut expected = Vec::new();
    for text in texts() {
        let r = client.classify(classify(model, &text)).await.unwrap().into_inner();
        expected.push((text, r));
    }
    Arc::new(expected)
}

#[tokio::test]
async fn twenty_thousand_requests_at_concurrency_64_are_all_answered_correctly() {
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    daemon
        .load("cls", "text-classification", &fixture_model("bert-cls"))
        .await;
    let expected = single_answers(&daemon, "cls").await;
    let started = Instant::now();
    let failures = load(&daemon, "cls", 10_000, 64, expected.clone()).await;
    assert_eq!(failures, vec![], "failures in the first 10000");
    let rss_10k = daemon.rss_bytes();
    let failures = load(&daemon, "cls", 10_000, 64, expected.clone()).await;
    assert_eq!(failures, vec![], "failures in the second 10000");
    let rss_20k = daemon.rss_bytes();
    let elapsed = started.elapsed();
    eprintln!(
        "20000 requests in {elapsed:?} ({:.0}/s); RSS {} MB after 10000, {} MB after 20000",
        20_000.0 / elapsed.as_secs_f64(),
        rss_10k >> 20,
        rss_20k >> 20
    );
    let growth = rss_20k as f64 / rss_10k as f64 - 1.0;
    assert!(
        growth < 0.05,
        "resident memory grew {:.1}% from 10000 to 20000 requests",
        growth * 100.0
    );

    // Every request ran exactly once, in batches that grouped requests.
    let total = 20_000.0 + expected.len() as f64;
    let text = daemon.metrics();
    assert_eq!(metric(&text, "inferd_requests_total{model=\"cls\",code=\"Ok\"}"), total);
    assert_eq!(metric(&text, "inferd_batch_size_sum{model=\"cls\"}"), total);
    let batches = metric(&text, "inferd_batch_size_count{model=\"cls\"}");
    assert!(
        batches < total / 2.0,
        "{batches} batches for {total} requests: no batching"
    );
    assert_eq!(
        metric(&text, "inferd_request_duration_seconds_count{model=\"cls\"}"),
        total
    );
    assert_eq!(
        metric(&text, "inferd_queue_duration_seconds_count{model=\"cls\"}"),
        total
    );
    assert_eq!(metric(&text, "inferd_queue_depth{model=\"cls\"}"), 0.0);
    assert_eq!(metric(&text, "inferd_in_flight_requests"), 0.0);
}

#[tokio::test]
async fn a_small_queue_refuses_with_resource_exhausted_and_nothing_else() {
    let daemon = Daemon::start(&[]).await;
    let request = LoadModelRequest {
        name: "small".into(),
        task: "text-classification".into(),
        source: fixture_model("bert-cls-large"),
        options: Some(ModelOptions {
            queue_size: Some(4),
            max_batch_size: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    daemon.models().await.load_model(request).await.unwrap();
    let expected = single_answers(&daemon, "small").await;
    let failures = load(&daemon, "small", 1_000, 64, expected).await;
    assert!(
        !failures.is_empty(),
        "a queue of 4 never filled under 64 concurrent clients"
    );
    assert!(
        failures.iter().all(|c| *c == Code::ResourceExhausted),
        "failures other than RESOURCE_EXHAUSTED: {failures:?}"
    );
    assert!(failures.len() < 1_000, "nothing was answered");
}

/// A daemon with gpt2-slow loaded as "slow" and one generation occupying
/// its only instance for minutes (until the returned stream is dropped).
/// Batches are static, so that later requests wait in the queue rather
/// than join the running generation (tests/e2e/joining.rs has those).
async fn busy_generator(
    args: &[&str],
) -> (
    Daemon,
    tonic::codec::Streaming<inferd_proto::v1::GenerateStreamResponse>,
) {
    let args: Vec<&str> = ["--static-batching"].into_iter().chain(args.iter().copied()).collect();
    let daemon = Daemon::start(&args).await;
    daemon
        .load("slow", "text-generation", &fixture_model("gpt2-slow"))
        .await;
    let long = GenerateRequest {
        model: "slow".into(),
        inputs: vec!["Once upon a time".into()],
        max_new_tokens: Some(1000),
        min_new_tokens: Some(1000),
        do_sample: Some(false),
        ..Default::default()
    };
    let mut stream = daemon
        .inference()
        .await
        .generate_stream(long)
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    (daemon, stream)
}

fn short_generation() -> GenerateRequest {
    GenerateRequest {
        model: "slow".into(),
        inputs: vec!["Hello".into()],
        max_new_tokens: Some(2),
        do_sample: Some(false),
        ..Default::default()
    }
}

/// Polls the metrics until `series` has `value` (or panics after 10 s).
async fn wait_for_metric(daemon: &Daemon, series: &str, value: f64) {
    let started = Instant::now();
    loop {
        let now = metric(&daemon.metrics(), series);
        if now == value {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{series} stayed {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn requests_whose_deadline_passes_in_the_queue_get_deadline_exceeded_and_never_run() {
    let (daemon, stream) = busy_generator(&["--metrics-listen", "127.0.0.1:0"]).await;
    let client = daemon.inference().await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut request = tonic::Request::new(short_generation());
            // 1 ms for most; some wait in the queue for a while first.
            let timeout = if i % 3 == 0 { 150 } else { 1 };
            request.set_timeout(Duration::from_millis(timeout));
            let asked = Instant::now();
            let result = client.generate(request).await;
            (result.map(|_| ()), asked.elapsed(), timeout)
        }));
    }
    for task in tasks {
        let (result, waited, timeout) = task.await.unwrap();
        let status = result.expect_err("the model is busy: no request can be answered in time");
        // tonic's client also times out by itself, as CANCELLED "Timeout
        // expired", and can do so before the server's answer arrives; what
        // the server answered is checked in its metrics below.
        let client_timeout = status.code() == Code::Cancelled && status.message() == "Timeout expired";
        assert!(status.code() == Code::DeadlineExceeded || client_timeout, "{status:?}");
        assert!(
            waited >= Duration::from_millis(timeout / 2) && waited < Duration::from_millis(timeout + 1000),
            "a {timeout} ms deadline was answered after {waited:?}"
        );
    }
    // The server answered each DEADLINE_EXCEEDED, or saw the client give up
    // first (counted as cancelled); a 1 ms request may even be abandoned by
    // the client before it is sent. The 150 ms ones certainly reached the
    // server. None of them ran.
    let (mut seen, mut stable_since) = (-1.0, Instant::now());
    loop {
        let text = daemon.metrics();
        let exceeded = metric(&text, "inferd_requests_total{model=\"slow\",code=\"DeadlineExceeded\"}");
        let cancelled = metric(&text, "inferd_requests_total{model=\"slow\",code=\"Cancelled\"}");
        if exceeded + cancelled != seen {
            (seen, stable_since) = (exceeded + cancelled, Instant::now());
        } else if stable_since.elapsed() > Duration::from_millis(300) {
            assert!(
                (10.0..=30.0).contains(&seen),
                "{exceeded} exceeded + {cancelled} cancelled"
            );
            assert_eq!(
                metric(&text, "inferd_batch_size_sum{model=\"slow\"}"),
                1.0,
                "only the long generation ran"
            );
            assert_eq!(metric(&text, "inferd_queue_depth{model=\"slow\"}"), 0.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    // The model serves normally afterwards, deadline or not.
    let mut request = tonic::Request::new(short_generation());
    request.set_timeout(Duration::from_secs(60));
    client
        .clone()
        .generate(request)
        .await
        .expect("answered within its deadline");
}

#[tokio::test]
async fn cancelled_requests_leave_the_queue() {
    let (daemon, stream) = busy_generator(&["--metrics-listen", "127.0.0.1:0"]).await;
    let client = daemon.inference().await;
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.generate(short_generation()).await })
        })
        .collect();
    wait_for_metric(&daemon, "inferd_queue_depth{model=\"slow\"}", 5.0).await;
    for task in &waiting {
        task.abort();
    }
    wait_for_metric(&daemon, "inferd_queue_depth{model=\"slow\"}", 0.0).await;
    wait_for_metric(&daemon, "inferd_requests_total{model=\"slow\",code=\"Cancelled\"}", 5.0).await;
    drop(stream);
    client
        .clone()
        .generate(short_generation())
        .await
        .expect("the model is free again");
    let text = daemon.metrics();
    // The long generation, the last request; none of the cancelled ones.
    assert_eq!(metric(&text, "inferd_batch_size_sum{model=\"slow\"}"), 2.0);
}

#[tokio::test]
async fn the_in_flight_limit_refuses_with_resource_exhausted() {
    let (daemon, stream) = busy_generator(&["--max-in-flight", "2", "--metrics-listen", "127.0.0.1:0"]).await;
    let mut client = daemon.inference().await;
    // The stream holds one place; a queued request takes the other.
    let mut queued_client = client.clone();
    let queued = tokio::spawn(async move { queued_client.generate(short_generation()).await });
    wait_for_metric(&daemon, "inferd_in_flight_requests", 2.0).await;
    let word_count = || RunRequest {
        task: "word-count".into(),
        inputs: vec![RunInput {
            text: "one two three".into(),
            data: vec![],
        }],
        ..Default::default()
    };
    let refused = client.run(word_count()).await.expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-in-flight"), "{}", refused.message());
    // Busy, not over a limit: the client may try again in a second.
    assert_eq!(
        refused
            .metadata()
            .get("grpc-retry-pushback-ms")
            .map(|v| v.to_str().unwrap()),
        Some("1000"),
        "{refused:?}"
    );
    drop(stream);
    queued.await.unwrap().expect("the queued request is answered");
    client.run(word_count()).await.expect("under the limit again");
}

#[tokio::test]
async fn models_take_their_own_batching_options_and_show_them() {
    let daemon = Daemon::start(&[
        "--max-batch-size",
        "8",
        "--queue-size",
        "100",
        "--max-queue-delay-ms",
        "3",
    ])
    .await;
    let mut models = daemon.models().await;
    let request = LoadModelRequest {
        name: "tuned".into(),
        task: "text-classification".into(),
        source: fixture_model("bert-cls"),
        options: Some(ModelOptions {
            max_batch_size: Some(4),
            queue_size: Some(9),
            max_queue_delay_ms: Some(7),
            intra_op_threads: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let info = models.load_model(request).await.unwrap().into_inner();
    let options = info.options.expect("options");
    assert_eq!(
        (
            options.max_batch_size,
            options.queue_size,
            options.max_queue_delay_ms,
            options.intra_op_threads
        ),
        (Some(4), Some(9), Some(7), Some(1))
    );
    daemon
        .load("plain", "text-classification", &fixture_model("bert-cls"))
        .await;
    let info = models
        .get_model(GetModelRequest { name: "plain".into() })
        .await
        .unwrap()
        .into_inner();
    let options = info.options.expect("options");
    assert_eq!(
        (options.max_batch_size, options.queue_size, options.max_queue_delay_ms),
        (Some(8), Some(100), Some(3))
    );
    assert!(options.intra_op_threads.unwrap_or(0) >= 1);
    assert_eq!(info.queue_depth, 0);

    let bad = LoadModelRequest {
        name: "bad".into(),
        task: "text-classification".into(),
        source: fixture_model("bert-cls"),
        options: Some(ModelOptions {
            max_batch_size: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = models.load_model(bad).await.expect_err("batch size 0");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("max_batch_size"), "{}", status.message());
}

#[tokio::test]
async fn the_metrics_endpoint_serves_prometheus_text() {
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    daemon
        .load("cls", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut client = daemon.inference().await;
    client.classify(classify("cls", "fine")).await.unwrap();
    let empty = client.classify(classify("cls", "")).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let unknown = client.classify(classify("nope", "x")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let text = daemon.metrics();
    for family in [
        "inferd_requests_total counter",
        "inferd_queue_duration_seconds histogram",
        "inferd_inference_duration_seconds histogram",
        "inferd_request_duration_seconds histogram",
        "inferd_batch_size histogram",
        "inferd_queue_depth gauge",
        "inferd_model_memory_bytes gauge",
        "inferd_models_loaded gauge",
        "inferd_in_flight_requests gauge",
    ] {
        assert!(text.contains(&format!("# TYPE {family}\n")), "no {family} in\n{text}");
    }
    assert_eq!(metric(&text, "inferd_requests_total{model=\"cls\",code=\"Ok\"}"), 1.0);
    assert_eq!(
        metric(&text, "inferd_requests_total{model=\"cls\",code=\"InvalidArgument\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "inferd_requests_total{model=\"\",code=\"NotFound\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "inferd_request_duration_seconds_bucket{model=\"cls\",le=\"+Inf\"}"
        ),
        2.0
    );
    assert!(metric(&text, "inferd_model_memory_bytes{model=\"cls\"}") > 100_000.0);
    // cls and the word-count plugin's model-less task.
    assert_eq!(metric(&text, "inferd_models_loaded"), 2.0);
    let (status, _) = daemon.http_get("/nothing");
    assert!(status.contains(" 404 "), "{status}");
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_requests_and_refuses_new_ones() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("cls", "text-classification", &fixture_model("bert-cls-large"))
        .await;
    let expected = single_answers(&daemon, "cls").await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let mut client = daemon.inference().await;
        let (expected, stop, answered) = (expected.clone(), stop.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            for i in t.. {
                let (text, want) = &expected[i % expected.len()];
                match client.classify(classify("cls", text)).await {
                    Ok(r) => {
                        assert_same(&r.into_inner(), want, "under shutdown");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Some(e),
                }
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
            }
            unreachable!()
        }));
    }
    let started = Instant::now();
    while answered.load(Ordering::Relaxed) < 32 {
        assert!(started.elapsed() < Duration::from_secs(60), "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = answered.load(Ordering::Relaxed);
    let status = daemon.terminate().await;
    assert!(status.success(), "exit status {status}");
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        if let Some(e) = task.await.unwrap() {
            // Refused (the server is going away), never failed half-way.
            assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        }
    }
    // The requests in flight at SIGTERM were answered.
    assert!(
        answered.load(Ordering::Relaxed) > before,
        "nothing was answered after SIGTERM"
    );
}
