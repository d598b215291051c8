/*
 * sigv4.c — AWS Signature Version 4 for S3, written here rather than taken from libcurl:
 * Debian's libcurl 7.88 CURLOPT_AWS_SIGV4 sorts canonical headers by "name:value", which puts
 * x-amz-copy-source-range before x-amz-copy-source (and x-amz-tagging-directive before
 * x-amz-tagging), and it never signs x-amz-content-sha256; S3 and RGW answer 403.
 *
 * The canonical request (service "s3", no path normalisation, as botocore's S3SigV4Auth):
 *   METHOD \n canonical-uri (as sent) \n
 *   query: name=value pairs URI-encoded ('/' encoded too), sorted by encoded name then value,
 *          "name=" for a bare parameter, joined by '&' \n
 *   headers: lower-case name ':' value trimmed with inner whitespace runs made one space,
 *          sorted by name only (stable; repeated names joined with ','), one per line \n
 *   \n signed-header-names joined by ';' \n payload-hash
 * String to sign: "AWS4-HMAC-SHA256\n" date "\n" scope "\n" hex(sha256(canonical request)).
 *
 * Speed: the hot path does no printf and, for requests of usual size, no malloc of ours: the
 * canonical request is written into a 16 KiB stack buffer (a heap buffer is used only when a
 * request needs more, e.g. a 2 KiB session token plus long keys in several places). The
 * signing key (four chained HMACs) is derived once per UTC day and kept in the s3_signer, so a
 * signature costs one SHA-256 of the canonical request and one HMAC of the string to sign.
 * HMAC is done by hand over EVP digests with an EVP_MD fetched once: OpenSSL 3's HMAC() and
 * EVP_MAC fetch the algorithm and parse parameters on every call, several times the cost.
 * The EVP_MD_CTX is kept per thread (a pthread key whose destructor frees it).
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define MAX_SIGN_QUERY 64
#define MAX_SIGN_HEADERS 64
#define CANON_STACK_BYTES 16384

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_sha256; /* process lifetime: fetched once, never freed */
static EVP_MD *md_md5;
static pthread_key_t ctx_key;

static void free_thread_ctx(void *p)
{
    EVP_MD_CTX_free(p);
}

static void crypto_init(void)
{
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    pthread_key_create(&ctx_key, free_thread_ctx);
}

/* The calling thread's digest context, or NULL when out of memory. */
static EVP_MD_CTX *thread_ctx(void)
{
    pthread_once(&crypto_once, crypto_init);
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        if (ctx && pthread_setspecific(ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            ctx = NULL;
        }
    }
    return ctx;
}

/* sha256(a || b). */
static int sha256_2(EVP_MD_CTX *ctx, const void *a, size_t an, const void *b, size_t bn,
                    unsigned char out[32])
{
    return md_sha256 && EVP_DigestInit_ex2(ctx, md_sha256, NULL) &&
           EVP_DigestUpdate(ctx, a, an) && (bn == 0 || EVP_DigestUpdate(ctx, b, bn)) &&
           EVP_DigestFinal_ex(ctx, out, NULL);
}

/* RFC 2104 HMAC-SHA256. wipe: clear the key material on the stack afterwards (when it
   derives from the secret key; the per-request HMAC uses the signing key, which the
   s3_signer keeps anyway, and skips that cost). */
static int hmac_sha256(EVP_MD_CTX *ctx, const void *key, size_t key_len, const void *msg,
                       size_t msg_len, unsigned char out[32], int wipe)
{
    unsigned char k[64] = {0}, pad[64], inner[32];
    int ok = 1;
    if (key_len > sizeof k)
        ok = sha256_2(ctx, key, key_len, NULL, 0, k);
    else
        memcpy(k, key, key_len);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && sha256_2(ctx, pad, sizeof pad, msg, msg_len, inner);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && sha256_2(ctx, pad, sizeof pad, inner, sizeof inner, out);
    if (wipe) {
        OPENSSL_cleanse(k, sizeof k);
        OPENSSL_cleanse(pad, sizeof pad);
    }
    return ok;
}

void s3_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[32];
    EVP_MD_CTX *ctx = thread_ctx();
    if (!ctx || !sha256_2(ctx, data, len, NULL, 0, d))
        memset(d, 0, sizeof d); /* only on allocation failure; the signature then fails */
    s3__hex(d, sizeof d, out);
    out[64] = '\0';
}

void s3_md5_hex(const void *data, size_t len, char out[33])
{
    unsigned char d[16];
    pthread_once(&crypto_once, crypto_init);
    if (!md_md5 || !EVP_Digest(data, len, d, NULL, md_md5, NULL))
        memset(d, 0, sizeof d);
    s3__hex(d, sizeof d, out);
    out[32] = '\0';
}

void s3_md5_base64(const void *data, size_t len, char out[25])
{
    unsigned char d[16];
    pthread_once(&crypto_once, crypto_init);
    if (!md_md5 || !EVP_Digest(data, len, d, NULL, md_md5, NULL))
        memset(d, 0, sizeof d);
    EVP_EncodeBlock((unsigned char *)out, d, sizeof d); /* 16 bytes -> 24 chars + NUL */
}

void s3_signer_init(s3_signer *s, const s3_creds *c, const char *region)
{
    memset(s, 0, sizeof *s);
    s3__copy_str(s->access_key, sizeof s->access_key, c->access_key, strlen(c->access_key));
    s3__copy_str(s->secret_key, sizeof s->secret_key, c->secret_key, strlen(c->secret_key));
    s3__copy_str(s->session_token, sizeof s->session_token, c->session_token,
                 strlen(c->session_token));
    s3__copy_str(s->region, sizeof s->region, region, strlen(region));
}

/* ---- a bounded writer that keeps counting when full, so the caller learns the size ---- */

typedef struct writer {
    char *p;
    size_t len;
    size_t cap;
} writer;

static inline void put(writer *w, const char *s, size_t n)
{
    if (n <= w->cap && w->len <= w->cap - n)
        memcpy(w->p + w->len, s, n);
    w->len += n;
}

static inline void put_c(writer *w, char c)
{
    if (w->len < w->cap)
        w->p[w->len] = c;
    w->len++;
}

/* Python's str.split() whitespace in the ASCII range, which botocore's trim uses. */
static const unsigned char ws_tab[256] = {
    [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1,
};

/* Trimall: no leading/trailing whitespace, inner runs become one space. */
static void put_trimmed(writer *w, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);
    /* The usual value has no blank at either end and only single inner spaces: one copy. */
    int simple = n == 0 || (!ws_tab[s[0]] && !ws_tab[s[n - 1]]);
    for (size_t i = 1; simple && i < n; i++)
        simple = !ws_tab[s[i]] || (s[i] == ' ' && !ws_tab[s[i - 1]]);
    if (simple) {
        put(w, v, n);
        return;
    }
    int pending_space = 0, any = 0;
    for (; *s; s++) {
        if (ws_tab[*s]) {
            pending_space = any;
            continue;
        }
        if (pending_space)
            put_c(w, ' ');
        pending_space = 0;
        any = 1;
        const unsigned char *e = s; /* copy the run of non-blank bytes at once */
        while (e[1] && !ws_tab[e[1]])
            e++;
        put(w, (const char *)s, (size_t)(e - s + 1));
        s = e;
    }
}

/* ---- sorting (n is small: insertion sort, stable) ------------------------------------ */

typedef struct qent {
    const char *name; /* encoded, in the scratch buffer */
    size_t name_len;
    const char *value;
    size_t value_len;
} qent;

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static int qent_cmp(const qent *a, const qent *b)
{
    int c = cmp_bytes(a->name, a->name_len, b->name, b->name_len);
    return c ? c : cmp_bytes(a->value, a->value_len, b->value, b->value_len);
}

typedef struct hent {
    const char *name; /* lower-case: the caller's own, or a lower-cased copy */
    size_t name_len;
    const char *value;
} hent;

static int hname_cmp(const hent *a, const hent *b)
{
    return cmp_bytes(a->name, a->name_len, b->name, b->name_len);
}

/* Names the signer adds itself (name lower-case); a caller's header of the same name is
   ignored. */
static int is_signer_header(const char *name, size_t n)
{
    switch (n) {
    case 4:
        return memcmp(name, "host", 4) == 0;
    case 10:
        return memcmp(name, "x-amz-date", 10) == 0;
    case 20:
        return memcmp(name, "x-amz-content-sha256", 20) == 0 ||
               memcmp(name, "x-amz-security-token", 20) == 0;
    default:
        return 0;
    }
}

/* The last second formatted, per thread: gmtime_r was 2% of a signature. */
static _Thread_local time_t date_cache_t = (time_t)-1;
static _Thread_local char date_cache[17];

static void format_amz_date(time_t now, char out[17])
{
    if (now == date_cache_t) {
        memcpy(out, date_cache, 17);
        return;
    }
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned y = (unsigned)(tm.tm_year + 1900);
    unsigned v[5] = {(unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday, (unsigned)tm.tm_hour,
                     (unsigned)tm.tm_min, (unsigned)tm.tm_sec};
    out[0] = (char)('0' + y / 1000 % 10);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    char *p = out + 4;
    for (int i = 0; i < 5; i++) {
        if (i == 2)
            *p++ = 'T';
        *p++ = (char)('0' + v[i] / 10);
        *p++ = (char)('0' + v[i] % 10);
    }
    *p++ = 'Z';
    *p = '\0';
    memcpy(date_cache, out, 17);
    date_cache_t = now;
}

static int derive_key(s3_signer *s, EVP_MD_CTX *ctx, const char *date8)
{
    char k0[4 + sizeof s->secret_key];
    size_t sk = strlen(s->secret_key);
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, s->secret_key, sk);
    unsigned char a[32], b[32];
    int ok = hmac_sha256(ctx, k0, 4 + sk, date8, 8, a, 1) &&
             hmac_sha256(ctx, a, 32, s->region, strlen(s->region), b, 1) &&
             hmac_sha256(ctx, b, 32, "s3", 2, a, 1) &&
             hmac_sha256(ctx, a, 32, "aws4_request", 12, s->key, 1);
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    if (!ok)
        return S3_E_NOMEM;
    memcpy(s->key_date, date8, 8);
    s->key_date[8] = '\0';
    return S3_E_OK;
}

/* Writes the canonical request into w; returns S3_E_OK (w->len may exceed w->cap: then the
   caller retries with a buffer of w->len bytes). Signed header names go to sh. */
static void write_canonical(writer *w, writer *sh, const s3_sign_input *in, const qent *q,
                            size_t nq, const hent *h, size_t nh)
{
    put(w, in->method, strlen(in->method));
    put_c(w, '\n');
    put(w, in->canonical_uri, strlen(in->canonical_uri));
    put_c(w, '\n');
    for (size_t i = 0; i < nq; i++) {
        if (i)
            put_c(w, '&');
        put(w, q[i].name, q[i].name_len);
        put_c(w, '=');
        put(w, q[i].value, q[i].value_len);
    }
    put_c(w, '\n');
    for (size_t i = 0; i < nh; i++) {
        int repeat = i > 0 && hname_cmp(&h[i - 1], &h[i]) == 0;
        if (repeat) {
            put_c(w, ','); /* same name again: one line, values joined by ',' */
        } else {
            if (i) {
                put_c(w, '\n');
                put_c(sh, ';');
            }
            put(w, h[i].name, h[i].name_len);
            put(sh, h[i].name, h[i].name_len);
            put_c(w, ':');
        }
        put_trimmed(w, h[i].value);
    }
    put(w, "\n\n", 2);
    put(w, sh->p, sh->len <= sh->cap ? sh->len : 0);
    put_c(w, '\n');
    put(w, in->payload_sha256, strlen(in->payload_sha256));
}

/* Long on purpose (~170 lines): the steps of AWS's SigV4 in the order its specification
   gives them (canonical request, string to sign, signature), each a few lines; split,
   the order that is the whole point would be spread over files. */
int s3_sign(s3_signer *s, const s3_sign_input *in, char *out_auth, size_t auth_cap,
            char out_amz_date[17])
{
    if (!in->method || !in->host || !in->canonical_uri || !in->payload_sha256 ||
        in->n_query > MAX_SIGN_QUERY || in->n_headers > MAX_SIGN_HEADERS - 4)
        return S3_E_ARG;
    EVP_MD_CTX *ctx = thread_ctx();
    if (!ctx)
        return S3_E_NOMEM;

    char amz_date[17];
    format_amz_date(in->now, amz_date);

    /* Query: encode every name and value into a scratch area, then sort. */
    char qstack[4096];
    char *qscratch = qstack;
    size_t qneed = 0;
    for (size_t i = 0; i < in->n_query; i++) {
        const char *v = in->query[i].value ? in->query[i].value : "";
        qneed += 3 * (strlen(in->query[i].name) + strlen(v));
    }
    if (qneed > sizeof qstack) {
        qscratch = malloc(qneed);
        if (!qscratch)
            return S3_E_NOMEM;
    }
    qent q[MAX_SIGN_QUERY];
    size_t qoff = 0;
    for (size_t i = 0; i < in->n_query; i++) {
        const char *n = in->query[i].name, *v = in->query[i].value ? in->query[i].value : "";
        qent e;
        e.name = qscratch + qoff;
        e.name_len = s3__uri_encode_raw(qscratch + qoff, n, strlen(n), 0);
        qoff += e.name_len;
        e.value = qscratch + qoff;
        e.value_len = s3__uri_encode_raw(qscratch + qoff, v, strlen(v), 0);
        qoff += e.value_len;
        size_t j = i;
        while (j > 0 && qent_cmp(&q[j - 1], &e) > 0) {
            q[j] = q[j - 1];
            j--;
        }
        q[j] = e;
    }

    /* Headers: the caller's plus the four the signer owns, sorted by name only. */
    hent h[MAX_SIGN_HEADERS];
    size_t nh = 0;
    char lnames[2048]; /* lower-cased copies of names given with capitals */
    size_t lnames_len = 0;
    hent own[4] = {
        {"host", 4, in->host},
        {"x-amz-content-sha256", 20, in->payload_sha256},
        {"x-amz-date", 10, amz_date},
        {"x-amz-security-token", 20, s->session_token},
    };
    size_t n_own = s->session_token[0] ? 4 : 3;
    for (size_t i = 0; i < in->n_headers + n_own; i++) {
        hent e;
        if (i < n_own) {
            e = own[i];
        } else {
            const s3_header *sh = &in->headers[i - n_own];
            e.name = sh->name;
            e.name_len = strlen(sh->name);
            e.value = sh->value ? sh->value : "";
            size_t k = 0;
            while (k < e.name_len && !(e.name[k] >= 'A' && e.name[k] <= 'Z'))
                k++;
            if (k < e.name_len) {
                if (e.name_len > sizeof lnames - lnames_len) {
                    if (qscratch != qstack)
                        free(qscratch);
                    return S3_E_TOO_BIG;
                }
                char *d = lnames + lnames_len;
                for (k = 0; k < e.name_len; k++)
                    d[k] = (e.name[k] >= 'A' && e.name[k] <= 'Z') ? (char)(e.name[k] + 32)
                                                                  : e.name[k];
                e.name = d;
                lnames_len += e.name_len;
            }
            if (is_signer_header(e.name, e.name_len))
                continue;
        }
        size_t j = nh++;
        while (j > 0 && hname_cmp(&h[j - 1], &e) > 0) {
            h[j] = h[j - 1];
            j--;
        }
        h[j] = e;
    }

    char shbuf[2048];
    writer sh = {shbuf, 0, sizeof shbuf};
    char cstack[CANON_STACK_BYTES];
    writer w = {cstack, 0, sizeof cstack};
    write_canonical(&w, &sh, in, q, in->n_query, h, nh);
    char *heap = NULL;
    if (w.len > w.cap || sh.len > sh.cap) {
        if (sh.len > sh.cap) { /* absurd header names; refuse rather than grow */
            if (qscratch != qstack)
                free(qscratch);
            return S3_E_TOO_BIG;
        }
        heap = malloc(w.len);
        if (!heap) {
            if (qscratch != qstack)
                free(qscratch);
            return S3_E_NOMEM;
        }
        w.p = heap;
        w.cap = w.len;
        w.len = 0;
        sh.len = 0;
        write_canonical(&w, &sh, in, q, in->n_query, h, nh);
    }
    if (qscratch != qstack)
        free(qscratch);

    unsigned char digest[32];
    int ok = sha256_2(ctx, w.p, w.len, NULL, 0, digest);
    free(heap);
    if (!ok)
        return S3_E_NOMEM;

    if (memcmp(s->key_date, amz_date, 8) != 0 || s->key_date[8] != '\0') {
        int rc = derive_key(s, ctx, amz_date);
        if (rc)
            return rc;
    }

    /* String to sign: fixed shape, at most 17+17+9+64+16+64 bytes. */
    size_t region_len = strlen(s->region);
    char sts[256];
    writer t = {sts, 0, sizeof sts};
    put(&t, "AWS4-HMAC-SHA256\n", 17);
    put(&t, amz_date, 16);
    put_c(&t, '\n');
    put(&t, amz_date, 8);
    put_c(&t, '/');
    put(&t, s->region, region_len);
    put(&t, "/s3/aws4_request\n", 17);
    char hex[64];
    s3__hex(digest, 32, hex);
    put(&t, hex, 64);
    if (t.len > t.cap)
        return S3_E_ARG;
    unsigned char sig[32];
    if (!hmac_sha256(ctx, s->key, 32, t.p, t.len, sig, 0))
        return S3_E_NOMEM;
    s3__hex(sig, 32, hex);

    writer a = {out_auth, 0, auth_cap ? auth_cap - 1 : 0};
    put(&a, "AWS4-HMAC-SHA256 Credential=", 28);
    put(&a, s->access_key, strlen(s->access_key));
    put_c(&a, '/');
    put(&a, amz_date, 8);
    put_c(&a, '/');
    put(&a, s->region, region_len);
    put(&a, "/s3/aws4_request, SignedHeaders=", 32);
    put(&a, sh.p, sh.len);
    put(&a, ", Signature=", 12);
    put(&a, hex, 64);
    if (a.len > a.cap || auth_cap == 0)
        return S3_E_TOO_BIG;
    out_auth[a.len] = '\0';
    memcpy(out_amz_date, amz_date, 17);
    return S3_E_OK;
}

void s3_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) { /* fall back to the clock: unique enough locally */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)((x >> (i % 8 * 8)) ^ ((unsigned)getpid() >> (i % 4 * 8)) ^ i);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}
