/*
 * store_pg.c — the job catalogue shared by workers on many machines: PostgreSQL through
 * libpq (jobs_int.h's jobs__backend; store.c makes the decisions).
 *
 * One connection per store, opened with PQconnectdbParams from the catalogue's URL
 * (expand_dbname); what the URL does not say is added: connect_timeout=5, TCP keepalives
 * (idle 5 s, then 2 probes 2 s apart) and tcp_user_timeout=10000, so a server that vanishes
 * is noticed within about 10 s, and client_encoding UTF8 (every text here is UTF-8). Each
 * session sets statement_timeout and lock_timeout to 10 s, so that no call waits longer on
 * the catalogue. A call that finds the connection broken (server restarted, network) fails
 * with -JOBS_E_IO, "catalogue postgresql://host:port/db unreachable: ...", and the next call
 * outside a transaction resets the connection first (PQreset; after a failed attempt, not
 * before a backoff of 250 ms doubling to 8 s has passed): callers retry on their own
 * schedule. Every statement with a value in it is PQexecParams, its values parameters.
 *
 * The schema (the same tables as SQLite's, and a sequence for the lease tokens) is created
 * once, inside a transaction holding pg_advisory_xact_lock, so that workers opening a new
 * catalogue at once do not race. The catalogue's clock is the server's clock_timestamp():
 * one clock for every worker of the fleet. A shard is picked FOR UPDATE OF shards SKIP
 * LOCKED: workers leasing at once never wait for each other. Text sorts in the "C"
 * collation, as SQLite sorts it.
 *
 * A password (in the URL) is never printed: the catalogue's name is postgresql://host:port/db
 * and every libpq message is scrubbed of it.
 */
#include "jobs/jobs_int.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* pg_advisory_xact_lock's key for the schema's creation: "batchrep" as a big-endian int64. */
#define SCHEMA_LOCK_KEY "7089075258760783216"

typedef struct pg {
    PGconn *conn;
    int in_tx;               /* between begin and commit/rollback: a lost connection is not
                                reset under a transaction, which went with it */
    char name[600];          /* postgresql://host:port/db */
    char password[256];      /* as libpq reads it from the URL, and as the URL spells it: */
    char password_raw[256];  /* scrubbed from every message */
    /* Reconnecting after a failed attempt waits: 250 ms, doubling to 8 s, so a fleet of
       workers does not hammer a server that is restarting; calls in between fail at once. */
    int64_t retry_at_ms;     /* s3_mono_ms() before which no reconnect is tried */
    int64_t backoff_ms;
} pg;

#define RECONNECT_FIRST_MS 250
#define RECONNECT_MAX_MS 8000

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id text PRIMARY KEY,"
    " token text NOT NULL UNIQUE,"
    " doc text NOT NULL,"
    " rules text,"
    " status text NOT NULL,"
    " priority integer NOT NULL,"
    " total bigint NOT NULL DEFAULT 0,"
    " succeeded bigint NOT NULL DEFAULT 0,"
    " failed bigint NOT NULL DEFAULT 0,"
    " created_ms bigint NOT NULL,"
    " terminated_ms bigint,"
    " active_ms bigint NOT NULL DEFAULT 0,"
    " failure_code text, failure_reason text,"
    " status_reason text,"
    " suspended_ms bigint, suspended_cause text,"
    " generated_manifest text,"
    " owner text, owner_seen_ms bigint,"
    " active_since_ms bigint,"
    " doc_sha256 text, rules_sha256 text);"
    "CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, priority);"
    "CREATE TABLE IF NOT EXISTS shards ("
    " job_id text NOT NULL,"
    " idx bigint NOT NULL,"
    " first_seq bigint NOT NULL,"
    " n_rows bigint NOT NULL,"
    " complete integer NOT NULL DEFAULT 0,"
    " uncertain integer NOT NULL DEFAULT 0,"
    " token bigint NOT NULL DEFAULT 0,"
    " owner text,"
    " expires_ms bigint NOT NULL DEFAULT 0,"
    " leased_before integer NOT NULL DEFAULT 0,"
    " ckpt text,"
    " succeeded bigint NOT NULL DEFAULT 0,"
    " failed bigint NOT NULL DEFAULT 0,"
    " PRIMARY KEY (job_id, idx));"
    "CREATE INDEX IF NOT EXISTS shards_open ON shards(job_id, idx) WHERE complete = 0;"
    "CREATE SEQUENCE IF NOT EXISTS lease_tokens;";

/* ---- messages ------------------------------------------------------------------------------ */

/* Replaces every occurrence of `secret` in s with "***". */
static void scrub(char *s, size_t cap, const char *secret)
{
    size_t n = strlen(secret);
    char *hit;
    if (!n)
        return;
    while ((hit = strstr(s, secret)) != NULL) {
        char rest[2048];
        snprintf(rest, sizeof rest, "%s", hit + n);
        snprintf(hit, cap - (size_t)(hit - s), "***%s", rest);
    }
}

/* libpq's message on one line, without the password: a line that begins a sentence joins
   the one before with "; ", one that continues it with a space. */
static void clean_msg(const pg *p, const char *in, char *out, size_t cap)
{
    size_t j = 0;
    int line_break = 0;
    for (size_t i = 0; in && in[i] && j + 4 < cap; i++) {
        char c = in[i] == '\t' || in[i] == '\r' ? ' ' : in[i];
        if (c == '\n') {
            line_break = 1;
            continue;
        }
        if (c == ' ' && (j == 0 || out[j - 1] == ' ' || line_break))
            continue;
        if (line_break && j > 0) {
            if (c >= 'A' && c <= 'Z')
                out[j++] = ';';
            out[j++] = ' ';
        }
        line_break = 0;
        out[j++] = c;
    }
    while (j > 0 && out[j - 1] == ' ')
        j--;
    out[j] = '\0';
    if (!out[0])
        snprintf(out, cap, "no answer");
    scrub(out, cap, p->password);
    scrub(out, cap, p->password_raw);
}

static int unreachable(const pg *p, const char *why, char *err, size_t err_len)
{
    char msg[1024];
    clean_msg(p, why, msg, sizeof msg);
    snprintf(err, err_len, "catalogue %s unreachable: %s", p->name, msg);
    return -JOBS_E_IO;
}

/* A failed statement: unreachable when the connection is gone, else what failed. */
static int fail(const pg *p, const PGresult *res, const char *what, char *err, size_t err_len)
{
    const char *why = res ? PQresultErrorMessage(res) : "";
    if (!why || !*why)
        why = PQerrorMessage(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK)
        return unreachable(p, why, err, err_len);
    char msg[1024];
    clean_msg(p, why, msg, sizeof msg);
    snprintf(err, err_len, "catalogue %s: %s: %s", p->name, what, msg);
    return -JOBS_E_IO;
}

/* ---- the connection -------------------------------------------------------------------------- */

static void quiet(void *arg, const char *message)
{
    /* libpq prints NOTICEs ("relation already exists, skipping") on stderr by default */
}

/* What each session needs, after a connect and after a reset. */
static int session(pg *p, char *err, size_t err_len)
{
    PGresult *res = PQexec(p->conn, "SET statement_timeout = 10000; SET lock_timeout = 10000; "
                                    "SET idle_in_transaction_session_timeout = 60000; "
                                    "SET client_min_messages = warning");
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    int rc = ok ? 0 : fail(p, res, "session settings", err, err_len);
    PQclear(res);
    return rc;
}

/* The connection, reset first when it broke (never under a transaction: that went with it). */
static int ready(pg *p, char *err, size_t err_len)
{
    if (PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    if (p->in_tx)
        return unreachable(p, "the connection was lost in a transaction", err, err_len);
    int64_t now = s3_mono_ms();
    if (now < p->retry_at_ms)
        return unreachable(p, "the last reconnect failed; waiting before the next", err,
                           err_len);
    PQreset(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK) {
        p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : RECONNECT_FIRST_MS;
        if (p->backoff_ms > RECONNECT_MAX_MS)
            p->backoff_ms = RECONNECT_MAX_MS;
        p->retry_at_ms = now + p->backoff_ms;
        return unreachable(p, PQerrorMessage(p->conn), err, err_len);
    }
    p->backoff_ms = 0;
    p->retry_at_ms = 0;
    return session(p, err, err_len);
}

/* Runs one statement with n text parameters (NULL: SQL NULL): 0 and *out (PQclear it), or
   <0 with err. */
static int run(pg *p, const char *what, const char *sql, int n, const char *const *vals,
               PGresult **out, char *err, size_t err_len)
{
    *out = NULL;
    int rc = ready(p, err, err_len);
    if (rc)
        return rc;
    PGresult *res = PQexecParams(p->conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *out = res;
        return 0;
    }
    rc = fail(p, res, what, err, err_len);
    PQclear(res);
    return rc;
}

/* A statement whose answer is only how many rows it changed. */
static int changed(pg *p, const char *what, const char *sql, int n, const char *const *vals,
                   char *err, size_t err_len)
{
    PGresult *res;
    int rc = run(p, what, sql, n, vals, &res, err, err_len);
    if (rc)
        return rc;
    rc = (int)strtol(PQcmdTuples(res), NULL, 10); /* "" for a statement that counts none */
    PQclear(res);
    return rc;
}

/* An int64 parameter. */
static const char *num(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

/* 0 is "none" for the optional times: SQL NULL. */
static const char *opt_ms(char buf[24], int64_t v)
{
    return v ? num(buf, v) : NULL;
}

static int64_t int_val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void copy_val(const PGresult *r, int row, int col, char *out, size_t cap)
{
    snprintf(out, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static char *dup_val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

/* Text PostgreSQL takes: in itself when it is valid UTF-8, else a copy in buf (cap bytes,
   at least strlen(in) + 1) with each invalid byte a '?'. A failure reason may quote a
   server's bytes; the catalogue would refuse the whole row for one of them. */
static const char *utf8(const char *in, char *buf, size_t cap)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t len = strlen(in), i = 0, j = 0;
    int bad = 0;
    while (i < len && j + 1 < cap) {
        size_t n = s[i] < 0x80 ? 1 : (s[i] & 0xE0) == 0xC0 ? 2 : (s[i] & 0xF0) == 0xE0 ? 3
                   : (s[i] & 0xF8) == 0xF0 ? 4 : 0;
        int ok = n > 0 && i + n <= len && !(n == 2 && s[i] < 0xC2) && !(n == 4 && s[i] > 0xF4);
        for (size_t k = 1; ok && k < n; k++)
            ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && n == 3) /* no overlong forms, no surrogates */
            ok = !(s[i] == 0xE0 && s[i + 1] < 0xA0) && !(s[i] == 0xED && s[i + 1] >= 0xA0);
        if (ok && n == 4)
            ok = !(s[i] == 0xF0 && s[i + 1] < 0x90) && !(s[i] == 0xF4 && s[i + 1] >= 0x90);
        if (!ok) {
            buf[j++] = '?';
            bad = 1;
            i++;
            continue;
        }
        for (size_t k = 0; k < n && j + 1 < cap; k++)
            buf[j++] = (char)s[i++];
    }
    buf[j] = '\0';
    return bad ? buf : in;
}

/* ---- opening ------------------------------------------------------------------------------- */

/* The catalogue's name and password from its URL. 0, or -JOBS_E_INVALID_JOB. */
static int parse_url(pg *p, const char *url, char *err, size_t err_len)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        const char *v = o->val && *o->val ? o->val : NULL;
        if (strcmp(o->keyword, "host") == 0)
            host = v;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = v;
        else if (strcmp(o->keyword, "port") == 0)
            port = v;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = v;
        else if (strcmp(o->keyword, "user") == 0)
            user = v;
        else if (strcmp(o->keyword, "password") == 0 && v)
            snprintf(p->password, sizeof p->password, "%s", v);
    }
    /* the password as the URL spells it (percent-encoded): "scheme://user:PASSWORD@host" */
    const char *auth = strstr(url, "://");
    if (auth) {
        auth += 3;
        const char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (at && (!slash || at < slash) && colon)
            snprintf(p->password_raw, sizeof p->password_raw, "%.*s", (int)(at - colon - 1),
                     colon + 1);
    }
    snprintf(p->name, sizeof p->name, "postgresql://%.200s:%.20s/%.200s",
             host ? host : hostaddr ? hostaddr : "localhost", port ? port : "5432",
             db ? db : user ? user : "");
    PQconninfoFree(opts);
    if (!opts) {
        char clean[512];
        clean_msg(p, msg ? msg : "out of memory", clean, sizeof clean);
        snprintf(err, err_len, "the catalogue's URL (--catalog or BATCHREP_CATALOG): %s", clean);
        PQfreemem(msg);
        return -JOBS_E_INVALID_JOB;
    }
    return 0;
}

/* The catalogue's schema version: 0 when it has none yet. */
static int read_version(pg *p, long *out, char *err, size_t err_len)
{
    PGresult *res;
    *out = 0;
    int rc = run(p, "schema version", "SELECT to_regclass('batchrep_schema') IS NOT NULL", 0,
                 NULL, &res, err, err_len);
    if (rc)
        return rc;
    int have = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!have)
        return 0;
    rc = run(p, "schema version", "SELECT max(version) FROM batchrep_schema", 0, NULL, &res,
             err, err_len);
    if (rc)
        return rc;
    *out = PQntuples(res) == 1 ? (long)int_val(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

static int pg_begin(void *db, char *err, size_t err_len);
static int pg_commit(void *db, char *err, size_t err_len);
static void pg_rollback(void *db);

/* Creates the schema (or upgrades it) once, under the advisory lock. */
static int setup(pg *p, char *err, size_t err_len)
{
    long version;
    int rc = read_version(p, &version, err, err_len);
    if (rc == 0 && version == JOBS_SCHEMA_VERSION)
        return 0; /* the usual open: nothing to write */
    if (rc == 0 && version > JOBS_SCHEMA_VERSION) {
        jobs__schema_newer(err, err_len, p->name, version);
        return -JOBS_E_SCHEMA;
    }
    if (rc || (rc = pg_begin(p, err, err_len)) != 0)
        return rc;
    PGresult *res;
    rc = run(p, "schema lock", "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")", 0, NULL,
             &res, err, err_len);
    PQclear(res);
    if (rc == 0)
        rc = run(p, "schema", "CREATE TABLE IF NOT EXISTS batchrep_schema (version integer "
                              "NOT NULL)", 0, NULL, &res, err, err_len);
    PQclear(res);
    if (rc == 0)
        rc = read_version(p, &version, err, err_len);
    if (rc == 0 && version > JOBS_SCHEMA_VERSION) {
        jobs__schema_newer(err, err_len, p->name, version);
        rc = -JOBS_E_SCHEMA;
    }
    if (rc == 0 && version < JOBS_SCHEMA_VERSION) {
        res = PQexec(p->conn, schema); /* several statements, no values: PQexec */
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = fail(p, res, "creating the schema", err, err_len);
        PQclear(res);
        char v[24];
        const char *vals[] = {num(v, JOBS_SCHEMA_VERSION)};
        if (rc == 0)
            rc = run(p, "schema version", "DELETE FROM batchrep_schema", 0, NULL, &res, err,
                     err_len);
        PQclear(res);
        if (rc == 0)
            rc = run(p, "schema version", "INSERT INTO batchrep_schema (version) VALUES ($1)",
                     1, vals, &res, err, err_len);
        PQclear(res);
    }
    if (rc)
        pg_rollback(p);
    else
        rc = pg_commit(p, err, err_len);
    return rc;
}

static void pg_close(void *db)
{
    pg *p = db;
    if (!p)
        return;
    PQfinish(p->conn);
    free(p);
}

static int pg_open(const char *state_dir, const char *catalog, void **out_db, char *name,
                   size_t name_cap, char *err, size_t err_len)
{
    pg *p = calloc(1, sizeof *p);
    if (!p)
        return -JOBS_E_NOMEM;
    int rc = parse_url(p, catalog, err, err_len);
    snprintf(name, name_cap, "%s", p->name);
    if (rc) {
        free(p);
        return rc;
    }
    /* with expand_dbname, a keyword after dbname overrides the URL's, one before it is
       overridden: the defaults come first, the encoding (every text here is UTF-8) last */
    static const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                                       "keepalives_interval", "keepalives_count",
                                       "tcp_user_timeout", "application_name", "dbname",
                                       "client_encoding", NULL};
    const char *const vals[] = {"5", "1", "5", "2", "2", "10000", "batchrep", catalog, "UTF8",
                                NULL};
    p->conn = PQconnectdbParams(keys, vals, 1);
    if (!p->conn) {
        free(p);
        return -JOBS_E_NOMEM;
    }
    PQsetNoticeProcessor(p->conn, quiet, NULL);
    if (PQstatus(p->conn) != CONNECTION_OK)
        rc = unreachable(p, PQerrorMessage(p->conn), err, err_len);
    if (rc == 0)
        rc = session(p, err, err_len);
    if (rc == 0)
        rc = setup(p, err, err_len);
    if (rc) {
        pg_close(p);
        return rc;
    }
    *out_db = p;
    return 0;
}

/* ---- transactions ------------------------------------------------------------------------- */

static int pg_begin(void *db, char *err, size_t err_len)
{
    pg *p = db;
    PGresult *res;
    int rc = run(p, "begin", "BEGIN", 0, NULL, &res, err, err_len);
    PQclear(res);
    p->in_tx = rc == 0;
    return rc;
}

static int pg_commit(void *db, char *err, size_t err_len)
{
    pg *p = db;
    PGresult *res;
    int rc = run(p, "commit", "COMMIT", 0, NULL, &res, err, err_len);
    PQclear(res);
    if (rc)
        pg_rollback(p);
    p->in_tx = 0;
    return rc;
}

static void pg_rollback(void *db)
{
    pg *p = db;
    if (PQstatus(p->conn) == CONNECTION_OK &&
        PQtransactionStatus(p->conn) != PQTRANS_IDLE)
        PQclear(PQexec(p->conn, "ROLLBACK"));
    p->in_tx = 0;
}

static int pg_now_ms(void *db, int64_t *out, char *err, size_t err_len)
{
    PGresult *res;
    int rc = run(db, "clock", "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint",
                 0, NULL, &res, err, err_len);
    if (rc)
        return rc;
    *out = int_val(res, 0, 0);
    PQclear(res);
    return 0;
}

/* ---- jobs ----------------------------------------------------------------------------------- */

/* Row `i` of a result of JOBS__ROW_COLS. */
static void read_row(const PGresult *res, int i, jobs_row *r)
{
    memset(r, 0, sizeof *r);
    copy_val(res, i, 0, r->id, sizeof r->id);
    copy_val(res, i, 1, r->token, sizeof r->token);
    r->doc = dup_val(res, i, 2);
    r->rules = dup_val(res, i, 3);
    r->status = jobs_status_parse(PQgetvalue(res, i, 4));
    r->priority = (int)int_val(res, i, 5);
    r->total = (uint64_t)int_val(res, i, 6);
    r->succeeded = (uint64_t)int_val(res, i, 7);
    r->failed = (uint64_t)int_val(res, i, 8);
    r->created_ms = int_val(res, i, 9);
    r->terminated_ms = int_val(res, i, 10);
    r->active_ms = int_val(res, i, 11);
    copy_val(res, i, 12, r->failure_code, sizeof r->failure_code);
    copy_val(res, i, 13, r->failure_reason, sizeof r->failure_reason);
    copy_val(res, i, 14, r->status_reason, sizeof r->status_reason);
    r->suspended_ms = int_val(res, i, 15);
    copy_val(res, i, 16, r->suspended_cause, sizeof r->suspended_cause);
    r->generated_manifest = dup_val(res, i, 17);
    copy_val(res, i, 18, r->owner, sizeof r->owner);
    r->owner_seen_ms = int_val(res, i, 19);
    r->active_since_ms = int_val(res, i, 20);
    copy_val(res, i, 21, r->doc_sha256, sizeof r->doc_sha256);
    copy_val(res, i, 22, r->rules_sha256, sizeof r->rules_sha256);
}

static int pg_get(void *db, const char *id, int lock, jobs_row *out, char *err, size_t err_len)
{
    PGresult *res;
    const char *vals[] = {id};
    int rc = run(db, "select",
                 lock ? "SELECT " JOBS__ROW_COLS " FROM jobs WHERE id = $1 FOR UPDATE"
                      : "SELECT " JOBS__ROW_COLS " FROM jobs WHERE id = $1",
                 1, vals, &res, err, err_len);
    if (rc)
        return rc;
    int found = PQntuples(res) == 1;
    if (found)
        read_row(res, 0, out);
    PQclear(res);
    return found;
}

/* The job holding the ClientRequestToken: 1 (id in out, 40 bytes), 0 none, <0. */
static int by_token(pg *p, const char *token, char *out, char *err, size_t err_len)
{
    PGresult *res;
    const char *vals[] = {token};
    int rc = run(p, "select", "SELECT id FROM jobs WHERE token = $1", 1, vals, &res, err,
                 err_len);
    if (rc)
        return rc;
    int found = PQntuples(res) == 1;
    if (found)
        copy_val(res, 0, 0, out, 40);
    PQclear(res);
    return found;
}

/* The free texts of a row, made valid UTF-8 (utf8). */
typedef struct texts {
    char code[64], reason[1024], status_reason[300], cause[300];
} texts;

static int pg_insert(void *db, const jobs_row *r, char *out_existing_id, char *err,
                     size_t err_len)
{
    pg *p = db;
    int rc = by_token(p, r->token, out_existing_id, err, err_len);
    if (rc != 0)
        return rc < 0 ? rc : 0; /* same ClientRequestToken: that job (the caller compares) */
    char prio[24], total[24], ok[24], bad[24], created[24], term[24], active[24], susp[24],
        since[24];
    texts t;
    const char *vals[] = {
        r->id, r->token, r->doc, r->rules, jobs_status_name(r->status), num(prio, r->priority),
        num(total, (int64_t)r->total), num(ok, (int64_t)r->succeeded),
        num(bad, (int64_t)r->failed), num(created, r->created_ms), opt_ms(term, r->terminated_ms),
        num(active, r->active_ms), utf8(r->failure_code, t.code, sizeof t.code),
        utf8(r->failure_reason, t.reason, sizeof t.reason),
        utf8(r->status_reason, t.status_reason, sizeof t.status_reason),
        opt_ms(susp, r->suspended_ms), utf8(r->suspended_cause, t.cause, sizeof t.cause),
        r->generated_manifest, opt_ms(since, r->active_since_ms), r->doc_sha256,
        r->rules_sha256};
    rc = changed(p, "insert",
                 "INSERT INTO jobs (id, token, doc, rules, status, priority, total, succeeded, "
                 "failed, created_ms, terminated_ms, active_ms, failure_code, failure_reason, "
                 "status_reason, suspended_ms, suspended_cause, generated_manifest, "
                 "active_since_ms, doc_sha256, rules_sha256) VALUES ($1, $2, $3, $4, $5, "
                 "$6::integer, $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint, "
                 "$12::bigint, $13, $14, $15, $16::bigint, $17, $18, $19::bigint, "
                 "NULLIF($20, ''), NULLIF($21, '')) ON CONFLICT (token) DO NOTHING",
                 21, vals, err, err_len);
    if (rc == 0) { /* another worker inserted the same token meanwhile: that job */
        rc = by_token(p, r->token, out_existing_id, err, err_len);
        if (rc == 0) {
            snprintf(err, err_len, "catalogue %s: job %s was not inserted", p->name, r->id);
            rc = -JOBS_E_IO;
        }
    }
    return rc < 0 ? rc : 0;
}

static int pg_update(void *db, const jobs_row *r, char *err, size_t err_len)
{
    char total[24], term[24], active[24], since[24], susp[24];
    texts t;
    const char *vals[] = {
        r->id, jobs_status_name(r->status), num(total, (int64_t)r->total),
        opt_ms(term, r->terminated_ms), num(active, r->active_ms),
        opt_ms(since, r->active_since_ms), utf8(r->failure_code, t.code, sizeof t.code),
        utf8(r->failure_reason, t.reason, sizeof t.reason), opt_ms(susp, r->suspended_ms),
        utf8(r->suspended_cause, t.cause, sizeof t.cause), r->generated_manifest,
        utf8(r->status_reason, t.status_reason, sizeof t.status_reason), r->rules};
    int rc = changed(db, "update",
                     "UPDATE jobs SET status = $2, total = $3::bigint, terminated_ms = "
                     "$4::bigint, active_ms = $5::bigint, active_since_ms = $6::bigint, "
                     "failure_code = $7, failure_reason = $8, suspended_ms = $9::bigint, "
                     "suspended_cause = $10, generated_manifest = $11, status_reason = $12, "
                     "rules = $13 WHERE id = $1",
                     13, vals, err, err_len);
    return rc < 0 ? rc : 0;
}

static int pg_set_priority(void *db, const char *id, int priority, char *err, size_t err_len)
{
    char prio[24];
    const char *vals[] = {id, num(prio, priority)};
    int rc = changed(db, "update", "UPDATE jobs SET priority = $2::integer WHERE id = $1", 2,
                     vals, err, err_len);
    return rc < 0 ? rc : rc == 1;
}

static int pg_set_owner(void *db, const char *id, const char *owner, int64_t seen_ms, char *err,
                        size_t err_len)
{
    char seen[24];
    const char *vals[] = {id, owner, opt_ms(seen, seen_ms)};
    int rc = changed(db, "claim",
                     "UPDATE jobs SET owner = $2, owner_seen_ms = $3::bigint WHERE id = $1", 3,
                     vals, err, err_len);
    return rc < 0 ? rc : 0;
}

static int pg_add_counts(void *db, const char *id, int64_t d_succeeded, int64_t d_failed,
                         char *err, size_t err_len)
{
    char ok[24], bad[24];
    const char *vals[] = {id, num(ok, d_succeeded), num(bad, d_failed)};
    int rc = changed(db, "counting",
                     "UPDATE jobs SET succeeded = succeeded + $2::bigint, failed = failed + "
                     "$3::bigint WHERE id = $1",
                     3, vals, err, err_len);
    return rc < 0 ? rc : 0;
}

/* The statuses as a text[] literal ("{Ready,Active}"; their names need no quoting), or NULL
   when there are none. */
static const char *status_array(const jobs_status *statuses, size_t n, char *buf, size_t cap)
{
    size_t len = 0;
    if (!n)
        return NULL;
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? "," : "{",
                                jobs_status_name(statuses[i]));
    if (len < cap)
        snprintf(buf + len, cap - len, "}");
    return buf;
}

static int pg_jobs_page(void *db, const jobs_status *statuses, size_t n_statuses,
                        int64_t after_created_ms, const char *after_id, jobs_row *rows,
                        size_t cap, size_t *out_n, char *err, size_t err_len)
{
    char after[24], limit[24], arr[256];
    const char *vals[] = {num(after, after_created_ms), after_id, num(limit, (int64_t)cap),
                          status_array(statuses, n_statuses, arr, sizeof arr)};
    PGresult *res;
    *out_n = 0;
    int rc = run(db, "select",
                 "SELECT " JOBS__ROW_COLS " FROM jobs WHERE (created_ms < $1::bigint OR "
                 "(created_ms = $1::bigint AND id COLLATE \"C\" > $2)) AND ($4::text[] IS "
                 "NULL OR status = ANY($4::text[])) ORDER BY created_ms DESC, id COLLATE \"C\" "
                 "LIMIT $3::bigint",
                 4, vals, &res, err, err_len);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(res) && *out_n < cap; i++)
        read_row(res, i, &rows[(*out_n)++]);
    PQclear(res);
    return 0;
}

/* ---- shards --------------------------------------------------------------------------------- */

static int pg_shards_delete(void *db, const char *job_id, char *err, size_t err_len)
{
    const char *vals[] = {job_id};
    int rc = changed(db, "shards", "DELETE FROM shards WHERE job_id = $1", 1, vals, err,
                     err_len);
    return rc < 0 ? rc : 0;
}

static int pg_shard_insert(void *db, const char *job_id, const jobs_shard *sh, char *err,
                           size_t err_len)
{
    char idx[24], first[24], n[24];
    const char *vals[] = {job_id, num(idx, sh->index), num(first, (int64_t)sh->first_seq),
                          num(n, (int64_t)sh->n_rows), sh->uncertain ? "1" : "0"};
    int rc = changed(db, "shards",
                     "INSERT INTO shards (job_id, idx, first_seq, n_rows, uncertain) VALUES "
                     "($1, $2::bigint, $3::bigint, $4::bigint, $5::integer)",
                     5, vals, err, err_len);
    return rc < 0 ? rc : 0;
}

static int pg_shard_pick(void *db, const char *only_job, int64_t now_ms,
                         const jobs_status *statuses, size_t n_statuses, char *job_id,
                         uint32_t *index, char *err, size_t err_len)
{
    char now[24], arr[256];
    const char *vals[] = {num(now, now_ms), only_job,
                          status_array(statuses, n_statuses, arr, sizeof arr)};
    PGresult *res;
    int rc = run(db, "lease",
                 "SELECT sh.job_id, sh.idx FROM shards sh JOIN jobs ON jobs.id = sh.job_id "
                 "WHERE sh.complete = 0 AND (sh.owner IS NULL OR sh.expires_ms <= $1::bigint) "
                 "AND ($2::text IS NULL OR sh.job_id = $2::text) "
                 "AND jobs.status = ANY($3::text[]) "
                 "ORDER BY jobs.priority DESC, jobs.created_ms, jobs.id COLLATE \"C\", "
                 "sh.token <> 0 DESC, sh.idx LIMIT 1 FOR UPDATE OF sh SKIP LOCKED",
                 3, vals, &res, err, err_len);
    if (rc)
        return rc;
    int found = PQntuples(res) == 1;
    if (found) {
        copy_val(res, 0, 0, job_id, 40);
        *index = (uint32_t)int_val(res, 0, 1);
    }
    PQclear(res);
    return found;
}

static int pg_next_token(void *db, int64_t *out, char *err, size_t err_len)
{
    PGresult *res;
    int rc = run(db, "lease token", "SELECT nextval('lease_tokens')", 0, NULL, &res, err,
                 err_len);
    if (rc)
        return rc;
    *out = int_val(res, 0, 0);
    PQclear(res);
    return 0;
}

static int pg_shard_lease(void *db, const char *job_id, uint32_t index, int64_t token,
                          const char *owner, int64_t expires_ms, char *err, size_t err_len)
{
    char idx[24], tok[24], exp[24];
    const char *vals[] = {job_id, num(idx, index), num(tok, token), owner,
                          num(exp, expires_ms)};
    int rc = changed(db, "lease",
                     "UPDATE shards SET leased_before = CASE WHEN token <> 0 THEN 1 ELSE "
                     "leased_before END, token = $3::bigint, owner = $4, expires_ms = "
                     "$5::bigint WHERE job_id = $1 AND idx = $2::bigint",
                     5, vals, err, err_len);
    return rc < 0 ? rc : 0;
}

/* Row `i` of a result of JOBS__SHARD_COLS. */
static void read_shard(const PGresult *res, int i, jobs_shard *sh)
{
    memset(sh, 0, sizeof *sh);
    copy_val(res, i, 0, sh->job_id, sizeof sh->job_id);
    sh->index = (uint32_t)int_val(res, i, 1);
    sh->first_seq = (uint64_t)int_val(res, i, 2);
    sh->n_rows = (uint64_t)int_val(res, i, 3);
    sh->complete = int_val(res, i, 4) != 0;
    sh->uncertain = int_val(res, i, 5) != 0;
    sh->token = int_val(res, i, 6);
    copy_val(res, i, 7, sh->owner, sizeof sh->owner);
    sh->expires_ms = int_val(res, i, 8);
    sh->leased_before = int_val(res, i, 9) != 0;
    sh->ckpt = dup_val(res, i, 10);
    sh->succeeded = (uint64_t)int_val(res, i, 11);
    sh->failed = (uint64_t)int_val(res, i, 12);
}

static int pg_shard_get(void *db, const char *job_id, uint32_t index, jobs_shard *out,
                        char *err, size_t err_len)
{
    char idx[24];
    const char *vals[] = {job_id, num(idx, index)};
    PGresult *res;
    int rc = run(db, "shards",
                 "SELECT " JOBS__SHARD_COLS " FROM shards WHERE job_id = $1 AND idx = "
                 "$2::bigint",
                 2, vals, &res, err, err_len);
    if (rc)
        return rc;
    int found = PQntuples(res) == 1;
    if (found)
        read_shard(res, 0, out);
    PQclear(res);
    return found;
}

static int pg_shard_renew(void *db, const char *job_id, uint32_t index, int64_t token,
                          const char *owner, int64_t expires_ms, char *err, size_t err_len)
{
    char idx[24], tok[24], exp[24];
    const char *vals[] = {job_id, num(idx, index), num(tok, token), owner,
                          num(exp, expires_ms)};
    int rc = changed(db, "lease renewal",
                     "UPDATE shards SET expires_ms = $5::bigint WHERE job_id = $1 AND idx = "
                     "$2::bigint AND token = $3::bigint AND owner = $4 AND complete = 0",
                     5, vals, err, err_len);
    return rc < 0 ? rc : rc == 1;
}

static int pg_shard_store(void *db, const char *job_id, uint32_t index, int64_t token,
                          const char *owner, const char *ckpt, int complete,
                          uint64_t succeeded, uint64_t failed, char *err, size_t err_len)
{
    char idx[24], tok[24], ok[24], bad[24];
    const char *vals[] = {job_id, num(idx, index), num(tok, token), owner, ckpt,
                          complete ? "1" : "0", num(ok, (int64_t)succeeded),
                          num(bad, (int64_t)failed)};
    int rc = changed(db, "checkpoint",
                     "UPDATE shards SET ckpt = $5, complete = $6::integer, succeeded = "
                     "$7::bigint, failed = $8::bigint WHERE job_id = $1 AND idx = $2::bigint "
                     "AND token = $3::bigint AND owner = $4 AND complete = 0",
                     8, vals, err, err_len);
    return rc < 0 ? rc : rc == 1;
}

static int pg_shard_release(void *db, const char *job_id, uint32_t index, int64_t token,
                            const char *owner, char *err, size_t err_len)
{
    char idx[24], tok[24];
    const char *vals[] = {job_id, num(idx, index), num(tok, token), owner};
    int rc = changed(db, "lease release",
                     "UPDATE shards SET owner = NULL, expires_ms = 0 WHERE job_id = $1 AND "
                     "idx = $2::bigint AND token = $3::bigint AND owner = $4",
                     4, vals, err, err_len);
    return rc < 0 ? rc : rc == 1;
}

static int pg_shards_page(void *db, const char *job_id, int64_t after, jobs_shard *shards,
                          size_t cap, size_t *out_n, char *err, size_t err_len)
{
    char aft[24], limit[24];
    const char *vals[] = {job_id, num(aft, after), num(limit, (int64_t)cap)};
    PGresult *res;
    *out_n = 0;
    int rc = run(db, "shards",
                 "SELECT " JOBS__SHARD_COLS " FROM shards WHERE job_id = $1 AND idx > "
                 "$2::bigint ORDER BY idx LIMIT $3::bigint",
                 3, vals, &res, err, err_len);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(res) && *out_n < cap; i++)
        read_shard(res, i, &shards[(*out_n)++]);
    PQclear(res);
    return 0;
}

static int pg_shards_count(void *db, const char *job_id, int64_t now_ms,
                           jobs_shard_counts *out, char *err, size_t err_len)
{
    char now[24];
    const char *vals[] = {job_id, num(now, now_ms)};
    PGresult *res;
    int rc = run(db, "shards",
                 "SELECT COUNT(*), COALESCE(SUM(complete), 0), COALESCE(SUM(CASE WHEN "
                 "complete = 0 AND owner IS NOT NULL AND expires_ms > $2::bigint THEN 1 ELSE 0 "
                 "END), 0) FROM shards WHERE job_id = $1",
                 2, vals, &res, err, err_len);
    if (rc)
        return rc;
    out->n = (uint64_t)int_val(res, 0, 0);
    out->complete = (uint64_t)int_val(res, 0, 1);
    out->leased = (uint64_t)int_val(res, 0, 2);
    PQclear(res);
    return 0;
}

const jobs__backend jobs__pg_backend = {
    .kind = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .now_ms = pg_now_ms,
    .get = pg_get,
    .insert = pg_insert,
    .update = pg_update,
    .set_priority = pg_set_priority,
    .set_owner = pg_set_owner,
    .add_counts = pg_add_counts,
    .jobs_page = pg_jobs_page,
    .shards_delete = pg_shards_delete,
    .shard_insert = pg_shard_insert,
    .shard_pick = pg_shard_pick,
    .next_token = pg_next_token,
    .shard_lease = pg_shard_lease,
    .shard_get = pg_shard_get,
    .shard_renew = pg_shard_renew,
    .shard_store = pg_shard_store,
    .shard_release = pg_shard_release,
    .shards_page = pg_shards_page,
    .shards_count = pg_shards_count,
};
