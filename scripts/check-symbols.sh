#!/usr/bin/env bash
# check-symbols.sh OBJ... — every global symbol an object defines carries a module prefix.
#
# STYLE.md "Names say what and whose": exported symbols start with s3_ mf_ rpt_ repl_ eng_ jobs_ run_ cli_ or
# tap_ (cross-file internals such as eng__x start with their prefix too); `main` is the one exception.
# Runs `nm -g --defined-only` over the objects and lists every offender with its object file.
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 OBJ..." >&2
    exit 2
fi

bad=0
checked=0
for obj in "$@"; do
    if [ ! -f "$obj" ]; then
        echo "check-symbols: $obj: no such file" >&2
        bad=$((bad + 1))
        continue
    fi
    if ! syms=$(nm -g --defined-only "$obj"); then
        echo "check-symbols: $obj: nm failed" >&2
        bad=$((bad + 1))
        continue
    fi
    checked=$((checked + 1))
    # nm lines: "ADDRESS TYPE NAME" (ADDRESS is blank for some types); take the last field.
    while read -r name; do
        [ -z "$name" ] && continue
        case "$name" in
            main | s3_* | mf_* | rpt_* | repl_* | eng_* | jobs_* | run_* | cli_* | tap_*) ;;
            *)
                echo "check-symbols: $obj: global symbol without a module prefix: $name"
                bad=$((bad + 1))
                ;;
        esac
    done < <(printf '%s\n' "$syms" | awk 'NF >= 2 { print $NF }')
done

if [ "$bad" -ne 0 ]; then
    echo "check-symbols: FAILED: $bad problem(s) in $checked object(s)"
    exit 1
fi
echo "check-symbols: OK: $checked object(s), every global symbol has a module prefix"
