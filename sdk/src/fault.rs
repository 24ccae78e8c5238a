//! A fault-injection hook, for testing only: it lets end-to-end tests make
//! any plugin built with this SDK fail a whole batch on demand, as a panic or
//! a LibTorch error would, to check that the daemon then isolates the
//! request that caused the failure.
//!
//! It is off unless the environment variable [`PANIC_MARKER_VAR`]
//! (`INFERD_FAULT_PANIC_MARKER`) is set to a non-empty string when a plugin
//! first runs a batch. When it is, a batch in which any request's encoded
//! bytes contain that string panics as a whole, before the plugin's own
//! `run` sees it; the panic is caught at the boundary like any other and
//! reported as INTERNAL, naming this hook. Never set it in production.

use std::sync::OnceLock;

use prost::Message;

use crate::proto::TaskRequest;

/// The environment variable holding the marker, read once per plugin.
pub const PANIC_MARKER_VAR: &str = "INFERD_FAULT_PANIC_MARKER";

fn marker() -> Option<&'static [u8]> {
    static MARKER: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    MARKER
        .get_or_init(|| {
            std::env::var(PANIC_MARKER_VAR)
                .ok()
                .filter(|m| !m.is_empty())
                .map(String::into_bytes)
        })
        .as_deref()
}

/// Testing hook: panics when the marker is set and some request of the batch
/// carries it (see the module's doc).
pub fn panic_if_marked(requests: &[TaskRequest]) {
    let Some(marker) = marker() else {
        return;
    };
    if let Some(i) = requests.iter().position(|r| carries(&r.encode_to_vec(), marker)) {
        panic!(
            "fault injected by the {PANIC_MARKER_VAR} testing hook: request {i} of the batch carries the marker {:?}",
            String::from_utf8_lossy(marker)
        );
    }
}

fn carries(bytes: &[u8], marker: &[u8]) -> bool {
    bytes.windows(marker.len()).any(|w| w == marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_found_anywhere_in_the_bytes() {
        assert!(carries(b"abcMARKdef", b"MARK"));
        assert!(carries(b"MARK", b"MARK"));
        assert!(!carries(b"MAR", b"MARK"));
        assert!(!carries(b"MA RK", b"MARK"));
    }
}
