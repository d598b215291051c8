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
   window is kept near what can be in flight: the pool's queues (one unit per seat) and the
   seats, a few hundred units at the default concurrency. A feeder that reaches the limit
   asks the writer for a checkpoint at once (one fsync). */
#define RUN__PLAN_WINDOW_ROWS 2048
/* Source buckets whose Object Ownership the feeder remembers (a manifest names one, usually). */
#define RUN__SRC_BUCKETS_KEPT 4

struct run__job;

/* Where a shard is in this run. */
enum {
    RUN__SHARD_WAITING = 0,   /* not opened by this run yet */
    RUN__SHARD_OPEN,          /* its checkpoint and results files are open: units run */
    RUN__SHARD_FED,           /* every unit of it was handed to the pool */
    RUN__SHARD_DONE,          /* every row reported and checkpointed as complete */
};

/* One shard of a job (run/spool.c): its rows, its checkpoint (<job dir>/spool/
   shard-NNNNNN.checkpoint.json) and its report rows (results files of chunk NNNNNN). A unit
   belongs to one shard: eng_unit_job() is its run__shard. */
typedef struct run__shard {
    struct run__job *job;
    const run__shard_info *info; /* in job->spool */
    uint32_t index;
    char ckpt_path[4300];
    _Atomic int state;            /* RUN__SHARD_*: set by the feeder (OPEN, FED) and the
                                     thread that settles it (DONE) */
    _Atomic int64_t units_out;    /* handed to the pool, not yet written */
    _Atomic uint64_t plan_limit;  /* durable: units must end at or below it */
    /* set at attach, then read by the feeder */
    run_ckpt resume;              /* what the run started from */
    int recheck_all;              /* progress uncertain (checkpoint lost or damaged): every
                                     unit not known done rechecks its destinations */
    int resume_files;             /* the results files hold rows to keep (cut to resume's) */
    /* writer thread (the control thread once the writer no longer sees the job) */
    rpt_writer *rpt;              /* NULL: report disabled, or not open */
    run_ckpt ckpt;
    int dirty;
} run__shard;

/* One job this process runs. Fields are grouped by the thread that owns them. */
typedef struct run__job {
    jobs_job job;
    repl_rules rules;
    rpt_opts ro;                  /* report_enabled: the job's report (chunk set per shard) */
    char report_root[4096];
    char spool_dir[4200];
    run__spool_index spool;
    run__shard *shards;           /* spool.n_shards of them */
    /* feeder thread only */
    run__spool_reader *reader;    /* the shard being read, NULL between shards */
    size_t feed_shard;            /* index of the shard being (or next to be) read */
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
    _Atomic int plan_done;        /* every shard read to its end (or failed) */
    _Atomic int64_t units_out;    /* handed to the pool, not yet written */
    _Atomic uint64_t planned_seq; /* next row the planner reads */
    _Atomic uint64_t succeeded, failed;
    _Atomic uint64_t bytes;       /* bytes of the versions replicated by this run */
    _Atomic uint64_t restored;    /* current versions copied on top (eng_unit_n_restored) */
    _Atomic int threshold_hit;
    _Atomic int io_error;
    char plan_error[512];         /* set by the feeder before plan_done */
    char io_error_msg[4400];      /* set with io_error by the thread that saw it */
    struct run__sched *sched;
    /* control thread only */
    uint64_t resumed_tasks;       /* tasks the shards' checkpoints counted at attach */
    int64_t active_since_ms;
    int64_t run_started_ms;       /* when this process took the job */
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
    const s3_endpoint *ep;       /* = eps[0], the source's */
    const s3_endpoint *const *eps; /* and one per --destination-profile binding */
    const run_options *opts;
    char state_root[4096];
    run__metrics *metrics;       /* NULL without --metrics-addr */
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
/* The feeder opens a shard before its first unit: its results files (cut back to its
   checkpoint) and a first checkpoint that allows RUN__PLAN_WINDOW_ROWS. 0; -2 the disk is
   full (run__disk_full; open it again later); -1 with the job's io_error set. */
int run__shard_open(run__shard *sh);
/* Rows durable first, then the checkpoint that counts them; a shard fed to its end whose
   units are all written is then complete (checkpoint marked so, results files closed).
   Writer thread, or the control thread once the writer no longer sees the job. */
int run__shard_settle(run__shard *sh); /* 0, -2 disk full (run__disk_full), -1 io_error */
/* Records that a write found the disk full (what, and since when); the writer pauses. */
void run__disk_full(run__sched *s, const char *msg);
/* The Prometheus text of the process (metrics.c); run__metrics_render_fn for run__sched. */
int run__render_metrics(s3_buf *out, void *sched);

#endif
