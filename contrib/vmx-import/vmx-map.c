/*
 * virt-vmx-import: what the keys of a .vmx file mean for this project's
 * domain, and what cannot be carried over
 *
 * The rules of a passthrough-hotplug VM (docs/system/devices/
 * nvme-passthru-libvirt.rst) decide: UEFI, all memory locked, a fixed
 * number of vCPUs (at most 128) and memory size, at most 32 passthrough
 * NVMe controllers.  Each pciPassthruN is checked on this host with the
 * host module: the device at its address exists, is the one the file
 * names (vendor and device ids), is an NVMe controller, and can be
 * passed through (IOMMU group, not used by the host).  Every key the
 * mapping does not use is reported as not carried over.
 *
 * Copyright (c) 2026 The NVMe passthrough hotplug authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <ctype.h>
#include <fnmatch.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vmx-import.h"

#define DEFAULT_SPARE_PORTS 2

/* A number in BASE, "0x" allowed in hex; false if malformed or > MAX */
static bool parse_num(const char *s, int base, uint64_t max, uint64_t *out)
{
    if (base == 16 && (!strncmp(s, "0x", 2) || !strncmp(s, "0X", 2))) {
        s += 2;
    }
    return nph_parse_u64(s, base, out) && *out <= max;
}

/* Mark every KEY beginning with PREFIX (any case) as dealt with */
static void take_prefix(Vmx *v, const char *prefix)
{
    int i;

    for (i = 0; i < v->n_entries; i++) {
        if (!strncasecmp(v->entries[i].key, prefix, strlen(prefix))) {
            v->entries[i].used = true;
        }
    }
}

/* ---------------------------------------------------------------- */
/* Name, UUID, memory, vCPUs, firmware */

static void map_name(Vmx *v, const VmxOptions *o, VmxDomain *d)
{
    VmxEntry *e = vmx_take(v, "displayName");
    char *base, *p;

    if (o->name) {
        d->name = vmx_strndup(o->name, strlen(o->name));
    } else if (e && e->value[0]) {
        d->name = vmx_strndup(e->value, strlen(e->value));
    } else {
        base = vmx_strndup(v->file, strlen(v->file));
        p = basename(base);
        d->name = vmx_strndup(p, strcspn(p, "."));
        free(base);
    }
    if (strchr(d->name, '/')) {
        for (p = d->name; *p; p++) {
            *p = *p == '/' ? '-' : *p;
        }
        vmx_say(v, VMX_WARNING, o->name ? NULL : e,
                "libvirt names have no '/': the domain is named '%s'",
                d->name);
    }
}

/* uuid.bios: "56 4d 8a 6e 1d 1b 33 0c-9c 4b 8f 77 c3 0e 7f 6f" */
static void map_uuid(Vmx *v, VmxDomain *d)
{
    VmxEntry *e = vmx_take(v, "uuid.bios");
    char hex[33];
    const char *s;
    int n = 0;

    if (!e) {
        return;
    }
    for (s = e->value; *s && n < 33; s++) {
        if (isxdigit((unsigned char)*s)) {
            hex[n++] = tolower((unsigned char)*s);
        } else if (*s != ' ' && *s != '-') {
            break;
        }
    }
    if (*s || n != 32) {
        vmx_say(v, VMX_DROPPED, e, "not a UUID: libvirt makes one");
        return;
    }
    snprintf(d->uuid, sizeof(d->uuid), "%.8s-%.4s-%.4s-%.4s-%.12s",
             hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static void map_memory(Vmx *v, VmxDomain *d)
{
    VmxEntry *size = vmx_take(v, "memsize");
    VmxEntry *pin = vmx_take(v, "sched.mem.pin");
    VmxEntry *min = vmx_take(v, "sched.mem.min");
    VmxEntry *hotadd = vmx_take(v, "mem.hotadd");
    uint64_t reserved = 0;

    /* what the ESX 4 note writes for sched.mem.min */
    if (!min) {
        min = vmx_take(v, "sched.mem.minsize");
    }
    if (!size) {
        vmx_say(v, VMX_ERROR, NULL, "memsize is not set: the VM's memory "
                "size is unknown");
        return;
    }
    if (!parse_num(size->value, 10, 16 * 1024 * 1024, &d->memory_mib) ||
        !d->memory_mib) {
        vmx_say(v, VMX_ERROR, size, "not a memory size in MB (1 to 16 TB)");
        return;
    }
    if (min && !parse_num(min->value, 10, UINT64_MAX, &reserved)) {
        vmx_say(v, VMX_ERROR, min, "not a memory size in MB");
        return;
    }
    if (!vmx_true(pin) && reserved < d->memory_mib) {
        vmx_say(v, VMX_WARNING, min ? min : pin,
                "VMware reserves %llu of the VM's %llu MB: the domain locks "
                "all of its memory, as passthrough needs",
                (unsigned long long)reserved,
                (unsigned long long)d->memory_mib);
    }
    if (vmx_true(hotadd)) {
        vmx_say(v, VMX_DROPPED, hotadd, "conflicts with the rule 'no "
                "memory hotplug': the domain's memory size is fixed");
    }
}

static void map_cpus(Vmx *v, VmxDomain *d)
{
    VmxEntry *n = vmx_take(v, "numvcpus");
    VmxEntry *cores = vmx_take(v, "cpuid.coresPerSocket");
    VmxEntry *hotadd = vmx_take(v, "vcpu.hotadd");
    uint64_t num = 1;

    if (n && (!parse_num(n->value, 10, UINT32_MAX, &num) || !num)) {
        vmx_say(v, VMX_ERROR, n, "not a number of vCPUs");
        return;
    }
    if (num > VMX_MAX_VCPUS) {
        vmx_say(v, VMX_ERROR, n, "more than the %d vCPUs a passthrough-"
                "hotplug VM may have", VMX_MAX_VCPUS);
        return;
    }
    d->vcpus = num;
    if (cores && (!parse_num(cores->value, 10, num, &num) || !num ||
                  d->vcpus % num)) {
        vmx_say(v, VMX_DROPPED, cores, "does not divide the %u vCPUs: "
                "one core a socket", d->vcpus);
    } else if (cores) {
        d->cores_per_socket = num;
    }
    if (vmx_true(hotadd)) {
        vmx_say(v, VMX_DROPPED, hotadd, "conflicts with the rule 'no CPU "
                "hotplug': the domain has a fixed %u vCPUs", d->vcpus);
    }
}

static void map_firmware(Vmx *v, const VmxOptions *o)
{
    VmxEntry *fw = vmx_take(v, "firmware");
    VmxEntry *sb = vmx_take(v, "uefi.secureBoot.enabled");

    if (fw && !strcasecmp(fw->value, "efi")) {
        if (vmx_true(sb)) {
            vmx_say(v, VMX_DROPPED, sb, "the domain boots OVMF without "
                    "secure boot, as the project's example domain; turn it "
                    "on in <os><firmware> if the guest needs it");
        }
        return;
    }
    if (fw && strcasecmp(fw->value, "bios")) {
        vmx_say(v, VMX_ERROR, fw, "unknown firmware: 'efi' or 'bios'");
        return;
    }
    if (!o->uefi) {
        vmx_say(v, VMX_ERROR, fw, "%sa passthrough-hotplug VM boots "
                "with UEFI only, and a guest installed for BIOS does not "
                "boot with UEFI unless its boot loader is converted; "
                "convert it, then run again with --uefi",
                fw ? "" : "firmware is not set, so VMware boots the VM "
                "with BIOS: ");
        return;
    }
    vmx_say(v, VMX_WARNING, fw, "%s--uefi: the domain boots with UEFI "
            "(OVMF): the guest must have a UEFI boot loader",
            fw ? "" : "firmware is not set (BIOS): ");
}

/* ---------------------------------------------------------------- */
/* Disks and NICs */

/* FILE of the .vmx's KEY, relative to the .vmx's folder */
static char *disk_path(Vmx *v, const char *file)
{
    char *dir, *path, real[PATH_MAX];

    if (file[0] == '/') {
        return vmx_strndup(file, strlen(file));
    }
    dir = vmx_strndup(v->file, strlen(v->file));
    if (!realpath(dirname(dir), real)) {
        snprintf(real, sizeof(real), ".");
    }
    free(dir);
    if (asprintf(&path, "%s/%s", real, file) < 0) {
        abort();
    }
    return path;
}

static void map_disk(Vmx *v, VmxDomain *d, const VmxEntry *present,
                     const char *dev)
{
    VmxEntry *type = vmx_take(v, "%s.deviceType", dev);
    VmxEntry *file = vmx_take(v, "%s.fileName", dev);
    VmxEntry *start = vmx_take(v, "%s.startConnected", dev);
    bool cdrom = type && strcasestr(type->value, "cdrom");
    VmxDisk *k;
    size_t n;

    if (type && !cdrom && strcasecmp(type->value, "scsi-hardDisk") &&
        strcasecmp(type->value, "ata-hardDisk") &&
        strcasecmp(type->value, "disk")) {
        vmx_say(v, VMX_DROPPED, type, "not a virtual disk (a raw or "
                "passthrough device of the ESX host): %s is left out", dev);
        return;
    }
    if (!cdrom && (!file || !file->value[0])) {
        vmx_say(v, VMX_DROPPED, present, "a disk without a fileName: left "
                "out");
        return;
    }
    if (d->n_disks == VMX_MAX_DISKS) {
        vmx_say(v, VMX_DROPPED, present, "more disks and CD-ROM drives "
                "than the %d ports of q35's SATA controller: left out",
                VMX_MAX_DISKS);
        return;
    }
    k = &d->disks[d->n_disks++];
    k->cdrom = cdrom;
    snprintf(k->key, sizeof(k->key), "%s", dev);
    if (cdrom && (!type || strcasecmp(type->value, "cdrom-image") ||
                  !file || (start && !vmx_true(start)))) {
        vmx_say(v, VMX_DROPPED, type ? type : present, "not an image "
                "connected at power on: an empty CD-ROM drive");
        return;
    }
    k->file = disk_path(v, file->value);
    n = strlen(file->value);
    k->format = n > 5 && !strcasecmp(file->value + n - 5, ".vmdk") ?
        "vmdk" : "raw";
    vmx_say(v, VMX_NOTE, file, "%s on q35's SATA controller, %s; copy it "
            "to this host (for a disk: qemu-img convert -O qcow2) and set "
            "its <source>", cdrom ? "a CD-ROM drive" : "a disk", k->file);
}

/* sata0:1.present = "TRUE" and the like: a disk or CD-ROM drive */
static void map_disks(Vmx *v, VmxDomain *d)
{
    static const char *const buses[] = { "scsi", "sata", "ide", "nvme" };
    char dev[32];
    unsigned ctl, unit;
    size_t i, b, len;
    int n;

    for (i = 0; i < (size_t)v->n_entries; i++) {
        VmxEntry *e = &v->entries[i];

        for (b = 0; b < sizeof(buses) / sizeof(buses[0]); b++) {
            len = strlen(buses[b]);
            n = -1;
            if (strncasecmp(e->key, buses[b], len) ||
                sscanf(e->key + len, "%u:%u.present%n", &ctl, &unit, &n) != 2 ||
                n < 0 || e->key[len + n] || ctl > 99 || unit > 99) {
                continue;
            }
            snprintf(dev, sizeof(dev), "%.*s%u:%u", (int)len, e->key, ctl,
                     unit);
            if (vmx_take(v, "%s.present", dev) != e) {
                continue;                       /* set again below */
            }
            if (vmx_true(e)) {
                map_disk(v, d, e, dev);
            } else {
                /* not in the VM: VMware ignores its other settings */
                strcat(dev, ".");
                take_prefix(v, dev);
            }
        }
    }
}

static bool valid_mac(const char *s)
{
    unsigned b[6];
    char extra;

    return strlen(s) == 17 &&
        sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
               &b[4], &b[5], &extra) == 6;
}

static void map_nics(Vmx *v, const VmxOptions *o, VmxDomain *d)
{
    VmxEntry *present, *model, *type, *mac, *net;
    VmxNic *nic;
    int i;

    d->network = o->network ? o->network : "default";
    for (i = 0; i < VMX_MAX_NICS; i++) {
        present = vmx_take(v, "ethernet%d.present", i);
        if (!vmx_true(present)) {
            continue;
        }
        nic = &d->nics[d->n_nics++];
        snprintf(nic->key, sizeof(nic->key), "ethernet%d", i);
        model = vmx_take(v, "ethernet%d.virtualDev", i);
        type = vmx_take(v, "ethernet%d.addressType", i);
        mac = vmx_take(v, "ethernet%d.%s", i,
                       type && !strcasecmp(type->value, "static") ?
                       "address" : "generatedAddress");
        net = vmx_take(v, "ethernet%d.networkName", i);
        if (!model || strcasecmp(model->value, "e1000e")) {
            vmx_say(v, VMX_WARNING, model ? model : present, "the NIC is "
                    "an e1000e, a PCIe NIC every current guest has a "
                    "driver for (virtio once the guest has its drivers)");
        }
        if (mac && valid_mac(mac->value)) {
            snprintf(nic->mac, sizeof(nic->mac), "%s", mac->value);
        } else if (mac) {
            vmx_say(v, VMX_DROPPED, mac, "not a MAC address: libvirt "
                    "makes one");
        }
        if (net) {
            vmx_say(v, VMX_DROPPED, net, "a VMware port group: the NIC is "
                    "on libvirt's network '%s'%s", d->network,
                    o->network ? "" : " (--network NAME)");
        }
    }
}

/* ---------------------------------------------------------------- */
/* pciPassthruN */

/*
 * pciPassthruN.id, the device's address on the host: "03:00.0" or
 * "0000:03:00.0" in hex (ESX 4), "00000:013:00.0" in decimal (ESXi 5
 * and later: a five-digit segment and a three-digit bus)
 */
static bool parse_passthru_id(const char *s, char *bdf, size_t size)
{
    unsigned dom, bus, slot, fn;
    int n = -1;

    if (strlen(s) == 14 && s[5] == ':' && s[9] == ':' && s[12] == '.' &&
        sscanf(s, "%5u:%3u:%2u.%1u%n", &dom, &bus, &slot, &fn, &n) == 4 &&
        n == 14 && strspn(s, "0123456789:.") == 14) {
        if (dom > 0xffff || bus > 0xff || slot > 0x1f || fn > 7) {
            return false;
        }
        snprintf(bdf, size, "%04x:%02x:%02x.%x", dom, bus, slot, fn);
        return true;
    }
    /* hex: two-digit bus and slot, one-digit function */
    return (strlen(s) == 7 || (strlen(s) == 12 && s[4] == ':')) &&
        s[strlen(s) - 2] == '.' && s[strlen(s) - 5] == ':' &&
        nph_parse_bdf(s, bdf, size);
}

/* This host's system UUID, "" when it has none */
static void host_uuid(char *buf, size_t size)
{
    char path[PATH_MAX];

    nph_path(path, sizeof(path), "/sys/class/dmi/id/product_uuid");
    if (!nph_read_line(path, buf, size)) {
        buf[0] = '\0';
    }
}

/* vendorId and deviceId: hex, "0x" optional */
static bool passthru_ids(Vmx *v, int n, VmxPassthru *p)
{
    VmxEntry *ven = vmx_take(v, "pciPassthru%d.vendorId", n);
    VmxEntry *dev = vmx_take(v, "pciPassthru%d.deviceId", n);
    uint64_t x;
    bool ok = true;

    if (ven && parse_num(ven->value, 16, 0xffff, &x)) {
        p->vendor = x;
    } else if (ven) {
        vmx_say(v, VMX_ERROR, ven, "not a PCI vendor id (4 hex digits)");
        ok = false;
    }
    if (dev && parse_num(dev->value, 16, 0xffff, &x)) {
        p->device = x;
    } else if (dev) {
        vmx_say(v, VMX_ERROR, dev, "not a PCI device id (4 hex digits)");
        ok = false;
    }
    if (!ven || !dev) {
        vmx_say(v, VMX_WARNING, vmx_get(v, "pciPassthru%d.id", n),
                "pciPassthru%d.vendorId or deviceId is not set: the host's "
                "device at this address is taken without checking that "
                "it is the VM's", n);
        p->vendor = p->device = 0;
    }
    return ok;
}

/* The settings of pciPassthruN that have no counterpart here */
static void passthru_settings(Vmx *v, int n, const char *uuid)
{
    VmxEntry *vdev = vmx_take(v, "pciPassthru%d.virtualDev", n);
    VmxEntry *msi = vmx_take(v, "pciPassthru%d.msiEnabled", n);
    VmxEntry *sys = vmx_take(v, "pciPassthru%d.systemId", n);

    if (vdev && strcasecmp(vdev->value, "pcie")) {
        vmx_say(v, VMX_DROPPED, vdev, "VMware showed the device as "
                "conventional PCI; here it is PCIe, on its passthrough "
                "port");
    }
    if (msi && !vmx_true(msi)) {
        vmx_say(v, VMX_DROPPED, msi, "VMware gave the device INTx only; "
                "here the guest's driver picks MSI-X, MSI or INTx, as for "
                "any NVMe");
    }
    if (sys && strcasecmp(sys->value, uuid)) {
        vmx_say(v, VMX_DROPPED, sys, "the ESX host the device was on, not "
                "this one (%s): the device is the one at pciPassthru%d.id "
                "here", uuid[0] ? uuid : "no system UUID", n);
    }
}

/*
 * The host device of pciPassthruN: there, the one the file names, an
 * NVMe controller (else VMX_REFUSED: left out), free to pass through
 */
static bool passthru_host(Vmx *v, const VmxEntry *id, VmxPassthru *p)
{
    char msg[1024];
    NphDevice dev;

    if (!nph_device_find(p->bdf, &dev, msg, sizeof(msg))) {
        vmx_say(v, VMX_ERROR, id, "%s (an ESX address: see where the "
                "device is with 'nvme-passthru-host list')", msg);
        return false;
    }
    if (p->vendor && (dev.vendor != p->vendor || dev.device != p->device)) {
        vmx_say(v, VMX_ERROR, id, "%s on this host is %04x:%04x, not the "
                "VM's %04x:%04x: another device (the host numbers its "
                "devices differently from ESX?)", p->bdf, dev.vendor,
                dev.device, p->vendor, p->device);
        return false;
    }
    if (dev.class_code != NPH_NVME_CLASS) {
        vmx_say(v, VMX_REFUSED, id, "%s is not an NVMe controller (class "
                "%02x:%02x:%02x, not 01:08:02): passthrough hotplug takes "
                "NVMe controllers only; left out", p->bdf,
                dev.class_code >> 16, (dev.class_code >> 8) & 0xff,
                dev.class_code & 0xff);
        return false;
    }
    if (nph_can_pass(&dev, msg, sizeof(msg)) != NPH_DONE) {
        vmx_say(v, VMX_ERROR, id, "%s", msg);
        return false;
    }
    return true;
}

static void map_one_passthru(Vmx *v, VmxDomain *d, int n, const char *uuid)
{
    VmxEntry *present = vmx_take(v, "pciPassthru%d.present", n);
    VmxEntry *id, *slot;
    VmxPassthru p = { .n = n, .slot_number = -1 };
    uint64_t x;
    bool ok;
    int i;

    if (!vmx_true(present)) {
        char prefix[32];

        snprintf(prefix, sizeof(prefix), "pciPassthru%d.", n);
        vmx_say(v, VMX_NOTE, present, "%s*: skipped, as VMware does%s",
                prefix, present ? "" : " without a present = \"TRUE\"");
        take_prefix(v, prefix);
        return;
    }
    id = vmx_take(v, "pciPassthru%d.id", n);
    slot = vmx_take(v, "pciPassthru%d.pciSlotNumber", n);
    passthru_settings(v, n, uuid);
    ok = passthru_ids(v, n, &p);
    if (slot && parse_num(slot->value, 10, 0xffff, &x)) {
        p.slot_number = x;
    } else if (slot) {
        vmx_say(v, VMX_ERROR, slot, "not a slot number");
        ok = false;
    }
    if (!id) {
        vmx_say(v, VMX_ERROR, present, "pciPassthru%d.id is not set: which "
                "host device?", n);
        return;
    }
    if (!parse_passthru_id(id->value, p.bdf, sizeof(p.bdf))) {
        vmx_say(v, VMX_ERROR, id, "not a PCI address: BB:SS.F in hex "
                "(\"03:00.0\") or SSSSS:BBB:SS.F in decimal "
                "(\"00000:013:00.0\")");
        return;
    }
    for (i = 0; i < d->n_passthru; i++) {
        if (!strcmp(d->passthru[i].bdf, p.bdf)) {
            vmx_say(v, VMX_ERROR, id, "%s is pciPassthru%d's device too",
                    p.bdf, d->passthru[i].n);
            return;
        }
        if (p.slot_number >= 0 &&
            d->passthru[i].slot_number == p.slot_number) {
            vmx_say(v, VMX_ERROR, slot, "pciPassthru%d has the same slot",
                    d->passthru[i].n);
            return;
        }
    }
    if (!ok || !passthru_host(v, id, &p)) {
        return;
    }
    if (d->n_passthru == VMX_MAX_PASSTHRU) {
        vmx_say(v, VMX_ERROR, present, "more than %d passthrough NVMe "
                "devices, the most a VM may have", VMX_MAX_PASSTHRU);
        return;
    }
    d->passthru[d->n_passthru++] = p;
}

/* In VMware's slot order, which the guest enumerates; then by N */
static int cmp_passthru(const void *a, const void *b)
{
    const VmxPassthru *x = a, *y = b;

    if ((x->slot_number < 0) != (y->slot_number < 0)) {
        return x->slot_number < 0 ? 1 : -1;
    }
    if (x->slot_number != y->slot_number) {
        return x->slot_number < y->slot_number ? -1 : 1;
    }
    return x->n - y->n;
}

static void map_passthru(Vmx *v, const VmxOptions *o, VmxDomain *d)
{
    VmxEntry *hp = vmx_take(v, "fixedPassthruHotPlugEnabled");
    bool seen[1000] = { false };
    char uuid[64];
    unsigned n;
    int i, len;

    host_uuid(uuid, sizeof(uuid));
    for (i = 0; i < v->n_entries; i++) {
        len = -1;
        if (!strncasecmp(v->entries[i].key, "pciPassthru", 11) &&
            isdigit((unsigned char)v->entries[i].key[11]) &&
            sscanf(v->entries[i].key + 11, "%u.%n", &n, &len) == 1 &&
            len > 0 && n < 1000) {
            seen[n] = true;
        }
    }
    for (n = 0; n < 1000; n++) {
        if (seen[n]) {
            map_one_passthru(v, d, n, uuid);
        }
    }
    qsort(d->passthru, d->n_passthru, sizeof(d->passthru[0]), cmp_passthru);

    d->hotplug = vmx_true(hp);
    d->spare_ports = o->spare_ports >= 0 ? o->spare_ports :
        d->hotplug ? DEFAULT_SPARE_PORTS : 0;
    if (d->spare_ports > VMX_MAX_PASSTHRU - d->n_passthru) {
        d->spare_ports = VMX_MAX_PASSTHRU - d->n_passthru;
        vmx_say(v, VMX_WARNING, NULL, "%d spare passthrough port%s: "
                "a VM has at most %d passthrough NVMe devices",
                d->spare_ports, d->spare_ports == 1 ? "" : "s",
                VMX_MAX_PASSTHRU);
    }
    if (d->hotplug) {
        vmx_say(v, VMX_NOTE, hp, "passthrough hotplug: %d port%s for the "
                "VM's devices and %d spare, all hot-pluggable",
                d->n_passthru, d->n_passthru == 1 ? "" : "s",
                d->spare_ports);
    }
}

/* ---------------------------------------------------------------- */
/* What is left */

static const struct {
    const char *pattern;        /* fnmatch(), any case */
    const char *why;
} unmapped[] = {
    { "pciBridge*", "VMware's PCI bridges: the domain has q35's PCIe root "
      "ports" },
    { "RemoteDisplay.*", "VMware's remote console: add a <graphics> "
      "device for one" },
    { "svga.*", "VMware's video card: the domain has a serial console" },
    { "*version", "VMware's file or virtual hardware version: the domain "
      "is a q35 machine" },
    { "guestOS", "VMware's guest type: libvirt needs none" },
    { "tools.*", "VMware Tools" },
    { "sched.*", "a VMware resource setting" },
    { "scsi[0-9]*:*", "a setting of a VMware disk" },
    { "sata[0-9]*:*", "a setting of a VMware disk" },
    { "ide[0-9]*:*", "a setting of a VMware disk" },
    { "nvme[0-9]*:*", "a setting of a VMware disk" },
    { "scsi[0-9]*", "VMware's disk controller: the disks are on q35's "
      "SATA controller" },
    { "sata[0-9]*", "VMware's disk controller: the disks are on q35's "
      "SATA controller" },
    { "ide[0-9]*", "VMware's disk controller: the disks are on q35's "
      "SATA controller" },
    { "nvme[0-9]*", "VMware's disk controller: the disks are on q35's "
      "SATA controller" },
    { "ethernet*", "a setting of a VMware NIC" },
    { "pciPassthru*", "a passthrough setting with no counterpart" },
};

static void report_unused(Vmx *v)
{
    size_t i, k;

    for (i = 0; i < (size_t)v->n_entries; i++) {
        VmxEntry *e = &v->entries[i];
        const char *why = "no counterpart in the domain";

        if (e->used) {
            continue;
        }
        for (k = 0; k < sizeof(unmapped) / sizeof(unmapped[0]); k++) {
            if (!fnmatch(unmapped[k].pattern, e->key, FNM_CASEFOLD)) {
                why = unmapped[k].why;
                break;
            }
        }
        e->used = true;
        vmx_say(v, VMX_DROPPED, e, "%s", why);
    }
}

void vmx_map(Vmx *v, const VmxOptions *o, VmxDomain *d)
{
    memset(d, 0, sizeof(*d));
    d->emulator = o->emulator;
    d->type = o->type;
    map_name(v, o, d);
    map_uuid(v, d);
    map_memory(v, d);
    map_cpus(v, d);
    map_firmware(v, o);
    map_disks(v, d);
    map_nics(v, o, d);
    map_passthru(v, o, d);
    report_unused(v);
}

void vmx_domain_free(VmxDomain *d)
{
    int i;

    for (i = 0; i < d->n_disks; i++) {
        free(d->disks[i].file);
    }
    free(d->name);
}
