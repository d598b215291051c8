/*
 * manifest.h — streaming readers of job manifests.
 *
 * A reader turns manifest bytes into entries (bucket, key, version) one at a time, with
 * memory fixed by its read buffer, whatever the manifest's size. Entries are numbered: seq is
 * the 0-based position among data rows and is what crash-safe progress is keyed on.
 *
 * Formats accepted now:
 *   S3BatchOperations_CSV_20180820 (../shared/aws-formats.md §1): no header, RFC 4180 fields
 *   (libcsv), columns Bucket,Key[,VersionId] or the order JobManifestSpec.Fields gives
 *   (Ignore skips a column); keys URL-encoded (%XX; '+' stays '+'); "null" is the version ID
 *   of a null version. The bytes may be plain, gzip or zstd (detected by magic bytes).
 *   Rejected with MF_E_INVALID_CONTENT and "FILE:LINE: problem": a UTF-8 BOM, an empty line,
 *   a wrong column count, version IDs on some rows only, an undecodable %-escape, an empty
 *   bucket or key, a field with an embedded line break.
 *
 * Depends on: s3 (fetching a manifest object), libcsv, zlib, zstd.
 */
#ifndef BATCHREP_MANIFEST_H
#define BATCHREP_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include "s3/s3.h"

#define MF_ERRNO_MAP(XX)                                                                   \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")                                                             \
    XX(IO, "cannot read the manifest")                                                     \
    XX(INVALID_CONTENT, "InvalidManifestContent")                                          \
    XX(INVALID_SPEC, "invalid manifest specification")                                     \
    XX(FETCH, "cannot fetch the manifest object")                                          \
    XX(ETAG_MISMATCH, "the manifest object's ETag does not match")

typedef enum mf_err {
#define XX(name, msg) MF_E_##name,
    MF_ERRNO_MAP(XX)
#undef XX
} mf_err;

const char *mf_strerror(int err);
const char *mf_errname(int err);

typedef enum mf_field {
    MF_FIELD_IGNORE = 0,
    MF_FIELD_BUCKET,
    MF_FIELD_KEY,
    MF_FIELD_VERSION_ID,
} mf_field;

#define MF_MAX_FIELDS 16

typedef struct mf_csv_opts {
    mf_field fields[MF_MAX_FIELDS]; /* column order; n_fields == 0: Bucket,Key[,VersionId] */
    size_t n_fields;
} mf_csv_opts;

/* Parses a JobManifestSpec.Fields name ("Bucket", "Key", "VersionId", "Ignore"). -1: unknown. */
int mf_field_parse(const char *name);

/*
 * One manifest row. All slices are borrowed from the reader and valid until the next
 * mf_next / mf_close call: copy what must live longer. Each slice is also NUL-terminated
 * (ptr[len] == '\0'), and key never holds a NUL byte (%00 is rejected), so ptr can be used
 * as a C string.
 */
typedef struct mf_entry {
    uint64_t seq;         /* 0-based index of this data row */
    uint64_t line;        /* 1-based line number in the (decompressed) file */
    s3_slice bucket;
    s3_slice key_raw;     /* exactly as written in the manifest: the report echoes it */
    s3_slice key;         /* URL-decoded */
    s3_slice version_id;  /* as written; len 0 when has_version is 0 */
    int has_version;      /* the manifest has a VersionId column */
} mf_entry;

typedef struct mf_reader mf_reader;

/*
 * Opens a local manifest file. display_name names it in messages (an ARN or the path; NULL:
 * the path). On failure returns NULL and writes the reason into err.
 */
mf_reader *mf_open_csv(const char *path, const char *display_name, const mf_csv_opts *opts,
                       char *err, size_t err_len);

/* 1: *out holds the next entry; 0: end of manifest; <0: -MF_E_* and err says file:line: what.
   An error is final: later calls return it again. Byte positions in messages are 1-based. */
int mf_next(mf_reader *r, mf_entry *out, char *err, size_t err_len);

void mf_close(mf_reader *r); /* NULL is a no-op */

/* "arn:aws:s3:::bucket/key/with/slashes" -> bucket, key. A bucket ARN has no key (key ""). */
int mf_parse_s3_arn(const char *arn, char *bucket, size_t bucket_cap, char *key, size_t key_cap);

/*
 * Downloads an S3 manifest object (GetObject, with ?versionId= when version_id is not NULL)
 * to local_path. When expected_etag is not NULL/empty it must equal the object's ETag (quotes
 * ignored on both sides), else MF_E_ETAG_MISMATCH. Returns 0 or -MF_E_*; err says why.
 */
int mf_fetch_object(const s3_endpoint *ep, const char *bucket, const char *key,
                    const char *version_id, const char *expected_etag, const char *local_path,
                    char *err, size_t err_len);

#endif
