//! Hub downloads through the real daemon, from a stand-in for the hub
//! (tests/support/hub_standin.py) reached by HF_ENDPOINT: a download that
//! is cut off and resumed, a revision, a .bin-only repository, a gated one
//! without, with a wrong and with the right token, a missing one, two
//! loads of one repository at once (each file fetched once), and the
//! cache shared with Python's huggingface_hub both ways.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use inferd_proto::v1::{ClassifyRequest, LoadModelRequest, TextInput};
use inferd_tests::{fixture_model, repo_root, Daemon, TestCa};
use serde_json::Value;
use tonic::Code;

const TOKEN: &str = "hf_standin_token";

struct Standin {
    child: Child,
    url: String,
}

/// Starts one of tests/support's Python servers; it and the port it
/// listens on (its first line: "PORT n").
fn start_server(script: &str, args: &[String]) -> (Child, String) {
    let mut child = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/support").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script} (.venv/bin/python): {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().strip_prefix("PORT ").expect("PORT n").to_string();
    (child, port)
}

impl Standin {
    fn start(args: &[String]) -> Standin {
        let (child, port) = start_server("hub_standin.py", args);
        Standin {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// GETs of each file body so far.
    fn gets(&self, repo: &str, file: &str) -> u64 {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET /_stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1;
        let stats: Value = serde_json::from_str(body).unwrap();
        stats[format!("/{repo}/resolve/{}/{file}", self.commit(repo))]
            .as_u64()
            .unwrap_or(0)
    }

    fn commit(&self, repo: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET /api/models/{repo}/revision/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let info: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
        info["sha"].as_str().unwrap().to_string()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load(name: &str, source: &str, revision: &str) -> LoadModelRequest {
    LoadModelRequest {
        name: name.into(),
        task: "text-classification".into(),
        source: source.into(),
        revision: revision.into(),
        ..Default::default()
    }
}

async fn scores(daemon: &Daemon, model: &str) -> Vec<f32> {
    let response = daemon
        .inference()
        .await
        .classify(ClassifyRequest {
            model: model.into(),
            inputs: vec![TextInput {
                text: "what a wonderful day".into(),
                text_pair: None,
            }],
            top_k: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    response.results[0].labels.iter().map(|c| c.score).collect()
}

/// The fixture classifier's files but its weights, copied to `out`; the
/// fixture's directory.
fn copy_but_weights(out: &Path) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let source = PathBuf::from(fixture_model("distilbert-cls"));
    for entry in std::fs::read_dir(&source).unwrap().flatten() {
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
        }
    }
    source
}

/// A copy of the fixture classifier with its weights as pytorch_model.bin.
fn bin_only(dir: &Path) -> PathBuf {
    let out = dir.join("bin-only");
    let source = copy_but_weights(&out);
    let status = Command::new(repo_root().join(".venv/bin/python"))
        .arg("-c")
        .arg("import sys, torch, safetensors.torch as st; torch.save(st.load_file(sys.argv[1]), sys.argv[2])")
        .arg(source.join("model.safetensors"))
        .arg(out.join("pytorch_model.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    out
}

#[tokio::test]
async fn models_download_from_hf_endpoint_and_share_the_cache_with_python() {
    let work = tempfile::tempdir().unwrap();
    let cls = fixture_model("distilbert-cls");
    let bin = bin_only(work.path());
    let repo = |id: &str, dir: &str| format!("--repo={id}={dir}");
    let standin = Standin::start(&[
        repo("org/cls", &cls),
        repo("org/twice", &cls),
        repo("org/gated", &cls),
        repo("org/bin", bin.to_str().unwrap()),
        "--tag=org/cls=v1".into(),
        "--gated=org/gated".into(),
        format!("--token={TOKEN}"),
        "--cut=org/cls/model.safetensors".into(),
    ]);
    let cache = work.path().join("cache");
    let env = [
        ("HF_ENDPOINT", standin.url.as_str()),
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
    ];
    let daemon = Daemon::start_online(&[], &env).await;
    let mut models = daemon.models().await;

    // Cut off halfway: the load fails saying so; the next resumes the file.
    let status = models.load_model(load("cls", "org/cls", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("cut off"), "{status:?}");
    models.load_model(load("cls", "org/cls", "")).await.unwrap();
    assert_eq!(standin.gets("org/cls", "model.safetensors"), 2);
    assert!(
        daemon.log().contains("resuming a download that was cut off"),
        "{}",
        daemon.log()
    );
    daemon.load("local", "text-classification", &cls).await;
    assert_eq!(scores(&daemon, "cls").await, scores(&daemon, "local").await);
    // A tag of the same commit: from the cache, nothing fetched again.
    models.load_model(load("cls-v1", "org/cls", "v1")).await.unwrap();
    assert_eq!(standin.gets("org/cls", "model.safetensors"), 2);
    assert_eq!(
        std::fs::read_to_string(cache.join("models--org--cls/refs/v1")).unwrap(),
        standin.commit("org/cls")
    );
    // Weights as pytorch_model.bin only.
    models.load_model(load("bin", "org/bin", "")).await.unwrap();
    assert_eq!(scores(&daemon, "bin").await, scores(&daemon, "local").await);
    // Missing repository and revision.
    let status = models.load_model(load("missing", "org/missing", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = models.load_model(load("missing", "org/cls", "v9")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Two loads of one repository at once: each file fetched once.
    let (mut a, mut b) = (models.clone(), models.clone());
    let (first, second) = tokio::join!(
        a.load_model(load("twice-a", "org/twice", "")),
        b.load_model(load("twice-b", "org/twice", ""))
    );
    first.unwrap();
    second.unwrap();
    for file in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert_eq!(standin.gets("org/twice", file), 1, "{file}");
    }

    // Gated: no token, a wrong one, the right one.
    let status = models.load_model(load("gated", "org/gated", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("HF_TOKEN") && status.message().contains("org/gated"),
        "{status:?}"
    );
    let wrong = Daemon::start_online(&[], &[env[0], env[1], ("HF_TOKEN", "hf_wrong")]).await;
    let status = wrong
        .models()
        .await
        .load_model(load("gated", "org/gated", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let right = Daemon::start_online(&[], &[env[0], env[1], ("HF_TOKEN", TOKEN)]).await;
    right
        .models()
        .await
        .load_model(load("gated", "org/gated", ""))
        .await
        .unwrap();

    // Python's huggingface_hub finds inferd's download in the cache...
    let python = |code: &str, env: &[(&str, &str)]| {
        let out = Command::new(repo_root().join(".venv/bin/python"))
            .args(["-c", code])
            .envs(env.iter().copied())
            .env_remove("HF_HUB_OFFLINE")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let found = python(
        "from huggingface_hub import snapshot_download; print(snapshot_download('org/cls', local_files_only=True))",
        &[("HF_HUB_CACHE", cache.to_str().unwrap())],
    );
    assert!(Path::new(&found).join("model.safetensors").is_file(), "{found}");
    // ...and inferd, offline, finds Python's.
    let python_cache = work.path().join("python-cache");
    python(
        "from huggingface_hub import snapshot_download; snapshot_download('org/twice')",
        &[
            ("HF_ENDPOINT", standin.url.as_str()),
            ("HF_HUB_CACHE", python_cache.to_str().unwrap()),
        ],
    );
    let offline = Daemon::start_with_env(&[], &[("HF_HUB_CACHE", python_cache.to_str().unwrap())]).await;
    offline
        .models()
        .await
        .load_model(load("py", "org/twice", ""))
        .await
        .unwrap();
    assert_eq!(scores(&offline, "py").await, scores(&daemon, "local").await);
}

/// A copy of the fixture classifier with its weights in two safetensors
/// shards and their index.
fn sharded(dir: &Path) -> PathBuf {
    let out = dir.join("sharded");
    let source = copy_but_weights(&out);
    let script = "import sys, json, safetensors.torch as st\n\
        weights = st.load_file(sys.argv[1])\n\
        names = sorted(weights)\n\
        half = len(names) // 2\n\
        index = {'metadata': {}, 'weight_map': {}}\n\
        for i, part in enumerate((names[:half], names[half:])):\n\
        \x20   file = f'model-0000{i + 1}-of-00002.safetensors'\n\
        \x20   st.save_file({n: weights[n].contiguous() for n in part}, sys.argv[2] + '/' + file, metadata={'format': 'pt'})\n\
        \x20   index['weight_map'].update({n: file for n in part})\n\
        json.dump(index, open(sys.argv[2] + '/model.safetensors.index.json', 'w'))\n";
    let status = Command::new(repo_root().join(".venv/bin/python"))
        .args(["-c", script])
        .arg(source.join("model.safetensors"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// A hub (or mirror) behind TLS with a private CA: trusted through
/// SSL_CERT_FILE (or REQUESTS_CA_BUNDLE), refused without it; a sharded
/// checkpoint downloads whole.
#[tokio::test]
async fn a_mirror_with_a_private_ca_is_trusted_through_the_ca_bundle() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mirror");
    let (server_cert, server_key) = ca.issue(&["localhost"]);
    let (ca_file, cert_file, key_file) = (
        work.path().join("ca.pem"),
        work.path().join("server.pem"),
        work.path().join("server.key"),
    );
    std::fs::write(&ca_file, &ca.pem).unwrap();
    std::fs::write(&cert_file, server_cert).unwrap();
    std::fs::write(&key_file, server_key).unwrap();
    let shards = sharded(work.path());
    let standin = Standin::start(&[
        format!("--repo=org/sharded={}", shards.display()),
        format!("--cert={}", cert_file.display()),
        format!("--key={}", key_file.display()),
    ]);
    let endpoint = standin.url.replace("http://127.0.0.1", "https://localhost");

    let untrusting = Daemon::start_online(&[], &[("HF_ENDPOINT", endpoint.as_str())]).await;
    let status = untrusting
        .models()
        .await
        .load_model(load("sharded", "org/sharded", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("cannot reach the hub"), "{status:?}");

    for variable in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"] {
        let daemon = Daemon::start_online(
            &[],
            &[
                ("HF_ENDPOINT", endpoint.as_str()),
                (variable, ca_file.to_str().unwrap()),
            ],
        )
        .await;
        daemon
            .models()
            .await
            .load_model(load("sharded", "org/sharded", ""))
            .await
            .unwrap();
        daemon
            .load("local", "text-classification", &fixture_model("distilbert-cls"))
            .await;
        assert_eq!(
            scores(&daemon, "sharded").await,
            scores(&daemon, "local").await,
            "{variable}"
        );
    }
}

/// A forward proxy (tests/support/forward_proxy.py) that alone knows the
/// hub's host name, as behind a corporate proxy.
struct Proxy {
    child: Child,
    port: String,
}

impl Proxy {
    /// Requests it forwarded to `host`.
    fn forwarded(&self, host: &str) -> u64 {
        let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{}", self.port)).unwrap();
        write!(
            stream,
            "GET /_proxy_stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let stats: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
        stats[host].as_u64().unwrap_or(0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn downloads_go_through_https_proxy_except_for_hosts_no_proxy_lists() {
    let standin = Standin::start(&[format!("--repo=org/cls={}", fixture_model("distilbert-cls"))]);
    let port = standin.url.rsplit(':').next().unwrap().to_string();
    // `.invalid` never resolves: only the proxy reaches the hub by that name.
    let host = "hub.invalid";
    let (child, proxy_port) = start_server("forward_proxy.py", &[format!("--host={host}=127.0.0.1")]);
    let proxy = Proxy {
        child,
        port: proxy_port,
    };
    let endpoint = format!("http://{host}:{port}");
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);

    for variable in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"] {
        let before = proxy.forwarded(host);
        let daemon = Daemon::start_online(
            &[],
            &[("HF_ENDPOINT", endpoint.as_str()), (variable, proxy_url.as_str())],
        )
        .await;
        daemon
            .models()
            .await
            .load_model(load("cls", "org/cls", ""))
            .await
            .unwrap_or_else(|e| panic!("{variable}: {e}"));
        assert!(
            proxy.forwarded(host) > before,
            "{variable}: nothing went through the proxy"
        );
        daemon
            .load("local", "text-classification", &fixture_model("distilbert-cls"))
            .await;
        assert_eq!(
            scores(&daemon, "cls").await,
            scores(&daemon, "local").await,
            "{variable}"
        );
    }

    // NO_PROXY lists the hub: the daemon goes direct, and cannot resolve it.
    let before = proxy.forwarded(host);
    let daemon = Daemon::start_online(
        &[],
        &[
            ("HF_ENDPOINT", endpoint.as_str()),
            ("HTTPS_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "localhost,.invalid"),
        ],
    )
    .await;
    let status = daemon
        .models()
        .await
        .load_model(load("cls", "org/cls", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(proxy.forwarded(host), before, "NO_PROXY's host went through the proxy");
}
