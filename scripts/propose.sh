#!/usr/bin/env bash
# mode: propose. Opens (or updates) the pull request that proposes the
# `baseline` file; sets `pr-url` and `pr-number`.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
need baseline "${FG_BASELINE:-}" propose
args=(baseline propose --baseline "$FG_BASELINE" --base "${FG_PROPOSE_BASE:-${FG_DEFAULT_BRANCH:-main}}")
[ -n "${FG_PROPOSE_BRANCH:-}" ] && args+=(--branch "$FG_PROPOSE_BRANCH")
url=$(flora-gate "${args[@]}")
# Only a URL of the pull request form is passed on.
if [[ "$url" =~ ^https?://[^[:space:]]+/pull/([0-9]+)$ ]]; then
  set_output pr-url "$url"
  set_output pr-number "${BASH_REMATCH[1]}"
fi
