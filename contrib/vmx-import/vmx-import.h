/*
 * virt-vmx-import: a VMware .vmx file to this project's libvirt domain
 *
 * Three steps, a file each:
 *
 *     vmx.c            read the file: KEY = "VALUE" lines, each with its
 *                      line number; keys looked up without regard to case,
 *                      as VMware does; the messages about the file
 *     vmx-map.c        what the keys mean: a VmxDomain (memory, vCPUs,
 *                      firmware, disks, NICs, one passthrough device a
 *                      pciPassthruN checked against the host with the host
 *                      module, contrib/nvme-passthru-host/nvme-host.h)
 *     domain-writer.c  the VmxDomain as libvirt domain XML (libxml2), laid
 *                      out as docs/config/nvme-passthru-hotplug.xml
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef VMX_IMPORT_H
#define VMX_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nvme-host.h"

#define VMX_MAX_PASSTHRU    32      /* the fork's passthrough NVMe limit */
#define VMX_MAX_VCPUS       128     /* the fork's vCPU limit */
#define VMX_MAX_DISKS       6       /* q35's SATA controller (AHCI) ports */
#define VMX_MAX_NICS        10      /* VMware's ethernet0 to ethernet9 */

/* vmx.c: the file */

typedef struct VmxEntry {
    char *key;                  /* as written */
    char *value;                /* |XX escapes decoded */
    int line;
    bool used;                  /* looked at by the mapping */
} VmxEntry;

/* How bad a message is; the order in which they are printed */
typedef enum VmxLevel {
    VMX_ERROR,                  /* no domain is written */
    VMX_REFUSED,                /* one passthrough device is left out */
    VMX_WARNING,                /* carried over differently */
    VMX_DROPPED,                /* not carried over */
    VMX_NOTE,                   /* for the record */
} VmxLevel;

typedef struct VmxMessage {
    VmxLevel level;
    int line;                   /* 0: not about one line */
    char *text;
} VmxMessage;

typedef struct Vmx {
    char *file;                 /* the path, for messages */
    VmxEntry *entries;
    int n_entries;
    VmxMessage *msgs;
    int n_msgs;
} Vmx;

/*
 * Read PATH.  NULL only when it cannot be read (the reason in WHY); lines
 * that are not KEY = "VALUE" are VMX_ERROR messages of the result.
 */
Vmx *vmx_read(const char *path, char *why, size_t size);
void vmx_free(Vmx *v);
/* strndup() that never returns NULL */
char *vmx_strndup(const char *s, size_t n);

/*
 * The entry of KEY (printf-like, any case), the last one if set twice;
 * TAKE marks it used: the mapping has dealt with it
 */
VmxEntry *NPH_PRINTF_LIKE(3, 4) vmx_lookup(Vmx *v, bool take,
                                           const char *fmt, ...);
#define vmx_get(v, ...) vmx_lookup(v, false, __VA_ARGS__)
#define vmx_take(v, ...) vmx_lookup(v, true, __VA_ARGS__)

/* VMware's booleans: "TRUE", "true", "1", "yes"; false if E is NULL */
bool vmx_true(const VmxEntry *e);

/*
 * A message about entry E (NULL: about the file).  The text begins with
 * the key and its value, as in 'pciPassthru0.id = "zz": ...'.
 */
void NPH_PRINTF_LIKE(4, 5) vmx_say(Vmx *v, VmxLevel level,
                                   const VmxEntry *e, const char *fmt, ...);
/* How many messages of LEVEL there are */
int vmx_count(const Vmx *v, VmxLevel level);
/*
 * The messages up to level UPTO, by level, then by line:
 * "PROG: LEVEL: FILE:LINE: TEXT"
 */
void vmx_print(const Vmx *v, VmxLevel upto, const char *prog, FILE *f);

/* vmx-map.c: what it means */

typedef struct VmxOptions {
    bool uefi;                  /* a BIOS VM may become UEFI */
    int spare_ports;            /* -1: 2 when hot-add is on, else 0 */
    const char *name;           /* NULL: displayName */
    const char *network;        /* libvirt network of the NICs */
    const char *emulator;       /* the fork's qemu-system-x86_64 */
    const char *type;           /* the domain type: "kvm" or "qemu" (TCG) */
} VmxOptions;

typedef struct VmxDisk {
    bool cdrom;
    char *file;                 /* NULL: an empty CD-ROM drive */
    const char *format;         /* "vmdk", "raw" */
    char key[32];               /* "scsi0:0", for the comment */
} VmxDisk;

typedef struct VmxNic {
    char mac[18];               /* "" to let libvirt pick one */
    char key[16];               /* "ethernet0" */
} VmxNic;

typedef struct VmxPassthru {
    int n;                      /* pciPassthruN */
    char bdf[NPH_BDF_LEN];      /* the host device */
    unsigned vendor, device;
    long slot_number;           /* VMware's pciSlotNumber, -1: none */
} VmxPassthru;

typedef struct VmxDomain {
    char *name;
    char uuid[37];              /* from uuid.bios, "" if none */
    uint64_t memory_mib;
    unsigned vcpus;
    unsigned cores_per_socket;  /* 0: no topology */
    VmxDisk disks[VMX_MAX_DISKS];
    int n_disks;
    VmxNic nics[VMX_MAX_NICS];
    int n_nics;
    VmxPassthru passthru[VMX_MAX_PASSTHRU];  /* in pciSlotNumber order */
    int n_passthru;
    int spare_ports;            /* empty passthrough ports after them */
    bool hotplug;               /* fixedPassthruHotPlugEnabled */
    const char *network;
    const char *emulator;
    const char *type;           /* "kvm", "qemu" */
} VmxDomain;

/*
 * Map V to D, checking each passthrough device on the host (under
 * nph_root()).  Problems are messages of V; D is complete only when V
 * has no VMX_ERROR.
 */
void vmx_map(Vmx *v, const VmxOptions *o, VmxDomain *d);
void vmx_domain_free(VmxDomain *d);

/* domain-writer.c: the libvirt XML of D, from V's file, to OUT */
bool vmx_write_domain(const VmxDomain *d, const char *source, FILE *out);

#endif
