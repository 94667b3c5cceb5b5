#!/usr/bin/env bash
# test_fuzz_short.sh -- ctest "fuzz.short": every libFuzzer target for a short run under
# ASan/UBSan, failing on any crash, leak, timeout or broken invariant.
#
# Builds tests/fuzz with clang into $TERN_BUILD/fuzz (not the developer's build-fuzz/) and
# runs scripts/fuzz there: the 6 targets two at a time for FUZZ_SHORT_SECONDS each
# (default 5: the default suite is held under 15 minutes), about 15 s of wall time on 2
# cores plus the build (scripts/fuzz runs longer). Findings are printed with the path of the crashing input (copied to
# tests/fuzz/crashes/<target>/).
# Environment (from ctest): TERN_BUILD, TERN_SRC, TERN_SHARED; CC (clang).
set -euo pipefail
src=${TERN_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${TERN_BUILD:-$src/build}
export FUZZ_BUILD_DIR="$build/fuzz"
export FUZZ_JOBS=${FUZZ_JOBS:-2}
export CC=${CC:-clang}
# ctest's ASAN_OPTIONS are for the gcc build; libFuzzer targets use scripts/fuzz's.
unset ASAN_OPTIONS UBSAN_OPTIONS
exec "$src/scripts/fuzz" "${FUZZ_SHORT_SECONDS:-5}"
