/*
 * run_int.h — internals shared by run/'s files. Never included from outside run/.
 */
#ifndef BATCHREP_RUN_INT_H
#define BATCHREP_RUN_INT_H

#include "run/run.h"

#include "engine/engine.h"
#include "manifest/manifest.h"
#include "replicate/replicate.h"
#include "s3/s3.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- the metrics endpoint (metrics.c) ---------------------------------------------------- */

/* Writes the Prometheus text into out (capped); 0, or nonzero when it did not fit. Called
   on the server's own thread. */
typedef int (*run__metrics_render_fn)(s3_buf *out, void *user);
typedef struct run__metrics run__metrics;
/* Listens on addr ("IPv4:PORT") and serves render's text from a thread of its own. 0, or
   with err naming the address and the reason -RUN_E_INVALID_OPTIONS (addr is not
   IPv4:PORT) or -RUN_E_IO (it cannot be bound, or the server cannot start). */
int run__metrics_start(const char *addr, run__metrics_render_fn render, void *user,
                       run__metrics **out, char *err, size_t err_len);
void run__metrics_stop(run__metrics *m); /* NULL is a no-op */

/* ---- Preparing (prepare.c) and the manifest kinds (generate.c) ---------------------------- */

/* Preparing, generated manifest: loads the bucket's rules when *rules_loaded is 0 (the
   EligibleForReplication filter needs them), lists and filters into
   <job dir>/generated/<base>/manifest.json, uploads it when EnableManifestOutput, and points
   job->manifest_path at it. On failure the job is Failed (code, reason) and -1 is
   returned. */
int run__gen_prepare(jobs_job *job, const s3_endpoint *ep, repl_rules *rules,
                     int *rules_loaded);
/* Opens the job's manifest, whatever its format. NULL: *out_rc and msg say why. */
mf_reader *run__manifest_open(const jobs_job *job, const s3_endpoint *ep, int *out_rc,
                              char *msg, size_t cap);
/* Preparing: manifest fetched, validated, counted and spooled by key (o: shard size, sort
   memory), rules captured. -1: job Failed. */
int run__prepare(jobs_job *job, const s3_endpoint *ep, const run_options *o);
/* The job's rules parsed, destinations bound to their endpoints (eps, from the worker's
   --destination-profile bindings) and checked, copy settings applied. -1: job Failed. */
int run__attach_rules(jobs_job *job, repl_rules *rules, const s3_endpoint *const *eps,
                      const run_options *o);


/* ---- the spool (spool.c): the job's manifest grouped by key and cut into shards ----------
 * Preparing reads the manifest once and writes <job dir>/spool/: every row, sorted by
 * (bucket, decoded key, position in the manifest) with an external merge sort in bounded
 * memory (sorted runs spilled as zstd files, then a k-way merge), cut into shards of whole
 * keys, and index.json written last (its presence means the spool is complete). A row in the
 * spool keeps its manifest line, its key as written (the report echoes it) and every fact an
 * Inventory row gave. Rows are numbered by their position in the sorted spool: that number is
 * what progress (checkpoints) counts, and a shard's rows are [first_seq, first_seq + n_rows). */

/* Rows per shard unless a key makes it longer (a key is never split across shards). */
#define RUN__SHARD_ROWS_DEFAULT 100000
/* Sort buffer: rows are gathered up to this many bytes, sorted, and spilled as one run. */
#define RUN__SORT_MEM_DEFAULT ((size_t)16 << 20)

typedef struct run__shard_info {
    uint64_t first_seq;          /* spool position of its first row */
    uint64_t n_rows;
    uint64_t n_keys;
    uint64_t bytes;              /* file size (compressed) */
    char file[32];               /* "shard-000000.zst", in the spool folder */
} run__shard_info;

typedef struct run__spool_index {
    uint64_t n_rows;             /* = the job's TotalNumberOfTasks */
    uint64_t n_keys;
    uint64_t spool_bytes;        /* shard bytes on disk */
    char first_bucket[256];      /* the bucket of the manifest's first row (not the sorted
                                    spool's): the source whose replication rules apply */
    run__shard_info *shards;     /* owned */
    size_t n_shards;
    uint64_t n_runs;             /* run__spool_build only, not in index.json: sorted runs it
                                    spilled (0: the manifest was sorted in memory) */
} run__spool_index;

typedef struct run__spool_opts {
    const char *dir;             /* <job dir>/spool: created 0700; files 0600 */
    uint64_t shard_rows;         /* 0: RUN__SHARD_ROWS_DEFAULT */
    size_t sort_mem_bytes;       /* 0: RUN__SORT_MEM_DEFAULT */
} run__spool_opts;

/* Reads r to its end and writes the spool (see above); any earlier content of dir (runs or
   shards of an interrupted attempt) is removed first. 0, or -1 with msg: the manifest's
   problem as the reader gave it (file:line: what; *out_mf_rc = its -MF_E_* code) or the
   spool's own (disk full, no memory, ...; *out_mf_rc = 0). out is filled on success
   (run__spool_index_cleanup). */
int run__spool_build(mf_reader *r, const run__spool_opts *o, run__spool_index *out,
                     int *out_mf_rc, char *msg, size_t cap);
/* Reads dir/index.json. 0; 1 when there is none (the spool is not complete); -1 damaged. */
int run__spool_index_load(const char *dir, run__spool_index *out, char *msg, size_t cap);
void run__spool_index_cleanup(run__spool_index *idx);

typedef struct run__spool_reader run__spool_reader;
/* Opens one shard for reading. NULL with msg on failure. */
run__spool_reader *run__spool_open(const char *dir, const run__shard_info *sh, char *msg,
                                   size_t cap);
/* 1: *e holds the next row (seq = its spool position, line = its manifest line; slices
   borrowed until the next call, NUL-terminated as mf_next's); 0: the shard's end, after
   exactly n_rows rows; -1 with msg: the file is damaged (truncated, garbled, too many or too
   few rows). */
int run__spool_next(run__spool_reader *r, mf_entry *e, char *msg, size_t cap);
void run__spool_close(run__spool_reader *r); /* NULL is a no-op */

/* ---- a worker process: its jobs and the threads that share them ------------------------- */

/* Rows the feeder may run ahead of the last checkpoint. After a crash every unit below the
   limit that is not done is rechecked against its destinations (one request each), so the
   window is kept near what can be in flight plus one checkpoint interval's worth: a feeder
   that reaches the limit asks the writer for a checkpoint at once. */
#define RUN__PLAN_WINDOW_ROWS 8192
/* Source buckets whose Object Ownership the feeder remembers (a manifest names one, usually). */
#define RUN__SRC_BUCKETS_KEPT 4

/* ---- the work location (workloc.c): a job's spool and report parts while it runs -------- */

typedef struct run__loc {
    const s3_endpoint *ep;        /* NULL: a local folder */
    char bucket[256];
    char prefix[1200];            /* S3: key prefix, ends with '/' */
    char dir[4200];               /* local: the folder */
} run__loc;

/* 0, or -1 with err: url is not s3://BUCKET[/PREFIX]. */
int run__loc_check_url(const char *url, char *err, size_t cap);
/* The job's work location: shared 0 -> <job dir>/work; shared 1 -> S3 under work_url
   (s3://BUCKET[/PREFIX], then job-<id>/), else under the report's prefix
   (job-<id>/work/). -1 with err when there is none (shared, no S3 report, no work_url). */
int run__loc_for_job(run__loc *l, const jobs_job *job, int shared, const char *work_url,
                     const s3_endpoint *ep, char *err, size_t cap);
/* Where a name is, for messages ("s3://b/p/name" or the path). */
void run__loc_describe(const run__loc *l, const char *rel, char *out, size_t cap);
/* Writes a whole object (or file, atomically, 0600). 0, -RUN_E_DISK_FULL (local), or
   -RUN_E_IO with err. */
int run__loc_put(const run__loc *l, const char *rel, const void *data, size_t len, char *err,
                 size_t cap);
/* Uploads a local file as that name (S3; a local work location holds the file already: 0
   when path is that file). */
int run__loc_put_file(const run__loc *l, const char *rel, const char *path, char *err,
                      size_t cap);
/* A readable local copy of a name: the file itself (local), or downloaded to tmp (S3).
   out_path says which. 0 or -RUN_E_IO with err. */
int run__loc_fetch(const run__loc *l, const char *rel, const char *tmp, char *out_path,
                   size_t out_cap, char *err, size_t cap);
void run__loc_remove(const run__loc *l, const char *rel); /* best effort */

/* ---- a worker process: its jobs and the threads that share them ------------------------- */

struct run__job;

/* Where a shard is for this worker. */
enum {
    RUN__SHARD_IDLE = 0,      /* not leased by this worker */
    RUN__SHARD_LEASED,        /* leased: waiting for the feeder */
    RUN__SHARD_OPEN,          /* the feeder reads it: units run */
    RUN__SHARD_FED,           /* every unit of it was handed to the pool */
    RUN__SHARD_DONE,          /* complete: every row reported, results files written */
    RUN__SHARD_LOST,          /* the lease ended before it was complete (lost, expired,
                                 released): nothing more is written for it by this worker */
};

/* One shard of a job (run/spool.c): its rows, its lease, its checkpoint (in the catalogue)
   and its report rows (parts at the work location, then its results files: chunk <index>).
   A unit belongs to one shard: eng_unit_job() is its run__shard. */
typedef struct run__shard {
    struct run__job *job;
    const run__shard_info *info;  /* in job->spool */
    uint32_t index;
    _Atomic int state;            /* RUN__SHARD_* */
    _Atomic int64_t units_out;    /* handed to the pool, not yet written */
    _Atomic uint64_t plan_limit;  /* durable: units must end at or below it */
    /* The lease: its units stop (eng_unit_set_deadline) once s3_mono_ms() reaches
       lease_until, kept well inside the catalogue's expiry; 0 when it is lost. */
    _Atomic int64_t lease_until;
    int64_t token;                /* set when leased, before the feeder sees the shard */
    int64_t renewed_ms;           /* control thread: last renewal sent (mono) */
    /* set when leased, then read by the feeder */
    run_ckpt resume;              /* what the lease started from */
    int recheck_all;              /* progress uncertain: every unit not known done
                                     rechecks its destinations */
    /* writer thread (the control thread once the writer no longer sees the job) */
    run_ckpt ckpt;
    s3_buf rows[2];               /* report rows since the last checkpoint: succeeded, failed */
    uint64_t rows_n[2];
    uint32_t next_part;
    int dirty;
    int put_failures;             /* parts or results files refused in a row */
    int store_error_said;         /* the catalogue's failure was reported (once) */
} run__shard;

/* One job this process runs. Fields are grouped by the thread that owns them. */
typedef struct run__job {
    jobs_job job;
    repl_rules rules;
    rpt_opts ro;                  /* report_enabled: the job's report */
    char report_root[4096];
    char spool_dir[4200];
    run__loc loc;                 /* its work location */
    run__spool_index spool;
    run__shard *shards;           /* spool.n_shards of them */
    /* feeder thread only */
    run__spool_reader *reader;    /* the shard being read, NULL between shards */
    size_t feed_shard;            /* index of the shard being read */
    eng_unit_builder builder;
    eng_unit *pending;           /* planned, waiting for plan_limit to allow it */
    uint64_t feed_turn;
    struct { char name[256]; int disabled; } src_acls[RUN__SRC_BUCKETS_KEPT]; /* last answers */
    unsigned n_src_acls;
    int feeding;                  /* guarded by sched.mu: the feeder is using this job */
    int ckpt_busy;                /* guarded by sched.mu: the writer is checkpointing it */
    uint64_t ckpt_round;          /* writer thread only: the last round that checkpointed it */
    /* shared */
    _Atomic int waiting_limit;    /* a planned unit waits for the next checkpoint */
    _Atomic int stop;             /* abandon work: cancelled or failed */
    _Atomic int priority;
    _Atomic int status_now;       /* job.row.status, for the metrics thread */
    _Atomic int runnable;         /* the feeder may hand out units */
    _Atomic int has_feed;         /* a shard of it is leased and not yet fed to its end */
    _Atomic int64_t units_out;    /* handed to the pool, not yet written */
    _Atomic uint64_t planned_seq; /* next row the planner reads */
    _Atomic uint64_t succeeded, failed;
    _Atomic uint64_t bytes;       /* bytes of the versions replicated by this run */
    _Atomic uint64_t restored;    /* current versions copied on top (eng_unit_n_restored) */
    _Atomic int threshold_hit;
    _Atomic int io_error;
    char plan_error[512];         /* set by the feeder before it stops feeding */
    _Atomic int plan_failed;
    char io_error_msg[4400];      /* set with io_error by the thread that saw it */
    char attach_error[1100];      /* this worker cannot take the job now (scheduler.c attach) */
    struct run__sched *sched;
    /* control thread only */
    uint64_t resumed_tasks;       /* tasks the catalogue counted when it was attached */
    int64_t run_started_ms;       /* when this process took the job */
    int64_t next_lease_ms;        /* mono: when to ask for another of its shards */
    struct run__job *next;
} run__job;

/* The process: its jobs, the pool and the queue the writer reads. */
typedef struct run__sched {
    pthread_mutex_t mu;           /* guards the list and `quit` */
    run__job *jobs;
    int quit;
    eng_pool *pool;
    eng_queue done_q;
    eng_counters counters;
    jobs_store *st;               /* the catalogue (its calls are thread-safe) */
    int shared;                   /* jobs_store_shared(st) */
    const s3_endpoint *ep;       /* = eps[0], the source's */
    const s3_endpoint *const *eps; /* and one per --destination-profile binding */
    const run_options *opts;
    char state_root[4096];
    run__metrics *metrics;       /* NULL without --metrics-addr */
    /* Preparing a job and finishing one (its report) run on a thread of their own (a large
       manifest takes minutes to sort, a report's join many requests), so the control loop
       keeps renewing this worker's leases and the job's claim meanwhile */
    pthread_t side_thread;
    int side_running;             /* control thread: a side task was started */
    int side_finish;              /* it finishes the job (else it prepares it) */
    _Atomic int side_done;        /* set by the side thread when it returns */
    char side_id[40];             /* the job it works on: the claim kept alive */
    jobs_row side_row;            /* the job's row: the thread's until it is joined */
    _Atomic uint64_t jobs_finished;
    _Atomic uint64_t leases_taken, leases_lost, ckpt_saves, ckpt_refused;
    /* A full disk pauses the process instead of failing its jobs: the writer stops taking
       finished units (the pool then waits) and retries its writes every second; the
       control loop stops the worker, jobs resumable, once the disk stays full longer than
       opts->disk_full_wait_ms. */
    _Atomic int64_t files_full_since_ms;  /* writer: report or checkpoint write; 0: none */
    int64_t store_full_since_ms;          /* control: the catalogue; 0: none */
    char disk_full_msg[4400];             /* guarded by mu */
} run__sched;

/* The feeder thread (feeder.c): manifests -> units -> the pool, highest priority first. */
void *run__feeder_main(void *sched);
/* The writer thread (writer.c): finished units -> report rows and checkpoints. */
void *run__writer_main(void *sched);
/* The feeder opens a leased shard before its first unit: a first checkpoint that allows
   RUN__PLAN_WINDOW_ROWS. 0; -2 the catalogue or the disk cannot take it now (open it again
   later); -1 the lease is lost or the job's io_error is set. */
int run__shard_open(run__shard *sh);
/* Rows durable first (parts at the work location), then the checkpoint that lists them; a
   shard fed to its end whose units are all written is then complete (its parts joined into
   its results files, checkpoint marked so). Writer thread, or the control thread once the
   writer no longer sees the job. 0, -2 try again later (disk full, catalogue or S3 down),
   -1 io_error or the lease is lost. */
int run__shard_settle(run__shard *sh);
/* Joins a shard's parts into its results files, report chunk `chunk`: the lease token
   that completes the shard (so a worker that lost its lease, joining late, writes files no
   checkpoint lists instead of overwriting the new owner's), or RUN__FINISH_CHUNK(index)
   when the job's finisher joins a shard that never completed. Written under ro->root_dir
   and, for a report bucket (upload_ep non-NULL), uploaded and removed locally. Fills
   c->results; the parts are left for the caller to remove. 0 or -1 with err. */
#define RUN__FINISH_CHUNK(index) ((UINT64_C(1) << 62) | (uint64_t)(index))
int run__shard_join(const rpt_opts *ro, const run__loc *loc, const s3_endpoint *upload_ep,
                    const char *scratch_dir, uint32_t sh_index, uint64_t chunk, run_ckpt *c,
                    char *err, size_t cap);
/* Records that a write found the disk full (what, and since when); the writer pauses. */
void run__disk_full(run__sched *s, const char *msg);
/* The Prometheus text of the process (metrics.c); run__metrics_render_fn for run__sched. */
int run__render_metrics(s3_buf *out, void *sched);

#endif
