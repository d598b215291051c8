/*
 * writer.c — the report writer thread: takes each finished unit, formats its report rows
 * into its shard's buffers, counts them, checks the failure threshold (aws-formats.md §4.2:
 * at least 1,000 tasks and more than half failed), and checkpoints each shard: every
 * --checkpoint-interval (5 s), and at once when the feeder waits for the plan window.
 *
 * A checkpoint (checkpoint.c) is saved in two steps, rows first: the rows buffered since the
 * last one go to the job's work location as parts (one object or file per status, named by
 * shard, lease token and number), then the checkpoint that lists them is saved in the
 * catalogue, fenced by the shard's lease token. A refused save means the lease was lost
 * (another worker took the shard over): the shard is dropped here, its units abandon their
 * work, and nothing more is written for it; the parts written after its last checkpoint are
 * listed nowhere and never reach the report. A shard whose units are all written is settled
 * once more: its parts are joined into its results files (run__shard_join) and its
 * checkpoint says complete with their MD5s, which is all the job's last worker needs to
 * write manifest.json.
 *
 * A full disk (ENOSPC, EDQUOT: local parts with the SQLite catalogue) is not a job failure:
 * the rows stay buffered and the writer pauses — it stops taking finished units, so the pool
 * stops too — and retries every second. A catalogue or work location that does not answer
 * (a restart, an outage) is not one either: the rows stay buffered, the plan window does not
 * move, so the feeder waits, and the next checkpoint tries again.
 */
#include "run/run_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DISK_FULL_RETRY_MS 1000
#define FAIL_THRESHOLD_MIN_TASKS 1000
/* A part that cannot be written this many checkpoints in a row fails the job (each try is
   a blocking request that already retried, ~8 s): the report location is gone. */
#define PUT_FAILURES_MAX 8

static void io_failed(run__job *jr, const char *fmt, const char *what)
{
    if (!atomic_exchange(&jr->io_error, 1))
        snprintf(jr->io_error_msg, sizeof jr->io_error_msg, fmt, what);
    atomic_store(&jr->stop, 1);
}

/* The lease ended: units stop at once, nothing more is written for the shard here. */
static void lost(run__shard *sh)
{
    atomic_store(&sh->lease_until, 0);
    int was = atomic_exchange(&sh->state, RUN__SHARD_LOST);
    if (was != RUN__SHARD_LOST && was != RUN__SHARD_DONE)
        atomic_fetch_add(&sh->job->sched->leases_lost, 1);
}

static void write_unit(run__shard *sh, eng_unit *u)
{
    run__job *jr = sh->job;
    if (atomic_load(&sh->state) == RUN__SHARD_LOST)
        return; /* another worker owns the shard now: its checkpoint decides */
    int all_ran = 1;
    int failed_only = jr->job.report_scope == RPT_SCOPE_FAILED_ONLY;
    s3_slice bucket = eng_unit_bucket(u);
    for (size_t i = 0; i < eng_unit_n_tasks(u); i++) {
        const eng_task *t = eng_unit_task(u, i);
        if (t->not_run) {
            all_ran = 0;
            continue;
        }
        if (jr->job.report_enabled && !(failed_only && t->succeeded)) {
            rpt_row row = {.bucket = bucket, .key = t->key_raw, .version_id = t->version_id,
                           .succeeded = t->succeeded, .http_status = t->http_status,
                           .error_code = t->error_code, .message = t->message};
            int k = !t->succeeded;
            if (rpt_format_row(&sh->rows[k], &row) != 0) {
                io_failed(jr, "%s", "out of memory buffering report rows");
                return;
            }
            sh->rows_n[k]++;
        }
        atomic_fetch_add(t->succeeded ? &jr->succeeded : &jr->failed, 1);
        if (t->succeeded && !t->is_delete_marker && t->size > 0)
            atomic_fetch_add(&jr->bytes, (uint64_t)t->size);
        (t->succeeded ? sh->ckpt.succeeded++ : sh->ckpt.failed++);
    }
    atomic_fetch_add(&jr->restored, eng_unit_n_restored(u));
    if (all_ran) {
        uint64_t first = eng_unit_first_seq(u);
        run_ckpt_add(&sh->ckpt, first, first + eng_unit_n_tasks(u));
    }
    sh->dirty = 1;
    uint64_t ok = atomic_load(&jr->succeeded), bad = atomic_load(&jr->failed);
    if (ok + bad >= FAIL_THRESHOLD_MIN_TASKS && bad * 2 > ok + bad &&
        !atomic_load(&jr->threshold_hit)) {
        atomic_store(&jr->threshold_hit, 1);
        atomic_store(&jr->stop, 1);
    }
}

void run__disk_full(run__sched *s, const char *msg)
{
    int64_t zero = 0;
    if (atomic_compare_exchange_strong(&s->files_full_since_ms, &zero, s3_mono_ms())) {
        pthread_mutex_lock(&s->mu);
        snprintf(s->disk_full_msg, sizeof s->disk_full_msg, "%s", msg);
        pthread_mutex_unlock(&s->mu);
        fprintf(stderr, "batchrep: %s; waiting for space\n", msg);
    }
}

/* The rows buffered since the last checkpoint, written as parts. 0; -2 try again later; -1
   io_error (the report location refused them too many times). */
static int put_parts(run__shard *sh)
{
    run__job *jr = sh->job;
    char msg[4400];
    for (int k = 0; k < 2; k++) {
        if (!sh->rows[k].len)
            continue;
        run_part p = {.failed = k, .rows = sh->rows_n[k], .bytes = sh->rows[k].len};
        snprintf(p.name, sizeof p.name, "parts/s%06u-t%lld-p%u-%s.csv", sh->index,
                 (long long)sh->token, sh->next_part, k ? "failed" : "succeeded");
        s3_md5_hex(sh->rows[k].ptr, sh->rows[k].len, p.md5);
        int rc = run__loc_put(&jr->loc, p.name, sh->rows[k].ptr, sh->rows[k].len, msg,
                              sizeof msg);
        if (rc == -RUN_E_DISK_FULL) {
            run__disk_full(jr->sched, msg);
            return -2;
        }
        if (rc != 0) {
            if (++sh->put_failures >= PUT_FAILURES_MAX) {
                io_failed(jr, "the report rows cannot be written: %s", msg);
                return -1;
            }
            fprintf(stderr, "batchrep: job %s: %s; the rows are kept and written again at the "
                            "next checkpoint\n", jr->job.row.id, msg);
            return -2;
        }
        sh->put_failures = 0;
        sh->next_part++;
        if (run_ckpt_add_part(&sh->ckpt, &p) != 0) {
            io_failed(jr, "%s", "out of memory");
            return -1;
        }
        s3_buf_reset(&sh->rows[k]);
        sh->rows_n[k] = 0;
    }
    return 0;
}

/* Saves the shard's checkpoint in the catalogue, fenced by its lease. 0; -2 the catalogue
   cannot take it now (nothing lost: try again later); -1 the lease is lost. */
static int save_ckpt(run__shard *sh)
{
    run__job *jr = sh->job;
    run__sched *s = jr->sched;
    char msg[1024];
    char *json = run_ckpt_to_json(&sh->ckpt);
    if (!json)
        return -2;
    int rc = jobs_store_shard_save(s->st, jr->job.row.id, sh->index, sh->token, json,
                                   sh->ckpt.complete, sh->ckpt.succeeded, sh->ckpt.failed, msg,
                                   sizeof msg);
    free(json);
    if (rc == 1) {
        sh->dirty = 0;
        atomic_fetch_add(&s->ckpt_saves, 1);
        return 0;
    }
    if (rc == 0) {
        atomic_fetch_add(&s->ckpt_refused, 1);
        fprintf(stderr, "batchrep: job %s shard %u: the lease (token %lld) was taken over by "
                        "another worker; this worker stops writing it\n",
                jr->job.row.id, sh->index, (long long)sh->token);
        lost(sh);
        return -1;
    }
    if (rc == -JOBS_E_DISK_FULL) {
        run__disk_full(s, msg);
        return -2;
    }
    if (!sh->store_error_said) {
        fprintf(stderr, "batchrep: job %s shard %u: %s; the checkpoint is saved when the "
                        "catalogue answers again\n", jr->job.row.id, sh->index, msg);
        sh->store_error_said = 1;
    }
    return -2;
}

static int save(run__shard *sh)
{
    if (atomic_load(&sh->state) == RUN__SHARD_LOST)
        return -1;
    int rc = put_parts(sh);
    if (rc == 0)
        rc = save_ckpt(sh);
    if (rc == 0)
        sh->store_error_said = 0;
    return rc;
}

int run__shard_open(run__shard *sh)
{
    /* the first window: RUN__PLAN_WINDOW_ROWS past where the shard resumes; a shard whose
       progress is uncertain keeps the whole shard under the limit, so that a resume after
       another stop still rechecks every unit not known done */
    uint64_t end = sh->info->first_seq + sh->info->n_rows;
    if (sh->ckpt.low < sh->info->first_seq)
        sh->ckpt.low = sh->info->first_seq;
    uint64_t limit = sh->recheck_all ? end : sh->ckpt.low + RUN__PLAN_WINDOW_ROWS;
    if (sh->resume.plan_limit > limit)
        limit = sh->resume.plan_limit;
    sh->ckpt.plan_limit = limit;
    int rc = save(sh);
    if (rc != 0)
        return rc;
    atomic_store(&sh->plan_limit, limit);
    int leased = RUN__SHARD_LEASED;
    return atomic_compare_exchange_strong(&sh->state, &leased, RUN__SHARD_OPEN) ? 0 : -1;
}

/* Joins one status's parts into the results file at path; md5 and rows out. */
static int join_one(const run__loc *loc, const run_ckpt *c, int k, const char *path,
                    unsigned mode, const char *tmp, char md5_hex[33], uint64_t *rows,
                    char *err, size_t cap)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, cap, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *all = EVP_MD_CTX_new(), *one = EVP_MD_CTX_new();
    int rc = all && one && EVP_DigestInit_ex(all, EVP_md5(), NULL) ? 0 : -1;
    if (rc)
        snprintf(err, cap, "out of memory (MD5)");
    *rows = 0;
    char buf[65536];
    for (size_t i = 0; rc == 0 && i < c->n_parts; i++) {
        const run_part *p = &c->parts[i];
        if (p->failed != k)
            continue;
        char got[4400], what[1400];
        run__loc_describe(loc, p->name, what, sizeof what);
        if (run__loc_fetch(loc, p->name, tmp, got, sizeof got, err, cap) != 0) {
            rc = -1;
            break;
        }
        FILE *f = fopen(got, "rb");
        uint64_t n_read = 0;
        size_t n;
        EVP_DigestInit_ex(one, EVP_md5(), NULL);
        while (f && (n = fread(buf, 1, sizeof buf, f)) > 0) {
            if (s3_write_all(fd, buf, n) != 0) {
                snprintf(err, cap, "cannot write %s: %s", path, strerror(errno));
                rc = -1;
                break;
            }
            EVP_DigestUpdate(all, buf, n);
            EVP_DigestUpdate(one, buf, n);
            n_read += n;
        }
        if (!f)
            snprintf(err, cap, "cannot read %s: %s", got, strerror(errno));
        rc = rc || !f || ferror(f) ? -1 : 0;
        if (f)
            fclose(f);
        if (strcmp(got, tmp) == 0)
            unlink(tmp);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        char hex[33];
        EVP_DigestFinal_ex(one, md, &md_len);
        for (unsigned j = 0; j < 16; j++)
            snprintf(hex + 2 * j, 3, "%02x", md[j]);
        if (rc == 0 && (n_read != p->bytes || strcmp(hex, p->md5) != 0)) {
            snprintf(err, cap, "%s is damaged: %llu bytes, MD5 %s; its checkpoint says %llu "
                               "bytes, MD5 %s", what, (unsigned long long)n_read, hex,
                     (unsigned long long)p->bytes, p->md5);
            rc = -1;
        }
        *rows += p->rows;
    }
    if (rc == 0) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        EVP_DigestFinal_ex(all, md, &md_len);
        for (unsigned j = 0; j < 16; j++)
            snprintf(md5_hex + 2 * j, 3, "%02x", md[j]);
        if (fdatasync(fd) != 0) {
            snprintf(err, cap, "cannot sync %s: %s", path, strerror(errno));
            rc = -1;
        }
    }
    EVP_MD_CTX_free(all);
    EVP_MD_CTX_free(one);
    if (close(fd) != 0 && rc == 0) {
        snprintf(err, cap, "cannot close %s: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

int run__shard_join(const rpt_opts *ro, const run__loc *loc, const s3_endpoint *upload_ep,
                    const char *scratch_dir, uint32_t sh_index, uint64_t chunk, run_ckpt *c,
                    char *err, size_t cap)
{
    c->n_results = 0;
    char tmp[4300];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/join-%u.tmp", scratch_dir, sh_index) >= sizeof tmp) {
        snprintf(err, cap, "the job's folder path is too long");
        return -1;
    }
    for (int k = 0; k < 2; k++) {
        char key[1200], path[4096];
        if (rpt_results_file(ro, chunk, k, key, sizeof key, path, sizeof path, err, cap) != 0)
            return -1;
        int any = 0;
        for (size_t i = 0; i < c->n_parts; i++)
            any |= c->parts[i].failed == k;
        if (!any) {
            unlink(path); /* a file an earlier attempt left: no row of this status */
            continue;
        }
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        unsigned dmode = ro->private_files ? S3_MODE_PRIVATE_DIR : S3_MODE_USER_DIR;
        unsigned fmode = ro->private_files ? S3_MODE_PRIVATE_FILE : S3_MODE_USER_FILE;
        if (s3_mkdir_p(dir, dmode) != 0 || s3_mkdir_p(scratch_dir, S3_MODE_PRIVATE_DIR) != 0) {
            snprintf(err, cap, "cannot create %s: %s", dir, strerror(errno));
            return -1;
        }
        run_part *r = &c->results[c->n_results];
        memset(r, 0, sizeof *r);
        r->failed = k;
        r->chunk = chunk;
        if (join_one(loc, c, k, path, fmode, tmp, r->md5, &r->rows, err, cap) != 0)
            return -1;
        if (upload_ep) {
            if (s3_put_file(upload_ep, ro->bucket, key, path, "text/csv", err, cap) != S3_E_OK)
                return -1;
            unlink(path);
        }
        c->n_results++;
    }
    return 0;
}

int run__shard_settle(run__shard *sh)
{
    run__job *jr = sh->job;
    int state = atomic_load(&sh->state);
    if ((state != RUN__SHARD_OPEN && state != RUN__SHARD_FED) || atomic_load(&jr->io_error))
        return 0;
    uint64_t limit = atomic_load(&jr->planned_seq) + RUN__PLAN_WINDOW_ROWS;
    if (limit < sh->ckpt.plan_limit)
        limit = sh->ckpt.plan_limit;
    sh->ckpt.plan_limit = limit;
    uint64_t end = sh->info->first_seq + sh->info->n_rows;
    int complete = state == RUN__SHARD_FED && atomic_load(&sh->units_out) == 0 &&
                   run_ckpt_done(&sh->ckpt, sh->info->first_seq, end);
    int rc = complete ? put_parts(sh) : save(sh);
    if (rc != 0)
        return rc;
    atomic_store(&sh->plan_limit, limit);
    if (!complete)
        return 0;
    /* complete: the parts joined into the shard's results files, then the checkpoint that
       says so (listing the results, no longer the parts), then the parts removed */
    char msg[4400];
    if (jr->job.report_enabled &&
        run__shard_join(&jr->ro, &jr->loc, jr->job.report_is_local ? NULL : jr->sched->ep,
                        jr->spool_dir, sh->index, (uint64_t)sh->token, &sh->ckpt, msg,
                        sizeof msg) != 0) {
        fprintf(stderr, "batchrep: job %s shard %u: %s; trying again\n", jr->job.row.id,
                sh->index, msg);
        if (++sh->put_failures >= PUT_FAILURES_MAX) {
            io_failed(jr, "the results files cannot be written: %s", msg);
            return -1;
        }
        return -2;
    }
    run_part *parts = sh->ckpt.parts;
    size_t n_parts = sh->ckpt.n_parts;
    sh->ckpt.parts = NULL;
    sh->ckpt.n_parts = sh->ckpt.cap_parts = 0;
    sh->ckpt.complete = 1;
    rc = save_ckpt(sh);
    if (rc != 0) {
        sh->ckpt.complete = 0;
        sh->ckpt.parts = parts;
        sh->ckpt.n_parts = sh->ckpt.cap_parts = n_parts;
        return rc;
    }
    for (size_t i = 0; i < n_parts; i++)
        run__loc_remove(&jr->loc, parts[i].name);
    free(parts);
    atomic_store(&sh->state, RUN__SHARD_DONE);
    return 0;
}

/* Paused on a full disk: every dirty shard saved again; 0 once all could be. */
static int retry_saves(run__sched *s)
{
    int full = 0;
    pthread_mutex_lock(&s->mu);
    run__job *jobs = s->jobs;
    pthread_mutex_unlock(&s->mu);
    /* the list only changes at its head (attach) or by the control loop removing a job,
       which waits for ckpt_busy; mark each job busy while its shards are saved */
    for (run__job *jr = jobs; jr; jr = jr->next) {
        pthread_mutex_lock(&s->mu);
        jr->ckpt_busy = 1;
        pthread_mutex_unlock(&s->mu);
        for (size_t i = 0; i < jr->spool.n_shards; i++) {
            run__shard *sh = &jr->shards[i];
            int st = atomic_load(&sh->state);
            if ((st == RUN__SHARD_OPEN || st == RUN__SHARD_FED) && run__shard_settle(sh) == -2)
                full = 1;
        }
        pthread_mutex_lock(&s->mu);
        jr->ckpt_busy = 0;
        pthread_mutex_unlock(&s->mu);
    }
    return full ? -1 : 0;
}

/* Drops a finished unit without writing it: the worker is stopping on a full disk; its tasks
   are not in any checkpoint, so they run again (rechecked) when the job resumes. */
static void drop_unit(eng_unit *u)
{
    run__shard *sh = eng_unit_job(u);
    eng_unit_destroy(u);
    atomic_fetch_sub(&sh->units_out, 1);
    atomic_fetch_sub(&sh->job->units_out, 1);
}

/* Checkpoints each job that needs one: every interval when rows were written, at once when
   its feeder waits for the window. The writes run without mu (the feeder and the
   control loop take it every few ms); ckpt_busy keeps the control loop from finishing a job
   while its checkpoint is being written. */
static void checkpoint_due(run__sched *s, int interval_passed, uint64_t round)
{
    for (;;) {
        run__job *jr = NULL;
        pthread_mutex_lock(&s->mu);
        for (run__job *j = s->jobs; j && !jr; j = j->next) {
            int starving = atomic_load(&j->waiting_limit);
            if (j->ckpt_round != round && (interval_passed || starving))
                jr = j;
        }
        if (jr) {
            jr->ckpt_round = round;
            jr->ckpt_busy = 1;
        }
        pthread_mutex_unlock(&s->mu);
        if (!jr)
            return;
        for (size_t i = 0; i < jr->spool.n_shards; i++) {
            run__shard *sh = &jr->shards[i];
            int state = atomic_load(&sh->state);
            int fed_out = state == RUN__SHARD_FED && atomic_load(&sh->units_out) == 0;
            if ((state == RUN__SHARD_OPEN || state == RUN__SHARD_FED) &&
                (sh->dirty || fed_out ||
                 (state == RUN__SHARD_OPEN && atomic_load(&jr->waiting_limit))))
                run__shard_settle(sh);
        }
        /* the window moved: the feeder says again if it still waits (else every unit the
           writer takes meanwhile would cost another checkpoint) */
        atomic_store(&jr->waiting_limit, 0);
        pthread_mutex_lock(&s->mu);
        jr->ckpt_busy = 0;
        pthread_mutex_unlock(&s->mu);
    }
}

void *run__writer_main(void *arg)
{
    run__sched *s = arg;
    int64_t last = s3_mono_ms();
    uint64_t round = 0;
    for (;;) {
        int closed = 0;
        if (atomic_load(&s->files_full_since_ms)) {
            pthread_mutex_lock(&s->mu);
            int quit = s->quit;
            pthread_mutex_unlock(&s->mu);
            if (quit) {
                eng_unit *u = eng_queue_pop(&s->done_q, 50, &closed);
                if (u)
                    drop_unit(u);
                else if (closed)
                    break;
                continue;
            }
            usleep(DISK_FULL_RETRY_MS * 1000);
            if (retry_saves(s) == 0) {
                atomic_store(&s->files_full_since_ms, 0);
                fprintf(stderr, "batchrep: there is space again; carrying on\n");
            }
            continue;
        }
        eng_unit *u = eng_queue_pop(&s->done_q, 50, &closed);
        if (u) {
            run__shard *sh = eng_unit_job(u);
            run__job *jr = sh->job;
            write_unit(sh, u);
            eng_unit_destroy(u);
            /* the shard's last unit: settle it now (complete), not at the next interval;
               ckpt_busy before the count drops, or the control loop could let the job go */
            int settle_now = 0;
            pthread_mutex_lock(&s->mu);
            if (atomic_load(&sh->state) == RUN__SHARD_FED && atomic_load(&sh->units_out) == 1) {
                jr->ckpt_busy = 1;
                settle_now = 1;
            }
            atomic_fetch_sub(&sh->units_out, 1);
            atomic_fetch_sub(&jr->units_out, 1);
            pthread_mutex_unlock(&s->mu);
            if (settle_now) {
                run__shard_settle(sh);
                pthread_mutex_lock(&s->mu);
                jr->ckpt_busy = 0;
                pthread_mutex_unlock(&s->mu);
            }
        } else if (closed) {
            break;
        }
        int64_t now = s3_mono_ms();
        int due = now - last >= s->opts->checkpoint_interval_ms;
        checkpoint_due(s, due, ++round);
        if (due)
            last = now;
    }
    return NULL;
}
