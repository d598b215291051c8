/*
 * buf.c — the two buffer types that cross module boundaries: s3_slice (borrowed {ptr,len})
 * and s3_buf (owned, growable, with a hard cap fixed at init so that memory is a budget
 * the caller can state, STYLE.md "Ownership is written down").
 *
 * An s3_buf is NUL-terminated whenever ptr != NULL, so its text can be handed to C string
 * functions without a copy; the NUL is not counted in len and does not count against the cap.
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <stdlib.h>
#include <string.h>

s3_slice s3_slice_cstr(const char *s)
{
    s3_slice sl = {s, s ? strlen(s) : 0};
    return sl;
}

int s3_slice_eq(s3_slice a, const char *cstr)
{
    size_t n = strlen(cstr);
    return a.len == n && (n == 0 || memcmp(a.ptr, cstr, n) == 0);
}

void s3_buf_init(s3_buf *b, size_t max_bytes)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_bytes = max_bytes;
}

void s3_buf_cleanup(s3_buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

int s3_buf_reserve(s3_buf *b, size_t n)
{
    return s3__buf_reserve(b, n);
}

void s3_buf_reset(s3_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

int s3__buf_reserve(s3_buf *b, size_t n)
{
    if (n > b->max_bytes || b->len > b->max_bytes - n)
        return S3_E_TOO_BIG;
    if (b->len + n >= SIZE_MAX - 1)
        return S3_E_NOMEM;
    size_t need = b->len + n + 1; /* + NUL */
    if (need <= b->cap)
        return S3_E_OK;
    /* Double (at least 256 bytes) so that n appends cost O(n) copies, but never allocate
       more than the cap allows. */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    size_t limit = b->max_bytes < SIZE_MAX ? b->max_bytes + 1 : SIZE_MAX;
    if (cap > limit)
        cap = limit;
    char *p = realloc(b->ptr, cap);
    if (!p)
        return S3_E_NOMEM;
    b->ptr = p;
    b->cap = cap;
    return S3_E_OK;
}

int s3_buf_append(s3_buf *b, const void *p, size_t n)
{
    int rc = s3__buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return S3_E_OK;
}

int s3_buf_append_str(s3_buf *b, const char *s)
{
    return s3_buf_append(b, s, strlen(s));
}

int s3_buf_append_u64(s3_buf *b, uint64_t v)
{
    char tmp[20]; /* 18446744073709551615 has 20 digits */
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return s3_buf_append(b, tmp + i, sizeof tmp - i);
}

void s3__hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

int s3__copy_str(char *dst, size_t cap, const char *src, size_t n)
{
    if (cap == 0)
        return n == 0;
    int fits = n < cap;
    if (!fits)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

int s3__ieq(const char *a, size_t n, const char *b_lower)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (b_lower[i] == '\0' || c != (unsigned char)b_lower[i])
            return 0;
    }
    return b_lower[n] == '\0';
}
