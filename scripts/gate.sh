#!/usr/bin/env bash
# Turns the action's inputs (environment variables, never inline
# expressions) into a `flora-gate gate` command line.
set -euo pipefail
out_dir="${RUNNER_TEMP:-/tmp}/flora-gate"
mkdir -p "$out_dir"
args=(gate --scenario "$FG_SCENARIO" --target "$FG_TARGET"
  --out "$out_dir/result.json" --verdict-out "$out_dir/verdict.json" --report-out "$out_dir/report.md"
  --html-out "$out_dir/report.html"
  --comment-id "$FG_COMMENT_ID" --fail-on-regression "$FG_FAIL")

if [ -n "${FG_TOKENS:-}" ]; then
  tokens_file="$out_dir/access_tokens.csv"
  ( umask 077; printf '%s\n' "$FG_TOKENS" > "$tokens_file" )
  args+=(--tokens "$tokens_file")
elif [ -n "${FG_TOKENS_FILE:-}" ]; then
  args+=(--tokens "$FG_TOKENS_FILE")
fi
[ -n "${FG_BASELINE:-}" ] && args+=(--baseline "$FG_BASELINE")
[ -n "${FG_BASELINE_TARGET:-}" ] && args+=(--baseline-target "$FG_BASELINE_TARGET")
[ -n "${FG_CONCURRENCY:-}" ] && args+=(--concurrency "$FG_CONCURRENCY")
[ -n "${FG_DURATION:-}" ] && args+=(--duration "$FG_DURATION")
case "${FG_COMMENT:-true}" in
  true) args+=(--comment auto) ;;
  *) args+=(--comment never) ;;
esac
if [ -n "${FG_ARGS:-}" ]; then
  # Quoted values stay one argument; nothing in them is evaluated.
  split=$(bash "$(dirname "$0")/split-args.sh" "$FG_ARGS" | base64 -w0) || exit 2
  mapfile -d '' -t extra < <(printf '%s' "$split" | base64 -d)
  args+=("${extra[@]}")
fi
status=0
flora-gate "${args[@]}" || status=$?
rm -f "$out_dir/access_tokens.csv"
exit "$status"
