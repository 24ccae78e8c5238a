//! Checking a SentencePiece `precompiled_charsmap` before `tokenizers`'
//! Precompiled normalizer runs it. The map is a double-array trie over the
//! bytes of a character (or of a short grapheme) whose leaves are offsets
//! into a block of NUL-separated replacement strings; Precompiled (the
//! `spm_precompiled` crate) follows both without bounds checks, so a
//! corrupt map loads and then panics on the text that reaches its bad
//! entry. Walking every path a lookup can take refuses such a map at load.

use std::collections::{HashSet, VecDeque};

use crate::{ModelError, Result};

/// The longest key Precompiled looks up: graphemes of under 6 bytes, else
/// single characters.
const MAX_KEY_BYTES: usize = 5;

// A trie unit's fields, as spm_precompiled reads them (darts-clone's
// layout).
fn has_leaf(unit: usize) -> bool {
    (unit >> 8) & 1 == 1
}

fn value(unit: usize) -> usize {
    unit & ((1 << 31) - 1)
}

fn label(unit: usize) -> usize {
    unit & ((1 << 31) | 0xFF)
}

fn offset(unit: usize) -> usize {
    (unit >> 10) << ((unit & (1 << 9)) >> 6)
}

/// Refuses (as a tokenizer error saying why) a `charsmap` that would make
/// Precompiled panic or fail to load: every unit a lookup of up to
/// [`MAX_KEY_BYTES`] non-zero bytes reads must be in the trie, and every
/// leaf must start a replacement at a character boundary of the strings.
pub(crate) fn check(charsmap: &[u8]) -> Result<()> {
    walk(charsmap).map_err(|reason| ModelError::Tokenizer(format!("precompiled_charsmap: {reason}")))
}

fn walk(charsmap: &[u8]) -> std::result::Result<(), String> {
    let (size, rest) = charsmap
        .split_first_chunk::<4>()
        .ok_or("it is shorter than its 4-byte trie size")?;
    let trie_bytes = u32::from_le_bytes(*size) as usize / 4 * 4;
    let (trie, strings) = rest
        .split_at_checked(trie_bytes)
        .ok_or_else(|| format!("its trie of {trie_bytes} bytes is cut short"))?;
    let strings = std::str::from_utf8(strings).map_err(|e| format!("its replacement strings are not UTF-8: {e}"))?;
    let units: Vec<usize> = trie
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let unit = |at: usize| {
        units
            .get(at)
            .copied()
            .ok_or_else(|| format!("its trie points at unit {at}, past its {} units", units.len()))
    };
    let root = offset(unit(0)?);
    let mut seen = HashSet::from([root]);
    let mut next = VecDeque::from([(root, 0)]);
    while let Some((node, depth)) = next.pop_front() {
        if depth == MAX_KEY_BYTES {
            continue;
        }
        for byte in 1..=255 {
            let at = node ^ byte;
            let found = unit(at)?;
            if label(found) != byte {
                continue;
            }
            let child = at ^ offset(found);
            if has_leaf(found) {
                let start = value(unit(child)?);
                if !strings.is_char_boundary(start) {
                    return Err(format!(
                        "a replacement starts at byte {start} of its {}-byte strings, not at a character",
                        strings.len()
                    ));
                }
            }
            if seen.insert(child) {
                next.push_back((child, depth + 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::normalizers::Precompiled;

    /// A map that replaces "a" with `replacement` (at byte `start` of
    /// `strings`): the root at unit 0 with offset 0, "a"'s unit with a leaf
    /// at unit 0x161, the units of each node's 256-wide block present.
    fn map(strings: &str, start: u32, child_offset: usize) -> Vec<u8> {
        let mut units = vec![0u32; 512];
        units[0x61] = ((child_offset << 10) | (1 << 8) | 0x61) as u32;
        if let Some(leaf) = units.get_mut(0x61 ^ child_offset) {
            *leaf = start;
        }
        let mut bytes = ((units.len() * 4) as u32).to_le_bytes().to_vec();
        bytes.extend(units.iter().flat_map(|u| u.to_le_bytes()));
        bytes.extend(strings.as_bytes());
        bytes
    }

    #[test]
    fn a_well_formed_map_passes_and_normalizes() {
        let charsmap = map("b\0", 0, 0x100);
        check(&charsmap).unwrap();
        let precompiled = Precompiled::from(&charsmap).unwrap();
        assert_eq!(precompiled.normalize_string("xay"), "xby");
    }

    #[test]
    fn maps_that_would_panic_on_some_text_are_refused() {
        // A leaf inside "é" (Precompiled slices the strings there).
        let inside = check(&map("é\0", 1, 0x100)).unwrap_err().to_string();
        assert!(inside.contains("byte 1"), "{inside}");
        // A leaf past the strings.
        assert!(check(&map("b\0", 9, 0x100)).is_err());
        // A child block past the trie (Precompiled indexes the array there).
        let outside = check(&map("b\0", 0, 0x400)).unwrap_err().to_string();
        assert!(outside.contains("past its 512 units"), "{outside}");
        // No trie at all, a trie cut short.
        assert!(check(&0u32.to_le_bytes()).is_err());
        assert!(check(&map("b\0", 0, 0x100)[..100]).is_err());
    }
}
