//! A real load balancer: nginx (`grpc_pass`, round-robin) in front of three
//! inferd replicas on loopback. A replica stopped under load (SIGTERM)
//! drains without failing a client request and exits 0; a replica whose
//! queue is full answers RESOURCE_EXHAUSTED at once, so that a retrying
//! client lands on another replica.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::{ClassifyRequest, TextInput};
use inferd_tests::{fixture_model, metric, panic_request, test_plugin_dir, Daemon, Nginx};
use tonic::Code;

fn classify(text: &str) -> ClassifyRequest {
    ClassifyRequest {
        model: "cls".into(),
        inputs: vec![TextInput {
            text: text.into(),
            text_pair: None,
        }],
        ..Default::default()
    }
}

async fn replica(extra: &[&str]) -> Daemon {
    let model = format!("cls:text-classification={}", fixture_model("bert-cls"));
    let mut args = vec!["--model", &model];
    args.extend_from_slice(extra);
    Daemon::start(&args).await
}

#[tokio::test]
async fn a_replica_stopped_under_load_drains_without_failing_a_request_and_exits_0() {
    let replicas = vec![
        replica(&["--drain-seconds", "1"]).await,
        replica(&["--drain-seconds", "1"]).await,
        replica(&["--drain-seconds", "1"]).await,
    ];
    let upstreams: Vec<&str> = replicas.iter().map(|d| d.addr.as_str()).collect();
    let nginx = Nginx::start(&upstreams).await;
    let channel = nginx.channel().await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..6 {
        let mut client = InferenceClient::new(channel.clone());
        let (stop, answered) = (stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match client.classify(classify(&format!("client {c} request {i}"))).await {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(e),
                }
            }
            failures
        }));
    }
    let wait_for = |n: usize| {
        let answered = answered.clone();
        async move {
            let started = Instant::now();
            while answered.load(Ordering::Relaxed) < n {
                assert!(started.elapsed() < Duration::from_secs(60), "the load stalled at {n}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(60).await;
    let mut replicas = replicas;
    let mut stopped = replicas.remove(1);
    stopped.signal("TERM");
    let status = stopped.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}:\n{}", stopped.log());
    // It had its share of the load, and kept serving through its drain.
    let log = stopped.log();
    let (before, during) = log.split_once("draining").unwrap_or_else(|| panic!("no drain:\n{log}"));
    assert!(before.contains("answered"), "{log}");
    assert!(
        during.contains("answered"),
        "nothing was served during the drain:\n{log}"
    );
    // The others carry on alone.
    let after_exit = answered.load(Ordering::Relaxed);
    wait_for(after_exit + 60).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let failures = client.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed: {failures:?}\nnginx:\n{}\nstopped replica:\n{}",
            nginx.log(),
            stopped.log()
        );
    }
}

#[tokio::test]
async fn a_full_queue_answers_resource_exhausted_and_a_retry_lands_on_another_replica() {
    let plugins = test_plugin_dir();
    let plugins = plugins.to_str().unwrap();
    // The first replica's queue holds one request, and is kept full for the
    // whole test: one long request runs, another waits.
    let full = Daemon::start(&[
        "--plugin-dir",
        plugins,
        "--queue-size",
        "1",
        "--max-batch-size",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
    ])
    .await;
    let others = [
        Daemon::start(&["--plugin-dir", plugins]).await,
        Daemon::start(&["--plugin-dir", plugins]).await,
    ];
    let mut long = Vec::new();
    for (series, value) in [
        ("inferd_in_flight_requests", 1.0),
        ("inferd_queue_depth{model=\"panic\"}", 1.0),
    ] {
        let mut busy = InferenceClient::new(full.channel().await);
        long.push(tokio::spawn(
            async move { busy.run(panic_request("", "sleep-20000")).await },
        ));
        let started = Instant::now();
        while metric(&full.metrics(), series) < value {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{series} never reached {value}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let nginx = Nginx::start(&[&full.addr, &others[0].addr, &others[1].addr]).await;
    let mut client = InferenceClient::new(nginx.channel().await);
    let mut exhausted = 0;
    for i in 0..9 {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match client.run(panic_request("", &format!("request {i}"))).await {
                Ok(_) => break,
                Err(e) if e.code() == Code::ResourceExhausted && attempts < 3 => {
                    assert!(e.message().contains("queue is full"), "{e:?}");
                    exhausted += 1;
                }
                Err(e) => panic!("request {i}, attempt {attempts}: {e:?}\n{}", nginx.log()),
            }
        }
    }
    // Round-robin over three: one request in three reached the full one.
    assert!(exhausted >= 2, "only {exhausted} requests reached the full replica");
    long.iter().for_each(|l| l.abort());
}
