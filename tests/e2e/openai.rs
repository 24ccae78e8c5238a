//! The OpenAI-compatible HTTP API (`--http-listen`), called with the
//! `openai` client itself (in a virtualenv of its own): embeddings equal
//! Embed's, completions (plain and streamed) equal Generate's,
//! transcriptions equal Transcribe's in each response_format, speech equals
//! Synthesize's, and errors reach the client as the right exception class.
//! Plus the port's probes and metrics, oversized uploads, and a streamed
//! completion cancelled when its client goes away.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use inferd_proto::v1::{AudioInput, EmbedRequest, GenerateRequest, SynthesizeRequest, TranscribeRequest};
use inferd_tests::{
    assert_close_with, fixture_model, fixtures_dir, metric, openai_calls, reference, repo_root, Daemon,
};
use serde_json::{json, Value};

fn ok(answer: &Value) -> &Value {
    answer.get("ok").unwrap_or_else(|| panic!("the call failed: {answer}"))
}

/// (exception class, HTTP status) of a call that must fail.
fn error(answer: &Value) -> (String, u64) {
    let e = answer
        .get("error")
        .unwrap_or_else(|| panic!("the call succeeded: {answer}"));
    (e["class"].as_str().unwrap().to_string(), e["status"].as_u64().unwrap())
}

fn audio(name: &str) -> String {
    fixtures_dir().join("audio").join(name).display().to_string()
}

async fn api_daemon(models: &[(&str, &str, String)], extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = vec!["--http-listen".into(), "127.0.0.1:0".into()];
    for (name, task, source) in models {
        args.push("--model".into());
        args.push(format!("{name}:{task}={source}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(&args).await
}

#[tokio::test]
async fn openai_embeddings_equal_embeds_answer_in_floats_base64_and_fewer_dimensions() {
    // Real weights: sentence-transformers all-MiniLM-L6-v2.
    let refs: Value = reference("minilm.json");
    let minilm = repo_root().join(refs["model_dir"].as_str().unwrap());
    let daemon = api_daemon(&[("minilm", "feature-extraction", minilm.display().to_string())], &[]).await;
    let texts = ["A man is eating food.", "A plane is taking off."];
    let answers = openai_calls(
        &daemon,
        "unused",
        &json!([
            {"call": "models.list"},
            // The client asks for base64 unless told otherwise, and decodes it.
            {"call": "embeddings.create", "args": {"model": "minilm", "input": texts}},
            {"call": "embeddings.create", "args": {"model": "minilm", "input": texts[0], "encoding_format": "float"}},
            {"call": "embeddings.create", "args": {"model": "minilm", "input": texts, "dimensions": 64}},
        ]),
    );
    let models = ok(&answers[0]).as_array().unwrap();
    assert!(
        models.iter().any(|m| m["id"] == "minilm" && m["object"] == "model"),
        "{models:?}"
    );
    let want = daemon
        .inference()
        .await
        .embed(EmbedRequest {
            model: "minilm".into(),
            inputs: texts.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let compare = |got: &Value, want: &[f32], what: &str| {
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert_close_with(g.as_f64().unwrap() as f32, (*w).into(), 1e-6, what);
        }
    };
    for (i, result) in want.results.iter().enumerate() {
        let data = &ok(&answers[1])["data"][i];
        assert_eq!(data["index"], i);
        compare(&data["embedding"], &result.embedding, "base64");
    }
    compare(
        &ok(&answers[2])["data"][0]["embedding"],
        &want.results[0].embedding,
        "float",
    );
    // `dimensions`: the first 64 values, back to unit length.
    for (i, result) in want.results.iter().enumerate() {
        let first: Vec<f32> = result.embedding[..64].to_vec();
        let norm = first.iter().map(|v| v * v).sum::<f32>().sqrt();
        let unit: Vec<f32> = first.iter().map(|v| v / norm).collect();
        compare(&ok(&answers[3])["data"][i]["embedding"], &unit, "dimensions");
    }
}

#[tokio::test]
async fn openai_completions_plain_and_streamed_equal_generates() {
    let daemon = api_daemon(&[("gpt2", "text-generation", fixture_model("gpt2-gen"))], &[]).await;
    let prompts = ["Once upon a time", "The weather today"];
    let answers = openai_calls(
        &daemon,
        "unused",
        &json!([
            {"call": "completions.create",
             "args": {"model": "gpt2", "prompt": prompts, "max_tokens": 8, "temperature": 0}},
            {"call": "completions.create",
             "args": {"model": "gpt2", "prompt": prompts[0], "max_tokens": 8, "temperature": 0, "stream": true}},
            {"call": "completions.create",
             "args": {"model": "gpt2", "prompt": prompts[0], "max_tokens": 8, "temperature": 0, "echo": true}},
        ]),
    );
    let want = daemon
        .inference()
        .await
        .generate(GenerateRequest {
            model: "gpt2".into(),
            inputs: prompts.iter().map(|p| p.to_string()).collect(),
            max_new_tokens: Some(8),
            do_sample: Some(false),
            return_full_text: Some(false),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let plain = ok(&answers[0]);
    assert_eq!(plain["object"], "text_completion");
    let mut prompt_tokens = 0;
    for (i, result) in want.results.iter().enumerate() {
        let sequence = &result.sequences[0];
        assert_eq!(plain["choices"][i]["text"], sequence.generated_text.as_str());
        assert_eq!(plain["choices"][i]["index"], i);
        assert_eq!(plain["choices"][i]["finish_reason"], "length");
        prompt_tokens += sequence.prompt_tokens;
    }
    assert_eq!(plain["usage"]["completion_tokens"], 16);
    assert_eq!(plain["usage"]["prompt_tokens"], prompt_tokens);

    let chunks = ok(&answers[1]).as_array().unwrap();
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, want.results[0].sequences[0].generated_text);
    assert!(chunks.len() > 2, "not streamed: {chunks:?}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));

    let echoed = ok(&answers[2])["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(
        echoed,
        format!("{}{}", prompts[0], want.results[0].sequences[0].generated_text)
    );
}

#[tokio::test]
async fn openai_transcriptions_equal_transcribes_in_every_response_format() {
    // Real weights: Whisper tiny.en.
    let daemon = api_daemon(
        &[
            (
                "whisper",
                "automatic-speech-recognition",
                fixture_model("whisper-tiny.en"),
            ),
            (
                "multi",
                "automatic-speech-recognition",
                fixture_model("whisper-random-multi"),
            ),
        ],
        &[],
    )
    .await;
    let speech = audio("speech_16k.wav");
    let call = |format: &str| {
        json!({"call": "audio.transcriptions.create",
        "args": {"model": "whisper", "file": speech, "response_format": format}})
    };
    let answers = openai_calls(
        &daemon,
        "unused",
        &json!([
            call("json"),
            call("text"),
            call("srt"),
            call("vtt"),
            call("verbose_json"),
            {"call": "audio.transcriptions.create", "args": {"model": "whisper", "file": speech,
              "response_format": "verbose_json", "timestamp_granularities": ["word"]}},
            {"call": "audio.translations.create", "args": {"model": "multi", "file": speech}},
        ]),
    );
    let v1 = daemon.inference().await;
    let data = std::fs::read(&speech).unwrap();
    let transcribe = |timestamps: &str, model: &str, task: &str| {
        let request = TranscribeRequest {
            model: model.into(),
            inputs: vec![AudioInput { data: data.clone() }],
            return_timestamps: timestamps.into(),
            task: task.into(),
            ..Default::default()
        };
        let mut v1 = v1.clone();
        async move { v1.transcribe(request).await.unwrap().into_inner().results.remove(0) }
    };
    let plain = transcribe("", "whisper", "").await;
    assert!(!plain.text.trim().is_empty());
    assert_eq!(ok(&answers[0])["text"], plain.text.as_str());
    assert_eq!(ok(&answers[1]).as_str().unwrap().trim_end(), plain.text);

    let segments = transcribe("true", "whisper", "").await;
    let (start, end) = (segments.chunks[0].timestamp[0], segments.chunks[0].timestamp[1]);
    let srt = ok(&answers[2]).as_str().unwrap();
    let stamp = |s: f64, sep: char| {
        let ms = (s * 1000.0).round() as u64;
        format!("00:00:{:02}{sep}{:03}", ms / 1000, ms % 1000)
    };
    assert!(
        srt.starts_with(&format!(
            "1\n{} --> {}\n{}\n",
            stamp(start, ','),
            stamp(end, ','),
            segments.chunks[0].text.trim()
        )),
        "{srt:?}"
    );
    let vtt = ok(&answers[3]).as_str().unwrap();
    assert!(
        vtt.starts_with(&format!("WEBVTT\n\n{} --> {}\n", stamp(start, '.'), stamp(end, '.'))),
        "{vtt:?}"
    );
    let verbose = ok(&answers[4]);
    assert_eq!(verbose["task"], "transcribe");
    assert_eq!(verbose["text"], segments.text.as_str());
    let got_segments = verbose["segments"].as_array().unwrap();
    assert_eq!(got_segments.len(), segments.chunks.len());
    for (got, want) in got_segments.iter().zip(&segments.chunks) {
        assert_eq!(got["text"], want.text.as_str());
        assert_eq!(got["start"].as_f64().unwrap(), want.timestamp[0]);
        assert_eq!(got["end"].as_f64().unwrap(), want.timestamp[1]);
    }

    let words = transcribe("word", "whisper", "").await;
    let got_words = ok(&answers[5])["words"].as_array().unwrap();
    assert_eq!(got_words.len(), words.chunks.len());
    for (got, want) in got_words.iter().zip(&words.chunks) {
        assert_eq!(got["word"], want.text.trim());
        assert_eq!(got["start"].as_f64().unwrap(), want.timestamp[0]);
    }

    let translated = transcribe("", "multi", "translate").await;
    assert_eq!(ok(&answers[6])["text"], translated.text.as_str());
}

/// A `load = "lazy"` model knows its architecture only once loaded: the
/// first translation or subtitles it is asked for load it first, instead
/// of judging it as not Whisper.
#[tokio::test]
async fn a_lazy_whisper_model_translates_and_gives_segments_on_its_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("inferd.toml");
    let table = |name: &str| {
        format!(
            "[[models]]\nname = \"{name}\"\ntask = \"automatic-speech-recognition\"\nsource = \"{}\"\n\
             load = \"lazy\"\n",
            fixture_model("whisper-random-multi")
        )
    };
    std::fs::write(&config, table("multi") + &table("subtitles")).unwrap();
    let daemon = Daemon::start(&["--config", config.to_str().unwrap(), "--http-listen", "127.0.0.1:0"]).await;
    let speech = audio("speech_16k.wav");
    let answers = openai_calls(
        &daemon,
        "unused",
        &json!([
            {"call": "audio.translations.create", "args": {"model": "multi", "file": speech}},
            {"call": "audio.transcriptions.create",
             "args": {"model": "subtitles", "file": speech, "response_format": "verbose_json"}},
        ]),
    );
    let data = std::fs::read(&speech).unwrap();
    let v1 = daemon.inference().await;
    let transcribe = |model: &str, task: &str, timestamps: &str| {
        let request = TranscribeRequest {
            model: model.into(),
            inputs: vec![AudioInput { data: data.clone() }],
            task: task.into(),
            return_timestamps: timestamps.into(),
            ..Default::default()
        };
        let mut v1 = v1.clone();
        async move { v1.transcribe(request).await.unwrap().into_inner().results.remove(0) }
    };
    let translated = transcribe("multi", "translate", "").await;
    assert_eq!(ok(&answers[0])["text"], translated.text.as_str());
    // Whisper's segments (its timestamps), not a CTC model's words.
    let segments = transcribe("subtitles", "", "true").await;
    let got = ok(&answers[1])["segments"].as_array().unwrap().clone();
    assert_eq!(got.len(), segments.chunks.len(), "{got:?}");
    assert_eq!(got[0]["text"], segments.chunks[0].text.as_str());
}

#[tokio::test]
async fn openai_speech_equals_synthesizes_wav_and_pcm() {
    let daemon = api_daemon(&[], &[]).await;
    crate::tts::load(&daemon, "tts", "text-to-speech", "speecht5-random", None).await;
    let speech = |format: &str, voice: &str| {
        json!({"call": "audio.speech.create", "args": {
        "model": "tts", "input": "Hello there.", "voice": voice, "response_format": format,
        "extra_body": {"seed": 7}}})
    };
    let answers = openai_calls(
        &daemon,
        "unused",
        &json!([
            speech("wav", "alice"),
            speech("pcm", "alice"),
            speech("mp3", "alice"),
            speech("wav", "alloy")
        ]),
    );
    let want = daemon
        .inference()
        .await
        .synthesize(SynthesizeRequest {
            model: "tts".into(),
            inputs: vec!["Hello there.".into()],
            speaker: "alice".into(),
            seed: Some(7),
            audio_format: "pcm16".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    let decode = |answer: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(ok(answer)["base64"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(ok(&answers[0])["content_type"], "audio/wav");
    assert_eq!(decode(&answers[0]), want.audio);
    let pcm = decode(&answers[1]);
    assert_eq!(ok(&answers[1])["content_type"], "audio/pcm");
    assert!(!pcm.is_empty());
    assert!(want.audio.ends_with(&pcm), "pcm is the WAV's samples");
    assert_eq!(want.audio.len() - pcm.len(), 44, "a plain 44-byte WAV header");
    assert_eq!(error(&answers[2]), ("BadRequestError".into(), 400));
    assert_eq!(error(&answers[3]), ("BadRequestError".into(), 400));
    let message = answers[3]["error"]["body"]["message"].as_str().unwrap();
    assert!(
        message.contains("alice") && message.contains("bob"),
        "lists the voices: {message}"
    );
}

#[tokio::test]
async fn openai_errors_reach_the_client_as_the_right_exception_class() {
    let daemon = api_daemon(
        &[
            ("gpt2", "text-generation", fixture_model("gpt2-gen")),
            ("emb", "feature-extraction", fixture_model("bert-base")),
        ],
        &["--api-key", "sesame"],
    )
    .await;
    let speech = audio("speech_16k.wav");
    let answers = openai_calls(
        &daemon,
        "sesame",
        &json!([
            {"call": "embeddings.create", "args": {"model": "nope", "input": "x"}},
            {"call": "embeddings.create", "args": {"model": "gpt2", "input": "x"}},
            {"call": "embeddings.create", "args": {"model": "emb", "input": "x", "dimensions": 100000}},
            {"call": "embeddings.create", "args": {"model": "emb", "input": [[1, 2, 3]]}},
            {"call": "completions.create", "args": {"model": "gpt2", "prompt": "x", "logprobs": 2}},
            {"call": "completions.create", "args": {"model": "emb", "prompt": "x"}},
            {"call": "completions.create", "args": {"model": "gpt2", "prompt": "x", "max_tokens": 5000,
                                                    "stream": true}},
            {"call": "audio.transcriptions.create", "args": {"model": "emb", "file": speech,
                                                             "response_format": "xml"}},
            {"call": "audio.transcriptions.create", "args": {"model": "nope", "file": speech}},
            // Refused before the model is looked up, let alone run.
            {"call": "embeddings.create", "args": {"model": "nope", "input": "x", "dimensions": 0}},
        ]),
    );
    let expect = [
        ("NotFoundError", 404, "nope"),
        ("BadRequestError", 400, "text-generation"),
        ("BadRequestError", 400, "dimensions"),
        ("BadRequestError", 400, "token ids"),
        ("BadRequestError", 400, "logprobs"),
        ("BadRequestError", 400, "feature-extraction"),
        ("BadRequestError", 400, "max_new_tokens 5000"),
        ("BadRequestError", 400, "response_format"),
        ("NotFoundError", 404, "nope"),
        ("BadRequestError", 400, "dimensions must be at least 1"),
    ];
    for (i, (class, status, says)) in expect.iter().enumerate() {
        assert_eq!(
            error(&answers[i]),
            (class.to_string(), *status),
            "call {i}: {}",
            answers[i]
        );
        let message = answers[i]["error"]["body"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "call {i}: {message:?} does not say {says:?}");
    }
    let wrong_key = openai_calls(&daemon, "wrong", &json!([{"call": "models.list"}]));
    assert_eq!(error(&wrong_key[0]), ("AuthenticationError".into(), 401));
    // Probes and metrics need no key.
    assert_eq!(daemon.http_call("GET", "/v2/health/live", "text/plain", b"").0, 200);
    assert_eq!(daemon.http_call("GET", "/v2/health/ready", "text/plain", b"").0, 200);
    let (status, metrics) = daemon.http_call("GET", "/metrics", "text/plain", b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8(metrics).unwrap().contains("inferd_requests_total"));
}

#[tokio::test]
async fn a_full_daemon_answers_429_which_the_client_raises_as_a_rate_limit_error() {
    let daemon = api_daemon(
        &[("slow", "text-generation", fixture_model("gpt2-slow"))],
        &["--max-in-flight", "1"],
    )
    .await;
    // One long streamed generation holds the only slot.
    let mut v1 = daemon.inference().await;
    let mut stream = v1
        .generate_stream(GenerateRequest {
            model: "slow".into(),
            inputs: vec!["Once".into()],
            max_new_tokens: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    let answers = openai_calls(
        &daemon,
        "unused",
        &json!([{"call": "completions.create", "args": {"model": "slow", "prompt": "x", "max_tokens": 2}}]),
    );
    assert_eq!(error(&answers[0]), ("RateLimitError".into(), 429));
}

#[tokio::test]
async fn a_request_over_a_work_limit_gets_400_which_the_client_does_not_retry() {
    let daemon = api_daemon(&[("gpt2", "text-generation", fixture_model("gpt2-gen"))], &[]).await;
    // 300 completions of one prompt: over max_sequences (256) however often
    // it is sent, so not a 429, which the client would send twice more.
    let answers = openai_calls(
        &daemon,
        "unused",
        &json!([{"call": "completions.create", "args": {"model": "gpt2", "prompt": "x", "max_tokens": 2, "n": 300}}]),
    );
    assert_eq!(error(&answers[0]), ("BadRequestError".into(), 400), "{}", answers[0]);
    let body = &answers[0]["error"]["body"];
    assert!(body["message"].as_str().unwrap().contains("max_sequences"), "{body}");
    assert_eq!(body["type"], "invalid_request_error", "{body}");
    let (_, metrics) = daemon.http_call("GET", "/metrics", "text/plain", b"");
    let metrics = String::from_utf8(metrics).unwrap();
    let refused = metric(
        &metrics,
        "inferd_requests_total{model=\"gpt2\",code=\"ResourceExhausted\"}",
    );
    assert_eq!(refused, 1.0, "sent once:\n{metrics}");
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408_and_lets_the_connection_go() {
    let daemon = api_daemon(&[], &["--http-body-timeout-seconds", "1"]).await;
    let mut stream = std::net::TcpStream::connect(daemon.http_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The headers, then a few bytes of the 1000 promised, then nothing.
    stream
        .write_all(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: inferd\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"input\": ",
        )
        .unwrap();
    let started = Instant::now();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the daemon answers and closes the connection");
    let waited = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("--http-body-timeout-seconds"), "{response}");
    assert!(waited < Duration::from_secs(10), "answered after {waited:?}");
}

#[tokio::test]
async fn oversized_uploads_get_413_and_bad_forms_400_in_openais_error_shape() {
    let daemon = api_daemon(
        &[("asr", "automatic-speech-recognition", fixture_model("w2v2-base"))],
        &["--max-request-bytes", "100000"],
    )
    .await;
    let boundary = "xyzzy";
    let form = |file: &[u8]| {
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nasr\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        body
    };
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (status, body) = daemon.http_call(
        "POST",
        "/v1/audio/transcriptions",
        &content_type,
        &form(&vec![0u8; 300_000]),
    );
    assert_eq!(status, 413);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-request-bytes"),
        "{body}"
    );
    // Small enough, and a real file: answered.
    let wav = std::fs::read(audio("speech_16k.wav")).unwrap();
    assert!(wav.len() < 100_000);
    let (status, body) = daemon.http_call("POST", "/v1/audio/transcriptions", &content_type, &form(&wav));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Not a form, not audio, not JSON.
    let (status, body) = daemon.http_call("POST", "/v1/audio/transcriptions", "text/plain", b"hello");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, body) = daemon.http_call("POST", "/v1/audio/transcriptions", &content_type, &form(b"not audio"));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, body) = daemon.http_call("POST", "/v1/embeddings", "application/json", b"{\"model\": ");
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn a_streamed_completion_stops_when_its_client_goes_away() {
    let daemon = api_daemon(&[("slow", "text-generation", fixture_model("gpt2-slow"))], &[]).await;
    let body = br#"{"model": "slow", "prompt": "Once", "max_tokens": 1000, "stream": true}"#;
    let mut stream = std::net::TcpStream::connect(daemon.http_addr()).unwrap();
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nHost: inferd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: {") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(
            n > 0,
            "closed before the first chunk: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));
    drop(stream);
    let started = Instant::now();
    while !daemon.log().contains("client went away; work cancelled") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the generation went on:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_http_readiness_probe_turns_503_during_the_drain() {
    let mut daemon = api_daemon(&[], &["--drain-seconds", "8"]).await;
    assert_eq!(daemon.http_call("GET", "/v2/health/ready", "text/plain", b"").0, 200);
    daemon.signal("TERM");
    let started = Instant::now();
    while daemon.http_call("GET", "/v2/health/ready", "text/plain", b"").0 != 503 {
        assert!(started.elapsed() < Duration::from_secs(5), "still ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(daemon.http_call("GET", "/v2/health/live", "text/plain", b"").0, 200);
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
}
