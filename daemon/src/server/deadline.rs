//! Client deadlines. A gRPC deadline arrives as the `grpc-timeout` header;
//! this layer turns it into a [`Deadline`] in the request's extensions, for
//! the handlers to hand to the model queue (a request still queued when it
//! passes never runs), and answers DEADLINE_EXCEEDED if the handler has not
//! answered by then.
//!
//! tonic enforces the same header itself but answers CANCELLED. The deadline
//! here is taken a little short of the header's (1 ms, or half of shorter
//! timeouts), so that it fires first and the client sees the status gRPC
//! specifies.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::error::DaemonError;

const MARGIN: Duration = Duration::from_millis(1);

/// When the request's client stops waiting.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// The deadline a tonic request carries, if any.
pub fn of<T>(request: &tonic::Request<T>) -> Option<Instant> {
    request.extensions().get::<Deadline>().map(|d| d.0)
}

/// The status for a request whose deadline passed.
pub fn exceeded(waited: Duration) -> Status {
    DaemonError::DeadlineExceeded(format!(
        "the request's deadline passed after {} ms before it was answered",
        waited.as_millis()
    ))
    .into()
}

#[derive(Clone, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

#[derive(Clone)]
pub struct DeadlineService<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for DeadlineService<S>
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

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let arrived = Instant::now();
        let deadline = grpc_timeout(request.headers()).map(|t| arrived + t - MARGIN.min(t / 2));
        if let Some(deadline) = deadline {
            request.extensions_mut().insert(Deadline(deadline));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let Some(deadline) = deadline else {
                return future.await;
            };
            // The handler is polled first: when it answers at the deadline
            // itself (with its own metrics), its answer wins.
            match tokio::time::timeout_at(deadline.into(), future).await {
                Ok(response) => response,
                Err(_) => Ok(exceeded(arrived.elapsed()).into_http()),
            }
        })
    }
}

/// The `grpc-timeout` header: at most 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_headers_parse() {
        let header = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(header("1m"), Some(Duration::from_millis(1)));
        assert_eq!(header("2S"), Some(Duration::from_secs(2)));
        assert_eq!(header("3H"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(header("500u"), Some(Duration::from_micros(500)));
        assert_eq!(header("123456789m"), None);
        assert_eq!(header("m"), None);
        assert_eq!(header("10x"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
