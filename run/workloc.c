/*
 * workloc.c — a job's work location: where its spool shards and report parts live while it
 * runs. With a shared catalogue (PostgreSQL: workers on many machines) it is S3, so that any
 * worker can take any shard over: [<work prefix>/]job-<id>/ when the worker was given
 * --work-location s3://BUCKET[/PREFIX], else [<report prefix>/]job-<id>/work/ in the report
 * bucket. With SQLite (one machine) it is the job's folder in the state directory,
 * <state>/jobs/<id>/work/. Names below it are ours ("spool/shard-000003.zst",
 * "parts/s000003-t42-p7-failed.csv"), never a user's.
 *
 * Local files are written atomically (temporary name, fsync, rename), 0600 in 0700 folders.
 * S3 objects are written with one PutObject each (parts are small: the rows of one
 * checkpoint interval; shards are bounded by --shard-rows) and read back whole.
 */
#include "run/run_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "s3://bucket[/prefix]" -> bucket, prefix ("" or "prefix" without trailing '/'). */
static int parse_s3_url(const char *url, char *bucket, size_t bcap, char *prefix, size_t pcap)
{
    if (strncmp(url, "s3://", 5) != 0)
        return -1;
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    if (blen == 0 || blen >= bcap)
        return -1;
    memcpy(bucket, b, blen);
    bucket[blen] = '\0';
    const char *p = slash ? slash + 1 : "";
    size_t plen = strlen(p);
    while (plen > 0 && p[plen - 1] == '/')
        plen--;
    if (plen >= pcap)
        return -1;
    memcpy(prefix, p, plen);
    prefix[plen] = '\0';
    return 0;
}

int run__loc_check_url(const char *url, char *err, size_t cap)
{
    char b[256], p[1024];
    if (parse_s3_url(url, b, sizeof b, p, sizeof p) != 0) {
        snprintf(err, cap, "--work-location %.200s: expected s3://BUCKET[/PREFIX]", url);
        return -1;
    }
    return 0;
}

int run__loc_for_job(run__loc *l, const jobs_job *job, int shared, const char *work_url,
                     const s3_endpoint *ep, char *err, size_t cap)
{
    memset(l, 0, sizeof *l);
    if (!shared) {
        if (s3_path_join(l->dir, sizeof l->dir, job->dir, "work") != 0) {
            snprintf(err, cap, "the job's folder path is too long");
            return -1;
        }
        return 0;
    }
    l->ep = ep;
    char prefix[1100];
    int n;
    if (work_url && *work_url) {
        if (parse_s3_url(work_url, l->bucket, sizeof l->bucket, prefix, sizeof prefix) != 0) {
            snprintf(err, cap, "--work-location %.200s: expected s3://BUCKET[/PREFIX]", work_url);
            return -1;
        }
        n = snprintf(l->prefix, sizeof l->prefix, "%s%sjob-%s/", prefix, *prefix ? "/" : "",
                     job->row.id);
    } else if (job->report_enabled && !job->report_is_local) {
        snprintf(l->bucket, sizeof l->bucket, "%.255s", job->report_bucket);
        size_t plen = strlen(job->report_prefix);
        while (plen > 0 && job->report_prefix[plen - 1] == '/')
            plen--;
        n = snprintf(l->prefix, sizeof l->prefix, "%.*s%sjob-%s/work/", (int)plen,
                     job->report_prefix, plen ? "/" : "", job->row.id);
    } else {
        snprintf(err, cap,
                 "the catalogue is shared (PostgreSQL) and the job has no report bucket: its "
                 "shards need a place every worker can read; give the workers "
                 "--work-location s3://BUCKET[/PREFIX]");
        return -1;
    }
    if (n < 0 || (size_t)n >= sizeof l->prefix) {
        snprintf(err, cap, "the work location's prefix is too long");
        return -1;
    }
    return 0;
}

/* The local path or the S3 key of a name. */
static int where(const run__loc *l, const char *rel, char *out, size_t cap)
{
    int n = l->ep ? snprintf(out, cap, "%s%s", l->prefix, rel)
                  : snprintf(out, cap, "%s/%s", l->dir, rel);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

void run__loc_describe(const run__loc *l, const char *rel, char *out, size_t cap)
{
    if (l->ep)
        snprintf(out, cap, "s3://%s/%s%s", l->bucket, l->prefix, rel);
    else
        snprintf(out, cap, "%s/%s", l->dir, rel);
}

int run__loc_put(const run__loc *l, const char *rel, const void *data, size_t len, char *err,
                 size_t cap)
{
    char at[4400];
    if (where(l, rel, at, sizeof at) != 0) {
        snprintf(err, cap, "work location: name too long");
        return -RUN_E_IO;
    }
    if (l->ep) {
        s3_outcome oc;
        memset(&oc, 0, sizeof oc);
        if (s3_put_bytes(l->ep, l->bucket, at, data, len, "application/octet-stream", &oc) ==
            S3_E_OK)
            return 0;
        snprintf(err, cap, "PutObject s3://%s/%.1100s: %s", l->bucket, at,
                 oc.message[0] ? oc.message : "failed");
        return -RUN_E_IO;
    }
    char dir[4400];
    snprintf(dir, sizeof dir, "%s", at);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    if (s3_mkdir_p(dir, S3_MODE_PRIVATE_DIR) != 0) {
        snprintf(err, cap, "cannot create %s: %s", dir, strerror(errno));
        return s3_errno_disk_full(errno) ? -RUN_E_DISK_FULL : -RUN_E_IO;
    }
    int rc = s3_write_file_atomic(at, data, len, S3_MODE_PRIVATE_FILE, err, cap);
    if (rc == S3_E_OK)
        return 0;
    return s3_errno_disk_full(errno) ? -RUN_E_DISK_FULL : -RUN_E_IO;
}

int run__loc_put_file(const run__loc *l, const char *rel, const char *path, char *err,
                      size_t cap)
{
    char at[4400];
    if (where(l, rel, at, sizeof at) != 0) {
        snprintf(err, cap, "work location: name too long");
        return -RUN_E_IO;
    }
    if (l->ep)
        return s3_put_file(l->ep, l->bucket, at, path, "application/octet-stream", err, cap) ==
                       S3_E_OK
                   ? 0
                   : -RUN_E_IO;
    if (strcmp(at, path) == 0)
        return 0; /* the spool already is where the work location keeps it */
    snprintf(err, cap, "work location: a local file is not copied (%s)", path);
    return -RUN_E_IO;
}

int run__loc_fetch(const run__loc *l, const char *rel, const char *tmp, char *out_path,
                   size_t out_cap, char *err, size_t cap)
{
    char at[4400];
    if (where(l, rel, at, sizeof at) != 0) {
        snprintf(err, cap, "work location: name too long");
        return -RUN_E_IO;
    }
    if (!l->ep) {
        if (access(at, R_OK) != 0) {
            snprintf(err, cap, "%s: %s", at, strerror(errno));
            return -RUN_E_IO;
        }
        snprintf(out_path, out_cap, "%s", at);
        return 0;
    }
    char part[4400], dir[4400];
    if ((size_t)snprintf(part, sizeof part, "%s.part", tmp) >= sizeof part) {
        snprintf(err, cap, "%s: path too long", tmp);
        return -RUN_E_IO;
    }
    snprintf(dir, sizeof dir, "%s", tmp);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    if (s3_mkdir_p(dir, S3_MODE_PRIVATE_DIR) != 0) {
        snprintf(err, cap, "cannot create %s: %s", dir, strerror(errno));
        return -RUN_E_IO;
    }
    FILE *f = fopen(part, "wb");
    if (!f) {
        snprintf(err, cap, "cannot create %s: %s", part, strerror(errno));
        return -RUN_E_IO;
    }
    fchmod(fileno(f), S3_MODE_PRIVATE_FILE);
    s3_response resp;
    s3_outcome oc;
    memset(&oc, 0, sizeof oc);
    int rc = s3_get_to_file(l->ep, l->bucket, at, NULL, f, &resp, &oc);
    s3_response_cleanup(&resp);
    int closed = fclose(f);
    if (rc != S3_E_OK || closed != 0 || rename(part, tmp) != 0) {
        snprintf(err, cap, "GetObject s3://%s/%.1100s: %s", l->bucket, at,
                 rc != S3_E_OK && oc.message[0] ? oc.message : "cannot store it locally");
        unlink(part);
        return -RUN_E_IO;
    }
    snprintf(out_path, out_cap, "%s", tmp);
    return 0;
}

void run__loc_remove(const run__loc *l, const char *rel)
{
    char at[4400];
    if (where(l, rel, at, sizeof at) != 0)
        return;
    if (l->ep) {
        s3_request del = {.method = "DELETE", .bucket = l->bucket, .key = at};
        s3_response resp;
        s3_outcome oc;
        s3_perform(l->ep, &del, &resp, &oc);
        s3_response_cleanup(&resp);
    } else {
        unlink(at);
    }
}
