"""faultproxy.py — an HTTP/1.1 proxy that injects S3 faults on a fixed schedule.

It sits between a client (batchrep, boto3) and an upstream S3 server (moto) on 127.0.0.1:

    with FaultProxy(moto.url, [Rule("slowdown", op="CopyObject", every=3)]) as proxy:
        env = batchrep_env(proxy.url)          # the client uses the proxy as its endpoint

Transport. Plain sockets, so what reaches upstream is byte for byte what the client sent: the
request line, every header in its order and case (Host as the client sent it: SigV4 signs it),
and the body (Content-Length or chunked, passed raw). One upstream connection per request.
An absolute-form target (`PUT http://host/b/k HTTP/1.1`, a client configured with the proxy as
an HTTP proxy) is sent upstream in origin form (`/b/k`); headers stay as they were. With
`Expect: 100-continue` the proxy answers `100 Continue` itself and skips upstream 1xx answers.
Responses are relayed raw; the client connection is kept alive unless either side closes or
asks to (moto always sends `Connection: close`).

Requests are classified into S3 operation names (see classify()): CopyObject (PUT with
x-amz-copy-source), UploadPartCopy (the same with partNumber+uploadId), PutObject, UploadPart,
CreateMultipartUpload, CompleteMultipartUpload, AbortMultipartUpload, HeadObject, GetObject,
DeleteObject, ListObjectVersions, ListObjects, PutObjectTagging, PutObjectAcl, ... and, for
anything else, the method name.

Fault plan. A list of Rule (or dicts of Rule's arguments). Each rule counts the requests that
match it (1, 2, 3, ...) and faults the counts it selects: every=N selects N, 2N, 3N, ...;
at=[i, j] selects exactly those; times=K stops after K faults; unique=True counts a request only
the first time its method+path+query is seen, so a client's retry of it is never counted (and
never faulted) by that rule. Every rule sees every request (counts are independent); the first
rule in plan order that selects a request decides its fault. With a fixed request sequence the
schedule is fully deterministic; with concurrent clients the number of faults is.

Fault kinds:
    slowdown      503, <Error><Code>SlowDown</Code>..., not forwarded
    internal      500, <Error><Code>InternalError</Code>..., not forwarded
    reset         the request is read, not forwarded, and the connection is reset (SO_LINGER 0,
                  so the client sees an RST, not an answer)
    copy200       CopyObject / UploadPartCopy only: `200 OK` whose body is an InternalError
                  <Error> document (what S3 may send once a copy has started), not forwarded
    reset_after   forwarded; upstream's answer is dropped and the connection reset: the
                  operation happened, the client does not know (tests idempotence)
    internal_after  forwarded; the client gets the 500 InternalError instead of the answer
    delay         forwarded after sleeping rule.delay_s seconds
    hold          forwarded only once the test calls proxy.release() (or the proxy stops):
                  work stays in flight for exactly as long as a test needs, however fast
                  the machine; proxy.held() counts the requests waiting

Log. Every request is recorded (proxy.log, a list of dicts): seq, conn, t_start (request head
read, time.monotonic()), t_end (answer sent or connection reset), method, target (path+query
as sent), op, fault (None or the kind), rule (index in the plan or None), status (HTTP status
given to the client; None for a reset), upstream_status, request_bytes, response_bytes,
error (None, or why relaying failed).
proxy.retries() pairs each faulted request with the next request of the same method+target
and the delay between them; proxy.unretried() lists faulted requests never sent again.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
import urllib.parse
import uuid

FAULT_KINDS = ("slowdown", "internal", "reset", "copy200", "reset_after", "internal_after",
               "delay", "hold")
COPY_OPS = ("CopyObject", "UploadPartCopy")

SLOWDOWN_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                '<Message>Please reduce your request rate.</Message>'
                '<RequestId>{rid}</RequestId><HostId>faultproxy</HostId></Error>')
INTERNAL_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                '<Message>We encountered an internal error. Please try again.</Message>'
                '<RequestId>{rid}</RequestId><HostId>faultproxy</HostId></Error>')
# Exactly the body a CopyObject may get after its 200 OK (aws-formats.md §8.1).
COPY200_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
               '<Message>We encountered an internal error. Please try again.</Message></Error>')

MAX_HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 120.0
UPSTREAM_TIMEOUT_S = 300.0


class Rule:
    """One line of a fault plan; see the module comment.

    fault     one of FAULT_KINDS
    op        S3 operation name(s) to match (str or iterable), None = any
    method    HTTP method(s) to match, None = any
    path_re   regular expression searched in path+query, None = any
    every     fault every N-th matching request (default 1: all of them)
    at        fault exactly these 1-based match counts (instead of every)
    times     at most this many faults from this rule (None = no limit)
    after     never fault the first `after` matching requests
    unique    count only the first time a method+path+query is seen
    delay_s   for fault="delay"
    """

    def __init__(self, fault: str, op=None, method=None, path_re: str | None = None,
                 every: int = 1, at=None, times: int | None = None, unique: bool = False,
                 delay_s: float = 0.0, after: int = 0):
        if fault not in FAULT_KINDS:
            raise ValueError(f"Rule: unknown fault {fault!r}; one of {FAULT_KINDS}")
        self.fault = fault
        self.ops = _as_set(op)
        self.methods = {m.upper() for m in _as_set(method)} if method else None
        self.path_re = re.compile(path_re) if path_re else None
        if every < 1:
            raise ValueError("Rule: every must be >= 1")
        self.every = every
        self.at = set(at) if at is not None else None
        self.times = times
        self.unique = unique
        self.delay_s = delay_s
        self.after = after
        if fault == "copy200" and (not self.ops or not self.ops <= set(COPY_OPS)):
            raise ValueError("Rule: copy200 needs op='CopyObject' and/or 'UploadPartCopy'")
        self.matched = 0   # requests counted
        self.injected = 0  # faults chosen

    def matches(self, method: str, target: str, op: str) -> bool:
        if self.ops and op not in self.ops:
            return False
        if self.methods and method not in self.methods:
            return False
        if self.path_re and not self.path_re.search(target):
            return False
        return True

    def count_and_select(self) -> bool:
        """Counts one matching request; True when this count is to be faulted."""
        self.matched += 1
        if self.times is not None and self.injected >= self.times:
            return False
        if self.matched <= self.after:
            return False
        hit = self.matched in self.at if self.at is not None else self.matched % self.every == 0
        if hit:
            self.injected += 1
        return hit

    def __repr__(self):
        sel = f"at={sorted(self.at)}" if self.at is not None else f"every={self.every}"
        return (f"Rule({self.fault!r}, op={sorted(self.ops) if self.ops else None}, "
                f"method={sorted(self.methods) if self.methods else None}, {sel}, "
                f"times={self.times}, unique={self.unique})")


def _as_set(v):
    if v is None:
        return set()
    if isinstance(v, str):
        return {v}
    return set(v)


def _rule(r) -> Rule:
    return r if isinstance(r, Rule) else Rule(**r)


# Query subresources -> the operation name after Get/Put.
_OBJECT_SUBRESOURCES = {"tagging": "ObjectTagging", "acl": "ObjectAcl",
                        "retention": "ObjectRetention", "legal-hold": "ObjectLegalHold",
                        "attributes": "ObjectAttributes"}
_BUCKET_SUBRESOURCES = {"versioning": "BucketVersioning", "replication": "BucketReplication",
                        "object-lock": "ObjectLockConfiguration", "tagging": "BucketTagging",
                        "acl": "BucketAcl", "location": "BucketLocation",
                        "inventory": "BucketInventoryConfiguration", "policy": "BucketPolicy",
                        "ownershipControls": "BucketOwnershipControls"}


def classify(method: str, target: str, headers: dict) -> str:
    """The S3 operation a path-style request is, from method, path, query and headers."""
    path, _, query = target.partition("?")
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    parts = [p for p in path.split("/") if p]
    has_key = len(parts) >= 2
    copy = "x-amz-copy-source" in headers
    if method == "PUT":
        if copy and "partNumber" in q and "uploadId" in q:
            return "UploadPartCopy"
        if copy:
            return "CopyObject"
        if "partNumber" in q and "uploadId" in q:
            return "UploadPart"
        subs = (_OBJECT_SUBRESOURCES if has_key else _BUCKET_SUBRESOURCES)
        for sub in subs:
            if sub in q:
                return "Put" + subs[sub]
        return "PutObject" if has_key else "CreateBucket"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        if "delete" in q:
            return "DeleteObjects"
        return "POST"
    if method == "DELETE":
        if "uploadId" in q:
            return "AbortMultipartUpload"
        if "tagging" in q:
            return "DeleteObjectTagging" if has_key else "DeleteBucketTagging"
        if "replication" in q and not has_key:
            return "DeleteBucketReplication"
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        if not has_key:
            if "versions" in q:
                return "ListObjectVersions"
            if "uploads" in q:
                return "ListMultipartUploads"
            for sub in _BUCKET_SUBRESOURCES:
                if sub in q:
                    return "Get" + _BUCKET_SUBRESOURCES[sub]
            return "ListObjects" if parts else "ListBuckets"
        if "uploadId" in q:
            return "ListParts"
        for sub in _OBJECT_SUBRESOURCES:
            if sub in q:
                return "Get" + _OBJECT_SUBRESOURCES[sub]
        return "GetObject"
    return method


class _Reader:
    """Buffered reads on a socket: lines and exact byte counts."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_head(self) -> bytes | None:
        """Bytes up to and including the blank line; None on a clean EOF before any byte."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            j = self.buf.find(b"\n\n")
            ends = [x + 4 for x in (i,) if x >= 0] + [x + 2 for x in (j,) if x >= 0]
            if ends:
                end = min(ends)
                head = bytes(self.buf[:end])
                del self.buf[:end]
                return head
            if len(self.buf) > MAX_HEAD_BYTES:
                raise ValueError("header block too large")
            if not self._fill():
                if self.buf:
                    raise ConnectionError("EOF inside a header block")
                return None

    def read_line(self) -> bytes:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if not self._fill():
                raise ConnectionError("EOF inside a line")

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("EOF inside a body")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_chunked_raw(self) -> bytes:
        """A chunked body, raw (size lines, data, trailers), up to its final blank line."""
        out = bytearray()
        while True:
            line = self.read_line()
            out += line
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    t = self.read_line()
                    out += t
                    if t in (b"\r\n", b"\n"):
                        return bytes(out)
            out += self.read_exact(size)
            out += self.read_line()  # CRLF after the data

    def take_buffer(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        return data


def _parse_head(head: bytes):
    """(start line, [(name, value)], {lower name: value}) of a header block."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    start = lines[0]
    pairs = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return start, pairs, {n.lower(): v for n, v in pairs}


def _error_response(status: int, reason: str, body: str, head_only: bool) -> bytes:
    data = body.encode()
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: application/xml\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"x-amz-request-id: {uuid.uuid4().hex[:16].upper()}\r\n"
            f"Server: faultproxy\r\n"
            f"Connection: close\r\n\r\n").encode()
    return head if head_only else head + data


def _reset(sock: socket.socket) -> None:
    """Closes with SO_LINGER {1, 0}: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """See the module comment. FaultProxy(upstream_url, plan) is a context manager listening on
    127.0.0.1:<free port>; .url, .port, .log, .counts(), .retries(), .unretried()."""

    def __init__(self, upstream_url: str, plan=None):
        u = urllib.parse.urlsplit(upstream_url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"FaultProxy: upstream must be http://host:port, got {upstream_url!r}")
        self.upstream = (u.hostname, u.port or 80)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a request finishes
        # Under _lock: the plan and its counters, the log, the seen set, open sockets.
        self._rules: list[Rule] = [_rule(r) for r in (plan or [])]
        self._log: list[dict] = []
        self._seen: set[tuple[str, str]] = set()
        self._socks: set[socket.socket] = set()
        self._seq = 0
        self._conn_seq = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._released = threading.Event()  # set: "hold" requests go on
        self._n_held = 0                     # under _lock
        self.port: int | None = None
        self.url: str | None = None

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> "FaultProxy":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._released.set()
        if self._listener is not None:
            try:
                # Wake accept(): shutdown works on Linux for a listening socket.
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

    # -- plan and log ------------------------------------------------------------------------

    def set_plan(self, plan) -> None:
        """Replaces the plan (counters start again from 0; the log and seen set are kept)."""
        rules = [_rule(r) for r in (plan or [])]
        with self._lock:
            self._rules = rules

    def release(self) -> None:
        """Lets every held request (and any later one a hold rule selects) go upstream."""
        self._released.set()

    def held(self) -> int:
        """How many requests a hold rule is holding now."""
        with self._lock:
            return self._n_held

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def wait_idle(self, timeout_s: float = 1.0) -> bool:
        """Waits until every logged request has finished (t_end set); False on timeout. A
        client may see the last byte of an answer just before the proxy records it."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while any(e["t_end"] is None for e in self._log):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    @property
    def log(self) -> list[dict]:
        """A copy of the request log, in arrival order (after wait_idle(1.0))."""
        self.wait_idle(1.0)
        with self._lock:
            return [dict(e) for e in self._log]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def requests(self, op=None, method=None, fault=...) -> list[dict]:
        """Log entries filtered by op / method (str or iterable) and fault (a kind, None for
        clean ones; default: any)."""
        ops, methods = _as_set(op), {m.upper() for m in _as_set(method)}
        return [e for e in self.log
                if (not ops or e["op"] in ops) and (not methods or e["method"] in methods)
                and (fault is ... or e["fault"] == fault)]

    def counts(self) -> dict:
        """{'requests': n, 'faults': n, 'clean': n, '<kind>': n for each fault kind,
        'op:<Op>': n for each operation seen}."""
        out = {"requests": 0, "faults": 0, "clean": 0, **{k: 0 for k in FAULT_KINDS}}
        for e in self.log:
            out["requests"] += 1
            out[f"op:{e['op']}"] = out.get(f"op:{e['op']}", 0) + 1
            if e["fault"]:
                out["faults"] += 1
                out[e["fault"]] += 1
            else:
                out["clean"] += 1
        return out

    def retries(self) -> list[dict]:
        """For each faulted request (all kinds but "delay"): {'fault': entry, 'retry': the next entry with the same
        method+target or None, 'delay_s': retry.t_start - fault.t_end or None}."""
        log = self.log
        out = []
        for i, e in enumerate(log):
            if not e["fault"] or e["fault"] == "delay":
                continue
            nxt = next((r for r in log[i + 1:]
                        if r["method"] == e["method"] and r["target"] == e["target"]), None)
            delay = (nxt["t_start"] - e["t_end"]) if nxt and e["t_end"] is not None else None
            out.append({"fault": e, "retry": nxt, "delay_s": delay})
        return out

    def unretried(self) -> list[dict]:
        """Faulted requests that were never sent again, or again only without a delay > 0."""
        return [r["fault"] for r in self.retries()
                if r["retry"] is None or r["delay_s"] is None or r["delay_s"] <= 0]

    # -- serving -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conn_seq += 1
                conn_id = self._conn_seq
                self._socks.add(sock)
            threading.Thread(target=self._serve_conn, args=(sock, conn_id),
                             name=f"faultproxy-conn-{conn_id}", daemon=True).start()

    def _serve_conn(self, sock: socket.socket, conn_id: int) -> None:
        sock.settimeout(IDLE_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = _Reader(sock)
        try:
            while not self._stopping:
                keep = self._serve_one(sock, reader, conn_id)
                if not keep:
                    break
        except (OSError, ValueError, ConnectionError):
            pass
        except Exception:  # a proxy bug must not kill the test silently: drop the connection
            import traceback
            traceback.print_exc()
        finally:
            with self._lock:
                self._socks.discard(sock)
            try:
                sock.close()  # a no-op after _reset()
            except OSError:
                pass

    def _decide(self, conn_id: int, method: str, target: str, op: str):
        with self._lock:
            self._seq += 1
            seq = self._seq
            key = (method, target)
            fresh = key not in self._seen
            self._seen.add(key)
            chosen, chosen_idx = None, None
            for idx, rule in enumerate(self._rules):
                if not rule.matches(method, target, op):
                    continue
                if rule.unique and not fresh:
                    continue
                if rule.count_and_select() and chosen is None:
                    chosen, chosen_idx = rule, idx
            entry = {"seq": seq, "conn": conn_id, "t_start": time.monotonic(),
                     "t_end": None, "method": method, "target": target, "op": op,
                     "fault": chosen.fault if chosen else None, "rule": chosen_idx,
                     "status": None, "upstream_status": None, "request_bytes": 0,
                     "response_bytes": 0, "error": None}
            self._log.append(entry)
            return chosen, entry

    def _finish(self, entry: dict, status, response_bytes: int, upstream_status=None) -> None:
        with self._lock:
            entry["t_end"] = time.monotonic()
            entry["status"] = status
            entry["response_bytes"] = response_bytes
            entry["upstream_status"] = upstream_status
            self._idle.notify_all()

    def _serve_one(self, sock: socket.socket, reader: _Reader, conn_id: int) -> bool:
        """Serves one request; True when the client connection can be used again."""
        head = reader.read_head()
        if head is None:
            return False
        t_start = time.monotonic()
        start, pairs, hdrs = _parse_head(head)
        try:
            method, target, version = start.split(" ", 2)
        except ValueError:
            sock.sendall(_error_response(400, "Bad Request", "bad request line", False))
            return False
        method = method.upper()
        if target.startswith(("http://", "https://")):
            u = urllib.parse.urlsplit(target)
            target = (u.path or "/") + (f"?{u.query}" if u.query else "")
            eol = head.index(b"\n")  # keep the line end the client used (CRLF or LF)
            crlf = b"\r\n" if head[eol - 1:eol] == b"\r" else b"\n"
            head = f"{method} {target} {version}".encode("latin-1") + crlf + head[eol + 1:]
        op = classify(method, target, hdrs)

        if hdrs.get("expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            body = reader.read_chunked_raw()
        else:
            body = reader.read_exact(int(hdrs.get("content-length", "0") or "0"))

        rule, entry = self._decide(conn_id, method, target, op)
        with self._lock:
            entry["t_start"] = t_start
            entry["request_bytes"] = len(head) + len(body)
        fault = rule.fault if rule else None
        head_only = method == "HEAD"
        rid = uuid.uuid4().hex[:16].upper()

        if fault == "slowdown":
            data = _error_response(503, "Slow Down", SLOWDOWN_XML.format(rid=rid), head_only)
            self._finish(entry, 503, len(data))  # before the client can see it
            sock.sendall(data)
            return False
        if fault == "internal":
            data = _error_response(500, "Internal Server Error", INTERNAL_XML.format(rid=rid),
                                   head_only)
            self._finish(entry, 500, len(data))  # before the client can see it
            sock.sendall(data)
            return False
        if fault == "reset":
            _reset(sock)
            self._finish(entry, None, 0)
            return False
        if fault == "copy200":
            data = _error_response(200, "OK", COPY200_XML, head_only)
            self._finish(entry, 200, len(data))  # before the client can see it
            sock.sendall(data)
            return False
        if fault == "delay":
            time.sleep(rule.delay_s)
        if fault == "hold":
            with self._lock:
                self._n_held += 1
            self._released.wait(IDLE_TIMEOUT_S)
            with self._lock:
                self._n_held -= 1

        # Forward upstream, then relay (or, for *_after faults, drop) the answer.
        up = None
        try:
            up = socket.create_connection(self.upstream, timeout=UPSTREAM_TIMEOUT_S)
            with self._lock:
                self._socks.add(up)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up.sendall(head + body)
            ur = _Reader(up)
            while True:
                rhead = ur.read_head()
                if rhead is None:
                    raise ConnectionError("upstream closed without an answer")
                rstart, _, rhdrs = _parse_head(rhead)
                status = int(rstart.split(" ", 2)[1])
                if 100 <= status < 200 and status != 101:
                    continue  # interim answer: the client already had our 100 Continue
                break
        except (OSError, ValueError, ConnectionError) as e:
            # Nothing reached the client yet: tell it, as a gateway would.
            if up is not None:
                with self._lock:
                    self._socks.discard(up)
                up.close()
            data = _error_response(502, "Bad Gateway",
                                   f"faultproxy: upstream failed: {e}", head_only)
            self._finish(entry, 502, len(data))  # before the client can see it
            sock.sendall(data)
            return False
        try:
            relay = fault not in ("reset_after", "internal_after")
            sent = 0
            if relay:
                sock.sendall(rhead)
                sent += len(rhead)
            no_body = head_only or status in (204, 304) or 100 <= status < 200
            upstream_closes = "close" in rhdrs.get("connection", "").lower()
            until_eof = False
            if no_body:
                pass
            elif "chunked" in rhdrs.get("transfer-encoding", "").lower():
                raw = ur.read_chunked_raw()
                if relay:
                    sock.sendall(raw)
                    sent += len(raw)
            elif "content-length" in rhdrs:
                left = int(rhdrs["content-length"])
                pending = ur.take_buffer()
                while True:
                    piece, pending = pending[:left], pending[left:]
                    if piece and relay:
                        sock.sendall(piece)
                        sent += len(piece)
                    left -= len(piece)
                    if left <= 0:
                        break
                    pending = up.recv(min(65536, left))
                    if not pending:
                        raise ConnectionError("upstream closed inside a body")
            else:
                until_eof = True
                pending = ur.take_buffer()
                while pending:
                    if relay:
                        sock.sendall(pending)
                        sent += len(pending)
                    pending = up.recv(65536)
        except BaseException as e:
            with self._lock:
                entry["error"] = f"relay failed: {e!r}"
            self._finish(entry, status if relay else None, sent, status)
            raise
        finally:
            with self._lock:
                self._socks.discard(up)
            up.close()

        if fault == "reset_after":
            _reset(sock)
            self._finish(entry, None, 0, status)
            return False
        if fault == "internal_after":
            data = _error_response(500, "Internal Server Error", INTERNAL_XML.format(rid=rid),
                                   head_only)
            self._finish(entry, 500, len(data), status)  # before the client can see it
            sock.sendall(data)
            return False
        self._finish(entry, status, sent, status)
        client_closes = "close" in hdrs.get("connection", "").lower() or version == "HTTP/1.0"
        return not (until_eof or upstream_closes or client_closes)

