#!/usr/bin/env python3
"""test_sigv4_moto.py — our SigV4 signer and request building against a server that checks
signatures: moto_server with INITIAL_NO_AUTH_ACTION_COUNT=3 and an IAM user (harness.Moto,
auth=True), driven through build/tests/tools/s3probe (s3_endpoint_load + s3_perform).

Checks, with the user's key:
  - CreateBucket, PutBucketVersioning (bare ?versioning + body hash), PutObject with a key
    holding spaces and a padded metadata value, HEAD, GET ?versionId, ListObjectVersions
    with a prefix holding a space: 200;
  - CopyObject with x-amz-copy-source?versionId plus x-amz-tagging / x-amz-tagging-directive
    and x-amz-metadata-directive (header names that are prefixes of others), and
    UploadPartCopy with x-amz-copy-source-range: 200, and the tags really set;
  - a wrong secret: 403 SignatureDoesNotMatch; an unknown key id: 403 InvalidAccessKeyId.
moto 5.2.1 with auth rejects keys with '+', '%' or non-ASCII, and query values with '/' or
non-ASCII, even from boto3 (its own canonical request differs), so for those we check we get
what boto3 gets. Their encoding
is then checked against a second moto without auth: the object must land under exactly
that key (boto3 lists and reads it), also as a copy source.

Environment of s3probe: AWS_ENDPOINT_URL=<moto>, the user's keys, AWS_CONFIG_FILE and
AWS_SHARED_CREDENTIALS_FILE = /dev/null, no AWS_PROFILE. The servers are stopped by PID at
the end whatever happens (harness.Moto is a context manager; try/finally).
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD_DIR, Moto, Tap  # noqa: E402

PROBE = os.path.join(BUILD_DIR, "tests", "tools", "s3probe")
t = Tap()


def probe_env(url, key, secret):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret,
               AWS_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    return env


def probe(env, *args):
    """Runs s3probe; returns (status, code, fields dict, body text after the first line)."""
    p = subprocess.run([PROBE, *args], env=env, capture_output=True, timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    first, _, rest = out.partition("\n")
    m = re.match(r"status=(\d+) code=(\S*)", first)
    if p.returncode != 0 or not m:
        t.diag(f"s3probe {' '.join(args)}: rc={p.returncode} out={out!r} "
               f"err={p.stderr.decode('utf-8', 'replace')!r}")
        return -1, "", {}, ""
    fields = dict(kv.split("=", 1) for kv in first.split(" ") if "=" in kv)
    return int(m.group(1)), m.group(2), fields, rest


def boto_status(fn):
    try:
        fn()
        return 200
    except Exception as e:  # botocore ClientError
        return int(getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def signed_checks(m):
    env = probe_env(m.url, m.access_key, m.secret_key)
    s3 = m.client()

    st, code, _, _ = probe(env, "PUT", "src")
    t.eq((st, code), (200, ""), "CreateBucket src signed by us: 200")
    st, _, _, _ = probe(env, "--query", "versioning", "--body",
                        '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                        "<Status>Enabled</Status></VersioningConfiguration>", "PUT", "src")
    t.eq(st, 200, "PutBucketVersioning (bare ?versioning, body sha256): 200")
    t.eq(s3.get_bucket_versioning(Bucket="src").get("Status"), "Enabled", "versioning is on")

    key = "dir/my file  with spaces.txt"
    st, code, f, _ = probe(env, "--header", "content-type:text/plain", "--header",
                           "x-amz-meta-note:  padded   value ", "--body", "hello world",
                           "PUT", "src", key)
    vid = f.get("version_id", "")
    t.ok(st == 200 and vid, f"PutObject {key!r}: 200 with a version id (got {st} {code} {vid!r})")
    got = s3.get_object(Bucket="src", Key=key)
    t.eq(got["Body"].read(), b"hello world", "boto3 reads the object under the exact key")
    t.eq(got["Metadata"].get("note"), "padded   value", "metadata header sent trimmed, inner spaces kept")

    st, _, _, _ = probe(env, "HEAD", "src", key)
    t.eq(st, 200, "HEAD: 200")
    st, _, _, body = probe(env, "--query", f"versionId={vid}", "--print-body", "GET", "src", key)
    t.ok(st == 200 and body == "hello world", f"GET ?versionId: 200 and the body ({st})")
    st, _, _, _ = probe(env, "--body", "x", "PUT", "src", "my file.txt")
    st, _, _, body = probe(env, "--query", "versions", "--query", "prefix=my f",
                           "--query", "max-keys=10", "--print-body", "GET", "src")
    t.ok(st == 200 and "<Key>my file.txt</Key>" in body,
         f"ListObjectVersions ?versions&prefix=<space>&max-keys: 200 and lists the key ({st})")
    # moto 5.2.1 with auth cannot verify a query value holding '/' or non-ASCII, even boto3's
    for pfx in ("dir/my file", "é"):
        ours, _, _, _ = probe(env, "--query", "versions", "--query", f"prefix={pfx}", "GET", "src")
        theirs = boto_status(lambda: s3.list_object_versions(Bucket="src", Prefix=pfx))
        t.eq(ours, theirs, f"ListObjectVersions prefix={pfx!r}: same status as boto3 ({theirs})")

    st, _, _, _ = probe(env, "PUT", "dst")
    t.eq(st, 200, "CreateBucket dst: 200")
    st, code, f, body = probe(env, "--copy-source", "src", key, "--copy-version", vid,
                              "--header", "x-amz-tagging:a=1&b=two%20words",
                              "--header", "x-amz-tagging-directive:REPLACE",
                              "--header", "x-amz-metadata-directive:COPY",
                              "--expect-xml", "--print-body", "PUT", "dst", "copied key")
    t.ok(st == 200 and code == "" and "<ETag>" in body,
         f"CopyObject with copy-source?versionId + tagging + tagging-directive: 200 ({st} {code})")
    tags = {x["Key"]: x["Value"] for x in s3.get_object_tagging(Bucket="dst", Key="copied key")["TagSet"]}
    t.eq(tags, {"a": "1", "b": "two words"}, "the copy carries the REPLACE tags")
    t.eq(s3.get_object(Bucket="dst", Key="copied key")["Body"].read(), b"hello world",
         "the copy has the source's bytes")

    st, _, _, body = probe(env, "--query", "uploads", "--print-body", "POST", "dst", "mp")
    upload = re.search(r"<UploadId>([^<]+)</UploadId>", body)
    t.ok(st == 200 and upload, f"CreateMultipartUpload (POST ?uploads): 200 ({st})")
    if upload:
        uid = upload.group(1)
        st, code, _, _ = probe(env, "--query", "partNumber=1", "--query", f"uploadId={uid}",
                               "--copy-source", "src", key, "--copy-version", vid,
                               "--header", "x-amz-copy-source-range:bytes=0-4",
                               "--expect-xml", "PUT", "dst", "mp")
        t.eq((st, code), (200, ""), "UploadPartCopy with x-amz-copy-source-range: 200")
        st, _, _, _ = probe(env, "--query", f"uploadId={uid}", "DELETE", "dst", "mp")
        t.eq(st, 204, "AbortMultipartUpload: 204")

    st, _, f, _ = probe(env, "DELETE", "dst", "copied key")
    t.eq(st, 204, "DeleteObject: 204")

    # keys that moto 5.2.1 with auth cannot verify even for boto3: we must match boto3
    for k in ("a+b", "données/日本語 ☃.txt", "100%.txt"):
        ours, _, _, _ = probe(env, "--body", "x", "PUT", "src", k)
        theirs = boto_status(lambda: s3.put_object(Bucket="src", Key=k, Body=b"x"))
        t.eq(ours, theirs, f"PutObject {k!r}: same status as boto3 ({theirs})")

    bad = probe_env(m.url, m.access_key, m.secret_key[:-1] + ("A" if m.secret_key[-1] != "A" else "B"))
    st, code, _, _ = probe(bad, "HEAD", "src", key)
    t.eq((st, code), (403, ""), "HEAD with a wrong secret: 403 (no body on HEAD)")
    st, code, _, _ = probe(bad, "GET", "src", key)
    t.eq((st, code), (403, "SignatureDoesNotMatch"), "GET with a wrong secret: 403 SignatureDoesNotMatch")
    st, code, _, _ = probe(probe_env(m.url, "AKIANOSUCHKEY0000000", "x"), "GET", "src", key)
    t.eq((st, code), (403, "InvalidAccessKeyId"), "GET with an unknown key id: 403 InvalidAccessKeyId")


def encoding_checks(m):
    """Without signature checks: tricky keys must land under exactly their name."""
    env = probe_env(m.url, m.access_key, m.secret_key)
    s3 = m.client()
    st, _, _, _ = probe(env, "PUT", "enc")
    t.eq(st, 200, "unsigned-check server: CreateBucket enc")
    keys = ["a+b c", "données/日本語 ☃.txt", "100%25 real%.txt", "q?x=1&y#z", "~tilde/'quote'(p)*!$,;:@=",
            "tab\there", "k" * 1000 + "/" + "é" * 10]
    for k in keys:
        st, code, _, _ = probe(env, "--body", k, "PUT", "enc", k)
        ok = st == 200
        if ok:
            try:
                ok = s3.get_object(Bucket="enc", Key=k)["Body"].read() == k.encode()
            except Exception as e:
                t.diag(f"boto3 get {k!r}: {e}")
                ok = False
        t.ok(ok, f"PutObject {k[:40]!r}: 200 and boto3 reads it under that exact key")
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="enc").get("Contents", []))
    t.eq(listed, sorted(keys), "the bucket lists exactly the keys we wrote")
    for k in keys[:4]:
        st, code, _, _ = probe(env, "--copy-source", "enc", k, "--expect-xml", "PUT", "enc", "copy/" + k)
        ok = st == 200 and code == ""
        if ok:
            ok = s3.get_object(Bucket="enc", Key="copy/" + k)["Body"].read() == k.encode()
        t.ok(ok, f"CopyObject from {k!r}: x-amz-copy-source encoding finds the source ({st} {code})")


def main():
    if not os.access(PROBE, os.X_OK):
        t.ok(False, f"{PROBE} is built (make)")
        t.done()
    try:
        with Moto(auth=True) as m:
            signed_checks(m)
        with Moto(auth=False) as m:
            encoding_checks(m)
    except Exception as e:  # a crash is a failed test, with its reason
        t.ok(False, f"test ran to the end: {type(e).__name__}: {e}")
    t.done()


if __name__ == "__main__":
    main()
