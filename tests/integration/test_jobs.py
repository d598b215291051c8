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
    update-job-priority on a running worker flips the order, even over the lowered job's
    units already queued in the pool (a proxy holds the lowered job's copies, so the case
    does not depend on the machine's speed);
  * health probes on --metrics-addr (connect+close, reset, half a request, idle
    connections) neither kill nor stall the worker;
  * describe-job from another process shows live progress; --metrics-addr serves Prometheus
    text with per-job progress.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from faultproxy import FaultProxy, Rule  # noqa: E402

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

    def worker(self, *extra, env=None):
        return subprocess.Popen([h.batchrep_bin(), "worker", "--state-dir", self.state,
                                 "--no-progress", *extra], env=env or self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_status(e, job_id, statuses, timeout_s=120):
    end = time.time() + timeout_s
    while time.time() < end:
        d = e.describe(job_id)
        if d["Status"] in statuses:
            return d
        time.sleep(0.2)
    return e.describe(job_id)


def probe_metrics(port):
    """What health checks and scanners do to a metrics port: connect and close at once (a
    Kubernetes tcpSocket probe, `nc -z`), connect and reset (SO_LINGER 0), send half a
    request and close, and hold an idle connection open during a scrape."""
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    rst = socket.create_connection(("127.0.0.1", port), timeout=5)
    rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rst.close()
    half = socket.create_connection(("127.0.0.1", port), timeout=5)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    half.close()
    # a client that asks and leaves before the answer: the server writes to a closed socket
    for _ in range(20):
        gone = socket.create_connection(("127.0.0.1", port), timeout=5)
        gone.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    for c in idle:
        c.close()
    return body


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
        # Deterministic on any machine: a proxy lets prioC's first 20 copies through and then
        # holds its copies until the test releases them, so C is Active with work in flight
        # (and most of its manifest unread: at most 20 done + 4 in flight + 2 x 64 queued)
        # when D's priority is raised. C has 600 keys so that what is left of it after D's
        # feed is far more than what D has queued (so C cannot end in the same tick).
        jc = e.create(e.job(s3, "prioC", 600, priority=5))
        jd = e.create(e.job(s3, "prioD", 250, priority=1))
        port = h.free_port()
        hold = Rule("hold", op="CopyObject", path_re=r"^/dst/prioC/", after=20)
        with FaultProxy(moto.url, [hold]) as proxy:
            w = e.worker("--until-idle", "--concurrency", "4", "--metrics-addr",
                         f"127.0.0.1:{port}", env=h.batchrep_env(proxy.url))
            try:
                end_t = time.time() + 120
                while time.time() < end_t and (
                        proxy.held() < 1 or
                        e.describe(jc)["ProgressSummary"]["NumberOfTasksSucceeded"] < 20):
                    time.sleep(0.2)
                live = e.describe(jc)
                t.eq((live["Status"], live["ProgressSummary"]["NumberOfTasksSucceeded"]),
                     ("Active", 20), "describe-job from another process shows live progress "
                     "(20 of 600 copies let through, the rest held)")
                # item 2 of the hardening issue: a probe that connects and closes, one that
                # resets, and one that stays idle must not kill or stall the worker
                body = probe_metrics(port)
                t.ok(b"batchrep_tasks_total" in body,
                     "a scrape answers while 8 connections sit idle")
                r = e.json("update-job-priority", "--job-id", jd, "--priority", "50")
                t.eq(r, {"JobId": jd, "Priority": 50}, "update-job-priority answers JobId, Priority")
                dd = wait_status(e, jd, ("Active",), 30)
                t.eq(dd["Status"], "Active", "the raised job becomes Active")
                st = wait_status(e, jc, ("Paused", "Pausing"), 30)["Status"]
                t.ok(st in ("Paused", "Pausing"), f"the lowered job is paused ({st})")
                t.ok(w.poll() is None, "health probes (connect+close, reset, idle) left the "
                     "worker running")
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                 timeout=10).read().decode()
                t.ok("batchrep_tasks_total{outcome=\"succeeded\"}" in metrics and
                     "batchrep_bytes_replicated_total " in metrics and
                     f'batchrep_job_tasks_total{{job_id="{jd}"}} 250' in metrics and
                     f'batchrep_job_tasks{{job_id="{jc}",status="Pausing",outcome="succeeded"}} 20'
                     in metrics,
                     "the metrics endpoint serves totals and per-job progress and status")
                n_before = len(proxy.log)
                proxy.release()
                w.wait(timeout=300)
            finally:
                if w.poll() is None:
                    w.kill()
            after = [x["target"] for x in proxy.log[n_before:] if x["op"] == "CopyObject"]
        # C's units queued in the pool when D was raised: up to 2 x 64. Taken first in,
        # first out they all ran before D's; taken by priority, a C unit runs only when a
        # pool thread finds no D unit waiting (the feeder adds one per unit taken). So look
        # at the first 64 copies sent after the release (the held ones are sent first).
        first = after[4:68]
        c_first = sum(1 for x in first if x.startswith("/dst/prioC/"))
        t.ok(len(first) == 64 and c_first < 32,
             f"the pool takes the raised job's units before the lowered "
             f"job's queued ones ({c_first} of the first 64 copies after the release were C's)")
        t.eq(w.returncode, 0, "the worker exits 0 when idle")
        dc, dd = e.describe(jc), e.describe(jd)
        t.eq((dc["Status"], dd["Status"]), ("Complete", "Complete"), "both Complete")
        t.eq((dc["ProgressSummary"]["NumberOfTasksSucceeded"],
              dd["ProgressSummary"]["NumberOfTasksSucceeded"]), (600, 250),
             "every task of both succeeded")
        t.ok(dd["TerminationDate"] < dc["TerminationDate"],
             f"after update-job-priority the raised job finished first "
             f"({dd['TerminationDate']} < {dc['TerminationDate']})")

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

        # ---- a new catalogue opened by several processes at once (a worker and list-jobs
        # started together): every one of them opens it
        bad = []
        for round_ in range(5):
            fresh = os.path.join(tmp, f"fresh-{round_}")
            procs = [subprocess.Popen([h.batchrep_bin(), "list-jobs", "--state-dir", fresh],
                                      env=e.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for _ in range(8)]
            bad += [p.communicate(timeout=60)[1] for p in procs]
            bad = [x for x in bad if x]
        t.eq(bad, [], "8 processes opening a new catalogue at once all succeed (5 rounds)")

        # ---- --metrics-addr: a malformed address is a usage error (2); one that cannot be
        # bound is an error naming the address and the reason (1)
        for addr in ("foo", "localhost:9090", "127.0.0.1:abc", "127.0.0.1:70000"):
            res = e.cli("worker", "--until-idle", "--no-progress", "--metrics-addr", addr,
                        check=False)
            t.ok(res.returncode == 2 and "--metrics-addr" in res.stderr,
                 f"--metrics-addr {addr}: exit 2 naming the option ({res.returncode})")
        busy = socket.create_server(("127.0.0.1", 0))
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        res = e.cli("worker", "--until-idle", "--no-progress", "--metrics-addr", taken,
                    check=False)
        busy.close()
        t.ok(res.returncode == 1 and taken in res.stderr and "Address already in use" in res.stderr,
             f"--metrics-addr on a port in use: exit 1 naming it and the errno ({res.stderr.strip()})")
    t.done()


if __name__ == "__main__":
    main()
