/*
 * fs.c — local file helpers every module needs: a path joined without ever being cut,
 * mkdir -p, a file written atomically, the MD5 of a file.
 *
 * Modes are the caller's: the state directory (job documents, checkpoints, report rows that
 * name every object of a bucket) is private, 0700 / 0600; a user's own report folder follows
 * their umask.
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MD5_READ_BYTES (1u << 20)

int s3_path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return -1;
    }
    return 0;
}

int s3_mkdir_p(const char *path, unsigned mode)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s", path) >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    struct stat st;
    if (mkdir(tmp, (mode_t)mode) == 0 || (errno == EEXIST && stat(tmp, &st) == 0 && S_ISDIR(st.st_mode)))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    return -1;
}

int s3_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int s3_errno_disk_full(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

int s3_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         char *err, size_t err_len)
{
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        snprintf(err, err_len, "%s: path too long", path);
        return S3_E_IO;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        snprintf(err, err_len, "cannot create %s: %s", tmp, strerror(errno));
        return S3_E_IO;
    }
    int bad = s3_write_all(fd, data, len) != 0 || fdatasync(fd) != 0;
    int saved = errno;
    if (close(fd) != 0 && !bad) { /* closed in every case: no descriptor leaks */
        bad = 1;
        saved = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        saved = errno;
    }
    if (bad) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(saved));
        unlink(tmp); /* never left behind */
        errno = saved; /* the caller may tell a full disk from other failures */
        return S3_E_IO;
    }
    return S3_E_OK;
}

int s3_md5_file(const char *path, char out[33], char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
        return S3_E_IO;
    }
    unsigned char *buf = malloc(MD5_READ_BYTES);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = S3_E_OK;
    if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
        snprintf(err, err_len, "out of memory computing the MD5 of %s", path);
        rc = S3_E_NOMEM;
    }
    while (rc == S3_E_OK) {
        ssize_t n = read(fd, buf, MD5_READ_BYTES);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
            rc = S3_E_IO;
        } else if (n == 0) {
            break;
        } else {
            EVP_DigestUpdate(ctx, buf, (size_t)n);
        }
    }
    if (rc == S3_E_OK) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned dl = 0;
        EVP_DigestFinal_ex(ctx, d, &dl);
        s3__hex(d, 16, out);
        out[32] = '\0';
    }
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    return rc;
}
