#!/usr/bin/env python3
"""test_ordering.py — every key ends with the source's current version, whatever the manifest
lists and in whatever order (docs/replication.md "The current version"; run/spool.c, engine/unit.c).

Source bucket `src` on moto: 40 keys ord/k00..ord/k39 with 3-5 items each, made in rounds one
wall-clock second apart (moto's LastModified has whole seconds), so every key's history has
one unambiguous order. Key i's item r is a delete marker when (r == 1 and i % 5 == 1) or (r
is its last item and i % 4 == 0), else a version with a body of its own.

  A. a CSV manifest of every version, shuffled -> dst-a;
  B. an S3 Inventory report of the listing with its rows reversed, in two gzip data files,
     one key's rows split across both -> dst-b;
  C. an earlier job's completion report (Report_CSV_20180820) whose failed rows are every
     version of k10..k19, shuffled over two failed results files -> dst-c;
  D. re-replication of old versions: a first job replicates the newest two items of
     k20..k29, a second job re-runs only their oldest version -> dst-d: the source's current
     version is restored on top;
  E. the same with a rule without DeleteMarkerReplication on keys whose current item is a
     delete marker -> dst-e: nothing to restore, the destination's current version is the
     newest version the job wrote (README);
  F. a manifest of the current versions of k30..k39 -> dst-f: one HEAD each, no listing.

For every key checked: the destination's current item equals the source's (a delete marker,
or the same ETag), and within one job the versions were written oldest first: moto lists a
key's versions (not its delete markers) in exact creation order, which must be the source's.
"""

import gzip
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import harness as h  # noqa: E402
import make_inventory as mi  # noqa: E402

N_KEYS = 40


def n_items(i):
    return 3 + i % 3


def is_dm(i, r):
    return (r == 1 and i % 5 == 1) or (r == n_items(i) - 1 and i % 4 == 0)


def rules(dest, dmr=True):
    return {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
        {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled" if dmr else "Disabled"},
         "Destination": {"Bucket": h.bucket_arn(dest)}}]}


def make_source(s3):
    """{key: [item oldest first]}, item = {'vid', 'dm', 'etag'}."""
    src = {f"ord/k{i:02d}": [] for i in range(N_KEYS)}
    for r in range(max(n_items(i) for i in range(N_KEYS))):
        nxt = int(time.time()) + 1  # every round in a later second than the one before
        while time.time() < nxt + 0.01:
            time.sleep(nxt + 0.01 - time.time())
        for i in range(N_KEYS):
            k = f"ord/k{i:02d}"
            if r >= n_items(i):
                continue
            if is_dm(i, r):
                v = s3.delete_object(Bucket="src", Key=k)
                src[k].append({"vid": v["VersionId"], "dm": True, "etag": None})
            else:
                v = s3.put_object(Bucket="src", Key=k, Body=f"{k} item {r}".encode())
                src[k].append({"vid": v["VersionId"], "dm": False, "etag": v["ETag"]})
    return src


def listing(s3, bucket):
    """{key: {'versions': [etag oldest first, in moto's exact order], 'dms': n,
    'current': ('dm', None) | ('v', etag)}}."""
    out = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            e = out.setdefault(v["Key"], {"versions": [], "dms": 0, "current": None})
            e["versions"].insert(0, v["ETag"])  # listed newest first
            if v["IsLatest"]:
                e["current"] = ("v", v["ETag"])
        for d in page.get("DeleteMarkers", []):
            e = out.setdefault(d["Key"], {"versions": [], "dms": 0, "current": None})
            e["dms"] += 1
            if d["IsLatest"]:
                e["current"] = ("dm", None)
    return out


def current_of(items):
    last = items[-1]
    return ("dm", None) if last["dm"] else ("v", last["etag"])


def check_full_history(t, name, src, dst, keys):
    """Every item of each key was written by one job: same versions in the same order, as many
    delete markers, same current item."""
    bad = [k for k in keys if k not in dst or
           dst[k]["versions"] != [x["etag"] for x in src[k] if not x["dm"]] or
           dst[k]["dms"] != sum(1 for x in src[k] if x["dm"]) or
           dst[k]["current"] != current_of(src[k])]
    t.eq(bad, [], f"{name}: every key's versions written oldest first, current = source's "
                  f"({len(keys)} keys)")


def run_job(t, moto, tmp, name, job, rules_doc):
    job_path = h.write_json(os.path.join(tmp, f"{name}.json"), job)
    rules_path = h.write_json(os.path.join(tmp, f"{name}.rules.json"), rules_doc)
    res = h.run_batchrep(["run", job_path, "--replication-config", rules_path, "--state-dir",
                          os.path.join(tmp, "state"), "--no-progress"], moto.env())
    if not t.eq(res.returncode, 0, f"{name}: batchrep run exits 0"):
        t.diag(res.stderr[-3000:])
        return None
    return json.loads(res.stdout)["Job"]


def check_report(t, s3, name, desc, manifest_rows, want_failed=0):
    """One report row per manifest row (bucket, key as written, version)."""
    rep = h.read_report(s3, "reports", name, desc["JobId"])
    got = sorted((r[0], r[1], r[2]) for st in rep["rows"].values() for r in st)
    t.eq(got, sorted(manifest_rows), f"{name}: one report row per manifest row")
    ps = desc["ProgressSummary"]
    t.eq((desc["Status"], ps["TotalNumberOfTasks"], ps["NumberOfTasksFailed"]),
         ("Complete", len(manifest_rows), want_failed), f"{name}: Complete, counts")
    for r in rep["results"]:
        t.eq(r["MD5Checksum"], h.md5_hex(r["Body"]), f"{name}: results file MD5")
    return rep


def src_lists(moto):
    with open(moto.log_path, errors="replace") as f:
        return len(re.findall(r'"GET /src/?\?[^"]*versions', f.read()))


def report_manifest(tmp, s3, failed_rows, rnd):
    """An earlier job's completion report whose failed rows are failed_rows, shuffled over two
    failed results files, plus a succeeded file; uploaded under reports/old/job-old/."""
    rows = list(failed_rows)
    rnd.shuffle(rows)
    half = len(rows) // 2
    files = []
    for n, (status, part) in enumerate((("failed", rows[:half]), ("failed", rows[half:]),
                                        ("succeeded", [("src", "ord/k00", "x")]))):
        text = "".join(f"{b},{urllib.parse.quote(k, safe='/')},{v},{status},"
                       f"{'500,InternalError,boom' if status == 'failed' else '200,,success'}\n"
                       for b, k, v in part).encode()
        key = f"old/job-old/results/{hashlib.sha1(str(n).encode()).hexdigest()}.csv"
        s3.put_object(Bucket="reports", Key=key, Body=text)
        files.append({"TaskExecutionStatus": status, "Bucket": "reports",
                      "MD5Checksum": hashlib.md5(text).hexdigest(), "Key": key})
    man = json.dumps({"Format": "Report_CSV_20180820",
                      "ReportCreationDate": "2026-11-01T00:00:00.000Z", "Results": files,
                      "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, "
                                      "HTTPStatusCode, ResultMessage"}).encode()
    r = s3.put_object(Bucket="reports", Key="old/job-old/manifest.json", Body=man)
    return h.object_arn("reports", "old/job-old/manifest.json"), r["ETag"].strip('"')


def main():
    t = h.Tap()
    rnd = random.Random(11)
    os.umask(0o022)  # what most users have: the state must be private anyway
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst-a", "dst-b", "dst-c", "dst-d", "dst-e", "dst-f", "reports",
                  "manifests", "inv"):
            h.make_bucket(s3, b)
        src = make_source(s3)
        keys = sorted(src)
        all_rows = [("src", k, x["vid"]) for k in keys for x in src[k]]

        # ---- A. shuffled CSV ----------------------------------------------------------------
        rows = list(all_rows)
        rnd.shuffle(rows)
        arn, etag = h.upload_manifest(s3, "manifests", "a.csv", rows)
        desc = run_job(t, moto, tmp, "a", h.job_document(arn, etag, h.bucket_arn("reports"),
                                                         prefix="a"), rules("dst-a"))
        if desc:
            check_report(t, s3, "a", desc, [(b, h.url_encode_key(k), v) for b, k, v in rows])
            check_full_history(t, "a (shuffled CSV)", src, listing(s3, "dst-a"), keys)

        # ---- B. Inventory, rows reversed, one key split over two data files ----------------
        inv_rows = list(reversed(mi.rows_from_listing(s3, "src")))
        split = next(i for i, r in enumerate(inv_rows) if r["Key"] == "ord/k05")
        inv_rows.insert(0, inv_rows.pop(split))  # k05: one row in file 1, the rest in file 2
        per = -(-len(inv_rows) // 2)
        t.ok(any(r["Key"] == "ord/k05" for r in inv_rows[per:]),
             "b: ord/k05's rows are in both data files")
        root = os.path.join(tmp, "inv")
        mkey = mi.build(root, inv_rows, mi.FULL_SCHEMA, "src", "inv", n_files=2,
                        quote_all=True, compress="gzip")
        mi.upload(s3, root, "inv")
        job = h.job_document(h.object_arn("inv", mkey),
                             s3.head_object(Bucket="inv", Key=mkey)["ETag"].strip('"'),
                             h.bucket_arn("reports"), prefix="b")
        job["Manifest"]["Spec"] = {"Format": "S3InventoryReport_CSV_20161130"}
        desc = run_job(t, moto, tmp, "b", job, rules("dst-b"))
        if desc:
            check_report(t, s3, "b", desc,
                         [("src", mi.inv_encode_key(r["Key"]), r["VersionId"]) for r in inv_rows])
            check_full_history(t, "b (Inventory reversed, split)", src, listing(s3, "dst-b"),
                               keys)

        # ---- C. report-as-manifest, failed rows scattered ------------------------------------
        ckeys = [k for k in keys if 10 <= int(k[-2:]) < 20]
        failed = [("src", k, x["vid"]) for k in ckeys for x in src[k]]
        arn, etag = report_manifest(tmp, s3, failed, rnd)
        job = h.job_document(arn, etag, h.bucket_arn("reports"), prefix="c")
        job["Manifest"]["Spec"] = {"Format": "Report_CSV_20180820"}
        desc = run_job(t, moto, tmp, "c", job, rules("dst-c"))
        if desc:
            check_report(t, s3, "c", desc, [(b, h.url_encode_key(k), v) for b, k, v in failed])
            got = listing(s3, "dst-c")
            check_full_history(t, "c (report failed rows)", src, got, ckeys)
            t.eq(sorted(got), ckeys, "c: the succeeded rows of the old report did not run")

        # ---- D. re-running old versions restores the current one -----------------------------
        dkeys = [k for k in keys if 20 <= int(k[-2:]) < 30]
        newest = [("src", k, x["vid"]) for k in dkeys for x in src[k][-2:]]
        arn, etag = h.upload_manifest(s3, "manifests", "d1.csv", newest)
        d1 = run_job(t, moto, tmp, "d1", h.job_document(arn, etag, h.bucket_arn("reports"),
                                                        prefix="d1"), rules("dst-d"))
        oldest = [("src", k, src[k][0]["vid"]) for k in dkeys]
        arn, etag = h.upload_manifest(s3, "manifests", "d2.csv", oldest)
        d2 = run_job(t, moto, tmp, "d2", h.job_document(arn, etag, h.bucket_arn("reports"),
                                                        prefix="d2"), rules("dst-d"))
        if d1 and d2:
            check_report(t, s3, "d2", d2, [(b, h.url_encode_key(k), v) for b, k, v in oldest])
            got = listing(s3, "dst-d")
            t.eq([k for k in dkeys if got[k]["current"] != current_of(src[k])], [],
                 "d: after re-running the oldest version, every destination's current item is "
                 "the source's again")
            # the history: job 1's two items, the old version, then the restored current one
            want = {k: [x["etag"] for x in src[k][-2:] if not x["dm"]] + [src[k][0]["etag"]] +
                    ([] if src[k][-1]["dm"] else [src[k][-1]["etag"]]) for k in dkeys}
            t.eq({k: got[k]["versions"] for k in dkeys}, want,
                 "d: destination versions oldest first: job 1's, the old one, the restored one")
            # job 1's delete markers (moto writes none for a DELETE of a key it does not hold,
            # as job 1's first item may be; AWS would), then the restored one
            t.eq({k: got[k]["dms"] for k in dkeys},
                 {k: sum(1 for x in src[k][-1:] if x["dm"]) + (1 if src[k][-1]["dm"] else 0)
                  for k in dkeys},
                 "d: a current delete marker is restored as a delete marker")

        # ---- E. current item not eligible: nothing restored -----------------------------------
        ekeys = [k for k in keys if int(k[-2:]) % 4 == 0]  # current item: a delete marker
        versions = [("src", k, x["vid"]) for k in ekeys for x in src[k] if not x["dm"]]
        arn, etag = h.upload_manifest(s3, "manifests", "e1.csv", versions)
        e1 = run_job(t, moto, tmp, "e1", h.job_document(arn, etag, h.bucket_arn("reports"),
                                                        prefix="e1"), rules("dst-e", dmr=False))
        oldest = [("src", k, src[k][0]["vid"]) for k in ekeys]
        arn, etag = h.upload_manifest(s3, "manifests", "e2.csv", oldest)
        e2 = run_job(t, moto, tmp, "e2", h.job_document(arn, etag, h.bucket_arn("reports"),
                                                        prefix="e2"), rules("dst-e", dmr=False))
        if e1 and e2:
            got = listing(s3, "dst-e")
            t.eq({k: got[k]["current"] for k in ekeys},
                 {k: ("v", src[k][0]["etag"]) for k in ekeys},
                 "e: the source's current delete marker is not replicated (no "
                 "DeleteMarkerReplication): the newest version the job wrote is current")
            t.eq(sum(got[k]["dms"] for k in ekeys), 0, "e: no delete marker written")

        # ---- F. current versions only: one HEAD each, no listing ------------------------------
        fkeys = [k for k in keys if int(k[-2:]) >= 30 and not src[k][-1]["dm"]]
        cur = [("src", k, src[k][-1]["vid"]) for k in fkeys]
        arn, etag = h.upload_manifest(s3, "manifests", "f.csv", cur)
        before = src_lists(moto)
        desc = run_job(t, moto, tmp, "f", h.job_document(arn, etag, h.bucket_arn("reports"),
                                                         prefix="f"), rules("dst-f"))
        if desc:
            t.eq(src_lists(moto) - before, 0,
                 "f: rows naming the current version need no ListObjectVersions")
            got = listing(s3, "dst-f")
            t.eq({k: got[k]["versions"] for k in fkeys}, {k: [src[k][-1]["etag"]] for k in fkeys},
                 "f: exactly the current versions replicated")

        # ---- the state directory is private whatever the umask (issue: world-readable state)
        os.umask(0o022)
        state = os.path.join(tmp, "state")
        loose = sorted(f"{oct(os.stat(p).st_mode & 0o777)} {os.path.relpath(p, state)}"
                       for d, dirs, files in os.walk(state)
                       for p in [d] + [os.path.join(d, f) for f in files]
                       if os.stat(p).st_mode & 0o077)
        t.eq(loose, [], "every folder and file of the state directory (catalogue, spool, "
                        "checkpoints, staged reports, describe.json) is private to its owner")
    t.done()


if __name__ == "__main__":
    main()
