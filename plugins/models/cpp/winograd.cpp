// 3x3 convolutions (stride 1, padding 1, one group) in float32 on the CPU
// by Winograd's minimal filtering F(4x4, 3x3) (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2015): each 4x4 block of
// the output comes from a 6x6 tile of the input with 36 multiplications per
// input and output channel pair instead of 144, so the wide convolutions of
// dense-prediction heads (DPT's fusion and head) do a quarter of the
// multiplications. Tiles are taken a chunk at a time, so that the
// transformed input and products stay of the order of the L3 cache:
// the input and output transforms run here, tile by tile across
// LibTorch's threads, channels innermost, and the 36 products of a chunk
// (one per tile position) go through oneDNN with each transformed filter
// reordered once (the operators of cpp/onednn_linear.cpp). Sums are taken
// in another order than a direct convolution's: outputs move by a few units
// of float32 rounding of the largest value (about 7e-6 relative on random
// data, against 1.5e-6 for LibTorch's own kernels). No entry point lets a
// C++ exception cross into Rust.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "message.h"
#include "onednn_ops.h"

namespace {

// Channels transformed together: one vector of lanes the compiler unrolls.
constexpr int64_t kBlock = 16;

// Bᵀ applied to the six values d[0..5] (stride `s` apart) of each lane,
// written to r[0..5] (stride `rs` apart): the input transform's 1-d step.
struct InputStep {
  static constexpr int64_t kOut = 6;
  template <int64_t kLanes>
  static void apply(const float* __restrict d, int64_t s, float* __restrict r, int64_t rs) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const float d0 = d[l], d1 = d[s + l], d2 = d[2 * s + l], d3 = d[3 * s + l], d4 = d[4 * s + l],
                  d5 = d[5 * s + l];
      r[l] = 4.f * d0 - 5.f * d2 + d4;
      r[rs + l] = -4.f * d1 - 4.f * d2 + d3 + d4;
      r[2 * rs + l] = 4.f * d1 - 4.f * d2 - d3 + d4;
      r[3 * rs + l] = -2.f * d1 - d2 + 2.f * d3 + d4;
      r[4 * rs + l] = 2.f * d1 - d2 - 2.f * d3 + d4;
      r[5 * rs + l] = 4.f * d1 - 5.f * d3 + d5;
    }
  }
};

// Aᵀ applied to the six values m[0..5] (stride `s` apart) of each lane,
// written to r[0..3] (stride `rs` apart): the output transform's 1-d step.
struct OutputStep {
  static constexpr int64_t kOut = 4;
  template <int64_t kLanes>
  static void apply(const float* __restrict m, int64_t s, float* __restrict r, int64_t rs) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const float m0 = m[l], m1 = m[s + l], m2 = m[2 * s + l], m3 = m[3 * s + l], m4 = m[4 * s + l],
                  m5 = m[5 * s + l];
      const float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
      r[l] = m0 + a + c;
      r[rs + l] = b + 2.f * d;
      r[2 * rs + l] = a + 4.f * c;
      r[3 * rs + l] = b + 8.f * d + m5;
    }
  }
};

// Step's 1-d transform applied to the columns, then the rows, of a 6x6
// tile `in` (`stride` floats per value), giving a Step::kOut square in
// `out` by way of `t` (kOut x 6). `out` may be `in`. kLanes is kBlock for
// a full block of channels, 1 for a partial one (`lanes` of them).
template <typename Step, int64_t kLanes>
inline void transform_tile(const float* in, float* t, float* out, int64_t stride, int64_t lanes) {
  constexpr int64_t kOut = Step::kOut;
  if (kLanes == kBlock) {
    for (int64_t j = 0; j < 6; ++j)
      Step::template apply<kBlock>(in + j * kBlock, 6 * kBlock, t + j * kBlock, 6 * kBlock);
    for (int64_t i = 0; i < kOut; ++i)
      Step::template apply<kBlock>(t + i * 6 * kBlock, kBlock, out + i * kOut * kBlock, kBlock);
  } else {
    for (int64_t l = 0; l < lanes; ++l) {
      for (int64_t j = 0; j < 6; ++j)
        Step::template apply<1>(in + j * stride + l, 6 * stride, t + j * stride + l, 6 * stride);
      for (int64_t i = 0; i < kOut; ++i)
        Step::template apply<1>(t + i * 6 * stride + l, stride, out + i * kOut * stride + l, stride);
    }
  }
}

// Copies `lanes` floats (kLanes of them where the block is full).
template <int64_t kLanes>
inline void copy_lanes(const float* __restrict from, float* __restrict to, int64_t lanes) {
  if (kLanes == kBlock) {
    for (int64_t l = 0; l < kBlock; ++l) to[l] = from[l];
  } else {
    for (int64_t l = 0; l < lanes; ++l) to[l] = from[l];
  }
}

// The input transform of one tile for channels c0 .. c0 + lanes: the 6x6
// window at (y0, x0) of image `image` of `xs` ([N, H, W, C]; zero outside
// the image, the padding) to Bᵀ d B, position p written at
// `v + p * plane`. kLanes is kBlock for a full block (the loops then have
// a constant length and vectorize), 1 for a partial one.
template <int64_t kLanes>
inline void input_tile(const float* xs, int64_t h, int64_t w, int64_t channels, int64_t image, int64_t y0,
                       int64_t x0, int64_t c0, int64_t lanes, float* v, int64_t plane) {
  alignas(64) float d[36 * kBlock];
  alignas(64) float t[36 * kBlock];
  const int64_t stride = kLanes == kBlock ? kBlock : lanes;
  for (int64_t i = 0; i < 6; ++i) {
    const int64_t y = y0 + i;
    for (int64_t j = 0; j < 6; ++j) {
      const int64_t xx = x0 + j;
      float* dst = d + (i * 6 + j) * stride;
      if (y < 0 || y >= h || xx < 0 || xx >= w) {
        for (int64_t l = 0; l < stride; ++l) dst[l] = 0.f;
      } else {
        copy_lanes<kLanes>(xs + ((image * h + y) * w + xx) * channels + c0, dst, lanes);
      }
    }
  }
  transform_tile<InputStep, kLanes>(d, t, d, stride, lanes);
  for (int64_t p = 0; p < 36; ++p) copy_lanes<kLanes>(d + p * stride, v + p * plane, lanes);
}

// The output transform of one tile for output channels c0 .. c0 + lanes:
// position p read at `m[p]`, Aᵀ s A plus the bias written to the 4x4 block
// at (y0, x0) of image `image` of `os` ([N, H, W, out]), cut at the edges.
template <int64_t kLanes>
inline void output_tile(const float* const* m, float* os, const float* bs, int64_t h, int64_t w,
                        int64_t out_channels, int64_t image, int64_t y0, int64_t x0, int64_t c0, int64_t lanes) {
  alignas(64) float s[36 * kBlock];
  alignas(64) float t[24 * kBlock];
  alignas(64) float r[16 * kBlock];
  const int64_t stride = kLanes == kBlock ? kBlock : lanes;
  for (int64_t p = 0; p < 36; ++p) copy_lanes<kLanes>(m[p] + c0, s + p * stride, lanes);
  transform_tile<OutputStep, kLanes>(s, t, r, stride, lanes);
  for (int64_t i = 0; i < 4 && y0 + i < h; ++i) {
    for (int64_t j = 0; j < 4 && x0 + j < w; ++j) {
      float* __restrict dst = os + ((image * h + y0 + i) * w + x0 + j) * out_channels + c0;
      const float* __restrict src = r + (i * 4 + j) * stride;
      if (bs == nullptr) {
        copy_lanes<kLanes>(src, dst, lanes);
      } else if (kLanes == kBlock) {
        for (int64_t l = 0; l < kBlock; ++l) dst[l] = src[l] + bs[c0 + l];
      } else {
        for (int64_t l = 0; l < lanes; ++l) dst[l] = src[l] + bs[c0 + l];
      }
    }
  }
}

// The bytes a chunk's transformed input may take (its products take about
// as much again for as many outputs as inputs): of the order of a server
// processor's L3 cache, large enough that each oneDNN product has
// hundreds of rows.
constexpr int64_t kChunkBytes = 32 << 20;

}  // namespace

// A 3x3 convolution's filters transformed (G g Gᵀ) and reordered for
// oneDNN: one [out, in] weight per tile position.
struct InferdWinograd {
  int64_t in_channels;
  int64_t out_channels;
  std::vector<at::Tensor> packed;
};

extern "C" {

int64_t inferd_winograd_chunk(int64_t channels);

// The transformed filters of a 3x3 `weight` [out, in, 3, 3] (computed in
// double, held in float32), reordered for a chunk's products. Null with
// `*error` set on failure.
InferdWinograd* inferd_winograd_filters(const at::Tensor* weight, char** error) {
  try {
    TORCH_CHECK(weight->dim() == 4 && weight->size(2) == 3 && weight->size(3) == 3, "a 3x3 weight is needed");
    const at::Tensor g = at::tensor({1.0 / 4, 0.0, 0.0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
                                     1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0.0, 0.0, 1.0},
                                    at::kDouble)
                             .view({6, 3});
    const at::Tensor w = weight->to(at::kDouble);
    // [36, out, in]: position a * 6 + b of the 6x6 tile.
    const at::Tensor u = at::einsum("ai,ocij,bj->aboc", {g, w, g}).reshape({36, w.size(0), w.size(1)}).to(at::kFloat);
    auto filters = std::make_unique<InferdWinograd>();
    filters->in_channels = w.size(1);
    filters->out_channels = w.size(0);
    for (int64_t p = 0; p < 36; ++p) {
      std::vector<c10::IValue> stack{u[p].contiguous(), c10::IValue(inferd_winograd_chunk(w.size(1)))};
      inferd::reorder_op().callBoxed(&stack);
      filters->packed.push_back(stack.at(0).toTensor());
    }
    return filters.release();
  } catch (const std::exception& e) {
    *error = inferd::copy_message(e.what());
    return nullptr;
  } catch (...) {
    *error = inferd::copy_message("unknown C++ exception");
    return nullptr;
  }
}

void inferd_winograd_free(InferdWinograd* filters) { delete filters; }

// The tile rows a chunk takes for `channels` input channels: what fits
// kChunkBytes, at least 64, a multiple of 16.
int64_t inferd_winograd_chunk(int64_t channels) {
  const int64_t rows = kChunkBytes / (36 * 4 * std::max<int64_t>(1, channels));
  return std::max<int64_t>(64, rows / 16 * 16);
}

// conv2d(input, weight, bias, stride 1, padding 1) for `input` [N, C, H, W]
// float32 on the CPU, from the weight's `filters` and `bias` [out] (may be
// null). The output [N, out, H, W] is held channels-last, as oneDNN's
// convolutions give it for channels-last input. Null with `*error` set on
// failure.
at::Tensor* inferd_winograd_conv3x3(const at::Tensor* input, const InferdWinograd* filters, const at::Tensor* bias,
                                    char** error) {
  try {
    TORCH_CHECK(input->dim() == 4 && input->scalar_type() == at::kFloat && input->device().is_cpu(),
                "a float32 CPU feature map [N, C, H, W] is needed");
    TORCH_CHECK(input->size(1) == filters->in_channels, "the input has ", input->size(1),
                " channels where the convolution takes ", filters->in_channels);
    const int64_t n = input->size(0), channels = input->size(1), h = input->size(2), w = input->size(3);
    const int64_t out_channels = filters->out_channels;
    const int64_t tiles_h = (h + 3) / 4, tiles_w = (w + 3) / 4;
    const int64_t tiles = n * tiles_h * tiles_w;
    // [N, H, W, C] in memory.
    const at::Tensor x = input->permute({0, 2, 3, 1}).contiguous();
    const float* xs = x.data_ptr<float>();
    at::Tensor out = at::empty({n, h, w, out_channels}, x.options());
    float* os = out.data_ptr<float>();
    at::Tensor b;
    const float* bs = nullptr;
    if (bias != nullptr) {
      TORCH_CHECK(bias->device().is_cpu() && bias->numel() == filters->out_channels, "the bias has ", bias->numel(),
                  " values on ", bias->device(), ", the convolution ", filters->out_channels, " outputs on the CPU");
      b = bias->to(at::kFloat).contiguous();
      bs = b.data_ptr<float>();
    }
    const int64_t chunk = std::min(tiles, inferd_winograd_chunk(channels));
    at::Tensor v = at::empty({36, chunk, channels}, x.options());
    float* vs = v.data_ptr<float>();
    const int64_t plane = chunk * channels;
    std::vector<at::Tensor> m(36);
    std::vector<const float*> ms(36);

    for (int64_t first = 0; first < tiles; first += chunk) {
      const int64_t count = std::min(chunk, tiles - first);
      // The input transform of the chunk's tiles: V[p][tile][c].
      at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          const int64_t tile = first + k;
          const int64_t image = tile / (tiles_h * tiles_w);
          const int64_t y0 = (tile / tiles_w) % tiles_h * 4 - 1, x0 = tile % tiles_w * 4 - 1;
          float* row = vs + k * channels;
          int64_t c0 = 0;
          for (; c0 + kBlock <= channels; c0 += kBlock)
            input_tile<kBlock>(xs, h, w, channels, image, y0, x0, c0, kBlock, row + c0, plane);
          if (c0 < channels) input_tile<1>(xs, h, w, channels, image, y0, x0, c0, channels - c0, row + c0, plane);
        }
      });
      // One product per tile position: [count, in] x [in, out].
      for (int64_t p = 0; p < 36; ++p) {
        std::vector<c10::IValue> stack{
            v[p].narrow(0, 0, count),
            filters->packed[p],
            c10::IValue(),
            c10::IValue("none"),
            c10::IValue(c10::List<std::optional<at::Scalar>>()),
            c10::IValue(),
        };
        inferd::linear_op().callBoxed(&stack);
        m[p] = stack.at(0).toTensor().contiguous();
        ms[p] = m[p].data_ptr<float>();
      }
      // The output transform, plus the bias, into the chunk's 4x4 blocks.
      at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
        const float* products[36];
        for (int64_t k = begin; k < end; ++k) {
          const int64_t tile = first + k;
          const int64_t image = tile / (tiles_h * tiles_w);
          const int64_t y0 = (tile / tiles_w) % tiles_h * 4, x0 = tile % tiles_w * 4;
          for (int64_t p = 0; p < 36; ++p) products[p] = ms[p] + k * out_channels;
          int64_t c0 = 0;
          for (; c0 + kBlock <= out_channels; c0 += kBlock)
            output_tile<kBlock>(products, os, bs, h, w, out_channels, image, y0, x0, c0, kBlock);
          if (c0 < out_channels)
            output_tile<1>(products, os, bs, h, w, out_channels, image, y0, x0, c0, out_channels - c0);
        }
      });
    }
    return new at::Tensor(out.permute({0, 3, 1, 2}));
  } catch (const std::exception& e) {
    *error = inferd::copy_message(e.what());
    return nullptr;
  } catch (...) {
    *error = inferd::copy_message("unknown C++ exception");
    return nullptr;
  }
}

}  // extern "C"
