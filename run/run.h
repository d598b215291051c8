/*
 * run.h — running jobs: the worker that takes the catalogue's jobs to a terminal state.
 *
 * The map of the module:
 *   worker    the control loop (every 200 ms: claim, steer priorities and cancels, finish),
 *             the feeder (spool shards -> units, highest priority first) and the report
 *             writer with each shard's checkpoints (scheduler.c, feeder.c, writer.c,
 *             checkpoint.c);
 *   prepare   Preparing: the manifest fetched, validated, counted and sorted by key into the
 *             job's spool of shards (spool.c); the rules captured and, when a worker takes
 *             the job, attached (prepare.c);
 *   generate  the manifest of every kind opened, ManifestGenerator run (generate.c);
 *   metrics   the Prometheus endpoint on libmicrohttpd (metrics.c).
 *
 * Depends on: jobs, engine, replicate, manifest, report, s3.
 */
#ifndef BATCHREP_RUN_H
#define BATCHREP_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "jobs/jobs.h"

#define RUN_ERRNO_MAP(XX)                                                                  \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")                                                             \
    XX(INVALID_OPTIONS, "invalid options")                                                 \
    XX(CONFIG, "invalid endpoint or credentials configuration")                            \
    XX(IO, "local file or socket error")                                                   \
    XX(THREAD, "cannot start a thread")                                                    \
    XX(DISK_FULL, "the disk is full")

typedef enum run_err {
#define XX(name, msg) RUN_E_##name,
    RUN_ERRNO_MAP(XX)
#undef XX
} run_err;

const char *run_strerror(int err);
const char *run_errname(int err);

/* ---- running jobs ----------------------------------------------------------------------- */

typedef struct run_options {
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
    uint64_t shard_rows;                 /* Preparing: rows per shard (whole keys); 0: 100,000 */
    size_t sort_mem_bytes;               /* Preparing: sort buffer; 0: 16 MiB */
    int64_t disk_full_wait_ms;           /* how long a full disk may pause the worker before
                                            it stops (jobs resumable); 0: 60 s */
    s3_limits limits;                    /* deadlines and the download size limit of every
                                            request, on every endpoint; 0s: s3's defaults */
} run_options;

/* What a run tells the CLI. */
typedef struct run_result {
    uint64_t retries;                    /* requests re-sent after a retryable failure */
    uint64_t throttle_events;            /* 503 / SlowDown answers */
    uint64_t jobs_finished;
} run_result;

/*
 * Runs jobs from the catalogue until stopped (SIGINT/SIGTERM), or with until_idle until no
 * job is runnable: New jobs are prepared (Preparing -> Suspended or Ready), Ready, Active and
 * Paused jobs run with transfer slots going to the highest priority first, Cancelling jobs
 * stop; a job whose worker died is taken over from its last checkpoint. With only_job_id the
 * worker runs that job alone and returns when it is terminal (or Suspended).
 */
int run_worker(jobs_store *s, const run_options *opts, run_result *out, char *err,
               size_t err_len);

/* ---- checkpoint (checkpoint.c): a shard's durable progress,
   <job dir>/spool/shard-NNNNNN.checkpoint.json; sequence numbers are spool positions ------- */

typedef struct run_ckpt {
    uint64_t low;                /* every task with seq < low is done, its row durable */
    uint64_t *iv;                /* done ranges above low: [iv[2i], iv[2i+1]), sorted */
    size_t n_iv, cap_iv;
    uint64_t succeeded_bytes, failed_bytes; /* results file sizes that hold those rows */
    uint64_t succeeded, failed;  /* task counts of those rows */
    uint64_t plan_limit;         /* no unit at or past this seq was handed out */
    int complete;                /* every row of the shard is done and its results files are
                                    closed */
} run_ckpt;

int run_ckpt_add(run_ckpt *c, uint64_t start, uint64_t end);
int run_ckpt_done(const run_ckpt *c, uint64_t start, uint64_t end);
/* Writes <path> atomically (0600), keeping the previous one as <path>.prev. */
int run_ckpt_save(const char *path, const run_ckpt *c);
/* Reads <path>, or when it is missing or damaged <path>.prev (the one before it):
   0 loaded <path>; RUN_CKPT_FROM_PREV loaded <path>.prev (what ran after it is uncertain);
   1 neither exists; <0 one exists and neither can be read. */
#define RUN_CKPT_FROM_PREV 2
int run_ckpt_load(const char *path, run_ckpt *out);
void run_ckpt_cleanup(run_ckpt *c);

#endif
