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
#include "engine/engine_int.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int64_t eng__now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void eng__iso8601_ms(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

void eng__uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) { /* fall back to the clock: unique enough locally */
        int64_t now = eng__now_ms();
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)((now >> (i % 8 * 8)) ^ (getpid() >> (i % 4 * 8)) ^ i);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

static int bad(char *err, size_t err_len, const char *origin, const char *field,
               const char *what)
{
    snprintf(err, err_len, "%s: %s: %s", origin, field, what);
    return -ENG_E_INVALID_JOB;
}

static const char *get_str(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_manifest(eng__job *job, json_t *m, const char *origin, char *err,
                          size_t err_len)
{
    json_t *spec = json_object_get(m, "Spec");
    json_t *loc = json_object_get(m, "Location");
    if (!json_is_object(spec))
        return bad(err, err_len, origin, "Manifest.Spec", "required");
    if (!json_is_object(loc))
        return bad(err, err_len, origin, "Manifest.Location", "required");
    const char *fmt = get_str(spec, "Format");
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
    const char *arn = get_str(loc, "ObjectArn");
    if (!arn || !*arn)
        return bad(err, err_len, origin, "Manifest.Location.ObjectArn",
                   "required: arn:aws:s3:::bucket/key or a local path");
    job->manifest_version = get_str(loc, "ObjectVersionId");
    job->manifest_etag = get_str(loc, "ETag");
    if (strncmp(arn, "arn:", 4) == 0) {
        if (mf_parse_s3_arn(arn, job->manifest_bucket, sizeof job->manifest_bucket,
                            job->manifest_key, sizeof job->manifest_key) != 0 ||
            !job->manifest_key[0])
            return bad(err, err_len, origin, "Manifest.Location.ObjectArn",
                       "must be an object ARN: arn:aws:s3:::bucket/key");
    } else {
        job->manifest_is_local = 1;
        snprintf(job->manifest_path, sizeof job->manifest_path, "%s", arn);
        if (access(arn, R_OK) != 0)
            return bad(err, err_len, origin, "Manifest.Location.ObjectArn",
                       "is neither an S3 ARN nor a readable local file");
    }
    return 0;
}

static int parse_report(eng__job *job, json_t *r, const char *origin, char *err,
                        size_t err_len)
{
    if (!json_is_object(r))
        return bad(err, err_len, origin, "Report", "required (an object with Enabled)");
    json_t *en = json_object_get(r, "Enabled");
    if (!json_is_boolean(en))
        return bad(err, err_len, origin, "Report.Enabled", "required: true or false");
    job->report_enabled = json_is_true(en);
    const char *fmt = get_str(r, "Format");
    if (fmt && strcmp(fmt, RPT_FORMAT) != 0)
        return bad(err, err_len, origin, "Report.Format", "must be \"Report_CSV_20180820\"");
    const char *scope = get_str(r, "ReportScope");
    if (scope && strcmp(scope, "AllTasks") == 0)
        job->report_scope = RPT_SCOPE_ALL;
    else if (scope && strcmp(scope, "FailedTasksOnly") == 0)
        job->report_scope = RPT_SCOPE_FAILED_ONLY;
    else if (scope)
        return bad(err, err_len, origin, "Report.ReportScope",
                   "must be \"AllTasks\" or \"FailedTasksOnly\"");
    const char *prefix = get_str(r, "Prefix");
    if (prefix && strlen(prefix) > 512)
        return bad(err, err_len, origin, "Report.Prefix", "at most 512 characters");
    snprintf(job->report_prefix, sizeof job->report_prefix, "%s", prefix ? prefix : "");
    const char *bucket = get_str(r, "Bucket");
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
                       "must be a bucket ARN: arn:aws:s3:::bucket");
    } else {
        job->report_is_local = 1;
        snprintf(job->report_bucket, sizeof job->report_bucket, "%s", bucket);
    }
    return 0;
}

int eng__job_parse(eng__job *job, json_t *doc, const char *origin, char *err, size_t err_len)
{
    memset(job, 0, sizeof *job);
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
    job->priority = (int)json_integer_value(prio);

    const char *token = get_str(doc, "ClientRequestToken");
    if (!token || !*token || strlen(token) > 64)
        return bad(err, err_len, origin, "ClientRequestToken",
                   "required: a string of 1 to 64 characters");
    const char *role = get_str(doc, "RoleArn");
    if (!role || !*role)
        return bad(err, err_len, origin, "RoleArn", "required (an IAM role ARN)");
    const char *acct = get_str(doc, "AccountId");
    snprintf(job->account_id, sizeof job->account_id, "%s", acct ? acct : "000000000000");
    const char *desc = get_str(doc, "Description");
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
    int rc = gen ? eng__gen_parse(job, gen, origin, err, err_len)
                 : parse_manifest(job, m, origin, err, err_len);
    if (rc)
        return rc;
    return parse_report(job, json_object_get(doc, "Report"), origin, err, err_len);
}

void eng__job_cleanup(eng__job *job)
{
    json_decref(job->doc);
    job->doc = NULL;
}

static void set_copy(json_t *dst, json_t *src, const char *name)
{
    json_t *v = json_object_get(src, name);
    if (v)
        json_object_set(dst, name, v);
}

json_t *eng__job_describe(const eng__job *job, uint64_t succeeded, uint64_t failed)
{
    char t[32];
    json_t *j = json_object();
    json_object_set_new(j, "JobId", json_string(job->id));
    json_object_set_new(j, "ConfirmationRequired", json_boolean(job->confirmation_required));
    set_copy(j, job->doc, "Description");
    json_object_set_new(j, "JobArn", json_string(job->arn));
    json_object_set_new(j, "Status", json_string(eng_status_name(job->status)));
    set_copy(j, job->doc, "Manifest");
    set_copy(j, job->doc, "ManifestGenerator");
    if (job->gen.generated && job->gen.manifest_arn[0]) {
        json_t *loc = json_object();
        json_object_set_new(loc, "ObjectArn", json_string(job->gen.manifest_arn));
        json_object_set_new(loc, "ETag", json_string(job->gen.manifest_etag));
        json_t *gmd = json_object();
        json_object_set_new(gmd, "Format", json_string(MF_FORMAT_NAME_GENERATED));
        json_object_set_new(gmd, "Location", loc);
        json_object_set_new(j, "GeneratedManifestDescriptor", gmd);
    }
    set_copy(j, job->doc, "Operation");
    json_object_set_new(j, "Priority", json_integer(job->priority));
    json_t *ps = json_object();
    json_object_set_new(ps, "TotalNumberOfTasks", json_integer((json_int_t)job->total_tasks));
    json_object_set_new(ps, "NumberOfTasksSucceeded", json_integer((json_int_t)succeeded));
    json_object_set_new(ps, "NumberOfTasksFailed", json_integer((json_int_t)failed));
    json_t *timers = json_object();
    json_object_set_new(timers, "ElapsedTimeInActiveSeconds",
                        json_integer((json_int_t)(job->active_seconds + 0.5)));
    json_object_set_new(ps, "Timers", timers);
    json_object_set_new(j, "ProgressSummary", ps);
    json_t *fr = json_array();
    if (job->failure_code[0]) {
        json_t *f = json_object();
        json_object_set_new(f, "FailureCode", json_string(job->failure_code));
        json_object_set_new(f, "FailureReason", json_string(job->failure_reason));
        json_array_append_new(fr, f);
    }
    json_object_set_new(j, "FailureReasons", fr);
    set_copy(j, job->doc, "Report");
    eng__iso8601_ms(job->creation_ms, t);
    json_object_set_new(j, "CreationTime", json_string(t));
    if (job->termination_ms) {
        eng__iso8601_ms(job->termination_ms, t);
        json_object_set_new(j, "TerminationDate", json_string(t));
    }
    set_copy(j, job->doc, "RoleArn");
    json_t *root = json_object();
    json_object_set_new(root, "Job", j);
    return root;
}
