/*
 * status.c — the job's states as AWS names them (aws-formats.md §4.1), the one table of the
 * transitions between them and the one setter that applies it (every refused transition is
 * AWS's JobStatusException), how a job fails, and this module's error table.
 */
#include "jobs/jobs.h"

#include <stdio.h>
#include <string.h>

#define S3_ERR_NAME_PREFIX "JOBS_E_"
S3_ERROR_FUNCS(jobs, JOBS_ERRNO_MAP, "unknown error")

const char *jobs_status_name(jobs_status s)
{
    switch (s) {
#define XX(name, str)                                                                      \
    case JOBS_STATUS_##name:                                                                \
        return str;
        JOBS_STATUS_MAP(XX)
#undef XX
    }
    return "Unknown";
}

int jobs_status_parse(const char *name)
{
#define XX(sym, str)                                                                       \
    if (strcmp(name, str) == 0)                                                            \
        return JOBS_STATUS_##sym;
    JOBS_STATUS_MAP(XX)
#undef XX
    return -1;
}

/* ---- the transition table ------------------------------------------------------------------

   AWS's transitions (aws-formats.md §4.1) and who makes each: the worker running the job, or
   a request (UpdateJobStatus). Anything not listed is refused: JobStatusException. */

#define W JOBS_BY_WORKER
#define R JOBS_BY_REQUEST
#define S(x) JOBS_STATUS_##x
static const struct {
    jobs_status from, to;
    unsigned by;
} transitions[] = {
    {S(NEW), S(PREPARING), W},       {S(NEW), S(FAILED), W},
    {S(NEW), S(CANCELLED), R},
    {S(PREPARING), S(SUSPENDED), W}, {S(PREPARING), S(READY), W},
    {S(PREPARING), S(FAILED), W},    {S(PREPARING), S(CANCELLING), W | R},
    {S(SUSPENDED), S(READY), R},     {S(SUSPENDED), S(CANCELLED), R},
    {S(SUSPENDED), S(FAILED), W},    /* unconfirmed for 30 days */
    {S(READY), S(ACTIVE), W},        {S(READY), S(PAUSED), W},
    {S(READY), S(PAUSING), W},       /* Active and Pausing within one save interval */
    {S(READY), S(COMPLETING), W},    {S(READY), S(FAILING), W},
    {S(READY), S(FAILED), W},        {S(READY), S(CANCELLING), W},
    {S(READY), S(CANCELLED), R},
    {S(ACTIVE), S(PAUSING), W},      {S(ACTIVE), S(PAUSED), W},
    {S(ACTIVE), S(COMPLETING), W},   {S(ACTIVE), S(FAILING), W},
    {S(ACTIVE), S(FAILED), W},       {S(ACTIVE), S(CANCELLING), W | R},
    {S(PAUSING), S(ACTIVE), W},      {S(PAUSING), S(PAUSED), W},
    {S(PAUSING), S(COMPLETING), W},  {S(PAUSING), S(FAILING), W},
    {S(PAUSING), S(FAILED), W},      {S(PAUSING), S(CANCELLING), W | R},
    {S(PAUSED), S(ACTIVE), W},       {S(PAUSED), S(COMPLETING), W},
    {S(PAUSED), S(FAILING), W},      {S(PAUSED), S(FAILED), W},
    {S(PAUSED), S(CANCELLING), W | R},
    {S(COMPLETING), S(COMPLETE), W}, {S(COMPLETING), S(FAILING), W},
    {S(COMPLETING), S(FAILED), W},   {S(COMPLETING), S(CANCELLING), W | R},
    {S(COMPLETING), S(ACTIVE), W},   /* resumed after a crash: its last units run again */
    {S(FAILING), S(FAILED), W},      {S(FAILING), S(CANCELLING), R},
    {S(CANCELLING), S(CANCELLED), W},
    /* the cancel came after the last task had run: the job completed (or its report could
       not be written) */
    {S(CANCELLING), S(COMPLETE), W}, {S(CANCELLING), S(FAILED), W},
};
#undef W
#undef R
#undef S

int jobs_status_allowed(jobs_status from, jobs_status to, unsigned by)
{
    for (size_t i = 0; i < sizeof transitions / sizeof *transitions; i++)
        if (transitions[i].from == from && transitions[i].to == to)
            return (transitions[i].by & by) != 0;
    return 0;
}

int jobs_status_terminal(jobs_status s)
{
    return s == JOBS_STATUS_COMPLETE || s == JOBS_STATUS_FAILED || s == JOBS_STATUS_CANCELLED;
}

int jobs_row_set_status(jobs_row *r, jobs_status to, unsigned by, char *err, size_t err_len)
{
    if (r->status == to)
        return 0;
    if (!jobs_status_allowed(r->status, to, by)) {
        if (err)
            snprintf(err, err_len, "JobStatusException: job %s is %s and cannot become %s", r->id,
                     jobs_status_name(r->status), jobs_status_name(to));
        return -JOBS_E_STATUS;
    }
    r->status = to;
    if (jobs_status_terminal(to))
        r->terminated_ms = s3_wall_ms();
    if (to == JOBS_STATUS_SUSPENDED)
        r->suspended_ms = s3_wall_ms();
    return 0;
}

void jobs_job_set_failure(jobs_job *job, const char *code, const char *reason)
{
    snprintf(job->row.failure_code, sizeof job->row.failure_code, "%s", code);
    snprintf(job->row.failure_reason, sizeof job->row.failure_reason, "%s", reason);
}

void jobs_job_fail(jobs_job *job, const char *code, const char *reason)
{
    jobs_job_set_failure(job, code, reason);
    jobs_row_set_status(&job->row, JOBS_STATUS_FAILED, JOBS_BY_WORKER, NULL, 0);
}
