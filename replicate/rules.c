/*
 * rules.c — the replication configuration and rule selection (../shared/aws-formats.md §7).
 *
 * Accepts the PutBucketReplication JSON the AWS CLI takes (bare, or wrapped in
 * {"ReplicationConfiguration": ...} as GetBucketReplication prints it), and the source
 * bucket's GetBucketReplication XML, converted to the same shape. Selection follows §7.2: a
 * version goes to every destination of every enabled rule whose filter matches (prefix and
 * tags ANDed); among rules with the same destination the highest Priority wins.
 *
 * Refused as PutBucketReplication refuses them (§7.1, §7.2), each naming the member: no
 * Role; a rule ID longer than 255 characters, or used twice; a Priority that is not an
 * integer 0..2147483647 (an int on the wire: a larger one was cut and changed which rule
 * won), or missing on a rule with a Filter; two rules with the same destination and the
 * same Priority whose filters can match one key (prefixes of which one begins the other,
 * and no tag key required with two values), whatever their Status: which one wins would
 * depend on their order. V1 rules (Prefix, no Priority) all have priority 0, so their
 * prefixes must not overlap either.
 */
#include "replicate/replicate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

static int fail(char *err, size_t err_len, const char *origin, const char *path,
                const char *what)
{
    snprintf(err, err_len, "%s: %s: %s", origin, path, what);
    return -REPL_E_INVALID_RULES;
}

static int parse_tag(json_t *t, repl_tag *out, const char *origin, const char *path,
                     char *err, size_t err_len)
{
    json_t *k = json_object_get(t, "Key"), *v = json_object_get(t, "Value");
    if (!json_is_string(k) || !json_is_string(v))
        return fail(err, err_len, origin, path, "a tag needs string Key and Value");
    out->key = dupstr(json_string_value(k));
    out->value = dupstr(json_string_value(v));
    return 0;
}

static int parse_filter(json_t *filter, repl_rule *r, const char *origin, const char *path,
                        char *err, size_t err_len)
{
    char sub[256];
    json_t *prefix = json_object_get(filter, "Prefix");
    json_t *tag = json_object_get(filter, "Tag");
    json_t *and = json_object_get(filter, "And");
    int n = (prefix != NULL) + (tag != NULL) + (and != NULL);
    if (n > 1)
        return fail(err, err_len, origin, path,
                    "a Filter holds exactly one of Prefix, Tag or And");
    if (prefix) {
        if (!json_is_string(prefix))
            return fail(err, err_len, origin, path, "Prefix must be a string");
        r->prefix = dupstr(json_string_value(prefix));
    } else if (tag) {
        r->tags = calloc(1, sizeof *r->tags);
        if (!r->tags)
            return -REPL_E_NOMEM;
        r->n_tags = 1;
        snprintf(sub, sizeof sub, "%s.Tag", path);
        if (parse_tag(tag, &r->tags[0], origin, sub, err, err_len))
            return -REPL_E_INVALID_RULES;
    } else if (and) {
        json_t *p = json_object_get(and, "Prefix"), *tags = json_object_get(and, "Tags");
        if (p && !json_is_string(p))
            return fail(err, err_len, origin, path, "And.Prefix must be a string");
        r->prefix = dupstr(p ? json_string_value(p) : "");
        if (tags && !json_is_array(tags))
            return fail(err, err_len, origin, path, "And.Tags must be a list");
        size_t nt = tags ? json_array_size(tags) : 0;
        r->tags = calloc(nt ? nt : 1, sizeof *r->tags);
        if (!r->tags)
            return -REPL_E_NOMEM;
        for (size_t i = 0; i < nt; i++) {
            snprintf(sub, sizeof sub, "%s.And.Tags[%zu]", path, i);
            if (parse_tag(json_array_get(tags, i), &r->tags[i], origin, sub, err, err_len))
                return -REPL_E_INVALID_RULES;
            r->n_tags++;
        }
    }
    if (!r->prefix)
        r->prefix = dupstr("");
    return 0;
}

static int dest_index(repl_rules *rs, const char *bucket, size_t *out)
{
    for (size_t i = 0; i < rs->n_dests; i++) {
        if (strcmp(rs->dests[i].bucket, bucket) == 0) {
            *out = i;
            return 0;
        }
    }
    repl_dest *nd = realloc(rs->dests, (rs->n_dests + 1) * sizeof *nd);
    if (!nd)
        return -REPL_E_NOMEM;
    rs->dests = nd;
    memset(&nd[rs->n_dests], 0, sizeof *nd);
    nd[rs->n_dests].bucket = dupstr(bucket);
    *out = rs->n_dests++;
    return 0;
}

/* Long on purpose (~130 lines): one member of a replication rule after another, in
   PutBucketReplication's order (§7.1), each refused with its own path in the message. */
static int parse_rule(repl_rules *rs, json_t *jr, size_t idx, const char *origin, char *err,
                      size_t err_len)
{
    char path[64], sub[128];
    repl_rule *r = &rs->rules[idx];
    snprintf(path, sizeof path, "Rules[%zu]", idx);
    if (!json_is_object(jr))
        return fail(err, err_len, origin, path, "must be an object");

    json_t *id = json_object_get(jr, "ID");
    snprintf(sub, sizeof sub, "%s.ID", path);
    if (id && !json_is_string(id))
        return fail(err, err_len, origin, sub, "must be a string");
    if (id && strlen(json_string_value(id)) > 255)
        return fail(err, err_len, origin, sub, "at most 255 characters (as on AWS)");
    r->id = dupstr(json_is_string(id) ? json_string_value(id) : "");

    json_t *status = json_object_get(jr, "Status");
    snprintf(sub, sizeof sub, "%s.Status", path);
    if (!json_is_string(status))
        return fail(err, err_len, origin, sub, "required: \"Enabled\" or \"Disabled\"");
    if (strcmp(json_string_value(status), "Enabled") == 0)
        r->enabled = 1;
    else if (strcmp(json_string_value(status), "Disabled") != 0)
        return fail(err, err_len, origin, sub, "must be \"Enabled\" or \"Disabled\"");

    json_t *prio = json_object_get(jr, "Priority");
    snprintf(sub, sizeof sub, "%s.Priority", path);
    if (prio && !json_is_integer(prio))
        return fail(err, err_len, origin, sub, "must be an integer 0..2147483647");
    if (prio && (json_integer_value(prio) < 0 || json_integer_value(prio) > 2147483647)) {
        char what[160];
        snprintf(what, sizeof what, "%lld is %s: it must be 0..2147483647 (an int, as on AWS)",
                 (long long)json_integer_value(prio),
                 json_integer_value(prio) < 0 ? "negative" : "too large");
        return fail(err, err_len, origin, sub, what);
    }
    if (!prio && json_object_get(jr, "Filter"))
        return fail(err, err_len, origin, sub,
                    "required when the rule has a Filter (as on AWS)");
    r->priority = prio ? (int)json_integer_value(prio) : 0;

    json_t *filter = json_object_get(jr, "Filter");
    json_t *v1prefix = json_object_get(jr, "Prefix");
    snprintf(sub, sizeof sub, "%s.Filter", path);
    if (filter && v1prefix)
        return fail(err, err_len, origin, path, "give Filter or Prefix, not both");
    if (filter) {
        if (!json_is_object(filter))
            return fail(err, err_len, origin, sub, "must be an object");
        int rc = parse_filter(filter, r, origin, sub, err, err_len);
        if (rc)
            return rc;
    } else {
        if (v1prefix && !json_is_string(v1prefix))
            return fail(err, err_len, origin, path, "Prefix must be a string");
        r->prefix = dupstr(v1prefix ? json_string_value(v1prefix) : "");
    }

    json_t *dmr = json_object_get(jr, "DeleteMarkerReplication");
    if (dmr) {
        json_t *s = json_object_get(dmr, "Status");
        snprintf(sub, sizeof sub, "%s.DeleteMarkerReplication.Status", path);
        if (!json_is_string(s))
            return fail(err, err_len, origin, sub, "required: \"Enabled\" or \"Disabled\"");
        if (strcmp(json_string_value(s), "Enabled") == 0)
            r->delete_marker_replication = 1;
        else if (strcmp(json_string_value(s), "Disabled") != 0)
            return fail(err, err_len, origin, sub, "must be \"Enabled\" or \"Disabled\"");
    } else if (filter) {
        snprintf(sub, sizeof sub, "%s.DeleteMarkerReplication", path);
        return fail(err, err_len, origin, sub, "required when the rule has a Filter");
    }
    if (r->delete_marker_replication && r->n_tags > 0) {
        snprintf(sub, sizeof sub, "%s.DeleteMarkerReplication.Status", path);
        return fail(err, err_len, origin, sub,
                    "must be \"Disabled\" for a rule with a tag filter (as on AWS)");
    }

    json_t *dest = json_object_get(jr, "Destination");
    snprintf(sub, sizeof sub, "%s.Destination.Bucket", path);
    json_t *db = dest ? json_object_get(dest, "Bucket") : NULL;
    if (!json_is_string(db))
        return fail(err, err_len, origin, sub, "required: a bucket ARN (arn:aws:s3:::name)");
    char bname[256], bkey[8];
    if (mf_parse_s3_arn(json_string_value(db), bname, sizeof bname, bkey, sizeof bkey) != 0 ||
        bkey[0])
        return fail(err, err_len, origin, sub,
                    "must be a bucket ARN (arn:aws:s3:::name), with " MF_ARN_BUCKET_RULE);
    r->dest_bucket = dupstr(bname);
    json_t *sc = json_object_get(dest, "StorageClass");
    if (sc) {
        snprintf(sub, sizeof sub, "%s.Destination.StorageClass", path);
        if (!json_is_string(sc))
            return fail(err, err_len, origin, sub, "must be a string");
        r->storage_class = dupstr(json_string_value(sc));
    }
    json_t *acct = json_object_get(dest, "Account");
    if (acct) {
        snprintf(sub, sizeof sub, "%s.Destination.Account", path);
        if (!json_is_string(acct))
            return fail(err, err_len, origin, sub, "must be a string (an account ID)");
        r->dest_account = dupstr(json_string_value(acct));
    }
    json_t *act = json_object_get(dest, "AccessControlTranslation");
    if (act) {
        json_t *owner = json_object_get(act, "Owner");
        snprintf(sub, sizeof sub, "%s.Destination.AccessControlTranslation.Owner", path);
        if (!json_is_string(owner) || strcmp(json_string_value(owner), "Destination") != 0)
            return fail(err, err_len, origin, sub, "required: \"Destination\"");
        if (!r->dest_account) {
            snprintf(sub, sizeof sub, "%s.Destination.Account", path);
            return fail(err, err_len, origin, sub,
                        "required with AccessControlTranslation (as on AWS)");
        }
        r->owner_override = 1;
    }
    json_t *enc = json_object_get(dest, "EncryptionConfiguration");
    if (enc) {
        json_t *kid = json_object_get(enc, "ReplicaKmsKeyID");
        snprintf(sub, sizeof sub, "%s.Destination.EncryptionConfiguration.ReplicaKmsKeyID",
                 path);
        if (kid && (!json_is_string(kid) || !json_string_value(kid)[0]))
            return fail(err, err_len, origin, sub, "must be a KMS key ID or ARN");
        if (kid)
            r->replica_kms_key_id = dupstr(json_string_value(kid));
    }
    json_t *ssc = json_object_get(jr, "SourceSelectionCriteria");
    json_t *kms = ssc ? json_object_get(ssc, "SseKmsEncryptedObjects") : NULL;
    if (kms) {
        json_t *s = json_object_get(kms, "Status");
        snprintf(sub, sizeof sub, "%s.SourceSelectionCriteria.SseKmsEncryptedObjects.Status",
                 path);
        if (!json_is_string(s))
            return fail(err, err_len, origin, sub, "required: \"Enabled\" or \"Disabled\"");
        if (strcmp(json_string_value(s), "Enabled") == 0)
            r->sse_kms = 1;
        else if (strcmp(json_string_value(s), "Disabled") != 0)
            return fail(err, err_len, origin, sub, "must be \"Enabled\" or \"Disabled\"");
    }
    if (r->sse_kms && !r->replica_kms_key_id) {
        snprintf(sub, sizeof sub, "%s.Destination.EncryptionConfiguration.ReplicaKmsKeyID",
                 path);
        return fail(err, err_len, origin, sub,
                    "required when SseKmsEncryptedObjects is Enabled (as on AWS)");
    }
    if (r->enabled && r->n_tags > 0)
        rs->needs_tags = 1;
    return dest_index(rs, r->dest_bucket, &r->dest_index);
}

/* 1 when one key can match both filters: one prefix begins the other, and no tag key is
   required with two different values (an object has one value per tag key). */
static int filters_overlap(const repl_rule *a, const repl_rule *b)
{
    size_t la = strlen(a->prefix), lb = strlen(b->prefix);
    if (strncmp(a->prefix, b->prefix, la < lb ? la : lb) != 0)
        return 0;
    for (size_t i = 0; i < a->n_tags; i++)
        for (size_t j = 0; j < b->n_tags; j++)
            if (strcmp(a->tags[i].key, b->tags[j].key) == 0 &&
                strcmp(a->tags[i].value, b->tags[j].value) != 0)
                return 0;
    return 1;
}

/* What PutBucketReplication checks across rules: IDs used once, and no two rules that can
   both choose one version for one destination with nothing to rank them (equal Priority).
   O(n^2) over at most 1,000 rules: 500,000 cheap comparisons, once per job. */
static int check_across(const repl_rules *rs, const char *origin, char *err, size_t err_len)
{
    char path[64];
    for (size_t j = 1; j < rs->n_rules; j++) {
        const repl_rule *b = &rs->rules[j];
        for (size_t i = 0; i < j; i++) {
            const repl_rule *a = &rs->rules[i];
            if (b->id[0] && strcmp(a->id, b->id) == 0) {
                snprintf(path, sizeof path, "Rules[%zu].ID", j);
                snprintf(err, err_len, "%s: %s: \"%.255s\" is already the ID of Rules[%zu]; "
                         "rule IDs must be unique", origin, path, b->id, i);
                return -REPL_E_INVALID_RULES;
            }
            if (a->dest_index == b->dest_index && a->priority == b->priority &&
                filters_overlap(a, b)) {
                snprintf(err, err_len,
                         "%s: Rules[%zu]: overlaps Rules[%zu] (IDs \"%.64s\" and \"%.64s\"): "
                         "both send to bucket %.64s with Priority %d and their filters can "
                         "match the same key (prefixes \"%.64s\" and \"%.64s\"); AWS refuses "
                         "such a configuration: give them different priorities",
                         origin, j, i, b->id, a->id, b->dest_bucket, b->priority, b->prefix,
                         a->prefix);
                return -REPL_E_INVALID_RULES;
            }
        }
    }
    return 0;
}

int repl_rules_from_json(repl_rules *out, json_t *root, const char *origin, char *err,
                         size_t err_len)
{
    memset(out, 0, sizeof *out);
    json_t *wrapped = json_object_get(root, "ReplicationConfiguration");
    if (wrapped)
        root = wrapped;
    json_t *role = json_object_get(root, "Role");
    if (!json_is_string(role) || !json_string_value(role)[0])
        return fail(err, err_len, origin, "Role",
                    "required: the ARN of the IAM role S3 assumes to replicate (as on AWS)");
    json_t *rules = json_object_get(root, "Rules");
    if (!json_is_array(rules) || json_array_size(rules) == 0)
        return fail(err, err_len, origin, "Rules", "required: a list of at least one rule");
    if (json_array_size(rules) > 1000)
        return fail(err, err_len, origin, "Rules", "at most 1,000 rules");
    out->rules = calloc(json_array_size(rules), sizeof *out->rules);
    if (!out->rules)
        return -REPL_E_NOMEM;
    for (size_t i = 0; i < json_array_size(rules); i++) {
        out->n_rules = i + 1;
        int rc = parse_rule(out, json_array_get(rules, i), i, origin, err, err_len);
        if (rc) {
            repl_rules_cleanup(out);
            return rc;
        }
    }
    int rc = check_across(out, origin, err, err_len);
    if (rc)
        repl_rules_cleanup(out);
    return rc;
}

/* GetBucketReplication answers XML: <ReplicationConfiguration><Role/><Rule>...</Rule>*.
   s3_xml_to_json gives {"Role": .., "Rule": obj | [obj..]}; reshape to the JSON form. */
static json_t *as_list(json_t *v)
{
    if (!v)
        return json_array();
    if (json_is_array(v))
        return json_incref(v);
    json_t *a = json_array();
    json_array_append(a, v);
    return a;
}

/* An XML number as a JSON integer; text that is not one whole decimal number is left a
   string, so the JSON check names it instead of reading a prefix of it. */
static void fix_int(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_string(v))
        return;
    const char *text = json_string_value(v);
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (*text && !*end && errno == 0)
        json_object_set_new(obj, name, json_integer((json_int_t)n));
}

int repl_rules_load_bucket(repl_rules *out, const s3_endpoint *ep, const char *bucket,
                           char **out_json, char *err, size_t err_len)
{
    s3_request req = {.method = "GET", .bucket = bucket, .n_query = 1};
    req.query[0] = (s3_query_param){"replication", ""};
    s3_response resp;
    s3_outcome oc;
    char origin[400];
    snprintf(origin, sizeof origin, "GetBucketReplication s3://%s", bucket);
    int rc = s3_perform(ep, &req, &resp, &oc);
    if (rc || oc.http_status != 200) {
        snprintf(err, err_len,
                 "%s: HTTP %ld %s %s (give the configuration with --replication-config FILE)",
                 origin, oc.http_status, oc.code, oc.message);
        s3_response_cleanup(&resp);
        return -REPL_E_INVALID_RULES;
    }
    json_t *root = s3_xml_to_json((s3_slice){resp.body.ptr, resp.body.len});
    s3_response_cleanup(&resp);
    if (!root) {
        snprintf(err, err_len, "%s: the answer is not valid XML", origin);
        return -REPL_E_INVALID_RULES;
    }
    json_t *rules = as_list(json_object_get(root, "Rule"));
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
        fix_int(r, "Priority");
        json_t *and = json_object_get(json_object_get(r, "Filter"), "And");
        if (and) {
            json_object_set_new(and, "Tags", as_list(json_object_get(and, "Tag")));
            json_object_del(and, "Tag");
        }
    }
    json_object_set_new(root, "Rules", rules);
    json_object_del(root, "Rule");
    rc = repl_rules_from_json(out, root, origin, err, err_len);
    if (rc == 0 && out_json)
        *out_json = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return rc;
}

void repl_rules_cleanup(repl_rules *rs)
{
    for (size_t i = 0; i < rs->n_rules; i++) {
        repl_rule *r = &rs->rules[i];
        free(r->id);
        free(r->prefix);
        for (size_t t = 0; t < r->n_tags; t++) {
            free(r->tags[t].key);
            free(r->tags[t].value);
        }
        free(r->tags);
        free(r->dest_bucket);
        free(r->storage_class);
        free(r->dest_account);
        free(r->replica_kms_key_id);
    }
    free(rs->rules);
    for (size_t i = 0; i < rs->n_dests; i++)
        free(rs->dests[i].bucket);
    free(rs->dests);
    memset(rs, 0, sizeof *rs);
}

static int has_tag(const repl_tag *tags, size_t n, const repl_tag *want)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tags[i].key, want->key) == 0 && strcmp(tags[i].value, want->value) == 0)
            return 1;
    return 0;
}

static int rule_matches(const repl_rule *r, s3_slice key, const repl_tag *tags, size_t n_tags,
                        int is_delete_marker)
{
    if (!r->enabled)
        return 0;
    size_t plen = strlen(r->prefix);
    if (plen > key.len || memcmp(key.ptr, r->prefix, plen) != 0)
        return 0;
    if (is_delete_marker)
        return r->n_tags == 0; /* delete markers carry no tags (§6.2) */
    for (size_t i = 0; i < r->n_tags; i++)
        if (!has_tag(tags, n_tags, &r->tags[i]))
            return 0;
    return 1;
}

size_t repl_rules_select(const repl_rules *rs, s3_slice key, const repl_tag *tags,
                         size_t n_tags, int is_delete_marker, int *out_rule)
{
    for (size_t d = 0; d < rs->n_dests; d++)
        out_rule[d] = -1;
    for (size_t i = 0; i < rs->n_rules; i++) {
        const repl_rule *r = &rs->rules[i];
        if (!rule_matches(r, key, tags, n_tags, is_delete_marker))
            continue;
        int cur = out_rule[r->dest_index];
        if (cur < 0 || rs->rules[cur].priority < r->priority)
            out_rule[r->dest_index] = (int)i;
    }
    size_t n = 0;
    for (size_t d = 0; d < rs->n_dests; d++) {
        if (out_rule[d] < 0)
            continue;
        if (is_delete_marker && !rs->rules[out_rule[d]].delete_marker_replication)
            out_rule[d] = -1; /* the winning rule does not replicate delete markers */
        else
            n++;
    }
    return n;
}

#define S3_ERR_NAME_PREFIX "REPL_E_"
S3_ERROR_FUNCS(repl, REPL_ERRNO_MAP, "unknown replication error")

/* ---- small facts ------------------------------------------------------------------------- */

int repl_tags_from_xml(s3_slice xml, repl_tag **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    json_t *doc = s3_xml_to_json(xml);
    if (!doc)
        return -1;
    json_t *set = json_object_get(doc, "TagSet");
    json_t *tag = json_is_object(set) ? json_object_get(set, "Tag") : NULL;
    size_t n = !tag ? 0 : json_is_array(tag) ? json_array_size(tag) : 1;
    repl_tag *tags = calloc(n ? n : 1, sizeof *tags);
    int rc = tags ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *e = json_is_array(tag) ? json_array_get(tag, i) : tag;
        const char *k = s3_json_str(e, "Key"), *v = s3_json_str(e, "Value");
        tags[i].key = strdup(k ? k : "");
        tags[i].value = strdup(v ? v : "");
        if (!tags[i].key || !tags[i].value)
            rc = -1;
    }
    json_decref(doc);
    if (rc) {
        repl_tags_free(tags, n);
        return -1;
    }
    *out = tags;
    *n_out = n;
    return 0;
}

void repl_tags_free(repl_tag *tags, size_t n)
{
    for (size_t i = 0; tags && i < n; i++) {
        free(tags[i].key);
        free(tags[i].value);
    }
    free(tags);
}

int repl_storage_class_archived(const char *storage_class)
{
    return strcmp(storage_class, "GLACIER") == 0 || strcmp(storage_class, "DEEP_ARCHIVE") == 0;
}

int repl_version_age_cmp(const repl_version_age *a, const repl_version_age *b)
{
    if (a->is_latest != b->is_latest)
        return a->is_latest - b->is_latest; /* the current version goes last */
    if (a->last_modified_ms != b->last_modified_ms)
        return a->last_modified_ms < b->last_modified_ms ? -1 : 1;
    return (a->list_pos < b->list_pos) - (a->list_pos > b->list_pos); /* later = older */
}

int repl_etag_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= 2 && a[0] == '"' && a[la - 1] == '"') {
        a++;
        la -= 2;
    }
    if (lb >= 2 && b[0] == '"' && b[lb - 1] == '"') {
        b++;
        lb -= 2;
    }
    return la == lb && la > 0 && memcmp(a, b, la) == 0;
}

static int same_version(const repl_version_mark *a, const repl_version_mark *b)
{
    return a->is_delete_marker == b->is_delete_marker &&
           (a->is_delete_marker || repl_etag_eq(a->etag, b->etag));
}

size_t repl_replicated_prefix(const repl_version_mark *dest, size_t n_dest,
                              const repl_version_mark *sent, size_t n_sent)
{
    for (size_t k = n_sent < n_dest ? n_sent : n_dest; k > 0; k--) {
        size_t j = 0;
        while (j < k && same_version(&dest[n_dest - k + j], &sent[j]))
            j++;
        if (j == k)
            return k;
    }
    return 0;
}
