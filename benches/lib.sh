# Shared set-up of the bench scripts (sourced, not run): a release build
# (or BIN), a work directory removed on exit, 2,000 tokens, the mock pinned
# to core 0 with one worker thread and the generator to core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
want() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
ulimit -n 65536 2>/dev/null || ulimit -n 16384 2>/dev/null || true
# BIN=path measures another build (say, an older one) with the same script.
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/flora-gate
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
printf 'user_id,access_token\n' > "$WORK/tokens.csv"
for i in $(seq 1 2000); do printf 'u%d,bench-token-%04d\n' "$i" "$i" >> "$WORK/tokens.csv"; done

PIN0=(); PIN1=()
if command -v taskset >/dev/null; then PIN0=(taskset -c 0); PIN1=(taskset -c 1); fi
pin() { if [ "$1" = 0 ]; then "${PIN0[@]}" "${@:2}"; else "${PIN1[@]}" "${@:2}"; fi; }

# start_mock ARGS...: the mock on a free port of core 0; its URL in MOCK_URL.
start_mock() {
  : > "$WORK/mock.url"
  TOKIO_WORKER_THREADS=1 "${PIN0[@]}" "$BIN" mock --port 0 "$@" > "$WORK/mock.url" 2>/dev/null &
  MOCK_PID=$!
  for _ in $(seq 50); do [ -s "$WORK/mock.url" ] && break; sleep 0.1; done
  MOCK_URL=$(head -1 "$WORK/mock.url")
}
stop_mock() { kill "$MOCK_PID" 2>/dev/null || true; wait "$MOCK_PID" 2>/dev/null || true; }
