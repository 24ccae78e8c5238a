#!/usr/bin/env bash
# Packs what tests/gpu/check.sh needs into gpu-carry/ (ignored by git), in
# pieces of under 60 MB, for a GPU machine reached by copying at most 64 MiB
# at a time and that keeps what it unpacks between copies:
#   c1: the fixtures, but for the four largest models (timing and loading
#       tests only) and the pieces below;
#   c2, c3: whisper-tiny.en (the real weights: float16-exact, so sent in
#       float16 and widened back without loss) and the ASR references,
#       split in two; c3 also transformers 4.57.6's wheels (the benchmark's
#       reference side);
#   c4: the dense vision references (depth, segmentation), the stripped
#       release binaries and plugins and the e2e test binary of TARGET (a
#       target directory built against the GPU machine's LibTorch), and where
#       the binaries expect LibTorch (their rpath) and their sources (the e2e
#       tests' root).
# Usage: tests/gpu/bundle.sh TARGET LIBTORCH SOURCE
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="$1" LIBTORCH="$2" SOURCE="$3"
CARRY="$ROOT/gpu-carry"
PY="$ROOT/.venv/bin/python"
rm -rf "$CARRY" && mkdir -p "$CARRY"/{c1,c2,c3/whl,c4} "$CARRY/tmp/bin"
cd "$ROOT/target"
DENSE=(fixtures/references/segmentation fixtures/references/depth fixtures/references/mask2former
       fixtures/references/detr_panoptic)
tar -cf - --exclude=fixtures/models/whisper-tiny.en --exclude=fixtures/models/gpt2-slow \
  --exclude=fixtures/models/bert-cls-large --exclude=fixtures/models/hifigan-universal \
  --exclude=fixtures/references/asr "${DENSE[@]/#/--exclude=}" fixtures | xz -T0 -6 > "$CARRY/c1/f.tar.xz"
tar -cf - "${DENSE[@]}" | xz -T0 -6 > "$CARRY/c4/dense.tar.xz"
W="$CARRY/tmp/w/fixtures"
mkdir -p "$W/models" "$W/references"
cp -r fixtures/models/whisper-tiny.en "$W/models/" && rm "$W/models/whisper-tiny.en/model.safetensors"
cp -r fixtures/references/asr "$W/references/"
"$PY" - fixtures/models/whisper-tiny.en/model.safetensors "$W/models/whisper-tiny.en/model.f16.safetensors" <<'PYEOF'
import sys
from safetensors.torch import load_file, save_file
weights = load_file(sys.argv[1])
half = {k: t.half() if t.is_floating_point() else t for k, t in weights.items()}
assert all((half[k].float() == t).all() for k, t in weights.items() if t.is_floating_point()), "not float16-exact"
save_file(half, sys.argv[2])
PYEOF
tar -cf - -C "$CARRY/tmp/w" fixtures | xz -T0 -6 > "$CARRY/tmp/w16.tar.xz"
split -b 40000000 "$CARRY/tmp/w16.tar.xz" "$CARRY/tmp/w16."
mv "$CARRY/tmp/w16.aa" "$CARRY/c2/" && mv "$CARRY/tmp/w16.ab" "$CARRY/c3/"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$CARRY/c3/whl" transformers==4.57.6 tokenizers==0.22.1 huggingface_hub==0.36.0
for f in inferd inferctl inferd-bench libinferd_plugin_text.so libinferd_plugin_vision.so libinferd_plugin_audio.so \
  libinferd_plugin_example.so; do
  strip -s -o "$CARRY/tmp/bin/$f" "$TARGET/release/$f"
done
E2E="$(ls -t "$TARGET"/release/deps/e2e-* | grep -v '\.d$' | head -1)"
strip -s -o "$CARRY/tmp/bin/$(basename "$E2E")" "$E2E"
tar -cf - -C "$CARRY/tmp/bin" . | xz -T0 -6 > "$CARRY/c4/bin.tar.xz"
echo "$LIBTORCH" > "$CARRY/c4/torch-dir"
echo "$SOURCE" > "$CARRY/c4/source-dir"
rm -rf "$CARRY/tmp"
du -sh "$CARRY"/*
