/*
 * object.c — where a manifest lives in S3: the ObjectArn of JobManifestLocation, and fetching
 * that object to a local file with the ETag check CreateJob requires.
 *
 * ARN forms accepted (aws-formats.md §1.3, JobManifestLocation.ObjectArn):
 *   arn:<partition>:s3:::<bucket>/<key>   the key is everything after the first '/', as is
 *                                         (not %-decoded; slashes kept)
 *   arn:<partition>:s3:::<bucket>         a bucket ARN: key ""
 * where <partition> is "aws" or "aws-" followed by lower-case letters, digits and '-'
 * ("aws-cn", "aws-us-gov", "aws-iso-b", ...). Region and account must be empty, as they are
 * for every S3 bucket/object ARN; access-point and Outposts ARNs are rejected. The bucket
 * must be a name S3 accepts (s3_bucket_name_problem): "arn:aws:s3:::.." names no bucket.
 *
 * The download goes to a temporary file next to local_path ("<local_path>.part-XXXXXX") and
 * is renamed into place only when the GET succeeded and the ETag matched, so local_path
 * never holds a partial or wrong manifest. A download killed with the process (kill -9)
 * leaves its temporary file behind: the next download to the same local_path removes every
 * "<local_path>.part-*" first. s3_get_to_file bounds the download (stall detector, size
 * limit, resume with If-Match: s3.h).
 */
#include "manifest/manifest.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int mf_parse_s3_arn(const char *arn, char *bucket, size_t bucket_cap, char *key, size_t key_cap)
{
    if (!arn || !bucket || !key || bucket_cap == 0 || key_cap == 0)
        return -MF_E_INVALID_SPEC;
    static const char prefix[] = "arn:";
    if (strncmp(arn, prefix, sizeof prefix - 1) != 0)
        return -MF_E_INVALID_SPEC;
    const char *p = arn + sizeof prefix - 1;
    const char *colon = strchr(p, ':');
    if (!colon)
        return -MF_E_INVALID_SPEC;
    size_t plen = (size_t)(colon - p);
    if (plen == 3) {
        if (strncmp(p, "aws", 3) != 0)
            return -MF_E_INVALID_SPEC;
    } else {
        if (plen < 5 || strncmp(p, "aws-", 4) != 0)
            return -MF_E_INVALID_SPEC;
        for (size_t i = 4; i < plen; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                return -MF_E_INVALID_SPEC;
        }
    }
    static const char service[] = ":s3:::"; /* service s3, empty region, empty account */
    if (strncmp(colon, service, sizeof service - 1) != 0)
        return -MF_E_INVALID_SPEC;
    const char *res = colon + sizeof service - 1;
    const char *slash = strchr(res, '/');
    size_t blen = slash ? (size_t)(slash - res) : strlen(res);
    const char *k = slash ? slash + 1 : "";
    size_t klen = strlen(k);
    if (blen == 0 || blen >= bucket_cap || klen >= key_cap ||
        s3_bucket_name_problem((s3_slice){res, blen}))
        return -MF_E_INVALID_SPEC;
    memcpy(bucket, res, blen);
    bucket[blen] = '\0';
    memcpy(key, k, klen);
    key[klen] = '\0';
    return 0;
}

/* The hex inside an ETag: surrounding double quotes dropped. */
static void etag_core(const char *s, const char **out, size_t *out_len)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    *out = s;
    *out_len = n;
}

static int etag_equal(const char *a, const char *b)
{
    const char *pa, *pb;
    size_t la, lb;
    etag_core(a, &pa, &la);
    etag_core(b, &pb, &lb);
    return la == lb && strncasecmp(pa, pb, la) == 0;
}

/* Removes "<base>.part-*" from local_path's folder: what earlier downloads to local_path
   left when their process was killed. Best effort: a file that cannot be removed is left. */
static void remove_stale_parts(const char *local_path)
{
    char dir[4096];
    const char *slash = strrchr(local_path, '/');
    const char *base = slash ? slash + 1 : local_path;
    int n = slash ? snprintf(dir, sizeof dir, "%.*s", (int)(slash - local_path), local_path)
                  : snprintf(dir, sizeof dir, ".");
    if (n < 0 || (size_t)n >= sizeof dir)
        return;
    if (!dir[0])
        snprintf(dir, sizeof dir, "/");
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t blen = strlen(base);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, base, blen) == 0 && strncmp(e->d_name + blen, ".part-", 6) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

int mf_fetch_object(const s3_endpoint *ep, const char *bucket, const char *key,
                    const char *version_id, const char *expected_etag, const char *local_path,
                    char *err, size_t err_len)
{
    /* Messages name the object as the job does: by ARN (+ version). Partition unknown here:
       "aws" is what users recognise. */
    char arn[1600];
    snprintf(arn, sizeof arn, "arn:aws:s3:::%s/%s%s%s", bucket, key,
             version_id && *version_id ? " version " : "", version_id ? version_id : "");
    if (version_id && !*version_id)
        version_id = NULL;

    char tmp[4200];
    int n = snprintf(tmp, sizeof tmp, "%s.part-XXXXXX", local_path);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        snprintf(err, err_len, "%s: local path too long: %s", arn, local_path);
        return -MF_E_IO;
    }
    remove_stale_parts(local_path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, err_len, "%s: cannot create %s: %s", arn, tmp, strerror(errno));
        return -MF_E_IO;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        snprintf(err, err_len, "%s: cannot open %s: %s", arn, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -MF_E_IO;
    }

    s3_response resp;
    s3_outcome oc;
    memset(&resp, 0, sizeof resp);
    memset(&oc, 0, sizeof oc);
    int rc = s3_get_to_file(ep, bucket, key, version_id, f, &resp, &oc);
    int werr = fflush(f) != 0 || fsync(fileno(f)) != 0 ? errno : 0;
    if (fclose(f) != 0 && !werr)
        werr = errno;
    s3_response_cleanup(&resp); /* body and kept headers */

    int ret = 0;
    if (rc == S3_E_IO) { /* the answer was fine, writing it here was not */
        snprintf(err, err_len, "%s: cannot write %s: %s", arn, tmp,
                 strerror(werr ? werr : EIO));
        ret = -MF_E_IO;
    } else if (rc != 0 && oc.curl_code == 0 && oc.http_status / 100 == 2) {
        /* an answer we refused: too large, longer than announced, changed meanwhile */
        snprintf(err, err_len, "%s: GetObject refused: %s%s", arn, oc.message,
                 strcmp(oc.code, "EntityTooLarge") == 0 ? " (--max-manifest-bytes)" : "");
        ret = -MF_E_FETCH;
    } else if (rc != 0 || oc.http_status / 100 != 2) {
        if (oc.curl_code != 0) /* no complete answer: timeout, TLS trust, connection */
            snprintf(err, err_len, "%s: GetObject failed: %s (curl error %d)", arn, oc.message,
                     oc.curl_code);
        else if (oc.http_status == 0)
            snprintf(err, err_len, "%s: GetObject not sent (s3 error %d: bad bucket or key?)",
                     arn, rc);
        else
            snprintf(err, err_len, "%s: GetObject failed: HTTP %ld%s%s%s%s%s", arn,
                     oc.http_status, oc.code[0] ? " " : "", oc.code,
                     oc.message[0] ? " (" : "", oc.message, oc.message[0] ? ")" : "");
        ret = -MF_E_FETCH;
    } else if (werr) {
        snprintf(err, err_len, "%s: cannot write %s: %s", arn, tmp, strerror(werr));
        ret = -MF_E_IO;
    } else if (expected_etag && *expected_etag && !etag_equal(resp.etag, expected_etag)) {
        snprintf(err, err_len,
                 "%s: ETag is %s but the job expects %s (the manifest changed since the job "
                 "was created?)",
                 arn, resp.etag[0] ? resp.etag : "(none)", expected_etag);
        ret = -MF_E_ETAG_MISMATCH;
    } else if (rename(tmp, local_path) != 0) {
        snprintf(err, err_len, "%s: cannot rename %s to %s: %s", arn, tmp, local_path,
                 strerror(errno));
        ret = -MF_E_IO;
    }
    if (ret != 0)
        unlink(tmp);
    return ret;
}
