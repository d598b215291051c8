/*
 * uri.c — S3's URI encoding (the one SigV4 canonicalises with) and its inverse.
 *
 * Encoding: bytes A-Z a-z 0-9 - . _ ~ stay, '/' stays only inside an object key in a path,
 * every other byte (UTF-8 bytes included) becomes %XX with upper-case hex. This is RFC 3986
 * "unreserved" and what botocore's percent_encode(safe="-._~") produces, so '+' is %2B and
 * space is %20 (never '+', which S3 reads back as a space in x-amz-copy-source).
 * Decoding accepts %XX with either hex case; '+' maps to space only when asked (Inventory
 * CSV keys use '+' for space, Batch Operations CSV keys use %20).
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <string.h>

/* 1 for the bytes that stay as they are. '/' is handled separately. */
static const unsigned char unreserved[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['-'] = 1, ['.'] = 1,
    ['_'] = 1, ['~'] = 1,
};

size_t s3__uri_encode_raw(char *dst, const char *src, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *d = dst;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (unreserved[c] || (c == '/' && keep_slash)) {
            *d++ = (char)c;
        } else {
            d[0] = '%';
            d[1] = hex[c >> 4];
            d[2] = hex[c & 15];
            d += 3;
        }
    }
    return (size_t)(d - dst);
}

int s3_uri_encode(s3_buf *out, s3_slice src, int keep_slash)
{
    if (src.len > SIZE_MAX / 3)
        return S3_E_TOO_BIG;
    /* Reserve the worst case (every byte escaped) so the loop never checks capacity. */
    int rc = s3__buf_reserve(out, src.len * 3);
    if (rc == S3_E_TOO_BIG) {
        /* The worst case may not fit under the cap while the real encoding does. */
        size_t need = 0;
        for (size_t i = 0; i < src.len; i++) {
            unsigned char c = (unsigned char)src.ptr[i];
            need += (unreserved[c] || (c == '/' && keep_slash)) ? 1 : 3;
        }
        rc = s3__buf_reserve(out, need);
    }
    if (rc)
        return rc;
    out->len += s3__uri_encode_raw(out->ptr + out->len, src.ptr, src.len, keep_slash);
    out->ptr[out->len] = '\0';
    return S3_E_OK;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Writes a NUL after the result only when it got shorter (so the byte is ours to write);
   a caller that needs a C string either way terminates at the returned length. */
long s3_uri_decode_inplace(char *s, size_t len, int plus_is_space, size_t *bad_at)
{
    size_t r = 0, w = 0;
    while (r < len) {
        unsigned char c = (unsigned char)s[r];
        if (c == '%') {
            int h = r + 1 < len ? hexval((unsigned char)s[r + 1]) : -1;
            int l = r + 2 < len ? hexval((unsigned char)s[r + 2]) : -1;
            if (h < 0 || l < 0) {
                if (bad_at)
                    *bad_at = r;
                return -1;
            }
            s[w++] = (char)(h * 16 + l);
            r += 3;
        } else {
            s[w++] = (plus_is_space && c == '+') ? ' ' : (char)c;
            r++;
        }
    }
    if (w < len)
        s[w] = '\0';
    return (long)w;
}

int s3_copy_source(s3_buf *out, const char *bucket, const char *key, const char *version_id)
{
    if (!bucket || !*bucket || !key || !*key)
        return S3_E_ARG;
    s3_buf_reset(out);
    int rc = s3_uri_encode(out, s3_slice_cstr(bucket), 1);
    if (!rc)
        rc = s3_buf_append(out, "/", 1);
    if (!rc)
        rc = s3_uri_encode(out, s3_slice_cstr(key), 1);
    if (!rc && version_id && *version_id) {
        rc = s3_buf_append(out, "?versionId=", 11);
        if (!rc)
            rc = s3_uri_encode(out, s3_slice_cstr(version_id), 0);
    }
    return rc;
}
