/*
 * engine_int.h — internals shared by the engine's files (the unit state machine as the pool
 * drives it, the copy strategies). Never included from outside engine/.
 */
#ifndef BATCHREP_ENGINE_INT_H
#define BATCHREP_ENGINE_INT_H

#include "engine/engine.h"

#include <curl/curl.h>

/* ---- the unit state machine, as a pool thread drives it (unit.c) ------------------------- */

uint64_t eng_unit_hash(const eng_unit *u);
int eng__unit_stopped(const eng_unit *u);
const repl_rules *eng__unit_rules(const eng_unit *u);
/* One request as a unit hands it to its lane. */
typedef struct eng__req {
    s3_request req;              /* strings borrowed from the unit until its next call */
    int expect_xml;              /* a 200 must carry an XML result (s3_outcome_classify) */
    unsigned tag;                /* the unit's name for it: 0 = its serial request (at most
                                    one in flight), others = parallel parts */
    size_t ep_index;             /* endpoint: index into eng_pool_cfg.eps (0: the source's) */
    int64_t copy_bytes;          /* CopyObject, CompleteMultipartUpload: the object's size,
                                    for the deadline (s3_call_opts); 0: unknown */
} eng__req;

/* The state machine, driven by a lane (pool.c).
   eng__unit_next builds the unit's next request into *r and returns 1; returns ENG__WAIT
   when requests are in flight and nothing more can start before one of them answers; returns
   0 when every task has its outcome (the lane hands the unit on once none of its requests
   is in flight). The lane may call it again while it has free calls, so a strategy can
   have several parts in flight (pool.c).
   A retryable outcome is retried by the worker: eng__unit_rebuild gives request `tag` again
   (prev is the outcome being retried; after an ambiguous failure a strategy may first send
   something else under the same tag, e.g. a HEAD of the destination to see whether the
   write landed). Returns 0 when there is nothing to re-send: prev is then final.
   Every other outcome goes to eng__unit_on_response, which advances the unit. */
enum { ENG__WAIT = 2 };
int eng__unit_next(eng_unit *u, const repl_rules *rules, eng__req *r);
int eng__unit_rebuild(eng_unit *u, const repl_rules *rules, unsigned tag,
                      const s3_outcome *prev, eng__req *r);
void eng__unit_on_response(eng_unit *u, const repl_rules *rules, unsigned tag,
                           const s3_call *c, const s3_outcome *oc);
/* 1 when a and b are the same source key (a worker runs one unit of a key at a time). */
int eng__unit_same_key(const eng_unit *a, const eng_unit *b);
/* Marks every task without an outcome as not run (the job stopped): the report leaves them
   out, as AWS reports only the tasks that ran. */
void eng__unit_abandon(eng_unit *u);

/* ---- copy strategies: how one version reaches one destination ---------------------- */

/* One version on its way to one destination. The unit owns it; a strategy keeps its own
   progress in `step` (0 at the start) and heap state in `state` (freed by cleanup), and may
   use scratch for strings that must live until the request has been prepared. */
typedef struct eng__apply {
    eng_task *task;
    const repl_rule *rule;
    const repl_dest *dest;
    const repl_copy_cfg *cfg;
    const char *src_bucket;
    const char *key;              /* decoded, same on both sides */
    const char *src_version;      /* the version ID to read */
    int src_acls_disabled;        /* the source bucket's ACLs are disabled: not read */
    s3_buf *scratch;
    int step;
    void *state;
    int64_t first_write_ms;       /* wall clock of the first write's first send */
    int verify_rounds;            /* HEADs of the destination after ambiguous failures */
} eng__apply;

/* A strategy is a small table of functions (aws-c-s3's meta-request vtable). `next` builds
   the next request and returns 1, ENG__WAIT while its requests in flight must answer first,
   or 0 when this destination is done (a failure is recorded on the task with
   eng__task_fail); `rebuild` gives request `tag` again for a retry (NULL: `next` gives the
   serial request again, as long as no answer came); `on_response` takes the final outcome
   of a request (retries already spent); `cleanup` frees `state` (NULL: nothing to free).
   Adding a strategy does not touch the others. */
typedef struct eng__strategy {
    const char *name;
    int (*next)(eng__apply *a, eng__req *r);
    int (*rebuild)(eng__apply *a, unsigned tag, const s3_outcome *prev, eng__req *r);
    void (*on_response)(eng__apply *a, unsigned tag, const s3_call *c, const s3_outcome *oc);
    void (*cleanup)(eng__apply *a);
} eng__strategy;

extern const eng__strategy eng__strategy_copy;          /* CopyObject */
extern const eng__strategy eng__strategy_multipart_copy; /* UploadPartCopy */
extern const eng__strategy eng__strategy_stream;        /* GET -> PUT / UploadPart, other
                                                            endpoint */
extern const eng__strategy eng__strategy_delete_marker; /* DELETE on the destination key */

/* Steps every strategy shares: 0 = decide, 1-3 = reading the version's facts, from
   ENG__S_FIRST the strategy's own, ENG__S_DONE = nothing more to send. */
enum { ENG__S_HEAD = 1, ENG__S_ACL, ENG__S_TAGS, ENG__S_FIRST = 10, ENG__S_DONE = 99 };
/* HEADs of the destination after ambiguous failures of one write, before giving up. */
#define ENG__VERIFY_ROUNDS 3

/* Helpers shared by the strategies (strategy.c). */
int eng__strat_add_header(s3_request *req, const char *name, const char *value);
void eng__strat_target(const eng__apply *a, eng__req *r, const char *method); /* dest key */
void eng__strat_source(const eng__apply *a, eng__req *r, const char *method); /* src version */
/* The headers a write carries beyond the bytes: storage class, ACL (or the translated
   owner), Object Lock, SSE; with full also content headers, user metadata and x-amz-tagging
   (CreateMultipartUpload, PutObject; CopyObject uses the COPY directives). -1 (task failed)
   when they do not fit. */
int eng__strat_write_headers(const eng__apply *a, s3_request *req, int full);
/* Reads the facts this write needs: 1 = *r is a request for one (tag 0), 0 = all there and
   the version may go to this destination, -1 = the task failed (SSE-KMS not opted in, lock
   without Object Lock on the destination, out of memory). */
int eng__strat_facts_next(eng__apply *a, eng__req *r, int need_tags);
void eng__strat_facts_on_response(eng__apply *a, const s3_call *c, const s3_outcome *oc);
/* 1 when the outcome leaves open whether the request took effect. */
int eng__strat_ambiguous(const s3_outcome *o);
/* 1 when the destination HEAD r shows the write landed (see strategy.c). */
int eng__strat_landed(const eng__apply *a, const s3_response *r, const char *expect_etag);

/* The strategy for this task and destination. */
const eng__strategy *eng__strategy_for(const eng_task *t, const repl_rule *r,
                                       const repl_dest *d, const repl_copy_cfg *cfg);

/* Records a failure (the first failure of a task is what its row reports). */
void eng__task_fail(eng_task *t, int http_status, const char *code, const char *message);
/* Records a failure the replication verdict gave (repl_verdict_*); REPL_OK records nothing.
   Returns 1 when it recorded one. */
int eng__task_fail_verdict(eng_task *t, repl_failure_id id);
/* Records a failure from an S3 outcome: code (NULL: S3's own code) and S3's message. */
void eng__task_fail_outcome(eng_task *t, const s3_outcome *oc, const char *code);

#endif
