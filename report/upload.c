/*
 * upload.c — puts a finished completion report into the report bucket under the same keys
 * it has under the local root: the results files first, then manifest.json, then
 * manifest.json.md5, so that whoever sees manifest.json can already read what it lists.
 *
 * Limitation: s3 has only a single-request PUT of a file (s3_put_file: the file is mapped
 * whole, clean file pages, not heap, and sent in one PutObject). Results files can reach
 * GBs, and one PutObject stops at 5 GiB: a file larger than that is refused with a clear
 * message. The right fix is a streamed (multipart) upload from a file in s3.
 */
#include "report/report.h"

#include <stdio.h>
#include <string.h>


static int put_file(const s3_endpoint *ep, const char *bucket, const char *key,
                    const char *path, const char *content_type, char *err, size_t err_len)
{
    int rc = s3_put_file(ep, bucket, key, path, content_type, err, err_len);
    return rc == S3_E_OK ? 0 : rc == S3_E_IO ? -RPT_E_IO : -RPT_E_UPLOAD;
}

int rpt_upload(const s3_endpoint *ep, const rpt_opts *opts, const rpt_summary *sum, char *err,
               size_t err_len)
{
    for (size_t i = 0; i < sum->n_files; i++) {
        if (!sum->files[i].local_path[0])
            continue; /* uploaded by the worker that wrote it */
        int rc = put_file(ep, opts->bucket, sum->files[i].key, sum->files[i].local_path,
                          "text/csv", err, err_len);
        if (rc != 0)
            return rc;
    }
    int rc = put_file(ep, opts->bucket, sum->manifest_key, sum->manifest_path,
                      "application/json", err, err_len);
    if (rc != 0)
        return rc;
    char md5_key[1300];
    snprintf(md5_key, sizeof md5_key, "%s.md5", sum->manifest_key);
    return put_file(ep, opts->bucket, md5_key, sum->manifest_md5_path, "text/plain", err,
                    err_len);
}
