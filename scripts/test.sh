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

EMULATOR=/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator
if [ -z "${FIRESTORE_EMULATOR_HOST:-}" ] && [ -x "$EMULATOR" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$(mktemp -t firestore-emulator.XXXXXX.log)
  start=$(date +%s%N)
  "$EMULATOR" start --host=127.0.0.1 --port="$port" >"$log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 600); do
    if port_open 127.0.0.1 "$port"; then break; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "Firestore emulator exited:"; cat "$log"; exit 1; fi
    sleep 0.1
  done
  port_open 127.0.0.1 "$port" || { echo "Firestore emulator did not open port $port in 60 s"; cat "$log"; exit 1; }
  echo "Firestore emulator on 127.0.0.1:$port, ready after $(( ($(date +%s%N) - start) / 1000000 )) ms"
  export FIRESTORE_EMULATOR_HOST="127.0.0.1:$port"
fi

# The Pub/Sub emulator of the Google Cloud SDK, for the event tests (PUBSUB_EMULATOR_HOST).
PUBSUB=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
if [ -z "${PUBSUB_EMULATOR_HOST:-}" ] && [ -x "$PUBSUB" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$(mktemp -t pubsub-emulator.XXXXXX.log)
  "$PUBSUB" --host=127.0.0.1 --port="$port" >"$log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 600); do
    if port_open 127.0.0.1 "$port"; then break; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then echo "Pub/Sub emulator exited:"; cat "$log"; exit 1; fi
    sleep 0.1
  done
  port_open 127.0.0.1 "$port" || { echo "Pub/Sub emulator did not open port $port in 60 s"; cat "$log"; exit 1; }
  echo "Pub/Sub emulator on 127.0.0.1:$port"
  export PUBSUB_EMULATOR_HOST="127.0.0.1:$port"
fi

cargo test --workspace --all-features "$@"
