/*
 * util.h — what the libFuzzer targets in tests/fuzz/ share: a private temporary folder per
 * process (the readers take paths, not memory), and writing bytes to a file in it.
 */
#ifndef BATCHREP_FUZZ_UTIL_H
#define BATCHREP_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point, declared for -Wmissing-prototypes and readers. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The process's temporary folder ($TMPDIR or /tmp, "batchrep-fuzz-XXXXXX"), made on the
   first call and removed (with what it holds: the targets' few files) at exit. Aborts when
   it cannot be made: a fuzz run without it would test nothing. */
const char *fz_tmp_dir(void);
/* "<tmp>/<rel>" into out (cap >= 4096); the folders of rel are made. */
void fz_tmp_path(const char *rel, char *out, size_t cap);
/* Writes data to path (replacing it). Aborts on failure. */
void fz_write(const char *path, const void *data, size_t len);

#endif
