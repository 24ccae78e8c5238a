#!/usr/bin/env bash
# Benchmarks: inferd against transformers on the same weights and the same
# thread count, in one invocation; prints a table. Run by hand (not part of
# the test command):  tests/benches/run.sh [generate|arrivals|summary-arrivals|classify|isolation|int8|startup|shared|summarize|whisper|detect|depth|segment|speak|all]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source "$ROOT/scripts/setup.sh"
WHAT="${1:-all}"
THREADS="${THREADS:-$(nproc)}"
BENCH="$ROOT/target/bench"
PY="$VENV/bin/python"
mkdir -p "$BENCH"

"$PY" tests/fixtures/make_fixtures.py >/dev/null
"$PY" tests/benches/reference.py make-models --out "$BENCH" --what "$WHAT"
cargo build --release -q -p inferd-bench

# ~64-token inputs for classification.
PAYLOAD="$BENCH/payload.txt"
"$PY" - "$PAYLOAD" <<'PYEOF'
import sys, random
random.seed(0)
words = "the a movie was great terrible plot actors music long short boring exciting story film scene ending".split()
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(" ".join(random.choice(words) for _ in range(58)) + "\n")
PYEOF

# One daemon per benchmark, serving only the model measured (the `shared`
# benchmark measures what other loaded models cost).
METRICS="127.0.0.1:${METRICS_PORT:-9464}"
start_daemon() {
  local addr_file="$BENCH/address"
  rm -f "$addr_file"
  target/release/inferd --listen 127.0.0.1:0 --address-file "$addr_file" --offline --log warn \
    --metrics-listen "$METRICS" \
    --intra-op-threads "$THREADS" --max-queue-delay-ms 5 --max-batch-size 32 --model "$1" "${@:2}" &
  DAEMON=$!
  for _ in $(seq 1 600); do [[ -s "$addr_file" ]] && break; sleep 0.1; done
  ADDR="http://$(cat "$addr_file")"
  local name="${1%%:*}"
  until target/release/inferctl --addr "$ADDR" models get "$name" 2>/dev/null | grep -q ready; do sleep 0.5; done
}
# A daemon from a config file, once each model named after it is ready.
start_config_daemon() {  # CONFIG NAME...
  rm -f "$BENCH/address"
  target/release/inferd --config "$1" --listen 127.0.0.1:0 --address-file "$BENCH/address" \
    --offline --log warn --intra-op-threads "$THREADS" --max-queue-delay-ms 5 --max-batch-size 32 &
  DAEMON=$!
  for _ in $(seq 1 600); do [[ -s "$BENCH/address" ]] && break; sleep 0.1; done
  ADDR="http://$(cat "$BENCH/address")"
  local name
  for name in "${@:2}"; do
    until [[ "$(target/release/inferctl --addr "$ADDR" models get "$name" 2>/dev/null)" == *ready* ]]; do sleep 0.5; done
  done
}
trap 'kill ${DAEMON:-0} 2>/dev/null || true' EXIT

# Five models of real sizes from serve.toml's set (2.8 GB of weights), for
# the start-up and shared-machine benchmarks.
write_set_config() {
  cat > "$BENCH/startup.toml" <<EOF2
[[models]]
name = "cls"
task = "text-classification"
source = "$BENCH/distilbert-base-cls"
[[models]]
name = "gpt2"
task = "text-generation"
source = "$BENCH/gpt2-small"
[[models]]
name = "bart"
task = "summarization"
source = "$BENCH/distilbart-cnn-12-6"
[[models]]
name = "whisper"
task = "automatic-speech-recognition"
source = "$BENCH/whisper-base"
[[models]]
name = "tts"
task = "text-to-speech"
source = "$BENCH/speecht5-tts"
vocoder = "$BENCH/speecht5-hifigan"
EOF2
}

RESULTS="$BENCH/results.jsonl"
: > "$RESULTS"
if [[ "$WHAT" == generate || "$WHAT" == all ]]; then
  start_daemon "gpt2:text-generation=$BENCH/gpt2-small"
  B="target/release/inferd-bench --addr $ADDR --model gpt2"
  $B generate --streams 1 --rounds 2 | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  $B generate --streams 8 --rounds 1 | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  "$PY" tests/benches/reference.py generate --model "$BENCH/gpt2-small" --threads "$THREADS" >> "$RESULTS"
fi
if [[ "$WHAT" == arrivals || "$WHAT" == all ]]; then
  # Continuous batching: Poisson arrivals (about 8 sequences running at
  # once), each 16 to 256 greedy new tokens; then the same binary with
  # static batching, then transformers serving them one at a time.
  RATE="${ARRIVALS_RATE:-1.0}"
  PROMPT="The quick brown fox jumps over the lazy dog"
  for mode in joined static; do
    extra=""; [[ "$mode" == static ]] && extra="--static-batching"
    rm -f "$BENCH/address"
    target/release/inferd --listen 127.0.0.1:0 --address-file "$BENCH/address" --offline --log warn $extra \
      --intra-op-threads "$THREADS" --max-queue-delay-ms 5 --max-batch-size 32 \
      --model "gpt2:text-generation=$BENCH/gpt2-small" &
    DAEMON=$!
    for _ in $(seq 1 600); do [[ -s "$BENCH/address" ]] && break; sleep 0.1; done
    ADDR="http://$(cat "$BENCH/address")"
    until target/release/inferctl --addr "$ADDR" models get gpt2 2>/dev/null | grep -q ready; do sleep 0.5; done
    target/release/inferd-bench --addr "$ADDR" --model gpt2 arrivals --prompt "$PROMPT" --rate "$RATE" \
      | sed "s/^{/{\"who\":\"inferd $mode\",/" > "$BENCH/arrivals-$mode.json"
    cat "$BENCH/arrivals-$mode.json" >> "$RESULTS"
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
  done
  "$PY" tests/benches/reference.py arrivals --model "$BENCH/gpt2-small" --threads "$THREADS" --prompt "$PROMPT" \
    --inferd "$BENCH/arrivals-joined.json" >> "$RESULTS"
fi
if [[ "$WHAT" == summary-arrivals || "$WHAT" == all ]]; then
  # Continuous batching of summaries: ~150-word articles arriving as a
  # Poisson process, 16 to 96 new tokens each with the model's 4 beams;
  # joined, static, then transformers one request at a time.
  RATE="${SUMMARY_ARRIVALS_RATE:-0.5}"
  SHORT_ARTICLES="$BENCH/short-articles.txt"
  "$PY" - "$SHORT_ARTICLES" <<'EOF2'
import sys, random
words = ("the council approved a plan to build new bridges over river project will cost million francs and "
         "should be finished officials said city engineers expect traffic to fall by third after opening").split()
def article(seed):
    random.seed(seed)
    return " ".join(" ".join(random.choice(words) for _ in range(15)).capitalize() + "." for _ in range(10))
open(sys.argv[1], "w").write("\n".join(article(seed) for seed in range(1, 9)))
EOF2
  for mode in joined static; do
    extra=""; [[ "$mode" == static ]] && extra="--static-batching"
    rm -f "$BENCH/address"
    target/release/inferd --listen 127.0.0.1:0 --address-file "$BENCH/address" --offline --log warn $extra \
      --metrics-listen "$METRICS" --intra-op-threads "$THREADS" --max-queue-delay-ms 5 --max-batch-size 32 \
      --model "bart:summarization=$BENCH/distilbart-cnn-12-6" &
    DAEMON=$!
    for _ in $(seq 1 600); do [[ -s "$BENCH/address" ]] && break; sleep 0.1; done
    ADDR="http://$(cat "$BENCH/address")"
    until target/release/inferctl --addr "$ADDR" models get bart 2>/dev/null | grep -q ready; do sleep 0.5; done
    target/release/inferd-bench --addr "$ADDR" --model bart summary-arrivals --payload "$SHORT_ARTICLES" \
      --rate "$RATE" | sed "s/^{/{\"who\":\"inferd $mode\",/" > "$BENCH/summary-arrivals-$mode.json"
    cat "$BENCH/summary-arrivals-$mode.json" >> "$RESULTS"
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
  done
  "$PY" tests/benches/reference.py summary-arrivals --model "$BENCH/distilbart-cnn-12-6" --threads "$THREADS" \
    --payload "$SHORT_ARTICLES" --inferd "$BENCH/summary-arrivals-joined.json" >> "$RESULTS"
fi
if [[ "$WHAT" == summarize || "$WHAT" == all ]]; then
  # 500-word articles, one per line: article.txt holds the first alone.
  ARTICLE="$BENCH/article.txt"
  ARTICLES="$BENCH/articles.txt"
  "$PY" - "$ARTICLE" "$ARTICLES" <<'EOF2'
import sys, random
words = ("the council approved a plan to build new bridges over river project will cost million francs and "
         "should be finished officials said city engineers expect traffic to fall by third after opening").split()
def article(seed):
    random.seed(seed)
    return " ".join(" ".join(random.choice(words) for _ in range(20)).capitalize() + "." for _ in range(25))
open(sys.argv[1], "w").write(article(1))
open(sys.argv[2], "w").write("\n".join(article(seed) for seed in (1, 2, 3, 4)))
EOF2
  start_daemon "bart:summarization=$BENCH/distilbart-cnn-12-6"
  target/release/inferd-bench --addr "$ADDR" --model bart summarize --payload "$ARTICLE" --rounds 2 \
    | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  target/release/inferd-bench --addr "$ADDR" --model bart summarize --payload "$ARTICLES" --rounds 1 \
    | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  "$PY" tests/benches/reference.py summarize --model "$BENCH/distilbart-cnn-12-6" --threads "$THREADS" \
    --payload "$ARTICLE" >> "$RESULTS"
  "$PY" tests/benches/reference.py summarize --model "$BENCH/distilbart-cnn-12-6" --threads "$THREADS" \
    --payload "$ARTICLES" >> "$RESULTS"
fi
if [[ "$WHAT" == classify || "$WHAT" == all ]]; then
  start_daemon "cls:text-classification=$BENCH/distilbert-base-cls"
  B="target/release/inferd-bench --addr $ADDR --model cls"
  for c in 1 8 32; do
    $B classify --payload "$PAYLOAD" --concurrency "$c" --requests 256 | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  done
  # The encoder alone: batches of the same 32 inputs, time per batch from
  # the daemon's metrics.
  $B classify --payload "$PAYLOAD" --concurrency 1 --requests 8 --inputs-per-request 32 --metrics "$METRICS" \
    | sed 's/^{/{"who":"inferd encoder",/' >> "$RESULTS"
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  "$PY" tests/benches/reference.py classify --model "$BENCH/distilbert-base-cls" --threads "$THREADS" \
    --payload "$PAYLOAD" --requests 128 >> "$RESULTS"
  "$PY" tests/benches/reference.py flops --model "$BENCH/distilbert-base-cls" --payload "$PAYLOAD" --batch 32 >> "$RESULTS"
  "$PY" tests/benches/reference.py peak --threads "$THREADS" >> "$RESULTS"
fi
if [[ "$WHAT" == isolation || "$WHAT" == all ]]; then
  # The cost of running the model in a child process (--isolation process):
  # the same classification load in-process and isolated.
  for mode in in-process process; do
    start_daemon "cls:text-classification=$BENCH/distilbert-base-cls" --isolation "$mode"
    for c in 1 32; do
      target/release/inferd-bench --addr "$ADDR" --model cls classify --payload "$PAYLOAD" --concurrency "$c" \
        --requests 256 | sed "s/^{\"bench\":\"classify\"/{\"bench\":\"isolation\",\"who\":\"$mode\"/" >> "$RESULTS"
    done
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
  done
fi
if [[ "$WHAT" == int8 || "$WHAT" == all ]]; then
  # quantize = "dynamic-int8" against float on the same models and load:
  # DistilBERT-base classification at concurrency 1 and 32, GPT-2 small one
  # stream; transformers float and with torch.ao's quantize_dynamic beside.
  start_quantized() {  # NAME TASK SOURCE QUANTIZE
    printf '[[models]]\nname = "%s"\ntask = "%s"\nsource = "%s"\nquantize = "%s"\n' "$@" > "$BENCH/int8.toml"
    start_config_daemon "$BENCH/int8.toml" "$1"
  }
  for q in none dynamic-int8; do
    who="inferd $q"; [[ "$q" == none ]] && who="inferd float"
    start_quantized cls text-classification "$BENCH/distilbert-base-cls" "$q"
    for c in 1 32; do
      target/release/inferd-bench --addr "$ADDR" --model cls classify --payload "$PAYLOAD" --concurrency "$c" \
        --requests 256 | sed "s/^{\"bench\":\"classify\"/{\"bench\":\"int8-classify\",\"who\":\"$who\"/" >> "$RESULTS"
    done
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
    start_quantized gpt2 text-generation "$BENCH/gpt2-small" "$q"
    target/release/inferd-bench --addr "$ADDR" --model gpt2 generate --streams 1 --rounds 2 \
      | sed "s/^{\"bench\":\"generate\"/{\"bench\":\"int8-generate\",\"who\":\"$who\"/" >> "$RESULTS"
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
  done
  for q in "" --int8; do
    suffix=" float"; [[ -n "$q" ]] && suffix=" torch.ao int8"
    "$PY" tests/benches/reference.py classify --model "$BENCH/distilbert-base-cls" --threads "$THREADS" \
      --payload "$PAYLOAD" --requests 128 $q --who-suffix "$suffix" | sed 's/"bench": "classify"/"bench": "int8-classify"/' >> "$RESULTS"
    "$PY" tests/benches/reference.py generate --model "$BENCH/gpt2-small" --threads "$THREADS" --calls 0 $q \
      --who-suffix "$suffix" | sed 's/"bench": "generate"/"bench": "int8-generate"/' >> "$RESULTS"
  done
fi
if [[ "$WHAT" == startup || "$WHAT" == all ]]; then
  # Start-up to SERVING with five models of real sizes (2.8 GB of weights),
  # loaded one at a time and then --parallel-loads at once (the default: the
  # cores, at most 4), files already in the page cache for both.
  write_set_config
  cat "$BENCH"/{distilbert-base-cls,gpt2-small,distilbart-cnn-12-6,whisper-base,speecht5-tts,speecht5-hifigan}/*.safetensors > /dev/null
  for loads in 1 default; do
    extra=(); [[ "$loads" != default ]] && extra=(--parallel-loads "$loads")
    started=$(date +%s.%N)
    target/release/inferd --config "$BENCH/startup.toml" --listen 127.0.0.1:0 --offline --log info \
      --intra-op-threads "$THREADS" "${extra[@]}" > "$BENCH/startup.log" 2>&1 &
    DAEMON=$!
    until grep -q "start-up models loaded; serving" "$BENCH/startup.log"; do sleep 0.05; done
    seconds=$("$PY" -c "print(round($(date +%s.%N) - $started, 3))")
    models=$(grep -c "model ready" "$BENCH/startup.log")
    echo "{\"bench\":\"startup\",\"who\":\"inferd\",\"parallel_loads\":\"$loads\",\"models_ready\":$models,\"seconds\":$seconds}" >> "$RESULTS"
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
  done
fi
if [[ "$WHAT" == shared || "$WHAT" == all ]]; then
  # Many models on one machine: GPT-2 single stream and the classifier at
  # concurrency 1 and 32, each in a daemon serving it alone, then in one
  # daemon with all five models of the start-up set loaded and warm (the
  # others idle while one is measured).
  write_set_config
  shared_runs() {
    local who="$1"
    target/release/inferd-bench --addr "$ADDR" --model gpt2 generate --streams 1 --rounds 2 \
      | sed "s/^{\"bench\":\"generate\"/{\"bench\":\"shared-generate\",\"who\":\"$who\"/" >> "$RESULTS"
  }
  shared_classify() {
    local who="$1"
    for c in 1 32; do
      target/release/inferd-bench --addr "$ADDR" --model cls classify --payload "$PAYLOAD" --concurrency "$c" \
        --requests 256 | sed "s/^{\"bench\":\"classify\"/{\"bench\":\"shared-classify\",\"who\":\"$who\"/" >> "$RESULTS"
    done
  }
  start_daemon "gpt2:text-generation=$BENCH/gpt2-small"
  shared_runs alone
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  start_daemon "cls:text-classification=$BENCH/distilbert-base-cls"
  shared_classify alone
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  start_config_daemon "$BENCH/startup.toml" cls gpt2 bart whisper tts
  shared_runs "five models"
  shared_classify "five models"
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
fi
if [[ "$WHAT" == whisper || "$WHAT" == all ]]; then
  # 30 s of speech (the committed recording tiled, 16 kHz): one full window.
  AUDIO="$BENCH/speech_30s.wav"
  "$PY" - tests/fixtures/audio/speech_16k.wav "$AUDIO" <<'PYEOF'
import sys, wave
with wave.open(sys.argv[1]) as w:
    assert w.getframerate() == 16000 and w.getnchannels() == 1
    params, frames = w.getparams(), w.readframes(w.getnframes())
n = 30 * 16000 * params.sampwidth
with wave.open(sys.argv[2], "wb") as out:
    out.setparams(params)
    out.writeframes((frames * (n // len(frames) + 1))[:n])
PYEOF
  start_daemon "whisper:automatic-speech-recognition=$BENCH/whisper-base"
  # Greedy, English given (no language detection), 64 new tokens: the same
  # work on both sides.
  B="target/release/inferd-bench --addr $ADDR --model whisper"
  T="--audio $AUDIO --language en --num-beams 1 --max-new-tokens 64"
  $B transcribe $T --requests 1 --rounds 2 --metrics "$METRICS" | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  $B transcribe $T --requests 8 --rounds 1 --metrics "$METRICS" | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  "$PY" tests/benches/reference.py transcribe --model "$BENCH/whisper-base" --threads "$THREADS" \
    --audio "$AUDIO" --language en --new-tokens 64 --calls 8 >> "$RESULTS"
fi
if [[ "$WHAT" == detect || "$WHAT" == all ]]; then
  # A 640x480 photograph (scikit-image's cat, resized with Pillow), as JPEG.
  PHOTO="$BENCH/photo_640x480.jpg"
  "$PY" - target/fixtures/images/chelsea.png "$PHOTO" <<'PYEOF'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").resize((640, 480), Image.BICUBIC).save(sys.argv[2], quality=90)
PYEOF
  start_daemon "detr:object-detection=$BENCH/detr-resnet-50"
  # Threshold 0: every one of the 100 queries is reported on both sides
  # (random weights score about 1/92 each).
  B="target/release/inferd-bench --addr $ADDR --model detr"
  $B detect --image "$PHOTO" --threshold 0 --requests 1 --rounds 3 --metrics "$METRICS" | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  $B detect --image "$PHOTO" --threshold 0 --requests 8 --rounds 1 --metrics "$METRICS" | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  "$PY" tests/benches/reference.py detect --model "$BENCH/detr-resnet-50" --threads "$THREADS" \
    --image "$PHOTO" --threshold 0 --calls 8 >> "$RESULTS"
fi
if [[ "$WHAT" == depth || "$WHAT" == all ]]; then
  PHOTO="$BENCH/photo_640x480.jpg"
  "$PY" - target/fixtures/images/chelsea.png "$PHOTO" <<'PYEOF'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").resize((640, 480), Image.BICUBIC).save(sys.argv[2], quality=90)
PYEOF
  for model in ${DEPTH_MODELS:-glpn-kitti dpt-large}; do
    start_daemon "$model:depth-estimation=$BENCH/$model"
    B="target/release/inferd-bench --addr $ADDR --model $model"
    $B depth --image "$PHOTO" --requests 1 --rounds 3 --metrics "$METRICS" \
      | sed "s/^{/{\"who\":\"inferd\",\"model\":\"$model\",/" >> "$RESULTS"
    $B depth --image "$PHOTO" --requests 4 --rounds 2 --metrics "$METRICS" \
      | sed "s/^{/{\"who\":\"inferd\",\"model\":\"$model\",/" >> "$RESULTS"
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
    "$PY" tests/benches/reference.py depth --model "$BENCH/$model" --threads "$THREADS" \
      --image "$PHOTO" --calls 4 >> "$RESULTS"
  done
fi
if [[ "$WHAT" == segment || "$WHAT" == all ]]; then
  PHOTO="$BENCH/photo_640x480.jpg"
  "$PY" - target/fixtures/images/chelsea.png "$PHOTO" <<'PYEOF'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").resize((640, 480), Image.BICUBIC).save(sys.argv[2], quality=90)
PYEOF
  for model in ${SEGMENT_MODELS:-segformer-b0 mask2former-swin-tiny}; do
    start_daemon "$model:image-segmentation=$BENCH/$model"
    B="target/release/inferd-bench --addr $ADDR --model $model"
    $B segment --image "$PHOTO" --requests 1 --rounds 3 --metrics "$METRICS" \
      | sed "s/^{/{\"who\":\"inferd\",\"model\":\"$model\",/" >> "$RESULTS"
    $B segment --image "$PHOTO" --requests 4 --rounds 2 --metrics "$METRICS" \
      | sed "s/^{/{\"who\":\"inferd\",\"model\":\"$model\",/" >> "$RESULTS"
    kill $DAEMON; wait $DAEMON 2>/dev/null || true
    "$PY" tests/benches/reference.py segment --model "$BENCH/$model" --threads "$THREADS" \
      --image "$PHOTO" --calls 4 >> "$RESULTS"
  done
fi
if [[ "$WHAT" == speak || "$WHAT" == all ]]; then
  # A 20-word sentence (102 characters, 104 tokens); maxlenratio 3.65 gives 189 steps,
  # 6 s of sound, on both sides (the bench model never stops on its own).
  TEXT="The quick brown fox jumps over the lazy dog while the old man watches from his porch in the afternoon."
  RATIO=3.65
  addr_file="$BENCH/address"
  rm -f "$addr_file"
  target/release/inferd --listen 127.0.0.1:0 --address-file "$addr_file" --offline --log warn \
    --metrics-listen "$METRICS" --intra-op-threads "$THREADS" --max-queue-delay-ms 5 --max-batch-size 32 &
  DAEMON=$!
  for _ in $(seq 1 600); do [[ -s "$addr_file" ]] && break; sleep 0.1; done
  ADDR="http://$(cat "$addr_file")"
  target/release/inferctl --addr "$ADDR" models load "$BENCH/speecht5-tts" --task text-to-speech --name tts \
    --vocoder "$BENCH/speecht5-hifigan" > /dev/null
  B="target/release/inferd-bench --addr $ADDR --model tts"
  $B speak --text "$TEXT" --maxlenratio "$RATIO" --requests 1 --rounds 3 --metrics "$METRICS" \
    | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  $B speak --text "$TEXT" --maxlenratio "$RATIO" --requests 4 --rounds 2 --metrics "$METRICS" \
    | sed 's/^{/{"who":"inferd",/' >> "$RESULTS"
  kill $DAEMON; wait $DAEMON 2>/dev/null || true
  "$PY" tests/benches/reference.py speak --model "$BENCH/speecht5-tts" --vocoder "$BENCH/speecht5-hifigan" \
    --threads "$THREADS" --text "$TEXT" --maxlenratio "$RATIO" --calls 4 >> "$RESULTS"
fi

"$PY" - "$RESULTS" "$THREADS" <<'PYEOF'
import json, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads: {sys.argv[2]}")
gen = [r for r in rows if r["bench"] == "generate"]
if gen:
    get = lambda who, key, val: next(r for r in gen if r["who"] == who and r.get(key) == val)
    i1, i8 = get("inferd", "streams", 1), get("inferd", "streams", 8)
    t1, t8 = get("transformers", "calls", 1), get("transformers", "calls", 8)
    print("\ntext generation, GPT-2 small (124M, random weights), 128 new tokens, greedy")
    print(f"{'':34}{'inferd tok/s':>14}{'transformers tok/s':>20}{'ratio':>8}")
    print(f"{'1 stream':34}{i1['tokens_per_s']:>14.1f}{t1['tokens_per_s']:>20.1f}{i1['tokens_per_s']/t1['tokens_per_s']:>8.2f}")
    print(f"{'8 streams (vs 8 sequential calls)':34}{i8['tokens_per_s']:>14.1f}{t8['tokens_per_s']:>20.1f}{i8['tokens_per_s']/t8['tokens_per_s']:>8.2f}")
summ = [r for r in rows if r["bench"] == "summarize"]
if summ:
    get = lambda who, n: next(r for r in summ if r["who"] == who and r["articles"] == n)
    i, t = get("inferd", 1), get("transformers one at a time", 1)
    print("\nsummarization, distilbart-cnn-12-6-sized BART (306M, random weights), 500-word articles, num_beams 4")
    print(f"1 article:  inferd {i['seconds']:.2f} s, transformers pipeline() {t['seconds']:.2f} s: "
          f"{t['seconds'] / i['seconds']:.2f}x; same summary: {i['summaries'] == t['summaries']}")
    n = max(r["articles"] for r in summ)
    if n > 1:
        i, one, bat = get("inferd", n), get("transformers one at a time", n), get("transformers batched", n)
        print(f"{n} articles: inferd {i['seconds']:.2f} s ({n} concurrent requests), pipeline() one at a time "
              f"{one['seconds']:.2f} s ({one['seconds'] / i['seconds']:.2f}x), batch_size {n} {bat['seconds']:.2f} s "
              f"({bat['seconds'] / i['seconds']:.2f}x); same summaries: "
              f"{i['summaries'] == one['summaries']} / {i['summaries'] == bat['summaries']}")
cls = [r for r in rows if r["bench"] == "classify"]
if cls:
    per = next(r for r in cls if r["who"] == "transformers per request")
    bat = next(r for r in cls if r["who"] == "transformers batched")
    print("\ntext classification, DistilBERT-base-sized (66M, random weights), ~64-token inputs")
    print(f"transformers pipeline(): per request {per['rps']:.1f} req/s (p50 {per['p50_ms']:.1f} ms, p99 {per['p99_ms']:.1f} ms); "
          f"best batched {bat['rps']:.1f} req/s (batch_size {bat['batch_size']})")
    print(f"{'concurrency':>12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'x per-request':>15}{'x batched':>11}")
    for r in (r for r in cls if r["who"] == "inferd"):
        print(f"{r['concurrency']:>12}{r['rps']:>10.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
              f"{r['rps']/per['rps']:>15.2f}{r['rps']/bat['rps']:>11.2f}")
    enc = next(r for r in cls if r["who"] == "inferd encoder")
    flops = next(r for r in rows if r["bench"] == "flops")
    peak = next(r for r in rows if r["bench"] == "peak")
    gflops = flops["flops"] / enc["seconds_per_batch"] / 1e9
    print(f"encoder, batch {flops['batch']} x {flops['length']} tokens: {enc['seconds_per_batch']*1e3:.1f} ms per batch "
          f"(daemon metrics, tokenization included) = {gflops:.1f} GFLOP/s executed; "
          f"fp32 matmul peak {peak['gflops']:.1f} GFLOP/s; {100*gflops/peak['gflops']:.0f}% of peak")
asr = [r for r in rows if r["bench"] == "transcribe"]
if asr:
    get = lambda who, key, n: next(r for r in asr if r["who"] == who and r[key] == n)
    i1, t1 = get("inferd", "requests", 1), get("transformers", "calls", 1)
    n = max(r["calls"] for r in asr if r["who"] == "transformers")
    i8, t8 = get("inferd", "requests", n), get("transformers", "calls", n)
    audio = t1["audio_seconds"]
    tokens = sorted(set(t1["tokens"] + t8["tokens"]))
    print(f"\nspeech recognition, whisper-base-sized Whisper (73M, random weights), {audio:.0f} s of audio, "
          f"greedy, language en, {'/'.join(map(str, tokens))} new tokens per file (transformers' generate)")
    print(f"{'':38}{'inferd s':>10}{'transformers s':>16}{'ratio':>7}{'inferd RTF':>12}{'transformers RTF':>18}"
          f"{'same text':>11}")
    for label, i, t, files in (("1 file", i1, t1, 1),
                               (f"{n} files ({n} concurrent vs sequential)", i8, t8, n)):
        print(f"{label:38}{i['seconds']:>10.2f}{t['seconds']:>16.2f}{t['seconds'] / i['seconds']:>7.2f}"
              f"{files * audio / i['seconds']:>12.1f}{files * audio / t['seconds']:>18.1f}"
              f"{str(i['texts'] == t['texts']):>11}")
    print(f"inferd, {n} concurrent: {n / i8['seconds']:.2f} files/s vs {n / t8['seconds']:.2f}; "
          f"request latency p50 {i8['p50_ms'] / 1e3:.2f} s, max {i8['max_ms'] / 1e3:.2f} s; "
          f"{i8['batches']:.0f} batch(es), {i8['seconds_per_batch']:.2f} s each (daemon metrics); "
          f"1 file: {i1['seconds_per_batch']:.2f} s in the model of {i1['seconds']:.2f} s")
det = [r for r in rows if r["bench"] == "detect"]
if det:
    get = lambda who, key, n: next(r for r in det if r["who"] == who and r[key] == n)
    n = max(r["calls"] for r in det if r["who"] == "transformers")
    i1, t1 = get("inferd", "requests", 1), get("transformers", "calls", 1)
    i8, t8 = get("inferd", "requests", n), get("transformers", "calls", n)
    same = lambda a, b: sum(x == y for x, y in zip(a, b)) / max(len(b), 1)
    print("\nobject detection, detr-resnet-50-sized DETR (41M, random weights), a 640x480 photo "
          "(resized to 800x1066), threshold 0 (all 100 queries)")
    print(f"{'':38}{'inferd s':>10}{'transformers s':>16}{'ratio':>7}{'inferd img/s':>14}{'same objects':>14}")
    for label, i, t, images in (("1 image", i1, t1, 1), (f"{n} images ({n} concurrent vs sequential)", i8, t8, n)):
        print(f"{label:38}{i['seconds']:>10.2f}{t['seconds']:>16.2f}{t['seconds'] / i['seconds']:>7.2f}"
              f"{images / i['seconds']:>14.2f}{same(i['objects'][0], t['objects'][0]):>14.0%}")
    print(f"inferd, {n} concurrent: latency p50 {i8['p50_ms'] / 1e3:.2f} s, max {i8['max_ms'] / 1e3:.2f} s; "
          f"{i8['batches']:.0f} batch(es), {i8['seconds_per_batch']:.2f} s each (daemon metrics)")
dep = [r for r in rows if r["bench"] == "depth"]
if dep:
    print("\ndepth estimation on a 640x480 photo: glpn-kitti-sized GLPN (61M, random weights; 640x480 in), "
          "dpt-large-sized DPT (343M; 384x384 in); depth at 640x480")
    print(f"{'':34}{'inferd s':>10}{'transformers s':>16}{'ratio':>7}{'inferd img/s':>14}{'same range':>12}")
    close = lambda a, b: all(abs(x - y) <= 1e-3 * max(1.0, abs(y)) for x, y in zip(a, b))
    for model in dict.fromkeys(r["model"] for r in dep):
        mine = [r for r in dep if r["model"] == model]
        get = lambda who, key, n: next(r for r in mine if r["who"] == who and r[key] == n)
        n = max(r["calls"] for r in mine if r["who"] == "transformers")
        i1, t1 = get("inferd", "requests", 1), get("transformers", "calls", 1)
        i4, t4 = get("inferd", "requests", n), get("transformers", "calls", n)
        for label, i, t, images in ((f"{model}, 1 image", i1, t1, 1),
                                    (f"{model}, {n} concurrent vs sequential", i4, t4, n)):
            print(f"{label:34}{i['seconds']:>10.2f}{t['seconds']:>16.2f}{t['seconds'] / i['seconds']:>7.2f}"
                  f"{images / i['seconds']:>14.2f}{str(close(i['ranges'][0], t['ranges'][0])):>12}")
        print(f"  {model}, {n} concurrent: latency p50 {i4['p50_ms'] / 1e3:.2f} s, max {i4['max_ms'] / 1e3:.2f} s; "
              f"{i4['batches']:.1f} batch(es) per round, {i4['seconds_per_batch']:.2f} s each (daemon metrics)")
seg = [r for r in rows if r["bench"] == "segment"]
about = {"segformer-b0": "semantic segmentation, segformer-b0-sized SegFormer (3.8M, random weights, 150 labels), "
                         "a 640x480 photo (512x512 processed)",
         "mask2former-swin-tiny": "panoptic segmentation (pipeline()'s default), mask2former-swin-tiny-sized "
                                  "Mask2Former (47M, random weights, 80 labels), a 640x480 photo (384x512 processed)"}
for model in dict.fromkeys(r["model"] for r in seg):
    rows_of = [r for r in seg if r["model"] == model]
    get = lambda who, key, n: next(r for r in rows_of if r["who"] == who and r[key] == n)
    n = max(r["calls"] for r in rows_of if r["who"] == "transformers")
    i1, t1 = get("inferd", "requests", 1), get("transformers", "calls", 1)
    i4, t4 = get("inferd", "requests", n), get("transformers", "calls", n)
    print("\n" + about.get(model, model))
    print(f"{'':34}{'inferd s':>10}{'transformers s':>16}{'ratio':>7}{'inferd img/s':>14}{'same labels':>13}")
    for label, i, t, images in (("1 image", i1, t1, 1), (f"{n} concurrent vs sequential", i4, t4, n)):
        print(f"{label:34}{i['seconds']:>10.2f}{t['seconds']:>16.2f}{t['seconds'] / i['seconds']:>7.2f}"
              f"{images / i['seconds']:>14.2f}{str(i['labels'][0] == t['labels'][0]):>13}")
    print(f"  {n} concurrent: latency p50 {i4['p50_ms'] / 1e3:.2f} s, max {i4['max_ms'] / 1e3:.2f} s; "
          f"{i4['batches']:.1f} batch(es) per round, {i4['seconds_per_batch']:.2f} s each (daemon metrics)")
arr = [r for r in rows if r["bench"] == "arrivals"]
if arr:
    step = next(r["step_s"] for r in arr if r["who"] == "inferd joined")
    print(f"\ncontinuous batching, GPT-2 small (124M), {arr[0]['requests']} streamed requests arriving as a Poisson "
          f"process at {arr[0]['rate']}/s, 16 to 256 greedy new tokens each (one decoding step alone: "
          f"{step * 1e3:.1f} ms)")
    print(f"{'':22}{'TTFT p50 s':>12}{'TTFT p99 s':>12}{'step under load s':>19}{'p99 in those steps':>20}"
          f"{'tokens/s':>10}")
    for r in arr:
        load_step = r.get("step_under_load_s")
        in_steps = f"{r['ttft_p99_s'] / load_step:.1f}" if load_step else "-"
        print(f"{r['who']:22}{r['ttft_p50_s']:>12.3f}{r['ttft_p99_s']:>12.3f}"
              f"{(f'{load_step:.3f}' if load_step else '-'):>19}{in_steps:>20}{r['tokens_per_s']:>10.1f}")
q8 = [r for r in rows if r["bench"] in ("int8-classify", "int8-generate")]
if q8:
    def one(bench, who, **match):
        found = [r for r in q8 if r["bench"] == bench and r["who"] == who
                 and all(r.get(k) == v for k, v in match.items())]
        return found[0] if found else None
    print("\ndynamic int8 (quantize = \"dynamic-int8\") against float: DistilBERT-base classifier (66M), "
          "~64-token inputs; GPT-2 small (124M), 128 new tokens greedy, one stream")
    print(f"{'':44}{'float':>10}{'int8':>10}{'int8/float':>12}")
    def line(label, f, i, key):
        if f and i:
            print(f"{label:44}{f[key]:>10.1f}{i[key]:>10.1f}{i[key] / f[key]:>12.2f}")
    for c in (1, 32):
        line(f"inferd classify, concurrency {c} (req/s)", one("int8-classify", "inferd float", concurrency=c),
             one("int8-classify", "inferd dynamic-int8", concurrency=c), "rps")
    line("transformers pipeline() per request (req/s)", one("int8-classify", "transformers per request float"),
         one("int8-classify", "transformers per request torch.ao int8"), "rps")
    line("transformers pipeline() batched (req/s)", one("int8-classify", "transformers batched float"),
         one("int8-classify", "transformers batched torch.ao int8"), "rps")
    gen = lambda who: ([r for r in q8 if r["bench"] == "int8-generate" and r["who"] == who
                        and r.get("streams", 1) == 1 and r.get("calls", 1) == 1] or [None])[0]
    line("inferd GPT-2, 1 stream (tok/s)", gen("inferd float"), gen("inferd dynamic-int8"), "tokens_per_s")
    line("transformers GPT-2, 1 call (tok/s)", gen("transformers float"), gen("transformers torch.ao int8"),
         "tokens_per_s")
shr = [r for r in rows if r["bench"] in ("shared-generate", "shared-classify")]
if shr:
    print("\nmany models on one machine: each model alone in its daemon, then with the five models of the start-up "
          "set loaded and warm (the others idle)")
    print(f"{'':40}{'alone':>10}{'five models':>13}{'ratio':>8}")
    pick = lambda bench, who, **m: next((r for r in shr if r["bench"] == bench and r["who"] == who
                                         and all(r.get(k) == v for k, v in m.items())), None)
    for label, bench, key, match in (("GPT-2 small, 1 stream (tok/s)", "shared-generate", "tokens_per_s", {}),
                                     ("DistilBERT classify, concurrency 1 (req/s)", "shared-classify", "rps",
                                      {"concurrency": 1}),
                                     ("DistilBERT classify, concurrency 32 (req/s)", "shared-classify", "rps",
                                      {"concurrency": 32})):
        a, t = pick(bench, "alone", **match), pick(bench, "five models", **match)
        if a and t:
            print(f"{label:40}{a[key]:>10.1f}{t[key]:>13.1f}{t[key] / a[key]:>8.2f}")
boot = [r for r in rows if r["bench"] == "startup"]
if boot:
    print("\nstart-up to SERVING, five models of real sizes (DistilBERT-base, GPT-2 small, distilbart-cnn-12-6, "
          "whisper-base, SpeechT5 + HiFi-GAN; weights in the page cache), each loaded and warmed up")
    for r in boot:
        label = "one at a time" if r["parallel_loads"] == "1" else f"--parallel-loads {r['parallel_loads']}"
        print(f"  {label:28}{r['seconds']:>8.2f} s  ({r['models_ready']} models ready)")
iso = [r for r in rows if r["bench"] == "isolation"]
if iso:
    print("\nprocess isolation, DistilBERT-base classifier (66M), ~64-token inputs: in the daemon's process vs a child")
    print(f"{'':12}{'concurrency':>12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for r in iso:
        print(f"{r['who']:12}{r['concurrency']:>12}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}")
sarr = [r for r in rows if r["bench"] == "summary-arrivals"]
if sarr:
    print(f"\ncontinuous batching, distilbart-cnn-12-6-sized BART (306M), {sarr[0]['requests']} summaries of "
          f"~150-word articles arriving as a Poisson process at {sarr[0]['rate']}/s, 16 to 96 new tokens each, "
          f"4 beams")
    print("  (wait: until a request's decoding starts, inferd's from its responses' inferd-queue-ms header;")
    print("   its first token comes a prefill later: encoder + first step, measured alone; the target is a wait")
    print("   p99 under 3 decoding steps at this load, each request's step being (latency - wait - prefill) / tokens;")
    print("   'beyond prefills': each wait less the other requests' prefills that ran during it, in those steps)")
    print(f"{'':22}{'latency p50 s':>15}{'latency p99 s':>15}{'wait mean s':>13}{'wait p50 s':>12}"
          f"{'wait p99 s':>12}{'prefill s':>11}{'step s':>8}{'wait p99 steps':>16}{'beyond prefills':>17}"
          f"{'tokens/s':>10}")
    for r in sarr:
        load_step = r.get("step_under_load_s")
        extra = (f"{r['prefill_s']:>11.3f}{load_step:>8.3f}{r['wait_p99_s'] / load_step:>16.1f}"
                 f"{r['wait_beyond_prefills_p99_s'] / load_step:>17.1f}" if load_step
                 else f"{'-':>11}{'-':>8}{'-':>16}{'-':>17}")
        print(f"{r['who']:22}{r['latency_p50_s']:>15.2f}{r['latency_p99_s']:>15.2f}{r['wait_mean_s']:>13.3f}"
              f"{r['wait_p50_s']:>12.3f}{r['wait_p99_s']:>12.3f}{extra}{r['tokens_per_s']:>10.1f}")
speak = [r for r in rows if r["bench"] == "speak"]
if speak:
    get = lambda who, key, n: next(r for r in speak if r["who"] == who and r[key] == n)
    n = max(r["calls"] for r in speak if r["who"] == "transformers")
    i1, t1 = get("inferd", "requests", 1), get("transformers", "calls", 1)
    i4, t4 = get("inferd", "requests", n), get("transformers", "calls", n)
    audio = t1["durations"][0]
    print(f"\ntext to speech, speecht5_tts-sized SpeechT5 (144M) + speecht5_hifigan-sized vocoder (13M), random "
          f"weights, a 20-word sentence, {audio:.2f} s of sound")
    print(f"{'':34}{'inferd s':>10}{'transformers s':>16}{'ratio':>7}{'real-time x':>13}{'same length':>13}")
    for label, i, t, texts in (("1 request", i1, t1, 1), (f"{n} concurrent vs sequential", i4, t4, n)):
        same = abs(i["durations"][0] - t["durations"][0]) < 1e-6
        print(f"{label:34}{i['seconds']:>10.2f}{t['seconds']:>16.2f}{t['seconds'] / i['seconds']:>7.2f}"
              f"{texts * audio / i['seconds']:>13.2f}{str(same):>13}")
    print(f"  {n} concurrent: latency p50 {i4['p50_ms'] / 1e3:.2f} s, max {i4['max_ms'] / 1e3:.2f} s; "
          f"{i4['batches']:.1f} batch(es) per round, {i4['seconds_per_batch']:.2f} s each (daemon metrics)")
PYEOF
