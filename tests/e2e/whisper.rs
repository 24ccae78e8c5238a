//! Whisper speech recognition through the daemon against transformers'
//! pipeline("automatic-speech-recognition"), recorded by
//! tests/fixtures/whisper_pipeline_fixtures.py: two small random models
//! (multilingual and English-only, with real Whisper tokenizers and
//! generation configs) and the real Whisper tiny.en converted from
//! CTranslate2. Text, segments and languages equal pipeline()'s; requests
//! that cannot be served get a clear error and the daemon goes on. A
//! request sent while a long transcription decodes joins it (continuous
//! batching) and gets what it gets alone.

use inferd_proto::v1::{AudioInput, TranscribeRequest, Transcription};
use inferd_tests::{fixture_model, fixtures_dir, metric, Daemon};
use std::time::Instant;

use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::Code;

const MODELS: [&str; 3] = ["whisper-random-multi", "whisper-random-en", "whisper-tiny.en"];

async fn whisper_daemon(env: &[(&str, &str)]) -> Daemon {
    let daemon = Daemon::start_with_env(&[], env).await;
    for model in MODELS {
        daemon
            .load(model, "automatic-speech-recognition", &fixture_model(model))
            .await;
    }
    daemon
}

fn audio(file: &str) -> Vec<u8> {
    let path = fixtures_dir().join("audio").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The request pipeline(files, **kwargs) corresponds to.
fn request(model: &str, files: &[&str], kwargs: &Value) -> TranscribeRequest {
    let generate = &kwargs["generate_kwargs"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    TranscribeRequest {
        model: model.into(),
        inputs: files.iter().map(|f| AudioInput { data: audio(f) }).collect(),
        return_timestamps: match &kwargs["return_timestamps"] {
            Value::Bool(true) => "true".into(),
            v => text(v),
        },
        language: text(&generate["language"]),
        task: text(&generate["task"]),
        return_language: kwargs["return_language"] == Value::Bool(true),
        chunk_length_s: kwargs["chunk_length_s"].as_f64(),
        num_beams: generate["num_beams"].as_u64().map(|n| n as u32),
        max_new_tokens: generate["max_new_tokens"].as_u64().map(|n| n as u32),
        ..Default::default()
    }
}

/// Text, chunks (text, times, language) exactly as pipeline() gave them;
/// with `loose_times`, the chunks whose times differ are counted instead
/// (how many is returned).
fn assert_same(got: &Transcription, want: &Value, name: &str, loose_times: bool) -> usize {
    let mut differing = 0;
    assert_eq!(got.text, want["text"].as_str().unwrap(), "{name}: text");
    let chunks = want["chunks"].as_array().cloned().unwrap_or_default();
    assert_eq!(got.chunks.len(), chunks.len(), "{name}: number of chunks");
    for (i, (g, w)) in got.chunks.iter().zip(&chunks).enumerate() {
        assert_eq!(g.text, w["text"].as_str().unwrap(), "{name}: chunk {i} text");
        // (start, end), (start, None) or, without timestamps, nothing.
        let times: Vec<f64> = w["timestamp"]
            .as_array()
            .map(|t| t.iter().map_while(Value::as_f64).collect())
            .unwrap_or_default();
        if loose_times && g.timestamp != times {
            differing += 1;
        } else {
            assert_eq!(g.timestamp, times, "{name}: chunk {i} timestamp");
        }
        assert_eq!(
            g.language,
            w["language"].as_str().unwrap_or_default(),
            "{name}: chunk {i} language"
        );
    }
    differing
}

/// The recorded cases of a reference file the daemon is compared on: all
/// but those with the truncated WAV file, which the daemon refuses.
fn cases(file: &str) -> Vec<Value> {
    let refs: Value = inferd_tests::reference(file);
    refs["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c.get("error").is_none()
                && !c["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "speech_16k_truncated.wav")
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn transcriptions_segments_and_languages_equal_the_pipeline() {
    let daemon = whisper_daemon(&[]).await;
    let mut client = daemon.inference().await;
    let mut compared = 0;
    for file in ["whisper_pipeline.json", "whisper_real.json"] {
        for case in cases(file) {
            let name = case["id"].as_str().unwrap();
            let model = case.get("model").and_then(Value::as_str).unwrap_or("whisper-tiny.en");
            let files: Vec<&str> = case["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            let response = client
                .transcribe(request(model, &files, &case["kwargs"]))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .into_inner();
            let outputs = case["output"].as_array().unwrap();
            assert_eq!(response.results.len(), outputs.len(), "{name}");
            // Word timestamps come from dynamic time warping over the
            // alignment heads' attention. Past the audio, where these
            // random models' later windows look, that attention is flat
            // and the warping path follows float noise: their words must
            // be the same, their times are counted (the first window's are
            // compared token by token in plugins/models/tests/
            // whisper_generate.rs); the real model's words and times must
            // all be equal.
            let random_words = case["kwargs"]["return_timestamps"] == "word" && model != "whisper-tiny.en";
            for (got, want) in response.results.iter().zip(outputs) {
                let differing = assert_same(got, want, name, random_words);
                if random_words {
                    let chunks = got.chunks.len();
                    eprintln!("{name}: {differing} of {chunks} words timed differently (random model)");
                }
                if let Some(spoken) = want["spoken"].as_str() {
                    eprintln!(
                        "{name}: {:?} for {spoken:?} (word error rate {:.3})",
                        got.text,
                        want["wer"].as_f64().unwrap()
                    );
                }
                compared += 1;
            }
        }
    }
    eprintln!("{compared} Whisper transcriptions equal to pipeline()");
    assert!(compared >= 35, "only {compared} compared");
}

#[tokio::test]
async fn requests_whisper_cannot_serve_get_clear_errors() {
    let daemon = whisper_daemon(&[
        ("INFERD_MAX_AUDIO_SECONDS", "60"),
        ("INFERD_MAX_REQUEST_AUDIO_SECONDS", "100"),
    ])
    .await;
    daemon
        .load("w2v2", "automatic-speech-recognition", &fixture_model("w2v2-base"))
        .await;
    let mut client = daemon.inference().await;
    let speech = || {
        vec![AudioInput {
            data: audio("speech_16k.wav"),
        }]
    };
    let long_60s = || AudioInput {
        data: audio("speech_long_60s.wav"),
    };
    let cases: Vec<(&str, TranscribeRequest, Code, &str)> = vec![
        (
            "an unknown language",
            TranscribeRequest {
                model: "whisper-random-multi".into(),
                inputs: speech(),
                language: "klingon".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "unsupported language `klingon`",
        ),
        (
            "a language code the model lacks",
            TranscribeRequest {
                model: "whisper-random-multi".into(),
                inputs: speech(),
                language: "xx".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "unsupported language `xx`",
        ),
        (
            "an unknown task",
            TranscribeRequest {
                model: "whisper-random-multi".into(),
                inputs: speech(),
                task: "summarize".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "expected \"transcribe\" or \"translate\"",
        ),
        (
            "translate on an English-only model",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: speech(),
                task: "translate".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "english-only model",
        ),
        (
            "a language on an English-only model",
            TranscribeRequest {
                model: "whisper-tiny.en".into(),
                inputs: speech(),
                language: "fr".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "english-only model",
        ),
        (
            "char timestamps",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: speech(),
                return_timestamps: "char".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "cannot return \"char\" timestamps",
        ),
        (
            "strides as long as the chunks",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: speech(),
                chunk_length_s: Some(10.0),
                stride_length_s: vec![5.0, 5.0],
                ..Default::default()
            },
            Code::InvalidArgument,
            "must be longer than the two strides",
        ),
        (
            "more new tokens than the decoder has positions",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: speech(),
                max_new_tokens: Some(1000),
                ..Default::default()
            },
            Code::InvalidArgument,
            "ask for at most",
        ),
        (
            "no beams",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: speech(),
                num_beams: Some(0),
                ..Default::default()
            },
            Code::InvalidArgument,
            "num_beams",
        ),
        (
            "a negative temperature",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: speech(),
                temperature: Some(-1.0),
                ..Default::default()
            },
            Code::InvalidArgument,
            "temperature",
        ),
        (
            "not audio",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: vec![AudioInput {
                    data: b"plain text, not audio".to_vec(),
                }],
                ..Default::default()
            },
            Code::InvalidArgument,
            "not audio",
        ),
        (
            "empty audio",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: vec![AudioInput { data: vec![] }],
                ..Default::default()
            },
            Code::InvalidArgument,
            "empty",
        ),
        (
            "no inputs",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "`inputs` is empty",
        ),
        (
            "audio over the duration limit",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: vec![AudioInput {
                    data: audio("speech_long_90s.wav"),
                }],
                ..Default::default()
            },
            Code::InvalidArgument,
            "limit",
        ),
        (
            "files over the request's seconds together",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: vec![long_60s(), long_60s()],
                chunk_length_s: Some(30.0),
                ..Default::default()
            },
            Code::ResourceExhausted,
            "the audio of this request (seconds, summed over its files) is 120, over this model's limit of 100 \
             (max_request_audio_seconds)",
        ),
        (
            "chunks so short that their windows are over the request's seconds",
            TranscribeRequest {
                model: "whisper-random-en".into(),
                inputs: speech(),
                chunk_length_s: Some(0.05),
                ..Default::default()
            },
            Code::ResourceExhausted,
            "chunks of chunk_length_s 0.05 s, each decoded as a 30 s window",
        ),
        (
            "files over the request's seconds together, on a CTC model",
            TranscribeRequest {
                model: "w2v2".into(),
                inputs: vec![long_60s(), long_60s()],
                chunk_length_s: Some(10.0),
                ..Default::default()
            },
            Code::ResourceExhausted,
            "max_request_audio_seconds",
        ),
        (
            "Whisper's options sent to a CTC model",
            TranscribeRequest {
                model: "w2v2".into(),
                inputs: speech(),
                language: "french".into(),
                num_beams: Some(2),
                ..Default::default()
            },
            Code::InvalidArgument,
            "language, num_beams are whisper's",
        ),
    ];
    for (what, request, code, says) in cases {
        let status = client.transcribe(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().to_lowercase().contains(&says.to_lowercase()),
            "{what}: expected `{says}` in {:?}",
            status.message()
        );
    }
    // Still serving.
    let response = client
        .transcribe(TranscribeRequest {
            model: "whisper-tiny.en".into(),
            inputs: speech(),
            num_beams: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.results[0].text.contains("quick brown fox"),
        "{:?}",
        response.results[0].text
    );
}

/// A WAV file holding `file`'s data `times` over (same format).
fn repeated(file: &str, times: usize) -> Vec<u8> {
    let bytes = audio(file);
    let (mut fmt, mut data) = (None, None);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + size).min(bytes.len())];
        match &bytes[at..at + 4] {
            b"fmt " => fmt = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        at += 8 + size + size % 2;
    }
    let (fmt, data) = (fmt.expect("a fmt chunk"), data.expect("a data chunk").repeat(times));
    let mut wav = b"RIFF".to_vec();
    wav.extend(((4 + 8 + fmt.len() + 8 + data.len()) as u32).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend((fmt.len() as u32).to_le_bytes());
    wav.extend(fmt);
    wav.extend(b"data");
    wav.extend((data.len() as u32).to_le_bytes());
    wav.extend(data);
    wav
}

/// TranscribeStream sends each window's segments as it is decoded, then
/// the whole transcription, the one Transcribe gives; the segments' times
/// move on through the audio and their text is the transcription's.
#[tokio::test]
async fn streaming_sends_segments_as_windows_are_decoded() {
    let daemon = whisper_daemon(&[]).await;
    let mut client = daemon.inference().await;
    for (model, file, language) in [
        ("whisper-tiny.en", "speech_long_60s.wav", false),
        ("whisper-random-multi", "speech_long_90s.wav", true),
    ] {
        let request = TranscribeRequest {
            model: model.into(),
            inputs: vec![AudioInput { data: audio(file) }],
            return_timestamps: "true".into(),
            return_language: language,
            num_beams: Some(1),
            ..Default::default()
        };
        let whole = client.transcribe(request.clone()).await.unwrap().into_inner();
        let mut stream = client.transcribe_stream(request).await.unwrap().into_inner();
        let mut messages = vec![];
        while let Some(message) = stream.next().await {
            messages.push(message.unwrap());
        }
        let (last, partial) = messages.split_last().expect("messages");
        assert!(last.done && last.segments.is_empty(), "{model}: the last message");
        assert_eq!(
            last.result.as_ref(),
            whole.results.first(),
            "{model}: the whole transcription"
        );
        assert!(partial.len() >= 2, "{model}: {} windows streamed", partial.len());
        let segments: Vec<_> = partial
            .iter()
            .inspect(|m| assert!(!m.done && m.result.is_none(), "{model}: a partial message"))
            .flat_map(|m| m.segments.iter())
            .collect();
        let mut end = 0.0;
        for segment in &segments {
            let [start, stop] = segment.timestamp[..] else {
                panic!("{model}: {segment:?}");
            };
            assert!(
                end <= start + 1e-9 && start <= stop && stop <= 90.0,
                "{model}: {segment:?} after {end}"
            );
            end = stop;
            if language {
                assert!(!segment.language.is_empty(), "{model}: {segment:?}");
            }
        }
        let text: String = partial.iter().map(|m| m.text.as_str()).collect();
        let segment_text: String = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(text, segment_text, "{model}");
        let words = |t: &str| t.split_whitespace().map(String::from).collect::<Vec<_>>();
        let result = last.result.as_ref().unwrap();
        assert_eq!(words(&text), words(&result.text), "{model}: the streamed text");
        eprintln!(
            "{model}: {} windows, {} segments streamed",
            partial.len(),
            segments.len()
        );
    }
    // `inferctl transcribe --stream`: a line per segment as it comes, or
    // with --json an object per message, the last the whole result.
    let file = fixtures_dir().join("audio").join("speech_long_60s.wav");
    let inferctl = |args: &[&str]| {
        let file = file.to_str().unwrap();
        let stream = [file, "--model", "whisper-tiny.en", "--num-beams", "1", "--stream"];
        daemon.inferctl(&[args, &stream[..]].concat())
    };
    let lines: Vec<Value> = inferctl(&["--json", "transcribe"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, partial) = lines.split_last().unwrap();
    assert_eq!(last["done"], true, "{last}");
    assert!(
        partial.len() >= 2 && partial.iter().all(|m| m["segments"].is_array()),
        "{lines:?}"
    );
    let printed = inferctl(&["transcribe"]);
    let segments: usize = partial.iter().map(|m| m["segments"].as_array().unwrap().len()).sum();
    assert_eq!(printed.lines().count(), segments, "{printed}");
    assert!(printed.starts_with("[    0.00 -> "), "{printed}");

    // One file at a time.
    let two = TranscribeRequest {
        model: "whisper-tiny.en".into(),
        inputs: vec![
            AudioInput {
                data: audio("speech_16k.wav"),
            };
            2
        ],
        ..Default::default()
    };
    let status = client.transcribe_stream(two).await.expect_err("two files");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("exactly one audio file"), "{status:?}");
}

/// A client that cancels its stream frees the model within a window: the
/// next request does not wait for the rest of the audio.
#[tokio::test]
async fn cancelling_a_stream_stops_its_transcription() {
    let daemon = whisper_daemon(&[]).await;
    let mut client = daemon.inference().await;
    let windows = 16;
    let long = TranscribeRequest {
        model: "whisper-tiny.en".into(),
        // 8 minutes: 16 windows or more.
        inputs: vec![AudioInput {
            data: repeated("speech_long_60s.wav", windows / 2),
        }],
        num_beams: Some(1),
        ..Default::default()
    };
    let mut stream = client.transcribe_stream(long).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    let started = Instant::now();
    let second = stream.next().await.unwrap().unwrap();
    assert!(!second.done, "more windows to come");
    let per_window = started.elapsed();
    drop(stream);
    let asked = Instant::now();
    let short = TranscribeRequest {
        model: "whisper-tiny.en".into(),
        inputs: vec![AudioInput {
            data: audio("speech_16k.wav"),
        }],
        num_beams: Some(1),
        ..Default::default()
    };
    daemon
        .inference()
        .await
        .transcribe(short)
        .await
        .expect("the model is free again");
    let waited = asked.elapsed();
    let remaining = per_window * (windows as u32 - 2);
    eprintln!("per window {per_window:?}; the next request waited {waited:?}");
    assert!(
        waited < remaining / 3,
        "waited {waited:?} after cancelling; the abandoned transcription needed about {remaining:?} more"
    );
}

#[tokio::test]
async fn a_request_joins_a_running_transcription() {
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let model = "whisper-random-multi";
    daemon
        .load(model, "automatic-speech-recognition", &fixture_model(model))
        .await;
    let mut client = daemon.inference().await;
    let short = TranscribeRequest {
        model: model.into(),
        inputs: vec![AudioInput {
            data: audio("speech_16k.wav"),
        }],
        language: "french".into(),
        return_timestamps: "word".into(),
        ..Default::default()
    };
    let alone = client.transcribe(short.clone()).await.unwrap().into_inner();
    // 90 s, window after window, streamed: once its first window is
    // decoded, the short request is sent while the next ones decode.
    let long = TranscribeRequest {
        model: model.into(),
        inputs: vec![AudioInput {
            data: audio("speech_long_90s.wav"),
        }],
        return_timestamps: "true".into(),
        num_beams: Some(1),
        ..Default::default()
    };
    let mut stream = client.transcribe_stream(long).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.done, "a first window");
    // The long one may itself have joined the end of the first request's
    // batch (which takes in what waits before it returns): count from here.
    let joined_requests =
        |metrics: &str| metric(metrics, &format!("inferd_joined_requests_total{{model=\"{model}\"}}"));
    let joined_before = joined_requests(&daemon.metrics());
    let joined = client.transcribe(short).await.unwrap().into_inner();
    let mut rest = 0;
    while let Some(message) = stream.next().await {
        message.unwrap();
        rest += 1;
    }
    assert!(rest >= 1, "the long transcription went on");
    assert_eq!(joined, alone, "joined and alone");
    let metrics = daemon.metrics();
    assert_eq!(
        joined_requests(&metrics),
        joined_before + 1.0,
        "the short request joined:\n{metrics}"
    );
}

/// pipeline() given a list transcribes each file alone: audio over 30 s is
/// decoded window after window with timestamp tokens (generate turns them
/// on), a short file beside it without them, as when it is sent alone.
#[tokio::test]
async fn a_short_input_beside_a_long_one_is_transcribed_as_alone() {
    let daemon = Daemon::start(&[]).await;
    let model = "whisper-random-multi";
    daemon
        .load(model, "automatic-speech-recognition", &fixture_model(model))
        .await;
    let mut client = daemon.inference().await;
    let case = cases("whisper_pipeline.json")
        .into_iter()
        .find(|c| c["id"] == "multi_default")
        .expect("the multi_default case");
    let both = request(model, &["speech_16k.wav", "speech_long_90s.wav"], &case["kwargs"]);
    let long_alone = request(model, &["speech_long_90s.wav"], &case["kwargs"]);
    let both = client.transcribe(both).await.unwrap().into_inner();
    let long_alone = client.transcribe(long_alone).await.unwrap().into_inner();
    assert_eq!(both.results.len(), 2);
    assert_same(&both.results[0], &case["output"][0], "short beside long", false);
    assert_eq!(both.results[1], long_alone.results[0], "long beside short and alone");
}
