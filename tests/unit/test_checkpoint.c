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
               back.plan_limit == 2055,
           "loads back what was saved (%s)", b);
    run_ckpt_cleanup(&back);

    /* a folder where the file should be: the save fails and leaves nothing behind */
    char blocked[300];
    snprintf(blocked, sizeof blocked, "%s/blocked", dir);
    mkdir(blocked, 0700);
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
