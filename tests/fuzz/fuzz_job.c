/*
 * fuzz_job.c — the CreateJob document (jobs/job.c jobs_job_parse, and jobs/generator.c for a
 * ManifestGenerator): the JSON that `aws s3control create-job --cli-input-json` takes. The
 * input is the document's bytes; an accepted job is then described (DescribeJob and
 * ListJobs's descriptor, as `describe-job` and `list-jobs` print them).
 */
#include "jobs/jobs.h"
#include "tests/fuzz/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!doc)
        return 0;
    jobs_job job;
    char err[4096] = "";
    memset(&job, 0, sizeof job);
    int rc = jobs_job_parse(&job, doc, "job.json", err, sizeof err);
    if (rc == 0) {
        json_t *views[2] = {jobs_job_describe(&job), jobs_job_list_descriptor(&job)};
        for (int i = 0; i < 2; i++) {
            char *text = views[i] ? json_dumps(views[i], JSON_COMPACT) : NULL;
            if (!text)
                abort(); /* a parsed job can always be described */
            free(text);
            json_decref(views[i]);
        }
    } else if (strncmp(err, "job.json", 8) != 0) {
        abort(); /* a refusal names the document */
    }
    jobs_job_cleanup(&job);
    json_decref(doc);
    return 0;
}
