/*
 * test_queue.c — the engine's bounded queue (engine/queue.c): first in, first out without a
 * rank; with one (the pool's: the job's priority), the highest rank first, the earliest among
 * equals, read at the time of the pop; items of one group (one job) never overtake each
 * other, even when their rank changes while a pop reads it.
 */
#include "engine/engine.h"
#include "tests/unit/tap.h"

#include <string.h>

typedef struct item {
    int id;
    _Atomic int prio;
} item;

static long rank_of(const void *p)
{
    return atomic_load(&((const item *)p)->prio);
}

/* Each read is higher than the one before: what a priority raised during a scan looks like. */
static int racy_calls;
static long racy_rank(const void *p)
{
    (void)p;
    return racy_calls++;
}

/* Items 1 and 3 belong to job A, item 2 to job B. */
static const item *job_of[3];
static const void *group_of(const void *p)
{
    static const char job_a, job_b;
    return p == job_of[1] ? (const void *)&job_b : (const void *)&job_a;
}

/* Pops everything and writes the ids in pop order as "1,2,3". */
static void drain(eng_queue *q, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    item *it;
    while ((it = eng_queue_pop(q, 0, NULL)) && n + 8 < cap)
        n += (size_t)snprintf(out + n, cap - n, n ? ",%d" : "%d", it->id);
}

int main(void)
{
    static const struct {
        const char *name;
        int ranked;
        int prio[6];      /* priorities of items 1..6 when pushed */
        int bump_item;    /* 0: none; else this item's priority becomes bump_to after pushes */
        int bump_to;
        const char *want;
    } cases[] = {
        {"no rank: first in, first out", 0, {1, 9, 1, 9, 5, 1}, 0, 0, "1,2,3,4,5,6"},
        {"equal ranks: first in, first out", 1, {3, 3, 3, 3, 3, 3}, 0, 0, "1,2,3,4,5,6"},
        {"highest first, earliest among equals", 1, {1, 9, 1, 9, 5, 1}, 0, 0, "2,4,5,1,3,6"},
        {"a rank raised while waiting counts at the pop", 1, {5, 5, 5, 1, 1, 1}, 6, 50,
         "6,1,2,3,4,5"},
        {"a rank lowered while waiting counts at the pop", 1, {5, 5, 5, 1, 1, 1}, 1, 0,
         "2,3,4,5,6,1"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eng_queue q;
        eng_queue_init(&q, 6);
        if (cases[c].ranked)
            eng_queue_set_rank(&q, rank_of, NULL);
        item items[6];
        for (int i = 0; i < 6; i++) {
            items[i].id = i + 1;
            atomic_store(&items[i].prio, cases[c].prio[i]);
            eng_queue_push(&q, &items[i]);
        }
        if (cases[c].bump_item)
            atomic_store(&items[cases[c].bump_item - 1].prio, cases[c].bump_to);
        char got[64];
        drain(&q, got, sizeof got);
        tap_ok(strcmp(got, cases[c].want) == 0, "%s: %s (got %s)", cases[c].name,
               cases[c].want, got);
        eng_queue_cleanup(&q);
    }

    /* the ring wraps: pops from the middle keep the others in order across the wrap */
    eng_queue q;
    eng_queue_init(&q, 4);
    eng_queue_set_rank(&q, rank_of, NULL);
    item w[7];
    for (int i = 0; i < 7; i++) {
        w[i].id = i + 1;
        atomic_store(&w[i].prio, 1);
    }
    eng_queue_push(&q, &w[0]);
    eng_queue_push(&q, &w[1]);
    eng_queue_push(&q, &w[2]);
    item *a = eng_queue_pop(&q, 0, NULL), *b = eng_queue_pop(&q, 0, NULL);
    atomic_store(&w[4].prio, 7);
    eng_queue_push(&q, &w[3]);
    eng_queue_push(&q, &w[4]); /* these two wrap around the end of the ring */
    eng_queue_push(&q, &w[5]);
    char got[64];
    drain(&q, got, sizeof got);
    tap_ok(a->id == 1 && b->id == 2 && strcmp(got, "5,3,4,6") == 0,
           "across the ring's wrap: 1,2 then 5,3,4,6 (got %d,%d then %s)", a->id, b->id, got);

    /* a rank that changes during the scan (a priority raised while a pop reads it): the
       later unit of a job reads higher than its earlier one, yet never goes first */
    eng_queue g;
    eng_queue_init(&g, 4);
    eng_queue_set_rank(&g, racy_rank, group_of);
    item ga1 = {.id = 1}, gb = {.id = 2}, ga2 = {.id = 3};
    job_of[0] = &ga1, job_of[1] = &gb, job_of[2] = &ga2; /* ga1, ga2: job A; gb: job B */
    eng_queue_push(&g, &ga1);
    eng_queue_push(&g, &gb);
    eng_queue_push(&g, &ga2);
    racy_calls = 0;
    item *first = eng_queue_pop(&g, 0, NULL);
    tap_ok(first == &ga1, "a job's later unit whose rank rose during the scan does not "
                          "overtake its earlier one (got item %d)", first ? first->id : 0);
    eng_queue_cleanup(&g);

    int closed = 0;
    tap_ok(eng_queue_pop(&q, 0, &closed) == NULL && !closed, "empty, open: NULL, not closed");
    eng_queue_close(&q);
    tap_ok(eng_queue_pop(&q, 10, &closed) == NULL && closed, "closed and drained: closed");
    tap_ok(eng_queue_push(&q, &w[6]) == -1, "a push to a closed queue is refused");
    eng_queue_cleanup(&q);
    return tap_done();
}
