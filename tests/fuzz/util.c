/*
 * util.c — temporary files for the fuzz targets (util.h). Files are rewritten for every
 * input (a few hundred bytes to a few KiB, in the page cache: ~10 us each), so the targets
 * drive the real readers, which open paths, as a job does.
 */
#include "tests/fuzz/util.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[4096];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tmp(void)
{
    if (g_dir[0])
        nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fz_tmp_dir(void)
{
    if (g_dir[0])
        return g_dir;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/batchrep-fuzz-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "fuzz: mkdtemp %s: %s\n", g_dir, strerror(errno));
        abort();
    }
    atexit(rm_tmp);
    return g_dir;
}

void fz_tmp_path(const char *rel, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", fz_tmp_dir(), rel);
    if (n < 0 || (size_t)n >= cap)
        abort();
    for (char *p = out + strlen(fz_tmp_dir()) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(out, 0700) != 0 && errno != EEXIST)
            abort();
        *p = '/';
    }
}

void fz_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    if ((len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        abort();
}
