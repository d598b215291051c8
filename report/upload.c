/*
 * upload.c — puts a finished completion report into the report bucket under the same keys
 * it has under the local root: the results files first, then manifest.json, then
 * manifest.json.md5, so that whoever sees manifest.json can already read what it lists.
 *
 * Limitation: s3 has only a single-request PUT from memory (s3_put_bytes), so each file is
 * mapped whole into memory (mmap: clean file pages, not heap, but still its size in address
 * space) and sent in one PutObject. Results files can reach GBs, and one PutObject stops at
 * 5 GiB: a file larger than that is refused here with a clear message. The right fix is a
 * streamed (multipart) upload from a file in s3; then only this file changes.
 */
#include "report/report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SINGLE_PUT_MAX_BYTES (5ull << 30) /* S3 PutObject limit */

static int put_file(const s3_endpoint *ep, const char *bucket, const char *key,
                    const char *path, const char *content_type, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -RPT_E_IO;
    }
    size_t len = (size_t)st.st_size;
    if ((unsigned long long)st.st_size > SINGLE_PUT_MAX_BYTES) {
        snprintf(err, err_len,
                 "%s is %llu bytes, more than one PutObject takes (5 GiB); multipart upload of "
                 "reports is not implemented",
                 path, (unsigned long long)st.st_size);
        close(fd);
        return -RPT_E_UPLOAD;
    }
    void *data = NULL;
    if (len > 0) {
        data = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (data == MAP_FAILED) {
            snprintf(err, err_len, "cannot map %s: %s", path, strerror(errno));
            close(fd);
            return -RPT_E_IO;
        }
    }
    close(fd);
    s3_outcome oc;
    memset(&oc, 0, sizeof oc);
    int rc = s3_put_bytes(ep, bucket, key, len ? data : "", len, content_type, &oc);
    if (len > 0)
        munmap(data, len);
    if (rc != 0 || oc.http_status / 100 != 2) {
        if (oc.http_status == 0 && oc.curl_code != 0)
            snprintf(err, err_len,
                     "s3://%s/%s: PutObject failed: no HTTP response (curl error %d: %s)",
                     bucket, key, oc.curl_code, curl_easy_strerror((CURLcode)oc.curl_code));
        else if (oc.http_status == 0)
            snprintf(err, err_len, "s3://%s/%s: PutObject not sent (s3 error %d)", bucket, key,
                     rc);
        else
            snprintf(err, err_len, "s3://%s/%s: PutObject failed: HTTP %ld%s%s%s%s%s", bucket,
                     key, oc.http_status, oc.code[0] ? " " : "", oc.code,
                     oc.message[0] ? " (" : "", oc.message, oc.message[0] ? ")" : "");
        return -RPT_E_UPLOAD;
    }
    return 0;
}

int rpt_upload(const s3_endpoint *ep, const rpt_opts *opts, const rpt_summary *sum, char *err,
               size_t err_len)
{
    for (size_t i = 0; i < sum->n_files; i++) {
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
