/*
 * call.c — one S3 request on a reusable curl easy handle: URL, signature, headers, body,
 * response capture, and what the outcome means.
 *
 * s3_call_prepare resets the handle (curl_easy_reset keeps the connection and DNS caches of
 * the multi handle, so keep-alive survives) and sets every option again; nothing of the
 * previous request leaks into the next one. The Host header is set explicitly to the value
 * that was signed: curl would drop an explicit default port (":80") and the signature would
 * no longer match.
 *
 * Response capture: the status line and the headers batchrep uses (matched without regard
 * to case, values trimmed, cut to the field size) go into call->resp; a new status line
 * (redirect, 1xx) clears them. The body goes into a buffer capped at S3_BODY_MAX_BYTES: it
 * is for XML answers, never object data, and a larger body aborts the transfer
 * (CURLE_WRITE_ERROR) instead of growing without bound.
 *
 * Classification follows ../shared/aws-formats.md 8.1 and 8.3 and botocore's standard retry
 * mode: connection errors, 500/502/503/504 and the transient or throttling S3 codes are
 * retryable; a 200 whose body is <Error>, or (for CopyObject, UploadPartCopy,
 * CompleteMultipartUpload) is empty or not XML, is an error and retryable.
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define URL_MAX_BYTES (64u << 10)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
    /* Process lifetime; libcurl 7.84+ makes this call thread-safe, the once keeps it cheap. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int s3_call_init(s3_call *c)
{
    memset(c, 0, sizeof *c);
    pthread_once(&curl_once, curl_init);
    c->easy = curl_easy_init();
    if (!c->easy)
        return S3_E_NOMEM;
    s3_buf_init(&c->url, URL_MAX_BYTES);
    s3_buf_init(&c->resp.body, S3_BODY_MAX_BYTES);
    s3_buf_init(&c->resp.headers, S3_HEADERS_MAX_BYTES);
    c->resp.content_length = -1;
    return S3_E_OK;
}

void s3_call_cleanup(s3_call *c)
{
    if (!c)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    c->easy = NULL;
    curl_slist_free_all(c->hdrs);
    c->hdrs = NULL;
    s3_buf_cleanup(&c->url);
    s3_buf_cleanup(&c->resp.body);
    s3_buf_cleanup(&c->resp.headers);
}

void s3_response_cleanup(s3_response *r)
{
    if (r) {
        s3_buf_cleanup(&r->body);
        s3_buf_cleanup(&r->headers);
    }
}

size_t s3_response_header_next(const s3_response *r, size_t pos, const char **out_name,
                               const char **out_value)
{
    if (!r->headers.ptr || pos >= r->headers.len)
        return 0;
    const char *name = r->headers.ptr + pos;
    const char *value = name + strlen(name) + 1;
    *out_name = name;
    *out_value = value;
    return (size_t)(value + strlen(value) + 1 - r->headers.ptr);
}

const char *s3_response_header(const s3_response *r, const char *name_lower)
{
    const char *n, *v;
    for (size_t pos = 0; (pos = s3_response_header_next(r, pos, &n, &v)) != 0;)
        if (strcmp(n, name_lower) == 0)
            return v;
    return NULL;
}

static void response_clear_headers(s3_response *r)
{
    r->status = 0;
    r->version_id[0] = '\0';
    r->copy_source_version_id[0] = '\0';
    r->delete_marker = 0;
    r->etag[0] = '\0';
    r->last_modified[0] = '\0';
    r->content_type[0] = '\0';
    r->storage_class[0] = '\0';
    r->replication_status[0] = '\0';
    r->retry_after[0] = '\0';
    r->content_length = -1;
    s3_buf_reset(&r->headers);
}

/* ---- callbacks ----------------------------------------------------------------------- */

size_t s3__body_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    s3_call *c = userdata;
    size_t n = size * nmemb;
    s3_buf *dst = c->sink && c->resp.status >= 200 && c->resp.status < 300 ? c->sink
                                                                           : &c->resp.body;
    if (s3_buf_append(dst, ptr, n) != S3_E_OK)
        return 0; /* over the cap (or no memory): curl stops with CURLE_WRITE_ERROR */
    return n;
}

enum hfield {
    H_ETAG,
    H_RETRY_AFTER,
    H_AMZ_RETRY_AFTER,
    H_CONTENT_TYPE,
    H_LAST_MODIFIED,
    H_CONTENT_LENGTH,
    H_VERSION_ID,
    H_STORAGE_CLASS,
    H_DELETE_MARKER,
    H_COPY_SOURCE_VERSION_ID,
    H_REPLICATION_STATUS,
};

#define HNAME(s) s, sizeof s - 1
static const struct {
    const char *name; /* lower-case */
    size_t len;
    enum hfield field;
} captured[] = {
    {HNAME("etag"), H_ETAG},
    {HNAME("retry-after"), H_RETRY_AFTER},
    {HNAME("x-amz-retry-after"), H_AMZ_RETRY_AFTER},
    {HNAME("content-type"), H_CONTENT_TYPE},
    {HNAME("last-modified"), H_LAST_MODIFIED},
    {HNAME("content-length"), H_CONTENT_LENGTH},
    {HNAME("x-amz-version-id"), H_VERSION_ID},
    {HNAME("x-amz-storage-class"), H_STORAGE_CLASS},
    {HNAME("x-amz-delete-marker"), H_DELETE_MARKER},
    {HNAME("x-amz-copy-source-version-id"), H_COPY_SOURCE_VERSION_ID},
    {HNAME("x-amz-replication-status"), H_REPLICATION_STATUS},
};

/* Long on purpose (~95 lines): one branch per response header we keep (the table above
   names them), on the hot path: no function call per header. */
static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    s3_call *c = userdata;
    s3_response *r = &c->resp;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* "HTTP/1.1 200 OK": a new response starts, forget the previous one's headers */
        response_clear_headers(r);
        s3_buf_reset(&r->body);
        size_t i = 5;
        while (i < n && buf[i] != ' ')
            i++;
        long st = 0;
        int nd = 0;
        for (i++; i < n && buf[i] >= '0' && buf[i] <= '9' && nd < 3; i++, nd++)
            st = st * 10 + (buf[i] - '0');
        r->status = nd == 3 ? st : 0;
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon)
        return n;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1, *end = buf + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' ||
                       end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (c->keep_headers) {
        /* "name\0value\0", name lower-cased; past the cap the rest is dropped */
        static const char nul = '\0';
        size_t at = r->headers.len;
        if (s3_buf_append(&r->headers, buf, nlen) == S3_E_OK &&
            s3_buf_append(&r->headers, &nul, 1) == S3_E_OK &&
            s3_buf_append(&r->headers, v, vlen) == S3_E_OK &&
            s3_buf_append(&r->headers, &nul, 1) == S3_E_OK) {
            for (size_t i = at; i < at + nlen; i++)
                if (r->headers.ptr[i] >= 'A' && r->headers.ptr[i] <= 'Z')
                    r->headers.ptr[i] = (char)(r->headers.ptr[i] - 'A' + 'a');
        } else {
            r->headers.len = at;
            r->headers.ptr[at] = '\0';
        }
    }
    for (size_t i = 0; i < sizeof captured / sizeof captured[0]; i++) {
        if (captured[i].len != nlen || !s3__ieq(buf, nlen, captured[i].name))
            continue; /* the length test rejects most headers without a byte compared */
        switch (captured[i].field) {
        case H_ETAG:
            s3__copy_str(r->etag, sizeof r->etag, v, vlen);
            break;
        case H_RETRY_AFTER:
            s3__copy_str(r->retry_after, sizeof r->retry_after, v, vlen);
            break;
        case H_AMZ_RETRY_AFTER:
            if (!r->retry_after[0])
                s3__copy_str(r->retry_after, sizeof r->retry_after, v, vlen);
            break;
        case H_CONTENT_TYPE:
            s3__copy_str(r->content_type, sizeof r->content_type, v, vlen);
            break;
        case H_LAST_MODIFIED:
            s3__copy_str(r->last_modified, sizeof r->last_modified, v, vlen);
            break;
        case H_CONTENT_LENGTH: {
            long long cl = 0;
            size_t k = 0;
            for (; k < vlen && v[k] >= '0' && v[k] <= '9' && cl < (1LL << 60); k++)
                cl = cl * 10 + (v[k] - '0');
            r->content_length = (k == vlen && vlen > 0) ? cl : -1;
            break;
        }
        case H_VERSION_ID:
            s3__copy_str(r->version_id, sizeof r->version_id, v, vlen);
            break;
        case H_STORAGE_CLASS:
            s3__copy_str(r->storage_class, sizeof r->storage_class, v, vlen);
            break;
        case H_DELETE_MARKER:
            r->delete_marker = s3__ieq(v, vlen, "true");
            break;
        case H_COPY_SOURCE_VERSION_ID:
            s3__copy_str(r->copy_source_version_id, sizeof r->copy_source_version_id, v,
                         vlen);
            break;
        case H_REPLICATION_STATUS:
            s3__copy_str(r->replication_status, sizeof r->replication_status, v, vlen);
            break;
        }
        break;
    }
    return n;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    s3_call *c = userdata;
    size_t n = size * nitems;
    if (n > c->upload_left)
        n = c->upload_left;
    if (n) {
        memcpy(buf, c->upload_ptr, n);
        c->upload_ptr += n;
        c->upload_left -= n;
    }
    return n;
}

/* curl rewinds the body when it re-sends a request on a new connection (a kept-alive one
   the server had closed); without this it fails with CURLE_SEND_FAIL_REWIND. */
static int seek_cb(void *userdata, curl_off_t offset, int origin)
{
    s3_call *c = userdata;
    if (origin != SEEK_SET || offset < 0 || (curl_off_t)c->upload_total < offset)
        return CURL_SEEKFUNC_CANTSEEK;
    c->upload_ptr = c->upload_base + offset;
    c->upload_left = c->upload_total - (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* ---- request building ---------------------------------------------------------------- */

/* A bucket name that can be the first label of a host name (botocore's
   check_dns_name: lower-case letters, digits, '-', no dots since TLS wildcards cover one
   label only). Others go path-style even when virtual-hosted style is configured. */
static int dns_compatible(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63 || b[0] == '-' || b[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

/* Header names whose value the call sets itself; a caller passing them is a bug. */
static int is_forbidden_header(const char *name, size_t n)
{
    return s3__ieq(name, n, "authorization") || s3__ieq(name, n, "content-length") ||
           s3__ieq(name, n, "expect") || s3__ieq(name, n, "transfer-encoding") ||
           s3__ieq(name, n, "host") || s3__ieq(name, n, "x-amz-date") ||
           s3__ieq(name, n, "x-amz-security-token");
}

static int valid_header(const s3_header *h)
{
    if (!h->name || !h->name[0] || !h->value)
        return 0;
    for (const char *p = h->name; *p; p++)
        if (*p == ':' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            return 0;
    for (const char *p = h->value; *p; p++)
        if (*p == '\r' || *p == '\n')
            return 0; /* would split the header: request smuggling */
    return 1;
}

static int add_raw(s3_call *c, const char *line)
{
    struct curl_slist *l = curl_slist_append(c->hdrs, line);
    if (!l)
        return S3_E_NOMEM;
    c->hdrs = l;
    return S3_E_OK;
}

/* Appends "name: value" (or "name;" for an empty value, curl's way to send one). */
static int add_header(s3_call *c, const char *name, size_t nlen, const char *value)
{
    char stack[4096];
    /* Sent without leading/trailing blanks: the signature covers the trimmed value, and
       not every server strips them (werkzeug keeps a trailing space in x-amz-meta-*). */
    while (*value == ' ' || *value == '\t')
        value++;
    size_t vlen = strlen(value);
    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        vlen--;
    size_t need = nlen + 2 + vlen + 1;
    char *line = need <= sizeof stack ? stack : malloc(need);
    if (!line)
        return S3_E_NOMEM;
    memcpy(line, name, nlen);
    size_t len = nlen;
    if (vlen) {
        line[len++] = ':';
        line[len++] = ' ';
        memcpy(line + len, value, vlen);
        len += vlen;
    } else {
        line[len++] = ';';
    }
    line[len] = '\0';
    int rc = add_raw(c, line);
    if (line != stack)
        free(line);
    return rc;
}

/* Builds "URL\0PATH" into c->url: c->url.ptr is the URL as a C string, and the canonical
   URI (exactly the path that is sent) follows its NUL. Also writes the Host value. */
static int build_url(s3_call *c, const s3_endpoint *ep, const s3_request *req, int path_style,
                     char *host, size_t host_cap, size_t *out_path_off)
{
    s3_buf *u = &c->url;
    s3_buf_reset(u);
    const char *ep_host = ep->host;
    char derived[sizeof ep->host];
    if (!ep_host[0]) {
        if (ep->base_url[0]) { /* hand-made endpoint: take host[:port] from the URL */
            const char *h = strstr(ep->base_url, "://");
            h = h ? h + 3 : ep->base_url;
            s3__copy_str(derived, sizeof derived, h, strcspn(h, "/"));
        } else {
            snprintf(derived, sizeof derived, "s3.%s.amazonaws.com",
                     ep->region[0] ? ep->region : "us-east-1");
        }
        ep_host = derived;
    }
    /* the scheme is the base URL's; no base URL means AWS, always https */
    const char *scheme = "https://";
    if (ep->base_url[0] && strncmp(ep->base_url, "http://", 7) == 0)
        scheme = "http://";
    int virt = req->bucket && !path_style;
    int rc = s3_buf_append_str(u, scheme);
    if (virt) {
        if (!rc)
            rc = s3_buf_append_str(u, req->bucket);
        if (!rc)
            rc = s3_buf_append(u, ".", 1);
    }
    size_t host_off = u->len - (virt ? strlen(req->bucket) + 1 : 0);
    if (!rc)
        rc = s3_buf_append_str(u, ep_host);
    if (rc)
        return rc;
    if (!s3__copy_str(host, host_cap, u->ptr + host_off, u->len - host_off))
        return S3_E_TOO_BIG;
    size_t path_start = u->len;
    rc = s3_buf_append(u, "/", 1);
    if (!rc && req->bucket && !virt) {
        rc = s3_uri_encode(u, s3_slice_cstr(req->bucket), 0);
        if (!rc && req->key && req->key[0])
            rc = s3_buf_append(u, "/", 1);
    }
    if (!rc && req->key && req->key[0])
        rc = s3_uri_encode(u, s3_slice_cstr(req->key), 1);
    size_t path_end = u->len;
    for (size_t i = 0; !rc && i < req->n_query; i++) {
        const s3_query_param *q = &req->query[i];
        rc = s3_buf_append(u, i ? "&" : "?", 1);
        if (!rc)
            rc = s3_uri_encode(u, s3_slice_cstr(q->name), 0);
        if (!rc && q->value && q->value[0]) {
            rc = s3_buf_append(u, "=", 1);
            if (!rc)
                rc = s3_uri_encode(u, s3_slice_cstr(q->value), 0);
        }
    }
    /* then "\0PATH" */
    if (!rc)
        rc = s3__buf_reserve(u, 1 + (path_end - path_start));
    if (rc)
        return rc;
    size_t url_len = u->len;
    u->ptr[url_len] = '\0';
    memcpy(u->ptr + url_len + 1, u->ptr + path_start, path_end - path_start);
    u->len = url_len + 1 + (path_end - path_start);
    u->ptr[u->len] = '\0';
    *out_path_off = url_len + 1;
    return S3_E_OK;
}

#define SETOPT(opt, val)                                                                   \
    do {                                                                                   \
        if (curl_easy_setopt(c->easy, opt, val) != CURLE_OK)                               \
            return S3_E_ARG;                                                               \
    } while (0)

/* Long on purpose (~150 lines): one request from top to bottom (validate, URL, sign,
   headers, curl options by method); each step is short and used only here. */
int s3_call_prepare(s3_call *c, const s3_endpoint *ep, s3_signer *signer,
                    const s3_request *req, const s3_call_opts *opts)
{
    if (!c->easy || !ep || !signer || !req || !req->method || req->n_query > S3_MAX_QUERY ||
        req->n_headers > S3_MAX_HEADERS || (req->key && req->key[0] && !req->bucket) ||
        (req->body_len && !req->body))
        return S3_E_ARG;
    const char *m = req->method;
    int is_get = strcmp(m, "GET") == 0, is_head = strcmp(m, "HEAD") == 0;
    int is_put = strcmp(m, "PUT") == 0, is_post = strcmp(m, "POST") == 0;
    if ((is_get || is_head) && req->body_len)
        return S3_E_ARG;
    /* a name outside S3's rules ("..", "a/b") would put the request on another bucket */
    if (req->bucket && s3_bucket_name_problem(s3_slice_cstr(req->bucket)))
        return S3_E_ARG;

    /* curl_easy_reset clears CURLOPT_PRIVATE too; the owner may have set it once at init
       (the engine's slot pointer), so it survives the reset. Unset, it becomes c. */
    char *priv = NULL;
    curl_easy_getinfo(c->easy, CURLINFO_PRIVATE, &priv);
    curl_easy_reset(c->easy);
    curl_slist_free_all(c->hdrs);
    c->hdrs = NULL;
    response_clear_headers(&c->resp);
    s3_buf_reset(&c->resp.body);

    const char *payload = NULL;
    int has_content_type = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const s3_header *h = &req->headers[i];
        if (!valid_header(h))
            return S3_E_ARG;
        size_t n = strlen(h->name);
        if (is_forbidden_header(h->name, n))
            return S3_E_ARG;
        if (s3__ieq(h->name, n, "x-amz-content-sha256"))
            payload = h->value; /* caller's choice, e.g. UNSIGNED-PAYLOAD for a stream */
        if (s3__ieq(h->name, n, "content-type"))
            has_content_type = 1;
    }
    char body_sha[65];
    if (!payload) {
        if (req->body_len) {
            s3_sha256_hex(req->body, req->body_len, body_sha);
            payload = body_sha;
        } else {
            payload = S3__EMPTY_SHA256;
        }
    }

    int path_style = ep->path_style || !req->bucket || !dns_compatible(req->bucket);
    char host[sizeof ep->host + 64];
    size_t path_off;
    int rc = build_url(c, ep, req, path_style, host, sizeof host, &path_off);
    if (rc)
        return rc;

    s3_sign_input in = {
        .method = m,
        .host = host,
        .canonical_uri = c->url.ptr + path_off,
        .query = req->query,
        .n_query = req->n_query,
        .headers = req->headers,
        .n_headers = req->n_headers,
        .payload_sha256 = payload,
        .now = time(NULL),
    };
    char auth[4096], amz_date[17];
    rc = s3_sign(signer, &in, auth, sizeof auth, amz_date);
    if (rc)
        return rc;

    rc = add_header(c, "Host", 4, host);
    if (!rc)
        rc = add_header(c, "x-amz-date", 10, amz_date);
    if (!rc)
        rc = add_header(c, "x-amz-content-sha256", 20, payload);
    if (!rc && signer->session_token[0])
        rc = add_header(c, "x-amz-security-token", 20, signer->session_token);
    for (size_t i = 0; !rc && i < req->n_headers; i++) {
        const s3_header *h = &req->headers[i];
        size_t n = strlen(h->name);
        if (!s3__ieq(h->name, n, "x-amz-content-sha256"))
            rc = add_header(c, h->name, n, h->value);
    }
    if (!rc)
        rc = add_header(c, "Authorization", 13, auth);
    if (!rc) /* "Expect:" with nothing after the colon removes curl's 100-continue wait */
        rc = add_raw(c, "Expect:");
    if (!rc && is_post && !has_content_type) /* curl would add a form content type */
        rc = add_raw(c, "Content-Type:");
    if (rc)
        return rc;

    /* deadlines by the operation's kind (limits.c); remembered for classify's message */
    s3__deadline dl;
    s3__deadline_for(&ep->limits, req, opts ? opts->copy_bytes : 0, &dl);
    c->op = dl.op;
    c->connect_timeout_ms = dl.connect_ms;
    c->timeout_ms = dl.total_ms;
    c->stall_timeout_s = dl.stall_s;
    c->is_https = strncmp(c->url.ptr, "https://", 8) == 0;
    c->errbuf[0] = '\0';

    SETOPT(CURLOPT_URL, c->url.ptr);
    SETOPT(CURLOPT_HTTPHEADER, c->hdrs);
    SETOPT(CURLOPT_PRIVATE, priv ? (void *)priv : (void *)c);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    /* keys are sent as they are: without this curl collapses "x/../a" to "a", another key
       (or, for "../b/k", another bucket) than the one that was signed and meant */
    SETOPT(CURLOPT_PATH_AS_IS, 1L);
    SETOPT(CURLOPT_TCP_NODELAY, 1L);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1); /* S3 speaks HTTP/1.1 only */
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, dl.connect_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, dl.total_ms); /* 0: none */
    SETOPT(CURLOPT_LOW_SPEED_LIMIT, dl.stall_s ? (long)S3_STALL_MIN_BYTES_PER_S : 0L);
    SETOPT(CURLOPT_LOW_SPEED_TIME, dl.stall_s);
    SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
    SETOPT(CURLOPT_USERAGENT, "batchrep/1");
    SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(CURLOPT_HEADERDATA, (void *)c);
    SETOPT(CURLOPT_WRITEFUNCTION, s3__body_write_cb);
    SETOPT(CURLOPT_WRITEDATA, (void *)c);
    if (ep->ca_bundle[0])
        SETOPT(CURLOPT_CAINFO, ep->ca_bundle);

    c->keep_headers = req->keep_headers;
    c->sink = req->sink;
    c->upload_base = c->upload_ptr = req->body;
    c->upload_total = c->upload_left = req->body_len;
    if (is_get) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else if (is_head) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (is_put || is_post) {
        SETOPT(CURLOPT_READFUNCTION, read_cb);
        SETOPT(CURLOPT_READDATA, (void *)c);
        SETOPT(CURLOPT_SEEKFUNCTION, seek_cb);
        SETOPT(CURLOPT_SEEKDATA, (void *)c);
        if (is_put) {
            SETOPT(CURLOPT_UPLOAD, 1L); /* sends Content-Length: 0 for an empty body */
            SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
        } else {
            SETOPT(CURLOPT_POST, 1L);
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
    } else {
        if (req->body_len)
            return S3_E_ARG; /* DELETE with a body: not an S3 operation we use */
        SETOPT(CURLOPT_CUSTOMREQUEST, m);
    }
    return S3_E_OK;
}

/* ---- outcome ------------------------------------------------------------------------- */

static int in_list(const char *code, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(code, *list) == 0)
            return 1;
    return 0;
}

/* botocore retries/standard.py, plus the S3 codes of aws-formats.md 8.3. */
static const char *const throttling_codes[] = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete", NULL,
};
static const char *const transient_codes[] = {
    "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "InternalError",
    "ServiceUnavailable", "OperationAborted", NULL,
};

/* curl errors that will fail the same way again: configuration, TLS trust, our own
   callbacks refusing (body over the cap, a local file write failing). */
static int curl_permanent(int code)
{
    switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_WRITE_ERROR:
    case CURLE_READ_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
    case CURLE_OUT_OF_MEMORY:
        return 1;
    default:
        return 0;
    }
}

void s3_outcome_classify(const s3_call *c, int curl_code, int expect_xml_result,
                         s3_outcome *out)
{
    memset(out, 0, sizeof *out);
    out->curl_code = curl_code;
    long status = c->resp.status;
    if (!status && c->easy)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    out->http_status = status;
    s3_slice body = {c->resp.body.ptr, c->resp.body.len};

    if (curl_code != CURLE_OK) {
        /* No complete answer. A status may have arrived before the failure (a 200 copy
           cut mid-body); it stays in http_status, but curl_code decides. */
        out->retryable = !curl_permanent(curl_code);
        const char *curl_says = c->errbuf[0] ? c->errbuf
                                              : curl_easy_strerror((CURLcode)curl_code);
        if (curl_code == CURLE_WRITE_ERROR && c->resp.body.len + 65536 > S3_BODY_MAX_BYTES)
            snprintf(out->message, sizeof out->message, "response body larger than %u bytes",
                     S3_BODY_MAX_BYTES);
        else if (curl_code == CURLE_OPERATION_TIMEDOUT)
            s3__timeout_message(c, out->message, sizeof out->message);
        else if (curl_code == CURLE_PEER_FAILED_VERIFICATION) /* = CURLE_SSL_CACERT, 60 */
            snprintf(out->message, sizeof out->message,
                     "untrusted TLS certificate (%.100s): set AWS_CA_BUNDLE to a PEM file of "
                     "the CA that signed the server's certificate", curl_says);
        else
            snprintf(out->message, sizeof out->message, "%.*s", (int)sizeof out->message - 1,
                     curl_says);
        return;
    }

    if (status >= 200 && status < 300) {
        if (!expect_xml_result)
            return;
        int r = s3_xml_parse_error(body, out->code, sizeof out->code, out->message,
                                   sizeof out->message);
        if (r == 0)
            return;
        out->error_in_200 = 1;
        out->retryable = 1; /* botocore turns these into a 500 and retries */
        if (r < 0 || !out->code[0]) {
            snprintf(out->code, sizeof out->code, "InternalError");
            if (!out->message[0])
                snprintf(out->message, sizeof out->message,
                         "200 response with %s body (treated as a 500)",
                         body.len ? "a malformed" : "an empty");
        }
        if (in_list(out->code, throttling_codes))
            out->throttled = 1;
        return;
    }

    if (body.len)
        s3_xml_parse_error(body, out->code, sizeof out->code, out->message,
                           sizeof out->message);
    if (!out->message[0])
        snprintf(out->message, sizeof out->message, "HTTP %ld", status);
    int throttling = in_list(out->code, throttling_codes);
    out->throttled = status == 503 || status == 429 || throttling;
    out->retryable = status == 500 || status == 502 || status == 503 || status == 504 ||
                     status == 429 || throttling || in_list(out->code, transient_codes);
    if (status == 0) /* no status line at all but curl said OK: treat as a lost answer */
        out->retryable = 1;
}
