#!/usr/bin/env bash
# Regression: a replicator with no watermark for a source (first contact) let any batch
# through; when the first batch's change was not taken (held back for clock skew, or
# failed), the next batch was applied and acknowledged past it, and the first change was
# never applied (lost). Now the first batch's prev is saved as the watermark before
# anything is taken, and the next batch is a gap until the first is applied.
# Regression 2: a replicator that lost its watermark (it died before saving anything, or
# its Redis lost the key) took whichever in-flight batch came first as its start, and the
# changes before it were never applied. Version 2 batches carry the source's
# acknowledged position; a first batch after it is refused and the source resends.
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
note "the first batch to arrive follows one never recorded here: refused, the source's ack position asked for"
out=$(probe batch --source us-east-1 --table "$TABLE" --prev 100-3 --acked 100-2 --pos 100-4 \
  --ver "$(ver_at "$(now_ms)")" --keys "$(key 4)" --image "$(image 4)") || fail "probe"
[ "$out" = "ack us-east-1 $TABLE 100-2" ] || fail "a first batch after the acknowledged position was not refused: $out"
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

note "us-east-1's agent set to agent.wire_version 1 (an upgrade in progress) still replicates"
jq '.agent.wire_version = 1' "$(region_cfg us-east-1)" > "$CLUSTER_DIR/v1.json" && mv "$CLUSTER_DIR/v1.json" "$(region_cfg us-east-1)"
lr start-daemons us-east-1 >/dev/null || fail "restart us-east-1's agent"
"$DDBTOOL" put "$(region_endpoint us-east-1)" "$TABLE" "$(image 5)" >/dev/null || fail "put in us-east-1"
for _ in $(seq 100); do present 5 && break; sleep 0.1; done
present 5 || fail "a change from an agent sending version 1 batches did not arrive"
assert_clean_logs
echo PASS
