/*
 * status.c — the job's states as AWS names them (aws-formats.md §4.1), this module's error
 * table, and how a job fails.
 */
#include "jobs/jobs.h"

#include <stdio.h>
#include <string.h>

const char *jobs_strerror(int err)
{
    switch (err < 0 ? -err : err) {
#define XX(name, msg)                                                                      \
    case JOBS_E_##name:                                                                     \
        return msg;
        JOBS_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *jobs_errname(int err)
{
    switch (err < 0 ? -err : err) {
#define XX(name, msg)                                                                      \
    case JOBS_E_##name:                                                                     \
        return "JOBS_E_" #name;
        JOBS_ERRNO_MAP(XX)
#undef XX
    }
    return "JOBS_E_UNKNOWN";
}

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

void jobs_job_fail(jobs_job *job, const char *code, const char *reason)
{
    job->row.status = JOBS_STATUS_FAILED;
    snprintf(job->row.failure_code, sizeof job->row.failure_code, "%s", code);
    snprintf(job->row.failure_reason, sizeof job->row.failure_reason, "%s", reason);
}

