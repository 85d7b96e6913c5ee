#!/usr/bin/env bash
# Whole-system load test (see e2e/examples/loadtest.rs). One command from a fresh clone:
#   bash e2e/benches/load.sh            # SQLite, and PostgreSQL when 127.0.0.1:5432 answers
# Options are passed to the load test, e.g. `bash e2e/benches/load.sh --runs 5 --seconds 20`.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --example server
cargo build --release -p inventory-e2e --example loadtest
# The physical reference: a plain sqlite3 client on this machine, in the same run.
python3 e2e/benches/sqlite_reference.py
echo
./target/release/examples/loadtest --backend sqlite "$@"
if [ -n "${INVENTORY_TEST_POSTGRES_URL:-}" ] || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  export INVENTORY_TEST_POSTGRES_URL="${INVENTORY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
  echo
  ./target/release/examples/loadtest --backend postgres "$@"
fi
