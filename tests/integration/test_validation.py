#!/usr/bin/env python3
"""test_validation.py — requests AWS refuses are refused, and the job clock keeps counting
(issue 15 items 6, 9 and 10), through the real binary.

  * documents (no server): Operation {"S3ReplicateObject": "yes"}, an S3 manifest without
    its ETag (JobManifestLocation.ETag is required, aws-formats.md §1.3; a local manifest
    needs none), a RoleArn that is no IAM role ARN and one of 100 KB (IAMRoleArn: 1..2048,
    arn:...:iam::<12 digits>:role/..., §3.2), and replication configurations without Role,
    with a duplicate rule ID, a negative Priority, Priority 4294967297 (an int on the wire,
    §7.1), two overlapping rules of equal priority for one destination (§7.2) and a rule ID
    of 256 characters (§7.1): each exits 2 naming the member;
  * ClientRequestToken (§3.1, §3.2: idempotency token; CreateJob's IdempotencyException):
    the same document again (also reformatted, keys reordered) is the same job; another
    document, other rules, or rules from the bucket instead of a file: exit 1,
    IdempotencyException naming the token, for create-job and run, and nothing runs; a
    catalogue made before the digests existed keeps its job and still refuses another
    document; the job then runs to Complete under its own manifest;
  * a manifest key whose bytes are not UTF-8 (§1.1: a manifest is UTF-8; §5.5: the report
    echoes keys as written) fails the job in Preparing with InvalidManifestContent naming
    the line, so no report row can carry it;
  * a report bucket that does not exist, or refuses writes, fails the job in Preparing with
    ReportNotWritable (§4.2) before any task runs (the destination stays empty); a good one
    is left without the marker object the check wrote;
  * ElapsedTimeInActiveSeconds (§4.3) after a kill -9 and a resume is the sum of both runs'
    active time (a proxy holds the copies, so each run is Active for a known time).
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

ROLE = "arn:aws:iam::123456789012:role/r"
NOWHERE = "http://127.0.0.1:9"  # nothing listens: these cases must not need a server


def rule(rid, prio, dst="dst", prefix=""):
    return {"ID": rid, "Priority": prio, "Status": "Enabled", "Filter": {"Prefix": prefix},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": h.bucket_arn(dst)}}


def rules_doc(*rules, role=ROLE):
    doc = {"Rules": list(rules)}
    if role is not None:
        doc["Role"] = role
    return doc


def cli(args, state, env, timeout=600):
    return h.run_batchrep([*args, "--state-dir", state], env, timeout=timeout)


def case_documents(t, tmp):
    state = os.path.join(tmp, "state-docs")
    env = h.batchrep_env(NOWHERE)
    local = os.path.join(tmp, "local.csv")
    with open(local, "w") as f:
        f.write("src,k,v\n")
    good_rules = h.write_json(os.path.join(tmp, "good-rules.json"), rules_doc(rule("a", 1)))

    def job(**changes):
        doc = h.job_document(h.object_arn("manifests", "m.csv"), "0123abcd",
                             h.bucket_arn("reports"))
        for path, value in changes.items():
            node = doc
            *parents, last = path.split(".")
            for p in parents:
                node = node[p]
            if value is None:
                del node[last]
            else:
                node[last] = value
        return doc

    docs = [
        ("Operation {\"S3ReplicateObject\": \"yes\"}", job(**{"Operation": {
            "S3ReplicateObject": "yes"}}), "Operation.S3ReplicateObject"),
        ("an S3 manifest without ETag (§1.3: required)", job(**{"Manifest.Location.ETag": None}),
         "Manifest.Location.ETag"),
        ("RoleArn that is no IAM role ARN", job(RoleArn="my-batch-role"), "RoleArn"),
        ("RoleArn of 100 KB (§3.2: at most 2,048)",
         job(RoleArn="arn:aws:iam::123456789012:role/" + "r" * 100_000), "RoleArn"),
    ]
    for name, doc, member in docs:
        path = h.write_json(os.path.join(tmp, "doc.json"), doc)
        res = cli(["create-job", path, "--replication-config", good_rules], state, env)
        t.eq(res.returncode, 2, f"{name}: create-job exits 2")
        t.ok(f": {member}: " in res.stderr, f"{name}: the message names {member} "
                                            f"({res.stderr.strip()[:200]})")
    res = cli(["create-job", h.write_json(os.path.join(tmp, "local-job.json"), job(**{
        "Manifest.Location.ObjectArn": local, "Manifest.Location.ETag": None})),
        "--replication-config", good_rules], state, env)
    t.eq(res.returncode, 0, f"a local manifest needs no ETag: create-job exits 0 "
                            f"({res.stderr.strip()[:200]})")

    long_id = rule("x" * 256, 1)
    configs = [
        ("no Role (§7.1: required)", rules_doc(rule("a", 1), role=None), "Role"),
        ("a duplicate rule ID", rules_doc(rule("a", 1, prefix="x/"), rule("a", 2, "dst2")),
         "Rules[1].ID"),
        ("a negative Priority", rules_doc(rule("a", -1)), "Rules[0].Priority"),
        ("Priority 4294967297 (§7.1: an int; it was cut to 1 and outranked Priority 2)",
         rules_doc(rule("b", 2, prefix="logs/"), rule("a", 4294967297, prefix="logs/app/")),
         "Rules[1].Priority"),
        ("overlapping rules, same destination, equal Priority (§7.2)",
         rules_doc(rule("logs", 3, prefix="logs/"), rule("app", 3, prefix="logs/app/")),
         "Rules[1]"),
        ("a rule ID of 256 characters (§7.1: at most 255)", rules_doc(long_id), "Rules[0].ID"),
    ]
    doc = h.write_json(os.path.join(tmp, "good-job.json"), job())
    for name, cfg, member in configs:
        path = h.write_json(os.path.join(tmp, "rules.json"), cfg)
        res = cli(["create-job", doc, "--replication-config", path], state, env)
        t.eq(res.returncode, 2, f"{name}: create-job exits 2")
        t.ok(f": {member}: " in res.stderr, f"{name}: the message names {member} "
                                            f"({res.stderr.strip()[:200]})")
    path = h.write_json(os.path.join(tmp, "rules.json"), configs[0][1])
    res = cli(["run", doc, "--replication-config", path, "--no-progress"], state, env)
    t.eq(res.returncode, 2, "run with a configuration without Role exits 2")


OLD_SCHEMA = (  # jobs/store.c before the idempotency digests (commit eca0882)
    "CREATE TABLE IF NOT EXISTS jobs ( id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE,"
    " doc TEXT NOT NULL, rules TEXT, status TEXT NOT NULL, priority INTEGER NOT NULL,"
    " total INTEGER NOT NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, terminated_ms INTEGER,"
    " active_ms INTEGER NOT NULL DEFAULT 0, failure_code TEXT, failure_reason TEXT,"
    " status_reason TEXT, suspended_ms INTEGER, suspended_cause TEXT,"
    " generated_manifest TEXT, owner_pid INTEGER, owner_seen_ms INTEGER);"
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, priority);")


def case_idempotency(t, s3, moto, tmp):
    state = os.path.join(tmp, "state-idem")
    env = moto.env()
    h.make_bucket(s3, "dst-i")
    rows = {}
    for name in ("one", "two"):
        vid = s3.put_object(Bucket="src", Key=f"idem/{name}", Body=name.encode())["VersionId"]
        rows[name] = h.upload_manifest(s3, "manifests", f"idem-{name}.csv",
                                       [("src", f"idem/{name}", vid)])
    r1 = h.write_json(os.path.join(tmp, "idem-r1.json"), rules_doc(rule("all", 1, "dst-i")))
    r2 = h.write_json(os.path.join(tmp, "idem-r2.json"), rules_doc(rule("all", 2, "dst-i")))
    d1 = h.job_document(*rows["one"], h.bucket_arn("reports"), prefix="idem",
                        client_token="tok-idem")
    d2 = h.job_document(*rows["two"], h.bucket_arn("reports"), prefix="idem",
                        client_token="tok-idem")
    j1 = h.write_json(os.path.join(tmp, "j1.json"), d1)
    j2 = h.write_json(os.path.join(tmp, "j2.json"), d2)
    j1b = os.path.join(tmp, "j1-reformatted.json")
    with open(j1b, "w") as f:  # the same request: other key order, other spacing
        json.dump(dict(reversed(list(d1.items()))), f, indent=7, sort_keys=False)

    res = cli(["create-job", j1, "--replication-config", r1], state, env)
    if not t.eq(res.returncode, 0, "create-job j1 exits 0"):
        t.diag(res.stderr)
        return
    job_id = json.loads(res.stdout)["JobId"]
    for name, path in (("the same document", j1), ("the same document reformatted", j1b)):
        res = cli(["create-job", path, "--replication-config", r1], state, env)
        t.eq((res.returncode, json.loads(res.stdout or "{}").get("JobId")), (0, job_id),
             f"token reused with {name}: the same job")
    for name, args, what in (
            ("another document", ["create-job", j2, "--replication-config", r1],
             "job document"),
            ("other rules", ["create-job", j1, "--replication-config", r2],
             "replication configuration"),
            ("rules from the bucket instead of a file", ["create-job", j1],
             "replication configuration"),
            ("another document, by run", ["run", j2, "--replication-config", r1,
                                          "--no-progress"], "job document")):
        res = cli(args, state, env)
        t.eq(res.returncode, 1, f"token reused with {name}: exit 1")
        t.ok("IdempotencyException" in res.stderr and '"tok-idem"' in res.stderr
             and what in res.stderr and job_id in res.stderr,
             f"token reused with {name}: IdempotencyException names the token, the job and "
             f"the {what} ({res.stderr.strip()[:240]})")
    jobs = json.loads(cli(["list-jobs"], state, env).stdout)["Jobs"]
    t.eq([(j["JobId"], j["Status"]) for j in jobs], [(job_id, "New")],
         "one job in the catalogue, still New: nothing ran")
    t.eq(h.list_versions(s3, "dst-i"), [], "nothing was replicated by the refused requests")

    res = cli(["run", j1, "--replication-config", r1, "--no-progress"], state, env)
    d = json.loads(res.stdout or '{"Job": {}}')["Job"]
    if not t.eq((res.returncode, d.get("JobId"), d.get("Status")), (0, job_id, "Complete"),
                "run of the same document runs that job to Complete"):
        t.diag(res.stderr[-2000:])
    t.eq([v["Key"] for v in h.list_versions(s3, "dst-i")], ["idem/one"],
         "its own manifest ran (idem/one), not the refused one's")
    left = [k for k in (v["Key"] for v in h.list_versions(s3, "reports"))
            if "batchrep-write-check" in k]
    t.eq(left, [], "the report check's marker left no version and no delete marker")

    # a catalogue from before the digests: its job keeps its token, a new document is refused
    legacy = os.path.join(tmp, "state-legacy")
    os.makedirs(os.path.join(legacy, "jobs"), mode=0o700)
    db = sqlite3.connect(os.path.join(legacy, "batchrep.db"))
    db.executescript(OLD_SCHEMA)
    stored = dict(d1, ClientRequestToken="tok-legacy")
    db.execute("INSERT INTO jobs (id, token, doc, status, priority, created_ms) VALUES "
               "(?, ?, ?, 'New', 10, ?)", ("11111111-2222-4333-8444-555555555555",
                                           "tok-legacy", json.dumps(stored, separators=(",", ":")),
                                           int(time.time() * 1000)))
    db.commit()
    db.close()
    lj = h.write_json(os.path.join(tmp, "legacy.json"), stored)
    lj2 = h.write_json(os.path.join(tmp, "legacy2.json"), dict(d2, ClientRequestToken="tok-legacy"))
    res = cli(["create-job", lj, "--replication-config", r1], legacy, env)
    t.eq((res.returncode, json.loads(res.stdout or "{}").get("JobId")),
         (0, "11111111-2222-4333-8444-555555555555"),
         "old catalogue: the same document returns its job (columns added on open)")
    res = cli(["create-job", lj2, "--replication-config", r1], legacy, env)
    t.ok(res.returncode == 1 and "IdempotencyException" in res.stderr,
         f"old catalogue: another document is refused (exit {res.returncode}, "
         f"{res.stderr.strip()[:160]})")
    cols = [r[1] for r in sqlite3.connect(os.path.join(legacy, "batchrep.db")).execute(
        "PRAGMA table_info(jobs)")]
    t.ok("doc_sha256" in cols and "rules_sha256" in cols,
         "old catalogue: the digest columns were added")


def case_utf8_manifest(t, tmp):
    state = os.path.join(tmp, "state-utf8")
    manifest = os.path.join(tmp, "raw.csv")
    with open(manifest, "wb") as f:  # line 2 holds a raw Latin-1 byte, not UTF-8
        f.write(b"src,caf%C3%A9,v1\nsrc,caf\xe9,v2\n")
    report = os.path.join(tmp, "report-utf8")
    doc = h.job_document(manifest, "x", report)
    rules = h.write_json(os.path.join(tmp, "utf8-rules.json"), rules_doc(rule("a", 1)))
    res = cli(["run", h.write_json(os.path.join(tmp, "utf8.json"), doc), "--replication-config",
               rules, "--no-progress", "--max-attempts", "1"], state, h.batchrep_env(NOWHERE))
    d = json.loads(res.stdout or '{"Job": {}}')["Job"]
    fr = (d.get("FailureReasons") or [{}])[0]
    t.eq((res.returncode, d.get("Status"), fr.get("FailureCode")),
         (3, "Failed", "InvalidManifestContent"),
         "a key that is not UTF-8: exit 3, Failed, InvalidManifestContent")
    t.ok("raw.csv:2: field Key: not UTF-8" in fr.get("FailureReason", ""),
         f"the reason names the file, line and field ({fr.get('FailureReason')})")
    bad = []
    for root, _, files in os.walk(report):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                try:
                    f.read().decode("utf-8")
                except UnicodeDecodeError:
                    bad.append(name)
    t.eq(bad, [], "no report file holds bytes that are not UTF-8")


def case_report_bucket(t, s3, moto, tmp):
    h.make_bucket(s3, "dst-r")
    rows = []
    for i in range(3):
        k = f"rep/{i}"
        rows.append(("src", k, s3.put_object(Bucket="src", Key=k, Body=b"x")["VersionId"]))
    marn, metag = h.upload_manifest(s3, "manifests", "rep.csv", rows)
    rules = h.write_json(os.path.join(tmp, "rep-rules.json"), rules_doc(rule("a", 1, "dst-r")))

    def run(name, report_bucket, env):
        doc = h.job_document(marn, metag, h.bucket_arn(report_bucket), prefix="rep")
        res = cli(["run", h.write_json(os.path.join(tmp, f"{name}.json"), doc),
                   "--replication-config", rules, "--no-progress", "--retry-base-ms", "10"],
                  os.path.join(tmp, f"state-{name}"), env)
        d = json.loads(res.stdout or '{"Job": {}}')["Job"]
        fr = (d.get("FailureReasons") or [{}])[0]
        return res, d, fr

    res, d, fr = run("missing", "no-such-reports", moto.env())
    t.eq((res.returncode, d.get("Status"), fr.get("FailureCode")),
         (3, "Failed", "ReportNotWritable"),
         "a missing report bucket: exit 3, Failed, ReportNotWritable")
    t.ok("no-such-reports" in fr.get("FailureReason", "") and
         "does not exist" in fr.get("FailureReason", ""),
         f"the reason names the bucket ({fr.get('FailureReason')})")
    t.eq((d.get("ProgressSummary", {}).get("TotalNumberOfTasks"), h.list_versions(s3, "dst-r")),
         (0, []), "found in Preparing: no task ran, nothing replicated")

    refuse = Rule("internal", op="PutObject", path_re=r"^/reports/")
    with FaultProxy(moto.url, [refuse]) as proxy:
        res, d, fr = run("unwritable", "reports", h.batchrep_env(proxy.url))
    t.eq((res.returncode, d.get("Status"), fr.get("FailureCode")),
         (3, "Failed", "ReportNotWritable"),
         "a report bucket that refuses PutObject: exit 3, Failed, ReportNotWritable")
    t.ok("PutObject" in fr.get("FailureReason", "") and "reports" in fr.get("FailureReason", ""),
         f"the reason says the test write failed ({fr.get('FailureReason', '')[:200]})")
    t.eq(h.list_versions(s3, "dst-r"), [], "found in Preparing: nothing replicated")


def case_active_time(t, s3, moto, tmp):
    """Run 1 holds its copies 4 s, is killed; run 2 holds them 5 s, then finishes."""
    n_keys, let_through, hold1_s, hold2_s = 60, 20, 4.0, 5.0
    h.make_bucket(s3, "dst-t")
    rows = []
    for i in range(n_keys):
        k = f"t/{i:03d}"
        rows.append(("src", k, s3.put_object(Bucket="src", Key=k, Body=k.encode())["VersionId"]))
    job = h.write_json(os.path.join(tmp, "timed.json"), h.job_document(
        *h.upload_manifest(s3, "manifests", "timed.csv", rows), h.bucket_arn("reports"),
        prefix="timed", client_token="timed"))
    rules = h.write_json(os.path.join(tmp, "timed-rules.json"), rules_doc(rule("a", 1, "dst-t")))
    state = os.path.join(tmp, "state-timed")
    cmd = [h.batchrep_bin(), "run", job, "--replication-config", rules, "--state-dir", state,
           "--no-progress", "--concurrency", "4"]

    def held_for(proxy, p, seconds):
        end = time.time() + 120
        while time.time() < end and p.poll() is None and proxy.held() == 0:
            time.sleep(0.1)
        held = proxy.held() > 0
        time.sleep(seconds)
        return held

    hold = Rule("hold", op="CopyObject", path_re=r"^/dst-t/", after=let_through)
    with FaultProxy(moto.url, [hold]) as proxy:
        p = subprocess.Popen(cmd, env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        held = held_for(proxy, p, hold1_s)
        p.send_signal(signal.SIGKILL)
        p.wait()
        proxy.release()
    t.ok(held, f"run 1: copies held for {hold1_s} s, then killed")
    jobs = json.loads(cli(["list-jobs"], state, moto.env()).stdout)["Jobs"]
    if not t.eq(len(jobs), 1, "one job"):
        return
    d1 = json.loads(cli(["describe-job", "--job-id", jobs[0]["JobId"]], state,
                        moto.env()).stdout)["Job"]
    e1 = d1["ProgressSummary"]["Timers"]["ElapsedTimeInActiveSeconds"]
    t.ok(d1["Status"] == "Active" and e1 >= hold1_s - 1,
         f"after the kill: Active, {e1} s active saved (>= {hold1_s - 1:.0f})")

    with FaultProxy(moto.url, [Rule("hold", op="CopyObject", path_re=r"^/dst-t/")]) as proxy:
        started = time.time()
        p = subprocess.Popen(cmd, env=h.batchrep_env(proxy.url), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        held = held_for(proxy, p, hold2_s)
        proxy.release()
        out, err = p.communicate(timeout=600)
        wall2 = time.time() - started
    t.ok(held, f"run 2 (the resume): copies held for {hold2_s} s")
    if not t.eq(p.returncode, 0, "run 2 completes the job"):
        t.diag(err[-1500:])
        return
    d2 = json.loads(out)["Job"]
    e2 = d2["ProgressSummary"]["Timers"]["ElapsedTimeInActiveSeconds"]
    t.ok(e1 + hold2_s - 1 <= e2 <= e1 + wall2 + 1,
         f"ElapsedTimeInActiveSeconds {e2} = run 1's {e1} + run 2's (held {hold2_s} s, "
         f"ran {wall2:.1f} s)")


def main():
    t = h.Tap()
    only = os.environ.get("VALIDATION_CASES", "")
    with tempfile.TemporaryDirectory() as tmp:
        if not only or "docs" in only:
            case_documents(t, tmp)
        if not only or "utf8" in only:
            case_utf8_manifest(t, tmp)
        with h.Moto() as moto:
            s3 = moto.client()
            for b in ("src", "reports", "manifests"):
                h.make_bucket(s3, b)
            for name, fn in (("idem", case_idempotency), ("report", case_report_bucket),
                             ("time", case_active_time)):
                if not only or name in only.split(","):
                    started = time.monotonic()
                    fn(t, s3, moto, tmp)
                    t.diag(f"case {name}: {time.monotonic() - started:.1f} s")
    t.done()


if __name__ == "__main__":
    main()
