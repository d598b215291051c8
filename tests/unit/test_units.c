/*
 * test_units.c — the engine's unit builder (engine/unit.c, "building"): the rows of one key
 * become one unit, split in order when the key has more than ENG_UNIT_MAX_TASKS rows or
 * more than ENG_UNIT_MAX_BYTES of row text, so a unit's memory is a budget whatever the
 * manifest holds (issue 15 item 7: 20,000 rows of one key with 65,000-byte VersionIds took
 * 1.07 GB, then "out of memory planning units").
 *
 * Cases: the issue's rows fed to the builder directly (the reader now refuses such version
 * IDs, but an Inventory row may legitimately carry tens of KiB of ACL, and the builder must
 * not trust its input to be small); a generated manifest at the reader's new limits (1,024-byte
 * keys written %-encoded, 1,024-byte VersionIds) read and grouped as run/feeder.c does; the
 * row bound; the byte bound's edge (a row that fits exactly, one byte more). Peak RSS is read
 * from /proc/self/status (VmHWM), reset before each case through /proc/self/clear_refs.
 */
#include "engine/engine.h"
#include "manifest/manifest.h"
#include "tests/unit/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Two units' row text (the builder's and the one being taken: 2 x 64 MiB), their task
   arrays (~1 KiB a row: 16,000 rows of 4 KiB here, ~30 MiB) and the reader (2 MiB), with
   room to spare; measured 130-165 MiB. The unbounded builder reached 1 GiB on the issue's
   rows. ASan keeps up to 256 MiB of freed blocks in its quarantine and adds 1/8 for shadow
   memory, so its bound is wider (still below 1 GiB). */
#define PEAK_GROWTH_MAX_KIB ((UNDER_ASAN ? 768 : 256) * 1024L)

static char g_tmp[256];

/* ---- peak RSS -------------------------------------------------------------------------- */

/* Resets the kernel's peak-RSS mark to the current RSS (Linux >= 4.0). 0 on success. */
static int peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

typedef struct peak {
    long base_kib;
    int reset;
} peak;

/* Starts measuring: after a reset the growth is VmHWM - VmRSS now; without one (an old
   kernel), getrusage's peak is the best we have, so the growth is measured from it. */
static void peak_start(peak *p)
{
    p->reset = peak_reset() == 0;
    if (p->reset) {
        p->base_kib = status_kib("VmRSS");
    } else {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        p->base_kib = ru.ru_maxrss;
    }
}

static long peak_growth_kib(const peak *p)
{
    long hwm = status_kib("VmHWM");
    if (!p->reset || hwm < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        hwm = ru.ru_maxrss;
    }
    return hwm - p->base_kib;
}

/* ---- what a unit holds ----------------------------------------------------------------- */

/* The row text of a unit, counted as the builder counts it (raw key, version ID, ETag, ACL,
   each NUL-terminated). */
static size_t unit_row_bytes(const eng_unit *u)
{
    size_t n = 0;
    for (size_t i = 0; i < eng_unit_n_tasks(u); i++) {
        const eng_task *t = eng_unit_task(u, i);
        n += t->key_raw.len + 1 + t->version_id.len + 1 + strlen(t->etag) + 1 +
             t->row.acl.len + 1;
    }
    return n;
}

typedef struct tally {
    size_t units, tasks, max_tasks, max_bytes;
    uint64_t next_seq;
    int order_ok;      /* every unit's tasks continue the seq of the one before */
} tally;

static void take_one(eng_unit_builder *b, tally *t)
{
    eng_unit *u = eng_unit_builder_take(b, NULL, NULL, NULL, NULL);
    if (!u) {
        t->order_ok = 0;
        return;
    }
    size_t n = eng_unit_n_tasks(u), bytes = unit_row_bytes(u);
    for (size_t i = 0; i < n; i++)
        if (eng_unit_task(u, i)->seq != t->next_seq++)
            t->order_ok = 0;
    t->units++;
    t->tasks += n;
    if (n > t->max_tasks)
        t->max_tasks = n;
    if (bytes > t->max_bytes)
        t->max_bytes = bytes;
    eng_unit_destroy(u);
}

/* As run/feeder.c plan_one: a row that does not belong to the group ends it. 0, or the
   builder's error. */
static int feed(eng_unit_builder *b, const mf_entry *e, tally *t)
{
    if (eng_unit_builder_len(b) > 0 && !eng_unit_builder_same_key(b, e))
        take_one(b, t);
    return eng_unit_builder_add(b, e);
}

/* ---- cases ----------------------------------------------------------------------------- */

#define ISSUE_ROWS 20000
#define ISSUE_VID_BYTES 65000

/* The issue's manifest, row by row, straight into the builder. */
static void test_issue_rows(void)
{
    char *vid = malloc(ISSUE_VID_BYTES + 1);
    if (!tap_ok(vid != NULL, "issue rows: memory for one version ID"))
        return;
    memset(vid, 'v', ISSUE_VID_BYTES);
    vid[ISSUE_VID_BYTES] = '\0';
    peak pk;
    peak_start(&pk);
    eng_unit_builder b;
    eng_unit_builder_init(&b);
    tally t = {.order_ok = 1};
    int add_rc = 0;
    uint64_t added = 0;
    for (uint64_t i = 0; i < ISSUE_ROWS && add_rc == 0; i++) {
        snprintf(vid, 21, "%020llu", (unsigned long long)i); /* distinct IDs */
        vid[20] = 'v';
        mf_entry e = {.seq = i, .line = i + 1, .bucket = s3_slice_cstr("src-bucket"),
                      .key_raw = s3_slice_cstr("one/key"), .key = s3_slice_cstr("one/key"),
                      .version_id = {vid, ISSUE_VID_BYTES}, .has_version = 1};
        add_rc = feed(&b, &e, &t);
        added += add_rc == 0;
    }
    if (eng_unit_builder_len(&b) > 0)
        take_one(&b, &t);
    eng_unit_builder_cleanup(&b);
    long growth = peak_growth_kib(&pk);
    free(vid);

    tap_ok(add_rc == 0, "issue rows: all %d rows of 65,000-byte VersionIds taken (%llu were, "
           "last rc %d)", ISSUE_ROWS, (unsigned long long)added, add_rc);
    tap_ok(t.tasks == ISSUE_ROWS && t.order_ok,
           "issue rows: %zu tasks in %zu units, in manifest order", t.tasks, t.units);
    tap_ok(t.max_bytes <= ENG_UNIT_MAX_BYTES,
           "issue rows: the largest unit holds %zu bytes of row text (bound %zu)", t.max_bytes,
           (size_t)ENG_UNIT_MAX_BYTES);
    size_t per_unit = ENG_UNIT_MAX_BYTES / (7 + 1 + ISSUE_VID_BYTES + 1 + 1 + 1);
    tap_ok(t.units == (ISSUE_ROWS + per_unit - 1) / per_unit,
           "issue rows: split into %zu units of up to %zu rows (want %zu)", t.units, per_unit,
           (ISSUE_ROWS + per_unit - 1) / per_unit);
    tap_ok(growth < PEAK_GROWTH_MAX_KIB, "issue rows: peak RSS grew by %ld KiB (bound %ld KiB)",
           growth, PEAK_GROWTH_MAX_KIB);
}

#define GEN_ROWS 20000

/* A manifest of one key at the reader's limits, read and grouped as the feeder does. */
static void test_generated_manifest(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/one-key.csv", g_tmp);
    FILE *f = fopen(path, "wb");
    if (!tap_ok(f != NULL, "generated: %s opens for writing", path))
        return;
    static char line[8192];
    size_t o = (size_t)snprintf(line, sizeof line, "src-bucket,");
    for (int i = 0; i < 1024; i++)
        o += (size_t)snprintf(line + o, sizeof line - o, "%%%02X", 'a' + i % 26);
    line[o++] = ',';
    size_t vid_at = o;
    memset(line + o, 'v', 1024);
    o += 1024;
    line[o++] = '\n';
    for (unsigned i = 0; i < GEN_ROWS; i++) {
        char num[16];
        snprintf(num, sizeof num, "%010u", i);
        memcpy(line + vid_at, num, 10);
        fwrite(line, 1, o, f);
    }
    int wrote = fclose(f) == 0;
    if (!tap_ok(wrote, "generated: %u rows written (%zu bytes each)", GEN_ROWS, o))
        return;

    peak pk;
    peak_start(&pk);
    char msg[2048] = "";
    mf_reader *r = mf_open_csv(path, "one-key.csv", NULL, msg, sizeof msg);
    if (!tap_ok(r != NULL, "generated: opens (%s)", msg)) {
        unlink(path);
        return;
    }
    eng_unit_builder b;
    eng_unit_builder_init(&b);
    tally t = {.order_ok = 1};
    mf_entry e;
    int rc, add_rc = 0;
    while (add_rc == 0 && (rc = mf_next(r, &e, msg, sizeof msg)) == 1)
        add_rc = feed(&b, &e, &t);
    if (eng_unit_builder_len(&b) > 0)
        take_one(&b, &t);
    eng_unit_builder_cleanup(&b);
    mf_close(r);
    long growth = peak_growth_kib(&pk);
    unlink(path);

    tap_ok(rc == 0 && add_rc == 0, "generated: read to the end (%s)", rc < 0 ? msg : "ok");
    tap_ok(t.tasks == GEN_ROWS && t.order_ok, "generated: %zu tasks in %zu units, in order",
           t.tasks, t.units);
    tap_ok(t.units >= 2 && t.max_bytes <= ENG_UNIT_MAX_BYTES,
           "generated: %zu units, the largest %zu bytes of row text (bound %zu)", t.units,
           t.max_bytes, (size_t)ENG_UNIT_MAX_BYTES);
    tap_ok(growth < PEAK_GROWTH_MAX_KIB, "generated: peak RSS grew by %ld KiB (bound %ld KiB)",
           growth, PEAK_GROWTH_MAX_KIB);
}

/* A key of ENG_UNIT_MAX_TASKS + 1 short rows: one full unit, then one of one row. */
static void test_row_bound(void)
{
    eng_unit_builder b;
    eng_unit_builder_init(&b);
    tally t = {.order_ok = 1};
    int rc = 0;
    for (uint64_t i = 0; i <= ENG_UNIT_MAX_TASKS && rc == 0; i++) {
        mf_entry e = {.seq = i, .line = i + 1, .bucket = s3_slice_cstr("src-bucket"),
                      .key_raw = s3_slice_cstr("k"), .key = s3_slice_cstr("k"),
                      .version_id = s3_slice_cstr("v"), .has_version = 1};
        rc = feed(&b, &e, &t);
    }
    take_one(&b, &t);
    eng_unit_builder_cleanup(&b);
    tap_ok(rc == 0 && t.units == 2 && t.max_tasks == ENG_UNIT_MAX_TASKS &&
               t.tasks == ENG_UNIT_MAX_TASKS + 1 && t.order_ok,
           "row bound: %d rows -> %zu units, the largest %zu rows", ENG_UNIT_MAX_TASKS + 1,
           t.units, t.max_tasks);
}

/* Rows that fill the byte bound exactly stay in one unit; one byte more starts the next. */
static void test_byte_edge(void)
{
    for (int extra = 0; extra <= 1; extra++) {
        /* mem holds "bkt\0k\0" (6 bytes), then per row raw key "k\0", the version, "\0",
           an empty ETag "\0" and an empty ACL "\0": 5 bytes + the version. Two rows. */
        size_t vid_len = (ENG_UNIT_MAX_BYTES - 6) / 2 - 5;
        size_t first_len = vid_len + ((ENG_UNIT_MAX_BYTES - 6) % 2) + (size_t)extra;
        char *vid = malloc(first_len + 1);
        if (!tap_ok(vid != NULL, "byte edge: memory"))
            return;
        memset(vid, 'v', first_len);
        vid[first_len] = '\0';
        eng_unit_builder b;
        eng_unit_builder_init(&b);
        tally t = {.order_ok = 1};
        mf_entry e = {.bucket = s3_slice_cstr("bkt"), .key_raw = s3_slice_cstr("k"),
                      .key = s3_slice_cstr("k"), .version_id = {vid, first_len},
                      .has_version = 1};
        int rc = feed(&b, &e, &t);
        e.seq = 1;
        e.version_id.len = vid_len;
        rc = rc ? rc : feed(&b, &e, &t);
        take_one(&b, &t);
        eng_unit_builder_cleanup(&b);
        free(vid);
        tap_ok(rc == 0 && t.units == (size_t)(1 + extra) && t.tasks == 2 && t.order_ok,
               "byte edge: rows of %s the bound -> %zu unit(s)",
               extra ? "one byte more than" : "exactly", t.units);
    }
}

/* Another key, or another bucket, always starts a unit. */
static void test_keys(void)
{
    static const char *const rows[][2] = {{"b1", "a"}, {"b1", "a"}, {"b1", "b"},
                                          {"b2", "b"}, {"b2", "b"}, {"b1", "b"}};
    eng_unit_builder b;
    eng_unit_builder_init(&b);
    tally t = {.order_ok = 1};
    int rc = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && rc == 0; i++) {
        mf_entry e = {.seq = i, .line = i + 1, .bucket = s3_slice_cstr(rows[i][0]),
                      .key_raw = s3_slice_cstr(rows[i][1]), .key = s3_slice_cstr(rows[i][1]),
                      .version_id = s3_slice_cstr("v"), .has_version = 1};
        rc = feed(&b, &e, &t);
    }
    take_one(&b, &t);
    eng_unit_builder_cleanup(&b);
    tap_ok(rc == 0 && t.units == 4 && t.tasks == 6 && t.order_ok,
           "keys: 6 rows of 4 (bucket, key) runs -> %zu units", t.units);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/batchrep-test-units-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_keys();
    test_row_bound();
    test_byte_edge();
    test_generated_manifest();
    test_issue_rows();
    rmdir(g_tmp);
    return tap_done();
}
