#!/usr/bin/env python3
"""test_prepare_crash.py — kill -9 during Preparing: the next worker prepares the job again,
and the spool holds every manifest row exactly once (run/spool.c, run/prepare.c).

An S3 Inventory report of 120,000 rows in two gzip data files (shuffled keys). The worker
runs with a 1 MiB sort buffer (`--sort-memory-mib 1`), so the rows of the first data file
are sorted and spilled as several runs, and through a proxy that holds the GET of the
second data file: the worker is then provably in the middle of Preparing's sort, with runs
on disk, however fast the machine. It is killed with SIGKILL there. A second worker (no
proxy) takes the job over; the job asks for confirmation, so it stops in Suspended once
prepared. Checked: TotalNumberOfTasks and the spool's index.json count every row once,
the shards' rows add up and are contiguous, no run file or partial shard is left, the
folder is 0700 and its files 0600; then the job is cancelled.
"""
import datetime as dt
import glob
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import harness as h  # noqa: E402
import make_inventory as mi  # noqa: E402
from faultproxy import FaultProxy, Rule  # noqa: E402

N_ROWS = 120000
RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}


def inventory_rows(rnd):
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(N_ROWS):
        k = f"data/part-{i % 997:04d}/file-{i:07d}.parquet"
        rows.append({"Bucket": "src", "Key": k, "VersionId": f"{rnd.getrandbits(128):032x}",
                     "IsLatest": True, "IsDeleteMarker": False, "Size": 1000 + i,
                     "LastModifiedDate": when, "ETag": f"{i:032x}",
                     "StorageClass": "STANDARD"})
    rnd.shuffle(rows)
    return rows


def main():
    t = h.Tap()
    rnd = random.Random(7)
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "dst", "inv", "reports"):
            h.make_bucket(s3, b)
        root = os.path.join(tmp, "inv")
        mkey = mi.build(root, inventory_rows(rnd), mi.FULL_SCHEMA, "src", "inv", n_files=2,
                        quote_all=True, compress="gzip")
        mi.upload(s3, root, "inv")
        files = json.load(open(os.path.join(root, mkey)))["files"]
        t.eq(len(files), 2, "the inventory has two data files")
        job = h.job_document(h.object_arn("inv", mkey),
                             s3.head_object(Bucket="inv", Key=mkey)["ETag"].strip('"'),
                             h.bucket_arn("reports"), prefix="p")
        job["Manifest"]["Spec"] = {"Format": "S3InventoryReport_CSV_20161130"}
        job["ConfirmationRequired"] = True
        state = os.path.join(tmp, "state")
        jpath = h.write_json(os.path.join(tmp, "job.json"), job)
        rpath = h.write_json(os.path.join(tmp, "rules.json"), RULES)
        res = h.run_batchrep(["create-job", jpath, "--replication-config", rpath,
                              "--state-dir", state], moto.env())
        if not t.eq(res.returncode, 0, "create-job"):
            t.diag(res.stderr)
            t.done()
        job_id = json.loads(res.stdout)["JobId"]
        spool = os.path.join(state, "jobs", job_id, "spool")

        hold = Rule("hold", op="GetObject", path_re=rf"^/inv/{files[1]['key']}")
        with FaultProxy(moto.url, [hold]) as proxy:
            p = subprocess.Popen([h.batchrep_bin(), "worker", "--until-idle", "--state-dir",
                                  state, "--sort-memory-mib", "1"],
                                 env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            end = time.time() + 300
            runs = []
            while time.time() < end and p.poll() is None:
                runs = glob.glob(os.path.join(spool, "run-*"))
                if proxy.held() > 0 and len(runs) >= 2:
                    break
                time.sleep(0.05)
            killed = p.poll() is None
            p.send_signal(signal.SIGKILL)
            p.wait()
            proxy.release()
        t.ok(killed and len(runs) >= 2 and not os.path.exists(os.path.join(spool, "index.json")),
             f"killed during Preparing's sort: {len(runs)} runs spilled, the second data file "
             f"held, no index.json")

        res = h.run_batchrep(["worker", "--until-idle", "--state-dir", state], moto.env(),
                             timeout=600)
        t.eq(res.returncode, 0, "a second worker takes the job over and prepares it")
        if res.returncode:
            t.diag(res.stderr[-2000:])
        d = json.loads(h.run_batchrep(["describe-job", "--job-id", job_id, "--state-dir", state],
                                      moto.env()).stdout)["Job"]
        t.eq((d["Status"], d["ProgressSummary"]["TotalNumberOfTasks"]), ("Suspended", N_ROWS),
             "prepared again: Suspended (awaiting confirmation), every row counted once")
        idx = json.load(open(os.path.join(spool, "index.json")))
        shards = idx.get("shards", [])
        contiguous = all(a["first_seq"] + a["n_rows"] == b["first_seq"]
                         for a, b in zip(shards, shards[1:]))
        t.ok(idx.get("n_rows") == N_ROWS and sum(s["n_rows"] for s in shards) == N_ROWS and
             shards and shards[0]["first_seq"] == 0 and contiguous,
             f"index.json: {idx.get('n_rows')} rows in {len(shards)} contiguous shards")
        left = sorted(n for n in os.listdir(spool)
                      if n != "index.json" and n not in {s["file"] for s in shards})
        t.eq(left, [], "no run file, partial shard or temporary file left in the spool")
        modes = {oct(os.stat(os.path.join(spool, n)).st_mode & 0o777) for n in os.listdir(spool)}
        t.ok(modes == {"0o600"} and oct(os.stat(spool).st_mode & 0o777) == "0o700",
             f"spool folder 0700, files 0600 ({sorted(modes)})")
        res = h.run_batchrep(["update-job-status", "--job-id", job_id, "--requested-job-status",
                              "Cancelled", "--state-dir", state], moto.env())
        t.eq(res.returncode, 0, "the prepared job can be cancelled")
    t.done()


if __name__ == "__main__":
    main()
