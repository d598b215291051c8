/*
 * bench_instant_server.c — an S3 endpoint that answers instantly with canned responses, so
 * that a client benchmark measures the client (issue 5, "client-bound"). Bench tool only:
 * it stores nothing and checks no signature.
 *
 * Usage: bench_instant_server PORT [VERSIONS] [THREADS] [OWNERSHIP]
 *   listens on 127.0.0.1:PORT (never another address); VERSIONS (default 1) is how many
 *   versions every key has: their IDs are v1..vN, v1 oldest, vN latest. THREADS (default 1)
 *   event loops share the port with SO_REUSEPORT. OWNERSHIP is what every bucket's Object
 *   Ownership is: BucketOwnerEnforced (default: ACLs disabled, as new AWS buckets) or "none"
 *   (no ownership controls: ACLs enabled, clients read each object's ACL).
 *
 * Answers (HTTP/1.1 keep-alive, one request at a time per connection, body read and dropped):
 *   GET  ...?versioning               200 <VersioningConfiguration><Status>Enabled</Status>
 *   GET  /bucket?versions&prefix=K    200 ListVersionsResult: key K (decoded), versions
 *                                     vN..v1 newest first, IsLatest on vN
 *   GET  /bucket (list-type=2 or v1)  200 empty ListBucketResult
 *   GET  ...?acl                      200 AccessControlPolicy: owner FULL_CONTROL
 *   GET  /bucket?object-lock          404 ObjectLockConfigurationNotFoundError
 *   GET  /bucket?ownershipControls    200 ObjectOwnership OWNERSHIP, or with "none" 404
 *                                     OwnershipControlsNotFoundError
 *   GET  /bucket/key                  200, 1 KiB of 'x'
 *   HEAD /bucket/key[?versionId=V]    200, x-amz-version-id V (else vN), Content-Length 1024,
 *                                     ETag, Last-Modified
 *   PUT  with x-amz-copy-source       200 <CopyObjectResult>
 *   PUT  other                        200, ETag, x-amz-version-id
 *   DELETE                            204; POST 200 empty; anything else 400
 * Per request it costs one read and one write system call in the common case.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "s3/s3.h"

#define CONN_BUF_BYTES 16384
#define OUT_BUF_BYTES 65536
#define MAX_EVENTS 256

typedef struct conn {
    int fd;
    char in[CONN_BUF_BYTES];
    size_t in_len;
    size_t body_left; /* request body bytes still to drop */
} conn;

static int g_port;
static int g_versions = 1;
static const char *g_ownership = "BucketOwnerEnforced";

static const char ETAG[] = "\"0f343b0931126a20f133d67c2b018a3b\"";
static const char LASTMOD_HTTP[] = "Wed, 25 Nov 2026 10:00:00 GMT";

static int listen_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)g_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4096) != 0) {
        perror("bench_instant_server: bind/listen");
        exit(1);
    }
    return fd;
}

/* Value of query parameter name in q (q..qend, no leading '?'); NULL when absent. */
static const char *query_param(const char *q, const char *qend, const char *name,
                               size_t *out_len)
{
    size_t nl = strlen(name);
    const char *p = q;
    while (p && p < qend) {
        const char *amp = memchr(p, '&', (size_t)(qend - p));
        const char *e = amp ? amp : qend;
        if ((size_t)(e - p) >= nl && memcmp(p, name, nl) == 0 &&
            (p + nl == e || p[nl] == '=')) {
            const char *v = p + nl == e ? e : p + nl + 1;
            *out_len = (size_t)(e - v);
            return v;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static const char *header_value(const char *h, const char *hend, const char *name,
                                size_t *out_len)
{
    size_t nl = strlen(name);
    const char *p = h;
    while (p < hend) {
        const char *eol = memchr(p, '\n', (size_t)(hend - p));
        if (!eol)
            eol = hend;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && *v == ' ')
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *out_len = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

typedef struct out {
    char b[OUT_BUF_BYTES];
    size_t n;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->n + n < sizeof o->b) {
        memcpy(o->b + o->n, s, n);
        o->n += n;
    }
}
static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }
static void putu(out *o, unsigned long v)
{
    char t[24];
    int i = 23;
    t[i] = '\0';
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts_(o, t + i);
}

/* XML-escapes s into o (keys may hold & < > " '). */
static void put_xml(out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&': puts_(o, "&amp;"); break;
        case '<': puts_(o, "&lt;"); break;
        case '>': puts_(o, "&gt;"); break;
        case '"': puts_(o, "&quot;"); break;
        case '\'': puts_(o, "&apos;"); break;
        default: put(o, s + i, 1);
        }
    }
}

static void respond(out *o, int status, const char *extra_hdrs, const char *body, size_t blen,
                    int head)
{
    puts_(o, status == 200 ? "HTTP/1.1 200 OK\r\n"
             : status == 204 ? "HTTP/1.1 204 No Content\r\n"
                             : "HTTP/1.1 400 Bad Request\r\n");
    puts_(o, "Connection: keep-alive\r\n");
    if (extra_hdrs)
        puts_(o, extra_hdrs);
    if (!head && status != 204) {
        puts_(o, "Content-Length: ");
        putu(o, blen);
        puts_(o, "\r\n");
    }
    puts_(o, "\r\n");
    if (!head && body)
        put(o, body, blen);
}

/* Handles one complete request (headers in h..hend); appends the answer to o. */
static void handle(const char *h, const char *hend, out *o)
{
    const char *sp1 = memchr(h, ' ', (size_t)(hend - h));
    if (!sp1) {
        respond(o, 400, NULL, "", 0, 0);
        return;
    }
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(hend - target));
    if (!sp2)
        sp2 = hend;
    const char *qm = memchr(target, '?', (size_t)(sp2 - target));
    const char *path_end = qm ? qm : sp2;
    const char *q = qm ? qm + 1 : sp2;
    size_t mlen = (size_t)(sp1 - h);
    int is_head = mlen == 4 && memcmp(h, "HEAD", 4) == 0;
    int is_get = mlen == 3 && memcmp(h, "GET", 3) == 0;
    int is_put = mlen == 3 && memcmp(h, "PUT", 3) == 0;
    int is_del = mlen == 6 && memcmp(h, "DELETE", 6) == 0;
    int is_post = mlen == 4 && memcmp(h, "POST", 4) == 0;
    /* "/bucket" or "/bucket/" has no key */
    const char *slash2 =
        path_end > target + 1 ? memchr(target + 1, '/', (size_t)(path_end - target - 1)) : NULL;
    int has_key = slash2 && slash2 + 1 < path_end;
    size_t vlen = 0;
    char hdrs[512];

    if (is_get && query_param(q, sp2, "versioning", &vlen)) {
        static const char b[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
                                "2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>";
        respond(o, 200, "Content-Type: application/xml\r\n", b, sizeof b - 1, 0);
        return;
    }
    if (is_get && query_param(q, sp2, "versions", &vlen)) {
        size_t plen = 0;
        const char *pfx = query_param(q, sp2, "prefix", &plen);
        char key[2048];
        size_t klen = 0;
        if (pfx && plen < sizeof key) {
            memcpy(key, pfx, plen);
            size_t bad = 0;
            long n = s3_uri_decode_inplace(key, plen, 0, &bad);
            klen = n < 0 ? 0 : (size_t)n;
        }
        out body;
        body.n = 0;
        puts_(&body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListVersionsResult "
                     "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>");
        put_xml(&body, key, klen);
        puts_(&body, "</Prefix><KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker>"
                     "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>");
        for (int v = g_versions; v >= 1; v--) {
            puts_(&body, "<Version><Key>");
            put_xml(&body, key, klen);
            puts_(&body, "</Key><VersionId>v");
            putu(&body, (unsigned long)v);
            puts_(&body, "</VersionId><IsLatest>");
            puts_(&body, v == g_versions ? "true" : "false");
            puts_(&body, "</IsLatest><LastModified>2026-11-25T10:00:");
            char ss[8];
            ss[0] = (char)('0' + (v / 10) % 6);
            ss[1] = (char)('0' + v % 10);
            ss[2] = '\0';
            puts_(&body, ss);
            puts_(&body, ".000Z</LastModified><ETag>&quot;0f343b0931126a20f133d67c2b018a3b&quot;"
                         "</ETag><Size>1024</Size><StorageClass>STANDARD</StorageClass>"
                         "<Owner><ID>o</ID><DisplayName>o</DisplayName></Owner></Version>");
        }
        puts_(&body, "</ListVersionsResult>");
        respond(o, 200, "Content-Type: application/xml\r\n", body.b, body.n, 0);
        return;
    }
    if (is_get && query_param(q, sp2, "acl", &vlen)) { /* GetObjectAcl / GetBucketAcl */
        static const char b[] =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AccessControlPolicy xmlns=\"http://"
            "s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>o</ID><DisplayName>o</DisplayName>"
            "</Owner><AccessControlList><Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/"
            "XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>o</ID><DisplayName>o"
            "</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>"
            "</AccessControlList></AccessControlPolicy>";
        respond(o, 200, "Content-Type: application/xml\r\n", b, sizeof b - 1, 0);
        return;
    }
    if (is_get && query_param(q, sp2, "object-lock", &vlen)) { /* no Object Lock here */
        static const char b[] =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
            "ObjectLockConfigurationNotFoundError</Code><Message>Object Lock configuration "
            "does not exist for this bucket</Message></Error>";
        respond(o, 404, "Content-Type: application/xml\r\n", b, sizeof b - 1, 0);
        return;
    }
    if (is_get && query_param(q, sp2, "ownershipControls", &vlen)) {
        char b[512];
        int n;
        if (strcmp(g_ownership, "none") == 0) {
            n = snprintf(b, sizeof b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                         "OwnershipControlsNotFoundError</Code><Message>The bucket ownership "
                         "controls were not found</Message></Error>");
            respond(o, 404, "Content-Type: application/xml\r\n", b, (size_t)n, 0);
        } else {
            n = snprintf(b, sizeof b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                         "<OwnershipControls xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                         "<Rule><ObjectOwnership>%s</ObjectOwnership></Rule>"
                         "</OwnershipControls>", g_ownership);
            respond(o, 200, "Content-Type: application/xml\r\n", b, (size_t)n, 0);
        }
        return;
    }
    if (is_get && !has_key) {
        static const char b[] =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3."
            "amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix></Prefix><KeyCount>0"
            "</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
            "</ListBucketResult>";
        respond(o, 200, "Content-Type: application/xml\r\n", b, sizeof b - 1, 0);
        return;
    }
    if (is_head || is_get) {
        const char *vid = query_param(q, sp2, "versionId", &vlen);
        char vbuf[300];
        if (!vid || vlen == 0 || vlen >= 256) {
            snprintf(vbuf, sizeof vbuf, "v%d", g_versions);
        } else {
            memcpy(vbuf, vid, vlen);
            vbuf[vlen] = '\0';
        }
        snprintf(hdrs, sizeof hdrs,
                 "x-amz-version-id: %s\r\nETag: %s\r\nLast-Modified: %s\r\n"
                 "Content-Type: binary/octet-stream\r\n%s",
                 vbuf, ETAG, LASTMOD_HTTP, is_head ? "Content-Length: 1024\r\n" : "");
        static char kib[1024];
        if (!kib[0])
            memset(kib, 'x', sizeof kib);
        respond(o, 200, hdrs, kib, sizeof kib, is_head);
        return;
    }
    if (is_put && header_value(h, hend, "x-amz-copy-source", &vlen)) {
        static const char b[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult>"
                                "<LastModified>2026-11-25T10:00:00.000Z</LastModified><ETag>"
                                "&quot;0f343b0931126a20f133d67c2b018a3b&quot;</ETag>"
                                "</CopyObjectResult>";
        respond(o, 200, "Content-Type: application/xml\r\nx-amz-version-id: c1\r\n", b,
                sizeof b - 1, 0);
        return;
    }
    if (is_put || is_post) {
        snprintf(hdrs, sizeof hdrs, "ETag: %s\r\nx-amz-version-id: p1\r\n", ETAG);
        respond(o, 200, hdrs, "", 0, 0);
        return;
    }
    if (is_del) {
        respond(o, 204, "x-amz-version-id: d1\r\n", "", 0, 0);
        return;
    }
    respond(o, 400, NULL, "", 0, 0);
}

static void close_conn(int ep, conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            /* answers are small (< 64 KiB) and the client reads them; wait briefly */
            usleep(100);
            continue;
        }
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads what is there, answers every complete request. 0 keeps the connection. */
static int on_readable(conn *c, out *o)
{
    for (;;) {
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -1;
        }
        c->in_len += (size_t)n;
        o->n = 0;
        size_t pos = 0;
        for (;;) {
            if (c->body_left) {
                size_t d = c->in_len - pos < c->body_left ? c->in_len - pos : c->body_left;
                pos += d;
                c->body_left -= d;
                if (c->body_left)
                    break;
            }
            char *start = c->in + pos;
            char *end = memmem(start, c->in_len - pos, "\r\n\r\n", 4);
            if (!end)
                break;
            handle(start, end + 2, o);
            size_t cl_len = 0;
            const char *cl = header_value(start, end + 2, "content-length", &cl_len);
            size_t body = 0;
            for (size_t i = 0; cl && i < cl_len && cl[i] >= '0' && cl[i] <= '9'; i++)
                body = body * 10 + (size_t)(cl[i] - '0');
            pos = (size_t)(end + 4 - c->in);
            c->body_left = body;
            if (o->n > sizeof o->b - 8192) {
                if (write_all(c->fd, o->b, o->n) < 0)
                    return -1;
                o->n = 0;
            }
        }
        if (o->n && write_all(c->fd, o->b, o->n) < 0)
            return -1;
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
        if (c->in_len == sizeof c->in)
            return -1; /* a header block over 16 KiB: not a client we serve */
    }
    return 0;
}

static void *loop(void *arg)
{
    (void)arg;
    int lfd = listen_socket();
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[MAX_EVENTS];
    static __thread out o;
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *c = calloc(1, sizeof *c);
                    if (!c) {
                        close(cfd);
                        continue;
                    }
                    c->fd = cfd;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
                }
                continue;
            }
            conn *c = evs[i].data.ptr;
            if (on_readable(c, &o) != 0)
                close_conn(ep, c);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_instant_server PORT [VERSIONS] [THREADS]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    g_port = (int)strtol(argv[1], NULL, 10);
    if (argc > 2)
        g_versions = (int)strtol(argv[2], NULL, 10);
    if (g_versions < 1 || g_versions > 50)
        g_versions = 1;
    int threads = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 1;
    if (argc > 4)
        g_ownership = argv[4];
    if (threads < 1 || threads > 16)
        threads = 1;
    for (int i = 1; i < threads; i++) {
        pthread_t t;
        pthread_create(&t, NULL, loop, NULL);
    }
    fprintf(stderr, "bench_instant_server: http://127.0.0.1:%d versions=%d threads=%d\n",
            g_port, g_versions, threads);
    loop(NULL);
    return 0;
}
