#!/usr/bin/env bash
# run.sh BUILD MODE — runs every libFuzzer target BUILD/fuzz/fuzz_* (Makefile: `make fuzz`,
# `make fuzz-brief`), several at once (FUZZ_JOBS, default: the number of cores).
#
#   MODE brief  what `make test` runs, so CI keeps the targets alive: a regression pass over
#               the corpus (-runs=0: every input once; an input that crashes fails the run),
#               then FUZZ_BRIEF_SECONDS (default 5) of new inputs. New inputs are thrown away.
#   MODE full   `make fuzz`: FUZZ_SECONDS (default 60) of new inputs per target, kept in
#               BUILD/corpus/<target> (not committed) for the next run.
#
# Corpus of a target: BUILD/seed/<target> (tests/fuzz/seed.sh: made from tests/fixtures/ on
# every run), tests/fuzz/corpus/<target> (committed: seeds the fixtures lack, and every input
# that once found a bug), and in full mode BUILD/corpus/<target>. tests/fuzz/<target>.dict,
# when present, is the target's dictionary. A crash, leak, timeout (-timeout=10 s per input)
# or RSS over -rss_limit_mb=2048 leaves its input in BUILD/artifacts/ and fails the target;
# add that input to tests/fuzz/corpus/<target>/ with the fix. Each target's output is in
# BUILD/logs/<target>.log. Prints TAP lines and "N passed, N failed"; exits 1 on a failure.
set -uo pipefail

if [ $# -ne 2 ] || { [ "$2" != brief ] && [ "$2" != full ]; }; then
    echo "usage: $0 BUILD brief|full" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "fuzz: no build folder $1" >&2; exit 2; }
MODE=$2
SECONDS_EACH=${FUZZ_SECONDS:-60}
BRIEF_SECONDS=${FUZZ_BRIEF_SECONDS:-5}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

targets=()
for f in "$BUILD"/fuzz/fuzz_*; do
    [ -f "$f" ] && [ -x "$f" ] && targets+=("$(basename "$f")")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no targets in $BUILD/fuzz (make fuzz-brief builds them)" >&2
    exit 2
fi
bash "$ROOT/tests/fuzz/seed.sh" "$BUILD/seed" >/dev/null || exit 2
mkdir -p "$BUILD/logs" "$BUILD/artifacts" "$BUILD/results"

# One target; its verdict goes to BUILD/results/<target> as "ok|not ok<TAB>text".
run_target() {
    local t=$1 bin=$BUILD/fuzz/$1 log=$BUILD/logs/$1.log res=$BUILD/results/$1
    local dirs=("$BUILD/seed/$t") opts=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                                        "-artifact_prefix=$BUILD/artifacts/$t-")
    [ -d "$ROOT/tests/fuzz/corpus/$t" ] && dirs+=("$ROOT/tests/fuzz/corpus/$t")
    [ -f "$ROOT/tests/fuzz/$t.dict" ] && opts+=("-dict=$ROOT/tests/fuzz/$t.dict")
    local n_inputs start rc new_dir runs
    [ "$MODE" = full ] && mkdir -p "$BUILD/corpus/$t" && dirs=("$BUILD/corpus/$t" "${dirs[@]}")
    n_inputs=$(find "${dirs[@]}" -type f | wc -l)
    start=$(date +%s)
    : >"$log"
    if [ "$MODE" = brief ]; then
        (cd "$BUILD" && "$bin" "${opts[@]}" -runs=0 "${dirs[@]}") >>"$log" 2>&1
        rc=$?
        if [ $rc -ne 0 ]; then
            printf 'not ok\t%s: regression pass over %s inputs failed (exit %s; %s)\n' \
                "$t" "$n_inputs" "$rc" "$log" >"$res"
            return
        fi
        new_dir=$(mktemp -d "$BUILD/new-$t.XXXXXX")
        (cd "$BUILD" && "$bin" "${opts[@]}" -max_total_time="$BRIEF_SECONDS" "$new_dir" \
            "${dirs[@]}") >>"$log" 2>&1
        rc=$?
        rm -rf "$new_dir"
    else # new inputs go to the first folder, BUILD/corpus/<target>
        (cd "$BUILD" && "$bin" "${opts[@]}" -max_total_time="$SECONDS_EACH" "${dirs[@]}") \
            >>"$log" 2>&1
        rc=$?
    fi
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+$')
    if [ $rc -eq 0 ]; then
        printf 'ok\t%s: %s corpus inputs, %s runs in %ss\n' "$t" "$n_inputs" "${runs:-?}" \
            "$(($(date +%s) - start))" >"$res"
    else
        printf 'not ok\t%s: exit %s after %s runs; input in %s/artifacts/, output in %s\n' \
            "$t" "$rc" "${runs:-?}" "$BUILD" "$log" >"$res"
    fi
}

echo "fuzz: ${#targets[@]} targets, mode $MODE ($([ "$MODE" = brief ] &&
    echo "regression + ${BRIEF_SECONDS}s" || echo "${SECONDS_EACH}s") each, $JOBS at a time)"
running=0
for t in "${targets[@]}"; do
    rm -f "$BUILD/results/$t"
    run_target "$t" &
    running=$((running + 1))
    if [ $running -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

n=0 passed=0 failed=0
for t in "${targets[@]}"; do
    n=$((n + 1))
    line=$(cat "$BUILD/results/$t" 2>/dev/null || printf 'not ok\t%s: no result' "$t")
    echo "${line%%$'\t'*} $n - ${line#*$'\t'}"
    case "$line" in ok*) passed=$((passed + 1)) ;; *) failed=$((failed + 1)) ;; esac
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
