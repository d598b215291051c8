/*
 * store.c — the job catalogue: one SQLite database in WAL mode, <state>/batchrep.db.
 *
 * WAL lets a running worker write progress while other processes (`describe-job`,
 * `list-jobs`, `update-job-*`) read and write the same catalogue; every connection waits up
 * to 10 s on a lock (busy_timeout) instead of failing. A row holds the CreateJob document as
 * given, the replication configuration captured at creation (or NULL: read the source
 * bucket's), status, priority, counters, timestamps, failure reason, and which worker owns
 * the job (pid + heartbeat) so a job whose worker died — kill -9 — is taken over by the next
 * worker. Per-task progress is not here: it is the checkpoint file next to the job's report
 * (checkpoint.c), written far more often than a catalogue row would like. Each row has a
 * record in its job's folder (recover.c), written right after it: a catalogue lost, emptied
 * or damaged (moved aside when SQLite says so) is rebuilt from the job folders when it
 * opens.
 */
#include "jobs/jobs_int.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OWNER_STALE_MS 30000 /* a heartbeat older than this frees the job (other hosts) */

struct jobs_store {
    sqlite3 *db;
    char dir[4096];
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id TEXT PRIMARY KEY,"
    " token TEXT NOT NULL UNIQUE,"
    " doc TEXT NOT NULL,"
    " rules TEXT,"
    " status TEXT NOT NULL,"
    " priority INTEGER NOT NULL,"
    " total INTEGER NOT NULL DEFAULT 0,"
    " succeeded INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL,"
    " terminated_ms INTEGER,"
    " active_ms INTEGER NOT NULL DEFAULT 0,"
    " failure_code TEXT, failure_reason TEXT,"
    " status_reason TEXT,"
    " suspended_ms INTEGER, suspended_cause TEXT,"
    " generated_manifest TEXT,"
    " owner_pid INTEGER, owner_seen_ms INTEGER,"
    " doc_sha256 TEXT, rules_sha256 TEXT);"
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, priority);";

static int sql_fail(jobs_store *s, char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "%s/batchrep.db: %s: %s", s->dir, what, sqlite3_errmsg(s->db));
    return sqlite3_errcode(s->db) == SQLITE_FULL ? -JOBS_E_DISK_FULL : -JOBS_E_IO;
}

/* Ends the transaction begun with BEGIN IMMEDIATE: 0, or the failure after a rollback. */
static int commit(jobs_store *s, char *err, size_t err_len)
{
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int ret = sql_fail(s, err, err_len, "commit");
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return ret;
}

/* 1 when the jobs table has the column, 0 when not, -1 when SQLite cannot say. */
static int has_column(jobs_store *s, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM pragma_table_info('jobs') WHERE name = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* A catalogue made before the idempotency digests (doc_sha256, rules_sha256) gets their
   columns, once, under the write lock (two processes may open it at once). Its jobs keep
   working: their digests are NULL, and CreateJob then compares the stored document itself
   (verbs.c). */
static int migrate(jobs_store *s, char *err, size_t err_len)
{
    static const char *const added[] = {"doc_sha256", "rules_sha256"};
    if (has_column(s, added[1]) == 1)
        return 0;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "begin");
    for (size_t i = 0; i < sizeof added / sizeof *added; i++) {
        char sql[128];
        int have = has_column(s, added[i]);
        snprintf(sql, sizeof sql, "ALTER TABLE jobs ADD COLUMN %s TEXT", added[i]);
        if (have < 0 || (have == 0 && sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)) {
            int ret = sql_fail(s, err, err_len, "adding the idempotency columns");
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return ret;
        }
    }
    return commit(s, err, err_len);
}

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

/* SQLite's word that the file is not a sound database (not a busy or full disk). */
static int damaged_code(int rc)
{
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

/* 1 when PRAGMA quick_check finds the catalogue damaged. */
static int damaged(sqlite3 *db)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK)
        return damaged_code(sqlite3_errcode(db));
    int rc = sqlite3_step(st);
    const unsigned char *v = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    int bad = rc == SQLITE_ROW ? !v || strcmp((const char *)v, "ok") != 0 : damaged_code(rc);
    sqlite3_finalize(st);
    return bad;
}

static int open_once(const char *state_dir, jobs_store **out, char *err, size_t err_len,
                     int *out_damaged);

/* Damage is only believed when a fresh connection finds it again, 3 times over 0.6 s: a
   catalogue in use by other processes is never moved aside on one reading. */
static int damage_confirmed(const char *path)
{
    for (int i = 0; i < 3; i++) {
        usleep(200000);
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            sqlite3_close(db);
            return 0; /* cannot tell: never move a catalogue aside on a guess */
        }
        sqlite3_busy_timeout(db, 10000);
        int bad = damaged(db);
        sqlite3_close(db);
        if (!bad)
            return 0;
    }
    return 1;
}

int jobs_store_open(const char *state_dir, jobs_store **out, char *err, size_t err_len)
{
    int bad = 0;
    int rc = open_once(state_dir, out, err, err_len, &bad);
    char db_path[4200], root_dir[4096];
    jobs_state_root(state_dir, root_dir, sizeof root_dir);
    if (rc != 0 && bad &&
        ((size_t)snprintf(db_path, sizeof db_path, "%s/batchrep.db", root_dir) >= sizeof db_path ||
         !damage_confirmed(db_path)))
        bad = 0;
    if (rc != 0 && bad) {
        char path[4200], aside[4400];
        char root[4096];
        jobs_state_root(state_dir, root, sizeof root);
        if ((size_t)snprintf(path, sizeof path, "%s/batchrep.db", root) >= sizeof path ||
            jobs__move_aside(path, aside, sizeof aside) != 0)
            return rc;
        fprintf(stderr,
                "batchrep: %s is damaged (%s); moved aside as %s, and a new catalogue is "
                "rebuilt from the job folders\n",
                path, err, aside);
        rc = open_once(state_dir, out, err, err_len, &bad);
    }
    if (rc == 0)
        jobs__store_import(*out);
    return rc;
}

static int open_once(const char *state_dir, jobs_store **out, char *err, size_t err_len,
                     int *out_damaged)
{
    jobs_store *s = calloc(1, sizeof *s);
    if (!s)
        return -JOBS_E_NOMEM;
    jobs_state_root(state_dir, s->dir, sizeof s->dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/jobs", s->dir);
    if (s3_mkdir_p(path, S3_MODE_PRIVATE_DIR) != 0) {
        snprintf(err, err_len, "%s: cannot create the state directory", s->dir);
        free(s);
        return -JOBS_E_IO;
    }
    snprintf(path, sizeof path, "%s/batchrep.db", s->dir);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                          SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        sql_fail(s, err, err_len, "cannot open");
        jobs_store_close(s);
        return -JOBS_E_IO;
    }
    /* SQLite creates the file 0644 and gives its -wal and -shm files the file's mode: the
       catalogue holds job documents and bucket names, so it is private whatever the umask */
    if (chmod(path, S3_MODE_PRIVATE_FILE) != 0) {
        snprintf(err, err_len, "%s: cannot make it private: %s", path, strerror(errno));
        jobs_store_close(s);
        return -JOBS_E_IO;
    }
    sqlite3_busy_timeout(s->db, 10000);
    char *msg = NULL;
    int rc;
    /* Two processes opening a new catalogue at once: switching it to WAL answers
       SQLITE_BUSY at once, without the busy handler (seen: `worker` and `list-jobs` started
       together). Bounded: 200 tries 50 ms apart, 10 s as busy_timeout. */
    for (int tries = 0; (rc = sqlite3_exec(s->db, schema, NULL, NULL, &msg)) != SQLITE_OK &&
                        (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && tries < 200;
         tries++) {
        sqlite3_free(msg);
        msg = NULL;
        usleep(50000);
    }
    if (rc != SQLITE_OK || damaged(s->db)) {
        *out_damaged = rc == SQLITE_OK || damaged_code(rc);
        snprintf(err, err_len, "%s: cannot %s the job catalogue: %s", path,
                 rc == SQLITE_OK ? "check" : "create",
                 msg ? msg : rc == SQLITE_OK ? "damaged (quick_check)" : sqlite3_errstr(rc));
        sqlite3_free(msg);
        jobs_store_close(s);
        return -JOBS_E_IO;
    }
    if ((rc = migrate(s, err, err_len)) != 0) {
        jobs_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void jobs_store_close(jobs_store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s);
}

const char *jobs_store_dir(const jobs_store *s)
{
    return s->dir;
}

/* ---- rows ------------------------------------------------------------------------------ */

static const char cols[] =
    "id, token, doc, rules, status, priority, total, succeeded, failed, created_ms,"
    " terminated_ms, active_ms, failure_code, failure_reason, status_reason, suspended_ms,"
    " suspended_cause, generated_manifest, owner_pid, owner_seen_ms, doc_sha256,"
    " rules_sha256";

static void copy_col(sqlite3_stmt *st, int i, char *out, size_t cap)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    snprintf(out, cap, "%s", v ? (const char *)v : "");
}

static char *dup_col(sqlite3_stmt *st, int i)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    return v ? strdup((const char *)v) : NULL;
}

static void read_row(sqlite3_stmt *st, jobs_row *r)
{
    memset(r, 0, sizeof *r);
    copy_col(st, 0, r->id, sizeof r->id);
    copy_col(st, 1, r->token, sizeof r->token);
    r->doc = dup_col(st, 2);
    r->rules = dup_col(st, 3);
    char status[32];
    copy_col(st, 4, status, sizeof status);
    r->status = jobs_status_parse(status);
    r->priority = sqlite3_column_int(st, 5);
    r->total = (uint64_t)sqlite3_column_int64(st, 6);
    r->succeeded = (uint64_t)sqlite3_column_int64(st, 7);
    r->failed = (uint64_t)sqlite3_column_int64(st, 8);
    r->created_ms = sqlite3_column_int64(st, 9);
    r->terminated_ms = sqlite3_column_int64(st, 10);
    r->active_ms = sqlite3_column_int64(st, 11);
    copy_col(st, 12, r->failure_code, sizeof r->failure_code);
    copy_col(st, 13, r->failure_reason, sizeof r->failure_reason);
    copy_col(st, 14, r->status_reason, sizeof r->status_reason);
    r->suspended_ms = sqlite3_column_int64(st, 15);
    copy_col(st, 16, r->suspended_cause, sizeof r->suspended_cause);
    r->generated_manifest = dup_col(st, 17);
    r->owner_pid = sqlite3_column_int(st, 18);
    r->owner_seen_ms = sqlite3_column_int64(st, 19);
    copy_col(st, 20, r->doc_sha256, sizeof r->doc_sha256);
    copy_col(st, 21, r->rules_sha256, sizeof r->rules_sha256);
}

void jobs_row_cleanup(jobs_row *r)
{
    free(r->doc);
    free(r->rules);
    free(r->generated_manifest);
    r->doc = r->rules = r->generated_manifest = NULL;
}

/* 1 found, 0 not found, <0 error. */
int jobs_store_get(jobs_store *s, const char *id, jobs_row *out, char *err, size_t err_len)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = ?1", cols);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "select");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_row(st, out);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(s, err, err_len, "select");
    return rc == SQLITE_ROW;
}

int jobs_store_insert(jobs_store *s, const jobs_row *r, char *out_existing_id,
                      char *err, size_t err_len)
{
    sqlite3_stmt *st;
    out_existing_id[0] = '\0';
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM jobs WHERE token = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return sql_fail(s, err, err_len, "select");
    sqlite3_bind_text(st, 1, r->token, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        copy_col(st, 0, out_existing_id, 40);
    sqlite3_finalize(st);
    if (out_existing_id[0])
        return 0; /* same ClientRequestToken: that job (the caller compares the request) */
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO jobs (id, token, doc, rules, status, priority, "
                           "created_ms, total, doc_sha256, rules_sha256) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, NULLIF(?8, ''), "
                           "NULLIF(?9, ''))",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "insert");
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->doc, -1, SQLITE_STATIC);
    if (r->rules)
        sqlite3_bind_text(st, 4, r->rules, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_text(st, 5, jobs_status_name(r->status), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, r->priority);
    sqlite3_bind_int64(st, 7, r->created_ms);
    sqlite3_bind_text(st, 8, r->doc_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, r->rules_sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) { /* another process inserted the same token meanwhile */
        return jobs_store_insert(s, r, out_existing_id, err, err_len);
    }
    if (rc != SQLITE_DONE)
        return sql_fail(s, err, err_len, "insert");
    /* the record after the row: a record without its row is what the rebuild puts back
       (recover.c), so one written first could be "restored" by another process opening the
       catalogue while this one inserts (seen: a list-jobs during a run's create) */
    int wrc = jobs__record_write(s->dir, r, err, err_len);
    if (wrc != 0) {
        sqlite3_stmt *del;
        if (sqlite3_prepare_v2(s->db, "DELETE FROM jobs WHERE id = ?1", -1, &del, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_text(del, 1, r->id, -1, SQLITE_STATIC);
            sqlite3_step(del);
            sqlite3_finalize(del);
        }
        jobs__record_remove(s->dir, r->id);
        return wrc;
    }
    return 0;
}

/* The status to store when the worker saves `mine` over `stored`: the worker's, when the
   transition table lets the worker make that move; else the stored one, which another
   process set meanwhile (a cancel, say): a job cancelled meanwhile stays Cancelling, a
   terminal job stays terminal. */
static jobs_status merged_status(jobs_status stored, jobs_status mine)
{
    return stored == mine || jobs_status_allowed(stored, mine, JOBS_BY_WORKER) ? mine : stored;
}

/* Writes what a running job changes: status, counters, timers, failure, owner heartbeat. */
int jobs_store_save(jobs_store *s, const jobs_row *r, char *err, size_t err_len)
{
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "begin");
    jobs_row cur;
    int found = jobs_store_get(s, r->id, &cur, err, err_len);
    if (found < 0) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return found;
    }
    jobs_status status = found ? merged_status(cur.status, r->status) : r->status;
    if (found)
        jobs_row_cleanup(&cur);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            s->db,
            "UPDATE jobs SET status = ?2, total = ?3, succeeded = ?4, failed = ?5, "
            "terminated_ms = ?6, active_ms = ?7, failure_code = ?8, failure_reason = ?9, "
            "suspended_ms = ?10, suspended_cause = ?11, generated_manifest = ?12, "
            "owner_pid = ?13, owner_seen_ms = ?14, status_reason = ?15, rules = ?16 "
            "WHERE id = ?1",
            -1, &st, NULL) != SQLITE_OK) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return sql_fail(s, err, err_len, "update");
    }
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, jobs_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->total);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->succeeded);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)r->failed);
    if (r->terminated_ms)
        sqlite3_bind_int64(st, 6, r->terminated_ms);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, r->active_ms);
    sqlite3_bind_text(st, 8, r->failure_code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, r->failure_reason, -1, SQLITE_STATIC);
    if (r->suspended_ms)
        sqlite3_bind_int64(st, 10, r->suspended_ms);
    else
        sqlite3_bind_null(st, 10);
    sqlite3_bind_text(st, 11, r->suspended_cause, -1, SQLITE_STATIC);
    if (r->generated_manifest)
        sqlite3_bind_text(st, 12, r->generated_manifest, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 12);
    sqlite3_bind_int(st, 13, r->owner_pid);
    sqlite3_bind_int64(st, 14, r->owner_seen_ms);
    sqlite3_bind_text(st, 15, r->status_reason, -1, SQLITE_STATIC);
    if (r->rules)
        sqlite3_bind_text(st, 16, r->rules, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 16);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        int ret = sql_fail(s, err, err_len, "update");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return ret;
    }
    return commit(s, err, err_len);
}

/* Compare-and-set of the status (for requests from other processes and claims). Returns 1
   when the row had `from` and now has `to`, 0 when it did not have `from`. */
int jobs_store_cas_status(jobs_store *s, const char *id, jobs_status from, jobs_status to,
                          const char *reason, char *err, size_t err_len)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE jobs SET status = ?3, status_reason = COALESCE(?4, "
                           "status_reason), terminated_ms = COALESCE(?5, terminated_ms) "
                           "WHERE id = ?1 AND status = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "update");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, jobs_status_name(from), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, jobs_status_name(to), -1, SQLITE_STATIC);
    if (reason)
        sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    if (jobs_status_terminal(to))
        sqlite3_bind_int64(st, 5, s3_wall_ms());
    else
        sqlite3_bind_null(st, 5);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s, err, err_len, "update");
    return sqlite3_changes(s->db) == 1;
}

int jobs_store_set_priority(jobs_store *s, const char *id, int priority, char *err,
                            size_t err_len)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "UPDATE jobs SET priority = ?2 WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "update");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, priority);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s, err, err_len, "update");
    return sqlite3_changes(s->db) == 1;
}

static int owner_alive(const jobs_row *r)
{
    if (r->owner_pid <= 0)
        return 0;
    if (r->owner_pid == getpid())
        return 1;
    if (kill(r->owner_pid, 0) != 0)
        return 0; /* that worker is gone (crashed or killed) */
    return s3_wall_ms() - r->owner_seen_ms < OWNER_STALE_MS;
}

/* Takes the job for this process when nobody alive owns it. 1 taken, 0 owned elsewhere. */
int jobs_store_claim(jobs_store *s, const char *id, char *err, size_t err_len)
{
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "begin");
    jobs_row r;
    int rc = jobs_store_get(s, id, &r, err, err_len);
    int taken = 0;
    if (rc == 1) {
        if (!owner_alive(&r) || r.owner_pid == getpid()) {
            sqlite3_stmt *st;
            if (sqlite3_prepare_v2(s->db,
                                   "UPDATE jobs SET owner_pid = ?2, owner_seen_ms = ?3 "
                                   "WHERE id = ?1",
                                   -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                sqlite3_bind_int(st, 2, getpid());
                sqlite3_bind_int64(st, 3, s3_wall_ms());
                taken = sqlite3_step(st) == SQLITE_DONE;
                sqlite3_finalize(st);
            }
        }
        jobs_row_cleanup(&r);
    }
    sqlite3_exec(s->db, taken || rc >= 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    return rc < 0 ? rc : taken;
}

/* Calls cb for each job (all, or those whose status is in `statuses`), newest first. */
int jobs_store_each(jobs_store *s, const jobs_status *statuses, size_t n_statuses,
                    int (*cb)(const jobs_row *r, void *user), void *user, char *err,
                    size_t err_len)
{
    /* the status filter goes into the query (jobs_status index): a worker scans the live
       jobs every tick, and the catalogue keeps every finished job too */
    char sql[1024];
    int n = snprintf(sql, sizeof sql, "SELECT %s FROM jobs", cols);
    for (size_t i = 0; i < n_statuses && i < 16; i++)
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%s?%zu", i ? ", " : " WHERE status IN (",
                      i + 1);
    snprintf(sql + n, sizeof sql - (size_t)n, "%s ORDER BY created_ms DESC, id",
             n_statuses ? ")" : "");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, err_len, "select");
    for (size_t i = 0; i < n_statuses && i < 16; i++)
        sqlite3_bind_text(st, (int)i + 1, jobs_status_name(statuses[i]), -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        jobs_row r;
        read_row(st, &r);
        int stop = cb(&r, user);
        jobs_row_cleanup(&r);
        if (stop)
            break;
    }
    sqlite3_finalize(st);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sql_fail(s, err, err_len, "select");
}
