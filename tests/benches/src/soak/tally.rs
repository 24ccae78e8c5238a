//! Counting what the daemon answered: per report interval, per task for the
//! whole run, and garbage by what was sent. An answer that blames the
//! server (INTERNAL, UNAVAILABLE, UNKNOWN, DATA_LOSS, or none at all) is a
//! failure whatever was sent; so is serving a request with hostile values.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::{Code, Status};

use super::traffic::Task;

/// How a request ended for its client.
pub enum Answer {
    Served(Duration),
    Refused(Status),
    /// The client left before the answer (or after a stream's first chunk).
    Left,
    /// No answer by the deadline, not even DEADLINE_EXCEEDED.
    Silent,
}

/// What was sent.
#[derive(Clone, Copy)]
pub enum Sent {
    /// A valid request (its client may leave early).
    Valid,
    RandomBytes,
    Hostile(&'static str),
}

/// Codes that say the server, not the request, was at fault.
fn blames_server(code: Code) -> bool {
    matches!(
        code,
        Code::Internal | Code::Unavailable | Code::Unknown | Code::DataLoss
    )
}

fn label(answer: &Answer) -> String {
    match answer {
        Answer::Served(_) => "Ok".into(),
        Answer::Refused(status) => format!("{:?}", status.code()),
        Answer::Left => "Left".into(),
        Answer::Silent => "NoAnswer".into(),
    }
}

/// Counts of one report interval.
#[derive(Default)]
pub struct Interval {
    pub ok: u64,
    /// Errors answered to valid requests, by code.
    pub errors: BTreeMap<String, u64>,
    pub abandoned: u64,
    pub garbage: u64,
    pub latencies: Vec<Duration>,
}

#[derive(Default)]
pub struct TaskTotals {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// The first message of each code in `errors`.
    pub first_errors: BTreeMap<String, String>,
    pub abandoned: u64,
    pub latencies: Vec<Duration>,
}

/// A kind of failure: how often, and the first message seen.
pub struct Failure {
    pub count: u64,
    pub first: String,
}

#[derive(Default)]
pub struct Tally {
    interval: Interval,
    pub tasks: BTreeMap<Task, TaskTotals>,
    /// Answers to garbage, by what was sent and the answer's code.
    pub garbage: BTreeMap<(&'static str, String), u64>,
    /// Keyed by what was sent and the answer ("Classify: Internal").
    pub failures: BTreeMap<String, Failure>,
}

impl Tally {
    pub fn record(&mut self, task: Task, sent: Sent, answer: Answer) {
        let failed = match (&sent, &answer) {
            (_, Answer::Silent) => true,
            (_, Answer::Refused(status)) => blames_server(status.code()),
            (Sent::Hostile(_), Answer::Served(_)) => true,
            _ => false,
        };
        if failed {
            let what = match sent {
                Sent::Valid => format!("{task:?}"),
                Sent::RandomBytes => format!("random bytes to {task:?}"),
                Sent::Hostile(what) => what.to_string(),
            };
            let first = match &answer {
                Answer::Refused(status) => status.message().to_string(),
                Answer::Served(_) => "served".into(),
                Answer::Silent => "no answer by the deadline".into(),
                Answer::Left => String::new(),
            };
            self.failures
                .entry(format!("{what}: {}", label(&answer)))
                .or_insert(Failure { count: 0, first })
                .count += 1;
        }
        match sent {
            Sent::Valid => {
                let totals = self.tasks.entry(task).or_default();
                match answer {
                    Answer::Served(latency) => {
                        self.interval.ok += 1;
                        self.interval.latencies.push(latency);
                        totals.ok += 1;
                        totals.latencies.push(latency);
                    }
                    Answer::Left => {
                        self.interval.abandoned += 1;
                        totals.abandoned += 1;
                    }
                    Answer::Refused(_) | Answer::Silent => {
                        let code = label(&answer);
                        *self.interval.errors.entry(code.clone()).or_default() += 1;
                        *totals.errors.entry(code.clone()).or_default() += 1;
                        if let Answer::Refused(status) = &answer {
                            totals
                                .first_errors
                                .entry(code)
                                .or_insert_with(|| status.message().to_string());
                        }
                    }
                }
            }
            Sent::RandomBytes | Sent::Hostile(_) => {
                self.interval.garbage += 1;
                let what = match sent {
                    Sent::Hostile(what) => what,
                    _ => "random bytes",
                };
                *self.garbage.entry((what, label(&answer))).or_default() += 1;
            }
        }
    }

    /// The counts since the last call.
    pub fn take_interval(&mut self) -> Interval {
        std::mem::take(&mut self.interval)
    }
}
