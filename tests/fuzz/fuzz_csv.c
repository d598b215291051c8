/*
 * fuzz_csv.c — the CSV manifest reader (S3BatchOperations_CSV_20180820, manifest/csv_reader.c
 * under mf_open_csv): the input is the manifest file's bytes (plain, or gzip / zstd when it
 * starts with their magic), read to the end or the first error twice, with the default
 * columns (Bucket,Key[,VersionId], the first row decides) and with JobManifestSpec.Fields
 * Ignore,Bucket,Key,VersionId. Checked on every entry: the promises of manifest.h (slices
 * NUL-terminated, no NUL in the key, seq counting up) and S3's limits (key <= 1,024 bytes
 * decoded, version ID <= 1,024); on every error: a message that names the file.
 */
#include "manifest/manifest.h"
#include "tests/fuzz/util.h"

#include <stdlib.h>
#include <string.h>

static void check_entry(const mf_entry *e, uint64_t want_seq)
{
    if (e->seq != want_seq || e->line == 0)
        abort();
    if (e->bucket.ptr[e->bucket.len] || e->key.ptr[e->key.len] ||
        e->key_raw.ptr[e->key_raw.len] || e->version_id.ptr[e->version_id.len])
        abort(); /* every slice is NUL-terminated */
    if (memchr(e->key.ptr, '\0', e->key.len) || e->key.len == 0 || e->key.len > 1024)
        abort();
    if (e->version_id.len > 1024 || (!e->has_version && e->version_id.len))
        abort();
}

static void read_all(const char *path, const mf_csv_opts *opts)
{
    char msg[4096];
    mf_reader *r = mf_open_csv(path, "fuzz.csv", opts, msg, sizeof msg);
    if (!r)
        return;
    mf_entry e;
    int rc;
    uint64_t n = 0;
    while ((rc = mf_next(r, &e, msg, sizeof msg)) == 1)
        check_entry(&e, n++);
    if (rc < 0) {
        if (strncmp(msg, "fuzz.csv", 8) != 0)
            abort(); /* an error names the file */
        if (mf_next(r, &e, msg, sizeof msg) != rc)
            abort(); /* errors are final */
    }
    mf_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[4096];
    if (!path[0])
        fz_tmp_path("manifest.csv", path, sizeof path);
    fz_write(path, data, size);
    read_all(path, NULL);
    mf_csv_opts o = {.fields = {MF_FIELD_IGNORE, MF_FIELD_BUCKET, MF_FIELD_KEY,
                                MF_FIELD_VERSION_ID},
                     .n_fields = 4};
    read_all(path, &o);
    return 0;
}
