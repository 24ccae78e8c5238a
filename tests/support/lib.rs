//! Support for the end-to-end tests: start the real `inferd` binary with the
//! built plugins, wait until it serves, give tests gRPC clients, read its log
//! and its memory, and stop it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use inferd_proto::prost::bytes::{Buf, BufMut};
use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::models_client::ModelsClient;
use inferd_proto::v1::{ClassifyRequest, LoadModelRequest, ModelInfo, RunInput, RunRequest, TextInput};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::Status;
pub use tonic_health::pb::health_check_response::ServingStatus;

/// How long a daemon may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding the release binaries and plugins.
pub fn release_dir() -> PathBuf {
    std::env::var_os("INFERD_RELEASE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release"))
}

/// The device the tests' models run on: `INFERD_TEST_DEVICE` (`cuda:0`
/// runs the parity suites on a GPU), else the daemon's default, the CPU.
pub fn test_device() -> Option<String> {
    std::env::var("INFERD_TEST_DEVICE").ok().filter(|d| !d.is_empty())
}

/// The OpenMP wait policy of the daemons the tests start: the
/// environment's `OMP_WAIT_POLICY`, else `PASSIVE`.
fn omp_wait_policy() -> String {
    std::env::var("OMP_WAIT_POLICY")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "PASSIVE".into())
}

/// The directory of the test-only plugins (built by scripts/test.sh).
pub fn test_plugin_dir() -> PathBuf {
    std::env::var_os("INFERD_TEST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-plugins/release"))
}

/// The python of a virtualenv of its own holding `requirements` (made on
/// first use by tests/support/client_venv.sh), for a client whose
/// dependencies clash with the project's virtualenv.
pub fn client_python(name: &str, requirements: &[&str]) -> PathBuf {
    let out = Command::new(repo_root().join("tests/support/client_venv.sh"))
        .arg(name)
        .args(requirements)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/support/client_venv.sh");
    assert!(out.status.success(), "cannot make the {name} virtualenv");
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

/// Makes `calls` (see tests/support/triton_calls.py) with NVIDIA's
/// tritonclient against `daemon`'s KServe v2 service; one answer per call.
pub fn triton_calls(daemon: &Daemon, calls: &serde_json::Value) -> Vec<serde_json::Value> {
    let python = client_python("triton", &["tritonclient[grpc]==2.73.0"]);
    python_calls(&python, "triton_calls.py", &[&daemon.addr], calls, daemon)
}

/// Makes `calls` (see tests/support/openai_calls.py) with the `openai`
/// client against `daemon`'s HTTP API (started with --http-listen), with
/// `key` as the API key; one answer per call.
pub fn openai_calls(daemon: &Daemon, key: &str, calls: &serde_json::Value) -> Vec<serde_json::Value> {
    let python = client_python("openai", &["openai==3.60.0"]);
    let url = format!("http://{}/v1", daemon.http_addr());
    python_calls(&python, "openai_calls.py", &[&url, key], calls, daemon)
}

/// Runs tests/support/SCRIPT ARGS with `calls` as JSON on its stdin, and
/// returns the JSON list it prints.
fn python_calls(
    python: &Path,
    script: &str,
    args: &[&str],
    calls: &serde_json::Value,
    daemon: &Daemon,
) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/support").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(calls.to_string().as_bytes())
        .expect("write the calls");
    let out = child.wait_with_output().expect("the script's output");
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    serde_json::from_slice(&out.stdout).expect("JSON answers")
}

/// The fixture directory written by tests/fixtures/make_fixtures.py.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("INFERD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/fixtures"));
    assert!(
        dir.join("STAMP").is_file(),
        "fixtures are missing at {}: run scripts/test.sh (or .venv/bin/python tests/fixtures/make_fixtures.py)",
        dir.display()
    );
    dir
}

/// A fixture model directory, as a string for LoadModel.
pub fn fixture_model(name: &str) -> String {
    fixtures_dir().join("models").join(name).display().to_string()
}

/// Reads a reference JSON file of the fixtures.
pub fn reference<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = fixtures_dir().join("references").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    pub addr: String,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts inferd on a free port with the default plugins (those beside
    /// the binary) and `extra_args`, and waits until it reports SERVING.
    pub async fn start(extra_args: &[&str]) -> Daemon {
        Self::start_with_env(extra_args, &[]).await
    }

    /// As `start`, with extra environment variables.
    pub async fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_full(extra_args, env, true).await
    }

    /// As `start_with_env`, allowed to reach the hub (its HF_ENDPOINT).
    pub async fn start_online(extra_args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_full(extra_args, env, false).await
    }

    /// Starts inferd as `start` does, but returns as soon as it listens,
    /// ready or not.
    pub async fn start_listening(extra_args: &[&str]) -> Daemon {
        Self::spawn(&release_dir().join("inferd"), extra_args, &[], true)
            .await
            .0
    }

    async fn start_full(extra_args: &[&str], env: &[(&str, &str)], offline: bool) -> Daemon {
        let (mut daemon, started) = Self::spawn(&release_dir().join("inferd"), extra_args, env, offline).await;
        daemon.wait_serving(started).await;
        daemon
    }

    /// Starts another inferd binary (an installed copy) as `start` does,
    /// without LD_LIBRARY_PATH.
    pub async fn start_binary(binary: &Path, extra_args: &[&str]) -> Daemon {
        let (mut daemon, started) = Self::spawn(binary, extra_args, &[], true).await;
        daemon.wait_serving(started).await;
        daemon
    }

    /// Starts `binary` and waits for its address file.
    async fn spawn(binary: &Path, extra_args: &[&str], env: &[(&str, &str)], offline: bool) -> (Daemon, Instant) {
        let dir = tempfile::tempdir().expect("temp dir");
        let address_file = dir.path().join("address");
        let log_path = dir.path().join("inferd.log");
        assert!(
            binary.is_file(),
            "{} is missing: run scripts/test.sh (it builds it)",
            binary.display()
        );
        let log = std::fs::File::create(&log_path).expect("log file");
        // A test that names a device keeps it; the others run on the test
        // device, in float32 (the parity suites' references are float32;
        // tests of other dtypes name them per model) unless
        // INFERD_TEST_DTYPE says otherwise.
        let device = test_device().filter(|_| !extra_args.iter().any(|a| a.starts_with("--device")));
        let dtype = device
            .as_ref()
            .filter(|_| !extra_args.iter().any(|a| a.starts_with("--dtype")))
            .map(|_| std::env::var("INFERD_TEST_DTYPE").unwrap_or_else(|_| "float32".into()));
        let child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--log", "info,inferd=debug"])
            .args(offline.then_some("--offline"))
            .arg("--address-file")
            .arg(&address_file)
            .args(extra_args)
            .args(device.iter().flat_map(|d| ["--device", d.as_str()]))
            .args(dtype.iter().flat_map(|d| ["--dtype", d.as_str()]))
            .env("NO_COLOR", "1")
            .env("HF_HUB_CACHE", dir.path().join("hf-cache"))
            // Tests run side by side, each with its own daemon: OpenMP
            // threads that spin while they wait would take the cores the
            // other daemons compute on (libgomp throttles its spinning only
            // within one process), which made the suite twice as slow on
            // two cores. Here waiting threads sleep, unless the environment
            // says otherwise.
            .env("OMP_WAIT_POLICY", omp_wait_policy())
            // Proxies only where a test names them.
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("LD_LIBRARY_PATH")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start inferd");
        let mut daemon = Daemon {
            child,
            addr: String::new(),
            log_path,
            _dir: dir,
        };
        let started = Instant::now();
        while daemon.addr.is_empty() {
            if let Ok(addr) = std::fs::read_to_string(&address_file) {
                daemon.addr = addr.trim().to_string();
            } else {
                daemon.assert_running();
                assert!(
                    started.elapsed() < START_TIMEOUT,
                    "inferd did not start:\n{}",
                    daemon.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (daemon, started)
    }

    async fn wait_serving(&mut self, started: Instant) {
        loop {
            self.assert_running();
            if is_serving(&self.url()).await {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "inferd never became healthy:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("inferd exited with {status}:\n{}", self.log());
        }
    }

    /// Runs `inferctl --addr <this daemon> ARGS...`, which must succeed, and
    /// returns what it printed.
    pub fn inferctl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(release_dir().join("inferctl"))
            .arg("--addr")
            .arg(self.url())
            .args(args)
            .output()
            .expect("run inferctl");
        assert!(
            out.status.success(),
            "inferctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to inferd")
    }

    pub async fn inference(&self) -> InferenceClient<Channel> {
        InferenceClient::new(self.channel().await).max_decoding_message_size(usize::MAX)
    }

    pub async fn models(&self) -> ModelsClient<Channel> {
        ModelsClient::new(self.channel().await)
    }

    /// Loads a model and panics with the daemon's log if that fails.
    pub async fn load(&self, name: &str, task: &str, source: &str) -> ModelInfo {
        let request = LoadModelRequest {
            name: name.into(),
            task: task.into(),
            source: source.into(),
            ..Default::default()
        };
        match self.models().await.load_model(request).await {
            Ok(r) => r.into_inner(),
            Err(e) => panic!("LoadModel {name} failed: {e}\n{}", self.log()),
        }
    }

    /// The metrics endpoint's address, from the log line that announces it
    /// (start the daemon with `--metrics-listen 127.0.0.1:0`).
    pub fn metrics_addr(&self) -> String {
        self.announced_addr("metrics at http://")
    }

    /// The HTTP API's address, from the log line that announces it (start
    /// the daemon with `--http-listen 127.0.0.1:0`).
    pub fn http_addr(&self) -> String {
        self.announced_addr("HTTP API at http://")
    }

    /// The address in the first log line holding `marker` (which ends in
    /// `http://`).
    fn announced_addr(&self, marker: &str) -> String {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("the log never says {marker:?}:\n{log}"));
        let url = &line[line.find(marker).expect("marker") + marker.len()..];
        url.split('/').next().expect("address").to_string()
    }

    /// One request to the HTTP API: (status code, body).
    pub fn http_call(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.http_addr()).expect("connect to the HTTP API");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: inferd\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .expect("send");
        // The server may answer (413) before reading the whole body.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        (status, response[split + 4..].to_vec())
    }

    /// GET `path` from the metrics endpoint: (status line, body).
    pub fn http_get(&self, path: &str) -> (String, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.metrics_addr()).expect("connect to the metrics endpoint");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: inferd\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        (head.lines().next().unwrap_or_default().to_string(), body.to_string())
    }

    /// The Prometheus metrics text.
    pub fn metrics(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert!(status.contains(" 200 "), "{status}");
        body
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Resident memory of the daemon process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS line");
        kb * 1024
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(60)).await
    }

    /// Sends a signal (`TERM`, `INT`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits for the daemon to exit (panics after `within`).
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "inferd did not stop within {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The grpc.health.v1 status of `service` ("" is the daemon, a model's
    /// name that model); Err: the call's status (NOT_FOUND for a service
    /// the daemon does not know).
    pub async fn health(&self, service: &str) -> Result<ServingStatus, tonic::Status> {
        health_check(&self.url(), service).await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one series (`name{labels}` exactly as exposed) in a
/// Prometheus text exposition; 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

/// The daemon's overall health status is SERVING.
async fn is_serving(url: &str) -> bool {
    matches!(health_check(url, "").await, Ok(ServingStatus::Serving))
}

async fn health_check(url: &str, service: &str) -> Result<ServingStatus, tonic::Status> {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let channel = Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

/// 200 short review-like sentences (8 subjects, 5 verbs, 5 endings): enough
/// to count how many labels two models agree on in percent.
pub fn review_sentences() -> Vec<String> {
    let subjects = [
        "the film",
        "my order",
        "this phone",
        "the hotel",
        "our teacher",
        "the new album",
        "a neighbour",
        "the service",
    ];
    let verbs = ["was", "seemed", "is not", "became", "felt"];
    let ends = [
        "wonderful",
        "terrible and slow",
        "good enough",
        "a waste of money",
        "surprisingly fun",
    ];
    let mut out = Vec::new();
    for s in subjects {
        for v in verbs {
            for e in ends {
                out.push(format!("{s} {v} {e}"));
            }
        }
    }
    out
}

/// The cosine similarity of an answer's vector and a reference one.
pub fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Each text's top label and its score from the text-classification
/// model `model`, in one request.
pub async fn top_labels(daemon: &Daemon, model: &str, texts: &[String]) -> Vec<(String, f32)> {
    let response = daemon
        .inference()
        .await
        .classify(ClassifyRequest {
            model: model.into(),
            inputs: texts
                .iter()
                .map(|t| TextInput {
                    text: t.clone(),
                    text_pair: None,
                })
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("classify {model}: {e}"))
        .into_inner();
    response
        .results
        .into_iter()
        .map(|r| (r.labels[0].label.clone(), r.labels[0].score))
        .collect()
}

/// Asserts two scores agree within 1e-4 (relative for large magnitudes).
pub fn assert_close(actual: f32, expected: f64, what: &str) {
    assert_close_with(actual, expected, 1e-4, what)
}

/// The tolerance of a score check that is `base` on the CPU. On a GPU
/// (INFERD_TEST_DEVICE) it is at least 5e-4: float32 sums run in another
/// order there, and deep random-weight models move a score by more than
/// 1e-4 (DETR's ResNet-50 on a 3x5 image: 1.2e-4 on an H200).
pub fn score_tolerance(base: f64) -> f64 {
    if test_device().is_some_and(|d| d.starts_with("cuda")) {
        base.max(5e-4)
    } else {
        base
    }
}

/// Asserts two scores agree within `tolerance` (relative for large
/// magnitudes; see [`score_tolerance`] on a GPU).
pub fn assert_close_with(actual: f32, expected: f64, tolerance: f64, what: &str) {
    let tolerance = score_tolerance(tolerance) * expected.abs().max(1.0);
    assert!(
        (actual as f64 - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (tolerance {tolerance})"
    );
}

/// Sends and receives message bytes as they are, for calls with bytes no
/// generated client would send (a real method's path, any body).
#[derive(Clone, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// A `Run` request of the test-only panicky plugin's task `panic` for
/// `model` (empty: the task's default) with one input `text`.
pub fn panic_request(model: &str, text: &str) -> RunRequest {
    RunRequest {
        model: model.into(),
        task: "panic".into(),
        inputs: vec![RunInput {
            text: text.into(),
            data: vec![],
        }],
        ..Default::default()
    }
}

/// A certificate authority for tests, signing server and client
/// certificates (rcgen).
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    /// Its certificate, PEM.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("inferd test CA {name}"));
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.clone().self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key, PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = self.params.clone().self_signed(&self.key).unwrap();
        let cert = params.signed_by(&key, &issuer, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The path of the program `tool`, installed from the Debian package
/// `package` when missing (tests/support/need_tool.sh).
pub fn need_tool(tool: &str, package: &str) -> PathBuf {
    let out = Command::new(repo_root().join("tests/support/need_tool.sh"))
        .args([tool, package])
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/support/need_tool.sh");
    assert!(out.status.success(), "{tool} is not available");
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

/// nginx (Debian's nginx-light, installed when missing)
/// balancing gRPC over `upstreams` round-robin, one worker, no upstream
/// keep-alive; killed when dropped.
pub struct Nginx {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub async fn start(upstreams: &[&str]) -> Nginx {
        let nginx = need_tool("nginx", "nginx-light");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=1 fail_timeout=30s;\n"))
            .collect();
        let d = dir.path().display();
        let config = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               upstream inferd {{\n{servers}  }}\n\
               server {{\n\
                 listen 127.0.0.1:{port} http2;\n\
                 location / {{\n\
                   grpc_pass grpc://inferd;\n\
                   grpc_next_upstream error timeout non_idempotent;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).expect("write nginx.conf");
        let child = Command::new(nginx)
            .args(["-e", &format!("{d}/error.log"), "-g", "daemon off;", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            child,
            addr: format!("127.0.0.1:{port}"),
            dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(&nginx.addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start:\n{}",
                nginx.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect()
            .await
            .expect("connect to nginx")
    }

    /// nginx's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
