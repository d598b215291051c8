/*
 * test_manifest.c — the CSV manifest reader, table-driven from files:
 *   tests/fixtures/manifest/good/NAME.csv   + NAME.expected (one line per entry, below)
 *                                           [+ NAME.fields: JobManifestSpec.Fields, "A,B,C"]
 *   tests/fixtures/manifest/bad/NAME.csv    + NAME.error (the exact message, one line)
 *                                           [+ NAME.fields]
 * Every fixture in those folders is run; adding a case is adding files. Each good fixture is
 * also read back gzip- and zstd-compressed (single and multi member/frame), made here with
 * zlib and zstd. Then: truncated/corrupt compressed files, generated limits (an over-long
 * field, a 1,000,000-row manifest read in bounded memory, checked with getrusage), the ARN
 * parser, Fields names and the error table.
 *
 * .expected line: seq TAB line TAB has_version TAB [bucket] TAB [key as written] TAB
 * [key decoded] TAB [version]; inside [...] bytes below 0x20, 0x7f and '\' are written
 * \xNN / \\, everything else (UTF-8 included) as is. Lines starting with '#' are comments.
 */
#include "manifest/manifest.h"
#include "tests/unit/tap.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static char g_tmp[256];

/* ---- small helpers ------------------------------------------------------------------- */

static const char *src_root(void)
{
    const char *r = getenv("BATCHREP_SRC");
    return r && *r ? r : ".";
}


static int write_path(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir ending in suffix, without the suffix. */
static size_t list_fixtures(const char *dir, const char *suffix, char ***out)
{
    DIR *d = opendir(dir);
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct dirent *de;
    size_t sl = strlen(suffix);
    while (d && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l <= sl || strcmp(de->d_name + l - sl, suffix) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = realloc(names, cap * sizeof *names);
        }
        names[n++] = strndup(de->d_name, l - sl);
    }
    if (d)
        closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Reads NAME.fields (if any) into opts. */
static void load_fields(const char *dir, const char *name, mf_csv_opts *opts)
{
    char path[4096];
    memset(opts, 0, sizeof *opts);
    snprintf(path, sizeof path, "%s/%s.fields", dir, name);
    char *text = tap_read_path(path, NULL);
    if (!text)
        return;
    for (char *tok = text; *tok;) {
        size_t n = strcspn(tok, ",\n");
        char sep = tok[n];
        tok[n] = '\0';
        char *next = sep ? tok + n + 1 : tok + n;
        if (n == 0) {
            tok = next;
            continue;
        }
        int f = mf_field_parse(tok);
        if (f < 0 || opts->n_fields >= MF_MAX_FIELDS)
            tap_diag("bad .fields entry \"%s\" in %s", tok, path);
        tok = next;
        if (f < 0 || opts->n_fields >= MF_MAX_FIELDS)
            continue;
        opts->fields[opts->n_fields++] = (mf_field)f;
    }
    free(text);
}

/* Appends "[escaped]" to b. */
static void sb_esc(s3_buf *b, s3_slice s)
{
    s3_buf_append(b, "[", 1);
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        char tmp[8];
        if (c == '\\')
            s3_buf_append(b, "\\\\", 2);
        else if (c < 0x20 || c == 0x7f)
            s3_buf_append(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "\\x%02X", c));
        else
            s3_buf_append(b, (const char *)&c, 1);
    }
    s3_buf_append(b, "]", 1);
}

static void sb_entry(s3_buf *b, const mf_entry *e)
{
    char num[96];
    s3_buf_append(b, num,
           (size_t)snprintf(num, sizeof num, "%llu\t%llu\t%d\t", (unsigned long long)e->seq,
                            (unsigned long long)e->line, e->has_version));
    sb_esc(b, e->bucket);
    s3_buf_append(b, "\t", 1);
    sb_esc(b, e->key_raw);
    s3_buf_append(b, "\t", 1);
    sb_esc(b, e->key);
    s3_buf_append(b, "\t", 1);
    sb_esc(b, e->version_id);
    s3_buf_append(b, "\n", 1);
}

/* The expected file without its comment lines. */
static char *strip_comments(const char *text)
{
    s3_buf b;
    s3_buf_init(&b, TAP_BUF_MAX);
    s3_buf_append(&b, "", 0); /* ptr is "" */
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (*p != '#')
            s3_buf_append(&b, p, n);
        p += n;
    }
    return b.ptr;
}

/* Prints the first differing line of two texts. */
static void diag_first_diff(const char *got, const char *want)
{
    size_t line = 1;
    const char *g = got, *w = want;
    while (*g && *w && *g == *w) {
        if (*g == '\n')
            line++;
        g++;
        w++;
    }
    const char *gl = g, *wl = w;
    while (gl > got && gl[-1] != '\n')
        gl--;
    while (wl > want && wl[-1] != '\n')
        wl--;
    tap_diag("first difference at line %zu", line);
    tap_diag("  got:  %.*s", (int)strcspn(gl, "\n"), gl);
    tap_diag("  want: %.*s", (int)strcspn(wl, "\n"), wl);
}

/*
 * Reads a whole manifest into text lines. Returns the last mf_next code (0 or -MF_E_*);
 * msg receives the error. Also checks that every slice is NUL-terminated.
 */
static int read_all(const char *path, const char *display, const mf_csv_opts *opts,
                    s3_buf *out, char *msg, size_t msg_len, int *slices_ok)
{
    msg[0] = '\0';
    mf_reader *r = mf_open_csv(path, display, opts, msg, msg_len);
    if (!r)
        return -1000;
    mf_entry e;
    int rc;
    *slices_ok = 1;
    while ((rc = mf_next(r, &e, msg, msg_len)) == 1) {
        sb_entry(out, &e);
        if (e.bucket.ptr[e.bucket.len] || e.key_raw.ptr[e.key_raw.len] ||
            e.key.ptr[e.key.len] || e.version_id.ptr[e.version_id.len])
            *slices_ok = 0;
    }
    if (rc < 0) {
        /* errors are sticky */
        char again[2048];
        int rc2 = mf_next(r, &e, again, sizeof again);
        if (rc2 != rc || strcmp(again, msg) != 0)
            *slices_ok = 0;
    }
    mf_close(r);
    return rc;
}

/* ---- compression helpers ------------------------------------------------------------- */

/* gzip of data in n_members members (split evenly). */
static int gzip_file(const char *path, const char *data, size_t len, int n_members)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t step = n_members > 1 ? len / (size_t)n_members + 1 : len;
    size_t off = 0;
    int rc = 0;
    do {
        size_t n = len - off < step ? len - off : step;
        z_stream z;
        memset(&z, 0, sizeof z);
        if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            rc = -1;
            break;
        }
        z.next_in = (Bytef *)(data + off);
        z.avail_in = (uInt)n;
        unsigned char out[65536];
        int zr;
        do {
            z.next_out = out;
            z.avail_out = sizeof out;
            zr = deflate(&z, Z_FINISH);
            fwrite(out, 1, sizeof out - z.avail_out, f);
        } while (zr == Z_OK);
        deflateEnd(&z);
        if (zr != Z_STREAM_END)
            rc = -1;
        off += n;
    } while (off < len && rc == 0);
    fclose(f);
    return rc;
}

static int zstd_file(const char *path, const char *data, size_t len, int n_frames)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t step = n_frames > 1 ? len / (size_t)n_frames + 1 : len;
    size_t off = 0;
    int rc = 0;
    do {
        size_t n = len - off < step ? len - off : step;
        size_t cap = ZSTD_compressBound(n);
        void *out = malloc(cap);
        size_t z = ZSTD_compress(out, cap, data + off, n, 3);
        if (ZSTD_isError(z))
            rc = -1;
        else
            fwrite(out, 1, z, f);
        free(out);
        off += n;
    } while (off < len && rc == 0);
    fclose(f);
    return rc;
}

/* ---- fixture tables ------------------------------------------------------------------ */

static void test_good_fixtures(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/manifest/good", src_root());
    char **names;
    size_t n = list_fixtures(dir, ".csv", &names);
    tap_ok(n >= 10, "found %zu good manifest fixtures in %s", n, dir);
    for (size_t i = 0; i < n; i++) {
        char path[4200], epath[4200], display[300], msg[2048];
        snprintf(path, sizeof path, "%s/%s.csv", dir, names[i]);
        snprintf(epath, sizeof epath, "%s/%s.expected", dir, names[i]);
        snprintf(display, sizeof display, "%s.csv", names[i]);
        mf_csv_opts opts;
        load_fields(dir, names[i], &opts);
        char *exp_text = tap_read_path(epath, NULL);
        if (!tap_ok(exp_text != NULL, "good/%s: has a .expected file", names[i]))
            continue;
        char *want = strip_comments(exp_text);
        s3_buf got;
        s3_buf_init(&got, TAP_BUF_MAX);
        s3_buf_append(&got, "", 0); /* ptr is "" */
        int slices_ok;
        int rc = read_all(path, display, &opts, &got, msg, sizeof msg, &slices_ok);
        if (!tap_ok(rc == 0, "good/%s: read to the end (rc %d)", names[i], rc))
            tap_diag("%s", msg);
        if (!tap_ok(strcmp(got.ptr, want) == 0, "good/%s: entries match .expected", names[i]))
            diag_first_diff(got.ptr, want);
        tap_ok(slices_ok, "good/%s: slices NUL-terminated", names[i]);

        /* the same bytes compressed: gzip 1 and 3 members, zstd 1 and 3 frames */
        size_t len;
        char *data = tap_read_path(path, &len);
        static const struct {
            const char *ext;
            int zstd, parts;
        } variants[] = {{"gz", 0, 1}, {"gz", 0, 3}, {"zst", 1, 1}, {"zst", 1, 3}};
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            if (len == 0 && variants[v].parts > 1)
                continue;
            char cpath[600];
            snprintf(cpath, sizeof cpath, "%s/%s.%d.csv.%s", g_tmp, names[i],
                     variants[v].parts, variants[v].ext);
            int wrc = variants[v].zstd ? zstd_file(cpath, data, len, variants[v].parts)
                                       : gzip_file(cpath, data, len, variants[v].parts);
            s3_buf cg;
            s3_buf_init(&cg, TAP_BUF_MAX);
            s3_buf_append(&cg, "", 0); /* ptr is "" */
            rc = wrc ? -1 : read_all(cpath, display, &opts, &cg, msg, sizeof msg, &slices_ok);
            if (!tap_ok(rc == 0 && strcmp(cg.ptr, want) == 0, "good/%s as %s (%d part%s)",
                        names[i], variants[v].ext, variants[v].parts,
                        variants[v].parts > 1 ? "s" : "")) {
                tap_diag("rc %d %s", rc, msg);
                diag_first_diff(cg.ptr, want);
            }
            s3_buf_cleanup(&cg);
            unlink(cpath);
        }
        free(data);
        s3_buf_cleanup(&got);
        free(want);
        free(exp_text);
    }
    free_names(names, n);
}

static void test_bad_fixtures(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/manifest/bad", src_root());
    char **names;
    size_t n = list_fixtures(dir, ".csv", &names);
    tap_ok(n >= 15, "found %zu bad manifest fixtures in %s", n, dir);
    for (size_t i = 0; i < n; i++) {
        char path[4200], epath[4200], display[300], msg[2048];
        snprintf(path, sizeof path, "%s/%s.csv", dir, names[i]);
        snprintf(epath, sizeof epath, "%s/%s.error", dir, names[i]);
        snprintf(display, sizeof display, "%s.csv", names[i]);
        mf_csv_opts opts;
        load_fields(dir, names[i], &opts);
        char *want = tap_read_path(epath, NULL);
        if (!tap_ok(want != NULL, "bad/%s: has a .error file", names[i]))
            continue;
        want[strcspn(want, "\n")] = '\0';
        s3_buf got;
        s3_buf_init(&got, TAP_BUF_MAX);
        s3_buf_append(&got, "", 0); /* ptr is "" */
        int sticky;
        int rc = read_all(path, display, &opts, &got, msg, sizeof msg, &sticky);
        tap_ok(rc == -MF_E_INVALID_CONTENT, "bad/%s: MF_E_INVALID_CONTENT (got %s)", names[i],
               rc == -1000 ? "open failure" : mf_errname(rc));
        const char *got_msg = msg;
        TAP_EQ_STR(got_msg, want, names[i]);
        tap_ok(sticky, "bad/%s: the error repeats on the next call", names[i]);

        /* the same error, same line, through gzip */
        size_t len;
        char *data = tap_read_path(path, &len);
        char cpath[600];
        snprintf(cpath, sizeof cpath, "%s/%s.csv.gz", g_tmp, names[i]);
        s3_buf cg;
        s3_buf_init(&cg, TAP_BUF_MAX);
        s3_buf_append(&cg, "", 0); /* ptr is "" */
        rc = gzip_file(cpath, data, len, 1) ? -1
                                            : read_all(cpath, display, &opts, &cg, msg,
                                                       sizeof msg, &sticky);
        tap_ok(rc == -MF_E_INVALID_CONTENT && strcmp(msg, want) == 0,
               "bad/%s as gzip: same message", names[i]);
        unlink(cpath);
        s3_buf_cleanup(&cg);
        free(data);
        s3_buf_cleanup(&got);
        free(want);
    }
    free_names(names, n);
}

/* ---- generated cases ------------------------------------------------------------------ */

static int read_expect_error(const char *path, const char *display, int want_rc,
                             const char *want_substr, uint64_t *out_rows)
{
    char msg[2048] = "";
    mf_reader *r = mf_open_csv(path, display, NULL, msg, sizeof msg);
    if (!r)
        return tap_ok(0, "%s: opens (%s)", display, msg);
    mf_entry e;
    int rc;
    uint64_t rows = 0;
    while ((rc = mf_next(r, &e, msg, sizeof msg)) == 1)
        rows++;
    mf_close(r);
    if (out_rows)
        *out_rows = rows;
    int ok = rc == want_rc && strstr(msg, want_substr) != NULL;
    if (!tap_ok(ok, "%s: %s containing \"%s\"", display, mf_errname(want_rc), want_substr))
        tap_diag("got %s: %s", rc < 0 ? mf_errname(rc) : "end", msg);
    return ok;
}

static void test_compressed_damage(void)
{
    char data[8192];
    size_t len = 0;
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(data + len, sizeof data - len, "bkt,key-%04d\n", i);
    char path[600];

    /* truncated gzip: rows before the cut come out, then the error */
    snprintf(path, sizeof path, "%s/trunc.csv.gz", g_tmp);
    gzip_file(path, data, len, 1);
    size_t glen;
    char *gz = tap_read_path(path, &glen);
    write_path(path, gz, glen - 12); /* drop the trailer and some data */
    read_expect_error(path, "trunc.csv.gz", -MF_E_INVALID_CONTENT,
                      "gzip data ends early (truncated file?)", NULL);
    /* corrupt gzip body */
    gz[glen / 2] ^= 0x55;
    gz[glen / 2 + 1] ^= 0x55;
    write_path(path, gz, glen);
    read_expect_error(path, "corrupt.csv.gz", -MF_E_INVALID_CONTENT, "corrupt.csv.gz:", NULL);
    /* garbage after a complete member */
    gz[glen / 2] ^= 0x55;
    gz[glen / 2 + 1] ^= 0x55;
    char *gz2 = malloc(glen + 4);
    memcpy(gz2, gz, glen);
    memcpy(gz2 + glen, "junk", 4);
    write_path(path, gz2, glen + 4);
    uint64_t rows = 0;
    read_expect_error(path, "junk.csv.gz", -MF_E_INVALID_CONTENT, "gzip data is corrupt",
                      &rows);
    tap_ok(rows == 200, "junk after gzip: the 200 rows before it were read (%llu)",
           (unsigned long long)rows);
    free(gz2);
    free(gz);

    snprintf(path, sizeof path, "%s/trunc.csv.zst", g_tmp);
    zstd_file(path, data, len, 1);
    size_t zlen;
    char *zs = tap_read_path(path, &zlen);
    write_path(path, zs, zlen - 5);
    read_expect_error(path, "trunc.csv.zst", -MF_E_INVALID_CONTENT,
                      "zstd data ends early (truncated file?)", NULL);
    zs[zlen / 2] ^= 0x55;
    write_path(path, zs, zlen);
    read_expect_error(path, "corrupt.csv.zst", -MF_E_INVALID_CONTENT, "zstd data is corrupt",
                      NULL);
    free(zs);
    /* only the magic */
    write_path(path, "\x28\xb5\x2f\xfd", 4);
    read_expect_error(path, "magic-only.zst", -MF_E_INVALID_CONTENT, "zstd data", NULL);
    snprintf(path, sizeof path, "%s/magic-only.gz", g_tmp);
    write_path(path, "\x1f\x8b", 2);
    read_expect_error(path, "magic-only.gz", -MF_E_INVALID_CONTENT,
                      "magic-only.gz:1: gzip data ends early", NULL);
    unlink(path);
    snprintf(path, sizeof path, "%s/trunc.csv.gz", g_tmp);
    unlink(path);
    snprintf(path, sizeof path, "%s/trunc.csv.zst", g_tmp);
    unlink(path);
}

static void test_limits(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/long-field.csv", g_tmp);
    FILE *f = fopen(path, "wb");
    fputs("bkt,short\nbkt,", f);
    for (int i = 0; i < 70000; i++)
        fputc('a' + i % 26, f);
    fputs("\n", f);
    fclose(f);
    read_expect_error(path, "long-field.csv", -MF_E_INVALID_CONTENT,
                      "long-field.csv:2: field Key: longer than 65535 bytes", NULL);

    /* a field of exactly 65535 bytes is accepted (an ignored column: a key or version ID
       that long is refused by S3's own limits below) */
    f = fopen(path, "wb");
    fputs("bkt,k,", f);
    for (int i = 0; i < 65535; i++)
        fputc('i', f);
    fputs("\n", f);
    fclose(f);
    char msg[2048];
    mf_csv_opts ign = {.fields = {MF_FIELD_BUCKET, MF_FIELD_KEY, MF_FIELD_IGNORE}, .n_fields = 3};
    mf_reader *r = mf_open_csv(path, NULL, &ign, msg, sizeof msg);
    mf_entry e;
    int rc = r ? mf_next(r, &e, msg, sizeof msg) : -1;
    tap_ok(rc == 1 && e.key.len == 1, "a 65,535-byte field is accepted");
    mf_close(r);
    unlink(path);

    /* issue 15 item 7: rows of one key with 65,000-byte VersionIds. The first row fails the
       manifest, naming file, line and field, before any other row is read. */
    snprintf(path, sizeof path, "%s/long-vid.csv", g_tmp);
    f = fopen(path, "wb");
    for (int row = 0; row < 3; row++) {
        fputs("bkt,one-key,", f);
        for (int i = 0; i < 65000; i++)
            fputc('v', f);
        fputs("\n", f);
    }
    fclose(f);
    uint64_t rows = 9;
    read_expect_error(path, "long-vid.csv", -MF_E_INVALID_CONTENT,
                      "long-vid.csv:1: field VersionId: \"vvv...\" is 65000 bytes; a version ID "
                      "is at most 1024 bytes", &rows);
    tap_ok(rows == 0, "65,000-byte VersionIds: no row handed out (%llu)",
           (unsigned long long)rows);
    unlink(path);

    /* a quote left open swallows the rest: capped, not read into memory */
    f = fopen(path, "wb");
    fputs("bkt,\"open", f);
    for (int i = 0; i < 200000; i++)
        fputc('x', f);
    fclose(f);
    read_expect_error(path, "open-quote.csv", -MF_E_INVALID_CONTENT,
                      "open-quote.csv:1: field Key: longer than 65535 bytes", NULL);
    unlink(path);

    /* missing file / bad Fields */
    r = mf_open_csv("/nonexistent/manifest.csv", NULL, NULL, msg, sizeof msg);
    tap_ok(r == NULL && strstr(msg, "/nonexistent/manifest.csv: cannot open") != NULL,
           "missing file: NULL and a message naming it (%s)", msg);
    static const struct {
        mf_field f[4];
        size_t n;
        const char *want;
    } bad_fields[] = {
        {{MF_FIELD_BUCKET, MF_FIELD_BUCKET, MF_FIELD_KEY}, 3, "Bucket appears more than once"},
        {{MF_FIELD_BUCKET, MF_FIELD_IGNORE}, 2, "must name a Bucket and a Key column"},
        {{MF_FIELD_KEY, MF_FIELD_VERSION_ID}, 2, "must name a Bucket and a Key column"},
        {{MF_FIELD_BUCKET, MF_FIELD_KEY, (mf_field)9}, 3, "unknown value 9"},
        {{MF_FIELD_BUCKET, MF_FIELD_KEY}, MF_MAX_FIELDS + 1, "at most 16"},
    };
    snprintf(path, sizeof path, "%s//tests/fixtures/manifest/good/aws-example.csv", src_root());
    for (size_t i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
        mf_csv_opts o;
        memset(&o, 0, sizeof o);
        memcpy(o.fields, bad_fields[i].f, sizeof bad_fields[i].f);
        o.n_fields = bad_fields[i].n;
        r = mf_open_csv(path, "m.csv", &o, msg, sizeof msg);
        tap_ok(r == NULL && strstr(msg, bad_fields[i].want) != NULL,
               "Fields case %zu refused: %s", i, msg);
        mf_close(r);
    }
}

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define BIG_ROWS 1000000u
/* Budget of the reader: 2 x 1 MiB + 64 KiB + 256 KiB, plus a zstd window (<= 8 MiB). If
   memory grew with the manifest (~62 MB here), the peak would pass this by far. */
#define BIG_RSS_GROWTH_MAX_KIB (16 * 1024)

static void big_row(FILE *f, unsigned i)
{
    fprintf(f, "amzn-s3-demo-bucket1,photos/2024/%07u/IMG%%20%u.jpg,%032u\n", i, i, i);
}

static void check_big(const char *path, const char *what)
{
    char msg[2048];
    long before = maxrss_kib();
    double t0 = now_s();
    mf_reader *r = mf_open_csv(path, what, NULL, msg, sizeof msg);
    if (!tap_ok(r != NULL, "%s: opens", what))
        return;
    mf_entry e;
    int rc;
    uint64_t rows = 0, bad = 0;
    char want_key[64];
    while ((rc = mf_next(r, &e, msg, sizeof msg)) == 1) {
        if (rows % 99991 == 0) {
            int n = snprintf(want_key, sizeof want_key, "photos/2024/%07llu/IMG %llu.jpg",
                             (unsigned long long)rows, (unsigned long long)rows);
            if (e.seq != rows || e.line != rows + 1 || e.key.len != (size_t)n ||
                memcmp(e.key.ptr, want_key, (size_t)n) != 0)
                bad++;
        }
        rows++;
    }
    double secs = now_s() - t0;
    mf_close(r);
    long growth = maxrss_kib() - before;
    tap_ok(rc == 0 && rows == BIG_ROWS && bad == 0, "%s: %llu rows, sampled entries right",
           what, (unsigned long long)rows);
    tap_ok(growth < BIG_RSS_GROWTH_MAX_KIB,
           "%s: peak RSS grew by %ld KiB while reading (bound %d KiB)", what, growth,
           BIG_RSS_GROWTH_MAX_KIB);
    tap_diag("%s: %.0f rows/s (%.2f s)", what, (double)rows / secs, secs);
}

static void test_big_manifest(void)
{
    char path[600], zpath[600];
    snprintf(path, sizeof path, "%s/big.csv", g_tmp);
    FILE *f = fopen(path, "wb");
    for (unsigned i = 0; i < BIG_ROWS; i++)
        big_row(f, i);
    fclose(f);
    check_big(path, "big.csv (1,000,000 rows)");

    /* the same, zstd-compressed with a streaming compressor (a few MiB of state) */
    snprintf(zpath, sizeof zpath, "%s/big.csv.zst", g_tmp);
    FILE *in = fopen(path, "rb"), *out = fopen(zpath, "wb");
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    static char ibuf[1 << 16], obuf[1 << 16];
    size_t n;
    int last = 0;
    while (!last) {
        n = fread(ibuf, 1, sizeof ibuf, in);
        last = n < sizeof ibuf;
        ZSTD_inBuffer ib = {ibuf, n, 0};
        size_t rem;
        do {
            ZSTD_outBuffer ob = {obuf, sizeof obuf, 0};
            rem = ZSTD_compressStream2(cc, &ob, &ib, last ? ZSTD_e_end : ZSTD_e_continue);
            fwrite(obuf, 1, ob.pos, out);
        } while (last ? rem != 0 : ib.pos < ib.size);
    }
    ZSTD_freeCCtx(cc);
    fclose(in);
    fclose(out);
    unlink(path);
    check_big(zpath, "big.csv.zst (1,000,000 rows)");
    unlink(zpath);
}

/* ---- small API tables ------------------------------------------------------------------ */

static void test_arn(void)
{
    static const struct {
        const char *arn;
        int ok;
        const char *bucket, *key;
    } cases[] = {
        {"arn:aws:s3:::my_manifests/manifest.csv", 1, "my_manifests", "manifest.csv"},
        {"arn:aws:s3:::bucket/key/with/slashes", 1, "bucket", "key/with/slashes"},
        {"arn:aws:s3:::bucket/dir/", 1, "bucket", "dir/"},
        {"arn:aws:s3:::bucket/a%20b+c", 1, "bucket", "a%20b+c"},
        {"arn:aws:s3:::bucket", 1, "bucket", ""},
        {"arn:aws:s3:::bucket/", 1, "bucket", ""},
        {"arn:aws-cn:s3:::cnbucket/k", 1, "cnbucket", "k"},
        {"arn:aws-us-gov:s3:::gov/k", 1, "gov", "k"},
        {"arn:aws-iso-b:s3:::iso/k", 1, "iso", "k"},
        {"arn:aws:s3:us-east-1::bucket/k", 0, NULL, NULL},
        {"arn:aws:s3::123456789012:bucket/k", 0, NULL, NULL},
        {"arn:aws:s3:us-west-2:123456789012:accesspoint/ap/object/k", 0, NULL, NULL},
        {"arn:aws:iam:::bucket/k", 0, NULL, NULL},
        {"arn:azure:s3:::bucket/k", 0, NULL, NULL},
        {"arn:aws-:s3:::bucket/k", 0, NULL, NULL},
        {"arn:AWS:s3:::bucket/k", 0, NULL, NULL},
        {"arn:aws:s3:::", 0, NULL, NULL},
        {"arn:aws:s3:::/key", 0, NULL, NULL},
        {"s3://bucket/key", 0, NULL, NULL},
        {"", 0, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char b[64] = "x", k[64] = "x";
        int rc = mf_parse_s3_arn(cases[i].arn, b, sizeof b, k, sizeof k);
        if (cases[i].ok)
            tap_ok(rc == 0 && strcmp(b, cases[i].bucket) == 0 && strcmp(k, cases[i].key) == 0,
                   "arn \"%s\" -> \"%s\" + \"%s\" (got rc %d, \"%s\" + \"%s\")", cases[i].arn,
                   cases[i].bucket, cases[i].key, rc, b, k);
        else
            tap_ok(rc == -MF_E_INVALID_SPEC, "arn \"%s\" refused (rc %d)", cases[i].arn, rc);
    }
    char b[4], k[4];
    tap_ok(mf_parse_s3_arn("arn:aws:s3:::bucket/k", b, sizeof b, k, sizeof k) != 0,
           "arn: bucket longer than its buffer refused");
    char b2[16];
    tap_ok(mf_parse_s3_arn("arn:aws:s3:::b/longkey", b2, sizeof b2, k, sizeof k) != 0,
           "arn: key longer than its buffer refused");
}

static void test_names(void)
{
    static const struct {
        const char *name;
        int want;
    } cases[] = {{"Bucket", MF_FIELD_BUCKET}, {"Key", MF_FIELD_KEY},
                 {"VersionId", MF_FIELD_VERSION_ID}, {"Ignore", MF_FIELD_IGNORE},
                 {"bucket", -1}, {"VersionID", -1}, {"", -1}, {NULL, -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        tap_ok(mf_field_parse(cases[i].name) == cases[i].want, "mf_field_parse(%s) = %d",
               cases[i].name ? cases[i].name : "NULL", cases[i].want);
    TAP_EQ_STR(mf_strerror(MF_E_INVALID_CONTENT), "InvalidManifestContent", "strerror");
    TAP_EQ_STR(mf_strerror(-MF_E_INVALID_CONTENT), "InvalidManifestContent", "strerror(-x)");
    TAP_EQ_STR(mf_errname(-MF_E_ETAG_MISMATCH), "MF_E_ETAG_MISMATCH", "errname");
    TAP_EQ_STR(mf_errname(999), "MF_E_UNKNOWN", "errname unknown");
    TAP_EQ_STR(mf_strerror(MF_E_OK), "success", "strerror ok");
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/batchrep-test-manifest-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_names();
    test_arn();
    test_good_fixtures();
    test_bad_fixtures();
    test_compressed_damage();
    test_limits();
    test_big_manifest();
    rmdir(g_tmp);
    return tap_done();
}
