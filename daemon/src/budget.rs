//! The daemon's memory budget (`--memory-budget`): the bytes its models
//! may hold together. A load reserves its estimate (the weight files, once
//! per instance) before its instances load, and is refused with
//! RESOURCE_EXHAUSTED if that does not fit; once loaded, the reservation
//! becomes what the instances report holding; an unload gives it back.
//! Without a budget, nothing is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{DaemonError, Result};

/// A size as operators write it: bytes, or a number with KB/MB/GB (powers
/// of 1000) or KiB/MiB/GiB (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write bytes or e.g. 512MiB, 8GiB, 2GB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024f64.powi(4),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use KB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = number * scale;
    if bytes < 1.0 || !bytes.is_finite() {
        return Err(format!("{text:?}: a memory budget must be at least one byte"));
    }
    Ok(bytes as u64)
}

/// Bytes in KiB, MiB or GiB, whichever reads best, for messages.
pub fn format_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB * KIB {
        format!("{:.0} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.0} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    }
}

/// The bytes of a model directory's weight files (safetensors, PyTorch
/// .bin), what its instances hold each, near enough, in float32.
pub fn weight_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.ends_with(".safetensors") || (name.ends_with(".bin") && name.starts_with("pytorch_model"))
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.len())
        .sum()
}

/// The budget and what each model holds of it, by name.
pub struct MemoryBudget {
    limit: Option<u64>,
    held: Mutex<BTreeMap<String, u64>>,
}

impl MemoryBudget {
    pub fn new(limit: Option<u64>) -> Self {
        MemoryBudget {
            limit,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets aside `bytes` for `model`, or refuses: RESOURCE_EXHAUSTED saying
    /// how much is free and who holds the rest.
    pub fn reserve(&self, model: &str, bytes: u64, how: &str) -> Result<()> {
        let mut held = self.held.lock().expect("budget lock");
        if let Some(limit) = self.limit {
            let used: u64 = held.values().sum();
            let free = limit.saturating_sub(used);
            if bytes > free {
                let holders: Vec<String> = held.iter().map(|(m, b)| format!("{m} {}", format_bytes(*b))).collect();
                return Err(DaemonError::ResourceExhausted(format!(
                    "model `{model}` needs about {} ({how}), but only {} of the {} memory budget is free{}; unload a \
                     model (Models/UnloadModel) or raise --memory-budget",
                    format_bytes(bytes),
                    format_bytes(free),
                    format_bytes(limit),
                    if holders.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} held by {})", format_bytes(used), holders.join(", "))
                    }
                )));
            }
        }
        held.insert(model.to_string(), bytes);
        Ok(())
    }

    /// Replaces `model`'s reservation by what it holds once loaded.
    pub fn settle(&self, model: &str, bytes: u64) {
        self.held.lock().expect("budget lock").insert(model.to_string(), bytes);
    }

    pub fn release(&self, model: &str) {
        self.held.lock().expect("budget lock").remove(model);
    }

    /// What is free under the limit; None without one.
    pub fn free(&self) -> Option<u64> {
        let held: u64 = self.held.lock().expect("budget lock").values().sum();
        self.limit.map(|limit| limit.saturating_sub(held))
    }

    /// (limit, bytes held) for the metrics; the limit is 0 without one.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.limit.unwrap_or(0),
            self.held.lock().expect("budget lock").values().sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units_and_nonsense_is_refused() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2 GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn a_load_past_the_budget_is_refused_saying_what_is_free_and_who_holds_the_rest() {
        let budget = MemoryBudget::new(Some(100 << 20));
        budget.reserve("a", 60 << 20, "its weights").unwrap();
        let refused = budget.reserve("b", 50 << 20, "its weights").unwrap_err().to_string();
        assert!(refused.contains("needs about 50 MiB"), "{refused}");
        assert!(
            refused.contains("only 40 MiB of the 100 MiB memory budget is free"),
            "{refused}"
        );
        assert!(refused.contains("held by a 60 MiB"), "{refused}");
        budget.settle("a", 30 << 20);
        budget.reserve("b", 50 << 20, "its weights").unwrap();
        budget.release("a");
        assert_eq!(budget.usage(), (100 << 20, 50 << 20));
        let unlimited = MemoryBudget::new(None);
        unlimited.reserve("huge", u64::MAX / 2, "its weights").unwrap();
    }
}
