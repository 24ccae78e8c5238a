//! The device pool: the CPU and the CUDA devices LibTorch sees, and where
//! each model instance goes. Placement picks the least-loaded device of the
//! requested kind (by number of instances placed there).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{DaemonError, Result};

/// Sets how many threads LibTorch uses for one operation started from the
/// calling thread.
pub fn set_intra_op_threads(threads: usize) {
    tch::set_num_threads(threads.max(1) as i32);
}

pub struct DevicePool {
    names: Vec<String>,
    default: String,
    instances: Mutex<HashMap<String, usize>>,
}

impl DevicePool {
    /// Enumerates devices. `default` is "cpu", "cuda", "cuda:N" or "auto"
    /// (CUDA when present, else CPU).
    pub fn discover(default: &str) -> anyhow::Result<Self> {
        let cuda = tch::Cuda::device_count().max(0) as usize;
        Self::new(cuda, default)
    }

    fn new(cuda_devices: usize, default: &str) -> anyhow::Result<Self> {
        let mut names = vec!["cpu".to_string()];
        names.extend((0..cuda_devices).map(|i| format!("cuda:{i}")));
        let default = match default {
            "auto" if cuda_devices > 0 => "cuda".to_string(),
            "auto" => "cpu".to_string(),
            other => other.to_string(),
        };
        let pool = DevicePool {
            names,
            default,
            instances: Mutex::new(HashMap::new()),
        };
        pool.expand(&pool.default)
            .map_err(|e| anyhow::anyhow!("default device: {e}"))?;
        Ok(pool)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The concrete devices a name stands for ("cuda" = every CUDA device).
    fn expand(&self, name: &str) -> Result<Vec<String>> {
        let name = name.trim();
        let matches: Vec<String> = match name {
            "cuda" | "gpu" => self.names.iter().filter(|n| n.starts_with("cuda:")).cloned().collect(),
            _ => self.names.iter().filter(|n| *n == name).cloned().collect(),
        };
        if matches.is_empty() {
            return Err(DaemonError::InvalidArgument(format!(
                "device `{name}` is not available (devices: {})",
                self.names.join(", ")
            )));
        }
        Ok(matches)
    }

    /// Chooses a device for each of `count` instances among `requested`
    /// (the pool's default when empty), least-loaded first.
    pub fn place(&self, requested: &[String], count: usize) -> Result<Vec<String>> {
        let mut candidates = Vec::new();
        let requested: Vec<&str> = if requested.is_empty() {
            vec![self.default.as_str()]
        } else {
            requested.iter().map(|s| s.as_str()).collect()
        };
        for name in requested {
            for device in self.expand(name)? {
                if !candidates.contains(&device) {
                    candidates.push(device);
                }
            }
        }
        let mut load = self.instances.lock().expect("device pool lock");
        let mut placed = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let device = candidates
                .iter()
                .min_by_key(|d| load.get(*d).copied().unwrap_or(0))
                .expect("at least one candidate")
                .clone();
            *load.entry(device.clone()).or_default() += 1;
            placed.push(device);
        }
        Ok(placed)
    }

    /// Returns devices placed by `place` once their instances are gone.
    pub fn release(&self, devices: &[String]) {
        let mut load = self.instances.lock().expect("device pool lock");
        for d in devices {
            if let Some(n) = load.get_mut(d) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_on_the_least_loaded_device_and_refuses_missing_ones() {
        let pool = DevicePool::new(2, "cpu").unwrap();
        assert_eq!(pool.place(&[], 1).unwrap(), vec!["cpu"]);
        let placed = pool.place(&["cuda".into()], 3).unwrap();
        assert_eq!(placed, vec!["cuda:0", "cuda:1", "cuda:0"]);
        assert_eq!(pool.place(&["cuda".into()], 1).unwrap(), vec!["cuda:1"]);
        pool.release(&placed);
        assert!(pool.place(&["cuda:7".into()], 1).is_err());
        assert!(DevicePool::new(0, "cuda").is_err());
        assert_eq!(DevicePool::new(0, "auto").unwrap().place(&[], 1).unwrap(), vec!["cpu"]);
    }
}
