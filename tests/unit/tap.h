/*
 * tap.h — the few TAP helpers every C test program uses: "ok N - name" / "not ok N - name"
 * lines and a closing "N passed, N failed" line; the exit status is 1 when anything failed.
 */
#ifndef BATCHREP_TAP_H
#define BATCHREP_TAP_H

#include <stddef.h>

/* The cap of the s3_buf a test collects its output in (plenty, never reached). */
#define TAP_BUF_MAX ((size_t)1 << 30)

/* Records one check. Returns cond so callers can stop a case early. */
int tap_ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a "# ..." diagnostic line. */
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads a whole file under tests/fixtures (path relative to the repository root, found from
   $BATCHREP_SRC or the current directory). Caller frees. NULL when missing. */
char *tap_read_fixture(const char *rel_path, size_t *out_len);
/* Reads a whole file at path (any path). Caller frees. NULL when unreadable. */
char *tap_read_path(const char *path, size_t *out_len);
/* Prints the summary and returns the process exit status. */
int tap_done(void);

#define TAP_EQ_STR(got, want, name)                                                        \
    tap_ok((got) != NULL && strcmp((got), (want)) == 0, "%s (got \"%s\", want \"%s\")",     \
           (name), (got) ? (got) : "(null)", (want))

#endif
