//! How a model's queue batches and runs requests: the daemon's options, a
//! model's overrides of them, and how the two combine. Apart from the
//! scheduler, so that the configuration and the transport can name these
//! options without depending on the scheduler.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueOptions {
    pub queue_size: usize,
    pub max_batch_size: usize,
    /// How long a request may wait in the queue for others to join its batch.
    pub max_queue_delay: Duration,
    /// LibTorch threads per operation on each instance's thread.
    pub intra_op_threads: Option<usize>,
    /// Whether a running batch may take in requests that arrive while it
    /// runs (continuous batching, for the tasks that can); off: each batch
    /// is fixed when it starts.
    pub join: bool,
    /// Whether each instance runs in a child process of its own
    /// (`isolation = "process"`), so that a crash ends only that process.
    pub isolated: bool,
}

impl QueueOptions {
    /// These options with a model's overrides applied. Unless set, the
    /// intra-op threads are the cores divided among the model's CPU
    /// instances, so that its instances do not oversubscribe the cores.
    pub fn with(self, overrides: &QueueOverrides, cpu_instances: usize) -> QueueOptions {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shared_cores = (cpu_instances > 1).then(|| (cores / cpu_instances).max(1));
        QueueOptions {
            queue_size: overrides.queue_size.unwrap_or(self.queue_size).max(1),
            max_batch_size: overrides.max_batch_size.unwrap_or(self.max_batch_size).max(1),
            max_queue_delay: overrides
                .max_queue_delay_ms
                .map_or(self.max_queue_delay, Duration::from_millis),
            intra_op_threads: overrides.intra_op_threads.or(self.intra_op_threads).or(shared_cores),
            join: self.join,
            isolated: overrides.isolated.unwrap_or(self.isolated),
        }
    }
}

/// Where a model's instances run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In the daemon's process (a crash in the plugin ends the daemon).
    #[default]
    InProcess,
    /// Each instance in a child process of its own, restarted when it dies.
    Process,
}

impl Isolation {
    pub fn parse(value: &str) -> Result<Isolation, String> {
        match value {
            "in-process" => Ok(Isolation::InProcess),
            "process" => Ok(Isolation::Process),
            other => Err(format!(
                "isolation must be \"in-process\" or \"process\", not {other:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }
}

/// One model's departures from the daemon's queue options.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueOverrides {
    pub queue_size: Option<usize>,
    pub max_batch_size: Option<usize>,
    pub max_queue_delay_ms: Option<u64>,
    pub intra_op_threads: Option<usize>,
    /// Process isolation for this model.
    pub isolated: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_zero_sizes_become_one() {
        let daemon = QueueOptions {
            queue_size: 256,
            max_batch_size: 16,
            max_queue_delay: Duration::from_millis(2),
            intra_op_threads: Some(3),
            join: true,
            isolated: false,
        };
        let overrides = QueueOverrides {
            queue_size: Some(0),
            max_batch_size: Some(4),
            max_queue_delay_ms: Some(300),
            intra_op_threads: None,
            isolated: Some(true),
        };
        let options = daemon.with(&overrides, 1);
        assert!(options.isolated);
        assert_eq!(options.queue_size, 1);
        assert_eq!(options.max_batch_size, 4);
        assert_eq!(options.max_queue_delay, Duration::from_millis(300));
        assert_eq!(options.intra_op_threads, Some(3));
        assert_eq!(daemon.with(&QueueOverrides::default(), 1), daemon);
    }

    #[test]
    fn cpu_instances_share_the_cores_unless_told_otherwise() {
        let daemon = QueueOptions {
            queue_size: 1,
            max_batch_size: 1,
            max_queue_delay: Duration::ZERO,
            intra_op_threads: None,
            join: true,
            isolated: false,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(daemon.with(&QueueOverrides::default(), 1).intra_op_threads, None);
        assert_eq!(
            daemon.with(&QueueOverrides::default(), 2).intra_op_threads,
            Some((cores / 2).max(1))
        );
        let told = QueueOverrides {
            intra_op_threads: Some(5),
            ..Default::default()
        };
        assert_eq!(daemon.with(&told, 2).intra_op_threads, Some(5));
    }
}
