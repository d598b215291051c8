/*
 * test_report.c — the completion report, compared byte for byte with golden files under
 * tests/fixtures/report/:
 *   rows.tsv                 input rows, one per line: s|f TAB http TAB bucket TAB key TAB
 *                            version TAB error_code TAB message (escapes \t \n \r \\; \N is a
 *                            NULL string); the first rows are AWS's own report rows
 *   rows.golden.csv          rpt_format_row of every row, concatenated
 *   writer.succeeded.csv     the succeeded / failed rows of rows.tsv formatted in order: what
 *   writer.failed.csv        a results file holds (their MD5s are in the manifests below)
 *   manifest.*.json          manifest.json over those files, "@DATE@" standing for
 *                            ReportCreationDate (checked separately: ISO-8601, ms, Z)
 * Cases: the row formatter (golden, append, rollback at the cap, speed); the results files'
 * keys and local paths (rpt_results_file: SHA-1 names per chunk and status, prefixes with a
 * trailing '/', "." and ".." kept in keys and escaped on disk, refused options); manifest.json
 * (rpt_manifest_write_files, table below: AllTasks with a prefix with and without a trailing
 * '/', FailedTasksOnly, no failures and no prefix, no files at all; then several chunks in the
 * caller's order, a rewrite, file modes, refused input).
 */
#include "report/report.h"
#include "tests/unit/tap.h"

#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JOB_ID "f8fb9d89-a3aa-461d-bddc-ea6a1b131955"
#define REPORT_BUCKET "my-job-reports"

static char g_tmp[256];

/* ---- helpers --------------------------------------------------------------------------- */


static char *fixture(const char *name, size_t *len)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/report/%s", name);
    char *p = tap_read_fixture(rel, len);
    if (!p)
        tap_diag("missing fixture %s", rel);
    return p;
}

static void md5_hex(const void *data, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_md5(), NULL);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int same_bytes(const char *got, size_t got_len, const char *want, size_t want_len,
                      const char *what)
{
    int ok = got && want && got_len == want_len && memcmp(got, want, got_len) == 0;
    if (!tap_ok(ok, "%s: byte for byte", what) && got && want) {
        size_t i = 0;
        while (i < got_len && i < want_len && got[i] == want[i])
            i++;
        tap_diag("lengths %zu vs %zu; first difference at byte %zu", got_len, want_len, i);
        size_t from = i > 40 ? i - 40 : 0;
        tap_diag("  got:  %.*s", (int)(got_len - from < 100 ? got_len - from : 100), got + from);
        tap_diag("  want: %.*s", (int)(want_len - from < 100 ? want_len - from : 100),
                 want + from);
    }
    return ok;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- rows.tsv ---------------------------------------------------------------------------- */

typedef struct in_row {
    char *f[7];   /* owned; NULL for \N */
    size_t len[7];
} in_row;

static in_row g_rows[64];
static size_t g_n_rows;

static char *unescape(const char *s, size_t n, size_t *out_len)
{
    if (n == 2 && s[0] == '\\' && s[1] == 'N')
        return NULL;
    char *o = malloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[++i];
            o[j++] = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c;
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = '\0';
    *out_len = j;
    return o;
}

static int load_rows(void)
{
    size_t len;
    char *text = fixture("rows.tsv", &len);
    if (!text)
        return -1;
    char *p = text;
    while (*p && g_n_rows < sizeof g_rows / sizeof g_rows[0]) {
        size_t ll = strcspn(p, "\n");
        if (*p != '#' && ll > 0) {
            in_row *r = &g_rows[g_n_rows++];
            const char *f = p;
            for (int k = 0; k < 7; k++) {
                size_t fl = k < 6 ? strcspn(f, "\t\n") : (size_t)(p + ll - f);
                r->f[k] = unescape(f, fl, &r->len[k]);
                f += fl + 1;
            }
        }
        p += ll + (p[ll] == '\n');
    }
    free(text);
    return 0;
}

static rpt_row make_row(const in_row *in)
{
    rpt_row r;
    memset(&r, 0, sizeof r);
    r.succeeded = in->f[0][0] == 's';
    r.http_status = (int)strtol(in->f[1], NULL, 10);
    r.bucket = (s3_slice){in->f[2], in->len[2]};
    r.key = (s3_slice){in->f[3], in->len[3]};
    r.version_id = (s3_slice){in->f[4], in->len[4]};
    r.error_code = in->f[5];
    r.message = in->f[6];
    return r;
}

/* ---- rpt_format_row ------------------------------------------------------------------------ */

static void test_format_golden(void)
{
    size_t want_len;
    char *want = fixture("rows.golden.csv", &want_len);
    s3_buf out;
    s3_buf_init(&out, 1 << 20);
    int bad = 0;
    for (size_t i = 0; i < g_n_rows; i++) {
        rpt_row r = make_row(&g_rows[i]);
        if (rpt_format_row(&out, &r) != 0)
            bad++;
    }
    tap_ok(g_n_rows >= 20 && bad == 0, "formatted %zu rows from rows.tsv", g_n_rows);
    same_bytes(out.ptr, out.len, want, want_len, "rows.golden.csv");

    /* each row alone: ends with exactly one '\n' it owns, and appends (keeps what was there) */
    s3_buf one;
    s3_buf_init(&one, 1 << 20);
    s3_buf_append(&one, "X", 1);
    rpt_row r0 = make_row(&g_rows[0]);
    rpt_format_row(&one, &r0);
    tap_ok(one.len > 2 && one.ptr[0] == 'X' && one.ptr[one.len - 1] == '\n' &&
               strncmp(one.ptr + 1, want, one.len - 1) == 0,
           "rpt_format_row appends to what the buffer holds");
    s3_buf_cleanup(&one);

    /* a row that does not fit the buffer's cap leaves the buffer as it was */
    s3_buf small;
    s3_buf_init(&small, 40);
    s3_buf_append(&small, "abc", 3);
    rpt_row r1 = make_row(&g_rows[1]);
    int rc = rpt_format_row(&small, &r1);
    tap_ok(rc == -RPT_E_NOMEM && small.len == 3 && memcmp(small.ptr, "abc", 4) == 0,
           "row over the buffer cap: -RPT_E_NOMEM, buffer unchanged (rc %d, len %zu)", rc,
           small.len);
    s3_buf_cleanup(&small);
    s3_buf_cleanup(&out);
    free(want);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_format_speed(void)
{
    s3_buf out;
    s3_buf_init(&out, 1 << 20);
    rpt_row ok = {.bucket = s3_slice_cstr("amzn-s3-demo-source-bucket"),
                  .key = s3_slice_cstr("photos/2024/06/IMG%2012345.jpg"),
                  .version_id = s3_slice_cstr("PZ9ibn9D5lP6p298B7S9_ceqx1n5EJ0p"),
                  .succeeded = 1, .http_status = 200, .error_code = "", .message = "success"};
    rpt_row bad = ok;
    bad.succeeded = 0;
    bad.http_status = 500;
    bad.error_code = "SrcObjectNotEligible";
    bad.message = "Object is not eligible for replication";
    const unsigned n = 2000000;
    unsigned errs = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        if (out.len > (1u << 20) - 512)
            s3_buf_reset(&out);
        errs += rpt_format_row(&out, (i & 15) ? &ok : &bad) != 0;
    }
    double secs = now_s() - t0;
    tap_ok(errs == 0, "formatted %u rows", n);
    tap_diag("rpt_format_row: %.2f million rows/s (%.3f s for %u)", (double)n / secs / 1e6,
             secs, n);
    s3_buf_cleanup(&out);
}

/* ---- results files: what they hold ------------------------------------------------------ */

/* The succeeded and the failed rows of rows.tsv formatted in order, as the job runner fills a
   shard's results files: writer.succeeded.csv and writer.failed.csv, whose MD5s the golden
   manifests list. */
static void test_results_content(void)
{
    static const char *const golden[2] = {"writer.succeeded.csv", "writer.failed.csv"};
    for (int failed = 0; failed < 2; failed++) {
        s3_buf out;
        s3_buf_init(&out, 1 << 20);
        int bad = 0;
        size_t n = 0;
        for (size_t i = 0; i < g_n_rows; i++) {
            if ((g_rows[i].f[0][0] == 'f') != failed)
                continue;
            rpt_row r = make_row(&g_rows[i]);
            bad += rpt_format_row(&out, &r) != 0;
            n++;
        }
        tap_ok(bad == 0 && n > 0, "%s rows of rows.tsv formatted (%zu)",
               failed ? "failed" : "succeeded", n);
        size_t glen;
        char *want = fixture(golden[failed], &glen);
        same_bytes(out.ptr, out.len, want, glen, golden[failed]);
        free(want);
        s3_buf_cleanup(&out);
    }
}

/* ---- results files: keys and local paths ------------------------------------------------ */

/* The expected names, computed with sha1sum (printf '%s' TEXT | sha1sum), not with the code
   under test: chunk 0 SHA-1("<id>/<status>"), the others SHA-1("<id>/<chunk>/<status>"). */
/* of JOB_ID "/succeeded", JOB_ID "/failed", JOB_ID "/1/succeeded", JOB_ID "/1/failed",
   JOB_ID "/4294967295/failed", "j2/succeeded", "j2/7/failed" */
#define SUCCEEDED_NAME "50a73b04b2df66cdf059cc19eace8d1ef6eb78f7"
#define FAILED_NAME "11e0da9f3f09bbb5c5e87abaceb8599e7c964b02"
#define C1_SUCCEEDED_NAME "2efd627c436d56275eaea2112262b646bcc936b0"
#define C1_FAILED_NAME "cc189402107c277f18824741f3ef91778b1be077"
#define CMAX_FAILED_NAME "04a3e766394eb9a65cd3ba8dbbed985c240dd4c0"
#define J2_SUCCEEDED_NAME "9e83118035bc97b1f1922756d9a794c336190368"
#define J2_C7_FAILED_NAME "de6f78fa1eb7d9038d8387b78f3a11698e887807"

typedef struct name_case {
    const char *prefix;
    const char *job_id;
    uint32_t chunk;
    int failed;
    const char *key;  /* in the report bucket */
    const char *path; /* under the root; NULL: the key */
} name_case;

static const name_case NAME_CASES[] = {
    {NULL, JOB_ID, 0, 0, "job-" JOB_ID "/results/" SUCCEEDED_NAME ".csv", NULL},
    {"", JOB_ID, 0, 1, "job-" JOB_ID "/results/" FAILED_NAME ".csv", NULL},
    {"reports/2025", JOB_ID, 0, 0, "reports/2025/job-" JOB_ID "/results/" SUCCEEDED_NAME ".csv",
     NULL},
    /* a trailing '/' is not doubled */
    {"reports/2025/", JOB_ID, 0, 1, "reports/2025/job-" JOB_ID "/results/" FAILED_NAME ".csv",
     NULL},
    {"reports", JOB_ID, 1, 0, "reports/job-" JOB_ID "/results/" C1_SUCCEEDED_NAME ".csv", NULL},
    {"reports", JOB_ID, 1, 1, "reports/job-" JOB_ID "/results/" C1_FAILED_NAME ".csv", NULL},
    {"r", JOB_ID, UINT32_MAX, 1, "r/job-" JOB_ID "/results/" CMAX_FAILED_NAME ".csv", NULL},
    /* "." and ".." segments: kept in the key, escaped on disk (the path stays under root) */
    {"../other", "j2", 0, 0, "../other/job-j2/results/" J2_SUCCEEDED_NAME ".csv",
     "%2E%2E/other/job-j2/results/" J2_SUCCEEDED_NAME ".csv"},
    {"..", "j2", 0, 0, "../job-j2/results/" J2_SUCCEEDED_NAME ".csv",
     "%2E%2E/job-j2/results/" J2_SUCCEEDED_NAME ".csv"},
    {"a/./b/", "j2", 7, 1, "a/./b/job-j2/results/" J2_C7_FAILED_NAME ".csv",
     "a/%2E/b/job-j2/results/" J2_C7_FAILED_NAME ".csv"},
    /* dots that are not a whole segment are plain text */
    {"x../.../..y", "j2", 0, 0, "x../.../..y/job-j2/results/" J2_SUCCEEDED_NAME ".csv", NULL},
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_results_names(void)
{
    char root[512];
    snprintf(root, sizeof root, "%s/names", g_tmp);
    for (size_t i = 0; i < sizeof NAME_CASES / sizeof NAME_CASES[0]; i++) {
        const name_case *c = &NAME_CASES[i];
        rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .prefix = c->prefix,
                      .job_id = c->job_id};
        char key[1200] = "", path[4096] = "", want_path[4096], err[512] = "";
        int rc = rpt_results_file(&o, c->chunk, c->failed, key, sizeof key, path, sizeof path,
                                  err, sizeof err);
        snprintf(want_path, sizeof want_path, "%s/%s", root, c->path ? c->path : c->key);
        tap_ok(rc == 0, "results name %zu: prefix \"%s\", chunk %u, %s (%s)", i,
               c->prefix ? c->prefix : "(null)", c->chunk, c->failed ? "failed" : "succeeded",
               err);
        const char *got_key = key, *got_path = path;
        TAP_EQ_STR(got_key, c->key, "  key");
        TAP_EQ_STR(got_path, want_path, "  local path");
    }
    struct stat st;
    tap_ok(stat(root, &st) != 0, "naming the files creates nothing on disk");

    /* every chunk's two files have names of their own: 40 lowercase hex digits, none shared */
    enum { CHUNKS = 64 };
    static char names[2 * CHUNKS][48];
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .job_id = JOB_ID};
    int bad = 0;
    for (uint32_t c = 0; c < CHUNKS; c++) {
        for (int f = 0; f < 2; f++) {
            char key[1200], path[4096], err[512];
            char *name = names[2 * c + f];
            name[0] = '\0';
            if (rpt_results_file(&o, c, f, key, sizeof key, path, sizeof path, err,
                                 sizeof err) != 0) {
                bad++;
                continue;
            }
            const char *base = strrchr(key, '/');
            base = base ? base + 1 : key;
            bad += strlen(base) != 44 || strcmp(base + 40, ".csv") != 0 ||
                   strspn(base, "0123456789abcdef") != 40;
            snprintf(name, sizeof names[0], "%.40s", base);
        }
    }
    qsort(names, 2 * CHUNKS, sizeof names[0], cmp_str);
    for (size_t i = 1; i < 2 * CHUNKS; i++)
        bad += strcmp(names[i - 1], names[i]) == 0;
    tap_ok(bad == 0, "chunks 0..%d: %d names of 40 lowercase hex digits, all different",
           CHUNKS - 1, 2 * CHUNKS);
}

static void test_results_refused(void)
{
    char long_prefix[1200];
    memset(long_prefix, 'p', sizeof long_prefix - 1);
    long_prefix[sizeof long_prefix - 1] = '\0';
    char root[512]; /* never created: each case is refused before anything is written */
    snprintf(root, sizeof root, "%s/refused", g_tmp);
    const struct {
        const char *what, *root, *bucket, *prefix, *job_id;
        size_t key_cap, path_cap;
        const char *err;
    } cases[] = {
        {"no job id", root, REPORT_BUCKET, NULL, NULL, 1200, 4096, "job_id"},
        {"empty job id", root, REPORT_BUCKET, NULL, "", 1200, 4096, "job_id"},
        {"job id with '/'", root, REPORT_BUCKET, NULL, "a/b", 1200, 4096, "'/'"},
        {"no root", NULL, REPORT_BUCKET, NULL, JOB_ID, 1200, 4096, "root_dir"},
        {"empty root", "", REPORT_BUCKET, NULL, JOB_ID, 1200, 4096, "root_dir"},
        {"no bucket", root, NULL, NULL, JOB_ID, 1200, 4096, "bucket"},
        {"prefix too long", root, REPORT_BUCKET, long_prefix, JOB_ID, 1200, 4096, "too long"},
        {"key buffer too small", root, REPORT_BUCKET, "reports", JOB_ID, 64, 4096, "too long"},
        {"path buffer too small", root, REPORT_BUCKET, "reports", JOB_ID, 1200, 64, "too long"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rpt_opts o = {.root_dir = cases[i].root, .bucket = cases[i].bucket,
                      .prefix = cases[i].prefix, .job_id = cases[i].job_id};
        char key[1200], path[4096], err[512] = "";
        int rc = rpt_results_file(&o, 0, 0, key, cases[i].key_cap, path, cases[i].path_cap,
                                  err, sizeof err);
        tap_ok(rc == -RPT_E_IO && strstr(err, cases[i].err) != NULL,
               "results name refused: %s (rc %d: %s)", cases[i].what, rc, err);
    }
}

/* ---- manifest.json ---------------------------------------------------------------------- */

/* MD5 of writer.succeeded.csv [0] / writer.failed.csv [1]: what a results file lists. */
static char g_md5[2][33];

static void load_golden_md5(void)
{
    static const char *const golden[2] = {"writer.succeeded.csv", "writer.failed.csv"};
    for (int f = 0; f < 2; f++) {
        size_t len;
        char *text = fixture(golden[f], &len);
        if (text)
            md5_hex(text, len, g_md5[f]);
        free(text);
    }
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 01000000;
}

/* Replaces the ReportCreationDate value with @DATE@ after checking its shape. */
static int blank_date(char *text, size_t *len)
{
    static const char key[] = "\"ReportCreationDate\": \"";
    char *p = strstr(text, key);
    if (!p)
        return -1;
    p += sizeof key - 1;
    /* YYYY-MM-DDTHH:MM:SS.mmmZ */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ\"";
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? (p[i] < '0' || p[i] > '9') : p[i] != shape[i])
            return -1;
    }
    size_t date_len = sizeof shape - 2;
    memcpy(p, "@DATE@", 6);
    memmove(p + 6, p + date_len, strlen(p + date_len) + 1);
    *len -= date_len - 6;
    return 0;
}

/* Key order of a JSON object, as "A,B,C". */
static void key_order(json_t *obj, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it))
        o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? "," : "", json_object_iter_key(it));
}

/* manifest.json.md5 is 32 hex digits + "\n", the MD5 of manifest.json; manifest.json ends
   with its closing brace. Returns manifest.json's text (caller frees) or NULL. */
static char *check_md5_file(const rpt_summary *sum, size_t *len, const char *name)
{
    char what[256];
    char *text = tap_read_path(sum->manifest_path, len);
    if (!tap_ok(text != NULL, "%s: manifest.json written", name))
        return NULL;
    tap_ok(*len > 0 && text[*len - 1] == '}', "%s: no newline after the closing brace", name);
    size_t mlen;
    char *md5_text = tap_read_path(sum->manifest_md5_path, &mlen);
    char want_md5[34];
    md5_hex(text, *len, want_md5);
    want_md5[32] = '\n';
    want_md5[33] = '\0';
    snprintf(what, sizeof what, "%s: manifest.json.md5", name);
    same_bytes(md5_text, md5_text ? mlen : 0, want_md5, 33, what);
    free(md5_text);
    return text;
}

static void check_manifest(const rpt_summary *sum, const char *golden_name, const char *name)
{
    char what[256];
    size_t len, glen;
    char *text = check_md5_file(sum, &len, name);
    char *golden = fixture(golden_name, &glen);
    if (!text || !golden) {
        free(text);
        free(golden);
        return;
    }
    /* parsed: key order as AWS writes it */
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    char order[256];
    if (tap_ok(doc != NULL, "%s: manifest.json parses (%s)", name, doc ? "ok" : jerr.text)) {
        key_order(doc, order, sizeof order);
        const char *top = order;
        TAP_EQ_STR(top, "Format,ReportCreationDate,Results,ReportSchema", "top-level key order");
        json_t *res = json_object_get(doc, "Results");
        size_t i;
        json_t *e;
        int order_ok = json_is_array(res);
        json_array_foreach(res, i, e)
        {
            key_order(e, order, sizeof order);
            order_ok &= strcmp(order, "TaskExecutionStatus,Bucket,MD5Checksum,Key") == 0;
        }
        tap_ok(order_ok && json_array_size(res) == sum->n_files,
               "%s: Results has %zu entries, keys in AWS's order", name, sum->n_files);
        json_decref(doc);
    }
    /* and byte for byte, the date aside */
    tap_ok(blank_date(text, &len) == 0,
           "%s: ReportCreationDate is YYYY-MM-DDTHH:MM:SS.mmmZ", name);
    snprintf(what, sizeof what, "%s: manifest.json vs %s", name, golden_name);
    same_bytes(text, len, golden, glen, what);
    free(text);
    free(golden);
}

/* Lists chunk's results file of status 's' or 'f' in sum, with the MD5 of its golden file,
   as run/scheduler.c lists a shard's files from its checkpoint (no local_path: the file is
   not read). 0, or -1 with err. */
static int list_file(rpt_summary *sum, const rpt_opts *o, uint32_t chunk, char status,
                     char *err, size_t cap)
{
    rpt_result_file *rf = &sum->files[sum->n_files];
    int failed = status == 'f';
    char path[4096];
    memset(rf, 0, sizeof *rf);
    if (rpt_results_file(o, chunk, failed, rf->key, sizeof rf->key, path, sizeof path, err,
                         cap) != 0)
        return -1;
    snprintf(rf->status, sizeof rf->status, "%s", failed ? "failed" : "succeeded");
    memcpy(rf->md5_hex, g_md5[failed], sizeof rf->md5_hex);
    sum->n_files++;
    return 0;
}

typedef struct manifest_case {
    const char *name;
    const char *prefix;
    const char *files;   /* chunk 0's files listed, in order: 's' succeeded, 'f' failed */
    const char *golden;
    const char *key_dir; /* [prefix/]job-<id> as it must appear */
} manifest_case;

/* The caller lists only files with rows: with FailedTasksOnly never the succeeded one. */
static const manifest_case MANIFEST_CASES[] = {
    {"all", "reports/2025", "sf", "manifest.all.json", "reports/2025/job-" JOB_ID},
    {"all-trailing-slash", "reports/2025/", "sf", "manifest.all.json",
     "reports/2025/job-" JOB_ID},
    {"failed-only", "reports/2025", "f", "manifest.failed-only.json",
     "reports/2025/job-" JOB_ID},
    {"succeeded-only-no-prefix", NULL, "s", "manifest.succeeded-only-no-prefix.json",
     "job-" JOB_ID},
    {"empty", "reports/2025", "", "manifest.empty.json", "reports/2025/job-" JOB_ID},
};

static void run_manifest_case(const manifest_case *c)
{
    char root[512], err[1024] = "";
    snprintf(root, sizeof root, "%s/%s", g_tmp, c->name);
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .prefix = c->prefix,
                  .job_id = JOB_ID, .private_files = 1};
    rpt_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.files = calloc(2, sizeof *sum.files);
    int bad = sum.files == NULL;
    for (const char *f = c->files; !bad && *f; f++)
        bad = list_file(&sum, &o, 0, *f, err, sizeof err) != 0;
    int rc = bad ? -1 : rpt_manifest_write_files(&o, &sum, err, sizeof err);
    if (!tap_ok(rc == 0, "%s: rpt_manifest_write_files (%s)", c->name, err)) {
        rpt_summary_cleanup(&sum);
        return;
    }
    char want_key[512], want_path[1024], want_md5_path[1100];
    snprintf(want_key, sizeof want_key, "%s/manifest.json", c->key_dir);
    snprintf(want_path, sizeof want_path, "%s/%s", root, want_key);
    snprintf(want_md5_path, sizeof want_md5_path, "%s.md5", want_path);
    TAP_EQ_STR(sum.manifest_key, want_key, "manifest key");
    TAP_EQ_STR(sum.manifest_path, want_path, "manifest path");
    TAP_EQ_STR(sum.manifest_md5_path, want_md5_path, "manifest.json.md5 path");
    check_manifest(&sum, c->golden, c->name);

    /* private: the report is staged in the state directory */
    char job_dir[1024];
    snprintf(job_dir, sizeof job_dir, "%s/%s", root, c->key_dir);
    unsigned fm = mode_of(sum.manifest_path), mm = mode_of(sum.manifest_md5_path);
    unsigned dm = mode_of(job_dir);
    tap_ok(fm == 0600 && mm == 0600 && dm == 0700,
           "%s: private: manifest.json %o, .md5 %o, job folder %o", c->name, fm, mm, dm);
    rpt_summary_cleanup(&sum);
}

/* A job of several chunks: Results lists the files in the caller's order with the caller's
   MD5s (nothing is read from disk); a second write replaces the first and leaves no
   temporary file; a write that fails leaves the last manifest.json as it was. */
static void test_manifest_chunks(void)
{
    char root[512], err[1024] = "";
    snprintf(root, sizeof root, "%s/chunks", g_tmp);
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .job_id = JOB_ID,
                  .private_files = 1};
    static const struct {
        uint32_t chunk;
        char status;
        const char *md5;
    } files[] = {
        {0, 's', "00000000000000000000000000000001"}, {0, 'f', "00000000000000000000000000000002"},
        {2, 's', "00000000000000000000000000000003"}, {2, 'f', "00000000000000000000000000000004"},
        {5, 'f', "00000000000000000000000000000005"}, /* chunks 1, 3, 4: no rows */
    };
    enum { N = sizeof files / sizeof files[0] };
    rpt_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.files = calloc(N, sizeof *sum.files);
    int bad = sum.files == NULL;
    for (size_t i = 0; !bad && i < N; i++) {
        bad = list_file(&sum, &o, files[i].chunk, files[i].status, err, sizeof err) != 0;
        if (!bad)
            memcpy(sum.files[i].md5_hex, files[i].md5, 33);
    }
    if (!bad) /* a local_path that does not exist: only rpt_upload would read it */
        snprintf(sum.files[2].local_path, sizeof sum.files[2].local_path, "%s/no-such-file",
                 root);
    int rc = bad ? -1 : rpt_manifest_write_files(&o, &sum, err, sizeof err);
    if (!tap_ok(rc == 0, "chunks: rpt_manifest_write_files over %d files (%s)", N, err)) {
        rpt_summary_cleanup(&sum);
        return;
    }
    size_t len;
    char *text = check_md5_file(&sum, &len, "chunks");
    json_t *doc = text ? json_loadb(text, len, 0, NULL) : NULL;
    json_t *res = json_object_get(doc, "Results");
    int same = json_array_size(res) == N;
    for (size_t i = 0; same && i < N; i++) {
        json_t *e = json_array_get(res, i);
        const char *st = json_string_value(json_object_get(e, "TaskExecutionStatus"));
        const char *b = json_string_value(json_object_get(e, "Bucket"));
        const char *m = json_string_value(json_object_get(e, "MD5Checksum"));
        const char *k = json_string_value(json_object_get(e, "Key"));
        same = st && b && m && k && strcmp(st, sum.files[i].status) == 0 &&
               strcmp(b, REPORT_BUCKET) == 0 && strcmp(m, files[i].md5) == 0 &&
               strcmp(k, sum.files[i].key) == 0;
    }
    tap_ok(same, "chunks: Results lists the %d files in the caller's order, with its MD5s", N);
    json_decref(doc);
    free(text);

    /* written again over fewer files: replaced whole */
    sum.n_files = 1;
    rc = rpt_manifest_write_files(&o, &sum, err, sizeof err);
    text = rc == 0 ? check_md5_file(&sum, &len, "chunks, rewritten") : NULL;
    doc = text ? json_loadb(text, len, 0, NULL) : NULL;
    tap_ok(rc == 0 && json_array_size(json_object_get(doc, "Results")) == 1,
           "chunks: a second write replaces manifest.json (%s)", err);
    json_decref(doc);
    char job_dir[1024];
    snprintf(job_dir, sizeof job_dir, "%s/job-%s", root, JOB_ID);
    DIR *d = opendir(job_dir);
    int entries = 0, others = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        entries++;
        others += strcmp(de->d_name, "manifest.json") != 0 &&
                  strcmp(de->d_name, "manifest.json.md5") != 0;
    }
    if (d)
        closedir(d);
    tap_ok(d && entries == 2 && others == 0,
           "chunks: the job folder holds manifest.json and its .md5, no temporary file");

    /* a key that is not UTF-8 cannot go into JSON: refused, the last manifest.json kept */
    snprintf(sum.files[0].key, sizeof sum.files[0].key, "job-%s/results/bad\xff.csv", JOB_ID);
    size_t len2;
    rc = rpt_manifest_write_files(&o, &sum, err, sizeof err);
    char *after = tap_read_path(sum.manifest_path, &len2);
    tap_ok(rc == -RPT_E_IO && strstr(err, "UTF-8") != NULL,
           "chunks: a key that is not UTF-8 refused (%s)", err);
    tap_ok(text && after && len2 == len && memcmp(after, text, len) == 0,
           "chunks: a refused write leaves the last manifest.json as it was");
    free(after);
    free(text);
    rpt_summary_cleanup(&sum);
}

/* A prefix with "..": the keys keep it, the files stay under the root ("%2E%2E"). */
static void test_manifest_dotdot(void)
{
    char root[512], outside[512], want_path[1024], err[1024] = "";
    snprintf(root, sizeof root, "%s/dotdot", g_tmp);
    snprintf(outside, sizeof outside, "%s/other", g_tmp);
    snprintf(want_path, sizeof want_path, "%s/%%2E%%2E/other/job-j2/manifest.json", root);
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .prefix = "../other",
                  .job_id = "j2"};
    rpt_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.files = calloc(1, sizeof *sum.files);
    int rc = !sum.files || list_file(&sum, &o, 0, 's', err, sizeof err) != 0
                 ? -1
                 : rpt_manifest_write_files(&o, &sum, err, sizeof err);
    tap_ok(rc == 0, "dotdot: written (%s)", err);
    TAP_EQ_STR(sum.manifest_key, "../other/job-j2/manifest.json", "dotdot: manifest key");
    TAP_EQ_STR(sum.manifest_path, want_path, "dotdot: manifest path");
    TAP_EQ_STR(sum.files[0].key, "../other/job-j2/results/" J2_SUCCEEDED_NAME ".csv",
               "dotdot: results key in Results");
    struct stat st;
    tap_ok(rc == 0 && stat(want_path, &st) == 0 && stat(outside, &st) != 0,
           "dotdot: nothing written outside the root");
    rpt_summary_cleanup(&sum);
}

/* The user's own folder: modes as the umask allows, as `cp` would. */
static void test_manifest_user_modes(void)
{
    static const struct {
        unsigned umask, file, dir;
    } cases[] = {{022, 0644, 0755}, {027, 0640, 0750}, {077, 0600, 0700}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char root[512], job_dir[1024], err[1024] = "";
        snprintf(root, sizeof root, "%s/user-%03o", g_tmp, cases[i].umask);
        snprintf(job_dir, sizeof job_dir, "%s/job-%s", root, JOB_ID);
        rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .job_id = JOB_ID,
                      .private_files = 0};
        rpt_summary sum;
        memset(&sum, 0, sizeof sum);
        mode_t old = umask((mode_t)cases[i].umask);
        int rc = rpt_manifest_write_files(&o, &sum, err, sizeof err);
        umask(old);
        unsigned fm = mode_of(sum.manifest_path), mm = mode_of(sum.manifest_md5_path);
        unsigned dm = mode_of(job_dir);
        tap_ok(rc == 0 && fm == cases[i].file && mm == cases[i].file && dm == cases[i].dir,
               "user folder, umask %03o: manifest.json %o, .md5 %o, job folder %o (%s)",
               cases[i].umask, fm, mm, dm, err);
        rpt_summary_cleanup(&sum);
    }
}

static void test_manifest_refused(void)
{
    char err[1024] = "";
    rpt_summary sum;
    memset(&sum, 0, sizeof sum);
    rpt_opts o = {.root_dir = "/proc/no-such-dir/report", .bucket = REPORT_BUCKET,
                  .job_id = "x"};
    int rc = rpt_manifest_write_files(&o, &sum, err, sizeof err);
    tap_ok(rc == -RPT_E_IO && strstr(err, "cannot create directory") != NULL,
           "manifest: unwritable root refused (%s)", err);
    o.root_dir = g_tmp;
    o.job_id = "";
    rc = rpt_manifest_write_files(&o, &sum, err, sizeof err);
    tap_ok(rc == -RPT_E_IO && strstr(err, "job_id") != NULL,
           "manifest: empty job id refused (%s)", err);
    o.job_id = "a/b";
    rc = rpt_manifest_write_files(&o, &sum, err, sizeof err);
    tap_ok(rc == -RPT_E_IO && strstr(err, "'/'") != NULL,
           "manifest: job id with '/' refused (%s)", err);
    char root[512];
    snprintf(root, sizeof root, "%s/not-utf8", g_tmp);
    o = (rpt_opts){.root_dir = root, .bucket = REPORT_BUCKET, .prefix = "r\xc3", .job_id = "x"};
    sum.files = calloc(1, sizeof *sum.files);
    rc = !sum.files || list_file(&sum, &o, 0, 'f', err, sizeof err) != 0
             ? -2
             : rpt_manifest_write_files(&o, &sum, err, sizeof err);
    struct stat st;
    tap_ok(rc == -RPT_E_IO && strstr(err, "UTF-8") != NULL && stat(sum.manifest_path, &st) != 0,
           "manifest: a prefix that is not UTF-8 refused, no manifest.json (%s)", err);
    rpt_summary_cleanup(&sum);
}

static void test_misc(void)
{
    TAP_EQ_STR(rpt_strerror(-RPT_E_UPLOAD), "cannot upload the report", "rpt_strerror");
    TAP_EQ_STR(rpt_strerror(RPT_E_IO), "cannot write the report", "rpt_strerror positive");
    TAP_EQ_STR(rpt_errname(RPT_E_IO), "RPT_E_IO", "rpt_errname");
    TAP_EQ_STR(rpt_errname(-RPT_E_NOMEM), "RPT_E_NOMEM", "rpt_errname negative");
    TAP_EQ_STR(rpt_errname(77), "RPT_E_UNKNOWN", "rpt_errname unknown");

    rpt_summary sum;
    memset(&sum, 0, sizeof sum);
    rpt_summary_cleanup(&sum);
    sum.files = calloc(3, sizeof *sum.files);
    sum.n_files = 3;
    snprintf(sum.manifest_key, sizeof sum.manifest_key, "k");
    rpt_summary_cleanup(&sum);
    tap_ok(sum.files == NULL && sum.n_files == 0 && sum.manifest_key[0] == '\0',
           "rpt_summary_cleanup frees and zeroes; a zeroed summary is fine");
    rpt_summary_cleanup(&sum);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/batchrep-test-report-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    if (load_rows() != 0) {
        tap_ok(0, "rows.tsv loads");
        return tap_done();
    }
    load_golden_md5();
    test_format_golden();
    test_format_speed();
    test_results_content();
    test_results_names();
    test_results_refused();
    for (size_t i = 0; i < sizeof MANIFEST_CASES / sizeof MANIFEST_CASES[0]; i++)
        run_manifest_case(&MANIFEST_CASES[i]);
    test_manifest_chunks();
    test_manifest_dotdot();
    test_manifest_user_modes();
    test_manifest_refused();
    test_misc();
    for (size_t i = 0; i < g_n_rows; i++)
        for (int k = 0; k < 7; k++)
            free(g_rows[i].f[k]);
    rm_rf(g_tmp);
    return tap_done();
}
