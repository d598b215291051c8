/*
 * engine_int.h — internals shared by the engine's files. Never included from outside
 * engine/.
 */
#ifndef BATCHREP_ENGINE_INT_H
#define BATCHREP_ENGINE_INT_H

#include "engine/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "manifest/manifest.h"
#include "report/report.h"
#include "s3/s3.h"

/* ---- bounded queue of pointers (mutex + two condition variables) ---------------------- */

typedef struct eng__queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    /* guarded by mu */
    void **items;
    size_t cap, head, len;
    int closed;
} eng__queue;

int eng__queue_init(eng__queue *q, size_t cap);
void eng__queue_cleanup(eng__queue *q);
/* Blocks while full. Returns -1 when the queue is closed (item not taken). */
int eng__queue_push(eng__queue *q, void *item);
/* Waits up to timeout_ms (-1: forever, 0: no wait). Returns NULL on timeout or when closed
   and drained; *out_closed tells which. */
void *eng__queue_pop(eng__queue *q, int timeout_ms, int *out_closed);
void eng__queue_close(eng__queue *q);

/* ---- replication configuration -------------------------------------------------------- */

typedef struct eng__tag {
    char *key;
    char *value;
} eng__tag;

typedef struct eng__rule {
    char *id;
    int priority;
    int enabled;
    char *prefix;                /* "" matches everything */
    eng__tag *tags;              /* all must be present on the version */
    size_t n_tags;
    int delete_marker_replication;
    char *dest_bucket;           /* plain name from the destination ARN */
    char *storage_class;         /* NULL: keep the source's class */
    char *dest_account;          /* Destination.Account; NULL when absent */
    int owner_override;          /* AccessControlTranslation.Owner = "Destination": the
                                    replica belongs to the destination bucket's owner, the
                                    source ACL is not copied */
    int sse_kms;                 /* SourceSelectionCriteria.SseKmsEncryptedObjects Enabled:
                                    SSE-KMS versions replicate (else SrcObjectNotEligible) */
    char *replica_kms_key_id;    /* Destination.EncryptionConfiguration.ReplicaKmsKeyID */
    size_t dest_index;           /* index into eng__rules.dests */
} eng__rule;

/* A destination bucket and what the job learnt of it before the run. */
typedef struct eng__dest {
    char *bucket;
    int state;                   /* ENG__DEST_OK, ..._MISSING, ..._UNVERSIONED, ..._DENIED */
    int http_status;
    size_t ep_index;             /* endpoint (eng__pool_cfg.eps): 0 the source's, else a
                                    --destination-profile's */
    int object_lock;             /* GetObjectLockConfiguration said Enabled */
    char owner_grant[160];       /* id="<canonical ID of the bucket owner>" (GetBucketAcl),
                                    "" when unknown: x-amz-grant-full-control of a replica
                                    whose rule translates ownership */
} eng__dest;

enum { ENG__DEST_OK = 0, ENG__DEST_MISSING, ENG__DEST_UNVERSIONED, ENG__DEST_DENIED };

/* How versions are written (settings of the run, not of the configuration). */
typedef struct eng__copy_cfg {
    int64_t multipart_threshold_bytes; /* above: multipart (UploadPartCopy / UploadPart) */
    int64_t part_size_bytes;           /* grown so that a version needs at most 10,000 */
    int part_parallelism;              /* parts of one version in flight at once */
} eng__copy_cfg;

typedef struct eng__rules {
    eng__rule *rules;
    size_t n_rules;
    eng__dest *dests;
    size_t n_dests;
    int needs_tags;              /* some enabled rule filters on tags */
    eng__copy_cfg copy;          /* set by run.c before the run */
} eng__rules;

/* Parses PutBucketReplication JSON (a bare configuration, or wrapped in
   {"ReplicationConfiguration": ...}). err names the file and the field. */
int eng__rules_from_json(eng__rules *out, json_t *root, const char *origin, char *err,
                         size_t err_len);
int eng__rules_load_file(eng__rules *out, const char *path, char *err, size_t err_len);
/* GetBucketReplication on the bucket (XML -> the same structure). */
int eng__rules_load_bucket(eng__rules *out, const s3_endpoint *ep, const char *bucket,
                           char *err, size_t err_len);
void eng__rules_cleanup(eng__rules *r);

/* Binds destinations to the endpoints of --destination-profile BUCKET=PROFILE: each profile
   is loaded into a new eps[*n_eps] (the caller frees them) and the bucket's ep_index set. */
int eng__dests_bind(eng__rules *rules, const char *const *bindings, size_t n_bindings,
                    s3_endpoint **eps, size_t max_eps, size_t *n_eps, char *err,
                    size_t err_len);
/* GetObjectLockConfiguration and GetBucketAcl (owner) of each usable destination. */
void eng__dests_check(eng__rules *rules, const s3_endpoint *const *eps);

/* Chooses, for one version, the rule per destination (highest priority among enabled rules
   whose filter matches). out_rule[d] is the rule index for destination d, or -1. For a
   delete marker, tag rules never match and a chosen rule must enable DeleteMarkerReplication.
   Returns the number of destinations chosen. */
size_t eng__rules_select(const eng__rules *r, s3_slice key, const eng__tag *tags,
                         size_t n_tags, int is_delete_marker, int *out_rule);

/* ---- units: the versions of one key ---------------------------------------------------- */

/* Outcome of one task (one manifest row): what the report writes. */
typedef struct eng__task {
    uint64_t seq;
    s3_slice key_raw;            /* into the unit's memory */
    s3_slice version_id;
    int has_version;
    size_t dup_of;               /* 1 + index of the task with the same version, or 0 */
    char resolved_vid[160];      /* the current version's ID, for rows without one */
    /* learnt from the listing */
    int found;
    int is_delete_marker;
    int is_latest;
    int64_t last_modified_ms;
    unsigned list_pos;
    int64_t size;
    char storage_class[24];
    eng__tag *tags;              /* read only when a rule needs tags */
    size_t n_tags;
    struct eng__facts *facts;    /* read by the first strategy that needs them; NULL before */
    /* result */
    int done;
    int not_run;                 /* the job stopped first: no report row */
    int succeeded;
    int http_status;
    const char *error_code;      /* static string or s3_code, "" on success */
    char s3_code[64];            /* S3's own error code when the row reports it (the
                                    outcome it came from does not outlive the request) */
    char message[160];
} eng__task;

typedef struct eng__unit eng__unit;

/* ---- the job being run ----------------------------------------------------------------- */

typedef struct eng__counters {
    _Atomic uint64_t succeeded;
    _Atomic uint64_t failed;
    _Atomic uint64_t retries;
    _Atomic uint64_t throttle_events;
    _Atomic uint64_t requests;
} eng__counters;

typedef struct eng__job eng__job;

typedef struct eng__pool_cfg {
    const s3_endpoint *ep;       /* = eps[0] */
    const s3_endpoint *const *eps; /* every endpoint a request may name (eng__req.ep_index) */
    size_t n_eps;
    const eng__rules *rules;
    int workers;
    int concurrency;
    int max_attempts;
    int retry_base_ms;
    int retry_cap_ms;
    eng__counters *counters;
    eng__queue *done_q;          /* finished units go here (the report writer's input) */
    _Atomic int *stop;           /* set when the job fails or is cancelled */
} eng__pool_cfg;

typedef struct eng__pool eng__pool;

eng__pool *eng__pool_start(const eng__pool_cfg *cfg, char *err, size_t err_len);
/* Hands a unit to the worker that owns its key (hash), blocking while that worker's queue
   is full. */
int eng__pool_submit(eng__pool *p, eng__unit *u);
/* No more units: workers drain, then exit; joins them. */
void eng__pool_finish(eng__pool *p);
void eng__pool_destroy(eng__pool *p);

/* Unit construction by the planner: rows of one key are gathered, then turned into a unit
   with a single allocation. */
typedef struct eng__bent {
    uint64_t seq;
    size_t key_raw_off, key_raw_len;
    size_t vid_off, vid_len;
    int has_version;
} eng__bent;

typedef struct eng__unit_builder {
    s3_buf mem;                  /* bucket, key, then each row's raw key and version */
    eng__bent *ents;
    size_t n_ents, cap_ents;
    size_t bucket_len, key_len;  /* bucket at mem[0], key right after it */
} eng__unit_builder;

/* At most this many rows in one unit; a longer run of one key is split (in order). */
#define ENG__UNIT_MAX_TASKS 100000

void eng__unit_builder_init(eng__unit_builder *b);
void eng__unit_builder_cleanup(eng__unit_builder *b);
size_t eng__unit_builder_len(const eng__unit_builder *b);
/* 1 when e belongs to the group being built (same bucket and key), 0 otherwise. */
int eng__unit_builder_same_key(const eng__unit_builder *b, const mf_entry *e);
int eng__unit_builder_add(eng__unit_builder *b, const mf_entry *e);
/* Turns the group into a unit (one allocation) and empties the builder. NULL: no memory. */
eng__unit *eng__unit_builder_take(eng__unit_builder *b);

/* One request as a unit hands it to its worker. */
typedef struct eng__req {
    s3_request req;              /* strings borrowed from the unit until its next call */
    int expect_xml;              /* a 200 must carry an XML result (s3_outcome_classify) */
    unsigned tag;                /* the unit's name for it: 0 = its serial request (at most
                                    one in flight), others = parallel parts */
    size_t ep_index;             /* endpoint: index into eng__pool_cfg.eps (0: the source's) */
} eng__req;

/* The state machine, driven by a worker.
   eng__unit_next builds the unit's next request into *r and returns 1; returns ENG__WAIT
   when requests are in flight and nothing more can start before one of them answers; returns
   0 when every task has its outcome (the worker hands the unit on once none of its requests
   is in flight). The worker may call it again while it has free calls, so a strategy can
   have several parts in flight (pool.c).
   A retryable outcome is retried by the worker: eng__unit_rebuild gives request `tag` again
   (prev is the outcome being retried; after an ambiguous failure a strategy may first send
   something else under the same tag, e.g. a HEAD of the destination to see whether the
   write landed). Returns 0 when there is nothing to re-send: prev is then final.
   Every other outcome goes to eng__unit_on_response, which advances the unit. */
enum { ENG__WAIT = 2 };
int eng__unit_next(eng__unit *u, const eng__rules *rules, eng__req *r);
int eng__unit_rebuild(eng__unit *u, const eng__rules *rules, unsigned tag,
                      const s3_outcome *prev, eng__req *r);
void eng__unit_on_response(eng__unit *u, const eng__rules *rules, unsigned tag,
                           const s3_call *c, const s3_outcome *oc);
/* 1 when a and b are the same source key (a worker runs one unit of a key at a time). */
int eng__unit_same_key(const eng__unit *a, const eng__unit *b);
/* Marks every task without an outcome as not run (the job stopped): the report leaves them
   out, as AWS reports only the tasks that ran. */
void eng__unit_abandon(eng__unit *u);
int64_t eng__unit_not_before_ms(const eng__unit *u);
void eng__unit_set_not_before_ms(eng__unit *u, int64_t ms);

/* ---- source facts: what a version carries beyond its bytes ------------------------- */

/* Read once per version (HeadObject, GetObjectAcl, GetObjectTagging) by the first strategy
   that needs them, kept on the task for its other destinations (facts.c). */
typedef struct eng__facts {
    int have_head, have_acl, have_tags;
    s3_buf hdrs;                 /* "name\0value\0": Content-Type, Content-Encoding,
                                    Content-Disposition, Content-Language, Cache-Control,
                                    Expires and every x-amz-meta-* */
    size_t n_hdrs;
    char etag[80];               /* as sent, with quotes */
    int64_t size;
    int64_t last_modified_ms;
    char sse[32];                /* x-amz-server-side-encryption, "" when none */
    char sse_kms_key_id[256];
    char bucket_key[8];          /* x-amz-server-side-encryption-bucket-key-enabled */
    char lock_mode[16];          /* GOVERNANCE | COMPLIANCE | "" */
    char lock_until[40];         /* ISO 8601 as HEAD gave it */
    char legal_hold[8];          /* ON | OFF | "" */
    int tag_count;               /* x-amz-tagging-count */
    int acl_default;             /* the ACL is the owner's FULL_CONTROL only */
    s3_buf grants[4];            /* x-amz-grant-read, -read-acp, -write-acp, -full-control */
    s3_buf tagging;              /* "k=v&k2=v2" (URL-encoded) when have_tags */
} eng__facts;

eng__facts *eng__facts_new(void);
void eng__facts_destroy(eng__facts *f);
/* From a HeadObject answer kept with keep_headers. */
void eng__facts_from_head(eng__facts *f, const s3_response *r);
/* From GetObjectAcl XML; -1 when it cannot be read. */
int eng__facts_from_acl(eng__facts *f, s3_slice xml);
/* From tags already read (the unit's TAGS phase) or from GetObjectTagging XML. */
int eng__facts_set_tags(eng__facts *f, const eng__tag *tags, size_t n);
int eng__facts_tags_from_xml(eng__facts *f, s3_slice xml);
/* 1 when the version carries Object Lock settings to replicate. */
int eng__facts_locked(const eng__facts *f);

/* ---- copy strategies: how one version reaches one destination ---------------------- */

/* One version on its way to one destination. The unit owns it; a strategy keeps its own
   progress in `step` (0 at the start) and heap state in `state` (freed by cleanup), and may
   use scratch for strings that must live until the request has been prepared. */
typedef struct eng__apply {
    eng__task *task;
    const eng__rule *rule;
    const eng__dest *dest;
    const eng__copy_cfg *cfg;
    const char *src_bucket;
    const char *key;              /* decoded, same on both sides */
    const char *src_version;      /* the version ID to read */
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
const eng__strategy *eng__strategy_for(const eng__task *t, const eng__rule *r,
                                       const eng__dest *d, const eng__copy_cfg *cfg);

/* Records a failure (the first failure of a task is what its row reports). */
void eng__task_fail(eng__task *t, int http_status, const char *code, const char *message);
/* Records a failure from an S3 outcome: code (NULL: S3's own code) and S3's message. */
void eng__task_fail_outcome(eng__task *t, const s3_outcome *oc, const char *code);

/* Accessors for the report writer. */
size_t eng__unit_n_tasks(const eng__unit *u);
const eng__task *eng__unit_task(const eng__unit *u, size_t i);
s3_slice eng__unit_bucket(const eng__unit *u);
uint64_t eng__unit_hash(const eng__unit *u);
void eng__unit_destroy(eng__unit *u);

/* ---- job document ---------------------------------------------------------------------- */

struct eng__job {
    json_t *doc;                 /* the CreateJob document, as given */
    char id[40];
    char account_id[64];
    char arn[256];
    int priority;
    int confirmation_required;
    /* manifest */
    int manifest_is_local;
    char manifest_bucket[256];
    char manifest_key[1100];
    char manifest_path[4096];    /* local path (given, or the downloaded copy) */
    const char *manifest_version; /* borrowed from doc */
    const char *manifest_etag;    /* borrowed from doc */
    mf_csv_opts csv;
    /* report */
    int report_enabled;
    int report_is_local;
    char report_bucket[256];
    char report_prefix[600];
    rpt_scope report_scope;
    /* state */
    char dir[4096];              /* <state>/jobs/<id> */
    eng_status status;
    char failure_code[64];
    char failure_reason[512];
    int64_t creation_ms, termination_ms;
    double active_seconds;
    uint64_t total_tasks;
};

int eng__job_parse(eng__job *job, json_t *doc, const char *origin, char *err, size_t err_len);
void eng__job_cleanup(eng__job *job);
/* {"Job": {...}} with AWS's field names. */
json_t *eng__job_describe(const eng__job *job, uint64_t succeeded, uint64_t failed);
void eng__uuid4(char out[37]);
int64_t eng__now_ms(void);
void eng__iso8601_ms(int64_t ms, char out[32]);

#endif
