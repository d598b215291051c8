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
 *   inventory_rows  mf_next over a local S3 Inventory report (manifest.json + one gzip CSV
 *                 data file, every field quoted as AWS writes them, 9 columns: Bucket, Key,
 *                 VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag,
 *                 StorageClass); the open (MD5 of the data file) is timed too
 *   planner_entries  the planner's per-key work on Inventory rows (3 versions per key, all
 *                 facts known): group rows into units, order each key's versions by
 *                 LastModified (eng_unit_builder_add / _take, which sorts), free the unit;
 *                 also printed as ns per entry
 * Usage: bench_hotpath [ROWS] [RUNS]   (defaults 2000000 rows, 5 runs)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "engine/engine.h"
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

/* Writes DIR/inv/data/part-0.csv.gz (rows, 3 versions per key) and
   DIR/inv/2026-11-25T00-00Z/manifest.json naming it with its size and MD5. Returns the
   compressed size, -1 on failure. */
static long make_inventory(const char *dir, long rows, char *manifest_path, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/inv", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/inv/data", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/inv/2026-11-25T00-00Z", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/inv/data/part-0.csv.gz", dir);
    gzFile gz = gzopen(path, "wb6");
    if (!gz)
        return -1;
    for (long i = 0; i < rows; i++) {
        long k = i / 3, v = i % 3;
        gzprintf(gz, "\"amzn-s3-demo-bucket\",\"photos/2026/album%%20%ld/image_%08ld.jpg\","
                     "\"PZ9ibn9D5lP6p298B7S9_ceqx1n5EJ%ld\",\"%s\",\"false\",\"%ld\","
                     "\"2026-11-%02ldT10:%02ld:%02ld.000Z\",\"0f343b0931126a20f133d67c2b018a3%ld\","
                     "\"STANDARD\"\n",
                 k % 1000, k, v, v == 2 ? "true" : "false", 1024 + k % 4096, 1 + k % 28,
                 k % 60, v, v);
    }
    gzclose(gz);
    s3_buf gzdata; /* the data file as written, for its MD5 */
    s3_buf_init(&gzdata, (size_t)1 << 31);
    FILE *f = fopen(path, "rb");
    char chunk[65536];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (s3_buf_append(&gzdata, chunk, n) != 0)
            break;
    if (f)
        fclose(f);
    long size = (long)gzdata.len;
    char hex[33];
    s3_md5_hex(gzdata.ptr, gzdata.len, hex);
    s3_buf_cleanup(&gzdata);
    json_t *m = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:I,s:s}]}", "sourceBucket", "amzn-s3-demo-bucket",
        "destinationBucket", "arn:aws:s3:::inventory-bucket", "version", "2016-11-30",
        "creationTimestamp", "1764028800000", "fileFormat", "CSV", "fileSchema",
        "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, "
        "StorageClass",
        "files", "key", "inv/data/part-0.csv.gz", "size", (json_int_t)size, "MD5checksum", hex);
    snprintf(manifest_path, cap, "%s/inv/2026-11-25T00-00Z/manifest.json", dir);
    int rc = json_dump_file(m, manifest_path, JSON_INDENT(4));
    json_decref(m);
    return rc == 0 ? size : -1;
}

static void bench_inventory(long rows, int runs)
{
    char dir[] = "/tmp/batchrep-bench-inv-XXXXXX", manifest[600], data[600];
    if (!mkdtemp(dir))
        return;
    long bytes = make_inventory(dir, rows, manifest, sizeof manifest);
    double rate[32];
    int done = 0;
    for (int r = 0; r < runs && bytes > 0; r++) {
        char err[512];
        int orc = 0;
        mf_spec spec = {.format = MF_FORMAT_INVENTORY, .path = manifest};
        double t0 = now_s();
        mf_reader *rd = mf_open(&spec, &orc, err, sizeof err);
        if (!rd) {
            fprintf(stderr, "inventory: %s\n", err);
            break;
        }
        mf_entry e;
        long n = 0;
        int rc;
        while ((rc = mf_next(rd, &e, err, sizeof err)) == 1)
            n++;
        double dt = now_s() - t0;
        mf_close(rd);
        if (rc < 0 || n != rows) {
            fprintf(stderr, "inventory: %ld of %ld rows: %s\n", n, rows, rc < 0 ? err : "");
            break;
        }
        rate[done++] = (double)n / dt;
        printf("bench=inventory_rows run=%d rows=%ld gz_bytes=%ld seconds=%.3f rows_per_s=%.0f "
               "gz_mb_per_s=%.1f\n", r + 1, n, bytes, dt, rate[done - 1],
               (double)bytes / dt / 1e6);
    }
    snprintf(data, sizeof data, "%s/inv/data/part-0.csv.gz", dir);
    unlink(data);
    unlink(manifest);
    char sub[600];
    const char *subs[] = {"inv/data", "inv/2026-11-25T00-00Z", "inv"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, subs[i]);
        rmdir(sub);
    }
    rmdir(dir);
    if (done)
        summary("inventory_rows", rate, done, "rows_per_s");
}

/* Entries as the Inventory reader gives them (facts known), 3 versions per key in the
   inventory's order (newest last), through the planner's grouping and ordering. */
static void bench_planner(long rows, int runs)
{
    enum { KEY_CAP = 128 };
    char key[KEY_CAP], vid[40], etag[40];
    repl_rules rules;
    memset(&rules, 0, sizeof rules);
    _Atomic int stop = 0;
    double rate[32];
    for (int r = 0; r < runs; r++) {
        eng_unit_builder b;
        eng_unit_builder_init(&b);
        long units = 0, n = 0;
        double t0 = now_s();
        for (long i = 0; i <= rows; i++) {
            mf_entry e;
            memset(&e, 0, sizeof e);
            if (i < rows) {
                long k = i / 3, v = i % 3;
                int kl = snprintf(key, sizeof key, "photos/2026/album %ld/image_%08ld.jpg",
                                  k % 1000, k);
                int vl = snprintf(vid, sizeof vid, "PZ9ibn9D5lP6p298B7S9_ceqx1n5EJ%ld", 2 - v);
                int el = snprintf(etag, sizeof etag, "0f343b0931126a20f133d67c2b018a3%ld", v);
                e = (mf_entry){.seq = (uint64_t)i, .line = (uint64_t)i + 1,
                               .bucket = s3_slice_cstr("amzn-s3-demo-bucket"),
                               .key_raw = {key, (size_t)kl}, .key = {key, (size_t)kl},
                               .version_id = {vid, (size_t)vl}, .has_version = 1};
                e.facts = (mf_facts){.known = MF_FACT_DELETE_MARKER | MF_FACT_LATEST |
                                              MF_FACT_SIZE | MF_FACT_LAST_MODIFIED |
                                              MF_FACT_STORAGE_CLASS | MF_FACT_ETAG,
                                     .is_latest = v == 2, .size = 1024,
                                     .last_modified_ms = 1764064800000 + k * 1000 + v,
                                     .storage_class = "STANDARD",
                                     .etag = {etag, (size_t)el}};
            }
            if (eng_unit_builder_len(&b) > 0 &&
                (i == rows || !eng_unit_builder_same_key(&b, &e))) {
                eng_unit *u = eng_unit_builder_take(&b, &rules, &stop, NULL, NULL);
                if (!u)
                    break;
                n += (long)eng_unit_n_tasks(u);
                units++;
                eng_unit_destroy(u);
            }
            if (i < rows && eng_unit_builder_add(&b, &e) != 0)
                break;
        }
        double dt = now_s() - t0;
        eng_unit_builder_cleanup(&b);
        rate[r] = (double)n / dt;
        printf("bench=planner_entries run=%d entries=%ld units=%ld seconds=%.3f "
               "entries_per_s=%.0f ns_per_entry=%.1f\n",
               r + 1, n, units, dt, rate[r], dt * 1e9 / (double)(n ? n : 1));
    }
    summary("planner_entries", rate, runs, "entries_per_s");
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
    bench_inventory(rows, runs);
    bench_planner(rows, runs);
    return 0;
}
