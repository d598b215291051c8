/*
 * verdict.c — may this version go to that destination, and if not, why: the one answer to
 * that question, and the one table from an S3 error to a replication failure reason
 * (../shared/aws-formats.md §6.1).
 *
 * A version's verdict comes in two steps because its facts arrive in two steps:
 *   repl_verdict_version  as soon as its storage class, tags and delete-marker-ness are
 *                         known: archived classes and versions no enabled rule selects
 *                         fail SrcObjectNotEligible; otherwise the rule per destination;
 *   repl_verdict_dest     per destination: its state (missing, unversioned, denied) and,
 *                         once the version's metadata has been read, SSE-KMS (the rule must
 *                         opt in) and Object Lock (the destination must have it).
 * The engine asks both for every task; ManifestGenerator's EligibleForReplication filter
 * asks the first, so a generated manifest and a run agree on what is eligible.
 *
 * The HTTP status a failure row carries is AWS's where known (SrcObjectNotEligible: 500,
 * §5.6), else the status S3 itself answers for that condition.
 */
#include "replicate/replicate.h"

#include <string.h>

static const repl_failure failures[] = {
#define XX(name, http, code, message) {http, code, message},
    REPL_FAILURE_MAP(XX)
#undef XX
};

const repl_failure *repl_failure_of(repl_failure_id id)
{
    return id > REPL_OK && id < REPL_FAILURE_COUNT ? &failures[id] : NULL;
}

repl_failure_id repl_verdict_version(const repl_rules *r, s3_slice key, const repl_tag *tags,
                                     size_t n_tags, int is_delete_marker,
                                     const char *storage_class, int *out_rule)
{
    for (size_t d = 0; d < r->n_dests; d++)
        out_rule[d] = -1;
    if (storage_class && repl_storage_class_archived(storage_class))
        return REPL_NOT_ELIGIBLE_ARCHIVED;
    if (repl_rules_select(r, key, tags, n_tags, is_delete_marker, out_rule) == 0)
        return REPL_NOT_ELIGIBLE;
    return REPL_OK;
}

repl_failure_id repl_verdict_dest(const repl_rule *rule, const repl_dest *d,
                                  const repl_facts *f)
{
    switch (d->state) {
    case REPL_DEST_OK:
        break;
    case REPL_DEST_MISSING:
        return REPL_DST_BUCKET_NOT_FOUND;
    case REPL_DEST_UNVERSIONED:
        return REPL_DST_BUCKET_UNVERSIONED;
    default:
        return REPL_DST_DENIED;
    }
    if (f && f->have_head && repl_sse_is_kms(f->sse) && !rule->sse_kms)
        return REPL_NOT_ELIGIBLE_SSE_KMS;
    if (f && f->have_head && repl_facts_locked(f) && !d->object_lock)
        return REPL_DST_LOCK_MISSING;
    return REPL_OK;
}

/* What each request is, for the error table (REPL_OP_MAP). */
enum { SRC, DST, DST_COPY };
static const struct {
    int side;
    int gone;
    const char *denied;
} ops[] = {
#define XX(name, side, gone, denied) {side, gone, denied},
    REPL_OP_MAP(XX)
#undef XX
};

const char *repl_reason_for_s3(repl_op op, const s3_outcome *oc)
{
    if ((unsigned)op >= sizeof ops / sizeof *ops)
        return NULL;
    int side = ops[op].side, gone = ops[op].gone;
    if (strcmp(oc->code, "NoSuchBucket") == 0)
        return side == SRC ? "SrcBucketNotFound" : "DstBucketNotFound";
    /* a copy names the source in x-amz-copy-source: its NoSuchKey is the source's */
    if (side != DST &&
        (strcmp(oc->code, "NoSuchVersion") == 0 || strcmp(oc->code, "NoSuchKey") == 0))
        return "SrcVersionNotFound";
    if ((gone && oc->http_status == 404) || (gone == 405 && oc->http_status == 405))
        return "SrcVersionNotFound";
    if (oc->http_status == 403)
        return ops[op].denied;
    return NULL; /* S3's own code is the best reason there is */
}
