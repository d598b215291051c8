/*
 * writer.c — the completion report on local disk: two results files per chunk filled as tasks
 * finish, then manifest.json and manifest.json.md5 over every chunk's files
 * (../shared/aws-formats.md §5.1-5.2). A chunk is a shard of the job (run/spool.c): its rows
 * go to files of their own, so a shard's report rows stand alone, as its checkpoint does.
 *
 * Layout under opts->root_dir (the same relative keys are used in the report bucket):
 *   [<prefix>/]job-<id>/results/<sha1("<id>/succeeded")>.csv        chunk 0
 *   [<prefix>/]job-<id>/results/<sha1("<id>/failed")>.csv
 *   [<prefix>/]job-<id>/results/<sha1("<id>/<chunk>/succeeded")>.csv  chunk 1, 2, ...
 *   [<prefix>/]job-<id>/results/<sha1("<id>/<chunk>/failed")>.csv
 *   [<prefix>/]job-<id>/manifest.json, manifest.json.md5
 * AWS's results names are 40 lowercase hex digits of undocumented origin; ours are the SHA-1
 * of a fixed text so that a resumed run reopens the same files, and manifest.json can list
 * every chunk's files by name (chunk 0 keeps the names a job of one shard always had). A trailing '/' on the prefix
 * is not doubled ("reports/" and "reports" give the same keys) [Inferred]. Keys keep the
 * prefix exactly (".." included); on disk a "." or ".." segment is written "%2E" / "%2E%2E"
 * (s3_key_local_path), so a prefix like "../other" stays under root_dir.
 *
 * Rows are formatted into a 256 KiB buffer per file and written with one write(2) when it is
 * full: about 2,500 rows per system call. rpt_writer_sync writes what is buffered and
 * fdatasyncs, and returns the file sizes: a checkpoint stores them, and on resume
 * rpt_writer_open cuts the files back to them, dropping rows written after the checkpoint
 * (their tasks run again). With FailedTasksOnly the succeeded file is never created.
 *
 * manifest.json is written with jansson, keys in AWS's order (Format, ReportCreationDate,
 * Results, ReportSchema; Results entries TaskExecutionStatus, Bucket, MD5Checksum, Key),
 * indented by 4 like AWS's example, with no newline after the closing brace; a results file
 * with no rows is left out of Results. manifest.json.md5 holds its MD5 as 32 hex digits and
 * "\n". Both are written to a temporary name, fsynced and renamed, so a crash leaves either
 * the old file or the new one.
 */
#include "report/report.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_BYTES (256u << 10)
/* The buffer's hard cap: a flush is due at FLUSH_BYTES, so this leaves room for one row of
   up to 4 MiB (keys are <= 3 KiB encoded, S3 error messages a few hundred bytes). */
#define BUF_MAX_BYTES (FLUSH_BYTES + (4u << 20))

enum { F_SUCCEEDED = 0, F_FAILED = 1 };

typedef struct results_file {
    int fd;                 /* -1: not created (succeeded file with FailedTasksOnly) */
    char path[4096];
    char key[1200];
    s3_buf buf;
    uint64_t bytes_on_disk; /* written (not necessarily synced) */
} results_file;

/* Where a job's report lives, from rpt_opts. */
typedef struct layout {
    char bucket[256];
    char job_key[1100];     /* [<prefix>/]job-<id> */
    char job_dir[4096];     /* root_dir/job_key */
    unsigned dir_mode, file_mode; /* private (0700 / 0600) or the user's umask */
} layout;

struct rpt_writer {
    rpt_scope scope;
    char bucket[256];
    char job_key[1100];     /* [<prefix>/]job-<id> */
    char job_dir[4096];     /* root_dir/job_key */
    /* what rpt_writer_finish passes on to rpt_manifest_write */
    char root_dir[4096], prefix[1100], job_id[256];
    uint32_t chunk;
    int private_files;
    results_file f[2];
    uint64_t succeeded_not_written; /* FailedTasksOnly */
    int io_err;             /* sticky: after a failed write the file's end is unknown */
    int io_errno;
};

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
static int results_name(const char *job_id, uint32_t chunk, const char *status, char out[41])
{
    char text[512];
    if (chunk ? fmt_fits(text, sizeof text, "%s/%u/%s", job_id, chunk, status)
              : fmt_fits(text, sizeof text, "%s/%s", job_id, status))
        return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(text, strlen(text), md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return -1;
    hex(md, 20, out);
    return 0;
}

static int open_results(results_file *f, const rpt_opts *opts, unsigned file_mode,
                        uint64_t resume_bytes, char *err, size_t err_len)
{
    if (!opts->resume) {
        f->fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, file_mode);
        if (f->fd < 0) {
            set_err(err, err_len, "cannot create %s: %s", f->path, strerror(errno));
            return -RPT_E_IO;
        }
        return 0;
    }
    f->fd = open(f->path, O_WRONLY | O_CREAT | O_CLOEXEC, file_mode);
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st) != 0) {
        set_err(err, err_len, "cannot open %s to resume: %s", f->path, strerror(errno));
        return -RPT_E_IO;
    }
    if ((uint64_t)st.st_size < resume_bytes) {
        set_err(err, err_len,
                "cannot resume: %s has %llu bytes but the checkpoint recorded %llu (the file "
                "was changed or lost)",
                f->path, (unsigned long long)st.st_size, (unsigned long long)resume_bytes);
        return -RPT_E_IO;
    }
    if (ftruncate(f->fd, (off_t)resume_bytes) != 0 ||
        lseek(f->fd, (off_t)resume_bytes, SEEK_SET) < 0) {
        set_err(err, err_len, "cannot cut %s back to %llu bytes: %s", f->path,
                (unsigned long long)resume_bytes, strerror(errno));
        return -RPT_E_IO;
    }
    f->bytes_on_disk = resume_bytes;
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

/* The key and local path of one chunk's results file. */
static int results_file_of(const rpt_opts *opts, const layout *l, uint32_t chunk, int status,
                           char *key, size_t key_cap, char *path, size_t path_cap, char *err,
                           size_t err_len)
{
    char name[41];
    if (results_name(opts->job_id, chunk, STATUS[status], name) != 0) {
        set_err(err, err_len, "report: cannot compute SHA-1 (OpenSSL)");
        return -1;
    }
    if (fmt_fits(key, key_cap, "%s/results/%s.csv", l->job_key, name) ||
        s3_key_local_path(path, path_cap, opts->root_dir, key) != 0) {
        set_err(err, err_len, "report: bucket, prefix, job id or root directory too long");
        return -1;
    }
    return 0;
}

rpt_writer *rpt_writer_open(const rpt_opts *opts, char *err, size_t err_len)
{
    layout l;
    if (layout_of(opts, &l, err, err_len) != 0)
        return NULL;
    rpt_writer *w = calloc(1, sizeof *w);
    if (!w) {
        set_err(err, err_len, "report: out of memory");
        return NULL;
    }
    w->f[0].fd = w->f[1].fd = -1;
    s3_buf_init(&w->f[0].buf, BUF_MAX_BYTES);
    s3_buf_init(&w->f[1].buf, BUF_MAX_BYTES);
    w->scope = opts->scope;
    w->chunk = opts->chunk;
    w->private_files = opts->private_files;
    memcpy(w->bucket, l.bucket, sizeof w->bucket);
    memcpy(w->job_key, l.job_key, sizeof w->job_key);
    memcpy(w->job_dir, l.job_dir, sizeof w->job_dir);
    int too_long = fmt_fits(w->root_dir, sizeof w->root_dir, "%s", opts->root_dir) ||
                   fmt_fits(w->prefix, sizeof w->prefix, "%s", opts->prefix ? opts->prefix : "") ||
                   fmt_fits(w->job_id, sizeof w->job_id, "%s", opts->job_id);
    char results_dir[4096];
    too_long |= fmt_fits(results_dir, sizeof results_dir, "%s/results", w->job_dir);
    if (too_long) {
        set_err(err, err_len, "report: bucket, prefix, job id or root directory too long");
        rpt_writer_destroy(w);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (results_file_of(opts, &l, opts->chunk, i, w->f[i].key, sizeof w->f[i].key,
                            w->f[i].path, sizeof w->f[i].path, err, err_len) != 0) {
            rpt_writer_destroy(w);
            return NULL;
        }
    }
    if (s3_mkdir_p(results_dir, l.dir_mode) != 0) {
        set_err(err, err_len, "cannot create directory %s: %s", results_dir, strerror(errno));
        rpt_writer_destroy(w);
        return NULL;
    }
    int rc = 0;
    if (w->scope != RPT_SCOPE_FAILED_ONLY)
        rc = open_results(&w->f[F_SUCCEEDED], opts, l.file_mode, opts->resume_succeeded_bytes,
                          err, err_len);
    if (rc == 0)
        rc = open_results(&w->f[F_FAILED], opts, l.file_mode, opts->resume_failed_bytes, err,
                          err_len);
    if (rc != 0) {
        rpt_writer_destroy(w);
        return NULL;
    }
    return w;
}

static int flush_file(rpt_writer *w, results_file *f)
{
    if (f->buf.len == 0)
        return 0;
    if (s3_write_all(f->fd, f->buf.ptr, f->buf.len) != 0) {
        int e = errno;
        /* a full disk: cut what reached the file back to the known end and keep the rows
           buffered, so a later sync can write them once there is space; anything else (or
           a cut that fails) leaves the file's end unknown, for good */
        if (s3_errno_disk_full(e) && ftruncate(f->fd, (off_t)f->bytes_on_disk) == 0 &&
            lseek(f->fd, (off_t)f->bytes_on_disk, SEEK_SET) >= 0) {
            w->io_errno = e;
            return -RPT_E_DISK_FULL;
        }
        w->io_err = RPT_E_IO;
        w->io_errno = e;
        return -RPT_E_IO;
    }
    f->bytes_on_disk += f->buf.len;
    s3_buf_reset(&f->buf);
    return 0;
}

int rpt_writer_errno(const rpt_writer *w)
{
    return w->io_errno;
}

int rpt_writer_add(rpt_writer *w, const rpt_row *row)
{
    if (w->io_err)
        return -w->io_err;
    if (row->succeeded && w->scope == RPT_SCOPE_FAILED_ONLY) {
        w->succeeded_not_written++;
        return 0;
    }
    results_file *f = &w->f[row->succeeded ? F_SUCCEEDED : F_FAILED];
    int rc = rpt_format_row(&f->buf, row);
    if (rc != 0)
        return rc;
    return f->buf.len >= FLUSH_BYTES ? flush_file(w, f) : 0;
}

int rpt_writer_sync(rpt_writer *w, uint64_t *out_succeeded_bytes, uint64_t *out_failed_bytes)
{
    if (w->io_err)
        return -w->io_err;
    for (int i = 0; i < 2; i++) {
        results_file *f = &w->f[i];
        if (f->fd < 0)
            continue;
        int rc = flush_file(w, f);
        if (rc != 0)
            return rc;
        if (fdatasync(f->fd) != 0) {
            w->io_err = RPT_E_IO;
            w->io_errno = errno;
            return -RPT_E_IO;
        }
    }
    if (out_succeeded_bytes)
        *out_succeeded_bytes = w->f[F_SUCCEEDED].bytes_on_disk;
    if (out_failed_bytes)
        *out_failed_bytes = w->f[F_FAILED].bytes_on_disk;
    return 0;
}

static void count_row(int c, void *user)
{
    (void)c;
    (*(uint64_t *)user)++;
}

typedef struct row_counter {
    struct csv_parser csv;
    uint64_t *rows;
    char *err;
    size_t err_len;
    const char *path;
} row_counter;

static int count_chunk(const void *chunk, size_t n, void *user)
{
    row_counter *rc = user;
    if (csv_parse(&rc->csv, chunk, n, NULL, count_row, rc->rows) == n)
        return 0;
    set_err(rc->err, rc->err_len, "cannot count the rows of %s: %s", rc->path,
            csv_strerror(csv_error(&rc->csv)));
    return -1;
}

/* MD5 of a file, streamed (results files can be GBs); when rows is not NULL also counts its
   CSV rows with libcsv (rows may hold quoted line breaks, so lines are not rows). */
static int md5_file(const char *path, char out_hex[33], uint64_t *rows, char *err,
                    size_t err_len)
{
    row_counter rc = {.rows = rows, .err = err, .err_len = err_len, .path = path};
    if (rows) {
        *rows = 0;
        if (csv_init(&rc.csv, 0) != 0) {
            set_err(err, err_len, "out of memory computing the MD5 of %s", path);
            return -RPT_E_NOMEM;
        }
    }
    int r = s3_md5_file(path, out_hex, rows ? count_chunk : NULL, &rc, err, err_len);
    if (rows) {
        if (r == S3_E_OK)
            csv_fini(&rc.csv, NULL, count_row, rows);
        csv_free(&rc.csv);
    }
    return r == S3_E_OK ? 0 : r == S3_E_NOMEM ? -RPT_E_NOMEM : -RPT_E_IO;
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

static int write_manifest(const layout *w, rpt_summary *out, char *err, size_t err_len)
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
              set_str(o, "Bucket", w->bucket) || set_str(o, "MD5Checksum", rf->md5_hex) ||
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
    int rc = write_file_atomic(out->manifest_path, text, len, w->file_mode, err, err_len);
    if (rc == 0)
        rc = write_file_atomic(out->manifest_md5_path, md5_line, 33, w->file_mode, err,
                               err_len);
    free(text);
    return rc;
}

int rpt_writer_close(rpt_writer *w, char *err, size_t err_len)
{
    int rc = rpt_writer_sync(w, NULL, NULL);
    if (rc != 0)
        set_err(err, err_len, "cannot write the results files under %s: %s", w->job_dir,
                strerror(w->io_errno));
    for (int i = 0; i < 2; i++) {
        results_file *f = &w->f[i];
        if (f->fd >= 0 && close(f->fd) != 0 && rc == 0) {
            set_err(err, err_len, "cannot close %s: %s", f->path, strerror(errno));
            rc = -RPT_E_IO;
        }
        f->fd = -1;
    }
    rpt_writer_destroy(w);
    return rc;
}

void rpt_summary_cleanup(rpt_summary *s)
{
    free(s->files);
    memset(s, 0, sizeof *s);
}

int rpt_chunk_has_rows(const rpt_opts *opts, uint32_t chunk)
{
    layout l;
    char err[512], key[1200], path[4096];
    if (layout_of(opts, &l, err, sizeof err) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (results_file_of(opts, &l, chunk, i, key, sizeof key, path, sizeof path, err,
                            sizeof err) != 0)
            return -1;
        if (stat(path, &st) == 0 && st.st_size > 0)
            return 1;
    }
    return 0;
}

int rpt_results_file(const rpt_opts *opts, uint32_t chunk, int failed, char *key,
                     size_t key_cap, char *path, size_t path_cap, char *err, size_t err_len)
{
    layout l;
    if (layout_of(opts, &l, err, err_len) != 0)
        return -RPT_E_IO;
    return results_file_of(opts, &l, chunk, failed ? F_FAILED : F_SUCCEEDED, key, key_cap,
                           path, path_cap, err, err_len) == 0 ? 0 : -RPT_E_IO;
}

int rpt_manifest_write(const rpt_opts *opts, uint32_t n_chunks, rpt_summary *out, char *err,
                       size_t err_len)
{
    memset(out, 0, sizeof *out);
    layout l;
    if (layout_of(opts, &l, err, err_len) != 0)
        return -RPT_E_IO;
    if (n_chunks > 0 && !(out->files = calloc(2 * (size_t)n_chunks, sizeof *out->files))) {
        set_err(err, err_len, "report: out of memory listing %u chunks", n_chunks);
        return -RPT_E_NOMEM;
    }
    int rc = 0;
    for (uint32_t c = 0; c < n_chunks && rc == 0; c++) {
        for (int i = 0; i < 2 && rc == 0; i++) {
            rpt_result_file *rf = &out->files[out->n_files];
            struct stat st;
            if (results_file_of(opts, &l, c, i, rf->key, sizeof rf->key, rf->local_path,
                                sizeof rf->local_path, err, err_len) != 0) {
                rc = -RPT_E_IO;
                break;
            }
            if (stat(rf->local_path, &st) != 0 || st.st_size == 0)
                continue; /* no rows: not listed (never the succeeded file with
                             FailedTasksOnly) */
            snprintf(rf->status, sizeof rf->status, "%s", STATUS[i]);
            rc = md5_file(rf->local_path, rf->md5_hex, &rf->rows, err, err_len);
            out->n_files++;
        }
    }
    if (rc == 0)
        rc = rpt_manifest_write_files(opts, out, err, err_len);
    if (rc != 0)
        rpt_summary_cleanup(out);
    return rc;
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

int rpt_writer_finish(rpt_writer *w, rpt_summary *out, char *err, size_t err_len)
{
    rpt_opts o = {.root_dir = w->root_dir, .bucket = w->bucket, .prefix = w->prefix,
                  .job_id = w->job_id, .scope = w->scope, .private_files = w->private_files};
    char root[4096], bucket[256], prefix[1100], job_id[256];
    uint32_t chunks = w->chunk + 1;
    memcpy(root, w->root_dir, sizeof root); /* w is freed by the close */
    memcpy(bucket, w->bucket, sizeof bucket);
    memcpy(prefix, w->prefix, sizeof prefix);
    memcpy(job_id, w->job_id, sizeof job_id);
    o.root_dir = root;
    o.bucket = bucket;
    o.prefix = prefix;
    o.job_id = job_id;
    memset(out, 0, sizeof *out);
    int rc = rpt_writer_close(w, err, err_len);
    return rc ? rc : rpt_manifest_write(&o, chunks, out, err, err_len);
}

void rpt_writer_destroy(rpt_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < 2; i++) {
        if (w->f[i].fd >= 0)
            close(w->f[i].fd);
        s3_buf_cleanup(&w->f[i].buf);
    }
    free(w);
}
