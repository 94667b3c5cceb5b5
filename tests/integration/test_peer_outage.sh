#!/usr/bin/env bash
# Guarantee 2 across a peer outage: with 3 regions under load, ap-south-1's replicator
# (C) is down for 60 s. Meanwhile us-east-1 (A) and eu-west-1 (B) must keep
# replicating to each other (probe writes cross within a few seconds), and A's and B's
# agents must keep C's changes for it (their logs are trimmed only below C's ack).
# After C's replicator comes back, it catches up and all three regions converge. Then
# ternctl pause of A's second peer (C) holds A's changes for C only. C removed from A's
# peers and added back: the changes trimmed meanwhile are reported; backfill heals them.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 3
cluster_up
A=us-east-1 B=eu-west-1 C=ap-south-1
OUTAGE=${TERN_OUTAGE_SECONDS:-60}
PROBE_MS=8000

probe() { # probe FROM TO N: a write in FROM appears in TO within PROBE_MS
  local k; k=$(key_json "$3" "PROBE-$1")
  "$DDBTOOL" put "$(region_endpoint "$1")" "$TABLE" \
    "{\"PK\":{\"S\":\"PROBE-$1#$3\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"p$3\"}}" || fail "probe put in $1"
  "$DDBTOOL" wait "$(region_endpoint "$2")" "$TABLE" "$k" v "p$3" $PROBE_MS ||
    fail "probe $3 from $1 did not reach $2 within ${PROBE_MS} ms while $C was down"
}

note "stopping $C's replicator for ${OUTAGE}s; load in all three regions"
applied_before=$(rcnt $C $A applied)
kill_daemon $C tern-replicator
t0=$SECONDS
pids=()
bursts() { # bursts REGION: 3 s of writes, 2 s pause, until 15 s before the outage ends
  # (a steady load a 2-core box running 3 regions under ASan can replicate: the probes
  # measure that replication continues, not peak throughput)
  while [ $((SECONDS - t0)) -lt $((OUTAGE - 15)) ]; do
    "$DDBTOOL" load "$(region_endpoint "$1")" "$TABLE" --writers 1 --keys 30 --seconds 3 \
      --prefix K --seed $RANDOM --mix 50,20,15,15 || return 1
    sleep 2
  done
}
for r in $A $B $C; do
  bursts $r >"$CLUSTER_DIR/load-$r.out" &
  pids+=($!)
done
n=0
while [ $((SECONDS - t0)) -lt $((OUTAGE - 10)) ]; do
  n=$((n + 1))
  ms_ab=$(probe $A $B $n); ms_ba=$(probe $B $A $n)
  note "probe $n: $A->$B ${ms_ab} ms, $B->$A ${ms_ba} ms"
  sleep 5
done
[ $n -ge 3 ] || fail "only $n probes ran during the outage"
for p in "${pids[@]}"; do wait "$p" || fail "a load generator failed"; done
for r in $A $B $C; do note "$r load: $(awk -F'[= ]' '{n += $2} END {print n}' "$CLUSTER_DIR/load-$r.out") writes acknowledged"; done
daemon_alive $C tern-replicator && fail "$C's replicator is running during the outage"
[ "$(rcnt $C $A applied)" = "$applied_before" ] || fail "$C applied changes while its replicator was down"
# A's log still holds what C has not acknowledged
left=$(region_redis $A XLEN "$(redis_key $A "log:$TABLE")")
[ "$left" -gt 0 ] || fail "$A's change log was trimmed although $C acknowledged nothing"
while [ $((SECONDS - t0)) -lt "$OUTAGE" ]; do sleep 1; done

note "restarting $C's replicator after $((SECONDS - t0))s ($left changes of $A held for it)"
lr start-daemons $C >/dev/null || fail "restart $C"
wait_identical 150 $A $B $C || fail "the regions did not converge after the outage"
[ "$(rcnt $C $A applied)" -gt "$applied_before" ] || fail "$C applied nothing from $A after the outage"
note "converged: $(dump_region $A | wc -l) items; $C applied $(rcnt $C $A applied) from $A, $(rcnt $C $B applied) from $B"

# regression: the agent read the pause flag of its first peer only (a command was refused
# while the first peer's counters were queued), so pausing C, A's second peer, did nothing
note "ternctl pause of $A's second peer ($C): its changes wait, $B's keep flowing"
ctl pause --from $A --to $C || fail pause
sleep 1.5 # the agent reads pause flags every 500 ms
"$DDBTOOL" put "$(region_endpoint $A)" "$TABLE" '{"PK":{"S":"PAUSED#1"},"SK":{"S":"ITEM"},"v":{"S":"p"}}' || fail put
"$DDBTOOL" wait "$(region_endpoint $B)" "$TABLE" "$(key_json 1 PAUSED)" v p 8000 >/dev/null || fail "the write did not reach $B"
sleep 1
rc=0; "$DDBTOOL" get "$(region_endpoint $C)" "$TABLE" "$(key_json 1 PAUSED)" >/dev/null || rc=$?
[ "$rc" -eq 3 ] || fail "the write reached $C through a paused link (get: exit $rc)"
ctl resume --from $A --to $C || fail resume
"$DDBTOOL" wait "$(region_endpoint $C)" "$TABLE" "$(key_json 1 PAUSED)" v p 8000 >/dev/null || fail "the write did not reach $C after resume"
# regression (replicator/receiver.c): the replicator rate-limited its Redis warnings with
# one timestamp for all its sources, re-armed by every successful save: while one source's
# watermark could not be saved (here C's wm:A:T of the wrong type) and another's could, the
# warning was logged on every failed save (each batch, each resend) instead of every 5 s
note "one source's watermark refused by Redis, the other's saved: the warning is rate-limited per source"
WM=$(redis_key $C "wm:$A:$TABLE")
log=$(region_run $C)/tern-replicator.log
# counted from before the key is replaced: a late save of the last change fails as well
w0=$(grep -c "peer=$A .*saving the watermark (the acknowledgement waits)" "$log" || true)
t1=$SECONDS
[ "$(region_redis $C RENAME "$WM" "$WM.saved")" = OK ] || fail "no watermark of $A in $C"
[ "$(region_redis $C SET "$WM" not-a-hash)" = OK ] || fail "cannot replace $A's watermark in $C"
for i in $(seq 1 10); do
  for r in $A $B; do
    "$DDBTOOL" put "$(region_endpoint $r)" "$TABLE" "{\"PK\":{\"S\":\"WARN-$r#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"w\"}}" || fail put
  done
  sleep 0.2
done
"$DDBTOOL" wait "$(region_endpoint $C)" "$TABLE" "$(key_json 10 WARN-$B)" v w 8000 >/dev/null || fail "$B's writes stopped reaching $C"
w=$(($(grep -c "peer=$A .*saving the watermark (the acknowledgement waits)" "$log" || true) - w0))
# at most one line per REPL_WARN_EVERY_MS (5 s) of the episode, plus one for a boundary
max=$(((SECONDS - t1) / 5 + 2))
[ "$(region_redis $C RENAME "$WM.saved" "$WM")" = OK ] || fail "cannot put $A's watermark back in $C" # atomic: replaces the bad key
[ "$w" -ge 1 ] || fail "$C's replicator did not say why it does not acknowledge $A"
[ "$w" -le "$max" ] ||
  fail "$C's replicator logged its watermark warning for $A $w times in $((SECONDS - t1)) s (at most $max: not rate-limited per source)"
ctl wait-caught-up --from $A --to $C --timeout 60 >/dev/null || fail "$C did not record $A's changes once its watermark could be saved"
wait_identical 60 $A $B $C || fail "the regions did not converge once $A's watermark could be saved in $C"

# regression: a region removed from a peer's config and added back resumed from its old
# acknowledgement with what was left of the log, trimmed below the other peers' acks
# meanwhile, and nothing said that changes were skipped
note "$C removed from $A's peers, 5 writes in $A, $C added back: the trim is reported, backfill heals it"
cfgA=$(region_cfg $A) agentlog=$(region_run $A)/tern-region-agent.log
cp "$cfgA" "$cfgA.full"
jq --arg c $C '.peers |= map(select(.region != $c))' "$cfgA.full" >"$cfgA"
n0=$(grep -c 'reload: config .* applied' "$agentlog" || true)
signal_daemon $A tern-region-agent HUP
wait_log "$agentlog" 'reload: config .* applied: 1 table\(s\), 1 peer\(s\)' 20 $((n0 + 1)) || fail "$A's agent did not reload without $C"
for i in 1 2 3 4 5; do
  "$DDBTOOL" put "$(region_endpoint $A)" "$TABLE" "{\"PK\":{\"S\":\"REMOVED#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"r\"}}" || fail put
done
"$DDBTOOL" wait "$(region_endpoint $B)" "$TABLE" "$(key_json 5 REMOVED)" v r 8000 >/dev/null || fail "the writes did not reach $B"
for _ in $(seq 1 50); do # B's acknowledgement saved and the log trimmed (every 500 ms)
  [ "$(region_redis $A XLEN "$(redis_key $A "log:$TABLE")")" -le 1 ] && break
  sleep 0.1
done
[ "$(region_redis $A XLEN "$(redis_key $A "log:$TABLE")")" -le 1 ] || fail "$A's log was not trimmed below $B's acknowledgement"
trimmed0=$(acnt $A trimmed)
cp "$cfgA.full" "$cfgA"
signal_daemon $A tern-region-agent HUP
wait_log "$agentlog" 'reload: config .* applied: 1 table\(s\), 2 peer\(s\)' 20 || fail "$A's agent did not reload with $C"
wait_log "$agentlog" "peer=$C .*the change log was trimmed up to .* while this peer was not configured here" 5 ||
  fail "$A's agent did not say that $C's changes were trimmed"
[ "$(acnt $A trimmed)" = $((trimmed0 + 1)) ] || fail "acnt trimmed $(acnt $A trimmed), expected $((trimmed0 + 1))"
st=$(ctl status) || fail "ternctl status"
grep -q "trimmed past the acknowledgement of $C: backfill it" <<<"$st" || fail "ternctl status does not show the alarm: $st"
"$DDBTOOL" wait "$(region_endpoint $C)" "$TABLE" "$(key_json 5 REMOVED)" v r 8000 >/dev/null ||
  fail "the change left in the log did not reach $C"
rc=0; "$DDBTOOL" get "$(region_endpoint $C)" "$TABLE" "$(key_json 1 REMOVED)" >/dev/null || rc=$?
[ "$rc" -eq 3 ] || fail "a trimmed change reached $C (get: exit $rc): the test does not test the trim"
ctl backfill --from $A --to $C >/dev/null || fail "backfill"
wait_identical 60 $A $B $C || fail "the regions did not converge after the backfill"
# said once: another reload (every peer configured, the log trimmed again) records nothing
"$DDBTOOL" put "$(region_endpoint $A)" "$TABLE" '{"PK":{"S":"REMOVED#6"},"SK":{"S":"ITEM"},"v":{"S":"r"}}' || fail put
"$DDBTOOL" wait "$(region_endpoint $C)" "$TABLE" "$(key_json 6 REMOVED)" v r 8000 >/dev/null || fail "REMOVED#6 did not reach $C"
sleep 1.5 # acknowledged by both, and the log trimmed
signal_daemon $A tern-region-agent HUP
wait_log "$agentlog" 'reload: config .* applied: 1 table\(s\), 2 peer\(s\)' 20 2 || fail "$A's agent did not reload again"
[ "$(acnt $A trimmed)" = $((trimmed0 + 1)) ] || fail "the reload recorded the trim again (acnt trimmed $(acnt $A trimmed))"
[ "$(grep -c 'while this peer was not configured here' "$agentlog")" = 1 ] || fail "the trim was reported more than once"
assert_clean_logs
echo "PASS"
