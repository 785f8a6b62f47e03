/*
 * Handing an NVMe controller to vfio-pci and back, the way driverctl
 * and libvirt's nodedev-detach do it: driver_override, unbind from the
 * current driver, drivers_probe; then read the driver link again and
 * look for /dev/vfio/N, because only the kernel's answer counts.  A bind
 * that did not happen is rolled back, so the host keeps its device.
 *
 * --persist writes one udev rule a device (rules_path(), below): at the
 * device's "add" event it sets driver_override before the nvme module
 * is loaded (ATTR assignments run before the RUN list, where udev loads
 * drivers), and runs "nvme-passthru-host enable BDF", which takes the
 * device from nvme if that was already bound (an nvme driver loaded by
 * the initramfs for the root disk) and checks again that the host does
 * not use it.  This is driverctl's design (a rule calling the tool),
 * keyed like driverctl by PCI address, and also by vendor:device so a
 * different drive put into the same slot is not taken.  modprobe.d's
 * "options vfio-pci ids=" would take every drive of the same model,
 * often the root disk's twin.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "nvme-host.h"

#define RULES_FILE "/etc/udev/rules.d/60-nvme-passthru-host.rules"

const char *nph_rules_path(char *buf, size_t size)
{
    nph_path(buf, size, RULES_FILE);
    return buf;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* modprobe MODULE, on the host only (never in a synthetic tree) */
static bool modprobe(const char *module)
{
    pid_t pid;
    int status;

    if (nph_root()[0]) {
        return false;
    }
    pid = fork();
    if (pid == 0) {
        execlp("modprobe", "modprobe", "-q", module, (char *)NULL);
        _exit(127);
    }
    return pid > 0 && waitpid(pid, &status, 0) == pid &&
        WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Is the PCI driver DRV registered?  Load its module if not */
static bool have_driver(const char *drv)
{
    char path[PATH_MAX];

    nph_path(path, sizeof(path), "/sys/bus/pci/drivers/%s", drv);
    if (access(path, F_OK) == 0) {
        return true;
    }
    modprobe(drv);
    return access(path, F_OK) == 0;
}

NphResult nph_can_pass(const NphDevice *d, char *msg, size_t size)
{
    NphUse use;
    char why[NPH_MAX_REASONS * NPH_REASON_LEN];
    int i;

    if (d->class_code != NPH_NVME_CLASS) {
        snprintf(msg, size, "%s is not an NVMe controller: class 0x%06x, "
                 "not 0x%06x", d->bdf, d->class_code, NPH_NVME_CLASS);
        return NPH_REFUSED;
    }
    if (d->iommu_group < 0) {
        snprintf(msg, size, "%s has no IOMMU group: the host runs without "
                 "an IOMMU (see 'nvme-passthru-host check')", d->bdf);
        return NPH_REFUSED;
    }
    for (i = 0; i < d->n_members; i++) {
        if (d->members[i].driver[0] &&
            strcmp(d->members[i].driver, "vfio-pci")) {
            snprintf(msg, size, "IOMMU group %d of %s is not viable: it "
                     "also holds %s, bound to the host driver %s",
                     d->iommu_group, d->bdf, d->members[i].bdf,
                     d->members[i].driver);
            return NPH_REFUSED;
        }
    }
    if (d->n_members) {
        snprintf(msg, size, "IOMMU group %d of %s is shared with %s (%s): "
                 "a hotplug device must be alone in its group (put it "
                 "behind a port with ACS)", d->iommu_group, d->bdf,
                 d->members[0].bdf,
                 d->members[0].driver[0] ? d->members[0].driver :
                 "no driver");
        return NPH_REFUSED;
    }
    if (nph_nvme_in_use(d->bdf, &use)) {
        nph_use_join(&use, why, sizeof(why));
        snprintf(msg, size, "%s is in use by the host: %s", d->bdf, why);
        return NPH_REFUSED;
    }
    return NPH_DONE;
}

/* ---------------------------------------------------------------- */
/* The persistent rule */

static bool rules_update(const NphDevice *d, bool add, const char *self,
                         char *err, size_t errsize)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], key[64], line[2048];
    FILE *in, *out;
    bool any = false, ok = true;
    char *dir;

    nph_rules_path(path, sizeof(path));
    snprintf(key, sizeof(key), "KERNEL==\"%s\"", d->bdf);
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    dir = strdup(path);
    *strrchr(dir, '/') = '\0';
    if (add && mkdir(dir, 0755) < 0 && errno != EEXIST) {
        /* a missing etc/udev: make it */
        char parent[PATH_MAX];

        snprintf(parent, sizeof(parent), "%s", dir);
        *strrchr(parent, '/') = '\0';
        mkdir(parent, 0755);
        mkdir(dir, 0755);
    }
    free(dir);
    out = fopen(tmp, "w");
    if (!out) {
        snprintf(err, errsize, "cannot write %s: %s", tmp, strerror(errno));
        return false;
    }
    fprintf(out, "# NVMe controllers the host gives to vfio-pci at boot "
            "(nvme-passthru-host\n# enable --persist); "
            "'nvme-passthru-host disable --persist BDF' removes one.\n");
    in = fopen(path, "r");
    while (in && fgets(line, sizeof(line), in)) {
        if (line[0] == '#' || line[0] == '\n' || strstr(line, key)) {
            continue;
        }
        fputs(line, out);
        any = true;
    }
    if (in) {
        fclose(in);
    }
    if (add) {
        fprintf(out, "ACTION==\"add\", SUBSYSTEM==\"pci\", %s, "
                "ATTR{vendor}==\"0x%04x\", ATTR{device}==\"0x%04x\", "
                "ATTR{driver_override}=\"vfio-pci\", "
                "RUN+=\"%s enable %s\"\n", key, d->vendor, d->device,
                self, d->bdf);
        any = true;
    }
    if (fclose(out) != 0) {
        ok = false;
    }
    if (ok && any) {
        ok = rename(tmp, path) == 0;
    } else if (ok) {
        unlink(tmp);
        ok = unlink(path) == 0 || errno == ENOENT;
    }
    if (!ok) {
        snprintf(err, errsize, "cannot update %s: %s", path,
                 strerror(errno));
        unlink(tmp);
    }
    return ok;
}

bool nph_persisted(const char *bdf)
{
    char path[PATH_MAX], key[64], line[2048];
    FILE *f;
    bool found = false;

    nph_rules_path(path, sizeof(path));
    snprintf(key, sizeof(key), "KERNEL==\"%s\"", bdf);
    f = fopen(path, "r");
    while (f && !found && fgets(line, sizeof(line), f)) {
        found = line[0] != '#' && strstr(line, key);
    }
    if (f) {
        fclose(f);
    }
    return found;
}

/* ---------------------------------------------------------------- */

/* The driver of BDF now: "" unbound; false if the device is gone */
static bool current_driver(const char *bdf, char *drv, size_t size)
{
    char dev[PATH_MAX], path[PATH_MAX];

    nph_path(dev, sizeof(dev), "/sys/bus/pci/devices/%s", bdf);
    if (access(dev, F_OK) < 0) {
        return false;
    }
    snprintf(path, sizeof(path), "%s/driver", dev);
    if (!nph_link_name(path, drv, size)) {
        drv[0] = '\0';
    }
    return true;
}

/*
 * Move BDF to the driver WANT (with driver_override OVERRIDE, "\n" to
 * clear it) and wait until the kernel shows it, or the timeout.
 */
static NphResult rebind(const NphDevice *d, const char *override,
                        const char *want, const NphBindOpts *o,
                        char *msg, size_t size)
{
    char path[PATH_MAX], err[PATH_MAX + 128], drv[64], node[PATH_MAX];
    double deadline;
    bool gone = false, vfio = !strcmp(want, "vfio-pci");

    nph_path(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override",
             d->bdf);
    if (!nph_write_str(path, override, err, sizeof(err))) {
        snprintf(msg, size, "%s", err);
        return NPH_FAILED;
    }
    /*
     * The driver now, not when D was read: a just-inserted device may
     * have been bound by nvme's probe since.  From here on the override
     * keeps any other driver off it.
     */
    if (!current_driver(d->bdf, drv, sizeof(drv))) {
        snprintf(msg, size, "%s disappeared while it was rebound", d->bdf);
        return NPH_FAILED;
    }
    if (drv[0] && strcmp(drv, want)) {
        nph_path(path, sizeof(path), "/sys/bus/pci/drivers/%s/unbind", drv);
        if (!nph_write_str(path, d->bdf, err, sizeof(err))) {
            snprintf(msg, size, "unbinding from %s failed: %s", drv, err);
            return NPH_FAILED;
        }
    }
    nph_path(path, sizeof(path), "/sys/bus/pci/drivers_probe");
    if (!nph_write_str(path, d->bdf, err, sizeof(err))) {
        snprintf(msg, size, "%s", err);
        return NPH_FAILED;
    }
    nph_path(node, sizeof(node), "/dev/vfio/%d", d->iommu_group);
    deadline = now_s() + o->timeout_s;
    for (;;) {
        gone = !current_driver(d->bdf, drv, sizeof(drv));
        if (!gone && !strcmp(drv, want) &&
            (!vfio || access(node, F_OK) == 0)) {
            return NPH_DONE;
        }
        if (gone || now_s() >= deadline) {
            break;
        }
        sleep_ms(20);
    }
    if (gone) {
        snprintf(msg, size, "%s disappeared while it was rebound", d->bdf);
    } else if (strcmp(drv, want)) {
        snprintf(msg, size, "the kernel did not bind %s to %s within "
                 "%.1f s: %s", d->bdf, want, o->timeout_s,
                 drv[0] ? "it is bound to " : "it has no driver");
        if (drv[0]) {
            strncat(msg, drv, size - strlen(msg) - 1);
        }
    } else {
        snprintf(msg, size, "%s is bound to vfio-pci, but %s did not "
                 "appear within %.1f s", d->bdf, node, o->timeout_s);
    }
    return NPH_FAILED;
}

/* After a failed bind to vfio-pci: give the device back to the host */
static void roll_back(const NphDevice *d, char *msg, size_t size)
{
    char path[PATH_MAX], err[PATH_MAX + 128], drv[64];
    size_t len = strlen(msg);

    if (!current_driver(d->bdf, drv, sizeof(drv))) {
        return;
    }
    nph_path(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override",
             d->bdf);
    nph_write_str(path, "\n", err, sizeof(err));
    if (drv[0] && strcmp(drv, d->driver)) {
        nph_path(path, sizeof(path), "/sys/bus/pci/drivers/%s/unbind", drv);
        nph_write_str(path, d->bdf, err, sizeof(err));
    }
    if (strcmp(drv, d->driver)) {
        nph_path(path, sizeof(path), "/sys/bus/pci/drivers_probe");
        nph_write_str(path, d->bdf, err, sizeof(err));
    }
    snprintf(msg + len, size - len, "; driver_override cleared%s",
             strcmp(drv, d->driver) ? " and the device probed again" : "");
}

NphResult nph_enable(const char *bdf, const NphBindOpts *o, char *msg,
                     size_t size)
{
    NphDevice d;
    NphResult r;
    char node[PATH_MAX], err[PATH_MAX + 128];

    if (!nph_device_find(bdf, &d, msg, size)) {
        return NPH_REFUSED;
    }
    nph_path(node, sizeof(node), "/dev/vfio/%d", d.iommu_group);
    if (nph_is_vfio(&d) && d.iommu_group >= 0 &&
        access(node, F_OK) == 0) {
        snprintf(msg, size, "%s was already bound to vfio-pci (IOMMU group "
                 "%d, /dev/vfio/%d)", bdf, d.iommu_group, d.iommu_group);
        r = NPH_DONE;
    } else {
        r = nph_can_pass(&d, msg, size);
        if (r != NPH_DONE) {
            return r;
        }
        if (!have_driver("vfio-pci")) {
            snprintf(msg, size, "the vfio-pci driver is not loaded and "
                     "'modprobe vfio-pci' did not load it");
            return NPH_FAILED;
        }
        r = rebind(&d, "vfio-pci", "vfio-pci", o, msg, size);
        if (r != NPH_DONE) {
            roll_back(&d, msg, size);
            return r;
        }
        snprintf(msg, size, "%s is bound to vfio-pci (was %s), IOMMU group "
                 "%d, /dev/vfio/%d", bdf, d.driver[0] ? d.driver :
                 "unbound", d.iommu_group, d.iommu_group);
    }
    if (o->persist) {
        if (!rules_update(&d, true, o->self, err, sizeof(err))) {
            snprintf(msg, size, "%s", err);
            return NPH_FAILED;
        }
        strncat(msg, "; kept across reboots", size - strlen(msg) - 1);
    }
    return NPH_DONE;
}

/* A process with /dev/vfio/GROUP open: QEMU using the device */
bool nph_group_user(int group, char *who, size_t size)
{
    char dir[PATH_MAX], fd[PATH_MAX + 300], link[PATH_MAX], want[64];
    char comm[64];
    FILE *f;
    bool found = false;
    DIR *procs, *fds;
    struct dirent *p, *e;

    snprintf(want, sizeof(want), "/dev/vfio/%d", group);
    nph_path(dir, sizeof(dir), "/proc");
    procs = opendir(dir);
    while (procs && !found && (p = readdir(procs))) {
        if (p->d_name[0] < '0' || p->d_name[0] > '9') {
            continue;
        }
        snprintf(fd, sizeof(fd), "%s/%s/fd", dir, p->d_name);
        fds = opendir(fd);
        while (fds && !found && (e = readdir(fds))) {
            ssize_t n;

            snprintf(fd, sizeof(fd), "%s/%s/fd/%s", dir, p->d_name,
                     e->d_name);
            n = readlink(fd, link, sizeof(link) - 1);
            if (n > 0) {
                link[n] = '\0';
                found = !strcmp(link, want);
            }
        }
        if (fds) {
            closedir(fds);
        }
        if (found) {
            snprintf(fd, sizeof(fd), "%s/%s/comm", dir, p->d_name);
            f = fopen(fd, "r");
            comm[0] = '\0';
            if (f) {
                if (fgets(comm, sizeof(comm), f)) {
                    comm[strcspn(comm, "\n")] = '\0';
                }
                fclose(f);
            }
            snprintf(who, size, "process %s (%s)", p->d_name,
                     comm[0] ? comm : "?");
        }
    }
    if (procs) {
        closedir(procs);
    }
    return found;
}

NphResult nph_disable(const char *bdf, const NphBindOpts *o, char *msg,
                      size_t size)
{
    NphDevice d;
    NphResult r = NPH_DONE;
    char who[128], err[PATH_MAX + 128];

    if (!nph_device_find(bdf, &d, msg, size)) {
        return NPH_REFUSED;
    }
    if (d.class_code != NPH_NVME_CLASS) {
        snprintf(msg, size, "%s is not an NVMe controller: class 0x%06x, "
                 "not 0x%06x", bdf, d.class_code, NPH_NVME_CLASS);
        return NPH_REFUSED;
    }
    if (!nph_is_vfio(&d) && strcmp(d.driver_override, "vfio-pci")) {
        snprintf(msg, size, "%s was not passed through (driver %s)", bdf,
                 d.driver[0] ? d.driver : "none");
    } else if (d.iommu_group >= 0 && nph_group_user(d.iommu_group, who,
                                                     sizeof(who))) {
        snprintf(msg, size, "%s is in use by a VM: /dev/vfio/%d is open in "
                 "%s; remove it from the VM first (device_del)", bdf,
                 d.iommu_group, who);
        return NPH_REFUSED;
    } else {
        if (!have_driver("nvme")) {
            snprintf(msg, size, "the nvme driver is not loaded and "
                     "'modprobe nvme' did not load it");
            return NPH_FAILED;
        }
        r = rebind(&d, "\n", "nvme", o, msg, size);
        if (r != NPH_DONE) {
            return r;
        }
        snprintf(msg, size, "%s is bound to nvme again", bdf);
    }
    if (o->persist) {
        if (!rules_update(&d, false, o->self, err, sizeof(err))) {
            snprintf(msg, size, "%s", err);
            return NPH_FAILED;
        }
        strncat(msg, "; no longer passed through at boot",
                size - strlen(msg) - 1);
    }
    return r;
}
