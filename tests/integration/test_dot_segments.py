#!/usr/bin/env python3
"""test_dot_segments.py — keys, prefixes and bucket names with `.`, `..`, `./`, `//` and
`%2E%2E` act on exactly what they name, on moto with and without signature checks.

S3 keys are opaque: `x/../a/key` is a key of its own, not `a/key`. An HTTP client that
"normalises" the path (curl does, unless CURLOPT_PATH_AS_IS) sends a request for another key
or another bucket than the one signed and meant: a delete marker of `x/../a/key` would hide
the current version of `a/key`, a HEAD of `y/../../victim/owned` would reach bucket `victim`.

Source bucket `src` (versioned); rule: everything -> `dst`, delete markers replicated.
  a/key                 v1 (its current version must stay v1 in dst)
  x/../a/key            v1, then a delete marker (current; auth off only: a key of several
                        rows is listed with ListObjectVersions Prefix=<key>, and signed moto
                        5.2 answers SignatureDoesNotMatch to any Prefix holding '/', even
                        from boto3)
  y/../../victim/owned  v1
  ./k, a/./b, a//b, a/.., .., .   one version each
  z/%2E%2E/w            (auth off only: moto refuses '%' in signed keys) a literal %2E%2E
  m/../m2               written %2E%2E in the manifest (m/%2E%2E/m2): decodes to m/../m2
Bucket `victim` holds victim/keep and must not change.

1. A CSV job with Report.Prefix `../victim-reports/x` (bucket `reports`; a bucket
   `victim-reports` exists and must stay empty): dst holds each key's versions exactly, a/key's
   current version is still v1, victim is untouched, the report is at the literal key
   `../victim-reports/x/job-<id>/...` in `reports`, every task succeeded once; nothing
   was written outside the state directory.
2. ManifestGenerator with ManifestPrefix `../gen/./p//q`: the generated manifest is at that
   literal prefix in `genout`, and its local copy stays under the state directory.
3. A local report directory with Prefix `../escape`: the files are under
   <dir>/%2E%2E/escape/job-<id>/ and nothing is created beside <dir>.
4. Bucket names S3 would refuse (`..`, `a/b`, `a?b`, `x`, `1.2.3.4`, `a..b`, `-ab`) are refused
   where they are read, naming the field: the manifest ARN, Report.Bucket, a rule's
   Destination.Bucket, ManifestGenerator SourceBucket (exit 2), and a manifest row's bucket
   (the job fails with InvalidManifestContent naming file, line and field Bucket).
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}

PLAIN_KEYS = ["./k", "a/./b", "a//b", "a/..", "..", "."]


def files_under(root):
    out = set()
    for d, _, fs in os.walk(root):
        for f in fs:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def run(t, tmp, env, name, job, rules=RULES, expect=0):
    job_path = h.write_json(os.path.join(tmp, f"{name}.json"), job)
    rules_path = h.write_json(os.path.join(tmp, f"{name}.rules.json"), rules)
    res = h.run_batchrep(["run", job_path, "--replication-config", rules_path, "--state-dir",
                          os.path.join(tmp, "state"), "--no-progress"], env)
    if not t.eq(res.returncode, expect, f"{name}: batchrep run exits {expect}"):
        t.diag(res.stderr[-2000:])
    return res


def case(t, auth):
    tag = "signed" if auth else "unsigned"
    with h.Moto(auth=auth) as moto, tempfile.TemporaryDirectory() as outer:
        tmp = os.path.join(outer, "work")
        os.makedirs(tmp)
        s3 = moto.client()
        for b in ("src", "dst", "victim", "reports", "victim-reports", "manifests", "genout"):
            h.make_bucket(s3, b)
        victim = s3.put_object(Bucket="victim", Key="keep", Body=b"victim")["VersionId"]
        rows, want = [], {}

        def put(key, body, manifest_key=None):
            v = s3.put_object(Bucket="src", Key=key, Body=body)["VersionId"]
            rows.append(("src", manifest_key or h.url_encode_key(key), v))
            want.setdefault(key, []).append(("v", body))

        put("a/key", b"a/key v1")
        put("x/../a/key", b"x/../a/key v1")
        if not auth:  # a key of two rows is listed (Prefix=key): see the module comment
            dm = s3.delete_object(Bucket="src", Key="x/../a/key")["VersionId"]
            rows.append(("src", "x/../a/key", dm))
            want["x/../a/key"].append(("dm", None))
        put("y/../../victim/owned", b"owned")
        for k in PLAIN_KEYS:
            put(k, f"body of {k}".encode())
        put("m/../m2", b"m2", manifest_key="m/%2E%2E/m2")
        if not auth:
            put("z/%2E%2E/w", b"literal", manifest_key=h.url_encode_key("z/%2E%2E/w"))
        rows.reverse()  # newest first, as ListObjectVersions lists them
        manifest = "".join(",".join(r) + "\n" for r in rows).encode()
        arn, etag = h.upload_manifest(s3, "manifests", "dots.csv", manifest)

        # 1. CSV job, report prefix with "..": acts on exactly the keys named
        prefix = "../victim-reports/x"
        job = h.job_document(arn, etag, h.bucket_arn("reports"), prefix=prefix)
        res = run(t, tmp, moto.env(), f"{tag} csv", job)
        desc = json.loads(res.stdout)["Job"] if res.returncode == 0 else {}
        ps = desc.get("ProgressSummary", {})
        t.eq((desc.get("Status"), ps.get("NumberOfTasksSucceeded"), ps.get("NumberOfTasksFailed")),
             ("Complete", len(rows), 0), f"{tag}: every task succeeded")
        rep = h.read_report(s3, "reports", prefix, desc.get("JobId", "?"))
        for row in rep["rows"]["failed"]:
            t.diag(f"failed: {row}")
        # one listing of the whole bucket: signed moto refuses some Prefix values (./k)
        dst_versions = h.list_versions(s3, "dst")
        for key, versions in sorted(want.items()):
            got = [("dm", None) if v["IsDeleteMarker"] else
                   ("v", s3.get_object(Bucket="dst", Key=key, VersionId=v["VersionId"])["Body"].read())
                   for v in reversed(dst_versions) if v["Key"] == key]
            t.eq(got, versions, f"{tag}: dst {key!r} holds exactly its own versions, oldest first")
        cur = s3.get_object(Bucket="dst", Key="a/key")["Body"].read()
        t.eq(cur, b"a/key v1", f"{tag}: the delete marker of x/../a/key did not hide a/key")
        vv = [(v["Key"], v["VersionId"]) for v in h.list_versions(s3, "victim")]
        t.eq(vv, [("keep", victim)], f"{tag}: bucket victim untouched")
        t.eq(h.list_versions(s3, "victim-reports"), [], f"{tag}: bucket victim-reports untouched")
        t.ok(all(k.startswith("../victim-reports/x/job-") for k in rep["keys"]) and
             len(rep["keys"]) == 3, f"{tag}: the report is at the literal prefix {prefix!r} "
             f"in bucket reports ({len(rep['keys'])} objects)")
        echoed = sorted((r[1], r[2]) for r in rep["rows"]["succeeded"])
        t.eq(echoed, sorted((r[1], r[2]) for r in rows),
             f"{tag}: one report row per task, keys echoed as the manifest wrote them")
        t.eq(sorted(os.listdir(outer)), ["work"], f"{tag}: nothing written beside the work dir")

        # 2. ManifestGenerator with a prefix full of dot segments
        gprefix = "../gen/./p//q"
        gjob = h.job_document(arn, etag, h.bucket_arn("reports"), prefix="gen-report")
        del gjob["Manifest"]
        gjob["ManifestGenerator"] = {"S3JobManifestGenerator": {
            "ExpectedBucketOwner": h.ACCOUNT_ID, "SourceBucket": h.bucket_arn("src"),
            "EnableManifestOutput": True,
            "ManifestOutputLocation": {"Bucket": h.bucket_arn("genout"),
                                       "ManifestPrefix": gprefix,
                                       "ManifestFormat": "S3InventoryReport_CSV_20211130"},
            "Filter": {"KeyNameConstraint": {"MatchAnyPrefix": ["a/"]}}}}
        res = run(t, tmp, moto.env(), f"{tag} generated", gjob)
        gid = json.loads(res.stdout)["Job"]["JobId"] if res.returncode == 0 else "?"
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="genout").get("Contents", []))
        base = f"{gprefix}/job-{gid}/"
        t.ok(len(keys) == 3 and all(k.startswith(base) for k in keys) and
             base + "manifest.json" in keys,
             f"{tag}: the generated manifest is at the literal prefix {gprefix!r} ({keys})")
        t.eq(sorted(os.listdir(outer)), ["work"], f"{tag}: the generator wrote nothing outside")
        state_files = files_under(os.path.join(tmp, "state"))
        # on disk "p//q" is the folder p/q: dot segments escaped, the rest as the key says
        t.ok(any(f.startswith("jobs/") and "/generated/%2E%2E/gen/%2E/p/q/job-" in f
                 for f in state_files),
             f"{tag}: its local copy is under the state directory, dot segments escaped")

        # 3. a local report directory and a prefix with ".."
        local = os.path.join(tmp, "local-reports")
        os.makedirs(local)
        ljob = h.job_document(arn, etag, local, prefix="../escape")
        ljob["ClientRequestToken"] = "local-report"
        res = run(t, tmp, moto.env(), f"{tag} local report", ljob)
        lid = json.loads(res.stdout)["Job"]["JobId"] if res.returncode == 0 else "?"
        t.ok(os.path.isfile(os.path.join(local, "%2E%2E", "escape", f"job-{lid}",
                                         "manifest.json")) and
             not os.path.exists(os.path.join(tmp, "escape")),
             f"{tag}: a local report with Prefix ../escape stays under its directory")

        if auth:
            return
        # 4. bucket names S3 refuses, refused where they are read
        bad_names = ["..", "a/b", "a?b", "x", "1.2.3.4", "a..b", "-ab"]
        for name in bad_names:
            j = h.job_document(h.object_arn(name, "m.csv"), etag, h.bucket_arn("reports"))
            r = run(t, tmp, moto.env(), f"manifest bucket {name!r}", j, expect=2)
            t.ok("Manifest.Location.ObjectArn" in r.stderr, f"manifest bucket {name!r}: "
                 "the message names Manifest.Location.ObjectArn")
        r = run(t, tmp, moto.env(), "report bucket '..'",
                h.job_document(arn, etag, "arn:aws:s3:::.."), expect=2)
        t.ok("Report.Bucket" in r.stderr, "report bucket '..': the message names Report.Bucket")
        bad_rules = json.loads(json.dumps(RULES))
        bad_rules["Rules"][0]["Destination"]["Bucket"] = "arn:aws:s3:::.."
        r = run(t, tmp, moto.env(), "destination '..'",
                h.job_document(arn, etag, h.bucket_arn("reports")), rules=bad_rules, expect=2)
        t.ok("Destination.Bucket" in r.stderr,
             "destination bucket '..': the message names Rules[0].Destination.Bucket")
        g = json.loads(json.dumps(gjob))
        g["ManifestGenerator"]["S3JobManifestGenerator"]["SourceBucket"] = "arn:aws:s3:::a..b"
        g["ClientRequestToken"] = "bad-source"
        r = run(t, tmp, moto.env(), "generator source 'a..b'", g, expect=2)
        t.ok("SourceBucket" in r.stderr, "generator source bucket: the message names SourceBucket")
        arn2, etag2 = h.upload_manifest(s3, "manifests", "badrow.csv",
                                        b"src,a/key," + rows[-1][2].encode() + b"\n..,a/key,v\n")
        j = h.job_document(arn2, etag2, h.bucket_arn("reports"), prefix="bad")
        r = run(t, tmp, moto.env(), "manifest row bucket '..'", j, expect=3)
        d = json.loads(r.stdout)["Job"] if r.stdout else {}
        reasons = json.dumps(d.get("FailureReasons", []))
        t.ok("InvalidManifestContent" in reasons and "badrow.csv:2:" in reasons and
             "field Bucket" in reasons,
             f"a manifest row with bucket '..' fails the job naming line and field ({reasons})")


def main():
    t = h.Tap()
    case(t, auth=False)
    case(t, auth=True)
    t.done()


if __name__ == "__main__":
    main()
