//! 3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3) on the CPU
//! in float32 (`cpp/winograd.cpp`): a quarter of a direct convolution's
//! multiplications, for the wide stride-1 convolutions of dense-prediction
//! models (DPT's neck, fusion and head: 2.5x faster at 256 channels on two
//! Zen 4 cores than oneDNN's direct kernel). A layer asks for it with
//! `ConvSpec::winograd`; its filters are transformed once, at load
//! (`Conv2d::prepare`, which DPT's loader calls so that the model's
//! `memory_bytes` counts them) or else by the first product that can use
//! them, and kept beside the weight (four times its size). Outputs move by
//! a few units of float32 rounding of the largest value (about 7e-6
//! relative, against 1.5e-6 for a direct convolution).
//! Other devices, dtypes and shapes take LibTorch's convolution;
//! `INFERD_WINOGRAD=0` turns the path off.

use std::ffi::{c_char, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

use crate::core::int8::take_message;

extern "C" {
    fn inferd_winograd_filters(weight: *const c_void, error: *mut *mut c_char) -> *mut c_void;
    fn inferd_winograd_free(filters: *mut c_void);
    fn inferd_winograd_conv3x3(
        input: *const c_void,
        filters: *const c_void,
        bias: *const c_void,
        error: *mut *mut c_char,
    ) -> *mut c_void;
}

/// Whether Winograd convolutions are on (`INFERD_WINOGRAD` unset, or
/// anything but "0").
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("INFERD_WINOGRAD").map_or(true, |v| v.trim() != "0"))
}

/// A 3x3 convolution's transformed filters, made at load (`prepare`) or
/// by its first float32 product on the CPU.
#[derive(Default)]
pub struct WinogradFilters(OnceLock<Option<Filters>>);

impl std::fmt::Debug for WinogradFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0.get() {
            None => "not made",
            Some(None) => "unavailable",
            Some(Some(_)) => "made",
        };
        write!(f, "WinogradFilters({state})")
    }
}

/// The C++ side's filters: one reordered [out, in] weight per position of
/// the 6x6 tile.
struct Filters {
    raw: NonNull<c_void>,
    bytes: u64,
}

// SAFETY: the filters are never written once made, and the products only
// read them, from any thread.
unsafe impl Send for Filters {}
unsafe impl Sync for Filters {}

impl Drop for Filters {
    fn drop(&mut self) {
        // SAFETY: made by inferd_winograd_filters and freed once.
        unsafe { inferd_winograd_free(self.raw.as_ptr()) }
    }
}

impl WinogradFilters {
    /// Makes the filters of `weight` [out, in, 3, 3] now where products
    /// will use them (float32 on the CPU, the path on), rather than at the
    /// first product; their bytes.
    pub fn prepare(&self, weight: &Tensor) -> u64 {
        let _ = self.filters(weight);
        self.bytes()
    }

    /// The filters of `weight`, made the first time; None where products
    /// cannot use them.
    fn filters(&self, weight: &Tensor) -> Option<&Filters> {
        if !enabled() || weight.device() != Device::Cpu || weight.kind() != Kind::Float {
            return None;
        }
        self.0
            .get_or_init(|| match transform(weight) {
                Ok(filters) => Some(filters),
                Err(message) => {
                    tracing::warn!("a convolution could not take Winograd's filters ({message}); it stays direct");
                    None
                }
            })
            .as_ref()
    }

    /// conv2d(x, weight, bias) with stride 1 and padding 1 for float32 `x`
    /// [N, C, H, W] on the CPU; None where the caller must convolve itself
    /// (another device, dtype or shape, the path turned off, or filters
    /// that could not be made).
    pub fn conv3x3(&self, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Option<Tensor> {
        if x.device() != Device::Cpu || x.kind() != Kind::Float || x.dim() != 4 {
            return None;
        }
        let filters = self.filters(weight)?;
        let mut error: *mut c_char = std::ptr::null_mut();
        let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr().cast());
        // SAFETY: live tensors for the call; a non-null result is a new
        // at::Tensor that tch takes over.
        let raw = unsafe { inferd_winograd_conv3x3(x.as_ptr().cast(), filters.raw.as_ptr(), bias_ptr, &mut error) };
        if raw.is_null() {
            // As tch's own operations do on a LibTorch error.
            panic!("Winograd convolution failed: {}", take_message(error));
        }
        Some(unsafe { Tensor::from_ptr(raw.cast()) })
    }

    /// The bytes of the transformed filters, once made.
    pub fn bytes(&self) -> u64 {
        self.0.get().and_then(Option::as_ref).map_or(0, |f| f.bytes)
    }
}

/// `weight` [out, in, 3, 3] transformed (G g Gᵀ per channel pair) and
/// reordered.
fn transform(weight: &Tensor) -> Result<Filters, String> {
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: a live tensor for the call; a non-null result is ours to free.
    let raw = unsafe { inferd_winograd_filters(weight.as_ptr().cast(), &mut error) };
    let raw = NonNull::new(raw).ok_or_else(|| take_message(error))?;
    Ok(Filters {
        raw,
        bytes: 36 * (weight.numel() / 9 * weight.kind().elt_size_in_bytes()) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relative_error(y: &Tensor, expected: &Tensor) -> f64 {
        let scale = f64::try_from(expected.abs().max()).unwrap();
        f64::try_from((y.to_kind(Kind::Double) - expected).abs().max()).unwrap() / scale
    }

    #[test]
    fn a_winograd_convolution_is_the_direct_one_to_float_rounding() {
        tch::manual_seed(5);
        // Sizes that are and are not multiples of the 4x4 output blocks,
        // channels that do and do not fill the kernel's 16 lanes, a batch.
        for (batch, cin, cout, h, w, with_bias) in [
            (1, 16, 32, 8, 8, true),
            (2, 24, 20, 13, 7, true),
            (1, 3, 5, 1, 2, false),
            (3, 64, 48, 21, 30, true),
        ] {
            let x = Tensor::randn([batch, cin, h, w], (Kind::Float, Device::Cpu));
            let weight = Tensor::randn([cout, cin, 3, 3], (Kind::Float, Device::Cpu)) / (9.0 * cin as f64).sqrt();
            let bias = with_bias.then(|| Tensor::randn([cout], (Kind::Float, Device::Cpu)));
            let expected = x.to_kind(Kind::Double).conv2d(
                &weight.to_kind(Kind::Double),
                bias.as_ref().map(|b| b.to_kind(Kind::Double)).as_ref(),
                [1, 1],
                [1, 1],
                [1, 1],
                1,
            );
            let filters = WinogradFilters::default();
            let y = filters.conv3x3(&x, &weight, bias.as_ref()).expect("float32 on the CPU");
            assert_eq!(y.size(), vec![batch, cout, h, w]);
            let error = relative_error(&y, &expected);
            assert!(error < 3e-5, "{batch}x{cin}x{h}x{w} -> {cout}: {error}");
            assert_eq!(filters.bytes(), (36 * cin * cout * 4) as u64);
            // Channels-last input gives the same.
            let last = crate::core::layers::channels_last(&x);
            let again = filters.conv3x3(&last, &weight, bias.as_ref()).unwrap();
            assert!(relative_error(&again, &expected) < 3e-5);
        }
    }

    #[test]
    fn other_dtypes_are_left_to_the_caller() {
        let weight = Tensor::randn([4, 6, 3, 3], (Kind::Double, Device::Cpu));
        let x = Tensor::randn([1, 6, 5, 5], (Kind::Double, Device::Cpu));
        let filters = WinogradFilters::default();
        assert!(filters.conv3x3(&x, &weight, None).is_none());
        assert_eq!(filters.bytes(), 0, "nothing transformed");
    }
}
