#!/usr/bin/env bash
# Guarantees 1, 2 and 4 across crashes: while an application hammers us-east-1 (A)
# with puts, updates, deletes and read-modify-writes, the agents, the replicators and
# the redis-servers of both regions are killed with SIGKILL at random moments and
# restarted (Redis with its AOF, appendfsync always). Then:
#   - the regions converge (identical tables, logs fully acknowledged);
#   - no echo: eu-west-1 (B), where no application wrote, versioned no local change;
#   - no loss: unique final puts written after the crashes (in A to the loaded keys, in
#     B to keys of its own) are present with their values in both regions;
#   - a Redis outage does not flood the daemons' logs (rate-limited warnings).
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
A=us-east-1 B=eu-west-1
EA=$(region_endpoint $A) EB=$(region_endpoint $B)
SECS=${TERN_CRASH_SECONDS:-36}
RANDOM=${TERN_CRASH_SEED:-$$}

log_lines() { cat "$(region_run "$1")"/tern-*.log | grep -cE ' (warn|error) ' || true; } # warnings and errors
pause_rand() { sleep "$(awk -v r=$RANDOM 'BEGIN{printf "%.2f", 1.5 + (r % 250) / 100}')"; }
crash_daemon() { # crash_daemon REGION NAME
  note "kill -9 $1 $2"
  kill_daemon "$1" "$2" KILL
  sleep 0.$((RANDOM % 9 + 1))
  lr start-daemons "$1" >/dev/null || fail "$1: daemons did not restart after kill -9 of $2"
}
crash_redis() { # crash_redis REGION: kill -9, down ~3 s, restart from the AOF
  local before after
  note "kill -9 $1 redis-server"
  before=$(log_lines "$1")
  kill_redis "$1" KILL
  sleep 3
  restart_redis "$1"
  sleep 1
  after=$(log_lines "$1")
  note "$1: $((after - before)) warnings during the Redis outage"
  [ $((after - before)) -le 20 ] || { tail -30 "$(region_run "$1")"/tern-region-agent.log >&2;
    fail "$1: $((after - before)) warnings for a 3 s Redis outage: warnings are not rate-limited"; }
  daemon_alive "$1" tern-region-agent || fail "$1: the agent died when Redis went away"
  daemon_alive "$1" tern-replicator || fail "$1: the replicator died when Redis went away"
}

note "load in $A for ${SECS}s with crashes in both regions"
"$DDBTOOL" load "$EA" "$TABLE" --writers 3 --keys 40 --seconds "$SECS" --prefix K \
  --seed "$RANDOM" --mix 40,20,20,20 >"$CLUSTER_DIR/load.out" &
load=$!
sleep 2
crash_daemon $B tern-replicator;  pause_rand
crash_daemon $A tern-region-agent; pause_rand
crash_redis $A;                    pause_rand
crash_daemon $B tern-replicator;  pause_rand
crash_redis $B;                    pause_rand
crash_daemon $A tern-region-agent; pause_rand
crash_daemon $B tern-region-agent; pause_rand
crash_daemon $A tern-replicator
wait "$load" || fail "the load generator failed"
note "load: $(cat "$CLUSTER_DIR/load.out")"

note "writes stopped; waiting for convergence"
wait_identical 120 $A $B || fail "regions did not converge after the crashes"
note "identical: $(dump_region $A | wc -l) items; A local $(acnt $A local), B echo $(acnt $B echo)"
[ "$(acnt $B local)" -eq 0 ] || fail "eu-west-1 versioned $(acnt $B local) local changes but no application wrote there (echo)"

note "final unique puts: 40 in $A (the loaded keys), 20 in $B (new keys)"
for i in $(seq 0 39); do echo "{\"PK\":{\"S\":\"K#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"final-a-$i\"}}"; done |
  "$DDBTOOL" put "$EA" "$TABLE" - 0 || fail "final puts in $A"
for i in $(seq 0 19); do echo "{\"PK\":{\"S\":\"G#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"final-b-$i\"}}"; done |
  "$DDBTOOL" put "$EB" "$TABLE" - 0 || fail "final puts in $B"
crash_daemon $A tern-region-agent # and one more crash while they are in flight
wait_identical 60 $A $B || fail "regions did not converge after the final writes"
for r in $A $B; do
  d=$(dump_region $r)
  for i in $(seq 0 39); do
    grep -qF "\"PK\":{\"S\":\"K#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"final-a-$i\"}}" <<<"$d" ||
      fail "$r lost the final put of K#$i"
  done
  for i in $(seq 0 19); do
    grep -qF "\"PK\":{\"S\":\"G#$i\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"final-b-$i\"}}" <<<"$d" ||
      fail "$r lost the final put of G#$i"
  done
done
[ "$(acnt $B local)" -eq 20 ] || fail "eu-west-1 versioned $(acnt $B local) local changes, expected its 20 puts"
note "all 60 final puts present in both regions"
assert_clean_logs
echo "PASS"
