#!/usr/bin/env python3
"""test_fencing.py — a worker that stalls past its lease writes nothing that counts, and a
claim stays its owner's while it works. Three cases found by a review of the fleet change,
each held deterministic by faultproxy.py (the workers talk to moto through it):

  * the same worker gets its own shard back: one worker, 10 keys x 2 versions, every
    CopyObject held, the worker stopped (SIGSTOP) longer than its lease (--lease-ttl-s 3)
    with those copies in flight, then continued. It must not lease the shard again while its
    earlier units are still out (their requests land only when the proxy lets them): the job
    ends Complete with 20 tasks, 20 report rows, and each source version exactly once on
    the destination, oldest first.
  * a stalled worker's results file: worker B completes a 40-key shard (one task failed by the
    proxy), its results upload is held and B is stopped past its lease; worker C takes the
    shard over and completes the job; then B continues and its upload is let through. The
    results files manifest.json lists still have the MD5s it says, and every task is in
    them once (B's late upload lands under a name of its own lease, listed nowhere).
  * Preparing keeps its claim: the manifest's download is delayed 40 s; the job's claim
    heartbeat (owner_seen_ms) moves while Preparing waits, and a second worker started 35 s
    in (past the 30 s a stale claim takes) does not prepare the job too: the manifest is
    fetched once.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from faultproxy import FaultProxy, Rule  # noqa: E402


def rules(dst):
    return {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
        {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled"},
         "Destination": {"Bucket": f"arn:aws:s3:::{dst}"}}]}


class Case:
    def __init__(self, t, s3, moto, tmp, name, src, dst, rows):
        self.t, self.s3, self.moto, self.name = t, s3, moto, name
        self.state = os.path.join(tmp, f"state-{name}")
        self.env = h.batchrep_env(moto.url)
        self.tmp = tmp
        arn, etag = h.upload_manifest(s3, "manifests", f"{name}.csv", rows)
        job = h.write_json(os.path.join(tmp, f"{name}.json"), h.job_document(
            arn, etag, h.bucket_arn("reports"), prefix=name, client_token=f"fencing-{name}"))
        rp = h.write_json(os.path.join(tmp, f"{name}-rules.json"), rules(dst))
        r = h.run_batchrep(["create-job", job, "--replication-config", rp, "--state-dir",
                            self.state], self.env)
        self.job_id = json.loads(r.stdout)["JobId"] if r.returncode == 0 else None
        self.workers = []

    def worker(self, url, *args):
        log = open(os.path.join(self.tmp, f"{self.name}-{len(self.workers)}.log"), "wb")
        p = subprocess.Popen([h.batchrep_bin(), "worker", "--state-dir", self.state,
                              "--no-progress", *args], env=h.batchrep_env(url), stdout=log,
                             stderr=subprocess.STDOUT)
        self.workers.append((p, log))
        return p

    def describe(self):
        r = h.run_batchrep(["describe-job", "--job-id", self.job_id, "--state-dir", self.state],
                           self.env)
        return json.loads(r.stdout)["Job"] if r.returncode == 0 else None

    def wait_terminal(self, timeout_s=120):
        end = time.time() + timeout_s
        while time.time() < end:
            d = self.describe()
            if d and d["Status"] in ("Complete", "Failed", "Cancelled"):
                return d
            time.sleep(0.3)
        return None

    def stop_all(self):
        for p, log in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()

    def logs(self):
        out = []
        for p, log in self.workers:
            with open(log.name, "rb") as f:
                out.append(f.read().decode(errors="replace")[-1500:])
        return "\n---\n".join(out)


def wait_until(cond, timeout_s, step=0.1):
    end = time.time() + timeout_s
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def report_rows(s3, prefix, job_id):
    """(report, [(key, version)...], every listed file's MD5 right); an unreadable report
    (the job did not complete) gives ({"results": []}, [], False)."""
    try:
        rep = h.read_report(s3, "reports", prefix, job_id)
    except Exception:  # noqa: BLE001 - reported by the checks that follow
        return {"results": []}, [], False
    md5_ok = all(r["MD5Checksum"] == h.md5_hex(r["Body"]) for r in rep["results"])
    return rep, [(r[1], r[2]) for r in rep["rows"]["succeeded"] + rep["rows"]["failed"]], md5_ok


def same_worker_release(t, s3, moto, tmp):
    h.make_bucket(s3, "src1")
    h.make_bucket(s3, "dst1")
    src, rows = {}, []
    for i in range(10):
        k = f"k{i:03d}"
        for v in range(2):
            r = s3.put_object(Bucket="src1", Key=k, Body=f"{k} v{v}".encode())
            src.setdefault(k, []).append(r["ETag"])
            rows.append(("src1", k, r["VersionId"]))
    c = Case(t, s3, moto, tmp, "release", "src1", "dst1", rows)
    with FaultProxy(moto.url, [Rule("hold", op="CopyObject")]) as proxy:
        try:
            p = c.worker(proxy.url, "--lease-ttl-s", "3", "--checkpoint-interval-s", "1")
            held = wait_until(lambda: proxy.held() >= 10, 60)
            p.send_signal(signal.SIGSTOP)
            time.sleep(5)  # past the lease (3 s) by the catalogue's clock
            p.send_signal(signal.SIGCONT)
            time.sleep(5)  # the worker sees its lease gone; its units are still out
            proxy.release()
            d = c.wait_terminal()
        finally:
            c.stop_all()
    t.ok(held, "release: the worker's 10 first copies are held in flight when it is stopped")
    ps = (d or {}).get("ProgressSummary", {})
    if not t.eq(((d or {}).get("Status"), ps.get("TotalNumberOfTasks"),
                 ps.get("NumberOfTasksSucceeded"), ps.get("NumberOfTasksFailed")),
                ("Complete", 20, 20, 0), "release: Complete, every task counted once"):
        t.diag(c.logs())
    rep, got, md5_ok = report_rows(s3, "release", c.job_id)
    t.ok(sorted(got) == sorted((k, v) for _, k, v in rows) and md5_ok,
         f"release: one report row per task ({len(got)} rows), MD5s right")
    per_key = {}
    for v in h.list_versions(s3, "dst1"):
        per_key.setdefault(v["Key"], []).append(v["ETag"])
    bad = [k for k, e in src.items() if list(reversed(per_key.get(k, []))) != e]
    t.ok(not bad, f"release: every version once on the destination, oldest first "
                  f"({len(bad)} keys differ)")


def stalled_join(t, s3, moto, tmp):
    h.make_bucket(s3, "src2")
    h.make_bucket(s3, "dst2")
    rows = []
    for i in range(40):
        k = f"k{i:03d}"
        rows.append(("src2", k, s3.put_object(Bucket="src2", Key=k, Body=k.encode())["VersionId"]))
    c = Case(t, s3, moto, tmp, "join", "src2", "dst2", rows)
    rules_ = [Rule("hold", op="PutObject", path_re=r"/results/"),
              Rule("internal", op="CopyObject", path_re=r"/k005")]
    with FaultProxy(moto.url, rules_) as proxy:
        try:
            b = c.worker(proxy.url, "--lease-ttl-s", "3", "--checkpoint-interval-s", "600")
            held = wait_until(lambda: proxy.held() >= 1, 90)
            b.send_signal(signal.SIGSTOP)
            time.sleep(4)  # past B's lease
            c.worker(moto.url, "--lease-ttl-s", "3", "--checkpoint-interval-s", "1")
            d = c.wait_terminal()
            rep1 = report_rows(s3, "join", c.job_id)[0]
            b.send_signal(signal.SIGCONT)
            proxy.release()
            wait_until(lambda: all(e["t_end"] for e in proxy.log if "/results/" in e["target"]),
                       30)
        finally:
            c.stop_all()
    t.ok(held, "join: B's results upload is held when B is stopped")
    if not t.eq((d or {}).get("Status"), "Complete", "join: C completes the job"):
        t.diag(c.logs())
        return
    rep, got, md5_ok = report_rows(s3, "join", c.job_id)
    t.ok(md5_ok, "join: after B's late upload, every results file manifest.json lists has the "
                 "MD5 it says")
    t.ok(sorted(got) == sorted((k, v) for _, k, v in rows),
         f"join: every task in the listed files once ({len(got)} rows)")
    t.eq(sorted(r["Key"] for r in rep["results"]), sorted(r["Key"] for r in rep1["results"]),
         "join: manifest.json still lists the files C wrote")


def preparing_claim(t, s3, moto, tmp):
    h.make_bucket(s3, "src3")
    h.make_bucket(s3, "dst3")
    rows = [("src3", f"k{i}", s3.put_object(Bucket="src3", Key=f"k{i}", Body=b"x")["VersionId"])
            for i in range(5)]
    c = Case(t, s3, moto, tmp, "prep", "src3", "dst3", rows)
    db = os.path.join(c.state, "batchrep.db")

    def seen():
        try:
            with sqlite3.connect(db, timeout=10) as con:
                row = con.execute("SELECT owner_seen_ms FROM jobs WHERE id = ?",
                                  (c.job_id,)).fetchone()
            return row[0] if row else None
        except sqlite3.Error:
            return None

    delay = Rule("delay", op="GetObject", path_re=r"prep\.csv", delay_s=40)
    with FaultProxy(moto.url, [delay]) as proxy:
        try:
            c.worker(proxy.url, "--stall-timeout-s", "300")
            wait_until(lambda: seen(), 30)
            first = seen()
            time.sleep(6)
            later = seen()
            time.sleep(29)  # 35 s in: a claim without heartbeat would be stale now
            c.worker(proxy.url, "--stall-timeout-s", "300")
            d = c.wait_terminal(120)
        finally:
            c.stop_all()
        gets = [e for e in proxy.log if e["op"] == "GetObject" and "prep.csv" in e["target"]]
    t.ok(first and later and later > first,
         f"prep: the claim's heartbeat moves while Preparing waits ({first} -> {later})")
    t.eq(len(gets), 1, "prep: a second worker started 35 s in does not prepare the job again")
    t.eq((d or {}).get("Status"), "Complete", "prep: the job completes")


def main():
    t = h.Tap()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("reports", "manifests"):
            h.make_bucket(s3, b)
        same_worker_release(t, s3, moto, tmp)
        stalled_join(t, s3, moto, tmp)
        preparing_claim(t, s3, moto, tmp)
    t.done()


if __name__ == "__main__":
    main()
