#!/usr/bin/env python3
"""test_disk_full.py — a full disk pauses the worker; nothing is lost, nothing doubled.

The state directory is a small tmpfs (mounted by this test: it runs as root, as `make test`
does). A job of 300 one-version keys runs through a proxy that lets the first 100 copies
through and holds the rest, so the job is provably mid-run; then the tmpfs is filled to the
last byte and the held copies are released: their report rows, the checkpoints and the
catalogue cannot be written.

  A. the space comes back: the worker said it is waiting for space, it is still running
     (not Failed) a few seconds later, and once the filler is removed it carries on and the
     job completes;
  B. the space does not come back within --disk-full-wait-s 3: `run` stops with exit 1 and a
     message that names the full device and says the job resumes; the job is not Failed.
     Once there is space again, the same `run` completes it.

Each time: Complete, one report row per manifest row, one replica per version.
"""
import errno
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from faultproxy import FaultProxy, Rule  # noqa: E402

N_KEYS = 300
LET_THROUGH = 100


def rules(dst):
    return {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
        {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
         "DeleteMarkerReplication": {"Status": "Enabled"},
         "Destination": {"Bucket": f"arn:aws:s3:::{dst}"}}]}


def fill(path):
    """Writes zeros into path until the file system is full."""
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        try:
            while True:
                f.write(b"\0")
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise


def wait_for(pred, timeout_s):
    end = time.time() + timeout_s
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def check_done(t, s3, res_stdout, rows, src, dst, prefix, name):
    d = json.loads(res_stdout)["Job"]
    ps = d["ProgressSummary"]
    t.eq((d["Status"], ps["NumberOfTasksSucceeded"], ps["NumberOfTasksFailed"]),
         ("Complete", N_KEYS, 0), f"{name}: Complete, every task counted once")
    rep = h.read_report(s3, "reports", prefix, d["JobId"])
    got = sorted((r[1], r[2]) for st in rep["rows"].values() for r in st)
    t.eq(got, sorted((k, v) for _, k, v in rows), f"{name}: one report row per manifest row")
    per_key = {}
    for v in h.list_versions(s3, dst):
        per_key.setdefault(v["Key"], []).append(v["ETag"])
    t.ok(sorted(per_key) == sorted(src) and all(len(v) == 1 for v in per_key.values()),
         f"{name}: every version has exactly one replica")


def case(t, s3, moto, tmp, state, rows, src, name, wait_s):
    dst = f"dst-{name.lower()}"
    h.make_bucket(s3, dst)
    job = h.write_json(os.path.join(tmp, f"job-{name}.json"), h.job_document(
        *h.upload_manifest(s3, "manifests", f"m-{name}.csv", rows), h.bucket_arn("reports"),
        prefix=name, client_token=f"disk-full-{name}"))
    rpath = h.write_json(os.path.join(tmp, f"rules-{name}.json"), rules(dst))
    cmd = [h.batchrep_bin(), "run", job, "--replication-config", rpath, "--state-dir", state,
           "--no-progress", "--concurrency", "8"]
    if wait_s:
        cmd += ["--disk-full-wait-s", str(wait_s)]
    filler = os.path.join(state, "filler")
    errpath = os.path.join(tmp, f"stderr-{name}.txt")
    hold = Rule("hold", op="CopyObject", path_re=rf"^/{dst}/", after=LET_THROUGH)
    with FaultProxy(moto.url, [hold]) as proxy, open(errpath, "w") as err:
        p = subprocess.Popen(cmd, env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                             stderr=err)
        t.ok(wait_for(lambda: proxy.held() > 0, 300), f"{name}: {LET_THROUGH} copies done, "
                                                      f"the rest held")
        time.sleep(1.5)  # a checkpoint counts the first rows (written every second)
        fill(filler)
        proxy.release()
        said = wait_for(lambda: "waiting for space" in read(errpath), 120)
        t.ok(said, f"{name}: the worker says it waits for space ({read(errpath)[-300:]!r})")
        if not wait_s:
            time.sleep(3)
            t.ok(p.poll() is None, f"{name}: still running, paused, 3 s later")
            os.unlink(filler)
            out, _ = p.communicate(timeout=600)
            t.eq(p.returncode, 0, f"{name}: once there is space it carries on and completes")
            if p.returncode == 0:
                check_done(t, s3, out, rows, src, dst, name, name)
            else:
                t.diag(read(errpath)[-2000:])
            return
        p.communicate(timeout=120)
        msg = read(errpath)
        t.ok(p.returncode == 1 and "No space left on device" in msg and "resume" in msg,
             f"{name}: exit 1 naming the full device and saying the job resumes "
             f"(exit {p.returncode}: {msg[-400:]!r})")
    os.unlink(filler)
    listed = json.loads(h.run_batchrep(["list-jobs", "--state-dir", state], moto.env()).stdout)
    statuses = {j["Status"] for j in listed["Jobs"] if j.get("Description", "") != "x"}
    t.ok("Failed" not in statuses, f"{name}: the job was not failed for it ({statuses})")
    res = subprocess.run(cmd, env=moto.env(), capture_output=True, text=True, timeout=900)
    t.eq(res.returncode, 0, f"{name}: the same run, once there is space, completes the job")
    if res.returncode == 0:
        check_done(t, s3, res.stdout, rows, src, dst, name, name)
    else:
        t.diag(res.stderr[-2000:])


def main():
    t = h.Tap()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "state")
        os.makedirs(state, mode=0o700)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs",
                                  state], capture_output=True, text=True)
        if not t.eq(mounted.returncode, 0, "a 8 MiB tmpfs for the state directory (needs "
                                          "root, as make test runs)"):
            t.diag(mounted.stderr)
            t.done()
        try:
            s3 = moto.client()
            for b in ("src", "reports", "manifests"):
                h.make_bucket(s3, b)
            src = {}
            for i in range(N_KEYS):
                k = f"k/{i:04d}"
                src[k] = s3.put_object(Bucket="src", Key=k, Body=f"{k}".encode())
            rows = [("src", k, v["VersionId"]) for k, v in src.items()]
            case(t, s3, moto, tmp, state, rows, src, "A", 0)
            case(t, s3, moto, tmp, state, rows, src, "B", 3)
        finally:
            subprocess.run(["umount", "-l", state], capture_output=True)
    t.done()


if __name__ == "__main__":
    main()
