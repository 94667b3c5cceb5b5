#!/usr/bin/env bash
# Regression (apply/apply.c, delete echo tokens): a change that was applied but whose
# watermark was never saved (replicator killed between the write and the save) is
# delivered again. For a delete, the second attempt finds the tombstone equal to its
# version (APPLY_SAME); it used to remove the echo token "D<version>" that the FIRST
# attempt had added, so when the agent then read the first attempt's REMOVE record it
# took it for a local delete and shipped it back with a new version (an echo, which can
# also beat a concurrent write from a third region).
# Made deterministic: eu-west-1's (B) agent is frozen so the token is not consumed yet;
# B's replicator and us-east-1's (A) agent are killed, B's watermark and A's ack are
# rewound to before the changes, the daemons restart and re-deliver them; then B's
# agent continues. It must see echoes only.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
A=us-east-1 B=eu-west-1
EA=$(region_endpoint $A) EB=$(region_endpoint $B)
K=$(key_json 1 REDO)

signal_daemon $B tern-region-agent STOP
trap 'kill -CONT "$(cat "$(region_run $B)/tern-region-agent.pid" 2>/dev/null)" 2>/dev/null; cluster_down' EXIT
note "put and delete in $A, applied in $B while B's agent is frozen"
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#1"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$K" v x 10000 >/dev/null || fail "put did not reach $B"
"$DDBTOOL" delete "$EA" "$TABLE" "$K" || fail delete
"$DDBTOOL" wait "$EB" "$TABLE" "$K" - - 10000 >/dev/null || fail "delete did not reach $B"
for ((i = 0; i < 50; i++)); do [ "$(rcnt $B $A applied)" -ge 2 ] && break; sleep 0.1; done
[ "$(rcnt $B $A applied)" -ge 2 ] || fail "$B did not count the two changes applied"
sleep 1 # A's agent saves B's acknowledgement

note "crash: the watermark save never happened; A's agent resends"
kill_daemon $B tern-replicator KILL
kill_daemon $A tern-region-agent KILL
region_redis $B HSET "$(redis_key $B "wm:$A:$TABLE")" pos 0-1 >/dev/null
region_redis $A HSET "$(redis_key $A "ack:$TABLE")" $B 0-1 >/dev/null
dup0=$(rcnt $B $A dup)
lr start-daemons $B >/dev/null || fail "restart $B's replicator"
lr start-daemons $A >/dev/null || fail "restart $A's agent"
for ((i = 0; i < 100; i++)); do [ "$(rcnt $B $A dup)" -gt "$dup0" ] && break; sleep 0.1; done
[ "$(rcnt $B $A dup)" -gt "$dup0" ] || fail "$B did not see the re-delivered delete"
note "re-delivered: $B counts dup $(rcnt $B $A dup), lost $(rcnt $B $A lost)"

signal_daemon $B tern-region-agent CONT
for ((i = 0; i < 50; i++)); do [ "$(acnt $B echo)" -ge 2 ] && break; sleep 0.1; done
sleep 1
note "$B's agent: echo $(acnt $B echo), local $(acnt $B local)"
[ "$(acnt $B local)" -eq 0 ] || fail "$B shipped the re-delivered delete back as a local change (echo)"
[ "$(acnt $B echo)" -ge 2 ] || fail "$B's agent saw $(acnt $B echo) echoes, expected 2"
wait_identical 30 $A $B || fail "regions differ"
rc=0; "$DDBTOOL" get "$EA" "$TABLE" "$K" >/dev/null || rc=$?
[ $rc = 3 ] || fail "the item is back in $A"
assert_clean_logs
echo "PASS"
