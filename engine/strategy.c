/*
 * strategy.c — how one version reaches one destination (../shared/aws-formats.md §8.1).
 *
 *   copy           CopyObject: PUT dst/key with x-amz-copy-source: src/key?versionId=…
 *                  (percent-encoded, '+' as %2B); the COPY metadata and tagging directives
 *                  carry user metadata, Content-Type and the other system metadata, and tags;
 *                  x-amz-storage-class is the rule's, else the source's own (CopyObject
 *                  would otherwise write STANDARD). A 200 whose body is <Error> is a failure.
 *   delete marker  DELETE dst/key, which writes a delete marker on a versioned bucket.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <string.h>

static void add_header(s3_request *req, const char *name, const char *value)
{
    req->headers[req->n_headers++] = (s3_header){name, value};
}

static void target(const eng__apply *a, s3_request *req, const char *method)
{
    memset(req, 0, sizeof *req);
    req->method = method;
    req->bucket = a->dest->bucket;
    req->key = a->key;
}

/* ---- copy ---------------------------------------------------------------------------- */

static int copy_next(eng__apply *a, s3_request *req, int *expect_xml)
{
    if (a->step > 0)
        return 0;
    target(a, req, "PUT");
    if (s3_copy_source(a->scratch, a->src_bucket, a->key, a->src_version) != 0) {
        eng__task_fail(a->task, 400, "InvalidRequest", "cannot encode the copy source");
        return 0;
    }
    add_header(req, "x-amz-copy-source", a->scratch->ptr);
    add_header(req, "x-amz-metadata-directive", "COPY");
    add_header(req, "x-amz-tagging-directive", "COPY");
    const char *sc = a->rule->storage_class;
    if (!sc && a->task->storage_class[0] && strcmp(a->task->storage_class, "STANDARD") != 0)
        sc = a->task->storage_class; /* a replica keeps the source's class (§7.1) */
    if (sc)
        add_header(req, "x-amz-storage-class", sc);
    *expect_xml = 1;
    return 1;
}

static void copy_on_response(eng__apply *a, const s3_call *c, const s3_outcome *oc)
{
    (void)c;
    a->step = 1;
    if (oc->http_status == 200 && !oc->error_in_200)
        return;
    const char *code = NULL;
    if (strcmp(oc->code, "NoSuchBucket") == 0)
        code = "DstBucketNotFound"; /* the source bucket was just read: it exists */
    else if (strcmp(oc->code, "NoSuchVersion") == 0 || strcmp(oc->code, "NoSuchKey") == 0)
        code = "SrcVersionNotFound";
    else if (oc->http_status == 403)
        code = "DstPutObjectNotPermitted";
    eng__task_fail_outcome(a->task, oc, code);
}

const eng__strategy eng__strategy_copy = {"copy", copy_next, copy_on_response};

/* ---- delete marker ------------------------------------------------------------------- */

static int dm_next(eng__apply *a, s3_request *req, int *expect_xml)
{
    if (a->step > 0)
        return 0;
    target(a, req, "DELETE");
    *expect_xml = 0;
    return 1;
}

static void dm_on_response(eng__apply *a, const s3_call *c, const s3_outcome *oc)
{
    (void)c;
    a->step = 1;
    if (oc->http_status == 204 || oc->http_status == 200)
        return;
    const char *code = NULL;
    if (strcmp(oc->code, "NoSuchBucket") == 0)
        code = "DstBucketNotFound";
    else if (oc->http_status == 403)
        code = "DstDelObjNotPermitted";
    eng__task_fail_outcome(a->task, oc, code);
}

const eng__strategy eng__strategy_delete_marker = {"delete-marker", dm_next, dm_on_response};

const eng__strategy *eng__strategy_for(const eng__task *t, const eng__rule *r,
                                       const eng__dest *d)
{
    (void)r;
    (void)d;
    return t->is_delete_marker ? &eng__strategy_delete_marker : &eng__strategy_copy;
}
