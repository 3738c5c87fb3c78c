#!/usr/bin/env bash
# The baseline gate's error rates on real runs: a baseline of five runs of
# a jittery mock, then A/A runs against the same mock and runs against one
# 15% and one 3% slower (3 s of 12 users each), each judged by `compare`. Prints each verdict and
# the counts. (The suite tests the same statistics on invented runs.)
#
#   benches/gate_power.sh [AA_RUNS=20] [RUNS_15=10] [RUNS_3=10]
source "$(dirname "$0")/lib.sh"
aa=${1:-20}; n15=${2:-10}; n3=${3:-10}
MOCK=(--ttft-ms 60 --itl-ms 2 --output-tokens 16 --jitter-ms 3)
RUN=(-s openai-chat --tokens "$WORK/tokens.csv" --var max_tokens=16 -c 12 -d 3s --warmup 0s)

start_mock "${MOCK[@]}" --slowdown 1.0
"$BIN" baseline refresh "${RUN[@]}" -t "$MOCK_URL" --runs 5 -o "$WORK/baseline.json" > /dev/null 2> "$WORK/refresh.log" ||
  { cat "$WORK/refresh.log"; exit 1; }
stop_mock

series() { # label slowdown runs
  local fails=0 i v
  start_mock "${MOCK[@]}" --slowdown "$2"
  for i in $(seq "$3"); do
    "$BIN" run "${RUN[@]}" -t "$MOCK_URL" --no-progress -o "$WORK/r.json" > /dev/null 2>&1 || true
    "$BIN" compare -b "$WORK/baseline.json" -r "$WORK/r.json" -o "$WORK/v.json" > /dev/null 2>&1 || true
    v=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['verdict'])" "$WORK/v.json")
    echo "  $1 run $i: $v"
    [ "$v" = fail ] && fails=$((fails + 1))
  done
  stop_mock
  echo "$1: $fails of $3 runs failed"
}

echo "gate power: baseline of 5 runs; 12 users for 3 s a run; mock ttft 60 ms, itl 2 ms, jitter ±3 ms"
series "A/A" 1.00 "$aa"
series "15% slower" 1.15 "$n15"
series "3% slower" 1.03 "$n3"
