/*
 * run.h — running jobs: the worker that takes the catalogue's jobs to a terminal state.
 *
 * The map of the module:
 *   worker    the control loop (every 200 ms: lease and renew shards, steer priorities and
 *             cancels, prepare and finish jobs on a side thread), the feeder (leased shards
 *             -> units, highest priority first) and the report writer with each shard's
 *             parts and fenced checkpoints (scheduler.c, feeder.c, writer.c, checkpoint.c);
 *   workloc   a job's work location: its spool and report parts, in the state directory
 *             or, with a shared catalogue, in S3 (workloc.c);
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
    int64_t lease_ttl_ms;                /* a shard lease not renewed for this long expires
                                            and another worker takes the shard; 0: 30 s */
    int64_t checkpoint_interval_ms;      /* report rows and progress saved at least this
                                            often; 0: 5 s */
    const char *work_location;           /* s3://BUCKET[/PREFIX]: jobs' spools and report
                                            parts with a shared catalogue; NULL: under the
                                            report's prefix */
} run_options;

/* What a run tells the CLI. */
typedef struct run_result {
    uint64_t retries;                    /* requests re-sent after a retryable failure */
    uint64_t throttle_events;            /* 503 / SlowDown answers */
    uint64_t jobs_finished;
} run_result;

/*
 * Runs jobs from the catalogue until stopped (SIGINT/SIGTERM: it drains — stops leasing,
 * lets what is in flight land, checkpoints, releases its leases), or with until_idle until
 * no job is left to run: New jobs are prepared (Preparing -> Suspended or Ready); shards of
 * Ready, Active and Paused jobs are leased, highest priority first, and run with transfer
 * slots going to the highest priority first; Cancelling jobs stop; a shard whose lease
 * expired (its worker died or stalled) is taken over from its last checkpoint; the worker
 * that sees every shard of a job complete writes its report and ends it. With only_job_id
 * the worker runs that job alone and returns when it is terminal (or Suspended).
 */
int run_worker(jobs_store *s, const run_options *opts, run_result *out, char *err,
               size_t err_len);

/* ---- checkpoint (checkpoint.c): a shard's durable progress, kept in the catalogue;
   sequence numbers are spool positions ------------------------------------------------- */

/* Report rows of a shard not yet joined into its results files: one object (or file) at the
   job's work location, written before the checkpoint that lists it. A complete shard's
   results files are described the same way (name unused). */
typedef struct run_part {
    int failed;                  /* 0: succeeded rows, 1: failed rows */
    char name[80];               /* "parts/s<shard>-t<token>-p<n>-<status>.csv" */
    uint64_t rows, bytes;
    char md5[33];                /* lowercase hex */
    uint64_t chunk;              /* a results file: its report chunk (rpt_results_file) */
} run_part;

typedef struct run_ckpt {
    uint64_t low;                /* every task with seq < low is done, its row durable */
    uint64_t *iv;                /* done ranges above low: [iv[2i], iv[2i+1]), sorted */
    size_t n_iv, cap_iv;
    uint64_t succeeded, failed;  /* task counts of the shard's rows so far */
    uint64_t plan_limit;         /* no unit at or past this seq was handed out */
    int complete;                /* every row of the shard is done and in its results files */
    run_part *parts;             /* the rows so far, in the order they were written */
    size_t n_parts, cap_parts;
    run_part results[2];         /* complete: the shard's results files that hold rows */
    int n_results;
} run_ckpt;

int run_ckpt_add(run_ckpt *c, uint64_t start, uint64_t end);
int run_ckpt_done(const run_ckpt *c, uint64_t start, uint64_t end);
int run_ckpt_add_part(run_ckpt *c, const run_part *p);
/* A deep copy (dst is overwritten). 0 or -RUN_E_NOMEM. */
int run_ckpt_copy(run_ckpt *dst, const run_ckpt *src);
/* The checkpoint as compact JSON (malloc'd; NULL: no memory). */
char *run_ckpt_to_json(const run_ckpt *c);
/* Reads it back strictly. 0, or -RUN_E_IO when any member is missing or malformed. */
int run_ckpt_from_json(const char *text, run_ckpt *out);
void run_ckpt_cleanup(run_ckpt *c);

#endif
