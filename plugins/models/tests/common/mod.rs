//! What the integration tests of inferd-models share: where the fixtures
//! are (built by scripts/test.sh) and how their raw tensors are stored.

#![allow(dead_code)] // Each test uses what it needs.

use std::path::{Path, PathBuf};

/// The fixture directory: $INFERD_FIXTURES, else target/fixtures.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("INFERD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    assert!(
        dir.join("STAMP").is_file(),
        "fixtures missing at {}: run scripts/test.sh",
        dir.display()
    );
    dir
}

/// A reference JSON file under references/.
pub fn reference(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("references").join(name)).unwrap()).unwrap()
}

/// A JSON array of integers (a shape).
pub fn shape(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect()
}

/// The `.f32` file a reference entry names in its "file" field.
pub fn named_f32(v: &serde_json::Value) -> Vec<f32> {
    read_f32(&fixtures().join(v["file"].as_str().unwrap()))
}

/// The largest difference, relative to the value's size where it is over 1.
pub fn worst(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths");
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0f32, f32::max)
}

/// A `.f32` reference file: little-endian float32 values.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
