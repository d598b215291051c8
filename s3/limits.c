/*
 * limits.c — what one request may cost: its operation's name and kind, the deadlines curl
 * enforces for it, and the sentence a timeout is reported with.
 *
 * Three kinds of request, three ways to tell a hung server from a slow one:
 *   metadata  HEAD, a listing page, tags, ACL, DELETE, Create/AbortMultipartUpload, bucket
 *             calls: small answers that S3 gives in tens of ms (AWS's performance guide
 *             retries such requests after 2 s). One whole deadline, request_timeout_ms
 *             (10 s by default: 5x that advice, room for a busy RGW).
 *   data      GetObject, PutObject, UploadPart (object bytes, manifests, reports): no whole
 *             deadline (a 5 GiB part on a slow link is legitimate) but a stall detector:
 *             fewer than S3_STALL_MIN_BYTES_PER_S over stall_timeout_s seconds cuts it.
 *   copy      CopyObject, UploadPartCopy, CompleteMultipartUpload: the server copies bytes
 *             it does not send, and may say nothing until it is done (RGW, MinIO), so no
 *             stall detector; the deadline grows with the bytes copied:
 *             request_timeout_ms + bytes / S3_COPY_MIN_BYTES_PER_S (4 MiB/s: a 5 GiB
 *             CopyObject gets ~21 min, a 8 MiB part 12 s; AWS copies at 50+ MB/s).
 * The connect timeout (TCP and TLS handshake) applies to all three.
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

s3_limits s3_limits_or_defaults(const s3_limits *l)
{
    s3_limits r = l ? *l : (s3_limits){0, 0, 0, 0};
    if (r.connect_timeout_ms <= 0)
        r.connect_timeout_ms = S3_CONNECT_TIMEOUT_MS_DEFAULT;
    if (r.request_timeout_ms <= 0)
        r.request_timeout_ms = S3_REQUEST_TIMEOUT_MS_DEFAULT;
    if (r.stall_timeout_s <= 0)
        r.stall_timeout_s = S3_STALL_TIMEOUT_S_DEFAULT;
    if (r.max_download_bytes == 0)
        r.max_download_bytes = S3_MAX_DOWNLOAD_BYTES_DEFAULT;
    return r;
}

static int has_query(const s3_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_query; i++)
        if (strcmp(req->query[i].name, name) == 0)
            return 1;
    return 0;
}

static const char *header(const s3_request *req, const char *name_lower)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (s3__ieq(req->headers[i].name, strlen(req->headers[i].name), name_lower))
            return req->headers[i].value;
    return NULL;
}

/* Bucket subresources batchrep reads or writes, named as the S3 API names them. */
static const struct {
    const char *query;
    const char *get, *put;
} subresources[] = {
    {"versions", "ListObjectVersions", NULL},
    {"tagging", "GetObjectTagging", "PutObjectTagging"},
    {"acl", "GetObjectAcl", "PutObjectAcl"},
    {"replication", "GetBucketReplication", "PutBucketReplication"},
    {"versioning", "GetBucketVersioning", "PutBucketVersioning"},
    {"object-lock", "GetObjectLockConfiguration", NULL},
    {"ownershipControls", "GetBucketOwnershipControls", NULL},
    {"location", "GetBucketLocation", NULL},
    {"list-type", "ListObjectsV2", NULL},
    {"uploads", "ListMultipartUploads", NULL},
};

const char *s3_op_name(const s3_request *req, s3_op_kind *out_kind)
{
    s3_op_kind k = S3_OP_META;
    const char *name = req->method ? req->method : "?";
    const char *m = name;
    int has_key = req->key && req->key[0];
    if (strcmp(m, "HEAD") == 0) {
        name = has_key ? "HeadObject" : "HeadBucket";
    } else if (strcmp(m, "GET") == 0 || strcmp(m, "PUT") == 0) {
        int get = m[0] == 'G';
        const char *sub = NULL;
        for (size_t i = 0; i < sizeof subresources / sizeof *subresources && !sub; i++)
            if (has_query(req, subresources[i].query))
                sub = get ? subresources[i].get : subresources[i].put;
        if (sub) {
            name = sub;
        } else if (!get && header(req, "x-amz-copy-source")) {
            k = S3_OP_COPY;
            name = has_query(req, "partNumber") ? "UploadPartCopy" : "CopyObject";
        } else if (has_key) {
            k = S3_OP_DATA;
            name = get ? "GetObject" : has_query(req, "partNumber") ? "UploadPart" : "PutObject";
        } else {
            name = !req->bucket ? "ListBuckets" : get ? "ListObjects" : "CreateBucket";
        }
    } else if (strcmp(m, "POST") == 0) {
        if (has_query(req, "uploadId")) {
            k = S3_OP_COPY; /* the server assembles the parts: minutes for a large object */
            name = "CompleteMultipartUpload";
        } else {
            name = has_query(req, "uploads") ? "CreateMultipartUpload"
                   : has_query(req, "delete") ? "DeleteObjects"
                                              : "POST";
        }
    } else if (strcmp(m, "DELETE") == 0) {
        name = has_query(req, "uploadId") ? "AbortMultipartUpload"
               : has_key                  ? "DeleteObject"
                                          : "DeleteBucket";
    }
    if (out_kind)
        *out_kind = k;
    return name;
}

/* The length of "bytes=FIRST-LAST" (x-amz-copy-source-range), or 0. */
static int64_t range_len(const char *v)
{
    if (!v || strncmp(v, "bytes=", 6) != 0)
        return 0;
    char *end;
    long long first = strtoll(v + 6, &end, 10);
    if (*end != '-')
        return 0;
    long long last = strtoll(end + 1, &end, 10);
    return *end == '\0' && last >= first && first >= 0 ? (int64_t)(last - first + 1) : 0;
}

void s3__deadline_for(const s3_limits *limits, const s3_request *req, int64_t copy_bytes,
                      s3__deadline *out)
{
    s3_limits l = s3_limits_or_defaults(limits);
    memset(out, 0, sizeof *out);
    out->op = s3_op_name(req, &out->kind);
    out->connect_ms = l.connect_timeout_ms;
    switch (out->kind) {
    case S3_OP_META:
        out->total_ms = l.request_timeout_ms;
        break;
    case S3_OP_DATA:
        out->stall_s = l.stall_timeout_s;
        break;
    case S3_OP_COPY:
        if (copy_bytes <= 0)
            copy_bytes = range_len(header(req, "x-amz-copy-source-range"));
        out->total_ms = l.request_timeout_ms +
                        (copy_bytes > 0 ? (long)(copy_bytes * 1000 / S3_COPY_MIN_BYTES_PER_S) : 0);
        break;
    }
}

/* "10 s", "1.5 s", "0.25 s": a deadline as a person reads it. */
static void seconds(char *out, size_t cap, long ms)
{
    if (ms % 1000 == 0)
        snprintf(out, cap, "%ld s", ms / 1000);
    else if (ms % 100 == 0)
        snprintf(out, cap, "%ld.%ld s", ms / 1000, (ms % 1000) / 100);
    else
        snprintf(out, cap, "%ld.%03ld s", ms / 1000, ms % 1000);
}

void s3__timeout_message(const s3_call *c, char *out, size_t cap)
{
    char t[32];
    curl_off_t connect_us = 0, tls_us = 0, got = 0;
    long status = c->resp.status;
    if (c->easy) {
        curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        curl_easy_getinfo(c->easy, CURLINFO_APPCONNECT_TIME_T, &tls_us);
        curl_easy_getinfo(c->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
    }
    const char *op = c->op ? c->op : "request";
    if (connect_us == 0 || (c->is_https && tls_us == 0)) {
        /* curl 7.88 reports the TCP connect only once TLS is up too: one message for both */
        seconds(t, sizeof t, c->connect_timeout_ms);
        snprintf(out, cap, "timeout: could not connect to the server%s within %s (%s)",
                 c->is_https ? " (TCP and TLS handshake)" : "", t, op);
    } else if (c->stall_timeout_s && (status != 0 || c->upload_left > 0)) {
        seconds(t, sizeof t, c->stall_timeout_s * 1000L);
        snprintf(out, cap, "timeout: the transfer stalled, less than %d bytes/s for %s (%s, "
                 "%lld bytes received)", S3_STALL_MIN_BYTES_PER_S, t, op, (long long)got);
    } else if (status == 0) {
        seconds(t, sizeof t, c->stall_timeout_s ? c->stall_timeout_s * 1000L : c->timeout_ms);
        snprintf(out, cap, "timeout: no answer from the server within %s (%s)", t, op);
    } else {
        seconds(t, sizeof t, c->timeout_ms);
        snprintf(out, cap, "timeout: the answer was not complete within %s (%s, HTTP %ld, "
                 "%lld bytes received)", t, op, status, (long long)got);
    }
}
