//! Failure isolation: when a batch fails as a whole (a panic in a plugin),
//! its requests run again one at a time, so that only the request that
//! causes the failure gets INTERNAL and the others their normal answers.
//! Checked for every plugin kind: the real plugins through the SDK's
//! fault-injection hook (a request carrying INFERD_FAULT_PANIC_MARKER's
//! marker panics its batch), the test-only panicky plugin through its own
//! panic. Each test first asks every request alone, for the answers to
//! expect, then sends them together and reads from the metrics that they
//! really shared one batch.

use inferd_proto::v1::{
    AudioInput, Classification, ClassifyImageRequest, ClassifyRequest, GenerateRequest, ImageInput, LoadModelRequest,
    ModelOptions, TextInput, TranscribeRequest, UnloadModelRequest,
};
use inferd_tests::{fixture_model, fixtures_dir, metric, panic_request, test_plugin_dir, Daemon};
use tokio_stream::StreamExt;
use tonic::{Code, Status};

/// The fault-injection marker the daemon's plugins are started with.
const MARKER: &str = "inferd-isolation-test-fault-5f1c";

/// How long the first request of a batch waits for others: long enough for
/// requests sent together to share one batch.
const MAX_QUEUE_DELAY_MS: u32 = 300;

/// A daemon serving metrics, whose plugins panic on batches carrying `MARKER`.
async fn faulty_daemon(extra_args: &[&str]) -> Daemon {
    let args = [&["--metrics-listen", "127.0.0.1:0"][..], extra_args].concat();
    Daemon::start_with_env(&args, &[("INFERD_FAULT_PANIC_MARKER", MARKER)]).await
}

/// Loads `source` (none for a model-less task) as `name`, with a queue that
/// batches requests arriving within `MAX_QUEUE_DELAY_MS`.
async fn load_batching(daemon: &Daemon, name: &str, task: &str, source: &str) {
    let request = LoadModelRequest {
        name: name.into(),
        task: task.into(),
        source: source.into(),
        options: Some(ModelOptions {
            max_batch_size: Some(16),
            max_queue_delay_ms: Some(MAX_QUEUE_DELAY_MS),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Err(e) = daemon.models().await.load_model(request).await {
        panic!("LoadModel {name} failed: {e}\n{}", daemon.log());
    }
}

/// `model`'s batch counters: (batches run, requests run, batches failed as a whole).
fn batch_counters(daemon: &Daemon, model: &str) -> (f64, f64, f64) {
    let text = daemon.metrics();
    (
        metric(&text, &format!("inferd_batch_size_count{{model=\"{model}\"}}")),
        metric(&text, &format!("inferd_batch_size_sum{{model=\"{model}\"}}")),
        metric(&text, &format!("inferd_failed_batches_total{{model=\"{model}\"}}")),
    )
}

/// Asserts that since `before`, `model` ran exactly one batch of `n`
/// requests, which failed as a whole, and then each of the `n` alone.
fn assert_one_shared_batch_failed_then_ran_alone(daemon: &Daemon, model: &str, before: (f64, f64, f64), n: usize) {
    let after = batch_counters(daemon, model);
    let n = n as f64;
    let delta = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    assert_eq!(
        delta,
        (n + 1.0, 2.0 * n, 1.0),
        "expected one failed batch of {n} then {n} runs alone, as (batches, requests, failed batches)\n{}",
        daemon.log()
    );
    assert!(
        daemon
            .log()
            .contains("running its unanswered requests again one at a time"),
        "the batch failure is not logged:\n{}",
        daemon.log()
    );
}

/// Asserts a failure is the marked request's INTERNAL, naming the hook.
fn assert_injected_fault(result: Result<impl std::fmt::Debug, Status>) {
    let status = result.expect_err("the marked request fails");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status.message().contains("INFERD_FAULT_PANIC_MARKER"),
        "the message should name the hook: {status:?}"
    );
}

/// Asserts the same labels in the same order, with the same scores (to
/// rounding).
fn assert_same_classes(got: &[Classification], want: &[Classification], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: results");
    for (g, w) in got.iter().zip(want) {
        let labels = |c: &Classification| c.labels.iter().map(|l| l.label.clone()).collect::<Vec<_>>();
        assert_eq!(labels(g), labels(w), "{what}: labels");
        for (gl, wl) in g.labels.iter().zip(&w.labels) {
            assert!(
                (gl.score - wl.score).abs() < 1e-5,
                "{what}: {} vs {}",
                gl.score,
                wl.score
            );
        }
    }
}

/// Runs the futures at once (each on its own task) and returns their results
/// in order.
async fn together<F, T>(calls: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("request task"));
    }
    results
}

#[tokio::test]
async fn a_marked_text_classification_request_fails_alone_and_its_batch_mates_get_their_answers() {
    let daemon = faulty_daemon(&[]).await;
    load_batching(&daemon, "cls", "text-classification", &fixture_model("bert-cls")).await;
    let client = daemon.inference().await;
    let classify = |text: &str| ClassifyRequest {
        model: "cls".into(),
        inputs: vec![TextInput {
            text: text.into(),
            text_pair: None,
        }],
        top_k: Some(2),
        ..Default::default()
    };
    let good = ["what a wonderful day", "the food was cold and the service slow"];
    let mut alone = Vec::new();
    for text in good {
        alone.push(client.clone().classify(classify(text)).await.unwrap().into_inner());
    }

    let before = batch_counters(&daemon, "cls");
    let texts = [
        good[0].to_string(),
        format!("{} {MARKER}", good[0]),
        good[1].to_string(),
    ];
    let calls = texts
        .iter()
        .map(|text| {
            let (mut client, request) = (client.clone(), classify(text));
            async move { client.classify(request).await.map(|r| r.into_inner()) }
        })
        .collect();
    let mut answers = together(calls).await.into_iter();
    let first = answers.next().unwrap().expect("a good request");
    assert_injected_fault(answers.next().unwrap());
    let last = answers.next().unwrap().expect("a good request");
    assert_same_classes(&first.results, &alone[0].results, "the first good request");
    assert_same_classes(&last.results, &alone[1].results, "the second good request");
    assert_one_shared_batch_failed_then_ran_alone(&daemon, "cls", before, 3);
}

/// Streams a generation: its token ids and final text, or its error.
async fn stream(
    mut client: inferd_proto::v1::inference_client::InferenceClient<tonic::transport::Channel>,
    request: GenerateRequest,
) -> Result<(Vec<i64>, String), Status> {
    let mut stream = client.generate_stream(request).await?.into_inner();
    let (mut tokens, mut text) = (vec![], String::new());
    while let Some(message) = stream.next().await {
        let message = message?;
        tokens.extend(message.token_ids);
        if !message.finish_reason.is_empty() {
            text = message.generated_text;
        }
    }
    Ok((tokens, text))
}

#[tokio::test]
async fn a_marked_generation_stream_fails_alone_and_the_streams_and_generations_batched_with_it_complete() {
    // Static batches: with continuous batching the three requests could
    // join the tail of the run that answered the ones before (its clients
    // have their answers as each sequence ends), not form a batch of three.
    let daemon = faulty_daemon(&["--static-batching"]).await;
    load_batching(&daemon, "gpt2", "text-generation", &fixture_model("gpt2-gen")).await;
    let client = daemon.inference().await;
    let generate = |prompt: &str| GenerateRequest {
        model: "gpt2".into(),
        inputs: vec![prompt.into()],
        max_new_tokens: Some(6),
        do_sample: Some(false),
        ..Default::default()
    };
    let streamed_prompt = "The hotel room was dirty and the staff were rude.";
    let whole_prompt = "Hello world";
    let streamed_alone = stream(client.clone(), generate(streamed_prompt)).await.unwrap();
    let whole_alone = client
        .clone()
        .generate(generate(whole_prompt))
        .await
        .unwrap()
        .into_inner();
    assert!(!streamed_alone.0.is_empty(), "the stream alone yields tokens");

    let before = batch_counters(&daemon, "gpt2");
    let marked = generate(&format!("{streamed_prompt} {MARKER}"));
    let mut whole_client = client.clone();
    let (streamed, failed, whole) = tokio::join!(
        stream(client.clone(), generate(streamed_prompt)),
        stream(client.clone(), marked),
        whole_client.generate(generate(whole_prompt)),
    );
    assert_eq!(streamed.expect("the good stream"), streamed_alone, "the good stream");
    assert_eq!(whole.expect("the good generation").into_inner(), whole_alone);
    assert_injected_fault(failed);
    assert_one_shared_batch_failed_then_ran_alone(&daemon, "gpt2", before, 3);
}

fn image(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join("images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn a_marked_image_fails_alone_and_the_images_batched_with_it_are_classified() {
    let daemon = faulty_daemon(&[]).await;
    load_batching(&daemon, "vit", "image-classification", &fixture_model("vit-cls")).await;
    let client = daemon.inference().await;
    let classify = |data: Vec<u8>| ClassifyImageRequest {
        model: "vit".into(),
        inputs: vec![ImageInput { data }],
        top_k: Some(3),
        ..Default::default()
    };
    let good = [image("chelsea.png"), image("rgb_97x61.png")];
    let mut alone = Vec::new();
    for data in &good {
        alone.push(
            client
                .clone()
                .classify_image(classify(data.clone()))
                .await
                .unwrap()
                .into_inner(),
        );
    }

    let before = batch_counters(&daemon, "vit");
    // The marker after the image's last chunk, where a decoder would not look.
    let mut marked = good[0].clone();
    marked.extend(MARKER.as_bytes());
    let calls = [good[0].clone(), marked, good[1].clone()]
        .into_iter()
        .map(|data| {
            let (mut client, request) = (client.clone(), classify(data));
            async move { client.classify_image(request).await.map(|r| r.into_inner()) }
        })
        .collect();
    let mut answers = together(calls).await.into_iter();
    let first = answers.next().unwrap().expect("a good image");
    assert_injected_fault(answers.next().unwrap());
    let last = answers.next().unwrap().expect("a good image");
    assert_same_classes(&first.results, &alone[0].results, "the first good image");
    assert_same_classes(&last.results, &alone[1].results, "the second good image");
    assert_one_shared_batch_failed_then_ran_alone(&daemon, "vit", before, 3);
}

fn audio(file: &str) -> Vec<u8> {
    let path = fixtures_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn a_marked_recording_fails_alone_and_the_recordings_batched_with_it_are_transcribed() {
    let daemon = faulty_daemon(&[]).await;
    load_batching(
        &daemon,
        "w2v2",
        "automatic-speech-recognition",
        &fixture_model("w2v2-base"),
    )
    .await;
    let client = daemon.inference().await;
    let transcribe = |data: Vec<u8>| TranscribeRequest {
        model: "w2v2".into(),
        inputs: vec![AudioInput { data }],
        ..Default::default()
    };
    let good = [audio("audio/speech_16k.wav"), audio("audio/speech_16k.flac")];
    let mut alone = Vec::new();
    for data in &good {
        alone.push(
            client
                .clone()
                .transcribe(transcribe(data.clone()))
                .await
                .unwrap()
                .into_inner(),
        );
    }

    let before = batch_counters(&daemon, "w2v2");
    let mut marked = good[0].clone();
    marked.extend(MARKER.as_bytes());
    let calls = [good[0].clone(), marked, good[1].clone()]
        .into_iter()
        .map(|data| {
            let (mut client, request) = (client.clone(), transcribe(data));
            async move { client.transcribe(request).await.map(|r| r.into_inner()) }
        })
        .collect();
    let mut answers = together(calls).await.into_iter();
    assert_eq!(answers.next().unwrap().expect("a good recording"), alone[0]);
    assert_injected_fault(answers.next().unwrap());
    assert_eq!(answers.next().unwrap().expect("a good recording"), alone[1]);
    assert_one_shared_batch_failed_then_ran_alone(&daemon, "w2v2", before, 3);
}

#[tokio::test]
async fn a_request_that_panics_the_panicky_plugin_fails_alone_and_its_batch_mates_are_echoed() {
    let dir = test_plugin_dir();
    assert!(
        dir.join("libinferd_testplugin_panicky.so").is_file(),
        "test plugins are missing in {}: scripts/test.sh builds them",
        dir.display()
    );
    // No marker: the plugin panics by itself on the text "panic".
    let daemon = Daemon::start(&["--plugin-dir", dir.to_str().unwrap(), "--metrics-listen", "127.0.0.1:0"]).await;
    load_batching(&daemon, "panicky", "panic", "").await;
    let client = daemon.inference().await;
    let run = |text: &str| panic_request("panicky", text);
    let good = ["hello", "world", "again"];
    let mut alone = Vec::new();
    for text in good {
        alone.push(client.clone().run(run(text)).await.unwrap().into_inner());
    }

    let before = batch_counters(&daemon, "panicky");
    let calls = ["hello", "panic", "world", "again"]
        .into_iter()
        .map(|text| {
            let (mut client, request) = (client.clone(), run(text));
            async move { client.run(request).await.map(|r| r.into_inner()) }
        })
        .collect();
    let answers = together(calls).await;
    assert_eq!(answers[0].as_ref().expect("hello"), &alone[0]);
    let status = answers[1].as_ref().expect_err("the panicking request");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("asked to panic"), "{status:?}");
    assert_eq!(answers[2].as_ref().expect("world"), &alone[1]);
    assert_eq!(answers[3].as_ref().expect("again"), &alone[2]);
    assert_one_shared_batch_failed_then_ran_alone(&daemon, "panicky", before, 4);
}

/// Process isolation: the panicky plugin's model in a child process, which
/// a segfault or an abort ends. The requests it was running get
/// UNAVAILABLE (the one that crashes it, when run again alone; its batch
/// mates get their answers), the daemon and its other models never notice,
/// and the model answers again from a new process, counted by the metrics.
#[tokio::test]
async fn a_crash_in_an_isolated_model_costs_only_the_request_that_causes_it() {
    let dir = test_plugin_dir();
    let cls = format!("cls:text-classification={}", fixture_model("distilbert-cls"));
    let daemon = Daemon::start(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
        "--model",
        &cls,
    ])
    .await;
    let request = LoadModelRequest {
        name: "crashy".into(),
        task: "panic".into(),
        options: Some(ModelOptions {
            max_batch_size: Some(16),
            max_queue_delay_ms: Some(MAX_QUEUE_DELAY_MS),
            isolation: Some("process".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let info = daemon.models().await.load_model(request).await.unwrap().into_inner();
    assert_eq!(info.options.unwrap().isolation.as_deref(), Some("process"));
    let bad = LoadModelRequest {
        name: "bad".into(),
        task: "panic".into(),
        options: Some(ModelOptions {
            isolation: Some("sandbox".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = daemon.models().await.load_model(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let client = daemon.inference().await;
    let run = panic_request;
    let hello = client.clone().run(run("crashy", "hello")).await.unwrap().into_inner();
    let restarts = || metric(&daemon.metrics(), "inferd_model_restarts_total{model=\"crashy\"}");
    for (n, (text, signal)) in [("segfault", "SIGSEGV"), ("abort", "SIGABRT")].into_iter().enumerate() {
        let status = client.clone().run(run("crashy", text)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains(signal), "{status:?}");
        // The daemon, its in-process models and the crashed one answer.
        let classified = daemon
            .inference()
            .await
            .classify(ClassifyRequest {
                model: "cls".into(),
                inputs: vec![TextInput {
                    text: "a fine day".into(),
                    text_pair: None,
                }],
                ..Default::default()
            })
            .await;
        assert!(classified.is_ok(), "{classified:?}");
        assert!(client.clone().run(run("panic", "in-process")).await.is_ok());
        let again = client.clone().run(run("crashy", "hello")).await.unwrap().into_inner();
        assert_eq!(again, hello);
        assert_eq!(restarts(), (n + 1) as f64, "{}", daemon.log());
    }

    // In a batch: the crash fails the batch, whose requests run again
    // alone, each in a process that is there for it.
    let calls = ["one", "segfault", "two"]
        .into_iter()
        .map(|text| {
            let (mut client, request) = (client.clone(), run("crashy", text));
            async move { client.run(request).await.map(|r| r.into_inner()) }
        })
        .collect();
    let answers = together(calls).await;
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert_eq!(answers[1].as_ref().unwrap_err().code(), Code::Unavailable);
    assert!(restarts() >= 3.0);
    let log = daemon.log();
    assert!(log.contains("model's process ended (signal"), "{log}");

    // Unloading ends the model's process: no child is left behind. (A
    // crash restarts it on the next request: one, to have it running.)
    assert_eq!(
        client.clone().run(run("crashy", "hello")).await.unwrap().into_inner(),
        hello
    );
    assert_eq!(children(daemon.pid()).len(), 1, "one child for the isolated model");
    daemon
        .models()
        .await
        .unload_model(UnloadModelRequest { name: "crashy".into() })
        .await
        .unwrap();
    assert_eq!(children(daemon.pid()), Vec::<u32>::new());
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: the fields after the last ')'.
        let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1));
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// A generative model in a child process streams, takes in requests that
/// arrive while it decodes (continuous batching) and answers each as it
/// ends, as it does in the daemon's process: the same tokens either way.
#[tokio::test]
async fn an_isolated_generator_streams_and_joins_as_in_process() {
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    daemon
        .load("local", "text-generation", &fixture_model("gpt2-slow"))
        .await;
    let request = LoadModelRequest {
        name: "iso".into(),
        task: "text-generation".into(),
        source: fixture_model("gpt2-slow"),
        options: Some(ModelOptions {
            isolation: Some("process".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    daemon.models().await.load_model(request).await.unwrap();
    let generate = |model: &str, prompt: &str, tokens: u32| GenerateRequest {
        model: model.into(),
        inputs: vec![prompt.into()],
        max_new_tokens: Some(tokens),
        min_new_tokens: Some(tokens),
        do_sample: Some(false),
        ..Default::default()
    };
    let client = daemon.inference().await;
    let tokens = |r: inferd_proto::v1::GenerateResponse| r.results[0].sequences[0].token_ids.clone();
    let want_long = tokens(
        client
            .clone()
            .generate(generate("local", "The cat", 200))
            .await
            .unwrap()
            .into_inner(),
    );
    let want_short = tokens(
        client
            .clone()
            .generate(generate("local", "A dog", 5))
            .await
            .unwrap()
            .into_inner(),
    );

    let mut stream = client
        .clone()
        .generate_stream(generate("iso", "The cat", 200))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    // While the long one decodes, a short one joins it and ends first.
    let short = tokens(
        client
            .clone()
            .generate(generate("iso", "A dog", 5))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(short, want_short);
    let mut streamed = first.token_ids;
    while let Some(message) = stream.next().await {
        streamed.extend(message.unwrap().token_ids);
    }
    assert_eq!(streamed, want_long);
    let joined = metric(&daemon.metrics(), "inferd_joined_requests_total{model=\"iso\"}");
    assert_eq!(joined, 1.0, "the short request joined the running decode");
}
