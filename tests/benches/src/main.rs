//! inferd-bench: a load generator for the inferd daemon. Each benchmark
//! subcommand drives one RPC with a given concurrency and prints one JSON
//! line of figures (throughput, latency percentiles); tests/benches/run.sh
//! runs them against the daemon and the Python reference in one invocation.
//! `soak` runs mixed and hostile traffic over every task for a bounded time
//! (tests/benches/soak.sh).

mod soak;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use inferd_proto::v1::inference_client::InferenceClient;
use inferd_proto::v1::{
    AudioInput, ClassifyRequest, DetectObjectsRequest, EstimateDepthRequest, GenerateRequest, ImageInput,
    SegmentImageRequest, SummarizeRequest, SynthesizeRequest, TextInput, TranscribeRequest,
};
use serde_json::json;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(name = "inferd-bench", about = "Load generator for inferd")]
struct Cli {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// The model benchmarked (not used by `soak`, which names one per task).
    #[arg(long)]
    model: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Concurrent greedy generation streams of a fixed length.
    Generate {
        #[arg(long, default_value = "The quick brown fox jumps over the lazy dog")]
        prompt: String,
        #[arg(long, default_value_t = 128)]
        new_tokens: u32,
        /// Concurrent streams.
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Rounds (each round runs `streams` generations at once).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// Streamed greedy generations arriving as a Poisson process: `requests`
    /// requests at `rate` per second on average, each of a length drawn
    /// uniformly from `min_tokens..=max_tokens` (seeded, so a run repeats).
    /// Prints the time to first token (p50, p99), the aggregate tokens per
    /// second, and the arrival times and lengths used (for the reference).
    Arrivals {
        #[arg(long, default_value = "The quick brown fox jumps over the lazy dog")]
        prompt: String,
        /// Mean requests per second.
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 40)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        min_tokens: u32,
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Summaries arriving as a Poisson process (continuous batching): the
    /// articles of a file (one per line) in turn, `requests` requests at
    /// `rate` per second, each exactly `min_tokens..=max_tokens` new tokens
    /// (seeded) with the model's own beam search. Prints the latency (p50,
    /// p99), the wait before a request's decoding started (the responses'
    /// `inferd-queue-ms` header: mean, p50, p99), the aggregate tokens per
    /// second, and the plan (for the reference).
    SummaryArrivals {
        #[arg(long)]
        payload: std::path::PathBuf,
        /// Mean requests per second.
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 16)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        min_tokens: u32,
        #[arg(long, default_value_t = 96)]
        max_tokens: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Summaries of the articles in a file (one per line), each its own
    /// request, all sent at once, with the model's own settings; the
    /// seconds per round and the last round's summaries are printed.
    Summarize {
        #[arg(long)]
        payload: std::path::PathBuf,
        /// Timed runs (after one warm-up).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// Transcriptions of one audio file, `requests` separate requests in
    /// flight at once, greedy by default; the seconds per round, the
    /// requests' latencies and the last round's texts are printed.
    Transcribe {
        #[arg(long)]
        audio: std::path::PathBuf,
        /// Requests sent at once (each round).
        #[arg(long, default_value_t = 1)]
        requests: usize,
        /// Timed rounds (after one warm-up request).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Empty: the model's, or detected.
        #[arg(long, default_value = "")]
        language: String,
        #[arg(long, default_value_t = 1)]
        num_beams: u32,
        #[arg(long)]
        max_new_tokens: Option<u32>,
        /// The daemon's metrics endpoint (HOST:PORT): report the batches the
        /// model ran and its time per batch during the timed rounds.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Image segmentation of one image, `requests` separate requests in
    /// flight at once; the seconds per round, the requests' latencies and
    /// the last round's labels are printed.
    Segment {
        #[arg(long)]
        image: std::path::PathBuf,
        /// Requests sent at once (each round).
        #[arg(long, default_value_t = 1)]
        requests: usize,
        /// Timed rounds (after one warm-up request).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// The daemon's metrics endpoint (HOST:PORT): report the batches the
        /// model ran and its time per batch during the timed rounds.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Text to speech of one text by the model's `bench` speaker,
    /// `requests` separate requests in flight at once; the seconds per
    /// round, the requests' latencies and the last round's audio lengths
    /// (seconds) are printed.
    Speak {
        #[arg(long)]
        text: String,
        #[arg(long, default_value = "bench")]
        speaker: String,
        /// generate_speech's maxlenratio (the bench model never stops on
        /// its own).
        #[arg(long)]
        maxlenratio: Option<f32>,
        /// Requests sent at once (each round).
        #[arg(long, default_value_t = 1)]
        requests: usize,
        /// Timed rounds (after one warm-up request).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// The daemon's metrics endpoint (HOST:PORT): report the batches the
        /// model ran and its time per batch during the timed rounds.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Depth estimation of one image, `requests` separate requests in
    /// flight at once; the seconds per round, the requests' latencies and
    /// the last round's depth ranges (min and max) are printed.
    Depth {
        #[arg(long)]
        image: std::path::PathBuf,
        /// Requests sent at once (each round).
        #[arg(long, default_value_t = 1)]
        requests: usize,
        /// Timed rounds (after one warm-up request).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// The daemon's metrics endpoint (HOST:PORT): report the batches the
        /// model ran and its time per batch during the timed rounds.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Object detection on one image, `requests` separate requests in
    /// flight at once; the seconds per round, the requests' latencies and
    /// the last round's objects (label and box) are printed.
    Detect {
        #[arg(long)]
        image: std::path::PathBuf,
        /// Requests sent at once (each round).
        #[arg(long, default_value_t = 1)]
        requests: usize,
        /// Timed rounds (after one warm-up request).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        /// The daemon's metrics endpoint (HOST:PORT): report the batches the
        /// model ran and its time per batch during the timed rounds.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Classification requests (one text each) at a given concurrency.
    Classify {
        /// File with one text per line (the payloads, used round-robin).
        #[arg(long)]
        payload: std::path::PathBuf,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Total requests (split over the workers).
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Texts per request (consecutive payload lines): with 32 at
        /// concurrency 1, every batch the daemon runs has 32 sequences.
        #[arg(long, default_value_t = 1)]
        inputs_per_request: usize,
        /// The daemon's metrics endpoint (HOST:PORT): report the time its
        /// model instance spent per batch during the run.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Mixed traffic over every task, with clients leaving early and
    /// garbage, for a bounded time; a row of figures per interval and a
    /// verdict (non-zero exit on failure).
    Soak(Box<soak::Options>),
}

/// `requests` copies of one call in flight at once, `rounds` times, after
/// one warm-up call: the figures such a benchmark prints (`bench`, seconds
/// per round, latency p50 and max; with `metrics`, the batches the model ran
/// per round and its seconds per batch), and under `key` each call's answer
/// in the last round.
async fn concurrent_rounds<F, Fut>(
    (bench, key): (&str, &str),
    channel: &Channel,
    model: &str,
    (requests, rounds): (usize, usize),
    metrics: Option<&str>,
    call: F,
) -> Result<serde_json::Value>
where
    F: Fn(InferenceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value>> + Send + 'static,
{
    call(InferenceClient::new(channel.clone())).await?;
    let before = metrics.map(|m| inference_seconds(m, model)).transpose()?;
    let rounds = rounds.max(1);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..rounds {
        let calls: Vec<_> = (0..requests)
            .map(|_| {
                let answer = call(InferenceClient::new(channel.clone()));
                tokio::spawn(async move {
                    let t = Instant::now();
                    let answer = answer.await?;
                    anyhow::Ok((t.elapsed(), answer))
                })
            })
            .collect();
        answers.clear();
        for call in calls {
            let (latency, answer) = call.await??;
            latencies.push(latency);
            answers.push(answer);
        }
    }
    let seconds = started.elapsed().as_secs_f64() / rounds as f64;
    latencies.sort();
    let mut figures = json!({"bench": bench, "requests": requests, "seconds": seconds,
           "p50_ms": percentile(&latencies, 0.5), "max_ms": percentile(&latencies, 1.0)});
    figures[key] = json!(answers);
    if let (Some(m), Some((sum0, count0))) = (metrics, before) {
        let (sum1, count1) = inference_seconds(m, model)?;
        figures["batches"] = json!((count1 - count0) / rounds as f64);
        figures["seconds_per_batch"] = json!((sum1 - sum0) / (count1 - count0).max(1.0));
    }
    Ok(figures)
}

/// Sum and count of the model's batch inference-time histogram, from the
/// daemon's metrics endpoint.
fn inference_seconds(metrics: &str, model: &str) -> Result<(f64, f64)> {
    histogram(metrics, "inferd_inference_duration_seconds", model)
}

/// Sum and count of the model's histogram `name`, from the daemon's
/// metrics endpoint.
fn histogram(metrics: &str, name: &str, model: &str) -> Result<(f64, f64)> {
    let text = metrics_text(metrics)?;
    let value = |series: &str| -> f64 {
        let series = format!("{name}_{series}{{model=\"{model}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok((value("sum"), value("count")))
}

/// The daemon's metrics page.
fn metrics_text(metrics: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics).with_context(|| format!("connect {metrics}"))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: inferd\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

async fn connect(addr: &str) -> Result<Channel> {
    Channel::from_shared(addr.to_string())?
        .connect()
        .await
        .with_context(|| format!("connect {addr}"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Soak(options) = cli.command {
        let passed = soak::run(&cli.addr, *options).await?;
        std::process::exit(if passed { 0 } else { 1 });
    }
    let model = cli.model.context("--model is required: the model to benchmark")?;
    let channel = connect(&cli.addr).await?;
    match cli.command {
        Command::Generate {
            prompt,
            new_tokens,
            streams,
            rounds,
        } => {
            let request = GenerateRequest {
                model: model.clone(),
                inputs: vec![prompt],
                max_new_tokens: Some(new_tokens),
                min_new_tokens: Some(new_tokens),
                do_sample: Some(false),
                ..Default::default()
            };
            // Warm-up.
            InferenceClient::new(channel.clone()).generate(request.clone()).await?;
            let started = Instant::now();
            let mut tokens = 0u64;
            for _ in 0..rounds {
                let mut tasks = Vec::new();
                for _ in 0..streams {
                    let mut client = InferenceClient::new(channel.clone());
                    let request = request.clone();
                    tasks.push(tokio::spawn(async move { client.generate(request).await }));
                }
                for task in tasks {
                    let response = task.await??.into_inner();
                    tokens += response.results[0].sequences[0].generated_tokens as u64;
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"bench": "generate", "streams": streams, "tokens": tokens, "seconds": seconds,
                       "tokens_per_s": tokens as f64 / seconds})
            );
        }
        Command::Arrivals {
            prompt,
            rate,
            requests,
            min_tokens,
            max_tokens,
            seed,
        } => {
            let plan = poisson_plan(rate, requests, min_tokens, max_tokens, seed);
            let request = |tokens: u32| GenerateRequest {
                model: model.clone(),
                inputs: vec![prompt.clone()],
                max_new_tokens: Some(tokens),
                min_new_tokens: Some(tokens),
                do_sample: Some(false),
                ..Default::default()
            };
            // Warm-up, and one stream alone for the time of a decoding step.
            InferenceClient::new(channel.clone()).generate(request(8)).await?;
            let mut alone = InferenceClient::new(channel.clone())
                .generate_stream(request(64))
                .await?
                .into_inner();
            let mut stamps = Vec::new();
            while let Some(message) = alone.message().await? {
                if !message.token_ids.is_empty() {
                    stamps.push(Instant::now());
                }
            }
            let step_s = (stamps[stamps.len() - 1] - stamps[1]).as_secs_f64() / (stamps.len() - 2) as f64;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for &(at, tokens) in &plan {
                let mut client = InferenceClient::new(channel.clone());
                let request = request(tokens);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until((started + Duration::from_secs_f64(at)).into()).await;
                    let sent = Instant::now();
                    let mut stream = client.generate_stream(request).await?.into_inner();
                    let (mut first, mut last, mut count) = (None, sent, 0u64);
                    while let Some(message) = stream.message().await? {
                        if !message.token_ids.is_empty() {
                            first.get_or_insert_with(Instant::now);
                            last = Instant::now();
                            count += message.token_ids.len() as u64;
                        }
                    }
                    let first = first.unwrap_or(sent);
                    // The time between its tokens: a decoding step under this load.
                    let step = (last - first).as_secs_f64() / count.saturating_sub(1).max(1) as f64;
                    anyhow::Ok(((first - sent).as_secs_f64(), step, count))
                }));
            }
            let mut ttft = Vec::new();
            let mut steps = Vec::new();
            let mut tokens = 0u64;
            for task in tasks {
                let (first, step, count) = task.await??;
                ttft.push(first);
                steps.push(step);
                tokens += count;
            }
            steps.sort_by(f64::total_cmp);
            let step_under_load_s = steps[steps.len() / 2];
            let seconds = started.elapsed().as_secs_f64();
            ttft.sort_by(f64::total_cmp);
            let pick = |q: f64| ttft[((ttft.len() - 1) as f64 * q).round() as usize];
            println!(
                "{}",
                json!({"bench": "arrivals", "rate": rate, "requests": requests, "tokens": tokens,
                       "seconds": seconds, "tokens_per_s": tokens as f64 / seconds,
                       "ttft_p50_s": pick(0.5), "ttft_p99_s": pick(0.99), "step_s": step_s,
                       "step_under_load_s": step_under_load_s,
                       "plan": plan})
            );
        }
        Command::SummaryArrivals {
            payload,
            rate,
            requests,
            min_tokens,
            max_tokens,
            seed,
        } => {
            let text = std::fs::read_to_string(&payload).with_context(|| format!("read {}", payload.display()))?;
            let articles: Vec<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect();
            let plan = poisson_plan(rate, requests, min_tokens, max_tokens, seed);
            let request = |k: usize, tokens: u32| SummarizeRequest {
                model: model.clone(),
                inputs: vec![articles[k % articles.len()].clone()],
                min_length: Some(tokens + 1),
                max_new_tokens: Some(tokens),
                ..Default::default()
            };
            InferenceClient::new(channel.clone()).summarize(request(0, 8)).await?;
            // Alone: the prefill (encoder and first step: a one-token summary)
            // and a decoding step (what 32 more tokens add), best of three.
            let alone = |tokens: u32| {
                let (channel, request) = (channel.clone(), request(0, tokens));
                async move {
                    let mut best = f64::INFINITY;
                    for _ in 0..3 {
                        let sent = Instant::now();
                        InferenceClient::new(channel.clone()).summarize(request.clone()).await?;
                        best = best.min(sent.elapsed().as_secs_f64());
                    }
                    anyhow::Ok(best)
                }
            };
            let prefill_s = alone(1).await?;
            let step_s = (alone(33).await? - prefill_s) / 32.0;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (k, &(at, tokens)) in plan.iter().enumerate() {
                let mut client = InferenceClient::new(channel.clone());
                let request = request(k, tokens);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until((started + Duration::from_secs_f64(at)).into()).await;
                    let sent = Instant::now();
                    let response = client.summarize(request).await?;
                    let waited_ms: f64 = response
                        .metadata()
                        .get("inferd-queue-ms")
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .context("no inferd-queue-ms header")?;
                    let sent_at = (sent - started).as_secs_f64();
                    anyhow::Ok((sent_at, sent.elapsed().as_secs_f64(), waited_ms / 1e3))
                }));
            }
            let (mut latency, mut waits, mut steps, mut spans) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (task, &(_, tokens)) in tasks.into_iter().zip(&plan) {
                let (sent_at, took, waited) = task.await??;
                latency.push(took);
                waits.push(waited);
                spans.push((sent_at, waited));
                // Its decoding steps under this load: what its answer took
                // past the wait and a prefill, over its tokens after the first.
                steps.push((took - waited - prefill_s) / f64::from(tokens.max(2) - 1));
            }
            steps.sort_by(f64::total_cmp);
            let step_under_load_s = steps[steps.len() / 2];
            // Each wait less the time other requests' prefills (each taken as
            // long as one alone, from when it was taken in) ran during it:
            // what it waited for decoding steps and scheduling.
            let mut beyond: Vec<f64> = spans
                .iter()
                .enumerate()
                .map(|(i, &(sent, waited))| {
                    let others: Vec<(f64, f64)> = spans
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, &(s, w))| (s + w, s + w + prefill_s))
                        .collect();
                    waited - covered(sent, sent + waited, others)
                })
                .collect();
            beyond.sort_by(f64::total_cmp);
            let seconds = started.elapsed().as_secs_f64();
            latency.sort_by(f64::total_cmp);
            waits.sort_by(f64::total_cmp);
            let at = |sorted: &[f64], q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
            let pick = |q: f64| at(&latency, q);
            let tokens: u64 = plan.iter().map(|&(_, n)| u64::from(n)).sum();
            println!(
                "{}",
                json!({"bench": "summary-arrivals", "rate": rate, "requests": requests, "tokens": tokens,
                       "seconds": seconds, "tokens_per_s": tokens as f64 / seconds,
                       "latency_p50_s": pick(0.5), "latency_p99_s": pick(0.99),
                       "wait_mean_s": waits.iter().sum::<f64>() / waits.len().max(1) as f64,
                       "wait_p50_s": at(&waits, 0.5), "wait_p99_s": at(&waits, 0.99),
                       "prefill_s": prefill_s, "step_s": step_s, "step_under_load_s": step_under_load_s,
                       "wait_beyond_prefills_p99_s": at(&beyond, 0.99),
                       "plan": plan})
            );
        }
        Command::Summarize { payload, rounds } => {
            let text = std::fs::read_to_string(&payload).with_context(|| format!("read {}", payload.display()))?;
            let articles: Vec<String> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect();
            let summarize_all = || {
                let (channel, model) = (channel.clone(), model.clone());
                let calls: Vec<_> = articles
                    .iter()
                    .map(|article| {
                        let mut client = InferenceClient::new(channel.clone());
                        let request = SummarizeRequest {
                            model: model.clone(),
                            inputs: vec![article.clone()],
                            ..Default::default()
                        };
                        tokio::spawn(async move { client.summarize(request).await })
                    })
                    .collect();
                async move {
                    let mut summaries = Vec::new();
                    for call in calls {
                        let response = call.await??.into_inner();
                        summaries.push(response.results[0].summaries[0].summary_text.clone());
                    }
                    anyhow::Ok(summaries)
                }
            };
            summarize_all().await?;
            let started = Instant::now();
            let mut summaries = Vec::new();
            for _ in 0..rounds.max(1) {
                summaries = summarize_all().await?;
            }
            let seconds = started.elapsed().as_secs_f64() / rounds.max(1) as f64;
            println!(
                "{}",
                json!({"bench": "summarize", "articles": articles.len(), "seconds": seconds, "summaries": summaries})
            );
        }
        Command::Transcribe {
            audio,
            requests,
            rounds,
            language,
            num_beams,
            max_new_tokens,
            metrics,
        } => {
            let data = std::fs::read(&audio).with_context(|| format!("read {}", audio.display()))?;
            let request = TranscribeRequest {
                model: model.clone(),
                inputs: vec![AudioInput { data }],
                language,
                num_beams: Some(num_beams),
                max_new_tokens,
                ..Default::default()
            };
            let figures = concurrent_rounds(
                ("transcribe", "texts"),
                &channel,
                &model,
                (requests, rounds),
                metrics.as_deref(),
                move |mut client| {
                    let request = request.clone();
                    async move {
                        let response = client.transcribe(request).await?.into_inner();
                        anyhow::Ok(json!(response.results[0].text))
                    }
                },
            )
            .await?;
            println!("{figures}");
        }
        Command::Detect {
            image,
            requests,
            rounds,
            threshold,
            metrics,
        } => {
            let data = std::fs::read(&image).with_context(|| format!("read {}", image.display()))?;
            let request = DetectObjectsRequest {
                model: model.clone(),
                inputs: vec![ImageInput { data }],
                threshold: Some(threshold),
            };
            let figures = concurrent_rounds(
                ("detect", "objects"),
                &channel,
                &model,
                (requests, rounds),
                metrics.as_deref(),
                move |mut client| {
                    let request = request.clone();
                    async move {
                        let response = client.detect_objects(request).await?.into_inner();
                        let objects: Vec<_> = response.results[0]
                            .objects
                            .iter()
                            .map(|o| {
                                let b = o.r#box.unwrap_or_default();
                                json!({"label": o.label, "box": [b.xmin, b.ymin, b.xmax, b.ymax]})
                            })
                            .collect();
                        anyhow::Ok(json!(objects))
                    }
                },
            )
            .await?;
            println!("{figures}");
        }
        Command::Segment {
            image,
            requests,
            rounds,
            metrics,
        } => {
            let data = std::fs::read(&image).with_context(|| format!("read {}", image.display()))?;
            let request = SegmentImageRequest {
                model: model.clone(),
                inputs: vec![ImageInput { data }],
                ..Default::default()
            };
            let figures = concurrent_rounds(
                ("segment", "labels"),
                &channel,
                &model,
                (requests, rounds),
                metrics.as_deref(),
                move |mut client| {
                    let request = request.clone();
                    async move {
                        let response = client.segment_image(request).await?.into_inner();
                        let labels: Vec<&str> = response.results[0].segments.iter().map(|s| s.label.as_str()).collect();
                        anyhow::Ok(json!(labels))
                    }
                },
            )
            .await?;
            println!("{figures}");
        }
        Command::Speak {
            text,
            speaker,
            maxlenratio,
            requests,
            rounds,
            metrics,
        } => {
            let request = SynthesizeRequest {
                model: model.clone(),
                inputs: vec![text],
                speaker,
                maxlenratio,
                ..Default::default()
            };
            let figures = concurrent_rounds(
                ("speak", "durations"),
                &channel,
                &model,
                (requests, rounds),
                metrics.as_deref(),
                move |mut client| {
                    let request = request.clone();
                    async move {
                        let response = client.synthesize(request).await?.into_inner();
                        anyhow::Ok(json!(response.results[0].duration_s))
                    }
                },
            )
            .await?;
            println!("{figures}");
        }
        Command::Depth {
            image,
            requests,
            rounds,
            metrics,
        } => {
            let data = std::fs::read(&image).with_context(|| format!("read {}", image.display()))?;
            let request = EstimateDepthRequest {
                model: model.clone(),
                inputs: vec![ImageInput { data }],
                png16: false,
            };
            let figures = concurrent_rounds(
                ("depth", "ranges"),
                &channel,
                &model,
                (requests, rounds),
                metrics.as_deref(),
                move |mut client| {
                    let request = request.clone();
                    async move {
                        let response = client.estimate_depth(request).await?.into_inner();
                        let values = &response.results[0].predicted_depth;
                        let (min, max) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        });
                        anyhow::Ok(json!([min, max]))
                    }
                },
            )
            .await?;
            println!("{figures}");
        }
        Command::Classify {
            payload,
            concurrency,
            requests,
            inputs_per_request,
            metrics,
        } => {
            let texts: Vec<String> = std::fs::read_to_string(&payload)
                .with_context(|| format!("read {}", payload.display()))?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect();
            anyhow::ensure!(!texts.is_empty(), "{} has no lines", payload.display());
            let request = |i: usize| ClassifyRequest {
                model: model.clone(),
                inputs: (0..inputs_per_request.max(1))
                    .map(|k| TextInput {
                        text: texts[(i * inputs_per_request.max(1) + k) % texts.len()].clone(),
                        text_pair: None,
                    })
                    .collect(),
                ..Default::default()
            };
            InferenceClient::new(channel.clone()).classify(request(0)).await?;
            let before = match &metrics {
                Some(m) => Some(inference_seconds(m, &model)?),
                None => None,
            };
            let started = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..concurrency {
                let mut client = InferenceClient::new(channel.clone());
                let mine: Vec<ClassifyRequest> = (w..requests).step_by(concurrency).map(request).collect();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(mine.len());
                    let mut failures = 0usize;
                    for r in mine {
                        let t = Instant::now();
                        match client.classify(r).await {
                            Ok(_) => latencies.push(t.elapsed()),
                            Err(_) => failures += 1,
                        }
                    }
                    (latencies, failures)
                }));
            }
            let mut latencies = Vec::new();
            let mut failures = 0;
            for task in tasks {
                let (l, f) = task.await?;
                latencies.extend(l);
                failures += f;
            }
            let seconds = started.elapsed().as_secs_f64();
            latencies.sort();
            let mut figures = json!({"bench": "classify", "concurrency": concurrency, "requests": latencies.len(),
                   "inputs_per_request": inputs_per_request, "failures": failures, "seconds": seconds,
                   "rps": latencies.len() as f64 / seconds,
                   "p50_ms": percentile(&latencies, 0.5), "p95_ms": percentile(&latencies, 0.95),
                   "p99_ms": percentile(&latencies, 0.99)});
            if let (Some(m), Some((sum0, count0))) = (&metrics, before) {
                let (sum1, count1) = inference_seconds(m, &model)?;
                figures["batches"] = json!(count1 - count0);
                figures["seconds_per_batch"] = json!((sum1 - sum0) / (count1 - count0).max(1.0));
            }
            println!("{figures}");
        }
        Command::Soak(_) => unreachable!("the soak returned above"),
    }
    Ok(())
}

/// `count` arrival times (seconds from the start) of a Poisson process of
/// `rate` per second, each with a length uniform in `min..=max`, from a
/// seeded generator (xorshift64*), so that every run and the reference
/// replay the same load.
/// How much of [start, end] the intervals cover (overlaps counted once).
fn covered(start: f64, end: f64, mut intervals: Vec<(f64, f64)>) -> f64 {
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut total, mut reached) = (0.0, start);
    for (a, b) in intervals {
        let (a, b) = (a.max(reached), b.min(end));
        if b > a {
            total += b - a;
            reached = b;
        }
    }
    total
}

fn poisson_plan(rate: f64, count: usize, min: u32, max: u32, seed: u64) -> Vec<(f64, u32)> {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut at = 0.0;
    (0..count)
        .map(|_| {
            at += -(1.0 - next()).ln() / rate;
            let tokens = min + ((max - min + 1) as f64 * next()) as u32;
            (at, tokens.min(max))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::covered;

    #[test]
    fn coverage_counts_overlaps_once_and_only_inside() {
        let near = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        near(covered(0.0, 10.0, vec![]), 0.0);
        near(covered(0.0, 10.0, vec![(2.0, 4.0), (3.0, 5.0)]), 3.0);
        near(covered(1.0, 3.0, vec![(-1.0, 2.0), (2.5, 9.0), (20.0, 30.0)]), 1.5);
        near(covered(0.0, 1.0, vec![(0.5, 0.6), (0.0, 0.2)]), 0.3);
    }
}
