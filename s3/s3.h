/*
 * s3.h — the S3 protocol, and nothing of the engine.
 *
 * What this module gives the rest of batchrep:
 *   - two buffer types that cross module boundaries (s3_slice borrowed, s3_buf owned+capped);
 *   - endpoint, region and credentials resolved the AWS CLI way (environment, profiles);
 *   - our own SigV4 signer (libcurl 7.88's CURLOPT_AWS_SIGV4 mis-sorts header names that are
 *     prefixes of others, see ../shared/test-servers.md), with a cached signing key;
 *   - S3 URI encoding (path, query, x-amz-copy-source);
 *   - request building onto a curl easy handle and response capture (status, the headers we
 *     use, a capped body), and classification of the outcome (retryable or not, S3 code);
 *   - expat parsers for <Error>, CopyObjectResult, ListVersionsResult, InitiateMultipartUpload;
 *   - a blocking GET-to-file / PUT-from-memory for small objects (manifests, reports).
 *
 * Depends on: libcurl, OpenSSL libcrypto, expat, jansson. Nothing of ours.
 */
#ifndef BATCHREP_S3_H
#define BATCHREP_S3_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <curl/curl.h>
#include <jansson.h>

/* ---- buffers ------------------------------------------------------------------------- */

/* A borrowed byte range. Never owns; valid as long as whatever it points into. */
typedef struct s3_slice {
    const char *ptr;
    size_t len;
} s3_slice;

s3_slice s3_slice_cstr(const char *s);
int s3_slice_eq(s3_slice a, const char *cstr);

/* An owned growable buffer with a hard cap. Always NUL-terminated when ptr != NULL. */
typedef struct s3_buf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max_bytes; /* appends beyond this fail with S3_E_TOO_BIG */
} s3_buf;

void s3_buf_init(s3_buf *b, size_t max_bytes);
void s3_buf_cleanup(s3_buf *b);
void s3_buf_reset(s3_buf *b);                 /* len = 0, keeps memory */
int s3_buf_append(s3_buf *b, const void *p, size_t n);
int s3_buf_append_str(s3_buf *b, const char *s);
int s3_buf_append_u64(s3_buf *b, uint64_t v); /* decimal, no printf */
/* Makes room for n more bytes in one allocation (object data of a known length). */
int s3_buf_reserve(s3_buf *b, size_t n);

/* Sizes of what S3 answers, one per kind, so that a value copied from an answer to anywhere
   else fits there whole (a cut ETag or version ID would name another object). */
#define S3_ETAG_MAX 128          /* quoted MD5 and "-<parts>": ~40 on AWS */
#define S3_STORAGE_CLASS_MAX 64  /* "INTELLIGENT_TIERING" is the longest AWS name */
#define S3_VERSION_ID_MAX 256    /* 32 on AWS; other servers use longer IDs */

/* ---- errors -------------------------------------------------------------------------- */

#define S3_ERRNO_MAP(XX)                                                                   \
    XX(OK, "success")                                                                      \
    XX(NOMEM, "out of memory")                                                             \
    XX(TOO_BIG, "buffer cap reached")                                                      \
    XX(CONFIG, "invalid endpoint, profile or credentials configuration")                   \
    XX(NO_CREDENTIALS, "no AWS credentials found")                                         \
    XX(ARG, "invalid argument")                                                            \
    XX(XML, "malformed XML response")                                                      \
    XX(HTTP, "HTTP request failed")                                                        \
    XX(IO, "local file I/O error")

typedef enum s3_err {
#define XX(name, msg) S3_E_##name,
    S3_ERRNO_MAP(XX)
#undef XX
} s3_err;

const char *s3_strerror(int err);
const char *s3_errname(int err);

/* Defines <prefix>_strerror() and <prefix>_errname() from a module's error table MAP, whose
   entries XX(NAME, "message") number its enum from 0 (libuv's UV_ERRNO_MAP); a negative
   err means the same as its absolute value. Define S3_ERR_NAME_PREFIX ("JOBS_E_") first. */
#define S3__ERR_MSG(name, msg) msg,
#define S3__ERR_NAME(name, msg) S3_ERR_NAME_PREFIX #name,
#define S3_ERROR_FUNCS(prefix, MAP, unknown_msg)                                           \
    static const char *const prefix##__err_msgs[] = {MAP(S3__ERR_MSG)};                    \
    static const char *const prefix##__err_names[] = {MAP(S3__ERR_NAME)};                  \
    static size_t prefix##__err_index(int err)                                             \
    {                                                                                      \
        return err < 0 ? (size_t)-(long)err : (size_t)err;                                 \
    }                                                                                      \
    const char *prefix##_strerror(int err)                                                 \
    {                                                                                      \
        size_t e = prefix##__err_index(err);                                               \
        return e < sizeof prefix##__err_msgs / sizeof *prefix##__err_msgs                  \
                   ? prefix##__err_msgs[e]                                                 \
                   : unknown_msg;                                                          \
    }                                                                                      \
    const char *prefix##_errname(int err)                                                  \
    {                                                                                      \
        size_t e = prefix##__err_index(err);                                               \
        return e < sizeof prefix##__err_names / sizeof *prefix##__err_names                \
                   ? prefix##__err_names[e]                                                \
                   : S3_ERR_NAME_PREFIX "UNKNOWN";                                         \
    }

/* ---- endpoint and credentials -------------------------------------------------------- */

typedef struct s3_creds {
    char access_key[128];
    char secret_key[128];
    char session_token[2048]; /* "" when none */
} s3_creds;

/* What one request may cost (limits.c explains the three kinds of request and why these
   numbers). A field of 0 takes its default; s3_endpoint_load leaves them all 0 and the
   caller sets them (the CLI's --connect-timeout-ms, --request-timeout-ms, --stall-timeout-s,
   --max-manifest-bytes). */
typedef struct s3_limits {
    long connect_timeout_ms;     /* TCP connect + TLS handshake */
    long request_timeout_ms;     /* whole deadline of a request that moves no object data;
                                    a server-side copy gets it plus 1 s per 4 MiB copied */
    long stall_timeout_s;        /* a transfer of object data is cut when fewer than
                                    S3_STALL_MIN_BYTES_PER_S moved over this window */
    uint64_t max_download_bytes; /* s3_get_to_file refuses a larger object */
} s3_limits;
#define S3_CONNECT_TIMEOUT_MS_DEFAULT 5000L
#define S3_REQUEST_TIMEOUT_MS_DEFAULT 10000L
#define S3_STALL_TIMEOUT_S_DEFAULT 20L
#define S3_MAX_DOWNLOAD_BYTES_DEFAULT (64ull << 30) /* a manifest of ~1 billion rows */
#define S3_STALL_MIN_BYTES_PER_S 1024
#define S3_COPY_MIN_BYTES_PER_S (4 << 20)
/* l with each 0 (or negative) field replaced by its default; NULL: all defaults. */
s3_limits s3_limits_or_defaults(const s3_limits *l);

typedef struct s3_endpoint {
    char base_url[512];  /* scheme://host[:port], no trailing slash; "" means AWS */
    char host[300];      /* Host header value for path-style (host[:port]) */
    char region[64];
    int path_style;      /* 1: /bucket/key; 0: bucket.host/key */
    int is_https;
    char ca_bundle[1024]; /* "" = libcurl default */
    char ca_bundle_from[1100]; /* where ca_bundle was set, for messages: "AWS_CA_BUNDLE" or
                                  "ca_bundle at FILE:LINE" */
    s3_creds creds;
    s3_limits limits;    /* 0s: the defaults */
} s3_endpoint;

/*
 * Resolves an endpoint like the AWS CLI does, for the given profile (NULL: $AWS_PROFILE, else
 * "default"):
 *   endpoint  AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, profile `endpoint_url` (also in an
 *             `s3 =` sub-section), else https://s3.<region>.amazonaws.com (virtual-hosted);
 *   region    AWS_REGION, AWS_DEFAULT_REGION, profile `region`, else us-east-1;
 *   creds     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the
 *             profile in AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials), else in
 *             AWS_CONFIG_FILE (~/.aws/config, section "[profile NAME]" or "[default]");
 *   style     a custom endpoint is path-style unless the profile says addressing_style =
 *             virtual; CA bundle from AWS_CA_BUNDLE or profile `ca_bundle`.
 * When a profile is named explicitly (not NULL), the environment's keys and endpoint do not
 * override it (so a destination profile keeps its own endpoint).
 * On error returns S3_E_CONFIG / S3_E_NO_CREDENTIALS and writes a message naming the file,
 * line and setting into err.
 */
int s3_endpoint_load(s3_endpoint *out, const char *profile, char *err, size_t err_len);
/* Checks that the endpoint's CA bundle (AWS_CA_BUNDLE or a profile's ca_bundle) is a
   readable file holding at least one PEM certificate, so that a wrong path is refused
   before any job runs instead of failing every request (curl error 77). 0 (also when no
   bundle is set), or S3_E_CONFIG with err naming the setting, the file and the problem. */
int s3_endpoint_check_ca(const s3_endpoint *ep, char *err, size_t err_len);

/* ---- URI encoding (S3's rules: unreserved A-Za-z0-9-._~ stay, all else %XX upper hex) -- */

/* Appends the encoding of src; '/' stays when keep_slash (object key in a path). */
int s3_uri_encode(s3_buf *out, s3_slice src, int keep_slash);
/* Percent-decodes in place ("%2F" -> '/'); when plus_is_space, '+' -> ' ' (Inventory CSV).
   Returns the new length, or -1 on a malformed escape (stores its offset in *bad_at).
   Writes a NUL at the new length only when the text got shorter. */
long s3_uri_decode_inplace(char *s, size_t len, int plus_is_space, size_t *bad_at);
/* Replaces out's content with an x-amz-copy-source value: "bucket/key" percent-encoded with
   '/' kept (botocore's safe chars -._~/, so '+' -> %2B, space -> %20), then
   "?versionId=" + the encoded version id when version_id is neither NULL nor "". */
int s3_copy_source(s3_buf *out, const char *bucket, const char *key, const char *version_id);

/* ---- names ----------------------------------------------------------------------------- */

/* NULL when S3 accepts name as a bucket name (names.c gives the rules: today's, and the older
   us-east-1 ones with upper case and '_'), else a sentence that says which rule it breaks. */
const char *s3_bucket_name_problem(s3_slice name);
/* out = root + "/" + key, with each "." or ".." segment of key written as "%2E" / "%2E%2E"
   so that the path stays under root whatever the key; every other byte is kept. 0, or -1
   (out is then "") when it does not fit in cap. */
int s3_key_local_path(char *out, size_t cap, const char *root, const char *key);

/* ---- signer -------------------------------------------------------------------------- */

typedef struct s3_signer {
    char access_key[128];
    char secret_key[128];
    char session_token[2048];
    char region[64];
    /* cache: signing key derived for one date (YYYYMMDD) */
    char key_date[9];
    unsigned char key[32];
} s3_signer;

void s3_signer_init(s3_signer *s, const s3_creds *c, const char *region);

typedef struct s3_header {
    const char *name;  /* lower-case */
    const char *value;
} s3_header;

typedef struct s3_query_param {
    const char *name;  /* unencoded */
    const char *value; /* unencoded; NULL or "" for a bare parameter like "?tagging" */
} s3_query_param;

/*
 * Inputs of one signature. Headers must include every header that is sent and signed except
 * host, x-amz-date, x-amz-content-sha256 and x-amz-security-token, which the signer adds
 * itself from the other fields. canonical_uri is already URI-encoded (as sent).
 */
typedef struct s3_sign_input {
    const char *method;
    const char *host;            /* host[:port] as in the Host header */
    const char *canonical_uri;   /* encoded path, e.g. "/bucket/my%20key" */
    const s3_query_param *query; /* unencoded; sorted by the signer */
    size_t n_query;
    const s3_header *headers;
    size_t n_headers;
    const char *payload_sha256;  /* hex, or "UNSIGNED-PAYLOAD" */
    time_t now;
} s3_sign_input;

/* Writes the Authorization header value and x-amz-date (YYYYMMDDTHHMMSSZ, 17 bytes).
   Not thread-safe for one s3_signer (it caches the signing key): one per thread. Caller
   headers named host / x-amz-date / x-amz-content-sha256 / x-amz-security-token are
   ignored; names may have capitals (signed lower-case). S3_E_ARG past 60 headers or 64
   query parameters, S3_E_TOO_BIG when auth_cap is too small. */
int s3_sign(s3_signer *s, const s3_sign_input *in, char *out_auth, size_t auth_cap,
            char out_amz_date[17]);

/* sha256 hex of data (65 bytes with the NUL). */
void s3_sha256_hex(const void *data, size_t len, char out[65]);
/* "d41d8cd98f00b204e9800998ecf8427e"-style MD5 hex of data. */
void s3_md5_hex(const void *data, size_t len, char out[33]);
/* The Content-MD5 header value: base64 of the binary MD5 (24 chars + NUL). */
void s3_md5_base64(const void *data, size_t len, char out[25]);
/* A random (version 4) UUID, "939c6d46-85a9-4ba8-87bd-9db705a579ce" (37 bytes with the NUL):
   job IDs, data file names. OpenSSL's RAND_bytes; the clock and pid if it fails. */
void s3_uuid4(char out[37]);

/* ---- requests and responses ---------------------------------------------------------- */

/* 56 = the signer's 60 less the 4 it adds itself; a CreateMultipartUpload that carries a
   version's content headers, user metadata, tags, ACL grants, lock and SSE needs ~20 plus
   one per x-amz-meta-* header. */
#define S3_MAX_HEADERS 56
#define S3_MAX_QUERY 8
#define S3_BODY_MAX_BYTES (8u << 20) /* a response body we keep: XML, never object data */

/* One S3 request as the engine describes it. All strings borrowed until s3_request_prepare
   returns (prepare copies what it needs into the s3_call). */
typedef struct s3_request {
    const char *method;            /* GET HEAD PUT POST DELETE */
    const char *bucket;            /* NULL for service-level calls */
    const char *key;               /* decoded object key, NULL for bucket-level calls */
    s3_query_param query[S3_MAX_QUERY];
    size_t n_query;
    s3_header headers[S3_MAX_HEADERS]; /* extra headers, lower-case names */
    size_t n_headers;
    const void *body;              /* borrowed until the transfer finishes */
    size_t body_len;
    int keep_headers;              /* keep every response header (s3_response_header) */
    s3_buf *sink;                  /* a 2xx body goes here (object data: a GET of a part),
                                      borrowed until the transfer finishes; NULL: resp.body */
} s3_request;

/* Response fields captured from headers. Strings are "" when the header was absent. */
typedef struct s3_response {
    long status;
    char version_id[S3_VERSION_ID_MAX]; /* x-amz-version-id */
    char copy_source_version_id[256];
    int delete_marker;             /* x-amz-delete-marker: true */
    char etag[S3_ETAG_MAX];
    char last_modified[64];
    char content_type[256];
    char storage_class[S3_STORAGE_CLASS_MAX];
    char replication_status[16];   /* x-amz-replication-status: COMPLETED, FAILED, ... */
    char retry_after[32];
    long long content_length;      /* -1 when absent */
    s3_buf body;                   /* capped at S3_BODY_MAX_BYTES */
    s3_buf headers;                /* with keep_headers: "name\0value\0" pairs, names
                                      lower-case, capped at S3_HEADERS_MAX_BYTES */
} s3_response;

#define S3_HEADERS_MAX_BYTES (64u << 10) /* S3 user metadata is at most 2 KB */

/* The value of response header `name_lower` (kept with keep_headers), or NULL. */
const char *s3_response_header(const s3_response *r, const char *name_lower);
/* Iterates the kept headers: pos 0 starts; returns the next pos, or 0 after the last. */
size_t s3_response_header_next(const s3_response *r, size_t pos, const char **out_name,
                               const char **out_value);

/*
 * One in-flight call: a reusable curl easy handle plus what lives for one transfer. Owned by
 * one thread. s3_call_init creates the easy handle; s3_call_prepare resets it for a new
 * request (keeping connections in the multi handle's cache), signs, and sets the URL,
 * headers, body and callbacks. The caller adds call->easy to its multi handle.
 */
typedef struct s3_call {
    CURL *easy;
    struct curl_slist *hdrs;
    s3_buf url;
    s3_response resp;
    const char *upload_ptr;
    size_t upload_left;
    void *user;                    /* the engine's context; untouched here */
    const char *upload_base;       /* start of the body, for curl's rewinds (seek callback) */
    size_t upload_total;
    int keep_headers;              /* from the request being run */
    s3_buf *sink;                  /* from the request being run */
    /* what s3_call_prepare decided for the request being run, for s3_outcome_classify's
       messages */
    const char *op;                /* "HeadObject", ... (s3_op_name) */
    long connect_timeout_ms, timeout_ms, stall_timeout_s; /* 0: none */
    int is_https;
    char errbuf[CURL_ERROR_SIZE];  /* curl's own words about a failure */
} s3_call;

/* The kinds of request (limits.c): each has its own deadlines. */
typedef enum s3_op_kind {
    S3_OP_META, /* no object data: one whole deadline */
    S3_OP_DATA, /* object bytes on the wire: a stall detector, no whole deadline */
    S3_OP_COPY  /* bytes the server copies without sending: a deadline by size */
} s3_op_kind;
/* The S3 API name of a request ("HeadObject", "UploadPartCopy", ...; the method for one it
   does not know) and its kind. A static string. */
const char *s3_op_name(const s3_request *req, s3_op_kind *out_kind);

/* What the caller knows of a request beyond its shape. Deadlines come from ep->limits
   and the request's kind (limits.c). */
typedef struct s3_call_opts {
    int64_t copy_bytes;            /* CopyObject, CompleteMultipartUpload: the object's size
                                      (UploadPartCopy's comes from its range); 0: unknown */
} s3_call_opts;

int s3_call_init(s3_call *c);
void s3_call_cleanup(s3_call *c);
/* Also: CURLOPT_PRIVATE set by the owner survives the reset (unset, it is c); a request
   header x-amz-content-sha256 (e.g. UNSIGNED-PAYLOAD) replaces the body's SHA-256; headers
   host, authorization, content-length, expect, transfer-encoding, x-amz-date and
   x-amz-security-token are set here and refused (S3_E_ARG) in req->headers. A bucket name
   that is not DNS-compatible is sent path-style even on a virtual-hosted endpoint. */
int s3_call_prepare(s3_call *c, const s3_endpoint *ep, s3_signer *signer,
                    const s3_request *req, const s3_call_opts *opts);

/* What a finished call means. http_status 0 = no HTTP answer (see curl_code). */
typedef struct s3_outcome {
    long http_status;
    int curl_code;                 /* CURLcode */
    char code[64];                 /* S3 error code from the <Error> body, "" if none */
    char message[256];
    int error_in_200;              /* 200 whose body is <Error> or unparseable (CopyObject) */
    int retryable;                 /* connection error, timeout, 500/502/503/504, SlowDown,
                                      RequestTimeout, InternalError, OperationAborted, 200-error */
    int throttled;                 /* 503 / SlowDown: the shared limiter should back off */
} s3_outcome;

/* Classifies a finished call. expect_xml_result: the success body must be XML whose root is
   not <Error> (CopyObject, UploadPartCopy, CompleteMultipartUpload). Without an answer the
   message says what happened in words: "timeout: no answer from the server within 10 s
   (HeadObject)", "untrusted TLS certificate (...): set AWS_CA_BUNDLE ...", else curl's. */
void s3_outcome_classify(const s3_call *c, int curl_code, int expect_xml_result,
                         s3_outcome *out);

/* Blocking one-shot requests on a private easy handle (manifests, reports, tests); safe from
   any thread. They return 0 for a 2xx answer, S3_E_HTTP for any other outcome (details in
   *out_outcome, which may be NULL), S3_E_IO when writing the FILE failed, S3_E_ARG/NOMEM
   when the request could not be built. A retryable outcome is retried (3 attempts, 0.2 s
   then 0.4 s apart). s3_perform classifies with expect_xml_result = 0. *out_resp is always
   initialised (cleanup is always safe).
   s3_get_to_file has no whole deadline, only the stall detector (ep->limits). A download
   that breaks is resumed where it stopped (Range, with If-Match on the first answer's ETag:
   a 412 means the object changed, and fails); a server that ignores the Range starts it
   again from byte 0 (the FILE must then be seekable). Each attempt that moved less than
   1 MiB counts against the 3. S3_E_TOO_BIG when the object is larger than
   ep->limits.max_download_bytes (out_outcome->code "EntityTooLarge") or its body longer
   than its Content-Length said: nothing past that is written. */
int s3_get_to_file(const s3_endpoint *ep, const char *bucket, const char *key,
                   const char *version_id, FILE *out, s3_response *out_resp,
                   s3_outcome *out_outcome);
int s3_put_bytes(const s3_endpoint *ep, const char *bucket, const char *key, const void *data,
                 size_t len, const char *content_type, s3_outcome *out_outcome);
/* PutObject of a local file (mapped, one PUT: at most 5 GiB). 0, or S3_E_IO / S3_E_TOO_BIG
   / S3_E_HTTP with err naming the file or the object and S3's answer. */
int s3_put_file(const s3_endpoint *ep, const char *bucket, const char *key, const char *path,
                const char *content_type, char *err, size_t err_len);
/* Plain synchronous request; body into out_resp->body (caller s3_buf_cleanup's it). */
int s3_perform(const s3_endpoint *ep, const s3_request *req, s3_response *out_resp,
               s3_outcome *out_outcome);
void s3_response_cleanup(s3_response *r);

/* ---- XML --------------------------------------------------------------------------- */

/* <Error><Code>..</Code><Message>..</Message></Error>. Returns 1 when the root is Error (also
   when the body is cut short after it), 0 for a well-formed document with another root,
   -1 for an empty or malformed body. code/msg are "" when absent; msg is cut to msg_cap. */
int s3_xml_parse_error(s3_slice body, char *code, size_t code_cap, char *msg, size_t msg_cap);

/* One element of ListVersionsResult (<Version> or <DeleteMarker>). */
typedef struct s3_version_entry {
    char key[1100];
    char version_id[S3_VERSION_ID_MAX];
    char last_modified[40];        /* as sent, e.g. 2026-11-25T10:00:00.000Z */
    int64_t last_modified_ms;      /* epoch ms */
    char etag[S3_ETAG_MAX];
    char storage_class[S3_STORAGE_CLASS_MAX];
    int64_t size;
    int is_latest;
    int is_delete_marker;
    unsigned list_pos;             /* position in the listing, 0-based across pages */
} s3_version_entry;

typedef int (*s3_version_cb)(const s3_version_entry *v, void *user); /* nonzero: stop */

typedef struct s3_list_versions_page {
    int is_truncated;
    char next_key_marker[1100];
    char next_version_id_marker[256];
    unsigned n_entries;
} s3_list_versions_page;

/* Streams each <Version>/<DeleteMarker> to cb in document order. first_pos numbers them.
   Keys are as sent (URL-encoded when the request said encoding-type=url). 0 (also when cb
   stopped it), S3_E_XML (malformed, wrong root, an entry without Key/VersionId, a bad date),
   S3_E_TOO_BIG (a field longer than its array). The entry passed to cb is borrowed. */
int s3_xml_parse_list_versions(s3_slice body, unsigned first_pos, s3_version_cb cb,
                               void *user, s3_list_versions_page *out_page);

/* <InitiateMultipartUploadResult><UploadId>; <CopyPartResult>/<CopyObjectResult><ETag>.
   Text of the first element of that local name, as sent (an ETag keeps its quotes).
   0, S3_E_XML (absent or malformed), S3_E_TOO_BIG (does not fit out_cap). */
int s3_xml_find_text(s3_slice body, const char *element, char *out, size_t out_cap);

/* The string member `name` of a JSON object, or NULL (not an object, absent, not a string). */
const char *s3_json_str(const json_t *obj, const char *name);

/* Generic XML -> JSON for configuration documents (GetBucketReplication, GetObjectTagging):
   the root element's children become members; a repeated element becomes a list; a leaf is
   a string. Returns NULL on malformed XML. The caller owns the result. */
json_t *s3_xml_to_json(s3_slice body);

/* "2026-11-25T10:00:00.123Z" or RFC 1123 "Wed, 25 Nov 2026 10:00:00 GMT" -> epoch ms. */
int s3_parse_time_ms(const char *s, int64_t *out_ms);
/* epoch ms -> "2026-11-25T10:00:00.123Z" (AWS's form in JSON answers). */
void s3_iso8601_ms(int64_t ms, char out[32]);

/* Clocks: wall time (epoch ms) for timestamps a person or another machine reads; monotonic
   ms for intervals and deadlines (a wall clock that steps would stretch or cut them). */
int64_t s3_wall_ms(void);
int64_t s3_mono_ms(void);

/* ---- local files ------------------------------------------------------------------------- */

/* write(2) until all of data is written (EINTR retried); 0, or -1 with errno set. */
int s3_write_all(int fd, const void *data, size_t n);
/* out = dir + "/" + name; 0, or -1 (out "") when it does not fit: a path is never cut. */
int s3_path_join(char *out, size_t cap, const char *dir, const char *name);
/* Modes: the state directory is private (it names every object of a bucket); a report a
   user asked for in a folder of theirs follows their umask, as `cp` would. */
/* errno says the disk (or the user's quota) is full: a write may succeed later. */
int s3_errno_disk_full(int err);
#define S3_MODE_PRIVATE_DIR 0700
#define S3_MODE_PRIVATE_FILE 0600
#define S3_MODE_USER_DIR 0777
#define S3_MODE_USER_FILE 0666
/* mkdir -p: the folders it creates get `mode` (less the umask); 0, or -1 with errno set.
   An existing folder is fine and keeps its mode. */
int s3_mkdir_p(const char *path, unsigned mode);
/* Writes data to path through "<path>.tmp" (created with `mode`), fdatasync and rename, so
   a crash leaves the old file or the new one, never a mix. On failure the temporary file is
   removed and S3_E_IO returned with err naming the file and errno. */
int s3_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         char *err, size_t err_len);
/* MD5 hex of a file, streamed in 1 MiB reads. S3_E_IO / S3_E_NOMEM with err. */
int s3_md5_file(const char *path, char out[33], char *err, size_t err_len);

/* ---- retries ----------------------------------------------------------------------------- */

/* One retry policy for every request (aws-formats.md §8.4): up to max_attempts in all, the
   n-th retry after a full-jitter delay rand(0, min(cap_ms, base_ms * 2^(n-1))). */
typedef struct s3_retry_policy {
    int max_attempts;
    int base_ms;
    int cap_ms;
} s3_retry_policy;
#define S3_RETRY_DEFAULT ((s3_retry_policy){8, 100, 20000})
/* The blocking requests (manifests, reports, bucket checks) run on a thread that also keeps
   the jobs' heartbeats (stale after 30 s): 6 attempts, waits of at most 0.25, 0.5, 1, 2 and
   4 s (7.75 s in all at worst, ~3.9 s on average), enough to ride out a server's brief
   hiccup (a busy test server resetting connections failed Preparing with 0.6 s) and far
   from the heartbeat's limit. */
#define S3_RETRY_BLOCKING ((s3_retry_policy){6, 250, 4000})
/* The delay before retry number `retry` (1 = the first), drawn with *rng (rand_r state). */
int s3_backoff_ms(const s3_retry_policy *p, int retry, unsigned *rng);

#endif
