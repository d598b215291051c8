/*
 * sync.c — blocking one-shot requests on a private easy handle, for the few objects that
 * are not the hot path: manifests, inventory files, completion reports, and tests.
 *
 * Each call makes its own s3_call and s3_signer (so it is safe from any thread) and retries
 * a retryable outcome (aws-formats.md 8.3) with the backoff every request uses
 * (s3_backoff_ms, full jitter) under S3_RETRY_BLOCKING: 6 attempts, 7.75 s of waiting at
 * worst, because these calls run on the thread that keeps the jobs' heartbeats (a worker
 * whose heartbeat is 30 s old loses its job to another).
 *
 * Deadlines are the request's kind's (limits.c): a GET to a FILE (a manifest, an Inventory
 * data file, a report read as a manifest) has no whole deadline, only the stall detector,
 * and is capped in size: its Content-Length (a longer body is refused) and
 * ep->limits.max_download_bytes (64 GiB by default; an endless body stops there, nothing
 * past it is written). A download that breaks resumes where it stopped with Range and
 * If-Match (the first answer's ETag), so an object replaced meanwhile fails (412) instead
 * of being spliced; a server that ignores the Range sends the whole object and the FILE
 * starts over.
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

static int outcome_ok(const s3_outcome *o)
{
    return o->curl_code == 0 && o->http_status >= 200 && o->http_status < 300 &&
           !o->error_in_200;
}

static unsigned rng_seed(const void *p)
{
    struct timespec seed;
    clock_gettime(CLOCK_MONOTONIC, &seed);
    return (unsigned)(seed.tv_nsec ^ (long)(uintptr_t)p);
}

/* Runs req on c until success, a final failure, or the attempts are used up. */
static int run(const s3_endpoint *ep, const s3_request *req, s3_call *c, s3_outcome *oc)
{
    s3_signer signer;
    s3_signer_init(&signer, &ep->creds, ep->region[0] ? ep->region : "us-east-1");
    int rc = S3_E_OK;
    const s3_retry_policy policy = S3_RETRY_BLOCKING;
    unsigned rng = rng_seed(c);
    for (int attempt = 1; attempt <= policy.max_attempts; attempt++) {
        rc = s3_call_prepare(c, ep, &signer, req, NULL);
        if (rc)
            break;
        CURLcode cc = curl_easy_perform(c->easy);
        s3_outcome_classify(c, (int)cc, 0, oc);
        if (outcome_ok(oc)) {
            rc = S3_E_OK;
            break;
        }
        rc = S3_E_HTTP;
        if (!oc->retryable || attempt == policy.max_attempts)
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
        rc = run(ep, req, &c, oc);
    if (out_resp && c.easy) {
        *out_resp = c.resp; /* hand the body buffer over to the caller */
        s3_buf_init(&c.resp.body, S3_BODY_MAX_BYTES);
        s3_buf_init(&c.resp.headers, S3_HEADERS_MAX_BYTES);
    }
    s3_call_cleanup(&c);
    return rc;
}

/* ---- GET to a FILE: stall detector, size cap, resume ------------------------------------ */

/* An attempt that moved at least this much is progress, not a failure: a 40 GB manifest on
   a link that drops every few minutes still arrives. RESUME_MAX bounds the attempts in all. */
#define RESUME_PROGRESS_BYTES (1u << 20)
#define RESUME_MAX 1000

typedef enum refusal {
    REFUSED_NONE,
    REFUSED_TOO_BIG,   /* larger than the limit */
    REFUSED_LONGER,    /* longer than its Content-Length */
    REFUSED_RANGE,     /* a resumed download answered with another range */
    REFUSED_CHANGED,   /* another ETag than the first answer's */
    REFUSED_REWIND,    /* the whole object again, and the FILE cannot start over */
} refusal;

typedef struct download {
    s3_call *call;
    FILE *out;
    uint64_t written;        /* bytes in the file */
    uint64_t moved;          /* bytes this attempt wrote */
    uint64_t max_bytes;
    int64_t total;           /* the object's length as first announced; -1: not said */
    char etag[S3_ETAG_MAX];  /* the first answer's; a Range request carries it as If-Match */
    int body_started;        /* this attempt's 2xx body began and was checked */
    refusal refused;
    int io_error;
} download;

/* "bytes FIRST-LAST/TOTAL" (TOTAL may be "*": -1). */
static int parse_content_range(const char *v, uint64_t *first, int64_t *total)
{
    char *end;
    if (strncmp(v, "bytes ", 6) != 0)
        return -1;
    unsigned long long f = strtoull(v + 6, &end, 10);
    if (*end != '-')
        return -1;
    strtoull(end + 1, &end, 10);
    if (*end != '/')
        return -1;
    *first = f;
    if (end[1] == '*') {
        *total = -1;
        return 0;
    }
    long long t = strtoll(end + 1, &end, 10);
    if (*end || t < 0)
        return -1;
    *total = t;
    return 0;
}

/* Checks the start of a 2xx body (or a 2xx without one) against what came before. */
static int body_start(download *d)
{
    const s3_response *r = &d->call->resp;
    d->body_started = 1;
    if (d->etag[0] && r->etag[0] && strcmp(d->etag, r->etag) != 0) {
        d->refused = REFUSED_CHANGED;
        return -1;
    }
    if (r->status == 206) {
        uint64_t first;
        int64_t total;
        const char *cr = s3_response_header(r, "content-range");
        if (!cr || parse_content_range(cr, &first, &total) != 0 || first != d->written ||
            (d->total >= 0 && total >= 0 && total != d->total)) {
            d->refused = REFUSED_RANGE;
            return -1;
        }
        if (d->total < 0)
            d->total = total;
    } else {
        if (d->written > 0) { /* the whole object again (Range ignored): start over */
            if (fflush(d->out) != 0 || ftruncate(fileno(d->out), 0) != 0 ||
                fseeko(d->out, 0, SEEK_SET) != 0) {
                d->refused = REFUSED_REWIND;
                return -1;
            }
            d->written = 0;
        }
        d->total = r->content_length;
    }
    if (!d->etag[0])
        snprintf(d->etag, sizeof d->etag, "%s", r->etag);
    if (d->total >= 0 && (uint64_t)d->total > d->max_bytes) {
        d->refused = REFUSED_TOO_BIG;
        return -1;
    }
    return 0;
}

/* A 2xx body goes to the FILE, within the announced length and the limit; any other body
   to resp.body (an <Error>). */
static size_t download_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    download *d = userdata;
    long st = d->call->resp.status;
    if (st < 200 || st > 299)
        return s3__body_write_cb(ptr, size, nmemb, d->call);
    size_t n = size * nmemb;
    if (!d->body_started && body_start(d) != 0)
        return 0;
    if (d->total >= 0 && d->written + n > (uint64_t)d->total) {
        d->refused = REFUSED_LONGER;
        return 0;
    }
    if (d->written + n > d->max_bytes) {
        d->refused = REFUSED_TOO_BIG;
        return 0;
    }
    if (fwrite(ptr, 1, n, d->out) != n) {
        d->io_error = 1;
        return 0;
    }
    d->written += n;
    d->moved += n;
    return n;
}

/* Our own refusal as an outcome: no curl error (the write callback stopped it), the status
   seen, a code and a message that say why. Returns the s3_err for it. */
static int refusal_outcome(const download *d, s3_outcome *oc)
{
    oc->curl_code = 0;
    oc->retryable = 0;
    oc->code[0] = '\0';
    const s3_response *r = &d->call->resp;
    switch (d->refused) {
    case REFUSED_TOO_BIG:
        snprintf(oc->code, sizeof oc->code, "EntityTooLarge");
        if (d->total >= 0 && (uint64_t)d->total > d->max_bytes)
            snprintf(oc->message, sizeof oc->message,
                     "the object is %lld bytes, more than the limit of %llu",
                     (long long)d->total, (unsigned long long)d->max_bytes);
        else
            snprintf(oc->message, sizeof oc->message,
                     "the body passed the limit of %llu bytes without announcing its length",
                     (unsigned long long)d->max_bytes);
        return S3_E_TOO_BIG;
    case REFUSED_LONGER:
        snprintf(oc->message, sizeof oc->message,
                 "the body is longer than the %lld bytes its Content-Length announced",
                 (long long)d->total);
        return S3_E_TOO_BIG;
    case REFUSED_RANGE:
        snprintf(oc->message, sizeof oc->message,
                 "the resumed download (from byte %llu) was answered with Content-Range: %.80s",
                 (unsigned long long)d->written,
                 s3_response_header(r, "content-range") ? s3_response_header(r, "content-range")
                                                        : "(none)");
        return S3_E_HTTP;
    case REFUSED_CHANGED:
        snprintf(oc->message, sizeof oc->message,
                 "the object changed during the download: ETag %.60s, then %.60s", d->etag,
                 r->etag);
        return S3_E_HTTP;
    case REFUSED_REWIND:
        snprintf(oc->message, sizeof oc->message,
                 "the server ignored the Range of a resumed download and the output cannot be "
                 "rewound to start over");
        return S3_E_HTTP;
    case REFUSED_NONE:
        break;
    }
    return S3_E_HTTP;
}

/* Long on purpose (~80 lines): one download from the first GET to the last resume, each
   decision (resume, start over, give up) next to the outcome it reads. */
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
    s3_call c;
    int rc = s3_call_init(&c);
    s3_signer signer;
    s3_signer_init(&signer, &ep->creds, ep->region[0] ? ep->region : "us-east-1");
    const s3_retry_policy policy = S3_RETRY_BLOCKING;
    unsigned rng = rng_seed(&c);
    const s3_limits lim = s3_limits_or_defaults(&ep->limits);
    download d = {.call = &c, .out = out, .max_bytes = lim.max_download_bytes, .total = -1};
    char range[48];
    int fails = 0;
    for (int attempt = 1; !rc; attempt++) {
        s3_request req;
        memset(&req, 0, sizeof req);
        req.method = "GET";
        req.bucket = bucket;
        req.key = key;
        req.keep_headers = 1; /* Content-Range */
        if (version_id && *version_id)
            req.query[req.n_query++] = (s3_query_param){"versionId", version_id};
        /* resume only what cannot have changed: a version, or the first answer's ETag */
        int resume = d.written > 0 && (d.etag[0] || (version_id && *version_id));
        if (resume) {
            snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)d.written);
            req.headers[req.n_headers++] = (s3_header){"range", range};
            if (d.etag[0])
                req.headers[req.n_headers++] = (s3_header){"if-match", d.etag};
        }
        d.body_started = 0;
        d.moved = 0;
        if ((rc = s3_call_prepare(&c, ep, &signer, &req, NULL)) != 0)
            break;
        curl_easy_setopt(c.easy, CURLOPT_WRITEFUNCTION, download_write_cb);
        curl_easy_setopt(c.easy, CURLOPT_WRITEDATA, (void *)&d);
        CURLcode cc = curl_easy_perform(c.easy);
        s3_outcome_classify(&c, (int)cc, 0, oc);
        if (!d.io_error && !d.refused && outcome_ok(oc) && !d.body_started)
            body_start(&d); /* an empty body: the checks still apply */
        if (d.io_error) {
            rc = S3_E_IO;
            break;
        }
        if (d.refused) {
            rc = refusal_outcome(&d, oc);
            break;
        }
        int complete = d.total < 0 || d.written == (uint64_t)d.total;
        if (outcome_ok(oc) && complete)
            break; /* rc 0 */
        if (outcome_ok(oc)) { /* a 206 that stopped short of the end: ask for the rest */
            oc->retryable = 1;
            snprintf(oc->message, sizeof oc->message, "the answer stopped at byte %llu of %lld",
                     (unsigned long long)d.written, (long long)d.total);
        }
        if (resume && oc->http_status == 412)
            snprintf(oc->message, sizeof oc->message,
                     "the object changed during the download: If-Match %.60s refused (412)",
                     d.etag);
        rc = S3_E_HTTP;
        fails = d.moved >= RESUME_PROGRESS_BYTES ? 0 : fails + 1;
        if (!oc->retryable || fails >= policy.max_attempts || attempt >= RESUME_MAX)
            break;
        sleep_ms(s3_backoff_ms(&policy, fails > 0 ? fails : 1, &rng));
        rc = 0;
    }
    memset(&signer, 0, sizeof signer);
    if (!rc && fflush(out) != 0)
        rc = S3_E_IO;
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
        rc = run(ep, &req, &c, oc);
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
        snprintf(err, err_len, "s3://%s/%s: PutObject failed: no HTTP response: %s (curl "
                 "error %d)", bucket, key, oc.message, oc.curl_code);
    else if (oc.http_status == 0)
        snprintf(err, err_len, "s3://%s/%s: PutObject not sent (%s)", bucket, key,
                 s3_strerror(rc));
    else
        snprintf(err, err_len, "s3://%s/%s: PutObject failed: HTTP %ld%s%s%s%s%s", bucket, key,
                 oc.http_status, oc.code[0] ? " " : "", oc.code, oc.message[0] ? " (" : "",
                 oc.message, oc.message[0] ? ")" : "");
    return S3_E_HTTP;
}
