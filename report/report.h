/*
 * report.h — the completion report, Report_CSV_20180820, to the byte
 * (../shared/aws-formats.md §5).
 *
 * Layout written under a local directory root (and uploaded with the same relative keys):
 *   [<prefix>/]job-<id>/results/<40 hex>.csv   succeeded rows and failed rows, apart, two
 *                                              files per chunk (a shard of the job)
 *   [<prefix>/]job-<id>/manifest.json          Format, ReportCreationDate, Results[], ReportSchema
 *   [<prefix>/]job-<id>/manifest.json.md5      32 hex digits + "\n"
 * Rows have no header; RFC 4180 quoting (a field with '"', ',', CR or LF is quoted, inner
 * quotes doubled); order Bucket,Key,VersionId,TaskStatus,HTTPStatusCode,ErrorCode,ResultMessage
 * while ReportSchema says "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode,
 * ResultMessage" (what AWS writes). Lines end with "\n".
 *
 * The module formats rows (rpt_format_row, format.c), names results files
 * (rpt_results_file) and writes and uploads manifest.json over a list of them
 * (rpt_manifest_write_files, writer.c; rpt_upload, upload.c). Writing the rows into results
 * files is the job runner's (run/writer.c: parts, then a shard's parts joined into its
 * results files, whose MD5s it keeps).
 *
 * Depends on: s3 (MD5, upload), jansson, libcsv (quoting).
 */
#ifndef BATCHREP_REPORT_H
#define BATCHREP_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include "s3/s3.h"

#define RPT_ERRNO_MAP(XX)                                                                  \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")                                                             \
    XX(IO, "cannot write the report")                                                      \
    XX(UPLOAD, "cannot upload the report")

typedef enum rpt_err {
#define XX(name, msg) RPT_E_##name,
    RPT_ERRNO_MAP(XX)
#undef XX
} rpt_err;

const char *rpt_strerror(int err);
const char *rpt_errname(int err);

#define RPT_SCHEMA "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
#define RPT_FORMAT "Report_CSV_20180820"

typedef enum rpt_scope { RPT_SCOPE_ALL = 0, RPT_SCOPE_FAILED_ONLY } rpt_scope;

typedef struct rpt_opts {
    const char *root_dir;    /* local directory that mirrors the report bucket */
    const char *bucket;      /* report bucket name (plain, not ARN) for manifest.json */
    const char *prefix;      /* Report.Prefix, NULL or "" for none */
    const char *job_id;
    int private_files;       /* 1: folders 0700, files 0600 (a report staged in the state
                                directory); 0: as the user's umask allows (their folder) */
} rpt_opts;

/* One task's row. Borrowed for the duration of rpt_format_row. */
typedef struct rpt_row {
    s3_slice bucket;
    s3_slice key;            /* as written in the manifest */
    s3_slice version_id;     /* empty when the manifest had none */
    int succeeded;
    int http_status;         /* <= 0 (no HTTP answer): written as an empty field */
    const char *error_code;  /* "" or NULL on success */
    const char *message;     /* "success" on success */
} rpt_row;

/* Appends one row (with its "\n") to out; used by the job runner and the benchmarks. On
   failure (-RPT_E_NOMEM: out's cap reached) out is left exactly as it was. */
int rpt_format_row(s3_buf *out, const rpt_row *row);

/* The report bucket key and the local path (under root_dir) of a chunk's results file
   (failed 0: succeeded rows, 1: failed rows). A chunk is any number the caller chooses
   (the job runner: the lease that completed the shard), one per pair of files. 0, or
   -RPT_E_IO with err (root_dir, bucket or job_id missing, a job id with '/', a name too
   long). */
int rpt_results_file(const rpt_opts *opts, uint64_t chunk, int failed, char *key,
                     size_t key_cap, char *path, size_t path_cap, char *err, size_t err_len);

typedef struct rpt_result_file {
    char status[16];         /* "succeeded" | "failed" */
    char key[1200];          /* full key in the report bucket */
    char local_path[4096];   /* "" when the file is in the report bucket already */
    char md5_hex[33];
    uint64_t rows;           /* rows in the file, as the caller counted them (not written
                                to manifest.json) */
} rpt_result_file;

typedef struct rpt_summary {
    rpt_result_file *files;   /* owned, malloc'd (freed by rpt_summary_cleanup): listed in
                                 manifest.json in this order */
    size_t n_files;           /* the caller lists only files that hold rows (so never a
                                 succeeded file with FailedTasksOnly) */
    char manifest_key[1200];  /* [<prefix>/]job-<id>/manifest.json */
    char manifest_path[4096]; /* local */
    char manifest_md5_path[4096];
} rpt_summary;

/* Writes manifest.json (+ .md5) under root_dir over the files sum lists (status, key and
   md5_hex each; a local_path is not needed) and fills sum's manifest_key and paths. 0, or
   -RPT_E_IO with err. */
int rpt_manifest_write_files(const rpt_opts *opts, rpt_summary *sum, char *err,
                             size_t err_len);
/* Frees sum->files and zeroes sum; a zeroed summary is fine. */
void rpt_summary_cleanup(rpt_summary *s);

/* Uploads the results files (those with a local_path: the others are in the bucket
   already), manifest.json and manifest.json.md5 to the report bucket. */
int rpt_upload(const s3_endpoint *ep, const rpt_opts *opts, const rpt_summary *sum,
               char *err, size_t err_len);

#endif
