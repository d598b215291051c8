/*
 * run.c — `batchrep run JOB.json`: creates a job and runs it to a terminal status in the
 * foreground, then prints its DescribeJob JSON on stdout.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"

static const char help[] =
    "Usage: batchrep run JOB.json [OPTIONS]\n"
    "\n"
    "Runs one S3 Batch Replication job in the foreground. JOB.json is the CreateJob request\n"
    "JSON that `aws s3control create-job --cli-input-json` takes: Operation\n"
    "{\"S3ReplicateObject\": {}}, a Manifest (S3BatchOperations_CSV_20180820, at an S3 ARN or a\n"
    "local path) and a Report (bucket ARN or local directory). Every listed version is\n"
    "replicated to the destinations its replication rules name, each key's versions oldest\n"
    "first; the completion report is written in AWS's Report_CSV_20180820 format. At the\n"
    "end the job's DescribeJob JSON ({\"Job\": {...}}) is printed on stdout.\n"
    "\n"
    "Options:\n"
    "  --replication-config FILE  the replication configuration, as PutBucketReplication\n"
    "                             JSON; default: GetBucketReplication on the source bucket\n"
    "  --state-dir DIR            where jobs keep their state (default $BATCHREP_STATE_DIR,\n"
    "                             else $XDG_STATE_HOME/batchrep, else\n"
    "                             ~/.local/state/batchrep)\n"
    "  --concurrency N            requests in flight in total (default 64)\n"
    "  --workers N                worker threads (default: number of cores)\n"
    "  --max-attempts N           tries per request, the first included (default 8)\n"
    "  --retry-base-ms N          backoff base; delay = rand(0, min(cap, base*2^(n-1)))\n"
    "                             (default 100)\n"
    "  --retry-cap-ms N           backoff cap (default 20000)\n"
    "  --multipart-threshold-bytes N  versions larger than this are copied in parts\n"
    "                             (UploadPartCopy; default 5368709120, CopyObject's limit)\n"
    "  --part-size-bytes N        part size of multipart and streamed copies (default\n"
    "                             8388608; grown to stay within 10,000 parts)\n"
    "  --destination-profile BUCKET=PROFILE  destination BUCKET lives on the endpoint of\n"
    "                             PROFILE (its endpoint_url and credentials, from\n"
    "                             AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE); versions\n"
    "                             are streamed there (GET -> PUT / UploadPart); repeatable\n"
    "  --progress / --no-progress live progress line on stderr (default: when stderr is a\n"
    "                             terminal)\n"
    "  -h, --help                 this text\n"
    "\n"
    "Exit status: 0 the job reached Complete (tasks may have failed: the report says which),\n"
    "3 Failed, 4 Cancelled, 2 invalid arguments or job document, 1 any other error.\n";

enum { OPT_REPL = 1000, OPT_STATE, OPT_CONC, OPT_WORKERS, OPT_ATTEMPTS, OPT_BASE, OPT_CAP,
       OPT_PROGRESS, OPT_NO_PROGRESS, OPT_THRESHOLD, OPT_PART_SIZE, OPT_DEST_PROFILE };

#define MAX_DEST_PROFILES 15

/* A byte count: decimal digits only, min..max. Prints the error and returns -1. */
static int parse_bytes(const char *name, const char *value, int64_t min, int64_t max,
                       int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (!*value || *value == '-' || *value == '+' || errno || !end || *end || v < min ||
        v > max) {
        fprintf(stderr, "batchrep run: %s %s: expected a number of bytes from %lld to %lld\n",
                name, value, (long long)min, (long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"replication-config", required_argument, NULL, OPT_REPL},
        {"state-dir", required_argument, NULL, OPT_STATE},
        {"concurrency", required_argument, NULL, OPT_CONC},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
        {"retry-base-ms", required_argument, NULL, OPT_BASE},
        {"retry-cap-ms", required_argument, NULL, OPT_CAP},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
        {"multipart-threshold-bytes", required_argument, NULL, OPT_THRESHOLD},
        {"part-size-bytes", required_argument, NULL, OPT_PART_SIZE},
        {"destination-profile", required_argument, NULL, OPT_DEST_PROFILE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    eng_options o;
    const char *profiles[MAX_DEST_PROFILES];
    memset(&o, 0, sizeof o);
    o.destination_profiles = profiles;
    o.progress = isatty(STDERR_FILENO);
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_REPL: o.replication_config_path = optarg; break;
        case OPT_STATE: o.state_dir = optarg; break;
        case OPT_CONC: bad |= cli_parse_int("--concurrency", optarg, 1, 4096, &o.concurrency); break;
        case OPT_WORKERS: bad |= cli_parse_int("--workers", optarg, 1, 256, &o.workers); break;
        case OPT_ATTEMPTS: bad |= cli_parse_int("--max-attempts", optarg, 1, 100, &o.max_attempts); break;
        case OPT_BASE: bad |= cli_parse_int("--retry-base-ms", optarg, 1, 600000, &o.retry_base_ms); break;
        case OPT_CAP: bad |= cli_parse_int("--retry-cap-ms", optarg, 1, 3600000, &o.retry_cap_ms); break;
        case OPT_PROGRESS: o.progress = 1; break;
        case OPT_NO_PROGRESS: o.progress = 0; break;
        /* S3 parts are 5 MiB to 5 GiB (the last may be smaller); 1 MiB is allowed here for
           servers without that floor, and 5 TiB is S3's largest object */
        case OPT_THRESHOLD: bad |= parse_bytes("--multipart-threshold-bytes", optarg, 1, (int64_t)5 << 40, &o.multipart_threshold_bytes); break;
        case OPT_PART_SIZE: bad |= parse_bytes("--part-size-bytes", optarg, (int64_t)1 << 20, (int64_t)5 << 30, &o.part_size_bytes); break;
        case OPT_DEST_PROFILE:
            if (o.n_destination_profiles == MAX_DEST_PROFILES) {
                fprintf(stderr, "batchrep run: at most %d --destination-profile options\n",
                        MAX_DEST_PROFILES);
                bad = 1;
            } else if (!strchr(optarg, '=') || *optarg == '=') {
                fprintf(stderr, "batchrep run: --destination-profile %s: expected "
                                "BUCKET=PROFILE\n", optarg);
                bad = 1;
            } else {
                profiles[o.n_destination_profiles++] = optarg;
            }
            break;
        case 'h': fputs(help, stdout); return CLI_EXIT_OK;
        default: bad = 1; break;
        }
    }
    if (bad)
        return CLI_EXIT_USAGE;
    if (optind != argc - 1) {
        fprintf(stderr, "batchrep run: expected exactly one JOB.json argument\n\n%s", help);
        return CLI_EXIT_USAGE;
    }
    o.job_path = argv[optind];

    eng_result res;
    char err[2048];
    int rc = eng_run_job(&o, &res, err, sizeof err);
    if (rc) {
        fprintf(stderr, "batchrep: %s\n", err);
        return rc == -ENG_E_INVALID_JOB ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
    }
    json_dumpf(res.describe, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_t *job = json_object_get(res.describe, "Job");
    json_t *fr = json_array_get(json_object_get(job, "FailureReasons"), 0);
    if (fr)
        fprintf(stderr, "batchrep: job %s: %s: %s\n",
                json_string_value(json_object_get(job, "JobId")),
                json_string_value(json_object_get(fr, "FailureCode")),
                json_string_value(json_object_get(fr, "FailureReason")));
    fprintf(stderr, "batchrep: job %s %s; %llu retries, %llu throttling answers\n",
            json_string_value(json_object_get(job, "JobId")), eng_status_name(res.status),
            (unsigned long long)res.retries, (unsigned long long)res.throttle_events);
    json_decref(res.describe);
    switch (res.status) {
    case ENG_STATUS_COMPLETE: return CLI_EXIT_OK;
    case ENG_STATUS_FAILED: return CLI_EXIT_FAILED;
    case ENG_STATUS_CANCELLED: return CLI_EXIT_CANCELLED;
    default: return CLI_EXIT_ERROR;
    }
}
