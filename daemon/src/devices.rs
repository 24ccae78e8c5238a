//! The device pool: the CPU and the CUDA devices LibTorch sees, and where
//! each model instance goes. Placement picks, among the requested devices,
//! the one with the fewest instances, and among those the one with the most
//! free memory. A load first reserves what its instances will hold on
//! each device (see [`DevicePool::reserve`]) and is refused when that is
//! more than the device has free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::budget::format_bytes;
use crate::error::{DaemonError, Result};
use crate::torch;

pub struct DevicePool {
    names: Vec<String>,
    default: String,
    instances: Mutex<HashMap<String, usize>>,
    /// Free bytes of a device now, when it can be told.
    free_memory: fn(&str) -> Option<u64>,
    /// Bytes set aside by loads under way, by device: not yet allocated,
    /// so not yet missing from what the device reports free.
    reserved: Arc<Mutex<HashMap<String, u64>>>,
}

/// What a load set aside on its devices; given back when dropped (once the
/// instances have loaded, the device reports their memory as used).
pub struct Reservation {
    bytes: Vec<(String, u64)>,
    reserved: Arc<Mutex<HashMap<String, u64>>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().expect("reservations lock");
        for (device, bytes) in &self.bytes {
            if let Some(held) = reserved.get_mut(device) {
                *held = held.saturating_sub(*bytes);
            }
        }
    }
}

impl DevicePool {
    /// Enumerates devices. `default` is "cpu", "cuda", "cuda:N" or "auto"
    /// (CUDA when present, else CPU).
    pub fn discover(default: &str) -> anyhow::Result<Self> {
        Self::new(torch::cuda_device_count(), default)
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
            free_memory,
            reserved: Arc::new(Mutex::new(HashMap::new())),
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
        let free: HashMap<String, u64> = if candidates.len() > 1 {
            candidates
                .iter()
                .map(|d| (d.clone(), (self.free_memory)(d).unwrap_or(0)))
                .collect()
        } else {
            HashMap::new()
        };
        let mut load = self.instances.lock().expect("device pool lock");
        let mut placed = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let device = candidates
                .iter()
                .min_by_key(|d| {
                    let instances = load.get(*d).copied().unwrap_or(0);
                    (instances, std::cmp::Reverse(free.get(*d).copied().unwrap_or(0)))
                })
                .expect("at least one candidate")
                .clone();
            *load.entry(device.clone()).or_default() += 1;
            placed.push(device);
        }
        Ok(placed)
    }

    /// Sets aside `per_instance` bytes on each of `devices` (as `place`
    /// chose them, a device once per instance), or refuses the load with
    /// RESOURCE_EXHAUSTED saying what the device has free: its free memory
    /// now (cudaMemGetInfo; MemAvailable for the CPU) less what other loads
    /// under way set aside. `how` says how the need was reckoned.
    pub fn reserve(&self, devices: &[String], per_instance: u64, model: &str, how: &str) -> Result<Reservation> {
        let mut need: Vec<(String, u64)> = Vec::new();
        for device in devices {
            match need.iter_mut().find(|(d, _)| d == device) {
                Some((_, bytes)) => *bytes = bytes.saturating_add(per_instance),
                None => need.push((device.clone(), per_instance)),
            }
        }
        let mut reserved = self.reserved.lock().expect("reservations lock");
        for (device, bytes) in &need {
            let Some(free) = (self.free_memory)(device) else {
                continue;
            };
            let free = free.saturating_sub(reserved.get(device).copied().unwrap_or(0));
            if *bytes > free {
                let instances = devices.iter().filter(|d| *d == device).count();
                return Err(DaemonError::ResourceExhausted(format!(
                    "model `{model}` needs about {} on {device} ({how}{}), but {device} has {} free; unload a model \
                     there, load this one on another device (LoadModel.devices), in a smaller dtype \
                     (options.dtype) or with a smaller max_batch_size",
                    format_bytes(*bytes),
                    if instances > 1 {
                        format!(", x {instances} instances")
                    } else {
                        String::new()
                    },
                    format_bytes(free),
                )));
            }
        }
        for (device, bytes) in &need {
            *reserved.entry(device.clone()).or_default() += bytes;
        }
        Ok(Reservation {
            bytes: need,
            reserved: self.reserved.clone(),
        })
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

/// Free bytes of `device`: MemAvailable for the CPU; for CUDA devices,
/// cudaMemGetInfo through the CUDA runtime LibTorch has loaded.
fn free_memory(device: &str) -> Option<u64> {
    if device == "cpu" {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kb: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        return Some(kb * 1024);
    }
    let index: i32 = device.strip_prefix("cuda:")?.parse().ok()?;
    // On its own thread: cudaSetDevice changes the calling thread's device.
    std::thread::spawn(move || cuda_free_memory(index)).join().ok()?
}

fn cuda_free_memory(index: i32) -> Option<u64> {
    type SetDevice = unsafe extern "C" fn(i32) -> i32;
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    // SAFETY: these are the CUDA runtime's own sonames, already loaded with
    // libtorch_cuda when CUDA devices exist; the two functions have these C
    // signatures in every CUDA runtime since 4.0, and return 0 on success.
    // The library stays loaded for the life of the process (LibTorch uses it).
    static RUNTIME: std::sync::OnceLock<Option<libloading::Library>> = std::sync::OnceLock::new();
    unsafe {
        let runtime = RUNTIME
            .get_or_init(|| {
                ["libcudart.so.13", "libcudart.so.12", "libcudart.so"]
                    .iter()
                    .find_map(|name| libloading::Library::new(*name).ok())
            })
            .as_ref()?;
        let set_device: libloading::Symbol<SetDevice> = runtime.get(b"cudaSetDevice").ok()?;
        let mem_get_info: libloading::Symbol<MemGetInfo> = runtime.get(b"cudaMemGetInfo").ok()?;
        if set_device(index) != 0 {
            return None;
        }
        let (mut free, mut total) = (0usize, 0usize);
        (mem_get_info(&mut free, &mut total) == 0).then_some(free as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn among_equally_loaded_devices_the_one_with_most_free_memory_wins() {
        let mut pool = DevicePool::new(3, "cuda").unwrap();
        pool.free_memory = |d| match d {
            "cuda:0" => Some(2 << 30),
            "cuda:1" => Some(9 << 30),
            "cuda:2" => Some(5 << 30),
            _ => None,
        };
        // By free memory first, then instances spread before doubling up.
        assert_eq!(pool.place(&[], 1).unwrap(), vec!["cuda:1"]);
        assert_eq!(pool.place(&[], 2).unwrap(), vec!["cuda:2", "cuda:0"]);
        assert_eq!(
            pool.place(&["cuda:0".into(), "cuda:2".into()], 1).unwrap(),
            vec!["cuda:2"]
        );
    }

    #[test]
    fn a_load_that_does_not_fit_its_device_is_refused_saying_what_is_free() {
        let mut pool = DevicePool::new(2, "cuda").unwrap();
        pool.free_memory = |d| match d {
            "cuda:0" => Some(10 << 30),
            "cuda:1" => Some(3 << 30),
            _ => None,
        };
        let two = ["cuda:0".to_string(), "cuda:0".to_string()];
        let held = pool.reserve(&two, 4 << 30, "a", "weights").unwrap();
        // 8 GiB set aside on cuda:0 until a's instances have loaded.
        let refused = pool
            .reserve(&["cuda:0".into()], 3 << 30, "b", "weights 3 GiB in float32")
            .err()
            .expect("refused")
            .to_string();
        assert!(
            refused.contains("model `b` needs about 3.0 GiB on cuda:0 (weights 3 GiB in float32)"),
            "{refused}"
        );
        assert!(refused.contains("cuda:0 has 2.0 GiB free"), "{refused}");
        let refused = pool
            .reserve(&two, 4 << 30, "c", "weights")
            .err()
            .expect("refused")
            .to_string();
        assert!(refused.contains("x 2 instances"), "{refused}");
        drop(held);
        let _b = pool.reserve(&["cuda:0".into()], 3 << 30, "b", "weights").unwrap();
        assert!(pool.reserve(&["cuda:1".into()], 4 << 30, "d", "weights").is_err());
        // A device whose free memory cannot be told refuses nothing.
        let _cpu = pool.reserve(&["cpu".into()], u64::MAX, "e", "weights").unwrap();
    }

    #[test]
    fn the_cpu_reports_its_available_memory() {
        assert!(free_memory("cpu").unwrap_or(0) > 0);
        assert_eq!(free_memory("tpu:0"), None);
    }

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
