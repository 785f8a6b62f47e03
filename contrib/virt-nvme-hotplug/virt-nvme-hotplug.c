/*
 * virt-nvme-hotplug: NVMe passthrough hotplug of a libvirt domain
 *
 * Drives the fork's pcie-hotplug-passthru ports of a running libvirt
 * domain and waits for the PASSTHRU_HOTPLUG events that end each
 * operation (libvirt's QEMU event API, which does not taint the domain).
 *
 * A host NVMe (kernel VFIO, --host/--sysfsdev) is added as libvirt's own
 * <hostdev managed='yes'> on the port's bus: libvirt prepares the host
 * (detach from the nvme driver, IOMMU group, device node, cgroup, memory
 * lock), knows the device (dumpxml, detach-device) and gives it back to
 * the host after the removal.  Before that, the tool refuses what the
 * host module (contrib/nvme-passthru-host/, nvme-host.h) refuses, with
 * its words: no such device, not an NVMe controller, no IOMMU group or
 * one shared with another device, and above all an NVMe the host still
 * uses (mounted, swap, held, open), which libvirt would take away
 * without asking.  Its removal is libvirt's virDomainDetachDeviceAlias.
 *
 * What libvirt cannot express goes through its QEMU monitor passthrough
 * (the domain is then tainted "custom-monitor", and libvirt does not know
 * the device): vfio-user NVMe devices (--socket), surprise-remove (the
 * port's removal property for one device_del) and status
 * (query-passthru-hotplug).
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include "domain-xml.h"
#include "nvme-host.h"

#define EXIT_FAILED     1       /* the operation ran and failed */
#define EXIT_REFUSED    2       /* bad arguments, or refused before libvirt */

static const char *progname = "virt-nvme-hotplug";

static struct {
    const char *uri;
    bool json;
    int timeout_s;
    const char *socket;
    const char *host;
    const char *sysfsdev;
    bool no_admission;
} opt = {
    .timeout_s = 60,
};

static char errbuf[1024];       /* why the last step failed */

#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))

static void PRINTF_LIKE(1, 2) set_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
    va_end(ap);
}

static const char *libvirt_error(void)
{
    const char *msg = virGetLastErrorMessage();

    return msg ? msg : "unknown libvirt error";
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ */
/* Events */

typedef struct Waiter {
    const char *device;
    bool is_add;                /* else a removal (orderly or surprise) */
    bool watch;                 /* print every event (watch) */
    bool libvirt_device;        /* a <hostdev>: libvirt removes it too */
    bool got_deleted;
    bool got_removed;           /* libvirt's device-removed */
    double t_hotplug;
    double t_deleted;
    double t_removed;
    json_object *hotplug;       /* data of the event that ended the step */
    bool timed_out;
    const char *gone;           /* why nothing more can come */
} Waiter;

static bool str_eq(json_object *o, const char *key, const char *want)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) &&
        json_object_is_type(v, json_type_string) &&
        !strcmp(json_object_get_string(v), want);
}

static const char *str_of(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    return json_object_get_string(v);
}

static void print_watched(const char *event, long long seconds,
                          unsigned int micros, json_object *data)
{
    if (opt.json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "event", json_object_new_string(event));
        json_object_object_add(o, "timestamp",
                               json_object_new_double(seconds +
                                                      micros / 1e6));
        json_object_object_add(o, "data", json_object_get(data));
        printf("%s\n", json_object_to_json_string_ext(
                   o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    } else {
        printf("%lld.%06u %s %s\n", seconds, micros, event,
               json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN));
    }
    fflush(stdout);
}

static void on_event(virConnectPtr conn, virDomainPtr dom, const char *event,
                     long long seconds, unsigned int micros,
                     const char *details, void *opaque)
{
    Waiter *w = opaque;
    json_object *data = details ? json_tokener_parse(details) : NULL;
    bool hotplug = !strcmp(event, "PASSTHRU_HOTPLUG");
    bool deleted = !strcmp(event, "DEVICE_DELETED");

    if (!data || (!hotplug && !deleted)) {
        goto out;
    }
    if (w->watch) {
        print_watched(event, seconds, micros, data);
        goto out;
    }
    if (!w->device || !str_eq(data, "device", w->device)) {
        goto out;
    }
    if (deleted && !w->got_deleted) {
        w->got_deleted = true;
        w->t_deleted = now_ms();
    }
    /*
     * The event that ends the step.  A removal that fails (guest timeout,
     * host gone) continues as a surprise removal: its end replaces it.
     */
    if (hotplug && !str_eq(data, "phase", "started") &&
        str_eq(data, "operation", "add") == w->is_add &&
        (!w->hotplug ||
         (!w->is_add && str_eq(w->hotplug, "phase", "failed")))) {
        json_object_put(w->hotplug);
        w->t_hotplug = now_ms();
        w->hotplug = json_object_get(data);
    }
out:
    json_object_put(data);
}

/* libvirt dropped the device from the domain (and gave it to the host) */
static void on_device_removed(virConnectPtr conn, virDomainPtr dom,
                              const char *alias, void *opaque)
{
    Waiter *w = opaque;

    if (w->watch) {
        /* libvirt's event, in the form of QEMU's for one output */
        json_object *data = json_object_new_object();
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        json_object_object_add(data, "device", json_object_new_string(alias));
        print_watched("device-removed", ts.tv_sec, ts.tv_nsec / 1000, data);
        json_object_put(data);
        return;
    }
    if (w->device && !strcmp(alias, w->device) && !w->got_removed) {
        w->got_removed = true;
        w->t_removed = now_ms();
    }
}

static void on_timeout(int timer, void *opaque)
{
    Waiter *w = opaque;

    w->timed_out = true;
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event,
                        int detail, void *opaque)
{
    Waiter *w = opaque;

    if (event == VIR_DOMAIN_EVENT_STOPPED) {
        w->gone = "the domain stopped";
    }
    return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
    Waiter *w = opaque;

    w->gone = "the connection to libvirt closed";
}

static bool waiter_done(Waiter *w)
{
    if (w->watch) {
        return false;
    }
    if (w->is_add) {
        /* Completed, or gone (a failed add always ends with deletion) */
        return str_eq(w->hotplug, "phase", "completed") || w->got_deleted;
    }
    /*
     * A removal ends once QEMU deleted the device, and, for a <hostdev>,
     * once libvirt has let it go
     */
    return w->hotplug && w->got_deleted &&
        (!w->libvirt_device || w->got_removed);
}

/* Run libvirt's event loop until W is done or the timeout */
static void wait_events(Waiter *w, int timeout_s)
{
    int timer = timeout_s > 0 ?
        virEventAddTimeout(timeout_s * 1000, on_timeout, w, NULL) : -1;

    while (!waiter_done(w) && !w->timed_out && !w->gone) {
        if (virEventRunDefaultImpl() < 0) {
            break;
        }
    }
    if (timer >= 0) {
        virEventRemoveTimeout(timer);
    }
}

/* ------------------------------------------------------------------ */
/* QEMU monitor */

/*
 * Run one QMP command; return its "return" (new reference) or NULL with
 * errbuf set to QEMU's error, or libvirt's.
 */
static json_object *qmp(virDomainPtr dom, const char *name, json_object *args)
{
    json_object *cmd = json_object_new_object();
    json_object *reply, *ret, *err;
    char *out = NULL;
    int rc;

    json_object_object_add(cmd, "execute", json_object_new_string(name));
    if (args) {
        json_object_object_add(cmd, "arguments", args);
    }
    rc = virDomainQemuMonitorCommand(dom, json_object_to_json_string_ext(
                                         cmd, JSON_C_TO_STRING_PLAIN),
                                     &out, 0);
    json_object_put(cmd);
    if (rc < 0) {
        set_error("%s", libvirt_error());
        return NULL;
    }
    reply = json_tokener_parse(out);
    free(out);
    if (!reply) {
        set_error("QEMU's reply to %s is not JSON", name);
        return NULL;
    }
    if (json_object_object_get_ex(reply, "error", &err)) {
        const char *desc = str_of(err, "desc");

        set_error("%s", desc ? desc : "QEMU returned an error");
        json_object_put(reply);
        return NULL;
    }
    if (!json_object_object_get_ex(reply, "return", &ret)) {
        set_error("QEMU's reply to %s has no result", name);
        json_object_put(reply);
        return NULL;
    }
    json_object_get(ret);
    json_object_put(reply);
    return ret;
}

/* The port entry of query-passthru-hotplug whose KEY is VALUE */
static json_object *find_port(json_object *info, const char *key,
                              const char *value)
{
    json_object *ports;
    size_t i;

    if (!json_object_object_get_ex(info, "ports", &ports)) {
        return NULL;
    }
    for (i = 0; i < json_object_array_length(ports); i++) {
        json_object *p = json_object_array_get_idx(ports, i);

        if (str_eq(p, key, value)) {
            return p;
        }
    }
    return NULL;
}

static json_object *query(virDomainPtr dom)
{
    json_object *info = qmp(dom, "query-passthru-hotplug", NULL);

    if (!info && strstr(errbuf, "query-passthru-hotplug")) {
        char qemu_err[sizeof(errbuf)];

        snprintf(qemu_err, sizeof(qemu_err), "%s", errbuf);
        set_error("the domain's emulator is not the NVMe passthrough "
                  "hotplug fork (%s)", qemu_err);
    }
    return info;
}

/* ------------------------------------------------------------------ */
/* Commands */

/*
 * IDs libvirt gives its own devices: a monitor-added device must never
 * take one, or libvirt mistakes it for its own on DEVICE_DELETED.
 */
static bool libvirt_style_id(const char *id)
{
    static const char *const prefixes[] = {
        "ua-", "hostdev", "net", "virtio-disk", "sata", "ide", "scsi",
        "usb", "pci.", "serial", "console", "channel", "rng", "balloon",
        "video", "sound", "input", "watchdog", "tpm", "vsock", "fs",
        "shmem", "redir", "smartcard", "nvram", "dimm", "iommu", "crypto",
    };
    size_t i, n;

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        n = strlen(prefixes[i]);
        if (!strncmp(id, prefixes[i], n) &&
            (prefixes[i][n - 1] == '-' || prefixes[i][n - 1] == '.' ||
             isdigit((unsigned char)id[n]))) {
            return true;
        }
    }
    return false;
}

/* Is ID an alias in the domain's live XML? */
static bool libvirt_has_alias(virDomainPtr dom, const char *id)
{
    DomainXml *x = domxml_get(dom, errbuf, sizeof(errbuf));
    bool found = x && domxml_has_alias(x, id);

    domxml_free(x);
    return found;
}

static json_object *result_new(const char *op, const char *id,
                               const char *port)
{
    json_object *r = json_object_new_object();

    json_object_object_add(r, "operation", json_object_new_string(op));
    json_object_object_add(r, "device", json_object_new_string(id));
    if (port) {
        json_object_object_add(r, "port", json_object_new_string(port));
    }
    return r;
}

static void add_str(json_object *r, const char *key, const char *val)
{
    if (val) {
        json_object_object_add(r, key, json_object_new_string(val));
    }
}

/* Print R (and free it); return the exit status */
static int result_print(json_object *r)
{
    const char *res = str_of(r, "result");
    const char *reason = str_of(r, "reason");
    const char *cause = str_of(r, "cause");
    json_object *v;
    int status = res && !strcmp(res, "completed") ? 0 :
        res && !strcmp(res, "refused") ? EXIT_REFUSED : EXIT_FAILED;

    if (opt.json) {
        printf("%s\n", json_object_to_json_string_ext(
                   r, JSON_C_TO_STRING_PLAIN));
    } else if (status == 0) {
        printf("%s %s", str_of(r, "operation"), str_of(r, "device"));
        if (str_of(r, "port")) {
            printf(" on %s", str_of(r, "port"));
        }
        printf(": completed");
        if (json_object_object_get_ex(r, "latency-ms", &v)) {
            printf(" in %.0f ms", json_object_get_double(v));
        }
        if (json_object_object_get_ex(r, "qemu-duration-ms", &v)) {
            printf(" (QEMU: %" PRId64 " ms)", json_object_get_int64(v));
        }
        if (cause && strcmp(cause, "qmp")) {
            printf(", cause %s", cause);
        }
        printf("\n");
    } else {
        fprintf(stderr, "%s: %s %s: %s%s%s\n", progname,
                str_of(r, "operation"), str_of(r, "device"), res,
                reason ? ": " : "", reason ? reason : "");
    }
    json_object_put(r);
    return status;
}

static int refused(json_object *r, const char *why)
{
    add_str(r, "result", "refused");
    add_str(r, "reason", why);
    return result_print(r);
}

static int failed(json_object *r, const char *why)
{
    add_str(r, "result", "failed");
    add_str(r, "reason", why);
    return result_print(r);
}

/* query-passthru-hotplug failed: not the fork is a refusal */
static int query_failed(json_object *r)
{
    return strstr(errbuf, "not the NVMe passthrough hotplug fork") ?
        refused(r, errbuf) : failed(r, errbuf);
}

/* Milliseconds, to 0.1 ms */
static json_object *json_ms(double ms)
{
    char text[32];

    snprintf(text, sizeof(text), "%.1f", ms);
    return json_object_new_double_s(ms, text);
}

/* Fill R from the wait W that started at T0 */
static void result_from_wait(json_object *r, Waiter *w, double t0)
{
    json_object *ev = w->hotplug, *v;
    const char *result, *reason = NULL;

    if (w->is_add ? ev != NULL : w->got_deleted) {
        /* An add ends as its event says; a removal once the device is gone */
        result = w->is_add ? str_of(ev, "phase") : "completed";
    } else {
        result = "failed";
        reason = w->got_deleted ?
            (w->libvirt_device && !w->got_removed ?
             "QEMU deleted the device, libvirt did not drop it" :
             "the device went away before the add completed") :
            ev ? "QEMU did not delete the device" :
            w->gone ? w->gone : "no end of the operation within the timeout";
    }
    add_str(r, "result", result ? result : "failed");
    if (ev) {
        /* A removal that failed and then was forced: what it ended as */
        if (strcmp(str_of(r, "operation"), str_of(ev, "operation") ?: "")) {
            add_str(r, "ended-as", str_of(ev, "operation"));
        }
        add_str(r, "cause", str_of(ev, "cause"));
        if (json_object_object_get_ex(ev, "duration-ms", &v)) {
            json_object_object_add(r, "qemu-duration-ms",
                                   json_object_new_int64(
                                       json_object_get_int64(v)));
        }
        json_object_object_add(r, "latency-ms", json_ms(w->t_hotplug - t0));
    }
    add_str(r, "reason", reason ? reason : ev ? str_of(ev, "reason") : NULL);
    if (w->got_deleted) {
        json_object_object_add(r, "deleted-ms", json_ms(w->t_deleted - t0));
    }
    if (w->got_removed) {
        json_object_object_add(r, "removed-ms", json_ms(w->t_removed - t0));
    }
    json_object_put(w->hotplug);
    w->hotplug = NULL;
}

static int cmd_status(virDomainPtr dom)
{
    json_object *info = query(dom), *ports, *v;
    size_t i, used = 0;

    if (!info || !json_object_object_get_ex(info, "ports", &ports) ||
        !json_object_is_type(ports, json_type_array)) {
        fprintf(stderr, "%s: %s\n", progname,
                info ? "no ports in QEMU's answer" : errbuf);
        json_object_put(info);
        return EXIT_FAILED;
    }
    if (opt.json) {
        printf("%s\n", json_object_to_json_string_ext(
                   info, JSON_C_TO_STRING_PLAIN));
        json_object_put(info);
        return 0;
    }
    for (i = 0; i < json_object_array_length(ports); i++) {
        used += str_of(json_object_array_get_idx(ports, i), "device") != NULL;
    }
    json_object_object_get_ex(info, "max-devices", &v);
    printf("hotplug mode %s, %zu of at most %d devices\n",
           str_of(info, "hotplug-mode") ?: "?", used,
           json_object_get_int(v));
    printf("%-16s %-9s %-16s %-10s %s\n", "PORT", "STATE", "DEVICE",
           "TRANSPORT", "BACKEND");
    for (i = 0; i < json_object_array_length(ports); i++) {
        json_object *p = json_object_array_get_idx(ports, i);
        const char *op = str_of(p, "operation");

        printf("%-16s %-9s %-16s %-10s %s%s%s\n", str_of(p, "id") ?: "?",
               str_of(p, "state") ?: "?", str_of(p, "device") ?: "-",
               str_of(p, "transport") ?: "-", str_of(p, "backend") ?: "-",
               op ? "  running: " : "", op ? op : "");
    }
    json_object_put(info);
    return 0;
}

/* Append a hint to libvirt's error ERRBUF for what it means here */
static void hint_libvirt_error(void)
{
    static const struct {
        const char *match, *hint;
    } hints[] = {
        { "host doesn't support passthrough of host PCI devices",
          "the host runs without an IOMMU: enable VT-d/AMD-Vi and boot "
          "with intel_iommu=on or amd_iommu=on" },
        { "cannot limit locked memory",
          "libvirtd may not raise QEMU's memory lock limit: it needs "
          "CAP_SYS_RESOURCE" },
    };
    size_t i, n = strlen(errbuf);

    for (i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
        if (strstr(errbuf, hints[i].match)) {
            snprintf(errbuf + n, sizeof(errbuf) - n, " (%s)", hints[i].hint);
            return;
        }
    }
}

/*
 * Would QEMU admit device_add ARGS now?  Asks
 * query-passthru-hotplug-admission (through the monitor: the domain is
 * tainted custom-monitor; --no-admission skips it).  True when QEMU
 * would admit it; false with every reason in errbuf ("code: message;
 * ...") and in R's "refusals", leaving out the codes in SKIP (NULL
 * terminated): what the caller has checked itself.
 */
static bool admitted(virDomainPtr dom, json_object *r, json_object *args,
                     const char *const *skip)
{
    json_object *a = json_object_new_object(), *ret, *list, *kept;
    size_t i, n, len = 0;
    const char *const *s;

    if (opt.no_admission) {
        return true;
    }
    json_object_object_add(a, "device", json_object_get(args));
    ret = qmp(dom, "query-passthru-hotplug-admission", a);
    if (!ret) {
        /* A fork without the query: device_add says for itself */
        return true;
    }
    kept = json_object_new_array();
    errbuf[0] = '\0';
    if (json_object_object_get_ex(ret, "refusals", &list)) {
        n = json_object_array_length(list);
        for (i = 0; i < n; i++) {
            json_object *one = json_object_array_get_idx(list, i);
            const char *code = str_of(one, "code") ?: "?";

            for (s = skip; *s && strcmp(*s, code); s++) {
                /* the caller's own check */
            }
            if (*s) {
                continue;
            }
            json_object_array_add(kept, json_object_get(one));
            if (len < sizeof(errbuf)) {
                len += snprintf(errbuf + len, sizeof(errbuf) - len,
                                "%s%s: %s", len ? "; " : "", code,
                                str_of(one, "message") ?: "");
            }
        }
    }
    json_object_put(ret);
    if (!json_object_array_length(kept)) {
        json_object_put(kept);
        return true;
    }
    json_object_object_add(r, "refusals", kept);
    return false;
}

/* The vfio-user NVMe served on opt.socket, through the QEMU monitor */
static int add_vfio_user(virDomainPtr dom, Waiter *w, json_object *r,
                         const char *port, const char *id)
{
    json_object *info, *p, *args, *sock, *ret;
    double t0;

    if (libvirt_style_id(id) || libvirt_has_alias(dom, id)) {
        set_error("'%s' is an ID of the kind libvirt gives its own devices: "
                  "choose another (e.g. nvme-data1)", id);
        return refused(r, errbuf);
    }
    info = query(dom);
    if (!info) {
        return query_failed(r);
    }
    p = find_port(info, "id", port);
    if (!p) {
        set_error("'%s' is not a passthrough port of the domain (see "
                  "status)", port);
        json_object_put(info);
        return refused(r, errbuf);
    }
    if (!str_eq(p, "state", "empty")) {
        set_error("port '%s' is %s (device %s): remove that first", port,
                  str_of(p, "state"), str_of(p, "device") ?: "-");
        json_object_put(info);
        return refused(r, errbuf);
    }
    json_object_put(info);
    if (access(opt.socket, F_OK) < 0) {
        set_error("no vfio-user server socket %s: %s", opt.socket,
                  strerror(errno));
        return refused(r, errbuf);
    }

    args = json_object_new_object();
    sock = json_object_new_object();
    json_object_object_add(args, "driver",
                           json_object_new_string("vfio-user-nvme"));
    json_object_object_add(args, "id", json_object_new_string(id));
    json_object_object_add(args, "bus", json_object_new_string(port));
    json_object_object_add(sock, "type", json_object_new_string("unix"));
    json_object_object_add(sock, "path", json_object_new_string(opt.socket));
    json_object_object_add(args, "socket", sock);
    if (!admitted(dom, r, args, (const char *const[]) { NULL })) {
        json_object_put(args);
        return refused(r, errbuf);
    }

    w->device = id;
    w->is_add = true;
    t0 = now_ms();
    ret = qmp(dom, "device_add", args);
    if (!ret) {
        return failed(r, errbuf);
    }
    json_object_put(ret);
    wait_events(w, opt.timeout_s);
    result_from_wait(r, w, t0);
    return result_print(r);
}

/*
 * The host NVMe opt.host (or opt.sysfsdev) as libvirt's <hostdev
 * managed='yes'> on PORT: no QEMU monitor command, so no taint
 */
static int add_hostdev(virDomainPtr dom, Waiter *w, json_object *r,
                       const char *port, const char *id)
{
    char bdf[NPH_BDF_LEN], dir[PATH_MAX], used[256], why[1024];
    const char *src = opt.host;
    NphDevice dev;
    DomainXml *x;
    char *xml;
    json_object *args;
    unsigned dom_nr, bus, slot, fn;
    int index, rc;
    bool ok;
    double t0;

    if (strncmp(id, "ua-", 3) || !id[3]) {
        set_error("a host NVMe is added as libvirt's <hostdev> and its ID "
                  "is the hostdev's alias, which libvirt wants to begin "
                  "with 'ua-': choose e.g. ua-%s", id);
        return refused(r, errbuf);
    }
    if (opt.sysfsdev) {
        size_t n;

        snprintf(dir, sizeof(dir), "%s", opt.sysfsdev);
        for (n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) {
            dir[n - 1] = '\0';
        }
        src = strrchr(dir, '/');
        src = src ? src + 1 : dir;
    }
    if (!nph_parse_bdf(src, bdf, sizeof(bdf))) {
        set_error("'%s' is not a PCI address (DDDD:BB:SS.F)", src);
        return refused(r, errbuf);
    }
    x = domxml_get(dom, errbuf, sizeof(errbuf));
    if (!x) {
        return failed(r, errbuf);
    }
    index = domxml_passthru_port_index(x, port);
    if (index < 0) {
        set_error("'%s' is not a passthrough port of the domain: no "
                  "pcie-root-port with that alias turned into "
                  "pcie-hotplug-passthru by <qemu:override>", port);
    } else if (domxml_device_on_bus(x, index, used, sizeof(used))) {
        set_error("port '%s' holds %s: remove that first", port, used);
    } else if (domxml_has_alias(x, id)) {
        set_error("'%s' is already an alias in the domain", id);
    } else if (!nph_device_find(bdf, &dev, why, sizeof(why)) ||
               nph_can_pass(&dev, why, sizeof(why)) != NPH_DONE) {
        set_error("%s", why);
    } else {
        errbuf[0] = '\0';
    }
    domxml_free(x);
    if (errbuf[0]) {
        return refused(r, errbuf);
    }
    /*
     * What QEMU would say of the vfio-pci device libvirt will add.  The
     * host device is the host module's to judge (above, and it sees
     * --root trees, which QEMU does not), and libvirt binds a managed
     * <hostdev> to vfio-pci first.
     */
    args = json_object_new_object();
    json_object_object_add(args, "driver", json_object_new_string("vfio-pci"));
    json_object_object_add(args, "id", json_object_new_string(id));
    json_object_object_add(args, "bus", json_object_new_string(port));
    json_object_object_add(args, "host", json_object_new_string(bdf));
    ok = admitted(dom, r, args, (const char *const[]) {
        "host-device-missing", "not-nvme", "host-device-in-use",
        "iommu-group-not-viable", NULL });
    json_object_put(args);
    if (!ok) {
        return refused(r, errbuf);
    }

    sscanf(bdf, "%x:%x:%x.%x", &dom_nr, &bus, &slot, &fn);
    if (asprintf(&xml,
                 "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
                 "  <source>\n"
                 "    <address domain='0x%04x' bus='0x%02x' slot='0x%02x' "
                 "function='0x%x'/>\n"
                 "  </source>\n"
                 "  <alias name='%s'/>\n"
                 "  <address type='pci' domain='0x0000' bus='0x%02x' "
                 "slot='0x00' function='0x0'/>\n"
                 "</hostdev>\n", dom_nr, bus, slot, fn, id, index) < 0) {
        return failed(r, "out of memory");
    }
    w->device = id;
    w->is_add = true;
    t0 = now_ms();
    rc = virDomainAttachDeviceFlags(dom, xml, VIR_DOMAIN_AFFECT_LIVE);
    free(xml);
    if (rc < 0) {
        set_error("libvirt could not add %s as a <hostdev>: %s", bdf,
                  libvirt_error());
        hint_libvirt_error();
        return failed(r, errbuf);
    }
    json_object_object_add(r, "host", json_object_new_string(bdf));
    wait_events(w, opt.timeout_s);
    result_from_wait(r, w, t0);
    return result_print(r);
}

static int cmd_add(virDomainPtr dom, Waiter *w, const char *port,
                   const char *id)
{
    json_object *r = result_new("add", id, port);

    if (!!opt.socket + !!opt.host + !!opt.sysfsdev != 1) {
        return refused(r, "give exactly one of --socket PATH (vfio-user), "
                       "--host BDF or --sysfsdev PATH (kernel VFIO)");
    }
    return opt.socket ? add_vfio_user(dom, w, r, port, id) :
        add_hostdev(dom, w, r, port, id);
}

/*
 * qom-get (VALUE NULL) or qom-set the removal property of the port at
 * PATH; the result of qom-get goes to BUF.
 */
static bool port_removal(virDomainPtr dom, const char *path,
                         const char *value, char *buf, size_t size)
{
    json_object *args = json_object_new_object(), *ret;

    json_object_object_add(args, "path", json_object_new_string(path));
    json_object_object_add(args, "property",
                           json_object_new_string("removal"));
    if (value) {
        json_object_object_add(args, "value", json_object_new_string(value));
    }
    ret = qmp(dom, value ? "qom-set" : "qom-get", args);
    if (ret && !value) {
        snprintf(buf, size, "%s", json_object_get_string(ret));
    }
    json_object_put(ret);
    return ret != NULL;
}

/*
 * The port of the device ID into PORT: from the live XML for a PCI
 * <hostdev> libvirt knows (*HOSTDEV true; no monitor command), else
 * from query-passthru-hotplug (NEED_PORT: for a <hostdev> too, when the
 * XML does not say).  0 found, -1 the query failed, -2 no such device;
 * errbuf says why.
 */
static int device_port(virDomainPtr dom, const char *id, char *port,
                       size_t size, bool *hostdev, bool need_port)
{
    DomainXml *x = domxml_get(dom, errbuf, sizeof(errbuf));
    json_object *info, *p;
    int rc = -2;

    *hostdev = x && domxml_pci_hostdev(x, id, port, size);
    domxml_free(x);
    if (*hostdev && (port[0] || !need_port)) {
        return 0;
    }
    info = query(dom);
    if (!info) {
        return -1;
    }
    p = find_port(info, "device", id);
    if (p && str_of(p, "id")) {
        snprintf(port, size, "%s", str_of(p, "id"));
        rc = 0;
    } else {
        set_error("no passthrough device '%s' in the domain (see status)",
                  id);
    }
    json_object_put(info);
    return rc;
}

static int cmd_remove(virDomainPtr dom, Waiter *w, const char *id,
                      bool surprise)
{
    json_object *r = result_new(surprise ? "surprise-remove" : "remove",
                                id, NULL);
    json_object *args, *ret;
    char path[512], port[256] = "", removal[32] = "orderly";
    bool hostdev, ok;
    double t0;
    int rc;

    /* An orderly removal of a <hostdev> needs no monitor command */
    rc = device_port(dom, id, port, sizeof(port), &hostdev, surprise);
    if (rc < 0) {
        return rc == -1 ? query_failed(r) : refused(r, errbuf);
    }
    if (port[0]) {
        add_str(r, "port", port);
    }
    snprintf(path, sizeof(path), "/machine/peripheral/%s", port);
    if (surprise &&
        (!port_removal(dom, path, NULL, removal, sizeof(removal)) ||
         !port_removal(dom, path, "surprise", NULL, 0))) {
        return failed(r, errbuf);
    }

    w->device = id;
    w->is_add = false;
    w->libvirt_device = hostdev;
    t0 = now_ms();
    if (hostdev) {
        /* libvirt's own detach: it drops the device and gives it back */
        ok = virDomainDetachDeviceAlias(dom, id, VIR_DOMAIN_AFFECT_LIVE) == 0;
        if (!ok) {
            set_error("%s", libvirt_error());
        }
    } else {
        args = json_object_new_object();
        json_object_object_add(args, "id", json_object_new_string(id));
        ret = qmp(dom, "device_del", args);
        ok = ret != NULL;
        json_object_put(ret);
    }
    if (ok) {
        wait_events(w, opt.timeout_s);
        result_from_wait(r, w, t0);
    } else {
        add_str(r, "result", "failed");
        add_str(r, "reason", errbuf);
    }

    if (surprise && strcmp(removal, "surprise") &&
        !port_removal(dom, path, removal, NULL, 0)) {
        fprintf(stderr, "%s: warning: cannot set removal of %s back to "
                "%s: %s\n", progname, port, removal, errbuf);
    }
    return result_print(r);
}

static int cmd_watch(Waiter *w)
{
    w->watch = true;
    wait_events(w, opt.timeout_s);
    if (w->gone) {
        fprintf(stderr, "%s: %s\n", progname, w->gone);
        return EXIT_FAILED;
    }
    return 0;
}

/* ------------------------------------------------------------------ */

static void quiet_errors(void *opaque, virErrorPtr err)
{
}

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [OPTIONS] DOMAIN COMMAND [ARGS]\n"
"\n"
"NVMe passthrough hotplug of a running libvirt domain whose emulator is\n"
"the NVMe passthrough hotplug fork of QEMU.\n"
"\n"
"Commands:\n"
"  status                     the passthrough ports and their devices\n"
"  add PORT ID --socket PATH  hot-add the vfio-user NVMe served on PATH\n"
"  add PORT ID --host BDF     hot-add the host NVMe BDF (kernel VFIO) as\n"
"                             libvirt's <hostdev managed='yes'>; ID is\n"
"                             its alias: ua-...\n"
"  add PORT ID --sysfsdev DIR the same, by its sysfs folder\n"
"  remove ID                  orderly removal: the guest releases it (a\n"
"                             <hostdev>: libvirt's detach)\n"
"  surprise-remove ID         take it away now, without the guest\n"
"  watch                      print PASSTHRU_HOTPLUG and DEVICE_DELETED\n"
"                             (QEMU) and device-removed (libvirt) events\n"
"                             until the timeout (0: forever)\n"
"\n"
"Options:\n"
"  -c, --connect URI    libvirt connection (default: libvirt's default)\n"
"  -j, --json           print results as JSON, one object per line\n"
"  -t, --timeout SEC    wait at most SEC for an operation (default 60,\n"
"                       0: no limit)\n"
"      --no-admission   add without asking QEMU first whether it would\n"
"                       admit the device (query-passthru-hotplug-\n"
"                       admission, a monitor command: libvirt taints the\n"
"                       domain custom-monitor)\n"
"  -h, --help           this text\n"
"\n"
"Exit status: 0 done, 1 the operation failed or timed out, 2 refused\n"
"(bad arguments, or a rule of passthrough hotplug).\n", progname);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "connect", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "socket", required_argument, NULL, 's' },
        { "host", required_argument, NULL, 'H' },
        { "sysfsdev", required_argument, NULL, 'S' },
        { "no-admission", no_argument, NULL, 'A' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    Waiter w = { 0 };
    const char *name, *cmd;
    uint64_t num;
    int c, cb = -1, life = -1, removed = -1, status = EXIT_REFUSED;

    while ((c = getopt_long(argc, argv, "c:jt:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt.uri = optarg;
            break;
        case 'j':
            opt.json = true;
            break;
        case 't':
            if (!nph_parse_u64(optarg, 10, &num) || num > 86400) {
                fprintf(stderr, "%s: --timeout wants seconds (0-86400), "
                        "not '%s'\n", progname, optarg);
                return EXIT_REFUSED;
            }
            opt.timeout_s = num;
            break;
        case 's':
            opt.socket = optarg;
            break;
        case 'H':
            opt.host = optarg;
            break;
        case 'S':
            opt.sysfsdev = optarg;
            break;
        case 'A':
            opt.no_admission = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_REFUSED;
        }
    }
    if (argc - optind < 2) {
        usage(stderr);
        return EXIT_REFUSED;
    }
    name = argv[optind];
    cmd = argv[optind + 1];
    argc -= optind + 2;
    argv += optind + 2;
    if (!((!strcmp(cmd, "status") && argc == 0) ||
          (!strcmp(cmd, "watch") && argc == 0) ||
          (!strcmp(cmd, "add") && argc == 2) ||
          (!strcmp(cmd, "remove") && argc == 1) ||
          (!strcmp(cmd, "surprise-remove") && argc == 1))) {
        fprintf(stderr, "%s: unknown command or wrong arguments: %s (see "
                "--help)\n", progname, cmd);
        return EXIT_REFUSED;
    }
    nph_set_root(getenv("VIRT_NVME_HOTPLUG_ROOT"));

    virSetErrorFunc(NULL, quiet_errors);   /* we print them, once */
    if (virEventRegisterDefaultImpl() < 0) {
        fprintf(stderr, "%s: %s\n", progname, libvirt_error());
        return EXIT_FAILED;
    }
    conn = virConnectOpen(opt.uri);
    if (!conn) {
        fprintf(stderr, "%s: cannot connect to libvirt: %s\n", progname,
                libvirt_error());
        return EXIT_FAILED;
    }
    dom = virDomainLookupByName(conn, name);
    if (!dom) {
        fprintf(stderr, "%s: no domain '%s': %s\n", progname, name,
                libvirt_error());
        goto out;
    }
    if (virDomainIsActive(dom) != 1) {
        fprintf(stderr, "%s: domain '%s' is not running\n", progname, name);
        goto out;
    }
    /* Listen before the command, so that no event is missed */
    cb = virConnectDomainQemuMonitorEventRegister(conn, dom, NULL, on_event,
                                                  &w, NULL, 0);
    if (cb < 0) {
        fprintf(stderr, "%s: cannot listen to QEMU's events: %s\n",
                progname, libvirt_error());
        status = EXIT_FAILED;
        goto out;
    }
    /* Stop waiting when the domain or the connection goes away */
    life = virConnectDomainEventRegisterAny(
        conn, dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), &w, NULL);
    removed = virConnectDomainEventRegisterAny(
        conn, dom, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
        VIR_DOMAIN_EVENT_CALLBACK(on_device_removed), &w, NULL);
    virConnectRegisterCloseCallback(conn, on_close, &w, NULL);

    if (!strcmp(cmd, "status")) {
        status = cmd_status(dom);
    } else if (!strcmp(cmd, "watch")) {
        status = cmd_watch(&w);
    } else if (!strcmp(cmd, "add")) {
        status = cmd_add(dom, &w, argv[0], argv[1]);
    } else {
        status = cmd_remove(dom, &w, argv[0],
                            !strcmp(cmd, "surprise-remove"));
    }

out:
    if (life >= 0) {
        virConnectDomainEventDeregisterAny(conn, life);
    }
    if (removed >= 0) {
        virConnectDomainEventDeregisterAny(conn, removed);
    }
    virConnectUnregisterCloseCallback(conn, on_close);
    if (cb >= 0) {
        virConnectDomainQemuMonitorEventDeregister(conn, cb);
    }
    if (dom) {
        virDomainFree(dom);
    }
    virConnectClose(conn);
    return status;
}
