//! tonic answers an over-size request with OUT_OF_RANGE; gRPC's convention
//! (and grpc-go, grpc-java) is RESOURCE_EXHAUSTED. This layer rewrites that
//! one status and says which setting sets the limit.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

#[derive(Clone)]
pub struct SizeLimitStatusLayer {
    limit: usize,
}

impl SizeLimitStatusLayer {
    pub fn new(limit: usize) -> Self {
        SizeLimitStatusLayer { limit }
    }
}

impl<S> Layer<S> for SizeLimitStatusLayer {
    type Service = SizeLimitStatus<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SizeLimitStatus {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
pub struct SizeLimitStatus<S> {
    inner: S,
    limit: usize,
}

impl<S, B, RB> Service<Request<B>> for SizeLimitStatus<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limit = self.limit;
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
                && headers
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| {
                        m.starts_with(TONIC_TOO_LARGE)
                            || m.starts_with("Error,%20decoded%20message%20length%20too%20large")
                    });
            if too_large {
                headers.insert("grpc-status", HeaderValue::from_static("8"));
                let message = format!(
                    "request message is larger than the limit of {limit} bytes; send fewer inputs per request or raise --max-request-bytes"
                );
                let encoded = message.replace(' ', "%20");
                if let Ok(value) = HeaderValue::from_str(&encoded) {
                    headers.insert("grpc-message", value);
                }
            }
            Ok(response)
        })
    }
}
