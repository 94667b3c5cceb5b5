#!/usr/bin/env bash
# Guarantee 1 (convergence) under contention: several writers per region hammer the
# same 30 keys with puts, updates, deletes and read-modify-writes (which copy tern:ver
# and tern:wid back, so echo detection must not be fooled) concurrently in every
# region; once writes stop and the logs drain, every region's table must hold exactly
# the same items (tern:* aside), and most keys must exist (only deletes remove one). Run
# with 2 regions, then with 3 whose replicators apply in three ways (with and without
# transactions, puts side by side or one by one).
# Also a bound on echoes: an agent never versions more local changes than the
# application's acknowledged writes in its region.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
SECS=${TERN_CONVERGENCE_SECONDS:-20}

round() { # round NREGIONS [JQ]
  local n=$1 r i pids=() acked local_n
  cluster_init "$n" "${2:-.}"
  cluster_up
  note "$n regions: 3 writers per region on 30 shared keys for ${SECS}s${2:+ ($2)}"
  i=0
  for r in "${CLUSTER_REGIONS[@]}"; do
    "$DDBTOOL" load "$(region_endpoint "$r")" "$TABLE" --writers 3 --keys 30 --seconds "$SECS" \
      --prefix K --seed $((1000 + i)) --mix 40,20,15,25 >"$CLUSTER_DIR/load-$r.out" &
    pids+=($!)
    i=$((i + 1))
  done
  for i in "${pids[@]}"; do wait "$i" || fail "a load generator failed"; done
  for r in "${CLUSTER_REGIONS[@]}"; do
    note "$r load: $(cat "$CLUSTER_DIR/load-$r.out")"
    acked=$(sed -E 's/.*acked=([0-9]+).*/\1/' "$CLUSTER_DIR/load-$r.out")
    [ "$acked" -ge 100 ] || fail "$r: only $acked writes acknowledged; the load did not run"
  done
  note "writes stopped; waiting for the regions to drain and converge"
  wait_identical 120 "${CLUSTER_REGIONS[@]}" || fail "$n regions did not converge"
  local items
  items=$(dump_region "${CLUSTER_REGIONS[0]}" | wc -l)
  note "identical: $items items in every region"
  # and to the right state: only deletes (15% of the writes) remove a key, so about 85% of
  # the 30 keys exist at the end (23-29 measured). Regression: repairs by an agent behind
  # its stream restored stale states over newer writes, and after 20 s 0-3 keys were left,
  # the same in every region
  [ "$items" -ge 15 ] || fail "$n regions agree on $items of 30 keys; about 25 should exist"
  if "$TERNCTL" --help 2>&1 | grep -q '^  verify'; then
    ctl verify --regions "$(IFS=,; echo "${CLUSTER_REGIONS[*]}")" >/dev/null || fail "ternctl verify disagrees"
  fi
  for r in "${CLUSTER_REGIONS[@]}"; do
    acked=$(sed -E 's/.*acked=([0-9]+).*/\1/' "$CLUSTER_DIR/load-$r.out")
    local_n=$(acnt "$r" local)
    note "$r: acked $acked, local $local_n, echo $(acnt "$r" echo), repaired $(acnt "$r" repaired), held $(acnt "$r" held)"
    [ "$local_n" -le "$acked" ] || fail "$r versioned $local_n local changes for $acked acknowledged writes (echo)"
    [ "$local_n" -gt 0 ] || fail "$r versioned no local change"
  done
  assert_clean_logs
  cluster_down
}

round 2
# the regions apply differently (the defaults: transactions for a backlog, puts 4 side by
# side; no transactions, 8 side by side; one by one) and must still agree
round 3 'if .region == "eu-west-1" then .replicator.transactions = 0 | .replicator.parallel_puts = 8
  elif .region != "us-east-1" then .replicator.parallel_puts = 1 else . end'
echo "PASS"
