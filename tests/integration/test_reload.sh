#!/usr/bin/env bash
# SIGHUP applies what can change while running: the replicator moves to a new listen
# port and the peer's agent follows it (peers' endpoints), also from a wildcard host;
# the log level changes; a Redis set up without AOF fsync always or with eviction is
# named in an error at the agent's restart; a
# config naming another region is refused and the old config stays; a peer's key replaced
# cuts the session its old key opened; a watermark that does not parse stops its link
# with an error; nothing is lost.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
E=$(region_endpoint us-east-1) W=$(region_endpoint eu-west-1)
pid_of() { cat "$(region_run "$1")/$2.pid"; }
edit() { jq "$2" "$(region_cfg "$1")" >"$CLUSTER_DIR/tmp.json" && mv "$CLUSTER_DIR/tmp.json" "$(region_cfg "$1")"; }
put() { "$DDBTOOL" put "$E" "$TABLE" "{\"PK\":{\"S\":\"$1\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"$1\"}}"; }
arrives() { "$DDBTOOL" wait "$W" "$TABLE" "{\"PK\":{\"S\":\"$1\"},\"SK\":{\"S\":\"ITEM\"}}" v "$1" "${2:-20000}" >/dev/null; }

put R1 && arrives R1 || fail "baseline replication"

note "the replicator moves to a new port, the agent follows: both by SIGHUP"
newport=$(free_port)
edit eu-west-1 ".replicator.listen = \"tcp://127.0.0.1:$newport\""
edit us-east-1 ".peers[0].endpoint = \"tcp://127.0.0.1:$newport\""
rpid=$(pid_of eu-west-1 tern-replicator) apid=$(pid_of us-east-1 tern-region-agent)
kill -HUP "$rpid"
for _ in $(seq 1 100); do grep -q "reload: config .* applied: listen tcp://127.0.0.1:$newport" "$(region_run eu-west-1)/tern-replicator.log" && break; sleep 0.1; done
grep -q "applied: listen tcp://127.0.0.1:$newport" "$(region_run eu-west-1)/tern-replicator.log" || fail "replicator did not apply the new listen endpoint"
put R2   # written while the agent still points at the old port: must not be lost
kill -HUP "$apid"
for _ in $(seq 1 100); do grep -q "reload: config .* applied" "$(region_run us-east-1)/tern-region-agent.log" && break; sleep 0.1; done
grep -q "reload: config .* applied" "$(region_run us-east-1)/tern-region-agent.log" || fail "agent did not apply the reload"
arrives R2 30000 || fail "a change written during the move was lost"
put R3 && arrives R3 || fail "replication after the move"
[ "$(pid_of eu-west-1 tern-replicator)" = "$rpid" ] && [ "$(pid_of us-east-1 tern-region-agent)" = "$apid" ] && kill -0 "$rpid" "$apid" \
  || fail "a daemon restarted instead of reloading"

note "from a wildcard listen endpoint to another port"
# regression: the reload unbound the socket by replicator.listen's text, which ZeroMQ
# cannot find for a "*" host (bound as 0.0.0.0): every such reload was refused. (The
# replicator listens on every interface for these few seconds, CURVE on; only loopback
# connects to it.)
wildport=$(free_port)
edit eu-west-1 ".replicator.listen = \"tcp://*:$wildport\""
edit us-east-1 ".peers[0].endpoint = \"tcp://127.0.0.1:$wildport\""
kill -HUP "$rpid"
for _ in $(seq 1 100); do grep -q "applied: listen tcp://\*:$wildport" "$(region_run eu-west-1)/tern-replicator.log" && break; sleep 0.1; done
grep -q "applied: listen tcp://\*:$wildport" "$(region_run eu-west-1)/tern-replicator.log" || fail "replicator did not move to the wildcard endpoint"
newport=$(free_port)
edit eu-west-1 ".replicator.listen = \"tcp://127.0.0.1:$newport\""
edit us-east-1 ".peers[0].endpoint = \"tcp://127.0.0.1:$newport\""
kill -HUP "$rpid"
for _ in $(seq 1 100); do grep -q "applied: listen tcp://127.0.0.1:$newport" "$(region_run eu-west-1)/tern-replicator.log" && break; sleep 0.1; done
grep -q "applied: listen tcp://127.0.0.1:$newport" "$(region_run eu-west-1)/tern-replicator.log" ||
  fail "replicator did not leave the wildcard endpoint: $(grep 'reload:' "$(region_run eu-west-1)/tern-replicator.log" | tail -1)"
n=$(grep -c "reload: config .* applied" "$(region_run us-east-1)/tern-region-agent.log")
kill -HUP "$apid"
for _ in $(seq 1 100); do [ "$(grep -c "reload: config .* applied" "$(region_run us-east-1)/tern-region-agent.log")" -gt "$n" ] && break; sleep 0.1; done
put R3w && arrives R3w 30000 || fail "replication after leaving the wildcard endpoint"
[ "$(pid_of eu-west-1 tern-replicator)" = "$rpid" ] && kill -0 "$rpid" || fail "the replicator restarted instead of reloading"

note "ten reloads back to back: each is applied and the agent stays up"
# regression: the restarted shipper re-bound the inproc wake-up name of the socket it had
# just closed; ZeroMQ frees that name only when its reaper gets to it, so a reload could
# fail with "Address already in use" and the agent exited
for i in $(seq 1 10); do
  n=$(grep -c "reload: config .* applied" "$(region_run us-east-1)/tern-region-agent.log")
  kill -HUP "$apid"
  for _ in $(seq 1 100); do
    [ "$(grep -c "reload: config .* applied" "$(region_run us-east-1)/tern-region-agent.log")" -gt "$n" ] && break
    kill -0 "$apid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$apid" 2>/dev/null || fail "the agent exited on reload $i: $(grep -E 'error' "$(region_run us-east-1)/tern-region-agent.log" | tail -2)"
  [ "$(grep -c "reload: config .* applied" "$(region_run us-east-1)/tern-region-agent.log")" -gt "$n" ] || fail "reload $i was not applied"
done
put R3b && arrives R3b || fail "replication after ten reloads"

note "log level by SIGHUP"
edit us-east-1 '.log_level = "debug"'
kill -HUP "$apid"; sleep 1
put R4 && arrives R4 || fail "replication after the log-level reload"
sleep 0.5
grep -q ' debug region=us-east-1' "$(region_run us-east-1)/tern-region-agent.log" || fail "no debug lines after switching to debug"

note "Redis without the settings Tern needs: the agent says so at its (re)start"
region_redis us-east-1 CONFIG SET appendfsync everysec >/dev/null
region_redis us-east-1 CONFIG SET maxmemory 1gb >/dev/null
region_redis us-east-1 CONFIG SET maxmemory-policy volatile-lru >/dev/null
n=$(grep -c "Redis is not set up as Tern needs" "$(region_run us-east-1)/tern-region-agent.log" || true)
kill -HUP "$apid"
# (the tailer checks once it has started, after the reload's "applied" line)
for _ in $(seq 1 150); do [ "$(grep -c "Redis is not set up as Tern needs" "$(region_run us-east-1)/tern-region-agent.log")" -gt "$n" ] && break; sleep 0.1; done
region_redis us-east-1 CONFIG SET appendfsync always >/dev/null
region_redis us-east-1 CONFIG SET maxmemory-policy noeviction >/dev/null
region_redis us-east-1 CONFIG SET maxmemory 0 >/dev/null
line=$(grep 'Redis is not set up as Tern needs' "$(region_run us-east-1)/tern-region-agent.log" | tail -1)
[[ "$line" == *"appendfsync is everysec"*"maxmemory-policy is volatile-lru with maxmemory 1073741824"* ]] ||
  fail "the agent did not name the Redis settings that break its guarantees: '$line'"
! grep -q 'Redis is not set up' "$(region_run eu-west-1)/tern-replicator.log" ||
  fail "the replicator complained of a Redis set up as Tern needs"

note "a config naming another region is refused; the old config stays in force"
edit eu-west-1 '.region = "ap-south-1" | .peers[0].region = "us-east-1"'
kill -HUP "$rpid"; sleep 1
kill -0 "$rpid" || fail "the replicator died on a refused reload"
grep -q "reload: .*region: ap-south-1 differs from the running eu-west-1" "$(region_run eu-west-1)/tern-replicator.log" || fail "no refusal line"
put R5 && arrives R5 || fail "replication after the refused reload"

# regression: ZAP judges a key only at the handshake, so a peer whose key the operator had
# replaced by a reload (compromised) kept delivering over the session its old key opened
note "a peer's key replaced by SIGHUP: the session its old key opened delivers nothing more"
edit eu-west-1 '.region = "eu-west-1" | .peers[0].region = "us-east-1"' # back from the refused one
tern_keygen us-east-1-new "$CLUSTER_DIR/keys" || fail "keygen"
edit eu-west-1 '.peers[0].public_key_file = "keys/us-east-1-new.pub"'
n=$(grep -c "reload: config .* applied" "$(region_run eu-west-1)/tern-replicator.log")
kill -HUP "$rpid"
for _ in $(seq 1 100); do [ "$(grep -c "reload: config .* applied" "$(region_run eu-west-1)/tern-replicator.log")" -gt "$n" ] && break; sleep 0.1; done
[ "$(grep -c "reload: config .* applied" "$(region_run eu-west-1)/tern-replicator.log")" -gt "$n" ] || fail "the key change was not applied"
rej0=$(region_redis eu-west-1 HGET "$(redis_key eu-west-1 rej)" revoked)
put R6
! arrives R6 4000 || fail "a change arrived over the session of a revoked key"
grep -q "peer=us-east-1 rejected a frame (revoked)" "$(region_run eu-west-1)/tern-replicator.log" ||
  fail "the replicator did not log the frames of the revoked key's session"
for _ in $(seq 1 20); do [ "$(region_redis eu-west-1 HGET "$(redis_key eu-west-1 rej)" revoked)" -gt "${rej0:-0}" ] && break; sleep 0.1; done
[ "$(region_redis eu-west-1 HGET "$(redis_key eu-west-1 rej)" revoked)" -gt "${rej0:-0}" ] || fail "revoked frames not counted"
note "the peer moves to its new key: what it wrote meanwhile arrives"
edit us-east-1 '.curve.secret_key_file = "keys/us-east-1-new.key"'
kill_daemon us-east-1 tern-region-agent
lr start-daemons us-east-1 >/dev/null || fail "restart us-east-1's agent"
arrives R6 30000 || fail "a change written while the key was revoked was lost"
put R7 && arrives R7 || fail "replication with the new key"

# regression: a stored watermark that does not parse stalled the link without a word
note "a watermark that does not parse stops the link at start-up, loudly, and loses nothing"
WM=$(redis_key eu-west-1 "wm:us-east-1:$TABLE")
kill_daemon eu-west-1 tern-replicator
pos0=$(region_redis eu-west-1 HGET "$WM" pos)
region_redis eu-west-1 HSET "$WM" pos garbage >/dev/null
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
put R8
! arrives R8 2500 || fail "applied past a watermark that does not parse"
grep -q "the watermark in .* (pos \"garbage\") is not a stream position" "$(region_run eu-west-1)/tern-replicator.log" ||
  fail "the replicator did not say why the link stopped"
kill_daemon eu-west-1 tern-replicator
region_redis eu-west-1 HSET "$WM" pos "$pos0" >/dev/null
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's replicator"
arrives R8 15000 || fail "the change did not arrive once the watermark was fixed"
assert_clean_logs
echo PASS
