"""harness.py — the shared library of batchrep's integration tests.

Every integration test is a Python 3.11 program (standard library + boto3) that starts its own
servers on 127.0.0.1, runs the real `batchrep` binary, checks the destination bucket and the
completion report, prints TAP lines (`ok N - name` / `not ok N - name`) and a closing
`N passed, N failed` line, and exits 1 when anything failed. tests/run-integration.sh runs each
one with `timeout 900` and these variables:

    BATCHREP_BIN    absolute path of the batchrep binary   (default <repo>/build/bin/batchrep)
    BATCHREP_BUILD  absolute path of the build folder      (default <repo>/build)
    BATCHREP_SRC    repository root                        (default: found from this file)

What is here:
    Tap                       TAP output: ok, eq, diag, done
    free_port()               a free TCP port on 127.0.0.1
    Moto(auth=False)          a moto_server on 127.0.0.1, stopped by PID on exit, always
    Postgres()                a private PostgreSQL server on 127.0.0.1 (the shared catalogue),
                              stopped by PID on exit, always
    s3_client(url, ...)       a boto3 S3 client: path-style, us-east-1, no retries
    make_bucket, put_versions, list_versions
    batchrep_env, run_batchrep
    job_document, write_json, bucket_arn, object_arn, manifest_csv, upload_manifest
    read_report, parse_csv
    url_encode_key, url_decode_key

Nothing here talks to anything but 127.0.0.1: proxies from the environment are switched off for
this process and for the batchrep environment.
"""

from __future__ import annotations

import atexit
import csv
import datetime as _dt
import glob
import hashlib
import http.client
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

import boto3
import botocore.exceptions
from botocore.config import Config

REPO_ROOT = os.environ.get("BATCHREP_SRC") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("BATCHREP_BUILD") or os.path.join(REPO_ROOT, "build")
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

# Never send test traffic through a proxy a machine may have configured: everything is local.
for _v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_v, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

# `timeout` ends a test with SIGTERM: turn it into SystemExit so that `with Moto()` and
# `finally:` blocks still stop the servers the test started.
if hasattr(signal, "SIGTERM"):
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    except ValueError:  # not the main thread
        pass


# ---------------------------------------------------------------------------------------------
# TAP
# ---------------------------------------------------------------------------------------------

class Tap:
    """TAP-style output: `ok N - name` / `not ok N - name`, `# ...` diagnostics, and a closing
    `N passed, N failed` line from done(), which exits 1 when any check failed."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, cond, name: str) -> bool:
        """Records one check; returns bool(cond) so a test can stop a case early."""
        cond = bool(cond)
        n = self.passed + self.failed + 1
        print(f"{'ok' if cond else 'not ok'} {n} - {name}", flush=True)
        if cond:
            self.passed += 1
        else:
            self.failed += 1
        return cond

    def eq(self, got, want, name: str) -> bool:
        """ok(got == want); on failure prints both values as diagnostics."""
        good = self.ok(got == want, name)
        if not good:
            self.diag(f"  got:  {got!r}")
            self.diag(f"  want: {want!r}")
        return good

    def diag(self, msg) -> None:
        """Prints `# msg`, one `# ` per line."""
        for line in str(msg).splitlines() or [""]:
            print(f"# {line}", flush=True)

    def done(self):
        """Prints `N passed, N failed` and exits (1 if anything failed)."""
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        sys.exit(1 if self.failed else 0)


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent(cmd: list[str]) -> list[str]:
    """cmd wrapped so the child gets SIGTERM if the test process dies, even by SIGKILL
    (`timeout -k`), and no server outlives a killed test: util-linux `setpriv --pdeathsig`,
    which then execs cmd (same PID). Not preexec_fn: it is unsafe once threads run (a
    FaultProxy). Note the "parent" is the thread that started the child."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else list(cmd)


def stop_pid(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stops one child by its PID: SIGTERM, wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        pass


class Moto:
    """A moto_server on 127.0.0.1:<free port>, as a context manager.

        with Moto() as m:                 # m.url, m.port, m.pid, m.log_path
            s3 = m.client()               # = s3_client(m.url, m.access_key, m.secret_key)

    auth=False: moto accepts any credentials and any signature; access_key/secret_key are
    'testing'/'testing'. auth=True: the server starts with INITIAL_NO_AUTH_ACTION_COUNT=3, and
    those 3 free actions create an IAM user, its access key and an inline policy allowing
    s3:* and iam:* (test-servers.md); from then on SigV4 is checked and .access_key /
    .secret_key are that user's. The readiness probe uses /moto-api/, which is not an
    action and does not use up the free count.

    moto 5.2.1 with auth=True rejects (403 SignatureDoesNotMatch, even from boto3) any
    request whose key holds a character that must be percent-encoded, except space: `+ % '
    ( ) * = , ; : @ ! $ &` and non-ASCII all fail. Use plain keys (letters, digits, - . _ ~ /
    space) with auth=True; test tricky keys with auth=False.

    Output goes to <tmpdir>/moto.log (kept, with the temp dir, when BATCHREP_KEEP_TMP is set;
    log_tail() reads it for diagnostics). The server is always stopped by its PID on exit.
    A fresh server per test: moto slows down as versions pile up.
    """

    def __init__(self, auth: bool = False, start_timeout_s: float = 30.0):
        self.auth = auth
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.tmpdir: str | None = None
        self.log_path: str | None = None
        self.port: int | None = None
        self.url: str | None = None
        self.access_key = "testing"
        self.secret_key = "testing"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> "Moto":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _command(self, port: int) -> list[str]:
        exe = shutil.which("moto_server")
        if exe:
            return [exe, "-H", "127.0.0.1", "-p", str(port)]
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]

    def start(self) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="batchrep-moto-")
        self.log_path = os.path.join(self.tmpdir, "moto.log")
        env = dict(os.environ)
        if self.auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        else:
            env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        last_error = ""
        for _attempt in range(3):  # another process may take the port between probe and bind
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    die_with_parent(self._command(self.port)), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, env=env)
            if self._wait_ready():
                break
            last_error = self.log_tail()
            stop_pid(self.proc)
            self.proc = None
        else:
            raise RuntimeError(f"moto_server did not start; log tail:\n{last_error}")
        if self.auth:
            self._create_user()

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/moto-api/data.json")
                conn.getresponse().read()
                conn.close()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def _create_user(self) -> None:
        iam = boto3.client("iam", endpoint_url=self.url, region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing",
                           config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        iam.create_user(UserName="batchrep")
        key = iam.create_access_key(UserName="batchrep")["AccessKey"]
        iam.put_user_policy(UserName="batchrep", PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"}]}))
        self.access_key = key["AccessKeyId"]
        self.secret_key = key["SecretAccessKey"]

    def client(self, **kw):
        """s3_client for this server with its credentials."""
        return s3_client(self.url, self.access_key, self.secret_key, **kw)

    def env(self, extra: dict | None = None) -> dict:
        """batchrep_env for this server with its credentials."""
        return batchrep_env(self.url, extra, key=self.access_key, secret=self.secret_key)

    def log_tail(self, n_lines: int = 40) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "".join(f.readlines()[-n_lines:])
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        try:
            if self.proc is not None:
                stop_pid(self.proc)
        finally:
            self.proc = None
            if self.tmpdir and not os.environ.get("BATCHREP_KEEP_TMP"):
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None


class Postgres:
    """A private PostgreSQL server (Debian's, 15 here) on 127.0.0.1:<free port>, in a temporary
    directory, as a context manager:

        with Postgres() as pg:            # pg.url, pg.port, pg.pid, pg.log_path
            pg.psql("SELECT 1")           # CompletedProcess; .stdout unaligned, tuples only

    url is postgresql://postgres@127.0.0.1:PORT/postgres: trust authentication for 127.0.0.1
    (any password is accepted), except for the users hba_extra names, e.g.
    ["host all pw_user 127.0.0.1/32 scram-sha-256"] (lines put before the trust line).
    The binaries are found with `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin. initdb and postgres refuse to run as root: as root they run as
    the system user `postgres` (`runuser -u postgres --`; Debian's postgresql package creates
    it), which then owns the temporary directory. The server: listen_addresses 127.0.0.1,
    unix_socket_directories the temporary directory, fsync and synchronous_commit off (a test
    server: fast, not durable), max_connections 200. pg_ctl starts it and waits until it
    accepts connections; stop() signals the postmaster by the PID in postmaster.pid (SIGINT:
    PostgreSQL's fast shutdown; SIGKILL after 30 s) and waits for it to exit; restart() stops
    and starts it on the same port and data (how a test makes an outage). It is always
    stopped on exit (the context manager, and atexit for a test that forgets); the
    temporary directory is removed unless BATCHREP_KEEP_TMP is set.
    """

    def __init__(self, hba_extra: list[str] | None = None, start_timeout_s: float = 60.0):
        self.hba_extra = list(hba_extra or [])
        self.start_timeout_s = start_timeout_s
        self.tmpdir: str | None = None
        self.data: str | None = None
        self.log_path: str | None = None
        self.port: int | None = None
        self.url: str | None = None
        self._pid: int | None = None
        self.bindir = self.find_bindir()

    @staticmethod
    def find_bindir() -> str:
        try:
            d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
            if d and os.path.exists(os.path.join(d, "initdb")):
                return d
        except (OSError, subprocess.SubprocessError):
            pass
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                       key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
        if not found:
            raise RuntimeError("PostgreSQL's initdb not found (Debian: apt-get install postgresql)")
        return os.path.dirname(found[-1])

    def _as_server_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (first line of postmaster.pid), None when it is not running."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError, TypeError):
            return self._pid

    def __enter__(self) -> "Postgres":
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def start(self) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="batchrep-pg-")
        self.data = os.path.join(self.tmpdir, "data")
        self.log_path = os.path.join(self.tmpdir, "postgres.log")
        atexit.register(self.cleanup)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
        res = subprocess.run(self._as_server_user(
            [os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"]),
            capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed: {res.stdout}{res.stderr}")
        hba = ["local all all trust", *self.hba_extra, "host all all 127.0.0.1/32 trust"]
        self._write_as_server_user(os.path.join(self.data, "pg_hba.conf"), "\n".join(hba) + "\n")
        last = ""
        for _attempt in range(3):  # another process may take the port between probe and bind
            self.port = free_port()
            self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            conf = (f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.tmpdir}'\nfsync = off\n"
                    f"synchronous_commit = off\nfull_page_writes = off\n"
                    f"max_connections = 200\n")
            self._write_as_server_user(os.path.join(self.data, "postgresql.auto.conf"), conf)
            if self._pg_ctl_start():
                return
            last = self.log_tail()
        raise RuntimeError(f"PostgreSQL did not start; log tail:\n{last}")

    def _write_as_server_user(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _pg_ctl_start(self) -> bool:
        res = subprocess.run(self._as_server_user(
            [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log_path, "-w",
             "-t", str(int(self.start_timeout_s)), "start"]),
            capture_output=True, text=True, timeout=self.start_timeout_s + 30)
        self._pid = self.pid if res.returncode == 0 else None
        return res.returncode == 0

    def stop(self, grace_s: float = 30.0) -> None:
        """Stops the server by its PID (SIGINT, then SIGKILL after grace_s) and waits for the
        process to be gone. A no-op when it is not running."""
        pid = self.pid
        self._pid = None
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        # the postmaster removes postmaster.pid as it exits; a killed one leaves it
        try:
            os.unlink(os.path.join(self.data, "postmaster.pid"))
        except OSError:
            pass

    def restart(self, down_s: float = 0.0) -> None:
        """stop(), down_s seconds of outage, then start again on the same port with the same
        data."""
        self.stop()
        time.sleep(down_s)
        if not self._pg_ctl_start():
            raise RuntimeError(f"PostgreSQL did not restart; log tail:\n{self.log_tail()}")

    def psql(self, sql: str, url: str | None = None, timeout: float = 60):
        """Runs one SQL text with psql (ON_ERROR_STOP, unaligned, tuples only)."""
        return subprocess.run([os.path.join(self.bindir, "psql"), url or self.url, "-X", "-q",
                               "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                              capture_output=True, text=True, timeout=timeout)

    def log_tail(self, n_lines: int = 40) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "".join(f.readlines()[-n_lines:])
        except (OSError, TypeError):
            return ""

    def cleanup(self) -> None:
        try:
            if self.data:
                self.stop()
        finally:
            if self.tmpdir and not os.environ.get("BATCHREP_KEEP_TMP"):
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None
                self.data = None


def s3_client(url: str, key: str = "testing", secret: str = "testing", retries: int = 0,
              timeout_s: float = 60.0):
    """A boto3 S3 client for url: path-style addressing, region us-east-1, `retries` retries
    (default none: a test sees every error exactly once; botocore's own `max_attempts: 1`
    would mean one retry, so total_max_attempts is used)."""
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=key, aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"},
                      retries={"total_max_attempts": retries + 1, "mode": "standard"},
                      connect_timeout=timeout_s, read_timeout=timeout_s))


# ---------------------------------------------------------------------------------------------
# Buckets and versions
# ---------------------------------------------------------------------------------------------

def make_bucket(s3, name: str, versioned: bool = True, object_lock: bool = False) -> str:
    """Creates bucket `name` (us-east-1); versioning Enabled when versioned or object_lock
    (an Object Lock bucket is always versioned). Returns the name."""
    if object_lock:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        s3.create_bucket(Bucket=name)
    if versioned or object_lock:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


DELETE = None  # in put_versions' list: make a delete marker here


def put_versions(s3, bucket: str, key: str, bodies, separate_s: bool | None = None,
                 **put_kwargs) -> list[dict]:
    """Creates versions of one key in order, oldest first. Each item of `bodies` is bytes or
    str (a PutObject with **put_kwargs, e.g. Metadata=, ContentType=, Tagging=,
    StorageClass=) or None / DELETE (a DeleteObject: a delete marker).

    Returns [{'VersionId', 'IsDeleteMarker', 'Body', 'ETag'}] oldest first.

    moto reports LastModified to the second, and lists all Versions before all DeleteMarkers,
    so a version and a delete marker of one key made in the same second cannot be put back in
    order from a listing (see list_versions). To keep the order readable, put_versions waits
    for the wall clock to pass into the next second whenever it switches between a version
    and a delete marker (separate_s=None, the default), before every item (True), or never
    (False). Waiting until the second after the previous response has ended is enough: moto
    stamps an object while handling its request, on the same clock."""
    out = []
    prev_kind = None
    prev_end = 0.0
    for body in bodies:
        kind = "dm" if body is None else "v"
        wait = separate_s is True or (separate_s is None and prev_kind not in (None, kind))
        if wait and out:
            next_second = int(prev_end) + 1
            while time.time() < next_second + 0.01:
                time.sleep(max(0.0, next_second + 0.01 - time.time()))
        if body is None:
            r = s3.delete_object(Bucket=bucket, Key=key)
            out.append({"VersionId": r.get("VersionId"), "IsDeleteMarker": True,
                        "Body": None, "ETag": None})
        else:
            data = body.encode() if isinstance(body, str) else body
            r = s3.put_object(Bucket=bucket, Key=key, Body=data, **put_kwargs)
            out.append({"VersionId": r.get("VersionId"), "IsDeleteMarker": False,
                        "Body": data, "ETag": r.get("ETag")})
        prev_kind = kind
        prev_end = time.time()
    return out


def list_versions(s3, bucket: str, key: str | None = None, prefix: str | None = None,
                  strict: bool = False) -> list[dict]:
    """All versions and delete markers of a bucket (or of one exact key, or of a prefix),
    merged into one list in the order the engine reasons in: keys in ascending order (code
    points = UTF-8 bytes, as S3 lists them) and, within a key, newest first.

    Each item: {'Key', 'VersionId', 'IsLatest', 'IsDeleteMarker', 'LastModified' (datetime),
    'ETag', 'Size', 'StorageClass'} (the last three None for delete markers).

    Why the merge is not trivial on moto (5.2.1):
      * ListObjectVersions returns every <Version> before every <DeleteMarker>; each of the two
        lists is in the right order (key, then newest first: moto sorts on the full
        microsecond timestamp), but their interleaving is lost.
      * LastModified is printed to the second (`2024-01-01T10:00:00.000Z`).
    So items are ordered by (Key, LastModified descending) and, for equal seconds, IsLatest
    first, then listing order (versions before delete markers). That is exact unless a
    version and a delete marker of one key share a second below the latest one; put_versions
    avoids that. With strict=True such a tie raises ValueError instead of guessing.
    """
    kwargs = {"Bucket": bucket}
    if key is not None:
        kwargs["Prefix"] = key
    elif prefix is not None:
        kwargs["Prefix"] = prefix
    items = []
    for page in s3.get_paginator("list_object_versions").paginate(**kwargs):
        for v in page.get("Versions", []):
            items.append({"Key": v["Key"], "VersionId": v.get("VersionId"),
                          "IsLatest": v.get("IsLatest", False), "IsDeleteMarker": False,
                          "LastModified": v.get("LastModified"), "ETag": v.get("ETag"),
                          "Size": v.get("Size"), "StorageClass": v.get("StorageClass")})
        for d in page.get("DeleteMarkers", []):
            items.append({"Key": d["Key"], "VersionId": d.get("VersionId"),
                          "IsLatest": d.get("IsLatest", False), "IsDeleteMarker": True,
                          "LastModified": d.get("LastModified"), "ETag": None,
                          "Size": None, "StorageClass": None})
    if key is not None:
        items = [i for i in items if i["Key"] == key]
    # Listing order across pages: all versions of page 1, its markers, then page 2, ... The
    # stable sort keeps that order among equal sort keys.
    items.sort(key=lambda i: (i["Key"], -i["LastModified"].timestamp(), not i["IsLatest"]))
    if strict:
        for a, b in zip(items, items[1:]):
            if (a["Key"] == b["Key"] and a["LastModified"] == b["LastModified"]
                    and a["IsDeleteMarker"] != b["IsDeleteMarker"] and not a["IsLatest"]):
                raise ValueError(
                    f"list_versions: order of {a['Key']!r} versions {a['VersionId']} and "
                    f"{b['VersionId']} is ambiguous (version and delete marker in the same "
                    f"second {a['LastModified']})")
    return items


# ---------------------------------------------------------------------------------------------
# Running batchrep
# ---------------------------------------------------------------------------------------------

def batchrep_env(moto_url: str, extra: dict | None = None, key: str = "testing",
                 secret: str = "testing") -> dict:
    """A clean environment for the batchrep binary: the current one without any AWS_* variable
    or proxy setting, then AWS_ENDPOINT_URL=moto_url, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    = key / secret, AWS_REGION=us-east-1, AWS_CONFIG_FILE=AWS_SHARED_CREDENTIALS_FILE=/dev/null
    (no AWS_PROFILE, no AWS_CA_BUNDLE, no session token), NO_PROXY=127.0.0.1,localhost;
    `extra` is applied last (a value of None removes the variable)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k.lower() not in (
               "http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env.update({
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def batchrep_bin() -> str:
    return os.environ.get("BATCHREP_BIN") or os.path.join(BUILD_DIR, "bin", "batchrep")


def run_batchrep(args, env: dict, timeout: float = 600, cwd: str | None = None,
                 input: str | None = None) -> subprocess.CompletedProcess:
    """Runs `batchrep ARGS...` ($BATCHREP_BIN, default <repo>/build/bin/batchrep) to the end
    and returns the CompletedProcess (.returncode, .stdout, .stderr as text). Raises
    subprocess.TimeoutExpired (after killing it) past `timeout` seconds."""
    return subprocess.run([batchrep_bin(), *[str(a) for a in args]], env=env, cwd=cwd,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Job documents, manifests
# ---------------------------------------------------------------------------------------------

def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def job_document(manifest_arn: str, manifest_etag: str, report_bucket_arn: str,
                 prefix: str | None = "reports", scope: str = "AllTasks",
                 fields: list[str] | None = None, client_token: str | None = None,
                 priority: int = 10) -> dict:
    """A CreateJob request (aws-formats.md §3.3) for Batch Replication with a CSV manifest:
    Operation {"S3ReplicateObject": {}}, Manifest Spec S3BatchOperations_CSV_20180820 with
    `fields` (default Bucket, Key, VersionId), Location ObjectArn + ETag, Report to
    report_bucket_arn / prefix (None: no Prefix member) as Report_CSV_20180820 with `scope`
    (AllTasks | FailedTasksOnly), ClientRequestToken (default a new UUID), Priority, RoleArn,
    AccountId 123456789012, ConfirmationRequired false. Modify the dict for other cases."""
    report = {"Bucket": report_bucket_arn, "Format": "Report_CSV_20180820", "Enabled": True,
              "ReportScope": scope}
    if prefix is not None:
        report["Prefix"] = prefix
    return {
        "AccountId": ACCOUNT_ID,
        "ConfirmationRequired": False,
        "Operation": {"S3ReplicateObject": {}},
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820",
                     "Fields": list(fields) if fields else ["Bucket", "Key", "VersionId"]},
            "Location": {"ObjectArn": manifest_arn, "ETag": manifest_etag},
        },
        "Report": report,
        "ClientRequestToken": client_token or str(uuid.uuid4()),
        "Priority": priority,
        "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/batch-replication",
    }


def write_json(path: str, obj) -> str:
    """Writes obj as indented JSON to path (creating folders); returns path."""
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return path


def url_encode_key(key: str) -> str:
    """A key as a manifest producer should write it (aws-formats.md §1.2): UTF-8, every byte
    percent-encoded (%XX, upper-case hex) except the unreserved A-Z a-z 0-9 - . _ ~ and '/';
    so space -> %20 and '+' -> %2B, which decode to the same key whether a reader maps '+' to
    space or not."""
    return urllib.parse.quote(key, safe="/")


def url_decode_key(text: str, plus_is_space: bool = False) -> str:
    """The inverse: %XX decoded; '+' -> space only when plus_is_space (Inventory CSV)."""
    return urllib.parse.unquote_plus(text) if plus_is_space else urllib.parse.unquote(text)


def manifest_csv(rows, encode: bool = True) -> bytes:
    """A S3BatchOperations_CSV_20180820 manifest: one `bucket,key[,version]` line per row
    (tuples; a version of None is left out), keys URL-encoded unless encode=False, '\\n'
    line ends, no header."""
    lines = []
    for row in rows:
        bucket, key, *rest = row
        fields = [bucket, url_encode_key(key) if encode else key]
        fields += [v for v in rest if v is not None]
        lines.append(",".join(fields))
    return ("".join(line + "\n" for line in lines)).encode("utf-8")


def upload_manifest(s3, bucket: str, key: str, data) -> tuple[str, str]:
    """Puts a manifest (bytes, or rows for manifest_csv) at bucket/key; returns
    (object ARN, ETag without quotes) for job_document."""
    if not isinstance(data, (bytes, bytearray)):
        data = manifest_csv(data)
    r = s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    return object_arn(bucket, key), r["ETag"].strip('"')


# ---------------------------------------------------------------------------------------------
# Completion reports
# ---------------------------------------------------------------------------------------------

def parse_csv(data: bytes) -> list[list[str]]:
    """RFC 4180 rows of a results file (UTF-8)."""
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def read_report(s3, bucket: str, prefix: str | None, job_id: str) -> dict:
    """Reads the completion report of job_id from bucket:

        <prefix>/job-<id>/manifest.json (+ .md5)   and each Results[].Key it lists

    Returns {
        'manifest': parsed manifest.json, 'manifest_raw': its bytes,
        'manifest_md5': bytes of manifest.json.md5 or None,
        'results': [Results[] entry + {'Body': bytes of that file}],
        'files': {key: bytes} of every results file,
        'rows': {'succeeded': [[...]], 'failed': [[...]]} parsed CSV rows by file status,
        'keys': every key under <prefix>/job-<id>/ (sorted)}.
    Raises botocore ClientError if manifest.json is missing."""
    base = f"{prefix.rstrip('/')}/job-{job_id}/" if prefix else f"job-{job_id}/"
    raw = s3.get_object(Bucket=bucket, Key=base + "manifest.json")["Body"].read()
    manifest = json.loads(raw)
    try:
        md5 = s3.get_object(Bucket=bucket, Key=base + "manifest.json.md5")["Body"].read()
    except botocore.exceptions.ClientError as e:
        if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
        md5 = None
    results, files = [], {}
    rows = {"succeeded": [], "failed": []}
    for entry in manifest.get("Results", []):
        body = s3.get_object(Bucket=entry.get("Bucket", bucket), Key=entry["Key"])["Body"].read()
        results.append({**entry, "Body": body})
        files[entry["Key"]] = body
        rows.setdefault(entry.get("TaskExecutionStatus", "?"), []).extend(parse_csv(body))
    keys = []
    # the whole bucket, filtered here: signed moto refuses a Prefix with dot segments
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].startswith(base)]
    return {"manifest": manifest, "manifest_raw": raw, "manifest_md5": md5,
            "results": results, "files": files, "rows": rows, "keys": sorted(keys)}


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)
