#!/usr/bin/env bash
# Load-shape figures of the generator, measured in one run on this machine,
# all traffic on 127.0.0.1, the mock on core 0 and the generator on core 1:
#   1. a closed ramp to 2,000 users (0 → 2,000 in RAMP, then a hold of RAMP):
#      the generator's self-check, lag, CPU and memory, and the hold's
#      delivered share of users;
#   2. open loop at 500 workflow starts per second for OPEN: achieved /
#      intended, arrivals missed, and how late started arrivals were (p50, p99);
#   3. a soak of 500 users for SOAK: the generator's resident memory per
#      window, its growth after the first two minutes, and its slope;
#   4. two soaks of DRIFT_SOAK after a 1-minute ramp to 200 users, against a
#      mock whose latency grows 2%/min (`--drift`) and one that holds still:
#      the drift verdict of each, fitted over the hold only.
# Usage: benches/shapes.sh; RAMP=30s OPEN=30s SOAK=30m DRIFT_SOAK=4m set the lengths;
# PHASES="1 2" picks phases; BIN=path measures another build.
RAMP=${RAMP:-30s}
OPEN=${OPEN:-30s}
SOAK=${SOAK:-30m}
DRIFT_SOAK=${DRIFT_SOAK:-4m}
PHASES=${PHASES:-1 2 3 4}
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"

run() { "${PIN1[@]}" "$BIN" run -s openai-chat -t "$MOCK_URL" --tokens "$WORK/tokens.csv" --warmup 0s \
  --no-progress "$@" > "$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt"; exit 1; }; }

if want 1; then
  echo "== 1. closed ramp 0 → 2,000 users over $RAMP, hold $RAMP (64 tokens at 50 ms each)"
  start_mock --ttft-ms 100 --itl-ms 50 --output-tokens 64
  run --stages "$RAMP:2000,hold=$RAMP:2000" --var max_tokens=64 --window 5s -o "$WORK/ramp.json"
  stop_mock
  python3 - "$WORK/ramp.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); sc = r["self_check"]
hold = [s for s in r["stages"] if s["name"] == "hold"][0]
rss = [w["load"]["rss_mib"] for w in r["windows"] if w["load"].get("rss_mib")]
print(f"  self-check {'SATURATED' if sc['saturated'] else 'clean'}; loop lag p99 {sc['loop_lag_p99_ms']:.1f} ms; "
      f"CPU {sc['cpu_utilization']*100:.0f}% of {sc['cores']} cores; peak RSS {sc['peak_rss_mib']:.0f} MiB (max window {max(rss):.0f} MiB)")
print(f"  hold: {hold['achieved']:.0f} of {hold['intended']:.0f} users ({hold['delivered']*100:.1f}%), "
      f"{hold['totals']['requests']} requests, errors {hold['totals']['error_rate']*100:.2f}%")
PY
fi

if want 2; then
  echo "== 2. open loop, 500 workflow starts/s (Poisson) for $OPEN (16 tokens at 5 ms each)"
  start_mock --ttft-ms 20 --itl-ms 5 --output-tokens 16
  run --model open --stages "0s:500,$OPEN:500" --var max_tokens=16 -o "$WORK/open.json"
  stop_mock
  python3 - "$WORK/open.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); a = r["arrivals"]; sc = r["self_check"]
print(f"  achieved/intended {a['achieved_ratio']:.4f} ({a['started']} of {a['due']} started; "
      f"{a['missed_cap']} at the cap, {a['missed_late']} late)")
print(f"  lateness p50 {a['lateness_p50_ms']:.2f} ms, p99 {a['lateness_p99_ms']:.2f} ms; "
      f"self-check {'SATURATED' if sc['saturated'] else 'clean'}, CPU {sc['cpu_utilization']*100:.0f}% of {sc['cores']} cores")
PY
fi

if want 3; then
  echo "== 3. soak: 500 users for $SOAK (32 tokens at 20 ms each)"
  start_mock --ttft-ms 100 --itl-ms 20 --output-tokens 32
  run --stages "10s:500,soak=$SOAK:500" --var max_tokens=32 --window 60s -o "$WORK/soak.json"
  stop_mock
  python3 - "$WORK/soak.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w = [(x["start_ms"] / 60000, x["load"]["rss_mib"]) for x in r["windows"] if x["load"].get("rss_mib")]
after = [v for t, v in w if t >= 2]
print(f"  {r['totals']['requests']} requests; RSS at 2 min {after[0]:.1f} MiB, at the end {after[-1]:.1f} MiB, "
      f"max {max(after):.1f} MiB: growth after warm-up {after[-1] - after[0]:+.1f} MiB")
d = (r.get("dynamics") or {}).get("drift") or {}
if d.get("generator_rss_mib_per_h") is not None:
    print(f"  RSS slope {d['generator_rss_mib_per_h']:+.2f} MiB/h over {d['windows']} windows")
print("  RSS by window (MiB): " + " ".join(f"{v:.0f}" for _, v in w))
PY
fi

if want 4; then
  echo "== 4. soaks: a 1-minute ramp to 200 users, then $DRIFT_SOAK held (16 tokens at 20 ms each)"
  for drift in 2%/min none; do
    if [ "$drift" = none ]; then start_mock --ttft-ms 100 --itl-ms 20 --output-tokens 16 --jitter-ms 2
    else start_mock --ttft-ms 100 --itl-ms 20 --output-tokens 16 --jitter-ms 2 --drift "$drift"; fi
    run --stages "1m:200,soak=$DRIFT_SOAK:200" --var max_tokens=16 --window 10s -o "$WORK/drift.json"
    stop_mock
    "$BIN" report -r "$WORK/drift.json" -f text > "$WORK/drift.txt"
    python3 - "$WORK/drift.json" "$drift" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = (r.get("dynamics") or {}).get("drift")
if not d:
    print(f"  mock drift {sys.argv[2]}: no drift line"); sys.exit()
def s(k):
    x = d.get(k)
    return "-" if not x else f"{x['pct_per_h']:+.0f}%/h [{x['low']:+.0f}, {x['high']:+.0f}]{' FLAGGED' if x['flagged'] else ''}"
print(f"  mock drift {sys.argv[2]}: over {d['windows']} windows (the hold only): TTFT p50 {s('ttft_p50')}, TPOT p50 {s('tpot_p50')}")
PY
    grep -i "drift" "$WORK/drift.txt" | sed 's/^/    report: /' || true
  done
fi
