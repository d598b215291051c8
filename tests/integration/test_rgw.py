#!/usr/bin/env python3
"""test_rgw.py — the replication suite's core against Ceph RGW, a production S3 server.

RGW answers differently from moto and AWS in ways the engine must survive
(../shared/test-servers.md §5): SigV4 always checked; HEAD of a delete-marker version is a
404 without x-amz-delete-marker (the engine falls back to ListObjectVersions); a missing
version is NoSuchKey, not NoSuchVersion; CopyObject answers without x-amz-version-id and
with an unquoted ETag; keep-alive connections.

Started by scripts/rgw.sh in a temporary folder on free ports, stopped by PID at the end.
Checked here, as in the moto tests:
  * a CSV job over 40 keys with 1-4 versions each, tags, user metadata and Content-Type,
    delete markers (DeleteMarkerReplication on), a missing version and a missing key: exit 0,
    report rows in AWS's format, every destination key's versions in order with the same
    current version, metadata/tags/Content-Type on the replicas;
  * a 20 MiB version copied in 5 MiB parts (UploadPartCopy), bytes and metadata intact;
  * a crash: kill -9 mid-run, then the same run again: each task reported once, no second
    replica.
Left to the moto suite, with the reason:
  * rules from the bucket (GetBucketReplication): RGW refuses PutBucketReplication (405);
  * Object Lock: RGW copies the source's lock itself and ignores the request's lock headers,
    so the replica's lock says nothing about the engine;
  * ACL grants: RGW refuses grants to canonical IDs it does not know (403);
  * SSE-KMS: no KMS here;
  * Inventory / generated manifests and the fault proxy: they test manifest readers and the
    retry logic, which do not depend on the server.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::rdst"}}]}


def main():
    t = h.Tap()
    script = os.path.join(h.REPO_ROOT, "scripts", "rgw.sh")
    with tempfile.TemporaryDirectory() as tmp:
        rgw_dir = os.path.join(tmp, "rgw")
        # the mon keeps its default port 6789: with another one the OSD fails "wrong fsid"
        env_rgw = dict(os.environ, RGW_PORT=str(h.free_port()))
        # A Ceph cluster in RAM starts in about 12 s here, but once in a while a start hangs
        # (seen once in ~10 runs, under check-asan's load): one clean second try, with the
        # first try's daemon logs printed so the cause stays visible.
        for attempt in (1, 2):
            start = subprocess.run(["bash", script, "start", rgw_dir], env=env_rgw,
                                   capture_output=True, text=True, timeout=600)
            if start.returncode == 0:
                break
            t.diag(f"rgw.sh start, try {attempt}: {start.stderr.strip()[-500:]}")
            for log in ("rgw.out", "osd.out", "log/osd.0.log", "log/client.rgw.a.log"):
                try:
                    with open(os.path.join(rgw_dir, log), errors="replace") as f:
                        t.diag(f"{log}: " + " | ".join(f.read().splitlines()[-3:])[-600:])
                except OSError:
                    pass
            subprocess.run(["bash", script, "stop", rgw_dir], env=env_rgw,
                           capture_output=True, text=True, timeout=300)
            shutil.rmtree(rgw_dir, ignore_errors=True)
        try:
            if not t.ok(start.returncode == 0, "Ceph RGW started by scripts/rgw.sh"):
                t.diag(start.stderr[-2000:])
                t.done()
            url = start.stdout.strip().splitlines()[-1]
            run_suite(t, url, tmp)
        finally:
            subprocess.run(["bash", script, "stop", rgw_dir], env=env_rgw,
                           capture_output=True, text=True, timeout=300)
    t.done()


def run_suite(t, url, tmp):
    s3 = h.s3_client(url, retries=3)
    for b in ("rsrc", "rdst", "rreports", "rmanifests"):
        h.make_bucket(s3, b)
    env = h.batchrep_env(url)
    rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
    state = os.path.join(tmp, "state")

    # ---- CSV job: versions, delete markers, metadata, tags, missing rows ----
    made = {}
    for i in range(40):
        key = f"k/{i:02d} file+{i}.txt"
        n = 1 + i % 4
        bodies = [f"{key} v{j}" for j in range(n)]
        if i % 5 == 2:
            bodies.append(h.DELETE)
        made[key] = h.put_versions(s3, "rsrc", key, bodies, separate_s=False,
                                   Metadata={"n": str(i)}, ContentType="text/x-rgw",
                                   Tagging=f"i={i}")
    rows = [("rsrc", k, v["VersionId"]) for k, vs in made.items() for v in reversed(vs)]
    rows.append(("rsrc", "k/00 file+0.txt", "no-such-version"))
    rows.append(("rsrc", "k/none", "no-such-version"))
    arn, etag = h.upload_manifest(s3, "rmanifests", "m.csv", rows)
    job = h.write_json(os.path.join(tmp, "job.json"),
                       h.job_document(arn, etag, h.bucket_arn("rreports"), prefix="r"))
    res = h.run_batchrep(["run", job, "--replication-config", rules, "--state-dir", state,
                          "--no-progress"], env)
    t.eq(res.returncode, 0, "CSV job on RGW: exit 0")
    if res.returncode:
        t.diag(res.stderr[-2000:])
    d = json.loads(res.stdout)["Job"]
    ps = d["ProgressSummary"]
    n_versions = sum(len(v) for v in made.values())
    t.eq((ps["NumberOfTasksSucceeded"], ps["NumberOfTasksFailed"]), (n_versions, 2),
         "every version succeeded, the two missing rows failed")
    rep = h.read_report(s3, "rreports", "r", d["JobId"])
    failed = sorted((r[1], r[4], r[5]) for r in rep["rows"]["failed"])
    t.eq(failed, [("k/00%20file%2B0.txt", "404", "SrcVersionNotFound"),
                  ("k/none", "404", "SrcKeyNotFound")],
         "missing version / missing key rows (RGW says NoSuchKey for both)")
    t.ok(all(r[3:] == ["succeeded", "200", "", "success"] for r in rep["rows"]["succeeded"]),
         "succeeded rows read succeeded,200,,success")
    bad = []
    for key, vs in made.items():
        got = list(reversed(h.list_versions(s3, "rdst", key=key)))
        want = [(v["IsDeleteMarker"], v["ETag"]) for v in vs]
        have = [(g["IsDeleteMarker"], g["ETag"] if not g["IsDeleteMarker"] else None)
                for g in got]
        if have != want:
            bad.append((key, want, have))
    t.eq(len(bad), 0, "every key's versions replicated once, in order, same current version")
    for b in bad[:3]:
        t.diag(f"{b[0]!r}: want {b[1]} have {b[2]}")
    head = s3.head_object(Bucket="rdst", Key="k/01 file+1.txt")
    tags = s3.get_object_tagging(Bucket="rdst", Key="k/01 file+1.txt")["TagSet"]
    t.eq((head["Metadata"], head["ContentType"], tags),
         ({"n": "1"}, "text/x-rgw", [{"Key": "i", "Value": "1"}]),
         "metadata, Content-Type and tags on the replica")

    # ---- a 20 MiB version in 5 MiB parts ----
    big = os.urandom(20 << 20)
    v = s3.put_object(Bucket="rsrc", Key="big/blob", Body=big, Metadata={"size": "20m"},
                      ContentType="application/x-big")
    arn, etag = h.upload_manifest(s3, "rmanifests", "big.csv", [("rsrc", "big/blob", v["VersionId"])])
    job = h.write_json(os.path.join(tmp, "big.json"),
                       h.job_document(arn, etag, h.bucket_arn("rreports"), prefix="big"))
    res = h.run_batchrep(["run", job, "--replication-config", rules, "--state-dir", state,
                          "--no-progress", "--multipart-threshold-bytes", str(5 << 20),
                          "--part-size-bytes", str(5 << 20)], env)
    t.eq(res.returncode, 0, "20 MiB multipart job on RGW: exit 0")
    o = s3.get_object(Bucket="rdst", Key="big/blob")
    body = o["Body"].read()
    t.ok(body == big, "20 MiB replica equals the source byte for byte")
    t.ok(o["ETag"].strip('"').endswith("-4"), f"it was copied in 4 parts ({o['ETag']})")
    t.eq((o["Metadata"], o["ContentType"]), ({"size": "20m"}, "application/x-big"),
         "metadata survives the multipart path")

    # ---- kill -9 mid-run, then run again ----
    keys = []
    for i in range(600):
        k = f"crash/{i:04d}"
        keys.append(("rsrc", k, s3.put_object(Bucket="rsrc", Key=k, Body=k.encode())["VersionId"]))
    arn, etag = h.upload_manifest(s3, "rmanifests", "crash.csv", keys)
    job = h.write_json(os.path.join(tmp, "crash.json"), h.job_document(
        arn, etag, h.bucket_arn("rreports"), prefix="crash", client_token="rgw-crash"))
    cmd = [h.batchrep_bin(), "run", job, "--replication-config", rules, "--state-dir", state,
           "--no-progress", "--concurrency", "8"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    killed = p.poll() is None
    if killed:
        p.send_signal(signal.SIGKILL)
    p.wait()
    t.ok(killed, "killed with SIGKILL mid-run")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    t.eq(res.returncode, 0, "the second run completes the job")
    d = json.loads(res.stdout)["Job"]
    rep = h.read_report(s3, "rreports", "crash", d["JobId"])
    got = sorted((r[1], r[2]) for r in rep["rows"]["succeeded"] + rep["rows"]["failed"])
    t.eq(got, sorted((k, v) for _, k, v in keys), "exactly one report row per manifest line")
    counts = {}
    for v in h.list_versions(s3, "rdst", prefix="crash/"):
        counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    t.eq(sorted(set(counts.values())), [1], "exactly one replica per version after the crash")


if __name__ == "__main__":
    main()
