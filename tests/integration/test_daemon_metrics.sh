#!/usr/bin/env bash
# /metrics of both daemons scraped with curl during replication: valid Prometheus text,
# counters and the lag histograms moving, batches sent from memory (the tailer's commits)
# and, the first after the start, from Redis; /healthz answers 200. Then the shipper's window:
# with the peer's replicator stopped (SIGSTOP), us-east-1's agent keeps exactly
# agent.max_inflight_batches (80 here) batches in flight, no more and no fewer (a window
# capped below the config, 64 before, failed here). ZeroMQ's heartbeat then drops the
# connection, which discards those batches: the agent gives them up at once, and resends
# them as soon as the replicator runs again, not an ack timeout later (2 minutes here;
# before, only the timeout resent them). The daemons name their threads. Last, echo
# polls: while only echoes of replicated writes arrive, eu-west-1's agent reads its stream
# every agent.echo_poll_ms (200 ms here), not every idle_poll_ms (20 ms: before that key,
# 100-200 polls in the 4 s measured), and a local write made meanwhile still replicates.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
WINDOW=80
ECHO_POLL=200
# polls 1 ms apart while writes come, so that each write is a batch of its own or nearly
cluster_init 2 ".agent.max_inflight_batches = $WINDOW | .agent.ack_timeout_ms = 120000 | .agent.active_poll_ms = 1 | .agent.echo_poll_ms = $ECHO_POLL"
cluster_up
E=$(region_endpoint us-east-1)
amP=$(jq .agent.metrics_port "$(region_cfg us-east-1)") rmS=$(jq .replicator.metrics_port "$(region_cfg eu-west-1)")

scrape() { curl -sf --max-time 5 "http://127.0.0.1:$1/metrics"; }
valid() { # every line is a comment or "name{labels} value"; every family has HELP and TYPE
  awk '
    /^# HELP / { help[$3] = 1; next }
    /^# TYPE / { type[$3] = $4; next }
    /^#/ { next }
    /^$/ { next }
    { if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+]?([0-9.]+([eE][-+]?[0-9]+)?|NaN|Inf)$/) { print "bad line: " $0; bad = 1 }
      name = $0; sub(/[{ ].*/, "", name); base = name; sub(/_(bucket|sum|count)$/, "", base)
      if (!(name in type) && !(base in type)) { print "no TYPE for " name; bad = 1 } }
    END { exit bad }'
}
val() { # val TEXT NAME LABELFILTER: sum of the matching samples
  awk -v n="$2" -v f="$3" 'index($0, n) == 1 && index($0, f) { s += $NF } END { print s + 0 }' <<<"$1"
}

a0=$(scrape "$amP") || fail "agent /metrics"
r0=$(scrape "$rmS") || fail "replicator /metrics"
valid <<<"$a0" || fail "agent metrics are not valid Prometheus text"
valid <<<"$r0" || fail "replicator metrics are not valid Prometheus text"
# 30 ms apart: a commit (and a batch) each, or nearly
for i in $(seq 1 20); do echo "{\"PK\":{\"S\":\"M#$i\"},\"SK\":{\"S\":\"ITEM\"}}"; done | "$DDBTOOL" put "$E" "$TABLE" - 30
"$DDBTOOL" wait "$(region_endpoint eu-west-1)" "$TABLE" '{"PK":{"S":"M#20"},"SK":{"S":"ITEM"}}' PK 'M#20' 20000 >/dev/null || fail "writes did not replicate"
sleep 1
a1=$(scrape "$amP") r1=$(scrape "$rmS")
valid <<<"$a1" && valid <<<"$r1" || fail "metrics invalid after writes"
[ "$(val "$a1" tern_agent_changes_total 'kind="local"')" -ge $(( $(val "$a0" tern_agent_changes_total 'kind="local"') + 20 )) ] \
  || fail "agent local changes did not move by 20"
[ "$(val "$a1" tern_agent_shipped_changes_total 'peer="eu-west-1"')" -ge 20 ] || fail "agent shipped counter did not move"
[ "$(val "$r1" tern_replicator_changes_total 'result="applied"')" -ge $(( $(val "$r0" tern_replicator_changes_total 'result="applied"') + 20 )) ] \
  || fail "replicator applied counter did not move by 20"
[ "$(val "$r1" tern_replicator_lag_ms_count 'source="us-east-1"')" -ge 20 ] || fail "lag histogram did not move"
[ "$(val "$r1" tern_replicator_receive_lag_ms_count 'source="us-east-1"')" -ge 20 ] || fail "receive-lag histogram did not move"
# the shipper sends what the tailer just committed from memory (logcache.h); the first
# batch after the start comes from Redis (the log was empty before the first commit, so
# its chunk has no prev, and the link's position, 0-0, is not covered)
mem=$(val "$a1" tern_agent_batches_total 'from="memory"') red=$(val "$a1" tern_agent_batches_total 'from="redis"')
note "batches sent: $mem from memory, $red from Redis"
[ "$red" -ge 1 ] || fail "no batch read from Redis: the first after the start must be"
[ "$mem" -ge 10 ] && [ "$mem" -gt "$red" ] || fail "$mem batches from memory, $red from Redis, for 20 writes 30 ms apart: most should come from memory"
[ "$(val "$r1" tern_store_requests_total 'api="table"')" -gt 0 ] || fail "store request counter missing"
grep -q '^tern_build_info{' <<<"$a1" || fail "no build info"
curl -sf "http://127.0.0.1:$amP/healthz" >/dev/null || fail "agent /healthz"
curl -sf "http://127.0.0.1:$rmS/healthz" >/dev/null || fail "replicator /healthz"
# the daemons' threads carry names (top -H, ps -L): one line of each name listed
threads() { cat /proc/"$(cat "$(region_run "$1")/$2.pid")"/task/*/comm | sort -u | tr '\n' ' '; }
for want in tern-tailer tern-shipper; do
  [[ " $(threads us-east-1 tern-region-agent)" == *" $want "* ]] || fail "no agent thread named $want: $(threads us-east-1 tern-region-agent)"
done
for want in tern-apply-0 tern-apply-3 tern-zap; do
  [[ " $(threads eu-west-1 tern-replicator)" == *" $want "* ]] || fail "no replicator thread named $want: $(threads eu-west-1 tern-replicator)"
done

note "the window: eu-west-1's replicator stopped, 300 writes one by one in us-east-1"
inflight() { val "$(scrape "$amP")" tern_agent_inflight_batches 'peer="eu-west-1"'; }
no_inflight() { # no_inflight SECS: 0 once no batch is in flight, 1 if some still are after SECS
  local i
  for ((i = 0; i < $1 * 10; i++)); do [ "$(inflight)" -eq 0 ] && return 0; sleep 0.1; done
  return 1
}
signal_daemon eu-west-1 tern-replicator STOP
t0=$SECONDS
# ZeroMQ's heartbeat (3 s without an answer) drops the connection: sample before that
# (the gauge is refreshed every 500 ms), until the window shows full
( for _ in $(seq 1 60); do n=$(inflight); echo "$n"; [ "$n" -ge $WINDOW ] && break; sleep 0.05; done \
    >"$CLUSTER_DIR/inflight" ) &
sampler=$!
for i in $(seq 1 300); do key_json "$i" WIN; done |
  "$DDBTOOL" put "$E" "$TABLE" - 1
wait $sampler
most=$(sort -n "$CLUSTER_DIR/inflight" | tail -1)
[ "$most" -le $WINDOW ] || fail "$most batches in flight, over the window of $WINDOW"
[ "$most" -eq $WINDOW ] || fail "the window never filled: at most $most batches in flight of $WINDOW ($((SECONDS - t0)) s)"
note "the window filled to $WINDOW after $(wc -l <"$CLUSTER_DIR/inflight") samples"
no_inflight 10 || fail "$(inflight) batches still counted in flight 10 s after the replicator stopped (the connection dropped)"
grep -q "resending from .* (the connection to the peer dropped with batches in flight)" \
  "$(region_run us-east-1)/tern-region-agent.log" || fail "the agent did not say it gave up the window when the connection dropped"
signal_daemon eu-west-1 tern-replicator CONT
"$DDBTOOL" wait "$(region_endpoint eu-west-1)" "$TABLE" "$(key_json 300 WIN)" PK 'WIN#300' 20000 \
  >/dev/null || fail "the writes held while the replicator was stopped did not arrive within 20 s of its return"
wait_identical 60 us-east-1 eu-west-1 || fail "regions differ after the window drained"
no_inflight 5 || fail "batches still in flight after catching up: $(inflight)"

note "echo polls: 800 writes in us-east-1, about 80 a second; eu-west-1's agent polls while they arrive"
W=$(region_endpoint eu-west-1)
amW=$(jq .agent.metrics_port "$(region_cfg eu-west-1)")
for i in $(seq 1 800); do key_json "$i" ECHO; done | "$DDBTOOL" put "$E" "$TABLE" - 10 &
writer=$!
"$DDBTOOL" wait "$W" "$TABLE" "$(key_json 20 ECHO)" PK 'ECHO#20' 20000 >/dev/null || fail "the writes did not replicate"
sleep 1
w0=$(scrape "$amW") ms0=$(date +%s%3N)
sleep 4
w1=$(scrape "$amW") ms1=$(date +%s%3N)
kill -0 $writer 2>/dev/null || fail "the writer ended before the polls were counted: no steady flow of echoes to measure"
polls=$(( $(val "$w1" tern_store_requests_total 'api="streams"') - $(val "$w0" tern_store_requests_total 'api="streams"') ))
echoes=$(( $(val "$w1" tern_agent_changes_total 'kind="echo"') - $(val "$w0" tern_agent_changes_total 'kind="echo"') ))
note "$polls stream requests and $echoes echoes read in $((ms1 - ms0)) ms"
[ "$echoes" -ge 50 ] || fail "only $echoes echoes read in $((ms1 - ms0)) ms: the flow to measure was not there"
# one poll per ECHO_POLL ms; twice that and 10 more, for the counters (published every
# 500 ms, AGENT_HOUSEKEEP_MS), a shard rediscovery (2 requests), and the empty pages of a
# pause in the writes (each followed by idle_poll_ms, 20 ms); still a fraction of the old count
most=$(( 2 * (ms1 - ms0) / ECHO_POLL + 10 ))
[ "$polls" -le "$most" ] || fail "$polls stream requests in $((ms1 - ms0)) ms of echoes alone: more than $most, one per agent.echo_poll_ms ($ECHO_POLL)"
note "a local write in eu-west-1 while echoes arrive"
"$DDBTOOL" put "$W" "$TABLE" "$(key_json 1 ECHOLOCAL)" >/dev/null || fail "local put in eu-west-1"
"$DDBTOOL" wait "$E" "$TABLE" "$(key_json 1 ECHOLOCAL)" PK 'ECHOLOCAL#1' 10000 >/dev/null \
  || fail "a local write in eu-west-1 did not replicate while echoes arrived"
wait $writer || fail "the writer in us-east-1 failed"
wait_identical 60 us-east-1 eu-west-1 || fail "regions differ after the echo polls"
assert_clean_logs
echo PASS
