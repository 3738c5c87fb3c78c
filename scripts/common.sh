#!/usr/bin/env bash
# Shared by the action's mode scripts (sourced, never run): the output
# directory, the tokens file (from a secret, private, removed at the end)
# and the `args` input split without evaluating anything.
out_dir="${RUNNER_TEMP:-/tmp}/flora-gate"
mkdir -p "$out_dir"

# Appends the tokens flag to the array named by $1.
add_tokens() {
  local -n into=$1
  if [ -n "${FG_TOKENS:-}" ]; then
    tokens_file="$out_dir/access_tokens.csv"
    ( umask 077; printf '%s\n' "$FG_TOKENS" > "$tokens_file" )
    into+=(--tokens "$tokens_file")
  elif [ -n "${FG_TOKENS_FILE:-}" ]; then
    into+=(--tokens "$FG_TOKENS_FILE")
  fi
}

remove_tokens() { rm -f "$out_dir/access_tokens.csv"; }

# Appends the words of the `args` input to the array named by $1.
add_extra_args() {
  local -n into=$1
  if [ -n "${FG_ARGS:-}" ]; then
    # Quoted values stay one argument; nothing in them is evaluated.
    local split
    split=$(bash "$(dirname "${BASH_SOURCE[0]}")/split-args.sh" "$FG_ARGS" | base64 -w0) || exit 2
    local extra=()
    mapfile -d '' -t extra < <(printf '%s' "$split" | base64 -d)
    into+=("${extra[@]}")
  fi
}

# Requires an input: need NAME VALUE MODE.
need() {
  if [ -z "$2" ]; then
    echo "::error title=flora-gate::mode \`$3\` needs the \`$1\` input"
    exit 2
  fi
}

# Sets a step output (single-line values only).
set_output() {
  case "$2" in *$'\n'*) return 0 ;; esac
  if [ -n "${GITHUB_OUTPUT:-}" ]; then printf '%s=%s\n' "$1" "$2" >> "$GITHUB_OUTPUT"; fi
}
