/*
 * test_replicate.c — replication semantics, table-driven (../shared/aws-formats.md §6, §7):
 * rule selection (priority, Prefix / Tag / And filters, tags never on delete markers,
 * disabled rules, several destinations), the eligibility verdict for every failure reason,
 * the S3 error -> failure reason table, the replay order of versions, the resume's suffix
 * match, and the TagSet parser. Rules come from tests/fixtures/replicate/rules.json.
 * Configurations PutBucketReplication refuses are the files of tests/fixtures/replicate/invalid/
 * (each refused, naming the member); those of valid/ are near misses that must be accepted.
 */
#include "replicate/replicate.h"
#include "tests/unit/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_rules(const char *fixture, repl_rules *out)
{
    size_t len;
    char *text = tap_read_fixture(fixture, &len);
    json_t *doc = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    char err[512] = "";
    memset(out, 0, sizeof *out);
    int rc = doc ? repl_rules_from_json(out, doc, fixture, err, sizeof err) : -1;
    json_decref(doc);
    if (rc != 0)
        tap_diag("%s: %s", fixture, err);
    return rc;
}

/* The chosen rule's ID per destination, "a=ID b=- c=ID" (destinations in rules.json order). */
static void describe(const repl_rules *r, const int *out_rule, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t d = 0; d < r->n_dests && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%c=%s", d ? " " : "", (char)('a' + d),
                              out_rule[d] < 0 ? "-" : r->rules[out_rule[d]].id);
}

static void test_select(const repl_rules *r)
{
    static const struct {
        const char *key, *tags; /* "k=v,k2=v2" */
        int dm;
        const char *want;
        const char *why;
    } cases[] = {
        {"logs/x", "", 0, "a=logs-low b=- c=all-c", "a prefix rule; the catch-all elsewhere"},
        {"logs/app/1", "", 0, "a=logs-high b=- c=all-c",
         "two rules for one destination: the higher Priority wins (§7.2)"},
        {"logs/app/1", "", 1, "a=- b=- c=all-c",
         "a delete marker: the winning rule does not replicate delete markers"},
        {"logs/x", "", 1, "a=logs-low b=- c=all-c", "a delete marker under a rule that does"},
        {"other", "team=red", 0, "a=- b=tagged c=all-c", "a Tag filter"},
        {"other", "team=red", 1, "a=- b=- c=all-c", "tags never match a delete marker"},
        {"data/1", "k=v,x=y", 0, "a=- b=and c=all-c", "And: prefix and every tag"},
        {"data/1", "k=v,x=y,team=red", 0, "a=- b=and c=all-c",
         "And (Priority 4) over Tag (Priority 3)"},
        {"data/1", "k=v", 0, "a=- b=- c=all-c", "And with a tag missing does not match"},
        {"nodata/1", "k=v,x=y", 0, "a=- b=- c=all-c", "And with the prefix missing"},
        {"zzz", "", 0, "a=- b=- c=all-c", "a Disabled rule is never chosen"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        repl_tag tags[4];
        size_t n = 0;
        char tbuf[128];
        snprintf(tbuf, sizeof tbuf, "%s", cases[i].tags);
        for (char *p = tbuf; *p && n < 4;) {
            char *comma = strchr(p, ','), *eq = strchr(p, '=');
            if (comma)
                *comma = '\0';
            *eq = '\0';
            tags[n].key = p;
            tags[n].value = eq + 1;
            n++;
            p = comma ? comma + 1 : p + strlen(p);
        }
        int out[8];
        size_t chosen = repl_rules_select(r, s3_slice_cstr(cases[i].key), tags, n, cases[i].dm,
                                          out);
        char got[256];
        describe(r, out, got, sizeof got);
        size_t want_n = 0;
        for (const char *p = cases[i].want; (p = strchr(p, '=')); p++)
            want_n += p[1] != '-';
        tap_ok(strcmp(got, cases[i].want) == 0 && chosen == want_n,
               "select %s%s [%s]: %s (got %s, %zu chosen)", cases[i].dm ? "delete marker " : "",
               cases[i].key, cases[i].tags, cases[i].why, got, chosen);
    }
}

static void test_verdicts(const repl_rules *r)
{
    int out[8];
    static const struct {
        const char *key, *storage_class;
        repl_failure_id want;
    } versions[] = {
        {"logs/x", "STANDARD", REPL_OK},
        {"logs/x", "GLACIER", REPL_NOT_ELIGIBLE_ARCHIVED},
        {"logs/x", "DEEP_ARCHIVE", REPL_NOT_ELIGIBLE_ARCHIVED},
        {"logs/x", "GLACIER_IR", REPL_OK},
        {"logs/x", NULL, REPL_OK},
    };
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        repl_failure_id got = repl_verdict_version(r, s3_slice_cstr(versions[i].key), NULL, 0,
                                                   0, versions[i].storage_class, out);
        tap_ok(got == versions[i].want, "version verdict, class %s: %s",
               versions[i].storage_class ? versions[i].storage_class : "(none)",
               got == REPL_OK ? "eligible" : repl_failure_of(got)->code);
    }
    repl_rules narrow;
    json_t *doc = json_loads("{\"Role\":\"arn:aws:iam::123456789012:role/r\","
                             "\"Rules\":[{\"ID\":\"n\",\"Priority\":1,\"Status\":\"Enabled\","
                             "\"Filter\":{\"Prefix\":\"only/\"},\"DeleteMarkerReplication\":"
                             "{\"Status\":\"Disabled\"},\"Destination\":{\"Bucket\":"
                             "\"arn:aws:s3:::dst-n\"}}]}",
                             0, NULL);
    char err[256] = "";
    if (tap_ok(repl_rules_from_json(&narrow, doc, "inline", err, sizeof err) == 0,
               "a one-rule configuration parses (%s)", err)) {
        tap_ok(repl_verdict_version(&narrow, s3_slice_cstr("else/x"), NULL, 0, 0, "STANDARD",
                                    out) == REPL_NOT_ELIGIBLE,
               "no enabled rule selects the key: SrcObjectNotEligible");
        tap_ok(repl_verdict_version(&narrow, s3_slice_cstr("only/x"), NULL, 0, 1, NULL, out) ==
                   REPL_NOT_ELIGIBLE,
               "a delete marker under a rule without DeleteMarkerReplication: not eligible");
        repl_rules_cleanup(&narrow);
    }
    json_decref(doc);

    /* per destination */
    const repl_rule *kms_rule = NULL, *plain_rule = NULL;
    for (size_t i = 0; i < r->n_rules; i++) {
        if (strcmp(r->rules[i].id, "all-c") == 0)
            kms_rule = &r->rules[i];
        if (strcmp(r->rules[i].id, "logs-low") == 0)
            plain_rule = &r->rules[i];
    }
    repl_facts *kms = repl_facts_new(), *locked = repl_facts_new(), *plain = repl_facts_new();
    kms->have_head = locked->have_head = plain->have_head = 1;
    snprintf(kms->sse, sizeof kms->sse, "aws:kms");
    snprintf(locked->lock_mode, sizeof locked->lock_mode, "GOVERNANCE");
    snprintf(locked->lock_until, sizeof locked->lock_until, "2030-01-01T00:00:00.000Z");
    repl_dest ok = {.state = REPL_DEST_OK}, lock_ok = {.state = REPL_DEST_OK, .object_lock = 1};
    repl_dest missing = {.state = REPL_DEST_MISSING}, unver = {.state = REPL_DEST_UNVERSIONED};
    repl_dest denied = {.state = REPL_DEST_DENIED, .http_status = 403};
    const struct {
        const repl_rule *rule;
        const repl_dest *dest;
        const repl_facts *facts;
        repl_failure_id want;
        const char *code; /* AWS's code the row carries (aws-formats.md §6.1) */
        const char *why;
    } dests[] = {
        {plain_rule, &ok, NULL, REPL_OK, "ok", "a usable destination, facts not read yet"},
        {plain_rule, &missing, NULL, REPL_DST_BUCKET_NOT_FOUND, "DstBucketNotFound",
         "a missing destination bucket"},
        {plain_rule, &unver, NULL, REPL_DST_BUCKET_UNVERSIONED, "DstBucketUnversioned",
         "an unversioned destination"},
        {plain_rule, &denied, NULL, REPL_DST_DENIED, "DstPutObjectNotPermitted",
         "a destination we may not write"},
        {plain_rule, &ok, kms, REPL_NOT_ELIGIBLE_SSE_KMS, "SrcObjectNotEligible",
         "SSE-KMS under a rule without SseKmsEncryptedObjects"},
        {kms_rule, &ok, kms, REPL_OK, "ok", "SSE-KMS under a rule that opts in"},
        {plain_rule, &ok, locked, REPL_DST_LOCK_MISSING, "DstBucketObjectLockConfigMissing",
         "a locked version, no Object Lock there"},
        {plain_rule, &lock_ok, locked, REPL_OK, "ok", "a locked version, Object Lock there"},
        {plain_rule, &ok, plain, REPL_OK, "ok", "plain facts"},
        {plain_rule, &missing, kms, REPL_DST_BUCKET_NOT_FOUND, "DstBucketNotFound",
         "the destination's state first"},
    };
    for (size_t i = 0; i < sizeof dests / sizeof *dests; i++) {
        repl_failure_id got = repl_verdict_dest(dests[i].rule, dests[i].dest, dests[i].facts);
        const repl_failure *f = repl_failure_of(got);
        const char *code = f ? f->code : "ok";
        tap_ok(got == dests[i].want && strcmp(code, dests[i].code) == 0,
               "destination verdict: %s -> %s (got %s)", dests[i].why, dests[i].code, code);
    }
    tap_ok(repl_failure_of(REPL_NOT_ELIGIBLE)->http_status == 500,
           "SrcObjectNotEligible rows carry HTTP 500 (§5.6)");
    repl_facts_destroy(kms);
    repl_facts_destroy(locked);
    repl_facts_destroy(plain);
}

static void test_s3_errors(void)
{
    static const struct {
        repl_op op;
        long status;
        const char *code, *want;
    } cases[] = {
        {REPL_OP_SRC_HEAD, 403, "AccessDenied", "SrcHeadObjectNotPermitted"},
        {REPL_OP_SRC_LIST, 404, "NoSuchBucket", "SrcBucketNotFound"},
        {REPL_OP_SRC_LIST, 403, "AccessDenied", "SrcHeadObjectNotPermitted"},
        {REPL_OP_SRC_GET_ACL, 403, "AccessDenied", "SrcGetAclNotPermitted"},
        {REPL_OP_SRC_GET_TAGS, 403, "AccessDenied", "SrcGetTaggingNotPermitted"},
        {REPL_OP_SRC_GET_TAGS, 404, "NoSuchVersion", "SrcVersionNotFound"},
        {REPL_OP_SRC_GET_OBJECT, 404, "", "SrcVersionNotFound"},
        {REPL_OP_SRC_GET_OBJECT, 405, "MethodNotAllowed", NULL},
        {REPL_OP_SRC_HEAD, 405, "", "SrcVersionNotFound"},
        {REPL_OP_SRC_LIST, 404, "", NULL},
        {REPL_OP_DST_DELETE, 404, "NoSuchKey", NULL},
        {REPL_OP_DST_MPU_PART, 404, "NoSuchKey", "SrcVersionNotFound"},
        {REPL_OP_DST_MPU_COMPLETE, 404, "NoSuchUpload", NULL},
        {REPL_OP_SRC_GET_OBJECT, 403, "AccessDenied", "SrcGetObjectNotPermitted"},
        {REPL_OP_DST_PUT, 404, "NoSuchBucket", "DstBucketNotFound"},
        {REPL_OP_DST_PUT, 404, "NoSuchKey", "SrcVersionNotFound"},
        {REPL_OP_DST_PUT, 403, "AccessDenied", "DstPutObjectNotPermitted"},
        {REPL_OP_DST_PUT, 400, "InvalidRequest", NULL},
        {REPL_OP_DST_DELETE, 403, "AccessDenied", "DstDelObjNotPermitted"},
        {REPL_OP_DST_DELETE, 404, "NoSuchBucket", "DstBucketNotFound"},
        {REPL_OP_DST_MPU_INIT, 403, "AccessDenied", "DstMultipartInitNotPermitted"},
        {REPL_OP_DST_MPU_PART, 403, "AccessDenied", "DstMultipartUploadNotPermitted"},
        {REPL_OP_DST_MPU_COMPLETE, 403, "AccessDenied", "DstMultipartCompleteNotPermitted"},
        {REPL_OP_DST_PUT_RETENTION, 403, "AccessDenied", "DstPutRetentionNotPermitted"},
        {REPL_OP_DST_PUT_LEGAL_HOLD, 403, "AccessDenied", "DstPutLegalHoldNotPermitted"},
        {REPL_OP_DST_PUT, 500, "InternalError", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        s3_outcome oc;
        memset(&oc, 0, sizeof oc);
        oc.http_status = cases[i].status;
        snprintf(oc.code, sizeof oc.code, "%s", cases[i].code);
        const char *got = repl_reason_for_s3(cases[i].op, &oc);
        tap_ok(got == cases[i].want || (got && cases[i].want && strcmp(got, cases[i].want) == 0),
               "S3 %ld %s on request %d -> %s (got %s)", cases[i].status, cases[i].code,
               (int)cases[i].op, cases[i].want ? cases[i].want : "S3's own code",
               got ? got : "S3's own code");
    }
}

/* "e1 DM e2" -> marks (words split in place; "DM" is a delete marker). */
static size_t marks(char *words, repl_version_mark *out, size_t cap)
{
    size_t n = 0;
    for (char *w = words; *w && n < cap;) {
        char *sp = strchr(w, ' ');
        if (sp)
            *sp = '\0';
        out[n++] = (repl_version_mark){strcmp(w, "DM") == 0, w};
        w = sp ? sp + 1 : w + strlen(w);
    }
    return n;
}

static void test_order_and_resume(void)
{
    repl_version_age older = {0, 1000, 3}, newer = {0, 2000, 1}, latest = {1, 500, 0};
    repl_version_age same_t_later_listed = {0, 1000, 4};
    tap_ok(repl_version_age_cmp(&older, &newer) < 0 && repl_version_age_cmp(&newer, &latest) < 0 &&
               repl_version_age_cmp(&latest, &older) > 0,
           "replay order: oldest first, the current version last whatever its time");
    tap_ok(repl_version_age_cmp(&same_t_later_listed, &older) < 0,
           "equal times: the one listed later is older (listings are newest first)");

    tap_ok(repl_etag_eq("\"abc\"", "abc") && !repl_etag_eq("", "") && !repl_etag_eq("abc", "abd"),
           "ETags compare without quotes; an empty ETag equals nothing");
    static const struct {
        const char *dest, *sent; /* "e1 e2 DM": oldest first; DM a delete marker */
        size_t want;
        const char *why;
    } cases[] = {
        {"", "e1 e2", 0, "nothing there: send all"},
        {"e1 e2", "e1 e2", 2, "all there"},
        {"e1", "e1 e2", 1, "the first there: send the rest"},
        {"old e1", "e1 e2", 1, "an older version before ours"},
        {"e1 e2 e3", "e2 e3", 2, "a suffix of what is there"},
        {"e1 DM", "e1 DM e2", 2, "a delete marker in its place"},
        {"e1 e9", "e1 e2", 0, "a different version after ours: not ours"},
        {"DM", "e1", 0, "a delete marker is not a version"},
        {"e2 e1", "e1 e2", 1, "only the newest tail counts"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        repl_version_mark dm[8], sm[8];
        char db[64], sb[64];
        size_t nd = 0, ns = 0;
        snprintf(db, sizeof db, "%s", cases[i].dest);
        snprintf(sb, sizeof sb, "%s", cases[i].sent);
        nd = marks(db, dm, 8);
        ns = marks(sb, sm, 8);
        size_t got = repl_replicated_prefix(dm, nd, sm, ns);
        tap_ok(got == cases[i].want, "resume match [%s] vs sending [%s]: %zu already there, %s "
                                     "(got %zu)",
               cases[i].dest, cases[i].sent, cases[i].want, cases[i].why, got);
    }
}

static void test_tags(void)
{
    static const struct {
        const char *xml;
        int rc;
        size_t n;
        const char *first;
    } cases[] = {
        {"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>", 0, 1,
         "a=1"},
        {"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key><Value>"
         "</Value></Tag></TagSet></Tagging>",
         0, 2, "a=1"},
        {"<Tagging><TagSet/></Tagging>", 0, 0, ""},
        {"<Tagging><TagSet>", -1, 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        repl_tag *tags = NULL;
        size_t n = 99;
        int rc = repl_tags_from_xml(s3_slice_cstr(cases[i].xml), &tags, &n);
        char first[64] = "";
        if (rc == 0 && n > 0)
            snprintf(first, sizeof first, "%s=%s", tags[0].key, tags[0].value);
        tap_ok(rc == cases[i].rc &&
                   (rc != 0 || (n == cases[i].n && strcmp(first, cases[i].first) == 0)),
               "TagSet case %zu: rc %d, %zu tags, first %s (got rc %d, %zu, %s)", i, cases[i].rc,
               cases[i].n, cases[i].first, rc, rc == 0 ? n : 0, first);
        repl_tags_free(tags, rc == 0 ? n : 0);
    }
}

/* Parses a fixture; 0, or the parser's code with its message in err. */
static int parse_fixture(const char *fixture, char *err, size_t err_len)
{
    size_t len;
    char *text = tap_read_fixture(fixture, &len);
    json_t *doc = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    err[0] = '\0';
    if (!doc) {
        snprintf(err, err_len, "%s: cannot read the fixture", fixture);
        return -1;
    }
    repl_rules r;
    int rc = repl_rules_from_json(&r, doc, fixture, err, err_len);
    json_decref(doc);
    if (rc == 0)
        repl_rules_cleanup(&r);
    return rc;
}

/* Configurations AWS refuses (aws-formats.md §7.1 shapes, §7.2 priorities): each is
   refused with REPL_E_INVALID_RULES and a message that names the member. */
static void test_invalid_configs(void)
{
    static const struct {
        const char *file, *names, *why;
    } cases[] = {
        {"no-role.json", ": Role: required", "no Role (§7.1: Role is required)"},
        {"empty-role.json", ": Role: required", "an empty Role"},
        {"duplicate-id.json", ": Rules[1].ID: ", "two rules with ID \"a\""},
        {"negative-priority.json", ": Rules[0].Priority: ", "Priority -1"},
        {"priority-above-int32.json", ": Rules[1].Priority: ",
         "Priority 4294967297 (an int: was cut to 1, and the other rule won)"},
        {"filter-without-priority.json", ": Rules[0].Priority: ",
         "a Filter without Priority (§7.2: a Filter needs Priority)"},
        {"id-too-long.json", ": Rules[0].ID: ", "an ID of 256 characters (§7.1: at most 255)"},
        {"overlap-prefixes.json", ": Rules[1]: ",
         "Prefix logs/ and logs/app/, same destination, same Priority"},
        {"overlap-tags.json", ": Rules[1]: ",
         "tag filters on different keys, same destination, same Priority"},
        {"overlap-v1.json", ": Rules[1]: ", "V1 rules with Prefix a and ab (no Priority: equal)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256], err[1024];
        snprintf(path, sizeof path, "tests/fixtures/replicate/invalid/%s", cases[i].file);
        int rc = parse_fixture(path, err, sizeof err);
        tap_ok(rc == -REPL_E_INVALID_RULES && strstr(err, cases[i].names) != NULL,
               "refused: %s; the message names \"%s\" (rc %d: %s)", cases[i].why,
               cases[i].names, rc, err);
    }
    char err[1024];
    int rc = parse_fixture("tests/fixtures/replicate/valid/equal-priority-apart.json", err,
                           sizeof err);
    tap_ok(rc == 0, "accepted: equal priorities whose filters cannot match one key (prefixes "
                    "apart, team=blue vs team=green) or whose destinations differ, Priority "
                    "0 and 2147483647, two rules without ID (%s)", err);
}

int main(void)
{
    repl_rules r;
    if (tap_ok(load_rules("tests/fixtures/replicate/rules.json", &r) == 0,
               "rules.json parses") &&
        tap_ok(r.n_rules == 6 && r.n_dests == 3 && r.needs_tags,
               "6 rules, 3 destinations, tag rules present")) {
        test_select(&r);
        test_verdicts(&r);
        repl_rules_cleanup(&r);
    }
    test_s3_errors();
    test_order_and_resume();
    test_tags();
    test_invalid_configs();
    return tap_done();
}
