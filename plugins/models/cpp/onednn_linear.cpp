// Float32 linear layers through oneDNN, with each weight reordered once
// into the blocked layout oneDNN's kernels read. LibTorch's own linear
// layer calls MKL, whose kernels on AMD processors are its AVX2 ones and
// which copies (packs) the weight on every call: a product of a few rows
// (a decoding step) spends most of its time packing, and a large product
// reaches about 190 GFLOP/s on two Zen 4 cores where oneDNN's AVX-512
// kernels reach about 220. These are the operators LibTorch's own
// inference freezing uses (mkldnn::_reorder_linear_weight and
// mkldnn::_linear_pointwise), reached through the dispatcher. No entry
// point lets a C++ exception cross into Rust.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <vector>

#include "message.h"
#include "onednn_ops.h"

namespace {

// The result of a boxed call of `op` on `stack`: its one output tensor, on
// the heap for Rust to own.
at::Tensor* call(const c10::OperatorHandle& op, std::vector<c10::IValue>& stack) {
  op.callBoxed(&stack);
  return new at::Tensor(stack.at(0).toTensor());
}

template <typename F>
at::Tensor* guarded(char** error, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    *error = inferd::copy_message(e.what());
  } catch (...) {
    *error = inferd::copy_message("unknown C++ exception");
  }
  return nullptr;
}

}  // namespace

extern "C" {

// `weight` [out, in] reordered for products of about `rows` rows (any
// number of rows may use it). Null with `*error` set on failure.
at::Tensor* inferd_onednn_pack(const at::Tensor* weight, int64_t rows, char** error) {
  return guarded(error, [&] {
    std::vector<c10::IValue> stack{weight->contiguous(), c10::IValue(rows)};
    return call(inferd::reorder_op(), stack);
  });
}

// input [.., in] times the packed weight, plus `bias` [out] (may be null).
at::Tensor* inferd_onednn_linear(const at::Tensor* input, const at::Tensor* packed, const at::Tensor* bias,
                                 char** error) {
  return guarded(error, [&] {
    std::vector<c10::IValue> stack{
        input->contiguous(),
        *packed,
        bias != nullptr ? c10::IValue(*bias) : c10::IValue(),
        c10::IValue("none"),
        c10::IValue(c10::List<std::optional<at::Scalar>>()),
        c10::IValue(),
    };
    return call(inferd::linear_op(), stack);
  });
}

void inferd_onednn_free(at::Tensor* tensor) { delete tensor; }

}  // extern "C"
