/*
 * writer.c — where a job's completion report lives, and its manifest.json
 * (../shared/aws-formats.md §5.1-5.2): the key and local path of each chunk's two results
 * files, and manifest.json + manifest.json.md5 over a list of results files. A chunk is a
 * shard of the job (run/spool.c): its rows go to files of their own, so a shard's report rows
 * stand alone, as its checkpoint does. The rows are formatted by format.c; the job runner
 * writes them and joins a shard's parts into its results files (run/writer.c).
 *
 * Layout under opts->root_dir (the same relative keys are used in the report bucket):
 *   [<prefix>/]job-<id>/results/<sha1("<id>/succeeded")>.csv        chunk 0
 *   [<prefix>/]job-<id>/results/<sha1("<id>/failed")>.csv
 *   [<prefix>/]job-<id>/results/<sha1("<id>/<chunk>/succeeded")>.csv  chunk 1, 2, ...
 *   [<prefix>/]job-<id>/results/<sha1("<id>/<chunk>/failed")>.csv
 *   [<prefix>/]job-<id>/manifest.json, manifest.json.md5
 * AWS's results names are 40 lowercase hex digits of undocumented origin; ours are the SHA-1
 * of a fixed text so that every run of a shard (a retry, a takeover) names the same files,
 * and manifest.json can list every chunk's files by name (chunk 0 keeps the names a job of
 * one shard always had). A trailing '/' on the prefix is not doubled ("reports/" and
 * "reports" give the same keys) [Inferred]. Keys keep the prefix exactly (".." included); on
 * disk a "." or ".." segment is written "%2E" / "%2E%2E" (s3_key_local_path), so a prefix
 * like "../other" stays under root_dir.
 *
 * manifest.json is written with jansson, keys in AWS's order (Format, ReportCreationDate,
 * Results, ReportSchema; Results entries TaskExecutionStatus, Bucket, MD5Checksum, Key),
 * indented by 4 like AWS's example, with no newline after the closing brace. Results lists
 * the files the caller gives, in its order; the caller leaves out a file with no rows (with
 * FailedTasksOnly only failed files are listed, aws-formats.md §5). manifest.json.md5 holds
 * its MD5 as 32 hex digits and "\n". Both are written to a temporary name, fsynced and
 * renamed, so a crash leaves either the old file or the new one.
 */
#include "report/report.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Where a job's report lives, from rpt_opts. */
typedef struct layout {
    char bucket[256];
    char job_key[1100];     /* [<prefix>/]job-<id> */
    char job_dir[4096];     /* root_dir/job_key */
    unsigned dir_mode, file_mode; /* private (0700 / 0600) or the user's umask */
} layout;

static const char *const STATUS[2] = {"succeeded", "failed"};

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Formats into a fixed buffer; nonzero when the text did not fit. */
static int fmt_fits(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fmt_fits(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* 40 lowercase hex digits of SHA-1("<job_id>/<status>") for chunk 0, of
   SHA-1("<job_id>/<chunk>/<status>") for the others. */
static int results_name(const char *job_id, uint64_t chunk, const char *status, char out[41])
{
    char text[512];
    if (chunk ? fmt_fits(text, sizeof text, "%s/%llu/%s", job_id, (unsigned long long)chunk,
                         status)
              : fmt_fits(text, sizeof text, "%s/%s", job_id, status))
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(text, strlen(text), md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return -1;
    hex(md, 20, out);
    return 0;
}

/* The report's keys and local folder; -1 with err when opts lack a member or a name is too
   long. */
static int layout_of(const rpt_opts *opts, layout *out, char *err, size_t err_len)
{
    if (!opts || !opts->root_dir || !*opts->root_dir || !opts->bucket || !*opts->bucket ||
        !opts->job_id || !*opts->job_id) {
        set_err(err, err_len, "report: root_dir, bucket and job_id are required");
        return -1;
    }
    if (strchr(opts->job_id, '/')) {
        set_err(err, err_len, "report: job id \"%s\" contains '/'", opts->job_id);
        return -1;
    }
    out->dir_mode = opts->private_files ? S3_MODE_PRIVATE_DIR : S3_MODE_USER_DIR;
    out->file_mode = opts->private_files ? S3_MODE_PRIVATE_FILE : S3_MODE_USER_FILE;
    const char *prefix = opts->prefix ? opts->prefix : "";
    size_t plen = strlen(prefix);
    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    int too_long = fmt_fits(out->bucket, sizeof out->bucket, "%s", opts->bucket);
    if (plen > 0)
        too_long |= fmt_fits(out->job_key, sizeof out->job_key, "%.*s/job-%s", (int)plen,
                             prefix, opts->job_id);
    else
        too_long |= fmt_fits(out->job_key, sizeof out->job_key, "job-%s", opts->job_id);
    /* the prefix is a user's text: "." and ".." segments stay in the key and are escaped in
       the local path, which never leaves root_dir (s3_key_local_path) */
    too_long |= s3_key_local_path(out->job_dir, sizeof out->job_dir, opts->root_dir,
                                  out->job_key) != 0;
    if (too_long) {
        set_err(err, err_len, "report: bucket, prefix, job id or root directory too long");
        return -1;
    }
    return 0;
}

static int write_file_atomic(const char *path, const char *data, size_t len, unsigned mode,
                             char *err, size_t err_len)
{
    return s3_write_file_atomic(path, data, len, mode, err, err_len) == S3_E_OK ? 0 : -RPT_E_IO;
}

/* ISO-8601 UTC with milliseconds, as in AWS's example: 2019-04-05T17:48:39.725Z. */
static void creation_date(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Sets key to a string; jansson refuses text that is not UTF-8 (a prefix could be). */
static int set_str(json_t *obj, const char *key, const char *val)
{
    json_t *s = json_string(val);
    return s ? json_object_set_new(obj, key, s) : -1;
}

static int write_manifest(const layout *l, rpt_summary *out, char *err, size_t err_len)
{
    char date[32];
    creation_date(date);
    json_t *root = json_object();
    json_t *results = json_array();
    int bad = !root || !results;
    bad = bad || set_str(root, "Format", RPT_FORMAT) || set_str(root, "ReportCreationDate", date);
    for (size_t i = 0; !bad && i < out->n_files; i++) {
        const rpt_result_file *rf = &out->files[i];
        json_t *o = json_object();
        /* appended first: the array owns o whatever fails next */
        bad = !o || json_array_append_new(results, o) ||
              set_str(o, "TaskExecutionStatus", rf->status) ||
              set_str(o, "Bucket", l->bucket) || set_str(o, "MD5Checksum", rf->md5_hex) ||
              set_str(o, "Key", rf->key);
    }
    if (!bad) {
        bad = json_object_set_new(root, "Results", results);
        results = NULL; /* owned by root now, even when the call failed */
    }
    bad = bad || set_str(root, "ReportSchema", RPT_SCHEMA);
    /* JSON_PRESERVE_ORDER is the default since jansson 2.8; said anyway, order matters. */
    char *text = bad ? NULL : json_dumps(root, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    json_decref(results);
    json_decref(root);
    if (!text) {
        set_err(err, err_len,
                "cannot build manifest.json (a bucket or key that is not UTF-8, or no memory)");
        return -RPT_E_IO;
    }
    size_t len = strlen(text);
    char md5[33];
    char md5_line[34];
    s3_md5_hex(text, len, md5);
    snprintf(md5_line, sizeof md5_line, "%s\n", md5);
    int rc = write_file_atomic(out->manifest_path, text, len, l->file_mode, err, err_len);
    if (rc == 0)
        rc = write_file_atomic(out->manifest_md5_path, md5_line, 33, l->file_mode, err,
                               err_len);
    free(text);
    return rc;
}

void rpt_summary_cleanup(rpt_summary *s)
{
    free(s->files);
    memset(s, 0, sizeof *s);
}

int rpt_results_file(const rpt_opts *opts, uint64_t chunk, int failed, char *key,
                     size_t key_cap, char *path, size_t path_cap, char *err, size_t err_len)
{
    layout l;
    if (layout_of(opts, &l, err, err_len) != 0)
        return -RPT_E_IO;
    char name[41];
    if (results_name(opts->job_id, chunk, STATUS[failed ? 1 : 0], name) != 0) {
        set_err(err, err_len, "report: cannot compute SHA-1 (OpenSSL)");
        return -RPT_E_IO;
    }
    if (fmt_fits(key, key_cap, "%s/results/%s.csv", l.job_key, name) ||
        s3_key_local_path(path, path_cap, opts->root_dir, key) != 0) {
        set_err(err, err_len, "report: bucket, prefix, job id or root directory too long");
        return -RPT_E_IO;
    }
    return 0;
}

int rpt_manifest_write_files(const rpt_opts *opts, rpt_summary *sum, char *err, size_t err_len)
{
    layout l;
    if (layout_of(opts, &l, err, err_len) != 0)
        return -RPT_E_IO;
    if (fmt_fits(sum->manifest_key, sizeof sum->manifest_key, "%s/manifest.json", l.job_key) ||
        fmt_fits(sum->manifest_path, sizeof sum->manifest_path, "%s/manifest.json", l.job_dir) ||
        fmt_fits(sum->manifest_md5_path, sizeof sum->manifest_md5_path, "%s/manifest.json.md5",
                 l.job_dir)) {
        set_err(err, err_len, "report: path too long under %s", l.job_dir);
        return -RPT_E_IO;
    }
    if (s3_mkdir_p(l.job_dir, l.dir_mode) != 0) {
        set_err(err, err_len, "cannot create directory %s: %s", l.job_dir, strerror(errno));
        return -RPT_E_IO;
    }
    int rc = write_manifest(&l, sum, err, err_len);
    if (rc == 0) {
        /* make the renames durable */
        int dfd = open(l.job_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return rc;
}
