/*
 * endpoint.c — endpoint, region and credentials resolved the way the AWS CLI does (see the
 * comment of s3_endpoint_load in s3.h for the order of sources).
 *
 * Files read: $AWS_CONFIG_FILE (default ~/.aws/config) and $AWS_SHARED_CREDENTIALS_FILE
 * (default ~/.aws/credentials); a missing file is an empty one. The format is the one
 * botocore reads with Python's RawConfigParser:
 *   [section]                       config: "default", "profile NAME", "services NAME";
 *                                   credentials: "NAME"
 *   name = value   or   name: value names are case-insensitive; the value is trimmed and
 *                                   runs to the end of the line ("# ..." is part of it)
 *   # comment   ; comment           whole lines only, possibly indented
 *   s3 =                            a key with an empty value followed by indented
 *     addressing_style = path       "name = value" lines is a nested sub-section
 *   an indented line after a key with a value continues that value (ignored here)
 * Anything else (a line outside a section, no '=' or ':', an unclosed '[') is an error
 * naming file:line, as botocore also refuses such a file. Settings of a profile found in
 * the credentials file override those of the config file (botocore merges them that way),
 * but a key pair is always taken whole from one place, never mixed.
 * Secrets never appear in messages.
 */
#include "s3/s3.h"
#include "s3/s3_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

enum { F_CONFIG, F_CREDS, N_FILES };

typedef struct setting {
    char value[2048];
    int line; /* 0: not set */
    int file; /* F_CONFIG or F_CREDS */
} setting;

typedef struct keypair {
    setting ak, sk, token;
} keypair;

typedef struct profile {
    const char *name;
    char paths[N_FILES][1024];
    int found[N_FILES];        /* a section of this profile exists in the file */
    setting region, endpoint_url, s3_endpoint_url, s3_addressing_style, ca_bundle;
    setting services, ignore_endpoints, unsupported;
    char unsupported_key[40];
    keypair keys[N_FILES];
    /* second pass over the config file: the [services NAME] section */
    int want_services;
    setting services_s3_endpoint_url;
} profile;

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int is_sp(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims s[0..*n) in place; returns the new start. */
static char *trim(char *s, size_t *n)
{
    while (*n && is_sp(*s)) {
        s++;
        (*n)--;
    }
    while (*n && (is_sp(s[*n - 1]) || s[*n - 1] == '\r' || s[*n - 1] == '\n'))
        (*n)--;
    s[*n] = '\0';
    return s;
}

/* ---- the INI reader ------------------------------------------------------------------ */

/* Called for every name = value of the file; parent is "" at top level, or the key of the
   enclosing nested sub-section ("s3"). Returns 0, or an error after writing err. */
typedef int (*ini_cb)(profile *p, int file, const char *section, const char *parent,
                      const char *key, const char *value, int line, char *err,
                      size_t err_len);

/* Long on purpose (~90 lines): an INI line reader (sections, sub-sections, continuation),
   one kind of line per branch, each error naming file and line. */
static int ini_parse(profile *p, int file, ini_cb cb, char *err, size_t err_len)
{
    const char *path = p->paths[file];
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR)
            return S3_E_OK; /* botocore reads a missing file as an empty one */
        set_err(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return S3_E_CONFIG;
    }
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    int lineno = 0, rc = S3_E_OK;
    char section[512] = "";
    int in_section = 0;
    char last_key[128] = "";   /* the current option, for continuation lines */
    int last_key_empty = 0;    /* its value was empty: indented lines are nested pairs */
    while (rc == S3_E_OK && (got = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        char *s = line;
        if (lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3; /* UTF-8 BOM, as written by some Windows editors */
            n -= 3;
        }
        int indented = n > 0 && is_sp(s[0]);
        s = trim(s, &n);
        if (n == 0 || s[0] == '#' || s[0] == ';')
            continue;
        if (indented && in_section && last_key[0]) {
            if (!last_key_empty)
                continue; /* continuation of a plain value: nothing we read */
            char *eq = strchr(s, '=');
            if (!eq) {
                set_err(err, err_len, "%s:%d: expected \"name = value\" in the nested "
                        "\"%s\" settings", path, lineno, last_key);
                rc = S3_E_CONFIG;
                break;
            }
            size_t kn = (size_t)(eq - s), vn = n - kn - 1;
            char *k = trim(s, &kn), *v = trim(eq + 1, &vn);
            for (char *c = k; *c; c++)
                *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
            rc = cb(p, file, section, last_key, k, v, lineno, err, err_len);
            continue;
        }
        if (s[0] == '[') {
            if (s[n - 1] != ']') {
                set_err(err, err_len, "%s:%d: section header without a closing ']'", path,
                        lineno);
                rc = S3_E_CONFIG;
                break;
            }
            size_t sn = n - 2;
            char *name = trim(s + 1, &sn);
            if (!s3__copy_str(section, sizeof section, name, sn)) {
                set_err(err, err_len, "%s:%d: section name longer than %zu bytes", path,
                        lineno, sizeof section - 1);
                rc = S3_E_CONFIG;
                break;
            }
            in_section = 1;
            last_key[0] = '\0';
            continue;
        }
        size_t kn = strcspn(s, "=:");
        if (kn == n) {
            set_err(err, err_len, "%s:%d: expected \"[section]\" or \"name = value\"", path,
                    lineno);
            rc = S3_E_CONFIG;
            break;
        }
        if (!in_section) {
            set_err(err, err_len, "%s:%d: setting outside of any [section]", path, lineno);
            rc = S3_E_CONFIG;
            break;
        }
        size_t vn = n - kn - 1;
        char *v = trim(s + kn + 1, &vn);
        char *k = trim(s, &kn);
        for (char *c = k; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        s3__copy_str(last_key, sizeof last_key, k, kn);
        last_key_empty = vn == 0;
        rc = cb(p, file, section, "", k, v, lineno, err, err_len);
    }
    free(line);
    fclose(f);
    return rc;
}

/* Does the section name the profile in this file? */
static int section_is_profile(const profile *p, int file, const char *section)
{
    if (file == F_CREDS)
        return strcmp(section, p->name) == 0;
    if (strcmp(section, "default") == 0)
        return strcmp(p->name, "default") == 0;
    if (strncmp(section, "profile", 7) != 0 || !is_sp(section[7]))
        return 0;
    const char *n = section + 8;
    while (is_sp(*n))
        n++;
    return strcmp(n, p->name) == 0;
}

static int store(setting *st, int file, const char *value, int line, const char *path,
                 const char *key, char *err, size_t err_len)
{
    if (!s3__copy_str(st->value, sizeof st->value, value, strlen(value))) {
        set_err(err, err_len, "%s:%d: %s is longer than %zu bytes", path, line, key,
                sizeof st->value - 1);
        return S3_E_CONFIG;
    }
    st->line = line;
    st->file = file;
    return S3_E_OK;
}

static int on_setting(profile *p, int file, const char *section, const char *parent,
                      const char *key, const char *value, int line, char *err,
                      size_t err_len)
{
    const char *path = p->paths[file];
    if (p->want_services) {
        /* second pass: [services NAME] s3 = endpoint_url = ... */
        if (strncmp(section, "services", 8) != 0 || !is_sp(section[8]))
            return S3_E_OK;
        const char *n = section + 9;
        while (is_sp(*n))
            n++;
        if (strcmp(n, p->services.value) == 0 && strcmp(parent, "s3") == 0 &&
            strcmp(key, "endpoint_url") == 0)
            return store(&p->services_s3_endpoint_url, file, value, line, path,
                         "endpoint_url", err, err_len);
        return S3_E_OK;
    }
    if (!section_is_profile(p, file, section))
        return S3_E_OK;
    p->found[file] = 1;
    setting *st = NULL;
    if (strcmp(parent, "s3") == 0) {
        if (strcmp(key, "endpoint_url") == 0)
            st = &p->s3_endpoint_url;
        else if (strcmp(key, "addressing_style") == 0)
            st = &p->s3_addressing_style;
    } else if (parent[0] == '\0') {
        keypair *kp = &p->keys[file];
        if (strcmp(key, "region") == 0)
            st = &p->region;
        else if (strcmp(key, "endpoint_url") == 0)
            st = &p->endpoint_url;
        else if (strcmp(key, "ca_bundle") == 0)
            st = &p->ca_bundle;
        else if (strcmp(key, "services") == 0)
            st = &p->services;
        else if (strcmp(key, "ignore_configured_endpoint_urls") == 0)
            st = &p->ignore_endpoints;
        else if (strcmp(key, "aws_access_key_id") == 0)
            st = &kp->ak;
        else if (strcmp(key, "aws_secret_access_key") == 0)
            st = &kp->sk;
        else if (strcmp(key, "aws_session_token") == 0 ||
                 strcmp(key, "aws_security_token") == 0)
            st = &kp->token;
        else if (strcmp(key, "credential_process") == 0 || strcmp(key, "role_arn") == 0 ||
                 strcmp(key, "sso_session") == 0 || strcmp(key, "sso_start_url") == 0 ||
                 strcmp(key, "web_identity_token_file") == 0) {
            st = &p->unsupported;
            s3__copy_str(p->unsupported_key, sizeof p->unsupported_key, key, strlen(key));
        }
    }
    return st ? store(st, file, value, line, path, key, err, err_len) : S3_E_OK;
}

/* ---- endpoint URL -------------------------------------------------------------------- */

/* Parses scheme://host[:port][/] into out; `from` names the source for messages. */
static int parse_url(s3_endpoint *out, const char *url, const char *from, char *err,
                     size_t err_len)
{
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0) {
        out->is_https = 0;
        rest = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        out->is_https = 1;
        rest = url + 8;
    } else {
        set_err(err, err_len, "%s: endpoint URL \"%s\" must start with http:// or https://",
                from, url);
        return S3_E_CONFIG;
    }
    size_t an = strcspn(rest, "/?#");
    const char *tail = rest + an;
    while (*tail == '/')
        tail++;
    if (*tail) {
        set_err(err, err_len, "%s: endpoint URL \"%s\" must not have a path, query or "
                "fragment (scheme://host[:port])", from, url);
        return S3_E_CONFIG;
    }
    if (an == 0 || memchr(rest, '@', an)) {
        set_err(err, err_len, "%s: endpoint URL \"%s\" needs a host and no user info", from,
                url);
        return S3_E_CONFIG;
    }
    /* port: after the last ':' unless that ':' is inside an IPv6 literal [..] */
    const char *close = memchr(rest, ']', an);
    const char *colon = NULL;
    for (const char *c = close ? close : rest; c < rest + an; c++)
        if (*c == ':')
            colon = c;
    if (colon) {
        const char *d = colon + 1;
        long port = 0;
        if (d == rest + an)
            port = -1;
        for (; d < rest + an; d++) {
            if (*d < '0' || *d > '9' || port > 65535) {
                port = -1;
                break;
            }
            port = port * 10 + (*d - '0');
        }
        if (port < 1 || port > 65535) {
            set_err(err, err_len, "%s: endpoint URL \"%s\" has an invalid port", from, url);
            return S3_E_CONFIG;
        }
    }
    if (an >= sizeof out->host || an + 8 >= sizeof out->base_url) {
        set_err(err, err_len, "%s: endpoint URL host is longer than %zu bytes", from,
                sizeof out->host - 1);
        return S3_E_CONFIG;
    }
    for (size_t i = 0; i < an; i++) {
        char c = rest[i];
        out->host[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    out->host[an] = '\0';
    snprintf(out->base_url, sizeof out->base_url, "%s://%s", out->is_https ? "https" : "http",
             out->host);
    return S3_E_OK;
}

/* ---- credentials --------------------------------------------------------------------- */

static int copy_cred(char *dst, size_t cap, const char *v, const char *what, char *err,
                     size_t err_len)
{
    if (!s3__copy_str(dst, cap, v, strlen(v))) {
        set_err(err, err_len, "%s is longer than %zu bytes", what, cap - 1);
        return S3_E_CONFIG;
    }
    return S3_E_OK;
}

static int creds_from_env(s3_creds *c, int *found, char *err, size_t err_len)
{
    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    const char *tok = env("AWS_SESSION_TOKEN");
    if (!tok)
        tok = env("AWS_SECURITY_TOKEN");
    *found = 0;
    if (!ak && !sk)
        return S3_E_OK;
    if (!ak || !sk) {
        set_err(err, err_len, "%s is set but %s is not", ak ? "AWS_ACCESS_KEY_ID" :
                "AWS_SECRET_ACCESS_KEY", ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return S3_E_CONFIG;
    }
    int rc = copy_cred(c->access_key, sizeof c->access_key, ak, "AWS_ACCESS_KEY_ID", err,
                       err_len);
    if (!rc)
        rc = copy_cred(c->secret_key, sizeof c->secret_key, sk, "AWS_SECRET_ACCESS_KEY", err,
                       err_len);
    if (!rc && tok)
        rc = copy_cred(c->session_token, sizeof c->session_token, tok, "AWS_SESSION_TOKEN",
                       err, err_len);
    *found = rc == 0;
    return rc;
}

static int creds_from_file(const profile *p, int file, s3_creds *c, int *found, char *err,
                           size_t err_len)
{
    const keypair *kp = &p->keys[file];
    const char *path = p->paths[file];
    *found = 0;
    if (!kp->ak.line && !kp->sk.line)
        return S3_E_OK;
    if (!kp->ak.line || !kp->sk.line) {
        const setting *have = kp->ak.line ? &kp->ak : &kp->sk;
        set_err(err, err_len, "%s:%d: profile \"%s\" has %s but no %s", path, have->line,
                p->name, kp->ak.line ? "aws_access_key_id" : "aws_secret_access_key",
                kp->ak.line ? "aws_secret_access_key" : "aws_access_key_id");
        return S3_E_CONFIG;
    }
    char what[1200];
    snprintf(what, sizeof what, "%s:%d: aws_access_key_id", path, kp->ak.line);
    int rc = copy_cred(c->access_key, sizeof c->access_key, kp->ak.value, what, err, err_len);
    snprintf(what, sizeof what, "%s:%d: aws_secret_access_key", path, kp->sk.line);
    if (!rc)
        rc = copy_cred(c->secret_key, sizeof c->secret_key, kp->sk.value, what, err, err_len);
    snprintf(what, sizeof what, "%s:%d: aws_session_token", path, kp->token.line);
    if (!rc && kp->token.line)
        rc = copy_cred(c->session_token, sizeof c->session_token, kp->token.value, what, err,
                       err_len);
    *found = rc == 0;
    return rc;
}

/* ---- s3_endpoint_load ---------------------------------------------------------------- */

static void default_path(char *out, size_t cap, const char *env_name, const char *leaf)
{
    const char *v = env(env_name), *home = env("HOME");
    if (v && v[0] == '~' && v[1] == '/' && home)
        snprintf(out, cap, "%s%s", home, v + 1);
    else if (v)
        snprintf(out, cap, "%s", v);
    else
        snprintf(out, cap, "%s/.aws/%s", home ? home : "", leaf);
}

static int is_true(const char *v)
{
    return v && strcasecmp(v, "true") == 0;
}

/* Long on purpose (~120 lines): the AWS CLI's resolution order (environment, then the
   profile's files), one setting after another. */
static int load(s3_endpoint *out, profile *p, int explicit_profile, char *err, size_t err_len)
{
    int rc;
    for (int f = 0; f < N_FILES; f++) {
        rc = ini_parse(p, f, on_setting, err, err_len);
        if (rc)
            return rc;
    }
    if (p->services.line) {
        p->want_services = 1;
        rc = ini_parse(p, F_CONFIG, on_setting, err, err_len);
        if (rc)
            return rc;
    }
    if (!p->found[F_CONFIG] && !p->found[F_CREDS] && strcmp(p->name, "default") != 0) {
        set_err(err, err_len, "profile \"%s\" not found: no [profile %s] in %s and no [%s] "
                "in %s", p->name, p->name, p->paths[F_CONFIG], p->name, p->paths[F_CREDS]);
        return S3_E_CONFIG;
    }

    /* region */
    const char *region = NULL;
    if (explicit_profile && p->region.line)
        region = p->region.value;
    if (!region)
        region = env("AWS_REGION");
    if (!region)
        region = env("AWS_DEFAULT_REGION");
    if (!region && p->region.line)
        region = p->region.value;
    if (!region)
        region = "us-east-1";
    if (!s3__copy_str(out->region, sizeof out->region, region, strlen(region))) {
        set_err(err, err_len, "region \"%.40s...\" is longer than %zu bytes", region,
                sizeof out->region - 1);
        return S3_E_CONFIG;
    }

    /* endpoint */
    char from[1200] = "";
    const char *url = NULL;
    int ignore = is_true(env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) ||
                 is_true(p->ignore_endpoints.value);
    if (!ignore && !explicit_profile) {
        if ((url = env("AWS_ENDPOINT_URL_S3")) != NULL)
            snprintf(from, sizeof from, "AWS_ENDPOINT_URL_S3");
        else if ((url = env("AWS_ENDPOINT_URL")) != NULL)
            snprintf(from, sizeof from, "AWS_ENDPOINT_URL");
    }
    const setting *cands[3] = {&p->services_s3_endpoint_url, &p->s3_endpoint_url,
                               &p->endpoint_url};
    for (int i = 0; !ignore && !url && i < 3; i++) {
        if (cands[i]->line && cands[i]->value[0]) {
            url = cands[i]->value;
            snprintf(from, sizeof from, "%s:%d", p->paths[cands[i]->file], cands[i]->line);
        }
    }
    const char *style = p->s3_addressing_style.line ? p->s3_addressing_style.value : "auto";
    if (strcmp(style, "auto") != 0 && strcmp(style, "path") != 0 &&
        strcmp(style, "virtual") != 0) {
        set_err(err, err_len, "%s:%d: addressing_style must be auto, path or virtual, not "
                "\"%s\"", p->paths[p->s3_addressing_style.file], p->s3_addressing_style.line,
                style);
        return S3_E_CONFIG;
    }
    if (url) {
        rc = parse_url(out, url, from, err, err_len);
        if (rc)
            return rc;
        /* Local S3 servers rarely resolve bucket.host names: path-style unless asked. */
        out->path_style = strcmp(style, "virtual") != 0;
    } else {
        out->base_url[0] = '\0';
        snprintf(out->host, sizeof out->host, "s3.%s.amazonaws.com", out->region);
        out->is_https = 1;
        out->path_style = strcmp(style, "path") == 0;
    }

    /* CA bundle */
    const char *ca = NULL;
    if (explicit_profile && p->ca_bundle.line)
        ca = p->ca_bundle.value;
    if (!ca && (ca = env("AWS_CA_BUNDLE")) != NULL)
        snprintf(out->ca_bundle_from, sizeof out->ca_bundle_from, "AWS_CA_BUNDLE");
    if (!ca && p->ca_bundle.line)
        ca = p->ca_bundle.value;
    if (ca && !out->ca_bundle_from[0] &&
        snprintf(out->ca_bundle_from, sizeof out->ca_bundle_from, "ca_bundle at %s:%d",
                 p->paths[p->ca_bundle.file], p->ca_bundle.line) >=
            (int)sizeof out->ca_bundle_from)
        snprintf(out->ca_bundle_from, sizeof out->ca_bundle_from, "ca_bundle of profile %.64s",
                 p->name);
    if (ca && !s3__copy_str(out->ca_bundle, sizeof out->ca_bundle, ca, strlen(ca))) {
        set_err(err, err_len, "ca_bundle path is longer than %zu bytes",
                sizeof out->ca_bundle - 1);
        return S3_E_CONFIG;
    }

    /* credentials: environment (unless a profile was named), credentials file, config */
    int found = 0;
    if (!explicit_profile) {
        rc = creds_from_env(&out->creds, &found, err, err_len);
        if (rc)
            return rc;
    }
    for (int f = F_CREDS; !found && f >= F_CONFIG; f--) {
        rc = creds_from_file(p, f, &out->creds, &found, err, err_len);
        if (rc)
            return rc;
    }
    if (!found) {
        if (p->unsupported.line) {
            set_err(err, err_len, "%s:%d: profile \"%s\" gets credentials with %s, which "
                    "batchrep does not support; give it aws_access_key_id and "
                    "aws_secret_access_key, or set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY", p->paths[p->unsupported.file],
                    p->unsupported.line, p->name, p->unsupported_key);
        } else {
            set_err(err, err_len, "no AWS credentials for profile \"%s\": %sno "
                    "aws_access_key_id in [%s] of %s nor in [%s%s] of %s", p->name,
                    explicit_profile ? "" : "AWS_ACCESS_KEY_ID is not set, ", p->name,
                    p->paths[F_CREDS], strcmp(p->name, "default") ? "profile " : "", p->name,
                    p->paths[F_CONFIG]);
        }
        return S3_E_NO_CREDENTIALS;
    }
    return S3_E_OK;
}

int s3_endpoint_load(s3_endpoint *out, const char *profile_name, char *err, size_t err_len)
{
    if (!out)
        return S3_E_ARG;
    if (err && err_len)
        err[0] = '\0';
    memset(out, 0, sizeof *out);
    profile *p = calloc(1, sizeof *p); /* ~45 KiB of settings: not on the caller's stack */
    if (!p) {
        set_err(err, err_len, "out of memory");
        return S3_E_NOMEM;
    }
    p->name = profile_name ? profile_name : env("AWS_PROFILE");
    if (!p->name)
        p->name = env("AWS_DEFAULT_PROFILE");
    if (!p->name)
        p->name = "default";
    default_path(p->paths[F_CONFIG], sizeof p->paths[F_CONFIG], "AWS_CONFIG_FILE", "config");
    default_path(p->paths[F_CREDS], sizeof p->paths[F_CREDS], "AWS_SHARED_CREDENTIALS_FILE",
                 "credentials");
    int rc = load(out, p, profile_name != NULL, err, err_len);
    free(p);
    if (rc) {
        s3_creds *c = &out->creds; /* leave no half-loaded secret behind */
        memset(c, 0, sizeof *c);
    }
    return rc;
}

/* ---- s3_endpoint_check_ca ------------------------------------------------------------ */

/* Loads the bundle as libcurl's OpenSSL backend will (X509_STORE_load_file: every PEM
   certificate and CRL of the file; a damaged block or none at all fails), so what passes
   here is what curl accepts. */
int s3_endpoint_check_ca(const s3_endpoint *ep, char *err, size_t err_len)
{
    if (err && err_len)
        err[0] = '\0';
    if (!ep || !ep->ca_bundle[0])
        return S3_E_OK;
    const char *path = ep->ca_bundle, *from = ep->ca_bundle_from[0] ? ep->ca_bundle_from
                                                                    : "ca_bundle";
    struct stat st;
    if (stat(path, &st) != 0) {
        set_err(err, err_len, "%s names the CA bundle %s, which cannot be read: %s", from,
                path, strerror(errno));
        return S3_E_CONFIG;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, err_len, "%s names the CA bundle %s, which is not a file (a PEM file of "
                "CA certificates is expected)", from, path);
        return S3_E_CONFIG;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, err_len, "%s names the CA bundle %s, which cannot be read: %s", from,
                path, strerror(errno));
        return S3_E_CONFIG;
    }
    fclose(f);
    X509_STORE *store = X509_STORE_new();
    if (!store) {
        set_err(err, err_len, "out of memory");
        return S3_E_NOMEM;
    }
    ERR_clear_error();
    int ok = X509_STORE_load_file(store, path) == 1;
    unsigned long e = ok ? 0 : ERR_peek_last_error();
    int n = 0;
    if (ok) {
        STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
        for (int i = 0; i < sk_X509_OBJECT_num(objs); i++)
            n += X509_OBJECT_get_type(sk_X509_OBJECT_value(objs, i)) == X509_LU_X509;
    }
    X509_STORE_free(store);
    ERR_clear_error();
    if (!ok || n == 0) {
        const char *why = e ? ERR_reason_error_string(e) : NULL;
        set_err(err, err_len, "%s names the CA bundle %s, which holds no usable PEM "
                "certificate (%s); it must hold the CA certificates the endpoint's "
                "certificate is checked against, as -----BEGIN CERTIFICATE----- blocks",
                from, path, why ? why : "no certificate found");
        return S3_E_CONFIG;
    }
    return S3_E_OK;
}
