#!/usr/bin/env bash
# The table's stream is disabled and enabled again (a new stream, a new ARN: what an
# operator does to change StreamViewType, or by mistake). Regression: the agent kept
# polling the old stream, read its shards to their ends, and never read the new one: every
# write after the change was silently not replicated. Now the agent notices the newer
# stream (DescribeTable, every AGENT_DESCRIBE_MS), reads the old one to its end first (a
# key's older changes are there), then switches, saving which stream ckpt:T belongs to.
# Case 1: while the agent runs. Case 2: while the agent is down, with writes left unread in
# the old stream: at start it finishes the stream its checkpoints belong to, then the new.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
E=$(region_endpoint us-east-1) W=$(region_endpoint eu-west-1)
CKPT=$(redis_key us-east-1 "ckpt:$TABLE")
item() { echo "{\"PK\":{\"S\":\"SC#$1\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"$2\"}}"; }
put() { "$DDBTOOL" put "$E" "$TABLE" "$(item "$1" "$2")" >/dev/null || fail "put SC#$1"; }
arrives() { # arrives KEY VALUE: SC#KEY holds v=VALUE in eu-west-1 within 40 s
  "$DDBTOOL" wait "$W" "$TABLE" "$(key_json "$1" SC)" v "$2" 40000 >/dev/null ||
    fail "SC#$1 v=$2 did not reach eu-west-1; agent log tail: $(daemon_log us-east-1 tern-region-agent | tail -5)"
}
latest_arn() { "$DDBTOOL" call "$E" "$TABLE" DescribeTable '{}' | jq -r '.Table.LatestStreamArn // empty'; }
# re_enable: disable the stream, then enable a new one with both images; prints its ARN
re_enable() {
  local old new
  old=$(latest_arn)
  "$DDBTOOL" call "$E" "$TABLE" UpdateTable '{"StreamSpecification":{"StreamEnabled":false}}' >/dev/null ||
    fail "disabling the stream"
  "$DDBTOOL" call "$E" "$TABLE" UpdateTable \
    '{"StreamSpecification":{"StreamEnabled":true,"StreamViewType":"NEW_AND_OLD_IMAGES"}}' >/dev/null ||
    fail "enabling a new stream"
  new=$(latest_arn)
  [ -n "$new" ] && [ "$new" != "$old" ] || fail "the new stream has the old ARN ($old / $new)"
  echo "$new"
}

note "before: replication works, ckpt:T names the stream its checkpoints belong to"
put 1 a
arrives 1 a
S1=$(latest_arn)
[ "$(region_redis us-east-1 HGET "$CKPT" stream)" = "$S1" ] || fail "ckpt:T does not name stream $S1"

note "case 1: stream disabled and enabled again while the agent runs"
put 2 old # in the old stream, just before the change
S2=$(re_enable)
put 2 new # the same key in the new stream: it must win (read after the old stream)
put 3 a
arrives 3 a
arrives 2 new
daemon_log us-east-1 tern-region-agent | grep -q "the table has a new stream $S2" ||
  fail "no warning about the new stream"
daemon_log us-east-1 tern-region-agent | grep -q "stream $S1 read to its end; reading the table's stream $S2" ||
  fail "no line about the switch"
[ "$(region_redis us-east-1 HGET "$CKPT" stream)" = "$S2" ] || fail "ckpt:T does not name the new stream"
# only the new stream's shards are left in ckpt:T: the old one's were dropped at the switch
shards=$("$DDBTOOL" call "$E" - DescribeStream "{\"StreamArn\":\"$S2\"}" 2>/dev/null |
  jq -r '.StreamDescription.Shards[].ShardId' | sort) || true
for f in $(region_redis us-east-1 HKEYS "$CKPT"); do
  [ "$f" = stream ] || grep -qxF "$f" <<<"$shards" || fail "ckpt:T still holds $f, not a shard of $S2"
done

note "case 2: the agent is down across the change, with a write left unread in the old stream"
kill_daemon us-east-1 tern-region-agent
put 4 unread # only in stream S2, which the agent has not read yet
put 5 old
S3=$(re_enable)
put 5 new
put 6 a
lr start-daemons us-east-1 >/dev/null || fail "restarting us-east-1's daemons"
arrives 4 unread
arrives 6 a
arrives 5 new
daemon_log us-east-1 tern-region-agent | grep -q "reading stream $S2, which the checkpoints belong to, to its end before the table's newer stream $S3" ||
  fail "no line about finishing the old stream first"
[ "$(region_redis us-east-1 HGET "$CKPT" stream)" = "$S3" ] || fail "ckpt:T does not name the newest stream"

note "no change shipped twice or lost: eu-west-1 holds what us-east-1 holds"
wait_identical 30 us-east-1 eu-west-1 || fail "regions differ"
[ "$(acnt us-east-1 local)" = 8 ] || fail "us-east-1's agent counted $(acnt us-east-1 local) local changes, expected 8"
assert_clean_logs
note "PASS"
