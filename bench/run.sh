#!/usr/bin/env bash
# run.sh BUILD [full] — runs the benchmarks and prints their machine-readable lines, after a
# header naming the machine (nproc, CPU model) so results can be recorded in bench/RESULTS.md.
#   make bench        the hot-path micro-benchmarks only (< 1 min), and Preparing's sort of a
#                     shuffled 1,000,000-row manifest (bench_prepare 1000000 3: read + sort +
#                     merge + write of the spool, peak RSS of the build alone); the 10 M-row
#                     run is `$BUILD/bench/bench_prepare 10000000 1` (about 1 GB of manifest
#                     in $TMPDIR, 10-15 s)
#   make bench-full   (or BENCH=all make bench) also the end-to-end ones: the instant canned
#                     endpoint (batchrep with a CSV and an Inventory manifest vs rclone vs the
#                     bare libcurl loop, at concurrency 64 and 256), the scale run
#                     (BENCH_SCALE_ROWS, default 1000000,10000000 rows streamed through the
#                     engine), and Ceph RGW (scripts/rgw.sh; batchrep vs rclone vs aws s3 cp vs
#                     the bare request loop, 10,000 versions, 1 and 3 versions per key).
#                     Needs rclone and radosgw (installed with apt-get when missing).
set -euo pipefail
BUILD=${1:-build}
WHAT=${2:-${BENCH:-hot}}
echo "machine nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\""
echo "command $BUILD/bench/bench_hotpath ${BENCH_ROWS:-2000000} ${BENCH_RUNS:-5}"
"$BUILD/bench/bench_hotpath" "${BENCH_ROWS:-2000000}" "${BENCH_RUNS:-5}"
echo "command $BUILD/bench/bench_prepare 1000000 3"
"$BUILD/bench/bench_prepare" 1000000 3
if [[ "$WHAT" == full || "$WHAT" == all ]]; then
    command -v rclone >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y rclone >&2
    export BUILD
    python3 bench/e2e.py instant --tasks "${BENCH_INSTANT_TASKS:-200000}" --conc 64,256 --runs 3
    python3 bench/e2e.py scale --rows "${BENCH_SCALE_ROWS:-1000000,10000000}" --conc 256
    python3 bench/e2e.py rgw --objects 10000 --conc 32 --runs "${BENCH_RGW_RUNS:-1}" --versions 1,3 --stop
fi
