/*
 * main.c — batchrep's entry point: dispatches to the verb named first on the command line,
 * and the helpers the verbs share.
 */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "batchrep — S3 Batch Replication on your own machines\n"
    "\n"
    "Usage: batchrep VERB [OPTIONS]\n"
    "\n"
    "Verbs (named like `aws s3control`'s; JSON output with AWS's field names):\n"
    "  run JOB.json             create a job and run it in the foreground to its end\n"
    "  create-job JOB.json      queue a job; prints {\"JobId\": ...}\n"
    "  describe-job --job-id ID the job's DescribeJob JSON, with live progress\n"
    "  list-jobs                the jobs, newest first [--job-statuses S ...]\n"
    "  update-job-priority --job-id ID --priority N\n"
    "  update-job-status --job-id ID --requested-job-status Ready|Cancelled\n"
    "                        [--status-update-reason TEXT]\n"
    "  worker                   run queued jobs by priority [--until-idle]\n"
    "  help                     this text; `batchrep VERB --help` tells a verb's options\n"
    "  version                  print the version\n"
    "\n"
    "Every verb takes --state-dir DIR (default $BATCHREP_STATE_DIR, else\n"
    "$XDG_STATE_HOME/batchrep, else ~/.local/state/batchrep): the job catalogue and each\n"
    "job's checkpoint and report live there.\n"
    "\n"
    "Every verb takes --catalog URL (or $BATCHREP_CATALOG): postgresql://user@host:port/db\n"
    "(a shared catalogue for workers on many machines); default: SQLite in the state\n"
    "directory.\n"
    "\n"
    "Endpoint and credentials follow the AWS CLI: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,\n"
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,\n"
    "AWS_DEFAULT_REGION, AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE,\n"
    "AWS_CA_BUNDLE and endpoint_url / addressing_style in a profile.\n"
    "\n"
    "Exit status: 0 success (for run: the job reached Complete; tasks may have failed, the\n"
    "report says which), 3 the job Failed, 4 Cancelled, 2 invalid arguments or job\n"
    "document, 1 any other error.\n";

int cli_parse_int(const char *name, const char *value, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || !*value || *end || errno || v < min || v > max) {
        fprintf(stderr, "batchrep: %s: expected an integer from %d to %d, got \"%s\"\n", name,
                min, max, value ? value : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* A count of `unit` ("bytes", "rows") from min to max. */
static int parse_count(const char *name, const char *unit, const char *value, int64_t min,
                       int64_t max, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (!*value || *value == '-' || *value == '+' || errno || !end || *end || v < min ||
        v > max) {
        fprintf(stderr, "batchrep: %s %s: expected a number of %s from %lld to %lld\n",
                name, value, unit, (long long)min, (long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

/* A deadline option in ms: 100 ms to 1 hour. 1, or -1 (message printed). */
static int limit_ms(const char *name, const char *arg, long *out)
{
    int ms;
    if (cli_parse_int(name, arg, 100, 3600000, &ms))
        return -1;
    *out = ms;
    return 1;
}

int cli_run_option(int c, const char *arg, run_options *o)
{
    static const char *profiles[CLI_MAX_DEST_PROFILES];
    switch (c - CLI_OPT_RUN_BASE) {
    case 0: return cli_parse_int("--concurrency", arg, 1, 4096, &o->concurrency) ? -1 : 1;
    case 1: return cli_parse_int("--workers", arg, 1, 256, &o->workers) ? -1 : 1;
    case 2: return cli_parse_int("--max-attempts", arg, 1, 100, &o->max_attempts) ? -1 : 1;
    case 3: return cli_parse_int("--retry-base-ms", arg, 1, 600000, &o->retry_base_ms) ? -1 : 1;
    case 4: return cli_parse_int("--retry-cap-ms", arg, 1, 3600000, &o->retry_cap_ms) ? -1 : 1;
    case 5: o->progress = 1; return 1;
    case 6: o->progress = 0; return 1;
    case 7: o->metrics_addr = arg; return 1;
    case 8:
        return parse_count("--multipart-threshold-bytes", "bytes", arg, 1, (int64_t)5 << 40,
                           &o->multipart_threshold_bytes) ? -1 : 1;
    case 9:
        return parse_count("--part-size-bytes", "bytes", arg, (int64_t)1 << 20, (int64_t)5 << 30,
                           &o->part_size_bytes) ? -1 : 1;
    case 10:
        if (o->n_destination_profiles == CLI_MAX_DEST_PROFILES) {
            fprintf(stderr, "batchrep: at most %d --destination-profile options\n",
                    CLI_MAX_DEST_PROFILES);
            return -1;
        }
        if (!strchr(arg, '=') || *arg == '=') {
            fprintf(stderr, "batchrep: --destination-profile %s: expected BUCKET=PROFILE\n",
                    arg);
            return -1;
        }
        profiles[o->n_destination_profiles++] = arg;
        o->destination_profiles = profiles;
        return 1;
    case 11: {
        int64_t n;
        if (parse_count("--shard-rows", "rows", arg, 1, (int64_t)1 << 40, &n))
            return -1;
        o->shard_rows = (uint64_t)n;
        return 1;
    }
    case 12: {
        int mib;
        if (cli_parse_int("--sort-memory-mib", arg, 1, 4096, &mib))
            return -1;
        o->sort_mem_bytes = (size_t)mib << 20;
        return 1;
    }
    case 13: {
        int secs;
        if (cli_parse_int("--disk-full-wait-s", arg, 1, 86400, &secs))
            return -1;
        o->disk_full_wait_ms = (int64_t)secs * 1000;
        return 1;
    }
    case 14: return limit_ms("--connect-timeout-ms", arg, &o->limits.connect_timeout_ms);
    case 15: return limit_ms("--request-timeout-ms", arg, &o->limits.request_timeout_ms);
    case 16: {
        int secs;
        if (cli_parse_int("--stall-timeout-s", arg, 1, 3600, &secs))
            return -1;
        o->limits.stall_timeout_s = secs;
        return 1;
    }
    case 17: {
        int64_t n;
        if (parse_count("--max-manifest-bytes", "bytes", arg, 1, INT64_MAX, &n))
            return -1;
        o->limits.max_download_bytes = (uint64_t)n;
        return 1;
    }
    case 18: {
        int secs;
        if (cli_parse_int("--lease-ttl-s", arg, 3, 3600, &secs))
            return -1;
        o->lease_ttl_ms = (int64_t)secs * 1000;
        return 1;
    }
    case 19: {
        int secs;
        if (cli_parse_int("--checkpoint-interval-s", arg, 1, 3600, &secs))
            return -1;
        o->checkpoint_interval_ms = (int64_t)secs * 1000;
        return 1;
    }
    case 20: o->work_location = arg; return 1;
    default: return 0;
    }
}

void cli_print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    fflush(stdout);
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
} verbs[] = {
    {"run", cli_run},
    {"worker", cli_worker},
    {"create-job", cli_create_job},
    {"describe-job", cli_describe_job},
    {"list-jobs", cli_list_jobs},
    {"update-job-priority", cli_update_job_priority},
    {"update-job-status", cli_update_job_status},
};

int main(int argc, char **argv)
{
    /* A peer can close any socket we write to (an S3 server, a metrics client, the reader
       of our stdout): that must be an error we handle (EPIPE), never death by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(verb, "version") == 0 || strcmp(verb, "--version") == 0) {
        puts("batchrep 0.2.0");
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strcmp(verb, verbs[i].name) == 0) {
            curl_global_init(CURL_GLOBAL_DEFAULT);
            int rc = verbs[i].fn(argc - 1, argv + 1);
            curl_global_cleanup();
            return rc;
        }
    }
    fprintf(stderr, "batchrep: unknown verb \"%s\"\n\n%s", verb, usage);
    return CLI_EXIT_USAGE;
}
