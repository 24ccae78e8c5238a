//! Linear layers for decoding steps, split among threads
//! (`cpp/split_linear.cpp`). A step feeds a layer one row per sequence; MKL
//! multiplies so few rows by a weight on one thread, and the step is bound
//! by reading the weights from memory, which two cores do about twice as
//! fast as one. The output columns are cut at multiples of 64 and each
//! thread makes LibTorch's own BLAS call on its slice, so every value is
//! bit for bit what the whole product gives (a test checks it): parity
//! with transformers is untouched.

use std::ffi::{c_char, c_void};

use tch::{Device, Kind, Tensor};

use crate::core::int8::take_message;

extern "C" {
    fn inferd_split_linear(
        input: *const c_void,
        weight: *const c_void,
        bias: *const c_void,
        in_out: bool,
        align: i64,
        error: *mut *mut c_char,
    ) -> *mut c_void;
}

/// Output columns per cut: a multiple of every BLAS kernel's block, so
/// that the slices compute as the whole does.
const ALIGN: i64 = 64;
/// At most this many rows are split (one sequence, or a few beams). MKL
/// spreads more rows over its threads itself, and from 5 rows on its sums
/// depend on its thread count (5 to 7 and 9 to 11 rows differ between 1
/// and 2 threads in the last bits), so slices computed on one thread each
/// would no longer be bit for bit what transformers computes.
const MAX_ROWS: i64 = 4;
/// Weights smaller than this (4 MiB of float32) stay whole: the threads'
/// start costs more than reading them.
const MIN_WEIGHTS: i64 = 1 << 20;

/// How a weight is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// [out, in], as nn.Linear holds it: x Wᵀ + b.
    OutIn,
    /// [in, out], as GPT-2's Conv1D holds it: b + x W.
    InOut,
}

/// x times `weight` plus `bias` in `layout`, split among the intra-op
/// threads when that is faster, else as LibTorch computes it.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, layout: Layout) -> Tensor {
    match worth_splitting(x, weight) && splits_exactly(weight, layout) {
        true => split(x, weight, bias, layout),
        false => whole(x, weight, bias, layout),
    }
}

/// The product as LibTorch computes it in one call (transformers' way).
fn whole(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, layout: Layout) -> Tensor {
    match layout {
        Layout::OutIn => x.linear(weight, bias),
        Layout::InOut => {
            let size = x.size();
            let width = size[size.len() - 1];
            let mut out_size = size.clone();
            *out_size.last_mut().expect("non-empty") = weight.size()[1];
            let rows = x.reshape([-1, width]);
            let product = match bias {
                Some(bias) => bias.addmm(&rows, weight),
                None => rows.mm(weight),
            };
            product.view(out_size.as_slice())
        }
    }
}

/// A few rows of float32 on the CPU, a weight worth reading in parallel,
/// and more than one thread to read it.
fn worth_splitting(x: &Tensor, weight: &Tensor) -> bool {
    if x.device() != Device::Cpu || x.kind() != Kind::Float || weight.kind() != Kind::Float {
        return false;
    }
    // A strided input would be copied, and LibTorch's own product of one
    // takes another route (matmul, then the bias).
    if !x.is_contiguous() || weight.dim() != 2 || !weight.is_contiguous() || weight.numel() < MIN_WEIGHTS as usize {
        return false;
    }
    (1..=MAX_ROWS).contains(&rows(x)) && tch::get_num_threads() > 1
}

/// The rows a linear layer's input `x` [.., in] holds: every position of
/// every sequence of the batch.
pub fn rows(x: &Tensor) -> i64 {
    let width = x.size().last().copied().unwrap_or(0);
    if width > 0 {
        x.numel() as i64 / width
    } else {
        0
    }
}

/// Whether slices of `weight` compute as the whole does. Rows of an
/// [out, in] weight keep its layout; columns of an [in, out] one keep it
/// only when `out` is a multiple of the cut (MKL takes other kernels for
/// other row strides: 1e-5 apart at 51,865 columns and 2 or 3 rows).
fn splits_exactly(weight: &Tensor, layout: Layout) -> bool {
    layout == Layout::OutIn || weight.size()[1] % ALIGN == 0
}

fn split(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, layout: Layout) -> Tensor {
    let mut error: *mut c_char = std::ptr::null_mut();
    let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr().cast());
    // SAFETY: live tensors for the call; a non-null result is a new
    // at::Tensor that tch takes over, a null one leaves a message to free.
    let raw = unsafe {
        inferd_split_linear(
            x.as_ptr().cast(),
            weight.as_ptr().cast(),
            bias_ptr,
            layout == Layout::InOut,
            ALIGN,
            &mut error,
        )
    };
    if raw.is_null() {
        // Shapes the layer was built for always split; say why one did not
        // and compute it whole.
        tracing::warn!(
            "split linear layer failed ({}); computing it whole",
            take_message(error)
        );
        return whole(x, weight, bias, layout);
    }
    // SAFETY: a new at::Tensor from the C++ side, owned from here on.
    unsafe { Tensor::from_ptr(raw.cast()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split products equal whole ones bit for bit, in both layouts, with
    /// and without bias, for every row count split, on 2 to 4 threads and
    /// widths that do not divide evenly among them.
    #[test]
    fn split_products_equal_the_whole_ones_bit_for_bit() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(7);
        let threads = tch::get_num_threads();
        let opts = (Kind::Float, Device::Cpu);
        for count in [2, 3, 4] {
            tch::set_num_threads(count);
            equal_split_and_whole(opts);
        }
        tch::set_num_threads(threads);
    }

    fn equal_split_and_whole(opts: (Kind, Device)) {
        let sizes = [
            (512, 51865),
            (512, 2048),
            (2048, 512),
            (768, 2304),
            (768, 3072),
            (1024, 4097),
            (1024, 50265),
        ];
        for (input, output) in sizes {
            let linear_weight = Tensor::randn([output, input], opts);
            let conv_weight = Tensor::randn([input, output], opts);
            let bias = Tensor::randn([output], opts);
            for rows in 1..=MAX_ROWS {
                let x = Tensor::randn([rows, 1, input], opts);
                assert!(worth_splitting(&x, &linear_weight), "{input}x{output}, {rows} rows");
                for (weight, layout) in [(&linear_weight, Layout::OutIn), (&conv_weight, Layout::InOut)] {
                    if !splits_exactly(weight, layout) {
                        assert_eq!((layout, output % ALIGN != 0), (Layout::InOut, true));
                        continue;
                    }
                    for bias in [Some(&bias), None] {
                        let whole = whole(&x, weight, bias, layout);
                        let split = split(&x, weight, bias, layout);
                        assert_eq!(split.size(), whole.size());
                        assert!(
                            split.equal(&whole),
                            "{layout:?} {input}x{output}, {rows} rows, bias {}: differs by {}",
                            bias.is_some(),
                            (&split - &whole).abs().max().double_value(&[])
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn small_weights_many_rows_and_one_thread_are_not_split() {
        let opts = (Kind::Float, Device::Cpu);
        let big = Tensor::zeros([2048, 512], opts);
        let small = Tensor::zeros([512, 512], opts);
        let threads = tch::get_num_threads();
        tch::set_num_threads(2);
        assert!(worth_splitting(&Tensor::zeros([4, 512], opts), &big));
        assert!(!worth_splitting(&Tensor::zeros([4, 512], opts), &small));
        assert!(!worth_splitting(&Tensor::zeros([5, 512], opts), &big));
        assert!(!worth_splitting(
            &Tensor::zeros([4, 512], (Kind::Double, Device::Cpu)),
            &big
        ));
        let strided = Tensor::zeros([512, 4], opts).tr();
        assert!(!worth_splitting(&strided, &big), "strided inputs stay whole");
        tch::set_num_threads(1);
        assert!(!worth_splitting(&Tensor::zeros([4, 512], opts), &big));
        tch::set_num_threads(threads);
    }
}
