/*
 * report_check.c — Preparing's check that the completion report can be written where the
 * job says, before any task runs.
 *
 * Without it a missing or read-only report bucket was found when the report was uploaded,
 * after every task had run (issue 15): the replicas were made, the job Failed, and the
 * tasks' outcomes were only on the worker's disk. AWS fails such a job with "The job report
 * could not be written to your report bucket" (aws-formats.md §4.2) and does not publish
 * when it checks; batchrep checks in Preparing, as a write would:
 *   - a report bucket: HeadBucket (404: it does not exist; 403: no access), then PutObject
 *     of an empty marker "[<prefix>/]job-<id>/.batchrep-write-check" inside the job's own
 *     report folder (the only permission a report needs is s3:PutObject, so that is what is
 *     tried), then DeleteObject of it: of the version it made in a versioned bucket, so no
 *     delete marker is left either. A refused delete leaves the empty marker in the job's
 *     report folder; the write worked, so that is not an error;
 *   - a local report directory: created if missing, and a file created and removed in it.
 * The requests go to the source's endpoint, as the report's upload does.
 */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MARKER_NAME ".batchrep-write-check"

/* "HTTP 403 AccessDenied: Access Denied", "HTTP 404", or the transport error when there was
   no answer. */
static void describe_outcome(const s3_outcome *oc, char *out, size_t cap)
{
    if (oc->http_status == 0 && oc->message[0]) /* timeout, untrusted certificate, ... */
        snprintf(out, cap, "no answer: %.300s", oc->message);
    else if (oc->http_status == 0)
        snprintf(out, cap, "no answer (curl error %d)", oc->curl_code);
    else if (!oc->code[0]) /* a HEAD answer has no body to name the error */
        snprintf(out, cap, "HTTP %ld", oc->http_status);
    else
        snprintf(out, cap, "HTTP %ld %.64s%s%.200s", oc->http_status, oc->code,
                 oc->message[0] ? ": " : "", oc->message);
}

static int check_bucket(const jobs_job *job, const s3_endpoint *ep, char *err, size_t err_len)
{
    const char *bucket = job->report_bucket;
    char what[400];
    s3_response resp;
    s3_outcome oc;
    s3_request head = {.method = "HEAD", .bucket = bucket};
    int rc = s3_perform(ep, &head, &resp, &oc);
    s3_response_cleanup(&resp);
    if (rc != 0 || oc.http_status / 100 != 2) {
        describe_outcome(&oc, what, sizeof what);
        if (oc.http_status == 404)
            snprintf(err, err_len, "the report bucket %s does not exist (HeadBucket: %s)",
                     bucket, what);
        else
            snprintf(err, err_len, "the report bucket %s cannot be used (HeadBucket: %s)",
                     bucket, what);
        return -1;
    }

    const char *prefix = job->report_prefix;
    size_t plen = strlen(prefix);
    while (plen > 0 && prefix[plen - 1] == '/') /* as the report's own keys (report/writer.c) */
        plen--;
    char key[1400];
    int n = plen ? snprintf(key, sizeof key, "%.*s/job-%s/" MARKER_NAME, (int)plen, prefix,
                            job->row.id)
                 : snprintf(key, sizeof key, "job-%s/" MARKER_NAME, job->row.id);
    if (n < 0 || (size_t)n >= sizeof key) {
        snprintf(err, err_len, "the report's key prefix is too long");
        return -1;
    }
    s3_request put = {.method = "PUT", .bucket = bucket, .key = key, .body = "", .body_len = 0};
    rc = s3_perform(ep, &put, &resp, &oc);
    char version[S3_VERSION_ID_MAX];
    snprintf(version, sizeof version, "%s", resp.version_id);
    s3_response_cleanup(&resp);
    if (rc != 0 || oc.http_status / 100 != 2) {
        describe_outcome(&oc, what, sizeof what);
        snprintf(err, err_len,
                 "The job report could not be written to your report bucket: PutObject "
                 "s3://%s/%.1100s: %s",
                 bucket, key, what);
        return -1;
    }
    s3_request del = {.method = "DELETE", .bucket = bucket, .key = key};
    if (version[0] && strcmp(version, "null") != 0) {
        del.query[0] = (s3_query_param){"versionId", version};
        del.n_query = 1;
    }
    s3_perform(ep, &del, &resp, &oc); /* refused: the empty marker stays (see above) */
    s3_response_cleanup(&resp);
    return 0;
}

static int check_dir(const char *dir, char *err, size_t err_len)
{
    if (s3_mkdir_p(dir, S3_MODE_USER_DIR) != 0) {
        snprintf(err, err_len, "the report directory %s cannot be created: %s", dir,
                 strerror(errno));
        return -1;
    }
    char path[4200];
    int n = snprintf(path, sizeof path, "%s/" MARKER_NAME "-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, err_len, "the report directory's path is too long");
        return -1;
    }
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err, err_len, "the report directory %s is not writable: %s", dir,
                 strerror(errno));
        return -1;
    }
    close(fd);
    unlink(path);
    return 0;
}

int jobs_report_check(const jobs_job *job, const s3_endpoint *ep, char *err, size_t err_len)
{
    if (!job->report_enabled)
        return 0;
    return job->report_is_local ? check_dir(job->report_bucket, err, err_len)
                                : check_bucket(job, ep, err, err_len);
}
