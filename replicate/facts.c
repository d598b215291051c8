/*
 * facts.c — what a source version carries beyond its bytes, as the strategies replicate it
 * (../shared/aws-formats.md §6.2, §8.1):
 *
 *   HeadObject?versionId=   content headers a copy keeps (Content-Type, Content-Encoding,
 *                           Content-Disposition, Content-Language, Cache-Control, Expires),
 *                           user metadata (x-amz-meta-*), ETag, size, Last-Modified,
 *                           encryption (x-amz-server-side-encryption, its KMS key, bucket key),
 *                           Object Lock mode, retain-until date and legal hold (read from
 *                           HEAD: moto 5.2.1 has no GetObjectRetention), x-amz-tagging-count;
 *   GetObjectAcl?versionId= the grants, turned into x-amz-grant-* header values
 *                           (`id="…"`, `uri="…"`, `emailAddress="…"`, comma-separated): a
 *                           PutObjectAcl XML body is ignored by moto, headers work everywhere;
 *   GetObjectTagging        the tags, as the x-amz-tagging query string, for writes that
 *                           cannot use the COPY tagging directive (multipart, streamed).
 * An Inventory row with the columns Size, ETag, LastModifiedDate, StorageClass,
 * EncryptionStatus and the three ObjectLock ones tells what a CopyObject needs: it stands in
 * for HeadObject (not for the multipart and streamed writes, which send the content headers
 * and metadata themselves); its ObjectAccessControlList stands in for GetObjectAcl.
 *
 * Facts are read once per version and kept on its task, so a version that goes to several
 * destinations is read once.
 */
#include "replicate/replicate.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FACTS_HDRS_MAX_BYTES (16u << 10) /* S3 allows 2 KB of user metadata */
#define FACTS_GRANTS_MAX_BYTES (64u << 10) /* 100 grants of ~200 bytes at most */
#define FACTS_TAGGING_MAX_BYTES (8u << 10) /* 10 tags of 128 + 256 chars, %-encoded */

repl_facts *repl_facts_new(void)
{
    repl_facts *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    s3_buf_init(&f->hdrs, FACTS_HDRS_MAX_BYTES);
    for (int i = 0; i < 4; i++)
        s3_buf_init(&f->grants[i], FACTS_GRANTS_MAX_BYTES);
    s3_buf_init(&f->tagging, FACTS_TAGGING_MAX_BYTES);
    f->size = -1;
    return f;
}

void repl_facts_destroy(repl_facts *f)
{
    if (!f)
        return;
    s3_buf_cleanup(&f->hdrs);
    for (int i = 0; i < 4; i++)
        s3_buf_cleanup(&f->grants[i]);
    s3_buf_cleanup(&f->tagging);
    free(f);
}

static const char *const kept_headers[] = {
    "content-type", "content-encoding", "content-disposition", "content-language",
    "cache-control", "expires", NULL,
};

static int kept(const char *name)
{
    if (strncmp(name, "x-amz-meta-", 11) == 0)
        return 1;
    for (const char *const *k = kept_headers; *k; k++)
        if (strcmp(name, *k) == 0)
            return 1;
    return 0;
}

static void copy_field(char *dst, size_t cap, const s3_response *r, const char *name)
{
    const char *v = s3_response_header(r, name);
    snprintf(dst, cap, "%s", v ? v : "");
}

void repl_facts_from_head(repl_facts *f, const s3_response *r)
{
    static const char nul = '\0';
    const char *name, *value;
    s3_buf_reset(&f->hdrs);
    f->n_hdrs = 0;
    for (size_t pos = 0; (pos = s3_response_header_next(r, pos, &name, &value)) != 0;) {
        if (!kept(name))
            continue;
        if (s3_buf_append_str(&f->hdrs, name) || s3_buf_append(&f->hdrs, &nul, 1) ||
            s3_buf_append_str(&f->hdrs, value) || s3_buf_append(&f->hdrs, &nul, 1))
            break; /* over 16 KiB of metadata: S3 itself refuses more than 2 KB */
        f->n_hdrs++;
    }
    snprintf(f->etag, sizeof f->etag, "%s", r->etag);
    f->size = r->content_length;
    if (s3_parse_time_ms(r->last_modified, &f->last_modified_ms) != 0)
        f->last_modified_ms = 0;
    copy_field(f->sse, sizeof f->sse, r, "x-amz-server-side-encryption");
    copy_field(f->sse_kms_key_id, sizeof f->sse_kms_key_id, r,
               "x-amz-server-side-encryption-aws-kms-key-id");
    copy_field(f->bucket_key, sizeof f->bucket_key, r,
               "x-amz-server-side-encryption-bucket-key-enabled");
    copy_field(f->lock_mode, sizeof f->lock_mode, r, "x-amz-object-lock-mode");
    copy_field(f->lock_until, sizeof f->lock_until, r, "x-amz-object-lock-retain-until-date");
    copy_field(f->legal_hold, sizeof f->legal_hold, r, "x-amz-object-lock-legal-hold");
    const char *tc = s3_response_header(r, "x-amz-tagging-count");
    f->tag_count = tc ? (int)strtol(tc, NULL, 10) : 0;
    f->have_head = 1;
}

int repl_sse_is_kms(const char *sse)
{
    return strncmp(sse, "aws:kms", 7) == 0;
}

int repl_facts_locked(const repl_facts *f)
{
    return f->lock_mode[0] || strcmp(f->legal_hold, "ON") == 0;
}

/* ---- ACL ------------------------------------------------------------------------------ */

static int perm_index(const char *p)
{
    if (strcmp(p, "READ") == 0)
        return 0;
    if (strcmp(p, "READ_ACP") == 0)
        return 1;
    if (strcmp(p, "WRITE_ACP") == 0)
        return 2;
    if (strcmp(p, "FULL_CONTROL") == 0)
        return 3;
    return -1; /* WRITE means nothing on an object */
}

/* Appends `kind value"` to the header value of permission pi ("id=\"…\", uri=\"…\""). */
static int add_grant(repl_facts *f, int pi, const char *kind, const char *val)
{
    s3_buf *b = &f->grants[pi];
    return (b->len && s3_buf_append_str(b, ", ")) || s3_buf_append_str(b, kind) ||
                   s3_buf_append_str(b, val) || s3_buf_append_str(b, "\"")
               ? -1
               : 0;
}

int repl_facts_from_acl(repl_facts *f, s3_slice xml)
{
    json_t *doc = s3_xml_to_json(xml);
    if (!doc)
        return -1;
    const char *owner = s3_json_str(json_object_get(doc, "Owner"), "ID");
    json_t *list = json_object_get(doc, "AccessControlList");
    json_t *g = json_is_object(list) ? json_object_get(list, "Grant") : NULL;
    size_t n = !g ? 0 : json_is_array(g) ? json_array_size(g) : 1;
    size_t n_owner_full = 0, n_other = 0;
    int rc = 0;
    for (int i = 0; i < 4; i++)
        s3_buf_reset(&f->grants[i]);
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *e = json_is_array(g) ? json_array_get(g, i) : g;
        const char *perm = s3_json_str(e, "Permission");
        json_t *who = json_object_get(e, "Grantee");
        int pi = perm ? perm_index(perm) : -1;
        if (pi < 0 || !json_is_object(who))
            continue;
        const char *id = s3_json_str(who, "ID"), *uri = s3_json_str(who, "URI");
        const char *mail = s3_json_str(who, "EmailAddress");
        const char *kind = id ? "id=\"" : uri ? "uri=\"" : mail ? "emailAddress=\"" : NULL;
        const char *val = id ? id : uri ? uri : mail;
        if (!kind)
            continue;
        if (pi == 3 && id && owner && strcmp(id, owner) == 0)
            n_owner_full++;
        else
            n_other++;
        rc = add_grant(f, pi, kind, val);
    }
    json_decref(doc);
    /* the default ACL of a new object: its owner's FULL_CONTROL and nothing else */
    f->acl_default = n_owner_full == 1 && n_other == 0;
    f->have_acl = rc == 0;
    return rc;
}

/* ---- a manifest row instead of HeadObject and GetObjectAcl ------------------------------ */

int repl_facts_from_row(repl_facts *f, const mf_facts *r, const char *etag)
{
    const unsigned need = MF_FACT_DELETE_MARKER | MF_FACT_SIZE | MF_FACT_ETAG |
                          MF_FACT_LAST_MODIFIED | MF_FACT_STORAGE_CLASS | MF_FACT_ENCRYPTION |
                          MF_FACT_LOCK;
    const char *sse = strcmp(r->encryption, "NOT-SSE") == 0  ? ""
                      : strcmp(r->encryption, "SSE-S3") == 0  ? "AES256"
                      : strcmp(r->encryption, "SSE-KMS") == 0 ? "aws:kms"
                                                              : NULL;
    if ((r->known & need) != need || r->is_delete_marker || !sse)
        return 0; /* SSE-C and DSSE-KMS need what only HeadObject tells */
    f->size = r->size;
    snprintf(f->etag, sizeof f->etag, "\"%s\"", etag);
    f->last_modified_ms = r->last_modified_ms;
    snprintf(f->sse, sizeof f->sse, "%s", sse);
    snprintf(f->bucket_key, sizeof f->bucket_key, "%s", r->bucket_key ? "true" : "");
    snprintf(f->lock_mode, sizeof f->lock_mode, "%s", r->lock_mode);
    snprintf(f->lock_until, sizeof f->lock_until, "%s", r->lock_until);
    snprintf(f->legal_hold, sizeof f->legal_hold, "%s", r->legal_hold);
    f->have_head = 1;
    return 1;
}

/* ObjectAccessControlList, e.g. {"version":"2022-11-10","status":"AVAILABLE","grants":[
   {"canonicalId":"…","permission":"FULL_CONTROL","type":"CanonicalUser"},
   {"uri":"http://acs.amazonaws.com/groups/global/AllUsers","permission":"READ",
   "type":"Group"}]} (aws-formats.md §2.3). Without the owner's ID, one FULL_CONTROL grant
   to a canonical user and nothing else counts as the default ACL. */
int repl_facts_acl_from_row(repl_facts *f, s3_slice b64)
{
    if (b64.len == 0 || b64.len % 4 || b64.len > FACTS_GRANTS_MAX_BYTES)
        return -1;
    unsigned char *raw = malloc(b64.len / 4 * 3 + 1);
    if (!raw)
        return -1;
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64.ptr, (int)b64.len);
    json_t *doc = NULL;
    if (n >= 0) {
        n -= (b64.ptr[b64.len - 1] == '=') + (b64.ptr[b64.len - 2] == '='); /* padding */
        doc = json_loadb((const char *)raw, (size_t)n, 0, NULL);
    }
    free(raw);
    json_t *grants = json_object_get(doc, "grants");
    const char *status = s3_json_str(doc, "status");
    if (!doc || !status || strcmp(status, "AVAILABLE") != 0 || !json_is_array(grants)) {
        json_decref(doc);
        return -1;
    }
    for (int i = 0; i < 4; i++)
        s3_buf_reset(&f->grants[i]);
    size_t n_full_user = 0, n_other = 0, i;
    json_t *g;
    int rc = 0;
    json_array_foreach(grants, i, g) {
        const char *perm = s3_json_str(g, "permission"), *id = s3_json_str(g, "canonicalId");
        const char *uri = s3_json_str(g, "uri");
        int pi = perm ? perm_index(perm) : -1;
        if (pi < 0 || (!id && !uri))
            continue;
        if (pi == 3 && id)
            n_full_user++;
        else
            n_other++;
        if (rc == 0)
            rc = add_grant(f, pi, id ? "id=\"" : "uri=\"", id ? id : uri);
    }
    json_decref(doc);
    if (rc)
        return -1;
    f->acl_default = n_full_user == 1 && n_other == 0;
    f->have_acl = 1;
    return 0;
}

/* ---- tags ----------------------------------------------------------------------------- */

int repl_facts_set_tags(repl_facts *f, const repl_tag *tags, size_t n)
{
    s3_buf_reset(&f->tagging);
    for (size_t i = 0; i < n; i++) {
        if ((i && s3_buf_append(&f->tagging, "&", 1)) ||
            s3_uri_encode(&f->tagging, s3_slice_cstr(tags[i].key), 0) ||
            s3_buf_append(&f->tagging, "=", 1) ||
            s3_uri_encode(&f->tagging, s3_slice_cstr(tags[i].value), 0))
            return -1;
    }
    f->have_tags = 1;
    return 0;
}

int repl_facts_tags_from_xml(repl_facts *f, s3_slice xml)
{
    repl_tag *tags;
    size_t n;
    if (repl_tags_from_xml(xml, &tags, &n) != 0)
        return -1;
    int rc = repl_facts_set_tags(f, tags, n);
    repl_tags_free(tags, n);
    return rc;
}
