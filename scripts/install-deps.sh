#!/usr/bin/env bash
# install-deps.sh — install the Debian packages batchrep needs to build and test.
#
# Idempotent: when every package is already installed (checked with dpkg-query) it prints one
# line and exits at once, without touching apt. Otherwise it runs `apt-get update` and
# `apt-get install -y --no-install-recommends` of the missing ones (sudo only when not root).
# boto3 and moto come from the machine's python3 (pyenv), not from Debian: they are checked,
# never installed here, and a clear error says so when they are missing.
set -euo pipefail

PACKAGES=(
    build-essential pkg-config
    libcurl4-openssl-dev libcsv-dev libexpat1-dev libjansson-dev libssl-dev
    zlib1g-dev libzstd-dev libsqlite3-dev libmicrohttpd-dev
    # the shared catalogue (jobs/store_pg.c links libpq); the server for its tests
    libpq-dev postgresql
    python3 curl zstd gzip time
    radosgw ceph-mon ceph-osd
    # the libFuzzer targets (tests/fuzz/; make fuzz, and make test's brief pass): Debian 12's
    # clang is clang 14, whose libFuzzer runtime is a package of its own
    clang libfuzzer-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#PACKAGES[@]} Debian packages already installed"
else
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "install-deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "install-deps: missing: ${missing[*]}"
    echo "install-deps: ${SUDO[*]:+${SUDO[*]} }apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    echo "install-deps: ${SUDO[*]:+${SUDO[*]} }apt-get install -y --no-install-recommends ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
    echo "install-deps: installed ${#missing[@]} package(s)"
fi

# The integration tests and the demo drive moto_server and boto3 from the python3 on PATH.
# find_spec, not import: importing moto costs about 0.7 s and this check should be instant.
if ! python3 -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("boto3") and u.find_spec("moto")))' >/dev/null 2>&1; then
    echo "install-deps: ERROR: python3 ($(command -v python3 || echo 'not found')) cannot import boto3 and moto;" >&2
    echo "install-deps: the integration tests need them (pip install boto3 'moto[server]')" >&2
    exit 1
fi
if ! command -v moto_server >/dev/null 2>&1; then
    echo "install-deps: ERROR: moto_server is not on PATH (it comes with 'moto[server]')" >&2
    exit 1
fi
echo "install-deps: python3 has boto3 and moto; moto_server is on PATH"
