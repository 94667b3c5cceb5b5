#!/usr/bin/env bash
# scripts/lib/netns.sh -- the realistic-network mode of the failover drill
# (scripts/drill --netns): each region in its own network namespace with its own
# address, cross-region links through a delaying TCP relay (scripts/relay/relay.c),
# partitions by iptables DROP inside the namespaces. Sourced by scripts/drill and by
# tests/integration/test_netns.sh; needs root, ip (iproute2) and iptables.
#
# Topology (region i = 1, 2 in the order given to netns_setup; NET defaults to 10.201):
#
#   root namespace: the workload, ternctl, the relay
#     tdrill<i>-root  NET.<i>.1/24   ──veth──  tdrill<i>-ns  NET.<i>.2/24  in namespace tern-drill-<region>
#                                                 DynamoDB Local (all interfaces), Redis
#                                                 (NET.<i>.2 and 127.0.0.1), agent, replicator
#                                                 (tcp://*:PORT), the RTT echo server (region 2)
#
#   The namespaces have no default route: they reach nothing but the root side of their
#   own veth, so a region reaches the other only through the relay. The relay listens on
#   the root side of region A's veth, on region B's replicator port, and forwards to
#   region B's replicator with a one-way delay of RTT/2; region A's config names that as
#   B's peer endpoint (same port, and B's listen is a wildcard, so `ternctl`'s config set
#   check holds). A third route, NET.1.1:NETNS_PROBE_PORT -> NET.2.2:NETNS_PROBE_PORT (an
#   echo server), is what the RTT is measured through: the same relay process, the same
#   veths, the same delay as the replication links.
#
# Functions (each prints a reason on stderr and returns non-zero on failure):
#   netns_setup DIR CFGDIR RTT_MS BIN REGION1 REGION2
#       cleans up a stale set, creates namespaces and veths, writes the region configs to
#       DIR/config/ (from CFGDIR's), starts the relay and the echo server, measures the
#       RTT. Sets NETNS_CFG_DIR, NETNS_RTT_MS (measured p50, ms), NETNS_DIR. Installs an
#       EXIT trap that tears everything down (the drill replaces it with its own cleanup,
#       which calls netns_teardown).
#   netns_exec REGION CMD...   runs CMD inside REGION's namespace (REDIS_BIND set for
#                              scripts/lib/servers.sh start_redis)
#   netns_measure_rtt [OUT]    RTT probe through the relay: JSON line to OUT and stdout
#   netns_cut / netns_heal     cut both replication links (iptables DROP in both
#                              namespaces) / remove the rules; DIR/split.log keeps the
#                              rules and their packet counters
#   netns_attach DIR R1 R2     lets another shell (a test) use netns_cut/heal on a set
#   netns_teardown             stops the relay and every process left in the namespaces,
#                              deletes namespaces and veths (idempotent; also for a stale
#                              set from a killed run)
# Run as a script, `scripts/lib/netns.sh down` tears down what a run left behind
# (after `scripts/drill --netns --keep`, or a kill -9 of the drill).

. "$(dirname "${BASH_SOURCE[0]}")/servers.sh" # pid_alive
NETNS_NET=${TERN_NETNS_NET:-10.201}          # first two octets of the regions' /24s
NETNS_PROBE_PORT=${TERN_NETNS_PROBE_PORT:-7999}
NETNS_STATE=/run/tern-drill-netns            # pids of the relay, for a later stale cleanup
NETNS_CHAIN=TERN-SPLIT
NETNS_REGIONS=()
NETNS_DIR=""
NETNS_CFG_DIR=""
NETNS_RTT_MS=null
NETNS_RELAY_BIN=""

_netns_log() { echo "[netns $(date -u +%H:%M:%S)] $*"; }
_netns_err() { echo "drill --netns: $*" >&2; }

netns_name() { echo "tern-drill-$1"; }                              # netns_name REGION
netns_ip() { echo "$NETNS_NET.$1.2"; }                        # netns_ip INDEX: the region's address
netns_root_ip() { echo "$NETNS_NET.$1.1"; }                   # netns_root_ip INDEX: root side of its veth
netns_index() {                                               # netns_index REGION: 1 or 2
  local i
  for i in "${!NETNS_REGIONS[@]}"; do [ "${NETNS_REGIONS[$i]}" = "$1" ] && { echo $((i + 1)); return 0; }; done
  _netns_err "unknown region $1"; return 1
}

netns_exec() { # netns_exec REGION CMD...
  local r=$1 i; shift
  i=$(netns_index "$r") || return 1
  ip netns exec "$(netns_name "$r")" env REDIS_BIND="$(netns_ip "$i") 127.0.0.1" "$@"
}

_netns_kill_pid() { # _netns_kill_pid PID: TERM, up to 5 s, then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do pid_alive "$pid" || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
}

# netns_teardown: everything this mode creates, whether this run or a killed one made it.
# The namespaces and veths have fixed names, so one --netns drill runs at a time.
netns_teardown() {
  local f pid ns i link
  for f in "$NETNS_STATE"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    # only a tern-relay: the pid may have been reused since a killed run wrote it
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tern-relay ]; then
      _netns_kill_pid "$pid"
    fi
    rm -f "$f"
  done
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^tern-drill-/ {print $1}'); do
    # processes still inside (a killed run's servers, or daemons a failed stop left):
    # they hold the namespace and its veth alive
    for pid in $(ip netns pids "$ns" 2>/dev/null); do _netns_kill_pid "$pid"; done
    ip netns del "$ns" 2>/dev/null || true
  done
  for i in 1 2; do
    link=tdrill$i-root
    ip link show "$link" >/dev/null 2>&1 && ip link del "$link" 2>/dev/null
  done
  return 0
}

_netns_check_clean() { # nothing of ours may be left, and the subnets must be free
  local left
  left=$(ip netns list 2>/dev/null | awk '$1 ~ /^tern-drill-/ {print $1}'; ip -o link show 2>/dev/null | grep -o 'tdrill[12]-root' || true)
  [ -z "$left" ] || { _netns_err "could not remove a stale set: $left"; return 1; }
  if ip -4 -o addr show 2>/dev/null | grep -q " $NETNS_NET\.[12]\."; then
    _netns_err "addresses in $NETNS_NET.1.0/24 or $NETNS_NET.2.0/24 are already used on this machine (set TERN_NETNS_NET=10.x to use other /24s)"
    return 1
  fi
}

_netns_create() { # _netns_create INDEX REGION
  local i=$1 r=$2 ns
  ns=$(netns_name "$r")
  ip netns add "$ns" || { _netns_err "ip netns add $ns failed (root and a kernel with network namespaces needed)"; return 1; }
  ip link add "tdrill$i-root" type veth peer name "tdrill$i-ns" ||
    { _netns_err "creating the veth pair tdrill$i-root/tdrill$i-ns failed (veth support needed)"; return 1; }
  ip link set "tdrill$i-ns" netns "$ns" &&
    ip addr add "$(netns_root_ip "$i")/24" dev "tdrill$i-root" &&
    ip link set "tdrill$i-root" up &&
    ip netns exec "$ns" ip addr add "$(netns_ip "$i")/24" dev "tdrill$i-ns" &&
    ip netns exec "$ns" ip link set "tdrill$i-ns" up &&
    ip netns exec "$ns" ip link set lo up ||
    { _netns_err "configuring the veth pair of $r failed"; return 1; }
  # the split chain: hooked into INPUT and OUTPUT, empty until netns_cut
  ip netns exec "$ns" iptables -N "$NETNS_CHAIN" &&
    ip netns exec "$ns" iptables -I INPUT -j "$NETNS_CHAIN" &&
    ip netns exec "$ns" iptables -I OUTPUT -j "$NETNS_CHAIN" ||
    { _netns_err "iptables inside namespace $ns failed (needed for the split scenario)"; return 1; }
}

_netns_port() { sed -E 's#^.*:([0-9]+)/?$#\1#' <<<"$1"; }     # PORT of tcp://HOST:PORT or http://HOST:PORT

# _netns_gen_config SRC DST INDEX PEER_INDEX: the region's config for the namespaces.
# Store and Redis at the namespace address (the agent and replicator reach them there
# too), the replicator on all interfaces, the peer's endpoint at the relay (root side of
# this region's veth, the peer's replicator port). Key paths stay relative: keys are
# generated beside the generated configs (DIR/config/keys/) by scripts/local-region.
_netns_gen_config() {
  local src=$1 dst=$2 i=$3 pi=$4 sp pp
  sp=$(_netns_port "$(jq -r .store.endpoint "$src")")
  pp=$(_netns_port "$(jq -r .replicator.listen "$src")")
  jq --arg ip "$(netns_ip "$i")" --arg rip "$(netns_root_ip "$i")" --arg sp "$sp" --arg pp "$pp" '
    .store.endpoint = ("http://" + $ip + ":" + $sp)
    | if .store.streams_endpoint then .store.streams_endpoint |= sub("//[^:/]+"; "//" + $ip) else . end
    | .redis.host = $ip
    | .replicator.listen = ("tcp://*:" + $pp)
    | .peers |= map(.endpoint |= ("tcp://" + $rip + ":" + (capture(":(?<p>[0-9]+)$").p)))' "$src" >"$dst"
}

_netns_relay_bin() { # the built tern-relay, or one compiled from source into DIR
  local bin=$1 src
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/relay/relay.c
  if [ -x "$bin/scripts/relay/tern-relay" ] && [ "$bin/scripts/relay/tern-relay" -nt "$src" ]; then
    echo "$bin/scripts/relay/tern-relay"; return 0
  fi
  cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Werror \
    -o "$NETNS_DIR/tern-relay" "$src" >"$NETNS_DIR/relay-build.log" 2>&1 ||
    { _netns_err "compiling $src failed: see $NETNS_DIR/relay-build.log"; return 1; }
  echo "$NETNS_DIR/tern-relay"
}

_netns_wait_ready() { # _netns_wait_ready LOG PID WHAT
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q 'tern-relay: ready' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { _netns_err "$3 exited: $(tail -n 3 "$1")"; return 1; }
    sleep 0.05
  done
  _netns_err "$3 not ready after 5 s: see $1"; return 1
}

netns_measure_rtt() { # netns_measure_rtt [OUT]: a TCP request/response through the relay
  local r1=${NETNS_REGIONS[0]} res
  res=$(ip netns exec "$(netns_name "$r1")" "$NETNS_RELAY_BIN" --probe "$(netns_root_ip 1):$NETNS_PROBE_PORT" --count 20) ||
    { _netns_err "RTT probe through the relay failed"; return 1; }
  [ -n "${1:-}" ] && echo "$res" >"$1"
  echo "$res"
}

netns_setup() { # netns_setup DIR CFGDIR RTT_MS BIN REGION1 REGION2
  local dir=$1 cfgsrc=$2 rtt=$3 bin=$4 delay i pi r pr p_port pid res c a b
  NETNS_REGIONS=("$5" "$6")
  if [ "$(id -u)" -ne 0 ]; then _netns_err "needs root (network namespaces, veth pairs, iptables)"; return 1; fi
  for c in ip iptables jq cc; do
    command -v "$c" >/dev/null || { _netns_err "$c is missing (scripts/setup installs iproute2, iptables, jq, build-essential)"; return 1; }
  done
  mkdir -p "$dir/config" "$NETNS_STATE"
  NETNS_DIR=$(cd "$dir" && pwd)
  trap netns_teardown EXIT
  if ip netns list 2>/dev/null | grep -q '^tern-drill-' || ip link show tdrill1-root >/dev/null 2>&1 ||
     ip link show tdrill2-root >/dev/null 2>&1 || ls "$NETNS_STATE"/*.pid >/dev/null 2>&1; then
    _netns_log "removing a stale set of namespaces, veths and relay from an earlier run"
  fi
  netns_teardown
  _netns_check_clean || return 1
  for i in 1 2; do _netns_create "$i" "${NETNS_REGIONS[$((i - 1))]}" || return 1; done
  for i in 1 2; do
    pi=$((3 - i)); r=${NETNS_REGIONS[$((i - 1))]}
    [ -f "$cfgsrc/$r.json" ] || { _netns_err "missing config $cfgsrc/$r.json"; return 1; }
    _netns_gen_config "$cfgsrc/$r.json" "$NETNS_DIR/config/$r.json" "$i" "$pi" || return 1
  done
  NETNS_CFG_DIR=$NETNS_DIR/config
  NETNS_RELAY_BIN=$(_netns_relay_bin "$bin") || return 1

  # the relay: one route per direction, plus the RTT probe route
  delay=$(awk -v r="$rtt" 'BEGIN { printf "%.3f", r / 2 }')
  local routes=()
  for i in 1 2; do
    pi=$((3 - i)); r=${NETNS_REGIONS[$((i - 1))]} pr=${NETNS_REGIONS[$((pi - 1))]}
    p_port=$(_netns_port "$(jq -r .replicator.listen "$NETNS_CFG_DIR/$pr.json")")
    routes+=(--route "$r-to-$pr,$(netns_root_ip "$i"):$p_port,$(netns_ip "$pi"):$p_port")
  done
  routes+=(--route "rtt-probe,$(netns_root_ip 1):$NETNS_PROBE_PORT,$(netns_ip 2):$NETNS_PROBE_PORT")
  ip netns exec "$(netns_name "${NETNS_REGIONS[1]}")" "$NETNS_RELAY_BIN" --echo "$(netns_ip 2):$NETNS_PROBE_PORT" \
    </dev/null >/dev/null 2>"$NETNS_DIR/echo.log" &
  _netns_wait_ready "$NETNS_DIR/echo.log" $! "the RTT echo server" || return 1
  "$NETNS_RELAY_BIN" --delay-ms "$delay" "${routes[@]}" </dev/null >/dev/null 2>"$NETNS_DIR/relay.log" &
  pid=$!
  echo "$pid" >"$NETNS_STATE/relay.pid"
  echo "$pid" >"$NETNS_DIR/relay.pid"
  _netns_wait_ready "$NETNS_DIR/relay.log" "$pid" "the relay" || return 1
  {
    echo "one-way delay ${delay} ms (configured RTT ${rtt} ms); relay pid $pid; log relay.log"
    for ((i = 1; i < ${#routes[@]}; i += 2)); do
      IFS=, read -r r a b <<<"${routes[$i]}"
      echo "$r: listens $a -> forwards to $b"
    done
    for i in 1 2; do
      echo "${NETNS_REGIONS[$((i - 1))]}: namespace $(netns_name "${NETNS_REGIONS[$((i - 1))]}"), address $(netns_ip "$i"), veth tdrill$i-ns <-> tdrill$i-root ($(netns_root_ip "$i"))"
    done
  } >"$NETNS_DIR/relay.txt"
  res=$(netns_measure_rtt "$NETNS_DIR/rtt.json") || return 1
  NETNS_RTT_MS=$(jq .p50_ms <<<"$res")
  _netns_log "namespaces $(netns_name "$5") ($(netns_ip 1)) and $(netns_name "$6") ($(netns_ip 2)); relay one-way ${delay} ms; measured RTT p50 $NETNS_RTT_MS ms ($(jq -c '{min_ms, p90_ms, max_ms}' <<<"$res"))"
}

# netns_cut: both links down. In each namespace, drop the agent's traffic to the relay
# (the root side of its veth, the peer's replicator port) and everything to or from the
# local replicator's port. The workload's and ternctl's traffic (store, Redis) still flows.
netns_attach() { # netns_attach DIR REGION1 REGION2: use a set netns_setup made (tests)
  NETNS_REGIONS=("$2" "$3")
  NETNS_DIR=$(cd "$1" && pwd)
  NETNS_CFG_DIR=$NETNS_DIR/config
}

netns_cut() {
  local i r pr ns own_port peer_port
  for i in 1 2; do
    r=${NETNS_REGIONS[$((i - 1))]} pr=${NETNS_REGIONS[$((2 - i))]} ns=$(netns_name "$r")
    own_port=$(_netns_port "$(jq -r .replicator.listen "$NETNS_CFG_DIR/$r.json")")
    peer_port=$(_netns_port "$(jq -r .replicator.listen "$NETNS_CFG_DIR/$pr.json")")
    ip netns exec "$ns" iptables -A "$NETNS_CHAIN" -p tcp -d "$(netns_root_ip "$i")" --dport "$peer_port" -j DROP &&
      ip netns exec "$ns" iptables -A "$NETNS_CHAIN" -p tcp -s "$(netns_root_ip "$i")" --sport "$peer_port" -j DROP &&
      ip netns exec "$ns" iptables -A "$NETNS_CHAIN" -p tcp --dport "$own_port" -j DROP &&
      ip netns exec "$ns" iptables -A "$NETNS_CHAIN" -p tcp --sport "$own_port" -j DROP ||
      { _netns_err "iptables in $ns failed"; return 1; }
  done
  echo "$(date +%s%3N) cut" >>"$NETNS_DIR/split.log"
}

netns_heal() { # removes the DROP rules; logs how many packets they dropped
  local r ns rc=0
  for r in "${NETNS_REGIONS[@]}"; do
    ns=$(netns_name "$r")
    { echo "--- $r ($ns) before heal:"; ip netns exec "$ns" iptables -L "$NETNS_CHAIN" -n -v -x; } >>"$NETNS_DIR/split.log" 2>&1
  done
  # the time before the first rule goes: nothing can cross earlier (split.log "cut" is
  # the time after the last rule was in place)
  echo "$(date +%s%3N) heal" >>"$NETNS_DIR/split.log"
  for r in "${NETNS_REGIONS[@]}"; do
    ip netns exec "$(netns_name "$r")" iptables -F "$NETNS_CHAIN" || { _netns_err "iptables -F in $(netns_name "$r") failed"; rc=1; }
  done
  return $rc
}

netns_dropped() { # total packets the split rules dropped, from DIR/split.log
  awk '$3 == "DROP" { n += $1 } END { print n + 0 }' "$NETNS_DIR/split.log" 2>/dev/null || echo 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    down) [ "$(id -u)" -eq 0 ] || { echo "netns.sh down: needs root" >&2; exit 1; }
          netns_teardown; echo "netns: namespaces, veths and relay removed" ;;
    *) echo "usage: scripts/lib/netns.sh down   (removes what scripts/drill --netns left)" >&2; exit 2 ;;
  esac
fi
