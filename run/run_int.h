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
/* Preparing: manifest fetched, validated and counted, rules captured. -1: job Failed. */
int run__prepare(jobs_job *job, const s3_endpoint *ep);
/* The job's rules parsed, destinations bound to their endpoints (eps, from the worker's
   --destination-profile bindings) and checked, copy settings applied. -1: job Failed. */
int run__attach_rules(jobs_job *job, repl_rules *rules, const s3_endpoint *const *eps,
                      const run_options *o);


/* ---- a worker process: its jobs and the threads that share them ------------------------- */

/* Rows the feeder may run ahead of the last checkpoint. After a crash every unit below the
   limit that is not done is rechecked against its destinations (one request each), so the
   window is kept near what can be in flight: the pool's queues (one unit per seat) and the
   seats, a few hundred units at the default concurrency. A feeder that reaches the limit
   asks the writer for a checkpoint at once (one fsync). */
#define RUN__PLAN_WINDOW_ROWS 2048
/* Source buckets whose Object Ownership the feeder remembers (a manifest names one, usually). */
#define RUN__SRC_BUCKETS_KEPT 4

/* One job this process runs. Fields are grouped by the thread that owns them. */
typedef struct run__job {
    jobs_job job;
    repl_rules rules;
    rpt_writer *rpt;              /* NULL: report disabled */
    rpt_opts ro;
    char report_root[4096];
    char ckpt_path[4200];
    /* feeder thread only */
    mf_reader *reader;
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
    _Atomic int plan_done;        /* manifest read to its end (or failed) */
    _Atomic int64_t units_out;    /* handed to the pool, not yet written */
    _Atomic uint64_t planned_seq; /* next row the planner reads */
    _Atomic uint64_t plan_limit;  /* durable: units must end at or below it */
    _Atomic uint64_t succeeded, failed;
    _Atomic uint64_t bytes;       /* bytes of the versions replicated by this run */
    _Atomic int threshold_hit;
    _Atomic int io_error;
    char plan_error[512];         /* set by the feeder before plan_done */
    /* writer thread only */
    run_ckpt ckpt;
    run_ckpt resume;             /* what the run started from */
    int recheck_all;              /* progress uncertain (checkpoint lost or damaged): every
                                     unit not known done rechecks its destinations */
    int ckpt_dirty;
    /* control thread only */
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
} run__sched;

/* The feeder thread (feeder.c): manifests -> units -> the pool, highest priority first. */
void *run__feeder_main(void *sched);
/* The writer thread (writer.c): finished units -> report rows and checkpoints. */
void *run__writer_main(void *sched);
/* Rows durable first, then the checkpoint that counts them. Writer thread, or the control
   thread once the writer has stopped. */
void run__checkpoint(run__job *jr);
/* The Prometheus text of the process (metrics.c); run__metrics_render_fn for run__sched. */
int run__render_metrics(s3_buf *out, void *sched);

#endif
