/*
 * generate.c — ManifestGenerator.S3JobManifestGenerator: the source bucket's versions,
 * filtered, written as an inventory-shaped report (format name S3InventoryReport_CSV_20211130;
 * AWS publishes no byte layout for it, so batchrep writes what an S3 Inventory writes, and
 * reads it back with the Inventory reader).
 *
 * Why a file and not a stream into the engine: the job reads its manifest twice (Preparing
 * counts TotalNumberOfTasks, Active runs the tasks), and the bucket changes between two
 * listings; one listing spooled to disk gives both passes the same list, and is the
 * manifest output that EnableManifestOutput asks for.
 *
 * Listing: ListObjectVersions, max-keys 1000, key-marker / version-id-marker paging; each
 * page body (<= 8 MiB, s3_perform's cap) is parsed with the streaming expat parser and
 * dropped. Filters run cheapest first: key name, dates, size, storage class, then the
 * engine's eligibility callback (rules; may read tags), then a HeadObject per version only
 * when ObjectReplicationStatuses is given (x-amz-replication-status; absent = NONE; a delete
 * marker has none: NONE).
 */
#include "manifest/manifest.h"
#include "manifest/manifest_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#define GEN_SCHEMA                                                                         \
    "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, "     \
    "StorageClass"

typedef struct gen {
    const mf_gen_opts *o;
    const mf_gen_filter *f;
    mf_gen_result *res;
    gzFile gz;
    char data_rel[2200];         /* current data file, relative to out_dir */
    char data_path[4400];
    uint64_t rows_in_file;
    uint64_t rows_per_file;
    json_t *files;               /* manifest.json files[] */
    s3_buf line;
    int err;
    char msg[2048];
} gen;

static void gen_fail(gen *g, int rc, const char *msg)
{
    if (g->err)
        return;
    g->err = rc;
    snprintf(g->msg, sizeof g->msg, "%.*s", (int)sizeof g->msg - 1, msg); /* cut: bounded */
}

/* A random name like AWS's data files (939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz). */
static void file_name(char out[64])
{
    s3_uuid4(out);
    snprintf(out + 36, 64 - 36, ".csv.gz");
}

static int close_data(gen *g)
{
    if (!g->gz)
        return 0;
    int zr = gzclose(g->gz);
    g->gz = NULL;
    char m[4600];
    if (zr != Z_OK) {
        snprintf(m, sizeof m, "%s: cannot write (zlib %d)", g->data_path, zr);
        gen_fail(g, -MF_E_IO, m);
        return -1;
    }
    char md5[33], err[512];
    if (s3_md5_file(g->data_path, md5, err, sizeof err) != 0) {
        gen_fail(g, -MF_E_IO, err);
        return -1;
    }
    struct stat st;
    stat(g->data_path, &st);
    json_t *f = json_object();
    json_object_set_new(f, "key", json_string(g->data_rel));
    json_object_set_new(f, "size", json_integer((json_int_t)st.st_size));
    json_object_set_new(f, "MD5checksum", json_string(md5));
    json_array_append_new(g->files, f);
    g->res->n_files++;
    return 0;
}

static int open_data(gen *g)
{
    char name[64], m[4600];
    file_name(name);
    char dir[4600];
    if ((size_t)snprintf(g->data_rel, sizeof g->data_rel, "%s/data/%s", g->o->base_key, name) >=
            sizeof g->data_rel ||
        s3_key_local_path(g->data_path, sizeof g->data_path, g->o->out_dir, g->data_rel) ||
        s3_key_local_path(dir, sizeof dir, g->o->out_dir, g->data_rel)) {
        snprintf(m, sizeof m, "%s/%s: path too long", g->o->out_dir, g->data_rel);
        gen_fail(g, -MF_E_IO, m);
        return -1;
    }
    *strrchr(dir, '/') = '\0'; /* the data folder */
    if (s3_mkdir_p(dir, S3_MODE_PRIVATE_DIR) != 0) { /* under the state directory */
        snprintf(m, sizeof m, "%.4000s: cannot create: %s", dir, strerror(errno));
        gen_fail(g, -MF_E_IO, m);
        return -1;
    }
    /* "wb6": zlib level 6, gzip's default; rows are small and repetitive (~10x smaller). */
    g->gz = gzopen(g->data_path, "wb6");
    if (!g->gz) {
        snprintf(m, sizeof m, "%s: cannot create: %s", g->data_path, strerror(errno));
        gen_fail(g, -MF_E_IO, m);
        return -1;
    }
    g->rows_in_file = 0;
    return 0;
}

/* ---- filters --------------------------------------------------------------------------- */

static int ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return k <= n && memcmp(s + n - k, suf, k) == 0;
}

static int any_match(const char *key, const char *const *list, size_t n, int mode)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < n; i++) {
        const char *p = list[i];
        if (mode == 0 && strncmp(key, p, strlen(p)) == 0)
            return 1;
        if (mode == 1 && ends_with(key, klen, p))
            return 1;
        if (mode == 2 && strstr(key, p))
            return 1;
    }
    return 0;
}

static unsigned repl_bit(const char *status)
{
    if (!status[0])
        return MF_REPL_NONE;
    if (strcmp(status, "COMPLETED") == 0 || strcmp(status, "COMPLETE") == 0)
        return MF_REPL_COMPLETED;
    if (strcmp(status, "FAILED") == 0)
        return MF_REPL_FAILED;
    if (strcmp(status, "REPLICA") == 0)
        return MF_REPL_REPLICA;
    return 0; /* PENDING: no filter value selects it */
}

/* 1 keep, 0 drop, -1 error (in g). */
static int keep(gen *g, const s3_version_entry *v)
{
    const mf_gen_filter *f = g->f;
    if (!f)
        return 1;
    if (f->n_prefixes && !any_match(v->key, f->prefixes, f->n_prefixes, 0))
        return 0;
    if (f->n_suffixes && !any_match(v->key, f->suffixes, f->n_suffixes, 1))
        return 0;
    if (f->n_substrings && !any_match(v->key, f->substrings, f->n_substrings, 2))
        return 0;
    if (f->has_created_after && !(v->last_modified_ms > f->created_after_ms))
        return 0;
    if (f->has_created_before && !(v->last_modified_ms < f->created_before_ms))
        return 0;
    if ((f->has_size_gt || f->has_size_lt || f->n_storage_classes) && v->is_delete_marker)
        return 0;
    if (f->has_size_gt && !(v->size > f->size_gt))
        return 0;
    if (f->has_size_lt && !(v->size < f->size_lt))
        return 0;
    if (f->n_storage_classes) {
        const char *sc = v->storage_class[0] ? v->storage_class : "STANDARD";
        size_t i = 0;
        while (i < f->n_storage_classes && strcmp(sc, f->storage_classes[i]) != 0)
            i++;
        if (i == f->n_storage_classes)
            return 0;
    }
    if (f->eligible_only) {
        char err[1024] = "";
        int e = g->o->eligible(g->o->eligible_user, g->o->source_bucket, v->key, v->version_id,
                               v->is_delete_marker, v->storage_class, err, sizeof err);
        if (e < 0) {
            gen_fail(g, -MF_E_FETCH, err);
            return -1;
        }
        if (!e)
            return 0;
    }
    if (f->replication_statuses) {
        char status[16] = "";
        if (!v->is_delete_marker) {
            s3_request req = {.method = "HEAD", .bucket = g->o->source_bucket, .key = v->key,
                              .n_query = 1};
            req.query[0] = (s3_query_param){"versionId", v->version_id};
            s3_response resp;
            s3_outcome oc;
            int rc = s3_perform(g->o->ep, &req, &resp, &oc);
            snprintf(status, sizeof status, "%s", resp.replication_status);
            s3_response_cleanup(&resp);
            g->res->n_heads++;
            if (rc != 0 && oc.http_status != 404) {
                char m[2048];
                snprintf(m, sizeof m,
                         "arn:aws:s3:::%s/%s version %s: HeadObject for "
                         "ObjectReplicationStatuses failed: HTTP %ld %s",
                         g->o->source_bucket, v->key, v->version_id, oc.http_status, oc.code);
                gen_fail(g, -MF_E_FETCH, m);
                return -1;
            }
            if (oc.http_status == 404)
                return 0; /* deleted since the listing */
        }
        if (!(repl_bit(status) & f->replication_statuses))
            return 0;
    }
    return 1;
}

/* ---- rows ------------------------------------------------------------------------------ */

static void put_quoted(s3_buf *b, const char *s, size_t n)
{
    s3_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            s3_buf_append(b, "\"", 1);
        s3_buf_append(b, s + i, 1);
    }
    s3_buf_append(b, "\"", 1);
}

static int write_row(gen *g, const s3_version_entry *v)
{
    if (!g->gz || g->rows_in_file >= g->rows_per_file) {
        if (close_data(g) || open_data(g))
            return -1;
    }
    s3_buf *b = &g->line;
    s3_buf_reset(b);
    put_quoted(b, g->o->source_bucket, strlen(g->o->source_bucket));
    s3_buf_append(b, ",\"", 2);
    /* %-encode everything but unreserved and '/': a '+' becomes %2B, so reading '+' as a
       space (Inventory rules) cannot change the key. */
    s3_uri_encode(b, s3_slice_cstr(v->key), 1);
    s3_buf_append(b, "\",", 2);
    put_quoted(b, v->version_id, strlen(v->version_id));
    s3_buf_append(b, ",", 1);
    s3_buf_append_str(b, v->is_latest ? "\"true\"," : "\"false\",");
    s3_buf_append_str(b, v->is_delete_marker ? "\"true\"," : "\"false\",");
    char size[24] = "";
    if (!v->is_delete_marker)
        snprintf(size, sizeof size, "%lld", (long long)v->size);
    put_quoted(b, size, strlen(size));
    s3_buf_append(b, ",", 1);
    put_quoted(b, v->last_modified, strlen(v->last_modified));
    s3_buf_append(b, ",", 1);
    const char *et = v->etag;
    size_t elen = strlen(et);
    if (elen >= 2 && et[0] == '"' && et[elen - 1] == '"') {
        et++;
        elen -= 2;
    }
    put_quoted(b, et, elen);
    s3_buf_append(b, ",", 1);
    const char *sc = v->is_delete_marker ? "" : v->storage_class[0] ? v->storage_class : "STANDARD";
    put_quoted(b, sc, strlen(sc));
    if (s3_buf_append(b, "\n", 1) != 0) {
        gen_fail(g, -MF_E_NOMEM, "generated row too long");
        return -1;
    }
    if (gzwrite(g->gz, b->ptr, (unsigned)b->len) != (int)b->len) {
        char m[4600];
        snprintf(m, sizeof m, "%s: cannot write", g->data_path);
        gen_fail(g, -MF_E_IO, m);
        return -1;
    }
    g->rows_in_file++;
    g->res->n_selected++;
    return 0;
}

static int on_version(const s3_version_entry *v, void *user)
{
    gen *g = user;
    g->res->n_listed++;
    int k = keep(g, v);
    if (k < 0)
        return 1;
    if (k && write_row(g, v) != 0)
        return 1;
    return 0;
}

static int list_all(gen *g)
{
    char key_marker[1100] = "", vid_marker[256] = "";
    unsigned pos = 0;
    for (;;) {
        s3_request req = {.method = "GET", .bucket = g->o->source_bucket};
        req.query[req.n_query++] = (s3_query_param){"versions", ""};
        req.query[req.n_query++] = (s3_query_param){"max-keys", "1000"};
        if (key_marker[0]) {
            req.query[req.n_query++] = (s3_query_param){"key-marker", key_marker};
            req.query[req.n_query++] = (s3_query_param){"version-id-marker", vid_marker};
        }
        s3_response resp;
        s3_outcome oc;
        int rc = s3_perform(g->o->ep, &req, &resp, &oc);
        if (rc != 0 || oc.http_status != 200) {
            char m[2048];
            snprintf(m, sizeof m,
                     "arn:aws:s3:::%s: ListObjectVersions failed: HTTP %ld %s%s%s",
                     g->o->source_bucket, oc.http_status, oc.code, oc.message[0] ? ": " : "",
                     oc.message);
            s3_response_cleanup(&resp);
            gen_fail(g, -MF_E_FETCH, m);
            return -1;
        }
        s3_list_versions_page page;
        rc = s3_xml_parse_list_versions((s3_slice){resp.body.ptr, resp.body.len}, pos,
                                        on_version, g, &page);
        s3_response_cleanup(&resp);
        if (g->err)
            return -1;
        if (rc != 0) {
            char m[512];
            snprintf(m, sizeof m, "arn:aws:s3:::%s: malformed ListObjectVersions answer",
                     g->o->source_bucket);
            gen_fail(g, -MF_E_FETCH, m);
            return -1;
        }
        pos += page.n_entries;
        if (!page.is_truncated)
            return 0;
        snprintf(key_marker, sizeof key_marker, "%s", page.next_key_marker);
        snprintf(vid_marker, sizeof vid_marker, "%s", page.next_version_id_marker);
        if (!key_marker[0]) {
            gen_fail(g, -MF_E_FETCH, "ListObjectVersions: truncated page without NextKeyMarker");
            return -1;
        }
    }
}

static int write_text(const char *path, const char *data, size_t len, char *err, size_t err_len)
{
    return s3_write_file_atomic(path, data, len, S3_MODE_PRIVATE_FILE, err, err_len) == S3_E_OK ? 0 : -MF_E_IO;
}

int mf_generate(const mf_gen_opts *o, mf_gen_result *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    if (o->filter && o->filter->eligible_only && !o->eligible) {
        snprintf(err, err_len, "EligibleForReplication needs an eligibility callback");
        return -MF_E_INVALID_SPEC;
    }
    gen g = {.o = o, .f = o->filter, .res = out,
             .rows_per_file = o->rows_per_file ? o->rows_per_file : 1000000};
    g.files = json_array();
    s3_buf_init(&g.line, 16384);
    char dir[4400];
    if (s3_key_local_path(dir, sizeof dir, o->out_dir, o->base_key) != 0) {
        snprintf(err, err_len, "%s/%s: path too long", o->out_dir, o->base_key);
        json_decref(g.files);
        s3_buf_cleanup(&g.line);
        return -MF_E_IO;
    }
    if (s3_mkdir_p(dir, S3_MODE_PRIVATE_DIR) != 0) {
        snprintf(err, err_len, "%s: cannot create: %s", dir, strerror(errno));
        json_decref(g.files);
        s3_buf_cleanup(&g.line);
        return -MF_E_IO;
    }
    int64_t started = (int64_t)time(NULL) * 1000;
    list_all(&g);
    close_data(&g);
    int rc = g.err;
    if (rc) {
        snprintf(err, err_len, "%s", g.msg);
    } else {
        char ts[32];
        snprintf(ts, sizeof ts, "%lld", (long long)started);
        json_t *m = json_object();
        json_object_set_new(m, "sourceBucket", json_string(o->source_bucket));
        json_object_set_new(m, "destinationBucket",
                            json_string(o->destination_bucket_arn ? o->destination_bucket_arn : ""));
        json_object_set_new(m, "version", json_string("2021-11-30"));
        json_object_set_new(m, "creationTimestamp", json_string(ts));
        json_object_set_new(m, "fileFormat", json_string("CSV"));
        json_object_set_new(m, "fileSchema", json_string(GEN_SCHEMA));
        json_object_set(m, "files", g.files);
        char *text = json_dumps(m, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
        json_decref(m);
        if (!text) {
            snprintf(err, err_len, "out of memory");
            rc = -MF_E_NOMEM;
        } else {
            size_t len = strlen(text);
            if (s3_path_join(out->manifest_json, sizeof out->manifest_json, dir,
                             "manifest.json") != 0) {
                snprintf(err, err_len, "%.200s: path too long", dir);
                free(text);
                json_decref(g.files);
                s3_buf_cleanup(&g.line);
                return -MF_E_IO;
            }
            s3_md5_hex(text, len, out->manifest_md5);
            char sum_path[4500], sum[34];
            snprintf(sum_path, sizeof sum_path, "%s/manifest.checksum", dir);
            snprintf(sum, sizeof sum, "%s\n", out->manifest_md5);
            rc = write_text(out->manifest_json, text, len, err, err_len);
            if (!rc)
                rc = write_text(sum_path, sum, strlen(sum), err, err_len);
            free(text);
        }
    }
    json_decref(g.files);
    s3_buf_cleanup(&g.line);
    return rc;
}
