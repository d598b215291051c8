/*
 * dests.c — what the run learns of each destination before it starts, and where each
 * destination lives.
 *
 *   endpoint   a destination may live on another endpoint with other credentials: the AWS
 *              way, a named profile with its own endpoint_url (s3_endpoint_load(profile)),
 *              bound to the bucket with --destination-profile BUCKET=PROFILE. Versions
 *              going there are streamed (GET from the source, PUT / UploadPart there).
 *   versioning GetBucketVersioning: a missing or unversioned destination fails its tasks
 *              (DstBucketNotFound, DstBucketUnversioned) without sending a copy — CopyObject
 *              into an unversioned bucket would succeed and overwrite;
 *   lock       GetObjectLockConfiguration: a version with Object Lock settings fails
 *              DstBucketObjectLockConfigMissing on a destination without it.
 *   ownership  GetBucketOwnershipControls: with BucketOwnerEnforced (the default of new
 *              AWS buckets) ACLs are disabled, S3 refuses grants on a write there, and
 *              a version's ACL is not read for it. The same question is asked once of each
 *              source bucket (the feeder, worker.c): ACLs disabled there all read as the
 *              owner's FULL_CONTROL, so they are not read either. A server without the
 *              call (Ceph RGW 16 answers otherwise) counts as ACLs enabled.
 *   owner      GetBucketAcl's Owner.ID: with AccessControlTranslation the replica's
 *              x-amz-grant-full-control names it.
 * One request of each per destination and run, not per version.
 */
#include "replicate/replicate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int repl_dests_load_profiles(const char *const *bindings, size_t n_bindings,
                             s3_endpoint **eps, size_t max_eps, size_t *n_eps, char *err,
                             size_t err_len)
{
    for (size_t i = 0; i < n_bindings; i++) {
        const char *b = bindings[i], *eq = strchr(b, '=');
        if (!eq || eq == b || !eq[1]) {
            snprintf(err, err_len, "--destination-profile %s: expected BUCKET=PROFILE", b);
            return -REPL_E_INVALID_BINDING;
        }
        if (*n_eps >= max_eps) {
            snprintf(err, err_len, "--destination-profile: at most %zu profiles", max_eps - 1);
            return -REPL_E_INVALID_BINDING;
        }
        s3_endpoint *ep = calloc(1, sizeof *ep);
        char msg[1024];
        if (!ep)
            return -REPL_E_NOMEM;
        if (s3_endpoint_load(ep, eq + 1, msg, sizeof msg) != 0) {
            snprintf(err, err_len, "--destination-profile %s: %s", b, msg);
            free(ep);
            return -REPL_E_CONFIG;
        }
        eps[(*n_eps)++] = ep; /* binding i is endpoint 1 + i */
    }
    return 0;
}

void repl_dests_assign(repl_rules *rules, const char *const *bindings, size_t n_bindings)
{
    for (size_t i = 0; i < n_bindings; i++) {
        const char *b = bindings[i], *eq = strchr(b, '=');
        size_t blen = eq ? (size_t)(eq - b) : 0;
        for (size_t k = 0; k < rules->n_dests; k++)
            if (strlen(rules->dests[k].bucket) == blen &&
                memcmp(rules->dests[k].bucket, b, blen) == 0)
                rules->dests[k].ep_index = 1 + i;
    }
}

int repl_bucket_acls_disabled(const s3_endpoint *ep, const char *bucket)
{
    s3_request req = {.method = "GET", .bucket = bucket, .n_query = 1};
    s3_response resp;
    s3_outcome oc;
    char text[64] = "";
    req.query[0] = (s3_query_param){"ownershipControls", ""};
    int disabled = s3_perform(ep, &req, &resp, &oc) == 0 && oc.http_status == 200 &&
                   s3_xml_find_text((s3_slice){resp.body.ptr, resp.body.len},
                                    "ObjectOwnership", text, sizeof text) == 0 &&
                   strcmp(text, "BucketOwnerEnforced") == 0;
    s3_response_cleanup(&resp);
    return disabled;
}

void repl_dests_check(repl_rules *rules, const s3_endpoint *const *eps)
{
    for (size_t i = 0; i < rules->n_dests; i++) {
        repl_dest *d = &rules->dests[i];
        const s3_endpoint *ep = eps[d->ep_index];
        s3_request req = {.method = "GET", .bucket = d->bucket, .n_query = 1};
        s3_response resp;
        s3_outcome oc;
        char text[256] = "";
        req.query[0] = (s3_query_param){"versioning", ""};
        int rc = s3_perform(ep, &req, &resp, &oc);
        d->http_status = (int)oc.http_status;
        if (rc == 0 && oc.http_status == 200) {
            s3_xml_find_text((s3_slice){resp.body.ptr, resp.body.len}, "Status", text,
                             sizeof text);
            d->state = strcmp(text, "Enabled") == 0 ? REPL_DEST_OK : REPL_DEST_UNVERSIONED;
        } else if (oc.http_status == 404) {
            d->state = REPL_DEST_MISSING;
        } else if (oc.http_status == 403) {
            d->state = REPL_DEST_DENIED;
        } /* anything else: let each task find out */
        s3_response_cleanup(&resp);
        if (d->state != REPL_DEST_OK)
            continue;
        text[0] = '\0';
        req.query[0] = (s3_query_param){"object-lock", ""};
        if (s3_perform(ep, &req, &resp, &oc) == 0 &&
            s3_xml_find_text((s3_slice){resp.body.ptr, resp.body.len}, "ObjectLockEnabled",
                             text, sizeof text) == 0)
            d->object_lock = strcmp(text, "Enabled") == 0;
        s3_response_cleanup(&resp);
        d->acls_disabled = repl_bucket_acls_disabled(ep, d->bucket);
        req.query[0] = (s3_query_param){"acl", ""};
        text[0] = '\0';
        if (s3_perform(ep, &req, &resp, &oc) == 0 &&
            s3_xml_find_text((s3_slice){resp.body.ptr, resp.body.len}, "ID", text,
                             sizeof text) == 0 && text[0]) /* the first ID is the Owner's */
            snprintf(d->owner_grant, sizeof d->owner_grant, "id=\"%s\"", text);
        s3_response_cleanup(&resp);
    }
}
