#!/usr/bin/env python3
"""test_crash.py — kill -9 at random moments loses no task and reports none twice.

5,000 source versions on moto (4,900 keys with one version, 50 keys with two), listed in a
shuffled order (Preparing sorts them by key) and cut into shards of about 700 rows
(--shard-rows 700), so kills land in different shards and between them. moto's ListObjectVersions costs it 0.1-0.5 s a call once the bucket holds
thousands of versions (it scans them all), so most keys take the one-version path (HEAD,
then CopyObject) and 50 keys take the listing path. `batchrep run` is killed with SIGKILL at a random moment 6 times in a row;
each new `run` of the same document (same ClientRequestToken: the same job) continues from
the job's last checkpoint. Checked at the end (DESIGN.md "Crash safety"):
  * the job is Complete and its ProgressSummary counts every task once;
  * the report has exactly one row per manifest line, and manifest.json's MD5s match;
  * every source version has exactly one replica, in order (ETag sequence per key equal),
    so the destination's current versions equal the source's.
"""
import json
import os
import random
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
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}
KILLS = 6


def main():
    t = h.Tap()
    rnd = random.Random(int(os.environ.get("BATCHREP_CRASH_SEED", time.time())))
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(s3, b)
        src = {}
        for i in range(4900):
            k = f"one/{i:05d}"
            src[k] = [s3.put_object(Bucket="src", Key=k, Body=f"{k}".encode())]
        for v in range(2):
            for i in range(50):
                k = f"two/{i:05d}"
                src.setdefault(k, []).append(
                    s3.put_object(Bucket="src", Key=k, Body=f"{k} v{v}".encode()))
        rows = [("src", k, r["VersionId"]) for k, vs in src.items() for r in reversed(vs)]
        rnd.shuffle(rows)
        t.eq(len(rows), 5000, "5,000 source versions")
        arn, etag = h.upload_manifest(s3, "manifests", "crash.csv", rows)
        job = h.write_json(os.path.join(tmp, "job.json"), h.job_document(
            arn, etag, h.bucket_arn("reports"), prefix="crash", client_token="crash-test"))
        rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
        env = h.batchrep_env(moto.url)
        cmd = [h.batchrep_bin(), "run", job, "--replication-config", rules, "--state-dir",
               os.path.join(tmp, "state"), "--no-progress", "--concurrency", "16",
               "--shard-rows", "700"]
        kills = 0
        for n in range(KILLS):
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rnd.uniform(0.5, 3.0))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait()
        t.ok(kills >= 5, f"killed with SIGKILL {kills} times mid-run")
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        t.eq(res.returncode, 0, "the final run completes the job (exit 0)")
        if res.returncode:
            t.diag(res.stderr[-2000:])
        d = json.loads(res.stdout)["Job"]
        ps = d["ProgressSummary"]
        t.eq((d["Status"], ps["TotalNumberOfTasks"], ps["NumberOfTasksSucceeded"],
              ps["NumberOfTasksFailed"]), ("Complete", 5000, 5000, 0),
             "Complete, every task counted once")
        rep = h.read_report(s3, "reports", "crash", d["JobId"])
        got = [(r[1], r[2]) for r in rep["rows"]["succeeded"] + rep["rows"]["failed"]]
        t.eq(len(got), 5000, "the report has 5,000 rows")
        t.eq(sorted(got), sorted((k, v) for _, k, v in rows),
             "exactly one report row per manifest line")
        t.ok(all(r["MD5Checksum"] == h.md5_hex(r["Body"]) for r in rep["results"]),
             "manifest.json MD5s match the results files")
        t.eq(len(rep["results"]), 8,
             "one succeeded results file per shard: 5,000 rows in shards of about 700")
        bad = []
        listing = {}
        for v in h.list_versions(s3, "dst"):
            listing.setdefault(v["Key"], []).append(v)
        for k, vs in src.items():
            want = [r["ETag"] for r in vs]
            have = [v["ETag"] for v in reversed(listing.get(k, []))]
            if have != want:
                bad.append((k, want, have))
        t.eq(len(bad), 0, "every source version has exactly one replica, in order")
        for b in bad[:5]:
            t.diag(f"{b[0]}: want {b[1]} have {b[2]}")
    t.done()


if __name__ == "__main__":
    main()
