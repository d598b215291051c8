# tap-lib.sh — what tests/run-unit.sh and tests/run-integration.sh share (sourced, not run).
#
#   wanted NAME        true when $TESTS is empty or NAME contains one of its (glob) patterns
#   tap_run_all KIND NOUN TIMEOUT_S ITEM...
#                      runs `run_one ITEM TIMEOUT_S` (the caller defines it) for each item,
#                      shows its output, and judges it: it fails when it exits nonzero (a
#                      timeout is 124, a kill 137) or its output lacks the closing TAP line
#                      "N passed, N failed" or says "M failed" with M > 0. Prints a summary
#                      ("KIND: N passed, N failed (of N NOUN)"); returns 1 when any failed.

wanted() {
    [ -z "${TESTS:-}" ] && return 0
    local pat
    for pat in ${TESTS//,/ }; do
        # shellcheck disable=SC2254
        case "$1" in *$pat*) return 0 ;; esac
    done
    return 1
}

tap_run_all() {
    local kind=$1 noun=$2 timeout_s=$3
    shift 3
    local log item name start rc secs closing why
    local passed=() failed=()
    log=$(mktemp)
    for item in "$@"; do
        name=$(basename "$item")
        echo "=== $name"
        start=$(date +%s.%N)
        run_one "$item" "$timeout_s" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        closing=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
        why=""
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            why="timed out after ${timeout_s}s (exit $rc)"
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
    rm -f "$log"
    echo
    echo "$kind: ${#passed[@]} passed, ${#failed[@]} failed (of $# $noun)"
    local f
    for f in "${failed[@]}"; do
        echo "  FAILED $f"
    done
    [ ${#failed[@]} -eq 0 ]
}
