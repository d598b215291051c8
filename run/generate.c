/*
 * generate.c — Preparing's side of the manifest kinds: opening the job's manifest in its
 * format (CSV, Inventory, an earlier report's failures, a generated manifest), and running
 * the ManifestGenerator (aws-formats.md §3.2; its members are parsed in jobs/generator.c):
 * the eligibility test the generator asks for, the listing, and the upload of the generated
 * manifest.
 *
 * The generated manifest is written under <job dir>/generated/<base>/ where <base> is
 * "[<ManifestPrefix>/]job-<id>": the same relative keys as in the output bucket, so the
 * upload is a copy of the folder, and both passes over the manifest (count, run) read the
 * same spooled list.
 */
#include "run/run_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
/* ---- eligibility ------------------------------------------------------------------------- */

typedef struct elig_ctx {
    const repl_rules *rules;
    const s3_endpoint *ep;
    int *out_rule;
} elig_ctx;

/* The version's tags (GetObjectTagging), for rules that filter on tags. */
static int read_tags(elig_ctx *c, const char *bucket, const char *key, const char *vid,
                     repl_tag **out, size_t *n_out, char *err, size_t err_len)
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
    rc = repl_tags_from_xml((s3_slice){resp.body.ptr, resp.body.len}, out, n_out);
    s3_response_cleanup(&resp);
    if (rc != 0)
        snprintf(err, err_len, "arn:aws:s3:::%s/%s version %s: GetObjectTagging: unreadable "
                 "answer", bucket, key, vid);
    return rc;
}

/* mf_eligible_fn: the verdict a task gets (repl_verdict_version): not archived, and some
   enabled rule selects a destination for it. */
static int eligible(void *user, const char *bucket, const char *key, const char *vid,
                    int is_dm, const char *storage_class, char *err, size_t err_len)
{
    elig_ctx *c = user;
    s3_slice k = s3_slice_cstr(key);
    const char *cls = storage_class && storage_class[0] ? storage_class : NULL;
    repl_failure_id v = repl_verdict_version(c->rules, k, NULL, 0, is_dm, cls, c->out_rule);
    if (v == REPL_OK)
        return 1;
    if (v == REPL_NOT_ELIGIBLE_ARCHIVED || !c->rules->needs_tags || is_dm)
        return 0; /* tag rules never match a delete marker */
    repl_tag *tags;
    size_t n;
    if (read_tags(c, bucket, key, vid, &tags, &n, err, err_len) != 0)
        return -1;
    int ok = n > 0 &&
             repl_verdict_version(c->rules, k, tags, n, 0, cls, c->out_rule) == REPL_OK;
    repl_tags_free(tags, n);
    return ok;
}

/* ---- Preparing ---------------------------------------------------------------------------- */

static int put_file(const s3_endpoint *ep, const char *bucket, const char *key,
                    const char *path, const char *content_type, char *err, size_t err_len)
{
    return s3_put_file(ep, bucket, key, path, content_type, err, err_len) == S3_E_OK ? 0 : -1;
}

/* Uploads manifest.json's data files, then manifest.json and manifest.checksum (last, so a
   reader never sees a manifest.json whose files are missing). */
static int upload_output(jobs_job *job, const s3_endpoint *ep, const char *out_dir,
                         const char *base, const mf_gen_result *res, char *err, size_t err_len)
{
    jobs_gen *g = &job->gen;
    json_error_t je;
    json_t *m = json_load_file(res->manifest_json, 0, &je);
    if (!m) {
        snprintf(err, err_len, "%.1000s: %s", res->manifest_json, je.text);
        return -1;
    }
    json_t *files = json_object_get(m, "files");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(files); i++) {
        const char *k = json_string_value(json_object_get(json_array_get(files, i), "key"));
        char path[4400];
        if (s3_key_local_path(path, sizeof path, out_dir, k ? k : "") != 0) {
            snprintf(err, err_len, "%.1000s/%.1000s: path too long", out_dir, k ? k : "");
            rc = -1;
            break;
        }
        rc = put_file(ep, g->out_bucket, k ? k : "", path, "application/gzip", err, err_len);
    }
    json_decref(m);
    char key[1200], path[4400];
    if (rc == 0) {
        rc = s3_path_join(key, sizeof key, base, "manifest.json") != 0
                 ? -1
                 : put_file(ep, g->out_bucket, key, res->manifest_json, "application/json", err,
                            err_len);
    }
    if (rc == 0) {
        if (s3_path_join(key, sizeof key, base, "manifest.checksum") != 0 ||
            s3_key_local_path(path, sizeof path, out_dir, key) != 0) {
            snprintf(err, err_len, "%.1000s/%.1000s: path too long", out_dir, base);
            rc = -1;
        } else {
            rc = put_file(ep, g->out_bucket, key, path, "text/plain", err, err_len);
        }
    }
    if (rc == 0) {
        int n = snprintf(g->manifest_arn, sizeof g->manifest_arn,
                         "arn:aws:s3:::%s/%s/manifest.json", g->out_bucket, base);
        if (n < 0 || (size_t)n >= sizeof g->manifest_arn) {
            snprintf(err, err_len, "the generated manifest's ARN is too long");
            rc = -1;
        }
        /* A single PUT without SSE-KMS: the ETag is the MD5 of the bytes. */
        snprintf(g->manifest_etag, sizeof g->manifest_etag, "%s", res->manifest_md5);
    }
    return rc;
}

int run__gen_prepare(jobs_job *job, const s3_endpoint *ep, repl_rules *rules,
                     int *rules_loaded)
{
    jobs_gen *g = &job->gen;
    char msg[2048];
    if (!*rules_loaded) {
        if (repl_rules_load_bucket(rules, ep, g->source_bucket, &job->row.rules, msg,
                                   sizeof msg) != 0) {
            jobs_job_fail(job, "SrcBucketReplicationConfigMissing", msg);
            return -1;
        }
        *rules_loaded = 1;
    }
    elig_ctx ec = {.rules = rules, .ep = ep,
                   .out_rule = calloc(rules->n_dests ? rules->n_dests : 1, sizeof(int))};
    if (!ec.out_rule) {
        jobs_job_fail(job, "InternalError", "out of memory");
        return -1;
    }
    char out_dir[4200], base[1200], dest_arn[300];
    snprintf(out_dir, sizeof out_dir, "%s/generated", job->dir);
    jobs_gen_base(job, base, sizeof base);
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
        jobs_job_fail(job, "ManifestGenerationFailed", reason);
        return -1;
    }
    g->generated = 1;
    g->n_selected = res.n_selected;
    if ((size_t)snprintf(job->manifest_path, sizeof job->manifest_path, "%s",
                         res.manifest_json) >= sizeof job->manifest_path) {
        jobs_job_fail(job, "ManifestGenerationFailed", "the generated manifest's path is too long");
        return -1;
    }
    job->manifest_is_local = 1;
    job->manifest_format = MF_FORMAT_INVENTORY;
    if (g->output && upload_output(job, ep, out_dir, base, &res, msg, sizeof msg) != 0) {
        char reason[2200];
        snprintf(reason, sizeof reason,
                 "The generated manifest could not be written to ManifestOutputLocation: %s",
                 msg);
        jobs_job_fail(job, "ManifestNotWritable", reason);
        return -1;
    }
    return 0;
}

mf_reader *run__manifest_open(const jobs_job *job, const s3_endpoint *ep, int *out_rc,
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
