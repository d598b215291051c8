/*
 * xmljson.c — a small, generic XML -> JSON conversion for S3 configuration documents
 * (GetBucketReplication, GetObjectTagging), so the engine reads them with the same code as
 * the JSON the AWS CLI takes.
 *
 * Mapping: the root element becomes the returned object; a child element with children
 * becomes an object, one with only text a string; an element name seen twice under one
 * parent becomes a list. Attributes and namespaces are ignored. Text is trimmed only for
 * elements that also have children (whitespace between elements).
 */
#include "s3/s3.h"

#include <expat.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32

typedef struct conv {
    json_t *stack[MAX_DEPTH]; /* objects being filled */
    char *names[MAX_DEPTH];   /* element name at each level */
    s3_buf text[MAX_DEPTH];
    int has_children[MAX_DEPTH];
    int depth;
    int failed;
    json_t *root;
} conv;

static const char *local_name(const char *name)
{
    const char *p = strrchr(name, ' '); /* expat's namespace separator, when used */
    return p ? p + 1 : name;
}

static void add_child(json_t *parent, const char *name, json_t *value)
{
    json_t *cur = json_object_get(parent, name);
    if (!cur) {
        json_object_set_new(parent, name, value);
    } else if (json_is_array(cur)) {
        json_array_append_new(cur, value);
    } else {
        json_t *list = json_array();
        json_array_append(list, cur);
        json_array_append_new(list, value);
        json_object_set_new(parent, name, list);
    }
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    conv *c = ud;
    (void)attrs;
    if (c->failed || c->depth >= MAX_DEPTH) {
        c->failed = 1;
        return;
    }
    if (c->depth > 0)
        c->has_children[c->depth - 1] = 1;
    c->stack[c->depth] = json_object();
    c->names[c->depth] = strdup(local_name(name));
    s3_buf_init(&c->text[c->depth], 1u << 20);
    c->has_children[c->depth] = 0;
    c->depth++;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    conv *c = ud;
    (void)name;
    if (c->failed || c->depth == 0)
        return;
    int d = --c->depth;
    json_t *value;
    if (c->has_children[d]) {
        value = c->stack[d];
    } else {
        json_decref(c->stack[d]);
        value = json_stringn(c->text[d].ptr ? c->text[d].ptr : "", c->text[d].len);
    }
    s3_buf_cleanup(&c->text[d]);
    if (d == 0)
        c->root = value;
    else
        add_child(c->stack[d - 1], c->names[d], value);
    free(c->names[d]);
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    conv *c = ud;
    if (c->failed || c->depth == 0)
        return;
    if (s3_buf_append(&c->text[c->depth - 1], s, (size_t)len))
        c->failed = 1;
}

json_t *s3_xml_to_json(s3_slice body)
{
    conv c;
    memset(&c, 0, sizeof c);
    XML_Parser p = XML_ParserCreate("UTF-8");
    if (!p)
        return NULL;
    XML_SetUserData(p, &c);
    XML_SetElementHandler(p, on_start, on_end);
    XML_SetCharacterDataHandler(p, on_text);
    int ok = XML_Parse(p, body.ptr ? body.ptr : "", (int)body.len, 1) == XML_STATUS_OK;
    XML_ParserFree(p);
    while (c.depth > 0) { /* unwind after an error */
        c.depth--;
        json_decref(c.stack[c.depth]);
        s3_buf_cleanup(&c.text[c.depth]);
        free(c.names[c.depth]);
    }
    if (!ok || c.failed || !c.root) {
        json_decref(c.root);
        return NULL;
    }
    if (!json_is_object(c.root)) { /* a root with only text: wrap as {} */
        json_decref(c.root);
        return json_object();
    }
    return c.root;
}

const char *s3_json_str(const json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}
