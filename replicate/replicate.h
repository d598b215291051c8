/*
 * replicate.h — what Batch Replication means for one version: the replication configuration
 * and its rules (rules.c), the destinations and what the job learnt of them (dests.c), and
 * the facts of a source version beyond its bytes (facts.c).
 *
 * It decides; it does not run anything. The engine (engine/) asks it which rule sends a
 * version where and what a replica must carry; Preparing (run/) asks it for the rules and
 * the destinations' state; the job verbs (jobs/) validate a configuration with it.
 *
 * Depends on: manifest (mf_facts), s3, jansson.
 */
#ifndef BATCHREP_REPLICATE_H
#define BATCHREP_REPLICATE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "manifest/manifest.h"
#include "s3/s3.h"

#define REPL_ERRNO_MAP(XX)                                                                 \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")                                                             \
    XX(INVALID_RULES, "invalid replication configuration")                                 \
    XX(INVALID_BINDING, "invalid --destination-profile binding")                           \
    XX(CONFIG, "invalid endpoint or credentials configuration")

typedef enum repl_err {
#define XX(name, msg) REPL_E_##name,
    REPL_ERRNO_MAP(XX)
#undef XX
} repl_err;

const char *repl_strerror(int err);
const char *repl_errname(int err);

/* ---- replication configuration -------------------------------------------------------- */

typedef struct repl_tag {
    char *key;
    char *value;
} repl_tag;

typedef struct repl_rule {
    char *id;
    int priority;
    int enabled;
    char *prefix;                /* "" matches everything */
    repl_tag *tags;              /* all must be present on the version */
    size_t n_tags;
    int delete_marker_replication;
    char *dest_bucket;           /* plain name from the destination ARN */
    char *storage_class;         /* NULL: keep the source's class */
    char *dest_account;          /* Destination.Account; NULL when absent */
    int owner_override;          /* AccessControlTranslation.Owner = "Destination": the
                                    replica belongs to the destination bucket's owner, the
                                    source ACL is not copied */
    int sse_kms;                 /* SourceSelectionCriteria.SseKmsEncryptedObjects Enabled:
                                    SSE-KMS versions replicate (else SrcObjectNotEligible) */
    char *replica_kms_key_id;    /* Destination.EncryptionConfiguration.ReplicaKmsKeyID */
    size_t dest_index;           /* index into repl_rules.dests */
} repl_rule;

/* A destination bucket and what the job learnt of it before the run. */
typedef struct repl_dest {
    char *bucket;
    int state;                   /* REPL_DEST_OK, ..._MISSING, ..._UNVERSIONED, ..._DENIED */
    int http_status;
    size_t ep_index;             /* endpoint (eng_pool_cfg.eps): 0 the source's, else a
                                    --destination-profile's */
    int object_lock;             /* GetObjectLockConfiguration said Enabled */
    int acls_disabled;           /* Object Ownership BucketOwnerEnforced: a replica carries
                                    no ACL (S3 refuses grants there) */
    char owner_grant[272];       /* id="<canonical ID of the bucket owner>" (GetBucketAcl),
                                    "" when unknown: x-amz-grant-full-control of a replica
                                    whose rule translates ownership */
} repl_dest;

enum { REPL_DEST_OK = 0, REPL_DEST_MISSING, REPL_DEST_UNVERSIONED, REPL_DEST_DENIED };

/* How versions are written (settings of the run, not of the configuration). */
typedef struct repl_copy_cfg {
    int64_t multipart_threshold_bytes; /* above: multipart (UploadPartCopy / UploadPart) */
    int64_t part_size_bytes;           /* grown so that a version needs at most 10,000 */
    int part_parallelism;              /* parts of one version in flight at once */
} repl_copy_cfg;

typedef struct repl_rules {
    repl_rule *rules;
    size_t n_rules;
    repl_dest *dests;
    size_t n_dests;
    int needs_tags;              /* some enabled rule filters on tags */
    repl_copy_cfg copy;          /* set when a worker takes the job (prepare.c) */
} repl_rules;

/* Parses PutBucketReplication JSON (a bare configuration, or wrapped in
   {"ReplicationConfiguration": ...}). err names the file and the field. */
int repl_rules_from_json(repl_rules *out, json_t *root, const char *origin, char *err,
                         size_t err_len);
/* GetBucketReplication on the bucket (XML -> the same structure); *out_json (may be NULL)
   receives the configuration as JSON text (caller frees). */
int repl_rules_load_bucket(repl_rules *out, const s3_endpoint *ep, const char *bucket,
                           char **out_json, char *err, size_t err_len);
void repl_rules_cleanup(repl_rules *r);

/* Binds destinations to the endpoints of --destination-profile BUCKET=PROFILE: each profile
   is loaded into a new eps[*n_eps] (the caller frees them) and the bucket's ep_index set. */
int repl_dests_load_profiles(const char *const *bindings, size_t n_bindings,
                             s3_endpoint **eps, size_t max_eps, size_t *n_eps, char *err,
                             size_t err_len);
/* Points each destination named by a "BUCKET=PROFILE" binding at endpoint 1 + its index. */
void repl_dests_assign(repl_rules *rules, const char *const *bindings, size_t n_bindings);
/* Per destination, once: GetBucketVersioning (state), then for a usable one
   GetObjectLockConfiguration, GetBucketOwnershipControls and GetBucketAcl (owner). */
void repl_dests_check(repl_rules *rules, const s3_endpoint *const *eps);
/* 1 when GetBucketOwnershipControls says BucketOwnerEnforced (ACLs disabled); 0 otherwise,
   also when the server cannot say (no controls set, not implemented, an error). */
int repl_bucket_acls_disabled(const s3_endpoint *ep, const char *bucket);

/* Chooses, for one version, the rule per destination (highest priority among enabled rules
   whose filter matches). out_rule[d] is the rule index for destination d, or -1. For a
   delete marker, tag rules never match and a chosen rule must enable DeleteMarkerReplication.
   Returns the number of destinations chosen. */
size_t repl_rules_select(const repl_rules *r, s3_slice key, const repl_tag *tags,
                         size_t n_tags, int is_delete_marker, int *out_rule);

/* ---- small facts every room asks the same way (rules.c) ------------------------------------ */

/* GetObjectTagging's TagSet (XML) -> tags, allocated (repl_tags_free). 0, or -1 when the
   document is not XML or memory ran out. */
int repl_tags_from_xml(s3_slice xml, repl_tag **out, size_t *n_out);
void repl_tags_free(repl_tag *tags, size_t n);
/* 1 for the storage classes Batch Replication cannot read without a restore (GLACIER,
   DEEP_ARCHIVE): their versions fail with SrcObjectNotEligible (aws-formats.md §6.1). */
int repl_storage_class_archived(const char *storage_class);
/* The replay order of a key's versions: oldest first, the current version last; for equal
   times the one listed later is older (ListObjectVersions lists newest first). */
typedef struct repl_version_age {
    int is_latest;
    int64_t last_modified_ms;
    unsigned list_pos;
} repl_version_age;
int repl_version_age_cmp(const repl_version_age *a, const repl_version_age *b);
/* ETags compared without their quotes (S3 quotes them in headers and XML, Inventory does
   not); an empty ETag equals nothing. */
int repl_etag_eq(const char *a, const char *b);

/* One version as the resume recheck compares them: a delete marker, or bytes with an ETag. */
typedef struct repl_version_mark {
    int is_delete_marker;
    const char *etag;
} repl_version_mark;
/* After a crash, how many of the versions a unit sends to a destination (sent, in order)
   are there already: the largest k for which the destination's newest k versions
   (dest, oldest first) equal the first k sent, delete marker for delete marker and ETag for
   ETag. Nothing else writes replicas of the key while the job runs, so what an earlier run
   wrote is exactly such a tail of the destination's versions. */
size_t repl_replicated_prefix(const repl_version_mark *dest, size_t n_dest,
                              const repl_version_mark *sent, size_t n_sent);

/* ---- source facts: what a version carries beyond its bytes ------------------------- */

/* Read once per version (HeadObject, GetObjectAcl, GetObjectTagging) by the first strategy
   that needs them, kept on the task for its other destinations (facts.c). */
typedef struct repl_facts {
    int have_head, have_acl, have_tags;
    s3_buf hdrs;                 /* "name\0value\0": Content-Type, Content-Encoding,
                                    Content-Disposition, Content-Language, Cache-Control,
                                    Expires and every x-amz-meta-* */
    size_t n_hdrs;
    char etag[S3_ETAG_MAX + 2];  /* as sent, with quotes */
    int64_t size;
    int64_t last_modified_ms;
    char sse[32];                /* x-amz-server-side-encryption, "" when none */
    char sse_kms_key_id[256];
    char bucket_key[8];          /* x-amz-server-side-encryption-bucket-key-enabled */
    char lock_mode[16];          /* GOVERNANCE | COMPLIANCE | "" */
    char lock_until[40];         /* ISO 8601 as HEAD gave it */
    char legal_hold[8];          /* ON | OFF | "" */
    int tag_count;               /* x-amz-tagging-count */
    int acl_default;             /* the ACL is the owner's FULL_CONTROL only */
    s3_buf grants[4];            /* x-amz-grant-read, -read-acp, -write-acp, -full-control */
    s3_buf tagging;              /* "k=v&k2=v2" (URL-encoded) when have_tags */
} repl_facts;

repl_facts *repl_facts_new(void);
void repl_facts_destroy(repl_facts *f);
/* From a HeadObject answer kept with keep_headers. */
void repl_facts_from_head(repl_facts *f, const s3_response *r);
/* From GetObjectAcl XML; -1 when it cannot be read. */
int repl_facts_from_acl(repl_facts *f, s3_slice xml);
/* From tags already read (the unit's TAGS phase) or from GetObjectTagging XML. */
int repl_facts_set_tags(repl_facts *f, const repl_tag *tags, size_t n);
int repl_facts_tags_from_xml(repl_facts *f, s3_slice xml);
/* A manifest row that tells everything a CopyObject needs (size, ETag, LastModified,
   storage class, encryption, Object Lock: an Inventory with those columns) stands in for
   HeadObject: returns 1 and sets have_head, else 0. Not for SSE-C / DSSE-KMS versions.
   etag: the row's ETag without quotes (the row's own slice may be gone). */
int repl_facts_from_row(repl_facts *f, const mf_facts *row, const char *etag);
/* The row's ObjectAccessControlList (base64 JSON, status AVAILABLE) stands in for
   GetObjectAcl: 0 and have_acl set; -1 when it cannot (UNAVAILABLE, malformed). */
int repl_facts_acl_from_row(repl_facts *f, s3_slice b64);
/* 1 for SSE-KMS (x-amz-server-side-encryption aws:kms or aws:kms:dsse). */
int repl_sse_is_kms(const char *sse);
/* 1 when the version carries Object Lock settings to replicate. */
int repl_facts_locked(const repl_facts *f);

/* ---- the verdict: may this version go there, and if not, why (verdict.c) ---------------- */

/* Failure reasons the verdict gives (aws-formats.md §6.1): name, the row's HTTP status,
   AWS's code, a message for a person. */
#define REPL_FAILURE_MAP(XX)                                                               \
    XX(OK, 200, "", "success")                                                             \
    XX(NOT_ELIGIBLE, 500, "SrcObjectNotEligible", "Object is not eligible for replication") \
    XX(NOT_ELIGIBLE_ARCHIVED, 500, "SrcObjectNotEligible",                                 \
       "Object is not eligible for replication")                                           \
    XX(NOT_ELIGIBLE_SSE_KMS, 500, "SrcObjectNotEligible",                                  \
       "Object is not eligible for replication (SSE-KMS encrypted, and the rule does not "  \
       "replicate SSE-KMS objects)")                                                       \
    XX(DST_BUCKET_NOT_FOUND, 404, "DstBucketNotFound", "Destination bucket not found")     \
    XX(DST_BUCKET_UNVERSIONED, 400, "DstBucketUnversioned",                                \
       "Versioning is not enabled on the destination bucket")                              \
    XX(DST_DENIED, 403, "DstPutObjectNotPermitted", "Access denied to the destination bucket") \
    XX(DST_LOCK_MISSING, 400, "DstBucketObjectLockConfigMissing",                          \
       "The version has Object Lock settings and the destination bucket has no Object "    \
       "Lock configuration")

typedef enum repl_failure_id {
#define XX(name, http, code, message) REPL_##name,
    REPL_FAILURE_MAP(XX)
#undef XX
    REPL_FAILURE_COUNT
} repl_failure_id;

typedef struct repl_failure {
    int http_status;
    const char *code;
    const char *message;
} repl_failure;

/* The row a failure writes; NULL for REPL_OK. */
const repl_failure *repl_failure_of(repl_failure_id id);
/* A version, once its storage class, tags (when a rule needs them) and delete-marker-ness
   are known: REPL_OK with out_rule[d] the rule for destination d (-1: none), or
   REPL_NOT_ELIGIBLE_ARCHIVED (GLACIER, DEEP_ARCHIVE: no tags can change that) or
   REPL_NOT_ELIGIBLE (no enabled rule selects it). storage_class NULL: not
   known (a delete marker has none). */
repl_failure_id repl_verdict_version(const repl_rules *r, s3_slice key, const repl_tag *tags,
                                     size_t n_tags, int is_delete_marker,
                                     const char *storage_class, int *out_rule);
/* One destination, under the rule the version verdict chose: its state, then, when f holds
   the version's metadata (f NULL or !f->have_head: not read yet), SSE-KMS and Object Lock. */
repl_failure_id repl_verdict_dest(const repl_rule *rule, const repl_dest *d,
                                  const repl_facts *f);

/* The requests of a replication, for the error table: whose bucket each names first (SRC,
   DST, or DST_COPY: a write whose x-amz-copy-source names the source version), which
   statuses mean the source version is gone (0 none, 404, or 405: 404 and 405), and the
   reason a 403 (AccessDenied) gives. */
#define REPL_OP_MAP(XX)                                                                    \
    XX(SRC_HEAD, SRC, 405, "SrcHeadObjectNotPermitted")                                    \
    XX(SRC_LIST, SRC, 0, "SrcHeadObjectNotPermitted")                                      \
    XX(SRC_GET_ACL, SRC, 405, "SrcGetAclNotPermitted")                                     \
    XX(SRC_GET_TAGS, SRC, 405, "SrcGetTaggingNotPermitted")                                \
    XX(SRC_GET_OBJECT, SRC, 404, "SrcGetObjectNotPermitted")                               \
    XX(DST_PUT, DST_COPY, 0, "DstPutObjectNotPermitted")                                   \
    XX(DST_DELETE, DST, 0, "DstDelObjNotPermitted")                                        \
    XX(DST_MPU_INIT, DST, 0, "DstMultipartInitNotPermitted")                               \
    XX(DST_MPU_PART, DST_COPY, 0, "DstMultipartUploadNotPermitted")                        \
    XX(DST_MPU_COMPLETE, DST, 0, "DstMultipartCompleteNotPermitted")                       \
    XX(DST_PUT_RETENTION, DST, 0, "DstPutRetentionNotPermitted")                           \
    XX(DST_PUT_LEGAL_HOLD, DST, 0, "DstPutLegalHoldNotPermitted")

typedef enum repl_op {
#define XX(name, side, gone, denied) REPL_OP_##name,
    REPL_OP_MAP(XX)
#undef XX
} repl_op;

/* The replication failure reason for a failed request (the one table from an S3 error to a
   reason): NoSuchBucket -> Src/DstBucketNotFound, a missing version -> SrcVersionNotFound,
   403 -> the request's own reason; NULL when S3's own code says it best. */
const char *repl_reason_for_s3(repl_op op, const s3_outcome *oc);

#endif
