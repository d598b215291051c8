#!/usr/bin/env python3
"""test_damaged_state.py — a lost or damaged checkpoint never replicates a version twice.

A job of 400 one-version keys runs through a proxy that lets the first 150 copies through
and holds the rest, so the job is provably mid-run (150 tasks done and checkpointed, some in
flight) however fast the machine is. The worker is killed with SIGKILL, the checkpoint of
the job's one shard (its row in the catalogue's shards table, run/checkpoint.c) or the
catalogue itself is damaged, and a second `run` of the same document finishes the job:

  * the checkpoint garbled (not JSON);
  * the checkpoint valid JSON of the wrong shape ({"low": "x"});
  * the catalogue (batchrep.db) emptied to 0 bytes, or cut to half its size, its -wal and
    -shm gone: the job is restored from its folder's record (jobs/<id>/job.json), its
    shards recorded again from its spool with their progress uncertain, the earlier cases'
    jobs stay Complete;
  * (9,000 keys, more than the feeder's window of 8,192 rows past a checkpoint) the
    checkpoint garbled after 8,500 copies, and the run that resumes is killed too before it
    checkpointed any progress: the third run still rechecks every unit (the uncertainty is
    kept in the checkpoint the second run wrote).

Each time: the job ends Complete with every task counted once, the report has exactly one
row per manifest line, and every source version has exactly one replica on the
destination (the resumed run rechecks every unit not known done before it writes).
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

N_KEYS = 400
LET_THROUGH = 150


def rules(dst):
    return {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
        {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled"},
         "Destination": {"Bucket": f"arn:aws:s3:::{dst}"}}]}


def catalogue(state):
    return os.path.join(state, "batchrep.db")


def shard_ckpt(state, job_id):
    """The job's shard 0 checkpoint as the catalogue holds it (JSON text), or None."""
    try:
        with sqlite3.connect(catalogue(state), timeout=10) as db:
            row = db.execute("SELECT ckpt FROM shards WHERE job_id = ? AND idx = 0",
                             (job_id,)).fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None


def succeeded(state, job_id):
    try:
        return json.loads(shard_ckpt(state, job_id) or "{}").get("succeeded", 0)
    except ValueError:
        return 0


GARBLED = '{"low": 12, "done": [[1'


def damage(state, job_id, how):
    if how.startswith("catalogue"):
        db = catalogue(state)
        for side in ("-wal", "-shm"):
            if os.path.exists(db + side):
                os.unlink(db + side)
        size = os.path.getsize(db)
        with open(db, "r+b") as f:
            f.truncate(0 if how == "catalogue emptied" else size // 2)
        return
    text = GARBLED if how == "garbled" else '{"low": "x", "done": "none"}'
    with sqlite3.connect(catalogue(state), timeout=10) as db:
        db.execute("UPDATE shards SET ckpt = ? WHERE job_id = ? AND idx = 0", (text, job_id))


def case(t, s3, moto, tmp, rows, src, how, n):
    dst = f"dst{n}"
    h.make_bucket(s3, dst)
    job = h.write_json(os.path.join(tmp, f"job{n}.json"), h.job_document(
        *h.upload_manifest(s3, "manifests", f"m{n}.csv", rows), h.bucket_arn("reports"),
        prefix=f"p{n}", client_token=f"damaged-{n}"))
    rpath = h.write_json(os.path.join(tmp, f"rules{n}.json"), rules(dst))
    state = os.path.join(tmp, "state")
    cmd = [h.batchrep_bin(), "run", job, "--replication-config", rpath, "--state-dir", state,
           "--no-progress", "--concurrency", "8"]
    hold = Rule("hold", op="CopyObject", path_re=rf"^/{dst}/", after=LET_THROUGH)
    with FaultProxy(moto.url, [hold]) as proxy:
        p = subprocess.Popen(cmd, env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        job_id, end = None, time.time() + 300
        while time.time() < end and p.poll() is None:
            jobs = json.loads(h.run_batchrep(["list-jobs", "--state-dir", state],
                                             moto.env()).stdout or '{"Jobs": []}')["Jobs"]
            mine = [j for j in jobs if j["JobId"] not in case.seen]
            if mine:
                job_id = mine[0]["JobId"]
                if proxy.held() > 0 and succeeded(state, job_id) >= LET_THROUGH:
                    break
            time.sleep(0.2)
        ended = p.poll()
        p.send_signal(signal.SIGKILL)
        _, err1 = p.communicate()
        proxy.release()
    case.seen.add(job_id)
    if not t.ok(job_id is not None and ended is None,
                f"{how}: the job ran {LET_THROUGH} tasks, checkpointed, then was killed with "
                f"copies in flight"):
        t.diag(f"the run ended by itself (exit {ended}): {err1.decode(errors='replace')[-1500:]}")
        return
    damage(state, job_id, how)
    res = subprocess.run(cmd, env=moto.env(), capture_output=True, text=True, timeout=900)
    t.eq(res.returncode, 0, f"{how}: the next run completes the job (exit 0)")
    if res.returncode:
        t.diag(res.stderr[-1500:])
        return
    said = "restored from" if how.startswith("catalogue") else "rechecked against its destinations"
    t.ok(said in res.stderr,
         f"{how}: the run says what it found and does ({res.stderr.strip()[:240]})")
    d = json.loads(res.stdout)["Job"]
    ps = d["ProgressSummary"]
    t.eq((d["Status"], ps["NumberOfTasksSucceeded"], ps["NumberOfTasksFailed"]),
         ("Complete", N_KEYS, 0), f"{how}: Complete, every task counted once")
    rep = h.read_report(s3, "reports", f"p{n}", d["JobId"])
    got = [(r[1], r[2]) for r in rep["rows"]["succeeded"] + rep["rows"]["failed"]]
    t.eq(sorted(got), sorted((k, v) for _, k, v in rows),
         f"{how}: exactly one report row per manifest line")
    per_key = {}
    for v in h.list_versions(s3, dst):
        per_key.setdefault(v["Key"], []).append(v["ETag"])
    twice = [k for k, vs in per_key.items() if len(vs) != 1]
    missing = [k for k in src if k not in per_key]
    if not t.ok(not twice and not missing,
                f"{how}: every version has exactly one replica ({len(twice)} twice, "
                f"{len(missing)} missing)"):
        t.diag(res.stderr[-3000:])


case.seen = set()

TWICE_KEYS = 9000  # more rows than the feeder's window (8,192) past the checkpoint
TWICE_FIRST = 8500


def case_interrupted_twice(t, s3, moto, tmp):
    """The checkpoint is damaged, and the run that resumes with a recheck is itself killed before
    it checkpointed anything: the run after it must still recheck (the uncertainty is kept in
    the checkpoint the second run wrote), so no version is written twice."""
    h.make_bucket(s3, "src2")
    h.make_bucket(s3, "dst-twice")
    src = {}
    for i in range(TWICE_KEYS):
        k = f"t/{i:05d}"
        src[k] = s3.put_object(Bucket="src2", Key=k, Body=k.encode())["VersionId"]
    rows = [("src2", k, v) for k, v in src.items()]
    job = h.write_json(os.path.join(tmp, "job-twice.json"), h.job_document(
        *h.upload_manifest(s3, "manifests", "m-twice.csv", rows), h.bucket_arn("reports"),
        prefix="twice", client_token="damaged-twice"))
    rpath = h.write_json(os.path.join(tmp, "rules-twice.json"), rules("dst-twice"))
    state = os.path.join(tmp, "state-twice")
    cmd = [h.batchrep_bin(), "run", job, "--replication-config", rpath, "--state-dir", state,
           "--no-progress", "--concurrency", "8"]
    job_id = None
    hold = Rule("hold", op="CopyObject", path_re=r"^/dst-twice/", after=TWICE_FIRST)
    with FaultProxy(moto.url, [hold]) as proxy:
        p = subprocess.Popen(cmd, env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        end = time.time() + 600
        while time.time() < end and p.poll() is None:
            jobs = json.loads(h.run_batchrep(["list-jobs", "--state-dir", state],
                                             moto.env()).stdout or '{"Jobs": []}')["Jobs"]
            if jobs:
                job_id = jobs[0]["JobId"]
                if proxy.held() > 0 and succeeded(state, job_id) >= TWICE_FIRST:
                    break
            time.sleep(0.3)
        p.send_signal(signal.SIGKILL)
        p.wait()
        proxy.release()
    if not t.ok(job_id is not None and succeeded(state, job_id) >= TWICE_FIRST,
                f"twice: run 1 replicated {TWICE_FIRST} versions, was killed"):
        return
    damage(state, job_id, "garbled")
    # run 2 rechecks: every request to the destination is held, so it is killed having
    # checkpointed nothing but the shard's opening
    hold_dst = Rule("hold", op=["HeadObject", "CopyObject", "ListObjectVersions"],
                    path_re=r"^/dst-twice")
    with FaultProxy(moto.url, [hold_dst]) as proxy:
        p = subprocess.Popen(cmd, env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        end = time.time() + 120
        while time.time() < end and not (shard_ckpt(state, job_id) != GARBLED and
                                         proxy.held() > 0):
            time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
        _, err2 = p.communicate()
        proxy.release()
    t.ok(b"rechecked against its destinations" in err2,
         "twice: run 2 says progress is uncertain and rechecks")
    res = subprocess.run(cmd, env=moto.env(), capture_output=True, text=True, timeout=900)
    t.eq(res.returncode, 0, "twice: run 3 completes the job")
    if res.returncode:
        t.diag(res.stderr[-1500:])
        return
    d = json.loads(res.stdout)["Job"]
    rep = h.read_report(s3, "reports", "twice", d["JobId"])
    got = [(r[1], r[2]) for r in rep["rows"]["succeeded"] + rep["rows"]["failed"]]
    t.eq(sorted(got), sorted((k, v) for _, k, v in rows),
         "twice: exactly one report row per manifest line")
    per_key = {}
    for v in h.list_versions(s3, "dst-twice"):
        per_key.setdefault(v["Key"], []).append(v["ETag"])
    twice = [k for k, vs in per_key.items() if len(vs) != 1]
    t.ok(not twice and len(per_key) == TWICE_KEYS,
         f"twice: every version has exactly one replica ({len(twice)} twice, "
         f"{TWICE_KEYS - len(per_key)} missing)")


def main():
    t = h.Tap()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        s3 = moto.client()
        for b in ("src", "reports", "manifests"):
            h.make_bucket(s3, b)
        src = {}
        for i in range(N_KEYS):
            k = f"k/{i:04d}"
            src[k] = s3.put_object(Bucket="src", Key=k, Body=k.encode())["VersionId"]
        rows = [("src", k, v) for k, v in src.items()]
        for n, how in enumerate(("garbled", "wrong shape", "catalogue emptied",
                                 "catalogue half-truncated")):
            case(t, s3, moto, tmp, rows, src, how, n)
        case_interrupted_twice(t, s3, moto, tmp)
    t.done()


if __name__ == "__main__":
    main()
