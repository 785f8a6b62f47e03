/*
 * virt-vmx-import: reading a .vmx file, and the messages about it
 *
 * A .vmx file is lines of KEY = "VALUE": blanks around the '=' are
 * optional, '#' starts a comment line, and VMware writes a character
 * that cannot stand in a value (a quote, a '|', a control character) as
 * |XX, its code in hex.  Keys are case-insensitive; when one is set
 * twice, VMware takes the last.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmx-import.h"

#define VMX_LINE_MAX 4096

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size);
    if (!p) {
        abort();
    }
    return p;
}

char *vmx_strndup(const char *s, size_t n)
{
    char *d = strndup(s, n);

    if (!d) {
        abort();
    }
    return d;
}

static void add_message(Vmx *v, VmxLevel level, int line, char *text)
{
    v->msgs = xrealloc(v->msgs, (v->n_msgs + 1) * sizeof(*v->msgs));
    v->msgs[v->n_msgs++] = (VmxMessage) { level, line, text };
}

static void NPH_PRINTF_LIKE(3, 4) line_error(Vmx *v, int line,
                                             const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0) {
        abort();
    }
    va_end(ap);
    add_message(v, VMX_ERROR, line, text);
}

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || strchr("._:-[]", c);
}

/* The value between the quotes at S, |XX decoded; NULL if malformed */
static char *parse_value(const char *s, const char **end)
{
    size_t n = 0;
    char *out = xrealloc(NULL, strlen(s) + 1);
    unsigned x;

    for (; *s && *s != '"'; s++) {
        if (*s == '|' && isxdigit((unsigned char)s[1]) &&
            isxdigit((unsigned char)s[2]) &&
            sscanf(s + 1, "%2x", &x) == 1 && x) {
            out[n++] = x;
            s += 2;
        } else {
            out[n++] = *s;
        }
    }
    if (*s != '"') {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *end = s + 1;
    return out;
}

static void parse_line(Vmx *v, char *text, int line)
{
    const char *s = text, *key, *end;
    size_t keylen;
    char *value;
    VmxEntry *e;

    text[strcspn(text, "\r\n")] = '\0';
    for (s = text; *s; s++) {
        if (iscntrl((unsigned char)*s) && *s != '\t') {
            line_error(v, line, "a control character (0x%02x): not a text "
                       "line", (unsigned char)*s);
            return;
        }
    }
    s = text;
    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (!*s || *s == '#') {
        return;
    }
    key = s;
    while (key_char(*s)) {
        s++;
    }
    keylen = s - key;
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    if (!keylen || *s != '=') {
        line_error(v, line, "not a VMX line: expected KEY = \"VALUE\", "
                   "found '%.60s'", key);
        return;
    }
    for (s++; *s == ' ' || *s == '\t'; s++) {
        continue;
    }
    value = *s == '"' ? parse_value(s + 1, &end) : NULL;
    if (!value) {
        line_error(v, line, "%.*s: the value must be in double quotes, "
                   "found '%.60s'", (int)keylen, key, s);
        return;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    if (*end && *end != '#') {
        line_error(v, line, "%.*s: text after the closing quote: '%.60s'",
                   (int)keylen, key, end);
        free(value);
        return;
    }
    v->entries = xrealloc(v->entries,
                          (v->n_entries + 1) * sizeof(*v->entries));
    e = &v->entries[v->n_entries++];
    *e = (VmxEntry) { vmx_strndup(key, keylen), value, line, false };
}

Vmx *vmx_read(const char *path, char *why, size_t size)
{
    FILE *f = fopen(path, "r");
    char buf[VMX_LINE_MAX];
    Vmx *v;
    int line = 0;
    size_t n;

    if (!f) {
        snprintf(why, size, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    v = xrealloc(NULL, sizeof(*v));
    *v = (Vmx) { .file = vmx_strndup(path, strlen(path)) };
    while (fgets(buf, sizeof(buf), f)) {
        line++;
        n = strlen(buf);
        if (n == sizeof(buf) - 1 && buf[n - 1] != '\n' && !feof(f)) {
            line_error(v, line, "line longer than %d characters",
                       VMX_LINE_MAX - 2);
            while (fgets(buf, sizeof(buf), f) && !strchr(buf, '\n')) {
                continue;
            }
            continue;
        }
        /* a UTF-8 byte order mark */
        parse_line(v, line == 1 && !strncmp(buf, "\xef\xbb\xbf", 3) ?
                   buf + 3 : buf, line);
    }
    if (ferror(f)) {
        snprintf(why, size, "cannot read %s: %s", path, strerror(errno));
        fclose(f);
        vmx_free(v);
        return NULL;
    }
    fclose(f);
    return v;
}

void vmx_free(Vmx *v)
{
    int i;

    if (!v) {
        return;
    }
    for (i = 0; i < v->n_entries; i++) {
        free(v->entries[i].key);
        free(v->entries[i].value);
    }
    for (i = 0; i < v->n_msgs; i++) {
        free(v->msgs[i].text);
    }
    free(v->entries);
    free(v->msgs);
    free(v->file);
    free(v);
}

VmxEntry *vmx_lookup(Vmx *v, bool take, const char *fmt, ...)
{
    char key[256];
    VmxEntry *found = NULL;
    va_list ap;
    int i;

    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    for (i = 0; i < v->n_entries; i++) {
        if (!strcasecmp(v->entries[i].key, key)) {
            found = &v->entries[i];
            /* an earlier one is overridden, and so dealt with */
            found->used |= take;
        }
    }
    return found;
}

bool vmx_true(const VmxEntry *e)
{
    return e && (!strcasecmp(e->value, "true") ||
                 !strcasecmp(e->value, "yes") || !strcmp(e->value, "1"));
}

void vmx_say(Vmx *v, VmxLevel level, const VmxEntry *e, const char *fmt, ...)
{
    va_list ap;
    char *what, *text;

    va_start(ap, fmt);
    if (vasprintf(&what, fmt, ap) < 0) {
        abort();
    }
    va_end(ap);
    if (!e) {
        add_message(v, level, 0, what);
        return;
    }
    if (asprintf(&text, "%s = \"%s\": %s", e->key, e->value, what) < 0) {
        abort();
    }
    free(what);
    add_message(v, level, e->line, text);
}

int vmx_count(const Vmx *v, VmxLevel level)
{
    int i, n = 0;

    for (i = 0; i < v->n_msgs; i++) {
        n += v->msgs[i].level == level;
    }
    return n;
}

void vmx_print(const Vmx *v, VmxLevel upto, const char *prog, FILE *f)
{
    static const char *const names[] = {
        [VMX_ERROR] = "error",
        [VMX_REFUSED] = "refused",
        [VMX_WARNING] = "warning",
        [VMX_DROPPED] = "not carried over",
        [VMX_NOTE] = "note",
    };
    VmxLevel level;
    int i, line, next;

    for (level = VMX_ERROR; level <= upto; level++) {
        /* by line, the file-wide ones (line 0) first; stable */
        for (line = 0; line >= 0; line = next) {
            next = -1;
            for (i = 0; i < v->n_msgs; i++) {
                const VmxMessage *m = &v->msgs[i];

                if (m->level != level) {
                    continue;
                }
                if (m->line == line) {
                    if (line) {
                        fprintf(f, "%s: %s: %s:%d: %s\n", prog, names[level],
                                v->file, line, m->text);
                    } else {
                        fprintf(f, "%s: %s: %s: %s\n", prog, names[level],
                                v->file, m->text);
                    }
                } else if (m->line > line && (next < 0 || m->line < next)) {
                    next = m->line;
                }
            }
        }
    }
}
