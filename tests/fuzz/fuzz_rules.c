/*
 * fuzz_rules.c — the replication configuration (replicate/rules.c repl_rules_from_json): the
 * JSON that `aws s3api put-bucket-replication` takes, bare or wrapped in
 * {"ReplicationConfiguration": ...}. The input is the document's bytes; an accepted
 * configuration then chooses rules for a few versions (keys with and without the usual
 * prefixes, tagged and not, delete markers), as the engine asks for every version.
 */
#include "replicate/replicate.h"
#include "tests/fuzz/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!doc)
        return 0;
    repl_rules rules;
    char err[4096] = "";
    memset(&rules, 0, sizeof rules);
    int rc = repl_rules_from_json(&rules, doc, "rules.json", err, sizeof err);
    if (rc == 0) {
        int *out = calloc(rules.n_dests + 1, sizeof *out);
        if (!out)
            abort();
        static const char *const keys[] = {"", "a", "logs/2024/x", "photos/cat.jpg", "tmp/"};
        repl_tag tags[2] = {{"project", "blue"}, {"env", "prod"}};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            for (int dm = 0; dm <= 1; dm++)
                for (size_t nt = 0; nt <= 2; nt++) {
                    size_t n = repl_rules_select(&rules, s3_slice_cstr(keys[k]), tags, nt, dm,
                                                 out);
                    if (n > rules.n_dests)
                        abort();
                    for (size_t d = 0; d < rules.n_dests; d++)
                        if (out[d] < -1 || out[d] >= (int)rules.n_rules)
                            abort(); /* a rule index or -1 */
                    repl_verdict_version(&rules, s3_slice_cstr(keys[k]), tags, nt, dm,
                                         dm ? NULL : "STANDARD", out);
                }
        free(out);
        repl_rules_cleanup(&rules);
    } else if (rc == -REPL_E_INVALID_RULES && strncmp(err, "rules.json", 10) != 0) {
        abort(); /* a refusal names the file */
    }
    json_decref(doc);
    return 0;
}
