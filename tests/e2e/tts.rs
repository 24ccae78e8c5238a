//! Text to speech (SpeechT5 with a HiFi-GAN vocoder) against transformers
//! (tests/fixtures/speecht5_fixtures.py): through Synthesize, every
//! recorded case (single texts, batches, early and late stops, speakers
//! by name and as embeddings, seeds, number spelling) gives
//! transformers' waveform and spectrogram within 1e-4, as pipeline() gives
//! them (the fixtures check that pipeline() equals generate()); seeds make
//! calls reproducible and unseeded calls are batched; the WAV files
//! decode; bad requests are refused clearly; `inferctl say`.

use inferd_proto::v1::{LoadModelRequest, ModelOptions, SynthesizeRequest};
use inferd_tests::{fixture_model, fixtures_dir, metric, reference, Daemon};
use serde_json::Value;
use tonic::Code;

fn read_f32(file: &str) -> Vec<f32> {
    std::fs::read(fixtures_dir().join("references").join(file))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Loads the fixture SpeechT5 `model` as `name` with the random vocoder.
pub(crate) async fn load(daemon: &Daemon, name: &str, task: &str, model: &str, max_batch_size: Option<u32>) {
    let request = LoadModelRequest {
        name: name.into(),
        task: task.into(),
        source: fixture_model(model),
        options: Some(ModelOptions {
            vocoder: Some(fixture_model("hifigan-random")),
            max_batch_size,
            max_queue_delay_ms: Some(200),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Err(e) = daemon.models().await.load_model(request).await {
        panic!("LoadModel {name}: {e}\n{}", daemon.log());
    }
}

/// The samples of a mono WAV file (16-bit PCM or 32-bit float).
fn wav_samples(wav: &[u8]) -> (u32, Vec<f32>) {
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let format = u16::from_le_bytes([wav[20], wav[21]]);
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
    let rate = u32::from_le_bytes(wav[24..28].try_into().unwrap());
    assert_eq!(&wav[36..40], b"data");
    let data = &wav[44..];
    let samples = match format {
        1 => data
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32767.0)
            .collect(),
        3 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        other => panic!("WAV format {other}"),
    };
    (rate, samples)
}

fn off(got: &[f32], want: &[f32], what: &str) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max)
}

/// A recorded case as a request: speakers by name where the case names
/// one for all its texts, else their embeddings.
fn request(case: &Value) -> SynthesizeRequest {
    let model = case["model"].as_str().unwrap();
    let (speaker, speaker_embeddings) = match case["speaker"].as_str() {
        Some(file) => (file.split('.').next().unwrap().to_string(), vec![]),
        None => (
            String::new(),
            case["speaker_embeddings"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
                .collect(),
        ),
    };
    SynthesizeRequest {
        model: model.into(),
        inputs: case["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
        speaker,
        speaker_embeddings,
        seed: case["seed"].as_u64(),
        audio_format: "float32".into(),
        return_samples: true,
        normalize: case["normalize"].as_bool(),
        threshold: case["threshold"].as_f64().map(|v| v as f32),
        minlenratio: case["minlenratio"].as_f64().map(|v| v as f32),
        maxlenratio: case["maxlenratio"].as_f64().map(|v| v as f32),
        return_spectrogram: true,
    }
}

#[tokio::test]
async fn synthesized_speech_matches_transformers() {
    let refs: Value = reference("speecht5.json");
    let daemon = Daemon::start(&[]).await;
    load(&daemon, "speecht5-random", "text-to-speech", "speecht5-random", None).await;
    // The task's alias loads the same way.
    load(&daemon, "speecht5-nostop", "text-to-audio", "speecht5-nostop", None).await;
    let info = daemon
        .models()
        .await
        .get_model(inferd_proto::v1::GetModelRequest {
            name: "speecht5-random".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.speakers, ["alice", "bob", "carol"]);
    assert_eq!(info.task, "text-to-speech");
    assert_eq!(
        info.options.unwrap().vocoder.as_deref(),
        Some(fixture_model("hifigan-random").as_str())
    );
    let mut client = daemon.inference().await;
    let mut compared = 0;
    for case in refs["cases"].as_array().unwrap() {
        let what = case["case"].as_str().unwrap();
        let response = client
            .synthesize(request(case))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_inner();
        let waveforms = read_f32(case["waveform"].as_str().unwrap());
        let padded = case["waveform_shape"][1].as_u64().unwrap() as usize;
        let spectrograms = read_f32(case["spectrogram"].as_str().unwrap());
        let frames_padded = case["spectrogram_shape"][1].as_u64().unwrap() as usize;
        assert_eq!(
            response.results.len(),
            case["texts"].as_array().unwrap().len(),
            "{what}"
        );
        for (i, speech) in response.results.iter().enumerate() {
            let what = format!("{what} text {i}");
            assert_eq!(speech.sampling_rate, 16000, "{what}");
            assert_eq!(speech.seed, case["seed"].as_u64().unwrap(), "{what}");
            let samples = case["waveform_lengths"][i].as_u64().unwrap() as usize;
            let want = &waveforms[i * padded..i * padded + samples];
            let d = off(&speech.samples, want, &what);
            assert!(d <= 1e-4, "{what}: samples off by {d}");
            let (rate, in_wav) = wav_samples(&speech.audio);
            assert_eq!(rate, 16000);
            assert_eq!(in_wav, speech.samples, "{what}: the float WAV holds the samples");
            assert!((speech.duration_s - samples as f32 / 16000.0).abs() < 1e-6);
            let frames = case["spectrogram_lengths"][i].as_u64().unwrap() as usize;
            assert_eq!(speech.num_mel_bins, 16);
            let want = &spectrograms[i * frames_padded * 16..(i * frames_padded + frames) * 16];
            let d = off(&speech.spectrogram, want, &what);
            assert!(d <= 1e-4, "{what}: spectrogram off by {d}");
        }
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} cases");

    // 16-bit PCM, the default: the same samples to the nearest level.
    let case = &refs["cases"][0];
    let mut pcm = request(case);
    pcm.audio_format = String::new();
    pcm.return_spectrogram = false;
    let speech = client.synthesize(pcm).await.unwrap().into_inner().results.remove(0);
    assert!(speech.spectrogram.is_empty());
    let (_, samples) = wav_samples(&speech.audio);
    let d = off(&samples, &speech.samples, "pcm16");
    assert!(d <= 1.0 / 32767.0, "16-bit samples off by {d}");
}

/// Without a seed each call draws a fresh one, and sending it back gives
/// the same sound; unseeded requests that arrive together are decoded
/// together, each with its own seed, and each sounds as it does alone.
#[tokio::test]
async fn seeds_reproduce_and_unseeded_requests_decode_together() {
    let daemon = Daemon::start(&[]).await;
    load(&daemon, "tts", "text-to-speech", "speecht5-random", Some(8)).await;
    let mut client = daemon.inference().await;
    let ask = |text: &str, seed: Option<u64>| SynthesizeRequest {
        model: "tts".into(),
        inputs: vec![text.into()],
        speaker: "alice".into(),
        seed,
        return_samples: true,
        ..Default::default()
    };
    let text = "The cat sat on the mat by the door.";
    let first = client
        .synthesize(ask(text, None))
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    let second = client
        .synthesize(ask(text, None))
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    assert_ne!(first.seed, second.seed, "a fresh seed per call");
    let again = client
        .synthesize(ask(text, Some(first.seed)))
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    assert_eq!(again.seed, first.seed);
    let d = off(&again.samples, &first.samples, "replayed seed");
    assert!(d <= 1e-5, "the returned seed replays the sound (off by {d})");

    let texts = ["Hi.", "Good morning.", "Keep calm and carry on.", "Yes"];
    let calls: Vec<_> = texts
        .iter()
        .map(|text| {
            let mut client = client.clone();
            let request = ask(text, None);
            tokio::spawn(async move { client.synthesize(request).await.unwrap().into_inner().results.remove(0) })
        })
        .collect();
    let mut together = Vec::new();
    for call in calls {
        together.push(call.await.unwrap());
    }
    let seeds: std::collections::BTreeSet<u64> = together.iter().map(|s| s.seed).collect();
    assert_eq!(seeds.len(), texts.len(), "a seed per request: {seeds:?}");
    for (text, speech) in texts.iter().zip(&together) {
        // Each text alone with the seed it drew sounds the same (its masks
        // are its own; the others' padding changes only rounding).
        let alone = client
            .synthesize(ask(text, Some(speech.seed)))
            .await
            .unwrap()
            .into_inner()
            .results
            .remove(0);
        let d = off(&alone.samples, &speech.samples, text);
        assert!(d <= 1e-4, "{text}: batched and alone differ by {d}");
    }
}

/// A request sent while another decodes joins it (counted by
/// `inferd_joined_requests_total`) and sounds as it does alone.
#[tokio::test]
async fn a_request_joins_a_running_synthesis() {
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let request = LoadModelRequest {
        name: "tts".into(),
        task: "text-to-speech".into(),
        source: fixture_model("speecht5-nostop"),
        options: Some(ModelOptions {
            vocoder: Some(fixture_model("hifigan-random")),
            ..Default::default()
        }),
        ..Default::default()
    };
    daemon.models().await.load_model(request).await.unwrap();
    let ask = |texts: &[&str], seed: u64| SynthesizeRequest {
        model: "tts".into(),
        inputs: texts.iter().map(|t| t.to_string()).collect(),
        speaker: "alice".into(),
        seed: Some(seed),
        maxlenratio: Some(1000.0),
        return_samples: true,
        ..Default::default()
    };
    let mut client = daemon.inference().await;
    let short = ask(&["Hi."], 9);
    let alone = client.synthesize(short.clone()).await.unwrap().into_inner();
    // 64 texts that never stop, to the model's 300 steps.
    let long = ask(&["The long one goes on until the model's last position."; 64], 1);
    let running = tokio::spawn(async move { client.synthesize(long).await.unwrap().into_inner() });
    // Sent once the long one runs, not after a fixed pause: under load, a
    // short one sent too early would share its batch from the start
    // instead of joining it. The long one runs in the model's second batch,
    // or joins the first one's end: that batch takes in what waits before
    // it returns, and under load the long request can arrive by then (seen
    // on a fresh-clone CI run).
    let joined_requests = |metrics: &str| metric(metrics, "inferd_joined_requests_total{model=\"tts\"}");
    let started = std::time::Instant::now();
    let joined_before = loop {
        let metrics = daemon.metrics();
        if metric(&metrics, "inferd_batch_size_count{model=\"tts\"}") >= 2.0 || joined_requests(&metrics) >= 1.0 {
            break joined_requests(&metrics);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the long request never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let mut other = daemon.inference().await;
    let joined = other.synthesize(short).await.unwrap().into_inner();
    let long = running.await.unwrap();
    assert_eq!(long.results.len(), 64);
    let d = off(&joined.results[0].samples, &alone.results[0].samples, "joined");
    assert!(d <= 1e-4, "joined and alone differ by {d}");
    let metrics = daemon.metrics();
    assert_eq!(
        joined_requests(&metrics),
        joined_before + 1.0,
        "the short request joined the running one:\n{metrics}"
    );
}

#[tokio::test]
async fn bad_synthesize_requests_are_refused() {
    let daemon = Daemon::start(&[]).await;
    load(&daemon, "tts", "text-to-speech", "speecht5-random", None).await;
    daemon
        .load("vit", "image-classification", &fixture_model("vit-cls"))
        .await;
    let mut client = daemon.inference().await;
    let ok = SynthesizeRequest {
        model: "tts".into(),
        inputs: vec!["Hello.".into()],
        speaker: "bob".into(),
        ..Default::default()
    };
    let cases: Vec<(&str, SynthesizeRequest, Code, &str)> = vec![
        (
            "no texts",
            SynthesizeRequest {
                inputs: vec![],
                ..ok.clone()
            },
            Code::InvalidArgument,
            "at least one text",
        ),
        (
            "an empty text",
            SynthesizeRequest {
                inputs: vec!["Hello.".into(), "  ".into()],
                ..ok.clone()
            },
            Code::InvalidArgument,
            "input 1 is empty",
        ),
        (
            "a text over max_text_positions",
            SynthesizeRequest {
                inputs: vec!["a".repeat(79)],
                ..ok.clone()
            },
            Code::InvalidArgument,
            "81 tokens long",
        ),
        (
            "numbers spelt out past max_text_positions",
            SynthesizeRequest {
                inputs: vec!["It is 123456789 and 987654321.".into()],
                normalize: Some(true),
                ..ok.clone()
            },
            Code::InvalidArgument,
            "numbers spelt out",
        ),
        (
            "no speaker",
            SynthesizeRequest {
                speaker: String::new(),
                ..ok.clone()
            },
            Code::InvalidArgument,
            "needs a voice",
        ),
        (
            "an unknown speaker",
            SynthesizeRequest {
                speaker: "dave".into(),
                ..ok.clone()
            },
            Code::InvalidArgument,
            "unknown speaker `dave`: this model has alice, bob, carol",
        ),
        (
            "a speaker and embeddings",
            SynthesizeRequest {
                speaker_embeddings: vec![0.1; 12],
                ..ok.clone()
            },
            Code::InvalidArgument,
            "not both",
        ),
        (
            "embeddings of the wrong length",
            SynthesizeRequest {
                speaker: String::new(),
                speaker_embeddings: vec![0.1; 512],
                ..ok.clone()
            },
            Code::InvalidArgument,
            "speaker_embeddings has 512 values; this model's x-vectors have 12",
        ),
        (
            "embeddings with NaN",
            SynthesizeRequest {
                speaker: String::new(),
                speaker_embeddings: [vec![0.1; 11], vec![f32::NAN]].concat(),
                ..ok.clone()
            },
            Code::InvalidArgument,
            "speaker_embeddings[11] is NaN",
        ),
        (
            "an unknown audio format",
            SynthesizeRequest {
                audio_format: "mp3".into(),
                ..ok.clone()
            },
            Code::InvalidArgument,
            "audio_format `mp3`",
        ),
        (
            "a negative threshold",
            SynthesizeRequest {
                threshold: Some(-1.0),
                ..ok.clone()
            },
            Code::InvalidArgument,
            "threshold must be",
        ),
        (
            "an infinite maxlenratio",
            SynthesizeRequest {
                maxlenratio: Some(f32::INFINITY),
                ..ok.clone()
            },
            Code::InvalidArgument,
            "maxlenratio must be between 0 and 1000",
        ),
        (
            "Synthesize to an image model",
            SynthesizeRequest {
                model: "vit".into(),
                ..ok.clone()
            },
            Code::FailedPrecondition,
            "image-classification",
        ),
    ];
    for (what, request, code, message) in cases {
        let status = client.synthesize(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {}", status.message());
        assert!(status.message().contains(message), "{what}: {}", status.message());
    }
    // The daemon still serves.
    let speech = client.synthesize(ok).await.unwrap().into_inner().results.remove(0);
    assert!(speech.duration_s > 0.0);
}

/// Loading refuses a vocoder that is missing or reads other spectrograms.
#[tokio::test]
async fn text_to_speech_needs_a_matching_vocoder() {
    let daemon = Daemon::start(&[]).await;
    let mut models = daemon.models().await;
    let load = |vocoder: Option<String>| LoadModelRequest {
        name: "tts".into(),
        task: "text-to-speech".into(),
        source: fixture_model("speecht5-random"),
        options: Some(ModelOptions {
            vocoder,
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = models.load_model(load(None)).await.expect_err("no vocoder offline");
    assert!(
        status.message().contains("the vocoder microsoft/speecht5_hifigan")
            && status.message().contains("options.vocoder"),
        "{}",
        status.message()
    );
    let status = models
        .load_model(load(Some(fixture_model("hifigan-universal"))))
        .await
        .expect_err("an 80-bin vocoder");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("the vocoder reads 80 mel bins, the model makes 16"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn inferctl_say_writes_a_wav_file() {
    let daemon = Daemon::start(&[]).await;
    load(&daemon, "tts", "text-to-speech", "speecht5-random", None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hello.wav");
    let printed = daemon.inferctl(&[
        "say",
        "Hello there.",
        "--model",
        "tts",
        "--speaker",
        "carol",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(printed.contains("hello.wav") && printed.contains("seed 5"), "{printed}");
    let (rate, samples) = wav_samples(&std::fs::read(&out).unwrap());
    assert_eq!(rate, 16000);
    let mut client = daemon.inference().await;
    let speech = client
        .synthesize(SynthesizeRequest {
            model: "tts".into(),
            inputs: vec!["Hello there.".into()],
            speaker: "carol".into(),
            seed: Some(5),
            return_samples: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    let d = off(&samples, &speech.samples, "inferctl say");
    assert!(d <= 1.0 / 32767.0, "inferctl's WAV off by {d}");
    let listed = daemon.inferctl(&["models", "get", "tts"]);
    assert!(listed.contains("speakers: alice, bob, carol"), "{listed}");
}

/// A SpeechT5 config.json that does not fit its checkpoint, or a speaker
/// file that is not an x-vector of the model's size, fails LoadModel
/// with FAILED_PRECONDITION naming the field or file, and the daemon
/// still serves.
#[tokio::test]
async fn hostile_speecht5_files_are_refused() {
    use crate::hostile_configs::edited_file_copy;
    use serde_json::json;

    let daemon = Daemon::start(&[]).await;
    load(&daemon, "tts", "text-to-speech", "speecht5-random", None).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "hidden_size",
            json!(1_000_000),
            "hidden_size = 1000000, but it must be between 1 and",
        ),
        ("encoder_layers", json!(1_000_000_000), "encoder_layers = 1000000000"),
        (
            "decoder_layers",
            json!(3),
            "decoder_layers = 3, but the checkpoint has 2 layers",
        ),
        ("encoder_attention_heads", json!(3), "must divide hidden_size = 32"),
        (
            "reduction_factor",
            json!(3),
            "reduction_factor = 3, but the checkpoint's",
        ),
        ("reduction_factor", json!(0), "reduction_factor = 0"),
        (
            "encoder_max_relative_position",
            json!(100),
            "encoder_max_relative_position = 100",
        ),
        ("speaker_embedding_dim", json!(512), "speaker_embedding_dim = 512"),
        (
            "speech_decoder_prenet_dropout",
            json!(1.0),
            "speech_decoder_prenet_dropout = 1",
        ),
        (
            "speech_decoder_postnet_kernel",
            json!(4),
            "speech_decoder_postnet_kernel = 4",
        ),
        ("max_speech_positions", json!(0), "max_speech_positions = 0"),
        ("max_text_positions", json!(-5), "max_text_positions = -5"),
        ("pad_token_id", json!(500), "pad_token_id"),
        ("layer_norm_eps", json!(-1.0), "layer_norm_eps must be"),
        ("num_mel_bins", json!("many"), "num_mel_bins"),
    ];
    let mut models = daemon.models().await;
    let request = |dir: &std::path::Path| LoadModelRequest {
        name: "hostile".into(),
        task: "text-to-speech".into(),
        source: dir.display().to_string(),
        options: Some(ModelOptions {
            vocoder: Some(fixture_model("hifigan-random")),
            ..Default::default()
        }),
        ..Default::default()
    };
    for (field, value, said) in cases {
        let dir = edited_file_copy("speecht5-random", "config.json", field, value);
        let status = models.load_model(request(dir.path())).await.expect_err(field);
        assert_eq!(status.code(), Code::FailedPrecondition, "{field}: {}", status.message());
        assert!(
            status.message().contains(said) && status.message().contains("config.json"),
            "{field}: {}",
            status.message()
        );
    }
    // A speaker file of the wrong size, one of another dtype, and one that
    // is not an array at all.
    for (name, bytes, said) in [
        (
            "short.npy",
            npy_f32(&[0.1; 3]),
            "3 values, but the model's speaker embeddings have 12",
        ),
        (
            "ints.npy",
            npy_header("<i4", 12, 48),
            "not little-endian float32 or float64",
        ),
        (
            "junk.safetensors",
            b"not a safetensors file".to_vec(),
            "junk.safetensors",
        ),
    ] {
        let dir = edited_file_copy("speecht5-random", "config.json", "model_type", json!("speecht5"));
        std::fs::create_dir(dir.path().join("speakers")).unwrap();
        std::fs::write(dir.path().join("speakers").join(name), bytes).unwrap();
        let status = models.load_model(request(dir.path())).await.expect_err(name);
        assert_eq!(status.code(), Code::FailedPrecondition, "{name}: {}", status.message());
        assert!(status.message().contains(said), "{name}: {}", status.message());
    }
    let mut client = daemon.inference().await;
    let speech = client
        .synthesize(SynthesizeRequest {
            model: "tts".into(),
            inputs: vec!["Still here.".into()],
            speaker: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(speech.into_inner().results.len(), 1);
}

/// A version-1 .npy header for `count` values of `descr`, then `data_len`
/// zero bytes.
fn npy_header(descr: &str, count: usize, data_len: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({count},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

fn npy_f32(values: &[f32]) -> Vec<u8> {
    let mut out = npy_header("<f4", values.len(), 0);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
