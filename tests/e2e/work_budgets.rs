//! Work budgets per request (issue 20): each task estimates a request's
//! cost before running it and refuses one over the model's limit with
//! RESOURCE_EXHAUSTED naming the limit's variable; one just under the limit
//! runs; the daemon serves on afterwards. Most tests lower a limit through
//! its `INFERD_MAX_*` variable so that "just over" is a small request; the
//! first checks the defaults against the requests the issue reproduced.
//! Long work stops within one piece once its deadline passes.

use std::time::{Duration, Instant};

use inferd_proto::v1::{
    AnswerQuestionRequest, ClassifyImageRequest, ClassifyRequest, ClassifyTokensRequest, EmbedRequest, FillMaskRequest,
    GenerateRequest, GetModelRequest, ImageInput, ListModelsRequest, LoadModelRequest, ModelOptions, QuestionInput,
    TextInput, ZeroShotClassifyRequest,
};
use inferd_tests::{fixture_model, Daemon};
use tonic::Code;

fn assert_over_limit<T: std::fmt::Debug>(result: Result<T, tonic::Status>, variable: &str) -> String {
    let status = result.expect_err("a request over the limit should be refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Refused however often it is sent: no retry pushback.
    assert!(status.metadata().get("grpc-retry-pushback-ms").is_none(), "{status:?}");
    assert!(
        status.message().contains(variable),
        "message {:?} should name {variable}",
        status.message()
    );
    status.message().to_string()
}

/// The amount a refusal reports: "... is N, over this model's limit ...".
fn asked(message: &str) -> u64 {
    let after = message
        .split(" is ")
        .nth(1)
        .unwrap_or_else(|| panic!("no amount in {message:?}"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no amount in {message:?}"))
}

fn zero_shot(inputs: Vec<String>, labels: usize) -> ZeroShotClassifyRequest {
    ZeroShotClassifyRequest {
        model: "nli".into(),
        inputs,
        candidate_labels: vec!["sports".into(); labels],
        ..Default::default()
    }
}

fn fill_mask(masks: usize, top_k: u32) -> FillMaskRequest {
    FillMaskRequest {
        truncation: None,
        model: "mlm".into(),
        inputs: vec![format!("the {} end", "[MASK] ".repeat(masks))],
        top_k: Some(top_k),
        targets: vec![],
    }
}

fn embed(texts: usize, token_embeddings: bool) -> EmbedRequest {
    EmbedRequest {
        model: "embed".into(),
        inputs: vec!["a".into(); texts],
        return_token_embeddings: token_embeddings,
        ..Default::default()
    }
}

fn generate(prompts: usize, copies: u32, max_new_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: "gpt2".into(),
        inputs: vec!["Hello there".into(); prompts],
        max_new_tokens: Some(max_new_tokens),
        do_sample: Some(copies > 1),
        num_return_sequences: Some(copies),
        seed: Some(1),
        ..Default::default()
    }
}

fn questions(inputs: usize, context: &str) -> AnswerQuestionRequest {
    AnswerQuestionRequest {
        model: "qa".into(),
        inputs: vec![
            QuestionInput {
                question: "Where?".into(),
                context: context.into(),
            };
            inputs
        ],
        ..Default::default()
    }
}

fn images(data: Vec<Vec<u8>>) -> ClassifyImageRequest {
    ClassifyImageRequest {
        model: "vit".into(),
        inputs: data.into_iter().map(|data| ImageInput { data }).collect(),
        ..Default::default()
    }
}

/// A PNG chunk: length, type and data, CRC-32.
fn png_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let mut crc = !0u32;
    for &b in kind.iter().chain(data) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    png.extend((data.len() as u32).to_be_bytes());
    png.extend(kind);
    png.extend(data);
    png.extend((!crc).to_be_bytes());
}

/// A PNG whose header says `width` x `height` (8-bit RGB), with real pixel
/// data (a grey image, zlib "stored") only when `with_pixels`, else an
/// empty IDAT: a header is all that a refusal before decoding reads.
fn png(width: u32, height: u32, with_pixels: bool) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &header);
    if with_pixels {
        // Each row: filter type 0, then the pixels.
        let row: Vec<u8> = std::iter::once(0)
            .chain(std::iter::repeat_n(128, width as usize * 3))
            .collect();
        let raw: Vec<u8> = row.repeat(height as usize);
        assert!(raw.len() < 65_536, "one stored deflate block");
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &raw {
            a = (a + u32::from(byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        let mut zlib = vec![0x78, 0x01, 0x01];
        zlib.extend((raw.len() as u16).to_le_bytes());
        zlib.extend((!(raw.len() as u16)).to_le_bytes());
        zlib.extend(&raw);
        zlib.extend(((b << 16) | a).to_be_bytes());
        png_chunk(&mut png, b"IDAT", &zlib);
    } else {
        png_chunk(&mut png, b"IDAT", &[]);
    }
    png_chunk(&mut png, b"IEND", &[]);
    png
}

#[tokio::test]
async fn the_issues_oversized_requests_are_refused_by_the_default_limits_and_the_daemon_serves_on() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("nli", "zero-shot-classification", &fixture_model("bert-nli"))
        .await;
    daemon.load("mlm", "fill-mask", &fixture_model("bert-mlm")).await;
    daemon.load("gpt2", "text-generation", &fixture_model("gpt2-gen")).await;
    daemon.load("qa", "question-answering", &fixture_model("bert-qa")).await;
    daemon
        .load("vit", "image-classification", &fixture_model("vit-cls"))
        .await;
    let mut client = daemon.inference().await;
    let rss_before = daemon.rss_bytes();

    // 300,000 sampled sequences of one prompt (4.9 GB before the limit).
    assert_over_limit(client.generate(generate(1, 300_000, 2)).await, "INFERD_MAX_SEQUENCES");
    // 1 MB of text against 40 labels (6.7 GB before).
    let megabyte = "word ".repeat(200_000);
    assert_over_limit(
        client.zero_shot_classify(zero_shot(vec![megabyte], 40)).await,
        "INFERD_MAX_ZERO_SHOT_TOKENS",
    );
    // 500 masks, each asking for 10^9 candidates (clamped to the 800-token
    // vocabulary: 400,000 candidates).
    let message = assert_over_limit(
        client.fill_mask(fill_mask(500, 1_000_000_000)).await,
        "INFERD_MAX_FILL_MASK_CANDIDATES",
    );
    assert_eq!(asked(&message), 500 * 800, "{message}");
    // A 600 KB context: over a thousand windows of 384 tokens.
    let context = "the river runs past the old mill and on to the sea. ".repeat(12_000);
    assert_over_limit(
        client.answer_question(questions(1, &context)).await,
        "INFERD_MAX_QA_WINDOWS",
    );
    // Four 81-megapixel PNGs, each under the 89 Mpx single-image limit:
    // refused from their headers, before any is decoded.
    assert_over_limit(
        client.classify_image(images(vec![png(9_000, 9_000, false); 4])).await,
        "INFERD_MAX_REQUEST_PIXELS",
    );
    let grown = daemon.rss_bytes().saturating_sub(rss_before);
    assert!(grown < 512 << 20, "refusing them grew the daemon by {} MB", grown >> 20);

    // Every model still serves.
    client
        .generate(generate(1, 1, 2))
        .await
        .expect("generation after the refusals");
    client
        .zero_shot_classify(zero_shot(vec!["a short text".into()], 2))
        .await
        .expect("zero-shot after the refusals");
    client
        .fill_mask(fill_mask(1, 5))
        .await
        .expect("fill-mask after the refusals");
    client
        .answer_question(questions(1, "The mill is by the river."))
        .await
        .expect("question answering after the refusals");
    client
        .classify_image(images(vec![png(8, 8, true)]))
        .await
        .expect("image classification after the refusals");
}

#[tokio::test]
async fn generation_is_bounded_in_sequences_and_tokens_per_request() {
    let daemon = Daemon::start_with_env(
        &[],
        &[("INFERD_MAX_SEQUENCES", "4"), ("INFERD_MAX_GENERATION_TOKENS", "100")],
    )
    .await;
    daemon.load("gpt2", "text-generation", &fixture_model("gpt2-gen")).await;
    let mut client = daemon.inference().await;

    // Sequences: prompts x num_return_sequences.
    let answer = client
        .generate(generate(2, 2, 2))
        .await
        .expect("4 sequences")
        .into_inner();
    assert_eq!(answer.results.iter().map(|r| r.sequences.len()).sum::<usize>(), 4);
    let message = assert_over_limit(client.generate(generate(1, 5, 2)).await, "INFERD_MAX_SEQUENCES");
    assert_eq!(asked(&message), 5, "{message}");
    assert_over_limit(client.generate(generate(5, 1, 2)).await, "INFERD_MAX_SEQUENCES");

    // Tokens: prompt + max_new_tokens per sequence.
    let prompt = client.generate(generate(1, 1, 1)).await.unwrap().into_inner().results[0].sequences[0].prompt_tokens;
    let room = 100 - prompt;
    client
        .generate(generate(1, 1, room))
        .await
        .expect("exactly 100 tokens is within the limit");
    let message = assert_over_limit(
        client.generate(generate(1, 1, room + 1)).await,
        "INFERD_MAX_GENERATION_TOKENS",
    );
    assert_eq!(asked(&message), 101, "{message}");
    client.generate(generate(1, 1, 2)).await.expect("still serving");
}

#[tokio::test]
async fn zero_shot_is_bounded_in_labels_and_in_the_pairs_tokens() {
    let daemon = Daemon::start_with_env(
        &[],
        &[
            ("INFERD_MAX_CANDIDATE_LABELS", "8"),
            ("INFERD_MAX_ZERO_SHOT_TOKENS", "1000"),
        ],
    )
    .await;
    daemon
        .load("nli", "zero-shot-classification", &fixture_model("bert-nli"))
        .await;
    let mut client = daemon.inference().await;

    let answer = client
        .zero_shot_classify(zero_shot(vec!["a short text".into()], 8))
        .await
        .expect("8 labels")
        .into_inner();
    assert_eq!(answer.results[0].labels.len(), 8);
    let message = assert_over_limit(
        client
            .zero_shot_classify(zero_shot(vec!["a short text".into()], 9))
            .await,
        "INFERD_MAX_CANDIDATE_LABELS",
    );
    assert_eq!(asked(&message), 9, "{message}");

    // One label; each "a" is one token, the rest (special tokens and the
    // hypothesis) a fixed overhead, which the first refusal reveals.
    let text = |n: usize| "a ".repeat(n).trim_end().to_string();
    let message = assert_over_limit(
        client.zero_shot_classify(zero_shot(vec![text(2000)], 1)).await,
        "INFERD_MAX_ZERO_SHOT_TOKENS",
    );
    let overhead = asked(&message) - 2000;
    assert!(overhead < 20, "{message}");
    let fits = 1000 - overhead as usize;
    client
        .zero_shot_classify(zero_shot(vec![text(fits)], 1))
        .await
        .expect("exactly 1000 tokens is within the limit");
    let message = assert_over_limit(
        client.zero_shot_classify(zero_shot(vec![text(fits + 1)], 1)).await,
        "INFERD_MAX_ZERO_SHOT_TOKENS",
    );
    assert_eq!(asked(&message), 1001, "{message}");
    // Two texts count twice.
    assert_over_limit(
        client
            .zero_shot_classify(zero_shot(vec![text(fits / 2 + 10); 2], 1))
            .await,
        "INFERD_MAX_ZERO_SHOT_TOKENS",
    );
    client
        .zero_shot_classify(zero_shot(vec!["still here".into()], 2))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn fill_mask_is_bounded_in_candidates_with_top_k_counted_up_to_the_vocabulary() {
    let daemon = Daemon::start_with_env(&[], &[("INFERD_MAX_FILL_MASK_CANDIDATES", "20")]).await;
    daemon.load("mlm", "fill-mask", &fixture_model("bert-mlm")).await;
    let mut client = daemon.inference().await;

    let answer = client
        .fill_mask(fill_mask(4, 5))
        .await
        .expect("4 masks x 5")
        .into_inner();
    assert_eq!(answer.results[0].masks.len(), 4);
    assert!(answer.results[0].masks.iter().all(|m| m.candidates.len() == 5));
    let message = assert_over_limit(
        client.fill_mask(fill_mask(3, 7)).await,
        "INFERD_MAX_FILL_MASK_CANDIDATES",
    );
    assert_eq!(asked(&message), 21, "{message}");
    // top_k past the vocabulary asks for the whole vocabulary (800 tokens).
    let message = assert_over_limit(
        client.fill_mask(fill_mask(1, 1_000_000_000)).await,
        "INFERD_MAX_FILL_MASK_CANDIDATES",
    );
    assert_eq!(asked(&message), 800, "{message}");
    // ... or the targets, when there are some.
    let mut targeted = fill_mask(10, 1_000_000_000);
    targeted.targets = vec!["the".into(), "end".into()];
    let answer = client
        .fill_mask(targeted)
        .await
        .expect("10 masks x 2 targets")
        .into_inner();
    assert!(answer.results[0].masks.iter().all(|m| m.candidates.len() == 2));
    client.fill_mask(fill_mask(1, 5)).await.expect("still serving");
}

#[tokio::test]
async fn feature_extraction_is_bounded_in_the_answers_bytes() {
    // bert-base is 32 wide: a vector is 128 bytes; the text "a" is 3 tokens.
    let daemon = Daemon::start_with_env(&[], &[("INFERD_MAX_EMBEDDING_BYTES", "1280")]).await;
    daemon
        .load("embed", "feature-extraction", &fixture_model("bert-base"))
        .await;
    let mut client = daemon.inference().await;

    let answer = client
        .embed(embed(10, false))
        .await
        .expect("10 pooled vectors")
        .into_inner();
    assert_eq!(answer.results.len(), 10);
    let message = assert_over_limit(client.embed(embed(11, false)).await, "INFERD_MAX_EMBEDDING_BYTES");
    assert_eq!(asked(&message), 11 * 128, "{message}");
    // With token embeddings, each text is 3 token vectors and a pooled one.
    let answer = client.embed(embed(2, true)).await.expect("8 vectors").into_inner();
    assert_eq!(answer.results[0].token_embeddings.len(), 3);
    let message = assert_over_limit(client.embed(embed(3, true)).await, "INFERD_MAX_EMBEDDING_BYTES");
    assert_eq!(asked(&message), 3 * 4 * 128, "{message}");
    client.embed(embed(1, true)).await.expect("still serving");
}

#[tokio::test]
async fn question_answering_is_bounded_in_windows_per_request() {
    let daemon = Daemon::start_with_env(&[], &[("INFERD_MAX_QA_WINDOWS", "6")]).await;
    daemon.load("qa", "question-answering", &fixture_model("bert-qa")).await;
    let mut client = daemon.inference().await;

    // A short context is one window.
    let short = "The mill is by the river.";
    let answer = client
        .answer_question(questions(6, short))
        .await
        .expect("6 windows")
        .into_inner();
    assert_eq!(answer.results.len(), 6);
    let message = assert_over_limit(
        client.answer_question(questions(7, short)).await,
        "INFERD_MAX_QA_WINDOWS",
    );
    assert!(message.contains("up to inputs[6] is 7"), "{message}");
    // A long context alone: 64-token windows, 16 apart.
    let mut long = questions(1, &"the mill is by the river ".repeat(100));
    long.max_seq_len = Some(64);
    long.doc_stride = Some(16);
    let message = assert_over_limit(client.answer_question(long).await, "INFERD_MAX_QA_WINDOWS");
    assert!(asked(&message) > 6, "{message}");
    client
        .answer_question(questions(1, short))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn image_classification_is_bounded_in_pixels_per_request() {
    let daemon = Daemon::start_with_env(&[], &[("INFERD_MAX_REQUEST_PIXELS", "192")]).await;
    daemon
        .load("vit", "image-classification", &fixture_model("vit-cls"))
        .await;
    let mut client = daemon.inference().await;

    let answer = client
        .classify_image(images(vec![png(8, 8, true); 3]))
        .await
        .expect("3 images of 64 pixels")
        .into_inner();
    assert_eq!(answer.results.len(), 3);
    let message = assert_over_limit(
        client.classify_image(images(vec![png(8, 8, true); 4])).await,
        "INFERD_MAX_REQUEST_PIXELS",
    );
    assert_eq!(asked(&message), 256, "{message}");
    // A bad image is still INVALID_ARGUMENT, found while counting.
    let status = client
        .classify_image(images(vec![b"not an image".to_vec()]))
        .await
        .expect_err("not an image");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    client
        .classify_image(images(vec![png(8, 8, true)]))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn a_limit_that_is_not_a_positive_number_fails_the_load_naming_it() {
    let daemon = Daemon::start_with_env(&[], &[("INFERD_MAX_QA_WINDOWS", "lots")]).await;
    let status = daemon
        .models()
        .await
        .load_model(inferd_proto::v1::LoadModelRequest {
            name: "qa".into(),
            task: "question-answering".into(),
            source: fixture_model("bert-qa"),
            ..Default::default()
        })
        .await
        .expect_err("the load should fail");
    assert!(status.message().contains("INFERD_MAX_QA_WINDOWS"), "{status:?}");
}

/// A zero-shot request whose deadline passes while it runs stops within one
/// chunk of pairs (64 forward passes of the tiny fixture model), so that the
/// next request waits for that chunk, not for the rest of the work.
#[tokio::test]
async fn a_long_zero_shot_request_whose_deadline_passes_frees_the_worker_within_a_chunk() {
    let daemon = Daemon::start_with_env(
        &[],
        &[
            ("INFERD_MAX_CANDIDATE_LABELS", "100000"),
            ("INFERD_MAX_ZERO_SHOT_TOKENS", "100000000"),
        ],
    )
    .await;
    daemon
        .load("nli", "zero-shot-classification", &fixture_model("bert-nli"))
        .await;
    let mut client = daemon.inference().await;

    // 64 texts of ~500 tokens against 200 labels: 12,800 full-length pairs,
    // far more than the deadline allows (the worker would be busy for
    // tens of seconds without the checks between chunks).
    let long = zero_shot(vec!["a ".repeat(500); 64], 200);
    let mut request = tonic::Request::new(long);
    request.set_timeout(Duration::from_secs(1));
    let sent = Instant::now();
    let status = client.zero_shot_classify(request).await.expect_err("past its deadline");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        sent.elapsed()
    );

    let next = Instant::now();
    client
        .zero_shot_classify(zero_shot(vec!["a short text".into()], 2))
        .await
        .expect("the next request");
    let waited = next.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the next request waited {waited:?} behind work whose deadline had passed"
    );
}

fn load_request(name: &str, task: &str, fixture: &str, limits: &[(&str, u64)]) -> LoadModelRequest {
    LoadModelRequest {
        name: name.into(),
        task: task.into(),
        source: fixture_model(fixture),
        options: Some(ModelOptions {
            limits: limits.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A limit set in LoadModel's options holds for that model alone; GetModel
/// shows every limit in effect; an unknown name or a zero is refused at
/// load, naming it, and leaves nothing listed.
#[tokio::test]
async fn limits_are_set_per_model_at_load_and_shown_by_get_model() {
    let daemon = Daemon::start(&[]).await;
    let mut models = daemon.models().await;
    models
        .load_model(load_request(
            "gpt2",
            "text-generation",
            "gpt2-gen",
            &[("max_sequences", 2)],
        ))
        .await
        .expect("load with a limit");
    daemon
        .load("gpt2-wide", "text-generation", &fixture_model("gpt2-gen"))
        .await;
    let mut client = daemon.inference().await;

    let message = assert_over_limit(client.generate(generate(1, 3, 2)).await, "max_sequences");
    assert!(message.contains("INFERD_MAX_SEQUENCES"), "{message}");
    client
        .generate(generate(1, 2, 2))
        .await
        .expect("two sequences are within the limit");
    let mut wide = generate(1, 3, 2);
    wide.model = "gpt2-wide".into();
    client.generate(wide).await.expect("the other model keeps the default");

    let info = models
        .get_model(GetModelRequest { name: "gpt2".into() })
        .await
        .unwrap()
        .into_inner();
    let limits = info.options.unwrap().limits;
    assert_eq!(limits.get("max_sequences"), Some(&2), "{limits:?}");
    assert_eq!(limits.get("max_generation_tokens"), Some(&16_384), "{limits:?}");

    for (limit, needle) in [
        ("max_request_pixels", "unknown limit max_request_pixels"),
        ("max_sequences", "above 0"),
    ] {
        let value = if limit == "max_sequences" { 0 } else { 5 };
        let status = models
            .load_model(load_request("bad", "text-generation", "gpt2-gen", &[(limit, value)]))
            .await
            .expect_err("refused at load");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }
    let status = models
        .load_model(load_request("bad", "text-generation", "gpt2-gen", &[("max_inputs", 5)]))
        .await
        .expect_err("a limit of another task");
    assert!(
        status.message().contains("max_generation_tokens, max_sequences"),
        "the message should list the task's limits: {status:?}"
    );
    let listed = models
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    assert!(listed.iter().all(|m| m.name != "bad"), "a refused load is listed");
}

/// Classification takes at most `max_inputs` texts per request (refused
/// before any is tokenized); a 15 MB text (truncated, as pipeline() does)
/// is answered, and within seconds the daemon is within 10% of its size
/// before (it grew by 2.2 GB and kept it when the issue was filed).
#[tokio::test]
async fn classification_is_bounded_in_inputs_and_a_15_mb_text_leaves_the_daemon_as_large_as_before() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("cls", "text-classification", &fixture_model("bert-cls"))
        .await;
    let mut client = daemon.inference().await;
    let classify = |texts: Vec<String>| ClassifyRequest {
        model: "cls".into(),
        inputs: texts
            .into_iter()
            .map(|text| TextInput { text, text_pair: None })
            .collect(),
        ..Default::default()
    };
    let message = assert_over_limit(client.classify(classify(vec!["a".into(); 1025])).await, "max_inputs");
    assert_eq!(asked(&message), 1025);
    client
        .classify(classify(vec!["a short text".into(); 1024]))
        .await
        .expect("1024 texts are within the limit");
    // The steady state, with the connection's buffers grown by a large
    // request (2 MB): what the 15 MB one leaves beyond it is measured.
    let text = "the movie was great and the actors were good ";
    client
        .classify(classify(vec![text.repeat(2_000_000 / 45)]))
        .await
        .expect("a 2 MB text");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = daemon.rss_bytes();
    // Tokenizing it all (as pipeline() does, before truncating) takes
    // about 20 s and 2 GB for a moment.
    let huge = text.repeat(15_000_000 / 45);
    let answer = client.classify(classify(vec![huge])).await.expect("a 15 MB text");
    assert_eq!(answer.into_inner().results.len(), 1);
    // The worker gives the freed memory back just after it answers.
    let bound = before as f64 * 1.10;
    let waiting = Instant::now();
    let mut after = daemon.rss_bytes();
    while after as f64 > bound && waiting.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = daemon.rss_bytes();
    }
    eprintln!("RSS before {} MB, after {} MB", before >> 20, after >> 20);
    assert!(
        after as f64 <= bound,
        "the daemon grew from {} MB to {} MB",
        before >> 20,
        after >> 20
    );
    assert_eq!(daemon.terminate().await.code(), Some(0));
}

/// Classification and token classification run their texts in forward
/// chunks and stop within one once the request's deadline passes: the
/// next request waits for that chunk, not for the rest (15,000 texts of
/// 500 tokens, tens of seconds of work without the checks).
#[tokio::test]
async fn long_classification_requests_whose_deadline_passes_free_the_worker_within_a_chunk() {
    let daemon = Daemon::start(&[]).await;
    let mut models = daemon.models().await;
    let raised = [("max_inputs", 20_000)];
    models
        .load_model(load_request("cls", "text-classification", "bert-cls", &raised))
        .await
        .expect("load cls");
    models
        .load_model(load_request("ner", "token-classification", "bert-ner", &raised))
        .await
        .expect("load ner");
    let mut client = daemon.inference().await;
    let texts = |n: usize, text: &str| vec![text.to_string(); n];
    let classify = |inputs: Vec<String>| ClassifyRequest {
        model: "cls".into(),
        inputs: inputs
            .into_iter()
            .map(|text| TextInput { text, text_pair: None })
            .collect(),
        ..Default::default()
    };
    let tag = |inputs: Vec<String>| ClassifyTokensRequest {
        model: "ner".into(),
        inputs,
        ..Default::default()
    };
    let long = "a ".repeat(500);
    for task in ["text-classification", "token-classification"] {
        let sent = Instant::now();
        let status = if task == "text-classification" {
            let mut request = tonic::Request::new(classify(texts(15_000, &long)));
            request.set_timeout(Duration::from_secs(1));
            client
                .classify(request)
                .await
                .map(|_| ())
                .expect_err("past its deadline")
        } else {
            let mut request = tonic::Request::new(tag(texts(15_000, &long)));
            request.set_timeout(Duration::from_secs(1));
            client
                .classify_tokens(request)
                .await
                .map(|_| ())
                .expect_err("past its deadline")
        };
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{task}: {status:?}"
        );
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{task}: answered after {:?}",
            sent.elapsed()
        );

        let next = Instant::now();
        if task == "text-classification" {
            client
                .classify(classify(texts(1, "a short text")))
                .await
                .expect("the next request");
        } else {
            client
                .classify_tokens(tag(texts(1, "Ada lives in Paris")))
                .await
                .expect("the next request");
        }
        let waited = next.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "{task}: the next request waited {waited:?} behind work whose deadline had passed"
        );
    }
}
