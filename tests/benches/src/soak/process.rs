//! The daemon's resident memory, open file descriptors and threads, from
//! /proc.

use anyhow::{Context, Result};

#[derive(Clone, Copy, Debug)]
pub struct Resources {
    pub rss_bytes: u64,
    pub fds: usize,
    pub threads: usize,
}

impl Resources {
    pub fn of(pid: u32) -> Result<Resources> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("read {path} (is the daemon running?)"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} line in {path}"))
        };
        let fd_dir = format!("/proc/{pid}/fd");
        let fds = std::fs::read_dir(&fd_dir)
            .with_context(|| format!("read {fd_dir}"))?
            .count();
        Ok(Resources {
            rss_bytes: field("VmRSS:")? * 1024,
            fds,
            threads: field("Threads:")? as usize,
        })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_bytes as f64 / (1024.0 * 1024.0)
    }
}
