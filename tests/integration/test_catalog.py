#!/usr/bin/env python3
"""test_catalog.py — the shared job catalogue (PostgreSQL) through the real binary, against a
private PostgreSQL server and moto:

  * the catalogue interface (tests/unit/test_store.c: rows, claims, shard leases, fencing
    tokens, several threads, a dropped connection, schema versions) run against PostgreSQL;
  * the job verbs (create-job with a CSV manifest on moto, describe-job, list-jobs
    --job-statuses, update-job-priority, update-job-status) with --catalog URL and with
    BATCHREP_CATALOG set print JSON of the same shape as with SQLite, and leave no catalogue
    or job record in the state directory (scratch space only);
  * ElapsedTimeInActiveSeconds counts the Active time kept by the catalogue, also while the
    job is Active now, on both backends;
  * 8 processes opening a new catalogue at once all succeed (the schema is created once);
  * a catalogue whose batchrep_schema says version 99 is refused by every verb, naming the
    version;
  * a wrong password, a port where nothing listens, a server that is down (then up again)
    and a catalogue string that is not a PostgreSQL URL: a clear message, never the password,
    and no wait longer than ~10 s.

Running a job (`run`, `worker`) on PostgreSQL is not tested here.
"""
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}
PASSWORD = "hunter2-not-printed"


def shape(v):
    """The JSON's structure: member names and value types, not the values."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(x) for x in v]
    return type(v).__name__


class Cli:
    """batchrep's verbs on one catalogue: SQLite in a state directory (catalog None), or
    PostgreSQL by --catalog URL or by BATCHREP_CATALOG (by_env)."""

    def __init__(self, tmp, name, moto, catalog=None, by_env=False):
        self.state = os.path.join(tmp, f"state-{name}")
        self.catalog, self.by_env = catalog, by_env
        extra = {"BATCHREP_CATALOG": catalog if by_env else None}
        self.env = h.batchrep_env(moto.url, extra)

    def run(self, *args, timeout=120):
        args = [*args, "--state-dir", self.state]
        if self.catalog and not self.by_env:
            args += ["--catalog", self.catalog]
        return h.run_batchrep(args, self.env, timeout=timeout)

    def json(self, *args):
        res = self.run(*args)
        if res.returncode != 0:
            raise RuntimeError(f"batchrep {args}: exit {res.returncode}: {res.stderr}")
        return json.loads(res.stdout)


def verbs(cli, job_path, rules_path):
    """The verbs' answers for one job: {step: JSON}, in order."""
    out = {}
    out["create"] = cli.json("create-job", job_path, "--replication-config", rules_path)
    jid = out["create"]["JobId"]
    out["create again"] = cli.json("create-job", job_path, "--replication-config", rules_path)
    out["describe"] = cli.json("describe-job", "--job-id", jid)
    out["list"] = cli.json("list-jobs")
    out["list New"] = cli.json("list-jobs", "--job-statuses", "New", "Ready")
    out["list Active"] = cli.json("list-jobs", "--job-statuses", "Active")
    out["priority"] = cli.json("update-job-priority", "--job-id", jid, "--priority", "77")
    out["describe 2"] = cli.json("describe-job", "--job-id", jid)
    out["cancel"] = cli.json("update-job-status", "--job-id", jid, "--requested-job-status",
                             "Cancelled", "--status-update-reason", "not needed")
    out["describe 3"] = cli.json("describe-job", "--job-id", jid)
    return out


def case_unit(t, pg):
    exe = os.path.join(h.BUILD_DIR, "tests", "test_store")
    url = pg.url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust: any password works
    res = subprocess.run([exe], env={**os.environ, "BATCHREP_TEST_CATALOG": url,
                                     "BATCHREP_SRC": h.REPO_ROOT},
                         capture_output=True, text=True, timeout=300)
    lines = res.stdout.splitlines()
    failed = [x for x in lines if x.startswith("not ok")]
    summary = lines[-1] if lines else ""
    if not t.ok(res.returncode == 0 and not failed and summary.endswith(" 0 failed"),
                f"test_store against PostgreSQL: {summary}"):
        t.diag("\n".join(failed) or res.stdout[-3000:] + res.stderr[-2000:])
    t.ok(PASSWORD not in res.stdout + res.stderr, "test_store's output has no password")


def case_verbs(t, tmp, pg, moto, s3):
    rows = []
    for i in range(3):
        key = f"cat/{i:02d}"
        rows.append(("src", key, s3.put_object(Bucket="src", Key=key, Body=b"x")["VersionId"]))
    arn, etag = h.upload_manifest(s3, "manifests", "cat.csv", rows)
    rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
    answers = {}
    for name, catalog, by_env in (("sqlite", None, False), ("pg-option", pg.url, False),
                                  ("pg-env", pg.url, True)):
        doc = h.job_document(arn, etag, h.bucket_arn("reports"), prefix="cat",
                             client_token=f"token-{name}", priority=5)
        job = h.write_json(os.path.join(tmp, f"job-{name}.json"), doc)
        try:
            answers[name] = verbs(Cli(tmp, name, moto, catalog, by_env), job, rules)
        except (RuntimeError, ValueError) as e:
            t.ok(False, f"{name}: the verbs run: {e}")
            return
    a = answers["sqlite"]
    for name in ("pg-option", "pg-env"):
        b = answers[name]
        how = "--catalog" if name == "pg-option" else "BATCHREP_CATALOG"
        jid = b["create"]["JobId"]
        t.eq(b["create again"], b["create"], f"{how}: the same ClientRequestToken, the same job")
        for step in ("create", "describe", "priority", "describe 2", "cancel", "describe 3"):
            t.eq(shape(b[step]), shape(a[step]), f"{how}: {step}: the JSON has SQLite's shape")
        d, d2, d3 = b["describe"]["Job"], b["describe 2"]["Job"], b["describe 3"]["Job"]
        t.eq((d["Status"], d["Priority"], d["ProgressSummary"]["TotalNumberOfTasks"]),
             ("New", 5, 0), f"{how}: describe-job: New, priority 5")
        res = pg.psql(f"SELECT priority FROM jobs WHERE id = '{jid}'")
        t.eq(res.stdout.strip(), "77", f"{how}: update-job-priority 77 is stored")
        # describe-job's Priority is the document's on both backends (jobs_job_load)
        t.eq(d2["Priority"], a["describe 2"]["Job"]["Priority"],
             f"{how}: describe-job's Priority after the update is SQLite's")
        t.eq((d3["Status"], d3.get("StatusUpdateReason"), "TerminationDate" in d3),
             (a["describe 3"]["Job"]["Status"], "not needed", True),
             f"{how}: update-job-status Cancelled: {d3['Status']}, the reason, a termination")
        t.ok(jid in [x["JobId"] for x in b["list New"]["Jobs"]] and
             jid not in [x["JobId"] for x in b["list Active"]["Jobs"]],
             f"{how}: list-jobs --job-statuses filters")
        t.eq(shape(b["list New"]["Jobs"][0]), shape(a["list New"]["Jobs"][0]),
             f"{how}: a JobListDescriptor has SQLite's shape")
        state = os.path.join(tmp, f"state-{name}")
        t.ok(not os.path.exists(os.path.join(state, "batchrep.db")) and
             not os.path.exists(os.path.join(state, "jobs", jid)),
             f"{how}: no SQLite catalogue and no job record in the state directory")
    # both PostgreSQL ways reach one catalogue: each lists the other's job
    ids = {x["JobId"] for x in answers["pg-env"]["list"]["Jobs"]}
    t.ok(answers["pg-option"]["create"]["JobId"] in ids,
         "--catalog and BATCHREP_CATALOG name the same catalogue")
    t.ok(answers["sqlite"]["create"]["JobId"] not in ids, "the SQLite job is not in it")


def case_first_open(t, tmp, pg, moto):
    """8 processes opening a new catalogue at once: one creates the schema, none fails."""
    bad, versions = [], []
    for round_ in range(3):
        db = f"fresh{round_}"
        pg.psql(f"CREATE DATABASE {db}")
        url = pg.url.rsplit("/", 1)[0] + "/" + db
        env = h.batchrep_env(moto.url)
        procs = [subprocess.Popen([h.batchrep_bin(), "list-jobs", "--catalog", url,
                                   "--state-dir", os.path.join(tmp, "fresh")], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(8)]
        bad += [e for e in (p.communicate(timeout=60)[1] for p in procs) if e]
        versions.append(pg.psql("SELECT count(*), max(version) FROM batchrep_schema",
                                url=url).stdout.strip())
    t.eq(bad, [], "8 processes opening a new PostgreSQL catalogue at once all succeed "
                  "(3 rounds)")
    t.eq(versions, ["1|2"] * 3, "each catalogue has one schema version row: 2")


def case_elapsed(t, tmp, pg, moto):
    """An Active job's ElapsedTimeInActiveSeconds: the kept time plus the time since it became
    Active; a cancel stops the clock and keeps the sum (both backends)."""
    s3 = moto.client()
    arn, etag = h.upload_manifest(s3, "manifests", "elapsed.csv", [("src", "k", None)])
    rules = h.write_json(os.path.join(tmp, "rules-e.json"), RULES)
    for name, catalog in (("sqlite", None), ("postgresql", pg.url)):
        cli = Cli(tmp, f"elapsed-{name}", moto, catalog)
        doc = h.job_document(arn, etag, h.bucket_arn("reports"),
                             client_token=f"elapsed-{name}")
        jid = cli.json("create-job", h.write_json(os.path.join(tmp, f"e-{name}.json"), doc),
                       "--replication-config", rules)["JobId"]
        now_ms = int(time.time() * 1000)
        sql = (f"UPDATE jobs SET status = 'Active', active_ms = 2000, active_since_ms = "
               f"{now_ms - 5000} WHERE id = '{jid}'")
        if catalog:
            res = pg.psql(sql)
            if not t.eq(res.returncode, 0, f"{name}: job made Active (psql)"):
                t.diag(res.stderr)
                continue
        else:
            with sqlite3.connect(os.path.join(cli.state, "batchrep.db")) as db:
                db.execute(sql)
        e = cli.json("describe-job", "--job-id", jid)["Job"]["ProgressSummary"]["Timers"]
        t.ok(7 <= e["ElapsedTimeInActiveSeconds"] <= 9,
             f"{name}: Active for 5 s after 2 s kept: ElapsedTimeInActiveSeconds "
             f"{e['ElapsedTimeInActiveSeconds']} (7)")
        d = cli.json("update-job-status", "--job-id", jid, "--requested-job-status",
                     "Cancelled")
        time.sleep(1.2)
        e2 = cli.json("describe-job", "--job-id", jid)["Job"]
        el = e2["ProgressSummary"]["Timers"]["ElapsedTimeInActiveSeconds"]
        t.ok(d["Status"] == "Cancelling" and 7 <= el <= 9,
             f"{name}: a cancel leaves Active: the clock stops at {el} s (7) and stays")


def case_schema(t, tmp, pg, moto):
    res = pg.psql("UPDATE batchrep_schema SET version = 99")
    if not t.eq(res.returncode, 0, "psql: the catalogue's schema version set to 99"):
        t.diag(res.stderr)
        return
    cli = Cli(tmp, "schema", moto, pg.url)
    job = os.path.join(tmp, "job-pg-option.json")
    try:
        for args in (["create-job", job], ["describe-job", "--job-id", "x"], ["list-jobs"],
                     ["update-job-priority", "--job-id", "x", "--priority", "1"],
                     ["update-job-status", "--job-id", "x", "--requested-job-status",
                      "Cancelled"], ["worker", "--until-idle", "--no-progress"]):
            r = cli.run(*args)
            t.ok(r.returncode != 0 and "version 99" in r.stderr and "(2)" in r.stderr,
                 f"{args[0]} refuses a catalogue of schema version 99: exit {r.returncode}, "
                 f"{r.stderr.strip()}")
    finally:
        pg.psql("UPDATE batchrep_schema SET version = 2")
    t.eq(cli.run("list-jobs").returncode, 0, "version 2 again: list-jobs works")


def case_bad_catalogue(t, tmp, pg, moto):
    res = pg.psql("CREATE ROLE pw_user LOGIN PASSWORD 'the-right-one'")
    t.eq(res.returncode, 0, "a role that needs its password")
    wrong = f"postgresql://pw_user:{PASSWORD}@127.0.0.1:{pg.port}/postgres"
    r = Cli(tmp, "bad", moto, wrong).run("list-jobs")
    t.ok(r.returncode == 1 and "password authentication failed" in r.stderr and
         f"postgresql://127.0.0.1:{pg.port}/postgres" in r.stderr,
         f"a wrong password: exit 1, the catalogue and the reason named ({r.stderr.strip()})")
    t.ok(PASSWORD not in r.stderr + r.stdout, "the password is not printed")

    port = h.free_port()
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    started = time.monotonic()
    r = Cli(tmp, "bad", moto, url, by_env=True).run("list-jobs")
    took = time.monotonic() - started
    t.ok(r.returncode == 1 and f"catalogue postgresql://127.0.0.1:{port}/postgres unreachable"
         in r.stderr and took < 10,
         f"nothing listening: exit 1 in {took:.1f} s, unreachable ({r.stderr.strip()})")
    t.ok(PASSWORD not in r.stderr + r.stdout, "the password is not printed")

    r = Cli(tmp, "bad", moto, f"mysql://root:{PASSWORD}@127.0.0.1/db").run("list-jobs")
    t.ok(r.returncode == 2 and "postgresql://" in r.stderr and PASSWORD not in r.stderr,
         f"not a PostgreSQL URL: exit 2, said without the password ({r.stderr.strip()})")

    # the server down, then up again: each verb opens its own connection
    cli = Cli(tmp, "outage", moto, pg.url.replace("postgres@", f"postgres:{PASSWORD}@"))
    before = cli.run("list-jobs")
    pg.stop()
    try:
        started = time.monotonic()
        r = cli.run("list-jobs")
        took = time.monotonic() - started
        t.ok(r.returncode == 1 and "unreachable" in r.stderr and took < 10 and
             PASSWORD not in r.stderr,
             f"the server down: exit 1 in {took:.1f} s, unreachable ({r.stderr.strip()})")
    finally:
        pg.restart()
    after = cli.run("list-jobs")
    def jobs(res):  # an Active job's ElapsedTimeInActiveSeconds grows meanwhile
        return [(x["JobId"], x["Status"], x["Priority"]) for x in json.loads(res.stdout)["Jobs"]]

    if not t.ok(before.returncode == 0 and after.returncode == 0 and
                jobs(after) == jobs(before) and len(jobs(after)) > 0,
                "the server up again: list-jobs lists the same jobs"):
        t.diag(f"before: {before.returncode} {before.stderr}{before.stdout[:1500]}")
        t.diag(f"after: {after.returncode} {after.stderr}{after.stdout[:1500]}")


def main():
    t = h.Tap()
    with tempfile.TemporaryDirectory() as tmp, \
            h.Postgres(hba_extra=["host all pw_user 127.0.0.1/32 scram-sha-256"]) as pg, \
            h.Moto() as moto:
        s3 = moto.client()
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(s3, b)
        case_unit(t, pg)
        case_verbs(t, tmp, pg, moto, s3)
        case_first_open(t, tmp, pg, moto)
        case_elapsed(t, tmp, pg, moto)
        case_schema(t, tmp, pg, moto)
        case_bad_catalogue(t, tmp, pg, moto)
    t.done()


if __name__ == "__main__":
    main()
