#!/usr/bin/env python3
"""test_faultproxy.py — self-test of faultproxy.py (no batchrep involved).

1. Byte-exact passthrough against a raw recording server: header order and case, duplicate
   headers, Host, a chunked body, Expect: 100-continue, an absolute-form target, keep-alive.
2. Against moto with SigV4 checking on (so any change to a signed header or the body would
   show as 403 SignatureDoesNotMatch): boto3 with retries disabled sees each fault kind on
   exactly the planned requests, and clean passthrough otherwise; the upstream state shows
   which faults were forwarded (reset_after, internal_after) and which were not.
3. The proxy's log: counts per kind, and every faulted request re-sent later after a delay.
4. An unreachable upstream gives 502.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import botocore.exceptions  # noqa: E402

import harness as h  # noqa: E402
from faultproxy import FaultProxy, Rule, classify  # noqa: E402

tap = h.Tap()
RETRY_PAUSE_S = 0.05


# ---------------------------------------------------------------------------------------------
# 1. Byte-exact passthrough
# ---------------------------------------------------------------------------------------------

class Recorder:
    """A raw HTTP server on 127.0.0.1 that records each request's bytes exactly and answers
    200 with a small body, keeping the connection open (no Connection: close)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        c.settimeout(10)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, rest = buf.partition(b"\r\n\r\n")
                head += b"\r\n\r\n"
                lower = head.lower()
                if b"transfer-encoding: chunked" in lower:
                    while b"\r\n0\r\n" not in rest or not rest.endswith(b"\r\n\r\n"):
                        d = c.recv(65536)
                        if not d:
                            return
                        rest += d
                    body, buf = rest, b""
                else:
                    n = 0
                    for line in lower.split(b"\r\n"):
                        if line.startswith(b"content-length:"):
                            n = int(line.split(b":")[1])
                    while len(rest) < n:
                        rest += c.recv(65536)
                    body, buf = rest[:n], rest[n:]
                self.requests.append(head + body)
                reply = b"hello"
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Up: 1\r\n\r\n%s"
                          % (len(reply), reply))
        except OSError:
            return
        finally:
            c.close()

    def close(self):
        self.sock.close()


def read_response(s):
    """(status, headers bytes, body) of one Content-Length response on socket s."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return int(head.split(b" ")[1]), head, body[:n], body[n:]


def test_passthrough():
    rec = Recorder()
    try:
        with FaultProxy(rec.url) as px:
            req1 = (b"PUT /bkt/some%%20key?x-id=PutObject HTTP/1.1\r\n"
                    b"Host: 127.0.0.1:%d\r\n"
                    b"X-Amz-Date: 20240101T000000Z\r\n"
                    b"x-amz-meta-Dup: one\r\n"
                    b"x-amz-meta-Dup: two\r\n"
                    b"authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/"
                    b"aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\n"
                    b"Content-Length: 11\r\n\r\nhello world") % px.port
            req2 = (b"PUT http://127.0.0.1:%d/bkt/chunked HTTP/1.1\r\n"
                    b"Host: some.host.example:1234\r\n"
                    b"Transfer-Encoding: chunked\r\n"
                    b"Expect: 100-continue\r\n\r\n") % px.port
            body2 = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
            s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
            s.sendall(req1)
            st, _, body, rest = read_response(s)
            tap.eq((st, body), (200, b"hello"), "passthrough: first answer relayed")
            s.sendall(req2)
            # The proxy answers 100 Continue itself before the body is sent.
            got = s.recv(64)
            tap.ok(got.startswith(b"HTTP/1.1 100 Continue"),
                   "passthrough: proxy sends 100 Continue for Expect")
            s.sendall(body2)
            st, _, body, _ = read_response(s)
            tap.eq((st, body), (200, b"hello"), "passthrough: second answer on the same connection")
            s.close()
            tap.eq(len(rec.requests), 2, "passthrough: upstream saw 2 requests")
            tap.eq(rec.requests[0] if rec.requests else None, req1,
                   "passthrough: request 1 byte for byte (header order, case, duplicates, body)")
            want2 = req2.replace(b"http://127.0.0.1:%d/" % px.port, b"/") + body2
            tap.eq(rec.requests[1] if len(rec.requests) > 1 else None, want2,
                   "passthrough: absolute-form target made origin-form, Host and chunked body kept")
            log = px.log
            tap.eq([(e["method"], e["target"], e["op"], e["fault"], e["status"]) for e in log],
                   [("PUT", "/bkt/some%20key?x-id=PutObject", "PutObject", None, 200),
                    ("PUT", "/bkt/chunked", "PutObject", None, 200)],
                   "passthrough: log entries")
            tap.eq(len({e["conn"] for e in log}), 1, "passthrough: client connection kept alive")
    finally:
        rec.close()


def test_classify():
    cases = [
        ("PUT", "/b/k", {"x-amz-copy-source": "/s/k?versionId=1"}, "CopyObject"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {"x-amz-copy-source": "/s/k"}, "UploadPartCopy"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart"),
        ("PUT", "/b/k", {}, "PutObject"),
        ("PUT", "/b", {}, "CreateBucket"),
        ("PUT", "/b/k?tagging", {}, "PutObjectTagging"),
        ("PUT", "/b/k?acl", {}, "PutObjectAcl"),
        ("PUT", "/b?versioning", {}, "PutBucketVersioning"),
        ("POST", "/b/k?uploads", {}, "CreateMultipartUpload"),
        ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload"),
        ("DELETE", "/b/k?versionId=v", {}, "DeleteObject"),
        ("HEAD", "/b/k?versionId=v", {}, "HeadObject"),
        ("HEAD", "/b", {}, "HeadBucket"),
        ("GET", "/b/k?versionId=v", {}, "GetObject"),
        ("GET", "/b/k?tagging&versionId=v", {}, "GetObjectTagging"),
        ("GET", "/b?versions&prefix=a", {}, "ListObjectVersions"),
        ("GET", "/b?list-type=2", {}, "ListObjects"),
        ("GET", "/b?replication", {}, "GetBucketReplication"),
        ("GET", "/", {}, "ListBuckets"),
    ]
    got = [classify(m, t, hd) for m, t, hd, _ in cases]
    tap.eq(got, [c[3] for c in cases], "classify: S3 operation names")


# ---------------------------------------------------------------------------------------------
# 2. Faults against moto with SigV4 checked
# ---------------------------------------------------------------------------------------------

def expect_client_error(fn, code, status, name):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        got = (err.get("Code"), e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        return tap.eq(got, (code, status), name)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, name)
        tap.diag(f"  unexpected {type(e).__name__}: {e}")
        return False
    tap.ok(False, name)
    tap.diag("  the call succeeded")
    return False


def expect_connection_error(fn, name):
    try:
        fn()
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as e:
        tap.ok(True, name)
        tap.diag(f"  {type(e).__name__}")
        return True
    except Exception as e:  # noqa: BLE001
        tap.ok(False, name)
        tap.diag(f"  unexpected {type(e).__name__}: {e}")
        return False
    tap.ok(False, name)
    tap.diag("  the call succeeded")
    return False


def expect_ok(fn, name):
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001
        tap.ok(False, name)
        tap.diag(f"  {type(e).__name__}: {e}")
        return None
    tap.ok(True, name)
    return r


def retry_pause():
    time.sleep(RETRY_PAUSE_S)


def test_faults_on_moto():
    with h.Moto(auth=True) as m:
        direct = m.client()
        h.make_bucket(direct, "src")
        h.make_bucket(direct, "dst")
        v1 = h.put_versions(direct, "src", "dir/a b", [b"version one"])[0]["VersionId"]
        direct.put_object_tagging(Bucket="src", Key="dir/a b", VersionId=v1,
                                  Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
        direct.put_object(Bucket="src", Key="other", Body=b"x")

        plan = [
            Rule("slowdown", op="HeadObject", every=2),            # HEAD #2, #4
            Rule("internal", op="GetObject", at=[1]),              # GET #1
            Rule("reset", op="PutObject", at=[2]),                 # PUT #2
            Rule("copy200", op="CopyObject", every=3, times=1),    # COPY #3
            Rule("reset_after", op="CopyObject", at=[4]),          # COPY #4 (forwarded)
            Rule("internal_after", op="DeleteObject", at=[1]),     # DELETE #1 (forwarded)
            Rule("delay", op="ListObjectVersions", at=[1], delay_s=0.3),
            Rule("slowdown", op="GetObjectTagging", unique=True),  # first try of each target
        ]
        with FaultProxy(m.url, plan) as px:
            s3 = h.s3_client(px.url, m.access_key, m.secret_key)  # no retries
            head = lambda: s3.head_object(Bucket="src", Key="dir/a b", VersionId=v1)  # noqa: E731

            # HeadObject: every 2nd gets 503 (a HEAD answer has no body: code "503").
            r = expect_ok(head, "HEAD #1 passes through (SigV4 still valid)")
            tap.eq(r and r["ContentLength"], 11, "HEAD #1 answer is upstream's")
            expect_client_error(head, "503", 503, "HEAD #2 gets 503 SlowDown")
            retry_pause()
            expect_ok(head, "HEAD #3 (retry of #2) passes")
            expect_client_error(head, "503", 503, "HEAD #4 gets 503 SlowDown")
            retry_pause()
            expect_ok(head, "HEAD #5 passes")

            # GetObject: the first gets 500 InternalError.
            get = lambda: s3.get_object(Bucket="src", Key="dir/a b", VersionId=v1)  # noqa: E731
            expect_client_error(get, "InternalError", 500, "GET #1 gets 500 InternalError")
            retry_pause()
            r = expect_ok(get, "GET #2 passes")
            tap.eq(r and r["Body"].read(), b"version one", "GET #2 body is the object")

            # PutObject: the second is reset and never reaches moto.
            put = lambda: s3.put_object(Bucket="dst", Key="p", Body=b"put body")  # noqa: E731
            expect_ok(put, "PUT #1 passes")
            expect_connection_error(put, "PUT #2 gets a reset connection")
            tap.eq(len(h.list_versions(direct, "dst", key="p")), 1,
                   "PUT #2 was not forwarded (1 version upstream)")
            retry_pause()
            expect_ok(put, "PUT #3 (retry) passes")
            tap.eq(len(h.list_versions(direct, "dst", key="p")), 2, "PUT #3 reached moto")

            # CopyObject: #3 gets 200 + <Error> (not forwarded), #4 is forwarded then reset.
            def copy():
                return s3.copy_object(Bucket="dst", Key="c",
                                      CopySource={"Bucket": "src", "Key": "dir/a b",
                                                  "VersionId": v1})
            n_copies = lambda: len(h.list_versions(direct, "dst", key="c"))  # noqa: E731
            r = expect_ok(copy, "COPY #1 passes")
            tap.eq(r and r["CopySourceVersionId"], v1, "COPY #1 answer is upstream's")
            expect_ok(copy, "COPY #2 passes")
            expect_client_error(copy, "InternalError", 500,
                                "COPY #3 gets 200 OK with an InternalError body")
            tap.eq(n_copies(), 2, "COPY #3 was not forwarded")
            retry_pause()
            expect_connection_error(copy, "COPY #4 is reset after upstream copied")
            tap.eq(n_copies(), 3, "COPY #4 was forwarded (a destination version appeared)")
            retry_pause()
            expect_ok(copy, "COPY #5 passes")
            tap.eq(n_copies(), 4, "COPY #5 reached moto")

            # DeleteObject: the first is forwarded, the client gets 500.
            dele = lambda: s3.delete_object(Bucket="dst", Key="p")  # noqa: E731
            expect_client_error(dele, "InternalError", 500,
                                "DELETE #1 gets 500 InternalError after forwarding")
            dms = [v for v in h.list_versions(direct, "dst", key="p") if v["IsDeleteMarker"]]
            tap.eq(len(dms), 1, "DELETE #1 made a delete marker upstream")

            # ListObjectVersions: the first is delayed 0.3 s, answer intact.
            t0 = time.monotonic()
            r = expect_ok(lambda: s3.list_object_versions(Bucket="src"), "LIST #1 passes")
            took = time.monotonic() - t0
            tap.ok(took >= 0.3, f"LIST #1 was delayed ({took:.2f}s >= 0.3s)")
            tap.eq(r and sorted(v["Key"] for v in r.get("Versions", [])), ["dir/a b", "other"],
                   "LIST #1 answer is upstream's")

            # GetObjectTagging with unique=True: each target's first try fails, its retry passes.
            for k, vid in (("dir/a b", v1), ("other", None)):
                kw = {"Bucket": "src", "Key": k, **({"VersionId": vid} if vid else {})}
                tg = lambda: s3.get_object_tagging(**kw)  # noqa: E731
                expect_client_error(tg, "SlowDown", 503, f"TAGGING {k!r} first try: SlowDown")
                retry_pause()
                r = expect_ok(tg, f"TAGGING {k!r} retry passes")
                if k == "dir/a b":
                    tap.eq(r and r["TagSet"], [{"Key": "t", "Value": "1"}], "TAGGING answer")

            # 3. The log.
            c = px.counts()
            want = {"slowdown": 4, "internal": 1, "reset": 1, "copy200": 1, "reset_after": 1,
                    "internal_after": 1, "delay": 1}
            tap.eq({k: c[k] for k in want}, want, "counts per fault kind")
            tap.eq((c["op:HeadObject"], c["op:CopyObject"], c["op:PutObject"]), (5, 5, 3),
                   "counts per operation")
            faulted = [(e["op"], e["fault"]) for e in px.log if e["fault"]]
            tap.eq(faulted, [("HeadObject", "slowdown"), ("HeadObject", "slowdown"),
                             ("GetObject", "internal"), ("PutObject", "reset"),
                             ("CopyObject", "copy200"), ("CopyObject", "reset_after"),
                             ("DeleteObject", "internal_after"),
                             ("ListObjectVersions", "delay"),
                             ("GetObjectTagging", "slowdown"), ("GetObjectTagging", "slowdown")],
                   "faults on exactly the planned requests, in order")
            statuses = [(e["op"], e["status"], e["upstream_status"]) for e in px.log
                        if e["fault"] in ("reset", "reset_after", "copy200", "internal_after")]
            tap.eq(statuses, [("PutObject", None, None), ("CopyObject", 200, None),
                              ("CopyObject", None, 200), ("DeleteObject", 500, 204)],
                   "status to the client and from upstream for the faulted requests")
            clean_bad = [e for e in px.log if not e["fault"] and e["status"] not in (200, 204)]
            tap.eq(clean_bad, [], "every clean request got upstream's 2xx")
            unretried = [(e["op"], e["fault"]) for e in px.unretried()]
            tap.eq(unretried, [("DeleteObject", "internal_after")],
                   "unretried(): only the fault this test did not re-send")
            rs = [r for r in px.retries() if r["retry"] is not None]
            tap.ok(rs and all(r["delay_s"] >= RETRY_PAUSE_S * 0.9 for r in rs),
                   f"retries(): {len(rs)} re-sent requests, each after >= {RETRY_PAUSE_S}s")
            for r in rs:
                if r["delay_s"] < RETRY_PAUSE_S * 0.9:
                    tap.diag(f"  {r['fault']['op']} {r['fault']['target']}: {r['delay_s']:.3f}s")


def test_bad_upstream():
    dead_port = h.free_port()
    with FaultProxy(f"http://127.0.0.1:{dead_port}") as px:
        s = socket.create_connection(("127.0.0.1", px.port), timeout=10)
        s.sendall(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, _, _ = read_response(s)
        s.close()
        tap.eq(st, 502, "unreachable upstream: 502 Bad Gateway")
        tap.eq([e["status"] for e in px.log], [502], "unreachable upstream: logged")


def main():
    for t in (test_classify, test_passthrough, test_faults_on_moto, test_bad_upstream):
        try:
            t()
        except Exception as e:  # noqa: BLE001
            import traceback
            tap.ok(False, f"{t.__name__} raised {type(e).__name__}: {e}")
            tap.diag(traceback.format_exc())
    tap.done()


if __name__ == "__main__":
    main()
