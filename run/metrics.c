/*
 * metrics.c — the Prometheus text endpoint (--metrics-addr HOST:PORT), served by
 * libmicrohttpd from its own thread.
 *
 * The scheduler never touches a metrics connection: a scrape, a health probe that connects
 * and closes (Kubernetes tcpSocket, `nc -z`), a client that resets, or hundreds of idle
 * connections cost the job nothing. Before this file the control loop accepted and answered
 * each connection itself: one connect-and-close killed the process with SIGPIPE, and ~400
 * idle connections stalled a job's steering by seconds each. Bounds: at most
 * METRICS_MAX_CONNECTIONS at once, each closed after METRICS_IDLE_TIMEOUT_S without
 * traffic; a request body is never read. libmicrohttpd sends with MSG_NOSIGNAL.
 *
 * The listening socket is bound here (not by the library) so that a refusal names the
 * address and the errno ("--metrics-addr 127.0.0.1:80: Permission denied").
 *
 * GET (or HEAD) of any path answers 200 with the text the render callback writes; other
 * methods answer 405.
 */
#include "run/run_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define METRICS_MAX_CONNECTIONS 64
#define METRICS_IDLE_TIMEOUT_S 10
#define METRICS_MAX_BYTES (16u << 20)

struct run__metrics {
    struct MHD_Daemon *daemon;
    int fd;
    run__metrics_render_fn render;
    void *user;
};

static int listen_on(const char *addr, char *err, size_t err_len)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || colon - addr >= (long)sizeof host) {
        snprintf(err, err_len, "--metrics-addr: expected HOST:PORT, got \"%s\"", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535) {
        snprintf(err, err_len, "--metrics-addr: \"%s\" is not a port (0-65535)", colon + 1);
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, err_len, "--metrics-addr: \"%s\" is not an IPv4 address", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "--metrics-addr %s: socket: %s", addr, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
        snprintf(err, err_len, "--metrics-addr %s: cannot listen: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_len, void **con_cls)
{
    run__metrics *m = cls;
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;
    s3_buf b;
    s3_buf_init(&b, METRICS_MAX_BYTES);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        s3_buf_append_str(&b, "only GET\n");
    } else if (m->render(&b, m->user) != 0) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        s3_buf_reset(&b);
        s3_buf_append_str(&b, "metrics too large\n");
    }
    r = MHD_create_response_from_buffer(b.len, b.ptr ? b.ptr : (char *)"", MHD_RESPMEM_MUST_COPY);
    s3_buf_cleanup(&b);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

run__metrics *run__metrics_start(const char *addr, run__metrics_render_fn render, void *user,
                                 char *err, size_t err_len)
{
    run__metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    m->render = render;
    m->user = user;
    if ((m->fd = listen_on(addr, err, err_len)) < 0) {
        free(m);
        return NULL;
    }
    m->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, answer, m,
        MHD_OPTION_LISTEN_SOCKET, m->fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_TIMEOUT_S,
        MHD_OPTION_END);
    if (!m->daemon) {
        snprintf(err, err_len, "--metrics-addr %s: cannot start the HTTP server "
                               "(libmicrohttpd)", addr);
        close(m->fd);
        free(m);
        return NULL;
    }
    return m;
}

void run__metrics_stop(run__metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->daemon); /* closes the listening socket too (checked: 0.9.75) */
    free(m);
}
