/*
 * xml.c — the few S3 XML answers batchrep reads, parsed with expat from a complete body.
 *
 * Accepted input: a UTF-8 XML document (S3 sends the default namespace
 * http://s3.amazonaws.com/doc/2006-03-01/; element names are matched by local name, any
 * "prefix:" is ignored). Entities (&amp; &lt; &#x20AC; ...) are expanded by expat; expat 2.5
 * refuses "billion laughs" amplification on its own and never loads external entities.
 *   <Error><Code/><Message/>...</Error>                   s3_xml_parse_error
 *   <ListVersionsResult> ... <Version>|<DeleteMarker> ...  s3_xml_parse_list_versions
 *   first <Name> anywhere (UploadId, ETag, ...)            s3_xml_find_text
 * Keys are returned as sent: a listing requested with encoding-type=url has URL-encoded
 * <Key> and <NextKeyMarker>, and the caller decodes them (it knows what it asked for).
 * A text field longer than its destination is an error (S3_E_TOO_BIG), never truncated:
 * a cut key would name another object.
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <stdlib.h>
#include <string.h>

#include <expat.h>

#define TEXT_CAP 2048 /* > the longest field we keep (1,100-byte keys) */

/* Shared parse state. */
typedef struct xstate {
    XML_Parser p;
    int depth;             /* of the element being parsed; root = 1 */
    int capture;           /* collecting character data into text */
    char text[TEXT_CAP];
    size_t text_len;
    int text_overflow;
} xstate;

static const char *local_name(const char *name)
{
    const char *c = strrchr(name, ':');
    return c ? c + 1 : name;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    xstate *x = ud;
    if (!x->capture || len <= 0)
        return;
    if ((size_t)len > TEXT_CAP - 1 - x->text_len) {
        x->text_overflow = 1;
        return;
    }
    memcpy(x->text + x->text_len, s, (size_t)len);
    x->text_len += (size_t)len;
}

static void begin_capture(xstate *x)
{
    x->capture = 1;
    x->text_len = 0;
    x->text_overflow = 0;
}

/* Ends capturing and copies the text into dst. Returns 0, or S3_E_TOO_BIG. */
static int end_capture(xstate *x, char *dst, size_t cap)
{
    x->capture = 0;
    if (x->text_overflow || !s3__copy_str(dst, cap, x->text, x->text_len))
        return S3_E_TOO_BIG;
    return S3_E_OK;
}

static int run(xstate *x, s3_slice body, void *ud, XML_StartElementHandler start,
               XML_EndElementHandler end)
{
    if (body.len > (size_t)INT32_MAX)
        return S3_E_TOO_BIG;
    x->p = XML_ParserCreate("UTF-8");
    if (!x->p)
        return S3_E_NOMEM;
    XML_SetUserData(x->p, ud);
    XML_SetElementHandler(x->p, start, end);
    XML_SetCharacterDataHandler(x->p, on_text);
    enum XML_Status st = XML_Parse(x->p, body.ptr ? body.ptr : "", (int)body.len, 1);
    int rc = S3_E_OK;
    if (st == XML_STATUS_ERROR)
        rc = S3_E_XML;
    /* XML_STATUS_SUSPENDED cannot happen (we stop with resumable = XML_FALSE, which makes
       XML_Parse return XML_STATUS_ERROR with XML_ERROR_ABORTED: the handlers tell why). */
    if (st == XML_STATUS_ERROR && XML_GetErrorCode(x->p) == XML_ERROR_ABORTED)
        rc = S3_E_OK;
    XML_ParserFree(x->p);
    x->p = NULL;
    return rc;
}

/* ---- <Error> ------------------------------------------------------------------------ */

typedef struct errstate {
    xstate x; /* first: the handlers get an errstate* as user data */
    int root_is_error;
    int saw_root;
    int field;         /* 1 Code, 2 Message */
    char *code;
    size_t code_cap;
    char *msg;
    size_t msg_cap;
} errstate;

static void XMLCALL err_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    errstate *e = ud;
    const char *n = local_name(name);
    e->x.depth++;
    if (e->x.depth == 1) {
        e->saw_root = 1;
        /* Another root: keep parsing anyway, a caller expecting a result needs to know
           whether the whole document is well-formed (a copy cut mid-body). */
        e->root_is_error = strcmp(n, "Error") == 0;
    } else if (e->x.depth == 2) {
        e->field = strcmp(n, "Code") == 0 ? 1 : strcmp(n, "Message") == 0 ? 2 : 0;
        if (e->field)
            begin_capture(&e->x);
    }
}

static void XMLCALL err_end(void *ud, const XML_Char *name)
{
    (void)name;
    errstate *e = ud;
    if (e->x.depth == 2 && e->field) {
        /* An over-long message is cut rather than refused: it is only shown to people. */
        e->x.capture = 0;
        if (e->field == 1 && e->code_cap)
            s3__copy_str(e->code, e->code_cap, e->x.text, e->x.text_len);
        else if (e->field == 2 && e->msg_cap)
            s3__copy_str(e->msg, e->msg_cap, e->x.text, e->x.text_len);
        e->field = 0;
    }
    e->x.depth--;
}

/* Returns 1 when the root is <Error> (even if the body is cut short after it), 0 for a
   well-formed document with another root, -1 for an empty or malformed body. */
int s3_xml_parse_error(s3_slice body, char *code, size_t code_cap, char *msg, size_t msg_cap)
{
    errstate e;
    memset(&e, 0, sizeof e);
    e.code = code;
    e.code_cap = code ? code_cap : 0;
    e.msg = msg;
    e.msg_cap = msg ? msg_cap : 0;
    if (e.code_cap)
        code[0] = '\0';
    if (e.msg_cap)
        msg[0] = '\0';
    int rc = run(&e.x, body, &e, err_start, err_end);
    if (e.root_is_error)
        return 1;
    if (rc || !e.saw_root)
        return -1;
    return 0;
}

/* ---- s3_xml_find_text --------------------------------------------------------------- */

typedef struct findstate {
    xstate x;
    const char *element;
    int depth_found; /* depth of the element being captured, 0 when not inside it */
    int found;
    int rc;
    char *out;
    size_t out_cap;
} findstate;

static void XMLCALL find_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    findstate *f = ud;
    f->x.depth++;
    if (!f->depth_found && strcmp(local_name(name), f->element) == 0) {
        f->depth_found = f->x.depth;
        begin_capture(&f->x);
    }
}

static void XMLCALL find_end(void *ud, const XML_Char *name)
{
    (void)name;
    findstate *f = ud;
    if (f->depth_found == f->x.depth) {
        f->rc = end_capture(&f->x, f->out, f->out_cap);
        f->found = 1;
        XML_StopParser(f->x.p, XML_FALSE);
    }
    f->x.depth--;
}

int s3_xml_find_text(s3_slice body, const char *element, char *out, size_t out_cap)
{
    if (!element || !out || out_cap == 0)
        return S3_E_ARG;
    findstate f;
    memset(&f, 0, sizeof f);
    f.element = element;
    f.out = out;
    f.out_cap = out_cap;
    out[0] = '\0';
    int rc = run(&f.x, body, &f, find_start, find_end);
    if (f.found)
        return f.rc;
    return rc ? rc : S3_E_XML;
}

/* ---- ListVersionsResult ------------------------------------------------------------- */

enum lv_field {
    LV_NONE,
    LV_KEY,
    LV_VERSION_ID,
    LV_IS_LATEST,
    LV_LAST_MODIFIED,
    LV_ETAG,
    LV_SIZE,
    LV_STORAGE_CLASS,
    LV_IS_TRUNCATED,
    LV_NEXT_KEY_MARKER,
    LV_NEXT_VERSION_ID_MARKER,
};

typedef struct lvstate {
    xstate x;
    int in_entry;              /* inside <Version> or <DeleteMarker> (depth 2) */
    enum lv_field field;
    s3_version_entry v;
    unsigned first_pos;
    s3_version_cb cb;
    void *user;
    s3_list_versions_page *page;
    int rc;                    /* first error or callback stop */
    int stopped;
} lvstate;

static enum lv_field entry_field(const char *n)
{
    if (strcmp(n, "Key") == 0)
        return LV_KEY;
    if (strcmp(n, "VersionId") == 0)
        return LV_VERSION_ID;
    if (strcmp(n, "IsLatest") == 0)
        return LV_IS_LATEST;
    if (strcmp(n, "LastModified") == 0)
        return LV_LAST_MODIFIED;
    if (strcmp(n, "ETag") == 0)
        return LV_ETAG;
    if (strcmp(n, "Size") == 0)
        return LV_SIZE;
    if (strcmp(n, "StorageClass") == 0)
        return LV_STORAGE_CLASS;
    return LV_NONE;
}

static void lv_fail(lvstate *l, int rc)
{
    if (!l->rc)
        l->rc = rc;
    XML_StopParser(l->x.p, XML_FALSE);
}

static void XMLCALL lv_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    lvstate *l = ud;
    const char *n = local_name(name);
    l->x.depth++;
    if (l->x.depth == 1) {
        if (strcmp(n, "ListVersionsResult") != 0)
            lv_fail(l, S3_E_XML);
    } else if (l->x.depth == 2) {
        if (strcmp(n, "Version") == 0 || strcmp(n, "DeleteMarker") == 0) {
            l->in_entry = 1;
            memset(&l->v, 0, sizeof l->v);
            l->v.is_delete_marker = n[0] == 'D';
        } else {
            l->field = strcmp(n, "IsTruncated") == 0           ? LV_IS_TRUNCATED
                       : strcmp(n, "NextKeyMarker") == 0       ? LV_NEXT_KEY_MARKER
                       : strcmp(n, "NextVersionIdMarker") == 0 ? LV_NEXT_VERSION_ID_MARKER
                                                               : LV_NONE;
            if (l->field)
                begin_capture(&l->x);
        }
    } else if (l->x.depth == 3 && l->in_entry) {
        l->field = entry_field(n);
        if (l->field)
            begin_capture(&l->x);
    }
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    if (!*s)
        return S3_E_XML;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || v < 0)
        return S3_E_XML;
    *out = v;
    return S3_E_OK;
}

static void lv_end_field(lvstate *l)
{
    s3_version_entry *v = &l->v;
    s3_list_versions_page *pg = l->page;
    int rc = S3_E_OK;
    switch (l->field) {
    case LV_KEY:
        rc = end_capture(&l->x, v->key, sizeof v->key);
        break;
    case LV_VERSION_ID:
        rc = end_capture(&l->x, v->version_id, sizeof v->version_id);
        break;
    case LV_IS_LATEST: {
        char t[8];
        rc = end_capture(&l->x, t, sizeof t);
        v->is_latest = rc == 0 && strcmp(t, "true") == 0;
        rc = 0;
        break;
    }
    case LV_LAST_MODIFIED:
        rc = end_capture(&l->x, v->last_modified, sizeof v->last_modified);
        if (!rc && s3_parse_time_ms(v->last_modified, &v->last_modified_ms) != 0)
            rc = S3_E_XML;
        break;
    case LV_ETAG:
        rc = end_capture(&l->x, v->etag, sizeof v->etag);
        break;
    case LV_SIZE: {
        char t[32];
        rc = end_capture(&l->x, t, sizeof t);
        if (!rc)
            rc = parse_i64(t, &v->size);
        break;
    }
    case LV_STORAGE_CLASS:
        rc = end_capture(&l->x, v->storage_class, sizeof v->storage_class);
        break;
    case LV_IS_TRUNCATED: {
        char t[8];
        rc = end_capture(&l->x, t, sizeof t);
        pg->is_truncated = rc == 0 && strcmp(t, "true") == 0;
        rc = 0;
        break;
    }
    case LV_NEXT_KEY_MARKER:
        rc = end_capture(&l->x, pg->next_key_marker, sizeof pg->next_key_marker);
        break;
    case LV_NEXT_VERSION_ID_MARKER:
        rc = end_capture(&l->x, pg->next_version_id_marker,
                         sizeof pg->next_version_id_marker);
        break;
    case LV_NONE:
        break;
    }
    l->field = LV_NONE;
    if (rc)
        lv_fail(l, rc);
}

static void XMLCALL lv_end(void *ud, const XML_Char *name)
{
    (void)name;
    lvstate *l = ud;
    if (l->field && (l->x.depth == 3 || (l->x.depth == 2 && !l->in_entry))) {
        lv_end_field(l);
    } else if (l->x.depth == 2 && l->in_entry) {
        l->in_entry = 0;
        if (!l->v.key[0] || !l->v.version_id[0]) {
            lv_fail(l, S3_E_XML); /* every entry has both; without them it is useless */
        } else {
            l->v.list_pos = l->first_pos + l->page->n_entries;
            l->page->n_entries++;
            if (l->cb(&l->v, l->user)) {
                l->stopped = 1;
                XML_StopParser(l->x.p, XML_FALSE);
            }
        }
    }
    l->x.depth--;
}

int s3_xml_parse_list_versions(s3_slice body, unsigned first_pos, s3_version_cb cb,
                               void *user, s3_list_versions_page *out_page)
{
    if (!cb || !out_page)
        return S3_E_ARG;
    memset(out_page, 0, sizeof *out_page);
    lvstate *l = calloc(1, sizeof *l); /* ~4 KiB: kept off the caller's stack */
    if (!l)
        return S3_E_NOMEM;
    l->first_pos = first_pos;
    l->cb = cb;
    l->user = user;
    l->page = out_page;
    int rc = run(&l->x, body, l, lv_start, lv_end);
    if (l->rc)
        rc = l->rc;
    free(l);
    return rc;
}
