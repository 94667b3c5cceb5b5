#!/usr/bin/env bash
# SIGTERM during a write load, then restart: the agent stops reading, waits for the
# acknowledgements of what it shipped and saves them; the replicator finishes the batch in
# hand and acknowledges it. Both exit 0. After the restart nothing is lost and nothing is
# applied twice: every acknowledged write is versioned once and applied once (a batch
# redelivered after a restart is skipped by the watermark and counted as a duplicate).
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
E=$(region_endpoint us-east-1) W=$(region_endpoint eu-west-1)
"$DDBTOOL" load "$E" "$TABLE" --writers 2 --keys 100000 --seconds 12 --mix 100,0,0,0 --prefix G >"$CLUSTER_DIR/load.out" &
load=$!
sleep 3
for d in tern-region-agent tern-replicator; do
  for r in us-east-1 eu-west-1; do
    pid=$(cat "$(region_run "$r")/$d.pid")
    kill -TERM "$pid"
    for _ in $(seq 1 300); do pid_alive "$pid" || break; sleep 0.05; done
    pid_alive "$pid" && fail "$r $d did not stop within 15 s of SIGTERM"
    grep -q ' stopped$' "$(region_run "$r")/$d.log" || fail "$r $d did not stop cleanly"
    rm -f "$(region_run "$r")/$d.pid"
    lr start-daemons "$r" >/dev/null || fail "restart $r"
    sleep 1
  done
done
wait "$load"
acked=$(sed -E 's/.*acked=([0-9]+).*/\1/' "$CLUSTER_DIR/load.out")
[ "$acked" -gt 100 ] || fail "load acknowledged only $acked writes"
wait_converged 120 us-east-1 eu-west-1 || fail "regions differ after the restarts"
applied=$(rcnt eu-west-1 us-east-1 applied) dup=$(rcnt eu-west-1 us-east-1 dup) local=$(acnt us-east-1 local)
note "acknowledged $acked, versioned $local, applied $applied, duplicates $dup"
[ "$local" -eq "$acked" ] || fail "us-east-1 versioned $local changes for $acked acknowledged writes (lost or doubled)"
[ "$applied" -eq "$acked" ] || fail "eu-west-1 applied $applied changes, expected exactly $acked"
# (item counts are not compared with $acked: random keys repeat; verify compared the tables)
# Regression: a change written past one that was canceled at the stop (still queued in
# another apply worker) was never counted: the watermark stays before the canceled one,
# the resend finds the change written (a duplicate), so `applied` came out short and `dup`
# long ("eu-west-1 applied 4540 changes, expected exactly 4543", once in the suite). Made
# sure: eu-west-1's replicator reaches its store through a relay adding 10 ms each way and
# writes one change per call (replicator.group_writes 1), so its 4 apply workers apply
# about 200 changes/s against a load of over 300/s: every worker holds a queue when the
# stop comes. (With grouping, a worker takes its whole queue at once, and a stop found no
# queued change in one suite run out of three.)
note "eu-west-1's replicator behind a 10 ms relay, one write per call, stopped under load"
start_store_relay eu-west-1 10
kill_daemon eu-west-1 tern-replicator
jq --arg r "http://127.0.0.1:$RELAY_PORT" --arg d "$W" \
  '.store.endpoint = $r | .store.streams_endpoint = $d | .replicator.group_writes = 1 | .replicator.apply_workers = 4' \
  "$(region_cfg eu-west-1)" >"$CLUSTER_DIR/w.json" && mv "$CLUSTER_DIR/w.json" "$(region_cfg eu-west-1)"
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator behind the relay"
applied0=$applied dup0=$dup local0=$local
RLOG=$(region_run eu-west-1)/tern-replicator.log
"$DDBTOOL" load "$E" "$TABLE" --writers 2 --keys 100000 --seconds 6 --mix 100,0,0,0 --prefix H >"$CLUSTER_DIR/load2.out" &
load=$!
sleep 3
kill_daemon eu-west-1 tern-replicator
grep -q "queued changes left for their peers to resend" "$RLOG" ||
  fail "the stop found no queued change: the case was not exercised"
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
wait "$load"
acked2=$(sed -E 's/.*acked=([0-9]+).*/\1/' "$CLUSTER_DIR/load2.out")
wait_converged 120 us-east-1 eu-west-1 || fail "regions differ after the second stop"
applied=$(rcnt eu-west-1 us-east-1 applied) dup=$(rcnt eu-west-1 us-east-1 dup) local=$(acnt us-east-1 local)
note "acknowledged $acked2, versioned $((local - local0)), applied $((applied - applied0)), duplicates $((dup - dup0))"
[ "$((local - local0))" -eq "$acked2" ] || fail "us-east-1 versioned $((local - local0)) changes for $acked2 acknowledged writes"
[ "$((applied - applied0))" -eq "$acked2" ] ||
  fail "eu-west-1 applied $((applied - applied0)) changes, expected exactly $acked2 (duplicates $((dup - dup0)))"
# Per-key order when a transaction takes puts from other workers' queues: us-east-1
# rewrites 40 keys over and over while eu-west-1's replicator is down; the backlog then
# arrives in large batches, spread over 4 apply workers' queues (about 10 keys each, so a
# queue's own run of distinct puts is short), and the one transaction slot's holder takes
# from the heads of all of them (counted: tern_replicator_grouped_changes_total{queue="other"}).
# A change taken while an older one of its key was still being written could be written
# first; the older one then loses its conflict (`lost`) and is not applied: with one
# writing region, every change must be applied and none lost. (A store or Redis error
# would also show as `lost`: the failed change's resend finds its key's newer version;
# the replicator's log says so.)
note "eu-west-1's replicator down while us-east-1 rewrites 40 keys; then its backlog"
kill_daemon eu-west-1 tern-replicator
jq --arg w "$W" '.store.endpoint = $w | .replicator.group_writes = 100 | .replicator.apply_workers = 4 | .replicator.transactions = 1' \
  "$(region_cfg eu-west-1)" >"$CLUSTER_DIR/w.json" && mv "$CLUSTER_DIR/w.json" "$(region_cfg eu-west-1)"
applied0=$(rcnt eu-west-1 us-east-1 applied) lost0=$(rcnt eu-west-1 us-east-1 lost)
local0=$(acnt us-east-1 local) wlocal0=$(acnt eu-west-1 local) wecho0=$(acnt eu-west-1 echo)
"$DDBTOOL" load "$E" "$TABLE" --writers 2 --keys 40 --seconds 2 --mix 100,0,0,0 --prefix S >"$CLUSTER_DIR/load3.out" ||
  fail "load on 40 keys"
acked3=$(sed -E 's/.*acked=([0-9]+).*/\1/' "$CLUSTER_DIR/load3.out")
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
wait_converged 120 us-east-1 eu-west-1 || fail "regions differ after the backlog of 40 keys"
for ((i = 0; i < 100; i++)); do drained us-east-1 eu-west-1 && break; sleep 0.1; done # counters are saved before the ack
drained us-east-1 eu-west-1 || fail "us-east-1's log is not acknowledged after the backlog of 40 keys"
applied=$(rcnt eu-west-1 us-east-1 applied) lost=$(rcnt eu-west-1 us-east-1 lost) local=$(acnt us-east-1 local)
other=0
for ((i = 0; i < 30; i++)); do # published every 500 ms
  other=$(curl -sf --max-time 5 "http://127.0.0.1:$(jq .replicator.metrics_port "$(region_cfg eu-west-1)")/metrics" |
    awk '$1 == "tern_replicator_grouped_changes_total{queue=\"other\"}" {print $2}' || true)
  [ "${other:-0}" -gt 0 ] && break
  sleep 0.1
done
note "acknowledged $acked3, versioned $((local - local0)), applied $((applied - applied0)), lost $((lost - lost0)), taken from other queues ${other:-0}"
if [ "$((lost - lost0))" -ne 0 ]; then
  grep -E "lost|failed|error" "$RLOG" | tail -5 >&2
  fail "eu-west-1 found $((lost - lost0)) changes older than their key's item: written out of order (or after an error, above)"
fi
[ "$((local - local0))" -eq "$acked3" ] || fail "us-east-1 versioned $((local - local0)) changes for $acked3 acknowledged writes"
[ "$((applied - applied0))" -eq "$acked3" ] || fail "eu-west-1 applied $((applied - applied0)) changes, expected exactly $acked3"
# eu-west-1's agent reads one stream record per change applied: until it has read them all
for ((i = 0; i < 100; i++)); do
  [ $(($(acnt eu-west-1 echo) - wecho0 + $(acnt eu-west-1 local) - wlocal0)) -ge $((applied - applied0)) ] && break
  sleep 0.1
done
[ "$(acnt eu-west-1 local)" -eq "$wlocal0" ] || fail "eu-west-1's agent shipped $(($(acnt eu-west-1 local) - wlocal0)) changes: echoes taken for local ones"
[ "${other:-0}" -gt 0 ] || fail "no transaction took puts from another worker's queue: the case was not exercised"
assert_clean_logs
echo PASS
