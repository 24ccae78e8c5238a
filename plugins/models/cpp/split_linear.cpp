// Linear layers for inputs of a few rows (a decoding step), their output
// columns split among LibTorch's intra-op threads. With one to a few rows
// MKL computes x Wᵀ as a matrix-vector product on one thread, and a
// decoding step is bound by reading the weights from memory; two cores
// read them about twice as fast as one. Each thread computes a slice of
// the output columns with the same BLAS call LibTorch makes for the whole
// layer, cut at multiples of `align` columns, which leaves every output
// bit for bit what the whole product gives. No entry point lets a C++
// exception cross into Rust.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "message.h"

extern "C" {

// input [.., in] times `weight` plus `bias` (may be null): weight [out, in]
// as nn.Linear holds it, or [in, out] with `in_out` (GPT-2's Conv1D).
// Returns the output [.., out], or null with `*error` set (free it with
// inferd_free_message).
at::Tensor* inferd_split_linear(const at::Tensor* input, const at::Tensor* weight, const at::Tensor* bias,
                                bool in_out, int64_t align, char** error) {
  try {
    const at::Tensor& w = *weight;
    const int64_t in = in_out ? w.size(0) : w.size(1);
    const int64_t n = in_out ? w.size(1) : w.size(0);
    auto sizes = input->sizes().vec();
    sizes.back() = n;
    const at::Tensor x = input->reshape({-1, in});
    const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
    int64_t chunk = (n + threads - 1) / threads;
    chunk = std::max<int64_t>(align, (chunk + align - 1) / align * align);
    const int64_t chunks = (n + chunk - 1) / chunk;
    // Each slice into a tensor of its own: writing into a strided slice of
    // one output would change the output's row stride, and with it MKL's
    // choice of kernel. Inside the parallel region each BLAS call runs on
    // its own thread alone (MKL takes one thread there).
    std::vector<at::Tensor> parts(chunks);
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const int64_t from = c * chunk;
        const int64_t len = std::min(n, from + chunk) - from;
        const c10::optional<at::Tensor> b =
            bias != nullptr ? c10::optional<at::Tensor>(bias->narrow(0, from, len)) : c10::nullopt;
        if (in_out) {
          const at::Tensor w_part = w.narrow(1, from, len);
          parts[c] = b.has_value() ? at::addmm(*b, x, w_part) : at::mm(x, w_part);
        } else {
          parts[c] = at::linear(x, w.narrow(0, from, len), b);
        }
      }
    });
    at::Tensor out = chunks == 1 ? parts[0] : at::cat(parts, 1);
    return new at::Tensor(out.view(sizes));
  } catch (const std::exception& e) {
    *error = inferd::copy_message(e.what());
    return nullptr;
  } catch (...) {
    *error = inferd::copy_message("unknown C++ exception");
    return nullptr;
  }
}

}  // extern "C"
