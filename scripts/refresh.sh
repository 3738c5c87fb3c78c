#!/usr/bin/env bash
# mode: refresh. `flora-gate baseline refresh` into the `baseline` file:
# `runs` new runs, appended to the ones it holds (newest `keep` kept) when
# `append` is true.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
need scenario "${FG_SCENARIO:-}" refresh
need target "${FG_TARGET:-}" refresh
need baseline "${FG_BASELINE:-}" refresh
args=(baseline refresh --scenario "$FG_SCENARIO" --target "$FG_TARGET"
  --runs "${FG_RUNS:-5}" --out "$FG_BASELINE")
add_tokens args
[ -n "${FG_CONCURRENCY:-}" ] && args+=(--concurrency "$FG_CONCURRENCY")
[ -n "${FG_DURATION:-}" ] && args+=(--duration "$FG_DURATION")
[ "${FG_APPEND:-false}" = true ] && args+=(--append --keep "${FG_KEEP:-20}")
add_extra_args args
status=0
flora-gate "${args[@]}" || status=$?
remove_tokens
[ "$status" = 0 ] && set_output baseline "$FG_BASELINE"
exit "$status"
