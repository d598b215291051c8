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
 * methods answer 405. run__render_metrics writes the process's: requests, retries,
 * throttling events, tasks by outcome, bytes replicated, current versions restored on top
 * (engine/unit.c "The current version is restored"), units in flight, and per job its
 * status and progress.
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

/* The listening socket, or -RUN_E_INVALID_OPTIONS / -RUN_E_IO with err set. */
static int listen_on(const char *addr, char *err, size_t err_len)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || colon - addr >= (long)sizeof host) {
        snprintf(err, err_len, "--metrics-addr: expected HOST:PORT, got \"%s\"", addr);
        return -RUN_E_INVALID_OPTIONS;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535) {
        snprintf(err, err_len, "--metrics-addr: \"%s\" is not a port (0-65535)", colon + 1);
        return -RUN_E_INVALID_OPTIONS;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, err_len, "--metrics-addr: \"%s\" is not an IPv4 address", host);
        return -RUN_E_INVALID_OPTIONS;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "--metrics-addr %s: socket: %s", addr, strerror(errno));
        return -RUN_E_IO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
        snprintf(err, err_len, "--metrics-addr %s: cannot listen: %s", addr, strerror(errno));
        close(fd);
        return -RUN_E_IO;
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

int run__metrics_start(const char *addr, run__metrics_render_fn render, void *user,
                       run__metrics **out, char *err, size_t err_len)
{
    *out = NULL;
    run__metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err_len, "out of memory");
        return -RUN_E_NOMEM;
    }
    m->render = render;
    m->user = user;
    if ((m->fd = listen_on(addr, err, err_len)) < 0) {
        int rc = m->fd;
        free(m);
        return rc;
    }
    m->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, answer, m,
        MHD_OPTION_LISTEN_SOCKET, m->fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_TIMEOUT_S,
        MHD_OPTION_END);
    if (!m->daemon) {
        /* not closed here: libmicrohttpd 0.9.75 closes a given socket on some of its
           failure paths and not on others, so closing it could close another thread's
           descriptor; the process is about to exit with this error anyway */
        snprintf(err, err_len, "--metrics-addr %s: cannot start the HTTP server "
                               "(libmicrohttpd)", addr);
        free(m);
        return -RUN_E_IO;
    }
    *out = m;
    return 0;
}

void run__metrics_stop(run__metrics *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->daemon); /* closes the listening socket too (checked: 0.9.75) */
    free(m);
}

/* ---- what it serves ----------------------------------------------------------------------- */

/* Reads only atomics and, under mu, the list of jobs and their fixed fields. */
int run__render_metrics(s3_buf *b, void *user)
{
    run__sched *s = user;
    char line[512];
    const eng_counters *k = &s->counters;
    int rc = 0;
    snprintf(line, sizeof line,
             "# TYPE batchrep_requests_total counter\nbatchrep_requests_total %llu\n"
             "# TYPE batchrep_retries_total counter\nbatchrep_retries_total %llu\n"
             "# TYPE batchrep_throttling_events_total counter\n"
             "batchrep_throttling_events_total %llu\n"
             "# TYPE batchrep_tasks_total counter\n",
             (unsigned long long)atomic_load(&k->requests),
             (unsigned long long)atomic_load(&k->retries),
             (unsigned long long)atomic_load(&k->throttle_events));
    rc |= s3_buf_append_str(b, line);
    uint64_t ok = 0, bad = 0, bytes = 0, restored = 0;
    int64_t inflight = 0;
    s3_buf per;
    s3_buf_init(&per, b->max_bytes);
    pthread_mutex_lock(&s->mu);
    for (run__job *jr = s->jobs; jr; jr = jr->next) {
        uint64_t a = atomic_load(&jr->succeeded), f = atomic_load(&jr->failed);
        const char *st = jobs_status_name((jobs_status)atomic_load(&jr->status_now));
        ok += a;
        bad += f;
        bytes += atomic_load(&jr->bytes);
        restored += atomic_load(&jr->restored);
        inflight += atomic_load(&jr->units_out);
        snprintf(line, sizeof line,
                 "batchrep_job_tasks{job_id=\"%s\",status=\"%s\",outcome=\"succeeded\"} %llu\n"
                 "batchrep_job_tasks{job_id=\"%s\",status=\"%s\",outcome=\"failed\"} %llu\n"
                 "batchrep_job_tasks_total{job_id=\"%s\"} %llu\n",
                 jr->job.row.id, st, (unsigned long long)a, jr->job.row.id, st,
                 (unsigned long long)f, jr->job.row.id, (unsigned long long)jr->job.row.total);
        rc |= s3_buf_append_str(&per, line);
    }
    pthread_mutex_unlock(&s->mu);
    snprintf(line, sizeof line,
             "batchrep_tasks_total{outcome=\"succeeded\"} %llu\n"
             "batchrep_tasks_total{outcome=\"failed\"} %llu\n"
             "# TYPE batchrep_bytes_replicated_total counter\n"
             "batchrep_bytes_replicated_total %llu\n"
             "# TYPE batchrep_current_restored_total counter\n"
             "batchrep_current_restored_total %llu\n"
             "# TYPE batchrep_units_in_flight gauge\nbatchrep_units_in_flight %lld\n"
             "# TYPE batchrep_job_tasks gauge\n",
             (unsigned long long)ok, (unsigned long long)bad, (unsigned long long)bytes,
             (unsigned long long)restored, (long long)inflight);
    rc |= s3_buf_append_str(b, line);
    rc |= s3_buf_append(b, per.ptr ? per.ptr : "", per.len);
    s3_buf_cleanup(&per);
    snprintf(line, sizeof line,
             "# TYPE batchrep_shard_leases_total counter\n"
             "batchrep_shard_leases_total{event=\"taken\"} %llu\n"
             "batchrep_shard_leases_total{event=\"lost\"} %llu\n"
             "# TYPE batchrep_checkpoints_total counter\n"
             "batchrep_checkpoints_total{outcome=\"saved\"} %llu\n"
             "batchrep_checkpoints_total{outcome=\"refused\"} %llu\n",
             (unsigned long long)atomic_load(&s->leases_taken),
             (unsigned long long)atomic_load(&s->leases_lost),
             (unsigned long long)atomic_load(&s->ckpt_saves),
             (unsigned long long)atomic_load(&s->ckpt_refused));
    rc |= s3_buf_append_str(b, line);
    return rc;
}

