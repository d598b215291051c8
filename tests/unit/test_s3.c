/*
 * test_s3.c — unit tests of the s3/ module, table-driven from files under tests/fixtures/:
 *   s3/uri_encode.txt, s3/uri_decode.txt, s3/copy_source.txt, s3/time.txt   tables
 *   s3/NAME.xml, s3/list_versions.expected                                  XML parsers
 *   s3/aws/NAME                                                             AWS CLI files
 *   sigv4/cases.txt                    Authorization headers computed by botocore
 *                                      (tests/fixtures/sigv4/gen_cases.py), byte for byte
 * plus request building on a curl handle and a few real transfers against a one-shot HTTP
 * server on 127.0.0.1 (request bytes as sent, response capture, retries, body cap).
 *
 * Fixture lines are TAB-separated; in raw strings "\\" is a backslash and "\xHH" a byte.
 * Run from the repository root or with BATCHREP_SRC set to it.
 */
#include "s3/s3.h"
#include "tests/unit/tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- fixture helpers ----------------------------------------------------------------- */

static const char *src_root(void)
{
    const char *r = getenv("BATCHREP_SRC");
    return r && *r ? r : ".";
}

static char *fixture(const char *rel, size_t *len)
{
    char *p = tap_read_fixture(rel, len);
    if (!p)
        tap_ok(0, "fixture %s is readable (run from the repo root or set BATCHREP_SRC)", rel);
    return p;
}

/* Undoes the fixture escapes in place ("\\" and "\xHH"); returns the new length. */
static size_t unescape(char *s)
{
    size_t r = 0, w = 0, n = strlen(s);
    while (r < n) {
        if (s[r] == '\\' && r + 1 < n && s[r + 1] == '\\') {
            s[w++] = '\\';
            r += 2;
        } else if (s[r] == '\\' && r + 3 < n && s[r + 1] == 'x') {
            char hex[3] = {s[r + 2], s[r + 3], 0};
            s[w++] = (char)strtol(hex, NULL, 16);
            r += 4;
        } else {
            s[w++] = s[r++];
        }
    }
    s[w] = '\0';
    return w;
}

/* The inverse, for printing parsed values the way fixtures write them. */
static void escape_into(s3_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\') {
            s3_buf_append(b, "\\\\", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char t[5];
            snprintf(t, sizeof t, "\\x%02x", c);
            s3_buf_append(b, t, 4);
        } else {
            s3_buf_append(b, s, 1);
        }
    }
}

/* Splits line at TABs into at most max fields; returns the count. */
static int split_tabs(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    }
    return n;
}

/* Iterates the lines of a buffer that are neither empty nor comments. */
static char *next_line(char **cursor)
{
    while (*cursor && **cursor) {
        char *line = *cursor;
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            *cursor = nl + 1;
        } else {
            *cursor = NULL;
        }
        if (line[0] != '#' && !(line[0] == '\0' && nl == NULL))
            return line;
    }
    return NULL;
}

/* ---- URI encoding, copy source, time -------------------------------------------------- */

static void test_uri_encode(void)
{
    char *text = fixture("tests/fixtures/s3/uri_encode.txt", NULL), *cur = text, *line;
    if (!text)
        return;
    s3_buf b;
    s3_buf_init(&b, 1 << 16);
    while ((line = next_line(&cur))) {
        if (!*line)
            continue;
        char *f[3];
        if (split_tabs(line, f, 3) != 3) {
            tap_ok(0, "uri_encode.txt: malformed line");
            continue;
        }
        size_t n = unescape(f[0]);
        s3_buf_reset(&b);
        int rc = s3_uri_encode(&b, (s3_slice){f[0], n}, f[1][0] == '1');
        tap_ok(rc == 0 && b.ptr && strcmp(b.ptr, f[2]) == 0,
               "uri encode (keep_slash=%s) -> \"%s\" (got \"%s\")", f[1], f[2],
               b.ptr ? b.ptr : "(null)");
    }
    s3_buf_cleanup(&b);
    free(text);

    /* the cap: "a b" encodes to 5 bytes, which fits a 5-byte cap although 3*3 would not */
    s3_buf small;
    s3_buf_init(&small, 5);
    tap_ok(s3_uri_encode(&small, s3_slice_cstr("a b"), 0) == 0 && strcmp(small.ptr, "a%20b") == 0,
           "uri encode fits exactly under the buffer cap");
    tap_ok(s3_uri_encode(&small, s3_slice_cstr("x"), 0) == S3_E_TOO_BIG,
           "uri encode past the cap is S3_E_TOO_BIG");
    s3_buf_cleanup(&small);
}

static void test_uri_decode(void)
{
    char *text = fixture("tests/fixtures/s3/uri_decode.txt", NULL), *cur = text, *line;
    if (!text)
        return;
    while ((line = next_line(&cur))) {
        char *f[3];
        if (split_tabs(line, f, 3) != 3) {
            tap_ok(0, "uri_decode.txt: malformed line");
            continue;
        }
        char in[256];
        snprintf(in, sizeof in, "%s", f[0]);
        size_t len = strlen(in), bad = 999;
        long got = s3_uri_decode_inplace(in, len, f[1][0] == '1', &bad);
        if (strncmp(f[2], "ERR@", 4) == 0) {
            long want_at = strtol(f[2] + 4, NULL, 10);
            tap_ok(got == -1 && (long)bad == want_at, "uri decode \"%s\" fails at %ld (got %ld, %zu)",
                   f[0], want_at, got, bad);
        } else {
            tap_ok(got == (long)strlen(f[2]) && memcmp(in, f[2], strlen(f[2])) == 0,
                   "uri decode \"%s\" (plus_is_space=%s) -> \"%s\"", f[0], f[1], f[2]);
        }
    }
    free(text);
}

static void test_copy_source(void)
{
    char *text = fixture("tests/fixtures/s3/copy_source.txt", NULL), *cur = text, *line;
    if (!text)
        return;
    s3_buf b;
    s3_buf_init(&b, 8192);
    s3_buf_append_str(&b, "leftover"); /* s3_copy_source replaces the content */
    while ((line = next_line(&cur))) {
        char *f[4];
        if (split_tabs(line, f, 4) != 4) {
            tap_ok(0, "copy_source.txt: malformed line");
            continue;
        }
        int rc = s3_copy_source(&b, f[0], f[1], strcmp(f[2], "-") ? f[2] : NULL);
        tap_ok(rc == 0 && strcmp(b.ptr, f[3]) == 0, "copy source %s + \"%s\" -> %s (got %s)", f[0],
               f[1], f[3], b.ptr);
    }
    tap_ok(s3_copy_source(&b, "src", "", NULL) == S3_E_ARG, "copy source: empty key refused");
    s3_buf_cleanup(&b);
    free(text);
}

static void test_time(void)
{
    char *text = fixture("tests/fixtures/s3/time.txt", NULL), *cur = text, *line;
    if (!text)
        return;
    while ((line = next_line(&cur))) {
        char *f[2];
        if (split_tabs(line, f, 2) != 2) {
            tap_ok(0, "time.txt: malformed line");
            continue;
        }
        int64_t ms = -1;
        int rc = s3_parse_time_ms(f[0], &ms);
        if (strcmp(f[1], "ERR") == 0)
            tap_ok(rc != 0, "time \"%s\" is refused", f[0]);
        else
            tap_ok(rc == 0 && ms == strtoll(f[1], NULL, 10), "time \"%s\" -> %s (got %lld)", f[0],
                   f[1], (long long)ms);
    }
    free(text);
}

static void test_buf(void)
{
    s3_buf b;
    s3_buf_init(&b, 30);
    tap_ok(s3_buf_append_u64(&b, 0) == 0 && s3_buf_append(&b, " ", 1) == 0 &&
               s3_buf_append_u64(&b, UINT64_MAX) == 0 &&
               strcmp(b.ptr, "0 18446744073709551615") == 0,
           "s3_buf_append_u64 writes decimal (got %s)", b.ptr);
    tap_ok(s3_buf_append_str(&b, "123456789") == S3_E_TOO_BIG && b.len == 22,
           "append past max_bytes fails and leaves the buffer as it was");
    s3_buf_reset(&b);
    tap_ok(b.len == 0 && b.ptr[0] == '\0', "reset keeps memory, empties the string");
    s3_buf_cleanup(&b);
    s3_buf_cleanup(&b); /* twice is harmless */
    tap_ok(s3_slice_eq(s3_slice_cstr("abc"), "abc") && !s3_slice_eq(s3_slice_cstr("ab"), "abc"),
           "s3_slice_eq");
    tap_ok(strcmp(s3_errname(S3_E_NO_CREDENTIALS), "S3_E_NO_CREDENTIALS") == 0 &&
               strcmp(s3_strerror(S3_E_TOO_BIG), "buffer cap reached") == 0 &&
               strcmp(s3_errname(999), "S3_E_UNKNOWN") == 0,
           "error names and messages come from the table");
    char hex[65], md5[33];
    s3_sha256_hex("abc", 3, hex);
    s3_md5_hex("", 0, md5);
    tap_ok(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
           "sha256(abc) = %s", hex);
    tap_ok(strcmp(md5, "d41d8cd98f00b204e9800998ecf8427e") == 0, "md5(\"\") = %s", md5);
    char b64[25];
    s3_md5_base64("", 0, b64);
    tap_ok(strcmp(b64, "1B2M2Y8AsgTpgAmY7PhCfg==") == 0, "Content-MD5 of \"\" = %s", b64);
    char u1[37], u2[37];
    s3_uuid4(u1);
    s3_uuid4(u2);
    int shape = strlen(u1) == 36 && u1[8] == '-' && u1[13] == '-' && u1[18] == '-' &&
                u1[23] == '-' && u1[14] == '4' && strchr("89ab", u1[19]) != NULL &&
                strspn(u1, "0123456789abcdef-") == 36;
    tap_ok(shape && strcmp(u1, u2) != 0, "s3_uuid4: version 4 layout, two calls differ (%s)",
           u1);
}

/* ---- XML ----------------------------------------------------------------------------- */

static void test_xml_error(void)
{
    static const struct {
        const char *file; /* NULL: empty body */
        int want;
        const char *code, *msg;
    } cases[] = {
        {"error_nosuchversion.xml", 1, "NoSuchVersion", "The specified version does not exist."},
        {"error_slowdown.xml", 1, "SlowDown", "Please reduce your request rate."},
        {"error_rgw_nosuchkey.xml", 1, "NoSuchKey", ""},
        {"error_entities.xml", 1, "InvalidArgument", "Key \"a&b\" <\xE6\x97\xA5> isn't valid"},
        {"error_in_200.xml", 1, "InternalError",
         "We encountered an internal error. Please try again."},
        {"error_truncated.xml", 1, "InternalError", ""},
        {"copy_result.xml", 0, "", ""},
        {"bad_gateway.html", 0, "", ""},
        {"copy_result_truncated.xml", -1, "", ""},
        {NULL, -1, "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        size_t len = 0;
        char *body = NULL;
        if (cases[i].file) {
            snprintf(path, sizeof path, "tests/fixtures/s3/%s", cases[i].file);
            if (!(body = fixture(path, &len)))
                continue;
        }
        char code[64] = "x", msg[256] = "x";
        int r = s3_xml_parse_error((s3_slice){body, len}, code, sizeof code, msg, sizeof msg);
        tap_ok(r == cases[i].want && strcmp(code, cases[i].code) == 0 &&
                   strcmp(msg, cases[i].msg) == 0,
               "parse_error %s -> %d \"%s\" \"%s\" (got %d \"%s\" \"%s\")",
               cases[i].file ? cases[i].file : "(empty)", cases[i].want, cases[i].code,
               cases[i].msg, r, code, msg);
        free(body);
    }
}

static void test_xml_find(void)
{
    static const struct {
        const char *file, *element;
        size_t cap;
        int want_rc;
        const char *want;
    } cases[] = {
        {"copy_result.xml", "ETag", 80, 0, "\"9b2cf535f27731c974343645a3985328\""},
        {"copy_result.xml", "LastModified", 80, 0, "2026-11-25T10:00:00.000Z"},
        {"copy_result_rgw.xml", "ETag", 80, 0, "7265f4d211b56873a381d321f586e4a9"},
        {"initiate_mpu.xml", "UploadId", 200, 0,
         "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"},
        {"initiate_mpu.xml", "Key", 200, 0, "big&file"},
        {"error_in_200.xml", "ETag", 80, S3_E_XML, ""},
        {"copy_result_truncated.xml", "ETag", 80, S3_E_XML, ""},
        {"copy_result.xml", "ETag", 10, S3_E_TOO_BIG, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256], out[200];
        size_t len;
        snprintf(path, sizeof path, "tests/fixtures/s3/%s", cases[i].file);
        char *body = fixture(path, &len);
        if (!body)
            continue;
        int rc = s3_xml_find_text((s3_slice){body, len}, cases[i].element, out, cases[i].cap);
        tap_ok(rc == cases[i].want_rc && (!cases[i].want || strcmp(out, cases[i].want) == 0),
               "find_text %s <%s> -> %d \"%s\" (got %d \"%s\")", cases[i].file, cases[i].element,
               cases[i].want_rc, cases[i].want ? cases[i].want : "-", rc, out);
        free(body);
    }
}

typedef struct lv_out {
    s3_buf text;
    int stop_after;
    unsigned seen;
} lv_out;

static int lv_collect(const s3_version_entry *v, void *user)
{
    lv_out *o = user;
    char t[512];
    snprintf(t, sizeof t, "entry\t%u\t%s\t", v->list_pos, v->is_delete_marker ? "D" : "V");
    s3_buf_append_str(&o->text, t);
    escape_into(&o->text, v->key);
    snprintf(t, sizeof t, "\t%s\t%d\t%s\t%lld\t%s\t%lld\t%s\n", v->version_id, v->is_latest,
             v->last_modified, (long long)v->last_modified_ms, v->etag, (long long)v->size,
             v->storage_class);
    s3_buf_append_str(&o->text, t);
    o->seen++;
    return o->stop_after && o->seen >= (unsigned)o->stop_after;
}

static void test_list_versions(void)
{
    size_t len, elen;
    char *body = fixture("tests/fixtures/s3/list_versions.xml", &len);
    char *expected = fixture("tests/fixtures/s3/list_versions.expected", &elen);
    if (!body || !expected) {
        free(body);
        free(expected);
        return;
    }
    const char *want = strchr(expected, '\n') + 1; /* after the comment line */
    lv_out o = {.stop_after = 0};
    s3_buf_init(&o.text, 1 << 20);
    s3_list_versions_page page;
    int rc = s3_xml_parse_list_versions((s3_slice){body, len}, 100, lv_collect, &o, &page);
    char t[1400];
    s3_buf_append_str(&o.text, "page\t");
    snprintf(t, sizeof t, "%d\t", page.is_truncated);
    s3_buf_append_str(&o.text, t);
    escape_into(&o.text, page.next_key_marker);
    snprintf(t, sizeof t, "\t%s\t%u\n", page.next_version_id_marker, page.n_entries);
    s3_buf_append_str(&o.text, t);
    tap_ok(rc == 0, "list_versions.xml parses (rc %d)", rc);
    int same = o.text.ptr && strcmp(o.text.ptr, want) == 0;
    tap_ok(same, "list_versions.xml entries equal list_versions.expected byte for byte");
    if (!same)
        tap_diag("got:\n%s", o.text.ptr ? o.text.ptr : "");

    /* the callback stops the parse */
    lv_out stop = {.stop_after = 2};
    s3_buf_init(&stop.text, 1 << 20);
    rc = s3_xml_parse_list_versions((s3_slice){body, len}, 0, lv_collect, &stop, &page);
    tap_ok(rc == 0 && stop.seen == 2 && page.n_entries == 2,
           "a nonzero callback return stops after that entry (seen %u)", stop.seen);
    s3_buf_cleanup(&stop.text);

    /* cut in the middle of the third entry: the two before it were delivered */
    lv_out cut = {.stop_after = 0};
    s3_buf_init(&cut.text, 1 << 20);
    const char *third = strstr(body, "<DeleteMarker>");
    rc = s3_xml_parse_list_versions((s3_slice){body, (size_t)(third - body) + 20}, 0,
                                    lv_collect, &cut, &page);
    tap_ok(rc == S3_E_XML && cut.seen == 2, "a truncated listing is S3_E_XML (rc %d, seen %u)",
           rc, cut.seen);
    s3_buf_cleanup(&cut.text);
    s3_buf_cleanup(&o.text);
    free(body);
    free(expected);

    body = fixture("tests/fixtures/s3/list_versions_empty.xml", &len);
    if (body) {
        lv_out e = {.stop_after = 0};
        s3_buf_init(&e.text, 1024);
        rc = s3_xml_parse_list_versions((s3_slice){body, len}, 0, lv_collect, &e, &page);
        tap_ok(rc == 0 && e.seen == 0 && page.n_entries == 0 && !page.is_truncated &&
                   page.next_key_marker[0] == '\0',
               "an empty listing has no entries and is not truncated");
        s3_buf_cleanup(&e.text);
        free(body);
    }
    body = fixture("tests/fixtures/s3/error_slowdown.xml", &len);
    if (body) {
        lv_out e = {.stop_after = 0};
        s3_buf_init(&e.text, 1024);
        rc = s3_xml_parse_list_versions((s3_slice){body, len}, 0, lv_collect, &e, &page);
        tap_ok(rc == S3_E_XML, "an <Error> body is not a listing (rc %d)", rc);
        s3_buf_cleanup(&e.text);
        free(body);
    }
}

/* ---- outcome classification ---------------------------------------------------------- */

static void test_outcome(void)
{
    static const struct {
        int curl_code;
        long status;
        const char *file;
        int expect_xml;
        int retryable, throttled, error_in_200;
        const char *code;
    } cases[] = {
        {CURLE_COULDNT_CONNECT, 0, NULL, 0, 1, 0, 0, ""},
        {CURLE_OPERATION_TIMEDOUT, 0, NULL, 1, 1, 0, 0, ""},
        {CURLE_RECV_ERROR, 200, NULL, 1, 1, 0, 0, ""},
        {CURLE_PEER_FAILED_VERIFICATION, 0, NULL, 0, 0, 0, 0, ""},
        {CURLE_URL_MALFORMAT, 0, NULL, 0, 0, 0, 0, ""},
        {0, 200, NULL, 0, 0, 0, 0, ""},
        {0, 204, NULL, 0, 0, 0, 0, ""},
        {0, 200, "copy_result.xml", 1, 0, 0, 0, ""},
        {0, 200, "copy_result_rgw.xml", 1, 0, 0, 0, ""},
        {0, 200, "error_in_200.xml", 1, 1, 0, 1, "InternalError"},
        {0, 200, "copy_result_truncated.xml", 1, 1, 0, 1, "InternalError"},
        {0, 200, NULL, 1, 1, 0, 1, "InternalError"},
        {0, 200, "error_slowdown.xml", 1, 1, 1, 1, "SlowDown"},
        {0, 200, "error_in_200.xml", 0, 0, 0, 0, ""}, /* a GET of an object that is XML */
        {0, 503, "error_slowdown.xml", 0, 1, 1, 0, "SlowDown"},
        {0, 503, NULL, 0, 1, 1, 0, ""},
        {0, 500, NULL, 0, 1, 0, 0, ""},
        {0, 502, "bad_gateway.html", 0, 1, 0, 0, ""},
        {0, 504, NULL, 0, 1, 0, 0, ""},
        {0, 429, NULL, 0, 1, 1, 0, ""},
        {0, 400, "error_requesttimeout.xml", 0, 1, 0, 0, "RequestTimeout"},
        {0, 409, "error_operationaborted.xml", 1, 1, 0, 0, "OperationAborted"},
        {0, 404, "error_nosuchversion.xml", 1, 0, 0, 0, "NoSuchVersion"},
        {0, 404, NULL, 0, 0, 0, 0, ""},
        {0, 405, NULL, 0, 0, 0, 0, ""},
        {0, 403, "error_signature.xml", 0, 0, 0, 0, "SignatureDoesNotMatch"},
    };
    s3_call c;
    if (!tap_ok(s3_call_init(&c) == 0, "s3_call_init"))
        return;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s3_buf_reset(&c.resp.body);
        c.resp.status = cases[i].status;
        if (cases[i].file) {
            char path[256];
            size_t len;
            snprintf(path, sizeof path, "tests/fixtures/s3/%s", cases[i].file);
            char *body = fixture(path, &len);
            if (!body)
                continue;
            s3_buf_append(&c.resp.body, body, len);
            free(body);
        }
        s3_outcome o;
        s3_outcome_classify(&c, cases[i].curl_code, cases[i].expect_xml, &o);
        tap_ok(o.http_status == cases[i].status && o.curl_code == cases[i].curl_code &&
                   o.retryable == cases[i].retryable && o.throttled == cases[i].throttled &&
                   o.error_in_200 == cases[i].error_in_200 && strcmp(o.code, cases[i].code) == 0,
               "classify curl=%d http=%ld %s xml=%d -> retry=%d throttle=%d in200=%d \"%s\" "
               "(got %d %d %d \"%s\" msg \"%s\")",
               cases[i].curl_code, cases[i].status, cases[i].file ? cases[i].file : "-",
               cases[i].expect_xml, cases[i].retryable, cases[i].throttled,
               cases[i].error_in_200, cases[i].code, o.retryable, o.throttled, o.error_in_200,
               o.code, o.message);
    }
    s3_call_cleanup(&c);
}

/* ---- endpoint loading ---------------------------------------------------------------- */

static const char *const aws_env[] = {
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CA_BUNDLE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
};

static void set_env_list(const char *list) /* "A=1;B=2" */
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list ? list : "");
    char *save = NULL;
    for (char *kv = strtok_r(buf, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        if (eq) {
            *eq = '\0';
            setenv(kv, eq + 1, 1);
        }
    }
}

static void test_endpoint(void)
{
    static const struct {
        const char *name, *config, *creds, *env, *profile;
        int rc;
        const char *region, *base_url, *host;
        int path_style, is_https;
        const char *ak, *token, *ca, *err_has, *err_lacks;
    } cases[] = {
        {"default profile", "config", "credentials", "", NULL, 0, "eu-west-1", "",
         "s3.eu-west-1.amazonaws.com", 0, 1, "AKIADEFAULT", "", "", NULL, NULL},
        {"AWS_REGION overrides the profile", "config", "credentials", "AWS_REGION=us-east-2",
         NULL, 0, "us-east-2", "", "s3.us-east-2.amazonaws.com", 0, 1, "AKIADEFAULT", "", "",
         NULL, NULL},
        {"AWS_DEFAULT_REGION", "config", "credentials", "AWS_DEFAULT_REGION=ca-central-1", NULL,
         0, "ca-central-1", "", "s3.ca-central-1.amazonaws.com", 0, 1, "AKIADEFAULT", "", "",
         NULL, NULL},
        {"AWS_PROFILE=dev: endpoint, session token, path-style", "config", "credentials",
         "AWS_PROFILE=dev", NULL, 0, "us-west-2", "http://127.0.0.1:9000", "127.0.0.1:9000", 1,
         0, "AKIADEV", "devtoken", "", NULL, NULL},
        {"explicit profile ignores env keys, endpoint and region", "config", "credentials",
         "AWS_ACCESS_KEY_ID=ENVKEY;AWS_SECRET_ACCESS_KEY=envsecret;"
         "AWS_ENDPOINT_URL=http://env.example:1;AWS_REGION=eu-central-1",
         "dev", 0, "us-west-2", "http://127.0.0.1:9000", "127.0.0.1:9000", 1, 0, "AKIADEV",
         "devtoken", "", NULL, NULL},
        {"AWS_PROFILE: env keys and endpoint win", "config", "credentials",
         "AWS_PROFILE=dev;AWS_ACCESS_KEY_ID=ENVKEY;AWS_SECRET_ACCESS_KEY=envsecret;"
         "AWS_ENDPOINT_URL=http://env.example:1;AWS_REGION=eu-central-1",
         NULL, 0, "eu-central-1", "http://env.example:1", "env.example:1", 1, 0, "ENVKEY", "",
         "", NULL, NULL},
        {"AWS_ENDPOINT_URL_S3 beats AWS_ENDPOINT_URL", "config", "credentials",
         "AWS_ENDPOINT_URL=http://env.example:1;AWS_ENDPOINT_URL_S3=https://s3only.example",
         NULL, 0, "eu-west-1", "https://s3only.example", "s3only.example", 1, 1,
         "AKIADEFAULT", "", "", NULL, NULL},
        {"addressing_style = virtual in an s3 sub-section", "config", "credentials", "", "virt",
         0, "us-east-1", "https://minio.example.com:9443", "minio.example.com:9443", 0, 1,
         "AKIAVIRTCREDS", "", "", NULL, NULL},
        {"s3 sub-section endpoint_url and ':' delimiter", "config", "credentials", "", "nested",
         0, "ap-south-1", "http://localhost:4566", "localhost:4566", 1, 0, "AKIANESTED", "", "",
         NULL, NULL},
        {"services section", "config", "credentials", "", "svc", 0, "us-east-1",
         "http://127.0.0.1:7480", "127.0.0.1:7480", 1, 0, "AKIASVC", "", "", NULL, NULL},
        {"credential_process is named in the error", "config", "credentials", "", "proc",
         S3_E_NO_CREDENTIALS, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, "config:37", NULL},
        {"AWS endpoint with addressing_style = path", "config", "credentials",
         "AWS_PROFILE=aws-path;AWS_ACCESS_KEY_ID=ENVKEY;AWS_SECRET_ACCESS_KEY=envsecret", NULL,
         0, "us-west-1", "", "s3.us-west-1.amazonaws.com", 1, 1, "ENVKEY", "", "", NULL, NULL},
        {"a profile without keys does not borrow the default's", "config", "credentials", "",
         "aws-path", S3_E_NO_CREDENTIALS, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL,
         "[profile aws-path]", NULL},
        {"bad addressing_style names file:line", "config", "credentials", "", "badstyle",
         S3_E_CONFIG, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, "config:47", NULL},
        {"ftp endpoint refused", "config", "credentials", "", "badurl", S3_E_CONFIG, NULL, NULL,
         NULL, 0, 0, NULL, NULL, NULL, "ftp://example.com", NULL},
        {"written port kept, host lower-cased, profile ca_bundle", "config", "credentials",
         "AWS_CA_BUNDLE=/env/ca.pem", "port80", 0, "us-east-1", "http://localhost:80",
         "localhost:80", 1, 0, "AKIAPORT", "", "/etc/ssl/profile-ca.pem", NULL, NULL},
        {"AWS_CA_BUNDLE beats the profile when not explicit", "config", "credentials",
         "AWS_PROFILE=port80;AWS_CA_BUNDLE=/env/ca.pem", NULL, 0, "us-east-1",
         "http://localhost:80", "localhost:80", 1, 0, "AKIAPORT", "", "/env/ca.pem", NULL,
         NULL},
        {"unknown explicit profile", "config", "credentials", "", "nope", S3_E_CONFIG, NULL,
         NULL, NULL, 0, 0, NULL, NULL, NULL, "profile \"nope\" not found", NULL},
        {"unknown AWS_PROFILE", "config", "credentials", "AWS_PROFILE=nope", NULL, S3_E_CONFIG,
         NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, "profile \"nope\" not found", NULL},
        {"no credentials anywhere names the files", "empty", "empty", "", NULL,
         S3_E_NO_CREDENTIALS, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, "s3/aws/empty", NULL},
        {"key id without secret in env", "empty", "empty", "AWS_ACCESS_KEY_ID=AKIAONLY", NULL,
         S3_E_CONFIG, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL,
         "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not", NULL},
        {"secret without key id names file:line, not the secret", "empty", "credentials-partial",
         "", NULL, S3_E_CONFIG, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL,
         "credentials-partial:2", "topsecret"},
        {"line without '='", "config-bad", "empty", "", NULL, S3_E_CONFIG, NULL, NULL, NULL, 0,
         0, NULL, NULL, NULL, "config-bad:3", NULL},
        {"setting before any section", "config-nosection", "empty", "", NULL, S3_E_CONFIG, NULL,
         NULL, NULL, 0, 0, NULL, NULL, NULL, "config-nosection:1", NULL},
        {"nested line without '='", "config-badnested", "empty", "", NULL, S3_E_CONFIG, NULL,
         NULL, NULL, 0, 0, NULL, NULL, NULL, "config-badnested:3", NULL},
        {"BOM and CRLF, keys in the config file", "config-crlf", "missing", "", NULL, 0,
         "sa-east-1", "", "s3.sa-east-1.amazonaws.com", 0, 1, "AKIACRLF", "", "", NULL, NULL},
        {"missing files, env keys and token", "missing", "missing",
         "AWS_ACCESS_KEY_ID=ENVKEY;AWS_SECRET_ACCESS_KEY=envsecret;AWS_SESSION_TOKEN=envtok",
         NULL, 0, "us-east-1", "", "s3.us-east-1.amazonaws.com", 0, 1, "ENVKEY", "envtok", "",
         NULL, NULL},
        {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "config", "credentials",
         "AWS_PROFILE=dev;AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true", NULL, 0, "us-west-2", "",
         "s3.us-west-2.amazonaws.com", 0, 1, "AKIADEV", "devtoken", "", NULL, NULL},
        {"endpoint URL with a path refused", "empty", "empty",
         "AWS_ENDPOINT_URL=http://h:1/prefix;AWS_ACCESS_KEY_ID=a;AWS_SECRET_ACCESS_KEY=b", NULL,
         S3_E_CONFIG, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, "must not have a path", NULL},
        {"endpoint URL with a bad port refused", "empty", "empty",
         "AWS_ENDPOINT_URL=http://h:99999;AWS_ACCESS_KEY_ID=a;AWS_SECRET_ACCESS_KEY=b", NULL,
         S3_E_CONFIG, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, "invalid port", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t k = 0; k < sizeof aws_env / sizeof aws_env[0]; k++)
            unsetenv(aws_env[k]);
        char cfg[1024], cred[1024];
        snprintf(cfg, sizeof cfg, "%s/tests/fixtures/s3/aws/%s", src_root(), cases[i].config);
        snprintf(cred, sizeof cred, "%s/tests/fixtures/s3/aws/%s", src_root(), cases[i].creds);
        setenv("AWS_CONFIG_FILE", cfg, 1);
        setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
        set_env_list(cases[i].env);
        s3_endpoint ep;
        char err[1024] = "";
        int rc = s3_endpoint_load(&ep, cases[i].profile, err, sizeof err);
        if (cases[i].rc) {
            tap_ok(rc == cases[i].rc && strstr(err, cases[i].err_has) &&
                       (!cases[i].err_lacks || !strstr(err, cases[i].err_lacks)),
                   "endpoint: %s -> %s mentioning \"%s\" (got %s: %s)", cases[i].name,
                   s3_errname(cases[i].rc), cases[i].err_has, s3_errname(rc), err);
            continue;
        }
        tap_ok(rc == 0 && strcmp(ep.region, cases[i].region) == 0 &&
                   strcmp(ep.base_url, cases[i].base_url) == 0 &&
                   strcmp(ep.host, cases[i].host) == 0 && ep.path_style == cases[i].path_style &&
                   ep.is_https == cases[i].is_https &&
                   strcmp(ep.creds.access_key, cases[i].ak) == 0 &&
                   strcmp(ep.creds.session_token, cases[i].token) == 0 &&
                   strcmp(ep.ca_bundle, cases[i].ca) == 0,
               "endpoint: %s (got rc=%d region=%s base=%s host=%s path=%d https=%d ak=%s "
               "token=%s ca=%s err=%s)",
               cases[i].name, rc, ep.region, ep.base_url, ep.host, ep.path_style, ep.is_https,
               ep.creds.access_key, ep.creds.session_token, ep.ca_bundle, err);
    }
    for (size_t k = 0; k < sizeof aws_env / sizeof aws_env[0]; k++)
        unsetenv(aws_env[k]);
}

/* ---- signer vs botocore -------------------------------------------------------------- */

typedef struct sig_case {
    char *name, *method, *host, *bucket, *key, *body, *payload, *akid, *secret, *token;
    char *region, *path, *date, *auth;
    int vhost;
    long long time;
    s3_query_param query[16];
    size_t n_query;
    s3_header headers[16];
    size_t n_headers;
    size_t key_len, body_len;
} sig_case;

static void run_sig_case(sig_case *k, s3_signer *signer)
{
    /* our canonical URI for bucket/key, as s3_call_prepare builds it */
    s3_buf path;
    s3_buf_init(&path, 1 << 16);
    s3_buf_append(&path, "/", 1);
    if (k->bucket && !k->vhost) {
        s3_uri_encode(&path, s3_slice_cstr(k->bucket), 0);
        if (k->key)
            s3_buf_append(&path, "/", 1);
    }
    if (k->key)
        s3_uri_encode(&path, (s3_slice){k->key, k->key_len}, 1);
    tap_ok(strcmp(path.ptr, k->path) == 0, "sigv4 %s: canonical URI %s (got %s)", k->name,
           k->path, path.ptr);
    if (k->body && strcmp(k->payload, "UNSIGNED-PAYLOAD") != 0) {
        char hex[65];
        s3_sha256_hex(k->body, k->body_len, hex);
        tap_ok(strcmp(hex, k->payload) == 0, "sigv4 %s: payload sha256", k->name);
    }
    s3_creds cr;
    memset(&cr, 0, sizeof cr);
    snprintf(cr.access_key, sizeof cr.access_key, "%s", k->akid);
    snprintf(cr.secret_key, sizeof cr.secret_key, "%s", k->secret);
    snprintf(cr.session_token, sizeof cr.session_token, "%s", k->token ? k->token : "");
    /* Re-init only when the identity changes, so that consecutive cases on different days
       exercise the signing-key cache (next-day is followed by a case on the first day). */
    if (strcmp(signer->access_key, cr.access_key) || strcmp(signer->region, k->region) ||
        strcmp(signer->session_token, cr.session_token))
        s3_signer_init(signer, &cr, k->region);
    s3_sign_input in = {
        .method = k->method,
        .host = k->host,
        .canonical_uri = path.ptr,
        .query = k->query,
        .n_query = k->n_query,
        .headers = k->headers,
        .n_headers = k->n_headers,
        .payload_sha256 = k->payload,
        .now = (time_t)k->time,
    };
    char auth[4096], date[17];
    int rc = s3_sign(signer, &in, auth, sizeof auth, date);
    tap_ok(rc == 0 && strcmp(auth, k->auth) == 0 && strcmp(date, k->date) == 0,
           "sigv4 %s: Authorization equals botocore's", k->name);
    if (rc || strcmp(auth, k->auth) != 0)
        tap_diag("want %s\n#  got %s (rc %d)", k->auth, auth, rc);
    s3_buf_cleanup(&path);
}

static void test_sigv4(void)
{
    char *text = fixture("tests/fixtures/sigv4/cases.txt", NULL), *cur = text, *line;
    if (!text)
        return;
    sig_case k;
    memset(&k, 0, sizeof k);
    s3_signer signer;
    memset(&signer, 0, sizeof signer);
    int n_cases = 0;
    while ((line = next_line(&cur))) {
        char *f[3];
        int nf = split_tabs(line, f, 3);
        const char *tag = f[0];
        if (nf >= 2) {
            unescape(f[1]);
            if (nf == 3)
                unescape(f[2]);
        }
        if (strcmp(tag, "case") == 0) {
            memset(&k, 0, sizeof k);
            k.name = f[1];
        } else if (strcmp(tag, "method") == 0) {
            k.method = f[1];
        } else if (strcmp(tag, "host") == 0) {
            k.host = f[1];
        } else if (strcmp(tag, "bucket") == 0) {
            k.bucket = f[1];
        } else if (strcmp(tag, "vhost") == 0) {
            k.vhost = 1;
        } else if (strcmp(tag, "key") == 0) {
            k.key = f[1];
            k.key_len = strlen(f[1]);
        } else if (strcmp(tag, "query") == 0 && nf == 3 && k.n_query < 16) {
            k.query[k.n_query++] = (s3_query_param){f[1], f[2]};
        } else if (strcmp(tag, "query-bare") == 0 && k.n_query < 16) {
            k.query[k.n_query++] = (s3_query_param){f[1], NULL};
        } else if (strcmp(tag, "header") == 0 && nf == 3 && k.n_headers < 16) {
            k.headers[k.n_headers++] = (s3_header){f[1], f[2]};
        } else if (strcmp(tag, "body") == 0) {
            k.body = f[1];
            k.body_len = strlen(f[1]);
        } else if (strcmp(tag, "payload") == 0) {
            k.payload = f[1];
        } else if (strcmp(tag, "akid") == 0) {
            k.akid = f[1];
        } else if (strcmp(tag, "secret") == 0) {
            k.secret = f[1];
        } else if (strcmp(tag, "token") == 0) {
            k.token = f[1];
        } else if (strcmp(tag, "region") == 0) {
            k.region = f[1];
        } else if (strcmp(tag, "time") == 0) {
            k.time = strtoll(f[1], NULL, 10);
        } else if (strcmp(tag, "path") == 0) {
            k.path = f[1];
        } else if (strcmp(tag, "date") == 0) {
            k.date = f[1];
        } else if (strcmp(tag, "auth") == 0) {
            k.auth = f[1];
        } else if (strcmp(tag, "end") == 0) {
            if (k.name && k.method && k.host && k.payload && k.akid && k.secret && k.region &&
                k.path && k.date && k.auth) {
                run_sig_case(&k, &signer);
                n_cases++;
            } else {
                tap_ok(0, "sigv4 case %s is complete", k.name ? k.name : "?");
            }
        }
    }
    tap_ok(n_cases >= 20, "sigv4: %d botocore cases run", n_cases);
    free(text);
}

/* ---- request building ---------------------------------------------------------------- */

static int has_header(const s3_call *c, const char *line, int prefix)
{
    for (const struct curl_slist *l = c->hdrs; l; l = l->next)
        if (prefix ? strncmp(l->data, line, strlen(line)) == 0 : strcmp(l->data, line) == 0)
            return 1;
    return 0;
}

static void local_endpoint(s3_endpoint *ep, int port)
{
    memset(ep, 0, sizeof *ep);
    snprintf(ep->base_url, sizeof ep->base_url, "http://127.0.0.1:%d", port);
    snprintf(ep->host, sizeof ep->host, "127.0.0.1:%d", port);
    snprintf(ep->region, sizeof ep->region, "us-east-1");
    ep->path_style = 1;
    snprintf(ep->creds.access_key, sizeof ep->creds.access_key, "AKIDTEST");
    snprintf(ep->creds.secret_key, sizeof ep->creds.secret_key, "secret");
}

static void test_prepare(void)
{
    s3_call c;
    if (!tap_ok(s3_call_init(&c) == 0, "s3_call_init"))
        return;
    s3_endpoint ep;
    local_endpoint(&ep, 9);
    snprintf(ep.creds.session_token, sizeof ep.creds.session_token, "tok");
    s3_signer sg;
    s3_signer_init(&sg, &ep.creds, ep.region);
    int marker = 0;
    curl_easy_setopt(c.easy, CURLOPT_PRIVATE, (void *)&marker);

    s3_request r = {.method = "GET", .bucket = "bkt", .key = "my dir/a+b", .n_query = 1};
    r.query[0] = (s3_query_param){"versionId", "v 1"};
    int rc = s3_call_prepare(&c, &ep, &sg, &r, NULL);
    tap_ok(rc == 0, "prepare GET");
    TAP_EQ_STR(c.url.ptr, "http://127.0.0.1:9/bkt/my%20dir/a%2Bb?versionId=v%201",
               "path-style URL with encoded key and query");
    tap_ok(has_header(&c, "Host: 127.0.0.1:9", 0) &&
               has_header(&c, "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0) &&
               has_header(&c, "x-amz-security-token: tok", 0) && has_header(&c, "Expect:", 0) &&
               has_header(&c, "x-amz-date: ", 1) &&
               has_header(&c, "Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/", 1),
           "signed headers, Authorization and an empty Expect are set");
    tap_ok(c.hdrs && strncmp(c.hdrs->data, "Host: ", 6) == 0, "Host is the first header");
    char *priv = NULL;
    curl_easy_getinfo(c.easy, CURLINFO_PRIVATE, &priv);
    tap_ok(priv == (char *)&marker, "CURLOPT_PRIVATE survives the reset");

    s3_endpoint aws;
    memset(&aws, 0, sizeof aws);
    snprintf(aws.region, sizeof aws.region, "us-west-2");
    snprintf(aws.host, sizeof aws.host, "s3.us-west-2.amazonaws.com");
    aws.is_https = 1;
    aws.creds = ep.creds;
    s3_request v = {.method = "HEAD", .bucket = "bkt", .key = "k/x"};
    tap_ok(s3_call_prepare(&c, &aws, &sg, &v, NULL) == 0 &&
               strcmp(c.url.ptr, "https://bkt.s3.us-west-2.amazonaws.com/k/x") == 0 &&
               has_header(&c, "Host: bkt.s3.us-west-2.amazonaws.com", 0),
           "virtual-hosted URL and Host (got %s)", c.url.ptr);
    v.bucket = "my.bucket";
    tap_ok(s3_call_prepare(&c, &aws, &sg, &v, NULL) == 0 &&
               strcmp(c.url.ptr, "https://s3.us-west-2.amazonaws.com/my.bucket/k/x") == 0,
           "a dotted bucket goes path-style (got %s)", c.url.ptr);

    s3_request t = {.method = "PUT", .bucket = "bkt", .key = "k", .n_query = 2, .n_headers = 2};
    t.query[0] = (s3_query_param){"tagging", NULL};
    t.query[1] = (s3_query_param){"versionId", "v"};
    t.headers[0] = (s3_header){"x-amz-tagging", ""};
    t.headers[1] = (s3_header){"content-type", "application/xml"};
    tap_ok(s3_call_prepare(&c, &ep, &sg, &t, NULL) == 0 &&
               strcmp(c.url.ptr, "http://127.0.0.1:9/bkt/k?tagging&versionId=v") == 0 &&
               has_header(&c, "x-amz-tagging;", 0) &&
               has_header(&c, "content-type: application/xml", 0),
           "bare query parameter, empty header value sent as \"name;\" (got %s)", c.url.ptr);

    s3_request s = {.method = "GET"};
    tap_ok(s3_call_prepare(&c, &ep, &sg, &s, NULL) == 0 &&
               strcmp(c.url.ptr, "http://127.0.0.1:9/") == 0,
           "service-level request (got %s)", c.url.ptr);
    s3_request l = {.method = "GET", .bucket = "bkt", .n_query = 1};
    l.query[0] = (s3_query_param){"versions", ""};
    tap_ok(s3_call_prepare(&c, &ep, &sg, &l, NULL) == 0 &&
               strcmp(c.url.ptr, "http://127.0.0.1:9/bkt?versions") == 0,
           "bucket-level request (got %s)", c.url.ptr);

    s3_request bad = {.method = "PUT", .bucket = "b", .key = "k", .n_headers = 1};
    bad.headers[0] = (s3_header){"x-amz-meta-a", "1\r\nx-evil: 2"};
    tap_ok(s3_call_prepare(&c, &ep, &sg, &bad, NULL) == S3_E_ARG, "CR/LF in a header refused");
    bad.headers[0] = (s3_header){"Content-Length", "5"};
    tap_ok(s3_call_prepare(&c, &ep, &sg, &bad, NULL) == S3_E_ARG,
           "a header the call sets itself is refused");
    s3_request getbody = {.method = "GET", .bucket = "b", .key = "k", .body = "x", .body_len = 1};
    tap_ok(s3_call_prepare(&c, &ep, &sg, &getbody, NULL) == S3_E_ARG, "GET with a body refused");
    s3_call_cleanup(&c);
    s3_call_cleanup(&c); /* idempotent */
}

/* ---- real transfers against a one-shot local server ---------------------------------- */

typedef struct server {
    int fd, port;
    const char *responses[4];
    size_t response_lens[4];
    int n_responses;
    char req[4][8192];
    int served;
    pthread_t th;
} server;

static void *server_main(void *arg)
{
    server *s = arg;
    for (int i = 0; i < s->n_responses; i++) {
        int cfd = accept(s->fd, NULL, NULL);
        if (cfd < 0)
            break;
        struct timeval tv = {5, 0};
        setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        size_t got = 0, need = (size_t)-1;
        char *buf = s->req[i];
        while (got < sizeof s->req[i] - 1 && got < need) {
            ssize_t n = recv(cfd, buf + got, sizeof s->req[i] - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            if (end && need == (size_t)-1) {
                size_t body = 0;
                char *cl = strcasestr(buf, "\r\ncontent-length:");
                if (cl && cl < end)
                    body = (size_t)strtoul(cl + 17, NULL, 10);
                need = (size_t)(end + 4 - buf) + body;
            }
        }
        size_t off = 0;
        while (off < s->response_lens[i]) {
            ssize_t n = send(cfd, s->responses[i] + off, s->response_lens[i] - off, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        close(cfd);
        s->served++;
    }
    return NULL;
}

static int server_start(server *s)
{
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->fd, 4) != 0 || getsockname(s->fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    s->port = ntohs(a.sin_port);
    for (int i = 0; i < s->n_responses; i++)
        if (!s->response_lens[i])
            s->response_lens[i] = strlen(s->responses[i]);
    return pthread_create(&s->th, NULL, server_main, s);
}

static void server_stop(server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->fd);
}

/* "HTTP/1.1 ..." head lines (no Content-Length) + body -> a full response. Caller frees. */
static char *http_resp(const char *head, const char *body)
{
    size_t n = strlen(head) + strlen(body) + 64;
    char *r = malloc(n);
    snprintf(r, n, "%sContent-Length: %zu\r\n\r\n%s", head, strlen(body), body);
    return r;
}

static void test_http(void)
{
    /* empty PUT: Content-Length: 0, no Expect, no chunked; response headers captured */
    server s = {.n_responses = 1};
    s.responses[0] = "HTTP/1.1 200 OK\r\nX-AMZ-VERSION-ID: v1\r\nETAG:  \"e\"  \r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n";
    if (!tap_ok(server_start(&s) == 0, "local server starts"))
        return;
    s3_endpoint ep;
    local_endpoint(&ep, s.port);
    s3_request r = {.method = "PUT", .bucket = "bkt", .key = "empty key"};
    s3_response resp;
    s3_outcome oc;
    int rc = s3_perform(&ep, &r, &resp, &oc);
    server_stop(&s);
    tap_ok(rc == 0 && oc.http_status == 200 && strcmp(resp.version_id, "v1") == 0 &&
               strcmp(resp.etag, "\"e\"") == 0 && resp.content_length == 0,
           "empty PUT: 200, x-amz-version-id and ETag captured without regard to case "
           "(rc %d, status %ld, vid %s, etag %s)", rc, oc.http_status, resp.version_id, resp.etag);
    tap_ok(strncmp(s.req[0], "PUT /bkt/empty%20key HTTP/1.1\r\n", 31) == 0 &&
               strcasestr(s.req[0], "\r\nContent-Length: 0\r\n") &&
               !strcasestr(s.req[0], "\r\nExpect:") &&
               !strcasestr(s.req[0], "\r\nTransfer-Encoding:") &&
               strcasestr(s.req[0], "\r\nHost: 127.0.0.1:"),
           "empty PUT request line and Content-Length: 0 as sent");
    s3_response_cleanup(&resp);

    /* dot segments are sent as they are (CURLOPT_PATH_AS_IS): curl would otherwise send
       "x/../a/key" as "/bkt/a/key" (another key) and "../../v/o" as "/v/o" (another bucket) */
    static const struct {
        const char *key, *line;
    } dots[] = {{"x/../a/key", "DELETE /bkt/x/../a/key HTTP/1.1\r\n"},
                {"../../v/o", "DELETE /bkt/../../v/o HTTP/1.1\r\n"},
                {"./k/.", "DELETE /bkt/./k/. HTTP/1.1\r\n"},
                {"a//b", "DELETE /bkt/a//b HTTP/1.1\r\n"}};
    for (size_t i = 0; i < sizeof dots / sizeof dots[0]; i++) {
        server d = {.n_responses = 1};
        d.responses[0] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        server_start(&d);
        local_endpoint(&ep, d.port);
        s3_request dr = {.method = "DELETE", .bucket = "bkt", .key = dots[i].key};
        rc = s3_perform(&ep, &dr, &resp, &oc);
        server_stop(&d);
        tap_ok(rc == 0 && strncmp(d.req[0], dots[i].line, strlen(dots[i].line)) == 0,
               "key \"%s\" sent as it is: %.*s", dots[i].key, (int)strlen(dots[i].line) - 2,
               d.req[0]);
        s3_response_cleanup(&resp);
    }
    s3_request bad = {.method = "GET", .bucket = "..", .key = "k"};
    tap_ok(s3_perform(&ep, &bad, &resp, &oc) == S3_E_ARG,
           "a bucket name S3 refuses (\"..\") is never sent");
    s3_response_cleanup(&resp);

    /* HEAD on a delete marker (moto/AWS: 405 with headers, no body) */
    server h = {.n_responses = 1};
    h.responses[0] = "HTTP/1.1 405 METHOD NOT ALLOWED\r\nx-amz-delete-marker: true\r\n"
                     "x-amz-version-id: dm1\r\nLast-Modified: Wed, 25 Nov 2026 10:00:00 GMT\r\n"
                     "content-type: application/xml\r\nContent-Length: 18\r\n"
                     "x-amz-storage-class: GLACIER_IR\r\n\r\n";
    server_start(&h);
    local_endpoint(&ep, h.port);
    s3_request hr = {.method = "HEAD", .bucket = "bkt", .key = "k", .n_query = 1};
    hr.query[0] = (s3_query_param){"versionId", "dm1"};
    rc = s3_perform(&ep, &hr, &resp, &oc);
    server_stop(&h);
    tap_ok(rc == S3_E_HTTP && oc.http_status == 405 && !oc.retryable && resp.delete_marker &&
               strcmp(resp.version_id, "dm1") == 0 && resp.content_length == 18 &&
               strcmp(resp.last_modified, "Wed, 25 Nov 2026 10:00:00 GMT") == 0 &&
               strcmp(resp.content_type, "application/xml") == 0 &&
               strcmp(resp.storage_class, "GLACIER_IR") == 0,
           "HEAD 405 on a delete marker: headers captured, not retried (rc %d status %ld "
           "retry %d dm %d vid %s cl %lld lm %s ct %s sc %s)", rc, oc.http_status, oc.retryable,
           resp.delete_marker, resp.version_id, resp.content_length, resp.last_modified,
           resp.content_type, resp.storage_class);
    tap_ok(strncmp(h.req[0], "HEAD /bkt/k?versionId=dm1 HTTP/1.1\r\n", 36) == 0,
           "HEAD request line");
    s3_response_cleanup(&resp);

    /* keep_headers: every header kept, names lower-cased; a sink takes a 2xx body */
    server kh = {.n_responses = 1};
    kh.responses[0] = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nX-Amz-Meta-Color: "
                      "blue \r\nx-amz-object-lock-mode: GOVERNANCE\r\nContent-Length: 5\r\n"
                      "\r\nhello";
    server_start(&kh);
    local_endpoint(&ep, kh.port);
    s3_buf sink;
    s3_buf_init(&sink, 1024);
    s3_request kr = {.method = "GET", .bucket = "bkt", .key = "k", .keep_headers = 1,
                     .sink = &sink};
    rc = s3_perform(&ep, &kr, &resp, &oc);
    server_stop(&kh);
    const char *hn, *hv;
    size_t hpos = 0, nh = 0;
    while ((hpos = s3_response_header_next(&resp, hpos, &hn, &hv)) != 0)
        nh++;
    tap_ok(rc == 0 && nh == 4 && s3_response_header(&resp, "x-amz-meta-color") &&
               strcmp(s3_response_header(&resp, "x-amz-meta-color"), "blue") == 0 &&
               strcmp(s3_response_header(&resp, "content-encoding"), "gzip") == 0 &&
               !s3_response_header(&resp, "etag") && sink.len == 5 &&
               memcmp(sink.ptr, "hello", 5) == 0 && resp.body.len == 0,
           "kept headers (%zu) and a 2xx body in the sink (%zu bytes)", nh, sink.len);
    s3_buf_cleanup(&sink);
    s3_response_cleanup(&resp);

    /* PUT from memory with a content type */
    server p = {.n_responses = 1};
    p.responses[0] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    server_start(&p);
    local_endpoint(&ep, p.port);
    rc = s3_put_bytes(&ep, "bkt", "reports/a.csv", "a,b\nc,d\n\"x\"", 11, "text/csv", &oc);
    server_stop(&p);
    char *body = strstr(p.req[0], "\r\n\r\n");
    tap_ok(rc == 0 && strcasestr(p.req[0], "\r\nContent-Length: 11\r\n") &&
               strcasestr(p.req[0], "\r\ncontent-type: text/csv\r\n") && body &&
               strcmp(body + 4, "a,b\nc,d\n\"x\"") == 0,
           "s3_put_bytes sends the body, its length and type");
    char sha[65], want[100];
    s3_sha256_hex("a,b\nc,d\n\"x\"", 11, sha);
    snprintf(want, sizeof want, "\r\nx-amz-content-sha256: %s\r\n", sha);
    tap_ok(strcasestr(p.req[0], want) != NULL, "the payload hash is the body's sha256");

    /* GET to a file; then a 404 whose body must not reach the file */
    server g = {.n_responses = 2};
    g.responses[0] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello file";
    char *r404 = http_resp("HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n",
                           "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                           "<Error><Code>NoSuchKey</Code><Message>nope</Message></Error>");
    g.responses[1] = r404;
    server_start(&g);
    local_endpoint(&ep, g.port);
    FILE *f = tmpfile();
    rc = s3_get_to_file(&ep, "bkt", "manifest.csv", "v9", f, &resp, &oc);
    char got[64] = "";
    rewind(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    tap_ok(rc == 0 && strcmp(got, "hello file") == 0 &&
               strncmp(g.req[0], "GET /bkt/manifest.csv?versionId=v9 HTTP/1.1", 43) == 0,
           "s3_get_to_file writes the body to the file (got \"%s\")", got);
    s3_response_cleanup(&resp);
    FILE *f2 = tmpfile();
    rc = s3_get_to_file(&ep, "bkt", "missing", NULL, f2, &resp, &oc);
    server_stop(&g);
    tap_ok(rc == S3_E_HTTP && oc.http_status == 404 && strcmp(oc.code, "NoSuchKey") == 0 &&
               ftell(f2) == 0 && resp.body.len > 0,
           "a 404 body goes to the response, not the file (code %s)", oc.code);
    s3_response_cleanup(&resp);
    free(r404);
    fclose(f);
    fclose(f2);

    /* 503 SlowDown twice, then 200: s3_perform retries */
    server t = {.n_responses = 3};
    t.responses[0] = "HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n";
    t.responses[1] = "HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n";
    t.responses[2] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    server_start(&t);
    local_endpoint(&ep, t.port);
    s3_request tr = {.method = "GET", .bucket = "bkt", .key = "k"};
    rc = s3_perform(&ep, &tr, &resp, &oc);
    server_stop(&t);
    tap_ok(rc == 0 && t.served == 3 && resp.body.len == 2 && strcmp(resp.body.ptr, "ok") == 0,
           "s3_perform retries 503 and returns the third answer (served %d)", t.served);
    s3_response_cleanup(&resp);

    /* CompleteMultipartUpload-like POST answered 200 + <Error>, on a bare s3_call */
    server c2 = {.n_responses = 1};
    char *r200 = http_resp("HTTP/1.1 200 OK\r\n",
                           "<Error><Code>InternalError</Code><Message>x</Message></Error>\n");
    c2.responses[0] = r200;
    server_start(&c2);
    local_endpoint(&ep, c2.port);
    s3_call call;
    s3_call_init(&call);
    s3_signer sg;
    s3_signer_init(&sg, &ep.creds, ep.region);
    s3_request pr = {.method = "POST", .bucket = "bkt", .key = "mp", .n_query = 1,
                     .body = "<CompleteMultipartUpload/>", .body_len = 26};
    pr.query[0] = (s3_query_param){"uploadId", "u/1"};
    rc = s3_call_prepare(&call, &ep, &sg, &pr, NULL);
    CURLcode cc = curl_easy_perform(call.easy);
    s3_outcome_classify(&call, (int)cc, 1, &oc);
    server_stop(&c2);
    free(r200);
    tap_ok(rc == 0 && cc == CURLE_OK && oc.http_status == 200 && oc.error_in_200 &&
               oc.retryable && strcmp(oc.code, "InternalError") == 0,
           "POST answered 200 + <Error> is error_in_200 and retryable");
    tap_ok(strncmp(c2.req[0], "POST /bkt/mp?uploadId=u%2F1 HTTP/1.1", 36) == 0 &&
               !strcasestr(c2.req[0], "x-www-form-urlencoded") &&
               strcasestr(c2.req[0], "\r\nContent-Length: 26\r\n"),
           "POST request: encoded query, no form content type, Content-Length");

    /* a body over S3_BODY_MAX_BYTES aborts the transfer and is not retryable */
    size_t big = S3_BODY_MAX_BYTES + 4096;
    char head[128];
    int hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", big);
    char *huge = malloc((size_t)hl + big);
    memcpy(huge, head, (size_t)hl);
    memset(huge + hl, 'x', big);
    server b = {.n_responses = 1};
    b.responses[0] = huge;
    b.response_lens[0] = (size_t)hl + big;
    server_start(&b);
    local_endpoint(&ep, b.port);
    s3_request br = {.method = "GET", .bucket = "bkt", .key = "big"};
    rc = s3_call_prepare(&call, &ep, &sg, &br, NULL);
    cc = curl_easy_perform(call.easy);
    s3_outcome_classify(&call, (int)cc, 0, &oc);
    server_stop(&b);
    free(huge);
    tap_ok(cc == CURLE_WRITE_ERROR && !oc.retryable && strstr(oc.message, "larger than"),
           "a body over the cap stops the transfer: %s", oc.message);
    s3_call_cleanup(&call);
}

/* Bucket naming rules (s3/names.c; S3 User Guide "Bucket naming rules"). */
static void test_bucket_names(void)
{
    static const struct {
        const char *name;
        int ok;
    } cases[] = {
        {"abc", 1}, {"my-bucket.example", 1}, {"0ab", 1}, {"a.b-c.1", 1},
        {"a23456789012345678901234567890123456789012345678901234567890123", 1},
        /* older us-east-1 names: upper case, '_', up to 255 (AWS's "my_manifests") */
        {"my_manifests", 1}, {"UPPER", 1}, {"a234567890123456789012345678901234567890123456789012345678901234", 1},
        {"", 0}, {"ab", 0}, {".", 0}, {"..", 0}, {"...", 0}, {"a..b", 0}, {".ab", 0},
        {"ab.", 0}, {"-ab", 0}, {"ab-", 0}, {"_ab", 0}, {"a/b", 0}, {"a%2Fb", 0}, {"a?b", 0},
        {"a#b", 0}, {"a b", 0}, {"a\\b", 0}, {"192.168.5.4", 0}, {"1.2.3.4", 0}, {"1.2.3", 1},
        {"1.2.3.4.5", 1}, {"1234.2.3.4", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = s3_bucket_name_problem(s3_slice_cstr(cases[i].name));
        tap_ok((why == NULL) == cases[i].ok, "bucket name \"%s\" %s (%s)", cases[i].name,
               cases[i].ok ? "accepted" : "refused", why ? why : "valid");
    }
    char long_name[257];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[255] = '\0';
    tap_ok(!s3_bucket_name_problem(s3_slice_cstr(long_name)), "a 255-character name accepted");
    long_name[255] = 'a';
    long_name[256] = '\0';
    tap_ok(s3_bucket_name_problem(s3_slice_cstr(long_name)) != NULL,
           "a 256-character name refused");
}

/* Local paths of S3 keys never leave their root: "." and ".." segments are escaped. */
static void test_key_local_path(void)
{
    static const struct {
        const char *key, *want;
    } cases[] = {
        {"a/b.csv", "/r/a/b.csv"},
        {"../x", "/r/%2E%2E/x"},
        {"a/../../x", "/r/a/%2E%2E/%2E%2E/x"},
        {"./a/.", "/r/%2E/a/%2E"},
        {"..", "/r/%2E%2E"},
        {"a//b", "/r/a//b"},
        {"...", "/r/..."},
        {".a/..b/a..", "/r/.a/..b/a.."},
        {"%2E%2E/y", "/r/%2E%2E/y"},
        {"", "/r/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        int rc = s3_key_local_path(out, sizeof out, "/r", cases[i].key);
        tap_ok(rc == 0 && strcmp(out, cases[i].want) == 0, "local path of \"%s\" is %s (got %s)",
               cases[i].key, cases[i].want, rc == 0 ? out : "an error");
    }
    char small[8];
    tap_ok(s3_key_local_path(small, sizeof small, "/r", "../abc") != 0 && small[0] == '\0',
           "a local path that does not fit is an error and \"\", not a cut path");
    tap_ok(s3_key_local_path(small, sizeof small, "/r", "abcd") == 0 &&
               strcmp(small, "/r/abcd") == 0,
           "a path that just fits (7 bytes and the NUL in 8) is written whole");
}

int main(void)
{
    test_buf();
    test_uri_encode();
    test_uri_decode();
    test_copy_source();
    test_time();
    test_xml_error();
    test_xml_find();
    test_list_versions();
    test_outcome();
    test_endpoint();
    test_sigv4();
    test_prepare();
    test_http();
    test_bucket_names();
    test_key_local_path();
    return tap_done();
}
