/*
 * strategy.c — how one version reaches one destination (../shared/aws-formats.md §8.1), and
 * what every write carries (§6.2).
 *
 *   copy           CopyObject: PUT dst/key with x-amz-copy-source: src/key?versionId=…
 *                  (percent-encoded, '+' as %2B); the COPY metadata and tagging directives
 *                  carry user metadata, the content headers and tags; what CopyObject does
 *                  not carry is sent explicitly (below). A 200 whose body is <Error> is a
 *                  failure.
 *   multipart copy above --multipart-threshold-bytes: UploadPartCopy (strategy_multipart.c)
 *   stream         a destination on another endpoint: GET -> PUT / UploadPart, one part
 *                  buffer per transfer (strategy_multipart.c)
 *   delete marker  DELETE dst/key, which writes a delete marker on a versioned bucket.
 *
 * Before a version is written the strategy reads its facts (facts.c), once per version:
 * HeadObject (unless the unit's own HEAD gave them), GetObjectAcl unless the rule translates
 * ownership or ACLs are disabled on either bucket (Object Ownership BucketOwnerEnforced: the
 * source's ACLs all read as the owner's FULL_CONTROL, and the destination refuses grants with
 * AccessControlListNotSupported), GetObjectTagging only for writes that cannot copy tags.
 * Then:
 *   - an SSE-KMS version replicates only when the rule opts in (SseKmsEncryptedObjects);
 *     else the task fails SrcObjectNotEligible. The replica is written with
 *     x-amz-server-side-encryption: aws:kms and the rule's ReplicaKmsKeyID; an SSE-S3 version
 *     stays AES256;
 *   - a version with Object Lock settings (mode + retain-until date, or legal hold ON) fails
 *     DstBucketObjectLockConfigMissing on a destination without Object Lock (checked once
 *     per destination before the run); else they go on the write as x-amz-object-lock-*
 *     headers, with x-amz-sdk-checksum-algorithm: CRC32 (moto refuses lock headers without
 *     a checksum header; AWS ignores it on a copy);
 *   - the ACL goes on the write as x-amz-grant-* headers, unless it is the default (owner
 *     FULL_CONTROL only: the replica gets that anyway). With AccessControlTranslation the
 *     source ACL is not read; the destination bucket's owner gets FULL_CONTROL. A
 *     destination with ACLs disabled gets no grant at all (its owner owns the replica);
 *   - the storage class is the rule's, else the source's own (CopyObject would write
 *     STANDARD).
 *
 * Idempotence: a write that failed ambiguously (the connection broke or timed out after the
 * request was sent, or a 200 with an empty or cut body) may have landed. Before re-sending
 * it the strategy HEADs the destination key: when its current version has the source's
 * size, the expected ETag (when one can be known: not with SSE-KMS) and a Last-Modified not
 * older than the first send (to the second, less one second for clock rounding), the write
 * landed and is not repeated; otherwise it is re-sent (at most ENG__VERIFY_ROUNDS times).
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared by the strategies ---------------------------------------------------------- */

int eng__strat_add_header(s3_request *req, const char *name, const char *value)
{
    if (req->n_headers >= S3_MAX_HEADERS)
        return -1;
    req->headers[req->n_headers++] = (s3_header){name, value};
    return 0;
}

void eng__strat_target(const eng__apply *a, eng__req *r, const char *method)
{
    memset(r, 0, sizeof *r);
    r->req.method = method;
    r->req.bucket = a->dest->bucket;
    r->req.key = a->key;
    r->ep_index = a->dest->ep_index;
}

void eng__strat_source(const eng__apply *a, eng__req *r, const char *method)
{
    memset(r, 0, sizeof *r);
    r->req.method = method;
    r->req.bucket = a->src_bucket;
    r->req.key = a->key;
    r->req.query[r->req.n_query++] = (s3_query_param){"versionId", a->src_version};
}

int eng__strat_write_headers(const eng__apply *a, s3_request *req, int full)
{
    const repl_facts *f = a->task->facts;
    int rc = 0;
    static const char *const grant_names[4] = {
        "x-amz-grant-read", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
        "x-amz-grant-full-control",
    };
    if (full) {
        const char *name, *value = NULL;
        for (size_t pos = 0, i = 0; i < f->n_hdrs; i++) {
            name = f->hdrs.ptr + pos;
            value = name + strlen(name) + 1;
            pos = (size_t)(value + strlen(value) + 1 - f->hdrs.ptr);
            rc |= eng__strat_add_header(req, name, value);
        }
        if (f->tagging.len)
            rc |= eng__strat_add_header(req, "x-amz-tagging", f->tagging.ptr);
    }
    const char *sc = a->rule->storage_class;
    if (!sc && a->task->storage_class[0] && strcmp(a->task->storage_class, "STANDARD") != 0)
        sc = a->task->storage_class; /* a replica keeps the source's class (§7.1) */
    if (sc)
        rc |= eng__strat_add_header(req, "x-amz-storage-class", sc);
    if (a->dest->acls_disabled) {
        /* S3 refuses grants there; the bucket owner owns the replica */
    } else if (a->rule->owner_override) {
        if (a->dest->owner_grant[0])
            rc |= eng__strat_add_header(req, "x-amz-grant-full-control", a->dest->owner_grant);
    } else if (f->have_acl && !f->acl_default) {
        for (int i = 0; i < 4; i++)
            if (f->grants[i].len)
                rc |= eng__strat_add_header(req, grant_names[i], f->grants[i].ptr);
    }
    if (f->lock_mode[0]) {
        rc |= eng__strat_add_header(req, "x-amz-object-lock-mode", f->lock_mode);
        rc |= eng__strat_add_header(req, "x-amz-object-lock-retain-until-date", f->lock_until);
    }
    if (f->legal_hold[0])
        rc |= eng__strat_add_header(req, "x-amz-object-lock-legal-hold", f->legal_hold);
    if (a->dest->object_lock && !full)
        rc |= eng__strat_add_header(req, "x-amz-sdk-checksum-algorithm", "CRC32");
    if (repl_sse_is_kms(f->sse)) {
        rc |= eng__strat_add_header(req, "x-amz-server-side-encryption", f->sse);
        rc |= eng__strat_add_header(req, "x-amz-server-side-encryption-aws-kms-key-id",
                                    a->rule->replica_kms_key_id);
        if (strcmp(f->bucket_key, "true") == 0)
            rc |= eng__strat_add_header(req, "x-amz-server-side-encryption-bucket-key-enabled",
                                        "true");
    } else if (strcmp(f->sse, "AES256") == 0) {
        rc |= eng__strat_add_header(req, "x-amz-server-side-encryption", "AES256");
    }
    if (rc)
        eng__task_fail(a->task, 400, "InvalidRequest",
                       "the version has more metadata headers than batchrep can send");
    return rc ? -1 : 0;
}

/* ---- facts ------------------------------------------------------------------------------ */

int eng__strat_facts_next(eng__apply *a, eng__req *r, int need_tags)
{
    eng_task *t = a->task;
    if (!t->facts && !(t->facts = repl_facts_new())) {
        eng__task_fail(t, 500, "InternalError", "out of memory");
        return -1;
    }
    repl_facts *f = t->facts;
    if (!f->have_head && !need_tags)
        repl_facts_from_row(f, &t->row, t->etag); /* an Inventory row may tell all a copy needs */
    if (!f->have_head) {
        a->step = ENG__S_HEAD;
        eng__strat_source(a, r, "HEAD");
        r->req.keep_headers = 1;
        return 1;
    }
    if (eng__task_fail_verdict(t, repl_verdict_dest(a->rule, a->dest, f)))
        return -1; /* SSE-KMS not opted in, or a lock without Object Lock there */
    if (!f->have_acl && !a->rule->owner_override && !a->dest->acls_disabled &&
        !a->src_acls_disabled &&
        !((t->facts_known & MF_FACT_ACL) && repl_facts_acl_from_row(f, t->row.acl) == 0)) {
        a->step = ENG__S_ACL;
        eng__strat_source(a, r, "GET");
        r->req.query[r->req.n_query++] = (s3_query_param){"acl", ""};
        return 1;
    }
    if (need_tags && !f->have_tags) {
        if (t->tags) { /* read by the unit's TAGS phase */
            if (repl_facts_set_tags(f, t->tags, t->n_tags) == 0)
                return 0;
        } else if (f->tag_count == 0) {
            f->have_tags = 1;
            return 0;
        }
        a->step = ENG__S_TAGS;
        eng__strat_source(a, r, "GET");
        r->req.query[r->req.n_query++] = (s3_query_param){"tagging", ""};
        return 1;
    }
    return 0;
}

void eng__strat_facts_on_response(eng__apply *a, const s3_call *c, const s3_outcome *oc)
{
    eng_task *t = a->task;
    repl_facts *f = t->facts;
    s3_slice body = {c->resp.body.ptr, c->resp.body.len};
    int step = a->step;
    a->step = 0; /* decide again with what was learnt */
    if (oc->http_status == 200 && !oc->error_in_200) {
        if (step == ENG__S_HEAD) {
            repl_facts_from_head(f, &c->resp);
        } else if (step == ENG__S_ACL) {
            if (repl_facts_from_acl(f, body) != 0) {
                eng__task_fail(t, 500, "InternalError", "malformed GetObjectAcl answer");
                a->step = ENG__S_DONE;
            }
        } else if (repl_facts_tags_from_xml(f, body) != 0) {
            eng__task_fail(t, 500, "InternalError", "malformed GetObjectTagging answer");
            a->step = ENG__S_DONE;
        }
        return;
    }
    repl_op op = step == ENG__S_HEAD  ? REPL_OP_SRC_HEAD
                 : step == ENG__S_ACL ? REPL_OP_SRC_GET_ACL
                                      : REPL_OP_SRC_GET_TAGS;
    eng__task_fail_outcome(t, oc, repl_reason_for_s3(op, oc));
    a->step = ENG__S_DONE;
}

/* ---- idempotence ------------------------------------------------------------------------ */

int eng__strat_ambiguous(const s3_outcome *o)
{
    if (!o)
        return 0;
    switch (o->curl_code) {
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
        return 1; /* the request may have reached the server */
    default:
        break;
    }
    /* a 200 with an empty or cut body: the write may be done, its answer lost */
    return o->error_in_200 && strstr(o->message, "treated as a 500") != NULL;
}

int eng__strat_landed(const eng__apply *a, const s3_response *r, const char *expect_etag)
{
    const repl_facts *f = a->task->facts;
    int64_t lm;
    if (r->status != 200)
        return 0;
    if (f && f->size >= 0 && r->content_length != f->size)
        return 0;
    if (expect_etag && expect_etag[0] && strcmp(r->etag, expect_etag) != 0)
        return 0;
    if (s3_parse_time_ms(r->last_modified, &lm) != 0)
        return 0;
    /* Last-Modified is given to the second; the server's clock may round the other way */
    return lm >= (a->first_write_ms / 1000 - 1) * 1000;
}

/* ---- copy ------------------------------------------------------------------------------- */

enum { S_COPY = 10, S_VERIFY };

static int copy_next(eng__apply *a, eng__req *r)
{
    if (a->step < ENG__S_FIRST) {
        int rc = eng__strat_facts_next(a, r, 0);
        if (rc)
            return rc > 0 ? 1 : 0;
        a->step = S_COPY;
    }
    if (a->step == S_VERIFY) {
        eng__strat_target(a, r, "HEAD");
        return 1;
    }
    if (a->step != S_COPY)
        return 0;
    eng__strat_target(a, r, "PUT");
    if (s3_copy_source(a->scratch, a->src_bucket, a->key, a->src_version) != 0) {
        eng__task_fail(a->task, 400, "InvalidRequest", "cannot encode the copy source");
        return 0;
    }
    eng__strat_add_header(&r->req, "x-amz-copy-source", a->scratch->ptr);
    eng__strat_add_header(&r->req, "x-amz-metadata-directive", "COPY");
    eng__strat_add_header(&r->req, "x-amz-tagging-directive", "COPY");
    if (eng__strat_write_headers(a, &r->req, 0) != 0)
        return 0;
    if (!a->first_write_ms)
        a->first_write_ms = s3_wall_ms();
    r->expect_xml = 1;
    const repl_facts *f = a->task->facts;
    r->copy_bytes = f && f->size >= 0 ? f->size : a->task->size; /* its deadline grows with it */
    return 1;
}

static int copy_rebuild(eng__apply *a, unsigned tag, const s3_outcome *prev, eng__req *r)
{
    if (a->step == S_COPY && eng__strat_ambiguous(prev)) {
        if (++a->verify_rounds > ENG__VERIFY_ROUNDS)
            return 0;
        a->step = S_VERIFY;
    }
    return copy_next(a, r);
}

/* The ETag a copy gets: the source's, when S3 computes it the same way (an MD5 of the bytes:
   not for multipart or SSE-KMS sources). NULL: size and time only. */
static const char *copy_etag(const repl_facts *f)
{
    if (!f || strchr(f->etag, '-') || repl_sse_is_kms(f->sse))
        return NULL;
    return f->etag;
}

static void copy_on_response(eng__apply *a, unsigned tag, const s3_call *c,
                             const s3_outcome *oc)
{
    (void)tag;
    if (a->step < ENG__S_FIRST) {
        eng__strat_facts_on_response(a, c, oc);
        return;
    }
    if (a->step == S_VERIFY) {
        a->step = eng__strat_landed(a, &c->resp, copy_etag(a->task->facts)) ? ENG__S_DONE
                                                                           : S_COPY;
        return;
    }
    a->step = ENG__S_DONE;
    if (oc->http_status == 200 && !oc->error_in_200)
        return;
    /* NoSuchBucket is the destination's: the source bucket was just read */
    eng__task_fail_outcome(a->task, oc, repl_reason_for_s3(REPL_OP_DST_PUT, oc));
}

const eng__strategy eng__strategy_copy = {"copy", copy_next, copy_rebuild, copy_on_response,
                                          NULL};

/* ---- delete marker ---------------------------------------------------------------------- */

static int dm_next(eng__apply *a, eng__req *r)
{
    if (a->step > 0)
        return 0;
    eng__strat_target(a, r, "DELETE");
    return 1;
}

static void dm_on_response(eng__apply *a, unsigned tag, const s3_call *c,
                           const s3_outcome *oc)
{
    (void)tag;
    (void)c;
    a->step = 1;
    if (oc->http_status == 204 || oc->http_status == 200)
        return;
    eng__task_fail_outcome(a->task, oc, repl_reason_for_s3(REPL_OP_DST_DELETE, oc));
}

const eng__strategy eng__strategy_delete_marker = {"delete-marker", dm_next, NULL,
                                                   dm_on_response, NULL};

const eng__strategy *eng__strategy_for(const eng_task *t, const repl_rule *r,
                                       const repl_dest *d, const repl_copy_cfg *cfg)
{
    (void)r;
    if (t->is_delete_marker)
        return &eng__strategy_delete_marker;
    if (d->ep_index != 0)
        return &eng__strategy_stream; /* another endpoint: bytes pass through us */
    if (cfg->multipart_threshold_bytes > 0 && t->size > cfg->multipart_threshold_bytes)
        return &eng__strategy_multipart_copy;
    return &eng__strategy_copy;
}
