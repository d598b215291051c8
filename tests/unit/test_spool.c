/*
 * test_spool.c — Preparing's spool (run/spool.c): a manifest sorted by (bucket, decoded
 * key, manifest position) into shards of whole keys, in bounded memory, and read back.
 *
 *   tests/fixtures/spool/keys.csv       a shuffled CSV manifest: three buckets ("src" and
 *                                       "src-b" test shorter-first), keys that differ only by
 *                                       escapes (a%2Bb and a+b are one key, "a+b"; a%20b is
 *                                       "a b"), quotes, commas, UTF-8, six versions of dup/k
 *   tests/fixtures/spool/keys.expected  its spool, one line a row (format in its comments)
 * Every other manifest is made here (a seeded PRNG) or is tests/fixtures/inventory/quoted-full
 * (Inventory facts). The reference order of a manifest is computed here from mf_next's rows
 * with qsort, and the spool must equal it row for row, every field.
 * Cases: sort memory and shard sizes (in memory, several runs, more runs than one merge
 * takes), Inventory facts, an empty manifest, a reader error, a write error (RLIMIT_FSIZE,
 * in a child), stale files of an interrupted build, modes, damaged shards (truncated,
 * flipped bytes, garbled records, row counts) and damaged index.json files.
 */
#include "run/run_int.h"
#include "tests/unit/tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#define MERGE_FAN_IN 128 /* spool.c's FAN_IN: a manifest with more runs merges in passes */

static char g_tmp[256];

static const char *src_root(void)
{
    const char *r = getenv("BATCHREP_SRC");
    return r && *r ? r : ".";
}

static void path_in(char *out, size_t cap, const char *name)
{
    if ((size_t)snprintf(out, cap, "%s/%s", g_tmp, name) >= cap)
        out[0] = '\0';
}

static int write_path(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void sb_fmt(s3_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(s3_buf *b, const char *fmt, ...)
{
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        s3_buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* One row as a dump line after its seq: line, has_version, bucket, key as written, key,
   version [, every fact]. */
static void entry_text(s3_buf *b, const mf_entry *e, int facts)
{
    sb_fmt(b, "%llu\t%d\t%.*s\t%.*s\t%.*s\t%.*s", (unsigned long long)e->line, e->has_version,
           (int)e->bucket.len, e->bucket.ptr, (int)e->key_raw.len, e->key_raw.ptr,
           (int)e->key.len, e->key.ptr, (int)e->version_id.len, e->version_id.ptr);
    if (facts) {
        const mf_facts *f = &e->facts;
        sb_fmt(b, "\t%u\t%d\t%d\t%lld\t%lld\t%s\t%s\t%.*s\t%s\t%s\t%s\t%s\t%d\t%.*s", f->known,
               f->is_delete_marker, f->is_latest, (long long)f->size,
               (long long)f->last_modified_ms, f->storage_class, f->replication_status,
               (int)f->etag.len, f->etag.ptr ? f->etag.ptr : "", f->encryption, f->lock_mode,
               f->lock_until, f->legal_hold, f->bucket_key, (int)f->acl.len,
               f->acl.ptr ? f->acl.ptr : "");
    }
}

/* ---- the reference: mf_next's rows sorted here ------------------------------------------ */

typedef struct ref_row {
    char *bucket, *key, *text;
    size_t blen, klen;
    unsigned long long seq;
} ref_row;

static int bytes_cmp(const char *a, size_t na, const char *b, size_t nb)
{
    size_t m = na < nb ? na : nb;
    int c = m ? memcmp(a, b, m) : 0;
    return c ? c : (na > nb) - (na < nb);
}

static int ref_cmp(const void *pa, const void *pb)
{
    const ref_row *a = pa, *b = pb;
    int c = bytes_cmp(a->bucket, a->blen, b->bucket, b->blen);
    if (!c)
        c = bytes_cmp(a->key, a->klen, b->key, b->klen);
    return c ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* Every row of r, in the spool's order, as "seq TAB text" lines into out. The number of
   rows, or -1 (msg says why). */
static long reference(mf_reader *r, int facts, s3_buf *out, char *msg, size_t cap)
{
    ref_row *rows = NULL;
    size_t n = 0, rows_cap = 0;
    mf_entry e;
    int rc;
    while ((rc = mf_next(r, &e, msg, cap)) == 1) {
        if (n == rows_cap) {
            rows_cap = rows_cap ? rows_cap * 2 : 256;
            rows = realloc(rows, rows_cap * sizeof *rows);
        }
        s3_buf t;
        s3_buf_init(&t, TAP_BUF_MAX);
        entry_text(&t, &e, facts);
        rows[n] = (ref_row){dup_bytes(e.bucket.ptr, e.bucket.len), dup_bytes(e.key.ptr, e.key.len),
                            dup_bytes(t.ptr, t.len), e.bucket.len, e.key.len,
                            (unsigned long long)e.seq};
        s3_buf_cleanup(&t);
        n++;
    }
    if (n)
        qsort(rows, n, sizeof *rows, ref_cmp);
    for (size_t i = 0; i < n; i++) {
        sb_fmt(out, "%zu\t%s\n", i, rows[i].text);
        free(rows[i].bucket);
        free(rows[i].key);
        free(rows[i].text);
    }
    free(rows);
    return rc < 0 ? -1 : (long)n;
}

static long reference_csv(const char *csv, s3_buf *out)
{
    char msg[1024];
    mf_csv_opts o = {.n_fields = 0};
    mf_reader *r = mf_open_csv(csv, NULL, &o, msg, sizeof msg);
    if (!r)
        return -1;
    long n = reference(r, 0, out, msg, sizeof msg);
    mf_close(r);
    return n;
}

/* ---- building and reading a spool -------------------------------------------------------- */

static int build_csv(const char *csv, const char *dir, uint64_t shard_rows, size_t sort_mem,
                     run__spool_index *idx, int *mf_rc, char *msg, size_t cap)
{
    mf_csv_opts o = {.n_fields = 0};
    mf_reader *r = mf_open_csv(csv, NULL, &o, msg, cap);
    if (!r) {
        memset(idx, 0, sizeof *idx);
        return -2;
    }
    run__spool_opts so = {.dir = dir, .shard_rows = shard_rows, .sort_mem_bytes = sort_mem};
    int rc = run__spool_build(r, &so, idx, mf_rc, msg, cap);
    mf_close(r);
    return rc;
}

/* Reads every shard of idx into dump ("spool seq TAB text" lines) and checks what the
   shards promise: rows numbered from 0 without a gap, each shard's counts, no key in two
   shards, and a shard cut at the first key boundary once it holds shard_rows rows. Writes
   the shard sizes ("3,3,6") into sizes. Returns the number of problems (each tap_diag'd). */
static int read_spool(const char *dir, const run__spool_index *idx, uint64_t shard_rows,
                      int facts, s3_buf *dump, char *sizes, size_t sizes_cap)
{
    int bad = 0;
    uint64_t pos = 0, keys = 0;
    char prev[4096] = "";
    size_t sl = 0;
    sizes[0] = '\0';
    for (size_t i = 0; i < idx->n_shards; i++) {
        const run__shard_info *sh = &idx->shards[i];
        char msg[1024];
        run__spool_reader *r = run__spool_open(dir, sh, msg, sizeof msg);
        if (!r) {
            tap_diag("open %s: %s", sh->file, msg);
            return bad + 1;
        }
        if (sh->first_seq != pos) {
            tap_diag("%s: first_seq %llu, want %llu", sh->file,
                     (unsigned long long)sh->first_seq, (unsigned long long)pos);
            bad++;
        }
        mf_entry e;
        uint64_t n = 0, shard_keys = 0;
        int rc;
        while ((rc = run__spool_next(r, &e, msg, sizeof msg)) == 1) {
            char cur[4096];
            snprintf(cur, sizeof cur, "%.*s\t%.*s", (int)e.bucket.len, e.bucket.ptr,
                     (int)e.key.len, e.key.ptr);
            int new_key = strcmp(cur, prev) != 0;
            if (!new_key && n == 0) {
                tap_diag("%s: starts inside the key of the shard before (%s)", sh->file, cur);
                bad++;
            }
            if (new_key && n > 0 && n >= shard_rows) {
                tap_diag("%s: a key starts at its row %llu, the shard should have been cut",
                         sh->file, (unsigned long long)n);
                bad++;
            }
            if (new_key) {
                shard_keys++;
                snprintf(prev, sizeof prev, "%s", cur);
            }
            if (e.seq != pos || e.bucket.ptr[e.bucket.len] || e.key.ptr[e.key.len] ||
                e.key_raw.ptr[e.key_raw.len] || e.version_id.ptr[e.version_id.len]) {
                tap_diag("%s: row seq %llu, want %llu (or a slice without its NUL)", sh->file,
                         (unsigned long long)e.seq, (unsigned long long)pos);
                bad++;
            }
            sb_fmt(dump, "%llu\t", (unsigned long long)e.seq);
            entry_text(dump, &e, facts);
            s3_buf_append(dump, "\n", 1);
            pos++;
            n++;
        }
        if (rc != 0) {
            tap_diag("%s: %s", sh->file, msg);
            bad++;
        }
        if (n != sh->n_rows || shard_keys != sh->n_keys) {
            tap_diag("%s: %llu rows %llu keys, index says %llu %llu", sh->file,
                     (unsigned long long)n, (unsigned long long)shard_keys,
                     (unsigned long long)sh->n_rows, (unsigned long long)sh->n_keys);
            bad++;
        }
        keys += shard_keys;
        sl += (size_t)snprintf(sizes + sl, sl < sizes_cap ? sizes_cap - sl : 0, "%s%llu",
                               i ? "," : "", (unsigned long long)n);
        if (sl >= sizes_cap)
            sl = sizes_cap - 1;
        run__spool_close(r);
    }
    if (pos != idx->n_rows || keys != idx->n_keys) {
        tap_diag("spool: %llu rows %llu keys, index says %llu %llu", (unsigned long long)pos,
                 (unsigned long long)keys, (unsigned long long)idx->n_rows,
                 (unsigned long long)idx->n_keys);
        bad++;
    }
    return bad;
}

static int same_index(const run__spool_index *a, const run__spool_index *b)
{
    if (a->n_rows != b->n_rows || a->n_keys != b->n_keys || a->spool_bytes != b->spool_bytes ||
        strcmp(a->first_bucket, b->first_bucket) != 0 || a->n_shards != b->n_shards)
        return 0;
    for (size_t i = 0; i < a->n_shards; i++) {
        const run__shard_info *x = &a->shards[i], *y = &b->shards[i];
        if (x->first_seq != y->first_seq || x->n_rows != y->n_rows || x->n_keys != y->n_keys ||
            x->bytes != y->bytes || strcmp(x->file, y->file) != 0)
            return 0;
    }
    return 1;
}

/* Names in dir, sorted, joined by spaces. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *dir, char *out, size_t cap)
{
    char *names[4096];
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL && n < 4096)
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    if (d)
        closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    size_t l = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (l < cap)
            l += (size_t)snprintf(out + l, cap - l, "%s%s", i ? " " : "", names[i]);
        free(names[i]);
    }
}

/* "run-* or shard-* or index.json present" */
static int has_spool_files(const char *dir)
{
    char names[65536];
    list_dir(dir, names, sizeof names);
    return strstr(names, "run-") || strstr(names, "shard-") || strstr(names, "index.json");
}

/* A shuffled manifest of n_keys keys with 1-5 versions each (some keys with escapes);
   bad_line > 0 writes a row with one column there. Returns the rows written. */
static long gen_csv(const char *path, unsigned n_keys, unsigned seed, long bad_line)
{
    unsigned s = seed;
    size_t cap = (size_t)n_keys * 5, n = 0;
    unsigned *row = malloc(cap * sizeof *row);
    for (unsigned k = 0; k < n_keys; k++) {
        unsigned v = 1 + (unsigned)(rand_r(&s) % 5);
        for (unsigned j = 0; j < v; j++)
            row[n++] = k << 3 | j;
    }
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rand_r(&s) % i;
        unsigned t = row[i - 1];
        row[i - 1] = row[j];
        row[j] = t;
    }
    FILE *f = fopen(path, "w");
    for (size_t i = 0; f && i < n; i++) {
        unsigned k = row[i] >> 3, v = row[i] & 7;
        if ((long)i + 1 == bad_line)
            fprintf(f, "only-one-column\n");
        else if (k % 7 == 3)
            fprintf(f, "bkt,dir%%2F%u/caf%%C3%%A9+%u,v%u-%u\n", k % 13, k, k, v);
        else
            fprintf(f, "bkt,data/part-%03u/file-%06u.parquet,v%u-%u\n", k % 101, k, k, v);
    }
    if (f)
        fclose(f);
    free(row);
    return f ? (long)n : -1;
}

/* ---- cases ------------------------------------------------------------------------------- */

static void test_fixture(void)
{
    static const struct {
        const char *name;
        uint64_t shard_rows;
        size_t sort_mem;
        int runs;           /* 1: the build must spill runs */
        const char *shards; /* rows of each shard */
    } cases[] = {
        {"in memory, default shards", 0, 0, 0, "20"},
        {"in memory, 3-row shards", 3, 0, 0, "5,3,6,4,2"},
        {"in memory, 1-row shards (a shard a key)", 1, 0, 0, "1,1,3,1,1,1,6,2,2,1,1"},
        {"1 KiB runs, 3-row shards", 3, 1024, 1, "5,3,6,4,2"},
        {"1 KiB runs, default shards", 0, 1024, 1, "20"},
    };
    char csv[4200], dir[300];
    snprintf(csv, sizeof csv, "%s/tests/fixtures/spool/keys.csv", src_root());
    path_in(dir, sizeof dir, "fixture-spool");
    char *want_raw = tap_read_fixture("tests/fixtures/spool/keys.expected", NULL);
    if (!tap_ok(want_raw != NULL, "fixture keys.expected"))
        return;
    s3_buf want;
    s3_buf_init(&want, TAP_BUF_MAX);
    for (char *line = want_raw, *nl; *line; line = nl + 1) { /* drop the comment lines */
        nl = strchr(line, '\n');
        if (!nl)
            nl = line + strlen(line) - 1;
        if (line[0] != '#')
            s3_buf_append(&want, line, (size_t)(nl - line) + 1);
    }
    free(want_raw);
    s3_buf ref;
    s3_buf_init(&ref, TAP_BUF_MAX);
    long n = reference_csv(csv, &ref);
    tap_ok(n == 20 && ref.ptr && strcmp(ref.ptr, want.ptr) == 0,
           "keys.csv: the qsort reference equals keys.expected (%ld rows)", n);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run__spool_index idx;
        char msg[1024] = "";
        int mf_rc = 99;
        int rc = build_csv(csv, dir, cases[i].shard_rows, cases[i].sort_mem, &idx, &mf_rc, msg,
                           sizeof msg);
        if (!tap_ok(rc == 0 && mf_rc == 0, "keys.csv, %s: built (rc %d: %s)", cases[i].name, rc,
                    msg))
            continue;
        tap_ok(idx.n_rows == 20 && idx.n_keys == 11 && strcmp(idx.first_bucket, "src") == 0,
               "keys.csv, %s: 20 rows, 11 keys, first bucket \"src\" (the first row's, not "
               "the sorted first) (%llu, %llu, \"%s\")",
               cases[i].name, (unsigned long long)idx.n_rows, (unsigned long long)idx.n_keys,
               idx.first_bucket);
        tap_ok(cases[i].runs ? idx.n_runs > 1 : idx.n_runs == 0,
               "keys.csv, %s: %s (%llu runs)", cases[i].name,
               cases[i].runs ? "several sorted runs" : "sorted in memory, no run",
               (unsigned long long)idx.n_runs);
        s3_buf dump;
        s3_buf_init(&dump, TAP_BUF_MAX);
        char sizes[256];
        int bad = read_spool(dir, &idx, cases[i].shard_rows ? cases[i].shard_rows
                                                             : RUN__SHARD_ROWS_DEFAULT,
                             0, &dump, sizes, sizeof sizes);
        int same = dump.ptr && strcmp(dump.ptr, want.ptr) == 0;
        tap_ok(bad == 0 && same,
               "keys.csv, %s: every row once, grouped by key, manifest order within a key, "
               "seq = spool position, line and key as written kept", cases[i].name);
        if (!same)
            tap_diag("got:\n%s", dump.ptr ? dump.ptr : "");
        tap_ok(strcmp(sizes, cases[i].shards) == 0,
               "keys.csv, %s: shard sizes %s, a key never split (got %s)", cases[i].name,
               cases[i].shards, sizes);
        run__spool_index back;
        char lmsg[1024] = "";
        int lrc = run__spool_index_load(dir, &back, lmsg, sizeof lmsg);
        tap_ok(lrc == 0 && same_index(&idx, &back),
               "keys.csv, %s: index.json loads back as built (rc %d %s)", cases[i].name, lrc,
               lmsg);
        run__spool_index_cleanup(&back);
        s3_buf_cleanup(&dump);
        run__spool_index_cleanup(&idx);
    }
    s3_buf_cleanup(&ref);
    s3_buf_cleanup(&want);
}

/* Many runs (more than one merge takes) give the same spool as sorting in memory. */
static void test_runs(void)
{
    char csv[300], dir_a[300], dir_b[300];
    path_in(csv, sizeof csv, "gen.csv");
    path_in(dir_a, sizeof dir_a, "gen-mem");
    path_in(dir_b, sizeof dir_b, "gen-runs");
    long rows = gen_csv(csv, 4000, 7, 0);
    s3_buf ref;
    s3_buf_init(&ref, TAP_BUF_MAX);
    long n = reference_csv(csv, &ref);
    tap_ok(rows > 8000 && n == rows, "generated manifest: %ld rows", rows);
    const struct {
        const char *dir;
        uint64_t shard_rows;
        size_t sort_mem;
    } cases[] = {{dir_a, 0, 0}, {dir_b, 50, 4096}, {dir_b, 1, 4096}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run__spool_index idx;
        char msg[1024] = "";
        int mf_rc = 0;
        int rc = build_csv(csv, cases[i].dir, cases[i].shard_rows, cases[i].sort_mem, &idx,
                           &mf_rc, msg, sizeof msg);
        char what[64];
        snprintf(what, sizeof what, "%s sort memory, %s-row shards",
                 cases[i].sort_mem ? "4 KiB" : "16 MiB",
                 cases[i].shard_rows == 50 ? "50" : cases[i].shard_rows == 1 ? "1" : "100,000");
        if (!tap_ok(rc == 0, "generated, %s: built (%s)", what, msg))
            continue;
        if (cases[i].sort_mem)
            tap_ok(idx.n_runs > MERGE_FAN_IN,
                   "4 KiB of sort memory: %llu runs, more than a merge takes (%d): merged in "
                   "passes", (unsigned long long)idx.n_runs, MERGE_FAN_IN);
        else
            tap_ok(idx.n_runs == 0 && idx.n_shards == 1, "16 MiB: sorted in memory, one shard");
        s3_buf dump;
        s3_buf_init(&dump, TAP_BUF_MAX);
        char sizes[65536];
        int bad = read_spool(cases[i].dir, &idx,
                             cases[i].shard_rows ? cases[i].shard_rows : RUN__SHARD_ROWS_DEFAULT,
                             0, &dump, sizes, sizeof sizes);
        tap_ok(bad == 0 && dump.ptr && ref.ptr && strcmp(dump.ptr, ref.ptr) == 0,
               "generated, %s: the spool equals the reference row for row (%zu shards, %llu "
               "keys)", what, idx.n_shards, (unsigned long long)idx.n_keys);
        char names[65536];
        list_dir(cases[i].dir, names, sizeof names);
        tap_ok(strstr(names, "run-") == NULL, "generated: no run file left");
        s3_buf_cleanup(&dump);
        run__spool_index_cleanup(&idx);
    }
    s3_buf_cleanup(&ref);
}

static void test_inventory(void)
{
    char path[4200], dir[300];
    snprintf(path, sizeof path, "%s/tests/fixtures/inventory/", src_root());
    char *rel = tap_read_fixture("tests/fixtures/inventory/quoted-full.path", NULL);
    if (!tap_ok(rel != NULL, "fixture inventory/quoted-full.path"))
        return;
    rel[strcspn(rel, "\n")] = '\0';
    strncat(path, rel, sizeof path - strlen(path) - 1);
    free(rel);
    path_in(dir, sizeof dir, "inventory-spool");
    mf_spec spec = {.format = MF_FORMAT_INVENTORY, .path = path, .display_name = "quoted-full"};
    char msg[1024] = "";
    int orc = 0;
    s3_buf ref;
    s3_buf_init(&ref, TAP_BUF_MAX);
    mf_reader *r = mf_open(&spec, &orc, msg, sizeof msg);
    long n = r ? reference(r, 1, &ref, msg, sizeof msg) : -1;
    mf_close(r);
    tap_ok(n == 4 && ref.ptr && strstr(ref.ptr, "STANDARD_IA"),
           "quoted-full: the reference has 4 rows with facts (%s)", msg);
    for (int shard_rows = 1; shard_rows <= 2; shard_rows++) {
        r = mf_open(&spec, &orc, msg, sizeof msg);
        run__spool_opts so = {.dir = dir, .shard_rows = (uint64_t)shard_rows};
        run__spool_index idx;
        int mf_rc = 0;
        int rc = r ? run__spool_build(r, &so, &idx, &mf_rc, msg, sizeof msg) : -1;
        mf_close(r);
        if (!tap_ok(rc == 0, "quoted-full, %d-row shards: built (%s)", shard_rows, msg))
            continue;
        s3_buf dump;
        s3_buf_init(&dump, TAP_BUF_MAX);
        char sizes[256];
        int bad = read_spool(dir, &idx, (uint64_t)shard_rows, 1, &dump, sizes, sizeof sizes);
        int same = dump.ptr && ref.ptr && strcmp(dump.ptr, ref.ptr) == 0;
        tap_ok(bad == 0 && same,
               "quoted-full, %d-row shards: every fact survives the spool (ETag, storage "
               "class, delete marker, latest, size, time; lines of two data files)",
               shard_rows);
        if (!same)
            tap_diag("got:\n%swant:\n%s", dump.ptr ? dump.ptr : "", ref.ptr ? ref.ptr : "");
        s3_buf_cleanup(&dump);
        run__spool_index_cleanup(&idx);
    }
    s3_buf_cleanup(&ref);
}

static void test_empty(void)
{
    char csv[300], dir[300];
    path_in(csv, sizeof csv, "empty.csv");
    path_in(dir, sizeof dir, "empty-spool");
    write_path(csv, "", 0);
    run__spool_index idx, back;
    char msg[1024] = "";
    int mf_rc = 0;
    int rc = build_csv(csv, dir, 0, 0, &idx, &mf_rc, msg, sizeof msg);
    tap_ok(rc == 0 && idx.n_rows == 0 && idx.n_shards == 0 && idx.first_bucket[0] == '\0',
           "an empty manifest: 0 rows, 0 shards (rc %d %s)", rc, msg);
    int lrc = run__spool_index_load(dir, &back, msg, sizeof msg);
    tap_ok(lrc == 0 && back.n_rows == 0 && back.n_shards == 0,
           "an empty manifest: its index.json loads (rc %d %s)", lrc, lrc ? msg : "");
    run__spool_index_cleanup(&idx);
    run__spool_index_cleanup(&back);
}

/* A reader error mid-way (runs already spilled): its message as it gave it, no index. */
static void test_reader_error(void)
{
    char csv[300], dir[300];
    path_in(csv, sizeof csv, "bad.csv");
    path_in(dir, sizeof dir, "bad-spool");
    gen_csv(csv, 1500, 11, 2500);
    char want[1024] = "";
    s3_buf ref;
    s3_buf_init(&ref, TAP_BUF_MAX);
    mf_csv_opts o = {.n_fields = 0};
    mf_reader *r = mf_open_csv(csv, NULL, &o, want, sizeof want);
    long n = r ? reference(r, 0, &ref, want, sizeof want) : 0;
    mf_close(r);
    s3_buf_cleanup(&ref);
    tap_ok(n < 0 && strstr(want, ":2500:") != NULL, "bad.csv: mf_next fails at line 2500 (%s)",
           want);
    run__spool_index idx;
    char msg[1024] = "";
    int mf_rc = 0;
    int rc = build_csv(csv, dir, 0, 4096, &idx, &mf_rc, msg, sizeof msg);
    tap_ok(rc == -1 && mf_rc == -MF_E_INVALID_CONTENT && strcmp(msg, want) == 0,
           "a reader error: -1, its code and its message unchanged (rc %d, %d, \"%s\")", rc,
           mf_rc, msg);
    tap_ok(!has_spool_files(dir), "a reader error: no index.json, no run or shard left");
}

/* A write error (the file size limit, in a child so the limit stays there). */
static void test_write_error(void)
{
    char csv[300], dir[300];
    path_in(csv, sizeof csv, "gen.csv");
    path_in(dir, sizeof dir, "full-spool");
    int fds[2];
    if (!tap_ok(pipe(fds) == 0, "pipe"))
        return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl;
        getrlimit(RLIMIT_FSIZE, &rl);
        rl.rlim_cur = 16 << 10;
        setrlimit(RLIMIT_FSIZE, &rl);
        run__spool_index idx;
        char msg[1024] = "";
        int mf_rc = 0;
        int rc = build_csv(csv, dir, 0, 0, &idx, &mf_rc, msg, sizeof msg);
        char out[1200];
        int len = snprintf(out, sizeof out, "%d %d %s", rc, mf_rc, msg);
        ssize_t w = write(fds[1], out, (size_t)len < sizeof out ? (size_t)len : sizeof out - 1);
        _exit(w > 0 ? 0 : 1);
    }
    close(fds[1]);
    char got[1200] = "";
    ssize_t k = read(fds[0], got, sizeof got - 1);
    close(fds[0]);
    waitpid(pid, NULL, 0);
    got[k > 0 ? k : 0] = '\0';
    int rc = 0, mf_rc = 0;
    sscanf(got, "%d %d", &rc, &mf_rc);
    tap_ok(rc == -1 && mf_rc == 0 && strstr(got, "shard-000000.zst") &&
               strstr(got, strerror(EFBIG)),
           "a write error: -1, rc 0 (the spool's own, not the manifest's), the file and the reason named (%s)", got);
    tap_ok(!has_spool_files(dir), "a write error: no index.json, no run or shard left");
}

/* An interrupted earlier attempt left runs, shards and a half-written index. */
static void test_stale(void)
{
    char csv[4200], dir[300], p[400];
    snprintf(csv, sizeof csv, "%s/tests/fixtures/spool/keys.csv", src_root());
    path_in(dir, sizeof dir, "stale-spool");
    s3_mkdir_p(dir, 0700);
    static const char *const stale[] = {"run-000003.zst", "shard-000000.zst", "shard-000099.zst",
                                        "index.json", "index.json.tmp", "keep.txt"};
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, stale[i]);
        write_path(p, "stale", 5);
    }
    run__spool_index idx;
    char msg[1024] = "";
    int mf_rc = 0;
    int rc = build_csv(csv, dir, 3, 0, &idx, &mf_rc, msg, sizeof msg);
    char names[4096];
    list_dir(dir, names, sizeof names);
    tap_ok(rc == 0 && strcmp(names, "index.json keep.txt shard-000000.zst shard-000001.zst "
                                    "shard-000002.zst shard-000003.zst shard-000004.zst") == 0,
           "a build over an interrupted one leaves only the new spool (and what is not its "
           "own) (%s)", names);
    s3_buf dump;
    s3_buf_init(&dump, TAP_BUF_MAX);
    char sizes[256];
    tap_ok(rc == 0 && read_spool(dir, &idx, 3, 0, &dump, sizes, sizeof sizes) == 0,
           "the rebuilt spool reads back");
    s3_buf_cleanup(&dump);
    run__spool_index_cleanup(&idx);
}

static void test_modes(void)
{
    char csv[4200], dir[300];
    snprintf(csv, sizeof csv, "%s/tests/fixtures/spool/keys.csv", src_root());
    path_in(dir, sizeof dir, "modes/job/spool");
    mode_t old = umask(022);
    run__spool_index idx;
    char msg[1024] = "";
    int mf_rc = 0;
    int rc = build_csv(csv, dir, 3, 1024, &idx, &mf_rc, msg, sizeof msg);
    umask(old);
    struct stat st;
    unsigned dmode = stat(dir, &st) == 0 ? (unsigned)(st.st_mode & 0777) : 0;
    int wrong = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char p[600];
        if (s3_path_join(p, sizeof p, dir, de->d_name) != 0)
            continue;
        if (de->d_name[0] != '.' && (stat(p, &st) != 0 || (st.st_mode & 0777) != 0600)) {
            tap_diag("%s: mode %o", de->d_name, (unsigned)(st.st_mode & 0777));
            wrong++;
        }
    }
    if (d)
        closedir(d);
    tap_ok(rc == 0 && dmode == 0700 && wrong == 0,
           "umask 022: the spool folder is 0700 (%o), its files 0600", dmode);
    run__spool_index_cleanup(&idx);
}

/* ---- damaged shards ---------------------------------------------------------------------- */

/* Reads a shard to its end: the rc that ended it, rows before it, the message. */
static int drain(const char *dir, const run__shard_info *sh, uint64_t *rows, char *msg,
                 size_t cap)
{
    *rows = 0;
    run__spool_reader *r = run__spool_open(dir, sh, msg, cap);
    if (!r)
        return -2;
    mf_entry e;
    int rc;
    while ((rc = run__spool_next(r, &e, msg, cap)) == 1)
        (*rows)++;
    int again = run__spool_next(r, &e, msg, cap);
    run__spool_close(r);
    return rc < 0 && again != -1 ? -3 : rc; /* an error is final */
}

static void test_damaged_shard(void)
{
    char csv[300], dir[300], path[400];
    path_in(csv, sizeof csv, "gen.csv");
    path_in(dir, sizeof dir, "damage-spool");
    run__spool_index idx;
    char msg[1024] = "";
    int mf_rc = 0;
    if (!tap_ok(build_csv(csv, dir, 0, 0, &idx, &mf_rc, msg, sizeof msg) == 0 &&
                    idx.n_shards == 1,
                "damage: a one-shard spool (%s)", msg))
        return;
    snprintf(path, sizeof path, "%s/%s", dir, idx.shards[0].file);
    size_t len = 0;
    char *good = tap_read_path(path, &len);
    uint64_t rows = 0;
    int rc = drain(dir, &idx.shards[0], &rows, msg, sizeof msg);
    tap_ok(rc == 0 && rows == idx.n_rows, "damage: the good shard reads %llu rows",
           (unsigned long long)rows);

    /* truncated: open refuses the size; with the size made to match, reading fails */
    write_path(path, good, len / 2);
    rc = drain(dir, &idx.shards[0], &rows, msg, sizeof msg);
    tap_ok(rc == -2 && strstr(msg, idx.shards[0].file) && strstr(msg, "bytes"),
           "truncated: open refuses a size other than index.json's (%s)", msg);
    run__shard_info sh = idx.shards[0];
    static const size_t cut_at[] = {2, 3, 7}; /* len * k / 8 */
    for (size_t i = 0; i < sizeof cut_at / sizeof *cut_at; i++) {
        size_t cut = len * cut_at[i] / 8;
        write_path(path, good, cut);
        sh.bytes = cut;
        rc = drain(dir, &sh, &rows, msg, sizeof msg);
        tap_ok(rc == -1 && rows < idx.n_rows && strstr(msg, sh.file),
               "truncated at %zu of %zu bytes: -1 after %llu rows, never a short clean end "
               "(%s)", cut, len, (unsigned long long)rows, msg);
    }
    sh.bytes = len;

    /* one byte flipped: zstd's frame checksum (or its decoder) catches it before any row of
       that frame is handed out */
    size_t flip_at[] = {0, 4, 5, 20, len / 3, len / 2, len - 5, len - 1};
    int caught = 0;
    for (size_t i = 0; i < sizeof flip_at / sizeof *flip_at; i++) {
        char *bad = malloc(len);
        memcpy(bad, good, len);
        bad[flip_at[i]] ^= 0x20;
        write_path(path, bad, len);
        free(bad);
        rc = drain(dir, &sh, &rows, msg, sizeof msg);
        if (rc == -1 && strstr(msg, sh.file))
            caught++;
        else
            tap_diag("flip at %zu: rc %d after %llu rows (%s)", flip_at[i], rc,
                     (unsigned long long)rows, msg);
    }
    tap_ok(caught == (int)(sizeof flip_at / sizeof *flip_at),
           "a flipped byte anywhere (8 places): -1 naming the file, never a silent read");

    /* row counts other than index.json's */
    write_path(path, good, len);
    sh.n_rows = idx.n_rows + 1;
    rc = drain(dir, &sh, &rows, msg, sizeof msg);
    tap_ok(rc == -1 && strstr(msg, "index.json says"),
           "fewer rows than index.json says: -1 (%s)", msg);
    sh.n_rows = idx.n_rows - 1;
    rc = drain(dir, &sh, &rows, msg, sizeof msg);
    tap_ok(rc == -1 && rows == sh.n_rows && strstr(msg, "more rows"),
           "more rows than index.json says: -1 (%s)", msg);
    free(good);
    run__spool_index_cleanup(&idx);
}

/* Records written here by the format of spool.c's comment, in valid zstd frames: the
   record checks, not zstd's, must refuse them. */
static size_t put_rec(unsigned char *p, unsigned flags, const char *bucket, const char *key,
                      const char *version)
{
    unsigned char *q = p + 4;
    *q++ = (unsigned char)flags;
    memset(q, 0, 16);
    q[0] = 5;  /* seq 5 */
    q[8] = 1;  /* line = seq + 1 */
    q += 16;
    const char *f[] = {bucket, key, version};
    for (int i = 0; i < 3; i++) {
        if (!f[i])
            continue;
        uint32_t n = (uint32_t)strlen(f[i]);
        memcpy(q, &n, 4);
        memcpy(q + 4, f[i], n);
        q[4 + n] = '\0';
        q += 5 + n;
    }
    uint32_t body = (uint32_t)(q - p - 4);
    memcpy(p, &body, 4);
    return (size_t)(q - p);
}

static void test_garbled_records(void)
{
    static const struct {
        const char *name;
        int damage; /* 0 none, 1 length past the frame, 2 unknown flag, 3 no NUL, 4 extra byte,
                       5 a field past its record */
        const char *want;
    } cases[] = {
        {"a well-formed record", 0, NULL},
        {"a record length past its frame", 1, "past the end of its frame"},
        {"an unknown flag bit", 2, "unknown flag"},
        {"a field without its NUL", 3, "past the end of its record"},
        {"a byte after the last field", 4, "bytes after the last field"},
        {"a field length past its record", 5, "past the end of its record"},
    };
    char dir[300], path[400];
    path_in(dir, sizeof dir, "garbled");
    s3_mkdir_p(dir, 0700);
    snprintf(path, sizeof path, "%s/shard-000000.zst", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char raw[512];
        size_t n = put_rec(raw, 1, "src", "ok/key", "v1");
        size_t at = n;
        n += put_rec(raw + n, 1, "src", "ok/key2", "v2");
        uint32_t v;
        switch (cases[i].damage) {
        case 1:
            memcpy(&v, raw + at, 4);
            v += 100;
            memcpy(raw + at, &v, 4);
            break;
        case 2:
            raw[at + 4] |= 0x40;
            break;
        case 3:
            raw[at + 21 + 4 + 3] = 'x'; /* the NUL after "src" */
            break;
        case 4:
            memcpy(&v, raw + at, 4);
            v += 1;
            memcpy(raw + at, &v, 4);
            raw[n++] = 0;
            break;
        case 5:
            v = 1000; /* the key's length */
            memcpy(raw + at + 21 + 4 + 4, &v, 4);
            break;
        }
        unsigned char z[1024];
        ZSTD_CCtx *cc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
        size_t zn = ZSTD_compress2(cc, z, sizeof z, raw, n);
        ZSTD_freeCCtx(cc);
        write_path(path, z, zn);
        run__shard_info sh = {.first_seq = 10, .n_rows = 2, .n_keys = 2, .bytes = zn};
        snprintf(sh.file, sizeof sh.file, "shard-000000.zst");
        char msg[1024] = "";
        run__spool_reader *r = run__spool_open(dir, &sh, msg, sizeof msg);
        mf_entry e;
        int rc1 = r ? run__spool_next(r, &e, msg, sizeof msg) : -2;
        int first_ok = rc1 == 1 && e.seq == 10 && e.line == 6 && s3_slice_eq(e.key, "ok/key") &&
                       s3_slice_eq(e.bucket, "src") && s3_slice_eq(e.version_id, "v1") &&
                       e.has_version && s3_slice_eq(e.key_raw, "ok/key");
        int rc2 = r ? run__spool_next(r, &e, msg, sizeof msg) : -2;
        int second_ok = rc2 == 1 && e.seq == 11 && s3_slice_eq(e.key, "ok/key2");
        int rc3 = r && rc2 == 1 ? run__spool_next(r, &e, msg, sizeof msg) : rc2;
        run__spool_close(r);
        if (!cases[i].want)
            tap_ok(first_ok && second_ok && rc3 == 0,
                   "record: %s reads back (seq = first_seq + i, line = seq + 1 of the record)",
                   cases[i].name);
        else
            tap_ok(first_ok && rc2 == -1 && strstr(msg, cases[i].want) &&
                       strstr(msg, "shard-000000.zst"),
                   "record: %s: -1 after the good row (%s)", cases[i].name, msg);
    }
}

/* ---- index.json -------------------------------------------------------------------------- */

static void test_index_damage(void)
{
    static const struct {
        const char *name;
        const char *member; /* top level, or "shards.N.member" */
        const char *value;  /* JSON text; NULL: remove the member */
    } cases[] = {
        {"n_keys missing", "n_keys", NULL},
        {"version missing", "version", NULL},
        {"another version", "version", "2"},
        {"n_rows a string", "n_rows", "\"20\""},
        {"first_bucket a number", "first_bucket", "7"},
        {"shards missing", "shards", NULL},
        {"rows that do not add up", "n_rows", "21"},
        {"shards not contiguous", "shards.1.first_seq", "4"},
        {"a shard's n_rows missing", "shards.2.n_rows", NULL},
        {"a negative size", "shards.0.bytes", "-1"},
        {"a file name with a '/'", "shards.0.file", "\"../etc/shard-000000.zst\""},
        {"a file name of another shard", "shards.0.file", "\"shard-000001.zst\""},
        {"a file name that is no shard", "shards.0.file", "\"index.json\""},
        {"a shard with no rows", "shards.4.n_rows", "0"},
    };
    char csv[4200], dir[300], path[400];
    snprintf(csv, sizeof csv, "%s/tests/fixtures/spool/keys.csv", src_root());
    path_in(dir, sizeof dir, "index-spool");
    snprintf(path, sizeof path, "%s/index.json", dir);
    run__spool_index idx, back;
    char msg[1024] = "";
    int mf_rc = 0;
    if (!tap_ok(build_csv(csv, dir, 3, 0, &idx, &mf_rc, msg, sizeof msg) == 0 &&
                    idx.n_shards == 5,
                "index: a five-shard spool (%s)", msg))
        return;
    run__spool_index_cleanup(&idx);
    json_error_t je;
    json_t *good = json_load_file(path, 0, &je);
    for (size_t i = 0; good && i < sizeof cases / sizeof *cases; i++) {
        json_t *j = json_deep_copy(good), *obj = j;
        char name[64];
        snprintf(name, sizeof name, "%s", cases[i].member);
        char *m = name;
        if (strncmp(name, "shards.", 7) == 0) {
            char *dot = strchr(name + 7, '.');
            *dot = '\0';
            obj = json_array_get(json_object_get(j, "shards"), (size_t)atoi(name + 7));
            m = dot + 1;
        }
        if (cases[i].value)
            json_object_set_new(obj, m, json_loads(cases[i].value, JSON_DECODE_ANY, &je));
        else
            json_object_del(obj, m);
        json_dump_file(j, path, 0);
        json_decref(j);
        msg[0] = '\0';
        int rc = run__spool_index_load(dir, &back, msg, sizeof msg);
        tap_ok(rc == -1 && strstr(msg, "index.json") && back.shards == NULL,
               "index.json with %s: -1 (%s)", cases[i].name, msg);
        run__spool_index_cleanup(&back);
    }
    static const char *const texts[] = {"{", "[]", "",
                                        "{\"version\":1,\"version\":1,\"n_rows\":0,\"n_keys\":0,"
                                        "\"first_bucket\":\"\",\"spool_bytes\":0,\"shards\":[]}"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        write_path(path, texts[i], strlen(texts[i]));
        int rc = run__spool_index_load(dir, &back, msg, sizeof msg);
        tap_ok(rc == -1, "index.json \"%.20s\": -1 (%s)", texts[i], msg);
        run__spool_index_cleanup(&back);
    }
    json_dump_file(good, path, 0);
    tap_ok(run__spool_index_load(dir, &back, msg, sizeof msg) == 0 && back.n_shards == 5,
           "the good index.json, written back, loads");
    run__spool_index_cleanup(&back);
    unlink(path);
    tap_ok(run__spool_index_load(dir, &back, msg, sizeof msg) == 1,
           "no index.json: 1 (the spool is not complete)");
    json_decref(good);
    run__shard_info evil = {.n_rows = 1, .bytes = 1};
    snprintf(evil.file, sizeof evil.file, "../shard-000000.zst");
    tap_ok(run__spool_open(dir, &evil, msg, sizeof msg) == NULL,
           "run__spool_open refuses a shard name that is a path (%s)", msg);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/batchrep-test-spool-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        tap_ok(0, "mkdtemp");
        return tap_done();
    }
    test_fixture();
    test_runs();
    test_inventory();
    test_empty();
    test_reader_error();
    test_write_error();
    test_stale();
    test_modes();
    test_damaged_shard();
    test_garbled_records();
    test_index_damage();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", g_tmp);
    return tap_done();
}
