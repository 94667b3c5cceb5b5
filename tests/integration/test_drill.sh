#!/usr/bin/env bash
# The main job in short form: every scenario of scripts/drill at a small rate and
# duration, on free ports. Fails if a scenario loses a change, leaves a difference or
# cannot prove catch-up (the drill exits non-zero then), or the report is incomplete.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
TABLE=demo-ecommerce-freetier
cluster_init 2
out=$CLUSTER_DIR/drill
rc=0
"$TERN_SRC/scripts/drill" --config-dir "$CLUSTER_DIR" --out "$out" --rate 20 --duration 3 \
  --split-seconds 3 --detect-ms 1000 >"$CLUSTER_DIR/drill.out" 2>&1 || rc=$?
cat "$CLUSTER_DIR/drill.out"
[ "$rc" -eq 0 ] || fail "drill exited $rc"
r=$out/report.json
jq -e '.ok == true and .planned.lost == 0 and .unplanned.lost == 0 and
       .unplanned.at_risk_delivered == .unplanned.at_risk and .unplanned.rto_ms > 0 and
       .planned.switch_ms > 0 and .split.conflicts_resolved >= 0 and .lag_ms.p50 > 0' "$r" >/dev/null \
  || fail "report incomplete: $(cat "$r")"
grep -q '<svg' "$out/lag.svg" && grep -q 'failure' "$out/lag.svg" && grep -q 'heal' "$out/lag.svg" \
  || fail "lag.svg lacks the plot or its failure/heal marks"
for f in "$out"/*/tern-*.log; do
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f"; then fail "sanitizer report in $f"; fi
done
echo PASS
