#!/usr/bin/env bash
# Guarantee 5 for unauthenticated peers: an agent that claims to be eu-west-1 but holds
# a CURVE key pair us-east-1's replicator does not know (its own table store and Redis,
# the real eu-west-1 peer endpoint and server key) cannot deliver anything:
#   - none of its writes appear in us-east-1;
#   - us-east-1's replicator counts refused handshakes (rej: curve_refused > 0);
#   - the replicator keeps running and keeps replicating from the real eu-west-1.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
A=us-east-1 B=eu-west-1
ROGUE_CFG=$CLUSTER_DIR/rogue.json ROGUE_RUN=$CLUSTER_DIR/run-rogue
rogue() { "$TERN_SRC/scripts/local-region" --config "$ROGUE_CFG" --run-dir "$ROGUE_RUN" --bin "$TERN_BUILD" "$@" $B; }
trap 'rogue down >/dev/null 2>&1 || true; cluster_down' EXIT

note "a rogue $B agent with an unknown key pair, aimed at $A's replicator"
mkdir -p "$CLUSTER_DIR/rogue-keys"
"$CURVEKEYGEN" $B "$CLUSTER_DIR/rogue-keys" || fail "rogue keygen"
cmp -s "$CLUSTER_DIR/rogue-keys/$B.pub" "$CLUSTER_DIR/keys/$B.pub" && fail "the rogue key is the real one"
RDDB=$(free_port) RREDIS=$(free_port)
jq --arg ddb "http://127.0.0.1:$RDDB" --argjson redis "$RREDIS" --arg repl "tcp://127.0.0.1:$(free_port)" \
  --argjson am "$(free_port)" --argjson rm "$(free_port)" \
  '.store.endpoint = $ddb | .redis.port = $redis | .replicator.listen = $repl
   | .replicator.metrics_port = $rm | .agent.metrics_port = $am
   | .curve.secret_key_file = "rogue-keys/eu-west-1.key"' "$(region_cfg $B)" >"$ROGUE_CFG"
refused0=$(region_redis $A HGET "$(redis_key $A rej)" curve_refused); refused0=${refused0:-0}
rogue up >/dev/null || fail "rogue region up" # its agent connects at once

note "20 writes through the rogue region"
for i in $(seq 1 20); do echo "{\"PK\":{\"S\":\"ROGUE#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"evil\"}}"; done |
  "$DDBTOOL" put "http://127.0.0.1:$RDDB" "$TABLE" - 0 || fail "rogue puts"
for ((i = 0; i < 100; i++)); do
  [ "$(redis-cli -p "$RREDIS" HGET "tern:$B:acnt:$TABLE" local)" = 20 ] && break
  sleep 0.1
done
[ "$(redis-cli -p "$RREDIS" HGET "tern:$B:acnt:$TABLE" local)" = 20 ] || fail "the rogue agent did not read its writes"

note "meanwhile the real $B replicates to $A"
"$DDBTOOL" put "$(region_endpoint $B)" "$TABLE" '{"PK":{"S":"LEGIT#1"},"SK":{"S":"ITEM"},"v":{"S":"ok"}}' || fail put
"$DDBTOOL" wait "$(region_endpoint $A)" "$TABLE" "$(key_json 1 LEGIT)" v ok 10000 >/dev/null ||
  fail "the legit peer's write did not reach $A"
sleep 5 # the rogue agent keeps trying all this time
for i in $(seq 1 20); do
  rc=0; "$DDBTOOL" get "$(region_endpoint $A)" "$TABLE" "$(key_json "$i" ROGUE)" >/dev/null || rc=$?
  [ $rc = 3 ] || fail "ROGUE#$i from the unauthenticated agent is in $A (get exit $rc)"
done
refused=$(region_redis $A HGET "$(redis_key $A rej)" curve_refused); refused=${refused:-0}
note "$A refused $((refused - refused0)) handshakes"
[ "$refused" -gt "$refused0" ] || fail "$A's replicator counted no refused handshake (rej curve_refused)"
[ "$(rcnt $A $B applied)" -ge 1 ] || fail "$A applied nothing from $B"
daemon_alive $A tern-replicator || fail "$A's replicator died"
daemon_alive $B tern-region-agent || fail "$B's agent died"

note "after the attack $A still replicates from $B"
"$DDBTOOL" put "$(region_endpoint $B)" "$TABLE" '{"PK":{"S":"LEGIT#2"},"SK":{"S":"ITEM"},"v":{"S":"ok"}}' || fail put
"$DDBTOOL" wait "$(region_endpoint $A)" "$TABLE" "$(key_json 2 LEGIT)" v ok 10000 >/dev/null ||
  fail "the legit peer's write did not reach $A after the attack"
rogue down >/dev/null
wait_identical 30 $A $B || fail "regions differ"
assert_clean_logs
echo "PASS"
