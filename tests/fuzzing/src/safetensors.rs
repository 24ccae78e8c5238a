//! `safetensors`: a checkpoint's `model.safetensors` (its header is what
//! config checks trust). A file the checkpoint opens has the shapes its
//! header lists (read here apart from the safetensors crate), layer lists
//! counted as the header names them, tensors that read back with their
//! shape (or a refusal of their dtype, never a LibTorch error), and
//! tensors that load into variables of their shapes.

use std::cell::RefCell;
use std::collections::BTreeSet;

use inferd_models::core::weights::Checkpoint;
use inferd_models::ModelError;
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind};

thread_local! {
    static DIR: RefCell<tempfile::TempDir> = RefCell::new(tempfile::tempdir().expect("a temporary directory"));
}

/// Dtypes the checkpoint reads, with their LibTorch kind.
const DTYPES: &[(&str, Kind)] = &[
    ("F32", Kind::Float),
    ("F16", Kind::Half),
    ("BF16", Kind::BFloat16),
    ("F64", Kind::Double),
    ("I64", Kind::Int64),
    ("I32", Kind::Int),
    ("I16", Kind::Int16),
    ("I8", Kind::Int8),
    ("U8", Kind::Uint8),
    ("BOOL", Kind::Bool),
];

/// At most this many tensors are loaded into variables per input.
const LOADED: usize = 8;

pub fn safetensors(data: &[u8]) {
    DIR.with(|dir| {
        let dir = dir.borrow();
        std::fs::write(dir.path().join("model.safetensors"), data).expect("the checkpoint is written");
        let checkpoint = match Checkpoint::open(dir.path()) {
            Ok(checkpoint) => checkpoint,
            Err(e) => return assert!(matches!(e, ModelError::BadFile { .. }), "{e}"),
        };
        let tensors = listed(data).expect("an opened checkpoint has a JSON header");
        let shapes = checkpoint.shapes();
        for (name, _, shape) in &tensors {
            assert_eq!(shapes.shape(name), Some(shape.as_slice()), "{name}");
        }
        let names: Vec<&str> = tensors.iter().map(|(name, ..)| name.as_str()).collect();
        for prefix in ["layer", "encoder.layer"] {
            assert_eq!(shapes.layer_indices(prefix), layer_indices(&names, prefix), "{prefix}");
        }
        for (name, dtype, shape) in &tensors {
            match checkpoint.get(name) {
                Ok(tensor) => assert_eq!(tensor.expect("a listed tensor").size(), *shape, "{name}"),
                Err(ModelError::BadFile { message, .. }) if kind(dtype).is_none() => {
                    assert!(message.contains("is not supported"), "{message}")
                }
                Err(e) => panic!("{name} ({dtype} {shape:?}) does not read: {e}"),
            }
        }
        let mut vs = VarStore::new(Device::Cpu);
        let loadable = tensors
            .iter()
            .filter(|(name, dtype, _)| kind(dtype).is_some() && !name.split('.').any(str::is_empty))
            .take(LOADED);
        for (name, _, shape) in loadable {
            let (path, last) = name.rsplit_once('.').unwrap_or(("", name));
            let root = path
                .split('.')
                .filter(|c| !c.is_empty())
                .fold(vs.root(), |p, c| p.sub(c));
            let _ = root.zeros_no_train(last, shape);
        }
        if let Err(e) = checkpoint.load_into(&mut vs) {
            panic!("tensors do not load into variables of their own shapes: {e}");
        }
    });
}

fn kind(dtype: &str) -> Option<Kind> {
    DTYPES.iter().find(|(name, _)| *name == dtype).map(|(_, kind)| *kind)
}

/// The tensors of a safetensors header (name, dtype, shape): eight bytes
/// of little-endian length, then a JSON object of that length.
fn listed(data: &[u8]) -> Option<Vec<(String, String, Vec<i64>)>> {
    let len = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let header = data.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?;
    let Value::Object(entries) = serde_json::from_slice(header).ok()? else {
        return None;
    };
    let mut tensors = Vec::new();
    for (name, entry) in entries.into_iter().filter(|(name, _)| name != "__metadata__") {
        let dtype = entry.get("dtype")?.as_str()?.to_string();
        let shape = entry.get("shape")?.as_array()?;
        let shape = shape
            .iter()
            .map(|d| d.as_u64().map(|d| d as i64))
            .collect::<Option<_>>()?;
        tensors.push((name, dtype, shape));
    }
    Some(tensors)
}

/// The `i` of names with components `{prefix}.{i}.` and more after.
fn layer_indices(names: &[&str], prefix: &str) -> Vec<u64> {
    let prefix: Vec<&str> = prefix.split('.').collect();
    let mut found = BTreeSet::new();
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        for at in 0..parts.len() {
            let rest = &parts[at..];
            if rest.len() > prefix.len() + 1 && rest[..prefix.len()] == prefix[..] {
                if let Ok(i) = rest[prefix.len()].parse::<u64>() {
                    found.insert(i);
                }
            }
        }
    }
    found.into_iter().collect()
}
