/*
 * errors.c — s3_strerror() and s3_errname() generated from the S3_ERRNO_MAP table in s3.h,
 * so that adding an error is one line there (libuv's UV_ERRNO_MAP).
 */
#include "s3/s3.h"

const char *s3_strerror(int err)
{
    switch (err) {
#define XX(name, msg)                                                                      \
    case S3_E_##name:                                                                      \
        return msg;
        S3_ERRNO_MAP(XX)
#undef XX
    }
    return "unknown s3 error";
}

const char *s3_errname(int err)
{
    switch (err) {
#define XX(name, msg)                                                                      \
    case S3_E_##name:                                                                      \
        return "S3_E_" #name;
        S3_ERRNO_MAP(XX)
#undef XX
    }
    return "S3_E_UNKNOWN";
}
