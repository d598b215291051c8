#!/usr/bin/env python3
"""test_jobs.py — the job model (aws-formats.md §4): catalogue verbs, confirmation, cancel,
priorities, live progress and metrics, driven through the real binary on moto.

  * create-job prints {"JobId"}; the same ClientRequestToken returns the same job;
    describe-job / list-jobs (--job-statuses) show it with AWS's field names;
  * ConfirmationRequired: the worker prepares it to Suspended (TotalNumberOfTasks known),
    `update-job-status Ready` confirms it, the next worker runs it to Complete;
  * cancel of a Suspended job -> Cancelled at once; cancel of a Complete job ->
    JobStatusException; cancel of a running job -> Cancelling, then Cancelled with a partial
    report whose rows each appear once;
  * two jobs in one worker: the higher priority one, created second, finishes first;
    update-job-priority on a running worker flips the order;
  * describe-job from another process shows live progress; --metrics-addr serves Prometheus
    text with per-job progress.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}


class Env:
    def __init__(self, tmp, moto):
        self.tmp, self.state = tmp, os.path.join(tmp, "state")
        self.env = h.batchrep_env(moto.url)
        self.rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
        self.n = 0

    def cli(self, *args, check=True):
        res = h.run_batchrep([*args, "--state-dir", self.state], self.env, timeout=600)
        if check and res.returncode != 0:
            raise RuntimeError(f"batchrep {args}: exit {res.returncode}: {res.stderr}")
        return res

    def json(self, *args):
        return json.loads(self.cli(*args).stdout)

    def job(self, s3, prefix, n_keys, priority=10, confirm=False, token=None):
        """Creates n_keys one-version keys under prefix and a job for them; returns its path."""
        rows = []
        for i in range(n_keys):
            key = f"{prefix}/{i:04d}"
            r = s3.put_object(Bucket="src", Key=key, Body=key.encode())
            rows.append(("src", key, r["VersionId"]))
        arn, etag = h.upload_manifest(s3, "manifests", f"{prefix}.csv", rows)
        doc = h.job_document(arn, etag, h.bucket_arn("reports"), prefix=prefix,
                             priority=priority, client_token=token)
        doc["ConfirmationRequired"] = confirm
        self.n += 1
        return h.write_json(os.path.join(self.tmp, f"job{self.n}.json"), doc)

    def create(self, path):
        return self.json("create-job", path, "--replication-config", self.rules)["JobId"]

    def describe(self, job_id):
        return self.json("describe-job", "--job-id", job_id)["Job"]

    def worker(self, *extra):
        return subprocess.Popen([h.batchrep_bin(), "worker", "--state-dir", self.state,
                                 "--no-progress", *extra], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_status(e, job_id, statuses, timeout_s=120):
    end = time.time() + timeout_s
    while time.time() < end:
        d = e.describe(job_id)
        if d["Status"] in statuses:
            return d
        time.sleep(0.2)
    return e.describe(job_id)


def main():
    t = h.Tap()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(s3, b)
        e = Env(tmp, moto)

        # ---- create-job, idempotency, describe, list ----
        p1 = e.job(s3, "conf", 20, confirm=True, token="token-conf")
        j1 = e.create(p1)
        t.eq(e.create(p1), j1, "the same ClientRequestToken returns the same JobId")
        d = e.describe(j1)
        t.eq((d["Status"], d["Priority"], d["ConfirmationRequired"]), ("New", 10, True),
             "describe-job: New, Priority, ConfirmationRequired")
        t.ok(d["JobArn"].endswith(":job/" + j1) and "CreationTime" in d, "JobArn, CreationTime")
        lst = e.json("list-jobs", "--job-statuses", "New", "Ready")["Jobs"]
        t.eq([(x["JobId"], x["Operation"], x["Status"]) for x in lst],
             [(j1, "S3ReplicateObject", "New")], "list-jobs --job-statuses New Ready")
        t.eq(e.json("list-jobs", "--job-statuses", "Complete")["Jobs"], [],
             "list-jobs filters by status")

        # ---- confirmation: New -> Preparing -> Suspended -> (Ready) -> Complete ----
        w = e.cli("worker", "--until-idle", "--no-progress")
        d = e.describe(j1)
        t.eq((d["Status"], d["ProgressSummary"]["TotalNumberOfTasks"]), ("Suspended", 20),
             "a ConfirmationRequired job waits Suspended, its tasks counted")
        t.ok("SuspendedDate" in d and "SuspendedCause" in d, "SuspendedDate and SuspendedCause")
        r = e.json("update-job-status", "--job-id", j1, "--requested-job-status", "Ready")
        t.eq(r, {"JobId": j1, "Status": "Ready"}, "update-job-status Ready confirms it")
        e.cli("worker", "--until-idle", "--no-progress")
        d = e.describe(j1)
        t.eq((d["Status"], d["ProgressSummary"]["NumberOfTasksSucceeded"]), ("Complete", 20),
             "the confirmed job runs to Complete")
        res = e.cli("update-job-status", "--job-id", j1, "--requested-job-status", "Cancelled",
                    check=False)
        t.ok(res.returncode == 1 and "JobStatusException" in res.stderr,
             "cancelling a Complete job is a JobStatusException")
        res = e.cli("describe-job", "--job-id", "no-such-job", check=False)
        t.ok(res.returncode == 1 and "NotFoundException" in res.stderr, "unknown job: NotFound")

        # ---- cancel a Suspended job ----
        j2 = e.create(e.job(s3, "conf2", 5, confirm=True))
        e.cli("worker", "--until-idle", "--no-progress")
        r = e.json("update-job-status", "--job-id", j2, "--requested-job-status", "Cancelled",
                   "--status-update-reason", "not needed")
        t.eq(r, {"JobId": j2, "Status": "Cancelled", "StatusUpdateReason": "not needed"},
             "cancelling a Suspended job: Cancelled at once")
        d = e.describe(j2)
        t.eq((d["Status"], d.get("StatusUpdateReason")), ("Cancelled", "not needed"),
             "describe shows Cancelled and the reason")

        # ---- priorities: B (10) created after A (1) finishes first ----
        ja = e.create(e.job(s3, "prioA", 120, priority=1))
        jb = e.create(e.job(s3, "prioB", 120, priority=10))
        e.cli("worker", "--until-idle", "--no-progress", "--concurrency", "4")
        da, db = e.describe(ja), e.describe(jb)
        t.eq((da["Status"], db["Status"]), ("Complete", "Complete"), "both jobs Complete")
        t.ok(db["TerminationDate"] < da["TerminationDate"],
             f"the higher-priority job created second finished first "
             f"({db['TerminationDate']} < {da['TerminationDate']})")

        # ---- update-job-priority while running flips the order; live progress; metrics ----
        jc = e.create(e.job(s3, "prioC", 250, priority=5))
        jd = e.create(e.job(s3, "prioD", 250, priority=1))
        port = h.free_port()
        w = e.worker("--until-idle", "--concurrency", "4", "--metrics-addr", f"127.0.0.1:{port}")
        try:
            dc = wait_status(e, jc, ("Active",))
            time.sleep(0.5)
            r = e.json("update-job-priority", "--job-id", jd, "--priority", "50")
            t.eq(r, {"JobId": jd, "Priority": 50}, "update-job-priority answers JobId, Priority")
            live = e.describe(jc)["ProgressSummary"]
            t.ok(0 < live["NumberOfTasksSucceeded"] < 250,
                 f"describe-job from another process shows live progress "
                 f"({live['NumberOfTasksSucceeded']}/250)")
            dd = wait_status(e, jd, ("Active",), 30)
            t.eq(dd["Status"], "Active", "the raised job becomes Active")
            st = wait_status(e, jc, ("Paused", "Pausing", "Complete"), 30)["Status"]
            t.ok(st in ("Paused", "Pausing"), f"the lowered job is paused ({st})")
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            t.ok("batchrep_tasks_total{outcome=\"succeeded\"}" in metrics and
                 "batchrep_bytes_replicated_total " in metrics and
                 f'batchrep_job_tasks_total{{job_id="{jd}"}} 250' in metrics,
                 "the metrics endpoint serves totals and per-job progress")
            w.wait(timeout=300)
        finally:
            if w.poll() is None:
                w.kill()
        dc, dd = e.describe(jc), e.describe(jd)
        t.eq((dc["Status"], dd["Status"]), ("Complete", "Complete"), "both Complete")
        t.ok(dd["TerminationDate"] < dc["TerminationDate"],
             "after update-job-priority the raised job finished first")

        # ---- cancel a running job: Cancelling -> Cancelled, partial report ----
        je = e.create(e.job(s3, "cancel", 400, priority=5))
        w = e.worker("--until-idle", "--concurrency", "2")
        try:
            wait_status(e, je, ("Active",))
            time.sleep(1.0)
            r = e.json("update-job-status", "--job-id", je, "--requested-job-status", "Cancelled")
            t.eq(r["Status"], "Cancelling", "cancelling a running job answers Cancelling")
            w.wait(timeout=300)
        finally:
            if w.poll() is None:
                w.kill()
        d = e.describe(je)
        ps = d["ProgressSummary"]
        ran = ps["NumberOfTasksSucceeded"] + ps["NumberOfTasksFailed"]
        t.eq(d["Status"], "Cancelled", "the worker finishes the cancel: Cancelled")
        t.ok(0 < ran < 400, f"only part of the job ran ({ran}/400)")
        rep = h.read_report(s3, "reports", "cancel", je)
        rows = rep["rows"]["succeeded"] + rep["rows"]["failed"]
        t.eq(len(rows), ran, "the cancelled job's report has a row per task that ran")
        t.eq(len({(r[1], r[2]) for r in rows}), len(rows), "no row twice")
    t.done()


if __name__ == "__main__":
    main()
