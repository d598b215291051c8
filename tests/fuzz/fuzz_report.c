/*
 * fuzz_report.c — a completion report read as a manifest (Report_CSV_20180820,
 * manifest/reader.c load_report + csv_reader.c with 7 columns, an empty VersionId read as
 * "no version"): the input is one "failed" results file; the target writes it and a
 * manifest.json naming it (with its MD5) and reads every entry.
 */
#include "manifest/manifest.h"
#include "tests/fuzz/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static char manifest[4096], results[4096];
    if (!ready) {
        fz_tmp_path("rep/fuzzdata/results.csv", results, sizeof results);
        fz_tmp_path("rep/manifest.json", manifest, sizeof manifest);
        ready = 1;
    }
    fz_write(results, data, size);
    char md5[33], msg[4096];
    if (s3_md5_file(results, md5, msg, sizeof msg) != 0)
        abort();
    json_t *doc = json_pack("{s:s, s:s, s:[{s:s, s:s, s:s, s:s}]}", "Format",
                            "Report_CSV_20180820", "ReportSchema",
                            "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, "
                            "ResultMessage",
                            "Results", "TaskExecutionStatus", "failed", "Bucket", "reports",
                            "MD5Checksum", md5, "Key", "fuzzdata/results.csv");
    if (!doc || json_dump_file(doc, manifest, 0) != 0)
        abort();
    json_decref(doc);

    mf_spec spec = {.format = MF_FORMAT_REPORT, .path = manifest,
                    .display_name = "manifest.json"};
    int rc;
    mf_reader *r = mf_open(&spec, &rc, msg, sizeof msg);
    if (!r)
        abort(); /* the manifest.json is well formed */
    mf_entry e;
    uint64_t n = 0;
    while ((rc = mf_next(r, &e, msg, sizeof msg)) == 1)
        if (e.seq != n++ || e.key.ptr[e.key.len] || (!e.has_version && e.version_id.len))
            abort();
    mf_close(r);
    return 0;
}
