/*
 * csv_reader.c — the S3BatchOperations_CSV_20180820 manifest, one entry per mf_next call,
 * in memory that does not depend on the manifest's size. The same row reader reads every
 * data file of an Inventory report and of a completion report (reader.c), with the columns
 * a fileSchema gives, '+' read as a space in Inventory keys, and the Inventory columns
 * IsLatest / IsDeleteMarker (true|false, any case), Size (decimal bytes), LastModifiedDate
 * (ISO-8601), ETag (surrounding quotes dropped), StorageClass and ReplicationStatus parsed
 * into mf_facts (an empty field: fact unknown; a malformed one: "FILE:LINE: field X: ...").
 *
 * Exact format accepted (../shared/aws-formats.md §1.1; every rule AWS lists as a cause of
 * InvalidManifestContent is checked, each with its own message "FILE:LINE: problem"):
 *   - bytes: UTF-8 without a byte-order mark (EF BB BF at offset 0 is rejected), possibly
 *     gzip or zstd compressed (source.c); line numbers count lines of the decompressed text;
 *   - lines end with LF or CRLF; a CR not followed by LF is rejected; the last line may lack
 *     its line end; a line that is empty or only spaces/tabs is rejected, wherever it is
 *     (so a file may end with one line end, not two);
 *   - fields are RFC 4180 (parsed by libcsv in strict mode): comma-separated; a field may be
 *     quoted, with "" for a quote inside; a quote inside an unquoted field, text after a
 *     closing quote, and a quote left open at the end of the file are rejected; a line break
 *     inside a quoted field is rejected (AWS: "no embedded line breaks"); spaces are data
 *     (never trimmed: the report echoes keys byte for byte); fields are at most
 *     MF__FIELD_MAX_BYTES - 1 bytes;
 *   - columns: as mf_csv_opts.fields says (Ignore skips one), else Bucket,Key or
 *     Bucket,Key,VersionId with the first row deciding which; every row must have that many
 *     fields (without Fields, a row of 2 after rows of 3 or the reverse is reported as
 *     "version IDs on some rows only");
 *   - Bucket and Key must not be empty; Key is %-decoded (%XX, either hex case; '+' stays
 *     '+', as AWS's examples encode space as %20) and must decode without error and without
 *     a NUL byte (%00), since an S3 key cannot hold one and the engine uses C strings;
 *     decoded, it is at most MF__KEY_MAX_BYTES (1,024: S3's key limit);
 *   - VersionId is taken as written, at most MF__VERSION_ID_MAX_BYTES (1,024): "null" is the
 *     null version's ID, and an empty field is passed on (has_version 1, empty version_id)
 *     for the engine to fail that one task, as AWS does with empty version IDs.
 *
 * Hot path: libcsv parses from the read buffer into its own field buffer (capped, reused);
 * the fields we keep are copied into one row buffer (reused; every slice points into it and
 * is NUL-terminated) and the key is decoded into a second reused buffer. Nothing is
 * allocated per row. libcsv pushes fields and rows through callbacks while mf_next pulls
 * one entry, so each csv_parse call is fed up to and including the next CR or LF only: it
 * can finish at most one row. That also finds line breaks inside quoted fields: a fed CR/LF
 * that ends no row is one.
 *
 * Memory: 1 MiB read buffer (+1 MiB for decompressed bytes) + libcsv field buffer <= 64 KiB
 * + row buffer 192 KiB + key buffer 64 KiB, fixed at open.
 */
#include "manifest/manifest.h"
#include "manifest/manifest_int.h"

#include <csv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A role is a column we keep: mf__col minus one (MF__COL_IGNORE has none). */
#define N_ROLES (MF__N_COLS - 1)
#define ROLE_BUCKET (MF__COL_BUCKET - 1)
#define ROLE_KEY (MF__COL_KEY - 1)
#define ROLE_VERSION (MF__COL_VERSION_ID - 1)

/* Every kept field fits its own slot: the fact columns are short, but a slot per role keeps
   the bookkeeping one memcpy (16 roles x 64 KiB = 1 MiB, fixed at open). */
#define ROW_BUF_BYTES (N_ROLES * (MF__FIELD_MAX_BYTES + 1))

struct mf__csv {
    mf__source src;
    char display[1024];

    /* columns */
    unsigned char colmap[MF__MAX_COLS]; /* mf__col per column */
    size_t n_cols;            /* expected columns; 0 until the first row when not given */
    int fields_given;
    int has_version;
    int has_role[N_ROLES];
    int plus_is_space;
    int empty_version_is_none;
    char cols_text[MF__MAX_COLS * 24 + 1]; /* "Bucket,Key,VersionId" for messages */
    uint64_t first_row_line;

    /* parsing */
    struct csv_parser csv;
    int csv_live;
    const unsigned char *chunk;
    size_t chunk_len, chunk_pos;
    size_t next_lf, next_cr;  /* positions in chunk; chunk_len when none */
    int first_chunk_seen;
    int src_eof, done;
    uint64_t line;            /* line of the row being parsed */
    int after_cr;             /* the last row ended with CR: its LF may follow */
    unsigned rows_ended;      /* row callbacks during the current csv_parse call */

    /* the row being collected */
    size_t nf;
    size_t off[N_ROLES], len[N_ROLES];
    int first_field_blank;    /* field 1 is non-empty and only spaces/tabs */
    char *row;
    size_t row_len;
    char *keybuf;
    char last_bucket[256];    /* the last bucket name found valid ("" none): rows of one
                                 bucket are checked once. Room for the longest name S3
                                 accepts (255, older us-east-1 buckets) */

    /* output */
    uint64_t seq;
    int ready;
    mf_entry entry;
    int err;                  /* MF_E_*: sticky, every later mf_next returns it */
    char msg[1024 + 1024 + 32]; /* display name + problem + line */
};

/* ---- errors and field parsing ---------------------------------------------------------- */

#define S3_ERR_NAME_PREFIX "MF_E_"
S3_ERROR_FUNCS(mf, MF_ERRNO_MAP, "unknown manifest error")

static const char *const FIELD_NAMES[MF__N_COLS] = {
    "Ignore",         "Bucket", "Key",          "VersionId",        "IsLatest", "IsDeleteMarker",
    "Size", "LastModifiedDate", "ETag", "StorageClass", "ReplicationStatus",
    "EncryptionStatus", "ObjectLockRetainUntilDate", "ObjectLockMode",
    "ObjectLockLegalHoldStatus", "BucketKeyStatus", "ObjectAccessControlList"};

const char *mf__col_name(mf__col c)
{
    return (unsigned)c < MF__N_COLS ? FIELD_NAMES[c] : "Ignore";
}

int mf_field_parse(const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i <= MF_FIELD_VERSION_ID; i++) /* JobManifestSpec.Fields names only */
        if (strcmp(name, FIELD_NAMES[i]) == 0)
            return (int)i;
    return -1;
}

/* ---- messages ---------------------------------------------------------------------------- */

static void fail(mf__csv *r, int code, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(mf__csv *r, int code, uint64_t line, const char *fmt, ...)
{
    if (r->err)
        return; /* keep the first problem */
    char problem[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    snprintf(r->msg, sizeof r->msg, "%s:%llu: %s", r->display, (unsigned long long)line,
             problem);
    r->err = code;
}

/* "Key", or "4 (Ignore)" / "4" for a column that is not Bucket/Key/VersionId. 1-based. */
static const char *col_label(const mf__csv *r, size_t idx, char *buf, size_t cap)
{
    unsigned f = idx < MF__MAX_COLS ? r->colmap[idx] : MF__COL_IGNORE;
    int in_schema = r->fields_given ? idx < r->n_cols : idx < 3;
    if (in_schema && f != MF__COL_IGNORE)
        return FIELD_NAMES[f];
    if (in_schema)
        snprintf(buf, cap, "%zu (Ignore)", idx + 1);
    else
        snprintf(buf, cap, "%zu", idx + 1);
    return buf;
}

/* Writes up to 3 bytes from s as readable text: printable ASCII as is, others as \xNN. */
static void excerpt(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < len && i < 3 && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
    }
    out[o] = '\0';
}

/* Where the first byte that is not UTF-8 (RFC 3629: no overlong forms, no surrogates, at
   most U+10FFFF) is, or len when all are. ASCII, most keys, costs one test per byte. */
static size_t utf8_invalid_at(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4                          ? 4 : 0;
        if (n == 0 || i + n > len)
            return i;
        unsigned c1 = p[i + 1];
        unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80; /* overlong */
        unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF; /* surrogates, > U+10FFFF */
        if (c1 < lo || c1 > hi)
            return i;
        for (size_t k = 2; k < n; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
        i += n;
    }
    return len;
}

/* ---- libcsv callbacks ---------------------------------------------------------------------- */

static int no_space(unsigned char c)
{
    (void)c;
    return 0; /* spaces and tabs are data: keys keep them */
}

/* libcsv grows its field buffer with this; refusing past the cap stops a runaway field. */
static void *capped_realloc(void *p, size_t n)
{
    return n > MF__FIELD_MAX_BYTES ? NULL : realloc(p, n);
}

static void bare_cr(mf__csv *r)
{
    fail(r, MF_E_INVALID_CONTENT, r->line - 1,
         "line ends with a bare CR (carriage return without line feed); use LF or CRLF");
}

static void on_field(void *data, size_t len, void *user)
{
    mf__csv *r = user;
    if (r->err)
        return;
    if (r->after_cr) {
        bare_cr(r);
        return;
    }
    size_t idx = r->nf++;
    if (idx == 0) {
        const char *p = data;
        size_t i = 0;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        r->first_field_blank = len > 0 && i == len;
    }
    if (idx >= MF__MAX_COLS || r->colmap[idx] == MF__COL_IGNORE)
        return;
    int role = r->colmap[idx] - 1;
    /* Fits: each role appears once and each field is < MF__FIELD_MAX_BYTES (libcsv cap). */
    r->off[role] = r->row_len;
    r->len[role] = len;
    memcpy(r->row + r->row_len, data, len);
    r->row[r->row_len + len] = '\0';
    r->row_len += len + 1;
}

static void reset_row(mf__csv *r)
{
    memset(r->len, 0, sizeof r->len); /* a column the row lacks reads as empty */
    r->nf = 0;
    r->row_len = 0;
    r->first_field_blank = 0;
}

static s3_slice role_slice(const mf__csv *r, int role)
{
    s3_slice s = {r->row + r->off[role], r->len[role]};
    return s;
}

static int field_is(s3_slice f, const char *word)
{
    size_t n = strlen(word);
    return f.len == n && strncasecmp(f.ptr, word, n) == 0;
}

/* "true" / "false" (any case, as inventories write lowercase). */
static int parse_bool(mf__csv *r, uint64_t line, int role, int *out)
{
    s3_slice f = role_slice(r, role);
    if (field_is(f, "true")) {
        *out = 1;
        return 0;
    }
    if (field_is(f, "false")) {
        *out = 0;
        return 0;
    }
    char ex[32];
    excerpt(f.ptr, f.len, ex, sizeof ex);
    fail(r, MF_E_INVALID_CONTENT, line, "field %s: expected true or false, found \"%s%s\"",
         FIELD_NAMES[role + 1], ex, f.len > 3 ? "..." : "");
    return -1;
}

/* One of words (upper case) that f spells in any case, copied upper case into out; else an
   error naming the field. */
static int parse_word(mf__csv *r, uint64_t line, int role, const char *const *words,
                      char *out, size_t cap)
{
    s3_slice f = role_slice(r, role);
    for (; *words; words++) {
        size_t n = strlen(*words);
        if (f.len == n && n < cap && strncasecmp(f.ptr, *words, n) == 0) {
            memcpy(out, *words, n + 1);
            return 0;
        }
    }
    fail(r, MF_E_INVALID_CONTENT, line, "field %s: unknown value \"%.40s\"",
         FIELD_NAMES[role + 1], f.ptr);
    return -1;
}

/* The optional columns that let a version be copied without HeadObject or GetObjectAcl
   (aws-formats.md §2.3): encryption, Object Lock, bucket key, the object ACL. Lock facts
   count as known only when all three lock columns are in the schema (an empty field there
   means "no lock"); the ACL stays base64 text for the engine to decode. */
static int take_more_facts(mf__csv *r, uint64_t line, mf_facts *fx)
{
    static const char *const sse[] = {"NOT-SSE", "SSE-S3", "SSE-KMS", "SSE-C", "DSSE-KMS",
                                      NULL};
    static const char *const modes[] = {"GOVERNANCE", "COMPLIANCE", NULL};
    static const char *const holds[] = {"ON", "OFF", NULL};
    static const char *const bkey[] = {"ENABLED", "DISABLED", NULL};
    int role = MF__COL_ENCRYPTION_STATUS - 1;
    if (r->has_role[role] && r->len[role]) {
        if (parse_word(r, line, role, sse, fx->encryption, sizeof fx->encryption))
            return -1;
        fx->known |= MF_FACT_ENCRYPTION;
    }
    int lu = MF__COL_LOCK_UNTIL - 1, lm = MF__COL_LOCK_MODE - 1, lh = MF__COL_LEGAL_HOLD - 1;
    if (r->has_role[lu] && r->has_role[lm] && r->has_role[lh]) {
        if (r->len[lm] && parse_word(r, line, lm, modes, fx->lock_mode, sizeof fx->lock_mode))
            return -1;
        if (r->len[lh] && parse_word(r, line, lh, holds, fx->legal_hold, sizeof fx->legal_hold))
            return -1;
        if (r->len[lu]) {
            s3_slice f = role_slice(r, lu);
            int64_t ms;
            if (f.len >= sizeof fx->lock_until || s3_parse_time_ms(f.ptr, &ms) != 0) {
                fail(r, MF_E_INVALID_CONTENT, line,
                     "field ObjectLockRetainUntilDate: not an ISO-8601 time "
                     "(2030-01-01T00:00:00.000Z): \"%.40s\"", f.ptr);
                return -1;
            }
            memcpy(fx->lock_until, f.ptr, f.len + 1);
        }
        if (!fx->lock_mode[0] != !fx->lock_until[0]) {
            fail(r, MF_E_INVALID_CONTENT, line, "fields ObjectLockMode and "
                 "ObjectLockRetainUntilDate: one is set, the other empty");
            return -1;
        }
        fx->known |= MF_FACT_LOCK;
    }
    role = MF__COL_BUCKET_KEY - 1;
    if (r->has_role[role] && r->len[role]) {
        char v[16];
        if (parse_word(r, line, role, bkey, v, sizeof v))
            return -1;
        fx->bucket_key = strcmp(v, "ENABLED") == 0;
        fx->known |= MF_FACT_BUCKET_KEY;
    }
    role = MF__COL_ACL - 1;
    if (r->has_role[role] && r->len[role]) {
        fx->acl = role_slice(r, role);
        fx->known |= MF_FACT_ACL;
    }
    return 0;
}

/* The Inventory columns that describe the version. An empty field (a delete marker has no
   Size, ETag or StorageClass) leaves its fact unknown; a malformed one is an error. */
static int take_facts(mf__csv *r, uint64_t line, mf_facts *fx)
{
    memset(fx, 0, sizeof *fx);
    if (r->has_role[MF__COL_IS_DELETE_MARKER - 1] && r->len[MF__COL_IS_DELETE_MARKER - 1]) {
        if (parse_bool(r, line, MF__COL_IS_DELETE_MARKER - 1, &fx->is_delete_marker))
            return -1;
        fx->known |= MF_FACT_DELETE_MARKER;
    }
    if (r->has_role[MF__COL_IS_LATEST - 1] && r->len[MF__COL_IS_LATEST - 1]) {
        if (parse_bool(r, line, MF__COL_IS_LATEST - 1, &fx->is_latest))
            return -1;
        fx->known |= MF_FACT_LATEST;
    }
    int role = MF__COL_SIZE - 1;
    if (r->has_role[role] && r->len[role]) {
        s3_slice f = role_slice(r, role);
        int64_t v = 0;
        size_t i = 0;
        for (; i < f.len && f.ptr[i] >= '0' && f.ptr[i] <= '9' && v < (INT64_MAX - 9) / 10; i++)
            v = v * 10 + (f.ptr[i] - '0');
        if (i != f.len) {
            char ex[32];
            excerpt(f.ptr, f.len, ex, sizeof ex);
            fail(r, MF_E_INVALID_CONTENT, line,
                 "field Size: expected a number of bytes, found \"%s%s\"", ex,
                 f.len > 3 ? "..." : "");
            return -1;
        }
        fx->size = v;
        fx->known |= MF_FACT_SIZE;
    }
    role = MF__COL_LAST_MODIFIED - 1;
    if (r->has_role[role] && r->len[role]) {
        s3_slice f = role_slice(r, role);
        if (s3_parse_time_ms(f.ptr, &fx->last_modified_ms) != 0) {
            fail(r, MF_E_INVALID_CONTENT, line,
                 "field LastModifiedDate: not an ISO-8601 time (2024-04-12T06:45:57.000Z): "
                 "\"%.40s\"",
                 f.ptr);
            return -1;
        }
        fx->known |= MF_FACT_LAST_MODIFIED;
    }
    role = MF__COL_ETAG - 1;
    if (r->has_role[role] && r->len[role]) {
        s3_slice f = role_slice(r, role);
        if (f.len >= 2 && f.ptr[0] == '"' && f.ptr[f.len - 1] == '"') {
            f.ptr++;
            f.len -= 2;
        }
        fx->etag = f;
        fx->known |= MF_FACT_ETAG;
    }
    role = MF__COL_STORAGE_CLASS - 1;
    if (r->has_role[role] && r->len[role]) {
        s3_slice f = role_slice(r, role);
        if (f.len >= sizeof fx->storage_class) {
            fail(r, MF_E_INVALID_CONTENT, line, "field StorageClass: unknown class \"%.40s\"",
                 f.ptr);
            return -1;
        }
        memcpy(fx->storage_class, f.ptr, f.len);
        fx->storage_class[f.len] = '\0';
        fx->known |= MF_FACT_STORAGE_CLASS;
    }
    role = MF__COL_REPLICATION_STATUS - 1;
    if (r->has_role[role] && r->len[role]) {
        s3_slice f = role_slice(r, role);
        snprintf(fx->replication_status, sizeof fx->replication_status, "%.*s", (int)f.len,
                 f.ptr);
        fx->known |= MF_FACT_REPLICATION_STATUS;
    }
    return take_more_facts(r, line, fx);
}

/* Checks a complete row; on success fills r->entry and sets r->ready. */
/* Long on purpose (~95 lines): every check of one row in the order of its fields, each
   with the message that names the line and field. */
static void take_row(mf__csv *r, uint64_t line)
{
    size_t n = r->nf;
    if (r->fields_given) {
        if (n != r->n_cols) {
            fail(r, MF_E_INVALID_CONTENT, line, "expected %zu fields (%s), found %zu",
                 r->n_cols, r->cols_text, n);
            return;
        }
    } else if (r->n_cols == 0) { /* the first row decides */
        if (n != 2 && n != 3) {
            fail(r, MF_E_INVALID_CONTENT, line,
                 "expected 2 fields (Bucket,Key) or 3 (Bucket,Key,VersionId), found %zu", n);
            return;
        }
        r->n_cols = n;
        r->has_version = n == 3;
        r->first_row_line = line;
        snprintf(r->cols_text, sizeof r->cols_text, "%s",
                 n == 3 ? "Bucket,Key,VersionId" : "Bucket,Key");
    } else if (n != r->n_cols) {
        if (n == 2 || n == 3) {
            fail(r, MF_E_INVALID_CONTENT, line,
                 "version IDs on some rows only: this row has %s but row %llu has %s",
                 n == 3 ? "one" : "none", (unsigned long long)r->first_row_line,
                 r->has_version ? "one" : "none");
        } else {
            fail(r, MF_E_INVALID_CONTENT, line, "expected %zu fields (%s), found %zu",
                 r->n_cols, r->cols_text, n);
        }
        return;
    }
    if (r->len[ROLE_BUCKET] == 0) {
        fail(r, MF_E_INVALID_CONTENT, line, "field Bucket: empty");
        return;
    }
    if (r->len[ROLE_KEY] == 0) {
        fail(r, MF_E_INVALID_CONTENT, line, "field Key: empty");
        return;
    }
    s3_slice bucket = role_slice(r, ROLE_BUCKET);
    if (bucket.len >= sizeof r->last_bucket || memcmp(r->last_bucket, bucket.ptr, bucket.len) ||
        r->last_bucket[bucket.len]) {
        const char *why = s3_bucket_name_problem(bucket);
        if (why) {
            char ex[32] = "";
            excerpt(bucket.ptr, bucket.len, ex, sizeof ex);
            fail(r, MF_E_INVALID_CONTENT, line, "field Bucket: \"%s\" is not a bucket name: %s",
                 ex, why);
            return;
        }
        if (bucket.len < sizeof r->last_bucket) { /* always, as names go; never past it */
            memcpy(r->last_bucket, bucket.ptr, bucket.len);
            r->last_bucket[bucket.len] = '\0';
        }
    }

    /* AWS reads a manifest as UTF-8 (aws-formats.md §1.1) and the report echoes Key and
       VersionId as written (§5.5): raw bytes that are not UTF-8 would make the report not
       UTF-8 either. Such a key is written %-encoded (%XX). */
    static const struct { int role; const char *name; } echoed[] = {
        {ROLE_KEY, "Key"}, {ROLE_VERSION, "VersionId"}};
    for (size_t i = 0; i < (r->has_version ? 2u : 1u); i++) {
        s3_slice f = role_slice(r, echoed[i].role);
        size_t at = utf8_invalid_at(f.ptr, f.len);
        if (at < f.len) {
            char ex[32] = "";
            excerpt(f.ptr + at, f.len - at, ex, sizeof ex);
            fail(r, MF_E_INVALID_CONTENT, line,
                 "field %s: not UTF-8 at byte %zu (\"%s\"); a manifest is UTF-8, and a key's "
                 "other bytes are written %%-encoded (%%XX)",
                 echoed[i].name, at + 1, ex);
            return;
        }
    }

    s3_slice raw = role_slice(r, ROLE_KEY);
    memcpy(r->keybuf, raw.ptr, raw.len);
    size_t bad_at = 0;
    long klen = s3_uri_decode_inplace(r->keybuf, raw.len, r->plus_is_space, &bad_at);
    if (klen < 0) {
        char ex[32] = "";
        if (bad_at < raw.len)
            excerpt(raw.ptr + bad_at, raw.len - bad_at, ex, sizeof ex);
        fail(r, MF_E_INVALID_CONTENT, line, "field Key: invalid %%-escape at byte %zu (\"%s\")",
             bad_at + 1, ex);
        return;
    }
    r->keybuf[klen] = '\0';
    const char *nul = memchr(r->keybuf, '\0', (size_t)klen);
    if (nul) {
        fail(r, MF_E_INVALID_CONTENT, line,
             "field Key: decodes to a NUL byte (%%00) at byte %zu of the decoded key; an S3 "
             "key cannot hold one",
             (size_t)(nul - r->keybuf) + 1);
        return;
    }
    if ((size_t)klen > MF__KEY_MAX_BYTES) {
        char ex[32] = "";
        excerpt(r->keybuf, (size_t)klen, ex, sizeof ex);
        fail(r, MF_E_INVALID_CONTENT, line,
             "field Key: \"%s...\" is %ld bytes once decoded; an S3 key is at most %u bytes",
             ex, klen, MF__KEY_MAX_BYTES);
        return;
    }
    if (r->has_version && r->len[ROLE_VERSION] > MF__VERSION_ID_MAX_BYTES) {
        char ex[32] = "";
        excerpt(r->row + r->off[ROLE_VERSION], r->len[ROLE_VERSION], ex, sizeof ex);
        fail(r, MF_E_INVALID_CONTENT, line,
             "field VersionId: \"%s...\" is %zu bytes; a version ID is at most %u bytes", ex,
             r->len[ROLE_VERSION], MF__VERSION_ID_MAX_BYTES);
        return;
    }

    mf_entry *e = &r->entry;
    if (take_facts(r, line, &e->facts) != 0)
        return;
    e->seq = r->seq++;
    e->line = line;
    e->bucket = bucket;
    e->key_raw = raw;
    e->key.ptr = r->keybuf;
    e->key.len = (size_t)klen;
    e->has_version = r->has_version;
    if (r->has_version && r->empty_version_is_none && r->len[ROLE_VERSION] == 0)
        e->has_version = 0; /* a report row of a manifest without version IDs */
    if (e->has_version) {
        e->version_id = role_slice(r, ROLE_VERSION);
    } else {
        e->version_id.ptr = "";
        e->version_id.len = 0;
    }
    r->ready = 1;
}

static void on_row(int c, void *user)
{
    mf__csv *r = user;
    r->rows_ended++;
    if (r->err)
        return;
    if (r->nf == 0) { /* nothing between two line ends */
        if (r->after_cr && c == '\n') {
            r->after_cr = 0; /* the LF of a CRLF */
            return;
        }
        if (r->after_cr)
            bare_cr(r);
        else
            fail(r, MF_E_INVALID_CONTENT, r->line, "empty line");
        return;
    }
    uint64_t line = r->line;
    if (r->nf == 1 && r->first_field_blank) {
        fail(r, MF_E_INVALID_CONTENT, line, "empty line (only spaces or tabs)");
        return;
    }
    take_row(r, line);
    reset_row(r);
    if (c == '\r' || c == '\n')
        r->line++;
    r->after_cr = c == '\r';
}

/* ---- open / next / close ----------------------------------------------------------------- */

/* Columns from cfg: n_cols == 0 is the CSV default (Bucket,Key[,VersionId], the first row
   decides); else exactly cfg->n_cols columns, each role at most once, Bucket and Key
   required (the callers check that with their own words first; this is the backstop). */
static int setup_columns(mf__csv *r, const mf__csv_cfg *cfg, char *err, size_t err_len)
{
    memset(r->colmap, MF__COL_IGNORE, sizeof r->colmap);
    r->plus_is_space = cfg && cfg->plus_is_space;
    r->empty_version_is_none = cfg && cfg->empty_version_is_none;
    if (!cfg || cfg->n_cols == 0) {
        r->colmap[0] = MF__COL_BUCKET;
        r->colmap[1] = MF__COL_KEY;
        r->colmap[2] = MF__COL_VERSION_ID;
        r->has_role[ROLE_BUCKET] = r->has_role[ROLE_KEY] = r->has_role[ROLE_VERSION] = 1;
        return 0;
    }
    if (cfg->n_cols > MF__MAX_COLS) {
        snprintf(err, err_len, "%s: %zu columns, at most %d are supported", r->display,
                 cfg->n_cols, MF__MAX_COLS);
        return -MF_E_INVALID_SPEC;
    }
    size_t o = 0;
    for (size_t i = 0; i < cfg->n_cols; i++) {
        unsigned f = cfg->cols[i];
        if (f >= MF__N_COLS) {
            snprintf(err, err_len, "%s: column %zu has an unknown value %u", r->display, i + 1,
                     f);
            return -MF_E_INVALID_SPEC;
        }
        if (f != MF__COL_IGNORE && r->has_role[f - 1]++) {
            snprintf(err, err_len, "%s: %s appears more than once", r->display,
                     FIELD_NAMES[f]);
            return -MF_E_INVALID_SPEC;
        }
        r->colmap[i] = (unsigned char)f;
        if (o < sizeof r->cols_text)
            o += (size_t)snprintf(r->cols_text + o, sizeof r->cols_text - o, "%s%s",
                                  i ? "," : "", FIELD_NAMES[f]);
    }
    if (!r->has_role[ROLE_BUCKET] || !r->has_role[ROLE_KEY]) {
        snprintf(err, err_len, "%s: must name a Bucket and a Key column (got %s)", r->display,
                 r->cols_text);
        return -MF_E_INVALID_SPEC;
    }
    r->fields_given = 1;
    r->n_cols = cfg->n_cols;
    r->has_version = r->has_role[ROLE_VERSION] != 0;
    return 0;
}

mf__csv *mf__csv_open(const char *path, const char *display, const mf__csv_cfg *cfg,
                      char *err, size_t err_len)
{
    mf__csv *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, err_len, "%s: out of memory", path);
        return NULL;
    }
    r->src.fd = -1;
    snprintf(r->display, sizeof r->display, "%s", display ? display : path);
    if (setup_columns(r, cfg, err, err_len) < 0) {
        free(r);
        return NULL;
    }
    r->row = malloc(ROW_BUF_BYTES);
    r->keybuf = malloc(MF__FIELD_MAX_BYTES + 1);
    if (!r->row || !r->keybuf) {
        snprintf(err, err_len, "%s: out of memory", r->display);
        mf__csv_close(r);
        return NULL;
    }
    if (csv_init(&r->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) != 0) {
        snprintf(err, err_len, "%s: cannot start the CSV parser", r->display);
        mf__csv_close(r);
        return NULL;
    }
    r->csv_live = 1;
    csv_set_space_func(&r->csv, no_space);
    csv_set_realloc_func(&r->csv, capped_realloc);
    csv_set_blk_size(&r->csv, 4096);
    char serr[512];
    if (mf__source_open(&r->src, path, serr, sizeof serr) < 0) {
        snprintf(err, err_len, "%s", serr);
        mf__csv_close(r);
        return NULL;
    }
    r->line = 1;
    return r;
}

/* A csv_parse call stopped early: a strict-mode quoting error or the field cap. */
static void parse_stopped(mf__csv *r)
{
    char lbl[32];
    const char *col = col_label(r, r->nf, lbl, sizeof lbl);
    int e = csv_error(&r->csv);
    if (e == CSV_EPARSE) {
        fail(r, MF_E_INVALID_CONTENT, r->line,
             "field %s: stray '\"' (a quote inside an unquoted field or text after a closing "
             "quote); quote the whole field and double the quotes inside it",
             col);
    } else if (e == CSV_ENOMEM && csv_get_buffer_size(&r->csv) >= MF__FIELD_MAX_BYTES) {
        fail(r, MF_E_INVALID_CONTENT, r->line, "field %s: longer than %u bytes", col,
             MF__FIELD_MAX_BYTES - 1);
    } else {
        fail(r, e == CSV_ENOMEM ? MF_E_NOMEM : MF_E_INVALID_CONTENT, r->line,
             "CSV parser: %s", csv_strerror(e));
    }
}

#define NOT_SEARCHED SIZE_MAX

/* Positions of the next LF and CR at or after chunk_pos (chunk_len: none), searched once
   per occurrence, so a chunk is scanned O(n) times in all even when CRs are rare. */
static void find_breaks(mf__csv *r)
{
    const unsigned char *p = r->chunk + r->chunk_pos;
    size_t left = r->chunk_len - r->chunk_pos;
    if (r->next_lf == NOT_SEARCHED || r->next_lf < r->chunk_pos) {
        const unsigned char *q = memchr(p, '\n', left);
        r->next_lf = q ? (size_t)(q - r->chunk) : r->chunk_len;
    }
    if (r->next_cr == NOT_SEARCHED || r->next_cr < r->chunk_pos) {
        const unsigned char *q = memchr(p, '\r', left);
        r->next_cr = q ? (size_t)(q - r->chunk) : r->chunk_len;
    }
}

/* Lines at most this long may take the fast path. libcsv only fails a field once it reaches
   its capped buffer (MF__FIELD_MAX_BYTES = 64 KiB), so below 4 KiB both paths accept exactly
   the same lines; longer ones are rare and go through libcsv, which words the error. */
#define FAST_LINE_MAX_BYTES 4096u

/*
 * The common line: complete in this chunk, ended by a lone LF, no CR in it, libcsv between
 * rows, and every field either unquoted without any '"' or wholly quoted with no '"' inside
 * ("a","b,c" as S3 Inventory writes every field). Its fields are then exactly what libcsv's
 * strict mode yields (the bytes between commas, or between the quotes; no trimming: the
 * space function says no byte is a space), so they go straight to on_field/on_row, the same
 * checks as the libcsv path. The line is split first and fed only when all of it has the
 * simple form; anything else (a doubled quote, text after a closing quote, a quote inside an
 * unquoted field, too many columns) goes to libcsv, which words the error. Measured on the
 * 2,000,000-row bench manifest (88 bytes a row): libcsv's per-byte state machine was 26% of
 * the profile and the reader ran 1.2-1.4 M rows/s; with this path it runs 6.4-7.8 M rows/s
 * (bench/RESULTS.md). Returns 1 when it consumed the line.
 */
static int feed_fast(mf__csv *r, size_t end)
{
    size_t n = end - r->chunk_pos;
    if (r->csv.pstate != 0 || r->csv.entry_pos != 0 || r->after_cr || r->nf != 0 || n == 0 ||
        n >= FAST_LINE_MAX_BYTES)
        return 0;
    const char *p = (const char *)r->chunk + r->chunk_pos, *stop = p + n; /* *stop is LF */
    const char *fs[MF__MAX_COLS];
    size_t fl[MF__MAX_COLS], k = 0;
    for (;;) {
        const char *fe;
        if (k == MF__MAX_COLS)
            return 0;
        if (*p == '"') {
            const char *q = memchr(p + 1, '"', (size_t)(stop - p - 1));
            if (!q || (q + 1 < stop && q[1] != ','))
                return 0;
            fs[k] = p + 1;
            fl[k++] = (size_t)(q - p - 1);
            fe = q + 1;
        } else {
            const char *comma = memchr(p, ',', (size_t)(stop - p));
            fe = comma ? comma : stop;
            if (memchr(p, '"', (size_t)(fe - p)))
                return 0;
            fs[k] = p;
            fl[k++] = (size_t)(fe - p);
        }
        if (fe == stop)
            break;
        p = fe + 1;
    }
    for (size_t i = 0; i < k; i++)
        on_field((void *)fs[i], fl[i], r);
    r->rows_ended = 0;
    on_row('\n', r);
    r->chunk_pos = end + 1;
    return 1;
}

/* Feeds libcsv up to and including the next CR or LF of the current chunk. */
static void feed(mf__csv *r)
{
    find_breaks(r);
    size_t end = r->next_lf < r->next_cr ? r->next_lf : r->next_cr;
    int ends_line = end < r->chunk_len;
    if (ends_line && end == r->next_lf && feed_fast(r, end))
        return;
    size_t n = (ends_line ? end + 1 : r->chunk_len) - r->chunk_pos;
    r->rows_ended = 0;
    size_t used = csv_parse(&r->csv, r->chunk + r->chunk_pos, n, on_field, on_row, r);
    r->chunk_pos += n;
    if (r->err)
        return;
    if (used < n) {
        parse_stopped(r);
        return;
    }
    if (ends_line && r->rows_ended == 0) {
        char lbl[32];
        fail(r, MF_E_INVALID_CONTENT, r->line,
             "field %s: line break inside a quoted field (fields must not span lines)",
             col_label(r, r->nf, lbl, sizeof lbl));
    }
}

static void next_chunk(mf__csv *r)
{
    char problem[512];
    int rc = mf__source_read(&r->src, &r->chunk, &r->chunk_len, problem, sizeof problem);
    r->chunk_pos = 0;
    r->next_lf = r->next_cr = NOT_SEARCHED;
    if (rc < 0) {
        r->chunk_len = 0;
        fail(r, -rc, r->line, "%s", problem);
        return;
    }
    if (rc == 0) {
        r->chunk_len = 0;
        r->src_eof = 1;
        return;
    }
    if (!r->first_chunk_seen) {
        r->first_chunk_seen = 1;
        if (r->chunk_len >= 3 && memcmp(r->chunk, "\xEF\xBB\xBF", 3) == 0)
            fail(r, MF_E_INVALID_CONTENT, 1,
                 "starts with a UTF-8 byte-order mark; save it without BOM");
    }
}

static void finish(mf__csv *r)
{
    r->rows_ended = 0;
    if (csv_fini(&r->csv, on_field, on_row, r) != 0 && !r->err) {
        char lbl[32];
        fail(r, MF_E_INVALID_CONTENT, r->line,
             "field %s: quoted field not closed before the end of the file",
             col_label(r, r->nf, lbl, sizeof lbl));
    }
    r->done = 1;
}

int mf__csv_next(mf__csv *r, mf_entry *out, char *err, size_t err_len)
{
    for (;;) {
        if (r->ready) {
            r->ready = 0;
            *out = r->entry;
            return 1;
        }
        if (r->err) {
            snprintf(err, err_len, "%s", r->msg);
            return -r->err;
        }
        if (r->done)
            return 0;
        if (r->chunk_pos < r->chunk_len)
            feed(r);
        else if (!r->src_eof)
            next_chunk(r);
        else
            finish(r);
    }
}

void mf__csv_close(mf__csv *r)
{
    if (!r)
        return;
    if (r->csv_live)
        csv_free(&r->csv);
    mf__source_close(&r->src);
    free(r->row);
    free(r->keybuf);
    free(r);
}
