//! Prometheus metrics: per-model request counts by status code, latency and
//! batch-size histograms, failed batches, and gauges read live at scrape
//! time from whatever holds the models (queue depth, loaded models, their
//! memory: see [`Scraped`], which the registry implements). Served as text
//! format 0.0.4 on `--metrics-listen`, apart from the gRPC port.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in seconds.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the batch-size buckets.
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A cumulative histogram with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

#[derive(Default)]
struct HistogramState {
    /// Observations per bucket (not cumulative), plus one for +Inf.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            state: Mutex::new(HistogramState {
                buckets: vec![0; bounds.len() + 1],
                ..Default::default()
            }),
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.partition_point(|b| *b < value);
        let mut state = self.state.lock().expect("histogram lock");
        state.buckets[bucket] += 1;
        state.sum += value;
        state.count += 1;
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let state = self.state.lock().expect("histogram lock");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&state.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", state.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", state.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", state.count);
    }
}

/// The metrics of one model name; kept across unload and reload, as
/// Prometheus counters must only grow.
pub struct ModelMetrics {
    /// Finished requests by gRPC status code name ("Ok", "DeadlineExceeded", ...).
    requests: Mutex<BTreeMap<String, u64>>,
    /// From arrival in the queue to the start of the request's batch.
    pub queue_seconds: Histogram,
    /// One batch's run on an instance.
    pub inference_seconds: Histogram,
    /// From the RPC's arrival to its answer.
    pub request_seconds: Histogram,
    /// Requests per batch run (a failed batch's requests run again one by
    /// one: each of those runs counts too).
    pub batch_size: Histogram,
    /// Batches of several requests that failed as a whole, whose requests
    /// were then run again one at a time.
    pub failed_batches: AtomicU64,
    /// Requests taken into a batch already running (continuous batching).
    pub joined_requests: AtomicU64,
    /// Restarts of the model's process after it died (process isolation).
    pub restarts: AtomicU64,
    /// Times the model was loaded on first use (`load = "lazy"`), again
    /// after an eviction included.
    pub lazy_loads: AtomicU64,
    /// Times the model was unloaded to make room for another under the
    /// memory budget (least recently used first).
    pub evictions: AtomicU64,
}

impl ModelMetrics {
    fn new() -> Self {
        ModelMetrics {
            requests: Mutex::new(BTreeMap::new()),
            queue_seconds: Histogram::new(SECONDS),
            inference_seconds: Histogram::new(SECONDS),
            request_seconds: Histogram::new(SECONDS),
            batch_size: Histogram::new(BATCH_SIZES),
            failed_batches: AtomicU64::new(0),
            joined_requests: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            lazy_loads: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Counts one finished request.
    pub fn finished(&self, code: tonic::Code) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry(format!("{code:?}"))
            .or_default() += 1;
    }
}

/// What the metrics page reads at scrape time from whatever holds the
/// models (the registry): the counters, and the live figures of each model.
pub trait Scraped: Send + Sync + 'static {
    fn metrics(&self) -> &Metrics;
    fn gauges(&self) -> Vec<ModelGauges>;
    /// The memory budget and the bytes held of it (0 and the total
    /// without a budget).
    fn memory(&self) -> (u64, u64) {
        (0, self.gauges().iter().map(|g| g.memory_bytes).sum())
    }
}

/// The live figures of one model at scrape time.
pub struct ModelGauges {
    pub name: String,
    pub ready: bool,
    pub memory_bytes: u64,
    pub queue_depth: usize,
    pub instances: usize,
}

#[derive(Default)]
pub struct Metrics {
    models: Mutex<BTreeMap<String, Arc<ModelMetrics>>>,
    /// Requests admitted and not yet answered, over all models.
    pub in_flight: AtomicUsize,
    /// Requests refused before a model was found for them (unknown model
    /// or task), by code.
    unrouted: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// The metrics of `model`, created on first use.
    pub fn model(&self, model: &str) -> Arc<ModelMetrics> {
        self.models
            .lock()
            .expect("metrics lock")
            .entry(model.to_string())
            .or_insert_with(|| Arc::new(ModelMetrics::new()))
            .clone()
    }

    /// Forgets the metrics of `model` if no request of it was ever counted
    /// (a model that failed to load), so that its name leaves the page.
    pub fn forget_unused(&self, model: &str) {
        let mut models = self.models.lock().expect("metrics lock");
        if models
            .get(model)
            .is_some_and(|m| m.requests.lock().expect("metrics lock").is_empty())
        {
            models.remove(model);
        }
    }

    /// Counts a request refused before it reached a model.
    pub fn unrouted(&self, code: tonic::Code) {
        *self
            .unrouted
            .lock()
            .expect("metrics lock")
            .entry(format!("{code:?}"))
            .or_default() += 1;
    }

    /// The text exposition format.
    pub fn render(&self, gauges: &[ModelGauges], in_flight_limit: usize, memory: (u64, u64)) -> String {
        let mut out = String::new();
        let models = self.models.lock().expect("metrics lock").clone();

        header(
            &mut out,
            "inferd_requests_total",
            "counter",
            "Finished requests by model and gRPC status code.",
        );
        for (model, m) in &models {
            for (code, n) in m.requests.lock().expect("metrics lock").iter() {
                let _ = writeln!(
                    out,
                    "inferd_requests_total{{model=\"{}\",code=\"{code}\"}} {n}",
                    escape(model)
                );
            }
        }
        for (code, n) in self.unrouted.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "inferd_requests_total{{model=\"\",code=\"{code}\"}} {n}");
        }

        type Pick = fn(&ModelMetrics) -> &Histogram;
        let histograms: [(&str, &str, Pick); 4] = [
            (
                "inferd_queue_duration_seconds",
                "Time requests waited in their model's queue.",
                |m| &m.queue_seconds,
            ),
            (
                "inferd_inference_duration_seconds",
                "Time one batch took on a model instance.",
                |m| &m.inference_seconds,
            ),
            (
                "inferd_request_duration_seconds",
                "Time from a request's arrival to its answer.",
                |m| &m.request_seconds,
            ),
            ("inferd_batch_size", "Requests per batch run.", |m| &m.batch_size),
        ];
        for (name, help, pick) in histograms {
            header(&mut out, name, "histogram", help);
            for (model, m) in &models {
                pick(m).render(&mut out, name, &format!("model=\"{}\"", escape(model)));
            }
        }
        type Count = fn(&ModelMetrics) -> &AtomicU64;
        let counters: [(&str, &str, Count); 5] = [
            (
                "inferd_failed_batches_total",
                "Batches of several requests that failed as a whole; their requests ran again one at a time.",
                |m| &m.failed_batches,
            ),
            (
                "inferd_joined_requests_total",
                "Requests that joined a batch already running (continuous batching) instead of waiting for it to end.",
                |m| &m.joined_requests,
            ),
            (
                "inferd_model_restarts_total",
                "Restarts of a model's process after it died (isolation = \"process\").",
                |m| &m.restarts,
            ),
            (
                "inferd_model_lazy_loads_total",
                "Loads of a load = \"lazy\" model on its first request (again after an eviction).",
                |m| &m.lazy_loads,
            ),
            (
                "inferd_model_evictions_total",
                "Unloads of an idle lazy model, least recently used first, to make room under --memory-budget.",
                |m| &m.evictions,
            ),
        ];
        for (name, help, count) in counters {
            header(&mut out, name, "counter", help);
            for (model, m) in &models {
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{}\"}} {}",
                    escape(model),
                    count(m).load(Ordering::Relaxed)
                );
            }
        }

        header(
            &mut out,
            "inferd_queue_depth",
            "gauge",
            "Requests waiting in the model's queue.",
        );
        for g in gauges.iter().filter(|g| g.ready) {
            let _ = writeln!(
                out,
                "inferd_queue_depth{{model=\"{}\"}} {}",
                escape(&g.name),
                g.queue_depth
            );
        }
        header(
            &mut out,
            "inferd_model_memory_bytes",
            "gauge",
            "Parameters and buffers held by the model's instances.",
        );
        for g in gauges.iter().filter(|g| g.ready) {
            let _ = writeln!(
                out,
                "inferd_model_memory_bytes{{model=\"{}\"}} {}",
                escape(&g.name),
                g.memory_bytes
            );
        }
        header(
            &mut out,
            "inferd_model_instances",
            "gauge",
            "Instances (worker threads) of the model.",
        );
        for g in gauges.iter().filter(|g| g.ready) {
            let _ = writeln!(
                out,
                "inferd_model_instances{{model=\"{}\"}} {}",
                escape(&g.name),
                g.instances
            );
        }
        header(&mut out, "inferd_models_loaded", "gauge", "Models ready to serve.");
        let _ = writeln!(
            out,
            "inferd_models_loaded {}",
            gauges.iter().filter(|g| g.ready).count()
        );
        header(
            &mut out,
            "inferd_in_flight_requests",
            "gauge",
            "Requests admitted and not yet answered.",
        );
        let _ = writeln!(
            out,
            "inferd_in_flight_requests {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "inferd_in_flight_limit",
            "gauge",
            "Most requests admitted at once (--max-in-flight).",
        );
        let _ = writeln!(out, "inferd_in_flight_limit {in_flight_limit}");
        header(
            &mut out,
            "inferd_memory_budget_bytes",
            "gauge",
            "Bytes all models may hold together (--memory-budget; 0: no limit).",
        );
        let _ = writeln!(out, "inferd_memory_budget_bytes {}", memory.0);
        header(
            &mut out,
            "inferd_memory_reserved_bytes",
            "gauge",
            "Bytes of the budget held by loaded models and reserved by loading ones.",
        );
        let _ = writeln!(out, "inferd_memory_reserved_bytes {}", memory.1);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    models: Arc<dyn Scraped>,
    in_flight_limit: usize,
    tls: Option<Arc<crate::tls::Reloadable>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let models = models.clone();
        let acceptor = tls.as_ref().map(|tls| tls.acceptor(b"http/1.1"));
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    if let Some(stream) = crate::tls::handshake(&acceptor, stream, peer).await {
                        serve_connection(stream, peer, models, in_flight_limit).await;
                    }
                }
                None => serve_connection(stream, peer, models, in_flight_limit).await,
            }
        });
    }
}

/// HTTP/1.1 on one connection, plain or TLS.
async fn serve_connection<IO>(io: IO, peer: SocketAddr, models: Arc<dyn Scraped>, in_flight_limit: usize)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let models = models.clone();
        async move { Ok::<_, Infallible>(answer(&request, &*models, in_flight_limit)) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await
    {
        tracing::debug!(%peer, "metrics connection: {e}");
    }
}

fn answer<B>(request: &Request<B>, models: &dyn Scraped, in_flight_limit: usize) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    };
    match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            models
                .metrics()
                .render(&models.gauges(), in_flight_limit, models.memory()),
        ),
        (&hyper::Method::GET, _) => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET is served\n".into(),
        ),
    }
}

/// Binds the metrics address (so a taken port fails at start-up).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_label_values_escaped() {
        let h = Histogram::new(BATCH_SIZES);
        for v in [1.0, 3.0, 3.0, 1000.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "model=\"m\"");
        assert!(out.contains("x_bucket{model=\"m\",le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{model=\"m\",le=\"2\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{model=\"m\",le=\"4\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{model=\"m\",le=\"256\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{model=\"m\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{model=\"m\"} 1007\n"), "{out}");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    struct OneModel(Metrics);

    impl Scraped for OneModel {
        fn metrics(&self) -> &Metrics {
            &self.0
        }
        fn gauges(&self) -> Vec<ModelGauges> {
            vec![ModelGauges {
                name: "m".into(),
                ready: true,
                memory_bytes: 1234,
                queue_depth: 5,
                instances: 2,
            }]
        }
    }

    #[tokio::test]
    async fn the_page_shows_the_live_figures_and_counters_of_what_holds_the_models() {
        use http_body_util::BodyExt;
        let models = OneModel(Metrics::default());
        let m = models.metrics().model("m");
        m.failed_batches.fetch_add(1, Ordering::Relaxed);
        m.joined_requests.fetch_add(3, Ordering::Relaxed);
        m.finished(tonic::Code::Internal);
        let request = Request::builder().uri("/metrics").body(()).unwrap();
        let response = answer(&request, &models, 7);
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        for line in [
            "inferd_queue_depth{model=\"m\"} 5\n",
            "inferd_model_memory_bytes{model=\"m\"} 1234\n",
            "inferd_model_instances{model=\"m\"} 2\n",
            "inferd_models_loaded 1\n",
            "inferd_failed_batches_total{model=\"m\"} 1\n",
            "inferd_joined_requests_total{model=\"m\"} 3\n",
            "inferd_requests_total{model=\"m\",code=\"Internal\"} 1\n",
            "inferd_in_flight_limit 7\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        let elsewhere = Request::builder().uri("/other").body(()).unwrap();
        assert_eq!(answer(&elsewhere, &models, 7).status(), StatusCode::NOT_FOUND);
    }
}
