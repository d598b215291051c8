/*
 * fuzz_inventory.c — the data rows of an S3 Inventory report (S3InventoryReport_CSV_20161130,
 * manifest/reader.c + csv_reader.c), and what the engine makes of them. The input's first
 * line is the fileSchema ("Bucket, Key, VersionId, IsLatest, ..."), the rest is the data
 * file (plain, or gzip / zstd by magic). The target writes the data file and a manifest.json
 * naming it with its MD5, reads every entry, groups them into units as the feeder does
 * (engine/unit.c's builder, which also orders a unit from the rows' facts), and gives each
 * task's row to replicate/facts.c as the copy would (repl_facts_from_row, and the
 * ObjectAccessControlList column's base64 JSON to repl_facts_acl_from_row).
 */
#include "engine/engine.h"
#include "manifest/manifest.h"
#include "replicate/replicate.h"
#include "tests/fuzz/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void use_unit(eng_unit *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < eng_unit_n_tasks(u); i++) {
        const eng_task *t = eng_unit_task(u, i);
        repl_facts *f = repl_facts_new();
        if (!f)
            abort();
        repl_facts_from_row(f, &t->row, t->etag);
        if (t->facts_known & MF_FACT_ACL)
            repl_facts_acl_from_row(f, t->row.acl);
        repl_facts_destroy(f);
    }
    eng_unit_destroy(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static char manifest[4096], rows[4096];
    if (!ready) {
        fz_tmp_path("inv/fuzzdata/rows.csv", rows, sizeof rows);
        fz_tmp_path("inv/manifest.json", manifest, sizeof manifest);
        ready = 1;
    }
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return 0;
    json_t *schema = json_stringn((const char *)data, (size_t)(nl - data));
    if (!schema)
        return 0; /* not UTF-8: no manifest.json can say it */
    fz_write(rows, nl + 1, size - (size_t)(nl + 1 - data));
    char md5[33], msg[4096];
    if (s3_md5_file(rows, md5, msg, sizeof msg) != 0)
        abort();
    json_t *doc = json_pack("{s:s, s:s, s:o, s:[{s:s, s:s}]}", "sourceBucket", "src",
                            "fileFormat", "CSV", "fileSchema", schema, "files", "key",
                            "fuzzdata/rows.csv", "MD5checksum", md5);
    if (!doc || json_dump_file(doc, manifest, 0) != 0)
        abort();
    json_decref(doc);

    mf_spec spec = {.format = MF_FORMAT_INVENTORY, .path = manifest,
                    .display_name = "manifest.json"};
    int rc;
    mf_reader *r = mf_open(&spec, &rc, msg, sizeof msg);
    if (!r)
        return 0;
    eng_unit_builder b;
    eng_unit_builder_init(&b);
    _Atomic int stop = 0;
    mf_entry e;
    uint64_t n = 0;
    while ((rc = mf_next(r, &e, msg, sizeof msg)) == 1) {
        if (e.seq != n++ || e.key.ptr[e.key.len] || e.version_id.ptr[e.version_id.len])
            abort();
        if (eng_unit_builder_len(&b) > 0 && !eng_unit_builder_same_key(&b, &e))
            use_unit(eng_unit_builder_take(&b, NULL, &stop, NULL, NULL));
        if (eng_unit_builder_add(&b, &e) != 0)
            abort();
    }
    if (eng_unit_builder_len(&b) > 0)
        use_unit(eng_unit_builder_take(&b, NULL, &stop, NULL, NULL));
    eng_unit_builder_cleanup(&b);
    mf_close(r);
    return 0;
}
