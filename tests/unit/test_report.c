/*
 * test_report.c — the completion report, compared byte for byte with golden files under
 * tests/fixtures/report/:
 *   rows.tsv                 input rows, one per line: s|f TAB http TAB bucket TAB key TAB
 *                            version TAB error_code TAB message (escapes \t \n \r \\; \N is a
 *                            NULL string); the first rows are AWS's own report rows
 *   rows.golden.csv          rpt_format_row of every row, concatenated
 *   writer.succeeded.csv     the succeeded / failed results files of a writer fed rows.tsv
 *   writer.failed.csv
 *   manifest.*.json          manifest.json of each writer case, "@DATE@" standing for
 *                            ReportCreationDate (checked separately: ISO-8601, ms, Z)
 * Writer cases (table below) run in a temporary directory: AllTasks with a prefix (with and
 * without a trailing '/'), FailedTasksOnly, no failures and no prefix, no rows at all; then a
 * resume after a simulated crash, a refused resume, a 300,000-row run through many buffer
 * flushes, and the row formatter's rollback and speed.
 */
#include "report/report.h"
#include "tests/unit/tap.h"

#include <errno.h>
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

/* ---- the writer -------------------------------------------------------------------------- */

enum { ROWS_ALL, ROWS_SUCCEEDED, ROWS_NONE };

typedef struct writer_case {
    const char *name;
    const char *prefix;
    rpt_scope scope;
    int rows;
    const char *manifest_golden;
    const char *key_dir; /* [prefix/]job-<id> as it must appear */
} writer_case;

static const writer_case CASES[] = {
    {"all", "reports/2025", RPT_SCOPE_ALL, ROWS_ALL, "manifest.all.json",
     "reports/2025/job-" JOB_ID},
    {"all-trailing-slash", "reports/2025/", RPT_SCOPE_ALL, ROWS_ALL, "manifest.all.json",
     "reports/2025/job-" JOB_ID},
    {"failed-only", "reports/2025", RPT_SCOPE_FAILED_ONLY, ROWS_ALL,
     "manifest.failed-only.json", "reports/2025/job-" JOB_ID},
    {"succeeded-only-no-prefix", NULL, RPT_SCOPE_ALL, ROWS_SUCCEEDED,
     "manifest.succeeded-only-no-prefix.json", "job-" JOB_ID},
    {"empty", "reports/2025", RPT_SCOPE_ALL, ROWS_NONE, "manifest.empty.json",
     "reports/2025/job-" JOB_ID},
};

/* SHA-1 names the writer must use, computed with sha1sum when the fixtures were made. */
#define SUCCEEDED_NAME "50a73b04b2df66cdf059cc19eace8d1ef6eb78f7"
#define FAILED_NAME "11e0da9f3f09bbb5c5e87abaceb8599e7c964b02"

static size_t count_status(int succeeded)
{
    size_t n = 0;
    for (size_t i = 0; i < g_n_rows; i++)
        n += (g_rows[i].f[0][0] == 's') == succeeded;
    return n;
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

static void check_manifest(const rpt_summary *sum, const char *golden_name, const char *name)
{
    char what[256];
    size_t len, glen;
    char *text = tap_read_path(sum->manifest_path, &len);
    char *golden = fixture(golden_name, &glen);
    if (!tap_ok(text && golden, "%s: manifest.json written", name)) {
        free(text);
        free(golden);
        return;
    }
    /* manifest.json.md5: 32 hex + "\n", the MD5 of manifest.json */
    size_t mlen;
    char *md5_text = tap_read_path(sum->manifest_md5_path, &mlen);
    char want_md5[34];
    md5_hex(text, len, want_md5);
    want_md5[32] = '\n';
    want_md5[33] = '\0';
    snprintf(what, sizeof what, "%s: manifest.json.md5", name);
    same_bytes(md5_text, md5_text ? mlen : 0, want_md5, 33, what);
    free(md5_text);

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

static void run_case(const writer_case *c)
{
    char root[512];
    snprintf(root, sizeof root, "%s/%s", g_tmp, c->name);
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .prefix = c->prefix,
                  .job_id = JOB_ID, .scope = c->scope};
    char err[1024] = "";
    rpt_writer *w = rpt_writer_open(&o, err, sizeof err);
    if (!tap_ok(w != NULL, "%s: writer opens (%s)", c->name, err))
        return;
    int bad = 0;
    for (size_t i = 0; i < g_n_rows && c->rows != ROWS_NONE; i++) {
        if (c->rows == ROWS_SUCCEEDED && g_rows[i].f[0][0] != 's')
            continue;
        rpt_row r = make_row(&g_rows[i]);
        bad += rpt_writer_add(w, &r) != 0;
    }
    tap_ok(bad == 0, "%s: rows added", c->name);
    rpt_summary sum;
    int rc = rpt_writer_finish(w, &sum, err, sizeof err);
    if (!tap_ok(rc == 0, "%s: finish (%s)", c->name, err))
        return;

    /* which files are listed */
    int want_succ = c->rows != ROWS_NONE && c->scope == RPT_SCOPE_ALL;
    int want_fail = c->rows == ROWS_ALL;
    tap_ok(sum.n_files == (size_t)(want_succ + want_fail), "%s: %d result file(s) listed",
           c->name, want_succ + want_fail);
    size_t k = 0;
    static const struct {
        const char *status, *name, *golden;
    } kinds[2] = {{"succeeded", SUCCEEDED_NAME, "writer.succeeded.csv"},
                  {"failed", FAILED_NAME, "writer.failed.csv"}};
    for (int s = 0; s < 2; s++) {
        int wanted = s == 0 ? want_succ : want_fail;
        char path[1024], key[512];
        snprintf(key, sizeof key, "%s/results/%s.csv", c->key_dir, kinds[s].name);
        snprintf(path, sizeof path, "%s/%s", root, key);
        struct stat st;
        int exists = stat(path, &st) == 0;
        if (!wanted) {
            /* not listed: absent (FailedTasksOnly) or empty */
            tap_ok(!exists || st.st_size == 0, "%s: %s file absent or empty", c->name,
                   kinds[s].status);
            continue;
        }
        if (!tap_ok(k < sum.n_files, "%s: %s listed", c->name, kinds[s].status))
            continue;
        const rpt_result_file *rf = &sum.files[k++];
        TAP_EQ_STR(rf->status, kinds[s].status, "status");
        TAP_EQ_STR(rf->key, key, "results key");
        TAP_EQ_STR(rf->local_path, path, "results path");
        tap_ok(rf->rows == count_status(s == 0), "%s: %s rows = %llu", c->name,
               kinds[s].status, (unsigned long long)rf->rows);
        size_t glen, flen;
        char *golden = fixture(kinds[s].golden, &glen);
        char *file = tap_read_path(path, &flen);
        char what[256];
        snprintf(what, sizeof what, "%s: %s results vs %s", c->name, kinds[s].status,
                 kinds[s].golden);
        same_bytes(file, file ? flen : 0, golden, glen, what);
        char md5[33];
        md5_hex(golden, glen, md5);
        TAP_EQ_STR(rf->md5_hex, md5, "MD5Checksum");
        free(golden);
        free(file);
    }
    char want_key[512], want_path[1024];
    snprintf(want_key, sizeof want_key, "%s/manifest.json", c->key_dir);
    snprintf(want_path, sizeof want_path, "%s/%s", root, want_key);
    TAP_EQ_STR(sum.manifest_key, want_key, "manifest key");
    TAP_EQ_STR(sum.manifest_path, want_path, "manifest path");
    check_manifest(&sum, c->manifest_golden, c->name);
    rpt_summary_cleanup(&sum);
}

static int add_range(rpt_writer *w, size_t from, size_t to)
{
    int bad = 0;
    for (size_t i = from; i < to && i < g_n_rows; i++) {
        rpt_row r = make_row(&g_rows[i]);
        bad += rpt_writer_add(w, &r) != 0;
    }
    return bad;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_resume(void)
{
    char root[512], succ[1024], fail[1024], err[1024] = "";
    snprintf(root, sizeof root, "%s/resume", g_tmp);
    snprintf(succ, sizeof succ, "%s/reports/2025/job-%s/results/%s.csv", root, JOB_ID,
             SUCCEEDED_NAME);
    snprintf(fail, sizeof fail, "%s/reports/2025/job-%s/results/%s.csv", root, JOB_ID,
             FAILED_NAME);
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .prefix = "reports/2025",
                  .job_id = JOB_ID, .scope = RPT_SCOPE_ALL};
    rpt_writer *w = rpt_writer_open(&o, err, sizeof err);
    if (!tap_ok(w != NULL, "resume: first run opens (%s)", err))
        return;
    uint64_t s1 = 0, f1 = 0, s2 = 0, f2 = 0;
    int bad = add_range(w, 0, 8);
    bad += rpt_writer_sync(w, &s1, &f1) != 0;
    tap_ok(bad == 0 && s1 > 0 && f1 > 0 && file_size(succ) == (off_t)s1 &&
               file_size(fail) == (off_t)f1,
           "resume: sync reports the on-disk sizes (%llu, %llu)", (unsigned long long)s1,
           (unsigned long long)f1);
    /* work after the checkpoint that a crash will throw away */
    bad = add_range(w, 8, 16);
    bad += rpt_writer_sync(w, &s2, &f2) != 0;
    bad += add_range(w, 16, 19);
    tap_ok(bad == 0 && s2 > s1 && f2 > f1, "resume: more rows written after the checkpoint");
    rpt_writer_destroy(w); /* the crash */

    /* a checkpoint claiming more than the file holds is refused */
    rpt_opts o_bad = o;
    o_bad.resume = 1;
    o_bad.resume_succeeded_bytes = s2 + 1000000;
    o_bad.resume_failed_bytes = f1;
    w = rpt_writer_open(&o_bad, err, sizeof err);
    tap_ok(w == NULL && strstr(err, "the checkpoint recorded") != NULL,
           "resume: checkpoint larger than the file refused (%s)", err);
    rpt_writer_destroy(w);

    rpt_opts o2 = o;
    o2.resume = 1;
    o2.resume_succeeded_bytes = s1;
    o2.resume_failed_bytes = f1;
    w = rpt_writer_open(&o2, err, sizeof err);
    if (!tap_ok(w != NULL, "resume: reopens (%s)", err))
        return;
    tap_ok(file_size(succ) == (off_t)s1 && file_size(fail) == (off_t)f1,
           "resume: files cut back to the checkpoint sizes");
    bad = add_range(w, 8, g_n_rows);
    rpt_summary sum;
    int rc = rpt_writer_finish(w, &sum, err, sizeof err);
    if (!tap_ok(bad == 0 && rc == 0 && sum.n_files == 2, "resume: finishes (%s)", err))
        return;
    size_t glen, flen;
    char *golden = fixture("writer.succeeded.csv", &glen);
    char *file = tap_read_path(succ, &flen);
    same_bytes(file, file ? flen : 0, golden, glen, "resume: succeeded results = golden");
    free(golden);
    free(file);
    golden = fixture("writer.failed.csv", &glen);
    file = tap_read_path(fail, &flen);
    same_bytes(file, file ? flen : 0, golden, glen, "resume: failed results = golden");
    free(golden);
    free(file);
    tap_ok(sum.files[0].rows == count_status(1) && sum.files[1].rows == count_status(0),
           "resume: row counts include the rows before the checkpoint (%llu, %llu)",
           (unsigned long long)sum.files[0].rows, (unsigned long long)sum.files[1].rows);
    check_manifest(&sum, "manifest.all.json", "resume");
    rpt_summary_cleanup(&sum);
}

static void test_volume(void)
{
    char root[512], err[1024] = "";
    snprintf(root, sizeof root, "%s/volume", g_tmp);
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .job_id = "volume-job",
                  .scope = RPT_SCOPE_ALL};
    rpt_writer *w = rpt_writer_open(&o, err, sizeof err);
    if (!tap_ok(w != NULL, "volume: opens (%s)", err))
        return;
    const unsigned n = 300000;
    EVP_MD_CTX *ctx[2] = {EVP_MD_CTX_new(), EVP_MD_CTX_new()};
    EVP_DigestInit_ex(ctx[0], EVP_md5(), NULL);
    EVP_DigestInit_ex(ctx[1], EVP_md5(), NULL);
    uint64_t bytes[2] = {0, 0}, rows[2] = {0, 0};
    s3_buf one;
    s3_buf_init(&one, 1 << 16);
    int bad = 0;
    char key[64];
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof key, "dir/%u/key,%u", i % 97, i);
        rpt_row r = {.bucket = s3_slice_cstr("bkt"), .key = s3_slice_cstr(key),
                     .version_id = s3_slice_cstr("v"), .succeeded = i % 7 != 0,
                     .http_status = i % 7 ? 200 : 500, .error_code = i % 7 ? "" : "InternalError",
                     .message = i % 7 ? "success" : "We encountered an internal error. Please try again."};
        s3_buf_reset(&one);
        rpt_format_row(&one, &r);
        int s = r.succeeded ? 0 : 1;
        EVP_DigestUpdate(ctx[s], one.ptr, one.len);
        bytes[s] += one.len;
        rows[s]++;
        bad += rpt_writer_add(w, &r) != 0;
        if (i == n / 2) {
            uint64_t sb, fb;
            bad += rpt_writer_sync(w, &sb, &fb) != 0;
            bad += sb != bytes[0] || fb != bytes[1];
        }
    }
    rpt_summary sum;
    int rc = rpt_writer_finish(w, &sum, err, sizeof err);
    tap_ok(bad == 0 && rc == 0 && sum.n_files == 2, "volume: %u rows written (%s)", n, err);
    for (int s = 0; s < 2 && rc == 0; s++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int ml;
        char hexd[33];
        EVP_DigestFinal_ex(ctx[s], md, &ml);
        for (unsigned i = 0; i < ml; i++)
            snprintf(hexd + 2 * i, 3, "%02x", md[i]);
        tap_ok(file_size(sum.files[s].local_path) == (off_t)bytes[s] &&
                   strcmp(sum.files[s].md5_hex, hexd) == 0 && sum.files[s].rows == rows[s],
               "volume: %s file: %llu bytes, %llu rows, MD5 of the rows in order",
               sum.files[s].status, (unsigned long long)bytes[s], (unsigned long long)rows[s]);
    }
    EVP_MD_CTX_free(ctx[0]);
    EVP_MD_CTX_free(ctx[1]);
    s3_buf_cleanup(&one);
    rpt_summary_cleanup(&sum);
}

/* A job of several chunks (shards): each chunk writes its own two files, chunk 0 under the
   names a job of one chunk has; manifest.json lists every file that has rows, chunk by chunk,
   succeeded first; a chunk with no rows at all lists nothing. */
static void test_chunks(void)
{
    char root[512], err[1024] = "";
    snprintf(root, sizeof root, "%s/chunks", g_tmp);
    rpt_opts o = {.root_dir = root, .bucket = REPORT_BUCKET, .job_id = JOB_ID,
                  .scope = RPT_SCOPE_ALL};
    int bad = 0;
    for (uint32_t c = 0; c < 3; c++) {
        o.chunk = c;
        rpt_writer *w = rpt_writer_open(&o, err, sizeof err);
        if (!w) {
            bad++;
            continue;
        }
        if (c != 1) /* chunk 1 stays empty */
            bad += add_range(w, c * 4, c * 4 + 4);
        bad += rpt_writer_close(w, err, sizeof err) != 0;
    }
    rpt_summary sum;
    int rc = rpt_manifest_write(&o, 3, &sum, err, sizeof err);
    if (!tap_ok(bad == 0 && rc == 0, "chunks: 3 writers closed, manifest written (%s)", err))
        return;
    uint64_t rows = 0;
    int order_ok = 1;
    for (size_t i = 0; i < sum.n_files; i++) {
        rows += sum.files[i].rows;
        order_ok &= i == 0 || strcmp(sum.files[i].key, sum.files[i - 1].key) != 0;
    }
    tap_ok(rows == 8 && order_ok, "chunks: the listed files hold the 8 rows once (%llu)",
           (unsigned long long)rows);
    tap_ok(sum.n_files >= 2 && strstr(sum.files[0].key, sum.files[0].status[0] == 's'
                                                            ? SUCCEEDED_NAME
                                                            : FAILED_NAME) != NULL,
           "chunks: chunk 0 keeps the one-chunk names (%s)", sum.n_files ? sum.files[0].key : "");
    int chunk2 = 0;
    for (size_t i = 0; i < sum.n_files; i++)
        chunk2 += strstr(sum.files[i].key, SUCCEEDED_NAME) == NULL &&
                  strstr(sum.files[i].key, FAILED_NAME) == NULL;
    tap_ok(chunk2 >= 1 && chunk2 + 2 >= (int)sum.n_files,
           "chunks: chunk 2's files have names of their own, chunk 1 lists none (%zu files)",
           sum.n_files);
    rpt_summary_cleanup(&sum);
}

static void test_misc(void)
{
    char err[512] = "";
    rpt_writer_destroy(NULL);
    tap_ok(1, "rpt_writer_destroy(NULL) is a no-op");
    rpt_opts o = {.root_dir = g_tmp, .bucket = REPORT_BUCKET, .job_id = ""};
    tap_ok(rpt_writer_open(&o, err, sizeof err) == NULL && strstr(err, "job_id") != NULL,
           "empty job id refused (%s)", err);
    o.job_id = "a/b";
    tap_ok(rpt_writer_open(&o, err, sizeof err) == NULL && strstr(err, "'/'") != NULL,
           "job id with '/' refused (%s)", err);
    o.job_id = "x";
    o.root_dir = "/proc/no-such-dir/report";
    tap_ok(rpt_writer_open(&o, err, sizeof err) == NULL && strstr(err, "cannot create") != NULL,
           "unwritable root refused (%s)", err);
    TAP_EQ_STR(rpt_strerror(-RPT_E_UPLOAD), "cannot upload the report", "rpt_strerror");
    TAP_EQ_STR(rpt_errname(RPT_E_IO), "RPT_E_IO", "rpt_errname");
    TAP_EQ_STR(rpt_errname(77), "RPT_E_UNKNOWN", "rpt_errname unknown");

    /* FailedTasksOnly: succeeded rows are accepted (counted) but never written */
    char root[512];
    snprintf(root, sizeof root, "%s/failed-only-2", g_tmp);
    rpt_opts fo = {.root_dir = root, .bucket = REPORT_BUCKET, .job_id = "j2",
                   .scope = RPT_SCOPE_FAILED_ONLY};
    rpt_writer *w = rpt_writer_open(&fo, err, sizeof err);
    rpt_row r = {.bucket = s3_slice_cstr("b"), .key = s3_slice_cstr("k"), .succeeded = 1,
                 .http_status = 200, .message = "success"};
    uint64_t sb = 9, fb = 9;
    tap_ok(w && rpt_writer_add(w, &r) == 0 && rpt_writer_sync(w, &sb, &fb) == 0 && sb == 0 &&
               fb == 0,
           "FailedTasksOnly: a succeeded row is accepted and writes nothing");
    rpt_writer_destroy(w);
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
    test_format_golden();
    test_format_speed();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        run_case(&CASES[i]);
    test_resume();
    test_volume();
    test_chunks();
    test_misc();
    for (size_t i = 0; i < g_n_rows; i++)
        for (int k = 0; k < 7; k++)
            free(g_rows[i].f[k]);
    rm_rf(g_tmp);
    return tap_done();
}
