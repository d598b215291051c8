/*
 * checkpoint.c — crash-safe per-task progress of one shard of a job, kept in the catalogue
 * (jobs_store_shard_save, fenced by the shard's lease token) as JSON.
 *
 * Tasks finish out of order, so progress is a low-water mark (every task with a smaller
 * sequence number is done and its report row is durable) plus the done ranges above it.
 * Sequence numbers are positions in the job's key-sorted spool, so a unit (every row of one
 * key) covers a contiguous range and the ranges stay few: about as many as units in flight.
 * Report rows are durable before the checkpoint that counts them: the writer (writer.c)
 * writes the rows finished since the last checkpoint as "parts" (one per results status) at
 * the job's work location, then saves the checkpoint that lists them. A shard taken over
 * from a dead worker resumes from its last checkpoint: the parts it lists are the shard's
 * rows so far; a part written after it (by the dead worker, or by one that lost its lease)
 * is listed nowhere and never reaches the report. "complete" marks a shard whose rows are
 * all done and whose parts were joined into its results files (results[]).
 * plan_limit bounds what the planner may hand out before a checkpoint says so: after a crash,
 * the units below it that are not done may have written to a destination already, so they
 * run again in "recheck" mode (unit.c) and skip the versions already there.
 *
 * JSON: {"low":N,"done":[[s,e],...],"succeeded":N,"failed":N,"plan_limit":N,
 *        "complete":bool,"parts":[[failed(0|1),"name",rows,bytes,"md5"],...],
 *        "results":[[failed,rows,"md5",chunk],...]} — read strictly: a checkpoint that is wrong in
 * any way never passes for an empty one ("nothing done" would resend what was done).
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
    free(c->parts);
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

int run_ckpt_add_part(run_ckpt *c, const run_part *p)
{
    if (c->n_parts == c->cap_parts) {
        size_t nc = c->cap_parts ? c->cap_parts * 2 : 8;
        run_part *n = realloc(c->parts, nc * sizeof *n);
        if (!n)
            return -RUN_E_NOMEM;
        c->parts = n;
        c->cap_parts = nc;
    }
    c->parts[c->n_parts++] = *p;
    return 0;
}

int run_ckpt_copy(run_ckpt *dst, const run_ckpt *src)
{
    *dst = *src;
    dst->iv = NULL;
    dst->n_iv = dst->cap_iv = 0;
    dst->parts = NULL;
    dst->n_parts = dst->cap_parts = 0;
    dst->low = src->low;
    for (size_t k = 0; k < src->n_iv; k++)
        if (run_ckpt_add(dst, src->iv[2 * k], src->iv[2 * k + 1]) != 0)
            goto fail;
    for (size_t k = 0; k < src->n_parts; k++)
        if (run_ckpt_add_part(dst, &src->parts[k]) != 0)
            goto fail;
    return 0;
fail:
    run_ckpt_cleanup(dst);
    return -RUN_E_NOMEM;
}

char *run_ckpt_to_json(const run_ckpt *c)
{
    json_t *j = json_object();
    json_object_set_new(j, "low", json_integer((json_int_t)c->low));
    json_t *iv = json_array();
    for (size_t i = 0; i < c->n_iv; i++)
        json_array_append_new(iv, json_pack("[II]", (json_int_t)c->iv[2 * i],
                                            (json_int_t)c->iv[2 * i + 1]));
    json_object_set_new(j, "done", iv);
    json_object_set_new(j, "succeeded", json_integer((json_int_t)c->succeeded));
    json_object_set_new(j, "failed", json_integer((json_int_t)c->failed));
    json_object_set_new(j, "plan_limit", json_integer((json_int_t)c->plan_limit));
    json_object_set_new(j, "complete", json_boolean(c->complete));
    json_t *parts = json_array();
    for (size_t i = 0; i < c->n_parts; i++) {
        const run_part *p = &c->parts[i];
        json_array_append_new(parts, json_pack("[isIIs]", p->failed, p->name,
                                               (json_int_t)p->rows, (json_int_t)p->bytes,
                                               p->md5));
    }
    json_object_set_new(j, "parts", parts);
    json_t *res = json_array();
    for (int i = 0; i < c->n_results; i++)
        json_array_append_new(res, json_pack("[iIsI]", c->results[i].failed,
                                             (json_int_t)c->results[i].rows,
                                             c->results[i].md5,
                                             (json_int_t)c->results[i].chunk));
    json_object_set_new(j, "results", res);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
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

static int is_md5(const char *s)
{
    if (!s || strlen(s) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

/* One [failed, "name", rows, bytes, "md5"] (part) or [failed, rows, "md5", chunk]
   (result). */
static int read_part(json_t *a, int is_result, run_part *p)
{
    memset(p, 0, sizeof *p);
    size_t n = is_result ? 4 : 5, k = 0;
    if (!json_is_array(a) || json_array_size(a) != n)
        return -1;
    json_t *f = json_array_get(a, k++);
    if (!json_is_integer(f) || (json_integer_value(f) != 0 && json_integer_value(f) != 1))
        return -1;
    p->failed = (int)json_integer_value(f);
    if (!is_result) {
        const char *name = json_string_value(json_array_get(a, k++));
        if (!name || !*name || strlen(name) >= sizeof p->name || strstr(name, ".."))
            return -1;
        snprintf(p->name, sizeof p->name, "%s", name);
    }
    json_t *rows = json_array_get(a, k++);
    if (!json_is_integer(rows) || json_integer_value(rows) < 0)
        return -1;
    p->rows = (uint64_t)json_integer_value(rows);
    if (!is_result) {
        json_t *bytes = json_array_get(a, k++);
        if (!json_is_integer(bytes) || json_integer_value(bytes) < 0)
            return -1;
        p->bytes = (uint64_t)json_integer_value(bytes);
    }
    const char *md5 = json_string_value(json_array_get(a, k++));
    if (!is_md5(md5))
        return -1;
    memcpy(p->md5, md5, 33);
    if (is_result) {
        json_t *chunk = json_array_get(a, k);
        if (!json_is_integer(chunk) || json_integer_value(chunk) <= 0)
            return -1;
        p->chunk = (uint64_t)json_integer_value(chunk);
    }
    return 0;
}

int run_ckpt_from_json(const char *text, run_ckpt *out)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *j = text ? json_loads(text, 0, &je) : NULL;
    json_t *iv = json_object_get(j, "done"), *parts = json_object_get(j, "parts"),
           *res = json_object_get(j, "results");
    int bad = !j || !json_is_array(iv) || !json_is_array(parts) || !json_is_array(res) ||
              json_array_size(res) > 2 || get_u64(j, "low", &out->low) ||
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
    for (size_t i = 0; !bad && i < json_array_size(parts); i++) {
        run_part p;
        bad = read_part(json_array_get(parts, i), 0, &p) != 0 || run_ckpt_add_part(out, &p);
    }
    for (size_t i = 0; !bad && i < json_array_size(res); i++) {
        bad = read_part(json_array_get(res, i), 1, &out->results[i]) != 0;
        out->n_results = (int)i + 1;
    }
    json_decref(j);
    if (bad) {
        run_ckpt_cleanup(out);
        return -RUN_E_IO;
    }
    return 0;
}
