#!/usr/bin/env bash
# Both daemons under a fake service manager (NOTIFY_SOCKET is a datagram socket of this
# test): READY=1 after start, WATCHDOG=1 at the configured period, RELOADING=1 then
# READY=1 on SIGHUP, a bad config on SIGHUP keeps the daemon running with the old one,
# STOPPING=1 on SIGTERM and exit 0. Regression: the agent stopped feeding the watchdog
# when a thread's loop had not turned for 10 s, though one store call may take 23 s (the
# store frozen or unreachable): systemd restarted a daemon that was only waiting. Its
# store frozen for 12 s, the agent must keep feeding it. Regression: a reload of the
# replicator waited for its apply workers without feeding the watchdog (a store call may
# take 23 s): with a change waiting on the frozen store, it must keep feeding it.
set -euo pipefail
. "$TERN_SRC/tests/lib/cluster.sh"
cluster_init 2
cluster_up
listen_pid="" pid=""
DDB_PID=$(cat "$(region_run eu-west-1)/ddb-${CL_DDB[eu-west-1]}.pid")
# the daemon under test is not in the cluster's pid files: stopped here too when a check fails
trap 'kill -CONT $DDB_PID 2>/dev/null; kill $listen_pid $pid 2>/dev/null || true; cluster_down' EXIT

for d in tern-replicator tern-region-agent; do
  note "$d under a notification socket"
  sub=$([ $d = tern-replicator ] && echo replicator || echo region-agent)
  kill_daemon eu-west-1 $d
  sock=$CLUSTER_DIR/notify-$d.sock msgs=$CLUSTER_DIR/notify-$d.txt
  python3 "$TERN_SRC/tests/integration/notify_listen.py" "$sock" "$msgs" 60 &
  listen_pid=$!
  for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
  cfg=$CLUSTER_DIR/eu-west-1-copy.json
  cp "$(region_cfg eu-west-1)" "$cfg"
  log=$CLUSTER_DIR/$d-notify.log
  NOTIFY_SOCKET=$sock WATCHDOG_USEC=1000000 "$TERN_BUILD/$sub/$d" --config "$cfg" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do grep -q 'READY=1' "$msgs" 2>/dev/null && break; sleep 0.1; done
  grep -q 'READY=1' "$msgs" || fail "$d: no READY=1"
  sleep 3
  wd=$(grep -c 'WATCHDOG=1' "$msgs" || true)
  [ "$wd" -ge 4 ] || fail "$d: $wd WATCHDOG=1 in 3 s with WatchdogSec=1s (want >= 4: every half period)"
  if [ $d = tern-region-agent ]; then
    note "$d: eu-west-1's store frozen for 12 s (SIGSTOP), past the 10 s stall limit"
    kill -STOP "$DDB_PID"
    sleep 12
    wd2=$(grep -c 'WATCHDOG=1' "$msgs" || true)
    kill -CONT "$DDB_PID"
    # the agent reads its stream again (a write in eu-west-1 is versioned) before the reload
    local0=$(acnt eu-west-1 local)
    "$DDBTOOL" put "$(region_endpoint eu-west-1)" "$TABLE" '{"PK":{"S":"SD#1"},"SK":{"S":"ITEM"}}' || fail "put in eu-west-1"
    for _ in $(seq 1 300); do [ "$(acnt eu-west-1 local)" -gt "$local0" ] && break; sleep 0.1; done
    [ "$(acnt eu-west-1 local)" -gt "$local0" ] || fail "$d did not read its stream again within 30 s of the store's thaw"
    ! grep -q 'not feeding the watchdog' "$log" ||
      fail "$d stopped feeding the watchdog while it waited on its store: $(grep -m1 'not feeding' "$log")"
    [ $((wd2 - wd)) -ge 16 ] || fail "$d: $((wd2 - wd)) WATCHDOG=1 in the 12 s its store was frozen (want >= 16)"
  fi
  if [ $d = tern-replicator ]; then
    note "$d: SIGHUP while a change waits on eu-west-1's frozen store: the reload's drain feeds the watchdog"
    kill -STOP "$DDB_PID"
    # the apply worker adds the change's echo token, then waits on the store
    pend=$(redis_key eu-west-1 "pend:$TABLE:$(printf '%s' "$(key_json drain SD)" | sha256sum | cut -c1-64)")
    "$DDBTOOL" put "$(region_endpoint us-east-1)" "$TABLE" '{"PK":{"S":"SD#drain"},"SK":{"S":"ITEM"},"v":{"S":"1"}}' ||
      fail "put in us-east-1"
    for _ in $(seq 1 100); do [ "$(region_redis eu-west-1 SCARD "$pend")" != 0 ] && break; sleep 0.1; done
    [ "$(region_redis eu-west-1 SCARD "$pend")" != 0 ] || fail "eu-west-1's replicator did not take the change within 10 s"
    r0=$(grep -c 'READY=1' "$msgs" || true) n0=$(grep -c 'WATCHDOG=1' "$msgs" || true)
    kill -HUP "$pid"
    sleep 4
    n1=$(grep -c 'WATCHDOG=1' "$msgs" || true)
    kill -CONT "$DDB_PID"
    grep -q 'waiting for 1 change(s) being applied' "$log" || fail "$d: the reload did not wait for a change on the frozen store"
    [ $((n1 - n0)) -ge 6 ] || fail "$d: $((n1 - n0)) WATCHDOG=1 in the 4 s its reload waited for the apply workers (want >= 6)"
    for _ in $(seq 1 300); do [ "$(grep -c 'READY=1' "$msgs")" -gt "$r0" ] && break; sleep 0.1; done
    [ "$(grep -c 'READY=1' "$msgs")" -gt "$r0" ] || fail "$d: no READY=1 within 30 s of the store's thaw"
    "$DDBTOOL" wait "$(region_endpoint eu-west-1)" "$TABLE" "$(key_json drain SD)" v 1 30000 >/dev/null ||
      fail "$d: the change did not reach eu-west-1 after the thaw"
  fi
  r0=$(grep -c 'READY=1' "$msgs" || true)
  kill -HUP "$pid"
  for _ in $(seq 1 100); do [ "$(grep -c 'READY=1' "$msgs")" -gt "$r0" ] && break; sleep 0.1; done
  grep -q 'RELOADING=1' "$msgs" || fail "$d: no RELOADING=1 after SIGHUP"
  [ "$(grep -c 'READY=1' "$msgs")" -gt "$r0" ] || fail "$d: no READY=1 after the reload"
  note "$d: a bad config on SIGHUP is refused and the daemon keeps running"
  jq '.agent.idle_poll_ms = "fast"' "$cfg" >"$cfg.tmp" && mv "$cfg.tmp" "$cfg"
  kill -HUP "$pid"; sleep 1
  kill -0 "$pid" || fail "$d died on a bad config at SIGHUP"
  grep -q 'reload:.*agent.idle_poll_ms.*keeping the running config' "$log" || fail "$d: no error line naming the field on a bad reload"
  kill -TERM "$pid"
  rc=0; wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "$d exited $rc on SIGTERM"
  pid=""
  grep -q 'STOPPING=1' "$msgs" || fail "$d: no STOPPING=1 on SIGTERM"
  kill "$listen_pid" 2>/dev/null || true; wait "$listen_pid" 2>/dev/null || true; listen_pid=""
  lr start-daemons eu-west-1 >/dev/null || fail "restart daemons"
done
assert_clean_logs
for f in "$CLUSTER_DIR"/*-notify.log; do
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f"; then fail "sanitizer report in $f"; fi
done
echo PASS
