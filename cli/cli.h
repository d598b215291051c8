/*
 * cli.h — the command line: one function per verb, shared argument helpers.
 * Exit codes (DESIGN.md): 0 the job reached Complete, 3 Failed, 4 Cancelled, 2 invalid
 * arguments or job document, 1 any other error.
 */
#ifndef BATCHREP_CLI_H
#define BATCHREP_CLI_H

enum { CLI_EXIT_OK = 0, CLI_EXIT_ERROR = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_FAILED = 3,
       CLI_EXIT_CANCELLED = 4 };

int cli_run(int argc, char **argv);

/* Parses a non-negative decimal int for option `name`; prints the error and returns -1. */
int cli_parse_int(const char *name, const char *value, int min, int max, int *out);

#endif
