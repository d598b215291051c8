/*
 * names.c — which bucket names S3 accepts, and where an S3 key may be kept on local disk.
 *
 * Bucket names follow S3's rules for general purpose buckets (User Guide, "Bucket naming
 * rules"): 3 to 63 characters; lower-case letters, digits, '.' and '-'; beginning and ending
 * with a letter or a digit; no two adjacent periods; not formatted as an IPv4 address. The
 * older us-east-1 rules also allowed upper-case letters and '_' and up to 255 characters,
 * and such buckets still answer (AWS's own CreateJob example names "my_manifests"), so
 * those are accepted too. What is refused can never name a bucket, and some of it (".",
 * "..", "a/b", "a?b", "") would make a request path reach another bucket or the service, so
 * every bucket that reaches a request is checked here first.
 *
 * Keys are never changed: S3 keys may contain "." and ".." segments and "//", and a request
 * carries them as they are (s3_call_prepare sets CURLOPT_PATH_AS_IS). A local copy of an
 * object whose key comes from a user or a server (report files staged before upload, a
 * generated manifest) must not leave its directory, so s3_key_local_path writes each "."
 * or ".." segment of the key as "%2E" or "%2E%2E"; every other byte stays.
 */
#include "s3/s3.h"

#include <stdio.h>
#include <string.h>

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* "192.168.5.4": four groups of 1-3 digits separated by periods. */
static int looks_like_ipv4(s3_slice s)
{
    int groups = 1, digits = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c >= '0' && c <= '9') {
            if (++digits > 3)
                return 0;
        } else if (c == '.') {
            if (digits == 0)
                return 0;
            groups++;
            digits = 0;
        } else {
            return 0;
        }
    }
    return groups == 4 && digits > 0;
}

const char *s3_bucket_name_problem(s3_slice name)
{
    if (name.len < 3)
        return "a bucket name has at least 3 characters";
    if (name.len > 255)
        return "a bucket name has at most 63 characters (255 for older us-east-1 buckets)";
    for (size_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        if (!is_alnum(c) && c != '.' && c != '-' && c != '_')
            return "a bucket name has only letters, digits, '.', '-' (and '_' in older "
                   "us-east-1 buckets)";
        if (c == '.' && i > 0 && name.ptr[i - 1] == '.')
            return "a bucket name has no two adjacent periods";
    }
    if (!is_alnum(name.ptr[0]) || !is_alnum(name.ptr[name.len - 1]))
        return "a bucket name begins and ends with a letter or a digit";
    if (looks_like_ipv4(name))
        return "a bucket name is not formatted as an IP address";
    return NULL;
}

int s3_key_local_path(char *out, size_t cap, const char *root, const char *key)
{
    if (cap == 0)
        return -1;
    size_t n = (size_t)snprintf(out, cap, "%s/", root);
    if (n >= cap) {
        out[0] = '\0';
        return -1;
    }
    const char *p = key;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        const char *text = p;
        if (seg == 1 && p[0] == '.')
            text = "%2E", seg = 3;
        else if (seg == 2 && p[0] == '.' && p[1] == '.')
            text = "%2E%2E", seg = 6;
        if (n + seg + (end ? 1 : 0) >= cap) {
            out[0] = '\0'; /* never a cut path: "" fails wherever it is used */
            return -1;
        }
        memcpy(out + n, text, seg);
        n += seg;
        if (!end)
            break;
        out[n++] = '/';
        p = end + 1;
    }
    out[n] = '\0';
    return 0;
}
