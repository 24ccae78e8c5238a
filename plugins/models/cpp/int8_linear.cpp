// Dynamic int8 linear layers on LibTorch's quantized CPU kernels (FBGEMM),
// the kernels torch.ao.quantization.quantize_dynamic puts behind
// nn.Linear: `quantized::linear_prepack` packs an int8 weight once, and
// `quantized::linear_dynamic` quantizes each input on the fly, multiplies in
// int8 and returns float. tch exposes neither (they are operators of the
// `quantized` namespace, not ATen functions), so they are reached here
// through the dispatcher. Every entry point catches C++ exceptions and hands
// back the message instead: none may cross into Rust.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/util/Exception.h>

#include <string>

#include "message.h"

namespace {

// The packed weight: an IValue holding LinearPackedParamsBase.
struct Packed {
  c10::IValue params;
};

// Drops LibTorch's warning that quantized tensors are deprecated (printed
// on the first pack, it would only puzzle an operator reading the log).
class Quiet : public c10::WarningHandler {
 public:
  void process(const c10::Warning&) override {}
};

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

}  // namespace

extern "C" {

// Quantizes `weight` ([out, in], float) to int8 with one symmetric scale per
// output row and packs it with `bias` (may be null). Returns the packed
// weight, or null with `*error` set (free it with inferd_free_message).
void* inferd_int8_linear_pack(const at::Tensor* weight, const at::Tensor* bias, char** error) {
  try {
    Quiet quiet;
    c10::WarningUtils::WarningHandlerGuard guard(&quiet);
    at::Tensor w = weight->detach().to(at::kFloat).contiguous();
    at::Tensor scales = w.abs().amax({1}).div(127.0).clamp_min(1e-12).to(at::kDouble);
    at::Tensor zero_points = at::zeros({w.size(0)}, at::kLong);
    at::Tensor q = at::quantize_per_channel(w, scales, zero_points, 0, at::kQInt8);
    static const c10::OperatorHandle prepack = op("quantized::linear_prepack");
    torch::jit::Stack stack;
    stack.emplace_back(q);
    if (bias != nullptr) {
      stack.emplace_back(bias->detach().to(at::kFloat).contiguous());
    } else {
      stack.emplace_back(c10::IValue());
    }
    prepack.callBoxed(&stack);
    return new Packed{std::move(stack.at(0))};
  } catch (const std::exception& e) {
    *error = inferd::copy_message(e.what());
    return nullptr;
  }
}

// x Wᵀ + b for a float input [.., in] with a packed weight. Activations
// are quantized per call to 8-bit unsigned, or 7-bit with `reduce_range`
// (what torch.ao always asks of FBGEMM, so that the 16-bit pair sums of
// its AVX2 kernels cannot saturate).
at::Tensor* inferd_int8_linear_forward(const at::Tensor* input, const void* packed, bool reduce_range,
                                       char** error) {
  try {
    static const c10::OperatorHandle forward = op("quantized::linear_dynamic");
    torch::jit::Stack stack;
    stack.emplace_back(input->contiguous());
    stack.emplace_back(static_cast<const Packed*>(packed)->params);
    stack.emplace_back(reduce_range);
    forward.callBoxed(&stack);
    return new at::Tensor(stack.at(0).toTensor());
  } catch (const std::exception& e) {
    *error = inferd::copy_message(e.what());
    return nullptr;
  }
}

void inferd_int8_linear_free(void* packed) { delete static_cast<Packed*>(packed); }

void inferd_free_message(char* message) { std::free(message); }

}  // extern "C"
