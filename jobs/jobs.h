/*
 * jobs.h — the job catalogue and the job verbs, named like `aws s3control`'s.
 *
 * The map of the module:
 *   store     the catalogue behind one interface (store.c; store_sqlite.c: SQLite in the
 *             state directory, store_pg.c: a shared PostgreSQL);
 *   job       the CreateJob document, validated with messages that name the member, and the
 *             DescribeJob / JobListDescriptor answers (job.c); ManifestGenerator's members
 *             (generator.c);
 *   status    AWS's job states, their names, and how a job fails (status.c);
 *   verbs     CreateJob, DescribeJob, ListJobs, UpdateJobPriority, UpdateJobStatus
 *             (verbs.c): what the CLI, the API and the console all call;
 *   report    Preparing's check that the job's report can be written (report_check.c).
 *
 * Knows nothing of transfers: running a job is run/'s work.
 *
 * Depends on: replicate (validating a configuration), manifest and report (the document's
 * formats), s3, jansson, SQLite, libpq.
 */
#ifndef BATCHREP_JOBS_H
#define BATCHREP_JOBS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "manifest/manifest.h"
#include "replicate/replicate.h"
#include "report/report.h"
#include "s3/s3.h"

#define JOBS_ERRNO_MAP(XX)                                                                 \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")                                                             \
    XX(INVALID_JOB, "invalid job document")                                                \
    XX(INVALID_RULES, "invalid replication configuration")                                 \
    XX(IO, "local file I/O error")                                                         \
    XX(DISK_FULL, "the disk is full")                                                      \
    XX(S3, "S3 request failed")                                                            \
    XX(NOT_FOUND, "no such job")                                                           \
    XX(STATUS, "the job's status does not allow this (JobStatusException)")                \
    XX(IDEMPOTENCY, "the ClientRequestToken was used for another request (IdempotencyException)") \
    XX(SCHEMA, "the catalogue was made by a newer batchrep")

typedef enum jobs_err {
#define XX(name, msg) JOBS_E_##name,
    JOBS_ERRNO_MAP(XX)
#undef XX
} jobs_err;

const char *jobs_strerror(int err);
const char *jobs_errname(int err);

/* AWS JobStatus (§4.1), in the enum's documented order of a job's life. */
#define JOBS_STATUS_MAP(XX)                                                                 \
    XX(NEW, "New")                                                                         \
    XX(PREPARING, "Preparing")                                                             \
    XX(SUSPENDED, "Suspended")                                                             \
    XX(READY, "Ready")                                                                     \
    XX(ACTIVE, "Active")                                                                   \
    XX(PAUSING, "Pausing")                                                                 \
    XX(PAUSED, "Paused")                                                                   \
    XX(COMPLETING, "Completing")                                                           \
    XX(COMPLETE, "Complete")                                                               \
    XX(FAILING, "Failing")                                                                 \
    XX(FAILED, "Failed")                                                                   \
    XX(CANCELLING, "Cancelling")                                                           \
    XX(CANCELLED, "Cancelled")

typedef enum jobs_status {
#define XX(name, str) JOBS_STATUS_##name,
    JOBS_STATUS_MAP(XX)
#undef XX
} jobs_status;

const char *jobs_status_name(jobs_status s);

/* ---- the job catalogue ----------------------------------------------------------------- */

/* The job catalogue, one interface over two backends (store.c dispatches):
     SQLite   (store_sqlite.c) <state>/batchrep.db in WAL mode, the default: one machine,
              any number of processes;
     PostgreSQL (store_pg.c, libpq) a shared catalogue: any number of workers on any machines.
   catalog: "postgresql://..." or "postgres://..." (a libpq connection URI) selects
   PostgreSQL; NULL or "" reads $BATCHREP_CATALOG, and without it SQLite in the state
   directory. state_dir NULL: $BATCHREP_STATE_DIR, else $XDG_STATE_HOME/batchrep, else
   ~/.local/state/batchrep; with PostgreSQL it is the process's scratch space only.
   Both create their schema and record its version (table batchrep_schema); a catalogue of
   a newer version than JOBS_SCHEMA_VERSION is refused (-JOBS_E_SCHEMA, err names it).
   Every function may be called from several threads of one process (the store serialises
   them). Times that decide leases and claims are the catalogue's clock (PostgreSQL's
   clock_timestamp(); SQLite: this machine's), never the caller's. */
#define JOBS_SCHEMA_VERSION 2
typedef struct jobs_store jobs_store;
int jobs_store_open(const char *state_dir, const char *catalog, jobs_store **out, char *err,
                    size_t err_len);
/* 1: a shared catalogue (PostgreSQL): a job's spool and report rows must be where every
   worker can read them; 0: SQLite on this machine. */
int jobs_store_shared(const jobs_store *s);
/* This process's worker identity in the catalogue: "<hostname>/<pid>/<16 hex random>". */
const char *jobs_store_worker_id(const jobs_store *s);
/* The catalogue named for a person, without any password ("postgresql://host:port/db",
   or the SQLite file's path). */
const char *jobs_store_name(const jobs_store *s);
void jobs_store_close(jobs_store *s); /* NULL is a no-op */

/*
 * The verbs, named like `aws s3control`'s. Each returns 0 and sets *out to the JSON that the
 * verb prints (AWS's field names; the caller decrefs), or -JOBS_E_* with err naming the
 * problem: JOBS_E_INVALID_JOB for a bad document or argument, JOBS_E_NOT_FOUND for an unknown
 * job, JOBS_E_STATUS for a transition the job's status does not allow (AWS's
 * JobStatusException).
 */
int jobs_create_job(jobs_store *s, const char *job_path, const char *replication_config_path,
                   json_t **out, char *err, size_t err_len);
int jobs_describe_job(jobs_store *s, const char *job_id, json_t **out, char *err,
                     size_t err_len);
int jobs_list_jobs(jobs_store *s, const char *const *statuses, size_t n_statuses, json_t **out,
                  char *err, size_t err_len);
int jobs_update_job_priority(jobs_store *s, const char *job_id, long priority, json_t **out,
                            char *err, size_t err_len);
int jobs_update_job_status(jobs_store *s, const char *job_id, const char *requested,
                          const char *reason, json_t **out, char *err, size_t err_len);

/* ---- job catalogue (store.c) ----------------------------------------------------------- */

/* A job as the catalogue keeps it. Strings owned (jobs_row_cleanup). */
typedef struct jobs_row {
    char id[40];
    char token[80];
    char *doc;                   /* the CreateJob JSON */
    char *rules;                 /* replication configuration JSON, NULL: the bucket's */
    jobs_status status;
    int priority;
    uint64_t total, succeeded, failed;
    int64_t created_ms, terminated_ms, active_ms;
    char failure_code[64];
    char failure_reason[1024];
    char status_reason[300];
    int64_t suspended_ms;
    char suspended_cause[300];
    char *generated_manifest;    /* GeneratedManifestDescriptor JSON, NULL: none */
    char owner[128];             /* the worker that claimed the job (jobs_store_claim): it
                                    prepares or finishes it; "" none */
    int64_t owner_seen_ms;       /* its last heartbeat (catalogue clock) */
    int64_t active_since_ms;     /* when the job last became Active (catalogue clock), 0
                                    when it is not Active: active_ms + (now - this) is its
                                    ElapsedTimeInActiveSeconds */
    /* CreateJob idempotency (verbs.c): SHA-256 (hex) of the canonical document and of the
       replication configuration given at creation; "" in a job created before they were
       kept (the document's is then computed from doc, the configuration's is unknown) */
    char doc_sha256[65];
    char rules_sha256[65];
} jobs_row;

void jobs_row_cleanup(jobs_row *r);
int jobs_store_get(jobs_store *s, const char *id, jobs_row *out, char *err, size_t err_len);
int jobs_store_insert(jobs_store *s, const jobs_row *r, char *out_existing_id, char *err,
                      size_t err_len);
/* Writes what a worker changes on a job: status (merged: a status another process set
   meanwhile that the worker may not leave stays, e.g. Cancelling), total, failure code and
   reason, status reason, suspended time and cause, generated manifest, rules. Not the
   counters (jobs_store_shard_save adds to them), not the owner (jobs_store_claim), not
   active_ms: the store keeps the Active time itself from the status changes
   (active_since_ms). */
int jobs_store_save(jobs_store *s, const jobs_row *r, char *err, size_t err_len);
int jobs_store_cas_status(jobs_store *s, const char *id, jobs_status from, jobs_status to,
                          const char *reason, char *err, size_t err_len);
int jobs_store_set_priority(jobs_store *s, const char *id, int priority, char *err,
                            size_t err_len);
/* Claims the job for this worker (to prepare or to finish it), or renews the claim:
   taken when nobody holds it, this worker holds it, the holder's heartbeat is older than
   JOBS_CLAIM_STALE_MS (catalogue clock), or the holder is a process of this host that is
   gone (kill(pid, 0)). 1 taken, 0 held by another live worker, <0 error. */
#define JOBS_CLAIM_STALE_MS 30000
int jobs_store_claim(jobs_store *s, const char *id, char *err, size_t err_len);
/* Gives the claim up when this worker holds it (no-op otherwise). */
int jobs_store_unclaim(jobs_store *s, const char *id, char *err, size_t err_len);
int jobs_store_each(jobs_store *s, const jobs_status *statuses, size_t n_statuses,
                    int (*cb)(const jobs_row *r, void *user), void *user, char *err,
                    size_t err_len);

/* ---- shards and their leases (the fleet) -----------------------------------------------
 * Preparing cuts a job's manifest into key-disjoint shards (run/spool.c) and records them
 * here. Any worker leases a shard, heartbeats, and saves the shard's checkpoint here; a
 * lease not renewed for its TTL expires and another worker leases the shard and resumes
 * from its last checkpoint. Each lease carries a fencing token (unique in the catalogue,
 * increasing): a checkpoint is saved only while its token is the shard's current one. */
typedef struct jobs_shard {
    char job_id[40];
    uint32_t index;
    uint64_t first_seq, n_rows;  /* the spool's rows [first_seq, first_seq + n_rows) */
    int complete;
    int uncertain;               /* its progress was lost (recorded again after a catalogue
                                    rebuild): every unit not known done rechecks */
    int64_t token;               /* current (or last) lease's token; 0: never leased */
    char owner[128];             /* worker holding the lease, "" none */
    int64_t expires_ms;          /* lease expiry (catalogue clock) */
    int leased_before;           /* a lease before this one existed (a takeover/resume) */
    uint64_t succeeded, failed;  /* the tasks its last checkpoint counts */
    char *ckpt;                  /* last checkpoint (run/'s JSON, opaque here), NULL none */
} jobs_shard;
void jobs_shard_cleanup(jobs_shard *sh); /* frees ckpt */

/* Records the job's shards (index, first_seq, n_rows, uncertain read from each), replacing
   any the job had, in one transaction; the job's counters start again from 0 (the sum over
   shards that have no checkpoint yet). */
int jobs_store_shards_put(jobs_store *s, const char *job_id, const jobs_shard *shards,
                          size_t n, char *err, size_t err_len);
/* Leases a shard for this worker for ttl_ms: of the shards that are not complete and not
   leased (or whose lease expired), of the job of highest priority (oldest first among
   equals) whose status is Ready, Active, Pausing or Paused, one leased before (its worker
   died or stalled: started work is finished first) else the lowest index; only_job non-NULL:
   of that job only. The lease gets a new token. PostgreSQL: row locks with FOR UPDATE SKIP
   LOCKED, so workers leasing at once never wait for each other. 1 leased (*out filled, the
   caller cleans it up), 0 none to lease, <0 error. */
int jobs_store_shard_lease(jobs_store *s, const char *only_job, int64_t ttl_ms,
                           jobs_shard *out, char *err, size_t err_len);
/* Renews this worker's lease: 1 renewed (expires ttl_ms from now), 0 lost (another token,
   or complete), <0 error. A lease that expired but was not taken is renewed. */
int jobs_store_shard_renew(jobs_store *s, const char *job_id, uint32_t index, int64_t token,
                           int64_t ttl_ms, char *err, size_t err_len);
/* Saves the shard's checkpoint, fenced by token: only while token is its current lease.
   succeeded, failed: the tasks the checkpoint counts (the whole shard's); the job's counters
   move by the difference from the shard's previous ones in the same transaction, so they
   are always the sum over its shards, whatever a checkpoint lost or a takeover redid.
   complete: the shard is done, its lease ends. 1 saved, 0 refused (stale token: the lease
   was lost), <0 error. */
int jobs_store_shard_save(jobs_store *s, const char *job_id, uint32_t index, int64_t token,
                          const char *ckpt, int complete, uint64_t succeeded,
                          uint64_t failed, char *err, size_t err_len);
/* Ends this worker's lease without completing the shard (drain, cancel): another worker
   may lease it at once. 1 released, 0 it was not ours, <0 error. */
int jobs_store_shard_release(jobs_store *s, const char *job_id, uint32_t index,
                             int64_t token, char *err, size_t err_len);
/* Ends the leases of the job's shards that a process of this host holds and that is gone
   (kill -9 of a `run`, then the same command again: its shards are free at once instead of
   after their TTL). Fenced like a release. The number ended, or <0. */
int jobs_store_reap(jobs_store *s, const char *job_id, char *err, size_t err_len);
/* Every shard of the job, by index. cb returning nonzero stops. */
int jobs_store_shards_each(jobs_store *s, const char *job_id,
                           int (*cb)(const jobs_shard *sh, void *user), void *user, char *err,
                           size_t err_len);
/* The job's shards: how many, how many complete, how many leased now (lease not expired). */
typedef struct jobs_shard_counts {
    uint64_t n, complete, leased;
} jobs_shard_counts;
int jobs_store_shards_count(jobs_store *s, const char *job_id, jobs_shard_counts *out,
                            char *err, size_t err_len);
const char *jobs_store_dir(const jobs_store *s);
void jobs_state_root(const char *given, char *out, size_t cap);
/* "Active" -> JOBS_STATUS_ACTIVE; -1 when unknown. */
int jobs_status_parse(const char *name);

/* ---- job document ---------------------------------------------------------------------- */

#define JOBS_GEN_MAX_LIST 16

/* ManifestGenerator.S3JobManifestGenerator, parsed (strings borrowed from the job's doc). */
typedef struct jobs_gen {
    int enabled;
    char source_bucket[256];
    int output;                  /* EnableManifestOutput */
    char out_bucket[256];
    const char *out_prefix;      /* ManifestPrefix, NULL when absent */
    mf_gen_filter filter;
    const char *prefixes[JOBS_GEN_MAX_LIST], *suffixes[JOBS_GEN_MAX_LIST];
    const char *substrings[JOBS_GEN_MAX_LIST], *classes[JOBS_GEN_MAX_LIST];
    /* after generation */
    int generated;
    uint64_t n_selected;
    char manifest_arn[1400];     /* GeneratedManifestDescriptor.Location */
    char manifest_etag[40];
} jobs_gen;

typedef struct jobs_job {
    jobs_row row;            /* id, status, counters, times, failure */
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
    jobs_gen gen;
    /* report */
    int report_enabled;
    int report_is_local;
    char report_bucket[4096];    /* a bucket name, or a local directory */
    char report_prefix[600];
    rpt_scope report_scope;
    /* state */
    char dir[4096];              /* <state>/jobs/<id> */
} jobs_job;

/* Parses and validates a CreateJob document (job->row is left alone). */
int jobs_job_parse(jobs_job *job, json_t *doc, const char *origin, char *err, size_t err_len);
/* The CreateJob rules checked only when a job is created, not when a stored one is loaded
   (jobs a catalogue already holds keep running): Operation.S3ReplicateObject is {}, RoleArn
   is an IAM role ARN of at most 2,048 bytes, an S3 manifest has its ETag. -JOBS_E_INVALID_JOB
   with err naming the member. */
int jobs_job_check_new(const jobs_job *job, const char *origin, char *err, size_t err_len);
/* Loads a job from the catalogue row (takes ownership of *row's strings) and fills the
   derived fields (ARN, directory) for the state root. */
int jobs_job_load(jobs_job *job, jobs_row *row, const char *state_root, const char *region,
                  char *err, size_t err_len);

/* ---- ManifestGenerator (generator.c), the job's life (job.c, status.c) -------------------- */

/* Parses ManifestGenerator (JSON of the CreateJob document) into job->gen. err names the
   member ("job.json: ManifestGenerator.S3JobManifestGenerator.Filter.CreatedAfter: ..."). */
int jobs_gen_parse(jobs_job *job, json_t *gen, const char *origin, char *err, size_t err_len);
/* Points job->manifest_path at where Preparing spools a generated manifest. */
void jobs_gen_locate(jobs_job *job);
/* base = "[<ManifestPrefix>/]job-<id>", the key prefix of the generated manifest (the
   prefix exactly as given, trailing '/'s dropped). */
void jobs_gen_base(const jobs_job *job, char *base, size_t cap);
void jobs_job_cleanup(jobs_job *job);
/* {"Job": {...}} with AWS's field names. */
json_t *jobs_job_describe(const jobs_job *job);
/* The job failed before or outside its tasks: AWS's FailureCode and a reason for a person
   recorded, status Failed (when the status allows it: a terminal job stays what it is). */
void jobs_job_fail(jobs_job *job, const char *code, const char *reason);
/* The same failure recorded, the status left alone: a running job goes Failing, writes its
   report, and only then Failed (run/scheduler.c finish). */
void jobs_job_set_failure(jobs_job *job, const char *code, const char *reason);
/* Preparing's check of the report's destination (report_check.c), before any task runs: for
   a report bucket, HeadBucket, then a PutObject of an empty marker object
   "[<prefix>/]job-<id>/.batchrep-write-check" and its DeleteObject (the version it made, in a
   versioned bucket; a refused delete leaves the marker and is not an error); for a local
   directory, that it can be created and a file written there. 0, or -1 with err saying why
   (for the job's ReportNotWritable). A job without a report passes. */
int jobs_report_check(const jobs_job *job, const s3_endpoint *ep, char *err, size_t err_len);

/* ---- the status machine (status.c) ------------------------------------------------------- */

/* Who asks for a transition: the worker running the job, or a request (UpdateJobStatus). */
enum { JOBS_BY_WORKER = 1u << 0, JOBS_BY_REQUEST = 1u << 1 };
/* 1 when `by` may move a job from `from` to `to` (one table, aws-formats.md §4.1). */
int jobs_status_allowed(jobs_status from, jobs_status to, unsigned by);
int jobs_status_terminal(jobs_status s); /* Complete, Failed, Cancelled */
/* The one setter of a job's status: r->status = to when the table allows it (stamping
   terminated_ms on a terminal status, suspended_ms on Suspended); the same status is a no-op.
   -JOBS_E_STATUS with err (may be NULL) "JobStatusException: ..." when refused. */
int jobs_row_set_status(jobs_row *r, jobs_status to, unsigned by, char *err, size_t err_len);
/* JobListDescriptor (aws-formats.md §4.4). */
json_t *jobs_job_list_descriptor(const jobs_job *job);

#endif
