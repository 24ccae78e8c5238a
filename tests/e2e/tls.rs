//! TLS on the gRPC listener, through the real daemon and tonic's rustls
//! client: a client trusting the CA is served; one trusting another CA, and
//! a plaintext one, are not; with `--tls-client-ca` a client without a
//! certificate of that CA is refused; SIGHUP swaps the certificate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferd_proto::v1::models_client::ModelsClient;
use inferd_proto::v1::ListPluginsRequest;
use inferd_tests::{release_dir, TestCa as Authority};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// inferd on a free port with TLS (and `extra_args`), its files in `dir`.
struct TlsDaemon {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl TlsDaemon {
    fn start(dir: &Path, extra_args: &[&str]) -> TlsDaemon {
        let address_file = dir.join("address");
        let log = dir.join("inferd.log");
        let child = Command::new(release_dir().join("inferd"))
            .args(["--listen", "127.0.0.1:0", "--offline", "--log", "info,inferd=debug"])
            .arg("--address-file")
            .arg(&address_file)
            .arg("--tls-cert")
            .arg(dir.join("server.pem"))
            .arg("--tls-key")
            .arg(dir.join("server.key"))
            .args(extra_args)
            .env("NO_COLOR", "1")
            .env("HF_HUB_CACHE", dir.join("hf-cache"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = TlsDaemon {
            child,
            addr: String::new(),
            log,
        };
        let started = Instant::now();
        while daemon.addr.is_empty() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("inferd exited with {status}:\n{}", daemon.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "inferd did not start:\n{}",
                daemon.log()
            );
            daemon.addr = std::fs::read_to_string(&address_file)
                .unwrap_or_default()
                .trim()
                .to_string();
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// ListPlugins over TLS trusting `ca`, with a client certificate when
    /// given: whether it is answered.
    async fn answers(&self, ca: &str, identity: Option<&(String, String)>) -> bool {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let channel = Channel::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect_timeout(Duration::from_secs(10));
        match channel.connect().await {
            Ok(channel) => ModelsClient::new(channel)
                .list_plugins(ListPluginsRequest {})
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    /// GET /metrics over TLS trusting `ca`: the status line, None when the
    /// handshake fails.
    async fn metrics_status(&self, ca: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("metrics at https://"))
            .expect("metrics over https");
        let addr = line[line.find("https://").unwrap() + 8..]
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: inferd\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        Some(
            String::from_utf8_lossy(&response)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// ListPlugins in plaintext: whether it is answered.
    async fn answers_plaintext(&self) -> bool {
        let endpoint = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(10));
        match endpoint.connect().await {
            Ok(channel) => ModelsClient::new(channel)
                .list_plugins(ListPluginsRequest {})
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl Drop for TlsDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_server_files(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (Authority::new("one"), Authority::new("two"));
    write_server_files(dir.path(), &ca.issue(&["localhost", "127.0.0.1"]));
    let daemon = TlsDaemon::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    assert!(daemon.answers(&ca.pem, None).await, "{}", daemon.log());
    // The metrics listener serves TLS with the same certificate.
    let status = daemon.metrics_status(&ca.pem).await;
    assert!(status.as_deref().is_some_and(|s| s.contains(" 200 ")), "{status:?}");
    assert_eq!(daemon.metrics_status(&other_ca.pem).await, None);
    assert!(!daemon.answers(&other_ca.pem, None).await);
    assert!(!daemon.answers_plaintext().await);
    // inferctl: https:// with the CA; the system's roots do not know it.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let inferctl = |extra: &[&str]| {
        Command::new(release_dir().join("inferctl"))
            .args(["--addr", &format!("https://{}", daemon.addr)])
            .args(extra)
            .arg("plugins")
            .output()
            .unwrap()
    };
    let out = inferctl(&["--tls-ca", ca_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("word-count"));
    assert!(!inferctl(&[]).status.success());

    // A certificate of the other CA, read on SIGHUP; new connections see it.
    write_server_files(dir.path(), &other_ca.issue(&["localhost"]));
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let started = Instant::now();
    while !daemon.answers(&other_ca.pem, None).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not reloaded:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!daemon.answers(&ca.pem, None).await);
    // Files that make no valid configuration leave the running one.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let started = Instant::now();
    while !daemon.log().contains("TLS files not reloaded") {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(daemon.answers(&other_ca.pem, None).await, "{}", daemon.log());
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, clients, strangers) = (Authority::new("server"), Authority::new("clients"), Authority::new("x"));
    write_server_files(dir.path(), &ca.issue(&["localhost"]));
    std::fs::write(dir.path().join("clients.pem"), &clients.pem).unwrap();
    let client_ca = dir.path().join("clients.pem");
    let daemon = TlsDaemon::start(dir.path(), &["--tls-client-ca", client_ca.to_str().unwrap()]);
    let member = clients.issue(&["client"]);
    assert!(daemon.answers(&ca.pem, Some(&member)).await, "{}", daemon.log());
    assert!(!daemon.answers(&ca.pem, None).await);
    assert!(!daemon.answers(&ca.pem, Some(&strangers.issue(&["client"]))).await);
    assert!(!daemon.answers_plaintext().await);
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(release_dir().join("inferd"))
            .args(["--listen", "127.0.0.1:0", "--offline"])
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, stderr) = run(&["--tls-cert", "/nonexistent/cert.pem"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("both --tls-cert and --tls-key"), "{stderr}");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not PEM").unwrap();
    let (code, stderr) = run(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no PEM certificate") && stderr.contains("cert.pem"),
        "{stderr}"
    );
}
