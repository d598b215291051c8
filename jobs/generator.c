/*
 * generator.c — ManifestGenerator.S3JobManifestGenerator in a CreateJob document
 * (aws-formats.md §3.2): its members parsed and checked, each refusal naming the member, and
 * where the generated manifest lives (its key prefix and its local copy). Running the
 * generator is Preparing's work (run/generate.c).
 */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bad(char *err, size_t err_len, const char *origin, const char *field,
               const char *what)
{
    snprintf(err, err_len, "%s: ManifestGenerator.S3JobManifestGenerator.%s: %s", origin,
             field, what);
    return -JOBS_E_INVALID_JOB;
}

/* A list of 1..JOBS_GEN_MAX_LIST non-empty strings (at most 1024 bytes each). */
static int str_list(json_t *v, const char **out, size_t *n, const char *origin,
                    const char *field, char *err, size_t err_len)
{
    *n = 0;
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > JOBS_GEN_MAX_LIST)
        return bad(err, err_len, origin, field, "must be a list of 1 to 16 strings");
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > 1024) {
            char f[160];
            snprintf(f, sizeof f, "%s[%zu]", field, i);
            return bad(err, err_len, origin, f, "must be a string of 1 to 1024 characters");
        }
        out[(*n)++] = json_string_value(s);
    }
    return 0;
}

/* A timestamp member: ISO-8601 ("2023-09-01T00:00:00Z") as the CLI JSON carries it, or a
   number of epoch seconds (what botocore serialises). */
static int timestamp(json_t *v, int64_t *out_ms)
{
    if (json_is_integer(v)) {
        *out_ms = (int64_t)json_integer_value(v) * 1000;
        return 0;
    }
    if (json_is_real(v)) {
        *out_ms = (int64_t)(json_real_value(v) * 1000.0);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    if (s3_parse_time_ms(s, out_ms) == 0)
        return 0;
    /* without fractional seconds: "YYYY-MM-DDTHH:MM:SSZ" -> add ".000" */
    size_t n = strlen(s);
    if (n == 20 && s[19] == 'Z') {
        char t[32];
        snprintf(t, sizeof t, "%.19s.000Z", s);
        return s3_parse_time_ms(t, out_ms);
    }
    return -1;
}

static int size_member(json_t *f, const char *name, int *has, int64_t *out, const char *origin,
                       char *err, size_t err_len)
{
    json_t *v = json_object_get(f, name);
    if (!v)
        return 0;
    char field[64];
    snprintf(field, sizeof field, "Filter.%s", name);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(err, err_len, origin, field, "must be a number of bytes (0 or more)");
    *has = 1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static const char *const STORAGE_CLASSES[] = {"STANDARD", "STANDARD_IA", "ONEZONE_IA",
                                              "GLACIER", "INTELLIGENT_TIERING",
                                              "DEEP_ARCHIVE", "GLACIER_IR"};

/* Long on purpose (~140 lines): one member of S3JobManifestGenerator after another, in the
   order aws-formats.md §3.2 lists them, each with its own message. */
int jobs_gen_parse(jobs_job *job, json_t *gen_doc, const char *origin, char *err,
                   size_t err_len)
{
    jobs_gen *g = &job->gen;
    memset(g, 0, sizeof *g);
    json_t *s = json_object_get(gen_doc, "S3JobManifestGenerator");
    if (!json_is_object(gen_doc) || !json_is_object(s)) {
        snprintf(err, err_len,
                 "%s: ManifestGenerator: must be {\"S3JobManifestGenerator\": {...}}", origin);
        return -JOBS_E_INVALID_JOB;
    }
    const char *src = s3_json_str(s, "SourceBucket");
    char key[8];
    if (!src)
        return bad(err, err_len, origin, "SourceBucket", "required: arn:aws:s3:::bucket");
    if (mf_parse_s3_arn(src, g->source_bucket, sizeof g->source_bucket, key, sizeof key) != 0 ||
        key[0])
        return bad(err, err_len, origin, "SourceBucket",
                   "must be a bucket ARN: arn:aws:s3:::bucket, with " MF_ARN_BUCKET_RULE);
    json_t *en = json_object_get(s, "EnableManifestOutput");
    if (!json_is_boolean(en))
        return bad(err, err_len, origin, "EnableManifestOutput", "required: true or false");
    g->output = json_is_true(en);
    json_t *out = json_object_get(s, "ManifestOutputLocation");
    if (g->output && !json_is_object(out))
        return bad(err, err_len, origin, "ManifestOutputLocation",
                   "required when EnableManifestOutput is true");
    if (json_is_object(out)) {
        const char *ob = s3_json_str(out, "Bucket");
        if (!ob || mf_parse_s3_arn(ob, g->out_bucket, sizeof g->out_bucket, key, sizeof key) != 0 ||
            key[0])
            return bad(err, err_len, origin, "ManifestOutputLocation.Bucket",
                       "required: a bucket ARN, arn:aws:s3:::bucket");
        const char *fmt = s3_json_str(out, "ManifestFormat");
        if (!fmt || strcmp(fmt, MF_FORMAT_NAME_GENERATED) != 0)
            return bad(err, err_len, origin, "ManifestOutputLocation.ManifestFormat",
                       "required: \"S3InventoryReport_CSV_20211130\"");
        g->out_prefix = s3_json_str(out, "ManifestPrefix");
        if (g->out_prefix && (!*g->out_prefix || strlen(g->out_prefix) > 512))
            return bad(err, err_len, origin, "ManifestOutputLocation.ManifestPrefix",
                       "1 to 512 characters");
        json_t *enc = json_object_get(out, "ManifestEncryption");
        if (enc && (!json_is_object(enc) || json_object_get(enc, "SSEKMS")))
            return bad(err, err_len, origin, "ManifestOutputLocation.ManifestEncryption",
                       "only {\"SSES3\": {}} is supported (the output is written with the "
                       "bucket's default encryption)");
    }
    json_t *f = json_object_get(s, "Filter");
    if (!f)
        return 0;
    if (!json_is_object(f))
        return bad(err, err_len, origin, "Filter", "must be an object");
    mf_gen_filter *mf = &g->filter;
    json_t *v;
    if ((v = json_object_get(f, "EligibleForReplication"))) {
        if (!json_is_boolean(v))
            return bad(err, err_len, origin, "Filter.EligibleForReplication",
                       "must be true or false");
        mf->eligible_only = json_is_true(v);
    }
    if ((v = json_object_get(f, "CreatedAfter"))) {
        if (timestamp(v, &mf->created_after_ms) != 0)
            return bad(err, err_len, origin, "Filter.CreatedAfter",
                       "must be a time such as \"2023-09-01T00:00:00Z\"");
        mf->has_created_after = 1;
    }
    if ((v = json_object_get(f, "CreatedBefore"))) {
        if (timestamp(v, &mf->created_before_ms) != 0)
            return bad(err, err_len, origin, "Filter.CreatedBefore",
                       "must be a time such as \"2023-10-01T00:00:00Z\"");
        mf->has_created_before = 1;
    }
    if ((v = json_object_get(f, "ObjectReplicationStatuses"))) {
        if (!json_is_array(v) || json_array_size(v) == 0)
            return bad(err, err_len, origin, "Filter.ObjectReplicationStatuses",
                       "must be a list of NONE, FAILED, COMPLETED, REPLICA");
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            const char *st = json_is_string(e) ? json_string_value(e) : "";
            unsigned bit = strcmp(st, "NONE") == 0        ? MF_REPL_NONE
                           : strcmp(st, "FAILED") == 0    ? MF_REPL_FAILED
                           : strcmp(st, "COMPLETED") == 0 ? MF_REPL_COMPLETED
                           : strcmp(st, "REPLICA") == 0   ? MF_REPL_REPLICA
                                                          : 0;
            if (!bit) {
                char fld[96];
                snprintf(fld, sizeof fld, "Filter.ObjectReplicationStatuses[%zu]", i);
                return bad(err, err_len, origin, fld,
                           "must be one of NONE, FAILED, COMPLETED, REPLICA");
            }
            mf->replication_statuses |= bit;
        }
    }
    json_t *knc = json_object_get(f, "KeyNameConstraint");
    if (knc && !json_is_object(knc))
        return bad(err, err_len, origin, "Filter.KeyNameConstraint", "must be an object");
    if (knc) {
        int rc;
        if ((rc = str_list(json_object_get(knc, "MatchAnyPrefix"), g->prefixes, &mf->n_prefixes,
                           origin, "Filter.KeyNameConstraint.MatchAnyPrefix", err, err_len)) ||
            (rc = str_list(json_object_get(knc, "MatchAnySuffix"), g->suffixes, &mf->n_suffixes,
                           origin, "Filter.KeyNameConstraint.MatchAnySuffix", err, err_len)) ||
            (rc = str_list(json_object_get(knc, "MatchAnySubstring"), g->substrings,
                           &mf->n_substrings, origin,
                           "Filter.KeyNameConstraint.MatchAnySubstring", err, err_len)))
            return rc;
        mf->prefixes = g->prefixes;
        mf->suffixes = g->suffixes;
        mf->substrings = g->substrings;
    }
    int rc;
    if ((rc = size_member(f, "ObjectSizeGreaterThanBytes", &mf->has_size_gt, &mf->size_gt,
                          origin, err, err_len)) ||
        (rc = size_member(f, "ObjectSizeLessThanBytes", &mf->has_size_lt, &mf->size_lt, origin,
                          err, err_len)))
        return rc;
    if ((rc = str_list(json_object_get(f, "MatchAnyStorageClass"), g->classes,
                       &mf->n_storage_classes, origin, "Filter.MatchAnyStorageClass", err,
                       err_len)))
        return rc;
    for (size_t i = 0; i < mf->n_storage_classes; i++) {
        size_t k = 0;
        while (k < sizeof STORAGE_CLASSES / sizeof STORAGE_CLASSES[0] &&
               strcmp(g->classes[i], STORAGE_CLASSES[k]) != 0)
            k++;
        if (k == sizeof STORAGE_CLASSES / sizeof STORAGE_CLASSES[0]) {
            char fld[96];
            snprintf(fld, sizeof fld, "Filter.MatchAnyStorageClass[%zu]", i);
            return bad(err, err_len, origin, fld,
                       "must be one of STANDARD, STANDARD_IA, ONEZONE_IA, GLACIER, "
                       "INTELLIGENT_TIERING, DEEP_ARCHIVE, GLACIER_IR");
        }
    }
    mf->storage_classes = g->classes;
    if (json_object_get(f, "MatchAnyObjectEncryption"))
        return bad(err, err_len, origin, "Filter.MatchAnyObjectEncryption",
                   "is not supported by this version of batchrep");
    g->enabled = 1;
    return 0;
}

/* base = "[<ManifestPrefix>/]job-<id>": the prefix exactly as given (".." and "//" are
   parts of a key), without the trailing '/'s that would double the separator, as the
   report's Prefix (report/writer.c). Its local copy is under <job dir>/generated, at
   s3_key_local_path (dot segments escaped). */
void jobs_gen_base(const jobs_job *job, char *base, size_t cap)
{
    const jobs_gen *g = &job->gen;
    size_t plen = g->out_prefix ? strlen(g->out_prefix) : 0;
    while (plen > 0 && g->out_prefix[plen - 1] == '/')
        plen--;
    if (plen > 0)
        snprintf(base, cap, "%.*s/job-%s", (int)plen, g->out_prefix, job->row.id);
    else
        snprintf(base, cap, "job-%s", job->row.id);
}

void jobs_gen_locate(jobs_job *job)
{
    char base[1200], key[1300], root[4200];
    jobs_gen_base(job, base, sizeof base);
    snprintf(key, sizeof key, "%s/manifest.json", base);
    snprintf(root, sizeof root, "%s/generated", job->dir);
    /* too long: "" stays, and opening it fails the job naming the manifest */
    s3_key_local_path(job->manifest_path, sizeof job->manifest_path, root, key);
    job->manifest_is_local = 1;
    job->manifest_format = MF_FORMAT_INVENTORY;
    job->gen.generated = 1;
}

