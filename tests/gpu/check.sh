#!/usr/bin/env bash
# The GPU check, on a machine with a CUDA GPU whose python has PyTorch but
# no Rust toolchain (how it ran for the closing notes). tests/gpu/bundle.sh
# packs the binaries (built against that machine's LibTorch), the fixtures
# and transformers' wheels into one archive cut in pieces, gpu-carry/pNN/,
# that arrive one copy at a time: `tests/gpu/check.sh stash` keeps the
# pieces just copied in target/stash; the last copy runs
# `tests/gpu/check.sh [SUITES...]`: it unpacks everything, runs the parity
# suites on cuda:0 in float32 and the dtype suite there, then the GPU
# benchmark. On a GPU machine that builds inferd itself, run instead:
#   INFERD_TEST_DEVICE=cuda:0 cargo test --release -p inferd-tests --test e2e
#   tests/benches/gpu.sh
# OUT: where logs go.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/gpu-check}"
STASH="$ROOT/target/stash"
mkdir -p "$OUT" "$STASH" target/release
step() { echo "== $(date +%T) $*"; }
for piece in gpu-carry/p*/piece.*; do cp "$piece" "$STASH"/; done
ls -la "$STASH"
[[ "${1:-}" == stash ]] && exit 0

step "unpacking"
cat "$STASH"/piece.* | tar -xJf - -C "$ROOT" || { echo "a piece is missing"; exit 1; }
WHISPER=target/fixtures/models/whisper-tiny.en
if [[ -f "$WHISPER/model.f16.safetensors" ]]; then
  python3 - "$WHISPER" <<'PYEOF'
import os, sys
from safetensors.torch import load_file, save_file
half = os.path.join(sys.argv[1], "model.f16.safetensors")
save_file({k: t.float() if t.is_floating_point() else t for k, t in load_file(half).items()},
          os.path.join(sys.argv[1], "model.safetensors"))
os.remove(half)
PYEOF
fi
# The binaries' rpath names the build machine's LibTorch and the e2e tests
# their source tree: both point here.
TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
BUILT_TORCH="$(cat target/gpu/torch-dir)"
SOURCE="$(cat target/gpu/source-dir)"
mkdir -p "$BUILT_TORCH" "$(dirname "$SOURCE")"
ln -sfn "$TORCH_LIB" "$BUILT_TORCH/lib"
[[ "$SOURCE" -ef "$ROOT" ]] || ln -sfn "$ROOT" "$SOURCE"
if ls target/gpu/whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site target/gpu/whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
ldd target/release/inferd | grep -E "libtorch|not found"
ls target/fixtures/models | wc -l

step "smoke: a model on cuda:0"
rm -f /tmp/addr
target/release/inferd --listen 127.0.0.1:0 --address-file /tmp/addr --offline --device cuda:0 \
  --model "cls:text-classification=target/fixtures/models/distilbert-cls" > "$OUT/smoke.log" 2>&1 &
SMOKE=$!
for _ in $(seq 1 300); do [[ -s /tmp/addr ]] && break; sleep 0.1; done
for _ in $(seq 1 200); do
  target/release/inferctl --addr "http://$(cat /tmp/addr)" models get cls 2>/dev/null | grep -qE "ready|failed" && break
  kill -0 $SMOKE 2>/dev/null || break
  sleep 0.3
done
target/release/inferctl --addr "http://$(cat /tmp/addr)" models get cls
target/release/inferctl --addr "http://$(cat /tmp/addr)" classify --model cls "a wonderful film" || tail -20 "$OUT/smoke.log"
kill $SMOKE; wait $SMOKE 2>/dev/null

SUITES=(${@:-classify text_tasks generation seq2seq vision audio whisper depth segmentation tts truncation multi_task joining dtype})
E2E="$(ls target/release/e2e-* | head -1)"
export INFERD_TEST_DEVICE=cuda:0 INFERD_RELEASE_DIR="$ROOT/target/release" INFERD_FIXTURES="$ROOT/target/fixtures"
step "parity suites on cuda:0: ${SUITES[*]}"
# Tests of the models not copied (see bundle.sh: the real MiniLM and
# HiFi-GAN weights, gpt2-slow, whisper-tiny.en unless sent) are skipped;
# so is the multi_task test of the test-only plugins, which are not sent.
SKIPS=(minilm needs_a_matching_vocoder cancelling_a_stream_stops_its_generation a_request_joins_a_running_generation
       joined_requests_that_are_cancelled requests_joining_at_different_steps
       tasks_that_cannot_share_a_model_are_refused ${SKIP_MORE:-})
if [[ ! -d target/fixtures/models/whisper-tiny.en ]]; then
  SKIPS+=(transcriptions_segments_and_languages_equal_the_pipeline requests_whisper_cannot_serve_get_clear_errors
          streaming_sends_segments_as_windows_are_decoded cancelling_a_stream_stops_its_transcription)
fi
timeout "${PARITY_SECONDS:-330}" "$E2E" --test-threads "${THREADS:-12}" "${SUITES[@]/%/::}" "${SKIPS[@]/#/--skip=}" 2>&1 \
  | tee "$OUT/parity.log" | grep -E "^test |panicked" | grep -v " ok$" | cut -c1-600
grep -E "^test result" "$OUT/parity.log"

step "GPU benchmark"
BENCH_PYTHON=python3 timeout "${BENCH_SECONDS:-300}" tests/benches/gpu.sh 2>&1 | tee "$OUT/bench.log" | tail -40
step "done"
