//! The soak: mixed traffic over every task for a bounded time, from many
//! clients at once, some of which leave mid-request or send garbage; a row
//! of figures per interval (answers, latency, the daemon's memory, file
//! descriptors and threads) and a verdict at the end. tests/benches/soak.sh
//! starts a daemon with a model for every task and runs it.

mod process;
mod raw;
mod report;
mod tally;
mod traffic;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use inferd_proto::v1::inference_client::InferenceClient;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status, TimeoutExpired};

use process::Resources;
use report::Row;
use tally::{Answer, Sent, Tally};
use traffic::{Hostile, Media, Models, Request, Task, HOSTILE};

/// How long past its deadline a request may stay unanswered before it
/// counts as a hang.
const GRACE: Duration = Duration::from_secs(10);

/// Quiet time after the traffic before the last sample: longer than the
/// 10 s a Tokio blocking thread idles before it exits.
const SETTLE: Duration = Duration::from_secs(15);

/// Longest a client waits before leaving a unary call.
const MAX_LEAVE_MS: u64 = 200;

#[derive(clap::Args)]
pub struct Options {
    /// How long the traffic runs.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Clients, each with its own connection and one request at a time.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Requests whose client leaves early: a unary call after 0-200 ms, a
    /// stream after its first chunk; half of them close their connection.
    #[arg(long, default_value_t = 10.0)]
    disconnect_percent: f64,
    /// Requests that are garbage: half random bytes to a real method, half
    /// a real message with values the daemon must refuse.
    #[arg(long, default_value_t = 5.0)]
    garbage_percent: f64,
    /// The daemon's process id: its RSS and threads from /proc/PID/status,
    /// its file descriptors from /proc/PID/fd.
    #[arg(long)]
    pid: u32,
    /// Seconds between rows; the first row is the warm-up sample the
    /// verdict compares the last one with.
    #[arg(long, default_value_t = 60)]
    report_every_secs: u64,
    /// Deadline sent with every request.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// The fixtures written by tests/fixtures/make_fixtures.py (images and
    /// audio are read from there).
    #[arg(long, default_value = "target/fixtures")]
    fixtures: PathBuf,
    /// Seed of the traffic's choices (each client adds its index).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    models: Models,
}

/// SplitMix64: enough randomness to mix traffic, reproducible from --seed.
pub struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// What a call's result says. tonic ends a call whose deadline passed with
/// CANCELLED "Timeout expired"; the daemon answers DEADLINE_EXCEEDED a little
/// before the deadline, so that means it did not answer at all.
fn answer_of(result: Result<(), Status>, started: Instant) -> Answer {
    match result {
        Ok(()) => Answer::Served(started.elapsed()),
        Err(status) if status.code() == Code::Cancelled && status.message() == TimeoutExpired(()).to_string() => {
            Answer::Silent
        }
        Err(status) => Answer::Refused(status),
    }
}

/// What every client shares.
struct Soak {
    addr: String,
    options: Options,
    media: Media,
    tally: Mutex<Tally>,
    stop: AtomicBool,
}

impl Soak {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.options.timeout_secs)
    }

    /// Waits for a call's answer, at most its deadline and the grace.
    async fn answer(&self, call: impl Future<Output = Result<(), Status>>) -> Answer {
        let started = Instant::now();
        match tokio::time::timeout(self.timeout() + GRACE, call).await {
            Ok(result) => answer_of(result, started),
            Err(_) => Answer::Silent,
        }
    }

    fn record(&self, task: Task, sent: Sent, answer: Answer) {
        self.tally.lock().expect("tally lock").record(task, sent, answer);
    }

    /// One client: a request at a time until the soak stops, reconnecting
    /// after it closed its connection to leave.
    async fn client(self: Arc<Self>, mut rng: Rng) {
        let mut connection: Option<Channel> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let channel = match &connection {
                Some(channel) => channel.clone(),
                None => match crate::connect(&self.addr).await {
                    Ok(channel) => connection.insert(channel).clone(),
                    Err(e) => {
                        // Counted against a task drawn as a request's would be.
                        let status = Status::unavailable(format!("{e:#}"));
                        self.record(*rng.pick(&Task::ALL), Sent::Valid, Answer::Refused(status));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            let percent = rng.below(10_000) as f64 / 100.0;
            if percent < self.options.garbage_percent {
                self.garbage(channel, &mut rng).await;
            } else if percent < self.options.garbage_percent + self.options.disconnect_percent {
                if self.leave(channel, &mut rng).await {
                    connection = None;
                }
            } else {
                self.valid(channel, &mut rng).await;
            }
        }
    }

    /// A valid request, answered in full.
    async fn valid(&self, channel: Channel, rng: &mut Rng) {
        let task = *rng.pick(&Task::ALL);
        let request = Request::good(task, &self.options.models, &self.media, rng);
        let mut client = InferenceClient::new(channel);
        let answer = self.answer(request.send(&mut client, self.timeout())).await;
        self.record(task, Sent::Valid, answer);
    }

    /// A valid request its client leaves early; true when the client also
    /// closes its connection.
    async fn leave(&self, channel: Channel, rng: &mut Rng) -> bool {
        let task = *rng.pick(&Task::ALL);
        let close = rng.chance(0.5);
        let mut client = InferenceClient::new(channel);
        let answer = if task == Task::GenerateStream {
            let request = Request::long_stream(&self.options.models, rng);
            match self.answer(traffic::first_chunk(&mut client, request)).await {
                Answer::Served(_) => Answer::Left,
                other => other,
            }
        } else {
            let request = Request::good(task, &self.options.models, &self.media, rng);
            let after = Duration::from_millis(rng.below(MAX_LEAVE_MS + 1));
            let started = Instant::now();
            match tokio::time::timeout(after, request.send(&mut client, self.timeout())).await {
                Ok(result) => answer_of(result, started),
                Err(_) => Answer::Left,
            }
        };
        self.record(task, Sent::Valid, answer);
        close
    }

    /// Random bytes to a real method, or a real message with values the
    /// daemon must refuse.
    async fn garbage(&self, channel: Channel, rng: &mut Rng) {
        if rng.chance(0.5) {
            let task = *rng.pick(&Task::ALL);
            let length = 1 + rng.below(256) as usize;
            let body = rng.bytes(length);
            let answer = self.answer(raw::send(channel, task, body, self.timeout())).await;
            self.record(task, Sent::RandomBytes, answer);
        } else {
            let Hostile { what, build } = rng.pick(HOSTILE);
            let request = build(&self.options.models, &self.media, rng);
            let task = request.task();
            let mut client = InferenceClient::new(channel);
            let answer = self.answer(request.send(&mut client, self.timeout())).await;
            self.record(task, Sent::Hostile(what), answer);
        }
    }
}

/// Runs the soak against the daemon at `addr`; false when the verdict is
/// a failure.
pub async fn run(addr: &str, options: Options) -> Result<bool> {
    let every = Duration::from_secs(options.report_every_secs.max(1));
    let length = Duration::from_secs_f64(options.minutes * 60.0);
    anyhow::ensure!(
        length >= 2 * every,
        "--minutes {} is shorter than two report intervals of {} s: the verdict compares the samples after them",
        options.minutes,
        every.as_secs()
    );
    anyhow::ensure!(
        options.disconnect_percent + options.garbage_percent <= 100.0,
        "--disconnect-percent and --garbage-percent add up to more than 100"
    );
    let before = Resources::of(options.pid)?;
    let media = Media::read(&options.fixtures)?;
    println!(
        "soak: {} for {} min, {} clients, {}% leaving early, {}% garbage, a row every {} s; daemon pid {}",
        addr,
        options.minutes,
        options.concurrency,
        options.disconnect_percent,
        options.garbage_percent,
        every.as_secs(),
        options.pid
    );
    let pid = options.pid;
    let soak = Arc::new(Soak {
        addr: addr.to_string(),
        media,
        tally: Mutex::default(),
        stop: AtomicBool::new(false),
        options,
    });
    let started = Instant::now();
    let mut clients: Vec<_> = (0..soak.options.concurrency)
        .map(|i| tokio::spawn(soak.clone().client(Rng(soak.options.seed.wrapping_add(i as u64)))))
        .collect();

    println!("{}", report::HEADER);
    let end = started + length;
    let mut rows = Vec::new();
    let mut next = started + every;
    loop {
        tokio::time::sleep_until(next.min(end)).await;
        let resources = Resources::of(pid).ok();
        let finished = Instant::now() >= end || resources.is_none();
        if finished {
            // Every request in flight ends by its deadline and the grace.
            soak.stop.store(true, Ordering::Relaxed);
            for client in clients.drain(..) {
                client.await?;
            }
        }
        let interval = soak.tally.lock().expect("tally lock").take_interval();
        let row = Row::new(started.elapsed(), interval, resources);
        println!("{row}");
        rows.push(row);
        if finished {
            break;
        }
        next += every;
    }

    // With every client gone, the daemon should give back what the load
    // took: connections, and threads started for it.
    tokio::time::sleep(SETTLE).await;
    let settled = Resources::of(pid).ok();
    let mut tally = soak.tally.lock().expect("tally lock");
    report::summary(&mut tally, &rows, before, settled);
    let problems = report::verdict(&tally, &rows, before, settled);
    println!();
    if problems.is_empty() {
        println!(
            "verdict: PASS (no server-side errors, no hostile request served; RSS within +{:.0}% of the warm-up sample; fds back to their level before the traffic, threads to their level after warm-up, neither rising at every sample)",
            report::RSS_GROWTH_BOUND * 100.0
        );
    } else {
        println!("verdict: FAIL");
        for problem in &problems {
            println!("  {problem}");
        }
    }
    Ok(problems.is_empty())
}
