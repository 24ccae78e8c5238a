//! The gRPC transport: binds the address, serves the inferd services, the
//! Open Inference Protocol (KServe v2), health and reflection (v1 and
//! v1alpha), and shuts down gracefully. The
//! handlers are thin: validate, hand over to the registry, convert back.

mod auth;
mod deadline;
mod inference;
mod kserve;
mod models;
mod tonic_status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use inferd_proto::kserve::grpc_inference_service_server::GrpcInferenceServiceServer;
use inferd_proto::v1::inference_server::InferenceServer;
use inferd_proto::v1::models_server::ModelsServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

pub use inference::InferenceService;
pub use kserve::{is_text_input, KserveService};
pub use models::ModelsService;

/// The handlers behind the gRPC port and the HTTP API alike.
pub struct Services {
    pub inference: Arc<InferenceService>,
    pub models: Arc<ModelsService>,
    pub kserve: Arc<KserveService>,
}

impl Services {
    pub fn new(registry: Arc<Registry>, readiness: Arc<Readiness>, max_in_flight: usize) -> Self {
        let inference = Arc::new(InferenceService::new(registry.clone(), max_in_flight));
        let models = Arc::new(ModelsService::new(registry.clone()));
        let kserve = Arc::new(KserveService::new(
            inference.clone(),
            models.clone(),
            registry,
            readiness,
        ));
        Services {
            inference,
            models,
            kserve,
        }
    }
}

use crate::access::Keys;
use crate::readiness::Readiness;
use crate::registry::Registry;

pub struct Listening {
    pub addr: SocketAddr,
    listener: TcpListener,
}

/// Binds the listening socket (so a taken port fails before anything loads).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<Listening> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    Ok(Listening {
        addr: listener.local_addr()?,
        listener,
    })
}

/// What the listener enforces before and around the handlers.
pub struct Guards {
    /// Largest request message accepted, in bytes.
    pub max_request_bytes: usize,
    pub keys: Keys,
    /// TLS for every connection; None: plaintext.
    pub tls: Option<Arc<crate::tls::Reloadable>>,
}

/// Serves until `shutdown` resolves, then stops accepting connections and
/// waits for in-flight requests to finish.
pub async fn serve<S>(
    listening: Listening,
    services: &Services,
    health_service: tonic_health::pb::health_server::HealthServer<S>,
    guards: Guards,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    S: tonic_health::pb::health_server::Health,
{
    let Guards {
        max_request_bytes,
        keys,
        tls,
    } = guards;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(inferd_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(inferd_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let kserve = GrpcInferenceServiceServer::from_arc(services.kserve.clone())
        .max_decoding_message_size(max_request_bytes)
        .max_encoding_message_size(usize::MAX);
    let inference = InferenceServer::from_arc(services.inference.clone())
        .max_decoding_message_size(max_request_bytes)
        .max_encoding_message_size(usize::MAX);
    let models = ModelsServer::from_arc(services.models.clone()).max_decoding_message_size(max_request_bytes);
    let router = Server::builder()
        .layer(tonic_status::TonicStatusLayer::new(max_request_bytes))
        .layer(auth::AuthLayer::new(keys))
        .layer(deadline::DeadlineLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inference)
        .add_service(models)
        .add_service(kserve);
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(crate::tls::incoming(listening.listener, tls), shutdown)
                .await?
        }
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listening.listener), shutdown)
                .await?
        }
    }
    Ok(())
}
