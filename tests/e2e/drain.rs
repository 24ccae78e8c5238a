//! Readiness and shutdown, as a load balancer and Kubernetes see them:
//! grpc.health.v1 says SERVING for the daemon only once its start-up models
//! are loaded and warmed up, and for each model (its name as the service)
//! while that model is served; SIGTERM turns readiness off first, keeps
//! serving for --drain-seconds, then closes the listener and gives the
//! requests in flight --exit-timeout-seconds to finish.

use std::time::{Duration, Instant};

use inferd_proto::v1::{ClassifyRequest, GetModelRequest, LoadModelRequest, ModelState, TextInput, UnloadModelRequest};
use inferd_tests::{fixture_model, metric, panic_request, test_plugin_dir, Daemon, ServingStatus};
use tonic::Code;

/// Waits until `service`'s health is `want` (Err: that call status code).
async fn wait_health(daemon: &Daemon, service: &str, want: Result<ServingStatus, Code>) {
    let started = Instant::now();
    loop {
        let now = daemon.health(service).await.map_err(|s| s.code());
        if now == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health of {service:?} is {now:?}, not {want:?}:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn classify(model: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: model.into(),
        inputs: vec![TextInput {
            text: "a fine day".into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn readiness_waits_for_the_start_up_models_to_be_loaded_and_warmed_up() {
    let plugins = test_plugin_dir();
    // A start-up model whose warm-up request takes 1.5 s.
    let daemon = Daemon::start_listening(&[
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--model",
        "warm-up-sleep-1500:panic=",
    ])
    .await;
    let started = Instant::now();
    let mut saw_not_serving = false;
    loop {
        match daemon.health("").await {
            Ok(ServingStatus::Serving) => break,
            Ok(ServingStatus::NotServing) => {
                saw_not_serving = true;
                // Alive while it starts: a liveness probe must not restart it.
                assert_eq!(daemon.health("liveness").await.ok(), Some(ServingStatus::Serving));
            }
            other => panic!("health while starting: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never ready:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_not_serving, "ready before the warm-up ran");
    let info = daemon
        .models()
        .await
        .get_model(GetModelRequest {
            name: "warm-up-sleep-1500".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, ModelState::Ready as i32);
    assert!(info.warm_up_seconds >= 1.4, "{info:?}");
    wait_health(&daemon, "warm-up-sleep-1500", Ok(ServingStatus::Serving)).await;
    wait_health(&daemon, "inferd.v1.Inference", Ok(ServingStatus::Serving)).await;
}

#[tokio::test]
async fn each_model_has_a_health_service_of_its_name_that_follows_its_loads_and_unloads() {
    let daemon = Daemon::start(&[
        "--model",
        &format!("cls:text-classification={}", fixture_model("bert-cls")),
    ])
    .await;
    wait_health(&daemon, "cls", Ok(ServingStatus::Serving)).await;
    wait_health(&daemon, "nothing-of-that-name", Err(Code::NotFound)).await;

    daemon
        .load("other", "text-classification", &fixture_model("bert-cls"))
        .await;
    wait_health(&daemon, "other", Ok(ServingStatus::Serving)).await;
    let mut models = daemon.models().await;
    models
        .unload_model(UnloadModelRequest { name: "other".into() })
        .await
        .unwrap();
    wait_health(&daemon, "other", Err(Code::NotFound)).await;

    // A load that fails leaves no service behind.
    let failed = models
        .load_model(LoadModelRequest {
            name: "broken".into(),
            task: "text-classification".into(),
            source: "/nonexistent/model".into(),
            ..Default::default()
        })
        .await;
    assert!(failed.is_err());
    wait_health(&daemon, "broken", Err(Code::NotFound)).await;
    wait_health(&daemon, "cls", Ok(ServingStatus::Serving)).await;
    wait_health(&daemon, "", Ok(ServingStatus::Serving)).await;
}

#[tokio::test]
async fn sigterm_turns_readiness_off_first_and_serves_through_the_drain_then_exits_cleanly() {
    let mut daemon = Daemon::start(&[
        "--drain-seconds",
        "8",
        "--model",
        &format!("cls:text-classification={}", fixture_model("bert-cls")),
    ])
    .await;
    wait_health(&daemon, "cls", Ok(ServingStatus::Serving)).await;
    daemon.signal("TERM");
    let signalled = Instant::now();
    wait_health(&daemon, "", Ok(ServingStatus::NotServing)).await;
    wait_health(&daemon, "cls", Ok(ServingStatus::NotServing)).await;
    wait_health(&daemon, "inferd.v1.Inference", Ok(ServingStatus::NotServing)).await;
    // Alive all the same: a liveness probe must not restart it now.
    wait_health(&daemon, "liveness", Ok(ServingStatus::Serving)).await;
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "readiness took {:?} to turn off",
        signalled.elapsed()
    );
    // Still served, on a new connection too, while the balancer catches up.
    let answer = daemon.inference().await.classify(classify("cls")).await;
    assert!(answer.is_ok(), "refused during the drain: {answer:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "the test was too slow to see the drain"
    );
    let log_during_drain = daemon.log();
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(8),
        "exited {:?} after SIGTERM, before the drain ended",
        signalled.elapsed()
    );
    assert!(
        log_during_drain.contains("draining: readiness is NOT_SERVING"),
        "{log_during_drain}"
    );
}

#[tokio::test]
async fn a_second_signal_cuts_the_drain_short() {
    let mut daemon = Daemon::start(&["--drain-seconds", "120"]).await;
    daemon.signal("TERM");
    let signalled = Instant::now();
    wait_health(&daemon, "", Ok(ServingStatus::NotServing)).await;
    daemon.signal("INT");
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn requests_still_running_at_the_exit_timeout_are_abandoned_with_status_1() {
    let plugins = test_plugin_dir();
    let mut daemon = Daemon::start(&[
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--exit-timeout-seconds",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .await;
    let mut client = daemon.inference().await;
    let long = tokio::spawn(async move { client.run(panic_request("", "sleep-60000")).await });
    let started = Instant::now();
    while metric(&daemon.metrics(), "inferd_in_flight_requests") < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.signal("TERM");
    let signalled = Instant::now();
    let status = daemon.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1), "exit status {status}:\n{}", daemon.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "took {:?} to give up on the long request",
        signalled.elapsed()
    );
    assert!(long.await.unwrap().is_err(), "the abandoned request was answered");
    assert!(
        daemon.log().contains("exiting without them"),
        "the log does not say why:\n{}",
        daemon.log()
    );
}

#[tokio::test]
async fn a_client_watching_health_does_not_hold_the_shutdown_up() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let mut daemon = Daemon::start(&["--exit-timeout-seconds", "20"]).await;
    // Client-side health checking (grpc-go's healthCheckConfig) keeps a
    // Watch stream open; a graceful shutdown waits for open streams.
    let mut watch = HealthClient::new(daemon.channel().await)
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}:\n{}", daemon.log());
    // The watcher saw the daemon stop being ready.
    let next = watch.message().await;
    assert!(
        !matches!(&next, Ok(Some(m)) if m.status == ServingStatus::Serving as i32),
        "{next:?}"
    );
}
