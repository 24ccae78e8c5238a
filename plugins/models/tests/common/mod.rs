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

/// A `.f32` reference file: little-endian float32 values.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
