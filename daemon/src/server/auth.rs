//! API keys on the gRPC listener: this layer reads the method's path and
//! the `authorization` metadata, and answers UNAUTHENTICATED or
//! PERMISSION_DENIED itself (see [`crate::access`]) before any handler runs.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::access::{right_for, Keys};

#[derive(Clone)]
pub struct AuthLayer {
    keys: Arc<Keys>,
}

impl AuthLayer {
    pub fn new(keys: Keys) -> Self {
        AuthLayer { keys: Arc::new(keys) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            keys: self.keys.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    keys: Arc<Keys>,
}

impl<S, B, RB> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let authorization = request.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        if let Err(e) = self.keys.check(right_for(path), authorization) {
            // Debug: anyone can send these, as fast as they like.
            tracing::debug!(method = path, "refused: {e}");
            let status: Status = e.into();
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(self.inner.call(request))
    }
}
