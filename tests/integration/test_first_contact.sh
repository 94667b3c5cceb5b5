#!/usr/bin/env bash
# Regression: a replicator with no watermark for a source (first contact) let any batch
# through; when the first batch's change was not taken (held back for clock skew, or
# failed), the next batch was applied and acknowledged past it, and the first change was
# never applied (lost). Now the first batch's prev is saved as the watermark before
# anything is taken, and the next batch is a gap until the first is applied.
# us-east-1's agent is stopped; peerprobe speaks for us-east-1 with its real key.
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
assert_clean_logs
echo PASS
