#!/usr/bin/env bash
# Bottleneck analysis against mocks with a known bottleneck, five seeds
# each (the mock's jitter and the run's data differ per seed): prints the
# findings of every run and how many of the five were classified right.
#
#   benches/diagnosis.sh
#   PHASES="queue batch" benches/diagnosis.sh
PHASES=${PHASES:-"queue batch rate db kv prefill client light ramp knee2000 compute"}
source "$(dirname "$0")/lib.sh"

STAGES="0s:4,5s:4,0s:16,5s:16,0s:32,5s:32"

# case NAME EXPECTED SCENARIO TOKENS RUN-ARGS -- MOCK-ARGS...
# Every run scrapes the mock's /metrics, so the server's figures take part.
# HOGS=N starts N busy loops on the generator's core and runs it at nice 19
# (a generator starved of CPU by its neighbours).
case_() {
  local name=$1 expected=$2 scenario=$3 tokens=$4 run_args=$5; shift 6
  local right=0
  head -n $((tokens + 1)) "$WORK/tokens.csv" > "$WORK/t-$name.csv"
  for seed in 1 2 3 4 5; do
    start_mock --mock-seed "$seed" --jitter-ms 2 "$@"
    hogs=()
    # Started directly (not through a function, whose subshell would be
    # what `$!` names), so that killing them stops them.
    for _ in $(seq 1 "${HOGS:-0}"); do "${PIN1[@]}" sh -c 'while :; do :; done' & hogs+=($!); done
    nice=()
    if [ "${HOGS:-0}" -gt 0 ]; then nice=(nice -n 19); fi
    # shellcheck disable=SC2086
    pin 1 "${nice[@]}" "$BIN" run --server-metrics /metrics -s "$scenario" -t "$MOCK_URL" --tokens "$WORK/t-$name.csv" --seed "$seed" \
      --warmup 0s --stages "${CASE_STAGES:-$STAGES}" --no-progress $run_args -o "$WORK/$name-$seed.json" > /dev/null 2>&1 || true
    if [ ${#hogs[@]} -gt 0 ]; then kill "${hogs[@]}" 2>/dev/null || true; fi
    stop_mock
    found=$("$BIN" report -r "$WORK/$name-$seed.json" -f text 2>/dev/null | grep '^bottleneck:' | sed 's/ (.*//' | tr '\n' ';')
    case "$found" in *"$expected"*) right=$((right + 1)) ;; esac
    echo "$name seed $seed: ${found:-(no report)}"
  done
  echo "$name: $right of 5 classified as \"$expected\""
}

want queue && case_ queue "requests queue" openai-chat 32 "--var max_tokens=16" -- \
  --max-concurrency 8 --ttft-ms 30 --itl-ms 3 --output-tokens 16
want batch && case_ batch "decode batching" openai-chat 32 "--var max_tokens=16" -- \
  --ttft-ms 20 --itl-ms 3 --output-tokens 16 --itl-per-stream-ms 0.5
want rate && case_ rate "rate-limited" openai-chat 4 "--var max_tokens=16" -- \
  --ttft-ms 20 --itl-ms 2 --output-tokens 16 --rate-limit 2
want db && case_ db "a tier other than the model" novel 32 "" -- \
  --db-pool 1 --db-ms 100 --ttft-ms 20 --itl-ms 2 --output-tokens 16
want kv && case_ kv "memory / KV-cache pressure" openai-chat 32 "--var max_tokens=32" -- \
  --ttft-ms 20 --itl-ms 3 --output-tokens 32 --kv-slots 12 --preempt-ms 150
want prefill && case_ prefill "prefill-bound" novel 32 "" -- \
  --ttft-ms 10 --itl-ms 2 --output-tokens 16 --prefill-us-per-char 100
# A starved generator: one worker thread at nice 19 beside two busy loops
# on its core: the machine, not the generator, is the limit.
want client && TOKIO_WORKER_THREADS=1 HOGS=2 case_ client "other work on this machine" openai-chat 32 "--var max_tokens=16" -- \
  --ttft-ms 30 --itl-ms 3 --output-tokens 16
want light && case_ light "No bottleneck" openai-chat 32 "--var max_tokens=16" -- \
  --ttft-ms 40 --itl-ms 4 --output-tokens 16
# Ramps only (no holds), 2 → 24 users, against a server serving 4 at
# once: the windows, binned by the users they had, are the levels.
want ramp && CASE_STAGES="2s:2,6s:12,6s:24" case_ ramp "requests queue" openai-chat 24 "--var max_tokens=16 --window 1s" -- \
  --max-concurrency 4 --ttft-ms 20 --itl-ms 5 --output-tokens 16
# The seed's headline ramp, 10 → 2,000 users with holds, shortened, against
# a server serving 800 at once: queueing with the knee between 500 and 1,000.
want knee2000 && CASE_STAGES="0s:10,3s:10,5s:500,3s:500,5s:1000,3s:1000,5s:2000,3s:2000" case_ knee2000 "requests queue" openai-chat 2000 "--var max_tokens=16" -- \
  --max-concurrency 800 --ttft-ms 80 --itl-ms 10 --output-tokens 16
# TTFT and TPOT rising together (a compute-bound server): saturation.
want compute && case_ compute "the server is saturated" openai-chat 32 "--var max_tokens=16" -- \
  --ttft-ms 20 --itl-ms 3 --output-tokens 16 --itl-per-stream-ms 0.5 --ttft-per-stream-ms 4
