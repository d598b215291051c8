/*
 * reader.c — one reader over every manifest format: a CSV manifest is one file; an Inventory
 * report (or a generated manifest) and a completion report are a manifest.json naming data
 * files, read one after the other as if they were one CSV.
 *
 * manifest.json members read (aws-formats.md §2.2, §5.2); anything else is ignored:
 *   Inventory  fileFormat ("CSV"; ORC and Parquet are refused by name), fileSchema (", "- or
 *              ","-separated column names; Bucket and Key required; names we do not use
 *              read as Ignore), destinationBucket (an ARN; where files[] live when the
 *              report is in S3), files[] {key, MD5checksum} (size is not trusted: the MD5
 *              is the check). version is not checked: 2016-11-30 and the generator's
 *              2021-11-30 have the same shape.
 *   Report     Format "Report_CSV_20180820", Results[] {TaskExecutionStatus, Bucket, Key,
 *              MD5Checksum}; only "failed" files are read.
 * Each data file is fetched (S3) to <spool_dir>/manifest-data.part, its MD5 compared with
 * the manifest.json's, opened, then unlinked while open: at most one data file is on disk
 * at a time and it goes away with the reader, whatever the number of files. A reader killed
 * with its process (kill -9) may leave that file behind; the next reader over S3 in the
 * same spool_dir removes it when it opens (mf_fetch_object removes the temporary
 * manifest-data.part.part-* files). Local data
 * files (spec.ep == NULL) are found by looking up the key under each parent folder of
 * manifest.json in turn, so a copied bucket layout works as is.
 *
 * Entries are renumbered across files: seq counts rows of the whole manifest; line is the
 * line within the data file that messages name.
 */
#include "manifest/manifest.h"
#include "manifest/manifest_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct data_file {
    const char *bucket;          /* borrowed from doc */
    const char *key;
    const char *md5;
    size_t index;                /* in files[] / Results[], for messages */
} data_file;

struct mf_reader {
    mf_format format;
    char display[1024];
    char manifest_path[4096];
    mf__csv *cur;
    mf__csv_cfg cfg;
    /* manifest.json formats */
    json_t *doc;
    data_file *files;
    size_t n_files, next_file;
    char data_bucket[256];       /* Inventory: the destinationBucket name */
    const s3_endpoint *ep;       /* NULL: local data files */
    char spool_path[4200];
    uint64_t seq;
    int err;                     /* sticky -MF_E_* */
    char msg[2048];
};

int mf_format_parse(const char *name)
{
    if (!name)
        return -1;
    if (strcmp(name, MF_FORMAT_NAME_CSV) == 0)
        return MF_FORMAT_CSV;
    if (strcmp(name, MF_FORMAT_NAME_INVENTORY) == 0 || strcmp(name, MF_FORMAT_NAME_GENERATED) == 0)
        return MF_FORMAT_INVENTORY;
    if (strcmp(name, MF_FORMAT_NAME_REPORT) == 0)
        return MF_FORMAT_REPORT;
    return -1;
}


static void set_err(mf_reader *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(mf_reader *r, int rc, const char *fmt, ...)
{
    if (r->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->err = rc;
}

/* ---- manifest.json ---------------------------------------------------------------------- */

/* fileSchema "Bucket, Key, VersionId, ..." -> cfg columns. */
static int parse_schema(mf_reader *r, const char *schema)
{
    size_t n = 0;
    int seen_bucket = 0, seen_key = 0;
    const char *p = schema;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        size_t len = (size_t)(t - p);
        if (len == 0) {
            set_err(r, -MF_E_INVALID_CONTENT, "%s: fileSchema: empty column name at column %zu",
                    r->display, n + 1);
            return -1;
        }
        if (n >= MF__MAX_COLS) {
            set_err(r, -MF_E_INVALID_CONTENT, "%s: fileSchema: more than %d columns",
                    r->display, MF__MAX_COLS);
            return -1;
        }
        mf__col c = MF__COL_IGNORE;
        for (int k = MF__COL_BUCKET; k < MF__N_COLS; k++) {
            const char *nm = mf__col_name((mf__col)k);
            if (strlen(nm) == len && strncmp(nm, p, len) == 0)
                c = (mf__col)k;
        }
        for (size_t i = 0; i < n && c != MF__COL_IGNORE; i++) {
            if (r->cfg.cols[i] == c) {
                set_err(r, -MF_E_INVALID_CONTENT, "%s: fileSchema: %s appears twice",
                        r->display, mf__col_name(c));
                return -1;
            }
        }
        seen_bucket |= c == MF__COL_BUCKET;
        seen_key |= c == MF__COL_KEY;
        r->cfg.cols[n++] = (unsigned char)c;
        if (!*e)
            break;
        p = e + 1;
    }
    if (!seen_bucket || !seen_key) {
        set_err(r, -MF_E_INVALID_CONTENT,
                "%s: fileSchema: Required fields are missing in the schema: %s%s%s (got \"%s\")",
                r->display, seen_bucket ? "" : "Bucket", !seen_bucket && !seen_key ? ", " : "",
                seen_key ? "" : "Key", schema);
        return -1;
    }
    r->cfg.n_cols = n;
    r->cfg.plus_is_space = 1;
    return 0;
}

static int load_inventory(mf_reader *r)
{
    json_t *d = r->doc;
    const char *ff = s3_json_str(d, "fileFormat");
    if (!ff) {
        set_err(r, -MF_E_INVALID_CONTENT, "%s: fileFormat: required (\"CSV\")", r->display);
        return -1;
    }
    if (strcmp(ff, "CSV") != 0) {
        set_err(r, -MF_E_INVALID_CONTENT,
                "%s: fileFormat: %s inventories are not supported; configure the inventory "
                "as CSV (S3InventoryReport_CSV_20161130 requires CSV)",
                r->display, ff);
        return -1;
    }
    const char *schema = s3_json_str(d, "fileSchema");
    if (!schema) {
        set_err(r, -MF_E_INVALID_CONTENT, "%s: fileSchema: required", r->display);
        return -1;
    }
    if (parse_schema(r, schema))
        return -1;
    const char *dest = s3_json_str(d, "destinationBucket");
    if (r->ep) {
        char key[8];
        if (!dest || mf_parse_s3_arn(dest, r->data_bucket, sizeof r->data_bucket, key,
                                     sizeof key) != 0 || key[0]) {
            set_err(r, -MF_E_INVALID_CONTENT,
                    "%s: destinationBucket: must be a bucket ARN (arn:aws:s3:::bucket), with "
                    MF_ARN_BUCKET_RULE ", got %s",
                    r->display, dest ? dest : "nothing");
            return -1;
        }
    }
    json_t *files = json_object_get(d, "files");
    if (!json_is_array(files)) {
        set_err(r, -MF_E_INVALID_CONTENT, "%s: files: required (a list)", r->display);
        return -1;
    }
    r->files = calloc(json_array_size(files) + 1, sizeof *r->files);
    if (!r->files) {
        set_err(r, -MF_E_NOMEM, "%s: out of memory", r->display);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i);
        data_file *df = &r->files[r->n_files];
        df->bucket = r->data_bucket;
        df->key = s3_json_str(f, "key");
        df->md5 = s3_json_str(f, "MD5checksum");
        df->index = i;
        if (!df->key || !*df->key) {
            set_err(r, -MF_E_INVALID_CONTENT, "%s: files[%zu].key: required", r->display, i);
            return -1;
        }
        if (!df->md5) {
            set_err(r, -MF_E_INVALID_CONTENT, "%s: files[%zu].MD5checksum: required",
                    r->display, i);
            return -1;
        }
        r->n_files++;
    }
    return 0;
}

static int load_report(mf_reader *r)
{
    json_t *d = r->doc;
    const char *fmt = s3_json_str(d, "Format");
    if (!fmt || strcmp(fmt, MF_FORMAT_NAME_REPORT) != 0) {
        set_err(r, -MF_E_INVALID_CONTENT,
                "%s: Format: must be \"Report_CSV_20180820\" (a completion report's "
                "manifest.json), got %s",
                r->display, fmt ? fmt : "nothing");
        return -1;
    }
    json_t *res = json_object_get(d, "Results");
    if (!json_is_array(res)) {
        set_err(r, -MF_E_INVALID_CONTENT, "%s: Results: required (a list)", r->display);
        return -1;
    }
    r->files = calloc(json_array_size(res) + 1, sizeof *r->files);
    if (!r->files) {
        set_err(r, -MF_E_NOMEM, "%s: out of memory", r->display);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(res); i++) {
        json_t *f = json_array_get(res, i);
        const char *st = s3_json_str(f, "TaskExecutionStatus");
        if (!st) {
            set_err(r, -MF_E_INVALID_CONTENT, "%s: Results[%zu].TaskExecutionStatus: required",
                    r->display, i);
            return -1;
        }
        if (strcmp(st, "failed") != 0)
            continue;
        data_file *df = &r->files[r->n_files];
        df->bucket = s3_json_str(f, "Bucket");
        df->key = s3_json_str(f, "Key");
        df->md5 = s3_json_str(f, "MD5Checksum");
        df->index = i;
        if (!df->key || !*df->key || (r->ep && (!df->bucket || !*df->bucket))) {
            set_err(r, -MF_E_INVALID_CONTENT, "%s: Results[%zu]: Bucket and Key are required",
                    r->display, i);
            return -1;
        }
        const char *why = df->bucket ? s3_bucket_name_problem(s3_slice_cstr(df->bucket)) : NULL;
        if (r->ep && why) {
            set_err(r, -MF_E_INVALID_CONTENT, "%s: Results[%zu].Bucket: \"%.64s\": %s",
                    r->display, i, df->bucket, why);
            return -1;
        }
        r->n_files++;
    }
    /* Bucket,Key,VersionId,TaskStatus,HTTPStatusCode,ErrorCode,ResultMessage (§5.3). */
    r->cfg.n_cols = 7;
    r->cfg.cols[0] = MF__COL_BUCKET;
    r->cfg.cols[1] = MF__COL_KEY;
    r->cfg.cols[2] = MF__COL_VERSION_ID;
    r->cfg.empty_version_is_none = 1;
    return 0;
}

/* A local data file: key under the manifest's folder or one of its parents, at
   s3_key_local_path (a key's "." and ".." segments are escaped there, as where the
   generator and the report writer put such keys; a key never climbs out of the folders). */
static int find_local(mf_reader *r, const char *key, char *out, size_t cap)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", r->manifest_path);
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
        if (s3_key_local_path(out, cap, dir[0] ? dir : "", key) == 0 && access(out, R_OK) == 0)
            return 0;
        if (!slash || !dir[0])
            return -1;
    }
}

/* Opens files[next_file]: fetch (or find), verify its MD5, open it as CSV. */
static int open_next_file(mf_reader *r)
{
    const data_file *df = &r->files[r->next_file];
    size_t idx = df->index;
    r->next_file++;
    char path[4200], name[1600], msg[2048];
    const char *member = r->format == MF_FORMAT_REPORT ? "Results" : "files";
    if (r->ep) {
        snprintf(name, sizeof name, "arn:aws:s3:::%s/%s", df->bucket, df->key);
        snprintf(path, sizeof path, "%s", r->spool_path);
        int rc = mf_fetch_object(r->ep, df->bucket, df->key, NULL, NULL, path, msg, sizeof msg);
        if (rc) {
            set_err(r, rc, "%s: %s[%zu]: %s", r->display, member, idx, msg);
            return -1;
        }
    } else {
        snprintf(name, sizeof name, "%s", df->key);
        if (find_local(r, df->key, path, sizeof path) != 0) {
            set_err(r, -MF_E_IO, "%s: %s[%zu]: data file %s not found under the manifest's "
                                 "folder or its parents",
                    r->display, member, idx, df->key);
            return -1;
        }
        snprintf(name, sizeof name, "%.*s", (int)sizeof name - 1, path); /* for messages */
    }
    if (df->md5) {
        char got[33];
        int rc = s3_md5_file(path, got, msg, sizeof msg);
        if (rc) {
            rc = rc == S3_E_NOMEM ? -MF_E_NOMEM : -MF_E_IO;
            set_err(r, rc, "%s: %s", r->display, msg);
        } else if (strcasecmp(got, df->md5) != 0) {
            set_err(r, -MF_E_CHECKSUM,
                    "%s: %s[%zu]: data file %s has MD5 %s but manifest.json says %s (the file "
                    "is damaged or was replaced)",
                    r->display, member, idx, name, got, df->md5);
        }
        if (r->err) {
            if (r->ep)
                unlink(path);
            return -1;
        }
    }
    r->cur = mf__csv_open(path, name, &r->cfg, msg, sizeof msg);
    if (r->ep)
        unlink(path); /* the open file stays readable; the disk space goes with it */
    if (!r->cur) {
        set_err(r, -MF_E_IO, "%s", msg);
        return -1;
    }
    return 0;
}

/* ---- open / next / close ----------------------------------------------------------------- */

static mf_reader *reader_new(const mf_spec *spec)
{
    mf_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->format = spec->format;
    snprintf(r->display, sizeof r->display, "%s",
             spec->display_name ? spec->display_name : spec->path);
    snprintf(r->manifest_path, sizeof r->manifest_path, "%s", spec->path);
    r->ep = spec->ep;
    snprintf(r->spool_path, sizeof r->spool_path, "%s/manifest-data.part",
             spec->spool_dir && *spec->spool_dir ? spec->spool_dir : ".");
    if (r->ep && spec->spool_dir && *spec->spool_dir)
        unlink(r->spool_path); /* a data file an earlier, killed reader left */
    return r;
}

/* JobManifestSpec.Fields -> columns, with the messages CreateJob users know. */
static int csv_cfg_from_opts(const char *display, const mf_csv_opts *opts, mf__csv_cfg *cfg,
                             char *err, size_t err_len)
{
    memset(cfg, 0, sizeof *cfg);
    if (!opts || opts->n_fields == 0)
        return 0;
    if (opts->n_fields > MF_MAX_FIELDS) {
        snprintf(err, err_len, "%s: Fields: %zu columns, at most %d are supported", display,
                 opts->n_fields, MF_MAX_FIELDS);
        return -MF_E_INVALID_SPEC;
    }
    unsigned seen[4] = {0, 0, 0, 0};
    char text[MF_MAX_FIELDS * 10 + 1] = "";
    size_t o = 0;
    for (size_t i = 0; i < opts->n_fields; i++) {
        mf_field f = opts->fields[i];
        if ((int)f < 0 || f > MF_FIELD_VERSION_ID) {
            snprintf(err, err_len, "%s: Fields: column %zu has an unknown value %d", display,
                     i + 1, (int)f);
            return -MF_E_INVALID_SPEC;
        }
        if (f != MF_FIELD_IGNORE && seen[f]++) {
            snprintf(err, err_len, "%s: Fields: %s appears more than once", display,
                     mf__col_name((mf__col)f));
            return -MF_E_INVALID_SPEC;
        }
        cfg->cols[i] = (unsigned char)f;
        o += (size_t)snprintf(text + o, sizeof text - o, "%s%s", i ? "," : "",
                              mf__col_name((mf__col)f));
    }
    if (!seen[MF_FIELD_BUCKET] || !seen[MF_FIELD_KEY]) {
        snprintf(err, err_len, "%s: Fields: must name a Bucket and a Key column (got %s)",
                 display, text);
        return -MF_E_INVALID_SPEC;
    }
    cfg->n_cols = opts->n_fields;
    return 0;
}

mf_reader *mf_open_csv(const char *path, const char *display_name, const mf_csv_opts *opts,
                       char *err, size_t err_len)
{
    mf_spec spec = {.format = MF_FORMAT_CSV, .path = path, .display_name = display_name};
    if (opts)
        spec.csv = *opts;
    return mf_open(&spec, NULL, err, err_len);
}

mf_reader *mf_open(const mf_spec *spec, int *out_rc, char *err, size_t err_len)
{
    int rc_local;
    if (!out_rc)
        out_rc = &rc_local;
    *out_rc = 0;
    mf_reader *r = reader_new(spec);
    if (!r) {
        snprintf(err, err_len, "%s: out of memory", spec->path);
        *out_rc = -MF_E_NOMEM;
        return NULL;
    }
    if (spec->format == MF_FORMAT_CSV) {
        int rc = csv_cfg_from_opts(r->display, &spec->csv, &r->cfg, err, err_len);
        if (rc == 0) {
            r->cur = mf__csv_open(spec->path, r->display, &r->cfg, err, err_len);
            rc = r->cur ? 0 : -MF_E_IO;
        }
        if (rc) {
            *out_rc = rc;
            mf_close(r);
            return NULL;
        }
        return r;
    }
    if (spec->format != MF_FORMAT_INVENTORY && spec->format != MF_FORMAT_REPORT) {
        snprintf(err, err_len, "%s: unknown manifest format %d", r->display, (int)spec->format);
        *out_rc = -MF_E_INVALID_SPEC;
        mf_close(r);
        return NULL;
    }
    json_error_t je;
    r->doc = json_load_file(spec->path, JSON_REJECT_DUPLICATES, &je);
    if (!r->doc) {
        int missing = access(spec->path, R_OK) != 0;
        set_err(r, missing ? -MF_E_IO : -MF_E_INVALID_CONTENT, "%s:%d:%d: %s", r->display,
                je.line, je.column, missing ? "cannot read" : je.text);
    } else if (!json_is_object(r->doc)) {
        set_err(r, -MF_E_INVALID_CONTENT, "%s: manifest.json must be a JSON object",
                r->display);
    } else if (spec->format == MF_FORMAT_INVENTORY) {
        load_inventory(r);
    } else {
        load_report(r);
    }
    if (r->err) {
        snprintf(err, err_len, "%s", r->msg);
        *out_rc = r->err;
        mf_close(r);
        return NULL;
    }
    return r;
}

int mf_next(mf_reader *r, mf_entry *out, char *err, size_t err_len)
{
    for (;;) {
        if (r->err) {
            snprintf(err, err_len, "%s", r->msg);
            return r->err;
        }
        if (r->cur) {
            int rc = mf__csv_next(r->cur, out, r->msg, sizeof r->msg);
            if (rc == 1) {
                out->seq = r->seq++;
                return 1;
            }
            if (rc < 0) {
                r->err = rc;
                continue;
            }
            mf__csv_close(r->cur);
            r->cur = NULL;
            if (r->format == MF_FORMAT_CSV)
                return 0;
        }
        if (r->next_file >= r->n_files)
            return 0;
        open_next_file(r);
    }
}

void mf_close(mf_reader *r)
{
    if (!r)
        return;
    mf__csv_close(r->cur);
    json_decref(r->doc);
    free(r->files);
    free(r);
}
