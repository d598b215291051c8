/*
 * test_limits.c — what one request may cost (s3/limits.c) and the CA bundle check
 * (s3_endpoint_check_ca): table-driven.
 *
 *   - every request the engine and the blocking calls send is named and given its kind's
 *     deadlines by s3_call_prepare (metadata: one whole deadline; data: a stall detector
 *     only; copy: a deadline grown by the bytes copied), with the defaults and with limits
 *     set;
 *   - a bundle that is missing, a folder, empty or garbage is refused with the setting and
 *     the file named; a real PEM certificate is accepted.
 * The timeouts themselves (a silent server, a trickle) are exercised end to end by
 * tests/integration/test_hostile_servers.py.
 */
#include "s3/s3.h"
#include "tests/unit/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_deadlines(void)
{
    static const struct {
        const char *what;
        const char *method;
        const char *key;              /* NULL: bucket-level */
        const char *q1, *q2;          /* query parameter names */
        const char *h1, *v1;          /* one request header */
        int64_t copy_bytes;
        s3_limits limits;
        const char *op;
        long connect_ms, total_ms, stall_s;
    } cases[] = {
        {"HEAD of a version", "HEAD", "k", "versionId", NULL, NULL, NULL, 0, {0, 0, 0, 0},
         "HeadObject", 5000, 10000, 0},
        {"a listing page", "GET", NULL, "versions", "prefix", NULL, NULL, 0, {0, 0, 0, 0},
         "ListObjectVersions", 5000, 10000, 0},
        {"tags", "GET", "k", "tagging", "versionId", NULL, NULL, 0, {0, 0, 0, 0},
         "GetObjectTagging", 5000, 10000, 0},
        {"GetObject: no whole deadline, a stall detector", "GET", "k", "versionId", NULL,
         NULL, NULL, 0, {0, 0, 0, 0}, "GetObject", 5000, 0, 20},
        {"a ranged part GET", "GET", "k", "versionId", NULL, "range", "bytes=0-99", 0,
         {0, 0, 0, 0}, "GetObject", 5000, 0, 20},
        {"PutObject", "PUT", "k", NULL, NULL, NULL, NULL, 0, {0, 0, 0, 0}, "PutObject", 5000,
         0, 20},
        {"UploadPart", "PUT", "k", "partNumber", "uploadId", NULL, NULL, 0, {0, 0, 0, 0},
         "UploadPart", 5000, 0, 20},
        {"CopyObject of 5 GiB: 10 s + 1280 s", "PUT", "k", NULL, NULL, "x-amz-copy-source",
         "src/k", (int64_t)5 << 30, {0, 0, 0, 0}, "CopyObject", 5000, 10000 + 1280000, 0},
        {"CopyObject of unknown size", "PUT", "k", NULL, NULL, "x-amz-copy-source", "src/k", 0,
         {0, 0, 0, 0}, "CopyObject", 5000, 10000, 0},
        {"UploadPartCopy of 8 MiB (its range)", "PUT", "k", "partNumber", "uploadId",
         "x-amz-copy-source", "src/k", 0, {0, 0, 0, 0}, "UploadPartCopy", 5000, 12000, 0},
        {"CompleteMultipartUpload of 1 GiB", "POST", "k", "uploadId", NULL, NULL, NULL,
         (int64_t)1 << 30, {0, 0, 0, 0}, "CompleteMultipartUpload", 5000, 10000 + 256000, 0},
        {"CreateMultipartUpload", "POST", "k", "uploads", NULL, NULL, NULL, 0, {0, 0, 0, 0},
         "CreateMultipartUpload", 5000, 10000, 0},
        {"AbortMultipartUpload", "DELETE", "k", "uploadId", NULL, NULL, NULL, 0, {0, 0, 0, 0},
         "AbortMultipartUpload", 5000, 10000, 0},
        {"DeleteObject", "DELETE", "k", NULL, NULL, NULL, NULL, 0, {0, 0, 0, 0},
         "DeleteObject", 5000, 10000, 0},
        {"HeadBucket", "HEAD", NULL, NULL, NULL, NULL, NULL, 0, {0, 0, 0, 0}, "HeadBucket",
         5000, 10000, 0},
        {"GetBucketReplication", "GET", NULL, "replication", NULL, NULL, NULL, 0, {0, 0, 0, 0},
         "GetBucketReplication", 5000, 10000, 0},
        {"limits set: HEAD", "HEAD", "k", NULL, NULL, NULL, NULL, 0, {250, 1500, 3, 0},
         "HeadObject", 250, 1500, 0},
        {"limits set: GetObject", "GET", "k", NULL, NULL, NULL, NULL, 0, {250, 1500, 3, 0},
         "GetObject", 250, 0, 3},
        {"limits set: CopyObject of 40 MiB", "PUT", "k", NULL, NULL, "x-amz-copy-source",
         "src/k", (int64_t)40 << 20, {250, 1500, 3, 0}, "CopyObject", 250, 1500 + 10000, 0},
    };
    s3_call c;
    if (!tap_ok(s3_call_init(&c) == 0, "s3_call_init"))
        return;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        s3_endpoint ep;
        memset(&ep, 0, sizeof ep);
        snprintf(ep.base_url, sizeof ep.base_url, "http://127.0.0.1:9");
        snprintf(ep.region, sizeof ep.region, "us-east-1");
        snprintf(ep.creds.access_key, sizeof ep.creds.access_key, "AKID");
        snprintf(ep.creds.secret_key, sizeof ep.creds.secret_key, "secret");
        ep.path_style = 1;
        ep.limits = cases[i].limits;
        s3_signer sg;
        s3_signer_init(&sg, &ep.creds, ep.region);
        s3_request r = {.method = cases[i].method, .bucket = "bkt", .key = cases[i].key};
        if (cases[i].q1)
            r.query[r.n_query++] = (s3_query_param){cases[i].q1, "1"};
        if (cases[i].q2)
            r.query[r.n_query++] = (s3_query_param){cases[i].q2, "1"};
        if (cases[i].h1)
            r.headers[r.n_headers++] = (s3_header){cases[i].h1, cases[i].v1};
        if (strcmp(cases[i].op, "UploadPartCopy") == 0) /* the part's size is its range */
            r.headers[r.n_headers++] =
                (s3_header){"x-amz-copy-source-range", "bytes=8388608-16777215"};
        if (strcmp(cases[i].method, "PUT") == 0 || strcmp(cases[i].method, "POST") == 0) {
            r.body = "x";
            r.body_len = 1;
        }
        s3_call_opts o = {.copy_bytes = cases[i].copy_bytes};
        int rc = s3_call_prepare(&c, &ep, &sg, &r, &o);
        s3_op_kind kind;
        const char *name = s3_op_name(&r, &kind);
        tap_ok(rc == 0 && c.op && strcmp(c.op, cases[i].op) == 0 && strcmp(name, c.op) == 0 &&
                   c.connect_timeout_ms == cases[i].connect_ms &&
                   c.timeout_ms == cases[i].total_ms && c.stall_timeout_s == cases[i].stall_s,
               "%s: %s, connect %ld ms, whole %ld ms, stall %ld s (got rc %d %s %ld %ld %ld)",
               cases[i].what, cases[i].op, cases[i].connect_ms, cases[i].total_ms,
               cases[i].stall_s, rc, c.op ? c.op : "(null)", c.connect_timeout_ms,
               c.timeout_ms, c.stall_timeout_s);
    }
    s3_call_cleanup(&c);

    s3_limits d = s3_limits_or_defaults(NULL);
    tap_ok(d.connect_timeout_ms == 5000 && d.request_timeout_ms == 10000 &&
               d.stall_timeout_s == 20 && d.max_download_bytes == (64ull << 30),
           "defaults: connect 5 s, request 10 s, stall 20 s, downloads up to 64 GiB");
}

/* A real self-signed certificate, made by openssl (Debian's openssl is a build
   dependency); NULL when it cannot be made. */
static int make_cert(const char *dir, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/cert.pem", dir);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    char cmd[2048];
    n = snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                 "-keyout '%s/key.pem' -out '%s' >/dev/null 2>&1", dir, out);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_ca_bundle(void)
{
    char dir[] = "/tmp/batchrep-test-limits-XXXXXX";
    if (!tap_ok(mkdtemp(dir) != NULL, "temp dir"))
        return;
    char cert[512], empty[512], garbage[512], missing[512];
    int have_cert = make_cert(dir, cert, sizeof cert) == 0;
    snprintf(empty, sizeof empty, "%s/empty.pem", dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.pem", dir);
    snprintf(missing, sizeof missing, "%s/missing.pem", dir);
    write_file(empty, "");
    write_file(garbage, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                        "-----END CERTIFICATE-----\n");
    static const struct {
        const char *what;
        int which; /* 0 none, 1 cert, 2 empty, 3 garbage, 4 missing, 5 the folder */
        int want_rc;
        const char *want_text; /* in the message */
    } cases[] = {
        {"no bundle: nothing to check", 0, S3_E_OK, ""},
        {"a PEM certificate", 1, S3_E_OK, ""},
        {"an empty file", 2, S3_E_CONFIG, "no usable PEM certificate"},
        {"garbage between PEM markers", 3, S3_E_CONFIG, "no usable PEM certificate"},
        {"a missing file", 4, S3_E_CONFIG, "cannot be read: No such file"},
        {"a folder", 5, S3_E_CONFIG, "is not a file"},
    };
    const char *paths[] = {"", cert, empty, garbage, missing, dir};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].which == 1 && !have_cert) {
            tap_diag("skipped (openssl could not make a certificate): %s", cases[i].what);
            continue;
        }
        s3_endpoint ep;
        memset(&ep, 0, sizeof ep);
        snprintf(ep.ca_bundle, sizeof ep.ca_bundle, "%s", paths[cases[i].which]);
        snprintf(ep.ca_bundle_from, sizeof ep.ca_bundle_from, "AWS_CA_BUNDLE");
        char err[1024];
        int rc = s3_endpoint_check_ca(&ep, err, sizeof err);
        tap_ok(rc == cases[i].want_rc && strstr(err, cases[i].want_text) &&
                   (rc == 0 || (strstr(err, "AWS_CA_BUNDLE") && strstr(err, ep.ca_bundle))),
               "CA bundle, %s: rc %d (got %d: \"%s\")", cases[i].what, cases[i].want_rc, rc,
               err);
    }
    char cmd[600];
    int n = snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (n > 0 && (size_t)n < sizeof cmd && system(cmd) != 0)
        tap_diag("could not remove %s", dir);
}

int main(void)
{
    test_deadlines();
    test_ca_bundle();
    return tap_done();
}
