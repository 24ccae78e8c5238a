//! Dynamic int8 quantisation of linear layers, as
//! `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)`
//! does it: each weight is quantized once to int8 (one symmetric scale per
//! output row) and packed for LibTorch's FBGEMM kernels; each input is
//! quantized on the fly, multiplied in int8 and returned as float
//! (cpp/int8_linear.cpp reaches the kernels). Embeddings, norms and the
//! language-model heads tied to embeddings stay in float, as they do there.
//!
//! A model opts in when it is built: `build_quantized` opens a collection
//! on the building thread, every `Linear`, `FusedLinear` and GPT-2 `Conv1D`
//! made inside it takes an empty slot for its packed weight, and once the
//! checkpoint is loaded `Int8Layers::pack` fills the slots. Layers built
//! outside a collection (every model that does not ask for int8) never
//! look at one. The float weights stay in the VarStore: tied weights (an LM
//! head sharing the embedding) still read them.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use tch::{Device, Kind, Tensor};

use crate::{ModelError, Result};

extern "C" {
    fn inferd_int8_linear_pack(weight: *const c_void, bias: *const c_void, error: *mut *mut c_char) -> *mut c_void;
    fn inferd_int8_linear_forward(
        input: *const c_void,
        packed: *const c_void,
        reduce_range: bool,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn inferd_int8_linear_free(packed: *mut c_void);
    fn inferd_free_message(message: *mut c_char);
}

/// How a model's linear layers compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    /// In the checkpoint's float type.
    #[default]
    None,
    /// int8 weights, inputs quantized per call ("dynamic-int8").
    DynamicInt8,
}

impl Quantization {
    /// The name a load option gives: "" or "none", or "dynamic-int8".
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "" | "none" => Ok(Quantization::None),
            "dynamic-int8" => Ok(Quantization::DynamicInt8),
            other => Err(ModelError::InvalidInput(format!(
                "unknown quantize {other:?}: the choices are \"dynamic-int8\" and \"none\""
            ))),
        }
    }

    /// The name `parse` reads ("" for none, as LoadedModel reports it).
    pub fn name(self) -> &'static str {
        match self {
            Quantization::None => "",
            Quantization::DynamicInt8 => "dynamic-int8",
        }
    }

    /// Refuses int8 where its kernels cannot run: they are CPU kernels for
    /// float32 inputs.
    pub fn check(self, device: Device, kind: Kind) -> Result<()> {
        if self == Quantization::None {
            return Ok(());
        }
        if device != Device::Cpu {
            return Err(ModelError::Unsupported(
                "quantize = \"dynamic-int8\" runs on the CPU only (LibTorch's int8 kernels are CPU kernels): load \
                 the model on the CPU, or without quantize on the GPU"
                    .into(),
            ));
        }
        if kind != Kind::Float {
            return Err(ModelError::Unsupported(format!(
                "quantize = \"dynamic-int8\" needs float32 activations; this model computes in {kind:?}"
            )));
        }
        Ok(())
    }
}

/// The message a C++ entry point left, taken over and freed.
pub(crate) fn take_message(message: *mut c_char) -> String {
    if message.is_null() {
        return "unknown error".into();
    }
    // SAFETY: the C++ side allocated a NUL-terminated copy for us to free.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { inferd_free_message(message) };
    text
}

/// Whether inputs must be quantized to 7 bits rather than 8. FBGEMM's AVX2
/// kernels add pairs of u8 x i8 products in 16 bits, which 8-bit inputs
/// can saturate; its AVX-512 VNNI kernels accumulate in 32 bits, so they
/// take the full 8 bits, which matters: on all-MiniLM-L6-v2 the lowest
/// cosine to the float embeddings is 0.990 with 8 bits, 0.97 with 7.
fn reduce_range() -> bool {
    static REDUCE: OnceLock<bool> = OnceLock::new();
    *REDUCE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            !std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            true
        }
    })
}

/// A weight quantized to int8 and packed for FBGEMM, with its bias.
pub struct PackedLinear {
    raw: NonNull<c_void>,
    out_features: i64,
}

// SAFETY: the packed parameters are immutable once made, and LibTorch's
// `quantized::linear_dynamic` only reads them, from any thread.
unsafe impl Send for PackedLinear {}
unsafe impl Sync for PackedLinear {}

impl PackedLinear {
    /// Packs `weight` ([out, in]) and `bias` ([out]).
    pub fn pack(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let mut error: *mut c_char = std::ptr::null_mut();
        let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr().cast());
        // SAFETY: both pointers are live tensors for the call; the result
        // is ours to free.
        let raw = unsafe { inferd_int8_linear_pack(weight.as_ptr().cast(), bias_ptr, &mut error) };
        match NonNull::new(raw) {
            Some(raw) => Ok(PackedLinear {
                raw,
                out_features: weight.size()[0],
            }),
            None => Err(ModelError::Unsupported(format!(
                "could not quantize a linear layer to int8: {}",
                take_message(error)
            ))),
        }
    }

    /// x Wᵀ + b for x of shape [.., in], in float.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: `x` and the packed weight live for the call; a non-null
        // result is a new at::Tensor that tch takes over.
        let raw =
            unsafe { inferd_int8_linear_forward(x.as_ptr().cast(), self.raw.as_ptr(), reduce_range(), &mut error) };
        if raw.is_null() {
            // As tch's own operations do on a LibTorch error.
            panic!("int8 linear layer failed: {}", take_message(error));
        }
        unsafe { Tensor::from_ptr(raw.cast()) }
    }
}

impl Drop for PackedLinear {
    fn drop(&mut self) {
        // SAFETY: made by inferd_int8_linear_pack and freed once.
        unsafe { inferd_int8_linear_free(self.raw.as_ptr()) }
    }
}

/// Where a layer finds its packed weight once the model is quantized.
#[derive(Debug, Clone, Default)]
pub struct Int8Slot(Option<Arc<OnceLock<PackedLinear>>>);

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedLinear({} outputs)", self.out_features)
    }
}

impl Int8Slot {
    /// A slot for a layer with this weight (stored [out, in], or [in, out]
    /// with `transposed`) and bias, if a model being built on this thread
    /// asked for int8; an empty one otherwise.
    pub fn claim(weight: &Tensor, bias: Option<&Tensor>, transposed: bool) -> Self {
        COLLECTING.with(|collecting| {
            let mut collecting = collecting.borrow_mut();
            let Some(layers) = collecting.as_mut() else {
                return Int8Slot(None);
            };
            let slot = Arc::new(OnceLock::new());
            layers.push(Pending {
                slot: Arc::clone(&slot),
                weight: weight.shallow_clone(),
                bias: bias.map(Tensor::shallow_clone),
                transposed,
            });
            Int8Slot(Some(slot))
        })
    }

    /// The packed weight, once packed.
    pub fn packed(&self) -> Option<&PackedLinear> {
        self.0.as_ref().and_then(|slot| slot.get())
    }
}

/// A layer waiting for its weights to load before it is packed.
struct Pending {
    slot: Arc<OnceLock<PackedLinear>>,
    weight: Tensor,
    bias: Option<Tensor>,
    transposed: bool,
}

thread_local! {
    /// The layers of the model being built on this thread with int8, if any.
    static COLLECTING: RefCell<Option<Vec<Pending>>> = const { RefCell::new(None) };
}

/// The linear layers of a model built with int8, to pack once its
/// checkpoint is loaded.
#[must_use = "pack the layers once the weights are loaded"]
pub struct Int8Layers(Vec<Pending>);

/// Builds a model, with its linear layers claiming int8 slots when
/// `quantization` asks for it.
pub fn build_quantized<T>(quantization: Quantization, build: impl FnOnce() -> T) -> (T, Int8Layers) {
    if quantization == Quantization::None {
        return (build(), Int8Layers(Vec::new()));
    }
    /// Closes the collection even when the build fails or panics.
    struct Collection;
    impl Drop for Collection {
        fn drop(&mut self) {
            COLLECTING.with(|c| c.borrow_mut().take());
        }
    }
    COLLECTING.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let collection = Collection;
    let built = build();
    let layers = COLLECTING.with(|c| c.borrow_mut().take()).unwrap_or_default();
    drop(collection);
    (built, Int8Layers(layers))
}

impl Int8Layers {
    /// Quantizes and packs every layer from its loaded weights; returns the
    /// bytes of the int8 weights and float biases this adds to the model.
    pub fn pack(self) -> Result<u64> {
        let mut bytes = 0;
        for layer in self.0 {
            bytes += layer.weight.numel() as u64 + layer.bias.as_ref().map_or(0, |b| 4 * b.numel() as u64);
            let weight = if layer.transposed {
                layer.weight.transpose(0, 1)
            } else {
                layer.weight.shallow_clone()
            };
            let packed = PackedLinear::pack(&weight, layer.bias.as_ref())?;
            let _ = layer.slot.set(packed);
        }
        Ok(bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &Tensor, b: &Tensor) -> f64 {
        let (a, b) = (a.flatten(0, -1), b.flatten(0, -1));
        (a.dot(&b) / (a.norm() * b.norm())).double_value(&[])
    }

    #[test]
    fn an_int8_linear_layer_is_close_to_the_float_one() {
        tch::manual_seed(1);
        let weight = Tensor::randn([48, 32], (Kind::Float, Device::Cpu));
        let bias = Tensor::randn([48], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([3, 5, 32], (Kind::Float, Device::Cpu));
        let packed = PackedLinear::pack(&weight, Some(&bias)).expect("packs");
        let int8 = packed.forward(&x);
        let float = x.linear(&weight, Some(&bias));
        assert_eq!(int8.size(), vec![3, 5, 48]);
        assert!(cosine(&int8, &float) > 0.999, "cosine {}", cosine(&int8, &float));
        // Not the float answer itself: the products really ran in int8.
        assert!(f64::try_from((&int8 - &float).abs().max()).unwrap() > 1e-4);
    }

    #[test]
    fn layers_claim_slots_only_inside_an_int8_build() {
        let weight = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
        let outside = Int8Slot::claim(&weight, None, false);
        assert!(outside.0.is_none());
        let (slot, layers) = build_quantized(Quantization::DynamicInt8, || Int8Slot::claim(&weight, None, false));
        assert!(slot.packed().is_none(), "packed only once the weights are loaded");
        assert_eq!(layers.pack().expect("packs"), 24, "4 x 6 int8 weights, no bias");
        let x = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
        let y = slot.packed().expect("packed").forward(&x);
        assert!(cosine(&y, &x.linear::<Tensor>(&weight, None)) > 0.999);
        let (slot, layers) = build_quantized(Quantization::None, || Int8Slot::claim(&weight, None, false));
        assert!(slot.0.is_none() && layers.is_empty());
    }

    #[test]
    fn int8_is_refused_on_a_gpu_and_for_half_precision_models() {
        let int8 = Quantization::DynamicInt8;
        assert!(int8.check(Device::Cpu, Kind::Float).is_ok());
        let gpu = int8.check(Device::Cuda(0), Kind::Float).unwrap_err().to_string();
        assert!(gpu.contains("CPU only"), "{gpu}");
        assert!(int8.check(Device::Cpu, Kind::Half).is_err());
        assert!(Quantization::None.check(Device::Cuda(0), Kind::Half).is_ok());
    }

    #[test]
    fn unknown_quantization_names_are_refused_with_the_choices() {
        assert_eq!(Quantization::parse("dynamic-int8").unwrap(), Quantization::DynamicInt8);
        assert_eq!(Quantization::parse("").unwrap(), Quantization::None);
        let err = Quantization::parse("int4").unwrap_err().to_string();
        assert!(err.contains("\"dynamic-int8\""), "{err}");
    }
}
