/*
 * bench_hotpath.c — micro-benchmarks of the hot path, one machine-readable line per run and
 * a summary line per benchmark (median, min, max, peak RSS), like redis-benchmark --csv:
 *
 *   bench=csv_rows run=1 rows=2000000 seconds=0.61 rows_per_s=3278688 mb_per_s=180.2
 *   summary bench=csv_rows runs=5 median=... min=... max=... unit=rows_per_s peak_rss_kb=...
 *
 * What each measures:
 *   csv_rows      mf_next over a generated S3BatchOperations_CSV_20180820 manifest
 *                 (bucket,key,versionId; keys with %20 escapes), from a file in /tmp
 *   signatures    s3_sign of a CopyObject request (cached signing key, as in the engine)
 *   report_rows   rpt_format_row of a succeeded row into a reused buffer
 * Usage: bench_hotpath [ROWS] [RUNS]   (defaults 2000000 rows, 5 runs)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "report/report.h"
#include "s3/s3.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summary(const char *name, double *v, int n, const char *unit)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    printf("summary bench=%s runs=%d median=%.0f min=%.0f max=%.0f unit=%s peak_rss_kb=%ld\n",
           name, n, v[n / 2], v[0], v[n - 1], unit, peak_rss_kb());
    fflush(stdout);
}

static long make_manifest(const char *path, long rows)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    for (long i = 0; i < rows; i++)
        fprintf(f, "amzn-s3-demo-bucket,photos/2026/album%%20%ld/image_%08ld.jpg,"
                   "PZ9ibn9D5lP6p298B7S9_ceqx1n5EJ%02ld\n",
                i % 1000, i, i % 100);
    long size = ftell(f);
    fclose(f);
    return size;
}

static void bench_csv(long rows, int runs)
{
    char path[] = "/tmp/batchrep-bench-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return;
    close(fd);
    long bytes = make_manifest(path, rows);
    double rate[32];
    for (int r = 0; r < runs; r++) {
        char err[512];
        mf_csv_opts opts = {.n_fields = 0};
        mf_reader *rd = mf_open_csv(path, "bench.csv", &opts, err, sizeof err);
        if (!rd) {
            fprintf(stderr, "%s\n", err);
            break;
        }
        mf_entry e;
        long n = 0;
        double t0 = now_s();
        while (mf_next(rd, &e, err, sizeof err) == 1)
            n++;
        double dt = now_s() - t0;
        mf_close(rd);
        rate[r] = (double)n / dt;
        printf("bench=csv_rows run=%d rows=%ld seconds=%.3f rows_per_s=%.0f mb_per_s=%.1f\n",
               r + 1, n, dt, rate[r], (double)bytes / dt / 1e6);
    }
    unlink(path);
    summary("csv_rows", rate, runs, "rows_per_s");
}

static void bench_sign(long n, int runs)
{
    s3_creds c;
    memset(&c, 0, sizeof c);
    snprintf(c.access_key, sizeof c.access_key, "AKIAIOSFODNN7EXAMPLE");
    snprintf(c.secret_key, sizeof c.secret_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    s3_signer s;
    s3_signer_init(&s, &c, "us-east-1");
    s3_header hdrs[] = {
        {"x-amz-copy-source", "src/photos/2026/image_00000001.jpg?versionId=PZ9ibn9D5lP6p2"},
        {"x-amz-metadata-directive", "COPY"},
        {"x-amz-tagging-directive", "COPY"},
    };
    s3_sign_input in = {
        .method = "PUT", .host = "127.0.0.1:7480",
        .canonical_uri = "/dst/photos/2026/image_00000001.jpg",
        .headers = hdrs, .n_headers = 3,
        .payload_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        .now = time(NULL),
    };
    char auth[1024], date[17];
    double rate[32];
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        for (long i = 0; i < n; i++)
            s3_sign(&s, &in, auth, sizeof auth, date);
        double dt = now_s() - t0;
        rate[r] = (double)n / dt;
        printf("bench=signatures run=%d signatures=%ld seconds=%.3f signatures_per_s=%.0f\n",
               r + 1, n, dt, rate[r]);
    }
    summary("signatures", rate, runs, "signatures_per_s");
}

static void bench_report(long n, int runs)
{
    s3_buf out;
    s3_buf_init(&out, (size_t)1 << 30);
    rpt_row row = {
        .bucket = s3_slice_cstr("amzn-s3-demo-bucket"),
        .key = s3_slice_cstr("photos/2026/album%2012/image_00000001.jpg"),
        .version_id = s3_slice_cstr("PZ9ibn9D5lP6p298B7S9_ceqx1n5EJ0p"),
        .succeeded = 1, .http_status = 200, .error_code = "", .message = "success",
    };
    double rate[32];
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        for (long i = 0; i < n; i++) {
            if ((i & 4095) == 0)
                s3_buf_reset(&out); /* the writer flushes in large blocks; so do we */
            rpt_format_row(&out, &row);
        }
        double dt = now_s() - t0;
        rate[r] = (double)n / dt;
        printf("bench=report_rows run=%d rows=%ld seconds=%.3f rows_per_s=%.0f\n", r + 1, n,
               dt, rate[r]);
    }
    s3_buf_cleanup(&out);
    summary("report_rows", rate, runs, "rows_per_s");
}

int main(int argc, char **argv)
{
    long rows = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;
    int runs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 5;
    if (rows < 1)
        rows = 1;
    if (runs < 1 || runs > 32)
        runs = 5;
    bench_csv(rows, runs);
    bench_sign(rows / 4 > 0 ? rows / 4 : 1, runs);
    bench_report(rows, runs);
    return 0;
}
