/*
 * run_int.h — internals shared by run/'s files. Never included from outside run/.
 */
#ifndef BATCHREP_RUN_INT_H
#define BATCHREP_RUN_INT_H

#include "run/run.h"

#include "engine/engine.h"
#include "manifest/manifest.h"
#include "replicate/replicate.h"
#include "s3/s3.h"

/* ---- checkpoint (checkpoint.c) ------------------------------------------------------------ */

typedef struct run__ckpt {
    uint64_t low;                /* every task with seq < low is done, its row durable */
    uint64_t *iv;                /* done ranges above low: [iv[2i], iv[2i+1]), sorted */
    size_t n_iv, cap_iv;
    uint64_t succeeded_bytes, failed_bytes; /* results file sizes that hold those rows */
    uint64_t succeeded, failed;  /* task counts of those rows */
    uint64_t plan_limit;         /* no unit at or past this seq was handed out */
} run__ckpt;

int run__ckpt_add(run__ckpt *c, uint64_t start, uint64_t end);
int run__ckpt_done(const run__ckpt *c, uint64_t start, uint64_t end);
int run__ckpt_save(const char *path, const run__ckpt *c);
int run__ckpt_load(const char *path, run__ckpt *out); /* 0 loaded, 1 none, <0 error */
void run__ckpt_cleanup(run__ckpt *c);

/* ---- the metrics endpoint (metrics.c) ---------------------------------------------------- */

/* Writes the Prometheus text into out (capped); 0, or nonzero when it did not fit. Called
   on the server's own thread. */
typedef int (*run__metrics_render_fn)(s3_buf *out, void *user);
typedef struct run__metrics run__metrics;
/* Listens on addr ("IPv4:PORT") and serves render's text from a thread of its own. NULL,
   with err naming the address and the reason, when it cannot. */
run__metrics *run__metrics_start(const char *addr, run__metrics_render_fn render, void *user,
                                 char *err, size_t err_len);
void run__metrics_stop(run__metrics *m); /* NULL is a no-op */

/* ---- Preparing (prepare.c) and the manifest kinds (generate.c) ---------------------------- */

/* Preparing, generated manifest: loads the bucket's rules when *rules_loaded is 0 (the
   EligibleForReplication filter needs them), lists and filters into
   <job dir>/generated/<base>/manifest.json, uploads it when EnableManifestOutput, and points
   job->manifest_path at it. On failure the job is Failed (code, reason) and -1 is
   returned. */
int run__gen_prepare(jobs_job *job, const s3_endpoint *ep, repl_rules *rules,
                     int *rules_loaded);
/* Opens the job's manifest, whatever its format. NULL: *out_rc and msg say why. */
mf_reader *run__manifest_open(const jobs_job *job, const s3_endpoint *ep, int *out_rc,
                              char *msg, size_t cap);
/* Preparing: manifest fetched, validated and counted, rules captured. -1: job Failed. */
int run__prepare(jobs_job *job, const s3_endpoint *ep);
/* The job's rules parsed, destinations bound to their endpoints (eps, from the worker's
   --destination-profile bindings) and checked, copy settings applied. -1: job Failed. */
int run__attach_rules(jobs_job *job, repl_rules *rules, const s3_endpoint *const *eps,
                      const run_options *o);


#endif
