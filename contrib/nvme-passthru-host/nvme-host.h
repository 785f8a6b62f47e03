/*
 * The host side of NVMe passthrough: which NVMe controllers the host
 * has, whether the host uses them, binding them to vfio-pci and back,
 * and whether the host can pass a device through at all (IOMMU).
 *
 * Every path is read under a root folder (nph_set_root()), "/" unless
 * a test points it at a synthetic tree of sys/, dev/, proc/, run/ and
 * etc/.
 *
 * A tool that is about to give the host NVMe BDF to QEMU:
 *
 *     char bdf[NPH_BDF_LEN], why[1024];
 *     NphDevice d;
 *
 *     nph_set_root(getenv("MY_TOOL_ROOT"));       (NULL: "/")
 *     if (!nph_parse_bdf(arg, bdf, sizeof(bdf))) ... not an address
 *     if (!nph_device_find(bdf, &d, why, sizeof(why)) ||
 *         nph_can_pass(&d, why, sizeof(why)) != NPH_DONE) ... refuse: why
 *
 * nph_can_pass() covers the class, the IOMMU group (present, viable,
 * not shared) and the host's use (nph_nvme_in_use()); nph_enable()
 * checks the same, then binds to vfio-pci and verifies it.  On a device
 * already bound to vfio-pci the host has no controller to use, and the
 * class and group checks still hold (QEMU wants it alone in its group
 * too).  Scanning other users' /proc/PID/fd needs root.
 * contrib/virt-nvme-hotplug/ is such a tool.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef NVME_HOST_H
#define NVME_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NPH_NVME_CLASS      0x010802
#define NPH_BDF_LEN         16          /* "dddd:bb:ss.f" + NUL */
#define NPH_MAX_MEMBERS     32
#define NPH_MAX_REASONS     8
#define NPH_REASON_LEN      256

#define NPH_PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))

/* sysfs.c: paths under the root, small file helpers */
void nph_set_root(const char *root);
const char *nph_root(void);             /* "" for "/" */
/* A --root option ROOT (NULL or "": none); false with ERR if not there */
bool nph_use_root(const char *root, char *err, size_t size);
void NPH_PRINTF_LIKE(3, 4) nph_path(char *buf, size_t size,
                                    const char *fmt, ...);
bool nph_read_line(const char *path, char *buf, size_t size);
bool nph_write_str(const char *path, const char *val, char *err,
                   size_t errsize);
bool nph_link_name(const char *path, char *buf, size_t size);
bool nph_dir_has_entries(const char *path);
bool nph_parse_bdf(const char *in, char *bdf, size_t size);
bool nph_parse_u64(const char *s, int base, uint64_t *out);

/* pci.c: one PCI device as sysfs shows it */
typedef struct NphMember {
    char bdf[NPH_BDF_LEN];
    char driver[64];                    /* "" when unbound */
} NphMember;

typedef struct NphDevice {
    char bdf[NPH_BDF_LEN];
    uint32_t class_code;
    unsigned vendor, device;
    char driver[64];                    /* "" when unbound */
    char driver_override[64];           /* "" when none */
    char controller[32];                /* nvmeX when bound to nvme */
    char model[64], serial[64], firmware[32];
    int iommu_group;                    /* -1: none (no IOMMU) */
    int n_members;                      /* the group's other devices */
    NphMember members[NPH_MAX_MEMBERS];
    char slot[64];                      /* physical slot, "" if none */
} NphDevice;

bool nph_device_read(const char *bdf, NphDevice *d);
/* The same; if there is none, MSG says "no PCI device BDF on this host" */
bool nph_device_find(const char *bdf, NphDevice *d, char *msg, size_t size);
/* The BDFs of every NVMe controller, sorted; returns the count */
int nph_list_nvme(char (**bdfs)[NPH_BDF_LEN]);
bool nph_is_vfio(const NphDevice *d);   /* bound to vfio-pci */

/* inuse.c: does the host use the controller? */
typedef struct NphUse {
    int n;
    char why[NPH_MAX_REASONS][NPH_REASON_LEN];
} NphUse;

bool nph_nvme_in_use(const char *bdf, NphUse *use);
void nph_use_join(const NphUse *use, char *buf, size_t size);

/* bind.c: vfio-pci and back */
typedef enum NphResult {
    NPH_DONE = 0,
    NPH_FAILED = 1,
    NPH_REFUSED = 2,
} NphResult;

typedef struct NphBindOpts {
    double timeout_s;                   /* wait for the kernel */
    bool persist;                       /* keep it across reboots */
    const char *self;                   /* our path, for the udev rule */
} NphBindOpts;

/* Is D fit for passthrough?  If not, MSG says why (NPH_REFUSED) */
NphResult nph_can_pass(const NphDevice *d, char *msg, size_t size);
NphResult nph_enable(const char *bdf, const NphBindOpts *o, char *msg,
                     size_t size);
NphResult nph_disable(const char *bdf, const NphBindOpts *o, char *msg,
                      size_t size);
/* A process holding /dev/vfio/GROUP open (a VM): "process PID (comm)" */
bool nph_group_user(int group, char *who, size_t size);
/* The persistent override for BDF: is there one? */
bool nph_persisted(const char *bdf);
const char *nph_rules_path(char *buf, size_t size);

/* iommu.c: can this host pass devices through? */
typedef enum NphLevel { NPH_OK, NPH_WARN, NPH_FAIL } NphLevel;

typedef struct NphCheck {
    const char *name;                   /* short, stable: "iommu" */
    NphLevel level;
    char detail[512];                   /* what was found */
    char fix[512];                      /* what to do, "" if nothing */
} NphCheck;

typedef void (*NphCheckFn)(const NphCheck *c, void *opaque);
/* Run every host check; PID > 0 adds the QEMU process checks */
int nph_check_host(long pid, NphCheckFn fn, void *opaque);
/* The pid of libvirt's QEMU for domain NAME (run/libvirt/qemu/NAME.pid) */
long nph_vm_pid(const char *name, char *err, size_t errsize);

#endif
