#!/usr/bin/env bash
# split-args.sh TEXT: prints TEXT's words NUL-terminated, split as a shell
# splits them ('single' and "double" quotes, backslashes), without
# evaluating anything: xargs only unquotes; it expands no $, no globs and
# runs no command substitution. An unmatched quote exits 2.
#   mapfile -d '' -t words < <(bash scripts/split-args.sh "$TEXT")
set -euo pipefail
text=${1-}
[ -n "$text" ] || exit 0
if ! words=$(printf '%s' "$text" | xargs -r printf '%s\0' 2>/dev/null | base64 -w0); then
  echo "::error title=flora-gate::an argument list has an unmatched quote (quote a value with spaces in 'single' or \"double\" quotes)" >&2
  exit 2
fi
printf '%s' "$words" | base64 -d
