/*
 * writer.c — the report writer thread: writes each finished unit's report rows to its shard's
 * results files, counts them, checks the failure threshold (aws-formats.md §4.2: at least
 * 1,000 tasks and more than half failed), and every second syncs the files and writes the
 * shard's checkpoint (checkpoint.c): rows durable first, then the checkpoint that counts
 * them. A shard whose units are all handed out and written is settled once more and closed:
 * its checkpoint says complete, its results files are final.
 *
 * A full disk (ENOSPC, EDQUOT) is not a job failure: the rows stay buffered, the checkpoint
 * keeps its previous version, and the writer pauses — it stops taking finished units, so
 * the pool stops too — and retries every second. Space comes back: it carries on where it
 * stopped. The control loop stops the worker if it does not (scheduler.c).
 */
#include "run/run_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CKPT_INTERVAL_MS 1000
#define DISK_FULL_RETRY_MS 1000
#define FAIL_THRESHOLD_MIN_TASKS 1000

static void io_failed(run__job *jr, const char *fmt, const char *what)
{
    if (!atomic_exchange(&jr->io_error, 1))
        snprintf(jr->io_error_msg, sizeof jr->io_error_msg, fmt, what);
    atomic_store(&jr->stop, 1);
}

static void write_unit(run__shard *sh, eng_unit *u)
{
    run__job *jr = sh->job;
    int all_ran = 1;
    s3_slice bucket = eng_unit_bucket(u);
    for (size_t i = 0; i < eng_unit_n_tasks(u); i++) {
        const eng_task *t = eng_unit_task(u, i);
        if (t->not_run) {
            all_ran = 0;
            continue;
        }
        if (sh->rpt && !atomic_load(&jr->io_error)) {
            rpt_row row = {.bucket = bucket, .key = t->key_raw, .version_id = t->version_id,
                           .succeeded = t->succeeded, .http_status = t->http_status,
                           .error_code = t->error_code, .message = t->message};
            int rc = rpt_writer_add(sh->rpt, &row);
            if (rc == -RPT_E_DISK_FULL)
                run__disk_full(jr->sched, "cannot write the results files: no space left on "
                                          "the device (the rows are kept)");
            else if (rc != 0)
                io_failed(jr, "cannot write the results files of shard %s", sh->info->file);
        }
        atomic_fetch_add(t->succeeded ? &jr->succeeded : &jr->failed, 1);
        if (t->succeeded && !t->is_delete_marker && t->size > 0)
            atomic_fetch_add(&jr->bytes, (uint64_t)t->size);
        (t->succeeded ? sh->ckpt.succeeded++ : sh->ckpt.failed++);
    }
    atomic_fetch_add(&jr->restored, eng_unit_n_restored(u));
    if (all_ran) {
        uint64_t first = eng_unit_first_seq(u);
        run_ckpt_add(&sh->ckpt, first, first + eng_unit_n_tasks(u));
    }
    sh->dirty = 1;
    uint64_t ok = atomic_load(&jr->succeeded), bad = atomic_load(&jr->failed);
    if (ok + bad >= FAIL_THRESHOLD_MIN_TASKS && bad * 2 > ok + bad &&
        !atomic_load(&jr->threshold_hit)) {
        atomic_store(&jr->threshold_hit, 1);
        atomic_store(&jr->stop, 1);
    }
}

void run__disk_full(run__sched *s, const char *msg)
{
    int64_t zero = 0;
    if (atomic_compare_exchange_strong(&s->files_full_since_ms, &zero, s3_mono_ms())) {
        pthread_mutex_lock(&s->mu);
        snprintf(s->disk_full_msg, sizeof s->disk_full_msg, "%s", msg);
        pthread_mutex_unlock(&s->mu);
        fprintf(stderr, "batchrep: %s; waiting for space\n", msg);
    }
}

/* Saves the shard's checkpoint (after its rows are durable). 0; -2 the disk is full (nothing
   lost: try again later); -1 a failure that stops the job (io_error). */
static int save(run__shard *sh)
{
    run__job *jr = sh->job;
    char msg[4400];
    if (sh->rpt) {
        int rc = rpt_writer_sync(sh->rpt, &sh->ckpt.succeeded_bytes, &sh->ckpt.failed_bytes);
        if (rc == -RPT_E_DISK_FULL) {
            snprintf(msg, sizeof msg, "cannot write the results files of %s shard %s: %s",
                     jr->job.row.id, sh->info->file, strerror(rpt_writer_errno(sh->rpt)));
            run__disk_full(jr->sched, msg);
            return -2;
        }
        if (rc != 0) {
            io_failed(jr, "cannot write the results files of shard %s", sh->info->file);
            return -1;
        }
    }
    if (run_ckpt_save(sh->ckpt_path, &sh->ckpt) != 0) {
        if (s3_errno_disk_full(errno)) {
            snprintf(msg, sizeof msg, "cannot write %s: %s", sh->ckpt_path, strerror(errno));
            run__disk_full(jr->sched, msg);
            return -2;
        }
        io_failed(jr, "cannot write the checkpoint %s", sh->ckpt_path);
        return -1;
    }
    sh->dirty = 0;
    return 0;
}

int run__shard_open(run__shard *sh)
{
    run__job *jr = sh->job;
    char msg[512];
    if (jr->job.report_enabled && !sh->rpt) { /* open already when a full disk stopped us */
        rpt_opts o = jr->ro;
        o.chunk = sh->index;
        o.resume = sh->resume_files;
        o.resume_succeeded_bytes = sh->ckpt.succeeded_bytes;
        o.resume_failed_bytes = sh->ckpt.failed_bytes;
        if (!(sh->rpt = rpt_writer_open(&o, msg, sizeof msg))) {
            io_failed(jr, "%s", msg);
            return -1;
        }
    }
    /* the first window: RUN__PLAN_WINDOW_ROWS past where the shard resumes; a shard whose
       progress is uncertain keeps the whole shard under the limit, so that a resume after
       another stop still rechecks every unit not known done */
    uint64_t end = sh->info->first_seq + sh->info->n_rows;
    if (sh->ckpt.low < sh->info->first_seq)
        sh->ckpt.low = sh->info->first_seq;
    uint64_t limit = sh->recheck_all ? end : sh->ckpt.low + RUN__PLAN_WINDOW_ROWS;
    if (sh->resume.plan_limit > limit)
        limit = sh->resume.plan_limit;
    sh->ckpt.plan_limit = limit;
    int rc = save(sh);
    if (rc != 0)
        return rc;
    atomic_store(&sh->plan_limit, limit);
    atomic_store(&sh->state, RUN__SHARD_OPEN);
    return 0;
}

int run__shard_settle(run__shard *sh)
{
    run__job *jr = sh->job;
    int state = atomic_load(&sh->state);
    if ((state != RUN__SHARD_OPEN && state != RUN__SHARD_FED) || atomic_load(&jr->io_error))
        return 0;
    uint64_t limit = atomic_load(&jr->planned_seq) + RUN__PLAN_WINDOW_ROWS;
    if (limit < sh->ckpt.plan_limit)
        limit = sh->ckpt.plan_limit;
    sh->ckpt.plan_limit = limit;
    uint64_t end = sh->info->first_seq + sh->info->n_rows;
    int complete = state == RUN__SHARD_FED && atomic_load(&sh->units_out) == 0 &&
                   run_ckpt_done(&sh->ckpt, sh->info->first_seq, end);
    sh->ckpt.complete = complete;
    int rc = save(sh);
    if (rc != 0) {
        sh->ckpt.complete = 0;
        return rc;
    }
    atomic_store(&sh->plan_limit, limit);
    if (!complete)
        return 0;
    char msg[512];
    rpt_writer *w = sh->rpt;
    sh->rpt = NULL;
    if (w && rpt_writer_close(w, msg, sizeof msg) != 0) {
        io_failed(jr, "%s", msg);
        return -1;
    }
    atomic_store(&sh->state, RUN__SHARD_DONE);
    return 0;
}

/* Paused on a full disk: every dirty shard saved again; 0 once all could be. */
static int retry_saves(run__sched *s)
{
    int full = 0;
    pthread_mutex_lock(&s->mu);
    run__job *jobs = s->jobs;
    pthread_mutex_unlock(&s->mu);
    /* the list only changes at its head (attach) or by the control loop removing a job,
       which waits for ckpt_busy; mark each job busy while its shards are saved */
    for (run__job *jr = jobs; jr; jr = jr->next) {
        pthread_mutex_lock(&s->mu);
        jr->ckpt_busy = 1;
        pthread_mutex_unlock(&s->mu);
        for (size_t i = 0; i < jr->spool.n_shards; i++) {
            run__shard *sh = &jr->shards[i];
            int st = atomic_load(&sh->state);
            if ((st == RUN__SHARD_OPEN || st == RUN__SHARD_FED) && run__shard_settle(sh) == -2)
                full = 1;
        }
        pthread_mutex_lock(&s->mu);
        jr->ckpt_busy = 0;
        pthread_mutex_unlock(&s->mu);
    }
    return full ? -1 : 0;
}

/* Drops a finished unit without writing it: the worker is stopping on a full disk; its tasks
   are not in any checkpoint, so they run again (rechecked) when the job resumes. */
static void drop_unit(eng_unit *u)
{
    run__shard *sh = eng_unit_job(u);
    eng_unit_destroy(u);
    atomic_fetch_sub(&sh->units_out, 1);
    atomic_fetch_sub(&sh->job->units_out, 1);
}

/* Checkpoints each job that needs one: every second when rows were written, at once when its
   feeder waits for the window. The fdatasync and rename run without mu (the feeder and the
   control loop take it every few ms); ckpt_busy keeps the control loop from finishing a job
   while its checkpoint is being written. */
static void checkpoint_due(run__sched *s, int interval_passed, uint64_t round)
{
    for (;;) {
        run__job *jr = NULL;
        pthread_mutex_lock(&s->mu);
        for (run__job *j = s->jobs; j && !jr; j = j->next) {
            int starving = atomic_load(&j->waiting_limit);
            if (j->ckpt_round != round && (interval_passed || starving))
                jr = j;
        }
        if (jr) {
            jr->ckpt_round = round;
            jr->ckpt_busy = 1;
        }
        pthread_mutex_unlock(&s->mu);
        if (!jr)
            return;
        for (size_t i = 0; i < jr->spool.n_shards; i++) {
            run__shard *sh = &jr->shards[i];
            int state = atomic_load(&sh->state);
            int fed_out = state == RUN__SHARD_FED && atomic_load(&sh->units_out) == 0;
            if ((state == RUN__SHARD_OPEN || state == RUN__SHARD_FED) &&
                (sh->dirty || fed_out ||
                 (state == RUN__SHARD_OPEN && atomic_load(&jr->waiting_limit))))
                run__shard_settle(sh);
        }
        pthread_mutex_lock(&s->mu);
        jr->ckpt_busy = 0;
        pthread_mutex_unlock(&s->mu);
    }
}

void *run__writer_main(void *arg)
{
    run__sched *s = arg;
    int64_t last = s3_mono_ms();
    uint64_t round = 0;
    for (;;) {
        int closed = 0;
        if (atomic_load(&s->files_full_since_ms)) {
            pthread_mutex_lock(&s->mu);
            int quit = s->quit;
            pthread_mutex_unlock(&s->mu);
            if (quit) {
                eng_unit *u = eng_queue_pop(&s->done_q, 50, &closed);
                if (u)
                    drop_unit(u);
                else if (closed)
                    break;
                continue;
            }
            usleep(DISK_FULL_RETRY_MS * 1000);
            if (retry_saves(s) == 0) {
                atomic_store(&s->files_full_since_ms, 0);
                fprintf(stderr, "batchrep: there is space again; carrying on\n");
            }
            continue;
        }
        eng_unit *u = eng_queue_pop(&s->done_q, 50, &closed);
        if (u) {
            run__shard *sh = eng_unit_job(u);
            write_unit(sh, u);
            eng_unit_destroy(u);
            atomic_fetch_sub(&sh->units_out, 1);
            atomic_fetch_sub(&sh->job->units_out, 1);
        } else if (closed) {
            break;
        }
        int64_t now = s3_mono_ms();
        checkpoint_due(s, now - last >= CKPT_INTERVAL_MS, ++round);
        if (now - last >= CKPT_INTERVAL_MS)
            last = now;
    }
    return NULL;
}
