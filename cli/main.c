/*
 * main.c — batchrep's entry point: dispatches to the verb named first on the command line.
 */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "batchrep — S3 Batch Replication on your own machines\n"
    "\n"
    "Usage: batchrep VERB [OPTIONS]\n"
    "\n"
    "Verbs:\n"
    "  run JOB.json     create a job from a CreateJob document and run it in the foreground\n"
    "  help             this text; `batchrep VERB --help` tells a verb's options\n"
    "  version          print the version\n"
    "\n"
    "Endpoint and credentials follow the AWS CLI: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,\n"
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,\n"
    "AWS_DEFAULT_REGION, AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE,\n"
    "AWS_CA_BUNDLE and endpoint_url / addressing_style in a profile.\n"
    "\n"
    "Exit status: 0 the job reached Complete (tasks may have failed: the report says which),\n"
    "3 Failed, 4 Cancelled, 2 invalid arguments or job document, 1 any other error.\n";

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

int main(int argc, char **argv)
{
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
        puts("batchrep 0.1.0");
        return CLI_EXIT_OK;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (strcmp(verb, "run") == 0) {
        rc = cli_run(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "batchrep: unknown verb \"%s\"\n\n%s", verb, usage);
        rc = CLI_EXIT_USAGE;
    }
    curl_global_cleanup();
    return rc;
}
