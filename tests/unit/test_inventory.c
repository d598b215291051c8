/*
 * test_inventory.c — the manifest.json formats of mf_open: S3 Inventory reports and an
 * earlier job's completion report read as a manifest.
 *
 * Inventory cases are folders made by tests/fixtures/make_inventory.py (AWS's layout, local
 * data files found under a parent of manifest.json):
 *   tests/fixtures/inventory/NAME.path       the manifest.json, relative to that folder
 *   tests/fixtures/inventory/NAME.expected   one line per entry (format below), or
 *   tests/fixtures/inventory/NAME.error      the start of the message mf_open/mf_next give
 * .expected line: seq TAB line TAB has_version TAB bucket TAB key-as-written TAB key TAB
 * version TAB known-bits TAB is_delete_marker TAB is_latest TAB size TAB last_modified_ms TAB
 * storage_class TAB etag.
 * The report case is built here: a manifest.json with a succeeded and a failed results file
 * (RFC 4180 quoting, an empty VersionId, MD5s), then a damaged MD5.
 */
#include "manifest/manifest.h"
#include "tests/unit/tap.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX "tests/fixtures/inventory"

static void sb_fmt(s3_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void sb_fmt(s3_buf *b, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    s3_buf_append(b, tmp, (size_t)n);
}

static void entry_line(s3_buf *b, const mf_entry *e)
{
    const mf_facts *f = &e->facts;
    sb_fmt(b, "%llu\t%llu\t%d\t%.*s\t%.*s\t%.*s\t%.*s\t%u\t%d\t%d\t%lld\t%lld\t%s\t%.*s\n",
           (unsigned long long)e->seq, (unsigned long long)e->line, e->has_version,
           (int)e->bucket.len, e->bucket.ptr, (int)e->key_raw.len, e->key_raw.ptr,
           (int)e->key.len, e->key.ptr, (int)e->version_id.len, e->version_id.ptr, f->known,
           f->is_delete_marker, f->is_latest, (long long)f->size, (long long)f->last_modified_ms,
           f->storage_class, (int)f->etag.len, f->etag.ptr ? f->etag.ptr : "");
}

/* Reads every entry; returns the rc of the last mf_open/mf_next, dump and message filled. */
static int read_all(const mf_spec *spec, s3_buf *dump, char *msg, size_t cap)
{
    int rc = 0;
    mf_reader *r = mf_open(spec, &rc, msg, cap);
    if (!r)
        return rc ? rc : -1;
    mf_entry e;
    while ((rc = mf_next(r, &e, msg, cap)) == 1)
        entry_line(dump, &e);
    mf_close(r);
    return rc;
}

static void test_inventory_fixtures(void)
{
    const char *root = getenv("BATCHREP_SRC") && *getenv("BATCHREP_SRC") ? getenv("BATCHREP_SRC") : ".";
    char dir[4096], start[4096];
    snprintf(dir, sizeof dir, "%s/" FIX, root);
    /* .path files name manifests relative to the fixtures folder: read them from there, and
       come back where we started (a relative BATCHREP_SRC is relative to it). */
    if (!getcwd(start, sizeof start)) {
        tap_ok(0, "current directory: %s", strerror(errno));
        return;
    }
    if (chdir(dir) != 0) {
        tap_ok(0, "fixtures folder %s: %s", dir, strerror(errno));
        return;
    }
    DIR *d = opendir(".");
    struct dirent *de;
    int n_cases = 0;
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".path") != 0)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - 5), de->d_name);
        char pf[300], ef[300], xf[300];
        snprintf(pf, sizeof pf, "%s.path", name);
        snprintf(ef, sizeof ef, "%s.expected", name);
        snprintf(xf, sizeof xf, "%s.error", name);
        char path[1024] = "";
        FILE *f = fopen(pf, "r");
        if (!f || !fgets(path, sizeof path, f)) {
            tap_ok(0, "%s: read .path", name);
            if (f)
                fclose(f);
            continue;
        }
        fclose(f);
        path[strcspn(path, "\n")] = '\0';
        char *want = tap_read_path(ef, NULL);
        char *want_err = tap_read_path(xf, NULL);
        mf_spec spec = {.format = MF_FORMAT_INVENTORY, .path = path, .display_name = path};
        s3_buf dump;
        s3_buf_init(&dump, TAP_BUF_MAX);
        char msg[2048] = "";
        int rc = read_all(&spec, &dump, msg, sizeof msg);
        if (want) {
            tap_ok(rc == 0, "%s: read without error (rc %d: %s)", name, rc, msg);
            int same = dump.ptr && strcmp(dump.ptr, want) == 0;
            tap_ok(same, "%s: entries and facts as expected", name);
            if (!same)
                tap_diag("got:\n%swant:\n%s", dump.ptr ? dump.ptr : "", want);
        } else if (want_err) {
            want_err[strcspn(want_err, "\n")] = '\0';
            tap_ok(rc < 0 && strncmp(msg, want_err, strlen(want_err)) == 0,
                   "%s: refused with \"%s...\" (rc %d, got \"%s\")", name, want_err, rc, msg);
            if (strcmp(name, "md5-mismatch") == 0)
                tap_ok(rc == -MF_E_CHECKSUM && strstr(msg, "has MD5") &&
                           strstr(msg, "00000000000000000000000000000000"),
                       "md5-mismatch: MF_E_CHECKSUM, message names the data file and both MD5s");
        } else {
            tap_ok(0, "%s: neither .expected nor .error", name);
        }
        s3_buf_cleanup(&dump);
        free(want);
        free(want_err);
        n_cases++;
    }
    if (d)
        closedir(d);
    tap_ok(n_cases >= 6, "%d inventory fixture cases ran", n_cases);
    if (chdir(start) != 0)
        tap_ok(0, "back to %s: %s", start, strerror(errno));
}

static int write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fputs(data, f);
    return fclose(f);
}

static void test_report_manifest(void)
{
    char tmp[] = "/tmp/batchrep-test-inv-XXXXXX";
    if (!mkdtemp(tmp)) {
        tap_ok(0, "mkdtemp");
        return;
    }
    char p[4200], q[4200];
    snprintf(p, sizeof p, "%s/rep", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/rep/job-1", tmp);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/rep/job-1/results", tmp);
    mkdir(p, 0755);
    const char *ok_rows = "src,a%20b,v1,succeeded,200,,success\n";
    const char *bad_rows =
        "src,plus+key,v2,failed,404,DstBucketNotFound,Destination bucket not found\n"
        "src,\"rawq/a,b \"\"c\"\"\",,failed,500,SrcObjectNotEligible,\"Object is not, eligible\"\n"
        "src,k%2Fx,null,failed,400,DstBucketUnversioned,Versioning is not enabled\n";
    snprintf(p, sizeof p, "%s/rep/job-1/results/aaa.csv", tmp);
    write_file(p, ok_rows);
    snprintf(p, sizeof p, "%s/rep/job-1/results/bbb.csv", tmp);
    write_file(p, bad_rows);
    char m_ok[33], m_bad[33];
    s3_md5_hex(ok_rows, strlen(ok_rows), m_ok);
    s3_md5_hex(bad_rows, strlen(bad_rows), m_bad);
    char json[4096];
    snprintf(json, sizeof json,
             "{\"Format\":\"Report_CSV_20180820\",\"ReportCreationDate\":\"2024-01-01T00:00:00.000Z\","
             "\"Results\":[{\"TaskExecutionStatus\":\"succeeded\",\"Bucket\":\"reports\","
             "\"MD5Checksum\":\"%s\",\"Key\":\"rep/job-1/results/aaa.csv\"},"
             "{\"TaskExecutionStatus\":\"failed\",\"Bucket\":\"reports\",\"MD5Checksum\":\"%s\","
             "\"Key\":\"rep/job-1/results/bbb.csv\"}],"
             "\"ReportSchema\":\"Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage\"}",
             m_ok, m_bad);
    snprintf(q, sizeof q, "%s/rep/job-1/manifest.json", tmp);
    write_file(q, json);
    mf_spec spec = {.format = MF_FORMAT_REPORT, .path = q, .display_name = "report.json"};
    s3_buf dump;
    s3_buf_init(&dump, TAP_BUF_MAX);
    char msg[2048] = "";
    int rc = read_all(&spec, &dump, msg, sizeof msg);
    tap_ok(rc == 0, "report manifest read (rc %d: %s)", rc, msg);
    const char *want =
        "0\t1\t1\tsrc\tplus+key\tplus+key\tv2\t0\t0\t0\t0\t0\t\t\n"
        "1\t2\t0\tsrc\trawq/a,b \"c\"\trawq/a,b \"c\"\t\t0\t0\t0\t0\t0\t\t\n"
        "2\t3\t1\tsrc\tk%2Fx\tk/x\tnull\t0\t0\t0\t0\t0\t\t\n";
    int same = dump.ptr && strcmp(dump.ptr, want) == 0;
    tap_ok(same, "only the failed rows, keys as written ('+' kept), empty VersionId = none");
    if (!same)
        tap_diag("got:\n%s", dump.ptr ? dump.ptr : "");
    s3_buf_cleanup(&dump);

    /* damaged results file */
    snprintf(p, sizeof p, "%s/rep/job-1/results/bbb.csv", tmp);
    write_file(p, "src,x,v,failed,500,X,y\n");
    s3_buf_reset(&dump);
    rc = read_all(&spec, &dump, msg, sizeof msg);
    tap_ok(rc == -MF_E_CHECKSUM && strstr(msg, "report.json: Results[1]: data file") != NULL,
           "a results file whose MD5 differs is refused, naming it (%s)", msg);
    s3_buf_cleanup(&dump);

    /* not a report */
    write_file(q, "{\"Format\":\"Other\",\"Results\":[]}");
    rc = read_all(&spec, &dump, msg, sizeof msg);
    tap_ok(rc == -MF_E_INVALID_CONTENT && strstr(msg, "report.json: Format: must be"),
           "a manifest.json of another format is refused by member (%s)", msg);

    /* an inventory manifest.json that is not JSON names line and column */
    write_file(q, "{\"fileFormat\": \"CSV\",\n  \"fileSchema\": }");
    spec.format = MF_FORMAT_INVENTORY;
    rc = read_all(&spec, &dump, msg, sizeof msg);
    tap_ok(rc == -MF_E_INVALID_CONTENT && strncmp(msg, "report.json:2:", 14) == 0,
           "malformed manifest.json: file:line:column (%s)", msg);
    write_file(q, "{\"fileFormat\": \"ORC\", \"fileSchema\": \"struct<>\", \"files\": []}");
    rc = read_all(&spec, &dump, msg, sizeof msg);
    tap_ok(rc == -MF_E_INVALID_CONTENT && strstr(msg, "fileFormat: ORC inventories are not"),
           "ORC inventory refused by name (%s)", msg);
    write_file(q, "{\"fileFormat\": \"CSV\", \"fileSchema\": \"Bucket, Key\", \"files\": []}");
    rc = read_all(&spec, &dump, msg, sizeof msg);
    tap_ok(rc == 0, "an inventory with no data files is an empty manifest (rc %d)", rc);
    s3_buf_cleanup(&dump);

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", tmp);
}

/* The columns that replace HeadObject and GetObjectAcl (aws-formats.md §2.3): values in any
   case, empty lock fields = no lock, an unknown value is refused naming file, line, field. */
static void test_copy_facts(void)
{
    char tmp[] = "/tmp/batchrep-test-inv-XXXXXX";
    if (!mkdtemp(tmp)) {
        tap_ok(0, "mkdtemp");
        return;
    }
    char p[4200], q[4200], json[2048], md5[33];
    snprintf(p, sizeof p, "%s/inv", tmp);
    mkdir(p, 0755);
    const char *rows =
        "\"src\",\"a\",\"v1\",\"SSE-KMS\",\"2030-01-01T00:00:00.000Z\",\"Governance\","
        "\"On\",\"ENABLED\",\"eyJ2ZXJzaW9uIjoiMjAyMi0xMS0xMCJ9\"\n"
        "\"src\",\"b\",\"v2\",\"NOT-SSE\",\"\",\"\",\"\",\"DISABLED\",\"\"\n";
    const char *schema = "Bucket, Key, VersionId, EncryptionStatus, ObjectLockRetainUntilDate, "
                         "ObjectLockMode, ObjectLockLegalHoldStatus, BucketKeyStatus, "
                         "ObjectAccessControlList";
    for (int pass = 0; pass < 2; pass++) {
        const char *data = pass == 0 ? rows
                                     : "\"src\",\"a\",\"v1\",\"SSE-S3\",\"\",\"Forever\","
                                       "\"\",\"\",\"\"\n";
        snprintf(p, sizeof p, "%s/inv/data.csv", tmp);
        write_file(p, data);
        s3_md5_hex(data, strlen(data), md5);
        snprintf(json, sizeof json,
                 "{\"fileFormat\": \"CSV\", \"fileSchema\": \"%s\", \"files\": [{\"key\": "
                 "\"inv/data.csv\", \"size\": %zu, \"MD5checksum\": \"%s\"}]}",
                 schema, strlen(data), md5);
        snprintf(q, sizeof q, "%s/inv/manifest.json", tmp);
        write_file(q, json);
        mf_spec spec = {.format = MF_FORMAT_INVENTORY, .path = q, .display_name = "inv.json"};
        char msg[1024] = "";
        int rc = 0;
        mf_reader *r = mf_open(&spec, &rc, msg, sizeof msg);
        mf_entry e[2];
        int n = 0;
        if (r) {
            while (n < 2 && (rc = mf_next(r, &e[n], msg, sizeof msg)) == 1) {
                if (n == 0) { /* the slices of the first row die with the next call */
                    tap_ok(e[0].facts.acl.len == 32 &&
                               memcmp(e[0].facts.acl.ptr, "eyJ2", 4) == 0,
                           "ObjectAccessControlList kept as written (base64)");
                    e[0].facts.acl = (s3_slice){0};
                }
                n++;
            }
        }
        if (pass == 0) {
            const mf_facts *a = &e[0].facts, *b = &e[1].facts;
            unsigned want = MF_FACT_ENCRYPTION | MF_FACT_LOCK | MF_FACT_BUCKET_KEY | MF_FACT_ACL;
            tap_ok(r && n == 2 && (a->known & want) == want &&
                       strcmp(a->encryption, "SSE-KMS") == 0 &&
                       strcmp(a->lock_mode, "GOVERNANCE") == 0 &&
                       strcmp(a->lock_until, "2030-01-01T00:00:00.000Z") == 0 &&
                       strcmp(a->legal_hold, "ON") == 0 && a->bucket_key == 1,
                   "row 1: SSE-KMS, GOVERNANCE until 2030, legal hold ON, bucket key, ACL "
                   "(%s)", msg);
            tap_ok(n == 2 && (b->known & want) == (want & ~MF_FACT_ACL) &&
                       strcmp(b->encryption, "NOT-SSE") == 0 && !b->lock_mode[0] &&
                       !b->lock_until[0] && !b->legal_hold[0] && b->bucket_key == 0,
                   "row 2: not encrypted, empty lock fields = no lock (known), no ACL");
        } else {
            tap_ok(rc == -MF_E_INVALID_CONTENT && strstr(msg, "inv/data.csv:1:") &&
                       strstr(msg, "field ObjectLockMode: unknown value \"Forever\""),
                   "an unknown lock mode is refused naming file, line and field (%s)", msg);
        }
        mf_close(r);
    }
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", tmp);
}

static void test_format_names(void)
{
    tap_ok(mf_format_parse("S3BatchOperations_CSV_20180820") == MF_FORMAT_CSV, "CSV name");
    tap_ok(mf_format_parse("S3InventoryReport_CSV_20161130") == MF_FORMAT_INVENTORY,
           "Inventory name");
    tap_ok(mf_format_parse("S3InventoryReport_CSV_20211130") == MF_FORMAT_INVENTORY,
           "generated-manifest name reads as an Inventory");
    tap_ok(mf_format_parse("Report_CSV_20180820") == MF_FORMAT_REPORT, "report name");
    tap_ok(mf_format_parse("csv") == -1 && mf_format_parse(NULL) == -1, "unknown names");
    tap_ok(strcmp(mf_errname(MF_E_CHECKSUM), "MF_E_CHECKSUM") == 0, "MF_E_CHECKSUM named");
}

int main(void)
{
    test_format_names();
    test_copy_facts();
    test_inventory_fixtures();
    test_report_manifest();
    return tap_done();
}
