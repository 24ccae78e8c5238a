//! Statuses tonic answers by itself, before a handler runs, given the codes
//! gRPC's convention gives (as grpc-go and grpc-java answer) and messages
//! that say what to do:
//! - a request message over the size limit: tonic says OUT_OF_RANGE; here
//!   RESOURCE_EXHAUSTED, naming the setting that sets the limit;
//! - a request message that does not decode (not protobuf, a field of the
//!   wrong wire type, a string that is not UTF-8, a message cut short or
//!   missing): tonic says INTERNAL; here INVALID_ARGUMENT, naming the RPC.
//!
//! Every inferd RPC takes one request message, which tonic decodes before
//! calling the handler, so such a status always comes in the response's
//! headers (a trailers-only response), where this layer rewrites it. The
//! messages are built in `crate::error`, with the daemon's other statuses.

use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::error::DaemonError;

/// How tonic's messages for these conditions begin.
const TOO_LARGE: &str = "Error, decoded message length too large";
const UNDECODABLE: &[&str] = &[
    // prost's DecodeError, as tonic-prost's codec passes it on.
    "failed to decode Protobuf message",
    // A frame whose header promises more bytes than the body holds.
    "Unexpected EOF decoding stream",
    // A body without any message frame.
    "Missing request message",
];

#[derive(Clone)]
pub struct TonicStatusLayer {
    max_request_bytes: usize,
}

impl TonicStatusLayer {
    pub fn new(max_request_bytes: usize) -> Self {
        TonicStatusLayer { max_request_bytes }
    }
}

impl<S> Layer<S> for TonicStatusLayer {
    type Service = TonicStatus<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TonicStatus {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

#[derive(Clone)]
pub struct TonicStatus<S> {
    inner: S,
    max_request_bytes: usize,
}

impl<S, B, RB> Service<Request<B>> for TonicStatus<S>
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
        let limit = self.max_request_bytes;
        let rpc = request.uri().path().trim_start_matches('/').to_string();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(status) = rewritten(response.headers(), &rpc, limit) {
                // Only fails for a header value with bytes a header cannot
                // hold; the messages built here have none.
                let _ = status.add_header(response.headers_mut());
            }
            Ok(response)
        })
    }
}

/// The status to answer instead of the one in `headers`, if it is one of
/// tonic's own that this layer rewrites.
fn rewritten(headers: &HeaderMap, rpc: &str, limit: usize) -> Option<Status> {
    let code = headers.get("grpc-status")?;
    if code != "11" && code != "13" {
        return None;
    }
    // Only the two headers: Status::from_header_map copies what it is given.
    let mut status_headers = HeaderMap::with_capacity(2);
    for name in ["grpc-status", "grpc-message"] {
        if let Some(value) = headers.get(name) {
            status_headers.insert(name, value.clone());
        }
    }
    let status = Status::from_header_map(&status_headers)?;
    let message = status.message();
    let error = match status.code() {
        Code::OutOfRange if message.starts_with(TOO_LARGE) => DaemonError::request_too_large(limit),
        Code::Internal if UNDECODABLE.iter().any(|m| message.starts_with(m)) => {
            let detail = message
                .strip_prefix("failed to decode Protobuf message: ")
                .unwrap_or(message)
                .trim_end_matches('.');
            DaemonError::undecodable_request(rpc, detail)
        }
        _ => return None,
    };
    Some(error.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: Status) -> HeaderMap {
        let mut headers = HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        headers
    }

    #[test]
    fn tonics_decoding_and_size_statuses_get_grpcs_codes_and_say_what_to_do() {
        let rpc = "inferd.v1.Inference/Classify";
        let utf8 = Status::internal(
            "failed to decode Protobuf message: TextInput.text: ClassifyRequest.inputs: invalid string value: data \
             is not UTF-8 encoded",
        );
        let status = rewritten(&headers(utf8), rpc, 100).expect("rewritten");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(
                "the request to inferd.v1.Inference/Classify is not a valid protobuf message of that RPC \
                 (TextInput.text: ClassifyRequest.inputs: invalid string value: data is not UTF-8 encoded)"
            ),
            "{}",
            status.message()
        );
        let cut = Status::internal("Unexpected EOF decoding stream.");
        assert_eq!(
            rewritten(&headers(cut), rpc, 100).unwrap().code(),
            Code::InvalidArgument
        );
        let large =
            Status::out_of_range("Error, decoded message length too large: found 200 bytes, the limit is: 100 bytes");
        let status = rewritten(&headers(large), rpc, 100).expect("rewritten");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("limit of 100 bytes"), "{}", status.message());
    }

    #[test]
    fn the_handlers_own_statuses_are_left_alone() {
        let rpc = "inferd.v1.Inference/Classify";
        for status in [
            Status::internal("plugin panicked in run: failed to decode Protobuf message"),
            Status::out_of_range("something else"),
            Status::invalid_argument("failed to decode Protobuf message: x"),
        ] {
            assert!(rewritten(&headers(status), rpc, 100).is_none());
        }
        assert!(rewritten(&HeaderMap::new(), rpc, 100).is_none());
    }
}
