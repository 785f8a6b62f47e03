/*
 * virt-nvme-hotplug: what the host does with one of its NVMe controllers
 *
 * libvirt prepares a <hostdev managed='yes'> itself (detach from the
 * host driver, IOMMU group, device node owner, cgroup, memory lock), but
 * it does not ask whether the host still uses the device: it unbinds an
 * NVMe with a mounted file system as readily as an idle one.  This file
 * answers that question from sysfs and /proc, before anything is asked
 * of libvirt.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "host-nvme.h"

#define NVME_CLASS 0x010802

const char *host_root;

static void __attribute__((format(printf, 3, 4)))
path_of(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(buf, size, "%s", host_root ? host_root : "");

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

/* Basename of the symlink PATH's target */
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

/* Does a line of the table file FILE start with DEV?  Its second field */
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

bool host_parse_bdf(const char *in, char *bdf, size_t size)
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

bool host_nvme_check(const char *bdf, char *why, size_t size)
{
    char dev[PATH_MAX], path[PATH_MAX], val[256], drv[256], use[512];
    unsigned class;
    int n = -1;

    path_of(dev, sizeof(dev), "/sys/bus/pci/devices/%s", bdf);
    snprintf(path, sizeof(path), "%s/class", dev);
    if (!read_line(path, val, sizeof(val))) {
        snprintf(why, size, "no PCI device %s on this host", bdf);
        return false;
    }
    sscanf(val, "%x%n", &class, &n);
    if (n < 0 || val[n] || class != NVME_CLASS) {
        snprintf(why, size, "%s is not an NVMe controller: class %s, not "
                 "0x%06x", bdf, val, NVME_CLASS);
        return false;
    }
    snprintf(path, sizeof(path), "%s/driver", dev);
    if (link_name(path, drv, sizeof(drv)) && !strcmp(drv, "vfio-pci")) {
        return true;            /* the host cannot use it */
    }
    if (nvme_in_use(dev, use, sizeof(use))) {
        snprintf(why, size, "%s is in use by the host: %s", bdf, use);
        return false;
    }
    return true;
}
