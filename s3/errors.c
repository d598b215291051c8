/*
 * errors.c — s3_strerror() and s3_errname() generated from the S3_ERRNO_MAP table in s3.h,
 * so that adding an error is one line there (libuv's UV_ERRNO_MAP). Every module makes its
 * own pair the same way (S3_ERROR_FUNCS).
 */
#include "s3/s3.h"

#define S3_ERR_NAME_PREFIX "S3_E_"
S3_ERROR_FUNCS(s3, S3_ERRNO_MAP, "unknown s3 error")
