/*
 * scheduler.c — run_worker: runs the catalogue's jobs, several at once, highest priority
 * first, resumable. This file is the control loop; the other threads have files of their own.
 *
 * Threads of a worker process (they meet only at bounded queues and a few atomics):
 *   control (the caller's thread, this file)  every 200 ms: reads the catalogue, prepares New jobs,
 *            takes runnable ones (claim: pid + heartbeat; a dead owner's job is taken over),
 *            applies other processes' requests (cancel, priority), decides which jobs are
 *            Active and which are Paused, finishes jobs, writes progress and heartbeat;
 *   feeder   (feeder.c) reads the manifests of the Active jobs and hands units to the pool:
 *            always from the highest priority, round-robin among equal ones. The pool's
 *            queues are short (as many units as a lane has seats) and each takes the
 *            highest priority first, so a change of priority shows at the next units taken;
 *   pool     N lanes with curl multi handles (engine/pool.c);
 *   writer   (writer.c) writes each finished unit's report rows to its job's results files, counts,
 *            checks the failure threshold, and every second syncs the files and writes the
 *            job's checkpoint (checkpoint.c): rows durable first, then the checkpoint;
 *   metrics  (metrics.c) libmicrohttpd's thread, when --metrics-addr is given.
 *
 * Job states (../shared/aws-formats.md §4): New -> Preparing -> (Suspended) -> Ready ->
 * Active <-> Pausing -> Paused, -> Completing -> Complete; Cancelling -> Cancelled; Failing
 * -> Failed. A job left in any non-terminal state by a dead worker continues from its
 * checkpoint: its results files are cut back to the checkpoint's sizes, done units are
 * skipped and units that may have started are rechecked against the destinations.
 */
#include "run/run_int.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 200
#define SAVE_INTERVAL_MS 1000

static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    (void)sig;
    g_signalled = 1;
}

/* ---- control ----------------------------------------------------------------------------- */

static void save(run__sched *s, jobs_store *st, run__job *jr)
{
    char err[4400];
    jobs_row *r = &jr->job.row;
    r->succeeded = atomic_load(&jr->succeeded);
    r->failed = atomic_load(&jr->failed);
    r->owner_pid = getpid();
    r->owner_seen_ms = s3_wall_ms();
    if (jr->active_since_ms) {
        int64_t now = s3_mono_ms();
        r->active_ms += now - jr->active_since_ms;
        jr->active_since_ms = now;
    }
    int rc = jobs_store_save(st, r, err, sizeof err);
    if (rc == -JOBS_E_DISK_FULL) {
        if (!s->store_full_since_ms) { /* said once; the loop stops the worker if it lasts */
            s->store_full_since_ms = s3_mono_ms();
            pthread_mutex_lock(&s->mu);
            snprintf(s->disk_full_msg, sizeof s->disk_full_msg, "%s", err);
            pthread_mutex_unlock(&s->mu);
            fprintf(stderr, "batchrep: %s; waiting for space\n", err);
        }
    } else if (rc != 0) {
        fprintf(stderr, "batchrep: %s\n", err);
    } else {
        s->store_full_since_ms = 0;
    }
}

/* The worker's side of the one setter (jobs_row_set_status), plus the Active time. A
   transition the table refuses leaves the status as it is. */
static void set_status(run__job *jr, jobs_status st)
{
    jobs_row *r = &jr->job.row;
    jobs_status was = r->status;
    /* A job taken over or resumed is attached with the status its row kept, Active when its
       last worker died or stopped while it ran: no transition then, yet the clock must run
       (it did not, and ElapsedTimeInActiveSeconds stopped at the first run's time). */
    if (was == st && st == JOBS_STATUS_ACTIVE && !jr->active_since_ms)
        jr->active_since_ms = s3_mono_ms();
    if (was == st || jobs_row_set_status(r, st, JOBS_BY_WORKER, NULL, 0) != 0)
        return;
    r->status = was; /* the Active time below needs the old status */
    if (st == JOBS_STATUS_ACTIVE)
        jr->active_since_ms = s3_mono_ms();
    else if (r->status == JOBS_STATUS_ACTIVE && jr->active_since_ms) {
        r->active_ms += s3_mono_ms() - jr->active_since_ms;
        jr->active_since_ms = 0;
    }
    r->status = st;
    atomic_store(&jr->status_now, (int)st);
}

/* Reads each shard's checkpoint. A shard is complete, resumes from its checkpoint, or starts
   afresh; when its checkpoint is lost or damaged while it may have run, it resumes from the
   previous checkpoint (or the start) and every unit not known done rechecks its destinations,
   so nothing is replicated twice. The feeder opens shards in order and writes each one's
   first checkpoint before its first unit, so a shard without one "may have run" when a later
   shard has one, or when the job had run and there is evidence: its results files hold rows
   (or, the report disabled, it is the next shard after the last one with a checkpoint).
   Returns the tasks the checkpoints count. -1: no memory. */
static int64_t load_shards(run__job *jr)
{
    jobs_status st = jr->job.row.status;
    int had_run = jr->job.row.succeeded + jr->job.row.failed > 0 ||
                  (st != JOBS_STATUS_NEW && st != JOBS_STATUS_PREPARING && st != JOBS_STATUS_READY);
    size_t n = jr->spool.n_shards, last_with = (size_t)-1;
    int *loaded = calloc(n ? n : 1, sizeof *loaded);
    if (!loaded)
        return -1;
    int64_t counted = 0;
    for (size_t i = 0; i < n; i++) {
        run__shard *sh = &jr->shards[i];
        loaded[i] = run_ckpt_load(sh->ckpt_path, &sh->resume);
        if (loaded[i] != 1)
            last_with = i;
    }
    size_t next = last_with + 1; /* (size_t)-1 + 1 == 0 */
    for (size_t i = 0; i < n; i++) {
        run__shard *sh = &jr->shards[i];
        int rc = loaded[i];
        int evidence = jr->job.report_enabled ? rpt_chunk_has_rows(&jr->ro, (uint32_t)i) != 0
                                              : i == next;
        int uncertain = rc < 0 || rc == RUN_CKPT_FROM_PREV ||
                        (rc == 1 && ((last_with != (size_t)-1 && i < last_with) ||
                                     (had_run && evidence)));
        if (rc < 0)
            memset(&sh->resume, 0, sizeof sh->resume);
        if (uncertain) {
            fprintf(stderr,
                    "batchrep: job %s: %s %s; resuming from %s, every unit not known done is "
                    "rechecked against its destinations\n",
                    jr->job.row.id, sh->ckpt_path,
                    rc == 1 ? "is missing" : rc < 0 ? "cannot be read" : "is damaged or missing",
                    rc == RUN_CKPT_FROM_PREV ? "the previous checkpoint" : "the start");
            sh->recheck_all = 1;
        }
        sh->resume_files = rc == 0 || rc == RUN_CKPT_FROM_PREV;
        /* the writer's progress starts from the checkpoint: counts, sizes, done ranges */
        sh->ckpt = sh->resume;
        sh->ckpt.iv = NULL;
        sh->ckpt.n_iv = sh->ckpt.cap_iv = 0;
        for (size_t k = 0; k < sh->resume.n_iv; k++)
            run_ckpt_add(&sh->ckpt, sh->resume.iv[2 * k], sh->resume.iv[2 * k + 1]);
        atomic_store(&sh->state, sh->resume.complete && !sh->recheck_all ? RUN__SHARD_DONE
                                                                          : RUN__SHARD_WAITING);
        sh->ckpt.complete = 0;
        atomic_fetch_add(&jr->succeeded, sh->ckpt.succeeded);
        atomic_fetch_add(&jr->failed, sh->ckpt.failed);
        counted += (int64_t)(sh->ckpt.succeeded + sh->ckpt.failed);
    }
    free(loaded);
    return counted;
}

/* Takes a claimed job into the run: rules, spool, shard checkpoints, report options. */
static run__job *attach(run__sched *s, jobs_row *row, char *err, size_t err_len)
{
    run__job *jr = calloc(1, sizeof *jr);
    if (!jr)
        return NULL;
    if (jobs_job_load(&jr->job, row, s->state_root, s->ep->region, err, err_len) != 0) {
        jobs_job_fail(&jr->job, "InvalidJobDocument", err);
        return jr;
    }
    eng_unit_builder_init(&jr->builder);
    jr->sched = s;
    atomic_store(&jr->priority, jr->job.row.priority);
    jr->run_started_ms = s3_mono_ms();
    if (run__attach_rules(&jr->job, &jr->rules, s->eps, s->opts) != 0)
        return jr;
    char msg[512];
    int rc = -1;
    if (s3_path_join(jr->spool_dir, sizeof jr->spool_dir, jr->job.dir, "spool") == 0)
        rc = run__spool_index_load(jr->spool_dir, &jr->spool, msg, sizeof msg);
    if (rc != 0) {
        jobs_job_fail(&jr->job, "InternalError",
                      rc == 1 ? "the job has no spool (prepared by an older batchrep, or its "
                                "state was removed): create the job again"
                              : msg);
        return jr;
    }
    jr->shards = calloc(jr->spool.n_shards ? jr->spool.n_shards : 1, sizeof *jr->shards);
    if (!jr->shards) {
        jobs_job_fail(&jr->job, "InternalError", "out of memory");
        return jr;
    }
    for (size_t i = 0; i < jr->spool.n_shards; i++) {
        run__shard *sh = &jr->shards[i];
        sh->job = jr;
        sh->info = &jr->spool.shards[i];
        sh->index = (uint32_t)i;
        if ((size_t)snprintf(sh->ckpt_path, sizeof sh->ckpt_path,
                             "%s/shard-%06zu.checkpoint.json", jr->spool_dir,
                             i) >= sizeof sh->ckpt_path) {
            jobs_job_fail(&jr->job, "InternalError", "the job's folder path is too long");
            return jr;
        }
    }
    if (jr->job.report_enabled) {
        if (jr->job.report_is_local)
            snprintf(jr->report_root, sizeof jr->report_root, "%s", jr->job.report_bucket);
        else if (s3_path_join(jr->report_root, sizeof jr->report_root, jr->job.dir, "report")) {
            jobs_job_fail(&jr->job, "ReportNotWritable", "the job's folder path is too long");
            return jr;
        }
        jr->ro = (rpt_opts){.root_dir = jr->report_root, .bucket = jr->job.report_bucket,
                            .prefix = jr->job.report_prefix, .job_id = jr->job.row.id,
                            .scope = jr->job.report_scope,
                            .private_files = !jr->job.report_is_local};
    }
    int64_t counted = load_shards(jr);
    if (counted < 0) {
        jobs_job_fail(&jr->job, "InternalError", "out of memory");
        return jr;
    }
    jr->resumed_tasks = (uint64_t)counted;
    return jr;
}

/* Closes what the job's shards hold open: a last checkpoint each (a shard fed to its end is
   complete then). A shard this run never reached (the job stopped first) but an earlier run
   wrote rows for is opened once, which cuts its results files back to its checkpoint (or
   empties them when its progress is uncertain), so the report lists no row its counts do
   not. Control thread, once the writer no longer sees the job. */
static void settle_shards(run__job *jr)
{
    for (size_t i = 0; i < jr->spool.n_shards; i++) {
        run__shard *sh = &jr->shards[i];
        if (atomic_load(&sh->state) == RUN__SHARD_WAITING && (sh->resume_files || sh->recheck_all))
            run__shard_open(sh);
        run__shard_settle(sh);
        rpt_writer_destroy(sh->rpt); /* not complete (stopped): its rows are durable */
        sh->rpt = NULL;
    }
}

static void release(run__job *jr)
{
    run__spool_close(jr->reader);
    eng_unit_destroy(jr->pending);
    eng_unit_builder_cleanup(&jr->builder);
    for (size_t i = 0; jr->shards && i < jr->spool.n_shards; i++) {
        rpt_writer_destroy(jr->shards[i].rpt);
        run_ckpt_cleanup(&jr->shards[i].ckpt);
        run_ckpt_cleanup(&jr->shards[i].resume);
    }
    free(jr->shards);
    run__spool_index_cleanup(&jr->spool);
    repl_rules_cleanup(&jr->rules);
    jobs_job_cleanup(&jr->job);
    free(jr);
}

/* The job has no work left in the pool: write its report, choose its terminal status:
   Cancelling -> Cancelled, Failing -> Failed, Completing -> Complete. */
static void finish(run__sched *s, jobs_store *st, run__job *jr)
{
    char msg[1024];
    jobs_job *job = &jr->job;
    jobs_status final = JOBS_STATUS_COMPLETE, transit = JOBS_STATUS_COMPLETING;
    if (job->row.status == JOBS_STATUS_CANCELLING) {
        final = JOBS_STATUS_CANCELLED;
        transit = JOBS_STATUS_CANCELLING;
    } else {
        settle_shards(jr); /* the writer no longer sees this job */
        if (atomic_load(&jr->io_error))
            jobs_job_set_failure(job, "ReportNotWritable", jr->io_error_msg);
        else if (jr->plan_error[0])
            jobs_job_set_failure(job, "InternalError", jr->plan_error);
        else if (atomic_load(&jr->threshold_hit))
            jobs_job_set_failure(job, "TaskFailureThresholdExceeded",
                          "More than 50% of the tasks that ran failed (checked once at least "
                          "1,000 tasks have run)");
        if (job->row.failure_code[0]) {
            final = JOBS_STATUS_FAILED;
            transit = JOBS_STATUS_FAILING;
        }
    }
    if (final == JOBS_STATUS_CANCELLED)
        settle_shards(jr);
    set_status(jr, transit);
    save(s, st, jr);
    if (job->report_enabled) {
        rpt_summary sum;
        if (rpt_manifest_write(&jr->ro, (uint32_t)jr->spool.n_shards, &sum, msg,
                               sizeof msg) != 0) {
            jobs_job_set_failure(job, "ReportNotWritable", msg);
            final = JOBS_STATUS_FAILED;
        } else if (!job->report_is_local &&
                   rpt_upload(s->ep, &jr->ro, &sum, msg, sizeof msg) != 0) {
            char reason[1200];
            snprintf(reason, sizeof reason,
                     "The job report could not be written to your report bucket: %s", msg);
            jobs_job_set_failure(job, "ReportNotWritable", reason);
            final = JOBS_STATUS_FAILED;
        }
        rpt_summary_cleanup(&sum);
    }
    set_status(jr, final);
    save(s, st, jr);
    char path[4200];
    json_t *d = jobs_job_describe(job);
    char *text = json_dumps(d, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(d);
    if (text && (size_t)snprintf(path, sizeof path, "%s/describe.json", job->dir) < sizeof path &&
        s3_write_file_atomic(path, text, strlen(text), S3_MODE_PRIVATE_FILE, msg,
                             sizeof msg) != S3_E_OK)
        fprintf(stderr, "batchrep: job %s: %s\n", job->row.id, msg);
    free(text);
}

/* Every status but the terminal ones: what a worker may have to prepare, run or finish. */
static const jobs_status live_statuses[] = {
    JOBS_STATUS_NEW,     JOBS_STATUS_PREPARING,  JOBS_STATUS_SUSPENDED, JOBS_STATUS_READY,
    JOBS_STATUS_ACTIVE,  JOBS_STATUS_PAUSING,    JOBS_STATUS_PAUSED,    JOBS_STATUS_COMPLETING,
    JOBS_STATUS_FAILING, JOBS_STATUS_CANCELLING,
};

typedef struct scan_ctx {
    run__sched *s;
    jobs_store *st;
    int runnable_seen;            /* a job someone could still run exists */
    int only_done;                /* only_job_id reached a terminal state (or Suspended) */
} scan_ctx;

static int attached(run__sched *s, const char *id)
{
    for (run__job *jr = s->jobs; jr; jr = jr->next)
        if (strcmp(jr->job.row.id, id) == 0)
            return 1;
    return 0;
}

/* Runs Preparing for a New job this process claimed. */
static void prepare(run__sched *s, jobs_store *st, jobs_row *row)
{
    char err[1024];
    jobs_job job;
    if (jobs_job_load(&job, row, s->state_root, s->ep->region, err, sizeof err) != 0) {
        jobs_job_fail(&job, "InvalidJobDocument", err);
    } else {
        jobs_row_set_status(&job.row, JOBS_STATUS_PREPARING, JOBS_BY_WORKER, NULL, 0);
        jobs_store_save(st, &job.row, err, sizeof err);
        if (run__prepare(&job, s->ep, s->opts) == 0) {
            if (job.confirmation_required && !s->opts->only_job_id) {
                jobs_row_set_status(&job.row, JOBS_STATUS_SUSPENDED, JOBS_BY_WORKER, NULL, 0);
                snprintf(job.row.suspended_cause, sizeof job.row.suspended_cause,
                         "The job requires confirmation: update-job-status "
                         "--requested-job-status Ready");
            } else {
                jobs_row_set_status(&job.row, JOBS_STATUS_READY, JOBS_BY_WORKER, NULL, 0);
            }
        }
    }
    job.row.owner_pid = getpid();
    job.row.owner_seen_ms = s3_wall_ms();
    jobs_store_save(st, &job.row, err, sizeof err);
    jobs_job_cleanup(&job);
}

static int scan_one(const jobs_row *r, void *user)
{
    scan_ctx *c = user;
    run__sched *s = c->s;
    char err[1024];
    const char *only = s->opts->only_job_id;
    if (only && strcmp(r->id, only) != 0)
        return 0;
    if (jobs_status_terminal(r->status)) {
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
    run__job *jr = attach(s, &row, err, sizeof err);
    jobs_row_cleanup(&row);
    if (!jr)
        return 0;
    if (jr->job.row.status == JOBS_STATUS_FAILED) {
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
static void steer(run__sched *s, jobs_store *st)
{
    char err[512];
    int top = -1;
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
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
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
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

static void print_progress(run__sched *s, int final)
{
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
        uint64_t ok = atomic_load(&jr->succeeded), bad = atomic_load(&jr->failed);
        uint64_t done = ok + bad, total = jr->job.row.total;
        /* rates of this run: tasks counted by the checkpoint it resumed from are not in it */
        double secs = (double)(s3_mono_ms() - jr->run_started_ms) / 1000.0;
        double rate = secs > 0 ? (double)(done - jr->resumed_tasks) / secs : 0;
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
    const s3_retry_policy def = S3_RETRY_DEFAULT;
    if (!o->max_attempts)
        o->max_attempts = def.max_attempts;
    if (!o->retry_base_ms)
        o->retry_base_ms = def.base_ms;
    if (!o->retry_cap_ms)
        o->retry_cap_ms = def.cap_ms;
    if (o->multipart_threshold_bytes < 0 || o->part_size_bytes < 0) {
        snprintf(err, err_len, "options: sizes must not be negative");
        return -RUN_E_INVALID_OPTIONS;
    }
    if (!o->multipart_threshold_bytes)
        o->multipart_threshold_bytes = (int64_t)5 << 30; /* CopyObject's limit (§8.1) */
    if (!o->part_size_bytes)
        o->part_size_bytes = (int64_t)8 << 20; /* the AWS CLI's multipart_chunksize */
    if (o->disk_full_wait_ms <= 0)
        o->disk_full_wait_ms = 60000;
    return 0;
}

#define MAX_ENDPOINTS 16 /* the source's and up to 15 --destination-profile ones */

/* What run_worker holds while it runs. */
typedef struct worker {
    run_options o;
    s3_endpoint ep;                    /* the source's (eps[0]) */
    s3_endpoint *eps[MAX_ENDPOINTS];
    size_t n_eps;
    run__sched *s;
    pthread_t feeder, writer;
    int feeder_started, writer_started;
    struct sigaction old_int, old_term;
} worker;

static void free_endpoints(worker *w)
{
    for (size_t i = 1; i < w->n_eps; i++) {
        memset(w->eps[i], 0, sizeof *w->eps[i]); /* credentials */
        free(w->eps[i]);
    }
    w->n_eps = 1;
}

/* Stops the threads that started and frees what start() built; the jobs still attached
   (stopped by a signal) keep their status with a fresh checkpoint. */
static void stop(worker *w, jobs_store *st, run_result *out)
{
    run__sched *s = w->s;
    if (s) {
        run__metrics_stop(s->metrics); /* before the jobs below leave the list without mu */
        s->metrics = NULL;
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_mutex_unlock(&s->mu);
        if (w->feeder_started)
            pthread_join(w->feeder, NULL);
        if (s->pool)
            eng_pool_finish(s->pool);
        if (s->done_q.items)
            eng_queue_close(&s->done_q);
        if (w->writer_started)
            pthread_join(w->writer, NULL);
        while (s->jobs) {
            run__job *jr = s->jobs;
            s->jobs = jr->next;
            settle_shards(jr);
            save(s, st, jr);
            release(jr);
        }
        if (out) {
            out->retries = atomic_load(&s->counters.retries);
            out->throttle_events = atomic_load(&s->counters.throttle_events);
        }
        eng_pool_destroy(s->pool);
        eng_queue_cleanup(&s->done_q);
        pthread_mutex_destroy(&s->mu);
        free(s);
        w->s = NULL;
        sigaction(SIGINT, &w->old_int, NULL);
        sigaction(SIGTERM, &w->old_term, NULL);
    }
    free_endpoints(w);
}

/* Endpoints, the metrics server, the pool, the feeder and the writer. 0, or -RUN_E_* with
   err set and everything already undone. */
static int start(worker *w, jobs_store *st, char *err, size_t err_len)
{
    run_options *o = &w->o;
    int rc;
    w->eps[0] = &w->ep;
    w->n_eps = 1;
    if ((rc = apply_defaults(o, err, err_len)))
        return rc;
    if (s3_endpoint_load(&w->ep, NULL, err, err_len) != 0)
        return -RUN_E_CONFIG;
    if ((rc = repl_dests_load_profiles(o->destination_profiles, o->n_destination_profiles,
                                       w->eps, MAX_ENDPOINTS, &w->n_eps, err, err_len)) != 0) {
        free_endpoints(w);
        return rc == -REPL_E_INVALID_BINDING ? -RUN_E_INVALID_OPTIONS
               : rc == -REPL_E_NOMEM         ? -RUN_E_NOMEM
                                             : -RUN_E_CONFIG;
    }
    /* every endpoint: the deadlines asked for, and a CA bundle curl can load (a wrong one
       is the caller's mistake, refused here rather than failing every request) */
    for (size_t i = 0; i < w->n_eps; i++) {
        w->eps[i]->limits = o->limits;
        if (s3_endpoint_check_ca(w->eps[i], err, err_len) != 0) {
            free_endpoints(w);
            return -RUN_E_INVALID_OPTIONS;
        }
    }
    run__sched *s = w->s = calloc(1, sizeof *s);
    if (!s) {
        free_endpoints(w);
        return -RUN_E_NOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->eps = (const s3_endpoint *const *)w->eps;
    s->ep = &w->ep;
    s->opts = o;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, &w->old_int);
    sigaction(SIGTERM, &sa, &w->old_term);
    snprintf(s->state_root, sizeof s->state_root, "%s", jobs_store_dir(st));
    rc = 0;
    if (o->metrics_addr)
        rc = run__metrics_start(o->metrics_addr, run__render_metrics, s, &s->metrics, err,
                                err_len);
    if (!rc && eng_queue_init(&s->done_q, 1024) != 0) {
        snprintf(err, err_len, "out of memory");
        rc = -RUN_E_NOMEM;
    }
    if (!rc) {
        /* the writer pops with a timeout, so it need not be woken for every finished unit */
        eng_queue_set_wake_batch(&s->done_q, 64);
        eng_pool_cfg pc = {.ep = &w->ep, .eps = s->eps, .n_eps = w->n_eps,
                           .threads = o->workers, .concurrency = o->concurrency,
                           .retry = {o->max_attempts, o->retry_base_ms, o->retry_cap_ms},
                           .counters = &s->counters,
                           .done_q = &s->done_q, .queue_depth = 0};
        if (!(s->pool = eng_pool_start(&pc, err, err_len)))
            rc = -RUN_E_THREAD;
    }
    if (!rc) {
        w->feeder_started = pthread_create(&w->feeder, NULL, run__feeder_main, s) == 0;
        w->writer_started = w->feeder_started &&
                            pthread_create(&w->writer, NULL, run__writer_main, s) == 0;
        if (!w->writer_started) {
            snprintf(err, err_len, "cannot start the %s thread",
                     w->feeder_started ? "report writer" : "feeder");
            rc = -RUN_E_THREAD;
        }
    }
    if (rc)
        stop(w, st, NULL);
    return rc;
}

/* Finishes the jobs that are done and saves the others' progress (every second). */
static void finish_or_save(worker *w, jobs_store *st, int save_now, run_result *out)
{
    run__sched *s = w->s;
    for (run__job **pp = &s->jobs; *pp;) {
        run__job *jr = *pp;
        pthread_mutex_lock(&s->mu);
        int done = (atomic_load(&jr->plan_done) || atomic_load(&jr->stop)) &&
                   atomic_load(&jr->units_out) == 0 && !jr->feeding && !jr->ckpt_busy &&
                   !atomic_load(&s->files_full_since_ms) && !s->store_full_since_ms;
        if (done)
            *pp = jr->next; /* out of the feeder's and writer's sight */
        pthread_mutex_unlock(&s->mu);
        if (done) {
            finish(s, st, jr);
            if (w->o.progress)
                print_progress(s, 1);
            out->jobs_finished++;
            release(jr);
            continue;
        }
        if (save_now)
            save(s, st, jr);
        pp = &jr->next;
    }
}

/* 1 when the disk has been full longer than the options allow: err says what could not be
   written and what happens to the jobs. */
static int disk_full_too_long(run__sched *s, char *err, size_t err_len)
{
    int64_t a = atomic_load(&s->files_full_since_ms), b = s->store_full_since_ms;
    int64_t since = a && b ? (a < b ? a : b) : a ? a : b;
    if (!since || s3_mono_ms() - since < s->opts->disk_full_wait_ms)
        return 0;
    pthread_mutex_lock(&s->mu);
    snprintf(err, err_len,
             "%.3000s; the disk stayed full for %lld s (--disk-full-wait-s): the worker stops. "
             "Its jobs keep their last checkpoints and resume, with nothing lost or reported "
             "twice, when a worker runs them again once there is space",
             s->disk_full_msg, (long long)(s->opts->disk_full_wait_ms / 1000));
    pthread_mutex_unlock(&s->mu);
    return 1;
}

/* Stopped by a signal: no more work is handed out; 1 once what was in flight has landed. */
static int drained(run__sched *s)
{
    int busy = 0;
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
        atomic_store(&jr->runnable, 0);
        busy |= atomic_load(&jr->units_out) > 0;
    }
    return !busy;
}

int run_worker(jobs_store *st, const run_options *opts, run_result *out, char *err,
               size_t err_len)
{
    worker w;
    memset(&w, 0, sizeof w);
    memset(out, 0, sizeof *out);
    w.o = *opts;
    int rc = start(&w, st, err, err_len);
    if (rc)
        return rc;
    const run_options *o = &w.o;
    run__sched *s = w.s;
    int64_t last_save = 0, last_progress = 0;
    for (;;) {
        scan_ctx c = {.s = s, .st = st};
        if (!g_signalled && o->only_job_id) {
            jobs_row row;
            if (jobs_store_get(st, o->only_job_id, &row, err, err_len) == 1) {
                scan_one(&row, &c);
                jobs_row_cleanup(&row);
            }
        } else if (!g_signalled) {
            jobs_store_each(st, live_statuses, sizeof live_statuses / sizeof *live_statuses,
                            scan_one, &c, err, err_len);
        }
        steer(s, st);
        int64_t now = s3_mono_ms();
        int save_now = now - last_save >= SAVE_INTERVAL_MS;
        finish_or_save(&w, st, save_now, out);
        if (save_now)
            last_save = now;
        if (o->progress && now - last_progress >= 500 && s->jobs) {
            print_progress(s, 0);
            last_progress = now;
        }
        if (g_signalled && drained(s))
            break;
        if (disk_full_too_long(s, err, err_len)) {
            rc = -RUN_E_DISK_FULL;
            break; /* no drain: the writer cannot write what would land */
        }
        if (o->only_job_id && c.only_done && !s->jobs)
            break;
        if (o->until_idle && !o->only_job_id && !c.runnable_seen && !s->jobs)
            break;
        usleep(TICK_MS * 1000);
    }
    stop(&w, st, out);
    return rc;
}

#define S3_ERR_NAME_PREFIX "RUN_E_"
S3_ERROR_FUNCS(run, RUN_ERRNO_MAP, "unknown error")
