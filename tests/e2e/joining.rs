//! Continuous batching of text generation: a request that arrives while a
//! generation decodes joins it at the next step and is answered as soon as
//! it ends (counted in the long generation's streamed tokens, its steps),
//! not after the running one; with `--static-batching` it waits. Requests
//! that join at different steps get the tokens they get alone, greedy and
//! seeded sampling alike. The same for summarization and translation
//! (BART, T5, Marian; beam search included), whose joins are counted by
//! `inferd_joined_requests_total`. A request that joined and is then
//! cancelled, or runs out of time, stops without disturbing the others.

use std::time::Duration;

use inferd_proto::v1::{
    GenerateRequest, GenerateResponse, SummarizeRequest, SummarizeResponse, TranslateRequest, TranslateResponse,
};
use inferd_tests::{fixture_model, metric, Daemon};
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
async fn joined_requests_that_are_cancelled_or_run_out_of_time_stop_and_the_others_go_on() {
    let daemon = gpt2_daemon(&["--metrics-listen", "127.0.0.1:0"]).await;
    let mut client = daemon.inference().await;
    let long = greedy("Once upon a time", 120);
    let alone = client.generate(long.clone()).await.unwrap().into_inner();
    let mut stream = client.generate_stream(long).await.unwrap().into_inner();
    let mut tokens = vec![];
    while tokens.len() < 3 {
        tokens.extend(stream.next().await.unwrap().unwrap().token_ids);
    }
    // A stream that joins and is dropped after two of its tokens.
    let mut other = daemon.inference().await;
    let mut dropped = other.generate_stream(greedy("Hello", 200)).await.unwrap().into_inner();
    let mut seen = 0;
    while seen < 2 {
        seen += dropped.next().await.unwrap().unwrap().token_ids.len();
    }
    drop(dropped);
    // One that joins with a deadline it cannot meet.
    let mut late = daemon.inference().await;
    let mut request = tonic::Request::new(greedy("Out of time", 200));
    request.set_timeout(Duration::from_millis(300));
    let status = late.generate(request).await.unwrap_err();
    // tonic's client may time out by itself first (CANCELLED "Timeout
    // expired"); what the daemon did is in its metrics below.
    let client_timeout = status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired";
    assert!(
        status.code() == tonic::Code::DeadlineExceeded || client_timeout,
        "{status}"
    );
    while let Some(message) = stream.next().await {
        tokens.extend(message.unwrap().token_ids);
    }
    assert_eq!(
        tokens, alone.results[0].sequences[0].token_ids,
        "the running generation"
    );
    // The daemon saw both go (the dropped one as cancelled) and answered
    // nothing more for them. The dropped stream joined (it streamed while
    // the long one ran); the late one joins too unless, on a loaded
    // machine, its 300 ms pass before the next step takes it in, when the
    // queue answers it instead. The long stream itself may have joined the
    // tail of the first request's batch: that request is answered as soon
    // as its last token is out, and the stream sent right after can arrive
    // before that batch has ended (seen on a fresh-clone CI run).
    let metrics = daemon.metrics();
    let joined = joined_requests(&daemon, "gpt2");
    assert!((1..=3).contains(&joined), "{joined} joined: {metrics}");
    let code = |c: &str| {
        metric(
            &metrics,
            &format!("inferd_requests_total{{model=\"gpt2\",code=\"{c}\"}}"),
        )
    };
    // The late one is DEADLINE_EXCEEDED, or CANCELLED when the client gave
    // up first.
    assert_eq!(code("DeadlineExceeded") + code("Cancelled"), 2.0, "{metrics}");
    assert_eq!(code("Ok"), 2.0, "{metrics}");
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

/// The `inferd_joined_requests_total` of `model`.
fn joined_requests(daemon: &Daemon, model: &str) -> u64 {
    let metrics = daemon.metrics();
    let prefix = format!("inferd_joined_requests_total{{model=\"{model}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
        .parse()
        .unwrap()
}

/// A summary of exactly `tokens` new tokens, greedy.
fn summary_of_length(model: &str, text: &str, tokens: u32) -> SummarizeRequest {
    SummarizeRequest {
        model: model.into(),
        inputs: vec![text.into()],
        min_length: Some(tokens + 1),
        max_new_tokens: Some(tokens),
        num_beams: Some(1),
        no_repeat_ngram_size: Some(0),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_summary_joins_a_running_one_and_is_answered_first() {
    let mut waits = vec![];
    for (args, joins) in [(&[][..], true), (&["--static-batching"][..], false)] {
        let args = [&["--metrics-listen", "127.0.0.1:0"], args].concat();
        let daemon = Daemon::start(&args).await;
        daemon.load("t5", "summarization", &fixture_model("t5-small-ish")).await;
        let mut client = daemon.inference().await;
        // 2500 decoding steps (T5 has no position table to outgrow).
        let long = summary_of_length("t5", "The long one goes on and on.", 2500);
        let running = tokio::spawn(async move { client.summarize(long).await.unwrap().into_inner() });
        // Sent once the long one's batch runs: under load, one sent after a
        // fixed pause could share its batch from the start.
        let started = std::time::Instant::now();
        while metric(&daemon.metrics(), "inferd_batch_size_count{model=\"t5\"}") < 1.0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the long summary never ran"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut other = daemon.inference().await;
        let short = SummarizeRequest {
            model: "t5".into(),
            inputs: vec!["A short text to summarize.".into()],
            max_length: Some(6),
            ..Default::default()
        };
        let answer = other.summarize(short).await.unwrap();
        // The response tells how long the request waited before its
        // decoding started.
        let header = answer.metadata().get("inferd-queue-ms").expect("the queue time header");
        waits.push(header.to_str().unwrap().parse::<f64>().unwrap());
        let answer = answer.into_inner();
        assert_eq!(answer.results[0].summaries.len(), 1);
        if joins {
            assert!(
                !running.is_finished(),
                "the short summary was answered after the long one"
            );
        }
        let long = running.await.unwrap();
        assert!(!long.results[0].summaries[0].summary_text.is_empty());
        assert_eq!(joined_requests(&daemon, "t5"), u64::from(joins), "static: {}", !joins);
    }
    // Joined, it waited for the next step; in static batches, for the
    // long summary to end.
    assert!(waits[0] < waits[1], "queue times {waits:?} ms");
}

#[tokio::test]
async fn summaries_and_translations_that_join_get_the_answers_they_get_alone() {
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    daemon.load("bart", "summarization", &fixture_model("bart-sum")).await;
    daemon.load("t5", "translation", &fixture_model("t5-small-ish")).await;
    daemon
        .load("marian", "translation", &fixture_model("marian-fr-en"))
        .await;
    let texts = [
        "The tower is 324 metres tall, about the same height as an 81-storey building.",
        "Short.",
        "During its construction, the Eiffel Tower surpassed the Washington Monument to become the tallest \
         man-made structure in the world, a title it held for 41 years.",
        "It was the first structure to reach a height of 300 metres.",
    ];
    let summarize = |k: usize, beams: Option<u32>, returned: Option<u32>| SummarizeRequest {
        model: "bart".into(),
        inputs: vec![texts[k % texts.len()].into()],
        num_beams: beams,
        num_return_sequences: returned,
        ..Default::default()
    };
    // The model's own settings (4 beams), greedy, 3 beams returning 2, and
    // two inputs in one request.
    let summaries = vec![
        summarize(0, None, None),
        summarize(1, Some(1), None),
        summarize(2, Some(3), Some(2)),
        SummarizeRequest {
            inputs: vec![texts[3].into(), texts[1].into()],
            ..summarize(3, None, None)
        },
        summarize(2, Some(1), None),
    ];
    let translate = |model: &str, k: usize, beams: Option<u32>| TranslateRequest {
        model: model.into(),
        inputs: vec![texts[k % texts.len()].into()],
        num_beams: beams,
        ..Default::default()
    };
    let mut translations = vec![];
    for model in ["t5", "marian"] {
        for (k, beams) in [(0, None), (1, Some(1)), (2, Some(2)), (3, None)] {
            let mut request = translate(model, k, beams);
            if model == "t5" {
                request.src_lang = "en".into();
                request.tgt_lang = "fr".into();
            }
            translations.push(request);
        }
    }
    let mut client = daemon.inference().await;
    let mut alone_summaries = vec![];
    for request in &summaries {
        alone_summaries.push(client.summarize(request.clone()).await.unwrap().into_inner());
    }
    let mut alone_translations = vec![];
    for request in &translations {
        alone_translations.push(client.translate(request.clone()).await.unwrap().into_inner());
    }
    let joined_before = joined_requests(&daemon, "t5");
    // Each model decodes a long greedy request meanwhile, which the others
    // join at different steps.
    let mut running = vec![];
    let mut c = daemon.inference().await;
    let carrier = summary_of_length("bart", texts[0], 120);
    running.push(tokio::spawn(async move { drop(c.summarize(carrier).await.unwrap()) }));
    for (model, tokens) in [("t5", 800), ("marian", 60)] {
        let mut c = daemon.inference().await;
        let carrier = summary_of_length(model, texts[0], tokens);
        let (src_lang, tgt_lang) = if model == "t5" { ("en", "fr") } else { ("", "") };
        let carrier = TranslateRequest {
            model: model.into(),
            inputs: carrier.inputs,
            min_length: carrier.min_length,
            max_new_tokens: carrier.max_new_tokens,
            num_beams: carrier.num_beams,
            src_lang: src_lang.into(),
            tgt_lang: tgt_lang.into(),
            ..Default::default()
        };
        running.push(tokio::spawn(async move { drop(c.translate(carrier).await.unwrap()) }));
    }
    let mut sent_summaries: Vec<tokio::task::JoinHandle<SummarizeResponse>> = vec![];
    let mut sent_translations: Vec<tokio::task::JoinHandle<TranslateResponse>> = vec![];
    for k in 0..summaries.len().max(translations.len()) {
        tokio::time::sleep(Duration::from_millis(15)).await;
        if let Some(request) = summaries.get(k).cloned() {
            let mut c = daemon.inference().await;
            sent_summaries.push(tokio::spawn(
                async move { c.summarize(request).await.unwrap().into_inner() },
            ));
        }
        if let Some(request) = translations.get(k).cloned() {
            let mut c = daemon.inference().await;
            sent_translations.push(tokio::spawn(
                async move { c.translate(request).await.unwrap().into_inner() },
            ));
        }
        if let Some(request) = translations.get(k + 4).cloned() {
            let mut c = daemon.inference().await;
            sent_translations.push(tokio::spawn(
                async move { c.translate(request).await.unwrap().into_inner() },
            ));
        }
    }
    for (k, (call, want)) in sent_summaries.into_iter().zip(&alone_summaries).enumerate() {
        assert_eq!(&call.await.unwrap(), want, "summary {k}");
    }
    let mut sent = sent_translations.into_iter();
    let mut got = vec![None; translations.len()];
    for k in 0..4 {
        got[k] = Some(sent.next().unwrap().await.unwrap());
        got[k + 4] = Some(sent.next().unwrap().await.unwrap());
    }
    for (k, (got, want)) in got.into_iter().zip(&alone_translations).enumerate() {
        assert_eq!(&got.unwrap(), want, "translation {k} ({})", translations[k].model);
    }
    for call in running {
        call.await.unwrap();
    }
    for model in ["bart", "marian"] {
        eprintln!("{model}: {} requests joined", joined_requests(&daemon, model));
    }
    assert!(
        joined_requests(&daemon, "t5") >= joined_before + 4,
        "the translations sent while T5 decoded its long request joined it"
    );
}
