/*
 * fuzz_manifest_json.c — the manifest.json of an S3 Inventory report and of a completion
 * report read as a manifest (manifest/reader.c: load_inventory, load_report, fileSchema,
 * files[] / Results[], local data-file lookup). The input is the manifest.json's bytes,
 * opened as both formats from local files. Data files are read only when every key it names
 * is under "fuzzdata/" (checked here with jansson): the local lookup climbs to the parent
 * folders of the manifest, up to "/", and a fuzzed key such as "dev/stdin" must not make the
 * target read the machine's files. Two data files are there: fuzzdata/inv.csv (Inventory
 * rows) and fuzzdata/rep.csv (report rows).
 */
#include "manifest/manifest.h"
#include "tests/fuzz/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char INV_ROWS[] =
    "\"src\",\"a%20b+c\",\"v1\",\"true\",\"false\",\"3\",\"2024-04-12T06:45:57.000Z\","
    "\"9bb58f26192e4ba00f01e2e7b136bbd8\",\"STANDARD\"\n"
    "\"src\",\"dm\",\"v2\",\"true\",\"true\",\"\",\"2024-04-12T06:45:58.000Z\",\"\",\"\"\n";
static const char REP_ROWS[] =
    "src,a%20b,v1,failed,500,InternalError,We encountered an internal error\n"
    "src,k2,,failed,404,SrcKeyNotFound,Source key not found\n";

/* 1 when every files[].key / Results[].Key of doc is a string under fuzzdata/ (or absent). */
static int keys_inside(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!doc)
        return 1; /* the reader refuses it before any lookup */
    int ok = 1;
    static const char *const lists[][2] = {{"files", "key"}, {"Results", "Key"}};
    for (size_t l = 0; l < 2 && ok; l++) {
        json_t *a = json_object_get(doc, lists[l][0]);
        for (size_t i = 0; json_is_array(a) && i < json_array_size(a) && ok; i++) {
            json_t *k = json_object_get(json_array_get(a, i), lists[l][1]);
            if (k && (!json_is_string(k) || strncmp(json_string_value(k), "fuzzdata/", 9) != 0))
                ok = 0;
        }
    }
    json_decref(doc);
    return ok;
}

static void read_as(const char *path, mf_format format, int read_rows)
{
    mf_spec spec = {.format = format, .path = path, .display_name = "manifest.json"};
    char msg[4096];
    int rc;
    mf_reader *r = mf_open(&spec, &rc, msg, sizeof msg);
    if (!r) {
        if (rc >= 0 || strncmp(msg, "manifest.json", 13) != 0)
            abort(); /* a refusal has a code and names the file */
        return;
    }
    mf_entry e;
    while (read_rows && (rc = mf_next(r, &e, msg, sizeof msg)) == 1)
        if (e.key.ptr[e.key.len] || e.bucket.len == 0)
            abort();
    mf_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[4096];
    if (!path[0]) {
        char p[4096];
        fz_tmp_path("mj/fuzzdata/inv.csv", p, sizeof p);
        fz_write(p, INV_ROWS, sizeof INV_ROWS - 1);
        fz_tmp_path("mj/fuzzdata/rep.csv", p, sizeof p);
        fz_write(p, REP_ROWS, sizeof REP_ROWS - 1);
        fz_tmp_path("mj/manifest.json", path, sizeof path);
    }
    fz_write(path, data, size);
    int rows = keys_inside(data, size);
    read_as(path, MF_FORMAT_INVENTORY, rows);
    read_as(path, MF_FORMAT_REPORT, rows);
    return 0;
}
