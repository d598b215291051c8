/*
 * recover.c — a catalogue that is lost, emptied or damaged loses no job.
 *
 * Every job also has a record next to its state: <state>/jobs/<id>/job.json (0600), written
 * right after its catalogue row (never before: a record without a row is what is put back,
 * so another process opening the catalogue meanwhile must not see one), holding what the
 * row is made from and that never changes: the
 * ID, the ClientRequestToken, the CreateJob document and the replication configuration given
 * at creation (with their SHA-256s), the priority and the creation time. When a SQLite
 * catalogue opens (store.c; a PostgreSQL one keeps no records: its state directory is scratch
 * space), each job folder whose job is not in it is put back:
 *   - a folder with describe.json (written when the job ended) gets that final status and
 *     its counts;
 *   - a folder with a complete spool (spool/index.json) was prepared: it is Active again
 *     (Suspended when it waits for a confirmation and no report rows were written), and
 *     the next worker records its shards again from the spool, their progress unknown
 *     (run/scheduler.c restore_shards): every unit not known done rechecks its
 *     destinations, so nothing is written twice;
 *   - any other folder is New: it is prepared again.
 * A catalogue SQLite calls damaged (SQLITE_CORRUPT, SQLITE_NOTADB, or a failed quick_check)
 * is moved aside as batchrep.db.damaged-<epoch ms> (with its -wal and -shm) and a new one is
 * rebuilt this way. Each step is said on stderr.
 * Format of job.json: {"JobId", "ClientRequestToken", "CreatedMs", "Priority", "Document",
 * "Rules" (string or null), "DocSha256", "RulesSha256"}.
 */
#include "jobs/jobs_int.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECORD_NAME "job.json"

/* <state>/jobs/<id>[/<name>]; -1 when too long. */
static int job_path(char *out, size_t cap, const char *state_dir, const char *id,
                    const char *name)
{
    size_t n = (size_t)(name ? snprintf(out, cap, "%s/jobs/%s/%s", state_dir, id, name)
                             : snprintf(out, cap, "%s/jobs/%s", state_dir, id));
    return n < cap ? 0 : -1;
}

int jobs__record_write(const char *state_dir, const jobs_row *r, char *err, size_t err_len)
{
    char dir[4200], path[4300];
    if (job_path(dir, sizeof dir, state_dir, r->id, NULL) ||
        job_path(path, sizeof path, state_dir, r->id, RECORD_NAME)) {
        snprintf(err, err_len, "%s: the state directory's path is too long", state_dir);
        return -JOBS_E_IO;
    }
    if (s3_mkdir_p(dir, S3_MODE_PRIVATE_DIR) != 0) {
        snprintf(err, err_len, "cannot create %s: %s", dir, strerror(errno));
        return s3_errno_disk_full(errno) ? -JOBS_E_DISK_FULL : -JOBS_E_IO;
    }
    json_t *j = json_pack("{s:s,s:s,s:I,s:i,s:s,s:s?,s:s,s:s}", "JobId", r->id,
                          "ClientRequestToken", r->token, "CreatedMs", (json_int_t)r->created_ms,
                          "Priority", r->priority, "Document", r->doc, "Rules", r->rules,
                          "DocSha256", r->doc_sha256, "RulesSha256", r->rules_sha256);
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!text) {
        snprintf(err, err_len, "%s: cannot encode the job's record", path);
        return -JOBS_E_NOMEM;
    }
    int rc = s3_write_file_atomic(path, text, strlen(text), S3_MODE_PRIVATE_FILE, err, err_len);
    int saved = errno;
    free(text);
    if (rc == S3_E_OK)
        return 0;
    return s3_errno_disk_full(saved) ? -JOBS_E_DISK_FULL : -JOBS_E_IO;
}

void jobs__record_remove(const char *state_dir, const char *id)
{
    char path[4300], dir[4200];
    if (job_path(path, sizeof path, state_dir, id, RECORD_NAME) == 0)
        unlink(path);
    if (job_path(dir, sizeof dir, state_dir, id, NULL) == 0)
        rmdir(dir); /* only when nothing else is in it */
}

/* A string member copied into out (cap), -1 when absent or too long. */
static int get_str(json_t *o, const char *name, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(o, name));
    return v && (size_t)snprintf(out, cap, "%s", v) < cap ? 0 : -1;
}

/* The row a job's record describes, status New. 0, or -1 (not a record: left alone). */
static int read_record(const char *path, jobs_row *r)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    json_t *created = json_object_get(j, "CreatedMs"), *prio = json_object_get(j, "Priority");
    json_t *doc = json_object_get(j, "Document"), *rules = json_object_get(j, "Rules");
    int bad = !j || get_str(j, "JobId", r->id, sizeof r->id) ||
              get_str(j, "ClientRequestToken", r->token, sizeof r->token) ||
              !json_is_integer(created) || !json_is_integer(prio) || !json_is_string(doc) ||
              !(json_is_string(rules) || json_is_null(rules)) ||
              get_str(j, "DocSha256", r->doc_sha256, sizeof r->doc_sha256) ||
              get_str(j, "RulesSha256", r->rules_sha256, sizeof r->rules_sha256);
    if (!bad) {
        r->created_ms = json_integer_value(created);
        r->priority = (int)json_integer_value(prio);
        r->doc = strdup(json_string_value(doc));
        r->rules = json_is_string(rules) ? strdup(json_string_value(rules)) : NULL;
        r->status = JOBS_STATUS_NEW;
        bad = !r->doc || (json_is_string(rules) && !r->rules);
    }
    json_decref(j);
    if (bad)
        jobs_row_cleanup(r);
    return bad ? -1 : 0;
}

static int64_t get_int(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* What the folder says of the job's progress: its final DescribeJob, or its spool. */
static void status_from_folder(const char *state_dir, jobs_row *r)
{
    char path[4300];
    json_error_t je;
    json_t *d = job_path(path, sizeof path, state_dir, r->id, "describe.json") == 0
                    ? json_load_file(path, 0, &je)
                    : NULL;
    json_t *job = json_object_get(d, "Job");
    const char *status = json_string_value(json_object_get(job, "Status"));
    int st = status ? jobs_status_parse(status) : -1;
    if (job && st >= 0 && jobs_status_terminal((jobs_status)st)) {
        json_t *ps = json_object_get(job, "ProgressSummary");
        r->status = (jobs_status)st;
        r->total = (uint64_t)get_int(ps, "TotalNumberOfTasks");
        r->succeeded = (uint64_t)get_int(ps, "NumberOfTasksSucceeded");
        r->failed = (uint64_t)get_int(ps, "NumberOfTasksFailed");
        json_t *fr = json_array_get(json_object_get(job, "FailureReasons"), 0);
        const char *code = json_string_value(json_object_get(fr, "FailureCode"));
        const char *why = json_string_value(json_object_get(fr, "FailureReason"));
        snprintf(r->failure_code, sizeof r->failure_code, "%s", code ? code : "");
        snprintf(r->failure_reason, sizeof r->failure_reason, "%s", why ? why : "");
        r->terminated_ms = r->created_ms; /* the real time is in describe.json's text only */
        json_decref(d);
        return;
    }
    json_decref(d);
    json_t *idx = job_path(path, sizeof path, state_dir, r->id, "spool/index.json") == 0
                      ? json_load_file(path, 0, &je)
                      : NULL;
    if (!idx)
        return; /* not prepared: New, prepared again */
    r->total = (uint64_t)get_int(idx, "n_rows");
    json_decref(idx);
    json_t *doc = json_loads(r->doc, 0, &je);
    int confirm = json_is_true(json_object_get(doc, "ConfirmationRequired"));
    json_decref(doc);
    char ck[4300];
    /* report rows of a checkpoint (run/writer.c parts): it ran, so it was confirmed */
    int started = job_path(ck, sizeof ck, state_dir, r->id, "work/parts") == 0 &&
                  access(ck, F_OK) == 0;
    r->status = confirm && !started ? JOBS_STATUS_SUSPENDED : JOBS_STATUS_ACTIVE;
}

int jobs__store_import(jobs_store *s)
{
    const char *state_dir = jobs_store_dir(s);
    char dir[4200], err[1024];
    if ((size_t)snprintf(dir, sizeof dir, "%s/jobs", state_dir) >= sizeof dir)
        return -JOBS_E_IO;
    DIR *dp = opendir(dir);
    if (!dp)
        return 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4300];
        jobs_row r, cur;
        if (job_path(path, sizeof path, state_dir, de->d_name, RECORD_NAME) != 0 ||
            read_record(path, &r) != 0)
            continue; /* not a job's folder, or one from before records were kept */
        int found = strcmp(r.id, de->d_name) == 0 ? jobs_store_get(s, r.id, &cur, err, sizeof err)
                                                   : 1;
        if (found == 1 && strcmp(r.id, de->d_name) == 0)
            jobs_row_cleanup(&cur);
        if (found != 0) {
            jobs_row_cleanup(&r);
            if (found < 0)
                rc = found;
            continue;
        }
        status_from_folder(state_dir, &r);
        char existing[40];
        /* the whole row, counters and failure included (a save would not write counters) */
        int irc = jobs_store_insert(s, &r, existing, err, sizeof err);
        if (irc == 0 && !existing[0])
            fprintf(stderr,
                    "batchrep: %s/batchrep.db: job %s was not in the catalogue; restored "
                    "from %s as %s\n",
                    state_dir, r.id, path, jobs_status_name(r.status));
        else if (irc != 0)
            fprintf(stderr, "batchrep: cannot restore job %s from %s: %s\n", r.id, path, err);
        jobs_row_cleanup(&r);
    }
    closedir(dp);
    return rc;
}

int jobs__move_aside(const char *db_path, char *out, size_t cap)
{
    char dst[4400], src[4300];
    long long stamp = (long long)s3_wall_ms();
    if ((size_t)snprintf(out, cap, "%s.damaged-%lld", db_path, stamp) >= cap)
        return -1;
    if (rename(db_path, out) != 0 && errno != ENOENT)
        return -1;
    static const char *const side[] = {"-wal", "-shm"};
    for (int i = 0; i < 2; i++) {
        if ((size_t)snprintf(src, sizeof src, "%s%s", db_path, side[i]) < sizeof src &&
            (size_t)snprintf(dst, sizeof dst, "%s%s", out, side[i]) < sizeof dst)
            rename(src, dst); /* absent: nothing to keep */
    }
    return 0;
}
