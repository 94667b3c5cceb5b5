#!/usr/bin/env bash
# test_metrics_http.sh -- metrics/ over real HTTP: starts tests/integration/metrics_demo
# (a registry served by metrics_serve() while a thread updates it) on a free loopback
# port, scrapes it with curl and checks:
#  - /metrics: 200, Content-Type text/plain; version=0.0.4, and a body that a strict
#    parser of the Prometheus text format 0.0.4 (below) accepts: every family has HELP
#    then TYPE before its samples and appears once, every sample line is
#    `name{label="value",...} value` with only \\ \" \n escapes, histogram buckets are
#    nondecreasing in increasing le, end in le="+Inf" equal to _count, with a _sum;
#    families sorted by name; tern_build_info and tern_up present; counters never
#    decrease between two scrapes; an escaped label value decodes to the raw value;
#  - HEAD /metrics 200; /healthz 200 "ok\n"; 404 on another path; 405 (Allow: GET, HEAD)
#    on POST; a demo started unhealthy answers /healthz 503 with its reason on one line;
#  - the endpoint listens on 127.0.0.1 only by default; a taken port is a clear error.
set -euo pipefail
: "${TERN_BUILD:?TERN_BUILD must point at the build dir (ctest sets it)}"
TERN_SRC=${TERN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=../../scripts/lib/servers.sh
source "$TERN_SRC/scripts/lib/servers.sh"

demo="$TERN_BUILD/tests/metrics_demo"
[ -x "$demo" ] || { echo "test_metrics_http: $demo is not built" >&2; exit 1; }
command -v curl >/dev/null || { echo "test_metrics_http: curl is missing (scripts/setup installs it)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "test_metrics_http: python3 is missing (scripts/setup installs it)" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/tern-test-metrics.XXXXXX")
pids=()
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    for f in "$dir"/*.err; do [ -s "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }; done
  fi
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "test_metrics_http: FAIL: $*" >&2; exit 1; }

# start_demo NAME PORT SECONDS HEALTH: starts the demo in the background, waits for it.
# SECONDS is only a backstop: the test stops the demos with SIGTERM when done.
start_demo() {
  local name=$1 port=$2 secs=$3 health=$4 i
  "$demo" "$port" "$secs" "$health" >"$dir/$name.out" 2>"$dir/$name.err" &
  pids+=("$!")
  for i in $(seq 1 400); do
    grep -q "^serving on $port\$" "$dir/$name.out" 2>/dev/null && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || fail "$name exited before serving: $(cat "$dir/$name.err")"
    sleep 0.05
  done
  fail "$name did not start serving on port $port"
}

cat >"$dir/promcheck.py" <<'PY'
"""Strict checker of the Prometheus text exposition format 0.0.4 as Tern emits it.
usage: promcheck.py [--prev EARLIER_FILE] FILE...   every FILE valid (and, with --prev,
                                                    no counter lower than in EARLIER_FILE)
       promcheck.py --reject FILE...                every FILE invalid (self-test)
Exits non-zero with the file, line and reason on error."""
import math, re, sys

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
VALUE = r'(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)'
HELP_RE = re.compile(r'^# HELP (' + NAME + r') ((?:[^\\\n]|\\\\|\\n)*)$')
TYPE_RE = re.compile(r'^# TYPE (' + NAME + r') (counter|gauge|histogram|summary|untyped)$')
SAMPLE_RE = re.compile(r'^(' + NAME + r')(?:\{(.*)\})? (' + VALUE + r')$')
PAIR_RE = re.compile(r'(' + LABEL + r')="((?:[^"\\\n]|\\\\|\\"|\\n)*)"')

def die(lineno, line, why):
    sys.exit("line %d: %s: %r" % (lineno, why, line))

def unescape(s):
    return re.sub(r'\\(.)', lambda m: {'\\': '\\', '"': '"', 'n': '\n'}[m.group(1)], s)

def parse_labels(lineno, line, text):
    labels, pos = [], 0
    if text is None:
        return ()
    if text == '':
        die(lineno, line, 'empty label set {}')
    while True:
        m = PAIR_RE.match(text, pos)
        if not m:
            die(lineno, line, 'bad label pair at %r' % text[pos:])
        name = m.group(1)
        if name.startswith('__'):
            die(lineno, line, 'reserved label name ' + name)
        if any(n == name for n, _ in labels):
            die(lineno, line, 'label %s given twice' % name)
        labels.append((name, unescape(m.group(2))))
        pos = m.end()
        if pos == len(text):
            return tuple(labels)
        if text[pos] != ',':
            die(lineno, line, 'expected "," between labels')
        pos += 1

def check(path):
    data = open(path, 'rb').read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        sys.exit('not UTF-8: %s' % e)
    if not text.endswith('\n'):
        sys.exit('the body does not end with a newline')
    families = {}   # name -> {'type', 'help', 'samples': {(sample_name, labels): value}}
    order = []
    cur = None      # family being read
    pending_help = None
    for lineno, line in enumerate(text[:-1].split('\n'), 1):
        if line == '':
            die(lineno, line, 'empty line')
        if line.startswith('#'):
            m = HELP_RE.match(line)
            if m:
                if m.group(1) in families or pending_help:
                    die(lineno, line, 'HELP repeated or out of place')
                pending_help = m.group(1)
                cur = None
                continue
            m = TYPE_RE.match(line)
            if m:
                if pending_help != m.group(1):
                    die(lineno, line, 'TYPE not right after the HELP of the same family')
                cur = m.group(1)
                families[cur] = {'type': m.group(2), 'samples': {}}
                order.append(cur)
                pending_help = None
                continue
            die(lineno, line, 'comment that is neither HELP nor TYPE')
        m = SAMPLE_RE.match(line)
        if not m:
            die(lineno, line, 'not a sample line "name{labels} value"')
        if cur is None:
            die(lineno, line, 'sample before its family\'s HELP and TYPE')
        sname, labels, value = m.group(1), parse_labels(lineno, line, m.group(2)), m.group(3)
        fam = families[cur]
        allowed = [cur] if fam['type'] in ('counter', 'gauge') else \
                  [cur + '_bucket', cur + '_sum', cur + '_count']
        if sname not in allowed:
            die(lineno, line, 'sample %s does not belong to family %s (%s)' % (sname, cur, fam['type']))
        v = float(value)
        if fam['type'] == 'counter' and not v >= 0:
            die(lineno, line, 'negative or NaN counter')
        key = (sname, labels)
        if key in fam['samples']:
            die(lineno, line, 'duplicate series')
        fam['samples'][key] = (v, lineno, line)
    if pending_help:
        sys.exit('HELP of %s without TYPE' % pending_help)
    if order != sorted(order):
        sys.exit('families are not sorted by name: %s' % order)
    for name, fam in families.items():
        if not fam['samples']:
            sys.exit('family %s has no samples' % name)
        if fam['type'] != 'histogram':
            continue
        series = {}
        for (sname, labels), (v, lineno, line) in fam['samples'].items():
            base = tuple(l for l in labels if l[0] != 'le')
            s = series.setdefault(base, {'buckets': [], 'sum': None, 'count': None})
            if sname.endswith('_bucket'):
                le = [val for n, val in labels if n == 'le']
                if len(le) != 1 or labels[-1][0] != 'le':
                    die(lineno, line, 'a bucket needs exactly one le label, last')
                if v != math.floor(v) or v < 0:
                    die(lineno, line, 'bucket count is not a non-negative integer')
                s['buckets'].append((float(le[0]), v, lineno, line))
            elif any(n == 'le' for n, _ in labels):
                die(lineno, line, 'le label on a _sum/_count sample')
            elif sname.endswith('_sum'):
                s['sum'] = v
            else:
                s['count'] = v
        for base, s in series.items():
            b = s['buckets']
            if not b or s['sum'] is None or s['count'] is None:
                sys.exit('histogram %s%s lacks buckets, _sum or _count' % (name, base))
            for i in range(1, len(b)):
                if not b[i][0] > b[i - 1][0]:
                    die(b[i][2], b[i][3], 'le not increasing')
                if b[i][1] < b[i - 1][1]:
                    die(b[i][2], b[i][3], 'bucket count decreases (not cumulative)')
            if b[-1][0] != math.inf:
                die(b[-1][2], b[-1][3], 'last bucket is not le="+Inf"')
            if b[-1][1] != s['count']:
                die(b[-1][2], b[-1][3], '+Inf bucket %g != _count %g' % (b[-1][1], s['count']))
    return families

def check_tern(path):
    """check() plus what every Tern registry served by metrics_demo holds."""
    fams = check(path)
    bi = fams.get('tern_build_info')
    if not bi or bi['type'] != 'gauge' or \
            [v for (_, l), (v, _, _) in bi['samples'].items() if l and l[0][0] == 'version'] != [1.0]:
        sys.exit('tern_build_info{version="..."} 1 missing')
    up = fams.get('tern_up')
    if not up or up['samples'].get(('tern_up', ()), (None,))[0] != 1.0:
        sys.exit('tern_up 1 missing')
    rej = fams['tern_messages_rejected_total']['samples']
    if ('tern_messages_rejected_total', (('reason', 'bad "frame"\\n\nline'),)) not in rej:
        sys.exit('the escaped label value does not decode to the raw value: %s' % list(rej))
    return fams

args = sys.argv[1:]
if args and args[0] == '--reject':
    # every file must be rejected (self-test of this checker)
    for path in args[1:]:
        try:
            check(path)
        except SystemExit as e:
            print('promcheck: %s rejected: %s' % (path.rsplit('/', 1)[-1], e))
            continue
        sys.exit('promcheck accepted the invalid %s' % path)
    sys.exit(0)
prev = None
if args and args[0] == '--prev':
    prev = check_tern(args[1])
    args = args[2:]
for path in args:
    try:
        fams = check_tern(path)
    except SystemExit as e:
        sys.exit('%s: %s' % (path, e))
    if prev:
        # counters and bucket counts never decrease between scrapes
        for name, fam in fams.items():
            if fam['type'] not in ('counter', 'histogram'):
                continue
            for key, (v, _, _) in prev[name]['samples'].items():
                if key[0].endswith('_sum'):
                    continue
                if key in fam['samples'] and fam['samples'][key][0] < v:
                    sys.exit('%s%s decreased between scrapes: %g -> %g' % (key[0], key[1], v, fam['samples'][key][0]))
    print('promcheck: %s: %d families ok' % (path.rsplit('/', 1)[-1], len(fams)))
PY

# The checker must reject what it should (a quick self-test, so a lax parser fails here).
printf '# HELP a x\n# TYPE a counter\na{l="v"} 1\n# HELP h y\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n' >"$dir/bad1.txt"
printf 'a 1\n' >"$dir/bad2.txt"
printf '# HELP a x\n# TYPE a gauge\na{l="v",} 1\n' >"$dir/bad3.txt"
printf '# HELP a x\n# TYPE a gauge\na{l="a\\tb"} 1\n' >"$dir/bad4.txt"
python3 "$dir/promcheck.py" --reject "$dir"/bad[1-4].txt || fail "the checker is too lax"

port=$(free_port)
start_demo healthy "$port" 300 healthy
url="http://127.0.0.1:$port"

# /metrics: status, content type, strict format, twice (counters must not go down).
code=$(curl -sS -o "$dir/m1.txt" -D "$dir/m1.hdr" -w '%{http_code}' "$url/metrics")
[ "$code" = 200 ] || fail "GET /metrics returned $code"
grep -qi '^content-type: text/plain; version=0.0.4' "$dir/m1.hdr" || fail "bad content type: $(grep -i content-type "$dir/m1.hdr")"
sleep 0.3
curl -sS -f -o "$dir/m2.txt" "$url/metrics" || fail "second GET /metrics failed"
cmp -s "$dir/m1.txt" "$dir/m2.txt" && fail "the worker thread's updates are not visible between scrapes"
grep -q '^tern_changes_shipped_total{peer="eu-west-1",table="orders"} [1-9]' "$dir/m2.txt" || fail "counter sample missing"
grep -q '^tern_replication_lag_ms_bucket{source_region="eu-west-1",le="10000"} ' "$dir/m2.txt" || fail "lag bucket missing"

# Concurrent scrapes while the worker writes.
cpids=()
for i in 1 2 3 4 5 6 7 8; do curl -sS -f -o "$dir/c$i.txt" "$url/metrics" & cpids+=("$!"); done
for i in 1 2 3 4 5 6 7 8; do wait "${cpids[$((i - 1))]}" || fail "concurrent scrape $i failed"; done
# One checker run for every scrape (python start-up is slow on a loaded CI box).
python3 "$dir/promcheck.py" --prev "$dir/m1.txt" "$dir/m1.txt" "$dir/m2.txt" "$dir"/c[1-8].txt ||
  fail "a scrape is not valid exposition text, or a counter decreased"

# HEAD, /healthz, 404, 405.
code=$(curl -sS -o /dev/null -I -w '%{http_code}' "$url/metrics"); [ "$code" = 200 ] || fail "HEAD /metrics returned $code"
code=$(curl -sS -o "$dir/h.txt" -w '%{http_code}' "$url/healthz"); [ "$code" = 200 ] || fail "GET /healthz returned $code"
[ "$(cat "$dir/h.txt"; echo x)" = "ok
x" ] || fail "/healthz body is not \"ok\\n\": $(cat "$dir/h.txt")"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$url/nope"); [ "$code" = 404 ] || fail "GET /nope returned $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$url/metrics/"); [ "$code" = 404 ] || fail "GET /metrics/ returned $code"
code=$(curl -sS -o /dev/null -D "$dir/p.hdr" -w '%{http_code}' -X POST --data 'x=1' "$url/metrics")
[ "$code" = 405 ] || fail "POST /metrics returned $code"
grep -qi '^allow: GET, HEAD' "$dir/p.hdr" || fail "405 without Allow: GET, HEAD"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$url/healthz"); [ "$code" = 405 ] || fail "DELETE /healthz returned $code"

# Bound to loopback only by default.
if command -v ss >/dev/null; then
  listen=$(ss -Hltn "sport = :$port" | awk '{print $4}')
  [ "$listen" = "127.0.0.1:$port" ] || fail "expected to listen on 127.0.0.1:$port only, got: $listen"
fi

# A taken port is a clear error, exit 1.
if "$demo" "$port" 1 healthy >/dev/null 2>"$dir/taken.err"; then fail "a second server on port $port started"; fi
grep -q "cannot serve on 127.0.0.1 port $port: Address already in use" "$dir/taken.err" || fail "unclear error for a taken port: $(cat "$dir/taken.err")"

# An unhealthy process: 503 with its reason on one line.
port2=$(free_port)
while [ "$port2" = "$port" ]; do port2=$(free_port); done
start_demo unhealthy "$port2" 300 unhealthy
code=$(curl -sS -o "$dir/u.txt" -w '%{http_code}' "http://127.0.0.1:$port2/healthz")
[ "$code" = 503 ] || fail "unhealthy /healthz returned $code"
[ "$(cat "$dir/u.txt")" = "unhealthy: demo started unhealthy second line" ] || fail "unhealthy body: $(cat "$dir/u.txt")"

# Graceful stop: SIGTERM, exit 0, no sanitizer report.
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "metrics_demo exited non-zero after SIGTERM"; done
pids=()
if grep -l "Sanitizer" "$dir"/*.err >/dev/null 2>&1; then fail "sanitizer report: $(cat "$dir"/*.err)"; fi
echo "test_metrics_http: ok"
