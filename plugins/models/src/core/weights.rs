//! Loading Hugging Face checkpoints into a tch `VarStore`.
//!
//! The model's modules create their variables under the checkpoint's own key
//! names; this module finds the weight files of a model directory
//! (`model.safetensors`, sharded `model.safetensors.index.json`, or the older
//! `pytorch_model.bin` forms) and copies each tensor into its variable,
//! converting dtype and device. safetensors files are memory-mapped, so the
//! peak memory of a load is the model plus one tensor.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use safetensors::{Dtype, SafeTensors};
use tch::{nn::VarStore, Kind, Tensor};

use crate::core::config::{check_regular_file, is_present, read_json_within, WEIGHT_INDEX_LIMIT};
use crate::{ModelError, Result};

/// The weight files of a model directory, in the order they should be read,
/// each checked to resolve to a regular file (the hub cache's symlinks into
/// `blobs/` do; a FIFO or device does not), with no size limit.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    for index in ["model.safetensors.index.json", "pytorch_model.bin.index.json"] {
        let path = dir.join(index);
        if is_present(&path) {
            #[derive(serde::Deserialize)]
            struct Index {
                weight_map: HashMap<String, String>,
            }
            let index: Index = read_json_within(&path, WEIGHT_INDEX_LIMIT)?;
            let shards: BTreeSet<&String> = index.weight_map.values().collect();
            // A shard is a file beside the index, never a path elsewhere.
            if let Some(bad) = shards.iter().find(|f| !is_plain_file_name(f)) {
                return Err(ModelError::bad_file(
                    &path,
                    format!("the shard `{bad}` is not a file name in the model directory"),
                ));
            }
            let files: Vec<PathBuf> = shards.into_iter().map(|f| dir.join(f)).collect();
            if let Some(missing) = files.iter().find(|f| !is_present(f)) {
                return Err(ModelError::MissingFile {
                    dir: dir.to_path_buf(),
                    what: missing.display().to_string(),
                    expected: format!("every shard listed in {}", path.display()),
                });
            }
            for file in &files {
                check_regular_file(file)?;
            }
            return Ok(files);
        }
    }
    for single in ["model.safetensors", "pytorch_model.bin"] {
        let path = dir.join(single);
        if is_present(&path) {
            check_regular_file(&path)?;
            return Ok(vec![path]);
        }
    }
    Err(ModelError::MissingFile {
        dir: dir.to_path_buf(),
        what: "weights".into(),
        expected: "model.safetensors, model.safetensors.index.json or pytorch_model.bin".into(),
    })
}

fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none()
}

enum Source {
    SafeTensors(memmap2::Mmap),
    Pickle(HashMap<String, Tensor>),
}

/// The tensors of a checkpoint, looked up by name across all its files.
pub struct Checkpoint {
    files: Vec<PathBuf>,
    sources: Vec<Source>,
    index: HashMap<String, usize>,
    shapes: WeightShapes,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let files = weight_files(dir)?;
        let mut sources = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        let mut shapes = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let source = if path.extension().is_some_and(|e| e == "safetensors") {
                let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
                // SAFETY: the file is only read; a concurrent writer would be a
                // user error that at worst yields wrong weights.
                let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
                // Only the header is parsed: the shapes are known before any
                // tensor's data is touched.
                let st = SafeTensors::deserialize(&mmap).map_err(|e| ModelError::bad_file(path, e))?;
                for (name, view) in st.tensors() {
                    // A dimension past i64 (beside a 0, the tensor is still
                    // empty) is one LibTorch cannot make.
                    let shape = view.shape().iter().map(|&d| i64::try_from(d).ok()).collect();
                    let Some(shape) = shape else {
                        return Err(ModelError::bad_file(
                            path,
                            format!("{name} has shape {:?}, past what LibTorch can hold", view.shape()),
                        ));
                    };
                    shapes.insert(name.clone(), shape);
                    index.insert(name, i);
                }
                Source::SafeTensors(mmap)
            } else {
                let tensors: HashMap<String, Tensor> = Tensor::loadz_multi(path)
                    .map_err(|e| ModelError::bad_file(path, e))?
                    .into_iter()
                    .collect();
                // A pickle has no header to read apart from its data: its
                // tensors are loaded here (as load_into would need them
                // anyway), and their shapes read from them.
                for (name, tensor) in &tensors {
                    shapes.insert(name.clone(), tensor.size());
                    index.insert(name.clone(), i);
                }
                Source::Pickle(tensors)
            };
            sources.push(source);
        }
        let shapes = WeightShapes {
            shapes,
            files: describe(&files),
        };
        Ok(Checkpoint {
            files,
            sources,
            index,
            shapes,
        })
    }

    /// The names and shapes of the checkpoint's tensors, for checking a
    /// config against them before a model is built.
    pub fn shapes(&self) -> &WeightShapes {
        &self.shapes
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The tensor `name`, on the CPU, in the checkpoint's dtype.
    pub fn get(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        match &self.sources[i] {
            Source::Pickle(tensors) => Ok(tensors.get(name).map(|t| t.shallow_clone())),
            Source::SafeTensors(mmap) => {
                let path = &self.files[i];
                let st = SafeTensors::deserialize(mmap).map_err(|e| ModelError::bad_file(path, e))?;
                let view = st.tensor(name).map_err(|e| ModelError::bad_file(path, e))?;
                let kind = kind_of(view.dtype()).ok_or_else(|| {
                    ModelError::bad_file(path, format!("{name}: dtype {:?} is not supported", view.dtype()))
                })?;
                let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                Ok(Some(Tensor::f_from_data_size(view.data(), &shape, kind)?))
            }
        }
    }

    fn describe_files(&self) -> String {
        describe(&self.files)
    }

    /// Candidate checkpoint names for the variable `name`: itself, the legacy
    /// LayerNorm names (gamma/beta), and the name without its first component
    /// (a base-model checkpoint loaded under a task head's prefix).
    fn candidates(name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        let legacy = |n: &str| -> Option<String> {
            n.strip_suffix(".weight")
                .map(|s| format!("{s}.gamma"))
                .or_else(|| n.strip_suffix(".bias").map(|s| format!("{s}.beta")))
        };
        if let Some(l) = legacy(name) {
            out.push(l);
        }
        if let Some((_, rest)) = name.split_once('.') {
            out.push(rest.to_string());
            if let Some(l) = legacy(rest) {
                out.push(l);
            }
        }
        // Weight norm: PyTorch's parametrizations name what was weight_g/_v.
        for (old, new) in [
            (".weight_g", ".parametrizations.weight.original0"),
            (".weight_v", ".parametrizations.weight.original1"),
        ] {
            let renamed: Vec<String> = out
                .iter()
                .filter_map(|c| c.strip_suffix(old).map(|s| format!("{s}{new}")))
                .collect();
            out.extend(renamed);
        }
        out
    }

    /// Copies the checkpoint into every variable of `vs`. (Tied weights, such
    /// as masked-LM decoders, are not variables: the heads share the
    /// embedding tensor, so nothing needs to be found for them.)
    pub fn load_into(&self, vs: &mut VarStore) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, mut var) in sorted_variables(vs) {
            let source = self.source_for(&name, &var)?;
            var.f_copy_(&source.1)?;
        }
        Ok(())
    }

    /// As [`Checkpoint::load_into`], but inside [`sharing_weights_of`], a
    /// variable whose tensor a live load of the same group from the same
    /// files (same size, strides, dtype and device) holds already is made
    /// to share it instead of holding a copy: a checkpoint loaded for
    /// several tasks of one model is in memory once. The result keeps the
    /// sharing alive; hold it as long as the model.
    pub fn load_shared(&self, vs: &mut VarStore) -> Result<LoadedWeights> {
        let _guard = tch::no_grad_guard();
        let Some(group) = SHARING_GROUP.with(|g| g.borrow().clone()) else {
            self.load_into(vs)?;
            let bytes = var_store_bytes(vs);
            return Ok(LoadedWeights { _shared: None, bytes });
        };
        let shared = SharedWeights::of((group, self.files_key()));
        let mut tensors = shared.tensors.lock().expect("shared weights lock");
        let mut bytes = 0;
        for (name, mut var) in sorted_variables(vs) {
            let (source_name, source) = self.source_for(&name, &var)?;
            let held = tensors.get(&source_name).filter(|held| {
                held.size() == var.size()
                    && held.stride() == var.stride()
                    && held.f_storage_offset().ok() == var.f_storage_offset().ok()
                    && held.kind() == var.kind()
                    && held.device() == var.device()
            });
            // A view (a part of a fused layer's weight) shares only if its
            // base can point at the held one's base.
            let shareable = held.and_then(|held| match view_base(&var) {
                None => Some((held, None)),
                Some(base) => view_base(held)
                    .filter(|held_base| held_base.size() == base.size())
                    .map(|held_base| (held, Some((base, held_base)))),
            });
            match shareable {
                Some((held, bases)) => {
                    if let Some((mut base, held_base)) = bases {
                        if base.data_ptr() != held_base.data_ptr() {
                            base.set_data(&held_base);
                        }
                    }
                    var.set_data(held);
                }
                None => {
                    var.f_copy_(&source)?;
                    bytes += (var.numel() * var.kind().elt_size_in_bytes()) as u64;
                    tensors.entry(source_name).or_insert_with(|| var.shallow_clone());
                }
            }
        }
        drop(tensors);
        Ok(LoadedWeights {
            _shared: Some(shared),
            bytes,
        })
    }

    /// The checkpoint tensor for variable `name` (by its name or an older
    /// spelling), checked to have the variable's shape.
    fn source_for(&self, name: &str, var: &Tensor) -> Result<(String, Tensor)> {
        let candidates = Self::candidates(name);
        let Some(source_name) = candidates.iter().find(|c| self.contains(c)) else {
            return Err(ModelError::MissingWeight {
                name: name.to_string(),
                files: self.describe_files(),
            });
        };
        let source = self.get(source_name)?.expect("indexed tensor exists");
        if source.size() != var.size() {
            return Err(ModelError::WeightShape {
                name: name.to_string(),
                found: source.size(),
                expected: var.size(),
            });
        }
        Ok((source_name.clone(), source))
    }

    /// What identifies the checkpoint's files: their real paths, sizes and
    /// modification times (a file replaced in place is another checkpoint).
    fn files_key(&self) -> FilesKey {
        self.files
            .iter()
            .map(|file| {
                let real = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
                let meta = std::fs::metadata(&real).ok();
                let len = meta.as_ref().map_or(0, |m| m.len());
                (real, len, meta.and_then(|m| m.modified().ok()))
            })
            .collect()
    }
}

extern "C" {
    fn inferd_tensor_view_base(tensor: *const std::ffi::c_void) -> *mut std::ffi::c_void;
}

/// The tensor `tensor` is a view of, if it is one.
fn view_base(tensor: &Tensor) -> Option<Tensor> {
    // SAFETY: a live tensor for the call; a non-null result is a new
    // at::Tensor that tch takes over.
    let raw = unsafe { inferd_tensor_view_base(tensor.as_ptr().cast()) };
    (!raw.is_null()).then(|| unsafe { Tensor::from_ptr(raw.cast()) })
}

/// A var store's variables, by name.
fn sorted_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    variables
}

/// What identifies a checkpoint's files: their real paths, sizes and
/// modification times.
type FilesKey = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The tensors loaded from one checkpoint's files (by checkpoint name) for
/// one sharing group, while a model loaded from them lives.
pub struct SharedWeights {
    key: (String, FilesKey),
    tensors: Mutex<HashMap<String, Tensor>>,
}

thread_local! {
    /// The group whose loads share their tensors, while a load on this
    /// thread runs inside [`sharing_weights_of`].
    static SHARING_GROUP: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Whether the model being built or loaded on this thread shares its
/// weights with others (it runs inside [`sharing_weights_of`]).
pub fn in_sharing_group() -> bool {
    SHARING_GROUP.with(|g| g.borrow().is_some())
}

/// Runs `load` so that the models it loads share their tensors with the
/// live models loaded in the same `group` from the same files (the text
/// plugin passes the daemon's model name: the instances of one model, one
/// per task it serves, hold one copy, and what the daemon counts for the
/// model is what it holds). Outside of it, each load holds its own copy.
pub fn sharing_weights_of<T>(group: &str, load: impl FnOnce() -> T) -> T {
    /// Puts the outer group back, even when the load panics.
    struct Restore(Option<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SHARING_GROUP.with(|g| *g.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(SHARING_GROUP.with(|g| g.replace(Some(group.to_string()))));
    load()
}

/// The checkpoints models hold now; an entry goes when its last model does.
static SHARED: Mutex<Vec<Weak<SharedWeights>>> = Mutex::new(Vec::new());

impl SharedWeights {
    /// The live entry for these files, or a new empty one.
    fn of(key: (String, FilesKey)) -> Arc<SharedWeights> {
        let mut all = SHARED.lock().expect("shared weights lock");
        all.retain(|entry| entry.strong_count() > 0);
        if let Some(found) = all.iter().filter_map(Weak::upgrade).find(|s| s.key == key) {
            return found;
        }
        let fresh = Arc::new(SharedWeights {
            key,
            tensors: Mutex::new(HashMap::new()),
        });
        all.push(Arc::downgrade(&fresh));
        fresh
    }
}

/// What [`Checkpoint::load_shared`] loaded: the bytes this load added (0
/// where every tensor was shared), and the sharing, kept alive with it.
pub struct LoadedWeights {
    _shared: Option<Arc<SharedWeights>>,
    pub bytes: u64,
}

/// The names and shapes of a checkpoint's tensors, without their data.
/// Names may carry a task head's prefix (`distilbert.`, `model.`), so
/// lookups match whole trailing components of a name.
#[derive(Debug, Clone, Default)]
pub struct WeightShapes {
    shapes: HashMap<String, Vec<i64>>,
    /// The checkpoint's files, for messages.
    files: String,
}

impl WeightShapes {
    /// Shapes given by name (for tests and for callers that know them).
    pub fn from_shapes<'a>(shapes: impl IntoIterator<Item = (&'a str, Vec<i64>)>) -> Self {
        WeightShapes {
            shapes: shapes.into_iter().map(|(n, s)| (n.to_string(), s)).collect(),
            files: "the checkpoint".into(),
        }
    }

    /// The checkpoint's files, comma-separated.
    pub fn files(&self) -> &str {
        &self.files
    }

    /// The tensor whose name is `suffix` or ends in `.{suffix}`, with its
    /// full name; of several, the shortest name (the least prefixed).
    pub fn find(&self, suffix: &str) -> Option<(&str, &[i64])> {
        self.shapes
            .iter()
            .filter(|(name, _)| {
                name.as_str() == suffix || name.strip_suffix(suffix).is_some_and(|head| head.ends_with('.'))
            })
            .min_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)))
            .map(|(name, shape)| (name.as_str(), shape.as_slice()))
    }

    /// The shape of the tensor named `suffix` (see [`WeightShapes::find`]).
    pub fn shape(&self, suffix: &str) -> Option<&[i64]> {
        self.find(suffix).map(|(_, shape)| shape)
    }

    /// The distinct layer indices `i` of names containing `{prefix}.{i}.`
    /// (with `prefix` starting at a component: `transformer.layer` matches
    /// `distilbert.transformer.layer.3.ffn.lin1.weight`), in order.
    pub fn layer_indices(&self, prefix: &str) -> Vec<u64> {
        let needle = format!("{prefix}.");
        let mut found = BTreeSet::new();
        for name in self.shapes.keys() {
            let mut from = 0;
            while let Some(at) = name[from..].find(&needle) {
                let start = from + at;
                from = start + 1;
                if start > 0 && !name[..start].ends_with('.') {
                    continue;
                }
                let rest = &name[start + needle.len()..];
                let digits = rest.split('.').next().unwrap_or("");
                if rest.len() > digits.len() && !digits.is_empty() {
                    if let Ok(i) = digits.parse::<u64>() {
                        found.insert(i);
                    }
                }
            }
        }
        found.into_iter().collect()
    }

    /// How many layers the layer list at `prefix` has (distinct indices).
    pub fn layers(&self, prefix: &str) -> usize {
        self.layer_indices(prefix).len()
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// Bytes held by the variables of a var store.
pub fn var_store_bytes(vs: &VarStore) -> u64 {
    vs.variables()
        .values()
        .map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as u64)
        .sum()
}

/// The weight files, as errors name them.
fn describe(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    fn write_checkpoint(dir: &Path, tensors: &[(&str, Tensor)]) {
        Tensor::write_safetensors(tensors, dir.join("model.safetensors")).unwrap();
    }

    #[test]
    fn models_loaded_from_the_same_files_share_their_tensors_while_one_lives() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(
            dir.path(),
            &[("dense.weight", Tensor::from_slice(&[1f32, 2., 3., 4.]).view([2, 2]))],
        );
        let load = || {
            let mut vs = VarStore::new(Device::Cpu);
            let w = vs.root().sub("dense").zeros_no_train("weight", &[2, 2]);
            let loaded =
                sharing_weights_of("m", || Checkpoint::open(dir.path()).unwrap().load_shared(&mut vs)).unwrap();
            (vs, w, loaded)
        };
        let (_vs1, w1, first) = load();
        let (_vs2, w2, second) = load();
        assert_eq!(first.bytes, 16);
        assert_eq!(second.bytes, 0, "the second load adds nothing");
        assert_eq!(w1.data_ptr(), w2.data_ptr(), "one copy");
        assert_eq!(Vec::<f32>::try_from(w2.flatten(0, -1)).unwrap(), vec![1., 2., 3., 4.]);
        // Another group, or none, holds its own copy.
        let mut vs3 = VarStore::new(Device::Cpu);
        let w3 = vs3.root().sub("dense").zeros_no_train("weight", &[2, 2]);
        let other = sharing_weights_of("n", || Checkpoint::open(dir.path()).unwrap().load_shared(&mut vs3)).unwrap();
        assert_eq!(other.bytes, 16);
        assert_ne!(w3.data_ptr(), w1.data_ptr());
        let mut vs4 = VarStore::new(Device::Cpu);
        let _ = vs4.root().sub("dense").zeros_no_train("weight", &[2, 2]);
        assert_eq!(
            Checkpoint::open(dir.path())
                .unwrap()
                .load_shared(&mut vs4)
                .unwrap()
                .bytes,
            16
        );
        // Once every model of the group is gone, a new load starts afresh.
        drop((first, second));
        let (_vs5, w5, fifth) = load();
        assert_eq!(fifth.bytes, 16);
        assert_ne!(w5.data_ptr(), w1.data_ptr());
    }

    #[test]
    fn a_fused_layer_whose_variables_are_views_of_one_weight_shares_that_weight() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(
            dir.path(),
            &[
                ("q.weight", Tensor::from_slice(&[1f32, 2., 3., 4.]).view([2, 2])),
                ("k.weight", Tensor::from_slice(&[5f32, 6., 7., 8.]).view([2, 2])),
            ],
        );
        let load = || {
            let mut vs = VarStore::new(Device::Cpu);
            // As core::layers::FusedLinear registers its parts.
            let fused = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
            let _ = vs.root().sub("q").add("weight", fused.narrow(0, 0, 2), false);
            let _ = vs.root().sub("k").add("weight", fused.narrow(0, 2, 2), false);
            let loaded =
                sharing_weights_of("m", || Checkpoint::open(dir.path()).unwrap().load_shared(&mut vs)).unwrap();
            (vs, fused, loaded)
        };
        let (_vs1, fused1, first) = load();
        let (_vs2, fused2, second) = load();
        let values = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(values(&fused1), [1., 2., 3., 4., 5., 6., 7., 8.]);
        assert_eq!(
            values(&fused2),
            values(&fused1),
            "the layer computes with the loaded weight"
        );
        assert_eq!(fused2.data_ptr(), fused1.data_ptr(), "one copy");
        assert_eq!((first.bytes, second.bytes), (32, 0));
    }

    #[test]
    fn loads_by_name_and_legacy_names_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(
            dir.path(),
            &[
                ("enc.dense.weight", Tensor::from_slice(&[1f32, 2., 3., 4.]).view([2, 2])),
                ("enc.norm.gamma", Tensor::from_slice(&[5f32, 6.])),
            ],
        );
        let mut vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let w = root.sub("enc").sub("dense").zeros_no_train("weight", &[2, 2]);
        let g = root.sub("enc").sub("norm").zeros_no_train("weight", &[2]);
        Checkpoint::open(dir.path()).unwrap().load_into(&mut vs).unwrap();
        assert_eq!(Vec::<f32>::try_from(w.flatten(0, -1)).unwrap(), vec![1., 2., 3., 4.]);
        assert_eq!(Vec::<f32>::try_from(g).unwrap(), vec![5., 6.]);

        let mut vs2 = VarStore::new(Device::Cpu);
        let _ = vs2.root().sub("head").zeros_no_train("weight", &[2]);
        let err = Checkpoint::open(dir.path()).unwrap().load_into(&mut vs2).unwrap_err();
        assert!(err.to_string().contains("head.weight"), "{err}");
    }

    #[test]
    fn shape_mismatch_names_the_weight() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), &[("w", Tensor::zeros([3], (Kind::Float, Device::Cpu)))]);
        let mut vs = VarStore::new(Device::Cpu);
        let _ = vs.root().zeros_no_train("w", &[2]);
        let err = Checkpoint::open(dir.path()).unwrap().load_into(&mut vs).unwrap_err();
        assert!(matches!(err, ModelError::WeightShape { .. }), "{err}");
    }

    #[test]
    fn a_directory_without_weights_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = weight_files(dir.path()).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
        let _ = nn::VarStore::new(Device::Cpu);
    }

    #[test]
    fn a_dimension_past_i64_is_refused_at_open_naming_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let header = br#"{"w":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend(header);
        std::fs::write(dir.path().join("model.safetensors"), file).unwrap();
        let err = Checkpoint::open(dir.path()).err().expect("refused").to_string();
        assert!(err.contains("w has shape [0, 18446744073709551615]"), "{err}");
    }

    #[test]
    fn shapes_come_from_the_safetensors_header_and_layers_are_counted_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        write_checkpoint(
            dir.path(),
            &[
                ("distilbert.embeddings.word_embeddings.weight", zeros(&[10, 4])),
                ("distilbert.transformer.layer.0.ffn.lin1.weight", zeros(&[8, 4])),
                ("distilbert.transformer.layer.0.ffn.lin2.weight", zeros(&[4, 8])),
                ("distilbert.transformer.layer.2.ffn.lin1.weight", zeros(&[8, 4])),
                ("distilbert.transformer.layerx.5.w", zeros(&[1])),
                ("head.transformer.layer.9", zeros(&[1])),
            ],
        );
        let checkpoint = Checkpoint::open(dir.path()).unwrap();
        let shapes = checkpoint.shapes();
        assert_eq!(shapes.shape("embeddings.word_embeddings.weight"), Some(&[10i64, 4][..]));
        assert_eq!(
            shapes.find("word_embeddings.weight").map(|(name, _)| name),
            Some("distilbert.embeddings.word_embeddings.weight")
        );
        // Whole components only: "_embeddings.weight" does not start one.
        assert_eq!(shapes.shape("_embeddings.weight"), None);
        assert_eq!(shapes.layer_indices("transformer.layer"), vec![0, 2]);
        assert_eq!(shapes.layers("transformer.layer"), 2);
        assert_eq!(shapes.layers("ayer"), 0);
        assert!(shapes.files().ends_with("model.safetensors"));
    }
}
