/*
 * engine_int.h — internals shared by the engine's files. Never included from outside
 * engine/.
 */
#ifndef BATCHREP_ENGINE_INT_H
#define BATCHREP_ENGINE_INT_H

#include "engine/engine.h"

typedef struct eng_store eng_store;

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
    size_t wake_batch;            /* see eng__queue_set_wake_batch; 1 by default */
    long (*rank)(const void *item); /* see eng__queue_set_rank; NULL: first in, first out */
} eng__queue;

int eng__queue_init(eng__queue *q, size_t cap);
void eng__queue_cleanup(eng__queue *q);
/* Blocks while full. Returns -1 when the queue is closed (item not taken). */
int eng__queue_push(eng__queue *q, void *item);
/* Waits up to timeout_ms (-1: forever, 0: no wait). Returns NULL on timeout or when closed
   and drained; *out_closed tells which. */
void *eng__queue_pop(eng__queue *q, int timeout_ms, int *out_closed);
void eng__queue_close(eng__queue *q);
/* A push wakes a waiting consumer only once n items are queued (or the queue is full or
   closed), so a consumer that pops with a timeout takes items in batches instead of being
   woken once per item. Only for consumers whose pop has a timeout (it bounds the delay). */
void eng__queue_set_wake_batch(eng__queue *q, size_t n);
/* With a rank, a pop takes the item of the highest rank (read at the time of the pop, so a
   rank may change while the item waits), the earliest among equals; without, the earliest.
   Set before the queue is shared. */
void eng__queue_set_rank(eng__queue *q, long (*rank)(const void *item));

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
    int acls_disabled;           /* Object Ownership BucketOwnerEnforced: a replica carries
                                    no ACL (S3 refuses grants there) */
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
    eng__copy_cfg copy;          /* set when a worker takes the job (prepare.c) */
} eng__rules;

/* Parses PutBucketReplication JSON (a bare configuration, or wrapped in
   {"ReplicationConfiguration": ...}). err names the file and the field. */
int eng__rules_from_json(eng__rules *out, json_t *root, const char *origin, char *err,
                         size_t err_len);
/* GetBucketReplication on the bucket (XML -> the same structure); *out_json (may be NULL)
   receives the configuration as JSON text (caller frees). */
int eng__rules_load_bucket(eng__rules *out, const s3_endpoint *ep, const char *bucket,
                           char **out_json, char *err, size_t err_len);
void eng__rules_cleanup(eng__rules *r);

/* Binds destinations to the endpoints of --destination-profile BUCKET=PROFILE: each profile
   is loaded into a new eps[*n_eps] (the caller frees them) and the bucket's ep_index set. */
int eng__dests_load_profiles(const char *const *bindings, size_t n_bindings,
                             s3_endpoint **eps, size_t max_eps, size_t *n_eps, char *err,
                             size_t err_len);
/* Points each destination named by a "BUCKET=PROFILE" binding at endpoint 1 + its index. */
void eng__dests_assign(eng__rules *rules, const char *const *bindings, size_t n_bindings);
/* Per destination, once: GetBucketVersioning (state), then for a usable one
   GetObjectLockConfiguration, GetBucketOwnershipControls and GetBucketAcl (owner). */
void eng__dests_check(eng__rules *rules, const s3_endpoint *const *eps);
/* 1 when GetBucketOwnershipControls says BucketOwnerEnforced (ACLs disabled); 0 otherwise,
   also when the server cannot say (no controls set, not implemented, an error). */
int eng__bucket_acls_disabled(const s3_endpoint *ep, const char *bucket);

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
    char etag[80];
    eng__tag *tags;              /* read only when a rule needs tags */
    size_t n_tags;
    unsigned facts_known;        /* MF_FACT_* the manifest row gave (Inventory, generator) */
    mf_facts row;                /* what the row said beyond the above (encryption, Object
                                    Lock, bucket key; acl points into the unit's memory) */
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
    int workers;
    int concurrency;
    int max_attempts;
    int retry_base_ms;
    int retry_cap_ms;
    eng__counters *counters;
    eng__queue *done_q;          /* finished units go here (the report writer's input) */
    int queue_depth;             /* units waiting per worker; 0: as many as it has seats
                                    (at least 2). Short, so that units already queued do
                                    not delay a job whose priority was raised */
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
    mf_facts facts;              /* etag, acl cleared: they would point into the reader */
    size_t etag_off, etag_len;   /* the row's ETag, in mem */
    size_t acl_off, acl_len;     /* the row's ObjectAccessControlList, in mem */
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
/* Turns the group into a unit (one allocation) and empties the builder. NULL: no memory.
   rules, stop and job are borrowed and must outlive the unit: the unit runs under those
   rules, abandons its work when *stop becomes nonzero, and carries job for the writer. */
eng__unit *eng__unit_builder_take(eng__unit_builder *b, const eng__rules *rules,
                                  _Atomic int *stop, const _Atomic int *priority, void *job);
/* The priority of the unit's job now (0 when it has none): the pool takes the unit of the
   highest priority next (eng__queue_set_rank). */
long eng__unit_priority(const void *unit);
uint64_t eng__unit_first_seq(const eng__unit *u);
const eng__rules *eng__unit_rules(const eng__unit *u);
int eng__unit_stopped(const eng__unit *u);
void *eng__unit_job(const eng__unit *u);
/* Resumed work: before writing to a destination, list what it already holds and skip the
   versions a run before the crash replicated (idempotent resume). */
void eng__unit_set_recheck(eng__unit *u);
/* The unit's source bucket has ACLs disabled: its versions' ACLs are not read. */
void eng__unit_set_src_acls_disabled(eng__unit *u);

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
/* A manifest row that tells everything a CopyObject needs (size, ETag, LastModified,
   storage class, encryption, Object Lock: an Inventory with those columns) stands in for
   HeadObject: returns 1 and sets have_head, else 0. Not for SSE-C / DSSE-KMS versions. */
int eng__facts_from_row(eng__facts *f, const eng__task *t);
/* The row's ObjectAccessControlList (base64 JSON, status AVAILABLE) stands in for
   GetObjectAcl: 0 and have_acl set; -1 when it cannot (UNAVAILABLE, malformed). */
int eng__facts_acl_from_row(eng__facts *f, s3_slice b64);
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

/* ---- checkpoint (checkpoint.c) ------------------------------------------------------------ */

typedef struct eng__ckpt {
    uint64_t low;                /* every task with seq < low is done, its row durable */
    uint64_t *iv;                /* done ranges above low: [iv[2i], iv[2i+1]), sorted */
    size_t n_iv, cap_iv;
    uint64_t succeeded_bytes, failed_bytes; /* results file sizes that hold those rows */
    uint64_t succeeded, failed;  /* task counts of those rows */
    uint64_t plan_limit;         /* no unit at or past this seq was handed out */
} eng__ckpt;

int eng__ckpt_add(eng__ckpt *c, uint64_t start, uint64_t end);
int eng__ckpt_done(const eng__ckpt *c, uint64_t start, uint64_t end);
int eng__ckpt_save(const char *path, const eng__ckpt *c);
int eng__ckpt_load(const char *path, eng__ckpt *out); /* 0 loaded, 1 none, <0 error */
void eng__ckpt_cleanup(eng__ckpt *c);

/* ---- the metrics endpoint (metrics.c) ---------------------------------------------------- */

/* Writes the Prometheus text into out (capped); 0, or nonzero when it did not fit. Called
   on the server's own thread. */
typedef int (*eng__metrics_render_fn)(s3_buf *out, void *user);
typedef struct eng__metrics eng__metrics;
/* Listens on addr ("IPv4:PORT") and serves render's text from a thread of its own. NULL,
   with err naming the address and the reason, when it cannot. */
eng__metrics *eng__metrics_start(const char *addr, eng__metrics_render_fn render, void *user,
                                 char *err, size_t err_len);
void eng__metrics_stop(eng__metrics *m); /* NULL is a no-op */

/* ---- job catalogue (store.c) ----------------------------------------------------------- */

/* A job as the catalogue keeps it. Strings owned (eng__job_row_cleanup). */
typedef struct eng__job_row {
    char id[40];
    char token[80];
    char *doc;                   /* the CreateJob JSON */
    char *rules;                 /* replication configuration JSON, NULL: the bucket's */
    eng_status status;
    int priority;
    uint64_t total, succeeded, failed;
    int64_t created_ms, terminated_ms, active_ms;
    char failure_code[64];
    char failure_reason[1024];
    char status_reason[300];
    int64_t suspended_ms;
    char suspended_cause[300];
    char *generated_manifest;    /* GeneratedManifestDescriptor JSON, NULL: none */
    int owner_pid;
    int64_t owner_seen_ms;
} eng__job_row;

void eng__job_row_cleanup(eng__job_row *r);
int eng__store_get(eng_store *s, const char *id, eng__job_row *out, char *err, size_t err_len);
int eng__store_insert(eng_store *s, const eng__job_row *r, char *out_existing_id, char *err,
                      size_t err_len);
int eng__store_save(eng_store *s, const eng__job_row *r, char *err, size_t err_len);
int eng__store_cas_status(eng_store *s, const char *id, eng_status from, eng_status to,
                          const char *reason, char *err, size_t err_len);
int eng__store_set_priority(eng_store *s, const char *id, int priority, char *err,
                            size_t err_len);
int eng__store_claim(eng_store *s, const char *id, char *err, size_t err_len);
int eng__store_each(eng_store *s, const eng_status *statuses, size_t n_statuses,
                    int (*cb)(const eng__job_row *r, void *user), void *user, char *err,
                    size_t err_len);
const char *eng__store_dir(const eng_store *s);
int eng__mkdir_p(const char *path);
void eng__state_root(const char *given, char *out, size_t cap);
/* "Active" -> ENG_STATUS_ACTIVE; -1 when unknown. */
int eng__status_parse(const char *name);

/* ---- job document ---------------------------------------------------------------------- */

#define ENG__GEN_MAX_LIST 16

/* ManifestGenerator.S3JobManifestGenerator, parsed (strings borrowed from the job's doc). */
typedef struct eng__gen {
    int enabled;
    char source_bucket[256];
    int output;                  /* EnableManifestOutput */
    char out_bucket[256];
    const char *out_prefix;      /* ManifestPrefix, NULL when absent */
    mf_gen_filter filter;
    const char *prefixes[ENG__GEN_MAX_LIST], *suffixes[ENG__GEN_MAX_LIST];
    const char *substrings[ENG__GEN_MAX_LIST], *classes[ENG__GEN_MAX_LIST];
    /* after generation */
    int generated;
    uint64_t n_selected;
    char manifest_arn[1400];     /* GeneratedManifestDescriptor.Location */
    char manifest_etag[40];
} eng__gen;

struct eng__job {
    eng__job_row row;            /* id, status, counters, times, failure */
    json_t *doc;                 /* the CreateJob document, parsed */
    char account_id[64];
    char arn[256];
    int confirmation_required;
    /* manifest */
    int manifest_is_local;
    char manifest_bucket[256];
    char manifest_key[1100];
    char manifest_path[4096];    /* local path (given, or the downloaded copy) */
    const char *manifest_version; /* borrowed from doc */
    const char *manifest_etag;    /* borrowed from doc */
    mf_csv_opts csv;
    mf_format manifest_format;
    eng__gen gen;
    /* report */
    int report_enabled;
    int report_is_local;
    char report_bucket[256];
    char report_prefix[600];
    rpt_scope report_scope;
    /* state */
    char dir[4096];              /* <state>/jobs/<id> */
};

/* Parses and validates a CreateJob document (job->row is left alone). */
int eng__job_parse(eng__job *job, json_t *doc, const char *origin, char *err, size_t err_len);
/* Loads a job from the catalogue row (takes ownership of *row's strings) and fills the
   derived fields (ARN, directory) for the state root. */
int eng__job_load(eng__job *job, eng__job_row *row, const char *state_root, const char *region,
                  char *err, size_t err_len);

/* ---- manifests of every kind (manifests.c) ------------------------------------------------ */

/* Parses ManifestGenerator (JSON of the CreateJob document) into job->gen. err names the
   member ("job.json: ManifestGenerator.S3JobManifestGenerator.Filter.CreatedAfter: ..."). */
int eng__gen_parse(eng__job *job, json_t *gen, const char *origin, char *err, size_t err_len);
/* Preparing, generated manifest: loads the bucket's rules when *rules_loaded is 0 (the
   EligibleForReplication filter needs them), lists and filters into
   <job dir>/generated/<base>/manifest.json, uploads it when EnableManifestOutput, and points
   job->manifest_path at it. On failure the job is Failed (code, reason) and -1 is
   returned. */
int eng__gen_prepare(eng__job *job, const s3_endpoint *ep, eng__rules *rules,
                     int *rules_loaded);
/* Points job->manifest_path at where Preparing spools a generated manifest. */
void eng__gen_locate(eng__job *job);
/* Opens the job's manifest, whatever its format. NULL: *out_rc and msg say why. */
mf_reader *eng__manifest_open(const eng__job *job, const s3_endpoint *ep, int *out_rc,
                              char *msg, size_t cap);
void eng__job_cleanup(eng__job *job);
/* {"Job": {...}} with AWS's field names. */
json_t *eng__job_describe(const eng__job *job);
void eng__job_fail(eng__job *job, const char *code, const char *reason);
/* Preparing: manifest fetched, validated and counted, rules captured. -1: job Failed. */
int eng__prepare(eng__job *job, const s3_endpoint *ep);
/* The job's rules parsed, destinations bound to their endpoints (eps, from the worker's
   --destination-profile bindings) and checked, copy settings applied. -1: job Failed. */
int eng__attach_rules(eng__job *job, eng__rules *rules, const s3_endpoint *const *eps,
                      const eng_options *o);

/* JobListDescriptor (aws-formats.md §4.4). */
json_t *eng__job_list_descriptor(const eng__job *job);
int64_t eng__now_ms(void);
void eng__iso8601_ms(int64_t ms, char out[32]);

#endif
