#!/usr/bin/env python3
"""test_fidelity.py — replicas that are the same object (aws-formats.md §6.2, §7, §8).

Case 1, one moto_server. The source bucket `src` has Object Lock enabled and holds:
  meta/a     2 versions with Content-Type, Content-Encoding, Content-Disposition,
             Content-Language, Cache-Control, Expires, user metadata, tags, a public-read ACL
             (+ READ_ACP for AuthenticatedUsers) and STANDARD_IA
  lock/x     GOVERNANCE until 2030-01-01 and legal hold ON
  kms/y      SSE-KMS
  big/obj    20 MiB with metadata, tags, an ACL and a lock: above the 5 MiB threshold, so a
             multipart copy (5 MiB parts, in parallel)
Rules: `dst` (Object Lock; SseKmsEncryptedObjects Enabled with ReplicaKmsKeyID),
`dstplain` (no Object Lock, no KMS opt-in: lock/x fails DstBucketObjectLockConfigMissing,
kms/y SrcObjectNotEligible), `dstown` (Object Lock; AccessControlTranslation: the replica
ACL is the destination owner's FULL_CONTROL only).
Checked version by version: bytes, content headers, metadata, tags, ACL grants, lock mode /
date / legal hold, storage class, SSE; big/obj ends multipart (ETag "-4").

Case 2, two moto_servers: the destination lives on the second one, bound with
--destination-profile far=farprofile (a profile with its own endpoint_url and keys). A 50 MiB
object is streamed GET -> UploadPart in 5 MiB parts; the batchrep process's peak RSS
(wait4) stays under a baseline run's + concurrency x part size.

Case 3, idempotence: every CopyObject is forwarded and its answer replaced by a reset
(faultproxy reset_after): the copy landed, batchrep does not know. It must HEAD the
destination, see the replica, and not copy again: one destination version per source
version.

Case 4: AccessControlTranslation without Destination.Account is refused (exit 2).
"""
import base64
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from faultproxy import FaultProxy, Rule  # noqa: E402

MIB = 1024 * 1024
UNTIL = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def rule(rid, prio, bucket, dest=None, **extra):
    """A rule for every key to `bucket`; dest: more Destination members."""
    r = {"ID": rid, "Priority": prio, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Disabled"},
         "Destination": {"Bucket": f"arn:aws:s3:::{bucket}", **(dest or {})}}
    r.update(extra)
    return r


RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    rule("kms-lock", 1, "dst",
         SourceSelectionCriteria={"SseKmsEncryptedObjects": {"Status": "Enabled"}},
         dest={"EncryptionConfiguration": {"ReplicaKmsKeyID": "replica-key"}}),
    rule("plain", 2, "dstplain"),
    rule("owner", 3, "dstown",
         dest={"Account": "123456789012", "AccessControlTranslation": {"Owner": "Destination"}}),
]}

HDRS = ("content-type", "content-encoding", "content-disposition", "content-language",
        "cache-control", "expires")


def head(s3, bucket, key, vid=None):
    kw = {"Bucket": bucket, "Key": key}
    if vid:
        kw["VersionId"] = vid
    r = s3.head_object(**kw)
    hd = r["ResponseMetadata"]["HTTPHeaders"]
    return {
        "headers": {k: hd.get(k) for k in HDRS},
        "meta": r.get("Metadata", {}),
        "size": r["ContentLength"],
        "etag": r["ETag"],
        "storage": r.get("StorageClass", "STANDARD"),
        "lock": (r.get("ObjectLockMode"), r.get("ObjectLockRetainUntilDate"),
                 r.get("ObjectLockLegalHoldStatus")),
        "sse": (r.get("ServerSideEncryption"), r.get("SSEKMSKeyId")),
    }


def grants(s3, bucket, key, vid=None):
    kw = {"Bucket": bucket, "Key": key}
    if vid:
        kw["VersionId"] = vid
    try:
        acl = s3.get_object_acl(**kw)
    except Exception as e:  # moto 5.2.1 answers 500 for some objects
        return f"error: {e}"
    return sorted((g["Permission"], g["Grantee"].get("ID") or g["Grantee"].get("URI"))
                  for g in acl["Grants"])


def tags(s3, bucket, key, vid=None):
    kw = {"Bucket": bucket, "Key": key}
    if vid:
        kw["VersionId"] = vid
    return sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(**kw)["TagSet"])


def body(s3, bucket, key, vid=None):
    kw = {"Bucket": bucket, "Key": key}
    if vid:
        kw["VersionId"] = vid
    return s3.get_object(**kw)["Body"].read()


def dst_versions(s3, bucket, key):
    """Versions of one key, oldest first."""
    return list(reversed([v for v in h.list_versions(s3, bucket, key=key)
                          if not v["IsDeleteMarker"]]))


def run_job(s3, tmp, rules, env, extra_args=(), name="job"):
    rows = []
    for key, vers in tmp["made"].items():
        rows += [("src", key, v) for v in reversed(vers)]
    arn, etag = h.upload_manifest(s3, "manifests", f"{name}.csv", rows)
    job = h.write_json(os.path.join(tmp["dir"], f"{name}.json"),
                       h.job_document(arn, etag, h.bucket_arn("reports")))
    rpath = h.write_json(os.path.join(tmp["dir"], f"{name}-rules.json"), rules)
    return h.run_batchrep(["run", job, "--replication-config", rpath, "--state-dir",
                           os.path.join(tmp["dir"], "state"), "--no-progress",
                           "--retry-base-ms", "20", "--retry-cap-ms", "200", *extra_args], env)


def report_rows(s3, res):
    desc = json.loads(res.stdout)["Job"]
    rep = h.read_report(s3, "reports", "reports", desc["JobId"])
    out = {}
    for status in ("succeeded", "failed"):
        for row in rep["rows"][status]:
            out[(h.url_decode_key(row[1]), row[2])] = (row[3], row[5])
    return desc, out


# ---------------------------------------------------------------------------------------------

def case_same_endpoint(t):
    with h.Moto() as moto, tempfile.TemporaryDirectory() as d:
        s3 = moto.client()
        h.make_bucket(s3, "src", object_lock=True)
        for b, lock in (("dst", True), ("dstplain", False), ("dstown", True),
                        ("reports", False), ("manifests", False)):
            h.make_bucket(s3, b, object_lock=lock)
        full = dict(ContentType="text/x-fidelity", ContentEncoding="gzip",
                    ContentDisposition='attachment; filename="a.txt"', ContentLanguage="fr-CA",
                    CacheControl="max-age=300, private",
                    Expires=datetime.datetime(2031, 2, 3, 4, 5, 6),
                    Metadata={"origin": "fidelity", "n": "1"}, Tagging="team=data&tier=gold",
                    StorageClass="STANDARD_IA")
        made = {"meta/a": [], "lock/x": [], "kms/y": [], "big/obj": []}
        made["meta/a"].append(s3.put_object(Bucket="src", Key="meta/a", Body=b"first", **full)
                              ["VersionId"])
        made["meta/a"].append(s3.put_object(
            Bucket="src", Key="meta/a", Body=b"second body", ACL="public-read",
            **{**full, "Metadata": {"origin": "fidelity", "n": "2"}})["VersionId"])
        owner = s3.get_bucket_acl(Bucket="src")["Owner"]["ID"]
        s3.put_object_acl(Bucket="src", Key="meta/a", VersionId=made["meta/a"][1],
                          GrantRead=f'uri="{ALL_USERS}"', GrantReadACP=f'uri="{AUTH_USERS}"',
                          GrantFullControl=f'id="{owner}"')
        made["lock/x"].append(s3.put_object(
            Bucket="src", Key="lock/x", Body=b"locked", ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=UNTIL, ObjectLockLegalHoldStatus="ON",
            Metadata={"l": "1"})["VersionId"])
        made["kms/y"].append(s3.put_object(
            Bucket="src", Key="kms/y", Body=b"secret", ServerSideEncryption="aws:kms",
            SSEKMSKeyId="source-key")["VersionId"])
        big = os.urandom(20 * MIB + 12345)
        made["big/obj"].append(s3.put_object(
            Bucket="src", Key="big/obj", Body=big, ContentType="application/x-big",
            ContentEncoding="identity", CacheControl="no-cache", Metadata={"size": "big"},
            Tagging="big=yes", GrantRead=f'uri="{ALL_USERS}"',
            GrantFullControl=f'id="{owner}"', ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=UNTIL, ObjectLockLegalHoldStatus="ON")["VersionId"])
        tmp = {"dir": d, "made": made}
        res = run_job(s3, tmp, RULES, moto.env(),
                      ["--multipart-threshold-bytes", str(5 * MIB), "--part-size-bytes",
                       str(5 * MIB), "--concurrency", "8", "--workers", "1"])
        t.eq(res.returncode, 0, "same endpoint: exit 0")
        if res.returncode:
            t.diag(res.stderr[-3000:])
            return
        desc, rows = report_rows(s3, res)
        want = {("meta/a", v): ("succeeded", "") for v in made["meta/a"]}
        want[("big/obj", made["big/obj"][0])] = ("failed", "DstBucketObjectLockConfigMissing")
        want[("lock/x", made["lock/x"][0])] = ("failed", "DstBucketObjectLockConfigMissing")
        want[("kms/y", made["kms/y"][0])] = ("failed", "SrcObjectNotEligible")
        t.eq(rows, want, "report: lock/x and big/obj DstBucketObjectLockConfigMissing "
                         "(dstplain), kms/y SrcObjectNotEligible (dstplain), meta/a succeeded")

        # every version on dst: the same object
        for key, vids in made.items():
            got = dst_versions(s3, "dst", key)
            if not t.eq(len(got), len(vids), f"dst: {key}: one replica per source version"):
                continue
            for i, (vid, dv) in enumerate(zip(vids, got)):
                src, rep = head(s3, "src", key, vid), head(s3, "dst", key, dv["VersionId"])
                what = f"dst: {key} v{i + 1}"
                t.eq(body(s3, "dst", key, dv["VersionId"]), body(s3, "src", key, vid),
                     f"{what}: bytes")
                t.eq(rep["headers"], src["headers"], f"{what}: content headers "
                     "(Type, Encoding, Disposition, Language, Cache-Control, Expires)")
                t.eq(rep["meta"], src["meta"], f"{what}: user metadata")
                t.eq(rep["storage"], src["storage"], f"{what}: storage class")
                t.eq(rep["lock"], src["lock"], f"{what}: lock mode, retain-until, legal hold")
                t.eq(tags(s3, "dst", key, dv["VersionId"]), tags(s3, "src", key, vid),
                     f"{what}: tags")
                if key == "kms/y":
                    t.eq(rep["sse"], ("aws:kms", "replica-key"),
                         f"{what}: SSE-KMS with the rule's ReplicaKmsKeyID")
                sg, rg = grants(s3, "src", key, vid), grants(s3, "dst", key, dv["VersionId"])
                if isinstance(sg, str) or isinstance(rg, str):
                    t.diag(f"{what}: ACL not comparable on moto ({sg if isinstance(sg, str) else rg})")
                else:
                    t.eq(rg, sg, f"{what}: ACL grants")
                if key == "big/obj":
                    t.ok(rep["etag"].endswith('-5"'),
                         f"{what}: written in 5 parts (ETag {rep['etag']})")
        # dstplain: no lock, no KMS
        t.eq([len(dst_versions(s3, "dstplain", k)) for k in made],
             [2, 0, 0, 0], "dstplain: meta/a only (big/obj has a lock, kms/y is SSE-KMS)")
        # dstown: the ACL is not copied; the destination owner has FULL_CONTROL
        got = dst_versions(s3, "dstown", "meta/a")
        if t.eq(len(got), 2, "dstown: meta/a replicated"):
            t.eq(grants(s3, "dstown", "meta/a", got[1]["VersionId"]),
                 [("FULL_CONTROL", s3.get_bucket_acl(Bucket="dstown")["Owner"]["ID"])],
                 "dstown: AccessControlTranslation: only the destination owner's FULL_CONTROL")


def run_logged(moto, d, name, job, rules):
    """Runs the job through a fault proxy that injects nothing, to log what was sent.
    Returns (CompletedProcess, the proxy's request log)."""
    jpath = h.write_json(os.path.join(d, f"{name}.json"), job)
    rpath = h.write_json(os.path.join(d, f"{name}-rules.json"), rules)
    with FaultProxy(moto.url, []) as proxy:
        res = h.run_batchrep(["run", jpath, "--replication-config", rpath, "--state-dir",
                              os.path.join(d, "state"), "--no-progress"],
                             h.batchrep_env(proxy.url))
        proxy.wait_idle()
        return res, list(proxy.log)


def case_acls_disabled(t):
    """Object Ownership BucketOwnerEnforced (ACLs disabled, the default of new AWS buckets),
    aws-formats.md §6.2 "ACL updates": a source bucket with ACLs disabled has no ACL to
    carry and one with ACLs enabled going to a destination with them disabled cannot carry
    it (S3 refuses grants there: AccessControlListNotSupported). Either way GetObjectAcl is
    not sent; between two buckets with ACLs enabled it is, and the grants are carried."""
    with h.Moto() as moto, tempfile.TemporaryDirectory() as d:
        s3 = moto.client()
        for b, enforced in (("src", False), ("srcoff", True), ("dst", False), ("dstoff", True),
                            ("reports", False), ("manifests", False)):
            if enforced:
                s3.create_bucket(Bucket=b, ObjectOwnership="BucketOwnerEnforced")
                s3.put_bucket_versioning(Bucket=b,
                                         VersioningConfiguration={"Status": "Enabled"})
            else:
                h.make_bucket(s3, b)
        owner = s3.get_bucket_acl(Bucket="src")["Owner"]["ID"]
        public = dict(GrantRead=f'uri="{ALL_USERS}"', GrantFullControl=f'id="{owner}"')
        made = {"on": {f"acl/{i}": [s3.put_object(Bucket="src", Key=f"acl/{i}", Body=b"x%d" % i,
                                                   **public)["VersionId"]] for i in range(3)},
                "off": {f"plain/{i}": [s3.put_object(Bucket="srcoff", Key=f"plain/{i}",
                                                      Body=b"y%d" % i)["VersionId"]]
                        for i in range(3)}}

        def job(name, src, dest):
            rows = [(src, k, v[0]) for k, v in made[name].items()]
            arn, etag = h.upload_manifest(s3, "manifests", f"{name}-{dest}.csv", rows)
            res, log = run_logged(moto, d, f"{name}-{dest}",
                                  h.job_document(arn, etag, h.bucket_arn("reports")),
                                  {"Role": "arn:aws:iam::123456789012:role/r",
                                   "Rules": [rule("all", 1, dest)]})
            ops = [r["op"] for r in log]
            what = f"{name} -> {dest}"
            t.eq(res.returncode, 0, f"{what}: exit 0")
            if res.returncode:
                t.diag(res.stderr[-2000:])
                return ops
            _, rows = report_rows(s3, res)
            t.eq(sorted(rows.values()), [("succeeded", "")] * 3, f"{what}: 3 tasks succeeded")
            t.eq(ops.count("CopyObject"), 3, f"{what}: 3 CopyObject")
            return ops

        ops = job("on", "src", "dst")
        t.eq(ops.count("GetObjectAcl"), 3, "ACLs enabled on both buckets: GetObjectAcl per "
             "version")
        for k, v in made["on"].items():
            rep = dst_versions(s3, "dst", k)[-1]["VersionId"]
            t.eq(grants(s3, "dst", k, rep), grants(s3, "src", k, v[0]),
                 f"dst: {k}: the public-read grant is carried")
        ops = job("on", "src", "dstoff")
        t.eq(ops.count("GetObjectAcl"), 0, "destination with ACLs disabled: no GetObjectAcl")
        t.eq(ops.count("GetBucketOwnershipControls"), 2,
             "Object Ownership asked once of the destination and once of the source")
        for k in made["on"]:
            rep = dst_versions(s3, "dstoff", k)[-1]["VersionId"]
            t.eq(grants(s3, "dstoff", k, rep), [("FULL_CONTROL", owner)],
                 f"dstoff: {k}: no grant sent, the bucket owner's FULL_CONTROL only")
        ops = job("off", "srcoff", "dst")
        t.eq(ops.count("GetObjectAcl"), 0, "source with ACLs disabled: no GetObjectAcl")
        for k in made["off"]:
            t.eq(len(dst_versions(s3, "dst", k)), 1, f"dst: {k}: replicated")


def case_inventory_facts(t):
    """An Inventory with EncryptionStatus, the ObjectLock columns, BucketKeyStatus and
    ObjectAccessControlList (aws-formats.md §2.3) tells what a CopyObject needs: the versions
    are replicated with one CopyObject each, no HeadObject and no GetObjectAcl, and the
    replicas are the same as when those are read (lock, SSE-KMS, class, ACL)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "fixtures"))
    import make_inventory as mi
    with h.Moto() as moto, tempfile.TemporaryDirectory() as d:
        s3 = moto.client()
        h.make_bucket(s3, "src", object_lock=True)
        h.make_bucket(s3, "dst", object_lock=True)
        for b in ("reports", "inv"):
            h.make_bucket(s3, b)
        owner = s3.get_bucket_acl(Bucket="src")["Owner"]["ID"]
        made = {
            "plain/a": s3.put_object(Bucket="src", Key="plain/a", Body=b"plain",
                                     StorageClass="STANDARD_IA")["VersionId"],
            "lock/x": s3.put_object(Bucket="src", Key="lock/x", Body=b"locked",
                                    ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=UNTIL,
                                    ObjectLockLegalHoldStatus="ON")["VersionId"],
            "kms/y": s3.put_object(Bucket="src", Key="kms/y", Body=b"secret",
                                   ServerSideEncryption="aws:kms",
                                   SSEKMSKeyId="source-key")["VersionId"],
            "acl/z": s3.put_object(Bucket="src", Key="acl/z", Body=b"public",
                                   GrantRead=f'uri="{ALL_USERS}"',
                                   GrantFullControl=f'id="{owner}"')["VersionId"],
        }
        acl_doc = {"version": "2022-11-10", "status": "AVAILABLE", "grants": [
            {"canonicalId": owner, "permission": "FULL_CONTROL", "type": "CanonicalUser"}]}
        public = dict(acl_doc, grants=acl_doc["grants"] + [
            {"uri": ALL_USERS, "permission": "READ", "type": "Group"}])
        b64 = lambda doc: base64.b64encode(json.dumps(doc).encode()).decode()  # noqa: E731
        rows = mi.rows_from_listing(s3, "src")
        for r in rows:
            r["EncryptionStatus"] = "SSE-KMS" if r["Key"] == "kms/y" else "NOT-SSE"
            r["BucketKeyStatus"] = "DISABLED"
            if r["Key"] == "lock/x":
                r.update(ObjectLockMode="Governance", ObjectLockRetainUntilDate=UNTIL,
                         ObjectLockLegalHoldStatus="On")
            r["ObjectAccessControlList"] = b64(public if r["Key"] == "acl/z" else acl_doc)
        mkey = mi.build(os.path.join(d, "inv"), rows, mi.FULL_SCHEMA, "src", "inv")
        mi.upload(s3, os.path.join(d, "inv"), "inv")
        etag = s3.head_object(Bucket="inv", Key=mkey)["ETag"].strip('"')
        job = h.job_document(h.object_arn("inv", mkey), etag, h.bucket_arn("reports"))
        job["Manifest"]["Spec"] = {"Format": "S3InventoryReport_CSV_20161130"}
        res, log = run_logged(moto, d, "inventory", job, {
            "Role": "arn:aws:iam::123456789012:role/r", "Rules": [rule(
                "all", 1, "dst",
                SourceSelectionCriteria={"SseKmsEncryptedObjects": {"Status": "Enabled"}},
                dest={"EncryptionConfiguration": {"ReplicaKmsKeyID": "replica-key"}})]})
        ops = [(r["op"], r["target"].split("?")[0]) for r in log]
        t.eq(res.returncode, 0, "inventory facts: exit 0")
        if res.returncode:
            t.diag(res.stderr[-3000:])
            return
        desc = json.loads(res.stdout)["Job"]
        t.eq((desc["ProgressSummary"]["NumberOfTasksSucceeded"],
              desc["ProgressSummary"]["NumberOfTasksFailed"]), (4, 0),
             "inventory facts: 4 versions replicated")
        on_src = [op for op, path in ops if path.startswith("/src/")]
        t.eq(sorted(on_src), [],
             "inventory facts: no HeadObject, GetObjectAcl or listing of src (the rows told)")
        t.eq(sum(1 for op, _ in ops if op == "CopyObject"), 4, "one CopyObject per version")
        for key, vid in made.items():
            got = dst_versions(s3, "dst", key)
            if not t.eq(len(got), 1, f"{key}: one replica"):
                continue
            src, rep = head(s3, "src", key, vid), head(s3, "dst", key, got[0]["VersionId"])
            t.eq(body(s3, "dst", key, got[0]["VersionId"]), body(s3, "src", key, vid),
                 f"{key}: bytes")
            t.eq(rep["storage"], src["storage"], f"{key}: storage class")
            t.eq(rep["lock"], src["lock"], f"{key}: lock mode, retain-until, legal hold")
            t.eq(grants(s3, "dst", key, got[0]["VersionId"]), grants(s3, "src", key, vid),
                 f"{key}: ACL grants")
            if key == "kms/y":
                t.eq(rep["sse"], ("aws:kms", "replica-key"),
                     f"{key}: SSE-KMS with the rule's ReplicaKmsKeyID")


# ---------------------------------------------------------------------------------------------

def peak_rss_kib(args, env):
    """Runs batchrep ARGS; returns (CompletedProcess, peak RSS in KiB). GNU time's %M when
    /usr/bin/time exists (wait4 of the test's own child would count the forked Python
    process, ~100 MB, before exec); else the highest VmHWM read from /proc while it runs."""
    # Under AddressSanitizer (make check-asan) freed buffers sit in a 256 MiB quarantine
    # and would count as peak RSS: turn it off so the bound measures the engine's buffers.
    env = dict(env, ASAN_OPTIONS=(env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0"
                                  ":thread_local_quarantine_size_kb=0").lstrip(":"))
    with tempfile.NamedTemporaryFile("r") as rss:
        if os.access("/usr/bin/time", os.X_OK):
            cmd = ["/usr/bin/time", "-f", "%M", "-o", rss.name, h.batchrep_bin(), *args]
        else:
            cmd = [h.batchrep_bin(), *args]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
        hwm = 0
        while p.poll() is None and cmd[0] != "/usr/bin/time":
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm = max(hwm, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.02)
        out, err = p.communicate()
        if cmd[0] == "/usr/bin/time":
            text = rss.read().strip().splitlines()
            hwm = int(text[-1]) if text and text[-1].isdigit() else 0
        return subprocess.CompletedProcess(args, p.returncode, out, err), hwm


def case_other_endpoint(t):
    with h.Moto() as a, h.Moto() as b, tempfile.TemporaryDirectory() as d:
        s3, far = a.client(), b.client()
        for name in ("src", "reports", "manifests"):
            h.make_bucket(s3, name)
        h.make_bucket(far, "far")
        cfg = os.path.join(d, "config")
        with open(cfg, "w") as f:
            f.write(f"[profile farprofile]\nendpoint_url = {b.url}\nregion = us-east-1\n"
                    f"aws_access_key_id = {b.access_key}\n"
                    f"aws_secret_access_key = {b.secret_key}\n")
        data = os.urandom(50 * MIB + 777)
        small = b"small object body"
        made = {
            "huge/obj": [s3.put_object(Bucket="src", Key="huge/obj", Body=data,
                                       ContentType="application/x-huge",
                                       Metadata={"k": "v"}, Tagging="a=1")["VersionId"]],
            "small/obj": [s3.put_object(Bucket="src", Key="small/obj", Body=small,
                                        ContentLanguage="de", Metadata={"s": "1"},
                                        Tagging="b=2")["VersionId"]],
        }
        rules = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [rule("far", 1, "far")]}
        env = a.env({"AWS_CONFIG_FILE": cfg})
        part = 5 * MIB
        common = ["--replication-config", None, "--state-dir", os.path.join(d, "state"),
                  "--no-progress", "--part-size-bytes", str(part), "--concurrency", "4",
                  "--workers", "1", "--destination-profile", "far=farprofile"]
        # baseline: the small object only
        tmp = {"dir": d, "made": {"small/obj": made["small/obj"]}}
        rows = [("src", "small/obj", made["small/obj"][0])]
        arn, etag = h.upload_manifest(s3, "manifests", "base.csv", rows)
        job = h.write_json(os.path.join(d, "base.json"),
                           h.job_document(arn, etag, h.bucket_arn("reports")))
        common[1] = h.write_json(os.path.join(d, "far-rules.json"), rules)
        res0, base_kib = peak_rss_kib(["run", job, *common], env)
        t.eq(res0.returncode, 0, f"other endpoint: baseline run exit 0 (peak RSS {base_kib} KiB)")
        if res0.returncode:
            t.diag(res0.stderr[-2000:])
        far.delete_object(Bucket="far", Key="small/obj")  # a clean slate for the real run
        for v in far.list_object_versions(Bucket="far").get("Versions", []) + \
                far.list_object_versions(Bucket="far").get("DeleteMarkers", []):
            far.delete_object(Bucket="far", Key=v["Key"], VersionId=v["VersionId"])
        tmp = {"dir": d, "made": made}
        rows = [("src", k, v[0]) for k, v in made.items()]
        arn, etag = h.upload_manifest(s3, "manifests", "far.csv", rows)
        job = h.write_json(os.path.join(d, "far.json"),
                           h.job_document(arn, etag, h.bucket_arn("reports")))
        res, kib = peak_rss_kib(["run", job, *common], env)
        t.eq(res.returncode, 0, "other endpoint: exit 0")
        if res.returncode:
            t.diag(res.stderr[-3000:])
            return
        desc = json.loads(res.stdout)["Job"]
        t.eq(desc["ProgressSummary"]["NumberOfTasksSucceeded"], 2, "both versions succeeded")
        bound_kib = base_kib + 4 * part // 1024 + 8 * 1024
        t.ok(0 < kib <= bound_kib and kib < 50 * 1024,
             f"peak RSS {kib} KiB <= baseline {base_kib} KiB + 4 transfers x 5 MiB + 8 MiB "
             f"({bound_kib} KiB), well under the 50 MiB object")
        for key in made:
            src, rep = head(s3, "src", key, made[key][0]), head(far, "far", key)
            t.eq(body(far, "far", key), body(s3, "src", key, made[key][0]),
                 f"far: {key}: bytes")
            t.eq((rep["headers"], rep["meta"]), (src["headers"], src["meta"]),
                 f"far: {key}: content headers and metadata")
            t.eq(tags(far, "far", key), tags(s3, "src", key, made[key][0]), f"far: {key}: tags")
        t.ok(head(far, "far", "huge/obj")["etag"].endswith('-11"'),
             "far: huge/obj written in 11 parts of 5 MiB")
        t.eq(len(dst_versions(far, "far", "huge/obj")), 1, "far: one version of huge/obj")
        t.eq(len(s3.list_multipart_uploads(Bucket="src").get("Uploads", [])), 0,
             "nothing written to the source endpoint")


# ---------------------------------------------------------------------------------------------

def case_idempotent(t):
    with h.Moto() as moto, tempfile.TemporaryDirectory() as d:
        s3 = moto.client()
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(s3, b)
        made = {}
        for i in range(6):
            key = f"idem/{i}"
            vers = h.put_versions(s3, "src", key, [f"{key} one", f"{key} second"],
                                  separate_s=False)
            made[key] = [v["VersionId"] for v in vers]
        rules = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [rule("all", 1, "dst")]}
        with FaultProxy(moto.url, [Rule("reset_after", op="CopyObject")]) as proxy:
            res = run_job(s3, {"dir": d, "made": made}, rules, h.batchrep_env(proxy.url))
            proxy.wait_idle()
            copies = proxy.requests(op="CopyObject")
            faults = proxy.counts().get("reset_after", 0)
        t.eq(res.returncode, 0, "idempotent: exit 0")
        if res.returncode:
            t.diag(res.stderr[-3000:])
            return
        desc = json.loads(res.stdout)["Job"]
        t.eq((desc["ProgressSummary"]["NumberOfTasksSucceeded"],
              desc["ProgressSummary"]["NumberOfTasksFailed"]), (12, 0),
             "every task succeeded although every copy's answer was lost")
        t.eq(faults, 12, "the proxy reset the answer of all 12 copies")
        t.eq(len(copies), 12, "no copy was sent twice (each landed; a HEAD saw it)")
        extra = {k: len(dst_versions(s3, "dst", k)) for k in made}
        t.eq(extra, {k: 2 for k in made}, "one destination version per source version")
        for k, vids in made.items():
            got = dst_versions(s3, "dst", k)
            if len(got) == 2:
                t.eq([body(s3, "dst", k, g["VersionId"]) for g in got],
                     [body(s3, "src", k, v) for v in vids], f"{k}: versions in order")


def case_parts(t):
    """A failed part is retried alone; a part that fails for good aborts the upload."""
    with h.Moto() as moto, tempfile.TemporaryDirectory() as d:
        s3 = moto.client()
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(s3, b)
        data = os.urandom(12 * MIB)
        made = {"mp/obj": [s3.put_object(Bucket="src", Key="mp/obj", Body=data)["VersionId"]]}
        rules = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [rule("all", 1, "dst")]}
        args = ["--multipart-threshold-bytes", str(5 * MIB), "--part-size-bytes", str(5 * MIB)]
        plan = [Rule("internal", op="UploadPartCopy", at=[2])]
        with FaultProxy(moto.url, plan) as proxy:
            res = run_job(s3, {"dir": d, "made": made}, rules, h.batchrep_env(proxy.url), args,
                          name="parts1")
            proxy.wait_idle()
            parts = [r["target"] for r in proxy.requests(op="UploadPartCopy")]
        t.eq(res.returncode, 0, "parts: exit 0")
        t.eq(len(parts), 4, "3 parts, the faulted one sent again alone (4 UploadPartCopy)")
        t.eq(body(s3, "dst", "mp/obj"), data, "parts: bytes intact after a part was retried")
        plan = [Rule("internal", op="UploadPartCopy", at=[1])]
        with FaultProxy(moto.url, plan) as proxy:
            res = run_job(s3, {"dir": d, "made": made}, rules, h.batchrep_env(proxy.url),
                          [*args, "--max-attempts", "1"], name="parts2")
            proxy.wait_idle()
            aborts = proxy.requests(op="AbortMultipartUpload")
        t.eq(res.returncode, 0, "parts, failing: exit 0")
        try:
            _, rows = report_rows(s3, res)
        except Exception as e:
            t.diag(f"report: {e!r}; stdout {res.stdout[-1500:]}")
            rows = {}
        t.eq(list(rows.values()), [("failed", "InternalError")],
             "a part that fails for good fails the task")
        t.eq(len(aborts), 1, "the upload is aborted (AbortMultipartUpload)")
        t.eq(len(dst_versions(s3, "dst", "mp/obj")), 1, "no second destination version")


def case_bad_rules(t):
    with tempfile.TemporaryDirectory() as d:
        bad = {"Role": "r", "Rules": [rule("x", 1, "dst", dest={
            "AccessControlTranslation": {"Owner": "Destination"}})]}
        rules = h.write_json(os.path.join(d, "rules.json"), bad)
        job = h.write_json(os.path.join(d, "job.json"), h.job_document(
            os.path.join(d, "m.csv"), "x", d))
        with open(os.path.join(d, "m.csv"), "w") as f:
            f.write("src,k,v\n")
        res = h.run_batchrep(["run", job, "--replication-config", rules, "--state-dir",
                              os.path.join(d, "state")], h.batchrep_env("http://127.0.0.1:9"))
        t.eq(res.returncode, 2, "AccessControlTranslation without Account: exit 2")
        t.ok("Destination.Account" in res.stderr, "the message names Destination.Account")


def main():
    t = h.Tap()
    only = os.environ.get("FIDELITY_CASES", "")
    for name, fn in (("bad", case_bad_rules), ("same", case_same_endpoint),
                     ("acls", case_acls_disabled), ("invfacts", case_inventory_facts),
                     ("idem", case_idempotent), ("parts", case_parts), ("far", case_other_endpoint)):
        if not only or name in only.split(","):
            started = time.monotonic()
            fn(t)
            t.diag(f"case {name}: {time.monotonic() - started:.1f} s")
    t.done()


if __name__ == "__main__":
    main()
