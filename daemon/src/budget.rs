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

/// Values an image model holds per processed input pixel at its widest
/// layer, at most: a ResNet stem's 64 channels at half the resolution are
/// 16; ViT's hidden states and feed-forward, 8 x hidden values per 16 x 16
/// patch, 24 to 32 (hidden 768 to 1024).
const VALUES_PER_PIXEL: u64 = 32;

/// The pixels of an image processed at about its own size (GLPN's processor
/// only rounds its sides to a multiple of 32): a 640 x 480 photo.
const PHOTO_PIXELS: u64 = 640 * 480;

/// The pixels of one image as the preprocessor_config.json in `dir`
/// processes it (its `size`: a side, height and width, or the shortest and
/// longest edges); None without an image processor there.
fn processed_pixels(dir: &Path) -> Option<u64> {
    let bytes =
        inferd_sdk::files::read_model_file(&dir.join("preprocessor_config.json"), inferd_sdk::files::CONFIG_LIMIT)
            .ok()?;
    let processor: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let side = |v: &serde_json::Value, name: &str| v.get(name).and_then(|n| n.as_u64()).map(|n| n.min(1 << 16));
    match processor.get("size") {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n.min(1 << 16).pow(2)),
        Some(size @ serde_json::Value::Object(_)) => match (
            side(size, "height"),
            side(size, "width"),
            side(size, "shortest_edge"),
            side(size, "longest_edge"),
        ) {
            (Some(h), Some(w), _, _) => Some(h * w),
            (_, _, Some(short), Some(long)) => Some(short * long),
            (_, _, Some(short), None) => Some(short * short),
            (_, _, None, Some(long)) => Some(long * long),
            _ => Some(PHOTO_PIXELS),
        },
        _ if processor.get("size_divisor").is_some() => Some(PHOTO_PIXELS),
        _ => None,
    }
}

/// What one instance of a model will hold on its device, estimated from
/// its files before it loads: its weights in the dtype it will compute in,
/// and the activations of the largest batch it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceEstimate {
    pub weights: u64,
    pub activations: u64,
    /// Bytes per value of the dtype assumed.
    pub value_bytes: u64,
}

impl InstanceEstimate {
    /// The model in `dir`, whose weight files hold `files` bytes (see
    /// [`weight_bytes`]), converted from the checkpoint's dtype
    /// (config.json's `torch_dtype`, float32 if absent) to `dtype` ("" for
    /// auto, counted as float32, the widest auto picks), plus `max_batch`
    /// inputs of the model's longest length through one layer: hidden
    /// states and feed-forward activations (8 x hidden each position) and
    /// one head's attention scores per head (heads x length each
    /// position), at most four times the weights: config.json's sizes are
    /// not yet checked against the checkpoint here, and a config.json that
    /// no checkpoint matches is for those checks to refuse, naming its
    /// field, not for an estimate made of its sizes. An image model (whose
    /// config.json names no length) counts `VALUES_PER_PIXEL` values per
    /// pixel of `max_batch` images at the size its preprocessor_config.json
    /// processes them to, at most four times the weights too. Others (a
    /// CTC speech model, SpeechT5) count their weights only.
    pub fn of(dir: &Path, files: u64, dtype: &str, max_batch: usize) -> InstanceEstimate {
        let config: serde_json::Value =
            inferd_sdk::files::read_model_file(&dir.join("config.json"), inferd_sdk::files::CONFIG_LIMIT)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
        let bytes_of = |name: &str| match name {
            "float16" | "bfloat16" => 2,
            "float64" => 8,
            _ => 4,
        };
        let stored = config
            .get("torch_dtype")
            .or_else(|| config.get("dtype"))
            .and_then(|d| d.as_str())
            .map_or(4, bytes_of);
        let value_bytes = bytes_of(dtype);
        let weights = files / stored * value_bytes;
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| config.get(*n).and_then(|v| v.as_u64()))
                .filter(|&v| v > 0)
        };
        let hidden = first(&["hidden_size", "d_model", "n_embd", "dim"]);
        let length = first(&["max_position_embeddings", "n_positions", "max_source_positions"]).map(|l| l.min(4096));
        let heads = first(&["num_attention_heads", "n_head", "encoder_attention_heads"]).unwrap_or(1);
        let batch = max_batch.max(1) as u64;
        // (preprocessor_config.json is read only for a model without a length)
        let values = match (hidden, length) {
            (Some(hidden), Some(length)) => length.saturating_mul(hidden.min(1 << 20) * 8 + heads.min(1024) * length),
            _ => processed_pixels(dir).map_or(0, |pixels| pixels.saturating_mul(VALUES_PER_PIXEL)),
        };
        let activations = batch
            .saturating_mul(values)
            .saturating_mul(value_bytes)
            .min(weights.saturating_mul(4));
        InstanceEstimate {
            weights,
            activations,
            value_bytes,
        }
    }

    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.activations)
    }

    /// How the total was reckoned, for messages.
    pub fn describe(&self, max_batch: usize) -> String {
        let dtype = if self.value_bytes == 2 { "16-bit" } else { "float32" };
        if self.activations == 0 {
            format!("weights {} in {dtype}", format_bytes(self.weights))
        } else {
            format!(
                "weights {} in {dtype} + activations of a batch of {max_batch} {}",
                format_bytes(self.weights),
                format_bytes(self.activations)
            )
        }
    }
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
    fn an_instance_is_estimated_in_the_dtype_it_will_run_in_with_its_largest_batch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"torch_dtype": "float16", "hidden_size": 8, "max_position_embeddings": 16, "num_attention_heads": 2}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("model.safetensors"), vec![0u8; 100_000]).unwrap();
        // 50000 float16 values, as float32 (auto counts so) and as bfloat16.
        let auto = InstanceEstimate::of(dir.path(), weight_bytes(dir.path()), "", 4);
        assert_eq!(auto.weights, 200_000);
        assert_eq!(auto.activations, 4 * 16 * (8 * 8 + 2 * 16) * 4);
        let half = InstanceEstimate::of(dir.path(), weight_bytes(dir.path()), "bfloat16", 4);
        assert_eq!((half.weights, half.activations), (100_000, auto.activations / 2));
        assert_eq!(half.total(), 100_000 + auto.activations / 2);
        assert!(
            half.describe(4).contains("activations of a batch of 4"),
            "{}",
            half.describe(4)
        );
        // Sizes no checkpoint this small has: at most four times the weights.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"hidden_size": 1000000000, "max_position_embeddings": 4096}"#,
        )
        .unwrap();
        assert_eq!(
            InstanceEstimate::of(dir.path(), weight_bytes(dir.path()), "float32", 16).activations,
            400_000
        );
        // No sizes in config.json: the weights alone.
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let plain = InstanceEstimate::of(dir.path(), weight_bytes(dir.path()), "float32", 4);
        assert_eq!((plain.weights, plain.activations), (100_000, 0));
        // An image model: values per processed pixel, as its processor
        // sizes the images (capped at four times the weights).
        let image = |size: &str, dtype: &str| {
            std::fs::write(dir.path().join("preprocessor_config.json"), size).unwrap();
            InstanceEstimate::of(dir.path(), weight_bytes(dir.path()), dtype, 2).activations
        };
        assert_eq!(
            image(r#"{"size": {"height": 4, "width": 6}}"#, "float32"),
            2 * 24 * VALUES_PER_PIXEL * 4
        );
        assert_eq!(image(r#"{"size": 5}"#, "bfloat16"), 2 * 25 * VALUES_PER_PIXEL * 2);
        assert_eq!(
            image(r#"{"size": {"shortest_edge": 3, "longest_edge": 7}}"#, "float32"),
            2 * 21 * VALUES_PER_PIXEL * 4
        );
        assert_eq!(image(r#"{"size_divisor": 32}"#, "float32"), 400_000);
        // A speech model's feature extractor has no size.
        assert_eq!(image(r#"{"feature_size": 1, "sampling_rate": 16000}"#, "float32"), 0);
    }

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
