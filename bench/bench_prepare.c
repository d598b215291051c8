/*
 * bench_prepare.c — Preparing's sort (run/spool.c) of a shuffled manifest: one
 * machine-readable line per run and a summary, as bench_hotpath prints them:
 *
 *   bench=prepare run=1 rows=1000000 seconds=0.80 rows_per_s=1250000 peak_rss_kib=30000
 *     manifest_bytes=... spool_bytes=... spool_bytes_per_manifest_byte=0.30 shards=10 runs=8
 *   summary bench=prepare runs=3 median=... min=... max=... unit=rows_per_s peak_rss_kib=...
 *
 * The manifest (S3BatchOperations_CSV_20180820, made once in a temporary folder under
 * $TMPDIR or /tmp): one bucket; keys data/2024/part-NNNNN/file-NNNNNNNNN.parquet, 1-5
 * versions each with 32-character version IDs; the rows shuffled with a seeded PRNG, so
 * every key's versions are scattered over the file (what the sort exists for). It is made
 * in a child process, and each measured run__spool_build (default options: 16 MiB of sort
 * memory, 100,000-row shards) runs in a child of its own: peak_rss_kib is that child's
 * ru_maxrss (wait4), the whole process while it reads, sorts, merges and writes, and
 * neither the generator nor another run counts. seconds is the build alone (it reads the
 * manifest: read + sort + merge + write). The summary's peak_rss_kib is the largest run's.
 *
 * Usage: bench_prepare ROWS [RUNS]   (RUNS default 3; bench/run.sh runs 1000000 3, and
 *        10000000 1 is the 10 M-row run)
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "run/run_int.h"

#define MAX_RUNS 32

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 32 characters of [A-Za-z0-9._], like S3's version IDs, fixed by (key, version). */
static void version_id(uint64_t key, unsigned v, char out[33])
{
    static const char set[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";
    uint64_t s = key * 8 + v, r = 0;
    for (int i = 0; i < 32; i++) {
        if (i % 10 == 0)
            r = splitmix(&s);
        out[i] = set[r & 63];
        r >>= 6;
    }
    out[32] = '\0';
}

/* Writes the shuffled manifest; 0 or -1. Runs in a child: its memory (8 bytes a row for
   the shuffle) is gone before anything is measured. */
static int make_manifest(const char *path, uint64_t rows)
{
    uint64_t *row = malloc((rows ? rows : 1) * sizeof *row); /* key << 3 | version */
    if (!row)
        return -1;
    uint64_t seed = 20240412, n = 0;
    for (uint64_t key = 0; n < rows; key++) {
        unsigned versions = 1 + (unsigned)(splitmix(&seed) % 5);
        for (unsigned v = 0; v < versions && n < rows; v++)
            row[n++] = key << 3 | v;
    }
    for (uint64_t i = rows; i > 1; i--) { /* Fisher-Yates */
        uint64_t j = splitmix(&seed) % i, t = row[i - 1];
        row[i - 1] = row[j];
        row[j] = t;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        free(row);
        return -1;
    }
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    for (uint64_t i = 0; i < rows; i++) {
        uint64_t key = row[i] >> 3;
        char vid[33];
        version_id(key, (unsigned)(row[i] & 7), vid);
        fprintf(f, "amzn-s3-demo-bucket,data/2024/part-%05u/file-%09" PRIu64 ".parquet,%s\n",
                (unsigned)(key % 997), key, vid);
    }
    free(row);
    return fclose(f) == 0 ? 0 : -1;
}

typedef struct result {
    int ok;
    double seconds;
    uint64_t rows, spool_bytes, shards, runs;
    char msg[512];
} result;

/* One measured build, in this (child) process. */
static void build_once(const char *manifest, const char *spool, result *res)
{
    char err[512];
    mf_csv_opts opts = {.n_fields = 0};
    mf_reader *r = mf_open_csv(manifest, "bench.csv", &opts, err, sizeof err);
    if (!r) {
        snprintf(res->msg, sizeof res->msg, "%s", err);
        return;
    }
    run__spool_opts so = {.dir = spool};
    run__spool_index idx;
    int mf_rc = 0;
    double t0 = now_s();
    int rc = run__spool_build(r, &so, &idx, &mf_rc, err, sizeof err);
    res->seconds = now_s() - t0;
    mf_close(r);
    if (rc != 0) {
        snprintf(res->msg, sizeof res->msg, "%s", err);
        return;
    }
    res->ok = 1;
    res->rows = idx.n_rows;
    res->spool_bytes = idx.spool_bytes;
    res->shards = idx.n_shards;
    res->runs = idx.n_runs;
    run__spool_index_cleanup(&idx);
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[4200];
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
            continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    char *end1 = NULL, *end2 = NULL;
    uint64_t rows = argc > 1 ? (uint64_t)strtoull(argv[1], &end1, 10) : 0;
    long runs = argc > 2 ? strtol(argv[2], &end2, 10) : 3;
    if (argc < 2 || argc > 3 || !end1 || *end1 || argv[1][0] == '-' || (end2 && *end2) ||
        runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "usage: bench_prepare ROWS [RUNS]   (RUNS 1..%d)\n", MAX_RUNS);
        return 2;
    }
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[4096], manifest[4200], spool[4200];
    if (snprintf(dir, sizeof dir, "%s/batchrep-bench-prepare-XXXXXX", tmp) >= (int)sizeof dir ||
        !mkdtemp(dir)) {
        fprintf(stderr, "bench_prepare: cannot make a folder under %s: %s\n", tmp,
                strerror(errno));
        return 1;
    }
    snprintf(manifest, sizeof manifest, "%s/manifest.csv", dir);
    snprintf(spool, sizeof spool, "%s/spool", dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(make_manifest(manifest, rows) == 0 ? 0 : 1);
    int status = 0;
    struct stat st;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || stat(manifest, &st) != 0) {
        fprintf(stderr, "bench_prepare: cannot write %s\n", manifest);
        remove_tree(dir);
        return 1;
    }
    double rate[MAX_RUNS];
    long peak_max = 0;
    int done = 0;
    for (int i = 0; i < runs; i++) {
        int fds[2];
        if (pipe(fds) != 0)
            break;
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            result res;
            memset(&res, 0, sizeof res);
            build_once(manifest, spool, &res);
            ssize_t w = write(fds[1], &res, sizeof res);
            _exit(w == (ssize_t)sizeof res ? 0 : 1);
        }
        close(fds[1]);
        result res;
        memset(&res, 0, sizeof res);
        ssize_t got = pid > 0 ? read(fds[0], &res, sizeof res) : -1;
        close(fds[0]);
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        if (pid > 0)
            wait4(pid, &status, 0, &ru);
        if (got != (ssize_t)sizeof res || !res.ok) {
            fprintf(stderr, "bench_prepare: run %d failed: %s\n", i + 1,
                    got == (ssize_t)sizeof res ? res.msg : "the child died");
            break;
        }
        rate[done++] = (double)res.rows / res.seconds;
        if (ru.ru_maxrss > peak_max)
            peak_max = ru.ru_maxrss;
        printf("bench=prepare run=%d rows=%" PRIu64 " seconds=%.3f rows_per_s=%.0f "
               "peak_rss_kib=%ld manifest_bytes=%lld spool_bytes=%" PRIu64
               " spool_bytes_per_manifest_byte=%.3f shards=%" PRIu64 " runs=%" PRIu64 "\n",
               i + 1, res.rows, res.seconds, rate[done - 1], ru.ru_maxrss,
               (long long)st.st_size, res.spool_bytes,
               st.st_size ? (double)res.spool_bytes / (double)st.st_size : 0.0, res.shards,
               res.runs);
        fflush(stdout);
    }
    remove_tree(dir);
    if (done == 0)
        return 1;
    qsort(rate, (size_t)done, sizeof *rate, cmp_double);
    printf("summary bench=prepare runs=%d median=%.0f min=%.0f max=%.0f unit=rows_per_s "
           "peak_rss_kib=%ld\n",
           done, rate[done / 2], rate[0], rate[done - 1], peak_max);
    return done == (int)runs ? 0 : 1;
}
