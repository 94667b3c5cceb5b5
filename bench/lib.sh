# bench/lib.sh -- what bench/run and bench/pairs share: a local pair as the tests start it
# (tests/lib/cluster.sh), with bench's settings. Sourced after `root` is set and
# scripts/setup has run (jq).

export TERN_SRC=$root TERN_BUILD=$root/build TABLE=bench
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

# bench_drained: until Tern has applied, both ways, what was written so far and each
# agent has read the echoes of those writes from its own stream (wait-caught-up from the
# other region: its stream phase), so that a phase does not measure Tern still working
# through the one before
bench_drained() {
  ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 300 --table bench >/dev/null
  ctl wait-caught-up --from eu-west-1 --to us-east-1 --timeout 300 --table bench >/dev/null
}
