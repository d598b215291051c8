"""hostile_server.py — an S3 endpoint on 127.0.0.1 that misbehaves on purpose.

    with HostileServer(upstream=moto.url) as hs:           # or tls=(cert, key) for HTTPS
        hs.route(never(), op="HeadObject")                 # a rule: action + what it matches
        hs.route(s3_object(data, cut_at={1: 1000}), method="GET", path="/manifests/m.csv")
        env = h.batchrep_env(hs.url)

A request goes to the first route whose filters (method, path, op: every one given must
match) select it; unrouted requests go to `upstream` (a moto_server, relayed with their
headers, body and answer: moto without auth checks no signature) or, without one, get a 404
NoSuchKey. Each route numbers the requests it takes (1, 2, ...), so an action can misbehave
on the first try and answer the retry (`cut_at={1: N}`).

Actions (each a function returning the action):
    never()                 reads the request, answers nothing; the connection stays open
                            until the test calls release() or stops the server
    trickle(status, body, bytes_per_s=2)
                            the status line and headers at once (Content-Length of the
                            whole body, ETag its MD5), then the body a few bytes at a time
                            at that rate
    endless(limit_bytes)    200 OK without a length (the body ends when the connection does),
                            then bytes as fast as the client reads; stops after limit_bytes
                            so that a client without a limit cannot fill the disk here;
                            .sent tells how many bytes went out
    longer_than_announced(announced, actual)
                            200 with `Content-Length: announced` and a chunked body of
                            `actual` bytes (a chunked body wins over the length, RFC 9112)
    s3_object(data, etag=None, cut_at=None, hold_at=None, replaced_after=None)
                            an S3 object: GET and HEAD with ETag and Content-Length, Range
                            (206 + Content-Range) and If-Match (412 PreconditionFailed);
                            cut_at {n: offset}: the n-th GET sends its full headers and the
                            body up to that object offset, then closes the connection;
                            hold_at {n: offset}: the same, but waits for release() first;
                            replaced_after n: from the n-th GET on the object has another
                            ETag (it was overwritten while being read)
    answer(status, body, headers)  a fixed answer

TLS: HostileServer(tls=(certfile, keyfile)) speaks HTTPS with that certificate (make one with
self_signed_cert(dir)); a client that refuses the certificate is logged as
{"tls_error": ...}.

Log: hs.log (a copy) lists every request: n (server-wide), route (index or None), method,
target, op (faultproxy.classify), headers (lower-case names), status (None: nothing sent),
sent (body bytes sent), t_start / t_end (time.monotonic()).

Nothing here listens on anything but 127.0.0.1; the accept thread and the connection threads
are daemon threads, and stop() closes every socket.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

from faultproxy import classify

MAX_HEAD_BYTES = 64 * 1024


def self_signed_cert(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (CN and IP SAN), made by `openssl req -x509` in
    directory; returns (certfile, keyfile). The certificate is also a valid CA bundle."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class Request:
    def __init__(self, method, target, headers, body, op, n_route):
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.body = body
        self.op = op
        self.n = n_route  # 1-based among the requests of its route


def _head(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error_xml(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f'<Message>{message}</Message><RequestId>hostile</RequestId></Error>').encode()


# ---- actions ---------------------------------------------------------------------------------

def never():
    def act(srv, sock, req, entry):
        srv._released.wait()
    return act


def trickle(status: int = 200, body: bytes = b"", bytes_per_s: float = 2.0,
            content_type: str = "application/xml"):
    etag = '"%s"' % hashlib.md5(body).hexdigest()

    def act(srv, sock, req, entry):
        sock.sendall(_head(status, "OK", [("Content-Type", content_type), ("ETag", etag),
                                          ("Content-Length", str(len(body))),
                                          ("Connection", "close")]))
        entry["status"] = status
        # eight sends a second (a whole second's bytes at once, a late wake-up leaves a
        # second with nothing, which a stall detector reads as a stall)
        step = max(1, int(bytes_per_s / 8))
        for i in range(0, len(body), step):
            if srv._released.wait(step / bytes_per_s):
                return
            sock.sendall(body[i:i + step])
            entry["sent"] += len(body[i:i + step])
    return act


class endless:
    """200 OK without a length, then bytes until the client stops reading (or limit_bytes)."""

    def __init__(self, limit_bytes: int = 1 << 30, line: bytes = b"src,endless-key,v1\n"):
        self.limit_bytes = limit_bytes
        self.block = line * (65536 // len(line))
        self.sent = 0

    def __call__(self, srv, sock, req, entry):
        sock.sendall(_head(200, "OK", [("Content-Type", "text/csv"), ("ETag", '"endless"'),
                                       ("Connection", "close")]))
        entry["status"] = 200
        if req.method == "HEAD":
            return
        while self.sent < self.limit_bytes and not srv._stopping:
            sock.sendall(self.block)
            self.sent += len(self.block)
            entry["sent"] += len(self.block)


def longer_than_announced(announced: int, actual: int, etag: str = '"liar"'):
    def act(srv, sock, req, entry):
        sock.sendall(_head(200, "OK", [("Content-Type", "text/csv"), ("ETag", etag),
                                       ("Content-Length", str(announced)),
                                       ("Transfer-Encoding", "chunked"),
                                       ("Connection", "close")]))
        entry["status"] = 200
        left = actual
        while left > 0 and not srv._stopping:
            n = min(left, 65536)
            sock.sendall(b"%x\r\n" % n + b"x" * n + b"\r\n")
            entry["sent"] += n
            left -= n
        sock.sendall(b"0\r\n\r\n")
    return act


def s3_object(data: bytes, etag: str | None = None, cut_at: dict | None = None,
              hold_at: dict | None = None, replaced_after: int | None = None,
              content_type: str = "text/csv"):
    """See the module comment."""
    state = {"etag": etag or '"%s"' % hashlib.md5(data).hexdigest(), "gets": 0}

    def act(srv, sock, req, entry):
        tag = state["etag"]
        im = req.headers.get("if-match")
        if im is not None and im.strip() != tag:
            body = _error_xml("PreconditionFailed",
                              "At least one of the pre-conditions you specified did not hold")
            sock.sendall(_head(412, "Precondition Failed",
                               [("Content-Type", "application/xml"),
                                ("Content-Length", str(len(body))), ("Connection", "close")])
                         + (b"" if req.method == "HEAD" else body))
            entry["status"] = 412
            return
        first, status, reason = 0, 200, "OK"
        headers = [("Content-Type", content_type), ("ETag", tag), ("Accept-Ranges", "bytes"),
                   ("Connection", "close")]
        rng = req.headers.get("range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            first = int(rng[6:-1])
            status, reason = 206, "Partial Content"
            headers.append(("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}"))
        headers.append(("Content-Length", str(len(data) - first)))
        sock.sendall(_head(status, reason, headers))
        entry["status"] = status
        if req.method == "HEAD":
            return
        state["gets"] += 1
        n_get = state["gets"]
        if replaced_after is not None and n_get == replaced_after:
            state["etag"] = '"replaced-%d"' % n_get  # the next request sees another object
        end = len(data)
        cut = (cut_at or {}).get(n_get)
        hold = (hold_at or {}).get(n_get)
        if cut is not None or hold is not None:
            end = max(first, min(cut if cut is not None else hold, end))
        sock.sendall(data[first:end])
        entry["sent"] += end - first
        if hold is not None:  # mid-body, until the test releases it
            entry["held"] = True
            srv._released.wait()
        if cut is not None or hold is not None:  # the connection closes mid-body
            entry["cut"] = True

    act.state = state
    return act


def answer(status: int, body: bytes = b"", headers: list | None = None):
    def act(srv, sock, req, entry):
        hs = list(headers or []) + [("Content-Length", str(len(body))), ("Connection", "close")]
        sock.sendall(_head(status, "Answer", hs) + (b"" if req.method == "HEAD" else body))
        entry["status"] = status
    return act


# ---- the server ------------------------------------------------------------------------------

class HostileServer:
    def __init__(self, upstream: str | None = None, tls: tuple[str, str] | None = None):
        self.upstream = None
        if upstream:
            u = urllib.parse.urlsplit(upstream)
            self.upstream = (u.hostname, u.port or 80)
        self._ctx = None
        if tls:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(*tls)
        self._routes: list[dict] = []
        self._lock = threading.Lock()
        self._log: list[dict] = []
        self._socks: set = set()
        self._released = threading.Event()
        self._stopping = False
        self._listener = None
        self._thread = None
        self.port = None
        self.url = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if self._ctx else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="hostile-accept")
        self._thread.start()

    def stop(self):
        self._stopping = True
        self._released.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release(self):
        """Lets every held (never()) and trickling request end."""
        self._released.set()

    def route(self, action, method=None, path=None, op=None):
        """Adds a route (after the existing ones); returns the action."""
        with self._lock:
            self._routes.append({"action": action, "method": method, "path": path, "op": op,
                                 "count": 0})
        return action

    @property
    def log(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._log]

    def requests(self, op=None, method=None) -> list[dict]:
        return [e for e in self.log if (op is None or e["op"] == op)
                and (method is None or e["method"] == method)]

    # -- connections -----------------------------------------------------------------------

    def _accept_loop(self):
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True,
                             name="hostile-conn").start()

    def _serve(self, sock):
        with self._lock:
            self._socks.add(sock)
        try:
            if self._ctx:
                try:
                    sock.settimeout(30)
                    tls = self._ctx.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with self._lock:
                        self._log.append({"tls_error": str(e), "t_start": time.monotonic()})
                    return
                with self._lock:
                    self._socks.add(tls)
                sock = tls
            sock.settimeout(None)
            self._serve_one(sock)
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _serve_one(self, sock):
        """One request per connection: every answer says Connection: close."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk or len(buf) > MAX_HEAD_BYTES:
                return
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0") or 0)
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                return
            rest += chunk
        op = classify(method, target, headers)
        action, index = None, None
        with self._lock:
            for i, r in enumerate(self._routes):
                if ((r["method"] is None or r["method"] == method)
                        and (r["path"] is None or r["path"] == target.partition("?")[0])
                        and (r["op"] is None or r["op"] == op)):
                    r["count"] += 1
                    action, index, count = r["action"], i, r["count"]
                    break
            entry = {"n": len(self._log) + 1, "route": index, "method": method,
                     "target": target, "op": op, "headers": headers, "status": None,
                     "sent": 0, "t_start": time.monotonic(), "t_end": None}
            self._log.append(entry)
        try:
            if action is None:
                self._relay(sock, method, target, headers, rest[:n], entry)
            else:
                action(self, sock, Request(method, target, headers, rest[:n], op, count), entry)
        finally:
            with self._lock:
                entry["t_end"] = time.monotonic()

    def _relay(self, sock, method, target, headers, body, entry):
        if not self.upstream:
            body = _error_xml("NoSuchKey", "The specified key does not exist.")
            sock.sendall(_head(404, "Not Found", [("Content-Type", "application/xml"),
                                                  ("Content-Length", str(len(body))),
                                                  ("Connection", "close")])
                         + (b"" if method == "HEAD" else body))
            entry["status"] = 404
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            fwd = {k: v for k, v in headers.items()
                   if k not in ("connection", "transfer-encoding", "expect")}
            conn.request(method, target, body=body if body or method in ("PUT", "POST")
                         else None, headers=fwd)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders()
                   if k.lower() not in ("connection", "transfer-encoding", "content-length")]
            # a HEAD's Content-Length is the object's: keep it; a body's is recounted
            if method == "HEAD":
                out += [(k, v) for k, v in resp.getheaders() if k.lower() == "content-length"]
            else:
                out.append(("Content-Length", str(len(data))))
            out.append(("Connection", "close"))
            sock.sendall(_head(resp.status, resp.reason or "Relayed", out)
                         + (b"" if method == "HEAD" else data))
            entry["status"] = resp.status
            entry["sent"] = len(data)
        finally:
            conn.close()
