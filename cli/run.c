/*
 * run.c — the verbs that run jobs: `batchrep run JOB.json` (create a job and run it in the
 * foreground, then print its DescribeJob JSON) and `batchrep worker` (run queued jobs).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The same words as the catalogue verbs' --catalog (cli/jobs.c). */
#define CATALOG_HELP                                                                       \
    "  --catalog URL              postgresql://user@host:port/db (a shared catalogue for\n" \
    "                             workers on many machines); default: $BATCHREP_CATALOG,\n" \
    "                             else SQLite in the state directory\n"

static const char run_help[] =
    "Usage: batchrep run JOB.json [OPTIONS]\n"
    "\n"
    "Creates an S3 Batch Replication job and runs it in the foreground to its end. JOB.json\n"
    "is the CreateJob request JSON that `aws s3control create-job --cli-input-json` takes:\n"
    "Operation {\"S3ReplicateObject\": {}}, a Manifest (S3BatchOperations_CSV_20180820, at an\n"
    "S3 ARN or a local path) and a Report (bucket ARN or local directory). Every listed\n"
    "version is replicated to the destinations its replication rules name, each key's\n"
    "versions oldest first; the completion report is written in AWS's Report_CSV_20180820\n"
    "format. At the end the job's DescribeJob JSON ({\"Job\": {...}}) is printed on stdout.\n"
    "\n"
    "Running the same document again (same ClientRequestToken) continues the same job from\n"
    "its last checkpoint: after a crash or kill nothing is lost and no task is reported twice.\n"
    "The same token with another document or replication configuration is refused\n"
    "(IdempotencyException, exit 1).\n"
    "A job with ConfirmationRequired is confirmed by running it.\n"
    "\n"
    "Options:\n"
    "  --replication-config FILE  the replication configuration, as PutBucketReplication\n"
    "                             JSON; default: GetBucketReplication on the source bucket\n"
    "  --state-dir DIR            where jobs keep their state (see `batchrep help`)\n"
    CATALOG_HELP CLI_RUN_HELP
    "  -h, --help                 this text\n"
    "\n"
    "Exit status: 0 the job reached Complete (tasks may have failed: the report says which),\n"
    "3 Failed, 4 Cancelled, 2 invalid arguments or job document, 1 any other error.\n";

static const char worker_help[] =
    "Usage: batchrep worker [OPTIONS]\n"
    "\n"
    "Runs the jobs of the catalogue (--catalog, else the state directory's): prepares New\n"
    "jobs (a job with ConfirmationRequired then waits Suspended for `update-job-status\n"
    "--requested-job-status Ready`), runs Ready ones several at a time with transfer slots\n"
    "going to the highest priority first (equal priorities share), pauses lower-priority\n"
    "jobs while higher ones need the slots, honours cancels and priority changes made by\n"
    "other processes within a second, and takes over jobs whose worker died, from their\n"
    "last checkpoint. SIGINT or SIGTERM stops it cleanly; its jobs continue at the next\n"
    "start.\n"
    "\n"
    "Options:\n"
    "  --until-idle               return when no job is left to run (for cron, systemd\n"
    "                             timers, Kubernetes CronJobs); default: run until stopped\n"
    "  --state-dir DIR            where jobs keep their state (see `batchrep help`)\n"
    CATALOG_HELP CLI_RUN_HELP
    "  -h, --help                 this text\n"
    "\n"
    "Exit status: 0 stopped or idle, 2 invalid arguments, 1 any other error.\n";

enum { OPT_REPL = 1, OPT_STATE, OPT_UNTIL_IDLE, OPT_CATALOG };

/* 0, or the exit status (the message printed). */
static int open_store(const char *state_dir, const char *catalog, jobs_store **st)
{
    char err[2048];
    int rc = jobs_store_open(state_dir, catalog, st, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "batchrep: %s\n", err);
        return rc == -JOBS_E_INVALID_JOB ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
    }
    return 0;
}

/* A CA bundle curl cannot load (AWS_CA_BUNDLE naming a missing or garbage file) would
   fail every request of the job with curl error 77: refused before a job is created. Any
   other endpoint problem is reported where it was before (run_worker). 1: refused. */
static int ca_bundle_refused(void)
{
    s3_endpoint ep;
    char err[2048];
    int bad = s3_endpoint_load(&ep, NULL, err, sizeof err) == 0 &&
              s3_endpoint_check_ca(&ep, err, sizeof err) != 0;
    memset(&ep.creds, 0, sizeof ep.creds); /* secrets */
    if (bad)
        fprintf(stderr, "batchrep: %s\n", err);
    return bad;
}

/* Long on purpose (~90 lines): the options of `run` and `worker`, then the run, then the
   exit status DESIGN.md gives; one verb's whole life in order. */
static int run_or_worker(int argc, char **argv, int is_run)
{
    static const struct option longopts[] = {
        {"replication-config", required_argument, NULL, OPT_REPL},
        {"state-dir", required_argument, NULL, OPT_STATE},
        {"catalog", required_argument, NULL, OPT_CATALOG},
        {"until-idle", no_argument, NULL, OPT_UNTIL_IDLE},
        {"help", no_argument, NULL, 'h'},
        CLI_RUN_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    run_options o;
    memset(&o, 0, sizeof o);
    o.progress = isatty(STDERR_FILENO);
    const char *repl = NULL, *state = NULL, *catalog = NULL;
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int r = cli_run_option(c, optarg, &o);
        if (r < 0)
            bad = 1;
        if (r != 0)
            continue;
        switch (c) {
        case OPT_REPL: repl = optarg; bad |= !is_run; break;
        case OPT_STATE: state = optarg; break;
        case OPT_CATALOG: catalog = optarg; break;
        case OPT_UNTIL_IDLE: o.until_idle = 1; bad |= is_run; break;
        case 'h': fputs(is_run ? run_help : worker_help, stdout); return CLI_EXIT_OK;
        default: bad = 1; break;
        }
    }
    if (bad)
        return CLI_EXIT_USAGE;
    if (optind != argc - (is_run ? 1 : 0)) {
        fprintf(stderr, "batchrep %s: %s\n\n%s", is_run ? "run" : "worker",
                is_run ? "expected exactly one JOB.json argument" : "takes no arguments",
                is_run ? run_help : worker_help);
        return CLI_EXIT_USAGE;
    }
    if (ca_bundle_refused())
        return CLI_EXIT_USAGE;
    jobs_store *st;
    int orc = open_store(state, catalog, &st);
    if (orc != 0)
        return orc;
    char err[2048], id[64] = "";
    int rc;
    if (is_run) {
        json_t *created;
        rc = jobs_create_job(st, argv[optind], repl, &created, err, sizeof err);
        if (rc) {
            fprintf(stderr, "batchrep: %s\n", err);
            jobs_store_close(st);
            return rc == -JOBS_E_INVALID_JOB ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
        }
        snprintf(id, sizeof id, "%s", json_string_value(json_object_get(created, "JobId")));
        json_decref(created);
        o.only_job_id = id;
    }
    run_result res;
    rc = run_worker(st, &o, &res, err, sizeof err);
    if (rc) {
        fprintf(stderr, "batchrep: %s\n", err);
        jobs_store_close(st);
        return rc == -RUN_E_INVALID_OPTIONS ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
    }
    int exit_code = CLI_EXIT_OK;
    if (is_run) {
        json_t *d;
        if (jobs_describe_job(st, id, &d, err, sizeof err) != 0) {
            fprintf(stderr, "batchrep: %s\n", err);
            jobs_store_close(st);
            return CLI_EXIT_ERROR;
        }
        cli_print_json(d);
        json_t *job = json_object_get(d, "Job");
        const char *status = json_string_value(json_object_get(job, "Status"));
        json_t *fr = json_array_get(json_object_get(job, "FailureReasons"), 0);
        if (fr)
            fprintf(stderr, "batchrep: job %s: %s: %s\n", id,
                    json_string_value(json_object_get(fr, "FailureCode")),
                    json_string_value(json_object_get(fr, "FailureReason")));
        fprintf(stderr, "batchrep: job %s %s; %llu retries, %llu throttling answers\n", id,
                status, (unsigned long long)res.retries,
                (unsigned long long)res.throttle_events);
        exit_code = strcmp(status, "Complete") == 0    ? CLI_EXIT_OK
                    : strcmp(status, "Failed") == 0    ? CLI_EXIT_FAILED
                    : strcmp(status, "Cancelled") == 0 ? CLI_EXIT_CANCELLED
                                                       : CLI_EXIT_ERROR;
        json_decref(d);
    }
    jobs_store_close(st);
    return exit_code;
}

int cli_run(int argc, char **argv)
{
    return run_or_worker(argc, argv, 1);
}

int cli_worker(int argc, char **argv)
{
    return run_or_worker(argc, argv, 0);
}
