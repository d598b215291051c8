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

static void test_file(void)
{
    char dir[] = "/tmp/batchrep-test-ckpt-XXXXXX";
    if (!tap_ok(mkdtemp(dir) != NULL, "temporary directory"))
        return;
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/checkpoint.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    run_ckpt c, back;
    memset(&c, 0, sizeof c);
    tap_ok(run_ckpt_load(path, &back) == 1, "no file: nothing to resume (1)");
    run_ckpt_add(&c, 0, 7);
    run_ckpt_add(&c, 9, 12);
    c.succeeded_bytes = 1234;
    c.failed_bytes = 56;
    c.succeeded = 8;
    c.failed = 2;
    c.plan_limit = 2055;
    c.complete = 1;
    int rc = run_ckpt_save(path, &c);
    struct stat st;
    memset(&st, 0, sizeof st);
    int have = stat(path, &st) == 0;
    tap_ok(rc == 0 && have && (st.st_mode & 0777) == 0600 &&
               access(tmp, F_OK) != 0,
           "saved atomically, mode 0600, no temporary file left (mode %o)",
           (unsigned)(st.st_mode & 0777));
    rc = run_ckpt_load(path, &back);
    char a[256], b[256];
    show(&c, a, sizeof a);
    show(&back, b, sizeof b);
    tap_ok(rc == 0 && strcmp(a, b) == 0 && back.succeeded_bytes == 1234 &&
               back.failed_bytes == 56 && back.succeeded == 8 && back.failed == 2 &&
               back.plan_limit == 2055 && back.complete == 1,
           "loads back what was saved (%s, complete)", b);
    c.complete = 0;
    run_ckpt_cleanup(&back);

    /* the previous checkpoint is kept, and used when the newest is lost or damaged */
    char prev[300];
    snprintf(prev, sizeof prev, "%s.prev", path);
    run_ckpt_add(&c, 7, 9); /* now low = 12 */
    rc = run_ckpt_save(path, &c);
    run_ckpt older;
    tap_ok(rc == 0 && run_ckpt_load(prev, &older) == 0 && older.low == 7 &&
               run_ckpt_load(path, &back) == 0 && back.low == 12,
           "a save keeps the one before as .prev (low 7), the new one says low 12");
    run_ckpt_cleanup(&older);
    run_ckpt_cleanup(&back);
    static const struct {
        const char *main_text; /* NULL: no file */
        int keep_prev, want;
        const char *name;
    } damaged[] = {
        {NULL, 1, RUN_CKPT_FROM_PREV, "missing: the previous one is used"},
        {"{\"low\": 12, \"done\": [[1", 1, RUN_CKPT_FROM_PREV, "not JSON: the previous one"},
        {"{\"low\": \"x\", \"done\": \"none\"}", 1, RUN_CKPT_FROM_PREV,
         "JSON of another shape: the previous one"},
        {"{\"low\":1,\"done\":[[5,3]],\"succeeded_bytes\":0,\"failed_bytes\":0,"
         "\"succeeded\":0,\"failed\":0,\"plan_limit\":9,\"complete\":false}",
         1, RUN_CKPT_FROM_PREV, "a reversed range: the previous one"},
        {"{\"low\":1,\"done\":[],\"succeeded_bytes\":0,\"failed_bytes\":0,"
         "\"succeeded\":0,\"failed\":0,\"plan_limit\":9}",
         1, RUN_CKPT_FROM_PREV, "no \"complete\" member: the previous one"},
        {"{\"low\": 12, \"done\": [[1", 0, -1, "not JSON and no previous: an error, never "
                                           "an empty checkpoint"},
        {NULL, 0, 1, "neither: nothing to resume"},
    };
    for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
        run_ckpt_save(path, &c);
        run_ckpt_save(path, &c); /* a .prev exists */
        if (!damaged[i].keep_prev)
            unlink(prev);
        unlink(path);
        if (damaged[i].main_text) {
            FILE *f = fopen(path, "w");
            if (f) {
                fputs(damaged[i].main_text, f);
                fclose(f);
            }
        }
        rc = run_ckpt_load(path, &back);
        tap_ok(damaged[i].want < 0 ? rc < 0 : rc == damaged[i].want,
               "load, checkpoint %s (rc %d)", damaged[i].name, rc);
        tap_ok(rc != RUN_CKPT_FROM_PREV || back.low == 12,
               "load, %s: the previous one's progress (low 12, got %llu)", damaged[i].name,
               (unsigned long long)back.low);
        run_ckpt_cleanup(&back);
    }

    /* a folder that does not exist: the save fails and leaves nothing behind */
    char blocked[300];
    snprintf(blocked, sizeof blocked, "%s/no-such-folder/checkpoint.json", dir);
    rc = run_ckpt_save(blocked, &c);
    char blocked_tmp[320];
    snprintf(blocked_tmp, sizeof blocked_tmp, "%s.tmp", blocked);
    tap_ok(rc != 0 && access(blocked_tmp, F_OK) != 0,
           "a save that cannot complete fails and leaves no temporary file");
    run_ckpt_cleanup(&c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", dir);
}

int main(void)
{
    test_ranges();
    test_file();
    return tap_done();
}
