/*
 * spool.c — Preparing's external merge sort: every row of a job's manifest, ordered by
 * (bucket bytes, decoded key bytes, manifest position) and cut into shards of whole keys in
 * <job dir>/spool/, so that all versions of a key reach the engine together and in manifest
 * order however the manifest scattered them, in memory that does not grow with the manifest.
 *
 * Build (run__spool_build):
 *   1. rows are encoded (format below) into one sort buffer of sort_mem_bytes: records from
 *      its bottom, 16-byte sort entries from its top, so the budget holds both (a single
 *      row longer than the whole budget gets a buffer of its own size);
 *   2. a full buffer is sorted (below) and spilled as run-NNNNNN.zst;
 *   3. at the end the runs are merged with a binary heap, at most FAN_IN (128) at once;
 *      while more remain, the oldest min(128, runs - 128 + 1) are first merged into one new
 *      run, so the last merge takes 128 or fewer and only the excess is read twice. A
 *      manifest that fits in one buffer goes from the buffer to the shards without a run;
 *   4. the sorted rows are cut into shard-NNNNNN.zst: a shard ends at the first key
 *      boundary after it holds shard_rows rows, so a key never spans two shards; each shard
 *      is fdatasynced, then the folder, then index.json is written atomically (present =
 *      complete and durable) and the folder fsynced again. A run is deleted once merged; a
 *      failed build deletes what it wrote (and the next build removes what a kill -9 left).
 *
 * Files (runs and shards alike): zstd frames one after the other (level 1, hashLog 17;
 * content size and XXH64 checksum in each), each holding whole records, at most 64 KiB of
 * them (a longer record gets a frame of its own). A reader decodes a whole frame, so zstd
 * has checked it, before it hands out any of its rows: a flipped byte is an error before a
 * wrong key can reach the engine. `zstd -d` reads the files.
 *
 * Record (integers little-endian; str = u32 n, n bytes, a NUL byte, so that a reader's
 * slices point into its frame NUL-terminated like mf_next's):
 *   u32 len          bytes after this field
 *   u8  flags        1 has_version, 2 key_raw differs from key, 4 facts follow; others 0
 *   u64 seq          the row's position in the manifest (mf_entry.seq)
 *   u64 line - seq   modulo 2^64 (1 on every row of a CSV manifest: zstd makes it nothing)
 *   str bucket, str key (decoded), [str key_raw: flag 2], [str version_id: flag 1]
 *   [facts, flag 4 (facts.known != 0): u32 known, u8 (1 delete marker, 2 latest, 4 bucket
 *    key), i64 size, i64 last_modified_ms, then storage_class, replication_status,
 *    encryption, lock_mode, lock_until, legal_hold each as u8 n (< its mf_facts array) and
 *    n bytes, then str etag, str acl]
 * A CSV row without escapes costs 36 bytes besides its bucket, key and version ID, and no
 * facts bytes. A reader rejects a record whose lengths run past it or its frame, a missing
 * NUL, an unknown flag or fact bit, trailing bytes, and (run__spool_next) a NUL in a key.
 *
 * index.json: {"version": 1, "n_rows", "n_keys", "first_bucket", "spool_bytes", "shards":
 * [{"file": "shard-000000.zst", "first_seq", "n_rows", "n_keys", "bytes"}, ...]}; shard i is
 * shard-<i, 6 digits>.zst, first_seq the sum of the rows before it. Read strictly: every
 * member with its type, shards contiguous and adding up; a file name is never a path.
 *
 * Sort: entries are {8-byte chunk, record offset}. A chunk is 7 bytes of a field from depth
 * d, big-endian, zero-padded, and a low byte min(bytes left, 8), so comparing chunks as
 * integers orders like memcmp-then-shorter-first. Entries are 3-way partitioned on their
 * chunk (pivot: median of 3 drawn by a PRNG, which no manifest can defeat every time); the
 * equal part moves 7 bytes deeper (or to the next field: bucket, key, then seq) and loads
 * its chunks again. Keys share long prefixes ("data/2024/part-00123/"), over which a
 * comparison sort would memcmp again and again, missing the cache on both records; here a
 * level is one pass over the entries. Groups of 16 or fewer use an insertion sort.
 *
 * Memory: the sort buffer (default 16 MiB) + one file writer (64 KiB frame, 256 KiB of
 * compressed output, the zstd context) + while merging (the sort buffer freed first) per run
 * a 64 KiB read buffer, a 64 KiB frame and a zstd DStream (222 KiB allocated), about 250 KiB
 * resident: 128 runs, 32 MiB. A reader of one shard holds the same. Measured (bench_prepare,
 * 2-core Xeon VM): a shuffled 10 M-row CSV manifest (970 MB) makes 88 runs and 100 shards
 * (317 MB, 0.33 byte per manifest byte) in 8.4-9.1 s, 1.1-1.2 M rows/s, the whole process
 * peaking at 27 MiB RSS; about half of the time is zstd (level 1 on runs and shards alike).
 * FAN_IN 64 would merge 25 of those runs twice: 6.5% slower, 22 MiB.
 */
#include "run/run_int.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define FRAME_BYTES ((size_t)64 << 10)    /* uncompressed records per zstd frame */
#define REC_MAX_BYTES ((size_t)1 << 20)   /* a record: 6 fields of 64 KiB (readers' cap) fit */
#define READ_BYTES ((size_t)64 << 10)     /* a reader's read(2) size */
#define OUT_BYTES ((size_t)256 << 10)     /* compressed bytes gathered per write(2) */
#define FAN_IN 128                        /* runs merged at once (file comment) */
#define SORT_MEM_MIN ((size_t)1 << 10)    /* below, every row would be a run of its own */
#define ZLEVEL 1
#define ZHASH_LOG 17 /* level 1 picks 13 for a 64 KiB frame: 600 MB/s on spool data; 17: 770 */
#define SMALL_GROUP 16                    /* insertion sort at or below */
#define INDEX_VERSION 1

#define REC_HEAD 21 /* u32 len, u8 flags, u64 seq, u64 line - seq */
#define F_VERSION 1u
#define F_RAW 2u
#define F_FACTS 4u
#define FACT_BITS_ALL ((MF_FACT_ACL << 1) - 1)

/* ---- bytes ------------------------------------------------------------------------------- */

static inline uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static inline unsigned char *put32(unsigned char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
    return p + 4;
}

static inline unsigned char *put64(unsigned char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
    return p + 8;
}

static inline unsigned char *put_str(unsigned char *p, const char *s, size_t n)
{
    p = put32(p, (uint32_t)n);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p + n + 1;
}

static inline unsigned char *put_short(unsigned char *p, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap - 1);
    *p++ = (unsigned char)n;
    memcpy(p, s, n);
    return p + n;
}

/* ---- records ----------------------------------------------------------------------------- */

static int raw_differs(const mf_entry *e)
{
    return e->key_raw.len != e->key.len ||
           (e->key.len && memcmp(e->key_raw.ptr, e->key.ptr, e->key.len) != 0);
}

#define STR_BYTES(n) (4 + (size_t)(n) + 1)
#define SHORT_BYTES(a) (1 + strnlen((a), sizeof(a) - 1))

static size_t rec_size(const mf_entry *e, int raw)
{
    size_t n = REC_HEAD + STR_BYTES(e->bucket.len) + STR_BYTES(e->key.len);
    if (raw)
        n += STR_BYTES(e->key_raw.len);
    if (e->has_version)
        n += STR_BYTES(e->version_id.len);
    if (e->facts.known) {
        const mf_facts *f = &e->facts;
        n += 4 + 1 + 8 + 8 + SHORT_BYTES(f->storage_class) + SHORT_BYTES(f->replication_status) +
             SHORT_BYTES(f->encryption) + SHORT_BYTES(f->lock_mode) +
             SHORT_BYTES(f->lock_until) + SHORT_BYTES(f->legal_hold) +
             STR_BYTES(f->etag.ptr ? f->etag.len : 0) + STR_BYTES(f->acl.ptr ? f->acl.len : 0);
    }
    return n;
}

/* Writes e's record (rec_size bytes) at p. */
static void rec_encode(unsigned char *p, const mf_entry *e, int raw, size_t size)
{
    unsigned flags = (e->has_version ? F_VERSION : 0) | (raw ? F_RAW : 0) |
                     (e->facts.known ? F_FACTS : 0);
    p = put32(p, (uint32_t)(size - 4));
    *p++ = (unsigned char)flags;
    p = put64(p, e->seq);
    p = put64(p, e->line - e->seq);
    p = put_str(p, e->bucket.ptr, e->bucket.len);
    p = put_str(p, e->key.ptr, e->key.len);
    if (raw)
        p = put_str(p, e->key_raw.ptr, e->key_raw.len);
    if (e->has_version)
        p = put_str(p, e->version_id.ptr, e->version_id.len);
    if (e->facts.known) {
        const mf_facts *f = &e->facts;
        p = put32(p, f->known);
        *p++ = (unsigned char)((f->is_delete_marker ? 1 : 0) | (f->is_latest ? 2 : 0) |
                               (f->bucket_key ? 4 : 0));
        p = put64(p, (uint64_t)f->size);
        p = put64(p, (uint64_t)f->last_modified_ms);
        p = put_short(p, f->storage_class, sizeof f->storage_class);
        p = put_short(p, f->replication_status, sizeof f->replication_status);
        p = put_short(p, f->encryption, sizeof f->encryption);
        p = put_short(p, f->lock_mode, sizeof f->lock_mode);
        p = put_short(p, f->lock_until, sizeof f->lock_until);
        p = put_short(p, f->legal_hold, sizeof f->legal_hold);
        p = put_str(p, f->etag.ptr, f->etag.ptr ? f->etag.len : 0);
        p = put_str(p, f->acl.ptr, f->acl.ptr ? f->acl.len : 0);
    }
}

/* A record read back: slices into the frame that holds it. */
typedef struct rec_view {
    const unsigned char *rec;
    size_t len;                 /* the whole record, 4 + its len field */
    unsigned flags;
    uint64_t seq, line_delta;
    s3_slice bucket, key, key_raw, version;
} rec_view;

/* Parsing cursor over [p, end): each take fails (returns NULL) rather than read past end. */
static const unsigned char *take_str(const unsigned char *p, const unsigned char *end,
                                     s3_slice *out)
{
    if (!p || end - p < 4)
        return NULL;
    uint32_t n = get32(p);
    p += 4;
    if ((size_t)(end - p) < (size_t)n + 1 || p[n] != '\0')
        return NULL;
    out->ptr = (const char *)p;
    out->len = n;
    return p + n + 1;
}

static const unsigned char *take_short(const unsigned char *p, const unsigned char *end,
                                       char *out, size_t cap)
{
    if (!p || end - p < 1)
        return NULL;
    size_t n = *p++;
    if (n >= cap || (size_t)(end - p) < n || memchr(p, '\0', n))
        return NULL;
    if (out) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return p + n;
}

/* Decodes the record at p (avail bytes left in its frame) into v, and its facts into fx
   when fx is not NULL (all zero when the row has none). Returns the record's length, or 0
   when it is damaged, with *why saying how. */
static size_t rec_decode(const unsigned char *p, size_t avail, rec_view *v, mf_facts *fx,
                         const char **why)
{
    if (avail < 4) {
        *why = "a record's length cut short";
        return 0;
    }
    uint32_t body = get32(p);
    if ((size_t)body > avail - 4) {
        *why = "a record's length runs past the end of its frame";
        return 0;
    }
    if (body < REC_HEAD - 4) {
        *why = "a record shorter than its fixed fields";
        return 0;
    }
    const unsigned char *end = p + 4 + body;
    v->rec = p;
    v->len = 4 + (size_t)body;
    v->flags = p[4];
    if (v->flags & ~(F_VERSION | F_RAW | F_FACTS)) {
        *why = "a record with unknown flag bits";
        return 0;
    }
    v->seq = get64(p + 5);
    v->line_delta = get64(p + 13);
    const unsigned char *q = p + REC_HEAD;
    q = take_str(q, end, &v->bucket);
    q = take_str(q, end, &v->key);
    if (v->flags & F_RAW)
        q = take_str(q, end, &v->key_raw);
    else
        v->key_raw = v->key;
    if (v->flags & F_VERSION)
        q = take_str(q, end, &v->version);
    else
        v->version = (s3_slice){"", 0};
    mf_facts scratch, *f = fx ? fx : &scratch;
    if (fx)
        memset(fx, 0, sizeof *fx);
    if (q && (v->flags & F_FACTS)) {
        if (end - q < 21) {
            *why = "a record's facts cut short";
            return 0;
        }
        f->known = get32(q);
        unsigned bits = q[4];
        if (f->known == 0 || (f->known & ~(unsigned)FACT_BITS_ALL) || (bits & ~7u)) {
            *why = "a record with unknown fact bits";
            return 0;
        }
        f->is_delete_marker = (bits & 1) != 0;
        f->is_latest = (bits & 2) != 0;
        f->bucket_key = (bits & 4) != 0;
        f->size = (int64_t)get64(q + 5);
        f->last_modified_ms = (int64_t)get64(q + 13);
        q += 21;
        q = take_short(q, end, f->storage_class, sizeof f->storage_class);
        q = take_short(q, end, f->replication_status, sizeof f->replication_status);
        q = take_short(q, end, f->encryption, sizeof f->encryption);
        q = take_short(q, end, f->lock_mode, sizeof f->lock_mode);
        q = take_short(q, end, f->lock_until, sizeof f->lock_until);
        q = take_short(q, end, f->legal_hold, sizeof f->legal_hold);
        s3_slice etag = {NULL, 0}, acl = {NULL, 0};
        q = take_str(q, end, &etag);
        q = take_str(q, end, &acl);
        f->etag = etag.len ? etag : (s3_slice){NULL, 0};
        f->acl = acl.len ? acl : (s3_slice){NULL, 0};
    }
    if (!q) {
        *why = "a field's length runs past the end of its record";
        return 0;
    }
    if (q != end) {
        *why = "bytes after the last field of a record";
        return 0;
    }
    return v->len;
}

/* Bucket (f 0) or key (f 1) of a record this file wrote into its sort buffer. */
static inline const unsigned char *rec_field(const unsigned char *rec, int f, uint32_t *n)
{
    uint32_t bn = get32(rec + REC_HEAD);
    if (f == 0) {
        *n = bn;
        return rec + REC_HEAD + 4;
    }
    const unsigned char *k = rec + REC_HEAD + 4 + bn + 1;
    *n = get32(k);
    return k + 4;
}

/* ---- the in-memory sort ------------------------------------------------------------------ */

typedef struct sort_ent {
    uint64_t chunk; /* of the record's field at the current depth (file comment) */
    uint32_t off;   /* of the record in the sort buffer */
    uint32_t spare;
} sort_ent;

/* The chunk of field f (0 bucket, 1 key, 2 seq) from depth d. Reads 8 bytes at p + d even
   when fewer are left: a record is always followed, inside the sort buffer, by at least its
   own 16-byte entry, and the bytes past the field are masked off. */
static inline uint64_t chunk_at(const unsigned char *rec, int f, uint32_t d)
{
    if (f == 2)
        return get64(rec + 5);
    uint32_t n;
    const unsigned char *p = rec_field(rec, f, &n);
    uint32_t left = n - d;
    uint64_t v;
    memcpy(&v, p + d, 8);
    v = be64toh(v);
    if (left >= 8)
        return (v & ~(uint64_t)0xff) | 8;
    return (left ? v & (~(uint64_t)0 << (8 * (8 - left))) : 0) | left;
}

/* The level after a chunk c of (f, d): the equal entries continue 7 bytes deeper, or with
   the next field once c says the field ended. 0 when nothing is left to compare. */
static inline int next_level(uint64_t c, int f, uint32_t d, int *nf, uint32_t *nd)
{
    if (f == 2)
        return 0;
    if ((c & 0xff) < 8) {
        *nf = f + 1;
        *nd = 0;
    } else {
        *nf = f;
        *nd = d + 7;
    }
    return 1;
}

/* memcmp order of two records from field f, depth d on (their earlier bytes are equal). */
static int rec_cmp_from(const unsigned char *x, const unsigned char *y, int f, uint32_t d)
{
    for (; f < 2; f++, d = 0) {
        uint32_t nx, ny;
        const unsigned char *px = rec_field(x, f, &nx), *py = rec_field(y, f, &ny);
        uint32_t m = (nx < ny ? nx : ny) - d;
        int c = m ? memcmp(px + d, py + d, m) : 0;
        if (c)
            return c;
        if (nx != ny)
            return nx < ny ? -1 : 1;
    }
    uint64_t sx = get64(x + 5), sy = get64(y + 5);
    return (sx > sy) - (sx < sy);
}

static void load_chunks(sort_ent *a, size_t n, const unsigned char *base, int f, uint32_t d)
{
    for (size_t i = 0; i < n; i++) {
        if (i + 8 < n) /* records are read in no order: ask for them early */
            __builtin_prefetch(base + a[i + 8].off + REC_HEAD);
        a[i].chunk = chunk_at(base + a[i].off, f, d);
    }
}

static int ent_less(const sort_ent *x, const sort_ent *y, const unsigned char *base, int f,
                    uint32_t d)
{
    if (x->chunk != y->chunk)
        return x->chunk < y->chunk;
    int nf;
    uint32_t nd;
    if (!next_level(x->chunk, f, d, &nf, &nd))
        return 0;
    return rec_cmp_from(base + x->off, base + y->off, nf, nd) < 0;
}

static inline void ent_swap(sort_ent *a, sort_ent *b)
{
    sort_ent t = *a;
    *a = *b;
    *b = t;
}

static inline uint64_t median3(uint64_t a, uint64_t b, uint64_t c)
{
    if (a > b) {
        uint64_t t = a;
        a = b;
        b = t;
    }
    return c <= a ? a : c >= b ? b : c;
}

/* An index below n from 21 random bits (a multiply, not a division). */
static inline size_t pick(uint64_t r, size_t n)
{
    return (size_t)(((r & 0x1fffff) * (uint64_t)n) >> 21);
}

/* Sorts a[0..n), whose chunks are loaded for (f, d). Recurses into the two smaller of the
   three parts and loops on the largest, so the stack stays within log2(n) frames. */
static void mkqs(sort_ent *a, size_t n, const unsigned char *base, int f, uint32_t d,
                 uint64_t *rng)
{
    while (n > 1) {
        if (n <= SMALL_GROUP) {
            for (size_t i = 1; i < n; i++) {
                sort_ent t = a[i];
                size_t j = i;
                for (; j > 0 && ent_less(&t, &a[j - 1], base, f, d); j--)
                    a[j] = a[j - 1];
                a[j] = t;
            }
            return;
        }
        /* xorshift64: a pivot no manifest can arrange to be bad every time */
        uint64_t r = *rng;
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        *rng = r;
        uint64_t p = median3(a[pick(r, n)].chunk, a[pick(r >> 21, n)].chunk,
                             a[pick(r >> 42, n)].chunk);
        size_t lt = 0, i = 0, gt = n;
        while (i < gt) {
            if (a[i].chunk < p)
                ent_swap(&a[lt++], &a[i++]);
            else if (a[i].chunk > p)
                ent_swap(&a[i], &a[--gt]);
            else
                i++;
        }
        int ef = 0;
        uint32_t ed = 0;
        size_t ne = gt - lt;
        if (ne > 1 && next_level(p, f, d, &ef, &ed))
            load_chunks(a + lt, ne, base, ef, ed);
        else
            ne = 0; /* sorted already */
        struct {
            sort_ent *a;
            size_t n;
            int f;
            uint32_t d;
        } part[3] = {{a, lt, f, d}, {a + lt, ne, ef, ed}, {a + gt, n - gt, f, d}};
        size_t big = 0;
        for (size_t k = 1; k < 3; k++)
            if (part[k].n > part[big].n)
                big = k;
        for (size_t k = 0; k < 3; k++)
            if (k != big && part[k].n > 1)
                mkqs(part[k].a, part[k].n, base, part[k].f, part[k].d, rng);
        a = part[big].a;
        n = part[big].n;
        f = part[big].f;
        d = part[big].d;
    }
}

/* ---- reading a spool file ---------------------------------------------------------------- */

typedef struct freader {
    int fd;
    const char *dir;            /* borrowed: names the file in messages */
    char name[32];
    ZSTD_DStream *ds;
    unsigned char *in;          /* READ_BYTES */
    size_t in_len, in_pos;
    int eof;
    unsigned char *frame;       /* the decoded frame: whole records */
    size_t frame_len, frame_cap, pos;
    uint64_t rows;              /* records handed out */
} freader;

static void fr_close(freader *fr)
{
    if (fr->fd >= 0)
        close(fr->fd);
    fr->fd = -1;
    ZSTD_freeDStream(fr->ds);
    free(fr->in);
    free(fr->frame);
    fr->ds = NULL;
    fr->in = fr->frame = NULL;
}

static int fr_open(freader *fr, const char *dir, const char *name, char *msg, size_t cap)
{
    memset(fr, 0, sizeof *fr);
    fr->fd = -1;
    fr->dir = dir;
    snprintf(fr->name, sizeof fr->name, "%.*s", (int)sizeof fr->name - 1, name);
    char path[4200];
    if (s3_path_join(path, sizeof path, dir, name) != 0) {
        snprintf(msg, cap, "%s/%s: path too long", dir, name);
        return -1;
    }
    fr->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fr->fd < 0) {
        snprintf(msg, cap, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    fr->in = malloc(READ_BYTES);
    fr->frame = malloc(FRAME_BYTES);
    fr->frame_cap = FRAME_BYTES;
    fr->ds = ZSTD_createDStream();
    /* a frame's window is its content, at most REC_MAX_BYTES: a damaged header asking for
       more is refused instead of allocated (zstd's default limit is 128 MiB) */
    if (!fr->in || !fr->frame || !fr->ds ||
        ZSTD_isError(ZSTD_DCtx_setParameter(fr->ds, ZSTD_d_windowLogMax, 20))) {
        snprintf(msg, cap, "%s: out of memory", path);
        fr_close(fr);
        return -1;
    }
    return 0;
}

/* Decodes the next zstd frame into fr->frame: 1, 0 at the clean end of the file, -1. */
static int fr_load_frame(freader *fr, char *msg, size_t cap)
{
    fr->frame_len = fr->pos = 0;
    int started = 0;
    for (;;) {
        if (fr->frame_len == fr->frame_cap) { /* a frame holding one long record */
            size_t nc = fr->frame_cap * 2;
            unsigned char *nf = nc <= REC_MAX_BYTES ? realloc(fr->frame, nc) : NULL;
            if (!nf) {
                snprintf(msg, cap, "%s/%s: damaged: a frame larger than %zu bytes", fr->dir,
                         fr->name, (size_t)REC_MAX_BYTES);
                return -1;
            }
            fr->frame = nf;
            fr->frame_cap = nc;
        }
        if (fr->in_pos == fr->in_len && !fr->eof) {
            ssize_t k;
            do
                k = read(fr->fd, fr->in, READ_BYTES);
            while (k < 0 && errno == EINTR);
            if (k < 0) {
                snprintf(msg, cap, "cannot read %s/%s: %s", fr->dir, fr->name, strerror(errno));
                return -1;
            }
            fr->in_len = (size_t)k;
            fr->in_pos = 0;
            fr->eof = k == 0;
        }
        ZSTD_inBuffer in = {fr->in, fr->in_len, fr->in_pos};
        ZSTD_outBuffer out = {fr->frame, fr->frame_cap, fr->frame_len};
        size_t ret = ZSTD_decompressStream(fr->ds, &out, &in);
        if (in.pos > fr->in_pos || out.pos > fr->frame_len)
            started = 1;
        fr->in_pos = in.pos;
        fr->frame_len = out.pos;
        if (ZSTD_isError(ret)) {
            snprintf(msg, cap, "%s/%s: damaged: %s (after %llu rows)", fr->dir, fr->name,
                     ZSTD_getErrorName(ret), (unsigned long long)fr->rows);
            return -1;
        }
        if (ret == 0) {
            if (fr->frame_len == 0) {
                snprintf(msg, cap, "%s/%s: damaged: an empty frame (after %llu rows)", fr->dir,
                         fr->name, (unsigned long long)fr->rows);
                return -1;
            }
            return 1;
        }
        if (out.pos < out.size && fr->in_pos == fr->in_len && fr->eof) {
            if (!started)
                return 0;
            snprintf(msg, cap, "%s/%s: damaged: truncated (the file ends inside a frame, "
                     "after %llu rows)", fr->dir, fr->name, (unsigned long long)fr->rows);
            return -1;
        }
    }
}

/* The next record: 1 (v, and fx when not NULL, filled; slices valid until the next call),
   0 at the end of the file, -1 with msg when the file is damaged. */
static int fr_next(freader *fr, rec_view *v, mf_facts *fx, char *msg, size_t cap)
{
    if (fr->pos == fr->frame_len) {
        int rc = fr_load_frame(fr, msg, cap);
        if (rc <= 0)
            return rc;
    }
    const char *why = "";
    size_t n = rec_decode(fr->frame + fr->pos, fr->frame_len - fr->pos, v, fx, &why);
    if (n == 0) {
        snprintf(msg, cap, "%s/%s: damaged: %s (row %llu of the file)", fr->dir, fr->name, why,
                 (unsigned long long)fr->rows + 1);
        return -1;
    }
    fr->pos += n;
    fr->rows++;
    return 1;
}

/* "shard-" 6 or more digits ".zst": a name, never a path. */
static int is_shard_name(const char *s)
{
    if (strncmp(s, "shard-", 6) != 0)
        return 0;
    size_t i = 6;
    while (s[i] >= '0' && s[i] <= '9')
        i++;
    return i >= 12 && i < 24 && strcmp(s + i, ".zst") == 0;
}

/* ---- the build --------------------------------------------------------------------------- */

typedef struct run_file {
    uint32_t id;                /* run-<id>.zst */
    uint64_t rows;
} run_file;

typedef struct build {
    const char *dir;
    uint64_t shard_rows;
    char *msg;
    size_t cap;
    int rc;                     /* -MF_E_* of a failure */
    /* the sort buffer: records from the bottom, sort entries from the top */
    unsigned char *buf;
    size_t buf_cap, limit, used, n;
    uint64_t rng;
    /* runs on disk, oldest first; runs[head..n_runs) are not merged yet */
    run_file *runs;
    size_t n_runs, head, runs_cap;
    uint32_t next_run;
    uint64_t spilled;           /* runs made from the sort buffer */
    /* the one file being written (a run or a shard) */
    ZSTD_CCtx *cctx;
    int fd;                     /* -1: none */
    char name[32];
    unsigned char *frame, *out;
    size_t frame_len, frame_cap, out_len;
    uint64_t file_bytes;
    /* the shards */
    run__spool_index *idx;
    size_t shards_cap;
    int in_shard;
    unsigned char *prev;        /* bucket then key of the last row written to a shard */
    size_t prev_cap, prev_blen, prev_klen;
    int have_prev;
    int from_reader;             /* rc is the manifest's problem (the reader's, or its row) */
} build;

static int fail(build *b, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(build *b, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, b->cap, fmt, ap);
    va_end(ap);
    b->rc = rc;
    return -1;
}

static int w_open(build *b, const char *name)
{
    snprintf(b->name, sizeof b->name, "%.*s", (int)sizeof b->name - 1, name);
    b->frame_len = b->out_len = 0;
    b->file_bytes = 0;
    char path[4200];
    if (s3_path_join(path, sizeof path, b->dir, name) != 0)
        return fail(b, -MF_E_IO, "%s/%s: path too long", b->dir, name);
    b->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, S3_MODE_PRIVATE_FILE);
    if (b->fd < 0)
        return fail(b, -MF_E_IO, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

static int w_drain(build *b)
{
    if (b->out_len && s3_write_all(b->fd, b->out, b->out_len) != 0)
        return fail(b, -MF_E_IO, "cannot write %s/%s: %s", b->dir, b->name, strerror(errno));
    b->file_bytes += b->out_len;
    b->out_len = 0;
    return 0;
}

/* The records gathered so far become one zstd frame. */
static int w_frame(build *b)
{
    if (b->frame_len == 0)
        return 0;
    if (OUT_BYTES - b->out_len < ZSTD_compressBound(b->frame_len) && w_drain(b) != 0)
        return -1;
    ZSTD_CCtx_setPledgedSrcSize(b->cctx, b->frame_len);
    ZSTD_inBuffer in = {b->frame, b->frame_len, 0};
    for (;;) {
        ZSTD_outBuffer out = {b->out, OUT_BYTES, b->out_len};
        size_t left = ZSTD_compressStream2(b->cctx, &out, &in, ZSTD_e_end);
        b->out_len = out.pos;
        if (ZSTD_isError(left))
            return fail(b, -MF_E_IO, "cannot compress %s/%s: %s", b->dir, b->name,
                        ZSTD_getErrorName(left));
        if (left == 0)
            break;
        if (w_drain(b) != 0)
            return -1;
    }
    b->frame_len = 0;
    return 0;
}

static int w_add(build *b, const unsigned char *rec, size_t len)
{
    if (b->frame_len + len > FRAME_BYTES && b->frame_len && w_frame(b) != 0)
        return -1;
    if (len > b->frame_cap) { /* one long record: a frame of its own */
        unsigned char *nf = realloc(b->frame, len);
        if (!nf)
            return fail(b, -MF_E_NOMEM, "spool: out of memory");
        b->frame = nf;
        b->frame_cap = len;
    }
    memcpy(b->frame + b->frame_len, rec, len);
    b->frame_len += len;
    return 0;
}

static int w_close(build *b, int sync)
{
    if (w_frame(b) != 0 || w_drain(b) != 0)
        return -1;
    int fd = b->fd;
    b->fd = -1;
    if (sync && fdatasync(fd) != 0) {
        int e = errno;
        close(fd);
        return fail(b, -MF_E_IO, "cannot write %s/%s: %s", b->dir, b->name, strerror(e));
    }
    if (close(fd) != 0)
        return fail(b, -MF_E_IO, "cannot write %s/%s: %s", b->dir, b->name, strerror(errno));
    return 0;
}

/* ---- shards ---- */

static int shard_open(build *b)
{
    run__spool_index *idx = b->idx;
    if (idx->n_shards == b->shards_cap) {
        size_t nc = b->shards_cap ? b->shards_cap * 2 : 64;
        run__shard_info *ns = realloc(idx->shards, nc * sizeof *ns);
        if (!ns)
            return fail(b, -MF_E_NOMEM, "spool: out of memory");
        idx->shards = ns;
        b->shards_cap = nc;
    }
    run__shard_info *sh = &idx->shards[idx->n_shards];
    memset(sh, 0, sizeof *sh);
    snprintf(sh->file, sizeof sh->file, "shard-%06zu.zst", idx->n_shards);
    sh->first_seq = idx->n_rows;
    if (w_open(b, sh->file) != 0)
        return -1;
    idx->n_shards++;
    b->in_shard = 1;
    return 0;
}

static int shard_close(build *b)
{
    b->in_shard = 0;
    if (w_close(b, 1) != 0)
        return -1;
    run__shard_info *sh = &b->idx->shards[b->idx->n_shards - 1];
    sh->bytes = b->file_bytes;
    b->idx->spool_bytes += b->file_bytes;
    return 0;
}

/* The next row in spool order goes to the current shard, or starts the next one when it
   starts a key and the current shard is full. */
static int shard_row(build *b, const unsigned char *rec, size_t len, s3_slice bucket,
                     s3_slice key)
{
    int same = b->have_prev && bucket.len == b->prev_blen && key.len == b->prev_klen &&
               memcmp(b->prev, bucket.ptr, bucket.len) == 0 &&
               memcmp(b->prev + bucket.len, key.ptr, key.len) == 0;
    if (!same) {
        if (b->in_shard && b->idx->shards[b->idx->n_shards - 1].n_rows >= b->shard_rows &&
            shard_close(b) != 0)
            return -1;
        if (!b->in_shard && shard_open(b) != 0)
            return -1;
        if (bucket.len + key.len > b->prev_cap) {
            size_t nc = bucket.len + key.len + 256;
            unsigned char *np = realloc(b->prev, nc);
            if (!np)
                return fail(b, -MF_E_NOMEM, "spool: out of memory");
            b->prev = np;
            b->prev_cap = nc;
        }
        memcpy(b->prev, bucket.ptr, bucket.len);
        memcpy(b->prev + bucket.len, key.ptr, key.len);
        b->prev_blen = bucket.len;
        b->prev_klen = key.len;
        b->have_prev = 1;
        b->idx->shards[b->idx->n_shards - 1].n_keys++;
        b->idx->n_keys++;
    }
    b->idx->shards[b->idx->n_shards - 1].n_rows++;
    b->idx->n_rows++;
    return w_add(b, rec, len);
}

/* ---- runs ---- */

static void run_name(char out[32], uint32_t id)
{
    snprintf(out, 32, "run-%06u.zst", (unsigned)id);
}

static sort_ent *sort_buffer(build *b)
{
    sort_ent *a = (sort_ent *)(void *)(b->buf + b->buf_cap) - b->n;
    load_chunks(a, b->n, b->buf, 0, 0);
    mkqs(a, b->n, b->buf, 0, 0, &b->rng);
    return a;
}

/* The sorted buffer becomes the next run file. */
static int spill(build *b)
{
    if (b->n_runs == b->runs_cap) {
        size_t nc = b->runs_cap ? b->runs_cap * 2 : 64;
        run_file *nr = realloc(b->runs, nc * sizeof *nr);
        if (!nr)
            return fail(b, -MF_E_NOMEM, "spool: out of memory");
        b->runs = nr;
        b->runs_cap = nc;
    }
    sort_ent *a = sort_buffer(b);
    run_file rf = {b->next_run++, b->n};
    char name[32];
    run_name(name, rf.id);
    if (w_open(b, name) != 0)
        return -1;
    for (size_t i = 0; i < b->n; i++) {
        const unsigned char *rec = b->buf + a[i].off;
        if (w_add(b, rec, 4 + (size_t)get32(rec)) != 0)
            return -1;
    }
    if (w_close(b, 0) != 0) /* a run lives for minutes: a crash starts Preparing again */
        return -1;
    b->runs[b->n_runs++] = rf;
    b->spilled++;
    b->used = b->n = 0;
    return 0;
}

static int add_row(build *b, const mf_entry *e)
{
    int raw = raw_differs(e);
    size_t size = rec_size(e, raw);
    if (size > REC_MAX_BYTES)
        return fail(b, -MF_E_INVALID_CONTENT,
                    "spool: the row at line %llu is %zu bytes, more than a spool row holds "
                    "(%zu)", (unsigned long long)e->line, size, (size_t)REC_MAX_BYTES);
    if (b->n > 0 && b->used + size + (b->n + 1) * sizeof(sort_ent) > b->limit &&
        spill(b) != 0)
        return -1;
    if (size + sizeof(sort_ent) > b->buf_cap) { /* one row longer than the whole budget */
        size_t nc = (size + sizeof(sort_ent) + 15) & ~(size_t)15;
        unsigned char *nb = realloc(b->buf, nc);
        if (!nb)
            return fail(b, -MF_E_NOMEM, "spool: out of memory");
        b->buf = nb;
        b->buf_cap = nc;
    }
    rec_encode(b->buf + b->used, e, raw, size);
    sort_ent *top = (sort_ent *)(void *)(b->buf + b->buf_cap);
    top[-1 - (ptrdiff_t)b->n] = (sort_ent){0, (uint32_t)b->used, 0};
    b->used += size;
    b->n++;
    return 0;
}

typedef struct cursor {
    freader fr;
    rec_view v;
} cursor;

/* The merge's order. The heads of the runs are all near the merge's position in the sorted
   order, so they share long key prefixes: 8 bytes a step inline rather than a call to
   memcmp per comparison (10 M rows: 0.3 s less of 8.7 s). */
typedef struct heap {
    cursor *c;
    size_t n;
    unsigned char at[FAN_IN];   /* cursor indices, a binary min-heap */
} heap;

static inline int bytes_cmp(s3_slice a, s3_slice b)
{
    size_t m = a.len < b.len ? a.len : b.len, i = 0;
    for (; i + 8 <= m; i += 8) {
        uint64_t x, y;
        memcpy(&x, a.ptr + i, 8);
        memcpy(&y, b.ptr + i, 8);
        if (x != y)
            return be64toh(x) < be64toh(y) ? -1 : 1;
    }
    for (; i < m; i++)
        if (a.ptr[i] != b.ptr[i])
            return (unsigned char)a.ptr[i] < (unsigned char)b.ptr[i] ? -1 : 1;
    return (a.len > b.len) - (a.len < b.len);
}

static inline int heap_less(const heap *h, unsigned i, unsigned j)
{
    const rec_view *x = &h->c[i].v, *y = &h->c[j].v;
    int c = bytes_cmp(x->bucket, y->bucket);
    if (!c)
        c = bytes_cmp(x->key, y->key);
    return c ? c < 0 : x->seq < y->seq;
}

static void sift_down(heap *h, size_t i)
{
    unsigned char top = h->at[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n)
            break;
        if (l + 1 < h->n && heap_less(h, h->at[l + 1], h->at[l]))
            l++;
        if (!heap_less(h, h->at[l], top))
            break;
        h->at[i] = h->at[l];
        i = l;
    }
    h->at[i] = top;
}

/* The top moved to its run's next row, which ranks anywhere among the heads: the hole
   goes down along the smaller children to a leaf (one comparison a level), then the row
   climbs back (a level or two): log2(k) + 2 comparisons instead of 2 log2(k). */
static void replace_top(heap *h)
{
    unsigned char x = h->at[0];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n)
            break;
        if (l + 1 < h->n && heap_less(h, h->at[l + 1], h->at[l]))
            l++;
        h->at[i] = h->at[l];
        i = l;
    }
    while (i > 0 && heap_less(h, x, h->at[(i - 1) / 2])) {
        h->at[i] = h->at[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->at[i] = x;
}

/* Merges the k oldest runs into one new run (to_shards 0) or into the shards. */
static int merge(build *b, size_t k, int to_shards)
{
    const run_file *in = b->runs + b->head;
    heap h;
    memset(&h, 0, sizeof h);
    h.c = calloc(k, sizeof *h.c);
    int rc = -1;
    if (!h.c)
        return fail(b, -MF_E_NOMEM, "spool: out of memory");
    for (size_t i = 0; i < k; i++)
        h.c[i].fr.fd = -1;
    for (size_t i = 0; i < k; i++) {
        char name[32];
        run_name(name, in[i].id);
        int r = fr_open(&h.c[i].fr, b->dir, name, b->msg, b->cap);
        if (r == 0)
            r = fr_next(&h.c[i].fr, &h.c[i].v, NULL, b->msg, b->cap);
        if (r < 0 || (r == 0 && fail(b, -MF_E_IO, "%s/%s: damaged: no rows", b->dir, name)))
            goto out;
        h.at[h.n++] = (unsigned char)i;
    }
    for (size_t i = h.n / 2; i-- > 0;)
        sift_down(&h, i);
    run_file made = {b->next_run, 0};
    if (!to_shards) {
        if (b->n_runs == b->runs_cap) {
            size_t nc = b->runs_cap * 2;
            run_file *nr = realloc(b->runs, nc * sizeof *nr);
            if (!nr) {
                fail(b, -MF_E_NOMEM, "spool: out of memory");
                goto out;
            }
            b->runs = nr;
            b->runs_cap = nc;
            in = b->runs + b->head;
        }
        char name[32];
        run_name(name, b->next_run++);
        if (w_open(b, name) != 0)
            goto out;
    }
    while (h.n > 0) {
        unsigned i = h.at[0];
        cursor *t = &h.c[i];
        int r = to_shards ? shard_row(b, t->v.rec, t->v.len, t->v.bucket, t->v.key)
                          : w_add(b, t->v.rec, t->v.len);
        if (r != 0)
            goto out;
        made.rows++;
        r = fr_next(&t->fr, &t->v, NULL, b->msg, b->cap);
        if (r < 0)
            goto out;
        if (r == 0) {
            if (t->fr.rows != in[i].rows) {
                fail(b, -MF_E_IO, "%s/%s: damaged: %llu rows, %llu were written", b->dir,
                     t->fr.name, (unsigned long long)t->fr.rows,
                     (unsigned long long)in[i].rows);
                goto out;
            }
            h.at[0] = h.at[--h.n];
            if (h.n > 1)
                sift_down(&h, 0);
        } else if (h.n > 1) {
            replace_top(&h);
        }
    }
    if (!to_shards) {
        if (w_close(b, 0) != 0)
            goto out;
        b->runs[b->n_runs++] = made;
    }
    rc = 0;
out:
    for (size_t i = 0; i < k; i++) {
        fr_close(&h.c[i].fr);
        char name[32], path[4200];
        run_name(name, in[i].id);
        if (rc == 0 && s3_path_join(path, sizeof path, b->dir, name) == 0)
            unlink(path); /* read: no longer needed (a failure removes every run) */
    }
    free(h.c);
    if (rc == 0)
        b->head += k;
    return rc;
}

/* Removes what an earlier build left in dir: index.json first (so no index ever names a
   missing shard), then run-*, shard-* and index.json.tmp. */
static int clean_dir(const char *dir, char *msg, size_t cap)
{
    char path[4200];
    if (s3_path_join(path, sizeof path, dir, "index.json") != 0) {
        snprintf(msg, cap, "%s: path too long", dir);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(msg, cap, "cannot remove %s: %s", path, strerror(errno));
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(msg, cap, "cannot read the folder %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if ((strncmp(nm, "run-", 4) == 0 || strncmp(nm, "shard-", 6) == 0 ||
             strcmp(nm, "index.json.tmp") == 0) &&
            unlinkat(dirfd(d), nm, 0) != 0 && errno != ENOENT) {
            snprintf(msg, cap, "cannot remove %s/%s: %s", dir, nm, strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

static int sync_dir(build *b)
{
    int fd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(b, -MF_E_IO, "cannot sync the folder %s: %s", b->dir, strerror(e));
    }
    close(fd);
    return 0;
}

static int write_index(build *b)
{
    const run__spool_index *idx = b->idx;
    json_t *shards = json_array();
    for (size_t i = 0; shards && i < idx->n_shards; i++) {
        const run__shard_info *sh = &idx->shards[i];
        if (json_array_append_new(shards, json_pack("{s:s, s:I, s:I, s:I, s:I}", "file",
                                                    sh->file, "first_seq",
                                                    (json_int_t)sh->first_seq, "n_rows",
                                                    (json_int_t)sh->n_rows, "n_keys",
                                                    (json_int_t)sh->n_keys, "bytes",
                                                    (json_int_t)sh->bytes)) != 0) {
            json_decref(shards);
            shards = NULL;
        }
    }
    if (!shards)
        return fail(b, -MF_E_NOMEM, "spool: out of memory");
    json_t *bucket = json_string(idx->first_bucket);
    if (!bucket) {
        json_decref(shards);
        return fail(b, -MF_E_INVALID_CONTENT,
                    "spool: the first row's bucket is not UTF-8 text: not a bucket name");
    }
    json_t *j = json_pack("{s:i, s:I, s:I, s:o, s:I, s:o}", "version", INDEX_VERSION,
                          "n_rows", (json_int_t)idx->n_rows, "n_keys", (json_int_t)idx->n_keys,
                          "first_bucket", bucket, "spool_bytes", (json_int_t)idx->spool_bytes,
                          "shards", shards);
    char *text = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    json_decref(j);
    if (!text)
        return fail(b, -MF_E_NOMEM, "spool: out of memory");
    char path[4200], err[4400];
    int rc = 0;
    if (s3_path_join(path, sizeof path, b->dir, "index.json") != 0)
        rc = fail(b, -MF_E_IO, "%s: path too long", b->dir);
    else if (s3_write_file_atomic(path, text, strlen(text), S3_MODE_PRIVATE_FILE, err,
                                  sizeof err) != S3_E_OK)
        rc = fail(b, -MF_E_IO, "%s", err);
    free(text);
    return rc;
}

/* Everything after the last row: the runs merged (or the buffer sorted) into shards. */
static int finish(build *b)
{
    if (b->n_runs == 0) {
        sort_ent *a = sort_buffer(b);
        for (size_t i = 0; i < b->n; i++) {
            const unsigned char *rec = b->buf + a[i].off;
            uint32_t bn, kn;
            const unsigned char *bp = rec_field(rec, 0, &bn), *kp = rec_field(rec, 1, &kn);
            if (shard_row(b, rec, 4 + (size_t)get32(rec), (s3_slice){(const char *)bp, bn},
                          (s3_slice){(const char *)kp, kn}) != 0)
                return -1;
        }
    } else {
        if (b->n > 0 && spill(b) != 0)
            return -1;
        free(b->buf); /* the merge's readers take its place in the budget */
        b->buf = NULL;
        b->buf_cap = 0;
        while (b->n_runs - b->head > FAN_IN) {
            size_t live = b->n_runs - b->head, k = live - FAN_IN + 1;
            if (merge(b, k < FAN_IN ? k : FAN_IN, 0) != 0)
                return -1;
        }
        if (merge(b, b->n_runs - b->head, 1) != 0)
            return -1;
    }
    if (b->in_shard && shard_close(b) != 0)
        return -1;
    /* shards durable (each fdatasynced, their names too) before the index names them */
    if (sync_dir(b) != 0 || write_index(b) != 0 || sync_dir(b) != 0)
        return -1;
    return 0;
}

int run__spool_build(mf_reader *r, const run__spool_opts *o, run__spool_index *out,
                     int *out_mf_rc, char *msg, size_t cap)
{
    int ignored;
    if (!out_mf_rc)
        out_mf_rc = &ignored;
    memset(out, 0, sizeof *out);
    *out_mf_rc = 0;
    if (!o || !o->dir || !o->dir[0]) {
        snprintf(msg, cap, "spool: no folder");
        *out_mf_rc = -MF_E_IO;
        return -1;
    }
    build b;
    memset(&b, 0, sizeof b);
    b.dir = o->dir;
    b.shard_rows = o->shard_rows ? o->shard_rows : RUN__SHARD_ROWS_DEFAULT;
    b.msg = msg;
    b.cap = cap;
    b.fd = -1;
    b.idx = out;
    b.rng = 0x9e3779b97f4a7c15ull;
    /* offsets in the sort buffer are 32-bit */
    size_t mem = o->sort_mem_bytes ? o->sort_mem_bytes : RUN__SORT_MEM_DEFAULT;
    mem = mem < SORT_MEM_MIN ? SORT_MEM_MIN : mem > ((size_t)2 << 30) ? (size_t)2 << 30 : mem;
    b.limit = b.buf_cap = mem & ~(size_t)15;
    int rc = -1;
    char scratch[512];
    if (s3_mkdir_p(b.dir, S3_MODE_PRIVATE_DIR) != 0 ||
        chmod(b.dir, S3_MODE_PRIVATE_DIR) != 0) { /* private whatever the umask said */
        fail(&b, -MF_E_IO, "cannot create the folder %s: %s", b.dir, strerror(errno));
        goto done;
    }
    if (clean_dir(b.dir, msg, cap) != 0) {
        b.rc = -MF_E_IO;
        goto done;
    }
    b.buf = malloc(b.buf_cap);
    b.frame = malloc(FRAME_BYTES);
    b.frame_cap = FRAME_BYTES;
    b.out = malloc(OUT_BYTES);
    b.cctx = ZSTD_createCCtx();
    if (!b.buf || !b.frame || !b.out || !b.cctx ||
        ZSTD_isError(ZSTD_CCtx_setParameter(b.cctx, ZSTD_c_compressionLevel, ZLEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(b.cctx, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(b.cctx, ZSTD_c_hashLog, ZHASH_LOG))) {
        fail(&b, -MF_E_NOMEM, "spool: out of memory");
        goto done;
    }
    mf_entry e;
    int first = 1;
    for (;;) {
        int nr = mf_next(r, &e, msg, cap); /* its message as it gave it */
        if (nr < 0) {
            b.rc = nr;
            b.from_reader = 1;
            goto done;
        }
        if (nr == 0)
            break;
        if (first) {
            if (e.bucket.len >= sizeof out->first_bucket ||
                memchr(e.bucket.ptr, '\0', e.bucket.len)) {
                fail(&b, -MF_E_INVALID_CONTENT,
                     "spool: line %llu: the bucket (%zu bytes) is not a bucket name",
                     (unsigned long long)e.line, e.bucket.len);
                b.from_reader = 1;
                goto done;
            }
            memcpy(out->first_bucket, e.bucket.ptr, e.bucket.len);
            out->first_bucket[e.bucket.len] = '\0';
            first = 0;
        }
        if (add_row(&b, &e) != 0)
            goto done;
    }
    if (finish(&b) != 0)
        goto done;
    out->n_runs = b.spilled;
    rc = 0;
done:
    if (b.fd >= 0)
        close(b.fd);
    if (rc != 0) {
        clean_dir(b.dir, scratch, sizeof scratch); /* best effort: the next build cleans too */
        run__spool_index_cleanup(out);
        *out_mf_rc = b.from_reader ? b.rc : 0;
    }
    ZSTD_freeCCtx(b.cctx);
    free(b.buf);
    free(b.frame);
    free(b.out);
    free(b.runs);
    free(b.prev);
    return rc;
}

void run__spool_index_cleanup(run__spool_index *idx)
{
    if (!idx)
        return;
    free(idx->shards);
    memset(idx, 0, sizeof *idx);
}

/* ---- index.json -------------------------------------------------------------------------- */

static int bad_index(char *msg, size_t cap, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad_index(char *msg, size_t cap, const char *path, const char *fmt, ...)
{
    int n = snprintf(msg, cap, "%s: damaged: ", path);
    if (n >= 0 && (size_t)n < cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg + n, cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A member that is a non-negative integer, or -1. */
static int get_count(const json_t *obj, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int load_index(json_t *j, const char *path, run__spool_index *out, char *msg,
                      size_t cap)
{
    static const char *const counts[] = {"n_rows", "n_keys", "spool_bytes"};
    uint64_t *dst[] = {&out->n_rows, &out->n_keys, &out->spool_bytes};
    if (!json_is_object(j))
        return bad_index(msg, cap, path, "not a JSON object");
    json_t *ver = json_object_get(j, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != INDEX_VERSION)
        return bad_index(msg, cap, path, "member \"version\" is not %d", INDEX_VERSION);
    for (size_t i = 0; i < 3; i++)
        if (get_count(j, counts[i], dst[i]) != 0)
            return bad_index(msg, cap, path,
                             "member \"%s\" missing or not a non-negative integer", counts[i]);
    json_t *fb = json_object_get(j, "first_bucket");
    if (!json_is_string(fb) || json_string_length(fb) >= sizeof out->first_bucket ||
        strlen(json_string_value(fb)) != json_string_length(fb))
        return bad_index(msg, cap, path,
                         "member \"first_bucket\" missing or not a bucket name (a string of "
                         "at most %zu bytes)", sizeof out->first_bucket - 1);
    memcpy(out->first_bucket, json_string_value(fb), json_string_length(fb) + 1);
    json_t *arr = json_object_get(j, "shards");
    if (!json_is_array(arr))
        return bad_index(msg, cap, path, "member \"shards\" missing or not an array");
    size_t n = json_array_size(arr);
    out->shards = n ? calloc(n, sizeof *out->shards) : NULL;
    if (n && !out->shards)
        return bad_index(msg, cap, path, "out of memory");
    uint64_t rows = 0, keys = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        static const char *const names[] = {"first_seq", "n_rows", "n_keys", "bytes"};
        run__shard_info *sh = &out->shards[i];
        uint64_t *f[] = {&sh->first_seq, &sh->n_rows, &sh->n_keys, &sh->bytes};
        json_t *s = json_array_get(arr, i);
        if (!json_is_object(s))
            return bad_index(msg, cap, path, "shards[%zu] is not an object", i);
        for (size_t k = 0; k < 4; k++)
            if (get_count(s, names[k], f[k]) != 0)
                return bad_index(msg, cap, path,
                                 "shards[%zu].%s missing or not a non-negative integer", i,
                                 names[k]);
        char want[32];
        snprintf(want, sizeof want, "shard-%06zu.zst", i);
        const char *file = json_string_value(json_object_get(s, "file"));
        if (!file || strcmp(file, want) != 0)
            return bad_index(msg, cap, path, "shards[%zu].file is not \"%s\"", i, want);
        memcpy(sh->file, want, strlen(want) + 1);
        if (sh->first_seq != rows)
            return bad_index(msg, cap, path,
                             "shards[%zu].first_seq is %llu, the shards before it end at %llu",
                             i, (unsigned long long)sh->first_seq, (unsigned long long)rows);
        if (sh->n_rows == 0 || sh->n_keys == 0 || sh->n_keys > sh->n_rows || sh->bytes == 0)
            return bad_index(msg, cap, path,
                             "shards[%zu]: %llu rows, %llu keys, %llu bytes: not a shard", i,
                             (unsigned long long)sh->n_rows, (unsigned long long)sh->n_keys,
                             (unsigned long long)sh->bytes);
        rows += sh->n_rows;
        keys += sh->n_keys;
        bytes += sh->bytes;
        out->n_shards = i + 1;
    }
    if (rows != out->n_rows || keys != out->n_keys || bytes != out->spool_bytes)
        return bad_index(msg, cap, path,
                         "the shards add up to %llu rows, %llu keys, %llu bytes; the index "
                         "says %llu, %llu, %llu",
                         (unsigned long long)rows, (unsigned long long)keys,
                         (unsigned long long)bytes, (unsigned long long)out->n_rows,
                         (unsigned long long)out->n_keys,
                         (unsigned long long)out->spool_bytes);
    return 0;
}

int run__spool_index_load(const char *dir, run__spool_index *out, char *msg, size_t cap)
{
    memset(out, 0, sizeof *out);
    char path[4200];
    if (s3_path_join(path, sizeof path, dir, "index.json") != 0) {
        snprintf(msg, cap, "%s: path too long", dir);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return 1;
        snprintf(msg, cap, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(msg, cap, "%s: damaged: line %d: %s", path, je.line, je.text);
        return -1;
    }
    int rc = load_index(j, path, out, msg, cap);
    json_decref(j);
    if (rc != 0)
        run__spool_index_cleanup(out);
    return rc;
}

/* ---- reading a shard --------------------------------------------------------------------- */

struct run__spool_reader {
    freader fr;
    char *dir;                  /* owned copy: fr.dir points here */
    uint64_t first_seq, n_rows, n_read;
    char err[512];              /* "" until a call fails; every later call repeats it */
};

run__spool_reader *run__spool_open(const char *dir, const run__shard_info *sh, char *msg,
                                   size_t cap)
{
    if (!is_shard_name(sh->file)) {
        snprintf(msg, cap, "%s: \"%.40s\" is not a shard file name", dir, sh->file);
        return NULL;
    }
    run__spool_reader *r = calloc(1, sizeof *r);
    char *d = strdup(dir);
    if (!r || !d) {
        free(r);
        free(d);
        snprintf(msg, cap, "%s/%s: out of memory", dir, sh->file);
        return NULL;
    }
    r->dir = d;
    if (fr_open(&r->fr, r->dir, sh->file, msg, cap) != 0) {
        run__spool_close(r);
        return NULL;
    }
    struct stat st;
    if (fstat(r->fr.fd, &st) != 0) {
        snprintf(msg, cap, "cannot read %s/%s: %s", dir, sh->file, strerror(errno));
        run__spool_close(r);
        return NULL;
    }
    if ((uint64_t)st.st_size != sh->bytes) {
        snprintf(msg, cap, "%s/%s: damaged: %lld bytes, index.json says %llu", dir, sh->file,
                 (long long)st.st_size, (unsigned long long)sh->bytes);
        run__spool_close(r);
        return NULL;
    }
    r->first_seq = sh->first_seq;
    r->n_rows = sh->n_rows;
    return r;
}

int run__spool_next(run__spool_reader *r, mf_entry *e, char *msg, size_t cap)
{
    if (r->err[0]) {
        snprintf(msg, cap, "%s", r->err);
        return -1;
    }
    rec_view v;
    int rc = fr_next(&r->fr, &v, &e->facts, r->err, sizeof r->err);
    if (rc == 1 && r->n_read == r->n_rows)
        snprintf(r->err, sizeof r->err, "%s/%s: damaged: more rows than index.json's %llu",
                 r->dir, r->fr.name, (unsigned long long)r->n_rows);
    else if (rc == 1 && memchr(v.key.ptr, '\0', v.key.len))
        snprintf(r->err, sizeof r->err, "%s/%s: damaged: a NUL byte in the key of row %llu",
                 r->dir, r->fr.name, (unsigned long long)r->n_read + 1);
    else if (rc == 0 && r->n_read < r->n_rows)
        snprintf(r->err, sizeof r->err, "%s/%s: damaged: %llu rows, index.json says %llu",
                 r->dir, r->fr.name, (unsigned long long)r->n_read,
                 (unsigned long long)r->n_rows);
    else if (rc == 0)
        return 0;
    if (rc < 0 || r->err[0]) {
        if (!r->err[0])
            snprintf(r->err, sizeof r->err, "%s/%s: damaged", r->dir, r->fr.name);
        snprintf(msg, cap, "%s", r->err);
        return -1;
    }
    e->seq = r->first_seq + r->n_read++;
    e->line = v.seq + v.line_delta;
    e->bucket = v.bucket;
    e->key = v.key;
    e->key_raw = v.key_raw;
    e->has_version = (v.flags & F_VERSION) != 0;
    e->version_id = v.version;
    return 1;
}

void run__spool_close(run__spool_reader *r)
{
    if (!r)
        return;
    fr_close(&r->fr);
    free(r->dir);
    free(r);
}
