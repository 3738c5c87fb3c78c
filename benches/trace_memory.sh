#!/usr/bin/env bash
# A large trace is read a line at a time, never whole: `trace check` over a
# generated trace of SIZE_MB (default 1000) prints its wall time and peak
# memory, beside a 64 MB line with no newline (refused at its first 64 kB).
#   benches/trace_memory.sh [SIZE_MB]
source "$(dirname "$0")/lib.sh"
SIZE_MB=${1:-1000}
TRACE="$WORK/big.jsonl"
# ~80 bytes a line; 5,000 writers, 10 ms apart.
awk -v mb="$SIZE_MB" 'BEGIN {
  n = int(mb * 1048576 / 80); split("outline draft continue expand summarize", s, " ");
  for (i = 0; i < n; i++)
    printf "{\"t_ms\": %d, \"session\": \"w%d\", \"step\": \"%s\", \"prompt_tokens\": %d}\n", i * 10, i % 5000, s[i % 5 + 1], 100 + i % 700
}' > "$TRACE"
bytes=$(stat -c %s "$TRACE")
measure() { /usr/bin/time -f '%e s, peak RSS %M kB' "$BIN" trace check "$1" -s replay-example > "$WORK/out" 2> "$WORK/err" || true; tail -1 "$WORK/err"; }
echo "trace of $((bytes / 1048576)) MB, $(wc -l < "$TRACE") lines: $(measure "$TRACE")"
echo "  it said: $(head -1 "$WORK/out")"
head -c $((64 * 1048576)) /dev/zero | tr '\0' 'x' > "$WORK/long.jsonl"
echo "a 64 MB line: $(measure "$WORK/long.jsonl") — $(grep -o 'line 1: .*' "$WORK/err" | head -1)"
