#!/usr/bin/env bash
# test_store.sh -- store/ against a real DynamoDB Local: starts one on a free port in a
# temp dir and runs store_check (tests/integration/store_check.c) against it.
set -euo pipefail
: "${TERN_BUILD:?TERN_BUILD must point at the build dir (ctest sets it)}"
TERN_SRC=${TERN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=../../scripts/lib/servers.sh
source "$TERN_SRC/scripts/lib/servers.sh"

bin="$TERN_BUILD/tests/store_check"
[ -x "$bin" ] || { echo "test_store: $bin is not built" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/tern-test-store.XXXXXX")
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for f in "$dir"/ddb-*.log; do
      [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  stop_all "$dir"
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT

port=$(free_port)
closed=$(free_port)
while [ "$closed" = "$port" ]; do closed=$(free_port); done
start_ddb "$dir" "$port"
"$bin" "http://127.0.0.1:$port" "$closed"
