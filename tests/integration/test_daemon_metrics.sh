#!/usr/bin/env bash
# /metrics of both daemons scraped with curl during replication: valid Prometheus text,
# counters and the lag histogram moving; /healthz answers 200.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
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
for i in $(seq 1 20); do echo "{\"PK\":{\"S\":\"M#$i\"},\"SK\":{\"S\":\"ITEM\"}}"; done | "$DDBTOOL" put "$E" "$TABLE" - 0
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
[ "$(val "$r1" tern_store_requests_total 'api="table"')" -gt 0 ] || fail "store request counter missing"
grep -q '^tern_build_info{' <<<"$a1" || fail "no build info"
curl -sf "http://127.0.0.1:$amP/healthz" >/dev/null || fail "agent /healthz"
curl -sf "http://127.0.0.1:$rmS/healthz" >/dev/null || fail "replicator /healthz"
assert_clean_logs
echo PASS
