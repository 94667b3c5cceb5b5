#!/usr/bin/env bash
# scripts/drill --netns end to end (root only; skipped otherwise). Two drill runs:
#  A. a short netns drill (planned, split) started over a stale set of namespaces, veths
#     and a process inside them (as a killed run leaves): exits 0; the stale set and
#     everything the run made are gone afterwards; the RTT measured through the relay is
#     within 20% of the configured one; no canary crossed faster than RTT/2; during the
#     iptables cut no canary crossed, one was held until the heal, and the DROP rules did
#     drop packets; after the heal canaries cross again.
#  B. a drill interrupted like Ctrl-C (SIGINT to its process group) after a direct check
#     on the live regions: a timed write in us-east-1 shows up in eu-west-1 no sooner
#     than RTT/2; with the links cut a write does not cross in 3 s, after the heal it
#     does; then after the interrupt, no namespace, veth or process of the run is left.
set -euo pipefail
TERN_SRC=${TERN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TERN_BUILD=${TERN_BUILD:-$TERN_SRC/build}
DDBTOOL=$TERN_BUILD/tests/ddbtool
. "$TERN_SRC/scripts/lib/servers.sh" # pid_alive
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "== $(date +%T) $*"; }
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: test_netns needs root (network namespaces)"; exit 0; fi
command -v iptables >/dev/null || fail "iptables missing (scripts/setup installs it)"
export TERN_BIN_DIR=$TERN_BUILD
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
RTT=70 HALF=35
T=$(mktemp -d /tmp/tern-netns.XXXXXX)
drill_pid=""
finish() {
  [ -n "$drill_pid" ] && kill -INT -- "-$drill_pid" 2>/dev/null && wait "$drill_pid" 2>/dev/null
  bash "$TERN_SRC/scripts/lib/netns.sh" down >/dev/null 2>&1 || true
  if [ -n "${KEEP_TEST_DIR:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap finish EXIT

nothing_left() { # nothing_left WHAT: no namespace, veth or relay of a drill remains
  local ns links
  ns=$(ip netns list | awk '$1 ~ /^tern-drill-/ {print $1}')
  links=$(ip -o link show | grep -o 'tdrill[12]-[a-z]*' || true)
  [ -z "$ns" ] || fail "$1: namespaces left: $ns"
  [ -z "$links" ] || fail "$1: veths left: $links"
  ! ls /run/tern-drill-netns/*.pid >/dev/null 2>&1 || fail "$1: relay pid file left"
}
alive() { local p; for p in "$@"; do pid_alive "$p" && echo "$p"; done; return 0; } # a zombie has exited

note "a stale set: namespace tern-drill-us-east-1 with a process in it, veth tdrill1-root"
bash "$TERN_SRC/scripts/lib/netns.sh" down >/dev/null
ip netns add tern-drill-us-east-1 || fail "ip netns add: this machine cannot make network namespaces"
ip link add tdrill1-root type veth peer name tdrill1-ns || fail "ip link add veth failed"
ip netns exec tern-drill-us-east-1 sleep 600 </dev/null >/dev/null 2>&1 &
stale_pid=$!

note "A: scripts/drill --netns --rtt-ms $RTT --scenarios planned,split"
rc=0
"$TERN_SRC/scripts/drill" --netns --rtt-ms $RTT --rate 20 --duration 3 --split-seconds 4 \
  --scenarios planned,split --out "$T/a" >"$T/a.out" 2>&1 || rc=$?
cat "$T/a.out"
[ "$rc" -eq 0 ] || fail "drill --netns exited $rc"
wait "$stale_pid" 2>/dev/null || true
[ -z "$(alive "$stale_pid")" ] || fail "the stale namespace's process survived"
nothing_left "after drill A"
[ -z "$(alive "$(cat "$T/a/netns/relay.pid")")" ] || fail "the relay of run A is still running"

rep=$T/a/report.json
[ "$(jq -r .network "$rep")" = netns ] || fail "report.json: network is not netns"
rtt=$(jq .rtt_ms "$rep")
note "measured RTT $rtt ms (configured $RTT); report: $(jq -c '{lag_ms, rtt_ms, lag_minus_one_way_ms}' "$rep")"
awk -v m="$rtt" -v c=$RTT 'BEGIN { exit !(m >= 0.8 * c && m <= 1.2 * c) }' ||
  fail "measured RTT $rtt ms is not within 20% of $RTT ms"
grep -q "network RTT (ms) *$rtt" "$T/a.out" || fail "the report table has no RTT line"

lag=$T/a/lag.csv
[ -s "$lag" ] || fail "no canary lag samples"
min=$(awk -F, '{print $2}' "$lag" | sort -n | head -1)
note "fastest canary crossing: $min ms (one-way delay $HALF ms)"
[ "$min" -ge $HALF ] || fail "a canary crossed in $min ms, faster than RTT/2 = $HALF ms"

# the split: times the DROP rules were in place (netns/split.log), canaries written then
cut=$(awk '$2 == "cut" {print $1}' "$T/a/netns/split.log")
heal=$(awk '$2 == "heal" {print $1}' "$T/a/netns/split.log")
[ -n "$cut" ] && [ -n "$heal" ] || fail "split.log has no cut/heal times"
dropped=$(awk '$3 == "DROP" { n += $1 } END { print n + 0 }' "$T/a/netns/split.log")
[ "$dropped" -gt 0 ] || fail "the DROP rules dropped no packet"
# no canary crossed while the rules were in place (500 ms for the rules to take hold)
crossed=$(awk -F, -v c="$cut" -v h="$heal" '$1 + $2 > c + 500 && $1 + $2 < h' "$lag")
[ -z "$crossed" ] || fail "canaries crossed while the links were cut: $crossed"
# the prober (one canary at a time) was held: a canary pending from the first half of
# the cut or earlier crossed only after the heal
held=$(awk -F, -v c="$cut" -v h="$heal" '$1 < c + (h - c) / 2 && $1 + $2 >= h' "$lag")
[ -n "$held" ] || fail "no canary was held by the cut"
after=$(awk -F, -v h="$heal" '$1 > h && $2 < 2000' "$lag" | wc -l)
[ "$after" -gt 0 ] || fail "no canary crossed quickly after the heal"
note "cut $((heal - cut)) ms: $dropped packets dropped, canary $(cut -d, -f1,2 <<<"$held" | head -1) (written, lag ms) held until the heal, $after crossed after it"

note "B: a drill on the live regions, then interrupted like Ctrl-C"
# as from a terminal: its own process group, SIGINT not ignored (a background job of a
# script starts with SIGINT ignored, and bash cannot undo that itself)
python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' \
  "$TERN_SRC/scripts/drill" --netns --rtt-ms $RTT --rate 5 --duration 120 --scenarios planned \
  --out "$T/b" >"$T/b.out" 2>&1 &
drill_pid=$!
for _ in $(seq 1 1200); do
  grep -q "workload started" "$T/b/drill-events.log" 2>/dev/null && break
  kill -0 "$drill_pid" 2>/dev/null || { cat "$T/b.out"; fail "drill B ended early"; }
  sleep 0.1
done
grep -q "workload started" "$T/b/drill-events.log" || { cat "$T/b.out"; fail "drill B did not start its workload"; }
E=$(jq -r .store.endpoint "$T/b/netns/config/us-east-1.json")
W=$(jq -r .store.endpoint "$T/b/netns/config/eu-west-1.json")
TABLE=$(jq -r '.tables[0]' "$T/b/netns/config/us-east-1.json")
key() { echo "{\"PK\":{\"S\":\"NETNS#$1\"},\"SK\":{\"S\":\"ITEM\"}}"; }
item() { echo "{\"PK\":{\"S\":\"NETNS#$1\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"$1\"}}"; }

t0=$(date +%s%3N)
"$DDBTOOL" put "$E" "$TABLE" "$(item timed)" || fail "put in us-east-1"
"$DDBTOOL" wait "$W" "$TABLE" "$(key timed)" v timed 20000 >/dev/null || fail "the write did not reach eu-west-1"
took=$(( $(date +%s%3N) - t0 ))
note "a write in us-east-1 was readable in eu-west-1 after $took ms"
[ "$took" -ge $HALF ] || fail "the write crossed in $took ms, faster than RTT/2 = $HALF ms"

. "$TERN_SRC/scripts/lib/netns.sh"
netns_attach "$T/b/netns" us-east-1 eu-west-1
netns_cut
"$DDBTOOL" put "$E" "$TABLE" "$(item cut)" || fail "put in us-east-1 during the cut"
sleep 3
if "$DDBTOOL" get "$W" "$TABLE" "$(key cut)" >/dev/null 2>&1; then fail "a write crossed the cut link"; fi
netns_heal
"$DDBTOOL" wait "$W" "$TABLE" "$(key cut)" v cut 30000 >/dev/null || fail "the write did not cross after the heal"
note "cut: the write stayed in us-east-1 for 3 s; healed: it crossed"

pids=$(for ns in tern-drill-us-east-1 tern-drill-eu-west-1; do ip netns pids "$ns"; done; cat "$T/b/netns/relay.pid")
kill -INT -- "-$drill_pid"
rc=0; wait "$drill_pid" || rc=$?
drill_pid=""
note "drill B ended with $rc after SIGINT"
sleep 0.5
left=$(alive $pids)
[ -z "$left" ] || fail "processes of the interrupted run still alive: $(ps -o pid,cmd -p $left | tail -n +2)"
nothing_left "after the interrupted drill B"
echo "PASS"
