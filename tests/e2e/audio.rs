//! Speech recognition through the daemon against transformers'
//! pipeline("automatic-speech-recognition"), recorded by the fixture script
//! (tests/fixtures/audio_fixtures.py) for two Wav2Vec2ForCTC layouts.

use inferd_proto::v1::{AudioInput, ClassifyRequest, TextInput, TranscribeRequest, Transcription};
use inferd_tests::{fixture_model, fixtures_dir, Daemon};
use tonic::Code;

const MODELS: [&str; 2] = ["w2v2-base", "w2v2-large-lv"];

async fn asr_daemon(env: &[(&str, &str)]) -> Daemon {
    let daemon = Daemon::start_with_env(&[], env).await;
    for model in MODELS {
        daemon
            .load(model, "automatic-speech-recognition", &fixture_model(model))
            .await;
    }
    daemon
}

fn audio(file: &str) -> Vec<u8> {
    let path = fixtures_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn request(model: &str, file: &str, kwargs: &serde_json::Value) -> TranscribeRequest {
    TranscribeRequest {
        model: model.into(),
        inputs: vec![AudioInput { data: audio(file) }],
        return_timestamps: kwargs["return_timestamps"].as_str().unwrap_or_default().into(),
        chunk_length_s: kwargs["chunk_length_s"].as_f64(),
        stride_length_s: match &kwargs["stride_length_s"] {
            serde_json::Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap()).collect(),
            serde_json::Value::Null => vec![],
            v => vec![v.as_f64().unwrap()],
        },
        ..Default::default()
    }
}

fn cases() -> Vec<serde_json::Value> {
    let refs: serde_json::Value = inferd_tests::reference("asr.json");
    refs["cases"].as_array().unwrap().clone()
}

/// Text and chunks exactly as pipeline() gave them.
fn assert_same(got: &Transcription, case: &serde_json::Value) {
    let name = case["case"].as_str().unwrap();
    assert_eq!(got.text, case["text"].as_str().unwrap(), "{name}: text");
    let want = case["chunks"].as_array().cloned().unwrap_or_default();
    assert_eq!(got.chunks.len(), want.len(), "{name}: number of chunks");
    for (i, (g, w)) in got.chunks.iter().zip(&want).enumerate() {
        assert_eq!(g.text, w["text"].as_str().unwrap(), "{name}: chunk {i} text");
        let stamp: Vec<f64> = w["timestamp"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert_eq!(g.timestamp, stamp, "{name}: chunk {i} timestamp");
    }
}

#[tokio::test]
async fn transcriptions_and_timestamps_equal_the_pipeline() {
    let daemon = asr_daemon(&[]).await;
    let mut client = daemon.inference().await;
    let mut compared = 0;
    for case in cases() {
        let name = case["case"].as_str().unwrap();
        let input = case["input"].as_str().unwrap();
        // Lossless inputs, at 16 kHz or resampled from 22.05 kHz (the
        // resampler reproduces scipy's resample_poly, which made the
        // reference); the lossy ones are compared by their logits in
        // plugins/models/tests/audio_decoding.rs.
        let lossless = [".wav", ".flac"].iter().any(|ext| input.ends_with(ext)) && !input.contains("truncated");
        if !lossless || case.get("pipeline_error").is_some() {
            continue;
        }
        let response = client
            .transcribe(request(
                case["model"].as_str().unwrap(),
                input,
                &case["pipeline_kwargs"],
            ))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_inner();
        assert_same(&response.results[0], &case);
        compared += 1;
    }
    eprintln!("{compared} cases equal to pipeline()");
    assert!(compared >= 50, "only {compared} cases");
}

#[tokio::test]
async fn several_files_in_one_request_and_lossy_formats() {
    let daemon = asr_daemon(&[]).await;
    let mut client = daemon.inference().await;
    let files = [
        "audio/speech_16k.wav",
        "audio/speech_16k.mp3",
        "audio/speech_16k.ogg",
        "audio/speech_22k.wav",
    ];
    let response = client
        .transcribe(TranscribeRequest {
            model: "w2v2-base".into(),
            inputs: files.iter().map(|f| AudioInput { data: audio(f) }).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), files.len());
    let cases = cases();
    let text_of = |file: &str| {
        let case = cases
            .iter()
            .find(|c| c["model"] == "w2v2-base" && c["input"] == file && c["pipeline_kwargs"] == serde_json::json!({}))
            .unwrap();
        case["text"].as_str().unwrap().to_string()
    };
    assert_eq!(response.results[0].text, text_of(files[0]));
    assert_eq!(response.results[3].text, text_of(files[3]));
    // MP3 and Vorbis decoders differ from lame's and oggdec's by a few
    // 16-bit steps, enough to move a frame or two of a random model whose
    // top logits are 0.004 apart: the text is close, not equal.
    for (result, file) in response.results[1..3].iter().zip(&files[1..3]) {
        let want = text_of(file);
        let same = result.text.chars().zip(want.chars()).filter(|(a, b)| a == b).count();
        assert!(
            same * 10 >= want.chars().count() * 7,
            "{file}: {:?} vs pipeline() {want:?}",
            result.text
        );
    }
}

#[tokio::test]
async fn bad_audio_gets_clear_errors() {
    let daemon = asr_daemon(&[("INFERD_MAX_AUDIO_SECONDS", "10")]).await;
    let mut client = daemon.inference().await;
    let expect = |data: Vec<u8>, words: &'static str| {
        let mut client = client.clone();
        async move {
            let status = client
                .transcribe(TranscribeRequest {
                    model: "w2v2-base".into(),
                    inputs: vec![AudioInput { data }],
                    ..Default::default()
                })
                .await
                .expect_err(words);
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(
                status.message().to_lowercase().contains(words),
                "expected `{words}` in: {}",
                status.message()
            );
        }
    };
    expect(b"this is plain text, not audio".to_vec(), "not audio").await;
    expect(audio("images/astronaut.png"), "png image").await;
    expect(vec![], "empty").await;
    expect(audio("audio/speech_16k_truncated.wav"), "truncated").await;
    expect(audio("audio/speech_empty.wav"), "no audio samples").await;
    // 60 s against a limit of 10 s.
    expect(audio("audio/speech_long_60s.wav"), "limit").await;

    // Parameters.
    let short = || audio("audio/speech_16k_truncated.wav");
    let bad = [
        TranscribeRequest {
            return_timestamps: "true".into(),
            ..Default::default()
        },
        TranscribeRequest {
            chunk_length_s: Some(1.0),
            stride_length_s: vec![0.5, 0.5],
            ..Default::default()
        },
        TranscribeRequest {
            chunk_length_s: Some(-1.0),
            ..Default::default()
        },
        TranscribeRequest::default(),
    ];
    for (i, mut r) in bad.into_iter().enumerate() {
        r.model = "w2v2-base".into();
        if i < 3 {
            r.inputs = vec![AudioInput { data: short() }];
        }
        let status = client.transcribe(r).await.expect_err("bad parameters");
        assert_eq!(status.code(), Code::InvalidArgument, "case {i}: {status:?}");
    }

    // Audio sent to a text model, text sent to the speech model.
    daemon
        .load("cls", "text-classification", &fixture_model("bert-cls"))
        .await;
    let status = client
        .transcribe(TranscribeRequest {
            model: "cls".into(),
            inputs: vec![AudioInput {
                data: audio("audio/speech_16k.wav"),
            }],
            ..Default::default()
        })
        .await
        .expect_err("a text model");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = client
        .classify(ClassifyRequest {
            model: "w2v2-base".into(),
            inputs: vec![TextInput {
                text: "hello".into(),
                text_pair: None,
            }],
            ..Default::default()
        })
        .await
        .expect_err("a speech model");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
}
