#!/usr/bin/env bash
# Performance figures of the load generator and the mock, measured in one run
# on this machine, all traffic on 127.0.0.1:
#   0-1. CPU per 64-token streamed request at 64 concurrent streams: the
#      floor (wrk: C, epoll, keep-alive, no event parsing, reading the same
#      streams from the same mock), flora-gate before (BEFORE=) and now, in
#      REPS (3) interleaved rounds, medians and ratios; peak resident memory;
#   2. client TTFT against the mock's own timing of the same requests at 32
#      streams (p50, p99);
#   3. mock SSE events per second on one core;
#   4. concurrent streams held with the generator's self-check clean
#      (STREAMS, default 500 1000 2000 5000 10000 streams of 64 tokens at
#      50 ms per token), with peak memory and memory per stream (BEFORE= adds
#      the older build at 2,000); each count first through wrk, with the
#      mock's share of its core and how long its streams took, so a mock at
#      its core's limit shows as such;
#   5. where oha is installed (cargo install oha), the same plain-HTTP load
#      through oha and through flora-gate, CPU per request side by side;
#   6. where aiperf is installed (pip install aiperf; AIPERF=path), the
#      streamed load of phase 1 through aiperf: marginal CPU per request (a run
#      of 2N minus a run of N requests, so start-up cost cancels) and TTFT
#      against the server's own.
# Usage: benches/perf.sh [seconds per phase, default 15]; PHASES="1 4" picks phases;
# BIN=path/to/flora-gate measures that binary instead of a fresh release build;
# BEFORE=path/to/an/older/flora-gate adds it to phases 0-1, side by side.
SECS=${1:-15}
PHASES=${PHASES:-0 1 2 3 4 5 6}
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# wrk's request: the same streamed chat completion flora-gate sends.
cat > "$WORK/stream.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"
wrk.headers["Authorization"] = "Bearer bench-token-0001"
LUA
# wrk_timed CONNECTIONS DURATION NAME: wrk pinned like the generator on the
# mock's stream; its report in $WORK/NAME.txt, its user, system and wall
# seconds in $WORK/NAME.time.
wrk_timed() {
  TIMEFORMAT='%U %S %R'
  { time pin 1 wrk -t 1 -c "$1" -d "$2" --timeout 30s -s "$WORK/stream.lua" "$MOCK_URL/v1/chat/completions" > "$WORK/$3.txt" 2>&1 ; } 2> "$WORK/$3.time"
  unset TIMEFORMAT
}

if want 0 || want 1; then
REPS=${REPS:-3}
echo "== 0-1. CPU per 64-token streamed request, 64 concurrent streams: the floor (wrk), flora-gate before (BEFORE=) and now; ${REPS} interleaved rounds of ${SECS}s, medians"
# The floor: wrk (C, epoll, keep-alive, no event parsing) reading the same
# streams from the same mock on 64 keep-alive connections, pinned like the
# generator; its CPU (user + system) from the shell's accounting.
# Work is counted on the mock's side, in events sent over the 68 of a whole
# answer (role, 64 tokens, finish, usage, [DONE]): wrk stops with a request
# part-read on each connection and does not count it, flora-gate lets its
# last requests finish; counting requests would flatter flora-gate.
: > "$WORK/cpu.tsv"
mock_answers() { # whole answers' worth of events the mock sent
  curl -s "$MOCK_URL/_mock/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["sse_events"] / 68)'
}
floor_round() {
  start_mock --ttft-ms 20 --itl-ms 5 --output-tokens 64
  wrk_timed 64 "${SECS}s" wrk
  local answers; answers=$(mock_answers)
  stop_mock
  python3 - "$WORK/wrk.txt" "$WORK/wrk.time" "$answers" >> "$WORK/cpu.tsv" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"(\d+) requests in", t)
n = int(m.group(1)) if m else 0
user, system, _ = (float(x) for x in open(sys.argv[2]).read().split()[-3:])
answers = float(sys.argv[3])
bad = re.search(r"Non-2xx.*|Socket errors.*", t)
print(f"floor\t{(user + system) / answers * 1000 if answers else 'nan'}\t{n} requests, {answers:.1f} answers sent\t-\t{bad.group(0) if bad else ''}")
PY
}
gate_round() { # label binary
  start_mock --ttft-ms 20 --itl-ms 5 --output-tokens 64
  pin 1 "$2" run -s openai-chat -t "$MOCK_URL" --tokens "$WORK/tokens.csv" -c 64 -d "${SECS}s" --warmup 0s \
    --var max_tokens=64 --no-progress -o "$WORK/r1.json" --requests-out "$WORK/r1.jsonl" > /dev/null 2>&1
  local answers; answers=$(mock_answers)
  stop_mock
  python3 - "$WORK/r1.json" "$WORK/r1.jsonl" "$1" "$answers" >> "$WORK/cpu.tsv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = sum(1 for _ in open(sys.argv[2]))
answers = float(sys.argv[4])
sc = r["self_check"]; chat = r["steps"][0]
note = f"{chat['failed']} failed, {chat['output_tokens']['mean_per_request']} tokens each, loop lag p99 {sc['loop_lag_p99_ms']} ms"
print(f"{sys.argv[3]}\t{sc['cpu_time_s'] / answers * 1000 if answers else 'nan'}\t{n} requests, {answers:.1f} answers sent\t{sc['peak_rss_mib']:.1f}\t{note}")
PY
}
for _ in $(seq "$REPS"); do
  if command -v wrk >/dev/null; then floor_round; fi
  if [ -n "${BEFORE:-}" ]; then gate_round before "$BEFORE"; fi
  gate_round now "$BIN"
done
command -v wrk >/dev/null || echo "wrk not installed (Debian: apt-get install wrk): no floor"
python3 - "$WORK/cpu.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
names = {"floor": "the floor (wrk)", "before": "flora-gate before", "now": "flora-gate now"}
med = {}
for label in ("floor", "before", "now"):
    mine = [r for r in rows if r[0] == label]
    if not mine:
        continue
    ms = [float(r[1]) for r in mine]
    med[label] = statistics.median(ms)
    rounds = ", ".join(f"{float(r[1]):.3f}" for r in mine)
    rss = [r[3] for r in mine if r[3] != "-"]
    line = f"{names[label]:>18}: median {med[label]:.3f} ms CPU per answer (rounds {rounds}; the last: {mine[-1][2]}"
    line += f", peak RSS {rss[-1]} MiB" if rss else ""
    print(line + ")")
    print(f"{'':>20}{mine[-1][4]}")
for label in ("before", "now"):
    if label in med and "floor" in med:
        print(f"{names[label]} / floor: {med[label] / med['floor']:.2f}x")
if "before" in med and "now" in med:
    print(f"now / before: {med['now'] / med['before']:.2f}x")
# Each round's client against the floor measured just before it, so a
# machine that drifts between rounds moves both sides of the ratio.
floors = [float(r[1]) for r in rows if r[0] == "floor"]
for label in ("before", "now"):
    mine = [float(r[1]) for r in rows if r[0] == label]
    if floors and len(mine) == len(floors):
        paired = sorted(m / f for m, f in zip(mine, floors))
        print(f"{names[label]} / floor, round by round: median {statistics.median(paired):.2f}x "
              f"(from {paired[0]:.2f}x to {paired[-1]:.2f}x)")
print("aim: within 1.3x of the floor")
PY

fi
if want 2; then
echo "== 2. TTFT accuracy against the mock's own timing, 32 concurrent streams (${SECS}s, 2s warm-up)"
start_mock --ttft-ms 50 --itl-ms 5 --output-tokens 64
pin 1 "$BIN" run -s openai-chat -t "$MOCK_URL" --tokens "$WORK/tokens.csv" -c 32 -d "${SECS}s" --warmup 2s \
  --var max_tokens=64 --no-progress -o "$WORK/r2.json" --requests-out "$WORK/r2.jsonl" > /dev/null 2>&1
curl -s "$MOCK_URL/_mock/timings" > "$WORK/timings2.json"
stop_mock
python3 - "$WORK/r2.jsonl" "$WORK/timings2.json" <<'PY'
import json, sys
server = json.load(open(sys.argv[2]))
rows = [json.loads(l) for l in open(sys.argv[1])]
pairs = [(r["ttft_ms"], server[r["request_id"]]) for r in rows
         if not r["warmup"] and r["ttft_ms"] is not None and r["request_id"] in server]
diff = sorted(c - s for c, s in pairs)
client = sorted(c for c, _ in pairs); srv = sorted(s for _, s in pairs)
def q(v, p): return v[min(len(v) - 1, int(p * len(v)))]
print(f"paired requests (by X-Request-Id, warm-up excluded): {len(pairs)}")
for p, name in ((0.5, "p50"), (0.99, "p99")):
    print(f"TTFT {name}: client {q(client, p):.3f} ms, server {q(srv, p):.3f} ms; "
          f"per-request excess {name} {q(diff, p):+.3f} ms")
print("targets: excess <= 1 ms at p50, <= 3 ms at p99")
PY

fi
if want 3; then
echo "== 3. mock SSE events/s on one core (${SECS}s, no delays, 128 streams)"
start_mock --ttft-ms 0 --itl-ms 0 --output-tokens 64
before=$(cpu_ticks "$MOCK_PID"); t0=$(date +%s.%N)
pin 1 "$BIN" run -s openai-chat -t "$MOCK_URL" --tokens "$WORK/tokens.csv" -c 128 -d "${SECS}s" --warmup 0s \
  --var max_tokens=64 --no-progress -o "$WORK/r3.json" > /dev/null 2>&1
t1=$(date +%s.%N); after=$(cpu_ticks "$MOCK_PID")
curl -s "$MOCK_URL/_mock/stats" > "$WORK/stats3.json"
stop_mock
python3 - "$WORK/stats3.json" "$before" "$after" "$t0" "$t1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); ticks = float(sys.argv[3]) - float(sys.argv[2]); wall = float(sys.argv[5]) - float(sys.argv[4])
cpu = ticks / 100.0; ev = s["sse_events"]
print(f"mock: {ev} events in {wall:.1f}s = {ev / wall:,.0f} events/s using {cpu / wall * 100:.0f}% of one core")
print(f"mock capacity: {ev / cpu:,.0f} events per CPU-second")
PY
fi

if want 4; then
STREAMS=${STREAMS:-500 1000 2000 5000 10000}
echo "== 4. concurrent streams with the self-check clean (${SECS}s each after a 5s warm-up, 64 tokens, 50 ms/token; memory per stream against a 64-stream run)"
echo "   each count first through wrk (the floor): its share of its core, how long a stream took against the 3.30 s the mock intends, and the mock's share of its core"
# The floor at N streams: wrk holding N keep-alive streams for the same
# time. A mock at its core's limit stretches every stream, whoever reads it.
floor4() { # streams
  start_mock --ttft-ms 100 --itl-ms 50 --output-tokens 64
  local m0; m0=$(cpu_ticks "$MOCK_PID")
  wrk_timed "$1" "$(( SECS + 5 ))s" wrk4
  local m1; m1=$(cpu_ticks "$MOCK_PID")
  stop_mock
  python3 - "$WORK/wrk4.txt" "$WORK/wrk4.time" "$1" "$(( m1 - m0 ))" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
user, system, wall = (float(x) for x in open(sys.argv[2]).read().split()[-3:])
n, mock = int(sys.argv[3]), int(sys.argv[4]) / 100
done = re.search(r"(\d+) requests in", t)
lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", t)
bad = re.search(r"Non-2xx.*|Socket errors.*", t)
print(f" floor {n:>6} streams: wrk {done.group(1) if done else '?'} requests, stream time mean {lat.group(1) if lat else '?'} "
      f"(stdev {lat.group(2) if lat else '?'}, max {lat.group(3) if lat else '?'}), "
      f"wrk CPU {(user + system) / wall * 100:.0f}% of its core, mock CPU {mock / wall * 100:.0f}% of its core"
      + (f"; {bad.group(0)}" if bad else ""))
PY
}
p4() { # binary streams label
  start_mock --ttft-ms 100 --itl-ms 50 --output-tokens 64
  local m0 t0; m0=$(cpu_ticks "$MOCK_PID"); t0=$(date +%s%N)
  pin 1 "$1" run -s openai-chat -t "$MOCK_URL" --tokens "$WORK/tokens.csv" -c "$2" -d "${SECS}s" --warmup 5s \
    --var max_tokens=64 --no-progress -o "$WORK/r4.json" > /dev/null 2>&1 || true
  local m1 t1; m1=$(cpu_ticks "$MOCK_PID"); t1=$(date +%s%N)
  stop_mock
  python3 - "$WORK/r4.json" "$2" "$3" "$(( m1 - m0 ))" "$WORK/rss64" "$(( (t1 - t0) / 1000000 ))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); sc = r["self_check"]; chat = r["steps"][0]
n, label, mock_ticks, wall = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[6]) / 1000
rss = sc["peak_rss_mib"]
try:
    base = float(open(sys.argv[5]).read())
    per = f", {(rss - base) * 1024 / n:.1f} KiB per stream over the 64-stream run"
except (OSError, ValueError):
    base, per = None, ""
if n == 64 and label == "now":
    open(sys.argv[5], "w").write(str(rss))
tpot = chat.get("tpot_ms", {}).get("p50")
print(f"{label:>6} {n:>6} streams: {chat['requests']} requests, {chat['failed']} failed, "
      f"TTFT p50 {chat['ttft_ms']['p50']} ms, TPOT p50 {tpot} ms, {r['totals'].get('output_tokens_per_s', 0):,.0f} tok/s, "
      f"loop lag p99 {sc['loop_lag_p99_ms']} ms, CPU {sc['cpu_utilization'] * 100:.0f}% of {sc['cores']} core(s), "
      f"peak RSS {rss:.0f} MiB{per}, mock CPU {mock_ticks / 100 / wall * 100:.0f}% of its core; self-check {'SATURATED' if sc['saturated'] else 'clean'}")
PY
}
p4 "$BIN" 64 now
if [ -n "${BEFORE:-}" ]; then p4 "$BEFORE" 2000 before; fi
for c in $STREAMS; do
  if command -v wrk >/dev/null; then floor4 "$c"; fi
  p4 "$BIN" "$c" now
done
fi

if want 5; then
OHA=${OHA:-$(command -v oha || echo /tmp/oha-root/bin/oha)}
if [ -x "$OHA" ]; then
  echo "== 5. side by side with oha: plain HTTP (non-streamed chat completions), 64 connections, ${SECS}s"
  start_mock --ttft-ms 0 --itl-ms 0 --output-tokens 16
  body='{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":false}'
  /usr/bin/time -f "%U %S" -o "$WORK/oha.time" "${PIN1[@]}" "$OHA" -z "${SECS}s" -c 64 --no-tui -m POST \
    -H "Authorization: Bearer t" -H "Content-Type: application/json" -d "$body" --output-format json \
    "$MOCK_URL/v1/chat/completions" > "$WORK/oha.json" 2>/dev/null
  stop_mock
  start_mock --ttft-ms 0 --itl-ms 0 --output-tokens 16
  cat > "$WORK/plain.toml" <<'TOML'
name = "plain"
[auth]
kind = "none"
[[steps]]
name = "chat"
path = "/v1/chat/completions"
response = "json"
headers = { Authorization = "Bearer t" }
body = '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"stream":false}'
TOML
  pin 1 "$BIN" run -s "$WORK/plain.toml" -t "$MOCK_URL" -c 64 -d "${SECS}s" --warmup 0s --no-progress \
    -o "$WORK/r5.json" --requests-out "$WORK/r5.jsonl" > /dev/null 2>&1
  stop_mock
  python3 - "$WORK/oha.json" "$WORK/oha.time" "$WORK/r5.json" "$WORK/r5.jsonl" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); u, s = map(float, open(sys.argv[2]).read().split()[-2:])
n_oha = sum(o["statusCodeDistribution"].values())
r = json.load(open(sys.argv[3])); n_fg = sum(1 for _ in open(sys.argv[4]))
fg = r["self_check"]["cpu_time_s"] / n_fg * 1000; oh = (u + s) / n_oha * 1000
print(f"oha:        {n_oha} requests, {oh:.3f} ms CPU per request, {o['summary']['requestsPerSec']:.0f} req/s")
print(f"flora-gate: {n_fg} requests, {fg:.3f} ms CPU per request, {r['totals']['requests_per_s']:.0f} req/s")
print(f"ratio flora-gate/oha CPU per request: {fg / oh:.2f}")
PY
else
  echo "== 5. skipped: oha not installed (cargo install oha)"
fi
fi

if want 6; then
AIPERF=${AIPERF:-$(command -v aiperf || echo /tmp/aiperf-venv/bin/aiperf)}
if [ -x "$AIPERF" ]; then
  echo "== 6. side by side with aiperf: 64 streams of 64 tokens (phase 1's load)"
  "$(dirname "$AIPERF")/python" benches/train_tokenizer.py "$WORK/tok"
  aip() { # requests -> "cpu_seconds ttft_p50_ms"
    rm -rf "$WORK/aip"
    /usr/bin/time -f "%U %S" -o "$WORK/aip.time" "${PIN1[@]}" "$AIPERF" profile --model mock-novelist --url "$MOCK_URL" \
      --endpoint-type chat --streaming --concurrency 64 --request-count "$1" --tokenizer "$WORK/tok" \
      --prompt-input-tokens-mean 32 --prompt-output-tokens-mean 64 --output-artifact-dir "$WORK/aip" --api-key t > "$WORK/aip.log" 2>&1
    python3 - "$WORK/aip.time" "$WORK/aip" <<'PY'
import glob, json, sys
u, s = map(float, open(sys.argv[1]).read().split()[-2:])
data = json.load(open(glob.glob(sys.argv[2] + "/**/profile_export_aiperf.json", recursive=True)[0]))
ttft = data.get("time_to_first_token") or data.get("ttft") or {}
print(u + s, ttft.get("p50", ttft.get("avg", "nan")))
PY
  }
  start_mock --ttft-ms 20 --itl-ms 5 --output-tokens 64
  read -r cpu1 ttft1 < <(aip 1280)
  read -r cpu2 ttft2 < <(aip 2560)
  curl -s "$MOCK_URL/_mock/stats" > "$WORK/stats6.json"
  stop_mock
  python3 - "$cpu1" "$cpu2" "$ttft2" "$WORK/stats6.json" "$WORK/r1.json" "$WORK/r1.jsonl" <<'PY'
import json, sys
c1, c2, ttft = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
server = json.load(open(sys.argv[4]))["ttft_ms"]["p50"]
aip = (c2 - c1) / 1280 * 1000
print(f"aiperf:     {aip:.3f} ms CPU per streamed request (marginal), TTFT p50 {ttft} ms (server p50 {server:.1f} ms)")
try:
    r = json.load(open(sys.argv[5])); n = sum(1 for _ in open(sys.argv[6]))
    fg = r["self_check"]["cpu_time_s"] / n * 1000
    print(f"flora-gate: {fg:.3f} ms CPU per streamed request (phase 1); ratio aiperf/flora-gate {aip / fg:.1f}")
except (OSError, KeyError, ZeroDivisionError):
    print("run phase 1 too for the ratio")
PY
else
  echo "== 6. skipped: aiperf not installed (pip install aiperf; set AIPERF=path)"
fi
fi
