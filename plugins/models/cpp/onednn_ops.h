// oneDNN's linear operators as LibTorch registers them, found once through
// the dispatcher (tch exposes neither): the weight reordered for a number
// of rows, and the product with a reordered weight. Used by
// onednn_linear.cpp and winograd.cpp.

#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

namespace inferd {

// mkldnn::_reorder_linear_weight(weight [out, in], rows) -> reordered weight.
inline const c10::OperatorHandle& reorder_op() {
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_reorder_linear_weight", "");
  return op;
}

// mkldnn::_linear_pointwise(input, reordered weight, bias, "none", [], "").
inline const c10::OperatorHandle& linear_op() {
  static const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  return op;
}

}  // namespace inferd
