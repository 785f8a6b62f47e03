/*
 * virt-nvme-hotplug: NVMe passthrough hotplug of a libvirt domain
 *
 * Drives the fork's pcie-hotplug-passthru ports of a running libvirt
 * domain through libvirt's QEMU monitor passthrough: device_add,
 * device_del and query-passthru-hotplug, and waits for the
 * PASSTHRU_HOTPLUG events that end each operation.  libvirt does not
 * know these devices: they never show in dumpxml, and the domain is
 * tainted "custom-monitor".
 *
 * For a kernel VFIO device (host=/sysfsdev=) it first does what libvirt
 * does for a <hostdev>, or refuses with the reason: the device must be
 * an NVMe controller, not in use by the host, bound to vfio-pci (with
 * --managed it is detached through libvirt), in an IOMMU group whose
 * node QEMU can open, and QEMU must be allowed to lock guest memory.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#define EXIT_FAILED     1       /* the operation ran and failed */
#define EXIT_REFUSED    2       /* bad arguments, or refused before QEMU */

#define CAP_IPC_LOCK_BIT 14

static const char *progname = "virt-nvme-hotplug";

static struct {
    const char *uri;
    bool json;
    int timeout_s;
    bool managed;
    const char *socket;
    const char *host;
    const char *sysfsdev;
    long qemu_pid;
    const char *root;           /* prefix of /sys, /dev, /proc (tests) */
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

/* All of S is a number in BASE 10 or 16 ("0x" allowed in 16) */
static bool parse_u64(const char *s, int base, uint64_t *out)
{
    unsigned long long v;
    int n = -1;

    if (!isxdigit((unsigned char)s[0])) {
        return false;
    }
    if (base == 16) {
        sscanf(s, "%llx%n", &v, &n);
    } else {
        sscanf(s, "%llu%n", &v, &n);
    }
    if (n < 0 || s[n]) {
        return false;
    }
    *out = v;
    return true;
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
    bool got_deleted;
    double t_hotplug;
    double t_deleted;
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
    /* A removal ends once QEMU deleted the device */
    return w->hotplug && w->got_deleted;
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
/* Kernel VFIO: what libvirt prepares for a <hostdev> */

/* libvirt's node device name of the PCI device BDF (DDDD:BB:SS.F) */
static void nodedev_name(const char *bdf, char *buf, size_t size)
{
    snprintf(buf, size, "pci_%.4s_%.2s_%.2s_%.1s", bdf, bdf + 5, bdf + 8,
             bdf + 11);
}

static void PRINTF_LIKE(3, 4) path_of(char *buf, size_t size,
                                      const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(buf, size, "%s", opt.root ? opt.root : "");

    if (n < 0 || (size_t)n >= size) {
        buf[size - 1] = '\0';
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf + n, size - n, fmt, ap);
    va_end(ap);
}

static bool read_line(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    bool ok;

    if (!f) {
        return false;
    }
    ok = fgets(buf, size, f) != NULL;
    fclose(f);
    if (ok) {
        buf[strcspn(buf, "\n")] = '\0';
    }
    return ok;
}

/* Basename of the symlink PATH, or NULL */
static bool link_name(const char *path, char *buf, size_t size)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    const char *base;

    if (n < 0) {
        return false;
    }
    target[n] = '\0';
    base = strrchr(target, '/');
    snprintf(buf, size, "%s", base ? base + 1 : target);
    return true;
}

/* Does a line of the table file PATH start with DEV?  Its second field */
static bool table_has(const char *file, const char *dev, char *field,
                      size_t size)
{
    char path[PATH_MAX], line[1024], a[512], b[512];
    FILE *f;
    bool found = false;

    path_of(path, sizeof(path), "%s", file);
    f = fopen(path, "r");
    if (!f) {
        return false;
    }
    while (!found && fgets(line, sizeof(line), f)) {
        b[0] = '\0';
        if (sscanf(line, "%511s %511s", a, b) >= 1 && !strcmp(a, dev)) {
            snprintf(field, size, "%s", b);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Does the directory PATH have an entry? */
static bool dir_has_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    bool any = false;

    if (!d) {
        return false;
    }
    while (!any && (e = readdir(d))) {
        any = e->d_name[0] != '.';
    }
    closedir(d);
    return any;
}

/*
 * Is the block device SYSBLOCK (a sysfs folder named after it) or a
 * partition of it mounted, swap, or held by LVM/MD/dm?
 */
static bool block_in_use(const char *sysblock, char *why, size_t size)
{
    const char *name = strrchr(sysblock, '/') + 1;
    char dev[PATH_MAX], path[PATH_MAX], field[512];
    DIR *d;
    struct dirent *e;
    bool used = false;

    snprintf(dev, sizeof(dev), "/dev/%s", name);
    snprintf(path, sizeof(path), "%s/holders", sysblock);
    if (table_has("/proc/mounts", dev, field, sizeof(field))) {
        snprintf(why, size, "%s is mounted on %s", dev, field);
        return true;
    }
    if (table_has("/proc/swaps", dev, field, sizeof(field))) {
        snprintf(why, size, "%s is in use as swap", dev);
        return true;
    }
    if (dir_has_entries(path)) {
        snprintf(why, size, "%s is held by another block device "
                 "(LVM, MD or device-mapper)", dev);
        return true;
    }
    /* Partitions: sub-folders named NAMEpN */
    d = opendir(sysblock);
    while (d && !used && (e = readdir(d))) {
        if (!strncmp(e->d_name, name, strlen(name)) &&
            strlen(e->d_name) > strlen(name)) {
            snprintf(path, sizeof(path), "%s/%s", sysblock, e->d_name);
            used = block_in_use(path, why, size);
        }
    }
    if (d) {
        closedir(d);
    }
    return used;
}

/* "01:00.0" or "0000:01:00.0" -> "0000:01:00.0"; false if malformed */
static bool parse_bdf(const char *in, char *bdf, size_t size)
{
    unsigned dom = 0, bus, slot, fn;
    char extra;

    if (sscanf(in, "%x:%x:%x.%x%c", &dom, &bus, &slot, &fn, &extra) != 4) {
        dom = 0;
        if (sscanf(in, "%x:%x.%x%c", &bus, &slot, &fn, &extra) != 3) {
            return false;
        }
    }
    if (dom > 0xffff || bus > 0xff || slot > 0x1f || fn > 7) {
        return false;
    }
    snprintf(bdf, size, "%04x:%02x:%02x.%x", dom, bus, slot, fn);
    return true;
}

/*
 * Is the NVMe controller at sysfs folder DEV used by the host: one of its
 * namespaces, or a partition of one, mounted, swap or held?
 */
static bool nvme_in_use(const char *dev, char *why, size_t size)
{
    char path[PATH_MAX], sub[PATH_MAX];
    DIR *ctrls, *d;
    struct dirent *c, *e;
    bool used = false;

    snprintf(path, sizeof(path), "%s/nvme", dev);
    ctrls = opendir(path);
    while (ctrls && !used && (c = readdir(ctrls))) {
        if (strncmp(c->d_name, "nvme", 4)) {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", path, c->d_name);
        d = opendir(sub);
        while (d && !used && (e = readdir(d))) {
            unsigned subsys, ctrl, ns;
            char blk[PATH_MAX];

            if (sscanf(e->d_name, "nvme%uc%un%u", &subsys, &ctrl, &ns) == 3) {
                /* A path of a multipath namespace: the disk is its head */
                path_of(blk, sizeof(blk), "/sys/block/nvme%un%u", subsys, ns);
            } else if (sscanf(e->d_name, "nvme%un%u", &subsys, &ns) == 2) {
                snprintf(blk, sizeof(blk), "%s/%s", sub, e->d_name);
            } else {
                continue;
            }
            used = block_in_use(blk, why, size);
        }
        if (d) {
            closedir(d);
        }
    }
    if (ctrls) {
        closedir(ctrls);
    }
    return used;
}

/* The pid file libvirt keeps for the domain's QEMU, from the URI */
static long find_qemu_pid(virConnectPtr conn, virDomainPtr dom)
{
    char *uri = virConnectGetURI(conn);
    const char *name;
    char path[PATH_MAX], line[64];
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    const char *root;
    uint64_t pid = 0;

    if (opt.qemu_pid > 0) {
        free(uri);
        return opt.qemu_pid;
    }
    if (!uri) {
        set_error("%s", libvirt_error());
        return -1;
    }
    name = virDomainGetName(dom);
    if (!strcmp(uri, "qemu:///system")) {
        path_of(path, sizeof(path), "/run/libvirt/qemu/%s.pid", name);
    } else if (!strcmp(uri, "qemu:///session") && xdg) {
        snprintf(path, sizeof(path), "%s/libvirt/qemu/run/%s.pid", xdg, name);
    } else if (!strncmp(uri, "qemu:///embed?root=", 19)) {
        root = uri + 19;
        snprintf(path, sizeof(path), "%s/run/qemu/%s.pid", root, name);
    } else {
        set_error("cannot find the QEMU process of '%s' behind %s: run on "
                  "the domain's host with qemu:///system, or pass "
                  "--qemu-pid", name, uri);
        free(uri);
        return -1;
    }
    if (!read_line(path, line, sizeof(line)) ||
        !parse_u64(line, 10, &pid) || !pid || pid > INT32_MAX) {
        pid = 0;
        set_error("cannot read the pid of QEMU from %s: pass --qemu-pid",
                  path);
    }
    free(uri);
    return pid ? (long)pid : -1;
}

/* A "Key:\tvalue" line of /proc/PID/status */
static bool proc_status(long pid, const char *key, char *val, size_t size)
{
    char path[PATH_MAX], line[256];
    size_t n = strlen(key);
    FILE *f;
    bool found = false;

    path_of(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, key, n) && line[n] == ':') {
            snprintf(val, size, "%s", line + n + 1 + strspn(line + n + 1,
                                                             " \t"));
            val[strcspn(val, "\n")] = '\0';
            found = true;
        }
    }
    if (f) {
        fclose(f);
    }
    return found;
}

/* QEMU's soft RLIMIT_MEMLOCK in bytes; UINT64_MAX for unlimited */
static bool qemu_memlock(long pid, uint64_t *bytes)
{
    char path[PATH_MAX], line[256], soft[64];
    FILE *f;
    bool found = false;

    path_of(path, sizeof(path), "/proc/%ld/limits", pid);
    f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "Max locked memory", 17) &&
            sscanf(line + 17, "%63s", soft) == 1) {
            if (!strcmp(soft, "unlimited")) {
                *bytes = UINT64_MAX;
                found = true;
            } else {
                found = parse_u64(soft, 10, bytes);
            }
        }
    }
    if (f) {
        fclose(f);
    }
    return found;
}

/* BYTES as "N MiB", or "N KiB" below 1 MiB */
static const char *size_str(uint64_t bytes, char *buf, size_t size)
{
    if (bytes < (1 << 20)) {
        snprintf(buf, size, "%" PRIu64 " KiB", bytes >> 10);
    } else {
        snprintf(buf, size, "%" PRIu64 " MiB", bytes >> 20);
    }
    return buf;
}

/* May QEMU pin all guest memory for DMA, as VFIO type1 needs? */
static bool prepare_memlock(virDomainPtr dom, long pid)
{
    char caps[64], have_s[32], need_s[32];
    uint64_t limit = 0, need, eff;
    struct rlimit rl;

    if (proc_status(pid, "CapEff", caps, sizeof(caps)) &&
        parse_u64(caps, 16, &eff) && (eff >> CAP_IPC_LOCK_BIT) & 1) {
        return true;            /* CAP_IPC_LOCK: no limit applies */
    }
    if (!qemu_memlock(pid, &limit)) {
        set_error("cannot read the memory lock limit of QEMU (pid %ld)",
                  pid);
        return false;
    }
    /* libvirt's rule for VFIO without a vIOMMU: guest memory + 1 GiB */
    need = (uint64_t)virDomainGetMaxMemory(dom) * 1024 + (1ULL << 30);
    if (limit >= need) {
        return true;
    }
    rl.rlim_cur = rl.rlim_max = need;
    if (prlimit(pid, RLIMIT_MEMLOCK, &rl, NULL) < 0) {
        set_error("QEMU (pid %ld) may lock %s of memory, a VFIO device "
                  "needs %s, and raising the limit failed: %s; add "
                  "<locked/> to the domain's <memoryBacking> (libvirt then "
                  "lifts the limit)", pid,
                  size_str(limit, have_s, sizeof(have_s)),
                  size_str(need, need_s, sizeof(need_s)), strerror(errno));
        return false;
    }
    return true;
}

/* Can QEMU's user open the IOMMU group node?  If not, hand it over */
static bool prepare_owner(const char *node, long pid)
{
    char val[128];
    unsigned uid, gid;
    struct stat st;

    if (!proc_status(pid, "Uid", val, sizeof(val)) ||
        sscanf(val, "%*u %u", &uid) != 1 ||
        !proc_status(pid, "Gid", val, sizeof(val)) ||
        sscanf(val, "%*u %u", &gid) != 1) {
        set_error("cannot read the user of QEMU (pid %ld)", pid);
        return false;
    }
    if (stat(node, &st) < 0) {
        set_error("%s: %s", node, strerror(errno));
        return false;
    }
    if (uid == 0 || (st.st_uid == uid && (st.st_mode & 0600) == 0600)) {
        return true;
    }
    if (chown(node, uid, gid) < 0 || chmod(node, 0600) < 0) {
        set_error("QEMU runs as uid %u and cannot open %s (owner %u), and "
                  "handing it over failed: %s", uid, node,
                  (unsigned)st.st_uid, strerror(errno));
        return false;
    }
    return true;
}

/* cgroup v1: let QEMU's devices cgroup open NODE (what libvirt does) */
static bool prepare_cgroup(const char *node, long pid)
{
    char path[PATH_MAX], line[PATH_MAX], allow[PATH_MAX];
    const char *cg = NULL;
    struct stat st;
    FILE *f;
    bool ok = true;

    path_of(path, sizeof(path), "/proc/%ld/cgroup", pid);
    f = fopen(path, "r");
    while (f && !cg && fgets(line, sizeof(line), f)) {
        char *p = strstr(line, ":devices:");

        if (p) {
            cg = p + strlen(":devices:");
            line[strcspn(line, "\n")] = '\0';
        }
    }
    if (f) {
        fclose(f);
    }
    if (!cg || !strcmp(cg, "/")) {
        return true;            /* no devices cgroup of its own (or v2) */
    }
    if (stat(node, &st) < 0) {
        set_error("%s: %s", node, strerror(errno));
        return false;
    }
    path_of(allow, sizeof(allow), "/sys/fs/cgroup/devices%s/devices.allow",
            cg);
    f = fopen(allow, "w");
    if (!f || fprintf(f, "c %u:%u rw\n", major(st.st_rdev),
                      minor(st.st_rdev)) < 0) {
        ok = false;
    }
    if (f && fclose(f) != 0) {
        ok = false;
    }
    if (!ok) {
        set_error("cannot allow %s in QEMU's devices cgroup %s: %s", node,
                  allow, strerror(errno));
    }
    return ok;
}

/*
 * Prepare the host NVMe BDF for QEMU (pid PID), like libvirt does for a
 * <hostdev>.  *DETACHED tells whether we took it from its host driver.
 */
static bool prepare_vfio(virConnectPtr conn, virDomainPtr dom,
                         const char *bdf, long pid, bool *detached)
{
    char dev[PATH_MAX], path[PATH_MAX], val[256], drv[256], group[64];
    char node[PATH_MAX], why[512];
    uint64_t class;

    *detached = false;
    path_of(dev, sizeof(dev), "/sys/bus/pci/devices/%s", bdf);
    snprintf(path, sizeof(path), "%s/class", dev);
    if (!read_line(path, val, sizeof(val))) {
        set_error("no PCI device %s on this host", bdf);
        return false;
    }
    if (!parse_u64(val, 16, &class) || class != 0x010802) {
        set_error("%s is not an NVMe controller: class %s, not 0x010802",
                  bdf, val);
        return false;
    }
    snprintf(path, sizeof(path), "%s/driver", dev);
    if (!link_name(path, drv, sizeof(drv))) {
        drv[0] = '\0';
    }
    if (strcmp(drv, "vfio-pci")) {
        char nodedev[64];
        virNodeDevicePtr nd;
        int rc;

        if (nvme_in_use(dev, why, sizeof(why))) {
            set_error("%s is in use by the host: %s", bdf, why);
            return false;
        }
        nodedev_name(bdf, nodedev, sizeof(nodedev));
        if (!opt.managed) {
            set_error("%s is bound to %s, not vfio-pci: detach it with "
                      "'virsh nodedev-detach %s', or pass --managed",
                      bdf, drv[0] ? drv : "no driver", nodedev);
            return false;
        }
        nd = virNodeDeviceLookupByName(conn, nodedev);
        rc = nd ? virNodeDeviceDetachFlags(nd, "vfio", 0) : -1;
        if (rc < 0) {
            set_error("cannot detach %s from the host: %s", bdf,
                      libvirt_error());
        }
        if (nd) {
            virNodeDeviceFree(nd);
        }
        if (rc < 0) {
            return false;
        }
        *detached = true;
    }
    snprintf(path, sizeof(path), "%s/iommu_group", dev);
    if (!link_name(path, group, sizeof(group))) {
        set_error("%s has no IOMMU group: the host runs without an IOMMU "
                  "(enable VT-d/AMD-Vi and boot with intel_iommu=on or "
                  "amd_iommu=on)", bdf);
        return false;
    }
    path_of(node, sizeof(node), "/dev/vfio/%s", group);
    if (access(node, F_OK) < 0) {
        set_error("%s is in IOMMU group %s, but %s does not exist: is it "
                  "bound to vfio-pci?", bdf, group, node);
        return false;
    }
    path_of(path, sizeof(path), "/dev/vfio/vfio");
    return prepare_owner(node, pid) && prepare_cgroup(node, pid) &&
        prepare_cgroup(path, pid) && prepare_memlock(dom, pid);
}

static void reattach(virConnectPtr conn, const char *bdf)
{
    char nodedev[64];
    virNodeDevicePtr nd;

    nodedev_name(bdf, nodedev, sizeof(nodedev));
    nd = virNodeDeviceLookupByName(conn, nodedev);
    if (!nd || virNodeDeviceReAttach(nd) < 0) {
        fprintf(stderr, "%s: warning: cannot give %s back to the host: %s\n",
                progname, bdf, libvirt_error());
    }
    if (nd) {
        virNodeDeviceFree(nd);
    }
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
    char *xml = virDomainGetXMLDesc(dom, 0);
    char needle[512];
    bool found;

    if (!xml) {
        return false;
    }
    snprintf(needle, sizeof(needle), "<alias name='%s'/>", id);
    found = strstr(xml, needle) != NULL;
    free(xml);
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
            "the device went away before the add completed" :
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

static int cmd_add(virConnectPtr conn, virDomainPtr dom, Waiter *w,
                   const char *port, const char *id)
{
    json_object *r = result_new("add", id, port);
    json_object *info, *p, *args, *ret;
    char bdf[32] = "";
    bool detached = false;
    long pid;
    double t0;

    if (!!opt.socket + !!opt.host + !!opt.sysfsdev != 1) {
        return refused(r, "give exactly one of --socket PATH (vfio-user), "
                       "--host BDF or --sysfsdev PATH (kernel VFIO)");
    }
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

    args = json_object_new_object();
    json_object_object_add(args, "id", json_object_new_string(id));
    json_object_object_add(args, "bus", json_object_new_string(port));
    if (opt.socket) {
        json_object *sock = json_object_new_object();

        if (access(opt.socket, F_OK) < 0) {
            json_object_put(args);
            set_error("no vfio-user server socket %s: %s", opt.socket,
                      strerror(errno));
            return refused(r, errbuf);
        }
        json_object_object_add(args, "driver",
                               json_object_new_string("vfio-user-nvme"));
        json_object_object_add(sock, "type", json_object_new_string("unix"));
        json_object_object_add(sock, "path",
                               json_object_new_string(opt.socket));
        json_object_object_add(args, "socket", sock);
    } else {
        char dir[PATH_MAX];
        const char *src = opt.host;

        if (opt.sysfsdev) {
            size_t n;

            snprintf(dir, sizeof(dir), "%s", opt.sysfsdev);
            for (n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) {
                dir[n - 1] = '\0';
            }
            src = strrchr(dir, '/');
            src = src ? src + 1 : dir;
        }
        if (!parse_bdf(src, bdf, sizeof(bdf))) {
            json_object_put(args);
            set_error("'%s' is not a PCI address (DDDD:BB:SS.F)", src);
            return refused(r, errbuf);
        }
        pid = find_qemu_pid(conn, dom);
        if (pid < 0 || !prepare_vfio(conn, dom, bdf, pid, &detached)) {
            json_object_put(args);
            if (detached) {
                reattach(conn, bdf);
            }
            return refused(r, errbuf);
        }
        json_object_object_add(args, "driver",
                               json_object_new_string("vfio-nvme"));
        json_object_object_add(args, opt.sysfsdev ? "sysfsdev" : "host",
                               json_object_new_string(opt.sysfsdev ?
                                                      opt.sysfsdev : bdf));
    }

    w->device = id;
    w->is_add = true;
    t0 = now_ms();
    ret = qmp(dom, "device_add", args);
    if (!ret) {
        if (detached) {
            reattach(conn, bdf);
        }
        if (strstr(errbuf, "/dev/vfio/") &&
            strstr(errbuf, "Operation not permitted")) {
            strncat(errbuf, " (libvirt's device cgroup: add /dev/vfio/vfio "
                    "and the group node to cgroup_device_acl in qemu.conf)",
                    sizeof(errbuf) - strlen(errbuf) - 1);
        } else if (strstr(errbuf, "/dev/vfio/") &&
                   strstr(errbuf, "Permission denied")) {
            strncat(errbuf, " (libvirt's security driver confines QEMU: "
                    "allow /dev/vfio/vfio and the group node in the "
                    "domain's AppArmor profile or SELinux label)",
                    sizeof(errbuf) - strlen(errbuf) - 1);
        }
        return failed(r, errbuf);
    }
    json_object_put(ret);
    wait_events(w, opt.timeout_s);
    result_from_wait(r, w, t0);
    if (detached && w->got_deleted) {
        reattach(conn, bdf);    /* the add failed and QEMU let it go */
    }
    return result_print(r);
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

static int cmd_remove(virDomainPtr dom, Waiter *w, const char *id,
                      bool surprise)
{
    json_object *r = result_new(surprise ? "surprise-remove" : "remove",
                                id, NULL);
    json_object *info, *p, *args, *ret;
    char path[512], removal[32] = "orderly";
    const char *port;
    double t0;

    info = query(dom);
    if (!info) {
        return query_failed(r);
    }
    p = find_port(info, "device", id);
    if (!p || !str_of(p, "id")) {
        set_error("no passthrough device '%s' in the domain (see status)",
                  id);
        json_object_put(info);
        return refused(r, errbuf);
    }
    port = str_of(p, "id");
    json_object_object_add(r, "port", json_object_new_string(port));
    snprintf(path, sizeof(path), "/machine/peripheral/%s", port);
    json_object_put(info);
    port = str_of(r, "port");

    if (surprise &&
        (!port_removal(dom, path, NULL, removal, sizeof(removal)) ||
         !port_removal(dom, path, "surprise", NULL, 0))) {
        return failed(r, errbuf);
    }

    w->device = id;
    w->is_add = false;
    args = json_object_new_object();
    json_object_object_add(args, "id", json_object_new_string(id));
    t0 = now_ms();
    ret = qmp(dom, "device_del", args);
    if (ret) {
        json_object_put(ret);
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
"  add PORT ID --host BDF     hot-add the host NVMe BDF (kernel VFIO)\n"
"  add PORT ID --sysfsdev DIR the same, by its sysfs folder\n"
"  remove ID                  orderly removal: the guest releases it\n"
"  surprise-remove ID         take it away now, without the guest\n"
"  watch                      print PASSTHRU_HOTPLUG and DEVICE_DELETED\n"
"                             events until the timeout (0: forever)\n"
"\n"
"Options:\n"
"  -c, --connect URI    libvirt connection (default: libvirt's default)\n"
"  -j, --json           print results as JSON, one object per line\n"
"  -t, --timeout SEC    wait at most SEC for an operation (default 60,\n"
"                       0: no limit)\n"
"      --managed        detach a host NVMe from its host driver first\n"
"      --qemu-pid PID   QEMU's pid, if libvirt's pid file is elsewhere\n"
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
        { "managed", no_argument, NULL, 'm' },
        { "qemu-pid", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    Waiter w = { 0 };
    const char *name, *cmd;
    uint64_t num;
    int c, cb = -1, life = -1, status = EXIT_REFUSED;

    while ((c = getopt_long(argc, argv, "c:jt:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt.uri = optarg;
            break;
        case 'j':
            opt.json = true;
            break;
        case 't':
            if (!parse_u64(optarg, 10, &num) || num > 86400) {
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
        case 'm':
            opt.managed = true;
            break;
        case 'p':
            if (!parse_u64(optarg, 10, &num) || !num || num > INT32_MAX) {
                fprintf(stderr, "%s: --qemu-pid wants a pid, not '%s'\n",
                        progname, optarg);
                return EXIT_REFUSED;
            }
            opt.qemu_pid = num;
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
    opt.root = getenv("VIRT_NVME_HOTPLUG_ROOT");

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
    virConnectRegisterCloseCallback(conn, on_close, &w, NULL);

    if (!strcmp(cmd, "status")) {
        status = cmd_status(dom);
    } else if (!strcmp(cmd, "watch")) {
        status = cmd_watch(&w);
    } else if (!strcmp(cmd, "add")) {
        status = cmd_add(conn, dom, &w, argv[0], argv[1]);
    } else {
        status = cmd_remove(dom, &w, argv[0],
                            !strcmp(cmd, "surprise-remove"));
    }

out:
    if (life >= 0) {
        virConnectDomainEventDeregisterAny(conn, life);
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
