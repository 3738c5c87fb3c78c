#!/usr/bin/env bash
# mode: gate. Turns the action's inputs (environment variables, never
# inline expressions) into a `flora-gate gate` command line.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
need scenario "${FG_SCENARIO:-}" gate
need target "${FG_TARGET:-}" gate
args=(gate --scenario "$FG_SCENARIO" --target "$FG_TARGET"
  --out "$out_dir/result.json" --verdict-out "$out_dir/verdict.json" --report-out "$out_dir/report.md"
  --html-out "$out_dir/report.html"
  --comment-id "${FG_COMMENT_ID:-default}" --fail-on-regression "${FG_FAIL:-true}")
add_tokens args
[ -n "${FG_BASELINE:-}" ] && args+=(--baseline "$FG_BASELINE")
[ -n "${FG_BASELINE_TARGET:-}" ] && args+=(--baseline-target "$FG_BASELINE_TARGET")
[ -n "${FG_CONCURRENCY:-}" ] && args+=(--concurrency "$FG_CONCURRENCY")
[ -n "${FG_DURATION:-}" ] && args+=(--duration "$FG_DURATION")
case "${FG_COMMENT:-true}" in
  true) args+=(--comment auto) ;;
  *) args+=(--comment never) ;;
esac
# A failing run is measured once more and fails only if both agree.
[ "${FG_CONFIRM:-true}" = true ] && args+=(--confirm)
# A history in the workspace: the run is also judged against its long-term reference.
if [ -n "${FG_HISTORY:-}" ] && [ -z "${FG_HISTORY_BRANCH:-}" ]; then args+=(--history "$FG_HISTORY"); fi
add_extra_args args
status=0
flora-gate "${args[@]}" || status=$?
remove_tokens
exit "$status"
