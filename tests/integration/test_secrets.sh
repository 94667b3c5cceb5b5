#!/usr/bin/env bash
# Secrets: Redis AUTH, secret file permissions, and no secret in any output.
#  1. A 2-region cluster whose Redis servers require a password (redis.password in
#     each config; scripts/local-region starts redis-server with --requirepass) and
#     whose daemons log at debug level: Redis refuses unauthenticated clients, and
#     replication works both ways.
#  2. A wrong password in the config: each daemon, started directly, exits non-zero at
#     start-up with a message naming Redis and AUTH.
#  3. A group- or world-readable CURVE secret key file, a secret key file that is not a
#     key, a group-readable redis.password_file: each daemon exits non-zero at start-up
#     with a message naming the field and the file.
#  4. Every daemon log of the run (and the Redis and DynamoDB Local logs), every start-up
#     error and every ternctl output of the run (status, lag, verify, wait-caught-up,
#     pause/resume, keygen, a bad config) holds none of: the Redis passwords (right,
#     wrong, and one seen only by a SIGHUP reload), the AWS secret access key (a
#     distinctive value exported for the run), the content of any CURVE .key file.
set -euo pipefail
# before cluster.sh, which keeps values already set
export AWS_ACCESS_KEY_ID=ternSecretsTestId # DynamoDB Local 2.x: letters and digits only
export AWS_SECRET_ACCESS_KEY="AwsSecret$RANDOM$RANDOM$RANDOM/DoNotLogMe+$$"
. "$TERN_SRC/tests/lib/cluster.sh"
PW="RedisPw-$RANDOM$RANDOM-$$-doNotLog"
WRONG_PW="WrongPw-$RANDOM$RANDOM-$$-doNotLogEither"
RELOAD_PW="ReloadPw-$RANDOM$RANDOM-$$-neverUsed"
REPL_BIN=$TERN_BUILD/replicator/tern-replicator
AGENT_BIN=$TERN_BUILD/region-agent/tern-region-agent
[ -x "$TERNCTL" ] || fail "$TERNCTL not built"

cluster_init 2 ".redis.password = \"$PW\" | .log_level = \"debug\""
D=$CLUSTER_DIR/secrets
mkdir -p "$D"
rcli() { redis-cli -p "${CL_REDIS[$1]}" -a "$PW" --no-auth-warning "${@:2}"; }

note "cluster with Redis AUTH"
cluster_up
E=$(region_endpoint us-east-1) W=$(region_endpoint eu-west-1)
for r in us-east-1 eu-west-1; do
  out=$(redis-cli -p "${CL_REDIS[$r]}" ping 2>&1 || true)
  [[ "$out" == *NOAUTH* ]] || fail "$r's Redis answers without the password: $out"
  [ "$(rcli "$r" ping)" = PONG ] || fail "$r's Redis refuses the password"
done

note "replication works both ways"
"$DDBTOOL" put "$E" "$TABLE" '{"PK":{"S":"S#1"},"SK":{"S":"ITEM"},"v":{"S":"east"}}' || fail put
"$DDBTOOL" wait "$W" "$TABLE" "$(key_json 1 S)" v east 15000 >/dev/null || fail "us-east-1 -> eu-west-1 does not work with Redis AUTH"
"$DDBTOOL" put "$W" "$TABLE" '{"PK":{"S":"S#2"},"SK":{"S":"ITEM"},"v":{"S":"west"}}' || fail put
"$DDBTOOL" wait "$E" "$TABLE" "$(key_json 2 S)" v west 15000 >/dev/null || fail "eu-west-1 -> us-east-1 does not work with Redis AUTH"
[ -n "$(rcli eu-west-1 HGET "tern:eu-west-1:wm:us-east-1:$TABLE" pos)" ] || fail "no watermark in eu-west-1's Redis"
[ -n "$(rcli us-east-1 HGET "tern:us-east-1:wm:eu-west-1:$TABLE" pos)" ] || fail "no watermark in us-east-1's Redis"

note "ternctl against the password-protected Redis servers"
ctl status >"$D/ctl-status.out" 2>&1 || fail "ternctl status: $(cat "$D/ctl-status.out")"
ctl --json status >"$D/ctl-status-json.out" 2>&1 || fail "ternctl --json status: $(cat "$D/ctl-status-json.out")"
ctl lag >"$D/ctl-lag.out" 2>&1 || fail "ternctl lag: $(cat "$D/ctl-lag.out")"
ctl wait-caught-up --from us-east-1 --to eu-west-1 --timeout 30 >"$D/ctl-wait.out" 2>&1 ||
  fail "ternctl wait-caught-up: $(cat "$D/ctl-wait.out")"
ctl verify >"$D/ctl-verify.out" 2>&1 || fail "ternctl verify: $(cat "$D/ctl-verify.out")"
ctl pause --from us-east-1 --to eu-west-1 >"$D/ctl-pause.out" 2>&1 || fail "ternctl pause: $(cat "$D/ctl-pause.out")"
ctl resume --from us-east-1 --to eu-west-1 >"$D/ctl-resume.out" 2>&1 || fail "ternctl resume: $(cat "$D/ctl-resume.out")"
mkdir -p "$D/keys"
"$TERNCTL" keygen extra --dir "$D/keys" >"$D/ctl-keygen.out" 2>&1 || fail "ternctl keygen: $(cat "$D/ctl-keygen.out")"
[ "$(stat -c %a "$D/keys/extra.key")" = 600 ] || fail "ternctl keygen wrote extra.key with mode $(stat -c %a "$D/keys/extra.key")"

# variant CONFIG_OUT JQ: eu-west-1's config changed by JQ, on ports nothing else uses,
# beside the original (so keys/... paths resolve the same)
variant() {
  jq --argjson l "$(free_port)" --argjson a "$(free_port)" --argjson m "$(free_port)" \
    '.replicator.listen = "tcp://127.0.0.1:\($l)" | .agent.metrics_port = $a | .replicator.metrics_port = $m | '"$2" \
    "$(region_cfg eu-west-1)" >"$1"
}
# refused NAME CONFIG PATTERN...: both daemons, started directly with CONFIG, exit
# non-zero within 30 s, and their output matches every (case-insensitive, ERE) PATTERN
refused() {
  local name=$1 cfg=$2 bin out rc; shift 2
  for bin in "$REPL_BIN" "$AGENT_BIN"; do
    out="$D/start-$name-$(basename "$bin").out"
    rc=0
    timeout 30 "$bin" --config "$cfg" >"$out" 2>&1 </dev/null || rc=$?
    [ "$rc" != 0 ] || fail "$(basename "$bin") started with $name"
    [ "$rc" != 124 ] || fail "$(basename "$bin") with $name neither started nor exited in 30 s"
    for p in "$@"; do
      grep -qiE -- "$p" "$out" || fail "$(basename "$bin") with $name: exit $rc, but no /$p/ in: $(cat "$out")"
    done
    note "$(basename "$bin") with $name: exit $rc: $(grep -iE -- "$1" "$out" | head -1)"
  done
}

note "a wrong Redis password stops start-up"
variant "$CLUSTER_DIR/wrong-pw.json" ".redis.password = \"$WRONG_PW\""
refused wrong-pw "$CLUSTER_DIR/wrong-pw.json" 'redis' 'AUTH'
rc=0; "$TERNCTL" --config "$CLUSTER_DIR/wrong-pw.json" status >"$D/ctl-wrong-pw.out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "ternctl status with a wrong Redis password: exit $rc, expected 2: $(cat "$D/ctl-wrong-pw.out")"

note "secret files readable by others are refused"
for mode in 640 604; do
  cp "$CLUSTER_DIR/keys/eu-west-1.key" "$CLUSTER_DIR/keys/open-$mode.key"
  chmod "$mode" "$CLUSTER_DIR/keys/open-$mode.key"
  variant "$CLUSTER_DIR/open-$mode.json" ".curve.secret_key_file = \"keys/open-$mode.key\""
  refused "key-mode-$mode" "$CLUSTER_DIR/open-$mode.json" 'curve\.secret_key_file' \
    "$CLUSTER_DIR/keys/open-$mode.key" 'readable by (group|others)|chmod'
done
printf '%s\n' "$PW" >"$CLUSTER_DIR/pw-open.txt"
chmod 640 "$CLUSTER_DIR/pw-open.txt"
variant "$CLUSTER_DIR/pw-open.json" "del(.redis.password) | .redis.password_file = \"pw-open.txt\""
refused pw-file-mode-640 "$CLUSTER_DIR/pw-open.json" 'redis\.password_file' "$CLUSTER_DIR/pw-open.txt" \
  'readable by (group|others)|chmod'

note "a secret key file that is not a key is refused without echoing it"
{ tr -d '\n' <"$CLUSTER_DIR/keys/eu-west-1.key"; echo X; } >"$CLUSTER_DIR/keys/bad.key"
chmod 600 "$CLUSTER_DIR/keys/bad.key"
variant "$CLUSTER_DIR/bad-key.json" '.curve.secret_key_file = "keys/bad.key"'
refused bad-key "$CLUSTER_DIR/bad-key.json" 'curve\.secret_key_file' "$CLUSTER_DIR/keys/bad.key"

note "SIGHUP reloads (one with a changed password) log no secret"
cp "$(region_cfg eu-west-1)" "$D/eu-west-1.json.orig"
for pw in "$RELOAD_PW" "$PW"; do
  jq --arg p "$pw" '.redis.password = $p' "$D/eu-west-1.json.orig" >"$(region_cfg eu-west-1)"
  for d in tern-replicator tern-region-agent; do kill -HUP "$(cat "$(region_run eu-west-1)/$d.pid")"; done
  sleep 1
done
cp "$D/eu-west-1.json.orig" "$(region_cfg eu-west-1)"
grep -q 'reload' "$(region_run eu-west-1)/tern-replicator.log" || fail "the replicator logged no reload"
daemon_alive eu-west-1 tern-replicator && daemon_alive eu-west-1 tern-region-agent || fail "a daemon died on SIGHUP"
"$DDBTOOL" put "$E" "$TABLE" '{"PK":{"S":"S#3"},"SK":{"S":"ITEM"},"v":{"S":"after reload"}}' || fail put
"$DDBTOOL" wait "$W" "$TABLE" "$(key_json 3 S)" v "after reload" 15000 >/dev/null || fail "replication stopped after the reloads"

note "no secret in any log or output of the run"
ctl status >"$D/ctl-status-end.out" 2>&1 || true
kill_daemon us-east-1 tern-region-agent # a clean stop logs too
files=("$CLUSTER_DIR"/run-*/*.log "$D"/*.out)
[ "${#files[@]}" -gt 10 ] || fail "too few files to check: ${files[*]}"
check_secret() { # check_secret WHAT VALUE
  local f
  [ ${#2} -ge 8 ] || fail "secret $1 too short to search for"
  for f in "${files[@]}"; do
    if grep -qF -- "$2" "$f"; then fail "$1 appears in $f (line $(grep -nF -- "$2" "$f" | head -1 | cut -d: -f1))"; fi
  done
}
check_secret "the Redis password" "$PW"
check_secret "the wrong Redis password" "$WRONG_PW"
check_secret "the Redis password of the reload" "$RELOAD_PW"
check_secret "the AWS secret access key" "$AWS_SECRET_ACCESS_KEY"
nkeys=0
for k in "$CLUSTER_DIR"/keys/*.key "$D"/keys/*.key; do
  v=$(head -c 40 "$k")
  check_secret "the CURVE secret key in $(basename "$k")" "$v"
  check_secret "the CURVE secret key in $(basename "$k") (first half)" "${v:0:20}"
  check_secret "the CURVE secret key in $(basename "$k") (second half)" "${v:20:20}"
  nkeys=$((nkeys + 1))
done
note "checked ${#files[@]} files for 4 passwords/credentials and $nkeys secret keys"
assert_clean_logs
echo "PASS"
