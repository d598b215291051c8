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
 *   S3InventoryReport_CSV_20161130 (aws-formats.md §2): the path is the inventory's
 *   manifest.json; fileSchema gives the column order (never assumed); every data file in
 *   files[] is fetched from destinationBucket to a spool file (one at a time), its
 *   MD5checksum verified, then streamed (gzip as AWS writes it, zstd or plain). Keys decode
 *   %XX and '+' as a space; any field may be quoted. IsLatest, IsDeleteMarker, Size,
 *   LastModifiedDate, ETag, StorageClass and ReplicationStatus become the entry's facts.
 *   Without a VersionId column (a current-versions-only inventory) rows have no version.
 *   S3InventoryReport_CSV_20211130 (the generated manifest, see mf_generate) is read the
 *   same way.
 *   Report_CSV_20180820 (batchrep's extension, aws-formats.md §5): the path is an earlier
 *   job's completion-report manifest.json; the rows of its "failed" Results[] files are the
 *   entries (Bucket,Key,VersionId + 4 ignored columns; keys as the original manifest wrote
 *   them, %XX decoded; an empty VersionId is a row without a version).
 *
 * Depends on: s3 (fetching manifest objects, listing versions), libcsv, zlib, zstd,
 * jansson, OpenSSL (MD5).
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
    XX(ETAG_MISMATCH, "the manifest object's ETag does not match")                        \
    XX(CHECKSUM, "a manifest data file's MD5 does not match manifest.json")

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

/* What an Inventory row (or the generator) says of a version, so the engine can skip the
   HEAD/LIST that would tell it the same. Only the bits set in `known` are meaningful. */
enum {
    MF_FACT_DELETE_MARKER = 1u << 0,
    MF_FACT_LATEST = 1u << 1,
    MF_FACT_SIZE = 1u << 2,
    MF_FACT_LAST_MODIFIED = 1u << 3,
    MF_FACT_STORAGE_CLASS = 1u << 4,
    MF_FACT_ETAG = 1u << 5,
    MF_FACT_REPLICATION_STATUS = 1u << 6,
    MF_FACT_ENCRYPTION = 1u << 7,
    MF_FACT_LOCK = 1u << 8,      /* lock_mode, lock_until, legal_hold ("" = none) */
    MF_FACT_BUCKET_KEY = 1u << 9,
    MF_FACT_ACL = 1u << 10,
};

typedef struct mf_facts {
    unsigned known;              /* MF_FACT_* bits */
    int is_delete_marker;
    int is_latest;
    int64_t size;
    int64_t last_modified_ms;    /* epoch ms */
    char storage_class[24];      /* "" when the row left it empty (a delete marker) */
    char replication_status[16]; /* COMPLETED, FAILED, PENDING, REPLICA, or "" */
    s3_slice etag;               /* borrowed like the entry's other slices; no quotes */
    char encryption[12];         /* EncryptionStatus: NOT-SSE, SSE-S3, SSE-KMS, SSE-C, DSSE-KMS */
    char lock_mode[12];          /* GOVERNANCE | COMPLIANCE | "" (upper case) */
    char lock_until[32];         /* ObjectLockRetainUntilDate as written, "" when none */
    char legal_hold[4];          /* ON | OFF | "" */
    int bucket_key;              /* BucketKeyStatus ENABLED */
    s3_slice acl;                /* ObjectAccessControlList: base64 of the ACL JSON, borrowed */
} mf_facts;

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
    mf_facts facts;       /* known == 0 for a CSV manifest */
} mf_entry;

typedef struct mf_reader mf_reader;

/*
 * Opens a local manifest file. display_name names it in messages (an ARN or the path; NULL:
 * the path). On failure returns NULL and writes the reason into err.
 */
mf_reader *mf_open_csv(const char *path, const char *display_name, const mf_csv_opts *opts,
                       char *err, size_t err_len);

typedef enum mf_format {
    MF_FORMAT_CSV = 0,          /* S3BatchOperations_CSV_20180820 */
    MF_FORMAT_INVENTORY,        /* S3InventoryReport_CSV_20161130 (and _20211130) */
    MF_FORMAT_REPORT,           /* Report_CSV_20180820: an earlier job's failed rows */
} mf_format;

#define MF_FORMAT_NAME_CSV "S3BatchOperations_CSV_20180820"
#define MF_FORMAT_NAME_INVENTORY "S3InventoryReport_CSV_20161130"
#define MF_FORMAT_NAME_GENERATED "S3InventoryReport_CSV_20211130"
#define MF_FORMAT_NAME_REPORT "Report_CSV_20180820"

/* Manifest.Spec.Format -> MF_FORMAT_*, or -1 for an unknown name. */
int mf_format_parse(const char *name);

typedef struct mf_spec {
    mf_format format;
    const char *path;            /* local: the CSV, or the manifest.json */
    const char *display_name;    /* names it in messages (an ARN); NULL: path */
    mf_csv_opts csv;             /* MF_FORMAT_CSV only */
    /* Where the data files of an Inventory / report are. ep != NULL: in S3 (destinationBucket
       / Results[].Bucket), fetched one at a time to spool_dir/<data.part>, deleted after
       use. ep == NULL: local files; a files[].key / Results[].Key is looked up under each
       parent folder of path in turn (a local copy of the bucket's layout). */
    const s3_endpoint *ep;
    const char *spool_dir;
} mf_spec;

/* Opens any format. On failure returns NULL, sets *out_rc (may be NULL) to -MF_E_* (a
   malformed manifest.json is -MF_E_INVALID_CONTENT) and writes "NAME: member: problem" into
   err. */
mf_reader *mf_open(const mf_spec *spec, int *out_rc, char *err, size_t err_len);

/* 1: *out holds the next entry; 0: end of manifest; <0: -MF_E_* and err says file:line: what.
   An error is final: later calls return it again. Byte positions in messages are 1-based. */
int mf_next(mf_reader *r, mf_entry *out, char *err, size_t err_len);

void mf_close(mf_reader *r); /* NULL is a no-op */

/* "arn:aws:s3:::bucket/key/with/slashes" -> bucket, key. A bucket ARN has no key (key "").
   The bucket must be a name S3 accepts (s3_bucket_name_problem); a refusal's message can
   end with MF_ARN_BUCKET_RULE. */
#define MF_ARN_BUCKET_RULE                                                                 \
    "a bucket name S3 accepts: 3-63 characters of a-z 0-9 . - (older us-east-1 buckets: up " \
    "to 255, also A-Z and _), a letter or digit at each end, no \"..\""
int mf_parse_s3_arn(const char *arn, char *bucket, size_t bucket_cap, char *key, size_t key_cap);

/*
 * Downloads an S3 manifest object (GetObject, with ?versionId= when version_id is not NULL)
 * to local_path. When expected_etag is not NULL/empty it must equal the object's ETag (quotes
 * ignored on both sides), else MF_E_ETAG_MISMATCH. Returns 0 or -MF_E_*; err says why.
 */
int mf_fetch_object(const s3_endpoint *ep, const char *bucket, const char *key,
                    const char *version_id, const char *expected_etag, const char *local_path,
                    char *err, size_t err_len);

/* ---- generated manifests (ManifestGenerator.S3JobManifestGenerator) ------------------ */

enum {
    MF_REPL_NONE = 1u << 0,
    MF_REPL_COMPLETED = 1u << 1,
    MF_REPL_FAILED = 1u << 2,
    MF_REPL_REPLICA = 1u << 3,
};

/* JobManifestGeneratorFilter (aws-formats.md §3.2). A member that is absent does not
   filter. Strict comparisons as AWS words them: created after / before, size > / <. A
   delete marker has no size and no storage class: a size or storage-class filter leaves it
   out. Lists are borrowed for the call. */
typedef struct mf_gen_filter {
    int has_created_after, has_created_before;
    int64_t created_after_ms, created_before_ms;
    const char *const *prefixes;
    size_t n_prefixes;
    const char *const *suffixes;
    size_t n_suffixes;
    const char *const *substrings;
    size_t n_substrings;
    int has_size_gt, has_size_lt;
    int64_t size_gt, size_lt;
    const char *const *storage_classes;
    size_t n_storage_classes;
    unsigned replication_statuses; /* MF_REPL_* bits; 0: no filter (no HEAD is sent) */
    int eligible_only;             /* EligibleForReplication: ask opts.eligible */
} mf_gen_filter;

/* 1: some enabled replication rule would replicate this version; 0: none; <0: could not
   tell (the generation fails with the message in err). Called from the generator's thread. */
typedef int (*mf_eligible_fn)(void *user, const char *bucket, const char *key,
                              const char *version_id, int is_delete_marker,
                              const char *storage_class, char *err, size_t err_len);

typedef struct mf_gen_opts {
    const s3_endpoint *ep;
    const char *source_bucket;   /* plain name */
    const mf_gen_filter *filter; /* NULL: everything */
    mf_eligible_fn eligible;     /* required when filter->eligible_only */
    void *eligible_user;
    const char *out_dir;         /* local root mirroring the output bucket */
    const char *base_key;        /* "<ManifestPrefix>/job-<id>" (no trailing '/') */
    const char *destination_bucket_arn; /* manifest.json destinationBucket */
    uint64_t rows_per_file;      /* 0: 1,000,000 */
} mf_gen_opts;

typedef struct mf_gen_result {
    uint64_t n_listed;           /* versions and delete markers seen */
    uint64_t n_selected;         /* rows written */
    size_t n_files;              /* data files */
    uint64_t n_heads;            /* HeadObject calls for ObjectReplicationStatuses */
    char manifest_json[4200];    /* s3_key_local_path(out_dir, base_key)/manifest.json */
    char manifest_md5[33];       /* MD5 hex of manifest.json (= its ETag after a PUT) */
} mf_gen_result;

/*
 * Lists every version of source_bucket (ListObjectVersions, 1,000 per page, each page parsed
 * and dropped before the next: memory does not grow with the bucket) and writes the
 * versions the filter keeps as an inventory-shaped report under out_dir:
 *   <base_key>/manifest.json      sourceBucket, destinationBucket, version "2021-11-30",
 *                                 creationTimestamp, fileFormat CSV, fileSchema, files[]
 *   <base_key>/manifest.checksum  MD5 hex of manifest.json
 *   <base_key>/data/<uuid>.csv.gz rows "Bucket","Key","VersionId","IsLatest",
 *                                 "IsDeleteMarker","Size","LastModifiedDate","ETag",
 *                                 "StorageClass" (every field quoted; keys %-encoded, '/'
 *                                 kept, so '+' is %2B and space %20), in listing order
 * files[].key is the key relative to out_dir; on disk each file is at
 * s3_key_local_path(out_dir, key) ("." and ".." segments of base_key escaped).
 * Returns 0 or -MF_E_*; err names the bucket/key or the file.
 */
int mf_generate(const mf_gen_opts *opts, mf_gen_result *out, char *err, size_t err_len);

#endif
