/*
 * jobs.c — the catalogue verbs: create-job, describe-job, list-jobs, update-job-priority,
 * update-job-status. Each prints AWS's JSON shape on stdout; errors go to stderr with the
 * exit codes of cli.h (NotFoundException and JobStatusException exit 1 and say so).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_STATE = 1, OPT_JOB_ID, OPT_PRIORITY, OPT_STATUS, OPT_REASON, OPT_REPL,
       OPT_STATUSES, OPT_CATALOG };

typedef struct args {
    const char *state, *catalog, *job_id, *requested, *reason, *repl;
    const char *priority;
    int prio;                    /* --priority, parsed */
    const char *statuses[16];
    size_t n_statuses;
    const char *positional;
} args;

static const char common_help[] =
    "  --state-dir DIR            the state directory (see `batchrep help`)\n"
    "  --catalog URL              postgresql://user@host:port/db (a shared catalogue for\n"
    "                             workers on many machines); default: $BATCHREP_CATALOG,\n"
    "                             else SQLite in the state directory\n"
    "  -h, --help                 this text\n";

/* Parses the verb's options; returns -1 (usage) or 1 (help printed) or 0. */
static int parse(int argc, char **argv, const char *help, int want_positional, args *a)
{
    static const struct option longopts[] = {
        {"state-dir", required_argument, NULL, OPT_STATE},
        {"catalog", required_argument, NULL, OPT_CATALOG},
        {"job-id", required_argument, NULL, OPT_JOB_ID},
        {"priority", required_argument, NULL, OPT_PRIORITY},
        {"requested-job-status", required_argument, NULL, OPT_STATUS},
        {"status-update-reason", required_argument, NULL, OPT_REASON},
        {"replication-config", required_argument, NULL, OPT_REPL},
        {"job-statuses", required_argument, NULL, OPT_STATUSES},
        {"account-id", required_argument, NULL, 'a'}, /* accepted, as the AWS CLI wants it */
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_STATE: a->state = optarg; break;
        case OPT_CATALOG: a->catalog = optarg; break;
        case OPT_JOB_ID: a->job_id = optarg; break;
        case OPT_PRIORITY: a->priority = optarg; break;
        case OPT_STATUS: a->requested = optarg; break;
        case OPT_REASON: a->reason = optarg; break;
        case OPT_REPL: a->repl = optarg; break;
        case OPT_STATUSES:
            /* --job-statuses Active Ready ... (AWS CLI list style) */
            optind--;
            while (optind < argc && argv[optind][0] != '-' && a->n_statuses < 16)
                a->statuses[a->n_statuses++] = argv[optind++];
            break;
        case 'a': break;
        case 'h': fputs(help, stdout); return 1;
        default: return -1;
        }
    }
    if (want_positional && optind == argc - 1)
        a->positional = argv[optind];
    else if (optind != argc) {
        fprintf(stderr, "batchrep: unexpected argument \"%s\"\n\n%s", argv[optind], help);
        return -1;
    }
    if (want_positional && !a->positional) {
        fprintf(stderr, "batchrep: expected one JOB.json argument\n\n%s", help);
        return -1;
    }
    return 0;
}

/* One catalogue verb: its help, whether it takes JOB.json, the options it requires, and the
   engine call that makes its JSON. The parsing, checks, store and printing are shared. */
typedef struct verb_def {
    const char *help;
    int positional;
    int need_job_id, need_priority, need_status;
    int (*call)(jobs_store *st, const args *a, json_t **out, char *err, size_t err_len);
} verb_def;

static int need(const char *value, const char *name, const char *help)
{
    if (value)
        return 0;
    fprintf(stderr, "batchrep: %s is required\n\n%s", name, help);
    return -1;
}

static int run_verb(int argc, char **argv, const verb_def *v)
{
    args a;
    char err[2048], help[4096];
    snprintf(help, sizeof help, "%s%s", v->help, common_help);
    int p = parse(argc, argv, help, v->positional, &a);
    if (p)
        return p > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if ((v->need_job_id && need(a.job_id, "--job-id", help)) ||
        (v->need_priority && need(a.priority, "--priority", help)) ||
        (v->need_status && need(a.requested, "--requested-job-status", help)) ||
        (v->need_priority && cli_parse_int("--priority", a.priority, 0, 2147483647, &a.prio)))
        return CLI_EXIT_USAGE;
    jobs_store *st;
    int orc = jobs_store_open(a.state, a.catalog, &st, err, sizeof err);
    if (orc != 0) {
        fprintf(stderr, "batchrep: %s\n", err);
        return orc == -JOBS_E_INVALID_JOB ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
    }
    json_t *out = NULL;
    int rc = v->call(st, &a, &out, err, sizeof err);
    jobs_store_close(st);
    if (rc) {
        fprintf(stderr, "batchrep: %s\n", err);
        return rc == -JOBS_E_INVALID_JOB ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
    }
    cli_print_json(out);
    json_decref(out);
    return CLI_EXIT_OK;
}

static int call_create(jobs_store *st, const args *a, json_t **out, char *err, size_t n)
{
    return jobs_create_job(st, a->positional, a->repl, out, err, n);
}

static int call_describe(jobs_store *st, const args *a, json_t **out, char *err, size_t n)
{
    return jobs_describe_job(st, a->job_id, out, err, n);
}

static int call_list(jobs_store *st, const args *a, json_t **out, char *err, size_t n)
{
    return jobs_list_jobs(st, a->statuses, a->n_statuses, out, err, n);
}

static int call_priority(jobs_store *st, const args *a, json_t **out, char *err, size_t n)
{
    return jobs_update_job_priority(st, a->job_id, a->prio, out, err, n);
}

static int call_status(jobs_store *st, const args *a, json_t **out, char *err, size_t n)
{
    return jobs_update_job_status(st, a->job_id, a->requested, a->reason, out, err, n);
}

int cli_create_job(int argc, char **argv)
{
    static const verb_def v = {
        "Usage: batchrep create-job JOB.json [--replication-config FILE] [--state-dir DIR]\n"
        "                           [--catalog URL]\n"
        "\n"
        "Queues a job from a CreateJob request JSON (as `aws s3control create-job\n"
        "--cli-input-json` takes) and prints {\"JobId\": ...}. The same ClientRequestToken\n"
        "returns the same job; with another document or replication configuration it is\n"
        "IdempotencyException (exit 1). A `batchrep worker` runs it.\n"
        "\n"
        "Options:\n"
        "  --replication-config FILE  PutBucketReplication JSON, captured with the job;\n"
        "                             default: the source bucket's, read when it is prepared\n",
        1, 0, 0, 0, call_create};
    return run_verb(argc, argv, &v);
}

int cli_describe_job(int argc, char **argv)
{
    static const verb_def v = {
        "Usage: batchrep describe-job --job-id ID [--state-dir DIR] [--catalog URL]\n"
        "\n"
        "Prints the job's DescribeJob JSON ({\"Job\": {...}}), with the live ProgressSummary\n"
        "of a job that another process is running.\n\nOptions:\n",
        0, 1, 0, 0, call_describe};
    return run_verb(argc, argv, &v);
}

int cli_list_jobs(int argc, char **argv)
{
    static const verb_def v = {
        "Usage: batchrep list-jobs [--job-statuses STATUS ...] [--state-dir DIR] [--catalog URL]\n"
        "\n"
        "Prints {\"Jobs\": [JobListDescriptor, ...]}, newest first; with --job-statuses only\n"
        "jobs in those statuses (New Preparing Suspended Ready Active Pausing Paused\n"
        "Completing Complete Failing Failed Cancelling Cancelled).\n\nOptions:\n",
        0, 0, 0, 0, call_list};
    return run_verb(argc, argv, &v);
}

int cli_update_job_priority(int argc, char **argv)
{
    static const verb_def v = {
        "Usage: batchrep update-job-priority --job-id ID --priority N [--state-dir DIR]\n"
        "                                   [--catalog URL]\n"
        "\n"
        "Sets the job's priority (0..2147483647, higher runs first) and prints {\"JobId\",\n"
        "\"Priority\"}. A running worker applies it within a second.\n\nOptions:\n",
        0, 1, 1, 0, call_priority};
    return run_verb(argc, argv, &v);
}

int cli_update_job_status(int argc, char **argv)
{
    static const verb_def v = {
        "Usage: batchrep update-job-status --job-id ID --requested-job-status Ready|Cancelled\n"
        "                                 [--status-update-reason TEXT] [--state-dir DIR]\n"
        "                                 [--catalog URL]\n"
        "\n"
        "Ready confirms a Suspended job (ConfirmationRequired). Cancelled cancels a job: one\n"
        "that has not started becomes Cancelled at once; a running one becomes Cancelling,\n"
        "and its worker stops it and writes the report of the tasks that ran. Other requests\n"
        "fail with JobStatusException. Prints {\"JobId\", \"Status\", \"StatusUpdateReason\"}.\n"
        "\nOptions:\n",
        0, 1, 0, 1, call_status};
    return run_verb(argc, argv, &v);
}
