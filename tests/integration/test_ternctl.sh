#!/usr/bin/env bash
# ternctl against a live pair: verify catches a difference injected into one table,
# wait-caught-up times out while a link is paused and succeeds after resume, status
# shows the pause and the pending changes, pause survives an agent restart.
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
"$DDBTOOL" get "$W" "$TABLE" '{"PK":{"S":"P#1"},"SK":{"S":"ITEM"}}' >/dev/null 2>&1 && fail "a write crossed a paused link"
ctl resume --from us-east-1 --to eu-west-1 || fail resume
ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 60 || fail "wait-caught-up after resume"
ctl verify || fail "verify after resume"
ctl status >/dev/null || fail "status (table form)"
ctl lag >/dev/null || fail "lag"
assert_clean_logs
echo PASS
