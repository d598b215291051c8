/*
 * manifests.c — the engine's side of every manifest kind: opening the job's manifest in its
 * format (CSV, Inventory, an earlier report's failures, a generated manifest), and the
 * ManifestGenerator (aws-formats.md §3.2): its CreateJob members, the eligibility test the
 * generator asks for (the replication rules live here, not in manifest/), the run of the
 * generator during Preparing, and the upload of the generated manifest.
 *
 * The generated manifest is written under <job dir>/generated/<base>/ where <base> is
 * "[<ManifestPrefix>/]job-<id>": the same relative keys as in the output bucket, so the
 * upload is a copy of the folder, and both passes over the manifest (count, run) read the
 * same spooled list.
 */
#include "engine/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int bad(char *err, size_t err_len, const char *origin, const char *field,
               const char *what)
{
    snprintf(err, err_len, "%s: ManifestGenerator.S3JobManifestGenerator.%s: %s", origin,
             field, what);
    return -ENG_E_INVALID_JOB;
}

static const char *jstr(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A list of 1..ENG__GEN_MAX_LIST non-empty strings (at most 1024 bytes each). */
static int str_list(json_t *v, const char **out, size_t *n, const char *origin,
                    const char *field, char *err, size_t err_len)
{
    *n = 0;
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > ENG__GEN_MAX_LIST)
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

int eng__gen_parse(eng__job *job, json_t *gen_doc, const char *origin, char *err,
                   size_t err_len)
{
    eng__gen *g = &job->gen;
    memset(g, 0, sizeof *g);
    json_t *s = json_object_get(gen_doc, "S3JobManifestGenerator");
    if (!json_is_object(gen_doc) || !json_is_object(s)) {
        snprintf(err, err_len,
                 "%s: ManifestGenerator: must be {\"S3JobManifestGenerator\": {...}}", origin);
        return -ENG_E_INVALID_JOB;
    }
    const char *src = jstr(s, "SourceBucket");
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
        const char *ob = jstr(out, "Bucket");
        if (!ob || mf_parse_s3_arn(ob, g->out_bucket, sizeof g->out_bucket, key, sizeof key) != 0 ||
            key[0])
            return bad(err, err_len, origin, "ManifestOutputLocation.Bucket",
                       "required: a bucket ARN, arn:aws:s3:::bucket");
        const char *fmt = jstr(out, "ManifestFormat");
        if (!fmt || strcmp(fmt, MF_FORMAT_NAME_GENERATED) != 0)
            return bad(err, err_len, origin, "ManifestOutputLocation.ManifestFormat",
                       "required: \"S3InventoryReport_CSV_20211130\"");
        g->out_prefix = jstr(out, "ManifestPrefix");
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

/* ---- eligibility ------------------------------------------------------------------------- */

typedef struct elig_ctx {
    const eng__rules *rules;
    const s3_endpoint *ep;
    int *out_rule;
} elig_ctx;

/* The version's tags (GetObjectTagging), for rules that filter on tags. */
static int read_tags(elig_ctx *c, const char *bucket, const char *key, const char *vid,
                     eng__tag **out, size_t *n_out, char *err, size_t err_len)
{
    s3_request req = {.method = "GET", .bucket = bucket, .key = key, .n_query = 2};
    req.query[0] = (s3_query_param){"tagging", ""};
    req.query[1] = (s3_query_param){"versionId", vid};
    s3_response resp;
    s3_outcome oc;
    int rc = s3_perform(c->ep, &req, &resp, &oc);
    *out = NULL;
    *n_out = 0;
    if (rc != 0 || oc.http_status != 200) {
        s3_response_cleanup(&resp);
        if (oc.http_status == 404)
            return 0; /* gone since the listing: no tags, and the task will tell */
        snprintf(err, err_len,
                 "arn:aws:s3:::%s/%s version %s: GetObjectTagging for EligibleForReplication "
                 "failed: HTTP %ld %s",
                 bucket, key, vid, oc.http_status, oc.code);
        return -1;
    }
    json_t *doc = s3_xml_to_json((s3_slice){resp.body.ptr, resp.body.len});
    s3_response_cleanup(&resp);
    json_t *set = json_object_get(doc, "TagSet");
    json_t *tag = json_is_object(set) ? json_object_get(set, "Tag") : NULL;
    size_t n = !tag ? 0 : json_is_array(tag) ? json_array_size(tag) : 1;
    eng__tag *tags = calloc(n ? n : 1, sizeof *tags);
    for (size_t i = 0; tags && i < n; i++) {
        json_t *e = json_is_array(tag) ? json_array_get(tag, i) : tag;
        json_t *k = json_object_get(e, "Key"), *v = json_object_get(e, "Value");
        tags[i].key = strdup(json_is_string(k) ? json_string_value(k) : "");
        tags[i].value = strdup(json_is_string(v) ? json_string_value(v) : "");
    }
    json_decref(doc);
    if (!tags) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    *out = tags;
    *n_out = n;
    return 0;
}

/* mf_eligible_fn: the same test a task applies (unit.c select_dests): not archived, and some
   enabled rule selects a destination for it. */
static int eligible(void *user, const char *bucket, const char *key, const char *vid,
                    int is_dm, const char *storage_class, char *err, size_t err_len)
{
    elig_ctx *c = user;
    if (strcmp(storage_class, "GLACIER") == 0 || strcmp(storage_class, "DEEP_ARCHIVE") == 0)
        return 0;
    s3_slice k = s3_slice_cstr(key);
    if (eng__rules_select(c->rules, k, NULL, 0, is_dm, c->out_rule) > 0)
        return 1;
    if (!c->rules->needs_tags || is_dm)
        return 0; /* tag rules never match a delete marker */
    eng__tag *tags;
    size_t n;
    if (read_tags(c, bucket, key, vid, &tags, &n, err, err_len) != 0)
        return -1;
    int ok = n > 0 && eng__rules_select(c->rules, k, tags, n, 0, c->out_rule) > 0;
    for (size_t i = 0; i < n; i++) {
        free(tags[i].key);
        free(tags[i].value);
    }
    free(tags);
    return ok;
}

/* ---- Preparing ---------------------------------------------------------------------------- */

static void fail_job(eng__job *job, const char *code, const char *reason)
{
    eng__job_fail(job, code, reason);
}

/* base = "[<ManifestPrefix>/]job-<id>": the prefix exactly as given (".." and "//" are
   parts of a key), without the trailing '/'s that would double the separator, as the
   report's Prefix (report/writer.c). Its local copy is under <job dir>/generated, at
   s3_key_local_path (dot segments escaped). */
static void gen_base(const eng__job *job, char *base, size_t cap)
{
    const eng__gen *g = &job->gen;
    size_t plen = g->out_prefix ? strlen(g->out_prefix) : 0;
    while (plen > 0 && g->out_prefix[plen - 1] == '/')
        plen--;
    if (plen > 0)
        snprintf(base, cap, "%.*s/job-%s", (int)plen, g->out_prefix, job->row.id);
    else
        snprintf(base, cap, "job-%s", job->row.id);
}

void eng__gen_locate(eng__job *job)
{
    char base[1200], key[1300], root[4200];
    gen_base(job, base, sizeof base);
    snprintf(key, sizeof key, "%s/manifest.json", base);
    snprintf(root, sizeof root, "%s/generated", job->dir);
    s3_key_local_path(job->manifest_path, sizeof job->manifest_path, root, key);
    job->manifest_is_local = 1;
    job->manifest_format = MF_FORMAT_INVENTORY;
    job->gen.generated = 1;
}

static int put_file(const s3_endpoint *ep, const char *bucket, const char *key,
                    const char *path, const char *content_type, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* A data file holds at most 1,000,000 rows (~10-40 MiB gzip): read whole, one PUT. */
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    int ok = buf && fread(buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) {
        snprintf(err, err_len, "%s: cannot read", path);
        free(buf);
        return -1;
    }
    s3_outcome oc;
    memset(&oc, 0, sizeof oc);
    int rc = s3_put_bytes(ep, bucket, key, buf, (size_t)n, content_type, &oc);
    free(buf);
    if (rc != 0) {
        snprintf(err, err_len, "arn:aws:s3:::%s/%s: PutObject failed: HTTP %ld %s", bucket,
                 key, oc.http_status, oc.code);
        return -1;
    }
    return 0;
}

/* Uploads manifest.json's data files, then manifest.json and manifest.checksum (last, so a
   reader never sees a manifest.json whose files are missing). */
static int upload_output(eng__job *job, const s3_endpoint *ep, const char *out_dir,
                         const char *base, const mf_gen_result *res, char *err, size_t err_len)
{
    eng__gen *g = &job->gen;
    json_error_t je;
    json_t *m = json_load_file(res->manifest_json, 0, &je);
    if (!m) {
        snprintf(err, err_len, "%s: %s", res->manifest_json, je.text);
        return -1;
    }
    json_t *files = json_object_get(m, "files");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(files); i++) {
        const char *k = json_string_value(json_object_get(json_array_get(files, i), "key"));
        char path[4400];
        if (s3_key_local_path(path, sizeof path, out_dir, k ? k : "") != 0) {
            snprintf(err, err_len, "%s/%s: path too long", out_dir, k ? k : "");
            rc = -1;
            break;
        }
        rc = put_file(ep, g->out_bucket, k ? k : "", path, "application/gzip", err, err_len);
    }
    json_decref(m);
    char key[1200], path[4400];
    if (rc == 0) {
        snprintf(key, sizeof key, "%s/manifest.json", base);
        rc = put_file(ep, g->out_bucket, key, res->manifest_json, "application/json", err,
                      err_len);
    }
    if (rc == 0) {
        snprintf(key, sizeof key, "%s/manifest.checksum", base);
        s3_key_local_path(path, sizeof path, out_dir, key);
        rc = put_file(ep, g->out_bucket, key, path, "text/plain", err, err_len);
    }
    if (rc == 0) {
        snprintf(g->manifest_arn, sizeof g->manifest_arn, "arn:aws:s3:::%s/%s/manifest.json",
                 g->out_bucket, base);
        /* A single PUT without SSE-KMS: the ETag is the MD5 of the bytes. */
        snprintf(g->manifest_etag, sizeof g->manifest_etag, "%s", res->manifest_md5);
    }
    return rc;
}

int eng__gen_prepare(eng__job *job, const s3_endpoint *ep, eng__rules *rules,
                     int *rules_loaded)
{
    eng__gen *g = &job->gen;
    char msg[2048];
    if (!*rules_loaded) {
        if (eng__rules_load_bucket(rules, ep, g->source_bucket, &job->row.rules, msg,
                                   sizeof msg) != 0) {
            fail_job(job, "SrcBucketReplicationConfigMissing", msg);
            return -1;
        }
        *rules_loaded = 1;
    }
    elig_ctx ec = {.rules = rules, .ep = ep,
                   .out_rule = calloc(rules->n_dests ? rules->n_dests : 1, sizeof(int))};
    if (!ec.out_rule) {
        fail_job(job, "InternalError", "out of memory");
        return -1;
    }
    char out_dir[4200], base[1200], dest_arn[300];
    snprintf(out_dir, sizeof out_dir, "%s/generated", job->dir);
    gen_base(job, base, sizeof base);
    snprintf(dest_arn, sizeof dest_arn, "arn:aws:s3:::%s",
             g->out_bucket[0] ? g->out_bucket : g->source_bucket);
    mf_gen_opts go = {.ep = ep, .source_bucket = g->source_bucket, .filter = &g->filter,
                      .eligible = eligible, .eligible_user = &ec, .out_dir = out_dir,
                      .base_key = base, .destination_bucket_arn = dest_arn};
    mf_gen_result res;
    int rc = mf_generate(&go, &res, msg, sizeof msg);
    free(ec.out_rule);
    if (rc) {
        char reason[2200];
        snprintf(reason, sizeof reason, "The manifest could not be generated: %s", msg);
        fail_job(job, "ManifestGenerationFailed", reason);
        return -1;
    }
    g->generated = 1;
    g->n_selected = res.n_selected;
    snprintf(job->manifest_path, sizeof job->manifest_path, "%s", res.manifest_json);
    job->manifest_is_local = 1;
    job->manifest_format = MF_FORMAT_INVENTORY;
    if (g->output && upload_output(job, ep, out_dir, base, &res, msg, sizeof msg) != 0) {
        char reason[2200];
        snprintf(reason, sizeof reason,
                 "The generated manifest could not be written to ManifestOutputLocation: %s",
                 msg);
        fail_job(job, "ManifestNotWritable", reason);
        return -1;
    }
    return 0;
}

mf_reader *eng__manifest_open(const eng__job *job, const s3_endpoint *ep, int *out_rc,
                              char *msg, size_t cap)
{
    const char *name = job->manifest_path;
    if (!job->manifest_is_local && !job->gen.generated)
        name = json_string_value(json_object_get(
            json_object_get(json_object_get(job->doc, "Manifest"), "Location"), "ObjectArn"));
    mf_spec spec = {.format = job->manifest_format, .path = job->manifest_path,
                    .display_name = name, .csv = job->csv,
                    /* data files of a manifest fetched from S3 are in S3 too */
                    .ep = job->manifest_is_local ? NULL : ep, .spool_dir = job->dir};
    return mf_open(&spec, out_rc, msg, cap);
}
