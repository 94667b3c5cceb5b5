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
TABLEDUMP=$TERN_BUILD/tests/tabledump
PEERPROBE=$TERN_BUILD/tests/peerprobe
CURVEKEYGEN=$TERN_BUILD/tests/curvekeygen
TERNCTL=$TERN_BUILD/ternctl/ternctl
ALL_REGIONS=(us-east-1 eu-west-1 ap-south-1)
declare -A CL_DDB CL_REDIS CL_REPL
CL_RELAYS=()

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "== $(date +%T) $*"; }

# tern_keygen NAME DIR: a CURVE key pair DIR/NAME.key, DIR/NAME.pub (ternctl keygen's
# format); ternctl when it is built, else the test helper curvekeygen.
tern_keygen() {
  if [ -x "$TERNCTL" ]; then "$TERNCTL" keygen "$1" --dir "$2" --force >/dev/null 2>&1
  else "$CURVEKEYGEN" "$1" "$2"; fi
}

# cluster_init N [extra jq filter applied to every config]
cluster_init() {
  local n=$1 extra=${2:-.} r p
  CLUSTER_DIR=$(mktemp -d /tmp/tern-test.XXXXXX)
  export TERN_PORT_LIST=$CLUSTER_DIR/ports   # free_port reservations, released by cluster_down
  CLUSTER_REGIONS=("${ALL_REGIONS[@]:0:$n}")
  trap cluster_down EXIT
  mkdir -p "$CLUSTER_DIR/keys"
  for r in "${CLUSTER_REGIONS[@]}"; do
    CL_DDB[$r]=$(free_port); CL_REDIS[$r]=$(free_port); CL_REPL[$r]=$(free_port)
    tern_keygen "$r" "$CLUSTER_DIR/keys" || fail "keygen $r"
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
        agent:{metrics_port:$am, ack_timeout_ms:1000, idle_poll_ms:20},
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

# regions_parallel CMD [opts]: `lr CMD REGION [opts]` for every region at once (stdout
# dropped); waits for all of them, then prints the regions that failed (" r1 r2", or
# nothing). Every one is waited for, so that a failure does not run the EXIT trap's
# cluster_down while another region is still starting (its daemons would be left).
regions_parallel() {
  local r pids=() i=0 failed=""
  for r in "${CLUSTER_REGIONS[@]}"; do lr "$1" "$r" "${@:2}" >/dev/null & pids+=($!); done
  for r in "${CLUSTER_REGIONS[@]}"; do wait "${pids[$i]}" || failed+=" $r"; i=$((i + 1)); done
  echo "$failed"
}

cluster_up() { # stores and Redis of all regions start in parallel, then the daemons (also in parallel)
  local failed
  failed=$(regions_parallel up --no-daemons "$@"); [ -z "$failed" ] || fail "up:$failed"
  failed=$(regions_parallel start-daemons); [ -z "$failed" ] || fail "daemons:$failed"
}

cluster_down() { # daemons first (graceful), then every region's servers side by side
  [ -n "${CLUSTER_DIR:-}" ] || return 0
  regions_parallel stop-daemons >/dev/null 2>&1
  [ ${#CL_RELAYS[@]} -eq 0 ] || kill "${CL_RELAYS[@]}" 2>/dev/null || true
  CL_RELAYS=()
  regions_parallel down >/dev/null 2>&1
  release_ports "$CLUSTER_DIR/ports"
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
# signal_daemon REGION NAME SIGNAL: only sends SIGNAL (e.g. STOP, CONT); kill_daemon
# waits for the process to exit (and SIGKILLs it after 10 s)
signal_daemon() { kill "-$3" "$(cat "$(region_run "$1")/$2.pid")" || fail "signal $3 to $1 $2"; }

# wait_converged SECONDS REGIONS...: until `ternctl verify` is clean over the regions
# (until wait_identical says so when this ternctl has no verify yet)
wait_converged() {
  local secs=$1 i out; shift
  local list; list=$(IFS=,; echo "$*")
  if ! "$TERNCTL" --help 2>&1 | grep -q '^  verify'; then wait_identical "$secs" "$@"; return; fi
  for ((i = 0; i < secs * 2; i++)); do
    out=$(ctl verify --regions "$list" 2>&1) && return 0
    sleep 0.5
  done
  echo "$out" >&2
  return 1
}

# dump_region REGION [--hidden]: every item of $TABLE, canonical, sorted, one a line
# (tern:* attributes left out unless --hidden)
dump_region() { "$TABLEDUMP" "$(region_endpoint "$1")" "$TABLE" "${@:2}"; }

# drained REGIONS...: every agent's change log is acknowledged by every peer
# (ack:T[peer] equals the log's last id), so nothing is in flight
drained() {
  local r p last ack
  for r in "$@"; do
    last=$(region_redis "$r" XINFO STREAM "$(redis_key "$r" "log:$TABLE")" 2>/dev/null |
      awk 'f{print; exit} $0=="last-generated-id"{f=1}')
    [ -n "$last" ] || continue # no log yet: nothing local to ship
    for p in "$@"; do
      [ "$p" = "$r" ] && continue
      ack=$(region_redis "$r" HGET "$(redis_key "$r" "ack:$TABLE")" "$p")
      [ "$ack" = "$last" ] || return 1
    done
  done
  return 0
}

# wait_identical SECONDS REGIONS...: until every region's table holds the same items
# (tern:* aside), the agents' logs are fully acknowledged, and both stay so for 2 s
# (a change still being read from a stream would show up in that time). On timeout
# prints the differences (at most 20 lines per region) and returns 1.
wait_identical() {
  local secs=$1 end r first d ok; shift
  end=$((SECONDS + secs))
  d="$CLUSTER_DIR/dump"
  mkdir -p "$d"
  while :; do
    ok=1
    for r in "$@"; do dump_region "$r" >"$d/$r" || ok=0; done
    first=$1
    for r in "${@:2}"; do cmp -s "$d/$first" "$d/$r" || ok=0; done
    if [ $ok = 1 ] && drained "$@"; then
      sleep 2
      for r in "$@"; do dump_region "$r" >"$d/$r.2" || ok=0; done
      for r in "$@"; do cmp -s "$d/$first" "$d/$r.2" || ok=0; done
      [ $ok = 1 ] && drained "$@" && return 0
    fi
    if [ $SECONDS -ge $end ]; then
      for r in "${@:2}"; do
        echo "--- $first vs $r ($(wc -l <"$d/$first") vs $(wc -l <"$d/$r") items):" >&2
        diff "$d/$first" "$d/$r" | head -20 >&2
      done
      return 1
    fi
    sleep 1
  done
}

# acnt REGION FIELD / rcnt REGION SOURCE FIELD: agent / replicator counters (0 if unset)
acnt() { local v; v=$(region_redis "$1" HGET "$(redis_key "$1" "acnt:$TABLE")" "$2"); echo "${v:-0}"; }
rcnt() { local v; v=$(region_redis "$1" HGET "$(redis_key "$1" "cnt:$2:$TABLE")" "$3"); echo "${v:-0}"; }

# Redis of a region as a process: kill_redis REGION [SIGNAL]; restart_redis REGION
# (same data dir and AOF, as start_redis in scripts/lib/servers.sh started it)
kill_redis() { stop_pidfile "$(region_run "$1")/redis-${CL_REDIS[$1]}.pid" "${2:-TERM}"; }
restart_redis() { start_redis "$(region_run "$1")" "${CL_REDIS[$1]}" >/dev/null || fail "restart redis $1"; }

# daemon_alive REGION NAME: the daemon's pid file names a live process
daemon_alive() { local f; f="$(region_run "$1")/$2.pid"; [ -f "$f" ] && pid_alive "$(cat "$f")"; }

# start_store_relay REGION DELAY_MS: tern-relay in front of REGION's store, delaying each
# request and each response by DELAY_MS; sets RELAY_PORT and RELAY_PID (cluster_down
# stops every relay started). Point a daemon's store.endpoint at http://127.0.0.1:$RELAY_PORT.
start_store_relay() {
  local i
  RELAY_PORT=$(free_port)
  "$TERN_BUILD/scripts/relay/tern-relay" --delay-ms "$2" \
    --route "store,127.0.0.1:$RELAY_PORT,127.0.0.1:${CL_DDB[$1]}" 2>"$CLUSTER_DIR/relay.log" &
  RELAY_PID=$!
  CL_RELAYS+=("$RELAY_PID")
  for ((i = 0; i < 50; i++)); do grep -q ready "$CLUSTER_DIR/relay.log" && break; sleep 0.1; done
  grep -q ready "$CLUSTER_DIR/relay.log" || fail "the relay did not start: $(cat "$CLUSTER_DIR/relay.log")"
}

# wait_log FILE REGEX [SECONDS] [N]: until FILE has N lines (default 1) matching REGEX
# (default 10 s)
wait_log() {
  local i
  for ((i = 0; i < ${3:-10} * 10; i++)); do
    [ "$(grep -cE "$2" "$1" || true)" -ge "${4:-1}" ] && return 0
    sleep 0.1
  done
  return 1
}

# key_json N [PREFIX]: the key {"PK":"PREFIX#N","SK":"ITEM"} as ddbtool wants it
key_json() { echo "{\"PK\":{\"S\":\"${2:-K}#$1\"},\"SK\":{\"S\":\"ITEM\"}}"; }

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
