/*
 * test_checkpoint.c — a job's durable progress (run/checkpoint.c): done ranges arriving out
 * of order, the low-water mark, the "was this unit done before the crash" question, and the
 * file's round trip (atomic write, mode 0600, no temporary file left).
 */
#include "run/run.h"
#include "tests/unit/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "low=L [s,e) [s,e)" */
static void show(const run_ckpt *c, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "low=%llu", (unsigned long long)c->low);
    for (size_t i = 0; i < c->n_iv && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, " [%llu,%llu)", (unsigned long long)c->iv[2 * i],
                              (unsigned long long)c->iv[2 * i + 1]);
}

static void test_ranges(void)
{
    static const struct {
        const char *name;
        unsigned long long add[6][2]; /* [start, end), {0,0} ends the list */
        const char *want;
    } cases[] = {
        {"in order: the mark moves", {{0, 3}, {3, 5}, {5, 6}}, "low=6"},
        {"a gap keeps ranges above the mark", {{0, 2}, {4, 6}, {7, 9}}, "low=2 [4,6) [7,9)"},
        {"the gap filled: all folds into the mark", {{4, 6}, {2, 4}, {0, 2}}, "low=6"},
        {"touching ranges merge", {{5, 7}, {7, 9}, {3, 5}}, "low=0 [3,9)"},
        {"overlaps and repeats are harmless", {{0, 4}, {2, 6}, {0, 4}, {8, 9}, {8, 9}},
         "low=6 [8,9)"},
        {"a range below the mark is ignored", {{0, 10}, {2, 4}}, "low=10"},
        {"reverse order", {{9, 10}, {7, 9}, {5, 7}, {3, 5}, {1, 3}, {0, 1}}, "low=10"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_ckpt c;
        memset(&c, 0, sizeof c);
        for (size_t k = 0; k < 6 && cases[i].add[k][1]; k++)
            run_ckpt_add(&c, cases[i].add[k][0], cases[i].add[k][1]);
        char got[256];
        show(&c, got, sizeof got);
        tap_ok(strcmp(got, cases[i].want) == 0, "ranges, %s: %s (got %s)", cases[i].name,
               cases[i].want, got);
        run_ckpt_cleanup(&c);
    }

    run_ckpt c;
    memset(&c, 0, sizeof c);
    run_ckpt_add(&c, 0, 5);
    run_ckpt_add(&c, 10, 20);
    static const struct {
        unsigned long long s, e;
        int want;
    } done[] = {{0, 5, 1}, {2, 4, 1}, {4, 6, 0}, {10, 20, 1}, {12, 15, 1}, {9, 11, 0},
                {19, 21, 0}, {5, 10, 0}};
    int wrong = 0;
    for (size_t i = 0; i < sizeof done / sizeof *done; i++)
        if (run_ckpt_done(&c, done[i].s, done[i].e) != done[i].want) {
            wrong++;
            tap_diag("done [%llu,%llu): want %d", done[i].s, done[i].e, done[i].want);
        }
    tap_ok(wrong == 0, "a unit counts as done only when its whole range is (8 cases)");
    run_ckpt_cleanup(&c);
}

/* The checkpoint as the catalogue keeps it (checkpoint.c "JSON"): a round trip, and every
   malformed shape refused, never read as an empty checkpoint. */
static void test_json(void)
{
    run_ckpt c, back;
    memset(&c, 0, sizeof c);
    run_ckpt_add(&c, 0, 7);
    run_ckpt_add(&c, 9, 12);
    c.succeeded = 8;
    c.failed = 2;
    c.plan_limit = 2055;
    run_part p = {.failed = 1, .rows = 2, .bytes = 120};
    snprintf(p.name, sizeof p.name, "parts/s000001-t7-p0-failed.csv");
    snprintf(p.md5, sizeof p.md5, "0123456789abcdef0123456789abcdef");
    run_ckpt_add_part(&c, &p);
    c.n_results = 1;
    c.results[0] = (run_part){.failed = 0, .rows = 8, .chunk = 42};
    snprintf(c.results[0].md5, sizeof c.results[0].md5, "fedcba9876543210fedcba9876543210");
    char *json = run_ckpt_to_json(&c);
    int rc = run_ckpt_from_json(json, &back);
    char a[256], b[256];
    show(&c, a, sizeof a);
    show(&back, b, sizeof b);
    tap_ok(rc == 0 && strcmp(a, b) == 0 && back.succeeded == 8 && back.failed == 2 &&
               back.plan_limit == 2055 && back.complete == 0 && back.n_parts == 1 &&
               strcmp(back.parts[0].name, p.name) == 0 && back.parts[0].rows == 2 &&
               back.parts[0].bytes == 120 && back.parts[0].failed == 1 &&
               strcmp(back.parts[0].md5, p.md5) == 0 && back.n_results == 1 &&
               back.results[0].rows == 8 && back.results[0].chunk == 42 &&
               strcmp(back.results[0].md5, c.results[0].md5) == 0,
           "reads back what was written (%s, a part, a result)", b);
    run_ckpt copy;
    tap_ok(run_ckpt_copy(&copy, &c) == 0 && copy.n_parts == 1 && copy.n_iv == c.n_iv &&
               copy.parts != c.parts && copy.iv != c.iv,
           "a copy is deep");
    run_ckpt_cleanup(&copy);
    free(json);
    run_ckpt_cleanup(&back);
    static const struct {
        const char *text;
        const char *name;
    } bad[] = {
        {"{\"low\": 12, \"done\": [[1", "not JSON"},
        {"{\"low\": \"x\", \"done\": \"none\"}", "JSON of another shape"},
        {"{\"low\":1,\"done\":[[5,3]],\"succeeded\":0,\"failed\":0,\"plan_limit\":9,"
         "\"complete\":false,\"parts\":[],\"results\":[]}", "a reversed range"},
        {"{\"low\":1,\"done\":[],\"succeeded\":0,\"failed\":0,\"plan_limit\":9,"
         "\"parts\":[],\"results\":[]}", "no \"complete\" member"},
        {"{\"low\":1,\"done\":[],\"succeeded\":0,\"failed\":0,\"plan_limit\":9,"
         "\"complete\":false,\"parts\":[[0,\"parts/x\",1,2,\"nothex\"]],\"results\":[]}",
         "a part without its MD5"},
        {"{\"low\":1,\"done\":[],\"succeeded\":0,\"failed\":0,\"plan_limit\":9,"
         "\"complete\":false,\"parts\":[[0,\"../x\",1,2,\"0123456789abcdef0123456789abcdef\"]],"
         "\"results\":[]}", "a part name with \"..\""},
        {"{\"low\":1,\"done\":[],\"succeeded\":0,\"failed\":0,\"plan_limit\":9,"
         "\"complete\":true,\"parts\":[],\"results\":[[0,3,\"0123456789abcdef0123456789abcdef\"]]}",
         "a result without its chunk"},
        {NULL, "no text"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = run_ckpt_from_json(bad[i].text, &back);
        tap_ok(rc < 0 && back.iv == NULL && back.parts == NULL, "%s: refused", bad[i].name);
    }
    run_ckpt_cleanup(&c);
}

int main(void)
{
    test_ranges();
    test_json();
    return tap_done();
}
