#!/usr/bin/env bash
# Runs inferd's fuzz targets with cargo fuzz (nightly), one at a time:
#
#   fuzz/run.sh [target|all] [max_seconds]
#
# Each target (fuzz_targets/*.rs; their bodies are in tests/fuzzing) runs
# until 10,000,000 executions or max_seconds (default 1800), whichever comes
# first, starting from its committed corpus fuzz/corpus/<target>/ (new
# inputs that reach new code are added there). An input that makes the body
# fail an assertion or panic (a crash), run longer than 10 s (a hang) or
# grow the process past 2 GiB (an out-of-memory; LibTorch and the fixture
# models take some 500 MB) stops the target. A table at the end gives each
# target's executions, seconds, executions per second and result.
#
# Built without a sanitizer (`-s none`): LibTorch is a C++ library built
# without AddressSanitizer, and the code under test is Rust, so ASan would
# mostly slow the search down; the bodies check what must hold instead.
# The `config` and `requests` targets load the fixture models:
# scripts/test.sh builds them (or .venv/bin/python tests/fixtures/make_fixtures.py).
#
# A finding is saved as fuzz/artifacts/<target>/{crash,timeout,oom}-<hash>.
# Reproduce it with
#   (cd fuzz && cargo +nightly fuzz run -s none <target> artifacts/<target>/<file>)
# or on stable, after copying it to fuzz/corpus/<target>/<name>, with
#   cargo test --release -p inferd-fuzzing --test replay <target>
# which prints the failed assertion or panic. Once the bug is fixed, keep it
# there under a name that says what it found: the test command replays
# every corpus file. After a long run, minimise a corpus with
#   (cd fuzz && cargo +nightly fuzz cmin -s none <target>)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

TARGETS=(payload safetensors config sentencepiece audio image requests)
which="${1:-all}"
max_seconds="${2:-1800}"
runs=10000000
if [[ "$which" == all ]]; then
  selected=("${TARGETS[@]}")
elif [[ " ${TARGETS[*]} " == *" $which "* ]]; then
  selected=("$which")
else
  echo "usage: fuzz/run.sh [all|${TARGETS[*]// /|}] [max_seconds]" >&2
  exit 2
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz --locked; a few minutes)" >&2
  cargo install cargo-fuzz --locked
fi
for target in "${selected[@]}"; do
  nice -n "${FUZZ_NICE:-19}" cargo +nightly fuzz build -s none "$target"
done
mkdir -p target/logs
summary=()
for target in "${selected[@]}"; do
  log="target/logs/$target.log"
  mkdir -p "corpus/$target" "artifacts/$target"
  before=$(ls "artifacts/$target" | wc -l)
  echo "fuzzing $target (up to $runs executions or $max_seconds s; log in fuzz/$log)" >&2
  started=$(date +%s)
  status=0
  nice -n "${FUZZ_NICE:-19}" cargo +nightly fuzz run -s none "$target" -- \
    -runs="$runs" -max_total_time="$max_seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  seconds=$(($(date +%s) - started))
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  executions="${executions:-0}"
  findings=$(($(ls "artifacts/$target" | wc -l) - before))
  if [[ $status == 0 && $findings == 0 ]]; then
    result=ok
  else
    result="FAILED (exit $status): $(ls -t "artifacts/$target" | head -1)"
  fi
  summary+=("$(printf '%-14s %12s %8s %10s  %s' "$target" "$executions" "$seconds" \
    "$((executions / (seconds > 0 ? seconds : 1)))" "$result")")
done

printf '\n%-14s %12s %8s %10s  %s\n' target executions seconds exec/s result
printf '%s\n' "${summary[@]}"
