#!/usr/bin/env bash
# demo.sh BIN — a real replication job on a local S3 server, start to finish.
#
# Starts moto_server on a free 127.0.0.1 port, creates a versioned source bucket with sample
# data (several versions per key, a delete marker, metadata and tags), two destination
# buckets and a replication configuration, uploads a CSV manifest of every version (newest
# first, as ListObjectVersions gives them), runs `batchrep run`, then prints the DescribeJob
# JSON, where the report is, and the report itself. moto is stopped (by PID) at the end.
set -euo pipefail
BIN=${1:-build/bin/batchrep}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/batchrep-demo.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT

moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null; wait $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "$URL" && break; sleep 0.2; done

echo "== local S3 server: moto_server at $URL (pid $MOTO_PID); work folder $WORK"
export AWS_ENDPOINT_URL=$URL AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_CA_BUNDLE

python3 scripts/demo_data.py "$URL" "$WORK"
echo
echo "== job document ($WORK/job.json):"
cat "$WORK/job.json"
echo
echo "== replication configuration ($WORK/replication.json):"
cat "$WORK/replication.json"
echo
echo "== batchrep run $WORK/job.json --replication-config $WORK/replication.json"
set +e
"$BIN" run "$WORK/job.json" --replication-config "$WORK/replication.json" \
    --state-dir "$WORK/state" >"$WORK/describe.json"
rc=$?
set -e
cat "$WORK/describe.json"
echo "(exit status $rc)"
JOB_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Job"]["JobId"])' "$WORK/describe.json")
echo
echo "== the completion report is in s3://demo-reports/batch-replication/job-$JOB_ID/"
echo "   (a local copy: $WORK/state/jobs/$JOB_ID/report/)"
python3 scripts/demo_data.py "$URL" "$WORK" --show "$JOB_ID"
exit $rc
