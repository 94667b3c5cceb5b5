#!/usr/bin/env bash
# Regression: a replicator with no watermark for a source (first contact) let any batch
# through; when the first batch's change was not taken (held back for clock skew, or
# failed), the next batch was applied and acknowledged past it, and the first change was
# never applied (lost). Now the first batch's prev is saved as the watermark before
# anything is taken, and the next batch is a gap until the first is applied.
# Regression 2: a replicator that lost its watermark (it died before saving anything, or
# its Redis lost the key) took whichever in-flight batch came first as its start, and the
# changes before it were never applied. Version 2 batches carry the source's
# acknowledged position; a first batch after it is refused and the source resends (checked
# with peerprobe). The real agent goes back to its acknowledged position as soon as the
# connection drops, so after the replicator's restart its first batch starts there: checked
# too, and nothing is lost.
# us-east-1's agent is stopped; peerprobe speaks for us-east-1 with its real key (without
# --acked it sends version 1 batches, as an agent of an older release does).
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
kill_daemon us-east-1 tern-region-agent
W=$(region_endpoint eu-west-1)
EP="tcp://127.0.0.1:${CL_REPL[eu-west-1]}"
WMKEY=$(redis_key eu-west-1 "wm:us-east-1:$TABLE")
probe() {
  "$PEERPROBE" --connect "$EP" --server-key "$CLUSTER_DIR/keys/eu-west-1.pub" \
    --secret-key "$CLUSTER_DIR/keys/us-east-1.key" --wait "${WAIT:-1500}" "$@"
}
now_ms() { date +%s%3N; }
ver_at() { printf '%013d-000000-us-east-1' "$1"; }
key() { echo "{\"PK\":{\"S\":\"FC#$1\"},\"SK\":{\"S\":\"ITEM\"}}"; }
image() { echo "{\"PK\":{\"S\":\"FC#$1\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"$1\"}}"; }
present() { "$DDBTOOL" get "$W" "$TABLE" "$(key "$1")" >/dev/null 2>&1; }

[ -z "$(region_redis eu-west-1 HGET "$WMKEY" pos)" ] || fail "eu-west-1 already has a watermark for us-east-1"

note "first batch: its change is an hour ahead of the clock (held back, not taken)"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 0-0 --pos 100-1 \
  --ver "$(ver_at $(( $(now_ms) + 3600000 )))" --keys "$(key 1)" --image "$(image 1)") || fail "probe"
[ "$out" = no-ack ] || fail "a held-back change was acknowledged: $out"
[ "$(region_redis eu-west-1 HGET "$WMKEY" pos)" = 0-0 ] || fail "first contact did not save the watermark 0-0"

note "second batch, after the first: a gap until the first is applied"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 100-1 --pos 100-2 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 2)" --image "$(image 2)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 0-0" ] || fail "the batch after a change not taken was not refused as a gap: $out"
! present 2 || fail "the second batch was applied past the first"
[ "$(region_redis eu-west-1 HGET "$WMKEY" pos)" = 0-0 ] || fail "the watermark moved past a change never applied"

note "the peer resends both (the first change no longer ahead): both applied, in order"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 0-0 --pos 100-1 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 1)" --image "$(image 1)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 100-1" ] || fail "the resent first batch: $out"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 100-1 --pos 100-2 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 2)" --image "$(image 2)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 100-2" ] || fail "the resent second batch: $out"
present 1 && present 2 || fail "a resent change is missing in eu-west-1"

note "eu-west-1's replicator dies and its watermark is lost, with batches after 100-2 in flight"
kill_daemon eu-west-1 tern-replicator KILL
region_redis eu-west-1 DEL "$WMKEY" >/dev/null
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
note "the first batch to arrive follows one never recorded here: refused (ack 0-0: nothing held)"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 100-3 --acked 100-2 --pos 100-4 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 4)" --image "$(image 4)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 0-0" ] || fail "a first batch after the acknowledged position was not refused: $out"
! present 4 || fail "the batch after an unrecorded one was applied"
[ -z "$(region_redis eu-west-1 HGET "$WMKEY" pos)" ] || fail "a refused first batch saved a watermark"
note "the source resends from its acknowledged position: both changes applied"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 100-2 --acked 100-2 --pos 100-3 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 3)" --image "$(image 3)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 100-3" ] || fail "the resend from the acknowledged position: $out"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 100-3 --acked 100-2 --pos 100-4 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 4)" --image "$(image 4)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 100-4" ] || fail "the batch after it: $out"
present 3 && present 4 || fail "a resent change is missing in eu-west-1"

# Regression 3: a watermark that went back (Redis restored from an older copy) below what
# this region had acknowledged made every resend from the source's acknowledged position
# a gap: the link stopped for good. A version 2 batch that follows the acknowledged
# position exactly now moves the watermark there.
note "eu-west-1's watermark rolled back from 100-4 to 100-1 (Redis restored from an older copy)"
kill_daemon eu-west-1 tern-replicator KILL
region_redis eu-west-1 HSET "$WMKEY" pos 100-1 >/dev/null
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 100-4 --acked 100-4 --pos 100-5 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 5)" --image "$(image 5)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 100-5" ] || fail "the resend from the acknowledged position after a rollback: $out"
present 5 || fail "the change after the rolled-back watermark is missing"

# The real agent against a replicator that lost its watermark with a batch in flight: the
# dropped connection makes it resend from its acknowledged position once the replicator is
# back (its ack timeout is 60 s), and nothing is lost. (Before the agent watched its
# connection, the next new batch came first and was refused, which made it resend.)
note "us-east-1's agent ships a change that eu-west-1's replicator takes and dies without saving"
jq '.agent.ack_timeout_ms = 60000' "$(region_cfg us-east-1)" > "$CLUSTER_DIR/a.json" &&
  mv "$CLUSTER_DIR/a.json" "$(region_cfg us-east-1)"
lr start-daemons us-east-1 >/dev/null || fail "start us-east-1's agent"
put_a() { "$DDBTOOL" put "$(region_endpoint us-east-1)" "$TABLE" "$(image "$1")" >/dev/null || fail "put $1 in us-east-1"; }
wait_present() { "$DDBTOOL" wait "$W" "$TABLE" "$(key "$1")" v "$1" 10000 >/dev/null 2>&1; } # up to 10 s
put_a 6
wait_present 6 || fail "change 6 did not arrive"
sleep 1 # its acknowledgement is saved
signal_daemon eu-west-1 tern-replicator STOP
shipped0=$(acnt us-east-1 shipped:eu-west-1)
put_a 7
for _ in $(seq 100); do [ "$(acnt us-east-1 shipped:eu-west-1)" -gt "$shipped0" ] && break; sleep 0.1; done
[ "$(acnt us-east-1 shipped:eu-west-1)" -gt "$shipped0" ] || fail "change 7 was not shipped" # in flight, unacknowledged
kill_daemon eu-west-1 tern-replicator KILL
lines0=$(wc -l <"$(region_run eu-west-1)/tern-replicator.log")
region_redis eu-west-1 DEL "$WMKEY" >/dev/null
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
put_a 8
wait_present 8 && wait_present 7 || fail "changes 7 and 8 did not both arrive within 10 s (7: $(present 7 && echo yes || echo no))"
grep -q "resending from .* (the connection to the peer dropped with batches in flight)" \
  "$(region_run us-east-1)/tern-region-agent.log" || fail "us-east-1's agent did not go back when the connection dropped"
tail -n +$((lines0 + 1)) "$(region_run eu-west-1)/tern-replicator.log" | grep -q "first contact: replicating after position" ||
  fail "eu-west-1's replicator did not start at the agent's acknowledged position"

# Regression: a peer that answered batches without taking them (its apply failing at
# once) got the window resent for each answer, and each frame behind a refused one (a gap)
# or a copy of one already applied drew a resend of its own: with eu-west-1's Redis down,
# about one resend per change written (42 for 40 changes in 8 s; thousands once the
# replicator answered a failed change at once). Now a refusal after a resend waits a
# doubling delay, called off by an ack that moves (the answer was to a frame sent before
# the resend); and a replicator whose apply failed says so at once, even while it cannot
# save (ack timeout still 60 s here: only refusals make the agent resend).
note "eu-west-1's Redis down while us-east-1 writes 10 changes: the agent backs off its resends"
AGENT_LOG=$(region_run us-east-1)/tern-region-agent.log
resends() { grep -c 'resending from' "$AGENT_LOG" || true; }
r0=$(resends)
kill_redis eu-west-1
for i in $(seq 11 20); do put_a $i; done
sleep 2
r1=$(resends)
restart_redis eu-west-1
for i in $(seq 11 20); do
  "$DDBTOOL" wait "$W" "$TABLE" "$(key "$i")" v "$i" 30000 >/dev/null 2>&1 || fail "change $i did not arrive once eu-west-1's Redis was back"
done
note "us-east-1's agent resent $((r1 - r0)) times while eu-west-1's Redis was down, $(($(resends) - r1)) after"
[ $((r1 - r0)) -le 12 ] || fail "us-east-1's agent resent its window $((r1 - r0)) times in a few seconds (at most 12 with the doubling delay)"

note "a peer that never acknowledges anything: the agent hints at agent.wire_version"
kill_daemon us-east-1 tern-region-agent
jq '.agent.ack_timeout_ms = 300' "$(region_cfg us-east-1)" > "$CLUSTER_DIR/a.json" && mv "$CLUSTER_DIR/a.json" "$(region_cfg us-east-1)"
# eu-west-1's replicator, restarted, has acknowledged nothing yet; with its Redis down it
# cannot load the watermark, and so cannot answer (not even with a refusal)
kill_daemon eu-west-1 tern-replicator
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
kill_redis eu-west-1
lr start-daemons us-east-1 >/dev/null || fail "restart us-east-1's agent"
put_a 10
for _ in $(seq 100); do grep -q "no acknowledgement since this agent started" "$(region_run us-east-1)/tern-region-agent.log" && break; sleep 0.1; done
grep -q "no acknowledgement since this agent started.*set agent.wire_version to 1" "$(region_run us-east-1)/tern-region-agent.log" ||
  fail "us-east-1's agent did not hint at agent.wire_version"
restart_redis eu-west-1
wait_present 10 || fail "change 10 did not arrive once eu-west-1's Redis was back"

note "us-east-1's agent set to agent.wire_version 1 (an upgrade in progress) still replicates"
kill_daemon us-east-1 tern-region-agent
jq '.agent.wire_version = 1' "$(region_cfg us-east-1)" > "$CLUSTER_DIR/v1.json" && mv "$CLUSTER_DIR/v1.json" "$(region_cfg us-east-1)"
jq '.log_level = "debug"' "$(region_cfg eu-west-1)" > "$CLUSTER_DIR/b.json" && mv "$CLUSTER_DIR/b.json" "$(region_cfg eu-west-1)"
kill_daemon eu-west-1 tern-replicator
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
lr start-daemons us-east-1 >/dev/null || fail "restart us-east-1's agent"
put_a 9
wait_present 9 || fail "a change from an agent sending version 1 batches did not arrive"
grep -q "batch of 1 (protocol version 1)" "$(region_run eu-west-1)/tern-replicator.log" ||
  fail "us-east-1's agent did not send version 1 batches"
! grep -q "(protocol version 2)" "$(region_run eu-west-1)/tern-replicator.log" ||
  fail "us-east-1's agent sent version 2 batches with agent.wire_version 1"
assert_clean_logs
echo PASS
