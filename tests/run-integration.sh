#!/usr/bin/env bash
# run-integration.sh BUILD — run every integration test tests/integration/test_*.py.
#
# Each test runs as `timeout 900 python3 FILE` (or the limit its "# timeout-s: N" line asks) from the repository root with
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

. "$ROOT/tests/tap-lib.sh"

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

# A test may ask for a longer limit with a line "# timeout-s: N" (test_fleet.py: three
# workers and a 20,000-version job on moto, twice).
run_one() {
    local limit
    limit=$(grep -m1 -oE '^# timeout-s: [0-9]+$' "$1" | grep -oE '[0-9]+$')
    BATCHREP_BIN="$BUILD/bin/batchrep" BATCHREP_BUILD="$BUILD" BATCHREP_SRC="$ROOT" \
        PYTHONUNBUFFERED=1 timeout -k 10 "${limit:-$2}" python3 "$1"
}
tap_run_all "integration tests" files "$TIMEOUT_S" "${tests[@]}"
