/*
 * watch: the "insert a new NVMe and hot-add it into a running VM" flow.
 *
 * Listens to the kernel's uevents on a NETLINK_KOBJECT_UEVENT socket
 * (no polling): when a PCI device of class 0x010802 is added, matches
 * it against the policy's allow-list, takes it for passthrough
 * (nph_enable: refused when the host uses it), picks a free
 * pcie-hotplug-passthru port from query-passthru-hotplug on the VM's
 * QMP socket, asks QEMU whether it would admit the device there
 * (query-passthru-hotplug-admission: the reasons printed when not),
 * device_add's vfio-pci there, and waits for the
 * PASSTHRU_HOTPLUG add event that ends the operation.  Each step is
 * printed with its time.  A device that the policy does not allow, or
 * that the host uses, is left alone and the reason printed.
 *
 * The policy file (one directive a line, # comments):
 *
 *   vm NAME           the VM, for the log
 *   qmp PATH          its QMP socket (a unix socket QEMU serves)
 *   timeout SECONDS   wait at most this long for the guest (default 60)
 *   allow KEY=VALUE...  a drive to take; every KEY of one line must
 *                     match, any line may.  KEYs: slot (the physical
 *                     slot's name), id (vendor:device, hex), model,
 *                     serial.  VALUEs may be "quoted" and hold shell
 *                     wildcards (fnmatch).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/netlink.h>

#include <json-c/json.h>

#include "nvme-host.h"
#include "watch.h"

#define MAX_RULES   64
#define MAX_KEYS    4

typedef struct Rule {
    int n;
    char key[MAX_KEYS][16];
    char val[MAX_KEYS][128];
} Rule;

typedef struct Policy {
    char vm[128];
    char qmp[PATH_MAX];
    double timeout_s;
    int n;
    Rule rules[MAX_RULES];
} Policy;

static struct {
    bool json;
    double t0;
    double bind_timeout_s;
    int failures;
} w;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One step: "HH:MM:SS.mmm +S.SSSs BDF STEP: message", or JSON */
static void NPH_PRINTF_LIKE(3, 4) step(const char *bdf, const char *what,
                                   const char *fmt, ...)
{
    char msg[2048], clock[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
    if (w.json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "time",
                               json_object_new_double(ts.tv_sec +
                                                      ts.tv_nsec / 1e9));
        json_object_object_add(o, "elapsed-s",
                               json_object_new_double(now_s() - w.t0));
        json_object_object_add(o, "device", json_object_new_string(bdf));
        json_object_object_add(o, "step", json_object_new_string(what));
        json_object_object_add(o, "message", json_object_new_string(msg));
        printf("%s\n", json_object_to_json_string_ext(
                   o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    } else {
        printf("%s.%03ld +%.3fs %s %s: %s\n", clock, ts.tv_nsec / 1000000,
               now_s() - w.t0, bdf, what, msg);
    }
    fflush(stdout);
}

/* ---------------------------------------------------------------- */
/* The policy */

/* The next word of *P, "quoted" or bare, into BUF */
static bool next_word(char **p, char *buf, size_t size)
{
    char *s = *p + strspn(*p, " \t"), *end;
    size_t n;

    if (!*s || *s == '#' || *s == '\n') {
        return false;
    }
    if (*s == '"') {
        end = strchr(s + 1, '"');
        if (!end) {
            return false;
        }
        n = end - s - 1;
        snprintf(buf, size, "%.*s", (int)n, s + 1);
        *p = end + 1;
        return true;
    }
    n = strcspn(s, " \t\n#");
    snprintf(buf, size, "%.*s", (int)n, s);
    *p = s + n;
    return true;
}

/* KEY=VALUE, the value maybe "quoted" */
static bool next_pair(char **p, Rule *r, char *err, size_t errsize)
{
    char *s = *p + strspn(*p, " \t"), *eq;
    char key[32];

    if (!*s || *s == '#' || *s == '\n') {
        return false;
    }
    eq = strchr(s, '=');
    if (!eq || eq - s >= (long)sizeof(key) || r->n == MAX_KEYS) {
        snprintf(err, errsize, "want KEY=VALUE, at most %d, not '%s'",
                 MAX_KEYS, s);
        return false;
    }
    snprintf(key, sizeof(key), "%.*s", (int)(eq - s), s);
    if (strcmp(key, "slot") && strcmp(key, "id") && strcmp(key, "model") &&
        strcmp(key, "serial")) {
        snprintf(err, errsize, "unknown key '%s' (slot, id, model, serial)",
                 key);
        return false;
    }
    *p = eq + 1;
    if (**p == ' ' || !next_word(p, r->val[r->n], sizeof(r->val[0]))) {
        snprintf(err, errsize, "no value for '%s'", key);
        return false;
    }
    snprintf(r->key[r->n++], sizeof(r->key[0]), "%s", key);
    return true;
}

static bool policy_load(const char *path, Policy *pol, char *err,
                        size_t errsize)
{
    char line[1024], word[PATH_MAX], perr[256];
    FILE *f = fopen(path, "r");
    int lineno = 0;

    memset(pol, 0, sizeof(*pol));
    pol->timeout_s = 60;
    if (!f) {
        snprintf(err, errsize, "cannot read the policy %s: %s", path,
                 strerror(errno));
        return false;
    }
    while (fgets(line, sizeof(line), f)) {
        char *p = line;

        lineno++;
        perr[0] = '\0';
        if (!next_word(&p, word, sizeof(word))) {
            continue;
        }
        if (!strcmp(word, "vm") &&
            next_word(&p, pol->vm, sizeof(pol->vm))) {
            continue;
        }
        if (!strcmp(word, "qmp") &&
            next_word(&p, pol->qmp, sizeof(pol->qmp))) {
            continue;
        }
        if (!strcmp(word, "timeout") && next_word(&p, word, sizeof(word))) {
            char *end;

            pol->timeout_s = strtod(word, &end);
            if (!*end && pol->timeout_s > 0) {
                continue;
            }
        }
        if (!strcmp(word, "allow") && pol->n < MAX_RULES) {
            Rule *r = &pol->rules[pol->n];

            while (next_pair(&p, r, perr, sizeof(perr))) {
                /* the pairs of the line */
            }
            if (!perr[0] && r->n) {
                pol->n++;
                continue;
            }
        }
        snprintf(err, errsize, "%s:%d: %s", path, lineno,
                 perr[0] ? perr : "not a directive (vm NAME, qmp PATH, "
                 "timeout SECONDS, allow KEY=VALUE...)");
        fclose(f);
        return false;
    }
    fclose(f);
    if (!pol->qmp[0] || !pol->n) {
        snprintf(err, errsize, "%s: needs a 'qmp PATH' line and at least "
                 "one 'allow' line", path);
        return false;
    }
    if (!pol->vm[0]) {
        snprintf(pol->vm, sizeof(pol->vm), "%s", pol->qmp);
    }
    return true;
}

static bool rule_matches(const Rule *r, const NphDevice *d)
{
    char id[16];
    int i;

    snprintf(id, sizeof(id), "%04x:%04x", d->vendor, d->device);
    for (i = 0; i < r->n; i++) {
        const char *have = !strcmp(r->key[i], "slot") ? d->slot :
            !strcmp(r->key[i], "id") ? id :
            !strcmp(r->key[i], "model") ? d->model : d->serial;

        if (!have[0] || fnmatch(r->val[i], have, FNM_CASEFOLD)) {
            return false;
        }
    }
    return true;
}

static bool needs_identity(const Policy *pol)
{
    int i, j;

    for (i = 0; i < pol->n; i++) {
        for (j = 0; j < pol->rules[i].n; j++) {
            if (!strcmp(pol->rules[i].key[j], "model") ||
                !strcmp(pol->rules[i].key[j], "serial")) {
                return true;
            }
        }
    }
    return false;
}

/* ---------------------------------------------------------------- */
/* QMP */

typedef struct Qmp {
    int fd;
    char buf[65536];
    size_t len;
    json_object *events;        /* events read while waiting for a reply */
    char err_class[64];         /* the class of the last error reply */
} Qmp;

/* The next JSON line from QEMU, or NULL at the deadline / on error */
static json_object *qmp_read(Qmp *q, double deadline, char *err,
                             size_t errsize)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
        double left;
        ssize_t n;

        if (nl) {
            json_object *o;

            *nl = '\0';
            o = json_tokener_parse(q->buf);
            q->len -= nl + 1 - q->buf;
            memmove(q->buf, nl + 1, q->len);
            if (o) {
                return o;
            }
            continue;
        }
        left = deadline - now_s();
        if (left <= 0) {
            snprintf(err, errsize, "no answer from QEMU in time");
            return NULL;
        }
        if (poll(&pfd, 1, left * 1000 + 1) < 0 && errno != EINTR) {
            snprintf(err, errsize, "poll: %s", strerror(errno));
            return NULL;
        }
        if (!(pfd.revents & (POLLIN | POLLHUP))) {
            continue;
        }
        if (q->len == sizeof(q->buf)) {
            snprintf(err, errsize, "a line from QEMU is too long");
            return NULL;
        }
        n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
        if (n <= 0) {
            snprintf(err, errsize, "QEMU closed the QMP connection");
            return NULL;
        }
        q->len += n;
    }
}

static const char *jget_str(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) &&
        json_object_is_type(v, json_type_string) ?
        json_object_get_string(v) : NULL;
}

/* Run NAME (ARGS taken); its "return", or NULL with ERR */
static json_object *qmp_cmd(Qmp *q, const char *name, json_object *args,
                            char *err, size_t errsize)
{
    json_object *cmd = json_object_new_object(), *r, *v;
    const char *text;
    double deadline = now_s() + 10;

    json_object_object_add(cmd, "execute", json_object_new_string(name));
    if (args) {
        json_object_object_add(cmd, "arguments", args);
    }
    text = json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN);
    if (write(q->fd, text, strlen(text)) < 0 || write(q->fd, "\n", 1) < 0) {
        snprintf(err, errsize, "writing to QMP: %s", strerror(errno));
        json_object_put(cmd);
        return NULL;
    }
    json_object_put(cmd);
    while ((r = qmp_read(q, deadline, err, errsize))) {
        if (json_object_object_get_ex(r, "return", &v)) {
            json_object_get(v);
            json_object_put(r);
            return v;
        }
        if (json_object_object_get_ex(r, "error", &v)) {
            snprintf(err, errsize, "%s: %s", name,
                     jget_str(v, "desc") ?: "error");
            snprintf(q->err_class, sizeof(q->err_class), "%s",
                     jget_str(v, "class") ?: "");
            json_object_put(r);
            return NULL;
        }
        if (jget_str(r, "event")) {
            json_object_array_add(q->events, r);
        } else {
            json_object_put(r);
        }
    }
    return NULL;
}

static bool qmp_open(Qmp *q, const char *path, char *err, size_t errsize)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    json_object *greeting, *r;

    memset(q, 0, sizeof(*q));
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (q->fd < 0) {
        snprintf(err, errsize, "socket: %s", strerror(errno));
        return false;
    }
    q->events = json_object_new_array();
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(err, errsize, "cannot connect to QMP %s: %s", path,
                 strerror(errno));
        return false;
    }
    greeting = qmp_read(q, now_s() + 10, err, errsize);
    if (!greeting) {
        return false;
    }
    json_object_put(greeting);
    r = qmp_cmd(q, "qmp_capabilities", NULL, err, errsize);
    json_object_put(r);
    return r != NULL;
}

static void qmp_close(Qmp *q)
{
    if (q->fd >= 0) {
        close(q->fd);
    }
    json_object_put(q->events);
}

/* The first empty pcie-hotplug-passthru port, into PORT */
static bool free_port(Qmp *q, char *port, size_t size, char *err,
                      size_t errsize)
{
    json_object *info = qmp_cmd(q, "query-passthru-hotplug", NULL, err,
                                errsize);
    json_object *ports;
    size_t i, n;
    bool found = false;

    if (!info) {
        return false;
    }
    if (json_object_object_get_ex(info, "ports", &ports)) {
        n = json_object_array_length(ports);
        for (i = 0; i < n && !found; i++) {
            json_object *p = json_object_array_get_idx(ports, i);
            const char *state = jget_str(p, "state");

            if (state && !strcmp(state, "empty") && jget_str(p, "id")) {
                snprintf(port, size, "%s", jget_str(p, "id"));
                found = true;
            }
        }
    }
    if (!found) {
        snprintf(err, errsize, "no free pcie-hotplug-passthru port in the "
                 "VM (query-passthru-hotplug)");
    }
    json_object_put(info);
    return found;
}

/*
 * Ask QEMU whether device_add ARGS would be admitted, without doing it
 * (query-passthru-hotplug-admission).  True when it would, or when
 * QEMU predates the query (device_add then says); false with every
 * reason QEMU gives, "code: message; ...", in WHY.
 */
static bool admitted(Qmp *q, json_object *args, char *why, size_t size)
{
    json_object *a = json_object_new_object(), *ret, *list;
    size_t i, n, len = 0;
    bool ok;

    json_object_object_add(a, "device", json_object_get(args));
    ret = qmp_cmd(q, "query-passthru-hotplug-admission", a, why, size);
    if (!ret) {
        return !strcmp(q->err_class, "CommandNotFound");
    }
    ok = json_object_object_get_ex(ret, "admissible", &list) &&
         json_object_get_boolean(list);
    why[0] = 0;
    if (!ok && json_object_object_get_ex(ret, "refusals", &list)) {
        n = json_object_array_length(list);
        for (i = 0; i < n && len < size; i++) {
            json_object *r = json_object_array_get_idx(list, i);

            len += snprintf(why + len, size - len, "%s%s: %s",
                            i ? "; " : "", jget_str(r, "code") ?: "?",
                            jget_str(r, "message") ?: "");
        }
    }
    json_object_put(ret);
    return ok;
}

/*
 * Wait for the end of the add of device ID: PASSTHRU_HOTPLUG add
 * completed (true) or failed, or DEVICE_DELETED; MSG says how it ended.
 */
static bool wait_added(Qmp *q, const char *id, double timeout_s, char *msg,
                       size_t size)
{
    double deadline = now_s() + timeout_s;
    json_object *ev;
    size_t i = 0;

    for (;;) {
        json_object *data;
        const char *name, *phase;

        if (i < json_object_array_length(q->events)) {
            ev = json_object_get(json_object_array_get_idx(q->events, i++));
        } else {
            ev = qmp_read(q, deadline, msg, size);
            if (!ev) {
                return false;
            }
        }
        name = jget_str(ev, "event");
        if (!name || !json_object_object_get_ex(ev, "data", &data) ||
            (jget_str(data, "device") &&
             strcmp(jget_str(data, "device"), id))) {
            json_object_put(ev);
            continue;
        }
        phase = jget_str(data, "phase");
        if (!strcmp(name, "DEVICE_DELETED")) {
            snprintf(msg, size, "QEMU deleted the device before the add "
                     "completed");
            json_object_put(ev);
            return false;
        }
        if (!strcmp(name, "PASSTHRU_HOTPLUG") && phase &&
            strcmp(phase, "started") && jget_str(data, "operation") &&
            !strcmp(jget_str(data, "operation"), "add")) {
            json_object *v;
            bool ok = !strcmp(phase, "completed");

            json_object_object_get_ex(data, "duration-ms", &v);
            snprintf(msg, size, "add %s on port %s (QEMU: %d ms)%s%s", phase,
                     jget_str(data, "port") ?: "?", json_object_get_int(v),
                     jget_str(data, "reason") ? ": " : "",
                     jget_str(data, "reason") ?: "");
            json_object_put(ev);
            return ok;
        }
        json_object_put(ev);
    }
}

/* ---------------------------------------------------------------- */

/*
 * The nvme driver fills model and serial after its probe: wait a bit.
 * False if the device went away meanwhile.  (nph_device_read clears *D
 * first: the address it reads must not be D's own.)
 */
static bool wait_identity(NphDevice *d, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    struct timespec ts = { 0, 50 * 1000000L };
    char bdf[NPH_BDF_LEN];

    snprintf(bdf, sizeof(bdf), "%s", d->bdf);
    while ((!d->model[0] || !d->serial[0]) && now_s() < deadline &&
           (!d->driver[0] || !strcmp(d->driver, "nvme"))) {
        nanosleep(&ts, NULL);
        if (!nph_device_read(bdf, d)) {
            return false;
        }
    }
    return true;
}

static void handle_nvme(const Policy *pol, const char *bdf)
{
    NphBindOpts o = { .timeout_s = w.bind_timeout_s, .self = "" };
    NphDevice d;
    NphResult r;
    char msg[4096], port[128], id[64], err[1024];
    json_object *args, *ret;
    Qmp q;
    int i;
    double t;

    if (!nph_device_read(bdf, &d)) {
        step(bdf, "gone", "gone before it could be looked at");
        return;
    }
    if (d.class_code != NPH_NVME_CLASS) {
        step(bdf, "ignored", "not an NVMe controller (class 0x%06x): left "
             "alone", d.class_code);
        return;
    }
    if (needs_identity(pol) && !wait_identity(&d, 10)) {
        step(bdf, "gone", "gone while waiting for its model and serial");
        return;
    }
    step(bdf, "inserted", "NVMe %04x:%04x, slot %s, model %s, serial %s",
         d.vendor, d.device, d.slot[0] ? d.slot : "-",
         d.model[0] ? d.model : "?", d.serial[0] ? d.serial : "?");
    for (i = 0; i < pol->n && !rule_matches(&pol->rules[i], &d); i++) {
        /* the first allow line that matches */
    }
    if (i == pol->n) {
        step(bdf, "not-allowed", "no allow line of the policy matches: "
             "left alone");
        return;
    }
    t = now_s();
    r = nph_enable(bdf, &o, msg, sizeof(msg));
    if (r != NPH_DONE) {
        step(bdf, r == NPH_REFUSED ? "refused" : "failed", "%s%s",
             r == NPH_REFUSED ? "left alone: " : "passthrough failed: ", msg);
        w.failures += r != NPH_REFUSED;
        return;
    }
    step(bdf, "enabled", "%s (%.0f ms)", msg, (now_s() - t) * 1000);
    /* Already on vfio-pci and some VM has it (another watch took it) */
    if (nph_device_read(bdf, &d) &&
        nph_group_user(d.iommu_group, err, sizeof(err))) {
        step(bdf, "refused", "left alone: /dev/vfio/%d is open in %s "
             "(another VM has it)", d.iommu_group, err);
        return;
    }
    if (!qmp_open(&q, pol->qmp, err, sizeof(err)) ||
        !free_port(&q, port, sizeof(port), err, sizeof(err))) {
        step(bdf, "failed", "VM %s: %s; the device stays on vfio-pci",
             pol->vm, err);
        qmp_close(&q);
        w.failures++;
        return;
    }
    snprintf(id, sizeof(id), "hostnvme-%s", bdf);
    for (i = 0; id[i]; i++) {
        id[i] = isalnum((unsigned char)id[i]) ? id[i] : '-';
    }
    step(bdf, "port", "VM %s: free port %s, device_add vfio-pci id %s",
         pol->vm, port, id);
    args = json_object_new_object();
    json_object_object_add(args, "driver", json_object_new_string("vfio-pci"));
    json_object_object_add(args, "id", json_object_new_string(id));
    json_object_object_add(args, "bus", json_object_new_string(port));
    json_object_object_add(args, "host", json_object_new_string(bdf));
    if (!admitted(&q, args, msg, sizeof(msg))) {
        step(bdf, "not-admitted", "VM %s: QEMU would refuse device_add on "
             "port %s: %s; the device stays on vfio-pci", pol->vm, port,
             msg);
        json_object_put(args);
        qmp_close(&q);
        w.failures++;
        return;
    }
    t = now_s();
    ret = qmp_cmd(&q, "device_add", args, err, sizeof(err));
    if (!ret) {
        step(bdf, "failed", "VM %s: %s; the device stays on vfio-pci",
             pol->vm, err);
        qmp_close(&q);
        w.failures++;
        return;
    }
    json_object_put(ret);
    if (wait_added(&q, id, pol->timeout_s, msg, sizeof(msg))) {
        step(bdf, "added", "VM %s: %s, %.0f ms after device_add", pol->vm,
             msg, (now_s() - t) * 1000);
    } else {
        step(bdf, "failed", "VM %s: %s", pol->vm, msg);
        w.failures++;
    }
    qmp_close(&q);
}

/* One uevent: KEY=VALUE strings; act on a PCI device that was added */
static void handle_uevent(const Policy *pol, char **kv, int n)
{
    const char *action = NULL, *subsystem = NULL, *slot = NULL;
    char bdf[NPH_BDF_LEN];
    int i;

    for (i = 0; i < n; i++) {
        if (!strncmp(kv[i], "ACTION=", 7)) {
            action = kv[i] + 7;
        } else if (!strncmp(kv[i], "SUBSYSTEM=", 10)) {
            subsystem = kv[i] + 10;
        } else if (!strncmp(kv[i], "PCI_SLOT_NAME=", 14)) {
            slot = kv[i] + 14;
        }
    }
    if (!action || !subsystem || !slot || strcmp(action, "add") ||
        strcmp(subsystem, "pci") || !nph_parse_bdf(slot, bdf, sizeof(bdf))) {
        return;
    }
    handle_nvme(pol, bdf);
}

/* Uevents from a file or fifo: KEY=VALUE lines, a blank line after each */
static int watch_file(const Policy *pol, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096], *kv[64];
    int n = 0, i;

    if (!f) {
        fprintf(stderr, "nvme-passthru-host: watch: cannot read %s: %s\n",
                path, strerror(errno));
        return NPH_REFUSED;
    }
    for (;;) {
        bool eof = !fgets(line, sizeof(line), f);

        if (!eof && line[0] != '\n' && line[0] != '#') {
            line[strcspn(line, "\n")] = '\0';
            if (n < 64) {
                kv[n++] = strdup(line);
            }
            continue;
        }
        if (!eof && line[0] == '#') {
            continue;
        }
        if (n) {
            handle_uevent(pol, kv, n);
        }
        for (i = 0; i < n; i++) {
            free(kv[i]);
        }
        n = 0;
        if (eof) {
            break;
        }
    }
    fclose(f);
    return w.failures ? NPH_FAILED : NPH_DONE;
}

/* The kernel's uevent socket, bound before "watching" is printed */
static int uevent_socket(void)
{
    struct sockaddr_nl sa = {
        .nl_family = AF_NETLINK,
        .nl_groups = 1,         /* the kernel's uevents, not udev's */
    };
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
                    NETLINK_KOBJECT_UEVENT);
    int rcvbuf = 1 << 20;

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "nvme-passthru-host: watch: the uevent socket: %s\n",
                strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    return fd;
}

static int watch_netlink(const Policy *pol, int fd)
{
    static char buf[16384];

    for (;;) {
        struct sockaddr_nl from;
        struct iovec iov = { buf, sizeof(buf) - 1 };
        struct msghdr mh = {
            .msg_name = &from, .msg_namelen = sizeof(from),
            .msg_iov = &iov, .msg_iovlen = 1,
        };
        char *kv[128];
        ssize_t len = recvmsg(fd, &mh, 0);
        size_t off;
        int n = 0;

        if (len < 0) {
            if (errno == EINTR || errno == ENOBUFS) {
                continue;       /* ENOBUFS: events lost under a storm */
            }
            fprintf(stderr, "nvme-passthru-host: watch: %s\n",
                    strerror(errno));
            return NPH_FAILED;
        }
        if (from.nl_pid != 0) {
            continue;           /* only the kernel's messages */
        }
        buf[len] = '\0';
        /* "ACTION@DEVPATH\0KEY=VALUE\0..." */
        for (off = strlen(buf) + 1; off < (size_t)len && n < 128;
             off += strlen(buf + off) + 1) {
            kv[n++] = buf + off;
        }
        handle_uevent(pol, kv, n);
    }
}

int nph_watch(const char *policy, const char *uevents, bool json,
              double timeout_s)
{
    Policy pol;
    char err[PATH_MAX + 256];
    int fd = -1;

    w.json = json;
    w.t0 = now_s();
    w.bind_timeout_s = timeout_s;
    if (!policy_load(policy, &pol, err, sizeof(err))) {
        fprintf(stderr, "nvme-passthru-host: watch: %s\n", err);
        return NPH_REFUSED;
    }
    if (!uevents) {
        fd = uevent_socket();
        if (fd < 0) {
            return NPH_FAILED;
        }
    }
    step("-", "watching", "VM %s (QMP %s), %d allow line%s; uevents from "
         "%s", pol.vm, pol.qmp, pol.n, pol.n > 1 ? "s" : "",
         uevents ? uevents : "the kernel");
    return uevents ? watch_file(&pol, uevents) : watch_netlink(&pol, fd);
}
