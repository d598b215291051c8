#!/usr/bin/env python3
"""fleet.py — what a fleet costs its PostgreSQL catalogue, and what 1, 2 and 4 workers do
together against an S3 endpoint that is not the bottleneck.

  python3 bench/fleet.py [--tasks 200000] [--shard-rows 10000] [--workers 1,2,4]

Servers, all on 127.0.0.1 and stopped by PID: a PostgreSQL started like the tests' one
(tests/integration/harness.py Postgres, log_statement = all and the application name in
every log line, so every statement a worker sends is counted from the server's log, and
the benchmark's own describe-job polls are not), and build/bench/bench_instant_server (canned
answers: HEAD, CopyObject, PUTs accepted and dropped; Object Ownership BucketOwnerEnforced,
so no GetObjectAcl). The job: a local CSV manifest of --tasks one-version keys, no report
(its rows would go to parts that the instant endpoint drops), --work-location on the
instant endpoint (the spool is uploaded there once; every worker shares one scratch
--state-dir, so none downloads it back). Workers run with the defaults (--lease-ttl-s 30,
--checkpoint-interval-s 5, --concurrency 64).

For each worker count it prints one line per run, key=value:
  fleet workers=N tasks=T shards=S wall_s=.. tasks_per_s=.. statements=.. transactions=..
        statements_per_shard=.. statements_per_ktask=.. idle_statements_per_worker_s=..
        shards_bytes=.. jobs_bytes=.. bytes_per_shard=.. checkpoint_bytes=..
        statements_per_worker_s=.. bytes_per_task=..
statements: every statement the server logged while the job ran (from create-job to
Complete), transactions: xact_commit from pg_stat_database over the same span; table
bytes are PostgreSQL's (pages of 8 KiB, indexes included) after the job, checkpoint_bytes
the mean size of a complete shard's last checkpoint.
idle_statements_per_worker_s: statements per second per worker measured for 10 s after
the job, with nothing to run (the polling load of an idle fleet).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness as h  # noqa: E402

BUILD = os.environ.get("BATCHREP_BUILD", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "bin", "batchrep")
INSTANT = os.path.join(BUILD, "bench", "bench_instant_server")

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}


WORKER_APP = "batchrep-worker"  # the workers' application_name: only their statements count


def statements_logged(pg):
    with open(pg.log_path, errors="replace") as f:
        return sum(1 for line in f if line.startswith(WORKER_APP + "|") and
                   re.search(r"LOG:  (statement|execute [^:]*):", line))


def statement_kinds(pg, skip):
    """Counts of the statements logged after the first `skip`, by their first words."""
    kinds, n = {}, 0
    with open(pg.log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"LOG:  (?:statement|execute [^:]*): (.*)", line)
            if not m or not line.startswith(WORKER_APP + "|"):
                continue
            n += 1
            if n > skip:
                k = " ".join(m.group(1).split())[:70]
                kinds[k] = kinds.get(k, 0) + 1
    return sorted(kinds.items(), key=lambda kv: -kv[1])


def xacts(pg):
    out = pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
    return int(out.stdout.strip() or 0)


def one_run(a, n_workers, pg, endpoint, tmp):
    env = h.batchrep_env(endpoint)
    state = tempfile.mkdtemp(prefix=f"w{n_workers}-", dir=tmp)
    manifest = os.path.join(tmp, "manifest.csv")
    if not os.path.exists(manifest):
        with open(manifest, "w") as f:
            for start in range(0, a.tasks, 100000):
                f.write("".join(f"src,obj/{i:010d},v1\n"
                                for i in range(start, min(a.tasks, start + 100000))))
    doc = {"AccountId": "123456789012", "Operation": {"S3ReplicateObject": {}},
           "Priority": 10, "RoleArn": "arn:aws:iam::123456789012:role/batch",
           "ClientRequestToken": f"bench-fleet-{n_workers}-{time.time()}",
           "ConfirmationRequired": False,
           "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820",
                                 "Fields": ["Bucket", "Key", "VersionId"]},
                        "Location": {"ObjectArn": manifest, "ETag": "x"}},
           "Report": {"Enabled": False}}
    job = h.write_json(os.path.join(state, "job.json"), doc)
    rules = h.write_json(os.path.join(state, "rules.json"), RULES)
    cat = ["--catalog", pg.url]
    s0, x0 = statements_logged(pg), xacts(pg)
    t0 = time.time()
    res = subprocess.run([BIN, "create-job", job, "--replication-config", rules, *cat],
                         env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"create-job failed: {res.stderr}")
    job_id = json.loads(res.stdout)["JobId"]
    wcat = ["--catalog", pg.url + "?application_name=" + WORKER_APP]
    procs = [subprocess.Popen([BIN, "worker", *wcat, "--state-dir", state, "--no-progress",
                               "--shard-rows", str(a.shard_rows), "--work-location",
                               "s3://work/bench"], env=env, stderr=subprocess.DEVNULL)
             for _ in range(n_workers)]
    status = None
    while time.time() - t0 < a.timeout:
        d = subprocess.run([BIN, "describe-job", "--job-id", job_id, *cat], env=env,
                           capture_output=True, text=True)
        if d.returncode == 0:
            status = json.loads(d.stdout)["Job"]
            if status["Status"] in ("Complete", "Failed", "Cancelled"):
                break
        time.sleep(0.25)
    wall = time.time() - t0
    s1, x1 = statements_logged(pg), xacts(pg)
    if a.kinds:
        for k, n in statement_kinds(pg, s0)[:25]:
            print(f"#   {n:7d}  {k}", file=sys.stderr)
    time.sleep(10)
    s2 = statements_logged(pg)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=120)
    sizes = pg.psql("SELECT pg_total_relation_size('shards'), pg_total_relation_size('jobs'), "
                    "count(*), COALESCE(avg(length(ckpt)), 0)::bigint FROM shards "
                    "WHERE job_id = '%s'" % job_id).stdout
    shards_b, jobs_b, n_shards, ckpt_b = (int(x) for x in sizes.strip().split("|"))
    ps = status["ProgressSummary"] if status else {}
    ok = status and status["Status"] == "Complete" and ps.get("NumberOfTasksSucceeded") == a.tasks
    stmts = s1 - s0
    print(f"fleet workers={n_workers} tasks={a.tasks} shards={n_shards} status="
          f"{status['Status'] if status else 'none'} ok={int(bool(ok))} wall_s={wall:.1f} "
          f"tasks_per_s={a.tasks / wall:.0f} statements={stmts} transactions={x1 - x0} "
          f"statements_per_shard={stmts / max(n_shards, 1):.1f} "
          f"statements_per_ktask={1000 * stmts / a.tasks:.2f} "
          f"idle_statements_per_worker_s={(s2 - s1) / 10 / n_workers:.1f} "
          f"shards_bytes={shards_b} jobs_bytes={jobs_b} "
          f"bytes_per_shard={shards_b / max(n_shards, 1):.0f} checkpoint_bytes={ckpt_b} "
          f"statements_per_worker_s={stmts / wall / n_workers:.1f} "
          f"bytes_per_task={(shards_b + jobs_b) / a.tasks:.3f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200000)
    ap.add_argument("--shard-rows", type=int, default=10000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--kinds", action="store_true",
                    help="also print the statements by kind (stderr)")
    a = ap.parse_args()
    for exe in (BIN, INSTANT):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: make all first")
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    print(f"machine cpus={os.cpu_count()} model=\"{model}\"")
    port = h.free_port()
    srv = subprocess.Popen([INSTANT, str(port), "1", "1", "BucketOwnerEnforced"],
                           stderr=subprocess.DEVNULL)
    try:
        with h.Postgres() as pg, tempfile.TemporaryDirectory(prefix="batchrep-fleet-") as tmp:
            pg.psql("ALTER SYSTEM SET log_statement = 'all'")
            pg.psql("ALTER SYSTEM SET log_line_prefix = '%a|'")
            pg.psql("SELECT pg_reload_conf()")
            time.sleep(0.5)
            for n in (int(x) for x in a.workers.split(",")):
                one_run(a, n, pg, f"http://127.0.0.1:{port}", tmp)
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait()


if __name__ == "__main__":
    main()
