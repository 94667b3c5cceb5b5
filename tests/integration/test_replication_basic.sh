#!/usr/bin/env bash
# Both directions, every attribute type, put/update/delete, and no echo: a pair of
# local regions started with scripts/local-region; writes through the DynamoDB API.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
# a second table, B: the same keys in both tables must not meet (tokens, tombstones,
# versions, logs, watermarks and counters are all per table)
B=tern-test-b
cluster_init 2 ".tables += [\"$B\"]"
cluster_up
E=$(region_endpoint us-east-1) W=$(region_endpoint eu-west-1)

strip() { jq -S 'with_entries(select(.key | startswith("tern:") | not))'; }
lag_median() { # lag_median TABLE N: the median of eu-west-1's newest N lag samples of TABLE from us-east-1 (ms)
  region_redis eu-west-1 LRANGE "$(redis_key eu-west-1 "lag:us-east-1:$1")" 0 $(($2 - 1)) | awk '{print $2}' |
    sort -n | awk '{v[NR] = $1} END {print (NR ? v[int(NR / 2) + 1] : 999999)}'
}
same_item() { # same_item KEY: the item is identical (hidden attributes aside) in both regions
  local a b
  a=$("$DDBTOOL" get "$E" "$TABLE" "$1" | strip) || fail "get us-east-1 $1"
  b=$("$DDBTOOL" get "$W" "$TABLE" "$1" | strip) || fail "get eu-west-1 $1"
  [ "$a" = "$b" ] || fail "items differ for $1: us-east-1 $a eu-west-1 $b"
}

note "put in us-east-1 with every attribute type, read it in eu-west-1"
K1='{"PK":{"S":"T#1"},"SK":{"S":"ITEM"}}'
"$DDBTOOL" put "$E" "$TABLE" '{"PK":{"S":"T#1"},"SK":{"S":"ITEM"},"s":{"S":"héllo ✓"},
  "n":{"N":"12345678901234567890.12345"},"neg":{"N":"-0.5E-10"},"b":{"B":"AAEC/w=="},
  "t":{"BOOL":true},"f":{"BOOL":false},"z":{"NULL":true},
  "l":{"L":[{"S":"x"},{"N":"1"},{"L":[{"BOOL":false}]}]},
  "m":{"M":{"a":{"S":"b"},"inner":{"M":{"k":{"NS":["1","2.5"]}}}}},
  "ss":{"SS":["a","b","c"]},"ns":{"NS":["1","10","-3.25"]},"bs":{"BS":["AA==","AQ=="]},
  "ver":{"S":"app data named like ours but not hidden"}}' || fail "put"
"$DDBTOOL" wait "$W" "$TABLE" "$K1" s "héllo ✓" 10000 >/dev/null || fail "put did not reach eu-west-1"
same_item "$K1"

note "UpdateItem in eu-west-1 reaches us-east-1"
"$DDBTOOL" update "$W" "$TABLE" "$K1" 'SET s = :s ADD ns :x' '{":s":{"S":"updated"},":x":{"NS":["99"]}}' || fail update
"$DDBTOOL" wait "$E" "$TABLE" "$K1" s updated 10000 >/dev/null || fail "update did not reach us-east-1"
same_item "$K1"

note "a local overwrite of a replicated item wins over it"
"$DDBTOOL" put "$E" "$TABLE" '{"PK":{"S":"T#1"},"SK":{"S":"ITEM"},"s":{"S":"overwritten in us-east-1"}}' || fail put
"$DDBTOOL" wait "$W" "$TABLE" "$K1" s "overwritten in us-east-1" 10000 >/dev/null || fail "overwrite did not reach eu-west-1"
same_item "$K1"

note "delete in us-east-1 reaches eu-west-1"
"$DDBTOOL" delete "$E" "$TABLE" "$K1" || fail delete
"$DDBTOOL" wait "$W" "$TABLE" "$K1" - - 10000 >/dev/null || fail "delete did not reach eu-west-1"

note "the reverse direction: put and delete in eu-west-1"
K2='{"PK":{"S":"T#2"},"SK":{"S":"ITEM"}}'
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"T#2"},"SK":{"S":"ITEM"},"v":{"N":"2"}}' || fail put
"$DDBTOOL" wait "$E" "$TABLE" "$K2" v 2 10000 >/dev/null || fail "put did not reach us-east-1"
same_item "$K2"
"$DDBTOOL" delete "$W" "$TABLE" "$K2" || fail delete
"$DDBTOOL" wait "$E" "$TABLE" "$K2" - - 10000 >/dev/null || fail "delete did not reach us-east-1"

note "two tables: the same key in both, written and deleted in either region, stays in its table"
K3='{"PK":{"S":"T#3"},"SK":{"S":"ITEM"}}'
"$DDBTOOL" put "$E" "$B" '{"PK":{"S":"T#3"},"SK":{"S":"ITEM"},"v":{"S":"b from us-east-1"}}' || fail "put $B"
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"T#3"},"SK":{"S":"ITEM"},"v":{"S":"a from eu-west-1"}}' || fail "put $TABLE"
"$DDBTOOL" wait "$W" "$B" "$K3" v "b from us-east-1" 10000 >/dev/null || fail "$B's put did not reach eu-west-1"
"$DDBTOOL" wait "$E" "$TABLE" "$K3" v "a from eu-west-1" 10000 >/dev/null || fail "$TABLE's put did not reach us-east-1"
# a delete in one table leaves a tombstone for that table only: a later put of the key in
# the other table replicates
"$DDBTOOL" delete "$E" "$TABLE" "$K3" || fail "delete $TABLE"
"$DDBTOOL" wait "$W" "$TABLE" "$K3" - - 10000 >/dev/null || fail "$TABLE's delete did not reach eu-west-1"
for r in us-east-1 eu-west-1; do
  "$DDBTOOL" get "$(region_endpoint $r)" "$B" "$K3" | jq -e '.v.S == "b from us-east-1"' >/dev/null ||
    fail "$r: the delete in $TABLE removed or changed the key in $B"
done
"$DDBTOOL" put "$W" "$B" '{"PK":{"S":"T#3"},"SK":{"S":"ITEM"},"v":{"S":"b from eu-west-1"}}' || fail "put $B"
"$DDBTOOL" wait "$E" "$B" "$K3" v "b from eu-west-1" 10000 >/dev/null || fail "$B's second put did not reach us-east-1"
wait_converged 30 us-east-1 eu-west-1 || fail "regions differ (two tables)"
for r in us-east-1 eu-west-1; do
  rc=0; "$DDBTOOL" get "$(region_endpoint $r)" "$TABLE" "$K3" >/dev/null || rc=$?
  [ $rc = 3 ] || fail "$r: the key is back in $TABLE (ddbtool get: $rc)"
done
bcnt() { TABLE=$B acnt "$@"; }     # bcnt REGION FIELD: agent counter of table B
brcnt() { TABLE=$B rcnt "$@"; }    # brcnt REGION SOURCE FIELD: replicator counter of table B
[ "$(bcnt us-east-1 local)" = 1 ] && [ "$(bcnt eu-west-1 local)" = 1 ] ||
  fail "local changes in $B: us-east-1 $(bcnt us-east-1 local), eu-west-1 $(bcnt eu-west-1 local), expected 1 each"
[ "$(brcnt eu-west-1 us-east-1 applied)" = 1 ] && [ "$(brcnt us-east-1 eu-west-1 applied)" = 1 ] ||
  fail "changes applied to $B: $(brcnt eu-west-1 us-east-1 applied) in eu-west-1, $(brcnt us-east-1 eu-west-1 applied) in us-east-1, expected 1 each"
region_redis us-east-1 HGET "$(redis_key us-east-1 "wm:eu-west-1:$B")" pos | grep -q . || fail "no watermark for $B in us-east-1"
[ "$(acnt us-east-1 local)" = 4 ] || fail "us-east-1 counted $(acnt us-east-1 local) local changes in $TABLE, expected 4"

note "a tombstone is per table: an older put in $B, delivered after a newer delete of its key in $TABLE, is applied"
K4='{"PK":{"S":"T#4"},"SK":{"S":"ITEM"}}'
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"T#4"},"SK":{"S":"ITEM"},"v":{"S":"a"}}' || fail "put $TABLE"
"$DDBTOOL" wait "$E" "$TABLE" "$K4" v a 10000 >/dev/null || fail "$TABLE's put did not reach us-east-1"
ctl pause --from us-east-1 --to eu-west-1 >/dev/null || fail "pause"
sleep 0.7 # the shipper reads the pause every 500 ms
l0=$(bcnt us-east-1 local)
"$DDBTOOL" put "$E" "$B" '{"PK":{"S":"T#4"},"SK":{"S":"ITEM"},"v":{"S":"b, older than the delete"}}' || fail "put $B"
for ((i = 0; i < 100; i++)); do [ "$(bcnt us-east-1 local)" -gt "$l0" ] && break; sleep 0.1; done
[ "$(bcnt us-east-1 local)" -gt "$l0" ] || fail "us-east-1's agent did not version the put in $B"
"$DDBTOOL" delete "$W" "$TABLE" "$K4" || fail "delete $TABLE"
"$DDBTOOL" wait "$E" "$TABLE" "$K4" - - 10000 >/dev/null || fail "$TABLE's delete did not reach us-east-1"
"$DDBTOOL" get "$W" "$B" "$K4" >/dev/null 2>&1 && fail "the pause let the put in $B through"
lost0=$(brcnt eu-west-1 us-east-1 lost)
ctl resume --from us-east-1 --to eu-west-1 >/dev/null || fail "resume"
"$DDBTOOL" wait "$W" "$B" "$K4" v "b, older than the delete" 10000 >/dev/null ||
  fail "the put in $B was lost to the delete of its key in $TABLE (lost: $lost0 -> $(brcnt eu-west-1 us-east-1 lost))"

note "a commit wakes its own table's link: 10 writes in $B cross without waiting for the 500 ms housekeeping pass"
for i in $(seq 1 10); do
  "$DDBTOOL" put "$E" "$B" "{\"PK\":{\"S\":\"W#$i\"},\"SK\":{\"S\":\"ITEM\"},\"i\":{\"N\":\"$i\"}}" || fail "put $B"
  sleep 0.15 # the writes fall at every phase of the housekeeping pass
done
"$DDBTOOL" wait "$W" "$B" '{"PK":{"S":"W#10"},"SK":{"S":"ITEM"}}' i 10 10000 >/dev/null || fail "the writes in $B did not arrive"
# woken only by the housekeeping pass, a change would wait 250 ms on average
m=$(lag_median "$B" 10)
note "$B: median lag of the 10 writes $m ms (versioned in us-east-1 -> applied in eu-west-1)"
[ "$m" -lt 150 ] || fail "$B's changes waited $m ms (median) to be shipped: was the link woken?"

note "no echo: a burst of N writes in us-east-1 is shipped exactly N times"
N=200
before_e=$(region_redis us-east-1 HGET "tern:us-east-1:acnt:$TABLE" local); before_e=${before_e:-0}
before_w=$(region_redis eu-west-1 HGET "tern:eu-west-1:acnt:$TABLE" local); before_w=${before_w:-0}
calls() { # calls CMD: how many times us-east-1's Redis ran CMD since it started
  region_redis us-east-1 INFO commandstats | tr -d '\r' | sed -nE "s/^cmdstat_$1:calls=([0-9]+),.*/\1/p" | grep . || echo 0
}
xr0=$(calls xrange) ex0=$(calls exec) t0=$SECONDS
# one write every 20 ms or so, each after the one before was acknowledged
for i in $(seq 1 $N); do echo "{\"PK\":{\"S\":\"E#$i\"},\"SK\":{\"S\":\"ITEM\"},\"i\":{\"N\":\"$i\"}}"; done |
  "$DDBTOOL" put "$E" "$TABLE" - 20 || fail "burst"
"$DDBTOOL" wait "$W" "$TABLE" "{\"PK\":{\"S\":\"E#$N\"},\"SK\":{\"S\":\"ITEM\"}}" i $N 20000 >/dev/null || fail "burst did not arrive"
wait_converged 30 us-east-1 eu-west-1 || fail "regions differ after the burst"
m=$(lag_median "$TABLE" $N)
note "$TABLE: median lag of the burst $m ms"
[ "$m" -lt 150 ] || fail "$TABLE's changes waited $m ms (median) to be shipped: was the link woken?"
sleep 1 # let both agents read their streams to the end
after_e=$(region_redis us-east-1 HGET "tern:us-east-1:acnt:$TABLE" local)
after_w=$(region_redis eu-west-1 HGET "tern:eu-west-1:acnt:$TABLE" local)
[ $((after_e - before_e)) -eq $N ] || fail "us-east-1 versioned $((after_e - before_e)) local changes, expected $N"
[ $((after_w - before_w)) -eq 0 ] || fail "eu-west-1 shipped $((after_w - before_w)) changes back (echo)"
echoes=$(region_redis eu-west-1 HGET "tern:eu-west-1:acnt:$TABLE" echo)
[ "${echoes:-0}" -ge $N ] || fail "eu-west-1 saw ${echoes:-0} echoes, expected at least $N"
applied=$(region_redis eu-west-1 HGET "tern:eu-west-1:cnt:us-east-1:$TABLE" applied)
note "us-east-1 local=$((after_e - before_e)) eu-west-1 applied=$applied echoes=$echoes local=$((after_w - before_w))"
# the shipper reads the change log once per batch: with one peer, each tailer commit (an
# EXEC) is read once by the committed table's link, plus one read per link and
# housekeeping pass (2 links, 2 passes a second); it used to read the log again after the
# batch (finding it drained) and once more after each acknowledgement, and a commit woke
# the links of every table
xr=$(( $(calls xrange) - xr0 )) ex=$(( $(calls exec) - ex0 )) secs=$(( SECONDS - t0 + 1 ))
note "us-east-1's Redis: $xr change-log reads (XRANGE), $ex commits (EXEC) in ${secs} s"
[ "$xr" -le $(( ex + 4 * secs + 10 )) ] || fail "the shipper read the change log $xr times for $ex commits in ${secs} s"

note "a backlog of echoes in small full pages is read at once, not a page per poll pause"
# eu-west-1's agent is down while a second of writes (over 40 keys) is applied there, then
# restarts with agent.batch_max 2 and a 2 s pause: read one page per pause, 20 or more
# echoes would take 20 s or more
kill_daemon eu-west-1 tern-region-agent
cfg=$(region_cfg eu-west-1)
jq '.agent.batch_max = 2 | .agent.idle_poll_ms = 2000' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
loaded=$("$DDBTOOL" load "$E" "$TABLE" --writers 2 --keys 40 --seconds 1 --prefix P --seed 7 --mix 100,0,0,0) ||
  fail "backlog writes"
n=$(sed -E 's/.*acked=([0-9]+).*/\1/' <<<"$loaded")
[ "$n" -ge 20 ] || fail "only $n writes for the backlog ($loaded)"
ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 30 --table "$TABLE" >/dev/null || fail "writes did not arrive"
lr start-daemons eu-west-1 >/dev/null || fail "restart eu-west-1's agent"
ctl wait-caught-up --from eu-west-1 --to us-east-1 --timeout 10 --table "$TABLE" >/dev/null ||
  fail "eu-west-1's agent did not read its $n echoes in 10 s (a page per 2 s pause?)"
echoes2=$(region_redis eu-west-1 HGET "tern:eu-west-1:acnt:$TABLE" echo)
[ "${echoes2:-0}" -ge $((echoes + n)) ] || fail "eu-west-1 counted $((echoes2 - echoes)) echoes of $n"
after_w2=$(region_redis eu-west-1 HGET "tern:eu-west-1:acnt:$TABLE" local)
[ "$after_w2" = "$after_w" ] || fail "eu-west-1 shipped $((after_w2 - after_w)) of the echoes back"

# Regression: an item whose tern:ver lay far in the future (not written by Tern: an
# application or a copy tool wrote it) carried us-east-1's clock there when its agent read
# it in an old image, for good (the clock is saved): eu-west-1 held back every later
# change of us-east-1 as clock skew.
note "a tern:ver written by an application for the year 2100 does not carry us-east-1's clock there"
FUT=4102444800000-000000-us-east-1
EUS=$(region_endpoint us-east-1) EEU=$(region_endpoint eu-west-1)
"$DDBTOOL" put "$EUS" "$TABLE" "{\"PK\":{\"S\":\"FUT#1\"},\"SK\":{\"S\":\"ITEM\"},\"v\":{\"S\":\"a\"},\"tern:ver\":{\"S\":\"$FUT\"}}" ||
  fail "put FUT#1"
"$DDBTOOL" put "$EUS" "$TABLE" '{"PK":{"S":"FUT#1"},"SK":{"S":"ITEM"},"v":{"S":"b"}}' || fail "put FUT#1 again"
"$DDBTOOL" put "$EUS" "$TABLE" '{"PK":{"S":"FUT#2"},"SK":{"S":"ITEM"},"v":{"S":"after"}}' || fail "put FUT#2"
"$DDBTOOL" wait "$EEU" "$TABLE" "$(key_json 2 FUT)" v after 15000 >/dev/null ||
  fail "a change made after the future version was read did not reach eu-west-1 (held back: $(grep -c 'held back' "$(region_run eu-west-1)/tern-replicator.log") lines)"
"$DDBTOOL" wait "$EEU" "$TABLE" "$(key_json 1 FUT)" v b 5000 >/dev/null || fail "FUT#1 does not hold b in eu-west-1"
wait_log "$(region_run us-east-1)/tern-region-agent.log" "version $FUT is [0-9]+ ms ahead" 5 ||
  fail "us-east-1's agent did not log the version from the future"

assert_clean_logs
echo "PASS"
