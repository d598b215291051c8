#!/usr/bin/env bash
# check-includes.sh — every #include "room/..." points down the layers of DESIGN.md
# ("Layout"), and no internal header (*_int.h) is included from outside its room, except
# by tests/ and bench/, which test and measure a room's internals (run/spool.c's sort is
# reached only through run/run_int.h), as curl's unit tests include lib/'s private headers.
#
#   cli -> run -> {jobs, engine} -> replicate -> {manifest, report} -> s3
#
# A room may include its own headers and the public header (room/room.h) of any room below
# it; jobs and engine never include each other; tests/, bench/ and tools may include any
# public header. Prints every offence as FILE:LINE: what; exits 1 when there is one.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

declare -A below=(
    [s3]=""
    [manifest]="s3"
    [report]="s3"
    [replicate]="manifest report s3"
    [engine]="replicate manifest report s3"
    [jobs]="replicate manifest report s3"
    [run]="jobs engine replicate manifest report s3"
    [api]="run jobs engine replicate manifest report s3"
    [cli]="run jobs api replicate manifest report s3"
)

bad=0
checked=0
while IFS= read -r f; do
    room=${f%%/*}
    checked=$((checked + 1))
    while IFS=: read -r line inc; do
        target=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$inc")
        troom=${target%%/*}
        tfile=${target#*/}
        [ "$troom" = "$target" ] && continue            # not a room header
        if [[ "$tfile" == *_int.h && "$troom" != "$room" && "$room" != tests && "$room" != bench ]]; then
            echo "check-includes: $f:$line: includes $target, another room's internal header"
            bad=$((bad + 1))
            continue
        fi
        [ "$troom" = "$room" ] && continue
        case "$room" in tests | bench) continue ;; esac
        if [ -z "${below[$room]+x}" ]; then
            echo "check-includes: $f:$line: $room/ is not a room of DESIGN.md's layout"
            bad=$((bad + 1))
            continue
        fi
        if [[ " ${below[$room]} " != *" $troom "* ]]; then
            echo "check-includes: $f:$line: $room/ must not include $target ($room may use: ${below[$room]:-nothing of ours})"
            bad=$((bad + 1))
        fi
    done < <(grep -n '^#include "' "$f")
done < <(git ls-files '*.c' '*.h' 2>/dev/null; git ls-files --others --exclude-standard '*.c' '*.h' 2>/dev/null)

if [ "$bad" -ne 0 ]; then
    echo "check-includes: FAILED: $bad include(s) against the layers"
    exit 1
fi
echo "check-includes: OK: $checked file(s), every include points down the layers"
