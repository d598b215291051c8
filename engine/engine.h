/*
 * engine.h — runs S3 Batch Replication jobs.
 *
 * The map of the module:
 *   job       the CreateJob document (../shared/aws-formats.md §3), validated with messages
 *             that name the field; the job's status (§4) and its DescribeJob JSON;
 *   rules     the replication configuration (PutBucketReplication JSON, or the source
 *             bucket's GetBucketReplication XML) and rule selection for one version;
 *   planner   manifest entries -> key groups ("units": every listed version of one key), so
 *             the versions of a key are replayed oldest first on one worker;
 *   pool      N worker threads, each owning one curl multi handle with many transfers in
 *             flight; they meet the planner and the report writer only at bounded queues;
 *   unit      the per-key state machine: list the key's versions, read tags when a rule
 *             needs them, decide eligibility, then copy / delete-marker each version to
 *             each destination, with retries (full-jitter backoff) and a shared slow-down.
 *
 * Depends on: manifest, report, s3, jansson, pthreads.
 */
#ifndef BATCHREP_ENGINE_H
#define BATCHREP_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define ENG_ERRNO_MAP(XX)                                                                  \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")                                                             \
    XX(INVALID_JOB, "invalid job document")                                                \
    XX(INVALID_RULES, "invalid replication configuration")                                 \
    XX(CONFIG, "invalid endpoint or credentials configuration")                            \
    XX(IO, "local file I/O error")                                                         \
    XX(S3, "S3 request failed")                                                            \
    XX(THREAD, "cannot start a thread")                                                    \
    XX(NOT_FOUND, "no such job")                                                           \
    XX(STATUS, "the job's status does not allow this (JobStatusException)")

typedef enum eng_err {
#define XX(name, msg) ENG_E_##name,
    ENG_ERRNO_MAP(XX)
#undef XX
} eng_err;

const char *eng_strerror(int err);
const char *eng_errname(int err);

/* AWS JobStatus (§4.1), in the enum's documented order of a job's life. */
#define ENG_STATUS_MAP(XX)                                                                 \
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

typedef enum eng_status {
#define XX(name, str) ENG_STATUS_##name,
    ENG_STATUS_MAP(XX)
#undef XX
} eng_status;

const char *eng_status_name(eng_status s);

/* ---- the job catalogue ----------------------------------------------------------------- */

/* The state directory's job catalogue (SQLite, WAL; store.c). Several processes may open the
   same one at once. state_dir NULL: $BATCHREP_STATE_DIR, else $XDG_STATE_HOME/batchrep,
   else ~/.local/state/batchrep. */
typedef struct eng_store eng_store;
int eng_store_open(const char *state_dir, eng_store **out, char *err, size_t err_len);
void eng_store_close(eng_store *s); /* NULL is a no-op */

/*
 * The verbs, named like `aws s3control`'s. Each returns 0 and sets *out to the JSON that the
 * verb prints (AWS's field names; the caller decrefs), or -ENG_E_* with err naming the
 * problem: ENG_E_INVALID_JOB for a bad document or argument, ENG_E_NOT_FOUND for an unknown
 * job, ENG_E_STATUS for a transition the job's status does not allow (AWS's
 * JobStatusException).
 */
int eng_create_job(eng_store *s, const char *job_path, const char *replication_config_path,
                   json_t **out, char *err, size_t err_len);
int eng_describe_job(eng_store *s, const char *job_id, json_t **out, char *err,
                     size_t err_len);
int eng_list_jobs(eng_store *s, const char *const *statuses, size_t n_statuses, json_t **out,
                  char *err, size_t err_len);
int eng_update_job_priority(eng_store *s, const char *job_id, long priority, json_t **out,
                            char *err, size_t err_len);
int eng_update_job_status(eng_store *s, const char *job_id, const char *requested,
                          const char *reason, json_t **out, char *err, size_t err_len);

/* ---- running jobs ----------------------------------------------------------------------- */

typedef struct eng_options {
    int concurrency;                     /* transfers in flight in total; 0: 64 */
    int workers;                         /* worker threads; 0: number of cores */
    int max_attempts;                    /* per request, first try included; 0: 8 */
    int retry_base_ms;                   /* full-jitter backoff base; 0: 100 */
    int retry_cap_ms;                    /* backoff cap; 0: 20000 */
    int progress;                        /* 1: live progress line on stderr */
    int until_idle;                      /* worker: return when no job is runnable */
    const char *only_job_id;             /* run only this job (the `run` verb) */
    const char *metrics_addr;            /* "127.0.0.1:PORT": Prometheus text endpoint */
    int64_t multipart_threshold_bytes;   /* above: multipart copy; 0: 5 GiB (CopyObject's
                                            limit) */
    int64_t part_size_bytes;             /* multipart and streamed part size; 0: 8 MiB */
    const char *const *destination_profiles; /* "BUCKET=PROFILE": that destination lives on
                                            the profile's endpoint, with its credentials */
    size_t n_destination_profiles;
} eng_options;

/* What a run tells the CLI. */
typedef struct eng_result {
    uint64_t retries;                    /* requests re-sent after a retryable failure */
    uint64_t throttle_events;            /* 503 / SlowDown answers */
    uint64_t jobs_finished;
} eng_result;

/*
 * Runs jobs from the catalogue until stopped (SIGINT/SIGTERM), or with until_idle until no
 * job is runnable: New jobs are prepared (Preparing -> Suspended or Ready), Ready, Active and
 * Paused jobs run with transfer slots going to the highest priority first, Cancelling jobs
 * stop; a job whose worker died is taken over from its last checkpoint. With only_job_id the
 * worker runs that job alone and returns when it is terminal (or Suspended).
 */
int eng_worker(eng_store *s, const eng_options *opts, eng_result *out, char *err,
               size_t err_len);

#endif
