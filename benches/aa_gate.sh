#!/usr/bin/env bash
# A/A false alarms of the action's default gate on a busy machine: the
# committed-baseline gate as `mode: gate` runs it (`scripts/gate.sh`:
# `gate --confirm`), RUNS times against one unchanged mock while two busy
# loops run beside it, then RUNS duets (`--baseline-target`, two identical
# mocks) under the same loops. Prints how often the first run alone failed,
# how often the confirmed gate failed, and how often the duet failed.
#
#   benches/aa_gate.sh [RUNS=20] [DURATION=10s] [LOOPS=2]
#
# Uses target/release/flora-gate (built if missing). Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}; duration=${2:-10s}; loops=${3:-2}
bin=$PWD/target/release/flora-gate
[ -x "$bin" ] || cargo build --release --locked --quiet
work=$(mktemp -d)
busy=()
trap 'kill "${busy[@]}" $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'user_id,access_token\n' > "$work/tokens.csv"
for i in $(seq 1 8); do printf 'u%d,aa-token-%04d\n' "$i" "$i" >> "$work/tokens.csv"; done
mock_args=(--ttft-ms 80 --itl-ms 8 --output-tokens 48 --jitter-ms 10)
start() { # file: a mock on a free port, its URL in the file
  "$bin" mock --port 0 "${mock_args[@]}" > "$1" 2>/dev/null &
  for _ in $(seq 50); do [ -s "$1" ] && break; sleep 0.1; done
}
start "$work/a.url"; start "$work/b.url"
a=$(head -1 "$work/a.url"); b=$(head -1 "$work/b.url")
load=(-s novel --tokens "$work/tokens.csv" -c 4 -d "$duration" --warmup 2s)

echo "A/A on a busy machine: novel, 4 users, $duration runs, mock ttft 80 ms, itl 8 ms, jitter ±10 ms, $loops busy loop(s)"
# The committed baseline is made on a quiet machine, as a nightly job is.
"$bin" baseline refresh -t "$a" "${load[@]}" --runs 5 -o "$work/baseline.json" > /dev/null 2>&1
echo "baseline: 5 runs on a quiet machine"
for _ in $(seq "$loops"); do (while :; do :; done) & busy+=($!); done

first=0; confirmed=0
for i in $(seq "$runs"); do
  out="$work/g$i"; mkdir -p "$out"
  code=0
  (cd "$out" && RUNNER_TEMP="$out" FG_SCENARIO=novel FG_TARGET="$a" FG_TOKENS_FILE="$work/tokens.csv" \
    FG_BASELINE="$work/baseline.json" FG_CONCURRENCY=4 FG_DURATION="$duration" FG_COMMENT=false \
    FG_ARGS="--warmup 2s" PATH="$(dirname "$bin"):$PATH" bash "$OLDPWD/scripts/gate.sh" > log 2>&1) || code=$?
  first_failed=no
  [ -f "$out/flora-gate/result.unconfirmed.json" ] && first_failed=yes
  [ "$first_failed" = yes ] && first=$((first + 1))
  [ "$code" = 1 ] && confirmed=$((confirmed + 1))
  echo "  gate $i: first run failed: $first_failed; exit $code"
done

# A duet needs at least 12 s (its interleaved slots).
duet_load=("${load[@]}")
[ "${duration%s}" -lt 12 ] 2>/dev/null && duet_load=(-s novel --tokens "$work/tokens.csv" -c 4 -d 12s --warmup 2s)
duets=0
for i in $(seq "$runs"); do
  code=0
  "$bin" gate -t "$a" --baseline-target "$b" "${duet_load[@]}" --comment never \
    -o "$work/d$i.json" --verdict-out "$work/dv$i.json" --report-out "$work/d$i.md" > /dev/null 2>&1 || code=$?
  [ "$code" = 1 ] && duets=$((duets + 1))
  [ "$code" = 2 ] && { echo "duet $i could not run:"; "$bin" gate -t "$a" --baseline-target "$b" "${duet_load[@]}" --comment never -o "$work/x.json" --verdict-out "$work/xv.json" --report-out "$work/x.md" 2>&1 | tail -3; exit 2; }
  echo "  duet $i: exit $code"
done
echo
echo "first run alone failed:        $first of $runs"
echo "gate with confirm (default):   $confirmed of $runs"
echo "duet (--baseline-target, ${duet_load[7]}): $duets of $runs"
