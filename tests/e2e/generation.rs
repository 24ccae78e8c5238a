//! Text generation with GPT-2: greedy decoding token-for-token equal to
//! transformers' pipeline("text-generation", do_sample=False), alone and
//! batched; streaming; seeded sampling; cancellation; bad input.

use std::time::{Duration, Instant};

use inferd_proto::v1::{GenerateRequest, GenerateResponse};
use inferd_tests::{fixture_model, reference, Daemon};
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::Code;

/// A daemon serving the fixture GPT-2 `fixture` as model "gpt2".
async fn gpt2_daemon(fixture: &str, args: &[&str]) -> Daemon {
    let daemon = Daemon::start(args).await;
    daemon.load("gpt2", "text-generation", &fixture_model(fixture)).await;
    daemon
}

fn request(prompts: &[String], params: &Value) -> GenerateRequest {
    let u32_of = |k: &str| params.get(k).and_then(Value::as_u64).map(|n| n as u32);
    GenerateRequest {
        model: "gpt2".into(),
        inputs: prompts.to_vec(),
        max_new_tokens: u32_of("max_new_tokens"),
        min_new_tokens: u32_of("min_new_tokens"),
        do_sample: params.get("do_sample").and_then(Value::as_bool),
        repetition_penalty: params
            .get("repetition_penalty")
            .and_then(Value::as_f64)
            .map(|x| x as f32),
        no_repeat_ngram_size: u32_of("no_repeat_ngram_size"),
        return_full_text: params.get("return_full_text").and_then(Value::as_bool),
        ..Default::default()
    }
}

fn check(case_n: usize, response: &GenerateResponse, prompts: &[String], case: &Value, offset: usize) {
    for (i, result) in response.results.iter().enumerate() {
        let k = offset + i;
        let got = &result.sequences[0];
        let want_text = case["expected"][k][0]["generated_text"].as_str().unwrap();
        let want_ids: Vec<i64> = case["expected_token_ids"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let prompt_len = got.prompt_tokens as usize;
        assert_eq!(
            got.token_ids,
            want_ids[prompt_len..],
            "case {case_n} prompt {k} {:?}: token ids",
            prompts[i]
        );
        assert_eq!(got.generated_text, want_text, "case {case_n} prompt {k}: text");
    }
}

#[tokio::test]
async fn greedy_generation_matches_pipeline_alone_and_batched() {
    let refs: Value = reference("text_generation.json");
    let daemon = gpt2_daemon("gpt2-gen", &[]).await;
    let mut client = daemon.inference().await;
    for (n, case) in refs["cases"].as_array().unwrap().iter().enumerate() {
        let prompts: Vec<String> = case["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().into())
            .collect();
        let params = &case["params"];
        // All prompts in one request: decoded together, with left padding.
        let batched = client
            .generate(request(&prompts, params))
            .await
            .unwrap_or_else(|e| panic!("case {n}: {e}"));
        check(n, &batched.into_inner(), &prompts, case, 0);
        // And one request per prompt.
        if case["batch_size"].as_u64() == Some(1) {
            for (i, prompt) in prompts.iter().enumerate() {
                let single = client
                    .generate(request(std::slice::from_ref(prompt), params))
                    .await
                    .unwrap();
                check(n, &single.into_inner(), std::slice::from_ref(prompt), case, i);
            }
        }
    }
}

#[tokio::test]
async fn streaming_yields_the_same_tokens_and_a_final_summary() {
    let daemon = gpt2_daemon("gpt2-gen", &[]).await;
    let mut client = daemon.inference().await;
    let prompts = vec!["The hotel room was dirty and the staff were rude.".to_string()];
    for max_new_tokens in [3u32, 20] {
        let params = serde_json::json!({"do_sample": false, "max_new_tokens": max_new_tokens});
        let whole = client.generate(request(&prompts, &params)).await.unwrap().into_inner();
        let whole = &whole.results[0].sequences[0];
        let mut stream = client
            .generate_stream(request(&prompts, &params))
            .await
            .unwrap()
            .into_inner();
        let mut tokens: Vec<i64> = vec![];
        let mut text = String::new();
        let mut last = None;
        while let Some(message) = stream.next().await {
            let message = message.expect("stream message");
            tokens.extend(&message.token_ids);
            text.push_str(&message.text);
            if !message.finish_reason.is_empty() {
                last = Some(message);
            }
        }
        let last = last.expect("a final message");
        assert_eq!(tokens, whole.token_ids, "streamed tokens");
        assert_eq!(last.finish_reason, whole.finish_reason);
        assert_eq!(last.generated_tokens as usize, tokens.len());
        assert_eq!(last.generated_text, whole.generated_text);
        assert!(!text.is_empty());
    }
    // One of the two ended on EOS, the other on length.
    let eos = client
        .generate(request(
            &prompts,
            &serde_json::json!({"do_sample": false, "max_new_tokens": 20}),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(eos.results[0].sequences[0].finish_reason, "eos_token");
}

#[tokio::test]
async fn sampling_is_seeded_and_top_k_one_is_greedy() {
    let daemon = gpt2_daemon("gpt2-gen", &[]).await;
    let mut client = daemon.inference().await;
    let prompts = vec!["Hello world".to_string()];
    let sample = |seed: u64, top_k: Option<u32>| GenerateRequest {
        model: "gpt2".into(),
        inputs: prompts.clone(),
        max_new_tokens: Some(15),
        do_sample: Some(true),
        temperature: Some(1.5),
        top_k,
        seed: Some(seed),
        ..Default::default()
    };
    let a = client.generate(sample(7, Some(0))).await.unwrap().into_inner();
    let b = client.generate(sample(7, Some(0))).await.unwrap().into_inner();
    let c = client.generate(sample(8, Some(0))).await.unwrap().into_inner();
    assert_eq!(
        a.results[0].sequences[0].token_ids, b.results[0].sequences[0].token_ids,
        "same seed"
    );
    assert_ne!(
        a.results[0].sequences[0].token_ids, c.results[0].sequences[0].token_ids,
        "another seed"
    );
    let greedy = client
        .generate(request(
            &prompts,
            &serde_json::json!({"do_sample": false, "max_new_tokens": 15}),
        ))
        .await
        .unwrap()
        .into_inner();
    let top1 = client.generate(sample(3, Some(1))).await.unwrap().into_inner();
    assert_eq!(
        top1.results[0].sequences[0].token_ids,
        greedy.results[0].sequences[0].token_ids
    );
}

/// Next-token frequencies of many samples follow the softmax that
/// transformers' temperature / top-k / top-p warpers leave.
#[tokio::test]
async fn sampled_next_tokens_follow_the_filtered_distribution() {
    let refs: Value = reference("generation_logits.json");
    let draws = 3000u32;
    // 3000 one-token samples in one request: over the default limits
    // (256 sequences, 16,384 tokens), raised as the README says.
    let daemon = Daemon::start_with_env(
        &[],
        &[
            ("INFERD_MAX_SEQUENCES", "3000"),
            ("INFERD_MAX_GENERATION_TOKENS", "1000000"),
        ],
    )
    .await;
    daemon.load("gpt2", "text-generation", &fixture_model("gpt2-gen")).await;
    let mut client = daemon.inference().await;
    for prompt in refs["prompts"].as_array().unwrap() {
        for filtered in prompt["filtered"].as_array().unwrap() {
            let request = GenerateRequest {
                model: "gpt2".into(),
                inputs: vec![prompt["prompt"].as_str().unwrap().into()],
                max_new_tokens: Some(1),
                do_sample: Some(true),
                temperature: Some(filtered["temperature"].as_f64().unwrap() as f32),
                top_k: Some(filtered["top_k"].as_u64().unwrap() as u32),
                top_p: Some(filtered["top_p"].as_f64().unwrap() as f32),
                num_return_sequences: Some(draws),
                seed: Some(1234),
                ..Default::default()
            };
            let response = client.generate(request).await.unwrap().into_inner();
            let probs: Vec<f64> = filtered["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect();
            let mut counts = vec![0u32; probs.len()];
            for s in &response.results[0].sequences {
                counts[s.token_ids[0] as usize] += 1;
            }
            for (token, (&count, &p)) in counts.iter().zip(&probs).enumerate() {
                if p == 0.0 {
                    assert_eq!(count, 0, "token {token} was filtered out but sampled ({filtered})");
                }
                let freq = count as f64 / draws as f64;
                // Five standard deviations of a binomial frequency, plus a little.
                let tolerance = 5.0 * (p * (1.0 - p) / draws as f64).sqrt() + 1e-3;
                assert!(
                    (freq - p).abs() <= tolerance,
                    "token {token}: frequency {freq}, probability {p}"
                );
            }
        }
    }
}

#[tokio::test]
async fn bad_generation_requests_are_refused() {
    let daemon = gpt2_daemon("gpt2-gen", &[]).await;
    let mut client = daemon.inference().await;
    let base = || GenerateRequest {
        model: "gpt2".into(),
        inputs: vec!["Hello".into()],
        ..Default::default()
    };
    let expect = |r: Result<tonic::Response<GenerateResponse>, tonic::Status>, needle: &str| {
        let status = r.expect_err("should fail");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains(needle),
            "{:?} should mention {needle}",
            status.message()
        );
    };
    expect(
        client
            .generate(GenerateRequest {
                inputs: vec![String::new()],
                ..base()
            })
            .await,
        "empty",
    );
    expect(
        client
            .generate(GenerateRequest {
                inputs: vec![],
                ..base()
            })
            .await,
        "inputs",
    );
    expect(
        client
            .generate(GenerateRequest {
                max_new_tokens: Some(100_000),
                ..base()
            })
            .await,
        "cap",
    );
    expect(
        client
            .generate(GenerateRequest {
                inputs: vec!["word ".repeat(400)],
                ..base()
            })
            .await,
        "context window",
    );
    expect(
        client
            .generate(GenerateRequest {
                do_sample: Some(true),
                temperature: Some(0.0),
                ..base()
            })
            .await,
        "temperature",
    );
    expect(
        client
            .generate(GenerateRequest {
                top_p: Some(1.5),
                ..base()
            })
            .await,
        "top_p",
    );
    expect(
        client
            .generate(GenerateRequest {
                top_p: Some(0.0),
                ..base()
            })
            .await,
        "top_p",
    );
    let two = GenerateRequest {
        inputs: vec!["a".into(), "b".into()],
        ..base()
    };
    let status = client
        .generate_stream(two)
        .await
        .expect_err("two prompts cannot stream");
    assert_eq!(status.code(), Code::InvalidArgument);
    let ok = client
        .generate(GenerateRequest {
            max_new_tokens: Some(3),
            do_sample: Some(false),
            ..base()
        })
        .await;
    assert!(ok.is_ok(), "still serving: {ok:?}");
}

/// A client that cancels its stream frees the model within a decoding step:
/// the next request does not wait for the abandoned generation to finish.
/// (Static batches: a joining request would not wait for it anyway.)
#[tokio::test]
async fn cancelling_a_stream_stops_its_generation() {
    let daemon = gpt2_daemon("gpt2-slow", &["--static-batching"]).await;
    let mut client = daemon.inference().await;
    let long = GenerateRequest {
        model: "gpt2".into(),
        inputs: vec!["Once upon a time".into()],
        max_new_tokens: Some(1000),
        min_new_tokens: Some(1000),
        do_sample: Some(false),
        ..Default::default()
    };
    let mut stream = client.generate_stream(long).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    let per_token = started.elapsed() / 10;
    drop(stream);
    let asked = Instant::now();
    let short = GenerateRequest {
        model: "gpt2".into(),
        inputs: vec!["Hello".into()],
        max_new_tokens: Some(2),
        do_sample: Some(false),
        ..Default::default()
    };
    daemon
        .inference()
        .await
        .generate(short)
        .await
        .expect("the model is free again");
    let waited = asked.elapsed();
    // Finishing the abandoned stream would take ~990 more steps.
    let remaining = per_token * 990;
    eprintln!("per token {per_token:?}; the next request waited {waited:?}");
    assert!(
        waited < remaining / 4 && waited < Duration::from_secs(10),
        "waited {waited:?} after cancelling; the abandoned generation needed about {remaining:?} more"
    );
}

#[tokio::test]
async fn stop_sequences_end_generation() {
    let daemon = gpt2_daemon("gpt2-gen", &[]).await;
    let mut client = daemon.inference().await;
    let prompts = vec!["Hello world".to_string()];
    let greedy = |stop: Vec<String>| GenerateRequest {
        model: "gpt2".into(),
        inputs: prompts.clone(),
        max_new_tokens: Some(20),
        do_sample: Some(false),
        return_full_text: Some(false),
        stop,
        ..Default::default()
    };
    let free = client.generate(greedy(vec![])).await.unwrap().into_inner();
    let free = &free.results[0].sequences[0];
    // Stop at a piece of text from the middle of the free-running output.
    let chars: Vec<char> = free.generated_text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let stopped = client.generate(greedy(vec![stop.clone()])).await.unwrap().into_inner();
    let stopped = &stopped.results[0].sequences[0];
    assert_eq!(stopped.finish_reason, "stop_sequence");
    assert!(stopped.generated_tokens < free.generated_tokens);
    assert!(
        stopped.generated_text.contains(&stop),
        "{:?} lacks {stop:?}",
        stopped.generated_text
    );
    assert!(free.generated_text.starts_with(&stopped.generated_text));
}

/// Requests from concurrent clients are decoded together (the worker batches
/// what is queued) and each still gets exactly its own greedy answer.
#[tokio::test]
async fn concurrent_requests_get_their_own_answers() {
    let refs: Value = reference("text_generation.json");
    let case = &refs["cases"][0];
    let daemon = gpt2_daemon("gpt2-gen", &["--max-queue-delay-ms", "20"]).await;
    let prompts: Vec<String> = case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().into())
        .collect();
    let mut tasks = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let mut client = daemon.inference().await;
        let request = request(std::slice::from_ref(prompt), &case["params"]);
        tasks.push(tokio::spawn(async move { (i, client.generate(request).await) }));
    }
    for task in tasks {
        let (i, response) = task.await.unwrap();
        check(
            0,
            &response.expect("generate").into_inner(),
            &prompts[i..i + 1],
            case,
            i,
        );
    }
}

/// inferctl generate: --stream prints the prompt and then the tokens, the
/// same text as the unary answer; --min-new-tokens, --max-length and
/// --num-return-sequences reach the request.
#[tokio::test]
async fn inferctl_generate_streams_the_whole_text_and_passes_its_length_flags() {
    let daemon = gpt2_daemon("gpt2-gen", &[]).await;
    let base = ["generate", "Hello, my dog", "--model", "gpt2", "--max-new-tokens", "6"];
    let unary = daemon.inferctl(&base);
    let (text, _) = unary.split_once("\n  [").expect("the text, then its finish line");
    assert!(text.starts_with("Hello, my dog"), "{unary}");
    let streamed = daemon.inferctl(&[&base[..], &["--stream"]].concat());
    assert_eq!(
        streamed.trim_end(),
        text,
        "the stream prints the prompt, then the new text"
    );

    // The token count inferctl prints is the one the same request gets over gRPC.
    let tokens_printed = |args: &[&str]| -> u32 {
        let printed = daemon.inferctl(&[&["generate", "Hello", "--model", "gpt2"], args].concat());
        let count = printed.rsplit_once(" after ").expect("a finish line").1;
        count.trim_end().trim_end_matches(" tokens]").parse().unwrap()
    };
    let client = daemon.inference().await;
    let tokens_answered = |request: GenerateRequest| {
        let mut client = client.clone();
        let request = GenerateRequest {
            model: "gpt2".into(),
            inputs: vec!["Hello".into()],
            ..request
        };
        async move { client.generate(request).await.unwrap().into_inner().results[0].sequences[0].generated_tokens }
    };
    let by_total = tokens_answered(GenerateRequest {
        max_length: Some(4),
        ..Default::default()
    })
    .await;
    assert_eq!(tokens_printed(&["--max-length", "4"]), by_total);
    let at_least = tokens_answered(GenerateRequest {
        min_new_tokens: Some(9),
        max_new_tokens: Some(9),
        ..Default::default()
    })
    .await;
    assert_eq!(
        tokens_printed(&["--min-new-tokens", "9", "--max-new-tokens", "9"]),
        at_least
    );
    let sampled = daemon.inferctl(&[
        "--json",
        "generate",
        "Hello",
        "--model",
        "gpt2",
        "--sample",
        "--seed",
        "3",
        "--num-return-sequences",
        "2",
        "--max-new-tokens",
        "4",
    ]);
    let sampled: Value = serde_json::from_str(&sampled).unwrap();
    assert_eq!(sampled[0].as_array().unwrap().len(), 2, "{sampled}");
}
