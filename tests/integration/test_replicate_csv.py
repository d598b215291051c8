#!/usr/bin/env python3
"""test_replicate_csv.py — `batchrep run` end to end on moto with a CSV manifest.

What it sets up (all on one moto_server on 127.0.0.1):
  src       versioned; 200 keys plain/kNNN with 1-5 versions each (some with a delete marker in
            the middle or as the current version, some with user metadata, Content-Type and
            tags), keys with a space, '+', '%', ',', '"', UTF-8 and a 1,000-byte key, a key
            whose current version is in GLACIER, docs/readme (a prefix rule with higher
            priority and a storage class), unver/x and gone/x
  dst1      versioned: rules r1 (everything, delete markers on) and r2 (docs/, priority 2,
            STANDARD_IA, delete markers off)
  dst2      versioned: r3, a tag filter replicate=yes
  dstunv    NOT versioned: r4 (unver/) -> DstBucketUnversioned
  (none)    r5 (gone/) names a bucket that does not exist -> DstBucketNotFound
  r6        a Disabled rule (never used)
The manifest lists every version newest first (as ListObjectVersions does), plus a row with a
version that does not exist and a row for a key that does not exist.

What it checks (aws-formats.md §5 for the report, §6/§7 for the semantics):
  * exit status 0, DescribeJob JSON on stdout with the task counts;
  * the report: manifest.json (Format, ReportSchema, Results with Bucket name, full Key and the
    MD5 of each file), manifest.json.md5, and the results files compared with the golden
    files tests/fixtures/golden/replicate_csv.{succeeded,failed}.csv byte for byte after
    version IDs are replaced by <key#n> placeholders and rows are sorted (tasks finish in any
    order);
  * dst1 / dst2: per key, the versions replicated oldest first, the current version (or delete
    marker) equal to the source's where every version was eligible, ETags equal, metadata,
    Content-Type, tags and storage class carried.
Run with --write-golden to regenerate the golden files from the model in this file.
"""

import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

GOLDEN_DIR = os.path.join(h.REPO_ROOT, "tests", "fixtures", "golden")

RULES = {
    "Role": "arn:aws:iam::123456789012:role/replication",
    "Rules": [
        {"ID": "r1-all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled"},
         "Destination": {"Bucket": "arn:aws:s3:::dst1"}},
        {"ID": "r2-docs", "Priority": 2, "Status": "Enabled", "Filter": {"Prefix": "docs/"},
         "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::dst1", "StorageClass": "STANDARD_IA"}},
        {"ID": "r3-tagged", "Priority": 3, "Status": "Enabled",
         "Filter": {"Tag": {"Key": "replicate", "Value": "yes"}},
         "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::dst2"}},
        {"ID": "r4-unversioned", "Priority": 4, "Status": "Enabled",
         "Filter": {"Prefix": "unver/"}, "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::dstunv"}},
        {"ID": "r5-missing", "Priority": 5, "Status": "Enabled", "Filter": {"Prefix": "gone/"},
         "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::nosuchbucket"}},
        {"ID": "r6-off", "Priority": 6, "Status": "Disabled", "Filter": {"Prefix": "plain/"},
         "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": "arn:aws:s3:::dst2"}},
    ],
}
DEST_ORDER = ["dst1", "dst2", "dstunv", "nosuchbucket"]  # as rules name them first
DEST_STATE = {"dst1": "ok", "dst2": "ok", "dstunv": "unversioned", "nosuchbucket": "missing"}

# Written in the manifest as is (CSV-quoted, not URL-encoded): the report must echo it with
# RFC 4180 quoting (aws-formats.md §5.4).
RAW_KEY = 'rawq/a,b "c"'
SPECIAL_KEYS = ["sp ace/a b.txt", "plus+key", "pct%41literal", "comma,key", 'quote"key',
                "utf8/ключ-日本語", "long/" + "x" * 995]


def source_plan():
    """{key: [(body or None for a delete marker, put kwargs)]} oldest first."""
    plan = {}
    for i in range(200):
        n = 1 + i % 5
        items = []
        for j in range(n):
            kw = {}
            if i % 3 == 0:
                kw["Metadata"] = {"origin": f"k{i}", "rev": str(j)}
                kw["ContentType"] = "text/x-batchrep"
            if i % 4 == 0:
                kw["Tagging"] = "replicate=yes&team=data"
            elif i % 4 == 1:
                kw["Tagging"] = "replicate=no"
            items.append((f"plain {i} version {j}", kw))
        if i % 11 == 5 and n >= 2:
            items.insert(1, (None, {}))
        if i % 7 == 3:
            items.append((None, {}))
        plan[f"plain/k{i:03d}"] = items
    for k in SPECIAL_KEYS:
        plan[k] = [(f"{k} one", {"ContentType": "text/plain"}),
                   (f"{k} two", {"Metadata": {"x": "y"}})]
    plan[RAW_KEY] = [("raw one", {}), ("raw two", {})]
    plan["docs/readme"] = [("docs 1", {}), ("docs 2", {}), (None, {})]
    plan["cold/archived"] = [("cold 1", {}), ("cold 2", {"StorageClass": "GLACIER"})]
    plan["unver/x"] = [("unver 1", {})]
    plan["gone/x"] = [("gone 1", {})]
    return plan


def tags_of(kw):
    t = kw.get("Tagging")
    return dict(p.split("=", 1) for p in t.split("&")) if t else {}


def choose(key, kw, is_dm):
    """The model of rule selection (aws-formats.md §7.2): per destination, the highest-priority
    enabled rule whose filter matches; tag rules never match a delete marker; a delete marker
    goes only where the winning rule enables DeleteMarkerReplication."""
    best = {}
    for r in RULES["Rules"]:
        if r["Status"] != "Enabled":
            continue
        f = r["Filter"]
        if "Prefix" in f and not key.startswith(f["Prefix"]):
            continue
        if "Tag" in f:
            if is_dm or tags_of(kw).get(f["Tag"]["Key"]) != f["Tag"]["Value"]:
                continue
        dest = r["Destination"]["Bucket"].split(":::")[1]
        if dest not in best or best[dest]["Priority"] < r["Priority"]:
            best[dest] = r
    if is_dm:
        best = {d: r for d, r in best.items() if r["DeleteMarkerReplication"]["Status"] == "Enabled"}
    return best


def expected_row(key, kw, is_dm):
    """(succeeded?, http, code, message, {dest: rule}) for one existing version."""
    if kw.get("StorageClass") in ("GLACIER", "DEEP_ARCHIVE"):
        return False, 500, "SrcObjectNotEligible", "Object is not eligible for replication", {}
    best = choose(key, kw, is_dm)
    if not best:
        return False, 500, "SrcObjectNotEligible", "Object is not eligible for replication", {}
    for d in DEST_ORDER:
        if d in best and DEST_STATE[d] == "unversioned":
            return (False, 400, "DstBucketUnversioned",
                    "Versioning is not enabled on the destination bucket", best)
        if d in best and DEST_STATE[d] == "missing":
            return False, 404, "DstBucketNotFound", "Destination bucket not found", best
    return True, 200, "", "success", best


def csv_field(s):
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in '",\r\n') else s


def golden_lines(rows):
    return "".join(sorted(",".join(csv_field(f) for f in r) + "\n" for r in rows))


def main():
    t = h.Tap()
    write_golden = "--write-golden" in sys.argv
    plan = source_plan()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst1", "dst2", "reports", "manifests"):
            h.make_bucket(s3, b)
        h.make_bucket(s3, "dstunv", versioned=False)

        # Source versions, created in rounds (round r makes item r of every key) so that a
        # delete marker never shares a LastModified second with a neighbouring version of its
        # key: moto stamps to the second and lists versions before delete markers, so only
        # distinct seconds make the order readable (harness.put_versions explains).
        made = {key: [] for key in plan}  # key -> [(vid, is_dm, etag, kw)]
        prev_had_dm = False
        for rnd in range(max(len(v) for v in plan.values())):
            items = [(key, plan[key][rnd]) for key in plan if rnd < len(plan[key])]
            has_dm = any(body is None for _, (body, _kw) in items)
            if rnd and (has_dm or prev_had_dm):
                time.sleep(1.05)
            for key, (body, kw) in items:
                r = h.put_versions(s3, "src", key, [body], separate_s=False, **kw)[0]
                made[key].append((r["VersionId"], r["IsDeleteMarker"], r["ETag"], kw))
            prev_had_dm = has_dm
        placeholder = {}
        for key, vers in made.items():
            for n, (vid, *_rest) in enumerate(vers):
                placeholder[vid] = f"<{h.url_encode_key(key)}#{n}>"
        placeholder["0000-no-such-version"] = "<missing-version>"
        placeholder["1111-no-such-key"] = "<missing-key>"

        # manifest: newest first per key, keys URL-encoded; then the two missing rows
        rows = []
        for key, vers in made.items():
            for vid, *_ in reversed(vers):
                rows.append(("src", key, vid))
        rows.append(("src", "plain/k000", "0000-no-such-version"))
        rows.append(("src", "no/such key", "1111-no-such-key"))
        data = h.manifest_csv([r for r in rows if r[1] != RAW_KEY])
        data += "".join(f'src,"{RAW_KEY.replace(chr(34), chr(34) * 2)}",{vid}\n'
                        for _b, k, vid in rows if k == RAW_KEY).encode()
        manifest_arn, etag = h.upload_manifest(s3, "manifests", "jobs/m1.csv", data)
        job = h.job_document(manifest_arn, etag, h.bucket_arn("reports"), prefix="reports/run1")
        job_path = h.write_json(os.path.join(tmp, "job.json"), job)
        rules_path = h.write_json(os.path.join(tmp, "replication.json"), RULES)

        # the model's report rows (with placeholders)
        exp = {"succeeded": [], "failed": []}
        dest_expect = {}  # (dest, key) -> [(is_dm, etag)] oldest first
        for key, vers in made.items():
            enc = key if key == RAW_KEY else h.url_encode_key(key)
            for vid, is_dm, etag_v, kw in vers:
                ok, http, code, msg, best = expected_row(key, kw, is_dm)
                exp["succeeded" if ok else "failed"].append(
                    ["src", enc, placeholder[vid], "succeeded" if ok else "failed", str(http),
                     code, msg])
                for d in best:
                    if DEST_STATE[d] == "ok":
                        dest_expect.setdefault((d, key), []).append((is_dm, etag_v))
        exp["failed"].append(["src", "plain/k000", "<missing-version>", "failed", "404",
                              "SrcVersionNotFound", "Source version not found"])
        exp["failed"].append(["src", "no/such%20key", "<missing-key>", "failed", "404",
                              "SrcKeyNotFound", "Source key not found"])
        if write_golden:
            os.makedirs(GOLDEN_DIR, exist_ok=True)
            for st in ("succeeded", "failed"):
                with open(os.path.join(GOLDEN_DIR, f"replicate_csv.{st}.csv"), "w",
                          encoding="utf-8", newline="") as f:
                    f.write(golden_lines(exp[st]))

        t0 = time.monotonic()
        res = h.run_batchrep(["run", job_path, "--replication-config", rules_path,
                              "--state-dir", os.path.join(tmp, "state"), "--no-progress"],
                             h.batchrep_env(moto.url))
        t.diag(f"batchrep run: {time.monotonic() - t0:.1f} s for {len(rows)} tasks")
        t.eq(res.returncode, 0, "batchrep run exits 0 (job Complete)")
        if res.returncode != 0:
            t.diag(res.stderr[-3000:])
        try:
            desc = json.loads(res.stdout)["Job"]
        except (ValueError, KeyError):
            t.ok(False, "stdout is DescribeJob JSON")
            t.diag(res.stdout[-2000:])
            t.done()
        total = len(rows)
        n_ok, n_bad = len(exp["succeeded"]), len(exp["failed"])
        t.eq(desc["Status"], "Complete", "Status Complete")
        ps = desc["ProgressSummary"]
        t.eq((ps["TotalNumberOfTasks"], ps["NumberOfTasksSucceeded"], ps["NumberOfTasksFailed"]),
             (total, n_ok, n_bad), "ProgressSummary counts every manifest row once")
        t.ok("ElapsedTimeInActiveSeconds" in ps.get("Timers", {}), "Timers present")
        t.ok(desc["JobArn"].endswith("job/" + desc["JobId"]), "JobArn names the job")
        t.eq(desc["Operation"], {"S3ReplicateObject": {}}, "Operation echoed")

        # ---- the report (aws-formats.md §5) ----
        rep = h.read_report(s3, "reports", "reports/run1", desc["JobId"])
        m = rep["manifest"]
        t.eq(list(m.keys()), ["Format", "ReportCreationDate", "Results", "ReportSchema"],
             "manifest.json members in AWS's order")
        t.eq(m["Format"], "Report_CSV_20180820", "manifest.json Format")
        t.eq(m["ReportSchema"],
             "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
             "ReportSchema string exactly as AWS writes it")
        t.ok(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", m["ReportCreationDate"])
             is not None, "ReportCreationDate is ISO-8601 UTC")
        t.eq(rep["manifest_md5"], (h.md5_hex(rep["manifest_raw"]) + "\n").encode(),
             "manifest.json.md5 holds the MD5 of manifest.json")
        base = f"reports/run1/job-{desc['JobId']}/results/"
        for r in rep["results"]:
            t.eq(r["Bucket"], "reports", f"Results[{r['TaskExecutionStatus']}].Bucket is a name")
            t.ok(re.fullmatch(re.escape(base) + r"[0-9a-f]{40}\.csv", r["Key"]) is not None,
                 f"Results[{r['TaskExecutionStatus']}].Key is <prefix>/job-<id>/results/<40 hex>.csv")
            t.eq(r["MD5Checksum"], h.md5_hex(r["Body"]), f"{r['TaskExecutionStatus']} MD5Checksum")
        t.eq(sorted(r["TaskExecutionStatus"] for r in rep["results"]), ["failed", "succeeded"],
             "one succeeded and one failed results file")
        vid_re = re.compile("|".join(re.escape(v) for v in sorted(placeholder, key=len, reverse=True)))
        for r in rep["results"]:
            st = r["TaskExecutionStatus"]
            body = r["Body"].decode("utf-8")
            t.ok(body.endswith("\n") and "\r" not in body, f"{st} rows end with LF, no header")
            norm = vid_re.sub(lambda mm: placeholder[mm.group(0)], body)
            got = "".join(sorted(norm.splitlines(keepends=True)))
            with open(os.path.join(GOLDEN_DIR, f"replicate_csv.{st}.csv"), encoding="utf-8",
                      newline="") as f:
                want = f.read()
            if not t.eq(len(got.splitlines()), len(want.splitlines()), f"{st}: row count"):
                pass
            t.ok(got == want, f"{st} results file equals the golden file byte for byte "
                              "(IDs replaced, rows sorted)")
            if got != want:
                gl, wl = set(got.splitlines()), set(want.splitlines())
                for line in sorted(gl - wl)[:5]:
                    t.diag("unexpected: " + line)
                for line in sorted(wl - gl)[:5]:
                    t.diag("missing:    " + line)

        # ---- the destinations ----
        bad_keys = []
        current_ok = 0
        for (dest, key), want in sorted(dest_expect.items()):
            got = h.list_versions(s3, dest, key=key)
            got = list(reversed(got))  # oldest first
            want_versions = [e for dm, e in want if not dm]
            got_versions = [g["ETag"] for g in got if not g["IsDeleteMarker"]]
            n_dm_want = sum(1 for dm, _ in want if dm)
            n_dm_got = sum(1 for g in got if g["IsDeleteMarker"])
            latest = [g for g in got if g["IsLatest"]]
            want_latest_dm = want[-1][0]
            ok = (got_versions == want_versions and n_dm_got == n_dm_want and len(latest) == 1
                  and latest[0]["IsDeleteMarker"] == want_latest_dm
                  and (want_latest_dm or latest[0]["ETag"] == want[-1][1]))
            if not ok:
                bad_keys.append((dest, key, want, [(g["IsDeleteMarker"], g["ETag"],
                                                    g["IsLatest"]) for g in got]))
            # where every source version went to this destination, current = source's current
            src_all = made[key]
            if len(want) == len(src_all) and ok:
                current_ok += 1
        t.ok(not bad_keys, f"every destination key holds its eligible versions oldest first "
                           f"and the right current version ({len(dest_expect)} key/destination pairs)")
        for b in bad_keys[:5]:
            t.diag(f"{b[0]} {b[1]!r}: want {b[2]} got {b[3]}")
        t.ok(current_ok > 200, f"{current_ok} keys: destination current version equals the source's")
        t.eq([v["Key"] for v in h.list_versions(s3, "dst2", prefix="plain/")
              if not v["IsDeleteMarker"]].count("plain/k001"), 0,
             "a version tagged replicate=no is not on the tag rule's destination")

        # fidelity: metadata, Content-Type, tags, storage class
        head = s3.head_object(Bucket="dst1", Key="plain/k006")
        t.eq(head.get("Metadata"), {"origin": "k6", "rev": "1"}, "user metadata on the replica")
        t.eq(head.get("ContentType"), "text/x-batchrep", "Content-Type on the replica")
        tags = s3.get_object_tagging(Bucket="dst2", Key="plain/k004")["TagSet"]
        t.eq(sorted((x["Key"], x["Value"]) for x in tags),
             [("replicate", "yes"), ("team", "data")], "tags on the replica")
        docs = [v for v in h.list_versions(s3, "dst1", key="docs/readme")]
        t.eq(sorted(v["StorageClass"] for v in docs), ["STANDARD_IA", "STANDARD_IA"],
             "docs/ versions use the higher-priority rule's storage class, no delete marker")
        for k in SPECIAL_KEYS:
            body = s3.get_object(Bucket="dst1", Key=k)["Body"].read().decode()
            t.eq(body, f"{k} two", f"tricky key {k[:30]!r} replicated byte for byte")
        t.eq([v for v in h.list_versions(s3, "dstunv")], [], "nothing written to the unversioned bucket")
    t.done()


if __name__ == "__main__":
    main()
