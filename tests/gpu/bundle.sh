#!/usr/bin/env bash
# Packs what tests/gpu/check.sh needs into gpu-carry/ (ignored by git) for a
# GPU machine reached by copies of at most 64 MiB, the checkout included,
# that keeps what it unpacks between copies: one xz archive of
#   target/fixtures  the fixtures, but for the models only the timing and
#                    loading tests use (gpt2-slow, bert-cls-large), the real
#                    HiFi-GAN, and, unless WHISPER=1, whisper-tiny.en (its
#                    weights are float16-exact: they travel in float16 and
#                    check.sh widens them back without loss);
#   target/release   the stripped binaries, plugins and e2e test binary of
#                    TARGET, a target directory built against that machine's
#                    LibTorch;
#   target/gpu       transformers 4.57.6's wheels (the benchmark's reference
#                    side), and where the binaries expect LibTorch (their
#                    rpath) and their sources (the e2e tests' root);
# cut in pieces of PIECE bytes (default 30 MB: the checkout's 13,000 fuzz
# corpus files count for about 30 MiB), one folder each: gpu-carry/pNN/.
# Send each folder in turn (`tests/gpu/check.sh stash` keeps it), the last
# with `tests/gpu/check.sh` itself.
# Usage: tests/gpu/bundle.sh TARGET LIBTORCH SOURCE
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="$1" LIBTORCH="$2" SOURCE="$3"
CARRY="$ROOT/gpu-carry"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/target/release" "$STAGE/target/gpu/whl"
cd "$ROOT/target"
EXCLUDE=(--exclude=fixtures/models/gpt2-slow --exclude=fixtures/models/bert-cls-large
         --exclude=fixtures/models/hifigan-universal --exclude=fixtures/models/whisper-tiny.en)
tar -cf - "${EXCLUDE[@]}" fixtures | tar -xf - -C "$STAGE/target"
if [[ "${WHISPER:-0}" == 1 ]]; then
  mkdir -p "$STAGE/target/fixtures/models/whisper-tiny.en"
  find fixtures/models/whisper-tiny.en -maxdepth 1 -type f ! -name model.safetensors \
    -exec cp {} "$STAGE/target/fixtures/models/whisper-tiny.en/" \;
  "$ROOT/.venv/bin/python" - fixtures/models/whisper-tiny.en/model.safetensors \
    "$STAGE/target/fixtures/models/whisper-tiny.en/model.f16.safetensors" <<'PYEOF'
import sys
from safetensors.torch import load_file, save_file
weights = load_file(sys.argv[1])
half = {k: t.half() if t.is_floating_point() else t for k, t in weights.items()}
assert all((half[k].float() == t).all() for k, t in weights.items() if t.is_floating_point()), "not float16-exact"
save_file(half, sys.argv[2])
PYEOF
fi
for f in inferd inferctl inferd-bench libinferd_plugin_text.so libinferd_plugin_vision.so libinferd_plugin_audio.so \
  libinferd_plugin_example.so; do
  strip -s -o "$STAGE/target/release/$f" "$TARGET/release/$f"
done
E2E="$(ls -t "$TARGET"/release/deps/e2e-* | grep -v '\.d$' | head -1)"
strip -s -o "$STAGE/target/release/$(basename "$E2E")" "$E2E"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$STAGE/target/gpu/whl" transformers==4.57.6 tokenizers==0.22.1 huggingface_hub==0.36.0
echo "$LIBTORCH" > "$STAGE/target/gpu/torch-dir"
echo "$SOURCE" > "$STAGE/target/gpu/source-dir"
rm -rf "$CARRY" && mkdir -p "$CARRY"
tar -cf - -C "$STAGE" target | xz -T0 -6 | split -b "${PIECE:-30000000}" -d - "$CARRY/piece."
for piece in "$CARRY"/piece.*; do
  mkdir "$CARRY/p${piece##*.}" && mv "$piece" "$CARRY/p${piece##*.}/"
done
du -sh "$CARRY"/p*
