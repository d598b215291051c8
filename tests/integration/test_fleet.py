#!/usr/bin/env python3
# timeout-s: 2400
"""test_fleet.py — three workers share one catalogue: a worker killed, one stopped past its
lease, the catalogue's server restarted, and still every task once and every version once.

The same scenario runs twice: on a PostgreSQL catalogue (harness.Postgres, started here on
127.0.0.1) with three workers that share nothing but it and moto (each its own scratch
--state-dir), then on the embedded SQLite catalogue with three workers on this machine
sharing one state directory. Each time:

  * job 1: 20,000 source versions (19,800 keys with one version in bucket src, 100 keys with
    two in bucket srcm: moto's ListObjectVersions scans the whole bucket, so the keys that
    need a listing live in a small one), listed shuffled in one CSV manifest, cut into
    shards of about 1,500 rows (--shard-rows 1500);
  * the three workers start (--lease-ttl-s 6, --checkpoint-interval-s 1); job 2 (1,500
    keys, priority 50 against job 1's 10) is created while job 1 runs;
  * worker A is killed with SIGKILL while it has units in flight (its metrics say so);
  * worker B is stopped with SIGSTOP while it has units in flight and kept stopped until
    every shard it held was leased by another worker (the catalogue says so: its lease
    expired), then continued: it must write nothing more for those shards (fencing);
  * PostgreSQL only: the server is stopped (fast shutdown) for 30 s, then started again,
    while the jobs run (every lease passes its deadline meanwhile: the shards are leased
    again and resume from their checkpoints);
  * the jobs run to their end; the live workers are drained with SIGTERM and exit 0.
Checked: both jobs Complete with every task counted once, exactly one report row per
manifest row (manifest.json's MD5s right), every source version exactly one replica on the
destination in order (so the destination's current version is the source's), and the
catalogue saw at least one lease taken over and at least one checkpoint refused or lease
lost (the faults happened).

Nothing here depends on the machine's speed: each fault waits for the state it needs (units
in flight, a lease taken over), with generous bounds.
"""
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

N_ONE, N_TWO = 19800, 100          # 20,000 versions
JOB2_KEYS = 1500
LEASE_TTL_S = 6
WAIT_S = 600


def rules(dst):
    return {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
        {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled"},
         "Destination": {"Bucket": f"arn:aws:s3:::{dst}"}}]}


def make_sources(s3):
    """src and srcm: job 1's 20,000 versions; src2: job 2's keys. Returns (versions,
    versions2): {(bucket, key): [put answers oldest first]}."""
    for b in ("src", "srcm", "src2"):
        h.make_bucket(s3, b)

    def put(args):
        bucket, key, body = args
        return key, s3.put_object(Bucket=bucket, Key=key, Body=body)

    work = [("src", f"one/{i:05d}", f"one {i}".encode()) for i in range(N_ONE)]
    work += [("src2", f"two/{i:05d}", f"job2 {i}".encode()) for i in range(JOB2_KEYS)]
    src, src2 = {}, {}
    with ThreadPoolExecutor(8) as pool:
        for (bucket, _, _), (key, r) in zip(work, pool.map(put, work)):
            (src if bucket == "src" else src2)[(bucket, key)] = [r]
    for v in range(2):  # keys with two versions, written in order
        for i in range(N_TWO):
            k = f"multi/{i:04d}"
            src.setdefault(("srcm", k), []).append(
                s3.put_object(Bucket="srcm", Key=k, Body=f"{k} v{v}".encode()))
    return src, src2


class Worker:
    def __init__(self, name, args, env, log_dir):
        self.name = name
        self.port = h.free_port()
        self.log = open(os.path.join(log_dir, f"worker-{name}.log"), "wb")
        self.p = subprocess.Popen(
            [h.batchrep_bin(), "worker", *args, "--metrics-addr", f"127.0.0.1:{self.port}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def metrics(self):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                          timeout=5).read().decode()
        except OSError:
            return ""

    def metric(self, name):
        m = re.search(rf"^{re.escape(name)} (\d+)$", self.metrics(), re.M)
        return int(m.group(1)) if m else 0

    def log_tail(self, n=3000):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")[-n:]


class Catalogue:
    """The shards table, read the way each backend allows (never through batchrep)."""

    def __init__(self, pg=None, sqlite_path=None):
        self.pg, self.path = pg, sqlite_path

    def shards(self, job_id):
        q = f"SELECT idx, COALESCE(owner, ''), complete FROM shards WHERE job_id = '{job_id}'"
        if self.pg:
            out = self.pg.psql(q)
            rows = []
            for line in out.stdout.splitlines():
                idx, owner, complete = line.split("|")
                rows.append((int(idx), owner, int(complete)))
            return rows
        try:
            with sqlite3.connect(self.path, timeout=10) as db:
                return list(db.execute(q))
        except sqlite3.Error:
            return []


class Probe:
    """Times a HeadBucket on moto every 0.5 s (diagnostics: how the server held up)."""

    def __init__(self, s3):
        import threading
        self.s3, self.worst, self.stop = s3, (0.0, 0.0), threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.wait(0.5):
            t0 = time.time()
            try:
                self.s3.head_bucket(Bucket="reports")
            except Exception:  # noqa: BLE001 - a diagnostic
                pass
            dt = time.time() - t0
            if dt > self.worst[0]:
                self.worst = (dt, t0)


def wait_for(cond, timeout_s, step=0.2):
    end = time.time() + timeout_s
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def scenario(t, tag, moto, s3, src, src2, rows1, rows2, tmp, pg=None):
    dst, dst2 = f"dst-{tag}", f"dst2-{tag}"
    h.make_bucket(s3, dst)
    h.make_bucket(s3, dst2)
    env = h.batchrep_env(moto.url)
    shared_state = os.path.join(tmp, f"state-{tag}")
    cat_args = ["--catalog", pg.url] if pg else ["--state-dir", shared_state]
    catalogue = Catalogue(pg, os.path.join(shared_state, "batchrep.db"))

    def verb(*args):
        return h.run_batchrep([*args, *cat_args], env)

    def create(name, rows, dst_bucket, priority):
        arn, etag = h.upload_manifest(s3, "manifests", f"{tag}-{name}.csv", rows)
        doc = h.job_document(arn, etag, h.bucket_arn("reports"), prefix=f"{tag}-{name}",
                             client_token=f"fleet-{tag}-{name}")
        doc["Priority"] = priority
        job = h.write_json(os.path.join(tmp, f"{tag}-{name}.json"), doc)
        rp = h.write_json(os.path.join(tmp, f"{tag}-{name}-rules.json"), rules(dst_bucket))
        res = verb("create-job", job, "--replication-config", rp)
        if res.returncode != 0:
            t.diag(res.stderr[-1500:])
            return None
        return json.loads(res.stdout)["JobId"]

    def describe(job_id):
        res = verb("describe-job", "--job-id", job_id)
        return json.loads(res.stdout)["Job"] if res.returncode == 0 else None

    job1 = create("job1", rows1, dst, 10)
    if not t.ok(job1 is not None, f"{tag}: job 1 created (20,000 versions)"):
        return
    workers = {}
    for name in "ABC":
        state = shared_state if not pg else os.path.join(tmp, f"{tag}-scratch-{name}")
        args = ["--concurrency", "8", "--lease-ttl-s", str(LEASE_TTL_S),
                "--checkpoint-interval-s", "1", "--shard-rows", "1500", "--no-progress"]
        args += ["--catalog", pg.url, "--state-dir", state] if pg else ["--state-dir", state]
        workers[name] = Worker(f"{tag}-{name}", args, env, tmp)
    A, B, C = workers["A"], workers["B"], workers["C"]
    probe = Probe(s3)
    t_start = time.time()

    def when(msg):
        t.diag(f"{tag}: {time.time() - t_start:6.1f} s: {msg}")
    try:
        d = wait_for(lambda: (describe(job1) or {}).get("Status") == "Active", 120)
        t.ok(d, f"{tag}: job 1 is Active")
        job2 = create("job2", rows2, dst2, 50)
        t.ok(job2 is not None, f"{tag}: job 2 (priority 50) created while job 1 runs")

        # A: killed with units in flight
        got = wait_for(lambda: A.metric("batchrep_units_in_flight") > 0, 120, 0.05)
        A.p.send_signal(signal.SIGKILL)
        A.p.wait()
        when("worker A killed")
        t.ok(got, f"{tag}: worker A killed with SIGKILL while its units were in flight")

        # B: stopped with units in flight, past its lease, until its shards were taken over
        got = wait_for(lambda: B.metric("batchrep_units_in_flight") > 0, 120, 0.05)
        B.p.send_signal(signal.SIGSTOP)
        when("worker B stopped")
        held = [(j, idx) for j in (job1, job2) if j
                for idx, owner, complete in catalogue.shards(j)
                if f"/{B.p.pid}/" in owner and not complete]
        t.ok(got and held, f"{tag}: worker B stopped with SIGSTOP while it held "
                           f"{len(held)} shard lease(s) with units in flight")

        def taken_over():
            now = {(j, idx): (owner, complete) for j in (job1, job2) if j
                   for idx, owner, complete in catalogue.shards(j)}
            return all(now.get(k, ("", 1))[1] or
                       (now[k][0] and f"/{B.p.pid}/" not in now[k][0]) for k in held)
        ok = wait_for(taken_over, 240, 0.5)
        t.ok(ok, f"{tag}: every shard B held was leased by another worker once B's lease "
                 f"({LEASE_TTL_S} s) expired")
        B.p.send_signal(signal.SIGCONT)
        when("worker B continued")

        if pg:
            time.sleep(1)
            pg.restart(down_s=30)
            when("PostgreSQL back after a 30 s outage")
            t.ok(True, f"{tag}: PostgreSQL stopped for 30 s and started again while the jobs "
                       f"run")

        def both_done():
            ds = [describe(j) for j in (job1, job2) if j]
            return ds if all(x and x["Status"] in ("Complete", "Failed", "Cancelled")
                             for x in ds) else None
        ds = wait_for(both_done, WAIT_S, 1)
        when(f"jobs ended; moto's slowest answer to a probe: {probe.worst[0]:.1f} s at "
             f"{probe.worst[1] - t_start:.1f} s")
        if not t.ok(ds, f"{tag}: both jobs reach a terminal state"):
            for w in workers.values():
                t.diag(f"worker {w.name}: {w.log_tail(1500)}")
            return
        expect = {job1: len(rows1), job2: len(rows2)}
        for d in ds:
            ps = d["ProgressSummary"]
            t.eq((d["Status"], ps["TotalNumberOfTasks"], ps["NumberOfTasksSucceeded"],
                  ps["NumberOfTasksFailed"]), ("Complete", expect[d["JobId"]],
                                               expect[d["JobId"]], 0),
                 f"{tag}: job {'1' if d['JobId'] == job1 else '2'} Complete, every task "
                 f"counted once")
        takeovers = sum(w.metric('batchrep_shard_leases_total{event="taken"}')
                        for w in (B, C))
        faults = (B.metric('batchrep_shard_leases_total{event="lost"}') +
                  B.metric('batchrep_checkpoints_total{outcome="refused"}'))
        t.ok(takeovers > 0 and faults > 0,
             f"{tag}: B found its leases lost or its checkpoints refused ({faults}); the live "
             f"workers took {takeovers} leases")
        for name, job_id, rows, dst_bucket, vers in (("job1", job1, rows1, dst, src),
                                                     ("job2", job2, rows2, dst2, src2)):
            rep = h.read_report(s3, "reports", f"{tag}-{name}", job_id)
            got = [(r[1], r[2]) for r in rep["rows"]["succeeded"] + rep["rows"]["failed"]]
            t.eq(len(got), len(rows), f"{tag} {name}: the report has one row per manifest row")
            t.ok(sorted(got) == sorted((k, v) for _, k, v in rows),
                 f"{tag} {name}: exactly one report row per manifest row")
            t.ok(all(r["MD5Checksum"] == h.md5_hex(r["Body"]) for r in rep["results"]),
                 f"{tag} {name}: manifest.json's MD5s match its {len(rep['results'])} "
                 f"results files")
            listing = {}
            for v in h.list_versions(s3, dst_bucket):
                listing.setdefault(v["Key"], []).append(v)
            bad = [k for (_, k), vs in vers.items()
                   if [r["ETag"] for r in vs] !=
                   [v["ETag"] for v in reversed(listing.get(k, []))]]
            t.ok(not bad and len(listing) == len(vers),
                 f"{tag} {name}: every source version has exactly one replica, in order, so "
                 f"the destination's current version is the source's ({len(bad)} keys "
                 f"differ)")
            if bad:
                t.diag(f"first: {bad[:3]}")
        for w in (B, C):
            w.p.send_signal(signal.SIGTERM)
        for w in (B, C):
            try:
                rc = w.p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                rc = None
            t.eq(rc, 0, f"{tag}: worker {w.name} drains on SIGTERM and exits 0")
    finally:
        probe.stop.set()
        for w in workers.values():
            if w.p.poll() is None:
                try:
                    w.p.send_signal(signal.SIGCONT)
                except OSError:
                    pass
                w.p.kill()
                w.p.wait()
            w.log.close()


def main():
    t = h.Tap()
    rnd = random.Random(7)
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("reports", "manifests"):
            h.make_bucket(s3, b)
        src, src2 = make_sources(s3)
        rows1 = [(b, k, r["VersionId"]) for (b, k), vs in src.items() for r in vs]
        rnd.shuffle(rows1)
        rows2 = [(b, k, r["VersionId"]) for (b, k), vs in src2.items() for r in vs]
        t.eq(len(rows1), 20000, "20,000 source versions for job 1")
        with h.Postgres() as pg:
            scenario(t, "pg", moto, s3, src, src2, rows1, rows2, tmp, pg=pg)
        scenario(t, "sqlite", moto, s3, src, src2, rows1, rows2, tmp)
    t.done()


if __name__ == "__main__":
    main()
