/*
 * store_sqlite.c — the job catalogue on one machine: one SQLite database in WAL mode,
 * <state>/batchrep.db (jobs_int.h's jobs__backend; store.c makes the decisions).
 *
 * WAL lets a running worker write progress while other processes (`describe-job`,
 * `list-jobs`, `update-job-*`) read and write the same catalogue; every connection waits up
 * to 10 s on a lock (busy_timeout) instead of failing. A write transaction is BEGIN
 * IMMEDIATE: it holds the file's one write lock from its first statement, so a transaction's
 * read and its write see the same row (this is SQLite's FOR UPDATE). The catalogue's clock
 * is this machine's.
 *
 * Tables: jobs (one row per job: the CreateJob document as given, the replication
 * configuration captured at creation or NULL, status, priority, counters, timestamps,
 * failure, the claim's owner and heartbeat, the Active clock), shards (a job's shards, their
 * leases and checkpoints), lease_counter (one row: the last fencing token given) and
 * batchrep_schema (one row: the schema's version). A catalogue of an older batchrep is
 * upgraded once, under the write lock: version 1 (no batchrep_schema) gets the idempotency
 * digests, owner and active_since_ms columns, the shards and lease_counter tables.
 *
 * Each row has a record in its job's folder (recover.c), written right after it: a
 * catalogue lost, emptied or damaged (moved aside when SQLite says so) is rebuilt from the
 * job folders when it opens.
 */
#include "jobs/jobs_int.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct sq {
    sqlite3 *db;
    char dir[4096];   /* the state directory */
    char path[4200];  /* <dir>/batchrep.db */
} sq;

/* The schema of version JOBS_SCHEMA_VERSION; every statement may run on a catalogue that
   has its table already (an older one gets its missing columns from add_columns). */
static const char schema[] =
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
    " owner TEXT, owner_seen_ms INTEGER,"
    " active_since_ms INTEGER,"
    " doc_sha256 TEXT, rules_sha256 TEXT);"
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, priority);"
    "CREATE TABLE IF NOT EXISTS shards ("
    " job_id TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " first_seq INTEGER NOT NULL,"
    " n_rows INTEGER NOT NULL,"
    " complete INTEGER NOT NULL DEFAULT 0,"
    " uncertain INTEGER NOT NULL DEFAULT 0,"
    " token INTEGER NOT NULL DEFAULT 0,"
    " owner TEXT,"
    " expires_ms INTEGER NOT NULL DEFAULT 0,"
    " leased_before INTEGER NOT NULL DEFAULT 0,"
    " ckpt TEXT,"
    " succeeded INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (job_id, idx));"
    "CREATE INDEX IF NOT EXISTS shards_open ON shards(job_id, idx) WHERE complete = 0;"
    "CREATE TABLE IF NOT EXISTS lease_counter (n INTEGER NOT NULL);"
    "INSERT INTO lease_counter (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM lease_counter);"
    "CREATE TABLE IF NOT EXISTS batchrep_schema (version INTEGER NOT NULL);";

/* Columns a version-1 catalogue lacks (ALTER TABLE ADD COLUMN, in this order). */
static const char *const added_columns[][2] = {
    {"doc_sha256", "TEXT"}, {"rules_sha256", "TEXT"}, {"owner", "TEXT"},
    {"owner_seen_ms", "INTEGER"}, {"active_since_ms", "INTEGER"},
};

static int sql_fail(sq *q, char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "%s: %s: %s", q->path, what, sqlite3_errmsg(q->db));
    return sqlite3_errcode(q->db) == SQLITE_FULL ? -JOBS_E_DISK_FULL : -JOBS_E_IO;
}

static int prep(sq *q, const char *sql, sqlite3_stmt **st, char *err, size_t err_len,
                const char *what)
{
    if (sqlite3_prepare_v2(q->db, sql, -1, st, NULL) == SQLITE_OK)
        return 0;
    *st = NULL;
    return sql_fail(q, err, err_len, what);
}

/* Steps a statement that returns no rows and finalizes it: the rows it changed, or <0. */
static int done(sq *q, sqlite3_stmt *st, char *err, size_t err_len, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(q, err, err_len, what);
    return sqlite3_changes(q->db);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* 0 is "none" for the optional times: NULL in the catalogue. */
static void bind_ms(sqlite3_stmt *st, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* ---- transactions ----------------------------------------------------------------------- */

static int sq_begin(void *db, char *err, size_t err_len)
{
    sq *q = db;
    if (sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(q, err, err_len, "begin");
    return 0;
}

static void sq_rollback(void *db)
{
    sq *q = db;
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Ends the transaction: 0, or the failure after a rollback. */
static int sq_commit(void *db, char *err, size_t err_len)
{
    sq *q = db;
    if (sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    int ret = sql_fail(q, err, err_len, "commit");
    sq_rollback(q);
    return ret;
}

static int sq_now_ms(void *db, int64_t *out, char *err, size_t err_len)
{
    *out = s3_wall_ms();
    return 0;
}

/* ---- opening: schema, upgrade, damage ---------------------------------------------------- */

/* 1 when the table exists, 0 when not, -1 when SQLite cannot say. */
static int has_table(sq *q, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(q->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                  "name = ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* 1 when the jobs table has the column, 0 when not, -1 when SQLite cannot say. */
static int has_column(sq *q, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(q->db, "SELECT 1 FROM pragma_table_info('jobs') WHERE name = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* The catalogue's schema version: 0 a new file, 1 a catalogue made before batchrep_schema,
   else its table's. 0 or -1 (the SQLite error in q->db). */
static int read_version(sq *q, long *out)
{
    int have_schema = has_table(q, "batchrep_schema"), have_jobs = has_table(q, "jobs");
    if (have_schema < 0 || have_jobs < 0)
        return -1;
    *out = have_jobs ? 1 : 0;
    if (!have_schema)
        return 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(q->db, "SELECT max(version) FROM batchrep_schema", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *out = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Creates the schema, or upgrades an older one, under the write lock (several processes may
   open a catalogue at once). 0, -JOBS_E_SCHEMA, or -JOBS_E_IO with *out_rc SQLite's code
   (the caller retries SQLITE_BUSY and calls SQLITE_CORRUPT damage). */
static int setup(sq *q, int *out_rc, char *err, size_t err_len)
{
    long version = 0;
    *out_rc = SQLITE_OK;
    if (read_version(q, &version) == 0 && version == JOBS_SCHEMA_VERSION)
        return 0; /* the usual open: nothing to write */
    int rc = sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK && read_version(q, &version) != 0)
        rc = sqlite3_errcode(q->db);
    if (rc == SQLITE_OK && version > JOBS_SCHEMA_VERSION) {
        sq_rollback(q);
        jobs__schema_newer(err, err_len, q->path, version);
        return -JOBS_E_SCHEMA;
    }
    if (rc == SQLITE_OK && version < JOBS_SCHEMA_VERSION) {
        rc = sqlite3_exec(q->db, schema, NULL, NULL, NULL);
        for (size_t i = 0; rc == SQLITE_OK && i < sizeof added_columns / sizeof *added_columns;
             i++) {
            char sql[128];
            int have = has_column(q, added_columns[i][0]);
            snprintf(sql, sizeof sql, "ALTER TABLE jobs ADD COLUMN %s %s", added_columns[i][0],
                     added_columns[i][1]);
            if (have < 0)
                rc = sqlite3_errcode(q->db);
            else if (!have)
                rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
        }
        if (rc == SQLITE_OK) {
            char sql[128];
            snprintf(sql, sizeof sql,
                     "DELETE FROM batchrep_schema; INSERT INTO batchrep_schema (version) "
                     "VALUES (%d)", JOBS_SCHEMA_VERSION);
            rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
        }
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return 0;
    *out_rc = rc;
    snprintf(err, err_len, "%s: cannot create the job catalogue: %s", q->path,
             sqlite3_errmsg(q->db));
    sq_rollback(q);
    return rc == SQLITE_FULL ? -JOBS_E_DISK_FULL : -JOBS_E_IO;
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

static void sq_close(void *db)
{
    sq *q = db;
    if (!q)
        return;
    sqlite3_close(q->db);
    free(q);
}

static int open_once(const char *state_dir, sq **out, char *err, size_t err_len,
                     int *out_damaged)
{
    sq *q = calloc(1, sizeof *q);
    if (!q)
        return -JOBS_E_NOMEM;
    snprintf(q->dir, sizeof q->dir, "%s", state_dir);
    char jobs_dir[4200];
    snprintf(q->path, sizeof q->path, "%s/batchrep.db", q->dir);
    snprintf(jobs_dir, sizeof jobs_dir, "%s/jobs", q->dir);
    if (s3_mkdir_p(jobs_dir, S3_MODE_PRIVATE_DIR) != 0) {
        snprintf(err, err_len, "%s: cannot create the state directory", q->dir);
        free(q);
        return -JOBS_E_IO;
    }
    if (sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                             SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        sql_fail(q, err, err_len, "cannot open");
        sq_close(q);
        return -JOBS_E_IO;
    }
    /* SQLite creates the file 0644 and gives its -wal and -shm files the file's mode: the
       catalogue holds job documents and bucket names, so it is private whatever the umask */
    if (chmod(q->path, S3_MODE_PRIVATE_FILE) != 0) {
        snprintf(err, err_len, "%s: cannot make it private: %s", q->path, strerror(errno));
        sq_close(q);
        return -JOBS_E_IO;
    }
    sqlite3_busy_timeout(q->db, 10000);
    char *msg = NULL;
    int rc;
    /* Two processes opening a new catalogue at once: switching it to WAL answers
       SQLITE_BUSY at once, without the busy handler (seen: `worker` and `list-jobs` started
       together). Bounded: 200 tries 50 ms apart, 10 s as busy_timeout. */
    for (int tries = 0; (rc = sqlite3_exec(q->db, "PRAGMA journal_mode=WAL", NULL, NULL,
                                           &msg)) != SQLITE_OK &&
                        (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && tries < 200;
         tries++) {
        sqlite3_free(msg);
        msg = NULL;
        usleep(50000);
    }
    if (rc != SQLITE_OK || damaged(q->db)) {
        *out_damaged = rc == SQLITE_OK || damaged_code(rc);
        snprintf(err, err_len, "%s: cannot %s the job catalogue: %s", q->path,
                 rc == SQLITE_OK ? "check" : "create",
                 msg ? msg : rc == SQLITE_OK ? "damaged (quick_check)" : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sq_close(q);
        return -JOBS_E_IO;
    }
    int code = SQLITE_OK;
    for (int tries = 0; (rc = setup(q, &code, err, err_len)) != 0 &&
                        (code == SQLITE_BUSY || code == SQLITE_LOCKED) && tries < 200;
         tries++)
        usleep(50000);
    if (rc != 0) {
        *out_damaged = damaged_code(code);
        sq_close(q);
        return rc;
    }
    *out = q;
    return 0;
}

static int sq_open(const char *state_dir, const char *catalog, void **out_db, char *name,
                   size_t name_cap, char *err, size_t err_len)
{
    char path[4200], aside[4400];
    if ((size_t)snprintf(path, sizeof path, "%s/batchrep.db", state_dir) >= sizeof path) {
        snprintf(err, err_len, "%.200s...: the state directory's path is too long", state_dir);
        return -JOBS_E_IO;
    }
    snprintf(name, name_cap, "%s", path);
    sq *q = NULL;
    int bad = 0;
    int rc = open_once(state_dir, &q, err, err_len, &bad);
    if (rc != 0 && bad && damage_confirmed(path)) {
        if (jobs__move_aside(path, aside, sizeof aside) != 0)
            return rc;
        fprintf(stderr,
                "batchrep: %s is damaged (%s); moved aside as %s, and a new catalogue is "
                "rebuilt from the job folders\n",
                path, err, aside);
        rc = open_once(state_dir, &q, err, err_len, &bad);
    }
    if (rc == 0)
        *out_db = q;
    return rc;
}

/* ---- jobs ---------------------------------------------------------------------------------- */

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

/* A row of JOBS__ROW_COLS. */
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
    copy_col(st, 18, r->owner, sizeof r->owner);
    r->owner_seen_ms = sqlite3_column_int64(st, 19);
    r->active_since_ms = sqlite3_column_int64(st, 20);
    copy_col(st, 21, r->doc_sha256, sizeof r->doc_sha256);
    copy_col(st, 22, r->rules_sha256, sizeof r->rules_sha256);
}

static int sq_get(void *db, const char *id, int lock, jobs_row *out, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q, "SELECT " JOBS__ROW_COLS " FROM jobs WHERE id = ?1", &st, err, err_len,
                  "select");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_row(st, out);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(q, err, err_len, "select");
    return rc == SQLITE_ROW;
}

/* The job holding the ClientRequestToken: 1 (id in out, 40 bytes), 0 none, <0. */
static int by_token(sq *q, const char *token, char *out, char *err, size_t err_len)
{
    sqlite3_stmt *st;
    int rc = prep(q, "SELECT id FROM jobs WHERE token = ?1", &st, err, err_len, "select");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        copy_col(st, 0, out, 40);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(q, err, err_len, "select");
    return rc == SQLITE_ROW;
}

static int sq_insert(void *db, const jobs_row *r, char *out_existing_id, char *err,
                     size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = by_token(q, r->token, out_existing_id, err, err_len);
    if (rc != 0)
        return rc < 0 ? rc : 0; /* same ClientRequestToken: that job (the caller compares) */
    if ((rc = prep(q,
                   "INSERT INTO jobs (id, token, doc, rules, status, priority, total, "
                   "succeeded, failed, created_ms, terminated_ms, active_ms, failure_code, "
                   "failure_reason, status_reason, suspended_ms, suspended_cause, "
                   "generated_manifest, active_since_ms, doc_sha256, rules_sha256) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                   "?16, ?17, ?18, ?19, NULLIF(?20, ''), NULLIF(?21, ''))",
                   &st, err, err_len, "insert")) != 0)
        return rc;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->doc, -1, SQLITE_STATIC);
    bind_text(st, 4, r->rules);
    sqlite3_bind_text(st, 5, jobs_status_name(r->status), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, r->priority);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)r->total);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)r->succeeded);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)r->failed);
    sqlite3_bind_int64(st, 10, r->created_ms);
    bind_ms(st, 11, r->terminated_ms);
    sqlite3_bind_int64(st, 12, r->active_ms);
    sqlite3_bind_text(st, 13, r->failure_code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 14, r->failure_reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 15, r->status_reason, -1, SQLITE_STATIC);
    bind_ms(st, 16, r->suspended_ms);
    sqlite3_bind_text(st, 17, r->suspended_cause, -1, SQLITE_STATIC);
    bind_text(st, 18, r->generated_manifest);
    bind_ms(st, 19, r->active_since_ms);
    sqlite3_bind_text(st, 20, r->doc_sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 21, r->rules_sha256, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        int ret = sql_fail(q, err, err_len, "insert");
        /* another process inserted the same token meanwhile: that job */
        int found = rc == SQLITE_CONSTRAINT ? by_token(q, r->token, out_existing_id, NULL, 0) : 0;
        return found == 1 ? 0 : ret;
    }
    /* the record after the row: a record without its row is what the rebuild puts back
       (recover.c), so one written first could be "restored" by another process opening the
       catalogue while this one inserts (seen: a list-jobs during a run's create) */
    int wrc = jobs__record_write(q->dir, r, err, err_len);
    if (wrc != 0) {
        if (prep(q, "DELETE FROM jobs WHERE id = ?1", &st, err, 0, "delete") == 0) {
            sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
            sqlite3_step(st);
            sqlite3_finalize(st);
        }
        jobs__record_remove(q->dir, r->id);
        return wrc;
    }
    return 0;
}

static int sq_update(void *db, const jobs_row *r, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q,
                  "UPDATE jobs SET status = ?2, total = ?3, terminated_ms = ?4, active_ms = ?5, "
                  "active_since_ms = ?6, failure_code = ?7, failure_reason = ?8, "
                  "suspended_ms = ?9, suspended_cause = ?10, generated_manifest = ?11, "
                  "status_reason = ?12, rules = ?13 WHERE id = ?1",
                  &st, err, err_len, "update");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, jobs_status_name(r->status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->total);
    bind_ms(st, 4, r->terminated_ms);
    sqlite3_bind_int64(st, 5, r->active_ms);
    bind_ms(st, 6, r->active_since_ms);
    sqlite3_bind_text(st, 7, r->failure_code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, r->failure_reason, -1, SQLITE_STATIC);
    bind_ms(st, 9, r->suspended_ms);
    sqlite3_bind_text(st, 10, r->suspended_cause, -1, SQLITE_STATIC);
    bind_text(st, 11, r->generated_manifest);
    sqlite3_bind_text(st, 12, r->status_reason, -1, SQLITE_STATIC);
    bind_text(st, 13, r->rules);
    rc = done(q, st, err, err_len, "update");
    return rc < 0 ? rc : 0;
}

static int sq_set_priority(void *db, const char *id, int priority, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q, "UPDATE jobs SET priority = ?2 WHERE id = ?1", &st, err, err_len,
                  "update");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, priority);
    rc = done(q, st, err, err_len, "update");
    return rc < 0 ? rc : rc == 1;
}

static int sq_set_owner(void *db, const char *id, const char *owner, int64_t seen_ms, char *err,
                        size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q, "UPDATE jobs SET owner = ?2, owner_seen_ms = ?3 WHERE id = ?1", &st, err,
                  err_len, "claim");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bind_text(st, 2, owner);
    bind_ms(st, 3, seen_ms);
    rc = done(q, st, err, err_len, "claim");
    return rc < 0 ? rc : 0;
}

static int sq_add_counts(void *db, const char *id, int64_t d_succeeded, int64_t d_failed,
                         char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q,
                  "UPDATE jobs SET succeeded = succeeded + ?2, failed = failed + ?3 "
                  "WHERE id = ?1",
                  &st, err, err_len, "counting");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, d_succeeded);
    sqlite3_bind_int64(st, 3, d_failed);
    rc = done(q, st, err, err_len, "counting");
    return rc < 0 ? rc : 0;
}

/* " AND status IN (?f, ?f+1, ...)" for n statuses bound from ?first; "" when n is 0. */
static void status_filter(char *out, size_t cap, int first, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s?%d", i ? ", " : " AND status IN (",
                                first + (int)i);
    if (n && len < cap)
        snprintf(out + len, cap - len, ")");
}

static int sq_jobs_page(void *db, const jobs_status *statuses, size_t n_statuses,
                        int64_t after_created_ms, const char *after_id, jobs_row *rows,
                        size_t cap, size_t *out_n, char *err, size_t err_len)
{
    sq *q = db;
    char filter[256], sql[1024];
    *out_n = 0;
    /* the status filter goes into the query (jobs_status index): a worker scans the live
       jobs every tick, and the catalogue keeps every finished job too */
    status_filter(filter, sizeof filter, 4, n_statuses);
    snprintf(sql, sizeof sql,
             "SELECT " JOBS__ROW_COLS " FROM jobs WHERE (created_ms < ?1 OR "
             "(created_ms = ?1 AND id > ?2))%s ORDER BY created_ms DESC, id LIMIT ?3",
             filter);
    sqlite3_stmt *st;
    int rc = prep(q, sql, &st, err, err_len, "select");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, after_created_ms);
    sqlite3_bind_text(st, 2, after_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)cap);
    for (size_t i = 0; i < n_statuses; i++)
        sqlite3_bind_text(st, 4 + (int)i, jobs_status_name(statuses[i]), -1, SQLITE_STATIC);
    while (*out_n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW)
        read_row(st, &rows[(*out_n)++]);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        for (size_t i = 0; i < *out_n; i++)
            jobs_row_cleanup(&rows[i]);
        *out_n = 0;
        return sql_fail(q, err, err_len, "select");
    }
    return 0;
}

/* ---- shards -------------------------------------------------------------------------------- */

static int sq_shards_delete(void *db, const char *job_id, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q, "DELETE FROM shards WHERE job_id = ?1", &st, err, err_len, "shards");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    rc = done(q, st, err, err_len, "shards");
    return rc < 0 ? rc : 0;
}

static int sq_shard_insert(void *db, const char *job_id, const jobs_shard *sh, char *err,
                           size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q,
                  "INSERT INTO shards (job_id, idx, first_seq, n_rows, uncertain) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
                  &st, err, err_len, "shards");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sh->index);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)sh->first_seq);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)sh->n_rows);
    sqlite3_bind_int(st, 5, sh->uncertain ? 1 : 0);
    rc = done(q, st, err, err_len, "shards");
    return rc < 0 ? rc : 0;
}

static int sq_shard_pick(void *db, const char *only_job, int64_t now_ms,
                         const jobs_status *statuses, size_t n_statuses, char *job_id,
                         uint32_t *index, char *err, size_t err_len)
{
    sq *q = db;
    char filter[256], sql[1024];
    status_filter(filter, sizeof filter, 3, n_statuses);
    snprintf(sql, sizeof sql,
             "SELECT sh.job_id, sh.idx FROM shards sh JOIN jobs ON jobs.id = sh.job_id "
             "WHERE sh.complete = 0 AND (sh.owner IS NULL OR sh.expires_ms <= ?1) "
             "AND (?2 IS NULL OR sh.job_id = ?2)%s "
             "ORDER BY jobs.priority DESC, jobs.created_ms, jobs.id, sh.token <> 0 DESC, "
             "sh.idx LIMIT 1",
             filter);
    sqlite3_stmt *st;
    int rc = prep(q, sql, &st, err, err_len, "lease");
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, now_ms);
    bind_text(st, 2, only_job);
    for (size_t i = 0; i < n_statuses; i++)
        sqlite3_bind_text(st, 3 + (int)i, jobs_status_name(statuses[i]), -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_col(st, 0, job_id, 40);
        *index = (uint32_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(q, err, err_len, "lease");
    return rc == SQLITE_ROW;
}

/* The one-row counter, in the caller's write transaction: unique and increasing. */
static int sq_next_token(void *db, int64_t *out, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q, "UPDATE lease_counter SET n = n + 1", &st, err, err_len, "lease token");
    if (rc || (rc = done(q, st, err, err_len, "lease token")) < 0)
        return rc;
    if ((rc = prep(q, "SELECT n FROM lease_counter", &st, err, err_len, "lease token")) != 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, err_len, "%s: the lease_counter table is empty", q->path);
        return -JOBS_E_IO;
    }
    return 0;
}

static int sq_shard_lease(void *db, const char *job_id, uint32_t index, int64_t token,
                          const char *owner, int64_t expires_ms, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q,
                  "UPDATE shards SET leased_before = CASE WHEN token <> 0 THEN 1 ELSE "
                  "leased_before END, token = ?3, owner = ?4, expires_ms = ?5 "
                  "WHERE job_id = ?1 AND idx = ?2",
                  &st, err, err_len, "lease");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, index);
    sqlite3_bind_int64(st, 3, token);
    sqlite3_bind_text(st, 4, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, expires_ms);
    rc = done(q, st, err, err_len, "lease");
    return rc < 0 ? rc : 0;
}

/* A row of JOBS__SHARD_COLS. */
static void read_shard(sqlite3_stmt *st, jobs_shard *sh)
{
    memset(sh, 0, sizeof *sh);
    copy_col(st, 0, sh->job_id, sizeof sh->job_id);
    sh->index = (uint32_t)sqlite3_column_int64(st, 1);
    sh->first_seq = (uint64_t)sqlite3_column_int64(st, 2);
    sh->n_rows = (uint64_t)sqlite3_column_int64(st, 3);
    sh->complete = sqlite3_column_int(st, 4) != 0;
    sh->uncertain = sqlite3_column_int(st, 5) != 0;
    sh->token = sqlite3_column_int64(st, 6);
    copy_col(st, 7, sh->owner, sizeof sh->owner);
    sh->expires_ms = sqlite3_column_int64(st, 8);
    sh->leased_before = sqlite3_column_int(st, 9) != 0;
    sh->ckpt = dup_col(st, 10);
    sh->succeeded = (uint64_t)sqlite3_column_int64(st, 11);
    sh->failed = (uint64_t)sqlite3_column_int64(st, 12);
}

static int sq_shard_get(void *db, const char *job_id, uint32_t index, jobs_shard *out,
                        char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q, "SELECT " JOBS__SHARD_COLS " FROM shards WHERE job_id = ?1 AND idx = ?2",
                  &st, err, err_len, "shards");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, index);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_shard(st, out);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sql_fail(q, err, err_len, "shards");
    return rc == SQLITE_ROW;
}

/* The fenced statements: job_id ?1, idx ?2, token ?3, owner ?4, then their own. */
static int fenced(sq *q, const char *sql, const char *job_id, uint32_t index, int64_t token,
                  const char *owner, sqlite3_stmt **st, char *err, size_t err_len)
{
    int rc = prep(q, sql, st, err, err_len, "lease");
    if (rc)
        return rc;
    sqlite3_bind_text(*st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(*st, 2, index);
    sqlite3_bind_int64(*st, 3, token);
    sqlite3_bind_text(*st, 4, owner, -1, SQLITE_STATIC);
    return 0;
}

static int sq_shard_renew(void *db, const char *job_id, uint32_t index, int64_t token,
                          const char *owner, int64_t expires_ms, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = fenced(q,
                    "UPDATE shards SET expires_ms = ?5 WHERE job_id = ?1 AND idx = ?2 AND "
                    "token = ?3 AND owner = ?4 AND complete = 0",
                    job_id, index, token, owner, &st, err, err_len);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 5, expires_ms);
    rc = done(q, st, err, err_len, "lease renewal");
    return rc < 0 ? rc : rc == 1;
}

static int sq_shard_store(void *db, const char *job_id, uint32_t index, int64_t token,
                          const char *owner, const char *ckpt, int complete,
                          uint64_t succeeded, uint64_t failed, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = fenced(q,
                    "UPDATE shards SET ckpt = ?5, complete = ?6, succeeded = ?7, failed = ?8 "
                    "WHERE job_id = ?1 AND idx = ?2 AND token = ?3 AND owner = ?4 AND "
                    "complete = 0",
                    job_id, index, token, owner, &st, err, err_len);
    if (rc)
        return rc;
    bind_text(st, 5, ckpt);
    sqlite3_bind_int(st, 6, complete ? 1 : 0);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)succeeded);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)failed);
    rc = done(q, st, err, err_len, "checkpoint");
    return rc < 0 ? rc : rc == 1;
}

static int sq_shard_release(void *db, const char *job_id, uint32_t index, int64_t token,
                            const char *owner, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = fenced(q,
                    "UPDATE shards SET owner = NULL, expires_ms = 0 WHERE job_id = ?1 AND "
                    "idx = ?2 AND token = ?3 AND owner = ?4",
                    job_id, index, token, owner, &st, err, err_len);
    if (rc)
        return rc;
    rc = done(q, st, err, err_len, "lease release");
    return rc < 0 ? rc : rc == 1;
}

static int sq_shards_page(void *db, const char *job_id, int64_t after, jobs_shard *shards,
                          size_t cap, size_t *out_n, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    *out_n = 0;
    int rc = prep(q,
                  "SELECT " JOBS__SHARD_COLS " FROM shards WHERE job_id = ?1 AND idx > ?2 "
                  "ORDER BY idx LIMIT ?3",
                  &st, err, err_len, "shards");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)cap);
    while (*out_n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW)
        read_shard(st, &shards[(*out_n)++]);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        for (size_t i = 0; i < *out_n; i++)
            jobs_shard_cleanup(&shards[i]);
        *out_n = 0;
        return sql_fail(q, err, err_len, "shards");
    }
    return 0;
}

static int sq_shards_count(void *db, const char *job_id, int64_t now_ms,
                           jobs_shard_counts *out, char *err, size_t err_len)
{
    sq *q = db;
    sqlite3_stmt *st;
    int rc = prep(q,
                  "SELECT COUNT(*), COALESCE(SUM(complete), 0), COALESCE(SUM(CASE WHEN "
                  "complete = 0 AND owner IS NOT NULL AND expires_ms > ?2 THEN 1 ELSE 0 END), "
                  "0) FROM shards WHERE job_id = ?1",
                  &st, err, err_len, "shards");
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->n = (uint64_t)sqlite3_column_int64(st, 0);
        out->complete = (uint64_t)sqlite3_column_int64(st, 1);
        out->leased = (uint64_t)sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : sql_fail(q, err, err_len, "shards");
}

const jobs__backend jobs__sqlite_backend = {
    .kind = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .now_ms = sq_now_ms,
    .get = sq_get,
    .insert = sq_insert,
    .update = sq_update,
    .set_priority = sq_set_priority,
    .set_owner = sq_set_owner,
    .add_counts = sq_add_counts,
    .jobs_page = sq_jobs_page,
    .shards_delete = sq_shards_delete,
    .shard_insert = sq_shard_insert,
    .shard_pick = sq_shard_pick,
    .next_token = sq_next_token,
    .shard_lease = sq_shard_lease,
    .shard_get = sq_shard_get,
    .shard_renew = sq_shard_renew,
    .shard_store = sq_shard_store,
    .shard_release = sq_shard_release,
    .shards_page = sq_shards_page,
    .shards_count = sq_shards_count,
};
