/*
 * fuzz_xml.c — every XML answer batchrep parses, on the same input: s3/xml.c
 * (s3_xml_parse_error: <Error> bodies; s3_xml_find_text: UploadId, ETag, Status,
 * ObjectLockEnabled, ID; s3_xml_parse_list_versions: ListObjectVersions pages) and
 * s3/xmljson.c (s3_xml_to_json: GetBucketReplication, GetObjectTagging, GetObjectAcl) with
 * what replicate/ reads from it (repl_tags_from_xml, repl_facts_tags_from_xml,
 * repl_facts_from_acl). Checked: every string handed out is NUL-terminated inside its array,
 * and the callers' buffer sizes are the real ones (s3_outcome's code[64] / message[256]).
 */
#include "replicate/replicate.h"
#include "s3/s3.h"
#include "tests/fuzz/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void must_end(const char *s, size_t cap)
{
    if (!memchr(s, '\0', cap))
        abort();
}

static int on_version(const s3_version_entry *v, void *user)
{
    unsigned *n = user;
    must_end(v->key, sizeof v->key);
    must_end(v->version_id, sizeof v->version_id);
    must_end(v->last_modified, sizeof v->last_modified);
    must_end(v->etag, sizeof v->etag);
    must_end(v->storage_class, sizeof v->storage_class);
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s3_slice body = {(const char *)data, size};

    char code[64], msg[256], tiny[2];
    s3_xml_parse_error(body, code, sizeof code, msg, sizeof msg);
    must_end(code, sizeof code);
    must_end(msg, sizeof msg);
    s3_xml_parse_error(body, tiny, sizeof tiny, NULL, 0);
    must_end(tiny, sizeof tiny);

    static const char *const names[] = {"UploadId", "ETag", "Status", "ObjectLockEnabled",
                                        "ID"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char out[1100];
        s3_xml_find_text(body, names[i], out, sizeof out);
        must_end(out, sizeof out);
    }

    s3_list_versions_page page;
    unsigned n = 0;
    memset(&page, 0, sizeof page);
    if (s3_xml_parse_list_versions(body, 0, on_version, &n, &page) == 0) {
        must_end(page.next_key_marker, sizeof page.next_key_marker);
        must_end(page.next_version_id_marker, sizeof page.next_version_id_marker);
    }

    json_t *doc = s3_xml_to_json(body);
    if (doc) {
        char *text = json_dumps(doc, JSON_COMPACT);
        free(text);
        json_decref(doc);
    }
    repl_tag *tags;
    size_t n_tags;
    if (repl_tags_from_xml(body, &tags, &n_tags) == 0)
        repl_tags_free(tags, n_tags);
    repl_facts *f = repl_facts_new();
    if (!f)
        abort();
    repl_facts_tags_from_xml(f, body);
    repl_facts_from_acl(f, body);
    repl_facts_destroy(f);
    return 0;
}
