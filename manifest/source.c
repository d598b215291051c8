/*
 * source.c — a manifest file as a stream of decompressed chunks.
 *
 * Manifests are often stored compressed (S3 Inventory writes .csv.gz), and AWS does not
 * require an extension, so the codec is told by magic bytes, never by name:
 *   1f 8b        gzip  (RFC 1952; several concatenated members are read as one stream, as
 *                       gzip(1) does; zlib inflate with windowBits 15+32)
 *   28 b5 2f fd  zstd  (RFC 8878; ZSTD_decompressStream reads consecutive frames itself)
 *   else         plain bytes
 * A stream that stops inside a gzip member or a zstd frame is an error (a truncated upload
 * must not pass as a shorter manifest). Memory is two MF__READ_BUF_BYTES buffers plus the
 * codec's own state (zlib ~ 44 KiB; zstd up to its window, 8 MiB at level <= 19 by default).
 */
#include "manifest/manifest.h"
#include "manifest/manifest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const unsigned char GZIP_MAGIC[2] = {0x1f, 0x8b};
static const unsigned char ZSTD_MAGIC[4] = {0x28, 0xb5, 0x2f, 0xfd};

/* Fills raw[raw_len..] from the file until the buffer is full or the file ends. */
static int fill_raw(mf__source *s, char *problem, size_t problem_len)
{
    while (s->raw_len < MF__READ_BUF_BYTES && !s->raw_eof) {
        ssize_t n = read(s->fd, s->raw + s->raw_len, MF__READ_BUF_BYTES - s->raw_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(problem, problem_len, "read failed: %s", strerror(errno));
            return -MF_E_IO;
        }
        if (n == 0)
            s->raw_eof = 1;
        s->raw_len += (size_t)n;
    }
    return 0;
}

/* Makes raw input available: returns the bytes left in raw, refilling when it is used up. */
static int refill_if_empty(mf__source *s, char *problem, size_t problem_len)
{
    if (s->raw_pos < s->raw_len || s->raw_eof)
        return 0;
    s->raw_pos = s->raw_len = 0;
    return fill_raw(s, problem, problem_len);
}

int mf__source_open(mf__source *s, const char *path, char *err, size_t err_len)
{
    memset(s, 0, sizeof *s);
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return -MF_E_IO;
    }
    s->raw = malloc(MF__READ_BUF_BYTES);
    if (!s->raw) {
        snprintf(err, err_len, "%s: out of memory", path);
        mf__source_close(s);
        return -MF_E_NOMEM;
    }
    char problem[256];
    if (fill_raw(s, problem, sizeof problem) < 0) {
        snprintf(err, err_len, "%s: %s", path, problem);
        mf__source_close(s);
        return -MF_E_IO;
    }
    if (s->raw_len >= sizeof ZSTD_MAGIC && memcmp(s->raw, ZSTD_MAGIC, sizeof ZSTD_MAGIC) == 0)
        s->codec = MF__CODEC_ZSTD;
    else if (s->raw_len >= sizeof GZIP_MAGIC && memcmp(s->raw, GZIP_MAGIC, sizeof GZIP_MAGIC) == 0)
        s->codec = MF__CODEC_GZIP;
    else
        s->codec = MF__CODEC_PLAIN;

    if (s->codec == MF__CODEC_PLAIN)
        return 0;
    s->out = malloc(MF__READ_BUF_BYTES);
    if (!s->out) {
        snprintf(err, err_len, "%s: out of memory", path);
        mf__source_close(s);
        return -MF_E_NOMEM;
    }
    if (s->codec == MF__CODEC_GZIP) {
        /* 15+32: a 32 KiB window and automatic gzip/zlib header detection. */
        if (inflateInit2(&s->z, 15 + 32) != Z_OK) {
            snprintf(err, err_len, "%s: cannot start zlib: %s", path,
                     s->z.msg ? s->z.msg : "out of memory");
            mf__source_close(s);
            return -MF_E_NOMEM;
        }
        s->z_live = 1;
    } else {
        s->zd = ZSTD_createDStream();
        if (!s->zd || ZSTD_isError(ZSTD_initDStream(s->zd))) {
            snprintf(err, err_len, "%s: cannot start zstd", path);
            mf__source_close(s);
            return -MF_E_NOMEM;
        }
        s->zstd_hint = 1; /* nothing decoded yet: an empty input is a truncated frame */
    }
    return 0;
}

/* Decompresses into out[0..MF__READ_BUF_BYTES); *produced gets the byte count. On an error
   the bytes produced so far are still reported, the error is returned. */
static int inflate_some(mf__source *s, size_t *produced, char *problem, size_t problem_len)
{
    z_stream *z = &s->z;
    z->next_out = s->out;
    z->avail_out = MF__READ_BUF_BYTES;
    for (;;) {
        *produced = MF__READ_BUF_BYTES - z->avail_out;
        if (z->avail_out == 0)
            return 0;
        int rc = refill_if_empty(s, problem, problem_len);
        if (rc < 0)
            return rc;
        if (s->raw_pos == s->raw_len) { /* end of file */
            if (!s->z_member_done) {
                snprintf(problem, problem_len, "gzip data ends early (truncated file?)");
                return -MF_E_INVALID_CONTENT;
            }
            return 0;
        }
        if (s->z_member_done) { /* more bytes after a member: the next member */
            if (inflateReset(z) != Z_OK) {
                snprintf(problem, problem_len, "zlib: cannot reset");
                return -MF_E_INVALID_CONTENT;
            }
            s->z_member_done = 0;
        }
        z->next_in = s->raw + s->raw_pos;
        z->avail_in = (uInt)(s->raw_len - s->raw_pos);
        int zr = inflate(z, Z_NO_FLUSH);
        s->raw_pos = s->raw_len - z->avail_in;
        if (zr == Z_STREAM_END) {
            s->z_member_done = 1;
        } else if (zr == Z_MEM_ERROR) {
            snprintf(problem, problem_len, "zlib: out of memory");
            *produced = MF__READ_BUF_BYTES - z->avail_out;
            return -MF_E_NOMEM;
        } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            snprintf(problem, problem_len, "gzip data is corrupt (zlib: %s)",
                     z->msg ? z->msg : "error");
            *produced = MF__READ_BUF_BYTES - z->avail_out;
            return -MF_E_INVALID_CONTENT;
        }
    }
}

static int unzstd_some(mf__source *s, size_t *produced, char *problem, size_t problem_len)
{
    ZSTD_outBuffer ob = {s->out, MF__READ_BUF_BYTES, 0};
    for (;;) {
        *produced = ob.pos;
        if (ob.pos == ob.size)
            return 0;
        int rc = refill_if_empty(s, problem, problem_len);
        if (rc < 0)
            return rc;
        ZSTD_inBuffer ib = {s->raw + s->raw_pos, s->raw_len - s->raw_pos, 0};
        int at_eof = ib.size == 0;
        if (at_eof && s->zstd_hint == 0)
            return 0;
        size_t before = ob.pos;
        /* At the end of the file this call only flushes what zstd still holds. */
        size_t zr = ZSTD_decompressStream(s->zd, &ob, &ib);
        s->raw_pos += ib.pos;
        *produced = ob.pos;
        if (ZSTD_isError(zr)) {
            snprintf(problem, problem_len, "zstd data is corrupt (%s)", ZSTD_getErrorName(zr));
            return -MF_E_INVALID_CONTENT;
        }
        s->zstd_hint = zr;
        if (at_eof && ob.pos == before && zr != 0) {
            snprintf(problem, problem_len, "zstd data ends early (truncated file?)");
            return -MF_E_INVALID_CONTENT;
        }
    }
}

int mf__source_read(mf__source *s, const unsigned char **out, size_t *out_len, char *problem,
                    size_t problem_len)
{
    *out = NULL;
    *out_len = 0;
    if (s->pending_err) {
        snprintf(problem, problem_len, "%s", s->pending_msg);
        return s->pending_err;
    }
    if (s->codec == MF__CODEC_PLAIN) {
        /* The first chunk was read by open; later ones replace it. */
        if (s->raw_pos == s->raw_len) {
            s->raw_pos = s->raw_len = 0;
            int rc = fill_raw(s, problem, problem_len);
            if (rc < 0)
                return rc;
        }
        if (s->raw_len == 0)
            return 0;
        *out = s->raw;
        *out_len = s->raw_len;
        s->raw_pos = s->raw_len;
        return 1;
    }
    size_t produced = 0;
    int rc = s->codec == MF__CODEC_GZIP ? inflate_some(s, &produced, problem, problem_len)
                                        : unzstd_some(s, &produced, problem, problem_len);
    if (rc < 0 && produced == 0)
        return rc;
    if (rc < 0) { /* hand out what was decoded; the error comes next time */
        s->pending_err = rc;
        snprintf(s->pending_msg, sizeof s->pending_msg, "%s", problem);
    }
    if (produced == 0)
        return 0;
    *out = s->out;
    *out_len = produced;
    return 1;
}

void mf__source_close(mf__source *s)
{
    if (s->z_live)
        inflateEnd(&s->z);
    if (s->zd)
        ZSTD_freeDStream(s->zd);
    if (s->fd >= 0)
        close(s->fd);
    free(s->raw);
    free(s->out);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}
