#!/usr/bin/env bash
# Soak: one daemon serving a fixture model for every task, driven for
# MINUTES (default 30) by `inferd-bench soak`: 128 clients of mixed traffic,
# 10% of requests left by their client mid-request or mid-stream, 5% garbage;
# a row of figures per minute (answers by code, latency, the daemon's RSS,
# file descriptors and threads), a summary and a verdict; then SIGTERM, and
# the daemon must exit 0. Run by hand (not part of the test command):
#   tests/benches/soak.sh [MINUTES] [inferd-bench soak options, e.g. --report-every-secs 30]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source "$ROOT/scripts/setup.sh"
MINUTES="${1:-30}"
shift $(( $# > 0 ? 1 : 0 ))
OUT="$ROOT/target/soak"
mkdir -p "$OUT"

"$VENV/bin/python" tests/fixtures/make_fixtures.py >/dev/null
cargo build --release -q -p inferd-bench

F="$ROOT/target/fixtures/models"
MODELS=(
  "cls:text-classification=$F/bert-cls"
  "nli:zero-shot-classification=$F/bert-nli"
  "mlm:fill-mask=$F/bert-mlm"
  "ner:token-classification=$F/bert-ner"
  "qa:question-answering=$F/bert-qa"
  "embed:feature-extraction=$F/bert-base"
  "gpt2:text-generation=$F/gpt2-gen"
  "vit:image-classification=$F/vit-cls"
  "sum:summarization=$F/bart-sum"
  "mt:translation=$F/marian-fr-en"
  "asr:automatic-speech-recognition=$F/w2v2-base"
)
MODEL_ARGS=()
for m in "${MODELS[@]}"; do MODEL_ARGS+=(--model "$m"); done

ADDRESS="$OUT/address"
LOG="$OUT/inferd.log"
rm -f "$ADDRESS"
target/release/inferd --listen 127.0.0.1:0 --address-file "$ADDRESS" --offline --log warn \
  "${MODEL_ARGS[@]}" 2> "$LOG" &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do [[ -s "$ADDRESS" ]] && break; sleep 0.1; done
[[ -s "$ADDRESS" ]] || { echo "soak: the daemon did not start (log: $LOG)" >&2; exit 1; }
ADDR="http://$(cat "$ADDRESS")"
for m in "${MODELS[@]}"; do
  name="${m%%:*}"
  for _ in $(seq 1 600); do
    target/release/inferctl --addr "$ADDR" models get "$name" 2>/dev/null | grep -q ready && continue 2
    kill -0 "$DAEMON" 2>/dev/null || { echo "soak: the daemon exited while loading (log: $LOG)" >&2; exit 1; }
    sleep 0.5
  done
  echo "soak: model $name never became ready (log: $LOG)" >&2
  exit 1
done

STATUS=0
target/release/inferd-bench --addr "$ADDR" soak --minutes "$MINUTES" --pid "$DAEMON" \
  --fixtures "$ROOT/target/fixtures" \
  --classify-model cls --zero-shot-model nli --fill-mask-model mlm --mask-token "[MASK]" \
  --token-classification-model ner --question-answering-model qa --embed-model embed \
  --generate-model gpt2 --image-model vit --summarize-model sum --translate-model mt \
  --transcribe-model asr "$@" || STATUS=$?

# A clean shutdown after the soak: SIGTERM, exit 0 within a minute.
kill -TERM "$DAEMON"
for _ in $(seq 1 600); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$DAEMON" 2>/dev/null; then
  echo "soak: FAIL, the daemon still runs a minute after SIGTERM (log: $LOG)"
  kill -KILL "$DAEMON"
  exit 1
fi
CODE=0
wait "$DAEMON" || CODE=$?
trap - EXIT
if [[ $CODE -ne 0 ]]; then
  echo "soak: FAIL, the daemon exited with $CODE after SIGTERM (log: $LOG)"
  exit 1
fi
echo "soak: the daemon exited 0 after SIGTERM (log: $LOG)"
exit "$STATUS"
