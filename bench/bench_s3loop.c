/*
 * bench_s3loop.c — a bare request loop: the server's ceiling for the end-to-end benchmarks
 * (issue 5), and the fast way to fill a bucket for them. One thread, one curl multi handle,
 * CONC reused easy handles, requests built and signed by the s3 module exactly as the engine
 * does (s3_call_prepare), nothing else: no planner, no report, no state.
 *
 *   bench_s3loop mkbucket BUCKET...                 create, enable versioning (blocking)
 *   bench_s3loop put BUCKET NKEYS VERSIONS SIZE CONC MANIFEST_OUT
 *        PUTs VERSIONS versions of keys obj/000000.. (SIZE bytes each; version v of every
 *        key before version v+1 of any), then writes the S3BatchOperations_CSV_20180820
 *        manifest "BUCKET,obj/NNNNNN,VERSIONID" (a key's versions on consecutive rows,
 *        oldest first) from the x-amz-version-id of each answer
 *   bench_s3loop copy MANIFEST DST_BUCKET CONC
 *        one CopyObject per manifest row (x-amz-copy-source with versionId, the engine's
 *        COPY directives) into DST_BUCKET, same key
 *   bench_s3loop head MANIFEST CONC                 one HeadObject?versionId per row
 * Endpoint and keys from the environment (AWS_ENDPOINT_URL, ...) as batchrep reads them.
 * Prints one machine-readable line:
 *   bench=s3loop op=copy requests=10000 ok=10000 failed=0 conc=32 seconds=18.1
 *     requests_per_s=552 cpu_s=0.61 cpu_us_per_request=61 peak_rss_kb=9000
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "manifest/manifest.h"
#include "s3/s3.h"

typedef struct job {
    char bucket[64];
    char key[1100];
    char vid[256];
} job;

typedef struct slot {
    s3_call call;
    long job_idx; /* -1: free */
    int attempts;
} slot;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(long *out_rss_kb)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *out_rss_kb = ru.ru_maxrss;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static s3_endpoint g_ep;
static s3_signer g_signer;

enum op { OP_PUT, OP_COPY, OP_HEAD };

typedef struct run {
    enum op op;
    job *jobs;
    long n_jobs;
    const char *dst_bucket;
    char (*out_vid)[256]; /* OP_PUT: version id per job */
    const char *body;
    size_t body_len;
    s3_buf scratch;
} run;

static int build(run *r, long i, s3_request *req)
{
    memset(req, 0, sizeof *req);
    job *j = &r->jobs[i];
    switch (r->op) {
    case OP_PUT:
        req->method = "PUT";
        req->bucket = j->bucket;
        req->key = j->key;
        req->body = r->body;
        req->body_len = r->body_len;
        break;
    case OP_HEAD:
        req->method = "HEAD";
        req->bucket = j->bucket;
        req->key = j->key;
        req->query[0] = (s3_query_param){"versionId", j->vid};
        req->n_query = j->vid[0] ? 1 : 0;
        break;
    case OP_COPY:
        req->method = "PUT";
        req->bucket = r->dst_bucket;
        req->key = j->key;
        if (s3_copy_source(&r->scratch, j->bucket, j->key, j->vid) != 0)
            return -1;
        req->headers[0] = (s3_header){"x-amz-copy-source", r->scratch.ptr};
        req->headers[1] = (s3_header){"x-amz-metadata-directive", "COPY"};
        req->headers[2] = (s3_header){"x-amz-tagging-directive", "COPY"};
        req->n_headers = 3;
        break;
    }
    return 0;
}

/* Runs every job with conc transfers in flight; returns the number that failed. */
static long run_all(run *r, int conc, long *out_ok)
{
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    slot *slots = calloc((size_t)conc, sizeof *slots);
    for (int i = 0; i < conc; i++) {
        s3_call_init(&slots[i].call);
        curl_easy_setopt(slots[i].call.easy, CURLOPT_PRIVATE, &slots[i]);
        slots[i].job_idx = -1;
    }
    long next = 0, ok = 0, failed = 0, running_jobs = 0;
    /* retried jobs go to the back: at most one per slot is pending */
    long *retry = calloc((size_t)conc + 1, sizeof *retry);
    long n_retry = 0;
    for (;;) {
        for (int i = 0; i < conc; i++) {
            slot *s = &slots[i];
            if (s->job_idx >= 0)
                continue;
            long j;
            if (n_retry > 0)
                j = retry[--n_retry];
            else if (next < r->n_jobs)
                j = next++;
            else
                break;
            s3_request req;
            if (build(r, j, &req) != 0 ||
                s3_call_prepare(&s->call, &g_ep, &g_signer, &req, NULL) != 0) {
                failed++;
                continue;
            }
            s->job_idx = j;
            curl_multi_add_handle(multi, s->call.easy);
            running_jobs++;
        }
        if (running_jobs == 0)
            break;
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            slot *s = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_multi_remove_handle(multi, s->call.easy);
            running_jobs--;
            s3_outcome oc;
            s3_outcome_classify(&s->call, (int)m->data.result, r->op == OP_COPY, &oc);
            if (oc.http_status / 100 == 2 && !oc.error_in_200) {
                ok++;
                if (r->op == OP_PUT)
                    snprintf(r->out_vid[s->job_idx], 256, "%s", s->call.resp.version_id);
                s->attempts = 0;
            } else if (oc.retryable && s->attempts < 5) {
                s->attempts++;
                retry[n_retry++] = s->job_idx;
            } else {
                if (failed < 5)
                    fprintf(stderr, "bench_s3loop: %s: HTTP %ld %s %s\n", r->jobs[s->job_idx].key,
                            oc.http_status, oc.code, oc.message);
                failed++;
                s->attempts = 0;
            }
            s->job_idx = -1;
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < conc; i++)
        s3_call_cleanup(&slots[i].call);
    free(slots);
    free(retry);
    curl_multi_cleanup(multi);
    *out_ok = ok;
    return failed;
}

static void report(const char *op, long n, long ok, long failed, int conc, double secs,
                   double cpu)
{
    long rss;
    cpu_s(&rss);
    printf("bench=s3loop op=%s requests=%ld ok=%ld failed=%ld conc=%d seconds=%.3f "
           "requests_per_s=%.0f cpu_s=%.3f cpu_us_per_request=%.1f peak_rss_kb=%ld\n",
           op, n, ok, failed, conc, secs, (double)ok / secs, cpu,
           n ? cpu * 1e6 / (double)n : 0.0, rss);
    fflush(stdout);
}

static long load_manifest(const char *path, job **out)
{
    char err[1024];
    mf_reader *rd = mf_open_csv(path, path, NULL, err, sizeof err);
    if (!rd) {
        fprintf(stderr, "bench_s3loop: %s\n", err);
        return -1;
    }
    long cap = 1024, n = 0;
    job *jobs = malloc((size_t)cap * sizeof *jobs);
    mf_entry e;
    int rc;
    while ((rc = mf_next(rd, &e, err, sizeof err)) == 1) {
        if (n == cap) {
            cap *= 2;
            jobs = realloc(jobs, (size_t)cap * sizeof *jobs);
        }
        job *j = &jobs[n++];
        snprintf(j->bucket, sizeof j->bucket, "%.*s", (int)e.bucket.len, e.bucket.ptr);
        snprintf(j->key, sizeof j->key, "%.*s", (int)e.key.len, e.key.ptr);
        snprintf(j->vid, sizeof j->vid, "%.*s", (int)e.version_id.len, e.version_id.ptr);
    }
    mf_close(rd);
    if (rc < 0) {
        fprintf(stderr, "bench_s3loop: %s\n", err);
        free(jobs);
        return -1;
    }
    *out = jobs;
    return n;
}

static int mkbucket(const char *bucket)
{
    s3_request req;
    s3_response resp;
    s3_outcome oc;
    memset(&req, 0, sizeof req);
    req.method = "PUT";
    req.bucket = bucket;
    int rc = s3_perform(&g_ep, &req, &resp, &oc);
    s3_response_cleanup(&resp);
    if (rc != 0 && strcmp(oc.code, "BucketAlreadyOwnedByYou") != 0) {
        fprintf(stderr, "bench_s3loop: create %s: HTTP %ld %s\n", bucket, oc.http_status,
                oc.code);
        return 1;
    }
    static const char vbody[] =
        "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Status>Enabled</Status></VersioningConfiguration>";
    memset(&req, 0, sizeof req);
    req.method = "PUT";
    req.bucket = bucket;
    req.query[0] = (s3_query_param){"versioning", ""};
    req.n_query = 1;
    req.body = vbody;
    req.body_len = sizeof vbody - 1;
    rc = s3_perform(&g_ep, &req, &resp, &oc);
    s3_response_cleanup(&resp);
    if (rc != 0) {
        fprintf(stderr, "bench_s3loop: versioning %s: HTTP %ld %s\n", bucket, oc.http_status,
                oc.code);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[1024];
    if (argc < 3) {
        fprintf(stderr, "usage: bench_s3loop mkbucket B... | put B NKEYS VERSIONS SIZE CONC "
                        "MANIFEST_OUT | copy MANIFEST DST CONC | head MANIFEST CONC\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (s3_endpoint_load(&g_ep, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "bench_s3loop: %s\n", err);
        return 1;
    }
    s3_signer_init(&g_signer, &g_ep.creds, g_ep.region);
    run r;
    memset(&r, 0, sizeof r);
    s3_buf_init(&r.scratch, 1 << 16);
    const char *op = argv[1];
    int conc = 32;
    if (strcmp(op, "mkbucket") == 0) {
        int bad = 0;
        for (int i = 2; i < argc; i++)
            bad |= mkbucket(argv[i]);
        return bad;
    } else if (strcmp(op, "put") == 0 && argc == 8) {
        long nkeys = strtol(argv[3], NULL, 10);
        long versions = strtol(argv[4], NULL, 10);
        size_t size = (size_t)strtol(argv[5], NULL, 10);
        conc = (int)strtol(argv[6], NULL, 10);
        r.op = OP_PUT;
        r.n_jobs = nkeys;
        r.jobs = calloc((size_t)nkeys, sizeof *r.jobs);
        char(*vids)[256] = calloc((size_t)(nkeys * versions), 256);
        r.out_vid = calloc((size_t)nkeys, 256);
        char *body = malloc(size + 1);
        memset(body, 'x', size);
        r.body = body;
        r.body_len = size;
        for (long k = 0; k < nkeys; k++) {
            snprintf(r.jobs[k].bucket, sizeof r.jobs[k].bucket, "%s", argv[2]);
            snprintf(r.jobs[k].key, sizeof r.jobs[k].key, "obj/%06ld", k);
        }
        double t0 = now_s();
        long ok_all = 0, failed_all = 0;
        for (long v = 0; v < versions; v++) {
            long ok;
            failed_all += run_all(&r, conc, &ok);
            ok_all += ok;
            for (long k = 0; k < nkeys; k++)
                memcpy(vids[k * versions + v], r.out_vid[k], 256);
        }
        double secs = now_s() - t0;
        long rss;
        report("put", nkeys * versions, ok_all, failed_all, conc, secs, cpu_s(&rss));
        FILE *f = fopen(argv[7], "w");
        if (!f)
            return 1;
        for (long k = 0; k < nkeys; k++)
            for (long v = 0; v < versions; v++)
                fprintf(f, "%s,%s,%s\n", argv[2], r.jobs[k].key, vids[k * versions + v]);
        fclose(f);
        return failed_all ? 1 : 0;
    } else if ((strcmp(op, "copy") == 0 && argc == 5) || (strcmp(op, "head") == 0 && argc == 4)) {
        r.op = strcmp(op, "copy") == 0 ? OP_COPY : OP_HEAD;
        r.n_jobs = load_manifest(argv[2], &r.jobs);
        if (r.n_jobs < 0)
            return 1;
        r.dst_bucket = r.op == OP_COPY ? argv[3] : NULL;
        conc = (int)strtol(argv[r.op == OP_COPY ? 4 : 3], NULL, 10);
        if (conc < 1)
            conc = 1;
        long rss;
        double c0 = cpu_s(&rss), t0 = now_s(), ok;
        long okl;
        long failed = run_all(&r, conc, &okl);
        ok = (double)okl;
        double secs = now_s() - t0;
        report(op, r.n_jobs, (long)ok, failed, conc, secs, cpu_s(&rss) - c0);
        return failed ? 1 : 0;
    }
    fprintf(stderr, "bench_s3loop: bad arguments\n");
    return 2;
}
