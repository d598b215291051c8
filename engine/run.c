/*
 * run.c — runs one job in the foreground, from its CreateJob document to a terminal status.
 *
 *   New -> Preparing   fetch the manifest (S3 object or local file; ETag compared), read it
 *                      once to validate every row and count TotalNumberOfTasks (as AWS, a
 *                      bad manifest fails the job before any task runs), load the
 *                      replication rules, check each destination bucket (exists, versioned)
 *   -> Active          the planner (this thread) streams the manifest again into units,
 *                      the pool's workers run them, the report writer thread writes rows
 *   -> Completing      results files synced, manifest.json written and uploaded
 *   -> Complete | Failed (more than 50 % of at least 1,000 tasks failed, or the manifest or
 *                      report could not be read or written)
 *
 * Threads: this one (planner), N workers, one report writer; they meet at bounded queues.
 */
#include "engine/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FAIL_THRESHOLD_MIN_TASKS 1000
#define REPORT_SYNC_INTERVAL_MS 1000
#define PROGRESS_INTERVAL_MS 500
#define MAX_ENDPOINTS 16 /* the source's and up to 15 --destination-profile ones */
/* Parts of one version in flight: 8 keeps a 5 GiB+ copy busy on AWS (each UploadPartCopy
   runs ~1 s per 100 MiB server-side) without letting one version take a worker's calls. */
#define PART_PARALLELISM_MAX 8

const char *eng_strerror(int err)
{
    switch (err < 0 ? -err : err) {
#define XX(name, msg)                                                                      \
    case ENG_E_##name:                                                                     \
        return msg;
        ENG_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *eng_errname(int err)
{
    switch (err < 0 ? -err : err) {
#define XX(name, msg)                                                                      \
    case ENG_E_##name:                                                                     \
        return "ENG_E_" #name;
        ENG_ERRNO_MAP(XX)
#undef XX
    }
    return "ENG_E_UNKNOWN";
}

const char *eng_status_name(eng_status s)
{
    switch (s) {
#define XX(name, str)                                                                      \
    case ENG_STATUS_##name:                                                                \
        return str;
        ENG_STATUS_MAP(XX)
#undef XX
    }
    return "Unknown";
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return (mkdir(tmp, 0755) != 0 && errno != EEXIST) ? -1 : 0;
}

static void state_root(const eng_options *o, char *out, size_t cap)
{
    const char *env;
    if (o->state_dir && *o->state_dir)
        snprintf(out, cap, "%s", o->state_dir);
    else if ((env = getenv("BATCHREP_STATE_DIR")) && *env)
        snprintf(out, cap, "%s", env);
    else if ((env = getenv("XDG_STATE_HOME")) && *env)
        snprintf(out, cap, "%s/batchrep", env);
    else
        snprintf(out, cap, "%s/.local/state/batchrep", getenv("HOME") ? getenv("HOME") : ".");
}

/* ---- the report writer thread ---------------------------------------------------------- */

typedef struct writer_ctx {
    eng__job *job;
    eng__queue *done_q;
    rpt_writer *rpt;             /* NULL: report disabled */
    eng__counters *counters;
    _Atomic int *stop;
    _Atomic int threshold_hit;
    int progress;
    int io_error;
    char io_msg[256];
    int64_t started_ms;
} writer_ctx;

static void print_progress(writer_ctx *wc, int final)
{
    uint64_t ok = atomic_load(&wc->counters->succeeded);
    uint64_t bad = atomic_load(&wc->counters->failed);
    uint64_t done = ok + bad, total = wc->job->total_tasks;
    double secs = (double)(eng__now_ms() - wc->started_ms) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    double eta = rate > 0 && total > done ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r\033[Kbatchrep: %llu/%llu tasks, %llu succeeded, %llu failed, "
                    "%.0f tasks/s, ETA %.0fs%s",
            (unsigned long long)done, (unsigned long long)total, (unsigned long long)ok,
            (unsigned long long)bad, rate, eta, final ? "\n" : "");
}

static void write_rows(writer_ctx *wc, eng__unit *u)
{
    s3_slice bucket = eng__unit_bucket(u);
    for (size_t i = 0; i < eng__unit_n_tasks(u); i++) {
        const eng__task *t = eng__unit_task(u, i);
        if (t->not_run)
            continue;
        if (wc->rpt && !wc->io_error) {
            rpt_row row = {
                .bucket = bucket,
                .key = t->key_raw,
                .version_id = t->version_id,
                .succeeded = t->succeeded,
                .http_status = t->http_status,
                .error_code = t->error_code,
                .message = t->message,
            };
            if (rpt_writer_add(wc->rpt, &row) != 0) {
                wc->io_error = 1;
                snprintf(wc->io_msg, sizeof wc->io_msg, "cannot write the results files");
                atomic_store(wc->stop, 1);
            }
        }
        atomic_fetch_add(t->succeeded ? &wc->counters->succeeded : &wc->counters->failed, 1);
    }
    uint64_t ok = atomic_load(&wc->counters->succeeded);
    uint64_t bad = atomic_load(&wc->counters->failed);
    if (ok + bad >= FAIL_THRESHOLD_MIN_TASKS && bad * 2 > ok + bad &&
        !atomic_load(&wc->threshold_hit)) {
        atomic_store(&wc->threshold_hit, 1);
        atomic_store(wc->stop, 1);
    }
}

static void *writer_main(void *arg)
{
    writer_ctx *wc = arg;
    int64_t last_sync = eng__now_ms(), last_progress = 0;
    for (;;) {
        int closed = 0;
        eng__unit *u = eng__queue_pop(wc->done_q, 100, &closed);
        if (u) {
            write_rows(wc, u);
            eng__unit_destroy(u);
        } else if (closed) {
            break;
        }
        int64_t now = eng__now_ms();
        if (wc->rpt && !wc->io_error && now - last_sync >= REPORT_SYNC_INTERVAL_MS) {
            if (rpt_writer_sync(wc->rpt, NULL, NULL) != 0) {
                wc->io_error = 1;
                snprintf(wc->io_msg, sizeof wc->io_msg, "cannot sync the results files");
                atomic_store(wc->stop, 1);
            }
            last_sync = now;
        }
        if (wc->progress && now - last_progress >= PROGRESS_INTERVAL_MS) {
            print_progress(wc, 0);
            last_progress = now;
        }
    }
    if (wc->progress)
        print_progress(wc, 1);
    return NULL;
}

/* ---- preparing ---------------------------------------------------------------------- */

static void job_fail(eng__job *job, const char *code, const char *reason)
{
    job->status = ENG_STATUS_FAILED;
    snprintf(job->failure_code, sizeof job->failure_code, "%s", code);
    snprintf(job->failure_reason, sizeof job->failure_reason, "%s", reason);
}

/* Fetches an S3 manifest into the job's directory. 0, or the job is Failed. */
static int fetch_manifest(eng__job *job, const s3_endpoint *ep)
{
    char msg[1024];
    if (job->manifest_is_local)
        return 0;
    snprintf(job->manifest_path, sizeof job->manifest_path, "%s/manifest.src", job->dir);
    int rc = mf_fetch_object(ep, job->manifest_bucket, job->manifest_key,
                             job->manifest_version, job->manifest_etag, job->manifest_path, msg,
                             sizeof msg);
    if (rc) {
        job_fail(job, rc == -MF_E_ETAG_MISMATCH ? "ManifestETagMismatch" : "ManifestNotReadable",
                 msg);
        return -1;
    }
    return 0;
}

/* Reads the whole manifest once: validates every row, counts the tasks, and tells the
   first row's bucket (the source bucket whose replication configuration applies). */
static int count_manifest(eng__job *job, char *first_bucket, size_t cap)
{
    char msg[1024];
    const char *name = job->manifest_is_local ? job->manifest_path
                                              : json_string_value(json_object_get(
                                                    json_object_get(json_object_get(
                                                                        job->doc, "Manifest"),
                                                                    "Location"),
                                                    "ObjectArn"));
    mf_reader *r = mf_open_csv(job->manifest_path, name, &job->csv, msg, sizeof msg);
    if (!r) {
        job_fail(job, "ManifestNotReadable", msg);
        return -1;
    }
    mf_entry e;
    int rc;
    uint64_t n = 0;
    while ((rc = mf_next(r, &e, msg, sizeof msg)) == 1) {
        if (n == 0)
            snprintf(first_bucket, cap, "%.*s", (int)e.bucket.len, e.bucket.ptr);
        n++;
    }
    mf_close(r);
    if (rc < 0) {
        job_fail(job, rc == -MF_E_INVALID_CONTENT ? "InvalidManifestContent" : "ManifestNotReadable",
                 msg);
        return -1;
    }
    job->total_tasks = n;
    return 0;
}

/* GetBucketVersioning on each destination: a missing or unversioned destination fails its
   tasks without sending a copy (CopyObject into an unversioned bucket would succeed). */
static void check_destinations(eng__rules *rules, const s3_endpoint *const *eps)
{
    for (size_t i = 0; i < rules->n_dests; i++) {
        eng__dest *d = &rules->dests[i];
        const s3_endpoint *ep = eps[d->ep_index];
        s3_request req = {.method = "GET", .bucket = d->bucket, .n_query = 1};
        req.query[0] = (s3_query_param){"versioning", ""};
        s3_response resp;
        s3_outcome oc;
        int rc = s3_perform(ep, &req, &resp, &oc);
        d->http_status = (int)oc.http_status;
        if (rc == 0 && oc.http_status == 200) {
            char status[32] = "";
            s3_xml_find_text((s3_slice){resp.body.ptr, resp.body.len}, "Status", status,
                             sizeof status);
            d->state = strcmp(status, "Enabled") == 0 ? ENG__DEST_OK : ENG__DEST_UNVERSIONED;
        } else if (oc.http_status == 404) {
            d->state = ENG__DEST_MISSING;
        } else if (oc.http_status == 403) {
            d->state = ENG__DEST_DENIED;
        } /* anything else: let each task find out */
        s3_response_cleanup(&resp);
    }
}

/* ---- the run ------------------------------------------------------------------------- */

static int plan(eng__job *job, eng__pool *pool, _Atomic int *stop, char *msg, size_t cap)
{
    mf_reader *r = mf_open_csv(job->manifest_path, job->manifest_path, &job->csv, msg, cap);
    if (!r)
        return -1;
    eng__unit_builder b;
    eng__unit_builder_init(&b);
    mf_entry e;
    int rc;
    while ((rc = mf_next(r, &e, msg, cap)) == 1 && !atomic_load(stop)) {
        if (eng__unit_builder_len(&b) > 0 && !eng__unit_builder_same_key(&b, &e)) {
            eng__unit *u = eng__unit_builder_take(&b);
            if (!u || eng__pool_submit(pool, u) != 0) {
                eng__unit_destroy(u);
                rc = -1;
                break;
            }
        }
        if (eng__unit_builder_add(&b, &e) != 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && eng__unit_builder_len(&b) > 0 && !atomic_load(stop)) {
        eng__unit *u = eng__unit_builder_take(&b);
        if (!u || eng__pool_submit(pool, u) != 0) {
            eng__unit_destroy(u);
            rc = -1;
        }
    }
    eng__unit_builder_cleanup(&b);
    mf_close(r);
    return rc < 0 && !atomic_load(stop) ? -1 : 0;
}

static int open_report(eng__job *job, rpt_opts *ro, rpt_writer **out, char *root, size_t cap)
{
    char msg[512];
    *out = NULL;
    if (!job->report_enabled)
        return 0;
    if (job->report_is_local)
        snprintf(root, cap, "%s", job->report_bucket);
    else
        snprintf(root, cap, "%s/report", job->dir);
    memset(ro, 0, sizeof *ro);
    ro->root_dir = root;
    ro->bucket = job->report_bucket;
    ro->prefix = job->report_prefix;
    ro->job_id = job->id;
    ro->scope = job->report_scope;
    *out = rpt_writer_open(ro, msg, sizeof msg);
    if (!*out) {
        job_fail(job, "ReportNotWritable", msg);
        return -1;
    }
    return 0;
}

static int run_active(eng__job *job, const eng_options *o, const s3_endpoint *const *eps,
                      size_t n_eps, const s3_endpoint *ep,
                      const eng__rules *rules, eng__counters *counters)
{
    char msg[1024], root[4096];
    _Atomic int stop = 0;
    eng__queue done_q;
    rpt_opts ro;
    rpt_writer *rpt;
    if (open_report(job, &ro, &rpt, root, sizeof root))
        return -1;
    if (eng__queue_init(&done_q, 1024)) {
        rpt_writer_destroy(rpt);
        return -ENG_E_NOMEM;
    }
    writer_ctx wc = {.job = job, .done_q = &done_q, .rpt = rpt, .counters = counters,
                     .stop = &stop, .progress = o->progress, .started_ms = eng__now_ms()};
    pthread_t wth;
    if (pthread_create(&wth, NULL, writer_main, &wc) != 0) {
        eng__queue_cleanup(&done_q);
        rpt_writer_destroy(rpt);
        return -ENG_E_THREAD;
    }
    eng__pool_cfg pc = {
        .ep = ep, .eps = eps, .n_eps = n_eps, .rules = rules, .workers = o->workers, .concurrency = o->concurrency,
        .max_attempts = o->max_attempts, .retry_base_ms = o->retry_base_ms,
        .retry_cap_ms = o->retry_cap_ms, .counters = counters, .done_q = &done_q, .stop = &stop,
    };
    job->status = ENG_STATUS_ACTIVE;
    int64_t t0 = eng__now_ms();
    eng__pool *pool = eng__pool_start(&pc, msg, sizeof msg);
    int plan_rc = -1;
    if (pool) {
        plan_rc = plan(job, pool, &stop, msg, sizeof msg);
        if (plan_rc)
            atomic_store(&stop, 1);
        eng__pool_finish(pool);
        eng__pool_destroy(pool);
    }
    eng__queue_close(&done_q);
    pthread_join(wth, NULL);
    eng__queue_cleanup(&done_q);
    job->active_seconds = (double)(eng__now_ms() - t0) / 1000.0;

    job->status = ENG_STATUS_COMPLETING;
    if (!pool || plan_rc) {
        job_fail(job, "InternalError", msg);
    } else if (wc.io_error) {
        job_fail(job, "ReportNotWritable", wc.io_msg);
    } else if (atomic_load(&wc.threshold_hit)) {
        job_fail(job, "TaskFailureThresholdExceeded",
                 "More than 50% of the tasks that ran failed (checked once at least 1,000 "
                 "tasks have run)");
    }
    if (rpt) {
        rpt_summary sum;
        if (rpt_writer_finish(rpt, &sum, msg, sizeof msg) != 0) {
            job_fail(job, "ReportNotWritable", msg);
        } else if (!job->report_is_local && rpt_upload(ep, &ro, &sum, msg, sizeof msg) != 0) {
            char reason[1200];
            snprintf(reason, sizeof reason,
                     "The job report could not be written to your report bucket: %s", msg);
            job_fail(job, "ReportNotWritable", reason);
        }
    }
    if (job->status == ENG_STATUS_COMPLETING)
        job->status = ENG_STATUS_COMPLETE;
    return 0;
}

static int part_parallelism(const eng_options *o)
{
    int par = o->concurrency / o->workers;
    return par < 1 ? 1 : par > PART_PARALLELISM_MAX ? PART_PARALLELISM_MAX : par;
}

static int apply_defaults(eng_options *o, char *err, size_t err_len)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (o->concurrency < 0 || o->workers < 0 || o->max_attempts < 0 || o->retry_base_ms < 0 ||
        o->retry_cap_ms < 0) {
        snprintf(err, err_len, "options: counts and delays must not be negative");
        return -ENG_E_INVALID_JOB;
    }
    if (!o->concurrency)
        o->concurrency = 64;
    if (!o->workers)
        o->workers = cores > 0 ? (int)cores : 1;
    if (o->workers > o->concurrency)
        o->workers = o->concurrency;
    if (!o->max_attempts)
        o->max_attempts = 8;
    if (!o->retry_base_ms)
        o->retry_base_ms = 100;
    if (!o->retry_cap_ms)
        o->retry_cap_ms = 20000;
    if (o->multipart_threshold_bytes < 0 || o->part_size_bytes < 0) {
        snprintf(err, err_len, "options: sizes must not be negative");
        return -ENG_E_INVALID_JOB;
    }
    if (!o->multipart_threshold_bytes)
        o->multipart_threshold_bytes = (int64_t)5 << 30; /* CopyObject's limit (§8.1) */
    if (!o->part_size_bytes)
        o->part_size_bytes = (int64_t)8 << 20; /* the AWS CLI's multipart_chunksize */
    return 0;
}

int eng_run_job(const eng_options *opts, eng_result *out, char *err, size_t err_len)
{
    eng_options o = *opts;
    eng__job job;
    eng__rules rules;
    eng__counters counters;
    s3_endpoint ep;
    char root[4096], first_bucket[256] = "";
    s3_endpoint *eps_own[MAX_ENDPOINTS] = {&ep};
    size_t n_eps = 1;
    int rc;

    memset(out, 0, sizeof *out);
    memset(&rules, 0, sizeof rules);
    memset(&counters, 0, sizeof counters);
    if ((rc = apply_defaults(&o, err, err_len)))
        return rc;
    json_error_t je;
    json_t *doc = json_load_file(o.job_path, 0, &je);
    if (!doc) {
        snprintf(err, err_len, "%s:%d:%d: not valid JSON: %s", o.job_path, je.line, je.column,
                 je.text);
        return -ENG_E_INVALID_JOB;
    }
    rc = eng__job_parse(&job, doc, o.job_path, err, err_len);
    json_decref(doc);
    if (rc) {
        eng__job_cleanup(&job);
        return rc;
    }
    if (s3_endpoint_load(&ep, NULL, err, err_len) != 0) {
        eng__job_cleanup(&job);
        return -ENG_E_CONFIG;
    }
    if (o.replication_config_path &&
        (rc = eng__rules_load_file(&rules, o.replication_config_path, err, err_len))) {
        eng__job_cleanup(&job);
        return -ENG_E_INVALID_JOB;
    }

    eng__uuid4(job.id);
    snprintf(job.arn, sizeof job.arn, "arn:aws:s3:%s:%s:job/%s", ep.region, job.account_id,
             job.id);
    job.creation_ms = eng__now_ms();
    state_root(&o, root, sizeof root);
    snprintf(job.dir, sizeof job.dir, "%s/jobs/%s", root, job.id);
    if (mkdir_p(job.dir) != 0) {
        snprintf(err, err_len, "%s: cannot create the job's state directory: %s", job.dir,
                 strerror(errno));
        eng__job_cleanup(&job);
        eng__rules_cleanup(&rules);
        return -ENG_E_IO;
    }

    job.status = ENG_STATUS_PREPARING;
    if (fetch_manifest(&job, &ep) == 0 &&
        count_manifest(&job, first_bucket, sizeof first_bucket) == 0) {
        char msg[1024];
        if (!o.replication_config_path && first_bucket[0] &&
            eng__rules_load_bucket(&rules, &ep, first_bucket, msg, sizeof msg) != 0)
            job_fail(&job, "SrcBucketReplicationConfigMissing", msg);
        if (job.status == ENG_STATUS_PREPARING) {
            if (eng__dests_bind(&rules, o.destination_profiles, o.n_destination_profiles,
                                eps_own, MAX_ENDPOINTS, &n_eps, msg, sizeof msg) != 0)
                job_fail(&job, "InvalidDestinationProfile", msg);
        }
        if (job.status == ENG_STATUS_PREPARING) {
            const s3_endpoint *const *eps = (const s3_endpoint *const *)eps_own;
            check_destinations(&rules, eps);
            eng__dests_check(&rules, eps);
            rules.copy = (eng__copy_cfg){o.multipart_threshold_bytes, o.part_size_bytes,
                                         part_parallelism(&o)};
            if (job.confirmation_required)
                fprintf(stderr, "batchrep: ConfirmationRequired is set; `run` confirms the "
                                "job by running it\n");
            job.status = ENG_STATUS_READY;
            if (run_active(&job, &o, eps, n_eps, &ep, &rules, &counters) < 0 &&
                job.status != ENG_STATUS_FAILED)
                job_fail(&job, "InternalError", "the job could not run");
        }
    }
    job.termination_ms = eng__now_ms();
    out->status = job.status;
    out->retries = atomic_load(&counters.retries);
    out->throttle_events = atomic_load(&counters.throttle_events);
    out->describe = eng__job_describe(&job, atomic_load(&counters.succeeded),
                                      atomic_load(&counters.failed));
    char path[4200];
    snprintf(path, sizeof path, "%s/describe.json", job.dir);
    json_dump_file(out->describe, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    for (size_t i = 1; i < n_eps; i++) {
        memset(eps_own[i], 0, sizeof *eps_own[i]); /* credentials */
        free(eps_own[i]);
    }
    eng__rules_cleanup(&rules);
    eng__job_cleanup(&job);
    return 0;
}
