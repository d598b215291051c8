/*
 * cli.h — the command line: one function per verb, shared argument helpers.
 * Exit codes (DESIGN.md): 0 the job reached Complete, 3 Failed, 4 Cancelled, 2 invalid
 * arguments or job document, 1 any other error.
 */
#ifndef BATCHREP_CLI_H
#define BATCHREP_CLI_H

#include <getopt.h>

#include "jobs/jobs.h"
#include "run/run.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_ERROR = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_FAILED = 3,
       CLI_EXIT_CANCELLED = 4 };

int cli_run(int argc, char **argv);
int cli_worker(int argc, char **argv);
int cli_create_job(int argc, char **argv);
int cli_describe_job(int argc, char **argv);
int cli_list_jobs(int argc, char **argv);
int cli_update_job_priority(int argc, char **argv);
int cli_update_job_status(int argc, char **argv);

/* Parses a decimal int for option `name`; prints the error and returns -1. */
int cli_parse_int(const char *name, const char *value, int min, int max, int *out);

/* The options `run` and `worker` share (how jobs run). Their getopt codes start here. */
enum { CLI_OPT_RUN_BASE = 1000 };
#define CLI_RUN_LONGOPTS                                                                   \
    {"concurrency", required_argument, NULL, CLI_OPT_RUN_BASE + 0},                        \
        {"workers", required_argument, NULL, CLI_OPT_RUN_BASE + 1},                        \
        {"max-attempts", required_argument, NULL, CLI_OPT_RUN_BASE + 2},                   \
        {"retry-base-ms", required_argument, NULL, CLI_OPT_RUN_BASE + 3},                  \
        {"retry-cap-ms", required_argument, NULL, CLI_OPT_RUN_BASE + 4},                   \
        {"progress", no_argument, NULL, CLI_OPT_RUN_BASE + 5},                             \
        {"no-progress", no_argument, NULL, CLI_OPT_RUN_BASE + 6},                          \
        {"metrics-addr", required_argument, NULL, CLI_OPT_RUN_BASE + 7},                   \
        {"multipart-threshold-bytes", required_argument, NULL, CLI_OPT_RUN_BASE + 8},      \
        {"part-size-bytes", required_argument, NULL, CLI_OPT_RUN_BASE + 9},                \
        {"destination-profile", required_argument, NULL, CLI_OPT_RUN_BASE + 10},           \
        {"shard-rows", required_argument, NULL, CLI_OPT_RUN_BASE + 11},                    \
        {"sort-memory-mib", required_argument, NULL, CLI_OPT_RUN_BASE + 12},               \
        {"disk-full-wait-s", required_argument, NULL, CLI_OPT_RUN_BASE + 13},              \
        {"connect-timeout-ms", required_argument, NULL, CLI_OPT_RUN_BASE + 14},            \
        {"request-timeout-ms", required_argument, NULL, CLI_OPT_RUN_BASE + 15},            \
        {"stall-timeout-s", required_argument, NULL, CLI_OPT_RUN_BASE + 16},               \
        {"max-manifest-bytes", required_argument, NULL, CLI_OPT_RUN_BASE + 17},            \
        {"lease-ttl-s", required_argument, NULL, CLI_OPT_RUN_BASE + 18},                   \
        {"checkpoint-interval-s", required_argument, NULL, CLI_OPT_RUN_BASE + 19},         \
        {"work-location", required_argument, NULL, CLI_OPT_RUN_BASE + 20}
#define CLI_RUN_HELP                                                                       \
    "  --concurrency N            requests in flight in total (default 64)\n"             \
    "  --workers N                transfer threads (default: number of cores)\n"            \
    "  --max-attempts N           tries per request, the first included (default 8)\n"    \
    "  --retry-base-ms N          backoff base; delay = rand(0, min(cap, base*2^(n-1)))\n" \
    "                             (default 100)\n"                                         \
    "  --retry-cap-ms N           backoff cap (default 20000)\n"                           \
    "  --progress / --no-progress live progress line on stderr (default: when stderr is\n" \
    "                             a terminal)\n"                                           \
    "  --metrics-addr HOST:PORT   serve Prometheus metrics at http://HOST:PORT/metrics\n"   \
    "  --multipart-threshold-bytes N  versions larger than this are copied in parts\n"     \
    "                             (UploadPartCopy; default 5368709120, CopyObject's limit)\n" \
    "  --part-size-bytes N        part size of multipart and streamed copies (default\n"  \
    "                             8388608; grown to stay within 10,000 parts)\n"          \
    "  --destination-profile BUCKET=PROFILE  destination BUCKET lives on the endpoint of\n" \
    "                             PROFILE (its endpoint_url and credentials, from\n"      \
    "                             AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE); versions\n" \
    "                             are streamed there (GET -> PUT / UploadPart); repeatable\n" \
    "  --shard-rows N             Preparing cuts the key-sorted manifest into shards of\n"  \
    "                             about N rows, never splitting a key (default 100000)\n"  \
    "  --sort-memory-mib N        Preparing's sort buffer; a larger manifest is sorted in\n" \
    "                             runs spilled to the job's folder (default 16)\n"         \
    "  --disk-full-wait-s N       a full disk pauses the worker (nothing is lost); if it\n" \
    "                             stays full N seconds, the worker stops with the reason\n" \
    "                             and exit 1, its jobs resumable (default 60)\n"          \
    "  --connect-timeout-ms N     TCP connect and TLS handshake, per attempt (default 5000)\n" \
    "  --request-timeout-ms N     a request without object data (HEAD, a listing page,\n"  \
    "                             tags, DELETE, ...) is cut after N ms and retried; a\n"   \
    "                             server-side copy gets N ms + 1 s per 4 MiB (default\n"  \
    "                             10000)\n"                                                \
    "  --stall-timeout-s N        object data and manifest downloads are cut when less\n"  \
    "                             than 1024 bytes/s moved for N s (default 20)\n"          \
    "  --max-manifest-bytes N     a manifest, Inventory data or report file to download\n" \
    "                             larger than this is refused (default 68719476736)\n"   \
    "  --lease-ttl-s N            a shard this worker leased is another worker's to take\n" \
    "                             over when not renewed for N s; renewed every N/3 s, its\n" \
    "                             requests stop 2N/3 s after the last renewal (default 30)\n" \
    "  --checkpoint-interval-s N  report rows and progress saved at least every N s (and\n" \
    "                             when the planner needs it); a takeover redoes at most\n" \
    "                             that much, rechecked (default 5)\n"                    \
    "  --work-location s3://BUCKET[/PREFIX]\n"                                            \
    "                             with a shared catalogue, where jobs' shards and report\n" \
    "                             parts are kept (the same on every worker; default: the\n" \
    "                             job's report prefix, job-<id>/work/)\n"

/* 1: c was one of the shared options (applied to o); 0: not one; -1: bad value.
   --destination-profile values are kept in a static table (at most CLI_MAX_DEST_PROFILES). */
#define CLI_MAX_DEST_PROFILES 15
int cli_run_option(int c, const char *arg, run_options *o);

/* Prints JSON on stdout, AWS CLI style (4-space indent). */
void cli_print_json(json_t *j);

#endif
