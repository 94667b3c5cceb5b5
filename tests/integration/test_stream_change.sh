#!/usr/bin/env bash
# The table's stream is disabled and enabled again (a new stream, a new ARN: what an
# operator does to change StreamViewType, or by mistake). Regression: the agent kept
# polling the old stream, read its shards to their ends, and never read the new one: every
# write after the change was silently not replicated. Now the agent notices the newer
# stream (DescribeTable, every AGENT_DESCRIBE_MS), reads the old one to its end first (a
# key's older changes are there), then switches, saving which stream ckpt:T belongs to.
# Case 1: while the agent runs. Case 2: while the agent is down, with writes left unread in
# the old stream: at start it finishes the stream its checkpoints belong to, then the new.
# Case 3: an upgrade (no stream field) with a leftover checkpoint. Case 4: streams enabled
# one after another while the agent is down, read in order; one without images skipped.
# Case 5: the table deleted and created again, with a write the agent had not read.
# Last, a malformed entry in the change log (same file: the source side's own state).
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
# re_enable: disable the stream, then enable a new one with both images; prints its ARN,
# checked to be new
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
# the new stream is empty, the old one holds writes the agent has not read: not caught up
rc=0; ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 2 >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "wait-caught-up exited $rc (expected 1) while the agent had not read the old stream"
put 5 new
put 6 a
lr start-daemons us-east-1 >/dev/null || fail "restarting us-east-1's daemons"
arrives 4 unread
arrives 6 a
arrives 5 new
ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 30 >/dev/null || fail "wait-caught-up after the switch"
daemon_log us-east-1 tern-region-agent | grep -q "reading stream $S2, which the checkpoints belong to, to its end before the table's next stream $S3" ||
  fail "no line about finishing the old stream first"
[ "$(region_redis us-east-1 HGET "$CKPT" stream)" = "$S3" ] || fail "ckpt:T does not name the newest stream"

# enable VIEW_TYPE: disables the stream, enables a new one; prints its ARN
enable() {
  "$DDBTOOL" call "$E" "$TABLE" UpdateTable '{"StreamSpecification":{"StreamEnabled":false}}' >/dev/null ||
    fail "disabling the stream"
  "$DDBTOOL" call "$E" "$TABLE" UpdateTable \
    "{\"StreamSpecification\":{\"StreamEnabled\":true,\"StreamViewType\":\"$1\"}}" >/dev/null ||
    fail "enabling a $1 stream"
  latest_arn
}

note "case 3: an agent upgraded from a release without ckpt:T's stream field, with a leftover checkpoint"
# of a shard no longer in the stream (read more than 24 h late): neither stops the switch
kill_daemon us-east-1 tern-region-agent
region_redis us-east-1 HDEL "$CKPT" stream >/dev/null
region_redis us-east-1 HSET "$CKPT" shardId-00000001000000000000-0badc0de 000000000000000000001 >/dev/null
lr start-daemons us-east-1 >/dev/null || fail "restarting us-east-1's daemons"
for _ in $(seq 100); do [ "$(region_redis us-east-1 HGET "$CKPT" stream)" = "$S3" ] && break; sleep 0.1; done
[ "$(region_redis us-east-1 HGET "$CKPT" stream)" = "$S3" ] || fail "the upgraded agent did not save the stream field"
S4=$(re_enable)
put 7 a
arrives 7 a

note "case 4: three changes while the agent is down; the middle stream has no images"
kill_daemon us-east-1 tern-region-agent
put 8 a                       # stream S4, unread
S5=$(enable NEW_AND_OLD_IMAGES)
put 9 a                       # S5: read after S4, before S7
S6=$(enable KEYS_ONLY)
put 10 lost                   # S6: not replicable
S7=$(enable NEW_AND_OLD_IMAGES)
put 11 a
"$DDBTOOL" delete "$E" "$TABLE" "$(key_json 10 SC)" >/dev/null || fail "delete SC#10" # the regions end equal
lr start-daemons us-east-1 >/dev/null || fail "restarting us-east-1's daemons"
arrives 8 a
arrives 9 a
arrives 11 a
daemon_log us-east-1 tern-region-agent | grep -q "stream $S6 has view type KEYS_ONLY: the changes it holds are NOT replicated" ||
  fail "no error about the stream without images"
[ "$(region_redis us-east-1 HGET "$CKPT" stream)" = "$S7" ] || fail "ckpt:T does not name the newest stream"
for s in "$S4 read to its end; reading the table's stream $S5" "$S5 read to its end; reading the table's stream $S6" \
  "$S6 skipped (no images); reading the table's stream $S7"; do
  daemon_log us-east-1 tern-region-agent | grep -qF "stream $s" || fail "no line 'stream $s'"
done

# Regression: a malformed entry in the change log (a bug, or Redis edited by hand) made the
# shipper log an error on every turn and hold back the good entries read with it. Now the
# entries before it go, and the link stops at it with an error every 5 s, until removed.
note "a malformed change-log entry: what precedes it is shipped, the link stops at it, loudly"
LOGKEY=$(redis_key us-east-1 "log:$TABLE")
ctl pause --from us-east-1 --to eu-west-1 >/dev/null || fail "pause"
sleep 1 # the agent reads pause flags every 500 ms
put 19 a
for _ in $(seq 100); do [ "$(acnt us-east-1 local)" = 14 ] && break; sleep 0.1; done
[ "$(acnt us-east-1 local)" = 14 ] || fail "SC#19 was not logged in 10 s"
BAD=$(region_redis us-east-1 XADD "$LOGKEY" '*' c 'not a change')
put 20 a
for _ in $(seq 100); do [ "$(acnt us-east-1 local)" = 15 ] && break; sleep 0.1; done
[ "$(acnt us-east-1 local)" = 15 ] || fail "SC#20 was not logged in 10 s"
ctl resume --from us-east-1 --to eu-west-1 >/dev/null || fail "resume"
arrives 19 a
sleep 3
"$DDBTOOL" get "$W" "$TABLE" "$(key_json 20 SC)" >/dev/null 2>&1 && fail "SC#20 went past the malformed entry"
n=$(daemon_log us-east-1 tern-region-agent | grep -c "malformed change-log entry" || true)
[ "$n" = 1 ] || fail "the malformed entry was reported $n times in 3 s (expected once: every 5 s)"
daemon_log us-east-1 tern-region-agent | grep -q "malformed change-log entry after .* ($BAD), or out of memory parsing it: the link to this peer stops here" ||
  fail "the error does not name the entry"
daemon_log us-east-1 tern-region-agent | grep -qF "check the entry with XRANGE $LOGKEY (" ||
  fail "the error does not name the log's Redis key"
region_redis us-east-1 XDEL "$LOGKEY" "$BAD" >/dev/null
arrives 20 a

note "no change shipped twice or lost: eu-west-1 holds what us-east-1 holds"
wait_identical 30 us-east-1 eu-west-1 || fail "regions differ"
[ "$(acnt us-east-1 local)" = 15 ] || fail "us-east-1's agent counted $(acnt us-east-1 local) local changes, expected 15"
note "case 5: the table deleted and created again while the agent is down, with a write it had not read"
kill_daemon us-east-1 tern-region-agent
put 30 unread
"$DDBTOOL" call "$E" "$TABLE" DeleteTable '{}' >/dev/null || fail "DeleteTable"
ddb_create_table "${CL_DDB[us-east-1]}" "$TABLE" || fail "CreateTable"
put 31 a
lr start-daemons us-east-1 >/dev/null || fail "restarting us-east-1's daemons"
# DynamoDB Local keeps a deleted table's stream readable (as AWS does for 24 h): the write
# is read from it, then the new table's stream (a stream gone for good, which this store
# never shows, is said to have lost its unread changes: not tested here)
arrives 30 unread
arrives 31 a
daemon_log us-east-1 tern-region-agent | grep -qF "stream $S7 read to its end; reading the table's stream" ||
  fail "no switch to the new table's stream"
# Regression: one configured table without a usable stream kept the agent from ever
# saying READY=1 (systemd restarted it every 90 s, stopping the healthy tables too), and
# its error was logged every 2 s.
note "a configured table with no stream: the agent starts, the other table replicates"
"$DDBTOOL" call "$E" tern-nostream CreateTable '{"AttributeDefinitions":[{"AttributeName":"PK","AttributeType":"S"},
  {"AttributeName":"SK","AttributeType":"S"}],"KeySchema":[{"AttributeName":"PK","KeyType":"HASH"},
  {"AttributeName":"SK","KeyType":"RANGE"}],"BillingMode":"PAY_PER_REQUEST"}' >/dev/null || fail "create tern-nostream"
kill_daemon us-east-1 tern-region-agent
jq '.tables += ["tern-nostream"]' "$(region_cfg us-east-1)" >"$CLUSTER_DIR/ns.json" && mv "$CLUSTER_DIR/ns.json" "$(region_cfg us-east-1)"
lr start-daemons us-east-1 >/dev/null || fail "us-east-1's agent did not start with a table that has no stream"
put 90 ok
arrives 90 ok
sleep 2.5 # the table is looked at again every 2 s: its error must not be logged again
n=$(daemon_log us-east-1 tern-region-agent | grep -c "table tern-nostream: no stream enabled" || true)
[ "$n" = 1 ] || fail "the missing stream of tern-nostream was logged $n times, expected once"
daemon_log us-east-1 tern-region-agent | grep -q "tailing 1 of 2 table(s)" || fail "no line saying one table is not tailed"
note "a stream enabled on it: the agent reads it from its start"
"$DDBTOOL" call "$E" tern-nostream UpdateTable \
  '{"StreamSpecification":{"StreamEnabled":true,"StreamViewType":"NEW_AND_OLD_IMAGES"}}' >/dev/null || fail "enable its stream"
"$DDBTOOL" put "$E" tern-nostream "$(item 91 new)" >/dev/null || fail "put in tern-nostream"
NS_ACNT=$(redis_key us-east-1 "acnt:tern-nostream")
for _ in $(seq 1 100); do [ "$(region_redis us-east-1 HGET "$NS_ACNT" local)" = 1 ] && break; sleep 0.1; done
[ "$(region_redis us-east-1 HGET "$NS_ACNT" local)" = 1 ] || fail "us-east-1's agent did not version the write in tern-nostream's new stream"
daemon_log us-east-1 tern-region-agent | grep -q "table tern-nostream: reading its new stream" || fail "no line saying the new stream is read"

assert_clean_logs
note "PASS"
