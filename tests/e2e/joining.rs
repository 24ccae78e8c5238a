//! Continuous batching of text generation: a request that arrives while a
//! generation decodes joins it at the next step and is answered as soon as
//! it ends (counted in the long generation's streamed tokens, its steps),
//! not after the running one; with `--static-batching` it waits. Requests
//! that join at different steps get the tokens they get alone, greedy and
//! seeded sampling alike.

use inferd_proto::v1::{GenerateRequest, GenerateResponse};
use inferd_tests::{fixture_model, Daemon};
use tokio_stream::StreamExt;

async fn gpt2_daemon(args: &[&str]) -> Daemon {
    let daemon = Daemon::start(args).await;
    daemon
        .load("gpt2", "text-generation", &fixture_model("gpt2-slow"))
        .await;
    daemon
}

fn greedy(prompt: &str, new_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: "gpt2".into(),
        inputs: vec![prompt.into()],
        max_new_tokens: Some(new_tokens),
        min_new_tokens: Some(new_tokens),
        do_sample: Some(false),
        ..Default::default()
    }
}

/// The long generation's tokens streamed when `short` (sent after the
/// stream's third token) was answered, and the short one's answer.
async fn joined_after(daemon: &Daemon, long_tokens: u32, short: GenerateRequest) -> (usize, GenerateResponse) {
    let mut client = daemon.inference().await;
    let mut stream = client
        .generate_stream(greedy("Once upon a time", long_tokens))
        .await
        .unwrap()
        .into_inner();
    let mut seen = 0;
    while seen < 3 {
        seen += stream.next().await.unwrap().unwrap().token_ids.len();
    }
    let mut other = daemon.inference().await;
    let answer = tokio::spawn(async move { other.generate(short).await.unwrap().into_inner() });
    let mut at = None;
    while let Some(message) = stream.next().await {
        seen += message.unwrap().token_ids.len();
        if at.is_none() && answer.is_finished() {
            at = Some(seen);
        }
    }
    let answer = answer.await.unwrap();
    (at.unwrap_or(seen), answer)
}

#[tokio::test]
async fn a_request_joins_a_running_generation_and_is_answered_first() {
    let daemon = gpt2_daemon(&[]).await;
    let (at, answer) = joined_after(&daemon, 200, greedy("Hello", 3)).await;
    assert_eq!(answer.results[0].sequences[0].generated_tokens, 3);
    // Sent after token 3: its prompt and 3 tokens take 3 steps of the
    // running decode (and a few for the request to arrive).
    assert!(
        at <= 3 + 20,
        "answered when the long generation had streamed {at} of 200 tokens"
    );
    let daemon = gpt2_daemon(&["--static-batching"]).await;
    let (at, answer) = joined_after(&daemon, 60, greedy("Hello", 3)).await;
    assert_eq!(answer.results[0].sequences[0].generated_tokens, 3);
    assert_eq!(at, 60, "with --static-batching a request waits for the running batch");
}

#[tokio::test]
async fn requests_joining_at_different_steps_get_the_tokens_they_get_alone() {
    let daemon = gpt2_daemon(&[]).await;
    let mut client = daemon.inference().await;
    let sampled = |prompt: &str, seed: u64| GenerateRequest {
        model: "gpt2".into(),
        inputs: vec![prompt.into()],
        max_new_tokens: Some(12),
        do_sample: Some(true),
        top_k: Some(20),
        temperature: Some(0.9),
        seed: Some(seed),
        ..Default::default()
    };
    let others = [
        greedy("Hello", 5),
        sampled("The weather today", 7),
        greedy("A much longer prompt than the running one, to pad the other side", 9),
        GenerateRequest {
            inputs: vec!["Two prompts".into(), "in one request".into()],
            num_return_sequences: Some(2),
            ..sampled("", 11)
        },
        greedy("Short", 1),
    ];
    let long = greedy("Once upon a time", 80);
    let mut alone = vec![];
    for request in others.iter().chain([&long]) {
        alone.push(client.generate(request.clone()).await.unwrap().into_inner());
    }
    // The long one streams; the others are sent after its tokens 1, 5, 12, 20, 30.
    let mut stream = client.generate_stream(long).await.unwrap().into_inner();
    let mut long_tokens = vec![];
    let mut pending = vec![];
    let mut next = 0;
    let steps = [1, 5, 12, 20, 30];
    while let Some(message) = stream.next().await {
        long_tokens.extend(message.unwrap().token_ids);
        while next < others.len() && long_tokens.len() >= steps[next] {
            let mut other = daemon.inference().await;
            let request = others[next].clone();
            pending.push(tokio::spawn(async move {
                other.generate(request).await.unwrap().into_inner()
            }));
            next += 1;
        }
    }
    assert_eq!(next, others.len(), "every request was sent while the long one ran");
    let long_alone = alone.pop().unwrap();
    assert_eq!(
        long_tokens, long_alone.results[0].sequences[0].token_ids,
        "the running generation"
    );
    for (k, (call, want)) in pending.into_iter().zip(&alone).enumerate() {
        let got = call.await.unwrap();
        assert_eq!(got.results.len(), want.results.len());
        for (g, w) in got.results.iter().zip(&want.results) {
            let ids = |r: &inferd_proto::v1::GenerateResult| {
                r.sequences.iter().map(|s| s.token_ids.clone()).collect::<Vec<_>>()
            };
            assert_eq!(ids(g), ids(w), "request {k} joined after token {}", steps[k]);
            let texts = |r: &inferd_proto::v1::GenerateResult| {
                r.sequences.iter().map(|s| s.generated_text.clone()).collect::<Vec<_>>()
            };
            assert_eq!(texts(g), texts(w), "request {k}: text");
        }
    }
}
