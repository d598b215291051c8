#!/usr/bin/env bash
# run-integration.sh BUILD — run every integration test tests/integration/test_*.py.
#
# Each test runs as `timeout 900 python3 FILE` from the repository root with
#   BATCHREP_BIN=<abs BUILD>/bin/batchrep  BATCHREP_BUILD=<abs BUILD>  BATCHREP_SRC=<repo root>
# It starts its own servers on 127.0.0.1 (see tests/integration/harness.py). Its output is shown
# as it runs. A test fails when it exits nonzero (a timeout is 124, a kill 137) or when its
# output lacks the closing TAP line "N passed, N failed" or says "M failed" with M > 0.
# Prints a summary; exits 1 when any test failed.
# Optional filter: TESTS="pat1 pat2" runs only files whose name contains one of the (glob)
# patterns, e.g. `make integration TESTS=fault`.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "run-integration: no build folder $1" >&2; exit 2; }
TIMEOUT_S=900
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

tests=()
for f in tests/integration/test_*.py; do
    [ -f "$f" ] || continue
    wanted "$(basename "$f")" && tests+=("$f")
done
if [ ${#tests[@]} -eq 0 ]; then
    echo "run-integration: no integration tests${TESTS:+ matching \"$TESTS\"}"
    exit 0
fi
if [ ! -x "$BUILD/bin/batchrep" ]; then
    echo "run-integration: warning: $BUILD/bin/batchrep is missing; tests that run it will fail"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=()
failed=()
for t in "${tests[@]}"; do
    name=$(basename "$t")
    echo "=== $name"
    start=$(date +%s.%N)
    BATCHREP_BIN="$BUILD/bin/batchrep" BATCHREP_BUILD="$BUILD" BATCHREP_SRC="$ROOT" \
        PYTHONUNBUFFERED=1 timeout -k 10 "$TIMEOUT_S" python3 "$t" 2>&1 | tee "$log"
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
echo "integration tests: ${#passed[@]} passed, ${#failed[@]} failed (of ${#tests[@]} files)"
for f in "${failed[@]}"; do
    echo "  FAILED $f"
done
[ ${#failed[@]} -eq 0 ]
