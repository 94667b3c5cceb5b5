# tests/lib/cluster.sh -- a local cluster of N regions for integration tests, started
# through scripts/local-region exactly as a user would, on free ports, in a temp dir.
#
#   . "$TERN_SRC/tests/lib/cluster.sh"
#   cluster_init 2              # regions us-east-1 eu-west-1 (3: + ap-south-1)
#   cluster_up                  # store, Redis, tables, keys, agent, replicator per region
#   region_endpoint us-east-1   # http://127.0.0.1:PORT
#   cluster_down                # also run by the EXIT trap
# Variables: CLUSTER_DIR, CLUSTER_REGIONS, TABLE (default "tern-test").
TERN_SRC=${TERN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TERN_BUILD=${TERN_BUILD:-$TERN_SRC/build}
TERN_ROOT=$TERN_SRC
. "$TERN_SRC/scripts/lib/servers.sh"
export TERN_BIN_DIR=$TERN_BUILD
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
TABLE=${TABLE:-tern-test}
DDBTOOL=$TERN_BUILD/tests/ddbtool
TERNCTL=$TERN_BUILD/ternctl/ternctl
ALL_REGIONS=(us-east-1 eu-west-1 ap-south-1)
declare -A CL_DDB CL_REDIS CL_REPL

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "== $*"; }

# cluster_init N [extra jq filter applied to every config]
cluster_init() {
  local n=$1 extra=${2:-.} r p
  CLUSTER_DIR=$(mktemp -d /tmp/tern-test.XXXXXX)
  CLUSTER_REGIONS=("${ALL_REGIONS[@]:0:$n}")
  trap cluster_down EXIT
  mkdir -p "$CLUSTER_DIR/keys"
  for r in "${CLUSTER_REGIONS[@]}"; do
    CL_DDB[$r]=$(free_port); CL_REDIS[$r]=$(free_port); CL_REPL[$r]=$(free_port)
    "$TERNCTL" keygen "$r" --dir "$CLUSTER_DIR/keys" >/dev/null || fail "keygen $r"
  done
  for r in "${CLUSTER_REGIONS[@]}"; do
    local peers="[]"
    for p in "${CLUSTER_REGIONS[@]}"; do
      [ "$p" = "$r" ] && continue
      peers=$(jq -c --arg p "$p" --arg e "tcp://127.0.0.1:${CL_REPL[$p]}" \
        '. + [{region:$p, endpoint:$e, public_key_file:("keys/" + $p + ".pub")}]' <<<"$peers")
    done
    jq -n --arg r "$r" --arg t "$TABLE" --argjson ddb "${CL_DDB[$r]}" --argjson redis "${CL_REDIS[$r]}" \
      --argjson repl "${CL_REPL[$r]}" --argjson peers "$peers" \
      --argjson am "$(free_port)" --argjson rm "$(free_port)" '{
        region:$r,
        store:{endpoint:("http://127.0.0.1:" + ($ddb|tostring)), credentials:{source:"env"}},
        redis:{port:$redis},
        tables:[$t],
        replicator:{listen:("tcp://127.0.0.1:" + ($repl|tostring)), metrics_port:$rm},
        agent:{metrics_port:$am, ack_timeout_ms:1000},
        peers:$peers,
        curve:{enabled:true, secret_key_file:("keys/" + $r + ".key")},
        log_level:"info"}' | jq "$extra" >"$CLUSTER_DIR/$r.json"
  done
}

region_cfg() { echo "$CLUSTER_DIR/$1.json"; }
region_run() { echo "$CLUSTER_DIR/run-$1"; }
region_endpoint() { echo "http://127.0.0.1:${CL_DDB[$1]}"; }
region_redis() { redis-cli -p "${CL_REDIS[$1]}" "${@:2}"; }
redis_key() { echo "tern:$1:$2"; }

lr() { # lr CMD REGION [opts]: scripts/local-region for a cluster region
  local cmd=$1 r=$2
  "$TERN_SRC/scripts/local-region" --config "$(region_cfg "$r")" --run-dir "$(region_run "$r")" \
    --bin "$TERN_BUILD" "${@:3}" "$cmd" "$r"
}

cluster_up() {
  local r
  for r in "${CLUSTER_REGIONS[@]}"; do lr up "$r" --no-daemons "$@" >/dev/null || fail "up $r"; done
  for r in "${CLUSTER_REGIONS[@]}"; do lr start-daemons "$r" >/dev/null || fail "daemons $r"; done
}

cluster_down() {
  local r
  [ -n "${CLUSTER_DIR:-}" ] || return 0
  for r in "${CLUSTER_REGIONS[@]}"; do lr down "$r" >/dev/null 2>&1 || true; done
  if [ -n "${KEEP_CLUSTER:-}" ]; then echo "kept $CLUSTER_DIR"; else rm -rf "$CLUSTER_DIR"; fi
  CLUSTER_DIR=
}

ctl() { # ternctl with every cluster config
  local args=() r
  for r in "${CLUSTER_REGIONS[@]}"; do args+=(--config "$(region_cfg "$r")"); done
  "$TERNCTL" "${args[@]}" "$@"
}

# kill_daemon REGION NAME [SIGNAL]: NAME is tern-region-agent or tern-replicator
kill_daemon() { stop_pidfile "$(region_run "$1")/$2.pid" "${3:-TERM}"; }
daemon_log() { cat "$(region_run "$1")/$2.log"; }

# wait_converged SECONDS REGIONS...: until `ternctl verify` is clean over the regions
wait_converged() {
  local secs=$1 i out; shift
  local list; list=$(IFS=,; echo "$*")
  for ((i = 0; i < secs * 2; i++)); do
    out=$(ctl verify --regions "$list" 2>&1) && return 0
    sleep 0.5
  done
  echo "$out" >&2
  return 1
}

# assert_no_sanitizer_reports: fails if any daemon log holds an ASan/UBSan report
assert_clean_logs() {
  local f
  for f in "$CLUSTER_DIR"/run-*/tern-*.log; do
    [ -f "$f" ] || continue
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f"; then
      grep -nE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" | head >&2
      fail "sanitizer report in $f"
    fi
  done
}
