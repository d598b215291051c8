#!/usr/bin/env bash
# check-hardening.sh BUILD — every program the build made (BUILD/bin/*, BUILD/tests/test_*,
# BUILD/tests/tools/*, BUILD/bench/bench_*) carries the Makefile's default hardening:
#   PIE           ELF type DYN (readelf -h)
#   RELRO, now    a GNU_RELRO segment and BIND_NOW / FLAGS_1 NOW (the GOT is read-only
#                 before main runs)
#   stack guard   it calls __stack_chk_fail (-fstack-protector-strong puts a canary in every
#                 function with a local array, and every program of ours has one)
#   fortify       it calls at least one __*_chk function (_FORTIFY_SOURCE >= 1: snprintf,
#                 memcpy, read... checked against the object's size)
# Prints every program that lacks one as PROGRAM: what; exits 1 when there is one.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 BUILD" >&2
    exit 2
fi
BUILD=$1

progs=()
for f in "$BUILD"/bin/* "$BUILD"/tests/test_* "$BUILD"/tests/tools/* "$BUILD"/bench/bench_*; do
    [ -f "$f" ] && [ -x "$f" ] && progs+=("$f")
done
if [ ${#progs[@]} -eq 0 ]; then
    echo "check-hardening: no programs in $BUILD (build first)" >&2
    exit 2
fi

bad=0
for f in "${progs[@]}"; do
    head=$(readelf -h "$f" 2>/dev/null) || { echo "check-hardening: $f: not an ELF file"; bad=$((bad + 1)); continue; }
    segs=$(readelf -lW "$f" 2>/dev/null)
    dyn=$(readelf -dW "$f" 2>/dev/null)
    syms=$(nm -D --undefined-only "$f" 2>/dev/null)
    miss=()
    grep -Eq 'Type:[[:space:]]+DYN' <<<"$head" || miss+=("not a PIE (-fPIE -pie)")
    grep -q 'GNU_RELRO' <<<"$segs" || miss+=("no RELRO (-Wl,-z,relro)")
    grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$dyn" || miss+=("no immediate binding (-Wl,-z,now)")
    grep -q '__stack_chk_fail' <<<"$syms" || miss+=("no stack protector (-fstack-protector-strong)")
    grep -Eq '__[a-z0-9_]+_chk(@|$)' <<<"$syms" || miss+=("not fortified (-D_FORTIFY_SOURCE)")
    for m in "${miss[@]}"; do
        echo "check-hardening: $f: $m"
        bad=$((bad + 1))
    done
done
if [ $bad -ne 0 ]; then
    echo "check-hardening: $bad problem(s) in ${#progs[@]} programs"
    exit 1
fi
echo "check-hardening: ${#progs[@]} programs are PIE, full RELRO, stack-protected and fortified"
