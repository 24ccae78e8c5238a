//! What deploy/ ships: the installed tree (scripts/install.sh) moved to
//! another directory runs without LD_LIBRARY_PATH, through the container's
//! entrypoint; and the Kubernetes and KServe manifests and the Dockerfile
//! hold the fields their probes, ports, runtime and autoscaler depend on.
//! (`kubectl --dry-run=client` needs an API server to discover the kinds,
//! so the manifests are checked here instead.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use inferd_proto::v1::{ClassifyRequest, TextInput};
use inferd_tests::{fixture_model, repo_root, Daemon};
use serde_yaml::Value;

#[tokio::test]
async fn the_installed_tree_moved_elsewhere_runs_without_ld_library_path() {
    let root = repo_root();
    // Under target/, on the virtualenv's filesystem, so that --hardlink works.
    let dir = tempfile::Builder::new()
        .prefix("install-test-")
        .tempdir_in(root.join("target"))
        .unwrap();
    let first = dir.path().join("first");
    let out = Command::new(root.join("scripts/install.sh"))
        .arg(&first)
        .arg("--hardlink")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let moved = dir.path().join("moved");
    std::fs::rename(&first, &moved).unwrap();

    // Every library of LibTorch's resolves inside the moved tree.
    let ldd = Command::new("ldd")
        .arg(moved.join("bin/inferd"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let ldd = String::from_utf8_lossy(&ldd.stdout).to_string();
    assert!(!ldd.contains("not found"), "{ldd}");
    let torch_libs: Vec<&str> = ldd
        .lines()
        .filter(|l| l.contains("libtorch") || l.contains("libc10"))
        .collect();
    assert!(torch_libs.len() >= 3, "{ldd}");
    for line in &torch_libs {
        assert!(
            line.contains(moved.to_str().unwrap()),
            "not from the moved tree: {line}"
        );
    }

    // Started through the container's entrypoint, with the model from the
    // environment (a mounted directory).
    let entrypoint = moved.join("bin/inferd-entrypoint");
    let wrapper = dir.path().join("inferd-from-env");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nINFERD_MODEL_TASK=text-classification INFERD_MODEL_NAME=sst2 INFERD_MODEL_DIR={} exec {} \"$@\"\n",
            fixture_model("bert-cls"),
            entrypoint.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let daemon = Daemon::start_binary(&wrapper, &[]).await;
    let answer = daemon
        .inference()
        .await
        .classify(ClassifyRequest {
            model: "sst2".into(),
            inputs: vec![TextInput {
                text: "installed and moved".into(),
                text_pair: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.log()))
        .into_inner();
    assert_eq!(answer.results[0].labels.len(), 1);
    // The running process mapped LibTorch from the moved tree, and loaded
    // the plugins beside its binary there.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", daemon.pid())).unwrap();
    let mapped: Vec<&str> = maps.lines().filter(|l| l.contains("libtorch_cpu.so")).collect();
    assert!(!mapped.is_empty(), "libtorch_cpu.so is not mapped");
    assert!(mapped.iter().all(|l| l.contains(moved.to_str().unwrap())), "{mapped:?}");
    assert!(
        daemon
            .log()
            .contains(&moved.join("bin/libinferd_plugin_text.so").display().to_string()),
        "{}",
        daemon.log()
    );
}

/// Every YAML document of a file under deploy/.
fn documents(file: &str) -> Vec<Value> {
    let path = repo_root().join("deploy").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// A container's environment as a map.
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                str_of(&e["name"], "env name").to_string(),
                str_of(&e["value"], "env value").to_string(),
            )
        })
        .collect()
}

/// The port of an ADDR:PORT setting.
fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The container port named `name`.
fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn the_kubernetes_manifests_hold_what_probes_ports_and_the_autoscaler_need() {
    let docs = documents("kubernetes/inferd.yaml");
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let container = &pod["spec"]["containers"][0];
    let env = env_of(container);
    let grpc = container_port(container, "grpc");
    assert_eq!(port_of(&env["INFERD_LISTEN"]), grpc);
    assert_eq!(port_of(&env["INFERD_HTTP_LISTEN"]), container_port(container, "http"));
    let metrics = container_port(container, "metrics");
    assert_eq!(port_of(&env["INFERD_METRICS_LISTEN"]), metrics);

    // Native gRPC probes on the daemon's port: start-up and readiness on the
    // daemon's status (service ""), liveness on the one the drain leaves on.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["grpc"]["port"].as_u64(), Some(grpc), "{probe}");
    }
    for probe in ["startupProbe", "readinessProbe"] {
        let service = container[probe]["grpc"]["service"].as_str().unwrap_or("");
        assert_eq!(service, "", "{probe}");
    }
    assert_eq!(container["livenessProbe"]["grpc"]["service"], "liveness");
    // The grace period outlasts the drain and the exit timeout.
    let drain: u64 = env["INFERD_DRAIN_SECONDS"].parse().unwrap();
    let exit: u64 = env["INFERD_EXIT_TIMEOUT_SECONDS"].parse().unwrap();
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > drain + exit, "{grace} <= {drain} + {exit}");
    assert!(
        container["readinessProbe"]["periodSeconds"].as_u64().unwrap() < drain,
        "readiness is probed within the drain"
    );
    // Not root; the Hugging Face cache on a volume.
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["spec"]["securityContext"]["runAsUser"].as_u64(), Some(0));
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"].as_str() == Some(env["HF_HOME"].as_str())));
    // Prometheus scrapes the metrics port.
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        str_of(&annotations["prometheus.io/port"], "port")
            .parse::<u64>()
            .unwrap(),
        metrics
    );

    // The Services reach named container ports, gRPC as h2c.
    let services = of_kind(&docs, "Service");
    assert_eq!(services.len(), 2);
    for service in services {
        assert_eq!(&service["spec"]["selector"], labels);
        for port in service["spec"]["ports"].as_sequence().unwrap() {
            container_port(container, str_of(&port["targetPort"], "targetPort"));
            if port["name"] == "grpc" {
                assert_eq!(port["appProtocol"], "kubernetes.io/h2c");
            }
        }
    }
    let pdb = of_kind(&docs, "PodDisruptionBudget")[0];
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);

    // The autoscaler scales this Deployment on a metric the daemon exports,
    // which the adapter rule serves per pod.
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler")[0];
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    let metric = str_of(&hpa["spec"]["metrics"][0]["pods"]["metric"]["name"], "metric");
    let daemon = Daemon::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    daemon
        .load("m", "text-classification", &fixture_model("bert-cls"))
        .await;
    assert!(
        daemon.metrics().contains(&format!("{metric}{{model=\"m\"}}")),
        "the daemon does not export {metric}"
    );
    let adapter = documents("kubernetes/prometheus-adapter.yaml");
    let rules: Value = serde_yaml::from_str(str_of(&adapter[0]["data"]["config.yaml"], "config.yaml")).unwrap();
    let rule = rules["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["name"]["as"] == metric)
        .expect("an adapter rule for the HPA's metric");
    assert!(str_of(&rule["seriesQuery"], "seriesQuery").starts_with(metric));
}

#[tokio::test]
async fn the_kserve_runtime_serves_v2_and_grpc_v2_on_an_h2c_port_and_the_sample_uses_it() {
    let runtime = &documents("kserve/cluster-serving-runtime.yaml")[0];
    assert_eq!(runtime["kind"], "ClusterServingRuntime");
    let protocols: Vec<&str> = runtime["spec"]["protocolVersions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["v2", "grpc-v2"]);
    let container = &runtime["spec"]["containers"][0];
    assert_eq!(container["name"], "kserve-container");
    let env = env_of(container);
    let h2c = container_port(container, "h2c");
    assert_eq!(port_of(&env["INFERD_LISTEN"]), h2c, "gRPC is served on the h2c port");
    assert_eq!(
        env["INFERD_MODEL_DIR"], "/mnt/models",
        "where the storage initializer puts the model"
    );
    assert_eq!(
        port_of(&env["INFERD_HTTP_LISTEN"]),
        8080,
        "the HTTP API (v2 REST, probes) on KServe's usual HTTP port"
    );

    let service = &documents("kserve/inference-service.yaml")[0];
    assert_eq!(service["kind"], "InferenceService");
    let model = &service["spec"]["predictor"]["model"];
    assert_eq!(model["runtime"], runtime["metadata"]["name"]);
    let format = &model["modelFormat"]["name"];
    assert!(runtime["spec"]["supportedModelFormats"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|f| &f["name"] == format));
    assert!(protocols.contains(&str_of(&model["protocolVersion"], "protocolVersion")));
    let task = model["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "INFERD_MODEL_TASK")
        .expect("the sample names its task");
    assert_eq!(task["value"], "text-classification");
    let grace = service["spec"]["predictor"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    let drain: u64 = env["INFERD_DRAIN_SECONDS"].parse().unwrap();
    let exit: u64 = env["INFERD_EXIT_TIMEOUT_SECONDS"].parse().unwrap();
    assert!(grace > drain + exit, "{grace} <= {drain} + {exit}");
}

#[test]
fn the_container_recipe_builds_in_one_stage_and_runs_as_a_user_from_the_installed_tree() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "multi-stage"
    );
    assert!(lines.iter().any(|l| l.contains("scripts/install.sh /opt/inferd")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("COPY --from=build /opt/inferd /opt/inferd")));
    let user = lines.iter().find(|l| l.starts_with("USER ")).expect("a USER");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(lines
        .iter()
        .any(|l| l.contains("ENTRYPOINT") && l.contains("/opt/inferd/bin/inferd-entrypoint")));
    assert!(dockerfile.contains("HF_HOME=/var/cache/huggingface") && dockerfile.contains("VOLUME"));
    // The entrypoint it names is the one the install puts there.
    let install = std::fs::read_to_string(root.join("scripts/install.sh")).unwrap();
    assert!(install.contains("deploy/entrypoint.sh\" \"$PREFIX/bin/inferd-entrypoint\""));
    assert!(Path::new(&root.join("deploy/entrypoint.sh")).is_file());
    // The build context leaves out the host's build output and virtualenv
    // (a copied .venv would hide the torch the recipe installs).
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    for path in ["/target", "/.venv", "/.git"] {
        assert!(ignored.lines().any(|l| l.trim() == path), ".dockerignore lacks {path}");
    }
}
