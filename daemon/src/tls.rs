//! TLS for the gRPC and metrics listeners (rustls): a certificate chain and
//! key from PEM files, optionally a CA whose client certificates are
//! required, all read again on SIGHUP (a failed reload keeps the running
//! configuration). Each connection's handshake runs in its own task, so a
//! slow or failing client never holds up the others; gRPC connections that
//! finish it are handed to tonic (ALPN h2), metrics ones to hyper (HTTP/1.1).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once, at most; more connections wait to be
/// accepted.
const MAX_HANDSHAKES: usize = 256;

/// Where the TLS material is.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA (PEM) signed.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// A server configuration from the files (no ALPN protocols yet).
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("TLS key {}: no readable PEM private key", self.key.display()))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots
                        .add(cert)
                        .with_context(|| format!("client CA {}: not a usable CA certificate", ca.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .with_context(|| format!("client CA {}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs, key)
            .with_context(|| format!("TLS certificate {} and key {}", self.cert.display(), self.key.display()))?;
        Ok(Arc::new(config))
    }
}

/// The PEM certificates in `path` (none, for a file without any).
pub fn pem_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read PEM certificates from {}", path.display()))
}

/// At least one PEM certificate from `path`.
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = pem_certificates(path)?;
    anyhow::ensure!(!certs.is_empty(), "{}: no PEM certificate in it", path.display());
    Ok(certs)
}

/// The configuration connections are accepted with, replaced on SIGHUP.
pub struct Reloadable {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    pub fn new(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let current = RwLock::new(files.server_config()?);
        Ok(Arc::new(Reloadable { files, current }))
    }

    /// An acceptor with the current configuration, offering `protocol`
    /// (ALPN: "h2" for gRPC, "http/1.1" for the metrics).
    pub fn acceptor(&self, protocol: &[u8]) -> TlsAcceptor {
        let mut config = ServerConfig::clone(&self.current.read().expect("lock"));
        config.alpn_protocols = vec![protocol.to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// Reads the files again; the running configuration stays when they
    /// do not make a valid one.
    fn reload(&self) {
        match self.files.server_config() {
            Ok(config) => {
                *self.current.write().expect("lock") = config;
                tracing::info!(cert = %self.files.cert.display(), "SIGHUP: TLS certificate and key reloaded");
            }
            Err(e) => tracing::error!("SIGHUP: TLS files not reloaded, keeping the running ones: {e:#}"),
        }
    }

    /// Reloads on every SIGHUP for as long as the daemon runs.
    #[cfg(unix)]
    pub fn reload_on_sighup(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let this = self.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                this.reload();
            }
        });
        Ok(())
    }
}

/// The TLS side of a connection, None (logged at debug) when the client
/// fails the handshake or takes too long.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: std::net::SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// The connections of `listener` that complete a TLS handshake (for gRPC).
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloadable>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            // Until the server stops taking connections.
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or the like: wait, then go on.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = tls.acceptor(b"h2");
            let tx = tx.clone();
            tokio::spawn(async move {
                let stream = handshake(&acceptor, tcp, peer).await;
                drop(slot);
                if let Some(stream) = stream {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
