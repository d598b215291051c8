/*
 * test_jobs.c — the job status machine (jobs/status.c) against every pair of statuses, and
 * UpdateJobStatus / the worker's save on a real SQLite catalogue in a temporary directory.
 *
 * The expected transitions are tests/fixtures/status/transitions.txt, written from
 * ../shared/aws-formats.md §4.1; every pair it does not list must be refused
 * (JobStatusException), for the worker and for a request alike.
 */
#include "jobs/jobs.h"
#include "tests/unit/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_STATUS 13

static int status_of(const char *name)
{
    int s = jobs_status_parse(name);
    if (s < 0)
        tap_diag("transitions.txt: unknown status \"%s\"", name);
    return s;
}

/* want[from][to]: JOBS_BY_* bits from the fixture. */
static int load_fixture(unsigned want[N_STATUS][N_STATUS])
{
    size_t len;
    char *text = tap_read_fixture("tests/fixtures/status/transitions.txt", &len);
    if (!tap_ok(text != NULL, "fixture status/transitions.txt readable"))
        return -1;
    memset(want, 0, sizeof(unsigned) * N_STATUS * N_STATUS);
    int rows = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char from[32], to[32], by[32];
        if (sscanf(line, "%31s %31s %31s", from, to, by) != 3)
            continue;
        int f = status_of(from), t = status_of(to);
        if (f < 0 || t < 0)
            return -1;
        want[f][t] = (strstr(by, "worker") ? JOBS_BY_WORKER : 0) |
                     (strstr(by, "request") ? JOBS_BY_REQUEST : 0);
        rows++;
    }
    free(text);
    return rows;
}

static void test_table(unsigned want[N_STATUS][N_STATUS])
{
    int wrong = 0, checked = 0;
    for (int f = 0; f < N_STATUS; f++) {
        for (int t = 0; t < N_STATUS; t++) {
            if (f == t)
                continue;
            for (unsigned by = JOBS_BY_WORKER; by <= JOBS_BY_REQUEST; by <<= 1) {
                int got = jobs_status_allowed((jobs_status)f, (jobs_status)t, by);
                int exp = (want[f][t] & by) != 0;
                checked++;
                if (got != exp) {
                    wrong++;
                    tap_diag("%s -> %s by %s: got %s, want %s", jobs_status_name(f),
                             jobs_status_name(t), by == JOBS_BY_WORKER ? "worker" : "request",
                             got ? "allowed" : "refused", exp ? "allowed" : "refused");
                }
            }
        }
    }
    tap_ok(wrong == 0, "every pair of the %d statuses, for the worker and a request, is "
                       "allowed or refused as transitions.txt says (%d checks, %d wrong)",
           N_STATUS, checked, wrong);

    int terminal_moves = 0;
    for (int f = 0; f < N_STATUS; f++)
        for (int t = 0; jobs_status_terminal((jobs_status)f) && t < N_STATUS; t++)
            terminal_moves += f != t && jobs_status_allowed((jobs_status)f, (jobs_status)t,
                                                            JOBS_BY_WORKER | JOBS_BY_REQUEST);
    tap_ok(terminal_moves == 0, "Complete, Failed and Cancelled are terminal (§4.1)");

    jobs_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "j1");
    r.status = JOBS_STATUS_COMPLETE;
    char err[256] = "";
    int rc = jobs_row_set_status(&r, JOBS_STATUS_CANCELLING, JOBS_BY_REQUEST, err, sizeof err);
    tap_ok(rc == -JOBS_E_STATUS && r.status == JOBS_STATUS_COMPLETE &&
               strstr(err, "JobStatusException") && strstr(err, "Complete"),
           "a refused transition leaves the status and says JobStatusException (%s)", err);
    r.status = JOBS_STATUS_PREPARING;
    rc = jobs_row_set_status(&r, JOBS_STATUS_SUSPENDED, JOBS_BY_WORKER, err, sizeof err);
    tap_ok(rc == 0 && r.status == JOBS_STATUS_SUSPENDED && r.suspended_ms > 0 &&
               r.terminated_ms == 0,
           "Preparing -> Suspended stamps SuspendedDate");
    r.status = JOBS_STATUS_CANCELLING;
    rc = jobs_row_set_status(&r, JOBS_STATUS_CANCELLED, JOBS_BY_WORKER, err, sizeof err);
    tap_ok(rc == 0 && r.terminated_ms > 0, "Cancelling -> Cancelled stamps TerminationDate");
}

/* UpdateJobStatus on a job in each status, on a real catalogue. */
static void test_verbs(unsigned want[N_STATUS][N_STATUS])
{
    char dir[] = "/tmp/batchrep-test-jobs-XXXXXX";
    if (!tap_ok(mkdtemp(dir) != NULL, "temporary state directory"))
        return;
    jobs_store *st = NULL;
    char err[1024] = "";
    if (!tap_ok(jobs_store_open(dir, NULL, &st, err, sizeof err) == 0, "catalogue opens %s", err))
        return;
    int wrong = 0, checked = 0;
    for (int f = 0; f < N_STATUS; f++) {
        for (int k = 0; k < 2; k++) {
            jobs_status to_req = k == 0 ? JOBS_STATUS_READY : JOBS_STATUS_CANCELLED;
            jobs_row row;
            memset(&row, 0, sizeof row);
            snprintf(row.id, sizeof row.id, "job-%d-%d", f, k);
            snprintf(row.token, sizeof row.token, "token-%d-%d", f, k);
            row.doc = "{}";
            row.status = (jobs_status)f;
            char existing[40];
            if (jobs_store_insert(st, &row, existing, err, sizeof err) != 0) {
                tap_diag("insert: %s", err);
                wrong++;
                continue;
            }
            json_t *out = NULL;
            int rc = jobs_update_job_status(st, row.id, jobs_status_name(to_req), NULL, &out,
                                            err, sizeof err);
            /* what the verb asks for: Ready, or for a cancel Cancelled when nothing runs yet
               and Cancelling otherwise */
            jobs_status asked = to_req;
            if (to_req == JOBS_STATUS_CANCELLED && !(want[f][JOBS_STATUS_CANCELLED] &
                                                      JOBS_BY_REQUEST))
                asked = JOBS_STATUS_CANCELLING;
            int exp_ok = (want[f][asked] & JOBS_BY_REQUEST) != 0;
            jobs_row now;
            jobs_store_get(st, row.id, &now, err, sizeof err);
            int ok = exp_ok ? rc == 0 && now.status == asked &&
                                  strcmp(json_string_value(json_object_get(out, "Status")),
                                         jobs_status_name(asked)) == 0
                            : rc == -JOBS_E_STATUS && strstr(err, "JobStatusException") &&
                                  now.status == (jobs_status)f;
            checked++;
            if (!ok) {
                wrong++;
                tap_diag("update-job-status %s on a %s job: rc %d, now %s, err %s",
                         jobs_status_name(to_req), jobs_status_name(f), rc,
                         jobs_status_name(now.status), err);
            }
            jobs_row_cleanup(&now);
            json_decref(out);
        }
    }
    tap_ok(wrong == 0, "update-job-status Ready and Cancelled on a job in each of the %d "
                       "statuses: the new status, or JobStatusException and no change (%d "
                       "checks, %d wrong)",
           N_STATUS, checked, wrong);

    /* the worker's save never undoes another process's cancel or a terminal status */
    static const struct {
        jobs_status stored, mine, want;
        const char *name;
    } saves[] = {
        {JOBS_STATUS_CANCELLING, JOBS_STATUS_ACTIVE, JOBS_STATUS_CANCELLING,
         "a worker's Active does not undo a cancel (Cancelling stays)"},
        {JOBS_STATUS_CANCELLED, JOBS_STATUS_ACTIVE, JOBS_STATUS_CANCELLED,
         "a worker's Active does not undo Cancelled"},
        {JOBS_STATUS_CANCELLING, JOBS_STATUS_CANCELLED, JOBS_STATUS_CANCELLED,
         "the worker ends a cancel: Cancelled"},
        {JOBS_STATUS_CANCELLING, JOBS_STATUS_COMPLETE, JOBS_STATUS_COMPLETE,
         "a cancel after the last task: Complete"},
        {JOBS_STATUS_ACTIVE, JOBS_STATUS_PAUSED, JOBS_STATUS_PAUSED, "Active -> Paused saved"},
        {JOBS_STATUS_COMPLETE, JOBS_STATUS_FAILED, JOBS_STATUS_COMPLETE,
         "a terminal status stays"},
    };
    for (size_t i = 0; i < sizeof saves / sizeof *saves; i++) {
        jobs_row row;
        memset(&row, 0, sizeof row);
        snprintf(row.id, sizeof row.id, "save-%zu", i);
        snprintf(row.token, sizeof row.token, "save-token-%zu", i);
        row.doc = "{}";
        row.status = saves[i].stored;
        char existing[40];
        jobs_store_insert(st, &row, existing, err, sizeof err);
        row.status = saves[i].mine;
        int rc = jobs_store_save(st, &row, err, sizeof err);
        jobs_row now;
        jobs_store_get(st, row.id, &now, err, sizeof err);
        tap_ok(rc == 0 && now.status == saves[i].want, "save: %s (stored %s)", saves[i].name,
               jobs_status_name(now.status));
        jobs_row_cleanup(&now);
    }
    jobs_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", dir);
}

int main(void)
{
    unsigned want[N_STATUS][N_STATUS];
    unsetenv("BATCHREP_CATALOG"); /* its catalogue is SQLite in a temporary directory */
    int rows = load_fixture(want);
    if (rows > 0) {
        tap_ok(rows == 45, "transitions.txt lists 45 transitions (%d)", rows);
        test_table(want);
        test_verbs(want);
    }
    return tap_done();
}
