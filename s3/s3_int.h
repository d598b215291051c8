/*
 * s3_int.h — internals shared by the files of the s3/ module. Never included from outside
 * s3/ (the tests and the engine use s3.h only).
 */
#ifndef BATCHREP_S3_INT_H
#define BATCHREP_S3_INT_H

#include "s3/s3.h"

/* The empty-body SHA-256, sent as x-amz-content-sha256 when there is no payload. */
#define S3__EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Makes room for n more bytes plus the NUL; S3_E_TOO_BIG past max_bytes. */
int s3__buf_reserve(s3_buf *b, size_t n);

/* Writes the S3 URI encoding of src[0..n) into dst, which has room for 3*n bytes.
   Returns the number of bytes written. */
size_t s3__uri_encode_raw(char *dst, const char *src, size_t n, int keep_slash);

/* Lower-case hex of n bytes into out (2n chars, no NUL). */
void s3__hex(const unsigned char *in, size_t n, char *out);

/* Copies at most cap-1 bytes of src[0..n) and NUL-terminates. Returns 1 when all fit. */
int s3__copy_str(char *dst, size_t cap, const char *src, size_t n);

/* ASCII case-insensitive comparison of a[0..n) with the NUL-terminated lower-case b. */
int s3__ieq(const char *a, size_t n, const char *b_lower);

/* The body write callback of an s3_call (curl's CURLOPT_WRITEFUNCTION signature): appends
   into call->resp.body, returns 0 (abort) past the cap. */
size_t s3__body_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);

/* The deadlines of one request (limits.c): total_ms 0 = no whole deadline, stall_s 0 = no
   stall detector. */
typedef struct s3__deadline {
    const char *op;
    s3_op_kind kind;
    long connect_ms, total_ms, stall_s;
} s3__deadline;
void s3__deadline_for(const s3_limits *limits, const s3_request *req, int64_t copy_bytes,
                      s3__deadline *out);
/* "timeout: ..." for a call that ended with CURLE_OPERATION_TIMEDOUT: which deadline, which
   operation, how far it got. */
void s3__timeout_message(const s3_call *c, char *out, size_t cap);

#endif
