/*
 * unit.c — the per-key state machine: every manifest row of one source key, replayed on each
 * destination oldest version first.
 *
 *   HEAD   a unit of one row: HeadObject?versionId= tells whether the version exists, its
 *          storage class and size, and whether it is a delete marker (405 with
 *          x-amz-delete-marker); a 404 is ambiguous (no such version, no such key, and RGW
 *          answers 404 for a delete-marker version), so the unit falls back to LIST.
 *   LIST   ListObjectVersions?prefix=<key> (paged until another key shows up). One request
 *          tells, for every listed version of the key, whether it exists, whether it is a
 *          delete marker, its LastModified (ms on AWS), storage class, size and listing
 *          position: the order to replay and the eligibility facts, where a HEAD per
 *          version would cost a round trip each and give Last-Modified in whole seconds.
 *   TAGS   GetObjectTagging?versionId= per version, only when an enabled rule filters on
 *          tags.
 *   APPLY  per version (oldest first) and per destination its rule selects, the copy
 *          strategy of strategy.c (CopyObject, or DELETE for a delete marker whose rule
 *          enables DeleteMarkerReplication).
 *   DONE   every task has an outcome; the lane hands the unit to the report writer.
 *
 * The current version is restored. A unit of one row HEADs the key's current version (no
 * versionId): when it is the row's version, that one request told everything (the common
 * backfill case costs what a HEAD ?versionId= did); otherwise the unit lists. When the
 * listing shows that the source's current version (IsLatest) is not among the unit's rows (a
 * re-run of an old version, a manifest of some versions only), it is appended to the replay
 * as one more version, the "restore" task (no report row): on every destination the unit
 * wrote to, it is copied on top, so the destination's current version is again a replica of
 * the source's. When the rules do not replicate the source's current version to a destination
 * (a delete marker without DeleteMarkerReplication, a filter that leaves it out, an archived
 * or SSE-KMS version not opted in), nothing is restored there: that destination's current
 * version is the newest version the unit wrote. A restore that fails turns the row of the
 * unit's newest version into a failure that says so.
 *
 * Order: LastModified ascending, the source's current version (IsLatest) always last, ties
 * broken by listing position (a later position is older). moto lists every version before
 * every delete marker and has 1-second LastModified, so the IsLatest rule is what keeps the
 * destination's current version equal to the source's there.
 *
 * Failure codes are the replication failure reasons (../shared/aws-formats.md §6.1).
 */
#include "engine/engine_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum phase { PH_HEAD = 0, PH_LIST, PH_TAGS, PH_RECHECK, PH_APPLY, PH_DONE };

#define LIST_PAGE_KEYS "1000"

static const char *const phase_names[] = {"HEAD", "LIST", "TAGS", "RECHECK", "APPLY", "DONE"};

struct eng_unit {
    uint64_t hash;
    s3_slice bucket, key;        /* key decoded; both NUL-terminated in mem */
    size_t n_tasks;
    eng_task *tasks;             /* n_tasks rows, then the restore task (tasks[n_tasks]) */
    eng_task *restore;           /* the source's current version when no row names it */
    char restore_vid[S3_VERSION_ID_MAX];
    unsigned n_restored;         /* destinations the restore task was sent to */
    int restore_checked;         /* restore_outcome ran (PH_DONE may be built again) */
    size_t *order;               /* indices of found, distinct versions, oldest first */
    size_t n_order;
    size_t *by_vid;              /* task indices sorted by version ID, for matching */
    int saw_key;                 /* the listing showed at least one version of the key */
    /* state */
    enum phase phase;
    unsigned list_pos;
    char key_marker[1100];
    char vid_marker[256];
    size_t cur;                  /* index into order */
    size_t cur_dest;             /* next destination to consider for order[cur] */
    int *rule_for_dest;          /* per destination, for order[cur] */
    int selected;                /* rule_for_dest is valid for order[cur] */
    const eng__strategy *strat;  /* for order[cur] -> destination cur_dest; NULL: none yet */
    int busy;                    /* the serial request (tag 0) is in flight */
    eng__apply apply;
    s3_buf scratch;              /* copy source, query values */
    const repl_rules *rules;     /* borrowed: the job's */
    _Atomic int *stop;           /* borrowed: the job's stop flag */
    const _Atomic int64_t *deadline; /* borrowed: stop once s3_mono_ms() reaches it; NULL */
    const _Atomic int *priority; /* borrowed: the job's priority (the pool's order) */
    void *job;                   /* borrowed: the writer's context */
    uint64_t first_seq;
    int recheck;                 /* resumed: skip what the destinations already hold */
    int src_acls_disabled;       /* the source bucket's ACLs are disabled (feeder) */
    size_t *skip;                /* per destination: leading versions already there */
    size_t *sent;                /* per destination: versions handled so far */
    size_t *wrote;               /* per destination: 1 once a row's version went there (or
                                    was there from before a crash): the restore follows */
};

/* The one place a unit changes phase; BATCHREP_TRACE=1 prints every change on stderr
   (curl's mstate()). */
static _Atomic int trace_on = -1; /* -1: not read yet; every lane may read it first, and
                                      they all store the same answer */

static void set_phase(eng_unit *u, enum phase p)
{
    int on = atomic_load_explicit(&trace_on, memory_order_relaxed);
    if (on < 0) {
        const char *v = getenv("BATCHREP_TRACE");
        on = v && *v == '1';
        atomic_store_explicit(&trace_on, on, memory_order_relaxed);
    }
    if (on && u->phase != p)
        fprintf(stderr, "batchrep: unit s3://%s/%s: %s -> %s\n", u->bucket.ptr, u->key.ptr,
                phase_names[u->phase], phase_names[p]);
    u->phase = p;
}

/* ---- building ------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* An ETag longer than this is not kept (no S3 ETag is: quoted MD5 plus "-<parts>"). */
#define BENT_ETAG_MAX 79

/* Bytes of mem that e adds to a unit (eng_unit_builder_add appends exactly these). */
static size_t row_bytes(const mf_entry *e)
{
    size_t etag = e->facts.etag.len < BENT_ETAG_MAX ? e->facts.etag.len : 0;
    return e->key_raw.len + 1 + e->version_id.len + 1 + etag + 1 + e->facts.acl.len + 1;
}

void eng_unit_builder_init(eng_unit_builder *b)
{
    memset(b, 0, sizeof *b);
    /* A unit's rows stay under ENG_UNIT_MAX_BYTES except its first, which is always taken
       (at most the bucket, key and one row's fields: a few times the reader's 64 KiB field
       cap); the cap leaves room for that. */
    s3_buf_init(&b->mem, 2 * ENG_UNIT_MAX_BYTES);
}

void eng_unit_builder_cleanup(eng_unit_builder *b)
{
    s3_buf_cleanup(&b->mem);
    free(b->ents);
    memset(b, 0, sizeof *b);
}

size_t eng_unit_builder_len(const eng_unit_builder *b)
{
    return b->n_ents;
}

/* "Same key" also means "fits the unit": a row past either bound starts the next unit of
   the key, which the pool runs after this one (units of one key never overlap: pool.c). */
int eng_unit_builder_same_key(const eng_unit_builder *b, const mf_entry *e)
{
    return b->n_ents > 0 && b->n_ents < ENG_UNIT_MAX_TASKS &&
           b->mem.len + row_bytes(e) <= ENG_UNIT_MAX_BYTES &&
           e->bucket.len == b->bucket_len && e->key.len == b->key_len &&
           memcmp(b->mem.ptr, e->bucket.ptr, e->bucket.len) == 0 &&
           memcmp(b->mem.ptr + b->bucket_len + 1, e->key.ptr, e->key.len) == 0;
}

int eng_unit_builder_add(eng_unit_builder *b, const mf_entry *e)
{
    static const char nul = '\0';
    if (b->n_ents == 0) {
        s3_buf_reset(&b->mem);
        if (s3_buf_append(&b->mem, e->bucket.ptr, e->bucket.len) ||
            s3_buf_append(&b->mem, &nul, 1) || s3_buf_append(&b->mem, e->key.ptr, e->key.len) ||
            s3_buf_append(&b->mem, &nul, 1))
            return -ENG_E_NOMEM;
        b->bucket_len = e->bucket.len;
        b->key_len = e->key.len;
    }
    if (b->n_ents == b->cap_ents) {
        size_t nc = b->cap_ents ? b->cap_ents * 2 : 8;
        eng_bent *ne = realloc(b->ents, nc * sizeof *ne);
        if (!ne)
            return -ENG_E_NOMEM;
        b->ents = ne;
        b->cap_ents = nc;
    }
    eng_bent *be = &b->ents[b->n_ents];
    be->seq = e->seq;
    be->has_version = e->has_version;
    be->key_raw_off = b->mem.len;
    be->key_raw_len = e->key_raw.len;
    if (s3_buf_append(&b->mem, e->key_raw.ptr, e->key_raw.len) ||
        s3_buf_append(&b->mem, &nul, 1))
        return -ENG_E_NOMEM;
    be->vid_off = b->mem.len;
    be->vid_len = e->version_id.len;
    be->facts = e->facts;
    be->facts.etag = be->facts.acl = (s3_slice){NULL, 0}; /* into the reader: kept in mem */
    if (s3_buf_append(&b->mem, e->version_id.ptr, e->version_id.len) ||
        s3_buf_append(&b->mem, &nul, 1))
        return -ENG_E_NOMEM;
    be->etag_off = b->mem.len;
    be->etag_len = e->facts.etag.len < BENT_ETAG_MAX ? e->facts.etag.len : 0;
    if ((be->etag_len && s3_buf_append(&b->mem, e->facts.etag.ptr, be->etag_len)) ||
        s3_buf_append(&b->mem, &nul, 1))
        return -ENG_E_NOMEM;
    be->acl_off = b->mem.len;
    be->acl_len = e->facts.acl.len;
    if ((be->acl_len && s3_buf_append(&b->mem, e->facts.acl.ptr, be->acl_len)) ||
        s3_buf_append(&b->mem, &nul, 1))
        return -ENG_E_NOMEM;
    b->n_ents++;
    return 0;
}

/* qsort has no user pointer: the tasks being sorted, per thread (the feeder orders units that
   Inventory rows describe while lanes order units after their listings) */
static _Thread_local const eng_task *cmp_tasks;
static void finish_listing(eng_unit *u);

static int cmp_vid(const void *pa, const void *pb)
{
    const eng_task *a = &cmp_tasks[*(const size_t *)pa], *b = &cmp_tasks[*(const size_t *)pb];
    size_t n = a->version_id.len < b->version_id.len ? a->version_id.len : b->version_id.len;
    int c = memcmp(a->version_id.ptr, b->version_id.ptr, n);
    if (c)
        return c;
    return (a->version_id.len > b->version_id.len) - (a->version_id.len < b->version_id.len);
}

/* A row the manifest already describes (Inventory, generated manifest): its version ID,
   whether it is a delete marker and, for a version, its storage class. */
static int row_described(const eng_task *t)
{
    return t->has_version && t->version_id.len > 0 &&
           (t->facts_known & MF_FACT_DELETE_MARKER) &&
           (t->is_delete_marker || (t->facts_known & MF_FACT_STORAGE_CLASS));
}

/* The facts stand in for HEAD (one row) or for LIST (every row also tells IsLatest and
   LastModified, which is what the replay order needs). Rows of one version share a
   list_pos, so duplicates are found as after a listing; otherwise the manifest's order
   breaks LastModified ties (a generated manifest is in listing order: later = older). Returns
   the phase to start in. */
static enum phase phase_from_facts(eng_unit *u)
{
    size_t n = u->n_tasks;
    int has_latest = 0;
    for (size_t i = 0; i < n; i++) {
        const eng_task *t = &u->tasks[i];
        if (!row_described(t))
            return n == 1 ? PH_HEAD : PH_LIST;
        if (n > 1 && (t->facts_known & (MF_FACT_LATEST | MF_FACT_LAST_MODIFIED)) !=
                         (MF_FACT_LATEST | MF_FACT_LAST_MODIFIED))
            return PH_LIST;
        has_latest |= !(t->facts_known & MF_FACT_LATEST) || t->is_latest;
    }
    if (!has_latest)
        return PH_LIST; /* the source's current version is not a row: the listing finds it */
    for (size_t i = 0; i < n; i++) {
        eng_task *t = &u->tasks[u->by_vid[i]];
        const eng_task *prev = i ? &u->tasks[u->by_vid[i - 1]] : NULL;
        t->found = 1;
        if (n == 1)
            t->is_latest = 1; /* alone in its unit: nothing to order (as after a HEAD) */
        if (prev && prev->version_id.len == t->version_id.len &&
            memcmp(prev->version_id.ptr, t->version_id.ptr, t->version_id.len) == 0)
            t->list_pos = prev->list_pos;
        else
            t->list_pos = (unsigned)u->by_vid[i];
    }
    u->saw_key = 1;
    finish_listing(u);
    return PH_TAGS;
}

eng_unit *eng_unit_builder_take(eng_unit_builder *b, const repl_rules *rules,
                                  _Atomic int *stop, const _Atomic int *priority, void *job)
{
    size_t n = b->n_ents;
    /* n rows + the restore task; order has room for it too */
    size_t sz = sizeof(eng_unit) + (n + 1) * sizeof(eng_task) + (2 * n + 1) * sizeof(size_t) +
                b->mem.len;
    char *block = calloc(1, sz);
    if (!block)
        return NULL;
    eng_unit *u = (eng_unit *)block;
    u->tasks = (eng_task *)(block + sizeof *u);
    u->restore = &u->tasks[n];
    u->order = (size_t *)(u->tasks + n + 1);
    u->by_vid = u->order + n + 1;
    char *mem = (char *)(u->by_vid + n);
    memcpy(mem, b->mem.ptr, b->mem.len);
    u->n_tasks = n;
    u->bucket = (s3_slice){mem, b->bucket_len};
    u->key = (s3_slice){mem + b->bucket_len + 1, b->key_len};
    u->hash = fnv1a(u->key.ptr, u->key.len, fnv1a(u->bucket.ptr, u->bucket.len,
                                                  1469598103934665603ULL));
    for (size_t i = 0; i < n; i++) {
        eng_task *t = &u->tasks[i];
        const eng_bent *be = &b->ents[i];
        t->seq = be->seq;
        t->has_version = be->has_version;
        t->key_raw = (s3_slice){mem + be->key_raw_off, be->key_raw_len};
        t->version_id = (s3_slice){mem + be->vid_off, be->vid_len};
        t->facts_known = be->facts.known;
        t->is_delete_marker = be->facts.is_delete_marker;
        t->is_latest = be->facts.is_latest;
        t->size = be->facts.size;
        t->last_modified_ms = be->facts.last_modified_ms;
        /* the row's class fits whole (a memcpy: snprintf here cost 10% of the planner) */
        _Static_assert(sizeof t->storage_class >= sizeof be->facts.storage_class,
                       "a manifest row's storage class fits the task's");
        memcpy(t->storage_class, be->facts.storage_class, sizeof be->facts.storage_class);
        memcpy(t->etag, mem + be->etag_off, be->etag_len + 1);
        t->row = be->facts;
        t->row.acl = (s3_slice){mem + be->acl_off, be->acl_len};
        u->by_vid[i] = i;
    }
    cmp_tasks = u->tasks;
    qsort(u->by_vid, n, sizeof *u->by_vid, cmp_vid);
    cmp_tasks = NULL;
    s3_buf_init(&u->scratch, 16384);
    set_phase(u, phase_from_facts(u));
    u->rules = rules;
    u->stop = stop;
    u->priority = priority;
    u->job = job;
    u->first_seq = n ? u->tasks[0].seq : 0;
    b->n_ents = 0;
    s3_buf_reset(&b->mem);
    return u;
}

void eng_unit_destroy(eng_unit *u)
{
    if (!u)
        return;
    for (size_t i = 0; i <= u->n_tasks; i++) { /* the restore task too */
        eng_task *t = &u->tasks[i];
        for (size_t k = 0; k < t->n_tags; k++) {
            free(t->tags[k].key);
            free(t->tags[k].value);
        }
        free(t->tags);
        repl_facts_destroy(t->facts);
    }
    if (u->strat && u->strat->cleanup)
        u->strat->cleanup(&u->apply);
    free(u->rule_for_dest);
    free(u->skip);
    s3_buf_cleanup(&u->scratch);
    free(u);
}

size_t eng_unit_n_tasks(const eng_unit *u) { return u->n_tasks; }
unsigned eng_unit_n_restored(const eng_unit *u) { return u->n_restored; }
const eng_task *eng_unit_task(const eng_unit *u, size_t i) { return &u->tasks[i]; }
s3_slice eng_unit_bucket(const eng_unit *u) { return u->bucket; }
uint64_t eng__unit_hash(const eng_unit *u) { return u->hash; }
uint64_t eng_unit_first_seq(const eng_unit *u) { return u->first_seq; }
const repl_rules *eng__unit_rules(const eng_unit *u) { return u->rules; }
int eng__unit_stopped(const eng_unit *u)
{
    return (u->stop && atomic_load(u->stop)) ||
           (u->deadline && s3_mono_ms() >= atomic_load(u->deadline));
}
void eng_unit_set_deadline(eng_unit *u, const _Atomic int64_t *until_mono_ms)
{
    u->deadline = until_mono_ms;
}
long eng_unit_priority(const void *unit)
{
    const eng_unit *u = unit;
    if (eng__unit_stopped(u))
        return LONG_MAX; /* cancelled or failed: abandoning it costs nothing, and the job
                            cannot end while it waits */
    return u->priority ? atomic_load(u->priority) : 0;
}

const void *eng_unit_rank_group(const void *unit)
{
    const eng_unit *u = unit;
    return u->priority; /* one per job */
}
void *eng_unit_job(const eng_unit *u) { return u->job; }
void eng_unit_set_recheck(eng_unit *u) { u->recheck = 1; }
void eng_unit_set_src_acls_disabled(eng_unit *u) { u->src_acls_disabled = 1; }

int eng__unit_same_key(const eng_unit *a, const eng_unit *b)
{
    return a->hash == b->hash && a->key.len == b->key.len && a->bucket.len == b->bucket.len &&
           memcmp(a->key.ptr, b->key.ptr, a->key.len) == 0 &&
           memcmp(a->bucket.ptr, b->bucket.ptr, a->bucket.len) == 0;
}

/* ---- outcomes ------------------------------------------------------------------------ */

static void set_result(eng_task *t, int ok, int http, const char *code, const char *msg)
{
    t->done = 1;
    t->succeeded = ok;
    t->http_status = http;
    t->error_code = code ? code : "";
    snprintf(t->message, sizeof t->message, "%s", msg);
}

void eng__task_fail(eng_task *t, int http, const char *code, const char *msg)
{
    if (!t->done)
        set_result(t, 0, http, code, msg);
}

void eng__unit_abandon(eng_unit *u)
{
    for (size_t i = 0; i < u->n_tasks; i++) {
        if (!u->tasks[i].done) {
            u->tasks[i].done = 1;
            u->tasks[i].not_run = 1;
        }
    }
    set_phase(u, PH_DONE);
}

/* An S3 failure that outlived its retries, or a permanent one we have no reason code for:
   the row carries S3's own code and the HTTP status seen (500 when there was no answer). */
int eng__task_fail_verdict(eng_task *t, repl_failure_id id)
{
    const repl_failure *f = repl_failure_of(id);
    if (f)
        eng__task_fail(t, f->http_status, f->code, f->message);
    return f != NULL;
}

void eng__task_fail_outcome(eng_task *t, const s3_outcome *oc, const char *code)
{
    char msg[160];
    int http = oc->http_status ? (int)oc->http_status : 500;
    if (oc->http_status == 0 && oc->message[0]) /* "timeout: ...", TLS trust, curl's words */
        snprintf(msg, sizeof msg, "%.*s", (int)sizeof msg - 1, oc->message);
    else if (oc->http_status == 0)
        snprintf(msg, sizeof msg, "connection failed: %s",
                 curl_easy_strerror((CURLcode)oc->curl_code));
    else
        snprintf(msg, sizeof msg, "%.*s", (int)sizeof msg - 1, /* a long message is cut */
                 oc->message[0] ? oc->message : oc->code);
    if (oc->error_in_200)
        http = 500; /* a 200 carrying <Error> is a failure, not a success */
    const char *c = code ? code : "InternalError";
    if (!code && oc->code[0] && !t->done) {
        snprintf(t->s3_code, sizeof t->s3_code, "%s", oc->code);
        c = t->s3_code;
    }
    eng__task_fail(t, http, c, msg);
}

/* ---- LIST ---------------------------------------------------------------------------- */

typedef struct list_ctx {
    eng_unit *u;
    int other_key_seen;
    char last_key[1100];
    char last_vid[256];
} list_ctx;

static void take_facts(eng_task *t, const s3_version_entry *v)
{
    t->found = 1;
    t->is_delete_marker = v->is_delete_marker;
    t->is_latest = v->is_latest;
    t->last_modified_ms = v->last_modified_ms;
    t->list_pos = v->list_pos;
    t->size = v->size;
    snprintf(t->storage_class, sizeof t->storage_class, "%s", v->storage_class);
    snprintf(t->etag, sizeof t->etag, "%s", v->etag);
}

static void note_version(eng_unit *u, const s3_version_entry *v)
{
    if (v->is_latest) { /* the candidate restore task (finish_listing) */
        eng_task *r = u->restore;
        take_facts(r, v);
        snprintf(u->restore_vid, sizeof u->restore_vid, "%s", v->version_id);
        r->version_id = (s3_slice){u->restore_vid, strlen(u->restore_vid)};
        r->has_version = 1;
    }
    if (v->is_latest) { /* manifest rows without a version ID act on the current version */
        for (size_t i = 0; i < u->n_tasks; i++) {
            eng_task *t = &u->tasks[i];
            if (t->has_version || t->found)
                continue;
            take_facts(t, v);
            snprintf(t->resolved_vid, sizeof t->resolved_vid, "%s", v->version_id);
        }
    }
    /* binary search the first task with this version ID */
    size_t vlen = strlen(v->version_id), lo = 0, hi = u->n_tasks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const eng_task *t = &u->tasks[u->by_vid[mid]];
        size_t n = t->version_id.len < vlen ? t->version_id.len : vlen;
        int c = memcmp(t->version_id.ptr, v->version_id, n);
        if (c == 0)
            c = (t->version_id.len > vlen) - (t->version_id.len < vlen);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < u->n_tasks; i++) {
        eng_task *t = &u->tasks[u->by_vid[i]];
        if (t->version_id.len != vlen || memcmp(t->version_id.ptr, v->version_id, vlen) != 0)
            break;
        if (t->has_version)
            take_facts(t, v);
    }
}

static int on_version(const s3_version_entry *v, void *user)
{
    list_ctx *lc = user;
    eng_unit *u = lc->u;
    if (strlen(v->key) != u->key.len || memcmp(v->key, u->key.ptr, u->key.len) != 0) {
        lc->other_key_seen = 1; /* keys are listed in order: ours came first */
        return 1;
    }
    u->saw_key = 1;
    note_version(u, v);
    return 0;
}

static repl_version_age task_age(const eng_task *t)
{
    return (repl_version_age){t->is_latest, t->last_modified_ms, t->list_pos};
}

static int cmp_order(const void *pa, const void *pb)
{
    repl_version_age a = task_age(&cmp_tasks[*(const size_t *)pa]);
    repl_version_age b = task_age(&cmp_tasks[*(const size_t *)pb]);
    return repl_version_age_cmp(&a, &b);
}

static void finish_listing(eng_unit *u)
{
    u->n_order = 0;
    for (size_t i = 0; i < u->n_tasks; i++) {
        eng_task *t = &u->tasks[i];
        if (t->has_version && t->version_id.len == 0) {
            eng__task_fail(t, 400, "SrcVersionNotFound",
                      "The manifest row has an empty version ID (use null for a null version)");
        } else if (!t->found) {
            if (u->saw_key)
                eng__task_fail(t, 404, "SrcVersionNotFound", "Source version not found");
            else
                eng__task_fail(t, 404, "SrcKeyNotFound", "Source key not found");
        } else {
            u->order[u->n_order++] = i;
        }
    }
    cmp_tasks = u->tasks;
    qsort(u->order, u->n_order, sizeof *u->order, cmp_order);
    cmp_tasks = NULL;
    /* a version listed twice in the manifest is replicated once; the other rows take its
       outcome when the unit is done (dup_of, in eng__unit_next's PH_DONE) */
    size_t w = 0;
    for (size_t i = 0; i < u->n_order; i++) {
        if (w > 0 && u->tasks[u->order[w - 1]].list_pos == u->tasks[u->order[i]].list_pos) {
            u->tasks[u->order[i]].dup_of = u->order[w - 1] + 1;
            continue;
        }
        u->order[w++] = u->order[i];
    }
    u->n_order = w;
    u->cur = 0;
    /* the source's current version last, when it is not one of the rows (IsLatest sorts
       last, so it is not among them when the newest row is another version) */
    if (u->restore->found && w > 0 && u->tasks[u->order[w - 1]].list_pos != u->restore->list_pos)
        u->order[u->n_order++] = u->n_tasks;
}

/* ---- request building ----------------------------------------------------------------- */

static void req_init(s3_request *req, const char *method, const eng_unit *u)
{
    memset(req, 0, sizeof *req);
    req->method = method;
    req->bucket = u->bucket.ptr;
    req->key = u->key.ptr;
}

static void add_query(s3_request *req, const char *name, const char *value)
{
    req->query[req->n_query++] = (s3_query_param){name, value};
}

static const char *task_vid(const eng_task *t)
{
    return t->has_version ? t->version_id.ptr : t->resolved_vid;
}

/* Picks the destinations of order[cur] (the version verdict); fails the task when none. */
static void select_dests(eng_unit *u, const repl_rules *rules)
{
    eng_task *t = &u->tasks[u->order[u->cur]];
    u->selected = 1;
    u->cur_dest = 0;
    if (t->done) { /* failed before (reading its tags): nothing to send */
        u->cur_dest = rules->n_dests;
        return;
    }
    if (eng__task_fail_verdict(t, repl_verdict_version(rules, u->key, t->tags, t->n_tags,
                                                       t->is_delete_marker, t->storage_class,
                                                       u->rule_for_dest)))
        u->cur_dest = rules->n_dests;
}

/* ---- recheck after a crash ---------------------------------------------------------------
 * The units a run may have started before a crash run again with recheck set. For each
 * destination, the versions this unit sends there (in order) are S; the destination's
 * versions of the key, oldest first, are D. The largest k for which the newest k entries of
 * D equal the first k of S (delete marker for delete marker, else equal ETag) are the ones
 * the earlier run wrote: they are skipped. Nothing else writes replicas of this key while
 * the job runs, so what the earlier run wrote is exactly such a tail of D
 * (repl_replicated_prefix). A unit of one
 * version needs only a HEAD of the destination key: its current version (or delete marker)
 * is that version's replica when the ETags match. */

static int targets(const eng_unit *u, const repl_rules *rules, const eng_task *t, size_t d)
{
    if (t->done || repl_storage_class_archived(t->storage_class))
        return 0;
    size_t n = repl_rules_select(rules, u->key, t->tags, t->n_tags, t->is_delete_marker,
                                 u->rule_for_dest);
    return n > 0 && u->rule_for_dest[d] >= 0;
}

static int dest_targeted(const eng_unit *u, const repl_rules *rules, size_t d)
{
    for (size_t i = 0; i < u->n_order; i++)
        if (targets(u, rules, &u->tasks[u->order[i]], d))
            return 1;
    return 0;
}

typedef struct dest_list {
    const eng_unit *u;
    s3_version_entry *v;
    size_t n, cap;
    int other_key_seen;
} dest_list;

static int on_dest_version(const s3_version_entry *v, void *user)
{
    dest_list *dl = user;
    if (strlen(v->key) != dl->u->key.len || memcmp(v->key, dl->u->key.ptr, dl->u->key.len))
        return 1;
    if (dl->n == dl->cap) {
        size_t nc = dl->cap ? dl->cap * 2 : 16;
        s3_version_entry *nv = realloc(dl->v, nc * sizeof *nv);
        if (!nv)
            return 1;
        dl->v = nv;
        dl->cap = nc;
    }
    dl->v[dl->n++] = *v;
    return 0;
}

static int cmp_entry_age(const void *pa, const void *pb)
{
    const s3_version_entry *a = pa, *b = pb;
    repl_version_age x = {a->is_latest, a->last_modified_ms, a->list_pos};
    repl_version_age y = {b->is_latest, b->last_modified_ms, b->list_pos};
    return repl_version_age_cmp(&x, &y);
}

static void on_recheck(eng_unit *u, const repl_rules *rules, const s3_call *c,
                       const s3_outcome *oc)
{
    size_t d = u->cur_dest++;
    if (u->n_order == 1) { /* HEAD of the destination key's current version */
        const eng_task *t = &u->tasks[u->order[0]];
        const s3_response *r = &c->resp;
        if (t->is_delete_marker)
            u->skip[d] = oc->http_status == 404 && r->delete_marker;
        else
            u->skip[d] = oc->http_status == 200 && repl_etag_eq(r->etag, t->etag);
        return;
    }
    if (oc->http_status != 200)
        return; /* nothing learnt: send everything (the copy reports its own failure) */
    dest_list dl = {.u = u};
    s3_list_versions_page page;
    if (s3_xml_parse_list_versions((s3_slice){c->resp.body.ptr, c->resp.body.len}, 0,
                                   on_dest_version, &dl, &page) != 0 || dl.n == 0) {
        free(dl.v);
        return;
    }
    qsort(dl.v, dl.n, sizeof *dl.v, cmp_entry_age);
    /* what this unit sends there, in order, against what is there, oldest first */
    repl_version_mark *sent = malloc(u->n_order * sizeof *sent);
    repl_version_mark *there = malloc(dl.n * sizeof *there);
    size_t ns = 0;
    for (size_t i = 0; sent && i < u->n_order; i++) {
        const eng_task *t = &u->tasks[u->order[i]];
        if ((t != u->restore || ns > 0) && targets(u, rules, t, d))
            sent[ns++] = (repl_version_mark){t->is_delete_marker, t->etag};
    }
    for (size_t i = 0; there && i < dl.n; i++)
        there[i] = (repl_version_mark){dl.v[i].is_delete_marker, dl.v[i].etag};
    u->skip[d] = sent && there ? repl_replicated_prefix(there, dl.n, sent, ns) : 0;
    free(there);
    free(sent);
    free(dl.v);
}

/* Starts order[cur] -> destination cur_dest; 0 when there is nothing to send there. */
static int start_apply(eng_unit *u, const repl_rules *rules, eng_task *t)
{
    int ri = u->rule_for_dest[u->cur_dest];
    if (ri < 0)
        return 0;
    if (t == u->restore && !u->wrote[u->cur_dest])
        return 0; /* the unit wrote nothing there: nothing to restore */
    const repl_rule *r = &rules->rules[ri];
    const repl_dest *d = &rules->dests[u->cur_dest];
    if (eng__task_fail_verdict(t, repl_verdict_dest(r, d, NULL)))
        return 0; /* the destination's state; the version's facts are checked once read */
    if (t != u->restore)
        u->wrote[u->cur_dest] = 1;
    if (u->sent[u->cur_dest]++ < u->skip[u->cur_dest])
        return 0; /* replicated before the crash: the destination holds it already */
    if (t == u->restore)
        u->n_restored++;
    u->apply = (eng__apply){.task = t, .rule = r, .dest = d, .cfg = &rules->copy,
                            .src_bucket = u->bucket.ptr, .key = u->key.ptr,
                            .src_version = task_vid(t),
                            .src_acls_disabled = u->src_acls_disabled, .scratch = &u->scratch};
    u->strat = eng__strategy_for(t, r, d, &rules->copy);
    return 1;
}

static int next_apply(eng_unit *u, const repl_rules *rules, eng__req *r)
{
    while (u->cur < u->n_order) {
        eng_task *t = &u->tasks[u->order[u->cur]];
        if (!u->selected)
            select_dests(u, rules);
        while (u->cur_dest < rules->n_dests) {
            if (!u->strat && !start_apply(u, rules, t)) {
                u->cur_dest++;
                continue;
            }
            int rc = u->strat->next(&u->apply, r);
            if (rc)
                return rc;
            if (u->strat->cleanup)
                u->strat->cleanup(&u->apply);
            u->strat = NULL;
            u->cur_dest++;
        }
        if (!t->done)
            set_result(t, 1, 200, "", "success");
        u->cur++;
        u->selected = 0;
    }
    return 0;
}

/* A restore that failed leaves a destination's current version older than the source's: the
   row of the unit's newest version, which the restore followed, says so. */
static void restore_outcome(eng_unit *u, const repl_rules *rules)
{
    eng_task *r = u->restore;
    if (u->restore_checked)
        return;
    u->restore_checked = 1;
    int wanted = 0; /* the restore is in the replay, and the unit wrote to a destination */
    for (size_t d = 0; u->wrote && d < rules->n_dests; d++)
        wanted |= u->wrote[d] != 0;
    if (!wanted || !u->n_order || u->order[u->n_order - 1] != u->n_tasks)
        return;
    const repl_failure *not_eligible = repl_failure_of(REPL_NOT_ELIGIBLE);
    if (r->done && (r->succeeded || (not_eligible && r->error_code &&
                                     strcmp(r->error_code, not_eligible->code) == 0)))
        return; /* restored, or the rules do not replicate it: nothing to restore */
    for (size_t i = u->n_order; i-- > 0;) {
        eng_task *t = &u->tasks[u->order[i]];
        if (t == r || t->not_run)
            continue;
        if (!r->done) { /* abandoned (the job stopped) before the restore: the unit is not
                           done, so it runs again, restore included, when the job resumes */
            t->not_run = 1;
            return;
        }
        if (t->succeeded) {
            t->succeeded = 0;
            t->http_status = r->http_status;
            if (r->error_code == r->s3_code) {
                memcpy(t->s3_code, r->s3_code, sizeof t->s3_code);
                t->error_code = t->s3_code;
            } else {
                t->error_code = r->error_code;
            }
            snprintf(t->message, sizeof t->message,
                     "replicated, but the source's current version could not be restored "
                     "on top: %.80s", r->message);
        }
        return;
    }
}

/* Long on purpose (~110 lines): one case per phase of the state machine, each building
   that phase's request; a reader sees every request a unit sends in one place. */
static int build(eng_unit *u, const repl_rules *rules, eng__req *r)
{
    s3_request *req = &r->req;
    r->expect_xml = 0;
    r->tag = 0;
    r->ep_index = 0;
    if (!u->rule_for_dest) {
        size_t nd = rules->n_dests ? rules->n_dests : 1;
        u->rule_for_dest = calloc(nd, sizeof(int));
        u->skip = calloc(3 * nd, sizeof(size_t));
        if (u->skip) {
            u->sent = u->skip + nd;
            u->wrote = u->sent + nd;
        }
        if (!u->rule_for_dest || !u->skip) {
            for (size_t i = 0; i < u->n_tasks; i++)
                eng__task_fail(&u->tasks[i], 500, "InternalError", "out of memory");
            return 0;
        }
    }
    for (;;) {
        switch (u->phase) {
        case PH_HEAD: {
            const eng_task *t = &u->tasks[0];
            if (t->has_version && t->version_id.len == 0) {
                set_phase(u, PH_LIST); /* LIST's bookkeeping fails the row */
                continue;
            }
            /* the key's current version: when it is the row's, this one answer tells all */
            req_init(req, "HEAD", u);
            req->keep_headers = 1; /* the version's facts, for the copy (facts.c) */
            return 1;
        }
        case PH_LIST:
            req_init(req, "GET", u);
            req->key = NULL;
            add_query(req, "versions", "");
            add_query(req, "prefix", u->key.ptr);
            add_query(req, "max-keys", LIST_PAGE_KEYS);
            if (u->key_marker[0]) {
                add_query(req, "key-marker", u->key_marker);
                add_query(req, "version-id-marker", u->vid_marker);
            }
            return 1;
        case PH_TAGS:
            /* delete markers have no tags; archived versions are not eligible anyway (and
               S3 refuses to read their tags: InvalidObjectState) */
            while (u->cur < u->n_order &&
                   (u->tasks[u->order[u->cur]].is_delete_marker ||
                    repl_storage_class_archived(u->tasks[u->order[u->cur]].storage_class)))
                u->cur++;
            if (u->cur >= u->n_order || !rules->needs_tags) {
                set_phase(u, u->recheck ? PH_RECHECK : PH_APPLY);
                u->cur = 0;
                u->cur_dest = 0;
                continue;
            }
            req_init(req, "GET", u);
            add_query(req, "tagging", "");
            add_query(req, "versionId", task_vid(&u->tasks[u->order[u->cur]]));
            return 1;
        case PH_RECHECK:
            while (u->cur_dest < rules->n_dests && !dest_targeted(u, rules, u->cur_dest))
                u->cur_dest++;
            if (u->cur_dest >= rules->n_dests ||
                rules->dests[u->cur_dest].state != REPL_DEST_OK) {
                if (u->cur_dest < rules->n_dests) {
                    u->cur_dest++;
                    continue;
                }
                set_phase(u, PH_APPLY);
                u->cur = 0;
                u->cur_dest = 0;
                continue;
            }
            memset(req, 0, sizeof *req);
            req->bucket = rules->dests[u->cur_dest].bucket;
            r->ep_index = rules->dests[u->cur_dest].ep_index;
            if (u->n_order == 1) { /* one version: is the destination's current one it? */
                req->method = "HEAD";
                req->key = u->key.ptr;
                return 1;
            }
            req->method = "GET";
            add_query(req, "versions", "");
            add_query(req, "prefix", u->key.ptr);
            add_query(req, "max-keys", LIST_PAGE_KEYS);
            return 1;
        case PH_APPLY: {
            int rc = next_apply(u, rules, r);
            if (rc)
                return rc;
            set_phase(u, PH_DONE);
            continue;
        }
        case PH_DONE:
            restore_outcome(u, rules);
            for (size_t i = 0; i < u->n_tasks; i++) {
                eng_task *t = &u->tasks[i];
                if (t->dup_of && !t->not_run) {
                    const eng_task *o = &u->tasks[t->dup_of - 1];
                    t->done = 1;
                    t->succeeded = o->succeeded;
                    t->http_status = o->http_status;
                    t->error_code = o->error_code;
                    memcpy(t->message, o->message, sizeof t->message);
                }
            }
            return 0;
        }
    }
}

int eng__unit_next(eng_unit *u, const repl_rules *rules, eng__req *r)
{
    if (u->busy)
        return ENG__WAIT;
    int rc = build(u, rules, r);
    if (rc == 1 && r->tag == 0)
        u->busy = 1;
    return rc;
}

int eng__unit_rebuild(eng_unit *u, const repl_rules *rules, unsigned tag,
                      const s3_outcome *prev, eng__req *r)
{
    if (u->phase == PH_APPLY && u->strat && u->strat->rebuild)
        return u->strat->rebuild(&u->apply, tag, prev, r) == 1;
    if (tag != 0)
        return 0;
    return build(u, rules, r) == 1; /* nothing advanced since: the same request */
}

/* ---- responses ------------------------------------------------------------------------ */

static void on_head(eng_unit *u, const s3_call *c, const s3_outcome *oc)
{
    eng_task *t = &u->tasks[0];
    const s3_response *r = &c->resp;
    int current = oc->http_status == 200 || (oc->http_status == 404 && r->delete_marker);
    if (current && t->has_version &&
        (strlen(r->version_id) != t->version_id.len ||
         memcmp(r->version_id, t->version_id.ptr, t->version_id.len) != 0)) {
        set_phase(u, PH_LIST); /* another version is current: the listing tells the order */
        return;
    }
    if (current && (oc->http_status == 200 || r->version_id[0])) {
        t->found = 1;
        t->is_latest = 1; /* the key's current version: nothing to restore */
        t->is_delete_marker = oc->http_status == 404;
        t->size = r->content_length;
        if (!t->is_delete_marker && (t->facts = repl_facts_new()) != NULL)
            repl_facts_from_head(t->facts, r);
        snprintf(t->storage_class, sizeof t->storage_class, "%s",
                 r->storage_class[0] ? r->storage_class : "STANDARD");
        snprintf(t->etag, sizeof t->etag, "%s", r->etag);
        if (!t->has_version)
            snprintf(t->resolved_vid, sizeof t->resolved_vid, "%s", r->version_id);
        u->saw_key = 1;
        finish_listing(u);
        set_phase(u, PH_TAGS);
    } else if (oc->http_status == 404 || oc->http_status == 400 || oc->http_status == 405 ||
               oc->http_status == 403) {
        /* which 404 is it? the listing tells; and a 403: this HEAD needs s3:GetObject,
           which credentials limited to version actions (GetObjectVersion, ListBucketVersions)
           lack, while the listing and the version's own HEAD are allowed */
        set_phase(u, PH_LIST);
    } else {
        eng__task_fail_outcome(t, oc, NULL);
        set_phase(u, PH_DONE);
    }
}

static void on_list(eng_unit *u, const s3_call *c, const s3_outcome *oc)
{
    if (oc->http_status != 200) {
        const char *code = repl_reason_for_s3(REPL_OP_SRC_LIST, oc);
        for (size_t i = 0; i < u->n_tasks; i++)
            eng__task_fail_outcome(&u->tasks[i], oc, code);
        set_phase(u, PH_DONE);
        return;
    }
    list_ctx lc = {.u = u};
    s3_list_versions_page page;
    s3_slice body = {c->resp.body.ptr, c->resp.body.len};
    if (s3_xml_parse_list_versions(body, u->list_pos, on_version, &lc, &page) != 0) {
        s3_outcome bad = *oc;
        snprintf(bad.code, sizeof bad.code, "InternalError");
        snprintf(bad.message, sizeof bad.message, "malformed ListObjectVersions answer");
        bad.http_status = 500;
        for (size_t i = 0; i < u->n_tasks; i++)
            eng__task_fail_outcome(&u->tasks[i], &bad, NULL);
        set_phase(u, PH_DONE);
        return;
    }
    u->list_pos += page.n_entries;
    if (page.is_truncated && !lc.other_key_seen) {
        snprintf(u->key_marker, sizeof u->key_marker, "%s", page.next_key_marker);
        snprintf(u->vid_marker, sizeof u->vid_marker, "%s", page.next_version_id_marker);
        return; /* next page */
    }
    finish_listing(u);
    set_phase(u, PH_TAGS);
}

static void on_tags(eng_unit *u, const s3_call *c, const s3_outcome *oc)
{
    eng_task *t = &u->tasks[u->order[u->cur]];
    if (oc->http_status != 200) {
        eng__task_fail_outcome(t, oc, repl_reason_for_s3(REPL_OP_SRC_GET_TAGS, oc));
    } else {
        if (repl_tags_from_xml((s3_slice){c->resp.body.ptr, c->resp.body.len}, &t->tags,
                               &t->n_tags) != 0)
            eng__task_fail(t, 500, "InternalError", "cannot read the version's tags");
    }
    u->cur++;
}

void eng__unit_on_response(eng_unit *u, const repl_rules *rules, unsigned tag,
                           const s3_call *c, const s3_outcome *oc)
{
    if (tag == 0)
        u->busy = 0;
    switch (u->phase) {
    case PH_HEAD:
        on_head(u, c, oc);
        break;
    case PH_LIST:
        on_list(u, c, oc);
        break;
    case PH_TAGS:
        on_tags(u, c, oc);
        break;
    case PH_RECHECK:
        on_recheck(u, rules, c, oc);
        break;
    case PH_APPLY:
        if (u->strat)
            u->strat->on_response(&u->apply, tag, c, oc);
        break;
    case PH_DONE:
        break;
    }
}
