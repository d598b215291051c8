#!/usr/bin/env python3
"""test_hostile_servers.py — hung, slow, lying and untrusted servers (issue 15 items 4, 5, 11).

batchrep talks to tests/integration/hostile_server.py, which relays to moto whatever a case
does not make it misbehave on. Deadlines are set small with the options a user has
(--request-timeout-ms 1000, --stall-timeout-s 2, --connect-timeout-ms 1000,
--max-manifest-bytes), so each bound below is generous next to what the fix costs (seconds)
and far below what the old code cost (60 s per attempt on a silent server, 300 s on a
trickle). Nothing here depends on the machine's speed: servers that hang hold until the
test releases them, rates are set by the server's own sleeps.

Item 4, downloads (the manifest object; Inventory data files and report-as-manifest files
take the same path, mf_fetch_object):
    endless body            refused at --max-manifest-bytes; the server sent little more
    longer than announced   a chunked body past its Content-Length is refused
    broken mid-body         resumed with Range from the byte it stopped at and If-Match on
                            the ETag; the job completes
    replaced mid-download   the resume gets 412: the job fails naming the change
    trickle (2 bytes/s)     cut by the stall detector, 6 attempts (S3_RETRY_BLOCKING), job Failed in seconds
    slow but steady         2 KiB/s for ~3 s, longer than --request-timeout-ms: completes
                            (no whole deadline on a download)
    kill -9 mid-download    the worker that takes over leaves no *.part* file
Item 5, the engine's requests:
    HEAD never answered     each row "timeout: no answer from the server within 1 s
                            (HeadObject)", the job ends in seconds
    listing trickles        rows say timeout (ListObjectVersions), not "malformed"
    TLS never handshaken    "timeout: could not connect to the server (TCP and TLS
                            handshake) within 1 s (GetObject)"
Item 11, TLS:
    self-signed endpoint    the failure says "untrusted TLS certificate" and AWS_CA_BUNDLE
    AWS_CA_BUNDLE missing / garbage   exit 2 before any job exists, naming the variable and
                            the file (run and worker)
    AWS_CA_BUNDLE = the certificate   the handshake succeeds (the server is then asked)
"""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from hostile_server import (HostileServer, endless, longer_than_announced, never,  # noqa: E402
                            s3_object, self_signed_cert, trickle)

RULES = {"Role": "arn:aws:iam::123456789012:role/r", "Rules": [
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
     "DeleteMarkerReplication": {"Status": "Enabled"},
     "Destination": {"Bucket": "arn:aws:s3:::dst"}}]}
FAST = ["--request-timeout-ms", "1000", "--stall-timeout-s", "2", "--connect-timeout-ms",
        "1000", "--max-attempts", "2", "--retry-base-ms", "10", "--retry-cap-ms", "100",
        "--no-progress"]
BOUND_S = 60  # every case that hangs on purpose must end well within this


class Env:
    def __init__(self, moto, tmp):
        self.moto, self.tmp, self.s3 = moto, tmp, moto.client()
        self.rules = h.write_json(os.path.join(tmp, "rules.json"), RULES)
        self.n = 0
        self.versions = {}
        for b in ("src", "dst", "reports", "manifests"):
            h.make_bucket(self.s3, b)
        for k in ("a", "b", "c"):
            self.versions[k] = h.put_versions(self.s3, "src", k, [f"{k} old", f"{k} new"],
                                              separate_s=False)

    def rows(self, old=False):
        """One row per key: its newest version, or (old) the one before, which makes the
        engine list the key's versions (the HEAD shows another current version)."""
        return [("src", k, v[0 if old else 1]["VersionId"]) for k, v in self.versions.items()]

    def job(self, manifest_key, data_or_etag, local_report=False):
        """A job document for s3://manifests/<manifest_key>; its ETag is the MD5 of data (or
        the string given); the report goes to the bucket "reports", or with local_report to
        a local folder (Preparing then checks no report bucket: the manifest's GET is the
        first request). Returns (job path, state dir)."""
        self.n += 1
        etag = (h.md5_hex(data_or_etag) if isinstance(data_or_etag, bytes)
                else data_or_etag.strip('"'))
        report = (os.path.join(self.tmp, f"report{self.n}") if local_report
                  else h.bucket_arn("reports"))
        doc = h.job_document(h.object_arn("manifests", manifest_key), etag, report,
                             prefix=f"r{self.n}")
        return (h.write_json(os.path.join(self.tmp, f"job{self.n}.json"), doc),
                os.path.join(self.tmp, f"state{self.n}"))

    def run(self, url, jpath, state, extra=(), env_extra=None, timeout=BOUND_S * 3):
        """batchrep run through url; returns (CompletedProcess or None on timeout, seconds,
        DescribeJob Job or {})."""
        t0 = time.monotonic()
        try:
            res = h.run_batchrep(["run", jpath, "--replication-config", self.rules,
                                  "--state-dir", state, *FAST, *extra],
                                 h.batchrep_env(url, env_extra), timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - t0, {}
        secs = time.monotonic() - t0
        try:
            job = json.loads(res.stdout)["Job"]
        except (ValueError, KeyError):
            job = {}
        return res, secs, job

    def rows_of(self, job):
        rep = h.read_report(self.s3, "reports", job["Report"]["Prefix"], job["JobId"])
        return rep["rows"]["succeeded"], rep["rows"]["failed"]


def reason(job):
    fr = job.get("FailureReasons") or [{}]
    return f"{fr[0].get('FailureCode', '')}: {fr[0].get('FailureReason', '')}"


def part_files(state):
    return sorted(p for p in glob.glob(os.path.join(state, "**", "*.part*"), recursive=True))


def ended(t, res, secs, name):
    """The run ended (no timeout) within BOUND_S."""
    ok = t.ok(res is not None and secs < BOUND_S,
              f"{name}: batchrep ended in {secs:.1f} s (bound {BOUND_S} s)")
    if res is not None and not ok:
        t.diag(res.stderr[-1500:])
    return ok


# ---- item 4: downloads ---------------------------------------------------------------------

def case_endless(t, e):
    with HostileServer(e.moto.url) as hs:
        src = hs.route(endless(limit_bytes=256 << 20), method="GET", path="/manifests/endless.csv")
        jpath, state = e.job("endless.csv", '"endless"')
        res, secs, job = e.run(hs.url, jpath, state, ["--max-manifest-bytes", str(1 << 20)])
        hs.release()
    ended(t, res, secs, "endless manifest body")
    t.ok(res is not None and res.returncode == 3 and "limit of 1048576" in reason(job)
         and "--max-manifest-bytes" in reason(job),
         f"endless body: the job Failed at the limit ({reason(job)[:200]})")
    t.ok(src.sent < 64 << 20, f"endless body: the server sent {src.sent} bytes, not 256 MiB")
    big = [p for p in glob.glob(os.path.join(state, "**", "*"), recursive=True)
           if os.path.isfile(p) and os.path.getsize(p) > (1 << 20)]
    t.eq(big, [], "endless body: no file over the limit in the state folder")
    t.eq(part_files(state), [], "endless body: no *.part* file left")


def case_longer(t, e):
    with HostileServer(e.moto.url) as hs:
        hs.route(longer_than_announced(100, 10 << 20), method="GET", path="/manifests/liar.csv")
        jpath, state = e.job("liar.csv", '"liar"')
        res, secs, job = e.run(hs.url, jpath, state)
    ended(t, res, secs, "body longer than announced")
    t.ok(res is not None and res.returncode == 3
         and "longer than the 100 bytes its Content-Length announced" in reason(job),
         f"longer than announced: refused ({reason(job)[:200]})")


def case_resume(t, e):
    data = h.manifest_csv(e.rows())
    cut = len(data) // 2
    with HostileServer(e.moto.url) as hs:
        obj = hs.route(s3_object(data, cut_at={1: cut}), method="GET", path="/manifests/cut.csv")
        jpath, state = e.job("cut.csv", data)
        res, secs, job = e.run(hs.url, jpath, state)
        gets = hs.requests(op="GetObject")
    gets = [g for g in gets if g["target"].startswith("/manifests/cut.csv")]
    ended(t, res, secs, "download broken mid-body")
    t.ok(res is not None and res.returncode == 0 and job.get("Status") == "Complete",
         f"broken download: the job completes ({job.get('Status')}, {reason(job)[:200]})")
    etag = obj.state["etag"]
    seen = [(g["headers"].get("range"), g["headers"].get("if-match"), g["status"]) for g in gets]
    t.ok(len(gets) == 2 and gets[0].get("cut") and seen[0] == (None, None, 200)
         and seen[1] == (f"bytes={cut}-", etag, 206),
         f"broken download: resumed with Range: bytes={cut}- and If-Match: {etag} ({seen})")
    if job.get("Status") == "Complete":
        ok, bad = e.rows_of(job)
        t.eq((len(ok), len(bad)), (3, 0), "broken download: every row of the manifest ran once")
    t.eq(part_files(state), [], "broken download: no *.part* file left")


def case_replaced(t, e):
    data = h.manifest_csv(e.rows())
    with HostileServer(e.moto.url) as hs:
        hs.route(s3_object(data, cut_at={1: 20}, replaced_after=1), method="GET",
                 path="/manifests/replaced.csv")
        jpath, state = e.job("replaced.csv", data)
        res, secs, job = e.run(hs.url, jpath, state)
        statuses = [g["status"] for g in hs.requests(op="GetObject")
                    if g["target"].startswith("/manifests/replaced.csv")]
    ended(t, res, secs, "object replaced mid-download")
    t.ok(res is not None and res.returncode == 3 and "changed during the download" in reason(job)
         and statuses == [200, 412],
         f"replaced mid-download: If-Match refused, the job Failed ({statuses}, "
         f"{reason(job)[:160]})")


BLOCKING_ATTEMPTS = 6  # S3_RETRY_BLOCKING in s3/s3.h


def case_trickle_download(t, e):
    data = h.manifest_csv(e.rows())
    with HostileServer(e.moto.url) as hs:
        hs.route(trickle(200, data, bytes_per_s=2, content_type="text/csv"), method="GET",
                 path="/manifests/trickle.csv")
        jpath, state = e.job("trickle.csv", data)
        res, secs, job = e.run(hs.url, jpath, state)
        n = len(hs.requests(op="GetObject"))
        hs.release()
    ended(t, res, secs, "manifest trickling at 2 bytes/s")
    t.ok(res is not None and res.returncode == 3 and "timeout: the transfer stalled" in reason(job)
         and n == BLOCKING_ATTEMPTS,
         f"trickle: cut by the stall detector, each of the {n} attempts of a blocking "
         f"request (S3_RETRY_BLOCKING: {BLOCKING_ATTEMPTS}) ({reason(job)[:200]})")


def case_slow_but_steady(t, e):
    # ~9 KiB at 2 KiB/s: four times --request-timeout-ms, above the stall floor (1 KiB/s)
    rows = e.rows() + [("src", "no-such-key", f"v{i:04d}") for i in range(400)]
    data = h.manifest_csv(rows)
    with HostileServer(e.moto.url) as hs:
        hs.route(trickle(200, data, bytes_per_s=2048, content_type="text/csv"), method="GET",
                 path="/manifests/slow.csv")
        jpath, state = e.job("slow.csv", data)
        res, secs, job = e.run(hs.url, jpath, state)
    t.ok(res is not None and res.returncode == 0 and job.get("Status") == "Complete"
         and job.get("ProgressSummary", {}).get("TotalNumberOfTasks") == len(rows),
         f"slow but steady download ({len(data)} bytes at 2 KiB/s, {secs:.1f} s): the job "
         f"completes ({job.get('Status')}, {reason(job)[:160]})")


def case_kill_mid_download(t, e):
    data = h.manifest_csv(e.rows())
    jpath, state = e.job("held.csv", data)
    res = h.run_batchrep(["create-job", jpath, "--replication-config", e.rules,
                          "--state-dir", state], e.moto.env())
    if not t.eq(res.returncode, 0, "kill -9: create-job"):
        t.diag(res.stderr)
        return
    with HostileServer(e.moto.url) as hs:
        hs.route(s3_object(data, hold_at={1: 25}), method="GET", path="/manifests/held.csv")
        p = subprocess.Popen([h.batchrep_bin(), "worker", "--until-idle", "--state-dir", state,
                              *FAST, "--stall-timeout-s", "600"],
                             env=h.batchrep_env(hs.url), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        end, parts, held = time.monotonic() + BOUND_S, [], False
        while time.monotonic() < end and p.poll() is None:
            held = any(x.get("held") for x in hs.log)
            parts = part_files(state)
            if held and parts:
                break
            time.sleep(0.05)
        killed = p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.wait()
        hs.release()
    t.ok(killed and held and parts,
         f"kill -9: killed mid-download (the GET held after 25 bytes), leaving "
         f"{[os.path.basename(q) for q in parts]}")
    with HostileServer(e.moto.url) as hs:
        hs.route(s3_object(data), method="GET", path="/manifests/held.csv")
        res = h.run_batchrep(["worker", "--until-idle", "--state-dir", state, *FAST],
                             h.batchrep_env(hs.url), timeout=BOUND_S * 3)
    t.eq(res.returncode, 0, "kill -9: the next worker takes the job over")
    t.eq(part_files(state), [], "kill -9: no *.part* file left in the job's folder")


# ---- item 5: the engine's requests ---------------------------------------------------------

def task_rows(t, e, job, name):
    if job.get("Status") != "Complete":
        t.ok(False, f"{name}: the job completes ({job.get('Status')}, {reason(job)[:200]})")
        return []
    ok, bad = e.rows_of(job)
    t.eq((len(ok), len(bad)), (0, 3), f"{name}: 3 failed rows")
    return bad


def case_head_never(t, e):
    data = h.manifest_csv(e.rows())
    with HostileServer(e.moto.url) as hs:
        hs.route(s3_object(data), method="GET", path="/manifests/m.csv")
        hs.route(never(), op="HeadObject")
        jpath, state = e.job("m.csv", data)
        res, secs, job = e.run(hs.url, jpath, state)
        heads = len(hs.requests(op="HeadObject"))
        hs.release()
    ended(t, res, secs, "HEAD never answered")
    bad = task_rows(t, e, job, "HEAD never answered")
    want = "timeout: no answer from the server within 1 s (HeadObject)"
    t.ok(bad and all(r[6] == want and r[4] in ("", "500") for r in bad) and heads == 6,
         f"HEAD never answered: each row says \"{want}\" after 2 attempts ({heads} HEADs; "
         f"{[r[4:] for r in bad][:1]})")


def case_list_trickle(t, e):
    data = h.manifest_csv(e.rows(old=True))
    listing = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListVersionsResult xmlns="http://s3.'
               b'amazonaws.com/doc/2006-03-01/"><Name>src</Name>' + b" " * 4000
               + b"</ListVersionsResult>")
    with HostileServer(e.moto.url) as hs:
        hs.route(s3_object(data), method="GET", path="/manifests/old.csv")
        hs.route(trickle(200, listing, bytes_per_s=2), op="ListObjectVersions")
        jpath, state = e.job("old.csv", data)
        res, secs, job = e.run(hs.url, jpath, state)
        hs.release()
    ended(t, res, secs, "listing trickling at 2 bytes/s")
    bad = task_rows(t, e, job, "listing trickles")
    t.ok(bad and all(r[6].startswith("timeout: the answer was not complete within 1 s "
                                     "(ListObjectVersions") and "malformed" not in r[6]
                     for r in bad),
         f"listing trickles: rows say timeout, not malformed ({[r[4:] for r in bad][:1]})")


def case_tls_silent(t, e):
    data = h.manifest_csv(e.rows())
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:  # never accepts
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        jpath, state = e.job("m.csv", data, local_report=True)
        res, secs, job = e.run(url, jpath, state)
    ended(t, res, secs, "TLS handshake never answered")
    t.ok(res is not None and res.returncode == 3 and
         "timeout: could not connect to the server (TCP and TLS handshake) within 1 s "
         "(GetObject)" in reason(job), f"TLS never handshaken: a connect timeout "
                                       f"({reason(job)[:200]})")


# ---- item 11: TLS ----------------------------------------------------------------------------

def case_tls(t, e):
    certdir = os.path.join(e.tmp, "tls")
    os.makedirs(certdir)
    cert, key = self_signed_cert(certdir)
    garbage = os.path.join(certdir, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                "-----END CERTIFICATE-----\n")
    missing = os.path.join(certdir, "missing.pem")
    data = h.manifest_csv(e.rows())
    with HostileServer(tls=(cert, key)) as hs:  # answers 404 NoSuchKey to everything
        jpath, state = e.job("m.csv", data, local_report=True)
        res, secs, job = e.run(hs.url, jpath, state)
        t.ok(res is not None and res.returncode == 3 and "untrusted TLS certificate" in reason(job)
             and "AWS_CA_BUNDLE" in reason(job),
             f"self-signed: the failure names an untrusted certificate and AWS_CA_BUNDLE "
             f"({reason(job)[:220]})")
        t.ok(any("tls_error" in x for x in hs.log), "self-signed: the client refused the handshake")
        for name, path in (("missing", missing), ("garbage", garbage)):
            for verb in ("run", "worker"):
                jpath, state = e.job("m.csv", data)
                args = ([verb, jpath, "--replication-config", e.rules] if verb == "run"
                        else [verb, "--until-idle"])
                res = h.run_batchrep([*args, "--state-dir", state, "--no-progress"],
                                     h.batchrep_env(hs.url, {"AWS_CA_BUNDLE": path}), timeout=60)
                lj = h.run_batchrep(["list-jobs", "--state-dir", state], h.batchrep_env(hs.url))
                jobs = json.loads(lj.stdout).get("Jobs", []) if lj.returncode == 0 else []
                t.ok(res.returncode == 2 and "AWS_CA_BUNDLE" in res.stderr and path in res.stderr
                     and jobs == [],
                     f"AWS_CA_BUNDLE {name} ({verb}): exit {res.returncode}, no job, "
                     f"\"{res.stderr.strip()[:200]}\"")
        n_before = len(hs.log)
        jpath, state = e.job("m.csv", data, local_report=True)
        res, secs, job = e.run(hs.url, jpath, state, env_extra={"AWS_CA_BUNDLE": cert})
        relayed = [x for x in hs.log[n_before:] if "op" in x]
        t.ok(res is not None and res.returncode == 3 and "404" in reason(job) and relayed
             and "TLS" not in reason(job),
             f"AWS_CA_BUNDLE = the certificate: the handshake succeeds, the server's 404 is "
             f"reported ({reason(job)[:160]})")


def main():
    t = h.Tap()
    with h.Moto() as moto, tempfile.TemporaryDirectory() as tmp:
        e = Env(moto, tmp)
        for case in (case_endless, case_longer, case_resume, case_replaced,
                     case_trickle_download, case_slow_but_steady, case_kill_mid_download,
                     case_head_never, case_list_trickle, case_tls_silent, case_tls):
            if sys.argv[1:] and case.__name__ not in sys.argv[1:]:
                continue  # `python3 test_hostile_servers.py case_tls ...` runs only those
            t.diag(f"--- {case.__name__}")
            case(t, e)
    t.done()


if __name__ == "__main__":
    main()
