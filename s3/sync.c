/*
 * sync.c — blocking one-shot requests on a private easy handle, for the few objects that
 * are not the hot path: manifests, inventory files, completion reports, and tests.
 *
 * Each call makes its own s3_call and s3_signer (so it is safe from any thread) and retries
 * a retryable outcome (aws-formats.md 8.3) with the backoff every request uses
 * (s3_backoff_ms, full jitter) under S3_RETRY_BLOCKING: 3 attempts, at most 0.2 then
 * 0.4 s apart, because these calls run on the thread that keeps the jobs' heartbeats
 * (a worker whose heartbeat is 30 s old loses its job to another). A GET to a FILE is retried only while nothing has been written to the
 * file yet: the FILE may be a pipe, which cannot be rewound.
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SINGLE_PUT_MAX_BYTES (5ull << 30) /* S3 PutObject limit */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* For s3_get_to_file: a 2xx body goes to the FILE, any other body to resp.body. */
typedef struct file_sink {
    s3_call *call;
    FILE *out;
    uint64_t written;
    int io_error;
} file_sink;

static size_t file_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    file_sink *fs = userdata;
    long st = fs->call->resp.status;
    if (st < 200 || st > 299)
        return s3__body_write_cb(ptr, size, nmemb, fs->call);
    size_t n = size * nmemb;
    if (fwrite(ptr, 1, n, fs->out) != n) {
        fs->io_error = 1;
        return 0;
    }
    fs->written += n;
    return n;
}

static int outcome_ok(const s3_outcome *o)
{
    return o->curl_code == 0 && o->http_status >= 200 && o->http_status < 300 &&
           !o->error_in_200;
}

/* Runs req on c until success, a final failure, or the attempts are used up. */
static int run(const s3_endpoint *ep, const s3_request *req, s3_call *c, file_sink *fs,
               s3_outcome *oc)
{
    s3_signer signer;
    s3_signer_init(&signer, &ep->creds, ep->region[0] ? ep->region : "us-east-1");
    int rc = S3_E_OK;
    const s3_retry_policy policy = S3_RETRY_BLOCKING;
    struct timespec seed;
    clock_gettime(CLOCK_MONOTONIC, &seed);
    unsigned rng = (unsigned)(seed.tv_nsec ^ (long)(uintptr_t)c);
    for (int attempt = 1; attempt <= policy.max_attempts; attempt++) {
        rc = s3_call_prepare(c, ep, &signer, req, NULL);
        if (rc)
            break;
        if (fs) {
            curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, file_write_cb);
            curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, (void *)fs);
        }
        CURLcode cc = curl_easy_perform(c->easy);
        s3_outcome_classify(c, (int)cc, 0, oc);
        if (fs && fs->io_error) {
            rc = S3_E_IO;
            break;
        }
        if (outcome_ok(oc)) {
            rc = S3_E_OK;
            break;
        }
        rc = S3_E_HTTP;
        if (!oc->retryable || (fs && fs->written) || attempt == policy.max_attempts)
            break;
        sleep_ms(s3_backoff_ms(&policy, attempt, &rng));
    }
    memset(&signer, 0, sizeof signer);
    return rc;
}

int s3_perform(const s3_endpoint *ep, const s3_request *req, s3_response *out_resp,
               s3_outcome *out_outcome)
{
    s3_outcome local;
    s3_outcome *oc = out_outcome ? out_outcome : &local;
    memset(oc, 0, sizeof *oc);
    if (out_resp) {
        memset(out_resp, 0, sizeof *out_resp);
        s3_buf_init(&out_resp->body, S3_BODY_MAX_BYTES);
        s3_buf_init(&out_resp->headers, S3_HEADERS_MAX_BYTES);
        out_resp->content_length = -1;
    }
    if (!ep || !req)
        return S3_E_ARG;
    s3_call c;
    int rc = s3_call_init(&c);
    if (!rc)
        rc = run(ep, req, &c, NULL, oc);
    if (out_resp && c.easy) {
        *out_resp = c.resp; /* hand the body buffer over to the caller */
        s3_buf_init(&c.resp.body, S3_BODY_MAX_BYTES);
        s3_buf_init(&c.resp.headers, S3_HEADERS_MAX_BYTES);
    }
    s3_call_cleanup(&c);
    return rc;
}

int s3_get_to_file(const s3_endpoint *ep, const char *bucket, const char *key,
                   const char *version_id, FILE *out, s3_response *out_resp,
                   s3_outcome *out_outcome)
{
    s3_outcome local;
    s3_outcome *oc = out_outcome ? out_outcome : &local;
    memset(oc, 0, sizeof *oc);
    if (out_resp) {
        memset(out_resp, 0, sizeof *out_resp);
        s3_buf_init(&out_resp->body, S3_BODY_MAX_BYTES);
        s3_buf_init(&out_resp->headers, S3_HEADERS_MAX_BYTES);
        out_resp->content_length = -1;
    }
    if (!ep || !bucket || !key || !*key || !out)
        return S3_E_ARG;
    s3_request req;
    memset(&req, 0, sizeof req);
    req.method = "GET";
    req.bucket = bucket;
    req.key = key;
    if (version_id && *version_id) {
        req.query[0].name = "versionId";
        req.query[0].value = version_id;
        req.n_query = 1;
    }
    s3_call c;
    int rc = s3_call_init(&c);
    if (!rc) {
        file_sink fs = {&c, out, 0, 0};
        rc = run(ep, &req, &c, &fs, oc);
        if (!rc && fflush(out) != 0)
            rc = S3_E_IO;
    }
    if (out_resp && c.easy) {
        *out_resp = c.resp;
        s3_buf_init(&c.resp.body, S3_BODY_MAX_BYTES);
        s3_buf_init(&c.resp.headers, S3_HEADERS_MAX_BYTES);
    }
    s3_call_cleanup(&c);
    return rc;
}

int s3_put_bytes(const s3_endpoint *ep, const char *bucket, const char *key, const void *data,
                 size_t len, const char *content_type, s3_outcome *out_outcome)
{
    s3_outcome local;
    s3_outcome *oc = out_outcome ? out_outcome : &local;
    memset(oc, 0, sizeof *oc);
    if (!ep || !bucket || !key || !*key || (len && !data))
        return S3_E_ARG;
    s3_request req;
    memset(&req, 0, sizeof req);
    req.method = "PUT";
    req.bucket = bucket;
    req.key = key;
    req.body = data;
    req.body_len = len;
    if (content_type && *content_type) {
        req.headers[0].name = "content-type";
        req.headers[0].value = content_type;
        req.n_headers = 1;
    }
    s3_call c;
    int rc = s3_call_init(&c);
    if (!rc)
        rc = run(ep, &req, &c, NULL, oc);
    s3_call_cleanup(&c);
    return rc;
}

int s3_backoff_ms(const s3_retry_policy *p, int retry, unsigned *rng)
{
    int shift = retry < 1 ? 0 : retry > 21 ? 20 : retry - 1; /* base * 2^(retry-1) */
    int64_t ceiling = (int64_t)p->base_ms << shift;
    if (ceiling > p->cap_ms)
        ceiling = p->cap_ms;
    return (int)(rand_r(rng) % (unsigned)(ceiling + 1)); /* full jitter */
}

int s3_put_file(const s3_endpoint *ep, const char *bucket, const char *key, const char *path,
                const char *content_type, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return S3_E_IO;
    }
    size_t len = (size_t)st.st_size;
    if ((unsigned long long)st.st_size > SINGLE_PUT_MAX_BYTES) {
        snprintf(err, err_len, "%s is %llu bytes, more than one PutObject takes (5 GiB)", path,
                 (unsigned long long)st.st_size);
        close(fd);
        return S3_E_TOO_BIG;
    }
    void *data = NULL;
    if (len > 0 && (data = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        snprintf(err, err_len, "cannot map %s: %s", path, strerror(errno));
        close(fd);
        return S3_E_IO;
    }
    close(fd);
    s3_outcome oc;
    memset(&oc, 0, sizeof oc);
    int rc = s3_put_bytes(ep, bucket, key, len ? data : "", len, content_type, &oc);
    if (len > 0)
        munmap(data, len);
    if (rc == S3_E_OK)
        return S3_E_OK;
    if (oc.http_status == 0 && oc.curl_code != 0)
        snprintf(err, err_len, "s3://%s/%s: PutObject failed: no HTTP response (curl error %d: %s)",
                 bucket, key, oc.curl_code, curl_easy_strerror((CURLcode)oc.curl_code));
    else if (oc.http_status == 0)
        snprintf(err, err_len, "s3://%s/%s: PutObject not sent (%s)", bucket, key,
                 s3_strerror(rc));
    else
        snprintf(err, err_len, "s3://%s/%s: PutObject failed: HTTP %ld%s%s%s%s%s", bucket, key,
                 oc.http_status, oc.code[0] ? " " : "", oc.code, oc.message[0] ? " (" : "",
                 oc.message, oc.message[0] ? ")" : "");
    return S3_E_HTTP;
}
