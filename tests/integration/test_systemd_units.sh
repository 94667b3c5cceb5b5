#!/usr/bin/env bash
# test_systemd_units.sh -- the systemd units, the sysusers file and `cmake --install`:
#  1. `DESTDIR=$tmp/root cmake --install $TERN_BUILD` puts the binaries, the three units,
#     sysusers.d/tern.conf, the example configs (mode 0600) and docs/*.md where they
#     belong, with every @VAR@ of the unit templates substituted;
#  2. a second install keeps a config the operator changed (and restores a deleted one);
#  3. `systemd-analyze verify` accepts every installed unit, instantiated for a region,
#     with ExecStart pointing at the binaries just installed (any warning fails), and
#     rejects a unit whose binary is missing (so the check cannot pass vacuously);
#  4. `systemd-sysusers --root` creates the tern user from the installed sysusers file;
#  5. `systemd-analyze security --offline=yes` rates both services at most
#     TERN_MAX_EXPOSURE (3.0; recorded in docs/operations.md).
# systemd-analyze comes from the `systemd` package (scripts/setup installs it); without
# it this test FAILS. Nothing is started: the daemons' own start-up is covered elsewhere.
set -euo pipefail
: "${TERN_BUILD:?TERN_BUILD must point at the build dir (ctest sets it)}"
TERN_SRC=${TERN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TERN_MAX_EXPOSURE=3.0
REGION=us-east-1

fail() { echo "test_systemd_units: FAIL: $*" >&2; exit 1; }
for t in systemd-analyze systemd-sysusers cmake; do
  command -v "$t" >/dev/null || fail "$t is missing (scripts/setup installs the systemd and cmake packages)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-test-units.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"

# The install layout the build was configured with.
cache_get() { sed -n "s/^$1:[A-Z]*=//p" "$TERN_BUILD/CMakeCache.txt"; }
prefix=$(cache_get CMAKE_INSTALL_PREFIX)
confdir=$(cache_get TERN_CONFIG_DIR)
unitdir=$(cache_get TERN_SYSTEMD_UNIT_DIR)
sysusersdir=$(cache_get TERN_SYSUSERS_DIR)
bindir=$(cache_get CMAKE_INSTALL_BINDIR)
[ -n "$prefix" ] && [ -n "$confdir" ] && [ -n "$unitdir" ] && [ -n "$bindir" ] ||
  fail "cannot read the install layout from $TERN_BUILD/CMakeCache.txt"
abs() { case "$1" in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
unitdir=$(abs "$unitdir"); sysusersdir=$(abs "$sysusersdir"); bindir=$(abs "$bindir")

# ---- 1. install into a DESTDIR --------------------------------------------------------
DESTDIR="$root" cmake --install "$TERN_BUILD" >"$tmp/install1.log" 2>&1 ||
  { cat "$tmp/install1.log" >&2; fail "cmake --install failed"; }
expect=(
  "$bindir/tern-region-agent" "$bindir/tern-replicator" "$bindir/ternctl"
  "$unitdir/tern-region-agent@.service" "$unitdir/tern-replicator@.service" "$unitdir/tern@.target"
  "$sysusersdir/tern.conf"
  "$confdir/us-east-1.json" "$confdir/eu-west-1.json"
)
for d in "$TERN_SRC"/docs/*.md; do expect+=("$prefix/share/doc/tern/$(basename "$d")"); done
for f in "${expect[@]}"; do [ -f "$root$f" ] || fail "install did not create $f"; done
for b in tern-region-agent tern-replicator ternctl; do
  [ -x "$root$bindir/$b" ] || fail "$bindir/$b is not executable"
done
"$root$bindir/tern-replicator" --version | grep -q '^tern-replicator ' || fail "installed tern-replicator --version"
for c in us-east-1 eu-west-1; do
  mode=$(stat -c %a "$root$confdir/$c.json")
  [ "$mode" = 600 ] || fail "$confdir/$c.json installed with mode $mode, expected 600"
done
for u in "$root$unitdir"/*; do
  if grep -n '@[A-Z_]*@' "$u"; then fail "$(basename "$u") has an unsubstituted @VAR@"; fi
done
agent_unit="$root$unitdir/tern-region-agent@.service"
grep -qx "ExecStart=$bindir/tern-region-agent --config $confdir/%i.json" "$agent_unit" ||
  fail "agent ExecStart does not run $bindir/tern-region-agent with $confdir/%i.json"
grep -qx "EnvironmentFile=-$confdir/%i.env" "$agent_unit" || fail "agent unit lacks EnvironmentFile=-$confdir/%i.env"

# ---- 2. a second install keeps the operator's config ---------------------------------
printf '{"region": "changed-by-operator"}\n' >"$root$confdir/us-east-1.json"
rm "$root$confdir/eu-west-1.json"
DESTDIR="$root" cmake --install "$TERN_BUILD" >"$tmp/install2.log" 2>&1 ||
  { cat "$tmp/install2.log" >&2; fail "second cmake --install failed"; }
grep -q changed-by-operator "$root$confdir/us-east-1.json" || fail "the second install overwrote a modified config"
grep -q "Keeping existing: $root$confdir/us-east-1.json" "$tmp/install2.log" || fail "the second install did not say it kept the config"
cmp -s "$root$confdir/eu-west-1.json" "$TERN_SRC/config/eu-west-1.json" || fail "a deleted example config was not reinstalled"

# ---- 3. systemd-analyze verify --------------------------------------------------------
# The units, with the installed binaries' paths under the DESTDIR, in a directory put
# ahead of the system unit path (so sysinit.target and friends still resolve).
units="$tmp/units"
mkdir -p "$units"
for u in "$root$unitdir"/*; do
  sed "s|$bindir/|$root$bindir/|g" "$u" >"$units/$(basename "$u")"
done
instances=("tern@$REGION.target" "tern-region-agent@$REGION.service" "tern-replicator@$REGION.service")
verify() { # verify DIR UNIT...: systemd-analyze verify with DIR first in the unit path; all output to $tmp/verify.out
  local dir=$1; shift
  (cd "$dir" && SYSTEMD_UNIT_PATH="$dir:" systemd-analyze verify --man=no "$@") >"$tmp/verify.out" 2>&1
}
verify "$units" "${instances[@]}" || { cat "$tmp/verify.out" >&2; fail "systemd-analyze verify rejected the units"; }
if [ -s "$tmp/verify.out" ]; then cat "$tmp/verify.out" >&2; fail "systemd-analyze verify warned about the units"; fi
# Negative control: the same check must catch a unit whose binary does not exist.
mkdir -p "$tmp/broken"
cp "$units"/* "$tmp/broken/"
sed -i "s|^ExecStart=[^ ]*|ExecStart=$tmp/no-such-binary|" "$tmp/broken/tern-replicator@.service"
if verify "$tmp/broken" "tern-replicator@$REGION.service"; then fail "verify accepted a unit with a missing binary"; fi
grep -q "no-such-binary" "$tmp/verify.out" || fail "verify failed for another reason: $(cat "$tmp/verify.out")"

# ---- 4. sysusers ------------------------------------------------------------------------
mkdir -p "$tmp/sysroot/etc"
systemd-sysusers --root="$tmp/sysroot" "$root$sysusersdir/tern.conf" >"$tmp/sysusers.out" 2>&1 ||
  { cat "$tmp/sysusers.out" >&2; fail "systemd-sysusers rejected tern.conf"; }
grep -q '^tern:x:[0-9]*:[0-9]*:Tern replication:' "$tmp/sysroot/etc/passwd" || fail "sysusers did not create the tern user"
grep -q '^tern:x:[0-9]*:' "$tmp/sysroot/etc/group" || fail "sysusers did not create the tern group"
for u in tern-region-agent@.service tern-replicator@.service; do
  grep -qx 'User=tern' "$units/$u" && grep -qx 'Group=tern' "$units/$u" || fail "$u does not run as tern:tern"
done

# ---- 5. exposure score ----------------------------------------------------------------
if ! systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
  fail "this systemd-analyze has no 'security --offline' (systemd >= 250 needed; Debian 12 has 252)"
fi
max_tenths=$(awk -v m="$TERN_MAX_EXPOSURE" 'BEGIN { printf "%d", m * 10 + 0.5 }')
for s in "tern-region-agent@$REGION.service" "tern-replicator@$REGION.service"; do
  out=$(cd "$units" && SYSTEMD_UNIT_PATH="$units:" systemd-analyze security --offline=yes --man=no \
        --threshold="$max_tenths" "$s" 2>&1) || { echo "$out" >&2; fail "$s: exposure above $TERN_MAX_EXPOSURE"; }
  score=$(printf '%s\n' "$out" | sed -n "s/.*Overall exposure level for $s: \([0-9.]*\).*/\1/p")
  [ -n "$score" ] || { echo "$out" >&2; fail "$s: no exposure level in the output"; }
  awk -v s="$score" -v m="$TERN_MAX_EXPOSURE" 'BEGIN { exit !(s + 0 <= m + 0) }' ||
    fail "$s: exposure $score above $TERN_MAX_EXPOSURE"
  echo "test_systemd_units: $s exposure $score (max $TERN_MAX_EXPOSURE)"
done
echo "test_systemd_units: ok"
