//! `--memory-budget`: a load that would not fit is refused with
//! RESOURCE_EXHAUSTED saying how much is free and who holds the rest; an
//! unload frees its share; the metrics show the budget and what is held;
//! a budget that is not a size stops the daemon at start-up.

use inferd_proto::v1::{LoadModelRequest, UnloadModelRequest};
use inferd_tests::{fixture_model, metric, release_dir, Daemon};
use tonic::Code;

fn load(name: &str) -> LoadModelRequest {
    LoadModelRequest {
        name: name.into(),
        task: "text-classification".into(),
        source: fixture_model("bert-cls"),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_load_past_the_memory_budget_is_refused_until_another_model_is_unloaded() {
    // bert-cls's weights are 184 KiB: one fits in 300 KiB, two do not.
    let daemon = Daemon::start(&["--memory-budget", "300KiB", "--metrics-listen", "127.0.0.1:0"]).await;
    let mut models = daemon.models().await;
    let first = models.load_model(load("first")).await.expect("fits").into_inner();
    let refused = models.load_model(load("second")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    for part in [
        "model `second` needs about",
        "of the 300 KiB memory budget is free",
        "held by first",
        "--memory-budget",
    ] {
        assert!(refused.message().contains(part), "{part:?} in {}", refused.message());
    }
    // Nothing left behind: the name is free, and the budget holds only the first.
    let (_, page) = daemon.http_get("/metrics");
    assert_eq!(metric(&page, "inferd_memory_budget_bytes"), 300.0 * 1024.0);
    assert_eq!(metric(&page, "inferd_memory_reserved_bytes"), first.memory_bytes as f64);

    models
        .unload_model(UnloadModelRequest { name: "first".into() })
        .await
        .unwrap();
    models
        .load_model(load("second"))
        .await
        .expect("fits once the first is gone");
}

#[tokio::test]
async fn a_memory_budget_that_is_not_a_size_stops_the_daemon_at_start_up() {
    let out = std::process::Command::new(release_dir().join("inferd"))
        .args(["--memory-budget", "lots", "--listen", "127.0.0.1:0", "--offline"])
        .output()
        .expect("run inferd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("memory_budget") && stderr.contains("8GiB"), "{stderr}");
}

/// Start-up models load several at once (`--parallel-loads`), and the first
/// configured model of a task is its default whichever finishes first.
#[tokio::test]
async fn start_up_models_load_in_parallel_and_the_first_configured_is_the_default() {
    let a = format!("a:text-classification={}", fixture_model("bert-cls-large"));
    let b = format!("b:text-classification={}", fixture_model("bert-cls"));
    let c = format!("c:fill-mask={}", fixture_model("bert-mlm"));
    let daemon = Daemon::start(&["--parallel-loads", "3", "--model", &a, "--model", &b, "--model", &c]).await;
    let log = daemon.log();
    let names = ["model=a ", "model=b ", "model=c "];
    let line_of = |what: &str, name: &str| {
        log.lines()
            .position(|l| l.contains(what) && l.contains(name))
            .unwrap_or_else(|| panic!("{what} {name} in\n{log}"))
    };
    // Each started loading before any of them was ready.
    let first_ready = names.iter().map(|n| line_of("model ready", n)).min().unwrap();
    for name in names {
        assert!(
            line_of("loading model", name) < first_ready,
            "{name}started after a model was ready:\n{log}"
        );
    }
    let listed = daemon
        .models()
        .await
        .list_models(inferd_proto::v1::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    let default_of = |task: &str| {
        listed
            .models
            .iter()
            .filter(|m| m.task == task && m.is_default)
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(default_of("text-classification"), ["a"]);
    assert_eq!(default_of("fill-mask"), ["c"]);
}

/// Per-device accounting: a model whose weights (plus the activations of
/// its largest batch) are more than its device has free is refused before
/// any of it loads, saying how much is free there. The weights here are
/// one sparse file of 1 TiB, more than any test machine's memory.
#[tokio::test]
async fn a_model_larger_than_its_device_has_free_is_refused_before_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_model("bert-cls")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::File::create(dir.path().join("model.safetensors"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let daemon = Daemon::start(&[]).await;
    let mut models = daemon.models().await;
    let mut huge = load("huge");
    huge.source = dir.path().display().to_string();
    let refused = models.load_model(huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let device = inferd_tests::test_device().unwrap_or_else(|| "cpu".into());
    for part in [
        "model `huge` needs about".to_string(),
        format!("on {device} (weights 1024.0 GiB in float32 + activations of a batch of 16"),
        format!("but {device} has"),
        "free".to_string(),
    ] {
        assert!(refused.message().contains(&part), "{part:?} in {}", refused.message());
    }
    // Nothing was held back: the next load fits.
    models.load_model(load("small")).await.expect("fits");
}
