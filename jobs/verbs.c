/*
 * verbs.c — the job verbs of `batchrep`, named and shaped like `aws s3control`'s
 * (../shared/aws-formats.md §3.1, §4.3, §4.4): CreateJob, DescribeJob, ListJobs,
 * UpdateJobPriority, UpdateJobStatus. They read and write the catalogue only; a worker
 * process picks the changes up within a tick (200 ms).
 *
 * CreateJob is idempotent as AWS's is: the same ClientRequestToken returns the job it
 * created, when the request is the same; with another request it is IdempotencyException
 * (aws-formats.md §3.1). "The same" is compared by SHA-256 of the canonical job document
 * (compact JSON, keys sorted, local paths made absolute as stored) and of the replication
 * configuration given (canonical JSON of the file, unwrapped; or the text "from the
 * bucket"): whitespace and key order do not matter, any value does.
 */
#include "jobs/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What stands for "no file: the source bucket's configuration" in rules_sha256. */
#define RULES_FROM_BUCKET "from the bucket"

/* SHA-256 (hex) of a JSON value's canonical text (compact, keys sorted); "" when out of
   memory. */
static void canonical_sha256(json_t *v, char out[65])
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    out[0] = '\0';
    if (text)
        s3_sha256_hex(text, strlen(text), out);
    free(text);
}

/* The token was used before (job `id`): 0 when that job was created from the same request
   (mine: its digests), else IdempotencyException naming the token and what differs. */
static int same_request(jobs_store *s, const char *id, const jobs_row *mine, char *err,
                        size_t err_len)
{
    jobs_row old;
    int rc = jobs_store_get(s, id, &old, err, err_len);
    if (rc <= 0)
        return rc;
    char old_doc[65], from_bucket[65];
    snprintf(old_doc, sizeof old_doc, "%s", old.doc_sha256);
    if (!old_doc[0]) { /* a job created before the digests were kept: its stored document */
        json_t *d = json_loads(old.doc ? old.doc : "", 0, NULL);
        if (d)
            canonical_sha256(d, old_doc);
        json_decref(d);
    }
    s3_sha256_hex(RULES_FROM_BUCKET, strlen(RULES_FROM_BUCKET), from_bucket);
    const char *what = NULL, *how = "";
    if (old_doc[0] && strcmp(old_doc, mine->doc_sha256) != 0) {
        what = "job document";
    } else if (old.rules_sha256[0] && strcmp(old.rules_sha256, mine->rules_sha256) != 0) {
        what = "replication configuration";
        how = strcmp(old.rules_sha256, from_bucket) == 0
                  ? " (the job reads the source bucket's; this request gives a file)"
              : strcmp(mine->rules_sha256, from_bucket) == 0
                  ? " (the job was given a file; this request gives none)"
                  : " (another --replication-config file)";
    }
    jobs_row_cleanup(&old);
    if (!what)
        return 0;
    snprintf(err, err_len,
             "IdempotencyException: ClientRequestToken \"%s\" was already used to create job "
             "%s with a different %s%s; a new job needs a new ClientRequestToken",
             mine->token, id, what, how);
    return -JOBS_E_IDEMPOTENCY;
}

int jobs_create_job(jobs_store *s, const char *job_path, const char *replication_config_path,
                   json_t **out, char *err, size_t err_len)
{
    json_error_t je;
    json_t *doc = json_load_file(job_path, 0, &je);
    if (!doc) {
        snprintf(err, err_len, "%s:%d:%d: not valid JSON: %s", job_path, je.line, je.column,
                 je.text);
        return -JOBS_E_INVALID_JOB;
    }
    jobs_job job;
    memset(&job, 0, sizeof job);
    int rc = jobs_job_parse(&job, doc, job_path, err, err_len);
    if (rc == 0)
        rc = jobs_job_check_new(&job, job_path, err, err_len);
    char *rules_text = NULL;
    char rules_sha[65];
    s3_sha256_hex(RULES_FROM_BUCKET, strlen(RULES_FROM_BUCKET), rules_sha);
    if (rc == 0 && replication_config_path) {
        repl_rules rules;
        json_t *rj = json_load_file(replication_config_path, 0, &je);
        if (!rj) {
            snprintf(err, err_len, "%s:%d:%d: not valid JSON: %s", replication_config_path,
                     je.line, je.column, je.text);
            rc = -JOBS_E_INVALID_JOB;
        } else if ((rc = repl_rules_from_json(&rules, rj, replication_config_path, err,
                                              err_len)) == 0) {
            repl_rules_cleanup(&rules);
            rules_text = json_dumps(rj, JSON_COMPACT);
            json_t *inner = json_object_get(rj, "ReplicationConfiguration");
            canonical_sha256(inner ? inner : rj, rules_sha);
        } else {
            rc = -JOBS_E_INVALID_JOB;
        }
        json_decref(rj);
    }
    if (rc == 0) {
        /* a local manifest path is kept absolute: the worker may run elsewhere */
        if (job.manifest_is_local && job.manifest_path[0] != '/') {
            char *abs = realpath(job.manifest_path, NULL);
            json_t *loc = json_object_get(json_object_get(doc, "Manifest"), "Location");
            if (abs)
                json_object_set_new(loc, "ObjectArn", json_string(abs));
            free(abs);
        }
        json_t *rep = json_object_get(doc, "Report");
        if (job.report_is_local && job.report_bucket[0] != '/') {
            char cwd[4096];
            if (getcwd(cwd, sizeof cwd)) {
                char p[8200];
                snprintf(p, sizeof p, "%s/%s", cwd, job.report_bucket);
                json_object_set_new(rep, "Bucket", json_string(p));
            }
        }
        jobs_row row = job.row;
        s3_uuid4(row.id);
        row.doc = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        row.rules = rules_text;
        row.status = JOBS_STATUS_NEW;
        row.created_ms = s3_wall_ms();
        canonical_sha256(doc, row.doc_sha256);
        snprintf(row.rules_sha256, sizeof row.rules_sha256, "%s", rules_sha);
        char existing[40];
        rc = jobs_store_insert(s, &row, existing, err, err_len);
        if (rc == 0 && existing[0])
            rc = same_request(s, existing, &row, err, err_len);
        if (rc == 0) {
            *out = json_pack("{s:s}", "JobId", existing[0] ? existing : row.id);
        }
        free(row.doc);
        free(rules_text);
        memset(&job.row, 0, sizeof job.row);
    } else {
        free(rules_text);
    }
    json_decref(doc);
    jobs_job_cleanup(&job);
    return rc;
}

static int load(jobs_store *s, const char *id, jobs_job *job, char *err, size_t err_len)
{
    jobs_row row;
    int rc = jobs_store_get(s, id, &row, err, err_len);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        snprintf(err, err_len, "NotFoundException: no job with ID %s", id);
        return -JOBS_E_NOT_FOUND;
    }
    s3_endpoint ep;
    char ignore[256];
    const char *region = s3_endpoint_load(&ep, NULL, ignore, sizeof ignore) == 0 ? ep.region
                                                                                 : "us-east-1";
    jobs_job_load(job, &row, jobs_store_dir(s), region, err, err_len);
    return 0;
}

int jobs_describe_job(jobs_store *s, const char *job_id, json_t **out, char *err, size_t err_len)
{
    jobs_job job;
    int rc = load(s, job_id, &job, err, err_len);
    if (rc)
        return rc;
    *out = jobs_job_describe(&job);
    jobs_job_cleanup(&job);
    return 0;
}

typedef struct list_ctx {
    jobs_store *s;
    json_t *jobs;
} list_ctx;

static int list_one(const jobs_row *r, void *user)
{
    list_ctx *c = user;
    jobs_job job;
    char err[256];
    if (load(c->s, r->id, &job, err, sizeof err) == 0) {
        json_array_append_new(c->jobs, jobs_job_list_descriptor(&job));
        jobs_job_cleanup(&job);
    }
    return 0;
}

int jobs_list_jobs(jobs_store *s, const char *const *statuses, size_t n_statuses, json_t **out,
                  char *err, size_t err_len)
{
    jobs_status want[16];
    if (n_statuses > 16)
        n_statuses = 16;
    for (size_t i = 0; i < n_statuses; i++) {
        int v = jobs_status_parse(statuses[i]);
        if (v < 0) {
            snprintf(err, err_len, "--job-statuses: \"%s\" is not a job status (one of New, "
                                   "Preparing, Suspended, Ready, Active, Pausing, Paused, "
                                   "Completing, Complete, Failing, Failed, Cancelling, "
                                   "Cancelled)",
                     statuses[i]);
            return -JOBS_E_INVALID_JOB;
        }
        want[i] = (jobs_status)v;
    }
    list_ctx c = {.s = s, .jobs = json_array()};
    int rc = jobs_store_each(s, want, n_statuses, list_one, &c, err, err_len);
    if (rc) {
        json_decref(c.jobs);
        return rc;
    }
    *out = json_pack("{s:o}", "Jobs", c.jobs);
    return 0;
}

int jobs_update_job_priority(jobs_store *s, const char *job_id, long priority, json_t **out,
                            char *err, size_t err_len)
{
    if (priority < 0 || priority > 2147483647L) {
        snprintf(err, err_len, "--priority: must be 0..2147483647, got %ld", priority);
        return -JOBS_E_INVALID_JOB;
    }
    int rc = jobs_store_set_priority(s, job_id, (int)priority, err, err_len);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        snprintf(err, err_len, "NotFoundException: no job with ID %s", job_id);
        return -JOBS_E_NOT_FOUND;
    }
    *out = json_pack("{s:s,s:i}", "JobId", job_id, "Priority", (int)priority);
    return 0;
}

/* UpdateJobStatus (§4.4): Ready only from Suspended; Cancelled from any non-terminal status
   (a job not running yet becomes Cancelled at once, a running one Cancelling, and its worker
   finishes the cancel). Anything else is AWS's JobStatusException. */
int jobs_update_job_status(jobs_store *s, const char *job_id, const char *requested,
                          const char *reason, json_t **out, char *err, size_t err_len)
{
    int want_ready = strcmp(requested, "Ready") == 0;
    if (!want_ready && strcmp(requested, "Cancelled") != 0) {
        snprintf(err, err_len, "--requested-job-status: must be Ready or Cancelled, got \"%s\"",
                 requested);
        return -JOBS_E_INVALID_JOB;
    }
    for (int attempt = 0; attempt < 20; attempt++) {
        jobs_row row;
        int rc = jobs_store_get(s, job_id, &row, err, err_len);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            snprintf(err, err_len, "NotFoundException: no job with ID %s", job_id);
            return -JOBS_E_NOT_FOUND;
        }
        jobs_status cur = row.status;
        /* a cancel ends a job at once when nothing runs yet, else asks its worker to stop */
        jobs_status to = want_ready ? JOBS_STATUS_READY
                         : jobs_status_allowed(cur, JOBS_STATUS_CANCELLED, JOBS_BY_REQUEST)
                             ? JOBS_STATUS_CANCELLED
                             : JOBS_STATUS_CANCELLING;
        rc = jobs_row_set_status(&row, to, JOBS_BY_REQUEST, err, err_len);
        jobs_row_cleanup(&row);
        if (rc != 0 || cur == to) {
            if (cur == to || jobs_status_terminal(cur))
                snprintf(err, err_len, "JobStatusException: job %s is already %s", job_id,
                         jobs_status_name(cur));
            return -JOBS_E_STATUS;
        }
        rc = jobs_store_cas_status(s, job_id, cur, to, reason, err, err_len);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            *out = json_pack("{s:s,s:s}", "JobId", job_id, "Status", jobs_status_name(to));
            if (reason)
                json_object_set_new(*out, "StatusUpdateReason", json_string(reason));
            return 0;
        }
        /* the status moved under us (a worker took the job): look again */
    }
    snprintf(err, err_len, "job %s: its status keeps changing; try again", job_id);
    return -JOBS_E_STATUS;
}
