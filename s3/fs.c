/*
 * fs.c — local file helpers every module needs: mkdir -p.
 *
 * Folders are created 0700: the state directory holds job documents, checkpoints and report
 * rows that name every object of a bucket, which no other user of the machine should read.
 */
#include "s3/s3.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int s3_mkdir_p(const char *path)
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
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    struct stat st;
    if (mkdir(tmp, 0700) == 0 || (errno == EEXIST && stat(tmp, &st) == 0 && S_ISDIR(st.st_mode)))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    return -1;
}
