/*
 * writer.c — the report writer thread: writes each finished unit's report rows to its shard's
 * results files, counts them, checks the failure threshold (aws-formats.md §4.2: at least
 * 1,000 tasks and more than half failed), and every second syncs the files and writes the
 * shard's checkpoint (checkpoint.c): rows durable first, then the checkpoint that counts
 * them. A shard whose units are all handed out and written is settled once more and closed:
 * its checkpoint says complete, its results files are final.
 */
#include "run/run_int.h"

#include <stdio.h>
#include <string.h>

#define CKPT_INTERVAL_MS 1000
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
            if (rpt_writer_add(sh->rpt, &row) != 0)
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

/* Saves the shard's checkpoint (after its rows are durable). */
static int save(run__shard *sh)
{
    run__job *jr = sh->job;
    if (sh->rpt && rpt_writer_sync(sh->rpt, &sh->ckpt.succeeded_bytes,
                                   &sh->ckpt.failed_bytes) != 0) {
        io_failed(jr, "cannot write the results files of shard %s", sh->info->file);
        return -1;
    }
    if (run_ckpt_save(sh->ckpt_path, &sh->ckpt) != 0) {
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
    if (jr->job.report_enabled) {
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
    /* the first window: RUN__PLAN_WINDOW_ROWS past where the shard resumes */
    uint64_t limit = sh->ckpt.low + RUN__PLAN_WINDOW_ROWS;
    if (sh->resume.plan_limit > limit)
        limit = sh->resume.plan_limit;
    sh->ckpt.plan_limit = limit;
    if (save(sh) != 0)
        return -1;
    atomic_store(&sh->plan_limit, limit);
    atomic_store(&sh->state, RUN__SHARD_OPEN);
    return 0;
}

void run__shard_settle(run__shard *sh)
{
    run__job *jr = sh->job;
    int state = atomic_load(&sh->state);
    if ((state != RUN__SHARD_OPEN && state != RUN__SHARD_FED) || atomic_load(&jr->io_error))
        return;
    uint64_t limit = atomic_load(&jr->planned_seq) + RUN__PLAN_WINDOW_ROWS;
    if (limit < sh->ckpt.plan_limit)
        limit = sh->ckpt.plan_limit;
    sh->ckpt.plan_limit = limit;
    uint64_t end = sh->info->first_seq + sh->info->n_rows;
    int complete = state == RUN__SHARD_FED && atomic_load(&sh->units_out) == 0 &&
                   run_ckpt_done(&sh->ckpt, sh->info->first_seq, end);
    sh->ckpt.complete = complete;
    if (save(sh) != 0)
        return;
    atomic_store(&sh->plan_limit, limit);
    if (!complete)
        return;
    char msg[512];
    rpt_writer *w = sh->rpt;
    sh->rpt = NULL;
    if (w && rpt_writer_close(w, msg, sizeof msg) != 0) {
        io_failed(jr, "%s", msg);
        return;
    }
    atomic_store(&sh->state, RUN__SHARD_DONE);
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
            if (state == RUN__SHARD_FED || (state == RUN__SHARD_OPEN &&
                                            (sh->dirty || atomic_load(&jr->waiting_limit))))
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
