/*
 * store.c — the job catalogue's one interface over its two backends: SQLite in the state
 * directory (store_sqlite.c, the default) or a PostgreSQL shared by workers on many machines
 * (store_pg.c).
 *
 * Here is what both must agree on, so it is said once: which backend a catalogue string
 * names, this process's worker identity, the status a worker's save leaves (merged_status),
 * the Active clock (active_clock), whether a job's claim may be taken (claim_free), which
 * jobs' shards may be leased and when a lease ends. The backends only run SQL; this file
 * strings their steps into transactions. Each call takes the store's mutex, so several
 * threads of a process may share one store: its connection does one transaction at a time.
 * That mutex is held for the catalogue's I/O (a query, at most the statement timeout), never
 * for a caller's callback: jobs_store_each and jobs_store_shards_each read a page of rows
 * under it, let it go, then call back, so a callback may call the store again.
 */
#include "jobs/jobs_int.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* Rows read per query by jobs_store_each and jobs_store_shards_each: the memory of a listing
   is one page (64 jobs_row of ~2.4 KB plus their documents), whatever the catalogue holds. */
#define PAGE_ROWS 64

struct jobs_store {
    /* set at open, then only read (no lock) */
    const jobs__backend *b;
    int shared;
    char dir[4096];
    char name[4200];
    char host[72];
    char worker_id[128];
    /* under mu: the backend's connection and its transaction */
    pthread_mutex_t mu;
    void *db;
};

/* The statuses whose jobs' shards are leased (jobs.h, jobs_store_shard_lease). */
static const jobs_status leasable[] = {JOBS_STATUS_READY, JOBS_STATUS_ACTIVE,
                                       JOBS_STATUS_PAUSING, JOBS_STATUS_PAUSED};

void jobs_state_root(const char *given, char *out, size_t cap)
{
    const char *env;
    if (given && *given)
        snprintf(out, cap, "%s", given);
    else if ((env = getenv("BATCHREP_STATE_DIR")) && *env)
        snprintf(out, cap, "%s", env);
    else if ((env = getenv("XDG_STATE_HOME")) && *env)
        snprintf(out, cap, "%s/batchrep", env);
    else
        snprintf(out, cap, "%s/.local/state/batchrep", getenv("HOME") ? getenv("HOME") : ".");
}

void jobs__schema_newer(char *err, size_t err_len, const char *name, long version)
{
    snprintf(err, err_len,
             "%s: catalogue schema version %ld is newer than this batchrep's (%d): upgrade "
             "batchrep",
             name, version, JOBS_SCHEMA_VERSION);
}

static int is_pg_url(const char *c)
{
    return strncmp(c, "postgresql://", 13) == 0 || strncmp(c, "postgres://", 11) == 0;
}

/* "<hostname>/<pid>/<16 hex random>": two stores of one process are two workers. */
static void make_worker_id(jobs_store *s)
{
    if (gethostname(s->host, sizeof s->host - 1) != 0 || !s->host[0])
        snprintf(s->host, sizeof s->host, "localhost");
    s->host[sizeof s->host - 1] = '\0';
    for (char *p = s->host; *p; p++)
        if (*p == '/') /* the owner string's separator; no hostname has one, but be sure */
            *p = '_';
    unsigned char rnd[8];
    char hex[17];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        char uuid[37]; /* no entropy call: the UUID's random digits (version nibble skipped) */
        s3_uuid4(uuid);
        memcpy(hex, uuid, 8);
        memcpy(hex + 8, uuid + 9, 4);
        memcpy(hex + 12, uuid + 15, 3);
        hex[15] = uuid[19];
    } else {
        for (size_t i = 0; i < sizeof rnd; i++)
            snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    }
    hex[16] = '\0';
    snprintf(s->worker_id, sizeof s->worker_id, "%.64s/%ld/%s", s->host, (long)getpid(), hex);
}

int jobs_store_open(const char *state_dir, const char *catalog, jobs_store **out, char *err,
                    size_t err_len)
{
    *out = NULL;
    if (!catalog || !*catalog)
        catalog = getenv("BATCHREP_CATALOG");
    if (catalog && !*catalog)
        catalog = NULL;
    if (catalog && !is_pg_url(catalog)) {
        /* not echoed: it may hold a password */
        snprintf(err, err_len,
                 "the catalogue (--catalog or BATCHREP_CATALOG) must be a postgresql:// or "
                 "postgres:// URL; without one it is SQLite in the state directory");
        return -JOBS_E_INVALID_JOB;
    }
    jobs_store *s = calloc(1, sizeof *s);
    if (!s)
        return -JOBS_E_NOMEM;
    s->b = catalog ? &jobs__pg_backend : &jobs__sqlite_backend;
    s->shared = catalog != NULL;
    jobs_state_root(state_dir, s->dir, sizeof s->dir);
    make_worker_id(s);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return -JOBS_E_NOMEM;
    }
    int rc = s->b->open(s->dir, catalog, &s->db, s->name, sizeof s->name, err, err_len);
    if (rc != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return rc;
    }
    if (!s->shared)
        jobs__store_import(s); /* a lost or rebuilt catalogue gets its jobs back (recover.c) */
    *out = s;
    return 0;
}

void jobs_store_close(jobs_store *s)
{
    if (!s)
        return;
    s->b->close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int jobs_store_shared(const jobs_store *s)
{
    return s->shared;
}

const char *jobs_store_worker_id(const jobs_store *s)
{
    return s->worker_id;
}

const char *jobs_store_name(const jobs_store *s)
{
    return s->name;
}

const char *jobs_store_dir(const jobs_store *s)
{
    return s->dir;
}

void jobs_row_cleanup(jobs_row *r)
{
    free(r->doc);
    free(r->rules);
    free(r->generated_manifest);
    r->doc = r->rules = r->generated_manifest = NULL;
}

void jobs_shard_cleanup(jobs_shard *sh)
{
    free(sh->ckpt);
    sh->ckpt = NULL;
}

/* ---- the decisions ------------------------------------------------------------------------ */

/* The status to store when the worker saves `mine` over `stored`: the worker's, when the
   transition table lets the worker make that move; else the stored one, which another
   process set meanwhile (a cancel, say): a job cancelled meanwhile stays Cancelling, a
   terminal job stays terminal. */
static jobs_status merged_status(jobs_status stored, jobs_status mine)
{
    return stored == mine || jobs_status_allowed(stored, mine, JOBS_BY_WORKER) ? mine : stored;
}

/* The Active clock as r's status becomes `to` at now: entering (or staying in) Active starts
   it when it is not running; any other status adds the time it ran to active_ms and stops
   it. A row saved by a batchrep before this clock (Active, no active_since_ms) starts it. */
static void active_clock(jobs_row *r, jobs_status to, int64_t now_ms)
{
    if (to == JOBS_STATUS_ACTIVE) {
        if (!r->active_since_ms)
            r->active_since_ms = now_ms;
    } else if (r->active_since_ms) {
        if (now_ms > r->active_since_ms) /* a clock set back adds nothing */
            r->active_ms += now_ms - r->active_since_ms;
        r->active_since_ms = 0;
    }
}

/* 1 when `owner` is a worker of this host whose process is gone (another store of this very
   process is alive). */
static int owner_gone_here(const jobs_store *s, const char *owner)
{
    const char *slash = strchr(owner, '/'); /* "<host>/<pid>/<random>" */
    size_t host_len = slash ? (size_t)(slash - owner) : 0;
    if (!slash || host_len != strlen(s->host) || memcmp(owner, s->host, host_len) != 0)
        return 0; /* another machine: only its heartbeat tells */
    char *end;
    errno = 0;
    long pid = strtol(slash + 1, &end, 10);
    if (errno || end == slash + 1 || *end != '/' || pid <= 0 || pid > INT_MAX ||
        pid == (long)getpid())
        return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH; /* EPERM: alive, another user's */
}

/* 1 when this worker may take the claim that `owner` holds (last heartbeat seen_ms): nobody
   holds it, this worker does, its heartbeat is older than JOBS_CLAIM_STALE_MS, or it is a
   process of this host that is gone. */
static int claim_free(const jobs_store *s, const char *owner, int64_t seen_ms, int64_t now_ms)
{
    if (!owner[0] || strcmp(owner, s->worker_id) == 0)
        return 1;
    if (now_ms - seen_ms >= JOBS_CLAIM_STALE_MS)
        return 1;
    return owner_gone_here(s, owner);
}

/* ---- transactions --------------------------------------------------------------------------- */

static void lock(jobs_store *s)
{
    pthread_mutex_lock(&s->mu);
}

static void unlock(jobs_store *s)
{
    pthread_mutex_unlock(&s->mu);
}

/* Ends the transaction begun by b->begin: committed when rc >= 0 (rc returned, or the
   commit's failure), rolled back when rc < 0. */
static int end_tx(jobs_store *s, int rc, char *err, size_t err_len)
{
    if (rc < 0) {
        s->b->rollback(s->db);
        return rc;
    }
    int c = s->b->commit(s->db, err, err_len);
    return c < 0 ? c : rc;
}

/* Begins a transaction and reads the catalogue's clock and the job's row (locked to the
   end): 1 found, 0 no such job (the transaction is open either way: end_tx ends it), <0
   error (no transaction is open). */
static int begin_with_row(jobs_store *s, const char *id, int64_t *now, jobs_row *cur, char *err,
                          size_t err_len)
{
    memset(cur, 0, sizeof *cur);
    int rc = s->b->begin(s->db, err, err_len);
    if (rc < 0)
        return rc;
    rc = s->b->now_ms(s->db, now, err, err_len);
    if (rc == 0)
        rc = s->b->get(s->db, id, 1, cur, err, err_len);
    if (rc < 0)
        s->b->rollback(s->db);
    return rc;
}

/* ---- jobs ------------------------------------------------------------------------------------ */

/* 1 found, 0 not found, <0 error. */
int jobs_store_get(jobs_store *s, const char *id, jobs_row *out, char *err, size_t err_len)
{
    lock(s);
    int rc = s->b->get(s->db, id, 0, out, err, err_len);
    unlock(s);
    return rc;
}

int jobs_store_insert(jobs_store *s, const jobs_row *r, char *out_existing_id, char *err,
                      size_t err_len)
{
    jobs_row w = *r; /* strings borrowed from r */
    int64_t now = 0;
    int rc = 0;
    out_existing_id[0] = '\0';
    lock(s);
    w.active_since_ms = 0;
    if (w.status == JOBS_STATUS_ACTIVE) /* a job put back Active (recover.c): its clock runs */
        rc = s->b->now_ms(s->db, &now, err, err_len);
    if (rc == 0) {
        active_clock(&w, w.status, now);
        rc = s->b->insert(s->db, &w, out_existing_id, err, err_len);
    }
    unlock(s);
    return rc;
}

int jobs_store_save(jobs_store *s, const jobs_row *r, char *err, size_t err_len)
{
    jobs_row cur;
    int64_t now;
    lock(s);
    int rc = begin_with_row(s, r->id, &now, &cur, err, err_len);
    int in_tx = rc >= 0; /* a failure after this point rolls back (end_tx) */
    if (rc == 1) {
        jobs_row w = *r; /* strings borrowed from r */
        w.status = merged_status(cur.status, r->status);
        if (w.status != r->status) { /* the stored status stays, with its time and reason */
            w.terminated_ms = cur.terminated_ms;
            snprintf(w.status_reason, sizeof w.status_reason, "%s", cur.status_reason);
        }
        w.active_ms = cur.active_ms;
        w.active_since_ms = cur.active_since_ms;
        active_clock(&w, w.status, now);
        rc = s->b->update(s->db, &w, err, err_len);
        jobs_row_cleanup(&cur);
    }
    if (in_tx)
        rc = end_tx(s, rc, err, err_len);
    unlock(s);
    return rc < 0 ? rc : 0;
}

/* Compare-and-set of the status (requests from other processes): 1 when the row had `from`
   and now has `to`, 0 when it did not have `from`. reason NULL keeps the status reason. */
int jobs_store_cas_status(jobs_store *s, const char *id, jobs_status from, jobs_status to,
                          const char *reason, char *err, size_t err_len)
{
    jobs_row cur;
    int64_t now;
    lock(s);
    int rc = begin_with_row(s, id, &now, &cur, err, err_len);
    int in_tx = rc >= 0; /* a failure after this point rolls back (end_tx) */
    if (rc == 1 && cur.status == from) {
        cur.status = to;
        if (reason)
            snprintf(cur.status_reason, sizeof cur.status_reason, "%s", reason);
        if (jobs_status_terminal(to))
            cur.terminated_ms = now;
        active_clock(&cur, to, now);
        rc = s->b->update(s->db, &cur, err, err_len);
        rc = rc < 0 ? rc : 1;
    } else if (rc == 1) {
        rc = 0;
    }
    jobs_row_cleanup(&cur);
    if (in_tx)
        rc = end_tx(s, rc, err, err_len);
    unlock(s);
    return rc;
}

/* 1 changed, 0 no such job. */
int jobs_store_set_priority(jobs_store *s, const char *id, int priority, char *err,
                            size_t err_len)
{
    lock(s);
    int rc = s->b->set_priority(s->db, id, priority, err, err_len);
    unlock(s);
    return rc;
}

/* Takes the job's claim for this worker (take 1: when claim_free says it may) or gives it up
   (take 0: when this worker holds it). 1 changed, 0 not, <0 error. */
static int change_claim(jobs_store *s, const char *id, int take, char *err, size_t err_len)
{
    jobs_row cur;
    int64_t now;
    lock(s);
    int rc = begin_with_row(s, id, &now, &cur, err, err_len);
    int in_tx = rc >= 0; /* a failure after this point rolls back (end_tx) */
    if (rc == 1) {
        int may = take ? claim_free(s, cur.owner, cur.owner_seen_ms, now) == 1
                       : strcmp(cur.owner, s->worker_id) == 0;
        rc = 0;
        if (may) {
            int set = s->b->set_owner(s->db, id, take ? s->worker_id : NULL, take ? now : 0,
                                      err, err_len);
            rc = set < 0 ? set : 1;
        }
        jobs_row_cleanup(&cur);
    }
    if (in_tx)
        rc = end_tx(s, rc, err, err_len);
    unlock(s);
    return rc;
}

int jobs_store_claim(jobs_store *s, const char *id, char *err, size_t err_len)
{
    return change_claim(s, id, 1, err, err_len);
}

int jobs_store_unclaim(jobs_store *s, const char *id, char *err, size_t err_len)
{
    int rc = change_claim(s, id, 0, err, err_len);
    return rc < 0 ? rc : 0;
}

/* Calls cb for each job (all, or those whose status is in `statuses`, at most 16), newest
   first, a page at a time (PAGE_ROWS), the store unlocked while cb runs. */
int jobs_store_each(jobs_store *s, const jobs_status *statuses, size_t n_statuses,
                    int (*cb)(const jobs_row *r, void *user), void *user, char *err,
                    size_t err_len)
{
    jobs_row *rows = calloc(PAGE_ROWS, sizeof *rows);
    if (!rows)
        return -JOBS_E_NOMEM;
    if (n_statuses > 16)
        n_statuses = 16;
    int64_t after_ms = INT64_MAX;
    char after_id[40] = "";
    int rc = 0, stop = 0;
    while (!stop) {
        size_t n = 0;
        lock(s);
        rc = s->b->jobs_page(s->db, statuses, n_statuses, after_ms, after_id, rows, PAGE_ROWS,
                             &n, err, err_len);
        unlock(s);
        if (rc < 0)
            break;
        for (size_t i = 0; i < n; i++) {
            if (!stop)
                stop = cb(&rows[i], user);
            jobs_row_cleanup(&rows[i]);
        }
        if (n < PAGE_ROWS)
            break;
        after_ms = rows[n - 1].created_ms;
        snprintf(after_id, sizeof after_id, "%s", rows[n - 1].id);
    }
    free(rows);
    return rc < 0 ? rc : 0;
}

/* ---- shards and their leases ------------------------------------------------------------------ */

int jobs_store_shards_put(jobs_store *s, const char *job_id, const jobs_shard *shards, size_t n,
                          char *err, size_t err_len)
{
    lock(s);
    int rc = s->b->begin(s->db, err, err_len);
    if (rc == 0) {
        jobs_row r;
        int got = s->b->get(s->db, job_id, 1, &r, err, err_len);
        rc = got < 0 ? got : 0;
        if (got == 1) { /* the sum over shards without a checkpoint: 0 */
            if (r.succeeded || r.failed)
                rc = s->b->add_counts(s->db, job_id, -(int64_t)r.succeeded,
                                      -(int64_t)r.failed, err, err_len);
            jobs_row_cleanup(&r);
        }
        if (rc == 0)
            rc = s->b->shards_delete(s->db, job_id, err, err_len);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = s->b->shard_insert(s->db, job_id, &shards[i], err, err_len);
        rc = end_tx(s, rc, err, err_len);
    }
    unlock(s);
    return rc;
}

int jobs_store_shard_lease(jobs_store *s, const char *only_job, int64_t ttl_ms,
                           jobs_shard *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    char job_id[40];
    uint32_t index = 0;
    int64_t now = 0, token = 0;
    int found = 0;
    lock(s);
    int rc = s->b->begin(s->db, err, err_len);
    if (rc < 0) {
        unlock(s);
        return rc;
    }
    rc = s->b->now_ms(s->db, &now, err, err_len);
    if (rc == 0) {
        found = s->b->shard_pick(s->db, only_job, now, leasable,
                                 sizeof leasable / sizeof *leasable, job_id, &index, err,
                                 err_len);
        rc = found < 0 ? found : 0;
    }
    if (rc == 0 && found == 1)
        rc = s->b->next_token(s->db, &token, err, err_len);
    if (rc == 0 && found == 1)
        rc = s->b->shard_lease(s->db, job_id, index, token, s->worker_id, now + ttl_ms, err,
                               err_len);
    if (rc == 0 && found == 1) {
        rc = s->b->shard_get(s->db, job_id, index, out, err, err_len);
        if (rc == 0) {
            snprintf(err, err_len, "%s: shard %u of job %s vanished while leased", s->name,
                     index, job_id);
            rc = -JOBS_E_IO;
        }
        rc = rc < 0 ? rc : 0;
    }
    rc = end_tx(s, rc < 0 ? rc : found == 1, err, err_len);
    unlock(s);
    if (rc < 0)
        jobs_shard_cleanup(out);
    return rc;
}

int jobs_store_shard_renew(jobs_store *s, const char *job_id, uint32_t index, int64_t token,
                           int64_t ttl_ms, char *err, size_t err_len)
{
    int64_t now;
    lock(s);
    int rc = s->b->now_ms(s->db, &now, err, err_len);
    if (rc == 0)
        rc = s->b->shard_renew(s->db, job_id, index, token, s->worker_id, now + ttl_ms, err,
                               err_len);
    unlock(s);
    return rc;
}

int jobs_store_shard_save(jobs_store *s, const char *job_id, uint32_t index, int64_t token,
                          const char *ckpt, int complete, uint64_t succeeded,
                          uint64_t failed, char *err, size_t err_len)
{
    jobs_shard before;
    memset(&before, 0, sizeof before);
    lock(s);
    int rc = s->b->begin(s->db, err, err_len);
    if (rc < 0) {
        unlock(s);
        return rc;
    }
    /* the shard's counts before (one writer per lease: the fenced store below decides) */
    rc = s->b->shard_get(s->db, job_id, index, &before, err, err_len);
    if (rc >= 0)
        rc = rc == 1 ? s->b->shard_store(s->db, job_id, index, token, s->worker_id, ckpt,
                                         complete, succeeded, failed, err, err_len)
                     : 0;
    int64_t d_ok = (int64_t)succeeded - (int64_t)before.succeeded;
    int64_t d_bad = (int64_t)failed - (int64_t)before.failed;
    jobs_shard_cleanup(&before);
    if (rc == 1 && (d_ok || d_bad)) {
        int a = s->b->add_counts(s->db, job_id, d_ok, d_bad, err, err_len);
        rc = a < 0 ? a : 1;
    }
    if (rc == 1 && complete) { /* a complete shard's lease ends with it */
        int r = s->b->shard_release(s->db, job_id, index, token, s->worker_id, err, err_len);
        rc = r < 0 ? r : 1;
    }
    rc = end_tx(s, rc, err, err_len);
    unlock(s);
    return rc;
}

int jobs_store_shard_release(jobs_store *s, const char *job_id, uint32_t index,
                             int64_t token, char *err, size_t err_len)
{
    lock(s);
    int rc = s->b->shard_release(s->db, job_id, index, token, s->worker_id, err, err_len);
    unlock(s);
    return rc;
}

/* By index, a page at a time (PAGE_ROWS), the store unlocked while cb runs. */
int jobs_store_shards_each(jobs_store *s, const char *job_id,
                           int (*cb)(const jobs_shard *sh, void *user), void *user, char *err,
                           size_t err_len)
{
    jobs_shard *page = calloc(PAGE_ROWS, sizeof *page);
    if (!page)
        return -JOBS_E_NOMEM;
    int64_t after = -1;
    int rc = 0, stop = 0;
    while (!stop) {
        size_t n = 0;
        lock(s);
        rc = s->b->shards_page(s->db, job_id, after, page, PAGE_ROWS, &n, err, err_len);
        unlock(s);
        if (rc < 0)
            break;
        for (size_t i = 0; i < n; i++) {
            if (!stop)
                stop = cb(&page[i], user);
            jobs_shard_cleanup(&page[i]);
        }
        if (n < PAGE_ROWS)
            break;
        after = page[n - 1].index;
    }
    free(page);
    return rc < 0 ? rc : 0;
}

typedef struct reap_ctx {
    jobs_store *s;
    int n;
} reap_ctx;

static int reap_one(const jobs_shard *sh, void *user)
{
    reap_ctx *c = user;
    char err[256];
    if (!sh->complete && sh->owner[0] && owner_gone_here(c->s, sh->owner)) {
        lock(c->s);
        if (c->s->b->shard_release(c->s->db, sh->job_id, sh->index, sh->token, sh->owner, err,
                                   sizeof err) == 1)
            c->n++;
        unlock(c->s);
    }
    return 0;
}

int jobs_store_reap(jobs_store *s, const char *job_id, char *err, size_t err_len)
{
    reap_ctx c = {.s = s};
    int rc = jobs_store_shards_each(s, job_id, reap_one, &c, err, err_len);
    return rc < 0 ? rc : c.n;
}

int jobs_store_shards_count(jobs_store *s, const char *job_id, jobs_shard_counts *out,
                            char *err, size_t err_len)
{
    int64_t now;
    memset(out, 0, sizeof *out);
    lock(s);
    int rc = s->b->now_ms(s->db, &now, err, err_len);
    if (rc == 0)
        rc = s->b->shards_count(s->db, job_id, now, out, err, err_len);
    unlock(s);
    return rc;
}
