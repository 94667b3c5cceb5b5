#!/usr/bin/env bash
# The race of docs/architecture.md ("Logical version ... and repair"), made
# deterministic: an application writes key K in us-east-1 (A) that A's agent has not
# read yet, and A's replicator then applies an OLDER remote change to K over it (the
# condition on tern:ver cannot see the unversioned local write).
#   1. A's agent is stopped (SIGSTOP) and eu-west-1 (B) pauses shipping to A;
#   2. K is written in B; B's agent versions it (Vb) and holds it for A;
#   3. K is written in A (L); A's agent has not read it;
#   4. B resumes shipping: A's replicator applies E (Vb) over L;
#   5. A's agent continues: it versions L as Va > Vb (its clock reads later), ships it,
#      and at E sees that E clobbered a state of logical version Va: it repairs A.
# Both regions must end with L, and A's agent must count a repair. The same with a
# local delete clobbered by an older remote put: the key must end deleted everywhere;
# and with three older remote puts in a row over L: exactly one repair.
# Then regressions (each says what it was).
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
A=us-east-1 B=eu-west-1
EA=$(region_endpoint $A) EB=$(region_endpoint $B)
PAUSE_B_TO_A=$(redis_key $B "pause:$A")

val_of() { # val_of ENDPOINT KEY: the item's "v" attribute, or "-" when absent
  local out rc=0
  out=$("$DDBTOOL" get "$1" "$TABLE" "$2") || rc=$?
  if [ $rc = 3 ]; then echo -; elif [ $rc != 0 ]; then echo "?"; else jq -r '.v.S' <<<"$out"; fi
}
# both_hold KEY VALUE WHAT: the regions converge and both hold VALUE ("-": deleted)
both_hold() {
  wait_identical 30 $A $B || fail "regions differ after the $3"
  [ "$(val_of "$EA" "$1")" = "$2" ] || fail "us-east-1 holds $(val_of "$EA" "$1") after the $3, expected $2"
  [ "$(val_of "$EB" "$1")" = "$2" ] || fail "eu-west-1 holds $(val_of "$EB" "$1") after the $3, expected $2"
}
wait_counter() { # wait_counter REGION FIELD MIN SECONDS
  local i
  for ((i = 0; i < $4 * 10; i++)); do [ "$(acnt "$1" "$2")" -ge "$3" ] && return 0; sleep 0.1; done
  return 1
}

# stop_a_and_pause: A's agent frozen, B holds its changes for A (B's shipper reads the
# pause flags every 500 ms and logs each change of one)
PAUSES=0
stop_a_and_pause() {
  sleep 1 # A's agent has read everything before it is frozen
  signal_daemon $A tern-region-agent STOP
  region_redis $B SET "$PAUSE_B_TO_A" 1 >/dev/null
  PAUSES=$((PAUSES + 1))
  wait_log "$(region_run $B)/tern-region-agent.log" "shipping paused" 10 $PAUSES ||
    fail "$B's shipper did not pause its link to $A"
}
# remote_write_in_b KEY ITEM|delete: written in B and versioned by B's agent (Vb)
remote_write_in_b() {
  local before; before=$(acnt $B local)
  "$DDBTOOL" put "$EB" "$TABLE" "$2" || fail "put in $B"
  wait_counter $B local $((before + 1)) 10 || fail "$B's agent did not version the write"
  sleep 0.05 # A's next clock reading is strictly later
}
# deliver_and_resume KEY WANT: B ships; A's replicator applies E over L (A shows WANT);
# then A's agent continues
deliver_and_resume() {
  local applied; applied=$(rcnt $A $B applied)
  region_redis $B DEL "$PAUSE_B_TO_A" >/dev/null
  "$DDBTOOL" wait "$EA" "$TABLE" "$1" v "$2" 15000 >/dev/null ||
    fail "A's replicator did not apply the older remote change over the unread local write (A: $(val_of "$EA" "$1"))"
  for ((i = 0; i < 50; i++)); do [ "$(rcnt $A $B applied)" -gt "$applied" ] && break; sleep 0.1; done
  signal_daemon $A tern-region-agent CONT
}

note "put variant: an unread local put clobbered by an older remote put"
K=$(key_json 1 RACE)
rep0=$(acnt $A repaired)
stop_a_and_pause
remote_write_in_b "$K" '{"PK":{"S":"RACE#1"},"SK":{"S":"ITEM"},"v":{"S":"remote"}}'
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"RACE#1"},"SK":{"S":"ITEM"},"v":{"S":"local"}}' || fail "put in $A"
deliver_and_resume "$K" remote
wait_counter $A repaired $((rep0 + 1)) 15 || fail "A's agent did not repair the clobbered local write"
both_hold "$K" local "put race"
note "put variant: both regions hold 'local'; repaired $(acnt $A repaired)"

note "delete variant: an unread local delete clobbered by an older remote put"
K2=$(key_json 2 RACE)
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"RACE#2"},"SK":{"S":"ITEM"},"v":{"S":"v0"}}' || fail "seed put"
"$DDBTOOL" wait "$EB" "$TABLE" "$K2" v v0 10000 >/dev/null || fail "seed did not reach $B"
rep1=$(acnt $A repaired)
stop_a_and_pause
remote_write_in_b "$K2" '{"PK":{"S":"RACE#2"},"SK":{"S":"ITEM"},"v":{"S":"remote"}}'
"$DDBTOOL" delete "$EA" "$TABLE" "$K2" || fail "delete in $A"
deliver_and_resume "$K2" remote
wait_counter $A repaired $((rep1 + 1)) 15 || fail "A's agent did not repair the clobbered local delete"
both_hold "$K2" - "delete race"
note "delete variant: deleted in both regions; repaired $(acnt $A repaired)"

# Regression (repair storms): the unread local write clobbered by three older remote
# puts in a row. A's agent reads L, then E1, E2, E3: E1 needs the repair; E2 and E3 were
# written before it, so it already undid them. It used to repair again for each (the
# conditional writes came back "same"): under contention, thousands of wasted writes.
note "storm variant: an unread local put clobbered by three older remote puts"
K3=$(key_json 3 RACE)
rep2=$(acnt $A repaired)
stop_a_and_pause
for n in 1 2 3; do
  remote_write_in_b "$K3" "{\"PK\":{\"S\":\"RACE#3\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"remote$n\"}}"
done
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"RACE#3"},"SK":{"S":"ITEM"},"v":{"S":"local"}}' || fail "put in $A"
deliver_and_resume "$K3" remote3
wait_counter $A repaired $((rep2 + 1)) 15 || fail "A's agent did not repair the clobbered local write"
both_hold "$K3" local "storm"
[ "$(acnt $A repaired)" -eq $((rep2 + 1)) ] ||
  fail "A's agent repaired $(($(acnt $A repaired) - rep2)) times for one clobbered write"
note "storm variant: both regions hold 'local' after one repair"

note "no echo: B versioned only its own five writes"
[ "$(acnt $B local)" -eq 5 ] || fail "eu-west-1 versioned $(acnt $B local) local changes, expected 5"

# Regression (an application's delete taken for a replicated delete's echo): A's
# replicator adds the echo token of a replicated delete before its DeleteItem. When the
# application puts and deletes the key in A meanwhile, the DeleteItem finds nothing and
# the token is taken back; but A's agent, reading the application's REMOVE while the
# token was still there, took it for the echo and did not ship it: B kept the
# application's put, A had nothing. Now the token is tentative until the DeleteItem has
# answered, and the agent waits for that before it classifies a REMOVE matching it. Made
# deterministic: A's replicator reaches its store through a relay that delays each
# request and each response by 5 s; the application writes once the token is there, and
# must be done within 4 s of seeing it, so both its writes land before the DeleteItem
# (the margins let the test share the machine with another one).
note "an application's put and delete while a replicated delete of the key is in flight"
K4=$(key_json 4 RACE)
KID4=$(printf '%s' "$K4" | sha256sum | cut -c1-64)
PEND4=$(redis_key $A "pend:$TABLE:$KID4")
"$DDBTOOL" put "$EB" "$TABLE" '{"PK":{"S":"RACE#4"},"SK":{"S":"ITEM"},"v":{"S":"v0"}}' || fail "seed put"
"$DDBTOOL" wait "$EA" "$TABLE" "$K4" v v0 10000 >/dev/null || fail "seed did not reach $A"
start_store_relay $A 5000
kill_daemon $A tern-replicator
jq --arg r "http://127.0.0.1:$RELAY_PORT" --arg d "$EA" \
  '.store.endpoint = $r | .store.streams_endpoint = $d | .store.timeout_ms = 25000' \
  "$(region_cfg $A)" >"$CLUSTER_DIR/a.json" && mv "$CLUSTER_DIR/a.json" "$(region_cfg $A)"
lr start-daemons $A >/dev/null || fail "restart $A's replicator behind the relay"
for ((i = 0; i < 100; i++)); do [ "$(region_redis $A SCARD "$PEND4")" = 0 ] && break; sleep 0.1; done
[ "$(region_redis $A SCARD "$PEND4")" = 0 ] || fail "echo tokens of the key pending before the delete"
local0=$(acnt $A local) held0=$(acnt $A held)
"$DDBTOOL" delete "$EB" "$TABLE" "$K4" || fail "delete in $B"
for ((i = 0; i < 250; i++)); do [ "$(region_redis $A SCARD "$PEND4")" != 0 ] && break; sleep 0.02; done
t0=$(date +%s%3N)
[ "$(region_redis $A SCARD "$PEND4")" != 0 ] || fail "$A's replicator added no echo token for the delete"
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"RACE#4"},"SK":{"S":"ITEM"},"v":{"S":"app"}}' || fail "put in $A"
"$DDBTOOL" delete "$EA" "$TABLE" "$K4" || fail "delete in $A"
took=$(($(date +%s%3N) - t0))
[ "$took" -lt 4000 ] || fail "the application's writes took $took ms: the DeleteItem may have come first (no race)"
# (the DeleteItem answers 10 s after its token was added; only the agent can have spent it)
[ "$(region_redis $A SCARD "$PEND4")" != 0 ] ||
  fail "the replicated delete's echo token was spent before its DeleteItem answered: taken for the application's delete"
wait_counter $A local $((local0 + 2)) 25 ||
  fail "$A's agent shipped $(($(acnt $A local) - local0)) of the application's 2 writes: its delete was taken for an echo"
both_hold "$K4" - "application's put and delete"
[ "$(acnt $A held)" -eq $((held0 + 1)) ] || fail "$A's agent counts $(($(acnt $A held) - held0)) holds, expected 1"
note "both regions have deleted the key; $A shipped the application's 2 writes, after 1 hold"

# Regression (region-agent/tailer.c): a local put on top of a replicated delete that found
# no item (so left no stream record) must be versioned above that delete. The agent's
# clock did not observe the key's tombstone: with the deleting region's clock ahead of
# this one, the put got a lower version, the other region dropped it as older than its
# tombstone, and the regions differed for good. Made deterministic: both regions'
# tombstone of an absent key is set to a version of B 10 s ahead of this machine's clock,
# as B's delete, made by a clock 10 s ahead and applied in A where the item did not exist,
# leaves them; then the application puts the key in A. Its version must be the
# tombstone's time with a higher counter: taken from the tombstone, not from a wall clock
# that a slow agent might have let pass it. Last in the file: A's clock stays ahead for
# those 10 s (peers only warn of a clock ahead by less than max_clock_skew_ms).
note "a local put on top of a replicated delete that removed nothing, from a clock ahead"
K5=$(key_json 5 RACE)
KID5=$(printf '%s' "$K5" | sha256sum | cut -c1-64)
VD=$(printf '%013d-000000-%s' $(($(date +%s%3N) + 10000)) $B)
for r in $A $B; do region_redis $r SET "$(redis_key $r "tomb:$TABLE:$KID5")" "$VD" EX 600 >/dev/null; done
lost0=$(rcnt $B $A lost)
"$DDBTOOL" put "$EA" "$TABLE" '{"PK":{"S":"RACE#5"},"SK":{"S":"ITEM"},"v":{"S":"after"}}' || fail "put in $A"
"$DDBTOOL" wait "$EB" "$TABLE" "$K5" v after 15000 >/dev/null ||
  fail "$B did not take $A's put made on top of the delete $VD (conflicts lost in $B: $(($(rcnt $B $A lost) - lost0)))"
both_hold "$K5" after "put on top of a replicated delete"
VA=$("$DDBTOOL" get "$EB" "$TABLE" "$K5" | jq -r '."tern:ver".S')
[ "${VA%%-*}" = "${VD%%-*}" ] && (LC_ALL=C; [[ "$VA" > "$VD" ]]) ||
  fail "the put's version $VA is not the delete's $VD with a higher counter"
note "both regions hold the put, version $VA above the delete's $VD"
assert_clean_logs
echo "PASS"
