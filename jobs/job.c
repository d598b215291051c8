/*
 * job.c — the CreateJob document (../shared/aws-formats.md §3) and the DescribeJob answer
 * (§4.3).
 *
 * batchrep takes the same JSON that `aws s3control create-job --cli-input-json` takes. Every
 * problem is reported with the file and the member's path ("job.json: Report.Bucket: ...")
 * so a user can fix it without guessing. What this version runs: Operation S3ReplicateObject
 * with a Manifest in S3BatchOperations_CSV_20180820, S3InventoryReport_CSV_20161130 or
 * Report_CSV_20180820 (an S3 ARN or a local path), or a ManifestGenerator (manifests.c).
 */
#include "jobs/jobs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int bad(char *err, size_t err_len, const char *origin, const char *field,
               const char *what)
{
    snprintf(err, err_len, "%s: %s: %s", origin, field, what);
    return -JOBS_E_INVALID_JOB;
}

static int parse_manifest(jobs_job *job, json_t *m, const char *origin, char *err,
                          size_t err_len)
{
    json_t *spec = json_object_get(m, "Spec");
    json_t *loc = json_object_get(m, "Location");
    if (!json_is_object(spec))
        return bad(err, err_len, origin, "Manifest.Spec", "required");
    if (!json_is_object(loc))
        return bad(err, err_len, origin, "Manifest.Location", "required");
    const char *fmt = s3_json_str(spec, "Format");
    if (!fmt)
        return bad(err, err_len, origin, "Manifest.Spec.Format",
                   "required: \"S3BatchOperations_CSV_20180820\", "
                   "\"S3InventoryReport_CSV_20161130\" or \"Report_CSV_20180820\"");
    int mfmt = mf_format_parse(fmt);
    if (mfmt < 0)
        return bad(err, err_len, origin, "Manifest.Spec.Format",
                   "must be \"S3BatchOperations_CSV_20180820\", "
                   "\"S3InventoryReport_CSV_20161130\" (ObjectArn: the inventory's "
                   "manifest.json) or \"Report_CSV_20180820\" (ObjectArn: an earlier job's "
                   "report manifest.json, to re-run its failed tasks)");
    job->manifest_format = (mf_format)mfmt;
    if (mfmt != MF_FORMAT_CSV && json_object_get(spec, "Fields"))
        return bad(err, err_len, origin, "Manifest.Spec.Fields",
                   "only for S3BatchOperations_CSV_20180820 (an inventory's columns come from "
                   "its fileSchema, a report's are fixed)");
    json_t *fields = json_object_get(spec, "Fields");
    if (fields) {
        if (!json_is_array(fields) || json_array_size(fields) == 0 ||
            json_array_size(fields) > MF_MAX_FIELDS)
            return bad(err, err_len, origin, "Manifest.Spec.Fields",
                       "must be a list of 1 to 16 of Bucket, Key, VersionId, Ignore");
        int seen[4] = {0};
        for (size_t i = 0; i < json_array_size(fields); i++) {
            json_t *f = json_array_get(fields, i);
            int v = json_is_string(f) ? mf_field_parse(json_string_value(f)) : -1;
            if (v < 0) {
                char where[64];
                snprintf(where, sizeof where, "Manifest.Spec.Fields[%zu]", i);
                return bad(err, err_len, origin, where,
                           "must be one of Bucket, Key, VersionId, Ignore");
            }
            if (v != MF_FIELD_IGNORE && seen[v]++)
                return bad(err, err_len, origin, "Manifest.Spec.Fields",
                           "names a column twice");
            job->csv.fields[i] = (mf_field)v;
        }
        if (!seen[MF_FIELD_BUCKET] || !seen[MF_FIELD_KEY])
            return bad(err, err_len, origin, "Manifest.Spec.Fields",
                       "Required fields are missing in the schema: Bucket and Key are required");
        job->csv.n_fields = json_array_size(fields);
    }
    const char *arn = s3_json_str(loc, "ObjectArn");
    if (!arn || !*arn)
        return bad(err, err_len, origin, "Manifest.Location.ObjectArn",
                   "required: arn:aws:s3:::bucket/key or a local path");
    job->manifest_version = s3_json_str(loc, "ObjectVersionId");
    job->manifest_etag = s3_json_str(loc, "ETag");
    if (strncmp(arn, "arn:", 4) == 0) {
        if (mf_parse_s3_arn(arn, job->manifest_bucket, sizeof job->manifest_bucket,
                            job->manifest_key, sizeof job->manifest_key) != 0 ||
            !job->manifest_key[0])
            return bad(err, err_len, origin, "Manifest.Location.ObjectArn",
                       "must be an object ARN: arn:aws:s3:::bucket/key, with " MF_ARN_BUCKET_RULE);
    } else {
        job->manifest_is_local = 1;
        if (strlen(arn) >= sizeof job->manifest_path)
            return bad(err, err_len, origin, "Manifest.Location.ObjectArn",
                       "a local path of at most 4095 bytes");
        snprintf(job->manifest_path, sizeof job->manifest_path, "%s", arn);
        if (access(arn, R_OK) != 0)
            return bad(err, err_len, origin, "Manifest.Location.ObjectArn",
                       "is neither an S3 ARN nor a readable local file");
    }
    return 0;
}

static int parse_report(jobs_job *job, json_t *r, const char *origin, char *err,
                        size_t err_len)
{
    if (!json_is_object(r))
        return bad(err, err_len, origin, "Report", "required (an object with Enabled)");
    json_t *en = json_object_get(r, "Enabled");
    if (!json_is_boolean(en))
        return bad(err, err_len, origin, "Report.Enabled", "required: true or false");
    job->report_enabled = json_is_true(en);
    const char *fmt = s3_json_str(r, "Format");
    if (fmt && strcmp(fmt, RPT_FORMAT) != 0)
        return bad(err, err_len, origin, "Report.Format", "must be \"Report_CSV_20180820\"");
    const char *scope = s3_json_str(r, "ReportScope");
    if (scope && strcmp(scope, "AllTasks") == 0)
        job->report_scope = RPT_SCOPE_ALL;
    else if (scope && strcmp(scope, "FailedTasksOnly") == 0)
        job->report_scope = RPT_SCOPE_FAILED_ONLY;
    else if (scope)
        return bad(err, err_len, origin, "Report.ReportScope",
                   "must be \"AllTasks\" or \"FailedTasksOnly\"");
    const char *prefix = s3_json_str(r, "Prefix");
    if (prefix && strlen(prefix) > 512)
        return bad(err, err_len, origin, "Report.Prefix", "at most 512 characters");
    snprintf(job->report_prefix, sizeof job->report_prefix, "%s", prefix ? prefix : "");
    const char *bucket = s3_json_str(r, "Bucket");
    if (!job->report_enabled)
        return 0;
    if (!bucket || !*bucket)
        return bad(err, err_len, origin, "Report.Bucket",
                   "required when Enabled: arn:aws:s3:::bucket or a local directory");
    if (strncmp(bucket, "arn:", 4) == 0) {
        char key[8];
        if (mf_parse_s3_arn(bucket, job->report_bucket, sizeof job->report_bucket, key,
                            sizeof key) != 0 || key[0])
            return bad(err, err_len, origin, "Report.Bucket",
                       "must be a bucket ARN: arn:aws:s3:::bucket, with " MF_ARN_BUCKET_RULE);
    } else {
        job->report_is_local = 1;
        if (strlen(bucket) >= sizeof job->report_bucket)
            return bad(err, err_len, origin, "Report.Bucket",
                       "a local directory of at most 4095 bytes");
        snprintf(job->report_bucket, sizeof job->report_bucket, "%s", bucket);
    }
    return 0;
}

int jobs_job_parse(jobs_job *job, json_t *doc, const char *origin, char *err, size_t err_len)
{
    jobs_row row = job->row;
    memset(job, 0, sizeof *job);
    job->row = row;
    if (!json_is_object(doc))
        return bad(err, err_len, origin, "(document)", "must be a JSON object");
    job->doc = json_incref(doc);

    json_t *op = json_object_get(doc, "Operation");
    if (!json_is_object(op))
        return bad(err, err_len, origin, "Operation",
                   "required: {\"S3ReplicateObject\": {}}");
    if (!json_object_get(op, "S3ReplicateObject") || json_object_size(op) != 1)
        return bad(err, err_len, origin, "Operation",
                   "batchrep runs S3ReplicateObject only: {\"S3ReplicateObject\": {}}");

    json_t *prio = json_object_get(doc, "Priority");
    if (!json_is_integer(prio) || json_integer_value(prio) < 0 ||
        json_integer_value(prio) > 2147483647)
        return bad(err, err_len, origin, "Priority", "required: an integer 0..2147483647");
    job->row.priority = (int)json_integer_value(prio);

    const char *token = s3_json_str(doc, "ClientRequestToken");
    if (!token || !*token || strlen(token) > 64)
        return bad(err, err_len, origin, "ClientRequestToken",
                   "required: a string of 1 to 64 characters");
    snprintf(job->row.token, sizeof job->row.token, "%s", token);
    const char *role = s3_json_str(doc, "RoleArn");
    if (!role || !*role)
        return bad(err, err_len, origin, "RoleArn", "required (an IAM role ARN)");
    const char *acct = s3_json_str(doc, "AccountId");
    if (acct && (!*acct || strlen(acct) >= sizeof job->account_id))
        return bad(err, err_len, origin, "AccountId", "1 to 63 characters (an account ID)");
    snprintf(job->account_id, sizeof job->account_id, "%s", acct ? acct : "000000000000");
    const char *desc = s3_json_str(doc, "Description");
    if (desc && (strlen(desc) < 1 || strlen(desc) > 256))
        return bad(err, err_len, origin, "Description", "1 to 256 characters");
    json_t *conf = json_object_get(doc, "ConfirmationRequired");
    if (conf && !json_is_boolean(conf))
        return bad(err, err_len, origin, "ConfirmationRequired", "must be true or false");
    job->confirmation_required = json_is_true(conf);

    json_t *m = json_object_get(doc, "Manifest");
    json_t *gen = json_object_get(doc, "ManifestGenerator");
    if (m && gen)
        return bad(err, err_len, origin, "Manifest",
                   "give either Manifest or ManifestGenerator, not both");
    if (!m && !gen)
        return bad(err, err_len, origin, "Manifest",
                   "required (or a ManifestGenerator)");
    int rc = gen ? jobs_gen_parse(job, gen, origin, err, err_len)
                 : parse_manifest(job, m, origin, err, err_len);
    if (rc)
        return rc;
    return parse_report(job, json_object_get(doc, "Report"), origin, err, err_len);
}

/* IAMRoleArn in the s3control model (aws-formats.md §3.2): 1..2048 bytes matching
   arn:[^:]+:iam::\d{12}:role/.* */
static const char *role_arn_problem(const char *arn)
{
    if (strlen(arn) > 2048)
        return "at most 2,048 bytes (an IAM role ARN: arn:aws:iam::<account>:role/<name>)";
    if (strncmp(arn, "arn:", 4) != 0)
        return "must be an IAM role ARN: arn:aws:iam::<12-digit account>:role/<name>";
    const char *colon = strchr(arn + 4, ':');
    if (!colon || colon == arn + 4 || strncmp(colon, ":iam::", 6) != 0)
        return "must be an IAM ARN: arn:<partition>:iam::<12-digit account>:role/<name>";
    const char *p = colon + 6;
    for (int i = 0; i < 12; i++, p++)
        if (*p < '0' || *p > '9')
            return "needs a 12-digit account ID: arn:aws:iam::<12-digit account>:role/<name>";
    if (strncmp(p, ":role/", 6) != 0)
        return "must name a role: arn:aws:iam::<12-digit account>:role/<name>";
    return NULL;
}

int jobs_job_check_new(const jobs_job *job, const char *origin, char *err, size_t err_len)
{
    json_t *op = json_object_get(json_object_get(job->doc, "Operation"), "S3ReplicateObject");
    if (!json_is_object(op) || json_object_size(op) != 0)
        return bad(err, err_len, origin, "Operation.S3ReplicateObject",
                   "must be {} (S3ReplicateObjectOperation has no members)");
    const char *role = s3_json_str(job->doc, "RoleArn");
    const char *why = role ? role_arn_problem(role) : "required (an IAM role ARN)";
    if (why)
        return bad(err, err_len, origin, "RoleArn", why);
    if (!job->gen.enabled) {
        const char *etag = job->manifest_etag;
        if (!job->manifest_is_local && (!etag || !*etag))
            return bad(err, err_len, origin, "Manifest.Location.ETag",
                       "required for a manifest in S3 (as on AWS): the manifest object's ETag");
        if (etag && strlen(etag) > 1024)
            return bad(err, err_len, origin, "Manifest.Location.ETag", "at most 1,024 characters");
    }
    return 0;
}

static void set_copy(json_t *dst, json_t *src, const char *name)
{
    json_t *v = json_object_get(src, name);
    if (v)
        json_object_set(dst, name, v);
}

int jobs_job_load(jobs_job *job, jobs_row *row, const char *state_root, const char *region,
                  char *err, size_t err_len)
{
    json_error_t je;
    memset(job, 0, sizeof *job);
    job->row = *row;
    memset(row, 0, sizeof *row); /* the strings now belong to job->row */
    json_t *doc = json_loads(job->row.doc ? job->row.doc : "", 0, &je);
    if (!doc) {
        snprintf(err, err_len, "job %s: stored document is not JSON: %s", job->row.id, je.text);
        return -JOBS_E_INVALID_JOB;
    }
    char origin[80];
    snprintf(origin, sizeof origin, "job %s", job->row.id);
    int priority = job->row.priority; /* the catalogue's (update-job-priority), not the
                                          document's */
    int rc = jobs_job_parse(job, doc, origin, err, err_len);
    json_decref(doc);
    job->row.priority = priority;
    snprintf(job->arn, sizeof job->arn, "arn:aws:s3:%s:%s:job/%s", region, job->account_id,
             job->row.id);
    char jobs_dir[4096];
    if (s3_path_join(jobs_dir, sizeof jobs_dir, state_root, "jobs") != 0 ||
        s3_path_join(job->dir, sizeof job->dir, jobs_dir, job->row.id) != 0 ||
        (!job->gen.enabled && !job->manifest_is_local &&
         s3_path_join(job->manifest_path, sizeof job->manifest_path, job->dir,
                      "manifest.src") != 0)) {
        snprintf(err, err_len, "%.200s: the state directory's path is too long", state_root);
        return rc ? rc : -JOBS_E_IO;
    }
    if (job->gen.enabled) /* where Preparing spooled the generated manifest */
        jobs_gen_locate(job);
    return rc;
}

void jobs_job_cleanup(jobs_job *job)
{
    json_decref(job->doc);
    job->doc = NULL;
    jobs_row_cleanup(&job->row);
}

static json_t *progress_summary(const jobs_job *job)
{
    const jobs_row *r = &job->row;
    json_t *ps = json_object();
    json_object_set_new(ps, "TotalNumberOfTasks", json_integer((json_int_t)r->total));
    json_object_set_new(ps, "NumberOfTasksSucceeded", json_integer((json_int_t)r->succeeded));
    json_object_set_new(ps, "NumberOfTasksFailed", json_integer((json_int_t)r->failed));
    /* the catalogue keeps the Active time of the job's past stretches in active_ms, and
       when the job is Active now, since when (jobs_store_save) */
    int64_t active_ms = r->active_ms;
    if (r->status == JOBS_STATUS_ACTIVE && r->active_since_ms) {
        int64_t running_ms = s3_wall_ms() - r->active_since_ms;
        active_ms += running_ms > 0 ? running_ms : 0; /* another machine's clock may lead */
    }
    json_t *timers = json_object();
    json_object_set_new(timers, "ElapsedTimeInActiveSeconds",
                        json_integer((json_int_t)((active_ms + 500) / 1000)));
    json_object_set_new(ps, "Timers", timers);
    return ps;
}

static void set_time(json_t *obj, const char *name, int64_t ms)
{
    char t[32];
    if (!ms)
        return;
    s3_iso8601_ms(ms, t);
    json_object_set_new(obj, name, json_string(t));
}

json_t *jobs_job_list_descriptor(const jobs_job *job)
{
    json_t *j = json_object();
    json_object_set_new(j, "JobId", json_string(job->row.id));
    set_copy(j, job->doc, "Description");
    json_object_set_new(j, "Operation", json_string("S3ReplicateObject"));
    json_object_set_new(j, "Priority", json_integer(job->row.priority));
    json_object_set_new(j, "Status", json_string(jobs_status_name(job->row.status)));
    set_time(j, "CreationTime", job->row.created_ms);
    set_time(j, "TerminationDate", job->row.terminated_ms);
    json_object_set_new(j, "ProgressSummary", progress_summary(job));
    return j;
}

json_t *jobs_job_describe(const jobs_job *job)
{
    const jobs_row *r = &job->row;
    json_t *j = json_object();
    json_object_set_new(j, "JobId", json_string(r->id));
    json_object_set_new(j, "ConfirmationRequired", json_boolean(job->confirmation_required));
    set_copy(j, job->doc, "Description");
    json_object_set_new(j, "JobArn", json_string(job->arn));
    json_object_set_new(j, "Status", json_string(jobs_status_name(r->status)));
    set_copy(j, job->doc, "Manifest");
    set_copy(j, job->doc, "ManifestGenerator");
    set_copy(j, job->doc, "Operation");
    json_object_set_new(j, "Priority", json_integer(r->priority));
    json_object_set_new(j, "ProgressSummary", progress_summary(job));
    if (r->status_reason[0])
        json_object_set_new(j, "StatusUpdateReason", json_string(r->status_reason));
    json_t *fr = json_array();
    if (r->failure_code[0]) {
        json_t *f = json_object();
        json_object_set_new(f, "FailureCode", json_string(r->failure_code));
        json_object_set_new(f, "FailureReason", json_string(r->failure_reason));
        json_array_append_new(fr, f);
    }
    json_object_set_new(j, "FailureReasons", fr);
    set_copy(j, job->doc, "Report");
    set_time(j, "CreationTime", r->created_ms);
    set_time(j, "TerminationDate", r->terminated_ms);
    set_copy(j, job->doc, "RoleArn");
    set_time(j, "SuspendedDate", r->suspended_ms);
    if (r->suspended_cause[0])
        json_object_set_new(j, "SuspendedCause", json_string(r->suspended_cause));
    if (r->generated_manifest) {
        json_t *g = json_loads(r->generated_manifest, 0, NULL);
        if (g)
            json_object_set_new(j, "GeneratedManifestDescriptor", g);
    }
    json_t *root = json_object();
    json_object_set_new(root, "Job", j);
    return root;
}
