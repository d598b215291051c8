/*
 * jobs_int.h — internals shared by jobs/'s files. Never included from outside jobs/.
 */
#ifndef BATCHREP_JOBS_INT_H
#define BATCHREP_JOBS_INT_H

#include "jobs/jobs.h"

/* ---- the catalogue's backends (store.c dispatches to store_sqlite.c, store_pg.c) ---------

   A backend is SQL text and its engine's calls, and no decision: store.c takes the store's
   mutex, runs each public call's transaction (begin ... commit) out of these steps and makes
   every decision itself (the merged status, the Active clock, whether a claim may be taken,
   when a lease ends), so that both backends behave the same. `db` is the backend's own
   connection object (what open returned). Each step returns 0 (or the count or flag it
   says, >= 0) or -JOBS_E_* with err naming the catalogue and what failed. A step that is not
   inside begin/commit is a transaction of its own. */
typedef struct jobs__backend {
    const char *kind; /* "sqlite", "postgresql" */
    /* Opens (and creates, or upgrades to JOBS_SCHEMA_VERSION) the catalogue: SQLite in
       state_dir (catalog unused), PostgreSQL at the URL catalog. name: the catalogue for a
       person, never with a password. -JOBS_E_SCHEMA when it is newer than this batchrep. */
    int (*open)(const char *state_dir, const char *catalog, void **out_db, char *name,
                size_t name_cap, char *err, size_t err_len);
    void (*close)(void *db);
    int (*begin)(void *db, char *err, size_t err_len); /* a write transaction */
    int (*commit)(void *db, char *err, size_t err_len);
    void (*rollback)(void *db);
    /* The catalogue's clock, ms since the epoch. */
    int (*now_ms)(void *db, int64_t *out, char *err, size_t err_len);

    /* jobs: 1 found (*out filled, jobs_row_cleanup), 0 not; lock: the row stays locked to
       the end of the transaction (PostgreSQL FOR UPDATE; SQLite's write transaction holds
       the whole file already) */
    int (*get)(void *db, const char *id, int lock, jobs_row *out, char *err, size_t err_len);
    /* every column but the owner's; a row with r->token already: out_existing_id set, 0 */
    int (*insert)(void *db, const jobs_row *r, char *out_existing_id, char *err,
                  size_t err_len);
    /* status, total, terminated_ms, active_ms, active_since_ms, failure code and reason,
       status reason, suspended time and cause, generated manifest, rules: as r has them */
    int (*update)(void *db, const jobs_row *r, char *err, size_t err_len);
    int (*set_priority)(void *db, const char *id, int priority, char *err, size_t err_len);
    /* owner NULL: none */
    int (*set_owner)(void *db, const char *id, const char *owner, int64_t seen_ms, char *err,
                     size_t err_len);
    int (*add_counts)(void *db, const char *id, int64_t d_succeeded, int64_t d_failed,
                      char *err, size_t err_len);
    /* Up to cap rows after the key (created_ms, id) in the order created_ms DESC, id ASC
       (status in `statuses` when n_statuses > 0). *out_n rows filled; caller cleans them. */
    int (*jobs_page)(void *db, const jobs_status *statuses, size_t n_statuses,
                     int64_t after_created_ms, const char *after_id, jobs_row *rows,
                     size_t cap, size_t *out_n, char *err, size_t err_len);

    /* shards */
    int (*shards_delete)(void *db, const char *job_id, char *err, size_t err_len);
    int (*shard_insert)(void *db, const char *job_id, const jobs_shard *sh, char *err,
                        size_t err_len);
    /* The shard to lease: not complete, no owner or expires_ms <= now_ms, its job's status
       one of `statuses`; by priority DESC, created_ms, job id, index. PostgreSQL locks it
       (FOR UPDATE SKIP LOCKED). 1 found (job_id[40], index), 0 none. */
    int (*shard_pick)(void *db, const char *only_job, int64_t now_ms,
                      const jobs_status *statuses, size_t n_statuses, char *job_id,
                      uint32_t *index, char *err, size_t err_len);
    /* A new fencing token: unique in the catalogue, larger than every one before. */
    int (*next_token)(void *db, int64_t *out, char *err, size_t err_len);
    /* token, owner, expires_ms set; leased_before = 1 when it had a token */
    int (*shard_lease)(void *db, const char *job_id, uint32_t index, int64_t token,
                       const char *owner, int64_t expires_ms, char *err, size_t err_len);
    int (*shard_get)(void *db, const char *job_id, uint32_t index, jobs_shard *out, char *err,
                     size_t err_len);
    /* The fenced steps: each changes the shard only while token and owner are its current
       ones (and, but for release, it is not complete); 1 changed, 0 not. */
    int (*shard_renew)(void *db, const char *job_id, uint32_t index, int64_t token,
                       const char *owner, int64_t expires_ms, char *err, size_t err_len);
    int (*shard_store)(void *db, const char *job_id, uint32_t index, int64_t token,
                       const char *owner, const char *ckpt, int complete, uint64_t succeeded,
                       uint64_t failed, char *err, size_t err_len);
    int (*shard_release)(void *db, const char *job_id, uint32_t index, int64_t token,
                         const char *owner, char *err, size_t err_len);
    /* Up to cap shards of the job with index > after (-1: from the first), by index. */
    int (*shards_page)(void *db, const char *job_id, int64_t after, jobs_shard *shards,
                       size_t cap, size_t *out_n, char *err, size_t err_len);
    int (*shards_count)(void *db, const char *job_id, int64_t now_ms, jobs_shard_counts *out,
                        char *err, size_t err_len);
} jobs__backend;

/* The columns of a jobs_row and of a jobs_shard, in the order both backends read them. */
#define JOBS__ROW_COLS                                                                      \
    "id, token, doc, rules, status, priority, total, succeeded, failed, created_ms,"        \
    " terminated_ms, active_ms, failure_code, failure_reason, status_reason, suspended_ms," \
    " suspended_cause, generated_manifest, owner, owner_seen_ms, active_since_ms,"          \
    " doc_sha256, rules_sha256"
#define JOBS__SHARD_COLS                                                                    \
    "job_id, idx, first_seq, n_rows, complete, uncertain, token, owner, expires_ms,"        \
    " leased_before, ckpt, succeeded, failed"

extern const jobs__backend jobs__sqlite_backend; /* store_sqlite.c */
extern const jobs__backend jobs__pg_backend;     /* store_pg.c */

/* The message of a catalogue newer than this batchrep (both backends say it alike). */
void jobs__schema_newer(char *err, size_t err_len, const char *name, long version);

/* ---- a job's record beside the catalogue (recover.c; SQLite only) ------------------------ */

/* Writes <state>/jobs/<id>/job.json (folder 0700, file 0600, atomically): what the job's
   catalogue row is made from; after the row is in the catalogue. 0 or -JOBS_E_*. */
int jobs__record_write(const char *state_dir, const jobs_row *r, char *err, size_t err_len);
/* Removes a record written for a job that was not created after all (and its folder when
   empty). */
void jobs__record_remove(const char *state_dir, const char *id);
/* Puts back into the catalogue every job whose folder has a record and that the catalogue
   does not hold (lost, emptied, rebuilt), with the status its folder tells. 0 or <0. */
int jobs__store_import(jobs_store *s);
/* Renames a damaged catalogue (and its -wal, -shm) to <db_path>.damaged-<epoch ms>; the new
   name in out. 0 or -1. */
int jobs__move_aside(const char *db_path, char *out, size_t cap);

#endif
