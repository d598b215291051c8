/*
 * engine.h — executes replication work: many requests in flight, nothing else.
 *
 * The map of the module:
 *   queue     bounded queues where threads meet (queue.c); a queue may rank its items;
 *   unit      every listed version of one key ("unit"), replayed oldest first: built from
 *             manifest entries (the builder), then a state machine over copy strategies
 *             (unit.c; strategies in strategy.c, strategy_multipart.c);
 *   pool      N threads, each owning one curl multi handle with many transfers in flight
 *             (pool.c); units come in through per-thread queues, highest job priority
 *             first, and leave through the caller's done queue with every task's outcome.
 *
 * It knows nothing of jobs, catalogues or reports: the caller (run/) hands it units and
 * reads back eng_task outcomes. What a version needs and where it may go is asked of
 * replicate/.
 *
 * Depends on: replicate, manifest (entries), s3, libcurl, pthreads.
 */
#ifndef BATCHREP_ENGINE_H
#define BATCHREP_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest/manifest.h"
#include "replicate/replicate.h"
#include "s3/s3.h"

#define ENG_ERRNO_MAP(XX)                                                                  \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")

typedef enum eng_err {
#define XX(name, msg) ENG_E_##name,
    ENG_ERRNO_MAP(XX)
#undef XX
} eng_err;

/* ---- bounded queue of pointers (mutex + two condition variables) ---------------------- */

typedef struct eng_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    /* guarded by mu */
    void **items;
    size_t cap, head, len;
    int closed;
    size_t wake_batch;            /* see eng_queue_set_wake_batch; 1 by default */
    long (*rank)(const void *item); /* see eng_queue_set_rank; NULL: first in, first out */
    const void *(*group)(const void *item);
} eng_queue;

int eng_queue_init(eng_queue *q, size_t cap);
void eng_queue_cleanup(eng_queue *q);
/* Blocks while full. Returns -1 when the queue is closed (item not taken). */
int eng_queue_push(eng_queue *q, void *item);
/* Waits up to timeout_ms (-1: forever, 0: no wait). Returns NULL on timeout or when closed
   and drained; *out_closed tells which. */
void *eng_queue_pop(eng_queue *q, int timeout_ms, int *out_closed);
void eng_queue_close(eng_queue *q);
/* A push wakes a waiting consumer only once n items are queued (or the queue is full or
   closed), so a consumer that pops with a timeout takes items in batches instead of being
   woken once per item. Only for consumers whose pop has a timeout (it bounds the delay). */
void eng_queue_set_wake_batch(eng_queue *q, size_t n);
/* With a rank, a pop takes the item of the highest rank (read at the time of the pop, so a
   rank may change while the item waits), the earliest among equals; without, the earliest.
   Items of one group (group(item) equal; NULL group: each item alone) never overtake each
   other, even when their rank changes while a pop reads it: the pop takes the earliest item
   of the best item's group. Set before the queue is shared. */
void eng_queue_set_rank(eng_queue *q, long (*rank)(const void *item),
                        const void *(*group)(const void *item));

/* ---- units: the versions of one key, and what each task (manifest row) came to ---------- */

/* Outcome of one task (one manifest row): what the report writes. */
typedef struct eng_task {
    uint64_t seq;
    s3_slice key_raw;            /* into the unit's memory */
    s3_slice version_id;
    int has_version;
    size_t dup_of;               /* 1 + index of the task with the same version, or 0 */
    char resolved_vid[S3_VERSION_ID_MAX]; /* the current version's ID, for rows without one */
    /* learnt from the listing */
    int found;
    int is_delete_marker;
    int is_latest;
    int64_t last_modified_ms;
    unsigned list_pos;
    int64_t size;
    char storage_class[S3_STORAGE_CLASS_MAX];
    char etag[S3_ETAG_MAX];
    repl_tag *tags;              /* read only when a rule needs tags */
    size_t n_tags;
    unsigned facts_known;        /* MF_FACT_* the manifest row gave (Inventory, generator) */
    mf_facts row;                /* what the row said beyond the above (encryption, Object
                                    Lock, bucket key; acl points into the unit's memory) */
    struct repl_facts *facts;    /* read by the first strategy that needs them; NULL before */
    /* result */
    int done;
    int not_run;                 /* the job stopped first: no report row */
    int succeeded;
    int http_status;
    const char *error_code;      /* static string or s3_code, "" on success */
    char s3_code[64];            /* S3's own error code when the row reports it (the
                                    outcome it came from does not outlive the request) */
    char message[160];
} eng_task;

typedef struct eng_unit eng_unit;

/* ---- the job being run ----------------------------------------------------------------- */

typedef struct eng_counters {
    _Atomic uint64_t succeeded;
    _Atomic uint64_t failed;
    _Atomic uint64_t retries;
    _Atomic uint64_t throttle_events;
    _Atomic uint64_t requests;
} eng_counters;

typedef struct eng_pool_cfg {
    const s3_endpoint *ep;       /* = eps[0] */
    const s3_endpoint *const *eps; /* every endpoint a request may name (eng__req.ep_index) */
    size_t n_eps;
    int threads;                 /* pool threads ("lanes"), each with its own curl multi */
    int concurrency;
    s3_retry_policy retry;       /* per request (s3_backoff_ms), as every request of ours */
    eng_counters *counters;
    eng_queue *done_q;          /* finished units go here (the report writer's input) */
    int queue_depth;             /* units waiting per lane; 0: as many as it has seats
                                    (at least 2). Short, so that units already queued do
                                    not delay a job whose priority was raised */
} eng_pool_cfg;

typedef struct eng_pool eng_pool;

eng_pool *eng_pool_start(const eng_pool_cfg *cfg, char *err, size_t err_len);
/* Hands a unit to the lane that owns its key (hash), blocking while that lane's queue
   is full. */
int eng_pool_submit(eng_pool *p, eng_unit *u);
/* No more units: lanes drain, then exit; joins them. */
void eng_pool_finish(eng_pool *p);
void eng_pool_destroy(eng_pool *p);

/* Unit construction by the planner: rows of one key are gathered, then turned into a unit
   with a single allocation. */
typedef struct eng_bent {
    uint64_t seq;
    size_t key_raw_off, key_raw_len;
    size_t vid_off, vid_len;
    int has_version;
    mf_facts facts;              /* etag, acl cleared: they would point into the reader */
    size_t etag_off, etag_len;   /* the row's ETag, in mem */
    size_t acl_off, acl_len;     /* the row's ObjectAccessControlList, in mem */
} eng_bent;

typedef struct eng_unit_builder {
    s3_buf mem;                  /* bucket, key, then each row's raw key and version */
    eng_bent *ents;
    size_t n_ents, cap_ents;
    size_t bucket_len, key_len;  /* bucket at mem[0], key right after it */
} eng_unit_builder;

/* At most this many rows, and this many bytes of row text (raw keys, version IDs, ETags,
   ACLs: the builder's mem), in one unit; a longer run of one key is split (in order), so a
   unit's memory is a budget whatever its rows hold. 64 MiB is ~32,000 rows of 1,024-byte
   keys with 1,024-byte version IDs, or 100,000 rows of 670 bytes; typical rows (~100
   bytes) reach the row limit first. */
#define ENG_UNIT_MAX_TASKS 100000
#define ENG_UNIT_MAX_BYTES ((size_t)64 << 20)

void eng_unit_builder_init(eng_unit_builder *b);
void eng_unit_builder_cleanup(eng_unit_builder *b);
size_t eng_unit_builder_len(const eng_unit_builder *b);
/* 1 when e belongs to the group being built (same bucket and key), 0 otherwise. */
int eng_unit_builder_same_key(const eng_unit_builder *b, const mf_entry *e);
int eng_unit_builder_add(eng_unit_builder *b, const mf_entry *e);
/* Turns the group into a unit (one allocation) and empties the builder. NULL: no memory.
   rules, stop and job are borrowed and must outlive the unit: the unit runs under those
   rules, abandons its work when *stop becomes nonzero, and carries job (the caller's context:
   run/ passes the unit's shard) for the writer. */
eng_unit *eng_unit_builder_take(eng_unit_builder *b, const repl_rules *rules,
                                  _Atomic int *stop, const _Atomic int *priority, void *job);
/* The priority of the unit's job now (0 when it has none; LONG_MAX once the job stopped,
   so its units are abandoned at once): the pool takes the unit of the highest priority
   next (eng_queue_set_rank). The units of one job form one group (eng_unit_rank_group),
   so they keep their order among themselves. */
long eng_unit_priority(const void *unit);
const void *eng_unit_rank_group(const void *unit);
uint64_t eng_unit_first_seq(const eng_unit *u);
void *eng_unit_job(const eng_unit *u);
/* Resumed work: before writing to a destination, list what it already holds and skip the
   versions a run before the crash replicated (idempotent resume). */
void eng_unit_set_recheck(eng_unit *u);
/* The unit stops (as when *stop is set) once s3_mono_ms() reaches *until_mono_ms: no request
   is sent after it (a lease that ended: another worker may own the key now). Borrowed, must
   outlive the unit. */
void eng_unit_set_deadline(eng_unit *u, const _Atomic int64_t *until_mono_ms);
/* The unit's source bucket has ACLs disabled: its versions' ACLs are not read. */
void eng_unit_set_src_acls_disabled(eng_unit *u);

/* Accessors for the report writer. */
size_t eng_unit_n_tasks(const eng_unit *u);
/* Destinations the source's current version was copied to on top of the rows' versions
   (it was not among them: unit.c "The current version is restored"). */
unsigned eng_unit_n_restored(const eng_unit *u);
const eng_task *eng_unit_task(const eng_unit *u, size_t i);
s3_slice eng_unit_bucket(const eng_unit *u);
uint64_t eng__unit_hash(const eng_unit *u);
void eng_unit_destroy(eng_unit *u);


#endif
