#!/usr/bin/env bash
# Duet mode's error rates, measured: A/A false alarms and detection of 10%
# and 15% slowdowns, each from independent duets against two local mocks
# with jitter (a "jittery server"). Prints the counts and the verdicts.
#
#   benches/duet_power.sh [AA_RUNS=20] [RUNS_10=4] [RUNS_15=10] [DURATION=60s]
#
# Uses target/release/flora-gate (built if missing). Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
aa=${1:-20}; n10=${2:-4}; n15=${3:-10}; duration=${4:-60s}
bin=target/release/flora-gate
[ -x "$bin" ] || cargo build --release --locked --quiet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'tok-a\ntok-b\ntok-c\ntok-d\ntok-e\ntok-f\ntok-g\ntok-h\n' > "$work/t.csv"

pids=()
mock() { # slowdown seed: starts a mock in this shell; its URL lands in $work/url.SEED
  "$bin" mock --port 0 --ttft-ms 80 --itl-ms 8 --output-tokens 48 --jitter-ms 25 \
    --slowdown "$1" --mock-seed "$2" > "$work/url.$2" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$work/url.$2" ] && break; sleep 0.1; done
}

duet() { # slowdown index -> prints the verdict and the changes
  local out
  mock 1.0 "$((1000 + $2))"
  mock "$1" "$((2000 + $2))"
  out="$work/duet.$2.json"
  "$bin" run -s openai-chat -t "$(cat "$work/url.$((2000 + $2))")" \
    --baseline-target "$(cat "$work/url.$((1000 + $2))")" --tokens "$work/t.csv" \
    -c 8 -d "$duration" --warmup 1s --no-progress -o "$out" > /dev/null 2>&1 || true
  "$bin" compare --current "$out" -o "$work/v.$2.json" > /dev/null 2>&1 || true
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  python3 -c "import json,sys; v=json.load(open(sys.argv[1])); c={x['metric']:x for x in v['checks'] if x['scope']=='all'}; print(v['verdict'], ' '.join(f\"{m}={c[m]['change']*100:+.1f}%\" for m in ('ttft_p50','tpot_p50','output_tokens_per_s') if m in c and c[m]['change'] is not None))" "$work/v.$2.json"
}

series() { # label slowdown runs
  local fails=0 i line
  for i in $(seq "$3"); do
    duet "$2" "$RANDOM$i" > "$work/line"
    line=$(cat "$work/line")
    echo "  $1 run $i: $line"
    [[ $line == fail* ]] && fails=$((fails + 1))
  done
  echo "$1: $fails of $3 duets failed"
}

echo "duet power: $duration duets, 8 users, mock ttft 80 ms, itl 8 ms, jitter ±25 ms"
series "A/A (slowdown 1.00)" 1.00 "$aa"
series "10% slower" 1.10 "$n10"
series "15% slower" 1.15 "$n15"
