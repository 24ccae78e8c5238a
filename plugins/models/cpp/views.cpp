// What tch does not expose about a tensor's memory: whether it is a view
// of another tensor, and which; channels-last copies; and pinned copies
// without the deprecated device argument (tch always passes one). A fused layer registers narrow views of
// one weight as its variables; a model that shares a checkpoint's tensors
// with another (core/weights.rs, `load_shared`) must point the view's base
// at the other model's base too, or the layer would compute with its own,
// never loaded copy. No entry point lets a C++ exception cross into Rust.

#include <ATen/ATen.h>

extern "C" {

// The tensor `tensor` is a view of, as a new at::Tensor for tch to own;
// null when it is no view (or on any error).
void* inferd_tensor_view_base(const void* tensor) {
  try {
    const auto& t = *static_cast<const at::Tensor*>(tensor);
    if (!t.is_view()) return nullptr;
    return new at::Tensor(t._base());
  } catch (...) {
    return nullptr;
  }
}

// A copy of the 4-d tensor `tensor` in channels-last memory (NHWC strides,
// the same shape), as a new at::Tensor for tch to own; null on any error.
// oneDNN convolves channels-last inputs with channels-last weights without
// reordering either on every call.
void* inferd_channels_last(const void* tensor) {
  try {
    const auto& t = *static_cast<const at::Tensor*>(tensor);
    return new at::Tensor(t.contiguous(at::MemoryFormat::ChannelsLast));
  } catch (...) {
    return nullptr;
  }
}

// A copy of the CPU tensor `tensor` in pinned (page-locked) host memory,
// from LibTorch's caching host allocator, as a new at::Tensor for tch to
// own; null on any error (no CUDA runtime, for one).
void* inferd_pinned(const void* tensor) {
  try {
    const auto& t = *static_cast<const at::Tensor*>(tensor);
    return new at::Tensor(t.pin_memory());
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"
