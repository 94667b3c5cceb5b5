# bench/lib.sh -- what bench/run, bench/pairs and bench/copiers share: a local pair as the
# tests start it (tests/lib/cluster.sh), with bench's settings, and the CPU it uses. Sourced after `root` is set and
# scripts/setup has run (jq).

export TERN_SRC=$root TERN_BUILD=$root/build TABLE=bench
LB=$root/build/bench/lagbench
export TERN_DDB_JAVA_OPTS=${TERN_DDB_JAVA_OPTS:--Xms256m -Xmx512m -XX:+UseSerialGC}
. "$root/tests/lib/cluster.sh"

# bench_check_cfg PROG WHAT JQ: exits 2 (PROG: WHAT: ...) unless JQ maps a config to one
bench_check_cfg() {
  jq -en "[{} | ($3)] | length == 1" >/dev/null ||
    { echo "$1: $2: not a jq filter giving one config: $3" >&2; exit 2; }
}

# bench_pair_up JQ: a fresh us-east-1/eu-west-1 pair whose configs have bench's settings,
# then JQ; sets E and W (the stores' endpoints)
bench_pair_up() {
  cluster_init 2 ".log_level = \"warn\" | .agent.idle_poll_ms = 5 | .agent.active_poll_ms = 1 | ($1)"
  cluster_up
  E=$(region_endpoint us-east-1) W=$(region_endpoint eu-west-1)
}

# bench_store_rtt MS: eu-west-1's daemons reach their store through tern-relay
# (tests/lib/cluster.sh, start_store_relay), which adds MS ms to each round trip (MS/2 each
# way), as a store in another zone, or DynamoDB's regional endpoint, would; lagbench still
# reaches it directly, so the lag it measures is Tern's. 0: nothing. The relay's own CPU
# (one thread) counts against the machine like everything else.
bench_store_rtt() {
  [ "$1" = 0 ] && return 0
  start_store_relay eu-west-1 "$(jq -n "$1 / 2")"
  lr stop-daemons eu-west-1 >/dev/null
  jq --arg r "http://127.0.0.1:$RELAY_PORT" '.store.endpoint = $r' "$(region_cfg eu-west-1)" >"$CLUSTER_DIR/w.json" &&
    mv "$CLUSTER_DIR/w.json" "$(region_cfg eu-west-1)"
  lr start-daemons eu-west-1 >/dev/null
}

# bench_drained: until Tern has applied, both ways, what was written so far and each
# agent has read the echoes of those writes from its own stream (wait-caught-up from the
# other region: its stream phase), so that a phase does not measure Tern still working
# through the one before
bench_drained() {
  ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 300 --table bench >/dev/null
  ctl wait-caught-up --from eu-west-1 --to us-east-1 --timeout 300 --table bench >/dev/null
}

# bench_ticks PIDFILE...: CPU time (clock ticks) used so far by the live processes of the
# pid files given
bench_ticks() {
  local f p t=0 st
  for f in "$@"; do
    [ -f "$f" ] && p=$(cat "$f") && [ -r "/proc/$p/stat" ] || continue
    st=$(cat "/proc/$p/stat") || continue
    read -r -a st <<<"${st##*) }"
    t=$((t + st[11] + st[12])) # utime, stime
  done
  echo "$t"
}

# bench_proc_ticks PIDFILE...: as bench_ticks, but -1 when none of them is a live process
bench_proc_ticks() {
  local f p
  for f in "$@"; do
    [ -f "$f" ] && p=$(cat "$f") && [ -r "/proc/$p/stat" ] && { bench_ticks "$@"; return; }
  done
  echo -1
}

# bench_thread_ticks PIDFILE PATTERN...: CPU time (clock ticks) used so far by the threads
# of the process in PIDFILE whose names match one of the glob PATTERNs; -1 if none does
# (another process, a JVM that does not name its threads)
bench_thread_ticks() {
  local p d c st t=-1 pat
  p=$(cat "$1" 2>/dev/null) || { echo -1; return; }
  shift
  for d in /proc/"$p"/task/*; do
    c=$(cat "$d/comm" 2>/dev/null) || continue
    for pat in "$@"; do
      # shellcheck disable=SC2053 # a glob on purpose
      [[ $c == $pat ]] || continue
      st=$(cat "$d/stat" 2>/dev/null) || continue
      read -r -a st <<<"${st##*) }"
      t=$((t < 0 ? st[11] + st[12] : t + st[11] + st[12]))
      break
    done
  done
  echo "$t"
}

# bench_cpu_now: "SRC DST TERN SRC-SQLITE DST-SQLITE WALL-MS SRC-AGENT SRC-REPLICATOR
# SRC-REDIS DST-AGENT DST-REPLICATOR DST-REDIS": CPU ticks so far of the source store, the
# destination store, and Tern (both regions' daemons and Redis: the sum of the last six),
# then of each store's SQLite thread (DynamoDB Local runs every SQLite statement on one
# thread, sqlite4java's SQLiteQueue, so its busy share of a core is the store's own
# ceiling; -1 for a JVM that does not name its threads), the wall clock in ms, and each of
# Tern's processes (-1 for one not running: the daemons are stopped for the copier)
bench_cpu_now() {
  local s d p t=0 x
  s=$(region_run us-east-1) d=$(region_run eu-west-1)
  p=("$(bench_proc_ticks "$s"/tern-region-agent.pid)" "$(bench_proc_ticks "$s"/tern-replicator.pid)"
     "$(bench_proc_ticks "$s"/redis-*.pid)" "$(bench_proc_ticks "$d"/tern-region-agent.pid)"
     "$(bench_proc_ticks "$d"/tern-replicator.pid)" "$(bench_proc_ticks "$d"/redis-*.pid)")
  for x in "${p[@]}"; do t=$((t + (x > 0 ? x : 0))); done
  echo "$(bench_ticks "$s"/ddb-*.pid) $(bench_ticks "$d"/ddb-*.pid) $t" \
    "$(bench_thread_ticks "$s"/ddb-*.pid "SQLiteQueue*") $(bench_thread_ticks "$d"/ddb-*.pid "SQLiteQueue*")" \
    "$(date +%s%3N) ${p[*]}"
}

# bench_phase FILE LABEL LAGBENCH-ARGS...: one lagbench run from E to W (bench_pair_up),
# its JSON line written to FILE and printed with cpu_ms_per_write (the CPU the source
# store, the destination store and Tern used during the run, per write the source
# acknowledged; tern_by_process: Tern's part of it, process by process, null for one not
# running throughout) and sqlite_busy (each store's SQLite thread's busy share of one core)
bench_phase() {
  local f=$1 label=$2 a hz
  shift 2
  hz=$(getconf CLK_TCK)
  a=$(bench_cpu_now)
  "$LB" --source "$E" --dest "$W" --table bench --label "$label" "$@" >"$f"
  jq -c --arg a "$a" --arg b "$(bench_cpu_now)" --argjson hz "$hz" '
    ($a | split(" ") | map(tonumber)) as $x | ($b | split(" ") | map(tonumber)) as $y |
    def per(i): if .acked > 0 then (($y[i] - $x[i]) * 1000 / $hz / .acked * 1000 | round) / 1000 else null end;
    # a process not running at the start or the end of the phase (the copier phases stop
    # the daemons), or restarted with less CPU used than before: null, not a figure
    def perp(i): if $x[i] < 0 or $y[i] < $x[i] then null else per(i) end;
    def busy(i): if $x[i] < 0 or $y[i] < 0 or $y[5] <= $x[5] then null
      else (($y[i] - $x[i]) / $hz / (($y[5] - $x[5]) / 1000) * 100 | round) / 100 end;
    . + {cpu_ms_per_write: {source_store: per(0), dest_store: per(1), tern: per(2),
                            tern_by_process: {source_agent: perp(6), source_replicator: perp(7), source_redis: perp(8),
                                              dest_agent: perp(9), dest_replicator: perp(10), dest_redis: perp(11)}},
         sqlite_busy: {source_store: busy(3), dest_store: busy(4)}}' "$f"
}

# bench_jit_ticks: CPU time (clock ticks) that the JIT compiler threads (C1, C2) of both
# regions' stores have used so far; -1 if a store has none by those names
bench_jit_ticks() {
  local r t a=0
  for r in us-east-1 eu-west-1; do
    t=$(bench_thread_ticks "$(region_run "$r")"/ddb-*.pid "C1 Compiler*" "C2 Compiler*")
    [ "$t" -ge 0 ] || { echo -1; return; }
    a=$((a + t))
  done
  echo "$a"
}

# bench_warm LAGBENCH-COMMAND...: runs the load of that lagbench command line (given without
# --seconds, --prefix and --label) in rounds of 10 s until the stores' JIT has settled: the
# compilers of both stores together used under 0.4 s of CPU in a round (4% of one core), at
# most 12 rounds; prints the number of rounds, "12 (not settled)" after 12 that were not.
# At 1,000 writes/s on the development machine the destination store's C2 compiler was
# still busy 60-70 s into the load, and in the first 10 s the stores used 1.8-1.9 times
# the CPU they settled at (docs/lag.md, "A conditional copier, and the stores' JIT"): a
# setting measured then, and falling behind, does not recover within the run. Without
# named compiler threads (bench_jit_ticks -1) it warms up for 6 rounds. Returns 1 if a
# round's lagbench fails.
bench_warm() {
  local i a b hz
  hz=$(getconf CLK_TCK)
  for ((i = 1; i <= 12; i++)); do
    a=$(bench_jit_ticks)
    "$@" --seconds 10 --prefix "warm$i-$RANDOM" --label warmup >/dev/null || return 1
    b=$(bench_jit_ticks)
    if [ "$a" -lt 0 ] || [ "$b" -lt 0 ]; then
      [ "$i" -eq 1 ] && echo "bench: no JIT compiler threads found in the stores: warming up for 6 rounds" >&2
      [ "$i" -ge 6 ] && break
      continue
    fi
    [ $((b - a)) -lt $((hz * 4 / 10)) ] && break
  done
  if [ "$i" -gt 12 ]; then echo "12 (not settled)"; else echo "$i"; fi
}
