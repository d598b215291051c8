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

wanted() {
    [ -z "${TESTS:-}" ] && return 0
    local pat
    for pat in ${TESTS//,/ }; do
        # shellcheck disable=SC2254
        case "$1" in *$pat*) return 0 ;; esac
    done
    return 1
}

progs=()
for f in "$BUILD"/tests/test_*; do
    if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
    wanted "$(basename "$f")" && progs+=("$f")
done
if [ ${#progs[@]} -eq 0 ]; then
    echo "run-unit: no unit test programs in $BUILD/tests${TESTS:+ matching \"$TESTS\"}"
    exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=()
failed=()
for prog in "${progs[@]}"; do
    name=$(basename "$prog")
    echo "=== $name"
    start=$(date +%s.%N)
    BATCHREP_SRC="$ROOT" timeout -k 10 "$TIMEOUT_S" "$prog" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    closing=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    why=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        why="timed out after ${TIMEOUT_S}s (exit $rc)"
    elif [ "$rc" -ne 0 ]; then
        why="exit status $rc"
    elif [ -z "$closing" ]; then
        why="no closing 'N passed, N failed' line"
    elif ! [[ "$closing" =~ \ 0\ failed$ ]]; then
        why="exit 0 but it reports: $closing"
    fi
    if [ -z "$why" ]; then
        echo "=== $name: PASS (${secs}s) $closing"
        passed+=("$name")
    else
        echo "=== $name: FAIL (${secs}s) $why"
        failed+=("$name: $why")
    fi
done

echo
echo "unit tests: ${#passed[@]} passed, ${#failed[@]} failed (of ${#progs[@]} programs)"
for f in "${failed[@]}"; do
    echo "  FAILED $f"
done
[ ${#failed[@]} -eq 0 ]
