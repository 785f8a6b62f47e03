/*
 * PCI devices as sysfs shows them: identity, driver, IOMMU group and
 * its members, physical slot, and the NVMe controller's model, serial
 * and firmware while the nvme driver has it.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvme-host.h"

static bool read_hex(const char *dev, const char *attr, uint64_t *v)
{
    char path[PATH_MAX], val[64];

    snprintf(path, sizeof(path), "%s/%s", dev, attr);
    return nph_read_line(path, val, sizeof(val)) &&
        nph_parse_u64(val, 16, v);
}

/*
 * The physical slot of BDF, from slots/: the kernel writes a slot's
 * address as dddd:bb:ss (10 characters: the device part of the BDF), or
 * dddd:bb (7) for a slot that spans its bus (slot number 0xff).
 */
static void find_slot(const char *bdf, char *slot, size_t size)
{
    char dir[PATH_MAX], path[PATH_MAX], addr[64];
    DIR *d;
    struct dirent *e;

    slot[0] = '\0';
    nph_path(dir, sizeof(dir), "/sys/bus/pci/slots");
    d = opendir(dir);
    while (d && !slot[0] && (e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s/address", dir, e->d_name);
        if (nph_read_line(path, addr, sizeof(addr)) &&
            (strlen(addr) == 10 || strlen(addr) == 7) &&
            !strncmp(addr, bdf, strlen(addr))) {
            snprintf(slot, size, "%s", e->d_name);
        }
    }
    if (d) {
        closedir(d);
    }
}

/*
 * One identity attribute of controller folder CTRL.  Until the driver
 * has identified the controller (a drive just inserted), Linux 6.1
 * prints its model, serial and firmware_rev from a subsystem it does not
 * have yet: the file reads "(efault)" (printk's text for a bad pointer).
 * That, or "(null)", is no value.
 */
static void read_ident(const char *ctrl, const char *attr, char *buf,
                       size_t size)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", ctrl, attr);
    if (!nph_read_line(path, buf, size) || !strcmp(buf, "(efault)") ||
        !strcmp(buf, "(null)")) {
        buf[0] = '\0';
    }
}

/* The nvme driver's controller (nvmeX) of DEV, and its identity */
static void read_controller(const char *dev, NphDevice *d)
{
    char path[PATH_MAX], ctrl[PATH_MAX];
    DIR *dir;
    struct dirent *e;

    snprintf(path, sizeof(path), "%s/nvme", dev);
    dir = opendir(path);
    while (dir && !d->controller[0] && (e = readdir(dir))) {
        unsigned n;
        char extra;

        if (sscanf(e->d_name, "nvme%u%c", &n, &extra) == 1) {
            snprintf(d->controller, sizeof(d->controller), "%s", e->d_name);
        }
    }
    if (dir) {
        closedir(dir);
    }
    if (!d->controller[0]) {
        return;
    }
    snprintf(ctrl, sizeof(ctrl), "%s/%s", path, d->controller);
    read_ident(ctrl, "model", d->model, sizeof(d->model));
    read_ident(ctrl, "serial", d->serial, sizeof(d->serial));
    read_ident(ctrl, "firmware_rev", d->firmware, sizeof(d->firmware));
}

static int cmp_member(const void *a, const void *b)
{
    return strcmp(((const NphMember *)a)->bdf, ((const NphMember *)b)->bdf);
}

static void read_group(const char *dev, NphDevice *d)
{
    char path[PATH_MAX], name[64];
    DIR *dir;
    struct dirent *e;
    uint64_t g;

    d->iommu_group = -1;
    snprintf(path, sizeof(path), "%s/iommu_group", dev);
    if (!nph_link_name(path, name, sizeof(name)) ||
        !nph_parse_u64(name, 10, &g) || g > INT32_MAX) {
        return;
    }
    d->iommu_group = g;
    nph_path(path, sizeof(path), "/sys/kernel/iommu_groups/%d/devices",
             d->iommu_group);
    dir = opendir(path);
    while (dir && (e = readdir(dir))) {
        NphMember *m;
        char drv[PATH_MAX];

        if (e->d_name[0] == '.' || !strcmp(e->d_name, d->bdf) ||
            d->n_members == NPH_MAX_MEMBERS) {
            continue;
        }
        m = &d->members[d->n_members++];
        snprintf(m->bdf, sizeof(m->bdf), "%.15s", e->d_name);
        nph_path(drv, sizeof(drv), "/sys/bus/pci/devices/%s/driver", m->bdf);
        if (!nph_link_name(drv, m->driver, sizeof(m->driver))) {
            m->driver[0] = '\0';
        }
    }
    if (dir) {
        closedir(dir);
    }
    qsort(d->members, d->n_members, sizeof(d->members[0]), cmp_member);
}

/* Read the PCI device BDF (normalized); false if there is none */
bool nph_device_read(const char *bdf, NphDevice *d)
{
    char dev[PATH_MAX], path[PATH_MAX];
    uint64_t v;

    memset(d, 0, sizeof(*d));
    snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
    nph_path(dev, sizeof(dev), "/sys/bus/pci/devices/%s", bdf);
    if (!read_hex(dev, "class", &v)) {
        return false;
    }
    d->class_code = v;
    if (read_hex(dev, "vendor", &v)) {
        d->vendor = v;
    }
    if (read_hex(dev, "device", &v)) {
        d->device = v;
    }
    snprintf(path, sizeof(path), "%s/driver", dev);
    if (!nph_link_name(path, d->driver, sizeof(d->driver))) {
        d->driver[0] = '\0';
    }
    snprintf(path, sizeof(path), "%s/driver_override", dev);
    if (!nph_read_line(path, d->driver_override,
                       sizeof(d->driver_override)) ||
        !strcmp(d->driver_override, "(null)")) {
        d->driver_override[0] = '\0';
    }
    if (!strcmp(d->driver, "nvme")) {
        read_controller(dev, d);
    }
    read_group(dev, d);
    find_slot(bdf, d->slot, sizeof(d->slot));
    return true;
}

bool nph_device_find(const char *bdf, NphDevice *d, char *msg, size_t size)
{
    if (!nph_device_read(bdf, d)) {
        snprintf(msg, size, "no PCI device %s on this host", bdf);
        return false;
    }
    return true;
}

bool nph_is_vfio(const NphDevice *d)
{
    return !strcmp(d->driver, "vfio-pci");
}

static int cmp_bdf(const void *a, const void *b)
{
    return strcmp(a, b);
}

int nph_list_nvme(char (**bdfs)[NPH_BDF_LEN])
{
    char dir[PATH_MAX], path[PATH_MAX];
    char (*list)[NPH_BDF_LEN] = NULL;
    int n = 0, cap = 0;
    DIR *d;
    struct dirent *e;

    nph_path(dir, sizeof(dir), "/sys/bus/pci/devices");
    d = opendir(dir);
    while (d && (e = readdir(d))) {
        char bdf[NPH_BDF_LEN];
        uint64_t cls;

        if (e->d_name[0] == '.' ||
            !nph_parse_bdf(e->d_name, bdf, sizeof(bdf))) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (!read_hex(path, "class", &cls) || cls != NPH_NVME_CLASS) {
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = realloc(list, cap * sizeof(*list));
            if (!list) {
                abort();
            }
        }
        snprintf(list[n++], NPH_BDF_LEN, "%s", bdf);
    }
    if (d) {
        closedir(d);
    }
    if (n) {
        qsort(list, n, sizeof(*list), cmp_bdf);
    }
    *bdfs = list;
    return n;
}
