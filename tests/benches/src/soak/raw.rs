//! Calls with bytes that no generated client would send: a real method's
//! path with a body of random bytes.

use std::time::Duration;

use inferd_tests::RawCodec;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

use super::traffic::Task;

/// Sends `body` to `task`'s method and reads the whole answer. Random
/// bytes now and then decode as a valid message (unknown fields are
/// skipped), so an answer is not an error by itself.
pub async fn send(channel: Channel, task: Task, body: Vec<u8>, timeout: Duration) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let mut request = tonic::Request::new(body);
    request.set_timeout(timeout);
    let path = PathAndQuery::from_static(task.path());
    if task == Task::GenerateStream {
        let mut stream = grpc.server_streaming(request, path, RawCodec).await?.into_inner();
        while stream.message().await?.is_some() {}
        Ok(())
    } else {
        grpc.unary(request, path, RawCodec).await.map(drop)
    }
}
