/*
 * writer.c — the report writer thread: writes each finished unit's report rows to its job's
 * results files, counts them, checks the failure threshold (aws-formats.md §4.2: at least
 * 1,000 tasks and more than half failed), and every second syncs the files and writes the
 * job's checkpoint (checkpoint.c): rows durable first, then the checkpoint that counts them.
 */
#include "run/run_int.h"

#include <string.h>

#define CKPT_INTERVAL_MS 1000
#define FAIL_THRESHOLD_MIN_TASKS 1000

static void write_unit(run__job *jr, eng_unit *u)
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
        run_ckpt_add(&jr->ckpt, first, first + eng_unit_n_tasks(u));
    }
    jr->ckpt_dirty = 1;
    uint64_t ok = atomic_load(&jr->succeeded), bad = atomic_load(&jr->failed);
    if (ok + bad >= FAIL_THRESHOLD_MIN_TASKS && bad * 2 > ok + bad &&
        !atomic_load(&jr->threshold_hit)) {
        atomic_store(&jr->threshold_hit, 1);
        atomic_store(&jr->stop, 1);
    }
}

void run__checkpoint(run__job *jr)
{
    if (atomic_load(&jr->io_error))
        return;
    if (jr->rpt && rpt_writer_sync(jr->rpt, &jr->ckpt.succeeded_bytes,
                                   &jr->ckpt.failed_bytes) != 0) {
        atomic_store(&jr->io_error, 1);
        atomic_store(&jr->stop, 1);
        return;
    }
    uint64_t limit = atomic_load(&jr->planned_seq) + RUN__PLAN_WINDOW_ROWS;
    if (limit < jr->ckpt.plan_limit)
        limit = jr->ckpt.plan_limit;
    jr->ckpt.plan_limit = limit;
    if (run_ckpt_save(jr->ckpt_path, &jr->ckpt) != 0) {
        atomic_store(&jr->io_error, 1);
        atomic_store(&jr->stop, 1);
        return;
    }
    atomic_store(&jr->plan_limit, limit);
    jr->ckpt_dirty = 0;
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
            if (j->ckpt_round != round && (j->ckpt_dirty || starving) &&
                (interval_passed || starving))
                jr = j;
        }
        if (jr) {
            jr->ckpt_round = round;
            jr->ckpt_busy = 1;
        }
        pthread_mutex_unlock(&s->mu);
        if (!jr)
            return;
        run__checkpoint(jr);
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
            run__job *jr = eng_unit_job(u);
            write_unit(jr, u);
            eng_unit_destroy(u);
            atomic_fetch_sub(&jr->units_out, 1);
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

