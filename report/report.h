/*
 * report.h — the completion report, Report_CSV_20180820, to the byte
 * (../shared/aws-formats.md §5).
 *
 * Layout written under a local directory root (and uploaded with the same relative keys):
 *   [<prefix>/]job-<id>/results/<40 hex>.csv   succeeded rows and failed rows, apart
 *   [<prefix>/]job-<id>/manifest.json          Format, ReportCreationDate, Results[], ReportSchema
 *   [<prefix>/]job-<id>/manifest.json.md5      32 hex digits + "\n"
 * Rows have no header; RFC 4180 quoting (a field with '"', ',', CR or LF is quoted, inner
 * quotes doubled); order Bucket,Key,VersionId,TaskStatus,HTTPStatusCode,ErrorCode,ResultMessage
 * while ReportSchema says "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode,
 * ResultMessage" (what AWS writes). Lines end with "\n".
 *
 * The writer is used by one thread. Rows are buffered and written with large write(2)s;
 * rpt_writer_sync makes everything added so far durable and tells the file sizes, which is
 * what a checkpoint records; rpt_writer_open can cut files back to those sizes on resume.
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
    XX(DISK_FULL, "no space left to write the report (the rows are kept: sync again)")      \
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
    rpt_scope scope;
    uint64_t resume_succeeded_bytes; /* truncate to these sizes when resuming; 0 = fresh */
    uint64_t resume_failed_bytes;
    int resume;              /* 1: open existing files and truncate; 0: create anew */
    uint32_t chunk;          /* the writer's results files are this chunk's (a shard of the
                                job): each chunk has its own two files */
    int private_files;       /* 1: folders 0700, files 0600 (a report staged in the state
                                directory); 0: as the user's umask allows (their folder) */
} rpt_opts;

/* One task's row. Borrowed for the duration of rpt_writer_add. */
typedef struct rpt_row {
    s3_slice bucket;
    s3_slice key;            /* as written in the manifest */
    s3_slice version_id;     /* empty when the manifest had none */
    int succeeded;
    int http_status;         /* <= 0 (no HTTP answer): written as an empty field */
    const char *error_code;  /* "" or NULL on success */
    const char *message;     /* "success" on success */
} rpt_row;

typedef struct rpt_writer rpt_writer;

rpt_writer *rpt_writer_open(const rpt_opts *opts, char *err, size_t err_len);
int rpt_writer_add(rpt_writer *w, const rpt_row *row);      /* 0 or -RPT_E_* */
/* The errno of the last failed write. */
int rpt_writer_errno(const rpt_writer *w);
/* Writes buffered rows and fdatasyncs; out sizes may be NULL. -RPT_E_DISK_FULL: the disk is
   full, nothing was lost (the rows stay buffered; rpt_writer_add keeps buffering up to the
   buffer's cap), call it again later; any other failure is final. */
int rpt_writer_sync(rpt_writer *w, uint64_t *out_succeeded_bytes, uint64_t *out_failed_bytes);

/* Appends one row (with its "\n") to out; used by the writer and the benchmarks. On failure
   (-RPT_E_NOMEM: out's cap reached) out is left exactly as it was. */
int rpt_format_row(s3_buf *out, const rpt_row *row);

typedef struct rpt_result_file {
    char status[16];         /* "succeeded" | "failed" */
    char key[1200];          /* full key in the report bucket */
    char local_path[4096];
    char md5_hex[33];
    uint64_t rows;           /* rows in the file (after a resume, counted from the file) */
} rpt_result_file;

typedef struct rpt_summary {
    rpt_result_file *files;   /* owned (rpt_summary_cleanup): the listed ones, chunk by
                                 chunk, succeeded first */
    size_t n_files;           /* files listed in manifest.json: a file with no rows is left
                                 out (so never a succeeded file with FailedTasksOnly) */
    char manifest_key[1200];  /* [<prefix>/]job-<id>/manifest.json */
    char manifest_path[4096]; /* local */
    char manifest_md5_path[4096];
} rpt_summary;

/* Syncs and closes the chunk's results files. Frees w, also when it fails (then err says
   why). */
int rpt_writer_close(rpt_writer *w, char *err, size_t err_len);
/* Lists the results files of chunks [0, n_chunks) that hold rows (MD5, rows counted from the
   file) and writes manifest.json (+ .md5) over them. out is the caller's to clean up. */
int rpt_manifest_write(const rpt_opts *opts, uint32_t n_chunks, rpt_summary *out, char *err,
                       size_t err_len);
void rpt_summary_cleanup(rpt_summary *s);
/* The report bucket key and the local path (under root_dir) of a chunk's results file
   (failed 0: succeeded rows, 1: failed rows). 0, or -RPT_E_IO with err (a name too long). */
int rpt_results_file(const rpt_opts *opts, uint32_t chunk, int failed, char *key,
                     size_t key_cap, char *path, size_t path_cap, char *err, size_t err_len);
/* Writes manifest.json (+ .md5) under root_dir over the files sum lists (status, key and
   md5_hex each; a local_path is not needed) and fills sum's manifest_key and paths: the
   report of a job whose results files were written elsewhere (a fleet's workers). */
int rpt_manifest_write_files(const rpt_opts *opts, rpt_summary *sum, char *err,
                             size_t err_len);
/* 1 when a results file of the chunk holds rows (a writer of it ran), 0 when not, -1 when
   opts cannot name it. */
int rpt_chunk_has_rows(const rpt_opts *opts, uint32_t chunk);
/* rpt_writer_close, then rpt_manifest_write over chunks 0 .. the writer's: the report of a
   job written by one writer. */
int rpt_writer_finish(rpt_writer *w, rpt_summary *out, char *err, size_t err_len);
void rpt_writer_destroy(rpt_writer *w); /* abandon without finishing; NULL is a no-op */

/* Uploads the results files (those with a local_path: the others are in the bucket
   already), manifest.json and manifest.json.md5 to the report bucket. */
int rpt_upload(const s3_endpoint *ep, const rpt_opts *opts, const rpt_summary *sum,
               char *err, size_t err_len);

#endif
