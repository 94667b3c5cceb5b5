#!/usr/bin/env bash
# Echo tokens: regressions of delete tokens, the repair-undo token, and keys of the wrong
# type in Redis (token set, watermark, acknowledgements), on one pair of regions.
# 1. (apply/apply.c) A change that was applied but whose
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
# 2. (region-agent/tailer.c) Several Tern deletes of one key pending at once (the agent
# behind): each REMOVE record must be matched with its own "D<version>" token. The
# agent took the first D token in SMEMBERS order (arbitrary); a REMOVE matched with an
# older delete's token looked older than the item it removed, and the agent "repaired"
# it by putting the deleted item back in its region only: the regions diverged.
# 8. (region-agent/tailer.c) A delete's echo token left tentative by a replicator that
# stopped between its DeleteItem and the answer: the agent holds the shard at that REMOVE
# for its hold limit, then takes it for the echo and goes on (store.timeout_ms is 1 s
# here, for a hold limit of 12 s instead of 28).
# 9. (region-agent/tailer.c) A confirmed delete token left over by a delete whose outcome
# was unknown and that removed nothing (the store client retried inside the call, or a
# retry after a crash confirmed it) hid the key's next local delete for the tombstone TTL
# (48 h): the agent took the application's REMOVE for its echo, did not ship it, and
# "repaired" the put back. A token now carries the deadline of its DeleteItem, and the
# agent spends it as stale at a record created well after (AGENT_TOKEN_CLOCK_MARGIN_MS).
# 10. ... but not at a record created within the margin: a delete token whose deadline
# passed 59 s ago still matches its REMOVE (DynamoDB Local rounds the record's creation
# down to the minute, so a rule without the margin spends it, except in the minute's last
# second).
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2 '.store.timeout_ms = 1000'
cluster_up
A=us-east-1 B=eu-west-1
EA=$(region_endpoint $A) EB=$(region_endpoint $B)
K=$(key_json 1 REDO)
# wait_acked: until A's agent has saved B's acknowledgement of A's whole change log
wait_acked() {
  local i last
  for ((i = 0; i < 100; i++)); do
    last=$(region_redis $A XINFO STREAM "$(redis_key $A "log:$TABLE")" | awk 'f{print; exit} $0=="last-generated-id"{f=1}')
    [ "$(region_redis $A HGET "$(redis_key $A "ack:$TABLE")" $B)" = "$last" ] && return 0
    sleep 0.1
  done
  return 1
}

signal_daemon $B tern-region-agent STOP
trap 'kill -CONT "$(cat "$(region_run $B)/tern-region-agent.pid" 2>/dev/null)" 2>/dev/null; cluster_down' EXIT
note "put and delete in $A, applied in $B while B's agent is frozen"
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#1"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$K" v x 10000 >/dev/null || fail "put did not reach $B"
"$DDBTOOL" delete "$EA" "$TABLE" "$K" || fail delete
"$DDBTOOL" wait "$EB" "$TABLE" "$K" - - 10000 >/dev/null || fail "delete did not reach $B"
for ((i = 0; i < 50; i++)); do [ "$(rcnt $B $A applied)" -ge 2 ] && break; sleep 0.1; done
[ "$(rcnt $B $A applied)" -ge 2 ] || fail "$B did not count the two changes applied"
wait_acked || fail "$A's agent did not save $B's acknowledgement"

note "crash: the watermark save never happened; A's agent resends"
kill_daemon $B tern-replicator KILL
kill_daemon $A tern-region-agent KILL
region_redis $B HSET "$(redis_key $B "wm:$A:$TABLE")" pos 0-1 >/dev/null
region_redis $A HSET "$(redis_key $A "ack:$TABLE")" $B 0-1 >/dev/null
WM=$(redis_key $B "wm:$A:$TABLE")
lr start-daemons $B >/dev/null || fail "restart $B's replicator"
lr start-daemons $A >/dev/null || fail "restart $A's agent"
for ((i = 0; i < 100; i++)); do [ "$(region_redis $B HGET "$WM" pos)" != 0-1 ] && break; sleep 0.1; done
[ "$(region_redis $B HGET "$WM" pos)" != 0-1 ] || fail "$B did not see the re-delivered delete"
note "re-delivered: $B counts applied $(rcnt $B $A applied), dup $(rcnt $B $A dup), lost $(rcnt $B $A lost)"

signal_daemon $B tern-region-agent CONT
for ((i = 0; i < 50; i++)); do [ "$(acnt $B echo)" -ge 2 ] && break; sleep 0.1; done
sleep 1
note "$B's agent: echo $(acnt $B echo), local $(acnt $B local)"
[ "$(acnt $B local)" -eq 0 ] || fail "$B shipped the re-delivered delete back as a local change (echo)"
[ "$(acnt $B echo)" -ge 2 ] || fail "$B's agent saw $(acnt $B echo) echoes, expected 2"
wait_identical 30 $A $B || fail "regions differ"
rc=0; "$DDBTOOL" get "$EA" "$TABLE" "$K" >/dev/null || rc=$?
[ $rc = 3 ] || fail "the item is back in $A"

note "6 put/delete cycles of one key in $A, applied in $B while B's agent is frozen"
K2=$(key_json 2 REDO)
signal_daemon $B tern-region-agent STOP
applied0=$(rcnt $B $A applied) echo0=$(acnt $B echo)
for i in 1 2 3 4 5 6; do
  "$DDBTOOL" put "$EA" "$TABLE" "{\"PK\":{\"S\":\"REDO#2\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"c$i\"}}" || fail put
  "$DDBTOOL" delete "$EA" "$TABLE" "$K2" || fail delete
done
for ((i = 0; i < 150; i++)); do [ "$(rcnt $B $A applied)" -ge $((applied0 + 12)) ] && break; sleep 0.1; done
[ "$(rcnt $B $A applied)" -ge $((applied0 + 12)) ] || fail "$B applied $(($(rcnt $B $A applied) - applied0)) of 12 changes"
signal_daemon $B tern-region-agent CONT
for ((i = 0; i < 100; i++)); do [ "$(acnt $B echo)" -ge $((echo0 + 12)) ] && break; sleep 0.1; done
sleep 1
note "$B's agent: echo $(($(acnt $B echo) - echo0)), repaired $(acnt $B repaired), local $(acnt $B local)"
# (a REMOVE matched with an older delete's token shows up as a repair that puts the
# deleted item back; repairs that delete again with the latest tombstone are harmless)
if grep -q 'restored it (put' "$(region_run $B)/tern-region-agent.log"; then
  grep 'restored it (put' "$(region_run $B)/tern-region-agent.log" | head -3 >&2
  fail "$B's agent put a deleted item back: a REMOVE matched the wrong delete token"
fi
[ "$(acnt $B local)" -eq 0 ] || fail "$B shipped $(acnt $B local) echoes back as local changes"
rc=0; "$DDBTOOL" get "$EB" "$TABLE" "$K2" >/dev/null || rc=$?
[ $rc = 3 ] || fail "the deleted item is back in $B"
wait_identical 30 $A $B || fail "regions differ after the delete cycles"

# 3. (apply/apply.c) A delete raises the tombstone before its DeleteItem; when the
# DeleteItem fails (store error, crash) the change is retried, and the retry found the
# tombstone equal to its version and skipped the delete as a duplicate: the item stayed.
# Made deterministic: A holds the delete for B (pause), B's tombstone is set to the
# delete's version as the failed first attempt left it, then A ships.
note "a delete retried after its first attempt raised the tombstone but did not delete"
K3=$(key_json 3 REDO)
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#3"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$K3" v x 10000 >/dev/null || fail "put did not reach $B"
region_redis $A SET "$(redis_key $A "pause:$B")" 1 >/dev/null
sleep 1.2
local0=$(acnt $A local)
"$DDBTOOL" delete "$EA" "$TABLE" "$K3" || fail delete
for ((i = 0; i < 100; i++)); do [ "$(acnt $A local)" -gt "$local0" ] && break; sleep 0.1; done
VER=$(region_redis $A XREVRANGE "$(redis_key $A "log:$TABLE")" + - COUNT 1 | sed -n 3p | jq -r .ver)
[[ "$VER" == *-$A ]] || fail "cannot read the delete's version from $A's log ($VER)"
KID=$(printf '%s' '{"PK":{"S":"REDO#3"},"SK":{"S":"ITEM"}}' | sha256sum | cut -c1-64)
region_redis $B SET "$(redis_key $B "tomb:$TABLE:$KID")" "$VER" >/dev/null
region_redis $A DEL "$(redis_key $A "pause:$B")" >/dev/null
"$DDBTOOL" wait "$EB" "$TABLE" "$K3" - - 10000 >/dev/null || fail "the retried delete $VER was skipped in $B: the item stayed"
wait_identical 30 $A $B || fail "regions differ after the retried delete"

# 4. (apply/apply.c) A repair overtaken by a newer delete is deleted again under the
# token "D<tombstone version>/<repair version>"; its REMOVE record must be an echo, never
# shipped, and the token matches only the REMOVE of an item stored at exactly the repair
# version. The undoing delete is made by hand here: B's tokens, then the delete in B's
# table. The tombstone version is 5 s ahead: B's clock must have read it (the version
# part of the token), which an agent that took the whole token for a version did not.
# A newer plain delete token is pending too (a delete that removed the repair's state
# before its undo could): the REMOVE is that delete's, and spends the undo token of the
# same state with it; only the undo token of another repair version stays (the agent
# used to take the undo token for its smaller version and leave the plain one, which
# would then have hidden a later local delete of the key).
note "the delete that undoes a repair is an echo"
K4=$(key_json 4 REDO)
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#4"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$K4" v x 10000 >/dev/null || fail "put did not reach $B"
SV=$("$DDBTOOL" get "$EB" "$TABLE" "$K4" | jq -r '.["tern:ver"].S')
[[ "$SV" =~ ^[0-9]{13}-[0-9]{6}-$A$ ]] || fail "cannot read the version stored in $B ($SV)"
TVMS=$(($(date +%s%3N) + 5000))
TV=$(printf '%013d-000000-ap-south-1' "$TVMS")
TV2=$(printf '%013d-000000-ap-south-1' "$((TVMS + 1))")
OTHER="0000000000001-000000-$A"
KID=$(printf '%s' '{"PK":{"S":"REDO#4"},"SK":{"S":"ITEM"}}' | sha256sum | cut -c1-64)
PEND=$(redis_key $B "pend:$TABLE:$KID")
region_redis $B SADD "$PEND" "D$TV/$SV" "D$TV/$OTHER" "D$TV2" >/dev/null
local0=$(acnt $B local) echo0=$(acnt $B echo)
"$DDBTOOL" delete "$EB" "$TABLE" "$K4" || fail delete
for ((i = 0; i < 100; i++)); do [ "$(acnt $B echo)" -gt "$echo0" ] && break; sleep 0.1; done
sleep 1
note "$B's agent: echo $(($(acnt $B echo) - echo0)), local $(($(acnt $B local) - local0))"
[ "$(acnt $B echo)" -eq $((echo0 + 1)) ] || fail "$B's agent did not take the undoing delete for an echo"
[ "$(acnt $B local)" -eq "$local0" ] || fail "$B shipped the undoing delete as a local change"
[ "$(region_redis $B SMEMBERS "$PEND")" = "D$TV/$OTHER" ] ||
  fail "pending tokens $(region_redis $B SMEMBERS "$PEND" | tr '\n' ' '): expected only the one for another repair version"
HLC=$(region_redis $B GET "$(redis_key $B hlc)")
[ "${HLC:0:13}" -ge "$TVMS" ] 2>/dev/null || fail "$B's clock ($HLC) did not read the delete token's version ($TV2)"
"$DDBTOOL" get "$EA" "$TABLE" "$K4" >/dev/null || fail "the undoing delete reached $A"
"$DDBTOOL" delete "$EA" "$TABLE" "$K4" || fail delete
wait_identical 30 $A $B || fail "regions differ after the undo"

# 5. (apply/apply.c, region-agent/tailer.c) A key's echo-token set of the wrong type in
# Redis (an operator's mistake, a bad restore): error replies were taken for "nothing
# there", so the replicator wrote without a token and the agent read an echo as a local
# change, shipping it back. Now both stop on the key, say why, and go on once it is fixed.
note "a pend key of the wrong type stops that key, loudly, and loses nothing"
K5=$(key_json 5 REDO)
KID5=$(printf '%s' '{"PK":{"S":"REDO#5"},"SK":{"S":"ITEM"}}' | sha256sum | cut -c1-64)
PEND5=$(redis_key $B "pend:$TABLE:$KID5")
region_redis $B SET "$PEND5" not-a-set >/dev/null
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#5"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
# the first attempt and its retry (after A's agent's ack timeout, 1 s here) each fail
# before writing, and say why; one that took the error for "no token" writes, silently
ok=0
wait_log "$(region_run $B)/tern-replicator.log" "applying change .* failed, will retry: .*WRONGTYPE" 15 2 || ok=$?
rc=0; "$DDBTOOL" get "$EB" "$TABLE" "$K5" >/dev/null || rc=$?
[ $rc = 3 ] || fail "$B's replicator wrote the change although it could not add its echo token"
[ $ok = 0 ] || fail "$B's replicator did not say twice why it does not write (first attempt and retry)"
region_redis $B DEL "$PEND5" >/dev/null
"$DDBTOOL" wait "$EB" "$TABLE" "$K5" v x 30000 >/dev/null || fail "the change did not reach $B once the key was fixed"
note "the agent's side: $B's agent frozen, the token set swapped for a string while it reads"
signal_daemon $B tern-region-agent STOP
local0=$(acnt $B local) echo0=$(acnt $B echo)
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#5"},"SK":{"S":"ITEM"},"v":{"S":"y"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$K5" v y 15000 >/dev/null || fail "the second put did not reach $B"
region_redis $B RENAME "$PEND5" "$PEND5.saved" >/dev/null || fail "no token pending for the second put"
region_redis $B SET "$PEND5" not-a-set >/dev/null
signal_daemon $B tern-region-agent CONT
ok=0; wait_log "$(region_run $B)/tern-region-agent.log" "reading key state: redis [^ ]+: WRONGTYPE" || ok=$?
[ "$(acnt $B local)" -eq "$local0" ] || fail "$B's agent shipped an echo it could not classify"
[ $ok = 0 ] || fail "$B's agent did not say why it stopped"
region_redis $B DEL "$PEND5" >/dev/null
region_redis $B RENAME "$PEND5.saved" "$PEND5" >/dev/null
for ((i = 0; i < 100; i++)); do [ "$(acnt $B echo)" -gt "$echo0" ] && break; sleep 0.1; done
sleep 1
[ "$(acnt $B echo)" -gt "$echo0" ] || fail "$B's agent did not go on once the key was fixed"
[ "$(acnt $B local)" -eq "$local0" ] || fail "$B shipped the echo back as a local change"
wait_identical 30 $A $B || fail "regions differ after the token set was fixed"

# 6. (replicator/receiver.c) The same for the watermark: a save answered with an error
# reply was taken for done and acknowledged, so the peer could trim changes this region
# had not recorded. Now the acknowledgement waits until the save succeeds, and the
# counters each failed save did add are not added again by its retry; a counter key of
# the wrong type does not stop acknowledgements.
note "a watermark save answered with an error is not acknowledged"
WM=$(redis_key $B "wm:$A:$TABLE") ACK=$(redis_key $A "ack:$TABLE")
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#6"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$(key_json 6 REDO)" v x 10000 >/dev/null || fail "put did not reach $B"
wait_acked || fail "$A's agent did not save $B's acknowledgement of REDO#6"
ack0=$(region_redis $A HGET "$ACK" $B) applied0=$(rcnt $B $A applied)
region_redis $B RENAME "$WM" "$WM.saved" >/dev/null || fail "no watermark in $B"
region_redis $B SET "$WM" not-a-hash >/dev/null
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#7"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$(key_json 7 REDO)" v x 10000 >/dev/null || fail "put did not reach $B"
ok=0
wait_log "$(region_run $B)/tern-replicator.log" "saving the watermark \(the acknowledgement waits\): redis [^ ]+: WRONGTYPE" || ok=$?
sleep 1 # an acknowledgement sent all the same would be in A's Redis by now (saved every 500 ms)
[ "$(region_redis $A HGET "$ACK" $B)" = "$ack0" ] || fail "$B acknowledged a change whose watermark it could not save"
[ $ok = 0 ] || fail "$B's replicator did not say why it does not acknowledge"
region_redis $B DEL "$WM" >/dev/null
region_redis $B RENAME "$WM.saved" "$WM" >/dev/null
for ((i = 0; i < 150; i++)); do [ "$(region_redis $A HGET "$ACK" $B)" != "$ack0" ] && break; sleep 0.1; done
[ "$(region_redis $A HGET "$ACK" $B)" != "$ack0" ] || fail "$B did not acknowledge once its watermark could be saved"
# regression: each failed save's counters had been added all the same, and again by its retry
[ "$(rcnt $B $A applied)" -eq $((applied0 + 1)) ] ||
  fail "$B counts $(($(rcnt $B $A applied) - applied0)) changes applied for 1 (counters added by every failed save)"
# a counter key of the wrong type: the watermark is saved and acknowledged all the same
# (only the counters wait, loudly); it stopped the link's acknowledgements for good
CNT=$(redis_key $B "cnt:$A:$TABLE")
ack0=$(region_redis $A HGET "$ACK" $B) applied0=$(rcnt $B $A applied)
region_redis $B RENAME "$CNT" "$CNT.saved" >/dev/null || fail "no counters in $B"
region_redis $B SET "$CNT" not-a-hash >/dev/null
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#17"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$(key_json 17 REDO)" v x 10000 >/dev/null || fail "put did not reach $B"
for ((i = 0; i < 50; i++)); do [ "$(region_redis $A HGET "$ACK" $B)" != "$ack0" ] && break; sleep 0.1; done
[ "$(region_redis $A HGET "$ACK" $B)" != "$ack0" ] || fail "$B stopped acknowledging over a counter key of the wrong type"
grep -qE "saving counters or lag samples \(kept for the next save\): redis [^ ]+: WRONGTYPE" "$(region_run $B)/tern-replicator.log" ||
  fail "$B's replicator did not say its counters wait"
region_redis $B RENAME "$CNT.saved" "$CNT" >/dev/null # atomic: no save can land in between
for ((i = 0; i < 30; i++)); do [ "$(rcnt $B $A applied)" -gt "$applied0" ] && break; sleep 0.1; done
[ "$(rcnt $B $A applied)" -eq $((applied0 + 1)) ] || fail "the change applied meanwhile was not counted once, once the key was fixed ($(rcnt $B $A applied), was $applied0)"

# 7. (region-agent/shipper.c) The agent's side: a save of peers' acknowledgements and
# counters answered with an error reply was taken for done. The acknowledgement in Redis
# then stayed behind until the next one came (after a restart the agent resent more than
# needed), and once that was fixed by treating the error as a failure of the whole save,
# counters that had been added were added again every 500 ms and the warning repeated
# as often. Now each reply counts on its own, and the warning is rate-limited.
note "an acknowledgement save answered with an error is saved again, counters once"
wait_acked || fail "$A's agent did not save $B's acknowledgements before case 7"
s0=$(acnt $A "shipped:$B")
region_redis $A RENAME "$ACK" "$ACK.saved" >/dev/null || fail "no acknowledgements in $A"
region_redis $A SET "$ACK" not-a-hash >/dev/null
for i in 8 9 10; do
  "$DDBTOOL" put "$EA" "$TABLE" "{\"PK\":{\"S\":\"REDO#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"x\"}}" || fail put
  "$DDBTOOL" wait "$EB" "$TABLE" "$(key_json $i REDO)" v x 10000 >/dev/null || fail "put did not reach $B"
done
sleep 2.5
n=$(grep -cE "saving acknowledgements and counters: redis [^ ]+: WRONGTYPE" "$(region_run $A)/tern-region-agent.log" || true)
[ "$n" -ge 1 ] || fail "$A's agent did not say why it could not save its acknowledgements"
[ "$n" -le 2 ] || fail "$A's agent repeated the warning $n times in 2.5 s (not rate-limited)"
region_redis $A RENAME "$ACK.saved" "$ACK" >/dev/null # the older acknowledgement is back
last=$(region_redis $A XINFO STREAM "$(redis_key $A "log:$TABLE")" | awk 'f{print; exit} $0=="last-generated-id"{f=1}')
for ((i = 0; i < 50; i++)); do [ "$(region_redis $A HGET "$ACK" $B)" = "$last" ] && break; sleep 0.1; done
[ "$(region_redis $A HGET "$ACK" $B)" = "$last" ] ||
  fail "$A's agent did not save again the acknowledgement whose save failed ($(region_redis $A HGET "$ACK" $B), not $last)"
d=$(($(acnt $A "shipped:$B") - s0))
[ "$d" -ge 3 ] && [ "$d" -le 6 ] || fail "$A counts $d changes shipped to $B for 3 (at most 6 with a resend): counters added again"
wait_identical 30 $A $B || fail "regions differ after the acknowledgement save"

# 8. The delete of a replicator that stopped before its answer: its tentative token is
# added by hand, then the DeleteItem lands in B's table (as that replicator's did).
note "a delete token left tentative: the shard is held for the hold limit, then goes on"
K8=$(key_json 12 REDO)
KID8=$(printf '%s' "$K8" | sha256sum | cut -c1-64)
PEND8=$(redis_key $B "pend:$TABLE:$KID8")
HOLD_MS=$((4 * 1000 + 3 * 1000 + 5000)) # 4 x store.timeout_ms + 3 backoffs at 1 s + 5 s
echo0=$(acnt $B echo)
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#12"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$K8" v x 10000 >/dev/null || fail "put did not reach $B"
for ((i = 0; i < 100; i++)); do [ "$(acnt $B echo)" -gt "$echo0" ] && break; sleep 0.1; done
[ "$(acnt $B echo)" -gt "$echo0" ] || fail "$B's agent did not read the put's echo"
now=$(date +%s%3N) # its deadline: now + 5 s + the longest store call (7 s here)
region_redis $B SADD "$PEND8" "T$(printf '%013d' "$now")-000000-$A@$((now + 12000))" >/dev/null
local0=$(acnt $B local) echo0=$(acnt $B echo) held0=$(acnt $B held)
t0=$(date +%s%3N)
"$DDBTOOL" delete "$EB" "$TABLE" "$K8" || fail delete
"$DDBTOOL" put "$EB" "$TABLE" '{"PK":{"S":"REDO#13"},"SK":{"S":"ITEM"},"v":{"S":"after"}}' || fail put
sleep 3
[ "$(acnt $B echo)" -eq "$echo0" ] || fail "$B's agent classified a REMOVE whose token is tentative"
[ "$(acnt $B local)" -eq "$local0" ] || fail "$B's agent shipped a write made after the held REMOVE"
for ((i = 0; i < 200; i++)); do [ "$(acnt $B echo)" -gt "$echo0" ] && break; sleep 0.1; done
held=$(($(date +%s%3N) - t0))
note "$B's agent took the REMOVE for an echo after $held ms (limit $HOLD_MS)"
[ "$(acnt $B echo)" -eq $((echo0 + 1)) ] || fail "$B's agent did not take the REMOVE for the echo after the hold limit"
[ "$held" -ge "$HOLD_MS" ] || fail "$B's agent held the shard $held ms, under its limit of $HOLD_MS"
[ "$(acnt $B held)" -eq $((held0 + 1)) ] || fail "$B's agent counts $(($(acnt $B held) - held0)) holds, expected 1"
grep -q "delete token T.* still tentative after" "$(region_run $B)/tern-region-agent.log" ||
  fail "$B's agent did not warn about the tentative token"
"$DDBTOOL" wait "$EA" "$TABLE" "$(key_json 13 REDO)" v after 10000 >/dev/null || fail "the write after the held REMOVE did not reach $A"
[ "$(acnt $B local)" -eq $((local0 + 1)) ] || fail "$B's agent shipped $(($(acnt $B local) - local0)) local changes, expected 1"
[ "$(region_redis $B SCARD "$PEND8")" = 0 ] || fail "the tentative token is still pending"
"$DDBTOOL" delete "$EA" "$TABLE" "$K8" || fail delete # what the stopped replicator's peer had done
wait_identical 30 $A $B || fail "case 8: regions differ"

# 9. The leftover token of a delete whose deadline passed 200 s ago, as a retry confirms
# it; the application then puts and deletes the key in B.
note "a delete token left over from an unknown outcome does not hide the key's next local delete"
K9=$(key_json 14 REDO)
KID9=$(printf '%s' "$K9" | sha256sum | cut -c1-64)
PEND9=$(redis_key $B "pend:$TABLE:$KID9")
then=$(($(date +%s%3N) - 200000))
region_redis $B SADD "$PEND9" "D$(printf '%013d' "$then")-000000-$A@$then" >/dev/null
local0=$(acnt $B local) echo0=$(acnt $B echo) stale0=$(acnt $B stale)
"$DDBTOOL" put "$EB" "$TABLE" '{"PK":{"S":"REDO#14"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EA" "$TABLE" "$K9" v x 10000 >/dev/null || fail "the put did not reach $A"
"$DDBTOOL" delete "$EB" "$TABLE" "$K9" || fail delete
"$DDBTOOL" wait "$EA" "$TABLE" "$K9" - - 10000 >/dev/null ||
  fail "the application's delete in $B did not reach $A: taken for the echo of the leftover token"
for ((i = 0; i < 50; i++)); do [ "$(acnt $B local)" -ge $((local0 + 2)) ] && break; sleep 0.1; done
sleep 1 # a repair would have been written by now
note "$B's agent: local $(($(acnt $B local) - local0)), echo $(($(acnt $B echo) - echo0)), stale $(($(acnt $B stale) - stale0)), repaired $(acnt $B repaired)"
rc=0; "$DDBTOOL" get "$EB" "$TABLE" "$K9" >/dev/null || rc=$?
[ "$rc" -eq 3 ] || fail "the application's delete was undone in $B (get: exit $rc)"
[ "$(acnt $B local)" -eq $((local0 + 2)) ] || fail "$B's agent shipped $(($(acnt $B local) - local0)) local changes, expected 2"
[ "$(acnt $B echo)" -eq "$echo0" ] || fail "$B's agent took $(($(acnt $B echo) - echo0)) records for echoes, expected 0"
[ "$(acnt $B stale)" -eq $((stale0 + 1)) ] || fail "$B's agent spent $(($(acnt $B stale) - stale0)) stale tokens, expected 1"
[ "$(region_redis $B SCARD "$PEND9")" = 0 ] || fail "the stale token is still pending"
grep -q "delete token D.*@$then is stale" "$(region_run $B)/tern-region-agent.log" ||
  fail "$B's agent did not log the stale token"
wait_identical 30 $A $B || fail "case 9: regions differ"

# 10. The key comes from A (stored version below the token's); the REMOVE is made by
# hand, as the token's DeleteItem did.
note "a delete token whose deadline passed less than the margin ago still matches its REMOVE"
K10=$(key_json 15 REDO)
KID10=$(printf '%s' "$K10" | sha256sum | cut -c1-64)
PEND10=$(redis_key $B "pend:$TABLE:$KID10")
echo0=$(acnt $B echo)
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"REDO#15"},"SK":{"S":"ITEM"},"v":{"S":"x"}}' || fail put
"$DDBTOOL" wait "$EB" "$TABLE" "$K10" v x 10000 >/dev/null || fail "put did not reach $B"
for ((i = 0; i < 100; i++)); do [ "$(acnt $B echo)" -gt "$echo0" ] && break; sleep 0.1; done
[ "$(acnt $B echo)" -gt "$echo0" ] || fail "$B's agent did not read the put's echo"
now=$(date +%s%3N)
region_redis $B SADD "$PEND10" "D$(printf '%013d' "$now")-000000-$A@$((now - 59000))" >/dev/null
local0=$(acnt $B local) echo0=$(acnt $B echo) stale0=$(acnt $B stale)
"$DDBTOOL" delete "$EB" "$TABLE" "$K10" || fail delete
for ((i = 0; i < 100; i++)); do [ "$(acnt $B echo)" -gt "$echo0" ] || [ "$(acnt $B local)" -gt "$local0" ] && break; sleep 0.1; done
[ "$(acnt $B echo)" -eq $((echo0 + 1)) ] && [ "$(acnt $B local)" -eq "$local0" ] && [ "$(acnt $B stale)" -eq "$stale0" ] ||
  fail "$B's agent took a REMOVE created within the margin after its token's deadline for a local delete (echo $(($(acnt $B echo) - echo0)), local $(($(acnt $B local) - local0)), stale $(($(acnt $B stale) - stale0)))"
"$DDBTOOL" delete "$EA" "$TABLE" "$K10" || fail delete # what the token's replicator's peer had done
wait_identical 30 $A $B || fail "regions differ at the end"
assert_clean_logs
echo "PASS"
