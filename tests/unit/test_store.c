/*
 * test_store.c — the job catalogue's interface (jobs/store.c) on either backend: the
 * catalogue $BATCHREP_TEST_CATALOG names (a postgresql:// URL; tests/integration/
 * test_catalog.py runs this program so against a private PostgreSQL), else SQLite in a
 * temporary directory. Both must answer alike.
 *
 * Two jobs_store_open in this process are two workers (distinct worker IDs), which is how
 * claims and leases between workers are tested. What the interface cannot set (a heartbeat
 * in the past, a dead owner, a schema from the future, a catalogue of an older batchrep) is
 * written with the engine's own client (libpq, or sqlite3), never with batchrep's code.
 * Nothing depends on the machine's speed: a lease expires after a TTL of 1 ms and a sleep of
 * 50 ms, which only needs time to pass. Every job ID starts with a random prefix, so a
 * catalogue used before does not get in the way.
 */
#include "jobs/jobs.h"
#include "tests/unit/tap.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *g_catalog;   /* NULL: SQLite in g_dir */
static char g_dir[64] = "/tmp/batchrep-test-store-XXXXXX";
static char g_run[9];           /* random prefix of this run's job IDs */

/* ---- helpers --------------------------------------------------------------------------- */

static jobs_store *open_store(const char *dir, char *err, size_t err_len)
{
    jobs_store *s = NULL;
    if (jobs_store_open(dir, g_catalog, &s, err, err_len) != 0)
        return NULL;
    return s;
}

/* One SQL text run on the catalogue (in g_dir, or dir) by the engine's own client. 0 or
   -1 (said as a diagnostic). */
static int raw_sql_in(const char *dir, const char *sql)
{
    if (g_catalog && !dir) {
        PGconn *c = PQconnectdb(g_catalog);
        int ok = PQstatus(c) == CONNECTION_OK;
        if (ok) {
            PGresult *r = PQexec(c, sql);
            ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
            if (!ok)
                tap_diag("psql %s: %s", sql, PQresultErrorMessage(r));
            PQclear(r);
        } else {
            tap_diag("cannot connect: %s", PQerrorMessage(c));
        }
        PQfinish(c);
        return ok ? 0 : -1;
    }
    char path[200];
    snprintf(path, sizeof path, "%s/batchrep.db", dir ? dir : g_dir);
    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    }
    if (rc != SQLITE_OK)
        tap_diag("sqlite3 %s: %s", sql, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int raw_sql(const char *sql)
{
    return raw_sql_in(NULL, sql);
}

static void make_row(jobs_row *r, const char *name, jobs_status st, int prio, int64_t created)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s-%s", g_run, name);
    snprintf(r->token, sizeof r->token, "tok-%s-%s", g_run, name);
    r->doc = "{\"d\":1}";
    r->status = st;
    r->priority = prio;
    r->created_ms = created;
}

static int insert(jobs_store *s, const jobs_row *r)
{
    char existing[40], err[1024];
    int rc = jobs_store_insert(s, r, existing, err, sizeof err);
    if (rc != 0 || existing[0])
        tap_diag("insert %s: rc %d, existing \"%s\": %s", r->id, rc, existing, err);
    return rc == 0 && !existing[0] ? 0 : -1;
}

/* A job with n shards of 10 rows each. */
static int job_with_shards(jobs_store *s, const char *name, jobs_status st, int prio,
                           int64_t created, uint32_t n)
{
    jobs_row r;
    char err[1024];
    make_row(&r, name, st, prio, created);
    if (insert(s, &r) != 0)
        return -1;
    jobs_shard *sh = calloc(n ? n : 1, sizeof *sh);
    for (uint32_t i = 0; i < n; i++) {
        sh[i].index = i;
        sh[i].first_seq = (uint64_t)i * 10;
        sh[i].n_rows = 10;
    }
    int rc = jobs_store_shards_put(s, r.id, sh, n, err, sizeof err);
    free(sh);
    if (rc != 0)
        tap_diag("shards_put %s: %s", r.id, err);
    return rc;
}

static void job_id(char *out, const char *name)
{
    snprintf(out, 40, "%s-%s", g_run, name);
}

static jobs_row get(jobs_store *s, const char *id)
{
    jobs_row r;
    char err[1024];
    memset(&r, 0, sizeof r);
    if (jobs_store_get(s, id, &r, err, sizeof err) != 1)
        tap_diag("get %s: not found or %s", id, err);
    return r;
}

/* ---- open, identity ---------------------------------------------------------------------- */

static void test_open(jobs_store *a, jobs_store *b)
{
    const char *ida = jobs_store_worker_id(a), *idb = jobs_store_worker_id(b);
    tap_ok(strcmp(ida, idb) != 0, "two stores of one process are two workers (%s, %s)", ida,
           idb);
    const char *p1 = strchr(ida, '/'), *p2 = p1 ? strchr(p1 + 1, '/') : NULL;
    tap_ok(p1 && p2 && atol(p1 + 1) == (long)getpid() && strlen(p2 + 1) == 16 &&
               strspn(p2 + 1, "0123456789abcdef") == 16,
           "worker ID is <hostname>/<pid>/<16 hex> (%s)", ida);
    const char *name = jobs_store_name(a);
    if (g_catalog) {
        tap_ok(jobs_store_shared(a) == 1, "PostgreSQL: a shared catalogue");
        tap_ok(strncmp(name, "postgresql://", 13) == 0 && !strchr(name, '@'),
               "its name is postgresql://host:port/db, no user or password (%s)", name);
    } else {
        char want[200];
        snprintf(want, sizeof want, "%s/batchrep.db", g_dir);
        tap_ok(jobs_store_shared(a) == 0, "SQLite: not shared");
        TAP_EQ_STR(name, want, "its name is the file's path");
        struct stat st;
        memset(&st, 0, sizeof st);
        int found = stat(want, &st) == 0;
        tap_ok(found && (st.st_mode & 0777) == 0600, "the file is private (%o)",
               (unsigned)(st.st_mode & 0777));
    }
}

/* ---- rows ---------------------------------------------------------------------------------- */

static void test_rows(jobs_store *s)
{
    char err[1024], existing[40];
    jobs_row r, got;
    make_row(&r, "row", JOBS_STATUS_NEW, 7, 1700000000123);
    r.rules = "{\"Rules\":[]}";
    r.total = 12;
    snprintf(r.doc_sha256, sizeof r.doc_sha256, "%064d", 1);
    snprintf(r.rules_sha256, sizeof r.rules_sha256, "%064d", 2);
    if (!tap_ok(insert(s, &r) == 0, "insert a job"))
        return;
    got = get(s, r.id);
    tap_ok(strcmp(got.token, r.token) == 0 && got.doc && strcmp(got.doc, r.doc) == 0 &&
               got.rules && strcmp(got.rules, r.rules) == 0 && got.status == JOBS_STATUS_NEW &&
               got.priority == 7 && got.total == 12 && got.created_ms == 1700000000123 &&
               strcmp(got.doc_sha256, r.doc_sha256) == 0 &&
               strcmp(got.rules_sha256, r.rules_sha256) == 0 && !got.owner[0] &&
               got.active_since_ms == 0 && got.terminated_ms == 0,
           "get: the row as inserted");
    jobs_row_cleanup(&got);
    jobs_row again = r;
    snprintf(again.id, sizeof again.id, "%s-other", g_run);
    int rc = jobs_store_insert(s, &again, existing, err, sizeof err);
    tap_ok(rc == 0 && strcmp(existing, r.id) == 0,
           "the same ClientRequestToken again: the existing job (%s)", existing);
    jobs_row none;
    tap_ok(jobs_store_get(s, "no-such-job", &none, err, sizeof err) == 0, "unknown ID: 0");

    /* save: what the worker changes; never the counters */
    make_row(&r, "save", JOBS_STATUS_READY, 1, 1700000000000);
    insert(s, &r);
    raw_sql("UPDATE jobs SET succeeded = 3, failed = 2 WHERE id LIKE '%-save'");
    r.status = JOBS_STATUS_ACTIVE;
    r.total = 77;
    r.succeeded = 999;
    r.failed = 999;
    r.active_ms = 123456;
    snprintf(r.failure_code, sizeof r.failure_code, "Code");
    snprintf(r.failure_reason, sizeof r.failure_reason, "reason \xc3\xa9 with UTF-8");
    snprintf(r.status_reason, sizeof r.status_reason, "because");
    snprintf(r.suspended_cause, sizeof r.suspended_cause, "cause");
    r.suspended_ms = 1700000000500;
    r.generated_manifest = "{\"m\":1}";
    r.rules = "{\"r\":2}";
    err[0] = '\0';
    rc = jobs_store_save(s, &r, err, sizeof err);
    got = get(s, r.id);
    tap_ok(rc == 0 && got.status == JOBS_STATUS_ACTIVE && got.total == 77 &&
               strcmp(got.failure_code, "Code") == 0 &&
               strcmp(got.failure_reason, r.failure_reason) == 0 &&
               strcmp(got.status_reason, "because") == 0 &&
               strcmp(got.suspended_cause, "cause") == 0 &&
               got.suspended_ms == 1700000000500 && got.generated_manifest &&
               strcmp(got.generated_manifest, "{\"m\":1}") == 0 && got.rules &&
               strcmp(got.rules, "{\"r\":2}") == 0,
           "save writes status, total, failure, reasons, suspension, manifest, rules (%s)",
           err);
    tap_ok(got.succeeded == 3 && got.failed == 2,
           "save leaves the counters alone (%llu, %llu; the row said 999)",
           (unsigned long long)got.succeeded, (unsigned long long)got.failed);
    int64_t since = got.active_since_ms;
    tap_ok(got.active_ms == 0 && since > 0,
           "entering Active starts the clock (active_since_ms %lld), active_ms is the store's "
           "(0, not the row's 123456)",
           (long long)since);
    jobs_row_cleanup(&got);
    usleep(30000);
    rc = jobs_store_save(s, &r, err, sizeof err); /* Active again: the clock keeps running */
    got = get(s, r.id);
    tap_ok(rc == 0 && got.active_since_ms == since && got.active_ms == 0,
           "staying Active keeps the clock's start");
    jobs_row_cleanup(&got);
    r.status = JOBS_STATUS_PAUSED;
    rc = jobs_store_save(s, &r, err, sizeof err);
    got = get(s, r.id);
    tap_ok(rc == 0 && got.status == JOBS_STATUS_PAUSED && got.active_since_ms == 0 &&
               got.active_ms >= 30 && got.active_ms < 60000,
           "leaving Active adds its time to active_ms (%lld ms after a 30 ms sleep)",
           (long long)got.active_ms);
    int64_t active = got.active_ms;
    jobs_row_cleanup(&got);
    r.status = JOBS_STATUS_ACTIVE;
    jobs_store_save(s, &r, err, sizeof err);
    usleep(20000);
    r.status = JOBS_STATUS_PAUSING;
    jobs_store_save(s, &r, err, sizeof err);
    got = get(s, r.id);
    tap_ok(got.active_ms >= active + 20 && got.active_since_ms == 0,
           "a second Active stretch adds to the first (%lld -> %lld ms)", (long long)active,
           (long long)got.active_ms);
    jobs_row_cleanup(&got);

    /* the merged status: a request's status the worker may not leave stays */
    make_row(&r, "merge", JOBS_STATUS_ACTIVE, 1, 1700000000000);
    insert(s, &r);
    rc = jobs_store_cas_status(s, r.id, JOBS_STATUS_ACTIVE, JOBS_STATUS_CANCELLING, "stop it",
                               err, sizeof err);
    got = get(s, r.id);
    tap_ok(rc == 1 && got.status == JOBS_STATUS_CANCELLING &&
               strcmp(got.status_reason, "stop it") == 0 && got.active_since_ms == 0,
           "cas Active -> Cancelling: 1, the reason kept, the Active clock stopped");
    jobs_row_cleanup(&got);
    r.status = JOBS_STATUS_ACTIVE;
    jobs_store_save(s, &r, err, sizeof err);
    got = get(s, r.id);
    tap_ok(got.status == JOBS_STATUS_CANCELLING, "a worker's Active does not undo a cancel (%s)",
           jobs_status_name(got.status));
    jobs_row_cleanup(&got);
    rc = jobs_store_cas_status(s, r.id, JOBS_STATUS_ACTIVE, JOBS_STATUS_CANCELLING, NULL, err,
                               sizeof err);
    tap_ok(rc == 0, "cas from a status the job is not in: 0");
    rc = jobs_store_cas_status(s, r.id, JOBS_STATUS_CANCELLING, JOBS_STATUS_CANCELLED, NULL,
                               err, sizeof err);
    got = get(s, r.id);
    int64_t term = got.terminated_ms;
    tap_ok(rc == 1 && got.status == JOBS_STATUS_CANCELLED && term > 0 &&
               strcmp(got.status_reason, "stop it") == 0,
           "cas to Cancelled stamps the termination, keeps the reason when given none");
    jobs_row_cleanup(&got);
    r.status = JOBS_STATUS_COMPLETE;
    r.terminated_ms = 0;
    jobs_store_save(s, &r, err, sizeof err);
    got = get(s, r.id);
    tap_ok(got.status == JOBS_STATUS_CANCELLED && got.terminated_ms == term,
           "a terminal status stays, with its termination time");
    jobs_row_cleanup(&got);

    tap_ok(jobs_store_set_priority(s, r.id, 42, err, sizeof err) == 1 &&
               jobs_store_set_priority(s, "no-such-job", 1, err, sizeof err) == 0,
           "set_priority: 1 for a job, 0 for none");
    got = get(s, r.id);
    tap_ok(got.priority == 42, "priority 42 stored");
    jobs_row_cleanup(&got);
}

/* ---- each ---------------------------------------------------------------------------------- */

typedef struct each_ctx {
    jobs_store *s;
    const char *prefix;          /* the jobs counted: IDs starting so (default this run's) */
    int seen, ours, reentered, stop_after;
    int64_t last_created;
    int ordered;
    char last_id[40];
    int dup;
} each_ctx;

static int each_cb(const jobs_row *r, void *user)
{
    each_ctx *c = user;
    c->seen++;
    const char *prefix = c->prefix ? c->prefix : g_run;
    if (strncmp(r->id, prefix, strlen(prefix)) != 0)
        return 0;
    c->ours++;
    if (r->created_ms > c->last_created ||
        (r->created_ms == c->last_created && strcmp(r->id, c->last_id) <= 0))
        c->ordered = 0;
    if (strcmp(r->id, c->last_id) == 0)
        c->dup++;
    c->last_created = r->created_ms;
    snprintf(c->last_id, sizeof c->last_id, "%s", r->id);
    jobs_row again;
    char err[1024];
    if (jobs_store_get(c->s, r->id, &again, err, sizeof err) == 1) { /* the store again */
        c->reentered++;
        jobs_row_cleanup(&again);
    }
    return c->stop_after && c->ours >= c->stop_after;
}

static void test_each(jobs_store *s)
{
    char err[1024];
    /* 70 jobs (more than a page) created in the same ms, and 3 of distinct statuses */
    for (int i = 0; i < 70; i++) {
        jobs_row r;
        char name[32];
        snprintf(name, sizeof name, "each-%02d", i);
        make_row(&r, name, JOBS_STATUS_FAILED, 1, 1800000000000);
        insert(s, &r);
    }
    jobs_row r;
    make_row(&r, "each-ready", JOBS_STATUS_READY, 1, 1800000000003);
    insert(s, &r);
    make_row(&r, "each-paused", JOBS_STATUS_PAUSED, 1, 1800000000002);
    insert(s, &r);
    make_row(&r, "each-susp", JOBS_STATUS_SUSPENDED, 1, 1800000000001);
    insert(s, &r);
    each_ctx c = {.s = s, .last_created = INT64_MAX, .ordered = 1};
    int rc = jobs_store_each(s, NULL, 0, each_cb, &c, err, sizeof err);
    tap_ok(rc == 0 && c.ours >= 73 + 1 && c.ordered && !c.dup,
           "each: every job (%d of this run; pages of 64 rows), newest first, ties by ID, "
           "none twice",
           c.ours);
    tap_ok(c.reentered == c.ours, "the callback may call the store (%d of %d)", c.reentered,
           c.ours);
    jobs_status want[] = {JOBS_STATUS_PAUSED, JOBS_STATUS_SUSPENDED};
    char prefix[40];
    job_id(prefix, "each-");
    c = (each_ctx){.s = s, .prefix = prefix, .last_created = INT64_MAX, .ordered = 1};
    rc = jobs_store_each(s, want, 2, each_cb, &c, err, sizeof err);
    tap_ok(rc == 0 && c.ours == 2 && c.ordered, "each with statuses Paused, Suspended: those 2");
    c = (each_ctx){.s = s, .last_created = INT64_MAX, .ordered = 1, .stop_after = 1};
    jobs_status failed = JOBS_STATUS_FAILED;
    rc = jobs_store_each(s, &failed, 1, each_cb, &c, err, sizeof err);
    tap_ok(rc == 0 && c.ours == 1, "a callback returning nonzero stops each");
}

/* ---- claims ---------------------------------------------------------------------------------- */

static void test_claim(jobs_store *a, jobs_store *b)
{
    char err[1024], id[40], sql[512];
    jobs_row r;
    make_row(&r, "claim", JOBS_STATUS_NEW, 1, 1700000000000);
    insert(a, &r);
    snprintf(id, sizeof id, "%s", r.id);
    tap_ok(jobs_store_claim(a, id, err, sizeof err) == 1, "worker A claims a free job");
    jobs_row got = get(a, id);
    tap_ok(strcmp(got.owner, jobs_store_worker_id(a)) == 0 && got.owner_seen_ms > 0,
           "the owner is A's worker ID, with a heartbeat");
    int64_t seen = got.owner_seen_ms;
    jobs_row_cleanup(&got);
    tap_ok(jobs_store_claim(b, id, err, sizeof err) == 0, "worker B cannot claim it (A holds it)");
    usleep(5000);
    tap_ok(jobs_store_claim(a, id, err, sizeof err) == 1, "A claims it again: renewed");
    got = get(a, id);
    tap_ok(got.owner_seen_ms > seen, "its heartbeat moved (%lld -> %lld)", (long long)seen,
           (long long)got.owner_seen_ms);
    jobs_row_cleanup(&got);
    tap_ok(jobs_store_unclaim(b, id, err, sizeof err) == 0 &&
               jobs_store_claim(b, id, err, sizeof err) == 0,
           "B's unclaim of A's claim does nothing");
    tap_ok(jobs_store_unclaim(a, id, err, sizeof err) == 0, "A gives the claim up");
    got = get(a, id);
    tap_ok(!got.owner[0], "no owner now");
    jobs_row_cleanup(&got);
    tap_ok(jobs_store_claim(b, id, err, sizeof err) == 1, "B claims it at once");
    tap_ok(jobs_store_claim(b, "no-such-job", err, sizeof err) == 0, "claim of no job: 0");

    /* B's heartbeat 31 s old: stale, A takes it */
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET owner_seen_ms = owner_seen_ms - 31000 WHERE id = '%s'", id);
    raw_sql(sql);
    tap_ok(jobs_store_claim(a, id, err, sizeof err) == 1,
           "a heartbeat older than JOBS_CLAIM_STALE_MS: another worker takes the job");

    /* a fresh heartbeat of a process of this host that is gone: free at once */
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    char host[128];
    snprintf(host, sizeof host, "%s", jobs_store_worker_id(a));
    *strchr(host, '/') = '\0';
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET owner = '%s/%ld/0123456789abcdef', owner_seen_ms = %lld "
             "WHERE id = '%s'",
             host, (long)pid, (long long)s3_wall_ms(), id);
    raw_sql(sql);
    tap_ok(jobs_store_claim(b, id, err, sizeof err) == 1,
           "the owner is a process of this host that is gone: taken at once");
    /* a fresh heartbeat of another machine's worker: held */
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET owner = 'elsewhere.invalid/1/0123456789abcdef', owner_seen_ms = "
             "%lld WHERE id = '%s'",
             (long long)s3_wall_ms(), id);
    raw_sql(sql);
    tap_ok(jobs_store_claim(b, id, err, sizeof err) == 0,
           "another machine's worker with a fresh heartbeat: held");
}

/* ---- shards ------------------------------------------------------------------------------------ */

static int lease(jobs_store *s, const char *only, int64_t ttl_ms, jobs_shard *out)
{
    char err[1024];
    int rc = jobs_store_shard_lease(s, only, ttl_ms, out, err, sizeof err);
    if (rc < 0)
        tap_diag("lease: %s", err);
    return rc;
}

/* Which shards are leased first: priority DESC, created ASC, index ASC, from the leasable
   statuses only; tokens increase. */
static void test_lease_order(jobs_store *s)
{
    const int64_t t = 1900000000000;
    const int top = 2000000000;
    job_with_shards(s, "ord-p", JOBS_STATUS_READY, top, t, 2);
    job_with_shards(s, "ord-q", JOBS_STATUS_ACTIVE, top, t + 1, 1);
    job_with_shards(s, "ord-r", JOBS_STATUS_PAUSED, top - 1, t, 1);
    job_with_shards(s, "ord-x", JOBS_STATUS_PAUSING, top - 2, t, 1);
    static const jobs_status never[] = {JOBS_STATUS_NEW,       JOBS_STATUS_PREPARING,
                                        JOBS_STATUS_SUSPENDED, JOBS_STATUS_COMPLETING,
                                        JOBS_STATUS_COMPLETE,  JOBS_STATUS_FAILING,
                                        JOBS_STATUS_FAILED,    JOBS_STATUS_CANCELLING,
                                        JOBS_STATUS_CANCELLED};
    for (size_t i = 0; i < sizeof never / sizeof *never; i++) {
        char name[32];
        snprintf(name, sizeof name, "ord-never-%zu", i);
        job_with_shards(s, name, never[i], top + 1, t - 1, 1);
    }
    char want[5][48], got[5][48];
    snprintf(want[0], 48, "%s-ord-p#0", g_run);
    snprintf(want[1], 48, "%s-ord-p#1", g_run);
    snprintf(want[2], 48, "%s-ord-q#0", g_run);
    snprintf(want[3], 48, "%s-ord-r#0", g_run);
    snprintf(want[4], 48, "%s-ord-x#0", g_run);
    int n = 0, increasing = 1, fresh = 1, never_leased = 1;
    int64_t last = 0;
    for (int i = 0; i < 200; i++) {
        jobs_shard sh;
        if (lease(s, NULL, 60000, &sh) != 1)
            break;
        if (sh.token <= last)
            increasing = 0;
        last = sh.token;
        if (strncmp(sh.job_id, g_run, 8) == 0) {
            if (strstr(sh.job_id, "ord-never"))
                never_leased = 0;
            else if (n < 5)
                snprintf(got[n++], 48, "%s#%u", sh.job_id, sh.index);
            if (sh.leased_before || strcmp(sh.owner, jobs_store_worker_id(s)) != 0 ||
                sh.n_rows != 10 || sh.first_seq != (uint64_t)sh.index * 10)
                fresh = 0;
        }
        jobs_shard_cleanup(&sh);
    }
    int same = n == 5;
    for (int i = 0; same && i < 5; i++)
        same = strcmp(want[i], got[i]) == 0;
    tap_ok(same, "leases by priority DESC, created ASC, index ASC: P#0 P#1 Q#0 R#0 X#0 (%d "
                 "leased: %s %s %s %s %s)",
           n, n > 0 ? got[0] : "", n > 1 ? got[1] : "", n > 2 ? got[2] : "",
           n > 3 ? got[3] : "", n > 4 ? got[4] : "");
    tap_ok(never_leased, "only Ready, Active, Pausing, Paused jobs' shards are leased");
    tap_ok(increasing, "each lease's token is larger than the one before");
    tap_ok(fresh, "a first lease: this worker's, leased_before 0, the shard's rows as put");
    /* out of the way of the other tests: these jobs end */
    const char *const names[] = {"ord-p", "ord-q", "ord-r", "ord-x"};
    const jobs_status from[] = {JOBS_STATUS_READY, JOBS_STATUS_ACTIVE, JOBS_STATUS_PAUSED,
                                JOBS_STATUS_PAUSING};
    for (int i = 0; i < 4; i++) {
        char id[40], err[1024];
        job_id(id, names[i]);
        jobs_store_cas_status(s, id, from[i], JOBS_STATUS_CANCELLED, NULL, err, sizeof err);
    }
}

static void test_expiry(jobs_store *a, jobs_store *b)
{
    char err[1024], id[40];
    job_with_shards(a, "exp", JOBS_STATUS_READY, 5, 1700000000000, 1);
    job_id(id, "exp");
    jobs_shard s1, s2;
    if (!tap_ok(lease(a, id, 1, &s1) == 1, "A leases the shard for 1 ms"))
        return;
    usleep(50000);
    jobs_shard_counts cnt;
    jobs_store_shards_count(a, id, &cnt, err, sizeof err);
    tap_ok(cnt.n == 1 && cnt.leased == 0, "50 ms later its lease has expired (leased %llu)",
           (unsigned long long)cnt.leased);
    if (!tap_ok(lease(b, id, 60000, &s2) == 1, "B leases it"))
        return;
    tap_ok(s2.index == s1.index && s2.token > s1.token && s2.leased_before &&
               strcmp(s2.owner, jobs_store_worker_id(b)) == 0,
           "the same shard, a larger token (%lld > %lld), leased_before 1, B's",
           (long long)s2.token, (long long)s1.token);
    tap_ok(jobs_store_shard_save(a, id, s1.index, s1.token, "{\"a\":1}", 0, 100, 100, err,
                                 sizeof err) == 0,
           "A's checkpoint with the old token is refused (0)");
    tap_ok(jobs_store_shard_renew(a, id, s1.index, s1.token, 60000, err, sizeof err) == 0,
           "A's renewal with the old token: 0 (lost)");
    tap_ok(jobs_store_shard_release(a, id, s1.index, s1.token, err, sizeof err) == 0,
           "A's release with the old token: 0");
    tap_ok(jobs_store_shard_renew(b, id, s2.index, s2.token, 60000, err, sizeof err) == 1,
           "B renews its lease: 1");
    tap_ok(jobs_store_shard_save(b, id, s2.index, s2.token, "{\"done\":5}", 0, 5, 1, err,
                                 sizeof err) == 1,
           "B's checkpoint is saved (1)");
    jobs_row r = get(a, id);
    tap_ok(r.succeeded == 5 && r.failed == 1, "the job's counts are its shard's (5, 1)");
    jobs_row_cleanup(&r);
    /* a checkpoint that counts fewer (its progress was lost and redone): the job follows */
    tap_ok(jobs_store_shard_save(b, id, s2.index, s2.token, "{\"done\":2}", 0, 2, 0, err,
                                 sizeof err) == 1,
           "a checkpoint that counts fewer tasks is saved");
    r = get(a, id);
    tap_ok(r.succeeded == 2 && r.failed == 0,
           "the job's counts follow the shard's, never add up twice (2, 0; got %llu, %llu)",
           (unsigned long long)r.succeeded, (unsigned long long)r.failed);
    jobs_row_cleanup(&r);
    tap_ok(jobs_store_shard_save(b, id, s2.index, s2.token, "{\"done\":5}", 0, 5, 1, err,
                                 sizeof err) == 1, "and back to (5, 1)");
    tap_ok(jobs_store_shard_save(b, id, s2.index, s2.token, "{\"done\":10}", 1, 10, 1, err,
                                 sizeof err) == 1,
           "B's last checkpoint completes the shard (its counts: 10, 1)");
    r = get(a, id);
    tap_ok(r.succeeded == 10 && r.failed == 1, "the job's counts: 10, 1");
    jobs_row_cleanup(&r);
    tap_ok(jobs_store_shard_save(b, id, s2.index, s2.token, "{\"done\":10}", 1, 50, 0, err,
                                 sizeof err) == 0,
           "a complete shard takes no more checkpoints (0)");
    r = get(a, id);
    tap_ok(r.succeeded == 10, "and its counts stay (%llu)", (unsigned long long)r.succeeded);
    jobs_row_cleanup(&r);
    tap_ok(jobs_store_shard_renew(b, id, s2.index, s2.token, 60000, err, sizeof err) == 0,
           "renewal of a complete shard: 0");
    jobs_shard s3;
    tap_ok(lease(a, id, 60000, &s3) == 0 && lease(b, id, 1, &s3) == 0,
           "a complete shard is never leased");
    jobs_store_shards_count(a, id, &cnt, err, sizeof err);
    tap_ok(cnt.n == 1 && cnt.complete == 1 && cnt.leased == 0, "count: 1 shard, 1 complete");
    jobs_shard_cleanup(&s1);
    jobs_shard_cleanup(&s2);

    /* a lease that expired but was not taken is renewed */
    job_with_shards(a, "exp2", JOBS_STATUS_ACTIVE, 5, 1700000000000, 1);
    job_id(id, "exp2");
    if (lease(a, id, 1, &s1) == 1) {
        usleep(50000);
        tap_ok(jobs_store_shard_renew(a, id, s1.index, s1.token, 60000, err, sizeof err) == 1,
               "an expired lease nobody took is renewed (1)");
        jobs_store_shards_count(a, id, &cnt, err, sizeof err);
        tap_ok(cnt.leased == 1, "and counts as leased again");
        tap_ok(lease(b, id, 60000, &s2) == 0, "so B finds nothing to lease");
        jobs_shard_cleanup(&s1);
    }
}

static void test_release(jobs_store *a, jobs_store *b)
{
    char err[1024], id[40];
    job_with_shards(a, "rel", JOBS_STATUS_ACTIVE, 5, 1700000000000, 2);
    job_id(id, "rel");
    jobs_shard s1, s2, s3;
    if (lease(a, id, 60000, &s1) != 1 || s1.index != 0)
        return (void)tap_ok(0, "A leases shard 0");
    tap_ok(jobs_store_shard_release(b, id, s1.index, s1.token, err, sizeof err) == 0,
           "B cannot release A's lease (0)");
    tap_ok(jobs_store_shard_release(a, id, s1.index, s1.token, err, sizeof err) == 1,
           "A releases it (1)");
    tap_ok(lease(b, id, 60000, &s2) == 1 && s2.index == 0 && s2.leased_before &&
               s2.token > s1.token,
           "B leases shard 0 at once, leased_before 1");
    tap_ok(jobs_store_shard_release(b, id, s2.index, s2.token + 1000, err, sizeof err) == 0,
           "a release with another token: 0");
    tap_ok(jobs_store_shard_save(a, id, s1.index, s1.token, "{}", 0, 1, 0, err, sizeof err) == 0,
           "A's checkpoint after its release: refused");
    tap_ok(lease(a, id, 60000, &s3) == 1 && s3.index == 1, "A leases shard 1");
    jobs_shard_counts cnt;
    tap_ok(jobs_store_shards_count(a, id, &cnt, err, sizeof err) == 0 && cnt.n == 2 &&
               cnt.complete == 0 && cnt.leased == 2,
           "count: 2 shards, 0 complete, 2 leased");
    jobs_shard sx;
    tap_ok(lease(a, id, 60000, &sx) == 0, "nothing left to lease of that job");
    jobs_shard_cleanup(&s1);
    jobs_shard_cleanup(&s2);
    jobs_shard_cleanup(&s3);
}

typedef struct shards_ctx {
    jobs_store *s;
    int n, in_order, stop_after, counted;
    int64_t last;
    int uncertain_ok;
} shards_ctx;

static int shards_cb(const jobs_shard *sh, void *user)
{
    shards_ctx *c = user;
    jobs_shard_counts cnt;
    char err[1024];
    if ((int64_t)sh->index <= c->last)
        c->in_order = 0;
    c->last = sh->index;
    if (sh->uncertain != (sh->index % 2 == 1))
        c->uncertain_ok = 0;
    c->n++;
    if (jobs_store_shards_count(c->s, sh->job_id, &cnt, err, sizeof err) == 0)
        c->counted++;
    return c->stop_after && c->n >= c->stop_after;
}

static void test_shards_put(jobs_store *s)
{
    char err[1024], id[40];
    job_with_shards(s, "put", JOBS_STATUS_NEW, 5, 1700000000000, 3);
    job_id(id, "put");
    jobs_shard sh[70];
    memset(sh, 0, sizeof sh);
    for (uint32_t i = 0; i < 70; i++) {
        sh[i].index = i;
        sh[i].first_seq = 1000 + i;
        sh[i].n_rows = 1;
        sh[i].uncertain = i % 2 == 1;
    }
    int rc = jobs_store_shards_put(s, id, sh, 70, err, sizeof err);
    jobs_shard_counts cnt;
    jobs_store_shards_count(s, id, &cnt, err, sizeof err);
    tap_ok(rc == 0 && cnt.n == 70, "shards_put replaces the job's shards (3 -> %llu)",
           (unsigned long long)cnt.n);
    shards_ctx c = {.s = s, .in_order = 1, .last = -1, .uncertain_ok = 1};
    rc = jobs_store_shards_each(s, id, shards_cb, &c, err, sizeof err);
    tap_ok(rc == 0 && c.n == 70 && c.in_order && c.uncertain_ok,
           "shards_each: all 70 by index (pages of 64), uncertain as put (%d)", c.n);
    tap_ok(c.counted == 70, "its callback may call the store");
    c = (shards_ctx){.s = s, .in_order = 1, .last = -1, .uncertain_ok = 1, .stop_after = 2};
    jobs_store_shards_each(s, id, shards_cb, &c, err, sizeof err);
    tap_ok(c.n == 2, "a callback returning nonzero stops shards_each");
    tap_ok(jobs_store_shards_put(s, id, sh, 0, err, sizeof err) == 0 &&
               jobs_store_shards_count(s, id, &cnt, err, sizeof err) == 0 && cnt.n == 0,
           "shards_put of none: the job has none");
}

/* Several threads of one process share one store. */
typedef struct thread_ctx {
    jobs_store *s;
    const char *job;
    int leased, saved, errors;
} thread_ctx;

static void *lease_loop(void *arg)
{
    thread_ctx *t = arg;
    char err[1024];
    for (;;) {
        jobs_shard sh;
        int rc = jobs_store_shard_lease(t->s, t->job, 60000, &sh, err, sizeof err);
        if (rc < 0)
            t->errors++;
        if (rc != 1)
            break;
        t->leased++;
        if (jobs_store_shard_renew(t->s, t->job, sh.index, sh.token, 60000, err, sizeof err) != 1)
            t->errors++;
        if (jobs_store_shard_save(t->s, t->job, sh.index, sh.token, "{\"done\":true}", 1, 1, 0,
                                  err, sizeof err) == 1)
            t->saved++;
        else
            t->errors++;
        jobs_shard_cleanup(&sh);
    }
    return NULL;
}

static void test_threads(jobs_store *s)
{
    char err[1024], id[40];
    job_with_shards(s, "threads", JOBS_STATUS_ACTIVE, 5, 1700000000000, 40);
    job_id(id, "threads");
    thread_ctx t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (thread_ctx){.s = s, .job = id};
        pthread_create(&th[i], NULL, lease_loop, &t[i]);
    }
    int leased = 0, saved = 0, errors = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        leased += t[i].leased;
        saved += t[i].saved;
        errors += t[i].errors;
    }
    jobs_shard_counts cnt;
    jobs_store_shards_count(s, id, &cnt, err, sizeof err);
    jobs_row r = get(s, id);
    tap_ok(leased == 40 && saved == 40 && errors == 0 && cnt.complete == 40 &&
               r.succeeded == 40,
           "4 threads on one store: each of 40 shards leased once and completed (%d leased, "
           "%d saved, %d errors, %llu complete, %llu counted)",
           leased, saved, errors, (unsigned long long)cnt.complete,
           (unsigned long long)r.succeeded);
    jobs_row_cleanup(&r);
}

/* PostgreSQL: the server drops the store's connection (as a restart or a network cut does):
   the next call fails with a message that names the catalogue, and the one after that
   reconnects. */
static void test_reconnect(jobs_store *a)
{
    char err[1024] = "", id[40];
    jobs_row r;
    make_row(&r, "reconnect", JOBS_STATUS_READY, 1, 1700000000000);
    insert(a, &r);
    job_id(id, "reconnect");
    /* pg_terminate_backend(pid, timeout) waits until the backend is gone (PostgreSQL 14+) */
    if (!tap_ok(raw_sql("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE "
                        "application_name = 'batchrep'") == 0,
                "the server ends batchrep's connections"))
        return;
    jobs_row got;
    int rc = jobs_store_get(a, id, &got, err, sizeof err);
    const char *pw = strchr(g_catalog + 13, ':');
    tap_ok(rc == -JOBS_E_IO && strstr(err, "unreachable") && strstr(err, "postgresql://"),
           "the next call fails: %s", err);
    tap_ok(!strstr(g_catalog, "hunter2") || !strstr(err, "hunter2"),
           "without the password (%s)", pw ? "the URL has one" : "the URL has none");
    rc = jobs_store_get(a, id, &got, err, sizeof err);
    tap_ok(rc == 1, "the one after reconnects: found (%s)", rc < 0 ? err : "");
    if (rc == 1)
        jobs_row_cleanup(&got);
    raw_sql("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE "
            "application_name = 'batchrep'");
    r.status = JOBS_STATUS_ACTIVE;
    rc = jobs_store_save(a, &r, err, sizeof err);
    tap_ok(rc == -JOBS_E_IO, "a save on a dropped connection fails (%d)", rc);
    rc = jobs_store_save(a, &r, err, sizeof err);
    got = get(a, id);
    tap_ok(rc == 0 && got.status == JOBS_STATUS_ACTIVE, "and the next save is done (%s)",
           rc ? err : jobs_status_name(got.status));
    jobs_row_cleanup(&got);
}

/* ---- schema versions ---------------------------------------------------------------------------- */

static void test_schema(void)
{
    char err[1024] = "";
    if (!tap_ok(raw_sql("UPDATE batchrep_schema SET version = 99") == 0,
                "the catalogue's schema version set to 99 (as a newer batchrep would)"))
        return;
    jobs_store *s = NULL;
    int rc = jobs_store_open(g_dir, g_catalog, &s, err, sizeof err);
    tap_ok(rc == -JOBS_E_SCHEMA && strstr(err, "version 99") && strstr(err, "(2)") &&
               strstr(err, "upgrade batchrep"),
           "a newer catalogue is refused, naming both versions: %s", err);
    jobs_store_close(s);
    raw_sql("UPDATE batchrep_schema SET version = 2");
    s = open_store(g_dir, err, sizeof err);
    tap_ok(s != NULL, "version 2 again: it opens");
    jobs_store_close(s);
}

/* A catalogue of the batchrep before the version table (SQLite only): the oldest jobs table,
   without the idempotency digests, with owner_pid. */
static void test_migration(void)
{
    char dir[] = "/tmp/batchrep-test-store-old-XXXXXX", err[1024] = "";
    if (!tap_ok(mkdtemp(dir) != NULL, "a temporary directory for an old catalogue"))
        return;
    int rc = raw_sql_in(
        dir,
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, doc TEXT NOT "
        "NULL, rules TEXT, status TEXT NOT NULL, priority INTEGER NOT NULL, total INTEGER NOT "
        "NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL "
        "DEFAULT 0, created_ms INTEGER NOT NULL, terminated_ms INTEGER, active_ms INTEGER NOT "
        "NULL DEFAULT 0, failure_code TEXT, failure_reason TEXT, status_reason TEXT, "
        "suspended_ms INTEGER, suspended_cause TEXT, generated_manifest TEXT, owner_pid "
        "INTEGER, owner_seen_ms INTEGER);"
        "INSERT INTO jobs (id, token, doc, status, priority, created_ms, succeeded, "
        "active_ms, owner_pid, owner_seen_ms) VALUES ('old-1', 'old-token', '{}', 'Active', 3, "
        "1600000000000, 4, 5000, 1, 1600000000000);");
    jobs_store *s = rc == 0 ? open_store(dir, err, sizeof err) : NULL;
    if (!tap_ok(s != NULL, "an old catalogue opens (%s)", err))
        return;
    jobs_row r;
    rc = jobs_store_get(s, "old-1", &r, err, sizeof err);
    tap_ok(rc == 1 && r.status == JOBS_STATUS_ACTIVE && r.priority == 3 && r.succeeded == 4 &&
               r.active_ms == 5000 && !r.owner[0] && !r.doc_sha256[0] && r.active_since_ms == 0,
           "its job reads as it was (no owner, no digests, no Active clock yet)");
    r.status = JOBS_STATUS_ACTIVE;
    jobs_store_save(s, &r, err, sizeof err);
    jobs_row_cleanup(&r);
    jobs_store_get(s, "old-1", &r, err, sizeof err);
    tap_ok(r.active_since_ms > 0 && r.active_ms == 5000,
           "a save of the Active job starts its clock; the old Active time stays");
    jobs_row_cleanup(&r);
    jobs_shard sh = {.index = 0, .n_rows = 1};
    jobs_shard got;
    memset(&got, 0, sizeof got);
    int ok = jobs_store_claim(s, "old-1", err, sizeof err) == 1 &&
             jobs_store_shards_put(s, "old-1", &sh, 1, err, sizeof err) == 0 &&
             jobs_store_shard_lease(s, NULL, 1000, &got, err, sizeof err) == 1 && got.token == 1;
    tap_ok(ok, "claims, shards and leases work on it (token %lld) %s", (long long)got.token,
           err);
    jobs_shard_cleanup(&got);
    jobs_store_close(s);
    sqlite3 *db;
    char path[200];
    snprintf(path, sizeof path, "%s/batchrep.db", dir);
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    long version = 0;
    if (sqlite3_prepare_v2(db, "SELECT version FROM batchrep_schema", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = (long)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    tap_ok(version == JOBS_SCHEMA_VERSION, "batchrep_schema says version %ld", version);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        tap_diag("cannot remove %s", dir);
}

int main(void)
{
    char err[1024] = "";
    unsetenv("BATCHREP_CATALOG");
    g_catalog = getenv("BATCHREP_TEST_CATALOG");
    if (g_catalog && !*g_catalog)
        g_catalog = NULL;
    if (!mkdtemp(g_dir)) {
        tap_ok(0, "temporary directory");
        return tap_done();
    }
    char uuid[37];
    s3_uuid4(uuid);
    memcpy(g_run, uuid, 8);
    tap_diag("catalogue: %s; job IDs %s-*", g_catalog ? "$BATCHREP_TEST_CATALOG" : "SQLite",
             g_run);
    jobs_store *a = open_store(g_dir, err, sizeof err);
    jobs_store *b = a ? open_store(g_dir, err, sizeof err) : NULL;
    if (tap_ok(a && b, "two stores open the catalogue %s", err)) {
        test_open(a, b);
        test_lease_order(a); /* first: nothing else of this run is leasable yet */
        test_rows(a);
        test_each(a);
        test_claim(a, b);
        test_expiry(a, b);
        test_release(a, b);
        test_shards_put(a);
        test_threads(a);
        if (g_catalog)
            test_reconnect(a);
    }
    jobs_store_close(a);
    jobs_store_close(b);
    test_schema();
    if (!g_catalog)
        test_migration();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        tap_diag("cannot remove %s", g_dir);
    return tap_done();
}
