#!/usr/bin/env bash
# mode: history. Adds tonight's run to the history (`result`, or the median
# of the newest `runs` runs of `baseline` after a refresh), analyses it,
# writes the job summary and, with `comment-pr`, a sticky comment there.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "$0")/common.sh"
history=${FG_HISTORY:-}
[ -n "$history" ] || history=.flora-gate/history
args=(history "$history" --format text
  --markdown-out "$out_dir/history.md" --json-out "$out_dir/history.json"
  --html-out "$out_dir/history.html" --source "${FG_SOURCE:-nightly}"
  --fail-recent "${FG_FAIL_RECENT:-0}")
[ -n "${FG_HISTORY_BRANCH:-}" ] && args+=(--branch "$FG_HISTORY_BRANCH")
if [ -n "${FG_RESULT:-}" ]; then
  args+=(--add "$FG_RESULT")
elif [ -n "${FG_BASELINE:-}" ]; then
  args+=(--add-baseline "$FG_BASELINE" --runs "${FG_RUNS:-5}")
fi
status=0
flora-gate "${args[@]}" || status=$?
if [ -f "$out_dir/history.md" ]; then
  set_output history-report "$out_dir/history.md"
  set_output html "$out_dir/history.html"
  set_output history-json "$out_dir/history.json"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$out_dir/history.md" >> "$GITHUB_STEP_SUMMARY"; fi
  pr=${FG_COMMENT_PR:-}
  if [ -n "$pr" ]; then
    if [[ "$pr" =~ ^[0-9]+$ ]]; then
      flora-gate comment --pr "$pr" --body "$out_dir/history.md" --id "history-${FG_COMMENT_ID:-default}" ||
        echo "::warning title=flora-gate history::the comment on #$pr could not be posted"
    else
      echo "::warning title=flora-gate history::\`comment-pr\` is not a pull request number; no comment"
    fi
  fi
fi
exit "$status"
