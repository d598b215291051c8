/*
 * prepare.c — the Preparing step of a job, and what a worker needs before running it.
 *
 * Preparing (as AWS, before any task runs): fetch the manifest object into the job's
 * directory (ETag compared), read it once — every row validated, TotalNumberOfTasks counted,
 * a bad manifest fails the job here with InvalidManifestContent — into the job's spool,
 * sorted by key and cut into shards (spool.c; the tasks then read the spool, never the
 * manifest again: Inventory data files are downloaded once), and capture the replication
 * configuration into the catalogue (the given file, or the source bucket's
 * GetBucketReplication), so that a job resumed after a crash runs under the same rules it
 * started with. A Preparing cut short (kill -9) starts again from the fetch: the spool is
 * complete only once its index.json exists, and a new build clears what an earlier one left. Attaching (every time a worker takes the job): parse those rules
 * and check each destination bucket once (dests.c).
 */
#include "run/run_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads the whole manifest once into the job's spool: validates every row, counts the
   tasks, and tells the first row's bucket (the source bucket whose replication configuration
   applies). */
static int spool_manifest(jobs_job *job, const s3_endpoint *ep, const run_options *o,
                          char *first_bucket, size_t cap)
{
    char msg[1024], dir[4200];
    int orc = 0;
    if (s3_path_join(dir, sizeof dir, job->dir, "spool") != 0) {
        jobs_job_fail(job, "InternalError", "the job's folder path is too long");
        return -1;
    }
    mf_reader *r = run__manifest_open(job, ep, &orc, msg, sizeof msg);
    if (!r) {
        jobs_job_fail(job, orc == -MF_E_INVALID_CONTENT ? "InvalidManifestContent"
                                                        : "ManifestNotReadable",
                      msg);
        return -1;
    }
    run__spool_opts so = {.dir = dir, .shard_rows = o->shard_rows,
                          .sort_mem_bytes = o->sort_mem_bytes};
    run__spool_index idx;
    int rc = run__spool_build(r, &so, &idx, &orc, msg, sizeof msg);
    mf_close(r);
    if (rc != 0) {
        jobs_job_fail(job, orc == -MF_E_INVALID_CONTENT ? "InvalidManifestContent"
                           : orc == 0                     ? "InternalError" /* the spool's */
                                                          : "ManifestNotReadable",
                      msg);
        return -1;
    }
    snprintf(first_bucket, cap, "%s", idx.first_bucket);
    job->row.total = idx.n_rows;
    run__spool_index_cleanup(&idx);
    if (!job->manifest_is_local)
        unlink(job->manifest_path); /* the spool holds every row now */
    return 0;
}

/* A ManifestGenerator job: its rules (captured, or the source bucket's) drive
   EligibleForReplication; the generated manifest is spooled in the job's directory and,
   with EnableManifestOutput, named in GeneratedManifestDescriptor. */
static int gen_prepare(jobs_job *job, const s3_endpoint *ep)
{
    repl_rules rules;
    int loaded = 0;
    memset(&rules, 0, sizeof rules);
    if (job->row.rules) {
        char msg[1024];
        json_t *root = json_loads(job->row.rules, 0, NULL);
        if (!root || repl_rules_from_json(&rules, root, "replication configuration", msg,
                                          sizeof msg) != 0) {
            json_decref(root);
            jobs_job_fail(job, "InvalidReplicationConfiguration", msg);
            return -1;
        }
        json_decref(root);
        loaded = 1;
    }
    int rc = run__gen_prepare(job, ep, &rules, &loaded);
    repl_rules_cleanup(&rules);
    if (rc == 0 && job->gen.manifest_arn[0]) {
        json_t *g = json_pack("{s:s,s:{s:s,s:s}}", "Format", MF_FORMAT_NAME_GENERATED,
                              "Location", "ObjectArn", job->gen.manifest_arn, "ETag",
                              job->gen.manifest_etag);
        free(job->row.generated_manifest);
        job->row.generated_manifest = json_dumps(g, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(g);
    }
    return rc;
}

int run__prepare(jobs_job *job, const s3_endpoint *ep, const run_options *o)
{
    char msg[1024], first_bucket[256] = "";
    if (s3_mkdir_p(job->dir, S3_MODE_PRIVATE_DIR) != 0) {
        jobs_job_fail(job, "InternalError", "cannot create the job's state directory");
        return -1;
    }
    /* before the manifest is read or any task runs (AWS fails such a job; jobs.h) */
    if (jobs_report_check(job, ep, msg, sizeof msg) != 0) {
        jobs_job_fail(job, "ReportNotWritable", msg);
        return -1;
    }
    if (job->gen.enabled && gen_prepare(job, ep) != 0)
        return -1;
    if (!job->manifest_is_local) {
        int rc = mf_fetch_object(ep, job->manifest_bucket, job->manifest_key,
                                 job->manifest_version, job->manifest_etag, job->manifest_path,
                                 msg, sizeof msg);
        if (rc) {
            jobs_job_fail(job, rc == -MF_E_ETAG_MISMATCH ? "ManifestETagMismatch"
                                                         : "ManifestNotReadable",
                          msg);
            return -1;
        }
    }
    if (spool_manifest(job, ep, o, first_bucket, sizeof first_bucket) != 0)
        return -1;
    if (!job->row.rules && first_bucket[0]) {
        repl_rules rules;
        char *json = NULL;
        if (repl_rules_load_bucket(&rules, ep, first_bucket, &json, msg, sizeof msg) != 0) {
            jobs_job_fail(job, "SrcBucketReplicationConfigMissing", msg);
            return -1;
        }
        repl_rules_cleanup(&rules);
        job->row.rules = json;
    }
    return 0;
}

/* Parts of one version in flight: 8 keeps a 5 GiB+ copy busy on AWS (each UploadPartCopy
   runs ~1 s per 100 MiB server-side) without letting one version take a worker's calls. */
#define PART_PARALLELISM_MAX 8

int run__attach_rules(jobs_job *job, repl_rules *rules, const s3_endpoint *const *eps,
                      const run_options *o)
{
    char msg[1024], origin[80];
    json_error_t je;
    snprintf(origin, sizeof origin, "job %s: replication configuration", job->row.id);
    json_t *root = json_loads(job->row.rules ? job->row.rules : "", 0, &je);
    if (!root) {
        jobs_job_fail(job, "SrcBucketReplicationConfigMissing",
                      "no replication configuration was captured for this job");
        return -1;
    }
    int rc = repl_rules_from_json(rules, root, origin, msg, sizeof msg);
    json_decref(root);
    if (rc) {
        jobs_job_fail(job, "InvalidReplicationConfiguration", msg);
        return -1;
    }
    repl_dests_assign(rules, o->destination_profiles, o->n_destination_profiles);
    repl_dests_check(rules, eps);
    int par = o->concurrency / o->workers;
    rules->copy = (repl_copy_cfg){o->multipart_threshold_bytes, o->part_size_bytes,
                                  par < 1 ? 1 : par > PART_PARALLELISM_MAX ? PART_PARALLELISM_MAX
                                                                          : par};
    return 0;
}
