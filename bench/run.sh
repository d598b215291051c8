#!/usr/bin/env bash
# run.sh BUILD — runs the benchmarks and prints their machine-readable lines, after a header
# naming the machine (nproc, CPU model) so results can be recorded in bench/RESULTS.md.
set -euo pipefail
BUILD=${1:-build}
echo "machine nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\""
echo "command $BUILD/bench/bench_hotpath ${BENCH_ROWS:-2000000} ${BENCH_RUNS:-5}"
"$BUILD/bench/bench_hotpath" "${BENCH_ROWS:-2000000}" "${BENCH_RUNS:-5}"
