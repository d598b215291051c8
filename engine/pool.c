/*
 * pool.c — the pool's threads ("lanes"), each owning one curl multi handle with many
 * transfers in flight.
 *
 * A unit (every row of one key) is bound to the lane its key hashes to, so all versions of
 * a key stay on one thread and are replayed in order; a second unit of the same key waits
 * (deferred) until the first is done. Workers take units from their own bounded queue and
 * hand finished units to the report writer's queue: they never share anything else but the
 * counters and the limiter.
 *
 * Seats and calls. A lane has n_slots seats (admitted units) and n_slots calls (reusable
 * curl easy handles, so connections stay in the multi handle's cache). The two are separate
 * so that one unit can have several requests in flight: a multipart copy sends its parts in
 * parallel. A unit asks for requests with eng__unit_next while a call is free; each request
 * it gets is tagged (0 = its serial request, others = parts) and runs on its own call; the
 * unit answers ENG__WAIT when it needs answers first, and a strategy caps its own parts
 * (part_parallelism). Calls are lent only from the lane's own free calls, so
 *   requests in flight <= calls = n_slots = the lane's share of --concurrency,
 * whatever mix of small and large versions runs, and a streamed copy, which holds one part
 * buffer per call, uses at most calls x part size of memory. A seat whose unit wanted a call
 * while none was free is served first when one frees up, before new units are admitted, so
 * a large version keeps moving among many small ones. A unit is handed on only when it says
 * it is done AND none of its requests is in flight (its part buffers may still be in use).
 *
 * Deadlines: each request gets its operation's (s3/limits.c: seconds for a HEAD or a listing
 * page, a stall detector for object bytes, a time by size for a server-side copy; the
 * strategies say how many bytes a copy moves, eng__req.copy_bytes), so a server that never
 * answers costs seconds per attempt and its row says "timeout: ...".
 *
 * Retries: a retryable outcome (connection error, timeout, 500/502/503/504, SlowDown,
 * RequestTimeout, InternalError, a 200 carrying <Error>) keeps its call and is re-sent after
 * a full-jitter delay, rand(0, min(cap, base * 2^(attempt-1))) (../shared/aws-formats.md
 * §8.4; s3_backoff_ms, the one policy of every request), up to max_attempts in all, per
 * request: a failed part is retried alone. The unit
 * rebuilds the request (eng__unit_rebuild), so a strategy can first check whether an
 * ambiguous write landed. Throttling: a 503 / SlowDown halves the number of units the whole
 * pool may run at once (at most once per 500 ms); each stretch of `allowed` clean answers
 * raises it by one, back up to the configured concurrency (AIMD).
 */
#include "engine/engine_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct seat {
    eng_unit *unit;            /* NULL: free */
    int n_calls;                /* calls it holds (in flight or waiting to be re-sent) */
    int wants_call;             /* it had a request to send and no call was free */
} seat;

typedef struct wcall {
    s3_call call;
    seat *seat;                 /* NULL: free */
    unsigned tag;
    int in_multi;               /* the call is in the multi handle */
    int expect_xml;
    int attempts;               /* failed tries of the current request */
    int64_t not_before_ms;      /* a retry waits until then */
    s3_outcome prev;            /* the retryable outcome being retried */
} wcall;

typedef struct lane {
    pthread_t th;
    struct eng_pool *pool;
    eng_queue inq;
    CURLM *multi;
    s3_signer *signers;         /* one per endpoint (each caches its own signing key) */
    seat *seats;
    wcall *calls;
    int n_slots;
    eng_unit **deferred;       /* units whose key is busy here, FIFO */
    size_t n_deferred;
    unsigned rng;
    int started;
    /* 1 while the lane sleeps in curl_multi_poll with a free seat and an empty queue:
       the next submit wakes it (curl_multi_wakeup), else it slept up to 100 ms with idle
       seats whenever the planner fell behind (bench/RESULTS.md, "instant endpoint") */
    _Atomic int want_input;
    uint64_t n_admitted;
} lane;

struct eng_pool {
    eng_pool_cfg cfg;
    lane *lanes;
    int n_lanes;
    /* the shared slow-down limiter (atomics, no lock) */
    _Atomic int inflight;       /* units holding a seat, all lanes */
    _Atomic int allowed;        /* how many may */
    _Atomic int clean_streak;
    _Atomic int64_t last_cut_ms;
};

/* ---- limiter ------------------------------------------------------------------------- */

static void limiter_throttled(eng_pool *p)
{
    int64_t now = s3_mono_ms(), last = atomic_load(&p->last_cut_ms);
    atomic_store(&p->clean_streak, 0);
    if (now - last < 500 || !atomic_compare_exchange_strong(&p->last_cut_ms, &last, now))
        return;
    int a = atomic_load(&p->allowed);
    atomic_store(&p->allowed, a / 2 > 0 ? a / 2 : 1);
}

static void limiter_clean(eng_pool *p)
{
    int a = atomic_load(&p->allowed);
    if (a >= p->cfg.concurrency)
        return;
    if (atomic_fetch_add(&p->clean_streak, 1) + 1 >= a) {
        atomic_store(&p->clean_streak, 0);
        atomic_compare_exchange_strong(&p->allowed, &a, a + 1);
    }
}

/* ---- one lane ------------------------------------------------------------------------ */

static int key_busy(const lane *w, const eng_unit *u)
{
    for (int i = 0; i < w->n_slots; i++)
        if (w->seats[i].unit && eng__unit_same_key(w->seats[i].unit, u))
            return 1;
    return 0;
}

static wcall *free_call(lane *w)
{
    for (int i = 0; i < w->n_slots; i++)
        if (!w->calls[i].seat)
            return &w->calls[i];
    return NULL;
}

static seat *free_seat(lane *w)
{
    for (int i = 0; i < w->n_slots; i++)
        if (!w->seats[i].unit)
            return &w->seats[i];
    return NULL;
}

static void finish_unit(lane *w, seat *st)
{
    eng_pool *p = w->pool;
    eng_queue_push(p->cfg.done_q, st->unit);
    st->unit = NULL;
    st->n_calls = 0;
    st->wants_call = 0;
    atomic_fetch_sub(&p->inflight, 1);
}

static void release(wcall *c)
{
    c->seat->n_calls--;
    c->seat = NULL;
    c->attempts = 0;
    c->in_multi = 0;
}

/* Prepares r on c and starts it; 0, or -1 when the request could not be built (then the
   unit has been told, and c is free again). */
static int start(lane *w, seat *st, wcall *c, const eng__req *r)
{
    eng_pool *p = w->pool;
    size_t ei = r->ep_index < p->cfg.n_eps ? r->ep_index : 0;
    c->tag = r->tag;
    c->expect_xml = r->expect_xml;
    /* deadlines by operation (s3/limits.c): a HEAD gets seconds, a copy time by its size */
    const s3_call_opts co = {.copy_bytes = r->copy_bytes};
    if (s3_call_prepare(&c->call, p->cfg.eps[ei], &w->signers[ei], &r->req, &co) != 0) {
        s3_outcome oc;
        memset(&oc, 0, sizeof oc);
        oc.http_status = 400;
        snprintf(oc.code, sizeof oc.code, "InvalidRequest");
        snprintf(oc.message, sizeof oc.message, "cannot build the request");
        release(c);
        eng__unit_on_response(st->unit, eng__unit_rules(st->unit), r->tag, &c->call, &oc);
        return -1;
    }
    curl_multi_add_handle(w->multi, c->call.easy);
    c->in_multi = 1;
    atomic_fetch_add(&p->cfg.counters->requests, 1);
    return 0;
}

/* Starts the unit's requests while it has some and calls are free; hands the unit on when
   it is done and holds no call. */
static void pump(lane *w, seat *st)
{
    st->wants_call = 0;
    for (;;) {
        if (eng__unit_stopped(st->unit))
            eng__unit_abandon(st->unit); /* in-flight calls still answer (and are ignored) */
        wcall *c = free_call(w);
        if (!c) {
            st->wants_call = 1;
            return;
        }
        eng__req r;
        memset(&r, 0, sizeof r);
        int rc = eng__unit_next(st->unit, eng__unit_rules(st->unit), &r);
        if (rc == 0) {
            if (st->n_calls == 0)
                finish_unit(w, st);
            return;
        }
        if (rc == ENG__WAIT)
            return;
        c->seat = st;
        c->attempts = 0;
        st->n_calls++;
        start(w, st, c, &r);
    }
}

static void resend(lane *w, wcall *c)
{
    seat *st = c->seat;
    eng__req r;
    memset(&r, 0, sizeof r);
    if (eng__unit_stopped(st->unit) ||
        !eng__unit_rebuild(st->unit, eng__unit_rules(st->unit), c->tag, &c->prev, &r)) {
        s3_outcome prev = c->prev;
        unsigned tag = c->tag;
        release(c);
        eng__unit_on_response(st->unit, eng__unit_rules(st->unit), tag, &c->call, &prev);
        pump(w, st);
        return;
    }
    if (start(w, st, c, &r) != 0)
        pump(w, st);
}


static void on_done(lane *w, wcall *c, CURLcode code)
{
    eng_pool *p = w->pool;
    s3_outcome oc;
    curl_multi_remove_handle(w->multi, c->call.easy);
    c->in_multi = 0;
    s3_outcome_classify(&c->call, (int)code, c->expect_xml, &oc);
    /* A transfer that broke is no answer, whatever status line came before the break (a
       ListObjectVersions cut by its deadline after "200 OK" is a timeout, not a malformed
       listing; a CopyObject cut after its 200 is not a copy): the unit reads http_status. */
    if (oc.curl_code != CURLE_OK)
        oc.http_status = 0;
    if (oc.throttled) {
        atomic_fetch_add(&p->cfg.counters->throttle_events, 1);
        limiter_throttled(p);
    } else if (!oc.retryable) {
        limiter_clean(p);
    }
    if (oc.retryable && c->attempts + 1 < p->cfg.retry.max_attempts &&
        !eng__unit_stopped(c->seat->unit)) {
        c->attempts++;
        c->prev = oc;
        atomic_fetch_add(&p->cfg.counters->retries, 1);
        c->not_before_ms = s3_mono_ms() + s3_backoff_ms(&p->cfg.retry, c->attempts, &w->rng);
        return; /* the loop re-sends it when the delay has passed */
    }
    seat *st = c->seat;
    unsigned tag = c->tag;
    release(c);
    eng__unit_on_response(st->unit, eng__unit_rules(st->unit), tag, &c->call, &oc);
    pump(w, st);
}

static void admit(lane *w, seat *st, eng_unit *u)
{
    st->unit = u;
    st->n_calls = 0;
    w->n_admitted++;
    atomic_fetch_add(&w->pool->inflight, 1);
    pump(w, st);
}

/* Takes new units while a seat and a call are free and the limiter allows. Returns 1 when
   the input is closed and drained. */
static int admit_new(lane *w, int busy)
{
    eng_pool *p = w->pool;
    for (;;) {
        seat *st = free_seat(w);
        if (!st || !free_call(w) || atomic_load(&p->inflight) >= atomic_load(&p->allowed))
            return 0;
        /* a deferred unit whose key became free goes first */
        for (size_t i = 0; i < w->n_deferred; i++) {
            if (!key_busy(w, w->deferred[i])) {
                eng_unit *u = w->deferred[i];
                memmove(&w->deferred[i], &w->deferred[i + 1],
                        (w->n_deferred - i - 1) * sizeof *w->deferred);
                w->n_deferred--;
                admit(w, st, u);
                goto next;
            }
        }
        if (w->n_deferred >= (size_t)w->n_slots)
            return 0; /* bounded: wait for keys to free up */
        int closed = 0;
        eng_unit *u = eng_queue_pop(&w->inq, busy || w->n_deferred ? 0 : 50, &closed);
        if (!u)
            return closed && w->n_deferred == 0;
        if (key_busy(w, u))
            w->deferred[w->n_deferred++] = u;
        else
            admit(w, st, u);
    next:
        busy = 1;
    }
}

static void *lane_main(void *arg)
{
    lane *w = arg;
    int input_done = 0;
    for (;;) {
        int64_t now = s3_mono_ms(), next_due = INT64_MAX;
        for (int i = 0; i < w->n_slots; i++) {
            wcall *c = &w->calls[i];
            if (!c->seat || c->in_multi)
                continue;
            if (c->not_before_ms <= now)
                resend(w, c); /* a retry whose delay has passed */
            else if (c->not_before_ms < next_due)
                next_due = c->not_before_ms;
        }
        for (int i = 0; i < w->n_slots; i++)
            if (w->seats[i].unit && w->seats[i].wants_call && free_call(w))
                pump(w, &w->seats[i]);
        int busy = 0;
        for (int i = 0; i < w->n_slots; i++)
            busy |= w->seats[i].unit != NULL;
        if (!input_done)
            input_done = admit_new(w, busy);
        busy = 0;
        for (int i = 0; i < w->n_slots; i++)
            busy |= w->seats[i].unit != NULL;
        if (input_done && !busy && w->n_deferred == 0)
            break;

        int running = 0;
        curl_multi_perform(w->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(w->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            wcall *c = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            on_done(w, c, m->data.result);
        }
        long timeout = 100;
        if (next_due != INT64_MAX) {
            int64_t d = next_due - s3_mono_ms();
            timeout = d < 0 ? 0 : d < timeout ? (long)d : timeout;
        }
        if (running > 0 || busy) {
            if (!input_done && free_seat(w)) {
                /* flag first, then look once more: a submit in between either is seen
                   here or finds the flag and wakes the poll below */
                uint64_t before = w->n_admitted;
                atomic_store(&w->want_input, 1);
                input_done = admit_new(w, 1);
                if (input_done || w->n_admitted != before) {
                    atomic_store(&w->want_input, 0);
                    continue;
                }
            }
            curl_multi_poll(w->multi, NULL, 0, (int)timeout, NULL);
            atomic_store(&w->want_input, 0);
        }
    }
    return NULL;
}

/* ---- pool ---------------------------------------------------------------------------- */

eng_pool *eng_pool_start(const eng_pool_cfg *cfg, char *err, size_t err_len)
{
    eng_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = *cfg;
    p->n_lanes = cfg->threads;
    atomic_store(&p->allowed, cfg->concurrency);
    p->lanes = calloc((size_t)p->n_lanes, sizeof *p->lanes);
    if (!p->lanes)
        goto fail;
    for (int i = 0; i < p->n_lanes; i++) {
        lane *w = &p->lanes[i];
        w->pool = p;
        /* slots split the concurrency; the limiter caps the total across lanes */
        w->n_slots = cfg->concurrency / cfg->threads + (i < cfg->concurrency % cfg->threads);
        if (w->n_slots < 1)
            w->n_slots = 1;
        w->rng = (unsigned)(s3_mono_ms() ^ (i * 2654435761u));
        w->seats = calloc((size_t)w->n_slots, sizeof *w->seats);
        w->calls = calloc((size_t)w->n_slots, sizeof *w->calls);
        w->deferred = calloc((size_t)w->n_slots, sizeof *w->deferred);
        w->signers = calloc(cfg->n_eps, sizeof *w->signers);
        w->multi = curl_multi_init();
        if (!w->seats || !w->calls || !w->deferred || !w->signers || !w->multi ||
            eng_queue_init(&w->inq, cfg->queue_depth > 0 ? (size_t)cfg->queue_depth
                                     : (size_t)(w->n_slots > 2 ? w->n_slots : 2)))
            goto fail;
        /* highest priority first; a job's units keep their order */
        eng_queue_set_rank(&w->inq, eng_unit_priority, eng_unit_rank_group);
        curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)w->n_slots);
        for (size_t e = 0; e < cfg->n_eps; e++)
            s3_signer_init(&w->signers[e], &cfg->eps[e]->creds, cfg->eps[e]->region);
        for (int k = 0; k < w->n_slots; k++) {
            if (s3_call_init(&w->calls[k].call))
                goto fail;
            w->calls[k].call.user = &w->calls[k];
            curl_easy_setopt(w->calls[k].call.easy, CURLOPT_PRIVATE, &w->calls[k]);
        }
    }
    for (int i = 0; i < p->n_lanes; i++) {
        if (pthread_create(&p->lanes[i].th, NULL, lane_main, &p->lanes[i]) != 0) {
            snprintf(err, err_len, "cannot start pool thread %d", i);
            for (int k = 0; k < i; k++)
                eng_queue_close(&p->lanes[k].inq);
            for (int k = 0; k < i; k++)
                pthread_join(p->lanes[k].th, NULL);
            goto fail_quiet;
        }
        p->lanes[i].started = 1;
    }
    return p;
fail:
    snprintf(err, err_len, "out of memory starting the pool");
fail_quiet:
    for (int i = 0; p->lanes && i < p->n_lanes; i++)
        p->lanes[i].started = 0;
    eng_pool_destroy(p);
    return NULL;
}

int eng_pool_submit(eng_pool *p, eng_unit *u)
{
    lane *w = &p->lanes[eng__unit_hash(u) % (uint64_t)p->n_lanes];
    int rc = eng_queue_push(&w->inq, u);
    if (atomic_load(&w->want_input) && atomic_exchange(&w->want_input, 0))
        curl_multi_wakeup(w->multi);
    return rc;
}

void eng_pool_finish(eng_pool *p)
{
    for (int i = 0; i < p->n_lanes; i++)
        eng_queue_close(&p->lanes[i].inq);
    for (int i = 0; i < p->n_lanes; i++) {
        if (p->lanes[i].started)
            pthread_join(p->lanes[i].th, NULL);
        p->lanes[i].started = 0;
    }
}

static size_t cfg_n_eps(const eng_pool *p)
{
    return p->cfg.n_eps;
}

void eng_pool_destroy(eng_pool *p)
{
    if (!p)
        return;
    eng_pool_finish(p);
    for (int i = 0; p->lanes && i < p->n_lanes; i++) {
        lane *w = &p->lanes[i];
        for (int k = 0; w->calls && k < w->n_slots; k++)
            if (w->calls[k].call.easy)
                s3_call_cleanup(&w->calls[k].call);
        free(w->calls);
        free(w->seats);
        if (w->signers)
            memset(w->signers, 0, cfg_n_eps(p) * sizeof *w->signers); /* secrets */
        free(w->signers);
        for (size_t k = 0; k < w->n_deferred; k++)
            eng_unit_destroy(w->deferred[k]);
        free(w->deferred);
        if (w->multi)
            curl_multi_cleanup(w->multi);
        if (w->inq.items) {
            eng_queue_set_rank(&w->inq, NULL, NULL); /* the units' jobs may be gone */
            int closed;
            eng_unit *u;
            while ((u = eng_queue_pop(&w->inq, 0, &closed)))
                eng_unit_destroy(u);
            eng_queue_cleanup(&w->inq);
        }
    }
    free(p->lanes);
    free(p);
}
