//! Reaching the daemon: `--addr`, the gRPC clients over one connection, and
//! how its errors read.

use anyhow::{Context, Result};
use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::models_client::ModelsClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub type Inference = InferenceClient<InterceptedService<Channel, Bearer>>;
pub type Models = ModelsClient<InterceptedService<Channel, Bearer>>;

/// Where the daemon listens, and the key it may ask for.
#[derive(clap::Args)]
pub struct DaemonAddr {
    /// Address of the daemon.
    #[arg(long, global = true, env = "INFERD_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Key to send (`authorization: Bearer KEY`) to a daemon started with
    /// --api-key or --admin-key; loading and unloading take the admin key.
    #[arg(
        long,
        global = true,
        env = "INFERD_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    api_key: Option<String>,
    /// CA certificate (PEM) to trust for a TLS daemon (an https:// --addr);
    /// default: the system's trusted roots.
    #[arg(long, global = true, env = "INFERCTL_TLS_CA", value_name = "PATH")]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for a daemon started with --tls-client-ca.
    #[arg(
        long,
        global = true,
        env = "INFERCTL_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "INFERCTL_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,
}

/// Adds the key, if any, to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The daemon's two services, sharing one connection.
pub struct Clients {
    pub inference: Inference,
    pub models: Models,
}

impl DaemonAddr {
    /// Connects to the daemon (a bare host:port is taken as http://).
    pub async fn connect(&self) -> Result<Clients> {
        let addr = if self.addr.contains("://") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        };
        let mut endpoint = Channel::from_shared(addr.clone()).context("invalid --addr")?;
        if addr.starts_with("https://") {
            endpoint = endpoint.tls_config(self.tls()?).context("TLS settings")?;
        } else if self.tls_ca.is_some() || self.tls_cert.is_some() {
            anyhow::bail!("--tls-ca and --tls-cert are for a TLS daemon: give --addr as https://HOST:PORT");
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to inferd at {addr} (is it running?)"))?;
        let bearer = match &self.api_key {
            Some(key) => Some(
                format!("Bearer {}", key.trim())
                    .parse()
                    .context("--api-key must be printable ASCII")?,
            ),
            None => None,
        };
        let bearer = Bearer(bearer);
        Ok(Clients {
            // Depth maps are 4 bytes a pixel: a 12-megapixel photo's is 48 MB.
            inference: InferenceClient::with_interceptor(channel.clone(), bearer.clone())
                .max_decoding_message_size(usize::MAX),
            models: ModelsClient::with_interceptor(channel, bearer),
        })
    }
}

impl DaemonAddr {
    /// The client's TLS settings: the CA given, else the system's roots;
    /// a client certificate when given.
    fn tls(&self) -> Result<ClientTlsConfig> {
        let read =
            |path: &std::path::Path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
        let mut tls = ClientTlsConfig::new();
        tls = match &self.tls_ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => tls.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(tls)
    }
}

/// A gRPC error as the daemon phrased it.
pub fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}
