#!/usr/bin/env bash
# Capacity search accuracy and agreement: five seeds against each of two
# mocks whose knee can be computed, with jitter so that each search sees
# different noise. Prints every search's C*, bracket, probes and time, and
# the spread of C* across seeds.
#
#   benches/capacity.sh            # both mocks
#   PHASES=queue benches/capacity.sh
PHASES=${PHASES:-"queue batch slow"}
source "$(dirname "$0")/lib.sh"

# Probes of 4 s after 1 s of warm-up, unless a case says otherwise.
PROBE_ARGS=(--probe 4s --warmup 1s)

# search NAME SLO MOCK-ARGS...: five seeds of one search, one line each.
search() {
  local name=$1 slo=$2; shift 2
  start_mock "$@"
  local cs=()
  for seed in 1 2 3 4 5; do
    pin 1 "$BIN" capacity -s openai-chat -t "$MOCK_URL" --tokens "$WORK/tokens.csv" \
      --var "max_tokens=${MAX_TOKENS:-32}" --slo "$slo" --max-users 128 --seed "$seed" \
      "${PROBE_ARGS[@]}" -o "$WORK/$name-$seed.json" > /dev/null 2> "$WORK/$name-$seed.log" || true
    python3 - "$WORK/$name-$seed.json" "$name" "$seed" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["capacity"]
longest = max(p["measured_s"] for p in r["probes"])
print(f"{sys.argv[2]:<6} seed {sys.argv[3]}: C* {c['c_star']}, first fail {c['first_fail']}, "
      f"binding {c['binding']}, {len(r['probes'])} probes (longest {longest:.1f} s), "
      f"{r['elapsed_s']:.0f} s, {r['requests']} requests")
PY
    cs+=("$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['capacity']['c_star'])" "$WORK/$name-$seed.json")")
  done
  stop_mock
  python3 - "$name" "${cs[@]}" <<'PY'
import sys, statistics
name, cs = sys.argv[1], [float(c) for c in sys.argv[2:]]
m = statistics.median(cs)
print(f"{name:<6} C* across seeds: {cs}; median {m:g}; spread (max-min)/median {(max(cs)-min(cs))/m*100:.1f}%")
PY
}

# 16 at once, 50 ms to the first token, 31 gaps of 5 ms: analytic C* 35
# for TTFT p90 ≤ 300 ms (50 + (N−16)/16·205 ≤ 300).
want queue && search queue ttft_p90=300 \
  --max-concurrency 16 --ttft-ms 50 --itl-ms 5 --output-tokens 32 --jitter-ms 5
# Each gap grows 0.5 ms per other stream: TPOT p50 ≈ 5 + 0.5·(N−1) ≤ 20,
# analytic C* about 31.
want batch && search batch tpot_p50=20 \
  --ttft-ms 20 --itl-ms 5 --output-tokens 32 --itl-per-stream-ms 0.5 --jitter-ms 5
# 1.5 s requests (100 ms, then 63 gaps of 22 ms) on 16 slots, with the
# default probes (sized by requests): up to 16 users nothing waits; the p90
# of the wait passes 900 ms somewhere between 16 and 25.6 users.
if want slow; then
  PROBE_ARGS=()
  MAX_TOKENS=64 search slow ttft_p90=1000 \
    --max-concurrency 16 --ttft-ms 100 --itl-ms 22 --output-tokens 64
fi
