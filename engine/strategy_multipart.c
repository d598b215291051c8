/*
 * strategy_multipart.c — versions written in parts (../shared/aws-formats.md §8.2):
 *
 *   multipart copy  (same endpoint, size above --multipart-threshold-bytes)
 *                   CreateMultipartUpload (every header of the version: content headers,
 *                   user metadata, x-amz-tagging, ACL, lock, storage class, SSE)
 *                   -> UploadPartCopy ?partNumber=N&uploadId= with x-amz-copy-source-range
 *                      bytes=first-last, up to part_parallelism parts in flight
 *                   -> CompleteMultipartUpload (XML list of part numbers and ETags; a 200
 *                      carrying <Error> is a failure)
 *   stream          (destination on another endpoint) the same, with each part a GET Range
 *                   from the source into a buffer of the part's size, then an UploadPart of
 *                   that buffer to the destination; a version no larger than one part is one
 *                   GET and one PutObject (with Content-MD5). A buffer lives only while its
 *                   GET or its UploadPart is in flight (the UploadPart starts on the call the
 *                   GET just freed), so memory is at most transfers in flight x part size.
 *
 * Part size: part_size_bytes, doubled until the version needs at most 10,000 parts. A part
 * that fails is retried alone (the lane retries each request); a part that fails for good
 * stops new parts, waits for those in flight, and the upload is aborted
 * (AbortMultipartUpload). With Object Lock settings the new version then gets
 * PutObjectRetention and PutObjectLegalHold (moto 5.2.1 ignores the lock headers of
 * CreateMultipartUpload; on AWS they set the same values again, which is allowed).
 * Idempotence: UploadPart(Copy) of the same number replaces the part; a CompleteMultipart-
 * Upload that failed ambiguously, or answers NoSuchUpload when re-sent, is checked with a HEAD
 * of the destination against the multipart ETag computed from the parts' ETags.
 *
 * Tags: 0 = the serial requests (create, complete, verify, retention, legal hold, abort);
 * part i: 1 + 2i = its GET (stream), 2 + 2i = its UploadPart(Copy).
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 10000

enum { S_CREATE = ENG__S_FIRST, S_PARTS, S_COMPLETE, S_VERIFY, S_RETENTION, S_LEGAL_HOLD,
       S_ABORT, S_SMALL_GET, S_SMALL_PUT, S_SMALL_VERIFY };

enum { P_TODO = 0, P_GET, P_GOT, P_PUT, P_DONE };

typedef struct part {
    int64_t first, last;         /* inclusive byte range */
    int state;
    char etag[S3_ETAG_MAX + 2];  /* quoted (RGW's XML leaves the quotes out) */
    s3_buf data;                 /* stream: the part's bytes while GET / UploadPart run */
} part;

typedef struct mpu {
    int stream;
    char upload_id[1024];
    int64_t part_size;
    unsigned n_parts, next_todo, lo, in_flight, n_done;
    part *parts;
    int part_failed;
    int complete_sent;           /* CompleteMultipartUpload was sent at least once */
    int no_such_upload;          /* ... and a re-send answered NoSuchUpload */
    char new_version[S3_VERSION_ID_MAX];
    s3_buf xml;                  /* CompleteMultipartUpload, Retention, LegalHold bodies */
    s3_buf small;                /* stream, one-part version: its bytes */
    char num[16], range[64], md5[25], etag[S3_ETAG_MAX];
} mpu;

static mpu *state_of(eng__apply *a, int stream)
{
    if (!a->state) {
        mpu *m = calloc(1, sizeof *m);
        if (!m)
            return NULL;
        m->stream = stream;
        s3_buf_init(&m->xml, 1u << 20); /* 10,000 parts of ~100 bytes */
        a->state = m;
    }
    return a->state;
}

static void mp_cleanup(eng__apply *a)
{
    mpu *m = a->state;
    if (!m)
        return;
    for (unsigned i = 0; m->parts && i < m->n_parts; i++)
        s3_buf_cleanup(&m->parts[i].data);
    free(m->parts);
    s3_buf_cleanup(&m->xml);
    s3_buf_cleanup(&m->small);
    free(m);
    a->state = NULL;
}

static int plan_parts(eng__apply *a, mpu *m)
{
    int64_t size = a->task->facts->size >= 0 ? a->task->facts->size : a->task->size;
    int64_t ps = a->cfg->part_size_bytes > 0 ? a->cfg->part_size_bytes : 8 << 20;
    while ((size + ps - 1) / ps > MAX_PARTS)
        ps *= 2;
    m->part_size = ps;
    m->n_parts = size > 0 ? (unsigned)((size + ps - 1) / ps) : 1;
    m->parts = calloc(m->n_parts, sizeof *m->parts);
    if (!m->parts)
        return -1;
    for (unsigned i = 0; i < m->n_parts; i++) {
        m->parts[i].first = (int64_t)i * ps;
        m->parts[i].last = (i + 1 == m->n_parts ? size : (int64_t)(i + 1) * ps) - 1;
        s3_buf_init(&m->parts[i].data, (size_t)(m->parts[i].last - m->parts[i].first + 1));
    }
    return 0;
}

/* "\"<md5 of the parts' binary MD5s>-N\"": the ETag S3 gives the completed upload; "" when a
   part's ETag is not an MD5 (SSE-KMS). */
static void multipart_etag(const mpu *m, char *out, size_t cap)
{
    unsigned char *bin = malloc((size_t)m->n_parts * 16);
    out[0] = '\0';
    if (!bin)
        return;
    for (unsigned i = 0; i < m->n_parts; i++) {
        const char *e = m->parts[i].etag;
        if (*e == '"')
            e++;
        for (int k = 0; k < 32; k++) {
            char ch = e[k];
            int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (v < 0) {
                free(bin);
                return;
            }
            if (k % 2 == 0)
                bin[i * 16 + k / 2] = (unsigned char)(v << 4);
            else
                bin[i * 16 + k / 2] |= (unsigned char)v;
        }
    }
    char hex[33];
    s3_md5_hex(bin, (size_t)m->n_parts * 16, hex);
    free(bin);
    snprintf(out, cap, "\"%s-%u\"", hex, m->n_parts);
}

/* ---- request builders (no side effects: a retry builds the same request) ------------ */

static int build_part(eng__apply *a, mpu *m, unsigned tag, eng__req *r)
{
    unsigned i = (tag - 1) / 2;
    int is_get = (tag - 1) % 2 == 0;
    part *p = &m->parts[i];
    snprintf(m->range, sizeof m->range, "bytes=%lld-%lld", (long long)p->first,
             (long long)p->last);
    if (is_get) {
        eng__strat_source(a, r, "GET");
        s3_buf_reset(&p->data); /* a retried GET starts over */
        if (!p->data.ptr && s3_buf_reserve(&p->data, p->data.max_bytes) != 0)
            return -1;
        r->req.sink = &p->data;
        eng__strat_add_header(&r->req, "range", m->range);
    } else {
        snprintf(m->num, sizeof m->num, "%u", i + 1);
        eng__strat_target(a, r, "PUT");
        r->req.query[r->req.n_query++] = (s3_query_param){"partNumber", m->num};
        r->req.query[r->req.n_query++] = (s3_query_param){"uploadId", m->upload_id};
        if (m->stream) {
            r->req.body = p->data.ptr;
            r->req.body_len = p->data.len;
        } else {
            if (s3_copy_source(a->scratch, a->src_bucket, a->key, a->src_version) != 0)
                return -1;
            eng__strat_add_header(&r->req, "x-amz-copy-source", a->scratch->ptr);
            eng__strat_add_header(&r->req, "x-amz-copy-source-range", m->range);
            r->expect_xml = 1;
        }
    }
    r->tag = tag;
    return 1;
}

static int build_serial(eng__apply *a, mpu *m, eng__req *r)
{
    const repl_facts *f = a->task->facts;
    switch (a->step) {
    case S_CREATE:
        eng__strat_target(a, r, "POST");
        r->req.query[r->req.n_query++] = (s3_query_param){"uploads", ""};
        if (eng__strat_write_headers(a, &r->req, 1) != 0)
            return 0;
        r->expect_xml = 1;
        return 1;
    case S_COMPLETE:
        eng__strat_target(a, r, "POST");
        r->req.query[r->req.n_query++] = (s3_query_param){"uploadId", m->upload_id};
        r->req.body = m->xml.ptr;
        r->req.body_len = m->xml.len;
        eng__strat_add_header(&r->req, "content-type", "application/xml");
        r->expect_xml = 1;
        r->copy_bytes = f && f->size >= 0 ? f->size : a->task->size; /* deadline by size */
        return 1;
    case S_VERIFY:
    case S_SMALL_VERIFY:
        eng__strat_target(a, r, "HEAD");
        return 1;
    case S_RETENTION:
    case S_LEGAL_HOLD:
        eng__strat_target(a, r, "PUT");
        r->req.query[r->req.n_query++] =
            (s3_query_param){a->step == S_RETENTION ? "retention" : "legal-hold", ""};
        if (m->new_version[0])
            r->req.query[r->req.n_query++] = (s3_query_param){"versionId", m->new_version};
        s3_buf_reset(&m->xml);
        if (a->step == S_RETENTION) {
            s3_buf_append_str(&m->xml, "<Retention xmlns=\"http://s3.amazonaws.com/doc/"
                                       "2006-03-01/\"><Mode>");
            s3_buf_append_str(&m->xml, f->lock_mode);
            s3_buf_append_str(&m->xml, "</Mode><RetainUntilDate>");
            s3_buf_append_str(&m->xml, f->lock_until);
            s3_buf_append_str(&m->xml, "</RetainUntilDate></Retention>");
        } else {
            s3_buf_append_str(&m->xml, "<LegalHold xmlns=\"http://s3.amazonaws.com/doc/"
                                       "2006-03-01/\"><Status>");
            s3_buf_append_str(&m->xml, f->legal_hold);
            s3_buf_append_str(&m->xml, "</Status></LegalHold>");
        }
        s3_md5_base64(m->xml.ptr, m->xml.len, m->md5); /* required by S3 for these two */
        eng__strat_add_header(&r->req, "content-md5", m->md5);
        r->req.body = m->xml.ptr;
        r->req.body_len = m->xml.len;
        return 1;
    case S_ABORT:
        eng__strat_target(a, r, "DELETE");
        r->req.query[r->req.n_query++] = (s3_query_param){"uploadId", m->upload_id};
        return 1;
    case S_SMALL_GET:
        eng__strat_source(a, r, "GET");
        s3_buf_reset(&m->small);
        r->req.sink = &m->small;
        return 1;
    case S_SMALL_PUT:
        eng__strat_target(a, r, "PUT");
        r->req.body = m->small.ptr;
        r->req.body_len = m->small.len;
        s3_md5_base64(m->small.ptr ? m->small.ptr : "", m->small.len, m->md5);
        eng__strat_add_header(&r->req, "content-md5", m->md5);
        if (eng__strat_write_headers(a, &r->req, 1) != 0)
            return 0;
        return 1;
    default:
        return 0;
    }
}

static void build_complete_xml(mpu *m)
{
    s3_buf_reset(&m->xml);
    s3_buf_append_str(&m->xml, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/"
                               "2006-03-01/\">");
    for (unsigned i = 0; i < m->n_parts; i++) {
        s3_buf_append_str(&m->xml, "<Part><PartNumber>");
        s3_buf_append_u64(&m->xml, i + 1);
        s3_buf_append_str(&m->xml, "</PartNumber><ETag>");
        s3_buf_append_str(&m->xml, m->parts[i].etag);
        s3_buf_append_str(&m->xml, "</ETag></Part>");
    }
    s3_buf_append_str(&m->xml, "</CompleteMultipartUpload>");
}

/* ---- next ----------------------------------------------------------------------------- */

static int mp_next_common(eng__apply *a, eng__req *r, int stream)
{
    mpu *m = state_of(a, stream);
    if (!m) {
        eng__task_fail(a->task, 500, "InternalError", "out of memory");
        return 0;
    }
    if (a->step < ENG__S_FIRST) {
        int rc = eng__strat_facts_next(a, r, 1);
        if (rc)
            return rc > 0 ? 1 : 0;
        int64_t size = a->task->facts->size >= 0 ? a->task->facts->size : a->task->size;
        int64_t ps = a->cfg->part_size_bytes > 0 ? a->cfg->part_size_bytes : 8 << 20;
        if (stream && size <= ps) {
            s3_buf_init(&m->small, (size_t)(size > 0 ? size : 0));
            if (size > 0 && s3_buf_reserve(&m->small, (size_t)size) != 0) {
                eng__task_fail(a->task, 500, "InternalError", "out of memory");
                return 0;
            }
            a->step = S_SMALL_GET;
        } else {
            if (plan_parts(a, m) != 0) {
                eng__task_fail(a->task, 500, "InternalError", "out of memory");
                return 0;
            }
            a->step = S_CREATE;
        }
        if (!a->first_write_ms)
            a->first_write_ms = s3_wall_ms();
    }
    if (a->step == S_PARTS) {
        if (m->part_failed) {
            if (m->in_flight)
                return ENG__WAIT;
            a->step = S_ABORT;
            return build_serial(a, m, r);
        }
        /* a part whose GET is done goes out first, on the call that GET freed */
        for (unsigned i = m->lo; i < m->next_todo; i++) {
            if (m->parts[i].state == P_GOT) {
                m->parts[i].state = P_PUT;
                return build_part(a, m, 2 + 2 * i, r) > 0 ? 1 : 0;
            }
        }
        if (m->n_done == m->n_parts) {
            build_complete_xml(m);
            a->step = S_COMPLETE;
            m->complete_sent++;
            return build_serial(a, m, r);
        }
        int par = a->cfg->part_parallelism > 0 ? a->cfg->part_parallelism : 4;
        if (m->next_todo < m->n_parts && m->in_flight < (unsigned)par) {
            unsigned i = m->next_todo++;
            m->in_flight++;
            m->parts[i].state = m->stream ? P_GET : P_PUT;
            if (build_part(a, m, m->stream ? 1 + 2 * i : 2 + 2 * i, r) > 0)
                return 1;
            eng__task_fail(a->task, 500, "InternalError", "cannot build a part request");
            m->in_flight--;
            m->part_failed = 1;
            return m->in_flight ? ENG__WAIT : 0;
        }
        return ENG__WAIT;
    }
    if (a->step == S_COMPLETE)
        m->complete_sent++;
    return build_serial(a, m, r);
}

static int mpc_next(eng__apply *a, eng__req *r)
{
    return mp_next_common(a, r, 0);
}

static int stream_next(eng__apply *a, eng__req *r)
{
    return mp_next_common(a, r, 1);
}

static int mp_rebuild(eng__apply *a, unsigned tag, const s3_outcome *prev, eng__req *r)
{
    mpu *m = a->state;
    if (tag != 0)
        return m ? build_part(a, m, tag, r) : 0;
    if ((a->step == S_COMPLETE || a->step == S_SMALL_PUT) && eng__strat_ambiguous(prev)) {
        if (++a->verify_rounds > ENG__VERIFY_ROUNDS)
            return 0;
        a->step = a->step == S_COMPLETE ? S_VERIFY : S_SMALL_VERIFY;
    }
    if (a->step < ENG__S_FIRST)
        return eng__strat_facts_next(a, r, 1) > 0;
    if (a->step == S_COMPLETE)
        m->complete_sent++;
    return build_serial(a, m, r);
}

/* ---- responses --------------------------------------------------------------------------- */

static int ok(const s3_outcome *oc)
{
    return oc->http_status >= 200 && oc->http_status < 300 && !oc->error_in_200 &&
           oc->curl_code == 0;
}

/* A GET of source bytes that did not bring them: the S3 error, or `short_what` when the
   answer was a success with fewer bytes than asked for. */
static void get_failed(eng__apply *a, const s3_outcome *oc, const char *short_what)
{
    if (ok(oc))
        eng__task_fail(a->task, 500, "InternalError", short_what);
    else
        eng__task_fail_outcome(a->task, oc, repl_reason_for_s3(REPL_OP_SRC_GET_OBJECT, oc));
}

static void after_object(eng__apply *a)
{
    a->step = repl_facts_locked(a->task->facts) && a->task->facts->lock_mode[0] ? S_RETENTION
              : strcmp(a->task->facts->legal_hold, "ON") == 0                   ? S_LEGAL_HOLD
                                                                                : ENG__S_DONE;
}

static void dest_fail(eng__apply *a, const s3_outcome *oc, repl_op op)
{
    eng__task_fail_outcome(a->task, oc, repl_reason_for_s3(op, oc));
}

static void on_part(eng__apply *a, mpu *m, unsigned tag, const s3_call *c,
                    const s3_outcome *oc)
{
    unsigned i = (tag - 1) / 2;
    part *p = &m->parts[i];
    int is_get = (tag - 1) % 2 == 0;
    if (is_get) {
        if (ok(oc) && p->data.len == p->data.max_bytes) {
            p->state = P_GOT; /* stays in flight: its UploadPart goes out next */
            return;
        }
        get_failed(a, oc, "a source part came back short");
    } else if (ok(oc)) {
        if (m->stream)
            snprintf(p->etag, S3_ETAG_MAX, "%s", c->resp.etag);
        else if (s3_xml_find_text((s3_slice){c->resp.body.ptr, c->resp.body.len}, "ETag",
                                  p->etag, S3_ETAG_MAX) != 0)
            snprintf(p->etag, S3_ETAG_MAX, "%s", c->resp.etag);
        if (p->etag[0] && p->etag[0] != '"') { /* RGW sends it unquoted in the XML */
            size_t n = strnlen(p->etag, S3_ETAG_MAX - 1); /* fits: the buffer has room for 2 */
            memmove(p->etag + 1, p->etag, n);
            p->etag[0] = '"';
            p->etag[n + 1] = '"';
            p->etag[n + 2] = '\0';
        }
        p->state = P_DONE;
        m->n_done++;
        m->in_flight--;
        s3_buf_cleanup(&p->data);
        while (m->lo < m->n_parts && m->parts[m->lo].state == P_DONE)
            m->lo++;
        return;
    } else {
        dest_fail(a, oc, REPL_OP_DST_MPU_PART);
    }
    p->state = P_TODO;
    m->in_flight--;
    m->part_failed = 1;
    s3_buf_cleanup(&p->data);
}

/* Long on purpose (~90 lines): one case per step of a multipart copy or streamed copy. */
static void mp_on_response(eng__apply *a, unsigned tag, const s3_call *c,
                           const s3_outcome *oc)
{
    mpu *m = a->state;
    if (a->step < ENG__S_FIRST) {
        eng__strat_facts_on_response(a, c, oc);
        return;
    }
    if (tag != 0) {
        on_part(a, m, tag, c, oc);
        return;
    }
    switch (a->step) {
    case S_CREATE:
        if (ok(oc) && s3_xml_find_text((s3_slice){c->resp.body.ptr, c->resp.body.len},
                                       "UploadId", m->upload_id, sizeof m->upload_id) == 0) {
            a->step = S_PARTS;
            return;
        }
        if (ok(oc))
            eng__task_fail(a->task, 500, "InternalError", "no UploadId in the answer");
        else
            dest_fail(a, oc, REPL_OP_DST_MPU_INIT);
        a->step = ENG__S_DONE;
        return;
    case S_COMPLETE:
        if (ok(oc)) {
            snprintf(m->new_version, sizeof m->new_version, "%s", c->resp.version_id);
            after_object(a);
            return;
        }
        if (m->complete_sent > 1 && strcmp(oc->code, "NoSuchUpload") == 0) {
            m->no_such_upload = 1; /* an earlier try may have completed it */
            a->step = S_VERIFY;
            return;
        }
        dest_fail(a, oc, REPL_OP_DST_MPU_COMPLETE);
        a->step = S_ABORT;
        return;
    case S_VERIFY: {
        multipart_etag(m, m->etag, sizeof m->etag);
        if (eng__strat_landed(a, &c->resp, m->etag)) {
            snprintf(m->new_version, sizeof m->new_version, "%s", c->resp.version_id);
            after_object(a);
        } else if (m->no_such_upload) {
            eng__task_fail(a->task, 500, "InternalError",
                           "the multipart upload vanished before it completed");
            a->step = ENG__S_DONE;
        } else {
            a->step = S_COMPLETE;
        }
        return;
    }
    case S_RETENTION:
        if (!ok(oc)) {
            dest_fail(a, oc, REPL_OP_DST_PUT_RETENTION);
            a->step = ENG__S_DONE;
            return;
        }
        a->step = strcmp(a->task->facts->legal_hold, "ON") == 0 ? S_LEGAL_HOLD : ENG__S_DONE;
        return;
    case S_LEGAL_HOLD:
        if (!ok(oc))
            dest_fail(a, oc, REPL_OP_DST_PUT_LEGAL_HOLD);
        a->step = ENG__S_DONE;
        return;
    case S_ABORT:
        a->step = ENG__S_DONE; /* the task has already failed; the abort is best effort */
        return;
    case S_SMALL_GET:
        if (ok(oc) && (int64_t)m->small.len == (int64_t)m->small.max_bytes) {
            a->step = S_SMALL_PUT;
            return;
        }
        get_failed(a, oc, "the source version came back short");
        a->step = ENG__S_DONE;
        return;
    case S_SMALL_PUT:
        a->step = ENG__S_DONE;
        if (!ok(oc))
            dest_fail(a, oc, REPL_OP_DST_PUT);
        return;
    case S_SMALL_VERIFY: {
        char hex[33];
        s3_md5_hex(m->small.ptr ? m->small.ptr : "", m->small.len, hex);
        snprintf(m->etag, sizeof m->etag, "\"%s\"", hex);
        a->step = eng__strat_landed(a, &c->resp, m->etag) ? ENG__S_DONE : S_SMALL_PUT;
        return;
    }
    default:
        return;
    }
}

const eng__strategy eng__strategy_multipart_copy = {"multipart-copy", mpc_next, mp_rebuild,
                                                    mp_on_response, mp_cleanup};
const eng__strategy eng__strategy_stream = {"stream", stream_next, mp_rebuild, mp_on_response,
                                            mp_cleanup};
