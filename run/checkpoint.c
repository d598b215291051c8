/*
 * checkpoint.c — crash-safe per-task progress of one shard of a job
 * (<job dir>/spool/shard-NNNNNN.checkpoint.json).
 *
 * Tasks finish out of order, so progress is a low-water mark (every task with a smaller
 * sequence number is done and its report row is durable) plus the done ranges above it.
 * Sequence numbers are positions in the job's key-sorted spool, so a unit (every row of one
 * key) covers a contiguous range and the ranges stay few: about as many as units in flight.
 * "complete" marks a shard whose rows are all done and whose results files are closed. Order of writes, which is what makes
 * "each task in the report exactly once" hold across kill -9:
 *   1. the report writer appends the rows of finished units and fdatasyncs the results files;
 *   2. this file is written to a temporary name, fsynced, renamed over the old one;
 *   3. on resume the results files are cut back to the sizes recorded here, and every unit
 *      not counted here runs again (its rows, if they reached the files, were cut off).
 * plan_limit bounds what the planner may hand out before a checkpoint says so: after a crash,
 * the units below it that are not done may have written to a destination already, so they
 * run again in "recheck" mode (unit.c) and skip the versions already there.
 * The previous checkpoint is kept as checkpoint.json.prev. When the checkpoint is missing
 * or damaged while the job had run, progress is uncertain: the job resumes from .prev (or
 * from nothing) and every unit not known done rechecks its destinations first, so nothing
 * is written twice (run/scheduler.c attach).
 */
#include "run/run_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void run_ckpt_cleanup(run_ckpt *c)
{
    free(c->iv);
    memset(c, 0, sizeof *c);
}

/* Adds the done range [start, end) and advances the low-water mark over it. */
int run_ckpt_add(run_ckpt *c, uint64_t start, uint64_t end)
{
    if (end <= c->low)
        return 0;
    if (c->n_iv == c->cap_iv) {
        size_t nc = c->cap_iv ? c->cap_iv * 2 : 64;
        uint64_t *n = realloc(c->iv, nc * 2 * sizeof *n);
        if (!n)
            return -RUN_E_NOMEM;
        c->iv = n;
        c->cap_iv = nc;
    }
    size_t i = c->n_iv; /* insertion sort from the end: ranges mostly arrive in order */
    while (i > 0 && c->iv[2 * (i - 1)] > start) {
        c->iv[2 * i] = c->iv[2 * (i - 1)];
        c->iv[2 * i + 1] = c->iv[2 * (i - 1) + 1];
        i--;
    }
    c->iv[2 * i] = start;
    c->iv[2 * i + 1] = end;
    c->n_iv++;
    /* merge touching ranges and fold the head into low */
    size_t w = 0;
    for (size_t r = 0; r < c->n_iv; r++) {
        uint64_t s = c->iv[2 * r], e = c->iv[2 * r + 1];
        if (w > 0 && s <= c->iv[2 * (w - 1) + 1]) {
            if (e > c->iv[2 * (w - 1) + 1])
                c->iv[2 * (w - 1) + 1] = e;
            continue;
        }
        c->iv[2 * w] = s;
        c->iv[2 * w + 1] = e;
        w++;
    }
    c->n_iv = w;
    if (c->n_iv > 0 && c->iv[0] <= c->low) {
        if (c->iv[1] > c->low)
            c->low = c->iv[1];
        memmove(c->iv, c->iv + 2, (c->n_iv - 1) * 2 * sizeof *c->iv);
        c->n_iv--;
    }
    return 0;
}

int run_ckpt_done(const run_ckpt *c, uint64_t start, uint64_t end)
{
    if (end <= c->low)
        return 1;
    for (size_t i = 0; i < c->n_iv; i++)
        if (c->iv[2 * i] <= start && end <= c->iv[2 * i + 1])
            return 1;
    return 0;
}

int run_ckpt_save(const char *path, const run_ckpt *c)
{
    json_t *j = json_object();
    json_object_set_new(j, "low", json_integer((json_int_t)c->low));
    json_t *iv = json_array();
    for (size_t i = 0; i < c->n_iv; i++)
        json_array_append_new(iv, json_pack("[II]", (json_int_t)c->iv[2 * i],
                                            (json_int_t)c->iv[2 * i + 1]));
    json_object_set_new(j, "done", iv);
    json_object_set_new(j, "succeeded_bytes", json_integer((json_int_t)c->succeeded_bytes));
    json_object_set_new(j, "failed_bytes", json_integer((json_int_t)c->failed_bytes));
    json_object_set_new(j, "succeeded", json_integer((json_int_t)c->succeeded));
    json_object_set_new(j, "failed", json_integer((json_int_t)c->failed));
    json_object_set_new(j, "plan_limit", json_integer((json_int_t)c->plan_limit));
    json_object_set_new(j, "complete", json_boolean(c->complete));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -RUN_E_NOMEM;
    /* the last good checkpoint stays as <path>.prev: a checkpoint lost or damaged later (a
       crash between these renames, a full disk, a hand) falls back to it */
    char prev[4200], err[512];
    int rc = -RUN_E_IO;
    if ((size_t)snprintf(prev, sizeof prev, "%s.prev", path) < sizeof prev &&
        (rename(path, prev) == 0 || errno == ENOENT) &&
        s3_write_file_atomic(path, text, strlen(text), S3_MODE_PRIVATE_FILE, err,
                             sizeof err) == S3_E_OK)
        rc = 0;
    free(text);
    return rc;
}

/* A non-negative integer member, or -1 (absent, another type, negative). */
static int get_u64(json_t *j, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(j, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* One checkpoint file, read strictly: every member present with its type and the done
   ranges well formed, else -1 (a checkpoint that is wrong in any way must not pass for an
   empty one: "nothing done" would resend what was done). 1 when the file does not exist. */
static int load_file(const char *path, run_ckpt *out)
{
    memset(out, 0, sizeof *out);
    if (access(path, F_OK) != 0)
        return 1;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    json_t *iv = json_object_get(j, "done");
    int bad = !j || !json_is_array(iv) || get_u64(j, "low", &out->low) ||
              get_u64(j, "succeeded_bytes", &out->succeeded_bytes) ||
              get_u64(j, "failed_bytes", &out->failed_bytes) ||
              get_u64(j, "succeeded", &out->succeeded) || get_u64(j, "failed", &out->failed) ||
              get_u64(j, "plan_limit", &out->plan_limit) ||
              !json_is_boolean(json_object_get(j, "complete"));
    if (!bad)
        out->complete = json_is_true(json_object_get(j, "complete"));
    for (size_t i = 0; !bad && i < json_array_size(iv); i++) {
        json_t *p = json_array_get(iv, i), *a = json_array_get(p, 0), *b = json_array_get(p, 1);
        bad = !json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 ||
              json_integer_value(b) <= json_integer_value(a) ||
              run_ckpt_add(out, (uint64_t)json_integer_value(a),
                           (uint64_t)json_integer_value(b)) != 0;
    }
    json_decref(j);
    if (bad) {
        run_ckpt_cleanup(out);
        return -RUN_E_IO;
    }
    return 0;
}

int run_ckpt_load(const char *path, run_ckpt *out)
{
    int rc = load_file(path, out);
    if (rc == 0)
        return 0;
    char prev[4200];
    if ((size_t)snprintf(prev, sizeof prev, "%s.prev", path) >= sizeof prev)
        return rc;
    int prc = load_file(prev, out);
    if (prc == 0)
        return RUN_CKPT_FROM_PREV;
    return rc == 1 && prc == 1 ? 1 : -RUN_E_IO;
}
