#!/usr/bin/env bash
# Installs flora-gate on a GitHub Actions runner (called by action.yml).
#
# 1. The prebuilt binary for this OS/architecture from the action
#    repository's release, verified against the release's SHA256SUMS.
# 2. If the release or the asset does not exist, `cargo install --locked`
#    from the action's own checkout.
# A checksum mismatch is never "fixed" by falling back: it stops the job.
#
# Environment (all set by action.yml; the FLORA_GATE_* overrides exist for tests):
#   FLORA_GATE_VERSION          release tag to install (default: the action ref)
#   FLORA_GATE_REPO             owner/name of the action repository
#   FLORA_GATE_REF              the action ref (github.action_ref)
#   FLORA_GATE_RELEASE_BASE_URL server URL (default: $GITHUB_SERVER_URL or https://github.com)
#   FLORA_GATE_INSTALL_DIR      where the binary goes
#   FLORA_GATE_CARGO            cargo command for the fallback (default: cargo)
set -euo pipefail

log() { echo "flora-gate install: $*" >&2; }
die() { echo "::error title=flora-gate install::$*"; log "error: $*"; exit 1; }

repo=${FLORA_GATE_REPO:-}
tag=${FLORA_GATE_VERSION:-}
[ -n "$tag" ] || tag=${FLORA_GATE_REF:-}
base=${FLORA_GATE_RELEASE_BASE_URL:-${GITHUB_SERVER_URL:-https://github.com}}
dir=${FLORA_GATE_INSTALL_DIR:-${RUNNER_TOOL_CACHE:-$HOME/.cache}/flora-gate/${tag:-source}}
cargo_cmd=${FLORA_GATE_CARGO:-cargo}
action_path=${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/.." && pwd)}

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) target=x86_64-unknown-linux-gnu ;;
  Linux/aarch64 | Linux/arm64) target=aarch64-unknown-linux-gnu ;;
  Darwin/x86_64) target=x86_64-apple-darwin ;;
  Darwin/arm64) target=aarch64-apple-darwin ;;
  MINGW*/* | MSYS*/* | CYGWIN*/*) target=x86_64-pc-windows-msvc ;;
  *) target="" ;;
esac
exe=flora-gate
[ "$target" = x86_64-pc-windows-msvc ] && exe=flora-gate.exe
asset="flora-gate-${target}.tar.gz"

publish() {
  if [ -n "${GITHUB_PATH:-}" ]; then echo "$dir" >> "$GITHUB_PATH"; fi
  log "installed $("$dir/$exe" --version 2>/dev/null || echo "$dir/$exe")"
}

if [ -x "$dir/$exe" ] && "$dir/$exe" --version >/dev/null 2>&1; then
  log "using the cached binary in $dir"
  publish
  exit 0
fi
mkdir -p "$dir"

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

from_source() {
  log "$1; building from source with cargo (this takes a few minutes)"
  # Reuse the checkout's target directory when the action builds itself (the self-test).
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$action_path/target}" \
    "$cargo_cmd" install --locked --path "$action_path" --root "$dir.cargo" \
    || die "cargo install failed; pin \`version:\` to a release that has a binary for $target"
  cp "$dir.cargo/bin/$exe" "$dir/$exe"
  publish
}

if [ -z "$repo" ] || [ -z "$tag" ] || [ -z "$target" ]; then
  from_source "no release to download (repository '${repo}', tag '${tag}', platform '$(uname -s)/$(uname -m)')"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
url="$base/$repo/releases/download/$tag"
fetch() { curl --fail --silent --show-error --location --retry 3 --retry-delay 1 --output "$2" "$1"; }
if ! fetch "$url/$asset" "$tmp/$asset" 2>"$tmp/err" || ! fetch "$url/SHA256SUMS" "$tmp/SHA256SUMS" 2>>"$tmp/err"; then
  from_source "no prebuilt $asset in release $tag ($(head -c 200 "$tmp/err" | tr '\n' ' '))"
  exit 0
fi
expected=$(awk -v a="$asset" '$2 == a || $2 == "*"a {print $1}' "$tmp/SHA256SUMS" | head -1)
[ -n "$expected" ] || die "SHA256SUMS of release $tag has no line for $asset"
actual=$(sha256 "$tmp/$asset")
if [ "$expected" != "$actual" ]; then
  die "checksum mismatch for $asset of release $tag: expected $expected, got $actual; refusing to install"
fi
tar -xzf "$tmp/$asset" -C "$tmp"
found=$(find "$tmp" -type f -name "$exe" | head -1)
[ -n "$found" ] || die "$asset does not contain $exe"
install -m 0755 "$found" "$dir/$exe"
publish
