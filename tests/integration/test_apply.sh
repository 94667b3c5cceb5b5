#!/usr/bin/env bash
# test_apply.sh -- apply/ against a real DynamoDB Local and redis-server started on free
# ports in a temp dir: groups of puts (apply_puts: one TransactWriteItems from
# APPLY_GROUP_MIN puts, single puts below) decide every member as a single conditional put
# would, and a repair never undoes a newer delete, even
# one made between its tombstone check and its write (DynamoDB Local is SIGSTOPped for it);
# a delete's echo token is tentative until its DeleteItem answers.
# Runs apply_check (tests/integration/apply_check.c).
set -euo pipefail
: "${TERN_BUILD:?TERN_BUILD must point at the build dir (ctest sets it)}"
TERN_SRC=${TERN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=../../scripts/lib/servers.sh
source "$TERN_SRC/scripts/lib/servers.sh"

bin="$TERN_BUILD/tests/apply_check"
[ -x "$bin" ] || { echo "test_apply: $bin is not built" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/tern-test-apply.XXXXXX")
export TERN_PORT_LIST=$dir/ports
cleanup() {
  local rc=$?
  [ -f "$dir/ddb-$ddb.pid" ] && kill -CONT "$(cat "$dir/ddb-$ddb.pid")" 2>/dev/null # apply_check stops it
  stop_all "$dir"
  release_ports "$dir/ports"
  rm -rf "$dir"
  exit "$rc"
}
ddb="" redis=""
trap cleanup EXIT
ddb=$(free_port) redis=$(free_port)
start_ddb "$dir" "$ddb"
start_redis "$dir" "$redis"
"$bin" "http://127.0.0.1:$ddb" "$redis" "$(cat "$dir/ddb-$ddb.pid")"
