#!/usr/bin/env bash
# ternctl against a live pair: verify catches a difference injected into one table,
# wait-caught-up times out while a link is paused and succeeds after resume, status
# shows the pause and the pending changes (and warns once the oldest has waited over half
# of the destination's tombstone TTL, not before), pause survives an agent restart; backfill
# brings a region that starts over empty (a new region) the items it never got, keeps
# its newer versions, is not shipped on as new changes, and can run again.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
E=$(region_endpoint us-east-1) W=$(region_endpoint eu-west-1)

for i in 1 2 3 4 5; do "$DDBTOOL" put "$E" "$TABLE" "{\"PK\":{\"S\":\"C#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"N\":\"$i\"}}"; done
ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 60 || fail "wait-caught-up after 5 writes"
ctl verify || fail "verify after replication"

note "a difference injected directly into one table (its agent stopped, so it is not shipped)"
kill_daemon eu-west-1 tern-region-agent
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"INJECTED"},"SK":{"S":"ITEM"},"x":{"S":"only here"}}'
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"C#3"},"SK":{"S":"ITEM"},"v":{"N":"333"}}'
rc=0; out=$(ctl verify 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "verify exited $rc on a difference, want 1: $out"
grep -q 'INJECTED' <<<"$out" || fail "verify did not name the injected key: $out"
grep -q 'C#3' <<<"$out" || fail "verify did not name the changed key: $out"
lr start-daemons eu-west-1 >/dev/null
ctl wait-caught-up --from eu-west-1 --to us-east-1 --timeout 60 || fail "catch-up after the agent restart"
ctl verify || fail "the injected changes did not replicate once the agent was back"

note "pause: wait-caught-up times out, status shows it, it survives an agent restart, resume heals"
ctl pause --from us-east-1 --to eu-west-1 || fail pause
sleep 1
t_paused=$(date +%s%3N)
for i in 1 2 3; do "$DDBTOOL" put "$E" "$TABLE" "{\"PK\":{\"S\":\"P#$i\"},\"SK\":{\"S\":\"ITEM\"}}"; done
kill_daemon us-east-1 tern-region-agent
lr start-daemons us-east-1 >/dev/null
sleep 2
rc=0; out=$(ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 3 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "wait-caught-up exited $rc while paused, want 1: $out"
grep -qi 'paus' <<<"$out" || fail "wait-caught-up did not say the link is paused: $out"
st=$(ctl status --json) || fail "status --json"
jq -e '.links[] | select(.source == "us-east-1" and .destination == "eu-west-1") | .paused == true and .pending >= 3' <<<"$st" >/dev/null \
  || fail "status does not show the paused link with 3 pending: $(jq -c .links <<<"$st")"
oldest=$(jq '.links[] | select(.source == "us-east-1" and .destination == "eu-west-1") | .oldest_pending_ms' <<<"$st")
[[ "$oldest" =~ ^[0-9]+$ ]] && [ "$oldest" -ge "$t_paused" ] && [ "$oldest" -le "$(date +%s%3N)" ] ||
  fail "status gives the oldest pending change of the paused link at '$oldest' (the writes began at $t_paused)"
"$DDBTOOL" get "$W" "$TABLE" '{"PK":{"S":"P#1"},"SK":{"S":"ITEM"}}' >/dev/null 2>&1 && fail "a write crossed a paused link"

note "status warns once a pending change has waited over half of the destination's tombstone TTL"
# us-east-1's agent is stopped, so nothing else touches its log; the log is set aside, one
# whose one entry was logged H hours ago stands in, with eu-west-1's acknowledgement just
# below it (the path a live link takes: the entries after the ack), and both are put back
kill_daemon us-east-1 tern-region-agent
lk=$(redis_key us-east-1 "log:$TABLE") ak=$(redis_key us-east-1 "ack:$TABLE")
ttl=$(jq '.replicator.tombstone_ttl_s // 172800' "$(region_cfg eu-west-1)")
ack=$(region_redis us-east-1 HGET "$ak" eu-west-1)
[[ "$ack" =~ ^[0-9]+-[0-9]+$ ]] || fail "no acknowledgement of eu-west-1 in $ak to set aside: '$ack'"
region_redis us-east-1 RENAME "$lk" "$lk.saved" >/dev/null || fail "set aside us-east-1's log"
for hours_before_half in 1 -1; do # 1 h before half the TTL: no warning; 1 h past it: one
  logged=$(($(date +%s%3N) - (ttl / 2 - hours_before_half * 3600) * 1000))
  region_redis us-east-1 DEL "$lk" >/dev/null
  region_redis us-east-1 XADD "$lk" "$logged-1" c '{}' >/dev/null || fail "XADD a change logged at $logged"
  region_redis us-east-1 HSET "$ak" eu-west-1 "$logged-0" >/dev/null || fail "HSET the acknowledgement"
  st=$(ctl status --json) || fail "status --json with a change logged at $logged"
  jq -e --argjson t "$logged" '.links[] | select(.source == "us-east-1" and .destination == "eu-west-1") |
    .oldest_pending_ms == $t and .pending == 1' <<<"$st" >/dev/null ||
    fail "status --json: not 1 pending since $logged: $(jq -c .links <<<"$st")"
  out=$(ctl status) || fail "status with a change logged at $logged"
  warned=0
  grep -q "WARNING us-east-1 -> eu-west-1 (table $TABLE): a change has waited for .* over half of eu-west-1's tombstone TTL ($ttl s)" <<<"$out" && warned=1
  [ "$warned" -eq $((hours_before_half < 0)) ] ||
    fail "status warned $warned time(s) of a change waiting for $((ttl / 7200 - hours_before_half)) h against a TTL of $ttl s: $out"
done
region_redis us-east-1 DEL "$lk" >/dev/null
region_redis us-east-1 RENAME "$lk.saved" "$lk" >/dev/null && region_redis us-east-1 HSET "$ak" eu-west-1 "$ack" >/dev/null ||
  fail "put us-east-1's log and acknowledgement back"
lr start-daemons us-east-1 >/dev/null || fail "restart us-east-1's agent"
ctl resume --from us-east-1 --to eu-west-1 || fail resume
ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 60 || fail "wait-caught-up after resume"
ctl verify || fail "verify after resume"
ctl status >/dev/null || fail "status (table form)"
ctl lag >/dev/null || fail "lag"

note "backfill: eu-west-1 starts over with an empty table and Redis (a new region)"
lr down eu-west-1 >/dev/null
rm -rf "$(region_run eu-west-1)/redis-${CL_REDIS[eu-west-1]}"
lr up eu-west-1 --no-daemons >/dev/null || fail "eu-west-1 up again"
lr start-daemons eu-west-1 >/dev/null || fail "eu-west-1's daemons"
# C#1's last local version has expired in us-east-1 (its TTL): an item Tern never versioned
KID1=$(printf '%s' '{"PK":{"S":"C#1"},"SK":{"S":"ITEM"}}' | sha256sum | cut -c1-64)
region_redis us-east-1 DEL "$(redis_key us-east-1 "ll:$TABLE:$KID1")" >/dev/null
# C#2 changed in the new region: replicated to us-east-1, the same version in both
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"C#2"},"SK":{"S":"ITEM"},"v":{"N":"222"}}'
ctl wait-caught-up --from eu-west-1 --to us-east-1 --timeout 60 || fail "C#2 from the new region"
# C#4 changed in the new region and held there: newer than what us-east-1 holds
ctl pause --from eu-west-1 --to us-east-1 || fail pause
sleep 1
local0=$(acnt eu-west-1 local)
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"C#4"},"SK":{"S":"ITEM"},"v":{"N":"444"}}'
# P#1 deleted in the new region (which never had it): its tombstone is newer than the copy
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"P#1"},"SK":{"S":"ITEM"},"v":{"S":"new"}}'
"$DDBTOOL" delete "$W" "$TABLE" '{"PK":{"S":"P#1"},"SK":{"S":"ITEM"}}'
for ((i = 0; i < 100; i++)); do [ "$(acnt eu-west-1 local)" -ge $((local0 + 3)) ] && break; sleep 0.1; done
rc=0; out=$(ctl verify 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "verify exited $rc with items missing in the new region, want 1: $out"
local0=$(acnt eu-west-1 local) echo0=$(acnt eu-west-1 echo)
out=$(ctl --json backfill --from us-east-1 --to eu-west-1) || fail "backfill: $out"
note "backfill: $(jq -c '.tables[0]' <<<"$out")"
jq -e '.complete and (.tables | length == 1) and .tables[0].scanned == 9 and .tables[0].written == 6 and
       .tables[0].same == 1 and .tables[0].kept_newer == 2 and .tables[0].failed == 0' <<<"$out" >/dev/null ||
  fail "backfill counts: $out (want 9 scanned: 6 written, C#2 same, C#4 and the deleted P#1 kept newer)"
[ "$("$DDBTOOL" get "$W" "$TABLE" '{"PK":{"S":"C#1"},"SK":{"S":"ITEM"}}' | jq -r '.["tern:ver"].S')" = \
  "0000000000000-000000-us-east-1" ] || fail "the unversioned item C#1 was not copied at the oldest version"
[ "$("$DDBTOOL" get "$W" "$TABLE" '{"PK":{"S":"C#4"},"SK":{"S":"ITEM"}}' | jq -r .v.N)" = 444 ] ||
  fail "backfill overwrote the new region's newer C#4"
rc=0; "$DDBTOOL" get "$W" "$TABLE" '{"PK":{"S":"P#1"},"SK":{"S":"ITEM"}}' >/dev/null || rc=$?
[ "$rc" = 3 ] || fail "backfill brought back P#1, which the new region deleted later"
for ((i = 0; i < 100; i++)); do [ "$(acnt eu-west-1 echo)" -ge $((echo0 + 6)) ] && break; sleep 0.1; done
sleep 1
[ "$(acnt eu-west-1 echo)" -eq $((echo0 + 6)) ] || fail "eu-west-1's agent saw $(($(acnt eu-west-1 echo) - echo0)) echoes of 6 copied items"
[ "$(acnt eu-west-1 local)" -eq "$local0" ] || fail "eu-west-1's agent shipped copied items on as new changes"
out=$(ctl --json backfill --from us-east-1 --to eu-west-1) || fail "backfill again: $out"
jq -e '.tables[0].written == 0 and .tables[0].same == 7 and .tables[0].kept_newer == 2' <<<"$out" >/dev/null ||
  fail "backfill again: $out"
ctl resume --from eu-west-1 --to us-east-1 || fail resume
ctl wait-caught-up --from eu-west-1 --to us-east-1 --timeout 60 || fail "C#4 after resume"
ctl verify || fail "the regions differ after the backfill"
rc=0; ctl backfill --from us-east-1 --to us-east-1 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "backfill to the same region exited $rc, want 2"
assert_clean_logs
echo PASS
