//! The soak's output: one row per report interval, a summary per task and
//! per kind of garbage, the daemon's resources, and the verdict.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::process::Resources;
use super::tally::{Interval, Tally};
use crate::percentile;

/// How far the daemon's RSS may end above its level at the end of the
/// first (warm-up) interval. By then every model has run batches of every
/// size the traffic makes, so LibTorch's and glibc's caches are about as
/// full as they get; what moves afterwards is allocator fragmentation,
/// which levels off (+7 MiB on 486 MiB over 5 minutes on 2 cores). At that
/// machine's ~750 requests a second, a leak of 64 bytes per request
/// crosses the bound within 30 minutes.
pub const RSS_GROWTH_BOUND: f64 = 0.15;

/// Fewest samples after the warm-up one for "rose at every sample" to say
/// more than chance.
const TREND_SAMPLES: usize = 4;

pub struct Row {
    pub at: Duration,
    ok: u64,
    errors: BTreeMap<String, u64>,
    abandoned: u64,
    garbage: u64,
    p50_ms: f64,
    p99_ms: f64,
    pub resources: Option<Resources>,
}

impl Row {
    pub fn new(at: Duration, mut interval: Interval, resources: Option<Resources>) -> Row {
        interval.latencies.sort();
        Row {
            at,
            ok: interval.ok,
            errors: interval.errors,
            abandoned: interval.abandoned,
            garbage: interval.garbage,
            p50_ms: percentile(&interval.latencies, 0.5),
            p99_ms: percentile(&interval.latencies, 0.99),
            resources,
        }
    }
}

pub const HEADER: &str = "  time       ok  abandoned  garbage   p50 ms   p99 ms  RSS MiB    fds  threads  errors";

fn clock(at: Duration) -> String {
    let s = at.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6} {:>8} {:>10} {:>8} {:>8.1} {:>8.1}",
            clock(self.at),
            self.ok,
            self.abandoned,
            self.garbage,
            self.p50_ms,
            self.p99_ms
        )?;
        match &self.resources {
            Some(r) => write!(f, " {:>8.1} {:>6} {:>8}", r.rss_mib(), r.fds, r.threads)?,
            None => write!(f, " {:>8} {:>6} {:>8}", "gone", "-", "-")?,
        }
        write!(f, "  {}", counts(&self.errors))
    }
}

/// Totals per task and per kind of garbage, and the daemon's resources at
/// the four moments the verdict compares.
pub fn summary(tally: &mut Tally, rows: &[Row], before: Resources, settled: Option<Resources>) {
    println!("\nvalid requests, whole run");
    println!(
        "{:<18} {:>8} {:>10} {:>8} {:>8}  errors",
        "task", "ok", "abandoned", "p50 ms", "p99 ms"
    );
    for (task, totals) in tally.tasks.iter_mut() {
        totals.latencies.sort();
        println!(
            "{:<18} {:>8} {:>10} {:>8.1} {:>8.1}  {}",
            format!("{task:?}"),
            totals.ok,
            totals.abandoned,
            percentile(&totals.latencies, 0.5),
            percentile(&totals.latencies, 0.99),
            counts(&totals.errors)
        );
    }
    for (task, totals) in &tally.tasks {
        for (code, message) in &totals.first_errors {
            println!("  {task:?} {code}, first: {message}");
        }
    }
    println!("\ngarbage, whole run");
    let mut by_what: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for ((what, code), n) in &tally.garbage {
        by_what.entry(what).or_default().insert(code.clone(), *n);
    }
    for (what, answers) in &by_what {
        println!("{what:<42} {}", counts(answers));
    }
    println!("\ndaemon");
    let warm_up = rows.first().and_then(|r| r.resources.as_ref());
    let last = rows.last().and_then(|r| r.resources.as_ref());
    let moments = [
        ("before".to_string(), Some(&before)),
        (
            format!("warm-up {}", rows.first().map(|r| clock(r.at)).unwrap_or_default()),
            warm_up,
        ),
        (
            format!("last {}", rows.last().map(|r| clock(r.at)).unwrap_or_default()),
            last,
        ),
        ("settled".to_string(), settled.as_ref()),
    ];
    print!("{:<10}", "");
    for (name, _) in &moments {
        print!("{name:>14}");
    }
    println!();
    let line = |name: &str, value: &dyn Fn(&Resources) -> String| {
        print!("{name:<10}");
        for (_, r) in &moments {
            print!("{:>14}", r.map(value).unwrap_or_else(|| "-".into()));
        }
        println!();
    };
    line("RSS MiB", &|r| format!("{:.1}", r.rss_mib()));
    line("fds", &|r| r.fds.to_string());
    line("threads", &|r| r.threads.to_string());
}

/// What went wrong, one line each; empty when the soak passed.
pub fn verdict(tally: &Tally, rows: &[Row], before: Resources, settled: Option<Resources>) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, failure) in &tally.failures {
        problems.push(format!("{what} x{}: {}", failure.count, failure.first));
    }
    for task in super::traffic::Task::ALL {
        if tally.tasks.get(&task).is_none_or(|t| t.ok == 0) {
            problems.push(format!("{task:?}: no valid request was served"));
        }
    }
    if let Some(gone) = rows.iter().find(|r| r.resources.is_none()) {
        problems.push(format!("the daemon was gone at {}", clock(gone.at)));
        return problems;
    }
    let samples: Vec<Resources> = rows.iter().filter_map(|r| r.resources).collect();
    let (Some(warm_up), Some(last)) = (samples.first(), samples.last()) else {
        return problems;
    };
    let bound = warm_up.rss_mib() * (1.0 + RSS_GROWTH_BOUND);
    if last.rss_mib() > bound {
        problems.push(format!(
            "RSS grew from {:.1} MiB after warm-up to {:.1} MiB, past the bound of {:.1} MiB (+{:.0}%)",
            warm_up.rss_mib(),
            last.rss_mib(),
            bound,
            RSS_GROWTH_BOUND * 100.0
        ));
    }
    let fds: Vec<usize> = samples.iter().map(|r| r.fds).collect();
    let threads: Vec<usize> = samples.iter().map(|r| r.threads).collect();
    for (name, series) in [("fds", fds), ("threads", threads)] {
        if series.len() > TREND_SAMPLES && series.windows(2).all(|w| w[1] > w[0]) {
            problems.push(format!("{name} rose at every sample: {series:?}"));
        }
    }
    if let Some(settled) = settled {
        // Every connection the soak opened is closed by now; files the
        // daemon holds for itself were open before the traffic.
        if settled.fds > before.fds {
            problems.push(format!(
                "{} fds once the traffic stopped, {} before it",
                settled.fds, before.fds
            ));
        }
        // Threads are started lazily (a pool per model instance on its
        // first batch), so the warm-up sample is the reference.
        if settled.threads > warm_up.threads {
            problems.push(format!(
                "{} threads once the traffic stopped, {} after warm-up",
                settled.threads, warm_up.threads
            ));
        }
    } else {
        problems.push("the daemon was gone once the traffic stopped".into());
    }
    problems
}
