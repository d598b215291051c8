#!/usr/bin/env python3
"""test_manifest_kinds.py — the manifest kinds other than a hand-made CSV, end to end on moto.

Source bucket `src` (versioned):
  a/1                 v1 10 bytes, v2 500 bytes
  a/2                 v1 20 bytes, then a delete marker (current)
  b/sp ace+plus       v1 30 bytes  (a key Inventory writes with '+' for the space)
  c/big               2000 bytes   (no rule matches: not eligible)
  logs/x.log          5 bytes      (no rule matches)
  a/late.txt          400 bytes, created after time T (CreatedBefore T leaves it out)

1. Inventory (S3InventoryReport_CSV_20161130): a report built from the real listing with
   tests/fixtures/make_inventory.py (full schema, every field quoted, 2 gzip data files,
   AWS's folder layout) in bucket `inv`; rules: a/ and b/ -> dst1 (delete markers on).
   Checks: every row reported once in AWS's format with the key as the inventory wrote it
   ('+' for space), dst1 holds a/1's two versions oldest first, a/2's delete marker as
   current, the b/ key; and no HEAD or ListObjectVersions was sent to src for the rows (the
   inventory's facts stood in for them).
2. Generated manifest (ManifestGenerator) with Filter EligibleForReplication,
   KeyNameConstraint.MatchAnyPrefix [a/, c/], ObjectSizeGreaterThanBytes 15, CreatedBefore T,
   MatchAnyStorageClass [STANDARD], ObjectReplicationStatuses [NONE]; rules -> dst2;
   EnableManifestOutput to `genout` prefix gen. Checks: exactly a/1 v2 and a/2 v1 replicated
   and reported; the output (manifest.json, manifest.checksum, gzip data file, MD5s) and
   DescribeJob's GeneratedManifestDescriptor.
3. Re-replication (Report_CSV_20180820 as the manifest format): a CSV job whose a/ rows fail
   (rule a/ -> dst3, which does not exist yet), b/ succeeds, c/big is not eligible; dst3 is
   created; a second job reads the first job's report manifest.json and runs exactly its failed
   rows: a/ rows succeed now, c/big fails again, b/ is not run again.
"""

import datetime as dt
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import harness as h  # noqa: E402
import make_inventory as mi  # noqa: E402

SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"


def rules(dest_a, dest_b=None):
    r = [{"ID": "a", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "a/"},
          "DeleteMarkerReplication": {"Status": "Enabled"},
          "Destination": {"Bucket": h.bucket_arn(dest_a)}},
         {"ID": "b", "Priority": 2, "Status": "Enabled", "Filter": {"Prefix": "b/"},
          "DeleteMarkerReplication": {"Status": "Enabled"},
          "Destination": {"Bucket": h.bucket_arn(dest_b or dest_a)}}]
    return {"Role": "arn:aws:iam::123456789012:role/replication", "Rules": r}


def run_job(t, moto, tmp, name, job, rules_doc):
    job_path = h.write_json(os.path.join(tmp, f"{name}.json"), job)
    rules_path = h.write_json(os.path.join(tmp, f"{name}.rules.json"), rules_doc)
    res = h.run_batchrep(["run", job_path, "--replication-config", rules_path, "--state-dir",
                          os.path.join(tmp, "state"), "--no-progress"], moto.env())
    if not t.eq(res.returncode, 0, f"{name}: batchrep run exits 0"):
        t.diag(res.stderr[-3000:])
        t.diag(res.stdout[-3000:])
        return None
    return json.loads(res.stdout)["Job"]


def rows_of(rep):
    return {st: sorted(tuple(r) for r in rows) for st, rows in rep["rows"].items()}


def check_report_format(t, rep, name):
    m = rep["manifest"]
    t.eq((m["Format"], m["ReportSchema"]), ("Report_CSV_20180820", SCHEMA),
         f"{name}: report manifest.json Format and ReportSchema as AWS writes them")
    for r in rep["results"]:
        t.eq(r["MD5Checksum"], h.md5_hex(r["Body"]), f"{name}: {r['TaskExecutionStatus']} MD5")


def head_count(moto, bucket):
    """HEAD requests and ListObjectVersions on bucket in moto's request log so far."""
    with open(moto.log_path, errors="replace") as f:
        text = f.read()
    heads = len(re.findall(rf'"HEAD /{bucket}/', text))
    lists = len(re.findall(rf'"GET /{bucket}/?\?[^"]*versions', text))
    return heads, lists


def main():
    t = h.Tap()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst1", "dst2", "reports", "manifests", "inv", "genout"):
            h.make_bucket(s3, b)
        made = {}
        made["a/1"] = h.put_versions(s3, "src", "a/1", [b"x" * 10, b"y" * 500])
        made["a/2"] = h.put_versions(s3, "src", "a/2", [b"z" * 20, h.DELETE])
        made["b/sp ace+plus"] = h.put_versions(s3, "src", "b/sp ace+plus", [b"b" * 30])
        made["c/big"] = h.put_versions(s3, "src", "c/big", [b"c" * 2000])
        made["logs/x.log"] = h.put_versions(s3, "src", "logs/x.log", [b"l" * 5])
        time.sleep(1.1)
        cut = h.utcnow().replace(microsecond=0) + dt.timedelta(seconds=1)
        while h.utcnow() < cut + dt.timedelta(milliseconds=50):
            time.sleep(0.05)
        made["a/late.txt"] = h.put_versions(s3, "src", "a/late.txt", [b"late" * 100])
        vid = {(k, i): v["VersionId"] for k, vs in made.items() for i, v in enumerate(vs)}

        # ---- 1. Inventory -----------------------------------------------------------------
        listing = mi.rows_from_listing(s3, "src")
        inv_root = os.path.join(tmp, "inv")
        mkey = mi.build(inv_root, listing, mi.FULL_SCHEMA, "src", "inv", n_files=2,
                        quote_all=True, compress="gzip")
        mi.upload(s3, inv_root, "inv")
        etag = s3.head_object(Bucket="inv", Key=mkey)["ETag"].strip('"')
        job = h.job_document(h.object_arn("inv", mkey), etag, h.bucket_arn("reports"),
                             prefix="inv-run")
        job["Manifest"]["Spec"] = {"Format": "S3InventoryReport_CSV_20161130"}
        before = head_count(moto, "src")
        desc = run_job(t, moto, tmp, "inventory", job, rules("dst1"))
        after = head_count(moto, "src")
        if desc:
            t.eq(desc["Status"], "Complete", "inventory: Complete")
            ps = desc["ProgressSummary"]
            t.eq((ps["TotalNumberOfTasks"], ps["NumberOfTasksSucceeded"], ps["NumberOfTasksFailed"]),
                 (len(listing), 6, 2), "inventory: 8 rows, 6 succeeded, 2 not eligible")
            rep = h.read_report(s3, "reports", "inv-run", desc["JobId"])
            check_report_format(t, rep, "inventory")
            got = rows_of(rep)
            ok_keys = sorted((r[1], r[2]) for r in got.get("succeeded", []))
            want_ok = sorted([("a/1", vid[("a/1", 0)]), ("a/1", vid[("a/1", 1)]),
                              ("a/2", vid[("a/2", 0)]), ("a/2", vid[("a/2", 1)]),
                              ("a/late.txt", vid[("a/late.txt", 0)]),
                              ("b/sp+ace%2Bplus", vid[("b/sp ace+plus", 0)])])
            t.eq(ok_keys, want_ok, "inventory: succeeded rows, keys echoed as the inventory wrote them")
            failed = sorted((r[1], r[3], r[4], r[5], r[6]) for r in got.get("failed", []))
            t.eq(failed,
                 [("c/big", "failed", "500", "SrcObjectNotEligible",
                   "Object is not eligible for replication"),
                  ("logs/x.log", "failed", "500", "SrcObjectNotEligible",
                   "Object is not eligible for replication")],
                 "inventory: rows no rule matches fail SrcObjectNotEligible")
            d1 = list(reversed(h.list_versions(s3, "dst1", key="a/1")))
            t.eq([v["ETag"] for v in d1], [made["a/1"][0]["ETag"], made["a/1"][1]["ETag"]],
                 "inventory: dst1 a/1 holds both versions, oldest first")
            d2 = h.list_versions(s3, "dst1", key="a/2")
            t.ok(len(d2) == 2 and d2[0]["IsLatest"] and d2[0]["IsDeleteMarker"],
                 "inventory: dst1 a/2's current version is the delete marker")
            body = s3.get_object(Bucket="dst1", Key="b/sp ace+plus")["Body"].read()
            t.eq(body, b"b" * 30, "inventory: '+'-encoded key decoded and replicated")
            # The rows' facts replace the planning HEAD / ListObjectVersions; what remains is
            # the copy's one metadata read per replicated version (5 of the 6 succeeded rows;
            # the sixth is a delete marker): Object Lock, SSE and content headers, which an
            # exact replica needs and CopyObject does not carry by itself (strategy.c).
            t.eq((after[0] - before[0], after[1] - before[1]), (5, 0),
                 "inventory: no ListObjectVersions and no planning HEAD on src; one metadata "
                 "HEAD per replicated version")

        # ---- 2. Generated manifest --------------------------------------------------------
        job = h.job_document("x", "x", h.bucket_arn("reports"), prefix="gen-run")
        del job["Manifest"]
        job["ManifestGenerator"] = {"S3JobManifestGenerator": {
            "ExpectedBucketOwner": h.ACCOUNT_ID,
            "SourceBucket": h.bucket_arn("src"),
            "EnableManifestOutput": True,
            "ManifestOutputLocation": {"Bucket": h.bucket_arn("genout"), "ManifestPrefix": "gen",
                                       "ManifestEncryption": {"SSES3": {}},
                                       "ManifestFormat": "S3InventoryReport_CSV_20211130"},
            "Filter": {"EligibleForReplication": True,
                       "KeyNameConstraint": {"MatchAnyPrefix": ["a/", "c/"]},
                       "ObjectSizeGreaterThanBytes": 15,
                       "CreatedBefore": cut.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "MatchAnyStorageClass": ["STANDARD"],
                       "ObjectReplicationStatuses": ["NONE"]}}}
        before = head_count(moto, "src")
        desc = run_job(t, moto, tmp, "generated", job, rules("dst2"))
        after = head_count(moto, "src")
        if desc:
            t.eq(after[0] - before[0], 2 + 2,
                 "generated: one HEAD per version that passed the other filters (for "
                 "ObjectReplicationStatuses) and one metadata HEAD per replicated version")
            t.eq(desc["Status"], "Complete", "generated: Complete")
            ps = desc["ProgressSummary"]
            t.eq((ps["TotalNumberOfTasks"], ps["NumberOfTasksSucceeded"], ps["NumberOfTasksFailed"]),
                 (2, 2, 0), "generated: exactly 2 versions selected and replicated")
            rep = h.read_report(s3, "reports", "gen-run", desc["JobId"])
            check_report_format(t, rep, "generated")
            t.eq(rows_of(rep).get("succeeded"),
                 sorted([("src", "a/1", vid[("a/1", 1)], "succeeded", "200", "", "success"),
                         ("src", "a/2", vid[("a/2", 0)], "succeeded", "200", "", "success")]),
                 "generated: report rows a/1 v2 and a/2 v1")
            # a/2's current version is a delete marker the manifest does not list: it is
            # restored on top (docs/replication.md "The current version")
            t.eq(sorted((v["Key"], v["IsDeleteMarker"], v["IsLatest"], v["ETag"] or "")
                        for v in h.list_versions(s3, "dst2")),
                 sorted([("a/1", False, True, made["a/1"][1]["ETag"]),
                         ("a/2", False, False, made["a/2"][0]["ETag"]),
                         ("a/2", True, True, "")]),
                 "generated: dst2 holds exactly those versions, and a/2's current delete "
                 "marker on top")
            gmd = desc.get("GeneratedManifestDescriptor", {})
            base = f"gen/job-{desc['JobId']}"
            t.eq(gmd.get("Format"), "S3InventoryReport_CSV_20211130",
                 "GeneratedManifestDescriptor.Format")
            t.eq(gmd.get("Location", {}).get("ObjectArn"),
                 h.object_arn("genout", base + "/manifest.json"),
                 "GeneratedManifestDescriptor.Location.ObjectArn")
            mraw = s3.get_object(Bucket="genout", Key=base + "/manifest.json")["Body"].read()
            head_etag = s3.head_object(Bucket="genout", Key=base + "/manifest.json")["ETag"]
            t.eq(gmd.get("Location", {}).get("ETag"), head_etag.strip('"'),
                 "GeneratedManifestDescriptor.Location.ETag is the object's ETag")
            m = json.loads(mraw)
            t.eq((m["sourceBucket"], m["fileFormat"], m["fileSchema"]),
                 ("src", "CSV", "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, "
                                "LastModifiedDate, ETag, StorageClass"),
                 "output manifest.json: sourceBucket, fileFormat, fileSchema")
            chk = s3.get_object(Bucket="genout", Key=base + "/manifest.checksum")["Body"].read()
            t.eq(chk, (h.md5_hex(mraw) + "\n").encode(), "manifest.checksum = MD5 of manifest.json")
            rows = []
            for f in m["files"]:
                data = s3.get_object(Bucket="genout", Key=f["key"])["Body"].read()
                t.eq(f["MD5checksum"], h.md5_hex(data), "output data file MD5checksum")
                t.ok(re.fullmatch(re.escape(base) + r"/data/[0-9a-f-]{36}\.csv\.gz", f["key"]),
                     "output data file key <prefix>/job-<id>/data/<uuid>.csv.gz")
                rows += h.parse_csv(gzip.decompress(data))
            t.eq(sorted((r[1], r[2], r[4], r[5], r[8]) for r in rows),
                 sorted([("a/1", vid[("a/1", 1)], "false", "500", "STANDARD"),
                         ("a/2", vid[("a/2", 0)], "false", "20", "STANDARD")]),
                 "output data rows: the selected versions with their facts")

        # ---- 3. Re-replication of an earlier report's failures --------------------------
        rows = [("src", "a/1", vid[("a/1", 0)]), ("src", "a/1", vid[("a/1", 1)]),
                ("src", "b/sp ace+plus", vid[("b/sp ace+plus", 0)]),
                ("src", "c/big", vid[("c/big", 0)])]
        arn, etag = h.upload_manifest(s3, "manifests", "retry/m.csv", h.manifest_csv(rows))
        job = h.job_document(arn, etag, h.bucket_arn("reports"), prefix="retry-1")
        desc1 = run_job(t, moto, tmp, "first", job, rules("dst3", "dst1"))
        if desc1:
            rep1 = h.read_report(s3, "reports", "retry-1", desc1["JobId"])
            f1 = rows_of(rep1).get("failed", [])
            t.eq(sorted((r[1], r[5]) for r in f1),
                 [("a/1", "DstBucketNotFound"), ("a/1", "DstBucketNotFound"),
                  ("c/big", "SrcObjectNotEligible")],
                 "first job: a/ rows fail DstBucketNotFound, c/big is not eligible")
            h.make_bucket(s3, "dst3")
            mkey = f"retry-1/job-{desc1['JobId']}/manifest.json"
            etag = s3.head_object(Bucket="reports", Key=mkey)["ETag"].strip('"')
            job = h.job_document(h.object_arn("reports", mkey), etag, h.bucket_arn("reports"),
                                 prefix="retry-2")
            job["Manifest"]["Spec"] = {"Format": "Report_CSV_20180820"}
            desc2 = run_job(t, moto, tmp, "retry", job, rules("dst3", "dst1"))
            if desc2:
                ps = desc2["ProgressSummary"]
                t.eq((ps["TotalNumberOfTasks"], ps["NumberOfTasksSucceeded"],
                      ps["NumberOfTasksFailed"]), (3, 2, 1),
                     "retry: exactly the 3 failed rows ran; 2 succeed now")
                rep2 = h.read_report(s3, "reports", "retry-2", desc2["JobId"])
                check_report_format(t, rep2, "retry")
                got = rows_of(rep2)
                t.eq(got.get("succeeded"),
                     sorted([("src", "a/1", vid[("a/1", 0)], "succeeded", "200", "", "success"),
                             ("src", "a/1", vid[("a/1", 1)], "succeeded", "200", "", "success")]),
                     "retry: a/1's versions succeeded")
                t.eq(got.get("failed"),
                     [("src", "c/big", vid[("c/big", 0)], "failed", "500",
                       "SrcObjectNotEligible", "Object is not eligible for replication")],
                     "retry: c/big fails again the same way")
                d3 = list(reversed(h.list_versions(s3, "dst3", key="a/1")))
                t.eq([v["ETag"] for v in d3], [made["a/1"][0]["ETag"], made["a/1"][1]["ETag"]],
                     "retry: dst3 a/1 holds both versions oldest first")
    t.done()


if __name__ == "__main__":
    main()
