//! Hostile requests get the right code and a one-line message that says
//! what was wrong, and the daemon keeps serving: bytes that are not a
//! request, panics and LibTorch errors (the client sees one line and a
//! request id, the log keeps the C++ frames), NaN and infinite floats,
//! parameters past their documented bounds, and LoadModel's own bounds.

use inferd_proto::v1::{
    AnswerQuestionRequest, AudioInput, ClassifyRequest, GenerateRequest, GetModelRequest, ListModelsRequest,
    LoadModelRequest, ModelOptions, QuestionInput, SummarizeRequest, TextInput, TranscribeRequest, TranslateRequest,
};
use inferd_tests::{fixture_model, panic_request as run, test_plugin_dir, Daemon, RawCodec};
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

/// Asserts `status` has `code` and a one-line message holding every needle.
fn assert_refused(status: &Status, code: Code, needles: &[&str]) {
    let message = status.message();
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "the message is not one line: {message:?}"
    );
    assert!(
        message.len() < 1200,
        "the message is {} bytes: {message}",
        message.len()
    );
    for needle in needles {
        assert!(message.contains(needle), "{message:?} should mention {needle:?}");
    }
}

/// The request id a message names ("... (request 12; the daemon's log ...").
fn request_id(message: &str) -> u64 {
    let at = message
        .rfind("(request ")
        .unwrap_or_else(|| panic!("no request id in {message:?}"));
    let digits: String = message[at + 9..].chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no request id in {message:?}"))
}

/// Asserts the daemon's log has, in the span of request `id`, a failure
/// followed by `detail` (the frames the client was not shown).
fn assert_logged(daemon: &Daemon, id: u64, detail: &str) {
    let log = daemon.log();
    let span = format!("request{{id={id} ");
    let at = log
        .lines()
        .scan(0, |offset, line| {
            let start = *offset;
            *offset += line.len() + 1;
            Some((start, line))
        })
        .find(|(_, line)| line.contains(&span) && line.contains("failed:"))
        .map(|(start, _)| start)
        .unwrap_or_else(|| panic!("no failure logged for request {id}:\n{log}"));
    assert!(
        log[at..].contains(detail),
        "the log of request {id} does not hold {detail:?}:\n{}",
        &log[at..]
    );
}

fn test_plugins_arg() -> String {
    let dir = test_plugin_dir();
    assert!(
        dir.join("libinferd_testplugin_panicky.so").is_file(),
        "test plugins are missing in {}: scripts/test.sh builds them",
        dir.display()
    );
    dir.display().to_string()
}

fn classify(text: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: "bert".into(),
        inputs: vec![TextInput {
            text: text.into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

async fn still_classifies(daemon: &Daemon) {
    let answer = daemon.inference().await.classify(classify("still here")).await;
    assert!(
        answer.is_ok(),
        "the daemon stopped serving: {answer:?}\n{}",
        daemon.log()
    );
}

// ---------------------------------------------------------------- bad bytes

async fn raw_unary(daemon: &Daemon, path: &'static str, bytes: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(daemon.channel().await);
    grpc.ready().await.expect("channel ready");
    grpc.unary(tonic::Request::new(bytes), PathAndQuery::from_static(path), RawCodec)
        .await
        .map(|r| r.into_inner())
}

/// `message`'s encoding with the bytes of `marker` replaced by bytes that
/// are not UTF-8 (same length, so the lengths stay right).
fn with_invalid_utf8(message: &impl Message, marker: &str) -> Vec<u8> {
    let mut bytes = message.encode_to_vec();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("the marker is in the encoding");
    for (i, b) in bytes[at..at + marker.len()].iter_mut().enumerate() {
        *b = if i % 2 == 0 { 0xff } else { 0xc3 };
    }
    bytes
}

#[tokio::test]
async fn bytes_that_are_not_a_valid_request_get_invalid_argument_naming_the_rpc() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;

    // Invalid UTF-8 in a string field (TextInput.text), on the unary path.
    let bytes = with_invalid_utf8(&classify("MARKMARK"), "MARKMARK");
    let status = raw_unary(&daemon, "/inferd.v1.Inference/Classify", bytes)
        .await
        .expect_err("not UTF-8");
    assert_refused(
        &status,
        Code::InvalidArgument,
        &["inferd.v1.Inference/Classify", "TextInput.text", "not UTF-8"],
    );

    // Bytes that are not protobuf at all: a truncated varint, a wire type
    // that does not exist, a length past the end.
    for garbage in [vec![0x0a, 0xff, 0xff], vec![0x0f, 0x01], vec![0x12, 0x7f, 0x01]] {
        let status = raw_unary(&daemon, "/inferd.v1.Inference/Classify", garbage.clone())
            .await
            .expect_err("not protobuf");
        assert_refused(
            &status,
            Code::InvalidArgument,
            &["inferd.v1.Inference/Classify", "not a valid protobuf message"],
        );
    }

    // The Models service, with a name that is not UTF-8.
    let load = LoadModelRequest {
        name: "NAMENAME".into(),
        task: "text-classification".into(),
        ..Default::default()
    };
    let status = raw_unary(
        &daemon,
        "/inferd.v1.Models/LoadModel",
        with_invalid_utf8(&load, "NAMENAME"),
    )
    .await
    .expect_err("not UTF-8");
    assert_refused(
        &status,
        Code::InvalidArgument,
        &["inferd.v1.Models/LoadModel", "LoadModelRequest.name", "not UTF-8"],
    );

    // The streaming RPC decodes its request the same way.
    let mut grpc = tonic::client::Grpc::new(daemon.channel().await);
    grpc.ready().await.expect("channel ready");
    let status = grpc
        .server_streaming(
            tonic::Request::new(vec![0x0a, 0xff, 0xff]),
            PathAndQuery::from_static("/inferd.v1.Inference/GenerateStream"),
            RawCodec,
        )
        .await
        .expect_err("not protobuf");
    assert_refused(&status, Code::InvalidArgument, &["inferd.v1.Inference/GenerateStream"]);

    // Well-formed bytes still work, through the same raw path.
    let answer = raw_unary(
        &daemon,
        "/inferd.v1.Inference/Classify",
        classify("fine bytes").encode_to_vec(),
    )
    .await
    .expect("a valid request");
    assert!(!answer.is_empty());
    still_classifies(&daemon).await;
}

// ------------------------------------------------- panics, LibTorch errors

#[tokio::test]
async fn panics_and_libtorch_errors_reach_the_client_as_one_line_and_a_request_id_and_the_log_keeps_the_frames() {
    let dir = test_plugins_arg();
    let daemon = Daemon::start(&["--plugin-dir", &dir]).await;
    let mut client = daemon.inference().await;

    // A panic carrying a LibTorch error Debug-formatted (one physical line
    // of kilobytes): the batch fails as a whole.
    let status = client.run(run("", "torch-panic")).await.expect_err("it panics");
    assert_refused(
        &status,
        Code::Internal,
        &[
            "plugin panicked in run",
            "index out of range in self",
            "the daemon's log",
        ],
    );
    assert!(
        !status.message().contains("frame #") && !status.message().contains("0x7f"),
        "C++ frames reached the client: {}",
        status.message()
    );
    assert_logged(
        &daemon,
        request_id(status.message()),
        "frame #47: at::native::index_select_out_cpu_",
    );

    // A request answered INTERNAL with the error's Display (frames on lines
    // of their own), its batch-mates unaffected.
    let status = client.run(run("", "torch-error")).await.expect_err("INTERNAL");
    assert_refused(
        &status,
        Code::Internal,
        &["Internal torch error: index out of range in self"],
    );
    assert!(!status.message().contains("frame #"), "{}", status.message());
    assert_logged(
        &daemon,
        request_id(status.message()),
        "frame #47: at::native::index_select_out_cpu_",
    );

    // A shorter panic keeps its whole message, with the request id.
    let status = client.run(run("", "panic")).await.expect_err("it panics");
    assert_refused(
        &status,
        Code::Internal,
        &["plugin panicked in run: asked to panic (request "],
    );

    // Batched with good requests: the batch fails, each request runs again
    // alone, and only the panicking one fails, shown the same way.
    let load = LoadModelRequest {
        name: "batched".into(),
        task: "panic".into(),
        options: Some(ModelOptions {
            max_batch_size: Some(16),
            max_queue_delay_ms: Some(300),
            ..Default::default()
        }),
        ..Default::default()
    };
    daemon
        .models()
        .await
        .load_model(load)
        .await
        .expect("load a batching instance");
    let calls: Vec<_> = ["hello", "torch-panic", "world"]
        .into_iter()
        .map(|text| {
            let mut client = client.clone();
            tokio::spawn(async move { client.run(run("batched", text)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("join"));
    }
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    let status = answers[1].as_ref().expect_err("the panicking request");
    assert_refused(status, Code::Internal, &["index out of range in self", "(request "]);
    assert!(!status.message().contains("frame #"), "{}", status.message());
    assert_logged(&daemon, request_id(status.message()), "frame #47");

    // The plugin keeps serving.
    let echo = client
        .run(run("", "hello"))
        .await
        .expect("after the panics")
        .into_inner();
    assert!(echo.results[0].output.as_ref().unwrap().fields.contains_key("echo"));
}

// ------------------------------------------------ NaN and infinite floats

fn generate(prompt: &str) -> GenerateRequest {
    GenerateRequest {
        model: "gpt2".into(),
        inputs: vec![prompt.into()],
        max_new_tokens: Some(3),
        ..Default::default()
    }
}

#[tokio::test]
async fn nan_and_infinite_generation_settings_are_invalid_arguments_naming_the_setting() {
    const MARKER: &str = "@@hostile-fault@@";
    let daemon = Daemon::start_with_env(&[], &[("INFERD_FAULT_PANIC_MARKER", MARKER)]).await;
    daemon.load("gpt2", "text-generation", &fixture_model("gpt2-gen")).await;
    let mut client = daemon.inference().await;
    let cases: [(&str, GenerateRequest); 6] = [
        (
            "temperature",
            GenerateRequest {
                temperature: Some(f32::NAN),
                ..generate("Hello")
            },
        ),
        (
            "temperature",
            GenerateRequest {
                temperature: Some(f32::INFINITY),
                do_sample: Some(false),
                ..generate("Hello")
            },
        ),
        (
            "top_p",
            GenerateRequest {
                top_p: Some(f32::NAN),
                ..generate("Hello")
            },
        ),
        (
            "top_p",
            GenerateRequest {
                top_p: Some(f32::NEG_INFINITY),
                ..generate("Hello")
            },
        ),
        (
            "repetition_penalty",
            GenerateRequest {
                repetition_penalty: Some(f32::NAN),
                ..generate("Hello")
            },
        ),
        (
            "repetition_penalty",
            GenerateRequest {
                repetition_penalty: Some(f32::INFINITY),
                ..generate("Hello")
            },
        ),
    ];
    for (name, request) in cases {
        let status = client.generate(request).await.expect_err(name);
        assert_refused(&status, Code::InvalidArgument, &[name]);
    }

    // The streaming RPC refuses the same way, in its stream.
    let mut stream = client
        .generate_stream(GenerateRequest {
            temperature: Some(f32::NAN),
            ..generate("Hello")
        })
        .await
        .expect("the stream opens")
        .into_inner();
    let status = stream.message().await.expect_err("NaN temperature");
    assert_refused(&status, Code::InvalidArgument, &["temperature must be a finite number"]);

    // A panic while streaming: one line and a request id, in the stream.
    let mut stream = client
        .generate_stream(generate(&format!("Hello {MARKER}")))
        .await
        .expect("the stream opens")
        .into_inner();
    let status = stream.message().await.expect_err("the batch panics");
    assert_refused(&status, Code::Internal, &["INFERD_FAULT_PANIC_MARKER", "(request "]);
    assert_logged(&daemon, request_id(status.message()), "INFERD_FAULT_PANIC_MARKER");

    let answer = client.generate(generate("Hello")).await.expect("a good request");
    assert_eq!(answer.into_inner().results.len(), 1);
}

#[tokio::test]
async fn nan_and_infinite_length_penalties_and_audio_chunk_lengths_are_invalid_arguments() {
    let daemon = Daemon::start(&[]).await;
    daemon.load("bart", "summarization", &fixture_model("bart-sum")).await;
    daemon.load("t5", "translation", &fixture_model("t5-small-ish")).await;
    daemon
        .load("w2v2", "automatic-speech-recognition", &fixture_model("w2v2-base"))
        .await;
    let mut client = daemon.inference().await;
    let text = "The city council approved a plan to build three new bridges over the river.";
    for penalty in [f32::NAN, f32::INFINITY] {
        let status = client
            .summarize(SummarizeRequest {
                model: "bart".into(),
                inputs: vec![text.into()],
                length_penalty: Some(penalty),
                ..Default::default()
            })
            .await
            .expect_err("length_penalty");
        assert_refused(
            &status,
            Code::InvalidArgument,
            &["length_penalty must be a finite number"],
        );
        let status = client
            .translate(TranslateRequest {
                model: "t5".into(),
                inputs: vec![text.into()],
                length_penalty: Some(penalty),
                ..Default::default()
            })
            .await
            .expect_err("length_penalty");
        assert_refused(
            &status,
            Code::InvalidArgument,
            &["length_penalty must be a finite number"],
        );
    }
    let speech = wav(16000, &[0.1; 16000]);
    for (name, chunk, stride) in [
        ("chunk_length_s", Some(f64::NAN), vec![]),
        ("chunk_length_s", Some(f64::INFINITY), vec![]),
        ("stride_length_s", Some(4.0), vec![f64::NAN]),
        ("stride_length_s", Some(4.0), vec![f64::INFINITY, 0.5]),
    ] {
        let status = client
            .transcribe(TranscribeRequest {
                model: "w2v2".into(),
                inputs: vec![AudioInput { data: speech.clone() }],
                chunk_length_s: chunk,
                stride_length_s: stride,
                ..Default::default()
            })
            .await
            .expect_err(name);
        assert_refused(&status, Code::InvalidArgument, &[name]);
    }
    let summary = client
        .summarize(SummarizeRequest {
            model: "bart".into(),
            inputs: vec![text.into()],
            length_penalty: Some(2.0),
            ..Default::default()
        })
        .await
        .expect("a finite length_penalty");
    assert_eq!(summary.into_inner().results.len(), 1);
}

// ------------------------------------------------------ documented bounds

#[tokio::test]
async fn translate_refuses_an_over_limit_max_length_even_where_max_new_tokens_would_take_precedence() {
    let daemon = Daemon::start(&[]).await;
    daemon.load("t5", "translation", &fixture_model("t5-small-ish")).await;
    let mut client = daemon.inference().await;
    let translate = |max_length: Option<u32>, max_new_tokens: Option<u32>| TranslateRequest {
        model: "t5".into(),
        inputs: vec!["How are you?".into()],
        src_lang: "en".into(),
        tgt_lang: "fr".into(),
        max_length,
        max_new_tokens,
        num_beams: Some(1),
        ..Default::default()
    };
    // t5-small-ish has no max_length of its own: the pipeline's 256 new
    // tokens would win over max_length, which used to be ignored unchecked.
    let status = client
        .translate(translate(Some(100_000), None))
        .await
        .expect_err("max_length past the decoder's 4096 positions");
    assert_refused(&status, Code::InvalidArgument, &["max_length 100000", "limit of 4096"]);
    let status = client
        .translate(translate(None, Some(4096)))
        .await
        .expect_err("max_new_tokens past the positions");
    assert_refused(&status, Code::InvalidArgument, &["max_new_tokens 4096", "4095"]);
    let answer = client
        .translate(translate(Some(8), None))
        .await
        .expect("a max_length within the limit");
    assert_eq!(answer.into_inner().results.len(), 1);
}

fn question(question: &str, context: &str, max_seq_len: Option<u32>, doc_stride: Option<u32>) -> AnswerQuestionRequest {
    AnswerQuestionRequest {
        model: "qa".into(),
        inputs: vec![QuestionInput {
            question: question.into(),
            context: context.into(),
        }],
        max_seq_len,
        doc_stride,
        ..Default::default()
    }
}

#[tokio::test]
async fn question_answering_refuses_windows_that_cannot_be_cut_as_asked() {
    let daemon = Daemon::start(&[]).await;
    daemon.load("qa", "question-answering", &fixture_model("bert-qa")).await;
    let mut client = daemon.inference().await;
    let short = "My name is Sylvain and I work at Hugging Face in Brooklyn.";
    let long = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(150);
    let medium = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(10);
    let cases = [
        // Shorter than the special tokens: it used to turn the limit off.
        (
            "max_seq_len 0",
            question("Where?", &long, Some(0), None),
            "max_seq_len 0 leaves no room",
        ),
        (
            "max_seq_len 1",
            question("Where?", &long, Some(1), None),
            "max_seq_len 1 leaves no room",
        ),
        // Longer than the model's positions: it used to panic in the model.
        (
            "max_seq_len 2000",
            question("Where?", &long, Some(2000), None),
            "max_seq_len 2000 is more than this model's 512 tokens",
        ),
        // A stride the window's context part cannot hold (64 tokens less
        // the question and the special tokens): it used to panic in the
        // tokenizer.
        (
            "doc_stride 60",
            question("Where does the fox jump?", &long, Some(64), Some(60)),
            "doc_stride (60) must be less than",
        ),
        // transformers' own check.
        (
            "doc_stride 100",
            question("Where?", &long, Some(64), Some(100)),
            "doc_stride (100) is larger than max_seq_len (64)",
        ),
    ];
    for (what, request, needle) in cases {
        let status = client.answer_question(request).await.expect_err(what);
        assert_refused(&status, Code::InvalidArgument, &[needle]);
    }
    // A large max_seq_len on a context that fits the model runs, as in
    // transformers (one window, nothing cut).
    let answer = client
        .answer_question(question("Where does Sylvain work?", short, Some(2000), None))
        .await
        .expect("a short context with a large max_seq_len");
    assert_eq!(answer.into_inner().results.len(), 1);
    let answer = client
        .answer_question(question("Where?", &medium, Some(64), Some(16)))
        .await
        .expect("a long context in windows");
    assert_eq!(answer.into_inner().results.len(), 1);
}

/// A mono PCM16 WAV of `samples` at `rate`.
fn wav(rate: u32, samples: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let mut out = b"RIFF".to_vec();
    out.extend((36 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(rate.to_le_bytes());
    out.extend((rate * 2).to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

#[tokio::test]
async fn a_wav_with_a_sample_rate_of_zero_is_an_invalid_argument() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("w2v2", "automatic-speech-recognition", &fixture_model("w2v2-base"))
        .await;
    let mut client = daemon.inference().await;
    let transcribe = |data: Vec<u8>| TranscribeRequest {
        model: "w2v2".into(),
        inputs: vec![AudioInput { data }],
        ..Default::default()
    };
    let status = client
        .transcribe(transcribe(wav(0, &[0.1; 1600])))
        .await
        .expect_err("sample rate 0");
    assert_refused(
        &status,
        Code::InvalidArgument,
        &["sample rate is 0 Hz", "from 1000 to 384000 Hz"],
    );
    let answer = client
        .transcribe(transcribe(wav(16000, &[0.1; 1600])))
        .await
        .expect("a good WAV after the refusal");
    assert_eq!(answer.into_inner().results.len(), 1);
}

// --------------------------------------------------------------- LoadModel

#[tokio::test]
async fn load_model_bounds_instances_and_names() {
    let dir = test_plugins_arg();
    let daemon = Daemon::start(&["--plugin-dir", &dir]).await;
    let mut models = daemon.models().await;
    let load = |name: &str, source: &str, instances: u32| LoadModelRequest {
        name: name.into(),
        task: "panic".into(),
        source: source.into(),
        instances,
        ..Default::default()
    };
    let status = models
        .load_model(load("many", "", 1_000_000))
        .await
        .expect_err("a million instances");
    assert_refused(
        &status,
        Code::InvalidArgument,
        &["instances must be at most 64", "1000000"],
    );

    let long = "m".repeat(300);
    let cases = [
        ("with space", "the character ' '"),
        ("naïve", "the character 'ï'"),
        ("tab\tname", "the character '\\t'"),
        ("quote\"name", "the character '\"'"),
        (long.as_str(), "300 characters long; at most 256"),
    ];
    for (name, needle) in cases {
        let status = models.load_model(load(name, "", 1)).await.expect_err(name);
        assert_refused(&status, Code::InvalidArgument, &[needle]);
    }
    // Unnamed, a model is named after its source: a source that makes a
    // bad name is refused with the hint to name the model.
    let unnamed = LoadModelRequest {
        task: "text-classification".into(),
        source: "/models/my models/sst2".into(),
        ..Default::default()
    };
    let status = models.load_model(unnamed).await.expect_err("a space in the source");
    assert_refused(&status, Code::InvalidArgument, &["give the model a `name`"]);

    let listed: Vec<String> = models
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models
        .into_iter()
        .map(|m| m.name)
        .collect();
    for (name, _) in cases {
        assert!(
            !listed.iter().any(|n| n == name),
            "refused {name:?} is listed: {listed:?}"
        );
    }
    assert!(!listed.iter().any(|n| n == "many"), "{listed:?}");
    // Names of hub ids and directories, and the bound itself, are fine.
    models
        .load_model(load("org/model-v1.2_b", "", 64))
        .await
        .expect("a hub-like name with 64 instances");
    daemon
        .inference()
        .await
        .run(run("org/model-v1.2_b", "still here"))
        .await
        .expect("the model serves");
}

#[tokio::test]
async fn a_failed_load_is_not_listed_and_its_name_can_be_loaded_again() {
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let mut models = daemon.models().await;
    let empty = tempfile::tempdir().unwrap();
    let load = |source: String| LoadModelRequest {
        name: "ghost".into(),
        task: "text-classification".into(),
        source,
        ..Default::default()
    };
    let status = models
        .load_model(load(empty.path().display().to_string()))
        .await
        .expect_err("no config.json");
    assert_refused(&status, Code::FailedPrecondition, &["has no config.json"]);

    let listed = models
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    assert!(
        listed.iter().all(|m| m.name != "ghost"),
        "a failed load is listed: {listed:?}"
    );
    let status = models
        .get_model(GetModelRequest { name: "ghost".into() })
        .await
        .expect_err("not loaded");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let metrics = daemon.metrics();
    assert!(
        !metrics.contains("model=\"ghost\""),
        "a failed load has metrics:\n{metrics}"
    );

    let info = models
        .load_model(load(fixture_model("bert-cls")))
        .await
        .expect("the name is free again")
        .into_inner();
    assert_eq!(info.name, "ghost");
    let answer = daemon
        .inference()
        .await
        .classify(ClassifyRequest {
            model: "ghost".into(),
            ..classify("it loaded")
        })
        .await;
    assert!(answer.is_ok(), "{answer:?}");
}
