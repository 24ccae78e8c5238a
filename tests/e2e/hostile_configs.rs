//! config.json sizes that no model has: a billion layers, a zero patch or
//! stride, no attention heads, a hidden size the weights do not have. Each
//! is refused at LoadModel with FAILED_PRECONDITION naming the field,
//! quickly (the sizes are checked against the safetensors header before
//! anything is built), without growing the daemon; other models keep
//! answering, and SIGTERM still stops the daemon cleanly.

use std::path::Path;
use std::time::{Duration, Instant};

use inferd_proto::v1::{ClassifyRequest, LoadModelRequest, TextInput};
use inferd_tests::{fixture_model, Daemon};
use serde_json::{json, Value};
use tonic::Code;

/// How long a refusal may take: it needs no model to be built (a config
/// with 10^5 layers used to build for 32 s).
const REFUSED_WITHIN: Duration = Duration::from_secs(5);

/// How much the daemon may grow over all the hostile loads together (10^5
/// layers used to keep 5 GB; 10^9 aborted the process).
const RSS_GROWTH_BOUND: u64 = 256 * 1024 * 1024;

/// A copy of the fixture `name` whose config.json has `field` set to `value`.
fn edited_copy(name: &str, field: &str, value: Value) -> tempfile::TempDir {
    edited_file_copy(name, "config.json", field, value)
}

/// A copy of the fixture `name` whose JSON file `file` has `field` set to
/// `value`.
pub(crate) fn edited_file_copy(name: &str, file: &str, field: &str, value: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_model(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let path = dir.path().join(file);
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[field] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    dir
}

fn classify(model: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: model.into(),
        inputs: vec![TextInput {
            text: "still answering".into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

/// LoadModel of `dir` for `task` is refused with FAILED_PRECONDITION within
/// REFUSED_WITHIN, with a message naming config.json and saying `what`;
/// the other model still answers.
async fn assert_refused(daemon: &Daemon, dir: &Path, task: &str, what: &str) {
    let request = LoadModelRequest {
        name: "hostile".into(),
        task: task.into(),
        source: dir.display().to_string(),
        ..Default::default()
    };
    let started = Instant::now();
    let answer = tokio::time::timeout(REFUSED_WITHIN, async {
        daemon.models().await.load_model(request).await
    })
    .await
    .unwrap_or_else(|_| panic!("LoadModel ({what}) did not answer within {REFUSED_WITHIN:?}"));
    assert!(started.elapsed() < REFUSED_WITHIN);
    let status = answer.expect_err(what);
    assert_eq!(status.code(), Code::FailedPrecondition, "{what}: {status:?}");
    assert!(
        status.message().contains("config.json"),
        "{:?} names config.json",
        status.message()
    );
    assert!(
        status.message().contains(what),
        "{:?} should say {what:?}",
        status.message()
    );
    let other = daemon.inference().await.classify(classify("bert")).await;
    assert!(other.is_ok(), "the other model stopped answering: {other:?}");
}

#[tokio::test]
async fn config_sizes_no_checkpoint_has_are_refused_quickly_naming_the_field_and_the_daemon_carries_on() {
    let daemon = Daemon::start(&[]).await;
    daemon
        .load("bert", "text-classification", &fixture_model("bert-cls"))
        .await;
    let rss_before = daemon.rss_bytes();

    let cases: &[(&str, &str, &str, Value, &str)] = &[
        // A float where a count belongs: serde refuses it, naming the field.
        (
            "distilbert-cls",
            "text-classification",
            "n_layers",
            json!(1e9),
            "n_layers: invalid type",
        ),
        (
            "distilbert-cls",
            "text-classification",
            "n_layers",
            json!(1e5),
            "n_layers: invalid type",
        ),
        (
            "distilbert-cls",
            "text-classification",
            "n_layers",
            json!(1_000_000_000),
            "n_layers = 1000000000, but it must be between 1 and 1024",
        ),
        (
            "distilbert-cls",
            "text-classification",
            "n_layers",
            json!(7),
            "n_layers = 7, but the checkpoint has",
        ),
        (
            "distilbert-cls",
            "text-classification",
            "n_heads",
            json!(0),
            "n_heads = 0",
        ),
        (
            "bart-sum",
            "summarization",
            "decoder_layers",
            json!(1e8),
            "decoder_layers: invalid type",
        ),
        (
            "bart-sum",
            "summarization",
            "decoder_layers",
            json!(100_000_000),
            "decoder_layers = 100000000",
        ),
        (
            "bert-cls",
            "text-classification",
            "hidden_size",
            json!(1_000_000_000),
            "hidden_size = 1000000000",
        ),
        (
            "bert-cls",
            "text-classification",
            "hidden_size",
            json!(1e9),
            "hidden_size: invalid type",
        ),
        (
            "vit-cls",
            "image-classification",
            "patch_size",
            json!(0),
            "patch_size = 0",
        ),
        (
            "w2v2-base",
            "automatic-speech-recognition",
            "conv_stride",
            json!([5, 0, 2, 2, 2, 2, 2]),
            "conv_stride[1] = 0",
        ),
    ];
    for (fixture, task, field, value, what) in cases {
        let dir = edited_copy(fixture, field, value.clone());
        assert_refused(&daemon, dir.path(), task, what).await;
    }
    // DETR: its queries, timm's stages, and a resize no image could take.
    let detection: &[(&str, &str, &str, Value, &str)] = &[
        (
            "detr-random",
            "config.json",
            "num_queries",
            json!(1_000_000_000),
            "num_queries = 1000000000",
        ),
        (
            "detr-random-timm",
            "config.json",
            "backbone_kwargs",
            json!({"layers": [1, 1, 1, 1_000_000_000], "channels": [16, 32, 64, 128]}),
            "backbone_kwargs.layers has 1000000000",
        ),
        (
            "detr-random-timm",
            "config.json",
            "backbone_kwargs",
            json!({"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 1_000_000_000]}),
            "backbone_kwargs.channels has 1000000000",
        ),
        (
            "detr-random",
            "preprocessor_config.json",
            "size",
            json!({"shortest_edge": 1_000_000_000_000u64, "longest_edge": 1_000_000_000_000u64}),
            "size.shortest_edge = 1000000000000",
        ),
        (
            "detr-random",
            "preprocessor_config.json",
            "size",
            json!({"shortest_edge": 800}),
            "needs shortest_edge and longest_edge",
        ),
    ];
    for (fixture, file, field, value, what) in detection {
        let dir = edited_file_copy(fixture, file, field, value.clone());
        assert_refused(&daemon, dir.path(), "object-detection", what).await;
    }
    // GLPN's MiT stages and decoder, DPT's neck, and their processors.
    let depth: &[(&str, &str, &str, Value, &str)] = &[
        (
            "glpn-random",
            "config.json",
            "depths",
            json!([1, 1_000_000_000, 1, 1]),
            "depths[1] = 1000000000",
        ),
        (
            "glpn-random",
            "config.json",
            "depths",
            json!([1, 2, 1]),
            "depths has 3,",
        ),
        (
            "glpn-random",
            "config.json",
            "hidden_sizes",
            json!([8, 16, 24, 1_000_000_000]),
            "hidden_sizes[3] = 1000000000",
        ),
        (
            "glpn-random",
            "config.json",
            "num_attention_heads",
            json!([1, 2, 3, 0]),
            "num_attention_heads[3] = 0",
        ),
        (
            "glpn-random",
            "config.json",
            "sr_ratios",
            json!([0, 4, 2, 1]),
            "sr_ratios[0] = 0",
        ),
        (
            "glpn-random",
            "config.json",
            "strides",
            json!([4, 0, 2, 2]),
            "strides[1] = 0",
        ),
        (
            "glpn-random",
            "config.json",
            "head_in_index",
            json!(7),
            "head_in_index = 7",
        ),
        ("glpn-random", "config.json", "max_depth", json!(-1.0), "max_depth = -1"),
        (
            "glpn-random",
            "preprocessor_config.json",
            "size_divisor",
            json!(0),
            "size_divisor = 0",
        ),
        (
            "dpt-random",
            "config.json",
            "num_hidden_layers",
            json!(1_000_000_000),
            "num_hidden_layers = 1000000000",
        ),
        (
            "dpt-random",
            "config.json",
            "backbone_out_indices",
            json!([0, 1, 2, 1_000_000]),
            "backbone_out_indices[3] = 1000000",
        ),
        (
            "dpt-random",
            "config.json",
            "reassemble_factors",
            json!([4, 2, 1, 0]),
            "reassemble_factors[3] = 0",
        ),
        (
            "dpt-random",
            "config.json",
            "reassemble_factors",
            json!([1_000_000_000, 2, 1, 0.5]),
            "reassemble_factors[0] = 1000000000",
        ),
        (
            "dpt-random",
            "config.json",
            "fusion_hidden_size",
            json!(1_000_000_000),
            "fusion_hidden_size = 1000000000",
        ),
        (
            "dpt-random",
            "config.json",
            "readout_type",
            json!("bogus"),
            "readout_type = \"bogus\"",
        ),
        (
            "dpt-random",
            "preprocessor_config.json",
            "ensure_multiple_of",
            json!(0),
            "ensure_multiple_of = 0",
        ),
        (
            "dpt-random",
            "preprocessor_config.json",
            "size",
            json!({"shortest_edge": 384}),
            "size needs height and width",
        ),
        (
            "dpt-random",
            "config.json",
            "reassemble_factors",
            json!([8, 2, 1, 0.5]),
            "reassemble_factors[0] = 8",
        ),
        (
            "dpt-random",
            "config.json",
            "num_channels",
            json!(4),
            "num_channels = 4",
        ),
        (
            "glpn-random",
            "config.json",
            "num_channels",
            json!(1),
            "num_channels = 1",
        ),
        (
            "dpt-random",
            "preprocessor_config.json",
            "size",
            json!(1_000_000_000_000u64),
            "size.height = 1000000000000",
        ),
    ];
    for (fixture, file, field, value, what) in depth {
        let dir = edited_file_copy(fixture, file, field, value.clone());
        assert_refused(&daemon, dir.path(), "depth-estimation", what).await;
    }

    // SegFormer's decode head, labels and processor.
    let segmentation: &[(&str, &str, &str, Value, &str)] = &[
        (
            "segformer-random",
            "config.json",
            "decoder_hidden_size",
            json!(1_000_000_000),
            "decoder_hidden_size = 1000000000",
        ),
        (
            "segformer-random",
            "config.json",
            "id2label",
            json!({"0": "wall", "1": "floor"}),
            "id2label = 2",
        ),
        (
            "segformer-random",
            "config.json",
            "sr_ratios",
            json!([1_000, 4, 2, 1]),
            "sr_ratios[0] = 1000",
        ),
        (
            "segformer-random",
            "preprocessor_config.json",
            "size",
            json!({"shortest_edge": 512}),
            "size needs height and width",
        ),
    ];
    for (fixture, file, field, value, what) in segmentation {
        let dir = edited_file_copy(fixture, file, field, value.clone());
        assert_refused(&daemon, dir.path(), "image-segmentation", what).await;
    }

    // Mask2Former's decoders, its Swin backbone (a nested config) and
    // processor.
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&fixture_model("mask2former-random")).join("config.json")).unwrap(),
    )
    .unwrap();
    let swin = |field: &str, value: Value| {
        let mut backbone = config["backbone_config"].clone();
        backbone[field] = value;
        backbone
    };
    let universal: &[(&str, &str, Value, &str)] = &[
        (
            "config.json",
            "num_queries",
            json!(1_000_000_000),
            "num_queries = 1000000000",
        ),
        (
            "config.json",
            "feature_size",
            json!(1_000_000_000),
            "feature_size = 1000000000",
        ),
        (
            "config.json",
            "decoder_layers",
            json!(100_000),
            "decoder_layers = 100000",
        ),
        (
            "config.json",
            "encoder_layers",
            json!(500),
            "encoder_layers = 500, but the checkpoint has 2 layers",
        ),
        (
            "config.json",
            "feature_strides",
            json!([4, 8, 16]),
            "feature_strides has 3",
        ),
        (
            "config.json",
            "common_stride",
            json!(1),
            "common_stride = 1 with feature_strides",
        ),
        ("config.json", "hidden_dim", json!(64), "hidden_dim = 64"),
        (
            "config.json",
            "backbone_config",
            swin("window_size", json!(100_000)),
            "window_size = 100000",
        ),
        (
            "config.json",
            "backbone_config",
            swin("mlp_ratio", json!(1e9)),
            "mlp_ratio x the stage's width = 16000000000",
        ),
        (
            "config.json",
            "backbone_config",
            swin("depths", json!([2, 2, 2, 2, 2])),
            "depths has 5",
        ),
        (
            "config.json",
            "backbone_config",
            swin("embed_dim", json!(1u64 << 40)),
            "embed_dim = 1099511627776",
        ),
        (
            "preprocessor_config.json",
            "size",
            json!({"shortest_edge": 800, "longest_edge": 100}),
            "size.longest_edge = 100 must be greater than size.shortest_edge = 800",
        ),
    ];
    for (file, field, value, what) in universal {
        let dir = edited_file_copy("mask2former-random", file, field, value.clone());
        assert_refused(&daemon, dir.path(), "image-segmentation", what).await;
    }
    // Panoptic DETR's mask head groups its channels by 8.
    let dir = edited_copy("detr-panoptic-random", "encoder_attention_heads", json!(4));
    assert_refused(
        &daemon,
        dir.path(),
        "image-segmentation",
        "must divide d_model + encoder_attention_heads = 36",
    )
    .await;

    let grown = daemon.rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < RSS_GROWTH_BOUND,
        "the daemon grew by {} MiB over the hostile loads",
        grown >> 20
    );
    let status = daemon.terminate().await;
    assert!(status.success(), "exit status {status}");
}
