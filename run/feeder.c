/*
 * feeder.c — the feeder thread: reads the spool shards of the Active jobs, one shard after
 * the other, and hands units (every row of one key: the spool is sorted by key, so they are
 * consecutive) to the pool, always from the highest priority, round-robin among equal ones.
 * It reads the shards this worker leased (scheduler.c), lowest index first, opens each
 * before its first unit (run__shard_open), never runs more than RUN__PLAN_WINDOW_ROWS past
 * the shard's last checkpoint, skips the units a resumed shard finished before, and marks
 * those that may have started for a destination recheck. A shard whose lease ends while it
 * is read is left at once: its units stop, another worker resumes it.
 */
#include "run/run_int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The unit built so far, bound to its shard's lease. */
static eng_unit *take(run__job *jr, run__shard *sh)
{
    eng_unit *u = eng_unit_builder_take(&jr->builder, &jr->rules, &jr->stop, &jr->priority, sh);
    if (u)
        eng_unit_set_deadline(u, &sh->lease_until);
    return u;
}

/* Reads rows of the shard until the key changes; returns the finished unit (NULL at the
   shard's end, or on an error: plan_error says which). */
static eng_unit *plan_one(run__job *jr, run__shard *sh)
{
    mf_entry e;
    int rc;
    char msg[512];
    while ((rc = run__spool_next(jr->reader, &e, msg, sizeof msg)) == 1) {
        atomic_store(&jr->planned_seq, e.seq + 1);
        eng_unit *u = NULL;
        if (eng_unit_builder_len(&jr->builder) > 0 &&
            !eng_unit_builder_same_key(&jr->builder, &e))
            u = take(jr, sh);
        if (eng_unit_builder_add(&jr->builder, &e) != 0) {
            snprintf(jr->plan_error, sizeof jr->plan_error,
                     "manifest line %llu (s3://%.63s/%.200s): out of memory planning its unit",
                     (unsigned long long)e.line, e.bucket.ptr, e.key.ptr);
            eng_unit_destroy(u);
            return NULL;
        }
        if (u)
            return u;
    }
    if (rc < 0)
        snprintf(jr->plan_error, sizeof jr->plan_error, "%s", msg);
    if (eng_unit_builder_len(&jr->builder) > 0)
        return take(jr, sh);
    return NULL;
}

/* Whether the unit's source bucket has ACLs disabled: asked once per bucket (dests.c). */
static int src_acls_disabled(run__sched *s, run__job *jr, s3_slice bucket)
{
    unsigned kept = jr->n_src_acls < RUN__SRC_BUCKETS_KEPT ? jr->n_src_acls : RUN__SRC_BUCKETS_KEPT;
    for (unsigned i = 0; i < kept; i++)
        if (strlen(jr->src_acls[i].name) == bucket.len &&
            memcmp(jr->src_acls[i].name, bucket.ptr, bucket.len) == 0)
            return jr->src_acls[i].disabled;
    if (bucket.len >= sizeof jr->src_acls[0].name)
        return 0; /* no S3 bucket name is that long: read the ACLs */
    unsigned slot = jr->n_src_acls++ % RUN__SRC_BUCKETS_KEPT;
    memcpy(jr->src_acls[slot].name, bucket.ptr, bucket.len);
    jr->src_acls[slot].name[bucket.len] = '\0';
    jr->src_acls[slot].disabled = repl_bucket_acls_disabled(s->ep, jr->src_acls[slot].name);
    return jr->src_acls[slot].disabled;
}

/* The job the feeder serves next: highest priority, then the one served least recently. */
static run__job *pick(run__sched *s)
{
    run__job *best = NULL;
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
        if (!atomic_load(&jr->runnable) || !atomic_load(&jr->has_feed) ||
            atomic_load(&jr->stop))
            continue;
        if (jr->pending && eng_unit_first_seq(jr->pending) + eng_unit_n_tasks(jr->pending) >
                               atomic_load(&jr->shards[jr->feed_shard].plan_limit) &&
            atomic_load(&jr->shards[jr->feed_shard].state) != RUN__SHARD_LOST)
            continue; /* waits for the writer's next checkpoint */
        if (!best || atomic_load(&jr->priority) > atomic_load(&best->priority) ||
            (atomic_load(&jr->priority) == atomic_load(&best->priority) &&
             jr->feed_turn < best->feed_turn))
            best = jr;
    }
    return best;
}

/* Leaves the shard being read (its end, or its lease ended): reader closed, a planned
   unit and a half-built one dropped when the shard is lost. */
static void leave_shard(run__job *jr, int lost)
{
    run__spool_close(jr->reader);
    jr->reader = NULL;
    if (lost) {
        eng_unit_destroy(jr->pending);
        jr->pending = NULL;
        if (eng_unit_builder_len(&jr->builder) > 0)
            eng_unit_destroy(eng_unit_builder_take(&jr->builder, &jr->rules, &jr->stop,
                                                   &jr->priority, NULL));
    }
    jr->feed_shard = (size_t)-1;
}

/* Opens the lowest leased shard (0), or says there is none (1: has_feed cleared), that it
   cannot be opened now (2: try again later) or that it cannot be read (-1, plan_error or
   io_error set). */
static int next_shard(run__sched *s, run__job *jr)
{
    char msg[512];
    size_t i;
    pthread_mutex_lock(&s->mu); /* against the control loop leasing one meanwhile */
    for (i = 0; i < jr->spool.n_shards; i++)
        if (atomic_load(&jr->shards[i].state) == RUN__SHARD_LEASED)
            break;
    if (i == jr->spool.n_shards)
        atomic_store(&jr->has_feed, 0);
    pthread_mutex_unlock(&s->mu);
    if (i == jr->spool.n_shards)
        return 1;
    run__shard *sh = &jr->shards[i];
    int rc = run__shard_open(sh);
    if (rc == -2)
        return 2;
    if (rc != 0)
        return atomic_load(&jr->io_error) ? -1 : 2; /* lost: the next one, if any */
    if (!(jr->reader = run__spool_open(jr->spool_dir, sh->info, msg, sizeof msg))) {
        snprintf(jr->plan_error, sizeof jr->plan_error, "%s", msg);
        return -1;
    }
    jr->feed_shard = i;
    return 0;
}

/* Hands the job's next unit to the pool (or parks it until the checkpoint allows it). */
static void feed(run__sched *s, run__job *jr)
{
    if (!jr->reader && !jr->pending) {
        int rc = next_shard(s, jr);
        if (rc == 2) {
            usleep(100000); /* the writer waits for space or the catalogue; so does this */
            return;
        }
        if (rc < 0) {
            atomic_store(&jr->plan_failed, 1);
            atomic_store(&jr->stop, 1);
            return;
        }
        if (rc == 1)
            return;
    }
    run__shard *sh = &jr->shards[jr->feed_shard];
    if (atomic_load(&sh->state) == RUN__SHARD_LOST) {
        leave_shard(jr, 1);
        return;
    }
    eng_unit *u = jr->pending;
    jr->pending = NULL;
    atomic_store(&jr->waiting_limit, 0);
    if (!u) {
        u = plan_one(jr, sh);
        if (!u) {
            if (jr->plan_error[0]) {
                leave_shard(jr, 1);
                atomic_store(&jr->plan_failed, 1);
                atomic_store(&jr->stop, 1);
                return;
            }
            int open = RUN__SHARD_OPEN; /* its last unit went out before */
            atomic_compare_exchange_strong(&sh->state, &open, RUN__SHARD_FED);
            leave_shard(jr, 0);
            return;
        }
    }
    uint64_t first = eng_unit_first_seq(u), end = first + eng_unit_n_tasks(u);
    if (run_ckpt_done(&sh->resume, first, end)) {
        eng_unit_destroy(u); /* done before the crash: its rows are in the report */
        return;
    }
    if (end > atomic_load(&sh->plan_limit)) {
        jr->pending = u;
        atomic_store(&jr->waiting_limit, 1);
        return;
    }
    if (first < sh->resume.plan_limit || sh->recheck_all)
        eng_unit_set_recheck(u); /* may have run before the crash */
    if (src_acls_disabled(s, jr, eng_unit_bucket(u)))
        eng_unit_set_src_acls_disabled(u);
    atomic_fetch_add(&sh->units_out, 1);
    atomic_fetch_add(&jr->units_out, 1);
    if (eng_pool_submit(s->pool, u) != 0) {
        atomic_fetch_sub(&sh->units_out, 1);
        atomic_fetch_sub(&jr->units_out, 1);
        eng_unit_destroy(u);
    }
}

void *run__feeder_main(void *arg)
{
    run__sched *s = arg;
    uint64_t turn = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int quit = s->quit;
        run__job *jr = quit ? NULL : pick(s);
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

