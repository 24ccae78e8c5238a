//! Float32 linear layers on the CPU through oneDNN, with each weight
//! reordered once into the layout its kernels read (`cpp/onednn_linear.cpp`).
//!
//! LibTorch's linear layer calls MKL, which packs the weight again on
//! every call and, on AMD processors, runs its AVX2 kernels. A decoding
//! step (a few rows) spends most of its time in that packing: Whisper's
//! 51,865-token head over 8 rows takes 15-19 ms through MKL and 5 ms here.
//! Large products gain too where oneDNN has AVX-512 kernels (about 190
//! against 220 GFLOP/s on two Zen 4 cores). Without AVX-512 its AVX2
//! kernels lose to MKL's from about 256 rows on (10-15% from 512 rows on
//! two Zen 3 cores: 1024x1024 over 577 rows, ViT-large's tokens, in 6.4
//! ms against 7.5), so there a layer whose first product has that many
//! rows (typically an encoder's) stays on LibTorch's linear for good; one
//! whose first product is small (typically a decoding step's) is
//! reordered for good. The choice is the first product's: it costs speed
//! where later products differ, never correctness. Sums are taken in
//! another order than MKL's, so outputs differ from transformers' in the
//! last bits (1e-6 relative), as any other kernel's would.
//!
//! A layer holds a `OnednnWeight` beside its float weight; the first
//! product that can use it (float32 on the CPU, and on a processor without
//! AVX-512 fewer than `LARGE_ROWS` rows unless the layer is built for
//! decoding or beside tied embeddings) reorders the weight, and
//! every later one reads that copy; the layer's float copy is then let go
//! (a head tied to the embeddings keeps it, the embeddings read it). Other
//! devices and dtypes, and models sharing their weights with others (the
//! text plugin's, see `weights::sharing_weights_of`), never make one.
//! `INFERD_ONEDNN=0` turns the path off (every product then goes through
//! LibTorch's linear, as transformers computes it).

use std::ffi::{c_char, c_void};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, OnceLock};

use tch::{Device, Kind, Tensor};

use crate::core::int8::take_message;
use crate::core::split_linear::{self, Layout};
use crate::core::weights;

extern "C" {
    fn inferd_onednn_pack(weight: *const c_void, rows: i64, error: *mut *mut c_char) -> *mut c_void;
    fn inferd_onednn_linear(
        input: *const c_void,
        packed: *const c_void,
        bias: *const c_void,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn inferd_onednn_free(tensor: *mut c_void);
}

/// The rows oneDNN is told to expect: a decoding step's. Weights reordered
/// for 8 rows serve one to 16 rows at their best and large products as
/// fast as any other reordering.
const ROWS_HINT: i64 = 8;

/// Products of this many rows or more run through MKL on processors
/// without AVX-512 (see the module's note).
const LARGE_ROWS: i64 = 256;

/// Whether large products are faster through MKL than through oneDNN:
/// where oneDNN has no AVX-512 kernels.
fn large_products_through_mkl() -> bool {
    static AVX2_ONLY: OnceLock<bool> = OnceLock::new();
    *AVX2_ONLY.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let avx2_only = !std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2_only = false;
        avx2_only
    })
}

/// Whether oneDNN products are on (`INFERD_ONEDNN` unset, or anything but
/// "0").
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("INFERD_ONEDNN").map_or(true, |v| v.trim() != "0"))
}

/// A weight [out, in] in oneDNN's layout (an opaque LibTorch tensor).
struct Packed {
    raw: NonNull<c_void>,
}

// SAFETY: the reordered weight is never written once made, and oneDNN's
// products only read it, from any thread.
unsafe impl Send for Packed {}
unsafe impl Sync for Packed {}

impl Packed {
    fn pack(weight: &Tensor) -> Result<Packed, String> {
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live tensor for the call; the result is ours to free.
        let raw = unsafe { inferd_onednn_pack(weight.as_ptr().cast(), ROWS_HINT, &mut error) };
        NonNull::new(raw)
            .map(|raw| Packed { raw })
            .ok_or_else(|| take_message(error))
    }

    fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, String> {
        let mut error: *mut c_char = std::ptr::null_mut();
        let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr().cast());
        // SAFETY: live tensors for the call; a non-null result is a new
        // at::Tensor that tch takes over.
        let raw = unsafe { inferd_onednn_linear(x.as_ptr().cast(), self.raw.as_ptr(), bias_ptr, &mut error) };
        if raw.is_null() {
            return Err(take_message(error));
        }
        Ok(unsafe { Tensor::from_ptr(raw.cast()) })
    }
}

impl Drop for Packed {
    fn drop(&mut self) {
        // SAFETY: made by inferd_onednn_pack and freed once.
        unsafe { inferd_onednn_free(self.raw.as_ptr()) }
    }
}

/// A layer's weight as oneDNN reads it, made by the first product that can
/// use it. A layer that owns its weight lets the float copy go once the
/// reordered one is made (`owning`), so the model's memory stays what its
/// checkpoint takes; a head tied to the token embeddings keeps both
/// (`beside`). Where reordering fails the layer stays on LibTorch's linear.
#[derive(Clone)]
pub struct OnednnWeight(Arc<Slot>);

struct Slot {
    /// Whether the weight is float32 on the CPU: known when the layer is
    /// built, so that no product reads the weight's metadata while the
    /// first one lets it go.
    usable: bool,
    /// Whether the layer reads decoding steps even when its first product
    /// is large (a decoder-only model's prompt): it is reordered whatever
    /// the first product's rows.
    decoding: bool,
    layout: Layout,
    packed: OnceLock<Option<Packed>>,
    /// The float weight and every view of it that keeps its memory (the
    /// var store's), emptied once the reordered copy is made.
    release: Mutex<Vec<Tensor>>,
}

impl std::fmt::Debug for OnednnWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0.packed.get() {
            None => "not made",
            Some(None) => "on LibTorch's linear",
            Some(Some(_)) => "made",
        };
        write!(f, "OnednnWeight({state})")
    }
}

impl OnednnWeight {
    /// For a weight the layer alone reads: `weight` and its `views` (the
    /// var store's, for a weight made of parts) are emptied once it is
    /// reordered.
    pub fn owning(weight: &Tensor, layout: Layout, views: Vec<Tensor>) -> Self {
        let mut release = vec![weight.shallow_clone()];
        release.extend(views);
        Self::with(weight, layout, release, false)
    }

    /// As `owning`, for a layer of a decoder-only model, reordered even
    /// where its first product (the prompt's) is large.
    pub fn decoding(weight: &Tensor, layout: Layout) -> Self {
        Self::with(weight, layout, vec![weight.shallow_clone()], true)
    }

    /// For a weight others read too (tied embeddings, whose head reads
    /// decoding steps): it is kept, and reordered whatever the first
    /// product's rows.
    pub fn beside(weight: &Tensor, layout: Layout) -> Self {
        Self::with(weight, layout, Vec::new(), true)
    }

    fn with(weight: &Tensor, layout: Layout, release: Vec<Tensor>, decoding: bool) -> Self {
        // A weight shared with other models (the instances of one model,
        // one per task, see `weights::sharing_weights_of`) stays on
        // LibTorch's linear: each instance would make its own reordered
        // copy, and none could let the float one go while the others may
        // still be loading from it.
        let usable = weight.device() == Device::Cpu
            && weight.kind() == Kind::Float
            && weight.dim() == 2
            && !weights::in_sharing_group();
        OnednnWeight(Arc::new(Slot {
            usable,
            decoding,
            layout,
            packed: OnceLock::new(),
            release: Mutex::new(release),
        }))
    }

    /// Whether float32 products on the CPU go through oneDNN (and so make
    /// a reordered copy of the weight).
    pub fn reorders(&self) -> bool {
        self.0.usable && enabled()
    }

    /// x times `weight` plus `bias` through oneDNN, for float32 inputs on
    /// the CPU; None where the caller must compute it with `weight`
    /// itself (which is then still there). The first product reorders the
    /// weight and, once it has run, lets the float copy go.
    pub fn linear(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Option<Tensor> {
        let slot = &self.0;
        if !self.reorders() {
            return None;
        }
        if x.device() != Device::Cpu || x.kind() != Kind::Float {
            // Every input of a float32 CPU model is float32 on the CPU;
            // once the float weight is gone there is nothing else to use.
            if let Some(Some(_)) = slot.packed.get() {
                panic!(
                    "a float32 CPU linear layer was given {:?} on {:?}: its weight is held for float32 CPU inputs only",
                    x.kind(),
                    x.device()
                );
            }
            return None;
        }
        let mut first = None;
        let packed = slot.packed.get_or_init(|| {
            let rows = split_linear::rows(x);
            if !slot.decoding && rows >= LARGE_ROWS && large_products_through_mkl() {
                tracing::debug!("a linear layer's first product has {rows} rows: it stays on LibTorch's linear (MKL)");
                return None;
            }
            let weight = match slot.layout {
                Layout::OutIn => weight.shallow_clone(),
                Layout::InOut => weight.transpose(0, 1),
            };
            let made = Packed::pack(&weight).and_then(|packed| Ok((packed.forward(x, bias)?, packed)));
            match made {
                Ok((y, packed)) => {
                    // The product ran: the float copy is no longer needed.
                    let mut release = slot.release.lock().unwrap_or_else(|e| e.into_inner());
                    for mut t in release.drain(..) {
                        let _ = t.set_();
                    }
                    first = Some(y);
                    Some(packed)
                }
                Err(message) => {
                    tracing::warn!(
                        "a linear layer could not run through oneDNN ({message}); it stays on LibTorch's linear"
                    );
                    None
                }
            }
        });
        if first.is_some() {
            return first;
        }
        let packed = packed.as_ref()?;
        // As tch's own operations do on a LibTorch error.
        Some(
            packed
                .forward(x, bias)
                .unwrap_or_else(|message| panic!("oneDNN linear layer failed: {message}")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_onednn_product_is_the_linear_layer_to_float_rounding() {
        tch::manual_seed(3);
        let weight = Tensor::randn([70, 48], (Kind::Float, Device::Cpu));
        let bias = Tensor::randn([70], (Kind::Float, Device::Cpu));
        let expected_weight = weight.copy();
        let slot = OnednnWeight::owning(&weight, Layout::OutIn, vec![]);
        for rows in [1, 3, 8, 40] {
            let x = Tensor::randn([rows, 2, 48], (Kind::Float, Device::Cpu));
            let y = slot.linear(&x, &weight, Some(&bias)).expect("float32 on the CPU");
            assert_eq!(y.size(), vec![rows, 2, 70]);
            let expected = x.linear(&expected_weight, Some(&bias));
            let diff = f64::try_from((&y - &expected).abs().max()).unwrap();
            assert!(diff < 1e-4, "{rows} rows: {diff}");
        }
        assert_eq!(weight.numel(), 0, "the float copy is let go");
        // A weight stored [in, out] (GPT-2's Conv1D), without bias, kept.
        let in_out = Tensor::randn([48, 70], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([5, 48], (Kind::Float, Device::Cpu));
        let y = OnednnWeight::beside(&in_out, Layout::InOut)
            .linear(&x, &in_out, None)
            .unwrap();
        assert!(f64::try_from((&y - x.mm(&in_out)).abs().max()).unwrap() < 1e-4);
        assert_eq!(in_out.size(), vec![48, 70]);
    }

    #[test]
    fn without_avx512_a_layer_whose_first_product_is_large_stays_on_libtorch() {
        let mkl = large_products_through_mkl();
        let x = Tensor::randn([2, LARGE_ROWS / 2, 6], (Kind::Float, Device::Cpu));
        let weight = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
        let slot = OnednnWeight::owning(&weight, Layout::OutIn, vec![]);
        assert_eq!(slot.linear(&x, &weight, None).is_none(), mkl);
        assert_eq!(
            weight.numel() == 0,
            !mkl,
            "the float copy is kept exactly where it is read"
        );
        // For good: a small product afterwards stays there too.
        let small = Tensor::randn([1, 6], (Kind::Float, Device::Cpu));
        assert_eq!(slot.linear(&small, &weight, None).is_none(), mkl);
        // A decoding layer is reordered whatever its first product.
        let weight = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
        let slot = OnednnWeight::decoding(&weight, Layout::OutIn);
        let y = slot.linear(&x, &weight, None).expect("reordered");
        assert_eq!(y.size(), vec![2, LARGE_ROWS / 2, 4]);
        assert_eq!(weight.numel(), 0);
    }

    #[test]
    fn once_the_float_copy_is_gone_other_inputs_are_refused_by_name() {
        let weight = Tensor::randn([8, 6], (Kind::Float, Device::Cpu));
        let slot = OnednnWeight::owning(&weight, Layout::OutIn, vec![]);
        let x = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
        assert!(slot.linear(&x, &weight, None).is_some());
        assert_eq!(weight.numel(), 0);
        let double = x.to_kind(Kind::Double);
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.linear(&double, &weight, None)));
        let message = refused.expect_err("refused").downcast::<String>().expect("a message");
        assert!(message.contains("float32 CPU inputs only"), "{message}");
    }

    #[test]
    fn other_dtypes_are_left_to_the_caller() {
        let weight = Tensor::randn([4, 6], (Kind::Double, Device::Cpu));
        let x = Tensor::randn([2, 6], (Kind::Double, Device::Cpu));
        let slot = OnednnWeight::owning(&weight, Layout::OutIn, vec![]);
        assert!(slot.linear(&x, &weight, None).is_none());
        assert!(slot.0.packed.get().is_none(), "nothing reordered");
        assert_eq!(weight.size(), vec![4, 6]);
    }
}
