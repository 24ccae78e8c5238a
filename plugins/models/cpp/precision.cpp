// LibTorch's settings for CUDA devices. float32 means IEEE float32 on CUDA
// too. PyTorch lets cuDNN convolutions
// use TF32 (10-bit mantissas) unless told otherwise; a model loaded in
// float32 computes in float32, as it does on the CPU, so its answers match
// the CPU's and transformers' float32 ones. (Matrix products are already
// IEEE by LibTorch's default.) Half-precision models are not affected.

#include <ATen/Context.h>

extern "C" {

// Turns TF32 off for CUDA convolutions and matrix products, and cuDNN's
// attention off (scaled_dot_product_attention then uses its flash and
// memory-efficient kernels): cuDNN's builds an execution plan for each new
// shape, and a decoder's keys grow by one position every step, which made
// float16 generation on an H200 slower than float32. 0 on success.
int inferd_cuda_settings() {
  try {
    auto& context = at::globalContext();
    context.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, at::Float32Precision::IEEE);
    context.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, at::Float32Precision::IEEE);
    context.setSDPUseCuDNN(false);
    return 0;
  } catch (...) {
    return 1;
  }
}

// Whether CUDA convolutions compute in IEEE float32 now: 1 yes, 0 no.
int inferd_cuda_conv_is_ieee() {
  try {
    return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV) ==
           at::Float32Precision::IEEE;
  } catch (...) {
    return 0;
  }
}

// Whether scaled_dot_product_attention may use cuDNN's kernels: 1 yes.
int inferd_cuda_cudnn_attention() {
  return at::globalContext().userEnabledCuDNNSDP() ? 1 : 0;
}

}  // extern "C"
