/*
 * manifest_int.h — internals shared by the files of manifest/. Never included from outside
 * this folder.
 *
 * source.c turns a local file (plain, gzip or zstd, told apart by magic bytes) into chunks of
 * decompressed bytes; csv_reader.c parses those chunks into entries.
 */
#ifndef BATCHREP_MANIFEST_INT_H
#define BATCHREP_MANIFEST_INT_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>
#include <zstd.h>

#include "manifest/manifest.h"

/* 1 MiB reads: about 10-25k manifest rows per read(2) and per inflate/ZSTD call, so the
   per-call cost disappears; it is also the whole input budget (plus as much again for the
   decompressed side of gzip/zstd). */
#define MF__READ_BUF_BYTES (1u << 20)

/* The longest field we accept, in bytes as written, before the per-field limits below (a
   1,024-byte key fully %-encoded is 3,072 bytes; an Inventory ObjectAccessControlList of
   100 grants is ~20 KB of base64). libcsv's field buffer is capped here, so a
   runaway quoted field cannot eat memory either. */
#define MF__FIELD_MAX_BYTES (64u << 10)

/* S3's own limits, checked on every row so that one field cannot cost more than S3 would
   ever store (issue 15 item 7: 20,000 rows with 65,000-byte VersionIds took 1.07 GB before
   failing with no line). A key is at most 1,024 bytes once %-decoded (S3's documented key
   limit); a version ID at most 1,024 bytes (AWS's are 32; other servers' longer, never near
   this). A bucket name is at most 255 bytes (older us-east-1 names): that one is
   s3_bucket_name_problem's to say, as for every other bucket name we read. */
#define MF__KEY_MAX_BYTES 1024u
#define MF__VERSION_ID_MAX_BYTES 1024u

typedef enum mf__codec { MF__CODEC_PLAIN = 0, MF__CODEC_GZIP, MF__CODEC_ZSTD } mf__codec;

typedef struct mf__source {
    int fd;
    mf__codec codec;
    unsigned char *raw;      /* file bytes; for plain files also the output */
    size_t raw_len, raw_pos;
    int raw_eof;
    unsigned char *out;      /* decompressed bytes (gzip/zstd) */
    z_stream z;
    int z_live;              /* inflateInit2 done */
    int z_member_done;       /* the last gzip member ended at Z_STREAM_END */
    ZSTD_DStream *zd;
    size_t zstd_hint;        /* last ZSTD_decompressStream return: 0 = frame complete */
    int pending_err;         /* -MF_E_* to return on the next call (after handing out data) */
    char pending_msg[256];
} mf__source;

/* Opens path and detects the codec. 0 or -MF_E_IO / -MF_E_NOMEM (message in err). */
int mf__source_open(mf__source *s, const char *path, char *err, size_t err_len);

/*
 * Hands out the next chunk of decompressed bytes, filled as far as the buffer allows (so the
 * first chunk holds at least the first 3 bytes, if the file has them). *out stays valid until
 * the next call. Returns 1 with data, 0 at the end, or -MF_E_IO / -MF_E_INVALID_CONTENT /
 * -MF_E_NOMEM with the problem (no file/line prefix) in problem.
 */
int mf__source_read(mf__source *s, const unsigned char **out, size_t *out_len, char *problem,
                    size_t problem_len);

void mf__source_close(mf__source *s);

/* ---- the CSV row reader under every format (csv_reader.c) ------------------------------ */

/* What a column holds. The first four equal mf_field's values, so JobManifestSpec.Fields
   maps onto them as is; the rest are Inventory fileSchema columns (aws-formats.md §2.3)
   whose values become mf_facts. Every other schema name is read as Ignore. */
typedef enum mf__col {
    MF__COL_IGNORE = 0,
    MF__COL_BUCKET,
    MF__COL_KEY,
    MF__COL_VERSION_ID,
    MF__COL_IS_LATEST,
    MF__COL_IS_DELETE_MARKER,
    MF__COL_SIZE,
    MF__COL_LAST_MODIFIED,
    MF__COL_ETAG,
    MF__COL_STORAGE_CLASS,
    MF__COL_REPLICATION_STATUS,
    MF__COL_ENCRYPTION_STATUS,
    MF__COL_LOCK_UNTIL,
    MF__COL_LOCK_MODE,
    MF__COL_LEGAL_HOLD,
    MF__COL_BUCKET_KEY,
    MF__COL_ACL,
    MF__N_COLS
} mf__col;

/* The Inventory schema has 20 columns today (21 with LifecycleExpirationDate); 64 leaves
   room for AWS to add more without a release of ours. */
#define MF__MAX_COLS 64

typedef struct mf__csv_cfg {
    unsigned char cols[MF__MAX_COLS]; /* mf__col per column */
    size_t n_cols;            /* 0: the CSV default, Bucket,Key[,VersionId] by the first row */
    int plus_is_space;        /* Inventory: '+' in a key is a space */
    int empty_version_is_none; /* a completion report: an empty VersionId = no version */
} mf__csv_cfg;

typedef struct mf__csv mf__csv;

/* The name of a column ("IsLatest"), as fileSchema and messages spell it. */
const char *mf__col_name(mf__col c);
/* Opens one local CSV file (plain, gzip or zstd). display names it in messages. */
mf__csv *mf__csv_open(const char *path, const char *display, const mf__csv_cfg *cfg,
                      char *err, size_t err_len);
/* As mf_next; seq counts this file's rows only. */
int mf__csv_next(mf__csv *r, mf_entry *out, char *err, size_t err_len);
void mf__csv_close(mf__csv *r);
/* The CSV reader's messages and field names, for mf_strerror / mf_field_parse. */

/* MD5 of a local file as 32 lower-case hex digits. 0 or -MF_E_IO (message in err). */

#endif
