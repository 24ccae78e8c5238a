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
