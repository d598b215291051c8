#!/usr/bin/env bash
# rgw.sh start|stop|env|status [DIR] — a standalone Ceph RGW (16.2 pacific, Debian packages)
# on 127.0.0.1 for benchmarks: one mon, one memstore OSD (data in RAM, lost on stop), radosgw
# beast on 127.0.0.1:${RGW_PORT:-7480}, cephx off, user testing/testing.
#
#   start   installs radosgw ceph-mon ceph-osd with apt-get when missing, creates the cluster
#           in DIR (default /tmp/batchrep-rgw) unless it is already running there, waits until
#           S3 answers (1-2 min the first time), creates the user, prints the endpoint URL;
#           refuses while another cluster's mon holds 127.0.0.1:6789 (its daemons would
#           join that cluster)
#   stop    kills the daemons by the PIDs recorded in DIR (never by name), waits for them
#   env     prints export lines for AWS_ENDPOINT_URL / keys / region
#   status  exit 0 when S3 answers
#
# Recipe and why each setting: ../shared/test-servers.md §5 (pg num 8 and mon max pg per osd
# 1000 or pool creation fails on one OSD; ceph-osd and radosgw run with -f under nohup since
# a daemonized ceph-osd dies with "wrong fsid"). Everything binds to 127.0.0.1 only.
set -euo pipefail

CMD=${1:-}
DIR=$(realpath -m "${2:-${RGW_DIR:-/tmp/batchrep-rgw}}")
PORT=${RGW_PORT:-7480}
MON_PORT=${RGW_MON_PORT:-6789}
URL="http://127.0.0.1:$PORT"

answers() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL/" 2>/dev/null | grep -qE '^(200|403)$'; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_pkgs() {
    if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null ||
        ! command -v ceph-osd >/dev/null; then
        echo "rgw.sh: installing radosgw ceph-mon ceph-osd" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            radosgw ceph-mon ceph-osd >&2
    fi
}

start() {
    install_pkgs
    if alive "$DIR/rgw.pid" && answers; then
        echo "$URL"
        return 0
    fi
    if answers; then
        echo "rgw.sh: something else already answers on $URL (another RGW dir?); stop it or set RGW_PORT" >&2
        exit 1
    fi
    case "$DIR" in / | "$HOME" | /tmp | /work) echo "rgw.sh: refusing to use $DIR" >&2; exit 2 ;; esac
    stop >/dev/null 2>&1 || true
    if (exec 3<>"/dev/tcp/127.0.0.1/$MON_PORT") 2>/dev/null; then
        # a second cluster's daemons would join this mon ("wrong fsid", or an OSD of the
        # other cluster): one Ceph cluster per machine
        echo "rgw.sh: 127.0.0.1:$MON_PORT (ceph-mon) is taken: another Ceph cluster runs here; stop it first (rgw.sh stop ITS_DIR)" >&2
        exit 1
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"/{run,log,mon,osd,rgw}
    cd "$DIR"
    local fsid
    fsid=$(cat /proc/sys/kernel/random/uuid)
    cat > ceph.conf <<EOF
[global]
fsid = $fsid
mon initial members = a
mon host = v1:127.0.0.1:$MON_PORT
public network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 4294967296
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
mon data = $DIR/mon/\$cluster-\$id
osd data = $DIR/osd/\$cluster-\$id
keyring = $DIR/keyring
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
EOF
    ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool keyring --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' >/dev/null
    # --addv with an explicit v1 address: with --add, a port other than 6789 is taken as
    # msgr2, which "ms bind msgr2 = false" never listens on (clients then hang in auth)
    monmaptool --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$fsid" monmap >/dev/null
    ceph-mon -c ceph.conf --mkfs -i a --monmap monmap --keyring keyring
    nohup ceph-mon -c ceph.conf -i a -f > mon.out 2>&1 &
    echo $! > mon.pid
    local id u
    u=$(cat /proc/sys/kernel/random/uuid)
    id=$(timeout 60 ceph -c ceph.conf osd new "$u")
    mkdir -p "osd/ceph-$id"
    ceph-osd -c ceph.conf -i "$id" --mkfs --osd-uuid "$u" > osd-mkfs.out 2>&1
    nohup ceph-osd -c ceph.conf -i "$id" -f > osd.out 2>&1 &
    echo $! > osd.pid
    nohup radosgw -c ceph.conf -n client.rgw.a -f > rgw.out 2>&1 &
    echo $! > rgw.pid
    local i
    for i in $(seq 1 240); do
        answers && break
        alive rgw.pid || { echo "rgw.sh: radosgw exited; see $DIR/rgw.out" >&2; exit 1; }
        sleep 1
    done
    answers || { echo "rgw.sh: S3 did not answer on $URL after 240 s" >&2; exit 1; }
    radosgw-admin -c ceph.conf user create --uid=testing --display-name=testing \
        --access-key=testing --secret-key=testing > user.json 2>> radosgw-admin.err
    echo "$URL"
}

stop() {
    local f pids=()
    for f in rgw osd mon; do
        if alive "$DIR/$f.pid"; then
            pids+=("$(cat "$DIR/$f.pid")")
            kill "$(cat "$DIR/$f.pid")" 2>/dev/null || true
        fi
    done
    local p i
    for p in "${pids[@]}"; do
        for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -f "$DIR"/{rgw,osd,mon}.pid
}

case "$CMD" in
start) start ;;
stop) stop ;;
env)
    echo "export AWS_ENDPOINT_URL=$URL AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
    ;;
status) answers ;;
*)
    echo "usage: scripts/rgw.sh start|stop|env|status [DIR]" >&2
    exit 2
    ;;
esac
