/*
 * worker.c — runs the catalogue's jobs: several at once, highest priority first, resumable.
 *
 * Threads of a worker process (they meet only at bounded queues and a few atomics):
 *   control (the caller's thread)  every 200 ms: reads the catalogue, prepares New jobs,
 *            takes runnable ones (claim: pid + heartbeat; a dead owner's job is taken over),
 *            applies other processes' requests (cancel, priority), decides which jobs are
 *            Active and which are Paused, finishes jobs, writes progress and heartbeat;
 *   feeder   reads the manifests of the Active jobs and hands units to the pool: always
 *            from the highest priority, round-robin among equal ones. The pool's queues are
 *            short (as many units as a worker has seats) and each takes the highest
 *            priority first, so a change of priority shows at the next units taken;
 *   pool     N workers with curl multi handles (pool.c);
 *   writer   writes each finished unit's report rows to its job's results files, counts,
 *            checks the failure threshold, and every second syncs the files and writes the
 *            job's checkpoint (checkpoint.c): rows durable first, then the checkpoint.
 *
 * Job states (../shared/aws-formats.md §4): New -> Preparing -> (Suspended) -> Ready ->
 * Active <-> Pausing -> Paused, -> Completing -> Complete; Cancelling -> Cancelled; Failing
 * -> Failed. A job left in any non-terminal state by a dead worker continues from its
 * checkpoint: its results files are cut back to the checkpoint's sizes, done units are
 * skipped and units that may have started are rechecked against the destinations.
 */
#include "run/run_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 200
#define SAVE_INTERVAL_MS 1000
#define CKPT_INTERVAL_MS 1000
/* Rows the planner may run ahead of the last checkpoint. After a crash every unit below the
   limit that is not done is rechecked against its destinations (one request each), so the
   window is kept near what can be in flight: the pool's queues (one unit per seat) and the
   seats, a few hundred units at the default concurrency. A
   planner that reaches the limit asks the writer for a checkpoint at once (one fsync). */
#define PLAN_WINDOW_ROWS 2048
#define FAIL_THRESHOLD_MIN_TASKS 1000
/* Source buckets whose Object Ownership the feeder remembers (a manifest names one, usually). */
#define SRC_BUCKETS_KEPT 4

typedef struct jobrun {
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
    struct { char name[256]; int disabled; } src_acls[SRC_BUCKETS_KEPT]; /* last answers */
    unsigned n_src_acls;
    int feeding;                  /* guarded by sched.mu: the feeder is using this job */
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
    run__ckpt ckpt;
    run__ckpt resume;             /* what the run started from */
    int ckpt_dirty;
    /* control thread only */
    int64_t active_since_ms;
    int64_t run_started_ms;       /* when this process took the job */
    struct jobrun *next;
} jobrun;

typedef struct sched {
    pthread_mutex_t mu;           /* guards the list and `quit` */
    jobrun *jobs;
    int quit;
    eng_pool *pool;
    eng_queue done_q;
    eng_counters counters;
    const s3_endpoint *ep;       /* = eps[0], the source's */
    const s3_endpoint *const *eps; /* and one per --destination-profile binding */
    const run_options *opts;
    char state_root[4096];
    run__metrics *metrics;       /* NULL without --metrics-addr */
} sched;

static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    (void)sig;
    g_signalled = 1;
}

/* ---- feeder ---------------------------------------------------------------------------- */

/* Reads rows until the key changes; returns the finished unit (NULL at the end). */
static eng_unit *plan_one(jobrun *jr)
{
    mf_entry e;
    int rc;
    char msg[512];
    while ((rc = mf_next(jr->reader, &e, msg, sizeof msg)) == 1) {
        atomic_store(&jr->planned_seq, e.seq + 1);
        eng_unit *u = NULL;
        if (eng_unit_builder_len(&jr->builder) > 0 &&
            !eng_unit_builder_same_key(&jr->builder, &e))
            u = eng_unit_builder_take(&jr->builder, &jr->rules, &jr->stop, &jr->priority, jr);
        if (eng_unit_builder_add(&jr->builder, &e) != 0) {
            snprintf(jr->plan_error, sizeof jr->plan_error, "out of memory planning units");
            eng_unit_destroy(u);
            return NULL;
        }
        if (u)
            return u;
    }
    if (rc < 0)
        snprintf(jr->plan_error, sizeof jr->plan_error, "%s", msg);
    if (eng_unit_builder_len(&jr->builder) > 0)
        return eng_unit_builder_take(&jr->builder, &jr->rules, &jr->stop, &jr->priority, jr);
    return NULL;
}

/* Whether the unit's source bucket has ACLs disabled: asked once per bucket (dests.c). */
static int src_acls_disabled(sched *s, jobrun *jr, s3_slice bucket)
{
    unsigned kept = jr->n_src_acls < SRC_BUCKETS_KEPT ? jr->n_src_acls : SRC_BUCKETS_KEPT;
    for (unsigned i = 0; i < kept; i++)
        if (strlen(jr->src_acls[i].name) == bucket.len &&
            memcmp(jr->src_acls[i].name, bucket.ptr, bucket.len) == 0)
            return jr->src_acls[i].disabled;
    if (bucket.len >= sizeof jr->src_acls[0].name)
        return 0; /* no S3 bucket name is that long: read the ACLs */
    unsigned slot = jr->n_src_acls++ % SRC_BUCKETS_KEPT;
    memcpy(jr->src_acls[slot].name, bucket.ptr, bucket.len);
    jr->src_acls[slot].name[bucket.len] = '\0';
    jr->src_acls[slot].disabled = repl_bucket_acls_disabled(s->ep, jr->src_acls[slot].name);
    return jr->src_acls[slot].disabled;
}

/* The job the feeder serves next: highest priority, then the one served least recently. */
static jobrun *pick(sched *s)
{
    jobrun *best = NULL;
    for (jobrun *jr = s->jobs; jr; jr = jr->next) {
        if (!atomic_load(&jr->runnable) || atomic_load(&jr->plan_done) ||
            atomic_load(&jr->stop))
            continue;
        if (jr->pending && eng_unit_first_seq(jr->pending) + eng_unit_n_tasks(jr->pending) >
                               atomic_load(&jr->plan_limit))
            continue; /* waits for the writer's next checkpoint */
        if (!best || atomic_load(&jr->priority) > atomic_load(&best->priority) ||
            (atomic_load(&jr->priority) == atomic_load(&best->priority) &&
             jr->feed_turn < best->feed_turn))
            best = jr;
    }
    return best;
}

/* Hands the job's next unit to the pool (or parks it until the checkpoint allows it). */
static void feed(sched *s, jobrun *jr)
{
    eng_unit *u = jr->pending;
    jr->pending = NULL;
    atomic_store(&jr->waiting_limit, 0);
    if (!u) {
        u = plan_one(jr);
        if (!u) {
            atomic_store(&jr->plan_done, 1);
            return;
        }
    }
    uint64_t first = eng_unit_first_seq(u), end = first + eng_unit_n_tasks(u);
    if (run__ckpt_done(&jr->resume, first, end)) {
        eng_unit_destroy(u); /* done before the crash: its rows are in the report */
        return;
    }
    if (end > atomic_load(&jr->plan_limit)) {
        jr->pending = u;
        atomic_store(&jr->waiting_limit, 1);
        return;
    }
    if (first < jr->resume.plan_limit)
        eng_unit_set_recheck(u); /* may have run before the crash */
    if (src_acls_disabled(s, jr, eng_unit_bucket(u)))
        eng_unit_set_src_acls_disabled(u);
    atomic_fetch_add(&jr->units_out, 1);
    if (eng_pool_submit(s->pool, u) != 0) {
        atomic_fetch_sub(&jr->units_out, 1);
        eng_unit_destroy(u);
    }
}

static void *feeder_main(void *arg)
{
    sched *s = arg;
    uint64_t turn = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int quit = s->quit;
        jobrun *jr = quit ? NULL : pick(s);
        if (jr) {
            jr->feed_turn = ++turn;
            jr->feeding = 1;
        }
        pthread_mutex_unlock(&s->mu);
        if (quit)
            break;
        if (!jr) {
            usleep(5000);
            continue;
        }
        feed(s, jr);
        pthread_mutex_lock(&s->mu);
        jr->feeding = 0;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* ---- writer ---------------------------------------------------------------------------- */

static void write_unit(jobrun *jr, eng_unit *u)
{
    int all_ran = 1;
    s3_slice bucket = eng_unit_bucket(u);
    for (size_t i = 0; i < eng_unit_n_tasks(u); i++) {
        const eng_task *t = eng_unit_task(u, i);
        if (t->not_run) {
            all_ran = 0;
            continue;
        }
        if (jr->rpt && !atomic_load(&jr->io_error)) {
            rpt_row row = {.bucket = bucket, .key = t->key_raw, .version_id = t->version_id,
                           .succeeded = t->succeeded, .http_status = t->http_status,
                           .error_code = t->error_code, .message = t->message};
            if (rpt_writer_add(jr->rpt, &row) != 0) {
                atomic_store(&jr->io_error, 1);
                atomic_store(&jr->stop, 1);
            }
        }
        atomic_fetch_add(t->succeeded ? &jr->succeeded : &jr->failed, 1);
        if (t->succeeded && !t->is_delete_marker && t->size > 0)
            atomic_fetch_add(&jr->bytes, (uint64_t)t->size);
        (t->succeeded ? jr->ckpt.succeeded++ : jr->ckpt.failed++);
    }
    if (all_ran) {
        uint64_t first = eng_unit_first_seq(u);
        run__ckpt_add(&jr->ckpt, first, first + eng_unit_n_tasks(u));
    }
    jr->ckpt_dirty = 1;
    uint64_t ok = atomic_load(&jr->succeeded), bad = atomic_load(&jr->failed);
    if (ok + bad >= FAIL_THRESHOLD_MIN_TASKS && bad * 2 > ok + bad &&
        !atomic_load(&jr->threshold_hit)) {
        atomic_store(&jr->threshold_hit, 1);
        atomic_store(&jr->stop, 1);
    }
}

/* Rows first, then the checkpoint that counts them (checkpoint.c). */
static void checkpoint(jobrun *jr)
{
    if (atomic_load(&jr->io_error))
        return;
    if (jr->rpt && rpt_writer_sync(jr->rpt, &jr->ckpt.succeeded_bytes,
                                   &jr->ckpt.failed_bytes) != 0) {
        atomic_store(&jr->io_error, 1);
        atomic_store(&jr->stop, 1);
        return;
    }
    uint64_t limit = atomic_load(&jr->planned_seq) + PLAN_WINDOW_ROWS;
    if (limit < jr->ckpt.plan_limit)
        limit = jr->ckpt.plan_limit;
    jr->ckpt.plan_limit = limit;
    if (run__ckpt_save(jr->ckpt_path, &jr->ckpt) != 0) {
        atomic_store(&jr->io_error, 1);
        atomic_store(&jr->stop, 1);
        return;
    }
    atomic_store(&jr->plan_limit, limit);
    jr->ckpt_dirty = 0;
}

static void *writer_main(void *arg)
{
    sched *s = arg;
    int64_t last = s3_wall_ms();
    for (;;) {
        int closed = 0;
        eng_unit *u = eng_queue_pop(&s->done_q, 50, &closed);
        if (u) {
            jobrun *jr = eng_unit_job(u);
            write_unit(jr, u);
            eng_unit_destroy(u);
            atomic_fetch_sub(&jr->units_out, 1);
        } else if (closed) {
            break;
        }
        int64_t now = s3_wall_ms();
        pthread_mutex_lock(&s->mu);
        for (jobrun *jr = s->jobs; jr; jr = jr->next) {
            /* a job near its window's end gets its checkpoint at once, not after a second */
            int starving = atomic_load(&jr->waiting_limit);
            if ((jr->ckpt_dirty || starving) && (now - last >= CKPT_INTERVAL_MS || starving))
                checkpoint(jr);
        }
        pthread_mutex_unlock(&s->mu);
        if (now - last >= CKPT_INTERVAL_MS)
            last = now;
    }
    return NULL;
}

/* ---- metrics (Prometheus text format; served by metrics.c on its own thread) ------------ */

/* Reads only atomics and, under mu, the list of jobs and their fixed fields. */
static int render_metrics(s3_buf *b, void *user)
{
    sched *s = user;
    char line[512];
    const eng_counters *k = &s->counters;
    int rc = 0;
    snprintf(line, sizeof line,
             "# TYPE batchrep_requests_total counter\nbatchrep_requests_total %llu\n"
             "# TYPE batchrep_retries_total counter\nbatchrep_retries_total %llu\n"
             "# TYPE batchrep_throttling_events_total counter\n"
             "batchrep_throttling_events_total %llu\n"
             "# TYPE batchrep_tasks_total counter\n",
             (unsigned long long)atomic_load(&k->requests),
             (unsigned long long)atomic_load(&k->retries),
             (unsigned long long)atomic_load(&k->throttle_events));
    rc |= s3_buf_append_str(b, line);
    uint64_t ok = 0, bad = 0, bytes = 0;
    int64_t inflight = 0;
    s3_buf per;
    s3_buf_init(&per, b->max_bytes);
    pthread_mutex_lock(&s->mu);
    for (jobrun *jr = s->jobs; jr; jr = jr->next) {
        uint64_t a = atomic_load(&jr->succeeded), f = atomic_load(&jr->failed);
        const char *st = jobs_status_name((jobs_status)atomic_load(&jr->status_now));
        ok += a;
        bad += f;
        bytes += atomic_load(&jr->bytes);
        inflight += atomic_load(&jr->units_out);
        snprintf(line, sizeof line,
                 "batchrep_job_tasks{job_id=\"%s\",status=\"%s\",outcome=\"succeeded\"} %llu\n"
                 "batchrep_job_tasks{job_id=\"%s\",status=\"%s\",outcome=\"failed\"} %llu\n"
                 "batchrep_job_tasks_total{job_id=\"%s\"} %llu\n",
                 jr->job.row.id, st, (unsigned long long)a, jr->job.row.id, st,
                 (unsigned long long)f, jr->job.row.id, (unsigned long long)jr->job.row.total);
        rc |= s3_buf_append_str(&per, line);
    }
    pthread_mutex_unlock(&s->mu);
    snprintf(line, sizeof line,
             "batchrep_tasks_total{outcome=\"succeeded\"} %llu\n"
             "batchrep_tasks_total{outcome=\"failed\"} %llu\n"
             "# TYPE batchrep_bytes_replicated_total counter\n"
             "batchrep_bytes_replicated_total %llu\n"
             "# TYPE batchrep_units_in_flight gauge\nbatchrep_units_in_flight %lld\n"
             "# TYPE batchrep_job_tasks gauge\n",
             (unsigned long long)ok, (unsigned long long)bad, (unsigned long long)bytes,
             (long long)inflight);
    rc |= s3_buf_append_str(b, line);
    rc |= s3_buf_append(b, per.ptr ? per.ptr : "", per.len);
    s3_buf_cleanup(&per);
    return rc;
}

/* ---- control ----------------------------------------------------------------------------- */

static void save(sched *s, jobs_store *st, jobrun *jr)
{
    char err[512];
    jobs_row *r = &jr->job.row;
    r->succeeded = atomic_load(&jr->succeeded);
    r->failed = atomic_load(&jr->failed);
    r->owner_pid = getpid();
    r->owner_seen_ms = s3_wall_ms();
    if (jr->active_since_ms) {
        int64_t now = s3_wall_ms();
        r->active_ms += now - jr->active_since_ms;
        jr->active_since_ms = now;
    }
    if (jobs_store_save(st, r, err, sizeof err) != 0)
        fprintf(stderr, "batchrep: %s\n", err);
    (void)s;
}

static void set_status(jobrun *jr, jobs_status st)
{
    jobs_row *r = &jr->job.row;
    if (r->status == st)
        return;
    if (st == JOBS_STATUS_ACTIVE)
        jr->active_since_ms = s3_wall_ms();
    else if (r->status == JOBS_STATUS_ACTIVE && jr->active_since_ms) {
        r->active_ms += s3_wall_ms() - jr->active_since_ms;
        jr->active_since_ms = 0;
    }
    r->status = st;
    atomic_store(&jr->status_now, (int)st);
}

/* Takes a claimed job into the run: rules, checkpoint, report files, manifest reader. */
static jobrun *attach(sched *s, jobs_row *row, char *err, size_t err_len)
{
    jobrun *jr = calloc(1, sizeof *jr);
    if (!jr)
        return NULL;
    if (jobs_job_load(&jr->job, row, s->state_root, s->ep->region, err, err_len) != 0) {
        jobs_job_fail(&jr->job, "InvalidJobDocument", err);
        return jr;
    }
    eng_unit_builder_init(&jr->builder);
    atomic_store(&jr->priority, jr->job.row.priority);
    jr->run_started_ms = s3_wall_ms();
    if (run__attach_rules(&jr->job, &jr->rules, s->eps, s->opts) != 0)
        return jr;
    snprintf(jr->ckpt_path, sizeof jr->ckpt_path, "%s/checkpoint.json", jr->job.dir);
    int loaded = run__ckpt_load(jr->ckpt_path, &jr->resume);
    if (loaded < 0) {
        jobs_job_fail(&jr->job, "CheckpointUnreadable", jr->ckpt_path);
        return jr;
    }
    /* the writer's progress starts from the checkpoint: counts, sizes, done ranges */
    run__ckpt_load(jr->ckpt_path, &jr->ckpt);
    atomic_store(&jr->succeeded, jr->ckpt.succeeded);
    atomic_store(&jr->failed, jr->ckpt.failed);
    if (jr->job.report_enabled) {
        if (jr->job.report_is_local)
            snprintf(jr->report_root, sizeof jr->report_root, "%s", jr->job.report_bucket);
        else
            snprintf(jr->report_root, sizeof jr->report_root, "%s/report", jr->job.dir);
        jr->ro = (rpt_opts){.root_dir = jr->report_root, .bucket = jr->job.report_bucket,
                            .prefix = jr->job.report_prefix, .job_id = jr->job.row.id,
                            .scope = jr->job.report_scope, .resume = loaded == 0,
                            .resume_succeeded_bytes = jr->ckpt.succeeded_bytes,
                            .resume_failed_bytes = jr->ckpt.failed_bytes};
        char msg[512];
        jr->rpt = rpt_writer_open(&jr->ro, msg, sizeof msg);
        if (!jr->rpt) {
            jobs_job_fail(&jr->job, "ReportNotWritable", msg);
            return jr;
        }
    }
    char msg[512];
    jr->reader = run__manifest_open(&jr->job, s->ep, NULL, msg, sizeof msg);
    if (!jr->reader) {
        jobs_job_fail(&jr->job, "ManifestNotReadable", msg);
        return jr;
    }
    /* the first window: a checkpoint that allows PLAN_WINDOW_ROWS past where we start */
    jr->ckpt.plan_limit = jr->resume.plan_limit > jr->ckpt.low + PLAN_WINDOW_ROWS
                              ? jr->resume.plan_limit
                              : jr->ckpt.low + PLAN_WINDOW_ROWS;
    if (run__ckpt_save(jr->ckpt_path, &jr->ckpt) != 0) {
        jobs_job_fail(&jr->job, "CheckpointUnwritable", jr->ckpt_path);
        return jr;
    }
    atomic_store(&jr->plan_limit, jr->ckpt.plan_limit);
    return jr;
}

static void release(jobrun *jr)
{
    mf_close(jr->reader);
    eng_unit_destroy(jr->pending);
    eng_unit_builder_cleanup(&jr->builder);
    rpt_writer_destroy(jr->rpt);
    repl_rules_cleanup(&jr->rules);
    run__ckpt_cleanup(&jr->ckpt);
    run__ckpt_cleanup(&jr->resume);
    jobs_job_cleanup(&jr->job);
    free(jr);
}

/* The job has no work left in the pool: write its report, choose its terminal status:
   Cancelling -> Cancelled, Failing -> Failed, Completing -> Complete. */
static void finish(sched *s, jobs_store *st, jobrun *jr)
{
    char msg[1024];
    jobs_job *job = &jr->job;
    jobs_status final = JOBS_STATUS_COMPLETE, transit = JOBS_STATUS_COMPLETING;
    if (job->row.status == JOBS_STATUS_CANCELLING) {
        final = JOBS_STATUS_CANCELLED;
        transit = JOBS_STATUS_CANCELLING;
    } else {
        if (jr->plan_error[0])
            jobs_job_fail(job, "InvalidManifestContent", jr->plan_error);
        else if (atomic_load(&jr->io_error))
            jobs_job_fail(job, "ReportNotWritable", "cannot write the results files");
        else if (atomic_load(&jr->threshold_hit))
            jobs_job_fail(job, "TaskFailureThresholdExceeded",
                          "More than 50% of the tasks that ran failed (checked once at least "
                          "1,000 tasks have run)");
        if (job->row.failure_code[0]) {
            final = JOBS_STATUS_FAILED;
            transit = JOBS_STATUS_FAILING;
        }
    }
    set_status(jr, transit);
    save(s, st, jr);
    if (jr->rpt) {
        checkpoint(jr); /* the writer no longer sees this job */
        rpt_summary sum;
        rpt_writer *w = jr->rpt;
        jr->rpt = NULL;
        if (rpt_writer_finish(w, &sum, msg, sizeof msg) != 0) {
            jobs_job_fail(job, "ReportNotWritable", msg);
            final = JOBS_STATUS_FAILED;
        } else if (!job->report_is_local &&
                   rpt_upload(s->ep, &jr->ro, &sum, msg, sizeof msg) != 0) {
            char reason[1200];
            snprintf(reason, sizeof reason,
                     "The job report could not be written to your report bucket: %s", msg);
            jobs_job_fail(job, "ReportNotWritable", reason);
            final = JOBS_STATUS_FAILED;
        }
    }
    set_status(jr, final);
    job->row.terminated_ms = s3_wall_ms();
    save(s, st, jr);
    char path[4200];
    snprintf(path, sizeof path, "%s/describe.json", job->dir);
    json_t *d = jobs_job_describe(job);
    json_dump_file(d, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(d);
}

/* Every status but the terminal ones: what a worker may have to prepare, run or finish. */
static const jobs_status live_statuses[] = {
    JOBS_STATUS_NEW,     JOBS_STATUS_PREPARING,  JOBS_STATUS_SUSPENDED, JOBS_STATUS_READY,
    JOBS_STATUS_ACTIVE,  JOBS_STATUS_PAUSING,    JOBS_STATUS_PAUSED,    JOBS_STATUS_COMPLETING,
    JOBS_STATUS_FAILING, JOBS_STATUS_CANCELLING,
};

typedef struct scan_ctx {
    sched *s;
    jobs_store *st;
    int runnable_seen;            /* a job someone could still run exists */
    int only_done;                /* only_job_id reached a terminal state (or Suspended) */
} scan_ctx;

static int attached(sched *s, const char *id)
{
    for (jobrun *jr = s->jobs; jr; jr = jr->next)
        if (strcmp(jr->job.row.id, id) == 0)
            return 1;
    return 0;
}

/* Runs Preparing for a New job this process claimed. */
static void prepare(sched *s, jobs_store *st, jobs_row *row)
{
    char err[1024];
    jobs_job job;
    if (jobs_job_load(&job, row, s->state_root, s->ep->region, err, sizeof err) != 0) {
        jobs_job_fail(&job, "InvalidJobDocument", err);
    } else {
        job.row.status = JOBS_STATUS_PREPARING;
        jobs_store_save(st, &job.row, err, sizeof err);
        if (run__prepare(&job, s->ep) == 0) {
            if (job.confirmation_required && !s->opts->only_job_id) {
                job.row.status = JOBS_STATUS_SUSPENDED;
                job.row.suspended_ms = s3_wall_ms();
                snprintf(job.row.suspended_cause, sizeof job.row.suspended_cause,
                         "The job requires confirmation: update-job-status "
                         "--requested-job-status Ready");
            } else {
                job.row.status = JOBS_STATUS_READY;
            }
        }
    }
    if (job.row.status == JOBS_STATUS_FAILED)
        job.row.terminated_ms = s3_wall_ms();
    job.row.owner_pid = getpid();
    job.row.owner_seen_ms = s3_wall_ms();
    jobs_store_save(st, &job.row, err, sizeof err);
    jobs_job_cleanup(&job);
}

static int scan_one(const jobs_row *r, void *user)
{
    scan_ctx *c = user;
    sched *s = c->s;
    char err[1024];
    const char *only = s->opts->only_job_id;
    if (only && strcmp(r->id, only) != 0)
        return 0;
    if (r->status == JOBS_STATUS_COMPLETE || r->status == JOBS_STATUS_FAILED ||
        r->status == JOBS_STATUS_CANCELLED) {
        if (only)
            c->only_done = 1;
        return 0;
    }
    if (r->status == JOBS_STATUS_SUSPENDED) {
        if (only)
            c->only_done = 1; /* `run` of a job waiting for confirmation returns */
        return 0;
    }
    if (attached(s, r->id))
        return 0;
    c->runnable_seen = 1;
    if (jobs_store_claim(c->st, r->id, err, sizeof err) != 1)
        return 0; /* another live worker has it */
    jobs_row row;
    if (jobs_store_get(c->st, r->id, &row, err, sizeof err) != 1)
        return 0;
    if (row.status == JOBS_STATUS_NEW || row.status == JOBS_STATUS_PREPARING) {
        prepare(s, c->st, &row); /* takes row; the next scan attaches it */
        return 0;
    }
    jobrun *jr = attach(s, &row, err, sizeof err);
    jobs_row_cleanup(&row);
    if (!jr)
        return 0;
    if (jr->job.row.status == JOBS_STATUS_FAILED) {
        jr->job.row.terminated_ms = s3_wall_ms();
        save(s, c->st, jr);
        release(jr);
        return 0;
    }
    if (jr->job.row.status == JOBS_STATUS_CANCELLING || jr->job.row.status == JOBS_STATUS_FAILING)
        atomic_store(&jr->stop, 1);
    atomic_store(&jr->status_now, (int)jr->job.row.status);
    pthread_mutex_lock(&s->mu);
    jr->next = s->jobs;
    s->jobs = jr;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Applies the catalogue's view (cancel, priority) and decides Active / Paused. */
static void steer(sched *s, jobs_store *st)
{
    char err[512];
    int top = -1;
    for (jobrun *jr = s->jobs; jr; jr = jr->next) {
        jobs_row row;
        if (jobs_store_get(st, jr->job.row.id, &row, err, sizeof err) == 1) {
            atomic_store(&jr->priority, row.priority);
            jr->job.row.priority = row.priority;
            if (row.status == JOBS_STATUS_CANCELLING || row.status == JOBS_STATUS_CANCELLED) {
                atomic_store(&jr->stop, 1);
                set_status(jr, JOBS_STATUS_CANCELLING);
                snprintf(jr->job.row.status_reason, sizeof jr->job.row.status_reason, "%s",
                         row.status_reason);
            }
            jobs_row_cleanup(&row);
        }
        if (!atomic_load(&jr->plan_done) && !atomic_load(&jr->stop) &&
            atomic_load(&jr->priority) > top)
            top = atomic_load(&jr->priority);
    }
    for (jobrun *jr = s->jobs; jr; jr = jr->next) {
        jobs_status cur = jr->job.row.status;
        if (cur == JOBS_STATUS_CANCELLING || cur == JOBS_STATUS_FAILING ||
            cur == JOBS_STATUS_FAILED)
            continue;
        int planning = !atomic_load(&jr->plan_done) && !atomic_load(&jr->stop);
        int run = !planning || atomic_load(&jr->priority) >= top;
        atomic_store(&jr->runnable, run);
        if (run) {
            set_status(jr, JOBS_STATUS_ACTIVE);
        } else if (cur == JOBS_STATUS_ACTIVE || cur == JOBS_STATUS_PAUSING) {
            set_status(jr, atomic_load(&jr->units_out) > 0 ? JOBS_STATUS_PAUSING
                                                           : JOBS_STATUS_PAUSED);
        }
    }
}

static void print_progress(sched *s, int final)
{
    for (jobrun *jr = s->jobs; jr; jr = jr->next) {
        uint64_t ok = atomic_load(&jr->succeeded), bad = atomic_load(&jr->failed);
        uint64_t done = ok + bad, total = jr->job.row.total;
        /* rates of this run: tasks counted by the checkpoint it resumed from are not in it */
        double secs = (double)(s3_wall_ms() - jr->run_started_ms) / 1000.0;
        double rate = secs > 0 ? (double)(done - jr->resume.succeeded - jr->resume.failed) / secs
                               : 0;
        double mbps = secs > 0 ? (double)atomic_load(&jr->bytes) / secs / 1e6 : 0;
        double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
        fprintf(stderr, "\r\033[Kbatchrep: job %.8s %s: %llu/%llu tasks, %llu succeeded, "
                        "%llu failed, %.0f objects/s, %.1f MB/s, ETA %.0fs%s",
                jr->job.row.id, jobs_status_name(jr->job.row.status),
                (unsigned long long)done, (unsigned long long)total, (unsigned long long)ok,
                (unsigned long long)bad, rate, mbps, eta, final ? "\n" : "");
    }
}

static int apply_defaults(run_options *o, char *err, size_t err_len)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (o->concurrency < 0 || o->workers < 0 || o->max_attempts < 0 || o->retry_base_ms < 0 ||
        o->retry_cap_ms < 0) {
        snprintf(err, err_len, "options: counts and delays must not be negative");
        return -RUN_E_INVALID_OPTIONS;
    }
    if (!o->concurrency)
        o->concurrency = 64;
    if (!o->workers)
        o->workers = cores > 0 ? (int)cores : 1;
    if (o->workers > o->concurrency)
        o->workers = o->concurrency;
    if (!o->max_attempts)
        o->max_attempts = 8;
    if (!o->retry_base_ms)
        o->retry_base_ms = 100;
    if (!o->retry_cap_ms)
        o->retry_cap_ms = 20000;
    if (o->multipart_threshold_bytes < 0 || o->part_size_bytes < 0) {
        snprintf(err, err_len, "options: sizes must not be negative");
        return -RUN_E_INVALID_OPTIONS;
    }
    if (!o->multipart_threshold_bytes)
        o->multipart_threshold_bytes = (int64_t)5 << 30; /* CopyObject's limit (§8.1) */
    if (!o->part_size_bytes)
        o->part_size_bytes = (int64_t)8 << 20; /* the AWS CLI's multipart_chunksize */
    return 0;
}

#define MAX_ENDPOINTS 16 /* the source's and up to 15 --destination-profile ones */

int run_worker(jobs_store *st, const run_options *opts, run_result *out, char *err,
               size_t err_len)
{
    run_options o = *opts;
    s3_endpoint ep;
    int rc;
    memset(out, 0, sizeof *out);
    if ((rc = apply_defaults(&o, err, err_len)))
        return rc;
    if (s3_endpoint_load(&ep, NULL, err, err_len) != 0)
        return -RUN_E_CONFIG;
    s3_endpoint *eps[MAX_ENDPOINTS] = {&ep};
    size_t n_eps = 1;
    if ((rc = repl_dests_load_profiles(o.destination_profiles, o.n_destination_profiles, eps,
                                       MAX_ENDPOINTS, &n_eps, err, err_len)) != 0) {
        for (size_t i = 1; i < n_eps; i++)
            free(eps[i]);
        return rc == -REPL_E_INVALID_BINDING ? -RUN_E_INVALID_OPTIONS
               : rc == -REPL_E_NOMEM         ? -RUN_E_NOMEM
                                             : -RUN_E_CONFIG;
    }
    sched *s = calloc(1, sizeof *s);
    if (!s)
        return -RUN_E_NOMEM;
    s->eps = (const s3_endpoint *const *)eps;
    pthread_mutex_init(&s->mu, NULL);
    s->ep = &ep;
    s->opts = &o;
    snprintf(s->state_root, sizeof s->state_root, "%s", jobs_store_dir(st));
    if (o.metrics_addr &&
        !(s->metrics = run__metrics_start(o.metrics_addr, render_metrics, s, err, err_len))) {
        free(s);
        return -RUN_E_IO;
    }
    if (eng_queue_init(&s->done_q, 1024) != 0) {
        run__metrics_stop(s->metrics);
        free(s);
        return -RUN_E_NOMEM;
    }
    /* the writer pops with a timeout, so it need not be woken for every finished unit */
    eng_queue_set_wake_batch(&s->done_q, 64);
    eng_pool_cfg pc = {.ep = &ep, .eps = s->eps, .n_eps = n_eps, .workers = o.workers, .concurrency = o.concurrency,
                        .max_attempts = o.max_attempts, .retry_base_ms = o.retry_base_ms,
                        .retry_cap_ms = o.retry_cap_ms, .counters = &s->counters,
                        .done_q = &s->done_q, .queue_depth = 0};
    s->pool = eng_pool_start(&pc, err, err_len);
    if (!s->pool) {
        run__metrics_stop(s->metrics);
        eng_queue_cleanup(&s->done_q);
        free(s);
        return -RUN_E_THREAD;
    }
    pthread_t feeder, writer;
    pthread_create(&feeder, NULL, feeder_main, s);
    pthread_create(&writer, NULL, writer_main, s);
    struct sigaction sa = {.sa_handler = on_signal};
    struct sigaction old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int64_t last_save = 0, last_progress = 0;
    for (;;) {
        scan_ctx c = {.s = s, .st = st};
        if (!g_signalled && o.only_job_id) {
            jobs_row row;
            if (jobs_store_get(st, o.only_job_id, &row, err, err_len) == 1) {
                scan_one(&row, &c);
                jobs_row_cleanup(&row);
            }
        } else if (!g_signalled) {
            jobs_store_each(st, live_statuses, sizeof live_statuses / sizeof *live_statuses,
                            scan_one, &c, err, err_len);
        }
        steer(s, st);
        int64_t now = s3_wall_ms();
        int save_now = now - last_save >= SAVE_INTERVAL_MS;
        for (jobrun **pp = &s->jobs; *pp;) {
            jobrun *jr = *pp;
            pthread_mutex_lock(&s->mu);
            int done = (atomic_load(&jr->plan_done) || atomic_load(&jr->stop)) &&
                       atomic_load(&jr->units_out) == 0 && !jr->feeding;
            if (done)
                *pp = jr->next; /* out of the feeder's and writer's sight */
            pthread_mutex_unlock(&s->mu);
            if (done) {
                finish(s, st, jr);
                if (o.progress)
                    print_progress(s, 1);
                out->jobs_finished++;
                release(jr);
                continue;
            }
            if (save_now)
                save(s, st, jr);
            pp = &jr->next;
        }
        if (save_now)
            last_save = now;
        if (o.progress && now - last_progress >= 500 && s->jobs) {
            print_progress(s, 0);
            last_progress = now;
        }
        if (g_signalled && !s->jobs)
            break;
        if (g_signalled) { /* stop handing out work; let what is in flight land */
            for (jobrun *jr = s->jobs; jr; jr = jr->next)
                atomic_store(&jr->runnable, 0);
            int busy = 0;
            for (jobrun *jr = s->jobs; jr; jr = jr->next)
                busy |= atomic_load(&jr->units_out) > 0;
            if (!busy)
                break;
        }
        if (o.only_job_id && c.only_done && !s->jobs)
            break;
        if (o.until_idle && !o.only_job_id && !c.runnable_seen && !s->jobs)
            break;
        usleep(TICK_MS * 1000);
    }
    run__metrics_stop(s->metrics); /* before the jobs below leave the list without mu */
    s->metrics = NULL;
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_join(feeder, NULL);
    eng_pool_finish(s->pool);
    eng_queue_close(&s->done_q);
    pthread_join(writer, NULL);
    /* stopped by a signal: leave every job where it is, with a fresh checkpoint */
    while (s->jobs) {
        jobrun *jr = s->jobs;
        s->jobs = jr->next;
        checkpoint(jr);
        save(s, st, jr);
        release(jr);
    }
    out->retries = atomic_load(&s->counters.retries);
    out->throttle_events = atomic_load(&s->counters.throttle_events);
    eng_pool_destroy(s->pool);
    eng_queue_cleanup(&s->done_q);
    pthread_mutex_destroy(&s->mu);
    free(s);
    for (size_t i = 1; i < n_eps; i++) {
        memset(eps[i], 0, sizeof *eps[i]); /* credentials */
        free(eps[i]);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return 0;
}

const char *run_strerror(int err)
{
    switch (err < 0 ? -err : err) {
#define XX(name, msg)                                                                      \
    case RUN_E_##name:                                                                 \
        return msg;
        RUN_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *run_errname(int err)
{
    switch (err < 0 ? -err : err) {
#define XX(name, msg)                                                                      \
    case RUN_E_##name:                                                                 \
        return "RUN_E_" #name;
        RUN_ERRNO_MAP(XX)
#undef XX
    }
    return "RUN_E_UNKNOWN";
}
