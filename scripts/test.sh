#!/usr/bin/env bash
# Runs the whole test suite: every crate, every backend.
#
# PostgreSQL: INVENTORY_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test when a
# server answers there). Firestore: the emulator is started here if it is installed and
# FIRESTORE_EMULATOR_HOST is not set; so is the Pub/Sub emulator (PUBSUB_EMULATOR_HOST). SMTP: tests start their own SMTP server on loopback.
# A test whose backend or tool is missing shows as ignored (the build scripts mark it); with
# INVENTORY_REQUIRE_BACKENDS=1 (as in CI) a missing one fails the build instead.
set -euo pipefail
cd "$(dirname "$0")/.."

pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    # The emulator launcher is a script that starts Java: stop its children too.
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if [ -z "${INVENTORY_TEST_POSTGRES_URL:-}" ] && port_open 127.0.0.1 5432; then
  export INVENTORY_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi
if [ -n "${INVENTORY_REQUIRE_BACKENDS:-}" ] && [ -z "${INVENTORY_TEST_POSTGRES_URL:-}" ]; then
  echo "PostgreSQL is required (INVENTORY_REQUIRE_BACKENDS) but nothing answers on 127.0.0.1:5432" >&2
  exit 1
fi

# Headless Chromium for the Swagger UI test, when installed.
if [ -z "${INVENTORY_TEST_CHROMIUM:-}" ] && command -v chromium >/dev/null 2>&1; then
  export INVENTORY_TEST_CHROMIUM="$(command -v chromium)"
fi

# Starts an emulator of the Google Cloud SDK on a free port and exports VAR=127.0.0.1:PORT,
# unless VAR is set or the emulator is not installed: start_emulator NAME VAR COMMAND ARGS...
# (the port is appended as --port=PORT).
start_emulator() {
  local name=$1 var=$2 port log start
  shift 2
  if [ -n "${!var:-}" ] || [ ! -x "$1" ]; then return 0; fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$(mktemp -t "$name-emulator.XXXXXX.log")
  start=$(date +%s%N)
  "$@" --port="$port" >"$log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 600); do
    if port_open 127.0.0.1 "$port"; then break; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "$name emulator exited:"; cat "$log"; exit 1; fi
    sleep 0.1
  done
  port_open 127.0.0.1 "$port" || { echo "$name emulator did not open port $port in 60 s"; cat "$log"; exit 1; }
  echo "$name emulator on 127.0.0.1:$port, ready after $(( ($(date +%s%N) - start) / 1000000 )) ms"
  export "$var=127.0.0.1:$port"
}

SDK=/usr/lib/google-cloud-sdk/platform
start_emulator Firestore FIRESTORE_EMULATOR_HOST \
  "$SDK/cloud-firestore-emulator/cloud_firestore_emulator" start --host=127.0.0.1
# The Pub/Sub emulator, for the event tests.
start_emulator PubSub PUBSUB_EMULATOR_HOST \
  "$SDK/pubsub-emulator/bin/cloud-pubsub-emulator" --host=127.0.0.1

cargo test --workspace --all-features "$@"
