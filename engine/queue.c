/*
 * queue.c — the bounded queue where the engine's threads meet (planner -> worker, worker ->
 * report writer). A ring of pointers under one mutex; push blocks while full, which is the
 * back-pressure that keeps memory bounded by the queue depths, never by the manifest.
 *
 * Wake-ups are batched both ways, because on 2 cores a context switch per item cost more
 * than the item: with 20,000 one-version units against an instant endpoint, the run made
 * 50,560 context switches (the planner woken by every pop of a full worker queue, the report
 * writer by every push), 2.5 per unit. A blocked producer is woken when the queue has drained
 * to half (it then pushes cap/2 items without blocking); a consumer that set a wake batch is
 * woken when that many items wait (its timed pop bounds the delay). Numbers in
 * bench/RESULTS.md.
 *
 * A queue may rank its items (the pool's input: the job's priority): a pop then takes the
 * highest rank, the earliest among equals, by a scan of what waits. A pool queue holds as
 * many units as its worker has seats (32 at the default concurrency on 2 cores), so a pop
 * costs that many rank reads (an atomic load each) at most, and a job whose priority is
 * raised overtakes the units of another that are already queued.
 */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

int eng_queue_init(eng_queue *q, size_t cap)
{
    q->items = calloc(cap, sizeof *q->items);
    if (!q->items)
        return -ENG_E_NOMEM;
    q->cap = cap;
    q->head = q->len = 0;
    q->closed = 0;
    q->wake_batch = 1;
    q->rank = NULL;
    q->group = NULL;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return 0;
}

void eng_queue_cleanup(eng_queue *q)
{
    if (!q->items)
        return;
    free(q->items);
    q->items = NULL;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}

int eng_queue_push(eng_queue *q, void *item)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap && !q->closed)
        pthread_cond_wait(&q->not_full, &q->mu);
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    q->items[(q->head + q->len) % q->cap] = item;
    q->len++;
    if (q->wake_batch <= 1 || q->len == q->wake_batch || q->len == q->cap)
        pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void *eng_queue_pop(eng_queue *q, int timeout_ms, int *out_closed)
{
    struct timespec until;
    if (timeout_ms > 0)
        deadline_in(&until, timeout_ms);
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && !q->closed && timeout_ms != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&q->not_empty, &q->mu);
        } else if (pthread_cond_timedwait(&q->not_empty, &q->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    void *item = NULL;
    if (q->len > 0) {
        size_t best = 0;
        if (q->rank && q->len > 1) {
            long best_rank = q->rank(q->items[q->head]);
            for (size_t i = 1; i < q->len; i++) {
                long r = q->rank(q->items[(q->head + i) % q->cap]);
                if (r > best_rank) {
                    best_rank = r;
                    best = i;
                }
            }
            /* a rank read twice may differ (a priority changed during the scan): the
               earliest of the group goes first, so a job's units keep their order */
            const void *g = q->group ? q->group(q->items[(q->head + best) % q->cap]) : NULL;
            for (size_t i = 0; g && i < best; i++) {
                if (q->group(q->items[(q->head + i) % q->cap]) == g) {
                    best = i;
                    break;
                }
            }
        }
        item = q->items[(q->head + best) % q->cap];
        for (size_t i = best; i > 0; i--) /* close the gap; the others keep their order */
            q->items[(q->head + i) % q->cap] = q->items[(q->head + i - 1) % q->cap];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        /* a producer waits only while len == cap, so len passes cap/2 before it can need
           waking again; broadcast: the report queue has one producer per worker */
        if (q->len == q->cap / 2)
            pthread_cond_broadcast(&q->not_full);
    }
    if (out_closed)
        *out_closed = (item == NULL && q->closed);
    pthread_mutex_unlock(&q->mu);
    return item;
}

void eng_queue_close(eng_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

void eng_queue_set_wake_batch(eng_queue *q, size_t n)
{
    pthread_mutex_lock(&q->mu);
    q->wake_batch = n < 1 ? 1 : n > q->cap ? q->cap : n;
    pthread_mutex_unlock(&q->mu);
}

void eng_queue_set_rank(eng_queue *q, long (*rank)(const void *item),
                        const void *(*group)(const void *item))
{
    pthread_mutex_lock(&q->mu);
    q->rank = rank;
    q->group = group;
    pthread_mutex_unlock(&q->mu);
}

#define S3_ERR_NAME_PREFIX "ENG_E_"
S3_ERROR_FUNCS(eng, ENG_ERRNO_MAP, "unknown engine error")
