#!/usr/bin/env bash
# Duet mode's error rates, measured: A/A false alarms and detection of 10%
# and 15% slowdowns, each from independent duets against two local mocks
# with jitter (a "jittery server"); then duets of ~1 s requests (115
# tokens) whose candidate has a 10% longer TTFT only. Prints the counts and
# the verdicts.
#
#   benches/duet_power.sh [AA_RUNS=20] [RUNS_10=4] [RUNS_15=10] [DURATION=60s] [RUNS_LONG=5]
#
# Uses target/release/flora-gate (built if missing). Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
aa=${1:-20}; n10=${2:-4}; n15=${3:-10}; duration=${4:-60s}; nlong=${5:-5}
bin=target/release/flora-gate
[ -x "$bin" ] || cargo build --release --locked --quiet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'tok-a\ntok-b\ntok-c\ntok-d\ntok-e\ntok-f\ntok-g\ntok-h\n' > "$work/t.csv"

pids=()
# Both mocks' arguments, then the reference's own (each candidate's are
# the series' second argument).
ref_args=(--ttft-ms 80 --itl-ms 8 --output-tokens 48 --jitter-ms 25)
ref_own=(--slowdown 1.00)
max_tokens=48
mock() { # seed args...: starts a mock in this shell; its URL lands in $work/url.SEED
  local seed=$1; shift
  "$bin" mock --port 0 "$@" --mock-seed "$seed" > "$work/url.$seed" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$work/url.$seed" ] && break; sleep 0.1; done
}

duet() { # candidate-args index -> prints the verdict and the changes
  local out
  mock "$((1000 + $2))" "${ref_args[@]}" "${ref_own[@]}"
  # shellcheck disable=SC2086
  mock "$((2000 + $2))" "${ref_args[@]}" $1
  out="$work/duet.$2.json"
  "$bin" run -s openai-chat -t "$(cat "$work/url.$((2000 + $2))")" \
    --baseline-target "$(cat "$work/url.$((1000 + $2))")" --tokens "$work/t.csv" \
    --var "max_tokens=$max_tokens" -c 8 -d "$duration" --warmup 1s --no-progress -o "$out" > /dev/null 2>&1 || true
  "$bin" compare --current "$out" -o "$work/v.$2.json" > /dev/null 2>&1 || true
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  python3 -c "import json,sys; v=json.load(open(sys.argv[1])); c={x['metric']:x for x in v['checks'] if x['scope']=='all'}; print(v['verdict'], ' '.join(f\"{m}={c[m]['change']*100:+.1f}%\" for m in ('ttft_p50','ttft_p90','tpot_p50','output_tokens_per_s') if m in c and c[m]['change'] is not None), f\"pairs={v['evidence']}\")" "$work/v.$2.json"
}

series() { # label candidate-args runs
  local fails=0 i line
  for i in $(seq "$3"); do
    duet "$2" "$RANDOM$i" > "$work/line"
    line=$(cat "$work/line")
    echo "  $1 run $i: $line"
    [[ $line == fail* ]] && fails=$((fails + 1))
  done
  echo "$1: $fails of $3 duets failed"
}

echo "duet power: $duration duets, 8 users, mock ttft 80 ms, itl 8 ms, 48 tokens, jitter ±25 ms"
series "A/A (slowdown 1.00)" "--slowdown 1.00" "$aa"
series "10% slower" "--slowdown 1.10" "$n10"
series "15% slower" "--slowdown 1.15" "$n15"
ref_args=(--itl-ms 8 --output-tokens 115 --jitter-ms 25)
ref_own=(--ttft-ms 200)
max_tokens=115
echo "~1 s requests: mock ttft 200 ms, itl 8 ms, 115 tokens, jitter ±25 ms; the candidate's TTFT 220 ms"
series "TTFT +10%, ~1 s requests" "--ttft-ms 220" "$nlong"
