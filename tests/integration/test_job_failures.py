#!/usr/bin/env python3
"""test_job_failures.py — what a user sees when a job cannot run or fails.

  * an invalid job document: exit 2, the message names the file and the member;
  * a malformed manifest (aws-formats.md §1.1: wrong column count, BOM, empty line, versions on
    some rows only, bad %-escape): exit 3, DescribeJob Status Failed with FailureReasons
    InvalidManifestContent naming the line, and no task run (nothing on the destination);
  * a manifest object whose ETag does not match the job's: exit 3;
  * the failure threshold (aws-formats.md §4.2): 1,200 versions of which 1,100 do not exist;
    the job stops once at least 1,000 tasks ran with more than half failed: Failing while its
    report is written (the upload is held by a proxy), then exit 3, Failed, and the report
    written for the tasks that ran, each exactly once;
  * a local manifest path and a local report directory work too (DESIGN.md).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from faultproxy import FaultProxy, Rule  # noqa: E402

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}


def run(tmp, env, job, name):
    job_path = h.write_json(os.path.join(tmp, name + ".json"), job)
    rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
    return h.run_batchrep(["run", job_path, "--replication-config", rules, "--state-dir",
                           os.path.join(tmp, "state"), "--no-progress"], env)


def main():
    t = h.Tap()
    os.umask(0o022)
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(s3, b)
        env = h.batchrep_env(moto.url)
        vers = h.put_versions(s3, "src", "a/key", ["one", "two"], separate_s=False)
        good_rows = [("src", "a/key", v["VersionId"]) for v in vers]
        arn, etag = h.upload_manifest(s3, "manifests", "good.csv", good_rows)

        # ---- invalid job documents: exit 2, message names the member ----
        cases = [
            ("no Operation", lambda j: j.pop("Operation"), "Operation"),
            ("other operation", lambda j: j.update(Operation={"S3PutObjectCopy": {}}), "Operation"),
            ("bad Fields", lambda j: j["Manifest"]["Spec"].update(Fields=["Bucket", "Nope"]),
             "Manifest.Spec.Fields[1]"),
            ("Priority string", lambda j: j.update(Priority="high"), "Priority"),
            ("no ClientRequestToken", lambda j: j.pop("ClientRequestToken"), "ClientRequestToken"),
            ("bad ReportScope", lambda j: j["Report"].update(ReportScope="Some"),
             "Report.ReportScope"),
        ]
        for name, mutate, field in cases:
            job = h.job_document(arn, etag, h.bucket_arn("reports"))
            mutate(job)
            res = run(tmp, env, job, "bad")
            t.eq(res.returncode, 2, f"{name}: exit 2")
            t.ok(f"bad.json: {field}:" in res.stderr, f"{name}: the message names {field}")

        # ---- malformed manifests: the job fails before any task runs ----
        bad = [
            ("wrong column count", b"src,a/key,%s\nsrc,a/key\n", ":2:"),
            ("BOM", b"\xef\xbb\xbfsrc,a/key,%s\n", ":1:"),
            ("empty line", b"src,a/key,%s\n\nsrc,a/key,%s\n", ":2:"),
            ("bad escape", b"src,a/key,%s\nsrc,a%G1key,%s\n", ":2:"),
        ]
        vid = vers[0]["VersionId"].encode()
        for name, data, where in bad:
            data = data.replace(b"%s", vid) if b"%G1" not in data else \
                data.replace(b",%s", b"," + vid)
            marn, metag = h.upload_manifest(s3, "manifests", f"bad-{len(name)}.csv", data)
            res = run(tmp, env, h.job_document(marn, metag, h.bucket_arn("reports")), "job")
            t.eq(res.returncode, 3, f"manifest with {name}: exit 3 (job Failed)")
            try:
                d = json.loads(res.stdout)["Job"]
            except ValueError:
                t.ok(False, f"{name}: DescribeJob JSON on stdout")
                continue
            fr = d["FailureReasons"][0] if d["FailureReasons"] else {}
            t.eq((d["Status"], fr.get("FailureCode")), ("Failed", "InvalidManifestContent"),
                 f"{name}: Failed with InvalidManifestContent")
            t.ok(where in fr.get("FailureReason", ""),
                 f"{name}: the reason names the line ({fr.get('FailureReason', '')!r})")
        t.eq(h.list_versions(s3, "dst"), [], "no task ran for a malformed manifest")

        # ---- ETag mismatch ----
        res = run(tmp, env, h.job_document(arn, "0" * 32, h.bucket_arn("reports")), "job")
        d = json.loads(res.stdout)["Job"]
        t.eq((res.returncode, d["Status"]), (3, "Failed"), "ETag mismatch: exit 3, Failed")

        # ---- local manifest path and local report directory ----
        local_manifest = os.path.join(tmp, "local.csv")
        with open(local_manifest, "wb") as f:
            f.write(h.manifest_csv(good_rows))
        report_dir = os.path.join(tmp, "local-report")
        job = h.job_document(local_manifest, "", report_dir, prefix="p")
        res = run(tmp, env, job, "local")
        t.eq(res.returncode, 0, "local manifest + local report directory: exit 0")
        d = json.loads(res.stdout)["Job"]
        mpath = os.path.join(report_dir, "p", f"job-{d['JobId']}", "manifest.json")
        t.ok(os.path.exists(mpath) and os.path.exists(mpath + ".md5"),
             "local report: manifest.json and .md5 written")
        # a report in a folder of the user's follows their umask (022 here); the state
        # directory stays private
        modes = sorted({oct(os.stat(os.path.join(dp, n)).st_mode & 0o777)
                        for dp, dns, fns in os.walk(report_dir) for n in dns + fns})
        ckpt = os.path.join(tmp, "state", "jobs", d["JobId"], "spool", "shard-000000.zst")
        t.ok(modes == ["0o644", "0o755"] and
             oct(os.stat(ckpt).st_mode & 0o777) == "0o600" and
             oct(os.stat(os.path.dirname(ckpt)).st_mode & 0o777) == "0o700",
             f"local report files and folders follow the umask ({modes}); the job's state "
             f"folder is 0700 and its spool 0600")
        t.eq([v["ETag"] for v in reversed(h.list_versions(s3, "dst", key="a/key"))],
             [v["ETag"] for v in vers], "local manifest: both versions replicated oldest first")

        # ---- rules from the source bucket (GetBucketReplication) and FailedTasksOnly ----
        h.make_bucket(s3, "dst-b")
        s3.put_bucket_replication(Bucket="src", ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/r",
            "Rules": [{"ID": "b", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Disabled"},
                       "Destination": {"Bucket": "arn:aws:s3:::dst-b"}}]})
        rows_b = good_rows + [("src", "a/key", "no-such-version")]
        marn, metag = h.upload_manifest(s3, "manifests", "from-bucket.csv", rows_b)
        job_path = h.write_json(os.path.join(tmp, "bucket-rules.json"), h.job_document(
            marn, metag, h.bucket_arn("reports"), prefix="fto", scope="FailedTasksOnly"))
        res = h.run_batchrep(["run", job_path, "--state-dir", os.path.join(tmp, "state"),
                              "--no-progress"], env)
        t.eq(res.returncode, 0, "rules read from the bucket (GetBucketReplication): exit 0")
        d = json.loads(res.stdout)["Job"]
        t.eq([v["ETag"] for v in reversed(h.list_versions(s3, "dst-b", key="a/key"))],
             [v["ETag"] for v in vers], "the bucket's rule replicated both versions to dst-b")
        rep = h.read_report(s3, "reports", "fto", d["JobId"])
        t.eq([r["TaskExecutionStatus"] for r in rep["results"]], ["failed"],
             "FailedTasksOnly: manifest.json lists only the failed results file")
        t.eq([r[5] for r in rep["rows"]["failed"]], ["SrcVersionNotFound"],
             "FailedTasksOnly: the one failed row")

        # ---- failure threshold: at least 1,000 tasks ran and more than half failed ----
        rows = [("src", f"t/{i:04d}", "no-such-version-%d" % i) for i in range(1100)]
        for i in range(100):
            v = h.put_versions(s3, "src", f"ok/{i:03d}", ["x"], separate_s=False)[0]
            rows.insert(i * 12, ("src", f"ok/{i:03d}", v["VersionId"]))
        marn, metag = h.upload_manifest(s3, "manifests", "mostly-missing.csv", rows)
        # the report's upload is held, so the job is seen between its last task and its
        # report: Failing (not yet terminal, aws-formats.md §4.1), then Failed (the report's
        # files only: Preparing's write check puts and deletes a marker there first)
        hold = Rule("hold", method="PUT", path_re=r"^/reports/thr/job-[^/]+/(results/|manifest)")
        with FaultProxy(moto.url, [hold]) as proxy:
            job_path = h.write_json(os.path.join(tmp, "thr.json"),
                                    h.job_document(marn, metag, h.bucket_arn("reports"),
                                                   prefix="thr"))
            rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
            state = os.path.join(tmp, "state")
            before = {j["JobId"] for j in json.loads(h.run_batchrep(
                ["list-jobs", "--state-dir", state], env).stdout)["Jobs"]}
            proc = subprocess.Popen([h.batchrep_bin(), "run", job_path, "--replication-config",
                                     rules, "--state-dir", state, "--no-progress"],
                                    env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            try:
                end = time.time() + 300
                while proxy.held() == 0 and proc.poll() is None and time.time() < end:
                    time.sleep(0.2)
                jobs = json.loads(h.run_batchrep(["list-jobs", "--state-dir", state],
                                                 env).stdout)["Jobs"]
                mid = [j for j in jobs if j["JobId"] not in before]
                t.ok(len(mid) == 1 and mid[0]["Status"] == "Failing" and
                     "TerminationDate" not in mid[0],
                     f"while its report is written the job is Failing, not terminal "
                     f"({[(j['Status'], 'TerminationDate' in j) for j in mid]})")
                proxy.release()
                out, errs = proc.communicate(timeout=300)
            finally:
                if proc.poll() is None:
                    proc.kill()
        res = subprocess.CompletedProcess(proc.args, proc.returncode, out, errs)
        t.eq(res.returncode, 3, "failure threshold: exit 3")
        d = json.loads(res.stdout)["Job"]
        ps = d["ProgressSummary"]
        ran = ps["NumberOfTasksSucceeded"] + ps["NumberOfTasksFailed"]
        t.eq(d["Status"], "Failed", "failure threshold: Status Failed")
        t.ok(ran >= 1000 and ps["NumberOfTasksFailed"] * 2 > ran,
             f"stopped after {ran} tasks ran, {ps['NumberOfTasksFailed']} failed")
        t.eq(ps["TotalNumberOfTasks"], len(rows), "TotalNumberOfTasks counts the whole manifest")
        rep = h.read_report(s3, "reports", "thr", d["JobId"])
        keys = [(r[1], r[2]) for st in ("succeeded", "failed") for r in rep["rows"][st]]
        t.eq(len(keys), ran, "the report has one row per task that ran")
        t.eq(len(set(keys)), len(keys), "no report row twice")
        t.ok(all(r[1].startswith("t/") and r[5] == "SrcKeyNotFound" and r[4] == "404"
                 for r in rep["rows"]["failed"]),
             "rows of keys that do not exist fail with 404 SrcKeyNotFound")
    t.done()


if __name__ == "__main__":
    main()
