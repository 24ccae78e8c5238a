//! Reaching the daemon: `--addr`, the gRPC clients over one connection, and
//! how its errors read.

use anyhow::{Context, Result};
use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::models_client::ModelsClient;
use tonic::transport::Channel;

pub type Inference = InferenceClient<Channel>;
pub type Models = ModelsClient<Channel>;

/// Where the daemon listens.
#[derive(clap::Args)]
pub struct DaemonAddr {
    /// Address of the daemon.
    #[arg(long, global = true, env = "INFERD_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
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
        let channel = Channel::from_shared(addr.clone())
            .context("invalid --addr")?
            .connect()
            .await
            .with_context(|| format!("cannot connect to inferd at {addr} (is it running?)"))?;
        Ok(Clients {
            // Depth maps are 4 bytes a pixel: a 12-megapixel photo's is 48 MB.
            inference: InferenceClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            models: ModelsClient::new(channel),
        })
    }
}

/// A gRPC error as the daemon phrased it.
pub fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}
