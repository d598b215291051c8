/*
 * format.c — one completion-report row, byte for byte as AWS writes it
 * (../shared/aws-formats.md §5.3-5.5), and the module's error table.
 *
 * Row written:
 *   Bucket,Key,VersionId,TaskStatus,HTTPStatusCode,ErrorCode,ResultMessage\n
 * - Key is the manifest's text (still URL-encoded), VersionId as given or empty;
 * - TaskStatus is "succeeded" or "failed";
 * - HTTPStatusCode is the decimal status; a status <= 0 (no HTTP answer at all) is written
 *   as an empty field rather than a made-up number;
 * - ErrorCode empty on success; ResultMessage as the caller gives it ("success" for a
 *   Batch Replication success, aws-formats.md §5.6);
 * - a field is quoted only when it holds '"', ',', CR or LF (RFC 4180; inner quotes doubled,
 *   by libcsv's csv_write); anything else, spaces and UTF-8 included, is copied as is.
 *
 * This runs once per task on the engine's thread, so it must stay far below a microsecond:
 * no printf, no allocation beyond the caller's buffer growing, one table lookup per byte to
 * decide on quoting.
 */
#include "report/report.h"

#include <csv.h>
#include <string.h>

#define S3_ERR_NAME_PREFIX "RPT_E_"
S3_ERROR_FUNCS(rpt, RPT_ERRNO_MAP, "unknown report error")

static const unsigned char NEEDS_QUOTES[256] = {['"'] = 1, [','] = 1, ['\r'] = 1, ['\n'] = 1};

/* csv_write quotes a whole field at once into a buffer we must size: 2n + 2 in the worst
   case. Long fields go through in pieces of this many bytes; each piece's own outer quotes
   are dropped and one pair wraps the field. */
#define QUOTE_PIECE_BYTES 2048

static int put_quoted(s3_buf *out, const char *p, size_t n)
{
    char tmp[2 * QUOTE_PIECE_BYTES + 2];
    if (s3_buf_append(out, "\"", 1) != 0)
        return -1;
    while (n > 0) {
        size_t k = n < QUOTE_PIECE_BYTES ? n : QUOTE_PIECE_BYTES;
        size_t w = csv_write(tmp, sizeof tmp, p, k);
        if (w < 2 || w > sizeof tmp || s3_buf_append(out, tmp + 1, w - 2) != 0)
            return -1;
        p += k;
        n -= k;
    }
    return s3_buf_append(out, "\"", 1) != 0 ? -1 : 0;
}

/* Appends one field followed by sep (',' or '\n'). */
static int put_field(s3_buf *out, const char *p, size_t n, char sep)
{
    size_t i = 0;
    while (i < n && !NEEDS_QUOTES[(unsigned char)p[i]])
        i++;
    if (i < n) {
        if (put_quoted(out, p, n) != 0)
            return -1;
    } else if (n > 0 && s3_buf_append(out, p, n) != 0) {
        return -1;
    }
    return s3_buf_append(out, &sep, 1) != 0 ? -1 : 0;
}

static int put_cstr(s3_buf *out, const char *s, char sep)
{
    return put_field(out, s ? s : "", s ? strlen(s) : 0, sep);
}

int rpt_format_row(s3_buf *out, const rpt_row *row)
{
    size_t start = out->len;
    int bad = put_field(out, row->bucket.ptr, row->bucket.len, ',') ||
              put_field(out, row->key.ptr, row->key.len, ',') ||
              put_field(out, row->version_id.ptr, row->version_id.len, ',') ||
              put_cstr(out, row->succeeded ? "succeeded" : "failed", ',');
    if (!bad && row->http_status > 0)
        bad = s3_buf_append_u64(out, (uint64_t)row->http_status) != 0;
    bad = bad || s3_buf_append(out, ",", 1) != 0 || put_cstr(out, row->error_code, ',') ||
          put_cstr(out, row->message, '\n');
    if (bad) { /* leave no half row behind */
        out->len = start;
        if (out->ptr)
            out->ptr[start] = '\0';
        return -RPT_E_NOMEM;
    }
    return 0;
}
