#!/usr/bin/env python3
"""test_retries_faults.py — retries with backoff through a fault-injecting proxy.

batchrep talks to moto through tests/integration/faultproxy.py, which answers some requests
itself with 503 SlowDown, 500 InternalError, a reset connection, or (CopyObject) a 200 OK
whose body is an <Error> document (aws-formats.md §8.1: a failure, to be retried). Every
fault hits only the first try of a request (unique=True), so every task must still end
succeeded. Checked: exit 0, every report row succeeded, every faulted request was sent again
after a delay > 0 (backoff), the retries show up in the proxy log, and each destination key
holds exactly one replica per source version (a fault that was not forwarded must not leave
an extra version).
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from faultproxy import FaultProxy, Rule  # noqa: E402

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}

PLAN = [
    Rule("copy200", op="CopyObject", every=4, unique=True),
    Rule("slowdown", op="CopyObject", every=5, unique=True),
    Rule("internal", op="ListObjectVersions", every=6, unique=True),
    Rule("reset", op="CopyObject", every=7, unique=True),
    Rule("slowdown", op="DeleteObject", every=2, unique=True),
]


def main():
    t = h.Tap()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(s3, b)
        rows, made = [], {}
        for i in range(60):
            key = f"f/{i:02d}"
            bodies = [f"{key} a", f"{key} b"] + ([h.DELETE] if i % 10 == 0 else [])
            vers = h.put_versions(s3, "src", key, bodies, separate_s=False)
            made[key] = vers
            rows += [("src", key, v["VersionId"]) for v in reversed(vers)]
        arn, etag = h.upload_manifest(s3, "manifests", "m.csv", rows)
        job = h.write_json(os.path.join(tmp, "job.json"),
                           h.job_document(arn, etag, h.bucket_arn("reports")))
        rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
        with FaultProxy(moto.url, PLAN) as proxy:
            res = h.run_batchrep(["run", job, "--replication-config", rules, "--state-dir",
                                  os.path.join(tmp, "state"), "--retry-base-ms", "20",
                                  "--retry-cap-ms", "500", "--no-progress"],
                                 h.batchrep_env(proxy.url))
            proxy.wait_idle()
            counts = proxy.counts()
            retries = proxy.retries()
            unretried = proxy.unretried()
        t.eq(res.returncode, 0, "exit 0")
        if res.returncode:
            t.diag(res.stderr[-2000:])
        desc = json.loads(res.stdout)["Job"]
        ps = desc["ProgressSummary"]
        t.eq((ps["NumberOfTasksSucceeded"], ps["NumberOfTasksFailed"]), (len(rows), 0),
             "every task succeeded despite the faults")
        for kind in ("copy200", "slowdown", "internal", "reset"):
            t.ok(counts.get(kind, 0) > 0, f"the proxy injected {kind} ({counts.get(kind, 0)} times)")
        t.eq(unretried, [], "every faulted request was sent again, after a delay")
        t.ok(len(retries) == counts["faults"] and all(r["delay_s"] > 0 for r in retries),
             f"{len(retries)} retries, each after a backoff delay > 0")
        rep = h.read_report(s3, "reports", "reports", desc["JobId"])
        t.eq(len(rep["rows"]["succeeded"]), len(rows), "one succeeded report row per manifest row")
        t.eq(rep["rows"]["failed"], [], "no failed rows")
        dup = []
        for key, vers in made.items():
            got = h.list_versions(s3, "dst", key=key)
            if len(got) != len(vers) or got[0]["IsDeleteMarker"] != vers[-1]["IsDeleteMarker"]:
                dup.append((key, len(got), len(vers)))
        t.eq(dup, [], "each destination key has one replica per source version, current = source's")
    t.done()


if __name__ == "__main__":
    main()
