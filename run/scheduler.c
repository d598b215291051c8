/*
 * scheduler.c — run_worker: runs the catalogue's jobs, several at once, highest priority
 * first, resumable, alone or as one worker of a fleet. This file is the control loop; the
 * other threads have files of their own.
 *
 * Threads of a worker process (they meet only at bounded queues and a few atomics):
 *   control (the caller's thread, this file)  every 200 ms: reads the catalogue, prepares New
 *            jobs (claimed: one worker prepares a job), leases shards of runnable jobs,
 *            renews its leases, applies other processes' requests (cancel, priority),
 *            decides which jobs are Active and which are Paused, lets go of jobs it has no
 *            shard of, and finishes jobs whose shards are all complete (claimed: one worker
 *            writes a job's report);
 *   feeder   (feeder.c) reads the leased shards of the Active jobs and hands units to the
 *            pool: always from the highest priority, round-robin among equal ones. The
 *            pool's queues are short (as many units as a lane has seats) and each takes the
 *            highest priority first, so a change of priority shows at the next units taken;
 *   pool     N lanes with curl multi handles (engine/pool.c);
 *   writer   (writer.c) formats each finished unit's report rows, counts, checks the failure
 *            threshold, and checkpoints each shard: rows to the work location first, then the
 *            checkpoint in the catalogue, fenced by the lease's token;
 *   metrics  (metrics.c) libmicrohttpd's thread, when --metrics-addr is given.
 *
 * Shards and leases (jobs.h "shards and their leases"): Preparing cuts a job into
 * key-disjoint shards and records them in the catalogue (with a shared catalogue, the spool
 * goes to the job's work location in S3 first). A worker leases a shard for the lease TTL
 * and renews it every third of it; its units stop sending requests once two thirds of the
 * TTL have passed since the last renewal that succeeded (the engine's deadline), so a worker
 * that was stopped, partitioned or starved past its lease sends nothing after the catalogue
 * let another worker take the shard; its checkpoints are then refused (the token is stale)
 * and it drops the shard. The worker that takes a shard over resumes it from its last
 * checkpoint, rechecking the destinations of every unit that may have run.
 *
 * Job states (../shared/aws-formats.md §4): New -> Preparing -> (Suspended) -> Ready ->
 * Active <-> Pausing -> Paused, -> Completing -> Complete; Cancelling -> Cancelled; Failing
 * -> Failed.
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
#define LEASE_RETRY_MS 1000      /* a job with no shard to lease is asked again after this */
#define FINISH_CHECK_MS 1000     /* ... and whether its shards are all complete */
#define MEMO_JOBS 64
#define THRESHOLD_REASON                                                                   \
    "More than 50% of the tasks that ran failed (checked once at least 1,000 tasks have run)"

static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    (void)sig;
    g_signalled = 1;
}

/* ---- control ----------------------------------------------------------------------------- */

static void save_row(run__sched *s, const jobs_row *r)
{
    char err[4400];
    int rc = jobs_store_save(s->st, r, err, sizeof err);
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

static void save(run__sched *s, run__job *jr)
{
    save_row(s, &jr->job.row);
}

/* The worker's side of the one setter (jobs_row_set_status). A transition the table refuses
   leaves the status as it is. The catalogue keeps the Active time (jobs_store_save). */
static void set_status(run__job *jr, jobs_status st)
{
    if (jr->job.row.status != st &&
        jobs_row_set_status(&jr->job.row, st, JOBS_BY_WORKER, NULL, 0) == 0)
        atomic_store(&jr->status_now, (int)st);
}

/* The spool's index: read locally, or fetched from the work location first (a worker of a
   fleet that did not prepare the job). 0, or -1 with msg. */
static int load_index(run__job *jr, char *msg, size_t cap)
{
    int rc = run__spool_index_load(jr->spool_dir, &jr->spool, msg, cap);
    if (rc != 1 || !jr->loc.ep)
        return rc == 0 ? 0 : -1;
    char path[4300], got[4300];
    if (s3_mkdir_p(jr->spool_dir, S3_MODE_PRIVATE_DIR) != 0 ||
        (size_t)snprintf(path, sizeof path, "%s/index.json", jr->spool_dir) >= sizeof path ||
        run__loc_fetch(&jr->loc, "spool/index.json", path, got, sizeof got, msg, cap) != 0)
        return -1;
    return run__spool_index_load(jr->spool_dir, &jr->spool, msg, cap) == 0 ? 0 : -1;
}

/* Takes a job into the run for its first leased shard: rules (not to finish it: with_rules
   0), spool index, shards, report options, work location. NULL: no memory. A job that
   cannot run anywhere comes back with its failure set (row status Failed); one that this
   worker cannot take now (its spool cannot be fetched, its work location not found from
   this worker's options) with attach_error set, the job left alone. */
static run__job *attach(run__sched *s, jobs_row *row, int with_rules)
{
    char err[1024];
    run__job *jr = calloc(1, sizeof *jr);
    if (!jr)
        return NULL;
    jr->feed_shard = (size_t)-1;
    jr->sched = s;
    eng_unit_builder_init(&jr->builder);
    if (jobs_job_load(&jr->job, row, s->state_root, s->ep->region, err, sizeof err) != 0) {
        jobs_job_fail(&jr->job, "InvalidJobDocument", err);
        return jr;
    }
    atomic_store(&jr->priority, jr->job.row.priority);
    atomic_store(&jr->succeeded, jr->job.row.succeeded);
    atomic_store(&jr->failed, jr->job.row.failed);
    jr->resumed_tasks = jr->job.row.succeeded + jr->job.row.failed;
    jr->run_started_ms = s3_mono_ms();
    if (with_rules && run__attach_rules(&jr->job, &jr->rules, s->eps, s->opts) != 0)
        return jr;
    if (run__loc_for_job(&jr->loc, &jr->job, s->shared, s->opts->work_location, s->ep, err,
                         sizeof err) != 0 ||
        s3_path_join(jr->spool_dir, sizeof jr->spool_dir, jr->job.dir, "spool") != 0 ||
        load_index(jr, err, sizeof err) != 0 ||
        !(jr->shards = calloc(jr->spool.n_shards ? jr->spool.n_shards : 1, sizeof *jr->shards))) {
        snprintf(jr->attach_error, sizeof jr->attach_error, "job %s: %s", jr->job.row.id,
                 jr->shards || err[0] ? err : "out of memory");
        return jr;
    }
    for (size_t i = 0; i < jr->spool.n_shards; i++) {
        run__shard *sh = &jr->shards[i];
        sh->job = jr;
        sh->info = &jr->spool.shards[i];
        sh->index = (uint32_t)i;
        s3_buf_init(&sh->rows[0], SIZE_MAX);
        s3_buf_init(&sh->rows[1], SIZE_MAX);
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
                            .private_files = !jr->job.report_is_local};
    }
    return jr;
}

static void release(run__job *jr)
{
    run__spool_close(jr->reader);
    eng_unit_destroy(jr->pending);
    eng_unit_builder_cleanup(&jr->builder);
    for (size_t i = 0; jr->shards && i < jr->spool.n_shards; i++) {
        run_ckpt_cleanup(&jr->shards[i].ckpt);
        run_ckpt_cleanup(&jr->shards[i].resume);
        s3_buf_cleanup(&jr->shards[i].rows[0]);
        s3_buf_cleanup(&jr->shards[i].rows[1]);
    }
    free(jr->shards);
    run__spool_index_cleanup(&jr->spool);
    repl_rules_cleanup(&jr->rules);
    jobs_job_cleanup(&jr->job);
    free(jr);
}

/* Sets a freshly leased shard up: its checkpoint (where it resumes), its spool file here.
   0, or -1 (the lease is given back). */
static int take_shard(run__sched *s, run__job *jr, const jobs_shard *ls)
{
    char msg[1024];
    run__shard *sh = &jr->shards[ls->index];
    run_ckpt_cleanup(&sh->resume);
    run_ckpt_cleanup(&sh->ckpt);
    sh->recheck_all = ls->uncertain;
    if (ls->ckpt && run_ckpt_from_json(ls->ckpt, &sh->resume) != 0) {
        fprintf(stderr, "batchrep: job %s shard %u: its checkpoint in the catalogue cannot be "
                        "read; resuming from the start, every unit not known done is "
                        "rechecked against its destinations\n", jr->job.row.id, ls->index);
        memset(&sh->resume, 0, sizeof sh->resume);
        sh->recheck_all = 1;
    }
    if (run_ckpt_copy(&sh->ckpt, &sh->resume) != 0)
        return -1;
    sh->ckpt.complete = 0;
    s3_buf_reset(&sh->rows[0]);
    s3_buf_reset(&sh->rows[1]);
    sh->rows_n[0] = sh->rows_n[1] = 0;
    sh->next_part = 0;
    sh->dirty = 0;
    sh->put_failures = 0;
    sh->token = ls->token;
    atomic_store(&sh->units_out, 0);
    if (jr->loc.ep) { /* a fleet's spool: this worker's copy of the shard */
        char path[4300], got[4300], rel[64];
        snprintf(rel, sizeof rel, "spool/%s", sh->info->file);
        if ((size_t)snprintf(path, sizeof path, "%s/%s", jr->spool_dir, sh->info->file) >=
                sizeof path ||
            (access(path, R_OK) != 0 &&
             run__loc_fetch(&jr->loc, rel, path, got, sizeof got, msg, sizeof msg) != 0)) {
            fprintf(stderr, "batchrep: job %s shard %u: %s\n", jr->job.row.id, ls->index, msg);
            return -1;
        }
    }
    int64_t now = s3_mono_ms();
    sh->renewed_ms = now;
    atomic_store(&sh->lease_until, now + s->opts->lease_ttl_ms * 2 / 3);
    if (ls->leased_before && ls->ckpt)
        fprintf(stderr, "batchrep: job %s shard %u: taken over from its last checkpoint (%llu "
                        "tasks done)\n", jr->job.row.id, ls->index,
                (unsigned long long)(sh->resume.succeeded + sh->resume.failed));
    pthread_mutex_lock(&s->mu);
    atomic_store(&sh->state, RUN__SHARD_LEASED);
    atomic_store(&jr->has_feed, 1);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->leases_taken, 1);
    return 0;
}

static run__job *attached(run__sched *s, const char *id)
{
    for (run__job *jr = s->jobs; jr; jr = jr->next)
        if (strcmp(jr->job.row.id, id) == 0)
            return jr;
    return NULL;
}

/* Gives up this worker's lease of every shard of the job it has not completed. */
static void release_leases(run__sched *s, run__job *jr)
{
    char err[512];
    for (size_t i = 0; i < jr->spool.n_shards; i++) {
        run__shard *sh = &jr->shards[i];
        int st = atomic_load(&sh->state);
        if (st == RUN__SHARD_IDLE || st == RUN__SHARD_DONE)
            continue;
        /* fenced: a lease another worker holds now is not touched */
        jobs_store_shard_release(s->st, jr->job.row.id, sh->index, sh->token, err, sizeof err);
        atomic_store(&sh->lease_until, 0);
        atomic_store(&sh->state, RUN__SHARD_IDLE);
    }
}

/* 1 when this worker's copy of the shard may take a new lease: nothing of an earlier lease
   of it is still here — no unit in flight (its units read the lease deadline being reset),
   the feeder not reading it, the writer not checkpointing the job. (The catalogue may give
   this worker back a shard it just lost: the one leased before goes first.) */
static int reusable(run__sched *s, run__job *jr, uint32_t index)
{
    run__shard *sh = &jr->shards[index];
    pthread_mutex_lock(&s->mu);
    int st = atomic_load(&sh->state);
    int ok = (st == RUN__SHARD_IDLE || st == RUN__SHARD_LOST) &&
             atomic_load(&sh->units_out) == 0 && !jr->feeding && !jr->ckpt_busy &&
             jr->feed_shard != index;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* Leases one more shard of the job (the row just read), attaching the job first. */
static void lease_one(run__sched *s, const jobs_row *r)
{
    char err[1024];
    jobs_shard ls;
    memset(&ls, 0, sizeof ls);
    int rc = jobs_store_shard_lease(s->st, r->id, s->opts->lease_ttl_ms, &ls, err, sizeof err);
    if (rc != 1) {
        if (rc < 0)
            fprintf(stderr, "batchrep: %s\n", err);
        return;
    }
    run__job *jr = attached(s, r->id);
    if (!jr) {
        jobs_row row;
        int got = jobs_store_get(s->st, r->id, &row, err, sizeof err) == 1;
        jr = got ? attach(s, &row, 1) : NULL;
        if (got)
            jobs_row_cleanup(&row); /* what attach did not take */
        if (!jr) {
            jobs_store_shard_release(s->st, ls.job_id, ls.index, ls.token, err, sizeof err);
            jobs_shard_cleanup(&ls);
            return;
        }
        if (jr->attach_error[0]) { /* this worker cannot take it now: another may */
            fprintf(stderr, "batchrep: %s; its shard is given back\n", jr->attach_error);
            jobs_store_shard_release(s->st, ls.job_id, ls.index, ls.token, err, sizeof err);
            jobs_shard_cleanup(&ls);
            release(jr);
            return;
        }
        if (jr->job.row.failure_code[0]) { /* it cannot run anywhere */
            set_status(jr, JOBS_STATUS_FAILING);
            save(s, jr);
            jobs_store_shard_release(s->st, ls.job_id, ls.index, ls.token, err, sizeof err);
            jobs_shard_cleanup(&ls);
            release(jr);
            return;
        }
        atomic_store(&jr->status_now, (int)jr->job.row.status);
        pthread_mutex_lock(&s->mu);
        jr->next = s->jobs;
        s->jobs = jr;
        pthread_mutex_unlock(&s->mu);
    }
    if (ls.index >= jr->spool.n_shards || !reusable(s, jr, ls.index) ||
        take_shard(s, jr, &ls) != 0)
        jobs_store_shard_release(s->st, ls.job_id, ls.index, ls.token, err, sizeof err);
    jobs_shard_cleanup(&ls);
}

/* Renews the leases this worker holds, every third of the TTL. A lease the catalogue says
   is gone stops its shard at once; one that cannot be renewed (the catalogue does not
   answer) stops at its deadline, and is given back then: its units may have stopped
   half-way, so the shard resumes from its checkpoint (here or elsewhere). */
static void renew(run__sched *s)
{
    char err[512];
    int64_t ttl = s->opts->lease_ttl_ms;
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
        for (size_t i = 0; i < jr->spool.n_shards; i++) {
            run__shard *sh = &jr->shards[i];
            int st = atomic_load(&sh->state);
            if (st != RUN__SHARD_LEASED && st != RUN__SHARD_OPEN && st != RUN__SHARD_FED)
                continue;
            int64_t now = s3_mono_ms();
            if (now >= atomic_load(&sh->lease_until)) {
                fprintf(stderr, "batchrep: job %s shard %u: the lease could not be renewed in "
                                "time; its units stopped, it resumes from its checkpoint\n",
                        jr->job.row.id, sh->index);
                atomic_store(&sh->state, RUN__SHARD_LOST);
                atomic_fetch_add(&s->leases_lost, 1);
                continue;
            }
            if (now - sh->renewed_ms < ttl / 3)
                continue;
            int rc = jobs_store_shard_renew(s->st, jr->job.row.id, sh->index, sh->token, ttl,
                                            err, sizeof err);
            if (rc == 1) {
                sh->renewed_ms = now;
                int64_t until = now + ttl * 2 / 3;
                /* never extend a lease the writer found lost meanwhile */
                int64_t cur = atomic_load(&sh->lease_until);
                while (cur != 0 && !atomic_compare_exchange_weak(&sh->lease_until, &cur, until))
                    ;
            } else if (rc == 0) {
                fprintf(stderr, "batchrep: job %s shard %u: the lease was taken over by another "
                                "worker\n", jr->job.row.id, sh->index);
                atomic_store(&sh->lease_until, 0);
                atomic_store(&sh->state, RUN__SHARD_LOST);
                atomic_fetch_add(&s->leases_lost, 1);
            }
        }
    }
}

typedef struct collect_ctx {
    run__job *jr;
    rpt_summary *sum;
    int failed;                   /* a shard's checkpoint or parts could not be used */
    char *msg;
    size_t cap;
} collect_ctx;

/* One shard's results files into the summary: those its completion recorded, or (a job
   that stopped) its parts joined now. */
static int collect_shard(const jobs_shard *ls, void *user)
{
    collect_ctx *c = user;
    run__job *jr = c->jr;
    run_ckpt ck;
    if (!ls->ckpt || ls->index >= jr->spool.n_shards)
        return 0; /* never ran: no rows */
    if (run_ckpt_from_json(ls->ckpt, &ck) != 0) {
        snprintf(c->msg, c->cap, "the checkpoint of shard %u cannot be read", ls->index);
        c->failed = 1;
        return 1;
    }
    if (!ls->complete && ck.n_parts > 0) {
        if (run__shard_join(&jr->ro, &jr->loc, jr->job.report_is_local ? NULL : jr->sched->ep,
                            jr->spool_dir, ls->index, RUN__FINISH_CHUNK(ls->index), &ck,
                            c->msg, c->cap) != 0) {
            run_ckpt_cleanup(&ck);
            c->failed = 1;
            return 1;
        }
        for (size_t i = 0; i < ck.n_parts; i++)
            run__loc_remove(&jr->loc, ck.parts[i].name);
    }
    for (int k = 0; k < ck.n_results; k++) {
        rpt_result_file *rf = &c->sum->files[c->sum->n_files];
        char path[4096];
        memset(rf, 0, sizeof *rf);
        if (rpt_results_file(&jr->ro, ck.results[k].chunk, ck.results[k].failed, rf->key,
                             sizeof rf->key, path, sizeof path, c->msg, c->cap) != 0) {
            c->failed = 1;
            break;
        }
        snprintf(rf->status, sizeof rf->status, "%s", ck.results[k].failed ? "failed"
                                                                            : "succeeded");
        memcpy(rf->md5_hex, ck.results[k].md5, sizeof rf->md5_hex);
        rf->rows = ck.results[k].rows;
        c->sum->n_files++;
    }
    run_ckpt_cleanup(&ck);
    return c->failed;
}

/* The report of the job: manifest.json over every shard's results files, written under the
   report root and, for a report bucket, uploaded. 0, or -1 with msg. */
static int write_report(run__sched *s, run__job *jr, char *msg, size_t cap)
{
    rpt_summary sum;
    memset(&sum, 0, sizeof sum);
    size_t n = jr->spool.n_shards ? jr->spool.n_shards : 1;
    if (!(sum.files = calloc(2 * n, sizeof *sum.files))) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    collect_ctx c = {.jr = jr, .sum = &sum, .msg = msg, .cap = cap};
    char err[512];
    int rc = jobs_store_shards_each(s->st, jr->job.row.id, collect_shard, &c, err, sizeof err);
    if (rc < 0)
        snprintf(msg, cap, "%s", err);
    if (rc >= 0 && !c.failed)
        rc = rpt_manifest_write_files(&jr->ro, &sum, msg, cap);
    else
        rc = -1;
    if (rc == 0 && !jr->job.report_is_local) {
        char up[1024];
        if (rpt_upload(s->ep, &jr->ro, &sum, up, sizeof up) != 0) {
            snprintf(msg, cap, "The job report could not be written to your report bucket: %s",
                     up);
            rc = -1;
        }
    }
    rpt_summary_cleanup(&sum);
    return rc;
}

/* jobs_store_save from the side thread: the control loop's disk-full bookkeeping is its own;
   a failure here is said, and the finish is tried again later (the status says where). */
static void side_save(run__job *jr)
{
    char err[1024];
    if (jobs_store_save(jr->sched->st, &jr->job.row, err, sizeof err) != 0)
        fprintf(stderr, "batchrep: %s\n", err);
}

/* Ends a job whose shards are all complete, or that stopped (Cancelling, Failing) with no
   live lease: its report, then its terminal status. The caller claimed it. */
static void finish_job(run__sched *s, jobs_row *row)
{
    char msg[4400];
    run__job *jr = attach(s, row, 0);
    jobs_row_cleanup(row);
    if (!jr)
        return;
    jobs_job *job = &jr->job;
    if (jr->attach_error[0]) { /* tried again later, by this worker or another */
        fprintf(stderr, "batchrep: %s; the job is finished later\n", jr->attach_error);
        release(jr);
        return;
    }
    jobs_status final = JOBS_STATUS_COMPLETE, transit = JOBS_STATUS_COMPLETING;
    if (job->row.status == JOBS_STATUS_CANCELLING) {
        final = JOBS_STATUS_CANCELLED;
        transit = JOBS_STATUS_CANCELLING;
    } else if (job->row.failure_code[0] || job->row.status == JOBS_STATUS_FAILING) {
        final = JOBS_STATUS_FAILED;
        transit = JOBS_STATUS_FAILING;
    }
    set_status(jr, transit);
    side_save(jr);
    if (job->report_enabled && jr->shards && write_report(s, jr, msg, sizeof msg) != 0) {
        jobs_job_set_failure(job, "ReportNotWritable", msg);
        final = JOBS_STATUS_FAILED;
    }
    set_status(jr, final);
    side_save(jr);
    atomic_fetch_add(&s->jobs_finished, 1);
    if (jr->loc.ep) { /* the fleet's copy of the spool is no longer needed */
        char rel[64];
        for (size_t i = 0; i < jr->spool.n_shards; i++) {
            snprintf(rel, sizeof rel, "spool/%s", jr->spool.shards[i].file);
            run__loc_remove(&jr->loc, rel);
        }
        run__loc_remove(&jr->loc, "spool/index.json");
    }
    char path[4200];
    json_t *d = jobs_job_describe(job);
    char *text = json_dumps(d, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(d);
    if (!s->shared && text &&
        (size_t)snprintf(path, sizeof path, "%s/describe.json", job->dir) < sizeof path &&
        s3_write_file_atomic(path, text, strlen(text), S3_MODE_PRIVATE_FILE, msg,
                             sizeof msg) != S3_E_OK)
        fprintf(stderr, "batchrep: job %s: %s\n", job->row.id, msg);
    free(text);
    release(jr);
}

/* Every status but the terminal ones: what a worker may have to prepare, run or finish. */
static const jobs_status live_statuses[] = {
    JOBS_STATUS_NEW,     JOBS_STATUS_PREPARING,  JOBS_STATUS_SUSPENDED, JOBS_STATUS_READY,
    JOBS_STATUS_ACTIVE,  JOBS_STATUS_PAUSING,    JOBS_STATUS_PAUSED,    JOBS_STATUS_COMPLETING,
    JOBS_STATUS_FAILING, JOBS_STATUS_CANCELLING,
};

/* Records the prepared job's shards in the catalogue; with a shared catalogue, its spool
   goes to the work location first. 0, or -1 with the job failed. */
static int publish_spool(run__sched *s, jobs_job *job)
{
    char dir[4200], msg[1024], path[4400], rel[64];
    run__spool_index idx;
    run__loc loc;
    if (s3_path_join(dir, sizeof dir, job->dir, "spool") != 0 ||
        run__spool_index_load(dir, &idx, msg, sizeof msg) != 0) {
        jobs_job_fail(job, "InternalError", "the job's spool cannot be read after Preparing");
        return -1;
    }
    int rc = 0;
    if (s->shared) {
        rc = run__loc_for_job(&loc, job, 1, s->opts->work_location, s->ep, msg, sizeof msg);
        for (size_t i = 0; rc == 0 && i <= idx.n_shards; i++) {
            const char *file = i < idx.n_shards ? idx.shards[i].file : "index.json";
            snprintf(rel, sizeof rel, "spool/%s", file);
            rc = (size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path ||
                 run__loc_put_file(&loc, rel, path, msg, sizeof msg) != 0;
        }
        if (rc)
            jobs_job_fail(job, "InternalError", msg);
    }
    jobs_shard *shards = rc ? NULL : calloc(idx.n_shards ? idx.n_shards : 1, sizeof *shards);
    if (!rc && !shards) {
        jobs_job_fail(job, "InternalError", "out of memory");
        rc = -1;
    }
    for (size_t i = 0; !rc && i < idx.n_shards; i++) {
        shards[i].index = (uint32_t)i;
        shards[i].first_seq = idx.shards[i].first_seq;
        shards[i].n_rows = idx.shards[i].n_rows;
    }
    if (!rc && jobs_store_shards_put(s->st, job->row.id, shards, idx.n_shards, msg,
                                     sizeof msg) != 0) {
        fprintf(stderr, "batchrep: job %s: %s\n", job->row.id, msg);
        rc = -2; /* the catalogue: Preparing runs again (claim expiry) */
    }
    free(shards);
    run__spool_index_cleanup(&idx);
    return rc;
}

/* Runs Preparing for a New job this process claimed. */
static void prepare(run__sched *s, jobs_row *row)
{
    char err[1024];
    jobs_job job;
    if (jobs_job_load(&job, row, s->state_root, s->ep->region, err, sizeof err) != 0) {
        jobs_job_fail(&job, "InvalidJobDocument", err);
    } else {
        jobs_row_set_status(&job.row, JOBS_STATUS_PREPARING, JOBS_BY_WORKER, NULL, 0);
        jobs_store_save(s->st, &job.row, err, sizeof err);
        int rc = run__prepare(&job, s->ep, s->opts);
        if (rc == 0)
            rc = publish_spool(s, &job);
        if (rc == -2) {
            jobs_job_cleanup(&job);
            return;
        }
        if (rc == 0) {
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
    jobs_store_save(s->st, &job.row, err, sizeof err);
    jobs_job_cleanup(&job);
}

static void *side_main(void *arg)
{
    run__sched *s = arg;
    if (s->side_finish)
        finish_job(s, &s->side_row);
    else
        prepare(s, &s->side_row);
    atomic_store(&s->side_done, 1);
    return NULL;
}

/* Runs a side task (Preparing, or finishing a job) for the job this worker just claimed, on
   the side thread; row is taken. Without a thread, here. */
static void side_start(run__sched *s, jobs_row *row, int finish)
{
    char err[512];
    snprintf(s->side_id, sizeof s->side_id, "%s", row->id);
    s->side_row = *row;
    memset(row, 0, sizeof *row);
    s->side_finish = finish;
    atomic_store(&s->side_done, 0);
    if (pthread_create(&s->side_thread, NULL, side_main, s) == 0) {
        s->side_running = 1;
        return;
    }
    side_main(s);
    jobs_row_cleanup(&s->side_row);
    jobs_store_unclaim(s->st, s->side_id, err, sizeof err);
}

/* Keeps the claim of the side task's job alive; once its thread returned, joins it and
   gives the claim up. wait: join whatever it is doing (the worker stops). */
static void side_poll(run__sched *s, int wait)
{
    char err[512];
    if (!s->side_running)
        return;
    if (!wait && !atomic_load(&s->side_done)) {
        jobs_store_claim(s->st, s->side_id, err, sizeof err); /* the heartbeat */
        return;
    }
    pthread_join(s->side_thread, NULL);
    s->side_running = 0;
    jobs_store_unclaim(s->st, s->side_id, err, sizeof err);
    jobs_row_cleanup(&s->side_row);
}

/* When this worker last asked the catalogue for a job's shards, and whether they are all
   complete: asked again only after LEASE_RETRY_MS / FINISH_CHECK_MS. */
typedef struct memo {
    char id[40];
    int64_t next_lease_ms, next_finish_ms;
    int reaped;                   /* leases of dead processes of this host ended once */
} memo;

typedef struct scan_ctx {
    run__sched *s;
    memo *memos;
    int runnable_seen;            /* a job someone could still run exists */
    int only_done;                /* only_job_id reached a terminal state (or Suspended) */
    int draining;
} scan_ctx;

static memo *memo_of(memo *m, const char *id)
{
    size_t free_slot = MEMO_JOBS, oldest = 0;
    for (size_t i = 0; i < MEMO_JOBS; i++) {
        if (strcmp(m[i].id, id) == 0)
            return &m[i];
        if (!m[i].id[0] && free_slot == MEMO_JOBS)
            free_slot = i;
        if (m[i].next_lease_ms < m[oldest].next_lease_ms)
            oldest = i;
    }
    size_t i = free_slot < MEMO_JOBS ? free_slot : oldest;
    memset(&m[i], 0, sizeof m[i]);
    snprintf(m[i].id, sizeof m[i].id, "%s", id);
    return &m[i];
}

/* 1 when the job has a shard leased here that the feeder has not finished reading. */
static int has_unfed(const run__job *jr)
{
    for (size_t i = 0; i < jr->spool.n_shards; i++) {
        int st = atomic_load(&jr->shards[i].state);
        if (st == RUN__SHARD_LEASED || st == RUN__SHARD_OPEN)
            return 1;
    }
    return 0;
}

/* A job past Preparing whose shards the catalogue does not hold (a SQLite catalogue rebuilt
   from the job folders, recover.c; or one from before shards were kept there): its shards
   are recorded again from its spool, each "uncertain" — progress unknown, so every unit
   not known done rechecks its destinations and nothing is written twice. A job without a
   spool cannot run. The caller claimed it. */
static void restore_shards(run__sched *s, jobs_row *row)
{
    char err[1024], dir[4200];
    jobs_job job;
    run__spool_index idx;
    int rc = jobs_job_load(&job, row, s->state_root, s->ep->region, err, sizeof err);
    if (rc == 0 && (s3_path_join(dir, sizeof dir, job.dir, "spool") != 0 ||
                    run__spool_index_load(dir, &idx, err, sizeof err) != 0)) {
        jobs_job_fail(&job, "InternalError",
                      "the job's shards are not in the catalogue and it has no spool here "
                      "(prepared elsewhere, or its state was removed): create the job again");
        save_row(s, &job.row);
        jobs_job_cleanup(&job);
        return;
    }
    if (rc == 0) {
        jobs_shard *shards = calloc(idx.n_shards ? idx.n_shards : 1, sizeof *shards);
        for (size_t i = 0; shards && i < idx.n_shards; i++) {
            shards[i].index = (uint32_t)i;
            shards[i].first_seq = idx.shards[i].first_seq;
            shards[i].n_rows = idx.shards[i].n_rows;
            shards[i].uncertain = 1;
        }
        if (shards && jobs_store_shards_put(s->st, job.row.id, shards, idx.n_shards, err,
                                            sizeof err) == 0)
            fprintf(stderr, "batchrep: job %s: its progress is not in the catalogue; its %zu "
                            "shards are recorded again from its spool, every unit not known "
                            "done is rechecked against its destinations\n",
                    job.row.id, idx.n_shards);
        free(shards);
        run__spool_index_cleanup(&idx);
    }
    jobs_job_cleanup(&job);
}

/* Finishes the job when nothing of it is left to run anywhere. */
static void maybe_finish(scan_ctx *c, const jobs_row *r)
{
    run__sched *s = c->s;
    char err[1024];
    jobs_shard_counts n;
    if (attached(s, r->id) || jobs_store_shards_count(s->st, r->id, &n, err, sizeof err) != 0)
        return;
    if (n.n == 0 && r->total > 0 && r->status != JOBS_STATUS_CANCELLING &&
        r->status != JOBS_STATUS_FAILING) {
        jobs_row row;
        if (jobs_store_claim(s->st, r->id, err, sizeof err) == 1 &&
            jobs_store_get(s->st, r->id, &row, err, sizeof err) == 1) {
            restore_shards(s, &row);
            jobs_row_cleanup(&row);
        }
        jobs_store_unclaim(s->st, r->id, err, sizeof err);
        return;
    }
    int stopping = r->status == JOBS_STATUS_CANCELLING || r->status == JOBS_STATUS_FAILING;
    int all_done = n.complete == n.n && (n.n > 0 || r->total == 0); /* (an empty manifest) */
    if (!(stopping ? n.leased == 0 : all_done) &&
        !(r->status == JOBS_STATUS_COMPLETING && n.leased == 0))
        return;
    if (s->side_running || jobs_store_claim(s->st, r->id, err, sizeof err) != 1)
        return;
    jobs_row row;
    if (jobs_store_get(s->st, r->id, &row, err, sizeof err) == 1) {
        if (!jobs_status_terminal(row.status)) {
            side_start(s, &row, 1); /* the claim is the side task's now */
            return;
        }
        jobs_row_cleanup(&row);
    }
    jobs_store_unclaim(s->st, r->id, err, sizeof err);
}

static int scan_one(const jobs_row *r, void *user)
{
    scan_ctx *c = user;
    run__sched *s = c->s;
    char err[1024];
    const char *only = s->opts->only_job_id;
    if (only && strcmp(r->id, only) != 0)
        return 0;
    if (jobs_status_terminal(r->status) || r->status == JOBS_STATUS_SUSPENDED) {
        if (only)
            c->only_done = 1; /* `run` of a job waiting for confirmation returns too */
        return 0;
    }
    c->runnable_seen = 1;
    if (r->status == JOBS_STATUS_NEW || r->status == JOBS_STATUS_PREPARING) {
        if (c->draining || s->side_running ||
            jobs_store_claim(s->st, r->id, err, sizeof err) != 1)
            return 0; /* another live worker prepares it (or this one, another job) */
        jobs_row row;
        int got = jobs_store_get(s->st, r->id, &row, err, sizeof err);
        if (got == 1 && (row.status == JOBS_STATUS_NEW || row.status == JOBS_STATUS_PREPARING)) {
            side_start(s, &row, 0); /* the claim is the side task's now */
            return 0;
        }
        if (got == 1)
            jobs_row_cleanup(&row);
        jobs_store_unclaim(s->st, r->id, err, sizeof err);
        return 0;
    }
    memo *m = memo_of(c->memos, r->id);
    int64_t now = s3_mono_ms();
    int leasable = r->status == JOBS_STATUS_READY || r->status == JOBS_STATUS_ACTIVE ||
                   r->status == JOBS_STATUS_PAUSING || r->status == JOBS_STATUS_PAUSED;
    run__job *jr = attached(s, r->id);
    if (leasable && !m->reaped) {
        m->reaped = 1;
        int n = jobs_store_reap(s->st, r->id, err, sizeof err);
        if (n > 0)
            fprintf(stderr, "batchrep: job %s: %d shard lease(s) of a process of this machine "
                            "that is gone ended; taken over from their checkpoints\n",
                    r->id, n);
    }
    if (leasable && !c->draining && !(jr && (has_unfed(jr) || atomic_load(&jr->stop))) &&
        now >= m->next_lease_ms) {
        uint64_t before = atomic_load(&s->leases_taken);
        lease_one(s, r);
        if (atomic_load(&s->leases_taken) == before)
            m->next_lease_ms = now + LEASE_RETRY_MS;
    }
    if (!attached(s, r->id) && now >= m->next_finish_ms) {
        m->next_finish_ms = now + FINISH_CHECK_MS;
        maybe_finish(c, r);
    }
    return 0;
}

/* Applies the catalogue's view (cancel, failure, priority) and decides Active / Paused. */
static void steer(run__sched *s)
{
    char err[512];
    int top = -1;
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
        jobs_row row;
        if (jobs_store_get(s->st, jr->job.row.id, &row, err, sizeof err) == 1) {
            atomic_store(&jr->priority, row.priority);
            jr->job.row.priority = row.priority;
            if (row.status == JOBS_STATUS_CANCELLING || row.status == JOBS_STATUS_CANCELLED ||
                row.status == JOBS_STATUS_FAILING || row.status == JOBS_STATUS_FAILED) {
                atomic_store(&jr->stop, 1);
                set_status(jr, row.status == JOBS_STATUS_FAILING || row.status == JOBS_STATUS_FAILED
                                   ? JOBS_STATUS_FAILING : JOBS_STATUS_CANCELLING);
                snprintf(jr->job.row.status_reason, sizeof jr->job.row.status_reason, "%s",
                         row.status_reason);
            }
            jobs_row_cleanup(&row);
        }
        /* this worker's own reasons to stop the job everywhere */
        const char *code = atomic_load(&jr->io_error)        ? "ReportNotWritable"
                           : atomic_load(&jr->plan_failed)   ? "InternalError"
                           : atomic_load(&jr->threshold_hit) ? "TaskFailureThresholdExceeded"
                                                             : NULL;
        if (code && jr->job.row.status != JOBS_STATUS_FAILING &&
            jr->job.row.status != JOBS_STATUS_CANCELLING) {
            jobs_job_set_failure(&jr->job, code,
                                 atomic_load(&jr->io_error)      ? jr->io_error_msg
                                 : atomic_load(&jr->plan_failed) ? jr->plan_error
                                                                 : THRESHOLD_REASON);
            atomic_store(&jr->stop, 1);
            set_status(jr, JOBS_STATUS_FAILING);
            save(s, jr);
        }
        if (atomic_load(&jr->has_feed) && !atomic_load(&jr->stop) &&
            atomic_load(&jr->priority) > top)
            top = atomic_load(&jr->priority);
    }
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
        jobs_status cur = jr->job.row.status;
        if (cur == JOBS_STATUS_CANCELLING || cur == JOBS_STATUS_FAILING ||
            cur == JOBS_STATUS_FAILED)
            continue;
        int planning = atomic_load(&jr->has_feed) && !atomic_load(&jr->stop);
        int run = !planning || atomic_load(&jr->priority) >= top;
        atomic_store(&jr->runnable, run);
        jobs_status was = cur;
        if (run && planning) {
            set_status(jr, JOBS_STATUS_ACTIVE);
        } else if (!run && (cur == JOBS_STATUS_ACTIVE || cur == JOBS_STATUS_PAUSING)) {
            set_status(jr, atomic_load(&jr->units_out) > 0 ? JOBS_STATUS_PAUSING
                                                           : JOBS_STATUS_PAUSED);
        }
        if (jr->job.row.status != was)
            save(s, jr);
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
    if (o->lease_ttl_ms < 0 || o->checkpoint_interval_ms < 0) {
        snprintf(err, err_len, "options: the lease TTL and the checkpoint interval must not be "
                               "negative");
        return -RUN_E_INVALID_OPTIONS;
    }
    if (!o->lease_ttl_ms)
        o->lease_ttl_ms = 30000;
    if (!o->checkpoint_interval_ms)
        o->checkpoint_interval_ms = 5000;
    if (o->work_location && run__loc_check_url(o->work_location, err, err_len) != 0)
        return -RUN_E_INVALID_OPTIONS;
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

/* Lets go of a job this worker holds no work of: a last checkpoint of each shard (a shard
   fed to its end is complete then), the leases it still holds given back. Control thread,
   once the writer no longer sees the job. */
static void detach(run__sched *s, run__job *jr)
{
    for (size_t i = 0; i < jr->spool.n_shards; i++)
        run__shard_settle(&jr->shards[i]);
    release_leases(s, jr);
    save(s, jr);
    release(jr);
}

/* Stops the threads that started and frees what start() built; the jobs still attached
   (stopped by a signal) keep their status, their shards a fresh checkpoint, their leases
   given back. */
static void stop(worker *w, run_result *out)
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
            detach(s, jr);
        }
        if (out) {
            out->retries = atomic_load(&s->counters.retries);
            out->throttle_events = atomic_load(&s->counters.throttle_events);
            out->jobs_finished = atomic_load(&s->jobs_finished);
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
    s->st = st;
    s->shared = jobs_store_shared(st);
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
        stop(w, NULL);
    return rc;
}

/* Lets go of the jobs this worker has nothing of left: no shard leased and unfinished, no
   unit in flight, the feeder and the writer not using them. */
static void detach_idle(worker *w)
{
    run__sched *s = w->s;
    for (run__job **pp = &s->jobs; *pp;) {
        run__job *jr = *pp;
        int busy = 0;
        for (size_t i = 0; i < jr->spool.n_shards && !busy; i++) {
            int st = atomic_load(&jr->shards[i].state);
            busy = st == RUN__SHARD_LEASED || st == RUN__SHARD_OPEN ||
                   (st == RUN__SHARD_FED && !atomic_load(&jr->stop));
        }
        if (atomic_load(&jr->stop))
            busy = 0; /* stopped: its shards are given back once nothing is in flight */
        pthread_mutex_lock(&s->mu);
        int idle = !busy && atomic_load(&jr->units_out) == 0 && !jr->feeding &&
                   !jr->ckpt_busy && !atomic_load(&s->files_full_since_ms) &&
                   !s->store_full_since_ms;
        if (idle)
            *pp = jr->next; /* out of the feeder's and writer's sight */
        pthread_mutex_unlock(&s->mu);
        if (idle) {
            detach(s, jr);
            continue;
        }
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

/* The live jobs of one scan, highest priority first (oldest first among equals): the order
   in which this worker asks for their shards. */
typedef struct live_set {
    jobs_row *rows;
    size_t n, cap;
} live_set;

static int collect_live(const jobs_row *r, void *user)
{
    live_set *l = user;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        jobs_row *n = realloc(l->rows, nc * sizeof *n);
        if (!n)
            return 1;
        l->rows = n;
        l->cap = nc;
    }
    jobs_row *c = &l->rows[l->n++];
    *c = *r;
    c->doc = c->rules = c->generated_manifest = NULL; /* owned by the caller of the callback */
    return 0;
}

static int by_priority(const void *a, const void *b)
{
    const jobs_row *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms;
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
    memo *memos = calloc(MEMO_JOBS, sizeof *memos);
    live_set live = {0};
    int64_t last_progress = 0;
    if (!memos) {
        stop(&w, out);
        snprintf(err, err_len, "out of memory");
        return -RUN_E_NOMEM;
    }
    for (;;) {
        scan_ctx c = {.s = s, .memos = memos, .draining = g_signalled != 0};
        live.n = 0;
        if (o->only_job_id) {
            jobs_row row;
            if (jobs_store_get(st, o->only_job_id, &row, err, err_len) == 1) {
                collect_live(&row, &live);
                jobs_row_cleanup(&row);
            }
        } else {
            jobs_store_each(st, live_statuses, sizeof live_statuses / sizeof *live_statuses,
                            collect_live, &live, err, err_len);
        }
        qsort(live.rows, live.n, sizeof *live.rows, by_priority);
        for (size_t i = 0; i < live.n; i++)
            scan_one(&live.rows[i], &c);
        steer(s);
        renew(s);
        side_poll(s, 0);
        detach_idle(&w);
        int64_t now = s3_mono_ms();
        if (o->progress && now - last_progress >= 500 && s->jobs) {
            print_progress(s, 0);
            last_progress = now;
        }
        if (g_signalled && drained(s) && !s->side_running)
            break;
        if (disk_full_too_long(s, err, err_len)) {
            rc = -RUN_E_DISK_FULL;
            side_poll(s, 1);
            break; /* no drain: the writer cannot write what would land */
        }
        if (o->only_job_id && c.only_done && !s->jobs && !s->side_running)
            break;
        if (o->until_idle && !o->only_job_id && !c.runnable_seen && !s->jobs &&
            !s->side_running)
            break;
        usleep(TICK_MS * 1000);
    }
    if (o->progress && s->jobs)
        print_progress(s, 1);
    side_poll(s, 1);
    stop(&w, out);
    free(live.rows);
    free(memos);
    return rc;
}

#define S3_ERR_NAME_PREFIX "RUN_E_"
S3_ERROR_FUNCS(run, RUN_ERRNO_MAP, "unknown error")
