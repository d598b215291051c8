#!/usr/bin/env bash
# run-unit.sh BUILD — run every unit test program BUILD/tests/test_* (files, not directories).
#
# Each program runs in its own process from the repository root with `timeout 300` and
# BATCHREP_SRC=<repository root> (tap_read_fixture finds tests/fixtures/ through it). Its output
# is shown as it runs. A program fails when it exits nonzero (a timeout is 124, a kill 137)
# or when its output lacks the closing TAP line "N passed, N failed" or says "M failed" with
# M > 0. Prints a summary; exits 1 when any program failed.
# Optional filter: TESTS="pat1 pat2" runs only programs whose name contains one of the
# (glob) patterns.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "run-unit: no build folder $1" >&2; exit 2; }
TIMEOUT_S=300
cd "$ROOT" || exit 2

. "$ROOT/tests/tap-lib.sh"

progs=()
for f in "$BUILD"/tests/test_*; do
    if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
    wanted "$(basename "$f")" && progs+=("$f")
done
if [ ${#progs[@]} -eq 0 ]; then
    echo "run-unit: no unit test programs in $BUILD/tests${TESTS:+ matching \"$TESTS\"}"
    exit 0
fi

run_one() {
    BATCHREP_SRC="$ROOT" timeout -k 10 "$2" "$1"
}
tap_run_all "unit tests" programs "$TIMEOUT_S" "${progs[@]}"
