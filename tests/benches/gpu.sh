#!/usr/bin/env bash
# The GPU benchmark: text classification, generation and summarization at
# real sizes, inferd on a CUDA device against transformers on the same
# device, in each dtype of DTYPES, in one invocation; prints a table.
#
#   tests/benches/gpu.sh                  # cuda:0, float32 and float16
#   DEVICE=cuda:1 DTYPES=float32 tests/benches/gpu.sh
#
# It builds what it needs as run.sh does, unless BENCH_PYTHON names a
# python with torch and transformers and target/release already holds the
# binaries (how the device check runs it: tests/gpu/check.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [[ -n "${BENCH_PYTHON:-}" ]]; then
  PY="$BENCH_PYTHON"
else
  source "$ROOT/scripts/setup.sh"
  PY="$VENV/bin/python"
  "$PY" tests/fixtures/make_fixtures.py >/dev/null
  cargo build --release -q -p inferd-bench
fi
DEVICE="${DEVICE:-cuda:0}"
DTYPES="${DTYPES:-float32 float16}"
BENCH="$ROOT/target/bench"
mkdir -p "$BENCH"
"$PY" tests/benches/reference.py make-models --out "$BENCH" --what generate
"$PY" tests/benches/reference.py make-models --out "$BENCH" --what classify
"$PY" tests/benches/reference.py make-models --out "$BENCH" --what summarize

PAYLOAD="$BENCH/payload.txt"
ARTICLES="$BENCH/articles.txt"
"$PY" - "$PAYLOAD" "$ARTICLES" <<'PYEOF'
import sys, random
random.seed(0)
words = "the a movie was great terrible plot actors music long short boring exciting story film scene ending".split()
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(" ".join(random.choice(words) for _ in range(58)) + "\n")
words = ("the council approved a plan to build new bridges over river project will cost million francs and "
         "should be finished officials said city engineers expect traffic to fall by third after opening").split()
def article(seed):
    random.seed(seed)
    return " ".join(" ".join(random.choice(words) for _ in range(20)).capitalize() + "." for _ in range(25))
open(sys.argv[2], "w").write("\n".join(article(seed) for seed in (1, 2, 3, 4)))
PYEOF

RESULTS="$BENCH/gpu-results.jsonl"
: > "$RESULTS"
tag() {  # WHO DTYPE: labels each JSON line of stdin
  sed "s/^{/{\"side\":\"$1\",\"dtype\":\"$2\",/" >> "$RESULTS"
}
start_daemon() {  # DTYPE MODEL-SPEC
  rm -f "$BENCH/address"
  target/release/inferd --listen 127.0.0.1:0 --address-file "$BENCH/address" --offline --log warn \
    --device "$DEVICE" --dtype "$1" --max-queue-delay-ms 5 --max-batch-size 32 --model "$2" &
  DAEMON=$!
  for _ in $(seq 1 600); do [[ -s "$BENCH/address" ]] && break; sleep 0.1; done
  ADDR="http://$(cat "$BENCH/address")"
  local name="${2%%:*}"
  until target/release/inferctl --addr "$ADDR" models get "$name" 2>/dev/null | grep -q ready; do
    kill -0 $DAEMON || { echo "inferd exited while loading $2" >&2; exit 1; }
    sleep 0.5
  done
}
stop_daemon() { kill $DAEMON; wait $DAEMON 2>/dev/null || true; }
trap 'kill ${DAEMON:-0} 2>/dev/null || true' EXIT

for dtype in $DTYPES; do
  start_daemon "$dtype" "cls:text-classification=$BENCH/distilbert-base-cls"
  for c in 1 8 32; do
    target/release/inferd-bench --addr "$ADDR" --model cls classify --payload "$PAYLOAD" --concurrency "$c" \
      --requests 512 | tag inferd "$dtype"
  done
  stop_daemon
  start_daemon "$dtype" "gpt2:text-generation=$BENCH/gpt2-small"
  target/release/inferd-bench --addr "$ADDR" --model gpt2 generate --streams 1 --rounds 2 | tag inferd "$dtype"
  target/release/inferd-bench --addr "$ADDR" --model gpt2 generate --streams 8 --rounds 1 | tag inferd "$dtype"
  stop_daemon
  start_daemon "$dtype" "bart:summarization=$BENCH/distilbart-cnn-12-6"
  target/release/inferd-bench --addr "$ADDR" --model bart summarize --payload "$ARTICLES" --rounds 1 \
    | tag inferd "$dtype"
  stop_daemon
  export BENCH_DEVICE="$DEVICE" BENCH_DTYPE="$dtype"
  "$PY" tests/benches/reference.py classify --model "$BENCH/distilbert-base-cls" --threads 1 \
    --payload "$PAYLOAD" --requests 512 | tag transformers "$dtype"
  "$PY" tests/benches/reference.py generate --model "$BENCH/gpt2-small" --threads 1 | tag transformers "$dtype"
  "$PY" tests/benches/reference.py summarize --model "$BENCH/distilbart-cnn-12-6" --threads 1 \
    --payload "$ARTICLES" | tag transformers "$dtype"
done

"$PY" - "$RESULTS" "$DEVICE" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
try:
    import torch
    name = torch.cuda.get_device_name(torch.device(sys.argv[2]))
except Exception:
    name = sys.argv[2]
print(f"GPU benchmark on {name} ({sys.argv[2]}); inferd and transformers {__import__('transformers').__version__} "
      f"on the same device")
find = lambda **kw: next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)
for dtype in dict.fromkeys(r["dtype"] for r in rows):
    print(f"\n== {dtype} ==")
    per = find(bench="classify", side="transformers", dtype=dtype, who="transformers per request")
    bat = find(bench="classify", side="transformers", dtype=dtype, who="transformers batched")
    print("text classification, DistilBERT-base-sized (66M), ~64-token inputs, 512 requests")
    if per and bat:
        print(f"  transformers pipeline(): per request {per['rps']:.1f} req/s (p50 {per['p50_ms']:.1f} ms); "
              f"best batched {bat['rps']:.1f} req/s (batch_size {bat['batch_size']})")
    print(f"  {'inferd concurrency':>20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'x per-request':>15}{'x batched':>11}")
    for r in rows:
        if r["bench"] == "classify" and r["side"] == "inferd" and r["dtype"] == dtype:
            print(f"  {r['concurrency']:>20}{r['rps']:>10.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
                  f"{r['rps'] / per['rps'] if per else 0:>15.2f}{r['rps'] / bat['rps'] if bat else 0:>11.2f}")
    i1, i8 = find(bench="generate", side="inferd", dtype=dtype, streams=1), find(bench="generate", side="inferd", dtype=dtype, streams=8)
    t1, t8 = find(bench="generate", side="transformers", dtype=dtype, calls=1), find(bench="generate", side="transformers", dtype=dtype, calls=8)
    print("text generation, GPT-2 small (124M), 128 new tokens, greedy")
    print(f"  {'':34}{'inferd tok/s':>14}{'transformers tok/s':>20}{'ratio':>8}")
    for label, i, t in (("1 stream", i1, t1), ("8 streams (vs 8 sequential calls)", i8, t8)):
        if i and t:
            print(f"  {label:34}{i['tokens_per_s']:>14.1f}{t['tokens_per_s']:>20.1f}{i['tokens_per_s'] / t['tokens_per_s']:>8.2f}")
    i = find(bench="summarize", side="inferd", dtype=dtype)
    one = find(bench="summarize", side="transformers", dtype=dtype, who="transformers one at a time")
    bat = find(bench="summarize", side="transformers", dtype=dtype, who="transformers batched")
    print("summarization, distilbart-cnn-12-6-sized BART (306M), 4 articles of 500 words, num_beams 4")
    if i and one and bat:
        print(f"  inferd {i['seconds']:.2f} s (4 concurrent requests); pipeline() one at a time {one['seconds']:.2f} s "
              f"({one['seconds'] / i['seconds']:.2f}x), batch_size 4 {bat['seconds']:.2f} s "
              f"({bat['seconds'] / i['seconds']:.2f}x); same summaries: {i['summaries'] == one['summaries']} / "
              f"{i['summaries'] == bat['summaries']}")
PYEOF
